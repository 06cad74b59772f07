"""Tiny pre-training runs of the real CLI for the end-to-end tests (test_pretrain.py, test_reliability.py).

Runs are subprocesses of `pretrain.main` on synthetic data with TensorFlow blocked, so they also prove that
synthetic pre-training needs no TensorFlow. One persistent compilation cache and one uninterrupted reference
run serve the whole test session (the fixtures are session-scoped), which keeps the repeated compiles cheap.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mini
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

# Small enough to compile in seconds; steps slow enough (tens of ms) for a signal to land mid-run.
SMALL_FLAGS = ["--config=configs/pretrain.py:tiny", *mini.flags(mini.overrides(**{
    "data.synthetic": True, "data.max_seq_length": 32, "train.batch_size": 8, "optim.warmup_steps": 10,
    "optim.learning_rate": 1e-3, "train.log_every": 1, "train.eval_every": 0, "train.progress": "log"}))]
TOTAL_STEPS = 60
EVERY = 4
PREEMPTED = 42  # electra_jax.cli.EXIT_PREEMPTED

# Runs pretrain's main with TensorFlow made unimportable, through electra_jax.cli like `python -m` does.
# Test-only fault hooks, all off unless their environment variable is set:
#   ELECTRA_TEST_BLOCK_FINALIZE_STEP=N   orbax hangs before committing step N's checkpoint (files written);
#   ELECTRA_TEST_SLOW_FINALIZE=N:SECONDS  it waits SECONDS before committing step N (a save in progress);
#   ELECTRA_TEST_MARKER=PATH              where the two hooks above write the temporary folder's path;
#   ELECTRA_TEST_STEP_DELAY=SECONDS       every training step takes at least this long;
#   ELECTRA_TEST_ENOSPC_STEP=N            writing step N's JSON items fails with "No space left on device".
RUNNER = textwrap.dedent(r"""
    import errno, os, sys, time

    # As on a machine without TensorFlow: `import tensorflow` fails and find_spec reports it absent.
    sys.modules["tensorflow"] = None

    hold = None
    if os.environ.get("ELECTRA_TEST_BLOCK_FINALIZE_STEP"):
        hold = (os.environ["ELECTRA_TEST_BLOCK_FINALIZE_STEP"], 3600.0)
    elif os.environ.get("ELECTRA_TEST_SLOW_FINALIZE"):
        step, seconds = os.environ["ELECTRA_TEST_SLOW_FINALIZE"].split(":")
        hold = (step, float(seconds))
    if hold:
        from orbax.checkpoint._src.path import atomicity
        original_finalize = atomicity.AtomicRenameTemporaryPath.finalize

        async def finalize(self, *args, **kwargs):
            if self.get_final().name == hold[0]:
                open(os.environ["ELECTRA_TEST_MARKER"], "w").write(str(self.get()))
                time.sleep(hold[1])  # files written, not yet committed
            return await original_finalize(self, *args, **kwargs)
        atomicity.AtomicRenameTemporaryPath.finalize = finalize

    if os.environ.get("ELECTRA_TEST_STEP_DELAY"):
        from electra_jax.data import pipeline
        delay, original_batch = float(os.environ["ELECTRA_TEST_STEP_DELAY"]), pipeline.to_global_batch

        def slow_batch(*args, **kwargs):
            time.sleep(delay)
            return original_batch(*args, **kwargs)
        pipeline.to_global_batch = slow_batch

    if os.environ.get("ELECTRA_TEST_ENOSPC_STEP"):
        from orbax.checkpoint._src.handlers import json_checkpoint_handler
        full = f"/{os.environ['ELECTRA_TEST_ENOSPC_STEP']}.orbax-checkpoint-tmp"
        original_save = json_checkpoint_handler.JsonCheckpointHandler._save_fn

        async def save_fn(self, x, directory):
            if full in str(directory):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(directory / self._filename))
            return await original_save(self, x, directory)
        json_checkpoint_handler.JsonCheckpointHandler._save_fn = save_fn

    from electra_jax import cli, pretrain
    pretrain.define_flags()
    sys.argv = ["pretrain"] + sys.argv[1:]
    cli.run(pretrain.main)
