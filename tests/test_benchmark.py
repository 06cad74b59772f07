"""The benchmark command runs the real step on CPU and prints the contract JSON; GPU-only paths fail clearly;
the HF PyTorch baseline computes what HF and numpy compute, with no host sync in its step."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from electra_jax import attention, benchmark
from electra_jax import config as config_lib

REPO = Path(__file__).resolve().parents[1]
FIELDS = ("size", "batch_size", "seq_len", "step_ms", "tokens_per_sec", "model_tflops_per_step", "mfu", "device",
          "peak_memory_gb")


def test_a_bad_shape_flag_is_named_as_the_flag_typed():
    """--seq_len=4 is refused as --seq_len (it was refused as config.data.max_seq_length, a field never typed);
    the same value given as the config field keeps the field's name."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    for flag, named in (("--seq_len=4", "--seq_len = 4"), ("--config.data.max_seq_length=4",
                                                             "config.data.max_seq_length = 4")):
        done = subprocess.run([sys.executable, "-m", "electra_jax.benchmark", "--config=configs/pretrain.py:tiny",
                               flag], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode != 0
        assert f"benchmark: error: {named}: must be an integer >= 8" in done.stderr, done.stderr[-2000:]


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
    # A hand count of the tiny step (1 layer, H 128, E 64, I 256; generator 64 wide, no projection; 4 slots of 32):
    # 3 x (per-token matmuls of both encoders and the replaced-token head + the generator head at its slots).
    disc = 8 * 128**2 + 4 * 128 * 256 + 4 * 32 * 128 + 2 * 64 * 128
    gen = 8 * 64**2 + 4 * 64 * 256 + 4 * 32 * 64
    disc_head = 2 * 128**2 + 2 * 128
    gen_head = 4 * (2 * 64 * 64 + 2 * 64 * 30522)
    assert row["model_tflops_per_step"] == pytest.approx(3 * (64 * (disc + gen + disc_head) + 2 * gen_head) / 1e12)
    assert 0 < row["mfu"] and row["device"].startswith("cpu")
    assert row["mfu_datasheet"] is None  # a datasheet peak is known for H100/H200 only
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
    return _load_script("hf_pytorch_baseline")


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
           "--batch_size=2", "--seq_len=32", "--steps=2", "--warmup=1", "--window=1", "--dtype=float32",
           "--override", "model.num_layers=1", "--head=stock", "--variant=test"]
    done = subprocess.run(cmd, cwd="/", capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    row = json.loads(done.stdout.strip().splitlines()[-1])
    for field in FIELDS + ("impl", "window_ms", "mfu_datasheet"):
        assert field in row
    assert row["impl"] == "hf_pytorch_stock" and row["variant"] == "test" and row["seq_len"] == 32
    assert row["final_loss"] == row["final_loss"] and row["final_loss"] > 0  # finite
    assert len(row["window_ms"]) == 2 and row["step_ms"] == pytest.approx(float(np.median(row["window_ms"])))


def _tiny_config(**overrides):
    return config_lib.load("configs/pretrain.py:tiny", {"data.max_seq_length": 32, "train.batch_size": 2,
                                                        "model.num_layers": 1, "model.vocab_size": 1024, **overrides})


def test_hf_mlm_loss_is_the_row_cross_entropy_numpy_computes(baseline):
    import torch

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 5, 40)).astype(np.float32) * 3
    targets = rng.integers(0, 40, size=(3, 5))
    weights = (rng.random((3, 5)) < 0.7).astype(np.float32)
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_probs, targets[..., None], -1)[..., 0]
    expected = (nll * weights).sum() / (weights.sum() + 1e-6)
    got = baseline.mlm_loss(torch.tensor(logits), torch.tensor(targets), torch.tensor(weights))
    assert float(got) == pytest.approx(float(expected), rel=1e-5)


def test_gathered_head_equals_hf_full_forward_at_the_masked_slots(baseline):
    """The gathered head (ElectraForMaskedLM's submodules at N slots) is HF's own forward restricted to them."""
    import torch

    config = _tiny_config()
    generator, _ = baseline.build_models(config, torch.device("cpu"))
    generator.eval()
    ids = torch.randint(5, 1024, (2, 32))
    positions = torch.tensor([[1, 4, 9, 0], [3, 3, 30, 7]])
    with torch.no_grad():
        full = generator(input_ids=ids).logits
        hidden = generator.electra(input_ids=ids).last_hidden_state
        gathered = generator.generator_lm_head(generator.generator_predictions(
            baseline.gather_positions(hidden, positions)))
    expected = torch.stack([full[b, positions[b]] for b in range(2)])
    torch.testing.assert_close(gathered, expected, rtol=1e-5, atol=1e-5)


