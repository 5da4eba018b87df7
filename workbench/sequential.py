"""Item sequences and their evaluation, for next-item (sequential) recommenders.

- :func:`histories` -- each user's items in time order (ties keep input order, exactly as
  :func:`workbench.splits.leave_last_out` orders them).
- :func:`leave_one_out` -- last item per user is test, the one before it validation.
- :func:`full_ranks` / :func:`sampled_ranks` -- the 1-based rank of each held-out item
  among **all** items the user has not seen, or among ``n`` sampled negatives.
- :func:`evaluate` -- both ranks for every test user of any model, through a *scorer*
  (``user_ids -> (B, n_catalogue)`` scores); :func:`summarize` and
  :func:`by_history_length` turn them into HR@k, nDCG@k and MRR.

Conventions. A tie in score counts half a place (the expected rank under a random
tie-break), so a constant scorer ranks the held-out item mid-way, and sparse scorers
(item-KNN) are not punished for their zeros. A held-out item unknown to a model (or to
the catalogue) counts as a miss (rank ``inf``). MRR is the mean of ``1 / rank`` over the
whole ranking (no cut-off), unlike ``metrics.mrr_at_k``. Without ties, HR@k and nDCG@k
with one held-out item per user equal :func:`workbench.metrics.ranking_metrics`'
``hit_rate`` and ``ndcg`` on the top-k lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd
import torch

from workbench.matrix import IndexMap
from workbench.schema import ITEM, TIMESTAMP, USER, require_columns
from workbench.splits import leave_last_out

if TYPE_CHECKING:  # the models import this module, so only for type hints
    from workbench.models.base import Recommender

#: a model seen through the evaluation: (B,) user ids -> (B, len(catalogue)) scores
Scorer = Callable[[np.ndarray], torch.Tensor]


def histories(interactions: pd.DataFrame) -> pd.Series:
    """``user_id`` -> (n_u,) int64 array of item ids, oldest first; ties keep input order."""
    require_columns(interactions, [USER, ITEM, TIMESTAMP], source="histories")
    tie = np.arange(len(interactions))
    order = np.lexsort((tie, interactions[TIMESTAMP].to_numpy(), interactions[USER].to_numpy()))
    users = interactions[USER].to_numpy()[order]
    items = interactions[ITEM].to_numpy(dtype=np.int64)[order]
    if not len(users):
        return pd.Series([], index=pd.Index([], dtype=np.int64, name=USER), name=ITEM, dtype=object)
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])  # first row of each user
    return pd.Series(np.split(items, starts[1:]), index=pd.Index(users[starts], name=USER), name=ITEM, dtype=object)


@dataclass(frozen=True)
class LeaveOneOut:
    """``train`` (all but each user's last two), ``valid`` (second-to-last) and ``test``
    (last) interactions. ``history`` = train + valid: what a model may see at test time."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame

    @property
    def history(self) -> pd.DataFrame:
        return pd.concat([self.train, self.valid]).sort_index()


def leave_one_out(interactions: pd.DataFrame) -> LeaveOneOut:
    """Leave-last-one-out twice; users with fewer than 3 interactions stay in train."""
    rest, test = leave_last_out(interactions, 1, min_history=3)
    train, valid = leave_last_out(rest, 1, min_history=2)
    return LeaveOneOut(train, valid, test)


def windows(sequence: np.ndarray, length: int, *, overlap: int = 0) -> list[np.ndarray]:
    """Cut one sequence into windows of at most ``length`` items, newest first.

    The first window is the last ``length`` items; each earlier one ends ``overlap``
    items after the previous one starts (``overlap=1`` makes every next-item
    transition appear exactly once for a model trained on (input, shifted) pairs).
    Windows shorter than two items are dropped.
    """
    if not 0 <= overlap < length:
        raise ValueError(f"overlap must be in [0, length), got {overlap} for length {length}")
    out, end = [], len(sequence)
    while end >= 2:
        out.append(sequence[max(0, end - length) : end])
        if end <= length:
            break
        end = end - length + overlap
    return out


def pad(sequences: list[np.ndarray], *, side: str = "right", value: int = 0) -> np.ndarray:
    """(B,) int arrays -> (B, T) int64 array padded with ``value`` to the longest, T >= 1."""
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    out = np.full((len(sequences), max([len(s) for s in sequences] + [1])), value, dtype=np.int64)
    for row, s in zip(out, sequences):
        if side == "left":
            row[len(row) - len(s) :] = s
        else:
            row[: len(s)] = s
    return out


def full_ranks(scores: torch.Tensor, targets: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Rank (1 = best) of ``targets`` among all non-excluded items.

    ``scores`` (B, N); ``targets`` (B,) column indices, -1 for an unknown item (rank
    inf); ``exclude`` (2, E) (row, column) pairs of seen items, never the target itself.
    Returns (B,) float ranks; each tie counts half (the expected rank under a random
    tie-break).
    """
    known = targets >= 0
    t = targets.clamp(min=0)
    own = scores.gather(1, t[:, None])  # (B, 1)
    above, tied = scores > own, scores == own  # (B, N); ``tied`` includes the target
    if exclude is not None and exclude.numel():
        rows, cols = exclude[0], exclude[1]
        keep = cols != t[rows]
        above[rows[keep], cols[keep]] = False
        tied[rows[keep], cols[keep]] = False
    ranks = 1.0 + above.sum(1).float() + (tied.sum(1).float() - 1.0) / 2.0  # (B,)
    ranks[~known | torch.isinf(own[:, 0]) & (own[:, 0] < 0)] = float("inf")
    return ranks


def sampled_ranks(scores: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """Rank of ``targets`` among ``negatives`` (B, n) sampled columns: 1..n+1, inf if unknown;
    ties count half (the expected rank under a random tie-break)."""
    known = targets >= 0
    own = scores.gather(1, targets.clamp(min=0)[:, None])  # (B, 1)
    negative = scores.gather(1, negatives)  # (B, n)
    ranks = 1.0 + (negative > own).sum(1).float() + (negative == own).sum(1).float() / 2.0  # (B,)
    ranks[~known | torch.isinf(own[:, 0]) & (own[:, 0] < 0)] = float("inf")
    return ranks


def rank_metrics(ranks: np.ndarray | torch.Tensor, k: int = 10) -> dict[str, float]:
    """HR@k, nDCG@k and MRR from (n,) ranks of one held-out item per user."""
    r = ranks.cpu().numpy() if isinstance(ranks, torch.Tensor) else np.asarray(ranks)
    r = r.astype(np.float64)
    hit = r <= k
    return {
        f"hr@{k}": float(hit.mean()),
        f"ndcg@{k}": float(np.where(hit, 1.0 / np.log2(np.minimum(r, k) + 1.0), 0.0).mean()),
        "mrr": float((1.0 / r).mean()),
    }


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
    rows = np.repeat(np.arange(len(history)), [len(h) for h in history])
    items = np.concatenate(history) if history else np.empty(0, np.int64)
    known = catalogue.contains(items)
    return torch.as_tensor(np.stack([rows[known], catalogue.index(items[known])]))


def evaluate(
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
    require_columns(test, [USER, ITEM], source="evaluate")
    if test[USER].duplicated().any():
        raise ValueError("evaluate: test must hold one held-out item per user")
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
    return pd.DataFrame({USER: users, ITEM: targets_all, "history_length": lengths, "rank": full, "sampled_rank": sampled})


def summarize(per_user: pd.DataFrame, k: int = 10) -> dict[str, float]:
    """HR@k, nDCG@k, MRR from :func:`evaluate`'s ranks; ``sampled_`` keys for sampled ones."""
    out = rank_metrics(per_user["rank"].to_numpy(), k)
    if per_user["sampled_rank"].notna().all():
        out.update({f"sampled_{m}": v for m, v in rank_metrics(per_user["sampled_rank"].to_numpy(), k).items()})
    return out


def results_table(per_user: dict[str, pd.DataFrame], k: int = 10) -> pd.DataFrame:
    """One row per model: full-ranking metrics beside the sampled ones."""
    table = pd.DataFrame({name: summarize(frame, k) for name, frame in per_user.items()}).T
    table.index.name = "model"
    return table


def by_history_length(
    per_user: dict[str, pd.DataFrame], *, bins: tuple[float, ...] = (0, 20, 50, 100, 200, np.inf), k: int = 10
) -> pd.DataFrame:
    """nDCG@k per model for users grouped by history length (rows: length bins, plus ``users``)."""
    table = {}
    for name, frame in per_user.items():
        r = frame["rank"].to_numpy()
        gain = np.where(r <= k, 1.0 / np.log2(np.minimum(r, k) + 1.0), 0.0)
        group = pd.cut(frame["history_length"], bins, right=False)
        table[name] = pd.Series(gain).groupby(group.to_numpy(), observed=False).mean()
        table["users"] = frame.groupby(group, observed=False).size()
    out = pd.DataFrame(table)
    out.index = [f"{int(iv.left)}-{iv.right - 1:.0f}" if np.isfinite(iv.right) else f"{int(iv.left)}+" for iv in out.index]
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
        rows = []
        for u in user_ids:
            items = np.asarray(history.get(u, []), dtype=np.int64)
            items = items[model.items.contains(items)][-n_last:]
            if len(items):
                rows.append(model.item_similarity(model.items.index(items)).float().cpu().sum(0))
            else:
                rows.append(torch.zeros(len(model.items)))
        return _onto(torch.stack(rows), model.items, catalogue)

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


def baseline_candidates(
    *, ease_reg: tuple[float, ...] = (50, 100, 250, 500, 1000), knn_k: tuple[int, ...] = (20, 50, 100, 200),
    last_items: tuple[int, ...] = (1, 2, 3, 5),
) -> list[tuple[str, dict, Recipe]]:
    """``(name, options, recipe)`` for every baseline setting to try on validation:
    Popularity, EASE per ``reg``, ItemKNN per ``k``, and last-item(s) KNN per (``k``,
    ``n_last``)."""
    from workbench.models import EASE, ItemKNN, Popularity  # the models package imports this module

    out: list[tuple[str, dict, Recipe]] = [("Popularity", {}, lambda df, h, c: user_scorer(Popularity().fit(df), c))]
    out += [("EASE", {"reg": r}, lambda df, h, c, r=r: user_scorer(EASE(reg=r).fit(df), c)) for r in ease_reg]
    out += [("ItemKNN", {"k": k}, lambda df, h, c, k=k: user_scorer(ItemKNN(k=k).fit(df), c)) for k in knn_k]
    out += [
        ("last-item KNN", {"k": k, "n_last": n}, lambda df, h, c, k=k, n=n: last_items_scorer(ItemKNN(k=k).fit(df), h, c, n_last=n))
        for k in knn_k
        for n in last_items
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
        scores = summarize(evaluate(recipe(valid.fit, valid.history, valid.catalogue), valid.target, valid.history, valid.catalogue), k)
        rows.append({"model": name, "options": options, **scores})
        if name not in best or scores[f"ndcg@{k}"] > best[name][0]:
            best[name] = (scores[f"ndcg@{k}"], options, recipe)
    table = pd.DataFrame(rows).sort_values(["model", f"ndcg@{k}"], ascending=[True, False], kind="stable")
    return {name: (options, recipe) for name, (_, options, recipe) in best.items()}, table.reset_index(drop=True)
