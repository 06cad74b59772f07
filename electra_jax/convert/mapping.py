"""The one mapping table between electra_jax parameters, HF transformers names and original TF variables.

Each `Rule` names an electra_jax parameter path (the canonical unstacked layout), the HF parameter name and how
the tensor changes on the way; the original TF variable name is derived from the same rule (`Rule.tf`), so
there is no second table to drift. Transforms:
  * "dense":      flax kernel [in, out]  <-> torch weight [out, in] (transpose); TF kernels are [in, out] too
  * "qkv":        flax kernel [H, heads, head_dim] <-> torch [heads*head_dim, H] / TF [H, heads*head_dim]
  * "qkv_bias":   flax bias [heads, head_dim] <-> [heads*head_dim]
  * "attn_out":   flax kernel [heads, head_dim, H] <-> torch [H, heads*head_dim] / TF [heads*head_dim, H]
  * "vocab":      the padded word table [Vp, E] <-> [V, E] (padding rows cut on export, zero on import)
  * "vocab_bias": the padded output bias [Vp] <-> [V]
  * "copy":       unchanged (LayerNorm scale/bias, position and token-type tables, dense biases)
The shared embedding block is written into both HF models (each HF model owns its own copy).
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from electra_jax import modeling


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


def export_tensor(tensor: np.ndarray, kind: str, cfg: modeling.ModelConfig, torch_layout: bool = True) -> np.ndarray:
    """electra_jax tensor -> HF (torch_layout) or original TF layout, float32."""
    tensor = np.asarray(tensor, np.float32)
    if kind == "dense":
        tensor = tensor.T if torch_layout else tensor
    elif kind == "qkv":
        tensor = tensor.reshape(tensor.shape[0], -1)
        tensor = tensor.T if torch_layout else tensor
    elif kind == "qkv_bias":
        tensor = tensor.reshape(-1)
    elif kind == "attn_out":
        tensor = tensor.reshape(-1, tensor.shape[-1])
        tensor = tensor.T if torch_layout else tensor
    elif kind in ("vocab", "vocab_bias"):
        tensor = tensor[: cfg.vocab_size]
    return np.ascontiguousarray(tensor)


def import_tensor(tensor: np.ndarray, kind: str, shape: tuple, cfg: modeling.ModelConfig, name: str,
                   torch_layout: bool = True) -> np.ndarray:
    """HF (torch_layout) or original TF tensor -> electra_jax tensor of `shape`, with a clear shape error."""
    tensor = np.asarray(tensor, np.float32)
    expected_external = export_tensor(np.zeros(shape, np.float32), kind, cfg, torch_layout).shape
    if kind in ("vocab", "vocab_bias") and tensor.shape[:1] != expected_external[:1]:
        raise ValueError(f"{name}: {tensor.shape[0]} vocabulary rows, but the config says vocab_size {cfg.vocab_size}")
    if tuple(tensor.shape) != tuple(expected_external):
        raise ValueError(f"{name}: shape {tuple(tensor.shape)} does not match the expected {tuple(expected_external)} "
                         f"(electra_jax parameter of shape {tuple(shape)}, transform '{kind}'); the tensors and "
                         "the config (hidden size, heads, embedding size, vocab_size) disagree")
    if kind in ("dense", "qkv", "attn_out") and torch_layout:
        tensor = tensor.T
    if kind in ("vocab", "vocab_bias"):
        tensor = np.pad(tensor, [(0, shape[0] - tensor.shape[0])] + [(0, 0)] * (tensor.ndim - 1))
    return np.ascontiguousarray(tensor.reshape(shape))


def get_path(tree, path):
    for key in path:
        tree = tree[key]
    return tree


def has_path(tree, path) -> bool:
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return False
        tree = tree[key]
    return True


def set_path(tree, path, value):
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value
