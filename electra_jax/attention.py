"""Attention kernels behind one function: plain XLA softmax attention, cuDNN fused, Pallas splash (TPU) and
Pallas flash with dropout (GPU).

All take q, k, v of shape [batch, seq, heads, head_dim] and the key padding mask [batch, seq]
(1 = real token) and return [batch, seq, heads, head_dim]. The XLA path also takes a [batch, seq_from,
seq_to] mask, as the original's attention_mask: the causal towers of Electric's generator use it.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

# The original adds -10000 to the scores of padded keys (modeling.py create_attention_mask_from_input_mask).
MASK_VALUE = -10000.0
BATCH_AXES = ("data", "fsdp")  # electra_jax.sharding splits batches over these mesh axes


def xla_attention(q, k, v, input_mask, *, dropout_rate: float = 0.0, dropout_rng=None,
                  deterministic: bool = True):
    """Softmax attention exactly as the original: scaled scores, additive key mask, f32 softmax, dropout."""
    head_dim = q.shape[-1]
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
    scores = scores / jnp.sqrt(jnp.float32(head_dim))
    mask = input_mask.astype(jnp.float32)
    mask = mask[:, None, None, :] if mask.ndim == 2 else mask[:, None, :, :]  # [B, 1, from or 1, to]
    bias = (1.0 - mask) * MASK_VALUE
    probs = jax.nn.softmax(scores + bias, axis=-1)
    if not deterministic and dropout_rate > 0.0:
        keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, probs.shape)
        probs = jnp.where(keep, probs / (1.0 - dropout_rate), 0.0)
    return jnp.einsum("bhqk,bkhd->bqhd", probs.astype(v.dtype), v)


def cudnn_attention(q, k, v, input_mask, **unused):
    """cuDNN fused attention (GPU). Assumes right padding (true of every record and task input here)."""
    del unused
    if jax.default_backend() != "gpu":
        # Off GPU jax fails deep inside its cuDNN lowering ("cuDNN is not detected"); say what to change.
        raise ValueError(f"config.model.attention = 'cudnn' needs an NVIDIA GPU, but the JAX backend is "
                         f"{jax.default_backend()!r}; use model.attention='xla' (or 'splash' on TPU)")
    lengths = jnp.sum(input_mask.astype(jnp.int32), axis=-1)
    return jax.nn.dot_product_attention(q, k, v, key_value_seq_lengths=lengths, implementation="cudnn")


def splash_attention(q, k, v, input_mask, **unused):
    """Pallas splash attention (TPU); see electra_jax/splash.py."""
    del unused
    from electra_jax import splash  # Pallas is imported only when this path is chosen.

    return splash.attention(q, k, v, input_mask)


def flash_attention(q, k, v, input_mask, *, dropout_rate: float = 0.0, dropout_rng=None, deterministic: bool = True):
    """Pallas flash attention with the original's attention-probability dropout (GPU); see electra_jax/flash.py."""
    from electra_jax import flash  # Pallas is imported only when this path is chosen.

    return flash.attention(q, k, v, input_mask, dropout_rate=dropout_rate, dropout_rng=dropout_rng,
                           deterministic=deterministic)


def batch_mesh():
    """The current mesh and its batch axes, or None (one device or no mesh): a Pallas kernel runs inside
    `shard_map` over them, as XLA cannot partition a Pallas call by itself. The mesh is the one of
    `jax.set_mesh` (what electra_jax.sharding.use_mesh enters; seen inside jit as the abstract mesh) or of
    the legacy `with mesh:`."""
    get_abstract = getattr(jax.sharding, "get_abstract_mesh", None)
    mesh = get_abstract() if get_abstract is not None else None
    if mesh is None or mesh.empty:
        try:
            from jax._src import mesh as mesh_lib  # the legacy context `with mesh:` has no public getter

            mesh = mesh_lib.thread_resources.env.physical_mesh
        except (ImportError, AttributeError):
            return None
    if mesh.empty or mesh.size == 1:
        return None
    axes = tuple(axis for axis in BATCH_AXES if axis in mesh.axis_names and mesh.shape[axis] > 1)
    return (mesh, axes) if axes else None


IMPLEMENTATIONS = {"xla": xla_attention, "cudnn": cudnn_attention, "splash": splash_attention,
                   "flash": flash_attention}
# The implementations that apply attention-probability dropout (and so take a dropout key in training).
WITH_DROPOUT = ("xla", "flash")


def get(name: str) -> Callable:
    try:
        return IMPLEMENTATIONS[name]
    except KeyError:
        raise ValueError(f"unknown attention implementation {name!r}; use one of {list(IMPLEMENTATIONS)}") from None
