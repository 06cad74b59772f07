"""The training system's Trainer and steps against hand computations: a toy Program whose update is known in numpy,
the step key contract, exact eval accumulation, and parameter loading into the sharded state."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import sklearn.metrics

from electra_jax import config as config_lib
from electra_jax import modeling, objective, sharding, train_state

LEARNING_RATE = 0.1


class LinearRegression:
    """A `train_state.Program`: y ~ x . w with a squared loss and plain SGD (its update is one line of numpy)."""

    train_metrics = ("loss", "draw")

    def __init__(self, dim: int = 4):
        self.dim = dim

    def init_boxed_params(self, rng):
        return {"w": jax.random.normal(rng, (self.dim,))}

    def loss(self, params, batch, rng, train):
        residual = batch["x"] @ params["w"] - batch["y"]
        return jnp.mean(residual**2), {"draw": jax.random.uniform(rng)}

    def evaluate(self, params, batch, rng):
        return {"prediction": batch["x"] @ params["w"]}

    def make_optimizer(self, param_shapes):
        schedule = optax.constant_schedule(LEARNING_RATE)
        return optax.sgd(schedule), schedule

    def abstract_batch(self, global_batch_size):
        return {"x": jax.ShapeDtypeStruct((global_batch_size, self.dim), jnp.float32),
                "y": jax.ShapeDtypeStruct((global_batch_size,), jnp.float32)}


def _trainer(program):
    config = config_lib.load("configs/pretrain.py:tiny", {"train.batch_size": 8})
    return train_state.Trainer(config, sharding.make_mesh(config.mesh), program)


def test_a_program_step_equals_the_numpy_update():
    trainer = _trainer(LinearRegression())
    state = trainer.init_state(seed=3)
    compiled = trainer.compile(8, log_memory=False, eval_batch_size=8)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 4)).astype(np.float32), rng.normal(size=8).astype(np.float32)
    w = np.asarray(state.params["w"], np.float64)
    base_key = np.asarray(state.rng)
    batch = {"x": jnp.asarray(x), "y": jnp.asarray(y)}
    key = jax.device_put(base_key, trainer.replicated)
    for step in range(3):
        state, metrics = compiled.train_step(state, batch, key)
        residual = x @ w - y
        gradient = 2.0 / 8 * x.T @ residual
        np.testing.assert_allclose(float(metrics["loss"]), np.mean(residual**2), rtol=1e-5)
        np.testing.assert_allclose(float(metrics["grad_norm"]), np.linalg.norm(gradient), rtol=1e-5)
        assert float(metrics["learning_rate"]) == pytest.approx(LEARNING_RATE)
        # The step's key is fold_in(run key, number of completed updates).
        assert float(metrics["draw"]) == float(jax.random.uniform(jax.random.fold_in(base_key, step)))
        w = w - LEARNING_RATE * gradient
        np.testing.assert_allclose(np.asarray(state.params["w"]), w, rtol=1e-5, atol=1e-6)
        assert int(state.step) == step + 1
    np.testing.assert_array_equal(np.asarray(state.rng), base_key)  # the run key itself never changes
    outputs = compiled.eval_step(state.params, batch, key)
    np.testing.assert_allclose(np.asarray(outputs["prediction"]), x @ w, rtol=1e-5, atol=1e-5)


def test_init_state_is_a_pure_function_of_the_seed():
    trainer = _trainer(LinearRegression())
    a, b, c = trainer.init_state(1), trainer.init_state(1), trainer.init_state(2)
    np.testing.assert_array_equal(np.asarray(a.params["w"]), np.asarray(b.params["w"]))
    assert not np.array_equal(np.asarray(a.params["w"]), np.asarray(c.params["w"]))
    # state_from_params keeps given weights and draws the same run key as init_state.
    fresh = trainer.state_from_params({"w": np.arange(4, dtype=np.float32)}, seed=1)
    np.testing.assert_array_equal(np.asarray(fresh.params["w"]), np.arange(4))
    np.testing.assert_array_equal(np.asarray(fresh.rng), np.asarray(a.rng))
    with pytest.raises(ValueError, match=r"parameter w has shape \(3,\) but the model expects \(4,\)"):
        trainer.state_from_params({"w": np.zeros(3, np.float32)}, seed=1)


def test_eval_accumulation_recomputes_auc_from_summed_histograms():
    """AUC over several batches equals scikit-learn's on all the (binned) scores, not a mean of batch AUCs."""
    rng = np.random.default_rng(0)
    per_batch, all_labels, all_bins = [], [], []
    for _ in range(3):
        labels = (rng.random(200) < 0.3).astype(np.int32)
        probs = np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0.0, 0.999).astype(np.float32)
        pos, neg = objective.auc_histograms(jnp.asarray(probs), jnp.asarray(labels))
        per_batch.append({"loss": jnp.asarray(float(labels.mean())), "auc_pos_hist": pos, "auc_neg_hist": neg})
        all_labels.append(labels)
        all_bins.append(np.floor(probs * objective.AUC_BINS))
    out = train_state.accumulate_eval(per_batch)
    want = sklearn.metrics.roc_auc_score(np.concatenate(all_labels), np.concatenate(all_bins))
    assert out["disc_auc"] == pytest.approx(want, abs=1e-6)
    assert out["loss"] == pytest.approx(np.mean([labels.mean() for labels in all_labels]), rel=1e-6)


def test_pretraining_is_the_default_program(mini_config):
    config = mini_config(**{"data.max_seq_length": 16, "train.batch_size": 2})
    trainer = train_state.Trainer(config, sharding.make_mesh(config.mesh))
    assert isinstance(trainer.program, train_state.PretrainProgram)
    shapes = jax.tree_util.tree_map(lambda s: s.shape, modeling.param_shapes(config))
    assert jax.tree_util.tree_map(lambda s: s.shape, trainer.param_shapes) == shapes
    batch = trainer.abstract_batch(2)
    assert set(batch) == set(train_state.BATCH_KEYS) and all(v.shape == (2, 16) for v in batch.values())
