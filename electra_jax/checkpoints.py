"""Checkpoints: the only module that talks to orbax.

Training checkpoints live under `WORKDIR/checkpoints/STEP/` with three items:
  state/   the TrainState (params, optimizer state, step, PRNG key) as sharded arrays (orbax PyTree/OCDBT);
  data/    JSON: every host's input-pipeline position, keyed by process index ("0", "1", ...);
  config/  JSON: the full config the run was trained with.
Saves are asynchronous (orbax writes into a temporary folder and renames it when every host is done, so a
process killed mid-save leaves no folder that looks complete; the next run restores the previous step and
removes the leftovers). The manager keeps the last `keep` steps.

Params-only exports (`save_params`, used by `convert from_hf/from_tf`) are a folder holding `params/` (orbax,
the canonical unstacked layout) and `electra_jax_config.json`. `restore_params` reads either kind.
"""

from __future__ import annotations

import json
import logging as pylogging
import os
import signal
import threading
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

Path = epath.Path  # local folders and gs:// (Cloud TPU workdirs) alike

CHECKPOINTS_SUBDIR = "checkpoints"


def as_path(path: str | os.PathLike) -> epath.Path:
    """An absolute local path, or a remote one (gs://...) left as it is."""
    text = os.fspath(path)
    if "://" in text:
        return epath.Path(text)
    return epath.Path(os.path.abspath(os.path.expanduser(text)))

PARAMS_CONFIG_FILE = "electra_jax_config.json"
STATE_ITEM, DATA_ITEM, CONFIG_ITEM = "state", "data", "config"


class CheckpointError(ValueError):
    """A checkpoint path is missing or is not an electra_jax checkpoint; the message says what was looked for."""


# ---------------------------------------------------------------------------------------------------------
# Training checkpoints


class _DropOrbaxInfo(pylogging.Filter):
    """orbax logs dozens of INFO lines per save; keep its warnings and errors only."""

    def filter(self, record: pylogging.LogRecord) -> bool:
        return record.levelno >= pylogging.WARNING or f"{os.sep}orbax{os.sep}" not in (record.pathname or "")


def quiet_orbax_logs() -> None:
    absl_logger = pylogging.getLogger("absl")
    if not any(isinstance(f, _DropOrbaxInfo) for f in absl_logger.filters):
        absl_logger.addFilter(_DropOrbaxInfo())


