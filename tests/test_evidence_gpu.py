"""The GPU evidence run, checked on a CPU: the gpu budget is the paper's Small pair at >= 1e16 FLOPs each, the
objectives map to their config fields and fail at once when wrong, the bundle carries the corpus, GLUE and vocabulary
losslessly within its size, the report's statistics, and the device script rehearsed end to end (SMOKE=1) with no
TensorFlow."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import mini
import pytest

from electra_jax.experiments import budgets
from electra_jax.experiments import compute_efficiency as ce
from electra_jax.experiments.bundle import pack, unpack
from electra_jax.experiments.finetuning import finetune_config, priority_order
from electra_jax.experiments.pretraining import check_configs, plan_steps, pretrain_config
from electra_jax.experiments.report import summarize

REPO = Path(__file__).resolve().parents[1]
GPU = budgets.BUDGETS["gpu"]
NO_TENSORFLOW = "import sys\nsys.modules['tensorflow'] = None\nsys.modules['tensorflow_datasets'] = None\n"
# benchmarks/results/2026-11-26-h200.json: model_tflops_per_step of the Small 128 x 128 step whose time (14.7 ms)
# the prediction in docs/EVIDENCE.md scales.
SMALL_STEP_FLOPS = 1.149953703936e12


def test_the_gpu_budget_is_electra_small_against_bert_small(tmp_path):
    electra = pretrain_config(GPU, 30522, tmp_path, "electra", GPU.electra_steps)
    mlm = pretrain_config(GPU, 30522, tmp_path, "mlm", GPU.electra_steps)
    for config in (electra, mlm):
        m = config.model
        assert (m.num_layers, m.hidden_size, m.embedding_size, m.num_heads, m.intermediate_size) == (12, 256, 128, 4,
                                                                                                     1024)
        assert (config.data.max_seq_length, config.train.batch_size, config.optim.learning_rate) == (128, 128, 5e-4)
        assert (m.dtype, m.attention, config.data.format) == ("bfloat16", "cudnn", "numpy")
    assert electra.objective.kind == "electra" and electra.model.generator_hidden_size == 64  # generator 1/4
    assert mlm.objective.kind == "mlm"
    assert (mlm.objective.mlm_mask_token_prob, mlm.objective.mlm_random_token_prob) == (0.8, 0.1)  # 80/10/10


def test_the_gpu_plan_gives_each_objective_at_least_1e16_flops_at_three_points(tmp_path):
    plan = plan_steps(GPU, 30522, tmp_path, ("electra", "mlm"))
    electra, mlm = plan["electra"], plan["mlm"]
    assert electra["flops_per_step"] == SMALL_STEP_FLOPS and electra["steps"] == 9000
    assert min(electra["total_flops"], mlm["total_flops"]) >= 1e16
    assert abs(mlm["total_flops"] - electra["total_flops"]) <= mlm["flops_per_step"] * GPU.num_points / 2
    assert mlm["steps"] > electra["steps"] and len(electra["points"]) == len(mlm["points"]) == 3


@pytest.mark.parametrize("budget", ["gpu", "cpu"])
def test_all_four_objectives_build_and_share_the_budget(tmp_path, budget):
    budget = budgets.BUDGETS[budget]
    objectives = ("electra", "mlm", "electric", "electra_gdes")
    check_configs(budget, objectives)  # Electric included, with the gpu budget's cuDNN speed settings
    configs = {name: pretrain_config(budget, 30522, tmp_path, name, budget.electra_steps) for name in objectives}
    # Only Electric leaves the budget's attention: the others keep their speed settings.
    attention = configs["electra"].model.attention
    assert [configs[name].model.attention for name in objectives] == [attention, attention, "xla", attention]
    assert configs["electra_gdes"].model.embedding_sharing == "gdes"
    assert configs["electric"].objective.kind == "electric"
    plan = plan_steps(budget, 30522, tmp_path, objectives)
    total = plan["electra"]["total_flops"]
    assert plan["electra_gdes"]["steps"] == plan["electra"]["steps"]  # GDES adds no FLOPs
    for name in objectives:
        entry = plan[name]
        assert entry["steps"] % budget.num_points == 0
        assert abs(entry["total_flops"] - total) <= entry["flops_per_step"] * budget.num_points / 2, name
    if budget.name == "gpu":  # the numbers docs/EVIDENCE.md gives
        assert (plan["electric"]["steps"], plan["electra_gdes"]["steps"]) == (6648, 9000)
        assert plan["electric"]["flops_per_step"] == pytest.approx(1.557e12, rel=5e-4)


def test_the_gpu_fine_tuning_protocol(tmp_path):
    config = finetune_config(GPU, "sst2", tmp_path, tmp_path / "vocab.txt", control=True)
    assert (config.model.dtype, config.model.attention, config.data.max_seq_length) == ("bfloat16", "xla", 128)
    assert (config.train.max_train_examples, config.train.epochs, config.optim.learning_rate) == (3000, 3, 3e-4)
    # Three seeds for every model, trained together (one vmapped step per task: one compile, one launch sequence).
    assert budgets.seeds_for(GPU, top=True) == budgets.seeds_for(GPU, top=False) == (0, 1, 2)
    assert config.train.vmap_seeds and config.train.seeds == "0,1,2"
    models = [{"objective": "electra", "flops": 1.0, "top": False}, {"objective": "mlm", "flops": 3.0, "top": True},
              {"objective": "none", "flops": 0.0, "top": True}, {"objective": "electra", "flops": 3.0, "top": True},
              {"objective": "mlm", "flops": 1.0, "top": False}]
    assert [(m["objective"], m["flops"]) for m in priority_order(models)] == [
        ("none", 0.0), ("electra", 3.0), ("mlm", 3.0), ("electra", 1.0), ("mlm", 1.0)]


def test_objective_names_map_to_the_agreed_config_fields():
    """The agreed objective names and their config fields (a misspelt field fails at once: next test)."""
    assert budgets.OBJECTIVES == {
        "electra": {"objective.kind": "electra"},
        "mlm": {"objective.kind": "mlm"},
        "electric": {"objective.kind": "electric", "model.attention": "xla"},
        "electra_gdes": {"objective.kind": "electra", "model.embedding_sharing": "gdes"},
    }
    assert budgets.DEFAULT_OBJECTIVES == ("electra", "mlm")


def test_an_unknown_objective_or_field_fails_before_any_stage(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"unknown \['bert'\]; choose from \['electra', 'mlm'"):
        budgets.check_objectives(["electra", "bert"])
    monkeypatch.setitem(budgets.OBJECTIVES, "typo", {"model.embeding_sharing": "gdes"})
    with pytest.raises(ValueError, match=r"objective 'typo' .*unknown config field 'model.embeding_sharing'"):
        check_configs(GPU, ("electra", "typo"))
    monkeypatch.setitem(budgets.OBJECTIVES, "bad_value", {"objective.kind": "elektra"})
    with pytest.raises(ValueError, match=r"objective 'bad_value' .*config.objective.kind = 'elektra'"):
        ce.run(str(tmp_path / "out"), budgets.BUDGETS["toy"], text_dirs=[], python_doc_dir="", glue_dir="",
               objectives=("electra", "bad_value"))
    assert not (tmp_path / "out").exists()


def test_the_command_line_refuses_an_unknown_objective_at_once(tmp_path):
    done = subprocess.run([sys.executable, "-m", "electra_jax.experiments.compute_efficiency", "--budget=toy",
                           f"--output_dir={tmp_path / 'out'}", "--objectives=electra,electrik"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "unknown ['electrik']" in done.stderr
    assert not (tmp_path / "out").exists()


def test_summary_lines_follow_a_hand_computation():
    scores = {("sst2", 0): 80.0, ("sst2", 1): 84.0, ("sst2", 2): 82.0, ("rte", 0): 60.0, ("rte", 1): 54.0,
              ("rte", 2): 58.0}
    rows = [{"objective": "electra", "pretrain_flops": 1e16, "task": t, "seed": s, "metric": "accuracy", "score": v}
            for (t, s), v in scores.items()]
    rows += [{"objective": "none", "pretrain_flops": 0.0, "task": "sst2", "seed": 0, "metric": "accuracy",
              "score": 70.0}]
    control, electra = summarize(rows, ("sst2", "rte"))
    assert electra["medians"] == {"sst2": 82.0, "rte": 58.0} and electra["average"] == 70.0
    # per-seed averages 70, 69, 70
    assert electra["seed_sd"] == pytest.approx(statistics.stdev([70.0, 69.0, 70.0]))
    assert control["objective"] == "none" and control["average"] != control["average"]  # rte missing: no average


def _fake_glue(root: Path) -> Path:
    for task, (folder, _, _) in budgets.TASKS.items():
        (root / folder).mkdir(parents=True)
        for split in ("train", "dev"):
            (root / folder / f"{split}.tsv").write_text(f"sentence\tlabel\n{task} {split} one\t1\n{task} two\t0\n")
    return root


def test_the_bundle_carries_corpus_glue_and_vocabulary_losslessly(tmp_path, shared_dir, uncased_vocab):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    text = shared_dir / "data" / "text" / "state_union"
    for i, name in enumerate(("1961-Kennedy.txt", "1962-Kennedy.txt", "1963-Kennedy.txt")):
        shutil.copyfile(text / name, corpus / f"train_{i:02d}.txt")
    shutil.copyfile(text / "1964-Johnson.txt", corpus / "heldout.txt")
    (corpus / "notes.md").write_text("not part of the corpus")
    glue = _fake_glue(tmp_path / "glue")
    manifest = pack(str(corpus), str(uncased_vocab), str(glue), str(tmp_path / "bundle"))
    files = sorted(p.relative_to(tmp_path / "bundle").as_posix() for p in (tmp_path / "bundle").rglob("*")
                   if p.is_file() and p.name != "bundle.json")
    assert files == ["corpus/heldout.tokens.xz", "corpus/train_00.tokens.xz", "corpus/train_01.tokens.xz",
                     "corpus/train_02.tokens.xz", "glue.tar.xz", "vocab.txt"]
    assert manifest["total_bytes"] == sum((tmp_path / "bundle" / f).stat().st_size for f in files)
    paths = unpack(str(tmp_path / "bundle"), str(tmp_path / "inputs"))
    for source in glue.rglob("*.tsv"):
        assert (Path(paths["glue_dir"]) / source.relative_to(glue)).read_bytes() == source.read_bytes()
    assert Path(paths["vocab"]).read_bytes() == uncased_vocab.read_bytes()
    # build_data reads the carried corpus into the examples of the text it came from
    from electra_jax.build_data import build_pretraining_data

    digests = []
    for source in (str(corpus / "train_*.txt"), str(Path(paths["corpus_dir"]) / "train_*.tokens.xz")):
        out = tmp_path / f"records{len(digests)}"
        build_pretraining_data(vocab=paths["vocab"], output_dir=str(out), max_seq_length=128, input=source,
                               num_shards=2, num_processes=1, progress=False, format="numpy")
        digests.append([hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("*.npy"))])
    assert digests[0] == digests[1]
    # a file damaged on the way is caught before anything reads it
    damaged = tmp_path / "bundle" / "corpus" / "train_01.tokens.xz"
    damaged.write_bytes(damaged.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ValueError, match="train_01.tokens.xz is missing or differs"):
        unpack(str(tmp_path / "bundle"), str(tmp_path / "again"))


def test_the_bundle_keeps_within_its_size_by_leaving_out_training_files(tmp_path, shared_dir, uncased_vocab):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, path in enumerate(sorted((shared_dir / "data" / "text" / "state_union").glob("19[67]*.txt"))[:6]):
        shutil.copyfile(path, corpus / f"train_{i:02d}.txt")
    limit_mib = 0.25  # the vocabulary alone takes 0.22 MiB, each file about 0.01
    manifest = pack(str(corpus), str(uncased_vocab), str(_fake_glue(tmp_path / "glue")), str(tmp_path / "bundle"),
                    max_mib=limit_mib)
    kept, left_out = manifest["corpus"]["train"], manifest["corpus"]["left_out"]
    assert kept and left_out and len(kept) + len(left_out) == 6
    assert manifest["total_bytes"] <= limit_mib * (1 << 20)
    assert sorted(p.name for p in (tmp_path / "bundle" / "corpus").iterdir()) == sorted(f["file"] for f in kept)


def test_the_device_script_is_valid_bash():
    mini.check_shell_script(REPO / "benchmarks" / "run_evidence_gpu.sh")
    mini.check_shell_script(REPO / "tests" / "gpu_image.sh")  # the suite under the GPU image's versions


_FAKE_PYTHON = r"""#!/usr/bin/env bash
# Stands in for python: the set-up probes succeed, unpack makes its folder, compute_efficiency sleeps FAKE_SLEEP s.
echo "$*" >> "$CALLS"
case "$*" in
    *"import tensorflow"*) exit 1 ;;
    *"-c "*) exit 0 ;;
    *"bundle unpack"*)
        for a in "$@"; do
            [[ "$a" == --output_dir=* ]] && mkdir -p "${a#--output_dir=}/glue" && echo "${a#--output_dir=}"
        done
        exit 0 ;;
    *compute_efficiency*) exec sleep "$FAKE_SLEEP" ;;
