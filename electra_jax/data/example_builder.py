"""Packs sentence-per-line text into ELECTRA pre-training examples, exactly as the original
google-research/electra `build_pretraining_dataset.py` ExampleBuilder does.

Rules (same order of random draws as the original, so a `random.Random(s)` reproduces what the original
does under `random.seed(s)`):
  * each line is a sentence; a blank line ends a document (with blanks_separate_docs) and flushes;
  * an example is emitted when the accumulated length reaches the target length, or at a document end;
  * 10% of examples are single-segment (first segment target 100000), otherwise the first segment target is
    (target_length - 3) // 2 and a sentence joins segment A when A is empty, when it keeps A under the
    target, or (while B is empty and A is under target) on a coin flip;
  * A is truncated to S - 2 and B to max(0, S - len(A) - 3); the overflow is discarded;
  * after each example the next target length is S, or with probability 5% uniform in [5, S];
  * layout `[CLS] A [SEP] B [SEP]`, zero padding, segment ids 1 on `B [SEP]` and 0 elsewhere.

No TensorFlow here: records are serialized as tf.train.Example protobuf bytes by hand (or laid out as numpy rows,
electra_jax.data.numpy_records), so worker processes stay light. `electra_jax.build_data` writes them to shards.
A tokenized corpus (electra_jax.data.token_corpus, NAME.tokens.xz) feeds its stored lines to the same builder.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import hashlib
import os
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from electra_jax.data.token_corpus import is_token_file, token_lines
from electra_jax.data.tokenization import Tokenizer

FEATURE_NAMES = ("input_ids", "input_mask", "segment_ids")


def expand_text_globs(patterns: str | Sequence[str]) -> list[str]:
    """Sorted text files matching comma-separated globs (build_vocab and build_data --input); raises if none."""
    if isinstance(patterns, str):
        patterns = [p for p in patterns.split(",") if p]
    matched = [[f for f in glob.glob(os.path.expanduser(p), recursive=True) if os.path.isfile(f)] for p in patterns]
    files = sorted({f for found in matched for f in found})
    if not files:
        raise ValueError(f"--input={','.join(patterns)} matches no files; pass a glob of text files.")
    empty = [p for p, found in zip(patterns, matched) if not found]
    if empty:  # a typo in one of several globs would silently build from less text
        raise ValueError(f"--input: the pattern {empty[0]!r} of {','.join(patterns)} matches no files (the others "
                         "do); fix it or leave it out")
    return files


def read_text_file(path: str) -> str:
    """Reads a text file as UTF-8, falling back to Latin-1; raises ValueError for binary files."""
    with open(path, "rb") as f:
        data = f.read()
    nul = data.find(b"\x00")
    if nul >= 0:
        raise ValueError(
            f"Input file {path} looks binary (NUL byte at offset {nul}); build_data reads UTF-8 or Latin-1 "
            "text with one sentence per line. Remove it from --input (or pass the right glob).")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # Some corpora (e.g. NLTK state_union) are ISO-8859-1; every byte string decodes as Latin-1.
        return data.decode("latin-1")


def unit_seed(seed: int, index: int) -> int:
    """Seed of the random.Random used for input unit `index` (a file or a TFDS slice), for determinism that
    does not depend on how many processes run."""
    digest = hashlib.sha256(f"electra_jax/{seed}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


@dataclass
class BuilderStats:
    num_examples: int = 0
    num_tokens: int = 0  # real tokens, [CLS]/[SEP] included (sum of input_mask)
    num_single_segment_draws: int = 0  # examples whose first-segment target was 100000
    num_short_target_draws: int = 0  # target lengths drawn uniform in [5, S] instead of S
    num_without_segment_b: int = 0
    num_lines: int = 0  # non-blank input lines (sentences)
    num_input_tokens: int = 0  # tokens of those lines
    num_discarded_tokens: int = 0  # input tokens cut off by the truncation of segments A and B
    num_long_lines: int = 0  # lines longer than an example can hold (max_seq_length - 2): mostly discarded
    num_long_line_tokens: int = 0  # the tokens of those lines
    max_line_tokens: int = 0  # the longest line

    def add(self, other: BuilderStats) -> None:
        for field in dataclasses.fields(self):
            mine, theirs = getattr(self, field.name), getattr(other, field.name)
            setattr(self, field.name, max(mine, theirs) if field.name == "max_line_tokens" else mine + theirs)


class ExampleBuilder:
    """Given a stream of tokenized lines, creates pre-training examples (the original's ExampleBuilder)."""

    def __init__(self, max_length: int, cls_id: int, sep_id: int, rng: random.Random):
        if max_length < 5:
            raise ValueError(f"max_seq_length={max_length} is too small; it must be at least 5.")
        self._max_length = max_length
        self._target_length = max_length
        self._cls_id = cls_id
        self._sep_id = sep_id
        self._rng = rng
        self._current_sentences: list[list[int]] = []
        self._current_length = 0
        self.stats = BuilderStats()

    def add_line(self, is_blank: bool, token_ids: Sequence[int]) -> tuple[list[int], int] | None:
        """Adds one line: `is_blank` for an empty (stripped) line, else its token ids.

        Returns (input_ids without padding, length of `[CLS] A [SEP]`) when an example is complete.
        """
        if is_blank and self._current_length != 0:  # empty lines separate docs
            return self._create_example()
        # As in the original, a blank line at the start of a document adds an empty sentence.
        token_ids = list(token_ids) if not is_blank else []
        if not is_blank:
            self.stats.num_lines += 1
            self.stats.num_input_tokens += len(token_ids)
            self.stats.max_line_tokens = max(self.stats.max_line_tokens, len(token_ids))
            if len(token_ids) > self._max_length - 2:
                self.stats.num_long_lines += 1
                self.stats.num_long_line_tokens += len(token_ids)
        self._current_sentences.append(token_ids)
        self._current_length += len(token_ids)
        if self._current_length >= self._target_length:
            return self._create_example()
        return None

    def _create_example(self) -> tuple[list[int], int]:
        rng = self._rng
        # small chance to only have one segment as in classification tasks
        if rng.random() < 0.1:
            first_segment_target_length = 100000
            self.stats.num_single_segment_draws += 1
        else:
            # -3 due to not yet having [CLS]/[SEP] tokens in the input text
            first_segment_target_length = (self._target_length - 3) // 2

        first_segment: list[int] = []
        second_segment: list[int] = []
        for sentence in self._current_sentences:
            # The original's condition, short-circuit order kept so the coin is drawn only when reached.
            # Note a later short sentence can still join A after an earlier one went to B.
            if (len(first_segment) == 0
                    or len(first_segment) + len(sentence) < first_segment_target_length
                    or (len(second_segment) == 0
                        and len(first_segment) < first_segment_target_length
                        and rng.random() < 0.5)):
                first_segment += sentence
            else:
                second_segment += sentence

        # trim to max_length while accounting for not-yet-added [CLS]/[SEP] tokens
        untrimmed = len(first_segment) + len(second_segment)
        first_segment = first_segment[:self._max_length - 2]
        second_segment = second_segment[:max(0, self._max_length - len(first_segment) - 3)]
        self.stats.num_discarded_tokens += untrimmed - len(first_segment) - len(second_segment)

        self._current_sentences = []
        self._current_length = 0
        # small chance for random-length instead of max_length-length example
        if rng.random() < 0.05:
            self._target_length = rng.randint(5, self._max_length)
            self.stats.num_short_target_draws += 1
        else:
            self._target_length = self._max_length

        input_ids = [self._cls_id] + first_segment + [self._sep_id]
        len_a = len(input_ids)
        if second_segment:
            input_ids += second_segment + [self._sep_id]
        else:
            self.stats.num_without_segment_b += 1
        self.stats.num_examples += 1
        self.stats.num_tokens += len(input_ids)
        return input_ids, len_a


# ---------------------------------------------------------------------------------------------------------
# tf.train.Example serialization without TensorFlow
# ---------------------------------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _length_delimited(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + _varint(len(payload)) + payload


def _int64_feature_entry(name: str, packed_values: bytes) -> bytes:
    int64_list = _length_delimited(0x0A, packed_values)  # Int64List.value, packed
    feature = _length_delimited(0x1A, int64_list)  # Feature.int64_list (field 3)
    entry = _length_delimited(0x0A, name.encode()) + _length_delimited(0x12, feature)  # map key, value
    return _length_delimited(0x0A, entry)  # Features.feature (field 1), one map entry


@functools.lru_cache(maxsize=4)
def _varint_table(size: int) -> list[bytes]:
    # Built once per process and vocabulary size (30k entries take ~50 ms; per file that added up).
    return [_varint(i) for i in range(size)]


class ExampleSerializer:
    """Serializes (input_ids, len_a) into the original record: three int64 features of length S."""

    def __init__(self, max_length: int, vocab_size: int):
        self._max_length = max_length
        self._varints = _varint_table(max(vocab_size, 2))

    def __call__(self, input_ids: Sequence[int], len_a: int) -> bytes:
        s = self._max_length
        n = len(input_ids)
        ids = b"".join([self._varints[i] for i in input_ids]) + b"\x00" * (s - n)
        mask = b"\x01" * n + b"\x00" * (s - n)
        segments = b"\x00" * len_a + b"\x01" * (n - len_a) + b"\x00" * (s - n)
        features = (_int64_feature_entry("input_ids", ids) + _int64_feature_entry("input_mask", mask)
                    + _int64_feature_entry("segment_ids", segments))
        return _length_delimited(0x0A, features)  # Example.features


def pad_example(input_ids: Sequence[int], len_a: int, max_length: int) -> dict[str, list[int]]:
    """The three padded feature lists of one example (for tests and tools)."""
    n = len(input_ids)
    pad = [0] * (max_length - n)
    return {"input_ids": list(input_ids) + pad, "input_mask": [1] * n + pad,
            "segment_ids": [0] * len_a + [1] * (n - len_a) + pad}


# ---------------------------------------------------------------------------------------------------------
# One unit of work (a text file or a TFDS slice), run in a worker process
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildConfig:
    vocab: str
    lower_case: bool
    max_seq_length: int
    blanks_separate_docs: bool
    tokenize_batch_lines: int = 4096
    formats: tuple[str, ...] = ("tfrecord",)  # what process_unit returns: "tfrecord" bytes and/or "numpy" rows
    strip_accents: bool | None = None  # WordPiece; None: exactly when lower_case (the original)


@dataclass(frozen=True)
class Unit:
    """A file path, or a TFDS dataset `name` with `split`, `data_dir`, `text_key` and slice `k` of `n`."""

    index: int
    path: str | None = None
    tfds_name: str | None = None
    tfds_split: str = "train"
    tfds_data_dir: str | None = None
    tfds_text_key: str = "text"
    tfds_slice: tuple[int, int] = (0, 1)

    def describe(self) -> str:
        if self.path is not None:
            return self.path
        k, n = self.tfds_slice
        return f"tfds:{self.tfds_name}:{self.tfds_split} slice {k}/{n}"


_TOKENIZERS: dict[tuple[str, bool, bool | None], Tokenizer] = {}


def _get_tokenizer(vocab: str, lower_case: bool, strip_accents: bool | None = None) -> Tokenizer:
    key = (vocab, lower_case, strip_accents)
    if key not in _TOKENIZERS:
        from electra_jax.data.tokenization import tokenizer

        _TOKENIZERS[key] = tokenizer(vocab, lower_case=lower_case, strip_accents=strip_accents)
    return _TOKENIZERS[key]


def _tfds_lines(unit: Unit) -> Iterator[str]:
    """Lines of one TFDS slice: each example's text split on newlines, then a blank line (document end)."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    for kind in ("GPU", "TPU"):
        try:
            tf.config.set_visible_devices([], kind)
        except (RuntimeError, ValueError):
            pass
    try:  # never reach out to GCS for dataset info: tests and offline machines would hang on retries
        tfds.core.utils.gcs_utils._is_gcs_disabled = True
    except AttributeError:
        pass
    k, n = unit.tfds_slice
    builder = tfds.builder(unit.tfds_name, data_dir=unit.tfds_data_dir)
    split = tfds.even_splits(unit.tfds_split, n=n)[k]
    ds = builder.as_dataset(split=split, shuffle_files=False)
    for example in ds.as_numpy_iterator():
        if unit.tfds_text_key not in example:
            raise ValueError(f"TFDS dataset {unit.tfds_name} has no feature {unit.tfds_text_key!r} "
                             f"(it has {sorted(example)}); pass --tfds_text_key.")
        text = example[unit.tfds_text_key]
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        yield from text.split("\n")
        yield ""


def unit_examples(unit: Unit, config: BuildConfig, seed: int, lines: Iterable[str] | None = None
                  ) -> tuple[Iterator[tuple[list[int], int]], BuilderStats]:
    """(iterator of (input_ids, len_a) for every example of one unit, its statistics filled as it runs).

    Each unit gets a fresh builder seeded by unit_seed(seed, unit.index), so output does not depend on the
    number of processes.
    """
    tok = _get_tokenizer(config.vocab, config.lower_case, config.strip_accents)
    builder = ExampleBuilder(config.max_seq_length, tok.cls_id, tok.sep_id,
                             random.Random(unit_seed(seed, unit.index)))
    if lines is None and unit.path is not None and is_token_file(unit.path):
        def from_tokens() -> Iterator[tuple[list[int], int]]:
            for is_blank, token_ids in token_lines(unit.path):
                if not is_blank or config.blanks_separate_docs:  # the text path's rule, on the stored lines
                    out = builder.add_line(is_blank, token_ids)
                    if out is not None:
                        yield out
            out = builder.add_line(True, ())  # the end of the file flushes, as for text
            if out is not None:
                yield out

        return from_tokens(), builder.stats
    if lines is None:
        lines = read_text_file(unit.path).split("\n") if unit.path is not None else _tfds_lines(unit)

    def flush(chunk: list[str]) -> Iterator[tuple[list[int], int]]:
        texts = [line for line in chunk if line]
        encoded = iter(tok.encode_batch(texts)) if texts else iter(())
        for line in chunk:
            out = builder.add_line(not line, next(encoded) if line else ())
            if out is not None:
                yield out

    def generate() -> Iterator[tuple[list[int], int]]:
        chunk: list[str] = []
        for line in lines:
            # Same as the original ExampleWriter: strip, skip blanks unless they separate documents.
            line = line.strip()
            if line or config.blanks_separate_docs:
                chunk.append(line.replace("\n", " "))
                if len(chunk) >= config.tokenize_batch_lines:
                    yield from flush(chunk)
                    chunk = []
        chunk.append("")  # the original flushes the builder at the end of every file
        yield from flush(chunk)

    return generate(), builder.stats


def process_unit(args: tuple[Unit, BuildConfig, int]) -> tuple[int, dict[str, Any], BuilderStats]:
    """Worker entry point: (unit index, {format: its examples in order}, statistics).

    "tfrecord" gives serialized tf.train.Example bytes, "numpy" a structured array of rows
    (electra_jax.data.numpy_records).
    """
    unit, config, seed = args
    tok = _get_tokenizer(config.vocab, config.lower_case, config.strip_accents)
    examples, stats = unit_examples(unit, config, seed)
    examples = list(examples)
    payloads: dict[str, Any] = {}
    if "tfrecord" in config.formats:
        serialize = ExampleSerializer(config.max_seq_length, tok.vocab_size)
        payloads["tfrecord"] = [serialize(ids, len_a) for ids, len_a in examples]
    if "numpy" in config.formats:
        from electra_jax.data.numpy_records import examples_to_rows, record_dtype

        payloads["numpy"] = examples_to_rows(examples, record_dtype(config.max_seq_length, tok.vocab_size))
    return unit.index, payloads, stats


def worker_init() -> None:
    # One single-threaded tokenizer per process: the processes already use every core.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
