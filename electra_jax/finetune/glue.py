"""GLUE: sentence(-pair) classification and regression (CoLA, SST-2, MRPC, STS-B, QQP, MNLI, QNLI, RTE).

Reads the standard glue_data TSVs (`config.data.dir`: the task's folder or the glue_data root) or a TFDS
dataset prepared locally. Featurization follows the original `finetune/classification/classification_tasks.py`
(ELECTRA_REFERENCE.md section 6): `[CLS] A [SEP] (B [SEP])`, pairs truncated one token at a time from the
longer side; MRPC and STS-B training pairs doubled with A and B swapped (`config.data.double_unordered`);
STS-B trained on the score divided by 5. The head is dropout(0.1) on the final [CLS] state and ONE dense layer
(no pooler, unlike HF's ElectraForSequenceClassification).
"""

from __future__ import annotations

import csv
import dataclasses
import os
import sys
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from electra_jax.finetune import scoring
from electra_jax.finetune.task import (
    DataFormatError,
    Task,
    TaskData,
    as_text,
    glorot_dense,
    require_data_source,
    tfds_load,
)

REGRESSION_SCALE = 5.0  # STS-B scores are 0-5; the original trains on score / 5


@dataclasses.dataclass
class Example:
    guid: str
    text_a: str
    text_b: str | None
    label: Any  # label index (classification) or float (regression)


class ClassificationHead(nn.Module):
    """Dropout on the final [CLS] state, then one dense layer; regression squeezes its single output."""

    num_outputs: int
    dropout: float = 0.1
    regression: bool = False

    @nn.compact
    def __call__(self, hidden, batch, deterministic: bool, training: bool = False):
        cls = hidden[:, 0].astype(jnp.float32)
        cls = nn.Dropout(self.dropout)(cls, deterministic=deterministic)
        logits = glorot_dense(self.num_outputs, "output")(cls)
        return logits[..., 0] if self.regression else logits


@dataclasses.dataclass(frozen=True)
class GlueTask(Task):
    """A GLUE task: its labels (none for regression), columns and file layout."""

    name: str
    metrics: tuple[str, ...]
    labels: tuple[str, ...] = ()  # empty: regression
    glue_dir: str = ""  # folder name in the standard glue_data layout
    dev_file: str = "dev.tsv"
    # Header tasks: the column names to read (text_a, text_b, label); headerless tasks (CoLA): indices.
    columns: tuple = ()
    header: bool = True
    num_columns: int = 0  # exact column count for headerless files
    unordered_pair: bool = False  # MRPC, STS-B: doubled with A/B swapped (double_unordered)
    tfds_name: str = ""
    tfds_dev_split: str = "validation"
    tfds_fields: tuple = ()  # (text_a, text_b or None) feature names
    epochs: int = 3
    max_seq_length: int = 128

    @property
    def regression(self) -> bool:
        return not self.labels

    # -- reading ------------------------------------------------------------------------------------------

    def read(self, split: str, data_config) -> list[Example]:
        require_data_source(self, data_config, self.tfds_name)
        double = bool(data_config.get("double_unordered", True))
        if data_config.get("tfds", False):
            return read_glue_tfds(self, split, data_config.get("tfds_data_dir", "") or None, double)
        folder = task_folder(self, data_config.get("dir", ""))
        return read_glue_file(self, os.path.join(folder, "train.tsv" if split == "train" else self.dev_file),
                              split, double)

    # -- model --------------------------------------------------------------------------------------------

    def featurize(self, train_examples, dev_examples, tokenizer, config) -> TaskData:
        seq = config.data.max_seq_length
        train = featurize_classification(train_examples, tokenizer, seq, self.regression)
        dev = featurize_classification(dev_examples, tokenizer, seq, self.regression)
        if self.regression:
            train["labels"] = train["labels"] / REGRESSION_SCALE
        return TaskData(train, dev, num_outputs=1 if self.regression else len(self.labels),
                        num_train_examples=len(train_examples), dev_examples=dev_examples)

    def head(self, num_outputs: int, config) -> nn.Module:
        return ClassificationHead(num_outputs, regression=self.regression)

    def loss(self, outputs, batch, config) -> jax.Array:
        if self.regression:
            return jnp.mean(jnp.square(outputs - batch["labels"]))
        return optax.softmax_cross_entropy_with_integer_labels(outputs, batch["labels"]).mean()

    def eval_outputs(self, outputs):
        return {"predictions": outputs if self.regression else jnp.argmax(outputs, -1)}

    def score(self, data: TaskData, outputs, config, output_dir=None) -> dict[str, float]:
        labels, predictions = data.dev["labels"], outputs["predictions"]
        if self.regression:
            predictions = predictions * REGRESSION_SCALE
            return {"pearson": scoring.pearson(labels, predictions), "spearman": scoring.spearman(labels, predictions),
                    "mse": float(np.mean(np.square(labels - predictions)))}
        metrics = scoring.classification_metrics(self.metrics, labels, predictions)
        metrics.setdefault("accuracy", scoring.accuracy(labels, predictions))
        return metrics


