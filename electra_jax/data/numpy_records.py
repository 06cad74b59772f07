"""Pre-training examples as memory-mapped numpy shards: written by `build_data --format=numpy`, read without TensorFlow.

A shard `pretrain_data-{i}-of-{n}.npy` is one standard .npy file (`np.load(path, mmap_mode="r")` opens it) holding a
structured array, one row per example:

    input_ids  uint16[S] (int32[S] for vocabularies over 65,536 entries), zero padded
    length     uint16    real tokens, [CLS] and [SEP]s included   -> input_mask  = position < length
    len_a      uint16    length of `[CLS] A [SEP]`                 -> segment_ids = len_a <= position < length

These are the same examples as the TFRecord shards of the same build (the three features are recomputed from the
row exactly as `ExampleSerializer` writes them), at about a quarter of the bytes, and any row is read by index.

`NumpyRecordsInput` has `PretrainInput`'s interface (per-host int32 batches, `get_state`/`set_state`):

  * Order: epoch e visits the N examples of all shards (in sorted file order) in blocks of `block_size`
    consecutive rows; the block order and the order inside each block are permutations drawn from (seed, e)
    (`shuffle=False`: 0..N-1). Like tf.data's buffered shuffle, it mixes locally and moves whole regions around,
    and it costs no memory beyond one block's permutation.
  * Hosts: host h of P takes positions h, h + P, h + 2P, ... of every epoch's order, so in each epoch the hosts'
    examples are disjoint and together are all N (for any N and P, no files-per-host condition).
  * Position: the number of examples this host has consumed. The stream is a pure function of it, so a restore
    seeks in O(1): nothing is replayed or skipped.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO

import numpy as np

from electra_jax.data.pipeline import FEATURES, check_records_complete, glob_files, resolve_host

SHARD_PATTERN = "pretrain_data-{i}-of-{n}.npy"
SHARD_GLOB = "pretrain_data-*-of-*.npy"
_STATE_KIND = "numpy"
_STATE_VERSION = 1
_MAGIC = b"\x93NUMPY"
_HEADER_BYTES = 256  # a fixed-size .npy header, rewritten with the real row count when the shard is closed


def record_dtype(seq_len: int, vocab_size: int) -> np.dtype:
    """The row layout of a shard for sequence length S and a vocabulary of vocab_size ids."""
    if not 8 <= seq_len < 2**16:
        raise ValueError(f"seq_len={seq_len} must be in [8, 65535] for numpy records")
    ids = np.uint16 if vocab_size <= 2**16 else np.int32
    return np.dtype([("input_ids", ids, (seq_len,)), ("length", np.uint16), ("len_a", np.uint16)])


def examples_to_rows(examples: Sequence[tuple[Sequence[int], int]], dtype: np.dtype) -> np.ndarray:
    """Rows for (input_ids without padding, len_a) pairs, the builder's output."""
    rows = np.zeros(len(examples), dtype)
    for row, (input_ids, len_a) in zip(rows, examples):
        row["input_ids"][:len(input_ids)] = input_ids
        row["length"] = len(input_ids)
        row["len_a"] = len_a
    return rows


def rows_to_features(rows: np.ndarray) -> dict[str, np.ndarray]:
    """The three int32 features of PretrainInput's batches, recomputed from rows ([B] structured -> [B, S])."""
    input_ids = rows["input_ids"].astype(np.int32)
    position = np.arange(input_ids.shape[1])[None, :]
    length = rows["length"].astype(np.int32)[:, None]
    len_a = rows["len_a"].astype(np.int32)[:, None]
    return {"input_ids": input_ids, "input_mask": (position < length).astype(np.int32),
            "segment_ids": ((position >= len_a) & (position < length)).astype(np.int32)}


# ---------------------------------------------------------------------------------------------------------
# Writing


def _header(dtype: np.dtype, num_rows: int) -> bytes:
    """A version 1.0 .npy header padded to _HEADER_BYTES, so the row count can be rewritten in place."""
    fields = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (num_rows,)})
    length = _HEADER_BYTES - len(_MAGIC) - 4
    if len(fields) + 1 > length:
        raise ValueError(f"the .npy header for {dtype} does not fit in {_HEADER_BYTES} bytes")
    return _MAGIC + b"\x01\x00" + length.to_bytes(2, "little") + (fields.ljust(length - 1) + "\n").encode("latin1")


