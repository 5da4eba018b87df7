"""The next-item protocol (notebook 04): leave-one-out, ranked over the whole catalogue
and, to show how much it inflates, over sampled negatives; baselines chosen on validation.

- :func:`phase` -- what a model may see when ranking the validation or the test items
  of a :class:`~workbench.data.splits.LeaveOneOut` split;
- *scorers* see every model family the same way, as (B,) user ids -> (B, catalogue)
  scores: :func:`user_scorer` (a fitted user-based model), :func:`history_scorer` (a
  sequential model fed each user's history), :func:`last_items_scorer` (item-KNN on the
  last items);
- :func:`rank_held_out` -- the full (and sampled) rank of every test user's held-out
  item through a scorer; :func:`metrics_from_ranks`, :func:`results_table` and
  :func:`by_history_length` turn ranks into HR@k, nDCG@k and MRR
  (:mod:`workbench.metrics.ranks` defines them and their tie convention);
- :func:`baseline_candidates` and :func:`choose_on_validation` -- the non-sequential
  baselines, each setting tried on validation, the best kept per model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from workbench.data.matrix import IndexMap, row_pairs
from workbench.data.schema import ITEM, USER, require_columns
from workbench.data.sequences import histories
from workbench.data.splits import LeaveOneOut
from workbench.metrics.ranks import full_ranks, ndcg_gains, rank_metrics, sampled_ranks
from workbench.models import registry
from workbench.models.base import Recommender

#: a model seen through the evaluation: (B,) user ids -> (B, len(catalogue)) scores
Scorer = Callable[[np.ndarray], torch.Tensor]


def sample_negatives(
    history: pd.Series, test: pd.DataFrame, catalogue: IndexMap, *, n: int = 100, seed: int = 0
) -> pd.DataFrame:
    """``n`` catalogue items per test user, uniformly, never in the user's history or test.

    Returns a DataFrame indexed by ``user_id`` with one int64 column per draw (catalogue
    indices), the same for every model evaluated with it.
    """
    rng = np.random.default_rng(seed)
    rows = []
    users = test[USER].to_numpy()
    for user, target in zip(users, test[ITEM].to_numpy()):
        own = np.r_[history.get(user, np.empty(0, np.int64)), target]
        taken = np.zeros(len(catalogue), bool)
        taken[catalogue.index(own[catalogue.contains(own)])] = True
        free = np.flatnonzero(~taken)
        if len(free) < n:
            raise ValueError(f"user {user}: only {len(free)} unseen items, cannot sample {n} negatives")
        rows.append(rng.choice(free, size=n, replace=False))
    return pd.DataFrame(np.asarray(rows, dtype=np.int64).reshape(len(users), n), index=pd.Index(users, name=USER))


def _exclusion(history: list[np.ndarray], catalogue: IndexMap) -> torch.Tensor:
    """(2, E) (row, column) pairs of each row's history items that are in the catalogue."""
    rows, items = row_pairs(history)
    known = catalogue.contains(items)
    return torch.as_tensor(np.stack([rows[known], catalogue.index(items[known])]))


def rank_held_out(
    scorer: Scorer,
    test: pd.DataFrame,
    history: pd.Series,
    catalogue: IndexMap,
    *,
    negatives: pd.DataFrame | None = None,
    batch_size: int = 256,
) -> pd.DataFrame:
    """Full (and, given ``negatives``, sampled) rank of every test user's held-out item.

    ``test`` holds one (``user_id``, ``item_id``) row per user; ``history`` maps users to
    the items seen before (excluded from the ranking); ``scorer`` returns scores over
    ``catalogue``. Returns one row per test user: ``user_id``, ``item_id``,
    ``history_length``, ``rank`` and ``sampled_rank`` (NaN without negatives).
    """
    require_columns(test, [USER, ITEM], source="rank_held_out")
    if test[USER].duplicated().any():
        raise ValueError("rank_held_out: test must hold one held-out item per user")
    users = test[USER].to_numpy()
    targets_all = test[ITEM].to_numpy(dtype=np.int64)
    full, sampled = np.empty(len(users)), np.full(len(users), np.nan)
    for start in range(0, len(users), batch_size):
        u = users[start : start + batch_size]
        scores = scorer(u).float().cpu()  # (B, N)
        items = targets_all[start : start + batch_size]
        known = catalogue.contains(items)
        targets = torch.full((len(u),), -1, dtype=torch.long)
        targets[torch.as_tensor(known)] = torch.as_tensor(catalogue.index(items[known]))
        seen = [history.get(x, np.empty(0, np.int64)) for x in u]
        full[start : start + len(u)] = full_ranks(scores, targets, _exclusion(seen, catalogue)).numpy()
        if negatives is not None:
            neg = torch.as_tensor(np.array(negatives.loc[u], dtype=np.int64))
            sampled[start : start + len(u)] = sampled_ranks(scores, targets, neg).numpy()
    lengths = np.array([len(history.get(x, ())) for x in users])
    return pd.DataFrame(
        {USER: users, ITEM: targets_all, "history_length": lengths, "rank": full, "sampled_rank": sampled}
    )


