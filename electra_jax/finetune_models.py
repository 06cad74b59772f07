"""Fine-tuning models: the pre-trained discriminator plus the original ELECTRA task heads.

`FinetuneModel` has submodules named exactly `embeddings` (modeling.Embeddings) and `discriminator`
(modeling.Encoder), so pre-training parameters load by name, and puts its head under `task_specific`,
which optim.layer_depth places at depth L + 2 (learning-rate multiplier 1). Heads follow the original
`finetune/` code (ELECTRA_REFERENCE.md section 6), every dense layer with Glorot-uniform kernels and zero
biases (the tf.layers.dense default):

* classification / regression: dropout(0.1) on the final [CLS] state, then ONE dense layer (no pooler,
  unlike HF's ElectraForSequenceClassification);
* tagging: dense(n_tags) on each word's first word piece;
* QA: the joint start/end head with an answerability classifier (qa_tasks.py, joint_prediction=True).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from electra_jax.modeling import Embeddings, Encoder, ModelConfig, gelu

MASK_PENALTY = 1000.0  # the original adds -1000 to logits outside the answer mask


def _glorot_dense(features: int, name: str) -> nn.Dense:
    return nn.Dense(features, kernel_init=nn.initializers.xavier_uniform(), bias_init=nn.initializers.zeros,
                    param_dtype=jnp.float32, name=name)


class ClassificationHead(nn.Module):
    num_outputs: int
    dropout: float = 0.1

    @nn.compact
    def __call__(self, hidden, deterministic: bool):
        cls = hidden[:, 0].astype(jnp.float32)
        cls = nn.Dropout(self.dropout)(cls, deterministic=deterministic)
        return _glorot_dense(self.num_outputs, "output")(cls)


class TaggingHead(nn.Module):
    num_tags: int

    @nn.compact
    def __call__(self, hidden, labeled_positions):
        states = jnp.take_along_axis(hidden, labeled_positions[..., None].astype(jnp.int32), axis=1)
        return _glorot_dense(self.num_tags, "output")(states.astype(jnp.float32))


class QAHead(nn.Module):
    """Start logits, end logits conditioned on the start (XLNet-style), and the answerability logit."""

    beam_size: int = 20
    hidden_units: int = 512

    def setup(self):
        self.start_logits_dense = _glorot_dense(1, "start_logits")
        self.qa_hidden = _glorot_dense(self.hidden_units, "qa_hidden")
        self.end_logits_dense = _glorot_dense(1, "end_logits")
        self.answerable_hidden = _glorot_dense(self.hidden_units, "answerable_hidden")
        self.answerable_logit_dense = _glorot_dense(1, "answerable_logit")

    def _end_logits(self, start_features, end_features, answer_mask):
        logits = self.end_logits_dense(gelu(self.qa_hidden(jnp.concatenate([start_features, end_features], -1))))
        return logits[..., 0] + MASK_PENALTY * (answer_mask - 1.0)

    def __call__(self, hidden, input_mask, segment_ids, start_positions=None):
        """Training (start_positions given): start/end logits [B, S] and answerable logit [B].

        Evaluation: also the beam: start_top_log_probs/index [B, K], end_top_log_probs/index [B, K, K].
        """
        hidden = hidden.astype(jnp.float32)
        seq_len = hidden.shape[1]
        # The answer may be any context token, or [CLS] (position 0) for "no answer in this window".
        answer_mask = input_mask.astype(jnp.float32) * segment_ids.astype(jnp.float32)
        answer_mask = answer_mask + jax.nn.one_hot(0, seq_len, dtype=jnp.float32)
        start_logits = self.start_logits_dense(hidden)[..., 0] + MASK_PENALTY * (answer_mask - 1.0)
        out = {"start_logits": start_logits}
        if start_positions is not None:
            start_features = jnp.take_along_axis(hidden, start_positions[:, None, None].astype(jnp.int32), axis=1)
            start_features = jnp.broadcast_to(start_features, hidden.shape)
            out["end_logits"] = self._end_logits(start_features, hidden, answer_mask)
        else:
            k = min(self.beam_size, seq_len)
            start_top_log_probs, start_top_index = jax.lax.top_k(jax.nn.log_softmax(start_logits), k)
            start_features = jnp.take_along_axis(hidden, start_top_index[..., None], axis=1)  # [B, K, H]
            start_features = jnp.broadcast_to(start_features[:, :, None, :],
                                              (hidden.shape[0], k, seq_len, hidden.shape[-1]))
            end_features = jnp.broadcast_to(hidden[:, None], start_features.shape)
            end_logits = self._end_logits(start_features, end_features, answer_mask[:, None, :])
            end_top_log_probs, end_top_index = jax.lax.top_k(jax.nn.log_softmax(end_logits), k)
            out.update(start_top_log_probs=start_top_log_probs, start_top_index=start_top_index,
                       end_top_log_probs=end_top_log_probs, end_top_index=end_top_index)
        # Answerability from [CLS] and the start-probability-weighted mean state (answerable_uses_start_logits).
        start_probs = jax.nn.softmax(start_logits, axis=-1)
        start_summary = jnp.einsum("bs,bsh->bh", start_probs, hidden)
        features = gelu(self.answerable_hidden(jnp.concatenate([hidden[:, 0], start_summary], -1)))
        out["answerable_logit"] = self.answerable_logit_dense(features)[..., 0]
        return out


class FinetuneModel(nn.Module):
    """Embeddings -> discriminator encoder -> task head (`task_specific`).

    kind: "classification", "regression", "tagging" or "qa"; num_outputs: labels (1 for regression), tags.
    """

    cfg: ModelConfig
    kind: str
    num_outputs: int = 2
    head_dropout: float = 0.1
    beam_size: int = 20
    qa_hidden_units: int = 512

    def setup(self):
        cfg = self.cfg
        self.embeddings = Embeddings(cfg, cfg.embedding_size)
        self.discriminator = Encoder(cfg, cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.intermediate_size,
                                     cfg.embedding_size)
        if self.kind in ("classification", "regression"):
            self.task_specific = ClassificationHead(self.num_outputs, self.head_dropout)
        elif self.kind == "tagging":
            self.task_specific = TaggingHead(self.num_outputs)
        elif self.kind == "qa":
            self.task_specific = QAHead(self.beam_size, self.qa_hidden_units)
        else:
            raise ValueError(f"unknown head kind {self.kind!r}")

    def encode(self, input_ids, segment_ids, input_mask, deterministic: bool):
        embedded = self.embeddings(input_ids, segment_ids, deterministic)
        return self.discriminator(embedded, input_mask, deterministic)

    def __call__(self, batch: dict[str, Any], deterministic: bool = True, training_targets: bool = False):
        """Head outputs for a batch dict (input_ids, segment_ids, input_mask, and task extras).

        training_targets: for QA, condition the end logits on the gold start (training) instead of the beam.
        """
        hidden = self.encode(batch["input_ids"], batch["segment_ids"], batch["input_mask"], deterministic)
        if self.kind in ("classification", "regression"):
            logits = self.task_specific(hidden, deterministic)
            return logits[..., 0] if self.kind == "regression" else logits
        if self.kind == "tagging":
            return self.task_specific(hidden, batch["labeled_positions"])
        return self.task_specific(hidden, batch["input_mask"], batch["segment_ids"],
                                  batch["start_positions"] if training_targets else None)
