"""Flash attention with dropout (Pallas, interpret mode on CPU) against the plain XLA softmax attention and a numpy
reimplementation of its dropout mask; its Triton lowering for CUDA checked without a GPU."""

import jax
import jax.numpy as jnp
import numpy as np
import mini
import pytest

from electra_jax import attention, flash, modeling
from electra_jax import config as config_lib

RATE = 0.1


def _inputs(batch, seq, heads, head_dim, lengths, seed=0):
    keys = jax.random.split(jax.random.key(seed), 4)
    q, k, v = (jax.random.normal(key, (batch, seq, heads, head_dim), jnp.float32) for key in keys[:3])
    mask = (jnp.arange(seq)[None, :] < jnp.asarray(lengths)[:, None]).astype(jnp.int32)
    return q, k, v, mask


def _lowbias32(x: np.ndarray) -> np.ndarray:
    """Wellons' lowbias32, written again from its definition (numpy uint32 arithmetic wraps mod 2**32)."""
    x = x.astype(np.uint32)
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x7FEB352D)
    x ^= x >> np.uint32(15)
    x *= np.uint32(0x846CA68B)
    x ^= x >> np.uint32(16)
    return x


def _numpy_keep(seed: np.ndarray, batch: int, heads: int, seq: int, rate: float) -> np.ndarray:
    """The keep mask [batch, heads, seq(q), seq(k)] the module docstring defines."""
    with np.errstate(over="ignore"):
        bh = np.arange(batch * heads, dtype=np.uint32).reshape(batch, heads, 1)
        head = _lowbias32(seed[0] ^ _lowbias32(bh))
        rows = _lowbias32(head ^ seed[1] ^ _lowbias32(np.arange(seq, dtype=np.uint32) + np.uint32(0x632BE5AB)))
        cols = _lowbias32(np.arange(seq, dtype=np.uint32) * np.uint32(0x9E3779B9) + np.uint32(0x7F4A7C15))
        bits = _lowbias32(rows[..., :, None] ^ cols[None, None, None, :])
    return (bits >> np.uint32(8)).astype(np.int64) >= round(rate * 2**24)


def _reference_with_mask(keep):
    """The original's attention (as attention.xla_attention) with a given dropout keep mask [B, H, S, S]."""
    def run(q, k, v, input_mask):
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(jnp.float32(q.shape[-1]))
        scores = scores + (1.0 - input_mask[:, None, None, :].astype(jnp.float32)) * -10000.0
        probs = jax.nn.softmax(scores, axis=-1)
        probs = jnp.where(keep, probs / (1.0 - RATE), 0.0)
        return jnp.einsum("bhqk,bkhd->bqhd", probs, v)
    return run


def _check(got, want, valid, atol=2e-5):
    np.testing.assert_allclose(np.asarray(got)[valid], np.asarray(want)[valid], atol=atol)


@pytest.mark.parametrize("seq,head_dim,lengths", [(128, 64, [128, 77]), (100, 24, [100, 9])])
def test_without_dropout_outputs_and_gradients_match_plain_attention(seq, head_dim, lengths):
    """Padded sequences; 100 is not a multiple of the block and 24 not a power of two, so both pads run too."""
    q, k, v, mask = _inputs(len(lengths), seq, 2, head_dim, lengths)
    valid = np.asarray(mask, bool)
    weights = jax.random.normal(jax.random.key(1), q.shape) * mask[:, :, None, None]

    def loss(fn):
        return lambda q, k, v: jnp.sum(fn(q, k, v, mask) * weights)

    _check(jax.jit(flash.attention)(q, k, v, mask), attention.xla_attention(q, k, v, mask), valid)
    got = jax.jit(jax.grad(loss(flash.attention), argnums=(0, 1, 2)))(q, k, v)
    want = jax.grad(loss(attention.xla_attention), argnums=(0, 1, 2))(q, k, v)
    for name, g, w in zip("qkv", got, want):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=2e-5, err_msg=f"d loss / d {name}")


