"""What every result row of a GPU call records about the call: commit, versions, card, clocks, power, peak.

Used by benchmarks/same_call.py (each driver) and benchmarks/gpu_session.py (the whole call). Standard library
only at import time; JAX, torch and transformers are imported where a function needs them.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import statistics
import subprocess
import threading
from pathlib import Path
from typing import Any, Iterator

REPO = Path(__file__).resolve().parents[1]
# Sampled during every timed window (names as `nvidia-smi --help-query-gpu` spells them).
SMI_SAMPLED = {"clocks.sm": "sm_clock_mhz", "clocks.mem": "mem_clock_mhz", "power.draw": "power_w",
               "temperature.gpu": "temperature_c"}
SMI_STATIC = {"name": "name", "memory.total": "memory_total_mib", "clocks.max.sm": "max_sm_clock_mhz",
              "clocks.max.mem": "max_mem_clock_mhz", "power.limit": "power_limit_w", "driver_version": "driver"}
# Output files larger than this do not come back from the GPU machine (16 MiB each, at most 8 files).
MAX_RETURNED_BYTES = 15 * 2**20


def nvidia_smi(fields: dict[str, str]) -> dict[str, Any] | None:
    """One `nvidia-smi --query-gpu` of GPU 0; None where there is no nvidia-smi (or it fails)."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(["nvidia-smi", "-i", "0", f"--query-gpu={','.join(fields)}",
                               "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0 or not done.stdout.strip():
        return None
    values = [value.strip() for value in done.stdout.strip().splitlines()[0].split(",")]
    result: dict[str, Any] = {}
    for key, value in zip(fields.values(), values):
        try:
            result[key] = float(value)
        except ValueError:
            result[key] = None if value.startswith("[") else value  # "[N/A]", "[Not Supported]"
    return result


class GpuMonitor:
    """Samples nvidia-smi clocks, power and temperature in a background thread while a window runs."""

    def __init__(self, period_s: float = 1.0):
        self.period_s = period_s
        self.available = shutil.which("nvidia-smi") is not None

    @contextlib.contextmanager
    def sampling(self) -> Iterator[list[dict]]:
        samples: list[dict] = []
        if not self.available:
            yield samples
            return
        stop = threading.Event()

        def loop():
            while True:
                sample = nvidia_smi(SMI_SAMPLED)
                if sample:
                    samples.append(sample)
                if stop.wait(self.period_s):
                    return

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield samples
        finally:
            stop.set()
            thread.join(timeout=15)


def summarize_samples(samples: list[dict]) -> dict[str, Any] | None:
    """min / median / max of each sampled quantity, and the number of samples; None without samples."""
    if not samples:
        return None
    summary: dict[str, Any] = {"samples": len(samples)}
    for key in SMI_SAMPLED.values():
        values = [s[key] for s in samples if isinstance(s.get(key), float)]
        if values:
            summary[key] = {"min": min(values), "median": statistics.median(values), "max": max(values)}
    return summary


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def commit_and_dirty() -> tuple[str, bool | None]:
    """The checkout's commit and whether tracked files differ from it. The GPU machine gets a copy of the tree
    without .git, so the launching session passes them as COMMIT and DIRTY (0 or 1)."""
    commit = os.environ.get("COMMIT") or (_git("rev-parse", "HEAD") or "").strip() or "unknown"
    if os.environ.get("DIRTY") in ("0", "1"):
        return commit, os.environ["DIRTY"] == "1"
    status = _git("status", "--porcelain", "--untracked-files=no")
    return commit, (bool(status.strip()) if status is not None else None)


def call_fields() -> dict[str, Any]:
    """The fields every row of a call carries: commit, dirty flag, command, versions, card limits."""
    import jax
    import torch
    import transformers

    commit, dirty = commit_and_dirty()
    return {"commit": commit, "dirty": dirty, "command": os.environ.get("SESSION_COMMAND", ""),
            "python_version": platform.python_version(), "jax_version": jax.__version__,
            "torch_version": torch.__version__, "transformers_version": transformers.__version__,
            "gpu_static": nvidia_smi(SMI_STATIC)}


def gpu_memory_mib() -> float | None:
    info = nvidia_smi({"memory.total": "memory_total_mib"})
    return info.get("memory_total_mib") if info else None


def configure_jax_memory(cap_gb: float | None) -> None:
    """JAX shares the card with torch: no preallocation, and at most `cap_gb` gigabytes (10^9 bytes: what an
    "80 GB" card holds, with room to spare) as a fraction of the card, if given.

    Must run before JAX initializes its GPU backend; values already in the environment win.
    """
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    total_mib = gpu_memory_mib() if cap_gb else None
    if cap_gb and total_mib:
        fraction = min(0.95, cap_gb * 1e9 / (total_mib * 2**20))
        os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", f"{fraction:.3f}")


def measure_peak(dtype: str, repeats: int = 10) -> dict[str, Any]:
    """The call's one measured matmul peak: electra_jax.benchmark's chain of [8192, 8192] products."""
    import jax

    from electra_jax import benchmark as benchmark_lib

    rates = benchmark_lib.measure_matmul_flops(dtype, repeats=repeats)
    device = jax.devices()[0]
    return {"method": f"jax: jitted chain of 32 {dtype} [8192, 8192] matmuls (512 on CPU), median of {repeats} "
                      "timed runs after one warm-up", "device": f"{device.platform}:{device.device_kind}",
            "tflops_median": statistics.median(rates) / 1e12, "tflops_min": min(rates) / 1e12,
            "tflops_max": max(rates) / 1e12}


def keep_profile_files(trace_dir: Path, out: Path, stem: str) -> list[str]:
    """Copies a jax.profiler trace and the step's HLO to `out` as flat files (small enough to come back), then
    removes `trace_dir`, whose nested folders would not. Returns what was kept."""
    kept = []
    traces = sorted(trace_dir.rglob("*.trace.json.gz"), key=os.path.getmtime)
    for source, name in ((traces[-1] if traces else None, f"{stem}.trace.json.gz"),
                         (trace_dir / "step_hlo.txt.gz", f"{stem}_hlo.txt.gz")):
        if source is not None and source.exists() and source.stat().st_size <= MAX_RETURNED_BYTES:
            shutil.copyfile(source, out / name)
            kept.append(name)
    shutil.rmtree(trace_dir, ignore_errors=True)
    return kept
