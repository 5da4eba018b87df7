"""iALS's fused numba kernel: the same CG steps as the torch path (to float32 rounding),
the exact least-squares solution with enough steps, the same result at any thread count,
and a working fallback where numba is missing or no cache folder is writable."""

from __future__ import annotations

import concurrent.futures
import importlib.util
import shutil
import sys

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from workbench.data.synthetic import config_for, generate
from workbench.models import ials_kernel
from workbench.models.ials import IALS, choose_kernel, regularised_gram

pytestmark = pytest.mark.skipif(not ials_kernel.AVAILABLE, reason="numba is not installed")


def pattern(n_rows: int, n_cols: int, density: float, seed: int) -> sp.csr_matrix:
    m = sp.random(n_rows, n_cols, density=density, format="csr", random_state=seed, dtype=np.float32)
    m.data[:] = 1.0  # implicit reads the values as confidences
    return sp.vstack([m, sp.csr_matrix((1, n_cols), dtype=np.float32)], format="csr")  # the last row is empty


def kernel_sweep(m: sp.csr_matrix, x: torch.Tensor, y: torch.Tensor, reg: float, alpha: float, steps: int) -> None:
    ind = (m.indptr.astype(np.int64), m.indices.astype(np.int32))
    ials_kernel.cg_sweep(*ind, x, y, regularised_gram(y, reg), alpha, steps)


def test_enough_steps_reach_the_exact_least_squares_solution():
    m, f, reg, alpha = pattern(40, 25, 0.2, seed=1), 6, 2.0, 4.0
    gen = torch.Generator().manual_seed(0)
    y, x = torch.rand(25, f, generator=gen), torch.rand(41, f, generator=gen)
    kernel_sweep(m, x, y, reg, alpha, steps=2 * f)
    y64, exact = y.double(), []
    for u in range(41):
        yu = y64[m.indices[m.indptr[u] : m.indptr[u + 1]]]
        a = y64.T @ y64 + reg * torch.eye(f, dtype=torch.float64) + alpha * yu.T @ yu
        exact.append(torch.linalg.solve(a, (1 + alpha) * yu.sum(0)))
    torch.testing.assert_close(x.double(), torch.stack(exact), rtol=1e-4, atol=1e-5)
    assert x[40].abs().max() < 1e-5  # the empty row shrinks to zero


@pytest.fixture(scope="module")
def tiny():
    return generate(config_for("tiny", seed=0))[0]


def test_numba_and_torch_paths_give_the_same_factors(tiny):
    """At the default reg (well conditioned). At reg=5 on this data the item sweep is ill
    conditioned and float32 rounding grows in both paths alike (each ~1e-2 off float64)."""
    options = dict(factors=16, reg=50.0, alpha=5.0, epochs=4, cg_steps=3, device="cpu")
    fused, plain = IALS(kernel="numba", **options).fit(tiny), IALS(kernel="torch", **options).fit(tiny)
    assert (fused.kernel_, plain.kernel_) == ("numba", "torch")
    for a, b in [(fused.user_factors_, plain.user_factors_), (fused.item_factors_, plain.item_factors_)]:
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # the tolerance is tight enough to catch a drift: a 1% change of alpha breaks it
    drifted = IALS(kernel="torch", **{**options, "alpha": 5.05}).fit(tiny)
    assert not torch.allclose(fused.item_factors_, drifted.item_factors_, rtol=1e-4, atol=1e-5)


