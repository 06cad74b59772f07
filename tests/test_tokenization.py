"""Tokenizer tests: ids equal HF transformers' BertTokenizer on all shared text and GLUE sentences, and a
pure-Python port of the original BERT/ELECTRA FullTokenizer on edge cases and a sample of real lines."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from electra_jax.data import tokenization
from electra_jax.data.tokenization import SPECIAL_TOKENS

REPO = Path(__file__).resolve().parents[1]
# ../shared beside the repo, or $ELECTRA_SHARED_DIR (as in tests/conftest.py)
_DEFAULT_SHARED = Path(__file__).resolve().parents[2] / "shared"
SHARED = Path(os.environ.get("ELECTRA_SHARED_DIR", _DEFAULT_SHARED)) / "data"
VOCABS = {"uncased": SHARED / "bert_vocab" / "uncased" / "vocab.txt",
          "cased": SHARED / "bert_vocab" / "cased" / "vocab.txt"}

needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared data not found at {SHARED}")


# --------------------------------------------------------------------------------------------------------
# Independent reference: the original google-research/electra model/tokenization.py FullTokenizer logic,
# re-typed here in plain Python (no tokenizers library) so the comparison does not share code.
# --------------------------------------------------------------------------------------------------------
class ReferenceFullTokenizer:
    def __init__(self, vocab_file: Path, do_lower_case: bool, strip_accents: bool | None = None):
        # strip_accents None: the original (accents go exactly when lower-casing); True/False as HF's
        # BasicTokenizer, which strips after lower-casing, or alone when strip_accents is True.
        self.vocab = {}
        with open(vocab_file, encoding="utf-8") as f:
            for index, token in enumerate(f):
                self.vocab[token.strip()] = index
        self.do_lower_case = do_lower_case
        self.strip_accents = strip_accents

    @staticmethod
    def _is_whitespace(c):
        return c in (" ", "\t", "\n", "\r") or unicodedata.category(c) == "Zs"

    @staticmethod
    def _is_control(c):
        if c in ("\t", "\n", "\r"):
            return False
        return unicodedata.category(c).startswith("C")

    @staticmethod
    def _is_punctuation(c):
        cp = ord(c)
        if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
            return True
        return unicodedata.category(c).startswith("P")

    @staticmethod
    def _is_chinese_char(cp):
        return any(lo <= cp <= hi for lo, hi in (
            (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
            (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)))

    def _basic(self, text):
        out = []
        for c in text:
            cp = ord(c)
            if cp == 0 or cp == 0xFFFD or self._is_control(c):
                continue
            out.append(" " if self._is_whitespace(c) else c)
        text = "".join(out)
        text = "".join(f" {c} " if self._is_chinese_char(ord(c)) else c for c in text)
        split_tokens = []
        for token in text.strip().split():
            if self.do_lower_case:
                token = token.lower()
            if self.do_lower_case if self.strip_accents is None else self.strip_accents:
                token = "".join(c for c in unicodedata.normalize("NFD", token) if unicodedata.category(c) != "Mn")
            pieces, start_new = [], True
            for c in token:
                if self._is_punctuation(c):
                    pieces.append([c])
                    start_new = True
                else:
                    if start_new:
                        pieces.append([])
                    start_new = False
                    pieces[-1].append(c)
            split_tokens.extend("".join(p) for p in pieces)
        return " ".join(split_tokens).strip().split()

    def _wordpiece(self, token):
        chars = list(token)
        if len(chars) > 200:
            return ["[UNK]"]
        out, start = [], 0
        while start < len(chars):
            end, cur = len(chars), None
            while start < end:
                sub = "".join(chars[start:end])
                if start > 0:
                    sub = "##" + sub
                if sub in self.vocab:
                    cur = sub
                    break
                end -= 1
            if cur is None:
                return ["[UNK]"]
            out.append(cur)
            start = end
        return out

    def encode(self, text):
        return [self.vocab[t] for w in self._basic(text) for t in self._wordpiece(w)]


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _corpus_lines() -> list[str]:
    """Every line of ../shared/data/text and every tab-separated field (sentence) of the GLUE TSVs."""
    lines = []
    for path in sorted((SHARED / "text").rglob("*")):
        if path.is_file() and path.suffix != ".md":
            lines.extend(_read_text(path).split("\n"))
    for path in sorted((SHARED / "glue").rglob("*.tsv")):
        for row in _read_text(path).split("\n"):
            lines.extend(row.split("\t"))
    return lines


@pytest.fixture(scope="module")
def corpus_lines():
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    return _corpus_lines()


def _hf_bert_tokenizer(vocab: Path, lower: bool, tmp_path: Path, strip_accents: bool | None = None):
    transformers = pytest.importorskip("transformers")
    folder = tmp_path / ("hf_" + ("lower" if lower else "cased"))
    folder.mkdir()
    shutil.copy(vocab, folder / "vocab.txt")
    # BertTokenizer(vocab_file=...) silently ignores the file in transformers 5: load from the folder.
    hf = transformers.BertTokenizer.from_pretrained(str(folder), do_lower_case=lower, strip_accents=strip_accents)
    hf.backend_tokenizer.model.max_input_chars_per_word = 200  # the original allows 200, HF 100
    return hf


@needs_shared
@pytest.mark.parametrize("case", ["uncased", "cased"])
def test_ids_equal_hf_bert_tokenizer_on_all_shared_lines(case, corpus_lines, tmp_path):
    lower = case == "uncased"
    ours = tokenization.tokenizer(VOCABS[case], lower_case=lower)
    hf = _hf_bert_tokenizer(VOCABS[case], lower, tmp_path)
    # HF protects literal special tokens in text; the original does not. The corpus holds none.
    assert not any(t in line for line in corpus_lines for t in SPECIAL_TOKENS)
    unique = sorted(set(corpus_lines))  # every line is covered; repeated lines are encoded once
    chunk = 20000
    n_checked = 0
    for i in range(0, len(unique), chunk):
        batch = unique[i:i + chunk]
        # The BertTokenizer's own Rust pipeline (normalizer, pre-tokenizer, WordPiece as from_pretrained set
        # them up) for speed; the Python __call__ wrapper is checked to agree on a slice below.
        expected = [e.ids for e in hf.backend_tokenizer.encode_batch(batch, add_special_tokens=False)]
        sample = batch[::25]
        assert hf(sample, add_special_tokens=False)["input_ids"] == expected[::25]
        got = ours.encode_batch(batch)
        for line, e, g in zip(batch, expected, got):
            assert g == e, f"mismatch on {line!r}"
        n_checked += len(batch)
    assert n_checked == len(unique) and len(corpus_lines) > 300_000


EDGE_CASES = [
    "Héllo Wörld, naïve café – ÀÉÎÕÜ ñ ç",
    "中文字符和日本語のテキスト mixed with English 漢字",
    "control\x00chars\x07here\x1b and \ufffd replacement\u200b zero-width\tab\r\nnewline",
    "a" * 200,
    "b" * 201,
    "x" * 199 + " " + "unaffordable" * 20,
    "ΟΔΟΣ ΟΔΟΣ. ΣΑΣ Σ ΑΣ\x00Β ΑΣ' λόγος",
    "İstanbul DİYARBAKIR ǅemal ß ẞ ﬁ",
    "literal [SEP] and [MASK] and [CLS] tokens",
    "punct!!! ¿qué? «quotes» — dash… 'single' $5.00 #tag @user ^ ` ~ {braces}",
    "line\u2028separator\u2029para\u0085nel\x1cfs\x0bvt\x0cff",
    "\u3000ideographic space\u00a0nbsp\u1680ogham",
    "emoji 😀👍🏽 and math ∑∫√ and combining e\u0301 a\u0300",
    "",
    "   ",
]


@needs_shared
@pytest.mark.parametrize("case", ["uncased", "cased"])
def test_edge_cases_equal_original_fulltokenizer(case):
    lower = case == "uncased"
    ours = tokenization.tokenizer(VOCABS[case], lower_case=lower)
    ref = ReferenceFullTokenizer(VOCABS[case], do_lower_case=lower)
    for text in EDGE_CASES:
        assert ours.encode(text) == ref.encode(text), f"mismatch on {text!r}"
    assert ours.encode_batch(EDGE_CASES) == [ref.encode(t) for t in EDGE_CASES]
    assert ours.encode("b" * 201) == [ours.unk_id]
    assert ours.encode("a" * 200) != [ours.unk_id]


@needs_shared
@pytest.mark.parametrize("case", ["uncased", "cased"])
def test_sample_of_real_lines_equals_original_fulltokenizer(case, corpus_lines):
    lower = case == "uncased"
    ours = tokenization.tokenizer(VOCABS[case], lower_case=lower)
    ref = ReferenceFullTokenizer(VOCABS[case], do_lower_case=lower)
    sample = corpus_lines[::40]
    got = ours.encode_batch(sample)
    for line, g in zip(sample, got):
        assert g == ref.encode(line), f"mismatch on {line!r}"


# (vocabulary, lower_case, strip_accents) apart from the original's tie: an uncased model that keeps its
# accents (as published German ELECTRAs do) and a cased one that strips them.
ACCENT_SETTINGS = [("uncased", True, False), ("cased", False, True)]
ACCENTED = ["Über die Straße gehen Müller & Söhne: naïve café, façade, résumé, Ångström, São Paulo, Łódź",
            "ÀÉÎÕÜ àéîõü ñ ç e\u0301 a\u0300 Ǆ ǅ ǆ ﬁ", "ΟΔΟΙ λόγος Ἀθῆναι", "Dvořák Škoda Čapek"]


@needs_shared
@pytest.mark.parametrize("case,lower,strip", ACCENT_SETTINGS)
def test_strip_accents_apart_from_casing_equals_the_reference_and_hf(case, lower, strip, corpus_lines, tmp_path):
    ours = tokenization.tokenizer(VOCABS[case], lower_case=lower, strip_accents=strip)
    assert (ours.lower_case, ours.strip_accents) == (lower, strip)
    ref = ReferenceFullTokenizer(VOCABS[case], do_lower_case=lower, strip_accents=strip)
    tied = ReferenceFullTokenizer(VOCABS[case], do_lower_case=lower)  # the original's setting
    texts = ACCENTED + EDGE_CASES
    assert ours.encode_batch(texts) == [ref.encode(t) for t in texts]
    assert ours.encode(ACCENTED[0]) != tied.encode(ACCENTED[0])  # the switch changes the ids
    hf = _hf_bert_tokenizer(VOCABS[case], lower, tmp_path, strip_accents=strip)
    # HF lower-cases a word-final capital sigma otherwise than the original (tokenization's docstring).
    sample = [line for line in corpus_lines[::7] if "Σ" not in line] + ACCENTED
    expected = hf(sample, add_special_tokens=False)["input_ids"]
    for line, e, g in zip(sample, expected, ours.encode_batch(sample)):
        assert g == e, f"mismatch on {line!r}"
    # The default (None) is the original's tie, and a SentencePiece model cannot be asked to strip.
    assert tokenization.tokenizer(VOCABS[case], lower_case=lower).strip_accents == lower
    (tmp_path / "sp.model").write_bytes(b"\x00not read")
    with pytest.raises(ValueError, match="strip_accents=True is a WordPiece setting"):
        tokenization.tokenizer(tmp_path / "sp.model", strip_accents=True)


@needs_shared
def test_the_published_vocabularies_casing_is_told_from_their_tokens():
    """What a TF checkpoint import goes by (it does not record its casing): BERT's cased vocabulary holds
    upper-case tokens, the uncased one none outside its bracketed specials."""
    assert tokenization.vocab_is_cased(VOCABS["cased"]) is True
    assert tokenization.vocab_is_cased(VOCABS["uncased"]) is False


@needs_shared
def test_interface_and_special_ids():
    tok = tokenization.tokenizer(VOCABS["uncased"])
    assert isinstance(tok, tokenization.WordPieceTokenizer)
    assert tok.vocab_size == 30522
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 100, 101, 102, 103)
    ids = tok.encode("The quick brown fox jumped over unaffordable dogs.")
    assert tok.cls_id not in ids and tok.sep_id not in ids  # no special tokens added
    assert tok.convert_ids_to_tokens(ids)[:2] == ["the", "quick"]
    assert tok.decode(ids) == "the quick brown fox jumped over unaffordable dogs."
    assert tok.special_ids == {"pad_id": 0, "unk_id": 100, "cls_id": 101, "sep_id": 102, "mask_id": 103}


def _write_vocab(path: Path, tokens: list[str]) -> Path:
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return path


def test_wordpiece_vocab_missing_specials_raises_one_clear_error(tmp_path):
    vocab = _write_vocab(tmp_path / "vocab.txt", ["[PAD]", "[UNK]", "the", "##s", "cat"])
    with pytest.raises(ValueError) as err:
        tokenization.tokenizer(vocab)
    msg = str(err.value)
    assert str(vocab) in msg
    assert "[CLS]" in msg and "[SEP]" in msg and "[MASK]" in msg
    assert "[UNK]" not in msg.split("missing")[1].split(".")[0]
    vocab2 = _write_vocab(tmp_path / "vocab2.txt", ["[CLS]", "[SEP]", "[MASK]", "the"])
    with pytest.raises(ValueError, match=r"missing the special token\(s\) \[PAD\], \[UNK\]"):
        tokenization.tokenizer(vocab2)


def test_sentencepiece_model_missing_specials_raises(tmp_path):
    spm = pytest.importorskip("sentencepiece")
    text = tmp_path / "t.txt"
    text.write_text("\n".join(f"the cat number {i} sat on the mat" for i in range(200)), encoding="utf-8")
    prefix = tmp_path / "plain"
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(prefix), vocab_size=40,
                                   minloglevel=2, hard_vocab_limit=False)
    with pytest.raises(ValueError) as err:
        tokenization.tokenizer(f"{prefix}.model")
    assert f"{prefix}.model" in str(err.value)
    for t in SPECIAL_TOKENS:
        assert t in str(err.value)


def _run_build_vocab(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "electra_jax.build_vocab", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


@needs_shared
@pytest.mark.parametrize("kind", ["wordpiece", "sentencepiece"])
def test_build_vocab_trains_with_specials_first(kind, tmp_path):
    out = tmp_path / ("vocab.txt" if kind == "wordpiece" else "sp.model")
    proc = _run_build_vocab([f"--input={SHARED / 'text' / 'state_union' / '19[5-6]*.txt'}",
                             "--vocab_size=2000", f"--kind={kind}", f"--output={out}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    tok = tokenization.tokenizer(out)
    assert tok.kind == kind
    assert [tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id] == [0, 1, 2, 3, 4]
    assert tok.convert_ids_to_tokens(range(5)) == list(SPECIAL_TOKENS)
    assert 1000 <= tok.vocab_size <= 2000
    ids = tok.encode("The Congress of the United States.")
    assert ids and min(ids) >= 5 and tok.unk_id not in ids
    assert tok.decode(ids).lower().replace(" .", ".") == "the congress of the united states."
    if kind == "wordpiece":
        # The trained vocab.txt reads back identically through HF's BertTokenizer.
        hf = _hf_bert_tokenizer(out, True, tmp_path)
        text = "Our economy grows; the nation's strength endures."
        assert tok.encode(text) == hf(text, add_special_tokens=False)["input_ids"]
    else:
        assert (tmp_path / "sp.vocab").is_file()


def test_build_vocab_says_when_the_size_asked_for_is_not_what_it_wrote(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("the cat sat on the mat\nthe dog sat on the log\n")
    tiny = _run_build_vocab([f"--input={text}", "--vocab_size=3", "--kind=wordpiece", f"--output={tmp_path}/a.txt"])
    written = len((tmp_path / "a.txt").read_text().splitlines())
    assert tiny.returncode == 0 and written > 3
    assert f"--vocab_size=3 is below what the five special tokens and the corpus's alphabet need: the vocabulary has " \
           f"{written} entries" in tiny.stderr
    big = _run_build_vocab([f"--input={text}", "--vocab_size=5000", "--kind=wordpiece", f"--output={tmp_path}/b.txt"])
    written = len((tmp_path / "b.txt").read_text().splitlines())
    assert big.returncode == 0 and f"the vocabulary has {written} entries, fewer than --vocab_size=5000" in big.stderr


def test_build_vocab_rejects_empty_glob(tmp_path):
    proc = _run_build_vocab([f"--input={tmp_path}/nothing*.txt", "--vocab_size=100",
                             "--kind=wordpiece", f"--output={tmp_path}/v.txt"])
    assert proc.returncode != 0
    assert "nothing*.txt" in proc.stderr


def test_importing_data_package_does_not_import_tensorflow():
    code = ("import sys, electra_jax.data, electra_jax.data.pipeline, electra_jax.data.example_builder; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
