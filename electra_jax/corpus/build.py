"""Builds the corpus: fetch each source's packages, read, deduplicate, join short documents, keep English,
split off the held-out documents, write one sentence per line, and count WordPiece tokens per source.

Output (ELECTRA's text format: one sentence per line, a blank line between documents):
  OUTPUT_DIR/train/train_NN.txt   the training documents, shuffled (seed 0) and dealt round-robin into shards
  OUTPUT_DIR/heldout/heldout.txt  the held-out documents (5% by default), in reading order
  OUTPUT_DIR/corpus_stats.json    per source: package, version, .deb sha256, licence, characters, documents,
                                  sentences and tokens of each split, what deduplication removed
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import platform
import random
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from absl import logging

from electra_jax.corpus.debian import DebianFetcher, copyright_file, licence_summary
from electra_jax.corpus.documents import DedupCounts, Deduplicator, Document, is_held_out, join_short_documents
from electra_jax.corpus.sources import Source, read_source, read_text
from electra_jax.corpus.text import english_share

SPLITS = ("train", "heldout")


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    heldout_fraction: float = 0.05
    min_document_chars: int = 2000  # shorter documents are joined with the ones after them
    min_english_share: float = 0.15  # of a document's words that are English function words
    near_duplicate_share: float = 0.8
    min_dedup_words: int = 4
    num_train_files: int = 16
    seed: int = 0


def _split_stats(documents: Sequence[Document]) -> dict[str, int]:
    return {"documents": len(documents), "sentences": sum(len(d.sentences) for d in documents),
            "characters": sum(d.chars for d in documents)}


def count_tokens(documents: Iterable[Document], tokenizer: Any, batch_size: int = 4096) -> int:
    """WordPiece tokens of every sentence (no special tokens), as build_data will count them."""
    total, batch = 0, []
    for document in documents:
        batch.extend(document.sentences)
        if len(batch) >= batch_size:
            total += sum(len(ids) for ids in tokenizer.encode_batch(batch))
            batch = []
    if batch:
        total += sum(len(ids) for ids in tokenizer.encode_batch(batch))
    return total


def _write_documents(path: Path, documents: Sequence[Document]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", encoding="utf-8") as f:
        for index, document in enumerate(documents):
            if index:
                f.write("\n")
            f.write("\n".join(document.sentences) + "\n")
    partial.replace(path)


def code_version() -> str:
    """The git commit of this checkout ("+dirty" with uncommitted changes to tracked files), or "unknown"."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def build_corpus(output_dir: str | Path, sources: Sequence[Source], fetcher: DebianFetcher, *,
                 tokenizer: Any = None, blocklist: Iterable[str] = (), options: BuildOptions = BuildOptions(),
                 command: str = "") -> dict[str, Any]:
    """Builds the corpus under `output_dir` and returns its statistics (also written to corpus_stats.json).

    `tokenizer` (an electra_jax.data tokenizer) counts WordPiece tokens per source; `blocklist` holds
    sentences that must not appear (GLUE's), removed wherever they occur.
    """
    started = time.time()
    out = Path(output_dir).expanduser()
    deduplicator = Deduplicator(options.near_duplicate_share, options.min_dedup_words)
    blocked = deduplicator.block(blocklist)
    splits: dict[str, list[Document]] = {split: [] for split in SPLITS}
    per_source: list[dict[str, Any]] = []
    for source in sources:
        source_started = time.time()
        packages = {name: fetcher.fetch(name) for name in (source.package, *source.helpers)}
        main = packages[source.package]
        licence_package = packages[source.licence_from or source.package]
        copyright_path = copyright_file(licence_package.root, licence_package.name)
        counts = DedupCounts()
        read = (d for d in read_source(source, {n: p.root for n, p in packages.items()}) if d.sentences)
        kept = (Document(d.key, sentences) for d in read if (sentences := deduplicator.filter(d.sentences, counts)))
        source_splits: dict[str, list[Document]] = {split: [] for split in SPLITS}
        not_english = 0
        for document in join_short_documents(kept, options.min_document_chars):
            if english_share(" ".join(document.sentences)) < options.min_english_share:
                not_english += 1
                continue
            split = "heldout" if is_held_out(document.key, options.heldout_fraction) else "train"
            source_splits[split].append(document)
        entry: dict[str, Any] = {
            "name": source.name, "kind": source.kind, "markup": source.family, "package": main.name,
            "version": main.version, "deb_sha256": main.sha256,
            "helpers": {p.name: p.version for n, p in packages.items() if n != source.package},
            "licence": licence_summary(read_text(copyright_path)) if copyright_path else "unknown (no copyright file)",
            "copyright_file": f"{licence_package.name}:/{copyright_path.relative_to(licence_package.root)}"
                              if copyright_path else "",
            "removed": {"documents_read": counts.documents, "duplicate_documents": counts.duplicate_documents,
                        "near_duplicate_documents": counts.near_duplicate_documents,
                        "duplicate_sentences": counts.duplicate_sentences,
                        "glue_sentences": counts.blocked_sentences, "not_english_documents": not_english},
        }
        for split in SPLITS:
            entry[split] = _split_stats(source_splits[split])
            if tokenizer is not None:
                entry[split]["tokens"] = count_tokens(source_splits[split], tokenizer)
            splits[split].extend(source_splits[split])
        entry["seconds"] = round(time.time() - source_started, 1)
        per_source.append(entry)
        logging.info("corpus: %s %s: %s train, %s held-out documents, %.2f M characters, %s tokens (%.0f s)",
                     main.name, main.version, entry["train"]["documents"], entry["heldout"]["documents"],
                     (entry["train"]["characters"] + entry["heldout"]["characters"]) / 1e6,
                     entry["train"].get("tokens", "?"), entry["seconds"])

    random.Random(options.seed).shuffle(splits["train"])
    shards = max(1, min(options.num_train_files, len(splits["train"])))
    for shard in range(shards):
        _write_documents(out / "train" / f"train_{shard:02d}.txt", splits["train"][shard::shards])
    _write_documents(out / "heldout" / "heldout.txt", splits["heldout"])

    totals = {split: {key: sum(entry[split][key] for entry in per_source) for key in per_source[0][split]}
              for split in SPLITS} if per_source else {}
    stats = {
        "command": command, "date": datetime.date.today().isoformat(), "commit": code_version(),
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.platform()}",
        "wall_seconds": round(time.time() - started, 1),
        "tokenizer": _tokenizer_description(tokenizer), "glue_sentences_blocked": blocked,
        "options": dataclasses.asdict(options), "files": {"train": f"train/train_00..{shards - 1:02d}.txt",
                                                          "heldout": "heldout/heldout.txt"},
        "totals": totals, "sources": per_source,
    }
    (out / "corpus_stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats


def stats_table(stats: dict[str, Any]) -> str:
    """The per-source statistics as a Markdown table (docs/EVIDENCE.md's)."""
    lines = ["| source | Debian package (version) | licence | kind, markup | train documents | train sentences | "
             "train characters | train tokens | held-out documents | held-out tokens |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    rows = [*stats["sources"], {"name": "**total**", "train": stats["totals"]["train"],
                                "heldout": stats["totals"]["heldout"]}]
    for entry in rows:
        train, heldout = entry["train"], entry["heldout"]
        package = f"{entry['package']} ({entry['version']})" if "package" in entry else ""
        kind = f"{entry['kind']}, {entry['markup']}" if "kind" in entry else ""
        lines.append(f"| {entry['name']} | {package} | {entry.get('licence', '')} | {kind} | {train['documents']:,} | "
                     f"{train['sentences']:,} | {train['characters']:,} | {train.get('tokens', 0):,} | "
                     f"{heldout['documents']:,} | {heldout.get('tokens', 0):,} |")
    return "\n".join(lines) + "\n"


def _tokenizer_description(tokenizer: Any) -> str:
    if tokenizer is None:
        return "none (tokens not counted)"
    path = Path(getattr(tokenizer, "path", ""))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else "?"
    return f"{getattr(tokenizer, 'kind', '?')} {path.name} ({tokenizer.vocab_size} entries, sha256 {digest}...), " \
           f"lower_case={getattr(tokenizer, 'lower_case', '?')}"