def test_attention_dropout_setting_reaches_every_layer(baseline):
    """attention_dropout=0 makes a train-mode forward (hidden dropout 0 too) equal the eval-mode one; 0.5 does not."""
    import torch

    config = _tiny_config(**{"model.hidden_dropout": 0.0, "model.num_layers": 2})
    ids = torch.randint(5, 1024, (2, 32))
    outputs = {}
    for rate in (0.0, 0.5):
        torch.manual_seed(0)
        _, discriminator = baseline.build_models(config, torch.device("cpu"), attention_dropout=rate)
        with torch.no_grad():
            outputs[rate] = (discriminator.train()(input_ids=ids).logits, discriminator.eval()(input_ids=ids).logits)
    torch.testing.assert_close(*outputs[0.0])
    assert not torch.allclose(*outputs[0.5])


def test_cuda_graph_step_needs_a_gpu_and_is_named_apart(baseline):
    import torch

    with pytest.raises(ValueError, match="needs a CUDA device"):
        baseline.HFStep(_tiny_config(), torch.device("cpu"), dtype="float32", cuda_graph=True)
    assert baseline.impl_name("gathered", "none", cuda_graph=True) == "hf_pytorch_cudagraph"
    assert baseline.impl_name("stock", "regional", cuda_graph=True) == "hf_pytorch_compile_cudagraph"
    assert baseline.impl_name("stock") == "hf_pytorch_stock"


def test_no_mask_reaches_sdpa_while_tracing_or_capturing(baseline, monkeypatch):
    """transformers counts CUDA stream capture (and torch.compile) as tracing and then builds an all-True mask,
    which rules out flash attention; the baseline's models pass none, as in eager mode. A real mask still arrives."""
    import torch

    seen = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def recording_sdpa(*args, **kwargs):
        seen.append(kwargs.get("attn_mask", args[3] if len(args) > 3 else None))
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", recording_sdpa)
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    from transformers.models.electra import modeling_electra
    from transformers.utils import import_utils

    built = []  # transformers' mask builder is not even called without a mask (5.17 builds an all-True one here)
    build_mask = modeling_electra.create_bidirectional_mask
    monkeypatch.setattr(modeling_electra, "create_bidirectional_mask",
                        lambda **kwargs: built.append(kwargs["attention_mask"]) or build_mask(**kwargs))

    assert import_utils.is_tracing()  # what transformers sees during a capture
    generator, discriminator = baseline.build_models(_tiny_config(), torch.device("cpu"))
    ids = torch.randint(5, 1024, (2, 32))
    with torch.no_grad():
        generator.electra(input_ids=ids)
        discriminator(input_ids=ids)
    layers = generator.config.num_hidden_layers + discriminator.config.num_hidden_layers
    assert len(seen) == layers and all(mask is None for mask in seen) and built == []
    seen.clear()
    padding = torch.ones_like(ids)
    padding[0, 20:] = 0
    with torch.no_grad():
        discriminator(input_ids=ids, attention_mask=padding)
    assert seen and all(mask is not None for mask in seen) and len(built) == 1


def test_a_transformers_without_the_mask_builder_is_left_alone_and_said_once(baseline, capsys):
    """An older or newer transformers whose ElectraModel has no _create_attention_masks: nothing is patched (the
    eager step is unaffected) and stderr says what that costs."""

    class OtherEncoder:
        pass

    encoder = OtherEncoder()
    baseline.skip_all_true_mask(encoder)
    assert not hasattr(encoder, "_create_attention_masks")
    err = capsys.readouterr().err
    assert err.count("has no ElectraModel._create_attention_masks") == 1 and "compiled and captured" in err


