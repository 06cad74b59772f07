"""Times the attention kernels alone at ELECTRA's shapes: XLA's (dropout), cuDNN's (no dropout) and our Pallas flash
kernel (dropout) over a list of tilings, forward and forward + backward, in one process on one GPU.

    COMMIT=<hash> python3 benchmarks/flash_sweep.py --out=$OUT/flash_sweep.json     # 1.5-2 minutes on a GPU
    python benchmarks/flash_sweep.py --smoke --out=/tmp/flash_sweep.json            # the same on CPU, tiny shapes

It answers, in a couple of minutes of device time, the two questions a full `flash` pass of run_gpu.sh (about
4 minutes) would answer more slowly: is `model.attention=flash` competitive with cuDNN's kernel and well ahead of
XLA's softmax attention, and which tiling (flash.Tiles) should be its default. Each variant is a jitted function of
bf16 q, k, v [batch, seq, heads, 64] with ELECTRA's key padding mask (no padding: pre-training records are full);
"fwd+bwd" (the default pass) is the gradient of sum(out * w) with respect to q, k and v, what a training step
runs; `--passes=fwd,fwd+bwd` also times the forward alone (a compile more per variant). Times are the
median of --windows windows of --steps calls each, one sync per window, after a compile and one untimed call. A
variant that fails (a tiling Triton cannot fit, say) leaves an error row and the sweep goes on; rows are written as
they come, so a sweep cut short keeps what it measured. Needs no TensorFlow, torch or ml-collections.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import call_info  # noqa: E402  (standard library only at import time)
import make_table  # noqa: E402

# ELECTRA-Small's and -Base's discriminator attention at their pre-training shapes (batch x seq, heads, head dim 64).
SHAPES = {"small": (128, 128, 4, 64), "base": (64, 512, 12, 64)}
SMOKE_SHAPES = {"small": (2, 64, 2, 16)}
RATE = 0.1  # the original's attention-probability dropout
# (block_q, block_k, block_backward, num_warps, num_stages): the default first, then the usual Triton choices
# (FlashAttention-2's Triton kernels use 128 x 64 forward tiles, 4-8 warps, 2-3 stages).
TILINGS = [(64, 64, 64, 4, 2), (128, 64, 64, 4, 2), (128, 64, 64, 8, 2), (128, 32, 64, 4, 2), (64, 32, 64, 4, 2),
           (128, 128, 64, 8, 2), (64, 64, 32, 4, 2), (64, 64, 128, 8, 2), (128, 64, 128, 8, 3), (64, 64, 64, 4, 3)]
SMOKE_TILINGS = [(64, 64, 64, 4, 2), (32, 16, 64, 2, 1)]


def variants(tilings: list[tuple[int, ...]], backend: str) -> list[tuple[str, dict]]:
    """(name, how) of each variant: the two XLA-side references, then flash per tiling."""
    found = [("xla", {"impl": "xla", "dropout": RATE})]
    if backend == "gpu":
        found.append(("cudnn", {"impl": "cudnn", "dropout": 0.0}))
    found += [("flash " + "/".join(map(str, tiles)), {"impl": "flash", "dropout": RATE, "tiles": tiles})
              for tiles in tilings]
    return found


def build(how: dict, shape: tuple[int, int, int, int], backward: bool):
    """A jitted function of (q, k, v, mask, w, key) for one variant; the forward's output or the three gradients."""
    import jax
    import jax.numpy as jnp

    from electra_jax import attention, flash

    def forward(q, k, v, mask, key):
        if how["impl"] == "flash":
            return flash.attention(q, k, v, mask, dropout_rate=how["dropout"], dropout_rng=key, deterministic=False,
                                   tiles=flash.Tiles(*how["tiles"]))
        return attention.get(how["impl"])(q, k, v, mask, dropout_rate=how["dropout"], dropout_rng=key,
                                          deterministic=how["dropout"] == 0.0)

    if not backward:
        return jax.jit(lambda q, k, v, mask, w, key: forward(q, k, v, mask, key))

    def loss(q, k, v, mask, w, key):
        return jnp.sum(forward(q, k, v, mask, key).astype(jnp.float32) * w)

    return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))


def inputs(shape: tuple[int, int, int, int], dtype):
    import jax
    import jax.numpy as jnp

    keys = jax.random.split(jax.random.key(0), 4)
    q, k, v = (jax.random.normal(key, shape, jnp.float32).astype(dtype) for key in keys[:3])
    w = jax.random.normal(keys[3], shape, jnp.float32)
    return q, k, v, jnp.ones(shape[:2], jnp.int32), w


def time_variant(fn, args: tuple, key, steps: int, windows: int) -> dict:
    """Compile time, then the median over `windows` windows of `steps` calls (fresh dropout keys, one sync each:
    electra_jax.benchmark.time_windows's protocol, written out here because that module needs ml-collections,
    which the GPU image lacks)."""
    import jax

    begin = time.perf_counter()
    jax.block_until_ready(fn(*args, key))
    compile_s = time.perf_counter() - begin
    jax.block_until_ready(fn(*args, jax.random.fold_in(key, 1)))  # untimed
    per_call = []
    for window in range(windows):
        start = time.perf_counter()
        out = None
        for i in range(steps):
            out = fn(*args, jax.random.fold_in(key, 2 + window * steps + i))
        jax.block_until_ready(out)
        per_call.append((time.perf_counter() - start) / steps)
    return {"ms": statistics.median(per_call) * 1e3, "ms_min": min(per_call) * 1e3, "ms_max": max(per_call) * 1e3,
            "compile_s": compile_s}


