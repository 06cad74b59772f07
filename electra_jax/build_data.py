r"""Tokenizes sentence-per-line text and packs it into ELECTRA pre-training TFRecords.

  python -m electra_jax.build_data --input='corpus/**/*.txt' --vocab=vocab.txt \
      --output_dir=data/pretrain_128 --max_seq_length=128
  python -m electra_jax.build_data --tfds=wikipedia/20230601.en:train --tfds_data_dir=~/tensorflow_datasets \
      --vocab=vocab.txt --output_dir=data/wiki_512 --max_seq_length=512

Writes `DIR/pretrain_data.tfrecord-{i}-of-{n}` (int64 `input_ids`, `input_mask`, `segment_ids` of length S:
the original ELECTRA record format) and `DIR/metadata.json`. Examples are packed exactly like the original
build_pretraining_dataset.py (see electra_jax/data/example_builder.py). Input files are processed in
parallel, one file per task; the output depends only on the inputs, the vocabulary, S and --seed (not on
--num_processes): every file gets its own seeded builder, files are visited in a seeded shuffled order and
examples go round-robin to the shards in that order.
"""

from __future__ import annotations

import glob
import hashlib
import json
import multiprocessing
import os
import random
import time
from collections.abc import Sequence

from absl import app, flags, logging

from electra_jax.data.example_builder import (BuildConfig, BuilderStats, Unit, expand_text_globs, process_unit,
                                             worker_init)

FLAGS = flags.FLAGS

SHARD_PATTERN = "pretrain_data.tfrecord-{i}-of-{n}"


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
) -> dict:
    """Builds the TFRecords and metadata.json; returns the metadata dict."""
    from tqdm import tqdm

    from electra_jax.data.tokenization import tokenizer

    if (input is None) == (tfds is None):
        raise ValueError("Pass exactly one of --input (text files) or --tfds (a TFDS dataset).")
    if num_shards < 1:
        raise ValueError(f"--num_shards={num_shards} must be at least 1.")
    tok = tokenizer(vocab, lower_case=lower_case)  # fails early on a bad vocabulary
    config = BuildConfig(vocab=os.path.abspath(vocab), lower_case=lower_case, max_seq_length=max_seq_length,
                         blanks_separate_docs=blanks_separate_docs)

    if input is not None:
        files = expand_text_globs(input)
        units = [Unit(index=i, path=os.path.abspath(f)) for i, f in enumerate(files)]
        sources = files
    else:
        name, _, split = tfds.partition(":")
        if not tfds_data_dir:
            raise ValueError("--tfds needs --tfds_data_dir: the dataset is read locally, never downloaded.")
        units = [Unit(index=k, tfds_name=name, tfds_split=split or "train", tfds_data_dir=tfds_data_dir,
                      tfds_text_key=tfds_text_key, tfds_slice=(k, tfds_num_splits))
                 for k in range(tfds_num_splits)]
        sources = [f"tfds:{name}:{split or 'train'}"]
    # Visit units in a seeded shuffled order, as the original shuffles each job's file list.
    order = list(range(len(units)))
    random.Random(seed).shuffle(order)
    units = [units[i] for i in order]

    import tensorflow as tf  # only the writer needs TensorFlow; workers never import it for text input

    os.makedirs(output_dir, exist_ok=True)
    for stale in glob.glob(os.path.join(output_dir, "pretrain_data.tfrecord-*")):
        os.remove(stale)  # a previous run with another --num_shards would otherwise mix in
    shard_names = [SHARD_PATTERN.format(i=i, n=num_shards) for i in range(num_shards)]
    writers = [tf.io.TFRecordWriter(os.path.join(output_dir, n)) for n in shard_names]
    shard_counts = [0] * num_shards

    num_processes = num_processes or os.cpu_count() or 1
    num_processes = max(1, min(num_processes, len(units)))
    stats = BuilderStats()
    start = time.time()
    tasks = [(u, config, seed) for u in units]
    bar = tqdm(total=len(units), unit="file" if input is not None else "slice", disable=not progress,
               desc="build_data")
    pool = None
    try:
        if num_processes == 1:
            results = map(process_unit, tasks)
        else:
            # spawn, not fork: the parent has TensorFlow's threads running.
            pool = multiprocessing.get_context("spawn").Pool(num_processes, initializer=worker_init)
            results = pool.imap(process_unit, tasks)  # ordered, so output is deterministic
        written = 0
        for _, records, unit_stats in results:
            for record in records:
                shard = written % num_shards
                writers[shard].write(record)
                shard_counts[shard] += 1
                written += 1
            stats.add(unit_stats)
            bar.update(1)
            bar.set_postfix(examples=stats.num_examples,
                            tok_per_s=f"{stats.num_tokens / max(time.time() - start, 1e-9):.0f}")
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
        for w in writers:
            w.close()
    elapsed = time.time() - start

    metadata = {
        "format": "electra pretraining tfrecords (int64 input_ids, input_mask, segment_ids)",
        "vocab": os.path.abspath(vocab),
        "vocab_sha256": _sha256(vocab),
        "vocab_kind": tok.kind,
        "vocab_size": tok.vocab_size,
        "lower_case": lower_case,
        "special_ids": tok.special_ids,
        "max_seq_length": max_seq_length,
        "num_examples": stats.num_examples,
        "num_tokens": stats.num_tokens,
        "num_single_segment_draws": stats.num_single_segment_draws,
        "num_short_target_draws": stats.num_short_target_draws,
        "num_without_segment_b": stats.num_without_segment_b,
        "seed": seed,
        "blanks_separate_docs": blanks_separate_docs,
        "sources": [os.path.abspath(s) if not s.startswith("tfds:") else s for s in sources],
        "shards": [{"file": n, "num_examples": c} for n, c in zip(shard_names, shard_counts)],
        "build_seconds": round(elapsed, 3),
        "tokens_per_second": round(stats.num_tokens / max(elapsed, 1e-9), 1),
        "num_processes": num_processes,
    }
    with open(os.path.join(output_dir, "metadata.json"), "w") as f:
        json.dump(metadata, f, indent=2)
    return metadata


