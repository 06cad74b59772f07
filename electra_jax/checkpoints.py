"""Checkpoints: the only module that talks to orbax.

Training checkpoints live under `WORKDIR/checkpoints/STEP/` with three items:
  state/   the TrainState (params, optimizer state, step, PRNG key) as sharded arrays (orbax PyTree/OCDBT);
  data/    JSON: every host's input-pipeline position, keyed by process index ("0", "1", ...);
  config/  JSON: the full config the run was trained with.
Saves are asynchronous (orbax writes into a temporary folder and renames it when every host is done, so a
process killed mid-save leaves no folder that looks complete; the next run restores the previous step and
removes the leftovers). Rotation keeps the last `keep` steps plus the newest verified one; a step that cannot
be read on resume is moved to WORKDIR/quarantine/ once an older one restored (`Checkpointer.restore_latest`).

Params-only exports (`save_params`, used by `convert from_hf/from_tf`) are a folder holding `params/` (orbax,
the canonical unstacked layout) and `electra_jax_config.json`. `restore_params` reads either kind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from electra_jax.orbax_logs import QuietOrbax, failure_cause, quiet_orbax_logs

Path = epath.Path  # local folders and gs:// (Cloud TPU workdirs) alike

CHECKPOINTS_SUBDIR = "checkpoints"
QUARANTINE_SUBDIR = "quarantine"  # WORKDIR/quarantine/STEP-corrupt, STEP-diverged: moved aside, never deleted


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


class CorruptCheckpointError(CheckpointError):
    """A training checkpoint cannot be read (truncated or deleted files) and no fallback was allowed or possible."""


class ResumeMismatchError(CheckpointError):
    """The workdir's checkpoint was trained with a config that a resumed run may not change."""


class CheckpointSaveError(OSError):
    """A checkpoint could not be written (e.g. the disk is full); the message names the step, cause and fix."""


# ---------------------------------------------------------------------------------------------------------
# Training checkpoints


@dataclasses.dataclass
class _KeepNewestVerified:
    """orbax preservation policy: keep the newest checkpoint known to be good, however old.

    The parameters saved at step t are verified once a later step computed a finite loss and gradient norm
    from them (Checkpointer.mark_verified); the newest checkpoint is unverified until then.
    """

    checkpointer: Checkpointer

    def should_preserve(self, checkpoints, *, context) -> list[bool]:
        del context
        keep = self.checkpointer.newest_verified([info.step for info in checkpoints])
        return [info.step == keep for info in checkpoints]


