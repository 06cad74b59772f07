"""Collects a GPU call's rows into one results file, and turns results files into the README's speed tables.

    python benchmarks/make_table.py collect --rows SCRATCH/rows.jsonl --out benchmarks/results/2026-12-02-h200.json
    python benchmarks/make_table.py table [benchmarks/results/*.json]

A results file is one call on one card (benchmarks/run_gpu.sh -> gpu_session.py -> same_call.py): `collect`
wraps the rows the drivers appended with the call's date, card, commit and versions. `table` prints one section
per file, ratios only ever formed within a file. For a call (format 2): per pass and size, electra_jax's
tokens/s over the fastest HF PyTorch variant timed in that pass (the same attention dropout on both sides),
the median over the alternating rounds with their spread, then every timing. Files written before the
baseline was fixed (format 1, 2026-11-26) are shown as history, against that old handicapped HF step.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any

FORMAT = 2
OLD_BASELINE_IMPL = "hf_pytorch_eager"
OLD_BASELINE_NOTE = ("history, against the old HF baseline (cross-entropy on the [B, V, N] layout and an all-ones "
                     "attention mask, which cost it a host sync per forward; see docs/SPEED.md), not the fixed one")
PASS_TITLES = {"headline": "no attention-probability dropout on either side (HF p=0, electra_jax cuDNN)",
               "flash": "attention-probability dropout 0.1 on both sides (electra_jax Pallas flash attention)",
               "faithful": "attention-probability dropout 0.1 on both sides (electra_jax XLA attention)"}
CALL_FIELDS = ("commit", "dirty", "command", "python_version", "jax_version", "torch_version", "transformers_version",
               "gpu_static")


# ---- rows and results files ----


def append_row(path: str | Path, row: dict[str, Any]) -> None:
    """Appends one JSON row (flushed at once, so a driver stopped later keeps it)."""
    with Path(path).open("a") as f:
        f.write(json.dumps(row) + "\n")


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a JSONL file; a line a killed writer left half written is reported and skipped, so one torn
    row cannot cost the call its results file."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            print(f"make_table: {path} line {number} is not a whole JSON row (a writer was killed?): skipped",
                  file=sys.stderr)
    return rows


def collect(rows: list[dict[str, Any]], card: str = "", date: str = "") -> dict[str, Any]:
    """One results document: the call's fields (from its first timed row) and every row."""
    first = next((r for r in rows if r.get("kind") == "measure"), {})
    peak = next((r for r in rows if r.get("kind") == "peak"), None)
    return {"format": FORMAT, "date": date, "card": card, **{k: first.get(k) for k in CALL_FIELDS},
            "peak": {k: peak.get(k) for k in ("method", "device", "tflops_median", "tflops_min", "tflops_max")}
            if peak else None, "rows": rows}


def write_results(rows_file: str | Path, out: str | Path, card: str = "", date: str = "") -> dict[str, Any]:
    document = collect(read_rows(rows_file), card, date)
    Path(out).write_text(json.dumps(document, indent=1) + "\n")
    return document


def load_document(path: str | Path) -> dict[str, Any]:
    """A results file as a document; the first format (a bare list, or rows without "format") is kept as is."""
    data = json.loads(Path(path).read_text())
    if isinstance(data, list):
        data = {"rows": data}
    data.setdefault("format", 1)
    return data


def _is_speed_document(path: Path) -> bool:
    """True for a speed results file (a list of rows, or a document with "rows"); other dated results, such as
    the evidence plan and the attention-kernel sweeps (benchmarks/flash_sweep.py), share the folder."""
    try:
        document = load_document(path)
        return "rows" in document and document.get("kind") != "flash_sweep"
    except (OSError, ValueError, TypeError, AttributeError):  # unreadable, or JSON that is no document
        return False


def results_files(folder: str | Path) -> list[str]:
    """The speed results files in `folder` (`<date>-<card>[-<tag>].json`), oldest first, a day's runs in order."""
    paths = [p for p in Path(folder).glob("*.json")
             if re.match(r"\d{4}-\d{2}-\d{2}-", p.name) and _is_speed_document(p)]

    def key(path: Path):
        tag = re.search(r"-(\d+)$", path.stem)
        base = path.stem[:tag.start()] if tag else path.stem
        return base, int(tag.group(1)) if tag else 1

    return [str(p) for p in sorted(paths, key=key)]


# ---- the tables ----


