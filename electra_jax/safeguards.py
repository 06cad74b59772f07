"""Safeguards of a long pre-training run: each failure stops it with one line naming the cause and the fix.

* `prepare_workdir`: a workdir that is a file or cannot be written is refused before anything starts;
  `new_workdir` also removes the folders it created when the run fails before writing a file into them.
* `check_resumable`: resuming compares the checkpoint's config with the new one and names the fields that a
  resumed run may not change (the model, the objective, the data format, batch size, seed).
* `check_token_ids`: token ids outside [0, vocab_size) (records from another vocabulary) are caught in the
  batch, before they can turn into a NaN loss that looks like a learning-rate problem.
* `DivergenceGuard`: no non-finite loss, gradient norm or parameter ever reaches a checkpoint, and the run
  names a checkpoint that is really good. See its docstring for what "verified" means.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from electra_jax import optim
from electra_jax.checkpoints import CheckpointError, Checkpointer, Path, ResumeMismatchError, as_path, config_to_dict


class NonFiniteLossError(FloatingPointError):
    """Training diverged; the message names the step, what was not finite and the last good checkpoint."""


# ---------------------------------------------------------------------------------------------------------
# Before the run


def prepare_workdir(path: str | os.PathLike) -> Path:
    """Creates the workdir (process 0 only); CheckpointError naming it when it is a file or not writable."""
    root = as_path(path)
    if jax.process_index() != 0:
        return root
    if "://" in str(root):
        root.mkdir(parents=True, exist_ok=True)
        return root
    if root.exists() and not root.is_dir():
        raise CheckpointError(f"--workdir={path} is a file, not a folder; give a folder (it is created if missing)")
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".electra_jax_write_test_{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise CheckpointError(f"the workdir {root} cannot be written ({error.strerror}); choose a folder you can "
                              "write to with --workdir, or fix its permissions") from error
    return root


@contextlib.contextmanager
def new_workdir(path: str | os.PathLike) -> Iterator[Path]:
    """`prepare_workdir(path)` for the block; when the block raises, the folders this created (the workdir and
    missing parents) are removed again if they hold no file (empty subfolders such as checkpoints/ go with
    them), so a run that fails at start-up leaves no empty workdir behind. Files are never removed, and a
    folder that existed before stays."""
    root = as_path(path)
    created = []
    if jax.process_index() == 0 and "://" not in str(root):
        folder = Path(os.path.abspath(root))
        while not folder.exists() and folder != folder.parent:
            created.append(folder)
            folder = folder.parent
    prepared = prepare_workdir(path)
    try:
        yield prepared
    except BaseException:
        for folder in created:  # the workdir first, then its parents
            if not _remove_if_no_files(folder):
                break
        raise


def _remove_if_no_files(folder: Path) -> bool:
    """Removes `folder` when neither it nor a subfolder holds a file (or link); True when it is gone."""
    try:
        tree = list(os.walk(folder, topdown=False))  # deepest first
        if any(filenames or any(os.path.islink(os.path.join(d, sub)) for sub in subs) for d, subs, filenames in tree):
            return False
        for dirpath, _, _ in tree:
            os.rmdir(dirpath)
    except OSError:
        return False
    return not os.path.exists(folder)


# Config fields that define the run a checkpoint continues: a resumed run must keep them. Everything else
# (steps, logging, eval, checkpoint cadence, progress, data paths, mesh and sharding, optimizer values such
# as a lowered learning rate, max_skipped_updates) may change; OPTIMIZER_PARTS below may not be turned on or off.
# data.lower_case may change too: pre-training reads token ids, and the casing is the records' (metadata.json),
# which corrects a checkpoint that recorded the config's default for cased records.
RESUME_MUST_MATCH = ("model.", "objective.", "data.max_seq_length", "data.pad_id",
                     "data.unk_id", "data.cls_id", "data.sep_id", "data.mask_id", "train.batch_size", "train.seed")
# Compute-only model switches: same parameters, same state layout.
RESUME_MAY_CHANGE = ("model.dtype", "model.attention", "model.remat", "model.dropout_prng")
# Optimizer switches: their value may change, but turning one on or off adds or drops a part of the optimizer
# chain (optim.make_optimizer), so the saved optimizer state no longer has the run's layout.
OPTIMIZER_PARTS = tuple(f"optim.{part}" for part in optim.OPTIONAL_PARTS)
# Filled in by config.finalize from the fields above; they differ only because a set field does.
DERIVED_FIELDS = ("model.generator_hidden_size", "model.generator_num_heads", "model.generator_intermediate_size",
                  "model.generator_num_layers", "model.padded_vocab_size", "objective.max_predictions_per_seq")


def flatten_config(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    """A nested config dict as {"section.field": value}."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


