r"""What the GPU evidence run takes along: a tokenized corpus, the GLUE tasks and the vocabulary, in few bytes.

    python -m electra_jax.experiments.bundle pack --corpus_dir=CORPUS --vocab=VOCAB --glue_dir=GLUE \
        --output_dir=runs/evidence_bundle
    python -m electra_jax.experiments.bundle unpack --bundle=runs/evidence_bundle --output_dir=/tmp/inputs

The device machine downloads nothing and at most 64 MiB travel to it (the repository and the ignored folders a
call carries; ../shared stays behind). `pack` writes, into one folder to carry:

    corpus/NAME.tokens.xz   every train*/heldout* file of CORPUS tokenized (electra_jax.data.token_corpus: about
                            1 byte per WordPiece token), or copied when CORPUS is tokenized already
    glue.tar.xz             train.tsv and dev.tsv of SST-2, CoLA, MRPC, STS-B and RTE
    vocab.txt               the vocabulary the corpus was tokenized with
    bundle.json             every file's size and sha256, the corpus's token counts, what was left out

and keeps within --max_mib (60 by default: the repository takes about 1.5 MiB): training files that no longer fit
are left out (in file order) and listed in bundle.json. `unpack` checks every digest and extracts the GLUE tasks; the
corpus needs no unpacking (build_data reads .tokens.xz), so compute_efficiency takes --corpus_dir=BUNDLE/corpus
--vocab=BUNDLE/vocab.txt --glue_dir=OUT/glue.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from absl import logging

from electra_jax.data.token_corpus import (TOKENS_SUFFIX, file_sha256, is_token_file, pack_text_file,
                                           read_header)
from electra_jax.experiments.budgets import TASKS

MIB = 1 << 20
DEFAULT_MAX_MIB = 60
GLUE_ARCHIVE = "glue.tar.xz"
MANIFEST = "bundle.json"


def _corpus_files(corpus_dir: Path) -> tuple[list[Path], list[Path]]:
    from electra_jax.experiments.compute_efficiency import given_corpus

    corpus = given_corpus(str(corpus_dir))
    return [Path(p) for p in corpus["train_files"]], [Path(p) for p in corpus["eval_files"]]


def pack(corpus_dir: str, vocab: str, glue_dir: str, output_dir: str, tasks: Sequence[str] = tuple(TASKS),
         max_mib: float = DEFAULT_MAX_MIB, lower_case: bool = True) -> dict[str, Any]:
    """Writes the bundle (see the module docstring); returns its manifest."""
    from electra_jax.data.tokenization import load_wordpiece_vocab, vocab_digests
    from electra_jax.data.tokenization import tokenizer as make_tokenizer

    out = Path(output_dir)
    (out / "corpus").mkdir(parents=True, exist_ok=True)
    glue = Path(glue_dir)
    members = [glue / TASKS[t][0] / f"{split}.tsv" for t in tasks for split in ("train", "dev")]
    missing = [str(p) for p in members if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"--glue_dir={glue_dir}: missing {missing}")
    with tarfile.open(out / GLUE_ARCHIVE, "w:xz") as archive:
        for path in members:
            archive.add(path, arcname=str(path.relative_to(glue)))
    tok = make_tokenizer(vocab, lower_case=lower_case)
    if tok.kind != "wordpiece":
        raise ValueError(f"--vocab={vocab} is a SentencePiece model: the evidence bundle carries a WordPiece "
                         "vocab.txt (or an HF tokenizer.json of one)")
    # Written from the tokens: a tokenizer.json vocabulary travels as the vocab.txt it holds.
    (out / "vocab.txt").write_text("".join(t + "\n" for t in load_wordpiece_vocab(vocab)), encoding="utf-8")
    digests = vocab_digests(vocab)
    digest = digests[0]  # what the corpus files packed here record

    train, held_out = _corpus_files(Path(corpus_dir))
    corpus: dict[str, Any] = {"train": [], "heldout": [], "left_out": []}
    used = sum((out / name).stat().st_size for name in (GLUE_ARCHIVE, "vocab.txt"))
    for kind, paths in (("heldout", held_out), ("train", train)):  # the held-out set first: it is small
        for path in paths:
            name = path.name if is_token_file(str(path)) else path.name.rsplit(".", 1)[0] + TOKENS_SUFFIX
            target = out / "corpus" / name
            if is_token_file(str(path)):
                shutil.copyfile(path, target)
                header = {**read_header(str(target)), "bytes": target.stat().st_size}
                if header["vocab_sha256"] not in digests:
                    raise ValueError(f"{path} was tokenized with another vocabulary than {vocab}")
            else:
                header = pack_text_file(str(path), str(target), tok, digest)
            if used + header["bytes"] > max_mib * MIB and kind == "train" and corpus["train"]:
                target.unlink()
                corpus["left_out"].append({"file": path.name, "tokens": header["num_tokens"], "bytes": header["bytes"]})
                logging.warning("bundle: leaving out %s (%d tokens): the bundle would exceed %.0f MiB", path,
                                header["num_tokens"], max_mib)
                continue
            used += header["bytes"]
            corpus[kind].append({"file": name, "tokens": header["num_tokens"], "lines": header["num_lines"],
                                 "bytes": header["bytes"]})
    if used > max_mib * MIB:
        raise ValueError(f"the bundle takes {used / MIB:.1f} MiB even with one training file, over "
                         f"--max_mib={max_mib}; split the corpus into more train*.txt files")
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != MANIFEST)
    manifest = {
        "files": {str(p.relative_to(out)): {"bytes": p.stat().st_size, "sha256": file_sha256(str(p))} for p in files},
        "total_bytes": sum(p.stat().st_size for p in files),
        "max_bytes": int(max_mib * MIB),
        "vocab_sha256": digest,
        "train_tokens": sum(f["tokens"] for f in corpus["train"]),
        "heldout_tokens": sum(f["tokens"] for f in corpus["heldout"]),
        "corpus": corpus,
        "tasks": list(tasks),
        "source": {"corpus_dir": str(corpus_dir), "glue_dir": str(glue_dir), "vocab": str(vocab)},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    logging.info("bundle: %d training tokens in %.1f MiB (%.3f bytes per token); %.1f MiB in all", manifest[
        "train_tokens"], sum(f["bytes"] for f in corpus["train"]) / MIB, sum(f["bytes"] for f in corpus["train"]) /
        max(manifest["train_tokens"], 1), manifest["total_bytes"] / MIB)
    return manifest


def unpack(bundle_dir: str, output_dir: str) -> dict[str, str]:
    """Checks every file against bundle.json, extracts the GLUE tasks; returns the experiment's input paths."""
    bundle = Path(bundle_dir)
    manifest = json.loads((bundle / MANIFEST).read_text())
    for name, entry in manifest["files"].items():
        path = bundle / name
        if not path.is_file() or path.stat().st_size != entry["bytes"] or file_sha256(str(path)) != entry["sha256"]:
            raise ValueError(f"{path} is missing or differs from {bundle / MANIFEST}: the bundle did not arrive whole; "
                             "pack it again")
    glue = Path(output_dir) / "glue"
    glue.mkdir(parents=True, exist_ok=True)
    with tarfile.open(bundle / GLUE_ARCHIVE, "r:xz") as archive:
        for member in archive.getmembers():
            if not member.isfile() or member.name.startswith(("/", "..")) or ".." in Path(member.name).parts:
                raise ValueError(f"{bundle / GLUE_ARCHIVE} holds an unexpected member {member.name!r}")
        # Every member was checked above; where tarfile has extraction filters (3.10.12+, 3.11.4+), "data" also
        # refuses links, devices and permission bits, and Python 3.12 warns when no filter is given.
        archive.extractall(glue, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))  # noqa: S202
    return {"corpus_dir": str(bundle / "corpus"), "vocab": str(bundle / "vocab.txt"), "glue_dir": str(glue)}


