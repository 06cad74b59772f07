"""The compute-efficiency experiment (ELECTRA vs masked LM at equal compute) end to end at the toy budget (its
corpus cleaners are tested in tests/test_corpus.py).

The end-to-end test runs the real command in a subprocess, checks every output file and the row schema, that the
two objectives were given the same pre-training FLOPs, and that a rerun resumes (redoes nothing). The toy budget
takes well under a minute on an idle 2-core machine; the wall-time bound is only asserted with
ELECTRA_STRICT_TIMING=1 because shared CI machines are often loaded.
"""

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from electra_jax.experiments import compute_efficiency as ce
from electra_jax.experiments import finetuning
from electra_jax.experiments.budgets import FINETUNE_FIELDS
from electra_jax.experiments.finetuning import finetune_config, finetune_tag
from electra_jax.experiments.inputs import check_budget_on_disk
from electra_jax.experiments.pretraining import pretrain_config

REPO = Path(__file__).resolve().parents[1]
ROW_KEYS = {"objective", "pretrain_flops", "task", "seed", "metric", "score"}


def _run(output_dir: Path, results: Path, *extra: str) -> tuple[subprocess.CompletedProcess, float]:
    """The command in a subprocess where TensorFlow cannot be imported (as on the GPU image), tools included."""
    blocker = output_dir.parent / "no_tensorflow"
    blocker.mkdir(exist_ok=True)
    (blocker / "sitecustomize.py").write_text(NO_TENSORFLOW)
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join([str(blocker), str(REPO), os.environ.get("PYTHONPATH", "")]))
    env.pop("XLA_FLAGS", None)
    start = time.time()
    done = subprocess.run([sys.executable, "-m", "electra_jax.experiments.compute_efficiency",
                           f"--output_dir={output_dir}", "--budget=toy", f"--results={results}", *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    return done, time.time() - start


NO_TENSORFLOW = "import sys\nsys.modules['tensorflow'] = None\nsys.modules['tensorflow_datasets'] = None\n"


def test_toy_budget_end_to_end(tmp_path, shared_dir):
    """Every stage, with no TensorFlow importable: the toy budget's records are numpy shards."""
    output_dir, results = tmp_path / "run", tmp_path / "bench" / "compute_efficiency.json"
    done, seconds = _run(output_dir, results)
    assert done.returncode == 0, done.stderr[-4000:]
    if os.environ.get("ELECTRA_STRICT_TIMING") == "1":
        assert seconds < 60, f"the toy budget took {seconds:.0f} s"

    for path in (output_dir / "results.json", output_dir / "results.md", output_dir / "compute_efficiency.png",
                 results, results.with_suffix(".md"), results.with_suffix(".png")):
        assert path.is_file() and path.stat().st_size > 0, path
    assert (output_dir / "compute_efficiency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    rows = json.loads((output_dir / "results.json").read_text())
    assert rows == json.loads(results.read_text())
    assert rows and all(set(row) == ROW_KEYS for row in rows)
    assert {row["objective"] for row in rows} == {"electra", "mlm", "none"}
    assert all(row["task"] == "rte" and row["metric"] == "accuracy" for row in rows)
    assert all(row["pretrain_flops"] == 0 for row in rows if row["objective"] == "none")
    budget = ce.BUDGETS["toy"]
    # Each score is 100 k / N percent for k right of the N dev examples (the toy cap; RTE's dev set has 277).
    n_dev = budget.max_eval_examples
    assert 0 < n_dev < 277
    for row in rows:
        right = row["score"] * n_dev / 100
        assert abs(right - round(right)) < 1e-3 and 0 <= round(right) <= n_dev, row
    assert budget.records_format == "numpy" and list((output_dir / "records" / "train").glob("*.npy"))
    assert sorted({row["seed"] for row in rows}) == list(budget.seeds)  # two seeds, trained together (vmapped)
    for objective in ("electra", "mlm"):  # rows at each compute point (one task)
        assert len({row["pretrain_flops"] for row in rows if row["objective"] == objective}) == budget.num_points

    # Equal compute: the MLM run's total is ELECTRA's up to rounding its steps to whole checkpoint intervals.
    plan = json.loads((output_dir / "plan.json").read_text())
    electra, mlm = plan["electra"], plan["mlm"]
    assert mlm["steps"] > electra["steps"]  # ELECTRA also pays for its generator and discriminator head
    assert abs(mlm["total_flops"] - electra["total_flops"]) <= mlm["flops_per_step"] * budget.num_points / 2 + 1
    for entry in (electra, mlm):
        for point in entry["points"]:
            assert (output_dir / "pretrain" / ("electra" if entry is electra else "mlm") / "checkpoints" /
                    str(point["step"]) / "state").is_dir()

    table = (output_dir / "results.md").read_text()
    assert "| objective | pre-train FLOPs |" in table and "| none |" in table and "| mlm |" in table

    # The summary carries each run's training-batch metrics at its compute points: the metrics.jsonl line logged
    # last at or before each checkpoint's step (the gpu budget runs no eval pass, and only the summary comes back).
    trained = json.loads((output_dir / "summary.json").read_text())["pretrain_train"]
    for objective, entry in (("electra", electra), ("mlm", mlm)):
        logged = [json.loads(line) for line in
                  (output_dir / "pretrain" / objective / "metrics.jsonl").read_text().splitlines()]
        logged = [r for r in logged if "loss" in r and not any(k.startswith("eval_") for k in r)]
        assert sorted(trained[objective], key=int) == [str(p["step"]) for p in entry["points"]]
        for point in entry["points"]:
            last = max((r for r in logged if r["step"] <= point["step"]), key=lambda r: r["step"])
            got = trained[objective][str(point["step"])]
            assert got["logged_step"] == last["step"] and got["loss"] == last["loss"]
            assert ("disc_auc" in got) == (objective == "electra") and got["mlm_accuracy"] == last["mlm_accuracy"]
            assert f"| {objective} | {last['step']} | {last['loss']:.3f} |" in table

    # A rerun finds every output and redoes nothing.
    stages_before = json.loads((output_dir / "stages.json").read_text())
    again, _ = _run(output_dir, results)
    assert again.returncode == 0, again.stderr[-4000:]
    assert json.loads((output_dir / "stages.json").read_text()) == stages_before
    assert json.loads((output_dir / "results.json").read_text()) == rows

    # Another fine-tuning protocol in the same folder reuses the corpus, records and checkpoints and fine-tunes the
    # same checkpoints again beside the first protocol's results, this time in a worker process and against a
    # deadline that has passed at once (as the gpu budget runs): the control and the top points still run, the
    # earlier points are left out.
    reprobe, _ = _run(output_dir, results, "--epochs=2", "--seeds=1", "--finetune_workers=1", "--deadline_s=1")
    assert reprobe.returncode == 0, reprobe.stderr[-4000:]
    stages_after = json.loads((output_dir / "stages.json").read_text())
    assert {k: v for k, v in stages_after.items() if not k.startswith("finetune_")} == {
        k: v for k, v in stages_before.items() if not k.startswith("finetune_")}
    new_stages = set(stages_after) - set(stages_before)
    assert new_stages and all(name.startswith("finetune_") and "-e2-" in name for name in new_stages)
    assert sorted(name.rsplit("_", 2)[-2] for name in new_stages) == ["2", "2", "none"]  # electra_2, mlm_2, control
    rows2 = json.loads((output_dir / "results.json").read_text())
    top = {objective: max(r["pretrain_flops"] for r in rows if r["objective"] == objective) for objective in
           ("electra", "mlm")}
    assert [(r["objective"], r["pretrain_flops"]) for r in rows2] == [  # one seed now, two in the first protocol
        (r["objective"], r["pretrain_flops"]) for r in rows if r["seed"] == 0 and (
            r["objective"] == "none" or r["pretrain_flops"] == top[r["objective"]])]
    assert {row["seed"] for row in rows2} == {1}
    assert len(list((output_dir / "finetune").iterdir())) == 2
    log = (output_dir / "logs" / "finetune_rte.log").read_text()
    assert "leaving out electra_1" in log and "leaving out mlm_1" in log


def test_with_a_deadline_only_earlier_points_that_fit_are_kept():
    toy = dataclasses.replace(ce.BUDGETS["toy"], seeds=(0, 1, 2), early_seeds=(0,))
    models = [{"name": "electra_1", "objective": "electra", "top": False},
              {"name": "mlm_1", "objective": "mlm", "top": False}]
    assert finetuning._fitting(models, toy, deadline=1005.0, seed_seconds=[4.0, 4.0], now=1000.0) == models  # 1 seed
    assert finetuning._fitting(models, toy, deadline=1003.0, seed_seconds=[4.0], now=1000.0) == []
    assert finetuning.is_headline({"objective": "none"}) and not finetuning.is_headline(models[0])


@pytest.mark.parametrize("flag", ["--epochs=-1", "--max_train_examples=-5"])
def test_negative_fine_tuning_overrides_are_usage_errors(tmp_path, flag):
    done, _ = _run(tmp_path / "run", tmp_path / "r.json", flag)
    assert done.returncode != 0 and flag.split("=")[0] + " must be >= 0" in done.stderr
    assert not (tmp_path / "run").exists()  # refused before any stage


def test_a_different_budget_in_the_same_folder_is_refused(tmp_path):
    (tmp_path / "budget.json").write_text(json.dumps({**ce.dataclasses.asdict(ce.BUDGETS["toy"]), "seq_len": 999}))
    with pytest.raises(ValueError, match="seq_len"):
        ce.run(str(tmp_path), ce.BUDGETS["toy"], text_dirs=[], python_doc_dir="", glue_dir="")
    # Fine-tuning fields alone may differ (the test above reruns with other ones); the tag tells protocols apart.
    toy = ce.BUDGETS["toy"]
    tags = {finetune_tag(dataclasses.replace(toy, **{field: value}))
            for field, value in [("epochs", 7), ("max_train_examples", 5), ("max_eval_examples", 6), ("seeds", (4,)),
                                 ("finetune_seq_len", 16), ("finetune_batch_size", 3), ("finetune_size", "small"),
                                 ("early_seeds", (0,))]}
    assert len(tags | {finetune_tag(toy)}) == 9
    assert set(FINETUNE_FIELDS) <= set(dataclasses.asdict(toy)) and "seq_len" not in FINETUNE_FIELDS


def test_a_folder_of_the_cpu_run_written_before_the_new_budget_fields_still_resumes(tmp_path):
    """benchmarks/results/compute_efficiency.* came from a folder whose budget.json predates records_format, vocab,
    fast, early_seeds and finetune_workers: their defaults are that run's settings, so it is the same budget."""
    cpu = ce.BUDGETS["cpu"]
    old = {k: v for k, v in dataclasses.asdict(cpu).items()
           if k not in ("records_format", "vocab", "fast", "early_seeds", "finetune_workers")}
    (tmp_path / "budget.json").write_text(json.dumps(old))
    check_budget_on_disk(tmp_path, cpu)
    with pytest.raises(ValueError, match="records_format"):
        check_budget_on_disk(tmp_path, dataclasses.replace(cpu, records_format="numpy"))


@pytest.mark.parametrize("name", sorted(ce.BUDGETS))
def test_the_control_is_the_pretrained_discriminator(name, tmp_path):
    """The no-pre-training control fine-tunes the network the checkpoints hold, whatever recipe size fine-tunes."""
    budget = ce.BUDGETS[name]
    pretrained = pretrain_config(budget, 1000, tmp_path, "electra", budget.num_points).model
    control = finetune_config(budget, "rte", tmp_path, tmp_path / "vocab.txt", control=True)
    for field in ("num_layers", "hidden_size", "embedding_size", "intermediate_size", "num_heads",
                  "max_position_embeddings", "hidden_dropout", "attention_dropout"):
        assert control.model[field] == pretrained[field], field
    # The recipe stays finetune_size's: ELECTRA-Small's fine-tuning LR is 3e-4 (paper Table 7); tiny's is ours.
    assert control.optim.learning_rate == {"tiny": 1e-3, "small": 3e-4}[budget.finetune_size]


def test_a_diverged_model_is_left_out_and_the_others_are_fine_tuned(tmp_path, shared_dir, uncased_vocab, monkeypatch):
    """One model's NonFiniteLossError costs its own results, with the reason beside them; the next model runs, and a
    rerun does not try the diverged one again."""
    import types

    from electra_jax import finetune
    from electra_jax.experiments.stages import Stages

    tried = []

    class Session:  # stands in for finetune.TaskSession: no featurizing, no training
        def __init__(self, config, tokenizer):
            self.data = types.SimpleNamespace(num_train=8)

        def fine_tune(self, workdir, pretrained, seeds, init):
            tried.append(Path(workdir).parent.name)
            if "electra" in workdir:
                raise finetune.NonFiniteLossError("seed 0: the training loss is nan at step 3 (epoch 1 of 2)")
            Path(workdir).mkdir(parents=True, exist_ok=True)
            results = {"seconds": 2.0, "best": {"accuracy": 0.5}}
            (Path(workdir) / "results.json").write_text(json.dumps(results))
            return results

    monkeypatch.setattr(finetune, "TaskSession", Session)
    models = [{"name": name, "objective": name.split("_")[0], "init": None, "flops": 1.0, "top": True}
              for name in ("electra_1", "mlm_1")]
    results = []

    def run():
        finetuning.finetune_task("rte", models, budget=ce.BUDGETS["toy"], out=tmp_path, protocol="p",
                                 glue_dir=shared_dir / "data" / "glue", vocab=uncased_vocab,
                                 stages=Stages(tmp_path / "stages.json"), on_result=lambda: results.append(1))

    run()
    assert tried == ["electra_1", "mlm_1"] and results == [1]
    reason = finetuning.results_path(tmp_path, "p", models[0], "rte").parent / finetuning.DIVERGED
    assert "the training loss is nan at step 3" in reason.read_text()
    assert not finetuning.results_path(tmp_path, "p", models[0], "rte").exists()
    assert finetuning.results_path(tmp_path, "p", models[1], "rte").exists()
    run()  # a rerun: both are settled
    assert tried == ["electra_1", "mlm_1"]
    # The report names the pair and why.
    from electra_jax.experiments import report

    run_record = {"budget": {"tasks": ["rte", "mrpc"]}, "protocol": "p", "models": models}
    diverged = report.diverged(tmp_path, run_record)  # what write_report puts in summary.json
    assert diverged == [{"model": "electra_1", "task": "rte", "reason": reason.read_text().strip()}]


def test_command_line_overrides_reach_the_fine_tuning_configs(tmp_path, monkeypatch):
    """--vmap_seeds=false trains the gpu budget's seeds one at a time, --seeds and --tasks replace the budget's,
    and nothing else of the budget changes."""
    import types

    flags = dict(budget="gpu", tasks=["rte", "cola"], seeds=["3", "4"], max_train_examples=None, epochs=None,
                 electra_steps=None, finetune_workers=None, fast=None, vmap_seeds=False)
    monkeypatch.setattr(ce, "FLAGS", types.SimpleNamespace(**flags))
    budget = ce.budget_from_flags()
    gpu = ce.BUDGETS["gpu"]
    assert gpu.vmap_seeds and not budget.vmap_seeds
    assert dataclasses.replace(budget, tasks=gpu.tasks, seeds=gpu.seeds, vmap_seeds=True) == gpu
    config = finetune_config(budget, "rte", tmp_path, tmp_path / "vocab.txt", control=True)
    assert not config.train.vmap_seeds and config.train.seeds == "3,4"
    assert budget.tasks == ("rte", "cola")
    monkeypatch.setattr(ce, "FLAGS", types.SimpleNamespace(**{**flags, "vmap_seeds": None}))
    assert ce.budget_from_flags().vmap_seeds  # unset: the budget's own
    monkeypatch.setattr(ce, "FLAGS", types.SimpleNamespace(**{**flags, "tasks": ["rte", "qnli"]}))
    with pytest.raises(ce.app.UsageError, match=r"--tasks: unknown \['qnli'\]"):
        ce.budget_from_flags()


def test_while_workers_run_the_report_is_redrawn_when_results_change_at_most_every_redraw_period(
        tmp_path, monkeypatch):
    """The workers write results.json; the experiment redraws the report (with the plot) only after a change, at
    most once per REDRAW_S, and once more when they end. A worker that fails is named with its log's tail."""
    from electra_jax.experiments import report

    draws = []
    monkeypatch.setattr(report, "write_report", lambda out, results: draws.append(time.monotonic()))
    monkeypatch.setattr(finetuning, "POLL_S", 0.05)
    monkeypatch.setattr(finetuning, "REDRAW_S", 1.0)
    rows = tmp_path / "results.json"
    # results at 0.2 s and 0.5 s (one draw, at about 1 s), at 2 s (a second), then 1.4 s of nothing.
    writer = ("import sys, time; rows = sys.argv[1]\n"
              "for wait in (0.2, 0.3, 1.5):\n    time.sleep(wait); open(rows, 'a').write('x')\n"
              "time.sleep(1.4)")
    began = time.monotonic()
    finetuning.wait_for_workers(tmp_path, {"rte": subprocess.Popen([sys.executable, "-c", writer, str(rows)])}, "r")
    ended = time.monotonic()
    during, final = [t - began for t in draws[:-1]], draws[-1]
    assert len(during) == 2 and during[0] >= 1.0 and during[1] - during[0] >= 1.0, during
    assert final >= ended - 0.05
    # nothing written: no redraw until the end
    draws.clear()
    finetuning.wait_for_workers(tmp_path / "none", {"rte": subprocess.Popen([sys.executable, "-c",
                                                                             "import time; time.sleep(1.5)"])}, "r")
    assert len(draws) == 1
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "finetune_cola.log").write_text("Traceback: out of memory")
    with pytest.raises(RuntimeError, match=r"(?s)exit codes \{'cola': 3\}.*out of memory"):
        finetuning.wait_for_workers(tmp_path, {"cola": subprocess.Popen([sys.executable, "-c", "exit(3)"])}, "r")
