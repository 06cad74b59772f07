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


def test_records_that_keep_accents_hold_hf_ids_and_reach_the_config(tmp_path, uncased_vocab, caplog):
    """build_data --lower_case --nostrip_accents (as German uncased models are built): every example holds HF
    BertTokenizer(do_lower_case=True, strip_accents=False)'s ids of its line, metadata.json says so, pretrain's
    config takes it, and a token corpus packed with the original's tie is refused rather than mixed in."""
    transformers = pytest.importorskip("transformers", reason="the reference tokenizer is HF transformers'")
    from electra_jax import config as config_lib
    from electra_jax.data.numpy_records import read_all
    from electra_jax.data.records import apply_records_metadata

    lines = ["Über die Straße zu Müller.", "Ein Café in São Paulo, naïve façade!", "Dvořák und Ångström",
             "résumé RÉSUMÉ resume", "Ölförderung äußerst schön"]
    (tmp_path / "de.txt").write_text("\n\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "vocab.txt").write_bytes(Path(uncased_vocab).read_bytes())
    hf = transformers.BertTokenizer.from_pretrained(str(tmp_path / "hf"), do_lower_case=True, strip_accents=False)
    want = hf(lines, add_special_tokens=False)["input_ids"]
    tied = transformers.BertTokenizer.from_pretrained(str(tmp_path / "hf"), do_lower_case=True)
    assert tied(lines, add_special_tokens=False)["input_ids"] != want  # the text has accents that matter

    kw = dict(vocab=str(uncased_vocab), max_seq_length=64, num_shards=1, num_processes=1, progress=False,
              format="numpy", strip_accents=False)
    meta = build_pretraining_data(output_dir=str(tmp_path / "text"), input=str(tmp_path / "de.txt"), **kw)
    assert (meta["lower_case"], meta["strip_accents"]) == (True, False)
    rows = read_all(str(tmp_path / "text" / "*.npy"), 64)
    got = [ids[mask == 1][1:-1].tolist() for ids, mask in zip(rows["input_ids"], rows["input_mask"])]
    assert got == want

    config = config_lib.load("configs/pretrain.py:tiny", {"data.format": "numpy", "data.max_seq_length": 64,
                                                          "data.train_files": str(tmp_path / "text" / "*.npy")})
    assert config.data.strip_accents is None
    with caplog.at_level("WARNING"):
        assert apply_records_metadata(config).data.strip_accents is False
    assert "data.strip_accents = False from" in caplog.text and "keeping accents (config had None)" in caplog.text

    pack_corpus(str(tmp_path / "de.txt"), str(uncased_vocab), str(tmp_path / "tied"))
    with pytest.raises(ValueError, match="de.tokens.xz was tokenized with strip_accents=True but this build strips "
                                         "accents: False; pass --strip_accents=true"):
        build_pretraining_data(output_dir=str(tmp_path / "out"), input=str(tmp_path / "tied" / "*.tokens.xz"), **kw)
    pack_corpus(str(tmp_path / "de.txt"), str(uncased_vocab), str(tmp_path / "kept"), strip_accents=False)
    build_pretraining_data(output_dir=str(tmp_path / "tokens"), input=str(tmp_path / "kept" / "*.tokens.xz"), **kw)
    np.testing.assert_array_equal(np.load(tmp_path / "tokens" / "pretrain_data-0-of-1.npy"),
                                  np.load(tmp_path / "text" / "pretrain_data-0-of-1.npy"))


def test_a_tokenizer_json_and_its_vocab_txt_are_one_vocabulary_everywhere(tmp_path, texts, packed, uncased_vocab,
                                                                           shared_dir, caplog):
    """HF's tokenizer.json of BERT's uncased vocab.txt (what transformers 5 saves) is recorded under the vocab.txt's
    own sha256 (hashlib of its bytes): corpora packed with one build with the other, records built from the
    vocab.txt accept the tokenizer.json as config.data.vocab, the evidence bundle carries it as that vocab.txt,
    and finetune --init beside it says nothing. Another vocabulary, or the same tokens in another order, is
    still refused."""
    import hashlib
    import json

    transformers = pytest.importorskip("transformers", reason="the tokenizer.json is written by HF transformers")
    from electra_jax import config as config_lib
    from electra_jax.checkpoint_formats import Checkpoint
    from electra_jax.data import tokenization
    from electra_jax.data.records import apply_records_metadata
    from electra_jax.experiments.bundle import pack
    from electra_jax.finetune.train import _check_vocab_matches

    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "vocab.txt").write_bytes(Path(uncased_vocab).read_bytes())
    transformers.BertTokenizer.from_pretrained(str(tmp_path / "v")).save_pretrained(tmp_path / "hf")
    spec = tmp_path / "hf" / "tokenizer.json"
    want = hashlib.sha256(Path(uncased_vocab).read_bytes()).hexdigest()
    assert tokenization.vocab_sha256(spec) == tokenization.vocab_sha256(uncased_vocab) == want == file_sha256(
        str(uncased_vocab))
    cased = shared_dir / "data" / "bert_vocab" / "cased" / "vocab.txt"
    swapped = json.loads(spec.read_text(encoding="utf-8"))
    vocab = swapped["model"]["vocab"]
    vocab["the"], vocab["a"] = vocab["a"], vocab["the"]
    (tmp_path / "swapped.json").write_text(json.dumps(swapped), encoding="utf-8")
    crlf = tmp_path / "crlf.txt"
    crlf.write_bytes(Path(uncased_vocab).read_bytes().replace(b"\n", b"\r\n"))
    assert tokenization.same_vocabulary(spec, uncased_vocab) and tokenization.same_vocabulary(crlf, spec)
    assert not tokenization.same_vocabulary(tmp_path / "swapped.json", uncased_vocab)
    assert not tokenization.same_vocabulary(cased, uncased_vocab)

    header = pack_corpus(str(texts / "edge.txt"), str(spec), str(tmp_path / "tokens"))[0]
    assert header["vocab_sha256"] == want
    kw = dict(max_seq_length=64, num_shards=1, num_processes=1, progress=False, format="numpy")
    build_pretraining_data(vocab=str(uncased_vocab), output_dir=str(tmp_path / "a"),
                           input=str(tmp_path / "tokens" / "*.tokens.xz"), **kw)
    meta = build_pretraining_data(vocab=str(spec), output_dir=str(tmp_path / "b"),
                                  input=str(packed / "1961-*.tokens.xz"), **kw)
    assert meta["vocab_sha256"] == want
    with pytest.raises(ValueError, match="was tokenized with another vocabulary"):
        build_pretraining_data(vocab=str(tmp_path / "swapped.json"), output_dir=str(tmp_path / "c"),
                               input=str(packed / "1961-*.tokens.xz"), **kw)

    records = str(tmp_path / "b" / "*.npy")
    for configured, ok in ((spec, True), (uncased_vocab, True), (crlf, True), (tmp_path / "swapped.json", False)):
        config = config_lib.load("configs/pretrain.py:tiny", {"data.format": "numpy", "data.max_seq_length": 64,
                                                              "data.train_files": records,
                                                              "data.vocab": str(configured)})
        if ok:
            assert apply_records_metadata(config).data.vocab == str(configured)
        else:
            with pytest.raises(ValueError, match="is not the vocabulary the records were built with"):
                apply_records_metadata(config)

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, source in (("train_01.txt", "1961-Kennedy.txt"), ("heldout.txt", "edge.txt")):
        (corpus / name).write_bytes((texts / source).read_bytes())
    pack(str(corpus), str(spec), str(shared_dir / "data" / "glue"), str(tmp_path / "bundle"))
    assert (tmp_path / "bundle" / "vocab.txt").read_bytes() == Path(uncased_vocab).read_bytes()

    checkpoint = Checkpoint({}, config_lib.load("configs/finetune.py:sst2,tiny", {"data.vocab": str(spec)}),
                            "to_hf", str(tmp_path / "hf"))
    for vocab_path, warns in ((uncased_vocab, False), (crlf, False), (tmp_path / "swapped.json", True)):
        caplog.clear()
        with caplog.at_level("WARNING"):
            _check_vocab_matches(str(vocab_path), True, None, checkpoint)
        assert ("differs from the vocabulary the --init checkpoint names" in caplog.text) is warns, vocab_path
