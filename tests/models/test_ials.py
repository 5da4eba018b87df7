"""iALS: the conjugate-gradient sweep solves the Hu et al. normal equations, matches
the ``implicit`` library step for step, and runs the same on CUDA."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from workbench.models.ials import IALS, cg_sweep, sparse_pattern


def random_binary(n_rows: int, n_cols: int, density: float, seed: int) -> sp.csr_matrix:
    m = sp.random(n_rows, n_cols, density=density, format="csr", random_state=seed, dtype=np.float32)
    m.data[:] = 1.0
    return m


def exact_solution(matrix: sp.csr_matrix, y: torch.Tensor, reg: float, alpha: float) -> torch.Tensor:
    """Row by row: (Y^T Y + reg I + alpha Y_u^T Y_u) x = (1 + alpha) Y_u^T 1."""
    f = y.shape[1]
    out = []
    for u in range(matrix.shape[0]):
        yu = y[matrix.indices[matrix.indptr[u] : matrix.indptr[u + 1]]]
        a = y.T @ y + reg * torch.eye(f, dtype=y.dtype) + alpha * yu.T @ yu
        out.append(torch.linalg.solve(a, (1 + alpha) * yu.sum(0)))
    return torch.stack(out)


def test_enough_cg_steps_reach_the_exact_least_squares_solution():
    matrix = random_binary(30, 20, 0.2, seed=1)
    side = sparse_pattern(matrix, torch.device("cpu"), torch.float64)
    gen = torch.Generator().manual_seed(0)
    y = torch.rand(20, 6, generator=gen, dtype=torch.float64)
    x = torch.rand(30, 6, generator=gen, dtype=torch.float64)
    cg_sweep(side, x, y, reg=0.5, alpha=4.0, steps=12)  # f=6: CG is exact after 6 steps
    torch.testing.assert_close(x, exact_solution(matrix, y, 0.5, 4.0), rtol=1e-8, atol=1e-10)


def test_rows_without_interactions_shrink_to_zero():
    matrix = random_binary(5, 10, 0.5, seed=3)
    matrix = sp.vstack([matrix, sp.csr_matrix((1, 10), dtype=np.float32)], format="csr")  # row 5 is empty
    x = torch.ones(6, 3, dtype=torch.float64)
    pattern = sparse_pattern(matrix, torch.device("cpu"), torch.float64)
    cg_sweep(pattern, x, torch.rand(10, 3, dtype=torch.float64), 1.0, 1.0, 3)
    torch.testing.assert_close(x[5], torch.zeros(3, dtype=torch.float64), atol=1e-12, rtol=0)


@pytest.mark.filterwarnings("ignore:OpenBLAS is configured")
def test_matches_implicit_als_iteration_for_iteration():
    implicit_als = pytest.importorskip("implicit.cpu.als")
    matrix = random_binary(60, 40, 0.1, seed=4)
    rng = np.random.default_rng(0)
    x0 = (rng.random((60, 8)) * 0.01).astype(np.float32)
    y0 = (rng.random((40, 8)) * 0.01).astype(np.float32)
    theirs = implicit_als.AlternatingLeastSquares(
        factors=8, regularization=2.0, alpha=1.0 + 5.0, iterations=2, use_cg=True, num_threads=1
    )  # their confidence is alpha * r, ours 1 + alpha * r
    theirs.user_factors, theirs.item_factors = x0.copy(), y0.copy()
    theirs.fit(matrix, show_progress=False)
    x, y = torch.from_numpy(x0.copy()), torch.from_numpy(y0.copy())
    by_user, by_item = (
        sparse_pattern(matrix, torch.device("cpu")),
        sparse_pattern(matrix.T.tocsr(), torch.device("cpu")),
    )
    for _ in range(2):
        cg_sweep(by_user, x, y, 2.0, 5.0, 3)
        cg_sweep(by_item, y, x, 2.0, 5.0, 3)
    np.testing.assert_allclose(x.numpy(), theirs.user_factors, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(y.numpy(), theirs.item_factors, rtol=1e-3, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fit_matches_cpu():
    from workbench.data.synthetic import config_for, generate

    df = generate(config_for("tiny", seed=0))[0]
    cpu = IALS(factors=16, epochs=5, device="cpu").fit(df)
    gpu = IALS(factors=16, epochs=5, device="cuda").fit(df)
    assert gpu.item_factors_.device.type == "cuda"
    torch.testing.assert_close(gpu.item_factors_.cpu(), cpu.item_factors_, rtol=1e-3, atol=1e-4)
    users = df["user_id"].unique()[:20]
    assert (gpu.recommend(users, k=10)["item_id"] == cpu.recommend(users, k=10)["item_id"]).mean() > 0.95