class Checkpointer:
    """CheckpointManager for one run: async saves, rotation, restore with fallback, quarantine.

    Rotation keeps the newest `keep` checkpoints (0 = all) and, once the caller checks steps (`mark_verified`,
    as the pre-training loop does), also the newest verified one whatever `keep` says (see
    `_KeepNewestVerified`), so a divergence can always name a checkpoint that is really good.
    """

    def __init__(self, directory: str | os.PathLike, *, keep: int = 5, async_save: bool = True):
        quiet_orbax_logs()
        self.directory = as_path(directory)
        self.async_save = async_save
        self._verified_through = -1
        self._tracks_verification = False  # set by the first mark_verified; before it, rotation is plain keep-N
        self._pending_step: int | None = None
        policies = ocp.checkpoint_managers
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policies.AnyPreservationPolicy([
                policies.LatestN(n=keep if keep and keep > 0 else None), _KeepNewestVerified(self)]),
            enable_async_checkpointing=async_save,
            create=True,
            # Leftover tmp folders of a save that was killed are removed when the next run starts.
            cleanup_tmp_directories=True,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options,
                                             item_names=(STATE_ITEM, DATA_ITEM, CONFIG_ITEM))
        self._assume_all_but_newest_verified()

    @property
    def quarantine_directory(self) -> Path:
        return self.directory.parent / QUARANTINE_SUBDIR

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def reached_preemption(self, step: int) -> bool:
        """orbax's preemption sync point (TPU/multi-host maintenance events); False where unsupported."""
        return bool(self.manager.reached_preemption(step))

    # -- verification (for rotation and for naming the last good checkpoint) -----------------------------

    def _assume_all_but_newest_verified(self) -> None:
        # The loop saves step s only after checking step s, whose loss came from the params of every earlier
        # checkpoint: so on disk, all checkpoints but the newest are verified.
        steps = self.all_steps()
        self._verified_through = steps[-2] if len(steps) > 1 else -1

    def mark_verified(self, step: int) -> None:
        """Every checkpoint at a step <= `step` holds params that produced a finite loss and gradient norm."""
        self._tracks_verification = True
        self._verified_through = max(self._verified_through, step)

    def newest_verified(self, steps: list[int] | None = None) -> int | None:
        if not self._tracks_verification:
            return None
        candidates = [s for s in (self.all_steps() if steps is None else steps) if s <= self._verified_through]
        return max(candidates) if candidates else None

    # -- saving -------------------------------------------------------------------------------------------

    def save(self, step: int, state: Any, *, data_states: dict[int, Any] | None, config: ml_collections.ConfigDict,
             ) -> None:
        """Starts an (async) save of `state` (a TrainState or dict of arrays) at `step`. Every host must call it.

        Raises CheckpointSaveError when this save or the previous one failed.
        """
        if self._pending_step is not None:  # orbax would wait for it anyway; this names the step that failed
            self._finish_pending()
        state_dict = state.to_dict() if hasattr(state, "to_dict") else state
        data = {str(k): v for k, v in (data_states or {}).items()}
        args = ocp.args.Composite(**{
            STATE_ITEM: ocp.args.StandardSave(state_dict),
            DATA_ITEM: ocp.args.JsonSave(data),
            CONFIG_ITEM: ocp.args.JsonSave(config_to_dict(config)),
        })
        QuietOrbax.last_error = None
        try:
            self.manager.save(step, args=args, force=True)
        except Exception as error:  # whatever orbax raised, the save did not happen
            raise self._save_error(step, error) from error
        self._pending_step = step
        logging.info("checkpoint: saving step %d to %s (%s)", step, self.directory,
                     "async" if self.async_save else "sync")

    def poll(self) -> None:
        """Cheap, every step: raises CheckpointSaveError as soon as a background save has failed."""
        if self._pending_step is not None and not self.manager.is_saving_in_progress():
            self._finish_pending()

    def _finish_pending(self) -> None:
        step, self._pending_step = self._pending_step, None
        try:
            self.manager.wait_until_finished()
        except Exception as error:
            raise self._save_error(step, error) from error
        if not (self.directory / str(step)).exists():  # orbax may log the failure and skip the commit
            raise self._save_error(step, None)

    def _save_error(self, step: int, error: BaseException | None) -> CheckpointSaveError:
        from electra_jax import cli

        cause, code = failure_cause(error)
        try:
            self.manager.reload()
            complete = [s for s in self.all_steps() if s != step]
        except Exception:  # the folder may be unreadable too; the cause above is what matters
            complete = []
        newest = (f"the newest complete checkpoint is step {complete[-1]} (rerunning the command resumes from it)"
                  if complete else "no complete checkpoint exists yet")
        fix = cli._OS_ADVICE.get(code, f"check that {self.directory} is writable and has room")
        return CheckpointSaveError(f"saving checkpoint step {step} to {self.directory} failed: {cause}. Training "
                                   f"stopped so that no more work is lost; {newest}. Fix: {fix}")

    def wait_until_finished(self) -> None:
        if self._pending_step is not None:
            self._finish_pending()
        else:
            self.manager.wait_until_finished()

    def close(self, raise_errors: bool = True) -> None:
        """Waits for the last save and closes; with raise_errors=False (the run already failed) only logs."""
        try:
            self.wait_until_finished()
        except CheckpointSaveError as error:
            if raise_errors:
                raise
            logging.error("%s", error)
        finally:
            try:
                self.manager.close()
            except Exception as error:  # closing after a failed save must not hide the first error
                if raise_errors:
                    raise
                logging.error("closing the checkpoint manager: %s", error)

    # -- restoring ----------------------------------------------------------------------------------------

    def saved_config(self, step: int) -> dict:
        """The config dict saved with `step`, read without restoring the state (to check it first)."""
        return _read_json_item(self.directory / str(step), CONFIG_ITEM)

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict[int, Any], dict]:
        """Restores (state, {process_index: data position}, config dict) at `step` into the abstract target.

        `abstract_state` holds jax.ShapeDtypeStructs carrying the *current* mesh's shardings, so a run can
        resume on a different mesh or device count than the one that saved it. Every host must call it; when
        the read fails on any host, every host raises (CorruptCheckpointError on those whose own read worked).
        """
        try:
            restored, error = self._read(step, abstract_state), None
        except Exception as caught:  # raised below, once every host knows
            restored, error = None, caught
        if not _all_processes(error is None):
            if error is not None:
                raise error
            raise CorruptCheckpointError(f"checkpoint step {step} in {self.directory} could not be read on another "
                                         "host (its log names the cause)")
        return restored

    def _read(self, step: int, abstract_state: Any) -> tuple[Any, dict[int, Any], dict]:
        """This host's part of restoring `step`, with no collective: the callers agree on the outcome.

        orbax's CheckpointManager.restore ends with a barrier that a host whose read failed never reaches. The
        other hosts then wait in it, and the failed host's next collective (the agreement) met their barrier
        instead: the intact older step was called unreadable on the failed host while the rest hung. The
        handler reads the same folders without that barrier.
        """
        if step not in self.manager.all_steps():  # the manager lists finalized steps only
            raise FileNotFoundError(f"no complete checkpoint step {step} in {self.directory}")
        target = abstract_state.to_dict() if hasattr(abstract_state, "to_dict") else abstract_state
        handler = ocp.CompositeCheckpointHandler(**{
            STATE_ITEM: ocp.StandardCheckpointHandler(),
            DATA_ITEM: ocp.JsonCheckpointHandler(),
            CONFIG_ITEM: ocp.JsonCheckpointHandler(),
        })
        try:
            restored = handler.restore(self.directory / str(step), args=ocp.args.Composite(**{
                STATE_ITEM: ocp.args.StandardRestore(target),
                DATA_ITEM: ocp.args.JsonRestore(),
                CONFIG_ITEM: ocp.args.JsonRestore(),
            }))
        finally:
            handler.close()
        state = restored[STATE_ITEM]
        if hasattr(abstract_state, "from_dict"):
            state = type(abstract_state).from_dict(state)
        data = {int(k): v for k, v in (restored[DATA_ITEM] or {}).items()}
        return state, data, restored[CONFIG_ITEM]

    def restore_latest(self, abstract_state: Any, check_config: Callable[[dict, Path], None] | None = None, *,
                       on_corrupt: str = "fallback") -> tuple[int, Any, dict[int, Any], dict] | None:
        """(step, state, data positions, saved config) of the newest readable checkpoint; None when there is none.

        `check_config(saved_config, step_folder)` runs before each restore and may raise ResumeMismatchError
        (a config the resumed run may not change), which propagates: it is not corruption. An unreadable
        checkpoint (truncated data file, deleted
        state/_METADATA, emptied JSON) is named in a loud log line; on_corrupt="fallback" then tries the next
        older one and, once one restores, moves the unreadable newer ones to WORKDIR/quarantine/. "stop"
        raises CorruptCheckpointError instead. If none restores, nothing is moved and CorruptCheckpointError
        lists every step's cause: the run never silently starts over.
        """
        steps = self.all_steps()
        unreadable: list[tuple[int, str]] = []
        for step in reversed(steps):
            try:
                saved_config = _read_json_item(self.directory / str(step), CONFIG_ITEM)
                if check_config is not None:
                    check_config(saved_config, self.directory / str(step))
                state, data, _ = self._restore_with_retry(step, abstract_state)
                ok = True
            except ResumeMismatchError:
                raise
            except Exception as error:  # any failure to read this step makes it unusable
                ok, (cause, _) = False, failure_cause(error)
            if not _all_processes(ok):
                cause = cause if not ok else "unreadable on another host"
                unreadable.append((step, cause))
                logging.error("CHECKPOINT STEP %d IN %s IS UNREADABLE: %s", step, self.directory, cause)
                if on_corrupt == "stop":
                    raise CorruptCheckpointError(
                        f"checkpoint step {step} in {self.directory} cannot be read: {cause}. With "
                        f"config.checkpoint.on_corrupt='stop' the run does not fall back; pass "
                        f"--config.checkpoint.on_corrupt=fallback to resume from the newest readable checkpoint "
                        f"(the unreadable ones are moved to {self.quarantine_directory}), or repair or remove "
                        f"{self.directory / str(step)}")
                continue
            for bad, cause in unreadable:
                moved = self.quarantine(bad, "corrupt")
                logging.warning("FELL BACK FROM UNREADABLE CHECKPOINT STEP %d (%s) TO STEP %d; the unreadable one "
                                "was moved to %s", bad, cause, step, moved)
            self._verified_through = step - 1
            return step, state, data, saved_config
        if unreadable:
            listing = "; ".join(f"step {s}: {c}" for s, c in unreadable)
            raise CorruptCheckpointError(
                f"no checkpoint in {self.directory} can be read ({listing}). Nothing was moved or deleted. Restore "
                f"the folder from a backup, or move it aside to start this run afresh")
        return None

    def _restore_with_retry(self, step: int, abstract_state: Any):
        # Remote storage can fail transiently; a second read tells a blip from a corrupt checkpoint.
        attempts = 2 if "://" in str(self.directory) else 1
        for attempt in range(attempts):
            try:
                return self._read(step, abstract_state)
            except Exception:
                if attempt + 1 == attempts:
                    raise
                time.sleep(2.0)

    def quarantine(self, step: int, reason: str) -> Path:
        """Moves checkpoint `step` (kept intact, for inspection) to WORKDIR/quarantine/STEP-REASON."""
        target = self.quarantine_directory / f"{step}-{reason}"
        suffix = 1
        while target.exists():
            suffix += 1
            target = self.quarantine_directory / f"{step}-{reason}-{suffix}"
        if jax.process_index() == 0:
            self.quarantine_directory.mkdir(parents=True, exist_ok=True)
            (self.directory / str(step)).rename(target)
        _sync_processes(f"electra_jax_quarantine_{step}")
        self.manager.reload()
        return target

    def quarantine_from(self, first_step: int, reason: str) -> list[tuple[int, Path]]:
        """Quarantines every checkpoint at a step >= first_step; returns (step, new path) pairs."""
        return [(step, self.quarantine(step, reason)) for step in self.all_steps() if step >= first_step]


