"""Pre-training runs end to end: preemption and exact resume, crash during an async save, bad inputs.

Runs are subprocesses of the real CLI on synthetic data with TensorFlow blocked (tests/pretrain_runs.py);
the fault cases of issue 14 (divergence, corrupt checkpoints, full disk, changed configs, kills at random
points) are in tests/test_reliability.py.
"""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pretrain_runs import (EVERY, PREEMPTED, REPO, TOTAL_STEPS, env, finish, log_path, log_tail, start,
                           steps_on_disk, train_lines, wait_for_file, wait_for_step)


def test_uninterrupted_run_writes_the_contract_metrics(uninterrupted, uninterrupted_workdir):
    # The contract's metrics.jsonl fields.
    for field in ("step", "loss", "mlm_loss", "disc_loss", "mlm_accuracy", "disc_accuracy", "disc_auc",
                  "learning_rate", "tokens_per_sec", "mfu", "grad_norm"):
        assert field in uninterrupted[TOTAL_STEPS], field
    assert "params_finite" not in uninterrupted[TOTAL_STEPS]  # an internal check, not a metric
    assert any(p.name.startswith("events.out.tfevents") for p in uninterrupted_workdir.iterdir())
    assert steps_on_disk(uninterrupted_workdir) == [44, 48, 52, 56, 60]  # keep = 5, every 4 steps


def test_the_log_says_what_runs_and_how_long_the_compile_took(uninterrupted_workdir):
    """The start-up lines a user reads: the model and run shape (the mini network and SMALL_FLAGS, counted by hand:
    1 layer, hidden 64, embedding 32, 2 heads, vocab 512, 60 steps of 8 x 32), the compile and its time."""
    import re

    log = log_path(uninterrupted_workdir).read_text()
    assert re.search(r"model tiny: 1 layers, hidden 64, embedding 32, 2 heads, generator hidden \d+, vocab 512; "
                     r"objective electra; 60 steps of 8 x 32 tokens", log), log[:3000]
    assert "compiling the train step for batch 8" in log
    seconds = [float(x) for x in re.findall(r"compiled in ([0-9.]+) s", log)]
    assert seconds and all(0 < x < 600 for x in seconds), log[:3000]
    assert "global batch 8 (8 per host)" in log and "finished at step 60" in log


def test_sigterm_saves_and_resumes_exactly(tmp_path, cache_dir, uninterrupted):
    workdir = tmp_path / "preempted"
    workdir.mkdir()
    proc = start(workdir, cache_dir, ELECTRA_TEST_STEP_DELAY="0.02")
    wait_for_step(workdir, proc, 3)
    proc.send_signal(signal.SIGTERM)
    # Saved, then exited with the status that tells a scheduler to run the command again.
    assert finish(proc) == PREEMPTED, log_tail(workdir)
    stopped_at = max(steps_on_disk(workdir))
    assert 3 <= stopped_at < TOTAL_STEPS, f"the run was not stopped part-way ({stopped_at}); {log_tail(workdir)}"
    assert max(train_lines(workdir)) == stopped_at  # stopped at the step boundary it saved

    proc = start(workdir, cache_dir)
    assert finish(proc) == 0, log_tail(workdir)
    resumed = train_lines(workdir)
    assert max(resumed) == TOTAL_STEPS
    # Every step after the restart equals the uninterrupted run exactly (same params, data, PRNG).
    for step in range(stopped_at + 1, TOTAL_STEPS + 1):
        for key in ("loss", "mlm_loss", "disc_loss", "learning_rate"):
            assert resumed[step][key] == uninterrupted[step][key], (step, key)