def test_cuda_graph_replays_take_real_steps_with_fresh_masks(baseline):
    """Hand count: 3 warm-up steps before capture, none during it (capture records kernels), one per replay; each
    replay advances the random generator (new masks, samples and dropout) and moves the weights."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("CUDA graphs need a CUDA GPU")
    step = baseline.HFStep(_tiny_config(), torch.device("cuda"), dtype="float32", attention_dropout=0.0,
                           cuda_graph=True)
    step.run(1)
    assert step.optimizer_steps() == 3 + 1
    weights = step.discriminator.discriminator_predictions.dense.weight
    before, losses, states = weights.detach().clone(), [], [torch.cuda.get_rng_state()]
    for _ in range(4):
        step.run(1)
        losses.append(step.loss())
        states.append(torch.cuda.get_rng_state())
    assert all(not torch.equal(a, b) for a, b in zip(states, states[1:]))
    assert step.optimizer_steps() == 3 + 5 and all(np.isfinite(losses))
    assert not torch.equal(before, weights.detach())
    eager = baseline.HFStep(_tiny_config(), torch.device("cuda"), dtype="float32", attention_dropout=0.0)
    eager.run(5)
    assert eager.optimizer_steps() == 5
    assert abs(np.mean(losses) - eager.loss()) < 0.5 * eager.loss()  # the same objective, within its noise


@pytest.fixture(scope="module")
def hf_profile():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    return _load_script("hf_profile")


def test_hf_step_reads_no_device_value_and_calls_sdpa_once_per_layer(baseline, hf_profile):
    """By hand: one SDPA call per layer of the two networks forward (and one backward); no host read outside the
    optimizer. The old baseline's all-ones attention_mask costs one read per network forward (mask.all())."""
    import torch

    torch.set_num_threads(1)
    config = _tiny_config()
    step = baseline.HFStep(config, torch.device("cpu"), head="gathered", dtype="float32", attention_dropout=0.0)
    step.warm_up(1)
    summary = hf_profile.summarize_profile(hf_profile.profile_step(step, 2), 2, on_gpu=False)
    layers = config.model.num_layers + config.model.generator_num_layers
    forward = {k: v for k, v in summary["sdpa_ops_per_step"].items() if not k.endswith("_backward")}
    assert sum(forward.values()) == layers and summary["device_reads_outside_optimizer_per_step"] == 0
    from torch.profiler import ProfilerActivity, profile

    ids, mask, segments = step.batch
    with profile(activities=[ProfilerActivity.CPU]) as prof, torch.no_grad():
        step.generator.electra(input_ids=ids, attention_mask=mask, token_type_ids=segments)
        step.discriminator(input_ids=ids, attention_mask=mask, token_type_ids=segments)
    assert hf_profile.summarize_profile(prof, 1, on_gpu=False)["device_reads_outside_optimizer_per_step"] == 2
    text = hf_profile.to_markdown(summary, "tiny")
    assert "SDPA dispatch per step" in text and "0 outside the optimizer" in text


def test_hf_profile_summary_of_a_gpu_trace_by_hand(hf_profile):
    """The GPU path of the summary on hand-made profiler events: two steps, counted by hand."""
    import types

    import torch

    cpu, cuda = torch.autograd.DeviceType.CPU, torch.autograd.DeviceType.CUDA

    def event(name, device=cpu, us=10.0, parent=None):
        return types.SimpleNamespace(name=name, device_type=device, self_cpu_time_total=us, cpu_parent=parent,
                                     time_range=types.SimpleNamespace(elapsed_us=lambda: us), kernels=[])

    optimizer = event("Optimizer.step#AdamW.step")
    events = ([event("aten::_scaled_dot_product_flash_attention") for _ in range(4)]
              + [event("aten::_local_scalar_dense", parent=optimizer) for _ in range(2)]
              + [event("aten::_local_scalar_dense"), event("cudaDeviceSynchronize"), optimizer]
              + [event("flash_fwd_kernel", cuda, 100.0) for _ in range(4)]
              + [event("sm90_xmma_gemm_bf16", cuda, 50.0) for _ in range(6)])
    summary = hf_profile.summarize(events, steps=2, on_gpu=True)
    assert summary["sdpa_ops_per_step"] == {"aten::_scaled_dot_product_flash_attention": 2.0}
    assert summary["attention_kernels_per_step"] == {"flash_fwd_kernel": 2.0}
    assert summary["device_reads_per_step"] == 1.5 and summary["device_reads_outside_optimizer_per_step"] == 0.5
    assert summary["cuda_syncs_per_step"] == 0.0  # the one synchronize ends the profiled window
    assert summary["kernel_launches_per_step"] == 5.0 and summary["device_ms_per_step"] == pytest.approx(0.35)
    assert summary["top"][0] == {"name": "flash_fwd_kernel", "ms_per_step": 0.2, "calls_per_step": 2.0}


