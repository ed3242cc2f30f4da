"""Synthetic Sentinel-1 scene with known truth (numerics only, no file I/O).

A scene is a stack of unwrapped interferograms over a fictional area, built from:

* a LiCSAR-like acquisition calendar and interferogram network,
* a deformation truth (subsidence bowls, uplift, seasonal, acceleration, a step),
* per-date nuisances: turbulent and stratified troposphere, DEM-error term,
* per-pair decorrelation noise, unwrapping no-data, constant pair offsets and optional
  unwrapping errors.

Conventions (DESIGN §3): displacement in metres along the line of sight, positive towards the
satellite; unwrapped phase positive for motion away from the satellite (LiCSAR/MintPy), i.e.
``unw = -(4 pi / wavelength) * displacement``. For pair (i, j)::

    unw = -(4 pi / wavelength) [(d_j + n_j) - (d_i + n_i)] + noise + offset (+ 2 pi k)

with d the deformation truth and n the per-date nuisance (truth variables `displacement`,
`nuisance`, both relative to the first date). The DEM-error part of n is
bperp_t * dz / (R sin inc) with bperp_t relative to the first date and dz = `dem_error`, so per
pair it is (bperp_j - bperp_i) dz / (R sin inc): the displacement-equivalent that a MintPy-style
DEM-error fit (Fattahi & Amelung 2013) attributes to a height error dz.

Every random draw comes from a generator seeded by ``(seed, stream[, pair])`` so the same
seed gives the same scene, switching one nuisance off leaves the others unchanged, and any
interferogram can be recomputed on its own, in any order.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import dask.array as da
import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import scipy.fft
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field, field_validator
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from mtinsar.conventions import SENTINEL1_WAVELENGTH, years_since
from mtinsar.errors import ConfigError
from mtinsar.simulate.datestack import DateStack

logger = logging.getLogger(__name__)

#: Slant range from the satellite to the scene centre [m], used by the DEM-error term.
SLANT_RANGE_M = 880_000.0
#: Satellite heading [deg clockwise from north] per orbit direction.
HEADING_DEG = {"ascending": -12.0, "descending": -168.0}
#: Incidence angle at near and far range [deg] (Sentinel-1 IW spans about 31-46 deg).
INCIDENCE_NEAR_DEG = 31.0
INCIDENCE_FAR_DEG = 46.0
#: Coherence model per land-cover class: (g0, ginf, tau [days]).
COHERENCE_URBAN = (0.90, 0.60, 1000.0)
COHERENCE_VEGETATION = (0.65, 0.05, 40.0)
#: Fraction of the land covered by low-coherence vegetation.
VEGETATION_FRACTION = 0.4
#: Value written instead of an exact 0.0 phase, since 0 is no-data in LiCSAR files [rad].
ZERO_PHASE_REPLACEMENT = np.float32(1e-6)

# Independent random streams (the second entry of every seed tuple).
_S_DATES, _S_NETWORK, _S_BPERP, _S_DEM, _S_COVER, _S_TEXTURE = 1, 2, 3, 4, 5, 6
_S_TURB, _S_STRAT, _S_DEMERR, _S_PAIRS, _S_UNWERR, _S_DEFO, _S_NOISE = 7, 8, 9, 10, 11, 12, 13
_S_RAMP = 14

#: Default fraction of the acquisitions before a `gap_days` gap (`gap_index`). Off the middle
#: date, where the step is; and across a gap only the slope within the two groups of dates
#: tells the velocity, whose noise std, relative to the fit over all dates, is about
#: sqrt(Σ(t - t̄)² / Σ within groups): ≈ 1.4 here against ≈ 2 for a gap at the middle.
GAP_POSITION = 0.2

_PRESETS: dict[str, dict[str, int]] = {
    "small": {"ny": 200, "nx": 250, "n_dates": 40},
    "medium": {"ny": 600, "nx": 800, "n_dates": 80},
    "large": {"ny": 1500, "nx": 2000, "n_dates": 150},
}
_NUISANCE_FLAGS = (
    "turbulence",
    "stratified",
    "dem_error",
    "decorrelation",
    "water",
    "field_event",
    "ramp",
)


class SceneConfig(BaseModel):
    """Parameters of a synthetic scene. Defaults give the ``small`` preset with all nuisances."""

    model_config = ConfigDict(extra="forbid")

    ny: int = Field(200, ge=16, description="Number of rows (latitude) [pixels]. Default 200.")
    nx: int = Field(250, ge=16, description="Number of columns (longitude) [pixels]. Default 250.")
    n_dates: int = Field(40, ge=5, description="Number of acquisitions. Default 40.")
    seed: int = Field(0, ge=0, description="Random seed; same seed, same scene. Default 0.")
    posting_deg: float = Field(
        0.001, gt=0, le=1, description="Grid spacing in EPSG:4326 [deg]. Default 0.001."
    )
    lon0: float = Field(
        -99.30,
        ge=-180,
        le=180,
        description="Longitude of the upper-left corner [deg]. Default -99.30.",
    )
    lat0: float = Field(
        19.60, ge=-90, le=90, description="Latitude of the upper-left corner [deg]. Default 19.60."
    )
    start_date: str = Field(
        "2019-01-04", description="First acquisition date, ISO YYYY-MM-DD. Default 2019-01-04."
    )
    orbit: Literal["ascending", "descending"] = Field(
        "ascending",
        description="Orbit direction (sets heading and near-range side). Default ascending.",
    )
    looks: int = Field(
        20, ge=1, description="Effective looks of the decorrelation phase-noise model. Default 20."
    )
    deformation: bool = Field(True, description="Include the deformation truth signal. Default on.")
    turbulence: bool = Field(True, description="Turbulent troposphere per date. Default on.")
    turbulence_std_m: float = Field(
        0.008, ge=0, description="Std of each date's turbulent delay [m]. Default 0.008."
    )
    stratified: bool = Field(
        True, description="Height-correlated troposphere per date. Default on."
    )
    stratified_std_m_per_km: float = Field(
        0.01,
        ge=0,
        description="Std of the per-date delay/height coefficient [m per km]. Default 0.01.",
    )
    ramp: bool = Field(
        False,
        description="Long-wavelength ramp per date (orbit/ionosphere residual): planar plus a "
        "weaker quadratic part. Default off.",
    )
    ramp_std_m: float = Field(
        0.01,
        ge=0,
        description="Std of each date's planar ramp coefficients, per half scene width [m]. "
        "Default 0.01.",
    )
    gap_days: int = Field(
        0,
        ge=0,
        description="A data gap of this many days, with no pair spanning it (e.g. snow "
        "cover), so the network splits in two (0 = none). Default 0.",
    )
    gap_position: float = Field(
        GAP_POSITION,
        gt=0,
        lt=1,
        description="Fraction of the acquisitions before the `gap_days` gap. The default "
        "keeps the gap off the step at the middle date: a step inside a gap is "
        "indistinguishable from the unknown offset across it (0.5 puts it there). Default 0.2.",
    )
    dem_error: bool = Field(True, description="DEM error (baseline-dependent term). Default on.")
    dem_error_std_m: float = Field(10.0, ge=0, description="Std of the DEM error [m]. Default 10.")
    decorrelation: bool = Field(
        True, description="Phase noise from per-pair coherence (Cramer-Rao). Default on."
    )
    unwrap_min_coherence: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="Pixels of a pair with coherence below this are no-data (only with "
        "decorrelation on) [0-1]. Default 0.2.",
    )
    water: bool = Field(True, description="A lake: no-data in every pair. Default on.")
    field_event: bool = Field(
        True,
        description="A field ploughed at the middle date: every pair spanning that date "
        "decorrelates there, so the field's dates split into two unbridged groups (only with "
        "decorrelation on). Default on.",
    )
    pair_offsets: bool = Field(
        True, description="Constant uniform(-pi, pi) phase per pair [rad]. Default on."
    )
    unwrap_errors: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Fraction of pairs with one patch off by +-2 pi (0 = off). Default 0.",
    )

    @field_validator("start_date")
    @classmethod
    def _iso_date(cls, value: str) -> str:
        try:
            _dt.date.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"start_date must be YYYY-MM-DD, got {value!r}") from exc
        return value

    @classmethod
    def preset(cls, name: Literal["small", "medium", "large"], **overrides: object) -> SceneConfig:
        """Named size: small 200x250 px / 40 dates, medium 600x800 / 80, large 1500x2000 / 150."""
        if name not in _PRESETS:
            raise ConfigError(f"unknown scene preset {name!r}; choose one of {sorted(_PRESETS)}")
        return cls(**{**_PRESETS[name], **overrides})

    @classmethod
    def noise_free(cls, **overrides: object) -> SceneConfig:
        """Deformation only: every nuisance and the lake off (pair offsets stay on)."""
        base: dict[str, object] = {flag: False for flag in _NUISANCE_FLAGS}
        base["unwrap_errors"] = 0.0
        return cls(**{**base, **overrides})


# --------------------------------------------------------------------------- random helpers


def _rng(seed: int, stream: int, *extra: int) -> np.random.Generator:
    """Generator for one independent stream of a scene."""
    return np.random.default_rng([seed, stream, *extra])


def power_law_field(
    rng: np.random.Generator, shape: tuple[int, int], beta: float, pad: float = 0.25
) -> np.ndarray:
    """Zero-mean, unit-std random field with isotropic power spectrum P(k) ~ k^-beta.

    Built by filtering white noise in the Fourier domain (Hanssen 2001, ch. 4, for the
    atmosphere: beta = 8/3). The field is generated on a grid `pad` larger and cropped so it is
    not periodic across the edges. Returns float32.
    """
    ny, nx = shape
    py = scipy.fft.next_fast_len(int(ny * (1 + pad)) + 1)
    px = scipy.fft.next_fast_len(int(nx * (1 + pad)) + 1, real=True)
    ky = scipy.fft.fftfreq(py)[:, None]
    kx = scipy.fft.rfftfreq(px)[None, :]
    k = np.hypot(ky, kx)
    k[0, 0] = np.inf  # no mean
    amp = k ** (-beta / 2.0)
    spec = rng.standard_normal(amp.shape) + 1j * rng.standard_normal(amp.shape)
    spec *= amp
    full = scipy.fft.irfft2(spec, s=(py, px), workers=-1)[:ny, :nx]
    full -= full.mean()
    std = full.std()
    return (full / std if std > 0 else full).astype(np.float32)


def coherence_phase_sigma(coherence: np.ndarray, looks: int) -> np.ndarray:
    """Interferometric phase std [rad] from coherence and looks (Cramer-Rao bound).

    sigma = sqrt((1 - g^2) / (2 L g^2)), Rodriguez & Martin (1992), IEE Proc. F 139(2).
    """
    g = np.asarray(coherence, dtype=np.float64)
    return np.sqrt((1.0 - g**2) / (2.0 * looks * g**2))


# --------------------------------------------------------------------------- dates & network


def acquisition_dates(config: SceneConfig) -> np.ndarray:
    """Acquisition dates (datetime64[D], sorted): every 12 days with a few 24-36-day gaps.

    About 10 % of the epochs are missing: ~n_dates/15 gaps, each dropping 1 or 2 acquisitions.
    """
    rng = _rng(config.seed, _S_DATES)
    n = config.n_dates
    steps = np.full(n - 1, 12, dtype=np.int64)
    n_gaps = min(max(1, round(n / 15)), max(0, n - 3))
    if n_gaps:
        where = rng.choice(np.arange(1, n - 1), size=n_gaps, replace=False)
        steps[where] = 12 * (1 + rng.integers(1, 3, size=n_gaps))
    if config.gap_days:
        steps[gap_index(n, config.gap_position) - 1] = config.gap_days
    offsets = np.concatenate([[0], np.cumsum(steps)])
    return np.datetime64(config.start_date, "D") + offsets.astype("timedelta64[D]")


def gap_index(n_dates: int, position: float = GAP_POSITION) -> int:
    """Index of the first date after the `gap_days` data gap (`SceneConfig.gap_position`)."""
    return min(max(round(position * n_dates), 1), n_dates - 1)


def licsar_network(dates: np.ndarray, seed: int) -> list[tuple[int, int]]:
    """LiCSAR-like pairs: each date to its next 3 or 4 dates, plus ~1-year pairs.

    Every 3rd date is also linked to the date closest to +365 days when one lies within
    +-24 days. Returns sorted (i, j) with i < j.
    """
    rng = _rng(seed, _S_NETWORK)
    n = len(dates)
    days = (dates - dates[0]).astype(np.int64)
    pairs: set[tuple[int, int]] = set()
    n_next = rng.integers(3, 5, size=n)
    for i in range(n - 1):
        for j in range(i + 1, min(n, i + 1 + int(n_next[i]))):
            pairs.add((i, j))
    for i in range(0, n, 3):
        j = int(np.argmin(np.abs(days - (days[i] + 365))))
        if j > i and abs(days[j] - days[i] - 365) <= 24:
            pairs.add((i, j))
    return sorted(pairs)


def network_is_connected(n_dates: int, pairs: list[tuple[int, int]]) -> bool:
    """Whether the pairs link all dates into one graph."""
    if not pairs:
        return n_dates <= 1
    ij = np.asarray(pairs)
    graph = coo_matrix((np.ones(len(ij)), (ij[:, 0], ij[:, 1])), shape=(n_dates, n_dates))
    n_comp, _ = connected_components(graph, directed=False)
    return n_comp == 1


def perpendicular_baselines(n_dates: int, seed: int) -> np.ndarray:
    """Per-date perpendicular baseline [m] w.r.t. the first date: N(0, 60 m), first = 0."""
    bperp = _rng(seed, _S_BPERP).normal(0.0, 60.0, size=n_dates)
    bperp[0] = 0.0
    return bperp


# --------------------------------------------------------------------------- geometry & ground


@dataclass(frozen=True)
class _Grid:
    """Pixel-centre coordinates and a length scale for placing features."""

    lat: np.ndarray  # (ny,) decreasing [deg]
    lon: np.ndarray  # (nx,) [deg]
    yy: np.ndarray  # (ny, 1) row index
    xx: np.ndarray  # (1, nx) column index
    scale: float  # pixels per unit of feature size (min(ny, nx))


def _grid(config: SceneConfig) -> _Grid:
    iy = np.arange(config.ny, dtype=np.float64)
    ix = np.arange(config.nx, dtype=np.float64)
    lat = config.lat0 - (iy + 0.5) * config.posting_deg
    lon = config.lon0 + (ix + 0.5) * config.posting_deg
    return _Grid(lat, lon, iy[:, None], ix[None, :], float(min(config.ny, config.nx)))


def _radius(grid: _Grid, u: float, v: float, ru: float, rv: float | None = None) -> np.ndarray:
    """Normalised elliptical distance to the point at fractions (u, v) of the scene width/height.

    ru, rv are radii in units of min(ny, nx).
    """
    rv = ru if rv is None else rv
    nx, ny = grid.xx.shape[1], grid.yy.shape[0]
    return np.hypot((grid.xx - u * nx) / (ru * grid.scale), (grid.yy - v * ny) / (rv * grid.scale))


def _bump(r: np.ndarray) -> np.ndarray:
    """Gaussian-like bump with compact support: (1 - r^2)^3 for r < 1, else exactly 0."""
    rc = np.minimum(r, 1.0)
    return (1.0 - rc**2) ** 3


def _geometry(config: SceneConfig, grid: _Grid) -> dict[str, np.ndarray]:
    """Incidence [deg] and LOS unit vector (ground -> satellite) per pixel.

    E = -sin(inc) cos(heading), N = sin(inc) sin(heading), U = cos(inc); near range is on the
    west for ascending (satellite west of the scene), on the east for descending.
    """
    frac = (grid.xx + 0.5) / config.nx
    if config.orbit == "descending":
        frac = 1.0 - frac
    inc1 = INCIDENCE_NEAR_DEG + (INCIDENCE_FAR_DEG - INCIDENCE_NEAR_DEG) * frac
    inc = np.broadcast_to(inc1, (config.ny, config.nx))
    heading = np.deg2rad(HEADING_DEG[config.orbit])
    sin_inc = np.sin(np.deg2rad(inc))
    return {
        "incidence": inc.astype(np.float32),
        "los_e": (-sin_inc * np.cos(heading)).astype(np.float32),
        "los_n": (sin_inc * np.sin(heading)).astype(np.float32),
        "los_u": np.cos(np.deg2rad(inc)).astype(np.float32),
    }


# Lake (fractions of width/height; radii in min(ny, nx)) and the preferred stable town.
_LAKE = (0.15, 0.62, 0.09, 0.06)
_TOWN = (0.12, 0.15, 0.12)
_CITY = (0.36, 0.40, 0.07)  # the centre of the main subsidence bowl is built-up
_FIELD = (0.80, 0.85, 0.08, 0.05)  # the ploughed field (vegetated land)


def _terrain(config: SceneConfig, grid: _Grid) -> tuple[np.ndarray, np.ndarray]:
    """Fractal hills 80-1500 m with a flat lake basin; returns (height [m], lake mask)."""
    rng = _rng(config.seed, _S_DEM)
    f = power_law_field(rng, (config.ny, config.nx), beta=3.6).astype(np.float64)
    h = 100.0 + 1400.0 * (f - f.min()) / (f.max() - f.min())
    u, v, ru, rv = _LAKE
    r = _radius(grid, u, v, ru, rv)
    lake_level = 80.0
    # Basin: flat at lake level inside the lake, blending into the hills by 2.5 radii.
    w = np.clip((2.5 - r) / 1.5, 0.0, 1.0)
    w = w * w * (3.0 - 2.0 * w)
    h = lake_level + (h - lake_level) * (1.0 - w)
    return h.astype(np.float32), r < 1.0


def _ploughed_field(grid: _Grid, water: np.ndarray) -> np.ndarray:
    """The ploughed field's pixels (always vegetated)."""
    u, v, ru, rv = _FIELD
    return (_radius(grid, u, v, ru, rv) < 1.0) & ~water


