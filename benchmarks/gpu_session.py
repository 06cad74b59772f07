"""The whole GPU call: one same_call.py driver per (pass, size) inside one time budget, then one results file.

    python benchmarks/gpu_session.py --out=DIR --result=DIR/2026-12-02-h200.json --scratch=TMP \
        [--budget_s=545] [--passes=headline,faithful] [--sizes=small,base,large] [--flag_sets=cublaslt,...]

benchmarks/run_gpu.sh calls this after setting up the environment. The drivers run in priority order: the
headline pass for every size (Base profiled), then the faithful pass and the flash pass when named (Base first),
then one headline Base driver
per XLA flag set. Each driver runs under a timeout of the budget left minus the time reserved for the headline
drivers still to come (ESTIMATE_S), so a slow size cannot starve a later one; rows a driver wrote before it was
stopped are kept. After every driver the results file is rewritten (benchmarks/make_table.py collect), so an
outer time limit loses nothing already measured.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS))
import make_table  # noqa: E402  (needs the path above)
import same_call  # noqa: E402  (standard library only at import time)

# Expected seconds per driver on a cold H200 (nothing compiled yet), from the 2026-11-26 logs; docs/SPEED.md
# ("Device time") derives each. The first driver of a call also pays COLD_START_S (CUDA libraries, first JAX).
ESTIMATE_S = {("headline", "small"): 136, ("headline", "base"): 166, ("headline", "large"): 144,
              ("faithful", "small"): 93, ("faithful", "base"): 113, ("faithful", "large"): 108,
              # flash: the faithful pass's HF stages, and a guess for our side (no run yet): the cuDNN step's compile
              ("flash", "small"): 93, ("flash", "base"): 113, ("flash", "large"): 108,
              ("flags", "base"): 120}
COLD_START_S = 63
# --hf_compile_graph (run_gpu.sh: HF_COMPILE_GRAPH=1) adds same_call.py's hf_compile_graph stage to each driver that
# compiles, with the driver's own estimate of it (a guess).
COMPILE_GRAPH_S = same_call.COMPILE_GRAPH_ESTIMATE_S
SMOKE_ESTIMATE_S = 60
MIN_DRIVER_S = 40  # below this a driver cannot even build both steps: it is recorded as skipped
KILL_GRACE_S = 10  # a driver past its limit gets SIGTERM and up to this long before SIGKILL
wall_clock = time.time  # seconds since the epoch, as run_gpu.sh's --started_at (a test replaces this alone)
FAITHFUL_ORDER = ("base", "small", "large")
DROPOUT_PASSES = ("faithful", "flash")  # attention dropout on both sides: after the headline, Base first
PROFILE_SIZE = "base"

# Extra electra_jax variants (XLA_FLAGS), each run only when named in --flag_sets (run_gpu.sh: XLA_FLAG_SETS).
# docs/SPEED.md gives each one's prediction; the run measures it against the same call's HF variants.
XLA_FLAG_SETS = {
    "cublaslt": "--xla_gpu_enable_cublaslt=true",
    "cudnn_layer_norm": "--xla_gpu_enable_cudnn_layer_norm=true",
    "no_triton_gemm": "--xla_gpu_enable_triton_gemm=false",
    "triton_gemm_any": "--xla_gpu_triton_gemm_any=true",
    "cudnn_gemm_fusion": "--xla_gpu_cudnn_gemm_fusion_level=2",
}


def flags_known(xla_flags: str, python: str = sys.executable) -> bool:
    """Whether this XLA accepts `xla_flags` (it aborts at start-up on an unknown one); checked on the CPU backend,
    which parses the same flags, in a second or two."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=xla_flags)
    code = "import jax; jax.numpy.zeros(1).block_until_ready()"
    return subprocess.run([python, "-c", code], env=env, capture_output=True, timeout=300).returncode == 0


