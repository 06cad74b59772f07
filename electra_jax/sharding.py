"""Device mesh, logical-axis rule presets, and the shardings of parameters, optimizer state and batches.

Parallelism is the pjit model: one `jax.sharding.Mesh` with axes ('data', 'fsdp', 'tensor'), every weight
named by logical axes in modeling.py ('vocab', 'embed_table', 'embed', 'embed_out', 'heads', 'kv', 'mlp',
'layers'), and a rule table per strategy mapping logical names to mesh axes (as MaxText's
`logical_axis_rules`). The batch is split over ('data', 'fsdp') in every preset.

  dp       parameters replicated; batch over all devices.
  fsdp     ZeRO-3 style: every weight split along one dimension over 'fsdp' (the embedding/hidden dims,
           or the vocabulary), gathered by XLA where a layer uses it.
  fsdp_tp  fsdp plus Megatron-style tensor parallelism over 'tensor' (heads, FFN width, vocabulary).

A dimension that does not divide over its mesh axes is left unsplit (replicated along them): the tiny
generator has one attention head, which cannot be split over tensor=2.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from electra_jax.tree_paths import path_keys

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

# Rules are tried in order; a mesh axis already used by an earlier dimension of the same array is skipped
# (flax's priority semantics), so ('vocab', 'fsdp') then ('embed_table', 'fsdp') splits the word table by rows.
RULES: dict[str, tuple[tuple[str, Any], ...]] = {
    "dp": (
        ("batch", BATCH_AXES),
    ),
    "fsdp": (
        ("batch", BATCH_AXES),
        ("embed", "fsdp"),
        ("embed_table", "fsdp"),
        ("vocab", "fsdp"),
        ("mlp", "fsdp"),
        ("embed_out", "fsdp"),
        ("heads", "fsdp"),
    ),
    "fsdp_tp": (
        ("batch", BATCH_AXES),
        ("heads", "tensor"),
        ("mlp", "tensor"),
        ("vocab", "tensor"),
        ("embed_out", "tensor"),
        ("embed", "fsdp"),
        ("embed_table", "fsdp"),
        ("vocab", "fsdp"),
        ("mlp", "fsdp"),
        ("heads", "fsdp"),
    ),
}


def use_mesh(mesh: Mesh):
    """The context that makes `mesh` current for the programs traced inside it: `jax.set_mesh(mesh)` (JAX
    >= 0.7.1), else the legacy `with mesh:`, which JAX deprecated in 0.10 and will remove. Under either one
    the Pallas attention kernels find the mesh (attention.batch_mesh) and run per batch shard."""
    return jax.set_mesh(mesh) if hasattr(jax, "set_mesh") else mesh


def initialize_distributed(multihost: bool | None = None) -> bool:
    """Calls jax.distributed.initialize() for multi-process runs; returns whether it did.

    multihost=None decides from the environment: JAX_COORDINATOR_ADDRESS set means multi-process. The
    explicit JAX_* variables are passed through; without them JAX auto-detects TPU pods and Slurm.
    """
    address = os.environ.get("JAX_COORDINATOR_ADDRESS")
    if multihost is None:
        multihost = bool(address)
    if not multihost:
        return False
    # CPU processes need a collectives backend for cross-process all-reduces (no effect on GPU/TPU).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs: dict[str, Any] = {}
    if address:
        kwargs["coordinator_address"] = address
        for env, key in (("JAX_NUM_PROCESSES", "num_processes"), ("JAX_PROCESS_ID", "process_id")):
            if os.environ.get(env):
                kwargs[key] = int(os.environ[env])
    jax.distributed.initialize(**kwargs)
    logging.info("jax.distributed: process %d of %d, %d local / %d global devices", jax.process_index(),
                 jax.process_count(), jax.local_device_count(), jax.device_count())
    return True


class ShardingError(ValueError):
    """A mesh or batch does not fit the devices; the message names the config field and the fix."""


def mesh_shape(mesh_config: Any, num_devices: int) -> dict[str, int]:
    """Resolves config.mesh ({data, fsdp, tensor}, one of them may be -1) against the device count."""
    sizes = {axis: int(mesh_config.get(axis, 1)) for axis in MESH_AXES}
    extra = sorted(set(mesh_config.keys()) - set(MESH_AXES))
    if extra:
        raise ShardingError(f"config.mesh has unknown axes {extra}; the axes are {list(MESH_AXES)}")
    fixed = math.prod(size for size in sizes.values() if size != -1)
    fill = [axis for axis, size in sizes.items() if size == -1]
    if fill:
        if num_devices % fixed:
            raise ShardingError(
                f"config.mesh = {sizes}: the fixed axes multiply to {fixed}, which does not divide the "
                f"{num_devices} devices, so config.mesh.{fill[0]} = -1 cannot be filled; pick sizes whose "
                f"product divides {num_devices}")
        sizes[fill[0]] = num_devices // fixed
    if math.prod(sizes.values()) != num_devices:
        raise ShardingError(
            f"config.mesh = {sizes} has {math.prod(sizes.values())} devices but {num_devices} are available; "
            f"make data * fsdp * tensor = {num_devices} (or set one axis to -1 to fill in the rest)")
    return sizes


def make_mesh(mesh_config: Any, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A Mesh over all (global) devices with axes ('data', 'fsdp', 'tensor').

    Built with `jax.sharding.Mesh` directly: `jax.make_mesh` defaults to explicit axis types, under which
    nn.Embed-like gathers fail inside jit. Device order comes from mesh_utils, which keeps the
    'tensor' axis on devices that are close together (same host / ICI ring).
    """
    devices = list(jax.devices() if devices is None else devices)
    sizes = mesh_shape(mesh_config, len(devices))
    shape = tuple(sizes[axis] for axis in MESH_AXES)
    try:
        from jax.experimental import mesh_utils

        array = mesh_utils.create_device_mesh(shape, devices=devices, allow_split_physical_axes=True)
    except Exception:  # CPU or unusual topologies: a plain reshape (process-major order) is always valid
        array = np.asarray(devices).reshape(shape)
    return Mesh(array, MESH_AXES)


