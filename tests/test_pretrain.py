"""Pre-training runs end to end: preemption and exact resume, crash during an async save, bad inputs.

Runs are subprocesses of the real CLI (`python -m electra_jax.pretrain`) on synthetic data with
TensorFlow blocked, so they also prove that synthetic pre-training needs no TensorFlow. A persistent
compilation cache shared by the runs of this module keeps the repeated compiles cheap.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Small enough to compile in seconds; steps slow enough (tens of ms) for a signal to land mid-run.
SMALL_FLAGS = [
    "--config=configs/pretrain.py:tiny",
    "--config.data.synthetic=True",
    "--config.model.vocab_size=512", "--config.model.num_layers=1", "--config.model.hidden_size=64",
    "--config.model.embedding_size=32", "--config.model.intermediate_size=128",
    "--config.data.max_seq_length=32", "--config.train.batch_size=8",
    "--config.optim.warmup_steps=10", "--config.optim.learning_rate=1e-3",
    "--config.train.log_every=1", "--config.train.eval_every=0", "--config.train.progress=log",
]
TOTAL_STEPS = 60
EVERY = 4

# Runs pretrain's main with TensorFlow made unimportable; ELECTRA_TEST_BLOCK_FINALIZE_STEP (test only)
# makes orbax hang before it commits that step's checkpoint, so the test can SIGKILL mid-save.
RUNNER = textwrap.dedent(r"""
    import os, sys, time

    # As on a machine without TensorFlow: `import tensorflow` fails and find_spec reports it absent.
    sys.modules["tensorflow"] = None

    block_step = os.environ.get("ELECTRA_TEST_BLOCK_FINALIZE_STEP")
    if block_step:
        from orbax.checkpoint._src.path import atomicity
        original = atomicity.AtomicRenameTemporaryPath.finalize

        async def finalize(self, *args, **kwargs):
            if self.get_final().name == block_step:
                open(os.environ["ELECTRA_TEST_MARKER"], "w").write(str(self.get()))
                time.sleep(3600)  # the test kills the process here, files written but not committed
            return await original(self, *args, **kwargs)
        atomicity.AtomicRenameTemporaryPath.finalize = finalize

    from absl import app
    from electra_jax import pretrain
    pretrain.define_flags()
    sys.argv = ["pretrain"] + sys.argv[1:]
    app.run(pretrain.main)