def test_hf_step_refuses_a_padded_batch(baseline):
    import torch

    mask = torch.ones((2, 8), dtype=torch.long)
    baseline.check_no_padding(mask)
    mask[0, -3:] = 0  # the step passes no attention mask: padding would be attended to
    with pytest.raises(ValueError, match="no padding"):
        baseline.check_no_padding(mask)


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- electra_jax.benchmark helpers shared by both sides ----


def test_datasheet_peaks_are_nvidia_dense_bf16_figures():
    assert benchmark.datasheet_peak_flops("gpu:NVIDIA H200") == 989e12
    assert benchmark.datasheet_peak_flops("cuda:NVIDIA H100 80GB HBM3") == 989e12
    assert benchmark.datasheet_peak_flops("NVIDIA H100 PCIe") == 756e12
    assert benchmark.datasheet_peak_flops("NVIDIA H200", "float32") is None
    assert benchmark.datasheet_peak_flops("cpu:cpu") is None


def test_time_windows_splits_steps_and_times_each_window(monkeypatch):
    clock = {"now": 0.0}
    calls = []

    def run_steps(count):  # a fake device: 10 ms per step
        calls.append(count)
        clock["now"] += 0.01 * count

    monkeypatch.setattr(benchmark.time, "perf_counter", lambda: clock["now"])
    per_step = benchmark.time_windows(run_steps, steps=25, window=10)
    assert calls == [10, 10, 5] and per_step == pytest.approx([0.01, 0.01, 0.01])


# ---- benchmarks/flash_sweep.py: the attention kernels alone ----


def test_flash_sweep_times_every_variant_and_keeps_going_past_a_failing_one(tmp_path, monkeypatch):
    """--smoke on CPU (interpret mode): XLA's attention and each tiling, forward and forward + backward, a row per
    variant with the call's commit; a tiling that cannot run is an error row, not the end; the table's ratios are
    XLA's time over each variant's; --budget_s skips what would start after it."""
    sweep = _load_script("flash_sweep")
    monkeypatch.setattr(sweep, "SMOKE_TILINGS", [(32, 16, 64, 2, 1), (48, 64, 64, 4, 2)])
    monkeypatch.setenv("COMMIT", "feedbeef")
    out = tmp_path / "sweep.json"
    rows = sweep.sweep(sweep.parse_args(["--smoke", f"--out={out}", "--steps=1", "--windows=1",
                                         "--passes=fwd,fwd+bwd"]))
    assert [(r["variant"], r["pass"], r["kind"]) for r in rows] == [
        ("xla", "fwd", "measure"), ("xla", "fwd+bwd", "measure"),
        ("flash 32/16/64/2/1", "fwd", "measure"), ("flash 32/16/64/2/1", "fwd+bwd", "measure"),
        ("flash 48/64/64/4/2", "fwd", "error"), ("flash 48/64/64/4/2", "fwd+bwd", "error")]
    assert "power of two from 16, got 48" in rows[-1]["error"]
    document = json.loads(out.read_text())
    assert document["commit"] == "feedbeef" and document["rows"] == json.loads(json.dumps(rows))
    assert not (tmp_path / "sweep.json.jsonl").exists()  # the rows streamed there while it ran
    assert all(r["ms"] > 0 and r["compile_s"] > 0 for r in rows if r["kind"] == "measure")
    xla, flash = rows[1]["ms"], rows[3]["ms"]
    line = next(line for line in sweep.table(rows).splitlines() if "| fwd+bwd | flash 32/16/64/2/1 |" in line)
    assert f"| {xla / flash:.2f}× |" in line
    skipped = sweep.sweep(sweep.parse_args(["--smoke", f"--out={out}", "--budget_s=1e-9"]))
    assert {r["kind"] for r in skipped} == {"skipped"}
    for bad in ("--sizes=huge", "--passes=bwd"):
        with pytest.raises(SystemExit):
            sweep.parse_args(["--out=x", bad])
    # As the GPU image runs it: no ml-collections, TensorFlow or torch importable, the table written beside the JSON.
    blocked = ("import runpy, sys\n"
               "for name in ('ml_collections', 'tensorflow', 'torch', 'transformers'):\n    sys.modules[name] = None\n"
               f"sys.argv = ['flash_sweep.py', '--smoke', '--out={tmp_path / 'bare.json'}', '--steps=1',"
               " '--windows=1']\n"
               f"runpy.run_path({str(REPO / 'benchmarks' / 'flash_sweep.py')!r}, run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| small | fwd+bwd | flash 64/64/64/4/2 |" in (tmp_path / "bare.md").read_text()