def test_sigkill_during_async_save_restarts_from_previous_checkpoint(tmp_path, cache_dir, uninterrupted):
    workdir = tmp_path / "killed"
    workdir.mkdir()
    marker = tmp_path / "save_started"
    blocked = 2 * EVERY
    proc = start(workdir, cache_dir, ELECTRA_TEST_BLOCK_FINALIZE_STEP=str(blocked), ELECTRA_TEST_MARKER=str(marker))
    wait_for_file(marker, proc, workdir)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    partial = Path(marker.read_text())
    assert partial.exists() and (partial / "state").exists(), "the killed save left no partial folder to ignore"
    assert steps_on_disk(workdir) == [EVERY], "only the complete checkpoint may look like a step"

    proc = start(workdir, cache_dir)
    assert finish(proc) == 0, log_tail(workdir)
    assert f"resumed from step {EVERY} " in log_path(workdir).read_text()
    assert not partial.exists()  # the leftover tmp folder was cleaned up, never read
    resumed = train_lines(workdir)
    for step in range(EVERY + 1, TOTAL_STEPS + 1):
        assert resumed[step]["loss"] == uninterrupted[step]["loss"], step


def test_metadata_seq_length_mismatch_names_both(tmp_path):
    from electra_jax import config as config_lib
    from electra_jax.data.records import apply_records_metadata

    (tmp_path / "pretrain_data.tfrecord-0-of-1").write_bytes(b"")
    (tmp_path / "metadata.json").write_text(json.dumps({"max_seq_length": 512, "vocab_size": 30522}))
    config = config_lib.load("configs/pretrain.py:tiny", {"data.train_files": str(tmp_path / "*.tfrecord*")})
    with pytest.raises(ValueError, match=r"max_seq_length = 512 but config.data.max_seq_length = 128"):
        apply_records_metadata(config)


def test_metadata_sets_special_ids_and_vocab(tmp_path):
    from electra_jax import config as config_lib
    from electra_jax.data.records import apply_records_metadata

    (tmp_path / "pretrain_data.tfrecord-0-of-1").write_bytes(b"")
    specials = {"pad_id": 0, "unk_id": 1, "cls_id": 2, "sep_id": 3, "mask_id": 4}
    (tmp_path / "metadata.json").write_text(json.dumps({"max_seq_length": 128, "vocab_size": 8000,
                                                        "special_ids": specials}))
    config = config_lib.load("configs/pretrain.py:tiny", {"data.train_files": str(tmp_path / "*.tfrecord*")})
    config = apply_records_metadata(config)
    assert config.model.vocab_size == 8000 and config.model.padded_vocab_size == 8064
    assert {k: config.data[k] for k in specials} == specials


def test_records_without_metadata_take_the_special_ids_from_the_named_vocabulary(tmp_path, caplog):
    """Original-ELECTRA records (no metadata.json) with our own vocabulary: the ids of its five special tokens
    (written here by hand at 0-4, so BERT's 0/100/101/102/103 would be wrong) and its size, with a warning."""
    from electra_jax import config as config_lib
    from electra_jax.data.records import apply_records_metadata

    (tmp_path / "pretrain_data.tfrecord-0-of-1").write_bytes(b"")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"word{i}" for i in range(295)]
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n")
    config = config_lib.load("configs/pretrain.py:tiny", {"data.train_files": str(tmp_path / "*.tfrecord*"),
                                                         "data.vocab": str(tmp_path / "vocab.txt")})
    assert (config.data.mask_id, config.model.vocab_size) == (103, 30522)  # the BERT defaults before
    with caplog.at_level("WARNING"):
        config = apply_records_metadata(config)
    assert {k: config.data[k] for k in config_lib.SPECIAL_FIELDS} == dict(pad_id=0, unk_id=1, cls_id=2, sep_id=3,
                                                                          mask_id=4)
    assert config.model.vocab_size == 300 and config.model.padded_vocab_size == 384
    assert "no metadata.json" in caplog.text and "data.mask_id 103 -> 4" in caplog.text