def test_dropout_is_the_documented_mask_forward_and_backward():
    """The kernel's dropout equals the numpy mask of the docstring's hash, applied to the original's
    probabilities, in the output and in all three gradients (the backward recomputes the same mask)."""
    q, k, v, mask = _inputs(2, 128, 2, 32, [128, 90], seed=3)
    key = jax.random.key(7)
    seed = np.asarray(jax.random.bits(key, (2,), jnp.uint32))
    keep = _numpy_keep(seed, 2, 2, 128, RATE)
    reference = _reference_with_mask(jnp.asarray(keep))
    valid = np.asarray(mask, bool)
    weights = jax.random.normal(jax.random.key(2), q.shape) * mask[:, :, None, None]

    def ours(q, k, v, input_mask):
        return flash.attention(q, k, v, input_mask, dropout_rate=RATE, dropout_rng=key, deterministic=False)

    _check(jax.jit(ours)(q, k, v, mask), reference(q, k, v, mask), valid)
    got = jax.jit(jax.grad(lambda *a: jnp.sum(ours(*a, mask) * weights), argnums=(0, 1, 2)))(q, k, v)
    want = jax.grad(lambda *a: jnp.sum(reference(*a, mask) * weights), argnums=(0, 1, 2))(q, k, v)
    for name, g, w in zip("qkv", got, want):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=2e-5, err_msg=f"d loss / d {name}")
    # Dropout changed the output, and another key drops other positions.
    assert not np.allclose(np.asarray(ours(q, k, v, mask)), np.asarray(flash.attention(q, k, v, mask)), atol=1e-3)
    other = np.asarray(jax.random.bits(jax.random.key(8), (2,), jnp.uint32))
    assert (keep != _numpy_keep(other, 2, 2, 128, RATE)).mean() > 0.15  # two independent masks differ in ~18%


@pytest.mark.parametrize("tiles", [flash.Tiles(32, 16, 128, 2, 1), flash.Tiles(16, 64, 32, 8, 3)], ids=str)
def test_any_tiling_computes_the_same_dropout_attention(tiles):
    """Other block sizes (forward query and key tiles unequal, the backward's its own; the sequence of 100 padded to
    the largest) give the documented mask's attention and gradients too: the mask depends on positions only."""
    q, k, v, mask = _inputs(2, 100, 1, 16, [100, 61], seed=4)
    key = jax.random.key(9)
    keep = _numpy_keep(np.asarray(jax.random.bits(key, (2,), jnp.uint32)), 2, 1, 100, RATE)
    reference = _reference_with_mask(jnp.asarray(keep))
    valid = np.asarray(mask, bool)
    weights = jax.random.normal(jax.random.key(3), q.shape) * mask[:, :, None, None]

    def ours(q, k, v, input_mask):
        return flash.attention(q, k, v, input_mask, dropout_rate=RATE, dropout_rng=key, deterministic=False,
                               tiles=tiles)

    _check(jax.jit(ours)(q, k, v, mask), reference(q, k, v, mask), valid)
    got = jax.jit(jax.grad(lambda *a: jnp.sum(ours(*a, mask) * weights), argnums=(0, 1, 2)))(q, k, v)
    want = jax.grad(lambda *a: jnp.sum(reference(*a, mask) * weights), argnums=(0, 1, 2))(q, k, v)
    for name, g, w in zip("qkv", got, want):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=2e-5, err_msg=f"d loss / d {name}")


def test_the_mask_keeps_one_minus_the_rate_with_no_structure():
    """Over 4 x 12 x 512 x 512 positions (Base's attention shape at batch 4): the keep rate within 4 standard
    deviations of 0.9, no correlation between neighbouring keys, queries, heads or batch rows."""
    keep = _numpy_keep(np.asarray([0x12345678, 0x9ABCDEF0], np.uint32), 4, 12, 512, RATE).astype(np.float64)
    n = keep.size
    assert abs(keep.mean() - 0.9) < 4 * np.sqrt(0.09 / n)
    centred = keep - keep.mean()

    def correlation(a, b):
        return float((a * b).mean() / (centred.var()))

    limit = 4 / np.sqrt(n / 2)  # about 4 standard errors of a correlation over half the elements
    assert abs(correlation(centred[..., 1:], centred[..., :-1])) < limit  # neighbouring keys
    assert abs(correlation(centred[..., 1:, :], centred[..., :-1, :])) < limit  # neighbouring queries
    assert abs(correlation(centred[:, 1:], centred[:, :-1])) < limit  # neighbouring heads
    assert abs(correlation(centred[1:], centred[:-1])) < limit  # neighbouring examples


