"""PretrainInput: host sharding, exact save/restore, error messages; synthetic_batches and to_global_batch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from electra_jax.data.example_builder import ExampleSerializer
from electra_jax.data.pipeline import PretrainInput, synthetic_batches, to_global_batch

tf = pytest.importorskip("tensorflow")

REPO = Path(__file__).resolve().parents[1]
S = 16
VOCAB = 2000


def _record_ids(index: int) -> list[int]:
    """A record whose tokens 1 and 2 encode its global index (so tests can identify every record)."""
    length = 4 + index % (S - 4)
    return [101, 200 + index // 1000, 200 + index % 1000] + [7] * (length - 4) + [102]


def _write_records(path: Path, indices, seq_len: int = S) -> None:
    serialize = ExampleSerializer(seq_len, VOCAB + 1200)
    with tf.io.TFRecordWriter(str(path)) as w:
        for i in indices:
            ids = _record_ids(i)
            w.write(serialize(ids, len(ids)))


def _index(batch: dict[str, np.ndarray]) -> list[int]:
    ids = batch["input_ids"]
    return list((ids[:, 1] - 200) * 1000 + (ids[:, 2] - 200))


@pytest.fixture(scope="module")
def record_dir(tmp_path_factory) -> Path:
    """5 files of 97..101 records (497 in all)."""
    d = tmp_path_factory.mktemp("records")
    start = 0
    for f in range(5):
        n = 97 + f
        _write_records(d / f"pretrain_data.tfrecord-{f}-of-5", range(start, start + n))
        start += n
    return d


N_RECORDS = 97 + 98 + 99 + 100 + 101


def _make(pattern, **kw) -> PretrainInput:
    kw.setdefault("per_host_batch_size", 8)
    kw.setdefault("seq_len", S)
    kw.setdefault("process_index", 0)
    kw.setdefault("process_count", 1)
    kw.setdefault("shuffle_buffer", 64)
    return PretrainInput(str(pattern), **kw)


def _take(it, n):
    return [next(it) for _ in range(n)]


def test_batches_have_the_promised_layout(record_dir):
    batch = next(_make(record_dir / "*", per_host_batch_size=8))
    assert set(batch) == {"input_ids", "input_mask", "segment_ids"}
    for v in batch.values():
        assert v.dtype == np.int32 and v.shape == (8, S)
    assert (batch["input_ids"][:, 0] == 101).all()
    assert ((batch["input_ids"] != 0) == (batch["input_mask"] == 1)).all()


@pytest.mark.parametrize("shuffle", [True, False])
def test_one_epoch_covers_every_record_once(record_dir, shuffle):
    it = _make(record_dir / "*", per_host_batch_size=1, repeat=False, shuffle=shuffle)
    seen = [i for b in it for i in _index(b)]
    assert sorted(seen) == list(range(N_RECORDS))
    if shuffle:
        assert seen != sorted(seen)


@pytest.mark.parametrize("num_files,hosts", [(5, 2), (1, 2), (3, 4)])
def test_simulated_hosts_are_disjoint_and_cover_everything(record_dir, num_files, hosts):
    files = sorted(str(p) for p in record_dir.glob("*"))[:num_files]
    expected = set()
    for path in files:
        expected |= {int(i) for i in _index_file(path)}
    per_host = []
    for h in range(hosts):
        it = PretrainInput(files, per_host_batch_size=1, seq_len=S, seed=3, repeat=False,
                           process_index=h, process_count=hosts, shuffle_buffer=64)
        assert it.row_sharding == (num_files < hosts)
        per_host.append([i for b in it for i in _index(b)])
    for a in range(hosts):
        assert len(per_host[a]) == len(set(per_host[a])) > 0
        for b in range(a + 1, hosts):
            assert not set(per_host[a]) & set(per_host[b])
    assert set().union(*map(set, per_host)) == expected


def _index_file(path: str) -> list[int]:
    spec = {"input_ids": tf.io.FixedLenFeature([S], tf.int64)}
    out = []
    for rec in tf.data.TFRecordDataset(path):
        ids = tf.io.parse_single_example(rec, spec)["input_ids"].numpy()
        out.append((ids[1] - 200) * 1000 + (ids[2] - 200))
    return out


def test_same_seed_same_stream_other_seed_other_stream(record_dir):
    a = [_index(b) for b in _take(_make(record_dir / "*", seed=5), 20)]
    b = [_index(b) for b in _take(_make(record_dir / "*", seed=5), 20)]
    c = [_index(b) for b in _take(_make(record_dir / "*", seed=6), 20)]
    assert a == b and a != c


@pytest.mark.parametrize("stop_at", [0, 1, 7, 61, 62, 63, 140])
def test_stop_and_restore_gives_the_uninterrupted_stream(record_dir, stop_at):
    # 497 records, batch 8: epoch boundaries fall inside batches 62 and 124, which the stops straddle.
    total = 150
    reference = _take(_make(record_dir / "*", seed=11), total)
    first = _make(record_dir / "*", seed=11)
    _take(first, stop_at)
    state = json.loads(json.dumps(first.get_state()))  # must survive JSON
    resumed = _make(record_dir / "*", seed=11)
    resumed.set_state(state)
    for i in range(stop_at, total):
        got = next(resumed)
        for k in got:
            np.testing.assert_array_equal(got[k], reference[i][k],
                                          err_msg=f"batch {i} after stop at {stop_at}")
    assert resumed.get_state()["batches"] == total


def test_restore_on_a_second_host_and_mismatched_state(record_dir):
    kw = dict(seed=2, process_count=2, process_index=1, per_host_batch_size=4)
    reference = _take(_make(record_dir / "*", **kw), 40)
    first = _make(record_dir / "*", **kw)
    _take(first, 25)
    resumed = _make(record_dir / "*", **kw)
    resumed.set_state(first.get_state())
    assert [_index(b) for b in _take(resumed, 15)] == [_index(b) for b in reference[25:]]
    other = _make(record_dir / "*", seed=3, process_count=2, process_index=1)
    with pytest.raises(ValueError, match="seed=2"):
        other.set_state(first.get_state())


def test_wrong_sequence_length_names_file_and_both_lengths(record_dir):
    with pytest.raises(ValueError) as err:
        _make(record_dir / "*", seq_len=32)
    msg = str(err.value)
    assert "pretrain_data.tfrecord-0-of-5" in msg and "16" in msg and "32" in msg


def test_wrong_length_record_inside_a_file_is_named(tmp_path):
    good = tmp_path / "good.tfrecord"
    _write_records(good, range(50))
    mixed = tmp_path / "mixed.tfrecord"
    serialize16, serialize20 = ExampleSerializer(S, VOCAB + 1200), ExampleSerializer(20, VOCAB + 1200)
    with tf.io.TFRecordWriter(str(mixed)) as w:
        for i in range(50, 60):
            w.write(serialize16(_record_ids(i), 5))
        w.write(serialize20(_record_ids(60), 5))  # a later record of another length: not caught up front
    it = PretrainInput([str(good), str(mixed)], per_host_batch_size=4, seq_len=S, repeat=False,
                       process_index=0, process_count=1, shuffle=False)
    with pytest.raises(ValueError) as err:
        for _ in it:
            pass
    msg = str(err.value)
    assert "mixed.tfrecord" in msg and "20" in msg and "16" in msg and "Record 10" in msg


def test_corrupt_record_names_its_file(tmp_path):
    good = tmp_path / "good.tfrecord"
    _write_records(good, range(40))
    bad = tmp_path / "bad.tfrecord"
    _write_records(bad, range(40, 80))
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip a byte inside a record: its CRC no longer matches
    bad.write_bytes(bytes(data))
    it = PretrainInput([str(good), str(bad)], per_host_batch_size=4, seq_len=S, repeat=False,
                       process_index=0, process_count=1)
    with pytest.raises(ValueError, match=r"Corrupt TFRecord file .*bad\.tfrecord"):
        for _ in it:
            pass


def test_truncated_file_is_named_up_front(tmp_path):
    bad = tmp_path / "trunc.tfrecord"
    _write_records(bad, range(3))
    bad.write_bytes(bad.read_bytes()[:30])
    with pytest.raises(ValueError, match=r"Corrupt TFRecord file .*trunc\.tfrecord"):
        PretrainInput(str(bad), per_host_batch_size=1, seq_len=S, process_index=0, process_count=1)


def test_a_text_file_is_named_not_read_as_a_huge_record(tmp_path):
    """Its first 8 bytes read as a record length of about 7e18 (this once ended in a segmentation fault)."""
    text = tmp_path / "input.txt"
    text.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n")
    claimed = int.from_bytes(text.read_bytes()[:8], "little")
    with pytest.raises(ValueError, match=rf"input\.txt \(or no TFRecord file at all\): its first record claims "
                                         rf"{claimed} bytes, the file holds {text.stat().st_size}"):
        PretrainInput(str(text), per_host_batch_size=1, seq_len=S, process_index=0, process_count=1)


def test_only_empty_files_is_a_clear_error(tmp_path):
    (tmp_path / "empty.tfrecord").write_bytes(b"")
    with pytest.raises(ValueError, match="only empty record files"):
        PretrainInput(str(tmp_path / "*.tfrecord"), per_host_batch_size=1, seq_len=S, process_index=0,
                      process_count=1)


def test_no_files_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="No TFRecord files match"):
        PretrainInput(str(tmp_path / "none-*"), per_host_batch_size=1, seq_len=S, process_index=0,
                      process_count=1)


def test_synthetic_batches_are_well_formed():
    specials = {"pad_id": 0, "unk_id": 100, "cls_id": 101, "sep_id": 102, "mask_id": 103}
    gen = synthetic_batches(per_host_batch_size=64, seq_len=32, vocab_size=30522, seed=0,
                            special_ids=specials)
    b1, b2 = next(gen), next(gen)
    again = next(synthetic_batches(per_host_batch_size=64, seq_len=32, vocab_size=30522, seed=0,
                                   special_ids=specials))
    np.testing.assert_array_equal(b1["input_ids"], again["input_ids"])
    assert not np.array_equal(b1["input_ids"], b2["input_ids"])
    ids, mask, seg = b1["input_ids"], b1["input_mask"], b1["segment_ids"]
    for v in b1.values():
        assert v.dtype == np.int32 and v.shape == (64, 32)
    lengths = mask.sum(1)
    assert (ids[:, 0] == 101).all() and (ids[np.arange(64), lengths - 1] == 102).all()
    assert ((ids == 0) == (mask == 0)).all() and (seg <= mask).all()
    assert (np.diff(mask, axis=1) <= 0).all()  # contiguous mask
    assert 0 < (seg.sum(1) > 0).mean() < 1  # some rows have a B segment
    sep_counts = (ids == 102).sum(1)
    assert set(sep_counts) <= {1, 2}
    assert ((sep_counts == 2) == (seg.sum(1) > 0)).all()
    assert lengths.min() < 32 and ids[mask == 1].min() >= 0 and ids.max() < 30522
    inner = ids[(mask == 1) & (ids != 101) & (ids != 102)]
    assert inner.min() > 103


def test_synthetic_and_global_batch_need_no_tensorflow():
    code = (
        "import sys, jax, numpy as np\n"
        "from electra_jax.data.pipeline import synthetic_batches, to_global_batch\n"
        "b = next(synthetic_batches(per_host_batch_size=4, seq_len=8, vocab_size=50, seed=1,\n"
        "         special_ids={'[PAD]': 0, '[UNK]': 1, '[CLS]': 2, '[SEP]': 3, '[MASK]': 4}))\n"
        "mesh = jax.sharding.Mesh(np.array(jax.devices()), ('data',))\n"
        "s = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))\n"
        "g = to_global_batch(b, s)\n"
        "assert g['input_ids'].shape == (4, 8) and int(g['input_ids'][0, 0]) == 2\n"
        "assert 'tensorflow' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_to_global_batch_matches_local_batch():
    import jax

    specials = {"pad_id": 0, "cls_id": 1, "sep_id": 2, "mask_id": 3, "unk_id": 4}
    local = next(synthetic_batches(per_host_batch_size=8, seq_len=16, vocab_size=100, seed=0,
                                   special_ids=specials))
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    out = to_global_batch(local, sharding)
    assert set(out) == set(local)
    for k, v in out.items():
        assert isinstance(v, jax.Array) and v.sharding == sharding
        np.testing.assert_array_equal(np.asarray(v), local[k])