Change = tuple[str, Any, Any]  # (field, value in the checkpoint, value now)


def _listed(field: str, entries: tuple[str, ...]) -> bool:
    """An entry ending in "." or "_" is a prefix ("model.", "model.generator_"); any other is one exact field (so
    "model.attention" is not "model.attention_dropout")."""
    return any(field == e or (e.endswith((".", "_")) and field.startswith(e)) for e in entries)


def resume_differences(saved: Mapping, current: Mapping, must_match: tuple[str, ...] = RESUME_MUST_MATCH,
                       may_change: tuple[str, ...] = RESUME_MAY_CHANGE) -> tuple[list[Change], list[Change]]:
    """(fields a resumed run may not change, fields it may) that differ, as (field, saved, current).

    Fields present on one side only (configs written by another electra_jax version) are ignored.
    """
    old, new = flatten_config(saved), flatten_config(current)
    forbidden, allowed = [], []
    for field in sorted(set(old) & set(new)):
        if old[field] == new[field]:
            continue
        binding = _listed(field, must_match) and not _listed(field, may_change)
        if field in OPTIMIZER_PARTS:
            binding = optim.is_on(old[field]) != optim.is_on(new[field])
        (forbidden if binding else allowed).append((field, old[field], new[field]))
    forbidden.sort(key=lambda change: change[0] in DERIVED_FIELDS)  # the fields a user sets come first
    return forbidden, allowed


def _compare_for_resume(saved: Mapping, config: ml_collections.ConfigDict | Mapping, what: str,
                        *args: tuple[str, ...]) -> str:
    """Logs the changes a resumed run may make; returns the forbidden ones, shown ("" when none)."""
    current = config_to_dict(config) if isinstance(config, ml_collections.ConfigDict) else dict(config)
    forbidden, allowed = resume_differences(saved, current, *args)
    if allowed:
        logging.info("resuming %swith changed settings (checkpoint -> now): %s", what,
                     ", ".join(f"{f} {a!r} -> {b!r}" for f, a, b in allowed))
    shown = ", ".join(f"{f} {a!r} -> {b!r}" for f, a, b in forbidden[:6])
    return shown + (f" and {len(forbidden) - 6} more" if len(forbidden) > 6 else "")


def check_resumable(saved: Mapping, config: ml_collections.ConfigDict | Mapping, where: Path | str) -> None:
    """Raises ResumeMismatchError naming the fields that differ; logs the changes a resumed run may make."""
    shown = _compare_for_resume(saved, config, "")
    if shown:
        workdir = as_path(where).parent.parent
        raise ResumeMismatchError(
            f"the checkpoint {where} was trained with a different config: {shown} (checkpoint -> now). A run "
            f"resumes only with the same model, objective, sequence length, special ids, batch size, seed and "
            f"optimizer parts (gradient clipping, weight decay and layer-wise decay on or off, at any value). To "
            f"train this config use a new --workdir; to start a fresh run from those weights add "
            f"--config.checkpoint.init={workdir} to it; to continue the old run drop the changed overrides")


# A fine-tuning workdir's checkpoints continue one task on one data set from one model: a rerun in the same
# --workdir with another task, data folder or training cap must not resume it (and report its scores under the
# new name). Epochs, logging, eval and checkpoint settings and the optimizer's values may change.
FINETUNE_MUST_MATCH = ("task", "model.", "data.dir", "data.tfds", "data.lower_case", "data.strip_accents",
                       "data.max_seq_length",
                       "data.double_unordered", "data.doc_stride", "data.max_query_length", "data.tag_scheme",
                       "train.batch_size", "train.max_train_examples")
# The generator's sizes do not enter a fine-tuned model (they describe the --init checkpoint's other network).
FINETUNE_MAY_CHANGE = RESUME_MAY_CHANGE + ("model.generator_",)


