"""iALS: implicit-feedback matrix factorisation by alternating least squares
(Hu, Koren & Volinsky, "Collaborative Filtering for Implicit Feedback Datasets", 2008),
with the conjugate-gradient inner solver of Takacs, Pilaszy & Tikk (2011).

Every (user, item) pair is a target: preference 1 with confidence ``1 + alpha`` where
an interaction was observed, preference 0 with confidence 1 elsewhere. With the item
factors ``Y`` fixed, user ``u``'s factors solve

    (Y^T Y + reg * I + sum_{i in I_u} alpha * y_i y_i^T) x_u = (1 + alpha) * sum_{i in I_u} y_i

and symmetrically for items. Instead of forming and factorising one (f, f) system per
user, ``cg_steps`` conjugate-gradient steps are taken from the previous ``x_u`` for all
users at once. Each step needs ``A v`` for every row: the dense part is one
(n, f) x (f, f) product, and the observed part ``alpha * sum_i (y_i . v_u) y_i`` is two
fused sparse kernels over the nonzeros -- a sampled dense-dense product (SDDMM,
``torch.sparse.sampled_addmm``) giving ``y_i . v_u`` at every nonzero, then a
sparse-dense product (SpMM) summing ``y_i`` rows with those weights. Neither
materialises an (nnz, f) temporary. A sweep of ``steps`` CG steps so reads the
nonzeros ``2 * (steps + 1) + 1`` times (the right-hand side is one more SpMM).

Which path runs where (``kernel`` option; the one used is ``model.kernel_``):

- ``"numba"`` -- CPU, the default there when numba is installed: the fused per-row
  solver of :mod:`workbench.models.ials_kernel`, which, like ``implicit``'s Cython loop,
  fuses each dot product with its axpy and reads the nonzeros ``steps + 1`` times. At
  ML-20M size, where memory traffic decides, it is what makes us faster per iteration
  than ``implicit`` (``benchmarks/bench_scaling.py``). The first call in a fresh
  install compiles it (about 10 s, then cached on disk).
- ``"torch"`` -- CUDA always, and CPU when numba is missing (or asked for): the
  all-rows SDDMM + SpMM sweep above, plain torch.

Both take the same steps from the same start (same Gram ``Y^T Y + reg I``, confidence,
CG steps, warm start) and give the same factors to float32 rounding.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

import workbench.models.ials_kernel as ials_kernel
from workbench.devices import resolve_device
from workbench.models.base import Recommender
from workbench.models.config import check_options

KERNELS = ("auto", "numba", "torch")  # the CG solvers; see the module docstring


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
    kernel: str = "auto"  # CG solver: "numba" (CPU, fused per row), "torch" (any device) or "auto" (see module doc)

    def __post_init__(self) -> None:
        check_options(self, positive=("factors", "epochs", "cg_steps", "init_scale"), non_negative=("reg", "alpha"))
        if self.kernel not in KERNELS:
            raise ValueError(f"IALSConfig: kernel must be one of {KERNELS}, got {self.kernel!r}")


def choose_kernel(kernel: str, device: torch.device) -> str:
    """The CG solver that runs: ``kernel`` as asked, or for ``"auto"`` numba on CPU where it
    is installed and torch elsewhere. Raises ``ValueError`` where numba cannot run."""
    if kernel == "auto":
        return "numba" if device.type == "cpu" and ials_kernel.AVAILABLE else "torch"
    if kernel == "numba" and (device.type != "cpu" or not ials_kernel.AVAILABLE):
        why = "numba is not installed" if not ials_kernel.AVAILABLE else f"the device is {device}"
        raise ValueError(f"IALS kernel='numba' runs on CPU with numba installed, but {why}; use kernel='torch'")
    return kernel


def regularised_gram(y: torch.Tensor, reg: float) -> torch.Tensor:
    """(n, f) factors -> (f, f) ``Y^T Y + reg I``, the dense part of every row's system."""
    return y.T @ y + reg * torch.eye(y.shape[1], device=y.device, dtype=y.dtype)


def sparse_pattern(matrix: sp.csr_matrix, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(n_rows, n_cols) scipy CSR -> torch sparse CSR tensor of ones on ``device``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.as_tensor(matrix.indptr.astype(np.int64)),
            torch.as_tensor(matrix.indices.astype(np.int64)),
            torch.ones(matrix.nnz, dtype=dtype),
            size=matrix.shape,
            check_invariants=True,
        ).to(device)


