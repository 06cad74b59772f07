"""Collects benchmark rows into one results file, and turns results files into the README's speed table.

    python benchmarks/make_table.py collect --raw DIR --out benchmarks/results/2026-11-20-h100.json --card h100
    python benchmarks/make_table.py table [benchmarks/results/*.json]

`collect` reads what benchmarks/run_gpu.sh leaves in DIR for each run NAME: NAME.meta (one JSON object:
run, impl, variant, rc, wall_s, limit_s) and NAME.out (the benchmark's stdout; its last JSON line is the
row) and NAME.err (stderr, whose tail is kept for failed runs). `table` prints markdown: one table per
results file (one card, one session), each electra_jax row with its speed relative to the HF PyTorch eager
row of the same size and shape from the same file. Ratios across files are never formed: timings differ
between cards and runs.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

BASELINE_IMPL = "hf_pytorch_eager"
ROW_FIELDS = ("run", "impl", "size", "batch_size", "seq_len", "tokens_per_sec", "step_ms", "mfu", "device",
              "peak_memory_gb", "variant")


def _last_json_line(text: str) -> dict[str, Any] | None:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


def collect(raw_dir: str | Path, card: str = "", date: str = "") -> dict[str, Any]:
    """One results document from a run_gpu.sh scratch folder, runs in the order they started."""
    raw_dir = Path(raw_dir)
    rows = []
    metas = []
    for meta_path in raw_dir.glob("*.meta"):
        meta = json.loads(meta_path.read_text())
        metas.append((meta.get("order", 0), meta_path, meta))
    for _, meta_path, meta in sorted(metas, key=lambda item: (item[0], item[1].name)):
        stem = meta_path.with_suffix("")
        out = stem.with_suffix(".out")
        err = stem.with_suffix(".err")
        row = _last_json_line(out.read_text()) if out.exists() else None
        merged: dict[str, Any] = {field: None for field in ROW_FIELDS}
        merged.update(row or {})
        merged.update({k: v for k, v in meta.items() if k != "order"})
        if row is None or meta.get("rc", 0) != 0:
            tail = err.read_text(errors="replace")[-1500:] if err.exists() else ""
            if meta.get("skipped"):
                merged["error"] = "skipped (out of time budget)"
            elif meta.get("rc") in (124, 137):
                merged["error"] = "timed out"
            else:
                merged["error"] = f"exit status {meta.get('rc')}" if meta.get("rc") else "no JSON row printed"
            merged["stderr_tail"] = tail
        rows.append(merged)
    return {"date": date, "card": card, "rows": rows}


def load_rows(path: str | Path) -> tuple[str, list[dict[str, Any]]]:
    """(title, rows) of one results file; accepts {"rows": [...], ...} or a bare list of rows."""
    data = json.loads(Path(path).read_text())
    if isinstance(data, list):
        return Path(path).stem, data
    title = " ".join(str(x) for x in (data.get("date"), data.get("card")) if x) or Path(path).stem
    if title != Path(path).stem:
        title += f" (`{Path(path).name}`)"
    return title, data.get("rows", [])


def results_files(folder: str | Path) -> list[str]:
    """The speed results files in `folder` (`<date>-<card>[-<tag>].json`), oldest first, a day's runs in order."""
    paths = [p for p in Path(folder).glob("*.json") if re.match(r"\d{4}-\d{2}-\d{2}-", p.name)]

    def key(path: Path):
        tag = re.search(r"-(\d+)$", path.stem)
        base = path.stem[:tag.start()] if tag else path.stem
        return base, int(tag.group(1)) if tag else 1

    return [str(p) for p in sorted(paths, key=key)]


def _fmt(value: Any, spec: str, scale: float = 1.0) -> str:
    return "—" if value is None else format(value * scale, spec)


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown rows: every run of one results file, grouped by (size, batch, seq), HF eager first."""
    lines = ["| model (batch × seq) | implementation | variant | step ms | tokens/s | MFU | peak GiB | vs HF eager |",
             "|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row.get("size"), row.get("batch_size"), row.get("seq_len")), []).append(row)
    for (size, batch, seq), members in groups.items():
        baseline = next((r for r in members if r.get("impl") == BASELINE_IMPL and r.get("tokens_per_sec")), None)
        members = sorted(members, key=lambda r: r.get("impl") != BASELINE_IMPL)
        for row in members:
            if row.get("error"):
                result = f"failed: {row['error']}"
                shape = f"{size} ({batch} × {seq})" if size else f"run `{row.get('run')}`"
                lines.append(f"| {shape} | {row.get('impl')} | {row.get('variant') or ''} | {result} | | | | |")
                continue
            ratio = "1.00×" if row is baseline else (
                f"{row['tokens_per_sec'] / baseline['tokens_per_sec']:.2f}×" if baseline and row.get("tokens_per_sec")
                else "—")
            lines.append(
                f"| {size} ({batch} × {seq}) | {row.get('impl')} | {row.get('variant') or ''} | "
                f"{_fmt(row.get('step_ms'), '.1f')} | {_fmt(row.get('tokens_per_sec'), ',.0f')} | "
                f"{_fmt(row.get('mfu'), '.1f', 100.0)}{'%' if row.get('mfu') is not None else ''} | "
                f"{_fmt(row.get('peak_memory_gb'), '.1f')} | {ratio} |")
    return "\n".join(lines)


def render(paths: list[str]) -> str:
    sections = []
    for path in paths:
        title, rows = load_rows(path)
        devices = sorted({str(r.get("device")) for r in rows if r.get("device")})
        header = f"**{title}**" + (f" ({', '.join(devices)})" if devices else "")
        sections.append(header + "\n\n" + table(rows))
    return "\n\n".join(sections) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="merge a run_gpu.sh scratch folder into one results JSON file")
    c.add_argument("--raw", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--card", default="")
    c.add_argument("--date", default="")
    t = sub.add_parser("table", help="print the markdown speed table")
    t.add_argument("files", nargs="*")
    args = parser.parse_args(argv)
    if args.command == "collect":
        doc = collect(args.raw, args.card, args.date)
        Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {len(doc['rows'])} rows to {args.out}")
        return
    files = args.files or results_files(Path(__file__).resolve().parent / "results")
    if not files:
        print("no results files (benchmarks/results/*.json): run benchmarks/run_gpu.sh on a GPU first",
              file=sys.stderr)
        sys.exit(1)
    sys.stdout.write(render(files))


if __name__ == "__main__":
    main()
