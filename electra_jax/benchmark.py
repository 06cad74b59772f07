"""Times the real jitted ELECTRA pre-training step on synthetic data and reports throughput and MFU.

    python -m electra_jax.benchmark --config=configs/pretrain.py:base --batch_size=64 --seq_len=512 --steps=30 \
        --dtype=bfloat16 --attention=cudnn

The step is `train_state.train_step` (the one `pretrain` runs) with `train_state.Trainer`'s shardings: dynamic
masking, generator, Gumbel sampling, discriminator, clipping and the optimizer update, compiled ahead of time
with the state donated (`PreparedStep`). Timing starts after warm-up steps; steps are dispatched back to back
(no host sync inside a window) and each window ends with `block_until_ready`; step_ms is the median over
windows of window time / window steps (`time_windows`, which the PyTorch baseline uses too).

MFU = model FLOPs per step (`electra_jax.flops.model_flops_per_step`) / step time / a peak: `mfu` against a
matmul peak measured in this process (a chain of large jnp.dot calls in the step's compute dtype),
`mfu_datasheet` against the card's datasheet dense bf16 peak (989 TFLOP/s for H100/H200 SXM). Prints one JSON
line. Imports no TensorFlow. benchmarks/same_call.py compares this step with HF PyTorch in one process.
"""

from __future__ import annotations

import gzip
import json
import os
import statistics
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from electra_jax import attention as attention_lib
from electra_jax import config as config_lib
from electra_jax import flops as flops_lib


def synthetic_batch(batch_size: int, seq_len: int, vocab_size: int, config: Any, seed: int = 0) -> dict:
    """Full-length two-segment examples of random word pieces: [CLS] a [SEP] b [SEP], no padding.

    Pre-training examples are packed to the full length, so no padding is the representative case.
    """
    from electra_jax.data.pipeline import synthetic_batches

    return next(synthetic_batches(per_host_batch_size=batch_size, seq_len=seq_len, vocab_size=vocab_size, seed=seed,
                                  special_ids=config_lib.special_ids(config), full_length=True))


# Dense bf16 tensor-core peaks from NVIDIA's datasheets (without sparsity), by a substring of the device name.
# H100 SXM ("NVIDIA H100 80GB HBM3") and H200 SXM ("NVIDIA H200") share the same compute dies and clocks.
DATASHEET_BF16_TFLOPS = (("H200 NVL", 835.0), ("H200", 989.0), ("H100 NVL", 835.0), ("H100 PCIe", 756.0),
                         ("H100", 989.0))


def datasheet_peak_flops(device_name: str, dtype: str = "bfloat16") -> float | None:
    """The card's datasheet dense bf16 FLOP/s (the denominator of `mfu_datasheet`); None for other cards/dtypes."""
    if dtype != "bfloat16":
        return None
    for fragment, tflops in DATASHEET_BF16_TFLOPS:
        if fragment in device_name:
            return tflops * 1e12
    return None


def time_windows(run_steps: Callable[[int], Any], steps: int, window: int) -> list[float]:
    """Seconds per step of each timed window; `run_steps(n)` dispatches n steps and waits for the last one.

    One host sync per window, none between its steps, so the host keeps queueing work while the device runs.
    Shared by electra_jax and the PyTorch baseline so both sides are timed the same way.
    """
    window = max(1, min(window, steps))
    per_step, done = [], 0
    while done < steps:
        count = min(window, steps - done)
        start = time.perf_counter()
        run_steps(count)
        per_step.append((time.perf_counter() - start) / count)
        done += count
    return per_step


def measure_matmul_peak(dtype: str, size: int | None = None, repeats: int = 3) -> float:
    """Achievable dense-matmul FLOP/s of device 0 in `dtype`: a jitted chain of [n, n] x [n, n] products.

    The chain (x <- x @ w) keeps XLA from removing repeated products; w is scaled by 1/sqrt(n) so values
    stay finite. The best of a few timed runs is the peak.
    """
    return max(measure_matmul_flops(dtype, size, repeats))


def measure_matmul_flops(dtype: str, size: int | None = None, repeats: int = 3) -> list[float]:
    """FLOP/s of each of `repeats` timed runs of measure_matmul_peak's matmul chain (after one warm-up run)."""
    backend = jax.default_backend()
    n = size or (8192 if backend in ("gpu", "tpu") else 512)
    chain = 32 if backend in ("gpu", "tpu") else 4
    compute = jnp.bfloat16 if dtype == "bfloat16" else jnp.float32
    key_x, key_w = jax.random.split(jax.random.key(0))
    x = jax.random.normal(key_x, (n, n), compute)
    w = (jax.random.normal(key_w, (n, n), jnp.float32) / np.sqrt(n)).astype(compute)

    @jax.jit
    def run(x, w):
        return jax.lax.fori_loop(0, chain, lambda _, acc: jnp.dot(acc, w), x)

    run(x, w).block_until_ready()  # compile + warm-up
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(x, w).block_until_ready()
        rates.append(2.0 * n**3 * chain / (time.perf_counter() - start))
    return rates


