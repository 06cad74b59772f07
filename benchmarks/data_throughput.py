r"""Measures the data path and prints one JSON object.

  python benchmarks/data_throughput.py [--text_glob='../shared/data/text/**/*'] [--vocab=...]

* build_data: tokens/s of `build_pretraining_data` on the text glob at S=128, wall clock from the call to the
  written metadata (worker start-up included), in one process and on all cores.
* pipeline: examples/s of `PretrainInput` at S=128 and S=512 (per-host batch 128, shuffle buffer 10000,
  deterministic interleave over 16 files), best of 3 timed windows after a warm-up, on random full-size
  records; plus the time a `set_state` restore takes to deliver its first batch from mid-epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"


def bench_build_data(text_glob: str, vocab: str, workdir: str, num_processes: int) -> dict:
    from electra_jax.build_data import build_pretraining_data

    start = time.perf_counter()
    meta = build_pretraining_data(vocab=vocab, output_dir=os.path.join(workdir, f"built{num_processes}"),
                                  max_seq_length=128, input=text_glob, num_shards=16,
                                  num_processes=num_processes, seed=0, progress=False)
    wall = time.perf_counter() - start
    return {"seq_len": 128, "num_examples": meta["num_examples"], "num_tokens": meta["num_tokens"],
            "num_processes": meta["num_processes"], "seconds": round(wall, 2),
            "tokens_per_sec": round(meta["num_tokens"] / wall)}


def write_random_records(directory: str, seq_len: int, num_files: int, per_file: int) -> str:
    import tensorflow as tf

    from electra_jax.data.example_builder import ExampleSerializer
    from electra_jax.data.pipeline import synthetic_batches

    os.makedirs(directory, exist_ok=True)
    serialize = ExampleSerializer(seq_len, 30522)
    batches = synthetic_batches(per_host_batch_size=per_file, seq_len=seq_len, vocab_size=30522, seed=seq_len,
                                special_ids={"pad_id": 0, "unk_id": 100, "cls_id": 101, "sep_id": 102,
                                             "mask_id": 103})
    for f in range(num_files):
        b = next(batches)
        b["input_mask"][:, :] = 1  # full-length records, like most of the real ones
        with tf.io.TFRecordWriter(os.path.join(directory, f"pretrain_data.tfrecord-{f}-of-{num_files}")) as w:
            for ids, seg in zip(b["input_ids"], b["segment_ids"]):
                ids = [int(x) if x else 1000 for x in ids]
                len_a = int(seq_len - seg.sum())
                w.write(serialize(ids, len_a))
    return os.path.join(directory, "pretrain_data.tfrecord-*")


def bench_pipeline(pattern: str, seq_len: int, batch: int, warmup: int, steps: int, repeats: int = 3
                   ) -> dict:
    from electra_jax.data.pipeline import PretrainInput

    it = PretrainInput(pattern, per_host_batch_size=batch, seq_len=seq_len, seed=0, process_index=0,
                       process_count=1)
    for _ in range(warmup):
        next(it)
    rates = []
    for _ in range(repeats):  # best of several windows: the dev machine is shared
        start = time.perf_counter()
        for _ in range(steps):
            next(it)
        rates.append(steps * batch / (time.perf_counter() - start))
    state = it.get_state()
    start = time.perf_counter()
    resumed = PretrainInput(pattern, per_host_batch_size=batch, seq_len=seq_len, seed=0, process_index=0,
                            process_count=1)
    resumed.set_state(state)
    next(resumed)
    restore = time.perf_counter() - start
    return {"seq_len": seq_len, "per_host_batch_size": batch, "batches_timed": steps,
            "examples_per_sec": round(max(rates)), "examples_per_sec_windows": [round(r) for r in rates],
            "tokens_per_sec": round(max(rates) * seq_len),
            "restore_first_batch_seconds": round(restore, 2),
            "restored_records_skipped": state["records_in_epoch"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--text_glob", default=str(SHARED / "text" / "**" / "*"))
    parser.add_argument("--vocab", default=str(SHARED / "bert_vocab" / "uncased" / "vocab.txt"))
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--skip_build", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow  # noqa: F401 - imported before timing so no measurement pays for it

    result = {"date": time.strftime("%Y-%m-%d"), "machine": platform.machine(), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_build:
            result["build_data"] = [bench_build_data(args.text_glob, args.vocab, tmp, n)
                                    for n in (1, os.cpu_count() or 1)]
        result["pipeline"] = []
        for seq_len in (128, 512):
            pattern = write_random_records(os.path.join(tmp, f"rand{seq_len}"), seq_len, 16, 2048)
            result["pipeline"].append(
                bench_pipeline(pattern, seq_len, args.batch, warmup=30, steps=args.steps))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
