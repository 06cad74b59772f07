"""The fine-tuning Task protocol: what every task family (GLUE, SQuAD, tagging, ...) provides.

A task reads its examples (`read`), turns train and dev examples into fixed-shape arrays (`featurize`), names
its head (`head`, a linen module on top of the discriminator encoder), its loss (`loss`), what evaluation keeps
of the head's outputs (`eval_outputs`) and how dev predictions are scored (`score`). The training loop
(`electra_jax.finetune.train`) never asks which kind of task it runs; a new kind is one module with a Task
subclass, registered with `electra_jax.finetune.tasks.register`.
"""

from __future__ import annotations

import abc
import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np


class DataFormatError(ValueError):
    """An input file does not have the expected layout; the message names the file, the line and the fix."""


@dataclasses.dataclass
class TaskData:
    """A task's featurized train and dev rows and what scoring the dev predictions needs.

    `train` and `dev` map the same keys to arrays with one row per model input (a SQuAD example can give
    several windows); `dev_examples` and `extras` (e.g. label lists, window metadata) are for `Task.score`.
    """

    train: dict[str, np.ndarray]
    dev: dict[str, np.ndarray]
    num_outputs: int
    num_train_examples: int
    dev_examples: Sequence[Any]
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def num_train(self) -> int:
        return len(self.train["input_ids"])

    @property
    def num_dev(self) -> int:
        return len(self.dev["input_ids"])


class Task(abc.ABC):
    """One fine-tuning task. Subclasses are frozen dataclasses with at least these fields."""

    name: str
    metrics: tuple[str, ...]  # reported metrics, the headline first
    epochs: int
    max_seq_length: int

    @abc.abstractmethod
    def read(self, split: str, data_config: ml_collections.ConfigDict) -> list:
        """The examples of `split` ("train" or "dev") from config.data (local files or prepared TFDS)."""

    @abc.abstractmethod
    def featurize(self, train_examples: Sequence[Any], dev_examples: Sequence[Any], tokenizer,
                  config: ml_collections.ConfigDict) -> TaskData:
        """Model inputs for both splits (same keys, shapes [N, ...])."""

    @abc.abstractmethod
    def head(self, num_outputs: int, config: ml_collections.ConfigDict) -> nn.Module:
        """A module called as head(hidden [B, S, H], batch, deterministic=..., training=...) -> outputs."""

    @abc.abstractmethod
    def loss(self, outputs: Any, batch: dict[str, jax.Array], config: ml_collections.ConfigDict) -> jax.Array:
        """The scalar training loss of one batch."""

    def eval_outputs(self, outputs: Any) -> dict[str, jax.Array]:
        """What evaluation keeps per row; by default the arg-max class."""
        return {"predictions": jnp.argmax(outputs, -1)}

    @abc.abstractmethod
    def score(self, data: TaskData, outputs: dict[str, np.ndarray], config: ml_collections.ConfigDict,
              output_dir: str | None = None) -> dict[str, float]:
        """Dev metrics from the eval outputs of every dev row (in order); may write prediction files."""


def glorot_dense(features: int, name: str) -> nn.Dense:
    """A task-head dense layer as the original's tf.layers.dense: Glorot-uniform kernel, zero bias."""
    return nn.Dense(features, kernel_init=nn.initializers.xavier_uniform(), bias_init=nn.initializers.zeros,
                    param_dtype=jnp.float32, name=name)


def tfds_load(name: str, split: str, data_dir: str | None):
    """(builder, numpy rows) of a TFDS dataset already prepared under data_dir; never downloads."""
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir or None)
        dataset = builder.as_dataset(split=split)
    except Exception as error:  # tfds raises several types for "not prepared"
        raise FileNotFoundError(
            f"TFDS dataset {name} (split {split}) is not prepared under data dir {data_dir or '~/tensorflow_datasets'}:"
            f" {error}. Prepare it where there is network (`tfds build {name} --data_dir=DIR`) and pass "
            "--config.data.tfds_data_dir=DIR; electra_jax never downloads at run time.") from error
    return builder, tfds.as_numpy(dataset)


def as_text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def require_data_source(task: Task, data_config: ml_collections.ConfigDict, tfds_name: str = "") -> None:
    if not data_config.get("tfds", False) and not data_config.get("dir", ""):
        raise ValueError(f"no data for task {task.name}: set --config.data.dir=FOLDER (the task's files in their "
                         f"standard layout) or --config.data.tfds=True with --config.data.tfds_data_dir=DIR "
                         f"(TFDS {tfds_name or 'n/a'} prepared locally)")


def first_existing(folder: str, names: Sequence[str]) -> str:
    """The first of `names` that exists in `folder` (else the first name, for the error message)."""
    for name in names:
        path = os.path.join(folder, name)
        if os.path.exists(path):
            return path
    return os.path.join(folder, names[0])