@pytest.mark.filterwarnings("ignore:OpenBLAS is configured")
def test_matches_implicit_als_iteration_for_iteration():
    implicit_als = pytest.importorskip("implicit.cpu.als")
    m = pattern(60, 40, 0.1, seed=4)
    rng = np.random.default_rng(0)
    x0, y0 = (rng.random((61, 8)) * 0.01).astype(np.float32), (rng.random((40, 8)) * 0.01).astype(np.float32)
    theirs = implicit_als.AlternatingLeastSquares(
        factors=8, regularization=2.0, alpha=1.0 + 5.0, iterations=2, use_cg=True, num_threads=1
    )  # their confidence is alpha * r, ours 1 + alpha * r
    theirs.user_factors, theirs.item_factors = x0.copy(), y0.copy()
    theirs.fit(m, show_progress=False)
    x, y = torch.from_numpy(x0.copy()), torch.from_numpy(y0.copy())
    for _ in range(2):
        kernel_sweep(m, x, y, 2.0, 5.0, 3)
        kernel_sweep(m.T.tocsr(), y, x, 2.0, 5.0, 3)
    np.testing.assert_allclose(x.numpy(), theirs.user_factors, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(y.numpy(), theirs.item_factors, rtol=1e-3, atol=1e-4)


def test_the_result_does_not_depend_on_the_thread_count():
    m = pattern(300, 80, 0.1, seed=2)
    gen = torch.Generator().manual_seed(1)
    y, x0 = torch.rand(80, 8, generator=gen), torch.rand(301, 8, generator=gen)
    before, results = torch.get_num_threads(), []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            x = x0.clone()
            kernel_sweep(m, x, y, 1.0, 3.0, 3)
            results.append(x)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(results[0], results[1])


def test_two_python_threads_may_run_the_kernel_at_once():
    """numba's workqueue layer aborts the process on concurrent launches: the lock serialises them."""
    m = pattern(200, 50, 0.1, seed=5)
    y = torch.rand(50, 8, generator=torch.Generator().manual_seed(2))
    xs = [torch.zeros(201, 8) for _ in range(4)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda x: kernel_sweep(m, x, y, 1.0, 3.0, 3), xs))
    assert all(torch.equal(x, xs[0]) for x in xs) and xs[0].abs().sum() > 0


def test_auto_picks_numba_on_cpu_and_torch_without_it(monkeypatch):
    assert choose_kernel("auto", torch.device("cpu")) == "numba"
    assert choose_kernel("auto", torch.device("cuda")) == "torch"
    with pytest.raises(ValueError, match="the device is cuda"):
        choose_kernel("numba", torch.device("cuda"))
    monkeypatch.setattr(ials_kernel, "AVAILABLE", False)
    assert choose_kernel("auto", torch.device("cpu")) == "torch"
    with pytest.raises(ValueError, match="numba is not installed"):
        choose_kernel("numba", torch.device("cpu"))


def test_an_unknown_kernel_is_refused_by_name():
    with pytest.raises(ValueError, match=r"kernel must be one of .* got 'cython'"):
        IALS(kernel="cython")


def load_copy(tmp_path, name: str):
    """A fresh copy of ials_kernel.py imported as ``name`` from ``tmp_path``."""
    shutil.copy(ials_kernel.__file__, tmp_path / "ials_kernel.py")
    spec = importlib.util.spec_from_file_location(name, tmp_path / "ials_kernel.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_numba_the_kernel_says_so(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba -> ImportError
    module = load_copy(tmp_path, "ials_kernel_without_numba")
    assert not module.AVAILABLE
    x = torch.zeros(1, 2)
    with pytest.raises(RuntimeError, match="needs numba"):
        module.cg_sweep(np.zeros(2, np.int64), np.zeros(0, np.int32), x, x, torch.eye(2), 1.0, 1)


def test_no_writable_cache_folder_still_compiles(tmp_path, monkeypatch):
    """A read-only install: neither ``__pycache__`` nor the user cache can be made (a file
    stands in the way, so this holds even as root); the kernel compiles per process."""
    numba = pytest.importorskip("numba")
    (tmp_path / "__pycache__").write_text("not a folder")
    (tmp_path / "cache").write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(numba.config, "CACHE_DIR", "")
    module = load_copy(tmp_path, "ials_kernel_read_only")
    assert module.AVAILABLE and not module.CACHED
    a = np.arange(10, dtype=np.float32)
    assert module._dot(a, a, np.float32(0)) == np.float32(285.0)
