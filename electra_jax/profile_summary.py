"""Where the time of a profiled step goes: device time per category, from a `jax.profiler` trace.

    python -m electra_jax.benchmark --config=configs/pretrain.py:base ... --profile_dir=/tmp/prof --profile_steps=3
    python -m electra_jax.profile_summary --profile_dir=/tmp/prof --steps=3     # or: ... profile_summary /tmp/prof

Reads the newest `*.trace.json.gz` under the folder (written by `jax.profiler.trace`) and, when present, the
compiled step's HLO (`step_hlo.txt.gz`, written by the benchmark) to map every device op back to the model
code that produced it through its `op_name` metadata (the JAX name stack: module path, `jvp(...)` for the
forward pass, `transpose(jvp(...))` for the backward pass). Prints a markdown table of device milliseconds
per step by category and the most expensive ops. Needs only the standard library (and absl for its command line).
"""

from __future__ import annotations

import collections
import gzip
import json
import os
import re
from collections.abc import Iterable, Sequence

# (category, pattern on the kernel name, pattern on the op_name); the first match wins.
_RULES = (
    ("attention (fused kernel)", r"fmha|flash|cudnn|splash|attention", None),
    ("dropout masks (RNG + apply)", None, r"(?i)dropout|bernoulli"),
    ("matmul", r"(?i)gemm|cublas|nvjet|cutlass|xmma|matmul|dot|sm90_", r"dot_general$"),
    ("copies / transposes", r"(?i)memcpy|memset|^copy|transpose", None),
    ("optimizer + update", None, r"^(?!.*(jvp|transpose)\().*"),
    ("LayerNorm", None, r"LayerNorm"),
    ("masking, sampling, losses", None, r"_uniform|categorical|gumbel|randint|log_softmax|logsumexp|sigmoid"),
    ("softmax (attention probs)", None, r"softmax|reduce_max"),
)
OTHER = "other fusions (bias, GELU, residual, reductions)"
_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=.*?metadata=\{[^}]*op_name=\"((?:[^\"\\]|\\.)*)\"")


def find_trace(profile_dir: str) -> str:
    """The newest `*.trace.json.gz` under `profile_dir` (jax.profiler writes plugins/profile/<time>/)."""
    found = []
    for root, _, files in os.walk(profile_dir):
        found += [os.path.join(root, f) for f in files if f.endswith(".trace.json.gz")]
    if not found:
        raise FileNotFoundError(f"no *.trace.json.gz under {profile_dir}: was it written by jax.profiler.trace?")
    return max(found, key=os.path.getmtime)


def op_names_from_hlo(lines: Iterable[str]) -> dict[str, str]:
    """HLO instruction name -> its op_name metadata, for every instruction that has one."""
    names = {}
    for line in lines:
        m = _INSTR.match(line)
        if m:
            names[m.group(1)] = m.group(2)
    return names


def device_events(trace: dict) -> list[dict]:
    """Complete ('X') events of XLA ops on accelerator devices, or on the host when there is none (CPU)."""
    events = trace.get("traceEvents", [])
    procs = {e["pid"]: e.get("args", {}).get("name", "") for e in events
             if e.get("ph") == "M" and e.get("name") == "process_name"}
    device_pids = {pid for pid, name in procs.items() if re.search(r"/device:(GPU|TPU)", name)}
    ops = [e for e in events if e.get("ph") == "X" and "hlo_op" in e.get("args", {})]
    if device_pids:
        ops = [e for e in ops if e["pid"] in device_pids]
    return ops


def instruction(event: dict, op_names: dict[str, str]) -> str:
    """The HLO instruction an event ran. On GPU, XLA runs most kernels inside command buffers (CUDA graphs):
    the event's hlo_op is then `command_buffer_N` and the kernel is named after the fusion, with `_N` for
    the instruction's `.N` (`loop_add_fusion_17` is `%loop_add_fusion.17`)."""
    hlo_op = event["args"]["hlo_op"]
    if hlo_op in op_names or not hlo_op.startswith("command_buffer"):
        return hlo_op
    kernel = event["name"]
    dotted = re.sub(r"_(\d+)$", r".\1", kernel)
    for candidate in (dotted, kernel):
        if candidate in op_names:
            return candidate
    return kernel