esac
"""


@pytest.mark.parametrize("sleep_s, limit_s", [(0, 570), (60, 22)])
def test_the_device_script_ends_within_its_limit_with_the_set_up_and_kill_grace_counted(tmp_path, sleep_s, limit_s):
    """LIMIT_S counts from the script's start: the experiment gets LIMIT_S - set-up - 15 s (its kill grace), its
    fine-tuning deadline 40 s less; one that overruns is stopped and the script still ends inside LIMIT_S."""
    fake = tmp_path / "python"
    fake.write_text(_FAKE_PYTHON)
    fake.chmod(0o755)
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "bundle.json").write_text("{}")
    env = dict(os.environ, OUT=str(tmp_path / "out"), BUNDLE=str(tmp_path / "bundle"), PYTHON=str(fake),
               CALLS=str(tmp_path / "calls"), FAKE_SLEEP=str(sleep_s), LIMIT_S=str(limit_s), WORK=str(tmp_path / "w"))
    env.pop("SMOKE", None)
    began = time.monotonic()
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "run_evidence_gpu.sh")], env=env, capture_output=True,
                          text=True, timeout=120)
    wall = time.monotonic() - began
    log = (tmp_path / "out" / "run.log").read_text()
    elapsed, left = map(int, re.search(r"=== compute_efficiency --budget=gpu \((\d+)s elapsed, (-?\d+)s left\)",
                                       log).groups())
    assert left == limit_s - elapsed - 15
    call = next(line for line in (tmp_path / "calls").read_text().splitlines() if "compute_efficiency" in line)
    assert f"--deadline_s={left - 40}" in call.split() and "--budget=gpu" in call.split()
    assert done.returncode == (124 if sleep_s > left else 0), log
    assert f"compute_efficiency exit status {done.returncode}" in log and wall < limit_s


@pytest.mark.slow
def test_the_device_script_rehearsed_on_cpu(tmp_path, shared_dir, uncased_vocab):
    """SMOKE=1: the toy budget from a packed bundle, the ml-collections wheel installed from benchmarks/wheels, no
    TensorFlow, fine-tuning in a worker process during pre-training; the report lands in $OUT within 8 files.
    About a minute of CPU (3 on the loaded dev machine): run it before spending device time."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    ce.write_corpus(corpus, [str(shared_dir / "data" / "text" / "state_union")], "", max_chars=60_000,
                    num_train_files=2)
    (corpus / "eval.txt").rename(corpus / "heldout.txt")
    pack(str(corpus), str(uncased_vocab), str(shared_dir / "data" / "glue"), str(tmp_path / "bundle"), tasks=("rte",))
    blocker = tmp_path / "no_tensorflow"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(NO_TENSORFLOW)
    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out), BUNDLE=str(tmp_path / "bundle"), SMOKE="1", FORCE_WHEEL="1",
               PYTHON=sys.executable, JAX_PLATFORMS="cpu", PYTHONPATH=str(blocker), WORK=str(tmp_path / "work"))
    env.pop("XLA_FLAGS", None)
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "run_evidence_gpu.sh"), "--objectives=electra"],
                          env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    files = sorted(p.name for p in out.iterdir())
    assert files == ["bundle.json", "compute_efficiency.json", "compute_efficiency.md", "compute_efficiency.png",
                     "compute_efficiency.summary.json", "plan.json", "run.log", "stages.json"]
    assert all((out / f).stat().st_size < 16 << 20 for f in files)
    log = (out / "run.log").read_text()
    assert "tensorflow: absent" in log and "compute_efficiency exit status 0" in log
    rows = json.loads((out / "compute_efficiency.json").read_text())
    toy = budgets.BUDGETS["toy"]
    assert {(r["objective"], r["task"]) for r in rows} == {("none", "rte"), ("electra", "rte")}
    assert len(rows) == (1 + toy.num_points) * len(toy.seeds)  # a row per model and seed (the seeds vmapped)
    assert sorted(r["seed"] for r in rows) == sorted(list(toy.seeds) * (1 + toy.num_points))
    stages = json.loads((out / "stages.json").read_text())
    control = stages[next(k for k in stages if k.startswith("finetune_") and k.endswith("_none_rte"))]
    assert control["done"] and stages["pretrain_electra"]["done"]
    assert "finetune_rte.log" in log  # the worker's log tail
    summary = json.loads((out / "compute_efficiency.summary.json").read_text())
    assert summary["budget"] == json.loads(json.dumps(dataclasses.asdict(dataclasses.replace(
        toy, finetune_workers=1))))


