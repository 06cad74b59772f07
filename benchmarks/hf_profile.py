"""What one HF PyTorch step does on the device: the SDPA kernel that ran, the top kernels, host syncs per step.

    python benchmarks/hf_profile.py --config=configs/pretrain.py:base --batch_size=64 --seq_len=512 \
        [--head=stock] [--attention_dropout=0] [--steps=3]

Runs a few warm-up steps of benchmarks/hf_pytorch_baseline.py's step, then `--steps` steps under
torch.profiler, and prints a markdown summary (benchmarks/same_call.py writes it for the profiled size):

- SDPA: the aten op each scaled_dot_product_attention call dispatched to (`_scaled_dot_product_flash_attention`
  is FlashAttention, `..._efficient_attention` the memory-efficient kernel, `..._cudnn_attention` cuDNN, `math`
  the unfused fallback) and the attention kernels on the device, per step;
- host syncs: reads of a device value on the host (`aten::_local_scalar_dense`: `.item()`, `bool(tensor)`; also
  counted outside the optimizer, since fused AdamW's CPU kernel reads each step count) and CUDA synchronize
  calls, per step, not counting the one synchronize that ends the profiled window;
- the top kernels by device time per step (top CPU ops where there is no GPU).
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hf_pytorch_baseline as baseline  # noqa: E402  (the step being profiled)

SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")
DEVICE_READ = "aten::_local_scalar_dense"
ATTENTION_KERNEL = ("flash", "fmha", "attention", "cudnn")


def profile_step(hf_step: Any, steps: int = 3):
    """`steps` steps of an HFStep under torch.profiler (CPU ops, and CUDA kernels on a GPU)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if hf_step.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        hf_step.run(steps)  # ends with one synchronize on CUDA
    return prof


def _inside(event, prefix: str) -> bool:
    """Whether a profiler event ran inside an op whose name starts with `prefix`."""
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith(prefix):
            return True
        parent = parent.cpu_parent
    return False


def summarize(events, steps: int, on_gpu: bool, top: int = 12) -> dict[str, Any]:
    """Per-step counts and times from torch.profiler events (`prof.events()`)."""
    reads_outside_optimizer = 0
    cpu_ops: collections.Counter = collections.Counter()
    cpu_us: collections.Counter = collections.Counter()
    kernel_us: collections.Counter = collections.Counter()
    kernel_calls: collections.Counter = collections.Counter()
    events = list(events)
    device_events = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
    # Kernels come as events of their own in current torch; older versions only attach them to the CPU op.
    kernels = [(e.name, e.time_range.elapsed_us()) for e in device_events] or [
        (k.name, k.duration) for e in events for k in getattr(e, "kernels", [])]
    for name, duration in kernels:
        kernel_us[name] += duration
        kernel_calls[name] += 1
    for event in events:
        if event.device_type == torch.autograd.DeviceType.CUDA:
            continue
        cpu_ops[event.name] += 1
        cpu_us[event.name] += event.self_cpu_time_total
        if event.name == DEVICE_READ and not _inside(event, "Optimizer.step"):
            reads_outside_optimizer += 1
    per = max(steps, 1)
    syncs = sum(cpu_ops[name] for name in SYNC_CALLS)
    sdpa = {name: count / per for name, count in sorted(cpu_ops.items())
            if name.startswith("aten::_scaled_dot_product") or name in ("aten::_flash_attention_forward",
                                                                        "aten::_efficient_attention_forward")}
    attention_kernels = {name: kernel_calls[name] / per for name in kernel_calls
                         if any(word in name.lower() for word in ATTENTION_KERNEL)}
    ranked, calls = (kernel_us, kernel_calls) if on_gpu else (cpu_us, cpu_ops)
    return {
        "steps": steps,
        "on_gpu": on_gpu,
        "sdpa_ops_per_step": sdpa,
        "attention_kernels_per_step": attention_kernels,
        "device_reads_per_step": cpu_ops[DEVICE_READ] / per,
        "device_reads_outside_optimizer_per_step": reads_outside_optimizer / per,
        "cuda_syncs_per_step": max(syncs - 1, 0) / per if on_gpu else 0.0,
        "kernel_launches_per_step": sum(kernel_calls.values()) / per,
        "device_ms_per_step": sum(kernel_us.values()) / per / 1e3,
        "top": [{"name": name, "ms_per_step": us / per / 1e3, "calls_per_step": calls[name] / per}
                for name, us in ranked.most_common(top)],
    }


def summarize_profile(prof, steps: int, on_gpu: bool) -> dict[str, Any]:
    return summarize(prof.events(), steps, on_gpu)


def to_markdown(summary: dict[str, Any], title: str = "") -> str:
    lines = [f"# {title}" if title else "# One HF PyTorch step under torch.profiler", ""]
    sdpa = ", ".join(f"`{name}` × {count:g}" for name, count in summary["sdpa_ops_per_step"].items()) or "none"
    lines.append(f"- SDPA dispatch per step: {sdpa}")
    kernels = ", ".join(f"`{name[:70]}` × {count:g}" for name, count in summary["attention_kernels_per_step"].items())
    lines.append(f"- attention kernels per step: {kernels or 'none on the device'}")
    lines.append(f"- host syncs per step: {summary['device_reads_per_step']:g} device-value reads "
                 f"(`{DEVICE_READ}`; {summary['device_reads_outside_optimizer_per_step']:g} outside the optimizer, "
                 f"whose fused CPU kernel reads its step count), {summary['cuda_syncs_per_step']:g} CUDA synchronize "
                 "calls (the one ending the profiled window not counted)")
    if summary["on_gpu"]:
        lines.append(f"- kernels: {summary['kernel_launches_per_step']:g} launches, "
                     f"{summary['device_ms_per_step']:.2f} ms of device time per step")
    lines += ["", "| " + ("kernel" if summary["on_gpu"] else "CPU op (no GPU)") + " | ms / step | calls / step |",
              "|---|---|---|"]
    lines += [f"| `{item['name'][:90]}` | {item['ms_per_step']:.3f} | {item['calls_per_step']:g} |"
              for item in summary["top"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--batch_size", type=int, required=True)
    parser.add_argument("--seq_len", type=int, required=True)
    parser.add_argument("--head", choices=baseline.HEADS, default="gathered")
    parser.add_argument("--compile", choices=baseline.COMPILE_MODES, default="none")
    parser.add_argument("--attention_dropout", type=float, default=None)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--override", action="append", type=lambda s: tuple(s.split("=", 1)), metavar="FIELD=VALUE")
    args = parser.parse_args(argv)
    from electra_jax import config as config_lib

    overrides = {k: baseline._parse(v) for k, v in (args.override or [])}
    overrides.update({"data.max_seq_length": args.seq_len, "train.batch_size": args.batch_size})
    config = config_lib.load(args.config, overrides)
    hf_step = baseline.HFStep(config, baseline.default_device(), head=args.head, compile_mode=args.compile,
                              attention_dropout=args.attention_dropout)
    hf_step.warm_up(args.warmup)
    prof = profile_step(hf_step, args.steps)
    summary = summarize_profile(prof, args.steps, hf_step.device.type == "cuda")
    sys.stdout.write(to_markdown(summary, f"{hf_step.describe()['impl']}: {hf_step.variant()}"))


if __name__ == "__main__":
    main()
