"""DEM error (topographic residual) from the perpendicular baselines, pixel by pixel.

A height error Δz of the DEM used to form the interferograms leaves, at each date t, a
LOS displacement-equivalent B⊥_t Δz / (R sin θ) with B⊥_t the perpendicular baseline of
date t relative to the first date, R the slant range and θ the incidence angle (Fattahi &
Amelung 2013, IEEE TGRS 51(7); MintPy `dem_error`, Yunjun et al. 2019, Comput. Geosci.
133, 104331). Per
pixel, the time series is fitted jointly by a temporal deformation model (a polynomial in
time, optionally periodic terms and steps at given dates) and that term:

    d(t) = Σ_k m_k f_k(t) + B⊥_t ε'        with  ε' = Δz / (R sin θ)

and B⊥_t ε' is removed. Joint estimation matters: the deformation is not zero, and a
baseline history that happens to correlate with time would otherwise pass deformation for
DEM error. Unmodelled deformation (a seasonal signal without `periods`, a step without
`step_years`) still leaks into ε' in proportion to its correlation with B⊥_t, so the model
should hold what the area does. MintPy's defaults are followed: a quadratic polynomial
(offset, velocity, acceleration), no periodic terms, no steps.

The design matrix is the same for every pixel (ε' absorbs the per-pixel geometry), so
pixels valid at every date are solved with one pseudo-inverse; pixels missing some dates go
through batched normal equations. The correction B⊥_t ε' does not depend on R; R only
converts ε' into metres of height. The estimate is relative to the reference area, like
the time series: what is fitted is Δz/(R sin θ) at the pixel minus that at the reference.

Sign: ε is the coefficient of B⊥_t / (R sin θ) in displacement positive towards the
satellite, B⊥ being the stack's `bperp` per date (MintPy's design column has the same
form); the simulator's DEM-error term follows the same definition.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mtinsar.corrections.ramp import rereference_to_area
from mtinsar.errors import InputError

log = logging.getLogger(__name__)

#: Slant range [m] used when the product gives none: Sentinel-1 IW spans about 800-950 km
#: from near to far range; this is the scene-centre value of a typical frame (and of the
#: simulator, `mtinsar.simulate.SLANT_RANGE_M`). It only scales the reported height error.
DEFAULT_SLANT_RANGE_M = 880_000.0
#: Normal-equation batches are limited to this many bytes.
_BATCH_BYTES = 64 * 2**20


class DemErrorConfig(BaseModel):
    """DEM error (topographic residual) correction (Fattahi & Amelung 2013)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    enabled: bool = Field(
        False,
        description="Estimate and remove the DEM-error term Bperp_t dz / (R sin inc) pixel by "
        "pixel. Off by default (MintPy has it on): deformation the model below does not "
        "describe (seasons, steps) leaks into the estimate, so turn it on together with the "
        "[model] terms the area needs.",
    )
    poly_order: int = Field(
        2,
        ge=1,
        le=3,
        description="Order of the polynomial in time of the deformation model fitted with the "
        "DEM error: 1 = offset + velocity, 2 = adds acceleration (MintPy default).",
    )
    periods: list[float] = Field(
        default_factory=list,
        description="Periods [years] of sine/cosine terms added to the deformation model, "
        "e.g. [1.0, 0.5] for annual and semi-annual motion. Default none.",
    )
    step_dates: list[str] = Field(
        default_factory=list,
        description='Dates "YYYY-MM-DD" of steps (e.g. earthquakes) in the deformation model. '
        "Default none.",
    )
    slant_range_m: float | None = Field(
        None,
        gt=0,
        description="Slant range [m] used to turn the fit into a height error. Unset: the "
        "stack's `slant_range` layer where the product has one, else 880 km (Sentinel-1 IW "
        "scene centre). It does not change the corrected time series.",
    )

    @field_validator("step_dates")
    @classmethod
    def _iso_dates(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                datetime.date.fromisoformat(value)
            except ValueError:
                raise ValueError(f"step date {value!r} is not YYYY-MM-DD") from None
        return values


@dataclass(frozen=True)
class DemErrorFit:
    """What `correct_dem_error` estimated.

    dem_error: (y, x) height error ε [m] relative to the reference area; NaN where it
        could not be estimated (too few valid dates, or geometry missing).
    model: (n_params, y, x) the deformation-model coefficients fitted with it, in the
        order of `deformation_design` [m, m/yr, m/yr², ...].
    residual_rms: (y, x) RMS over dates of the residual of the joint fit [m].
    """

    dem_error: np.ndarray
    model: np.ndarray
    residual_rms: np.ndarray


def deformation_design(
    t_years: np.ndarray,
    poly_order: int = 2,
    periods: Sequence[float] = (),
    step_years: Sequence[float] = (),
) -> np.ndarray:
    """Temporal deformation model (n_dates, n_params): 1, t, t²/2, ..., cos/sin, steps.

    Polynomial terms t^k / k! (so the coefficients are offset [m], velocity [m/yr],
    acceleration [m/yr²]); for each period P [yr] cos and sin of 2π t / P; for each step
    time s [yr] the Heaviside H(t - s) (1 from the first date at or after s).
    """
    t = np.asarray(t_years, dtype=np.float64)
    cols = [t**k / float(np.prod(np.arange(1, k + 1))) for k in range(poly_order + 1)]
    for period in periods:
        if not period > 0:
            raise ValueError(f"periods must be > 0 years, got {period}")
        cols += [np.cos(2 * np.pi * t / period), np.sin(2 * np.pi * t / period)]
    cols += [(t >= s).astype(np.float64) for s in step_years]
    return np.stack(cols, axis=1)


def correct_dem_error(
    displacement: np.ndarray,
    bperp: np.ndarray,
    incidence: np.ndarray,
    t_years: np.ndarray,
    slant_range: float | np.ndarray = DEFAULT_SLANT_RANGE_M,
    poly_order: int = 2,
    periods: Sequence[float] = (),
    step_years: Sequence[float] = (),
    reference: tuple[int, int] | None = None,
    reference_radius: int = 0,
) -> tuple[np.ndarray, DemErrorFit]:
    """Estimate the DEM error of each pixel and remove its term from `displacement`.

    displacement: (t, y, x) [m], + towards the satellite, relative to the first date.
    bperp: (t,) perpendicular baseline of each date relative to the first [m].
    incidence: (y, x) incidence angle [deg]. t_years: (t,) time since the first date [yr].
    slant_range: scalar or (y, x) [m]. The deformation model is `deformation_design`.
    Pixels with fewer valid dates than parameters + 2 keep their values and get NaN.
    With `reference` (row, col) and `reference_radius` the result is re-referenced to the
    reference area (`ramp.rereference_to_area`).
    Returns (corrected cube with the input's dtype, `DemErrorFit`).
    """
    if displacement.ndim != 3:
        raise ValueError(f"displacement must be (time, y, x), got shape {displacement.shape}")
    n_dates, ny, nx = displacement.shape
    bperp = np.asarray(bperp, dtype=np.float64)
    t_years = np.asarray(t_years, dtype=np.float64)
    if bperp.shape != (n_dates,) or not np.isfinite(bperp).all():
        raise InputError(
            f"the DEM-error correction needs one finite perpendicular baseline per date "
            f"({n_dates}), got {bperp.shape} with {int((~np.isfinite(bperp)).sum())} missing; "
            "check the stack's `bperp` (the product's baselines file) or disable "
            "dem_error.enabled"
        )
    if np.ptp(bperp) == 0:
        raise InputError(
            "all perpendicular baselines are equal, so a DEM error cannot be estimated; "
            "check the stack's `bperp` (a dummy baselines file?) or disable dem_error.enabled"
        )
    if np.shape(incidence) != (ny, nx):
        raise InputError(
            f"incidence grid {np.shape(incidence)} differs from the time series' {(ny, nx)}; "
            "the stack's `incidence` layer must be on the result grid"
        )
    design = np.column_stack([bperp, deformation_design(t_years, poly_order, periods, step_years)])
    n_par = design.shape[1]

    pinv = np.linalg.pinv(design)
    d = displacement.reshape(n_dates, -1)
    out = displacement.copy()
    flat = out.reshape(n_dates, -1)
    params = np.full((n_par, ny * nx), np.nan)
    rms = np.full(ny * nx, np.nan)
    chunk = max(1, _BATCH_BYTES // (8 * n_dates))
    for start in range(0, d.shape[1], chunk):  # pixel blocks bound the float64 copies
        sl = slice(start, start + chunk)
        p, r = _fit_block(d[:, sl].astype(np.float64), design, pinv)
        params[:, sl], rms[sl] = p, r
        ok = np.isfinite(p[0])
        flat[:, sl][:, ok] -= (bperp[:, None] * p[0][None, ok]).astype(out.dtype)
    rereference_to_area(out, reference, reference_radius)

    eps_prime = params[0]
    ok = np.isfinite(eps_prime)
    sin_inc = np.sin(np.deg2rad(np.asarray(incidence, dtype=np.float64))).reshape(-1)
    height_error = eps_prime * np.asarray(slant_range, dtype=np.float64).reshape(-1) * sin_inc
    log.info(
        "DEM error estimated for %d of %d pixels (|dz| median %.1f m)",
        int(ok.sum()),
        ok.size,
        float(np.nanmedian(np.abs(height_error))) if ok.any() else np.nan,
    )
    return out, DemErrorFit(
        dem_error=height_error.reshape(ny, nx),
        model=params[1:].reshape(n_par - 1, ny, nx),
        residual_rms=rms.reshape(ny, nx),
    )


def _fit_block(
    d: np.ndarray, design: np.ndarray, pinv: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Parameters (n_par, n_pix) and residual RMS (n_pix,) of pixels `d` (t, n_pix) [m].

    Pixels valid at every date share `pinv`; pixels missing some dates are solved on their
    valid dates; pixels with fewer than n_par + 2 valid dates get NaN.
    """
    n_dates, n_par = design.shape
    valid = np.isfinite(d)
    count = valid.sum(axis=0)
    params = np.full((n_par, d.shape[1]), np.nan)
    full = np.flatnonzero(count == n_dates)
    if full.size:
        params[:, full] = pinv @ d[:, full]
    partial = np.flatnonzero((count >= n_par + 2) & (count < n_dates))
    if partial.size:
        params[:, partial] = _solve_partial(design, d[:, partial], valid[:, partial])
    ok = np.isfinite(params[0])
    residual = np.where(valid & ok, d - design @ np.nan_to_num(params), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rms = np.where(ok, np.sqrt((residual**2).sum(axis=0) / count), np.nan)
    return params, rms


def _solve_partial(design: np.ndarray, d: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Least squares per pixel over its valid dates, in batches of normal equations."""
    n_par = design.shape[1]
    out = np.full((n_par, d.shape[1]), np.nan)
    outer = design[:, :, None] * design[:, None, :]  # (t, p, p)
    batch = max(1, _BATCH_BYTES // (8 * n_par * n_par))
    for start in range(0, d.shape[1], batch):
        sl = slice(start, start + batch)
        w = valid[:, sl].astype(np.float64)
        normal = np.einsum("tn,tij->nij", w, outer)
        rhs = np.einsum("tn,ti->ni", w * np.nan_to_num(d[:, sl].astype(np.float64)), design)
        # pinv: a pixel whose valid dates leave a column without support gets a
        # minimum-norm answer rather than an error for the whole batch.
        sol = np.einsum("nij,nj->ni", np.linalg.pinv(normal, rcond=1e-10), rhs)
        out[:, sl] = sol.T
    return out
