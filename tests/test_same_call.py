"""The GPU call's plumbing (run_gpu.sh -> gpu_session.py -> same_call.py -> make_table.py), dry-run on CPU, and the
tables and budget rules checked against hand-made rows and hand counts."""

import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import mini
import pytest

REPO = Path(__file__).resolve().parents[1]
REQUIRED_ROW_FIELDS = ("impl", "variant", "size", "batch_size", "seq_len", "tokens_per_sec", "commit", "dirty",
                       "command", "jax_version", "torch_version", "transformers_version", "gpu", "attention_dropout",
                       "window_ms", "mfu_datasheet", "mfu_measured_peak")


def _load_script(name: str):
    sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- the whole call on CPU ----


def test_smoke_run_writes_rows_rounds_profiles_and_the_table(tmp_path):
    """SMOKE=1: one driver (torch and JAX in one process) through every stage at tiny shapes, then the table."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    env = dict(os.environ, OUT=str(tmp_path), SMOKE="1", FORCE_WHEEL="1", PYTHON=sys.executable,
               JAX_PLATFORMS="cpu", COMMIT="0123456789abcdef", DIRTY="0", HF_COMPILE_GRAPH="1")
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "run_gpu.sh")], env=env, capture_output=True,
                          text=True, timeout=900)
    log = (tmp_path / "run.log").read_text() if (tmp_path / "run.log").exists() else ""
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:] + log[-3000:]
    document = json.loads(next(tmp_path.glob("*-nogpu.json")).read_text())
    rows = document["rows"]
    skipped = [r for r in rows if r["kind"] in ("error", "skipped")]
    # CUDA graphs need a GPU: on CPU both graph stages (eager, and compiled with HF_COMPILE_GRAPH=1) say so and the
    # others run
    assert [(r["kind"], r["stage"]) for r in skipped] == [("skipped", "hf_graph"), ("skipped", "hf_compile_graph")], \
        [r.get("error") for r in skipped]
    assert all("CUDA graphs need a GPU" in r["error"] for r in skipped)
    measured = {r["stage"]: r for r in rows if r["kind"] == "measure"}
    assert set(measured) == {"hf_eager", "hf_stock", "jax", "hf_compile"}
    assert measured["hf_compile"]["compile_s"] > 0 and measured["jax"]["compile_s"] > 0  # reported apart
    for row in measured.values():
        missing = [field for field in REQUIRED_ROW_FIELDS if field not in row]
        assert not missing, (row["stage"], missing)
        assert row["commit"] == "0123456789abcdef" and row["dirty"] is False and "run_gpu.sh" in row["command"]
        assert "HF_COMPILE_GRAPH=1" in row["command"]
        assert len(row["window_ms"]) == 2 and row["steps"] == 4  # --steps=4 in windows of 2
        assert row["attention_dropout"] == 0.0  # the headline pass: none on either side
    impls = {r["impl"] for r in measured.values()}
    assert impls == {"hf_pytorch_eager", "hf_pytorch_stock", "hf_pytorch_compile", "electra_jax"}
    fastest = max((r for r in measured.values() if r["impl"] != "electra_jax"), key=lambda r: r["tokens_per_sec"])
    rounds = [r for r in rows if r["kind"] == "round"]
    assert [r["round"] for r in rounds] == [1, 2, 3] and {r["hf_stage"] for r in rounds} == {fastest["stage"]}
    assert [r["first"] for r in rounds] == [fastest["stage"], "jax", fastest["stage"]]  # the order alternates
    for r in rounds:
        assert r["ratio"] == pytest.approx(r["hf_step_ms"] / r["jax_step_ms"])
    median = statistics.median(r["ratio"] for r in rounds)
    assert f"**{median:.2f}×** (3)" in done.stdout  # the headline is the median of the rounds
    profile = next(r for r in rows if r["kind"] == "hf_profile")
    forward_sdpa = sum(v for k, v in profile["sdpa_ops_per_step"].items() if not k.endswith("_backward"))
    assert forward_sdpa == 2  # one layer in each network
    assert profile["device_reads_outside_optimizer_per_step"] == 0
    files = sorted(p.name for p in tmp_path.iterdir())
    for name in ("run.log", "table.md", "hf_profile_small.md", "profile_small.md", "profile_small.json"):
        assert name in files
    assert len(files) <= 8 and all(p.is_file() for p in tmp_path.iterdir())  # what comes back from the GPU machine
    assert document["peak"]["tflops_median"] > 0 and document["format"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("pass_name,attention", [("faithful", "xla"), ("flash", "flash")])
def test_smoke_dropout_passes_keep_attention_dropout_on_both_sides(tmp_path, pass_name, attention):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    env = dict(os.environ, OUT=str(tmp_path), SMOKE="1", SMOKE_PASSES=pass_name, PYTHON=sys.executable,
               JAX_PLATFORMS="cpu")
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "run_gpu.sh")], env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = json.loads(next(tmp_path.glob("*-nogpu.json")).read_text())["rows"]
    measured = {r["stage"]: r for r in rows if r["kind"] == "measure"}
    # no headline pass in this call, so torch.compile did not win one: the faithful pass does not compile
    assert set(measured) == {"hf_eager", "hf_stock", "jax"}
    assert {r["attention_dropout"] for r in measured.values()} == {0.1} and measured["jax"]["attention"] == attention
    assert len([r for r in rows if r["kind"] == "round"]) == 3
    assert "dropout 0.1 on both sides" in done.stdout


# ---- make_table.py: hand-made rows ----


def _measure(stage, impl, tokens_per_sec, pass_name="headline", size="base", **extra):
    step_ms = 64 * 512 / tokens_per_sec * 1e3
    return {"kind": "measure", "stage": stage, "impl": impl, "variant": f"{stage} v", "pass": pass_name, "size": size,
            "batch_size": 64, "seq_len": 512, "tokens_per_sec": tokens_per_sec, "step_ms": step_ms,
            "step_ms_min": step_ms * 0.99, "step_ms_max": step_ms * 1.01, "mfu_datasheet": 0.3,
            "mfu_measured_peak": 0.4, "peak_memory_gb": 20.0, "compile_s": 30.0, "device": "gpu:NVIDIA H200",
            "flag_set": None, **extra}


def _round(hf_stage, ratio, index, pass_name="headline", size="base"):
    return {"kind": "round", "stage": f"rounds:{hf_stage}", "hf_stage": hf_stage, "round": index, "ratio": ratio,
            "pass": pass_name, "size": size, "flag_set": None}


def test_headline_is_the_median_of_the_rounds_against_the_fastest_hf_variant(tmp_path):
    make_table = _load_script("make_table")
    rows = [_measure("hf_eager", "hf_pytorch_eager", 200_000.0), _measure("hf_stock", "hf_pytorch_stock", 180_000.0),
            _measure("jax", "electra_jax", 420_000.0), _measure("hf_compile", "hf_pytorch_compile", 250_000.0),
            _round("hf_eager", 2.05, 1), _round("hf_eager", 2.15, 2), _round("hf_eager", 2.10, 3),
            _round("hf_compile", 1.62, 1), _round("hf_compile", 1.70, 2), _round("hf_compile", 1.66, 3),
            _measure("hf_eager", "hf_pytorch_eager", 190_000.0, pass_name="faithful"),
            _measure("jax", "electra_jax", 150_000.0, pass_name="faithful"),
            {"kind": "error", "stage": "rounds", "error": "RuntimeError: out of time", "pass": "faithful",
             "size": "base", "batch_size": 64, "seq_len": 512, "flag_set": None}]
    path = tmp_path / "2026-12-02-h200.json"
    path.write_text(json.dumps(make_table.collect(rows, card="h200", date="2026-12-02")))
    text = make_table.render([str(path)])
    headline = [line for line in text.splitlines() if line.startswith("| Base") and "**" in line]
    # compile is the fastest HF variant: its rounds count, not eager's; median(1.62, 1.70, 1.66) = 1.66
    assert "hf_pytorch_compile" in headline[0] and "**1.66×** (3)" in headline[0] and "1.62–1.70×" in headline[0]
    assert "no attention-probability dropout" in headline[0]
    # the faithful pass has no rounds: its ratio is the single timings' 150k / 190k, said so
    assert "**0.79×** (0)" in headline[1] and "no rounds" in headline[1] and "dropout 0.1" in headline[1]
    assert "| hf_pytorch_stock | hf_stock v |" in text and "| 0.72× |" in text  # 180k / 250k
    assert "failed: RuntimeError: out of time" in text


def test_history_files_are_labelled_and_compared_with_the_old_baseline(tmp_path):
    make_table = _load_script("make_table")
    rows = [{"run": "jax_small", "impl": "electra_jax", "size": "small", "batch_size": 128, "seq_len": 128,
             "tokens_per_sec": 500_000.0, "step_ms": 32.8, "mfu": 0.25, "device": "gpu:NVIDIA H100 80GB HBM3",
             "peak_memory_gb": 10.0, "variant": "v"},
            {"run": "hf_small", "impl": "hf_pytorch_eager", "size": "small", "batch_size": 128, "seq_len": 128,
             "tokens_per_sec": 400_000.0, "step_ms": 41.0, "mfu": 0.2, "device": "cuda:NVIDIA H100 80GB HBM3",
             "peak_memory_gb": 10.0, "variant": "v"},
            {"run": "jax_large", "impl": "electra_jax", "variant": "v", "error": "timed out", "size": None,
             "batch_size": None, "seq_len": None}]
    path = tmp_path / "2026-01-01-h100.json"
    path.write_text(json.dumps({"date": "2026-01-01", "card": "h100", "rows": rows}))
    lines = make_table.render([str(path)]).splitlines()
    assert lines[0].startswith("**2026-01-01 h100") and "history, against the old HF baseline" in lines[0]
    small = [line for line in lines if line.startswith("| small")]
    assert "hf_pytorch_eager" in small[0] and small[0].endswith("| 1.00× |")  # the old baseline first
    assert small[1].endswith("| 1.25× |") and "500,000" in small[1]
    assert any("run `jax_large`" in line and "failed: timed out" in line for line in lines)


def test_results_files_are_the_dated_ones_in_run_order(tmp_path):
    make_table = _load_script("make_table")
    for name in ("2026-01-02-h100.json", "2026-01-01-h200-2.json", "2026-01-01-h200-10.json", "2026-01-01-h200.json",
                 "compute_efficiency.json", "notes.json"):
        (tmp_path / name).write_text(json.dumps({"rows": []}))
    (tmp_path / "2026-01-01-evidence-gpu-plan.json").write_text(json.dumps({"plan": {}}))  # dated, but not speed
    (tmp_path / "2026-01-01-h200-flash-sweep.json").write_text(json.dumps({"kind": "flash_sweep", "rows": []}))
    assert [Path(f).name for f in make_table.results_files(tmp_path)] == [
        "2026-01-01-h200.json", "2026-01-01-h200-2.json", "2026-01-01-h200-10.json", "2026-01-02-h100.json"]


def test_a_torn_last_row_is_skipped_not_fatal(tmp_path, capsys):
    """A driver killed mid-write leaves half a line: the rows before it still make the results file."""
    make_table = _load_script("make_table")
    rows_file = tmp_path / "rows.jsonl"
    whole = [_measure("hf_eager", "hf_pytorch_eager", 200.0), _measure("jax", "electra_jax", 400.0)]
    rows_file.write_text("".join(json.dumps(r) + "\n" for r in whole) + json.dumps(whole[0])[:40])
    assert make_table.read_rows(rows_file) == whole
    assert "line 3 is not a whole JSON row" in capsys.readouterr().err


def test_readme_speed_table_is_the_generated_one():
    make_table = _load_script("make_table")
    files = make_table.results_files(REPO / "benchmarks" / "results")
    assert files, "no speed results committed"
    assert make_table.render(files).strip() in (REPO / "README.md").read_text()


# ---- gpu_session.py: the order of the drivers and the time kept back for them ----


def test_plan_runs_every_headline_first_and_reserves_their_time():
    session = _load_script("gpu_session")
    items = session.plan(["headline", "faithful"], ["small", "base", "large"], ["cublaslt"])
    assert [(i["pass"], i["size"], i.get("flag_set")) for i in items] == [
        ("headline", "small", None), ("headline", "base", None), ("headline", "large", None),
        ("faithful", "base", None), ("faithful", "small", None), ("faithful", "large", None),
        ("headline", "base", "cublaslt")]
    assert [i["size"] for i in items if i.get("profile")] == ["base"]
    estimate = session.ESTIMATE_S
    # before Small: the time of the Base and Large headline drivers is kept back; after Large, nothing
    assert session.reserve_after(items, 0) == estimate[("headline", "base")] + estimate[("headline", "large")]
    assert session.reserve_after(items, 2) == 0 and session.reserve_after(items, 3) == 0
    with pytest.raises(SystemExit, match="unknown XLA flag set"):
        session.plan(["headline"], ["base"], ["fast_please"])
    # the flash pass (faithful work, our Pallas flash kernel) after the faithful one, Base first, nothing kept back
    items = session.plan(["flash", "faithful"], ["small", "base"], [])
    assert [(i["pass"], i["size"]) for i in items] == [("faithful", "base"), ("faithful", "small"),
                                                       ("flash", "base"), ("flash", "small")]
    assert session.reserve_after(items, 0) == 0
    # HF_COMPILE_GRAPH=1: each headline driver's estimate grows by its hf_compile_graph stage; the extras' do not
    plain = session.plan(["headline", "faithful"], ["small", "base"], ["cublaslt"])
    graphed = session.plan(["headline", "faithful"], ["small", "base"], ["cublaslt"], compile_graph=True)
    assert [g["estimate_s"] - p["estimate_s"] for p, g in zip(plain, graphed)] == [
        session.COMPILE_GRAPH_S["small"], session.COMPILE_GRAPH_S["base"], 0, 0, 0]


def test_the_compiled_graph_stage_rides_along_where_hf_is_compiled(tmp_path):
    """--hf_compile_graph reaches the headline drivers, and a dropout pass's driver only where a compiled HF variant
    (alone or in a graph) was the fastest of that size's headline pass; never the XLA flag-set runs."""
    session = _load_script("gpu_session")
    rows_file = tmp_path / "rows.jsonl"
    rows = [_measure("hf_eager", "hf_pytorch_eager", 200.0, size="small"),
            _measure("hf_compile_graph", "hf_pytorch_compile_cudagraph", 260.0, size="small"),
            _measure("hf_eager", "hf_pytorch_eager", 200.0), _measure("hf_compile", "hf_pytorch_compile", 150.0)]
    rows_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = session.parse_args(["--out=o", "--result=r", "--scratch=s", "--hf_compile_graph"])

    def flags(item):
        return [c for c in session.driver_command(item, args, rows_file, 100) if c.startswith("--hf_compile")]

    assert flags({"pass": "headline", "size": "base"}) == ["--hf_compile_graph"]
    assert flags({"pass": "faithful", "size": "small"}) == ["--hf_compile_graph"]  # compile won there, in a graph
    assert flags({"pass": "flash", "size": "base"}) == ["--hf_compile=none"]  # eager won the headline at Base
    assert flags({"pass": "headline", "size": "base", "flag_set": "cublaslt"}) == []
    plain = session.parse_args(["--out=o", "--result=r", "--scratch=s"])
    assert [c for c in session.driver_command({"pass": "headline", "size": "base"}, plain, rows_file, 100)
            if c.startswith("--hf_compile")] == []


