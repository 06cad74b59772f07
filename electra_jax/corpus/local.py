"""A corpus from local folders: text files (WikiText articles, plain text) plus the Python documentation's reST.

The CPU experiment's corpus (`compute_efficiency`'s first stage), moved here unchanged: `write_corpus` reads
every source, shuffles the documents with seed 0, holds out every 20th and writes train_XX.txt and eval.txt.
`python -m electra_jax.corpus` builds the larger corpus from Debian packages.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from absl import logging

from electra_jax.corpus.rst import rst_to_sentences
from electra_jax.corpus.text import text_documents

EVAL_EVERY_NTH_DOCUMENT = 20  # held-out documents for the pre-training eval records
SKIP_TEXT_FILES = {"provenance.md", "readme", "readme.md", "readme.txt", "license", "license.txt"}


def _source_files(root: Path, suffixes: tuple[str, ...] = ()) -> list[Path]:
    files = [p for p in sorted(root.rglob("*")) if p.is_file() and p.name.lower() not in SKIP_TEXT_FILES]
    return [p for p in files if not suffixes or p.name.endswith(suffixes)]


def collect_documents(text_dirs: Sequence[str], python_doc_dir: str, max_chars: int = 0
                      ) -> tuple[list[list[str]], dict[str, dict[str, int]]]:
    """All documents of every source (at most about max_chars // #sources characters each when max_chars>0)."""
    sources: list[tuple[str, list[Path], Any]] = []
    for folder in text_dirs:
        root = Path(folder).expanduser()
        if not root.is_dir():
            logging.warning("corpus: the text folder %s does not exist; continuing without it", root)
            continue
        sources.append((str(root), _source_files(root), text_documents))
    docs_root = Path(python_doc_dir).expanduser() if python_doc_dir else None
    if docs_root and docs_root.is_dir():
        def rst_documents(path: Path) -> list[list[str]]:
            from electra_jax.data.example_builder import read_text_file

            sentences = rst_to_sentences(read_text_file(str(path)))
            return [sentences] if sentences else []
        sources.append((str(docs_root), _source_files(docs_root, (".rst.txt", ".rst")), rst_documents))
    elif python_doc_dir:
        logging.warning("corpus: the Python documentation folder %s does not exist (install Debian's "
                        "python3.11-doc, or pass --python_doc_dir); continuing with the other sources",
                        python_doc_dir)
    if not sources:
        raise FileNotFoundError(f"no corpus sources found: --text_dirs={','.join(text_dirs)} and "
                                f"--python_doc_dir={python_doc_dir} are all missing")
    per_source = max_chars // len(sources) if max_chars else 0
    documents: list[list[str]] = []
    stats: dict[str, dict[str, int]] = {}
    for name, files, reader in sources:
        chars = 0
        for path in files:
            # Label by the first folder under the source (wikitext-2-tokens, state_union, ...); docs as one label.
            relative = path.relative_to(name).parts
            label = "python3.11-doc (reST)" if reader is not text_documents else (
                relative[0] if len(relative) > 1 else path.name)
            entry = stats.setdefault(label, {"documents": 0, "chars": 0})
            try:
                found = reader(path)
            except ValueError as e:  # binary files
                logging.warning("corpus: skipping %s (%s)", path, e)
                continue
            for document in found:
                documents.append(document)
                size = sum(len(s) for s in document)
                chars += size
                entry["documents"] += 1
                entry["chars"] += size
                if per_source and chars >= per_source:
                    break
            if per_source and chars >= per_source:
                break
    for label, entry in stats.items():
        logging.info("corpus: %s: %d documents, %.2f M characters", label, entry["documents"], entry["chars"] / 1e6)
    return documents, stats


def write_corpus(output_dir: Path, text_dirs: Sequence[str], python_doc_dir: str, max_chars: int = 0,
                 num_train_files: int = 8) -> dict[str, Any]:
    """Writes train_XX.txt and eval.txt (a sentence per line, blank lines between documents); returns stats."""
    documents, stats = collect_documents(text_dirs, python_doc_dir, max_chars)
    random.Random(0).shuffle(documents)
    eval_docs = documents[::EVAL_EVERY_NTH_DOCUMENT]
    train_docs = [d for i, d in enumerate(documents) if i % EVAL_EVERY_NTH_DOCUMENT]
    output_dir.mkdir(parents=True, exist_ok=True)
    train_files = []
    for shard in range(num_train_files):
        path = output_dir / f"train_{shard:02d}.txt"
        path.write_text("\n\n".join("\n".join(d) for d in train_docs[shard::num_train_files]) + "\n",
                        encoding="utf-8")
        train_files.append(str(path))
    (output_dir / "eval.txt").write_text("\n\n".join("\n".join(d) for d in eval_docs) + "\n", encoding="utf-8")
    return {"sources": stats, "train_documents": len(train_docs), "eval_documents": len(eval_docs),
            "train_chars": sum(len(s) for d in train_docs for s in d), "train_files": train_files,
            "eval_file": str(output_dir / "eval.txt")}
