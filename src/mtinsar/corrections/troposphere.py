"""Empirical phase-elevation correction of the stratified troposphere, per date.

The vertically stratified part of the tropospheric delay makes each date's apparent
displacement a function of terrain height, d_t(p) ≈ c_t + K_t h(p), with K_t [m per m of
height] changing from date to date as pressure, temperature and humidity profiles change
(Doin et al. 2009, J. Appl. Geophys. 69(1); review: Bekaert et al. 2015, Remote Sens.
Environ. 170). K_t is estimated for every date by least squares on reliable pixels, and
K_t (h - h_ref) is removed.

Choices, and why:

- A polynomial ramp (order `ramp_order`) is fitted jointly with the height term, as in
  NSBAS (Doin et al. 2009, 2011), but only the height term is removed here (the ramp
  stage removes ramps): when terrain rises across the scene, fitting the ramp alone first
  would absorb part of K_t h and bias the height coefficient left to estimate.
- Deformation correlated with topography (a subsiding valley, an inflating volcano) must
  not be taken for delay. As with ramps, a per-pixel temporal detrending cannot help,
  because the part of K_t h that grows linearly in time is exactly a velocity proportional
  to height; the fit instead uses the pixels that behave as stable, found by the robust
  reweighting of `mtinsar.corrections.ramp.fit_per_date` (one Tukey weight per pixel from
  its residual RMS over all dates). Doin et al. (2009) likewise mask deforming areas.
- `window` > 0 gives the windowed variant, for large scenes where the ratio changes from
  place to place (Lin et al. 2010, G-cubed 11(9), who estimate it where and at the scales
  where deformation does not dominate): K_t is estimated separately in square windows of
  `window` pixels (model c_w + K_w h, with the pixel weights of the scene-wide fit) and
  interpolated bilinearly between window centres. It is applied at two scales: the
  relief within each window, h - h_w (h_w the window-mean height, interpolated), with
  the local ratio; the window means h_w with the scene-wide one. A window's intercept
  absorbs whatever else it holds (turbulence, deformation), so its ratio only speaks for
  the local relief; applying it to the full height would turn a noisy ratio into a large
  error wherever a window sits far above or below the scene median. A window with too
  few weighted pixels (MIN_WINDOW_WEIGHT) or too little relief (MIN_WINDOW_RELIEF) keeps
  the scene-wide ratio. On small windows the local ratios also fit turbulence that happens
  to correlate with the relief: use windows of tens of km.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.sparse import csr_matrix

from mtinsar.corrections.ramp import fit_per_date, ramp_basis, rereference_to_area
from mtinsar.errors import InputError

log = logging.getLogger(__name__)

#: A window estimates its own ratio only with at least this summed pixel weight ...
MIN_WINDOW_WEIGHT = 30.0
#: ... and a weighted height spread of at least this fraction of the scene's.
MIN_WINDOW_RELIEF = 0.1


@dataclass(frozen=True)
class TroposphereFit:
    """What `correct_phase_elevation` estimated.

    ratio: (n_dates,) scene-wide delay/height ratio K_t [m of LOS displacement per m of
        height, + towards the satellite]; NaN for a date that could not be fitted.
    window_ratio: (n_dates, n_wy, n_wx) ratio per window (windowed variant, after the
        fallback to `ratio` in windows that cannot estimate it), else None.
    weights: (y, x) robust weight of each fit pixel (see `ramp.SpatialFit`).
    n_iterations: reweighting iterations of the scene-wide fit.
    """

    ratio: np.ndarray
    window_ratio: np.ndarray | None
    weights: np.ndarray
    n_iterations: int


def correct_phase_elevation(
    displacement: np.ndarray,
    height: np.ndarray,
    fit_mask: np.ndarray | None = None,
    reference: tuple[int, int] | None = None,
    reference_radius: int = 0,
    ramp_order: int = 1,
    window: int = 0,
    robust: bool = True,
    max_fit_pixels: int = 100_000,
) -> tuple[np.ndarray, TroposphereFit]:
    """Remove the height-proportional delay from `displacement` (t, y, x) [m].

    `height` (y, x) [m] is the terrain height of each pixel (NaN: no correction there, the
    result is NaN). The fit uses `fit_mask` (y, x; default all pixels). With `reference`
    (row, col) and `reference_radius`, the result is re-referenced to that area
    (`ramp.rereference_to_area`). Returns (corrected cube with the input's dtype,
    `TroposphereFit`). See the module docstring for the method and its choices.
    """
    if displacement.ndim != 3:
        raise ValueError(f"displacement must be (time, y, x), got shape {displacement.shape}")
    height = np.asarray(height, dtype=np.float64)
    if height.shape != displacement.shape[1:]:
        raise InputError(
            f"height grid {height.shape} differs from the time series' {displacement.shape[1:]}; "
            "the stack's `height` layer must be on the result grid"
        )
    if window < 0:
        raise ValueError(f"window must be >= 0, got {window}")
    finite = np.isfinite(height)
    if not finite.any():
        raise InputError(
            "the `height` layer has no finite value; the phase-elevation "
            "correction needs terrain heights (disable troposphere.enabled)"
        )
    h0 = float(np.median(height[finite]))  # centring keeps the constant and K_t decoupled
    dh = height - h0
    ramp = ramp_basis(height.shape, ramp_order) if ramp_order > 0 else np.ones((1, *height.shape))
    basis = np.concatenate([dh[None], ramp])
    fit = fit_per_date(displacement, basis, fit_mask, robust, max_fit_pixels)
    ratio = fit.coefficients[:, 0]

    window_ratio = None
    k_glob = np.nan_to_num(ratio)
    if window > 0:
        window_ratio, window_height = _window_ratios(displacement, dh, fit.weights, ratio, window)
        k_map = _interpolate_windows(window_ratio, height.shape, window)
        smooth = _interpolate_windows(window_height[None], height.shape, window)[0]
    out = np.empty_like(displacement)
    for t in range(displacement.shape[0]):  # per date: bounded memory
        if window > 0:
            # Two scales: the windows' mean relief with the scene-wide ratio, the relief
            # within each window with the window's own ratio.
            delay = k_glob[t] * smooth + k_map[t] * (dh - smooth)
        else:
            delay = k_glob[t] * dh
        out[t] = displacement[t] - delay
    rereference_to_area(out, reference, reference_radius)
    log.info(
        "phase-elevation ratio fitted in %d iteration(s): |K| median %.2g m/km over %d dates",
        fit.n_iterations,
        1000 * float(np.nanmedian(np.abs(ratio))) if np.isfinite(ratio).any() else np.nan,
        ratio.size,
    )
    return out, TroposphereFit(ratio, window_ratio, fit.weights, fit.n_iterations)


def _window_ratios(
    displacement: np.ndarray,
    dh: np.ndarray,
    weights: np.ndarray,
    ratio: np.ndarray,
    window: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-window, per-date ratio of the model c + K h, weighted by the scene-wide weights.

    Closed-form 2-parameter weighted regression for all windows and dates at once: the
    weighted sums per window are sparse matrix products.
    """
    ny, nx = dh.shape
    nwy, nwx = -(-ny // window), -(-nx // window)
    n_dates = displacement.shape[0]
    idx = np.flatnonzero(np.nan_to_num(weights) > 0)
    rows, cols = np.unravel_index(idx, dh.shape)
    win = (rows // window) * nwx + cols // window
    h = dh.reshape(-1)[idx]
    values = displacement.reshape(n_dates, -1)[:, idx].astype(np.float64)
    w = np.isfinite(values) * weights.reshape(-1)[idx][None, :]
    values = np.where(w > 0, values, 0.0)
    member = csr_matrix(
        (np.ones(idx.size), (win, np.arange(idx.size))), shape=(nwy * nwx, idx.size)
    )

    s0 = member @ w.T  # (n_win, t)
    s1 = member @ (w * h).T
    s2 = member @ (w * h * h).T
    t0 = member @ (w * values).T
    t1 = member @ (w * h * values).T
    with np.errstate(invalid="ignore", divide="ignore"):
        var_h = s2 / s0 - (s1 / s0) ** 2
        k = (s0 * t1 - s1 * t0) / (s0 * s2 - s1 * s1)
    w_all = weights.reshape(-1)[idx]
    mean_all = np.average(h, weights=w_all) if idx.size else 0.0
    var_all = np.average((h - mean_all) ** 2, weights=w_all) if idx.size else 0.0
    enough = (s0 >= MIN_WINDOW_WEIGHT) & (var_h >= (MIN_WINDOW_RELIEF**2) * var_all)
    k = np.where(enough & np.isfinite(k), k, np.nan_to_num(ratio)[None, :])
    log.info(
        "windowed phase-elevation: %d of %d windows estimate their own ratio",
        int(enough.all(axis=1).sum()),
        nwy * nwx,
    )
    finite = np.isfinite(dh).reshape(-1)
    all_win = (np.arange(ny)[:, None] // window) * nwx + np.arange(nx)[None, :] // window
    all_win = all_win.reshape(-1)[finite]
    sums = np.bincount(all_win, dh.reshape(-1)[finite], minlength=nwy * nwx)
    counts = np.bincount(all_win, minlength=nwy * nwx)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_h = np.where(counts > 0, sums / counts, 0.0)
    return k.T.reshape(n_dates, nwy, nwx), mean_h.reshape(nwy, nwx)


def _interpolate_windows(
    window_ratio: np.ndarray, shape: tuple[int, int], window: int
) -> np.ndarray:
    """Bilinear interpolation of per-window values (t, n_wy, n_wx) to pixels (t, y, x).

    Window centres sit at (i + 0.5) * window - 0.5 pixels; beyond the outer centres the
    value is held (nearest).
    """
    ny, nx = shape
    ry = (np.arange(ny) + 0.5) / window - 0.5
    rx = (np.arange(nx) + 0.5) / window - 0.5
    coords = np.stack(np.meshgrid(ry, rx, indexing="ij"))
    return np.stack(
        [ndimage.map_coordinates(k, coords, order=1, mode="nearest") for k in window_ratio]
    )