def metrics_from_ranks(per_user: pd.DataFrame, k: int = 10) -> dict[str, float]:
    """HR@k, nDCG@k, MRR from :func:`rank_held_out`'s ranks; ``sampled_`` keys for sampled ones."""
    out = rank_metrics(per_user["rank"].to_numpy(), k)
    if per_user["sampled_rank"].notna().all():
        out.update({f"sampled_{m}": v for m, v in rank_metrics(per_user["sampled_rank"].to_numpy(), k).items()})
    return out


def results_table(per_user: dict[str, pd.DataFrame], k: int = 10) -> pd.DataFrame:
    """One row per model: full-ranking metrics beside the sampled ones."""
    table = pd.DataFrame({name: metrics_from_ranks(frame, k) for name, frame in per_user.items()}).T
    table.index.name = "model"
    return table


def by_history_length(
    per_user: dict[str, pd.DataFrame], *, bins: tuple[float, ...] = (0, 20, 50, 100, 200, np.inf), k: int = 10
) -> pd.DataFrame:
    """nDCG@k per model for users grouped by history length (rows: length bins, plus ``users``)."""
    table = {}
    for name, frame in per_user.items():
        gain = ndcg_gains(frame["rank"].to_numpy(), k)
        group = pd.cut(frame["history_length"], bins, right=False)
        table[name] = pd.Series(gain).groupby(group.to_numpy(), observed=False).mean()
        table["users"] = frame.groupby(group, observed=False).size()
    out = pd.DataFrame(table)
    out.index = [
        f"{int(iv.left)}-{iv.right - 1:.0f}" if np.isfinite(iv.right) else f"{int(iv.left)}+" for iv in out.index
    ]
    out.index.name = "history length"
    return out[["users"] + list(per_user)]


# -- scorers: every model family seen as user_ids -> (B, len(catalogue)) -------------------


def _onto(scores: torch.Tensor, model_items: IndexMap, catalogue: IndexMap) -> torch.Tensor:
    """(B, n_model_items) -> (B, len(catalogue)); catalogue items the model lacks get -inf."""
    out = torch.full((scores.shape[0], len(catalogue)), float("-inf"), dtype=torch.float32)
    known = catalogue.contains(model_items.ids_)
    out[:, torch.as_tensor(catalogue.index(model_items.ids_[known]))] = scores.float().cpu()[:, torch.as_tensor(known)]
    return out


def user_scorer(model: Recommender, catalogue: IndexMap) -> Scorer:
    """A fitted user-based model (EASE, ItemKNN, Popularity...) scored on its own history."""
    return lambda user_ids: _onto(model.score(model.users.index(user_ids)), model.items, catalogue)


def history_scorer(model, history: pd.Series, catalogue: IndexMap) -> Scorer:
    """A sequential model (``score_histories``) fed each user's ``history`` (item ids)."""
    return lambda user_ids: _onto(
        model.score_histories([history.get(u, []) for u in user_ids], unknown="skip"), model.items, catalogue
    )


def last_items_scorer(model: Recommender, history: pd.Series, catalogue: IndexMap, *, n_last: int = 1) -> Scorer:
    """Item-KNN on the last item(s): sum of ``model.item_similarity`` rows of each user's
    ``n_last`` most recent items known to the model (no known item: all zeros)."""

    def score(user_ids: np.ndarray) -> torch.Tensor:
        last = []
        for u in user_ids:
            items = np.asarray(history.get(u, []), dtype=np.int64)
            last.append(model.items.index(items[model.items.contains(items)][-n_last:]))
        rows = torch.as_tensor(np.repeat(np.arange(len(last)), [len(x) for x in last]))
        scores = torch.zeros(len(user_ids), len(model.items))
        if len(rows):  # one similarity call for the whole batch, summed per user
            scores.index_add_(0, rows, model.item_similarity(np.concatenate(last)).float().cpu())
        return _onto(scores, model.items, catalogue)

    return score


