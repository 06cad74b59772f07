r"""Predicts the wall time of `compute_efficiency --budget=gpu` on one GPU before any device time is spent.

    python -m electra_jax.experiments.gpu_plan --glue_dir=../shared/data/glue \
        --output=benchmarks/results/2026-12-01-evidence-gpu-plan.json

Measured here, on this machine's CPU: the step and compile times of the ELECTRA-Small and BERT-Small pre-training
steps and of the ELECTRA-Small fine-tuning step (float32, XLA attention, small batches). Committed: the H200 step and
compile time of the ELECTRA-Small pre-training step at 128 x 128 in bf16 with cuDNN attention
(benchmarks/results/2026-11-26-h200.json, the threefry-dropout row). Each GPU time is that committed time scaled by
a CPU ratio:

  * the masked-LM step: 14.7 ms x cpu(MLM step) / cpu(ELECTRA step), same batch;
  * the fine-tuning step at batch 32: between 14.7 ms x cpu(fine-tune step) / cpu(ELECTRA step) x 32 / 128
    (time proportional to FLOPs, the low end) and the same without the batch factor (a step that does not get
    cheaper below batch 128 on the GPU: launch-bound, the high end);
  * compiles: 52.9 s x cpu(compile) / cpu(ELECTRA compile) (fine-tuning: building its TaskSession, which
    featurizes a few examples and compiles the train and eval steps).

The timeline adds the fine-tuning work (every model, task, seed and epoch of the budget, an eval batch counted as a
third of a training step) to the pre-training's, as the GPU runs one program at a time, less what fits while the GPU
would otherwise wait for pre-training's compiles; the worker processes' own compiles overlap pre-training (CPU work).
Start-up (20 s) and the final report (10 s) are assumptions; the records stage is build_data's measured rate from a
tokenized corpus (--tokens_glob) over 8 processes. With the budget's vmap_seeds, a model's seeds train in one step: k
seeds' time at the low end, one seed's at the (launch-bound) high end. `--measured=EARLIER.json` predicts again from
an earlier prediction's CPU measurements.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from electra_jax.experiments.budgets import BUDGETS, TASKS, Budget, seeds_for

GPU_RESULTS = "benchmarks/results/2026-11-26-h200.json"
GPU_ROW = "jax_small_threefry"  # bf16, cuDNN attention, unrolled layers: configs/pretrain.py:small,fast
STARTUP_S = 20.0  # python and JAX start-up, unpacking the bundle, build_data's start (assumed, not measured)
RECORDS_PROCESSES = 8  # the gpu budget's build_processes
REPORT_S = 10.0  # the last report, the plot and the worker logs (assumed)
CPU_BATCH = 8


def _pretrain_step(objective: str, batch_size: int) -> tuple[float, Any]:
    """(compile seconds, a function running one more step) of the pre-training step, as the benchmark builds it."""
    import jax
    import numpy as np

    from electra_jax import benchmark, sharding, train_state
    from electra_jax import config as config_lib

    config = benchmark.apply_switches(config_lib.load("configs/pretrain.py:small", {"objective.kind": objective}),
                                      batch_size, 128)
    trainer = train_state.Trainer(config, sharding.make_mesh(config.mesh))
    box = {"state": trainer.init_state(0)}
    start = time.perf_counter()
    step = benchmark.compile_train_step(trainer, batch_size)
    compile_s = time.perf_counter() - start
    batch = benchmark.synthetic_batch(batch_size, 128, config.model.vocab_size, config)
    batch = {k: jax.device_put(v, trainer.batch_sharding) for k, v in batch.items()}
    rng = jax.device_put(np.asarray(jax.device_get(box["state"].rng)), trainer.replicated)

    def run() -> None:
        box["state"], metrics = step(box["state"], batch, rng)
        jax.block_until_ready(metrics)

    return compile_s, run


def _finetune_step(batch_size: int, glue_dir: Path) -> tuple[float, Any]:
    """(seconds to build the task session, i.e. featurize a few examples and compile, one more step) of the
    fine-tuning step the experiment runs (electra_jax.finetune.TaskSession; SST-2, the Small network)."""
    import jax
    import numpy as np

    from electra_jax import config as config_lib
    from electra_jax.data import tokenizer as make_tokenizer
    from electra_jax.experiments.budgets import SHARED_DATA
    from electra_jax.finetune import TaskSession

    vocab = SHARED_DATA / "bert_vocab" / "uncased" / "vocab.txt"
    config = config_lib.load("configs/finetune.py:sst2,small", {
        "train.batch_size": batch_size, "train.max_train_examples": 4 * batch_size, "train.max_eval_examples": 32,
        "data.dir": str(glue_dir / "SST-2"), "data.vocab": str(vocab)})
    start = time.perf_counter()
    session = TaskSession(config, make_tokenizer(str(vocab)))
    compile_s = time.perf_counter() - start
    trainer = session.trainer
    box = {"state": trainer.init_state(0)}
    batch = {k: jax.device_put(v[:batch_size], trainer.batch_sharding) for k, v in session.data.train.items()}
    rng = jax.device_put(np.asarray(jax.device_get(box["state"].rng)), trainer.replicated)

    def run() -> None:
        box["state"], metrics = session.compiled.train_step(box["state"], batch, rng)
        jax.block_until_ready(metrics)

    return compile_s, run


def measure_cpu(glue_dir: Path, batch_size: int = CPU_BATCH, rounds: int = 5) -> dict[str, dict[str, float]]:
    """Compile seconds and the median step seconds of the three steps, timed in alternating rounds (the
    dev machine is shared, so alternating spreads its load over all three)."""
    import statistics

    steps = {"electra": _pretrain_step("electra", batch_size), "mlm": _pretrain_step("mlm", batch_size),
             "finetune": _finetune_step(batch_size, glue_dir)}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _, run in steps.values():
        run()  # warm-up
    for _ in range(rounds):
        for name, (_, run) in steps.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: {"compile_s": round(steps[name][0], 2), "step_s": round(statistics.median(times[name]), 4),
                   "step_s_all": [round(t, 4) for t in times[name]]} for name in steps}


def finetune_steps(budget: Budget, glue_dir: Path) -> dict[str, dict[str, int]]:
    """Training steps per seed and dev examples of each task under the budget's caps (counted in the TSVs)."""
    out = {}
    for task in budget.tasks:
        folder = glue_dir / TASKS[task][0]
        train = sum(1 for _ in open(folder / "train.tsv", encoding="utf-8")) - 1
        dev = sum(1 for _ in open(folder / "dev.tsv", encoding="utf-8")) - 1
        examples = min(train, budget.max_train_examples or train)
        rows = examples * (2 if task in ("mrpc", "stsb") else 1)  # pairs doubled A/B-swapped, as the original
        epochs = budget.epochs or (10 if task in ("rte", "stsb") else 3)
        out[task] = {"train_examples": examples, "rows": rows, "dev": dev, "epochs": epochs,
                     "steps_per_seed": rows // budget.finetune_batch_size * epochs}
    return out


def measure_records(tokens_glob: str, vocab: str) -> dict[str, float]:
    """build_data's rate from a tokenized corpus, one process (the records stage of the gpu budget)."""
    import tempfile

    from electra_jax.build_data import build_pretraining_data

    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        meta = build_pretraining_data(vocab=vocab, output_dir=folder, max_seq_length=128, input=tokens_glob,
                                      num_shards=8, num_processes=1, progress=False, format="numpy")
        seconds = time.perf_counter() - start
    return {"tokens": meta["num_input_tokens"], "seconds": round(seconds, 2),
            "tokens_per_s": round(meta["num_input_tokens"] / seconds)}


def predict(budget: Budget, cpu: dict[str, dict[str, float]], gpu_row: dict[str, Any], glue_dir: Path,
            records: dict[str, float] | None = None, corpus_tokens: float = 0.0) -> dict[str, Any]:
    from electra_jax.experiments.pretraining import plan_steps

    step_gpu, compile_gpu = gpu_row["step_ms"] / 1e3, gpu_row["compile_s"]
    electra, mlm, finetune = cpu["electra"], cpu["mlm"], cpu["finetune"]
    plan = plan_steps(budget, 30522, Path("records"), ("electra", "mlm"))
    mlm_step = step_gpu * mlm["step_s"] / electra["step_s"]
    ratio = finetune["step_s"] / electra["step_s"]
    ft_step = {"low": step_gpu * ratio * budget.finetune_batch_size / budget.batch_size, "high": step_gpu * ratio}
    compiles = {name: compile_gpu * cpu[name]["compile_s"] / electra["compile_s"] for name in cpu}
    tasks = finetune_steps(budget, glue_dir)
    model_seeds = {"control": len(seeds_for(budget, True)), "top": 2 * len(seeds_for(budget, True)),
                   "earlier": 2 * (budget.num_points - 1) * len(seeds_for(budget, False))}
    # What the fine-tuning of those costs, in one seed's steps: with vmap_seeds a model's seeds take one step
    # together, which costs k seeds' time where time follows FLOPs (low) and one seed's where it is launch-bound
    # (high, the step that does not get cheaper below batch 128 also costs no more for k batches of 32 up to it).
    models = {"control": 1, "top": 2, "earlier": 2 * (budget.num_points - 1)}
    seed_units = {case: {k: models[k] if budget.vmap_seeds and case == "high" else v for k, v in model_seeds.items()}
                  for case in ft_step}
    per_seed_steps = sum(t["steps_per_seed"] for t in tasks.values())
    eval_steps = sum(-(-t["dev"] // 32) * t["epochs"] for t in tasks.values())  # eval batches, ~1/3 of a step
    per_seed = {k: (per_seed_steps + eval_steps / 3) * v for k, v in ft_step.items()}
    records_s = corpus_tokens / (records["tokens_per_s"] * RECORDS_PROCESSES) if records and corpus_tokens else 0.0
    stages = {"startup": STARTUP_S, "records": records_s,
              "ELECTRA compile": compiles["electra"],
              "ELECTRA steps": plan["electra"]["steps"] * step_gpu,
              "MLM compile": compiles["mlm"],
              "MLM steps": plan["mlm"]["steps"] * mlm_step}
    prediction: dict[str, Any] = {"stages_s": {k: round(v, 1) for k, v in stages.items()}, "scenarios": {}}
    for case, seconds in per_seed.items():
        total_ft = seconds * sum(seed_units[case].values())
        after = seconds * seed_units[case]["top"] / 2  # the top MLM checkpoint's seeds come after pre-training
        # Fine-tuning on the GPU while pre-training compiles is free (in ELECTRA's window once the workers' own
        # compiles are done); the rest adds to the wall time, as does the final report.
        hidden = min(total_ft - after, max(0.0, compiles["electra"] - compiles["finetune"]) + compiles["mlm"])
        wall = sum(stages.values()) + total_ft - hidden + REPORT_S
        prediction["scenarios"][case] = {
            "finetune_step_ms": round(ft_step[case] * 1e3, 2), "finetune_s_per_model_seed": round(seconds, 1),
            "finetune_gpu_s": round(total_ft, 1), "after_pretraining_s": round(after, 1),
            "overlapping_compiles_s": round(hidden, 1), "total_s": round(wall, 1)}
    prediction.update(
        gpu_reference={k: gpu_row[k] for k in ("run", "variant", "step_ms", "compile_s", "tokens_per_sec")},
        cpu_measured=cpu, cpu_batch=CPU_BATCH, records_measured=records, corpus_tokens=corpus_tokens,
        mlm_step_ms=round(mlm_step * 1e3, 2),
        compiles_s={k: round(v, 1) for k, v in compiles.items()}, plan=plan, tasks=tasks, model_seeds=model_seeds,
        vmap_seeds=budget.vmap_seeds, seed_step_units=seed_units,
        per_task_s={case: {t: round((v["steps_per_seed"] + -(-v["dev"] // 32) * v["epochs"] / 3) * ft_step[case], 1)
                           for t, v in tasks.items()} for case in ft_step})
    return prediction


def command(args: Any) -> str:
    """The command line that makes this prediction again, with the flags it read: --measured replaces the measuring
    ones, and --vocab and --corpus_tokens are read only with --tokens_glob (the records stage)."""
    used = ["budget", "glue_dir"]
    if args.measured:
        used.append("measured")
    elif args.tokens_glob:
        used += ["tokens_glob", "vocab", "corpus_tokens"]
    return "python -m electra_jax.experiments.gpu_plan " + " ".join(
        f"--{name}={getattr(args, name)}" for name in [*used, "output"] if getattr(args, name) not in ("", None))


def main(argv: Sequence[str]) -> None:
    import platform

    import jax
    from absl import flags

    from electra_jax.config import REPO_ROOT

    del argv
    args = flags.FLAGS
    gpu = json.loads((REPO_ROOT / GPU_RESULTS).read_text())
    gpu_row = next(row for row in gpu["rows"] if row.get("run") == GPU_ROW)
    if args.measured:  # predict again (another budget, a changed model of the run) from an earlier plan's CPU times
        earlier = json.loads(Path(args.measured).read_text())
        cpu, records = earlier["cpu_measured"], earlier["records_measured"]
        corpus_tokens, machine = earlier["corpus_tokens"], earlier["cpu_machine"]
    else:
        records = measure_records(args.tokens_glob, args.vocab) if args.tokens_glob else None
        cpu, corpus_tokens = measure_cpu(Path(args.glue_dir)), args.corpus_tokens
        machine = f"{platform.machine()} {jax.devices()[0].device_kind}, JAX {jax.__version__}"
    prediction = predict(BUDGETS[args.budget], cpu, {**gpu_row, "run": GPU_ROW}, Path(args.glue_dir), records,
                         corpus_tokens)
    from electra_jax.corpus.build import code_version

    prediction["cpu_machine"] = machine
    prediction["measured_in"] = args.measured or None
    prediction["date"], prediction["commit"] = time.strftime("%Y-%m-%d"), code_version()
    prediction["command"] = command(args)
    if args.output:
        Path(args.output).write_text(json.dumps(prediction, indent=2))
    print(json.dumps({"stages_s": prediction["stages_s"], "scenarios": prediction["scenarios"]}, indent=1))


if __name__ == "__main__":
    from absl import flags

    from electra_jax import cli

    from electra_jax.experiments.budgets import SHARED_DATA

    flags.DEFINE_string("budget", "gpu", "The budget to predict.")
    flags.DEFINE_string("glue_dir", str(SHARED_DATA / "glue"), "The GLUE folders (for the training-set sizes).")
    flags.DEFINE_string("tokens_glob", "", "A tokenized corpus (*.tokens.xz) to time build_data on (records stage).")
    flags.DEFINE_string("vocab", str(SHARED_DATA / "bert_vocab" / "uncased" / "vocab.txt"), "Its vocabulary.")
    flags.DEFINE_float("corpus_tokens", 30e6, "The training corpus's WordPieces, for the records stage.")
    flags.DEFINE_string("measured", "", "An earlier prediction's JSON: reuse its CPU measurements (cpu_measured, "
                        "records_measured, corpus_tokens) instead of measuring again.")
    flags.DEFINE_string("output", "", "Also write the prediction here (JSON).")
    cli.run(main)
