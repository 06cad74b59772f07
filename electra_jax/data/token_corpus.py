r"""A compact, tokenized form of a sentence-per-line corpus: `NAME.tokens.xz`, read by build_data like the text.

    python -m electra_jax.data.token_corpus --input='corpus/*.txt' --vocab=vocab.txt --output_dir=corpus_tokens
    python -m electra_jax.build_data --input='corpus_tokens/*.tokens.xz' --vocab=vocab.txt --output_dir=... \
        --format=numpy

One file per text file holds, xz-compressed, every line of the text after build_data's own preprocessing (strip),
tokenized with one vocabulary: a JSON header line (the vocabulary's sha256 and size, lower_case, counts), the line
lengths (uint32; 0xFFFFFFFF marks a blank line, which ends a document) and the token ids (uint16, or uint32 for
vocabularies over 65,536 entries). build_data reads these lines instead of tokenizing, so a tokenized corpus gives
exactly the examples its text gives (tests/test_token_corpus.py), with no tokenizer and no TensorFlow. It exists to
carry a corpus where bytes are scarce: on English prose it takes about 1 byte per WordPiece token (the text, also
xz-compressed, about 1.2), and it needs the vocabulary it was built with: build_data checks the digest.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from absl import logging

TOKENS_SUFFIX = ".tokens.xz"
_MAGIC = b"electra_jax tokens v1\n"
_BLANK = np.uint32(0xFFFFFFFF)
_ENCODE_CHUNK_LINES = 4096


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_token_file(path: str) -> bool:
    return path.endswith(TOKENS_SUFFIX)


def text_lines(path: str) -> list[str]:
    """A text file's lines as build_data sees them: decoded (UTF-8, else Latin-1) and stripped."""
    from electra_jax.data.example_builder import read_text_file

    return [line.strip().replace("\n", " ") for line in read_text_file(path).split("\n")]


def pack_text_file(text_path: str, output_path: str, tokenizer, vocab_sha256: str) -> dict[str, Any]:
    """Tokenizes one text file into output_path (NAME.tokens.xz); returns the header it wrote."""
    lines = text_lines(text_path)
    lengths = np.full(len(lines), _BLANK, np.uint32)
    pieces: list[np.ndarray] = []
    ids_dtype = np.uint16 if tokenizer.vocab_size <= 2**16 else np.uint32
    for start in range(0, len(lines), _ENCODE_CHUNK_LINES):
        chunk = lines[start:start + _ENCODE_CHUNK_LINES]
        texts = [line for line in chunk if line]
        encoded = iter(tokenizer.encode_batch(texts)) if texts else iter(())
        for offset, line in enumerate(chunk):
            if line:
                ids = next(encoded)
                lengths[start + offset] = len(ids)
                pieces.append(np.asarray(ids, ids_dtype))
    ids = np.concatenate(pieces) if pieces else np.zeros(0, ids_dtype)
    header = {"source": os.path.basename(text_path), "vocab_sha256": vocab_sha256,
              "vocab_size": tokenizer.vocab_size, "lower_case": bool(tokenizer.lower_case),
              "strip_accents": bool(tokenizer.strip_accents),
              "num_lines": len(lines), "num_blank_lines": int(np.count_nonzero(lengths == _BLANK)),
              "num_tokens": int(ids.size), "ids_dtype": np.dtype(ids_dtype).name}
    tmp = output_path + ".tmp"
    with lzma.open(tmp, "wb", preset=6) as f:
        f.write(_MAGIC + json.dumps(header).encode() + b"\n")
        f.write(lengths.astype("<u4").tobytes())
        f.write(ids.astype(np.dtype(ids_dtype).newbyteorder("<")).tobytes())
    os.replace(tmp, output_path)
    return {**header, "bytes": os.path.getsize(output_path)}


def read_header(path: str) -> dict[str, Any]:
    """The header of a token file (decompresses only its first bytes); ValueError naming a file of another kind."""
    try:
        with lzma.open(path, "rb") as f:
            magic = f.read(len(_MAGIC))
            if magic != _MAGIC:
                raise ValueError(f"{path} is not an electra_jax token file (build it with "
                                 "`python -m electra_jax.data.token_corpus`)")
            return json.loads(f.readline())
    except (lzma.LZMAError, EOFError, json.JSONDecodeError) as e:
        raise ValueError(f"Corrupt token file {path} ({e}); rebuild it with electra_jax.data.token_corpus") from e


def read_token_file(path: str) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """(header, line lengths with 0xFFFFFFFF for blank lines, token ids) of a token file."""
    try:
        with lzma.open(path, "rb") as f:
            if f.read(len(_MAGIC)) != _MAGIC:
                raise ValueError(f"{path} is not an electra_jax token file")
            header = json.loads(f.readline())
            lengths = np.frombuffer(f.read(4 * header["num_lines"]), "<u4")
            ids = np.frombuffer(f.read(), np.dtype(header["ids_dtype"]).newbyteorder("<"))
    except (lzma.LZMAError, EOFError, json.JSONDecodeError, KeyError) as e:
        raise ValueError(f"Corrupt token file {path} ({e}); rebuild it with electra_jax.data.token_corpus") from e
    real = lengths[lengths != _BLANK]
    if len(lengths) != header["num_lines"] or int(real.sum(dtype=np.int64)) != ids.size:
        raise ValueError(f"Corrupt token file {path}: {len(lengths)} line lengths summing to "
                         f"{int(real.sum(dtype=np.int64))} for {ids.size} ids (header: {header['num_lines']} lines)")
    return header, lengths, ids