# -- the protocol: choose on validation, report on test -------------------------------

#: builds a scorer from what a model may see: (interactions to fit, histories, catalogue)
Recipe = Callable[[pd.DataFrame, pd.Series, IndexMap], Scorer]


@dataclass(frozen=True)
class Phase:
    """One stage of leave-one-out: fit on ``fit``, rank for ``target`` (one item per
    user) given ``history`` (per-user item ids, excluded), over ``catalogue``."""

    fit: pd.DataFrame
    history: pd.Series
    target: pd.DataFrame
    catalogue: IndexMap


def phase(split: LeaveOneOut, on: str) -> Phase:
    """``on="valid"``: fit on train, rank the validation items; ``on="test"``: fit on
    train + valid, rank the test items."""
    if on not in ("valid", "test"):
        raise ValueError(f"on must be 'valid' or 'test', got {on!r}")
    fit, target = (split.train, split.valid) if on == "valid" else (split.history, split.test)
    return Phase(fit, histories(fit), target, IndexMap.from_ids(fit[ITEM], kind="item"))


def user_recipe(name: str, **options) -> Recipe:
    """The recipe of a user-based model: ``models.build(name, **options)`` fitted on the
    interactions, scored by :func:`user_scorer`."""
    return lambda interactions, history, catalogue: user_scorer(
        registry.build(name, **options).fit(interactions), catalogue
    )


def last_items_recipe(*, k: int, n_last: int) -> Recipe:
    """The recipe of item-KNN on the last items: ``ItemKNN(k=k)`` fitted on the
    interactions, scored by :func:`last_items_scorer`."""
    return lambda interactions, history, catalogue: last_items_scorer(
        registry.build("ItemKNN", k=k).fit(interactions), history, catalogue, n_last=n_last
    )


def baseline_candidates(
    *,
    ease_reg: tuple[float, ...] = (50, 100, 250, 500, 1000),
    knn_k: tuple[int, ...] = (20, 50, 100, 200),
    last_items: tuple[int, ...] = (1, 2, 3, 5),
) -> list[tuple[str, dict, Recipe]]:
    """``(name, options, recipe)`` for every baseline setting to try on validation:
    Popularity, EASE per ``reg``, ItemKNN per ``k``, and last-item(s) KNN per (``k``,
    ``n_last``)."""
    out: list[tuple[str, dict, Recipe]] = [("Popularity", {}, user_recipe("Popularity"))]
    out += [("EASE", {"reg": r}, user_recipe("EASE", reg=r)) for r in ease_reg]
    out += [("ItemKNN", {"k": k}, user_recipe("ItemKNN", k=k)) for k in knn_k]
    out += [
        ("last-item KNN", {"k": k, "n_last": n}, last_items_recipe(k=k, n_last=n)) for k in knn_k for n in last_items
    ]
    return out


def choose_on_validation(
    split: LeaveOneOut, candidates: list[tuple[str, dict, Recipe]], *, k: int = 10
) -> tuple[dict[str, tuple[dict, Recipe]], pd.DataFrame]:
    """Score every candidate on the validation phase; keep the best nDCG@k per name.

    Returns ``({name: (options, recipe)}, table)``, the table holding one row per
    candidate (``model``, ``options``, metrics), best first within each model.
    """
    valid = phase(split, "valid")
    rows, best = [], {}
    for name, options, recipe in candidates:
        scorer = recipe(valid.fit, valid.history, valid.catalogue)
        scores = metrics_from_ranks(rank_held_out(scorer, valid.target, valid.history, valid.catalogue), k)
        rows.append({"model": name, "options": options, **scores})
        if name not in best or scores[f"ndcg@{k}"] > best[name][0]:
            best[name] = (scores[f"ndcg@{k}"], options, recipe)
    table = pd.DataFrame(rows).sort_values(["model", f"ndcg@{k}"], ascending=[True, False], kind="stable")
    return {name: (options, recipe) for name, (_, options, recipe) in best.items()}, table.reset_index(drop=True)
