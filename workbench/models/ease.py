"""EASE: a closed-form linear item-item model (Steck, "Embarrassingly Shallow
Autoencoders for Sparse Data", WWW 2019).

With the Gram matrix ``G = X^T X + reg * I`` and ``P = G^-1``, the item-item weights are
``B = I - P diag(1 / diag(P))``: the ridge regression of every item column on all the
others with the diagonal forced to zero. Fitting is one (n_items, n_items) inversion --
cubic in the catalogue size, quadratic in memory -- and scoring is ``X[u] @ B``.

Memory: two dense (n_items, n_items) float32 matrices are alive at the peak (the Gram
matrix and its Cholesky factor, then the factor and the inverse): ``8 * n_items**2``
bytes, 3.2 GB at 20,000 items, 5.7 GB at ML-20M's 26,744, 150 GB at 138,000. The Gram
matrix is filled in column blocks straight into float32, so no float64 or sparse
(n_items, n_items) copy adds to that. A catalogue whose peak does not fit in the memory
available on the device is refused before anything is allocated
(:class:`EASEMemoryError`, naming the memory it would need).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import psutil
import scipy.sparse as sp
import torch

from workbench.devices import resolve_device
from workbench.models.base import Recommender
from workbench.models.config import check_options

#: columns of the Gram matrix computed per sparse product
GRAM_BLOCK = 2048
GB = 1e9


class EASEMemoryError(MemoryError):
    """The catalogue is too large for EASE's dense (n_items, n_items) matrices here."""


def fit_memory_bytes(n_items: int) -> int:
    """Peak bytes of :meth:`EASE.fit` beyond its input: two (n_items, n_items) float32
    matrices (see the module docstring)."""
    return 2 * 4 * n_items * n_items


def available_bytes(device: torch.device) -> int:
    """Memory that an allocation on ``device`` can use now: free CUDA memory, or the
    host's available memory (``psutil``) for every other device."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return psutil.virtual_memory().available


def check_fits(n_items: int, device: torch.device) -> None:
    """Raise :class:`EASEMemoryError` when EASE on ``n_items`` items cannot fit on ``device``."""
    need, have = fit_memory_bytes(n_items), available_bytes(device)
    if need > have:
        raise EASEMemoryError(
            f"EASE on {n_items:,} items needs about {need / GB:.1f} GB on {device} (two {n_items:,} x {n_items:,} "
            f"float32 matrices) but {have / GB:.1f} GB is available; refused before allocating. Filter the "
            "catalogue (e.g. items with at least a few interactions) or use a model that scales with the "
            "number of interactions (IALS, ItemKNN)"
        )


def gram_matrix(matrix: sp.csr_matrix, device: torch.device) -> torch.Tensor:
    """(n_users, n_items) sparse -> (n_items, n_items) dense float32 ``X^T X`` on ``device``,
    built in column blocks so that only one block's sparse product is alive at a time."""
    x = matrix.astype(np.float32).tocsc()
    xt = x.T.tocsr()  # (n_items, n_users)
    n = x.shape[1]
    gram = torch.empty((n, n), dtype=torch.float32, device=device)
    for start in range(0, n, GRAM_BLOCK):
        stop = min(start + GRAM_BLOCK, n)
        block = (xt @ x[:, start:stop]).toarray()  # (n_items, block), float32
        gram[:, start:stop] = torch.from_numpy(block).to(device)
    return gram


@dataclass(frozen=True, kw_only=True)
class EASEConfig:
    """``reg``: L2 penalty added to the Gram diagonal (in interaction counts);
    ``device``: where the inversion and scoring run ("auto", "cpu", "cuda")."""

    reg: float = 600.0  # chosen on a validation split of ml-100k training data
    device: str = "auto"

    def __post_init__(self) -> None:
        check_options(self, positive=("reg",))


class EASE(Recommender):
    """Closed-form item-item model; see the module docstring."""

    config_class = EASEConfig

    def _fit(self, matrix: sp.csr_matrix, *, progress: bool = False) -> None:
        device = resolve_device(self.config.device)
        check_fits(matrix.shape[1], device)
        gram = gram_matrix(matrix, device)  # (n, n)
        gram.diagonal().add_(self.config.reg)
        chol = torch.linalg.cholesky(gram)  # (n, n) lower triangle
        del gram  # at most two (n, n) matrices are alive at once
        weights = torch.cholesky_inverse(chol)  # P = G^-1, (n, n) symmetric
        del chol
        weights.div_(-weights.diagonal().clone())  # B[i, j] = -P[i, j] / P[j, j]
        weights.diagonal().zero_()
        self.weights_ = weights  # (n_items, n_items)
        self.device_ = device

    def score(self, user_index: np.ndarray) -> torch.Tensor:
        """(B,) user indices -> (B, n_items) scores ``X[u] @ B``."""
        rows = torch.as_tensor(self.seen[user_index].toarray(), device=self.device_)  # (B, n_items)
        return rows @ self.weights_

    def item_similarity(self, item_index: np.ndarray) -> torch.Tensor:
        """(B,) item indices -> (B, n_items): how much each item raises every other's score."""
        return self.weights_[torch.as_tensor(item_index, device=self.device_)]