def _land_cover(
    config: SceneConfig, grid: _Grid, water: np.ndarray, ploughed: np.ndarray
) -> np.ndarray:
    """Coherent (urban/rock) land mask; the rest of the land is low-coherence vegetation."""
    f = power_law_field(_rng(config.seed, _S_COVER), (config.ny, config.nx), beta=3.0)
    vegetation = f > np.quantile(f, 1.0 - VEGETATION_FRACTION)
    for u, v, ru in (_TOWN, _CITY):
        vegetation &= _radius(grid, u, v, ru) >= 1.0
    return ~vegetation & ~water & ~ploughed


# --------------------------------------------------------------------------- deformation


@dataclass(frozen=True)
class _Deformation:
    """Deformation model as LOS fields [m, m/yr, m/yr^2] and its timing."""

    velocity: np.ndarray  # LOS rate [m/yr]
    acceleration: np.ndarray  # LOS [m/yr^2]
    seasonal: np.ndarray  # LOS annual amplitude [m]
    seasonal_phase: float  # [rad]
    step: np.ndarray  # LOS step [m]
    step_index: int  # first date index that includes the step
    moving: np.ndarray  # bool: any component non-zero


def _fault_weight(grid: _Grid, config: SceneConfig) -> np.ndarray:
    """Step footprint: hanging wall east of a fault segment, decaying away from the fault."""
    nx, ny, s = config.nx, config.ny, grid.scale
    p0 = np.array([0.50 * nx, 0.04 * ny])
    p1 = np.array([0.60 * nx, 0.34 * ny])
    seg = p1 - p0
    length = float(np.hypot(*seg))
    along = ((grid.xx - p0[0]) * seg[0] + (grid.yy - p0[1]) * seg[1]) / length**2
    # Signed distance, positive on the east side of the segment (pointing south).
    across = ((grid.xx - p0[0]) * seg[1] - (grid.yy - p0[1]) * seg[0]) / length
    beyond = np.maximum(np.maximum(-along, along - 1.0), 0.0) * length / (0.08 * s)
    return np.where(across > 0, np.exp(-across / (0.10 * s)), 0.0) * _bump(beyond)


