r"""Tokenizes sentence-per-line text and packs it into ELECTRA pre-training examples.

  python -m electra_jax.build_data --input='corpus/**/*.txt' --vocab=vocab.txt \
      --output_dir=data/pretrain_128 --max_seq_length=128
  python -m electra_jax.build_data --tfds=wikipedia/20230601.en:train --tfds_data_dir=~/tensorflow_datasets \
      --vocab=vocab.txt --output_dir=data/wiki_512 --max_seq_length=512
  python -m electra_jax.build_data --input='corpus_tokens/*.tokens.xz' --vocab=vocab.txt --format=numpy ...

Writes `DIR/metadata.json` and, by --format, `DIR/pretrain_data.tfrecord-{i}-of-{n}` (int64 `input_ids`,
`input_mask`, `segment_ids` of length S: the original ELECTRA record format; needs TensorFlow) and/or
`DIR/pretrain_data-{i}-of-{n}.npy` (memory-mapped numpy rows, read without TensorFlow: electra_jax/data/
numpy_records.py; `pretrain --config.data.format=numpy`). Examples are packed exactly like the original
build_pretraining_dataset.py (see electra_jax/data/example_builder.py). Input files are processed in parallel, one
file per task; the output depends only on the inputs, the vocabulary, S and --seed (not on --num_processes): every
file gets its own seeded builder, files are visited in a seeded shuffled order and examples go round-robin to the
shards in that order. `*.tokens.xz` inputs (electra_jax/data/token_corpus.py) are read as already-tokenized lines
and give the same examples as their text.

Safe reruns: every argument is checked before anything is written, and the new shards and metadata are written
under DIR/.build_data.partial/ and moved into DIR only once complete (old shards and metadata.json are removed at
that moment), with DIR/build_data.incomplete present during the move: a failed or interrupted build leaves either
the old records untouched or a folder the readers refuse with a message to rerun.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import multiprocessing
import os
import random
import shutil
import time
from collections.abc import Sequence
from typing import Any

from absl import app, flags, logging

from electra_jax.data.example_builder import (BuildConfig, BuilderStats, Unit, expand_text_globs, process_unit,
                                             worker_init)
from electra_jax.data.numpy_records import SHARD_GLOB as NUMPY_SHARD_GLOB
from electra_jax.data.numpy_records import SHARD_PATTERN as NUMPY_SHARD_PATTERN
from electra_jax.data.numpy_records import NumpyShardWriter, record_dtype
from electra_jax.data.pipeline import INCOMPLETE_MARKER
from electra_jax.data.token_corpus import check_vocab, is_token_file
from electra_jax.data.tokenization import vocab_digests, vocab_sha256

FLAGS = flags.FLAGS

SHARD_PATTERN = "pretrain_data.tfrecord-{i}-of-{n}"
FORMATS = {"tfrecord": ("tfrecord",), "numpy": ("numpy",), "both": ("tfrecord", "numpy")}
FORMAT_DESCRIPTIONS = {
    "tfrecord": "electra pretraining tfrecords (int64 input_ids, input_mask, segment_ids)",
    "numpy": "electra_jax numpy records (structured rows: input_ids, length, len_a)",
}
MIN_SEQ_LENGTH = 8  # what pretrain accepts (electra_jax.config.finalize: data.max_seq_length >= 8)
STAGING_DIR = ".build_data.partial"
LONG_LINE_WARNING_SHARE = 0.05  # warn when lines too long for an example hold more than this share of a file


@dataclasses.dataclass
class _Plan:
    """Everything validate_arguments resolved, before any file is written."""

    units: list[Unit]
    sources: list[str]
    config: BuildConfig
    tokenizer: Any
    formats: tuple[str, ...]
    num_processes: int


def _check_output_dir(output_dir: str) -> None:
    path = os.path.abspath(os.path.expanduser(output_dir))
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"--output_dir={output_dir} is a file, not a folder; pass a folder for the records.")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"--output_dir={output_dir}: {existing} is not writable; pass a folder you can write to.")


def validate_arguments(*, vocab: str, output_dir: str, max_seq_length: int, input, tfds, tfds_data_dir,
                       tfds_text_key: str, tfds_num_splits: int, num_shards: int, num_processes: int, seed: int,
                       lower_case: bool, blanks_separate_docs: bool, format: str,  # noqa: A002
                       strip_accents: bool | None = None) -> _Plan:
    """Checks every argument and resolves the inputs; writes nothing. Raises ValueError naming the flag."""
    from electra_jax.data.tokenization import tokenizer

    if format not in FORMATS:
        raise ValueError(f"--format={format!r}: choose one of {list(FORMATS)}.")
    formats = FORMATS[format]
    if (input is None) == (tfds is None):
        raise ValueError("Pass exactly one of --input (text files) or --tfds (a TFDS dataset).")
    if not isinstance(max_seq_length, int) or max_seq_length < MIN_SEQ_LENGTH:
        raise ValueError(f"--max_seq_length={max_seq_length} must be an integer >= {MIN_SEQ_LENGTH}, the shortest "
                         "sequence pretrain accepts (config.data.max_seq_length); ELECTRA uses 128 or 512.")
    if "numpy" in formats:
        record_dtype(max_seq_length, 1)  # raises for lengths the numpy rows cannot hold
    if num_shards < 1:
        raise ValueError(f"--num_shards={num_shards} must be at least 1.")
    if num_processes < 0:
        raise ValueError(f"--num_processes={num_processes} must be >= 0 (0 = all cores).")
    if tfds is not None and tfds_num_splits < 1:
        raise ValueError(f"--tfds_num_splits={tfds_num_splits} must be at least 1.")
    if not vocab or not os.path.isfile(vocab):
        raise ValueError(f"--vocab={vocab}: no such file; pass a WordPiece vocab.txt or a SentencePiece .model.")
    # Fails here on a vocabulary without the special tokens (or strip_accents=True for a SentencePiece model).
    tok = tokenizer(vocab, lower_case=lower_case, strip_accents=strip_accents)
    _check_output_dir(output_dir)
    if "tfrecord" in formats:
        try:
            import tensorflow  # noqa: F401 - only the TFRecord writer needs it
        except ImportError as e:
            raise ValueError(f"--format={format} writes TFRecords, which needs TensorFlow ({e}); install "
                             "tensorflow-cpu or pass --format=numpy (read with config.data.format=numpy).") from e

    if input is not None:
        files = expand_text_globs(input)
        digests = vocab_digests(vocab)
        for path in files:
            if is_token_file(path):
                check_vocab(path, digests, lower_case, tok.strip_accents if tok.kind == "wordpiece" else None)
        units = [Unit(index=i, path=os.path.abspath(f)) for i, f in enumerate(files)]
        sources = files
    else:
        name, _, split = tfds.partition(":")
        if not tfds_data_dir:
            raise ValueError("--tfds needs --tfds_data_dir: the dataset is read locally, never downloaded.")
        if not os.path.isdir(os.path.expanduser(tfds_data_dir)):
            raise ValueError(f"--tfds_data_dir={tfds_data_dir} is not a folder; pass the TFDS data_dir that holds "
                             f"the prepared {name}.")
        units = [Unit(index=k, tfds_name=name, tfds_split=split or "train", tfds_data_dir=tfds_data_dir,
                      tfds_text_key=tfds_text_key, tfds_slice=(k, tfds_num_splits))
                 for k in range(tfds_num_splits)]
        sources = [f"tfds:{name}:{split or 'train'}"]
    # Visit units in a seeded shuffled order, as the original shuffles each job's file list.
    order = list(range(len(units)))
    random.Random(seed).shuffle(order)
    units = [units[i] for i in order]
    config = BuildConfig(vocab=os.path.abspath(vocab), lower_case=lower_case, max_seq_length=max_seq_length,
                         blanks_separate_docs=blanks_separate_docs, formats=formats, strip_accents=strip_accents)
    num_processes = max(1, min(num_processes or os.cpu_count() or 1, len(units)))
    return _Plan(units, sources, config, tok, formats, num_processes)


class _ShardWriters:
    """The shards of every requested format, in the staging folder; examples dealt round-robin."""

    def __init__(self, staging: str, formats: tuple[str, ...], num_shards: int, seq_len: int, vocab_size: int):
        self.num_shards = num_shards
        self.names: dict[str, list[str]] = {}
        self.counts = [0] * num_shards
        self.written = 0
        self._tfrecord = []
        self._numpy = []
        if "tfrecord" in formats:
            import tensorflow as tf

            self.names["tfrecord"] = [SHARD_PATTERN.format(i=i, n=num_shards) for i in range(num_shards)]
            self._tfrecord = [tf.io.TFRecordWriter(os.path.join(staging, n)) for n in self.names["tfrecord"]]
        if "numpy" in formats:
            dtype = record_dtype(seq_len, vocab_size)
            self.names["numpy"] = [NUMPY_SHARD_PATTERN.format(i=i, n=num_shards) for i in range(num_shards)]
            self._numpy = [NumpyShardWriter(os.path.join(staging, n), dtype) for n in self.names["numpy"]]

    def write(self, payloads: dict[str, Any]) -> None:
        count = len(next(iter(payloads.values())))
        for offset, record in enumerate(payloads.get("tfrecord", ())):
            self._tfrecord[(self.written + offset) % self.num_shards].write(record)
        if "numpy" in payloads:
            rows = payloads["numpy"]
            for shard, writer in enumerate(self._numpy):
                writer.write(rows[(shard - self.written) % self.num_shards::self.num_shards])
        for offset in range(count):
            self.counts[(self.written + offset) % self.num_shards] += 1
        self.written += count

    def close(self) -> None:
        for writer in self._tfrecord:
            writer.close()
        for writer in self._numpy:
            writer.close()


def _stale_files(output_dir: str) -> list[str]:
    """Records and metadata of an earlier build in output_dir (any --num_shards, either format)."""
    patterns = ("pretrain_data.tfrecord-*", NUMPY_SHARD_GLOB)
    return sorted({f for p in patterns for f in glob.glob(os.path.join(output_dir, p))})


def _commit(staging: str, output_dir: str, new_files: list[str]) -> None:
    """Replaces the old records by the staged ones; the marker covers the moment both are partly present."""
    marker = os.path.join(output_dir, INCOMPLETE_MARKER)
    with open(marker, "w") as f:
        f.write("build_data is replacing the records in this folder; if this file stays, that run was interrupted: "
                "rerun it.\n")
    old_metadata = os.path.join(output_dir, "metadata.json")
    if os.path.exists(old_metadata):
        os.remove(old_metadata)
    for stale in _stale_files(output_dir):
        os.remove(stale)
    for name in new_files:
        os.replace(os.path.join(staging, name), os.path.join(output_dir, name))
    os.replace(os.path.join(staging, "metadata.json"), old_metadata)
    os.remove(marker)
    shutil.rmtree(staging, ignore_errors=True)


def discarded_text_warnings(per_unit: list[tuple[str, BuilderStats]], max_seq_length: int) -> list[str]:
    """What a user should hear about text that reaches no example: empty inputs, and lines too long for one.

    (Packing itself truncates some tokens everywhere: an example takes whole lines until it reaches its target
    length and cuts the overshoot of the last one, as the original does; metadata.json counts those as
    num_discarded_tokens. Lines longer than an example lose most of their tokens, which is a sign of text that is
    not one sentence per line.)
    """
    warnings = []
    empty = [source for source, stats in per_unit if stats.num_lines == 0]
    if empty:
        warnings.append(f"{len(empty)} input(s) hold no text (empty or only blank lines), so no examples come "
                        f"from them: {', '.join(empty[:5])}{' ...' if len(empty) > 5 else ''}")
    long = sorted(((stats.num_long_line_tokens / stats.num_input_tokens, source, stats) for source, stats in per_unit
                   if stats.num_long_line_tokens > LONG_LINE_WARNING_SHARE * stats.num_input_tokens > 0), reverse=True)
    if long:
        share, source, stats = long[0]
        warnings.append(
            f"{len(long)} input(s) hold more than {100 * LONG_LINE_WARNING_SHARE:.0f}% of their tokens in lines longer "
            f"than an example ({max_seq_length - 2} tokens), which lose everything past that: most of all {source} "
            f"({stats.num_long_lines:,} of its {stats.num_lines:,} line(s), {100 * share:.1f}% of its "
            f"{stats.num_input_tokens:,} tokens; the longest line {stats.max_line_tokens:,} tokens, "
            f"{stats.num_discarded_tokens:,} tokens discarded). build_data expects one sentence per line: split long "
            "lines into sentences first")
    return warnings


def build_pretraining_data(
    *,
    vocab: str,
    output_dir: str,
    max_seq_length: int = 128,
    input: str | Sequence[str] | None = None,  # noqa: A002 - mirrors the --input flag
    tfds: str | None = None,
    tfds_data_dir: str | None = None,
    tfds_text_key: str = "text",
    tfds_num_splits: int = 16,
    num_shards: int = 128,
    num_processes: int = 0,
    seed: int = 0,
    lower_case: bool = True,
    blanks_separate_docs: bool = True,
    progress: bool = True,
    format: str = "tfrecord",  # noqa: A002 - mirrors the --format flag
    allow_empty: bool = False,
    strip_accents: bool | None = None,
) -> dict:
    """Builds the shards and metadata.json; returns the metadata dict. Input that makes no examples is an error
    unless `allow_empty` (a held-out split that may turn out empty: its metadata then says 0 examples)."""
    from tqdm import tqdm

    plan = validate_arguments(
        vocab=vocab, output_dir=output_dir, max_seq_length=max_seq_length, input=input, tfds=tfds,
        tfds_data_dir=tfds_data_dir, tfds_text_key=tfds_text_key, tfds_num_splits=tfds_num_splits,
        num_shards=num_shards, num_processes=num_processes, seed=seed, lower_case=lower_case,
        blanks_separate_docs=blanks_separate_docs, format=format, strip_accents=strip_accents)
    tok = plan.tokenizer
    output_dir = os.path.expanduser(output_dir)
    staging = os.path.join(output_dir, STAGING_DIR)
    os.makedirs(output_dir, exist_ok=True)
    shutil.rmtree(staging, ignore_errors=True)  # what an interrupted earlier run left
    os.makedirs(staging)
    try:
        writers = _ShardWriters(staging, plan.formats, num_shards, max_seq_length, tok.vocab_size)
        stats = BuilderStats()
        per_unit: list[tuple[str, BuilderStats]] = []
        start = time.time()
        tasks = [(u, plan.config, seed) for u in plan.units]
        bar = tqdm(total=len(plan.units), unit="file" if input is not None else "slice", disable=not progress,
                   desc="build_data")
        pool = None
        try:
            if plan.num_processes == 1:
                results = map(process_unit, tasks)
            else:
                # spawn, not fork: the parent may have TensorFlow's threads running.
                pool = multiprocessing.get_context("spawn").Pool(plan.num_processes, initializer=worker_init)
                results = pool.imap(process_unit, tasks)  # ordered, so output is deterministic
            units = {u.index: u for u in plan.units}
            for index, payloads, unit_stats in results:
                writers.write(payloads)
                stats.add(unit_stats)
                per_unit.append((units[index].describe(), unit_stats))
                bar.update(1)
                bar.set_postfix(examples=stats.num_examples,
                                tok_per_s=f"{stats.num_tokens / max(time.time() - start, 1e-9):.0f}")
        finally:
            bar.close()
            if pool is not None:
                pool.terminate()
            writers.close()
        elapsed = time.time() - start
        warnings = discarded_text_warnings(per_unit, max_seq_length)
        logging.info("build_data: packing discarded %d of %d input tokens (%.2f%%)", stats.num_discarded_tokens,
                     stats.num_input_tokens, 100 * stats.num_discarded_tokens / max(stats.num_input_tokens, 1))
        for warning in warnings:
            logging.warning("build_data: %s", warning)
        if stats.num_examples == 0 and not allow_empty:  # fail here, not at pre-training's first read
            what = "--input (one sentence per line, blank lines between documents)" if input is not None else (
                f"--tfds={tfds} and --tfds_text_key={tfds_text_key}")
            raise ValueError(f"build_data made no examples from {len(plan.sources)} input(s) "
                             f"({stats.num_input_tokens} tokens): {'; '.join(warnings) or 'the input holds no text'}. "
                             f"Check {what}, or pass --allow_empty; nothing was written to {output_dir}")
        shard_lists = {kind: [{"file": n, "num_examples": c} for n, c in zip(names, writers.counts)]
                       for kind, names in writers.names.items()}
        metadata = {
            "format": " + ".join(FORMAT_DESCRIPTIONS[kind] for kind in plan.formats),
            "formats": list(plan.formats),
            "vocab": os.path.abspath(vocab),
            "vocab_sha256": vocab_sha256(vocab),  # of the tokens, as a vocab.txt holds them
            "vocab_kind": tok.kind,
            "vocab_size": tok.vocab_size,
            "lower_case": lower_case,
            "strip_accents": strip_accents,  # None: exactly when lower_case (the original)
            "special_ids": tok.special_ids,
            "max_seq_length": max_seq_length,
            **{field.name: getattr(stats, field.name) for field in dataclasses.fields(stats)},
            "seed": seed,
            "blanks_separate_docs": blanks_separate_docs,
            "sources": [os.path.abspath(s) if not s.startswith("tfds:") else s for s in plan.sources],
            "shards": shard_lists[plan.formats[0]],
            **({"numpy_shards": shard_lists["numpy"]} if len(plan.formats) > 1 else {}),
            "warnings": warnings,
            "build_seconds": round(elapsed, 3),
            "tokens_per_second": round(stats.num_tokens / max(elapsed, 1e-9), 1),
            "num_processes": plan.num_processes,
        }
        with open(os.path.join(staging, "metadata.json"), "w") as f:
            json.dump(metadata, f, indent=2)
        _commit(staging, output_dir, [n for names in writers.names.values() for n in names])
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # the old records, if any, were not touched
        raise
    return metadata


def define_flags() -> None:
    """Defines the command-line flags (only when run as a program, so the tools can be imported together)."""
    flags.DEFINE_string("input", None, "Glob (or comma-separated globs) of text files: one sentence per line, "
                        "blank lines between documents; or of tokenized NAME.tokens.xz files "
                        "(electra_jax.data.token_corpus).")
    flags.DEFINE_string("tfds", None, "TFDS dataset NAME[:SPLIT] (default split train) read from --tfds_data_dir "
                        "without downloading; each example's text is one document.")
    flags.DEFINE_string("tfds_data_dir", None, "Local TFDS data_dir holding the prepared dataset.")
    flags.DEFINE_string("tfds_text_key", "text", "TFDS feature holding the document text.")
    flags.DEFINE_integer("tfds_num_splits", 16,
                         "TFDS: the split is read as this many even slices (the parallel work units).")
    flags.DEFINE_string("vocab", None, "WordPiece vocab.txt or SentencePiece .model.")
    flags.DEFINE_string("output_dir", None, "Where to write the shards and metadata.json.")
    flags.DEFINE_integer("max_seq_length", 128, f"Tokens per example (S), at least {MIN_SEQ_LENGTH}.")
    flags.DEFINE_integer("num_shards", 128, "Number of output shards (per format).")
    flags.DEFINE_integer("num_processes", 0, "Worker processes (0 = all cores).")
    flags.DEFINE_integer("seed", 0, "Seed of the packing randomness and the file order.")
    flags.DEFINE_bool("lower_case", True, "Lower-case when tokenizing (accents: see --strip_accents).")
    flags.DEFINE_bool("strip_accents", None, "WordPiece: strip accents; unset (the original) strips exactly when "
                      "--lower_case. --nostrip_accents keeps them in lower-cased text, as some published uncased "
                      "models do.")
    flags.DEFINE_bool("blanks_separate_docs", True, "Blank lines end documents (else they are skipped).")
    flags.DEFINE_enum("format", "tfrecord", list(FORMATS), "tfrecord: the original ELECTRA TFRecords (needs "
                      "TensorFlow); numpy: memory-mapped .npy shards read without TensorFlow "
                      "(pretrain --config.data.format=numpy); both.")
    flags.DEFINE_bool("allow_empty", False, "Write zero examples without failing (a held-out split that may be "
                      "empty); by default input that makes no examples is an error.")


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.vocab or not FLAGS.output_dir:
        raise app.UsageError("--vocab and --output_dir are required.")
    meta = build_pretraining_data(
        vocab=FLAGS.vocab, output_dir=FLAGS.output_dir, max_seq_length=FLAGS.max_seq_length,
        input=FLAGS.input, tfds=FLAGS.tfds, tfds_data_dir=FLAGS.tfds_data_dir,
        tfds_text_key=FLAGS.tfds_text_key, tfds_num_splits=FLAGS.tfds_num_splits,
        num_shards=FLAGS.num_shards, num_processes=FLAGS.num_processes, seed=FLAGS.seed,
        lower_case=FLAGS.lower_case, blanks_separate_docs=FLAGS.blanks_separate_docs, format=FLAGS.format,
        allow_empty=FLAGS.allow_empty, strip_accents=FLAGS.strip_accents)
    logging.info("Wrote %d examples (%d tokens) to %d shards in %s (%.0f tokens/s)", meta["num_examples"],
                 meta["num_tokens"], len(meta["shards"]), FLAGS.output_dir, meta["tokens_per_second"])
    print(json.dumps({k: meta[k] for k in ("num_examples", "num_tokens", "num_discarded_tokens", "build_seconds",
                                           "tokens_per_second", "warnings")}))


if __name__ == "__main__":
    from electra_jax import cli

    define_flags()
    cli.run(main)