def main(argv: Sequence[str]) -> None:
    from absl import app, flags

    args = flags.FLAGS
    if len(argv) != 2 or argv[1] not in ("pack", "unpack"):
        raise app.UsageError("usage: python -m electra_jax.experiments.bundle pack|unpack --flags")
    if argv[1] == "pack":
        if not (args.corpus_dir and args.vocab and args.glue_dir and args.output_dir):
            raise app.UsageError("pack needs --corpus_dir, --vocab, --glue_dir and --output_dir")
        manifest = pack(args.corpus_dir, args.vocab, args.glue_dir, args.output_dir, max_mib=args.max_mib)
        print(json.dumps({k: manifest[k] for k in ("total_bytes", "train_tokens", "heldout_tokens")}
                         | {"left_out": manifest["corpus"]["left_out"]}))
    else:
        if not (args.bundle and args.output_dir):
            raise app.UsageError("unpack needs --bundle and --output_dir")
        print(json.dumps(unpack(args.bundle, args.output_dir)))


if __name__ == "__main__":
    from absl import flags

    from electra_jax import cli

    flags.DEFINE_string("corpus_dir", None, "pack: the corpus (train*.txt and heldout*.txt, or their .tokens.xz).")
    flags.DEFINE_string("vocab", None, "pack: the vocabulary to tokenize with (and to carry).")
    flags.DEFINE_string("glue_dir", None, "pack: the folder holding SST-2, CoLA, MRPC, STS-B and RTE.")
    flags.DEFINE_string("output_dir", None, "pack: the bundle folder; unpack: where the GLUE tasks go.")
    flags.DEFINE_string("bundle", None, "unpack: the bundle folder.")
    flags.DEFINE_float("max_mib", DEFAULT_MAX_MIB, "pack: the bundle's size limit in MiB.")
    cli.run(main)
