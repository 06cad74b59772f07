"""Numpy records (build_data --format=numpy): the same examples as the TFRecords, a disjoint and complete split over
hosts, exact resume, clear errors, and no TensorFlow anywhere on that path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mini
import numpy as np
import pytest

from electra_jax.build_data import build_pretraining_data
from electra_jax.data.numpy_records import (NumpyRecordsInput, NumpyShardWriter, examples_to_rows, open_shard,
                                            read_all, record_dtype)
from electra_jax.data.pipeline import INCOMPLETE_MARKER

REPO = Path(__file__).resolve().parents[1]
S = 16
NO_TF = "import sys; sys.modules['tensorflow'] = None; sys.modules['tensorflow_datasets'] = None\n"


def _example(index: int) -> tuple[list[int], int]:
    """An example whose tokens 1 and 2 encode its global index, with a B segment when index is odd."""
    length = 4 + index % (S - 4)
    ids = [101, 200 + index // 1000, 200 + index % 1000] + [7] * (length - 4) + [102]
    return ids, (length - 2 if index % 2 else length)


def _index(batch: dict[str, np.ndarray]) -> list[int]:
    ids = batch["input_ids"]
    return [int(i) for i in (ids[:, 1] - 200) * 1000 + (ids[:, 2] - 200)]


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory) -> Path:
    """4 shards of 60..63 examples (246 in all), written with the streaming writer."""
    folder = tmp_path_factory.mktemp("numpy_records")
    dtype = record_dtype(S, 2000)
    start = 0
    for shard in range(4):
        writer = NumpyShardWriter(str(folder / f"pretrain_data-{shard}-of-4.npy"), dtype)
        count = 60 + shard
        for chunk in (range(start, start + 10), range(start + 10, start + count)):  # several appends per shard
            writer.write(examples_to_rows([_example(i) for i in chunk], dtype))
        assert writer.close() == count
        start += count
    return folder


N = 60 + 61 + 62 + 63


def _make(folder: Path, **kw) -> NumpyRecordsInput:
    kw.setdefault("per_host_batch_size", 8)
    kw.setdefault("seq_len", S)
    kw.setdefault("process_index", 0)
    kw.setdefault("process_count", 1)
    kw.setdefault("block_size", 32)
    return NumpyRecordsInput(str(folder / "*.npy"), **kw)


def test_shards_are_plain_npy_files_with_the_written_rows(shard_dir):
    """np.load without memory mapping reads what was written: the header's row count was rewritten in place."""
    rows = np.load(shard_dir / "pretrain_data-1-of-4.npy")
    assert rows.shape == (61,) and rows.dtype.names == ("input_ids", "length", "len_a")
    for row, index in zip(rows, range(60, 121)):
        ids, len_a = _example(index)
        assert list(row["input_ids"][:len(ids)]) == ids and not row["input_ids"][len(ids):].any()
        assert (int(row["length"]), int(row["len_a"])) == (len(ids), len_a)


def test_features_follow_the_tfrecord_layout(shard_dir):
    """input_mask is 1 on the real tokens, segment_ids 1 on `B [SEP]` only: a hand count per example."""
    features = read_all(str(shard_dir / "*.npy"), S)
    assert all(v.dtype == np.int32 and v.shape == (N, S) for v in features.values())
    for index in range(N):
        ids, len_a = _example(index)
        assert features["input_mask"][index].tolist() == [1] * len(ids) + [0] * (S - len(ids))
        assert features["segment_ids"][index].tolist() == [0] * len_a + [1] * (len(ids) - len_a) + [0] * (S - len(ids))


def test_build_data_numpy_shards_hold_the_tfrecord_examples(tmp_path, shared_dir, uncased_vocab):
    """--format=both: every numpy shard equals its TFRecord twin parsed by TensorFlow with the original spec."""
    tf = pytest.importorskip("tensorflow")
    inputs = sorted(str(p) for p in (shared_dir / "data" / "text" / "state_union").glob("196*.txt"))
    meta = build_pretraining_data(vocab=str(uncased_vocab), output_dir=str(tmp_path), max_seq_length=64, input=inputs,
                                  num_shards=3, num_processes=1, seed=4, progress=False, format="both")
    spec = {n: tf.io.FixedLenFeature([64], tf.int64) for n in ("input_ids", "input_mask", "segment_ids")}
    total = 0
    for shard in range(3):
        records = [tf.io.parse_single_example(r, spec)
                   for r in tf.data.TFRecordDataset(str(tmp_path / f"pretrain_data.tfrecord-{shard}-of-3"))]
        rows = read_all(str(tmp_path / f"pretrain_data-{shard}-of-3.npy"), 64)
        assert len(records) == len(rows["input_ids"]) == meta["numpy_shards"][shard]["num_examples"] > 0
        for name in spec:
            np.testing.assert_array_equal(np.stack([r[name].numpy() for r in records]), rows[name], err_msg=name)
        total += len(records)
    assert total == meta["num_examples"] and meta["formats"] == ["tfrecord", "numpy"]


