"""``workbench`` command line: run notebooks, write reports, fetch data sets.

    workbench run                          # every numbered notebook, defaults, into runs/<time>/
    workbench run notebooks/02_sparse_cf.ipynb -p dataset ml-1m -p k 20
    workbench run --smoke                  # synthetic data and tiny settings (offline)
    workbench report runs/20261129-120000
    workbench sweep notebooks/05_speedups.ipynb -p batch_size 1 8 64 -p precision fp32 bf16 --jobs 2
    workbench store rebuild runs
    workbench download ml-100k [--from FOLDER]
    workbench serve --model ease --dataset ml-100k --port 8000   # HTTP service on 127.0.0.1
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path


def _value(text: str):
    """``-p`` values: Python literals where they parse (``3``, ``0.1``, ``[1, 2]``), else text."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _cmd_run(args) -> int:
    from workbench import runs

    params = {name: _value(v) for name, v in args.parameter}
    selected = [Path(p) for p in args.notebooks] or None
    if selected:
        import papermill as pm

        for nb in selected:
            if not nb.exists():
                print(f"error: {nb}: no such notebook", file=sys.stderr)
                return 2
            declared = pm.inspect_notebook(str(nb))
            unknown = sorted(set(params) - set(declared))
            if unknown and len(selected) == 1:
                print(f"error: {nb} declares no parameter(s) {unknown}; it declares {sorted(declared)}", file=sys.stderr)
                return 2

    def progress(path):
        print(f"running {path} ...", file=sys.stderr, flush=True)

    run_dir, records = runs.run_all(selected, parameters=params, runs_dir=args.runs_dir, smoke=args.smoke, progress=progress)
    failed = [r for r in records if r.status != "ok"]
    for r in records:
        line = f"{r.status:6s} {r.notebook} ({r.wall_time_s} s)"
        if r.error:
            line += f" -- cell {r.error.get('cell_index')}: {r.error.get('ename')}: {str(r.error.get('evalue'))[:200]}"
        print(line)
    print(f"report: {run_dir / 'report.md'}")
    return 1 if failed else 0


def _cmd_sweep(args) -> int:
    from workbench import sweeps

    grid = {values[0]: [_value(v) for v in values[1:]] for values in args.parameter}
    empty = [name for name, values in grid.items() if not values]
    if empty:
        print(f"error: no values given for parameter(s) {empty}", file=sys.stderr)
        return 2
    frame = sweeps.sweep(args.notebook, grid, jobs=args.jobs, runs_dir=args.runs_dir,
                         sweep_name=args.name, smoke=args.smoke)
    shown = ["path", "status"] + [c for c in frame.columns if c.startswith("param.")]
    print(frame[shown].to_string(index=False))
    failed = int((frame["status"] != "ok").sum())
    print(f"{len(frame) - failed} ok, {failed} failed; store: {args.runs_dir}/results.sqlite")
    return 1 if failed else 0


def _cmd_store(args) -> int:
    from workbench import store

    print(store.rebuild(args.runs_dir))
    return 0


def _cmd_report(args) -> int:
    from workbench.report import write_report

    print(write_report(Path(args.run_dir)))
    return 0


def _cmd_download(args) -> int:
    from workbench import datasets

    if args.source:
        folder = datasets.import_local(args.name, args.source)
    else:
        datasets.load(args.name)
        folder = datasets.data_dir() / args.name
    print(f"{args.name}: {folder}")
    return 0


def _cmd_serve(args) -> int:
    from workbench.service import serve

    return serve(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="workbench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="execute notebooks with papermill into a new runs/<time>/ folder")
    run.add_argument("notebooks", nargs="*", help="notebook paths (default: every notebooks/NN_*.ipynb)")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                     help="parameter for the notebooks that declare it (repeatable)")
    run.add_argument("--smoke", action="store_true", help="synthetic data and tiny settings (sets WORKBENCH_SMOKE=1)")
    run.add_argument("--runs-dir", default="runs", help="parent folder of run folders (default: runs)")
    run.set_defaults(func=_cmd_run)

    sw = sub.add_parser("sweep", help="run a notebook over a parameter grid (resumable, parallel)")
    sw.add_argument("notebook")
    sw.add_argument("-p", "--parameter", nargs="+", action="append", required=True, metavar="NAME VALUE",
                    help="a parameter and its values: -p batch_size 1 8 64 (repeatable)")
    sw.add_argument("--jobs", type=int, default=1, help="points run at once, each in its own process")
    sw.add_argument("--name", help="sweep folder name (default: derived from notebook and grid)")
    sw.add_argument("--smoke", action="store_true", help="synthetic data and tiny settings")
    sw.add_argument("--runs-dir", default="runs")
    sw.set_defaults(func=_cmd_sweep)

    st = sub.add_parser("store", help="results store maintenance")
    st.add_argument("action", choices=["rebuild"], help="rebuild runs/results.sqlite from the JSON records")
    st.add_argument("runs_dir", nargs="?", default="runs")
    st.set_defaults(func=_cmd_store)

    rep = sub.add_parser("report", help="(re)write report.md for a run folder")
    rep.add_argument("run_dir")
    rep.set_defaults(func=_cmd_report)

    dl = sub.add_parser("download", help="download (or import) a data set into the cache")
    dl.add_argument("name", help="ml-100k, ml-1m or ml-latest-small")
    dl.add_argument("--from", dest="source", help="import from a local folder instead of downloading")
    dl.set_defaults(func=_cmd_download)

    srv = sub.add_parser("serve", help="serve recommendations over HTTP (FastAPI + uvicorn)")
    srv.add_argument("--model", default="ease", help="popularity, ease, itemknn, ials, bpr, sasrec or bert4rec")
    srv.add_argument("--dataset", default="ml-100k", help="data set to fit on (ml-100k, ml-1m, ml-latest-small, synthetic)")
    srv.add_argument("--data-path", help="local folder or zip of the data set")
    srv.add_argument("--synthetic-size", default="small", help="size preset of the synthetic data set")
    srv.add_argument("--checkpoint", help="load a saved sequential model instead of fitting one")
    srv.add_argument("--epochs", type=int, default=5, help="training epochs of a sequential model")
    srv.add_argument("--seed", type=int, default=0)
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--max-batch-size", type=int, default=32, help="requests per model call")
    srv.add_argument("--max-wait-ms", type=float, default=2.0, help="longest wait for a batch to fill")
    srv.add_argument("--max-queue", type=int, default=1024, help="queued requests before 503")
    srv.add_argument("--max-in-flight", type=int, help="requests inside the server before 503 "
                     "(default: max queue + max batch size)")
    srv.add_argument("--no-priority-lane", dest="priority_lane", action="store_false",
                     help="first reads after an update queue like any other request")
    srv.add_argument("--timeout-ms", type=float, default=1000.0, help="per-request deadline (504)")
    srv.add_argument("--cache-size", type=int, default=10_000, help="cached top-k answers, 0 = off")
    srv.set_defaults(func=_cmd_serve)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