class NumpyShardWriter:
    """Appends rows to one shard; `close()` writes the final row count into the header."""

    def __init__(self, path: str, dtype: np.dtype):
        self.path = path
        self.dtype = dtype
        self.num_rows = 0
        self._file: BinaryIO = open(path, "wb")
        self._file.write(_header(dtype, 0))

    def write(self, rows: np.ndarray) -> None:
        if rows.dtype != self.dtype:
            raise ValueError(f"rows of dtype {rows.dtype} do not match the shard's {self.dtype}")
        self._file.write(np.ascontiguousarray(rows).tobytes())
        self.num_rows += len(rows)

    def close(self) -> int:
        if not self._file.closed:
            self._file.seek(0)
            self._file.write(_header(self.dtype, self.num_rows))
            self._file.close()
        return self.num_rows


# ---------------------------------------------------------------------------------------------------------
# Reading


def open_shard(path: str, seq_len: int) -> np.ndarray:
    """The shard's rows, memory-mapped; ValueError naming the file when it is not a shard of sequence length S."""
    with open(path, "rb") as f:
        magic = f.read(len(_MAGIC))
    if magic != _MAGIC:
        raise ValueError(f"{path} is not a numpy records shard (no .npy header); numpy records are built by "
                         "`build_data --format=numpy`. To read TFRecords set config.data.format=tfrecord.")
    try:
        rows = np.load(path, mmap_mode="r")
    except (ValueError, OSError, SyntaxError) as e:
        raise ValueError(f"Corrupt numpy records shard {path} ({e}). Rebuild it with electra_jax.build_data.") from e
    names = rows.dtype.names or ()
    missing = [name for name in ("input_ids", "length", "len_a") if name not in names]
    if missing or rows.ndim != 1:
        raise ValueError(f"{path} is a .npy file but not a records shard (fields {list(names)}, {rows.ndim} dims; "
                         f"missing {missing}). Rebuild it with `build_data --format=numpy`.")
    length = rows.dtype["input_ids"].shape[0]
    if length != seq_len:
        raise ValueError(f"Records in {path} have input_ids of length {length} but seq_len is {seq_len}. Use data "
                         f"built with --max_seq_length={seq_len}, or set the sequence length to {length}.")
    return rows


def _block_permutation(seed: int, epoch: int, block: int, size: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch, block + 1]).permutation(size)