@pytest.mark.slow
def test_a_tfds_corpus_becomes_the_experiments_records(tmp_path, uncased_vocab):
    """--tfds: the records stage builds train and held-out numpy records from a prepared TFDS dataset (about a
    minute on the loaded dev machine: TFDS prepares the dataset, each build_data process imports TensorFlow)."""
    pytest.importorskip("tensorflow_datasets")
    from tfds_data import make_tiny_tfds

    from electra_jax.experiments.inputs import build_records
    from electra_jax.experiments.stages import Stages

    docs = [f"Document {i} has a first sentence.\nIts second sentence is a little longer than that." for i in range(40)]
    name = make_tiny_tfds(tmp_path / "tfds", docs, "ElectraJaxEvidenceDocs")
    corpus = {"kind": "tfds", "train": f"{name}:train[:90%]", "eval": f"{name}:train[90%:]"}
    budget = dataclasses.replace(budgets.BUDGETS["toy"], records_format="numpy", build_processes=1)
    counts = build_records(tmp_path / "out", budget, corpus, uncased_vocab, Stages(tmp_path / "stages.json"),
                           tfds_data_dir=str(tmp_path / "tfds"))
    assert counts["train"] + counts["eval"] >= 40 and counts["eval"] > 0 and counts["format"] == "numpy"
    assert sorted(p.name for p in (tmp_path / "out" / "records" / "train").glob("*.npy")) == [
        "pretrain_data-0-of-2.npy", "pretrain_data-1-of-2.npy"]


