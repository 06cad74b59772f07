"""Configs: load `path.py:arg` specs, validate them, and fill derived fields, all in one place.

Configs are ml_collections ConfigDicts built by `get_config(arg)` in the files under `configs/`.
Every entry point calls `finalize(config)` (through `load` or directly) before using a config, so
command-line overrides such as `--config.model.hidden_size=512` are validated and the derived
fields (generator sizes, padded vocabulary, max predictions per sequence) recomputed.
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path
from typing import Any

import ml_collections

REPO_ROOT = Path(__file__).resolve().parent.parent

DTYPES = ("float32", "bfloat16")
ATTENTION_IMPLS = ("xla", "cudnn", "splash", "flash")
DROPOUT_PRNGS = ("threefry", "rbg", "unsafe_rbg")
OBJECTIVES = ("electra", "mlm", "electric")
EMBEDDING_SHARING = ("tied", "untied", "gdes")
SCHEDULES = ("electra", "warmup_linear")
SHARDING_RULES = ("dp", "fsdp", "fsdp_tp")
ON_CORRUPT = ("fallback", "stop")
PROGRESS_MODES = ("auto", "bar", "log")  # train.progress: a bar on terminals and notebooks, log lines, or either
FLOAT32_MAX = 3.4028234663852886e38
RECORD_FORMATS = ("tfrecord", "numpy")
REMAT_POLICIES = ("none", "full", "dots", "dots_no_batch")


SPECIAL_FIELDS = ("pad_id", "unk_id", "cls_id", "sep_id", "mask_id")  # config.data's special-token ids


class ConfigError(ValueError):
    """A config field has a bad value; the message names the field, the value and the fix."""


def model_defaults() -> ml_collections.ConfigDict:
    """The model section; defaults equal ELECTRA-Small's discriminator (the HF ElectraConfig defaults)."""
    model = ml_collections.ConfigDict()
    model.vocab_size = 30522
    model.embedding_size = 128
    model.hidden_size = 256
    model.num_layers = 12
    model.num_heads = 4
    model.intermediate_size = 1024
    # Generator width = round(hidden_size * fraction); its heads = width // 64 and FFN = 4 x width
    # unless the explicit generator_* fields below are non-zero (0 = derive, as the original does).
    model.generator_hidden_fraction = 0.25
    model.generator_layers_fraction = 1.0
    model.generator_hidden_size = 0
    model.generator_num_heads = 0
    model.generator_intermediate_size = 0
    model.generator_num_layers = 0
    model.max_position_embeddings = 512
    model.type_vocab_size = 2
    model.hidden_dropout = 0.1
    model.attention_dropout = 0.1
    model.initializer_range = 0.02
    model.layer_norm_eps = 1e-12
    # How the generator and discriminator share the embedding block (ELECTRA_REFERENCE.md section 1.4):
    # "tied" (the original's default: one block, both losses train it); "untied" (the original's
    # untied_generator_embeddings: the generator gets its own block at its own width); "gdes" (a departure:
    # DeBERTa-v3's gradient-disentangled sharing, the discriminator's tables = stop_gradient(generator's) +
    # zero-initialised deltas that only the discriminator loss trains; see modeling.DisentangledEmbeddings).
    model.embedding_sharing = "tied"
    # The original's flag, kept as an alias: True means embedding_sharing = "untied" (finalize sets it from
    # embedding_sharing, so it always agrees after validation).
    model.untied_generator_embeddings = False
    # Compute dtype; parameters, softmax, LayerNorm statistics and losses stay float32.
    model.dtype = "float32"
    # "xla": plain softmax attention (faithful: -10000 key mask, dropout on probabilities);
    # "cudnn": fused cuDNN attention on GPU (no attention-probability dropout);
    # "splash": Pallas splash attention for TPU (no attention-probability dropout);
    # "flash": Pallas flash attention for GPU with the original's dropout on the probabilities (its dropout bits
    # come from a position hash seeded by the dropout key, not from threefry: electra_jax/flash.py).
    model.attention = "xla"
    # Which PRNG draws the dropout masks (only those: masking and sampling keep the run's threefry key).
    # "threefry" (JAX's default, the same bits on every backend and sharding); "rbg" (XLA's RngBitGenerator
    # for the bits, threefry for key splits: far cheaper on GPU, bits may differ across backends/shardings).
    model.dropout_prng = "threefry"
    # The word table is padded to a multiple of this (30522 does not divide over 8 devices); the
    # padding never shows in logits, sampling or exported checkpoints.
    model.vocab_pad_multiple = 128
    model.scan_layers = False
    model.remat = "none"
    # Derived (recomputed by finalize): the padded table size.
    model.padded_vocab_size = 0
    return model


