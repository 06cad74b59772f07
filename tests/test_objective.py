"""Masking, sampling, labels and losses against numpy re-implementations of the original TF code."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from electra_jax import objective

CLS, SEP, MASK, PAD = 101, 102, 103, 0


def numpy_scatter_update(sequence, updates, positions):
    """A line-by-line numpy port of pretrain_helpers.scatter_update (integer sequences)."""
    batch, length = sequence.shape
    sums = np.zeros((batch, length), np.int64)
    counts = np.zeros((batch, length), np.int64)
    for b in range(batch):
        for n in range(positions.shape[1]):
            sums[b, positions[b, n]] += updates[b, n]
            counts[b, positions[b, n]] += 1
    counts[:, 0] = 0  # not_first_token
    merged = sums // np.maximum(1, counts)
    written = np.minimum(counts, 1)
    return (1 - written) * sequence + written * merged, written


def test_scatter_update_matches_the_original():
    rng = np.random.default_rng(0)
    seq = rng.integers(1, 1000, (6, 20))
    positions = rng.integers(0, 6, (6, 9))  # many duplicates and position-0 slots
    updates = rng.integers(1, 1000, (6, 9))
    ours, written = objective.scatter_update(jnp.asarray(seq), jnp.asarray(updates), jnp.asarray(positions))
    ref, ref_written = numpy_scatter_update(seq, updates, positions)
    np.testing.assert_array_equal(np.asarray(ours), ref)
    np.testing.assert_array_equal(np.asarray(written), ref_written)


@pytest.fixture(scope="module")
def real_batch(uncased_vocab, shared_dir):
    """Wikitext lines tokenized with the published vocabulary, packed as [CLS] tokens [SEP] + padding."""
    from electra_jax.data import tokenizer

    tok = tokenizer(str(uncased_vocab))
    lines = (shared_dir / "data" / "text" / "wikitext-2-tokens" / "wiki.valid.tokens").read_text(
        encoding="utf-8").splitlines()
    seq_len, rows = 128, []
    rng = np.random.default_rng(0)
    buffer: list[int] = []
    for line in lines:
        buffer += tok.encode(line)
        while len(buffer) >= seq_len and len(rows) < 256:
            n_real = int(rng.integers(10, seq_len - 1))  # varied lengths so k varies
            ids = [CLS] + buffer[: n_real - 2] + [SEP]
            buffer = buffer[n_real - 2:]
            rows.append(ids + [PAD] * (seq_len - len(ids)))
        if len(rows) >= 256:
            break
    ids = np.array(rows, np.int32)
    mask = (ids != PAD).astype(np.int32)
    return ids, mask


def _mask(ids, mask, seed=0, **kwargs):
    params = dict(mask_prob=0.15, max_predictions=19, mask_id=MASK, cls_id=CLS, sep_id=SEP)
    params.update(kwargs)
    out = objective.mask_inputs(jax.random.key(seed), jnp.asarray(ids), jnp.asarray(mask), **params)
    return jax.tree_util.tree_map(np.asarray, out)


def test_masking_follows_the_rule_on_real_text(real_batch):
    ids, mask = real_batch
    out = _mask(ids, mask)
    n_real = mask.sum(1)
    k = np.clip(np.round(n_real * 0.15), 1, 19)  # np.round is half-to-even, like tf.round
    np.testing.assert_array_equal(out.weights.sum(1), k)  # exactly k slots per example
    selected = out.weights > 0
    chosen_ids = np.take_along_axis(ids, out.positions, 1)[selected]
    # Special tokens and padding are never chosen; padding slots point at 0 with target 0.
    assert not np.isin(chosen_ids, [CLS, SEP, MASK, PAD]).any()
    assert np.all(out.positions[~selected] == 0) and np.all(out.target_ids[~selected] == 0)
    np.testing.assert_array_equal(out.target_ids[selected], chosen_ids)
    # Unselected positions are untouched; selected ones are [MASK] or unchanged (no random tokens).
    sel_map = np.zeros_like(ids, bool)
    for b in range(ids.shape[0]):
        sel_map[b, out.positions[b][selected[b]]] = True
    np.testing.assert_array_equal(out.input_ids[~sel_map], ids[~sel_map])
    assert np.all((out.input_ids[sel_map] == MASK) | (out.input_ids[sel_map] == ids[sel_map]))


def test_mask_fraction_and_duplicates(real_batch):
    ids, mask = real_batch
    single_masked, single_total, dup_pairs, dup_expected = 0, 0, 0.0, 0.0
    for seed in range(8):
        out = _mask(ids, mask, seed=seed)
        for b in range(ids.shape[0]):
            pos = out.positions[b][out.weights[b] > 0]
            values, counts = np.unique(pos, return_counts=True)
            singles = values[counts == 1]
            single_total += len(singles)
            single_masked += int(np.sum(out.input_ids[b, singles] == MASK))
            dup_pairs += float(np.sum(counts * (counts - 1) / 2))
            n_cand = np.sum(np.isin(ids[b], [CLS, SEP, MASK], invert=True) & (mask[b] == 1))
            dup_expected += len(pos) * (len(pos) - 1) / 2 / n_cand  # sampling with replacement
    fraction = single_masked / single_total
    sigma = math.sqrt(0.85 * 0.15 / single_total)
    assert abs(fraction - 0.85) < 4 * sigma, fraction
    assert abs(dup_pairs - dup_expected) < 4 * math.sqrt(dup_expected) + 1, (dup_pairs, dup_expected)


def test_bert_style_masking_has_random_tokens(real_batch):
    ids, mask = real_batch
    out = _mask(ids, mask, mask_token_prob=0.8, random_token_prob=0.1, vocab_size=30522)
    selected = out.weights > 0
    at = np.take_along_axis(out.input_ids, out.positions, 1)[selected]
    orig = out.target_ids[selected]
    masked = np.mean(at == MASK)
    changed = np.mean((at != MASK) & (at != orig))
    assert 0.75 < masked < 0.85 and 0.06 < changed < 0.14


def test_sampling_follows_the_softmax():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
    logits = jnp.tile(logits[:, None, :], (1, 20000, 1))
    for temperature in (1.0, 2.0):
        samples = np.asarray(objective.sample_replacements(jax.random.key(0), logits, temperature=temperature))
        freq = np.bincount(samples.reshape(-1), minlength=4) / samples.size
        expected = np.asarray(jax.nn.softmax(logits[0, 0] / temperature))
        np.testing.assert_allclose(freq, expected, atol=0.015)
    targets = jnp.zeros((1, 20000), jnp.int32)
    samples = objective.sample_replacements(jax.random.key(1), logits, target_ids=targets, disallow_correct=True)
    assert not np.any(np.asarray(samples) == 0)


def test_sampling_blocks_gradients():
    logits = jnp.ones((2, 3, 5))
    grad = jax.grad(lambda x: jnp.sum(objective.sample_replacements(jax.random.key(0), x).astype(jnp.float32)))(logits)
    assert np.all(np.asarray(grad) == 0)


def test_labels_mark_only_changed_tokens():
    ids = jnp.array([[CLS, 5, 6, 7, SEP]])
    positions = jnp.array([[1, 2, 0]])
    sampled = jnp.array([[5, 9, 4]])  # same token at 1 (real), new token at 2 (fake), slot 0 ignored
    updated, labels = objective.replace_tokens(ids, positions, sampled)
    np.testing.assert_array_equal(np.asarray(updated), [[CLS, 5, 9, 7, SEP]])
    np.testing.assert_array_equal(np.asarray(labels), [[0, 0, 1, 0, 0]])


def test_losses_match_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 4, 11)).astype(np.float32)
    targets = rng.integers(0, 11, (3, 4))
    weights = (rng.random((3, 4)) > 0.3).astype(np.float32)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_probs, targets[..., None], -1)[..., 0]
    expected = (weights * nll).sum() / (weights.sum() + 1e-6)
    ours, _ = objective.mlm_loss(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(weights))
    assert abs(float(ours) - expected) < 1e-5

    d_logits = rng.normal(size=(3, 7)).astype(np.float32) * 3
    labels = rng.integers(0, 2, (3, 7))
    mask = np.ones((3, 7), np.int32)
    mask[1, 4:] = 0
    p = 1 / (1 + np.exp(-d_logits))
    bce = -(labels * np.log(p) + (1 - labels) * np.log(1 - p)) * mask
    ours, per_example = objective.disc_loss(jnp.asarray(d_logits), jnp.asarray(labels), jnp.asarray(mask))
    assert abs(float(ours) - bce.sum() / (mask.sum() + 1e-6)) < 1e-5
    np.testing.assert_allclose(np.asarray(per_example), bce.sum(1) / (mask.sum(1) + 1e-6), rtol=1e-5)


def test_auc_matches_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 5000)
    # Scores on bin centres so the binned AUC is exact (ties inside a bin count one half, as sklearn).
    scores = (rng.integers(0, objective.AUC_BINS, 5000) + 0.5) / objective.AUC_BINS
    scores = np.clip(scores + 0.2 * labels, 0, 0.9995)
    scores = (np.floor(scores * objective.AUC_BINS) + 0.5) / objective.AUC_BINS
    pos, neg = objective.auc_histograms(jnp.asarray(scores), jnp.asarray(labels))
    ours = float(objective.auc_from_histograms(pos, neg))
    assert abs(ours - metrics.roc_auc_score(labels, scores)) < 1e-6


def test_token_auc_is_sklearn_over_the_real_tokens_where_probability_bins_see_nothing():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, (16, 64))
    input_mask = (np.arange(64)[None, :] < rng.integers(20, 64, (16, 1))).astype(np.int32)
    # Electric at initialisation: logits near log(k·q) = log(0.18 / 8000), all probabilities under 1e-3; a
    # little signal in them.
    logits = np.log(0.18 / 8000) + rng.normal(0, 0.5, labels.shape) + 0.3 * labels
    # A trained Electric energy network puts many tokens within 0.001 of one value, ordered inside that spread:
    # here a third of them within 0.004 (bins 0.002 wide lost 0.02 of AUC to such ties).
    cluster = rng.random(labels.shape) < 0.35
    init_logits = logits
    logits = np.where(cluster, 3.3883 + rng.uniform(0, 0.003, labels.shape) + 0.001 * labels, logits)
    real = input_mask.astype(bool)
    expected = metrics.roc_auc_score(labels[real], logits[real])
    pos, neg = objective.token_auc_histograms(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(input_mask))
    assert float(pos.sum() + neg.sum()) == real.sum()
    assert abs(float(objective.auc_from_histograms(pos, neg)) - expected) < 1e-3  # bins 0.0001 logits wide
    assert expected > 0.6
    # The original's metric (probabilities in 1,000 bins, padding as negatives at 0) puts every score in bin 0.
    probs = 1 / (1 + np.exp(-init_logits))
    pos, neg = objective.auc_histograms(jnp.asarray(probs * input_mask), jnp.asarray(labels * input_mask))
    assert float(objective.auc_from_histograms(pos, neg)) == 0.5


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_first_argmax_equals_numpy_argmax_ties_included(axis):
    rng = np.random.default_rng(3)
    x = rng.integers(0, 4, size=(7, 9, 33)).astype(np.float32)  # few values: every row has ties
    np.testing.assert_array_equal(np.asarray(objective.first_argmax(jnp.asarray(x), axis)), np.argmax(x, axis))
    y = rng.normal(size=(5, 30522)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(objective.first_argmax(jnp.asarray(y))), np.argmax(y, -1))


@pytest.mark.parametrize("impl", ["rbg", "unsafe_rbg"])
def test_dropout_key_draws_bernoulli_masks_from_the_chosen_prng(impl):
    key = jax.random.key(7)
    assert objective.dropout_key(key, "threefry") is key
    typed = objective.dropout_key(key, impl)
    assert str(jax.random.key_impl(typed)).find(impl) >= 0
    keep = np.asarray(jax.random.bernoulli(typed, 0.9, (200_000,)))
    # Binomial(200000, 0.9): sd 134 draws, so +/- 0.004 is about 6 sd.
    assert abs(keep.mean() - 0.9) < 0.004
    again = np.asarray(jax.random.bernoulli(objective.dropout_key(key, impl), 0.9, (200_000,)))
    other = np.asarray(jax.random.bernoulli(objective.dropout_key(jax.random.key(8), impl), 0.9, (200_000,)))
    assert np.array_equal(keep, again) and not np.array_equal(keep, other)
