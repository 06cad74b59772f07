"""Tagging: named-entity recognition and chunking on CoNLL-style column files (or TFDS conll2003).

Words -> word pieces with only the first piece of each word labelled; tags are trained as BIOES
(`config.data.tag_scheme`) and scored as chunks (span F1), as the original `finetune/tagging/` code
(ELECTRA_REFERENCE.md section 6). The head is one dense layer on each word's first piece. Words cut by
max_seq_length count as "O" predictions, so recall is not inflated by truncation.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

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
    first_existing,
    glorot_dense,
    require_data_source,
    tfds_load,
)

DEV_FILES = ("dev.txt", "valid.txt", "testa.txt")


class TaggingHead(nn.Module):
    num_tags: int

    @nn.compact
    def __call__(self, hidden, batch, deterministic: bool = True, training: bool = False):
        positions = batch["labeled_positions"].astype(jnp.int32)
        states = jnp.take_along_axis(hidden, positions[..., None], axis=1)
        return glorot_dense(self.num_tags, "output")(states.astype(jnp.float32))


@dataclasses.dataclass(frozen=True)
class TaggingTask(Task):
    name: str
    metrics: tuple[str, ...] = ("f1", "precision", "recall")
    tfds_name: str = ""
    epochs: int = 3
    max_seq_length: int = 128

    def read(self, split: str, data_config) -> list[TaggingExample]:
        require_data_source(self, data_config, self.tfds_name)
        if data_config.get("tfds", False):
            if not self.tfds_name:
                raise ValueError(f"task {self.name} has no TFDS dataset; use --config.data.dir with CoNLL files")
            return read_conll_tfds(self.tfds_name, split, data_config.get("tfds_data_dir", "") or None)
        names = ["train.txt"] if split == "train" else list(DEV_FILES)
        return read_conll_file(first_existing(data_config.get("dir", ""), names))

    def featurize(self, train_examples, dev_examples, tokenizer, config) -> TaskData:
        scheme, seq = config.data.tag_scheme, config.data.max_seq_length
        label_list = tagging_label_list(list(train_examples) + list(dev_examples), scheme)
        train = featurize_tagging(train_examples, tokenizer, seq, label_list, scheme)
        dev = featurize_tagging(dev_examples, tokenizer, seq, label_list, scheme)
        return TaskData(train, dev, num_outputs=len(label_list), num_train_examples=len(train_examples),
                        dev_examples=dev_examples, extras={"label_list": label_list})

    def head(self, num_outputs: int, config) -> nn.Module:
        return TaggingHead(num_outputs)

    def loss(self, outputs, batch, config) -> jax.Array:
        per_word = optax.softmax_cross_entropy_with_integer_labels(outputs, batch["labels"])
        return jnp.mean(jnp.sum(per_word * batch["label_mask"], axis=-1))  # summed over words, as the original

    def score(self, data: TaskData, outputs, config, output_dir=None) -> dict[str, float]:
        label_list = data.extras["label_list"]
        gold_sequences, predicted_sequences = [], []
        for i, example in enumerate(data.dev_examples):
            kept = int(data.dev["label_mask"][i].sum())
            predicted = [label_list[t] for t in outputs["predictions"][i, :kept]]
            predicted += ["O"] * (len(example.tags) - kept)  # words cut by max_seq_length count as "O"
            gold_sequences.append(example.tags)
            predicted_sequences.append(predicted)
        return scoring.span_f1(gold_sequences, predicted_sequences)


TASKS = (
    TaggingTask("ner", tfds_name="conll2003"),
    TaggingTask("chunk", max_seq_length=256),
)


@dataclasses.dataclass
class TaggingExample:
    words: list[str]
    tags: list[str]


def read_conll_file(path: str) -> list[TaggingExample]:
    """Whitespace-separated columns, the word first and its tag last; blank lines end sentences."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: config.data.dir should hold CoNLL column files train.txt "
                                "and dev.txt (word ... tag per line, blank line between sentences)")
    examples, words, tags = [], [], []
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                if words:
                    examples.append(TaggingExample(words, tags))
                    words, tags = [], []
                continue
            if fields[0] == "-DOCSTART-":
                continue
            if len(fields) < 2:
                raise DataFormatError(f"{path}, line {line_number}: expected at least 2 whitespace-separated "
                                      f"columns (word ... tag), found {len(fields)}: {line.strip()!r}")
            tag = fields[-1]
            if tag != "O" and not (len(tag) > 1 and tag[0] in "BIES" and tag[1] == "-"):
                raise DataFormatError(f"{path}, line {line_number}: the last column {tag!r} is not a chunk tag "
                                      "(expected O or B-/I-/E-/S-TYPE)")
            words.append(fields[0])
            tags.append(tag)
    if words:
        examples.append(TaggingExample(words, tags))
    return examples


def read_conll_tfds(name: str, split: str, data_dir: str | None) -> list[TaggingExample]:
    builder, rows = tfds_load(name, "train" if split == "train" else "validation", data_dir)
    names = builder.info.features["ner"].feature.names
    return [TaggingExample([as_text(w) for w in row["tokens"]], [names[int(t)] for t in row["ner"]]) for row in rows]


def tagging_label_list(examples: Sequence[TaggingExample], scheme: str = "BIOES") -> list[str]:
    tags = set()
    for example in examples:
        tags.update(scoring.to_bioes(example.tags) if scheme == "BIOES" else example.tags)
    tags.add("O")
    return sorted(tags)


def featurize_tagging(examples: Sequence[TaggingExample], tokenizer, max_seq_length: int, label_list: Sequence[str],
                      scheme: str = "BIOES", segment_id: int = 1) -> dict[str, np.ndarray]:
    """[CLS] pieces [SEP]; labelled_positions point at each word's first piece (words past S are dropped).

    segment_id 1 everywhere matches the original tagging code (ELECTRA_REFERENCE.md section 6).
    """
    label_index = {tag: i for i, tag in enumerate(label_list)}
    n = len(examples)
    input_ids = np.full((n, max_seq_length), tokenizer.pad_id, np.int32)
    input_mask = np.zeros((n, max_seq_length), np.int32)
    positions = np.zeros((n, max_seq_length), np.int32)
    labels = np.zeros((n, max_seq_length), np.int32)
    label_mask = np.zeros((n, max_seq_length), np.float32)
    for i, example in enumerate(examples):
        tags = scoring.to_bioes(example.tags) if scheme == "BIOES" else list(example.tags)
        ids, word_count = [tokenizer.cls_id], 0
        for word, tag in zip(example.words, tags):
            pieces = tokenizer.encode(word) or [tokenizer.unk_id]
            if len(ids) + len(pieces) + 1 > max_seq_length:
                break
            positions[i, word_count] = len(ids)
            labels[i, word_count] = label_index.get(tag, label_index["O"])
            label_mask[i, word_count] = 1.0
            ids += pieces
            word_count += 1
        ids.append(tokenizer.sep_id)
        input_ids[i, : len(ids)] = ids
        input_mask[i, : len(ids)] = 1
    segment_ids = np.where(input_mask > 0, segment_id, 0).astype(np.int32)
    return {"input_ids": input_ids, "input_mask": input_mask, "segment_ids": segment_ids,
            "labeled_positions": positions, "labels": labels, "label_mask": label_mask}