@pytest.mark.parametrize("shuffle", [True, False])
def test_one_epoch_visits_every_example_once(shard_dir, shuffle):
    it = _make(shard_dir, per_host_batch_size=1, repeat=False, shuffle=shuffle)
    seen = [i for batch in it for i in _index(batch)]
    assert sorted(seen) == list(range(N))
    assert (seen != list(range(N))) == shuffle


@pytest.mark.parametrize("hosts", [2, 3, 5])
def test_hosts_are_disjoint_and_complete_in_every_epoch(shard_dir, hosts):
    """Two epochs per host: within each epoch the hosts' examples are disjoint and together all N."""
    per_host = []
    for host in range(hosts):
        it = _make(shard_dir, per_host_batch_size=1, seed=3, process_index=host, process_count=hosts)
        count = it.host_examples
        assert count == len(range(host, N, hosts))
        stream = [_index(next(it))[0] for _ in range(2 * count)]
        per_host.append((stream[:count], stream[count:]))
    for epoch in range(2):
        epoch_sets = [set(h[epoch]) for h in per_host]
        assert all(len(s) == len(h[epoch]) for s, h in zip(epoch_sets, per_host))  # no repeats within a host
        assert sum(len(s) for s in epoch_sets) == N and set().union(*epoch_sets) == set(range(N))
    assert per_host[0][0] != per_host[0][1]  # each epoch has its own order


@pytest.mark.parametrize("stop_at", [0, 1, 7, 30, 31, 32, 45])
def test_restore_gives_the_uninterrupted_stream(shard_dir, stop_at):
    # 246 examples, batch 8: the first epoch ends inside batch 30, the second inside batch 61.
    total = 62
    uninterrupted = _make(shard_dir, seed=11)
    reference = [next(uninterrupted) for _ in range(total)]
    first = _make(shard_dir, seed=11)
    for _ in range(stop_at):
        next(first)
    state = json.loads(json.dumps(first.get_state()))  # survives JSON, as in the checkpoint
    resumed = _make(shard_dir, seed=11)
    resumed.set_state(state)
    for i in range(stop_at, total):
        batch = next(resumed)
        for name in batch:
            np.testing.assert_array_equal(batch[name], reference[i][name], err_msg=f"batch {i}, stop at {stop_at}")


def test_restore_on_a_second_host_and_mismatched_states(shard_dir):
    kw = dict(seed=2, process_count=2, process_index=1, per_host_batch_size=4)
    uninterrupted = _make(shard_dir, **kw)
    reference = [_index(next(uninterrupted)) for _ in range(40)]
    first = _make(shard_dir, **kw)
    for _ in range(25):
        next(first)
    resumed = _make(shard_dir, **kw)
    resumed.set_state(first.get_state())
    assert [_index(next(resumed)) for _ in range(15)] == reference[25:]
    with pytest.raises(ValueError, match="seed=2"):
        _make(shard_dir, seed=3, process_count=2, process_index=1).set_state(first.get_state())
    with pytest.raises(ValueError, match="process_index=1"):
        _make(shard_dir, seed=2, process_count=2, process_index=0).set_state(first.get_state())
    with pytest.raises(ValueError, match="not from numpy records"):
        _make(shard_dir).set_state({"version": 1, "epoch": 0, "records_in_epoch": 3})


def test_wrong_length_tfrecords_and_truncated_shards_are_named(shard_dir, tmp_path):
    with pytest.raises(ValueError) as err:
        _make(shard_dir, seq_len=32)
    assert "pretrain_data-0-of-4.npy" in str(err.value) and "16" in str(err.value) and "32" in str(err.value)
    tfrecord = tmp_path / "pretrain_data.tfrecord-0-of-1"
    tfrecord.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00" + bytes(30))
    with pytest.raises(ValueError, match="config.data.format=tfrecord"):
        NumpyRecordsInput(str(tfrecord), per_host_batch_size=1, seq_len=S, process_index=0, process_count=1)
    truncated = tmp_path / "pretrain_data-0-of-1.npy"
    truncated.write_bytes((shard_dir / "pretrain_data-0-of-4.npy").read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"Corrupt numpy records shard .*pretrain_data-0-of-1\.npy"):
        open_shard(str(truncated), S)