def _fmt(value: Any, spec: str, scale: float = 1.0) -> str:
    return "—" if value is None else format(value * scale, spec)


def _shape(row: dict[str, Any]) -> str:
    size = str(row.get("size") or "?")
    return f"{size.capitalize()} ({row.get('batch_size')} × {row.get('seq_len')})"


def groups(rows: list[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    """Rows by (pass, size, flag set), in the order they first appear."""
    grouped: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("kind") in ("measure", "round", "error", "skipped"):
            grouped.setdefault((row.get("pass"), row.get("size"), row.get("flag_set")), []).append(row)
    return grouped


def headline(members: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The fastest HF variant of a group, electra_jax's row, and the ratio over the rounds against that variant."""
    measured = [r for r in members if r.get("kind") == "measure" and r.get("tokens_per_sec")]
    hf = [r for r in measured if str(r.get("impl", "")).startswith("hf_pytorch")]
    ours = next((r for r in measured if r.get("impl") == "electra_jax"), None)
    if not hf or ours is None:
        return None
    fastest = max(hf, key=lambda r: r["tokens_per_sec"])
    ratios = [r["ratio"] for r in members if r.get("kind") == "round" and r.get("hf_stage") == fastest.get("stage")]
    result = {"hf": fastest, "jax": ours, "rounds": len(ratios)}
    if ratios:
        result.update(ratio=statistics.median(ratios), low=min(ratios), high=max(ratios))
    else:  # no rounds against the fastest variant (cut short): the single timings, marked as such
        result.update(ratio=ours["tokens_per_sec"] / fastest["tokens_per_sec"], low=None, high=None)
    return result


def _group_label(key: tuple) -> str:
    pass_name, _, flag_set = key
    return (PASS_TITLES.get(pass_name, str(pass_name)) + (f", XLA flags `{flag_set}`" if flag_set else ""))


TIMINGS_HEADER = ("| model | pass | implementation | variant | step ms (windows min–max) | tokens/s | "
                  "MFU (measured peak) | peak GiB | compile s | vs fastest HF |")


def _timing_line(row: dict[str, Any], key: tuple, fastest: float | None) -> str:
    """One timed variant: median window and spread, throughput, MFU both ways, memory, compile time."""
    mfu = row.get("mfu_datasheet")
    versus = row["tokens_per_sec"] / fastest if fastest else None
    return (f"| {_shape(row)} | {key[0]}{' +' + key[2] if key[2] else ''} | {row.get('impl')} | "
            f"{row.get('variant', '')} | {row['step_ms']:.1f} ({row['step_ms_min']:.1f}–{row['step_ms_max']:.1f}) | "
            f"{row['tokens_per_sec']:,.0f} | {_fmt(mfu, '.1f', 100.0)}{'%' if mfu is not None else ''} "
            f"({_fmt(row.get('mfu_measured_peak'), '.1f', 100.0)}%) | {_fmt(row.get('peak_memory_gb'), '.1f')} | "
            f"{_fmt(row.get('compile_s'), '.0f')} | {_fmt(versus, '.2f')}× |")


def render_call(title: str, document: dict[str, Any]) -> str:
    rows = document.get("rows", [])
    first = next((r for r in rows if r.get("kind") == "measure"), {})
    peak = document.get("peak") or {}
    commit = str(document.get("commit") or "unknown")[:10]
    dirty = {True: "dirty", False: "clean"}.get(document.get("dirty"), "dirty flag unknown")
    header = (f"**{title}**: {first.get('device', '?')}, commit {commit} ({dirty}), jax {document.get('jax_version')}, "
              f"torch {document.get('torch_version')}, transformers {document.get('transformers_version')}; "
              f"MFU against the datasheet dense bf16 peak (989 TFLOP/s on H100/H200 SXM), in brackets against the "
              f"matmul peak measured once in this call ({_fmt(peak.get('tflops_median'), '.0f')} TFLOP/s)")
    lines = [header, "", "| model (batch × seq) | attention dropout | fastest HF PyTorch variant | HF tokens/s | "
             "electra_jax | electra_jax tokens/s | ratio (median of rounds) | rounds: min–max |",
             "|---|---|---|---|---|---|---|---|"]
    grouped = groups(rows)
    for key, members in grouped.items():
        result = headline(members)
        if result is None:
            continue
        spread = (f"{result['low']:.2f}–{result['high']:.2f}×" if result["low"] is not None
                  else "no rounds: single timings")
        lines.append(f"| {_shape(result['jax'])} | {_group_label(key)} | {result['hf']['impl']}: "
                     f"{result['hf'].get('variant', '')} | {result['hf']['tokens_per_sec']:,.0f} | "
                     f"{result['jax'].get('variant', '')} | {result['jax']['tokens_per_sec']:,.0f} | "
                     f"**{result['ratio']:.2f}×** ({result['rounds']}) | {spread} |")
    lines += ["", TIMINGS_HEADER, "|---|---|---|---|---|---|---|---|---|---|"]
    for key, members in grouped.items():
        measured = [r for r in members if r.get("kind") == "measure" and r.get("tokens_per_sec")]
        fastest = max((r["tokens_per_sec"] for r in measured if str(r.get("impl", "")).startswith("hf_pytorch")),
                      default=None)
        lines += [_timing_line(row, key, fastest) for row in measured]
        for row in members:
            if row.get("kind") in ("error", "skipped"):
                lines.append(f"| {_shape(row)} | {key[0]} | {row.get('stage')} | failed: {row.get('error', '')[:120]} "
                             "| | | | | | |")
    return "\n".join(lines)


def render_history(title: str, rows: list[dict[str, Any]]) -> str:
    """A first-format file: each electra_jax row against the old HF eager row of the same shape and file."""
    devices = sorted({str(r.get("device")) for r in rows if r.get("device")})
    lines = [f"**{title}**" + (f" ({', '.join(devices)})" if devices else "") + f": {OLD_BASELINE_NOTE}", "",
             "| model (batch × seq) | implementation | variant | step ms | tokens/s | MFU | peak GiB | "
             "vs old HF eager |",
             "|---|---|---|---|---|---|---|---|"]
    grouped: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault((row.get("size"), row.get("batch_size"), row.get("seq_len")), []).append(row)
    for (size, batch, seq), members in grouped.items():
        baseline = next((r for r in members if r.get("impl") == OLD_BASELINE_IMPL and r.get("tokens_per_sec")), None)
        for row in sorted(members, key=lambda r: r.get("impl") != OLD_BASELINE_IMPL):
            if row.get("error"):
                shape = f"{size} ({batch} × {seq})" if size else f"run `{row.get('run')}`"
                lines.append(f"| {shape} | {row.get('impl')} | {row.get('variant') or ''} | failed: {row['error']} "
                             "| | | | |")
                continue
            ratio = "1.00×" if row is baseline else (
                f"{row['tokens_per_sec'] / baseline['tokens_per_sec']:.2f}×" if baseline and row.get("tokens_per_sec")
                else "—")
            mfu = row.get("mfu")
            lines.append(
                f"| {size} ({batch} × {seq}) | {row.get('impl')} | {row.get('variant') or ''} | "
                f"{_fmt(row.get('step_ms'), '.1f')} | {_fmt(row.get('tokens_per_sec'), ',.0f')} | "
                f"{_fmt(mfu, '.1f', 100.0)}{'%' if mfu is not None else ''} | "
                f"{_fmt(row.get('peak_memory_gb'), '.1f')} | {ratio} |")
    return "\n".join(lines)


def render(paths: list[str]) -> str:
    sections = []
    for path in paths:
        document = load_document(path)
        title = " ".join(str(x) for x in (document.get("date"), document.get("card")) if x) or Path(path).stem
        if title != Path(path).stem:
            title += f" (`{Path(path).name}`)"
        if document["format"] >= 2:
            sections.append(render_call(title, document))
        else:
            sections.append(render_history(title, document.get("rows", [])))
    return "\n\n".join(sections) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="wrap a call's rows (JSONL) into one results JSON file")
    c.add_argument("--rows", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--card", default="")
    c.add_argument("--date", default="")
    t = sub.add_parser("table", help="print the markdown speed tables")
    t.add_argument("files", nargs="*")
    args = parser.parse_args(argv)
    if args.command == "collect":
        document = write_results(args.rows, args.out, args.card, args.date)
        print(f"wrote {len(document['rows'])} rows to {args.out}")
        return
    files = args.files or results_files(Path(__file__).resolve().parent / "results")
    if not files:
        print("no results files (benchmarks/results/*.json): run benchmarks/run_gpu.sh on a GPU first",
              file=sys.stderr)
        sys.exit(1)
    sys.stdout.write(render(files))


if __name__ == "__main__":
    main()
