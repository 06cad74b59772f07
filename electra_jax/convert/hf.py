"""HF transformers ELECTRA: config.json translation and state dicts in both directions (no file I/O here).

`to_hf_state_dicts` / `from_hf_state_dicts` map electra_jax parameters to and from the state dicts of an HF
`ElectraForPreTraining` (discriminator) and `ElectraForMaskedLM` (generator) through the mapping table.
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from electra_jax import modeling
from electra_jax.config import base_pretrain_config, finalize, finalize_model, model_defaults
from electra_jax.convert.mapping import export_tensor, get_path, has_path, hf_rules, import_tensor, set_path


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
    if cfg.embedding_sharing == "gdes" or cfg.two_tower_generator:
        # GDES and Electric: export the plain ELECTRA networks HF can hold (modeling.hf_export_layouts).
        (disc_params, disc_cfg), generator = modeling.hf_export_layouts(params, cfg)
        disc, _, (disc_config, _) = to_hf_state_dicts(disc_params, disc_cfg)
        _, gen, (_, gen_config) = to_hf_state_dicts(*generator) if generator else (None, None, (None, None))
        return disc, gen, (disc_config, gen_config)
    disc_rules, gen_rules = hf_rules(cfg)
    disc = gen = disc_config = gen_config = None
    if not cfg.mlm_only and "discriminator_predictions" not in params:
        raise ValueError(f"these parameters have no replaced-token head: {modeling.HEADLESS}")
    if not cfg.mlm_only:
        disc = {rule.hf: export_tensor(get_path(params, rule.path), rule.kind, cfg) for rule in disc_rules}
        disc_config = hf_config_dict(cfg, generator=False)
    if has_generator(params):
        gen = {rule.hf: export_tensor(get_path(params, rule.path), rule.kind, cfg) for rule in gen_rules}
        gen["generator_lm_head.weight"] = gen["electra.embeddings.word_embeddings.weight"]
        gen_config = hf_config_dict(cfg, generator=True)
    return disc, gen, (disc_config, gen_config)


def model_config_from_hf(disc_hf_config: dict, gen_hf_config: dict | None = None) -> ml_collections.ConfigDict:
    """An electra_jax model section equivalent to the given HF config.json dicts."""
    model = model_defaults()
    disc = disc_hf_config
    act = disc.get("hidden_act", "gelu")
    if act != "gelu":
        raise ValueError(f"hidden_act {act!r} is not supported; ELECTRA uses the exact 'gelu'")
    if disc.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError("only absolute position embeddings are supported")
    model.vocab_size = int(disc["vocab_size"])
    model.embedding_size = int(disc.get("embedding_size", disc["hidden_size"]))
    model.hidden_size = int(disc["hidden_size"])
    model.num_layers = int(disc["num_hidden_layers"])
    model.num_heads = int(disc["num_attention_heads"])
    model.intermediate_size = int(disc["intermediate_size"])
    model.max_position_embeddings = int(disc.get("max_position_embeddings", 512))
    model.type_vocab_size = int(disc.get("type_vocab_size", 2))
    model.hidden_dropout = float(disc.get("hidden_dropout_prob", 0.1))
    model.attention_dropout = float(disc.get("attention_probs_dropout_prob", 0.1))
    model.initializer_range = float(disc.get("initializer_range", 0.02))
    model.layer_norm_eps = float(disc.get("layer_norm_eps", 1e-12))
    if gen_hf_config is not None:
        gen = gen_hf_config
        if int(gen["vocab_size"]) != model.vocab_size:
            raise ValueError(f"generator vocab_size {gen['vocab_size']} differs from the discriminator's "
                             f"{model.vocab_size}")
        # electra_jax keeps one value of these for both networks, as the original derives both from one config.
        for key, default in (("hidden_act", "gelu"), ("layer_norm_eps", 1e-12), ("max_position_embeddings", 512),
                             ("type_vocab_size", 2), ("position_embedding_type", "absolute")):
            if gen.get(key, default) != disc.get(key, default):
                raise ValueError(f"the generator's {key} {gen.get(key, default)!r} differs from the "
                                 f"discriminator's {disc.get(key, default)!r}; an ELECTRA pair shares it")
        model.generator_hidden_size = int(gen["hidden_size"])
        model.generator_num_heads = int(gen["num_attention_heads"])
        model.generator_intermediate_size = int(gen["intermediate_size"])
        model.generator_num_layers = int(gen["num_hidden_layers"])
        model.generator_hidden_fraction = min(1.0, model.generator_hidden_size / model.hidden_size)
        gen_embedding = int(gen.get("embedding_size", gen["hidden_size"]))
        model.untied_generator_embeddings = gen_embedding != model.embedding_size
        if model.untied_generator_embeddings and gen_embedding != model.generator_hidden_size:
            raise ValueError(f"the generator's embedding_size {gen_embedding} differs from both the "
                             f"discriminator's {model.embedding_size} and its own hidden_size "
                             f"{model.generator_hidden_size}; ELECTRA shares the embeddings or unties them at the "
                             "generator's width, nothing else")
    return finalize_model(model)


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
    disc_state_dict = {k: np.asarray(to_numpy(v)) for k, v in disc_state_dict.items()}
    if disc_hf_config is None:
        disc_hf_config = infer_hf_config(disc_state_dict)
    if gen_state_dict is not None:
        gen_state_dict = {k: np.asarray(to_numpy(v)) for k, v in gen_state_dict.items()}
        if gen_hf_config is None:
            gen_hf_config = infer_hf_config(gen_state_dict)
    mlm_only = gen_state_dict is None and _is_mlm_only(disc_state_dict)
    # An ElectraModel, or a fine-tuned ElectraFor* task model, has the encoder but no replaced-token head.
    headless = (not mlm_only and gen_state_dict is None
                and not any(k.startswith("discriminator_predictions.") for k in disc_state_dict))
    model = model_config_from_hf(disc_hf_config, gen_hf_config)
    config = ml_collections.ConfigDict({"model": model})
    if mlm_only:
        config.objective = ml_collections.ConfigDict({"kind": "mlm"})
    cfg = modeling.ModelConfig.from_config(config, mlm_only=mlm_only)
    shapes = modeling.param_shapes(cfg)
    disc_rules, gen_rules = hf_rules(cfg)
    if headless:
        disc_rules = [rule for rule in disc_rules if rule.path[0] != "discriminator_predictions"]
        logging.warning("the discriminator weights hold no discriminator_predictions: importing the encoder alone "
                        "(%s)", modeling.HEADLESS)
    params: dict = {}

    def load(rules, state, which):
        missing = [rule.hf for rule in rules if rule.hf not in state]
        if missing:
            raise ValueError(f"the {which} state dict lacks {len(missing)} expected tensors, e.g. {missing[:5]}; "
                             f"is it an HF ELECTRA {'ElectraForMaskedLM' if which == 'generator' else 'model'} "
                             "with the config given?")
        for rule in rules:
            shape = get_path(shapes, rule.path).shape
            value = import_tensor(state[rule.hf], rule.kind, shape, cfg, f"{which} {rule.hf}")
            if which == "generator" and has_path(params, rule.path):
                shared = get_path(params, rule.path)
                if not np.array_equal(shared, value):
                    raise ValueError(
                        f"the generator's {rule.hf} differs from the discriminator's (max abs difference "
                        f"{np.max(np.abs(shared - value)):.3g}); ELECTRA shares the embedding block, so these "
                        "two folders do not come from one pre-training run")
            set_path(params, rule.path, value)
        _check_unused(rules, state, which, disc_hf_config if which != "generator" else gen_hf_config)

    if mlm_only:
        load(gen_rules, disc_state_dict, "masked-LM")
    else:
        load(disc_rules, disc_state_dict, "discriminator")
    if gen_state_dict is not None:
        load(gen_rules, gen_state_dict, "generator")
    return params, config


def _check_unused(rules, state: dict, which: str, hf_config: dict | None) -> None:
    """Refuse an lm head that is not the word table (electra_jax ties them); name any other tensor left unread.

    HF ELECTRA ties `generator_lm_head.weight` to the generator's word embeddings. A folder whose head was
    trained apart (`tie_word_embeddings: false`) would import with the embeddings in its place and predict
    different tokens, so it is an error; other unread tensors (a task head, say) are named in a warning.
    """
    used = {rule.hf for rule in rules}
    has_lm_head = any(rule.hf == "generator_lm_head.bias" for rule in rules)
    head = state.get("generator_lm_head.weight")
    if has_lm_head:
        word = state["electra.embeddings.word_embeddings.weight"]
        if head is not None and (head.shape != word.shape or not np.array_equal(head, word)):
            raise ValueError(
                f"the {which}'s generator_lm_head.weight is not its word embeddings (untied output layer); "
                "electra_jax ties the generator's output layer to its word table, so importing it would change "
                "the generator's predictions")
        if head is None and (hf_config or {}).get("tie_word_embeddings") is False:
            raise ValueError(
                f"the {which}'s config.json sets tie_word_embeddings: false but its weights hold no "
                "generator_lm_head.weight; electra_jax ties the generator's output layer to its word table")
        used.add("generator_lm_head.weight")
    unused = sorted(k for k in state if k not in used and not k.endswith("position_ids"))
    if unused:
        logging.warning("the %s weights hold %d tensor(s) electra_jax does not read, left out of the import: %s%s",
                        which, len(unused), ", ".join(unused[:8]), ", ..." if len(unused) > 8 else "")


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


def to_numpy(value):
    if hasattr(value, "detach"):  # a torch tensor; avoid importing torch here
        return value.detach().float().cpu().numpy()
    return value


def full_config(model_config: ml_collections.ConfigDict, mlm_only: bool = False, vocab: str = "",
                lower_case: bool = True, strip_accents: bool | None = None) -> ml_collections.ConfigDict:
    """A complete pre-training config around an imported model section (what `checkpoints.save_params` stores)."""
    config = base_pretrain_config()
    config.size = "imported"
    for key, value in model_config.to_dict().items():
        config.model[key] = value
    config.objective.kind = "mlm" if mlm_only else "electra"
    config.data.vocab = vocab
    config.data.lower_case = bool(lower_case)
    if strip_accents is not None:
        config.data.strip_accents = bool(strip_accents)
    config.data.max_seq_length = min(config.data.max_seq_length, config.model.max_position_embeddings)
    return finalize(config)
