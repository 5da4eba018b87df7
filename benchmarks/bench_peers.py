"""Ours beside the peers -- implicit, LensKit, RecBole -- on OUR split, scored with OUR metrics.

Each peer runs its own implementation in a subprocess (``benchmarks/peers/run_*.py``)
with a timeout, fed our training data through files, and hands back its top-k lists,
which :func:`workbench.metrics.ranking_metrics` scores beside ours:

- collaborative filtering, the notebook 02 split (per-user random 75/25): implicit's ALS
  and BPR vs our IALS and BPR (same factors, regularisation, iterations, threads);
  LensKit's implicit MF and item-KNN vs our IALS and ItemKNN; RecBole's EASE vs ours.
- next item, leave-last-one-out with full ranking (notebook 04's split): RecBole's SASRec
  and BERT4Rec vs ours, each trained for the same wall-clock budgets (``--budgets``, in
  minutes), choosing the epoch on validation. RecBole trains on every prefix of every
  sequence (one target per row); ours on windows of ``max_length`` items (a target at
  every position), which is why sequences/s and targets/s are both shown. Time to
  quality (the issue's target, ours <= 1/3 of RecBole's time): the training seconds at
  which our validation curve first reached RecBole's best validation nDCG@10 (RecBole
  validates every ``--validate-every`` training seconds, mid-epoch too), against
  RecBole's seconds to that best, with both test nDCG@10 at those states.

implicit runs in this environment; LensKit and RecBole in ``.venv-peers`` (their pins
clash with ours: LensKit wants pandas < 3, RecBole numpy < 2), built by ``make peers``
or by this script when missing (``--no-build`` to skip). A peer that is not installed or
does not import is skipped with the reason; a run that crashes or times out is recorded
as such and the rest go on. Run from the repository root:

    .venv/bin/python benchmarks/bench_peers.py [--threads 1] [--budgets 2 5 10] [--models SASRec] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from workbench.data import datasets, splits
from workbench.data.matrix import IndexMap, interaction_matrix
from workbench.data.schema import ITEM, RANK, USER
from workbench.data.sequences import histories
from workbench.evaluation.topk import fit_and_score
from workbench.metrics import ranking_metrics
from workbench.models import BPR, EASE, IALS, BERT4Rec, ItemKNN, SASRec

ROOT = Path(__file__).resolve().parents[1]
RUNNERS = ROOT / "benchmarks" / "peers"
PEERS_VENV = ROOT / ".venv-peers"
ML100K = ROOT.parent / "shared" / "data" / "ml-100k"
#: what ``make peers`` installs into .venv-peers, in order (torch first: it lies on local disk)
PEER_INSTALL = (
    ("torch==2.13.0",),
    ("numpy<2", "setuptools<80", "pyarrow<19", "recbole==1.2.1", "lenskit==2025.2.0", "implicit==0.7.3"),
)
K = 10

# the settings both sides share; names are ours, each runner translates them
IALS_OPTIONS = dict(factors=64, reg=50.0, alpha=5.0, epochs=15, cg_steps=3, seed=0)
BPR_OPTIONS = dict(factors=64, reg=0.01, epochs=20, seed=0)
SEQUENTIAL = dict(embedding_size=64, layers=2, heads=2, max_length=25, dropout=0.2, seed=0)  # notebook 04


@dataclass(frozen=True)
class Pair:
    """One of our models beside one peer model: the runner, the module it needs, options."""

    peer: str  # library
    model: str  # the runner's model name
    ours: str
    runner: str  # file in benchmarks/peers
    module: str  # what must import for the peer to run
    params: dict = field(default_factory=dict)
    settings: str = ""  # what differs, and why


CF_PAIRS = (
    Pair(
        "implicit",
        "als",
        "IALS",
        "run_implicit.py",
        "implicit",
        IALS_OPTIONS,
        "implicit gets alpha + 1 (its C = alpha r)",
    ),
    Pair(
        "implicit",
        "bpr",
        "BPR",
        "run_implicit.py",
        "implicit",
        {**BPR_OPTIONS, "learning_rate": 0.01},
        "implicit: SGD at its default lr 0.01, one bias column; ours: Adam lr 0.003, batch 1024",
    ),
    Pair(
        "lenskit",
        "implicit_mf",
        "IALS",
        "run_lenskit.py",
        "lenskit",
        IALS_OPTIONS,
        "LensKit solves each row exactly (Cholesky); ours takes 3 CG steps",
    ),
    Pair("lenskit", "item_knn", "ItemKNN", "run_lenskit.py", "lenskit", {"k": 200}, "LensKit min_sim 1e-6"),
    Pair("recbole", "EASE", "EASE", "run_recbole.py", "recbole", {"reg": 600.0}, ""),
)


def ours_cf(name: str):
    return {
        "IALS": lambda: IALS(device="cpu", **IALS_OPTIONS),
        "BPR": lambda: BPR(device="cpu", learning_rate=0.003, batch_size=1024, **BPR_OPTIONS),
        "ItemKNN": lambda: ItemKNN(k=200),
        "EASE": lambda: EASE(device="cpu", reg=600.0),
    }[name]()


# --------------------------------------------------------------------------- running a peer


def peers_python(venv: Path = PEERS_VENV, *, build: bool = True, log: Path | None = None) -> tuple[Path | None, str]:
    """The peers environment's interpreter, building the venv when it is missing and
    ``build``; returns ``(python or None, why not)``."""
    python = venv / "bin" / "python"
    if python.is_file():
        return python, ""
    if not build:
        return None, f"{venv} not found (run `make peers`, or drop --no-build)"
    steps = [["python3", "-m", "venv", str(venv)]]
    steps += [[str(python), "-m", "pip", "install", "--quiet", *packages] for packages in PEER_INSTALL]
    with open(log or os.devnull, "a") as sink:
        for step in steps:
            if subprocess.run(step, stdout=sink, stderr=subprocess.STDOUT).returncode != 0:
                return None, f"building {venv} failed at: {' '.join(step)}"
    return python, ""


def import_problem(python: Path | str, module: str, *, timeout: float = 120) -> str | None:
    """None when ``module`` imports under ``python``; else the reason (the error's last line)."""
    try:
        done = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"import {module} timed out after {timeout:.0f} s"
    if done.returncode == 0:
        return None
    lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
    return f"{module} does not import: {lines[-1]}"


def run_peer(python: Path | str, runner: Path, spec: dict, *, timeout: float) -> dict:
    """Run one peer runner on ``spec``; returns ``{"status": ok|crashed|timed out,
    "reason", "result", "topk"}`` -- a crash or a timeout is recorded, never raised."""
    out = Path(spec["output"])
    out.mkdir(parents=True, exist_ok=True)
    spec_path = out / "spec.json"
    spec_path.write_text(json.dumps({**spec, "input": str(spec["input"]), "output": str(out)}))
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [str(python), str(runner), str(spec_path)], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"status": "timed out", "reason": f"no result within {timeout:.0f} s", "result": {}, "topk": None}
    if done.returncode != 0 or not (out / "result.json").is_file():
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"status": "crashed", "reason": f"exit status {done.returncode}: {tail}", "result": {}, "topk": None}
    with np.load(out / "topk.npz") as topk:
        arrays = {"users": topk["users"], "items": topk["items"]}
    result = json.loads((out / "result.json").read_text())
    return {"status": "ok", "reason": f"{time.perf_counter() - started:.0f} s", "result": result, "topk": arrays}


