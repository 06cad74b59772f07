"""What pre-training reads: the train or eval input of this host (records or synthetic tokens).

`make_input(config, split=..., per_host_batch_size=...)` picks the input of a split: `SyntheticInput` (random
tokens, no files, no TensorFlow) or `pipeline.PretrainInput` over the records named by config.data. Each
input iterates numpy batches of this host's rows and saves/restores its position (`get_state`/`set_state`),
which checkpoints store per host so a resumed run reads exactly what an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import numpy as np

from electra_jax import config as config_lib

EVAL_SEED_OFFSET = 1_000_003  # eval data and masks use a seed apart from training's


class SyntheticInput:
    """Random-token batches without TensorFlow, a pure function of (seed, batch index).

    Every host builds the same global batch and keeps its own rows, so the global batch does not depend on
    the number of hosts, and the position is one integer (restoring costs nothing).
    """

    def __init__(self, *, config, per_host_batch_size: int, seed: int, process_index: int, process_count: int):
        from electra_jax.data.pipeline import synthetic_batches

        self._make = synthetic_batches
        self.config = config
        self.per_host_batch_size = per_host_batch_size
        self.global_batch_size = per_host_batch_size * process_count
        self.seed = seed
        self.process_index = process_index
        self.batches = 0

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        digest = hashlib.sha256(f"synthetic/{self.seed}/{self.batches}".encode()).digest()
        batch = next(self._make(per_host_batch_size=self.global_batch_size, seq_len=self.config.data.max_seq_length,
                                vocab_size=self.config.model.vocab_size, seed=int.from_bytes(digest[:8], "little"),
                                special_ids=config_lib.special_ids(self.config)))
        self.batches += 1
        rows = slice(self.process_index * self.per_host_batch_size, (self.process_index + 1) * self.per_host_batch_size)
        return {k: v[rows] for k, v in batch.items()}

    def get_state(self) -> dict:
        return {"kind": "synthetic", "seed": self.seed, "batches": self.batches}

    def set_state(self, state: Mapping[str, Any]) -> None:
        if state.get("kind") != "synthetic":
            raise ValueError(f"the checkpoint's input position {dict(state)} is not from synthetic data")
        self.batches = int(state["batches"])


def check_files_match(pattern: str, field: str) -> None:
    """Raises ValueError naming `field` when its glob matches no file."""
    from electra_jax.data.pipeline import glob_files

    matched = {part: glob_files(part) for part in str(pattern).split(",") if part}  # each pattern globbed once
    if not any(matched.values()):
        raise ValueError(f"No record files match {pattern!r}; check {field} (quote the glob so that your shell does "
                         "not expand it; build records with `python -m electra_jax.build_data`).")
    empty = [part for part, files in matched.items() if not files]
    if empty:  # a typo in one of several globs would silently train on less data
        raise ValueError(f"{field}: the pattern {empty[0]!r} of {pattern!r} matches no files (the others do); fix "
                         "it or leave it out")


def check_eval_files(config) -> None:
    """Fails at once, before any compile, when config.data.eval_files is set but matches nothing."""
    if config.data.eval_files and not config.data.synthetic and config.train.eval_every > 0:
        check_files_match(config.data.eval_files, "config.data.eval_files")


def make_input(config, *, split: str, per_host_batch_size: int):
    """The train or eval input of this host (synthetic, or TFRecords through PretrainInput); None if no eval."""
    seed = config.train.seed + (EVAL_SEED_OFFSET if split == "eval" else 0)
    if config.data.synthetic:
        return SyntheticInput(config=config, per_host_batch_size=per_host_batch_size, seed=seed,
                              process_index=jax.process_index(), process_count=jax.process_count())
    pattern = config.data.train_files if split == "train" else config.data.eval_files
    if not pattern:
        if split == "train":
            raise ValueError("config.data.train_files is empty: pass a glob of records built by "
                             "`python -m electra_jax.build_data`, or set config.data.synthetic=True")
        return None
    check_files_match(pattern, f"config.data.{split}_files")
    if config.data.format == "numpy":  # build_data --format=numpy: memory-mapped shards, no TensorFlow
        from electra_jax.data.numpy_records import NumpyRecordsInput

        return NumpyRecordsInput(pattern, per_host_batch_size=per_host_batch_size, seq_len=config.data.max_seq_length,
                                 seed=seed, shuffle=split == "train", repeat=True, process_index=jax.process_index(),
                                 process_count=jax.process_count(), block_size=config.data.shuffle_buffer)
    from electra_jax.data.pipeline import PretrainInput

    return PretrainInput(pattern, per_host_batch_size=per_host_batch_size, seq_len=config.data.max_seq_length,
                         seed=seed, shuffle=split == "train", repeat=True, process_index=jax.process_index(),
                         process_count=jax.process_count(), shuffle_buffer=config.data.shuffle_buffer)
