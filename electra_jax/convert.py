r"""Conversion between electra_jax checkpoints, HF transformers ELECTRA folders and original TF checkpoints.

  python -m electra_jax.convert to_hf --checkpoint=WORKDIR --output_dir=OUT [--dtype=bfloat16] [--vocab=PATH]
  python -m electra_jax.convert from_hf --input=HF_DISC_DIR [--generator=HF_GEN_DIR] --output_dir=OUT
  python -m electra_jax.convert from_tf --input=TF_CKPT --output_dir=OUT
  python -m electra_jax.convert check --checkpoint=ELECTRA_JAX_CKPT --hf_dir=OUT

One mapping table (`hf_rules`) drives every direction. Each `Rule` names an electra_jax parameter path,
the HF parameter name and how the tensor changes on the way; the original TF variable name is derived
from the same rule (`Rule.tf`), so there is no second table to drift. Transforms:
  * "dense":      flax kernel [in, out]  <-> torch weight [out, in] (transpose); TF kernels are [in, out] too
  * "qkv":        flax kernel [H, heads, head_dim] <-> torch [heads*head_dim, H] / TF [H, heads*head_dim]
  * "qkv_bias":   flax bias [heads, head_dim] <-> [heads*head_dim]
  * "attn_out":   flax kernel [heads, head_dim, H] <-> torch [H, heads*head_dim] / TF [heads*head_dim, H]
  * "vocab":      the padded word table [Vp, E] <-> [V, E] (padding rows cut on export, zero on import)
  * "vocab_bias": the padded output bias [Vp] <-> [V]
  * "copy":       unchanged (LayerNorm scale/bias, position and token-type tables, dense biases)
The shared embedding block is written into both HF models (each HF model owns its own copy).

torch, transformers, tensorflow, safetensors and tokenizers are imported only inside the functions that
need them, so this module imports without them.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
import shutil
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from electra_jax import cli, modeling
from electra_jax.config import base_pretrain_config, finalize, finalize_model, model_defaults

# Optimizer slot suffixes of the original AdamWeightDecayOptimizer (adam_m/adam_v) and of tf.train.AdamOptimizer.
_TF_SLOT_SUFFIXES = ("/adam_m", "/adam_v", "/Adam", "/Adam_1", "/Momentum")


@dataclasses.dataclass(frozen=True)
class Rule:
    """One tensor: its electra_jax path (canonical unstacked layout), HF name and transform kind."""

    path: tuple
    hf: str
    kind: str

    @property
    def tf(self) -> str:
        """The original google-research/electra variable name, derived from the HF name.

        This inverts transformers' `load_tf_weights_in_electra` renames (ELECTRA_REFERENCE 7.2): the
        generator's own encoder, projection and untied embeddings live under `generator/`, the shared
        embeddings under `electra/embeddings/`; `dense_prediction` was `dense_1`, LayerNorm weight/bias were
        gamma/beta, other weights `kernel`, and embedding tables have no suffix.
        """
        if self.hf == "generator_lm_head.bias":
            return "generator_predictions/output_bias"
        name = self.hf
        if self.path[0] in ("generator", "generator_embeddings"):
            name = "generator." + name[len("electra."):]
        name = re.sub(r"\.layer\.(\d+)\.", r".layer_\1.", name).replace("dense_prediction", "dense_1")
        *parts, last = name.split(".")
        if parts[-1].endswith("_embeddings"):
            pass
        elif parts[-1] == "LayerNorm":
            parts.append("gamma" if last == "weight" else "beta")
        else:
            parts.append("kernel" if last == "weight" else "bias")
        return "/".join(parts)


def _encoder_rules(jax_prefix: tuple, hf_prefix: str, num_layers: int, has_project: bool) -> list[Rule]:
    rules = []
    if has_project:
        rules += [Rule(jax_prefix + ("embeddings_project", "kernel"), f"{hf_prefix}embeddings_project.weight", "dense"),
                  Rule(jax_prefix + ("embeddings_project", "bias"), f"{hf_prefix}embeddings_project.bias", "copy")]
    for i in range(num_layers):
        layer = jax_prefix + (f"layer_{i}",)
        hf = f"{hf_prefix}encoder.layer.{i}."
        for name in ("query", "key", "value"):
            rules += [Rule(layer + (name, "kernel"), f"{hf}attention.self.{name}.weight", "qkv"),
                      Rule(layer + (name, "bias"), f"{hf}attention.self.{name}.bias", "qkv_bias")]
        rules += [
            Rule(layer + ("attention_output", "kernel"), f"{hf}attention.output.dense.weight", "attn_out"),
            Rule(layer + ("attention_output", "bias"), f"{hf}attention.output.dense.bias", "copy"),
            Rule(layer + ("attention_LayerNorm", "scale"), f"{hf}attention.output.LayerNorm.weight", "copy"),
            Rule(layer + ("attention_LayerNorm", "bias"), f"{hf}attention.output.LayerNorm.bias", "copy"),
            Rule(layer + ("intermediate", "kernel"), f"{hf}intermediate.dense.weight", "dense"),
            Rule(layer + ("intermediate", "bias"), f"{hf}intermediate.dense.bias", "copy"),
            Rule(layer + ("output", "kernel"), f"{hf}output.dense.weight", "dense"),
            Rule(layer + ("output", "bias"), f"{hf}output.dense.bias", "copy"),
            Rule(layer + ("output_LayerNorm", "scale"), f"{hf}output.LayerNorm.weight", "copy"),
            Rule(layer + ("output_LayerNorm", "bias"), f"{hf}output.LayerNorm.bias", "copy"),
        ]
    return rules


def _embedding_rules(jax_prefix: tuple, hf_prefix: str) -> list[Rule]:
    return [
        Rule(jax_prefix + ("word_embeddings",), f"{hf_prefix}embeddings.word_embeddings.weight", "vocab"),
        Rule(jax_prefix + ("position_embeddings",), f"{hf_prefix}embeddings.position_embeddings.weight", "copy"),
        Rule(jax_prefix + ("token_type_embeddings",), f"{hf_prefix}embeddings.token_type_embeddings.weight", "copy"),
        Rule(jax_prefix + ("LayerNorm", "scale"), f"{hf_prefix}embeddings.LayerNorm.weight", "copy"),
        Rule(jax_prefix + ("LayerNorm", "bias"), f"{hf_prefix}embeddings.LayerNorm.bias", "copy"),
    ]


def hf_rules(cfg: modeling.ModelConfig) -> tuple[list[Rule], list[Rule]]:
    """(discriminator rules, generator rules) for the HF ElectraForPreTraining / ElectraForMaskedLM pair.

    For the masked-LM baseline (`cfg.mlm_only`) the discriminator list holds the embeddings and encoder only
    (there is no replaced-token head) and the generator list is that encoder plus the generator head.
    """
    disc = _embedding_rules(("embeddings",), "electra.")
    disc += _encoder_rules(("discriminator",), "electra.", cfg.num_layers, cfg.embedding_size != cfg.hidden_size)
    if cfg.mlm_only:
        # The masked-LM baseline exports as one ElectraForMaskedLM whose encoder is the discriminator's.
        gen = list(disc)
    else:
        disc += [
            Rule(("discriminator_predictions", "dense", "kernel"), "discriminator_predictions.dense.weight", "dense"),
            Rule(("discriminator_predictions", "dense", "bias"), "discriminator_predictions.dense.bias", "copy"),
            Rule(("discriminator_predictions", "dense_prediction", "kernel"),
                 "discriminator_predictions.dense_prediction.weight", "dense"),
            Rule(("discriminator_predictions", "dense_prediction", "bias"),
                 "discriminator_predictions.dense_prediction.bias", "copy"),
        ]
        if cfg.untied_generator_embeddings:
            gen = _embedding_rules(("generator_embeddings",), "electra.")
            gen_table = cfg.generator_hidden_size
        else:
            gen = _embedding_rules(("embeddings",), "electra.")
            gen_table = cfg.embedding_size
        gen += _encoder_rules(("generator",), "electra.", cfg.generator_num_layers,
                              gen_table != cfg.generator_hidden_size)
    gen += [
        Rule(("generator_predictions", "dense", "kernel"), "generator_predictions.dense.weight", "dense"),
        Rule(("generator_predictions", "dense", "bias"), "generator_predictions.dense.bias", "copy"),
        Rule(("generator_predictions", "LayerNorm", "scale"), "generator_predictions.LayerNorm.weight", "copy"),
        Rule(("generator_predictions", "LayerNorm", "bias"), "generator_predictions.LayerNorm.bias", "copy"),
        Rule(("generator_predictions", "output_bias"), "generator_lm_head.bias", "vocab_bias"),
    ]
    return disc, gen


def tf_rules(cfg: modeling.ModelConfig) -> list[Rule]:
    """Every rule of one original TF checkpoint (both networks, shared embeddings once), in table order."""
    disc, gen = hf_rules(cfg)
    seen, out = set(), []
    for rule in disc + gen:
        if rule.path not in seen:
            seen.add(rule.path)
            out.append(rule)
    return out


def _export_tensor(x: np.ndarray, kind: str, cfg: modeling.ModelConfig, torch_layout: bool = True) -> np.ndarray:
    """electra_jax tensor -> HF (torch_layout) or original TF layout, float32."""
    x = np.asarray(x, np.float32)
    if kind == "dense":
        x = x.T if torch_layout else x
    elif kind == "qkv":
        x = x.reshape(x.shape[0], -1)
        x = x.T if torch_layout else x
    elif kind == "qkv_bias":
        x = x.reshape(-1)
    elif kind == "attn_out":
        x = x.reshape(-1, x.shape[-1])
        x = x.T if torch_layout else x
    elif kind in ("vocab", "vocab_bias"):
        x = x[: cfg.vocab_size]
    return np.ascontiguousarray(x)


def _import_tensor(x: np.ndarray, kind: str, shape: tuple, cfg: modeling.ModelConfig, name: str,
                   torch_layout: bool = True) -> np.ndarray:
    """HF (torch_layout) or original TF tensor -> electra_jax tensor of `shape`, with a clear shape error."""
    x = np.asarray(x, np.float32)
    expected_external = _export_tensor(np.zeros(shape, np.float32), kind, cfg, torch_layout).shape
    if kind in ("vocab", "vocab_bias") and x.shape[:1] != expected_external[:1]:
        raise ValueError(f"{name}: {x.shape[0]} vocabulary rows, but the config says vocab_size {cfg.vocab_size}")
    if tuple(x.shape) != tuple(expected_external):
        raise ValueError(f"{name}: shape {tuple(x.shape)} does not match the expected {tuple(expected_external)} "
                         f"(electra_jax parameter of shape {tuple(shape)}, transform '{kind}'); the tensors and "
                         "the config (hidden size, heads, embedding size, vocab_size) disagree")
    if kind in ("dense", "qkv", "attn_out") and torch_layout:
        x = x.T
    if kind in ("vocab", "vocab_bias"):
        x = np.pad(x, [(0, shape[0] - x.shape[0])] + [(0, 0)] * (x.ndim - 1))
    return np.ascontiguousarray(x.reshape(shape))


def _get(tree, path):
    for key in path:
        tree = tree[key]
    return tree


def _has(tree, path) -> bool:
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return False
        tree = tree[key]
    return True


def _set(tree, path, value):
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def has_generator(params: dict) -> bool:
    """True when the parameters hold a generator head (a pre-training checkpoint, not a fine-tuning import)."""
    return "generator_predictions" in params


def hf_config_dict(cfg: modeling.ModelConfig, generator: bool, dtype: str = "float32") -> dict[str, Any]:
    """The `config.json` of the HF ElectraForPreTraining (discriminator) or ElectraForMaskedLM (generator)."""
    if generator and not cfg.mlm_only:
        hidden, layers, heads, inter = (cfg.generator_hidden_size, cfg.generator_num_layers,
                                        cfg.generator_num_heads, cfg.generator_intermediate_size)
        embedding = cfg.generator_hidden_size if cfg.untied_generator_embeddings else cfg.embedding_size
    else:
        hidden, layers, heads, inter = cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.intermediate_size
        embedding = cfg.embedding_size
    return {
        "architectures": ["ElectraForMaskedLM" if generator else "ElectraForPreTraining"],
        "model_type": "electra",
        "vocab_size": cfg.vocab_size,
        "embedding_size": embedding,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": inter,
        "hidden_act": "gelu",
        "hidden_dropout_prob": cfg.hidden_dropout,
        "attention_probs_dropout_prob": cfg.attention_dropout,
        "max_position_embeddings": cfg.max_position_embeddings,
        "type_vocab_size": cfg.type_vocab_size,
        "initializer_range": cfg.initializer_range,
        "layer_norm_eps": cfg.layer_norm_eps,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "tie_word_embeddings": True,
        "dtype": dtype,
    }


def to_hf_state_dicts(params, config) -> tuple[dict | None, dict | None, tuple[dict | None, dict | None]]:
    """electra_jax parameters -> (disc_state_dict, gen_state_dict, (disc_hf_config, gen_hf_config)).

    State dicts map HF parameter names to float32 numpy arrays. The generator's `generator_lm_head.weight`
    is tied to its word embeddings and is included as the same array. Parameters without a generator (a
    discriminator-only import) give `None` for the generator; the masked-LM baseline (objective.kind='mlm')
    gives `None` for the discriminator (it has no replaced-token head).
    """
    cfg = modeling.ModelConfig.from_config(config)
    params = modeling.unstack_layers(jax.device_get(params))
    disc_rules, gen_rules = hf_rules(cfg)
    disc = gen = disc_config = gen_config = None
    if not cfg.mlm_only:
        disc = {r.hf: _export_tensor(_get(params, r.path), r.kind, cfg) for r in disc_rules}
        disc_config = hf_config_dict(cfg, generator=False)
    if has_generator(params):
        gen = {r.hf: _export_tensor(_get(params, r.path), r.kind, cfg) for r in gen_rules}
        gen["generator_lm_head.weight"] = gen["electra.embeddings.word_embeddings.weight"]
        gen_config = hf_config_dict(cfg, generator=True)
    return disc, gen, (disc_config, gen_config)


def model_config_from_hf(disc_hf_config: dict, gen_hf_config: dict | None = None) -> ml_collections.ConfigDict:
    """An electra_jax model section equivalent to the given HF config.json dicts."""
    m = model_defaults()
    c = disc_hf_config
    act = c.get("hidden_act", "gelu")
    if act != "gelu":
        raise ValueError(f"hidden_act {act!r} is not supported; ELECTRA uses the exact 'gelu'")
    if c.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError("only absolute position embeddings are supported")
    m.vocab_size = int(c["vocab_size"])
    m.embedding_size = int(c.get("embedding_size", c["hidden_size"]))
    m.hidden_size = int(c["hidden_size"])
    m.num_layers = int(c["num_hidden_layers"])
    m.num_heads = int(c["num_attention_heads"])
    m.intermediate_size = int(c["intermediate_size"])
    m.max_position_embeddings = int(c.get("max_position_embeddings", 512))
    m.type_vocab_size = int(c.get("type_vocab_size", 2))
    m.hidden_dropout = float(c.get("hidden_dropout_prob", 0.1))
    m.attention_dropout = float(c.get("attention_probs_dropout_prob", 0.1))
    m.initializer_range = float(c.get("initializer_range", 0.02))
    m.layer_norm_eps = float(c.get("layer_norm_eps", 1e-12))
    if gen_hf_config is not None:
        g = gen_hf_config
        if int(g["vocab_size"]) != m.vocab_size:
            raise ValueError(f"generator vocab_size {g['vocab_size']} differs from the discriminator's "
                             f"{m.vocab_size}")
        m.generator_hidden_size = int(g["hidden_size"])
        m.generator_num_heads = int(g["num_attention_heads"])
        m.generator_intermediate_size = int(g["intermediate_size"])
        m.generator_num_layers = int(g["num_hidden_layers"])
        m.generator_hidden_fraction = min(1.0, m.generator_hidden_size / m.hidden_size)
        gen_embedding = int(g.get("embedding_size", g["hidden_size"]))
        m.untied_generator_embeddings = gen_embedding != m.embedding_size
        if m.untied_generator_embeddings and gen_embedding != m.generator_hidden_size:
            raise ValueError(f"the generator's embedding_size {gen_embedding} differs from both the "
                             f"discriminator's {m.embedding_size} and its own hidden_size "
                             f"{m.generator_hidden_size}; ELECTRA shares the embeddings or unties them at the "
                             "generator's width, nothing else")
    return finalize_model(m)


def _is_mlm_only(state_dict: dict) -> bool:
    """An ElectraForMaskedLM state dict given on its own: the masked-LM baseline (no replaced-token head)."""
    return ("generator_lm_head.bias" in state_dict
            and not any(k.startswith("discriminator_predictions.") for k in state_dict))


def from_hf_state_dicts(disc_state_dict: dict, gen_state_dict: dict | None = None,
                        disc_hf_config: dict | None = None, gen_hf_config: dict | None = None):
    """HF state dicts (name -> array) -> (params, config with a `model` section).

    Without a generator the result holds the shared embeddings, the discriminator encoder and its head:
    enough for fine-tuning and `discriminator_logits`. With both, the shared embedding block must agree.
    An ElectraForMaskedLM state dict given alone imports as the masked-LM baseline: the config then carries
    `objective.kind = 'mlm'` and the parameters are its encoder plus generator head.
    """
    disc_state_dict = {k: np.asarray(_to_numpy(v)) for k, v in disc_state_dict.items()}
    if disc_hf_config is None:
        disc_hf_config = infer_hf_config(disc_state_dict)
    if gen_state_dict is not None:
        gen_state_dict = {k: np.asarray(_to_numpy(v)) for k, v in gen_state_dict.items()}
        if gen_hf_config is None:
            gen_hf_config = infer_hf_config(gen_state_dict)
    mlm_only = gen_state_dict is None and _is_mlm_only(disc_state_dict)
    model = model_config_from_hf(disc_hf_config, gen_hf_config)
    config = ml_collections.ConfigDict({"model": model})
    if mlm_only:
        config.objective = ml_collections.ConfigDict({"kind": "mlm"})
    cfg = modeling.ModelConfig.from_config(config, mlm_only=mlm_only)
    shapes = modeling.param_shapes(cfg)
    disc_rules, gen_rules = hf_rules(cfg)
    params: dict = {}

    def load(rules, state, which):
        missing = [r.hf for r in rules if r.hf not in state]
        if missing:
            raise ValueError(f"the {which} state dict lacks {len(missing)} expected tensors, e.g. {missing[:5]}; "
                             f"is it an HF ELECTRA {'ElectraForMaskedLM' if which == 'generator' else 'model'} "
                             "with the config given?")
        for r in rules:
            value = _import_tensor(state[r.hf], r.kind, _get(shapes, r.path).shape, cfg, f"{which} {r.hf}")
            if which == "generator" and _has(params, r.path):
                shared = _get(params, r.path)
                if not np.array_equal(shared, value):
                    raise ValueError(
                        f"the generator's {r.hf} differs from the discriminator's (max abs difference "
                        f"{np.max(np.abs(shared - value)):.3g}); ELECTRA shares the embedding block, so these "
                        "two folders do not come from one pre-training run")
            _set(params, r.path, value)

    if mlm_only:
        load(gen_rules, disc_state_dict, "masked-LM")
    else:
        load(disc_rules, disc_state_dict, "discriminator")
    if gen_state_dict is not None:
        load(gen_rules, gen_state_dict, "generator")
    return params, config


def infer_hf_config(state_dict: dict) -> dict:
    """A best-effort HF config from tensor shapes alone (heads assume a head size of 64)."""
    word = state_dict["electra.embeddings.word_embeddings.weight"]
    layers = {int(k.split(".")[3]) for k in state_dict if k.startswith("electra.encoder.layer.")}
    hidden = state_dict["electra.encoder.layer.0.attention.self.query.weight"].shape[0]
    return {
        "vocab_size": word.shape[0], "embedding_size": word.shape[1], "hidden_size": hidden,
        "num_hidden_layers": len(layers), "num_attention_heads": max(1, hidden // 64),
        "intermediate_size": state_dict["electra.encoder.layer.0.intermediate.dense.weight"].shape[0],
        "max_position_embeddings": state_dict["electra.embeddings.position_embeddings.weight"].shape[0],
        "type_vocab_size": state_dict["electra.embeddings.token_type_embeddings.weight"].shape[0],
    }


def _to_numpy(value):
    if hasattr(value, "detach"):  # a torch tensor; avoid importing torch here
        return value.detach().float().cpu().numpy()
    return value


def full_config(model_config: ml_collections.ConfigDict, mlm_only: bool = False, vocab: str = "",
                lower_case: bool = True) -> ml_collections.ConfigDict:
    """A complete pre-training config around an imported model section (what `checkpoints.save_params` stores)."""
    config = base_pretrain_config()
    config.size = "imported"
    for key, value in model_config.to_dict().items():
        config.model[key] = value
    config.objective.kind = "mlm" if mlm_only else "electra"
    config.data.vocab = vocab
    config.data.lower_case = bool(lower_case)
    config.data.max_seq_length = min(config.data.max_seq_length, config.model.max_position_embeddings)
    return finalize(config)


# ---------------------------------------------------------------------------------------------------------
# Tokenizer files
# ---------------------------------------------------------------------------------------------------------

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
                                                    strip_accents=tok.lower_case, lowercase=tok.lower_case)
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
                          model_max_length: int = 512, tokenizer_class: str = "BertTokenizer") -> None:
    """Writes tokenizer files that `AutoTokenizer.from_pretrained(output_dir)` loads and that give
    electra_jax's ids (plus [CLS] ... [SEP]).

    WordPiece: `vocab.txt`, `tokenizer.json` (with the original 200-character word limit) and
    `tokenizer_config.json`. With tokenizer_class 'BertTokenizer' (the default, the class of the released
    ELECTRA models) transformers 5 rebuilds the tokenizer from vocab.txt and uses HF's 100-character
    limit; 'PreTrainedTokenizerFast' loads tokenizer.json verbatim and keeps 200. SentencePiece: the `.model`
    is copied and converted to `tokenizer.json` (class PreTrainedTokenizerFast; no HF slow tokenizer class
    takes an ELECTRA-style SentencePiece vocabulary).
    """
    from tokenizers import processors

    from electra_jax.data import tokenizer as load_tokenizer

    if tokenizer_class not in HF_TOKENIZER_CLASSES:
        raise ValueError(f"tokenizer_class {tokenizer_class!r} is not one of {list(HF_TOKENIZER_CLASSES)}")
    tok = load_tokenizer(vocab_path, lower_case=lower_case)
    if tok.vocab_size != model_vocab_size:
        raise ValueError(f"the vocabulary {vocab_path} has {tok.vocab_size} tokens but the model's vocab_size is "
                         f"{model_vocab_size}; pass the vocabulary the model was trained with (--vocab=PATH)")
    os.makedirs(output_dir, exist_ok=True)
    if tok.kind == "wordpiece":
        backend = _wordpiece_backend(tok)
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
        "strip_accents": None,  # None = strip exactly when lower-casing, as the original
        "tokenize_chinese_chars": True,
        "model_max_length": int(model_max_length),
        "clean_up_tokenization_spaces": True,
        **_SPECIALS,
    }
    with open(os.path.join(output_dir, "tokenizer_config.json"), "w") as f:
        json.dump(tokenizer_config, f, indent=2)
    with open(os.path.join(output_dir, "special_tokens_map.json"), "w") as f:
        json.dump(_SPECIALS, f, indent=2)


def find_vocab(config: ml_collections.ConfigDict, vocab: str | None = None) -> tuple[str, bool]:
    """(vocabulary path, lower_case) for a checkpoint: --vocab, else config.data.vocab, else records' metadata."""
    data = config.get("data", ml_collections.ConfigDict())
    lower_case = bool(data.get("lower_case", True))
    if vocab:
        if not os.path.isfile(vocab):
            raise FileNotFoundError(f"--vocab={vocab} does not exist")
        return vocab, lower_case
    configured = data.get("vocab", "")
    if configured:
        if os.path.isfile(configured):
            return configured, lower_case
        raise FileNotFoundError(f"the checkpoint's config.data.vocab={configured} does not exist here; pass "
                                "--vocab=PATH to the same vocabulary")
    for pattern in str(data.get("train_files", "") or "").split(","):
        for folder in sorted({os.path.dirname(p) for p in glob.glob(pattern)} if pattern else []):
            meta = os.path.join(folder, "metadata.json")
            if os.path.isfile(meta):
                with open(meta) as f:
                    metadata = json.load(f)
                if metadata.get("vocab") and os.path.isfile(metadata["vocab"]):
                    return metadata["vocab"], bool(metadata.get("lower_case", lower_case))
    raise ValueError("no vocabulary found: config.data.vocab is empty and no metadata.json beside "
                     "config.data.train_files names one; pass --vocab=PATH (vocab.txt or .model)")


