"""The compute-efficiency experiment's report, a pure function of its output folder.

`write_report(out)` reads DIR/run.json (what the run is: budget, plan, models, corpus, ...), every fine-tuning
results.json of the run's protocol and DIR/stages.json, and writes DIR/results.json (rows {objective,
pretrain_flops, task, seed, metric, score}), DIR/summary.json, DIR/results.md and (with plot=True)
DIR/compute_efficiency.png, each through a temporary file; with `results=PATH.json` also PATH.json, .md and .png.
The experiment and its fine-tuning workers call it whenever a result lands, so a run cut short leaves a report of
everything it finished.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from electra_jax.experiments.budgets import CONTROL, TASKS
from electra_jax.experiments.finetuning import DIVERGED, is_headline, results_path, seed_scores
from electra_jax.experiments.stages import Stages, copy_file, write_json, write_text

STYLES = {"electra": ("ELECTRA (replaced-token detection)", "tab:blue", "o"),
          "mlm": ("masked LM (same encoder)", "tab:orange", "s"),
          "electric": ("Electric (energy-based cloze)", "tab:green", "^"),
          "electra_gdes": ("ELECTRA with GDES embedding sharing", "tab:purple", "D")}


def collect_rows(out: Path, run: dict[str, Any]) -> list[dict[str, Any]]:
    """Every finished (model, task) of the run's fine-tuning protocol, one row per seed; models in compute order."""
    rows = []
    models = sorted(run["models"], key=lambda m: (m["objective"] != CONTROL, m["flops"], m["objective"]))
    for model in models:
        for task in run["budget"]["tasks"]:
            path = results_path(out, run["protocol"], model, task)
            if not path.exists():
                continue
            metric = TASKS[task][1]
            budget = run["budget"]
            seeds = budget["seeds"] if is_headline(model) or not budget["early_seeds"] else budget["early_seeds"]
            for seed, score in seed_scores(json.loads(path.read_text()), metric, seeds):
                rows.append({"objective": model["objective"], "pretrain_flops": float(model["flops"]), "task": task,
                             "seed": seed, "metric": metric, "score": round(score, 4)})
    return rows


def diverged(out: Path, run: dict[str, Any]) -> list[dict[str, str]]:
    """The (model, task) pairs whose fine-tuning diverged, each with the reason it left (finetuning.DIVERGED)."""
    return [{"model": model["name"], "task": task, "reason": path.read_text().strip()}
            for model in run["models"] for task in run["budget"]["tasks"]
            if (path := results_path(out, run["protocol"], model, task).parent / DIVERGED).exists()]


def summarize(rows: list[dict[str, Any]], tasks: Sequence[str], objectives: Sequence[str] = ("electra", "mlm")
              ) -> list[dict[str, Any]]:
    """One line per (objective, pretrain_flops): the median over seeds per task, their average, and the spread
    (standard deviation) of the per-seed task averages where every task has that seed."""
    groups: dict[tuple[str, float], dict[str, dict[int, float]]] = {}
    for row in rows:
        groups.setdefault((row["objective"], float(row["pretrain_flops"])), {}).setdefault(
            row["task"], {})[int(row["seed"])] = float(row["score"])
    order = {name: i + 1 for i, name in enumerate(objectives)} | {CONTROL: 0}
    lines = []
    for (objective, flops), per_task in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0][1])):
        medians = {t: statistics.median(per_task[t].values()) for t in tasks if t in per_task}
        complete = len(medians) == len(tasks)
        average = statistics.fmean(medians.values()) if complete else float("nan")
        common = set.intersection(*(set(per_task[t]) for t in tasks)) if complete else set()
        seed_averages = [statistics.fmean(per_task[t][s] for t in tasks) for s in sorted(common)]
        spread = statistics.stdev(seed_averages) if len(seed_averages) > 1 else float("nan")
        lines.append({"objective": objective, "pretrain_flops": flops, "medians": medians, "average": average,
                      "seeds": max(len(v) for v in per_task.values()), "seed_sd": spread})
    return lines


def _minutes(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds / 60:.1f}"


def _number(value: float, digits: int = 1) -> str:
    return "–" if value != value else f"{value:.{digits}f}"


def _corpus_line(corpus: dict[str, Any], records: dict[str, Any], seq_len: int) -> str:
    if "sources" in corpus:  # built by the experiment's corpus stage
        sources = "; ".join(f"{k}: {v['documents']} docs, {v['chars'] / 1e6:.2f} M chars"
                            for k, v in corpus["sources"].items())
        text = (f"{corpus['train_documents']} training documents ({corpus['train_chars'] / 1e6:.1f} M characters), "
                f"{corpus['eval_documents']} held out; {sources}")
    else:
        text = (f"{corpus.get('kind', 'given')} corpus {corpus.get('dir', '')}: {len(corpus.get('train_files', []))} "
                f"training file(s), {len(corpus.get('eval_files', []))} held-out")
    return (f"- Corpus: {text}. Records: {records.get('train')} train / {records.get('eval')} eval examples of "
            f"{seq_len} tokens ({records.get('format', 'tfrecord')}; {records.get('train_tokens', '?')} training "
            "tokens).")


