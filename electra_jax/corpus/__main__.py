r"""Builds an English pre-training corpus from Debian packages (downloaded and unpacked, never installed).

    python -m electra_jax.corpus --output_dir=runs/corpus --stats=benchmarks/results/corpus_stats.json

writes runs/corpus/train/train_NN.txt, runs/corpus/heldout/heldout.txt (one sentence per line, a blank line
between documents: what build_vocab and build_data read) and runs/corpus/corpus_stats.json. Packages are
cached under --cache_dir and reused. --list_sources prints the sources; --sources picks some of them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from absl import app, flags

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
FLAGS = flags.FLAGS


def glue_sentences(glue_dir: str | Path) -> Iterator[str]:
    """Every text field of every GLUE TSV under `glue_dir`, whole and split into sentences (the blocklist)."""
    from electra_jax.corpus.sources import read_text
    from electra_jax.corpus.text import split_sentences

    for path in sorted(Path(glue_dir).rglob("*.tsv")):
        for line in read_text(path).splitlines():
            for field in line.split("\t"):
                if len(field.split()) >= 2:
                    yield field
                    yield from split_sentences(field)


def define_flags() -> None:
    """Flags are defined only when run as a program, so importing this module defines none."""
    flags.DEFINE_string("output_dir", None, "Folder for train/, heldout/ and corpus_stats.json.")
    flags.DEFINE_list("sources", ["all"], "Source names to build (see --list_sources), or all.")
    flags.DEFINE_list("exclude_sources", [], "Source names to leave out.")
    flags.DEFINE_string("cache_dir", "~/.cache/electra_jax/debian", "Where downloaded .debs and unpacked "
                        "packages are kept (and reused by the next build).")
    flags.DEFINE_string("stats", "", "Also write the statistics JSON here, e.g. benchmarks/results/corpus_stats.json.")
    flags.DEFINE_string("vocab", str(SHARED_DATA / "bert_vocab" / "uncased" / "vocab.txt"),
                        "Vocabulary that counts WordPiece tokens per source (lower-cased); empty: do not count.")
    flags.DEFINE_string("glue_dir", str(SHARED_DATA / "glue"), "GLUE TSVs whose sentences are removed wherever "
                        "they occur in the corpus; empty: no blocklist.")
    flags.DEFINE_float("heldout_fraction", 0.05, "Fraction of documents held out (chosen by a hash of each "
                       "document's key).")
    flags.DEFINE_integer("min_document_chars", 2000, "Consecutive shorter documents of a source are joined.")
    flags.DEFINE_integer("num_train_files", 16, "Number of train_NN.txt shards.")
    flags.DEFINE_bool("offline", False, "Run no apt or dpkg command: use the packages already unpacked in "
                      "--cache_dir (a cache copied from a machine that built the corpus).")
    flags.DEFINE_bool("list_sources", False, "Print the sources and exit.")
    flags.DEFINE_string("table", "", "Print the Markdown table of a corpus_stats.json (docs/EVIDENCE.md's) and exit.")


def main(argv: Sequence[str]) -> None:
    from electra_jax.corpus.build import BuildOptions, build_corpus, stats_table
    from electra_jax.corpus.debian import DebianFetcher
    from electra_jax.corpus.sources import SOURCES, SOURCES_BY_NAME

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if FLAGS.table:
        print(stats_table(json.loads(Path(FLAGS.table).read_text())), end="")
        return
    if FLAGS.list_sources:
        for source in SOURCES:
            print(f"{source.name:24} {source.kind:13} {source.family:8} Debian package {source.package}")
        return
    if not FLAGS.output_dir:
        raise app.UsageError("--output_dir is required")
    names = [s.name for s in SOURCES] if FLAGS.sources == ["all"] else FLAGS.sources
    unknown = [n for n in names + FLAGS.exclude_sources if n not in SOURCES_BY_NAME]
    if unknown:
        raise app.UsageError(f"--sources/--exclude_sources: unknown {unknown}; --list_sources shows the names")
    if not 0 <= FLAGS.heldout_fraction < 1:
        raise app.UsageError(f"--heldout_fraction must be in [0, 1), got {FLAGS.heldout_fraction}")
    sources = [SOURCES_BY_NAME[n] for n in names if n not in FLAGS.exclude_sources]
    if not sources:
        raise app.UsageError("--sources/--exclude_sources leave no source to build")
    tokenizer = None
    if FLAGS.vocab:
        if not Path(FLAGS.vocab).is_file():
            raise app.UsageError(f"--vocab={FLAGS.vocab} does not exist; pass a vocab.txt, or --vocab= to skip "
                                 "counting tokens")
        from electra_jax.data import tokenizer as make_tokenizer

        tokenizer = make_tokenizer(FLAGS.vocab, lower_case=True)
    blocklist: Iterator[str] | list[str] = []
    if FLAGS.glue_dir:
        if not Path(FLAGS.glue_dir).is_dir():
            raise app.UsageError(f"--glue_dir={FLAGS.glue_dir} does not exist; pass the GLUE folder, or --glue_dir= "
                                 "to build without the blocklist")
        blocklist = glue_sentences(FLAGS.glue_dir)
    options = BuildOptions(heldout_fraction=FLAGS.heldout_fraction, min_document_chars=FLAGS.min_document_chars,
                           num_train_files=FLAGS.num_train_files)
    try:
        fetcher = DebianFetcher(FLAGS.cache_dir, offline=FLAGS.offline)
        stats = build_corpus(FLAGS.output_dir, sources, fetcher, tokenizer=tokenizer, blocklist=blocklist,
                             options=options, command="python -m electra_jax.corpus " + " ".join(sys.argv[1:]))
    except RuntimeError as e:  # a package that cannot be fetched or read: one line, no traceback
        sys.exit(f"corpus: {e}")
    if FLAGS.stats:
        Path(FLAGS.stats).parent.mkdir(parents=True, exist_ok=True)
        Path(FLAGS.stats).write_text((Path(FLAGS.output_dir).expanduser() / "corpus_stats.json").read_text())
    train = stats["totals"]["train"]
    print(f"corpus: {train['documents']:,} training documents, {train['sentences']:,} sentences, "
          f"{train['characters'] / 1e6:.1f} M characters" +
          (f", {train['tokens'] / 1e6:.1f} M WordPiece tokens" if "tokens" in train else "") +
          f" in {Path(FLAGS.output_dir) / 'train'}; held out: {stats['totals']['heldout']['documents']:,} documents "
          f"in {Path(FLAGS.output_dir) / 'heldout'} ({stats['wall_seconds'] / 60:.1f} min)")


if __name__ == "__main__":
    from electra_jax import cli

    define_flags()
    cli.run(main)
