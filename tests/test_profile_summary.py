"""profile_summary against a hand-made trace whose per-category sums are counted by hand."""

import gzip
import json

import pytest

from electra_jax import profile_summary

_LINE = '  %{name} = f32[8]{{0}} fusion(%a), kind=kLoop, metadata={{op_name="{op}"}}\n'
HLO = "ENTRY %main {\n" + "".join(_LINE.format(name=name, op=op) for name, op in [
    ("gemm_fusion_dot.3", "jit(train_step)/jvp(M)/layer/query/dot_general"),
    ("loop_add_fusion.17", "jit(train_step)/transpose(jvp(M))/layer/Dropout_0/mul"),
    ("input_reduce_fusion", "jit(train_step)/jvp(M)/layer/attention_LayerNorm/reduce_sum"),
    ("fusion.9", "jit(train_step)/mul"),
    ("loop_gelu_fusion", "jit(train_step)/jvp(M)/layer/intermediate/tanh"),
]) + "}\n"


def _event(name, hlo_op, dur, pid=1):
    return {"ph": "X", "pid": pid, "tid": 5, "ts": 0.0, "dur": dur, "name": name,
            "args": {"hlo_op": hlo_op, "hlo_module": "jit_train_step"}}


@pytest.fixture()
def profile_dir(tmp_path):
    events = [
        {"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "/device:GPU:0"}},
        {"ph": "M", "pid": 2, "name": "process_name", "args": {"name": "/host:CPU"}},
        # two steps of: a matmul (named by the library), a dropout fusion inside a command buffer, a LayerNorm
        # reduction, an optimizer fusion, a GELU fusion, a copy
        *[e for _ in range(2) for e in (
            _event("nvjet_sm90_tst_128x128", "command_buffer_4", 300.0),
            _event("loop_add_fusion_17", "command_buffer_4", 40.0),
            _event("input_reduce_fusion", "input_reduce_fusion", 20.0),
            _event("fusion.9", "fusion.9", 10.0),
            _event("loop_gelu_fusion", "command_buffer_1", 25.0),
            _event("memcpy128", "command_buffer_1", 5.0))],
        _event("host_side_thing", "fusion.9", 1e6, pid=2),  # host events are not device time
    ]
    trace_dir = tmp_path / "plugins" / "profile" / "2026_01_01"
    trace_dir.mkdir(parents=True)
    with gzip.open(trace_dir / "host.trace.json.gz", "wt") as f:
        json.dump({"traceEvents": events}, f)
    with gzip.open(tmp_path / "step_hlo.txt.gz", "wt") as f:
        f.write(HLO)
    return tmp_path


def test_categories_phases_and_top_ops_by_hand(profile_dir):
    summary = profile_summary.load(str(profile_dir), steps=2)
    assert summary["device_ms_per_step"] == pytest.approx(0.400)  # 300 + 40 + 20 + 10 + 25 + 5 us
    cats = summary["categories"]
    assert cats["matmul"] == pytest.approx(0.300)
    assert cats["dropout masks (RNG + apply)"] == pytest.approx(0.040)  # found through loop_add_fusion_17
    assert cats["LayerNorm"] == pytest.approx(0.020)
    assert cats["optimizer + update"] == pytest.approx(0.010)
    assert cats["copies / transposes"] == pytest.approx(0.005)
    assert cats[profile_summary.OTHER] == pytest.approx(0.025)
    phases = summary["phases"]
    assert phases["backward"] == pytest.approx(0.040) and phases["forward"] == pytest.approx(0.045)
    assert phases["update"] == pytest.approx(0.010)
    top = summary["top_ops"][0]
    assert top["kernel"].startswith("nvjet") and top["ms"] == pytest.approx(0.300)
    assert summary["top_ops"][1]["hlo_op"] == "loop_add_fusion.17"
    text = profile_summary.to_markdown(summary)
    assert "| matmul | 0.30 | 75.0% |" in text


def test_missing_trace_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="jax.profiler.trace"):
        profile_summary.load(str(tmp_path), steps=1)


def _tool(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "electra_jax.profile_summary", *args], capture_output=True,
                          text=True, timeout=120)


def test_the_command_line_is_an_absl_tool_with_one_line_errors(profile_dir, tmp_path):
    """--profile_dir or one positional folder; the same table as the hand count above; a folder without a trace
    ends in one line and exit status 1, a missing folder argument in a usage error (2)."""
    for args in ([f"--profile_dir={profile_dir}", "--steps=2"], [str(profile_dir), "--steps=2"]):
        done = _tool(*args, f"--json={tmp_path / 'summary.json'}")
        assert done.returncode == 0, done.stderr[-2000:]
        assert "| matmul | 0.30 | 75.0% |" in done.stdout
        assert json.loads((tmp_path / "summary.json").read_text())["device_ms_per_step"] == pytest.approx(0.400)
    empty = tmp_path / "empty"
    empty.mkdir()
    done = _tool(f"--profile_dir={empty}")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "error: no *.trace.json.gz under" in done.stderr.strip().splitlines()[-1]
    done = _tool("--steps=2")
    assert done.returncode == 2 and "--profile_dir is required" in done.stderr