# ---------------------------------------------------------------------------------------------------------
# HF folders
# ---------------------------------------------------------------------------------------------------------

HF_DTYPES = ("float32", "bfloat16")


def _write_safetensors(state_dict: dict, path: str, dtype: str) -> None:
    metadata = {"format": "pt"}  # what transformers' save_pretrained writes
    if dtype == "float32":
        from safetensors.numpy import save_file

        save_file({k: np.ascontiguousarray(v, np.float32) for k, v in state_dict.items()}, path, metadata=metadata)
    else:  # numpy has no bfloat16 that safetensors accepts; go through torch
        import torch
        from safetensors.torch import save_file

        save_file({k: torch.from_numpy(np.array(v, np.float32)).to(torch.bfloat16) for k, v in state_dict.items()},
                  path, metadata=metadata)
    # safetensors creates the file 0600; give it the permissions every other exported file gets (0644 under
    # the usual umask), so a shared model folder is readable by others.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def save_hf(params, config, output_dir: str, vocab_path: str | None = None, dtype: str = "float32",
            discriminator_only: bool = False, tokenizer_class: str = "BertTokenizer") -> dict[str, str]:
    """Writes OUT/discriminator/ (ElectraForPreTraining) and OUT/generator/ (ElectraForMaskedLM).

    Each folder gets config.json, model.safetensors (float32, or bfloat16 on request) and tokenizer files.
    The vocabulary is `vocab_path`, else config.data.vocab, else the one named in the records' metadata.json.
    A masked-LM baseline (objective.kind='mlm') has no discriminator: only OUT/generator/ is written (its
    encoder loads into any ElectraFor* class for fine-tuning). Parameters without a generator (a discriminator
    imported for fine-tuning) raise unless `discriminator_only`. Returns {"discriminator"|"generator": folder}.
    """
    if dtype not in HF_DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {list(HF_DTYPES)}")
    cfg = modeling.ModelConfig.from_config(config)
    params = modeling.unstack_layers(jax.device_get(params))
    if not has_generator(params) and not discriminator_only:
        raise ValueError("this checkpoint holds no generator (it was probably imported from a discriminator-only "
                         "HF folder); pass --discriminator_only (discriminator_only=True) to export "
                         "OUT/discriminator alone")
    vocab, lower_case = find_vocab(config if isinstance(config, ml_collections.ConfigDict)
                                   else ml_collections.ConfigDict(config), vocab_path)
    disc, gen, (disc_config, gen_config) = to_hf_state_dicts(params, cfg)
    written = {}
    for name, state, hf_config in (("discriminator", disc, disc_config), ("generator", gen, gen_config)):
        if state is None or (name == "generator" and discriminator_only):
            continue
        folder = os.path.join(output_dir, name)
        # Tokenizer first: a wrong vocabulary fails before any model file is written.
        write_tokenizer_files(vocab, folder, cfg.vocab_size, lower_case, cfg.max_position_embeddings,
                              tokenizer_class)
        hf_config = dict(hf_config, dtype=dtype)
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(hf_config, f, indent=2)
        # The lm_head weight is tied to the word embeddings; like save_pretrained, store it once.
        state = {k: v for k, v in state.items() if k != "generator_lm_head.weight"}
        _write_safetensors(state, os.path.join(folder, "model.safetensors"), dtype)
        written[name] = folder
    return written


