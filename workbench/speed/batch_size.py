"""How large a batch fits: grow it until out-of-memory or a memory budget, and back off
instead of crashing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from workbench.devices import PeakMemory, is_out_of_memory, resolve_device
from workbench.speed.benchmark import Workload, run_prepared, to_device
from workbench.speed.precision import prepare


@dataclass
class BatchSearch:
    """Outcome of :func:`auto_batch_size`: the chosen size and every size tried."""

    batch_size: int
    tried: list[dict] = field(default_factory=list)


def auto_batch_size(
    run: Callable[[int], None],
    *,
    device: str | torch.device = "cpu",
    start: int = 1,
    limit: int = 4096,
    memory_budget_mb: float | None = None,
) -> BatchSearch:
    """Largest power-of-two batch (from ``start`` up to ``limit``) that ``run(batch)`` handles
    without running out of memory or exceeding ``memory_budget_mb``. Never raises for OOM:
    it backs off to the last size that fitted. Raises ``ValueError`` if even ``start`` fails.
    """
    if start < 1 or limit < start:
        raise ValueError(f"need 1 <= start <= limit, got start={start}, limit={limit}")
    dev = resolve_device(device)
    tried: list[dict] = []
    best = None
    size = start
    while size <= limit:
        try:
            with PeakMemory(dev) as mem:
                run(size)
        except Exception as err:
            if not is_out_of_memory(err):
                raise
            tried.append({"batch_size": size, "status": "out of memory", "peak_mb": None})
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            break
        over = memory_budget_mb is not None and mem.peak_mb > memory_budget_mb
        tried.append({"batch_size": size, "status": "over budget" if over else "ok", "peak_mb": round(mem.peak_mb, 1)})
        if over:
            break
        best = size
        size *= 2
    if best is None:
        raise ValueError(
            f"batch size {start} already {tried[-1]['status']} on {dev}; "
            "lower the batch size, the memory budget's demands, or the model size"
        )
    return BatchSearch(best, tried)


def search_batch_size(
    workload: Workload,
    *,
    device: str = "cpu",
    precision: str = "fp32",
    memory_budget_mb: float | None = None,
    limit: int = 4096,
    seed: int = 0,
) -> BatchSearch:
    """:func:`auto_batch_size` on one scoring call of ``workload``."""
    prep = prepare(workload.module, precision=precision, device=device)
    rng = np.random.default_rng(seed)

    def run(batch: int) -> None:
        run_prepared(prep, workload, to_device(workload.make_inputs(batch, rng), prep.device))

    return auto_batch_size(run, device=prep.device, memory_budget_mb=memory_budget_mb, limit=limit)
