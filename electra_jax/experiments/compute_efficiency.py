r"""Issue #8: does ELECTRA beat masked-LM pre-training at equal compute?  (Clark et al. 2020, Figure 4 / Table 1.)

    python -m electra_jax.experiments.compute_efficiency --output_dir=workdirs/compute_efficiency --budget=cpu \
        --results=benchmarks/results/compute_efficiency.json

One command runs the whole comparison and can be killed and rerun at any point (finished work is skipped):

  1. corpus    real English text: ../shared/data/text (WikiText-2 valid/test articles, State of the Union
               addresses, Tiny Shakespeare) plus the Python 3.11 documentation sources of Debian's python3.11-doc
               package (reST stripped to prose), written one sentence per line with a blank line between
               documents; every 20th document is held out for the pre-training eval set.
  2. vocab     one WordPiece vocabulary trained on the training documents (build_vocab; --vocab=bert uses the
               published BERT uncased vocabulary instead).
  3. records   one set of pre-training records (build_data) for both objectives, plus held-out eval records.
  4. pretrain  (a) ELECTRA (generator + discriminator) and (b) the masked-LM baseline (objective.kind='mlm': BERT
               80/10/10 masking, the MLM head on the discriminator-sized encoder), same optimizer and schedule,
               for the SAME pre-training FLOPs (electra_jax.flops.model_flops_per_step): the MLM run takes more
               steps, as many as the generator and discriminator head cost ELECTRA. Each run keeps checkpoints at
               `num_points` equally spaced compute points; the learning-rate schedule spans the whole run, so an
               intermediate point is just an earlier checkpoint of that run (as in the paper's efficiency curve).
  5. finetune  every checkpoint, and a no-pre-training control, on SST-2, CoLA, MRPC, RTE and STS-B with several
               seeds (electra_jax.finetune.train_and_evaluate; one call per model and task runs all its seeds).
  6. report    DIR/results.json (rows {objective, pretrain_flops, task, seed, metric, score}), DIR/results.md
               (median per task, the average, FLOPs and wall times) and DIR/compute_efficiency.png (average dev
               score against pre-training FLOPs for both objectives, the control as a horizontal line); with
               --results=PATH.json the JSON, .md and .png are also written beside PATH.

--budget=toy runs every stage in well under a minute of compute (a sliver of the corpus, a few steps, one task,
one seed) and is what the test runs; --budget=cpu is the real experiment sized for a 2-core CPU (about 100-130
minutes); --budget=gpu is a larger model and more steps for one accelerator. Fine-tuning settings (--epochs,
--max_train_examples, --seeds, --tasks) may change between runs in one --output_dir: the pre-training checkpoints
are reused and each protocol's results go to DIR/finetune/<protocol>/.

Scores are reported as the paper does: dev-set medians over seeds, x100; CoLA is Matthews correlation, STS-B
Spearman correlation, the others accuracy; the average is the unweighted mean over the tasks.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from absl import app, flags, logging

from electra_jax.config import REPO_ROOT
from electra_jax.corpus.local import write_corpus

OBJECTIVES = ("electra", "mlm")
CONTROL = "none"
# task -> (GLUE folder, headline metric, display name); the paper's GLUE dev metrics.
TASKS = {
    "cola": ("CoLA", "mcc", "CoLA"),
    "sst2": ("SST-2", "accuracy", "SST-2"),
    "mrpc": ("MRPC", "accuracy", "MRPC"),
    "stsb": ("STS-B", "spearman", "STS-B"),
    "rte": ("RTE", "accuracy", "RTE"),
}
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
DEFAULT_PYTHON_DOCS = "/usr/share/doc/python3.11/html/_sources"


# ---------------------------------------------------------------------------------------------------------
# Budgets


@dataclasses.dataclass(frozen=True)
class Budget:
    """Everything that sets the scale of one run of the experiment."""

    name: str
    # corpus and vocabulary
    corpus_max_chars: int  # 0 = every document; else about this many characters, spread over the sources
    vocab_size: int
    # pre-training: configs/pretrain.py:SIZE with these overrides (both objectives)
    pretrain_size: str
    model: dict[str, Any]
    seq_len: int
    batch_size: int
    electra_steps: int  # ELECTRA's steps; the MLM run gets the steps of the same FLOPs
    warmup_steps: int
    num_points: int  # checkpoints at 1/n, 2/n, ..., n/n of the pre-training FLOPs
    eval_steps: int  # pre-training eval batches at every compute point (held-out records); 0 = no eval
    # fine-tuning: configs/finetune.py:TASK,finetune_size with these caps
    finetune_size: str
    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    max_train_examples: int  # 0 = all
    max_eval_examples: int  # 0 = all
    epochs: int  # 0 = the task's default (3; RTE and STS-B 10)
    finetune_seq_len: int
    finetune_batch_size: int
    build_processes: int = 1


# The fields that only change fine-tuning: a rerun in the same --output_dir may change them (the corpus, records and
# pre-training checkpoints are reused; fine-tuning results go to finetune/<finetune_tag>/), every other field must
# match the run on disk.
FINETUNE_FIELDS = ("finetune_size", "tasks", "seeds", "max_train_examples", "max_eval_examples", "epochs",
                   "finetune_seq_len", "finetune_batch_size")

BUDGETS = {
    # Every stage, a few seconds each: a tiny slice of the corpus, a one-layer model, one task, one seed.
    "toy": Budget(
        name="toy", corpus_max_chars=120_000, vocab_size=600, pretrain_size="tiny",
        model={"num_layers": 1, "hidden_size": 64, "embedding_size": 32, "intermediate_size": 128, "num_heads": 1},
        seq_len=32, batch_size=8, electra_steps=4, warmup_steps=1, num_points=2, eval_steps=0,
        finetune_size="tiny", tasks=("rte",), seeds=(0,), max_train_examples=32, max_eval_examples=32, epochs=1,
        finetune_seq_len=32, finetune_batch_size=8),
    # The real experiment on a 2-core CPU: the tiny model (2 layers, hidden 128, generator 1/2) at seq 128, then
    # ELECTRA-Small's fine-tuning recipe (LR 3e-4; our tiny recipe's 1e-3 stalls briefly pre-trained starts) on 3,000
    # examples x 3 epochs. Measured: 18-33 + 15-21 minutes of pre-training, 55 of fine-tuning (45 jobs of 3 seeds)
    # (docs/EVIDENCE.md has the per-stage times).
    "cpu": Budget(
        name="cpu", corpus_max_chars=0, vocab_size=8192, pretrain_size="tiny", model={},
        seq_len=128, batch_size=32, electra_steps=3000, warmup_steps=150, num_points=4, eval_steps=10,
        finetune_size="small", tasks=("sst2", "cola", "mrpc", "stsb", "rte"), seeds=(0, 1, 2),
        max_train_examples=3000, max_eval_examples=1000, epochs=3, finetune_seq_len=64, finetune_batch_size=32,
        build_processes=2),
    # One accelerator: ELECTRA-Small-sized networks, full fine-tuning sets except SST-2 (capped), task epochs.
    "gpu": Budget(
        name="gpu", corpus_max_chars=0, vocab_size=16384, pretrain_size="small", model={},
        seq_len=128, batch_size=128, electra_steps=20000, warmup_steps=1000, num_points=4, eval_steps=20,
        finetune_size="small", tasks=("sst2", "cola", "mrpc", "stsb", "rte"), seeds=(0, 1, 2),
        max_train_examples=20000, max_eval_examples=0, epochs=0, finetune_seq_len=128, finetune_batch_size=32,
        build_processes=4),
}


# ---------------------------------------------------------------------------------------------------------
# Bookkeeping: stage timings that survive restarts


class Stages:
    """DIR/stages.json: {stage: {"seconds": wall seconds (summed over restarts), "done": bool}}."""

    def __init__(self, path: Path):
        self.path = path
        self.data: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.exists() else {}

    def done(self, name: str) -> bool:
        return bool(self.data.get(name, {}).get("done"))

    def seconds(self, name: str) -> float:
        return float(self.data.get(name, {}).get("seconds", 0.0))

    def record(self, name: str, seconds: float, done: bool = True, **extra) -> None:
        entry = self.data.setdefault(name, {"seconds": 0.0, "done": False})
        entry["seconds"] = round(float(entry.get("seconds", 0.0)) + seconds, 2)
        entry["done"] = done
        entry.update(extra)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, sort_keys=True))
        tmp.replace(self.path)


class _Timer:
    def __init__(self, stages: Stages, name: str, **extra):
        self.stages, self.name, self.extra = stages, name, extra

    def __enter__(self):
        self.start = time.time()
        logging.info("stage %s: starting", self.name)
        return self

    def __exit__(self, exc_type, exc, tb):
        elapsed = time.time() - self.start
        self.stages.record(self.name, elapsed, done=exc_type is None, **self.extra)
        logging.info("stage %s: %s after %.1f s (%.1f s in total)", self.name,
                     "done" if exc_type is None else f"stopped by {exc_type.__name__}", elapsed,
                     self.stages.seconds(self.name))
        return False


# ---------------------------------------------------------------------------------------------------------
# The pre-training plan: equal FLOPs, checkpoints at equal compute fractions


def pretrain_overrides(budget: Budget, vocab_size: int, records_dir: Path, objective: str, steps: int
                       ) -> dict[str, Any]:
    every = steps // budget.num_points
    overrides = {f"model.{k}": v for k, v in budget.model.items()}
    overrides.update({
        "model.vocab_size": vocab_size,
        "objective.kind": objective,
        "data.train_files": str(records_dir / "train" / "*.tfrecord*"),
        "data.eval_files": str(records_dir / "eval" / "*.tfrecord*"),
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
    return overrides


def pretrain_config(budget: Budget, vocab_size: int, records_dir: Path, objective: str, steps: int):
    from electra_jax import config as config_lib

    return config_lib.load(f"configs/pretrain.py:{budget.pretrain_size}",
                           pretrain_overrides(budget, vocab_size, records_dir, objective, steps))


def plan_steps(budget: Budget, vocab_size: int, records_dir: Path) -> dict[str, dict[str, Any]]:
    """Steps and FLOPs per objective: ELECTRA's budget, and the MLM steps of the same total FLOPs.

    Step counts are multiples of num_points so every compute point is a checkpoint; the MLM total differs from
    ELECTRA's by at most half a checkpoint interval of MLM steps (reported as the actual FLOPs).
    """
    from electra_jax.flops import model_flops_per_step

    n = budget.num_points
    electra_steps = max(n, int(round(budget.electra_steps / n)) * n)
    plan = {}
    electra_config = pretrain_config(budget, vocab_size, records_dir, "electra", electra_steps)
    electra_flops = model_flops_per_step(electra_config, budget.batch_size, budget.seq_len)
    total = electra_flops * electra_steps
    plan["electra"] = {"steps": electra_steps, "flops_per_step": electra_flops}
    mlm_config = pretrain_config(budget, vocab_size, records_dir, "mlm", n)
    mlm_flops = model_flops_per_step(mlm_config, budget.batch_size, budget.seq_len)
    mlm_steps = max(n, int(round(total / mlm_flops / n)) * n)
    plan["mlm"] = {"steps": mlm_steps, "flops_per_step": mlm_flops}
    for entry in plan.values():
        every = entry["steps"] // n
        entry["points"] = [{"index": i + 1, "step": every * (i + 1),
                            "flops": entry["flops_per_step"] * every * (i + 1)} for i in range(n)]
        entry["total_flops"] = entry["flops_per_step"] * entry["steps"]
    return plan


def _step_dir(workdir: Path, step: int) -> Path:
    return workdir / "checkpoints" / str(step)


def _has_checkpoint(workdir: Path, step: int) -> bool:
    return (_step_dir(workdir, step) / "state").is_dir()


def _eval_metrics(workdir: Path) -> dict[int, dict[str, float]]:
    """{step: eval metrics} from the run's metrics.jsonl (the later line wins after a resume)."""
    path = workdir / "metrics.jsonl"
    found: dict[int, dict[str, float]] = {}
    if not path.exists():
        return found
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("split") == "eval" or any(k.startswith("eval_") for k in record):
            found[int(record.get("step", -1))] = {k: v for k, v in record.items() if k.startswith("eval_")}
    return found


