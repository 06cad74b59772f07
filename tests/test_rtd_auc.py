"""benchmarks/rtd_auc.py's decomposition of Electric's NCE logit against numpy, SciPy and scikit-learn, computed from
the model's public logits (modeling.generator_logits, modeling.discriminator_logits) on the same corrupted batches."""

import importlib.util
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from mini import config as mini_config

from electra_jax import modeling, objective
from electra_jax import sharding, train_state
from electra_jax.data.inputs import SyntheticInput

REPO = Path(__file__).resolve().parents[1]

def _rtd_auc():
    sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("rtd_auc", REPO / "benchmarks" / "rtd_auc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

def test_electric_decomposition_equals_independent_statistics():
    metrics_lib = pytest.importorskip("sklearn.metrics")
    stats = pytest.importorskip("scipy.stats")
    config = mini_config(**{"objective.kind": "electric", "data.max_seq_length": 32, "train.batch_size": 8})
    trainer = train_state.Trainer(config, sharding.make_mesh(config.mesh))
    params = jax.device_get(trainer.init_state(0).params)
    # A cloze head that is not uniform, so entropy, cross-entropy and log q vary.
    bias = np.array(params["generator_predictions"]["output_bias"])
    bias[: config.model.vocab_size] += np.random.default_rng(0).normal(0, 2.0, config.model.vocab_size)
    params["generator_predictions"]["output_bias"] = bias
    # Energies spread over a few units, as a trained network's (at initialisation they sit within 0.01 of one value,
    # where the metric's 0.0001-wide bins tie them).
    head = params["discriminator_predictions"]["dense_prediction"]
    head["kernel"] = np.asarray(head["kernel"]) * 10.0
    data = SyntheticInput(config=config, per_host_batch_size=8, seed=3, process_index=0, process_count=1)
    batches = [({k: jnp.asarray(v) for k, v in next(data).items()}, jax.random.PRNGKey(i)) for i in range(3)]

    got = _rtd_auc().electric_decomposition(trainer, params, config, batches)

    model = trainer.program.model
    cols = {key: [] for key in ("total", "energy", "log_q", "written", "changed", "real", "inner", "entropy", "ce")}
    eval_metrics = []
    for batch, rng in batches:
        f = objective.forward(params, batch, rng, model=model, config=config, train=False)
        ids, mask, segments = (np.asarray(batch[k]) for k in ("input_ids", "input_mask", "segment_ids"))
        fake, written = np.asarray(f.fake_ids), np.asarray(f.labels).astype(bool)
        log_probs = np.asarray(jax.nn.log_softmax(modeling.generator_logits(params, config, ids, segments, mask)),
                               np.float64)
        energy = np.asarray(modeling.discriminator_logits(params, config, fake, segments, mask), np.float64)
        log_q = np.take_along_axis(log_probs, fake[..., None], -1)[..., 0]
        cols["total"].append(energy + log_q + np.log(0.15 / 0.85))
        cols["energy"].append(energy)
        cols["log_q"].append(log_q)
        cols["written"].append(written)
        cols["changed"].append(written & (fake != ids))
        cols["real"].append(mask.astype(bool))
        cols["inner"].append(mask.astype(bool) & ~np.isin(ids, [config.data.cls_id, config.data.sep_id]))
        cols["entropy"].append(stats.entropy(np.exp(log_probs[written]), axis=-1))
        cols["ce"].append(-np.take_along_axis(log_probs, ids[..., None], -1)[..., 0][written])
        eval_metrics.append(objective.pretrain_loss(params, batch, rng, model=model, config=config, train=False)[1])
    a = {key: np.concatenate([c.reshape(-1) for c in value]) for key, value in cols.items()}
    real = a["real"]
    left = a["inner"] & ~a["written"]

    assert got["total_auc_written"] == pytest.approx(metrics_lib.roc_auc_score(a["written"][real], a["total"][real]),
                                                     abs=1e-3)
    assert got["total_auc_written"] == pytest.approx(train_state.accumulate_eval(eval_metrics)["disc_auc_tokens"],
                                                     abs=1e-6)
    assert got["energy_auc_changed"] == pytest.approx(
        metrics_lib.roc_auc_score(a["changed"][real], a["energy"][real]), abs=1e-3)
    assert got["noise_auc_changed"] == pytest.approx(
        metrics_lib.roc_auc_score(a["changed"][real], a["log_q"][real]), abs=1e-3)
    assert got["noise_entropy"] == pytest.approx(a["entropy"].mean(), rel=1e-4)
    assert got["noise_cross_entropy"] == pytest.approx(a["ce"].mean(), rel=1e-4)
    fit = stats.linregress(-a["log_q"][left], a["energy"][left])
    assert got["energy_slope"] == pytest.approx(fit.slope, rel=1e-3, abs=1e-4)
    assert got["energy_correlation"] == pytest.approx(fit.rvalue, rel=1e-3, abs=1e-4)
    y, z = a["written"][real].astype(float), a["total"][real]
    assert got["nce_loss"] == pytest.approx(np.mean(np.log1p(np.exp(-z)) * y + np.log1p(np.exp(z)) * (1 - y)), rel=1e-5)
    share = y.mean()
    assert got["nce_loss_prior"] == pytest.approx(-(share * np.log(share) + (1 - share) * np.log(1 - share)), rel=1e-9)
    assert a["entropy"].mean() != pytest.approx(a["ce"].mean(), rel=1e-3)  # the two are told apart
