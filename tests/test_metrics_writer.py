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