TASKS = (
    GlueTask("cola", ("mcc", "accuracy"), ("0", "1"), "CoLA", columns=(3, None, 1), header=False, num_columns=4,
             tfds_name="glue/cola", tfds_fields=("sentence", None)),
    GlueTask("sst2", ("accuracy",), ("0", "1"), "SST-2", columns=("sentence", None, "label"), tfds_name="glue/sst2",
             tfds_fields=("sentence", None)),
    GlueTask("mrpc", ("accuracy", "f1"), ("0", "1"), "MRPC", columns=("#1 String", "#2 String", "Quality"),
             unordered_pair=True, tfds_name="glue/mrpc", tfds_fields=("sentence1", "sentence2")),
    GlueTask("stsb", ("pearson", "spearman"), (), "STS-B", columns=("sentence1", "sentence2", "score"),
             unordered_pair=True, epochs=10, tfds_name="glue/stsb", tfds_fields=("sentence1", "sentence2")),
    GlueTask("qqp", ("accuracy", "f1"), ("0", "1"), "QQP", columns=("question1", "question2", "is_duplicate"),
             tfds_name="glue/qqp", tfds_fields=("question1", "question2")),
    GlueTask("mnli", ("accuracy",), ("contradiction", "entailment", "neutral"), "MNLI", dev_file="dev_matched.tsv",
             columns=("sentence1", "sentence2", "gold_label"), tfds_name="glue/mnli",
             tfds_dev_split="validation_matched", tfds_fields=("premise", "hypothesis")),
    GlueTask("qnli", ("accuracy",), ("entailment", "not_entailment"), "QNLI", columns=("question", "sentence", "label"),
             tfds_name="glue/qnli", tfds_fields=("question", "sentence")),
    GlueTask("rte", ("accuracy",), ("entailment", "not_entailment"), "RTE", columns=("sentence1", "sentence2", "label"),
             epochs=10, tfds_name="glue/rte", tfds_fields=("sentence1", "sentence2")),
)


# ---------------------------------------------------------------------------------------------------------
# Reading


def task_folder(task: GlueTask, data_dir: str) -> str:
    """Accepts either the task's own folder or the glue_data root holding it."""
    if task.glue_dir and os.path.isdir(os.path.join(data_dir, task.glue_dir)):
        return os.path.join(data_dir, task.glue_dir)
    return data_dir


def _read_tsv(path: str) -> list[list[str]]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: config.data.dir should hold the task's files in the standard "
                                "GLUE layout (train.tsv, dev.tsv)")
    csv.field_size_limit(sys.maxsize)
    # GLUE TSVs are not CSV-quoted (MRPC sentences start with bare quotes): read fields verbatim,
    # as the original's csv.reader(delimiter="\t", quotechar=None).
    with open(path, encoding="utf-8-sig", newline="") as f:
        return [row for row in csv.reader(f, delimiter="\t", quotechar=None)]


def _label_value(task: GlueTask, raw: str, path: str, line: int):
    if task.regression:
        try:
            return float(raw)
        except ValueError:
            raise DataFormatError(f"{path}, line {line}: the {task.name} score column holds {raw!r}, "
                                  "expected a number") from None
    if raw not in task.labels:
        raise DataFormatError(f"{path}, line {line}: label {raw!r} is not one of the {task.name} labels "
                              f"{list(task.labels)}")
    return task.labels.index(raw)


def _swapped(examples: list[Example]) -> list[Example]:
    return [Example(e.guid + "-swapped", e.text_b, e.text_a, e.label) for e in examples]


