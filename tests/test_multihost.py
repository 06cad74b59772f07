"""A real multi-process run: two processes on this machine (jax.distributed on localhost, gloo CPU
collectives), four CPU devices each, per-host input rows, a checkpoint written and restored by both hosts.

Checks: the two-process run matches one process with eight devices step for step, and a two-process run
resumed from the two-process checkpoint ends exactly where the uninterrupted one did, and one process restores
that checkpoint onto another mesh (8-way dp instead of 2 x 4 fsdp) and continues with the same losses (slow);
and a checkpoint read that fails on one host only makes both fall back to the older step together (fast).
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


def _two_process_restore(tmp_path: Path, mode: str) -> list[dict]:
    """Runs tests/multihost_restore_worker.py as two processes; returns their RESULT dicts, process 0 first."""
    port, procs, logs = _free_port(), [], []
    for pid in range(2):
        logs.append(tmp_path / f"{mode}.{pid}.log")
        procs.append(subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "multihost_restore_worker.py"), str(port), str(pid),
             str(tmp_path / mode / "checkpoints"), mode],
            cwd=REPO, env=_env(tmp_path / "cache", 2, PYTHONPATH=str(REPO)), stdout=open(logs[-1], "w"),
            stderr=subprocess.STDOUT))
    try:
        for p in procs:  # a host left waiting for the other fails here instead of hanging the suite
            p.wait(timeout=120)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    texts = [log.read_text() for log in logs]
    results = [json.loads(line[len("RESULT "):]) for text in texts for line in text.splitlines()
               if line.startswith("RESULT ")]
    assert [r["pid"] for r in results] == [0, 1], [text[-3000:] for text in texts]
    return results


def _expected_shards(step: int, pid: int) -> list:
    # 8 rows over 4 devices (2 per process): device k holds rows 2k, 2k+1 of arange(32).reshape(8, 4) + 100*step.
    full = [[100 * step + 4 * r + c for c in range(4)] for r in range(8)]
    return [[[2 * k, 2 * k + 2, 1], full[2 * k:2 * k + 2]] for k in (2 * pid, 2 * pid + 1)]


def test_a_read_that_fails_on_one_host_makes_both_fall_back_together(tmp_path):
    """Before: the failing host skipped orbax's end-of-restore barrier, its agreement all-gather met the other
    host's barrier (name mismatch), so it called the intact step 1 unreadable and stopped while the other hung."""
    intact = _two_process_restore(tmp_path, "none")
    for pid, r in enumerate(intact):
        assert (r["step"], r["data"], r["steps_left"]) == (2, {"0": {"pos": 2}, "1": {"pos": 2}}, [1, 2]), r
        assert r["shards"] == _expected_shards(2, pid)

    fell_back = _two_process_restore(tmp_path, "latest")
    for pid, r in enumerate(fell_back):
        assert "error" not in r, r
        assert (r["step"], r["data"], r["steps_left"]) == (1, {"0": {"pos": 1}, "1": {"pos": 1}}, [1]), r
        assert r["shards"] == _expected_shards(1, pid)
    assert (tmp_path / "latest" / "quarantine" / "2-corrupt" / "state").is_dir()  # moved aside, not deleted
    log0, log1 = ((tmp_path / f"latest.{pid}.log").read_text() for pid in range(2))
    assert "CHECKPOINT STEP 2" in log0 and "unreadable on another host" in log0
    assert "injected read error on host 1" in log1 and "TO STEP 1" in log1

    direct = _two_process_restore(tmp_path, "direct")  # finetune's resume: no fallback, but no host goes on
    assert direct[0]["error"] == "CorruptCheckpointError" and "another host" in direct[0]["message"], direct
    assert direct[1]["error"] == "OSError" and "injected read error" in direct[1]["message"], direct
