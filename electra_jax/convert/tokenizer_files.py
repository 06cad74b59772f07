"""Tokenizer files of an HF export: vocab.txt / tokenizer.json / tokenizer_config.json equal to electra_jax's ids.

torch and transformers are not needed; `tokenizers` (and sentencepiece for .model vocabularies) are imported
inside the functions.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any


HF_TOKENIZER_CLASSES = ("BertTokenizer", "PreTrainedTokenizerFast")
_SPECIALS = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
             "mask_token": "[MASK]"}


def _wordpiece_backend(tok) -> Any:
    """A `tokenizers.Tokenizer` equal to electra_jax's WordPiece (incl. the original 200-character word limit)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    from electra_jax.data.tokenization import MAX_INPUT_CHARS_PER_WORD, load_wordpiece_vocab

    vocab = {token: i for i, token in enumerate(load_wordpiece_vocab(tok.path))}
    backend = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", continuing_subword_prefix="##",
                                         max_input_chars_per_word=MAX_INPUT_CHARS_PER_WORD))
    backend.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                    strip_accents=tok.strip_accents, lowercase=tok.lower_case)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    return backend


def _sentencepiece_backend(tok) -> Any:
    """A `tokenizers.Tokenizer` Unigram rebuilt from the SentencePiece model proto.

    Lower-casing (electra_jax lower-cases before SentencePiece) comes first, then the model's own
    precompiled NFKC map and whitespace handling, then Metaspace with a dummy prefix, as spm does.
    """
    from sentencepiece import sentencepiece_model_pb2
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    proto = sentencepiece_model_pb2.ModelProto()
    with open(tok.path, "rb") as f:
        proto.ParseFromString(f.read())
    pieces = [(p.piece, p.score) for p in proto.pieces]
    model_type = proto.trainer_spec.model_type  # 1 unigram, 2 bpe
    if model_type == 1:
        model = models.Unigram(pieces, unk_id=tok.unk_id, byte_fallback=proto.trainer_spec.byte_fallback)
    else:
        raise ValueError(f"{tok.path}: SentencePiece model type {model_type} is not supported for HF export "
                         "(only unigram, build_vocab's default, is)")
    backend = Tokenizer(model)
    norm = []
    if tok.lower_case:
        norm.append(normalizers.Lowercase())
    charsmap = proto.normalizer_spec.precompiled_charsmap
    if charsmap:
        norm.append(normalizers.Precompiled(charsmap))
    if proto.normalizer_spec.remove_extra_whitespaces:
        norm += [normalizers.Replace(Regex(" {2,}"), " "), normalizers.Strip()]
    backend.normalizer = normalizers.Sequence(norm)
    scheme = "always" if proto.normalizer_spec.add_dummy_prefix else "never"
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme)
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme=scheme)
    return backend


def write_tokenizer_files(vocab_path: str, output_dir: str, model_vocab_size: int, lower_case: bool = True,
                          model_max_length: int = 512, tokenizer_class: str = "BertTokenizer",
                          strip_accents: bool | None = None) -> None:
    """Writes tokenizer files that `AutoTokenizer.from_pretrained(output_dir)` loads and that give
    electra_jax's ids (plus [CLS] ... [SEP]).

    WordPiece: `vocab.txt`, `tokenizer.json` (with the original 200-character word limit) and
    `tokenizer_config.json`. With tokenizer_class 'BertTokenizer' (the default, the class of the released
    ELECTRA models) transformers 5 rebuilds the tokenizer from vocab.txt and uses HF's 100-character
    limit; 'PreTrainedTokenizerFast' loads tokenizer.json verbatim and keeps 200. SentencePiece: the `.model`
    is copied and converted to `tokenizer.json` (class PreTrainedTokenizerFast; no HF slow tokenizer class
    takes an ELECTRA-style SentencePiece vocabulary). `strip_accents` None strips accents exactly when
    lower-casing (the original); True/False is written as HF's `strip_accents`.
    """
    from tokenizers import processors

    from electra_jax.data import tokenizer as load_tokenizer

    if tokenizer_class not in HF_TOKENIZER_CLASSES:
        raise ValueError(f"tokenizer_class {tokenizer_class!r} is not one of {list(HF_TOKENIZER_CLASSES)}")
    tok = load_tokenizer(vocab_path, lower_case=lower_case, strip_accents=strip_accents)
    if tok.vocab_size != model_vocab_size:
        raise ValueError(f"the vocabulary {vocab_path} has {tok.vocab_size} tokens but the model's vocab_size is "
                         f"{model_vocab_size}; pass the vocabulary the model was trained with (--vocab=PATH)")
    os.makedirs(output_dir, exist_ok=True)
    if tok.kind == "wordpiece":
        backend = _wordpiece_backend(tok)
        if vocab_path.endswith(".json"):  # an HF tokenizer.json: its WordPiece vocabulary, one token a line
            from electra_jax.data.tokenization import load_wordpiece_vocab

            with open(os.path.join(output_dir, "vocab.txt"), "w", encoding="utf-8") as f:
                f.write("".join(f"{token}\n" for token in load_wordpiece_vocab(vocab_path)))
        else:
            shutil.copyfile(vocab_path, os.path.join(output_dir, "vocab.txt"))
    else:
        backend = _sentencepiece_backend(tok)
        shutil.copyfile(vocab_path, os.path.join(output_dir, "sentencepiece.model"))
        tokenizer_class = "PreTrainedTokenizerFast"
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.cls_id), ("[SEP]", tok.sep_id)])
    backend.save(os.path.join(output_dir, "tokenizer.json"))
    tokenizer_config = {
        "tokenizer_class": tokenizer_class,
        "do_lower_case": bool(lower_case),
        "strip_accents": None if strip_accents is None else bool(strip_accents),  # None: as do_lower_case
        "tokenize_chinese_chars": True,
        "model_max_length": int(model_max_length),
        "clean_up_tokenization_spaces": True,
        **_SPECIALS,
    }
    with open(os.path.join(output_dir, "tokenizer_config.json"), "w") as f:
        json.dump(tokenizer_config, f, indent=2)
    with open(os.path.join(output_dir, "special_tokens_map.json"), "w") as f:
        json.dump(_SPECIALS, f, indent=2)