def classify(kernel: str, op_name: str) -> str:
    for category, kernel_pattern, op_pattern in _RULES:
        if kernel_pattern and re.search(kernel_pattern, kernel):
            return category
        if op_pattern and op_name and re.search(op_pattern, op_name):
            return category
    return OTHER


def phase(op_name: str) -> str:
    if "transpose(" in op_name:
        return "backward"
    if "jvp(" in op_name:
        return "forward"
    return "update" if op_name else "unattributed (library kernels, copies)"


def summarize(events: list[dict], op_names: dict[str, str], steps: int, top: int = 15) -> dict:
    """Device microseconds per step by category and by phase, and the `top` most expensive ops."""
    by_category = collections.Counter()
    by_phase = collections.Counter()
    by_op = collections.Counter()
    op_detail = {}
    for e in events:
        hlo_op = instruction(e, op_names)
        op_name = op_names.get(hlo_op, "")
        dur = float(e.get("dur", 0.0))
        by_category[classify(e["name"], op_name)] += dur
        by_phase[phase(op_name)] += dur
        by_op[hlo_op] += dur
        op_detail[hlo_op] = (e["name"], op_name)
    total = sum(by_category.values())
    per = max(steps, 1)
    return {
        "device_ms_per_step": total / per / 1e3,
        "categories": {k: v / per / 1e3 for k, v in by_category.most_common()},
        "phases": {k: v / per / 1e3 for k, v in by_phase.most_common()},
        "top_ops": [{"hlo_op": k, "kernel": op_detail[k][0], "op_name": op_detail[k][1], "ms": v / per / 1e3}
                    for k, v in by_op.most_common(top)],
    }


def load(profile_dir: str, steps: int, top: int = 15) -> dict:
    with gzip.open(find_trace(profile_dir), "rt") as f:
        trace = json.load(f)
    hlo_path = os.path.join(profile_dir, "step_hlo.txt.gz")
    op_names = {}
    if os.path.exists(hlo_path):
        with gzip.open(hlo_path, "rt") as f:
            op_names = op_names_from_hlo(f)
    return summarize(device_events(trace), op_names, steps, top)


def to_markdown(summary: dict) -> str:
    total = summary["device_ms_per_step"] or 1.0
    lines = [f"device time per step: {summary['device_ms_per_step']:.2f} ms", "",
             "| category | ms / step | share |", "|---|---|---|"]
    lines += [f"| {k} | {v:.2f} | {100 * v / total:.1f}% |" for k, v in summary["categories"].items()]
    lines += ["", "| phase | ms / step | share |", "|---|---|---|"]
    lines += [f"| {k} | {v:.2f} | {100 * v / total:.1f}% |" for k, v in summary["phases"].items()]
    lines += ["", "| op | kernel | ms / step | model code (op_name) |", "|---|---|---|---|"]
    for op in summary["top_ops"]:
        lines.append(f"| {op['hlo_op']} | {op['kernel'][:40]} | {op['ms']:.3f} | {op['op_name'][-90:]} |")
    return "\n".join(lines)


def define_flags() -> None:
    """Flags are defined only when run as a program, so importing this module defines none."""
    from absl import flags

    flags.DEFINE_string("profile_dir", None, "The folder `jax.profiler.trace` wrote (the benchmark's --profile_dir); "
                        "may also be given as the one positional argument.")
    flags.DEFINE_integer("steps", 3, "Steps the trace holds (the benchmark's --profile_steps).", lower_bound=1)
    flags.DEFINE_integer("top", 15, "How many of the most expensive ops to list.", lower_bound=0)
    flags.DEFINE_string("json", None, "Also write the summary here (JSON).")


def main(argv: Sequence[str]) -> None:
    from absl import app, flags

    args = flags.FLAGS
    if len(argv) > 2 or (len(argv) == 2 and args.profile_dir):
        raise app.UsageError("give the trace folder once: --profile_dir=DIR or one positional DIR", exitcode=2)
    profile_dir = args.profile_dir or (argv[1] if len(argv) == 2 else None)
    if not profile_dir:
        raise app.UsageError("--profile_dir is required (the folder `jax.profiler.trace` wrote)", exitcode=2)
    summary = load(profile_dir, args.steps, args.top)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    print(to_markdown(summary))


if __name__ == "__main__":
    from electra_jax import cli

    define_flags()
    cli.run(main)
