"""Training curves from a run's metrics.jsonl, as PNG files.

    python -m electra_jax.plot --workdir=workdirs/small [--output=workdirs/small/plots]

writes losses.png (total, generator MLM and discriminator loss), mlm_accuracy.png, discriminator.png
(accuracy and AUC), learning_rate.png and throughput.png (tokens/s and MFU). Evaluation curves are dashed
in the colour of their training curve. A run that resumed after preemption logs some steps twice; the
later line wins. Works in notebooks too: `figures = plot.plot_workdir("workdirs/small")`.

matplotlib is imported only when plotting; figures render with Agg, so no display is needed.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

# file stem -> (title, [(panel title, metric key), ...]); eval curves read "eval_" + key.
FIGURES: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "losses": ("Losses", [("total loss (MLM + disc_weight x disc)", "loss"), ("generator MLM loss", "mlm_loss"),
                          ("discriminator loss", "disc_loss")]),
    "mlm_accuracy": ("Generator", [("MLM accuracy", "mlm_accuracy")]),
    "discriminator": ("Discriminator", [("accuracy", "disc_accuracy"), ("AUC", "disc_auc")]),
    "learning_rate": ("Learning rate", [("learning rate", "learning_rate")]),
    "throughput": ("Throughput", [("tokens / second", "tokens_per_sec"), ("MFU", "mfu")]),
}
EVAL_PREFIX = "eval_"

Curve = tuple[list[int], list[float]]


def _open(path: str):
    if path.startswith("gs://"):  # a TPU run's workdir; only then is TensorFlow's file system needed
        import tensorflow as tf

        return tf.io.gfile.GFile(path, "r")
    return open(path)


def read_metrics(path: str) -> list[dict[str, Any]]:
    """The JSON objects of a metrics.jsonl, skipping a torn last line (a run killed mid-write)."""
    records = []
    with _open(path) as f:
        lines = f.read().splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise ValueError(f"{path}:{number} is not a JSON object: {line[:80]!r}") from None
    return records


def _number(value: Any) -> float | None:
    try:
        value = float(value)  # metrics_writer stores non-finite floats as the strings "nan" / "inf"
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def curve(records: Iterable[dict[str, Any]], key: str) -> Curve:
    """(steps, values) of one metric, sorted by step, the last record winning for a repeated step."""
    by_step: dict[int, float] = {}
    for record in records:
        if key in record and "step" in record:
            value = _number(record[key])
            if value is None:
                by_step.pop(int(record["step"]), None)
            else:
                by_step[int(record["step"])] = value
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps]


def plot_records(records: Sequence[dict[str, Any]], output_dir: str | None = None, dpi: int = 100) -> dict[str, Any]:
    """Draws every figure that has data; writes `output_dir/NAME.png` when given. Returns {NAME: Figure}."""
    # Figure objects, not pyplot: no display or global figure registry is involved (PNGs render with Agg),
    # and a notebook shows a returned Figure as it is.
    from matplotlib.figure import Figure

    figures = {}
    for name, (title, panels) in FIGURES.items():
        data = [(panel, key, curve(records, key), curve(records, EVAL_PREFIX + key)) for panel, key in panels]
        data = [d for d in data if d[2][0] or d[3][0]]
        if not data:
            continue
        fig = Figure(figsize=(5 * len(data), 3.6))
        axes = fig.subplots(1, len(data), squeeze=False)
        for ax, (panel, key, train, evaluation) in zip(axes[0], data):
            if train[0]:
                (line,) = ax.plot(*train, label="train", linestyle="-")
                color = line.get_color()
            else:
                color = None
            if evaluation[0]:
                ax.plot(*evaluation, label="eval", linestyle="--", marker="o", markersize=3, color=color)
            ax.set_title(panel)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            if key == "learning_rate":
                ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
            if evaluation[0]:
                ax.legend()
        fig.suptitle(title)
        fig.tight_layout()
        figures[name] = fig
        if output_dir is not None:
            os.makedirs(output_dir, exist_ok=True)
            fig.savefig(os.path.join(output_dir, f"{name}.png"), dpi=dpi)
    return figures


def plot_workdir(workdir: str, output_dir: str | None = None) -> dict[str, Any]:
    """Reads WORKDIR/metrics.jsonl and draws it (into `output_dir` when given)."""
    path = os.path.join(workdir, "metrics.jsonl") if not workdir.endswith(".jsonl") else workdir
    if not path.startswith("gs://") and not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist: give --workdir=the folder a pre-training run writes into")
    records = read_metrics(path)
    if not records:
        raise ValueError(f"{path} holds no metrics yet (the first line appears after config.train.log_every steps)")
    return plot_records(records, output_dir)


def main(argv: Sequence[str]) -> None:
    from absl import flags

    del argv
    f = flags.FLAGS
    # A gs:// workdir (a TPU run) gets its plots in ./plots here: matplotlib writes local files.
    output = f.output or ("plots" if f.workdir.startswith("gs://") else os.path.join(f.workdir, "plots"))
    if output.startswith("gs://"):
        raise SystemExit("--output must be a local folder (matplotlib writes local files); copy the PNGs up after")
    figures = plot_workdir(f.workdir, output)
    for name in figures:
        print(os.path.join(output, f"{name}.png"))


def define_flags() -> None:
    """Defines this tool's flags (only when it runs as a program, so every tool imports side by side)."""
    from absl import flags

    flags.DEFINE_string("workdir", None, "The pre-training workdir holding metrics.jsonl (or the .jsonl itself).",
                        required=True)
    flags.DEFINE_string("output", None, "Folder for the PNG files (default: WORKDIR/plots).")


if __name__ == "__main__":
    from electra_jax import cli

    define_flags()
    cli.run(main)
