"""iALS's fused CPU kernel: one conjugate-gradient solve per row, parallel over rows (numba).

The same sweep as :func:`workbench.models.ials.cg_sweep` -- same Gram ``Y^T Y + reg I``,
confidence ``1 + alpha``, ``steps`` CG steps warm-started from the previous ``x``, the
same guards on a zero curvature or residual -- but row by row, like ``implicit``'s
Cython loop: each CG step reads a row's nonzeros once, the dot product ``y_i . p`` fused
with the axpy that adds ``y_i`` to ``A p``; the right-hand side and the initial residual
come from one more pass. A sweep so reads the nonzeros ``steps + 1`` times (the torch
path: ``2 * (steps + 1) + 1``). Arithmetic stays in the factors' dtype (float32, as
``implicit``). ``fastmath`` is off except for one flag, ``reassoc`` on the dot product,
which lets LLVM keep the sum in SIMD lanes (a 64-long float32 dot: 11 ns with it,
120 ns without, measured here; without it the whole sweep was no faster than
``implicit``'s). No other fast-math liberty (no FMA contraction, inf/NaN semantics kept);
the order of a row's sums is fixed by the compiled code, not by the thread count.

Rows go to threads in a fixed interleaved order (row ``u`` to block ``u % blocks``), so
the long rows of popular items spread over the threads and the result does not depend
on the thread count. Threads follow ``torch.get_num_threads()``. numba's threading layer
is set to ``workqueue`` unless ``NUMBA_THREADING_LAYER`` says otherwise (see the note at
the import); launches are serialised by a lock, so threads may fit models concurrently.

numba is optional: without it :data:`AVAILABLE` is False and iALS uses the torch path.
Compiled code is cached next to this file (``__pycache__``) or, where that is read-only,
in numba's per-user cache folder; where neither is writable it compiles on each process'
first call (see :data:`CACHED`).
"""

from __future__ import annotations

import os
import threading

import numpy as np
import torch

try:
    import numba
except ImportError:  # an optional dependency: iALS then runs its torch path
    numba = None

if numba is not None and not os.environ.get("NUMBA_THREADING_LAYER"):
    # numba's OpenMP layer leaves its workers spinning beside torch's own OpenMP pool: torch
    # ran 20-30x slower after a numba sweep here. The workqueue layer's workers sleep.
    numba.config.THREADING_LAYER = "workqueue"
_LAUNCH = threading.Lock()  # the workqueue layer takes one parallel launch at a time

prange = numba.prange if numba is not None else range

AVAILABLE = numba is not None
BLOCKS = 256  # row blocks handed to the threads (interleaved rows, see above)
CACHED = False


def _compile(fn, **options):
    """``numba.njit(fn)`` with the on-disk cache where a cache folder can be found."""
    global CACHED
    if numba is None:
        return fn
    try:
        compiled = numba.njit(cache=True, **{"fastmath": False, **options})(fn)
        CACHED = True
    except RuntimeError:  # "no locator available": no writable cache folder, compile per process
        compiled = numba.njit(cache=False, **{"fastmath": False, **options})(fn)
    return compiled


def _dot(a: np.ndarray, b: np.ndarray, zero) -> float:
    """a . b for (f,) vectors, summed in ``zero``'s dtype."""
    s = zero
    for k in range(a.shape[0]):
        s += a[k] * b[k]
    return s


_dot = _compile(_dot, fastmath={"reassoc"})  # lets the sum run in SIMD lanes: 10x here


def _gram_times(gram: np.ndarray, v: np.ndarray, out: np.ndarray) -> None:
    """out = gram @ v for the symmetric (f, f) ``gram``, as axpys over its rows (vectorised)."""
    f = v.shape[0]
    out[:] = 0
    for j in range(f):
        vj = v[j]
        for k in range(f):
            out[k] += vj * gram[j, k]


_gram_times = _compile(_gram_times)


def _solve_row(cols, x, y, gram, alpha, confidence, steps, r, p, ap, zero) -> None:
    """``steps`` CG steps on one row: (gram + alpha * Y_u^T Y_u) x = confidence * Y_u^T 1."""
    f = x.shape[0]
    _gram_times(gram, x, r)  # r = b - A x in one pass: sum_i (confidence - alpha y_i.x) y_i - gram x
    for k in range(f):
        r[k] = -r[k]
    for i in cols:
        w = confidence - alpha * _dot(y[i], x, zero)
        for k in range(f):
            r[k] += w * y[i, k]
    p[:] = r
    rs_old = _dot(r, r, zero)
    for _ in range(steps):
        _gram_times(gram, p, ap)  # ap = A p, the dot fused with the axpy per nonzero
        for i in cols:
            w = alpha * _dot(y[i], p, zero)
            for k in range(f):
                ap[k] += w * y[i, k]
        curvature = _dot(p, ap, zero)
        step = rs_old / curvature if curvature > 0 else zero
        for k in range(f):
            x[k] += step * p[k]
            r[k] -= step * ap[k]
        rs_new = _dot(r, r, zero)
        beta = rs_new / rs_old if rs_old > 0 else zero
        for k in range(f):
            p[k] = r[k] + beta * p[k]
        rs_old = rs_new


_solve_row = _compile(_solve_row)


def _sweep(indptr, indices, x, y, gram, alpha, confidence, steps, blocks, zero) -> None:
    n, f = x.shape
    for b in prange(blocks):
        r, p, ap = np.empty(f, x.dtype), np.empty(f, x.dtype), np.empty(f, x.dtype)
        for u in range(b, n, blocks):
            cols = indices[indptr[u] : indptr[u + 1]]
            _solve_row(cols, x[u], y, gram, alpha, confidence, steps, r, p, ap, zero)


_sweep = _compile(_sweep, parallel=True)


def cg_sweep(
    indptr: np.ndarray,
    indices: np.ndarray,
    x: torch.Tensor,
    y: torch.Tensor,
    gram: torch.Tensor,
    alpha: float,
    steps: int,
) -> None:
    """Update the CPU tensor ``x`` (n_rows, f) in place by ``steps`` CG steps per row;
    ``indptr`` (n_rows + 1,) and ``indices`` (nnz,) the rows' CSR pattern, ``y`` (n_cols, f)
    fixed, ``gram`` (f, f) = ``Y^T Y + reg I``; threads: ``torch.get_num_threads()``."""
    if not AVAILABLE:
        raise RuntimeError("the fused iALS kernel needs numba (pip install numba); the torch path runs without it")
    if x.device.type != "cpu" or not (x.is_contiguous() and y.is_contiguous()):
        raise ValueError(f"the fused iALS kernel takes contiguous CPU tensors, got x on {x.device}")
    dtype = x.numpy().dtype
    zero = dtype.type(0)
    with _LAUNCH:
        numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
        _sweep(
            indptr,
            indices,
            x.numpy(),
            y.numpy(),
            gram.numpy(),
            dtype.type(alpha),
            dtype.type(1 + alpha),
            steps,
            BLOCKS,
            zero,
        )