def sweep(args: argparse.Namespace) -> list[dict]:
    import jax
    import jax.numpy as jnp

    shapes = SMOKE_SHAPES if args.smoke else {name: SHAPES[name] for name in args.sizes.split(",")}
    tilings = SMOKE_TILINGS if args.smoke else TILINGS
    dtype = jnp.float32 if args.smoke else jnp.bfloat16
    backend = jax.default_backend()
    commit, dirty = call_info.commit_and_dirty()
    common = {"commit": commit, "dirty": dirty, "date": datetime.date.today().isoformat(),
              "device": jax.devices()[0].device_kind, "backend": backend, "jax_version": jax.__version__,
              "python_version": platform.python_version(), "dtype": jnp.dtype(dtype).name,
              "gpu_static": call_info.nvidia_smi(call_info.SMI_STATIC)}
    rows_file = Path(str(args.out) + ".jsonl")
    rows_file.parent.mkdir(parents=True, exist_ok=True)
    rows_file.unlink(missing_ok=True)
    rows: list[dict] = []
    started = time.perf_counter()
    for size, shape in shapes.items():
        data = inputs(shape, dtype)
        for name, how in variants(tilings, backend):
            for backward in [pass_name == "fwd+bwd" for pass_name in args.passes.split(",")]:
                base = {**common, "size": size, "shape": list(shape), "variant": name, **how,
                        "pass": "fwd+bwd" if backward else "fwd"}
                if args.budget_s and time.perf_counter() - started > args.budget_s:
                    row = {**base, "kind": "skipped", "error": f"past --budget_s={args.budget_s:g}"}
                else:
                    try:
                        row = {**base, "kind": "measure",
                               **time_variant(build(how, shape, backward), data, jax.random.key(1), args.steps,
                                              args.windows)}
                    except Exception as error:  # noqa: BLE001  (a tiling that does not fit is a result too)
                        row = {**base, "kind": "error", "error": f"{type(error).__name__}: {error}"[:500],
                               "traceback_tail": traceback.format_exc()[-1200:]}
                rows.append(row)
                make_table.append_row(rows_file, row)
                said = (f"{row['ms']:8.3f} ms (compile {row['compile_s']:.1f} s)" if row["kind"] == "measure"
                        else f"{row['kind']}: {row['error'][:100]}")
                print(f"{size} {row['pass']:7s} {name:28s} {said}", flush=True)
    document = {"format": 1, "kind": "flash_sweep", **common, "steps": args.steps, "windows": args.windows,
                "rows": rows}
    Path(args.out).write_text(json.dumps(document, indent=1) + "\n")
    rows_file.unlink(missing_ok=True)
    return rows


def table(rows: list[dict]) -> str:
    """Markdown: per size and pass, each variant's median ms and its ratio to XLA's and cuDNN's (same pass)."""
    lines = ["| size | pass | variant | ms (min-max) | vs xla | vs cudnn | compile s |",
             "|---|---|---|---|---|---|---|"]
    for size in dict.fromkeys(r["size"] for r in rows):
        for pass_name in ("fwd", "fwd+bwd"):
            group = [r for r in rows if r["size"] == size and r["pass"] == pass_name]
            ms = {r["variant"]: r["ms"] for r in group if r["kind"] == "measure"}
            for r in group:
                if r["kind"] != "measure":
                    lines.append(f"| {size} | {pass_name} | {r['variant']} | {r['kind']}: {r['error'][:60]} | | | |")
                    continue
                ratios = [f"{ms[ref] / r['ms']:.2f}×" if ref in ms else "" for ref in ("xla", "cudnn")]
                lines.append(f"| {size} | {pass_name} | {r['variant']} | {r['ms']:.3f} ({r['ms_min']:.3f}-"
                             f"{r['ms_max']:.3f}) | {ratios[0]} | {ratios[1]} | {r['compile_s']:.1f} |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the results JSON (rows also stream to OUT.jsonl meanwhile)")
    parser.add_argument("--sizes", default="small,base", help=f"comma-separated names from {sorted(SHAPES)}")
    parser.add_argument("--passes", default="fwd+bwd", help="fwd+bwd (what training runs) and/or fwd")
    parser.add_argument("--steps", type=int, default=20, help="calls per timed window")
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--budget_s", type=float, default=0.0, help="skip what would start after this many seconds")
    parser.add_argument("--smoke", action="store_true", help="CPU: tiny shapes, two tilings, interpret mode")
    args = parser.parse_args(argv)
    unknown = [s for s in args.sizes.split(",") if s not in SHAPES]
    if unknown:
        parser.error(f"unknown size(s) {unknown}; known: {sorted(SHAPES)}")
    if not set(args.passes.split(",")) <= {"fwd", "fwd+bwd"}:
        parser.error(f"--passes takes fwd and/or fwd+bwd, got {args.passes!r}")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.smoke:
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    rows = sweep(args)
    markdown = table(rows)
    Path(args.out).with_suffix(".md").write_text(markdown + "\n")
    print(markdown)


if __name__ == "__main__":
    main()
