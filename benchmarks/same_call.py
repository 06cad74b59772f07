"""One model size, both frameworks, one process: every HF PyTorch variant and electra_jax's step, then alternation.

    python benchmarks/same_call.py --size=base --pass=headline --rows=ROWS.jsonl [--out_dir=DIR --profile]

benchmarks/gpu_session.py runs one of these per (pass, size) within the call's time budget; each stage appends
its result row to --rows as soon as it is done (a failed stage leaves an error row and the next stage runs).

Passes (attention-probability dropout is the one difference in work between the fast paths, so each pass
holds it equal on both sides):
- `headline`: no attention-probability dropout on either side: HF with attention_probs_dropout_prob=0 against
  electra_jax with cuDNN attention (which has none). Stages: hf_eager (the gathered head), hf_stock (full-vocab
  logits), jax (`configs/pretrain.py:SIZE,fast`), hf_graph (the faster eager variant's whole step captured in one
  CUDA graph; GPU only, a `skipped` row elsewhere), hf_compile (torch.compile of the faster eager variant), with
  --hf_compile_graph also hf_compile_graph (that compiled step captured whole in one CUDA graph, as torch's
  "reduce-overhead" mode would: fused kernels and no launch cost; GPU only), rounds against the fastest (against
  the fastest so far first when --deadline_s leaves too little time for the compile), and with --profile the
  torch.profiler summary of the fastest HF step that is not a graph replay and a jax.profiler trace of ours.
- `faithful`: attention dropout 0.1 on both sides (electra_jax with XLA attention, as the original):
  hf_eager, hf_stock, jax, hf_graph, rounds, and hf_compile (and hf_compile_graph) unless --hf_compile=none
  (gpu_session.py passes none unless torch.compile was the fastest HF variant of the call's headline pass at
  that size).
- `flash`: the faithful pass's work and stages with electra_jax's Pallas flash attention, which keeps the dropout
  (electra_jax/flash.py): the candidate for closing the faithful pass's gap (docs/SPEED.md).

Each variant is timed once for --steps steps (windows of --window steps, one sync per window, after
--warmup untimed steps; torch.compile compiles during the first, reported as compile_s). Then the fastest HF
variant of the pass and electra_jax alternate for --rounds rounds (order flipped every round, one untimed step
before each window); the ratio is electra_jax tokens/s over HF tokens/s per round, and make_table.py reports
the median over rounds with the spread.

MFU divides the model FLOPs of the step (electra_jax.flops, the same count for every row) by the datasheet
dense bf16 peak (989 TFLOP/s on H100/H200 SXM), and, beside it, by a matmul peak measured once per call
(--peak_file: the first driver measures it, the others read it). nvidia-smi clocks, power and temperature are
sampled during every timed window. --smoke runs all of it on CPU at tiny shapes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
for folder in (REPO, BENCHMARKS):  # electra_jax beside benchmarks/, and the scripts in it
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import call_info  # noqa: E402  (needs the path above)
import make_table  # noqa: E402

SIZES = {
    "small": {"config": "configs/pretrain.py:small,fast", "batch_size": 128, "seq_len": 128},
    "base": {"config": "configs/pretrain.py:base,fast", "batch_size": 64, "seq_len": 512},
    "large": {"config": "configs/pretrain.py:large,fast", "batch_size": 32, "seq_len": 512, "jax_memory_cap_gb": 80},
}
# Steps per alternating window: about 1.5-2 s of HF time at each size (the 2026-11-26 H200 step times).
ROUND_STEPS = {"small": 30, "base": 12, "large": 8}
# Seconds to expect for hf_compile (cold, guessed: no committed log times torch.compile) and for one set of rounds.
COMPILE_ESTIMATE_S = {"small": 35, "base": 40, "large": 45}
# hf_compile_graph: a second compile of the same graphs (torch's in-process and on-disk caches) and the capture.
COMPILE_GRAPH_ESTIMATE_S = {"small": 15, "base": 18, "large": 20}
ROUNDS_ESTIMATE_S = 10
# float32 and one torch thread: on a shared 2-core machine bf16 emulation and thread contention cost seconds a step.
SMOKE = {"config": "configs/pretrain.py:tiny,fast", "batch_size": 2, "seq_len": 32,
         "overrides": {"model.num_layers": 1, "model.vocab_size": 1024, "model.dtype": "float32"}}
PASSES = {
    # name: (what is held equal, HF attention dropout, electra_jax attention)
    "headline": ("no attention-probability dropout on either side", 0.0, "cudnn"),
    "faithful": ("attention-probability dropout 0.1 on both sides", 0.1, "xla"),
    # the faithful work again, electra_jax with the Pallas flash kernel that keeps the dropout (electra_jax/flash.py)
    "flash": ("attention-probability dropout 0.1 on both sides", 0.1, "flash"),
}


def load_config(size: str, attention: str, smoke: bool):
    """The benchmark config of a size: the GPU preset (`SIZE,fast`), the shape, and the pass's attention."""
    from electra_jax import config as config_lib

    spec = SMOKE if smoke else SIZES[size]
    overrides = {"train.batch_size": spec["batch_size"], "data.max_seq_length": spec["seq_len"],
                 "data.synthetic": True, **spec.get("overrides", {})}
    if smoke and attention == "cudnn":
        # cuDNN attention needs a GPU: its stand-in computes the same thing (attention without dropout).
        overrides.update({"model.attention": "xla", "model.attention_dropout": 0.0})
    else:
        overrides["model.attention"] = attention
    return config_lib.load(spec["config"], overrides)


