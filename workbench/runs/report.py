"""``report.md`` for a run folder: every recorded result and figure, notebook by notebook.

Timings taken on a busy machine (:func:`busy`: load above the cores) are marked where
they appear and are not presented as headlines. A sidecar that is no run record is
skipped with a :class:`~workbench.runs.records.CorruptRecordWarning` and listed."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.runs.records import CorruptRecord, CorruptRecordWarning, RunRecord, atomic_write, flatten, read_run


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
    load = busy(ctx)
    if load:
        head.append(
            f"**Timings taken on a busy machine** ({load}): more threads wanted to run than there were cores.\n"
        )
    body = [_results_md(rec.results)]
    for name, rel in figures.items():
        body.append(f"![{name}]({rel})")
    return "\n".join(head) + "\n" + "\n\n".join(body) + "\n"


#: what the report puts first, when the run recorded it: (notebook, result or figure,
#: caption, whether it is a timing -- no headline when taken on a busy machine)
HEADLINES = (
    (
        "02_sparse_cf",
        "quality_table",
        "Sparse CF, Microsoft Recommenders protocol on ml-100k, beside their published table",
        False,
    ),
    ("03_bert_finetuning", "warm", "Text and hybrid models on warm items", False),
    ("03_bert_finetuning", "cold", "Cold-start items: text vs hybrid vs popularity of genre", False),
    ("04_sequential", "results", "Sequential models, leave-last-one-out, full ranking", False),
    ("04_sequential", "full_vs_sampled", "Full ranking vs 100 sampled negatives", False),
    ("05_speedups", "summary", "Inference speedups: best batch size per precision, and answers changed", True),
    ("06_retrieval", "fastest_at_recall_095", "Retrieval: fastest index with recall@10 >= 0.95 vs exact search", True),
    ("06_retrieval", "retrieval_quality", "Retrieval: iALS nDCG@10 on test, exact vs approximate index", False),
    ("06_retrieval", "quality_vs_candidates", "Two-stage (iALS + HNSW, EASE re-ranks): nDCG@10 against N", False),
    ("06_retrieval", "recall_vs_throughput", "", True),
    ("07_serving", "speedup", "Serving: dynamic batching vs per-request", True),
    ("07_serving", "freshness", "Serving: update -> fresh answer under load, priority lane off and on", True),
    ("07_serving", "overload", "Serving at 3x its throughput: every request answered or rejected (503)", True),
    ("02_sparse_cf", "quality_vs_fit_time", "", True),
    ("05_speedups", "throughput_per_s_vs_batch_size", "", True),
    ("07_serving", "latency_throughput", "", True),
    ("08_streaming", "quality", "Streaming replay: HR@10 per model and update policy, 95% intervals over users", False),
    ("08_streaming", "gains", "Streaming replay: what online updates buy (paired differences, 95% intervals)", False),
    ("09_sweeps_report", "ease_reg_sensitivity", "", False),
)


#: load beyond a notebook's own cores that counts as another process competing with it
OTHERS = 0.5


def busy(context: dict[str, Any]) -> str | None:
    """Why a run's timings cannot be trusted: its 1-minute load average, at start or end,
    above the cores it could use *and* not explained by the notebook itself (at the end,
    more than half a core beyond the cores it kept busy on average, ``own_cores``: a
    notebook running two sweep workers on two cores is not competing with anyone); None
    when the machine was not busy or no load was recorded."""
    worst = None
    for when in ("start", "end"):
        load = context.get(f"load_at_{when}")
        if not isinstance(load, dict) or not isinstance(load.get("load_avg"), list) or not load["load_avg"]:
            continue
        avg, cores = load["load_avg"][0], load.get("cores") or load.get("cpu_count")
        own = load.get("own_cores") if isinstance(load.get("own_cores"), (int, float)) else 0.0
        over = isinstance(avg, (int, float)) and isinstance(cores, int) and avg > cores and avg - own > OTHERS
        if over and (worst is None or avg > worst[0]):
            worst = (avg, cores, when, own)
    if worst is None:
        return None
    avg, cores, when, own = worst
    return f"load {avg:.1f} on {cores} cores at its {when}" + (f", {own:.1f} of it its own" if own else "")


def _headlines(records: list[tuple[RunRecord, dict[str, str]]]) -> list[str]:
    by_name = {rec.notebook: (rec, figs) for rec, figs in records}
    out, demoted = [], {}
    for notebook, name, caption, timing in HEADLINES:
        if notebook not in by_name:
            continue
        rec, figs = by_name[notebook]
        value = rec.results.get(name)
        if timing and busy(rec.context) and (value is not None or name in figs):
            demoted.setdefault(notebook, []).append(name)
        elif isinstance(value, pd.DataFrame):
            out.append(f"**{caption or name}** ({notebook})\n\n" + value.to_markdown(index=False, floatfmt=".4g"))
        elif isinstance(value, dict):
            flat = flatten(value)
            out.append(f"**{caption or name}** ({notebook})\n\n" + _table([(k, _fmt(v)) for k, v in flat.items()]))
        elif name in figs:
            out.append(f"![{notebook}: {name}]({figs[name]})")
    for notebook, names in demoted.items():
        out.append(
            f"_Not headlines: {', '.join(f'`{n}`' for n in names)} of {notebook}, timed on a busy machine "
            f"({busy(by_name[notebook][0].context)}); they are in its section below, marked._"
        )
    return ["## Headlines", "", *"\n\n".join(out).split("\n"), ""] if out else []


def _read_records(run_dir: Path) -> tuple[list[tuple[RunRecord, dict[str, str]]], list[str]]:
    """Each sidecar's record and figure files; corrupt ones skipped with a warning (and listed)."""
    records, skipped = [], []
    for path in sorted(run_dir.glob("[0-9][0-9]_*.json")):
        try:
            rec = read_run(path)
        except CorruptRecord as err:
            warnings.warn(f"skipped {err}", CorruptRecordWarning, stacklevel=3)
            skipped.append(str(err))
            continue
        records.append((rec, json.loads(path.read_bytes()).get("figures") or {}))
    return records, skipped


def write_report(run_dir: str | Path) -> Path:
    """Gather every sidecar in ``run_dir`` into ``run_dir/report.md`` (atomic) and return its path."""
    run_dir = Path(run_dir)
    records, skipped = _read_records(run_dir)
    ok = sum(r.status == "ok" for r, _ in records)
    first = next((r.context for r, _ in records if r.context), {})
    lines = [
        f"# Workbench report — {run_dir.name}",
        "",
        f"{ok} of {len(records)} notebook(s) ran cleanly. Commit `{first.get('git_commit')}`, "
        f"versions {first.get('versions')}, host `{first.get('host')}`.",
        "",
        *(f"- skipped, not a run record: `{reason[:200]}`" for reason in skipped),
        "",
        "| notebook | status | data set | device | wall time (s) | machine |",
        "|---|---|---|---|---|---|",
    ]
    for rec, _ in records:
        c, load = rec.context, busy(rec.context)
        machine = f"busy: {load}" if load else "quiet" if c.get("load_at_start") else "load not recorded"
        cells = (rec.notebook, rec.status, c.get("dataset"), c.get("device"), rec.wall_time_s, machine)
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    lines.append("")
    lines += _headlines(records)
    lines += [_notebook_md(rec, figs) for rec, figs in records]
    path = run_dir / "report.md"
    atomic_write(path, "\n".join(lines))
    return path
