"""Every checkpoint format electra_jax reads, behind one door: `open_checkpoint(path)`.

    checkpoint = open_checkpoint("runs/small")      # or an HF folder, a `convert to_hf` output, a TF checkpoint
    checkpoint.params, checkpoint.config, checkpoint.vocab, checkpoint.kind

Formats, recognised in this order:
  electra_jax  a pre-training workdir, its checkpoints/ folder, one step folder, or a params-only export
               (`checkpoints.restore_params`; the latest step of a workdir);
  to_hf        the OUT folder `convert to_hf` writes, holding discriminator/ and generator/ HF folders;
  hf           one HF ELECTRA folder (config.json + model.safetensors or pytorch_model.bin). A `discriminator`
               folder picks up the `generator` folder beside it; a masked-LM baseline export (generator/ only)
               opens as the masked-LM model;
  tf           an original google-research/electra TF checkpoint: a prefix with a .index file, or a folder
               holding one (the latest by step number).
The vocabulary is found where the format keeps it (config.data.vocab or the records' metadata.json for
electra_jax checkpoints; vocab.txt / sentencepiece.model in HF folders; a vocab.txt beside a TF checkpoint) and
written into the returned config's data.vocab, so `find_vocab(checkpoint.config)` is the one lookup every
tool makes. torch, transformers and TensorFlow load only when their format is opened.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from typing import Any

import ml_collections
from absl import logging

from electra_jax import checkpoints as checkpoints_lib
from electra_jax import modeling

KINDS = ("electra_jax", "to_hf", "hf", "tf")
# tokenizer.json last: transformers 5's save_pretrained writes it (and tokenizer_config.json) without vocab.txt.
HF_VOCAB_FILES = ("vocab.txt", "sentencepiece.model", "spiece.model", "tokenizer.json")
# Tokenizer classes that load tokenizer.json as written (its normalizer, not tokenizer_config.json's casing).
FAST_AS_WRITTEN = ("PreTrainedTokenizerFast", "TokenizersBackend")


@dataclasses.dataclass
class Checkpoint:
    """What `open_checkpoint` found: host numpy params (canonical unstacked layout) and the full config."""

    params: dict
    config: ml_collections.ConfigDict
    kind: str  # one of KINDS
    path: str  # what was read: the step folder, the HF discriminator folder, the TF prefix, ...
    report: Any = None  # the TF import report (optimizer slots, unknown variables) for kind "tf"

    @property
    def vocab(self) -> str | None:
        return str(self.config.data.get("vocab", "") or "") or None

    @property
    def lower_case(self) -> bool:
        return bool(self.config.data.get("lower_case", True))

    @property
    def strip_accents(self) -> bool | None:
        """None: accents are stripped exactly when lower-casing (the original)."""
        return self.config.data.get("strip_accents")


# ---------------------------------------------------------------------------------------------------------
# Format detection


def _is_hf_folder(path: str) -> bool:
    config_json = os.path.join(path, "config.json")
    if not os.path.isfile(config_json):
        return False
    try:
        with open(config_json) as f:
            return "model_type" in json.load(f)
    except (OSError, json.JSONDecodeError):
        return False


def hf_folders(path: str, generator: str | None = None) -> tuple[str, str | None] | None:
    """(main HF folder, generator folder or None) when `path` is an HF export; None otherwise."""
    if _is_hf_folder(os.path.join(path, "discriminator")):  # the OUT folder of `convert to_hf`
        gen = generator or os.path.join(path, "generator")
        return os.path.join(path, "discriminator"), gen if _is_hf_folder(gen) else None
    if _is_hf_folder(path):
        if generator is None:
            # The discriminator folder of a `convert to_hf` export has its generator beside it.
            sibling = os.path.join(os.path.dirname(os.path.abspath(path)), "generator")
            if os.path.basename(os.path.abspath(path)) == "discriminator" and _is_hf_folder(sibling):
                generator = sibling
        return path, generator
    if _is_hf_folder(os.path.join(path, "generator")):  # only a generator was exported (a masked-LM baseline)
        return os.path.join(path, "generator"), None
    return None


def tf_checkpoint_prefix(path: str) -> str | None:
    """The checkpoint prefix when `path` is an original TF checkpoint (PREFIX.index exists), else None."""
    if os.path.isfile(path + ".index"):
        return path
    if os.path.isdir(path):
        indexes = glob.glob(os.path.join(path, "*.index"))
        if indexes:
            def step(p):
                digits = "".join(ch for ch in os.path.basename(p).split("-")[-1] if ch.isdigit())
                return int(digits) if digits else -1
            return max(indexes, key=step)[: -len(".index")]
    return None


def detect(path: str) -> str:
    """The format of `path` (one of KINDS); FileNotFoundError when nothing is there."""
    if "://" not in path and not os.path.exists(path) and not os.path.isfile(path + ".index"):
        raise FileNotFoundError(f"{path} does not exist")
    if "://" in path:
        return "electra_jax"  # remote (gs://) paths hold electra_jax checkpoints
    if os.path.isdir(path) and _is_hf_folder(os.path.join(path, "discriminator")):
        return "to_hf"
    if os.path.isdir(path) and hf_folders(path) is not None:
        return "hf"
    if tf_checkpoint_prefix(path) is not None:
        return "tf"
    return "electra_jax"


# ---------------------------------------------------------------------------------------------------------
# Opening


def hf_vocab(folder: str) -> tuple[str | None, bool, bool | None]:
    """(vocabulary file in an HF folder or None, do_lower_case, strip_accents), as HF's AutoTokenizer reads them.

    The casing comes from tokenizer_config.json (BertTokenizer/ElectraTokenizer default to lower-casing, and
    strip_accents None strips exactly when lower-casing, as the original); a PreTrainedTokenizerFast applies
    tokenizer.json as written, so its BertNormalizer decides. A tokenizer.json is a vocabulary only when it holds
    a WordPiece model (a Unigram or BPE one is left out, with a warning).
    """
    from electra_jax.data import tokenization

    tokenizer_config = os.path.join(folder, "tokenizer_config.json")
    settings = {}
    if os.path.isfile(tokenizer_config):
        with open(tokenizer_config) as f:
            settings = json.load(f)
    lower_case, strip_accents = settings.get("do_lower_case", True), settings.get("strip_accents")
    spec = os.path.join(folder, "tokenizer.json")
    spec_model = tokenization.tokenizer_json_model(spec) if os.path.isfile(spec) else None
    as_written = settings.get("tokenizer_class") in FAST_AS_WRITTEN and os.path.isfile(spec)
    found = [os.path.join(folder, name) for name in HF_VOCAB_FILES if os.path.isfile(os.path.join(folder, name))]
    if as_written and spec_model == "WordPiece":
        found.insert(0, spec)  # a PreTrainedTokenizerFast tokenizes with it, whatever a vocab.txt beside it holds
    vocab = found[0] if found else None
    if vocab == spec and spec_model != "WordPiece":
        logging.warning("%s holds a %s model, not a WordPiece vocabulary: no vocabulary imported from %s (pass "
                        "the checkpoint's vocab.txt or .model with --vocab)", spec, spec_model, folder)
        vocab = None
    if as_written:
        casing = tokenization.tokenizer_json_casing(spec)
        if casing is not None:
            lower_case, strip_accents = casing
    return vocab, bool(lower_case), None if strip_accents is None else bool(strip_accents)


def open_checkpoint(path: str, generator: str | None = None, flag: str = "checkpoint") -> Checkpoint:
    """Params, config and vocabulary of any supported checkpoint (see the module docstring).

    `generator` names an HF ElectraForMaskedLM folder to pair with an HF discriminator folder; `flag` is how
    the caller's user passed `path` (e.g. "--init"), for the error messages.
    """
    path = os.fspath(path)
    try:
        kind = detect(path)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{flag}={path} does not exist (expected an electra_jax workdir, checkpoint folder or params export, "
            "an HF ELECTRA folder with config.json, the output folder of `convert to_hf`, or an original TF "
            "checkpoint prefix)") from None
    if kind in ("to_hf", "hf"):
        from electra_jax import convert

        folder, generator_folder = hf_folders(path, generator)
        params, config = convert.load_hf(folder, generator_folder)
        return Checkpoint(params, config, kind, folder)
    if kind == "tf":
        from electra_jax import convert

        prefix = tf_checkpoint_prefix(path)
        params, config, report = convert.from_tf_checkpoint(prefix)
        if not config.data.vocab:
            for folder in (os.path.dirname(prefix), os.path.dirname(os.path.dirname(prefix))):
                if os.path.isfile(os.path.join(folder, "vocab.txt")):
                    config.data.vocab = os.path.join(folder, "vocab.txt")
                    break
        note = convert.set_casing(config)
        report.notes.extend([note] if note else [])
        unknown = f" (e.g. {', '.join(report.unknown[:3])})" if report.unknown else ""
        logging.info("read the TF checkpoint %s: %d variables at global_step %s; not imported: %d optimizer slots, "
                     "%d unknown variables%s%s", prefix, len(report.loaded), report.global_step,
                     len(report.optimizer_slots), len(report.unknown), unknown,
                     "".join(f"; {note}" for note in report.notes))
        return Checkpoint(params, config, kind, prefix, report=report)
    params, config = checkpoints_lib.restore_params(path)
    found = _records_vocab(config) if not _existing(config.data.get("vocab", "")) else None
    if found is not None:
        config.data.vocab, lower_case = found
        if lower_case is not None:
            config.data.lower_case = lower_case
    return Checkpoint(modeling.unstack_layers(dict(params)), config, kind, path)


def _existing(path: str) -> bool:
    return bool(path) and ("://" in path or os.path.isfile(path))


def _records_vocab(config: ml_collections.ConfigDict) -> tuple[str, bool | None] | None:
    from electra_jax.data.records import metadata_vocab

    return metadata_vocab(str(config.data.get("train_files", "") or ""))


# ---------------------------------------------------------------------------------------------------------
# Vocabulary


def find_vocab(config: ml_collections.ConfigDict, vocab: str | None = None, flag: str = "--vocab"
               ) -> tuple[str, bool]:
    """(vocabulary path, lower_case): `vocab` if given, else config.data.vocab, else the records' metadata.json."""
    data = config.get("data", ml_collections.ConfigDict())
    lower_case = bool(data.get("lower_case", True))
    if vocab:
        if not _existing(vocab):
            raise FileNotFoundError(f"{flag}={vocab} does not exist")
        return vocab, lower_case
    configured = str(data.get("vocab", "") or "")
    if configured:
        if _existing(configured):
            return configured, lower_case
        raise FileNotFoundError(f"the checkpoint's config.data.vocab={configured} does not exist here; pass "
                                f"{flag}=PATH to the same vocabulary")
    found = _records_vocab(config)
    if found is not None:
        return found[0], lower_case if found[1] is None else found[1]
    raise ValueError(f"no vocabulary found: config.data.vocab is empty and no metadata.json beside "
                     f"config.data.train_files names one; pass {flag}=PATH (vocab.txt or .model)")