def _deformation(
    config: SceneConfig, grid: _Grid, geom: dict[str, np.ndarray], n_dates: int
) -> _Deformation:
    """Bowls, uplift, seasonal, acceleration and step; positions/amplitudes jittered by seed."""
    rng = _rng(config.seed, _S_DEFO)
    shape = (config.ny, config.nx)

    def jit(u: float, v: float) -> tuple[float, float]:
        du, dv = rng.uniform(-0.02, 0.02, size=2)
        return u + du, v + dv

    def amp(a: float) -> float:
        return a * rng.uniform(0.85, 1.15)

    up_rate = amp(-0.12) * _bump(_radius(grid, *jit(0.36, 0.40), 0.16))  # main bowl
    up_rate = up_rate + amp(-0.05) * _bump(_radius(grid, *jit(0.74, 0.74), 0.11))
    uplift = _bump(_radius(grid, *jit(0.82, 0.24), 0.18))
    up_rate = up_rate + amp(0.025) * uplift
    east_rate = amp(0.006) * uplift
    seasonal_up = amp(0.01) * _bump(_radius(grid, *jit(0.30, 0.80), 0.14))
    accel_up = amp(-0.03) * _bump(_radius(grid, *jit(0.56, 0.58), 0.10))
    fault = _fault_weight(grid, config)
    step_up, step_east = amp(-0.03) * fault, amp(0.01) * fault
    seasonal_phase = float(rng.uniform(0, 2 * np.pi))

    e, u = geom["los_e"].astype(np.float64), geom["los_u"].astype(np.float64)
    on = 1.0 if config.deformation else 0.0
    fields = {
        "velocity": on * (e * east_rate + u * up_rate),
        "acceleration": on * u * accel_up,
        "seasonal": on * u * seasonal_up,
        "step": on * (e * step_east + u * step_up),
    }
    moving = np.zeros(shape, dtype=bool)
    for value in fields.values():
        moving |= np.broadcast_to(value != 0, shape)
    return _Deformation(
        **{k: np.broadcast_to(v, shape) for k, v in fields.items()},
        seasonal_phase=seasonal_phase,
        step_index=n_dates // 2,
        moving=moving,
    )


