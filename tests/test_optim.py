"""The optimizer against a numpy port of the original AdamWeightDecayOptimizer and schedule."""

import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from electra_jax import optim


def original_lr(step, base_lr, warmup, total, power=1.0):
    """tf.train.polynomial_decay(end 0, no cycle) from step 0, times min(1, step / warmup)."""
    decayed = base_lr * (1 - min(step, total) / total) ** power
    return decayed * min(1.0, step / warmup) if warmup else decayed


def numpy_adam_weight_decay(params, grads_seq, *, base_lr, warmup, total, wd=0.01, b1=0.9, b2=0.999, eps=1e-6,
                            clip=1.0):
    """The original optimization.py update, one variable at a time in plain numpy."""
    params = {k: v.astype(np.float64).copy() for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(x) for k, x in params.items()}
    for step, grads in enumerate(grads_seq):
        lr = original_lr(step, base_lr, warmup, total)
        norm = np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in grads.values()))
        scale = clip / max(norm, clip)  # tf.clip_by_global_norm
        for name in params:
            g = grads[name] * scale
            m[name] = b1 * m[name] + (1 - b1) * g
            v[name] = b2 * v[name] + (1 - b2) * g * g
            update = m[name] / (np.sqrt(v[name]) + eps)
            if not re.search("LayerNorm|layer_norm|bias", name):
                update += wd * params[name]
            params[name] = params[name] - lr * update
    return params


def _config(**overrides):
    c = ml_collections.ConfigDict(dict(
        learning_rate=5e-3, schedule="electra", warmup_steps=3, lr_decay_power=1.0, end_learning_rate=0.0,
        weight_decay=0.01, adam_b1=0.9, adam_b2=0.999, adam_eps=1e-6, bias_correction=False, clip_norm=1.0,
        layerwise_lr_decay=0.0))
    c.update(overrides)
    return c


def test_ten_steps_equal_the_original_update():
    rng = np.random.default_rng(0)
    flat = {"layer/kernel": rng.normal(size=(4, 3)), "layer/bias": rng.normal(size=(3,)),
            "LayerNorm/scale": rng.normal(size=(3,)), "embeddings/word_embeddings": rng.normal(size=(5, 2))}
    flat = {k: v.astype(np.float32) for k, v in flat.items()}
    grads_seq = [{k: (rng.normal(size=v.shape) * (3.0 if i % 2 else 0.1)).astype(np.float32)
                  for k, v in flat.items()} for i in range(10)]
    expected = numpy_adam_weight_decay(flat, grads_seq, base_lr=5e-3, warmup=3, total=20)

    def tree(d):
        return {"layer": {"kernel": d["layer/kernel"], "bias": d["layer/bias"]},
                "LayerNorm": {"scale": d["LayerNorm/scale"]},
                "embeddings": {"word_embeddings": d["embeddings/word_embeddings"]}}

    tx, _ = optim.make_optimizer(_config(), total_steps=20)
    params = jax.tree_util.tree_map(jnp.asarray, tree(flat))
    state = tx.init(params)
    for grads in grads_seq:
        updates, state = tx.update(jax.tree_util.tree_map(jnp.asarray, tree(grads)), state, params)
        params = jax.tree_util.tree_map(lambda p, u: p + u, params, updates)
    got = {"layer/kernel": params["layer"]["kernel"], "layer/bias": params["layer"]["bias"],
           "LayerNorm/scale": params["LayerNorm"]["scale"],
           "embeddings/word_embeddings": params["embeddings"]["word_embeddings"]}
    for name in flat:
        np.testing.assert_allclose(np.asarray(got[name]), expected[name], atol=1e-6, err_msg=name)


def test_schedule_equals_the_original_formula():
    schedule = optim.electra_schedule(5e-4, 10_000, 1_000_000)
    for step in (0, 1, 5_000, 10_000, 10_001, 500_000, 999_999, 1_000_000, 1_200_000):
        assert abs(float(schedule(step)) - original_lr(step, 5e-4, 10_000, 1_000_000)) < 1e-10
    assert abs(float(schedule(10_000)) - 4.95e-4) < 1e-10  # the peak sits below base_lr
    common = optim.make_schedule(_config(schedule="warmup_linear", learning_rate=1.0, warmup_steps=10), 110)
    assert [round(float(common(s)), 6) for s in (0, 5, 10, 60, 110)] == [0.0, 0.5, 1.0, 0.5, 0.0]


def test_weight_decay_mask_skips_layernorm_and_bias():
    params = {"embeddings": {"word_embeddings": 0, "LayerNorm": {"scale": 0, "bias": 0}},
              "generator_predictions": {"output_bias": 0, "dense": {"kernel": 0, "bias": 0}}}
    mask = optim.decay_mask(params)
    assert mask["embeddings"]["word_embeddings"] and mask["generator_predictions"]["dense"]["kernel"]
    assert not any([mask["embeddings"]["LayerNorm"]["scale"], mask["embeddings"]["LayerNorm"]["bias"],
                    mask["generator_predictions"]["output_bias"], mask["generator_predictions"]["dense"]["bias"]])


def test_layerwise_multipliers_match_the_original_table():
    layers = {f"layer_{i}": {"output": {"kernel": np.zeros(2)}} for i in range(12)}
    params = {"embeddings": {"word_embeddings": np.zeros(2)},
              "discriminator": {"embeddings_project": {"kernel": np.zeros(2)}, **layers},
              "task_specific": {"dense": {"kernel": np.zeros(2)}}}
    mult = optim.layerwise_lr_multipliers(params, 12, 0.8)
    assert abs(float(mult["embeddings"]["word_embeddings"]) - 0.8 ** 14) < 1e-7  # 0.044
    assert abs(float(mult["discriminator"]["embeddings_project"]["kernel"]) - 0.8 ** 14) < 1e-7
    assert abs(float(mult["discriminator"]["layer_0"]["output"]["kernel"]) - 0.8 ** 13) < 1e-7  # 0.055
    assert abs(float(mult["discriminator"]["layer_11"]["output"]["kernel"]) - 0.64) < 1e-7  # the d² quirk
    assert float(mult["task_specific"]["dense"]["kernel"]) == 1.0
    stacked = {"discriminator": {"layers": {"output": {"kernel": np.zeros((12, 2))}}}}
    per_layer = np.asarray(optim.layerwise_lr_multipliers(stacked, 12, 0.8)["discriminator"]["layers"]["output"]
                           ["kernel"])[:, 0]
    np.testing.assert_allclose(per_layer, [0.8 ** (13 - i) for i in range(12)], rtol=1e-6)
