"""Input pipelines for pre-training: TFRecord streaming with exact save/restore, and synthetic batches.

`PretrainInput` streams the original ELECTRA records (int64 `input_ids`, `input_mask`, `segment_ids` of
length S) with tf.data and yields int32 numpy batches of shape [per_host_batch_size, seq_len].

Determinism and restore. The stream is a pure function of (files, seed, host layout): epoch e reads this
host's files in an order permuted by a stateless RNG seeded with (seed, e), interleaves them
deterministically and shuffles with a buffer seeded by (seed, e); epochs follow one another with no mixing.
Every record carries its epoch number through the pipeline, so the iterator knows exactly how many records
of the current epoch it has handed out. `get_state()` returns (epoch, records consumed in that epoch);
`set_state()` rebuilds the pipeline at that epoch and skips that many records (raw, before parsing) inside
it. Restoring therefore costs reading at most one epoch of this host's records (C++ speed, no parsing;
about a second per few hundred MB), never the whole history, and the state is a few integers instead of a
serialized shuffle buffer (tf.data iterator checkpoints store the buffer: ~150 MB at S=512 with a 10k
buffer). The price is a deterministic interleave, which can be a little slower than a sloppy one.

TensorFlow is imported lazily (inside functions) and kept off GPUs/TPUs; `synthetic_batches` and
`to_global_batch` never import it. Machines without TensorFlow read build_data's numpy records instead
(electra_jax/data/numpy_records.py, config.data.format=numpy). Both readers refuse a folder holding build_data's
INCOMPLETE_MARKER (a replacement of its records was interrupted).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

FEATURES = ("input_ids", "input_mask", "segment_ids")
# build_data writes this file beside the records while it replaces them; readers refuse such a folder.
INCOMPLETE_MARKER = "build_data.incomplete"
_STATE_VERSION = 1
_TF = None


def _tf():
    """Imports TensorFlow once, hiding accelerators from it so it never takes GPU/TPU memory from JAX."""
    global _TF
    if _TF is None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        for kind in ("GPU", "TPU"):
            try:
                tf.config.set_visible_devices([], kind)
            except (RuntimeError, ValueError):  # already initialized, or the device type is unknown
                pass
        _TF = tf
    return _TF


def glob_files(file_pattern: str | Sequence[str]) -> list[str]:
    """Sorted, de-duplicated files for a glob, a comma-separated list of globs, or a list of globs; possibly
    empty. Local patterns use the standard library; remote ones (gs://...) TensorFlow's gfile."""
    patterns = file_pattern.split(",") if isinstance(file_pattern, str) else list(file_pattern)
    patterns = [os.path.expanduser(p) for p in patterns if p]
    if any("://" in p for p in patterns):
        return sorted({f for p in patterns for f in _tf().io.gfile.glob(p)})
    import glob

    return sorted({f for p in patterns for f in glob.glob(p)})


def expand_file_pattern(file_pattern: str | Sequence[str]) -> list[str]:
    """`glob_files`, with an error that says what to do when nothing matches."""
    files = glob_files(file_pattern)
    if not files:
        raise ValueError(f"No TFRecord files match {file_pattern!r}; check config.data.train_files "
                         "(build them with `python -m electra_jax.build_data`).")
    return files


def check_records_complete(files: Sequence[str]) -> None:
    """Raises ValueError when a folder of these records holds build_data's marker of an unfinished replacement
    (local folders, and gs:// or any other tf.io.gfile filesystem)."""
    for folder in sorted({os.path.dirname(path) for path in files}):
        marker = f"{folder}/{INCOMPLETE_MARKER}"
        if os.path.exists(marker) if "://" not in folder else _tf().io.gfile.exists(marker):
            raise ValueError(f"{folder} holds {INCOMPLETE_MARKER}: a build_data run was interrupted while it "
                             "replaced these records, so they may be incomplete. Rerun the build_data command.")


def _read_first_record(path: str) -> bytes | None:
    """The first record of a TFRecord file (None for an empty file), read without tf.data."""
    tf = _tf()
    with tf.io.gfile.GFile(path, "rb") as f:
        header = f.read(12)  # uint64 length + uint32 masked crc of the length
        if not header:
            return None
        if header.startswith(b"\x93NUMPY"):
            raise ValueError(f"{path} is a numpy records shard, not a TFRecord file; set "
                             "config.data.format=numpy to read it.")
        if len(header) < 12:
            raise ValueError(f"Corrupt TFRecord file {path}: truncated header ({len(header)} bytes). "
                             "Rebuild it with electra_jax.build_data.")
        length = int.from_bytes(header[:8], "little")
        size = tf.io.gfile.stat(path).length
        if length > size - 12:  # a text file's first 8 bytes read as a length: never allocate that much
            raise ValueError(f"Corrupt TFRecord file {path} (or no TFRecord file at all): its first record claims "
                             f"{length} bytes, the file holds {size}. Build records with electra_jax.build_data and "
                             "point config.data.train_files / eval_files at them.")
        data = f.read(length)
        if len(data) != length:
            raise ValueError(f"Corrupt TFRecord file {path}: first record claims {length} bytes, file holds "
                             f"{len(data)}. Rebuild it with electra_jax.build_data.")
        return data


def check_record_file(path: str, seq_len: int) -> bool:
    """Raises ValueError naming `path` if its first record lacks a feature or its length is not seq_len.

    Returns False for an empty file.
    """
    tf = _tf()
    data = _read_first_record(path)
    if data is None:
        return False
    try:
        example = tf.train.Example.FromString(data)
    except Exception as e:  # protobuf DecodeError
        raise ValueError(
            f"Corrupt TFRecord file {path}: its first record is not a tf.train.Example ({e}).") from e
    feats = example.features.feature
    missing = [n for n in FEATURES if n not in feats]
    if missing:
        raise ValueError(f"Records in {path} lack the feature(s) {missing} (they have {sorted(feats)}); "
                         "pre-training records need int64 input_ids, input_mask and segment_ids.")
    for name in FEATURES:
        length = len(feats[name].int64_list.value)
        if length != seq_len:
            raise ValueError(
                f"Records in {path} have {name} of length {length} but seq_len is {seq_len}. Use data built "
                f"with --max_seq_length={seq_len}, or set the sequence length to {length}.")
    return True


def find_bad_record(path: str, seq_len: int) -> str | None:
    """Reads a whole file; returns a message naming it and the first corrupt or wrong-length record."""
    tf = _tf()
    spec = {name: tf.io.FixedLenFeature([seq_len], tf.int64) for name in FEATURES}
    count = 0
    try:
        for records in tf.data.TFRecordDataset(path).batch(256):
            try:
                tf.io.parse_example(records, spec)
            except tf.errors.InvalidArgumentError as e:
                for i, record in enumerate(records.numpy()):
                    feats = tf.train.Example.FromString(record).features.feature
                    lengths = {n: len(feats[n].int64_list.value) if n in feats else None for n in FEATURES}
                    if any(v != seq_len for v in lengths.values()):
                        return (f"Record {count + i} of {path} has feature lengths {lengths} but seq_len is "
                                f"{seq_len}. Use data built with --max_seq_length={seq_len}.")
                return f"A record in {path} (records {count}..{count + 255}) failed to parse: {e.message}"
            count += int(records.shape[0])
    except tf.errors.DataLossError as e:
        return (f"Corrupt TFRecord file {path} (data loss after about {count} good records: {e.message}). "
                "Rebuild or remove this file.")
    return None


def resolve_host(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    """(this host's index, the number of hosts): JAX's unless given; ValueError for an index outside the count."""
    if process_index is None or process_count is None:
        import jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} must lie in [0, process_count={process_count}).")
    return process_index, process_count


def _seed_pair(seed: int, salt: int) -> list[int]:
    digest = hashlib.sha256(f"electra_jax.pipeline/{seed}/{salt}".encode()).digest()
    return [int.from_bytes(digest[:4], "little") >> 1, int.from_bytes(digest[4:8], "little") >> 1]


class PretrainInput:
    """Per-host batches of pre-training records, deterministic for a seed and exactly resumable."""

    def __init__(self, file_pattern: str | list[str], *, per_host_batch_size: int, seq_len: int,
                 seed: int = 0, shuffle: bool = True, repeat: bool = True, process_index: int | None = None,
                 process_count: int | None = None, shuffle_buffer: int = 10000, cycle_length: int = 4,
                 check_files: bool = True):
        if per_host_batch_size < 1 or seq_len < 1:
            raise ValueError(f"per_host_batch_size={per_host_batch_size} and seq_len={seq_len} must be >= 1.")
        process_index, process_count = resolve_host(process_index, process_count)
        self.files = expand_file_pattern(file_pattern)
        check_records_complete(self.files)
        self.per_host_batch_size = per_host_batch_size
        self.seq_len = seq_len
        self.seed = seed
        self.shuffle = shuffle
        self.repeat = repeat
        self.process_index = process_index
        self.process_count = process_count
        self.shuffle_buffer = shuffle_buffer
        self.cycle_length = cycle_length
        # Whole files per host when there are enough; otherwise every host reads every file and keeps every
        # process_count-th record (row-level sharding).
        self.row_sharding = len(self.files) < process_count
        self.host_files = self.files if self.row_sharding else self.files[process_index::process_count]
        if check_files:
            non_empty = [check_record_file(path, seq_len) for path in self.host_files]
            if not any(non_empty):
                # With repeat, an endless stream of empty epochs would hang instead of failing.
                raise ValueError(f"Host {process_index} of {process_count} got only empty record files "
                                 f"({self.host_files[:3]}...); build more examples or use fewer hosts.")
        self._files_digest = hashlib.sha256("\n".join(self.files).encode()).hexdigest()[:16]
        self._epoch = 0
        self._in_epoch = 0  # records of epoch self._epoch already returned
        self._batches = 0
        self._iterator = None

    # -- tf.data graph ------------------------------------------------------------------------------------

    def _epoch_records(self, epoch):
        """Records of one epoch for this host, each paired with its epoch number."""
        tf = _tf()
        epoch = tf.cast(epoch, tf.int64)
        files = tf.constant(self.host_files)
        n = len(self.host_files)
        if self.shuffle and n > 1:
            key = tf.stack([tf.constant(_seed_pair(self.seed, 0)[0], tf.int64), epoch])
            files = tf.gather(files, tf.argsort(tf.random.stateless_uniform([n], seed=key)))
        ds = tf.data.Dataset.from_tensor_slices(files)
        ds = ds.interleave(lambda f: tf.data.TFRecordDataset(f, buffer_size=1 << 20),
                           cycle_length=max(1, min(self.cycle_length, n)), block_length=1,
                           num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if self.row_sharding:
            ds = ds.shard(self.process_count, self.process_index)
        if self.shuffle:
            op_seed = tf.constant(_seed_pair(self.seed, 1)[0], tf.int64) * 1_000_003 + epoch
            ds = ds.shuffle(self.shuffle_buffer, seed=op_seed, reshuffle_each_iteration=False)
        return ds.map(lambda r: (r, epoch))

    def _parse(self, records, epochs):
        tf = _tf()
        spec = {name: tf.io.FixedLenFeature([self.seq_len], tf.int64) for name in FEATURES}
        parsed = tf.io.parse_example(records, spec)
        out = {name: tf.cast(parsed[name], tf.int32) for name in FEATURES}
        out["_epoch"] = epochs
        return out

    def _build(self):
        tf = _tf()
        last_epoch = 2**62 if self.repeat else 1
        ds = tf.data.Dataset.range(self._epoch, last_epoch).flat_map(self._epoch_records)
        if self._in_epoch:
            # Skipping from the start of epoch self._epoch lands inside it (or at the next epoch's start
            # when the epoch was used up); raw records, so nothing is parsed while skipping.
            ds = ds.skip(self._in_epoch)
        ds = ds.batch(self.per_host_batch_size, drop_remainder=True)
        ds = ds.map(self._parse, num_parallel_calls=tf.data.AUTOTUNE)
        options = tf.data.Options()
        options.deterministic = True
        ds = ds.with_options(options).prefetch(tf.data.AUTOTUNE)
        return iter(ds)

    # -- iteration ----------------------------------------------------------------------------------------

    def __iter__(self) -> PretrainInput:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        tf = _tf()
        if self._iterator is None:
            self._iterator = self._build()
        try:
            batch = next(self._iterator)
        except tf.errors.DataLossError as e:
            self._iterator = None
            raise self._diagnose(e) from e
        except tf.errors.InvalidArgumentError as e:
            self._iterator = None
            raise self._diagnose(e) from e
        tags = batch.pop("_epoch").numpy()
        last = int(tags[-1])
        n_last = int(np.count_nonzero(tags == last))
        if last == self._epoch:
            self._in_epoch += n_last
        else:
            self._epoch, self._in_epoch = last, n_last
        self._batches += 1
        return {name: value.numpy() for name, value in batch.items()}

    def _diagnose(self, error: Exception) -> ValueError:
        """Finds the file behind a tf.data error (a corrupt record or a record of the wrong length)."""
        for path in self.host_files:
            problem = find_bad_record(path, self.seq_len)
            if problem:
                return ValueError(problem)
        return ValueError(f"Reading pre-training records failed ({type(error).__name__}: {error}) in one of "
                          f"{len(self.host_files)} files starting with {self.host_files[:3]}.")

    # -- position -----------------------------------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        """JSON-serializable position: restoring it yields exactly the batches that would have come next."""
        return {"version": _STATE_VERSION, "epoch": self._epoch, "records_in_epoch": self._in_epoch,
                "batches": self._batches, "seed": self.seed, "shuffle": self.shuffle,
                "process_index": self.process_index, "process_count": self.process_count,
                "files_digest": self._files_digest, "num_files": len(self.files)}

    def set_state(self, state: Mapping[str, Any]) -> None:
        if state.get("version") != _STATE_VERSION:
            raise ValueError(
                f"Unknown input state version {state.get('version')!r} (expected {_STATE_VERSION}).")
        for key, mine in (("seed", self.seed), ("shuffle", self.shuffle),
                          ("process_index", self.process_index), ("process_count", self.process_count),
                          ("files_digest", self._files_digest)):
            if state[key] != mine:
                raise ValueError(
                    f"Input state was saved with {key}={state[key]!r} but this pipeline has {key}={mine!r}: "
                    "the saved position is meaningless for other files, seeds or host layouts.")
        self._epoch = int(state["epoch"])
        self._in_epoch = int(state["records_in_epoch"])
        self._batches = int(state["batches"])
        self._iterator = None  # rebuilt lazily at the saved position


def _special(special_ids: Mapping[str, int], name: str) -> int:
    for key in (f"{name}_id", name, f"[{name.upper()}]"):
        if key in special_ids:
            return int(special_ids[key])
    raise KeyError(f"special_ids lacks {name!r} (give pad_id, cls_id, sep_id, ...): {dict(special_ids)}")


def synthetic_batches(*, per_host_batch_size: int, seq_len: int, vocab_size: int, seed: int,
                      special_ids: Mapping[str, int], full_length: bool = False) -> Iterator[dict[str, np.ndarray]]:
    """Endless random batches shaped like PretrainInput's (no TensorFlow).

    Each row is `[CLS] A [SEP]` or `[CLS] A [SEP] B [SEP]` with random non-special tokens, a random length
    in [2, seq_len] and [PAD] after it. With `full_length`, every row is `[CLS] A [SEP] B [SEP]` filling
    seq_len with the middle [SEP] at seq_len // 2 (packed pre-training examples have no padding: what the
    benchmark times). `special_ids` maps pad_id/cls_id/sep_id (also "pad" or "[PAD]").
    """
    if seq_len < (4 if full_length else 2):
        raise ValueError(f"seq_len={seq_len} must be at least {4 if full_length else 2} ([CLS] and [SEP]s).")
    pad, cls, sep = (_special(special_ids, n) for n in ("pad", "cls", "sep"))
    specials = {int(v) for v in special_ids.values()}
    low = max(specials) + 1 if max(specials) + 1 < vocab_size else 0
    rng = np.random.default_rng(seed)
    b, s = per_host_batch_size, seq_len
    pos = np.arange(s)[None, :]
    rows = np.arange(b)
    while True:
        if full_length:
            lengths, split = np.full(b, s), np.full(b, s // 2 + 1)
        else:
            lengths = rng.integers(2, s + 1, size=b)
            # Two segments in about half the rows: a middle [SEP] at split-1, segment 1 from split on.
            two = (rng.random(b) < 0.5) & (lengths >= 4)
            split = np.where(two, rng.integers(2, np.maximum(lengths - 1, 3)), 0)
        ids = rng.integers(low, vocab_size, size=(b, s), dtype=np.int32)
        mask = pos < lengths[:, None]
        segment = (split[:, None] > 0) & (pos >= split[:, None]) & mask
        ids[:, 0] = cls
        ids[rows, lengths - 1] = sep
        has_b = split > 0
        ids[rows[has_b], split[has_b] - 1] = sep
        ids = np.where(mask, ids, pad).astype(np.int32)
        yield {"input_ids": ids, "input_mask": mask.astype(np.int32), "segment_ids": segment.astype(np.int32)}


def to_global_batch(local_batch: Mapping[str, np.ndarray], sharding) -> dict[str, Any]:
    """Assembles each host's local batch into global jax.Arrays laid out by `sharding` (batch axis first)."""
    import jax

    return {name: jax.make_array_from_process_local_data(sharding, np.asarray(value))
            for name, value in local_batch.items()}