# ---------------------------------------------------------------------------------------------------------
# Fine-tuning


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
    }
    if budget.epochs:
        overrides["train.epochs"] = budget.epochs
    if control:  # from scratch: the same discriminator as the pre-trained runs (with --init the checkpoint decides)
        # finetune_size only picks the recipe (learning rate, layer decay); the network is pretrain_size's.
        network = config_lib.load(f"configs/finetune.py:{task},{budget.pretrain_size}").model
        overrides.update({f"model.{k}": network[k] for k in network.keys()})
        overrides.update({f"model.{k}": v for k, v in budget.model.items()})
    return config_lib.load(f"configs/finetune.py:{task},{budget.finetune_size}", overrides)


def finetune_tag(budget: Budget) -> str:
    """The folder name of one fine-tuning protocol: a rerun with other fine-tuning settings (FINETUNE_FIELDS) on the
    same pre-training outputs fine-tunes the same checkpoints again beside the earlier results."""
    return (f"{budget.finetune_size}-seq{budget.finetune_seq_len}-b{budget.finetune_batch_size}"
            f"-n{budget.max_train_examples or 'all'}-e{budget.epochs or 'task'}-dev{budget.max_eval_examples or 'all'}"
            f"-seeds{'.'.join(str(s) for s in budget.seeds)}")