def test_the_budget_counts_from_the_call_start_and_keeps_the_later_headlines_and_the_kill_grace(
        tmp_path, monkeypatch):
    """Each driver's limit is the budget less the time since run_gpu.sh started (--started_at, its set-up
    included), less the estimates of the headline drivers still to come, less KILL_GRACE_S; past the budget a
    driver is skipped with a row that says so. Hand counts against ESTIMATE_S, with drivers that take no time."""
    session = _load_script("gpu_session")
    limits = []
    monkeypatch.setattr(session, "run_with_timeout", lambda command, env, log, timeout_s, every=None:
                        limits.append((command[2], command[3], timeout_s)) or 0)
    monkeypatch.setattr(session, "wall_clock", lambda: 1_000_000.0)
    estimate, grace = session.ESTIMATE_S, session.KILL_GRACE_S

    def run(started_ago: float) -> list[dict]:
        limits.clear()
        scratch = tmp_path / f"ago{started_ago:.0f}"
        args = session.parse_args([f"--out={scratch}", f"--result={scratch}/r.json", f"--scratch={scratch}",
                                   "--passes=headline,faithful", "--sizes=small,base", "--budget_s=545",
                                   f"--started_at={1_000_000.0 - started_ago}", f"--log={scratch}.log"])
        session.run_session(args)
        return [json.loads(line) for line in (scratch / "rows.jsonl").read_text().splitlines()]

    run(100)  # 100 s of set-up: small keeps Base's headline estimate back; the rest keep nothing
    left = 545 - 100
    want = [("--size=small", "--pass=headline", left - estimate[("headline", "base")] - grace),
            ("--size=base", "--pass=headline", left - grace),
            ("--size=base", "--pass=faithful", left - grace), ("--size=small", "--pass=faithful", left - grace)]
    assert [c[:2] for c in limits] == [w[:2] for w in want]
    for (_, _, got), (_, _, expected) in zip(limits, want):
        assert expected - 2 <= got <= expected  # the drivers take no time; the session's own steps, a little
    # 470 s of set-up: 75 s left. Small's headline would get 75 - 166 - 10 < 40 s: skipped. Base's gets 65 s. A
    # faithful driver needs 60% of its estimate: Base's 113 s * 0.6 = 67.8 s > 65 s is skipped, Small's 55.8 s runs.
    rows = run(470)
    assert [(c[0], c[1]) for c in limits] == [("--size=base", "--pass=headline"), ("--size=small", "--pass=faithful")]
    assert all(75 - grace - 2 <= c[2] <= 75 - grace for c in limits)
    skipped = [(r["pass"], r["size"]) for r in rows if r["kind"] == "skipped"]
    assert skipped == [("headline", "small"), ("faithful", "base")]