def optim_defaults() -> ml_collections.ConfigDict:
    """The original AdamWeightDecayOptimizer settings and schedule (pre-training and fine-tuning alike)."""
    opt = ml_collections.ConfigDict()
    opt.learning_rate = 5e-4
    opt.schedule = "electra"  # linear decay from step 0 times a warmup ramp; or "warmup_linear"
    opt.warmup_steps = 10000
    opt.lr_decay_power = 1.0
    opt.end_learning_rate = 0.0
    opt.weight_decay = 0.01
    opt.adam_b1 = 0.9
    opt.adam_b2 = 0.999
    opt.adam_eps = 1e-6
    opt.bias_correction = False  # the original AdamWeightDecayOptimizer has none
    opt.clip_norm = 1.0
    opt.layerwise_lr_decay = 0.0  # fine-tuning only
    return opt


def base_pretrain_config() -> ml_collections.ConfigDict:
    """Defaults shared by every pre-training size (the original configure_pretraining.py)."""
    config = ml_collections.ConfigDict()
    config.size = "custom"
    config.model = model_defaults()

    objective = config.objective = ml_collections.ConfigDict()
    # "electra"; "mlm": BERT-style masked LM on the discriminator-sized encoder; "electric" (a departure from the
    # ELECTRA default, the original's electric_objective): a two-tower cloze generator, the discriminator as an
    # energy model trained by noise-contrastive estimation (objective.pretrain_loss).
    objective.kind = "electra"
    objective.mask_prob = 0.15
    objective.max_predictions_per_seq = 0  # 0 = int((mask_prob + 0.005) * max_seq_length), as the original
    objective.mask_token_prob = 0.85  # ELECTRA: 85% [MASK], 15% unchanged, no random tokens
    objective.random_token_prob = 0.0
    objective.mlm_mask_token_prob = 0.8  # used when kind == "mlm": BERT's 80/10/10
    objective.mlm_random_token_prob = 0.1
    objective.gen_weight = 1.0
    objective.disc_weight = 50.0
    objective.temperature = 1.0
    objective.disallow_correct = False

    config.optim = optim_defaults()

    train = config.train = ml_collections.ConfigDict()
    train.steps = 1_000_000
    train.batch_size = 128  # global
    train.seed = 0
    train.log_every = 100
    train.eval_every = 1000
    train.eval_steps = 20
    train.progress = "auto"  # "bar", "log" or "auto" (a bar on terminals and notebooks)
    train.peak_tflops_per_device = 0.0  # for MFU; 0 = the device kind's bf16 peak from a table (none on CPU)
    # 0 (faithful: the original has no such guard): a non-finite loss, gradient norm or parameter stops the run.
    # N > 0: skip such an update (params and optimizer state unchanged, the step counter advances) and stop
    # only after N in a row, as large-scale trainers do.
    train.max_skipped_updates = 0

    data = config.data = ml_collections.ConfigDict()
    data.train_files = ""
    data.eval_files = ""
    # "tfrecord": the original ELECTRA TFRecords through tf.data; "numpy": build_data --format=numpy shards,
    # memory-mapped and read without TensorFlow (electra_jax.data.numpy_records).
    data.format = "tfrecord"
    data.synthetic = False
    data.max_seq_length = 128
    data.vocab = ""  # vocab.txt or .model; also read from the records' metadata.json when empty
    data.lower_case = True
    # WordPiece: None strips accents exactly when lower-casing (the original); True/False as HF's strip_accents
    data.strip_accents = ml_collections.config_dict.placeholder(bool)
    data.shuffle_buffer = 10000  # tfrecord: the shuffle buffer; numpy: the block size of the block shuffle
    data.pad_id = 0
    data.unk_id = 100
    data.cls_id = 101
    data.sep_id = 102
    data.mask_id = 103

    checkpoint = config.checkpoint = ml_collections.ConfigDict()
    checkpoint.every_steps = 1000
    checkpoint.keep = 5
    checkpoint.async_save = True
    checkpoint.init = ""  # continue pre-training from this electra_jax checkpoint (a fresh run)
    checkpoint.reset_optimizer = False
    # An unreadable checkpoint on resume: "fallback" moves it to WORKDIR/quarantine/ and resumes from the
    # newest readable one (with a loud log line); "stop" refuses to start, naming it.
    checkpoint.on_corrupt = "fallback"

    config.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
    config.sharding = ml_collections.ConfigDict({"rules": "dp"})
    return config