def peak_memory_gib(device: jax.Device) -> float | None:
    """Peak bytes the allocator had in use on `device`, in GiB; None where the backend does not track it."""
    try:
        stats = device.memory_stats()
    except Exception:  # CPU backends may raise instead of returning None
        return None
    if not stats or "peak_bytes_in_use" not in stats:
        return None
    return stats["peak_bytes_in_use"] / 2**30


def apply_switches(config: Any, batch_size: int, seq_len: int, dtype: str | None = None,
                   attention: str | None = None, scan_layers: bool | None = None, remat: str | None = None,
                   dropout_prng: str | None = None) -> Any:
    """Sets the benchmark's shape and model switches on an unfinalized config, then validates it."""
    config.train.batch_size = batch_size
    config.data.max_seq_length = seq_len
    config.data.synthetic = True
    config.objective.max_predictions_per_seq = 0  # re-derived for seq_len by finalize
    if dtype is not None:
        config.model.dtype = dtype
    if attention is not None:
        config.model.attention = attention
    if scan_layers is not None:
        config.model.scan_layers = scan_layers
    if remat is not None:
        config.model.remat = remat
    if dropout_prng is not None:
        config.model.dropout_prng = dropout_prng
    return config_lib.finalize(config)


def compile_train_step(trainer: Any, batch_size: int):
    """The AOT-compiled `train_state.train_step` exactly as `pretrain` compiles it (no eval step)."""
    return trainer.compile(batch_size, log_memory=False, include_eval=False).train_step


class PreparedStep:
    """One compiled pre-training step with its state and batch on device, ready to be timed in windows.

    Several can live in one process (the same-call comparison holds two beside the PyTorch steps): each
    compiles once, and `run(n)` dispatches n steps back to back and waits for the last.
    """

    def __init__(self, config: Any):
        from electra_jax import sharding as sharding_lib
        from electra_jax import train_state

        self.config = config
        self.batch_size, self.seq_len = config.train.batch_size, config.data.max_seq_length
        self.device = jax.devices()[0]
        trainer = train_state.Trainer(config, sharding_lib.make_mesh(config.mesh))
        self.state = trainer.init_state(config.train.seed)
        start = time.perf_counter()
        self.step = compile_train_step(trainer, self.batch_size)
        self.compile_s = time.perf_counter() - start
        host_batch = synthetic_batch(self.batch_size, self.seq_len, config.model.vocab_size, config, config.train.seed)
        self.batch = {k: jax.device_put(v, trainer.batch_sharding) for k, v in host_batch.items()}
        # A copy of the base key: the state (and with it state.rng) is donated to every step.
        self.rng = jax.device_put(np.asarray(jax.device_get(self.state.rng)), trainer.replicated)
        self.metrics = None

    def run(self, count: int) -> None:
        for _ in range(count):
            self.state, self.metrics = self.step(self.state, self.batch, self.rng)
        jax.block_until_ready((self.state, self.metrics))

    def loss(self) -> float:
        return float(jax.device_get(self.metrics["loss"])) if self.metrics is not None else float("nan")

    def profile(self, profile_dir: str, steps: int = 3) -> None:
        """Traces `steps` steps with jax.profiler into `profile_dir`, beside the compiled step's HLO."""
        os.makedirs(profile_dir, exist_ok=True)
        with gzip.open(os.path.join(profile_dir, "step_hlo.txt.gz"), "wt") as f:  # maps kernels to model code
            f.write(self.step.as_text())
        with jax.profiler.trace(profile_dir):
            self.run(steps)

    def close(self) -> None:
        """Frees the state and batch (the compiled step stays, so a later step can reuse its autotuning)."""
        self.state = self.batch = self.metrics = None

    def describe(self) -> dict[str, Any]:
        """The row fields that say what was run: device, model switches, versions."""
        m = self.config.model
        return {"impl": "electra_jax", "size": self.config.size, "batch_size": self.batch_size,
                "seq_len": self.seq_len, "device": f"{self.device.platform}:{self.device.device_kind}",
                "num_devices": jax.device_count(), "dtype": m.dtype, "attention": m.attention,
                "attention_dropout": m.attention_dropout if m.attention in attention_lib.WITH_DROPOUT else 0.0,
                "scan_layers": bool(m.scan_layers), "remat": m.remat, "dropout_prng": m.dropout_prng,
                "objective": self.config.objective.kind, "jax_version": jax.__version__}


