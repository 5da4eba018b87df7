"""Inference benchmarks over batch size x device x precision x compile.

A :class:`Workload` is what gets accelerated: an ``nn.Module`` (the part precision and
compilation transform), a function that scores a batch of inputs with it, and a
generator of input batches. :func:`benchmark` measures, for every grid point, warm
latency per batch (median and p95 over ``repeats``, after ``warmup`` calls, synchronised
on GPUs), throughput, peak memory, and agreement with the fp32 reference on the same
device: top-k overlap, the share of users whose top-k changed, and max |score diff|.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from workbench.data.sequences import histories as item_histories
from workbench.devices import PeakMemory, available_devices, resolve_device, synchronize
from workbench.models.base import Recommender
from workbench.speed.precision import PRECISIONS, PrecisionError, Prepared, check_precision, prepare

Inputs = dict[str, torch.Tensor]


@dataclass
class Workload:
    """``score(module, inputs) -> (B, n_items)``; ``make_inputs(batch_size, rng) -> inputs``."""

    name: str
    module: nn.Module
    score: Callable[[nn.Module, Inputs], torch.Tensor]
    make_inputs: Callable[[int, np.random.Generator], Inputs]
    n_items: int


class _LinearScorer(nn.Module):
    """scores = inputs @ W^T -- EASE (W = B^T, inputs = history rows) and factor models
    (W = item factors, inputs = user factors) are exactly one linear layer."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.linear = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(weight.detach().float().cpu())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, d) -> (B, n_items)
        return self.linear(x)


def linear_workload(name: str, weight: torch.Tensor, rows: torch.Tensor) -> Workload:
    """A one-layer scorer; ``rows`` (n, d) are the inputs batches are drawn from."""
    rows = rows.detach().float().cpu()

    def make(batch: int, rng: np.random.Generator) -> Inputs:
        return {"x": rows[torch.as_tensor(rng.integers(0, len(rows), batch))]}

    return Workload(name, _LinearScorer(weight), lambda m, inp: m(inp["x"]), make, weight.shape[0])


def model_workload(model, histories: list[np.ndarray] | None = None) -> Workload:
    """The scoring path of a fitted workbench model.

    Sequential models (``tokens``/``score_tokens``/``network``) are scored on random user
    histories, padded to the batch's longest; EASE on users' history rows; factor
    models (``user_factors_``/``item_factors_``) as user x item factor products.
    """
    name = type(model).__name__
    if hasattr(model, "score_tokens"):
        if histories is None:
            raise ValueError(f"{name}: pass the users' histories (item-index arrays) to draw batches from")

        def score(module: nn.Module, inp: Inputs) -> torch.Tensor:
            view = copy.copy(model)  # the same model, seen through another network
            view.network = module
            return view.score_tokens(**inp)

        def make(batch: int, rng: np.random.Generator) -> Inputs:
            chosen = [histories[i] for i in rng.integers(0, len(histories), batch)]
            return {k: v.cpu() for k, v in model.tokens(chosen).items()}

        return Workload(name, model.network, score, make, model.network.n_items)
    if hasattr(model, "weights_"):  # EASE: history rows @ B
        rows = torch.as_tensor(model.seen.toarray())
        return linear_workload(name, model.weights_.T, rows)
    if hasattr(model, "user_factors_"):
        return linear_workload(name, model.item_factors_, model.user_factors_)
    raise TypeError(f"{name}: no known scoring path to benchmark")


def run_prepared(prepared: Prepared, workload: Workload, inputs: Inputs) -> torch.Tensor:
    """One scoring call of ``workload`` with the prepared module (inference mode, autocast)."""
    with torch.inference_mode(), prepared.autocast():
        return workload.score(prepared.module, inputs)


def to_device(inputs: Inputs, device: torch.device) -> Inputs:
    """The input batch moved to ``device``."""
    return {k: v.to(device) for k, v in inputs.items()}


def agreement(reference: torch.Tensor, scores: torch.Tensor, k: int = 10) -> dict[str, float]:
    """Top-k overlap, share of rows whose top-k set changed, and max |difference|."""
    ref_top = torch.topk(reference.float(), k, dim=1).indices.sort(dim=1).values
    top = torch.topk(scores.float(), k, dim=1).indices.sort(dim=1).values
    same = (ref_top.unsqueeze(2) == top.unsqueeze(1)).any(2).float().mean(1)  # (B,) overlap share
    return {
        "topk_overlap": float(same.mean()),
        "users_changed_pct": float((same < 1).float().mean() * 100),
        "max_abs_diff": float((reference.float() - scores.float()).abs().max()),
    }