def _displacement_at(defo: _Deformation, t: float, index: int) -> np.ndarray:
    """LOS displacement [m] at t years after the first date (zero at t = 0)."""
    seasonal = math.cos(2 * math.pi * t + defo.seasonal_phase) - math.cos(defo.seasonal_phase)
    d = defo.velocity * t + 0.5 * defo.acceleration * t * t + defo.seasonal * seasonal
    if index >= defo.step_index:
        d = d + defo.step
    return d


def _ls_velocity(displacement: DateStack, t: np.ndarray) -> np.ndarray:
    """Least-squares slope [m/yr] of displacement(time, y, x) vs t [yr] (with intercept)."""
    tc = t - t.mean()
    w = tc / np.sum(tc**2)
    vel = np.zeros(displacement.shape[1:], dtype=np.float64)
    for k, wk in enumerate(w):  # per date: avoids a float64 copy of the whole cube
        vel += wk * displacement[k]
    return vel.astype(np.float32)


# --------------------------------------------------------------------------- nuisances


def _nuisance_dates(
    config: SceneConfig,
    height: np.ndarray,
    land: np.ndarray,
    dem_error: np.ndarray,
    incidence: np.ndarray,
    bperp: np.ndarray,
) -> Iterator[np.ndarray]:
    """Per-date nuisance [m, + towards satellite], relative to the first date: one float32
    (ny, nx) layer per date, in date order (the turbulence draws are one sequential stream).

    Sum of a turbulent delay (P(k) ~ k^-8/3, Hanssen 2001), a stratified term
    c_t (h - mean h) with c_t ~ N(0, std/1000) [m/m], and the DEM-error term
    bperp_t dz / (R sin inc), so that per pair (i, j) the DEM term is
    (bperp_j - bperp_i) dz / (R sin inc) with dz = `dem_error` [m], R = SLANT_RANGE_M.
    """
    n, shape = len(bperp), (config.ny, config.nx)
    strat = None
    if config.stratified:
        coef = _rng(config.seed, _S_STRAT).normal(0.0, config.stratified_std_m_per_km / 1000.0, n)
        strat = coef - coef[0], (height - height[land].mean()).astype(np.float64)
    dem = None
    if config.dem_error:
        dem = dem_error / (SLANT_RANGE_M * np.sin(np.deg2rad(incidence.astype(np.float64))))
    ramp = None
    if config.ramp:
        rcoef = _rng(config.seed, _S_RAMP).normal(0.0, config.ramp_std_m, size=(n, 5))
        rcoef[:, 2:] *= 0.3  # the quadratic part is weaker than the plane
        rcoef -= rcoef[0]  # relative to the first date, like every nuisance
        yn = np.linspace(-1.0, 1.0, shape[0])[:, None]
        xn = np.linspace(-1.0, 1.0, shape[1])[None, :]
        ramp = rcoef, np.stack(np.broadcast_arrays(xn, yn, xn * yn, xn**2 - 1 / 3, yn**2 - 1 / 3))
    turb_rng = None
    if config.turbulence and config.turbulence_std_m > 0:
        turb_rng, std = _rng(config.seed, _S_TURB), np.float32(config.turbulence_std_m)
    first = None
    for k in range(n):
        layer = np.zeros(shape, dtype=np.float32)
        if strat is not None:
            layer += (strat[0][k] * strat[1]).astype(np.float32)
        if dem is not None:
            layer += (bperp[k] * dem).astype(np.float32)
        if ramp is not None:
            layer += np.einsum("t,tyx->yx", ramp[0][k], ramp[1]).astype(np.float32)
        if turb_rng is not None:
            turb = power_law_field(turb_rng, shape, beta=8.0 / 3.0)
            if first is None:
                first = turb * std
            else:
                layer += turb * std - first
        yield layer


