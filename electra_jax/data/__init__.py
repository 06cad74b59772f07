"""Data for electra_jax: tokenizers, the pre-training example builder and input pipelines.

Modules:
  tokenization     WordPiece (BERT/ELECTRA FullTokenizer-identical) and SentencePiece tokenizers behind
                   one interface; `tokenizer(vocab_path, lower_case=True)` picks by file type.
  example_builder  the original ELECTRA ExampleBuilder packing rules and TFRecord serialization.
  pipeline         `PretrainInput` (tf.data streaming of pre-training records with exact save/restore),
                   `synthetic_batches` (random tokens, no TensorFlow) and `to_global_batch`.
  numpy_records    the TF-free records format (build_data --format=numpy): memory-mapped .npy shards and
                   `NumpyRecordsInput`, PretrainInput's interface read by index (config.data.format=numpy).
  token_corpus     a tokenized, xz-compressed corpus (NAME.tokens.xz) that build_data reads like the text.
  records          a records folder's metadata.json: found, read and applied to a config in one place.
  inputs           what pre-training reads: `make_input` (records or `SyntheticInput`) for a split.
Fine-tuning task readers live with their tasks in electra_jax.finetune.

Importing this package does not import TensorFlow: only functions that read or write TFRecords or TFDS import it,
inside the function, so the model and benchmark run on machines without TensorFlow.
"""

from electra_jax.data.tokenization import (
    SPECIAL_TOKENS,
    SentencePieceTokenizer,
    WordPieceTokenizer,
    tokenizer,
)

__all__ = ["SPECIAL_TOKENS", "SentencePieceTokenizer", "WordPieceTokenizer", "tokenizer"]
