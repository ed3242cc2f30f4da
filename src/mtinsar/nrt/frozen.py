"""The new date from frozen history: each new pair adds its phase to its stored earlier
date and the pairs' estimates are averaged with their weights. The limit of the exact
sequential step (`mtinsar.nrt.sequential`) where the past is known exactly; used when the
result holds no pair network (`nrt.network.attach_network`)."""

from __future__ import annotations

import numpy as np

from mtinsar.nrt.sequential import NewDate


def estimate_new_date(
    d_old: np.ndarray,
    unw: np.ndarray,
    to_metres: float,
    weights: np.ndarray | None = None,
    fix_cycles: bool = True,
) -> NewDate:
    """Displacement [m] of a new date from its pairs to already-estimated dates.

    d_old (k, y, x) [m]: displacement of the earlier date of each pair; unw (k, y, x) [rad]:
    the pairs' referenced phases (new minus old date); `to_metres` rad -> m; weights
    (k, y, x) optional inverse phase variances. With `fix_cycles` and >= 3 valid pairs, a
    pair whose estimate differs from the median by ~2π·m is shifted by that multiple
    (the unwrapping check of `mtinsar.nrt.append`).
    """
    phase_new = d_old / to_metres + unw  # each pair's estimate of the new date's phase [rad]
    valid = np.isfinite(phase_new)
    w = np.ones_like(unw) if weights is None else np.asarray(weights, dtype=np.float64)
    valid &= np.isfinite(w) & (w > 0)
    n = valid.sum(axis=0)
    est = np.where(valid, phase_new, np.nan)
    cycles = np.zeros(unw.shape, dtype=np.int64)
    if fix_cycles:
        centre = _nan_median(est)
        cyc = np.rint((est - centre) / (2 * np.pi))
        cycles = np.where(valid & (n >= 3), np.nan_to_num(cyc), 0).astype(np.int64)
        est = est - 2 * np.pi * cycles
    w = np.where(valid, w, 0.0)
    wsum = w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (w * np.where(valid, est, 0.0)).sum(axis=0) / wsum
    mean = np.where(n > 0, mean, np.nan)
    return NewDate(
        displacement=mean * to_metres,
        n_pairs=n.astype(np.int16),
        cycles_corrected=(cycles != 0).sum(axis=0).astype(np.int16),
        corrected_phase=np.where(valid, est, np.nan),
    )


def _nan_median(a: np.ndarray) -> np.ndarray:
    """Median along axis 0 ignoring NaN (NaN where all are): `np.nanmedian`, 2x faster for
    the few pairs of a new date (NaN sorts last)."""
    ordered = np.sort(a, axis=0)
    n = np.isfinite(a).sum(axis=0)[None]
    low = np.take_along_axis(ordered, np.maximum(n - 1, 0) // 2, axis=0)
    high = np.take_along_axis(ordered, n // 2, axis=0)
    return ((low + high) / 2)[0]
