"""iALS: implicit-feedback matrix factorisation by alternating least squares
(Hu, Koren & Volinsky, "Collaborative Filtering for Implicit Feedback Datasets", 2008),
with the conjugate-gradient inner solver of Takacs, Pilaszy & Tikk (2011).

Every (user, item) pair is a target: preference 1 with confidence ``1 + alpha`` where
an interaction was observed, preference 0 with confidence 1 elsewhere. With the item
factors ``Y`` fixed, user ``u``'s factors solve

    (Y^T Y + reg * I + sum_{i in I_u} alpha * y_i y_i^T) x_u = (1 + alpha) * sum_{i in I_u} y_i

and symmetrically for items. Instead of forming and factorising one (f, f) system per
user, ``cg_steps`` conjugate-gradient steps are taken from the previous ``x_u`` for all
users of a block at once: each step costs one (n, f) x (f, f) product for the dense
part plus two passes over the nonzeros (a gather and a scatter-add) for the observed
part. It is plain torch, so the same code runs on CPU and CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from workbench.devices import resolve_device
from workbench.models.base import Recommender, check_options

#: nonzeros per solver block: bounds the (nnz, factors) temporaries to ~64 MiB at f=64
SOLVE_BLOCK_NNZ = 256 * 1024


@dataclass(frozen=True, kw_only=True)
class IALSConfig:
    """Options of :class:`IALS` (defaults chosen on a validation split of ml-100k
    training data; see notebook 02)."""

    factors: int = 64  # latent dimension f
    reg: float = 50.0  # L2 penalty on every factor vector
    alpha: float = 5.0  # extra confidence of an observed interaction (confidence = 1 + alpha)
    epochs: int = 15  # ALS sweeps (users then items)
    cg_steps: int = 3  # conjugate-gradient steps per sweep and side
    init_scale: float = 0.01  # factors start uniform in [0, init_scale)
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        check_options(self, positive=("factors", "epochs", "cg_steps", "init_scale"), non_negative=("reg", "alpha"))


class _Side:
    """One side's nonzeros as device tensors: row, column and (n_rows + 1) indptr."""

    def __init__(self, matrix: sp.csr_matrix, device: torch.device):
        self.n_rows = matrix.shape[0]
        self.indptr = matrix.indptr.astype(np.int64)
        rows = np.repeat(np.arange(self.n_rows, dtype=np.int64), np.diff(self.indptr))
        self.rows = torch.as_tensor(rows, device=device)  # (nnz,)
        self.cols = torch.as_tensor(matrix.indices.astype(np.int64), device=device)  # (nnz,)

    def blocks(self, max_nnz: int):
        """Yield (row_start, row_stop, nnz_start, nnz_stop) with at most ~max_nnz nonzeros."""
        start = 0
        while start < self.n_rows:
            stop = int(np.searchsorted(self.indptr, self.indptr[start] + max_nnz, side="right")) - 1
            stop = min(max(stop, start + 1), self.n_rows)
            yield start, stop, int(self.indptr[start]), int(self.indptr[stop])
            start = stop


def cg_sweep(side: _Side, x: torch.Tensor, y: torch.Tensor, reg: float, alpha: float, steps: int) -> None:
    """Update ``x`` (n_rows, f) in place by ``steps`` CG steps on every row's normal
    equations, ``y`` (n_cols, f) fixed."""
    f = x.shape[1]
    gram = y.T @ y + reg * torch.eye(f, device=y.device, dtype=y.dtype)  # (f, f)
    for r0, r1, n0, n1 in side.blocks(SOLVE_BLOCK_NNZ):
        rows = side.rows[n0:n1] - r0  # (nnz_b,) local row of each nonzero
        y_nz = y[side.cols[n0:n1]]  # (nnz_b, f)
        xb = x[r0:r1]  # (B, f) view: updated in place

        def observed(v: torch.Tensor) -> torch.Tensor:
            """sum over each row's nonzeros of alpha * (y_i . v) * y_i  -> (B, f)."""
            weight = alpha * (v[rows] * y_nz).sum(1, keepdim=True)  # (nnz_b, 1)
            return torch.zeros_like(v).index_add_(0, rows, weight * y_nz)

        target = torch.zeros_like(xb).index_add_(0, rows, y_nz).mul_(1.0 + alpha)  # (B, f)
        resid = target - xb @ gram - observed(xb)  # (B, f)
        direction = resid.clone()
        rs_old = (resid * resid).sum(1, keepdim=True)  # (B, 1)
        for _ in range(steps):
            a_dir = direction @ gram + observed(direction)  # (B, f)
            curvature = (direction * a_dir).sum(1, keepdim=True)
            step = torch.where(rs_old > 1e-20, rs_old / curvature.clamp_min(1e-20), torch.zeros_like(rs_old))
            xb.add_(step * direction)
            resid.sub_(step * a_dir)
            rs_new = (resid * resid).sum(1, keepdim=True)
            ratio = torch.where(rs_old > 1e-20, rs_new / rs_old.clamp_min(1e-20), torch.zeros_like(rs_old))
            direction = resid + ratio * direction
            rs_old = rs_new


class IALS(Recommender):
    """Implicit ALS with conjugate gradient; see the module docstring."""

    def __init__(
        self,
        *,
        factors: int = IALSConfig.factors,
        reg: float = IALSConfig.reg,
        alpha: float = IALSConfig.alpha,
        epochs: int = IALSConfig.epochs,
        cg_steps: int = IALSConfig.cg_steps,
        init_scale: float = IALSConfig.init_scale,
        seed: int = IALSConfig.seed,
        device: str = IALSConfig.device,
    ) -> None:
        self.config = IALSConfig(
            factors=factors, reg=reg, alpha=alpha, epochs=epochs, cg_steps=cg_steps,
            init_scale=init_scale, seed=seed, device=device,
        )

    def _fit(self, matrix: sp.csr_matrix) -> None:
        cfg = self.config
        device = resolve_device(cfg.device)
        gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
        n_users, n_items = matrix.shape
        x = (torch.rand(n_users, cfg.factors, generator=gen) * cfg.init_scale).to(device)  # (n_users, f)
        y = (torch.rand(n_items, cfg.factors, generator=gen) * cfg.init_scale).to(device)  # (n_items, f)
        by_user, by_item = _Side(matrix, device), _Side(matrix.T.tocsr(), device)
        for _ in range(cfg.epochs):
            cg_sweep(by_user, x, y, cfg.reg, cfg.alpha, cfg.cg_steps)
            cg_sweep(by_item, y, x, cfg.reg, cfg.alpha, cfg.cg_steps)
        self.user_factors_, self.item_factors_ = x, y
        self.device_ = device

    def score(self, user_index: np.ndarray) -> torch.Tensor:
        """(B,) user indices -> (B, n_items) predicted preferences ``x_u . y_i``."""
        return self.user_factors_[torch.as_tensor(user_index, device=self.device_)] @ self.item_factors_.T

    def item_similarity(self, item_index: np.ndarray) -> torch.Tensor:
        """(B,) item indices -> (B, n_items) cosine similarity of item factors."""
        unit = torch.nn.functional.normalize(self.item_factors_, dim=1)  # (n_items, f)
        return unit[torch.as_tensor(item_index, device=self.device_)] @ unit.T
