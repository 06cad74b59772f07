r"""Does ELECTRA beat masked-LM pre-training at equal compute?  (Clark et al. 2020, Figure 4 / Table 1.)

    python -m electra_jax.experiments.compute_efficiency --output_dir=workdirs/compute_efficiency --budget=cpu \
        --results=benchmarks/results/compute_efficiency.json

One command runs the whole comparison and can be killed and rerun at any point (finished work is skipped):

  1. corpus    real English text: by default ../shared/data/text (WikiText-2 valid/test articles, State of the Union
               addresses, Tiny Shakespeare) plus the Python 3.11 documentation sources of Debian's python3.11-doc
               package (reST stripped to prose), written one sentence per line with a blank line between
               documents; every 20th document is held out for the pre-training eval set. --corpus_dir=DIR takes a
               corpus already in that form instead (train*.txt and heldout*.txt, or their tokenized
               *.tokens.xz, electra_jax.data.token_corpus); --tfds=NAME:SPLIT a prepared TFDS dataset.
  2. vocab     one WordPiece vocabulary trained on the training documents (build_vocab), or --vocab=bert (the
               published BERT uncased vocabulary) or --vocab=PATH.
  3. records   one set of pre-training records (build_data, the budget's format: TFRecords, or numpy shards that
               need no TensorFlow) for every objective, plus held-out eval records.
  4. pretrain  every objective of --objectives (electra,mlm by default; budgets.OBJECTIVES maps each name to its
               config overrides: mlm is BERT's 80/10/10 masked LM on the discriminator-sized encoder) for the SAME
               pre-training FLOPs (electra_jax.experiments.pretraining), with checkpoints at `num_points` compute
               points.
  5. finetune  every checkpoint, and a no-pre-training control, on SST-2, CoLA, MRPC, RTE and STS-B with several
               seeds (electra_jax.experiments.finetuning: compiled once per task), after pre-training or, with
               the budget's finetune_workers, in one process per task during it.
  6. report    DIR/results.json (rows {objective, pretrain_flops, task, seed, metric, score}), DIR/results.md
               (median per task, the average, the seed spread, FLOPs and wall times) and DIR/compute_efficiency.png
               (average dev score against pre-training FLOPs per objective, the control as a horizontal line),
               rewritten whenever a fine-tuning result lands; with --results=PATH.json also beside PATH.

--budget=toy runs every stage in well under a minute of compute (a sliver of the corpus, a few steps, one task, two
seeds vmapped, no TensorFlow needed) and is what the test runs; --budget=cpu is the experiment sized for a 2-core CPU
(about 90-130 minutes; the measured run took 110, docs/EVIDENCE.md); --budget=gpu is ELECTRA-Small against BERT-Small
at 1e16 FLOPs each, sized for ten minutes on one H200 (docs/EVIDENCE.md). Fine-tuning settings (--epochs,
--max_train_examples, --seeds, --tasks, --vmap_seeds) may change between runs in one --output_dir: the pre-training
checkpoints are reused and each protocol's results go to DIR/finetune/<protocol>/.

Scores are reported as the paper does: dev-set medians over seeds, x100; CoLA is Matthews correlation, STS-B
Spearman correlation, the others accuracy; the average is the unweighted mean over the tasks.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from absl import app, flags, logging

from electra_jax.corpus.local import write_corpus
from electra_jax.experiments import budgets as budgets_lib
from electra_jax.experiments.budgets import BUDGETS, CONTROL, SHARED_DATA, TASKS, Budget

DEFAULT_PYTHON_DOCS = "/usr/share/doc/python3.11/html/_sources"
TRAIN_PREFIXES = ("train",)  # --corpus_dir: training files; held-out files start with one of HELD_OUT_PREFIXES
HELD_OUT_PREFIXES = ("heldout", "held_out", "eval", "valid")
CORPUS_SUFFIXES = (".txt", ".tokens.xz")


# ---------------------------------------------------------------------------------------------------------
# A corpus given as a folder


def given_corpus(corpus_dir: str) -> dict[str, Any]:
    """The training and held-out files of a corpus folder in build_data's form (text or tokenized)."""
    from electra_jax.data.token_corpus import is_token_file, read_header

    root = Path(corpus_dir).expanduser()  # files in it or in its subfolders (electra_jax.corpus: train/, heldout/)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith(CORPUS_SUFFIXES)) if (
        root.is_dir()) else []
    train = [str(p) for p in files if p.name.lower().startswith(TRAIN_PREFIXES)]
    held_out = [str(p) for p in files if p.name.lower().startswith(HELD_OUT_PREFIXES)]
    if not train:
        raise ValueError(f"--corpus_dir={corpus_dir} holds no training files (train*.txt or train*.tokens.xz: one "
                         "sentence per line, a blank line between documents)")
    tokenized = [is_token_file(p) for p in train + held_out]
    if any(tokenized) and not all(tokenized):
        raise ValueError(f"--corpus_dir={corpus_dir} mixes text and tokenized (.tokens.xz) files; keep one kind")
    corpus: dict[str, Any] = {"kind": "tokenized" if all(tokenized) else "text", "dir": str(root),
                              "train_files": train, "eval_files": held_out}
    if all(tokenized):
        headers = [read_header(p) for p in train]
        corpus["vocab_sha256"] = headers[0]["vocab_sha256"]
        corpus["train_tokens"] = sum(h["num_tokens"] for h in headers)
    else:
        corpus["train_chars"] = sum(Path(p).stat().st_size for p in train)
    return corpus