def _tiny_glue(folder: Path, sizes: dict[str, tuple[int, int]]) -> Path:
    for name, (train, dev) in sizes.items():
        (folder / name).mkdir(parents=True)
        for split, rows in (("train", train), ("dev", dev)):
            lines = ["header"] + [f"row {i}" for i in range(rows)]
            (folder / name / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return folder


@pytest.mark.parametrize("vmap_seeds", [True, False])
def test_the_gpu_plan_follows_a_hand_computation(tmp_path, vmap_seeds):
    """gpu_plan.predict on made-up measurements, every number worked out by hand below."""
    from electra_jax.experiments import gpu_plan

    glue = _tiny_glue(tmp_path / "glue", {"RTE": (1601, 64), "MRPC": (400, 32)})
    budget = dataclasses.replace(GPU, tasks=("rte", "mrpc"), max_train_examples=1600, epochs=2,
                                 finetune_batch_size=16, seeds=(0, 1, 2), early_seeds=(), vmap_seeds=vmap_seeds)
    cpu = {"electra": {"step_s": 0.2, "compile_s": 10.0}, "mlm": {"step_s": 0.1, "compile_s": 8.0},
           "finetune": {"step_s": 0.4, "compile_s": 4.0}}
    gpu_row = {"run": "r", "variant": "v", "step_ms": 10.0, "compile_s": 50.0, "tokens_per_sec": 1.0}
    out = gpu_plan.predict(budget, cpu, gpu_row, glue, records={"tokens_per_s": 1000.0}, corpus_tokens=8e6)
    # RTE: 1600 of 1601 examples, 100 steps of 16 x 2 epochs; MRPC: 400 pairs doubled (A/B swapped) = 800 rows,
    # 50 steps x 2. Dev: 2 + 1 eval batches of 32 per epoch.
    assert out["tasks"]["rte"] == {"train_examples": 1600, "rows": 1600, "dev": 64, "epochs": 2, "steps_per_seed": 200}
    assert out["tasks"]["mrpc"]["rows"] == 800 and out["tasks"]["mrpc"]["steps_per_seed"] == 100
    # Pre-training: 9000 ELECTRA steps x 10 ms; the MLM step 10 ms x 0.1 / 0.2 = 5 ms over the 9711 steps of equal
    # FLOPs; compiles 50 s x 10 / 10 and x 8 / 10; records 8e6 tokens / (1000 tokens/s x 8 processes) = 1000 s.
    assert out["stages_s"] == {"startup": 20.0, "records": 1000.0, "ELECTRA compile": 50.0, "ELECTRA steps": 90.0,
                               "MLM compile": 40.0, "MLM steps": round(9711 * 0.005, 1)}
    pretraining = 20 + 1000 + 50 + 90 + 40 + 9711 * 0.005
    # Fine-tuning step: 10 ms x 0.4 / 0.2 = 20 ms (launch-bound, high), x 16 / 128 = 2.5 ms (FLOPs-bound, low).
    # One seed: 300 steps + 6 eval batches / 3 = 302 step-times: 6.04 s high, 0.755 s low.
    # 21 model-seeds: control 3, the 2 top points 6, the 4 earlier points 12 (3 seeds each).
    assert out["model_seeds"] == {"control": 3, "top": 6, "earlier": 12}
    low, high = out["scenarios"]["low"], out["scenarios"]["high"]
    assert (low["finetune_step_ms"], high["finetune_step_ms"]) == (2.5, 20.0)
    assert (low["finetune_s_per_model_seed"], high["finetune_s_per_model_seed"]) == (0.8, 6.0)  # rounded 0.755, 6.04
    # Low: 21 x 0.755 = 15.855 s, 3 x 0.755 after pre-training (the top MLM model's seeds), the rest hidden under
    # what the GPU would otherwise wait through: ELECTRA's compile less the fine-tuning workers' own (50 - 20 s)
    # and MLM's (40 s), 70 s at most; plus a 10 s report.
    assert low["finetune_gpu_s"] == 15.9 and low["after_pretraining_s"] == 2.3
    assert low["total_s"] == round(pretraining + 3 * 0.755 + 10, 1)
    if vmap_seeds:  # high: each model's 3 seeds cost one seed's time; 7 models x 6.04 s, 6.04 s after, 36.24 hidden
        assert out["seed_step_units"]["high"] == {"control": 1, "top": 2, "earlier": 4}
        assert high["finetune_gpu_s"] == 42.3 and high["overlapping_compiles_s"] == 36.2
        assert high["total_s"] == round(pretraining + 6.04 + 10, 1)
    else:  # 21 x 6.04 = 126.84 s; 18.12 after; the hidden part capped by the compiles at 70 s
        assert out["seed_step_units"]["high"] == out["model_seeds"]
        assert high["finetune_gpu_s"] == 126.8 and high["overlapping_compiles_s"] == 70.0
        assert high["total_s"] == round(pretraining + 126.84 - 70 + 10, 1)


def test_the_gpu_plan_predicts_again_from_committed_measurements(tmp_path, shared_dir):
    """--measured reuses an earlier prediction's CPU times (nothing measured again: no model is built) and records
    where they came from and the flags that make this prediction again."""
    earlier = REPO / "benchmarks" / "results" / "2026-12-01-evidence-gpu-plan-vmap.json"
    output = tmp_path / "again.json"
    done = subprocess.run([sys.executable, "-m", "electra_jax.experiments.gpu_plan", f"--measured={earlier}",
                           f"--glue_dir={shared_dir / 'data' / 'glue'}", f"--output={output}", "--budget=gpu"],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert done.returncode == 0, done.stderr[-2000:]
    again, before = json.loads(output.read_text()), json.loads(earlier.read_text())
    assert again["cpu_measured"] == before["cpu_measured"] and again["measured_in"] == str(earlier)
    assert again["records_measured"] == before["records_measured"] and again["corpus_tokens"] == before["corpus_tokens"]
    assert again["command"] == (f"python -m electra_jax.experiments.gpu_plan --budget=gpu "
                                f"--glue_dir={shared_dir / 'data' / 'glue'} --measured={earlier} --output={output}")
    assert again["scenarios"]["low"]["total_s"] <= again["scenarios"]["high"]["total_s"] <= 600
