r"""Trains a WordPiece `vocab.txt` or a SentencePiece `.model`/`.vocab` on text files.

  python -m electra_jax.build_vocab --input='corpus/*.txt' --vocab_size=30522 --kind=wordpiece \
      --output=vocab/vocab.txt
  python -m electra_jax.build_vocab --input='corpus/*.txt' --vocab_size=32000 --kind=sentencepiece \
      --output=vocab/sp.model

Both kinds put [PAD] [UNK] [CLS] [SEP] [MASK] at ids 0..4. WordPiece uses the BERT normalizer (clean text,
CJK spacing, lower-case + strip accents when --lower_case) so `electra_jax.data.tokenizer` reproduces
the same segmentation. Files are read as UTF-8 with a Latin-1 fallback.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

from absl import app, flags, logging

from electra_jax.data.example_builder import expand_text_globs, read_text_file
from electra_jax.data.tokenization import SPECIAL_TOKENS

FLAGS = flags.FLAGS


def iter_lines(files: Sequence[str], lower_case: bool = False) -> Iterator[str]:
    for path in files:
        for line in read_text_file(path).split("\n"):
            line = line.strip()
            if line:
                yield line.lower() if lower_case else line


def train_wordpiece(files: Sequence[str], vocab_size: int, output: str, lower_case: bool = True,
                    limit_alphabet: int = 1000, min_frequency: int = 2) -> str:
    """Trains a BERT WordPiece vocabulary with HF tokenizers and writes it as vocab.txt to `output`."""
    from tokenizers import BertWordPieceTokenizer

    tok = BertWordPieceTokenizer(clean_text=True, handle_chinese_chars=True, strip_accents=lower_case,
                                 lowercase=lower_case)
    # train_from_iterator (not train(files)) so Latin-1 files go through our decoding fallback.
    tok.train_from_iterator(iter_lines(files), vocab_size=vocab_size, min_frequency=min_frequency,
                            limit_alphabet=limit_alphabet, special_tokens=list(SPECIAL_TOKENS),
                            wordpieces_prefix="##", show_progress=False)
    vocab = tok.get_vocab()
    tokens = sorted(vocab, key=vocab.__getitem__)
    assert tokens[:5] == list(SPECIAL_TOKENS), tokens[:5]
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w", encoding="utf-8") as f:
        f.write("\n".join(tokens) + "\n")
    return output


def train_sentencepiece(files: Sequence[str], vocab_size: int, output: str, lower_case: bool = True,
                        model_type: str = "unigram", character_coverage: float = 0.9995,
                        input_sentence_size: int = 10_000_000) -> str:
    """Trains a SentencePiece model; writes `output` (.model) and the matching .vocab beside it."""
    import sentencepiece as spm

    prefix = output[:-len(".model")] if output.endswith(".model") else output
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter_lines(files, lower_case=lower_case), model_prefix=prefix,
        vocab_size=vocab_size, model_type=model_type, character_coverage=character_coverage,
        input_sentence_size=input_sentence_size, shuffle_input_sentence=True,
        # [PAD]=0 [UNK]=1, then the control symbols [CLS]=2 [SEP]=3 [MASK]=4; control symbols are never
        # produced from raw text, like the original WordPiece which does not protect special tokens.
        pad_id=0, unk_id=1, bos_id=-1, eos_id=-1, pad_piece="[PAD]", unk_piece="[UNK]",
        control_symbols=list(SPECIAL_TOKENS[2:]), hard_vocab_limit=False, minloglevel=2)
    return prefix + ".model"


def define_flags() -> None:
    """Defines the command-line flags (only when run as a program, so the tools can be imported together)."""
    flags.DEFINE_string("input", None, "Glob (or comma-separated globs) of text files, one sentence per line.")
    flags.DEFINE_integer("vocab_size", 30522, "Vocabulary size, the five special tokens included.")
    flags.DEFINE_enum("kind", "wordpiece", ["wordpiece", "sentencepiece"], "Kind of vocabulary to train.")
    flags.DEFINE_string("output", None, "vocab.txt path (wordpiece) or .model path (sentencepiece; a .vocab "
                        "is written beside it).")
    flags.DEFINE_bool("lower_case", True, "Lower-case (and, for wordpiece, strip accents) before training.")
    flags.DEFINE_integer("limit_alphabet", 1000, "WordPiece: most initial characters kept.")
    flags.DEFINE_integer("min_frequency", 2, "WordPiece: minimum pair frequency for a merge.")
    flags.DEFINE_enum("model_type", "unigram", ["unigram", "bpe"], "SentencePiece model type.")
    flags.DEFINE_float("character_coverage", 0.9995, "SentencePiece character coverage.")
    flags.DEFINE_integer("input_sentence_size", 10_000_000, "SentencePiece: most sentences sampled for training.")


def _has_text(path: str) -> bool:
    """Whether the file holds a line that is not blank (read line by line: a corpus file may be large)."""
    with open(path, "rb") as f:
        return any(line.strip() for line in f)


def main(argv: Sequence[str]) -> None:
    del argv
    if not FLAGS.input or not FLAGS.output:
        raise app.UsageError("--input and --output are required.")
    files = expand_text_globs(FLAGS.input)
    if not any(_has_text(path) for path in files):
        raise ValueError(f"--input={FLAGS.input}: the {len(files)} file(s) hold no text (empty or only blank "
                         "lines); a vocabulary needs text, one sentence per line")
    output = FLAGS.output
    if os.path.isdir(output):  # a folder: use the conventional file name inside it
        output = os.path.join(output, "vocab.txt" if FLAGS.kind == "wordpiece" else "sp.model")
    logging.info("Training a %s vocabulary of %d on %d files", FLAGS.kind, FLAGS.vocab_size, len(files))
    if FLAGS.kind == "wordpiece":
        out = train_wordpiece(files, FLAGS.vocab_size, output, FLAGS.lower_case,
                              FLAGS.limit_alphabet, FLAGS.min_frequency)
    else:
        out = train_sentencepiece(files, FLAGS.vocab_size, output, FLAGS.lower_case,
                                  FLAGS.model_type, FLAGS.character_coverage, FLAGS.input_sentence_size)
    from electra_jax.data.tokenization import tokenizer

    tok = tokenizer(out, lower_case=FLAGS.lower_case)  # validates the specials and that it loads
    print(f"Wrote {out}: vocab_size={tok.vocab_size}, special ids {tok.special_ids}")
    if tok.vocab_size > FLAGS.vocab_size:
        logging.warning("--vocab_size=%d is below what the five special tokens and the corpus's alphabet need: the "
                        "vocabulary has %d entries (no word pieces beyond single characters)", FLAGS.vocab_size,
                        tok.vocab_size)
    elif tok.vocab_size < FLAGS.vocab_size:
        logging.warning("the vocabulary has %d entries, fewer than --vocab_size=%d: the corpus has no more pieces "
                        "that occur often enough (--min_frequency) to add", tok.vocab_size, FLAGS.vocab_size)


if __name__ == "__main__":
    from electra_jax import cli

    define_flags()
    flags.mark_flags_as_required(["input", "output"])
    cli.run(main)