def _all_processes(ok: bool) -> bool:
    """True when `ok` holds on every process (one tiny all-gather in multi-process runs)."""
    if jax.process_count() == 1:
        return ok
    from jax.experimental import multihost_utils

    return bool(np.all(multihost_utils.process_allgather(np.asarray([ok], np.int32))))


def _sync_processes(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental.multihost_utils import sync_global_devices
        sync_global_devices(name)


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
        self.received_signal: int | None = None  # the first signal caught (None: orbax's sync point, or none)
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in signals:
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT and self._flag.is_set():
            raise KeyboardInterrupt  # a second Ctrl-C stops at once, without the checkpoint
        logging.warning("received signal %d: saving a checkpoint at the next step boundary, then stopping%s", signum,
                        " (Ctrl-C again to stop without it)" if signum == signal.SIGINT else "")
        if self.received_signal is None:
            self.received_signal = signum
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
    if (root / CHECKPOINTS_SUBDIR).is_dir():
        raise CheckpointError(f"{str(root)!r} is a workdir whose {CHECKPOINTS_SUBDIR}/ holds no saved step yet (a "
                              "run that has not reached its first checkpoint, or was stopped before it); give a "
                              "workdir with a saved checkpoint, or its final/ params export")
    raise CheckpointError(
        f"{str(root)!r} holds no electra_jax checkpoint: expected a params export (with {PARAMS_CONFIG_FILE}), "
        f"a step folder (with {STATE_ITEM}/), a checkpoints folder of numbered steps, or a workdir with "
        f"{CHECKPOINTS_SUBDIR}/. HF folders are imported with `python -m electra_jax.convert from_hf`; "
        "`checkpoint_formats.open_checkpoint` (finetune --init, predict, pretrain's checkpoint.init) opens HF and "
        "original TF checkpoints directly.")


def _numpy_restore(directory: Path, subtree: str | None = None) -> Any:
    """Restores an orbax PyTree as host numpy arrays (no shardings needed), optionally one top-level subtree."""
    # The handler, not a PyTreeCheckpointer: an item folder (STEP/state, EXPORT/params) has no
    # _CHECKPOINT_METADATA of its own, and the checkpointer warned about that on every restore.
    handler = ocp.PyTreeCheckpointHandler()
    try:
        metadata = handler.metadata(directory)
        tree = getattr(metadata, "tree", metadata)
        if subtree is not None:
            tree = {subtree: tree[subtree]}
        restore_args = jax.tree_util.tree_map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
        restored = handler.restore(directory, args=ocp.args.PyTreeRestore(
            item=tree, restore_args=restore_args, partial_restore=subtree is not None))
    finally:
        handler.close()
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
    config = config_lib.finalize(ml_collections.ConfigDict(config_dict), check_run=False)  # as it was saved
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