def test_tfrecord_reader_points_numpy_shards_to_the_numpy_format(shard_dir):
    pytest.importorskip("tensorflow")
    from electra_jax.data.pipeline import PretrainInput

    with pytest.raises(ValueError, match="config.data.format=numpy"):
        PretrainInput(str(shard_dir / "*.npy"), per_host_batch_size=1, seq_len=S, process_index=0, process_count=1)


def test_a_folder_marked_incomplete_is_refused(shard_dir, tmp_path):
    for path in shard_dir.glob("*.npy"):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    assert _make(tmp_path).num_examples == N
    (tmp_path / INCOMPLETE_MARKER).write_text("")
    with pytest.raises(ValueError, match="interrupted"):
        _make(tmp_path)


def test_too_few_examples_for_a_host_is_a_clear_error(shard_dir):
    with pytest.raises(ValueError, match="less than one batch"):
        _make(shard_dir, per_host_batch_size=100, process_count=3, process_index=2)


def test_build_and_read_without_tensorflow(tmp_path, shared_dir, uncased_vocab):
    """As on the GPU image: TensorFlow cannot be imported; build_data --format=numpy and pretrain's reader still run,
    and --format=tfrecord says what to do instead, before writing anything."""
    text = shared_dir / "data" / "text" / "state_union" / "1961-Kennedy.txt"
    code = NO_TF + (
        "from electra_jax.build_data import build_pretraining_data\n"
        "import ml_collections, electra_jax.config as C, electra_jax.pretrain as P\n"
        f"meta = build_pretraining_data(vocab={str(uncased_vocab)!r}, output_dir={str(tmp_path / 'np')!r}, "
        f"max_seq_length=32, input={str(text)!r}, num_shards=2, num_processes=1, progress=False, format='numpy')\n"
        "config = C.load('configs/pretrain.py:tiny', {'data.format': 'numpy', 'data.max_seq_length': 32,\n"
        f"    'data.train_files': {str(tmp_path / 'np' / '*.npy')!r}}})\n"
        "batch = next(P.make_input(config, split='train', per_host_batch_size=4))\n"
        "assert batch['input_ids'].shape == (4, 32) and meta['num_examples'] > 10\n"
        "try:\n"
        f"    build_pretraining_data(vocab={str(uncased_vocab)!r}, output_dir={str(tmp_path / 'tf')!r}, "
        f"input={str(text)!r}, progress=False)\n"
        "except ValueError as e:\n"
        "    assert '--format=numpy' in str(e), e\n"
        "else:\n"
        "    raise AssertionError('--format=tfrecord without TensorFlow did not fail')\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (tmp_path / "tf").exists()


@pytest.mark.slow
def test_pretraining_on_numpy_records_resumes_exactly(tmp_path, shared_dir, uncased_vocab):
    """pretrain with config.data.format=numpy: 3 steps, then a rerun to 6, gives the losses of an uninterrupted
    6-step run at steps 4-6 (the checkpoint restores the input position). A constant learning rate keeps the
    first run's schedule equal to the longer one's. Three compiles: 30 s idle, 2 minutes on the loaded dev machine."""
    from electra_jax import config as config_lib
    from electra_jax import pretrain

    inputs = [str(shared_dir / "data" / "text" / "state_union" / n) for n in ("1961-Kennedy.txt", "1962-Kennedy.txt")]
    build_pretraining_data(vocab=str(uncased_vocab), output_dir=str(tmp_path / "records"), max_seq_length=32,
                           input=inputs, num_shards=2, num_processes=1, progress=False, format="numpy")
    # The mini network over the BERT vocabulary the records were built with.
    overrides = mini.overrides(**{
        "model.vocab_size": 30522, "data.format": "numpy", "data.max_seq_length": 32,
        "data.train_files": str(tmp_path / "records" / "*.npy"), "data.shuffle_buffer": 64,
        "train.batch_size": 8, "train.log_every": 1, "train.eval_every": 0, "train.progress": "log",
        "optim.warmup_steps": 0, "optim.end_learning_rate": 5e-4, "checkpoint.every_steps": 3,
        "checkpoint.async_save": False})

    def run(workdir: Path, steps: int) -> dict[int, float]:
        config = config_lib.load("configs/pretrain.py:tiny", {**overrides, "train.steps": steps})
        pretrain.train_and_evaluate(config, str(workdir))
        lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
        return {line["step"]: line["loss"] for line in lines if line.get("split") == "train"}

    uninterrupted = run(tmp_path / "a", 6)
    first = run(tmp_path / "b", 3)
    resumed = run(tmp_path / "b", 6)
    assert [first[s] for s in (1, 2, 3)] == [uninterrupted[s] for s in (1, 2, 3)]
    assert [resumed[s] for s in (4, 5, 6)] == [uninterrupted[s] for s in (4, 5, 6)]