def _dem_error(config: SceneConfig, water: np.ndarray) -> np.ndarray:
    """Smooth-ish DEM error [m] (P(k) ~ k^-2), std dem_error_std_m, zero on water."""
    if not config.dem_error:
        return np.zeros((config.ny, config.nx), dtype=np.float32)
    f = power_law_field(_rng(config.seed, _S_DEMERR), (config.ny, config.nx), beta=2.0)
    return np.where(water, 0.0, f * config.dem_error_std_m).astype(np.float32)


# --------------------------------------------------------------------------- coherence


@dataclass(frozen=True)
class _CoherenceModel:
    """Per-pixel exponential coherence decay g = (g0 - ginf) exp(-dt / tau) + ginf."""

    g0: np.ndarray
    ginf: np.ndarray
    tau: np.ndarray  # [days]
    texture: np.ndarray  # per-pixel factor in [0.92, 1]
    pair_factor: np.ndarray  # per-pair factor in [0.9, 1]
    pair_days: np.ndarray  # per-pair temporal baseline [days]
    ploughed: np.ndarray  # bool: pixels ploughed at the event date
    spans_event: np.ndarray  # bool per pair: the pair spans the ploughing date

    def coherence(self, k: int) -> np.ndarray:
        """True coherence of pair k (float64, 0..1)."""
        decay = np.exp(-self.pair_days[k] / self.tau)
        g0 = np.where(self.ploughed, self.ginf, self.g0) if self.spans_event[k] else self.g0
        g = ((g0 - self.ginf) * decay + self.ginf) * self.texture * self.pair_factor[k]
        return np.clip(g, 1.0 / 255.0, 1.0)