def test_cased_records_give_a_cased_checkpoint_and_refuse_another_vocabulary(tmp_path, shared_dir, uncased_vocab,
                                                                               caplog):
    """Records built cased (BERT's cased vocabulary, build_data --lower_case=false): pre-training took their
    vocabulary but kept the config's lower_case=True, so the checkpoint (and to_hf's tokenizer, finetune --init,
    predict) lowercased a cased model's input. The casing now comes from metadata.json, a pre-training resume may
    correct it, and a --config.data.vocab with other contents than the records' is refused."""
    from electra_jax import build_data
    from electra_jax import config as config_lib
    from electra_jax.checkpoint_formats import find_vocab
    from electra_jax.data import tokenizer
    from electra_jax.data.records import apply_records_metadata
    from electra_jax.checkpoints import config_to_dict
    from electra_jax.safeguards import resume_differences

    cased = shared_dir / "data" / "bert_vocab" / "cased" / "vocab.txt"
    text = tmp_path / "text.txt"
    text.write_text("Alice met Bob in Paris.\nThe United Nations met in New York.\n\nLondon and Berlin are cities.\n")
    build_data.build_pretraining_data(vocab=str(cased), output_dir=str(tmp_path / "records"), max_seq_length=16,
                                      input=str(text), num_shards=1, lower_case=False, format="numpy")
    overrides = {"data.train_files": str(tmp_path / "records" / "*.npy"), "data.max_seq_length": 16}
    default = config_lib.load("configs/pretrain.py:tiny", overrides)
    assert default.data.lower_case is True
    with caplog.at_level("WARNING"):
        config = apply_records_metadata(default.copy_and_resolve_references())
    assert "data.lower_case = False" in caplog.text
    vocab, lower_case = find_vocab(config)  # what to_hf, finetune --init and predict read from the checkpoint
    assert (vocab, lower_case) == (str(cased), False)
    assert "Paris" in tokenizer(vocab, lower_case=lower_case).tokenize("Paris")  # the cased word, not "paris"
    saved_before_the_fix = config_to_dict(config)
    saved_before_the_fix["data"]["lower_case"] = True
    forbidden, allowed = resume_differences(saved_before_the_fix, config_to_dict(config))
    assert not forbidden and ("data.lower_case", True, False) in allowed

    other = config_lib.load("configs/pretrain.py:tiny", {**overrides, "data.vocab": str(uncased_vocab)})
    with pytest.raises(ValueError, match=r"config\.data\.vocab=.*uncased.* is not the vocabulary the records were"):
        apply_records_metadata(other)
    copy = tmp_path / "copy_of_cased.txt"  # the same contents under another name is the same vocabulary
    copy.write_bytes(cased.read_bytes())
    same = apply_records_metadata(config_lib.load("configs/pretrain.py:tiny", {**overrides, "data.vocab": str(copy)}))
    assert (same.data.vocab, same.data.lower_case) == (str(copy), False)


def test_remote_records_with_and_without_metadata(tmp_path):
    """Records on a remote filesystem (TensorFlow's in-memory ram://, read through gfile as gs:// is): without a
    metadata.json the config's values stay (a missing remote file raised TensorFlow's NotFoundError, which is no
    OSError); with one, its vocabulary size and special ids are taken."""
    tf = pytest.importorskip("tensorflow", reason="remote (gs://-style) paths are read through tf.io.gfile")
    from electra_jax import config as config_lib
    from electra_jax.data.records import apply_records_metadata, records_metadata

    folder = f"ram://{tmp_path.name}/records"
    tf.io.gfile.makedirs(folder)
    with tf.io.gfile.GFile(f"{folder}/pretrain_data.tfrecord-0-of-1", "w") as f:
        f.write("")
    pattern = f"{folder}/*.tfrecord*"
    assert records_metadata(pattern) is None
    config = apply_records_metadata(config_lib.load("configs/pretrain.py:tiny", {"data.train_files": pattern}))
    assert (config.model.vocab_size, config.data.mask_id) == (30522, 103)
    with tf.io.gfile.GFile(f"{folder}/metadata.json", "w") as f:
        f.write(json.dumps({"max_seq_length": 128, "vocab_size": 8000, "special_ids": {"mask_id": 4}}))
    config = apply_records_metadata(config_lib.load("configs/pretrain.py:tiny", {"data.train_files": pattern}))
    assert (config.model.vocab_size, config.data.mask_id) == (8000, 4)


