"""Metrics output of a training run: DIR/metrics.jsonl, TensorBoard events, and a progress display.

Only process 0 writes (every host computes the same global metrics). `metrics.jsonl` holds one JSON object
per logged step; eval lines carry "split": "eval" and keys prefixed with "eval_". The progress display is a
tqdm bar on terminals and notebooks and plain log lines otherwise (config.train.progress: auto|bar|log).
"""

from __future__ import annotations

import json
import math
import tempfile
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from absl import logging

T = TypeVar("T")

# bf16 dense matmul peaks per chip (vendor figures); MFU is null on devices not listed here (e.g. CPUs).
PEAK_FLOPS_BY_DEVICE_KIND = {
    "tpu v4": 275e12,
    "tpu v5 lite": 197e12,
    "tpu v5e": 197e12,
    "tpu v5p": 459e12,
    "tpu v5": 459e12,
    "tpu v6 lite": 918e12,
    "tpu v6e": 918e12,
    "nvidia h100": 989e12,
    "nvidia h200": 989e12,
    "nvidia a100": 312e12,
    "nvidia l4": 121e12,
}


def peak_flops_per_device(device_kind: str) -> float | None:
    """The table's peak for a `jax.Device.device_kind` (longest matching prefix), or None when unknown."""
    kind = device_kind.lower()
    matches = [k for k in PEAK_FLOPS_BY_DEVICE_KIND if kind.startswith(k)]
    return PEAK_FLOPS_BY_DEVICE_KIND[max(matches, key=len)] if matches else None


def _clean(value: Any) -> Any:
    """JSON-safe floats (NaN/inf become strings JSON can hold)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _drop_torn_last_line(path: str) -> None:
    """Cuts a partial last line (a run killed mid-write) so that the resumed run's lines start on their own."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        f.truncate(f.read().rfind(b"\n") + 1)
    logging.warning("%s ended in a partial line (a run killed while writing it); it was dropped", path)


def remote_path(path: str):
    """An etils epath for gs:// and other remote workdirs (a seam the tests replace)."""
    from etils import epath

    return epath.Path(path)


class MetricsWriter:
    """metrics.jsonl + TensorBoard under `workdir`, on process 0 only (a no-op elsewhere).

    A remote workdir (gs://..., a Cloud TPU run) cannot be appended to, so the files are written to a local
    folder and copied up at most every `upload_every_s` seconds and on close; a resumed run first fetches the
    metrics.jsonl its predecessor left.
    """

    def __init__(self, workdir: str, enabled: bool = True, upload_every_s: float = 60.0):
        self.enabled = enabled
        self._jsonl = None
        self._tb = None
        self._remote = None
        self._upload_every_s = upload_every_s
        self._last_upload = time.time()
        if not enabled:
            return
        local_dir = workdir
        if "://" in workdir:
            self._remote = remote_path(workdir)
            local_dir = tempfile.mkdtemp(prefix="electra_jax_metrics_")
            previous = self._remote / "metrics.jsonl"
            if previous.exists():
                with open(os.path.join(local_dir, "metrics.jsonl"), "wb") as f:
                    f.write(previous.read_bytes())
        os.makedirs(local_dir, exist_ok=True)
        self._local_dir = local_dir
        _drop_torn_last_line(os.path.join(local_dir, "metrics.jsonl"))
        self._jsonl = open(os.path.join(local_dir, "metrics.jsonl"), "a", buffering=1)
        try:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(logdir=local_dir, flush_secs=30)
        except ImportError:  # TensorBoard events are optional; metrics.jsonl is always written
            logging.warning("tensorboardX is not installed: no TensorBoard events (metrics.jsonl is still written)")

    def write(self, step: int, metrics: dict[str, float], split: str = "train") -> None:
        if not self.enabled:
            return
        prefix = "" if split == "train" else f"{split}_"
        record = {"step": int(step), "split": split}
        record.update({f"{prefix}{k}": _clean(float(v)) if v is not None else None for k, v in metrics.items()})
        self._jsonl.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for key, value in metrics.items():
                if value is not None and math.isfinite(float(value)):
                    self._tb.add_scalar(f"{split}/{key}", float(value), int(step))
        if self._remote is not None and time.time() - self._last_upload >= self._upload_every_s:
            self.flush()

    def _upload(self) -> None:
        self._remote.mkdir(parents=True, exist_ok=True)
        for name in sorted(os.listdir(self._local_dir)):
            local = os.path.join(self._local_dir, name)
            if os.path.isfile(local):
                with open(local, "rb") as f:
                    (self._remote / name).write_bytes(f.read())
        self._last_upload = time.time()

    def flush(self) -> None:
        if self._jsonl is not None:
            self._jsonl.flush()
        if self._tb is not None:
            self._tb.flush()
        if self._remote is not None and self._jsonl is not None:
            self._upload()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._jsonl is not None:
            self._jsonl.close()
            if self._remote is not None:
                self._upload()
            self._jsonl = None