def plan(passes: list[str], sizes: list[str], flag_sets: list[str], smoke: bool = False,
         compile_graph: bool = False) -> list[dict]:
    """The drivers of a call, most important first (`compile_graph`: the headline drivers also time the compiled
    HF step in a CUDA graph)."""
    unknown = [name for name in flag_sets if name not in XLA_FLAG_SETS]
    if unknown:
        raise SystemExit(f"unknown XLA flag set(s) {unknown}; known: {sorted(XLA_FLAG_SETS)}")
    items = []
    if "headline" in passes:
        items += [{"pass": "headline", "size": size, "profile": size == (sizes[0] if smoke else PROFILE_SIZE)}
                  for size in sizes]
    for extra in DROPOUT_PASSES:
        if extra in passes:
            items += [{"pass": extra, "size": size} for size in FAITHFUL_ORDER if size in sizes]
            items += [{"pass": extra, "size": size} for size in sizes if size not in FAITHFUL_ORDER]
    items += [{"pass": "headline", "size": "base", "flag_set": name, "estimate": "flags"} for name in flag_sets]
    for item in items:
        item["estimate_s"] = SMOKE_ESTIMATE_S if smoke else ESTIMATE_S[(item.get("estimate", item["pass"]),
                                                                         item["size"])]
    if items and not smoke:
        items[0]["estimate_s"] += COLD_START_S
        if compile_graph:
            for item in items:
                if item["pass"] == "headline" and not item.get("flag_set"):
                    item["estimate_s"] += COMPILE_GRAPH_S[item["size"]]
    return items


def worth_starting(item: dict, deadline_s: float) -> bool:
    """Headline drivers start with any usable time; the extras only with most of their estimate left."""
    if deadline_s < MIN_DRIVER_S:
        return False
    return item["pass"] == "headline" and not item.get("flag_set") or deadline_s >= 0.6 * item["estimate_s"]


def reserve_after(items: list[dict], index: int) -> float:
    """Seconds kept back for the headline drivers after `index` (the flag-set runs are extras: none kept)."""
    return sum(item["estimate_s"] for item in items[index + 1:] if item["pass"] == "headline"
               and not item.get("flag_set"))


def compile_won(rows_file: Path, size: str) -> bool:
    """Whether torch.compile (alone or in a CUDA graph) was the fastest HF variant of the headline pass at `size`
    in this call."""
    if not rows_file.exists():
        return False
    rows = [json.loads(line) for line in rows_file.read_text().splitlines() if line.strip()]
    hf = [r for r in rows if r.get("kind") == "measure" and r.get("pass") == "headline" and r.get("size") == size
          and str(r.get("impl", "")).startswith("hf_pytorch") and not r.get("flag_set")]
    return bool(hf) and max(hf, key=lambda r: r["tokens_per_sec"])["impl"].startswith("hf_pytorch_compile")


def driver_command(item: dict, args: argparse.Namespace, rows_file: Path, deadline_s: float) -> list[str]:
    command = [sys.executable, str(BENCHMARKS / "same_call.py"), f"--size={item['size']}", f"--pass={item['pass']}",
               f"--rows={rows_file}", f"--out_dir={args.out}", f"--peak_file={args.scratch}/peak.json",
               f"--deadline_at={wall_clock() + deadline_s:.0f}"]
    if item.get("profile"):
        command.append("--profile")
    if item.get("flag_set"):
        command.append(f"--flag_set={item['flag_set']}")
    if item["pass"] in DROPOUT_PASSES and not compile_won(rows_file, item["size"]):
        command.append("--hf_compile=none")
    elif args.hf_compile_graph and not item.get("flag_set"):
        command.append("--hf_compile_graph")
    if args.smoke:
        command += ["--smoke", "--steps=4", "--window=2", "--warmup=1"]
    return command


def run_with_timeout(command: list[str], env: dict, log, timeout_s: float, every=None) -> int:
    """Runs a driver in its own process group; past `timeout_s` the whole group (torch.compile's worker processes
    included) gets SIGTERM, then SIGKILL. `every` = (seconds, callback): called that often while it runs (the
    results file is rewritten, so an outer limit that kills the whole call keeps the rows of the driver in flight).
    Returns the exit status, 124 when it timed out."""
    process = subprocess.Popen(command, env=env, stdout=log, stderr=log, start_new_session=True)
    end = time.monotonic() + timeout_s
    try:
        while True:
            try:
                return process.wait(timeout=max(0.0, min(end - time.monotonic(), every[0] if every else timeout_s)))
            except subprocess.TimeoutExpired:
                if time.monotonic() >= end:
                    raise
                every[1]()
    except subprocess.TimeoutExpired:
        for sig, grace in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, 30)):
            try:
                os.killpg(process.pid, sig)
                process.wait(timeout=grace)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        try:
            os.killpg(process.pid, signal.SIGKILL)  # whatever of the group outlived its leader
        except ProcessLookupError:
            pass
        return 124