def read_glue_file(task: GlueTask, path: str, split: str, double_unordered: bool = True) -> list[Example]:
    """Reads one GLUE TSV, checking its header (or column count) row by row."""
    rows = _read_tsv(path)
    examples = []
    if task.header:
        if not rows:
            raise DataFormatError(f"{path}: the file is empty; expected a header line with columns "
                                  f"{[c for c in task.columns if c]}")
        header = [h.strip() for h in rows[0]]
        missing = [c for c in task.columns if c is not None and c not in header]
        if missing:
            raise DataFormatError(
                f"{path}, line 1: expected a {task.name} header naming the columns "
                f"{[c for c in task.columns if c]} (tab-separated); found {header[:12]}. Missing: {missing}")
        index = [header.index(c) if c is not None else None for c in task.columns]
        width, body, first_line = len(header), rows[1:], 2
    else:
        index, width, body, first_line = list(task.columns), task.num_columns, rows, 1
    for offset, row in enumerate(body):
        line = first_line + offset
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != width:
            names = ", ".join(header) if task.header else "source, label, original label, sentence"
            raise DataFormatError(f"{path}, line {line}: expected {width} tab-separated columns ({names}), "
                                  f"found {len(row)}")
        text_a = row[index[0]]
        text_b = row[index[1]] if index[1] is not None else None
        label = _label_value(task, row[index[2]].strip(), path, line)
        examples.append(Example(f"{split}-{line}", text_a, text_b, label))
    if split == "train" and double_unordered and task.unordered_pair:
        examples += _swapped(examples)
    return examples


def read_glue_tfds(task: GlueTask, split: str, data_dir: str | None, double_unordered: bool = True) -> list[Example]:
    tfds_split = "train" if split == "train" else task.tfds_dev_split
    builder, rows = tfds_load(task.tfds_name, tfds_split, data_dir)
    names = None if task.regression else builder.info.features["label"].names
    examples = []
    field_a, field_b = task.tfds_fields
    for i, row in enumerate(rows):
        raw = row["label"]
        if task.regression:
            label = float(raw)
        else:
            if raw < 0:  # unlabelled (test) rows
                continue
            # Numeric GLUE labels ("0"/"1") keep their index; named ones map by name (TFDS MNLI order differs).
            label = int(raw) if task.labels == ("0", "1") else task.labels.index(names[int(raw)])
        text_b = as_text(row[field_b]) if field_b else None
        examples.append(Example(f"{split}-{i}", as_text(row[field_a]), text_b, label))
    if split == "train" and double_unordered and task.unordered_pair:
        examples += _swapped(examples)
    return examples


# ---------------------------------------------------------------------------------------------------------
# Featurization


def _truncate_pair(tokens_a: list, tokens_b: list, max_length: int) -> None:
    """Removes one token at a time from the longer sequence (the original _truncate_seq_pair)."""
    while len(tokens_a) + len(tokens_b) > max_length:
        if len(tokens_a) > len(tokens_b):
            tokens_a.pop()
        else:
            tokens_b.pop()


def featurize_classification(examples: Sequence[Example], tokenizer, max_seq_length: int,
                             regression: bool = False) -> dict[str, np.ndarray]:
    """input_ids, input_mask, segment_ids [N, S] and labels [N] (float32 for regression)."""
    n = len(examples)
    input_ids = np.full((n, max_seq_length), tokenizer.pad_id, np.int32)
    input_mask = np.zeros((n, max_seq_length), np.int32)
    segment_ids = np.zeros((n, max_seq_length), np.int32)
    labels = np.zeros((n,), np.float32 if regression else np.int32)
    encoded_a = tokenizer.encode_batch([e.text_a for e in examples])
    has_b = [e.text_b is not None for e in examples]
    encoded_b = tokenizer.encode_batch([e.text_b if e.text_b is not None else "" for e in examples])
    for i, example in enumerate(examples):
        tokens_a = list(encoded_a[i])
        if has_b[i]:
            tokens_b = list(encoded_b[i])
            _truncate_pair(tokens_a, tokens_b, max_seq_length - 3)
        else:
            tokens_b = None
            tokens_a = tokens_a[: max_seq_length - 2]
        ids = [tokenizer.cls_id] + tokens_a + [tokenizer.sep_id]
        segments = [0] * len(ids)
        if tokens_b is not None:
            ids += tokens_b + [tokenizer.sep_id]
            segments += [1] * (len(tokens_b) + 1)
        input_ids[i, : len(ids)] = ids
        input_mask[i, : len(ids)] = 1
        segment_ids[i, : len(ids)] = segments
        labels[i] = example.label
    return {"input_ids": input_ids, "input_mask": input_mask, "segment_ids": segment_ids, "labels": labels}