def recs_frame(users: np.ndarray, items: np.ndarray) -> pd.DataFrame:
    """(n,) user ids and (n, k) item ids (-1: empty) -> our recommendation frame."""
    n, k = items.shape
    keep = items.ravel() >= 0
    return pd.DataFrame(
        {USER: np.repeat(users, k)[keep], ITEM: items.ravel()[keep], RANK: np.tile(np.arange(1, k + 1), n)[keep]}
    )


def quality(recs: pd.DataFrame, test: pd.DataFrame) -> dict:
    """nDCG@10, recall@10 and HR@10 of top-k lists, by our metric code."""
    m = ranking_metrics(recs, test, k=K)
    return {"ndcg@10": m["ndcg"], "recall@10": m["recall"], "hr@10": m["hit_rate"]}


def skip(pair: Pair, status: str, reason: str) -> dict:
    return {"peer": pair.peer, "model": pair.model, "ours": pair.ours, "status": status, "reason": reason}


def available(pair: Pair, pythons: dict) -> tuple[Path | str | None, str]:
    """The interpreter to run ``pair``'s peer with, or None and why it is skipped."""
    python, why = pythons.get(pair.peer, (None, f"no environment for {pair.peer}"))
    if python is None:
        return None, why
    problem = import_problem(python, pair.module)
    return (None, problem) if problem else (python, "")


