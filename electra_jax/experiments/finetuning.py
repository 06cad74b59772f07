r"""Fine-tuning for the compute-efficiency experiment: one task at a time, compiled once, every model and seed.

`finetune_task` is the one door: it fine-tunes a list of models (pre-training checkpoints, or None for the
no-pre-training control) on one GLUE task, and writes DIR/finetune/<protocol>/<model>/<task>/results.json per
model in `electra_jax.finetune`'s format. It builds one `electra_jax.finetune.TaskSession` per task (featurized
once, its steps compiled once for that task's shapes and number of seeds) and runs every model's seeds through it,
one after another or, with the budget's `vmap_seeds`, all of a model's seeds together in one vmapped step.

With a budget's `finetune_workers > 0`, the experiment starts one worker process per task before pre-training
(`python -m electra_jax.experiments.finetuning --output_dir=DIR --task=TASK`): it fine-tunes the control at once,
then each checkpoint as soon as it is written, highest priority first (the control, the top compute points, then
the earlier ones), so its compiles and the early points' fine-tuning overlap pre-training on the accelerator.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from absl import logging

from electra_jax.config import REPO_ROOT
from electra_jax.experiments.budgets import CONTROL, TASKS, Budget, seeds_for
from electra_jax.experiments.pretraining import has_checkpoint
from electra_jax.experiments.stages import Stages, Timer

PRETRAIN_DONE = "pretrain_done.json"  # written by the experiment when every pre-training run has finished


class PretrainingOver(Exception):
    """A model's checkpoint will not come: pre-training has ended (or the experiment is gone) without it."""


def finetune_config(budget: Budget, task: str, glue_dir: Path, vocab: Path, control: bool):
    from electra_jax import config as config_lib

    overrides: dict[str, Any] = {
        "data.dir": str(glue_dir / TASKS[task][0]),
        "data.vocab": str(vocab),
        "data.max_seq_length": budget.finetune_seq_len,
        "train.batch_size": budget.finetune_batch_size,
        "train.seeds": ",".join(str(s) for s in budget.seeds),
        "train.max_train_examples": budget.max_train_examples,
        "train.max_eval_examples": budget.max_eval_examples,
        "train.progress": "log",
        "train.log_every": 1000,
        "checkpoint.save_final": False,
        # A result, not an epoch, is what a rerun resumes from (finetune_task skips models with results), so the
        # epoch-end saves (parameters and Adam slots of every seed, deleted once its result exists) would only cost
        # time; SIGTERM still saves.
        "checkpoint.every_epoch": False,
        "train.vmap_seeds": budget.vmap_seeds,
    }
    if budget.epochs:
        overrides["train.epochs"] = budget.epochs
    if budget.fast:  # bf16 compute; attention stays XLA's, with its dropout (at seq 128 cuDNN's gain is small)
        overrides["model.dtype"] = "bfloat16"
    if control:  # from scratch: the same discriminator as the pre-trained runs (with --init the checkpoint decides)
        # finetune_size only picks the recipe (learning rate, layer decay); the network is pretrain_size's.
        network = config_lib.load(f"configs/finetune.py:{task},{budget.pretrain_size}").model
        overrides.update({f"model.{k}": network[k] for k in network.keys() if k not in ("dtype", "attention")})
        overrides.update({f"model.{k}": v for k, v in budget.model.items()})
    return config_lib.load(f"configs/finetune.py:{task},{budget.finetune_size}", overrides)


def finetune_tag(budget: Budget) -> str:
    """The folder name of one fine-tuning protocol: a rerun with other fine-tuning settings (FINETUNE_FIELDS) on the
    same pre-training outputs fine-tunes the same checkpoints again beside the earlier results."""
    tag = (f"{budget.finetune_size}-seq{budget.finetune_seq_len}-b{budget.finetune_batch_size}"
           f"-n{budget.max_train_examples or 'all'}-e{budget.epochs or 'task'}-dev{budget.max_eval_examples or 'all'}"
           f"-seeds{'.'.join(str(s) for s in budget.seeds)}")
    if budget.early_seeds:
        tag += f"-early{'.'.join(str(s) for s in budget.early_seeds)}"
    return tag


def seed_scores(results: dict[str, Any], metric: str, seeds: Sequence[int]) -> list[tuple[int, float]]:
    """[(seed, metric x 100)] from a finetune results.json (one entry per seed, or one run)."""
    if "seeds" in results:
        return [(int(s["seed"]), 100.0 * float(s["best"][metric])) for s in results["seeds"]]
    return [(int(seeds[0]), 100.0 * float(results["best"][metric]))]


DIVERGED = "diverged.txt"  # beside where results.json would be: why a model has no results for a task


def results_path(out: Path, protocol: str, model: dict[str, Any], task: str) -> Path:
    return out / "finetune" / protocol / model["name"] / task / "results.json"


