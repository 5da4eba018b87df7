"""Train/test splits and filters, in the workbench schema.

- :func:`stratified` -- per-user random split, as Microsoft Recommenders'
  ``python_stratified_split`` defines it: every user's rows are shuffled and the first
  ``max(round(ratio * n_u), 1)`` go to train, so each user appears in both parts in proportion.
- :func:`temporal` -- per-user chronological split (earliest ``ratio`` to train).
- :func:`leave_last_out` -- each user's last ``n`` interactions (by time) are test;
  :func:`leave_one_out` applies it twice: train / validation / test for next-item models.
- :func:`cold_split` -- a share of the items held out with *all* their interactions
  (cold-start items: no model sees them in training).
- :func:`validation` -- a validation split carved from *training* data, for tuning.
- :func:`min_interactions`, :func:`binarize` -- filters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench.data.schema import ITEM, RATING, TIMESTAMP, USER, require_columns


def _check_ratio(ratio: float) -> None:
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio must be in (0, 1), got {ratio}")


def _split_by_position(df: pd.DataFrame, order_key: np.ndarray, ratio: float):
    """Per user, rows sorted by ``order_key``; first max(round(ratio*n), 1) -> train."""
    order = np.lexsort((order_key, df[USER].to_numpy()))
    ordered = df.iloc[order]
    position = ordered.groupby(USER, sort=False).cumcount().to_numpy()
    counts = ordered.groupby(USER, sort=False)[USER].transform("size").to_numpy()
    # at least one row in train: round(0.5 * 1) is 0, which would leave a user only in test
    is_train = position < np.maximum(np.round(ratio * counts), 1)
    return ordered[is_train].sort_index(), ordered[~is_train].sort_index()


def stratified(interactions: pd.DataFrame, ratio: float = 0.75, seed: int = 42) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-user random split -> ``(train, test)``; users with one row stay in train."""
    require_columns(interactions, [USER, ITEM], source="stratified split")
    _check_ratio(ratio)
    key = np.random.default_rng(seed).random(len(interactions))
    return _split_by_position(interactions, key, ratio)


def temporal(interactions: pd.DataFrame, ratio: float = 0.75) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-user chronological split -> ``(train, test)``; ties keep input order."""
    require_columns(interactions, [USER, ITEM, TIMESTAMP], source="temporal split")
    _check_ratio(ratio)
    ts = interactions[TIMESTAMP].to_numpy()
    # lexsort is stable, so equal timestamps keep their input order
    tie = np.arange(len(interactions))
    key = np.lexsort((tie, ts)).argsort()
    return _split_by_position(interactions, key, ratio)


def leave_last_out(
    interactions: pd.DataFrame, n: int = 1, *, min_history: int = 2
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each user's last ``n`` interactions by time -> test; the rest -> train.

    Users with fewer than ``max(n + 1, min_history)`` rows keep everything in train
    (nothing would be left to learn from). Ties in time keep input order.
    """
    require_columns(interactions, [USER, ITEM, TIMESTAMP], source="leave-last-out split")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    tie = np.arange(len(interactions))
    order = np.lexsort((tie, interactions[TIMESTAMP].to_numpy(), interactions[USER].to_numpy()))
    ordered = interactions.iloc[order]
    from_end = ordered.groupby(USER, sort=False).cumcount(ascending=False).to_numpy()
    counts = ordered.groupby(USER, sort=False)[USER].transform("size").to_numpy()
    eligible = counts >= max(n + 1, min_history)
    is_test = eligible & (from_end < n)
    return ordered[~is_test].sort_index(), ordered[is_test].sort_index()


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


@dataclass(frozen=True)
class ColdSplit:
    """``train``: interactions of warm items; ``test``: every interaction with a cold item
    by a user who has training history; ``cold_items``: the held-out item ids (sorted)."""

    train: pd.DataFrame
    test: pd.DataFrame
    cold_items: np.ndarray
    dropped_test_rows: int  # cold interactions of users left with no training history


def cold_split(interactions: pd.DataFrame, fraction: float = 0.1, seed: int = 0) -> ColdSplit:
    """Hold out ``round(fraction * n_items)`` of the interacted items with all their rows."""
    require_columns(interactions, [USER, ITEM], source="cold_split")
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    items = np.unique(interactions[ITEM].to_numpy())
    n_cold = max(1, round(fraction * len(items)))
    if n_cold >= len(items):
        raise ValueError(f"fraction={fraction} leaves no warm items among {len(items)}")
    cold = np.sort(np.random.default_rng(seed).choice(items, size=n_cold, replace=False))
    is_cold = interactions[ITEM].isin(cold).to_numpy()
    train, test = interactions[~is_cold], interactions[is_cold]
    known = test[USER].isin(train[USER]).to_numpy()
    return ColdSplit(train, test[known], cold, int((~known).sum()))


def validation(train: pd.DataFrame, ratio: float = 0.8, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Carve ``(fit, valid)`` out of training data with a per-user random split.

    Hyper-parameters are chosen on ``valid``; the test split is never touched.
    """
    return stratified(train, ratio=ratio, seed=seed)


def min_interactions(
    interactions: pd.DataFrame, *, min_user: int = 1, min_item: int = 1, core: bool = False
) -> pd.DataFrame:
    """Drop users/items with too few interactions; ``core=True`` repeats to a fixpoint."""
    df = interactions
    while True:
        users = df.groupby(USER)[ITEM].transform("size")
        items = df.groupby(ITEM)[USER].transform("size")
        keep = (users >= min_user) & (items >= min_item)
        if keep.all():
            return df
        df = df[keep]
        if not core:
            return df


def binarize(interactions: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Keep interactions with ``rating >= threshold`` (implicit feedback)."""
    require_columns(interactions, [RATING], source="binarize")
    return interactions[interactions[RATING] >= threshold]


def summary(splits: dict[str, tuple[pd.DataFrame, pd.DataFrame]]) -> pd.DataFrame:
    """One row per named split: sizes of train and test and their user/item counts."""
    rows = []
    for name, (train, test) in splits.items():
        rows.append(
            {
                "split": name,
                "train rows": len(train),
                "test rows": len(test),
                "test share": len(test) / (len(train) + len(test)),
                "test users": test[USER].nunique(),
                "test items unseen in train": int((~test[ITEM].isin(train[ITEM])).sum()),
            }
        )
    return pd.DataFrame(rows)
