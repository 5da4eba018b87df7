"""``report.md`` for a run folder: every recorded result and figure, notebook by notebook."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.runs.records import RunRecord, atomic_write, flatten, read_run


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (int, float, str, bool))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _table(rows: list[tuple[str, str]], header: tuple[str, str] = ("result", "value")) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| `{k}` | {v} |" for k, v in rows]
    return "\n".join(lines)


def _results_md(results: dict[str, Any]) -> str:
    scalars: dict[str, Any] = {}
    parts = []
    for name, value in results.items():
        if isinstance(value, pd.DataFrame):
            parts.append(f"**{name}**\n\n" + value.to_markdown(index=False, floatfmt=".4g"))
        elif isinstance(value, dict):
            scalars.update(flatten(value, name))
        elif isinstance(value, list) and not all(_scalar(v) for v in value):
            parts.append(f"**{name}**\n\n```json\n{json.dumps(value, indent=1)[:4000]}\n```")
        else:
            scalars[name] = value
    if scalars:
        parts.insert(0, _table([(k, _fmt(v)) for k, v in scalars.items()]))
    return "\n\n".join(parts) if parts else "_no results recorded_"


def _notebook_md(rec: RunRecord, figures: dict[str, str]) -> str:
    ctx = rec.context
    head = [f"## {rec.notebook}", ""]
    if rec.status != "ok":
        err = rec.error or {}
        head.append(
            f"**FAILED** at cell {err.get('cell_index')}: `{err.get('ename')}: {str(err.get('evalue'))[:300]}`"
            f" — see `{rec.notebook}.ipynb`\n"
        )
    if ctx:
        params = ", ".join(f"{k}={v!r}" for k, v in ctx.get("parameters", {}).items())
        head.append(
            f"data set `{ctx.get('dataset')}`, seed {ctx.get('seed')}, device `{ctx.get('device')}` "
            f"({ctx.get('torch_threads')} threads), smoke={ctx.get('smoke')}, "
            f"wall time {rec.wall_time_s} s\n\nparameters: {params}\n"
        )
    body = [_results_md(rec.results)]
    for name, rel in figures.items():
        body.append(f"![{name}]({rel})")
    return "\n".join(head) + "\n" + "\n\n".join(body) + "\n"


#: what the report puts first, when the run recorded it: (notebook, result or figure, caption)
HEADLINES = (
    (
        "02_sparse_cf",
        "quality_table",
        "Sparse CF, Microsoft Recommenders protocol on ml-100k, beside their published table",
    ),
    ("03_bert_finetuning", "warm", "Text and hybrid models on warm items"),
    ("03_bert_finetuning", "cold", "Cold-start items: text vs hybrid vs popularity of genre"),
    ("04_sequential", "results", "Sequential models, leave-last-one-out, full ranking"),
    ("04_sequential", "full_vs_sampled", "Full ranking vs 100 sampled negatives"),
    ("05_speedups", "summary", "Inference speedups: best batch size per precision, and answers changed"),
    ("06_serving", "speedup", "Serving: dynamic batching vs per-request"),
    ("06_serving", "freshness", "Serving: update -> fresh answer under load, priority lane off and on"),
    ("06_serving", "overload", "Serving at 3x its throughput: every request answered or rejected (503)"),
    ("02_sparse_cf", "quality_vs_fit_time", ""),
    ("05_speedups", "throughput_per_s_vs_batch_size", ""),
    ("06_serving", "latency_throughput", ""),
    ("07_sweeps_report", "ease_reg_sensitivity", ""),
)


def _headlines(records: list[tuple[RunRecord, dict[str, str]]]) -> list[str]:
    by_name = {rec.notebook: (rec, figs) for rec, figs in records}
    out = []
    for notebook, name, caption in HEADLINES:
        if notebook not in by_name:
            continue
        rec, figs = by_name[notebook]
        value = rec.results.get(name)
        if isinstance(value, pd.DataFrame):
            out.append(f"**{caption or name}** ({notebook})\n\n" + value.to_markdown(index=False, floatfmt=".4g"))
        elif isinstance(value, dict):
            flat = flatten(value)
            out.append(f"**{caption or name}** ({notebook})\n\n" + _table([(k, _fmt(v)) for k, v in flat.items()]))
        elif name in figs:
            out.append(f"![{notebook}: {name}]({figs[name]})")
    return ["## Headlines", "", *"\n\n".join(out).split("\n"), ""] if out else []


def write_report(run_dir: str | Path) -> Path:
    """Gather every sidecar in ``run_dir`` into ``run_dir/report.md`` (atomic) and return its path."""
    run_dir = Path(run_dir)
    sidecars = sorted(run_dir.glob("[0-9][0-9]_*.json"))
    records = [(read_run(p), json.loads(p.read_text(encoding="utf-8")).get("figures", {})) for p in sidecars]
    ok = sum(r.status == "ok" for r, _ in records)
    first = next((r.context for r, _ in records if r.context), {})
    lines = [
        f"# Workbench report — {run_dir.name}",
        "",
        f"{ok} of {len(records)} notebook(s) ran cleanly. Commit `{first.get('git_commit')}`, "
        f"versions {first.get('versions')}, host `{first.get('host')}`.",
        "",
        "| notebook | status | data set | device | wall time (s) |",
        "|---|---|---|---|---|",
    ]
    for rec, _ in records:
        c = rec.context
        lines.append(f"| {rec.notebook} | {rec.status} | {c.get('dataset')} | {c.get('device')} | {rec.wall_time_s} |")
    lines.append("")
    lines += _headlines(records)
    lines += [_notebook_md(rec, figs) for rec, figs in records]
    path = run_dir / "report.md"
    atomic_write(path, "\n".join(lines))
    return path
