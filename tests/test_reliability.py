"""Issue 14: a long run never loses work, and every failure says what happened and what to do.

Each fault is reproduced for real: a learning rate that diverges within a few steps, a disk that fills up
(a tiny tmpfs in a user namespace, and a fault-injecting file layer where namespaces are unavailable), files
truncated or deleted in real orbax checkpoints, records from another vocabulary, runs killed by SIGTERM and
SIGKILL during steps and during saves. Every test checks the message and that no good data was lost; the
references are an uninterrupted run (bit for bit), the states the test itself saved, and hand counts.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import jax
import mini
import numpy as np
import pytest

from electra_jax import checkpoints, cli, safeguards, sharding, train_state
from electra_jax import config as config_lib
from pretrain_runs import (EVERY, PREEMPTED, REPO, SMALL_FLAGS, TOTAL_STEPS, assert_same_state, copy_run, env,
                           error_lines, finish, log_path, log_tail, metrics_size, saved_state, start, steps_on_disk,
                           train_lines, wait_for_file, wait_for_step)

def _config(**extra):
    return mini.config(**{"data.max_seq_length": 16, "train.batch_size": 4, **extra})


def _flat(tree) -> dict[str, np.ndarray]:
    """Host copies (a donated state's buffers are reused) keyed by tree path."""
    return {jax.tree_util.keystr(path): np.array(leaf, copy=True) for path, leaf in
            jax.tree_util.tree_flatten_with_path(jax.device_get(tree))[0]}


def _all_finite(state: dict[str, np.ndarray]) -> bool:
    floats = [v for v in state.values() if np.issubdtype(v.dtype, np.floating)]
    return bool(floats) and all(np.all(np.isfinite(v)) for v in floats)


def _namespace_tmpfs(mount_point: Path, options: str, copy_to: Path | None = None) -> list[str] | None:
    """An argv prefix running a command with a fresh tmpfs (mount OPTIONS) at mount_point, in a user + mount
    namespace (no root needed), optionally copying the tmpfs's contents to `copy_to` afterwards (the tmpfs
    vanishes with the namespace); None where this kernel or container does not allow it."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    mount = f'mount -t tmpfs -o {options} tmpfs "$0"'
    probe = subprocess.run([unshare, "-rm", "sh", "-c", mount, str(mount_point)], capture_output=True)
    if probe.returncode:
        return None
    then = f' && {{ "$@"; status=$?; cp -a "$0"/. "{copy_to}"; exit $status; }}' if copy_to else ' && exec "$@"'
    return [unshare, "-rm", "sh", "-c", mount + then, str(mount_point)]


# ---------------------------------------------------------------------------------------------------------
# One-line errors


def test_cli_errors_are_one_line_with_the_traceback_behind_a_switch(tmp_path):
    missing = tmp_path / "no_such_checkpoint"
    base = [sys.executable, "-m", "electra_jax.predict", "detect", f"--checkpoint={missing}", "--text=a b"]
    run_env = dict(os.environ, JAX_PLATFORMS="cpu")
    run_env.pop(cli.TRACEBACK_ENV, None)
    plain = subprocess.run(base, cwd=REPO, env=run_env, capture_output=True, text=True, timeout=300)
    assert plain.returncode == 1
    (line,) = plain.stderr.strip().splitlines()  # one line, no traceback
    assert line.startswith("predict: error: ") and str(missing) in line and "does not exist" in line
    for extra_env, extra_flag in ((({cli.TRACEBACK_ENV: "1"}), []), ({}, ["--verbosity=1"])):
        verbose = subprocess.run(base + extra_flag, cwd=REPO, env={**run_env, **extra_env}, capture_output=True,
                                 text=True, timeout=300)
        assert verbose.returncode == 1
        assert "Traceback (most recent call last)" in verbose.stderr
        assert verbose.stderr.strip().splitlines()[-1] == line


def test_a_bad_config_flag_is_one_line_naming_the_fix():
    """An unknown size, an override of a field that does not exist (with the closest name, or where that field is),
    and no --config at all: one line and exit status 2, not ml_collections' traceback."""
    run_env = dict(os.environ, JAX_PLATFORMS="cpu")
    run_env.pop(cli.TRACEBACK_ENV, None)
    cases = {
        ("--config=configs/pretrain.py:tinny",):
            "pretrain: error: --config=configs/pretrain.py:tinny: unknown pre-training size 'tinny'; choose one of "
            "['base', 'large', 'small', 'small_plus', 'tiny']",
        ("--config=configs/pretrain.py:tiny", "--config.train.batchsize=8"):
            "pretrain: error: --config.train.batchsize=8: config.train has no field 'batchsize' (did you mean "
            "'batch_size'?); the fields of config.train: batch_size, eval_every,",
        ("--config=configs/pretrain.py:tiny", "--config.train.learning_rate=1e-4"):
            "pretrain: error: --config.train.learning_rate=1e-4: config.train has no field 'learning_rate' (it is "
            "config.optim.learning_rate);",
        (): "pretrain: error: flag --config=None: Flag --config must have a value other than None. (pre-training "
            "config file, e.g. configs/pretrain.py:small)",
        ("--config=configs/pretrian.py:tiny",):  # ml_collections would report this only at the first use
            f"pretrain: error: --config=configs/pretrian.py:tiny: cannot read the config file: there is no file "
            f"configs/pretrian.py (relative paths start at {REPO})",
        # absl's other form, --config VALUE: the same messages (they read the value from the command line)
        ("--config", "configs/pretrian.py:tiny"):
            f"pretrain: error: --config=configs/pretrian.py:tiny: cannot read the config file: there is no file "
            f"configs/pretrian.py (relative paths start at {REPO})",
        ("--config", "configs/pretrain.py:tiny", "--config.train.learning_rate=1e-4"):
            "pretrain: error: --config.train.learning_rate=1e-4: config.train has no field 'learning_rate' (it is "
            "config.optim.learning_rate);",
        # a typo in the path with an override after it (how real command lines look): was a 61-line traceback
        ("--config=configs/pretrian.py:tiny", "--config.train.steps=3"):
            f"pretrain: error: --config=configs/pretrian.py:tiny: cannot read the config file: there is no file "
            f"configs/pretrian.py (relative paths start at {REPO})",
        ("--config.train.steps=3", "--config=configs/pretrain.py:tiny"):  # the overrides first
            "pretrain: error: Found --config.train.steps=3 in argv before a value for --config was specified; put "
            "--config=PATH:ARG before the --config.* overrides",
    }
    for flags_given, expected in cases.items():
        proc = subprocess.run([sys.executable, "-m", "electra_jax.pretrain", "--workdir=/nonexistent/w", *flags_given],
                              cwd=REPO, env=run_env, capture_output=True, text=True, timeout=300)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert lines[0].startswith(expected), lines
        assert lines[1:] == ["pretrain: pass --helpshort to see the flags"]


def test_predict_empty_text_says_it_is_empty(tmp_path):
    run_env = dict(os.environ, JAX_PLATFORMS="cpu")
    empty = subprocess.run([sys.executable, "-m", "electra_jax.predict", "fill_mask", f"--checkpoint={tmp_path}",
                            "--text="], cwd=REPO, env=run_env, capture_output=True, text=True, timeout=300)
    assert empty.returncode == 1
    assert empty.stderr.strip().splitlines() == [
        "predict: error: --text is empty: give the text to fill in, e.g. --text='the [MASK] sat on the mat.'"]
    missing = subprocess.run([sys.executable, "-m", "electra_jax.predict", "detect", "--text=x"], cwd=REPO,
                             env=run_env, capture_output=True, text=True, timeout=300)
    assert missing.stderr.strip().splitlines() == ["predict: error: give --checkpoint (--checkpoint=PATH --text=TEXT)"]


def test_a_run_that_fails_at_start_leaves_no_empty_workdir(tmp_path):
    """pretrain into a new folder (two levels missing) with a glob that matches nothing fails and leaves neither
    level behind; a folder the user made stays, and new_workdir never removes a file or a folder that holds one."""
    from electra_jax import pretrain

    for workdir, remains in ((tmp_path / "new" / "wd", False), (tmp_path / "mine", True)):
        if remains:
            workdir.mkdir()
        with pytest.raises(ValueError, match="No record files match"):
            pretrain.train_and_evaluate(_config(**{"data.synthetic": False, "data.format": "numpy",
                                                   "data.train_files": str(tmp_path / "none" / "*.npy")}), str(workdir))
        assert workdir.exists() is remains and (tmp_path / "new").exists() is False

    with pytest.raises(RuntimeError):
        with safeguards.new_workdir(tmp_path / "a" / "b") as root:
            (root / "checkpoints" / "1").mkdir(parents=True)  # empty folders only: all removed
            raise RuntimeError
    assert not (tmp_path / "a").exists()
    with pytest.raises(RuntimeError):
        with safeguards.new_workdir(tmp_path / "c" / "d") as root:
            (root / "checkpoints").mkdir()
            (root / "metrics.jsonl").write_text("{}\n")
            raise RuntimeError
    assert (tmp_path / "c" / "d" / "metrics.jsonl").read_text() == "{}\n" and (tmp_path / "c" / "d" / "checkpoints"
                                                                                ).is_dir()
    with safeguards.new_workdir(tmp_path / "e") as root:  # no failure: kept, empty as it is
        pass
    assert root.is_dir()


def test_error_message_of_os_errors_names_the_file_and_the_fix():
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/w/metrics.jsonl")
    assert cli.error_message(full) == ("No space left on device (/w/metrics.jsonl); free space on that disk or point "
                                       "the output flag (--workdir, --output_dir) at one with room")
    assert cli.error_message(ValueError("a\n  b")) == "a b"  # always one line


def test_workdir_that_is_a_file_or_cannot_be_written(tmp_path, cache_dir):
    a_file = tmp_path / "afile"
    a_file.write_text("not a folder")
    for workdir, expected in ((a_file, f"--workdir={a_file} is a file, not a folder"),
                              (a_file / "sub", f"the workdir {a_file / 'sub'} cannot be written (Not a directory)")):
        proc = subprocess.run(
            [sys.executable, "-m", "electra_jax.pretrain", f"--workdir={workdir}", *SMALL_FLAGS], cwd=REPO,
            env=env(cache_dir), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 1
        assert [ln for ln in proc.stderr.splitlines() if "error" in ln] == [
            f"pretrain: error: {expected}" + ("; give a folder (it is created if missing)" if workdir == a_file else
                                              "; choose a folder you can write to with --workdir, or fix its "
                                              "permissions")]
        assert a_file.read_text() == "not a folder"  # untouched

    read_only = tmp_path / "read_only"
    read_only.mkdir()
    code = ("import sys; from electra_jax import safeguards\ntry:\n safeguards.prepare_workdir(sys.argv[1] + '/run')\n"
            "except ValueError as e:\n print(e)")
    if os.geteuid() != 0:  # permissions stop everyone but root
        read_only.chmod(stat.S_IRUSR | stat.S_IXUSR)
        prefix = []
    else:  # a read-only filesystem stops root too
        prefix = _namespace_tmpfs(read_only, "ro,size=64k")
        if prefix is None:
            pytest.skip("running as root without user namespaces: no way to make a folder read-only")
    proc = subprocess.run([*prefix, sys.executable, "-c", code, str(read_only)], cwd=REPO, env=env(cache_dir),
                          capture_output=True, text=True, timeout=300)
    assert proc.stdout.strip().startswith(f"the workdir {read_only / 'run'} cannot be written ("), proc.stderr
    assert "choose a folder you can write to with --workdir" in proc.stdout


# ---------------------------------------------------------------------------------------------------------
# Config checks on resume and bad token ids (pure functions against hand-written expectations)


def test_finetune_resume_compares_the_data_folder_not_its_spelling():
    """Hand-written config dicts: ./glue/RTE and its absolute path are one folder; data.tfds_data_dir is not
    data.tfds; another task is refused."""
    saved = {"task": "rte", "data": {"dir": "glue/RTE", "tfds": False, "tfds_data_dir": ""}, "train": {"epochs": 3}}
    same = {"task": "rte", "data": {"dir": os.path.abspath("glue/RTE"), "tfds": False, "tfds_data_dir": "/x"},
            "train": {"epochs": 5}}
    safeguards.check_finetune_resumable(saved, same, Path("/w/checkpoints/6"))
    with pytest.raises(checkpoints.ResumeMismatchError, match=r"task 'rte' -> 'mrpc'"):
        safeguards.check_finetune_resumable(saved, {**same, "task": "mrpc"}, Path("/w/checkpoints/6"))
    with pytest.raises(checkpoints.ResumeMismatchError, match=r"holds a pre-training checkpoint"):
        safeguards.check_finetune_resumable({"model": {}}, same, Path("/w/checkpoints/6"))


def test_finetune_resume_compares_the_accent_handling_the_tokenizer_applies():
    """strip_accents None strips exactly when lower-casing (the original's tie, by hand): None and true are one
    setting for an uncased run and None and false for a cased one; an uncased run that kept accents is refused
    with the tie, and a config from before the field existed is accepted."""
    def run(lower_case, strip_accents=None, **data):
        return {"task": "sst2", "data": {"lower_case": lower_case, "strip_accents": strip_accents, **data}}

    where = Path("/w/checkpoints/6")
    for saved, now in [(run(True), run(True, True)), (run(False), run(False, False)), (run(True, False),
                                                                                       run(True, False))]:
        safeguards.check_finetune_resumable(saved, now, where)
        safeguards.check_finetune_resumable(now, saved, where)
    safeguards.check_finetune_resumable({"task": "sst2", "data": {"lower_case": True}}, run(True), where)
    for saved, now in [(run(True, False), run(True)), (run(False), run(False, True)), (run(True), run(False))]:
        with pytest.raises(checkpoints.ResumeMismatchError, match=r"data\.(strip_accents|lower_case)"):
            safeguards.check_finetune_resumable(saved, now, where)


def test_resume_differences_separate_what_may_change():
    saved = checkpoints.config_to_dict(_config())
    now = checkpoints.config_to_dict(_config(**{
        "model.hidden_size": 128, "model.num_heads": 4, "train.steps": 5000, "optim.learning_rate": 1e-4,
        "checkpoint.every_steps": 10, "model.dtype": "bfloat16", "train.log_every": 7}))
    forbidden, allowed = safeguards.resume_differences(saved, now)
    # Set fields first, then what finalize derived from them: the generator is half as wide (32 -> 64, FFN
    # 128 -> 256) and keeps one head (width // 64 = 0 -> at least 1, either way).
    assert [f for f, _, _ in forbidden] == ["model.hidden_size", "model.num_heads", "model.generator_hidden_size",
                                            "model.generator_intermediate_size"]
    assert forbidden[0] == ("model.hidden_size", 64, 128)
    assert sorted(f for f, _, _ in allowed) == ["checkpoint.every_steps", "model.dtype", "optim.learning_rate",
                                                 "train.log_every", "train.steps"]
    with pytest.raises(checkpoints.ResumeMismatchError, match=r"model.hidden_size 64 -> 128, model.num_heads 2 -> 4"):
        safeguards.check_resumable(saved, now, Path("/w/checkpoints/60"))
    safeguards.check_resumable(saved, checkpoints.config_to_dict(_config(**{"train.steps": 9})), "/w/checkpoints/1")
    # The compute switches are exact names: model.attention may change, model.attention_dropout (the model) may not.
    forbidden, allowed = safeguards.resume_differences(saved, checkpoints.config_to_dict(_config(**{
        "model.attention_dropout": 0.0, "model.attention": "cudnn"})))
    assert [f for f, _, _ in forbidden] == ["model.attention_dropout"] and [f for f, _, _ in allowed] == [
        "model.attention"]


@pytest.mark.parametrize("field,value,other_value", [("optim.clip_norm", 1.0, 0.0),
                                                     ("optim.weight_decay", 0.01, 0.0),
                                                     ("optim.layerwise_lr_decay", 0.8, 0.0)])
def test_resume_refuses_turning_an_optimizer_part_on_or_off_but_not_a_new_value(field, value, other_value):
    from electra_jax import modeling, optim

    def state_layout(config):  # what orbax would be asked to restore into
        params = jax.eval_shape(lambda: modeling.init_params(config, jax.random.PRNGKey(0)))
        tx, _ = optim.make_optimizer(config.optim, 10, params, config.model.num_layers)
        return jax.tree_util.tree_structure(jax.eval_shape(tx.init, params))

    base, toggled, retuned = (_config(**{field: v}) for v in (value, other_value, value * 0.5 or 0.5))
    saved = checkpoints.config_to_dict(base)
    # The rule follows the optimizer itself: toggling changes the state's layout, a new value does not.
    assert state_layout(toggled) != state_layout(base)
    assert state_layout(retuned) == state_layout(base)
    refusal = rf"{field} {value!r} -> {other_value!r}.*optimizer parts"
    with pytest.raises(checkpoints.ResumeMismatchError, match=refusal):
        safeguards.check_resumable(saved, checkpoints.config_to_dict(toggled), Path("/w/checkpoints/60"))
    forbidden, allowed = safeguards.resume_differences(saved, checkpoints.config_to_dict(retuned))
    assert not forbidden and [f for f, _, _ in allowed] == [field]


def test_token_ids_outside_the_vocabulary_are_named():
    good = {"input_ids": np.array([[0, 5, 511]])}
    safeguards.check_token_ids(good, 512, where="training batch")
    for bad_id in (512, 30521, -1):
        batch = {"input_ids": np.array([[0, bad_id, 3]])}
        with pytest.raises(ValueError, match=rf"holds token id {bad_id}, but config.model.vocab_size = 512 "):
            safeguards.check_token_ids(batch, 512, where="training batch")


def test_learning_rates_beyond_float32_are_refused():
    with pytest.raises(config_lib.ConfigError, match=r"optim.learning_rate = 1e\+39: must be below 3.403e\+38"):
        _config(**{"optim.learning_rate": 1e39})


# ---------------------------------------------------------------------------------------------------------
# The train step's finiteness flags and the skip switch (in-process)


def test_skipped_update_leaves_params_and_optimizer_state_bit_for_bit():
    from electra_jax.data.pipeline import synthetic_batches, to_global_batch

    # A constant learning rate near float32's limit: the Adam step (|update| ~ 3 x rate) overflows.
    config = _config(**{"optim.learning_rate": 3e38, "optim.end_learning_rate": 3e38, "optim.warmup_steps": 0,
                        "train.max_skipped_updates": 2})
    batch = next(synthetic_batches(per_host_batch_size=4, seq_len=16, vocab_size=512, seed=0,
                                   special_ids={"pad_id": 0, "unk_id": 100, "cls_id": 101, "sep_id": 102,
                                                "mask_id": 103}))
    trainer = train_state.Trainer(config, sharding.make_mesh(config.mesh))
    state = trainer.init_state(0)
    before = _flat(state.to_dict())
    compiled = trainer.compile(include_eval=False, log_memory=False)
    rng = jax.device_put(np.asarray(jax.device_get(state.rng)), trainer.replicated)
    new_state, metrics = compiled.train_step(state, to_global_batch(batch, trainer.batch_sharding), rng)
    after, metrics = _flat(new_state.to_dict()), jax.device_get(metrics)
    # The loss and gradient were finite; the update's result was not, so it was dropped.
    assert np.isfinite(metrics["loss"]) and np.isfinite(metrics["grad_norm"])
    assert metrics["params_finite"] == 0.0 and metrics["update_skipped"] == 1.0
    assert int(after["['step']"]) == 1  # the step counter advances
    for name, value in before.items():
        if name != "['step']":
            np.testing.assert_array_equal(after[name], value, err_msg=name)


def test_restoring_params_warns_about_no_missing_metadata(tmp_path, small_trainer, caplog):
    config, _, state = small_trainer
    ckpt = checkpoints.Checkpointer(tmp_path / "checkpoints", keep=5)
    ckpt.save(3, state, data_states={0: {}}, config=config)
    ckpt.close()
    with caplog.at_level(logging.WARNING):
        params, _ = checkpoints.restore_params(str(tmp_path))
    assert not [r for r in caplog.records if "_CHECKPOINT_METADATA" in r.getMessage()]
    np.testing.assert_array_equal(params["embeddings"]["word_embeddings"],
                                  np.asarray(state.params["embeddings"]["word_embeddings"]))


# ---------------------------------------------------------------------------------------------------------
# Checkpointer: rotation keeps the newest verified checkpoint; corrupt steps fall back (in-process)


@pytest.fixture(scope="module")
def small_trainer():
    config = _config()
    trainer = train_state.Trainer(config, sharding.make_mesh(config.mesh))
    return config, trainer, trainer.init_state(0)


def _shifted(state, by: float):
    return state.replace(params=jax.tree_util.tree_map(lambda x: x + by, state.params))


def test_rotation_never_deletes_the_newest_verified_checkpoint(tmp_path, small_trainer):
    config, _, state = small_trainer
    ckpt = checkpoints.Checkpointer(tmp_path / "checkpoints", keep=1, async_save=False)
    ckpt.save(1, state, data_states={0: {}}, config=config)
    ckpt.mark_verified(1)  # step 2 computed a finite loss and gradient from step 1's parameters
    ckpt.save(2, state, data_states={0: {}}, config=config)
    ckpt.wait_until_finished()
    assert ckpt.all_steps() == [1, 2]  # keep=1, but 2 is unverified: 1 is the newest known-good one
    ckpt.save(3, state, data_states={0: {}}, config=config)  # step 3 diverged? 2 is still unverified
    ckpt.wait_until_finished()
    assert ckpt.all_steps() == [1, 3]
    ckpt.mark_verified(3)
    ckpt.save(4, state, data_states={0: {}}, config=config)
    ckpt.wait_until_finished()
    assert ckpt.all_steps() == [3, 4]
    ckpt.close()
    # A caller that checks nothing (fine-tuning) gets plain keep-N.
    plain = checkpoints.Checkpointer(tmp_path / "plain", keep=1, async_save=False)
    for step in (1, 2, 3):
        plain.save(step, state, data_states={0: {}}, config=config)
    plain.wait_until_finished()
    assert plain.all_steps() == [3]
    plain.close()


def _corrupt(step_dir: Path, how: str) -> None:
    if how == "truncated data file":
        data_file = max((p for p in (step_dir / "state").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
        os.truncate(data_file, data_file.stat().st_size // 2)
    elif how == "deleted state/_METADATA":
        (step_dir / "state" / "_METADATA").unlink()
    elif how == "emptied data/metadata":
        (step_dir / "data" / "metadata").write_text("")


@pytest.mark.parametrize("how", ["truncated data file", "deleted state/_METADATA", "emptied data/metadata"])
def test_corrupt_latest_checkpoint_falls_back_loudly_and_keeps_it(tmp_path, small_trainer, how, caplog):
    config, trainer, state = small_trainer
    directory = tmp_path / "checkpoints"
    ckpt = checkpoints.Checkpointer(directory, keep=5)
    ckpt.save(2, state, data_states={0: {"batches": 2}}, config=config)
    ckpt.save(4, _shifted(state, 1.0), data_states={0: {"batches": 4}}, config=config)
    ckpt.close()
    _corrupt(directory / "4", how)
    files_of_4 = sorted(p.relative_to(directory / "4") for p in (directory / "4").rglob("*"))

    ckpt = checkpoints.Checkpointer(directory, keep=5)
    with caplog.at_level(logging.WARNING):
        step, restored, data, _ = ckpt.restore_latest(trainer.abstract_state())
    assert step == 2 and data == {0: {"batches": 2}}
    assert_same_state(_flat(restored.to_dict()), _flat(state.to_dict()))  # exactly what was saved at step 2
    loud = [r.getMessage() for r in caplog.records if "CHECKPOINT STEP 4" in r.getMessage()]
    assert len(loud) == 2 and "UNREADABLE" in loud[0] and "FELL BACK" in loud[1] and "quarantine/4-corrupt" in loud[1]
    # The unreadable step was moved aside intact, not deleted; the fallback is what the next save builds on.
    moved = tmp_path / "quarantine" / "4-corrupt"
    assert sorted(p.relative_to(moved) for p in moved.rglob("*")) == files_of_4
    assert ckpt.all_steps() == [2]
    ckpt.close()


def test_corrupt_checkpoint_with_stop_or_nothing_intact_moves_nothing(tmp_path, small_trainer):
    config, trainer, state = small_trainer
    directory = tmp_path / "checkpoints"
    ckpt = checkpoints.Checkpointer(directory, keep=5)
    ckpt.save(2, state, data_states={0: {}}, config=config)
    ckpt.save(4, state, data_states={0: {}}, config=config)
    ckpt.close()
    _corrupt(directory / "4", "deleted state/_METADATA")
    ckpt = checkpoints.Checkpointer(directory, keep=5)
    with pytest.raises(checkpoints.CorruptCheckpointError,
                       match=r"checkpoint step 4 in .* cannot be read: .*on_corrupt='stop'"):
        ckpt.restore_latest(trainer.abstract_state(), on_corrupt="stop")
    assert ckpt.all_steps() == [2, 4]
    _corrupt(directory / "2", "emptied data/metadata")
    with pytest.raises(checkpoints.CorruptCheckpointError,
                       match=r"no checkpoint in .* can be read \(step 4: .*; step 2: .*\)\. Nothing was moved"):
        ckpt.restore_latest(trainer.abstract_state())
    assert ckpt.all_steps() == [2, 4] and not (tmp_path / "quarantine").exists()
    ckpt.close()


def test_divergence_guard_quarantines_what_produced_the_nan(tmp_path, small_trainer):
    config, _, state = small_trainer
    ckpt = checkpoints.Checkpointer(tmp_path / "checkpoints", keep=0, async_save=False)
    guard = safeguards.DivergenceGuard(ckpt, max_skipped_updates=2, learning_rate=1e-3)
    finite = {"loss": 3.0, "grad_norm": 1.0, "params_finite": 1.0}
    for step in (1, 2, 3, 4):
        assert guard.check(step, finite)
        ckpt.save(step, state, data_states={0: {}}, config=config)
    nan = {"loss": float("nan"), "grad_norm": float("nan"), "params_finite": 0.0}
    assert not guard.check(5, nan) and not guard.check(6, nan)  # skipped: 2 in a row are allowed
    with pytest.raises(safeguards.NonFiniteLossError) as stop:
        guard.check(7, nan)
    message = str(stop.value)
    # Steps 5-7 all started from step 4's parameters: 4 is moved aside, 3 (verified by step 4) is named.
    assert message.startswith("3 updates in a row (steps 5-7) were not finite, more than "
                              "config.train.max_skipped_updates = 2 allows")
    assert "checkpoint 4, whose parameters produced it, was moved to" in message
    assert f"the last good checkpoint is step 3 in {tmp_path / 'checkpoints'}" in message
    assert ckpt.all_steps() == [1, 2, 3] and (tmp_path / "quarantine" / "4-diverged" / "state").is_dir()
    ckpt.close()


# ---------------------------------------------------------------------------------------------------------
# End to end through the CLI


def test_divergence_quarantines_the_poisoned_checkpoint_and_resume_works(tmp_path, cache_dir):
    """The issue's repro: with every_steps=1 and keep=1, a diverging learning rate used to leave a NaN or
    exploded checkpoint as 'last good' after rotation deleted the good ones."""
    workdir = tmp_path / "diverged"
    flags = ("--config.checkpoint.every_steps=1", "--config.checkpoint.keep=1")
    rc = finish(start(workdir, cache_dir, *flags, "--config.optim.learning_rate=1e6"))
    assert rc == 1, log_tail(workdir)
    (line,) = error_lines(workdir)
    assert "Traceback" not in log_tail(workdir, 10**7)
    bad = int(line.split(" at step ")[1].split(" ")[0])
    good = int(line.split("the last good checkpoint is step ")[1].split(" ")[0])
    assert good == bad - 2 and f"checkpoint {bad - 1}, whose parameters produced it, was moved" in line
    assert "Fix: lower config.optim.learning_rate (now 1e+06" in line
    # keep=1 alone would have deleted the good step; rotation kept it because it was the newest verified one.
    assert steps_on_disk(workdir) == [good]
    assert (workdir / "quarantine" / f"{bad - 1}-diverged" / "state").is_dir()
    assert _all_finite(saved_state(workdir, good))
    lines = train_lines(workdir)
    assert np.isfinite(lines[good + 1]["loss"]) and np.isfinite(lines[good + 1]["grad_norm"])

    # The advised fix works: resuming with a sane learning rate trains to the end without diverging again.
    rc = finish(start(workdir, cache_dir, "--config.checkpoint.keep=1"))
    assert rc == 0, log_tail(workdir)
    assert f"resumed from step {good} " in log_path(workdir).read_text()
    resumed = train_lines(workdir)
    assert all(np.isfinite(resumed[s]["loss"]) for s in range(good + 1, TOTAL_STEPS + 1))


@pytest.mark.slow
def test_update_that_overflows_stops_before_saving_and_names_the_step_before(tmp_path, cache_dir,
                                                                           uninterrupted_workdir):
    workdir = copy_run(uninterrupted_workdir, tmp_path / "overflow")
    rc = finish(start(workdir, cache_dir, "--config.train.steps=64", "--config.checkpoint.every_steps=1",
                      "--config.optim.learning_rate=3e38", "--config.optim.end_learning_rate=3e38"))
    assert rc == 1, log_tail(workdir)
    (line,) = error_lines(workdir)
    assert line.startswith("pretrain: error: the update of step 61 made the parameters non-finite")
    assert f"the last good checkpoint is step 60 in {workdir / 'checkpoints'}" in line
    assert steps_on_disk(workdir) == [44, 48, 52, 56, 60] and not (workdir / "quarantine").exists()
    assert_same_state(saved_state(workdir, 60), saved_state(uninterrupted_workdir, 60))


NATIVE_LOG = re.compile(r"^[IWEF]\d{4} [\d:. ]+ *\d+ [\w./-]+\.(cc|h):\d+\] ")  # XLA's own C++ log lines


def _loud_lines(log: str) -> list[str]:
    """The log's warnings, errors and anything unlogged, but for what XLA's C++ code logs about this machine (its
    slow-compile alarm, "Constant folding an instruction is taking > 1s", comes on a loaded machine, with the
    instruction on the lines after it)."""
    loud, in_native = [], False
    for line in log.splitlines():
        if NATIVE_LOG.match(line):
            in_native = True
        elif re.match(r"^[IWEF]\d{4} ", line):
            in_native = False
            if not line.startswith("I"):
                loud.append(line)
        elif not in_native:
            loud.append(line)
    return loud


def test_corrupt_latest_checkpoint_resumes_from_the_one_before_with_one_loud_line(tmp_path, cache_dir,
                                                                                uninterrupted_workdir):
    workdir = copy_run(uninterrupted_workdir, tmp_path / "corrupt")
    _corrupt(workdir / "checkpoints" / "60", "truncated data file")
    log_path(workdir).write_text("")
    rc = finish(start(workdir, cache_dir))
    assert rc == 0, log_tail(workdir)
    log = log_path(workdir).read_text()
    noisy = _loud_lines(log)
    assert len(noisy) == 2 and "CHECKPOINT STEP 60" in noisy[0] and "FELL BACK" in noisy[1], noisy
    assert "Event loop is closed" not in log and "Traceback" not in log
    assert "resumed from step 56 " in log
    assert (workdir / "quarantine" / "60-corrupt").is_dir()
    # Nothing of value was lost: steps 57-60 were recomputed exactly.
    assert_same_state(saved_state(workdir, 60), saved_state(uninterrupted_workdir, 60))


def test_resume_with_a_changed_model_names_the_fields_and_touches_nothing(tmp_path, cache_dir,
                                                                        uninterrupted_workdir):
    workdir = copy_run(uninterrupted_workdir, tmp_path / "changed")
    before = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in workdir.rglob("*") if p.is_file()
              and p.name != "metrics.jsonl"}
    proc = subprocess.run(
        [sys.executable, "-m", "electra_jax.pretrain", f"--workdir={workdir}", *SMALL_FLAGS,
         "--config.model.hidden_size=128", "--config.train.steps=80"],
        cwd=REPO, env=env(cache_dir), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("pretrain: error:")]  # TF says "errors" too
    assert line.startswith(f"pretrain: error: the checkpoint {workdir / 'checkpoints' / '60'} was trained with a "
                           "different config: model.hidden_size 64 -> 128, ")
    assert "train.steps" not in line  # allowed to change
    assert f"add --config.checkpoint.init={workdir} to it" in line and "use a new --workdir" in line
    assert {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in before} == before


def _assert_disk_full_stopped_cleanly(workdir: Path, failed_step: int | None = None) -> None:
    (line,) = error_lines(workdir)
    assert "No space left on device" in line and "Training stopped so that no more work is lost" in line
    step = int(line.split("saving checkpoint step ")[1].split(" ")[0])
    complete = int(line.split("the newest complete checkpoint is step ")[1].split(" ")[0])
    assert failed_step in (None, step) and complete == step - EVERY
    assert "Traceback" not in log_tail(workdir, 10**7)
    # Every complete checkpoint before the failure is intact and readable.
    assert steps_on_disk(workdir) == list(range(EVERY, step, EVERY))
    for good in steps_on_disk(workdir):
        assert _all_finite(saved_state(workdir, good))
    # Training stopped at the failed save or the next one, not at the end of the run.
    assert max(train_lines(workdir)) <= step + EVERY < TOTAL_STEPS


@pytest.mark.slow  # the fault-injecting variant below runs by default
def test_disk_full_on_a_tiny_filesystem_stops_with_the_cause(tmp_path, cache_dir):
    mount, copy = tmp_path / "tiny_fs", tmp_path / "tiny_fs_contents"
    mount.mkdir()
    copy.mkdir()
    # Room for two checkpoints of this model (about 1 MB each).
    prefix = _namespace_tmpfs(mount, "size=2500k", copy_to=copy)
    if prefix is None:
        pytest.skip("user namespaces are unavailable here, so no tiny filesystem can be mounted (the "
                    "fault-injecting variant below still runs)")
    workdir = tmp_path / "full"
    workdir.mkdir()
    (workdir / "checkpoints").symlink_to(mount)  # metrics.jsonl stays on the big disk: the save is what fails
    rc = finish(start(workdir, cache_dir, prefix=tuple(prefix)))
    assert rc == 1, log_tail(workdir)
    (workdir / "checkpoints").unlink()  # what the tiny filesystem held when the run stopped
    copy.rename(workdir / "checkpoints")
    _assert_disk_full_stopped_cleanly(workdir)


def test_disk_full_from_a_fault_injecting_file_layer_stops_with_the_cause(tmp_path, cache_dir):
    workdir = tmp_path / "full_injected"
    rc = finish(start(workdir, cache_dir, ELECTRA_TEST_ENOSPC_STEP=str(3 * EVERY)))
    assert rc == 1, log_tail(workdir)
    _assert_disk_full_stopped_cleanly(workdir, failed_step=3 * EVERY)


def test_token_ids_beyond_the_vocabulary_stop_before_the_first_update(tmp_path, cache_dir, shared_dir,
                                                                    uncased_vocab):
    """Records built with the 30,522-token BERT vocabulary, their metadata.json gone, fed to a 512-token model."""
    text = tmp_path / "text.txt"
    source = (shared_dir / "data" / "text" / "tinyshakespeare" / "input.txt").read_text().splitlines()
    text.write_text("\n".join(source[:400]) + "\n")
    built = subprocess.run([sys.executable, "-m", "electra_jax.build_data", f"--input={text}",
                            f"--vocab={uncased_vocab}", f"--output_dir={tmp_path / 'records'}",
                            "--max_seq_length=32", "--num_shards=1", "--num_processes=1", "--format=numpy"],
                           cwd=REPO, env=env(cache_dir), capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    (tmp_path / "records" / "metadata.json").unlink()
    workdir = tmp_path / "wrong_vocab"
    proc = subprocess.run(
        [sys.executable, "-m", "electra_jax.pretrain", f"--workdir={workdir}", *SMALL_FLAGS,
         "--config.data.synthetic=False", "--config.data.format=numpy",
         f"--config.data.train_files={tmp_path / 'records'}/*.npy"],
        cwd=REPO, env=env(cache_dir), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr[-3000:]
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("pretrain: error:")]  # TF says "errors" too
    assert line.startswith("pretrain: error: the training batch of step 1 (config.data.train_files = ")
    bad_id = int(line.split("holds token id ")[1].split(",")[0])
    assert 512 <= bad_id < 30522 and "config.model.vocab_size = 512" in line and "build_data --vocab" in line
    assert "learning_rate" not in line  # not the divergence advice
    assert not (workdir / "checkpoints").exists() or steps_on_disk(workdir) == []


# ---------------------------------------------------------------------------------------------------------
# Safetensors exports


def _tiny_hf_export(tmp_path) -> dict[str, str]:
    pytest.importorskip("safetensors", reason="HF export needs safetensors (pip install -e .[convert])")
    from electra_jax import convert, modeling

    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(123)]
    (tmp_path / "vocab.txt").write_text("\n".join(tokens) + "\n")
    config = _config(**{"model.vocab_size": 128, "model.max_position_embeddings": 64})
    params = jax.tree_util.tree_map(lambda s: np.full(s.shape, 0.01, s.dtype), modeling.param_shapes(config))
    return convert.save_hf(params, config, str(tmp_path / "hf"), vocab_path=str(tmp_path / "vocab.txt"))


def test_model_safetensors_gets_the_permissions_of_the_other_exported_files(tmp_path):
    previous = os.umask(0o022)
    try:
        folders = _tiny_hf_export(tmp_path)
    finally:
        os.umask(previous)
    for folder in folders.values():
        modes = {name: stat.S_IMODE(os.stat(os.path.join(folder, name)).st_mode) for name in os.listdir(folder)}
        assert modes["model.safetensors"] == modes["config.json"] == 0o644, modes


def test_truncated_safetensors_names_the_file_also_through_finetune_init(tmp_path):
    from electra_jax import convert

    folders = _tiny_hf_export(tmp_path)
    weights = Path(folders["discriminator"]) / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(weights))} is not a readable safetensors file \(.*\); "
                                         "it is probably truncated or corrupt"):
        convert.load_hf(folders["discriminator"])
    proc = subprocess.run([sys.executable, "-m", "electra_jax.finetune", "--config=configs/finetune.py:sst2,tiny",
                           f"--init={folders['discriminator']}", f"--workdir={tmp_path / 'ft'}"],
                          cwd=REPO, env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("finetune: error:")]  # TF says "errors" too
    assert line.startswith(f"finetune: error: {weights} is not a readable safetensors file")


# ---------------------------------------------------------------------------------------------------------
# Kills at random points: SIGTERM and SIGKILL, during steps and during saves


KILL_EVERY = 2  # checkpoints every 2 steps, so that many kills fit in one 60-step run


def _kill_once(workdir: Path, cache_dir: Path, rng: random.Random, sig: signal.Signals, phase: str) -> bool:
    """Starts the run, kills it with `sig` during a step or a save, checks its exit; False when too near the end."""
    resume = max(steps_on_disk(workdir), default=0)
    flags = (f"--config.checkpoint.every_steps={KILL_EVERY}",)
    marker = workdir.parent / f"{workdir.name}.marker"
    marker.unlink(missing_ok=True)
    if phase == "step":
        target = resume + rng.randint(1, 2)
        if target >= TOTAL_STEPS - 1:
            return False
        logged = metrics_size(workdir)  # only this run's lines count
        proc = start(workdir, cache_dir, *flags, ELECTRA_TEST_STEP_DELAY="0.02")
        wait_for_step(workdir, proc, target, after_bytes=logged)
    else:
        save_step = (resume // KILL_EVERY + 1) * KILL_EVERY
        if save_step >= TOTAL_STEPS - KILL_EVERY:
            return False
        hook = ({"ELECTRA_TEST_BLOCK_FINALIZE_STEP": str(save_step)} if sig == signal.SIGKILL
                else {"ELECTRA_TEST_SLOW_FINALIZE": f"{save_step}:0.5"})  # the save must be able to end
        proc = start(workdir, cache_dir, *flags, ELECTRA_TEST_MARKER=str(marker), **hook)
        wait_for_file(marker, proc, workdir)
    proc.send_signal(sig)
    rc = finish(proc)
    expected = {signal.SIGTERM: PREEMPTED, signal.SIGINT: cli.EXIT_INTERRUPTED, signal.SIGKILL: -signal.SIGKILL}
    assert rc == expected[sig], (sig, phase, rc, log_tail(workdir))
    if sig != signal.SIGKILL:  # it saved the step it stopped at
        assert max(steps_on_disk(workdir)) > resume
    return True


def _run_with_kills(tmp_path: Path, cache_dir: Path, uninterrupted_workdir: Path, kinds, seed: int) -> int:
    workdir = tmp_path / "killed_again_and_again"
    rng = random.Random(seed)
    done = 0
    for sig, phase in kinds:
        if not _kill_once(workdir, cache_dir, rng, sig, phase):
            break
        done += 1
    rc = finish(start(workdir, cache_dir, f"--config.checkpoint.every_steps={KILL_EVERY}"))
    assert rc == 0, log_tail(workdir)
    assert not list((workdir / "checkpoints").glob("*tmp*"))  # no leftover of a killed save
    # Params, optimizer state, step and PRNG key equal the uninterrupted run's, bit for bit.
    assert_same_state(saved_state(workdir, TOTAL_STEPS), saved_state(uninterrupted_workdir, TOTAL_STEPS))
    return done


def test_three_kills_then_the_same_final_parameters(tmp_path, cache_dir, uninterrupted_workdir):
    kinds = [(signal.SIGTERM, "step"), (signal.SIGKILL, "save"), (signal.SIGKILL, "step")]
    assert _run_with_kills(tmp_path, cache_dir, uninterrupted_workdir, kinds, seed=14) == 3


@pytest.mark.slow
def test_twenty_kills_at_random_points_then_the_same_final_parameters(tmp_path, cache_dir, uninterrupted_workdir):
    """SIGTERM, SIGINT (Ctrl-C) and SIGKILL, during steps and during saves, in a random order."""
    rng = random.Random(2026)
    kinds = [(sig, phase) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL) for phase in ("step", "save")]
    kinds = kinds * 4
    rng.shuffle(kinds)
    assert _run_with_kills(tmp_path, cache_dir, uninterrupted_workdir, kinds, seed=2026) >= 20