def priority_order(models: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The control, then the top compute points, then the earlier points by FLOPs: what a run cut short keeps."""
    return sorted(models, key=lambda m: (m["objective"] != CONTROL, not m.get("top"), m["flops"], m["objective"]))


class CheckpointWatch:
    """For a worker: a checkpoint is ready once written; pre-training is over when the experiment says so."""

    def __init__(self, out: Path):
        self.out = out

    def ready(self, model: dict[str, Any]) -> bool:
        return model["init"] is None or has_checkpoint(Path(model["init"]).parent.parent, model["step"])

    def over(self) -> bool:
        return (self.out / PRETRAIN_DONE).exists()


def is_headline(model: dict[str, Any]) -> bool:
    """The control and the top compute points: the comparison itself (earlier points draw the curve)."""
    return model["objective"] == CONTROL or bool(model.get("top"))


def _fitting(pending: list[dict[str, Any]], budget: Budget, deadline: float, seed_seconds: list[float],
             now: float | None = None) -> list[dict[str, Any]]:
    """The models whose fine-tuning, at this task's measured seconds per seed, ends before the deadline (a
    time.time() value; `now` defaults to the current one)."""
    now = time.time() if now is None else now
    estimate = statistics.fmean(seed_seconds) if seed_seconds else 0.0
    fitting = [m for m in pending if now + estimate * len(seeds_for(budget, is_headline(m))) < deadline]
    for model in pending:
        if model not in fitting:
            logging.warning("finetune: leaving out %s: ~%.0f s per seed would end after the deadline (%.0f s left)",
                            model["name"], estimate, deadline - now)
    return fitting


def finetune_task(task: str, models: Sequence[dict[str, Any]], *, budget: Budget, out: Path, protocol: str,
                  glue_dir: Path, vocab: Path, stages: Stages, watch: CheckpointWatch | None = None,
                  on_result: Callable[[], None] | None = None, deadline: float | None = None,
                  headline_only: bool = False) -> None:
    """Fine-tunes each model (init None: the control) on one task with its seeds; skips models with results.

    A model whose fine-tuning diverges (NonFiniteLossError) is logged, leaves its reason in DIVERGED where its
    results would be, and is skipped (now and on reruns); the others go on.

    Without `watch` every checkpoint must exist. With it, models whose checkpoint is not written yet are waited
    for (polling); PretrainingOver is raised when pre-training ends without them. `on_result()` runs after each
    model's results.json is written (the experiment rewrites its report there). With a `deadline` (time.time()
    seconds) the control and top points come first, and an earlier point runs only if it can end before it.
    `headline_only` fine-tunes the control and the top points alone.
    """
    import flax.linen as nn

    from electra_jax import config as config_lib
    from electra_jax.checkpoint_formats import open_checkpoint
    from electra_jax.data import tokenizer as make_tokenizer
    from electra_jax.finetune import NonFiniteLossError, TaskSession

    pending = [m for m in priority_order(models) if not results_path(out, protocol, m, task).exists()
               and not (results_path(out, protocol, m, task).parent / DIVERGED).exists()  # it would again
               and (is_headline(m) or not headline_only)]
    if not pending:
        return
    start = time.time()
    config = finetune_config(budget, task, glue_dir, vocab, control=True)
    tokenizer = make_tokenizer(str(vocab), lower_case=config.data.lower_case)
    config.model.vocab_size = tokenizer.vocab_size
    config.model.padded_vocab_size = 0
    config_lib.finalize(config)
    session = TaskSession(config, tokenizer)  # featurized and compiled once, for every model and seed
    logging.info("finetune %s: %d training rows, session ready in %.1f s", task, session.data.num_train,
                 time.time() - start)
    seed_seconds: list[float] = []
    while pending:
        headline = [m for m in pending if is_headline(m)]
        if deadline is not None and not headline:
            pending = _fitting(pending, budget, deadline, seed_seconds)
        candidates = headline if deadline is not None and headline else pending
        available = [m for m in candidates if watch is None or watch.ready(m)]
        if not available:
            if not pending:
                break
            if watch.over() and not any(watch.ready(m) for m in pending):
                raise PretrainingOver(f"pre-training ended without {[m['init'] for m in pending]}")
            time.sleep(2.0)
            continue
        model = available[0]
        pending.remove(model)
        seeds = seeds_for(budget, top=is_headline(model))
        workdir = results_path(out, protocol, model, task).parent
        with Timer(stages, f"finetune_{protocol}_{model['name']}_{task}"):
            pretrained = None
            if model["init"]:
                checkpoint = open_checkpoint(model["init"], flag="the experiment's checkpoint")
                _check_same_network(config, checkpoint.config, model["init"])
                pretrained = nn.unbox(checkpoint.params)
            try:
                results = session.fine_tune(str(workdir), pretrained, seeds=list(seeds), init=model["init"])
            except NonFiniteLossError as e:  # one diverged model costs its own cell of the table, not the rest
                logging.error("finetune %s on %s diverged and is left out of the results: %s", model["name"], task, e)
                workdir.mkdir(parents=True, exist_ok=True)
                (workdir / DIVERGED).write_text(f"{e}\n")
                continue
        if results.get("preempted"):
            raise SystemExit(f"fine-tuning {model['name']} on {task} stopped on a signal; rerun to resume")
        for folder in [workdir, *workdir.glob("seed*_*")]:  # resume state, no longer needed once results exist
            shutil.rmtree(folder / "checkpoints", ignore_errors=True)
        seed_seconds.append(float(results["seconds"]) / len(seeds))
        logging.info("finetune %s on %s: %s", model["name"], task, results["best"])
        if on_result is not None:
            on_result()


def _check_same_network(config, ckpt_config, path: str) -> None:
    from electra_jax.finetune.model import CHECKPOINT_MODEL_FIELDS

    section = ckpt_config["model"] if "model" in ckpt_config else ckpt_config
    differ = {f: (section[f], config.model[f]) for f in CHECKPOINT_MODEL_FIELDS if f in section
              and section[f] != config.model[f]}
    if differ:
        raise ValueError(f"the checkpoint {path} is another network than the task runner's: {differ} "
                         "(checkpoint, runner)")


def start_workers(out: Path, tasks: Sequence[str]) -> dict[str, subprocess.Popen]:
    """One fine-tuning process per task; they allocate accelerator memory as they go, beside pre-training's."""
    env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false")
    env.pop("XLA_PYTHON_CLIENT_MEM_FRACTION", None)
    (out / "logs").mkdir(exist_ok=True)
    workers = {}
    for task in tasks:
        log = open(out / "logs" / f"finetune_{task}.log", "w")  # noqa: SIM115 - the child writes it
        workers[task] = subprocess.Popen(
            [sys.executable, "-m", "electra_jax.experiments.finetuning", f"--output_dir={out}", f"--task={task}"],
            cwd=str(REPO_ROOT), env=env, stdout=log, stderr=subprocess.STDOUT)
    return workers