def rules_for(name: str) -> tuple[tuple[str, Any], ...]:
    if name not in RULES:
        raise ShardingError(f"config.sharding.rules = {name!r}; choose one of {sorted(RULES)}")
    return RULES[name]


def _axis_size(mesh: Mesh, axes: Any) -> int:
    if axes is None:
        return 1
    axes = (axes,) if isinstance(axes, str) else tuple(axes)
    return math.prod(mesh.shape[a] for a in axes)


def logical_to_spec(logical: Sequence[str | None], shape: Sequence[int], rules, mesh: Mesh) -> PartitionSpec:
    """Maps one array's logical axis names to a PartitionSpec, skipping used or non-dividing mesh axes."""
    result: list[Any] = [None] * len(logical)
    used: set[str] = set()
    for logical_name, mesh_axes in rules:
        if logical_name not in logical:
            continue
        pos = list(logical).index(logical_name)
        if result[pos] is not None:
            continue
        axes = (mesh_axes,) if isinstance(mesh_axes, str) else tuple(mesh_axes)
        # Size-1 mesh axes are dropped so specs stay readable and never block a later rule.
        axes = tuple(a for a in axes if mesh.shape[a] > 1 and a not in used)
        if not axes or shape[pos] % _axis_size(mesh, axes):
            continue
        result[pos] = axes[0] if len(axes) == 1 else axes
        used.update(axes)
    return PartitionSpec(*result)


def param_specs(logical_tree: Any, shapes_tree: Any, rules_name: str, mesh: Mesh) -> Any:
    """PartitionSpecs of mesh axes for a parameter tree, from its logical PartitionSpecs and shapes."""
    rules = rules_for(rules_name)
    return jax.tree_util.tree_map(
        lambda logical, shape: logical_to_spec(tuple(logical), shape.shape, rules, mesh),
        logical_tree, shapes_tree, is_leaf=lambda x: isinstance(x, PartitionSpec))


def named(mesh: Mesh, specs: Any) -> Any:
    return jax.tree_util.tree_map(lambda spec: NamedSharding(mesh, spec), specs,
                                  is_leaf=lambda x: isinstance(x, PartitionSpec))


def batch_spec() -> PartitionSpec:
    return PartitionSpec(BATCH_AXES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Rows of the global batch over ('data', 'fsdp'); the sequence axis whole."""
    return NamedSharding(mesh, batch_spec())


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def check_batch_size(global_batch_size: int, mesh: Mesh, field: str = "train.batch_size") -> None:
    """Raises a ShardingError unless the global batch splits evenly over the data axes and the hosts."""
    shards = _axis_size(mesh, BATCH_AXES)
    if global_batch_size % shards:
        raise ShardingError(
            f"config.{field} = {global_batch_size} does not divide over the data axes of the mesh "
            f"(data * fsdp = {shards}); use a multiple of {shards}, "
            f"e.g. {shards * max(1, global_batch_size // shards)}")
    if global_batch_size % jax.process_count():
        raise ShardingError(
            f"config.{field} = {global_batch_size} does not divide over {jax.process_count()} hosts; "
            f"use a multiple of {math.lcm(shards, jax.process_count())}")


def state_specs_like(tree: Any, param_spec_tree: Any, params_shapes: Any) -> Any:
    """Specs for an optimizer-state tree: leaves shaped like a parameter take its spec, others replicate.

    optax states hold copies of the parameter tree (Adam moments) plus scalars (counts); matching by
    tree path suffix keeps mu/nu sharded exactly like the parameters they track.
    """
    param_paths = {}
    for path, spec in jax.tree_util.tree_flatten_with_path(
            param_spec_tree, is_leaf=lambda x: isinstance(x, PartitionSpec))[0]:
        param_paths[path_keys(path)] = spec
    shapes = {path_keys(path): leaf.shape for path, leaf in jax.tree_util.tree_flatten_with_path(params_shapes)[0]}

    def spec_for(path, leaf):
        key = path_keys(path)
        for start in range(len(key)):
            suffix = key[start:]
            if suffix in param_paths and shapes[suffix] == tuple(leaf.shape):
                return param_paths[suffix]
        return PartitionSpec()

    return jax.tree_util.tree_map_with_path(spec_for, tree)


def bytes_per_device(tree: Any) -> dict[int, int]:
    """Bytes of the addressable shards of every array in `tree`, per device id (for memory checks)."""
    totals: dict[int, int] = {}
    for leaf in jax.tree_util.tree_leaves(tree):
        for shard in leaf.addressable_shards:
            totals[shard.device.id] = totals.get(shard.device.id, 0) + shard.data.nbytes
    return totals