# --------------------------------------------------------------------------- collaborative filtering


def cf_inputs(train: pd.DataFrame, test: pd.DataFrame, folder: Path) -> tuple[IndexMap, IndexMap]:
    """Write the training data in our models' index space: ``train.npz`` and, for
    RecBole, ``train.csv`` and ``test.csv`` (the users to rank; its item column is a
    placeholder, and ``valid.csv`` a copy of it, since EASE chooses nothing)."""
    users, items = IndexMap.from_ids(train[USER], kind="user"), IndexMap.from_ids(train[ITEM], kind="item")
    coo = interaction_matrix(train, users, items).tocoo()
    test_users = np.unique(test[USER].to_numpy())
    query = users.index(test_users[users.contains(test_users)])
    folder.mkdir(parents=True, exist_ok=True)
    rows, cols = coo.row.astype(np.int64), coo.col.astype(np.int64)
    arrays = dict(users=rows, items=cols, n_users=len(users), n_items=len(items), query=query)
    np.savez(folder / "train.npz", **arrays)
    pd.DataFrame({USER: rows, ITEM: cols, "timestamp": 0}).to_csv(folder / "train.csv", index=False)
    first = pd.Series(cols, index=rows).groupby(level=0).first()
    asked = pd.DataFrame({USER: query, ITEM: first.loc[query].to_numpy(), "timestamp": 0})
    for name in ("test", "valid"):
        asked.to_csv(folder / f"{name}.csv", index=False)
    return users, items


def cf_row(pair: Pair, ours: dict, run: dict, users: IndexMap, items: IndexMap, test: pd.DataFrame) -> dict:
    """One line of the table: both sides' quality and time, and ours/peer."""
    row = skip(pair, run["status"], run["reason"])
    row.update({f"ours {k}": v for k, v in ours.items()})
    if run["status"] == "ok":
        top = run["topk"]["items"]
        peer_ids = np.where(top >= 0, items.ids(np.maximum(top, 0)), -1)
        got = quality(recs_frame(users.ids(run["topk"]["users"]), peer_ids), test)
        res = run["result"]
        got.update(
            {"fit s": res["fit_seconds"], "s/epoch": res.get("seconds_per_epoch"), "rec s": res["recommend_seconds"]}
        )
        row.update({f"peer {k}": v for k, v in got.items()})
        row["fit ours/peer"] = ours["fit s"] / got["fit s"]
    row["settings"] = pair.settings
    return row


def compare_cf(train, test, *, pythons: dict, threads: int, work: Path, timeout: float) -> pd.DataFrame:
    """Every CF pair: ours fitted here, the peer in its subprocess, both scored alike."""
    torch.set_num_threads(threads)
    users, items = cf_inputs(train, test, work / "cf")
    rows = []
    for pair in CF_PAIRS:
        model = ours_cf(pair.ours)
        m = fit_and_score(model, train, test, k=K)
        epochs = getattr(model.config, "epochs", None)
        ours = {"ndcg@10": m["ndcg"], "recall@10": m["recall"], "hr@10": m["hit_rate"], "fit s": m["fit_seconds"]}
        ours.update({"s/epoch": m["fit_seconds"] / epochs if epochs else None, "rec s": m["recommend_seconds"]})
        python, why = available(pair, pythons)
        if python is None:
            rows.append({**skip(pair, "skipped", why), **{f"ours {k}": v for k, v in ours.items()}})
            continue
        spec = {"model": pair.model, "params": pair.params, "threads": threads, "k": K, "input": work / "cf"}
        run = run_peer(
            python, RUNNERS / pair.runner, {**spec, "output": work / f"{pair.peer}-{pair.model}"}, timeout=timeout
        )
        rows.append(cf_row(pair, ours, run, users, items, test))
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- next item, equal budgets

SEQ_PAIRS = (
    Pair("recbole", "SASRec", "SASRec", "run_recbole.py", "recbole"),
    Pair("recbole", "BERT4Rec", "BERT4Rec", "run_recbole.py", "recbole", {"mask_probability": 0.4}),
)
#: ours: notebook 04's recipe; RecBole: its own defaults for batch size and learning rate
OURS_RECIPE = dict(batch_size=64, learning_rate=3e-3, patience=25)
RECBOLE_RECIPE = dict(batch_size=2048, learning_rate=1e-3)


