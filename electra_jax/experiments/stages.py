"""Bookkeeping of the compute-efficiency experiment: stage wall times that survive restarts, files written whole,
the package's command-line tools run as subprocesses, and the machine description."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from absl import logging

from electra_jax.config import REPO_ROOT


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_text(path: Path, text: str) -> None:
    """Writes a file through a temporary one, so a reader (another process, or a kill) never sees half a file."""
    tmp = _temporary(path)
    tmp.write_text(text)
    tmp.replace(path)


def copy_file(source: Path, path: Path) -> None:
    """Copies a file through a temporary one, as write_text writes."""
    tmp = _temporary(path)
    shutil.copyfile(source, tmp)
    tmp.replace(path)


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, default=str))


class Stages:
    """DIR/stages.json: {stage: {"seconds": wall seconds (summed over restarts), "done": bool}}.

    Several processes record stages (the fine-tuning workers too): every record re-reads the file, so entries of
    other processes are kept.
    """

    def __init__(self, path: Path):
        self.path = path

    @property
    def data(self) -> dict[str, dict[str, Any]]:
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def done(self, name: str) -> bool:
        return bool(self.data.get(name, {}).get("done"))

    def seconds(self, name: str) -> float:
        return float(self.data.get(name, {}).get("seconds", 0.0))

    def record(self, name: str, seconds: float, done: bool = True, **extra) -> None:
        with open(self.path.with_name(self.path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # read, update and write as one step among processes
            data = self.data
            entry = data.setdefault(name, {"seconds": 0.0, "done": False})
            entry["seconds"] = round(float(entry.get("seconds", 0.0)) + seconds, 2)
            entry["done"] = done
            entry.update(extra)
            write_json(self.path, data)


class Timer:
    """Times one stage into Stages (also when it fails: done=False, and the seconds still count)."""

    def __init__(self, stages: Stages, name: str, **extra):
        self.stages, self.name, self.extra = stages, name, extra

    def __enter__(self):
        self.start = time.time()
        logging.info("stage %s: starting", self.name)
        return self

    def __exit__(self, exc_type, exc, tb):
        elapsed = time.time() - self.start
        self.stages.record(self.name, elapsed, done=exc_type is None, **self.extra)
        logging.info("stage %s: %s after %.1f s (%.1f s in total)", self.name,
                     "done" if exc_type is None else f"stopped by {exc_type.__name__}", elapsed,
                     self.stages.seconds(self.name))
        return False


def start_tool(module: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Starts one of the package's command-line tools in its own process (build_vocab and build_data each define
    absl flags at import, so they run exactly as a user would run them)."""
    cmd = [sys.executable, "-m", module, *args]
    logging.info("running %s", " ".join(cmd))
    proc = subprocess.Popen(cmd, cwd=str(REPO_ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    proc.module = module  # type: ignore[attr-defined]
    return proc


def finish_tool(proc: subprocess.Popen) -> None:
    output, _ = proc.communicate()
    module = getattr(proc, "module", proc.args)
    if proc.returncode:
        raise RuntimeError(f"{module} failed with exit code {proc.returncode}:\n{output[-4000:]}")
    logging.info("%s: %s", module, output.strip().splitlines()[-1] if output.strip() else "done")


def run_tool(module: str, *args: str) -> None:
    finish_tool(start_tool(module, *args))


def machine() -> str:
    import platform

    import jax

    device = jax.devices()[0]
    return (f"{platform.machine()} {os.cpu_count()} CPUs, JAX {jax.__version__} on {device.platform} "
            f"({device.device_kind})")


def configure_jax_cache(output_dir: Path) -> None:
    """A persistent compilation cache: the fine-tuning programs repeat for every checkpoint of one task."""
    import jax

    try:
        jax.config.update("jax_compilation_cache_dir", str(output_dir / "jax_cache"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    except Exception as e:  # an older or newer JAX without these options: correctness does not depend on it
        logging.warning("no persistent compilation cache (%s)", e)
