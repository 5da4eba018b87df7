"""``workbench serve --retrieval``: the two-stage path built from the command line."""

from __future__ import annotations

import asyncio

import pytest

from workbench.cli import main
from workbench.serving.two_stage import TwoStageServable

SERVE = ["serve", "--dataset", "synthetic", "--synthetic-size", "tiny", "--model", "ease"]


@pytest.fixture
def served(monkeypatch):
    """The RecommendationService ``serve`` would run, instead of running it."""
    from workbench.serving import app

    out = []
    monkeypatch.setattr(app, "run", lambda service, **where: out.append(service))
    return out


def test_serve_retrieval_builds_a_two_stage_adapter_with_its_knobs(served):
    assert main([*SERVE, "--retrieval", "hnsw", "--candidates", "40", "--ef-search", "80", "--m", "12"]) == 0
    (service,) = served
    adapter = service.model
    assert isinstance(adapter, TwoStageServable)
    model = adapter.model
    assert type(model.retriever).__name__ == "IALS" and type(model.ranker).__name__ == "EASE"
    assert model.config.candidates == 40
    assert (model.config.index.backend, model.config.index.ef_search, model.config.index.m) == ("hnsw", 80, 12)

    async def ask():
        async with service:
            return await service.recommend(int(model.users.ids_[0]), 5)

    assert len(asyncio.run(ask()).items) == 5


def test_serve_retrieval_bad_input_is_a_clean_error(served, capsys):
    assert main([*SERVE, "--retrieval", "ivf", "--nprobe", "0"]) == 2
    assert "nprobe must be >= 1, got 0" in capsys.readouterr().err and not served
    assert main([*SERVE, "--retrieval", "hnsw", "--retriever", "ease"]) == 2
    assert "EASE has no user and item embeddings" in capsys.readouterr().err


def test_serve_retrieval_ivfpq_with_4_bit_codes_uses_faiss_fast_scan(served):
    args = ["--retrieval", "ivfpq", "--nlist", "4", "--nprobe", "4", "--code-size", "8", "--pq-bits", "4"]
    assert main([*SERVE, *args]) == 0
    adapter = served[0].model
    assert adapter.model.config.index.pq_bits == 4
    assert type(adapter.index._index).__name__ == "IndexIVFPQFastScan"
    user = int(adapter.model.users.ids_[0])
    assert len(adapter.recommend_batch([(user, 5)])[0].items) == 5