def test_faithful_pass_compiles_only_where_compile_won_the_headline(tmp_path):
    session = _load_script("gpu_session")
    rows_file = tmp_path / "rows.jsonl"
    rows = [_measure("hf_eager", "hf_pytorch_eager", 200.0, size="small"),
            _measure("hf_compile", "hf_pytorch_compile", 250.0, size="small"),
            _measure("hf_eager", "hf_pytorch_eager", 200.0), _measure("hf_compile", "hf_pytorch_compile", 150.0),
            _measure("jax", "electra_jax", 900.0)]
    rows_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert session.compile_won(rows_file, "small") and not session.compile_won(rows_file, "base")
    assert not session.compile_won(tmp_path / "absent.jsonl", "small")


def test_a_driver_past_its_time_is_stopped_with_its_children(tmp_path):
    session = _load_script("gpu_session")
    marker = tmp_path / "child.pid"
    command = ["bash", "-c", f"sleep 60 & echo $! > {marker}; wait"]
    with open(tmp_path / "log", "w") as log:
        assert session.run_with_timeout(command, dict(os.environ), log, timeout_s=1.0) == 124
    child = int(marker.read_text())
    with pytest.raises(ProcessLookupError):  # the background child went with its group
        for _ in range(50):
            os.kill(child, 0)
            time.sleep(0.1)
    with open(tmp_path / "log", "w") as log:
        assert session.run_with_timeout(["bash", "-c", "exit 3"], dict(os.environ), log, timeout_s=30) == 3
    # While it runs, the callback (the results file rewritten) comes every `every` seconds: 2.2 s / 0.5 s.
    calls = []
    with open(tmp_path / "log", "w") as log:
        status = session.run_with_timeout(["sleep", "2.2"], dict(os.environ), log, timeout_s=30,
                                          every=(0.5, lambda: calls.append(time.monotonic())))
    assert status == 0 and 3 <= len(calls) <= 6  # 4, give or take the start of a process on a loaded machine


