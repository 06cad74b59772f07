"""Splash attention (Pallas, interpret mode on CPU) against the plain XLA softmax attention."""

import jax
import jax.numpy as jnp
import numpy as np
import mini
import pytest

from electra_jax import attention, modeling, splash
from electra_jax import config as config_lib


def _inputs(batch, seq, heads, head_dim, lengths, seed=0):
    keys = jax.random.split(jax.random.key(seed), 4)
    q, k, v = (jax.random.normal(key, (batch, seq, heads, head_dim), jnp.float32) for key in keys[:3])
    mask = (jnp.arange(seq)[None, :] < jnp.asarray(lengths)[:, None]).astype(jnp.int32)
    return q, k, v, mask


@pytest.mark.parametrize("seq,lengths", [(128, [128, 77]), (200, [131, 9])])
def test_outputs_and_gradients_match_plain_attention(seq, lengths):
    """Padded sequences; 200 is not a multiple of 128, so the kernel's own padding path runs too."""
    q, k, v, mask = _inputs(len(lengths), seq, 2, 64, lengths)
    valid = np.asarray(mask, bool)
    weights = jax.random.normal(jax.random.key(1), q.shape) * mask[:, :, None, None]

    def loss(fn):
        # Only valid query positions enter the loss, as in the model (padded positions are masked out).
        return lambda q, k, v: jnp.sum(fn(q, k, v, mask) * weights)

    out_splash = jax.jit(splash.attention)(q, k, v, mask)
    out_plain = attention.xla_attention(q, k, v, mask)
    assert out_splash.shape == out_plain.shape
    np.testing.assert_allclose(np.asarray(out_splash)[valid], np.asarray(out_plain)[valid], atol=1e-5)

    grads_splash = jax.jit(jax.grad(loss(splash.attention), argnums=(0, 1, 2)))(q, k, v)
    grads_plain = jax.grad(loss(attention.xla_attention), argnums=(0, 1, 2))(q, k, v)
    for name, got, want in zip("qkv", grads_splash, grads_plain):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5, err_msg=f"d loss / d {name}")


def test_block_sizes_for_the_pretraining_lengths():
    assert splash._block_size(128) == 128
    assert splash._block_size(512) == 512
    assert splash._block_size(384) == 128
    with pytest.raises(ValueError, match="multiple of 128"):
        splash._block_size(100)


def test_rejects_wrong_shapes():
    q = jnp.zeros((2, 16, 64))
    with pytest.raises(ValueError, match=r"\[batch, seq, heads, head_dim\]"):
        splash.attention(q, q, q, jnp.ones((2, 16), jnp.int32))


def test_tiny_model_forward_with_splash_equals_xla():
    seq = 64
    base = config_lib.load("configs/pretrain.py:tiny", {"data.max_seq_length": seq})
    params = modeling.init_params(base, jax.random.key(0))
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 2000, size=(2, seq))
    mask = np.ones((2, seq), np.int32)
    mask[1, 40:] = 0
    ids = ids * mask
    plain = modeling.discriminator_logits(params, base, ids, input_mask=mask)
    with_splash = config_lib.load("configs/pretrain.py:tiny", {"data.max_seq_length": seq,
                                                               "model.attention": "splash"})
    fused = modeling.discriminator_logits(params, with_splash, ids, input_mask=mask)
    valid = mask.astype(bool)
    np.testing.assert_allclose(np.asarray(fused)[valid], np.asarray(plain)[valid], atol=1e-4)


_MESH_CHECK = """
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from electra_jax import attention, splash
mesh = Mesh(np.array(jax.devices()).reshape(2, 2, 1), ("data", "fsdp", "tensor"))
q, k, v = (jax.random.normal(key, (4, 128, 2, 64)) for key in jax.random.split(jax.random.key(0), 3))
mask = (jnp.arange(128)[None] < jnp.array([[128], [70], [5], [100]])).astype(jnp.int32)
loss = lambda fn: (lambda q, k, v, m: jnp.sum(fn(q, k, v, m) * m[:, :, None, None]))
sharded = [jax.device_put(x, NamedSharding(mesh, P(("data", "fsdp")))) for x in (q, k, v, mask)]
with mesh:  # the legacy context is seen too
    assert attention.batch_mesh() == (mesh, ("data", "fsdp"))
    legacy = jax.jit(jax.grad(loss(splash.attention), argnums=(0, 1, 2))).lower(*sharded).as_text()
assert "manual_computation" in legacy  # the kernel runs per shard
with jax.set_mesh(mesh):  # what electra_jax.sharding.use_mesh enters
    fn = jax.jit(jax.grad(loss(splash.attention), argnums=(0, 1, 2)))
    assert "manual_computation" in fn.lower(*sharded).as_text()  # the kernel runs per shard
    got = fn(*sharded)
want = jax.grad(loss(attention.xla_attention), argnums=(0, 1, 2))(q, k, v, mask)
for a, b in zip(got, want):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
print("ok")
"""


@pytest.mark.slow
def test_splash_runs_per_shard_under_a_mesh():
    """Under `jax.set_mesh` (or the legacy `with mesh:`) the kernel is wrapped in shard_map over the batch axes;
    gradients stay exact."""
    mini.run_on_cpu_devices(_MESH_CHECK, devices=4)
