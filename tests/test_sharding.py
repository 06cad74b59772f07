"""Sharding: mesh construction, rule presets, and a sharded step equal to the one-device step.

The 8-device checks run in a subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=8 so the rest
of the suite keeps its single CPU device.
"""

import json
import os
import subprocess
import sys
import types

import mini
import pytest

from electra_jax import sharding

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The mini network with dims that divide by 2 and 8.
SMALL_OVERRIDES = mini.overrides(**{"data.max_seq_length": 16, "train.batch_size": 8, "optim.warmup_steps": 0,
                                    "optim.learning_rate": 1e-3})


def _fake_mesh(**shape):
    return types.SimpleNamespace(shape=shape)


def test_mesh_size_mismatch_is_one_clear_error():
    with pytest.raises(sharding.ShardingError, match=r"has 4 devices but 8 are available.*data \* fsdp \* tensor = 8"):
        sharding.mesh_shape({"data": 2, "fsdp": 2, "tensor": 1}, 8)
    with pytest.raises(sharding.ShardingError, match="does not divide the 8 devices"):
        sharding.mesh_shape({"data": -1, "fsdp": 3, "tensor": 1}, 8)
    assert sharding.mesh_shape({"data": -1, "fsdp": 2, "tensor": 2}, 8) == {"data": 2, "fsdp": 2, "tensor": 2}


def test_rules_map_logical_axes_and_skip_non_dividing_dims():
    mesh = _fake_mesh(data=1, fsdp=4, tensor=2)
    rules = sharding.rules_for("fsdp_tp")
    # word table: vocab over tensor, the embedding width over fsdp.
    assert sharding.logical_to_spec(("vocab", "embed_table"), (1024, 64), rules, mesh) == sharding.PartitionSpec(
        "tensor", "fsdp")
    # one head cannot split over tensor=2: that dimension stays whole.
    assert sharding.logical_to_spec(("embed", "heads", "kv"), (64, 1, 64), rules, mesh) == sharding.PartitionSpec(
        "fsdp", None, None)
    # dp replicates every weight.
    assert sharding.logical_to_spec(("embed", "mlp"), (64, 128), sharding.rules_for("dp"), mesh) == \
        sharding.PartitionSpec(None, None)
    with pytest.raises(sharding.ShardingError, match="config.sharding.rules"):
        sharding.rules_for("zero3")


def test_batch_not_dividing_over_data_axes_is_one_clear_error():
    mesh = _fake_mesh(data=2, fsdp=2, tensor=2)
    sharding.check_batch_size(8, mesh)
    with pytest.raises(sharding.ShardingError,
                       match=r"config.train.batch_size = 6 does not divide over the data axes.*data \* fsdp = 4"):
        sharding.check_batch_size(6, mesh)


@pytest.mark.slow  # about 2 CPU-minutes: four models compiled for 1 and 8 devices
def test_sharded_steps_match_one_device():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", mini.SHARDED_STEPS, json.dumps(SMALL_OVERRIDES)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    out = json.loads(lines[-1][len("RESULT "):])
    ref = out["reference"]
    for rules in ("dp", "fsdp", "fsdp_tp"):
        got = out[rules]
        assert got["losses"] == pytest.approx(ref, rel=2e-5, abs=1e-5), (rules, got, ref)
        assert got["max_param_diff"] < 2e-5, (rules, got)
    # dp keeps a whole copy per device; fsdp splits every weight: about an eighth each.
    assert out["dp"]["max_device_fraction"] == pytest.approx(1.0)
    assert out["fsdp"]["devices"] == 8
    assert 0.124 < out["fsdp"]["max_device_fraction"] < 0.135, out["fsdp"]
    # fsdp_tp on 2 x 2 model-parallel devices: about a quarter, plus weights too small to split.
    assert out["fsdp_tp"]["max_device_fraction"] < 0.35, out["fsdp_tp"]


VMAPPED_STEPS = r"""
import json, os, sys
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
import jax, numpy as np
from electra_jax import config as config_lib, sharding, train_state
from electra_jax.data.inputs import SyntheticInput

overrides = json.loads(sys.argv[1])
config = config_lib.load("configs/pretrain.py:tiny", dict(overrides, **{"sharding.rules": "fsdp"}))

def batches(seed):
    data = SyntheticInput(config=config, per_host_batch_size=config.train.batch_size, seed=seed, process_index=0,
                          process_count=1)
    return [next(data) for _ in range(2)]

def run_alone(seeds):  # each seed on one device with the plain step (compiled once)
    config.mesh.update({"data": 1, "fsdp": 1, "tensor": 1})
    trainer = train_state.Trainer(config, sharding.make_mesh(config.mesh, jax.devices()[:1]))
    compiled = trainer.compile(log_memory=False, include_eval=False)
    for seed in seeds:
        state = trainer.init_state(seed)
        rng = jax.device_put(np.asarray(state.rng), trainer.replicated)
        losses = []
        for batch in batches(seed):
            state, metrics = compiled.train_step(state, jax.device_put(batch, trainer.batch_sharding), rng)
            losses.append(float(metrics["loss"]))
        yield seed, losses, jax.device_get(state.params)

config.mesh.update({"data": 1, "fsdp": 8, "tensor": 1})
trainer = train_state.Trainer(config, sharding.make_mesh(config.mesh))
state = trainer.stack_states([trainer.init_state(0), trainer.init_state(1)])
compiled = trainer.compile(log_memory=False, include_eval=False, seeds=2)
rng = jax.device_put(np.asarray(state.rng), trainer.replicated)
losses = []
for a, b in zip(batches(0), batches(1)):
    stacked = {k: np.stack([a[k], b[k]]) for k in a}
    state, metrics = compiled.train_step(state, jax.device_put(stacked, trainer.stacked_batch_sharding), rng)
    losses.append(np.asarray(metrics["loss"]).tolist())
embedding = state.params["embeddings"]["word_embeddings"]
out = {"stacked_losses": losses, "word_table_spec": str(embedding.sharding.spec),
       "per_device_fraction": embedding.addressable_shards[0].data.size / embedding.size}
params = jax.device_get(state.params)
for seed, alone_losses, alone in run_alone((0, 1)):
    diffs = jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda x, y: float(np.max(np.abs(x[seed] - y))),
                                                             params, alone))
    out[seed] = {"losses": alone_losses, "max_param_diff": max(diffs)}
print("RESULT " + json.dumps(out))
"""


def test_steps_vmapped_over_seeds_on_a_sharded_mesh_match_each_seed_alone():
    """Trainer.compile(seeds=2) on 8 devices with fsdp rules (every weight split 8 ways behind its seeds axis): two
    steps of two stacked seeds equal each seed's own two plain steps on one device."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", VMAPPED_STEPS, json.dumps(SMALL_OVERRIDES)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    out = json.loads(lines[-1][len("RESULT "):])
    assert "fsdp" in out["word_table_spec"] and out["word_table_spec"].startswith("P(None,")  # seeds axis whole
    assert out["per_device_fraction"] == 1 / 8  # the stacked table is split over the 8 devices, not copied
    for seed in (0, 1):
        alone = out[str(seed)]
        assert [step[seed] for step in out["stacked_losses"]] == pytest.approx(alone["losses"], rel=2e-5, abs=1e-5)
        assert alone["max_param_diff"] < 2e-5, alone
    assert out["stacked_losses"][0][0] != out["stacked_losses"][0][1]  # two seeds, not one twice
