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


def test_command_prints_one_json_line_with_the_contract_fields(tmp_path):
    # bf16 + scan_layers + remat=dots + rbg dropout, and a profile of the step, checked here on CPU.
    cmd = [sys.executable, "-m", "electra_jax.benchmark", "--config=configs/pretrain.py:tiny", "--batch_size=2",
           "--seq_len=32", "--steps=2", "--warmup=1", "--window=1", "--dtype=bfloat16", "--attention=xla",
           "--scan_layers", "--remat=dots", "--config.model.num_layers=1", "--variant=test", "--dropout_prng=rbg",
           f"--profile_dir={tmp_path / 'profile'}", "--profile_steps=1"]
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
    assert row["dropout_prng"] == "rbg"
    from electra_jax import profile_summary

    summary = profile_summary.load(str(tmp_path / "profile"), steps=1)
    assert summary["device_ms_per_step"] > 0 and summary["top_ops"]
    assert sum(summary["categories"].values()) == pytest.approx(summary["device_ms_per_step"])
    assert row["step_ms"] > 0 and row["tokens_per_sec"] == pytest.approx(2 * 32 / (row["step_ms"] / 1e3))
    config = config_lib.load("configs/pretrain.py:tiny", {"data.max_seq_length": 32, "model.num_layers": 1})
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


# ---- benchmarks/run_gpu.sh and benchmarks/make_table.py ----


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(impl, size, batch, seq, tokens_per_sec, **extra):
    return {"run": f"{impl}_{size}", "impl": impl, "size": size, "batch_size": batch, "seq_len": seq,
            "tokens_per_sec": tokens_per_sec, "step_ms": batch * seq / tokens_per_sec * 1e3, "mfu": 0.25,
            "device": "gpu:NVIDIA H100 80GB HBM3", "peak_memory_gb": 10.0, "variant": "v", **extra}


def test_table_gives_ratios_against_hf_eager_of_the_same_shape(tmp_path):
    make_table = _load_script("make_table")
    rows = [_row("electra_jax", "small", 128, 128, 500_000.0), _row("hf_pytorch_eager", "small", 128, 128, 400_000.0),
            _row("hf_pytorch_eager", "base", 64, 512, 200_000.0), _row("electra_jax", "base", 64, 512, 300_000.0),
            {**_row("electra_jax", "large", 32, 512, 1.0), "error": "timed out", "tokens_per_sec": None}]
    path = tmp_path / "2026-01-01-h100.json"
    path.write_text(json.dumps({"date": "2026-01-01", "card": "h100", "rows": rows}))
    text = make_table.render([str(path)])
    lines = text.splitlines()
    assert lines[0].startswith("**2026-01-01 h100")
    small = [line for line in lines if line.startswith("| small")]
    assert "hf_pytorch_eager" in small[0] and small[0].endswith("| 1.00× |")  # the baseline is listed first
    assert small[1].endswith("| 1.25× |") and "25.0%" in small[1] and "500,000" in small[1]
    assert any(line.startswith("| base") and line.endswith("| 1.50× |") for line in lines)
    assert any(line.startswith("| large") and "failed: timed out" in line for line in lines)


def test_collect_merges_meta_rows_and_failures(tmp_path):
    make_table = _load_script("make_table")
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "hf_small.meta").write_text(json.dumps({"order": 1, "run": "hf_small", "impl": "hf_pytorch_eager",
                                                   "variant": "bf16", "rc": 0, "wall_s": 30, "limit_s": 90}))
    (raw / "hf_small.out").write_text("some log line\n" + json.dumps(_row("hf_pytorch_eager", "small", 128, 128, 4e5))
                                      + "\n")
    (raw / "jax_small.meta").write_text(json.dumps({"order": 2, "run": "jax_small", "impl": "electra_jax",
                                                    "variant": "bf16", "rc": 124, "wall_s": 150, "limit_s": 150}))
    (raw / "jax_small.err").write_text("compiling...\n")
    (raw / "jax_large.meta").write_text(json.dumps({"order": 3, "run": "jax_large", "impl": "electra_jax",
                                                    "variant": "bf16", "rc": 125, "skipped": True}))
    doc = make_table.collect(raw, card="h100", date="2026-01-01")
    assert [r["run"] for r in doc["rows"]] == ["hf_small", "jax_small", "jax_large"]
    first, second, third = doc["rows"]
    assert first["tokens_per_sec"] == 4e5 and "error" not in first and first["wall_s"] == 30
    assert second["error"] == "timed out" and "compiling" in second["stderr_tail"]
    assert third["error"].startswith("skipped")
    for field in make_table.ROW_FIELDS:
        assert field in second