def test_a_glob_that_matches_nothing_names_its_field_before_any_work(tmp_path):
    """train_files: the run stops before a compile and leaves no checkpoints/ folder; eval_files: named as such
    (it used to fail after the compile, naming train_files), and only checked when an eval will run."""
    from electra_jax import config as config_lib
    from electra_jax import pretrain
    from electra_jax.data.inputs import check_eval_files

    workdir = tmp_path / "run"
    config = config_lib.load("configs/pretrain.py:tiny", {"data.train_files": str(tmp_path / "none" / "*.tfrecord*")})
    with pytest.raises(ValueError, match=r"No record files match .*none.*; check config\.data\.train_files"):
        pretrain.train_and_evaluate(config, str(workdir))
    assert not (workdir / "checkpoints").exists()
    config = config_lib.load("configs/pretrain.py:tiny", {"data.eval_files": str(tmp_path / "noeval" / "*")})
    with pytest.raises(ValueError, match=r"No record files match .*noeval.*; check config\.data\.eval_files"):
        check_eval_files(config)
    config.train.eval_every = 0
    check_eval_files(config)  # no eval: nothing to check


@pytest.mark.slow
def test_real_records_run_learns_and_writes_outputs(tmp_path, shared_dir, uncased_vocab, cache_dir):
    """Records built from ../shared/data/text by build_data: checkpoints, events, metrics.jsonl, eval improves."""
    text = shared_dir / "data" / "text"
    train_text = ",".join(str(p) for p in sorted((text / "state_union").glob("19[4-7]*.txt")))
    eval_text = str(text / "state_union" / "2006-GWBush.txt")
    run_env = env(cache_dir)
    for name, source in (("train", train_text), ("eval", eval_text)):
        proc = subprocess.run([sys.executable, "-m", "electra_jax.build_data", f"--input={source}",
                               f"--vocab={uncased_vocab}", f"--output_dir={tmp_path / name}",
                               "--max_seq_length=64", "--num_shards=2", "--num_processes=1"],
                              cwd=REPO, env=run_env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    workdir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "electra_jax.pretrain", "--config=configs/pretrain.py:tiny", f"--workdir={workdir}",
         f"--config.data.train_files={tmp_path / 'train'}/*.tfrecord*",
         f"--config.data.eval_files={tmp_path / 'eval'}/*.tfrecord*", "--config.data.max_seq_length=64",
         "--config.train.batch_size=16", "--config.train.steps=80", "--config.optim.learning_rate=2e-3",
         "--config.optim.warmup_steps=10", "--config.train.eval_every=40", "--config.train.eval_steps=4",
         "--config.train.log_every=10", "--config.checkpoint.every_steps=40", "--config.train.progress=log"],
        cwd=REPO, env=run_env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(ln) for ln in (workdir / "metrics.jsonl").read_text().splitlines()]
    evals = {ln["step"]: ln for ln in lines if ln["split"] == "eval"}
    assert sorted(evals) == [0, 40, 80]
    first, last = evals[0], evals[80]
    assert last["eval_loss"] < first["eval_loss"] - 5.0
    assert last["eval_mlm_accuracy"] > first["eval_mlm_accuracy"] + 0.03
    train = [ln for ln in lines if ln["split"] == "train"]
    assert {"step", "loss", "mlm_loss", "disc_loss", "mlm_accuracy", "disc_accuracy", "disc_auc", "learning_rate",
            "tokens_per_sec", "mfu"} <= set(train[-1])
    assert steps_on_disk(workdir) == [40, 80]
    assert any(p.name.startswith("events.out.tfevents") for p in workdir.iterdir())