def token_lines(path: str) -> Iterator[tuple[bool, list[int]]]:
    """(is_blank, token ids) for every line of a token file, in order: what build_data feeds the ExampleBuilder."""
    _, lengths, ids = read_token_file(path)
    start = 0
    for length in lengths.tolist():
        if length == _BLANK:
            yield True, []
        else:
            yield False, ids[start:start + length].tolist()
            start += length


def check_vocab(path: str, digests: Sequence[str], lower_case: bool, strip_accents: bool | None = None
                ) -> dict[str, Any]:
    """The header of a token file built with this vocabulary and casing; ValueError naming what differs.

    `digests` are the vocabulary's (`tokenization.vocab_digests`): a file recorded under any of them is accepted.

    `strip_accents` (a WordPiece tokenizer's, None to skip the check) is compared with the file's, which files
    written before it was recorded had exactly when lower-casing.
    """
    header = read_header(path)
    if header.get("vocab_sha256") not in digests:
        raise ValueError(f"{path} was tokenized with another vocabulary (sha256 {header.get('vocab_sha256')}, "
                         f"{header.get('vocab_size')} entries) than --vocab (sha256 {digests[0]}); pass the "
                         "vocabulary it was built with, or rebuild it from the text")
    if bool(header.get("lower_case", True)) != bool(lower_case):
        raise ValueError(f"{path} was tokenized with lower_case={header.get('lower_case')} but --lower_case="
                         f"{lower_case}; pass the same casing or rebuild it from the text")
    stripped = bool(header.get("strip_accents", header.get("lower_case", True)))
    if strip_accents is not None and stripped != bool(strip_accents):
        raise ValueError(f"{path} was tokenized with strip_accents={stripped} but this build strips accents: "
                         f"{bool(strip_accents)}; pass --strip_accents={str(stripped).lower()} or rebuild it from "
                         "the text")
    return header


def pack_corpus(inputs: str | Sequence[str], vocab: str, output_dir: str, lower_case: bool = True,
                strip_accents: bool | None = None) -> list[dict[str, Any]]:
    """Tokenizes every text file matching the globs into output_dir/STEM.tokens.xz; returns their headers."""
    from electra_jax.data.example_builder import expand_text_globs
    from electra_jax.data.tokenization import tokenizer as make_tokenizer
    from electra_jax.data.tokenization import vocab_sha256

    files = expand_text_globs(inputs)
    tok = make_tokenizer(vocab, lower_case=lower_case, strip_accents=strip_accents)
    digest = vocab_sha256(vocab)
    names = [os.path.splitext(os.path.basename(path))[0] + TOKENS_SUFFIX for path in files]
    if len(set(names)) != len(names):
        raise ValueError(f"input files share a name stem ({sorted(names)}); pack each folder separately")
    os.makedirs(output_dir, exist_ok=True)
    headers = []
    for path, name in zip(files, names):
        headers.append(pack_text_file(path, os.path.join(output_dir, name), tok, digest))
        logging.info("token_corpus: %s -> %s (%d lines, %d tokens, %d bytes)", path, name, headers[-1]["num_lines"],
                     headers[-1]["num_tokens"], headers[-1]["bytes"])
    return headers


def main(argv: Sequence[str]) -> None:
    from absl import flags

    if len(argv) > 1:
        raise SystemExit(f"unexpected arguments: {argv[1:]}")
    args = flags.FLAGS
    if not (args.input and args.vocab and args.output_dir):
        raise SystemExit("--input, --vocab and --output_dir are required")
    headers = pack_corpus(args.input, args.vocab, args.output_dir, args.lower_case, args.strip_accents)
    tokens, size = sum(h["num_tokens"] for h in headers), sum(h["bytes"] for h in headers)
    print(json.dumps({"files": len(headers), "num_tokens": tokens, "bytes": size,
                      "bytes_per_token": round(size / max(tokens, 1), 3)}))


if __name__ == "__main__":
    from absl import flags

    from electra_jax import cli

    flags.DEFINE_string("input", None, "Glob (or comma-separated globs) of sentence-per-line text files.")
    flags.DEFINE_string("vocab", None, "The WordPiece vocab.txt or SentencePiece .model to tokenize with.")
    flags.DEFINE_string("output_dir", None, "Where to write one NAME.tokens.xz per input file.")
    flags.DEFINE_bool("lower_case", True, "Lower-case (and strip accents) when tokenizing, as build_data does.")
    flags.DEFINE_bool("strip_accents", None, "WordPiece: strip accents; unset strips exactly when --lower_case.")
    cli.run(main)
