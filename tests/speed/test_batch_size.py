"""The OOM-safe batch-size search: back off on out-of-memory, respect a memory budget,
re-raise anything else; and the search on a model's scoring path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.data import datasets
from workbench.models import EASE
from workbench.speed.batch_size import BatchSearch, auto_batch_size, search_batch_size
from workbench.speed.benchmark import model_workload


def test_auto_batch_size_backs_off_on_out_of_memory_instead_of_crashing():
    calls = []

    def run(batch: int) -> None:
        calls.append(batch)
        if batch > 100:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")

    search = auto_batch_size(run, start=1, limit=4096)
    assert search.batch_size == 64
    assert search.tried[-1] == {"batch_size": 128, "status": "out of memory", "peak_mb": None}
    assert calls == [1, 2, 4, 8, 16, 32, 64, 128]


def test_auto_batch_size_respects_a_memory_budget():
    held = []

    def run(batch: int) -> None:
        held.append(np.ones(batch * 2**20 // 8))  # batch MB, kept alive
        held[-1] += 1
        held.clear()

    search = auto_batch_size(run, start=8, limit=1024, memory_budget_mb=100)
    assert search.batch_size < 128 and search.tried[-1]["status"] == "over budget"


def test_auto_batch_size_reraises_other_errors_and_rejects_bad_bounds():
    def run(batch: int) -> None:
        raise KeyError("a bug, not memory")

    with pytest.raises(KeyError):
        auto_batch_size(run)
    with pytest.raises(ValueError):
        auto_batch_size(lambda b: None, start=0)


def test_auto_batch_size_backs_off_on_a_cpu_allocation_failure():
    def run(batch: int) -> None:
        if batch > 4:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 GiB")

    search = auto_batch_size(run, start=1, limit=64)
    assert isinstance(search, BatchSearch) and search.batch_size == 4
    assert [t["status"] for t in search.tried] == ["ok", "ok", "ok", "out of memory"]


def test_auto_batch_size_fails_clearly_when_even_the_first_size_does_not_fit():
    def run(batch: int) -> None:
        raise MemoryError

    with pytest.raises(ValueError, match="batch size 2 already out of memory"):
        auto_batch_size(run, start=2)


def test_auto_batch_search_on_a_model():
    data = datasets.load("synthetic", size="tiny", seed=1)
    ease = EASE(reg=50.0, device="cpu").fit(data.interactions)
    search = search_batch_size(model_workload(ease), memory_budget_mb=10_000, limit=64)
    assert search.batch_size == 64 and all(t["status"] == "ok" for t in search.tried)