def _read_hf_state_dict(folder: str) -> dict[str, np.ndarray]:
    """model.safetensors (single or sharded) or pytorch_model.bin -> {name: float32 numpy array}."""
    single = os.path.join(folder, "model.safetensors")
    index = os.path.join(folder, "model.safetensors.index.json")
    binary = os.path.join(folder, "pytorch_model.bin")
    files: list[str] = []
    if os.path.isfile(single):
        files = [single]
    elif os.path.isfile(index):
        with open(index) as f:
            files = [os.path.join(folder, n) for n in sorted(set(json.load(f)["weight_map"].values()))]
    state: dict[str, np.ndarray] = {}
    if files:
        try:  # torch reads bfloat16; numpy cannot
            from safetensors.torch import load_file
        except ImportError:
            from safetensors.numpy import load_file
        for file in files:
            try:
                tensors = load_file(file)
            except Exception as error:  # SafetensorError and friends: none of them names the file
                raise ValueError(f"{file} is not a readable safetensors file ({cli.one_line(error, 200)}); it is "
                                 "probably truncated or corrupt: export or download it again") from error
            state.update({k: np.asarray(_to_numpy(v), np.float32) for k, v in tensors.items()})
    elif os.path.isfile(binary):
        import torch

        loaded = torch.load(binary, map_location="cpu", weights_only=True)
        state = {k: np.asarray(_to_numpy(v), np.float32) for k, v in loaded.items()}
    else:
        raise FileNotFoundError(f"{folder} holds neither model.safetensors(.index.json) nor pytorch_model.bin")
    if not any(k.startswith("electra.") for k in state):  # an ElectraModel saved on its own has no prefix
        state = {("electra." + k if k.startswith(("embeddings", "encoder")) else k): v for k, v in state.items()}
    return state


