"""The original ELECTRA optimizer in optax (ELECTRA_REFERENCE.md section 4).

AdamWeightDecayOptimizer: global-norm clipping first, Adam moments without bias correction, the
epsilon outside the square root, decoupled weight decay scaled by the learning rate and skipped
for LayerNorm and bias parameters. The schedule decays linearly from step 0 and multiplies a warmup
ramp on top, so the peak learning rate is base_lr * (1 - warmup / total).
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from electra_jax.tree_paths import path_name

NO_DECAY_PATTERN = re.compile(r"LayerNorm|layer_norm|bias")


def electra_schedule(base_lr: float, warmup_steps: int, total_steps: int, power: float = 1.0,
                     end_lr: float = 0.0):
    """lr(t) = (base - end) * (1 - min(t, T) / T)^power + end, times min(1, t / W)."""

    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        decayed = (base_lr - end_lr) * (1.0 - jnp.minimum(step, total_steps) / total_steps) ** power + end_lr
        if warmup_steps > 0:
            decayed = decayed * jnp.minimum(1.0, step / warmup_steps)
        return decayed

    return schedule


def warmup_linear_schedule(base_lr: float, warmup_steps: int, total_steps: int, end_lr: float = 0.0):
    """The common alternative: ramp to base_lr over the warmup, then decay linearly to end_lr."""
    return optax.join_schedules(
        [optax.linear_schedule(0.0, base_lr, max(1, warmup_steps)),
         optax.linear_schedule(base_lr, end_lr, max(1, total_steps - warmup_steps))], [warmup_steps])


def make_schedule(optim_config, total_steps: int, warmup_steps: int | None = None):
    warmup = optim_config.warmup_steps if warmup_steps is None else warmup_steps
    if optim_config.schedule == "electra":
        return electra_schedule(optim_config.learning_rate, warmup, total_steps, optim_config.lr_decay_power,
                                optim_config.end_learning_rate)
    return warmup_linear_schedule(optim_config.learning_rate, warmup, total_steps, optim_config.end_learning_rate)


class ScaleByAdamState(NamedTuple):
    count: jax.Array
    mu: Any
    nu: Any


def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-6,
                  bias_correction: bool = False) -> optax.GradientTransformation:
    """Adam direction m / (sqrt(v) + eps); the original applies no bias correction."""

    def init(params):
        zeros = jax.tree_util.tree_map(lambda p: jnp.zeros_like(p, jnp.float32), params)
        return ScaleByAdamState(jnp.zeros([], jnp.int32), zeros, jax.tree_util.tree_map(jnp.copy, zeros))

    def update(updates, state, params=None):
        del params
        mu = jax.tree_util.tree_map(lambda m, g: b1 * m + (1.0 - b1) * g, state.mu, updates)
        nu = jax.tree_util.tree_map(lambda v, g: b2 * v + (1.0 - b2) * jnp.square(g), state.nu, updates)
        count = state.count + 1
        if bias_correction:
            c1 = 1.0 - b1 ** count.astype(jnp.float32)
            c2 = 1.0 - b2 ** count.astype(jnp.float32)
            direction = jax.tree_util.tree_map(lambda m, v: (m / c1) / (jnp.sqrt(v / c2) + eps), mu, nu)
        else:
            direction = jax.tree_util.tree_map(lambda m, v: m / (jnp.sqrt(v) + eps), mu, nu)
        return direction, ScaleByAdamState(count, mu, nu)

    return optax.GradientTransformation(init, update)


def decay_mask(params):
    """True where weight decay applies: everything except LayerNorm parameters and biases."""
    return jax.tree_util.tree_map_with_path(lambda path, _: not NO_DECAY_PATTERN.search(path_name(path)), params)


def layer_depth(name: str, num_layers: int) -> int | None:
    """Depth in the original's layer-wise decay table; None for scanned stacks (handled per layer).

    Embeddings and the embedding projection are depth 0, encoder layer i is depth i + 1, and every
    other parameter (the task heads) is depth L + 2. Depth L + 1 is never assigned, so the top
    encoder layer gets decay^2: a quirk the original keeps for reproducibility.
    """
    parts = name.split("/")
    if parts[0] in ("embeddings", "generator_embeddings") or "embeddings_project" in parts:
        return 0
    match = re.search(r"(?:^|/)layer_(\d+)(?:/|$)", name)
    if match:
        return int(match.group(1)) + 1
    if re.search(r"(?:^|/)layers(?:/|$)", name):
        return None
    return num_layers + 2


def layerwise_lr_multipliers(params, num_layers: int, decay: float):
    """A pytree of per-parameter learning-rate multipliers decay^(L + 2 - depth)."""

    def multiplier(path, leaf):
        depth = layer_depth(path_name(path), num_layers)
        if depth is None:  # stacked [L, ...] layers: one multiplier per slice along the first axis
            per_layer = np.array([decay ** (num_layers + 2 - (i + 1)) for i in range(leaf.shape[0])], np.float32)
            return jnp.asarray(per_layer.reshape((-1,) + (1,) * (len(leaf.shape) - 1)))
        return jnp.asarray(decay ** (num_layers + 2 - depth), jnp.float32)

    return jax.tree_util.tree_map_with_path(multiplier, params)


def scale_by_tree(multipliers) -> optax.GradientTransformation:
    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params=None):
        del params
        return jax.tree_util.tree_map(lambda u, m: u * m, updates, multipliers), state

    return optax.GradientTransformation(init, update)


# The optional parts of make_optimizer: each is in the chain only when its field is on (see `is_on`), and turning
# one on or off changes the optimizer state's layout (safeguards refuses that on resume).
OPTIONAL_PARTS = ("clip_norm", "weight_decay", "layerwise_lr_decay")


def is_on(value: Any) -> bool:
    """Whether make_optimizer adds the part a clip_norm / weight_decay / layerwise_lr_decay value configures: a
    positive number (0 or None leaves it out)."""
    return isinstance(value, (int, float)) and value > 0


def make_optimizer(optim_config, total_steps: int, params=None, num_layers: int | None = None,
                   warmup_steps: int | None = None):
    """clip(1.0) -> Adam without bias correction -> decoupled weight decay -> -lr [-> layer-wise scale]."""
    schedule = make_schedule(optim_config, total_steps, warmup_steps)
    parts = []
    if is_on(optim_config.clip_norm):
        parts.append(optax.clip_by_global_norm(optim_config.clip_norm))
    parts.append(scale_by_adam(optim_config.adam_b1, optim_config.adam_b2, optim_config.adam_eps,
                               optim_config.bias_correction))
    if is_on(optim_config.weight_decay):
        parts.append(optax.add_decayed_weights(optim_config.weight_decay, mask=decay_mask))
    parts.append(optax.scale_by_learning_rate(schedule))
    if is_on(optim_config.layerwise_lr_decay):
        if params is None or num_layers is None:
            raise ValueError("layer-wise learning-rate decay needs the parameter tree and num_layers")
        parts.append(scale_by_tree(layerwise_lr_multipliers(params, num_layers, optim_config.layerwise_lr_decay)))
    return optax.chain(*parts), schedule
