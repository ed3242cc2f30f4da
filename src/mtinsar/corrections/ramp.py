"""Per-date long-wavelength ramps: estimate a planar or quadratic surface and remove it.

Orbit errors and residual ionosphere leave each date of a time series with a smooth ramp
across the scene. As in MintPy's `deramp` (Yunjun et al. 2019, Comput. Geosci. 133, 104331),
each date's displacement is fitted by a polynomial of the pixel coordinates
(order 1: a + b x + c y; order 2 adds x², y², x y) on pixels that are reliable, and the
fitted surface is subtracted everywhere.

Not eating the deformation. A ramp that grows linearly in time is indistinguishable, pixel
by pixel, from a velocity that varies linearly across the scene, so no temporal trick
(e.g. fitting the time series detrended by a per-pixel velocity) can separate the two: it
would leave exactly the part of the ramp that biases the velocity. The separation must be
spatial: deformation is local (bowls, uplifts, landslides) while the ramp covers the whole
scene. The fit therefore uses only pixels that behave as stable, found by iteratively
reweighted least squares (`fit_per_date`): every pixel gets one Tukey biweight (Beaton &
Tukey 1974) from the RMS over all dates of its residual to the per-date surfaces, scaled
by the median RMS of all fit pixels, so a deforming pixel, whose residual grows through
the whole series, is excluded from every date, including early dates where it has barely
moved. This works while stable pixels are the majority of `fit_mask`; where they are not
(a scene that subsides as a whole), pass a `fit_mask` that holds only ground known to be
stable.

The same kernel serves the phase-elevation troposphere (`mtinsar.corrections.troposphere`),
with the height as an extra basis function.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

#: Tukey cutoff in units of the median per-pixel residual RMS: a pixel whose residual RMS is
#: this many times the typical one gets zero weight. For pure noise the RMS over n dates
#: scatters by about 1/sqrt(2n) around its median, so 4 never rejects a stable pixel.
TUKEY_CUTOFF = 4.0
#: Smallest residual scale [m]: on noise-free data the stable pixels fit exactly and the
#: median RMS would be 0; 10 µm is far below any InSAR noise and far above float32 rounding.
SCALE_FLOOR_M = 1e-5
#: IRLS stops when no weight moves by more than this, or after MAX_ITERATIONS.
WEIGHT_TOLERANCE = 1e-3
MAX_ITERATIONS = 50


@dataclass(frozen=True)
class SpatialFit:
    """Per-date coefficients of a spatial model and the pixels that supported them.

    coefficients: (n_dates, n_terms), in data units per unit of each basis function;
        NaN for a date with too few valid fit pixels (left uncorrected).
    weights: (y, x) final weight 0..1 of each fit pixel (0 = treated as deforming or
        noisy); NaN for pixels that were not in the fit.
    n_iterations: reweighting iterations used (1 when not robust).
    """

    coefficients: np.ndarray
    weights: np.ndarray
    n_iterations: int


@dataclass(frozen=True)
class RampFit:
    """What `correct_ramp` estimated.

    coefficients: (n_dates, n_terms) [m] of the basis of `ramp_basis` (x, y in -1..1 from
        the first to the last column/row), before re-referencing.
    weights: (y, x) robust weight of each fit pixel (see `SpatialFit`).
    order: polynomial order.
    n_iterations: reweighting iterations used.
    """

    coefficients: np.ndarray
    weights: np.ndarray
    order: int
    n_iterations: int


def ramp_basis(shape: tuple[int, int], order: int) -> np.ndarray:
    """Polynomial basis (n_terms, y, x): 1, x, y [, x², y², x y], x and y in -1..1."""
    if order not in (1, 2):
        raise ValueError(f"ramp order must be 1 or 2, got {order!r}")
    ny, nx = shape
    y = np.linspace(-1.0, 1.0, ny)[:, None] if ny > 1 else np.zeros((1, 1))
    x = np.linspace(-1.0, 1.0, nx)[None, :] if nx > 1 else np.zeros((1, 1))
    terms = [np.ones_like(x * y), x, y]
    if order == 2:
        terms += [x**2, y**2, x * y]
    return np.stack(np.broadcast_arrays(*terms)).astype(np.float64)


def fit_per_date(
    cube: np.ndarray,
    basis: np.ndarray,
    fit_mask: np.ndarray | None = None,
    robust: bool = True,
    max_fit_pixels: int = 100_000,
) -> SpatialFit:
    """Least-squares coefficients of `basis` (n_terms, y, x) for each date of `cube` (t, y, x).

    Fits on `fit_mask` (y, x) pixels (default: all) whose basis values are finite, using
    each date's finite values. With `robust`, iteratively reweighted: each pixel's weight is
    the Tukey biweight of its residual RMS over time divided by TUKEY_CUTOFF times the
    median RMS (at least SCALE_FLOOR_M), so pixels that deviate through the series
    (deformation) drop out of every date (module docstring). At most `max_fit_pixels`
    pixels, an even subsample, enter the fit. Vectorised over pixels and dates: each
    iteration forms all dates' normal equations with two matrix products.
    """
    n_dates = cube.shape[0]
    n_terms = basis.shape[0]
    if basis.shape[1:] != cube.shape[1:]:
        raise ValueError(f"basis grid {basis.shape[1:]} differs from the cube's {cube.shape[1:]}")
    usable = np.isfinite(basis).all(axis=0) & np.isfinite(cube).any(axis=0)
    if fit_mask is not None:
        usable &= np.asarray(fit_mask, dtype=bool)
    idx = np.flatnonzero(usable)
    if idx.size > max_fit_pixels:
        idx = idx[:: -(-idx.size // max_fit_pixels)]

    values = cube.reshape(n_dates, -1)[:, idx].astype(np.float64)
    valid = np.isfinite(values)
    values[~valid] = 0.0
    b = basis.reshape(n_terms, -1)[:, idx].T
    # Column scaling keeps the normal matrices well conditioned (heights in metres beside
    # coordinates in -1..1); coefficients are scaled back at the end.
    scale = np.sqrt(np.mean(b**2, axis=0)) if idx.size else np.ones(n_terms)
    scale[scale == 0] = 1.0
    b = b / scale
    outer = (b[:, :, None] * b[:, None, :]).reshape(idx.size, n_terms * n_terms)

    weight = np.ones(idx.size)
    n_iter = 0
    for n_iter in range(1, MAX_ITERATIONS + 1):  # noqa: B007 (n_iter is reported)
        coef = _solve_dates(values, valid, weight, b, outer)
        if not robust:
            break
        residual = np.where(valid, values - np.nan_to_num(coef) @ b.T, 0.0)
        count = valid.sum(axis=0)
        rms = np.sqrt((residual**2).sum(axis=0) / np.maximum(count, 1))
        typical = float(np.median(rms[count > 0])) if (count > 0).any() else 0.0
        u = rms / (TUKEY_CUTOFF * max(typical, SCALE_FLOOR_M))
        new = np.where(u < 1.0, (1.0 - u**2) ** 2, 0.0)
        new[new < 1e-6] = 0.0  # no subnormal weights: they slow BLAS down a hundredfold
        change = float(np.max(np.abs(new - weight))) if new.size else 0.0
        weight = new
        if change < WEIGHT_TOLERANCE:
            coef = _solve_dates(values, valid, weight, b, outer)
            break

    weights = np.full(cube.shape[1:], np.nan)
    weights.reshape(-1)[idx] = weight
    bad = np.isnan(coef).any(axis=1)
    if bad.any():
        log.warning(
            "%d date(s) have too few valid fit pixels for a %d-term fit and stay uncorrected",
            int(bad.sum()),
            n_terms,
        )
    return SpatialFit(coef / scale, weights, n_iter)


def _solve_dates(
    values: np.ndarray,
    valid: np.ndarray,
    weight: np.ndarray,
    b: np.ndarray,
    outer: np.ndarray,
) -> np.ndarray:
    """Weighted least squares of every date at once; NaN rows where a date is underdetermined."""
    n_terms = b.shape[1]
    w = valid * weight[None, :]
    normal = (w @ outer).reshape(-1, n_terms, n_terms)
    rhs = (w * values) @ b
    support = (w > 0).sum(axis=1)
    coef = np.full((values.shape[0], n_terms), np.nan)
    ok = support >= 3 * n_terms
    if ok.any():
        # pinv rather than solve: a basis column with no spread among the fit pixels
        # (e.g. flat terrain) gives a singular matrix, and its coefficient is then 0.
        coef[ok] = np.einsum("tij,tj->ti", np.linalg.pinv(normal[ok], rcond=1e-10), rhs[ok])
    return coef


def reference_value(field: np.ndarray, reference: tuple[int, int], radius: int = 0) -> np.ndarray:
    """NaN-median of `field` (..., y, x) over the reference window, per leading index.

    The window is (2 radius + 1)² pixels centred on `reference` (row, col), clipped at the
    edges: the reference area of the time series (`corrections.reference.reference_phase`).
    """
    y, x = reference
    window = field[..., max(y - radius, 0) : y + radius + 1, max(x - radius, 0) : x + radius + 1]
    flat = window.reshape(*window.shape[:-2], -1).astype(np.float64)
    out = np.full(flat.shape[:-1], np.nan)
    some = np.isfinite(flat).any(axis=-1)
    out[some] = np.nanmedian(flat[some], axis=-1)
    return out


def rereference_to_area(
    cube: np.ndarray, reference: tuple[int, int] | None, radius: int = 0
) -> np.ndarray:
    """`cube` (t, y, x) shifted per date so its median over the reference window is 0.

    Every correction ends with this (when given a reference), so its output is relative to
    the reference area exactly, whatever the correction did there (DESIGN §3). Returns
    `cube` itself, modified, so call it on an array the caller owns; None: unchanged.
    """
    if reference is not None:
        offset = np.nan_to_num(reference_value(cube, reference, radius))
        cube -= offset[:, None, None].astype(cube.dtype)
    return cube


def correct_ramp(
    displacement: np.ndarray,
    order: int = 1,
    fit_mask: np.ndarray | None = None,
    reference: tuple[int, int] | None = None,
    reference_radius: int = 0,
    robust: bool = True,
    max_fit_pixels: int = 100_000,
) -> tuple[np.ndarray, RampFit]:
    """Remove a per-date polynomial ramp from `displacement` (t, y, x) [m].

    The ramp of each date is fitted on `fit_mask` (y, x; default all pixels), robustly
    unless `robust` is False (module docstring), and subtracted from every pixel. With
    `reference` (row, col) and `reference_radius` (the time series' reference window) the
    removed ramp is zero on the reference area, so the result stays relative to it. NaN
    stays NaN. Returns (corrected cube, same dtype; `RampFit`).
    """
    _check_cube(displacement)
    basis = ramp_basis(displacement.shape[1:], order)
    fit = fit_per_date(displacement, basis, fit_mask, robust, max_fit_pixels)
    corrected = displacement.copy()
    coef = np.nan_to_num(fit.coefficients)
    for k in range(corrected.shape[0]):  # per date: no second cube in memory
        corrected[k] -= np.tensordot(coef[k], basis, axes=1).astype(corrected.dtype)
    rereference_to_area(corrected, reference, reference_radius)
    log.info(
        "ramp order %d fitted in %d iteration(s) on %d pixels (%.0f %% kept)",
        order,
        fit.n_iterations,
        int(np.isfinite(fit.weights).sum()),
        100 * float(np.nanmean(fit.weights > 0)) if np.isfinite(fit.weights).any() else 0.0,
    )
    return corrected, RampFit(fit.coefficients, fit.weights, order, fit.n_iterations)


def _check_cube(displacement: np.ndarray) -> None:
    if displacement.ndim != 3:
        raise ValueError(f"displacement must be (time, y, x), got shape {displacement.shape}")