def seed_scores(results: dict[str, Any], metric: str, seeds: Sequence[int]) -> list[tuple[int, float]]:
    """[(seed, metric x 100)] from a finetune results.json (one entry per seed, or one run)."""
    if "seeds" in results:
        return [(int(s["seed"]), 100.0 * float(s["best"][metric])) for s in results["seeds"]]
    return [(int(seeds[0]), 100.0 * float(results["best"][metric]))]


# ---------------------------------------------------------------------------------------------------------
# Report


def summarize(rows: list[dict[str, Any]], tasks: Sequence[str]) -> list[dict[str, Any]]:
    """One line per (objective, pretrain_flops): the median over seeds per task and their average."""
    groups: dict[tuple[str, float], dict[str, list[float]]] = {}
    for row in rows:
        groups.setdefault((row["objective"], float(row["pretrain_flops"])), {}).setdefault(
            row["task"], []).append(float(row["score"]))
    order = {CONTROL: 0, "electra": 1, "mlm": 2}
    lines = []
    for (objective, flops), per_task in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], 9), kv[0][1])):
        medians = {t: statistics.median(per_task[t]) for t in tasks if t in per_task}
        average = statistics.fmean(medians.values()) if len(medians) == len(tasks) else float("nan")
        lines.append({"objective": objective, "pretrain_flops": flops, "medians": medians, "average": average,
                      "seeds": max(len(v) for v in per_task.values())})
    return lines


