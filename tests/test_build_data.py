"""build_data: exact agreement with the original ExampleBuilder, record format, statistics, inputs, errors."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tfds_data import make_tiny_tfds

from electra_jax.build_data import build_pretraining_data
from electra_jax.data import tokenization
from electra_jax.data.example_builder import read_text_file, unit_seed

tf = pytest.importorskip("tensorflow")

REPO = Path(__file__).resolve().parents[1]
# ../shared beside the repo, or $ELECTRA_SHARED_DIR (as in tests/conftest.py)
_DEFAULT_SHARED = Path(__file__).resolve().parents[2] / "shared"
SHARED = Path(os.environ.get("ELECTRA_SHARED_DIR", _DEFAULT_SHARED)) / "data"
VOCAB = SHARED / "bert_vocab" / "uncased" / "vocab.txt"
S = 128
SEED = 7
NUM_SHARDS = 4

pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared data not found at {SHARED}")


class OriginalExampleBuilder:
    """google-research/electra build_pretraining_dataset.ExampleBuilder, kept line for line (module-level
    `random`, tokenize + convert_tokens_to_ids), except that it returns the three padded lists instead of a
    tf.train.Example."""

    def __init__(self, tokenizer, max_length):
        self._tokenizer = tokenizer
        self._current_sentences = []
        self._current_length = 0
        self._max_length = max_length
        self._target_length = max_length

    def add_line(self, line):
        line = line.strip().replace("\n", " ")
        if (not line) and self._current_length != 0:  # empty lines separate docs
            return self._create_example()
        bert_tokens = self._tokenizer.tokenize(line)
        bert_tokids = self._tokenizer.convert_tokens_to_ids(bert_tokens)
        self._current_sentences.append(bert_tokids)
        self._current_length += len(bert_tokids)
        if self._current_length >= self._target_length:
            return self._create_example()
        return None

    def _create_example(self):
        if random.random() < 0.1:
            first_segment_target_length = 100000
        else:
            first_segment_target_length = (self._target_length - 3) // 2
        first_segment = []
        second_segment = []
        for sentence in self._current_sentences:
            if (len(first_segment) == 0 or
                    len(first_segment) + len(sentence) < first_segment_target_length or
                    (len(second_segment) == 0 and
                     len(first_segment) < first_segment_target_length and
                     random.random() < 0.5)):
                first_segment += sentence
            else:
                second_segment += sentence
        first_segment = first_segment[:self._max_length - 2]
        second_segment = second_segment[:max(0, self._max_length - len(first_segment) - 3)]
        self._current_sentences = []
        self._current_length = 0
        if random.random() < 0.05:
            self._target_length = random.randint(5, self._max_length)
        else:
            self._target_length = self._max_length
        return self._make_example(first_segment, second_segment)

    def _make_example(self, first_segment, second_segment):
        vocab = self._tokenizer.vocab
        input_ids = [vocab["[CLS]"]] + first_segment + [vocab["[SEP]"]]
        segment_ids = [0] * len(input_ids)
        if second_segment:
            input_ids += second_segment + [vocab["[SEP]"]]
            segment_ids += [1] * (len(second_segment) + 1)
        input_mask = [1] * len(input_ids)
        input_ids += [0] * (self._max_length - len(input_ids))
        input_mask += [0] * (self._max_length - len(input_mask))
        segment_ids += [0] * (self._max_length - len(segment_ids))
        return input_ids, input_mask, segment_ids


def original_file_examples(path: str, tokenizer, max_length: int, builder_seed: int,
                           blanks_separate_docs: bool = True):
    """The original ExampleWriter.write_examples loop over one file, with random seeded like build_data."""
    random.seed(builder_seed)
    builder = OriginalExampleBuilder(tokenizer, max_length)
    out = []
    for line in read_text_file(path).split("\n"):
        line = line.strip()
        if line or blanks_separate_docs:
            example = builder.add_line(line)
            if example:
                out.append(example)
    example = builder.add_line("")
    if example:
        out.append(example)
    return out


def read_records(out_dir: Path, seq_len: int, shard: str | None = None) -> dict[str, np.ndarray]:
    """Parses records with the original feature spec: FixedLenFeature([S], tf.int64) for the three names."""
    spec = {n: tf.io.FixedLenFeature([seq_len], tf.int64) for n in ("input_ids", "input_mask", "segment_ids")}
    files = ([str(out_dir / shard)] if shard
             else sorted(str(p) for p in out_dir.glob("pretrain_data.tfrecord-*")))
    batches = [tf.io.parse_example(b, spec) for b in tf.data.TFRecordDataset(files).batch(4096)]
    return {k: np.concatenate([b[k].numpy() for b in batches]) for k in spec}


def text_files() -> list[str]:
    return sorted(str(p) for p in (SHARED / "text").rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("built")
    meta = build_pretraining_data(vocab=str(VOCAB), output_dir=str(out), max_seq_length=S,
                                  input=str(SHARED / "text" / "**" / "*"), num_shards=NUM_SHARDS,
                                  num_processes=2, seed=SEED, progress=False)
    return out, meta


def test_metadata(built):
    out, meta = built
    on_disk = json.loads((out / "metadata.json").read_text())
    assert on_disk == meta
    assert meta["vocab_sha256"] == hashlib.sha256(VOCAB.read_bytes()).hexdigest()
    assert meta["vocab_size"] == 30522 and meta["max_seq_length"] == S and meta["seed"] == SEED
    assert meta["special_ids"] == {"pad_id": 0, "unk_id": 100, "cls_id": 101, "sep_id": 102, "mask_id": 103}
    assert [s["file"] for s in meta["shards"]] == [f"pretrain_data.tfrecord-{i}-of-{NUM_SHARDS}"
                                                   for i in range(NUM_SHARDS)]
    assert sum(s["num_examples"] for s in meta["shards"]) == meta["num_examples"] > 10000
    assert sorted(meta["sources"]) == text_files()


def test_records_equal_the_original_example_builder(built):
    """Every shard equals the original ExampleBuilder run file by file (module-level random seeded as
    build_data seeds each file), files in build_data's seeded order, examples dealt round-robin."""
    out, meta = built
    tok = tokenization.tokenizer(VOCAB)
    files = text_files()
    order = list(range(len(files)))
    random.Random(SEED).shuffle(order)
    expected = []
    for i in order:
        expected += original_file_examples(files[i], tok, S, unit_seed(SEED, i))
    assert len(expected) == meta["num_examples"]
    for shard in range(NUM_SHARDS):
        got = read_records(out, S, f"pretrain_data.tfrecord-{shard}-of-{NUM_SHARDS}")
        want = expected[shard::NUM_SHARDS]
        assert len(got["input_ids"]) == len(want)
        for name, col in zip(("input_ids", "input_mask", "segment_ids"), range(3)):
            np.testing.assert_array_equal(got[name], np.array([w[col] for w in want]), err_msg=name)