def cg_sweep(pattern: torch.Tensor, x: torch.Tensor, y: torch.Tensor, reg: float, alpha: float, steps: int) -> None:
    """Update ``x`` (n_rows, f) in place by ``steps`` CG steps on every row's normal
    equations; ``pattern`` (n_rows, n_cols) sparse CSR of ones, ``y`` (n_cols, f) fixed."""
    gram = regularised_gram(y, reg)  # (f, f)

    def apply(v: torch.Tensor) -> torch.Tensor:
        """A v for every row: (Y^T Y + reg I) v_u + alpha * sum_{i in I_u} (y_i . v_u) y_i."""
        dots = torch.sparse.sampled_addmm(pattern, v, y.T, beta=0.0, alpha=alpha)  # sparse: alpha * y_i . v_u
        return torch.addmm(torch.sparse.mm(dots, y), v, gram)  # (n_rows, f)

    target = (1.0 + alpha) * torch.sparse.mm(pattern, y)  # (n_rows, f): (1 + alpha) * sum_{i in I_u} y_i
    resid = target - apply(x)  # (n_rows, f)
    direction = resid.clone()
    rs_old = torch.linalg.vecdot(resid, resid).unsqueeze(1)  # (n_rows, 1)
    for _ in range(steps):
        a_dir = apply(direction)  # (n_rows, f)
        curvature = torch.linalg.vecdot(direction, a_dir).unsqueeze(1)  # > 0 unless the row is solved
        step = torch.where(curvature > 0, rs_old / curvature, 0.0)
        x.addcmul_(step, direction)
        resid.addcmul_(step, a_dir, value=-1.0)
        rs_new = torch.linalg.vecdot(resid, resid).unsqueeze(1)
        direction = torch.addcmul(resid, torch.where(rs_old > 0, rs_new / rs_old, 0.0), direction)
        rs_old = rs_new


class IALS(Recommender):
    """Implicit ALS with conjugate gradient; see the module docstring."""

    config_class = IALSConfig

    def _fit(self, matrix: sp.csr_matrix, *, progress: bool = False) -> None:
        cfg = self.config
        device = resolve_device(cfg.device)
        kernel = choose_kernel(cfg.kernel, device)
        gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
        n_users, n_items = matrix.shape
        x = (torch.rand(n_users, cfg.factors, generator=gen) * cfg.init_scale).to(device)  # (n_users, f)
        y = (torch.rand(n_items, cfg.factors, generator=gen) * cfg.init_scale).to(device)  # (n_items, f)
        sweep = self._numba_sweep(matrix) if kernel == "numba" else self._torch_sweep(matrix, device)
        for _ in tqdm(range(cfg.epochs), desc="IALS", disable=not progress, leave=False):
            sweep(0, x, y)
            sweep(1, y, x)
        self.user_factors_, self.item_factors_ = x, y
        self.device_, self.kernel_ = device, kernel

    def _torch_sweep(self, matrix: sp.csr_matrix, device: torch.device):
        """sweep(side, x, y): CG on the users' (side 0) or items' (side 1) rows, torch path."""
        cfg, patterns = self.config, (sparse_pattern(matrix, device), sparse_pattern(matrix.T.tocsr(), device))
        return lambda side, x, y: cg_sweep(patterns[side], x, y, cfg.reg, cfg.alpha, cfg.cg_steps)

    def _numba_sweep(self, matrix: sp.csr_matrix):
        """sweep(side, x, y): the same CG steps by the fused per-row kernel (CPU)."""
        cfg, by_item = self.config, matrix.T.tocsr()
        patterns = [(m.indptr.astype(np.int64), m.indices.astype(np.int32)) for m in (matrix, by_item)]

        def sweep(side: int, x: torch.Tensor, y: torch.Tensor) -> None:
            ials_kernel.cg_sweep(*patterns[side], x, y, regularised_gram(y, cfg.reg), cfg.alpha, cfg.cg_steps)

        return sweep

    def score(self, user_index: np.ndarray) -> torch.Tensor:
        """(B,) user indices -> (B, n_items) predicted preferences ``x_u . y_i``."""
        return self.user_factors_[torch.as_tensor(user_index, device=self.device_)] @ self.item_factors_.T

    def item_similarity(self, item_index: np.ndarray) -> torch.Tensor:
        """(B,) item indices -> (B, n_items) cosine similarity of item factors."""
        unit = torch.nn.functional.normalize(self.item_factors_, dim=1)  # (n_items, f)
        return unit[torch.as_tensor(item_index, device=self.device_)] @ unit.T
