"""WordPiece and SentencePiece tokenizers behind one interface.

`tokenizer(vocab_path, lower_case=True, strip_accents=None)` returns a `WordPieceTokenizer` for a BERT-style
`vocab.txt` and a `SentencePieceTokenizer` for a SentencePiece `.model`. Both expose `encode`, `encode_batch`,
`decode`, `convert_ids_to_tokens`, `convert_tokens_to_ids`, `vocab_size` and the ids of the five special tokens.

The WordPiece tokenizer reproduces the original BERT/ELECTRA `FullTokenizer` (model/tokenization.py):
text cleaning, CJK spacing, lower-casing with NFD accent stripping (only when lower-casing), punctuation
splitting and greedy longest-match-first WordPiece with a 200-character word limit. `strip_accents` None
strips exactly when lower-casing (the original, which has no separate switch); True or False sets it apart,
as HF's BertTokenizer `strip_accents` does (some published uncased models, e.g. German ones, keep accents).
It runs on the Rust `tokenizers` library (BertNormalizer + BertPreTokenizer + WordPiece) for speed; the one
place where Rust and Python lower-casing differ (the context-dependent final sigma of Python's `str.lower`) is
handled in Python so that the ids stay identical to the original.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from collections.abc import Iterable, Sequence

# Ids 0..4 in this order for vocabularies built by electra_jax.build_vocab.
SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_ATTR_NAMES = {"[PAD]": "pad_id", "[UNK]": "unk_id", "[CLS]": "cls_id", "[SEP]": "sep_id",
               "[MASK]": "mask_id"}

# The original BasicTokenizer allows words of up to 200 characters; HF's default is 100.
MAX_INPUT_CHARS_PER_WORD = 200


def _special_ids_or_raise(path: str, lookup: dict[str, int]) -> dict[str, int]:
    """Returns {attr_name: id} for the five special tokens, or raises one ValueError listing all missing."""
    missing = [t for t in SPECIAL_TOKENS if t not in lookup]
    if missing:
        raise ValueError(
            f"Vocabulary {path} is missing the special token(s) {', '.join(missing)}. ELECTRA needs all of "
            f"{' '.join(SPECIAL_TOKENS)}; add them (one per line in vocab.txt) or rebuild the vocabulary "
            "with `python -m electra_jax.build_vocab`, which puts them at ids 0..4."
        )
    return {_ATTR_NAMES[t]: lookup[t] for t in SPECIAL_TOKENS}


class _TokenizerBase:
    """Shared attributes: the vocabulary path, `vocab_size`, `lower_case`, `strip_accents` and the special ids."""

    kind: str = ""
    path: str
    lower_case: bool
    strip_accents: bool
    vocab_size: int
    pad_id: int
    unk_id: int
    cls_id: int
    sep_id: int
    mask_id: int

    def _set_specials(self, ids: dict[str, int]) -> None:
        for name, value in ids.items():
            setattr(self, name, int(value))

    @property
    def special_ids(self) -> dict[str, int]:
        """{"pad_id", "unk_id", "cls_id", "sep_id", "mask_id"} -> id."""
        return {name: getattr(self, name) for name in _ATTR_NAMES.values()}

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def tokenize(self, text: str) -> list[str]:
        return self.convert_ids_to_tokens(self.encode(text))

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(path={self.path!r}, vocab_size={self.vocab_size}, "
                f"lower_case={self.lower_case}, strip_accents={self.strip_accents})")


# ---------------------------------------------------------------------------------------------------------
# WordPiece
# ---------------------------------------------------------------------------------------------------------


def load_wordpiece_vocab(path: str) -> list[str]:
    """Reads a vocab.txt as the original `load_vocab`: one token per line, surrounding whitespace stripped.

    An HF `tokenizer.json` (what transformers 5's save_pretrained writes instead of vocab.txt) gives the
    vocabulary of its WordPiece model, in id order.
    """
    if path.endswith(".json"):
        return _tokenizer_json_vocab(path)
    with open(path, "rb") as f:
        data = f.read()
    if b"\x00" in data:
        raise ValueError(
            f"Vocabulary {path} contains NUL bytes: it is not a text vocab.txt (one token a line).")
    # The original decodes with errors="ignore"; a vocab file is expected to be valid UTF-8.
    text = data.decode("utf-8", errors="ignore")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.strip() for line in lines]


def _read_tokenizer_json(path: str) -> dict:
    import json

    try:
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"Vocabulary {path} is not an HF tokenizer.json ({e})") from e
    if not isinstance(spec, dict):
        raise ValueError(f"Vocabulary {path} is not an HF tokenizer.json (it holds no JSON object)")
    return spec


def tokenizer_json_model(path: str) -> str | None:
    """The model type of an HF tokenizer.json ("WordPiece", "Unigram", "BPE", ...), None when it names none."""
    model = _read_tokenizer_json(path).get("model")
    return model.get("type") if isinstance(model, dict) else None


def tokenizer_json_casing(path: str) -> tuple[bool, bool | None] | None:
    """(lowercase, strip_accents) of the BertNormalizer in an HF tokenizer.json (alone or in a Sequence), which
    PreTrainedTokenizerFast applies as written; None when it has no BertNormalizer."""
    normalizer = _read_tokenizer_json(path).get("normalizer") or {}
    candidates = (normalizer.get("normalizers") or []) if normalizer.get("type") == "Sequence" else [normalizer]
    for norm in candidates:
        if isinstance(norm, dict) and norm.get("type") == "BertNormalizer":
            strip = norm.get("strip_accents")
            return bool(norm.get("lowercase", True)), None if strip is None else bool(strip)
    return None


def _tokenizer_json_vocab(path: str) -> list[str]:
    model = _read_tokenizer_json(path).get("model") or {}
    if not isinstance(model, dict):
        raise ValueError(f"Vocabulary {path} is not an HF tokenizer.json (its 'model' is not an object)")
    if model.get("type") != "WordPiece" or not isinstance(model.get("vocab"), dict):
        raise ValueError(f"Vocabulary {path} holds a {model.get('type')} model, not WordPiece: electra_jax reads a "
                         "tokenizer.json of a BERT/ELECTRA WordPiece tokenizer (or pass its vocab.txt or .model)")
    if model.get("continuing_subword_prefix", "##") != "##":
        raise ValueError(f"Vocabulary {path} marks word pieces with {model['continuing_subword_prefix']!r}, not "
                         "'##' as BERT/ELECTRA do")
    by_id = sorted((int(i), token) for token, i in model["vocab"].items())
    if [i for i, _ in by_id] != list(range(len(by_id))):
        raise ValueError(f"Vocabulary {path}: the WordPiece ids are not 0..{len(by_id) - 1} without gaps")
    return [token for _, token in by_id]


def _is_control(char: str) -> bool:
    if char in "\t\n\r":
        return False
    return unicodedata.category(char).startswith("C")


def _is_whitespace(char: str) -> bool:
    return char in " \t\n\r" or unicodedata.category(char) == "Zs"


def _is_cjk(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def _python_lowercase_words(text: str) -> str:
    """The original BasicTokenizer up to and including per-word `str.lower()`.

    Only used for text holding a capital sigma: Python lower-cases a word-final 'Σ' to 'ς' (Unicode
    Final_Sigma context), while the Rust normalizer maps every 'Σ' to 'σ'. Doing this step in Python makes
    the ids identical to the original; the Rust normalizer then finds nothing left to lower-case.
    """
    out = []
    for char in text:
        cp = ord(char)
        if cp == 0 or cp == 0xFFFD or _is_control(char):
            continue
        if _is_whitespace(char):
            out.append(" ")
        elif _is_cjk(cp):
            out.append(f" {char} ")
        else:
            out.append(char)
    return " ".join(word.lower() for word in "".join(out).split())


class WordPieceTokenizer(_TokenizerBase):
    """BERT/ELECTRA FullTokenizer-identical WordPiece tokenizer built on HF `tokenizers`."""

    kind = "wordpiece"

    def __init__(self, vocab_path: str, lower_case: bool = True, strip_accents: bool | None = None):
        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

        self.path = str(vocab_path)
        self.lower_case = bool(lower_case)
        self.strip_accents = strips_accents(self.lower_case, strip_accents)
        self._id_to_token = load_wordpiece_vocab(self.path)
        # Later duplicates win, as in the original OrderedDict-based load_vocab.
        self.vocab = {token: i for i, token in enumerate(self._id_to_token)}
        self._set_specials(_special_ids_or_raise(self.path, self.vocab))
        self.vocab_size = len(self._id_to_token)

        tok = Tokenizer(models.WordPiece(
            vocab=self.vocab, unk_token="[UNK]", continuing_subword_prefix="##",
            max_input_chars_per_word=MAX_INPUT_CHARS_PER_WORD))
        # By default accents are stripped exactly when lower-casing, as in the original.
        tok.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=self.strip_accents,
            lowercase=self.lower_case)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece(prefix="##")
        # No special tokens are registered: like the original, a literal "[SEP]" in text is split into
        # "[", "sep", "]" rather than mapped to the [SEP] id.
        self._tok = tok

    def _prepare(self, text: str) -> str:
        if self.lower_case and "Σ" in text:
            return _python_lowercase_words(text)
        return text

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(self._prepare(text), add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        texts = [self._prepare(t) for t in texts]
        # encode_batch_fast (tokenizers >= 0.20) skips computing character offsets we do not use.
        encode = getattr(self._tok, "encode_batch_fast", self._tok.encode_batch)
        return [e.ids for e in encode(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        return [self._id_to_token[int(i)] for i in ids]

    def convert_tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
        return [self.vocab.get(t, self.unk_id) for t in tokens]


# ---------------------------------------------------------------------------------------------------------
# SentencePiece
# ---------------------------------------------------------------------------------------------------------


class SentencePieceTokenizer(_TokenizerBase):
    """A SentencePiece `.model` whose vocabulary holds [PAD] [UNK] [CLS] [SEP] [MASK]."""

    kind = "sentencepiece"

    def __init__(self, model_path: str, lower_case: bool = True, strip_accents: bool | None = None):
        import sentencepiece as spm

        self.path = str(model_path)
        self.lower_case = bool(lower_case)
        if strip_accents:
            raise ValueError(f"strip_accents=True is a WordPiece setting; the SentencePiece model {self.path} "
                             "normalizes text by its own rules (leave strip_accents unset)")
        self.strip_accents = False
        try:
            self._sp = spm.SentencePieceProcessor(model_file=self.path)
        except (OSError, RuntimeError) as e:
            raise ValueError(f"Could not load SentencePiece model {self.path}: {e}") from e
        self.vocab_size = int(self._sp.get_piece_size())
        lookup = {}
        for token in SPECIAL_TOKENS:
            i = self._sp.piece_to_id(token)
            # piece_to_id returns the unk id for unknown pieces, so confirm the round trip.
            if self._sp.id_to_piece(i) == token:
                lookup[token] = i
        self._set_specials(_special_ids_or_raise(self.path, lookup))

    def encode(self, text: str) -> list[int]:
        return list(self._sp.encode(text.lower() if self.lower_case else text, out_type=int))

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        if self.lower_case:
            texts = [t.lower() for t in texts]
        return [list(x) for x in self._sp.encode(list(texts), out_type=int)]

    def decode(self, ids: Iterable[int]) -> str:
        return self._sp.decode([int(i) for i in ids])

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        return [self._sp.id_to_piece(int(i)) for i in ids]

    def convert_tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
        return [self._sp.piece_to_id(t) for t in tokens]


Tokenizer = WordPieceTokenizer | SentencePieceTokenizer


# The share of a WordPiece vocabulary's ordinary tokens that must hold upper-case letters for it to be read as
# cased: BERT's cased vocabulary has 29% (8,366 of 28,890), its uncased one none; a stray token or two in an
# uncased vocabulary stays uncased.
CASED_TOKEN_FRACTION = 0.005


def upper_case_tokens(vocab_path: str | os.PathLike) -> tuple[list[str], int] | None:
    """(the ordinary tokens, not bracketed [SPECIAL]s, that hold an upper-case letter, the number of ordinary
    tokens) of a WordPiece vocabulary; None for a SentencePiece model. A lower-casing tokenizer never produces
    such tokens."""
    path = os.fspath(vocab_path)
    if _is_sentencepiece(path):
        return None
    ordinary = [t for t in load_wordpiece_vocab(path) if not (t.startswith("[") and t.endswith("]"))]
    return [t for t in ordinary if t != t.lower()], len(ordinary)


def is_cased_share(upper: int, total: int) -> bool:
    """Whether `upper` upper-case tokens among `total` ordinary ones make a cased vocabulary (CASED_TOKEN_FRACTION)."""
    return upper > 0 and upper >= CASED_TOKEN_FRACTION * total


def vocab_is_cased(vocab_path: str | os.PathLike) -> bool | None:
    """Whether a WordPiece vocabulary is a cased one: at least CASED_TOKEN_FRACTION of its ordinary tokens hold an
    upper-case letter. None for a SentencePiece model."""
    found = upper_case_tokens(vocab_path)
    return None if found is None else is_cased_share(len(found[0]), found[1])


def vocab_digests(vocab_path: str | os.PathLike) -> tuple[str, ...]:
    """The sha256 digests that name a vocabulary: first that of its tokens as a vocab.txt writes them (one a line,
    in id order), so that a tokenizer.json and the vocab.txt of the same tokens agree (for a vocab.txt in that form,
    as BERT's and ELECTRA's are, it is the file's digest); then the file's own, which records written before may
    hold. A SentencePiece model has its file's digest alone."""
    from electra_jax.data.token_corpus import file_sha256

    path = os.fspath(vocab_path)
    digest = file_sha256(path)
    if _is_sentencepiece(path):
        return (digest,)
    tokens = hashlib.sha256(("\n".join(load_wordpiece_vocab(path)) + "\n").encode("utf-8")).hexdigest()
    return (tokens,) if tokens == digest else (tokens, digest)


def vocab_sha256(vocab_path: str | os.PathLike) -> str:
    """The digest build_data and token corpora record of a vocabulary (the first of `vocab_digests`)."""
    return vocab_digests(vocab_path)[0]


def same_vocabulary(path: str | os.PathLike, other: str | os.PathLike) -> bool:
    """Whether two vocabulary files hold the same tokens in the same order (a vocab.txt and a tokenizer.json may)."""
    return os.path.abspath(path) == os.path.abspath(other) or bool(set(vocab_digests(path)) &
                                                                  set(vocab_digests(other)))


def _is_sentencepiece(path: str) -> bool:
    """A `.model` file, or one holding NUL bytes: a vocab.txt never does, a SentencePiece model (a binary
    protobuf with float scores) does."""
    if path.endswith(".model"):
        return True
    with open(path, "rb") as f:
        return b"\x00" in f.read(4096)


def strips_accents(lower_case: bool, strip_accents: bool | None) -> bool:
    """Whether a WordPiece tokenizer with these settings strips accents (None: exactly when lower-casing)."""
    return bool(lower_case) if strip_accents is None else bool(strip_accents)


def tokenizer(vocab_path: str | os.PathLike, lower_case: bool = True, strip_accents: bool | None = None
              ) -> Tokenizer:
    """Loads a WordPiece `vocab.txt` (or an HF `tokenizer.json` of one) or a SentencePiece `.model` (chosen by the
    file's extension/content).

    `strip_accents` None (the original) strips accents exactly when `lower_case`; see the module docstring.
    """
    path = os.fspath(vocab_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Vocabulary file {path} does not exist (pass a vocab.txt or a .model file).")
    if _is_sentencepiece(path):
        return SentencePieceTokenizer(path, lower_case=lower_case, strip_accents=strip_accents)
    return WordPieceTokenizer(path, lower_case=lower_case, strip_accents=strip_accents)