POLL_S, REDRAW_S = 5.0, 30.0  # wait_for_workers: how often it looks at the workers, and redraws at most


def wait_for_workers(out: Path, workers: dict[str, subprocess.Popen], results: str) -> None:
    from electra_jax.experiments import report

    # The workers rewrite the report after each result but not the plot (one process draws it): redraw it here
    # every half minute while results come in, so a run cut short by a time limit returns a current plot.
    write_report = report.write_report
    drawn, last_draw = None, time.time()
    while any(proc.poll() is None for proc in workers.values()):
        time.sleep(POLL_S)
        rows = out / "results.json"
        changed = rows.exists() and rows.stat().st_mtime_ns != drawn
        if changed and time.time() - last_draw >= REDRAW_S:
            write_report(out, results)
            drawn, last_draw = rows.stat().st_mtime_ns, time.time()
    failed = {task: proc.returncode for task, proc in workers.items() if proc.returncode}
    write_report(out, results)
    if failed:
        tails = {task: (out / "logs" / f"finetune_{task}.log").read_text()[-1500:] for task in failed}
        raise RuntimeError(f"fine-tuning workers failed (exit codes {failed}):\n" + "\n".join(
            f"--- {task}:\n{tail}" for task, tail in tails.items()))


def _exit_with_parent() -> None:
    """A worker ends when the experiment that started it is gone (killed by a time limit, say)."""
    import threading

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(2.0)
        logging.warning("finetune worker: the experiment (pid %d) is gone; stopping", parent)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def main(argv: Sequence[str]) -> None:
    """A worker: fine-tunes one task for every model of the run described by DIR/run.json."""
    from absl import flags

    from electra_jax.experiments.report import write_report
    from electra_jax.experiments.stages import configure_jax_cache

    del argv
    _exit_with_parent()
    out = Path(flags.FLAGS.output_dir)
    run = json.loads((out / "run.json").read_text())
    budget = Budget(**{k: tuple(v) if isinstance(v, list) else v for k, v in run["budget"].items()})
    configure_jax_cache(out)
    try:
        finetune_task(flags.FLAGS.task, run["models"], budget=budget, out=out, protocol=run["protocol"],
                      glue_dir=Path(run["glue_dir"]), vocab=Path(run["vocab"]["path"]),
                      stages=Stages(out / "stages.json"), watch=CheckpointWatch(out),
                      on_result=lambda: write_report(out, run["results"], plot=False), deadline=run.get("deadline"))
    except PretrainingOver as e:
        logging.warning("finetune %s: %s", flags.FLAGS.task, e)


if __name__ == "__main__":
    from absl import flags

    from electra_jax import cli

    flags.DEFINE_string("output_dir", None, "The experiment's output folder (it holds run.json).")
    flags.DEFINE_string("task", None, "The task this worker fine-tunes.")
    cli.run(main)