def define_flags() -> None:
    """Defines the command-line flags (only when run as a program, so the tools can be imported together)."""
    flags.DEFINE_string("input", None, "Glob (or comma-separated globs) of text files: one sentence per line, "
                        "blank lines between documents.")
    flags.DEFINE_string("tfds", None, "TFDS dataset NAME[:SPLIT] (default split train) read from --tfds_data_dir "
                        "without downloading; each example's text is one document.")
    flags.DEFINE_string("tfds_data_dir", None, "Local TFDS data_dir holding the prepared dataset.")
    flags.DEFINE_string("tfds_text_key", "text", "TFDS feature holding the document text.")
    flags.DEFINE_integer("tfds_num_splits", 16,
                         "TFDS: the split is read as this many even slices (the parallel work units).")
    flags.DEFINE_string("vocab", None, "WordPiece vocab.txt or SentencePiece .model.")
    flags.DEFINE_string("output_dir", None, "Where to write the TFRecords and metadata.json.")
    flags.DEFINE_integer("max_seq_length", 128, "Tokens per example (S).")
    flags.DEFINE_integer("num_shards", 128, "Number of output TFRecord files.")
    flags.DEFINE_integer("num_processes", 0, "Worker processes (0 = all cores).")
    flags.DEFINE_integer("seed", 0, "Seed of the packing randomness and the file order.")
    flags.DEFINE_bool("lower_case", True, "Lower-case (and strip accents) when tokenizing.")
    flags.DEFINE_bool("blanks_separate_docs", True, "Blank lines end documents (else they are skipped).")


def main(argv: Sequence[str]) -> None:
    del argv
    if not FLAGS.vocab or not FLAGS.output_dir:
        raise app.UsageError("--vocab and --output_dir are required.")
    meta = build_pretraining_data(
        vocab=FLAGS.vocab, output_dir=FLAGS.output_dir, max_seq_length=FLAGS.max_seq_length,
        input=FLAGS.input, tfds=FLAGS.tfds, tfds_data_dir=FLAGS.tfds_data_dir,
        tfds_text_key=FLAGS.tfds_text_key, tfds_num_splits=FLAGS.tfds_num_splits,
        num_shards=FLAGS.num_shards, num_processes=FLAGS.num_processes, seed=FLAGS.seed,
        lower_case=FLAGS.lower_case, blanks_separate_docs=FLAGS.blanks_separate_docs)
    logging.info("Wrote %d examples (%d tokens) to %d shards in %s (%.0f tokens/s)", meta["num_examples"],
                 meta["num_tokens"], len(meta["shards"]), FLAGS.output_dir, meta["tokens_per_second"])
    print(json.dumps({k: meta[k] for k in ("num_examples", "num_tokens", "build_seconds",
                                           "tokens_per_second")}))


if __name__ == "__main__":
    from electra_jax import cli

    define_flags()
    cli.run(main)