class Checkpointer:
    """CheckpointManager for one run: async saves, keep-N, restore into abstract (sharded) targets."""

    def __init__(self, directory: str | os.PathLike, *, keep: int = 5, async_save: bool = True):
        quiet_orbax_logs()
        self.directory = as_path(directory)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep if keep and keep > 0 else None,
            enable_async_checkpointing=async_save,
            create=True,
            # Leftover tmp folders of a save that was killed are removed when the next run starts.
            cleanup_tmp_directories=True,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options,
                                             item_names=(STATE_ITEM, DATA_ITEM, CONFIG_ITEM))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def reached_preemption(self, step: int) -> bool:
        """orbax's preemption sync point (TPU/multi-host maintenance events); False where unsupported."""
        return bool(self.manager.reached_preemption(step))

    def save(self, step: int, state: Any, *, data_states: dict[int, Any] | None, config: ml_collections.ConfigDict,
             ) -> None:
        """Starts an (async) save of `state` (a TrainState or dict of arrays) at `step`. Every host must call it."""
        state_dict = state.to_dict() if hasattr(state, "to_dict") else state
        data = {str(k): v for k, v in (data_states or {}).items()}
        args = ocp.args.Composite(**{
            STATE_ITEM: ocp.args.StandardSave(state_dict),
            DATA_ITEM: ocp.args.JsonSave(data),
            CONFIG_ITEM: ocp.args.JsonSave(config_to_dict(config)),
        })
        self.manager.save(step, args=args, force=True)
        logging.info("checkpoint: saving step %d to %s (%s)", step, self.directory,
                     "async" if self.manager._options.enable_async_checkpointing else "sync")

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict[int, Any], dict]:
        """Restores (state, {process_index: data position}, config dict) at `step` into the abstract target.

        `abstract_state` holds jax.ShapeDtypeStructs carrying the *current* mesh's shardings, so a run can
        resume on a different mesh or device count than the one that saved it.
        """
        target = abstract_state.to_dict() if hasattr(abstract_state, "to_dict") else abstract_state
        restored = self.manager.restore(step, args=ocp.args.Composite(**{
            STATE_ITEM: ocp.args.StandardRestore(target),
            DATA_ITEM: ocp.args.JsonRestore(),
            CONFIG_ITEM: ocp.args.JsonRestore(),
        }))
        state = restored[STATE_ITEM]
        if hasattr(abstract_state, "from_dict"):
            state = type(abstract_state).from_dict(state)
        data = {int(k): v for k, v in (restored[DATA_ITEM] or {}).items()}
        return state, data, restored[CONFIG_ITEM]

    def wait_until_finished(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def config_to_dict(config: ml_collections.ConfigDict) -> dict:
    """The config as plain JSON types (the ConfigDict's own JSON encoding, then parsed back)."""
    return json.loads(config.to_json_best_effort())


def gather_host_json(obj: Any) -> dict[int, Any]:
    """{process_index: obj of that process} on every process (the input positions to checkpoint).

    JSON is encoded to bytes, padded to the longest and all-gathered; one small collective per save.
    """
    if jax.process_count() == 1:
        return {0: obj}
    from jax.experimental import multihost_utils

    payload = np.frombuffer(json.dumps(obj).encode(), np.uint8)
    lengths = multihost_utils.process_allgather(np.asarray([payload.size], np.int32))
    padded = np.zeros(int(np.max(lengths)), np.uint8)
    padded[: payload.size] = payload
    everyone = multihost_utils.process_allgather(padded)
    return {i: json.loads(bytes(everyone[i][: int(lengths[i][0])]).decode()) for i in range(jax.process_count())}


# ---------------------------------------------------------------------------------------------------------
# Preemption


class PreemptionWatcher:
    """Turns SIGTERM (and a first SIGINT / Ctrl-C) into a request to save at the next step boundary and stop.

    The handler only sets a flag (signal handlers must not touch JAX); the training loop polls `requested()`.
    With several processes the flags are combined every `multihost_every` steps with a tiny all-gather, so all
    hosts stop at the same step even when only some received the signal; orbax's preemption sync point (TPU maintenance
    events) is honoured as well.
    """

    def __init__(self, checkpointer: Checkpointer | None = None, signals=(signal.SIGTERM, signal.SIGINT),
                 multihost_every: int = 10):
        self.checkpointer = checkpointer
        self.multihost_every = max(1, multihost_every)
        self._flag = threading.Event()
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in signals:
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT and self._flag.is_set():
            raise KeyboardInterrupt  # a second Ctrl-C stops at once, without the checkpoint
        logging.warning("received signal %d: saving a checkpoint at the next step boundary, then stopping%s", signum,
                        " (Ctrl-C again to stop without it)" if signum == signal.SIGINT else "")
        self._flag.set()

    def requested(self, step: int) -> bool:
        local = self._flag.is_set()
        if jax.process_count() > 1:
            # The all-gather waits for the device queue, so hosts agree only every `multihost_every` steps
            # (at the same steps on every host, as collectives require).
            if step % self.multihost_every:
                local = False
            else:
                from jax.experimental import multihost_utils

                local = bool(np.any(multihost_utils.process_allgather(np.asarray([local], np.int32))))
        if self.checkpointer is not None and self.checkpointer.reached_preemption(step):
            local = True
        return local

    def restore_handlers(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


# ---------------------------------------------------------------------------------------------------------
# Parameter import/export


def _is_step_dir(path: Path) -> bool:
    return (path / STATE_ITEM).is_dir()


def _numeric_children(path: Path) -> list[int]:
    steps = []
    if path.is_dir():
        for child in path.iterdir():
            if child.is_dir() and child.name.isdigit() and _is_step_dir(child):
                steps.append(int(child.name))
    return sorted(steps)


def _resolve_params_source(path: str | os.PathLike) -> tuple[str, Path]:
    """('export', folder) or ('step', step folder) for a workdir, checkpoints folder, step folder or export."""
    root = as_path(path)
    if not root.exists():
        raise CheckpointError(f"checkpoint path {str(root)!r} does not exist")
    if (root / PARAMS_CONFIG_FILE).is_file():
        return "export", root
    if _is_step_dir(root):
        return "step", root
    for folder in (root, root / CHECKPOINTS_SUBDIR):
        steps = _numeric_children(folder)
        if steps:
            return "step", folder / str(steps[-1])
    raise CheckpointError(
        f"{str(root)!r} holds no electra_jax checkpoint: expected a params export (with {PARAMS_CONFIG_FILE}), "
        f"a step folder (with {STATE_ITEM}/), a checkpoints folder of numbered steps, or a workdir with "
        f"{CHECKPOINTS_SUBDIR}/. HF folders are imported with `python -m electra_jax.convert from_hf`.")


def _numpy_restore(directory: Path, subtree: str | None = None) -> Any:
    """Restores an orbax PyTree as host numpy arrays (no shardings needed), optionally one top-level subtree."""
    checkpointer = ocp.PyTreeCheckpointer()
    metadata = checkpointer.metadata(directory)
    tree = metadata.item_metadata.tree if hasattr(metadata, "item_metadata") else metadata
    tree = getattr(tree, "tree", tree)
    if subtree is not None:
        tree = {subtree: tree[subtree]}
    restore_args = jax.tree_util.tree_map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    restored = checkpointer.restore(directory, args=ocp.args.PyTreeRestore(
        item=tree, restore_args=restore_args, partial_restore=subtree is not None))
    return restored[subtree] if subtree is not None else restored


def _read_json_item(step_dir: Path, item: str) -> Any:
    folder = step_dir / item
    for name in ("metadata", f"{item}.json"):
        if (folder / name).is_file():
            return json.loads((folder / name).read_text())
    raise CheckpointError(f"checkpoint step folder {str(step_dir)!r} lacks its {item} JSON ({folder}/metadata)")


def _to_plain_dict(tree: Any) -> Any:
    if isinstance(tree, dict) or hasattr(tree, "items"):
        return {str(k): _to_plain_dict(v) for k, v in tree.items()}
    return np.asarray(tree)


def restore_params(path: str) -> tuple[dict, ml_collections.ConfigDict]:
    """Host numpy params (canonical unstacked layout) and the full config they were trained with.

    `path` may be a workdir, its checkpoints/ folder (the latest step is used), one step folder, or a
    params-only export written by `save_params`.
    """
    from electra_jax import config as config_lib
    from electra_jax import modeling

    quiet_orbax_logs()
    kind, folder = _resolve_params_source(path)
    if kind == "export":
        params = _numpy_restore(folder / "params")
        config_dict = json.loads((folder / PARAMS_CONFIG_FILE).read_text())
    else:
        params = _numpy_restore(folder / STATE_ITEM, subtree="params")
        config_dict = _read_json_item(folder, CONFIG_ITEM)
    config = config_lib.finalize(ml_collections.ConfigDict(config_dict))
    params = modeling.unstack_layers(_to_plain_dict(params))
    logging.info("restored params from %s (%s)", folder, kind)
    return params, config


def save_params(path: str, params: Any, config: ml_collections.ConfigDict) -> None:
    """Writes a params-only checkpoint (canonical unstacked layout + config) that `restore_params` reads.

    Accepted by `pretrain --config.checkpoint.init=PATH` (continued pre-training) and `finetune --init=PATH`.
    """
    from electra_jax import modeling

    quiet_orbax_logs()
    folder = as_path(path)
    folder.mkdir(parents=True, exist_ok=True)
    host = jax.tree_util.tree_map(lambda x: np.asarray(jax.device_get(x)), params)
    host = modeling.unstack_layers(_to_plain_dict(host))
    checkpointer = ocp.PyTreeCheckpointer()
    checkpointer.save(folder / "params", host, force=True)
    if jax.process_index() == 0:
        (folder / PARAMS_CONFIG_FILE).write_text(json.dumps(config_to_dict(config), indent=2, sort_keys=True))