def _read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def hf_vocab(folder: str) -> tuple[str | None, bool]:
    """(vocabulary file in an HF folder or None, do_lower_case)."""
    tokenizer_config = os.path.join(folder, "tokenizer_config.json")
    lower_case = True
    if os.path.isfile(tokenizer_config):
        lower_case = bool(_read_json(tokenizer_config).get("do_lower_case", True))
    for name in ("vocab.txt", "sentencepiece.model", "spiece.model"):
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name), lower_case
    return None, lower_case


def load_hf(folder: str, generator_folder: str | None = None) -> tuple[dict, ml_collections.ConfigDict]:
    """An HF ELECTRA folder (+ optionally its generator) -> (params, full electra_jax config).

    `folder` is an ElectraForPreTraining discriminator (or an ElectraForMaskedLM alone: the masked-LM
    baseline). config.data.vocab points at the folder's vocab.txt / SentencePiece model when it has one.
    """
    for f in (folder, generator_folder):
        if f and not os.path.isfile(os.path.join(f, "config.json")):
            raise FileNotFoundError(f"{f} holds no config.json: not an HF model folder (give the folder that "
                                    "save_pretrained or `convert to_hf` wrote)")
    disc_config = _read_json(os.path.join(folder, "config.json"))
    gen_config = _read_json(os.path.join(generator_folder, "config.json")) if generator_folder else None
    disc_state = _read_hf_state_dict(folder)
    gen_state = _read_hf_state_dict(generator_folder) if generator_folder else None
    params, model_config = from_hf_state_dicts(disc_state, gen_state, disc_config, gen_config)
    vocab, lower_case = hf_vocab(folder)
    config = full_config(model_config.model, mlm_only="objective" in model_config, vocab=vocab or "",
                         lower_case=lower_case)
    return params, config