def run_benchmark(config: Any, steps: int = 20, warmup: int = 3, window: int = 5, measure_peak: bool = True,
                  peak_flops: float | None = None, profile_dir: str | None = None,
                  profile_steps: int = 3) -> dict[str, Any]:
    """Compiles and times the pre-training step for a finalized config; returns the JSON row as a dict.

    With `profile_dir`, `profile_steps` more steps run under `jax.profiler.trace(profile_dir)` after the
    timed ones (summarise the trace with `python -m electra_jax.profile_summary`).
    """
    prepared = PreparedStep(config)
    prepared.run(warmup)
    per_step = time_windows(prepared.run, steps, window)
    loss = prepared.loss()
    memory = peak_memory_gib(prepared.device)
    if profile_dir:
        prepared.profile(profile_dir, profile_steps)
    prepared.close()

    step_s = statistics.median(per_step)
    model_flops = flops_lib.model_flops_per_step(config, prepared.batch_size, prepared.seq_len)
    if peak_flops is None and measure_peak:
        peak_flops = measure_matmul_peak(config.model.dtype)
    datasheet = datasheet_peak_flops(prepared.device.device_kind, config.model.dtype)
    row = prepared.describe()
    row.update({
        "step_ms": step_s * 1e3,
        "step_ms_min": min(per_step) * 1e3,
        "tokens_per_sec": prepared.batch_size * prepared.seq_len / step_s,
        "model_tflops_per_step": model_flops / 1e12,
        "mfu": model_flops / step_s / peak_flops if peak_flops else None,
        "peak_tflops_measured": peak_flops / 1e12 if peak_flops else None,
        "mfu_datasheet": model_flops / step_s / datasheet if datasheet else None,
        "peak_tflops_datasheet": datasheet / 1e12 if datasheet else None,
        "peak_memory_gb": memory,
        "steps": steps,
        "warmup": warmup,
        "compile_s": prepared.compile_s,
        "final_loss": loss,
    })
    return row


def main(argv) -> None:
    del argv
    from absl import flags

    flag = flags.FLAGS
    try:
        config = apply_switches(_CONFIG.value, flag.batch_size or _CONFIG.value.train.batch_size,
                                flag.seq_len or _CONFIG.value.data.max_seq_length, flag.dtype, flag.attention,
                                flag.scan_layers, flag.remat, flag.dropout_prng)
    except ValueError as e:  # name the flag the user typed, not the config field it sets
        message = str(e)
        for name, field in (("seq_len", "config.data.max_seq_length"), ("batch_size", "config.train.batch_size")):
            if flag[name].present:
                message = message.replace(field, f"--{name}", 1)
        raise ValueError(message) from None
    row = run_benchmark(config, steps=flag.steps, warmup=flag.warmup, window=flag.window,
                        measure_peak=flag.measure_peak,
                        peak_flops=flag.peak_tflops * 1e12 if flag.peak_tflops else None,
                        profile_dir=flag.profile_dir, profile_steps=flag.profile_steps)
    if flag.variant:
        row["variant"] = flag.variant
    print(json.dumps(row), flush=True)


def define_flags():
    from absl import flags
    from ml_collections import config_flags

    config = config_flags.DEFINE_config_file("config", None, "configs/pretrain.py:SIZE (with --config.x=y overrides)",
                                             lock_config=False)
    flags.mark_flags_as_required(["config"])
    flags.DEFINE_integer("batch_size", None, lower_bound=1,
                         help="global batch size (default: the config's train.batch_size)")
    flags.DEFINE_integer("seq_len", None, lower_bound=1,
                         help="sequence length (default: the config's data.max_seq_length)")
    flags.DEFINE_integer("steps", 20, lower_bound=1, help="timed steps")
    flags.DEFINE_integer("warmup", 3, "untimed steps after compilation")
    flags.DEFINE_integer("window", 5, lower_bound=1, help="steps dispatched back to back per timed window")
    flags.DEFINE_enum("dtype", None, list(config_lib.DTYPES), "compute dtype (parameters stay float32)")
    flags.DEFINE_enum("attention", None, list(config_lib.ATTENTION_IMPLS), "attention implementation")
    flags.DEFINE_bool("scan_layers", None, "scan over layers (one compiled layer per network)")
    flags.DEFINE_enum("remat", None, list(config_lib.REMAT_POLICIES), "rematerialization policy")
    flags.DEFINE_enum("dropout_prng", None, list(config_lib.DROPOUT_PRNGS), "PRNG for the dropout masks")
    flags.DEFINE_string("profile_dir", None, "also trace a few steps with jax.profiler into this folder")
    flags.DEFINE_integer("profile_steps", 3, "steps traced when --profile_dir is set")
    flags.DEFINE_bool("measure_peak", True, "measure the matmul peak for MFU (else mfu is null)")
    flags.DEFINE_float("peak_tflops", None, "use this peak (TFLOP/s) instead of measuring one")
    flags.DEFINE_string("variant", "", "a free-form label copied into the JSON row")
    return config


if __name__ == "__main__":
    from electra_jax import cli

    _CONFIG = define_flags()
    cli.run(main)
