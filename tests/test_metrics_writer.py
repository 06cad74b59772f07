"""metrics.jsonl and TensorBoard events reach a remote (gs://) workdir, and a resumed run appends."""

import json
from pathlib import Path

from electra_jax import checkpoints, metrics_writer


def test_remote_workdir_gets_metrics_and_events(tmp_path, monkeypatch):
    bucket = tmp_path / "bucket"
    monkeypatch.setattr(metrics_writer, "remote_path", lambda p: bucket / p.split("://", 1)[1])
    writer = metrics_writer.MetricsWriter("gs://runs/base", upload_every_s=3600)
    writer.write(1, {"loss": 2.0})
    writer.write(2, {"loss": 1.5}, split="eval")
    writer.close()
    remote = bucket / "runs" / "base"
    lines = [json.loads(line) for line in (remote / "metrics.jsonl").read_text().splitlines()]
    assert lines == [{"step": 1, "split": "train", "loss": 2.0}, {"step": 2, "split": "eval", "eval_loss": 1.5}]
    assert any(p.name.startswith("events.out.tfevents") for p in remote.iterdir())

    resumed = metrics_writer.MetricsWriter("gs://runs/base", upload_every_s=0)  # uploads on every write
    resumed.write(3, {"loss": 1.0})
    steps = [json.loads(line)["step"] for line in (remote / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    resumed.close()


def test_checkpoint_paths_keep_remote_schemes():
    assert str(checkpoints.as_path("gs://bucket/run/checkpoints")) == "gs://bucket/run/checkpoints"
    local = checkpoints.as_path("relative/run")
    assert Path(str(local)).is_absolute()


def test_long_passes_show_how_far_they_have_come(capsys, caplog):
    """with_progress yields every item in order; 'bar' shows a tqdm bar of the total (hand count: 0/7 at the start;
    it redraws at most every 0.1 s, so this fast pass shows no later count) and clears it at the end,
    'log' logs the count and an ETA for every item but the last when the interval is 0 (3 lines for 4 items), a
    disabled one (another host) shows nothing."""
    assert list(metrics_writer.with_progress(iter(range(7)), 7, "bar", "dev set (50 rows)")) == list(range(7))
    err = capsys.readouterr().err
    assert "dev set (50 rows)" in err and "0/7" in err and err.endswith(" \r")  # cleared: leave=False
    with caplog.at_level("INFO"):
        assert list(metrics_writer.with_progress(range(4), 4, "log", "eval", log_every_s=0)) == [0, 1, 2, 3]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("eval: ")]
    assert [line.split(",")[0] for line in lines] == ["eval: 1/4 batches", "eval: 2/4 batches", "eval: 3/4 batches"]
    assert all("ETA " in line for line in lines)
    caplog.clear()
    with caplog.at_level("INFO"):
        assert list(metrics_writer.with_progress(range(4), 4, "log", "eval", enabled=False, log_every_s=0)) == [
            0, 1, 2, 3]
        assert list(metrics_writer.with_progress(range(4), 4, "bar", "eval", enabled=False)) == [0, 1, 2, 3]
    assert not caplog.records and not capsys.readouterr().err