def _is_interactive() -> bool:
    if "ipykernel" in sys.modules:
        return True
    return sys.stderr.isatty()


class Progress:
    """steps/s, tokens/s, MFU and ETA: a tqdm bar (terminals, notebooks) or periodic log lines."""

    def __init__(self, mode: str, start_step: int, total_steps: int, log_every: int, enabled: bool = True):
        if mode not in ("auto", "bar", "log"):
            raise ValueError(f"config.train.progress = {mode!r}; choose auto, bar or log")
        self.enabled = enabled
        self.total = total_steps
        self.log_every = max(1, log_every)
        self.use_bar = enabled and (mode == "bar" or (mode == "auto" and _is_interactive()))
        self._bar = None
        if self.use_bar:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)
        self._last_step = start_step

    def update(self, step: int, rates: dict[str, float | None], loss: float | None) -> None:
        if not self.enabled:
            return
        steps_per_sec = rates.get("steps_per_sec") or 0.0
        eta = (self.total - step) / steps_per_sec if steps_per_sec > 0 else float("nan")
        mfu = rates.get("mfu")
        if self._bar is not None:
            self._bar.update(step - self._last_step)
            postfix = {"loss": f"{loss:.3f}" if loss is not None else "-",
                       "tok/s": f"{rates.get('tokens_per_sec', 0.0):.0f}"}
            if mfu is not None:
                postfix["mfu"] = f"{100 * mfu:.1f}%"
            self._bar.set_postfix(postfix, refresh=False)
        elif step % self.log_every == 0 or step == self.total:
            logging.info("step %d/%d  loss %s  %.2f steps/s  %.0f tokens/s  MFU %s  ETA %s", step, self.total,
                         f"{loss:.4f}" if loss is not None else "-", steps_per_sec,
                         rates.get("tokens_per_sec", 0.0), f"{100 * mfu:.1f}%" if mfu is not None else "n/a",
                         _format_eta(eta))
        self._last_step = step

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def with_progress(items: Iterable[T], total: int, mode: str, what: str, enabled: bool = True,
                  log_every_s: float = 30.0) -> Iterator[T]:
    """Yields `items` (`total` of them), showing how far a long pass has come: a tqdm bar that goes away when it is
    done (mode 'bar', or 'auto' in a terminal or notebook) or, in 'log' mode, a line at most every `log_every_s`
    seconds with the count and an ETA (a pass shorter than that logs nothing)."""
    if not enabled or mode not in ("auto", "bar", "log"):
        yield from items
        return
    if mode == "bar" or (mode == "auto" and _is_interactive()):
        from tqdm.auto import tqdm

        with tqdm(items, total=total, desc=what, unit="batch", leave=False, dynamic_ncols=True) as bar:
            yield from bar
        return
    start = last = time.time()
    for done, item in enumerate(items, 1):
        yield item
        now = time.time()
        if now - last >= log_every_s and done < total:
            logging.info("%s: %d/%d batches, %.0f s, ETA %s", what, done, total, now - start,
                         _format_eta((total - done) * (now - start) / done))
            last = now


def _format_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    return time.strftime("%H:%M:%S", time.gmtime(seconds)) if seconds < 86400 else f"{seconds / 86400:.1f}d"
