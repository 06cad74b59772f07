"""The fine-tuning network: the pre-trained discriminator encoder plus a task's head, and loading into it.

`FinetuneModel` has submodules named exactly `embeddings` (modeling.Embeddings) and `discriminator`
(modeling.Encoder), so pre-training parameters load by name, and the task's head under `task_specific`, which
optim.layer_depth places at depth L + 2 (learning-rate multiplier 1). Heads come from the task
(`Task.head`), every dense layer with Glorot-uniform kernels and zero biases (the tf.layers.dense default).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from electra_jax.modeling import Embeddings, Encoder, ModelConfig, discriminator_params
from electra_jax.tree_paths import path_name

# Model-config fields an --init checkpoint decides (the rest, such as dtype and attention, stay the run's).
CHECKPOINT_MODEL_FIELDS = ("vocab_size", "embedding_size", "hidden_size", "num_layers", "num_heads",
                           "intermediate_size", "max_position_embeddings", "type_vocab_size", "layer_norm_eps",
                           "initializer_range")


class FinetuneModel(nn.Module):
    """Embeddings -> discriminator encoder -> the task's head (`task_specific`)."""

    cfg: ModelConfig
    task_specific: nn.Module  # called as head(hidden, batch, deterministic=..., training=...)

    def setup(self):
        cfg = self.cfg
        self.embeddings = Embeddings(cfg, cfg.embedding_size)
        self.discriminator = Encoder(cfg, cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.intermediate_size,
                                     cfg.embedding_size)

    def encode(self, input_ids, segment_ids, input_mask, deterministic: bool):
        embedded = self.embeddings(input_ids, segment_ids, deterministic)
        return self.discriminator(embedded, input_mask, deterministic)

    def __call__(self, batch: dict[str, Any], deterministic: bool = True, training: bool = False):
        """The head's outputs for a batch dict (input_ids, segment_ids, input_mask and the task's extras).

        training: the head's training-time outputs (e.g. SQuAD end logits conditioned on the gold start).
        """
        hidden = self.encode(batch["input_ids"], batch["segment_ids"], batch["input_mask"], deterministic)
        return self.task_specific(hidden, batch, deterministic=deterministic, training=training)


def apply_checkpoint_model(config: ml_collections.ConfigDict, checkpoint_config: Any) -> None:
    """The checkpoint decides the model sizes; fine-tuning has no generator (its derived sizes are reset)."""
    section = checkpoint_config["model"] if "model" in checkpoint_config else checkpoint_config
    for field in CHECKPOINT_MODEL_FIELDS:
        if field in section:
            config.model[field] = section[field]
    for field in ("generator_hidden_size", "generator_num_heads", "generator_intermediate_size",
                  "generator_num_layers"):
        config.model[field] = 0


def merge_pretrained(params: dict, pretrained: dict) -> dict:
    """Copies `embeddings` and `discriminator` from a pre-training tree into fresh fine-tuning params by name.

    The generator, the discriminator's replaced-token head and any vocabulary padding difference are
    ignored; any other mismatch raises a ValueError naming the parameter.
    """
    params = jax.tree_util.tree_map(np.asarray, nn.unbox(params))
    pretrained = discriminator_params(nn.unbox(pretrained))  # GDES: the discriminator's merged tables
    for top in ("embeddings", "discriminator"):
        if top not in pretrained:
            raise ValueError(f"the --init checkpoint has no '{top}' parameters (found {sorted(pretrained)}); "
                             "it is not an ELECTRA discriminator checkpoint")
        flat_new = dict(jax.tree_util.tree_flatten_with_path(params[top])[0])
        flat_old = {path_name(p): v for p, v in jax.tree_util.tree_flatten_with_path(pretrained[top])[0]}
        leaves = {}
        for path, leaf in flat_new.items():
            name = path_name(path)
            if name not in flat_old:
                raise ValueError(f"the --init checkpoint lacks {top}/{name} (shape {leaf.shape})")
            old = np.asarray(flat_old[name], np.float32)
            if name == "word_embeddings" and old.shape[1:] == leaf.shape[1:] and old.shape[0] != leaf.shape[0]:
                # Vocabulary padding differs (padded rows are never used); keep the real rows.
                rows = min(old.shape[0], leaf.shape[0])
                fixed = np.zeros(leaf.shape, np.float32)
                fixed[:rows] = old[:rows]
                old = fixed
            if old.shape != leaf.shape:
                raise ValueError(f"{top}/{name}: the --init checkpoint has shape {old.shape}, the model expects "
                                 f"{leaf.shape}")
            leaves[path] = old
        params[top] = jax.tree_util.tree_map_with_path(lambda p, _, found=leaves: found[p], params[top])
    return params