# ---------------------------------------------------------------------------------------------------------
# The experiment


def _corpus_source(budget: Budget, corpus_dir: str, tfds: str, tfds_eval_split: str, vocab: str, out: Path
                   ) -> tuple[dict[str, Any], Path, str, bool]:
    """Where the corpus comes from (built, a folder, or TFDS) and the vocabulary: (corpus, vocab path, vocab kind,
    whether the vocab stage trains it). A tokenized corpus must name the vocabulary it was built with."""
    from electra_jax.experiments import inputs

    if tfds:
        corpus = {"kind": "tfds", "train": tfds, "eval": f"{tfds.partition(':')[0]}:{tfds_eval_split}"
                  if tfds_eval_split else "", "train_files": [], "eval_files": []}
    elif corpus_dir:
        corpus = given_corpus(corpus_dir)
    else:
        corpus = {"kind": "built"}
    vocab_path, vocab_kind, train_vocab = inputs.resolve_vocab(vocab or budget.vocab, corpus, out)
    if corpus["kind"] == "tokenized":
        from electra_jax.data.tokenization import vocab_digests

        if corpus["vocab_sha256"] not in vocab_digests(vocab_path):
            raise ValueError(f"--corpus_dir={corpus_dir} was tokenized with another vocabulary than {vocab_path}; "
                             "pass --vocab=PATH of the vocabulary it was built with")
    return corpus, vocab_path, vocab_kind, train_vocab


def _corpus_and_vocab(out: Path, budget: Budget, corpus: dict[str, Any], vocab_path: Path, train_vocab: bool,
                      stages: Any, text_dirs: Sequence[str], python_doc_dir: str) -> tuple[dict[str, Any], int]:
    """Stages 1 and 2: the corpus (when built here) and the vocabulary (when trained here); returns the corpus
    description and the vocabulary's size. Each is skipped when its output is already on disk."""
    from electra_jax.data import tokenizer as make_tokenizer
    from electra_jax.experiments.stages import Timer, run_tool

    if corpus["kind"] == "built":
        corpus_meta_path = out / "corpus" / "corpus.json"
        if not corpus_meta_path.exists():
            with Timer(stages, "corpus"):
                built = write_corpus(out / "corpus", text_dirs, python_doc_dir, budget.corpus_max_chars,
                                     num_train_files=8 if budget.corpus_max_chars == 0 else 2)
                corpus_meta_path.write_text(json.dumps(built, indent=2))
        corpus = {**json.loads(corpus_meta_path.read_text()), "kind": "built"}
        corpus["eval_files"] = [corpus["eval_file"]]
    if train_vocab and not vocab_path.exists():
        with Timer(stages, "vocab"):
            tmp = vocab_path.with_suffix(".tmp")
            run_tool("electra_jax.build_vocab", f"--input={','.join(corpus['train_files'])}",
                     f"--vocab_size={budget.vocab_size}", "--kind=wordpiece", f"--output={tmp}")
            tmp.replace(vocab_path)
    return corpus, make_tokenizer(str(vocab_path), lower_case=True).vocab_size