class NumpyRecordsInput:
    """Per-host batches of numpy records, deterministic for a seed and exactly resumable (see the module doc)."""

    def __init__(self, file_pattern: str | Sequence[str], *, per_host_batch_size: int, seq_len: int, seed: int = 0,
                 shuffle: bool = True, repeat: bool = True, process_index: int | None = None,
                 process_count: int | None = None, block_size: int = 10000):
        if per_host_batch_size < 1 or block_size < 1:
            raise ValueError(f"per_host_batch_size={per_host_batch_size} and block_size={block_size} must be >= 1.")
        if seed < 0:
            raise ValueError(f"seed={seed} must be >= 0 for numpy records.")
        process_index, process_count = resolve_host(process_index, process_count)
        self.files = glob_files(file_pattern)
        if not self.files:
            raise ValueError(f"No numpy records match {file_pattern!r}; check config.data.train_files (build them "
                             "with `python -m electra_jax.build_data --format=numpy`).")
        check_records_complete(self.files)
        self.shards = [open_shard(path, seq_len) for path in self.files]
        sizes = np.array([len(rows) for rows in self.shards], np.int64)
        self._shard_starts = np.concatenate([[0], np.cumsum(sizes)])
        self.num_examples = int(self._shard_starts[-1])
        self.per_host_batch_size = per_host_batch_size
        self.seq_len = seq_len
        self.seed, self.shuffle, self.repeat = seed, shuffle, repeat
        self.process_index, self.process_count = process_index, process_count
        self.block_size = block_size
        # This host's share of every epoch: positions process_index, process_index + P, ... of the epoch's order.
        self.host_examples = len(range(process_index, self.num_examples, process_count))
        if self.host_examples < per_host_batch_size:
            raise ValueError(f"Host {process_index} of {process_count} gets {self.host_examples} of the "
                             f"{self.num_examples} examples in {len(self.files)} shard(s), less than one batch of "
                             f"{per_host_batch_size}; build more examples or use a smaller batch.")
        self._files_digest = hashlib.sha256("\n".join(self.files).encode()).hexdigest()[:16]
        self._consumed = 0
        self._batches = 0
        self._epoch_blocks: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._block_perms: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()

    # -- the epoch order ----------------------------------------------------------------------------------

    def _blocks(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(block ids in visiting order, the epoch position where each starts) for one epoch."""
        if epoch not in self._epoch_blocks:
            num_blocks = -(-self.num_examples // self.block_size)
            order = np.random.default_rng([self.seed, epoch]).permutation(num_blocks)
            sizes = np.minimum(self.block_size, self.num_examples - order * self.block_size)
            self._epoch_blocks[epoch] = (order, np.concatenate([[0], np.cumsum(sizes)[:-1]]))
            while len(self._epoch_blocks) > 2:  # a batch touches at most two epochs
                self._epoch_blocks.popitem(last=False)
        return self._epoch_blocks[epoch]

    def _block_perm(self, epoch: int, block: int) -> np.ndarray:
        key = (epoch, block)
        if key not in self._block_perms:
            size = min(self.block_size, self.num_examples - block * self.block_size)
            self._block_perms[key] = _block_permutation(self.seed, epoch, block, size)
            while len(self._block_perms) > 64:
                self._block_perms.popitem(last=False)
        return self._block_perms[key]

    def example_indices(self, epoch: int, positions: np.ndarray) -> np.ndarray:
        """Global example indices at these positions of one epoch's order (every host's order is the same)."""
        if not self.shuffle:
            return positions.astype(np.int64)
        order, starts = self._blocks(epoch)
        rank = np.searchsorted(starts, positions, side="right") - 1
        out = np.empty(len(positions), np.int64)
        for r in np.unique(rank):
            chosen = rank == r
            block = int(order[r])
            out[chosen] = block * self.block_size + self._block_perm(epoch, block)[positions[chosen] - starts[r]]
        return out

    def _rows(self, indices: np.ndarray) -> np.ndarray:
        shard_of = np.searchsorted(self._shard_starts, indices, side="right") - 1
        rows = np.empty(len(indices), self.shards[0].dtype)
        for shard in np.unique(shard_of):
            chosen = shard_of == shard
            rows[chosen] = self.shards[shard][indices[chosen] - self._shard_starts[shard]]
        return rows

    # -- iteration ----------------------------------------------------------------------------------------

    def __iter__(self) -> NumpyRecordsInput:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        stream = self._consumed + np.arange(self.per_host_batch_size, dtype=np.int64)
        epochs, within = np.divmod(stream, self.host_examples)
        if not self.repeat and epochs[-1] > 0:
            raise StopIteration  # one epoch, short last batch dropped (tf.data's drop_remainder)
        positions = self.process_index + within * self.process_count
        indices = np.empty(len(stream), np.int64)
        for epoch in np.unique(epochs):
            chosen = epochs == epoch
            indices[chosen] = self.example_indices(int(epoch), positions[chosen])
        self._consumed += self.per_host_batch_size
        self._batches += 1
        return rows_to_features(self._rows(indices))

    # -- position -----------------------------------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        """JSON-serializable position: restoring it yields exactly the batches that would have come next."""
        return {"kind": _STATE_KIND, "version": _STATE_VERSION, "examples": self._consumed, "batches": self._batches,
                "seed": self.seed, "shuffle": self.shuffle, "block_size": self.block_size,
                "process_index": self.process_index, "process_count": self.process_count,
                "files_digest": self._files_digest, "num_examples": self.num_examples}

    def set_state(self, state: Mapping[str, Any]) -> None:
        if state.get("kind") != _STATE_KIND or state.get("version") != _STATE_VERSION:
            raise ValueError(f"the saved input position {dict(state)} is not from numpy records "
                             f"(kind {_STATE_KIND!r}, version {_STATE_VERSION})")
        for key, mine in (("seed", self.seed), ("shuffle", self.shuffle), ("block_size", self.block_size),
                          ("process_index", self.process_index), ("process_count", self.process_count),
                          ("files_digest", self._files_digest), ("num_examples", self.num_examples)):
            if state[key] != mine:
                raise ValueError(f"Input state was saved with {key}={state[key]!r} but this pipeline has "
                                 f"{key}={mine!r}: the saved position is meaningless for other files, seeds or host "
                                 "layouts.")
        self._consumed = int(state["examples"])
        self._batches = int(state["batches"])


def read_all(file_pattern: str | Sequence[str], seq_len: int) -> dict[str, np.ndarray]:
    """Every example of the matching shards in file order, as int32 features (for tools and tests)."""
    files = glob_files(file_pattern)
    rows = [np.asarray(open_shard(path, seq_len)) for path in files]
    if not rows:
        return {name: np.zeros((0, seq_len), np.int32) for name in FEATURES}
    return rows_to_features(np.concatenate(rows))

