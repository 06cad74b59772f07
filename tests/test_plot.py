"""plot: the PNGs exist and are valid, and the curves drawn are exactly the numbers in a hand-written metrics.jsonl."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from electra_jax import plot  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# A run logged at steps 100, 200, 300, preempted, resumed from the step-200 checkpoint (so step 300 is
# logged twice: the later values win), with evaluations at steps 200 and 400 and one NaN.
TRAIN = {
    100: dict(loss=30.0, mlm_loss=9.0, disc_loss=0.42, mlm_accuracy=0.05, disc_accuracy=0.80, disc_auc=0.55,
              learning_rate=5e-5, tokens_per_sec=1000.0, mfu=0.30),
    200: dict(loss=25.0, mlm_loss=8.0, disc_loss=0.34, mlm_accuracy=0.10, disc_accuracy=0.85, disc_auc=0.60,
              learning_rate=1e-4, tokens_per_sec=1100.0, mfu=0.31),
    300: dict(loss=99.0, mlm_loss=99.0, disc_loss=9.9, mlm_accuracy=0.0, disc_accuracy=0.0, disc_auc=0.0,
              learning_rate=1.5e-4, tokens_per_sec=1.0, mfu=0.0),  # superseded after the resume
}
TRAIN_RESUMED = {
    300: dict(loss=20.0, mlm_loss=7.0, disc_loss=0.26, mlm_accuracy=0.15, disc_accuracy=0.88, disc_auc=0.70,
              learning_rate=1.5e-4, tokens_per_sec=1200.0, mfu="nan"),
    400: dict(loss=18.0, mlm_loss=6.5, disc_loss=0.23, mlm_accuracy=0.18, disc_accuracy=0.90, disc_auc=0.75,
              learning_rate=2e-4, tokens_per_sec=1250.0, mfu=0.33),
}
EVAL = {
    200: dict(eval_loss=26.0, eval_mlm_loss=8.2, eval_disc_loss=0.36, eval_mlm_accuracy=0.09,
              eval_disc_accuracy=0.84, eval_disc_auc=0.58),
    400: dict(eval_loss=19.0, eval_mlm_loss=6.7, eval_disc_loss=0.25, eval_mlm_accuracy=0.17,
              eval_disc_accuracy=0.89, eval_disc_auc=0.74),
}


def _lines() -> list[str]:
    out = [json.dumps(dict(step=s, split="train", **m)) for s, m in TRAIN.items()]
    out.insert(2, json.dumps(dict(step=200, split="eval", **EVAL[200])))
    out += [json.dumps(dict(step=s, split="train", **m)) for s, m in TRAIN_RESUMED.items()]
    out.append(json.dumps(dict(step=400, split="eval", **EVAL[400])))
    out.append('{"step": 500, "split": "tra')  # torn by a kill mid-write
    return out


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "metrics.jsonl").write_text("\n".join(_lines()) + "\n")
    return tmp_path


def _expected(key: str) -> tuple[list[int], list[float]]:
    if key.startswith("eval_"):
        return sorted(EVAL), [EVAL[s][key] for s in sorted(EVAL)]
    merged = {**TRAIN, **TRAIN_RESUMED}
    steps = [s for s in sorted(merged) if merged[s][key] != "nan"]
    return steps, [merged[s][key] for s in steps]


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_figures_hold_the_jsonl_values(workdir: Path):
    out = workdir / "plots"
    figures = plot.plot_workdir(str(workdir), str(out))
    assert sorted(figures) == sorted(plot.FIGURES)
    for name, (_, panels) in plot.FIGURES.items():
        width, height = _png_size(out / f"{name}.png")
        assert width > 100 and height > 100
        axes = figures[name].axes
        assert len(axes) == len(panels)
        for ax, (title, key) in zip(axes, panels):
            assert ax.get_title() == title
            drawn = {line.get_linestyle(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.lines}
            assert drawn["-"] == _expected(key)
            if "eval_" + key in EVAL[200]:
                assert drawn["--"] == _expected("eval_" + key)  # eval dashed
            else:
                assert "--" not in drawn


def test_missing_metrics_skip_their_figure(tmp_path: Path):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 3.0}) + "\n")
    figures = plot.plot_workdir(str(tmp_path), str(tmp_path / "p"))
    assert list(figures) == ["losses"] and len(figures["losses"].axes) == 1
    assert sorted(os.listdir(tmp_path / "p")) == ["losses.png"]


def test_errors(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="metrics.jsonl does not exist"):
        plot.plot_workdir(str(tmp_path))
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(ValueError, match="metrics.jsonl:2"):
        plot.plot_workdir(str(tmp_path))


def test_cli(workdir: Path):
    result = subprocess.run([sys.executable, "-m", "electra_jax.plot", f"--workdir={workdir}"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    written = result.stdout.split()
    assert sorted(written) == sorted(str(workdir / "plots" / f"{n}.png") for n in plot.FIGURES)
    for path in written:
        _png_size(Path(path))
