"""Flash attention for GPUs (Pallas, Triton) with the original's dropout on the attention probabilities.

`model.attention = "flash"`: the faithful attention of the XLA path (scores / sqrt(head_dim), -10000 added to the
scores of padded keys, a float32 softmax, dropout on the probabilities, then the values) computed block by block
without writing the [batch, heads, seq, seq] probabilities or a dropout mask to memory. cuDNN's fused attention has
no usable dropout here (its seed is a compile-time constant), so the fast GPU preset drops attention dropout; this
path keeps it.

Dropout bits come from a counter-based hash, not from jax.random, so every kernel (the forward and the two halves
of the backward) recomputes the same mask from the position alone:

    head[b, h]   = mix(seed0 ^ mix(b * heads + h))
    row[b, h, q] = mix(head[b, h] ^ seed1 ^ mix(q + 0x632BE5AB))      (computed by XLA, [batch, heads, seq])
    col[k]       = mix(k * 0x9E3779B9 + 0x7F4A7C15)                    (in the kernel)
    keep         = (mix(row ^ col) >> 8) >= round(rate * 2**24)

with mix Wellons' "lowbias32" 32-bit hash and (seed0, seed1) two random words drawn from the layer's dropout key
(jax.random.bits), so each layer and step gets fresh masks and a run stays a pure function of its seed. The keep
rate is 1 - rate to within 2**-24. These are not the XLA path's threefry bits: the same seed drops other positions
(with the same distribution), as with `model.dropout_prng`.

Scores are kept in base 2 (times log2 e: exp2 is the GPU's cheap exponential). The backward pass recomputes
probabilities from the saved log-sum-exp (FlashAttention-2), with
delta = rowsum(dO * O), which holds with dropout too (sum_k P dP = dO . O). Off GPU the kernels run in Pallas
interpret mode, exact but slow, so tests check them on a CPU. Like splash, the kernel runs inside `shard_map` over
the batch axes under a multi-device mesh (XLA cannot partition a Pallas call itself).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu
from jax.sharding import PartitionSpec

from electra_jax.attention import MASK_VALUE, batch_mesh

MAX_SEQ = 1 << 16  # positions are hashed as 32-bit words
LOG2E = math.log2(math.e)


class Tiles(NamedTuple):
    """The kernels' tiling: rows of queries and keys per tile in the forward, the one block size of the backward
    (its programs own a block of keys for dK, dV and the same block of queries for dQ), and Triton's warps and
    pipeline stages. Powers of two from 16; sequences are padded to a multiple of the largest block. The dropout
    mask depends on positions only, so every tiling computes the same attention (up to float rounding)."""
    block_q: int = 64
    block_k: int = 64
    block_backward: int = 64
    num_warps: int = 4
    num_stages: int = 2

    def check(self) -> Tiles:
        for name, value in zip(self._fields[:3], self[:3]):
            if value < 16 or value & (value - 1):
                raise ValueError(f"flash attention's Tiles.{name} must be a power of two from 16, got {value}")
        if self.num_warps < 1 or self.num_warps & (self.num_warps - 1) or self.num_stages < 1:
            raise ValueError(f"flash attention's Tiles wants a power-of-two num_warps and num_stages >= 1, got "
                             f"{self.num_warps} and {self.num_stages}")
        return self

    @property
    def multiple(self) -> int:
        return max(self.block_q, self.block_k, self.block_backward)


# What model.attention='flash' runs: untuned (benchmarks/flash_sweep.py times the alternatives on a GPU).
DEFAULT_TILES = Tiles()


def mix(x):
    """Wellons' lowbias32 hash of uint32 words (numpy or jax arrays): a bijection with full avalanche."""
    x = x ^ (x >> 16)
    x = x * np.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * np.uint32(0x846CA68B)
    return x ^ (x >> 16)


def dropout_rows(seed: jax.Array, batch: int, heads: int, seq: int) -> jax.Array:
    """row[b, h, q] of the module docstring, uint32 [batch, heads, seq], from two uint32 words `seed`."""
    bh = jnp.arange(batch * heads, dtype=jnp.uint32).reshape(batch, heads, 1)
    head = mix(seed[0] ^ mix(bh))
    return mix(head ^ seed[1] ^ mix(jnp.arange(seq, dtype=jnp.uint32) + np.uint32(0x632BE5AB)))