def run_session(args: argparse.Namespace) -> dict:
    scratch = Path(args.scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    rows_file = scratch / "rows.jsonl"
    items = plan(args.passes.split(","), args.sizes.split(","), [s for s in args.flag_sets.split(",") if s],
                 args.smoke, args.hf_compile_graph)
    # The budget counts from run_gpu.sh's start (--started_at), its set-up included; a driver stopped at its
    # limit may take KILL_GRACE_S more to go.
    started = time.monotonic() - (max(0.0, wall_clock() - args.started_at) if args.started_at else 0.0)
    log = open(args.log, "a") if args.log else sys.stderr

    def say(line: str) -> None:  # progress into the log, and to the console (the GPU tool shows its tail)
        print(line, file=log, flush=True)
        if log is not sys.stderr:
            print(line, flush=True)

    for index, item in enumerate(items):
        left = args.budget_s - (time.monotonic() - started)
        deadline = left - reserve_after(items, index) - KILL_GRACE_S
        label = f"{item['pass']}/{item['size']}" + (f" +{item['flag_set']}" if item.get("flag_set") else "")
        if not worth_starting(item, deadline):
            say(f"=== {label}: skipped, {left:.0f}s of the budget left, {left - deadline:.0f}s kept for later "
                "headline runs")
            make_table.append_row(rows_file, {"kind": "skipped", "stage": "driver", "pass": item["pass"],
                                              "size": item["size"], "flag_set": item.get("flag_set"),
                                              "error": f"skipped: {left:.0f}s of the budget left"})
            continue
        env = dict(os.environ)
        if item.get("flag_set"):
            env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {XLA_FLAG_SETS[item['flag_set']]}".strip()
            if not flags_known(XLA_FLAG_SETS[item["flag_set"]]):
                say(f"!!! {label}: this XLA does not know {XLA_FLAG_SETS[item['flag_set']]}")
                make_table.append_row(rows_file, {"kind": "error", "stage": "driver", "pass": item["pass"],
                                                  "size": item["size"], "flag_set": item["flag_set"],
                                                  "error": f"unknown XLA flag: {XLA_FLAG_SETS[item['flag_set']]}"})
                continue
        command = driver_command(item, args, rows_file, deadline)
        say(f"=== {label} (limit {deadline:.0f}s, estimate {item['estimate_s']}s, "
            f"{time.monotonic() - started:.0f}s elapsed): {' '.join(command)}")
        begin = time.monotonic()
        status = run_with_timeout(command, env, log, deadline, every=(
            30.0, lambda: make_table.write_results(rows_file, args.result, card=args.card, date=args.date)))
        wall = time.monotonic() - begin
        if status != 0:
            error = "timed out" if status == 124 else f"exit status {status}"
            say(f"!!! {label}: {error} after {wall:.0f}s")
            make_table.append_row(rows_file, {"kind": "error", "stage": "driver", "pass": item["pass"],
                                              "size": item["size"], "flag_set": item.get("flag_set"), "error": error})
        make_table.append_row(rows_file, {"kind": "driver", "stage": "driver", "pass": item["pass"],
                                          "size": item["size"], "flag_set": item.get("flag_set"), "rc": status,
                                          "wall_s": wall, "limit_s": deadline, "estimate_s": item["estimate_s"]})
        make_table.write_results(rows_file, args.result, card=args.card, date=args.date)
    document = make_table.write_results(rows_file, args.result, card=args.card, date=args.date)
    say(f"total {time.monotonic() - started:.0f}s")
    return document


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="", help="the folder whose files come back (profiles go here)")
    parser.add_argument("--result", default="", help="the results JSON file to write")
    parser.add_argument("--scratch", default="", help="a folder for the rows and the call's peak")
    parser.add_argument("--check_flags", default="", help="only check that this XLA accepts these XLA_FLAGS")
    parser.add_argument("--log", default="", help="append the drivers' output here (default: stderr)")
    parser.add_argument("--budget_s", type=float, default=545)
    parser.add_argument("--passes", default="headline,faithful")
    parser.add_argument("--sizes", default="small,base,large")
    parser.add_argument("--flag_sets", default="", help=f"comma-separated names from {sorted(XLA_FLAG_SETS)}")
    parser.add_argument("--card", default="")
    parser.add_argument("--date", default="")
    parser.add_argument("--started_at", type=float, default=0.0,
                        help="unix time the call started (run_gpu.sh's start): the budget counts from it")
    parser.add_argument("--hf_compile_graph", action="store_true",
                        help="drivers that compile HF also time the compiled step in one CUDA graph")
    parser.add_argument("--smoke", action="store_true")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.check_flags:
        sys.exit(0 if flags_known(args.check_flags) else 1)
    for name in ("out", "result", "scratch"):
        if not getattr(args, name):
            sys.exit(f"gpu_session.py: --{name} is required")
    run_session(args)


if __name__ == "__main__":
    main()