def _as_compared_on_resume(config: Mapping) -> dict:
    """The config dict with data.dir as an absolute path (a URL as given) and data.strip_accents as the tokenizer
    applies it (None strips exactly when lower-casing: None and true are one setting for an uncased run)."""
    from electra_jax.data.tokenization import strips_accents

    data = dict(config.get("data") or {})
    folder = data.get("dir")
    if isinstance(folder, str) and folder:
        data["dir"] = str(as_path(folder))
    if "strip_accents" in data:
        data["strip_accents"] = strips_accents(data.get("lower_case", True), data["strip_accents"])
    return {**config, "data": data} if "data" in config else dict(config)


def check_finetune_resumable(saved: Mapping, config: ml_collections.ConfigDict | Mapping, where: Path | str
                             ) -> None:
    """Raises ResumeMismatchError when the fine-tuning checkpoint at `where` is of another run: a pre-training
    checkpoint (a pre-training workdir given as the fine-tuning --workdir), or another task, data set, model or
    training cap (FINETUNE_MUST_MATCH), or an optimizer part turned on or off."""
    workdir = as_path(where).parent.parent
    if "task" not in saved:
        raise ResumeMismatchError(
            f"{workdir} holds a pre-training checkpoint ({where}), not a fine-tuning run: fine-tune into a new "
            f"--workdir and pass this one as --init={workdir}")
    current = config_to_dict(config) if isinstance(config, ml_collections.ConfigDict) else dict(config)
    # ./glue/RTE and /abs/glue/RTE are one folder; strip_accents None and true one setting for an uncased run
    saved, current = _as_compared_on_resume(saved), _as_compared_on_resume(current)
    shown = _compare_for_resume(saved, current, "fine-tuning ", FINETUNE_MUST_MATCH, FINETUNE_MAY_CHANGE)
    if shown:
        raise ResumeMismatchError(
            f"{workdir} holds a fine-tuning run of another setup: {shown} (checkpoint -> now). A fine-tuning "
            f"run resumes only with the same task, data, model, sequence length, batch size, training-set cap and "
            f"optimizer parts; fine-tune this setup into a new --workdir, or drop the changed overrides to finish "
            f"the old run")


def check_finetune_position(position: Mapping, seeds: list[int], init: str, where: Path | str) -> None:
    """Raises ResumeMismatchError when a fine-tuning checkpoint holds other seeds or started from another --init
    than this run (checkpoints written before these were recorded are not checked)."""
    if "seeds" in position and list(position["seeds"]) != list(seeds):
        raise ResumeMismatchError(f"the checkpoint in {where} holds seeds {position['seeds']}, not {list(seeds)}: "
                                  "fine-tune these seeds into a new --workdir")
    if "init" in position and position["init"] != init:
        was, now = position["init"] or "no --init (from scratch)", init or "no --init (from scratch)"
        raise ResumeMismatchError(f"the checkpoint in {where} was fine-tuned from {was}, not {now}: fine-tune from "
                                  "the new weights into a new --workdir")


# ---------------------------------------------------------------------------------------------------------
# During the run


def check_token_ids(batch: Mapping[str, Any], vocab_size: int, *, where: str) -> None:
    """Raises ValueError when a batch holds a token id outside [0, vocab_size). Costs one min/max per batch."""
    ids = np.asarray(batch["input_ids"])
    if ids.size == 0:
        return
    low, high = int(ids.min()), int(ids.max())
    if 0 <= low and high < vocab_size:
        return
    bad = high if high >= vocab_size else low
    raise ValueError(
        f"the {where} holds token id {bad}, but config.model.vocab_size = {vocab_size} (ids must lie in "
        f"[0, {vocab_size})): the records were built with another vocabulary than this model's. Rebuild them with "
        f"`python -m electra_jax.build_data --vocab=VOCAB` and this model's vocabulary, or, if the records are "
        f"right, pass --config.model.vocab_size=N with their vocabulary's size (at least {max(high + 1, 1)}); "
        f"records built by build_data carry a metadata.json that sets it")