def test_every_record_is_well_formed(built):
    out, meta = built
    r = read_records(out, S)
    ids, mask, seg = r["input_ids"], r["input_mask"], r["segment_ids"]
    n = len(ids)
    assert n == meta["num_examples"] and int(mask.sum()) == meta["num_tokens"]
    lengths = mask.sum(1)
    pos = np.arange(S)[None, :]
    assert (ids[:, 0] == 101).all()
    assert (mask == (pos < lengths[:, None])).all()  # contiguous ones, then zeros
    assert (ids[mask == 0] == 0).all() and (seg[mask == 0] == 0).all()
    assert (ids[np.arange(n), lengths - 1] == 102).all()  # last real token is [SEP]
    sep_count = (ids == 102).sum(1)
    assert set(np.unique(sep_count)) <= {1, 2}
    has_b = seg.sum(1) > 0
    assert ((sep_count == 2) == has_b).all()
    # segment ids: 0 on [CLS] A [SEP], then 1 up to the end of the real tokens
    first_b = np.where(has_b, np.argmax(seg == 1, axis=1), lengths)
    assert (seg == ((pos >= first_b[:, None]) & (mask == 1))).all()
    assert (ids[has_b, first_b[has_b] - 1] == 102).all()  # A's [SEP] right before B
    assert not ((ids == 102) & (pos > 0) & (pos < first_b[:, None] - 1)).any()
    assert lengths.min() >= 2 and lengths.max() == S


