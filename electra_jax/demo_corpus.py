"""A corpus that needs no download: the docstrings of the running Python's own standard library.

Writes ELECTRA's text layout (one sentence per line, a blank line between documents) so that
`build_vocab` and `build_data` can run anywhere Python runs. Files are parsed with `ast`, never
imported, and the output is deterministic for a given Python installation.

    python -m electra_jax.demo_corpus --output_dir=/tmp/corpus
"""

from __future__ import annotations

import ast
import re
import sysconfig
from pathlib import Path

from absl import app, flags

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'`])")
_SKIP_PARTS = ("test", "idlelib", "turtledemo", "lib2to3", "site-packages", "ensurepip", "__phello__")


def stdlib_files(root: str | None = None) -> list[Path]:
    root_path = Path(root or sysconfig.get_paths()["stdlib"])
    files = sorted(root_path.glob("*.py")) + sorted(root_path.glob("*/*.py"))
    return [f for f in files if not any(part in f.as_posix() for part in _SKIP_PARTS)]


def docstring_sentences(path: Path) -> list[str]:
    """The prose sentences of every docstring in one file (a file is one document)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return []
    sentences = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        text = ast.get_docstring(node)
        if not text or len(text) < 40:
            continue
        for paragraph in re.split(r"\n\s*\n", text):
            flat = " ".join(line.strip() for line in paragraph.splitlines() if line.strip())
            if not flat or flat.startswith(">>>"):
                continue  # doctest code is not prose
            sentences.extend(s.strip() for s in _SENTENCE_END.split(flat) if s.strip())
    return sentences


def write_corpus(output_dir: str, num_files: int = 8, eval_fraction: float = 0.1,
                 max_chars: int = 0) -> dict[str, list[str]]:
    """Writes train_*.txt and eval.txt under output_dir; returns the file lists."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    documents = [doc for doc in map(docstring_sentences, stdlib_files()) if doc]
    if max_chars:
        kept, total = [], 0
        for doc in documents:
            total += sum(len(s) for s in doc)
            if total > max_chars:
                break
            kept.append(doc)
        documents = kept
    if not documents:
        raise RuntimeError("found no standard-library docstrings; pass your own text with --input")
    every = max(2, int(round(1 / eval_fraction))) if eval_fraction > 0 else 0
    eval_docs = [d for i, d in enumerate(documents) if every and i % every == 0]
    train_docs = [d for i, d in enumerate(documents) if not (every and i % every == 0)]
    train_files = []
    for shard in range(num_files):
        path = out / f"train_{shard:02d}.txt"
        path.write_text("\n\n".join("\n".join(doc) for doc in train_docs[shard::num_files]) + "\n", encoding="utf-8")
        train_files.append(str(path))
    eval_path = out / "eval.txt"
    eval_path.write_text("\n\n".join("\n".join(doc) for doc in eval_docs) + "\n", encoding="utf-8")
    return {"train": train_files, "eval": [str(eval_path)]}


FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines this tool's flags (only when it runs as a program, so every tool imports side by side)."""
    flags.DEFINE_string("output_dir", None, "Folder for train_*.txt and eval.txt.")
    flags.DEFINE_integer("num_files", 8, "Number of training text files (build_data parallelises over files).")
    flags.DEFINE_float("eval_fraction", 0.1, "Share of documents held out in eval.txt.")
    flags.DEFINE_integer("max_chars", 0, "Stop after this many characters (0 = everything).")


def main(argv):
    del argv
    if not FLAGS.output_dir:
        raise app.UsageError("--output_dir is required")
    files = write_corpus(FLAGS.output_dir, FLAGS.num_files, FLAGS.eval_fraction, FLAGS.max_chars)
    size = sum(Path(f).stat().st_size for f in files["train"] + files["eval"])
    print(f"wrote {len(files['train'])} training files and eval.txt ({size / 1e6:.1f} MB) to {FLAGS.output_dir}")


if __name__ == "__main__":
    from electra_jax import cli

    define_flags()
    cli.run(main)