""")


def env(cache_dir: Path, **extra) -> dict:
    result = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(cache_dir),
                  JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    result.pop("XLA_FLAGS", None)
    result.pop("ELECTRA_JAX_TRACEBACK", None)
    result.update(extra)
    return result


def command(workdir: Path, *flags: str) -> list[str]:
    return [sys.executable, "-c", RUNNER, f"--workdir={workdir}", *SMALL_FLAGS,
            f"--config.train.steps={TOTAL_STEPS}", f"--config.checkpoint.every_steps={EVERY}", *flags]


def start(workdir: Path, cache_dir: Path, *flags: str, prefix: tuple[str, ...] = (), **extra_env) -> subprocess.Popen:
    """Starts a run (flags after SMALL_FLAGS override them); its output is appended to WORKDIR.log."""
    log = open(log_path(workdir), "a")
    return subprocess.Popen([*prefix, *command(workdir, *flags)], cwd=REPO, env=env(cache_dir, **extra_env),
                            stdout=log, stderr=subprocess.STDOUT)


def finish(proc: subprocess.Popen, timeout: float = 600) -> int:
    return proc.wait(timeout=timeout)


def log_path(workdir: Path) -> Path:
    return workdir.parent / f"{workdir.name}.log"


def log_tail(workdir: Path, chars: int = 4000) -> str:
    path = log_path(workdir)
    return path.read_text()[-chars:] if path.exists() else ""


def error_lines(workdir: Path) -> list[str]:
    """The `pretrain: error: ...` lines of the run's log."""
    return [line for line in log_tail(workdir, 10**7).splitlines() if line.startswith("pretrain: error:")]


def metrics_size(workdir: Path) -> int:
    path = workdir / "metrics.jsonl"
    return path.stat().st_size if path.exists() else 0


def train_lines(workdir: Path, after_bytes: int = 0) -> dict[int, dict]:
    """metrics.jsonl's train lines by step (the last line of a step that was run twice), from byte after_bytes on."""
    path = workdir / "metrics.jsonl"
    if not path.exists():
        return {}
    lines = []
    for text in path.read_bytes()[after_bytes:].decode().splitlines():
        try:
            lines.append(json.loads(text))
        except json.JSONDecodeError:  # a line being written right now, or torn by a SIGKILL
            continue
    return {ln["step"]: ln for ln in lines if ln.get("split") == "train"}


def steps_on_disk(workdir: Path) -> list[int]:
    folder = workdir / "checkpoints"
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.exists() else []


def wait_for_step(workdir: Path, proc: subprocess.Popen, step: int, timeout: float = 600,
                  after_bytes: int = 0) -> None:
    """Waits until the run logged `step` (only lines written after byte after_bytes of metrics.jsonl count)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before step {step}: {log_tail(workdir)}")
        lines = train_lines(workdir, after_bytes)
        if lines and max(lines) >= step:
            return
        time.sleep(0.02)
    raise AssertionError(f"step {step} not reached in {timeout} s")


def wait_for_file(path: Path, proc: subprocess.Popen, workdir: Path, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, log_tail(workdir)
        assert time.time() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def saved_state(workdir: Path, step: int) -> dict[str, np.ndarray]:
    """Every array of checkpoint `step` (params, optimizer state, step, PRNG key) by path, as numpy."""
    from electra_jax import checkpoints

    tree = checkpoints._numpy_restore(workdir / "checkpoints" / str(step) / "state")
    flat = {}

    def walk(node, prefix):
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}/{key}")
        elif isinstance(node, (list, tuple)):
            for i, value in enumerate(node):
                walk(value, f"{prefix}/{i}")
        else:
            flat[prefix] = np.asarray(node)

    walk(tree, "")
    return flat


def assert_same_state(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert got.keys() == want.keys()
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)  # bit for bit


def copy_run(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, symlinks=True)
    return target


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("jax_cache")


@pytest.fixture(scope="session")
def uninterrupted_workdir(tmp_path_factory, cache_dir) -> Path:
    """One complete TOTAL_STEPS run: the reference every interrupted or faulty run is compared against."""
    workdir = tmp_path_factory.mktemp("runs") / "uninterrupted"
    workdir.mkdir()
    rc = finish(start(workdir, cache_dir))
    assert rc == 0, log_tail(workdir)
    assert max(train_lines(workdir)) == TOTAL_STEPS
    return workdir


@pytest.fixture(scope="session")
def uninterrupted(uninterrupted_workdir) -> dict[int, dict]:
    return train_lines(uninterrupted_workdir)
