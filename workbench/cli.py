"""``workbench`` command line: run notebooks, write reports, fetch data sets.

    workbench run                          # every numbered notebook, defaults, into runs/<time>/
    workbench run notebooks/02_sparse_cf.ipynb -p dataset ml-1m -p k 20
    workbench run --smoke                  # synthetic data and tiny settings (offline)
    workbench report runs/20261129-120000
    workbench download ml-100k [--from FOLDER]
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

    rep = sub.add_parser("report", help="(re)write report.md for a run folder")
    rep.add_argument("run_dir")
    rep.set_defaults(func=_cmd_report)

    dl = sub.add_parser("download", help="download (or import) a data set into the cache")
    dl.add_argument("name", help="ml-100k, ml-1m or ml-latest-small")
    dl.add_argument("--from", dest="source", help="import from a local folder instead of downloading")
    dl.set_defaults(func=_cmd_download)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
