"""Pointwise behaviour prediction: will user u interact with item i?

The evaluation set is every test interaction (label 1) plus ``negatives`` items per
positive drawn uniformly from the items the user never interacted with (label 0). A
ranking model's scores are turned into probabilities by Platt scaling
(``p = sigmoid(a * score + b)``) fitted on a *validation* pair set, never on test;
ROC-AUC (rank-based, calibration-free) and log-loss are computed once over the whole
set (:func:`workbench.metrics.roc_auc`, :func:`workbench.metrics.log_loss`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from workbench.data.schema import ITEM, USER, require_columns
from workbench.metrics import log_loss, roc_auc
from workbench.models.base import Recommender


def sample_pairs(
    positives: pd.DataFrame, avoid: pd.DataFrame, items, *, negatives: int = 1, seed: int = 0
) -> pd.DataFrame:
    """(``user_id``, ``item_id``, ``label``): each positive row, then ``negatives`` items per
    positive drawn from ``items`` (ids) that the user has no row for in ``avoid``."""
    require_columns(positives, [USER, ITEM], source="sample_pairs positives")
    if negatives < 1:
        raise ValueError(f"negatives must be >= 1, got {negatives}")
    items = np.unique(np.asarray(items, dtype=np.int64))
    rng = np.random.default_rng(seed)
    taken = set(zip(avoid[USER].to_numpy().tolist(), avoid[ITEM].to_numpy().tolist()))
    taken |= set(zip(positives[USER].to_numpy().tolist(), positives[ITEM].to_numpy().tolist()))
    users = np.repeat(positives[USER].to_numpy(), negatives)
    drawn = items[rng.integers(len(items), size=len(users))]
    for _ in range(100):  # redraw collisions; a user who has seen nearly everything may keep a few
        clash = np.fromiter(((u, i) in taken for u, i in zip(users.tolist(), drawn.tolist())), bool, len(users))
        if not clash.any():
            break
        drawn[clash] = items[rng.integers(len(items), size=int(clash.sum()))]
    neg = pd.DataFrame({USER: users, ITEM: drawn, "label": 0})[~clash]
    pos = positives[[USER, ITEM]].assign(label=1)
    return pd.concat([pos, neg], ignore_index=True)


def pair_scores(model: Recommender, pairs: pd.DataFrame, *, block: int = 512) -> np.ndarray:
    """Model scores of the (user, item) pairs -> (n_pairs,) float64."""
    rows = model.users.index(pairs[USER].to_numpy())
    cols = model.items.index(pairs[ITEM].to_numpy())
    out = np.empty(len(pairs), dtype=np.float64)
    users = np.unique(rows)
    where = np.searchsorted(users, rows)
    for start in range(0, len(users), block):
        chunk = users[start : start + block]
        scores = model.score(chunk).float().cpu()  # (B, n_items)
        sel = (where >= start) & (where < start + len(chunk))
        out[sel] = scores[torch.as_tensor(where[sel] - start), torch.as_tensor(cols[sel])].double().numpy()
    return out


@dataclass(frozen=True)
class Platt:
    """``p = sigmoid(a * score + b)``; fit with :meth:`fit` on validation pairs."""

    a: float
    b: float

    @classmethod
    def fit(cls, scores: np.ndarray, labels: np.ndarray, *, steps: int = 200) -> Platt:
        """Logistic regression of ``labels`` on standardised ``scores`` (L-BFGS)."""
        s = torch.as_tensor(np.asarray(scores, dtype=np.float64))
        y = torch.as_tensor(np.asarray(labels, dtype=np.float64))
        mu, sd = s.mean(), s.std().clamp(min=1e-12)
        z = (s - mu) / sd
        params = torch.zeros(2, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([params], max_iter=steps, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(params[0] * z + params[1], y)
            loss.backward()
            return loss

        opt.step(closure)
        a, b = (float(v) for v in params.detach())
        return cls(a / float(sd), b - a * float(mu) / float(sd))

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.a * np.asarray(scores, dtype=np.float64) + self.b)))


def pair_metrics(model: Recommender, pairs: pd.DataFrame, calibration: Platt) -> dict[str, float]:
    """ROC-AUC and log-loss of ``model`` over every pair (users/items it knows)."""
    known = model.users.contains(pairs[USER].to_numpy()) & model.items.contains(pairs[ITEM].to_numpy())
    pairs = pairs[known]
    scores = pair_scores(model, pairs)
    labels = pairs["label"].to_numpy()
    return {
        "roc_auc": roc_auc(labels, scores),
        "log_loss": log_loss(labels, calibration(scores)),
        "pairs": len(pairs),
    }


def compare(
    fitters: dict,
    *,
    fit: pd.DataFrame,
    valid: pd.DataFrame,
    train: pd.DataFrame,
    test: pd.DataFrame,
    items,
    negatives: int = 1,
    seed: int = 0,
) -> pd.DataFrame:
    """ROC-AUC and log-loss per model, calibrated on validation, measured on test.

    ``fitters`` maps a name to a function ``interactions -> fitted model``. Each model
    is fitted on ``fit``, its Platt scaling is learned on ``valid`` pairs, then it is
    refitted on ``train`` and scored on the ``test`` pairs (the same pairs for all).
    Only positives among ``items`` (ids, e.g. the warm catalogue) count.
    """
    items = np.asarray(items)
    valid, test = valid[valid[ITEM].isin(items)], test[test[ITEM].isin(items)]
    cal_pairs = sample_pairs(valid, fit, items, negatives=negatives, seed=seed)
    pairs = sample_pairs(test, train, items, negatives=negatives, seed=seed + 1)
    rows = []
    for name, make in fitters.items():
        model = make(fit)
        known = model.users.contains(cal_pairs[USER].to_numpy()) & model.items.contains(cal_pairs[ITEM].to_numpy())
        calibration = Platt.fit(pair_scores(model, cal_pairs[known]), cal_pairs["label"].to_numpy()[known])
        rows.append({"model": name, **pair_metrics(make(train), pairs, calibration)})
    return pd.DataFrame(rows).set_index("model")