def _finetune_here(out: Path, budget: Budget, models: list[dict[str, Any]], *, protocol: str, glue: Path,
                   vocab_path: Path, stages: Any, results: str, deadline: float | None) -> None:
    """Stage 5 in this process, after pre-training: with a deadline, every task's control and top points first,
    then the earlier points that fit."""
    from electra_jax.experiments import finetuning, report

    update_report = partial(report.write_report, out, results)
    for headline_only in (True, False) if deadline else (False,):
        for task in budget.tasks:
            finetuning.finetune_task(task, models, budget=budget, out=out, protocol=protocol, glue_dir=glue,
                                     vocab=vocab_path, stages=stages, on_result=update_report, deadline=deadline,
                                     headline_only=headline_only)


def run(output_dir: str, budget: Budget, *, text_dirs: Sequence[str], python_doc_dir: str, glue_dir: str,
        vocab: str = "", results: str = "", command: str = "",
        objectives: Sequence[str] = budgets_lib.DEFAULT_OBJECTIVES, corpus_dir: str = "", tfds: str = "",
        tfds_data_dir: str = "", tfds_eval_split: str = "", overrides: dict[str, Any] | None = None,
        deadline_s: float = 0.0) -> list[dict[str, Any]]:
    """Runs (or resumes) every stage; returns the result rows. With deadline_s, fine-tuning puts the control and
    the top compute points first and leaves out the earlier points that would end more than deadline_s seconds
    after this call started."""
    from electra_jax.experiments import finetuning, inputs, pretraining, report
    from electra_jax.experiments.stages import Stages, configure_jax_cache, machine, write_json

    # Every check before any stage: objectives and their config fields, the budget on disk, GLUE, the vocabulary.
    objectives = budgets_lib.check_objectives(objectives)
    pretraining.check_configs(budget, objectives, overrides)
    out = Path(output_dir).expanduser().absolute()
    inputs.check_budget_on_disk(out, budget)
    glue = inputs.check_glue(glue_dir, budget.tasks)
    corpus, vocab_path, vocab_kind, train_vocab = _corpus_source(budget, corpus_dir, tfds, tfds_eval_split, vocab,
                                                                 out)
    out.mkdir(parents=True, exist_ok=True)
    if budget.finetune_workers:  # leave accelerator memory for the fine-tuning processes
        os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.5")
    configure_jax_cache(out)
    stages = Stages(out / "stages.json")
    started = time.time()
    deadline = started + deadline_s if deadline_s else None
    write_json(out / "budget.json", dataclasses.asdict(budget))

    # 1-3. corpus, vocabulary, records
    corpus, vocab_size = _corpus_and_vocab(out, budget, corpus, vocab_path, train_vocab, stages, text_dirs,
                                           python_doc_dir)
    records = inputs.build_records(out, budget, corpus, vocab_path, stages, tfds_data_dir)
    extra = dict(overrides or {})
    if not records["eval"]:
        extra["data.eval_files"] = ""

    # 4. pre-training, equal FLOPs; 5. fine-tuning (during it with workers, else after it)
    plan = pretraining.plan_steps(budget, vocab_size, out / "records", objectives, extra)
    write_json(out / "plan.json", plan)
    for objective, entry in plan.items():
        logging.info("plan: %s %d steps x %.4g FLOPs = %.4g FLOPs; checkpoints at steps %s", objective,
                     entry["steps"], entry["flops_per_step"], entry["total_flops"],
                     [p["step"] for p in entry["points"]])
    control = {"objective": CONTROL, "flops": 0.0, "step": 0, "init": None, "name": CONTROL, "top": True}
    models = [control] + pretraining.models_of(out, plan)
    reference = pretraining.pretrain_config(budget, vocab_size, out / "records", objectives[0], budget.num_points,
                                            extra)
    protocol = finetuning.finetune_tag(budget)
    run_info = {"budget": dataclasses.asdict(budget), "objectives": list(objectives), "plan": plan, "corpus": corpus,
                "records": records, "vocab": {"kind": vocab_kind, "size": vocab_size, "path": str(vocab_path)},
                "model": reference.model.to_dict(), "learning_rate": reference.optim.learning_rate, "models": models,
                "protocol": protocol, "glue_dir": str(glue), "results": results, "overrides": extra,
                "machine": machine(), "pretrain_eval": {}, "pretrain_train": {}, "deadline": deadline,
                "command": command or f"python -m electra_jax.experiments.compute_efficiency --budget={budget.name}"}
    write_json(out / "run.json", run_info)
    (out / finetuning.PRETRAIN_DONE).unlink(missing_ok=True)
    workers = finetuning.start_workers(out, budget.tasks) if budget.finetune_workers else {}
    try:
        info = pretraining.run_pretraining(out, budget, plan, vocab_size=vocab_size, vocab_path=vocab_path,
                                           records_dir=out / "records", stages=stages, extra=extra)
    except BaseException:
        for proc in workers.values():
            proc.terminate()
        raise
    write_json(out / finetuning.PRETRAIN_DONE, {"seconds": round(time.time() - started, 1)})
    run_info["pretrain_eval"], run_info["pretrain_train"] = info["eval"], info["train"]
    write_json(out / "run.json", run_info)
    report.write_report(out, results)
    if workers:
        finetuning.wait_for_workers(out, workers, results)
    else:
        _finetune_here(out, budget, models, protocol=protocol, glue=glue, vocab_path=vocab_path, stages=stages,
                       results=results, deadline=deadline)

    # 6. report
    for line in report.write_report(out, results):
        logging.info("%-8s %.3g FLOPs: average %.2f  %s", line["objective"], line["pretrain_flops"], line["average"],
                     " ".join(f"{t} {v:.1f}" for t, v in line["medians"].items()))
    logging.info("all stages done; this invocation took %.1f s; results in %s", time.time() - started, out)
    return json.loads((out / "results.json").read_text())