def test_a_tiny_model_with_flash_attention_equals_xla_and_draws_dropout_in_training():
    seq = 64
    one_layer = {"data.max_seq_length": seq, "model.num_layers": 1}
    base = config_lib.load("configs/pretrain.py:tiny", one_layer)
    flashed = config_lib.load("configs/pretrain.py:tiny", {**one_layer, "model.attention": "flash"})
    params = modeling.init_params(base, jax.random.key(0))
    rng = np.random.default_rng(0)
    mask = np.ones((2, seq), np.int32)
    mask[1, 40:] = 0
    ids = rng.integers(1000, 2000, size=(2, seq)) * mask
    valid = mask.astype(bool)
    plain = modeling.discriminator_logits(params, base, ids, input_mask=mask)
    ours = modeling.discriminator_logits(params, flashed, ids, input_mask=mask)
    np.testing.assert_allclose(np.asarray(ours)[valid], np.asarray(plain)[valid], atol=1e-4)
    # In training the layers draw a dropout key for flash as for xla: with only attention dropout on, the logits
    # move, and the same key gives the same logits.
    no_hidden = config_lib.load("configs/pretrain.py:tiny", {**one_layer, "model.attention": "flash",
                                                            "model.hidden_dropout": 0.0})
    model = modeling.build_model(no_hidden)

    def train_logits(key):
        return np.asarray(model.apply({"params": params}, jnp.asarray(ids), jnp.zeros_like(ids), jnp.asarray(mask),
                                      deterministic=False, method="discriminator_logits", rngs={"dropout": key}))

    first, again = train_logits(jax.random.key(1)), train_logits(jax.random.key(1))
    eval_gap = np.abs(np.asarray(ours) - np.asarray(plain))[valid].max()
    assert np.isfinite(first).all() and np.abs(first - np.asarray(ours))[valid].max() > 100 * max(eval_gap, 1e-7)
    np.testing.assert_array_equal(first, again)


def test_vmapped_over_seeds_it_equals_each_one_alone():
    """config.train.vmap_seeds vmaps the model: the kernel gets a batched grid, one dropout key per seed."""
    q, k, v, mask = _inputs(3, 64, 1, 16, [64, 30, 64])
    keys = jax.random.split(jax.random.key(5), 3)

    def one(q, k, v, key):
        return flash.attention(q, k, v, mask, dropout_rate=RATE, dropout_rng=key, deterministic=False)

    stacked = [x[None].repeat(3, axis=0) * jnp.arange(1.0, 4.0)[:, None, None, None, None] for x in (q, k, v)]
    together = jax.jit(jax.vmap(one))(*stacked, keys)
    for i in range(3):
        np.testing.assert_allclose(np.asarray(together[i]), np.asarray(one(*(x[i] for x in stacked), keys[i])),
                                   atol=1e-5)


def test_bad_inputs_are_refused_with_what_to_change():
    q, k, v, mask = _inputs(1, 16, 1, 16, [16])
    with pytest.raises(ValueError, match=r"needs model.attention='xla'"):
        flash.attention(q, k, v, jnp.ones((1, 16, 16), jnp.int32))
    with pytest.raises(ValueError, match=r"must be in \[0, 1\), got 1.0"):
        flash.attention(q, k, v, mask, dropout_rate=1.0, dropout_rng=jax.random.key(0), deterministic=False)
    with pytest.raises(ValueError, match="needs dropout_rng"):
        flash.attention(q, k, v, mask, dropout_rate=0.1, deterministic=False)
    with pytest.raises(ValueError, match=r"one shape \[batch, seq, heads, head_dim\]"):
        flash.attention(q[0], k[0], v[0], mask)
    with pytest.raises(ValueError, match=r"Tiles.block_k must be a power of two from 16, got 48"):
        flash.attention(q, k, v, mask, tiles=flash.Tiles(block_k=48))
    with pytest.raises(ValueError, match="power-of-two num_warps"):
        flash.attention(q, k, v, mask, tiles=(64, 64, 64, 3, 2))
    with pytest.raises(ValueError, match="must be one of"):
        config_lib.load("configs/pretrain.py:tiny", {"model.attention": "flashy"})


@pytest.mark.parametrize("dtype,tiles", [(jnp.bfloat16, None), (jnp.float32, None),
                                         (jnp.bfloat16, flash.Tiles(128, 64, 128, 8, 3))], ids=str)