class Driver:
    """Runs the stages of one pass at one size and appends one JSON row per result to `rows_path`."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.rows_path = Path(args.rows)
        self.started = time.perf_counter()
        self.monitor = call_info.GpuMonitor()
        self.description, self.hf_dropout, self.attention = PASSES[args.pass_name]
        self.config = load_config(args.size, self.attention, args.smoke)
        self.shape = {"size": args.size, "batch_size": self.config.train.batch_size,
                      "seq_len": self.config.data.max_seq_length}
        self.common = {**call_info.call_fields(), "config": (SMOKE if args.smoke else SIZES[args.size])["config"],
                       "pass": args.pass_name, "pass_holds_equal": self.description,
                       "flag_set": args.flag_set or None, "xla_flags": os.environ.get("XLA_FLAGS", ""),
                       "jax_memory_fraction": os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION"),
                       "driver_command": " ".join([Path(sys.executable).name] + sys.argv)}
        self.steppers: dict[str, Any] = {}
        self.rows: dict[str, dict] = {}
        self.peak: dict | None = None

    # -- bookkeeping --------------------------------------------------------------------------------------

    def log(self, message: str) -> None:
        print(f"[{self.args.pass_name}/{self.args.size} {time.perf_counter() - self.started:6.1f}s] {message}",
              file=sys.stderr, flush=True)

    def write(self, row: dict) -> dict:
        row = {**self.common, **row, **self.shape}  # `size` names the benchmark size (the smoke run's is tiny)
        make_table.append_row(self.rows_path, row)
        return row

    def stage(self, name: str, body: Callable[[], Any]) -> None:
        """Runs one stage; an exception becomes an error row (with its traceback's tail) instead of the end."""
        self.log(f"{name} ...")
        begin = time.perf_counter()
        try:
            body()
        except Exception as error:  # noqa: BLE001  (every failure is recorded, then the next stage runs)
            self.write({"kind": "error", "stage": name, "error": f"{type(error).__name__}: {error}"[:500],
                        "traceback_tail": traceback.format_exc()[-1500:]})
            self.log(f"{name} failed: {type(error).__name__}: {error}")
        self.log(f"{name} done in {time.perf_counter() - begin:.1f}s")

    # -- measurements -------------------------------------------------------------------------------------

    def measured_peak(self) -> dict:
        """The matmul peak of this call: read from --peak_file, or measured once and written there."""
        if self.peak is None:
            path = Path(self.args.peak_file) if self.args.peak_file else None
            if path and path.exists():
                self.peak = json.loads(path.read_text())
            else:
                self.peak = call_info.measure_peak(self.config.model.dtype)
                if path:
                    path.write_text(json.dumps(self.peak))
                self.write({"kind": "peak", "stage": "peak", **self.peak})
        return self.peak

    def time_stepper(self, key: str, stepper: Any, describe: dict, warmup: int, extra: dict,
                     peak_memory: Callable[[], float | None]) -> dict:
        from electra_jax import benchmark as benchmark_lib
        from electra_jax import flops as flops_lib

        start = time.perf_counter()
        stepper.run(1)  # torch.compile compiles here (forward and backward)
        first_step_s = time.perf_counter() - start
        stepper.run(max(warmup - 1, 0))
        warmup_s = time.perf_counter() - start
        with self.monitor.sampling() as samples:
            per_step = benchmark_lib.time_windows(stepper.run, self.args.steps, self.args.window)
        step_s = statistics.median(per_step)
        if describe.get("compile", "none") != "none":  # torch.compile's time, apart: its first step less a timed one
            extra = {**extra, "compile_s": first_step_s - step_s}
        if describe.get("cuda_graph"):  # the side-stream warm-up steps and the capture, apart from the step time
            extra = {**extra, "capture_s": stepper.graphed.capture_s}
        flops = flops_lib.model_flops_per_step(self.config, self.shape["batch_size"], self.shape["seq_len"])
        datasheet = benchmark_lib.datasheet_peak_flops(describe["device"], self.config.model.dtype)
        peak = self.measured_peak()
        row = self.write({
            "kind": "measure", "stage": key, **describe, **extra,
            "step_ms": step_s * 1e3, "step_ms_min": min(per_step) * 1e3, "step_ms_max": max(per_step) * 1e3,
            "window_ms": [t * 1e3 for t in per_step], "steps": self.args.steps, "window": self.args.window,
            "warmup": warmup, "warmup_s": warmup_s, "first_step_s": first_step_s,
            "tokens_per_sec": self.shape["batch_size"] * self.shape["seq_len"] / step_s,
            "model_tflops_per_step": flops / 1e12,
            "mfu_datasheet": flops / step_s / datasheet if datasheet else None,
            "peak_tflops_datasheet": datasheet / 1e12 if datasheet else None,
            "mfu_measured_peak": flops / step_s / (peak["tflops_median"] * 1e12),
            "peak_tflops_measured": peak["tflops_median"],
            "final_loss": stepper.loss(), "peak_memory_gb": peak_memory(),
            "gpu": call_info.summarize_samples(samples)})
        self.steppers[key], self.rows[key] = stepper, row
        self.log(f"{key}: {row['step_ms']:.2f} ms/step, {row['tokens_per_sec']:,.0f} tokens/s ({describe['variant']})")
        return row

    def measure_hf(self, key: str, head: str, compile_mode: str = "none", cuda_graph: bool = False) -> None:
        import torch

        import hf_pytorch_baseline as baseline

        device = torch.device("cpu") if self.args.smoke else baseline.default_device()
        if cuda_graph and device.type != "cuda":
            self.write({"kind": "skipped", "stage": key,
                        "error": f"CUDA graphs need a GPU; this run is on {device.type}"})
            self.log(f"{key}: skipped (CUDA graphs need a GPU)")
            return
        if self.args.smoke:
            torch.set_num_threads(1)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        backend = "aot_eager" if self.args.smoke else "inductor"  # CPU inductor would spend minutes in a C++ compiler
        stepper = baseline.HFStep(self.config, device, head=head, compile_mode=compile_mode,
                                  dtype=self.config.model.dtype, attention_dropout=self.hf_dropout,
                                  compile_backend=backend, cuda_graph=cuda_graph)
        warmup = self.args.warmup + (2 if compile_mode != "none" else 0)
        self.time_stepper(key, stepper, stepper.describe(), warmup,
                          {"compile_backend": backend if compile_mode != "none" else None}, stepper.peak_memory_gib)
        self.release_slower_hf()

    def release_slower_hf(self) -> None:
        """Frees every HF step that neither the rounds (the fastest) nor the profile (the fastest without a graph)
        will use: at Large each holds about 5 GB of weights and Adam state, a graph its own activation pool, and
        JAX may take 80 GB of the card."""
        keep = {self.fastest_hf(), self.fastest_hf(graphs=False)}
        for key in [key for key in self.steppers if key.startswith("hf_") and key not in keep]:
            self.steppers.pop(key).close()

    def measure_jax(self, key: str) -> None:
        from electra_jax import benchmark as benchmark_lib

        stepper = benchmark_lib.PreparedStep(self.config)
        describe = stepper.describe()
        layers = "scanned" if describe["scan_layers"] else "unrolled"
        flags = f", XLA flags {self.args.flag_set}" if self.args.flag_set else ""
        describe["variant"] = f"{describe['dtype']}, {describe['attention']} attention, {layers} layers{flags}"
        # JAX's allocator statistics cannot be reset: this is the process's peak so far (both JAX steps of a pass)
        self.time_stepper(key, stepper, describe, self.args.warmup, {"compile_s": stepper.compile_s},
                          lambda: benchmark_lib.peak_memory_gib(stepper.device))

    def fastest_hf(self, graphs: bool = True) -> str | None:
        """The stage of the fastest HF variant timed so far (`graphs=False`: of those not replaying a CUDA graph)."""
        timed = [key for key in self.rows if key.startswith("hf_") and (graphs or not self.rows[key].get("cuda_graph"))]
        return max(timed, key=lambda key: self.rows[key]["tokens_per_sec"]) if timed else None

    def faster_eager_head(self) -> str:
        return "stock" if self.fastest_hf(graphs=False) == "hf_stock" else "gathered"

    def alternate(self, hf_key: str, jax_key: str = "jax") -> None:
        """--rounds rounds of one window each, HF and electra_jax in alternating order."""
        if hf_key not in self.steppers or jax_key not in self.steppers:
            raise RuntimeError(f"cannot alternate: {hf_key if hf_key not in self.steppers else jax_key} was not timed")
        steps = self.args.round_steps or (2 if self.args.smoke else ROUND_STEPS[self.args.size])
        for index in range(self.args.rounds):
            order = (hf_key, jax_key) if index % 2 == 0 else (jax_key, hf_key)
            step_ms, gpu = {}, {}
            for key in order:
                self.steppers[key].run(1)  # untimed: the first step after the other framework ran
                with self.monitor.sampling() as samples:
                    start = time.perf_counter()
                    self.steppers[key].run(steps)
                    step_ms[key] = (time.perf_counter() - start) / steps * 1e3
                gpu[key] = call_info.summarize_samples(samples)
            ratio = step_ms[hf_key] / step_ms[jax_key]
            self.write({"kind": "round", "stage": f"rounds:{hf_key}", "round": index + 1, "first": order[0],
                        "window_steps": steps, "hf_stage": hf_key, "hf_impl": self.rows[hf_key]["impl"],
                        "hf_variant": self.rows[hf_key]["variant"], "jax_variant": self.rows[jax_key]["variant"],
                        "hf_step_ms": step_ms[hf_key], "jax_step_ms": step_ms[jax_key], "ratio": ratio,
                        "hf_gpu": gpu[hf_key], "jax_gpu": gpu[jax_key]})
            self.log(f"round {index + 1}: {self.rows[hf_key]['impl']} {step_ms[hf_key]:.2f} ms, electra_jax "
                     f"{step_ms[jax_key]:.2f} ms, ratio {ratio:.3f}")

    def profile(self) -> None:
        """torch.profiler summary of the fastest HF step and a jax.profiler trace of ours, into --out_dir."""
        import hf_profile
        from electra_jax import profile_summary

        out = Path(self.args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        # JAX's trace first: torch.profiler may keep its CUPTI subscription after it ends, and XLA's tracer cannot
        # subscribe beside it (CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED: a trace with no GPU events).
        trace_dir = Path(tempfile.mkdtemp(prefix="jax_profile_"))  # nested folders would not come back from $OUT
        self.steppers["jax"].profile(str(trace_dir), 3)
        jax_summary = profile_summary.load(str(trace_dir), steps=3)
        (out / f"profile_{self.args.size}.md").write_text(profile_summary.to_markdown(jax_summary) + "\n")
        (out / f"profile_{self.args.size}.json").write_text(json.dumps(jax_summary, indent=1))
        call_info.keep_profile_files(trace_dir, out, f"profile_{self.args.size}")
        hf_key = self.fastest_hf(graphs=False)  # a graph replay shows no ops on the host: profile the step it captures
        stepper = self.steppers[hf_key]
        summary = hf_profile.summarize_profile(hf_profile.profile_step(stepper, 3), 3, stepper.device.type == "cuda")
        title = f"{self.args.size}: {self.rows[hf_key]['impl']}, {self.rows[hf_key]['variant']}"
        (out / f"hf_profile_{self.args.size}.md").write_text(hf_profile.to_markdown(summary, title))
        self.write({"kind": "hf_profile", "stage": "profile", "hf_stage": hf_key, **summary})

    # -- passes -------------------------------------------------------------------------------------------

    def time_left(self) -> float:
        if self.args.deadline_at:  # from the session: counts this process's start-up (imports, CUDA) too
            return self.args.deadline_at - time.time()
        return self.args.deadline_s - (time.perf_counter() - self.started) if self.args.deadline_s else float("inf")

    def run(self) -> None:
        self.stage("hf_eager", lambda: self.measure_hf("hf_eager", "gathered"))
        self.stage("hf_stock", lambda: self.measure_hf("hf_stock", "stock"))
        self.stage("jax", lambda: self.measure_jax("jax"))
        # After our step: a capture that fails mid-way should not cost the measurements before it.
        self.stage("hf_graph", lambda: self.measure_hf("hf_graph", self.faster_eager_head(), cuda_graph=True))
        compile_it = self.args.hf_compile != "none"
        # torch.compile's time is the least known of the call: with too little time left for it and the rounds,
        # alternate against the faster eager variant first, so the ratio survives a compile cut short.
        graph_too = compile_it and self.args.hf_compile_graph
        compile_s = COMPILE_ESTIMATE_S[self.args.size] + (COMPILE_GRAPH_ESTIMATE_S[self.args.size] if graph_too else 0)
        rounds_first = compile_it and self.time_left() < compile_s + ROUNDS_ESTIMATE_S
        if rounds_first or not compile_it:
            self.stage("rounds", lambda: self.alternate(self.fastest_hf()))
        if compile_it:
            head = self.faster_eager_head()  # both compiled variants compile the faster eager one
            self.stage("hf_compile", lambda: self.measure_hf("hf_compile", head, self.args.hf_compile))
            if graph_too:
                self.stage("hf_compile_graph", lambda: self.measure_hf("hf_compile_graph", head, self.args.hf_compile,
                                                                       cuda_graph=True))
            if not rounds_first or self.fastest_hf() in ("hf_compile", "hf_compile_graph"):
                self.stage("rounds", lambda: self.alternate(self.fastest_hf()))
        if self.args.profile:
            self.stage("profile", self.profile)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), required=True)
    parser.add_argument("--pass", dest="pass_name", choices=sorted(PASSES), default="headline")
    parser.add_argument("--rows", required=True, help="JSONL file the result rows are appended to")
    parser.add_argument("--out_dir", default=".", help="where --profile writes its files")
    parser.add_argument("--peak_file", default="", help="the call's measured matmul peak (written if absent)")
    parser.add_argument("--steps", type=int, default=50, help="timed steps of each variant")
    parser.add_argument("--window", type=int, default=10, help="steps per timed window (one sync per window)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before timing (+2 for torch.compile)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--round_steps", type=int, default=0, help="steps per alternating window (0: per size)")
    parser.add_argument("--hf_compile", choices=("regional", "step", "none"), default="regional",
                        help="torch.compile every encoder layer (regional) or the whole step function; none: skip")
    parser.add_argument("--hf_compile_graph", action="store_true",
                        help="also time the compiled HF step captured in one CUDA graph (GPU only; after hf_compile)")
    parser.add_argument("--profile", action="store_true", help="also profile both steps (after the timings)")
    parser.add_argument("--flag_set", default="", help="the name of the XLA flag set in XLA_FLAGS (a label)")
    parser.add_argument("--deadline_s", type=float, default=0.0,
                        help="seconds this driver may take (0: no limit); decides whether rounds go before the compile")
    parser.add_argument("--deadline_at", type=float, default=0.0,
                        help="the same as a unix time (gpu_session.py passes this: it counts the process start-up)")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on CPU: checks the plumbing only")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    call_info.configure_jax_memory(SIZES[args.size].get("jax_memory_cap_gb"))  # before JAX touches the GPU
    import jax

    # JAX's backend first, before torch is imported: JAX checks the CUDA libraries it finds loaded (cuDNN, cuBLAS)
    # more strictly than torch does, so it loads its own choice first.
    print(f"JAX devices: {jax.devices()}", file=sys.stderr, flush=True)
    Driver(args).run()


if __name__ == "__main__":
    main()