def _minutes(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds / 60:.1f}"


def write_markdown(path: Path, lines: list[dict[str, Any]], tasks: Sequence[str], meta: dict[str, Any]) -> None:
    budget, plan = meta["budget"], meta["plan"]
    names = [TASKS[t][2] for t in tasks]
    metrics = ", ".join(f"{TASKS[t][2]} {TASKS[t][1]}" for t in tasks)
    out = [f"# ELECTRA vs masked-LM pre-training at equal compute (budget `{budget['name']}`)", "",
           f"Command: `{meta['command']}`", "",
           f"Dev-set scores x100, median over {len(budget['seeds'])} fine-tuning seed(s) ({metrics}); `avg` is the "
           "unweighted mean of the task medians. Pre-training FLOPs are model FLOPs "
           "(`electra_jax.flops.model_flops_per_step`, forward + backward matmuls). `pre-train min` is the wall time "
           "of that run up to the checkpoint (linear in steps within one run); `fine-tune min` is the wall time of "
           "fine-tuning that checkpoint on every task and seed.", "",
           "| objective | pre-train FLOPs | steps | pre-train min | " + " | ".join(names) + " | avg | fine-tune min |",
           "|---|---:|---:|---:|" + "---:|" * len(names) + "---:|---:|"]
    for line in lines:
        objective, flops = line["objective"], line["pretrain_flops"]
        info = meta["models"].get(f"{objective}:{flops:.6e}", {})
        cells = [f"{line['medians'][t]:.1f}" if t in line["medians"] else "–" for t in tasks]
        average = "–" if line["average"] != line["average"] else f"{line['average']:.1f}"
        out.append(f"| {objective} | {flops:.3g} | {info.get('step', 0)} | {_minutes(info.get('pretrain_seconds'))} | "
                   + " | ".join(cells) + f" | **{average}** | {_minutes(info.get('finetune_seconds'))} |")
    out += ["", "## Setup", ""]
    model = meta["model"]
    out.append(f"- Model: discriminator {model['num_layers']} layers, hidden {model['hidden_size']}, embedding "
               f"{model['embedding_size']}, FFN {model['intermediate_size']}, {model['num_heads']} heads; ELECTRA's "
               f"generator hidden {model['generator_hidden_size']} (FFN {model['generator_intermediate_size']}, "
               f"{model['generator_num_layers']} layers). The MLM baseline is the discriminator-sized encoder with "
               "the generator's MLM head (BERT 80/10/10 masking, mask_prob 0.15).")
    out.append(f"- Pre-training: seq {budget['seq_len']}, batch {budget['batch_size']}, warmup "
               f"{budget['warmup_steps']} steps, linear decay over each run's full length, peak LR "
               f"{meta['learning_rate']}; ELECTRA {plan['electra']['steps']} steps x "
               f"{plan['electra']['flops_per_step']:.3g} FLOPs, MLM {plan['mlm']['steps']} steps x "
               f"{plan['mlm']['flops_per_step']:.3g} FLOPs (total {plan['electra']['total_flops']:.3g} vs "
               f"{plan['mlm']['total_flops']:.3g}).")
    corpus = meta["corpus"]
    out.append(f"- Corpus: {corpus['train_documents']} training documents ({corpus['train_chars'] / 1e6:.1f} M "
               f"characters), {corpus['eval_documents']} held out; " + "; ".join(
                   f"{k}: {v['documents']} docs, {v['chars'] / 1e6:.2f} M chars"
                   for k, v in corpus["sources"].items()) + f". Records: {meta['records']['train']} train / "
               f"{meta['records']['eval']} eval examples of {budget['seq_len']} tokens.")
    out.append(f"- Vocabulary: {meta['vocab']['kind']} ({meta['vocab']['size']} WordPieces).")
    epochs = budget["epochs"] or "task default (3; RTE, STS-B 10)"
    out.append(f"- Fine-tuning: configs/finetune.py:TASK,{budget['finetune_size']} recipe, seq "
               f"{budget['finetune_seq_len']}, batch {budget['finetune_batch_size']}, epochs {epochs}, at most "
               f"{budget['max_train_examples'] or 'all'} training and {budget['max_eval_examples'] or 'all'} dev "
               f"examples per task, seeds {', '.join(map(str, budget['seeds']))}.")
    evals = meta.get("pretrain_eval") or {}
    if evals:
        out += ["", "## Pre-training eval (held-out records)", "",
                "| objective | step | MLM loss | MLM accuracy | disc AUC |", "|---|---:|---:|---:|---:|"]
        for objective, by_step in evals.items():
            for step, m in sorted(by_step.items(), key=lambda kv: int(kv[0])):
                cells = [m.get(k) for k in ("eval_mlm_loss", "eval_mlm_accuracy", "eval_disc_auc")]
                out.append(f"| {objective} | {step} | " + " | ".join(
                    "–" if v is None else f"{float(v):.3f}" for v in cells) + " |")
    out += ["", "## Wall time per stage", "", "| stage | minutes |", "|---|---:|"]
    for name, entry in meta["stages"].items():
        out.append(f"| {name} | {_minutes(entry.get('seconds'))} |")
    out.append(f"| **total** | {_minutes(sum(e.get('seconds', 0.0) for e in meta['stages'].values()))} |")
    out += ["", f"Machine: {meta['machine']}.", ""]
    path.write_text("\n".join(out))


