"""The benchmark command runs the real step on CPU and prints the contract JSON; GPU-only paths fail clearly."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import pytest

from electra_jax import attention, benchmark
from electra_jax import config as config_lib

REPO = Path(__file__).resolve().parents[1]
FIELDS = ("size", "batch_size", "seq_len", "step_ms", "tokens_per_sec", "model_tflops_per_step", "mfu", "device",
          "peak_memory_gb")


def test_command_prints_one_json_line_with_the_contract_fields():
    # bf16 + scan_layers + remat=dots: the switch set the Large GPU run uses, checked here on CPU.
    cmd = [sys.executable, "-m", "electra_jax.benchmark", "--config=configs/pretrain.py:tiny", "--batch_size=2",
           "--seq_len=32", "--steps=2", "--warmup=1", "--window=1", "--dtype=bfloat16", "--attention=xla",
           "--scan_layers", "--remat=dots", "--config.model.num_layers=2", "--variant=test"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, done.stdout
    row = json.loads(lines[0])
    for field in FIELDS:
        assert field in row, field
    assert (row["size"], row["batch_size"], row["seq_len"]) == ("tiny", 2, 32)
    assert (row["dtype"], row["scan_layers"], row["remat"], row["variant"]) == ("bfloat16", True, "dots", "test")
    assert row["step_ms"] > 0 and row["tokens_per_sec"] == pytest.approx(2 * 32 / (row["step_ms"] / 1e3))
    config = config_lib.load("configs/pretrain.py:tiny", {"data.max_seq_length": 32})
    from electra_jax import flops

    assert row["model_tflops_per_step"] == pytest.approx(flops.model_flops_per_step(config, 2, 32) / 1e12)
    assert 0 < row["mfu"] and row["device"].startswith("cpu")
    assert row["peak_memory_gb"] is None or row["peak_memory_gb"] > 0
    assert jnp.isfinite(row["final_loss"])
    assert "tensorflow" not in done.stderr.lower()


def test_benchmark_imports_no_tensorflow():
    code = ("import sys, electra_jax.benchmark, electra_jax.train_state, electra_jax.flops; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_switches_override_the_config_and_rederive_slots():
    config = config_lib.load("configs/pretrain.py:small")  # 128 tokens, 19 slots
    config = benchmark.apply_switches(config, 8, 512, "bfloat16", "splash", True, "full")
    assert config.data.max_seq_length == 512 and config.objective.max_predictions_per_seq == 79
    assert (config.model.dtype, config.model.attention, config.model.scan_layers, config.model.remat) == (
        "bfloat16", "splash", True, "full")


def test_synthetic_batch_is_full_length_with_two_segments():
    config = config_lib.load("configs/pretrain.py:tiny")
    batch = benchmark.synthetic_batch(3, 16, config.model.vocab_size, config)
    assert batch["input_ids"].shape == (3, 16) and batch["input_mask"].all()
    assert (batch["input_ids"][:, 0] == config.data.cls_id).all()
    assert (batch["input_ids"][:, [8, 15]] == config.data.sep_id).all()
    assert batch["segment_ids"][:, 9:].all() and not batch["segment_ids"][:, :9].any()
    assert batch["input_ids"].max() < config.model.vocab_size


def test_cudnn_attention_off_gpu_names_the_config_field():
    q = jnp.zeros((1, 8, 2, 64))
    with pytest.raises(ValueError, match="config.model.attention"):
        attention.cudnn_attention(q, q, q, jnp.ones((1, 8), jnp.int32))


# ---- benchmarks/hf_pytorch_baseline.py: the PyTorch step electra_jax is compared with ----


@pytest.fixture(scope="module")
def baseline():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    spec = importlib.util.spec_from_file_location("hf_pytorch_baseline", REPO / "benchmarks" / "hf_pytorch_baseline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hf_models_share_one_embedding_table(baseline):
    import torch

    from electra_jax import config as config_lib

    config = config_lib.load("configs/pretrain.py:tiny", {"model.num_layers": 1})
    generator, discriminator = baseline.build_models(config, torch.device("cpu"))
    table = discriminator.electra.embeddings.word_embeddings.weight
    assert generator.electra.embeddings is discriminator.electra.embeddings
    assert generator.generator_lm_head.weight is table
    assert generator.config.hidden_size == 64 and discriminator.config.hidden_size == 128
    assert discriminator.config._attn_implementation == "sdpa"
    params = baseline.unique_parameters(generator, discriminator)
    assert sum(p is table for p in params) == 1


def test_hf_masking_follows_the_electra_rule(baseline):
    import torch

    torch.manual_seed(0)
    batch, seq, slots = 64, 40, 8
    ids = torch.randint(1000, 2000, (batch, seq))
    ids[:, 0], ids[:, 20], ids[:, -1] = 101, 102, 102
    mask = torch.ones_like(ids)
    mask[1, 30:] = 0
    masked, positions, targets, weights = baseline.mask_batch(ids, mask, max_predictions=slots, mask_prob=0.15,
                                                              mask_id=103, special_ids=(101, 102, 103))
    # k = round(0.15 * n_real) slots: 40 real tokens -> 6, 30 -> round(4.5) = 4 (half to even).
    assert weights[0].sum() == 6 and weights[1].sum() == 4
    used = weights.bool()
    chosen = positions[used]
    assert not torch.isin(ids.gather(1, positions)[used], torch.tensor([101, 102])).any()
    assert (chosen != 0).all() and (mask.gather(1, positions)[used] == 1).all()
    assert (targets[used] == ids.gather(1, positions)[used]).all()
    changed = (masked != ids)
    assert ((masked == 103) == changed).all()  # only [MASK] replacements, no random tokens
    fraction = changed.sum().item() / used.sum().item()
    assert 0.75 < fraction < 0.95  # 85% of the selected positions become [MASK]


@pytest.mark.slow
def test_hf_script_prints_the_benchmark_fields():
    cmd = [sys.executable, str(REPO / "benchmarks" / "hf_pytorch_baseline.py"), "--config=configs/pretrain.py:tiny",
           "--batch_size=2", "--seq_len=32", "--steps=2", "--warmup=1", "--window=1", "--dtype=bfloat16",
           "--override", "model.num_layers=1", "--variant=test"]
    done = subprocess.run(cmd, cwd="/", capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    row = json.loads(done.stdout.strip().splitlines()[-1])
    for field in ("size", "batch_size", "seq_len", "step_ms", "tokens_per_sec", "model_tflops_per_step", "mfu",
                  "device", "peak_memory_gb", "impl"):
        assert field in row
    assert row["impl"] == "hf_pytorch_eager" and row["variant"] == "test" and row["seq_len"] == 32
    assert row["final_loss"] == row["final_loss"] and row["final_loss"] > 0  # finite