""")


def _env(cache_dir: Path, **extra) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(cache_dir),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    env.pop("XLA_FLAGS", None)
    env.update(extra)
    return env


def _start(workdir: Path, cache_dir: Path, *flags, **env) -> subprocess.Popen:
    cmd = [sys.executable, "-c", RUNNER, f"--workdir={workdir}", *SMALL_FLAGS,
           f"--config.train.steps={TOTAL_STEPS}", f"--config.checkpoint.every_steps={EVERY}", *flags]
    log = open(workdir.parent / f"{workdir.name}.log", "a")
    return subprocess.Popen(cmd, cwd=REPO, env=_env(cache_dir, **env), stdout=log, stderr=subprocess.STDOUT)


def _finish(proc: subprocess.Popen, workdir: Path, timeout: float = 600) -> int:
    rc = proc.wait(timeout=timeout)
    return rc


def _log_tail(workdir: Path) -> str:
    path = workdir.parent / f"{workdir.name}.log"
    return path.read_text()[-4000:] if path.exists() else ""


def _train_lines(workdir: Path) -> dict[int, dict]:
    path = workdir / "metrics.jsonl"
    if not path.exists():
        return {}
    lines = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    return {ln["step"]: ln for ln in lines if ln.get("split") == "train"}


def _steps_on_disk(workdir: Path) -> list[int]:
    folder = workdir / "checkpoints"
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.exists() else []


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("jax_cache")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, cache_dir) -> dict[int, dict]:
    workdir = tmp_path_factory.mktemp("runs") / "uninterrupted"
    workdir.mkdir()
    rc = _finish(_start(workdir, cache_dir), workdir)
    assert rc == 0, _log_tail(workdir)
    lines = _train_lines(workdir)
    assert max(lines) == TOTAL_STEPS
    # The contract's metrics.jsonl fields.
    for field in ("step", "loss", "mlm_loss", "disc_loss", "mlm_accuracy", "disc_accuracy", "disc_auc",
                  "learning_rate", "tokens_per_sec", "mfu"):
        assert field in lines[TOTAL_STEPS], field
    assert any(p.name.startswith("events.out.tfevents") for p in workdir.iterdir())
    return lines


def _wait_for_step(workdir: Path, proc: subprocess.Popen, step: int, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before step {step}: {_log_tail(workdir)}")
        lines = _train_lines(workdir)
        if lines and max(lines) >= step:
            return
        time.sleep(0.02)
    raise AssertionError(f"step {step} not reached in {timeout} s")


def test_sigterm_saves_and_resumes_exactly(tmp_path, cache_dir, uninterrupted):
    workdir = tmp_path / "preempted"
    workdir.mkdir()
    proc = _start(workdir, cache_dir)
    _wait_for_step(workdir, proc, 3)
    proc.send_signal(signal.SIGTERM)
    assert _finish(proc, workdir) == 0, _log_tail(workdir)  # a clean exit, not a crash
    stopped_at = max(_steps_on_disk(workdir))
    assert 3 <= stopped_at < TOTAL_STEPS, f"the run was not stopped part-way ({stopped_at}); {_log_tail(workdir)}"
    assert max(_train_lines(workdir)) == stopped_at  # stopped at the step boundary it saved

    proc = _start(workdir, cache_dir)
    assert _finish(proc, workdir) == 0, _log_tail(workdir)
    resumed = _train_lines(workdir)
    assert max(resumed) == TOTAL_STEPS
    # Every step after the restart equals the uninterrupted run exactly (same params, data, PRNG).
    for step in range(stopped_at + 1, TOTAL_STEPS + 1):
        for key in ("loss", "mlm_loss", "disc_loss", "learning_rate"):
            assert resumed[step][key] == uninterrupted[step][key], (step, key)


def test_sigkill_during_async_save_restarts_from_previous_checkpoint(tmp_path, cache_dir, uninterrupted):
    workdir = tmp_path / "killed"
    workdir.mkdir()
    marker = tmp_path / "save_started"
    blocked = 2 * EVERY
    proc = _start(workdir, cache_dir, ELECTRA_TEST_BLOCK_FINALIZE_STEP=str(blocked), ELECTRA_TEST_MARKER=str(marker))
    deadline = time.time() + 600
    while not marker.exists():
        assert proc.poll() is None, _log_tail(workdir)
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    partial = Path(marker.read_text())
    assert partial.exists() and (partial / "state").exists(), "the killed save left no partial folder to ignore"
    assert _steps_on_disk(workdir) == [EVERY], "only the complete checkpoint may look like a step"

    proc = _start(workdir, cache_dir)
    assert _finish(proc, workdir) == 0, _log_tail(workdir)
    assert f"resumed from step {EVERY} " in (workdir.parent / f"{workdir.name}.log").read_text()
    assert not partial.exists()  # the leftover tmp folder was cleaned up, never read
    resumed = _train_lines(workdir)
    for step in range(EVERY + 1, TOTAL_STEPS + 1):
        assert resumed[step]["loss"] == uninterrupted[step]["loss"], step


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, cache_dir):
    workdir = tmp_path / "diverged"
    workdir.mkdir()
    # An absurd learning rate: step 1 is computed on sane params, later steps overflow to inf/NaN.
    proc = _start(workdir, cache_dir, "--config.optim.learning_rate=1e35", "--config.optim.warmup_steps=0",
                  "--config.checkpoint.every_steps=1", "--config.checkpoint.async_save=False")
    rc = _finish(proc, workdir)
    log = _log_tail(workdir)
    assert rc != 0
    assert "NonFiniteLossError" in log and "the training loss is" in log, log
    bad_step = int(log.split("the training loss is")[1].split(" at step ")[1].split(" ")[0])
    assert bad_step >= 2
    # No checkpoint of the bad step (or later); the message points at the last good one.
    steps = _steps_on_disk(workdir)
    assert steps and max(steps) == bad_step - 1, (steps, bad_step)
    assert f"the last good checkpoint is step {bad_step - 1}" in log


def test_metadata_seq_length_mismatch_names_both(tmp_path):
    from electra_jax import config as config_lib
    from electra_jax.data.records import apply_records_metadata

    (tmp_path / "pretrain_data.tfrecord-0-of-1").write_bytes(b"")
    (tmp_path / "metadata.json").write_text(json.dumps({"max_seq_length": 512, "vocab_size": 30522}))
    config = config_lib.load("configs/pretrain.py:tiny", {"data.train_files": str(tmp_path / "*.tfrecord*")})
    with pytest.raises(ValueError, match=r"max_seq_length = 512 but config.data.max_seq_length = 128"):
        apply_records_metadata(config)


def test_metadata_sets_special_ids_and_vocab(tmp_path):
    from electra_jax import config as config_lib
    from electra_jax.data.records import apply_records_metadata

    (tmp_path / "pretrain_data.tfrecord-0-of-1").write_bytes(b"")
    specials = {"pad_id": 0, "unk_id": 1, "cls_id": 2, "sep_id": 3, "mask_id": 4}
    (tmp_path / "metadata.json").write_text(json.dumps({"max_seq_length": 128, "vocab_size": 8000,
                                                        "special_ids": specials}))
    config = config_lib.load("configs/pretrain.py:tiny", {"data.train_files": str(tmp_path / "*.tfrecord*")})
    config = apply_records_metadata(config)
    assert config.model.vocab_size == 8000 and config.model.padded_vocab_size == 8064
    assert {k: config.data[k] for k in specials} == specials


@pytest.mark.slow
def test_real_records_run_learns_and_writes_outputs(tmp_path, shared_dir, uncased_vocab, cache_dir):
    """Records built from ../shared/data/text by build_data: checkpoints, events, metrics.jsonl, eval improves."""
    text = shared_dir / "data" / "text"
    train_text = ",".join(str(p) for p in sorted((text / "state_union").glob("19[4-7]*.txt")))
    eval_text = str(text / "state_union" / "2006-GWBush.txt")
    env = _env(cache_dir)
    for name, source in (("train", train_text), ("eval", eval_text)):
        proc = subprocess.run([sys.executable, "-m", "electra_jax.build_data", f"--input={source}",
                               f"--vocab={uncased_vocab}", f"--output_dir={tmp_path / name}",
                               "--max_seq_length=64", "--num_shards=2", "--num_processes=1"],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    workdir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "electra_jax.pretrain", "--config=configs/pretrain.py:tiny", f"--workdir={workdir}",
         f"--config.data.train_files={tmp_path / 'train'}/*.tfrecord*",
         f"--config.data.eval_files={tmp_path / 'eval'}/*.tfrecord*", "--config.data.max_seq_length=64",
         "--config.train.batch_size=16", "--config.train.steps=80", "--config.optim.learning_rate=2e-3",
         "--config.optim.warmup_steps=10", "--config.train.eval_every=40", "--config.train.eval_steps=4",
         "--config.train.log_every=10", "--config.checkpoint.every_steps=40", "--config.train.progress=log"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(ln) for ln in (workdir / "metrics.jsonl").read_text().splitlines()]
    evals = {ln["step"]: ln for ln in lines if ln["split"] == "eval"}
    assert sorted(evals) == [0, 40, 80]
    first, last = evals[0], evals[80]
    assert last["eval_loss"] < first["eval_loss"] - 5.0
    assert last["eval_mlm_accuracy"] > first["eval_mlm_accuracy"] + 0.03
    train = [ln for ln in lines if ln["split"] == "train"]
    assert {"step", "loss", "mlm_loss", "disc_loss", "mlm_accuracy", "disc_accuracy", "disc_auc", "learning_rate",
            "tokens_per_sec", "mfu"} <= set(train[-1])
    assert _steps_on_disk(workdir) == [40, 80]
    assert any(p.name.startswith("events.out.tfevents") for p in workdir.iterdir())
