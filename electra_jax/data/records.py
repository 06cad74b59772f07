"""A records folder's metadata.json: the one place that finds it, reads it and applies it to a config.

`build_data` writes DIR/metadata.json beside the record files (vocabulary path and digest, special-token ids,
vocab_size, max_seq_length, counts). Pre-training reads it through `apply_records_metadata`, and vocabulary
discovery (`electra_jax.checkpoint_formats.find_vocab`) falls back to it.
"""

from __future__ import annotations

import json
import os

import ml_collections
from absl import logging

from electra_jax import config as config_lib
from electra_jax.data.pipeline import glob_files
from electra_jax.data.tokenization import strips_accents

METADATA_FILE = "metadata.json"


def read_text(path: str) -> str:
    """A local or remote (gs://...) text file."""
    if "://" in path:
        import tensorflow as tf

        with tf.io.gfile.GFile(path) as f:
            return f.read()
    with open(path) as f:
        return f.read()


def records_metadata(file_pattern: str) -> tuple[str, dict] | None:
    """(path, contents) of the metadata.json beside the first record file matching the pattern, if any."""
    files = glob_files(file_pattern)
    if not files:
        return None
    path = os.path.join(os.path.dirname(files[0]), METADATA_FILE)
    if "://" in path:  # a missing remote file raises TensorFlow's NotFoundError, not an OSError: ask first
        import tensorflow as tf

        if not tf.io.gfile.exists(path):
            return None
    elif not os.path.exists(path):
        return None
    try:
        return path, json.loads(read_text(path))
    except (OSError, ValueError) as e:
        logging.warning("could not read %s (%s); using the config's special ids and vocab_size", path, e)
        return None


def apply_records_metadata(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Takes special ids, vocab size and vocab path from the records' metadata.json; checks the length.

    Raises ValueError naming both values when the records were built for another max_seq_length.
    """
    if config.data.synthetic or not config.data.train_files:
        return config
    found = records_metadata(config.data.train_files)
    if found is None:
        return _vocabulary_without_metadata(config)
    path, meta = found
    seq = meta.get("max_seq_length")
    if seq is not None and int(seq) != config.data.max_seq_length:
        raise ValueError(
            f"the records' {path} says max_seq_length = {seq} but config.data.max_seq_length = "
            f"{config.data.max_seq_length}; pass --config.data.max_seq_length={seq} or rebuild the records with "
            f"build_data --max_seq_length={config.data.max_seq_length}")
    for name, value in (meta.get("special_ids") or {}).items():
        if name in config_lib.SPECIAL_FIELDS and config.data[name] != int(value):
            logging.info("data.%s = %d from %s (config had %d)", name, int(value), path, config.data[name])
            config.data[name] = int(value)
    vocab_size = meta.get("vocab_size")
    if vocab_size and int(vocab_size) != config.model.vocab_size:
        logging.info("model.vocab_size = %d from %s (config had %d)", int(vocab_size), path,
                     config.model.vocab_size)
        config.model.vocab_size = int(vocab_size)
    _vocabulary_from_metadata(config, path, meta)
    return config_lib.finalize(config)


def _vocabulary_from_metadata(config: ml_collections.ConfigDict, path: str, meta: dict) -> None:
    """The vocabulary and casing the records were tokenized with go into the config, which the checkpoint keeps:
    to_hf, finetune --init and predict tokenize with them. A config.data.vocab with other contents is refused (the
    ids would be read as another vocabulary's words); the records' casing and accent handling win over
    config.data.lower_case and strip_accents, with a warning, since a cased vocabulary exported as lowercasing would
    lowercase every input."""
    configured = str(config.data.vocab or "")
    built_with, digest = meta.get("vocab"), meta.get("vocab_sha256")
    if configured and digest and "://" not in configured and os.path.isfile(configured):
        from electra_jax.data.tokenization import same_vocabulary, vocab_digests

        if digest not in vocab_digests(configured) and not (
                built_with and os.path.isfile(built_with) and same_vocabulary(configured, built_with)):
            raise ValueError(
                f"config.data.vocab={configured} is not the vocabulary the records were built with ({path} names "
                f"{built_with}, sha256 {digest[:12]}...); drop --config.data.vocab to use the records' vocabulary, "
                f"or rebuild the records with build_data --vocab={configured}")
    if built_with and not configured:
        config.data.vocab = built_with
    lower_case = meta.get("lower_case")
    if lower_case is None:
        return
    if bool(lower_case) != bool(config.data.lower_case):
        logging.warning("data.lower_case = %s from %s: the records were tokenized %s (config had %s)",
                        bool(lower_case), path, "lowercased" if lower_case else "cased", config.data.lower_case)
        config.data.lower_case = bool(lower_case)
    # Metadata written before strip_accents was recorded: the original's tie, which the build then had.
    strip_accents = meta.get("strip_accents")
    asked = config.data.get("strip_accents")
    if meta.get("vocab_kind", "wordpiece") == "wordpiece" and (
            strips_accents(lower_case, strip_accents) != strips_accents(lower_case, asked)):
        logging.warning("data.strip_accents = %s from %s: the records were tokenized %s accents (config had %s)",
                        strip_accents, path, "stripping" if strips_accents(lower_case, strip_accents) else "keeping",
                        asked)
    config.data.strip_accents = None if strip_accents is None else bool(strip_accents)


def _vocabulary_without_metadata(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Records with no metadata.json (the original ELECTRA's, or shards copied without it): the special ids and the
    vocabulary size come from config.data.vocab when one is named, not from the BERT defaults, which would mask
    with whatever word sits at id 103 of another vocabulary."""
    if not config.data.vocab or "://" in config.data.vocab:
        logging.warning("no metadata.json beside %s and no local config.data.vocab: the special ids and vocab size "
                        "are the config's (BERT's unless overridden); pass --config.data.vocab=PATH (a local file) to "
                        "take them from the vocabulary", config.data.train_files)
        return config
    from electra_jax.data.tokenization import tokenizer

    vocab = tokenizer(config.data.vocab, lower_case=config.data.lower_case)
    changed = [f"data.{name} {config.data[name]} -> {value}" for name, value in vocab.special_ids.items()
               if config.data[name] != value]
    if vocab.vocab_size != config.model.vocab_size:
        changed.append(f"model.vocab_size {config.model.vocab_size} -> {vocab.vocab_size}")
    if changed:
        logging.warning("no metadata.json beside %s: taking the special ids and vocab size from config.data.vocab=%s "
                        "(%s)", config.data.train_files, config.data.vocab, ", ".join(changed))
    for name, value in vocab.special_ids.items():
        config.data[name] = int(value)
    config.model.vocab_size = int(vocab.vocab_size)
    return config_lib.finalize(config)


def metadata_vocab(file_patterns: str) -> tuple[str, bool | None] | None:
    """(vocabulary path, lower_case or None) named by the metadata.json of any comma-separated pattern, if the
    vocabulary exists here."""
    for pattern in str(file_patterns or "").split(","):
        found = records_metadata(pattern) if pattern else None
        if found is None:
            continue
        meta = found[1]
        vocab = meta.get("vocab")
        if vocab and ("://" in vocab or os.path.isfile(vocab)):
            lower_case = meta.get("lower_case")
            return vocab, None if lower_case is None else bool(lower_case)
    return None
