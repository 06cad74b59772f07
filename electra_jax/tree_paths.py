"""Names of pytree paths: the one helper every module uses to name a parameter or optimizer-state leaf.

A path from `jax.tree_util.tree_flatten_with_path` is a tuple of DictKey / GetAttrKey / SequenceKey entries;
`path_keys` turns it into plain strings (("discriminator", "layer_0", "query", "kernel")) and `path_name`
joins them with "/" ("discriminator/layer_0/query/kernel"), the names used in error messages, the weight-decay
and layer-wise-decay rules and the optimizer-state sharding match.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def path_keys(path: Sequence[Any]) -> tuple[str, ...]:
    """Each entry's dict key, attribute name or sequence index, as a string."""
    return tuple(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def path_name(path: Sequence[Any]) -> str:
    return "/".join(path_keys(path))
