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
