"""Inputs that used to "succeed" with less or no data: an empty corpus, and one glob of several that matches
nothing (a typo). Each now stops with one line naming what to fix; nothing is written."""

import os
import re
import subprocess
import sys

import pytest

from electra_jax import build_data
from electra_jax.data import inputs
from electra_jax.data.example_builder import expand_text_globs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture()
def corpus(tmp_path):
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.txt").write_text("The first sentence is here.\nA second one follows it.\n\nNew doc.\n")
    (tmp_path / "empty.txt").write_text("\n\n  \n")
    return tmp_path


def test_a_glob_of_several_that_matches_nothing_is_named(corpus):
    good, typo = str(corpus / "text" / "*.txt"), str(corpus / "txet" / "*.txt")
    assert expand_text_globs(good) == [str(corpus / "text" / "a.txt")]
    with pytest.raises(ValueError, match=rf"--input: the pattern '{re.escape(typo)}' of .* matches no files "
                                         r"\(the others do\)"):
        expand_text_globs(f"{good},{typo}")
    (corpus / "r").mkdir()
    (corpus / "r" / "pretrain_data-0-of-1.npy").write_bytes(b"")
    records, missing = str(corpus / "r" / "*.npy"), str(corpus / "rr" / "*.npy")
    inputs.check_files_match(records, "config.data.train_files")  # one pattern that matches: fine
    with pytest.raises(ValueError, match=rf"config.data.train_files: the pattern '{re.escape(missing)}' of .* "
                                         "matches no files"):
        inputs.check_files_match(f"{records},{missing}", "config.data.train_files")


def test_build_data_of_an_empty_corpus_fails_and_writes_nothing(corpus, shared_dir):
    vocab = shared_dir / "data" / "bert_vocab" / "uncased" / "vocab.txt"
    out = corpus / "records"
    with pytest.raises(ValueError, match=r"build_data made no examples from 1 input\(s\) \(0 tokens\): 1 input\(s\) "
                                         r"hold no text.*nothing was written"):
        build_data.build_pretraining_data(vocab=str(vocab), output_dir=str(out), input=str(corpus / "empty.txt"),
                                          format="numpy", num_shards=1, num_processes=1)
    assert not (out / "metadata.json").exists() and not list(out.glob("*.npy"))  # also when out/ was not made
    empty = build_data.build_pretraining_data(vocab=str(vocab), output_dir=str(out / "heldout"), format="numpy",
                                              input=str(corpus / "empty.txt"), num_shards=1, num_processes=1,
                                              allow_empty=True)  # a held-out split may be empty, on request
    assert empty["num_examples"] == 0 and (out / "heldout" / "metadata.json").exists()
    meta = build_data.build_pretraining_data(vocab=str(vocab), output_dir=str(out), max_seq_length=16,
                                             input=str(corpus / "text" / "a.txt"), format="numpy", num_shards=1,
                                             num_processes=1)
    assert meta["num_examples"] > 0 and (out / "metadata.json").exists()


def test_build_vocab_of_an_empty_corpus_is_one_line(corpus):
    done = subprocess.run([sys.executable, "-m", "electra_jax.build_vocab", f"--input={corpus / 'empty.txt'}",
                           "--vocab_size=100", "--kind=sentencepiece", f"--output={corpus / 'sp.model'}"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1].startswith("build_vocab: error: --input=")
    assert "hold no text" in done.stderr and not (corpus / "sp.model").exists()


def test_a_mistyped_command_gets_the_closest_one():
    from electra_jax import cli

    assert cli.did_you_mean(["tohf"], ["to_hf", "from_hf", "from_tf", "check"]) == " (did you mean 'to_hf'?)"
    assert cli.did_you_mean(["zzz"], ["to_hf", "from_hf"]) == ""
    done = subprocess.run([sys.executable, "-m", "electra_jax.predict", "detcet"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 1 and "(got ['detcet']) (did you mean 'detect'?)" in done.stderr