def test_statistics_follow_the_original_rules(built):
    _, meta = built
    n = meta["num_examples"]
    single = meta["num_single_segment_draws"] / n
    short = meta["num_short_target_draws"] / n
    # binomial standard errors are about 0.0025 and 0.0018 for ~14k examples: allow 4 of them
    assert abs(single - 0.10) < 4 * (0.1 * 0.9 / n) ** 0.5, single
    assert abs(short - 0.05) < 4 * (0.05 * 0.95 / n) ** 0.5, short
    # Observable in the records: every single-segment draw yields an example without B.
    assert meta["num_without_segment_b"] >= meta["num_single_segment_draws"]


def test_output_is_deterministic_and_independent_of_process_count(tmp_path):
    inputs = [str(p) for p in sorted((SHARED / "text" / "state_union").glob("195*.txt"))]
    digests = []
    for procs, seed in ((1, 3), (2, 3), (2, 4)):
        out = tmp_path / f"p{procs}s{seed}"
        build_pretraining_data(vocab=str(VOCAB), output_dir=str(out), max_seq_length=64, input=inputs,
                               num_shards=3, num_processes=procs, seed=seed, progress=False)
        digests.append([hashlib.sha256(p.read_bytes()).hexdigest()
                        for p in sorted(out.glob("pretrain_data.tfrecord-*"))])
    assert digests[0] == digests[1]
    assert digests[0] != digests[2]


