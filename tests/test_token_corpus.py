"""The tokenized corpus (NAME.tokens.xz): it holds every line as build_data tokenizes it, build_data reads it into
exactly the examples of the text, it is compact, and it refuses another vocabulary."""

from __future__ import annotations

import lzma
from pathlib import Path

import numpy as np
import pytest

from electra_jax.build_data import build_pretraining_data
from electra_jax.data import tokenizer
from electra_jax.data.example_builder import read_text_file
from electra_jax.data.token_corpus import file_sha256, pack_corpus, read_token_file, token_lines


@pytest.fixture(scope="module")
def texts(tmp_path_factory, shared_dir) -> Path:
    """Three real files and one with edge cases: blank and whitespace-only lines, a line that tokenizes to nothing,
    Latin-1 bytes, CRLF line ends."""
    folder = tmp_path_factory.mktemp("texts")
    for name in ("1961-Kennedy.txt", "1962-Kennedy.txt"):
        (folder / name).write_bytes((shared_dir / "data" / "text" / "state_union" / name).read_bytes())
    (folder / "wiki.txt").write_bytes((shared_dir / "data" / "text" / "wikitext-2-tokens" / "wiki.valid.tokens")
                                      .read_bytes()[:200_000])
    (folder / "edge.txt").write_bytes("  First line.  \r\n\r\n \t \n\x07\x07\nCaf\xe9 au lait.\n\n\nLast one".encode(
        "latin-1"))
    return folder


@pytest.fixture(scope="module")
def packed(tmp_path_factory, texts, uncased_vocab) -> Path:
    out = tmp_path_factory.mktemp("tokens")
    headers = pack_corpus(str(texts / "*.txt"), str(uncased_vocab), str(out))
    assert len(headers) == 4
    return out


def test_every_line_is_stored_as_build_data_tokenizes_it(texts, packed, uncased_vocab):
    """Against the tokenizer called line by line on the file as build_data reads it (decoded, stripped)."""
    tok = tokenizer(uncased_vocab)
    for text in sorted(texts.glob("*.txt")):
        lines = [line.strip() for line in read_text_file(str(text)).split("\n")]
        expected = [(not line, tok.encode(line) if line else []) for line in lines]
        assert list(token_lines(str(packed / f"{text.stem}.tokens.xz"))) == expected, text.name
    edge = list(token_lines(str(packed / "edge.tokens.xz")))
    assert edge[3] == (False, [])  # "\x07\x07": not blank, yet no tokens (it does not end a document)
    assert [blank for blank, _ in edge].count(True) == 4


@pytest.mark.parametrize("blanks_separate_docs", [True, False])
def test_build_data_gives_the_same_examples_from_tokens_as_from_text(tmp_path, texts, packed, uncased_vocab,
                                                                     blanks_separate_docs):
    kw = dict(vocab=str(uncased_vocab), max_seq_length=64, num_shards=3, num_processes=1, seed=5, progress=False,
              format="numpy", blanks_separate_docs=blanks_separate_docs)
    from_text = build_pretraining_data(output_dir=str(tmp_path / "text"), input=str(texts / "*.txt"), **kw)
    from_tokens = build_pretraining_data(output_dir=str(tmp_path / "tokens"), input=str(packed / "*.tokens.xz"), **kw)
    assert from_text["num_examples"] == from_tokens["num_examples"] > 400
    for shard in range(3):
        name = f"pretrain_data-{shard}-of-3.npy"
        np.testing.assert_array_equal(np.load(tmp_path / "text" / name), np.load(tmp_path / "tokens" / name))


def test_the_tokens_are_smaller_than_the_compressed_text(texts, packed):
    """xz over uint16 ids: well under the 2 bytes of the raw ids, and under the same text xz-compressed."""
    header, lengths, ids = read_token_file(str(packed / "wiki.tokens.xz"))
    assert ids.dtype == np.uint16 and header["num_tokens"] == ids.size > 40_000
    size = (packed / "wiki.tokens.xz").stat().st_size
    assert size < 1.3 * ids.size
    assert size < len(lzma.compress((texts / "wiki.txt").read_bytes(), preset=6))


def test_another_vocabulary_or_a_corrupt_file_is_refused(tmp_path, texts, packed, uncased_vocab, shared_dir):
    cased = shared_dir / "data" / "bert_vocab" / "cased" / "vocab.txt"
    assert file_sha256(str(cased)) != file_sha256(str(uncased_vocab))
    with pytest.raises(ValueError, match=r"1961-Kennedy\.tokens\.xz was tokenized with another vocabulary"):
        build_pretraining_data(vocab=str(cased), output_dir=str(tmp_path / "out"), lower_case=False,
                               input=str(packed / "1961-*.tokens.xz"), progress=False, format="numpy")
    with pytest.raises(ValueError, match="lower_case=True but --lower_case=False"):
        build_pretraining_data(vocab=str(uncased_vocab), output_dir=str(tmp_path / "out"), lower_case=False,
                               input=str(packed / "1961-*.tokens.xz"), progress=False, format="numpy")
    assert not (tmp_path / "out").exists()
    broken = tmp_path / "broken.tokens.xz"
    broken.write_bytes((packed / "1962-Kennedy.tokens.xz").read_bytes()[:-200])
    with pytest.raises(ValueError, match=r"Corrupt token file .*broken\.tokens\.xz"):
        read_token_file(str(broken))