def test_gpu_script_is_valid_bash_and_carries_its_wheel():
    assert subprocess.run(["bash", "-n", str(REPO / "benchmarks" / "run_gpu.sh")]).returncode == 0
    assert list((REPO / "benchmarks" / "wheels").glob("ml_collections-*.whl"))


@pytest.mark.slow
def test_gpu_script_smoke_run_on_cpu(tmp_path):
    """SMOKE=1 runs the Small pair on the tiny model: wheel install, both benchmarks, collect and table."""
    env = dict(os.environ, OUT=str(tmp_path), SMOKE="1", FORCE_WHEEL="1", PYTHON=sys.executable, JAX_PLATFORMS="cpu")
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "run_gpu.sh")], env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = list(tmp_path.glob("*-nogpu.json"))
    assert len(results) == 1 and (tmp_path / "run.log").exists()
    rows = json.loads(results[0].read_text())["rows"]
    assert [r["impl"] for r in rows] == ["hf_pytorch_eager", "electra_jax"]
    assert all(r["tokens_per_sec"] and not r.get("error") for r in rows)
    assert "| tiny (2 × 32) | electra_jax |" in done.stdout


@pytest.mark.slow
def test_gpu_script_falls_back_to_xla_attention_when_cudnn_fails(tmp_path):
    """Off GPU cuDNN attention fails at once: the script records that and measures with XLA attention instead."""
    env = dict(os.environ, OUT=str(tmp_path), SMOKE="1", SMOKE_ATTN="cudnn", PYTHON=sys.executable,
               JAX_PLATFORMS="cpu")
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "run_gpu.sh")], env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = json.loads(next(tmp_path.glob("*-nogpu.json")).read_text())["rows"]
    assert [r["run"] for r in rows] == ["hf_small", "jax_small", "jax_small_xla"]
    assert rows[1]["error"] and "needs an NVIDIA GPU" in rows[1]["stderr_tail"]
    assert rows[2]["attention"] == "xla" and rows[2]["tokens_per_sec"] and not rows[2].get("error")
    assert "falling back to --attention=xla" in done.stdout


def test_results_files_are_the_dated_ones_in_run_order(tmp_path):
    make_table = _load_script("make_table")
    for name in ("2026-01-02-h100.json", "2026-01-01-h200-2.json", "2026-01-01-h200-10.json", "2026-01-01-h200.json",
                 "compute_efficiency.json", "notes.json"):
        (tmp_path / name).write_text(json.dumps({"rows": []}))
    assert [Path(f).name for f in make_table.results_files(tmp_path)] == [
        "2026-01-01-h200.json", "2026-01-01-h200-2.json", "2026-01-01-h200-10.json", "2026-01-02-h100.json"]
    failed = {"run": "jax_large_unrolled", "impl": "electra_jax", "variant": "v", "error": "timed out", "size": None,
              "batch_size": None, "seq_len": None}
    assert "| run `jax_large_unrolled` | electra_jax | v | failed: timed out |" in make_table.table([failed])


def test_readme_speed_table_is_the_generated_one():
    make_table = _load_script("make_table")
    files = make_table.results_files(REPO / "benchmarks" / "results")
    assert files, "no speed results committed"
    assert make_table.render(files).strip() in (REPO / "README.md").read_text()
