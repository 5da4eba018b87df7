"""``workbench`` command line: run notebooks, write reports, fetch data sets.

workbench run                          # every numbered notebook, defaults, into runs/<time>/
workbench run notebooks/02_sparse_cf.ipynb -p dataset ml-1m -p k 20
workbench run --smoke                  # synthetic data and tiny settings (offline)
workbench report runs/20261129-120000
workbench sweep notebooks/05_speedups.ipynb -p batch_size 1 8 64 -p precision fp32 bf16 --jobs 2
workbench sweep notebooks/02_sparse_cf.ipynb -p ease_reg log:10..3000 -p models '["EASE"]' --search optuna \
    --trials 20 --objective valid/ndcg@10/EASE --backend ray --address 10.0.0.1:6379
workbench store rebuild runs
workbench download ml-100k [--from FOLDER_OR_ZIP] [--deadline SECONDS] [--max-mb MB]
workbench serve --model ease --dataset ml-100k --port 8000   # HTTP service on 127.0.0.1
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

# Each command imports what it uses when it runs, so that `workbench --help` and
# `workbench download` answer in a tenth of a second instead of loading torch, FastAPI
# and papermill first (several seconds). No import here is deferred to dodge a cycle:
# the CLI is the top layer and may import every other.


@contextmanager
def _warnings_as_lines():
    """Show the runs' own warnings (a skipped corrupt record, a stale lock) as one
    ``warning: ...`` line on stderr; every other warning as Python shows it."""
    from workbench.runs.lock import StaleLockWarning
    from workbench.runs.records import CorruptRecordWarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, (CorruptRecordWarning, StaleLockWarning)):
            print(f"warning: {message}", file=sys.stderr, flush=True)
        else:
            default(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        default = warnings.showwarning
        warnings.showwarning = show
        yield


def _cmd_run(args) -> int:
    import papermill as pm

    from workbench.runs import executor
    from workbench.runs.parameters import parse_value

    params = {name: parse_value(v) for name, v in args.parameter}  # checked by run_all before any kernel starts
    selected = [Path(p) for p in args.notebooks] or None
    if selected:
        for nb in selected:
            if not nb.exists():
                print(f"error: {nb}: no such notebook", file=sys.stderr)
                return 2
            declared = pm.inspect_notebook(str(nb))
            unknown = sorted(set(params) - set(declared))
            if unknown and len(selected) == 1:
                print(
                    f"error: {nb} declares no parameter(s) {unknown}; it declares {sorted(declared)}", file=sys.stderr
                )
                return 2

    def progress(path):
        print(f"running {path} ...", file=sys.stderr, flush=True)

    run_dir, records = executor.run_all(
        selected, parameters=params, runs_dir=args.runs_dir, smoke=args.smoke, progress=progress
    )
    failed = [r for r in records if r.status != "ok"]
    for r in records:
        line = f"{r.status:6s} {r.notebook} ({r.wall_time_s} s)"
        if r.error:
            line += f" -- cell {r.error.get('cell_index')}: {r.error.get('ename')}: {str(r.error.get('evalue'))[:200]}"
        print(line)
    print(f"report: {run_dir / 'report.md'}")
    return 1 if failed else 0


def _cmd_sweep(args) -> int:
    from workbench.runs import sweeps
    from workbench.runs.parameters import parse_value

    empty = [values[0] for values in args.parameter if len(values) < 2]
    if empty:
        print(f"error: no values given for parameter(s) {empty}", file=sys.stderr)
        return 2
    backend = sweeps.Backend(args.backend, args.jobs, args.address, args.cpus_per_point, args.gpus_per_point)
    try:
        with _warnings_as_lines():
            if args.search:
                frame = _search(args, backend)
            else:
                grid = {values[0]: [parse_value(v) for v in values[1:]] for values in args.parameter}  # checked first
                frame = sweeps.sweep(
                    args.notebook,
                    grid,
                    runs_dir=args.runs_dir,
                    sweep_name=args.name,
                    smoke=args.smoke,
                    strict=args.strict,
                    wait=args.wait,
                    backend=backend,
                    retries=args.retries,
                )
    except KeyboardInterrupt:
        print("interrupted: running points cancelled; run the same command again to resume", file=sys.stderr)
        return 130
    shown = ["path", "status"] + [c for c in frame.columns if c.startswith("param.") or c == args.objective]
    print(frame[shown].to_string(index=False))
    failed = int((frame["status"] != "ok").sum())
    print(f"{len(frame) - failed} ok, {failed} failed; store: {args.runs_dir}/results.sqlite")
    return 1 if failed else 0


def _search(args, backend):
    from workbench.runs import search

    if args.search != "optuna" or not args.objective or not args.trials:
        raise ValueError("--search optuna needs --objective METRIC and --trials N")
    space = search.parse_space(args.notebook, {values[0]: values[1:] for values in args.parameter})
    return search.search(
        args.notebook,
        space,
        objective=args.objective,
        trials=args.trials,
        direction=args.direction,
        backend=backend,
        runs_dir=args.runs_dir,
        name=args.name,
        smoke=args.smoke,
        seed=args.seed,
        retries=args.retries,
        allow_test_objective=args.allow_test_objective,
        wait=args.wait,
    )


def _cmd_store(args) -> int:
    from workbench.runs import store

    with _warnings_as_lines():
        print(store.rebuild(args.runs_dir, strict=args.strict))
    return 0


def _cmd_report(args) -> int:
    from workbench.runs.report import write_report

    with _warnings_as_lines():
        print(write_report(Path(args.run_dir)))
    return 0


def _cmd_download(args) -> int:
    from workbench.data import datasets

    limits = datasets.limits_for(args.name, deadline_s=args.deadline, max_archive_mb=args.max_mb)
    try:
        if args.source:
            folder = datasets.import_local(args.name, args.source, limits=limits)
        else:
            datasets.load(args.name, limits=limits)
            folder = datasets.data_dir() / args.name
    except OSError as err:  # a full disk, a folder not writable: a message, not a traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{args.name}: {folder}")
    return 0


def _cmd_serve(args) -> int:
    """Load the data, fit (or load) the model, serve it until Ctrl+C. Warns first when
    ``--host`` is more than loopback; the write token is ``--token`` or $WORKBENCH_TOKEN."""
    from workbench import models
    from workbench.data import datasets
    from workbench.serving import app
    from workbench.serving.adapters import servable
    from workbench.serving.service import RecommendationService, ServingConfig

    token = args.token or os.environ.get(app.TOKEN_ENV) or None
    warning = app.exposure_warning(args.host, token=token) if args.fd is None else None  # the supervisor warned
    if warning:
        print(warning, file=sys.stderr)
    if args.workers != 1:
        return _serve_replicas(args)
    data = datasets.load(args.dataset, path=args.data_path, size=args.synthetic_size, seed=args.seed)
    if args.checkpoint:  # the checkpoint names its model; a sequential one runs on --device
        sequential = models.is_sequential(models.checkpoint_model(args.checkpoint))
        model = models.load(args.checkpoint, **({"device": args.device} if sequential else {}))
    elif args.retrieval:  # two stages: --retriever and the index pick --candidates, --model re-ranks them
        model = _two_stage(args).fit(data.interactions)
    else:
        model = models.build(args.model, **_model_options(args)).fit(data.interactions)
    config = ServingConfig(
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        timeout_ms=args.timeout_ms,
        cache_size=args.cache_size,
        max_in_flight=args.max_in_flight,
        priority_lane=args.priority_lane,
    )
    if args.retrieval:
        from workbench.serving.two_stage import TwoStageServable

        adapter = TwoStageServable(model, state=args.state)
    else:
        adapter = servable(model, state=args.state)
    service = RecommendationService(adapter, config)
    replica = {} if args.fd is None else {"fd": args.fd}  # a replica of `serve --workers`: the supervisor's socket
    app.run(service, host=args.host, port=args.port, token=token, access_log=args.access_log, **replica)
    return 0


def _serve_replicas(args) -> int:
    """``serve --workers N``: N replicas of this very command behind one port, sharing
    users' online state through the Redis of ``--state`` (checked reachable first)."""
    from workbench.serving.replicas import Replicas, without_workers
    from workbench.serving.state import check_reachable

    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    if args.state in (None, "memory"):
        raise ValueError("--workers N needs --state redis://HOST:PORT/DB: replicas must share users' online state")
    check_reachable(args.state)
    print(f"serving on http://{args.host}:{args.port} with {args.workers} replicas, state in {args.state}")
    return Replicas(without_workers(args.argv), args.workers, host=args.host, port=args.port).start().run()


