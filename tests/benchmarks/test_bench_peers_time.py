"""bench_peers' time-to-quality comparison for the sequential models: the clock RecBole
trains on (cut at the budget, validation kept off it), when ours reaches RecBole's best
validation score, and our per-epoch test trace."""

from __future__ import annotations

import math
from types import SimpleNamespace

import bench_peers as bench
import pandas as pd
import pytest
import run_recbole as recbole_runner


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_budget_cuts_mid_epoch_and_keeps_validation_off_the_clock(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(recbole_runner.time, "perf_counter", clock)
    seen = []

    def checkpoint(*, complete: bool) -> None:
        seen.append((budget.trained, budget.rows, complete))
        clock.now += 100.0  # a slow validation must not eat the training budget

    budget = recbole_runner.Budget(5.5, 2.0, checkpoint)
    epoch = budget.epoch([[0] * 3] * 10)  # ten batches of three rows
    for _ in epoch:
        clock.now += 1.0  # one training step
    assert seen == [(2.0, 6, False), (4.0, 12, False)]
    assert (budget.trained, budget.rows, epoch.rows, budget.cut) == (6.0, 18, 18, True)
    assert budget.spent()


def test_a_whole_epoch_inside_the_budget_is_not_cut(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(recbole_runner.time, "perf_counter", clock)
    budget = recbole_runner.Budget(60.0, 0, lambda **_: None)
    for _ in budget.epoch([[0, 0]] * 4):
        clock.now += 1.0
    assert (budget.trained, budget.rows, budget.cut, budget.spent()) == (4.0, 8, False, False)


def test_time_to_quality_compares_validation_with_validation():
    ours = [(10.0, 0.010, 0.011), (20.0, 0.030, 0.028), (30.0, 0.050, 0.045)]
    peer = [(60.0, 0.020, 0.1), (120.0, 0.031, 0.2), (180.0, 0.029, 0.3)]
    got = bench.time_to_quality(ours, peer, peer_test=0.027)
    assert (got["peer best valid"], got["peer s to best"]) == (0.031, 120.0)
    assert (got["ours s to reach"], got["ours test there"]) == (30.0, 0.045)  # 0.030 < 0.031: not yet at 20 s
    assert got["ours/peer time"] == pytest.approx(0.25)
    assert got["verdict"].startswith("met")


def test_time_to_quality_says_when_the_target_is_missed_or_never_reached():
    peer = [(90.0, 0.02, 0.1)]
    slow = bench.time_to_quality([(40.0, 0.025, 0.02)], peer, peer_test=0.02)
    assert slow["ours/peer time"] == pytest.approx(40 / 90) and slow["verdict"].startswith("NOT met")
    never = bench.time_to_quality([(40.0, 0.01, 0.01)], peer, peer_test=0.02)
    assert math.isinf(never["ours s to reach"]) and "never reached" in never["verdict"]
    assert bench.time_to_quality([], [], peer_test=0.0)["verdict"] == "no peer curve"


class FakeModel:
    """The two methods the test trace wraps: a validator and ``recommend_histories``."""

    def _validator(self, validation):
        return lambda: 0.5

    def recommend_histories(self, histories, *, k, ids, unknown):
        assert unknown == "skip" and [list(h) for h in histories] == [[10], [20, 21]]  # train + valid, per test user
        return pd.DataFrame({"user_id": ids, "item_id": [11, 99], "rank": [1, 1]})


def test_our_test_trace_scores_the_test_users_at_each_validation():
    history = pd.DataFrame({"user_id": [1, 2, 2], "item_id": [10, 20, 21], "timestamp": [0, 0, 1]})
    test = pd.DataFrame({"user_id": [1, 2], "item_id": [11, 22], "timestamp": [1, 2]})
    model = bench.with_test_curve(FakeModel)()
    model.test_split_ = SimpleNamespace(history=history, test=test)
    validate = model._validator(None)
    assert type(model).__name__ == "FakeModel"
    assert [validate(), validate()] == [0.5, 0.5]
    assert model.test_curve_ == [pytest.approx(0.5), pytest.approx(0.5)]  # one hit of two, at rank 1


def test_the_report_prints_both_curves_and_the_verdict(monkeypatch, capsys):
    ours = {"ndcg@10": 0.09, "curve": [(10.0, 0.02, 0.019), (20.0, 0.04, 0.041)], "load": "1.0-1.2"}
    peer = {"ndcg@10": 0.03, "curve": [(100.0, 0.01, 0.2), (200.0, 0.03, 0.4)], "load": "1.2-1.1"}
    row = {"model": "SASRec", "status": "ok", "budget min": 10.0, "ours": ours, "peer": peer}
    monkeypatch.setattr(bench, "compare_sequential", lambda split, **_: [row])
    monkeypatch.setattr(bench.splits, "leave_one_out", lambda interactions: None)
    got = bench.report_sequential(SimpleNamespace(name="ml-100k", interactions=None), budgets=[10.0])
    out = capsys.readouterr().out
    assert "ours (train s, valid nDCG@10, test nDCG@10) per epoch: [(10.0, 0.02, 0.019)" in out
    assert "peer (train s, valid, epochs done)" in out and "1.2-1.1" in out
    reach = got[0]["time to quality"]
    assert (reach["ours s to reach"], reach["peer s to best"], reach["ours test there"]) == (20.0, 200.0, 0.041)
    assert "met (target <= 0.33)" in out


def test_a_skipped_recbole_leaves_our_side_and_says_why(monkeypatch, tmp_path):
    frame = pd.DataFrame({"user_id": [1], "item_id": [2], "timestamp": [0]})
    split = SimpleNamespace(train=frame, valid=frame, test=frame)
    monkeypatch.setattr(bench, "ours_sequential", lambda *a: {"ndcg@10": 0.1, "curve": [(1.0, 0.1, 0.1)]})
    rows = bench.compare_sequential(
        split, budgets=[1.0], models=["SASRec"], pythons={}, threads=1, work=tmp_path, validate_every_s=60
    )
    got = [(r["model"], r["status"], r["library"], r["peer"]) for r in rows]
    assert got == [("SASRec", "skipped", "recbole", None)]
    assert "no environment for recbole" in rows[0]["reason"]
    table = bench.sequential_table(rows)
    assert "peer: skipped" in table and "0.100" in table


def test_ours_within_the_budget_is_the_best_validated_epoch_done_by_then():
    curve = [(50.0, 0.02, 0.03), (100.0, 0.05, 0.04), (150.0, 0.04, 0.05), (700.0, 0.09, 0.09)]
    got = bench.within_budget(curve, 600.0)
    assert got == {"ours epochs in budget": 3, "ours best valid in budget": 0.05, "ours test in budget": 0.04}
    assert bench.within_budget(curve, 10.0) == {"ours epochs in budget": 0}