def plot_efficiency(path: Path, lines: list[dict[str, Any]], title: str) -> None:
    """Average dev score against pre-training FLOPs, one curve per objective, the control as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    styles = {"electra": ("ELECTRA (replaced-token detection)", "tab:blue", "o"),
              "mlm": ("masked LM (same encoder)", "tab:orange", "s")}
    for objective, (label, color, marker) in styles.items():
        points = sorted((line["pretrain_flops"], line["average"]) for line in lines
                        if line["objective"] == objective and line["average"] == line["average"])
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker=marker, color=color, label=label)
    control = [line["average"] for line in lines if line["objective"] == CONTROL and line["average"] == line["average"]]
    if control:
        ax.axhline(control[0], color="gray", linestyle="--", label="no pre-training")
    ax.set_xlabel("pre-training FLOPs")
    ax.set_ylabel("average dev score (median over seeds)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------------
# The experiment


def _machine() -> str:
    import platform

    import jax

    device = jax.devices()[0]
    return (f"{platform.machine()} {os.cpu_count()} CPUs, JAX {jax.__version__} on {device.platform} "
            f"({device.device_kind})")


def _configure_jax_cache(output_dir: Path) -> None:
    """A persistent compilation cache: the fine-tuning programs repeat for every checkpoint of one task."""
    import jax

    try:
        jax.config.update("jax_compilation_cache_dir", str(output_dir / "jax_cache"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    except Exception as e:  # an older or newer JAX without these options: correctness does not depend on it
        logging.warning("no persistent compilation cache (%s)", e)


def _start_tool(module: str, *args: str) -> subprocess.Popen:
    """Starts one of the package's command-line tools in its own process (build_vocab and build_data each define
    absl flags at import, so they run exactly as a user would run them)."""
    cmd = [sys.executable, "-m", module, *args]
    logging.info("running %s", " ".join(cmd))
    proc = subprocess.Popen(cmd, cwd=str(REPO_ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    proc.module = module  # type: ignore[attr-defined]
    return proc


def _finish_tool(proc: subprocess.Popen) -> None:
    output, _ = proc.communicate()
    module = getattr(proc, "module", proc.args)
    if proc.returncode:
        raise RuntimeError(f"{module} failed with exit code {proc.returncode}:\n{output[-4000:]}")
    logging.info("%s: %s", module, output.strip().splitlines()[-1] if output.strip() else "done")


def _run_tool(module: str, *args: str) -> None:
    _finish_tool(_start_tool(module, *args))


def run(output_dir: str, budget: Budget, *, text_dirs: Sequence[str], python_doc_dir: str, glue_dir: str,
        vocab: str = "corpus", results: str = "", command: str = "") -> list[dict[str, Any]]:
    """Runs (or resumes) every stage; returns the result rows."""
    out = Path(output_dir).expanduser().absolute()
    out.mkdir(parents=True, exist_ok=True)
    _configure_jax_cache(out)
    stages = Stages(out / "stages.json")
    started = time.time()
    budget_path = out / "budget.json"
    if budget_path.exists():  # resuming: the corpus, records and checkpoints on disk must come from the same scale
        previous = json.loads(budget_path.read_text())
        current = json.loads(json.dumps(dataclasses.asdict(budget)))
        changed = sorted(k for k in current if k not in FINETUNE_FIELDS and previous.get(k) != current[k])
        if changed:
            raise ValueError(f"{out} holds a run of another budget (fields {changed} differ: "
                             f"{ {k: previous.get(k) for k in changed} } there vs { {k: current[k] for k in changed} } "
                             "now); pass a new --output_dir or remove the old one")
    budget_path.write_text(json.dumps(dataclasses.asdict(budget), indent=2))

    # 1. corpus
    corpus_dir = out / "corpus"
    corpus_meta_path = corpus_dir / "corpus.json"
    if not corpus_meta_path.exists():
        with _Timer(stages, "corpus"):
            corpus = write_corpus(corpus_dir, text_dirs, python_doc_dir, budget.corpus_max_chars,
                                  num_train_files=8 if budget.corpus_max_chars == 0 else 2)
            corpus_meta_path.write_text(json.dumps(corpus, indent=2))
    corpus = json.loads(corpus_meta_path.read_text())

    # 2. vocabulary
    if vocab in ("", "corpus"):
        vocab_path = out / "vocab" / "vocab.txt"
        vocab_kind = "WordPiece trained on the training documents (electra_jax.build_vocab)"
        if not vocab_path.exists():
            with _Timer(stages, "vocab"):
                tmp = vocab_path.with_suffix(".tmp")
                _run_tool("electra_jax.build_vocab", f"--input={corpus_dir / 'train_*.txt'}",
                          f"--vocab_size={budget.vocab_size}", "--kind=wordpiece", f"--output={tmp}")
                tmp.replace(vocab_path)
    else:
        vocab_path = Path(SHARED_DATA / "bert_vocab" / "uncased" / "vocab.txt" if vocab == "bert" else vocab)
        vocab_kind = f"{vocab_path} (published BERT uncased)" if vocab == "bert" else str(vocab_path)
        if not vocab_path.is_file():
            raise FileNotFoundError(f"--vocab={vocab}: {vocab_path} does not exist")
    from electra_jax.data import tokenizer as make_tokenizer

    vocab_size = make_tokenizer(str(vocab_path), lower_case=True).vocab_size

    # 3. records
    records_dir = out / "records"
    record_counts = {}
    pending = {}
    for split, inputs, shards in (("train", corpus["train_files"], 8 if budget.corpus_max_chars == 0 else 2),
                                  ("eval", [corpus["eval_file"]], 1)):
        if not (records_dir / split / "metadata.json").exists():  # the two splits build side by side
            pending[split] = (time.time(), _start_tool(
                "electra_jax.build_data", f"--input={','.join(inputs)}", f"--vocab={vocab_path}",
                f"--output_dir={records_dir / split}", f"--max_seq_length={budget.seq_len}",
                f"--num_shards={shards}", f"--num_processes={min(budget.build_processes, len(inputs))}"))
    for split, (start, proc) in pending.items():
        _finish_tool(proc)
        stages.record(f"records_{split}", time.time() - start)
        logging.info("stage records_%s: done after %.1f s", split, time.time() - start)
    for split in ("train", "eval"):
        record_counts[split] = json.loads((records_dir / split / "metadata.json").read_text())["num_examples"]
    logging.info("records: %d train, %d eval examples of %d tokens", record_counts["train"], record_counts["eval"],
                 budget.seq_len)

    # 4. pre-training, equal FLOPs
    plan = plan_steps(budget, vocab_size, records_dir)
    (out / "plan.json").write_text(json.dumps(plan, indent=2))
    for objective in OBJECTIVES:
        entry = plan[objective]
        logging.info("plan: %s %d steps x %.4g FLOPs = %.4g FLOPs; checkpoints at steps %s", objective,
                     entry["steps"], entry["flops_per_step"], entry["total_flops"],
                     [p["step"] for p in entry["points"]])
    models: dict[str, dict[str, Any]] = {}
    pretrain_eval: dict[str, dict[str, Any]] = {}
    model_config = None
    learning_rate = None
    for objective in OBJECTIVES:
        entry = plan[objective]
        workdir = out / "pretrain" / objective
        config = pretrain_config(budget, vocab_size, records_dir, objective, entry["steps"])
        config.data.vocab = str(vocab_path)
        model_config = model_config or config.model
        learning_rate = config.optim.learning_rate
        stage = f"pretrain_{objective}"
        if not all(_has_checkpoint(workdir, p["step"]) for p in entry["points"]):
            from electra_jax import pretrain

            with _Timer(stages, stage, steps=entry["steps"]):
                summary = pretrain.train_and_evaluate(config, str(workdir))
            if summary.get("preempted"):
                raise SystemExit(f"pre-training {objective} stopped at step {summary.get('step')} on a signal (its "
                                 "checkpoint is saved); rerun the same command to resume")
            missing = [p["step"] for p in entry["points"] if not _has_checkpoint(workdir, p["step"])]
            if missing:
                raise RuntimeError(f"pre-training {objective} finished without the checkpoints of steps {missing} in "
                                   f"{workdir / 'checkpoints'}; rerun the command to resume")
        run_seconds = stages.seconds(stage) or None
        for point in entry["points"]:
            models[f"{objective}:{point['flops']:.6e}"] = {
                "objective": objective, "flops": point["flops"], "step": point["step"],
                "init": str(_step_dir(workdir, point["step"])), "name": f"{objective}_{point['index']}",
                "pretrain_seconds": run_seconds * point["step"] / entry["steps"] if run_seconds else None}
        pretrain_eval[objective] = {str(k): v for k, v in _eval_metrics(workdir).items()}

    # 5. fine-tuning: the control first, then every checkpoint in compute order
    glue = Path(glue_dir).expanduser()
    protocol = finetune_tag(budget)  # this run's fine-tuning folder and stage-name prefix
    ordered = [{"objective": CONTROL, "flops": 0.0, "step": 0, "init": None, "name": CONTROL}]
    ordered += sorted(models.values(), key=lambda m: (m["flops"], m["objective"]))
    models[f"{CONTROL}:{0.0:.6e}"] = ordered[0]
    rows: list[dict[str, Any]] = []
    from electra_jax import finetune

    for model in ordered:
        finetune_seconds = 0.0
        for task in budget.tasks:
            workdir = out / "finetune" / protocol / model["name"] / task
            results_path = workdir / "results.json"
            if not results_path.exists():
                config = finetune_config(budget, task, glue, vocab_path, control=model["init"] is None)
                with _Timer(stages, f"finetune_{protocol}_{model['name']}_{task}"):
                    finetune.train_and_evaluate(config, str(workdir), init=model["init"])
            found = json.loads(results_path.read_text())
            finetune_seconds += float(found.get("seconds", 0.0))
            metric = TASKS[task][1]
            for seed, score in seed_scores(found, metric, budget.seeds):
                rows.append({"objective": model["objective"], "pretrain_flops": float(model["flops"]), "task": task,
                             "seed": seed, "metric": metric, "score": round(score, 4)})
        model["finetune_seconds"] = finetune_seconds
        logging.info("fine-tuned %s (%.3g FLOPs) on %d tasks in %.1f s", model["name"], model["flops"],
                     len(budget.tasks), finetune_seconds)

    # 6. report
    lines = summarize(rows, budget.tasks)
    # Fine-tuning stages are per (model, task); show them grouped in the report.
    stage_totals: dict[str, dict[str, float]] = {}
    for name, entry in stages.data.items():
        if name.startswith("finetune_") and not name.startswith(f"finetune_{protocol}_"):
            continue  # another fine-tuning protocol run earlier in this folder
        key = "finetune (all models and tasks)" if name.startswith("finetune_") else name
        stage_totals.setdefault(key, {"seconds": 0.0})["seconds"] += float(entry.get("seconds", 0.0))
    meta = {"budget": dataclasses.asdict(budget), "plan": plan, "corpus": corpus, "records": record_counts,
            "vocab": {"kind": vocab_kind, "size": vocab_size, "path": str(vocab_path)},
            "model": {k: model_config[k] for k in model_config.keys()}, "learning_rate": learning_rate,
            "models": models, "pretrain_eval": pretrain_eval, "stages": stage_totals, "machine": _machine(),
            "command": command or f"python -m electra_jax.experiments.compute_efficiency --budget={budget.name}"}
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    summary = {"lines": lines, **{k: v for k, v in meta.items() if k != "corpus"},
               "this_invocation_seconds": round(time.time() - started, 1)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    write_markdown(out / "results.md", lines, budget.tasks, meta)
    plot_efficiency(out / "compute_efficiency.png", lines,
                    f"ELECTRA vs masked LM at equal compute ({budget.name} budget)")
    if results:
        target = Path(results)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "results.json", target)
        shutil.copyfile(out / "results.md", target.with_suffix(".md"))
        shutil.copyfile(out / "compute_efficiency.png", target.with_suffix(".png"))
        logging.info("copied the results to %s (.json, .md, .png)", target.with_suffix(""))
    for line in lines:
        logging.info("%-8s %.3g FLOPs: average %.2f  %s", line["objective"], line["pretrain_flops"], line["average"],
                     " ".join(f"{t} {v:.1f}" for t, v in line["medians"].items()))
    logging.info("all stages done; this invocation took %.1f s; results in %s", time.time() - started, out)
    return rows


# ---------------------------------------------------------------------------------------------------------
# absl main

FLAGS = flags.FLAGS


def _define_flags() -> None:
    """Flags are defined only when run as a program, so importing this module defines none."""
    flags.DEFINE_string("output_dir", None, "Folder for every stage's outputs; rerunning resumes where it stopped.")
    flags.DEFINE_enum("budget", "cpu", list(BUDGETS), "toy: every stage in seconds (tests); cpu: the real "
                      "experiment on a 2-core CPU (~60-75 min); gpu: a larger model and more steps for one GPU.")
    flags.DEFINE_string("results", "", "Also write the rows here (JSON) and the table and plot beside it (.md, .png), "
                        "e.g. benchmarks/results/compute_efficiency.json.")
    flags.DEFINE_list("text_dirs", [str(SHARED_DATA / "text")], "Folders of English text (read recursively; WikiText "
                      "*.tokens files are split into articles).")
    flags.DEFINE_string("python_doc_dir", DEFAULT_PYTHON_DOCS, "The reST sources of the Python documentation "
                        "(Debian's python3.11-doc); empty to leave them out.")
    flags.DEFINE_string("glue_dir", str(SHARED_DATA / "glue"), "Folder holding SST-2, CoLA, MRPC, STS-B and RTE.")
    flags.DEFINE_string("vocab", "corpus", "corpus: train a WordPiece vocabulary on the corpus (budget's size); bert: "
                        "the published BERT uncased vocab.txt from ../shared/data/bert_vocab; or a vocab.txt path.")
    flags.DEFINE_list("tasks", None, "Override the budget's tasks (of cola, sst2, mrpc, stsb, rte).")
    flags.DEFINE_list("seeds", None, "Override the budget's fine-tuning seeds.")
    flags.DEFINE_integer("max_train_examples", None, "Override the budget's cap on fine-tuning examples per task "
                         "(0 = all). Fine-tuning settings may change between runs in one --output_dir: the "
                         "pre-training checkpoints are reused and the new results go to their own folder.")
    flags.DEFINE_integer("epochs", None, "Override the budget's fine-tuning epochs (0 = each task's default).")


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.output_dir:
        raise app.UsageError("--output_dir is required")
    budget = BUDGETS[FLAGS.budget]
    if FLAGS.tasks:
        unknown = [t for t in FLAGS.tasks if t not in TASKS]
        if unknown:
            raise app.UsageError(f"--tasks: unknown {unknown}; choose from {list(TASKS)}")
        budget = dataclasses.replace(budget, tasks=tuple(FLAGS.tasks))
    if FLAGS.seeds:
        budget = dataclasses.replace(budget, seeds=tuple(int(s) for s in FLAGS.seeds))
    for name in ("max_train_examples", "epochs"):
        value = getattr(FLAGS, name)
        if value is not None:
            if value < 0:
                raise app.UsageError(f"--{name} must be >= 0, got {value}")
            budget = dataclasses.replace(budget, **{name: value})
    run(FLAGS.output_dir, budget, text_dirs=FLAGS.text_dirs, python_doc_dir=FLAGS.python_doc_dir,
        glue_dir=FLAGS.glue_dir, vocab=FLAGS.vocab, results=FLAGS.results,
        command="python -m electra_jax.experiments.compute_efficiency " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    from electra_jax import cli

    _define_flags()
    cli.run(main)
