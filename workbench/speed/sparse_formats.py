"""Where each sparse format fits: small timings of the operations CF models lean on.

CSR stores rows contiguously (a user's items), CSC columns (an item's users), COO
unordered triples (cheap to build, converted before use). :func:`compare_formats` times
the same operation in each format -- row and column slicing, the (users x items) x
(items x f) product in scipy and in torch -- and returns a tidy table.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from workbench.speed.timing import best_seconds


def _torch_csr(m: sp.csr_matrix) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.from_numpy(m.indptr.astype(np.int64)),
            torch.from_numpy(m.indices.astype(np.int64)),
            torch.from_numpy(m.data.astype(np.float32)),
            size=m.shape,
            check_invariants=True,
        )


def compare_formats(
    matrix: sp.spmatrix, *, n_slice: int = 256, factors: int = 64, repeats: int = 5, seed: int = 0
) -> pd.DataFrame:
    """Time common operations on ``matrix`` (n_users, n_items) in each format.

    Returns one row per (operation, implementation) with ``seconds`` (best of
    ``repeats``) and ``relative`` (seconds / fastest implementation of that operation).
    """
    rng = np.random.default_rng(seed)
    coo = sp.coo_matrix(matrix, dtype=np.float32)
    csr, csc = coo.tocsr(), coo.tocsc()
    rows = rng.choice(csr.shape[0], size=min(n_slice, csr.shape[0]), replace=False)
    cols = rng.choice(csr.shape[1], size=min(n_slice, csr.shape[1]), replace=False)
    dense = rng.random((csr.shape[1], factors), dtype=np.float32)  # (n_items, f)
    dense_t = torch.from_numpy(dense)
    csr_t, coo_t = (
        _torch_csr(csr),
        torch.sparse_coo_tensor(np.vstack([coo.row, coo.col]), coo.data, coo.shape, check_invariants=True).coalesce(),
    )
    cases = [
        (f"row slice ({len(rows)} users)", "scipy CSR", lambda: csr[rows]),
        (f"row slice ({len(rows)} users)", "scipy CSC", lambda: csc[rows]),
        (f"column slice ({len(cols)} items)", "scipy CSR", lambda: csr[:, cols]),
        (f"column slice ({len(cols)} items)", "scipy CSC", lambda: csc[:, cols]),
        (f"X @ dense (items x {factors})", "scipy CSR", lambda: csr @ dense),
        (f"X @ dense (items x {factors})", "scipy CSC", lambda: csc @ dense),
        (f"X @ dense (items x {factors})", "torch CSR", lambda: torch.sparse.mm(csr_t, dense_t)),
        (f"X @ dense (items x {factors})", "torch COO", lambda: torch.sparse.mm(coo_t, dense_t)),
        ("build from COO triples", "-> CSR", lambda: coo.tocsr()),
        ("build from COO triples", "-> CSC", lambda: coo.tocsc()),
    ]
    table = pd.DataFrame(
        [(op, impl, best_seconds(fn, repeats=repeats)) for op, impl, fn in cases],
        columns=["operation", "implementation", "seconds"],
    )
    table["relative"] = table["seconds"] / table.groupby("operation")["seconds"].transform("min")
    return table
