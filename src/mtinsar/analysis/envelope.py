"""Per-pixel pair-graph normal equations solved by envelope Cholesky, compiled with numba.

A pixel's weighted least-squares normal matrix N = AᵀWA is the weighted Laplacian of its
valid-pair graph without the row and column of date 0 (`inversion._LaplacianAssembly`).
Small-baseline networks link each date to a few neighbours in time (plus, in LiCSAR's,
~1-year pairs), so once the dates are ordered well the nonzeros of each row lie close to
the diagonal. Cholesky fill-in stays inside that envelope (profile) (George & Liu 1981,
*Computer Solution of Large Sparse Positive Definite Systems*, ch. 4), so factorising costs
about Σ_j w_j² / 2 multiply-adds instead of m³ / 6 (w_j: width of row j's envelope). The
ordering is reverse Cuthill-McKee (Cuthill & McKee 1969; George 1971) where it gives a
smaller envelope than date order. Each pixel builds N and AᵀWb straight from its pair
phases and weights, so no (n_pix, m, m) array is made; threads share the pixels (the kernel
releases the GIL).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import reverse_cuthill_mckee

from mtinsar.analysis import jit
from mtinsar.analysis.network import Network

#: A pivot below this fraction of its row's diagonal means the pixel's graph is split.
MIN_PIVOT = 1e-10
#: Pixels per task of the thread pool (large enough to amortise the call).
_TASK_PIXELS = 4096


@dataclass(frozen=True)
class EnvelopeOrder:
    """Where each unknown (date 1..n-1) sits in the factorisation, and its row envelope.

    position[d - 1]: row of date d; ref/sec: the rows of each pair's dates (-1 = date 0,
    which is fixed); first[j]: first column of row j's envelope.
    """

    position: np.ndarray
    ref: np.ndarray
    sec: np.ndarray
    first: np.ndarray

    @property
    def size(self) -> int:
        """Number of envelope entries below and on the diagonal (factor storage)."""
        return int((np.arange(self.first.size) - self.first + 1).sum())


def envelope_order(network: Network) -> EnvelopeOrder:
    """The ordering of the unknowns with the smaller envelope: dates or reverse Cuthill-McKee."""
    m = network.n_dates - 1
    i, j = network.ref - 1, network.sec - 1
    both = (i >= 0) & (j >= 0)
    graph = coo_matrix((np.ones(both.sum()), (i[both], j[both])), shape=(m, m)).tocsr()
    candidates = [np.arange(m), reverse_cuthill_mckee(graph + graph.T, symmetric_mode=True)]
    # min keeps the first of equals: date order unless reordering narrows the envelope
    return min((_ordered(order, i, j, both) for order in candidates), key=lambda o: o.size)


def _ordered(order: np.ndarray, i: np.ndarray, j: np.ndarray, both: np.ndarray) -> EnvelopeOrder:
    """The envelope of the unknowns (dates 1.., pairs' indices `i`, `j`) taken in `order`."""
    position = np.empty(order.size, dtype=np.int64)
    position[order] = np.arange(order.size)
    ref = np.where(i >= 0, position[np.maximum(i, 0)], -1).astype(np.int64)
    sec = np.where(j >= 0, position[np.maximum(j, 0)], -1).astype(np.int64)
    first = np.arange(order.size, dtype=np.int64)
    np.minimum.at(first, np.maximum(ref, sec)[both], np.minimum(ref, sec)[both])
    return EnvelopeOrder(position, ref, sec, first)


def solve(
    unw: np.ndarray,
    weights: np.ndarray | None,
    pixels: np.ndarray,
    order: EnvelopeOrder,
    gamma: float = 0.0,
    line: np.ndarray | None = None,
    threads: int | None = None,
) -> np.ndarray:
    """Weighted least-squares date phases of the pixel columns `pixels` of `unw`.

    unw (n_pairs, n_pix) [rad] and weights (n_pairs, n_pix) [rad⁻²] or None (all 1); a pair
    counts where both are finite and the weight is > 0. Returns (n_dates - 1, len(pixels))
    phases of dates 1.. relative to date 0; NaN where the valid pairs do not link every date.

    With `gamma` > 0 the NSBAS constraint is added (`inversion._linear_constraint`):
    gamma² · (mean valid weight) · (I - U Uᵀ), U = `line` (n_dates - 1, 2) the rows of dates
    1.. of an orthonormal basis of span{1, t} over all dates. N + c·I keeps the envelope and
    is factorised; the rank-2 part is taken off with the Woodbury identity (Woodbury 1950).
    `threads` (default: all cores from the main thread, 1 from any other) share the pixels.
    """
    m = order.first.size
    out = np.empty((m, pixels.size))
    if pixels.size == 0:
        return out
    unw = np.ascontiguousarray(unw, dtype=np.float64)
    w = np.ones((1, 1)) if weights is None else np.ascontiguousarray(weights, dtype=np.float64)
    pixels = np.ascontiguousarray(pixels, dtype=np.int64)
    u = np.zeros((m, 2))
    if gamma > 0:
        if line is None or line.shape != (m, 2):
            raise ValueError(f"gamma > 0 needs line of shape ({m}, 2)")
        u[order.position] = line
    kernel = jit.compiled(_solve_pixels)

    def task(sl: slice) -> None:
        kernel(
            unw,
            w,
            weights is not None,
            pixels[sl],
            order.ref,
            order.sec,
            order.first,
            MIN_PIVOT,
            gamma**2,
            u,
            out[:, sl],
        )

    jit.over_blocks(task, pixels.size, _TASK_PIXELS, threads)
    return out[order.position]


def _solve_pixels(
    unw, w, weighted, pixels, ref, sec, first, min_pivot, gamma2, u, out
):  # pragma: no cover
    """Build, factorise (envelope Cholesky, row-oriented) and solve each pixel's system."""
    m = first.size
    n_rhs = 3 if gamma2 > 0.0 else 1  # with the constraint, also solve for the columns of U
    factor = np.zeros((m, m))
    rhs = np.zeros((m, n_rhs))
    for p in range(pixels.size):
        total, count = _assemble(unw, w, weighted, pixels[p], ref, sec, first, factor, rhs)
        shift = gamma2 * total / max(count, 1)
        if n_rhs == 3:
            for r in range(m):
                factor[r, r] += shift
                rhs[r, 1] = u[r, 0]
                rhs[r, 2] = u[r, 1]
        if count == 0 or not _factorise(factor, first, min_pivot):
            out[:, p] = np.nan
            continue
        for t in range(n_rhs):
            _substitute(factor, first, rhs, t)
        if n_rhs == 3:
            _woodbury(rhs, u, shift, out[:, p])
        else:
            out[:, p] = rhs[:, 0]


@jit.helper
def _assemble(unw, w, weighted, col, ref, sec, first, factor, rhs):  # pragma: no cover
    """Pixel `col`'s normal matrix (envelope of `factor`) and right-hand side (rhs[:, 0])
    from its valid pairs; returns the sum and the number of their weights."""
    for r in range(first.size):
        for c in range(first[r], r + 1):
            factor[r, c] = 0.0
    rhs[:, 0] = 0.0
    total, count = 0.0, 0
    for k in range(ref.size):
        b = unw[k, col]
        wk = w[k, col] if weighted else 1.0
        if not (np.isfinite(b) and wk > 0.0 and np.isfinite(wk)):
            continue
        total += wk
        count += 1
        i, j = ref[k], sec[k]
        if i >= 0:
            factor[i, i] += wk
            rhs[i, 0] -= wk * b
        if j >= 0:
            factor[j, j] += wk
            rhs[j, 0] += wk * b
        if i >= 0 and j >= 0:
            factor[max(i, j), min(i, j)] -= wk
    return total, count


@jit.helper
def _factorise(factor, first, min_pivot):  # pragma: no cover
    """Envelope Cholesky L Lᵀ of `factor` in place (row-oriented); False when a pivot falls
    below `min_pivot` times its diagonal (the pixel's pair graph is split)."""
    for r in range(first.size):
        fr = first[r]
        for c in range(fr, r):
            s = factor[r, c]
            for q in range(max(fr, first[c]), c):
                s -= factor[r, q] * factor[c, q]
            factor[r, c] = s / factor[c, c]
        diagonal = factor[r, r]
        d = diagonal
        for q in range(fr, r):
            d -= factor[r, q] * factor[r, q]
        if not d > min_pivot * diagonal:
            return False
        factor[r, r] = np.sqrt(d)
    return True


@jit.helper
def _substitute(factor, first, rhs, t):  # pragma: no cover
    """Solve L Lᵀ x = rhs[:, t] in place with the envelope factor L."""
    m = first.size
    for r in range(m):  # L y = rhs
        s = rhs[r, t]
        for q in range(first[r], r):
            s -= factor[r, q] * rhs[q, t]
        rhs[r, t] = s / factor[r, r]
    for r in range(m - 1, -1, -1):  # Lᵀ x = y, column r of Lᵀ is row r of L
        x = rhs[r, t] / factor[r, r]
        rhs[r, t] = x
        for q in range(first[r], r):
            rhs[q, t] -= factor[r, q] * x


@jit.helper
def _woodbury(rhs, u, shift, out):  # pragma: no cover
    """The NSBAS solution (M - c U Uᵀ)⁻¹ r = z + Z (I/c - Uᵀ Z)⁻¹ Uᵀ z into `out`, from
    z = M⁻¹ r (rhs[:, 0]) and Z = M⁻¹ U (rhs[:, 1:3]); c = `shift`."""
    a11, a12, a22 = 1.0 / shift, 0.0, 1.0 / shift
    g1, g2 = 0.0, 0.0
    for r in range(u.shape[0]):
        a11 -= u[r, 0] * rhs[r, 1]
        a12 -= u[r, 0] * rhs[r, 2]
        a22 -= u[r, 1] * rhs[r, 2]
        g1 += u[r, 0] * rhs[r, 0]
        g2 += u[r, 1] * rhs[r, 0]
    det = a11 * a22 - a12 * a12
    y1 = (a22 * g1 - a12 * g2) / det
    y2 = (a11 * g2 - a12 * g1) / det
    for r in range(u.shape[0]):
        out[r] = rhs[r, 0] + rhs[r, 1] * y1 + rhs[r, 2] * y2