def test_xla_flag_sets_parse_in_this_jaxlib_and_each_has_a_prediction():
    """An unknown flag aborts XLA at start-up: every flag set must be one this XLA knows (checked on CPU; the flags
    are shared by all backends), and docs/SPEED.md must state what each is predicted to do."""
    session = _load_script("gpu_session")
    assert session.flags_known(" ".join(session.XLA_FLAG_SETS.values()))
    assert session.flags_known("--xla_gpu_per_fusion_autotune_cache_dir=/tmp/x")  # what run_gpu.sh adds
    assert not session.flags_known("--xla_gpu_no_such_flag=true")
    speed_doc = (REPO / "docs" / "SPEED.md").read_text()
    for name in session.XLA_FLAG_SETS:
        assert f"`{name}`" in speed_doc, name


# ---- call_info.py ----


def test_nvidia_smi_samples_are_parsed_and_summarized(tmp_path, monkeypatch):
    call_info = _load_script("call_info")
    fake = tmp_path / "nvidia-smi"  # prints what `nvidia-smi --query-gpu=...` prints on an H200
    fake.write_text("#!/bin/sh\necho '1980, 3201, 512.40, 41'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    sample = call_info.nvidia_smi(call_info.SMI_SAMPLED)
    assert sample == {"sm_clock_mhz": 1980.0, "mem_clock_mhz": 3201.0, "power_w": 512.4, "temperature_c": 41.0}
    summary = call_info.summarize_samples([sample, {**sample, "power_w": 600.0}, {**sample, "power_w": 400.0}])
    assert summary["samples"] == 3 and summary["power_w"] == {"min": 400.0, "median": 512.4, "max": 600.0}
    monitor = call_info.GpuMonitor(period_s=0.01)
    with monitor.sampling() as samples:
        pass
    assert samples and samples[0]["sm_clock_mhz"] == 1980.0


def test_jax_is_capped_at_80_gb_of_the_card_and_not_preallocated(tmp_path, monkeypatch):
    call_info = _load_script("call_info")
    fake = tmp_path / "nvidia-smi"  # an H200's memory.total in MiB
    fake.write_text("#!/bin/sh\necho '143771'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.delenv("XLA_PYTHON_CLIENT_MEM_FRACTION", raising=False)
    monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)
    call_info.configure_jax_memory(80)
    assert os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert os.environ["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.531"  # 80e9 B / (143771 * 2**20 B)


def test_commit_comes_from_the_environment_or_git(monkeypatch):
    call_info = _load_script("call_info")
    monkeypatch.setenv("COMMIT", "abc123")
    monkeypatch.setenv("DIRTY", "1")
    assert call_info.commit_and_dirty() == ("abc123", True)
    monkeypatch.delenv("COMMIT")
    monkeypatch.delenv("DIRTY")
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    assert call_info.commit_and_dirty()[0] == head.stdout.strip()


def test_a_failing_stage_leaves_an_error_row_and_the_next_stage_runs(tmp_path):
    same_call = _load_script("same_call")
    driver = object.__new__(same_call.Driver)  # only the bookkeeping: no models
    driver.args = same_call.parse_args(["--size=base", f"--rows={tmp_path / 'rows.jsonl'}"])
    driver.rows_path, driver.common, driver.shape = tmp_path / "rows.jsonl", {"commit": "c"}, {"size": "base"}
    driver.started = 0.0
    ran = []

    def broken():
        raise RuntimeError("cuDNN is not detected")

    driver.stage("jax", broken)
    driver.stage("next", lambda: ran.append(True))
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert ran == [True] and len(rows) == 1
    assert rows[0]["kind"] == "error" and rows[0]["stage"] == "jax" and "cuDNN is not detected" in rows[0]["error"]
    assert rows[0]["size"] == "base" and rows[0]["commit"] == "c"


def test_gpu_script_is_valid_bash_and_carries_its_wheel():
    mini.check_shell_script(REPO / "benchmarks" / "run_gpu.sh")
    assert list((REPO / "benchmarks" / "wheels").glob("ml_collections-*.whl"))
