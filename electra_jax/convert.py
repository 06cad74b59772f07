"""Conversion between electra_jax parameters and HF transformers ELECTRA state dicts.

One mapping table (`hf_rules`) drives both directions. Each rule names an electra_jax parameter path,
the HF parameter name and how the tensor changes on the way:
  * "dense":      flax kernel [in, out]  <-> torch weight [out, in] (transpose)
  * "qkv":        flax kernel [H, heads, head_dim] <-> torch [heads*head_dim, H]
  * "qkv_bias":   flax bias [heads, head_dim] <-> torch [heads*head_dim]
  * "attn_out":   flax kernel [heads, head_dim, H] <-> torch [H, heads*head_dim]
  * "vocab":      the padded word table [Vp, E] <-> [V, E] (padding rows cut on export, zero on import)
  * "vocab_bias": the padded output bias [Vp] <-> [V]
  * "copy":       unchanged (LayerNorm scale/bias, position and token-type tables, dense biases)
The shared embedding block is written into both HF models (each HF model owns its own copy).
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
import numpy as np

from electra_jax import modeling
from electra_jax.config import finalize_model, model_defaults


def _encoder_rules(jax_prefix: tuple, hf_prefix: str, num_layers: int, has_project: bool):
    rules = []
    if has_project:
        rules += [(jax_prefix + ("embeddings_project", "kernel"), f"{hf_prefix}embeddings_project.weight", "dense"),
                  (jax_prefix + ("embeddings_project", "bias"), f"{hf_prefix}embeddings_project.bias", "copy")]
    for i in range(num_layers):
        layer = jax_prefix + (f"layer_{i}",)
        hf = f"{hf_prefix}encoder.layer.{i}."
        for name in ("query", "key", "value"):
            rules += [(layer + (name, "kernel"), f"{hf}attention.self.{name}.weight", "qkv"),
                      (layer + (name, "bias"), f"{hf}attention.self.{name}.bias", "qkv_bias")]
        rules += [
            (layer + ("attention_output", "kernel"), f"{hf}attention.output.dense.weight", "attn_out"),
            (layer + ("attention_output", "bias"), f"{hf}attention.output.dense.bias", "copy"),
            (layer + ("attention_LayerNorm", "scale"), f"{hf}attention.output.LayerNorm.weight", "copy"),
            (layer + ("attention_LayerNorm", "bias"), f"{hf}attention.output.LayerNorm.bias", "copy"),
            (layer + ("intermediate", "kernel"), f"{hf}intermediate.dense.weight", "dense"),
            (layer + ("intermediate", "bias"), f"{hf}intermediate.dense.bias", "copy"),
            (layer + ("output", "kernel"), f"{hf}output.dense.weight", "dense"),
            (layer + ("output", "bias"), f"{hf}output.dense.bias", "copy"),
            (layer + ("output_LayerNorm", "scale"), f"{hf}output.LayerNorm.weight", "copy"),
            (layer + ("output_LayerNorm", "bias"), f"{hf}output.LayerNorm.bias", "copy"),
        ]
    return rules


def _embedding_rules(jax_prefix: tuple, hf_prefix: str):
    return [
        (jax_prefix + ("word_embeddings",), f"{hf_prefix}embeddings.word_embeddings.weight", "vocab"),
        (jax_prefix + ("position_embeddings",), f"{hf_prefix}embeddings.position_embeddings.weight", "copy"),
        (jax_prefix + ("token_type_embeddings",), f"{hf_prefix}embeddings.token_type_embeddings.weight", "copy"),
        (jax_prefix + ("LayerNorm", "scale"), f"{hf_prefix}embeddings.LayerNorm.weight", "copy"),
        (jax_prefix + ("LayerNorm", "bias"), f"{hf_prefix}embeddings.LayerNorm.bias", "copy"),
    ]


def hf_rules(cfg: modeling.ModelConfig) -> tuple[list, list]:
    """(discriminator rules, generator rules): lists of (jax path, HF name, transform)."""
    disc = _embedding_rules(("embeddings",), "electra.")
    disc += _encoder_rules(("discriminator",), "electra.", cfg.num_layers, cfg.embedding_size != cfg.hidden_size)
    if cfg.mlm_only:
        # The masked-LM baseline exports as one ElectraForMaskedLM whose encoder is the discriminator's.
        gen = list(disc)
        gen_table = cfg.embedding_size
    else:
        disc += [
            (("discriminator_predictions", "dense", "kernel"), "discriminator_predictions.dense.weight", "dense"),
            (("discriminator_predictions", "dense", "bias"), "discriminator_predictions.dense.bias", "copy"),
            (("discriminator_predictions", "dense_prediction", "kernel"),
             "discriminator_predictions.dense_prediction.weight", "dense"),
            (("discriminator_predictions", "dense_prediction", "bias"),
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
        (("generator_predictions", "dense", "kernel"), "generator_predictions.dense.weight", "dense"),
        (("generator_predictions", "dense", "bias"), "generator_predictions.dense.bias", "copy"),
        (("generator_predictions", "LayerNorm", "scale"), "generator_predictions.LayerNorm.weight", "copy"),
        (("generator_predictions", "LayerNorm", "bias"), "generator_predictions.LayerNorm.bias", "copy"),
        (("generator_predictions", "output_bias"), "generator_lm_head.bias", "vocab_bias"),
    ]
    return disc, gen


def _to_hf_tensor(x: np.ndarray, kind: str, cfg: modeling.ModelConfig) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if kind == "dense":
        return np.ascontiguousarray(x.T)
    if kind == "qkv":
        return np.ascontiguousarray(x.reshape(x.shape[0], -1).T)
    if kind == "qkv_bias":
        return x.reshape(-1)
    if kind == "attn_out":
        return np.ascontiguousarray(x.reshape(-1, x.shape[-1]).T)
    if kind in ("vocab", "vocab_bias"):
        return np.ascontiguousarray(x[: cfg.vocab_size])
    return x


def _from_hf_tensor(x: np.ndarray, kind: str, shape: tuple, cfg: modeling.ModelConfig, name: str) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if kind == "dense":
        x = x.T
    elif kind == "qkv":
        x = x.T.reshape(shape)
    elif kind == "qkv_bias":
        x = x.reshape(shape)
    elif kind == "attn_out":
        x = x.T.reshape(shape)
    elif kind in ("vocab", "vocab_bias"):
        if x.shape[0] != cfg.vocab_size:
            raise ValueError(f"{name}: {x.shape[0]} vocabulary rows, but the config says vocab_size "
                             f"{cfg.vocab_size}")
        pad = [(0, shape[0] - x.shape[0])] + [(0, 0)] * (x.ndim - 1)
        x = np.pad(x, pad)
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name}: shape {tuple(x.shape)} does not fit the electra_jax parameter of shape "
                         f"{tuple(shape)} (after the '{kind}' transform); is the config right?")
    return np.ascontiguousarray(x)


def _get(tree, path):
    for key in path:
        tree = tree[key]
    return tree


def _set(tree, path, value):
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def hf_config_dict(cfg: modeling.ModelConfig, generator: bool) -> dict[str, Any]:
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
    }


def to_hf_state_dicts(params, config) -> tuple[dict, dict, tuple[dict, dict]]:
    """electra_jax parameters -> (disc_state_dict, gen_state_dict, (disc_hf_config, gen_hf_config)).

    State dicts map HF parameter names to float32 numpy arrays. The generator's
    `generator_lm_head.weight` is tied to its word embeddings and is included as the same array.
    """
    cfg = modeling.ModelConfig.from_config(config)
    params = modeling.unstack_layers(jax.device_get(params))
    disc_rules, gen_rules = hf_rules(cfg)
    disc = {hf: _to_hf_tensor(_get(params, path), kind, cfg) for path, hf, kind in disc_rules}
    gen = {hf: _to_hf_tensor(_get(params, path), kind, cfg) for path, hf, kind in gen_rules}
    gen["generator_lm_head.weight"] = gen["electra.embeddings.word_embeddings.weight"]
    return disc, gen, (hf_config_dict(cfg, generator=False), hf_config_dict(cfg, generator=True))


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
    return finalize_model(m)


def from_hf_state_dicts(disc_state_dict: dict, gen_state_dict: dict | None = None,
                        disc_hf_config: dict | None = None, gen_hf_config: dict | None = None):
    """HF state dicts (name -> array) -> (params, config with a `model` section).

    Without a generator the result holds the shared embeddings, the discriminator encoder and its head:
    enough for fine-tuning and `discriminator_logits`. With both, the shared embedding block must agree.
    """
    disc_state_dict = {k: np.asarray(_to_numpy(v)) for k, v in disc_state_dict.items()}
    if disc_hf_config is None:
        disc_hf_config = infer_hf_config(disc_state_dict)
    if gen_state_dict is not None:
        gen_state_dict = {k: np.asarray(_to_numpy(v)) for k, v in gen_state_dict.items()}
        if gen_hf_config is None:
            gen_hf_config = infer_hf_config(gen_state_dict)
    model = model_config_from_hf(disc_hf_config, gen_hf_config)
    config = ml_collections.ConfigDict({"model": model})
    cfg = modeling.ModelConfig.from_config(config, mlm_only=False)
    shapes = modeling.unstack_layers(modeling.param_shapes(cfg)) if not cfg.scan_layers else None
    if shapes is None:
        shapes = modeling.param_shapes(cfg)
    disc_rules, gen_rules = hf_rules(cfg)
    params: dict = {}

    def load(rules, state, which):
        missing = [hf for _, hf, _ in rules if hf not in state]
        if missing:
            raise ValueError(f"the {which} state dict lacks {len(missing)} expected tensors, e.g. {missing[:5]}")
        for path, hf, kind in rules:
            value = _from_hf_tensor(state[hf], kind, _get(shapes, path).shape, cfg, f"{which} {hf}")
            if which == "generator" and path[0] == "embeddings":
                shared = _get(params, path)
                if not np.array_equal(shared, value):
                    raise ValueError(
                        f"the generator's {hf} differs from the discriminator's (max abs difference "
                        f"{np.max(np.abs(shared - value)):.3g}); ELECTRA shares the embedding block, so these "
                        "two folders do not come from one pre-training run")
            _set(params, path, value)

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
