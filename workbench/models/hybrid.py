"""Hybrid: collaborative-filtering scores fused with text scores, itself a recommender.

``score(u) = w * z(cf(u)) + (1 - w) * z(text(u))`` with ``z`` the per-user z-score over
the catalogue (so scales as different as EASE's and a cosine can be added). The
catalogue is the text model's, which can include items the CF model never saw; their CF
score is carried over from their ``neighbours`` nearest warm items by text:
``cf(u, i) = sum_j s_ij cf(u, j) / sum_j s_ij`` over the top text neighbours ``j`` of
``i`` with ``s_ij = max(cos, 0)``. So the hybrid ranks cold items with CF evidence
routed through text, and warm items with both.

``weight=None`` chooses ``w`` on a split carved from the training interactions: a
per-user validation split (``target="warm"``, :func:`workbench.data.splits.validation`) or a
pseudo-cold item hold-out (``target="cold"``, :func:`workbench.data.splits.cold_split`),
scoring a grid of weights by nDCG@k. The text model must already be trained -- for a
clean choice, on the same carve (the same ``seed``); ``fit`` only refits the CF model
and folds the histories into the text model (:meth:`TextRecommender.fold_in`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from workbench.data import splits
from workbench.data.schema import USER, require_columns
from workbench.models.base import Recommender
from workbench.models.config import check_options
from workbench.models.fusion import simplex_grid, standardise
from workbench.models.text.base import TextRecommender
from workbench.models.validation import topk_metrics


@dataclass(frozen=True, kw_only=True)
class HybridConfig:
    """``weight``: share of the CF z-score (None: choose on validation); ``neighbours``:
    text neighbours that carry CF scores to items CF never saw; ``step``: spacing of the
    weight grid (it must divide 1);
    ``target``: warm | cold, what the weight is chosen for; ``cold_fraction``: share
    of items held out when ``target="cold"``; ``k``: cut-off of the validation nDCG;
    ``seed``: of the validation carve."""

    weight: float | None = None
    neighbours: int = 20
    step: float = 0.1
    target: str = "warm"
    cold_fraction: float = 0.1
    k: int = 10
    seed: int = 7

    def __post_init__(self) -> None:
        check_options(self, positive=("neighbours", "step", "k", "cold_fraction"))
        if self.weight is not None and not 0.0 <= self.weight <= 1.0:
            raise ValueError(f"HybridConfig: weight must be in [0, 1], got {self.weight}")
        if self.target not in ("warm", "cold"):
            raise ValueError(f"HybridConfig: target must be 'warm' or 'cold', got {self.target!r}")


class Hybrid(Recommender):
    """CF + text score fusion; see the module docstring. After ``fit``: ``weight_`` and,
    when it was chosen, ``validation_`` (nDCG@k for every weight tried)."""

    config_class = HybridConfig

    def __init__(self, *, cf: Recommender, text: TextRecommender, **options) -> None:
        if not isinstance(text, TextRecommender):
            raise TypeError(f"text must be a text recommender (FrozenText, TwoTower), got {type(text).__name__}")
        super().__init__(**options)
        self.cf, self.text = cf, text

    def __repr__(self) -> str:
        return f"Hybrid(cf={self.cf!r}, text={type(self.text).__name__}, {self._options_repr()})"

    def fit(self, interactions: pd.DataFrame, *, progress: bool = False) -> Hybrid:
        """Choose the weight (unless given), then refit CF and fold histories into text."""
        require_columns(interactions, [USER], source="Hybrid.fit")
        self.text._check_fitted()
        if self.config.weight is None:
            self.weight_, self.validation_ = self._choose_weight(interactions)
        else:
            self.weight_ = float(self.config.weight)
        self._bind(interactions)
        return self

    def _fit(self, matrix: sp.csr_matrix, *, progress: bool = False) -> None:
        raise TypeError("Hybrid fits its components: call fit(interactions)")

    def _bind(self, interactions: pd.DataFrame) -> None:
        """Fit CF and fold into text on ``interactions``; map CF's items into the catalogue."""
        self.cf.fit(interactions)
        self.text.fold_in(interactions)
        self.users, self.items, self.seen = self.text.users, self.text.items, self.text.seen
        known = self.cf.items.contains(self.items.ids_)  # (n_items,) catalogue items CF can score
        self.known_ = np.flatnonzero(known)
        self.cf_cols_ = self.cf.items.index(self.items.ids_[known])
        self.unknown_ = np.flatnonzero(~known)
        self.carry_ = self._carry() if len(self.unknown_) else None

    def _carry(self) -> torch.Tensor:
        """(n_unknown, n_known) sparse rows: normalised text similarity to the top warm items."""
        vectors = self.text.item_vectors_
        sims = vectors[torch.as_tensor(self.unknown_)] @ vectors[torch.as_tensor(self.known_)].T  # (U, K)
        m = min(self.config.neighbours, sims.shape[1])
        val, idx = sims.clamp(min=0).topk(m, dim=1)
        val = val / val.sum(1, keepdim=True).clamp(min=1e-12)
        rows = torch.arange(len(self.unknown_)).repeat_interleave(m)
        return torch.sparse_coo_tensor(
            torch.stack([rows, idx.ravel()]), val.ravel(), sims.shape, check_invariants=True
        ).coalesce()

    def cf_scores(self, user_index: np.ndarray) -> torch.Tensor:
        """(B,) -> (B, n_items) CF scores over the catalogue (carried over where unknown)."""
        user_index = np.asarray(user_index, dtype=np.int64)
        rows = self.cf.users.index(self.users.ids(user_index))
        cf = self.cf.score(rows).float().cpu()[:, torch.as_tensor(self.cf_cols_)]  # (B, n_known)
        out = torch.zeros(len(user_index), len(self.items))
        out[:, torch.as_tensor(self.known_)] = cf
        if self.carry_ is not None:
            out[:, torch.as_tensor(self.unknown_)] = torch.sparse.mm(self.carry_, cf.T).T
        return out

    def score(self, user_index: np.ndarray) -> torch.Tensor:
        """(B,) user indices -> (B, n_items) ``w * z(cf) + (1 - w) * z(text)`` (CPU)."""
        w = self.weight_
        text_scores = standardise(self.text.score(user_index).float().cpu())
        if w == 0.0:
            return text_scores
        return w * standardise(self.cf_scores(user_index)) + (1 - w) * text_scores

    def _choose_weight(self, interactions: pd.DataFrame) -> tuple[float, pd.DataFrame]:
        cfg = self.config
        if cfg.target == "warm":
            fit_part, valid = splits.validation(interactions, seed=cfg.seed)
            candidates = None
        else:
            carve = splits.cold_split(interactions, cfg.cold_fraction, seed=cfg.seed)
            fit_part, valid, candidates = carve.train, carve.test, carve.cold_items
        if len(valid) == 0:
            raise ValueError("Hybrid: the validation carve is empty; pass weight=")
        self._bind(fit_part)
        grid = simplex_grid(2, cfg.step)[:, 0]  # the CF weight: 0, step, ..., 1
        ndcg = []
        for w in grid:
            self.weight_ = float(w)
            ndcg.append(topk_metrics(self, valid, k=cfg.k, candidates=candidates)["ndcg"])
        table = pd.DataFrame({"cf_weight": grid, f"valid_ndcg@{cfg.k}": ndcg})
        return float(grid[int(np.argmax(ndcg))]), table