def _coherence_model(
    config: SceneConfig,
    coherent: np.ndarray,
    ploughed: np.ndarray,
    dates: np.ndarray,
    pairs: list[tuple[int, int]],
) -> _CoherenceModel:
    def per_class(urban: float, vegetation: float) -> np.ndarray:
        return np.where(coherent, urban, vegetation)

    (ug0, uginf, utau), (vg0, vginf, vtau) = COHERENCE_URBAN, COHERENCE_VEGETATION
    tex = power_law_field(_rng(config.seed, _S_TEXTURE), coherent.shape, beta=3.0)
    tex = 1.0 - 0.08 * (tex - tex.min()) / max(float(tex.max() - tex.min()), 1e-12)
    days = np.array([(dates[j] - dates[i]).astype(np.int64) for i, j in pairs], dtype=np.float64)
    factor = _rng(config.seed, _S_PAIRS).uniform(0.9, 1.0, size=len(pairs))
    event = _field_event_index(len(dates))
    return _CoherenceModel(
        g0=per_class(ug0, vg0),
        ginf=per_class(uginf, vginf),
        tau=per_class(utau, vtau),
        texture=tex.astype(np.float64),
        pair_factor=factor,
        pair_days=days,
        ploughed=ploughed if config.field_event else np.zeros_like(ploughed),
        spans_event=np.array([i < event <= j for i, j in pairs]),
    )


def _field_event_index(n_dates: int) -> int:
    """Index of the first date after the field was ploughed."""
    return n_dates // 2


# --------------------------------------------------------------------------- reference & errors


def _reference_pixel(coherent: np.ndarray, moving: np.ndarray) -> tuple[int, int]:
    """Pixel deepest inside the largest stable, coherent area (away from the edges)."""
    ok = coherent & ~moving
    ok[[0, -1], :] = False
    ok[:, [0, -1]] = False
    if not ok.any():
        ok = coherent.copy()
    dist = ndimage.distance_transform_edt(ok)
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return int(y), int(x)


@dataclass(frozen=True)
class UnwrapErrorPatch:
    """An elliptical patch of one pair shifted by cycles * 2 pi [rad]."""

    pair: int
    cycles: int
    center_y: int
    center_x: int
    radius_y: int
    radius_x: int

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        """Boolean mask of the patch on a (ny, nx) grid."""
        yy = np.arange(shape[0])[:, None]
        xx = np.arange(shape[1])[None, :]
        r2 = ((yy - self.center_y) / self.radius_y) ** 2 + (
            (xx - self.center_x) / self.radius_x
        ) ** 2
        return r2 <= 1.0


def _unwrap_error_patches(
    config: SceneConfig, n_pairs: int, water: np.ndarray, ref: tuple[int, int]
) -> list[UnwrapErrorPatch]:
    """Pick round(fraction * n_pairs) pairs and a land patch (tens of px) for each."""
    n_err = round(config.unwrap_errors * n_pairs)
    if n_err == 0:
        return []
    rng = _rng(config.seed, _S_UNWERR)
    ny, nx = water.shape
    s = min(ny, nx)
    patches = []
    for k in sorted(rng.choice(n_pairs, size=n_err, replace=False).tolist()):
        cycles = int(rng.choice([-1, 1]))
        for _ in range(100):  # keep the patch on land, inside the image, off the reference
            ry = max(3, int(rng.uniform(0.05, 0.12) * s))
            rx = max(3, int(rng.uniform(0.05, 0.12) * s))
            cy = int(rng.integers(ry, max(ry + 1, ny - ry)))
            cx = int(rng.integers(rx, max(rx + 1, nx - rx)))
            patch = UnwrapErrorPatch(k, cycles, cy, cx, ry, rx)
            m = patch.mask(water.shape)
            if not (m & water).any() and not m[ref]:
                break
        patches.append(patch)
    return patches


# --------------------------------------------------------------------------- scene


@dataclass
class _PairModel:
    """What interferogram(k) needs beyond the truth Dataset."""

    coherence: _CoherenceModel
    offsets: np.ndarray  # per-pair constant phase [rad]
    patches: dict[int, UnwrapErrorPatch]
    water: np.ndarray
    displacement: DateStack  # truth per date [m]
    nuisance: DateStack  # [m]