class DivergenceGuard:
    """Checks each step's metrics; tells the checkpointer which checkpoints are verified; stops a diverged run.

    The loss and gradient norm of step t are computed with the parameters of step t-1; the parameters saved
    at step t are the result of update t (`params_finite` says whether they are all finite). So:
      * a checkpoint is saved at step t only after step t's metrics were checked (the loop's job), so it
        never holds non-finite parameters;
      * it is *verified* only once a later step computed a finite loss and gradient norm from its parameters
        (`Checkpointer.mark_verified`); rotation always keeps the newest verified checkpoint;
      * when step t's loss or gradient norm is not finite, the parameters of step t-1 produced it: a
        checkpoint of step t-1 is moved to WORKDIR/quarantine/ ("diverged") and the message names the newest
        remaining one, which is verified. When only the update's result is not finite, step t-1 is good.
    With max_skipped_updates = N > 0 the train step has already dropped such updates (the parameters stay
    those of the step before); the run goes on and stops at the (N+1)-th non-finite update in a row.
    """

    def __init__(self, checkpointer: Checkpointer, *, max_skipped_updates: int, learning_rate: float):
        self.checkpointer = checkpointer
        self.max_skipped = max_skipped_updates
        self.learning_rate = learning_rate
        self.in_a_row = 0
        self.total_skipped = 0
        self._streak_start = 0
        self._streak_bad_inputs = False

    def check(self, step: int, metrics: Mapping[str, float]) -> bool:
        """True when update `step` was applied; False when it was skipped; raises NonFiniteLossError to stop."""
        inputs_ok = math.isfinite(metrics["loss"]) and math.isfinite(metrics.get("grad_norm", 0.0))
        result_ok = metrics.get("params_finite", 1.0) == 1.0
        if inputs_ok:
            self.checkpointer.mark_verified(step - 1)  # step - 1's params gave a finite loss and gradient
        if inputs_ok and result_ok:
            self.in_a_row = 0
            return True
        what = self._describe(step, metrics, inputs_ok)
        if self.max_skipped == 0:
            self._stop(what, first_bad=step if inputs_ok else step - 1)
        if self.in_a_row == 0:
            self._streak_start, self._streak_bad_inputs = step, False
        self.in_a_row += 1
        self.total_skipped += 1
        self._streak_bad_inputs |= not inputs_ok
        if self.in_a_row > self.max_skipped:
            # Every update of the streak started from the parameters of the step before it.
            self._stop(f"{self.in_a_row} updates in a row (steps {self._streak_start}-{step}) were not finite, "
                       f"more than config.train.max_skipped_updates = {self.max_skipped} allows; the last: {what}",
                       first_bad=self._streak_start - 1 if self._streak_bad_inputs else self._streak_start)
        logging.warning("step %d: %s; the update was skipped (%d in a row, at most %d)", step, what, self.in_a_row,
                        self.max_skipped)
        return False

    @staticmethod
    def _describe(step: int, metrics: Mapping[str, float], inputs_ok: bool) -> str:
        losses = f"mlm_loss {metrics.get('mlm_loss')}, disc_loss {metrics.get('disc_loss')}"
        if not inputs_ok:
            return (f"the training loss is {metrics['loss']} and the gradient norm {metrics.get('grad_norm')} at "
                    f"step {step} ({losses})")
        return (f"the update of step {step} made the parameters non-finite (loss {metrics['loss']}, gradient norm "
                f"{metrics.get('grad_norm')}, learning rate {metrics.get('learning_rate')})")

    def _stop(self, what: str, *, first_bad: int) -> None:
        checkpointer = self.checkpointer
        checkpointer.wait_until_finished()  # pending saves hold checked states; they must land before moving any
        moved = checkpointer.quarantine_from(first_bad, "diverged")
        good = checkpointer.latest_step()
        parts = [what, "stopped without saving it"]
        if moved:
            parts.append(f"checkpoint {', '.join(str(s) for s, _ in moved)}, whose parameters produced it, was moved "
                         f"to {checkpointer.quarantine_directory}")
        parts.append(f"the last good checkpoint is step {good} in {checkpointer.directory} (rerunning the command "
                     "resumes from it)" if good is not None else "no good checkpoint was saved (a rerun starts afresh)")
        rate = self.learning_rate
        fix = f"Fix: lower config.optim.learning_rate (now {rate:g}; e.g. --config.optim.learning_rate={rate / 10:g})"
        if self.max_skipped == 0:
            fix += " or skip such updates with --config.train.max_skipped_updates=N"
        raise NonFiniteLossError("; ".join(parts) + f". {fix}; a loss that breaks suddenly can also mean bad data.")
