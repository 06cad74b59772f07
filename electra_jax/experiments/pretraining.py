"""Pre-training at equal FLOPs for the compute-efficiency experiment: the configs, the step plan, the runs.

Every objective trains on the same records with the same optimizer and schedule. ELECTRA's steps are the
budget's; every other objective gets the steps of the same total model FLOPs (electra_jax.flops), so the masked
LM, which has no generator and no discriminator head, takes more steps. Each run keeps checkpoints at `num_points`
equally spaced compute points; its learning-rate schedule spans the whole run, so an intermediate point is an
earlier checkpoint of that run (as in the paper's efficiency curves).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from absl import logging

from electra_jax.experiments.budgets import OBJECTIVES, REFERENCE_OBJECTIVE, Budget
from electra_jax.experiments.stages import Stages, Timer

RECORD_GLOBS = {"tfrecord": "*.tfrecord*", "numpy": "*.npy"}


def pretrain_spec(budget: Budget) -> str:
    return f"configs/pretrain.py:{budget.pretrain_size}{',fast' if budget.fast else ''}"


def pretrain_overrides(budget: Budget, vocab_size: int, records_dir: Path, objective: str, steps: int,
                       extra: dict[str, Any] | None = None) -> dict[str, Any]:
    every = steps // budget.num_points
    records = RECORD_GLOBS[budget.records_format]
    overrides = {f"model.{k}": v for k, v in budget.model.items()}
    overrides.update(OBJECTIVES[objective])
    overrides.update({
        "model.vocab_size": vocab_size,
        "data.format": budget.records_format,
        "data.train_files": str(records_dir / "train" / records),
        "data.eval_files": str(records_dir / "eval" / records),
        "data.max_seq_length": budget.seq_len,
        "train.batch_size": budget.batch_size,
        "train.steps": steps,
        "train.log_every": max(1, min(50, every)),
        "train.eval_every": every if budget.eval_steps else 0,
        "train.eval_steps": max(1, budget.eval_steps),
        "train.progress": "log",
        "optim.warmup_steps": budget.warmup_steps,
        "checkpoint.every_steps": every,
        "checkpoint.keep": 0,  # keep every compute point
    })
    overrides.update(extra or {})
    return overrides


def pretrain_config(budget: Budget, vocab_size: int, records_dir: Path, objective: str, steps: int,
                    extra: dict[str, Any] | None = None):
    from electra_jax import config as config_lib

    return config_lib.load(pretrain_spec(budget),
                           pretrain_overrides(budget, vocab_size, records_dir, objective, steps, extra))


def check_configs(budget: Budget, objectives: Sequence[str], extra: dict[str, Any] | None = None) -> None:
    """Builds every objective's config once, before any stage: an unknown field or value fails here, named."""
    from electra_jax.config import ConfigError

    for objective in objectives:
        try:
            pretrain_config(budget, budget.vocab_size, Path("records"), objective, budget.num_points, extra)
        except (ConfigError, ValueError) as e:
            fields = ", ".join(f"{k}={v}" for k, v in OBJECTIVES[objective].items())
            raise ValueError(f"objective {objective!r} ({fields}) does not fit this version's pre-training config: "
                             f"{e}") from None