# ---------------------------------------------------------------------------------------------------------
# absl main

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Flags are defined only when run as a program, so importing this module defines none."""
    flags.DEFINE_string("output_dir", None, "Folder for every stage's outputs; rerunning resumes where it stopped.")
    flags.DEFINE_enum("budget", "cpu", list(BUDGETS), "toy: every stage in seconds (tests); cpu: the experiment on a "
                      "2-core CPU (~90-130 min; 110 measured); gpu: ELECTRA-Small vs BERT-Small at 1e16 FLOPs, ~10 min "
                      "on an H200.")
    flags.DEFINE_list("objectives", list(budgets_lib.DEFAULT_OBJECTIVES), "Pre-training objectives to compare at "
                      f"equal FLOPs, of {list(budgets_lib.OBJECTIVES)}.")
    flags.DEFINE_string("results", "", "Also write the rows here (JSON) and the table, plot and summary beside it "
                        "(.md, .png, .summary.json), e.g. benchmarks/results/compute_efficiency.json.")
    flags.DEFINE_list("text_dirs", [str(SHARED_DATA / "text")], "Folders of English text for the corpus stage (read "
                      "recursively; WikiText *.tokens files are split into articles).")
    flags.DEFINE_string("python_doc_dir", DEFAULT_PYTHON_DOCS, "The reST sources of the Python documentation "
                        "(Debian's python3.11-doc); empty to leave them out.")
    flags.DEFINE_string("corpus_dir", "", "A corpus in build_data's form instead of the corpus stage: train*.txt and "
                        "heldout*.txt (one sentence per line, blank lines between documents), or their .tokens.xz.")
    flags.DEFINE_string("tfds", "", "A TFDS dataset NAME:SPLIT prepared under --tfds_data_dir as the training corpus "
                        "(never downloaded); needs --vocab=bert or a vocab path.")
    flags.DEFINE_string("tfds_data_dir", "", "The TFDS data_dir for --tfds.")
    flags.DEFINE_string("tfds_eval_split", "", "A split of the --tfds dataset for the held-out records, e.g. "
                        "validation or 'train[99%:]' (empty: no pre-training eval).")
    flags.DEFINE_string("glue_dir", str(SHARED_DATA / "glue"), "Folder holding SST-2, CoLA, MRPC, STS-B and RTE.")
    flags.DEFINE_string("vocab", "", "corpus: train a WordPiece vocabulary on the corpus (budget's size); bert: the "
                        "published BERT uncased vocab.txt from ../shared/data/bert_vocab; or a vocab.txt path. "
                        "Default: the budget's (gpu: bert, others: corpus).")
    flags.DEFINE_list("overrides", [], "Pre-training config overrides for every objective, field=value (e.g. "
                      "model.attention=splash on TPUs); they change the run, so use a new --output_dir.")
    flags.DEFINE_integer("electra_steps", None, "Override the budget's ELECTRA steps (a larger budget; the other "
                         "objectives get the steps of the same FLOPs).")
    flags.DEFINE_bool("fast", None, "Override the budget's GPU speed settings (bf16, cuDNN attention).")
    flags.DEFINE_bool("vmap_seeds", None, "Override whether a model's fine-tuning seeds train together in one vmapped "
                      "step (on for the gpu budget: a small model's step on a GPU is launch-bound).")
    flags.DEFINE_float("deadline_s", 0.0, "Seconds this command may take (0: no limit): fine-tuning then runs the "
                       "control and top compute points first and leaves out earlier points that would end later.")
    flags.DEFINE_integer("finetune_workers", None, "Override the budget's fine-tuning processes (0: after "
                         "pre-training in this process; N > 0: one per task during pre-training).")
    flags.DEFINE_list("tasks", None, "Override the budget's tasks (of cola, sst2, mrpc, stsb, rte).")
    flags.DEFINE_list("seeds", None, "Override the budget's fine-tuning seeds.")
    flags.DEFINE_integer("max_train_examples", None, "Override the budget's cap on fine-tuning examples per task "
                         "(0 = all). Fine-tuning settings may change between runs in one --output_dir: the "
                         "pre-training checkpoints are reused and the new results go to their own folder.")
    flags.DEFINE_integer("epochs", None, "Override the budget's fine-tuning epochs (0 = each task's default).")


def budget_from_flags() -> Budget:
    """The budget with the command line's overrides; app.UsageError naming a bad one."""
    budget = BUDGETS[FLAGS.budget]
    if FLAGS.tasks:
        unknown = [t for t in FLAGS.tasks if t not in TASKS]
        if unknown:
            raise app.UsageError(f"--tasks: unknown {unknown}; choose from {list(TASKS)}")
        budget = dataclasses.replace(budget, tasks=tuple(FLAGS.tasks))
    if FLAGS.seeds:
        budget = dataclasses.replace(budget, seeds=tuple(int(s) for s in FLAGS.seeds))
    for name, minimum in (("max_train_examples", 0), ("epochs", 0), ("electra_steps", 1), ("finetune_workers", 0)):
        value = getattr(FLAGS, name)
        if value is not None:
            if value < minimum:
                raise app.UsageError(f"--{name} must be >= {minimum}, got {value}")
            budget = dataclasses.replace(budget, **{name: value})
    if FLAGS.fast is not None:
        budget = dataclasses.replace(budget, fast=FLAGS.fast)
    if FLAGS.vmap_seeds is not None:
        budget = dataclasses.replace(budget, vmap_seeds=FLAGS.vmap_seeds)
    return budget


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.output_dir:
        raise app.UsageError("--output_dir is required")
    budget = budget_from_flags()
    try:
        objectives = budgets_lib.check_objectives(FLAGS.objectives)
        overrides = budgets_lib.parse_overrides(FLAGS.overrides)
        from electra_jax.experiments.pretraining import check_configs

        check_configs(budget, objectives, overrides)
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    run(FLAGS.output_dir, budget, text_dirs=FLAGS.text_dirs, python_doc_dir=FLAGS.python_doc_dir,
        glue_dir=FLAGS.glue_dir, vocab=FLAGS.vocab, results=FLAGS.results, objectives=objectives,
        corpus_dir=FLAGS.corpus_dir, tfds=FLAGS.tfds, tfds_data_dir=FLAGS.tfds_data_dir,
        tfds_eval_split=FLAGS.tfds_eval_split, overrides=overrides, deadline_s=FLAGS.deadline_s,
        command="python -m electra_jax.experiments.compute_efficiency " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    from electra_jax import cli

    define_flags()
    cli.run(main)
