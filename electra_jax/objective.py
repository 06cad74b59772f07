"""Replaced-token detection: masking, replacement sampling, losses and metrics, as plain functions.

Matches google-research/electra `pretrain/pretrain_helpers.py` and `run_pretraining.py`
(ELECTRA_REFERENCE.md section 3), including its quirks:
  * positions are drawn with replacement, so an example can select one position twice;
  * writes go through `scatter_update`, which ignores position 0 and, when two slots hit one
    position, writes the floor of the mean of their values (so two different sampled ids at one
    position produce their integer mean);
  * a sampled token equal to the original is labelled real.

objective.kind = "electric" is the original's Electric (Clark et al., EMNLP 2020; `electric_objective`, which
implies `two_tower_generator`), a departure from the ELECTRA default: the generator is a two-tower cloze model
that reads the *unmasked* ids and gives q(x_t | the rest) at every position; its loss is the cloze
cross-entropy over every candidate position; replacements are sampled from q at the masked positions exactly
as ELECTRA samples; every written position is labelled replaced (even when the sample equals the original);
and the discriminator logit becomes an energy-based NCE logit, raw logit + stop_gradient(log q(x_t)) +
log(mask_prob / (1 - mask_prob)), with the same lambda = 50 (run_pretraining.py, _get_discriminator_output).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

AUC_BINS = 1000
# disc_auc_tokens: the AUC over real tokens only, its scores binned by logit over [-LOGIT_RANGE, LOGIT_RANGE] in
# TOKEN_AUC_BINS bins (0.0001 wide; scores beyond the range share the end bins). Probability bins put every
# probability under 1e-3 into one bin, with the padding: Electric's NCE probabilities (about k·q) all land there at
# initialisation. Bins 0.002 wide were too coarse: a trained Electric energy network puts a third of the tokens
# within 0.001 of one value, and such ties cost 0.004 of AUC; and log q of a rare token is often below -16.
TOKEN_AUC_BINS, LOGIT_RANGE = 640_000, 32.0
# Each AUC metric and the prefix of the histograms behind it (PREFIXpos_hist, PREFIXneg_hist), which an eval sums
# over its batches before the AUC is taken (train_state.accumulate_eval).
AUC_METRICS = {"disc_auc": "auc_", "disc_auc_tokens": "auc_tokens_", "energy_auc_tokens": "auc_energy_"}


class MaskedInputs(NamedTuple):
    input_ids: jax.Array  # [B, S] the generator's input (with [MASK]s)
    positions: jax.Array  # [B, N] selected positions; padding slots point at 0
    target_ids: jax.Array  # [B, N] original ids there (0 in padding slots)
    weights: jax.Array  # [B, N] float32, 1 for the first k slots of each example


def scatter_update(sequence, updates, positions):
    """The original `scatter_update` for int sequences: returns (updated [B, S], written mask [B, S]).

    Updates aimed at position 0 are dropped; a position hit by several slots receives the floor of
    the mean of their updates.
    """
    batch, seq_len = sequence.shape
    rows = jnp.arange(batch)[:, None]
    sums = jnp.zeros((batch, seq_len), jnp.int32).at[rows, positions].add(updates.astype(jnp.int32))
    counts = jnp.zeros((batch, seq_len), jnp.int32).at[rows, positions].add(1)
    counts = counts.at[:, 0].set(0)
    written = counts > 0
    merged = sums // jnp.maximum(counts, 1)
    return jnp.where(written, merged, sequence).astype(sequence.dtype), written.astype(jnp.int32)


def candidates_mask(input_ids, input_mask, special_ids) -> jax.Array:
    """Positions that may be masked: real tokens other than [CLS], [SEP] and [MASK]."""
    allowed = input_mask.astype(bool)
    for token in special_ids:
        allowed &= input_ids != token
    return allowed


def mask_inputs(rng: jax.Array, input_ids, input_mask, *, mask_prob: float, max_predictions: int,
                mask_id: int, cls_id: int, sep_id: int, mask_token_prob: float = 0.85,
                random_token_prob: float = 0.0, vocab_size: int | None = None) -> MaskedInputs:
    """Dynamic masking as the original `pretrain_helpers.mask`.

    k = max(1, min(N, round(n_real * mask_prob))) slots per example, positions drawn uniformly over
    the candidates with replacement; each selected position becomes [MASK] with probability
    `mask_token_prob`, a uniformly random token with `random_token_prob` (0 for ELECTRA; BERT's 0.1),
    and stays unchanged otherwise.
    """
    batch, seq_len = input_ids.shape
    pos_key, mask_key, random_key = jax.random.split(rng, 3)
    num_tokens = jnp.sum(input_mask, axis=-1).astype(jnp.float32)
    # jnp.round rounds half to even, as tf.round does.
    num_to_predict = jnp.clip(jnp.round(num_tokens * mask_prob).astype(jnp.int32), 1, max_predictions)
    weights = (jnp.arange(max_predictions)[None, :] < num_to_predict[:, None]).astype(jnp.float32)

    allowed = candidates_mask(input_ids, input_mask, (cls_id, sep_id, mask_id))
    logits = jnp.where(allowed, 0.0, -jnp.inf)
    positions = jax.random.categorical(pos_key, logits[:, None, :], axis=-1,
                                       shape=(batch, max_predictions))
    positions = jnp.where(weights > 0, positions, 0).astype(jnp.int32)
    target_ids = jnp.take_along_axis(input_ids, positions, axis=1) * weights.astype(input_ids.dtype)

    draw = jax.random.uniform(mask_key, (batch, max_predictions))
    to_mask = draw < mask_token_prob
    to_random = (draw >= mask_token_prob) & (draw < mask_token_prob + random_token_prob)
    new_values = jnp.full((batch, max_predictions), mask_id, input_ids.dtype)
    if random_token_prob > 0.0:
        if vocab_size is None:
            raise ValueError("random_token_prob > 0 needs vocab_size")
        random_ids = jax.random.randint(random_key, (batch, max_predictions), 0, vocab_size, input_ids.dtype)
        new_values = jnp.where(to_random, random_ids, new_values)
    change = (to_mask | to_random) & (weights > 0)
    # Slots that keep their token are pointed at position 0, which scatter_update ignores.
    masked_ids, _ = scatter_update(input_ids, new_values, jnp.where(change, positions, 0))
    return MaskedInputs(masked_ids, positions, target_ids, weights)


def first_argmax(x, axis: int = -1):
    """`jnp.argmax` (first index of the maximum) as two plain reductions instead of one variadic
    (value, index) reduction, which XLA's CPU and GPU backends run far slower over a 30k-word vocabulary."""
    top = jnp.max(x, axis=axis, keepdims=True)
    iota = jax.lax.broadcasted_iota(jnp.int32, x.shape, axis % x.ndim)
    return jnp.min(jnp.where(x == top, iota, x.shape[axis]), axis=axis)


def sample_replacements(rng: jax.Array, logits, *, temperature: float = 1.0, target_ids=None,
                        disallow_correct: bool = False) -> jax.Array:
    """Gumbel-max sampling from the generator (stop-gradient), as `sample_from_softmax`."""
    logits = jax.lax.stop_gradient(logits.astype(jnp.float32)) / temperature
    if disallow_correct:
        logits = logits - 1000.0 * jax.nn.one_hot(target_ids, logits.shape[-1], dtype=logits.dtype)
    uniform = jax.random.uniform(rng, logits.shape)
    gumbel = -jnp.log(-jnp.log(uniform + 1e-9) + 1e-9)
    return first_argmax(logits + gumbel, axis=-1)


def replace_tokens(input_ids, positions, sampled_ids, changed_only: bool = True):
    """Writes samples into the uncorrupted ids; label = written and (ELECTRA, `changed_only`) different from
    the original. Electric labels every written position replaced (`changed_only=False`)."""
    updated, written = scatter_update(input_ids, sampled_ids, positions)
    labels = written * (updated != input_ids).astype(jnp.int32) if changed_only else written
    return updated, labels


def token_log_probs(logits, ids):
    """log softmax(logits)[ids] in float32: logits [..., V], ids [...] -> [...]."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return jnp.take_along_axis(log_probs, ids[..., None].astype(jnp.int32), axis=-1)[..., 0]


def electric_logits(disc_logits, cloze_logits, fake_ids, mask_prob: float):
    """Electric's NCE logit of "this token came from the noise distribution q":
    raw discriminator logit (an energy) + stop_gradient(log q(x_t | context)) + log(mask_prob / (1 - mask_prob))."""
    log_q = jax.lax.stop_gradient(token_log_probs(cloze_logits, fake_ids))
    return disc_logits.astype(jnp.float32) + log_q + jnp.log(mask_prob / (1.0 - mask_prob))


def mlm_loss(logits, target_ids, weights):
    """Σ w·CE / (Σ w + 1e-6), duplicates counted per slot (float32)."""
    nll = -token_log_probs(logits, target_ids)
    return jnp.sum(weights * nll) / (jnp.sum(weights) + 1e-6), nll


def disc_loss(logits, labels, input_mask):
    """Sigmoid cross-entropy averaged over every non-pad token of the batch."""
    logits = logits.astype(jnp.float32)
    labels = labels.astype(jnp.float32)
    weights = input_mask.astype(jnp.float32)
    losses = (jnp.maximum(logits, 0) - logits * labels + jnp.log1p(jnp.exp(-jnp.abs(logits)))) * weights
    loss = jnp.sum(losses) / (1e-6 + jnp.sum(weights))
    per_example = jnp.sum(losses, axis=-1) / (1e-6 + jnp.sum(weights, axis=-1))
    return loss, per_example


def auc_histograms(probs, labels, num_bins: int = AUC_BINS, weights=None):
    """Per-bin counts of positives and negatives (scores in [0, 1]; `weights` 0 leaves a position out); summing
    them over batches and hosts is exact."""
    bins = jnp.clip((probs * num_bins).astype(jnp.int32), 0, num_bins - 1).reshape(-1)
    labels = labels.reshape(-1).astype(jnp.float32)
    weights = jnp.ones_like(labels) if weights is None else weights.reshape(-1).astype(jnp.float32)
    pos = jnp.zeros((num_bins,), jnp.float32).at[bins].add(labels * weights)
    neg = jnp.zeros((num_bins,), jnp.float32).at[bins].add((1.0 - labels) * weights)
    return pos, neg


def token_auc_histograms(logits, labels, input_mask):
    """auc_histograms over the real tokens, the scores binned by logit (see TOKEN_AUC_BINS)."""
    scores = (jnp.clip(logits.astype(jnp.float32), -LOGIT_RANGE, LOGIT_RANGE) + LOGIT_RANGE) / (2 * LOGIT_RANGE)
    return auc_histograms(scores, labels, TOKEN_AUC_BINS, weights=input_mask)


def auc_from_histograms(pos, neg):
    """ROC AUC from binned scores: P(score_pos > score_neg) + 0.5 P(same bin)."""
    neg_below = jnp.cumsum(neg) - neg
    wins = jnp.sum(pos * (neg_below + 0.5 * neg))
    return wins / jnp.maximum(jnp.sum(pos) * jnp.sum(neg), 1.0)


def _histograms(metric: str, pos, neg) -> dict[str, jax.Array]:
    prefix = AUC_METRICS[metric]
    return {f"{prefix}pos_hist": pos, f"{prefix}neg_hist": neg}


def dropout_key(key: jax.Array, impl: str = "threefry") -> jax.Array:
    """The key dropout masks are drawn from: `key` itself for "threefry", else a typed key of `impl`
    ("rbg", "unsafe_rbg") seeded from `key`'s bits, so the draw is still a pure function of the step key."""
    if impl == "threefry":
        return key
    width = jax.random.key_data(jax.random.key(0, impl=impl)).shape[-1]
    return jax.random.wrap_key_data(jax.random.bits(key, (width,), jnp.uint32), impl=impl)


class Forward(NamedTuple):
    """One batch through the generator and (unless masked-LM) the discriminator, before any loss."""
    input_ids: jax.Array  # [B, S] the uncorrupted ids
    input_mask: jax.Array  # [B, S]
    masked: MaskedInputs
    gen_logits: jax.Array  # [B, N, V] the generator's logits at the masked positions
    cloze_logits: jax.Array | None  # Electric: [B, S, V] q(x_t | the rest) at every position
    sampled: jax.Array | None  # [B, N] the replacements
    fake_ids: jax.Array | None  # [B, S] the discriminator's input
    labels: jax.Array | None  # [B, S] the discriminator's targets (Electric: every written position)
    disc_logits: jax.Array | None  # [B, S] the discriminator head's output (Electric: the energy E(x)_t)

    @property
    def changed(self) -> jax.Array:
        """[B, S] ELECTRA's labels: written and different from the original (Electric's labels also count a sample
        equal to the original)."""
        return self.labels * (self.fake_ids != self.input_ids).astype(self.labels.dtype)


def forward(params, batch: dict[str, Any], rng: jax.Array, *, model, config, train: bool = True) -> Forward:
    """Masking, the generator, sampling, replacement and the discriminator for one batch (no losses)."""
    o = config.objective
    deterministic = not train
    mask_rng, sample_rng, gen_dropout, disc_dropout = jax.random.split(rng, 4)
    prng = config.model.get("dropout_prng", "threefry")
    gen_dropout, disc_dropout = dropout_key(gen_dropout, prng), dropout_key(disc_dropout, prng)
    input_ids = batch["input_ids"].astype(jnp.int32)
    input_mask = batch["input_mask"].astype(jnp.int32)
    segment_ids = batch["segment_ids"].astype(jnp.int32)
    mlm = o.kind == "mlm"
    masked = mask_inputs(
        mask_rng, input_ids, input_mask, mask_prob=o.mask_prob, max_predictions=o.max_predictions_per_seq,
        mask_token_prob=o.mlm_mask_token_prob if mlm else o.mask_token_prob,
        random_token_prob=o.mlm_random_token_prob if mlm else o.random_token_prob,
        vocab_size=config.model.vocab_size, mask_id=config.data.mask_id, cls_id=config.data.cls_id,
        sep_id=config.data.sep_id)
    variables = {"params": params}
    electric = o.kind == "electric"
    cloze_logits = None
    if electric:
        # The cloze towers read the unmasked ids (the masking only chooses the positions to replace).
        cloze_logits = model.apply(variables, input_ids, segment_ids, input_mask, deterministic,
                                   method=type(model).generator_logits_all, rngs={"dropout": gen_dropout})
        gen_logits = jnp.take_along_axis(cloze_logits, masked.positions[..., None], axis=1)
    else:
        gen_logits = model.apply(variables, masked.input_ids, segment_ids, input_mask, masked.positions,
                                 deterministic, method=type(model).generator_logits_at,
                                 rngs={"dropout": gen_dropout})
    if mlm:
        return Forward(input_ids, input_mask, masked, gen_logits, None, None, None, None, None)
    sampled = sample_replacements(sample_rng, gen_logits, temperature=o.temperature,
                                  target_ids=masked.target_ids, disallow_correct=o.disallow_correct)
    fake_ids, labels = replace_tokens(input_ids, masked.positions, sampled, changed_only=not electric)
    disc_logits = model.apply(variables, fake_ids, segment_ids, input_mask, deterministic,
                              method=type(model).discriminator_logits, rngs={"dropout": disc_dropout})
    return Forward(input_ids, input_mask, masked, gen_logits, cloze_logits, sampled, fake_ids, labels, disc_logits)


def pretrain_loss(params, batch: dict[str, Any], rng: jax.Array, *, model, config, train: bool = True):
    """The full ELECTRA (or masked-LM baseline, or Electric) objective for one batch.

    Returns (loss, metrics): metrics hold scalar sums/means and the AUC histograms of this batch.
    """
    o = config.objective
    f = forward(params, batch, rng, model=model, config=config, train=train)
    input_ids, input_mask, masked, gen_logits = f.input_ids, f.input_mask, f.masked, f.gen_logits
    electric = o.kind == "electric"
    if electric:
        # The cloze loss covers every candidate position, as the original's _get_cloze_outputs.
        d = config.data
        cloze_weights = candidates_mask(input_ids, input_mask, (d.cls_id, d.sep_id, d.mask_id, d.pad_id))
        cloze_loss, _ = mlm_loss(f.cloze_logits, input_ids, cloze_weights.astype(jnp.float32))
    gen_loss, _ = mlm_loss(gen_logits, masked.target_ids, masked.weights)
    weight_sum = jnp.sum(masked.weights)
    mlm_correct = jnp.sum(masked.weights * (first_argmax(gen_logits, -1) == masked.target_ids))
    metrics = {"mlm_loss": gen_loss, "mlm_accuracy": mlm_correct / jnp.maximum(weight_sum, 1.0)}
    if electric:
        metrics["cloze_loss"] = cloze_loss
    if o.kind == "mlm":
        metrics["loss"] = gen_loss
        return gen_loss, metrics

    sampled, fake_ids, labels = f.sampled, f.fake_ids, f.labels
    disc_logits = energies = f.disc_logits
    if electric:
        disc_logits = electric_logits(energies, f.cloze_logits, fake_ids, o.mask_prob)
    d_loss, _ = disc_loss(disc_logits, labels, input_mask)
    # Electric trains its generator on the cloze loss (the original's total_loss with two_tower_generator).
    loss = o.gen_weight * (cloze_loss if electric else gen_loss) + o.disc_weight * d_loss

    mask_f = input_mask.astype(jnp.float32)
    preds = (disc_logits > 0).astype(jnp.int32)
    correct = (preds == labels).astype(jnp.float32)
    probs = jax.nn.sigmoid(disc_logits)
    # As tf.metrics.auc(labels * mask, probs * mask): padding enters as a negative with probability 0.
    pos_hist, neg_hist = auc_histograms(probs * mask_f, labels * input_mask)
    token_pos_hist, token_neg_hist = token_auc_histograms(disc_logits, labels, input_mask)
    metrics.update({
        "loss": loss,
        "disc_loss": d_loss,
        "disc_accuracy": jnp.sum(correct * mask_f) / jnp.maximum(jnp.sum(mask_f), 1.0),
        "disc_precision": jnp.sum(correct * preds * mask_f) / jnp.maximum(jnp.sum(preds * mask_f), 1.0),
        "disc_recall": jnp.sum(correct * labels * mask_f) / jnp.maximum(jnp.sum(labels * mask_f), 1.0),
        "disc_auc": auc_from_histograms(pos_hist, neg_hist),
        "sampled_mlm_accuracy": jnp.sum(masked.weights * (sampled == masked.target_ids))
        / jnp.maximum(weight_sum, 1.0),
        "replaced_fraction": jnp.sum(labels * mask_f) / jnp.maximum(jnp.sum(mask_f), 1.0),
        "disc_auc_tokens": auc_from_histograms(token_pos_hist, token_neg_hist),
        **_histograms("disc_auc", pos_hist, neg_hist),
        **_histograms("disc_auc_tokens", token_pos_hist, token_neg_hist),
    })
    if electric:
        # The energy network alone (what `predict score` sums) against ELECTRA's labels: does it tell the tokens
        # that were changed from the rest? Electric's own labels also count a sample equal to the original.
        energy_pos_hist, energy_neg_hist = token_auc_histograms(energies, f.changed, input_mask)
        metrics.update({"energy_auc_tokens": auc_from_histograms(energy_pos_hist, energy_neg_hist),
                        **_histograms("energy_auc_tokens", energy_pos_hist, energy_neg_hist)})
    return loss, metrics
