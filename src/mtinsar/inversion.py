"""SBAS network inversion, batched over pixels.

Each pixel's unwrapped pair phases are inverted by least squares for the phase at every
date relative to the first (Berardino et al. 2002, IEEE TGRS 40(11)), using only that
pixel's valid pairs. Pixels whose valid pairs do not connect all dates are not solved (the
system is rank deficient there) and are reported as disconnected rather than filled.

Speed without a per-pixel Python loop:
- pixels sharing one valid-pair pattern (typically most of a coherent scene) are solved
  together with a single pseudo-inverse;
- the rest go through batched normal equations N = A^T W A, which for this design matrix is
  the pixel's reduced weighted pair-graph Laplacian, positive definite when connected.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtinsar.network import Network

#: Upper bound on the memory of one batch of normal matrices [bytes].
_BATCH_BYTES = 64 * 2**20


@dataclass
class SbasResult:
    """Per-pixel results of an SBAS inversion; pixel axis last.

    phase: (n_dates, n_pix) rad, phase at each date relative to the first (0 at date 0),
        NaN where not solved.
    temporal_coherence: (n_pix,) 0..1 (Pepe & Lanari 2006; Yunjun et al. 2019 eq. 4),
        NaN where not solved.
    n_valid: (n_pix,) number of valid pairs.
    n_components: (n_pix,) connected components of the valid-pair graph (1 = connected).
    """

    phase: np.ndarray
    temporal_coherence: np.ndarray
    n_valid: np.ndarray
    n_components: np.ndarray

    @property
    def solved(self) -> np.ndarray:
        """Pixels with an estimate (their valid pairs connect every date)."""
        return self.n_components == 1


def invert_sbas(
    unw: np.ndarray,
    network: Network,
    weights: np.ndarray | None = None,
    min_group_size: int = 8,
) -> SbasResult:
    """Invert pair phases `unw` (n_pairs, n_pix) [rad, NaN = missing] for date phases.

    `weights` (n_pairs, n_pix), optional, are inverse variances of each pair phase; without
    them every valid pair counts equally and pixels sharing a valid-pair pattern are solved
    with one factorisation when at least `min_group_size` share it.
    """
    if unw.ndim != 2 or unw.shape[0] != network.n_pairs:
        raise ValueError(f"unw must be (n_pairs={network.n_pairs}, n_pix), got {unw.shape}")
    n_pix = unw.shape[1]
    valid = np.isfinite(unw)
    if weights is not None:
        valid &= np.isfinite(weights) & (weights > 0)
    n_comp = network.n_components(valid)
    solved = n_comp == 1
    a = network.design_matrix()
    x = np.full((network.n_dates - 1, n_pix), np.nan)

    rest = np.flatnonzero(solved)
    if weights is None:
        rest = _solve_shared_patterns(unw, valid, a, rest, x, min_group_size)
    if rest.size:
        w = np.where(valid[:, rest], 1.0 if weights is None else weights[:, rest], 0.0)
        x[:, rest] = _solve_normal_equations(np.where(w > 0, unw[:, rest], 0.0), w, a)

    phase = np.concatenate([np.where(solved, 0.0, np.nan)[None], x])
    return SbasResult(
        phase=phase,
        temporal_coherence=temporal_coherence(unw, phase, network),
        n_valid=valid.sum(axis=0),
        n_components=n_comp,
    )


def _solve_shared_patterns(
    unw: np.ndarray,
    valid: np.ndarray,
    a: np.ndarray,
    pixels: np.ndarray,
    x: np.ndarray,
    min_group_size: int,
) -> np.ndarray:
    """Solve groups of `pixels` that share a valid-pair pattern; return the pixels left."""
    if pixels.size == 0:
        return pixels
    packed = np.packbits(valid[:, pixels], axis=0).T  # one row of bytes per pixel
    _, inverse, counts = np.unique(packed, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    for g in np.flatnonzero(counts >= min_group_size):
        members = pixels[inverse == g]
        rows = valid[:, members[0]]
        x[:, members] = np.linalg.pinv(a[rows]) @ unw[np.ix_(rows, members)]
    return pixels[counts[inverse] < min_group_size]


def _solve_normal_equations(b: np.ndarray, w: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Solve (A^T W A) x = A^T W b for each pixel column; b, w are (n_pairs, n_pix)."""
    n_pairs, m = a.shape
    outer = (a[:, :, None] * a[:, None, :]).reshape(n_pairs, m * m)
    out = np.empty((m, b.shape[1]))
    step = max(1, _BATCH_BYTES // (8 * m * m))
    for s in range(0, b.shape[1], step):
        sl = slice(s, s + step)
        normal = (w[:, sl].T @ outer).reshape(-1, m, m)
        rhs = (a.T @ (w[:, sl] * b[:, sl])).T[:, :, None]
        out[:, sl] = np.linalg.solve(normal, rhs)[:, :, 0].T
    return out


def temporal_coherence(unw: np.ndarray, phase: np.ndarray, network: Network) -> np.ndarray:
    """Temporal coherence |mean_k exp(i·(unw_k - (phase[sec_k] - phase[ref_k])))| over valid pairs.

    1 means the date phases explain every pair exactly; unwrapping errors and noise lower it
    (Pepe & Lanari 2006; Yunjun et al. 2019, eq. 4). NaN where `phase` is NaN.
    """
    residual = unw - (phase[network.sec] - phase[network.ref])
    ok = np.isfinite(residual)
    z = np.where(ok, np.exp(1j * np.where(ok, residual, 0.0)), 0.0)
    n = ok.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        gamma = np.abs(z.sum(axis=0)) / n
    return np.where(np.isfinite(phase).all(axis=0) & (n > 0), gamma, np.nan)
