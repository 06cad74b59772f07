"""A real multi-process run: two processes on this machine (jax.distributed on localhost, gloo CPU
collectives), four CPU devices each, per-host input rows, a checkpoint written and restored by both hosts.

Checks: the two-process run matches one process with eight devices step for step, and a two-process run
resumed from the two-process checkpoint ends exactly where the uninterrupted one did, and one process restores
that checkpoint onto another mesh (8-way dp instead of 2 x 4 fsdp) and continues with the same losses.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import mini
import pytest

REPO = Path(__file__).resolve().parents[1]
STEPS = 6
FLAGS = [
    "--config=configs/pretrain.py:tiny", *mini.flags(mini.MODEL), "--config.data.synthetic=True",
    "--config.data.max_seq_length=16", "--config.train.batch_size=16",
    "--config.optim.warmup_steps=0", "--config.optim.learning_rate=1e-3",
    "--config.train.log_every=1", "--config.train.eval_every=0", "--config.train.progress=log",
    f"--config.train.steps={STEPS}", "--config.checkpoint.every_steps=3",
    "--config.mesh.data=2", "--config.mesh.fsdp=4", "--config.sharding.rules=fsdp",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(cache: Path, devices: int, **extra) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               JAX_COMPILATION_CACHE_DIR=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    env.update(extra)
    return env


def _run_two_processes(workdir: Path, cache: Path) -> None:
    port = _free_port()
    procs = []
    for pid in range(2):
        env = _env(cache, 4, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
                   JAX_PROCESS_ID=str(pid))
        log = open(workdir.parent / f"{workdir.name}.{pid}.log", "a")
        procs.append(subprocess.Popen([sys.executable, "-m", "electra_jax.pretrain", f"--workdir={workdir}",
                                       "--multihost", *FLAGS], cwd=REPO, env=env, stdout=log,
                                      stderr=subprocess.STDOUT))
    try:
        rcs = [p.wait(timeout=900) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    logs = [(workdir.parent / f"{workdir.name}.{i}.log").read_text()[-3000:] for i in range(2)]
    assert rcs == [0, 0], logs


def _losses(workdir: Path) -> dict[int, float]:
    lines = [json.loads(ln) for ln in (workdir / "metrics.jsonl").read_text().splitlines()]
    return {ln["step"]: ln["loss"] for ln in lines if ln.get("split") == "train"}


@pytest.mark.slow
def test_two_processes_match_one_process_and_resume(tmp_path):
    cache = tmp_path / "cache"
    single = tmp_path / "single"
    proc = subprocess.run([sys.executable, "-m", "electra_jax.pretrain", f"--workdir={single}", *FLAGS], cwd=REPO,
                          env=_env(cache, 8), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reference = _losses(single)
    assert sorted(reference) == list(range(1, STEPS + 1))

    multi = tmp_path / "multi"
    _run_two_processes(multi, cache)
    got = _losses(multi)  # written by process 0 only
    assert sorted(got) == sorted(reference)
    for step in reference:
        assert got[step] == pytest.approx(reference[step], rel=1e-5), step
    saved = json.loads((multi / "checkpoints" / str(STEPS) / "data" / "metadata").read_text())
    assert sorted(saved) == ["0", "1"]  # one input position per host

    # Resume both hosts from the step-3 checkpoint: drop the final one and rerun the same command.
    resumed = tmp_path / "resumed"
    shutil.copytree(multi / "checkpoints", resumed / "checkpoints")
    shutil.rmtree(resumed / "checkpoints" / str(STEPS))
    _run_two_processes(resumed, cache)
    again = _losses(resumed)
    assert sorted(again) == list(range(4, STEPS + 1))
    for step in again:
        assert again[step] == got[step], step

    # The same two-host checkpoint restored by one process on another mesh and rule preset (8 x dp).
    other_mesh = tmp_path / "other_mesh"
    shutil.copytree(multi / "checkpoints", other_mesh / "checkpoints")
    shutil.rmtree(other_mesh / "checkpoints" / str(STEPS))
    proc = subprocess.run([sys.executable, "-m", "electra_jax.pretrain", f"--workdir={other_mesh}", *FLAGS,
                           "--config.mesh.data=8", "--config.mesh.fsdp=1", "--config.sharding.rules=dp"],
                          cwd=REPO, env=_env(cache, 8), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    moved = _losses(other_mesh)
    assert sorted(moved) == list(range(4, STEPS + 1))
    for step in moved:
        assert moved[step] == pytest.approx(got[step], rel=1e-5), step