# ---------------------------------------------------------------------------------------------------------
# Original TF checkpoints
# ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class TFImportReport:
    """What `from_tf_checkpoint` found besides the weights it loaded; nothing is dropped silently."""

    loaded: list[str]
    optimizer_slots: list[str]
    global_step: int | None
    unknown: list[str]
    notes: list[str]

    def summary(self) -> str:
        lines = [f"loaded {len(self.loaded)} model variables",
                 f"global_step: {self.global_step if self.global_step is not None else 'absent'}",
                 f"optimizer slots not imported (optimizer state starts fresh): {len(self.optimizer_slots)}"]
        lines += [f"  {name}" for name in self.optimizer_slots]
        lines.append(f"unknown variables not imported: {len(self.unknown)}")
        lines += [f"  {name}" for name in self.unknown]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _count_layers(shapes: dict, prefix: str) -> int:
    found = {int(m.group(1)) for name in shapes for m in [re.match(rf"{prefix}encoder/layer_(\d+)/", name)] if m}
    if found and found != set(range(len(found))):
        raise ValueError(f"{prefix}encoder has layers {sorted(found)}: not a contiguous 0..N-1 range")
    return len(found)


def model_config_from_tf(shapes: dict[str, tuple], num_heads: int | None = None,
                         generator_num_heads: int | None = None) -> tuple[ml_collections.ConfigDict, bool, bool]:
    """(model section, has_generator, mlm_only) inferred from original TF variable shapes.

    Heads are not recorded in a checkpoint: the original uses hidden_size // 64 for both networks
    (configure_pretraining.py), which is the default here; pass num_heads to override.
    """
    word = "electra/embeddings/word_embeddings"
    query = "electra/encoder/layer_0/attention/self/query/kernel"
    for name in (word, query):
        if name not in shapes:
            raise ValueError(f"the checkpoint has no variable {name}: not an original ELECTRA checkpoint "
                             f"(first variables: {sorted(shapes)[:8]})")
    m = model_defaults()
    m.vocab_size, m.embedding_size = (int(d) for d in shapes[word])
    m.hidden_size = int(shapes[query][1])
    m.num_layers = _count_layers(shapes, "electra/")
    m.num_heads = num_heads or max(1, m.hidden_size // 64)
    m.intermediate_size = int(shapes["electra/encoder/layer_0/intermediate/dense/kernel"][1])
    m.max_position_embeddings = int(shapes["electra/embeddings/position_embeddings"][0])
    m.type_vocab_size = int(shapes["electra/embeddings/token_type_embeddings"][0])
    gen_query = "generator/encoder/layer_0/attention/self/query/kernel"
    generator = gen_query in shapes
    mlm_only = not generator and "generator_predictions/output_bias" in shapes and not any(
        n.startswith("discriminator_predictions/") for n in shapes)
    if generator:
        m.generator_hidden_size = int(shapes[gen_query][1])
        m.generator_num_layers = _count_layers(shapes, "generator/")
        m.generator_num_heads = generator_num_heads or max(1, m.generator_hidden_size // 64)
        m.generator_intermediate_size = int(shapes["generator/encoder/layer_0/intermediate/dense/kernel"][1])
        m.generator_hidden_fraction = min(1.0, m.generator_hidden_size / m.hidden_size)
        m.untied_generator_embeddings = "generator/embeddings/word_embeddings" in shapes
    return finalize_model(m), generator, mlm_only


def from_tf_checkpoint(path: str, num_heads: int | None = None, generator_num_heads: int | None = None
                       ) -> tuple[dict, ml_collections.ConfigDict, TFImportReport]:
    """Reads a checkpoint in the original google-research/electra layout -> (params, config, report).

    Sizes, generator width/depth and untied embeddings are inferred from the tensors. Optimizer slots
    (adam_m/adam_v), global_step and variables this mapping does not know are listed in the report.
    """
    import tensorflow as tf

    try:
        listed = tf.train.list_variables(path)
    except (tf.errors.NotFoundError, ValueError) as e:
        raise FileNotFoundError(f"no TF checkpoint at {path} (give the prefix, e.g. model.ckpt-1000, or its "
                                f"folder): {e}") from e
    reader = tf.train.load_checkpoint(path)
    slots = sorted(n for n, _ in listed if n.endswith(_TF_SLOT_SUFFIXES))
    model_shapes = {n: tuple(s) for n, s in listed if n not in slots and n != "global_step"}
    model, generator, mlm_only = model_config_from_tf(model_shapes, num_heads, generator_num_heads)
    cfg = modeling.ModelConfig.from_config(model, mlm_only=mlm_only)
    shapes = modeling.param_shapes(cfg)
    disc_rules, gen_rules = hf_rules(cfg)
    rules = tf_rules(cfg) if (generator or mlm_only) else disc_rules
    missing = [r.tf for r in rules if r.tf not in model_shapes]
    if missing:
        raise ValueError(f"{path} lacks {len(missing)} variables the inferred config needs, e.g. {missing[:5]}")
    params: dict = {}
    for r in rules:
        _set(params, r.path, _import_tensor(reader.get_tensor(r.tf), r.kind, _get(shapes, r.path).shape, cfg, r.tf,
                                            torch_layout=False))
    used = {r.tf for r in rules}
    notes = []
    if not generator and not mlm_only:
        notes.append("no generator in the checkpoint: the import holds the discriminator only")
    if mlm_only:
        notes.append("no generator encoder and no discriminator head: imported as a masked-LM baseline")
    global_step = int(reader.get_tensor("global_step")) if "global_step" in dict(listed) else None
    report = TFImportReport(loaded=sorted(used), optimizer_slots=slots, global_step=global_step,
                            unknown=sorted(n for n in model_shapes if n not in used), notes=notes)
    return params, full_config(model, mlm_only=mlm_only), report


# ---------------------------------------------------------------------------------------------------------
# Parity check
# ---------------------------------------------------------------------------------------------------------


def _check_batch(cfg: modeling.ModelConfig, batch: int = 2, seq: int = 32, seed: int = 0):
    """A fixed batch: random ids, the second row half padding, a second segment in the later half."""
    rng = np.random.default_rng(seed)
    seq = min(seq, cfg.max_position_embeddings)
    ids = rng.integers(0, cfg.vocab_size, (batch, seq))
    mask = np.ones((batch, seq), np.int64)
    mask[1:, seq // 2:] = 0
    segments = np.zeros_like(ids)
    if cfg.type_vocab_size > 1:
        segments[:, seq // 2:] = 1
    return ids * mask, segments * mask, mask


def check_parity(params, config, hf_dir: str | None, tolerance: float | None = None,
                 folders: dict[str, str] | None = None) -> dict[str, float]:
    """Largest |logit difference| between electra_jax and HF PyTorch (discriminator and generator) on a fixed
    batch. HF models load in float32; a bfloat16 export is allowed a tolerance relative to the logit scale.
    Returns {"discriminator": diff, "generator": diff} for the folders present; raises above the tolerance.
    `folders` ({"discriminator": path, "generator": path}) replaces hf_dir's discriminator/ and generator/.
    """
    import torch
    import transformers

    cfg = modeling.ModelConfig.from_config(config)
    ids, segments, mask = _check_batch(cfg)
    valid = mask.astype(bool)
    results, failures = {}, []
    for name, cls, ours_fn in (("discriminator", transformers.ElectraForPreTraining, modeling.discriminator_logits),
                               ("generator", transformers.ElectraForMaskedLM, modeling.generator_logits)):
        folder = folders.get(name) if folders is not None else os.path.join(hf_dir, name)
        if not folder or not os.path.isdir(folder):
            continue
        model = cls.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager").eval()
        with torch.no_grad():
            theirs = model(input_ids=torch.tensor(ids), token_type_ids=torch.tensor(segments),
                           attention_mask=torch.tensor(mask)).logits.numpy()
        ours = np.asarray(ours_fn(params, config, ids, segments, mask))
        diff = float(np.abs(ours[valid] - theirs[valid]).max())
        scale = float(np.abs(ours[valid]).max())
        exported_dtype = _read_json(os.path.join(folder, "config.json")).get("dtype", "float32")
        tol = tolerance if tolerance is not None else (1e-4 if exported_dtype == "float32"
                                                        else 0.05 * max(1.0, scale))
        results[name] = diff
        print(f"{name}: max |logit difference| {diff:.3g} (logit scale {scale:.3g}, tolerance {tol:.3g})")
        if not diff <= tol:
            failures.append(f"{name} differs by {diff:.3g} > {tol:.3g}")
    if not results:
        raise FileNotFoundError(f"{hf_dir or folders} has neither discriminator/ nor generator/")
    if failures:
        raise ValueError("parity check failed: " + "; ".join(failures))
    return results


# ---------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------

COMMANDS = ("to_hf", "from_hf", "from_tf", "check")


def _save_checkpoint(output_dir: str, params, config, vocab: str | None) -> None:
    from electra_jax import checkpoints

    if hasattr(checkpoints, "quiet_orbax_logs"):  # orbax logs dozens of INFO lines per save
        checkpoints.quiet_orbax_logs()
    os.makedirs(output_dir, exist_ok=True)
    if vocab:  # keep the vocabulary with the weights, so the checkpoint is self-contained
        copy = os.path.join(os.path.abspath(output_dir), os.path.basename(vocab))
        if os.path.abspath(vocab) != copy:
            shutil.copyfile(vocab, copy)
        config.data.vocab = copy
    checkpoints.save_params(output_dir, params, config)


def run(command: str, flags_values: Any) -> None:
    """Runs one subcommand with the parsed flags (an object with the attributes defined in `_define_flags`)."""
    f = flags_values
    if command == "to_hf":
        from electra_jax import checkpoints

        _require(f, "checkpoint", "output_dir")
        params, config = checkpoints.restore_params(f.checkpoint)
        written = save_hf(params, config, f.output_dir, vocab_path=f.vocab, dtype=f.dtype,
                          discriminator_only=f.discriminator_only, tokenizer_class=f.tokenizer_class)
        for name, folder in written.items():
            print(f"wrote {name}: {folder}")
        if "discriminator" not in written:
            print("note: a masked-LM baseline has no discriminator; fine-tune from the generator folder's encoder")
        if f.check:
            check_parity(params, config, f.output_dir, f.tolerance)
    elif command == "from_hf":
        _require(f, "input", "output_dir")
        params, config = load_hf(f.input, f.generator)
        vocab = config.data.vocab or None
        _save_checkpoint(f.output_dir, params, config, vocab)
        what = "discriminator + generator" if has_generator(params) else (
            "masked-LM model" if config.objective.kind == "mlm" else "discriminator only (for fine-tuning)")
        print(f"wrote {what} to {f.output_dir}" + ("" if vocab else " (no vocabulary found in the HF folder)"))
        if f.check:
            folders = ({"generator": f.input} if config.objective.kind == "mlm"
                       else {"discriminator": f.input, "generator": f.generator})
            check_parity(params, config, None, f.tolerance, folders=folders)
    elif command == "from_tf":
        _require(f, "input", "output_dir")
        params, config, report = from_tf_checkpoint(f.input, f.num_heads, f.generator_num_heads)
        print(report.summary())
        _save_checkpoint(f.output_dir, params, config, f.vocab)
        print(f"wrote {f.output_dir}")
    elif command == "check":
        from electra_jax import checkpoints

        _require(f, "checkpoint", "hf_dir")
        params, config = checkpoints.restore_params(f.checkpoint)
        check_parity(params, config, f.hf_dir, f.tolerance)
    else:
        raise ValueError(f"unknown command {command!r}; choose one of {list(COMMANDS)}")


def _require(f, *names: str) -> None:
    missing = [f"--{n}" for n in names if not getattr(f, n)]
    if missing:
        raise ValueError(f"this command needs {' and '.join(missing)}")


def _define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("checkpoint", None, "to_hf/check: an electra_jax workdir, checkpoint folder or "
                        "params-only export.")
    flags.DEFINE_string("output_dir", None, "to_hf: folder for discriminator/ and generator/; from_*: the "
                        "params-only electra_jax checkpoint to write.")
    flags.DEFINE_enum("dtype", "float32", list(HF_DTYPES), "to_hf: weight dtype of model.safetensors.")
    flags.DEFINE_string("vocab", None, "to_hf: the vocabulary (vocab.txt or .model) when config.data.vocab and "
                        "the records' metadata do not name one; from_tf: a vocabulary to store alongside.")
    flags.DEFINE_enum("tokenizer_class", "BertTokenizer", list(HF_TOKENIZER_CLASSES),
                      "to_hf: tokenizer_class in tokenizer_config.json. BertTokenizer is what released ELECTRA "
                      "models use (transformers 5 rebuilds it from vocab.txt with a 100-character word limit); "
                      "PreTrainedTokenizerFast loads tokenizer.json as written (the original 200 limit).")
    flags.DEFINE_bool("discriminator_only", False, "to_hf: export only the discriminator (for checkpoints "
                      "without a generator).")
    flags.DEFINE_string("input", None, "from_hf: an HF ElectraForPreTraining folder (or ElectraForMaskedLM alone); "
                        "from_tf: a TF checkpoint prefix or folder.")
    flags.DEFINE_string("generator", None, "from_hf: the matching HF ElectraForMaskedLM folder (continued "
                        "pre-training needs it).")
    flags.DEFINE_string("hf_dir", None, "check: a folder written by to_hf.")
    flags.DEFINE_bool("check", False, "to_hf: run the parity check on the written folders.")
    flags.DEFINE_float("tolerance", None, "check: largest allowed |logit difference| (default 1e-4 for a float32 "
                       "export, 5% of the logit scale for bfloat16).")
    flags.DEFINE_integer("num_heads", None, "from_tf: discriminator heads (default hidden_size // 64, as the "
                         "original).")
    flags.DEFINE_integer("generator_num_heads", None, "from_tf: generator heads (default width // 64).")


def main(argv: Sequence[str]) -> None:
    from absl import app, flags

    if len(argv) != 2 or argv[1] not in COMMANDS:
        raise app.UsageError(f"give one command: python -m electra_jax.convert {{{'|'.join(COMMANDS)}}} --flags "
                             f"(got {list(argv[1:])})")
    run(argv[1], flags.FLAGS)


if __name__ == "__main__":
    from electra_jax import cli

    _define_flags()
    cli.run(main)