def with_test_curve(cls: type) -> type:
    """``cls`` whose every validation also scores the test users (``test_curve_``, one
    test nDCG@10 per validated epoch), for reporting only: nothing is chosen on it, and
    it runs off the training clock, like validation. Needs ``test_split_`` set first."""

    class Traced(cls):
        def _validator(self, validation: pd.DataFrame):
            validate, split = super()._validator(validation), self.test_split_
            history = histories(split.history)
            users = np.unique(split.test[USER].to_numpy())
            self.test_curve_ = []

            def both() -> float:
                recs = self.recommend_histories([history[u] for u in users], k=K, ids=users, unknown="skip")
                self.test_curve_.append(quality(recs, split.test)["ndcg@10"])
                return validate()

            return both

    Traced.__name__ = cls.__name__
    return Traced


def ours_sequential(name: str, split: splits.LeaveOneOut, budget_s: float, probe: dict) -> dict:
    """Fit ours for about ``budget_s`` seconds: as many epochs as the measured seconds per
    epoch allow (early stopping on validation may end it sooner). Test top-k from the
    training + validation history, as RecBole's. ``curve``: (cumulative training seconds,
    validation nDCG@10, test nDCG@10) per epoch."""
    cls = with_test_curve({"SASRec": SASRec, "BERT4Rec": BERT4Rec}[name])
    extra = {"mask_probability": 0.4} if name == "BERT4Rec" else {}
    if name not in probe:  # one epoch, to size the budgets
        one = cls(device="cpu", epochs=1, **SEQUENTIAL, **OURS_RECIPE, **extra).fit(split.train)
        probe[name] = float(one.result_.curves["train_seconds"].sum())
    epochs = max(1, int(budget_s // probe[name]))
    model = cls(device="cpu", epochs=epochs, **SEQUENTIAL, **OURS_RECIPE, **extra)
    model.test_split_ = split
    model.fit(split.train, validation=split.valid)
    curves = model.result_.curves
    trained = curves[curves["epoch"] >= 1]
    train_s = float(trained["train_seconds"].sum())
    windows = model.training_windows()
    history = histories(split.history)
    users = np.unique(split.test[USER].to_numpy())
    started = time.perf_counter()
    recs = model.recommend_histories([history[u] for u in users], k=K, ids=users, unknown="skip")
    out = quality(recs, split.test)
    return {
        **out,
        "train s": train_s,
        "epochs": len(trained),
        "sequences/s": len(windows) * len(trained) / train_s,
        "targets/s": sum(len(w) - 1 for w in windows) * len(trained) / train_s,
        "rec s": time.perf_counter() - started,
        "curve": [
            (round(float(s), 2), round(float(v), 4), round(t, 4))
            for s, v, t in zip(trained["train_seconds"].cumsum(), trained["valid_score"], model.test_curve_)
        ],
    }


def recbole_sequential(result: dict, run_dir: Path, test: pd.DataFrame, valid: pd.DataFrame, topk: dict) -> dict:
    """RecBole's side of a budget row, its validation curve -- (training seconds,
    validation nDCG@10, epochs done) per validation -- scored by our metrics."""
    curve = []
    for point in result["curve"]:
        with np.load(run_dir / f"valid_point{point['point']}.npz") as v:
            score = quality(recs_frame(v["users"], v["items"]), valid)["ndcg@10"]
        curve.append((round(point["seconds"], 2), round(score, 4), round(point["epochs_done"], 3)))
    return {
        **quality(recs_frame(topk["users"], topk["items"]), test),
        "train s": result["train_seconds"],
        "epochs": round(result["epochs"], 2),
        "sequences/s": result["sequences_per_second"],
        "targets/s": result["sequences_per_second"],  # one target per prefix row
        "rec s": result["recommend_seconds"],
        "curve": curve,
    }


def sequential_inputs(split: splits.LeaveOneOut, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("train", "valid", "test"):
        getattr(split, name)[[USER, ITEM, "timestamp"]].to_csv(folder / f"{name}.csv", index=False)


def compare_sequential(
    split, *, budgets: list[float], models: list[str], pythons: dict, threads: int, work: Path, validate_every_s: float
) -> list[dict]:
    """Ours and RecBole's ``models`` (SASRec, BERT4Rec) at each budget (minutes); one dict
    each. RecBole validates every ``validate_every_s`` training seconds (and at epoch ends).
    Each side carries ``load``: the 1-minute load average at its start and at its end."""
    torch.set_num_threads(threads)
    sequential_inputs(split, work / "seq")
    rows, probe = [], {}
    for pair in (p for p in SEQ_PAIRS if p.model in models):
        python, why = available(pair, pythons)
        for minutes in budgets:
            # "peer" holds RecBole's side (None until it ran); the library's name is "library"
            row = {**skip(pair, "skipped", why), "library": pair.peer, "peer": None, "budget min": minutes}
            load = os.getloadavg()[0]
            row["ours"] = ours_sequential(pair.ours, split, minutes * 60, probe)
            row["ours"]["load"] = f"{load:.1f}-{os.getloadavg()[0]:.1f}"
            if python is not None:
                out = work / f"recbole-{pair.model}-{minutes:g}min"
                params = {**SEQUENTIAL, **RECBOLE_RECIPE, **pair.params, "budget_s": minutes * 60}
                params["validate_every_s"] = validate_every_s
                spec = {"model": pair.model, "params": params, "threads": threads, "k": K, "input": work / "seq"}
                load = os.getloadavg()[0]
                run = run_peer(python, RUNNERS / pair.runner, {**spec, "output": out}, timeout=minutes * 60 + 900)
                row.update(status=run["status"], reason=run["reason"])
                if run["status"] == "ok":
                    row["peer"] = recbole_sequential(run["result"], out, split.test, split.valid, run["topk"])
                    row["peer"]["load"] = f"{load:.1f}-{os.getloadavg()[0]:.1f}"
            rows.append(row)
    return rows


#: the issue's target: ours reaches the peer's quality in at most this share of its training time
TIME_TARGET = 1 / 3


def time_to_quality(ours_curve: list, peer_curve: list, peer_test: float) -> dict:
    """When ours first reached the peer's best *validation* nDCG@10 (validation against
    validation), against the peer's training seconds to that best; both test nDCG@10 at
    those states (ours: the epoch it got there; the peer's: its validation-chosen state).
    ``ours_curve``: (seconds, valid, test) per epoch; ``peer_curve``: (seconds, valid, ...)."""
    if not peer_curve:
        return {"verdict": "no peer curve"}
    peer_s, peer_q = max(peer_curve, key=lambda p: p[1])[:2]  # the first of equal bests
    reached = [(s, t) for s, q, t in ours_curve if q >= peer_q]
    ours_s, ours_test = reached[0] if reached else (float("inf"), float("nan"))
    ratio = ours_s / peer_s if peer_s > 0 else float("inf")
    met = "met" if ratio <= TIME_TARGET else "NOT met"
    return {
        "peer best valid": peer_q,
        "peer s to best": peer_s,
        "peer test": peer_test,
        "ours s to reach": ours_s,
        "ours test there": ours_test,
        "ours/peer time": ratio,
        "verdict": f"{met} (target <= {TIME_TARGET:.2f})" if reached else "NOT met (ours never reached it)",
    }


def within_budget(curve: list, budget_s: float) -> dict:
    """Ours as a run cut at ``budget_s`` training seconds would have ended: the best
    validated epoch among those done by then (ours sizes its epochs from one probe epoch,
    so a busier machine can carry it past the budget; the learning rate is constant
    after warm-up, so the curve up to any epoch does not depend on how many follow)."""
    done = [p for p in curve if p[0] <= budget_s]
    if not done:
        return {"ours epochs in budget": 0}
    _, valid, test = max(done, key=lambda p: p[1])
    return {"ours epochs in budget": len(done), "ours best valid in budget": valid, "ours test in budget": test}


def reach_table(rows: list[dict]) -> str:
    lines = [{"model": r["model"], "budget min": r["budget min"], **r["time to quality"]} for r in rows]
    return pd.DataFrame(lines).to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-")


# --------------------------------------------------------------------------- report


def header(threads: int) -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    load = os.getloadavg()[0]
    return (
        f"# bench_peers  {platform.processor() or platform.machine()}  {os.cpu_count()} CPUs  {threads} thread(s)"
        f"  torch {torch.__version__}  commit {commit.stdout.strip() or '?'}  load average {load:.1f}"
        f"{'  (busy)' if load > 2 else ''}"
    )


def cf_table(rows: pd.DataFrame) -> str:
    cols = ["peer", "model", "ours", "status"]
    for side in ("ours", "peer"):
        cols += [f"{side} {m}" for m in ("ndcg@10", "recall@10", "fit s", "s/epoch", "rec s")]
    shown = rows.reindex(columns=[*cols, "fit ours/peer"])
    return shown.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-")


def sequential_table(rows: list[dict]) -> str:
    lines = []
    for r in rows:
        for side in ("ours", "peer"):
            got = r.get(side)
            line = {
                "model": r["model"],
                "budget min": r["budget min"],
                "side": side if got else f"{side}: {r['status']}",
            }
            if got:
                line.update({k: v for k, v in got.items() if k != "curve"})
            lines.append(line)
    return pd.DataFrame(lines).to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-")


def report_cf(data, *, pythons: dict, threads: int, work: Path, timeout: float) -> list[dict]:
    train, test = splits.stratified(data.interactions, 0.75, seed=42)
    cf = compare_cf(train, test, pythons=pythons, threads=threads, work=work, timeout=timeout)
    print(f"\n## Collaborative filtering on {data.name}, per-user random 75/25 split, top-10\n{cf_table(cf)}")
    for _, r in cf.iterrows():
        print(f"- {r['peer']} {r['model']} vs our {r['ours']}: {r['status']} ({r['reason']}) {r['settings']}")
    return cf.to_dict(orient="records")


def report_sequential(data, *, budgets: list[float], **options) -> list[dict]:
    split = splits.leave_one_out(data.interactions)
    seq = compare_sequential(split, budgets=budgets, **options)
    title = f"Next item on {data.name}, leave-last-one-out, full ranking, equal wall-clock budgets"
    print(f"\n## {title}\n{sequential_table(seq)}")
    points = {"ours": "(train s, valid nDCG@10, test nDCG@10) per epoch", "peer": "(train s, valid, epochs done)"}
    for r in seq:
        for side in ("ours", "peer"):
            if r.get(side):
                print(f"- {r['model']} {r['budget min']:g} min, {side} {points[side]}: {r[side]['curve']}")
    reached = [r for r in seq if r.get("peer")]
    for r in reached:
        r["time to quality"] = time_to_quality(r["ours"]["curve"], r["peer"]["curve"], r["peer"]["ndcg@10"])
        r["time to quality"].update(within_budget(r["ours"]["curve"], r["budget min"] * 60))
    if reached:
        print(
            "\n## Time to RecBole's quality: training seconds until ours first matched RecBole's best"
            " validation nDCG@10, and both test nDCG@10 there"
            f" (target: ours/peer time <= {TIME_TARGET:.2f})\n{reach_table(reached)}"
        )
    return seq


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ML100K, help="ml-100k folder (else synthetic small)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--budgets", type=float, nargs="*", default=[2, 5, 10], help="minutes; none: skip next-item")
    names = [p.model for p in SEQ_PAIRS]
    parser.add_argument("--models", nargs="+", choices=names, default=names, help="next-item models to run")
    parser.add_argument(
        "--validate-every", type=float, default=60, help="RecBole: validate every this many training seconds"
    )
    parser.add_argument("--skip-cf", action="store_true")
    parser.add_argument("--timeout", type=float, default=900, help="seconds for one CF peer run")
    parser.add_argument("--no-build", action="store_true", help="do not build .venv-peers when it is missing")
    parser.add_argument("--work", type=Path, help="folder for exchanged files (default: a temporary one)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    data = datasets.load("ml-100k", path=args.data) if (args.data / "u.data").is_file() else None
    data = data or datasets.load("synthetic", size="small", seed=0)
    peers, why = peers_python(build=not args.no_build)
    pythons = {"implicit": (sys.executable, ""), "lenskit": (peers, why), "recbole": (peers, why)}
    print(header(args.threads), flush=True)
    print(f"load averages at start (1, 5, 15 min): {' '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)
    report = {"data": data.name, "threads": args.threads, "load_average": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        common = {"pythons": pythons, "threads": args.threads, "work": args.work or Path(tmp)}
        if not args.skip_cf:
            report["cf"] = report_cf(data, timeout=args.timeout, **common)
        if args.budgets:
            extra = {"models": args.models, "validate_every_s": args.validate_every}
            report["sequential"] = report_sequential(data, budgets=args.budgets, **common, **extra)
    report["load_average_end"] = os.getloadavg()
    print(f"\nload averages at the end (1, 5, 15 min): {' '.join(f'{v:.2f}' for v in report['load_average_end'])}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
