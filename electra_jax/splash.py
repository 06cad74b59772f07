"""Pallas splash attention (the TPU flash-attention kernel) behind the `attention(q, k, v, input_mask)` interface.

Key padding is expressed with splash's segment ids: real tokens are segment 1 and padding segment 0, and a
query attends only to keys of its own segment. A real query therefore sees exactly the real keys, which is
what the plain path's -10000 additive mask gives (exp(-10000) underflows to 0 in float32). Padded queries
attend to padded keys instead of to the real ones; their outputs differ from the plain path but never reach
a real position (their keys are masked) and never reach a loss (every loss is masked).

Sequences are padded to a multiple of 128 (splash tiles the key axis in 128-lane blocks) with extra padding
tokens, and the pad is cut off again. Off TPU the kernel runs in Pallas interpret mode, which is slow but
exact, so tests check this path on CPU. No attention-probability dropout (the kernel has none).

XLA cannot partition a Pallas call over devices by itself, so under a multi-device mesh (`jax.set_mesh`,
as the training step runs, or the legacy `with mesh:`) the kernel runs inside `shard_map` over the batch
axes ('data', 'fsdp'): attention is per example, so each device attends over its own rows with no
communication.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental.pallas.ops.tpu import splash_attention as splash
from jax.sharding import PartitionSpec

from electra_jax.attention import batch_mesh

LANES = 128  # splash tiles the key axis in blocks that are a multiple of the TPU lane width


def _block_size(seq_len: int) -> int:
    """The largest of 512, 256, 128 dividing seq_len (a multiple of 128): big tiles amortize the grid loop."""
    for block in (512, 256, 128):
        if seq_len % block == 0:
            return block
    raise ValueError(f"sequence length {seq_len} is not a multiple of {LANES}")


@functools.lru_cache(maxsize=32)
def _kernel(num_heads: int, seq_len: int, interpret: bool):
    # Built once per shape: mask preprocessing runs in numpy at trace time.
    block = _block_size(seq_len)
    block_sizes = splash.BlockSizes(
        block_q=block, block_kv=block, block_kv_compute=block,
        block_q_dkv=block, block_kv_dkv=block, block_kv_dkv_compute=block,
        block_q_dq=block, block_kv_dq=block)
    mask = splash.MultiHeadMask([splash.FullMask((seq_len, seq_len)) for _ in range(num_heads)])
    # The kernel holds the mask tables as arrays; make them concrete constants even when first built inside
    # a jit trace, or the cached kernel would keep (and later leak) that trace's tracers.
    with jax.ensure_compile_time_eval():
        return splash.make_splash_mha(mask, block_sizes=block_sizes, head_shards=1, q_seq_shards=1,
                                      interpret=interpret)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, input_mask: jax.Array,
              interpret: bool | None = None) -> jax.Array:
    """Splash attention: q, k, v [batch, seq, heads, head_dim], input_mask [batch, seq] (1 = real token).

    Returns [batch, seq, heads, head_dim] in q's dtype, scaled by 1/sqrt(head_dim) like the plain path.
    `interpret` defaults to True everywhere except on TPU.
    """
    if q.ndim != 4 or k.shape != q.shape or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"splash attention wants q, k, v of shape [batch, seq, heads, head_dim]; got "
                         f"{q.shape}, {k.shape}, {v.shape}")
    if interpret is None:
        interpret = jax.default_backend() != "tpu"
    batch, seq_len, num_heads, head_dim = q.shape
    padded_len = -(-seq_len // LANES) * LANES
    pad = padded_len - seq_len
    segments = (input_mask > 0).astype(jnp.int32)
    # Scale q before the kernel (splash applies no scaling): the same scores as the plain path.
    q = q * jnp.asarray(1.0 / float(head_dim) ** 0.5, q.dtype)
    if pad:
        widths = ((0, 0), (0, pad), (0, 0), (0, 0))
        q, k, v = (jnp.pad(x, widths) for x in (q, k, v))
        segments = jnp.pad(segments, ((0, 0), (0, pad)))  # the added tokens are padding (segment 0)
    kernel = _kernel(num_heads, padded_len, bool(interpret))

    def one_example(q1, k1, v1, seg1):
        # The kernel takes one example as [heads, seq, head_dim].
        out = kernel(q1.swapaxes(0, 1), k1.swapaxes(0, 1), v1.swapaxes(0, 1), splash.SegmentIds(q=seg1, kv=seg1))
        return out.swapaxes(0, 1)

    run = jax.vmap(one_example)
    sharded = batch_mesh()
    if sharded is not None:
        mesh, axes = sharded
        spec = PartitionSpec(axes)
        run = jax.shard_map(run, mesh=mesh, in_specs=(spec, spec, spec, spec), out_specs=spec, check_vma=False)
    out = run(q, k, v, segments)
    return out[:, :seq_len].astype(q.dtype)