@dataclass(eq=False)  # holds arrays: identity, not element-wise, equality
class Scene:
    """A simulated scene: calendar, network, truth, and interferograms computed on demand."""

    config: SceneConfig
    dates: np.ndarray
    pairs: list[tuple[int, int]]
    bperp_dates: np.ndarray
    truth: xr.Dataset
    _model: _PairModel = field(repr=False)

    @property
    def wavelength(self) -> float:
        """Radar wavelength [m]."""
        return SENTINEL1_WAVELENGTH

    def pair_names(self) -> list[str]:
        """Pair names "YYYYMMDD_YYYYMMDD" (earlier date first)."""
        ymd = [str(d).replace("-", "") for d in self.dates.astype("datetime64[D]")]
        return [f"{ymd[i]}_{ymd[j]}" for i, j in self.pairs]

    def pair_bperp(self) -> np.ndarray:
        """Perpendicular baseline of each pair, bperp[sec] - bperp[ref] [m]."""
        ij = np.asarray(self.pairs)
        return self.bperp_dates[ij[:, 1]] - self.bperp_dates[ij[:, 0]]

    def coherence(self, k: int) -> np.ndarray:
        """True coherence of pair k (float32, NaN on water)."""
        g = self._model.coherence.coherence(k).astype(np.float32)
        g[self._model.water] = np.nan
        return g

    def interferogram(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(unw [rad] float32, coh float32) of pair k, NaN = no data; deterministic per (seed, k).

        unw = -(4 pi / wavelength) [(d_j + n_j) - (d_i + n_i)] + noise + offset (+ 2 pi cycles).
        """
        cfg, model = self.config, self._model
        i, j = self.pairs[k]
        disp, nuis = model.displacement, model.nuisance
        los = (disp[j].astype(np.float64) + nuis[j]) - (disp[i].astype(np.float64) + nuis[i])
        phase = (-4.0 * np.pi / SENTINEL1_WAVELENGTH) * los
        g = model.coherence.coherence(k)
        invalid = model.water.copy()
        if cfg.decorrelation:
            noise = _rng(cfg.seed, _S_NOISE, k).standard_normal(g.shape, dtype=np.float32)
            phase += noise * coherence_phase_sigma(g, cfg.looks)
            invalid |= g < cfg.unwrap_min_coherence
        phase += model.offsets[k]
        patch = model.patches.get(k)
        if patch is not None:
            phase[patch.mask(g.shape)] += 2.0 * np.pi * patch.cycles
        unw = phase.astype(np.float32)
        unw[unw == 0.0] = ZERO_PHASE_REPLACEMENT  # 0 means no-data in LiCSAR files
        unw[invalid] = np.nan
        coh = g.astype(np.float32)
        coh[model.water] = np.nan
        return unw, coh

    def to_ifgstack(self) -> xr.Dataset:
        """All pairs in memory as an IfgStack (DESIGN §3); meant for small scenes."""
        n, (ny, nx) = len(self.pairs), self.truth["height"].shape
        gib = 2 * n * ny * nx * 4 / 2**30
        if gib > 2:
            logger.warning("to_ifgstack holds %.1f GiB in memory; stream interferogram(k)", gib)
        unw = np.empty((n, ny, nx), dtype=np.float32)
        coh = np.empty((n, ny, nx), dtype=np.float32)
        for k in range(n):
            unw[k], coh[k] = self.interferogram(k)
        ij = np.asarray(self.pairs)
        t = self.truth
        ds = xr.Dataset(
            {
                "unw": (("pair", "y", "x"), unw, {"units": "rad"}),
                "coh": (("pair", "y", "x"), coh, {"units": "1"}),
                "bperp": ("pair", self.pair_bperp().astype(np.float32), {"units": "m"}),
                **{v: t[v].reset_coords(drop=True) for v in _STACK_GEOMETRY},
            },
            coords={
                "pair": ("pair", self.pair_names()),
                "ref_date": ("pair", self.dates[ij[:, 0]].astype("datetime64[ns]")),
                "sec_date": ("pair", self.dates[ij[:, 1]].astype("datetime64[ns]")),
                "y": t["y"].values,
                "x": t["x"].values,
            },
            attrs={
                "wavelength": SENTINEL1_WAVELENGTH,
                "platform": "Sentinel-1",
                "orbit_direction": self.config.orbit,
                "track": TRACK[self.config.orbit],
                "processor": "mtinsar.simulate",
            },
        )
        return ds.rio.write_crs("EPSG:4326", inplace=True)  # inplace: no copy of the cubes


_STACK_GEOMETRY = ("height", "incidence", "los_e", "los_n", "los_u", "water")
#: Relative orbit (track) number per orbit direction of the fictional frame.
TRACK = {"ascending": 5, "descending": 12}


def simulate_scene(config: SceneConfig, spill_dir: Path | None = None) -> Scene:
    """Build the synthetic scene (truth and per-date fields; interferograms stay lazy).

    The per-date truth cubes (displacement, nuisance) are built date by date; with
    `spill_dir` (an existing folder, kept as long as the scene is used) they go to raw files
    there instead of memory, and the scene's truth holds them as dask arrays: what a large
    scene needs (`SceneConfig.preset('large')`: 1.8 GB per cube). Same values either way.
    """
    grid = _grid(config)
    dates = acquisition_dates(config)
    pairs = licsar_network(dates, config.seed)
    if config.gap_days:
        gap = gap_index(len(dates), config.gap_position)
        pairs = [(i, j) for i, j in pairs if not i < gap <= j]
    bperp = perpendicular_baselines(len(dates), config.seed)
    t_years = years_since(dates, dates[0])
    logger.debug(
        "scene: %d dates, %d pairs, %dx%d px", len(dates), len(pairs), config.ny, config.nx
    )

    geom = _geometry(config, grid)
    height, lake = _terrain(config, grid)
    water = lake if config.water else np.zeros_like(lake)
    ploughed = _ploughed_field(grid, water)
    coherent = _land_cover(config, grid, water, ploughed)
    defo = _deformation(config, grid, geom, len(dates))

    shape, n_dates = (config.ny, config.nx), len(dates)
    cube_gib = 2 * n_dates * config.ny * config.nx * 4 / 2**30
    if spill_dir is None and cube_gib > 2:
        logger.warning("the truth cubes hold %.1f GiB in memory; pass spill_dir", cube_gib)
    spill = (lambda name: None) if spill_dir is None else (lambda name: Path(spill_dir) / name)
    displacement = DateStack(n_dates, shape, spill("displacement.f32"))
    for k, t in enumerate(t_years):
        displacement[k] = _displacement_at(defo, float(t), k)
    dem_err = _dem_error(config, water)
    nuisance = DateStack(n_dates, shape, spill("nuisance.f32"))
    layers = _nuisance_dates(config, height, ~water, dem_err, geom["incidence"], bperp)
    for k, layer in enumerate(layers):
        nuisance[k] = layer

    coh_model = _coherence_model(config, coherent, ploughed, dates, pairs)
    mean_coh = np.zeros((config.ny, config.nx), dtype=np.float64)
    for k in range(len(pairs)):
        mean_coh += coh_model.coherence(k)
    mean_coh = (mean_coh / len(pairs)).astype(np.float32)
    mean_coh[water] = np.nan

    ref = _reference_pixel(coherent, defo.moving)
    patches = _unwrap_error_patches(config, len(pairs), water, ref)
    offsets = _rng(config.seed, _S_PAIRS, 1).uniform(-np.pi, np.pi, size=len(pairs))
    if not config.pair_offsets:
        offsets[:] = 0.0

    scene_fields = {
        "displacement": displacement.array(),
        "nuisance": nuisance.array(),
        "velocity": _ls_velocity(displacement, t_years),
        "dem_error": dem_err,
        "height": height,
        **geom,
        "coherent": coherent,
        "water": water,
        "ploughed": coh_model.ploughed,
        "mean_coherence": mean_coh,
    }
    truth = _truth_dataset(config, grid, dates, bperp, scene_fields, ref, pairs, patches, defo)
    patch_of = {p.pair: p for p in patches}
    model = _PairModel(coh_model, offsets, patch_of, water, displacement, nuisance)
    return Scene(config, dates, pairs, bperp, truth, model)


_UNITS = {
    "displacement": "m",
    "nuisance": "m",
    "velocity": "m/yr",
    "dem_error": "m",
    "height": "m",
    "incidence": "deg",
    "los_e": "1",
    "los_n": "1",
    "los_u": "1",
    "mean_coherence": "1",
}


def _truth_dataset(
    config: SceneConfig,
    grid: _Grid,
    dates: np.ndarray,
    bperp: np.ndarray,
    fields: dict[str, np.ndarray | da.Array],
    ref: tuple[int, int],
    pairs: list[tuple[int, int]],
    patches: list[UnwrapErrorPatch],
    defo: _Deformation,
) -> xr.Dataset:
    """Assemble the truth Dataset (dims time, y, x; EPSG:4326)."""
    data_vars = {}
    for name, arr in fields.items():
        dims = ("time", "y", "x") if arr.ndim == 3 else ("y", "x")
        attrs = {"units": _UNITS[name]} if name in _UNITS else {}
        data = arr if isinstance(arr, da.Array) else np.ascontiguousarray(arr)
        data_vars[name] = (dims, data, attrs)
    data_vars["bperp"] = ("time", bperp, {"units": "m"})
    ymd = [str(d).replace("-", "") for d in dates]
    errors = [
        {
            "pair": f"{ymd[pairs[p.pair][0]]}_{ymd[pairs[p.pair][1]]}",
            "index": p.pair,
            "cycles": p.cycles,
            "center_y": p.center_y,
            "center_x": p.center_x,
            "radius_y": p.radius_y,
            "radius_x": p.radius_x,
        }
        for p in patches
    ]
    ds = xr.Dataset(
        data_vars,
        coords={"time": dates.astype("datetime64[ns]"), "y": grid.lat, "x": grid.lon},
        attrs={
            "ref_y": ref[0],
            "ref_x": ref[1],
            "ref_lon": float(grid.lon[ref[1]]),
            "ref_lat": float(grid.lat[ref[0]]),
            "wavelength": SENTINEL1_WAVELENGTH,
            "looks": config.looks,
            "slant_range_m": SLANT_RANGE_M,
            "orbit_direction": config.orbit,
            "heading": HEADING_DEG[config.orbit],
            "config": config.model_dump_json(),
            "unwrap_error_pairs": json.dumps(errors),
            "step_date": str(dates[defo.step_index]),
            "field_event_date": str(dates[_field_event_index(len(dates))]),
            "sign_convention": "LOS displacement, positive towards the satellite",
        },
    )
    return ds.rio.write_crs("EPSG:4326", inplace=True)  # inplace: no copy of the cubes