def plan_steps(budget: Budget, vocab_size: int, records_dir: Path, objectives: Sequence[str],
               extra: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Steps and FLOPs per objective: ELECTRA's budget, and for the others the steps of the same total FLOPs.

    Step counts are multiples of num_points so every compute point is a checkpoint; another objective's total
    differs from ELECTRA's by at most half a checkpoint interval of its steps (reported as the actual FLOPs).
    """
    from electra_jax.flops import model_flops_per_step

    n = budget.num_points
    reference_steps = max(n, int(round(budget.electra_steps / n)) * n)

    def flops_per_step(objective: str) -> float:
        config = pretrain_config(budget, vocab_size, records_dir, objective, reference_steps, extra)
        return float(model_flops_per_step(config, budget.batch_size, budget.seq_len))

    total = flops_per_step(REFERENCE_OBJECTIVE) * reference_steps
    plan = {}
    for objective in objectives:
        per_step = flops_per_step(objective)
        steps = reference_steps if objective == REFERENCE_OBJECTIVE else max(n, int(round(total / per_step / n)) * n)
        every = steps // n
        plan[objective] = {"steps": steps, "flops_per_step": per_step, "total_flops": per_step * steps,
                           "points": [{"index": i + 1, "step": every * (i + 1), "flops": per_step * every * (i + 1)}
                                      for i in range(n)]}
    return plan


def step_dir(workdir: Path, step: int) -> Path:
    return workdir / "checkpoints" / str(step)


def has_checkpoint(workdir: Path, step: int) -> bool:
    return (step_dir(workdir, step) / "state").is_dir()


def _logged(workdir: Path) -> list[dict[str, Any]]:
    """The run's metrics.jsonl records in order (a line a kill left half written is skipped)."""
    path = workdir / "metrics.jsonl"
    records = []
    for line in path.read_text().splitlines() if path.exists() else ():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _is_eval(record: dict[str, Any]) -> bool:
    return record.get("split") == "eval" or any(k.startswith("eval_") for k in record)


def eval_metrics(workdir: Path) -> dict[int, dict[str, float]]:
    """{step: eval metrics} from the run's metrics.jsonl (the later line wins after a resume)."""
    return {int(r.get("step", -1)): {k: v for k, v in r.items() if k.startswith("eval_")}
            for r in _logged(workdir) if _is_eval(r)}


TRAIN_FIELDS = ("loss", "mlm_loss", "mlm_accuracy", "disc_loss", "disc_accuracy", "disc_auc", "learning_rate",
                "tokens_per_sec")


def train_metrics(workdir: Path, steps: Sequence[int]) -> dict[str, dict[str, float]]:
    """{step: training-batch metrics} from the run's metrics.jsonl: the last line logged at or before each of
    `steps` (the compute points, say). What a report needs to judge a pre-training run that never ran an eval
    pass: its losses, accuracies and speed where each checkpoint was taken."""
    logged = {int(r["step"]): {k: r[k] for k in TRAIN_FIELDS if r.get(k) is not None}
              for r in _logged(workdir) if "step" in r and "loss" in r and not _is_eval(r)}
    found = {}
    for step in steps:
        last = max((s for s in logged if s <= step), default=None)
        if last is not None:
            found[str(step)] = {"logged_step": last, **logged[last]}
    return found


def models_of(out: Path, plan: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every checkpoint the plan makes, as a model to fine-tune: objective, FLOPs, step, init path, name, top."""
    models = []
    for objective, entry in plan.items():
        for point in entry["points"]:
            models.append({"objective": objective, "flops": point["flops"], "step": point["step"],
                           "init": str(step_dir(out / "pretrain" / objective, point["step"])),
                           "name": f"{objective}_{point['index']}", "top": point["index"] == len(entry["points"])})
    return models


def run_pretraining(out: Path, budget: Budget, plan: dict[str, dict[str, Any]], *, vocab_size: int, vocab_path: Path,
                    records_dir: Path, stages: Stages, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Runs (or resumes) every objective's pre-training in plan order; returns each run's model config, learning
    rate, held-out eval metrics and training-batch metrics at each compute point."""
    info: dict[str, Any] = {"eval": {}, "train": {}}
    for objective, entry in plan.items():
        workdir = out / "pretrain" / objective
        config = pretrain_config(budget, vocab_size, records_dir, objective, entry["steps"], extra)
        config.data.vocab = str(vocab_path)
        info.setdefault("model", config.model)
        info.setdefault("learning_rate", config.optim.learning_rate)
        if not all(has_checkpoint(workdir, p["step"]) for p in entry["points"]):
            from electra_jax import pretrain

            with Timer(stages, f"pretrain_{objective}", steps=entry["steps"]):
                summary = pretrain.train_and_evaluate(config, str(workdir))
            if summary.get("preempted"):
                raise SystemExit(f"pre-training {objective} stopped at step {summary.get('step')} on a signal (its "
                                 "checkpoint is saved); rerun the same command to resume")
            missing = [p["step"] for p in entry["points"] if not has_checkpoint(workdir, p["step"])]
            if missing:
                raise RuntimeError(f"pre-training {objective} finished without the checkpoints of steps {missing} in "
                                   f"{workdir / 'checkpoints'}; rerun the command to resume")
        logging.info("pre-training %s: %d steps done in %s", objective, entry["steps"], workdir)
        info["eval"][objective] = {str(k): v for k, v in eval_metrics(workdir).items()}
        info["train"][objective] = train_metrics(workdir, [p["step"] for p in entry["points"]])
    return info