def test_lowers_to_triton_kernels_for_cuda_without_a_gpu(dtype, tiles):
    """The Pallas -> Triton lowering (where an op the GPU backend lacks would fail) of the forward and backward
    with dropout, at Base's head size, on this CPU: the two kernels, no XLA attention left; also for one of
    benchmarks/flash_sweep.py's larger tilings."""
    shape = jax.ShapeDtypeStruct((2, 128, 2, 64), dtype)
    mask = jax.ShapeDtypeStruct((2, 128), jnp.int32)
    key = jax.eval_shape(lambda: jax.random.key(0))

    def loss(q, k, v, input_mask, rng):
        out = flash.attention(q, k, v, input_mask, dropout_rate=RATE, dropout_rng=rng, deterministic=False,
                              interpret=False, tiles=tiles)
        return jnp.sum(out.astype(jnp.float32))

    # jax 0.11 lowers a Triton kernel only for a GPU it knows: with no GPU here, name one (an abstract H100, as
    # its error message asks); jax 0.10 reads the same target and needs none.
    target = jax.sharding.AbstractMesh((1,), ("one",), abstract_device=jax.sharding.AbstractDevice(
        device_kind="NVIDIA H100", num_cores=None, platform="cuda"))
    with jax.sharding.use_abstract_mesh(target):
        lowered = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).trace(shape, shape, shape, mask, key).lower(
            lowering_platforms=("cuda",))
    text = lowered.as_text()
    assert text.count("__gpu$xla.gpu.triton") == 2
    assert "electra_flash_forward" in text and "electra_flash_backward" in text


_MESH_CHECK = """
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from electra_jax import attention, flash
mesh = Mesh(np.array(jax.devices()).reshape(2, 2, 1), ("data", "fsdp", "tensor"))
q, k, v = (jax.random.normal(key, (4, 64, 2, 16)) for key in jax.random.split(jax.random.key(0), 3))
mask = (jnp.arange(64)[None] < jnp.array([[64], [40], [5], [60]])).astype(jnp.int32)
loss = lambda fn: (lambda q, k, v, m: jnp.sum(fn(q, k, v, m) * m[:, :, None, None]))
sharded = [jax.device_put(x, NamedSharding(mesh, P(("data", "fsdp")))) for x in (q, k, v, mask)]
assert attention.batch_mesh() is None
with mesh:  # the legacy context is seen too
    assert attention.batch_mesh() == (mesh, ("data", "fsdp"))
    legacy = jax.jit(jax.grad(loss(flash.attention), argnums=(0, 1, 2))).lower(*sharded).as_text()
assert "manual_computation" in legacy  # the kernel runs per shard
with jax.set_mesh(mesh):  # what electra_jax.sharding.use_mesh enters
    fn = jax.jit(jax.grad(loss(flash.attention), argnums=(0, 1, 2)))
    assert "manual_computation" in fn.lower(*sharded).as_text()
    got = fn(*sharded)
    dropped = jax.jit(lambda *a: flash.attention(*a, dropout_rate=0.1, dropout_rng=jax.random.key(1),
                                                 deterministic=False))(*sharded)
want = jax.grad(loss(attention.xla_attention), argnums=(0, 1, 2))(q, k, v, mask)
for a, b in zip(got, want):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
# each shard draws its own dropout words: the 4 shards' masks differ although their rows have the same local index
plain = np.asarray(flash.attention(q, k, v, mask))
assert np.isfinite(np.asarray(dropped)).all() and not np.allclose(np.asarray(dropped)[0], plain[0], atol=1e-3)

# The Trainer's steps see their mesh in the kernel, without the deprecated `with mesh:`.
import warnings
from electra_jax import config as config_lib, sharding, train_state
warnings.filterwarnings("error", message="`with mesh", category=DeprecationWarning)
config = config_lib.load("configs/pretrain.py:tiny", {**MINI, "model.attention": "flash", "data.max_seq_length": 64})
config.mesh.update({"data": 1, "fsdp": 4, "tensor": 1})
trainer = train_state.Trainer(config, sharding.make_mesh(config.mesh))
seen, find = [], flash.batch_mesh
flash.batch_mesh = lambda: seen.append(find()) or seen[-1]
trainer.compile(log_memory=False, include_eval=False)
assert seen and all(s is not None and s[1] == ("fsdp",) and dict(s[0].shape) == {"data": 1, "fsdp": 4, "tensor": 1}
                    for s in seen), seen
print("ok")
"""


def test_flash_runs_per_shard_under_a_mesh():
    """Under `jax.set_mesh` (or the legacy `with mesh:`) the kernel is wrapped in shard_map over the batch axes;
    gradients stay exact; a Trainer's compiled step finds its mesh there."""
    mini.run_on_cpu_devices(f"MINI = {mini.MODEL!r}\n" + _MESH_CHECK, devices=4)