def write_markdown(path: Path, lines: list[dict[str, Any]], tasks: Sequence[str], meta: dict[str, Any]) -> None:
    budget, plan = meta["budget"], meta["plan"]
    names = [TASKS[t][2] for t in tasks]
    metrics = ", ".join(f"{TASKS[t][2]} {TASKS[t][1]}" for t in tasks)
    seeds = ", ".join(map(str, budget["seeds"]))
    early = f" (earlier compute points: {', '.join(map(str, budget['early_seeds']))})" if budget["early_seeds"] else ""
    out = [f"# ELECTRA vs masked-LM pre-training at equal compute (budget `{budget['name']}`)", "",
           f"Command: `{meta['command']}`", "",
           f"Dev-set scores x100, median over the fine-tuning seeds ({metrics}); `avg` is the unweighted mean of the "
           "task medians and `seed sd` the standard deviation of the per-seed task averages. Pre-training FLOPs are "
           "model FLOPs (`electra_jax.flops.model_flops_per_step`, forward + backward matmuls). `pre-train min` is "
           "the wall time of that run up to the checkpoint (linear in steps within one run); `fine-tune min` is the "
           "wall time of fine-tuning that checkpoint on every task and seed.", "",
           "| objective | pre-train FLOPs | steps | pre-train min | " + " | ".join(names)
           + " | avg | seeds | seed sd | fine-tune min |",
           "|---|---:|---:|---:|" + "---:|" * len(names) + "---:|---:|---:|---:|"]
    for line in lines:
        objective, flops = line["objective"], line["pretrain_flops"]
        info = meta["models"].get(f"{objective}:{flops:.6e}", {})
        cells = [f"{line['medians'][t]:.1f}" if t in line["medians"] else "–" for t in tasks]
        out.append(f"| {objective} | {flops:.3g} | {info.get('step', 0)} | {_minutes(info.get('pretrain_seconds'))} | "
                   + " | ".join(cells) + f" | **{_number(line['average'])}** | {line['seeds']} | "
                   f"{_number(line['seed_sd'])} | {_minutes(info.get('finetune_seconds'))} |")
    out += ["", "## Setup", ""]
    model = meta["model"]
    out.append(f"- Model: discriminator {model['num_layers']} layers, hidden {model['hidden_size']}, embedding "
               f"{model['embedding_size']}, FFN {model['intermediate_size']}, {model['num_heads']} heads; ELECTRA's "
               f"generator hidden {model['generator_hidden_size']} (FFN {model['generator_intermediate_size']}, "
               f"{model['generator_num_layers']} layers). The MLM baseline is the discriminator-sized encoder with "
               f"the generator's MLM head (BERT 80/10/10 masking, mask_prob 0.15). Compute dtype {model['dtype']}, "
               f"attention {model['attention']}" + (" (cuDNN: no attention-probability dropout)"
                                                    if model["attention"] == "cudnn" else "") + ".")
    steps = "; ".join(f"{name} {entry['steps']} steps x {entry['flops_per_step']:.3g} FLOPs = "
                      f"{entry['total_flops']:.3g}" for name, entry in plan.items())
    out.append(f"- Pre-training: seq {budget['seq_len']}, batch {budget['batch_size']}, warmup "
               f"{budget['warmup_steps']} steps, linear decay over each run's full length, peak LR "
               f"{meta['learning_rate']}; {steps}.")
    out.append(_corpus_line(meta["corpus"], meta["records"], budget["seq_len"]))
    out.append(f"- Vocabulary: {meta['vocab']['kind']} ({meta['vocab']['size']} WordPieces).")
    epochs = budget["epochs"] or "task default (3; RTE, STS-B 10)"
    out.append(f"- Fine-tuning: configs/finetune.py:TASK,{budget['finetune_size']} recipe, seq "
               f"{budget['finetune_seq_len']}, batch {budget['finetune_batch_size']}, epochs {epochs}, at most "
               f"{budget['max_train_examples'] or 'all'} training and {budget['max_eval_examples'] or 'all'} dev "
               f"examples per task, seeds {seeds}{early}.")
    evals = meta.get("pretrain_eval") or {}
    if any(evals.values()):
        out += ["", "## Pre-training eval (held-out records)", "",
                "| objective | step | MLM loss | MLM accuracy | disc AUC |", "|---|---:|---:|---:|---:|"]
        for objective, by_step in evals.items():
            for step, m in sorted(by_step.items(), key=lambda kv: int(kv[0])):
                cells = [m.get(k) for k in ("eval_mlm_loss", "eval_mlm_accuracy", "eval_disc_auc")]
                out.append(f"| {objective} | {step} | " + " | ".join(
                    "–" if v is None else f"{float(v):.3f}" for v in cells) + " |")
    trained = meta.get("pretrain_train") or {}
    if any(trained.values()):
        out += ["", "## Pre-training at each compute point (the last training batch logged)", "",
                "| objective | step | loss | MLM loss | MLM accuracy | disc loss | disc AUC | tokens/s |",
                "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for objective, by_step in trained.items():
            for step, m in sorted(by_step.items(), key=lambda kv: int(kv[0])):
                cells = [m.get(k) for k in ("loss", "mlm_loss", "mlm_accuracy", "disc_loss", "disc_auc")]
                speed = m.get("tokens_per_sec")
                out.append(f"| {objective} | {m.get('logged_step', step)} | " + " | ".join(
                    "–" if v is None else f"{float(v):.3f}" for v in cells) + " | "
                    + ("–" if speed is None else f"{float(speed):,.0f}") + " |")
    out += ["", "## Wall time per stage", "", "| stage | minutes |", "|---|---:|"]
    for name, entry in meta["stages"].items():
        out.append(f"| {name} | {_minutes(entry.get('seconds'))} |")
    out.append(f"| **total** | {_minutes(sum(e.get('seconds', 0.0) for e in meta['stages'].values()))} |")
    out += ["", f"Machine: {meta['machine']}.", ""]
    write_text(path, "\n".join(out))


def plot_efficiency(path: Path, lines: list[dict[str, Any]], title: str) -> None:
    """Average dev score against pre-training FLOPs, one curve per objective, the control as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for objective in dict.fromkeys(line["objective"] for line in lines if line["objective"] != CONTROL):
        label, color, marker = STYLES.get(objective, (objective, None, "x"))
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
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def _stage_totals(stages: dict[str, dict[str, Any]], protocol: str) -> dict[str, dict[str, float]]:
    """Fine-tuning stages are per (model, task); the report shows them as one line (this protocol's only)."""
    totals: dict[str, dict[str, float]] = {}
    for name, entry in stages.items():
        if name.startswith("finetune_") and not name.startswith(f"finetune_{protocol}_"):
            continue  # another fine-tuning protocol run earlier in this folder
        key = "finetune (all models and tasks)" if name.startswith("finetune_") else name
        totals.setdefault(key, {"seconds": 0.0})["seconds"] += float(entry.get("seconds", 0.0))
    return totals


def write_report(out: Path, results: str = "", plot: bool = True) -> list[dict[str, Any]]:
    """Writes the report of everything finished so far (see the module docstring); returns the summary lines."""
    run = json.loads((out / "run.json").read_text())
    budget, protocol = run["budget"], run["protocol"]
    rows = collect_rows(out, run)
    lines = summarize(rows, budget["tasks"], run["objectives"])
    stages = Stages(out / "stages.json").data
    models: dict[str, dict[str, Any]] = {}
    for model in run["models"]:
        info = dict(model)
        total = stages.get(f"pretrain_{model['objective']}", {})
        steps = run["plan"].get(model["objective"], {}).get("steps")
        if total.get("seconds") and steps:
            info["pretrain_seconds"] = float(total["seconds"]) * model["step"] / steps
        seconds = [json.loads(p.read_text()).get("seconds", 0.0) for task in budget["tasks"]
                   if (p := results_path(out, protocol, model, task)).exists()]
        info["finetune_seconds"] = float(sum(seconds)) if seconds else None
        models[f"{model['objective']}:{model['flops']:.6e}"] = info
    meta = {k: v for k, v in run.items() if k not in ("models", "glue_dir")}
    meta.update(models=models, stages=_stage_totals(stages, protocol), diverged=diverged(out, run))
    write_json(out / "results.json", rows)
    write_json(out / "summary.json", {"lines": lines, **{k: v for k, v in meta.items() if k != "corpus"}})
    write_markdown(out / "results.md", lines, budget["tasks"], meta)
    if plot:
        plot_efficiency(out / "compute_efficiency.png", lines,
                        f"ELECTRA vs masked LM at equal compute ({budget['name']} budget)")
    if results:
        target = Path(results)
        target.parent.mkdir(parents=True, exist_ok=True)
        for source, suffix in (("results.json", ".json"), ("results.md", ".md"), ("compute_efficiency.png", ".png"),
                               ("summary.json", ".summary.json")):
            if (out / source).exists():
                # Through a temporary file: several processes write these, and a kill may come mid-copy.
                copy_file(out / source, target.with_suffix(suffix) if suffix != ".summary.json"
                          else target.with_name(target.stem + ".summary.json"))
    return lines
