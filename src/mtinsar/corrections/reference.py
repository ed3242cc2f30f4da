"""Spatial reference point: choose it, and take its phase out of every pair.

Unwrapped interferograms carry an arbitrary constant per pair (the unwrapping seed), so
displacements are only meaningful relative to a reference area assumed stable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import uniform_filter

from mtinsar.errors import InputError


@dataclass(frozen=True)
class ReferencePoint:
    """Reference pixel (row `y`, column `x`) and how it was chosen ("auto" or "given")."""

    y: int
    x: int
    method: str


def auto_reference(
    mean_coherence: np.ndarray,
    all_valid: np.ndarray,
    phase_rate: np.ndarray,
    radius: int,
) -> ReferencePoint:
    """Pick a stable, highly coherent reference pixel from per-pixel stack statistics.

    `mean_coherence` (y, x) is the mean pair coherence, `all_valid` (y, x) marks pixels valid
    in every pair, `phase_rate` (y, x) [rad/day] is the stack's mean phase rate (sum of pair
    phases over sum of time spans). Candidates are pixels valid in every pair whose
    (2·radius+1)² window is fully valid and whose window-mean coherence is within 5 % of the
    best (the most coherent area, as MintPy's `maxCoherence` default); among them the one
    whose window has the smallest spatial spread of phase rate wins, a proxy for an area
    free of differential motion (the per-pair unwrapping constants cancel in that spread).
    """
    size = 2 * radius + 1
    full = uniform_filter(all_valid.astype(float), size, mode="constant") > 1 - 1e-9
    if not full.any():
        raise InputError(
            "no pixel window is valid in every interferogram, so no reference point can be "
            "chosen automatically; give one with --ref-lon/--ref-lat (reference.lon/lat) or "
            "lower reference.radius"
        )
    coh = uniform_filter(np.where(all_valid, mean_coherence, 0.0), size, mode="constant")
    rate = np.where(all_valid, phase_rate, 0.0)
    spread = (
        uniform_filter(rate**2, size, mode="constant")
        - uniform_filter(rate, size, mode="constant") ** 2
    )
    best = coh[full].max()
    candidates = full & (coh >= 0.95 * best)
    score = np.where(candidates, spread, np.inf)
    y, x = np.unravel_index(np.argmin(score), score.shape)
    return ReferencePoint(int(y), int(x), "auto")


def reference_from_lonlat(
    lon: float, lat: float, xs: np.ndarray, ys: np.ndarray, all_valid: np.ndarray
) -> ReferencePoint:
    """Reference pixel nearest to (`lon`, `lat`) on a grid of pixel-centre coords `xs`, `ys`."""
    dx = abs(float(xs[1] - xs[0])) if len(xs) > 1 else 0.0
    dy = abs(float(ys[1] - ys[0])) if len(ys) > 1 else 0.0
    inside = (
        min(xs) - dx / 2 <= lon <= max(xs) + dx / 2 and min(ys) - dy / 2 <= lat <= max(ys) + dy / 2
    )
    if not inside:
        raise InputError(
            f"reference point lon={lon}, lat={lat} is outside the data "
            f"(lon {min(xs):.5f}..{max(xs):.5f}, lat {min(ys):.5f}..{max(ys):.5f}); "
            "choose a point inside or leave reference.lon/lat unset for automatic choice"
        )
    x = int(np.argmin(np.abs(xs - lon)))
    y = int(np.argmin(np.abs(ys - lat)))
    if not all_valid[y, x]:
        raise InputError(
            f"reference pixel at lon={lon}, lat={lat} (row {y}, col {x}) has no data in some "
            "interferograms; pick a coherent point or use automatic choice"
        )
    return ReferencePoint(y, x, "given")


def reference_phase(window: np.ndarray) -> np.ndarray:
    """Per-pair reference phase [rad]: NaN-median of a (n_pairs, wy, wx) window."""
    flat = window.reshape(window.shape[0], -1)
    empty = ~np.isfinite(flat).any(axis=1)
    if empty.any():
        raise InputError(
            f"the reference window has no valid pixel in {int(empty.sum())} interferogram(s); "
            "choose another reference point (reference.lon/lat) or a larger reference.radius"
        )
    return np.nanmedian(flat, axis=1)
