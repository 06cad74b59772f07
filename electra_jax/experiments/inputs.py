"""The compute-efficiency experiment's inputs besides the corpus: the vocabulary, the pre-training records (built
with build_data in the budget's format), the GLUE folders, and the check that a resumed output folder holds a run
of the same budget."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from absl import logging

from electra_jax.experiments.budgets import FINETUNE_FIELDS, SHARED_DATA, TASKS, Budget


def resolve_vocab(vocab: str, corpus: dict[str, Any], out: Path) -> tuple[Path, str, bool]:
    """(path, description, whether the experiment trains it) for --vocab=corpus|bert|PATH."""
    if vocab == "corpus":
        if corpus.get("kind") in ("tokenized", "tfds"):
            raise ValueError(f"--vocab=corpus trains a vocabulary on text files, but the corpus is {corpus['kind']}; "
                             "pass --vocab=bert or --vocab=PATH (for a tokenized corpus: the vocab it was built with)")
        return out / "vocab" / "vocab.txt", "WordPiece trained on the training documents (build_vocab)", True
    path = SHARED_DATA / "bert_vocab" / "uncased" / "vocab.txt" if vocab == "bert" else Path(vocab).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"--vocab={vocab}: {path} does not exist")
    return path, f"{path} (published BERT uncased)" if vocab == "bert" else str(path), False


def build_records(out: Path, budget: Budget, corpus: dict[str, Any], vocab_path: Path, stages,
                  tfds_data_dir: str = "") -> dict[str, Any]:
    """DIR/records/{train,eval} with build_data (both splits side by side); returns their counts."""
    from electra_jax.experiments.stages import finish_tool, start_tool

    records_dir = out / "records"
    shards = 8 if budget.corpus_max_chars == 0 else 2
    jobs = {}
    if corpus["kind"] == "tfds":
        jobs["train"] = ([f"--tfds={corpus['train']}", f"--tfds_data_dir={tfds_data_dir}"], shards)
        if corpus.get("eval"):  # a held-out split is small: one slice (an empty TFDS slice is an error)
            jobs["eval"] = ([f"--tfds={corpus['eval']}", f"--tfds_data_dir={tfds_data_dir}", "--tfds_num_splits=1"], 1)
        processes = budget.build_processes
    else:
        jobs["train"] = ([f"--input={','.join(corpus['train_files'])}"], shards)
        if corpus["eval_files"]:
            jobs["eval"] = ([f"--input={','.join(corpus['eval_files'])}"], 1)
        processes = min(budget.build_processes, len(corpus["train_files"]))
    pending = {}
    for split, (source, num_shards) in jobs.items():
        if not (records_dir / split / "metadata.json").exists():
            pending[split] = (time.time(), start_tool(
                "electra_jax.build_data", *source, f"--vocab={vocab_path}", f"--output_dir={records_dir / split}",
                f"--max_seq_length={budget.seq_len}", f"--num_shards={num_shards}", f"--format={budget.records_format}",
                f"--num_processes={processes if split == 'train' else 1}",
                *(["--allow_empty"] if split == "eval" else [])))  # an empty held-out split: no eval pass
    for split, (start, proc) in pending.items():
        finish_tool(proc)
        stages.record(f"records_{split}", time.time() - start)
        logging.info("stage records_%s: done after %.1f s", split, time.time() - start)
    counts: dict[str, Any] = {"format": budget.records_format}
    for split in ("train", "eval"):
        path = records_dir / split / "metadata.json"
        meta = json.loads(path.read_text()) if path.exists() else {}
        counts[split] = meta.get("num_examples", 0)
        counts[f"{split}_tokens"] = meta.get("num_tokens", 0)
        if meta.get("warnings"):
            counts[f"{split}_warnings"] = meta["warnings"]
    logging.info("records: %d train, %d eval examples of %d tokens", counts["train"], counts["eval"], budget.seq_len)
    return counts


def check_budget_on_disk(out: Path, budget: Budget) -> None:
    """Resuming: the corpus, records and checkpoints in `out` must come from the same scale (fine-tuning may differ)."""
    path = out / "budget.json"
    if path.exists():
        previous = json.loads(path.read_text())
        defaults = {f.name: f.default for f in dataclasses.fields(Budget) if f.default is not dataclasses.MISSING}
        current = json.loads(json.dumps(dataclasses.asdict(budget)))
        old = {k: previous.get(k, defaults.get(k)) for k in current}
        old = {k: list(v) if isinstance(v, tuple) else v for k, v in old.items()}
        changed = sorted(k for k in current if k not in FINETUNE_FIELDS and old[k] != current[k])
        if changed:
            raise ValueError(f"{out} holds a run of another budget (fields {changed} differ: "
                             f"{ {k: old[k] for k in changed} } there vs { {k: current[k] for k in changed} } now); "
                             "pass a new --output_dir or remove the old one")


def check_glue(glue_dir: str, tasks: Sequence[str]) -> Path:
    glue = Path(glue_dir).expanduser()
    missing = [str(glue / TASKS[t][0] / f"{split}.tsv") for t in tasks for split in ("train", "dev")
               if not (glue / TASKS[t][0] / f"{split}.tsv").is_file()]
    if missing:
        raise FileNotFoundError(f"--glue_dir={glue_dir}: missing {missing[:3]}{' ...' if len(missing) > 3 else ''}; "
                                "pass the folder holding SST-2, CoLA, MRPC, STS-B and RTE")
    return glue