def special_ids(config: ml_collections.ConfigDict) -> dict[str, int]:
    """{pad_id, unk_id, cls_id, sep_id, mask_id} of config.data."""
    return {name: int(config.data[name]) for name in SPECIAL_FIELDS}


def max_predictions_per_seq(mask_prob: float, max_seq_length: int) -> int:
    """N = int((mask_prob + 0.005) * S), as configure_pretraining.py computes it."""
    return int((mask_prob + 0.005) * max_seq_length)


def _fail(field: str, value: Any, why: str) -> None:
    raise ConfigError(f"config.{field} = {value!r}: {why}")


def _check_choice(cfg: ml_collections.ConfigDict, section: str, field: str, choices) -> None:
    value = cfg[section][field]
    if value not in choices:
        _fail(f"{section}.{field}", value, f"must be one of {list(choices)}")


def finalize_model(model: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Validates the model section and fills its derived fields (in place; also returned)."""

    def positive(field):
        if not isinstance(model[field], int) or model[field] <= 0:
            _fail(f"model.{field}", model[field], "must be a positive integer")

    for field in ("vocab_size", "embedding_size", "hidden_size", "num_layers", "num_heads",
                  "intermediate_size", "max_position_embeddings", "type_vocab_size", "vocab_pad_multiple"):
        positive(field)
    if model.hidden_size % model.num_heads:
        _fail("model.num_heads", model.num_heads,
              f"hidden_size {model.hidden_size} is not divisible by num_heads {model.num_heads}; "
              "pick a head count that divides it (the original uses hidden_size // 64)")
    for field in ("generator_hidden_fraction", "generator_layers_fraction"):
        if not 0.0 < float(model[field]) <= 1.0:
            _fail(f"model.{field}", model[field], "must be in (0, 1]")
    for field in ("hidden_dropout", "attention_dropout"):
        if not 0.0 <= float(model[field]) < 1.0:
            _fail(f"model.{field}", model[field], "must be in [0, 1)")
    if model.dtype not in DTYPES:
        _fail("model.dtype", model.dtype, f"must be one of {list(DTYPES)}")
    if model.attention not in ATTENTION_IMPLS:
        _fail("model.attention", model.attention, f"must be one of {list(ATTENTION_IMPLS)}")
    if model.remat not in REMAT_POLICIES:
        _fail("model.remat", model.remat, f"must be one of {list(REMAT_POLICIES)}")
    if model.get("dropout_prng", "threefry") not in DROPOUT_PRNGS:
        _fail("model.dropout_prng", model.dropout_prng, f"must be one of {list(DROPOUT_PRNGS)}")

    _resolve_embedding_sharing(model)

    hidden = model.generator_hidden_size or max(1, int(round(model.hidden_size * model.generator_hidden_fraction)))
    heads = model.generator_num_heads or max(1, hidden // 64)
    if hidden % heads:
        _fail("model.generator_num_heads", heads,
              f"the generator width {hidden} is not divisible by {heads} heads")
    model.generator_hidden_size = hidden
    model.generator_num_heads = heads
    model.generator_intermediate_size = model.generator_intermediate_size or 4 * hidden
    model.generator_num_layers = model.generator_num_layers or max(
        1, int(round(model.num_layers * model.generator_layers_fraction)))
    model.padded_vocab_size = int(math.ceil(model.vocab_size / model.vocab_pad_multiple) * model.vocab_pad_multiple)
    return model


def _resolve_embedding_sharing(model: ml_collections.ConfigDict) -> None:
    """embedding_sharing and its old spelling untied_generator_embeddings, made to agree (configs saved before
    embedding_sharing existed have only the old field)."""
    sharing = model.get("embedding_sharing", "tied")
    untied = bool(model.get("untied_generator_embeddings", False))
    if sharing not in EMBEDDING_SHARING:
        _fail("model.embedding_sharing", sharing, f"must be one of {list(EMBEDDING_SHARING)}")
    if untied and sharing == "gdes":
        _fail("model.untied_generator_embeddings", True,
              "contradicts model.embedding_sharing = 'gdes' (GDES shares the generator's table with the "
              "discriminator); set untied_generator_embeddings=False, or embedding_sharing='untied'")
    if untied:
        sharing = "untied"  # the deprecated alias
    model.embedding_sharing = sharing
    model.untied_generator_embeddings = sharing == "untied"


def _check_objective_model(config: ml_collections.ConfigDict) -> None:
    """Combinations of objective.kind and model fields that mean nothing, refused with the fix."""
    kind, model = config.objective.kind, config.model
    if kind == "mlm" and model.embedding_sharing != "tied":
        _fail("model.embedding_sharing", model.embedding_sharing,
              "the masked-LM baseline (objective.kind='mlm') has one network, so there is nothing to share or "
              "untie; use embedding_sharing='tied' (the default)")
    if kind == "electric" and model.attention != "xla":
        _fail("model.attention", model.attention,
              "Electric's two-tower generator needs left-to-right and right-to-left causal attention, which only "
              "the 'xla' attention implements (cuDNN has no right-to-left mask); use model.attention='xla' with "
              "objective.kind='electric'")


def _check_run_settings(config: ml_collections.ConfigDict) -> None:
    """How a run trains, logs and saves: values that would fail (or misbehave) only after the compile. Not checked
    on a checkpoint's saved config (finalize(check_run=False)), which earlier versions accepted and which no flag
    could fix."""
    train, optim, objective = config.get("train") or {}, config.get("optim") or {}, config.get("objective") or {}
    for field in ("log_every", "eval_steps", "eval_batch_size", "epochs"):  # every N steps / N batches
        if field in train and (not isinstance(train[field], int) or train[field] <= 0):
            _fail(f"train.{field}", train[field], "must be a positive integer")
    if "eval_every" in train and (not isinstance(train.eval_every, int) or train.eval_every < 0):
        _fail("train.eval_every", train.eval_every, "must be an integer >= 0 (0 = no eval during training)")
    if "progress" in train:
        _check_choice(config, "train", "progress", PROGRESS_MODES)
    if "checkpoint" in config:
        every = config.checkpoint.get("every_steps", 0)
        # Pre-training saves every `every_steps` steps; fine-tuning's 0 means "only at epoch ends and on SIGTERM".
        least = 1 if "steps" in train else 0
        if not isinstance(every, int) or every < least:
            _fail("checkpoint.every_steps", every, "must be a positive integer" if least else
                  "must be an integer >= 0 (0 = only at the end of every epoch and on SIGTERM)")
    for field in ("adam_b1", "adam_b2"):
        if field in optim and not 0.0 <= optim[field] < 1.0:
            _fail(f"optim.{field}", optim[field], "must be in [0, 1)")
    for field in ("clip_norm", "weight_decay", "adam_eps"):  # None: off, as 0 (optim.is_on)
        if field in optim and optim[field] is not None and optim[field] < 0:
            _fail(f"optim.{field}", optim[field], "must be >= 0" + (" (0 = off)" if field != "adam_eps" else ""))
    for field in ("disc_weight", "gen_weight"):
        if field in objective and objective[field] < 0:
            _fail(f"objective.{field}", objective[field], "must be >= 0")


def finalize(config: ml_collections.ConfigDict, check_run: bool = True) -> ml_collections.ConfigDict:
    """Validates a pre-training (or fine-tuning) config and fills derived fields, in place. check_run=False leaves
    out `_check_run_settings` (for the config a checkpoint was saved with)."""
    if "model" not in config:
        _fail("model", None, "every config needs a model section")
    finalize_model(config.model)
    if "objective" in config:
        _check_choice(config, "objective", "kind", OBJECTIVES)
        objective = config.objective
        if not 0.0 < objective.mask_prob < 1.0:
            _fail("objective.mask_prob", objective.mask_prob, "must be in (0, 1)")
        for field in ("mask_token_prob", "random_token_prob", "mlm_mask_token_prob", "mlm_random_token_prob"):
            if not 0.0 <= objective[field] <= 1.0:
                _fail(f"objective.{field}", objective[field], "must be in [0, 1]")
        if objective.mask_token_prob + objective.random_token_prob > 1.0:
            _fail("objective.random_token_prob", objective.random_token_prob,
                  "mask_token_prob + random_token_prob must not exceed 1")
        if objective.temperature <= 0:
            _fail("objective.temperature", objective.temperature, "must be positive")
        _check_objective_model(config)
    if "optim" in config:
        _check_choice(config, "optim", "schedule", SCHEDULES)
        if config.optim.learning_rate <= 0:
            _fail("optim.learning_rate", config.optim.learning_rate, "must be positive")
        if not config.optim.learning_rate < FLOAT32_MAX:  # the schedule is float32: 1e39 would be inf
            _fail("optim.learning_rate", config.optim.learning_rate, f"must be below {FLOAT32_MAX:.4g} (float32)")
        if config.optim.warmup_steps < 0:
            _fail("optim.warmup_steps", config.optim.warmup_steps, "must be >= 0")
        if config.optim.layerwise_lr_decay < 0 or config.optim.layerwise_lr_decay > 1:
            _fail("optim.layerwise_lr_decay", config.optim.layerwise_lr_decay, "must be in [0, 1] (0 = off)")
    if "data" in config and "format" in config.data:
        _check_choice(config, "data", "format", RECORD_FORMATS)
    if "data" in config and "max_seq_length" in config.data:
        seq = config.data.max_seq_length
        if not isinstance(seq, int) or seq < 8:
            _fail("data.max_seq_length", seq, "must be an integer >= 8")
        if seq > config.model.max_position_embeddings:
            _fail("data.max_seq_length", seq,
                  f"exceeds model.max_position_embeddings = {config.model.max_position_embeddings}")
        if "objective" in config:
            slots = config.objective.max_predictions_per_seq or max_predictions_per_seq(
                config.objective.mask_prob, seq)
            config.objective.max_predictions_per_seq = max(1, min(slots, seq))
    if "train" in config:
        for field in ("steps", "batch_size"):
            if field in config.train and (not isinstance(config.train[field], int) or config.train[field] <= 0):
                _fail(f"train.{field}", config.train[field], "must be a positive integer")
        skips = config.train.get("max_skipped_updates", 0)
        if not isinstance(skips, int) or skips < 0:
            _fail("train.max_skipped_updates", skips,
                  "must be an integer >= 0 (0 = stop at the first non-finite update)")
    if "checkpoint" in config:
        if "on_corrupt" in config.checkpoint:
            _check_choice(config, "checkpoint", "on_corrupt", ON_CORRUPT)
        keep = config.checkpoint.get("keep", 0)
        if not isinstance(keep, int) or keep < 0:
            _fail("checkpoint.keep", keep, "must be an integer >= 0 (0 = keep every checkpoint)")
    if "mesh" in config:
        for axis, size in config.mesh.items():
            if not isinstance(size, int) or (size <= 0 and size != -1):
                _fail(f"mesh.{axis}", size, "must be a positive integer or -1 (fill with the remaining devices)")
        if sum(1 for size in config.mesh.values() if size == -1) > 1:
            _fail("mesh", dict(config.mesh), "at most one axis may be -1")
    if "sharding" in config:
        _check_choice(config, "sharding", "rules", SHARDING_RULES)
    if check_run:
        _check_run_settings(config)
    return config


def _resolve(path: str) -> Path:
    candidate = Path(path)
    if candidate.exists():
        return candidate
    in_repo = REPO_ROOT / path
    if in_repo.exists():
        return in_repo
    raise ConfigError(f"config file {path!r} not found (looked in {os.getcwd()} and {REPO_ROOT})")


def load(spec: str, overrides: dict[str, Any] | None = None) -> ml_collections.ConfigDict:
    """Loads `path/to/config.py[:arg]`, applies dotted overrides, then validates and derives.

    >>> config = load("configs/pretrain.py:tiny", {"train.steps": 10})
    """
    path, _, arg = spec.partition(":")
    file = _resolve(path)
    module_spec = importlib.util.spec_from_file_location(f"_electra_config_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = module.get_config(arg) if arg else module.get_config()
    for dotted, value in (overrides or {}).items():
        node = config
        *parents, leaf = dotted.split(".")
        for name in parents:
            if name not in node:
                raise ConfigError(f"unknown config field {dotted!r} (no section {name!r})")
            node = node[name]
        if leaf not in node:
            raise ConfigError(f"unknown config field {dotted!r}; known fields here: {sorted(node.keys())}")
        node[leaf] = value
    return finalize(config)