def _cols(start, size):
    cols = (start + jnp.arange(size, dtype=jnp.int32)).astype(jnp.uint32)
    return mix(cols * np.uint32(0x9E3779B9) + np.uint32(0x7F4A7C15))


def _keep(rows, cols, threshold: int):
    """[len(rows), len(cols)] booleans: which probabilities survive dropout ((bits >> 8) >= threshold, compared
    without the shift)."""
    return mix(rows[:, None] ^ cols[None, :]) >= np.uint32(threshold << 8)


def _scores(q, k, bias, scale):
    """The scores in base 2 (times log2(e)), so probabilities are exp2 of them: the cheaper exponential."""
    return plgpu.dot(q, k, trans_b=True) * (scale * LOG2E) + bias[None, :] * LOG2E


def _forward_kernel(q_ref, k_ref, v_ref, bias_ref, rows_ref, o_ref, lse_ref, *, scale, rate, threshold, block_k):
    block_q, seq = q_ref.shape[0], k_ref.shape[0]
    q = q_ref[...]
    rows = rows_ref[...] if rate else None

    def body(j, carry):
        o, m, l = carry
        ks = pl.ds(j * block_k, block_k)
        s = _scores(q, k_ref[ks, :], bias_ref[ks], scale)
        m_new = jnp.maximum(m, jnp.max(s, axis=-1))
        correction = jnp.exp2(m - m_new)
        p = jnp.exp2(s - m_new[:, None])
        l = correction * l + jnp.sum(p, axis=-1)  # the softmax's normalizer counts every probability
        if rate:
            p = jnp.where(_keep(rows, _cols(j * block_k, block_k), threshold), p, 0.0)
        v = v_ref[ks, :]
        return correction[:, None] * o + plgpu.dot(p.astype(v.dtype), v), m_new, l

    init = (jnp.zeros(q.shape, jnp.float32), jnp.full((block_q,), -jnp.inf, jnp.float32),
            jnp.zeros((block_q,), jnp.float32))
    o, m, l = jax.lax.fori_loop(0, seq // block_k, body, init)
    o_ref[...] = (o / (l[:, None] * (1.0 - rate))).astype(o_ref.dtype)
    lse_ref[...] = m + jnp.log2(l)  # base 2, as the scores


def _backward_kernel(q_ref, k_ref, v_ref, bias_ref, rows_ref, do_ref, lse_ref, delta_ref, dq_ref, dk_ref, dv_ref,
                     *, scale, rate, threshold):
    seq, size = q_ref.shape[0], dq_ref.shape[0]  # the whole sequence, and this program's block of it
    block = pl.program_id(0)
    inv_keep = 1.0 / (1.0 - rate)

    def grads_of_scores(q, k, v, do, bias, lse, delta, rows, cols):
        """(dropped probabilities, d loss / d scores) of one [query block, key block] tile."""
        p = jnp.exp2(_scores(q, k, bias, scale) - lse[:, None])
        dp = plgpu.dot(do, v, trans_b=True)
        if rate:
            keep = _keep(rows, cols, threshold)
            dropped = jnp.where(keep, p * inv_keep, 0.0)
            dp = jnp.where(keep, dp * inv_keep, 0.0)
        else:
            dropped = p
        return dropped, p * (dp - delta[:, None])

    # dK, dV of this program's key block: over every query block.
    ks = pl.ds(block * size, size)
    k, v, bias = k_ref[ks, :], v_ref[ks, :], bias_ref[ks]
    cols = _cols(block * size, size) if rate else None

    def over_queries(i, carry):
        dk, dv = carry
        qs = pl.ds(i * size, size)
        q, do = q_ref[qs, :], do_ref[qs, :]
        rows = rows_ref[qs] if rate else None
        dropped, ds = grads_of_scores(q, k, v, do, bias, lse_ref[qs], delta_ref[qs], rows, cols)
        dv = dv + plgpu.dot(dropped.astype(do.dtype), do, trans_a=True)
        dk = dk + plgpu.dot(ds.astype(q.dtype), q, trans_a=True)
        return dk, dv

    zeros = jnp.zeros(k.shape, jnp.float32)
    dk, dv = jax.lax.fori_loop(0, seq // size, over_queries, (zeros, zeros))
    dk_ref[...] = (dk * scale).astype(dk_ref.dtype)
    dv_ref[...] = dv.astype(dv_ref.dtype)

    # dQ of this program's query block: over every key block.
    qs = pl.ds(block * size, size)
    q, do, lse, delta = q_ref[qs, :], do_ref[qs, :], lse_ref[qs], delta_ref[qs]
    rows = rows_ref[qs] if rate else None

    def over_keys(j, dq):
        ks = pl.ds(j * size, size)
        k = k_ref[ks, :]
        cols = _cols(j * size, size) if rate else None
        _, ds = grads_of_scores(q, k, v_ref[ks, :], do, bias_ref[ks], lse, delta, rows, cols)
        return dq + plgpu.dot(ds.astype(k.dtype), k)

    dq = jax.lax.fori_loop(0, seq // size, over_keys, jnp.zeros(q.shape, jnp.float32))
    dq_ref[...] = (dq * scale).astype(dq_ref.dtype)


def _specs(whole: bool, seq: int, dim: int, block: int = 0):
    """BlockSpecs of q-like [B, S, H, D], bias [B, S], rows/lse [B, H, S] over the grid (block, b, h): the
    program's `block` rows, or with `whole` the whole sequence (the backward's inputs). The blocks of one (b, h)
    are neighbours in launch order, so they share what they read in L2."""
    if whole:
        return (pl.BlockSpec((None, seq, None, dim), lambda i, b, h: (b, 0, h, 0)),
                pl.BlockSpec((None, seq), lambda i, b, h: (b, 0)),
                pl.BlockSpec((None, None, seq), lambda i, b, h: (b, h, 0)))
    return (pl.BlockSpec((None, block, None, dim), lambda i, b, h: (b, i, h, 0)),
            pl.BlockSpec((None, seq), lambda i, b, h: (b, 0)),
            pl.BlockSpec((None, None, block), lambda i, b, h: (b, h, i)))


def _params(tiles: Tiles):
    return plgpu.CompilerParams(num_warps=tiles.num_warps, num_stages=tiles.num_stages)


def _forward(q, k, v, bias, rows, scale, rate, interpret, tiles):
    batch, seq, heads, dim = q.shape
    block_spec, bias_spec, row_spec = _specs(False, seq, dim, tiles.block_q)
    whole = _specs(True, seq, dim)[0]
    kernel = functools.partial(_forward_kernel, scale=scale, rate=rate, threshold=_threshold(rate),
                               block_k=tiles.block_k)
    return pl.pallas_call(
        kernel, grid=(seq // tiles.block_q, batch, heads),
        in_specs=[block_spec, whole, whole, bias_spec, row_spec], out_specs=[block_spec, row_spec],
        out_shape=[jax.ShapeDtypeStruct(q.shape, q.dtype), jax.ShapeDtypeStruct((batch, heads, seq), jnp.float32)],
        compiler_params=_params(tiles), interpret=interpret, name="electra_flash_forward")(q, k, v, bias, rows)


def _threshold(rate: float) -> int:
    return int(round(rate * (1 << 24)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7, 8))
def _flash(q, k, v, bias, rows, scale, rate, interpret, tiles):
    return _forward(q, k, v, bias, rows, scale, rate, interpret, tiles)[0]


def _flash_fwd(q, k, v, bias, rows, scale, rate, interpret, tiles):
    out, lse = _forward(q, k, v, bias, rows, scale, rate, interpret, tiles)
    return out, (q, k, v, bias, rows, out, lse)


def _flash_bwd(scale, rate, interpret, tiles, residuals, do):
    q, k, v, bias, rows, out, lse = residuals
    batch, seq, heads, dim = q.shape
    delta = jnp.einsum("bshd,bshd->bhs", out.astype(jnp.float32), do.astype(jnp.float32))
    whole, bias_spec, row_spec = _specs(True, seq, dim)
    block = _specs(False, seq, dim, tiles.block_backward)[0]
    kernel = functools.partial(_backward_kernel, scale=scale, rate=rate, threshold=_threshold(rate))
    dq, dk, dv = pl.pallas_call(
        kernel, grid=(seq // tiles.block_backward, batch, heads),
        in_specs=[whole, whole, whole, bias_spec, row_spec, whole, row_spec, row_spec],
        out_specs=[block, block, block],
        out_shape=[jax.ShapeDtypeStruct(x.shape, x.dtype) for x in (q, k, v)],
        compiler_params=_params(tiles), interpret=interpret, name="electra_flash_backward",
    )(q, k, v, bias, rows, do.astype(q.dtype), lse, delta)
    return dq, dk, dv, None, None


_flash.defvjp(_flash_fwd, _flash_bwd)


def attention(q, k, v, input_mask, *, dropout_rate: float = 0.0, dropout_rng=None, deterministic: bool = True,
              interpret: bool | None = None, tiles: Tiles | None = None):
    """q, k, v [batch, seq, heads, head_dim], input_mask [batch, seq] (1 = real token) -> [batch, seq, heads,
    head_dim] in q's dtype: the XLA path's attention, dropout included when `deterministic` is False. `tiles`: the
    kernels' tiling (default DEFAULT_TILES)."""
    tiles = (DEFAULT_TILES if tiles is None else Tiles(*tiles)).check()
    if q.ndim != 4 or k.shape != q.shape or v.shape != q.shape:
        raise ValueError(f"flash attention wants q, k, v of one shape [batch, seq, heads, head_dim]; got "
                         f"{q.shape}, {k.shape}, {v.shape}")
    if input_mask.ndim != 2:
        raise ValueError("flash attention takes a key padding mask [batch, seq]; a [batch, from, to] mask (Electric's "
                         "causal towers) needs model.attention='xla'")
    batch, seq, heads, head_dim = q.shape
    if seq > MAX_SEQ:
        raise ValueError(f"flash attention hashes positions into 32 bits: sequences up to {MAX_SEQ}, got {seq}")
    if interpret is None:
        interpret = jax.default_backend() != "gpu"
    rate = float(dropout_rate) if not deterministic else 0.0
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"flash attention's dropout rate must be in [0, 1), got {rate}")
    if rate and dropout_rng is None:
        raise ValueError("flash attention with dropout needs dropout_rng")
    scale = 1.0 / float(head_dim) ** 0.5
    padded_seq = -(-seq // tiles.multiple) * tiles.multiple
    padded_dim = max(16, pl.next_power_of_2(head_dim))
    bias = (1.0 - input_mask.astype(jnp.float32)) * MASK_VALUE  # the original's additive key mask
    if (padded_seq, padded_dim) != (seq, head_dim):  # added keys are masked like padding; added dims are zeros
        widths = ((0, 0), (0, padded_seq - seq), (0, 0), (0, padded_dim - head_dim))
        q, k, v = (jnp.pad(x, widths) for x in (q, k, v))
        bias = jnp.pad(bias, ((0, 0), (0, padded_seq - seq)), constant_values=MASK_VALUE)
    seed = jax.random.bits(dropout_rng, (2,), jnp.uint32) if rate else jnp.zeros((2,), jnp.uint32)

    def run(q, k, v, bias, seed):
        rows = dropout_rows(seed, q.shape[0], heads, padded_seq) if rate else jnp.zeros(
            (q.shape[0], heads, padded_seq), jnp.uint32)
        return _flash(q, k, v, bias, rows, scale, rate, bool(interpret), tiles)

    sharded = batch_mesh()
    if sharded is not None:  # each device attends over its own rows; its rows get their own dropout words
        mesh, axes = sharded
        spec = PartitionSpec(axes)

        def local(q, k, v, bias, seed):
            index = jnp.uint32(jax.lax.axis_index(axes))
            return run(q, k, v, bias, mix(seed ^ mix(index + np.uint32(0x2545F491))))

        run_sharded = jax.shard_map(local, mesh=mesh, in_specs=(spec, spec, spec, spec, PartitionSpec()),
                                    out_specs=spec, check_vma=False)
        out = run_sharded(q, k, v, bias, seed)
    else:
        out = run(q, k, v, bias, seed)
    return out[:, :seq, :, :head_dim].astype(q.dtype)