def measure(
    workload: Workload,
    *,
    batch_size: int,
    device: str = "cpu",
    precision: str = "fp32",
    compile: bool = False,
    repeats: int = 20,
    warmup: int = 3,
    seed: int = 0,
    prepared: Prepared | None = None,
) -> dict:
    """One grid point: latency (ms), throughput (users/s) and peak memory (MB).

    Times ``repeats`` calls cycling over up to 8 distinct random batches, so that batch
    size 1 is not one lucky user; every batch is seen once during warm-up.
    """
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    prep = prepared or prepare(workload.module, precision=precision, device=device, compile=compile)
    rng = np.random.default_rng(seed)
    # distinct batches (different users, different padded lengths), cycled through
    batches = [to_device(workload.make_inputs(batch_size, rng), prep.device) for _ in range(min(repeats, 8))]
    for i in range(max(warmup, len(batches))):
        run_prepared(prep, workload, batches[i % len(batches)])
    synchronize(prep.device)
    times = []
    with PeakMemory(prep.device) as mem:
        for i in range(repeats):
            t0 = time.perf_counter()
            run_prepared(prep, workload, batches[i % len(batches)])
            synchronize(prep.device)
            times.append(time.perf_counter() - t0)
    ms = np.asarray(times) * 1000
    return {
        "model": workload.name,
        "device": str(prep.device),
        "precision": precision,
        "compile": prep.compiled,
        "batch_size": int(batch_size),
        "threads": torch.get_num_threads(),
        "latency_ms_median": float(np.median(ms)),
        "latency_ms_p95": float(np.percentile(ms, 95)),
        "throughput_per_s": float(batch_size / np.median(ms) * 1000),
        "peak_mb": round(mem.peak_mb, 1),
        "notes": "; ".join(prep.notes),
    }


def benchmark(
    workload: Workload,
    *,
    batch_sizes: list[int],
    devices: list[str] = ("cpu",),
    precisions: list[str] = ("fp32",),
    compile: list[bool] = (False,),
    repeats: int = 20,
    warmup: int = 3,
    k: int = 10,
    agreement_users: int = 256,
    seed: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """Measure the whole grid; one row per point, with agreement against fp32 eager on
    the same device (columns ``topk_overlap``, ``users_changed_pct``, ``max_abs_diff``)
    and ``speedup_vs_batch1_fp32`` relative to batch 1 fp32 eager on that device."""
    if not batch_sizes:
        raise ValueError("batch_sizes is empty")
    rows = []
    grid = list(itertools.product(devices, precisions, compile))
    bar = tqdm(total=len(grid) * len(batch_sizes), desc=f"benchmark {workload.name}", disable=not progress)
    probe = workload.make_inputs(min(agreement_users, 4096), np.random.default_rng(seed + 1))
    references: dict[str, torch.Tensor] = {}
    for device, precision, comp in grid:
        prep = prepare(workload.module, precision=precision, device=device, compile=comp)
        dev = str(prep.device)
        if dev not in references:
            ref = prepare(workload.module, precision="fp32", device=device)
            references[dev] = run_prepared(ref, workload, to_device(probe, ref.device)).float().cpu()
        agree = agreement(references[dev], run_prepared(prep, workload, to_device(probe, prep.device)).float().cpu(), k)
        for b in batch_sizes:
            row = measure(
                workload, batch_size=b, precision=precision, repeats=repeats, warmup=warmup, seed=seed, prepared=prep
            )
            rows.append({**row, **agree})
            bar.update()
    bar.close()
    df = pd.DataFrame(rows)
    base = df[(df["precision"] == "fp32") & (~df["compile"]) & (df["batch_size"] == 1)].set_index("device")[
        "throughput_per_s"
    ]
    df["speedup_vs_batch1_fp32"] = df["throughput_per_s"] / df["device"].map(base)
    return df


def plan(devices: list[str] | None, precisions: list[str]) -> tuple[list[tuple[str, str]], list[dict]]:
    """Split device x precision into what can run here and what cannot (with the reason).

    ``devices=None`` means every device present. Unknown precisions are still an error.
    """
    runnable, skipped = [], []
    for device in devices or available_devices():
        dev = resolve_device(device)
        for precision in precisions:
            try:
                check_precision(precision, dev)
            except PrecisionError as err:
                if precision not in PRECISIONS:
                    raise
                skipped.append({"device": str(dev), "precision": precision, "reason": str(err)})
                continue
            runnable.append((str(dev), precision))
    return runnable, skipped


def run_plan(
    workload: Workload,
    runnable: list[tuple[str, str]],
    *,
    batch_sizes: list[int],
    compile: list[bool] = (False,),
    **options,
) -> pd.DataFrame:
    """:func:`benchmark` for each device with the precisions that run on it, concatenated."""
    frames = []
    for device in dict.fromkeys(d for d, _ in runnable):
        precisions = [p for d, p in runnable if d == device]
        frames.append(
            benchmark(
                workload, batch_sizes=batch_sizes, devices=[device], precisions=precisions, compile=compile, **options
            )
        )
    return pd.concat(frames, ignore_index=True)


def user_histories(model: Recommender, interactions: pd.DataFrame) -> list[np.ndarray]:
    """Each user's items as the model's item indices, oldest first: what
    :func:`model_workload` draws a sequential model's batches from."""
    return [model.items.index(h) for h in item_histories(interactions)]


def best_batch_sizes(results: pd.DataFrame) -> pd.DataFrame:
    """Per device and precision: the best batch size, its speedup over batch-1 fp32 and
    how many users' top-10 changed."""
    best = results.loc[results.groupby(["device", "precision", "compile"])["throughput_per_s"].idxmax()]
    return (
        best[
            [
                "device",
                "precision",
                "compile",
                "batch_size",
                "throughput_per_s",
                "speedup_vs_batch1_fp32",
                "users_changed_pct",
                "max_abs_diff",
            ]
        ]
        .rename(columns={"batch_size": "best_batch_size"})
        .reset_index(drop=True)
    )