def _two_stage(args):
    """``serve --retrieval BACKEND``: a TwoStage of ``--retriever`` (+ the index, its knobs
    from ``--ef-search``, ``--nprobe``...) and ``--model`` as the ranker (its options as for
    a plain ``serve``), re-ranking ``--candidates`` items per request."""
    from workbench import models
    from workbench.retrieval import IndexConfig

    if args.checkpoint:
        raise ValueError("--retrieval fits its retriever and ranker; it does not take --checkpoint")
    knobs = {
        name: getattr(args, name)
        for name in ("m", "ef_construction", "ef_search", "nlist", "nprobe", "code_size", "pq_bits")
        if getattr(args, name) is not None
    }
    index = IndexConfig(backend=args.retrieval, device=args.device, **knobs)
    retriever = models.build(args.retriever, **models.applicable(args.retriever, seed=args.seed, device=args.device))
    ranker = models.build(args.model, **_model_options(args))
    return models.TwoStage(retriever=retriever, ranker=ranker, candidates=args.candidates, index=index)


def _model_options(args) -> dict:
    """What ``serve`` passes to the model: ``--seed`` and ``--device`` where the model has
    them, ``--epochs`` and ``--max-length`` for sequential models (briefly trained: serving
    speed does not depend on it), then every ``-o NAME VALUE``."""
    from workbench import models
    from workbench.runs.parameters import parse_value

    options = models.applicable(args.model, seed=args.seed, device=args.device)
    if models.is_sequential(args.model):
        options.update(epochs=args.epochs, max_length=args.max_length)
    return {**options, **{name: parse_value(value) for name, value in args.option}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="workbench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="execute notebooks with papermill into a new runs/<time>/ folder")
    run.add_argument("notebooks", nargs="*", help="notebook paths (default: every notebooks/NN_*.ipynb)")
    run.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="parameter for the notebooks that declare it (repeatable)",
    )
    run.add_argument("--smoke", action="store_true", help="synthetic data and tiny settings (sets WORKBENCH_SMOKE=1)")
    run.add_argument("--runs-dir", default="runs", help="parent folder of run folders (default: runs)")
    run.set_defaults(func=_cmd_run)

    sw = sub.add_parser("sweep", help="run a notebook over a parameter grid (resumable, parallel)")
    sw.add_argument("notebook")
    sw.add_argument(
        "-p",
        "--parameter",
        nargs="+",
        action="append",
        required=True,
        metavar="NAME VALUE",
        help="a parameter and its values: -p batch_size 1 8 64 (repeatable)",
    )
    sw.add_argument(
        "--jobs", type=int, default=1, help="points run at once in local processes; search: trials in flight"
    )
    sw.add_argument("--name", help="sweep folder name (default: derived from notebook and grid)")
    sw.add_argument("--smoke", action="store_true", help="synthetic data and tiny settings")
    sw.add_argument("--runs-dir", default="runs")
    sw.add_argument(
        "--strict", action="store_true", help="refuse a corrupt point record instead of setting it aside and rerunning"
    )
    sw.add_argument("--wait", action="store_true", help="wait for another sweep running in the same folder to finish")
    sw.add_argument("--retries", type=int, default=1, help="reruns of a failed or killed point (kept in attempts/)")
    sw.add_argument(
        "--backend", choices=["local", "ray"], default="local", help="local processes, or Ray tasks on a cluster"
    )
    sw.add_argument("--address", help="Ray cluster address, e.g. 10.0.0.1:6379 (default: RAY_ADDRESS or a local one)")
    sw.add_argument("--cpus-per-point", type=float, default=1, help="CPUs Ray reserves for each point")
    sw.add_argument("--gpus-per-point", type=float, default=0, help="GPUs Ray reserves for each point")
    sw.add_argument(
        "--search", choices=["optuna"], help="adaptive search instead of the grid: -p NAME [log:]LOW..HIGH ranges"
    )
    sw.add_argument("--trials", type=int, help="search: trials in the study (finished ones count on resume)")
    sw.add_argument("--objective", help="search: a validation metric the notebook records, e.g. valid/ndcg@10/EASE")
    sw.add_argument("--direction", choices=["maximize", "minimize"], default="maximize")
    sw.add_argument("--seed", type=int, default=0, help="search: the TPE sampler's seed")
    sw.add_argument(
        "--allow-test-objective", action="store_true", help="search: accept an objective that is not a valid/ metric"
    )
    sw.set_defaults(func=_cmd_sweep)

    st = sub.add_parser("store", help="results store maintenance")
    st.add_argument("action", choices=["rebuild"], help="rebuild runs/results.sqlite from the JSON records")
    st.add_argument("runs_dir", nargs="?", default="runs")
    st.add_argument(
        "--strict", action="store_true", help="refuse a corrupt record instead of skipping it with a warning"
    )
    st.set_defaults(func=_cmd_store)

    rep = sub.add_parser("report", help="(re)write report.md for a run folder")
    rep.add_argument("run_dir")
    rep.set_defaults(func=_cmd_report)

    dl = sub.add_parser("download", help="download (or import) a data set into the cache")
    dl.add_argument("name", help="ml-100k, ml-1m, ml-latest-small, ml-20m or ml-25m")
    dl.add_argument(
        "--from",
        dest="source",
        metavar="PATH",
        help="import a local copy (its folder or the zip) instead of downloading",
    )
    dl.add_argument(
        "--deadline",
        type=float,
        metavar="SECONDS",
        help="give up after this long (default 1800; env WORKBENCH_DOWNLOAD_DEADLINE)",
    )
    dl.add_argument(
        "--max-mb",
        type=float,
        metavar="MB",
        help="largest archive accepted (default: the data set's known size with margin; env WORKBENCH_DOWNLOAD_MAX_MB)",
    )
    dl.set_defaults(func=_cmd_download)

    srv = sub.add_parser("serve", help="serve recommendations over HTTP (FastAPI + uvicorn)")
    srv.add_argument(
        "--model",
        default="ease",
        help="a registered model: popularity, itemknn, ease, ials, bpr, sasrec or bert4rec (any case)",
    )
    srv.add_argument(
        "-o",
        "--option",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="a model option, e.g. -o reg 300 (repeatable; see workbench.models.options(name))",
    )
    srv.add_argument(
        "--dataset", default="ml-100k", help="data set to fit on (ml-100k, ml-1m, ml-latest-small, synthetic)"
    )
    srv.add_argument("--data-path", help="local folder or zip of the data set")
    srv.add_argument("--synthetic-size", default="small", help="size preset of the synthetic data set")
    srv.add_argument("--checkpoint", help="serve a saved sequential model (its folder) instead of fitting --model")
    srv.add_argument("--epochs", type=int, default=5, help="training epochs of a sequential model")
    srv.add_argument("--max-length", type=int, default=50, help="history items a sequential model reads")
    srv.add_argument("--device", default="cpu", help="where the model runs: cpu, cuda or auto")
    srv.add_argument("--seed", type=int, default=0)
    srv.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: loopback only; any other warns what it exposes)"
    )
    srv.add_argument(
        "--token",
        help="token that write endpoints (POST /interactions) require as 'Authorization: Bearer TOKEN' "
        "(default: $WORKBENCH_TOKEN; none: writes are open)",
    )
    srv.add_argument("--access-log", action="store_true", help="log a line per request (off: it slows load tests)")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--max-batch-size", type=int, default=32, help="requests per model call")
    srv.add_argument("--max-wait-ms", type=float, default=2.0, help="longest wait for a batch to fill")
    srv.add_argument("--max-queue", type=int, default=1024, help="queued requests before 503")
    srv.add_argument(
        "--max-in-flight", type=int, help="requests inside the server before 503 (default: max queue + max batch size)"
    )
    srv.add_argument(
        "--no-priority-lane",
        dest="priority_lane",
        action="store_false",
        help="first reads after an update queue like any other request",
    )
    srv.add_argument("--timeout-ms", type=float, default=1000.0, help="per-request deadline (504)")
    srv.add_argument(
        "--cache-size", type=int, default=100_000, help="top-k items the cache holds over all its answers, 0 = off"
    )
    srv.add_argument(
        "--state",
        metavar="URL",
        help="where users' online state lives: redis://HOST:PORT/DB (shared by replicas) or memory (default)",
    )
    srv.add_argument("--workers", type=int, default=1, help="replicas behind the one port (needs --state redis://...)")
    srv.add_argument(
        "--retrieval",
        choices=["exact", "flat", "hnsw", "ivf", "ivfpq"],
        help="two stages: retrieve --candidates items with this index, re-rank them with --model",
    )
    srv.add_argument("--candidates", type=int, default=200, help="with --retrieval: items re-ranked per request (N)")
    srv.add_argument("--retriever", default="ials", help="with --retrieval: the embedding model (ials, bpr)")
    srv.add_argument("--m", type=int, help="hnsw: graph neighbours per node")
    srv.add_argument("--ef-construction", type=int, help="hnsw: candidate list while building")
    srv.add_argument("--ef-search", type=int, help="hnsw: candidate list while searching")
    srv.add_argument("--nlist", type=int, help="ivf, ivfpq: coarse cells")
    srv.add_argument("--nprobe", type=int, help="ivf, ivfpq: cells visited per query")
    srv.add_argument("--code-size", type=int, help="ivfpq: sub-quantisers per item (bytes at 8 bits)")
    srv.add_argument(
        "--pq-bits", type=int, choices=(4, 8), help="ivfpq: 8-bit codes, or 4-bit codes scanned by SIMD (fast-scan)"
    )
    srv.add_argument("--fd", type=int, help=argparse.SUPPRESS)  # a replica: serve the supervisor's socket
    srv.set_defaults(func=_cmd_serve)

    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what `serve --workers` repeats per replica
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