def test_binary_input_file_is_named(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("A sentence.\nAnother one.\n")
    binary = tmp_path / "image.bin"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    for procs in (1, 2):
        with pytest.raises(ValueError) as err:
            build_pretraining_data(vocab=str(VOCAB), output_dir=str(tmp_path / f"out{procs}"),
                                   max_seq_length=32, input=str(tmp_path / "*"), num_shards=1,
                                   num_processes=procs, progress=False)
        assert "image.bin" in str(err.value) and "binary" in str(err.value)


def test_latin1_input_falls_back(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("Caf\xe9 cr\xe8me br\xfbl\xe9e.\n".encode("latin-1"))
    out = tmp_path / "out"
    build_pretraining_data(vocab=str(VOCAB), output_dir=str(out), max_seq_length=16,
                           input=str(tmp_path / "*.txt"), num_shards=1, num_processes=1, progress=False)
    r = read_records(out, 16)
    tok = tokenization.tokenizer(VOCAB)
    want = [101] + tok.encode("café crème brûlée.") + [102]
    assert list(r["input_ids"][0][:len(want)]) == want


def test_missing_vocab_specials_fail_before_any_work(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\nthe\n")
    (tmp_path / "a.txt").write_text("the\n")
    expected = r"vocab\.txt is missing the special token\(s\) \[CLS\], \[SEP\], \[MASK\]"
    with pytest.raises(ValueError, match=expected):
        build_pretraining_data(vocab=str(vocab), output_dir=str(tmp_path / "o"),
                               input=str(tmp_path / "a.txt"), progress=False)


def test_tfds_input_matches_the_same_text_as_a_file(tmp_path):
    lines = read_text_file(str(SHARED / "text" / "state_union" / "1961-Kennedy.txt")).split("\n")
    docs = ["\n".join(lines[i:i + 20]) for i in range(0, 100, 20)]
    name = make_tiny_tfds(tmp_path / "tfds", docs, "ElectraJaxTinyText")
    # TFDS stores examples in a hashed order: write the text file in that order.
    tfds = pytest.importorskip("tensorflow_datasets")
    stored = [ex["text"].decode() for ex in tfds.builder(name, data_dir=str(tmp_path / "tfds")).as_dataset(
        split="train", shuffle_files=False).as_numpy_iterator()]
    assert sorted(stored) == sorted(docs)
    (tmp_path / "same.txt").write_text("\n\n".join(stored) + "\n", encoding="utf-8")
    results = []
    tfds_kw = dict(tfds=f"{name}:train", tfds_data_dir=str(tmp_path / "tfds"), tfds_num_splits=1)
    for kind, kw in (("tfds", tfds_kw), ("text", dict(input=str(tmp_path / "same.txt")))):
        out = tmp_path / kind
        meta = build_pretraining_data(vocab=str(VOCAB), output_dir=str(out), max_seq_length=64, num_shards=2,
                                      num_processes=1, seed=1, progress=False, **kw)
        results.append((meta["num_examples"], read_records(out, 64)))
    (n_tfds, r_tfds), (n_text, r_text) = results
    assert n_tfds == n_text > 10
    for k in r_text:
        np.testing.assert_array_equal(r_tfds[k], r_text[k])


@pytest.mark.slow
def test_tfds_slices_in_worker_processes(tmp_path):
    """Several slices in spawned workers, where the test's builder class is not registered: TFDS reads the
    prepared dataset from its files in data_dir (about 15 s: each worker imports TensorFlow)."""
    docs = [f"Document {i} sentence one.\nDocument {i} sentence two is a little longer." for i in range(30)]
    name = make_tiny_tfds(tmp_path / "tfds", docs, "ElectraJaxTinyDocs")
    meta = build_pretraining_data(vocab=str(VOCAB), output_dir=str(tmp_path / "par"), max_seq_length=64,
                                  num_shards=2, num_processes=2, seed=1, progress=False, tfds=name,
                                  tfds_data_dir=str(tmp_path / "tfds"), tfds_num_splits=3)
    assert meta["num_examples"] == 30  # one example per document
    r = read_records(tmp_path / "par", 64)
    tok = tokenization.tokenizer(VOCAB)
    got = sorted(tuple(int(t) for t in ids if t not in (0, 101, 102)) for ids in r["input_ids"])
    want = sorted(tuple(tok.encode(d.replace("\n", " "))) for d in docs)
    assert got == want


def test_command_line(tmp_path):
    out = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, "-m", "electra_jax.build_data",
         f"--input={SHARED / 'text' / 'state_union' / '196*.txt'}", f"--vocab={VOCAB}", f"--output_dir={out}",
         "--max_seq_length=64", "--num_shards=2", "--num_processes=1", "--seed=5"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["num_examples"] == json.loads(proc.stdout.strip().splitlines()[-1])["num_examples"] > 0
    assert sorted(p.name for p in out.glob("pretrain_data.tfrecord-*")) == [
        "pretrain_data.tfrecord-0-of-2", "pretrain_data.tfrecord-1-of-2"]


# ---- safe reruns and warnings (issue 14) ----


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture()
def good_records(tmp_path) -> tuple[Path, dict[str, str]]:
    """A finished build of two State of the Union addresses, and the digest of every file in its folder."""
    out = tmp_path / "records"
    inputs = [str(SHARED / "text" / "state_union" / name) for name in ("1961-Kennedy.txt", "1962-Kennedy.txt")]
    meta = build_pretraining_data(vocab=str(VOCAB), output_dir=str(out), max_seq_length=32, input=inputs,
                                  num_shards=2, num_processes=1, progress=False)
    assert meta["num_examples"] > 100
    return out, _digests(out)


def test_rerun_with_a_bad_sequence_length_leaves_the_good_records_untouched(good_records):
    """The repro: rerunning into a good records folder with --max_seq_length=0 used to leave 0-byte shards beside
    the old metadata.json. Now it fails before writing, and 5-7 (which pretrain rejects) fail the same way."""
    out, before = good_records
    done = subprocess.run(
        [sys.executable, "-m", "electra_jax.build_data", f"--input={SHARED / 'text' / 'state_union' / '1963-*.txt'}",
         f"--vocab={VOCAB}", f"--output_dir={out}", "--max_seq_length=0", "--num_shards=2"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "--max_seq_length=0 must be an integer >= 8" in done.stderr
    assert _digests(out) == before
    for length in (5, 6, 7):
        with pytest.raises(ValueError, match=f"--max_seq_length={length} must be an integer >= 8"):
            build_pretraining_data(vocab=str(VOCAB), output_dir=str(out), max_seq_length=length,
                                   input=str(SHARED / "text" / "state_union" / "1963-*.txt"), progress=False)
        assert _digests(out) == before


def test_a_build_failing_midway_leaves_the_good_records_untouched(good_records, tmp_path):
    out, before = good_records
    (tmp_path / "a.txt").write_text("A first sentence.\nA second one.\n")
    (tmp_path / "z.bin").write_bytes(b"\x00\x01\x02binary")  # fails in the worker, after a.txt was packed
    for processes in (1, 2):
        with pytest.raises(ValueError, match="z.bin"):
            build_pretraining_data(vocab=str(VOCAB), output_dir=str(out), max_seq_length=32, num_shards=2,
                                   input=[str(tmp_path / "a.txt"), str(tmp_path / "z.bin")], seed=1,
                                   num_processes=processes, progress=False)
        assert _digests(out) == before and not (out / ".build_data.partial").exists()


def _run_until_killed(code: str, marker: Path) -> None:
    """Runs `code` in a Python subprocess until it writes `marker`, then SIGKILLs it."""
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    for _ in range(1200):
        if marker.exists() or proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    _, stderr = proc.communicate()
    assert marker.exists(), stderr[-3000:]


def test_a_build_killed_while_packing_leaves_the_good_records_untouched(good_records, tmp_path):
    out, before = good_records
    marker = tmp_path / "packing"
    code = (
        "import time, electra_jax.build_data as b\n"
        "original = b.process_unit\n"
        "def slow(task):\n"
        f"    if task[0].index == 1:\n"
        f"        open({str(marker)!r}, 'w').close(); time.sleep(600)\n"
        "    return original(task)\n"
        "b.process_unit = slow\n"
        f"b.build_pretraining_data(vocab={str(VOCAB)!r}, output_dir={str(out)!r}, max_seq_length=32, num_shards=2,\n"
        f"    input={str(SHARED / 'text' / 'state_union' / '196[3-5]*.txt')!r}, num_processes=1, progress=False)\n")
    _run_until_killed(code, marker)
    assert _digests(out) == before  # only the hidden staging folder holds the half-built shards
    assert (out / ".build_data.partial").is_dir()
    meta = build_pretraining_data(vocab=str(VOCAB), output_dir=str(out), max_seq_length=32, num_shards=2,
                                  input=str(SHARED / "text" / "state_union" / "196[3-5]*.txt"), progress=False)
    assert not (out / ".build_data.partial").exists()
    assert len(read_records(out, 32)["input_ids"]) == meta["num_examples"]


def test_a_build_killed_while_replacing_leaves_a_folder_the_readers_refuse(good_records, tmp_path):
    from electra_jax.data.pipeline import PretrainInput

    out, _ = good_records
    marker = tmp_path / "replacing"
    code = (
        "import os, time, electra_jax.build_data as b\n"
        "original, calls = os.replace, []\n"
        "def replace(src, dst):\n"
        "    calls.append(src)\n"
        "    if len(calls) == 2:  # one new shard moved in, the old ones already removed\n"
        f"        open({str(marker)!r}, 'w').close(); time.sleep(600)\n"
        "    return original(src, dst)\n"
        "os.replace = replace\n"
        f"b.build_pretraining_data(vocab={str(VOCAB)!r}, output_dir={str(out)!r}, max_seq_length=32, num_shards=2,\n"
        f"    input={str(SHARED / 'text' / 'state_union' / '1963-*.txt')!r}, num_processes=1, progress=False)\n")
    _run_until_killed(code, marker)
    assert (out / "build_data.incomplete").exists() and not (out / "metadata.json").exists()
    with pytest.raises(ValueError, match="interrupted while it replaced these records"):
        PretrainInput(str(out / "*.tfrecord*"), per_host_batch_size=2, seq_len=32, process_index=0, process_count=1)
    build_pretraining_data(vocab=str(VOCAB), output_dir=str(out), max_seq_length=32, num_shards=2,
                           input=str(SHARED / "text" / "state_union" / "1963-*.txt"), progress=False)
    assert not (out / "build_data.incomplete").exists()
    assert next(PretrainInput(str(out / "*.tfrecord*"), per_host_batch_size=2, seq_len=32, process_index=0,
                              process_count=1))["input_ids"].shape == (2, 32)


def test_the_incomplete_marker_is_seen_on_a_remote_filesystem_too():
    """gs:// workdirs and record folders go through tf.io.gfile; its in-memory ram:// filesystem stands in."""
    tf = pytest.importorskip("tensorflow")
    from electra_jax.data.pipeline import INCOMPLETE_MARKER, check_records_complete

    folder = f"ram://records-{os.getpid()}"
    tf.io.gfile.makedirs(folder)
    files = [f"{folder}/train-00000-of-00002.tfrecord", f"{folder}/train-00001-of-00002.tfrecord"]
    check_records_complete(files)  # no marker: nothing to say
    with tf.io.gfile.GFile(f"{folder}/{INCOMPLETE_MARKER}", "w") as f:
        f.write("")
    with pytest.raises(ValueError, match=rf"{folder} holds {INCOMPLETE_MARKER}: a build_data run was interrupted"):
        check_records_complete(files)


def test_an_output_dir_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "records"
    target.write_text("not a folder")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        build_pretraining_data(vocab=str(VOCAB), output_dir=str(target), max_seq_length=32,
                               input=str(SHARED / "text" / "state_union" / "1963-*.txt"), progress=False)
    assert target.read_text() == "not a folder"


def _rows(folder: Path) -> list[tuple]:
    rows = np.concatenate([np.load(p) for p in sorted(folder.glob("*.npy"))])
    return sorted((tuple(r["input_ids"]), int(r["length"]), int(r["len_a"])) for r in rows)


def _discarded_text_case(tmp_path: Path, long_line_chars: int) -> None:
    """A good file, an empty one and one single long line: two warnings, and the good file's examples all kept."""
    good = tmp_path / "inputs" / "a_good.txt"
    good.parent.mkdir()
    sentences = read_text_file(str(SHARED / "text" / "state_union" / "1961-Kennedy.txt")).replace(". ", ".\n")
    good.write_text("\n".join(line for line in sentences.splitlines() if len(line.split()) <= 40), encoding="utf-8")
    words = read_text_file(str(SHARED / "text" / "tinyshakespeare" / "input.txt")).split()
    line = " ".join(words)
    while len(line) < long_line_chars:
        line = f"{line} {line}"
    (tmp_path / "inputs" / "b_long.txt").write_text(line[:long_line_chars])
    (tmp_path / "inputs" / "c_empty.txt").write_text("")
    kw = dict(vocab=str(VOCAB), max_seq_length=128, num_shards=2, num_processes=1, progress=False, format="numpy")
    alone = build_pretraining_data(output_dir=str(tmp_path / "alone"), input=str(good), **kw)
    both = build_pretraining_data(output_dir=str(tmp_path / "all"), input=str(tmp_path / "inputs" / "*.txt"), **kw)
    assert alone["warnings"] == []
    empty, truncated = both["warnings"]
    assert "c_empty.txt" in empty and "no text" in empty
    assert "b_long.txt" in truncated and "one sentence per line" in truncated
    long_tokens = both["num_input_tokens"] - alone["num_input_tokens"]
    assert both["num_long_lines"] == 1 and both["num_long_line_tokens"] == long_tokens == both["max_line_tokens"]
    # The long line fills one example's segment A (126 tokens, [CLS] and [SEP] around them); the rest is gone.
    assert both["num_discarded_tokens"] - alone["num_discarded_tokens"] == long_tokens - 126
    kept, everything = _rows(tmp_path / "alone"), _rows(tmp_path / "all")
    assert len(everything) == len(kept) + 1
    remaining = list(everything)
    for row in kept:  # every example of the good file is still there
        remaining.remove(row)


def test_discarded_text_is_reported_and_good_text_kept(tmp_path):
    _discarded_text_case(tmp_path, long_line_chars=300_000)


@pytest.mark.slow
def test_a_ten_megabyte_single_line_file_is_reported(tmp_path):
    """The issue's case at full size (tokenizing one 10 MB line takes about 20 s on the dev machine)."""
    _discarded_text_case(tmp_path, long_line_chars=10_000_000)
