"""Time-series models fitted per pixel, with formal and bootstrap uncertainties.

The model of the displacement d [m] at time t, fitted to every pixel at once::

    d(t) = c + v τ + a τ²/2 + Σ_h [C_h cos(2π h y) + S_h sin(2π h y)]
           + Σ_s J_s H(t - t_s) + Σ_g O_g H(t - t_g)

τ = t - t_mid [yr], t_mid the middle of the time span, so `velocity` v is the rate at
mid-span (the mean rate over the span when acceleration is the only non-linear term) and
`acceleration` a is d²d/dt² [m/yr²]; y is decimal years since 2000-01-01, so the seasonal
phase is tied to the calendar; h = 1 (annual) and 2 (semi-annual); J_s are steps [m] at
given dates t_s (every date on or after t_s includes the step); O_g are free offsets after
network gaps (below). This is MintPy's `timeseries2velocity` model (Yunjun et al. 2019,
Comput. Geosci. 133) and the usual GNSS trajectory model (Bevis & Brown 2014, J. Geod. 88).

Uncertainty. The formal covariance is s² (GᵀG)⁻¹ with s² the residual variance of the fit
on n - p degrees of freedom. The residual, not the decorrelation noise propagated from the
pairs, must set it: the per-date nuisances (turbulent and stratified troposphere, ~5-10 mm a
date, and the DEM-error term) enter every pair consistently, so the network inversion passes
them through untouched and no pair-based variance sees them, yet they dominate the velocity
error. They are nearly independent between dates (weather decorrelates within a revisit),
so the residual measures them and least squares treats them as they are. Velocities are
relative to the reference pixel and so is the residual: the reference's own noise is
included. On simulated noise-only scenes this σ is calibrated: pooled over 8 scenes, 65 %
of pixels have |v| < σ (a t-distribution predicts 68 %), whereas the decorrelation noise
propagated from the pairs gives a σ ~13x smaller. It is optimistic when the noise is
correlated in time (unmodelled seasonal motion, long-lived atmosphere) and when a network
gap was bridged by NSBAS without a free offset there: the bridging offset is then taken as
known, and only 20-43 % of pixels fell within 1σ in simulation. Pass the gaps (`gaps`) so
that each gets a free offset O_g: the velocity is unchanged for NSBAS's linear constraint
and σ is honest again (66 % within 1σ, pooled).

Optionally σ is also estimated by bootstrap (Efron 1979, Ann. Stat. 7(1); Efron &
Tibshirani 1993, ch. 9): dates are resampled with replacement, the model refitted, and the
spread of the estimates taken, which does not assume the residuals have equal variance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from mtinsar.analysis.patterns import pattern_groups
from mtinsar.config import ModelConfig
from mtinsar.conventions import years_since
from mtinsar.errors import ConfigError

#: Origin of the seasonal terms' phase.
SEASONAL_ORIGIN = np.datetime64("2000-01-01")
#: A date whose residual RMS is below this is never flagged as noisy [m].
NOISY_EPOCH_FLOOR_M = 1e-4
#: Relative eigenvalue below which a normal matrix counts as singular.
_RCOND = 1e-10


@dataclass
class ModelFit:
    """Per-pixel fit of the time-series model; pixel axis last.

    names: parameter names (offset, velocity, acceleration, annual_cos, annual_sin,
        semi_annual_cos, semi_annual_sin, step_YYYY-MM-DD, gap_YYYY-MM-DD).
    params: (p, n_pix) estimates [m, m/yr, m/yr²]; NaN where not estimated (a gap offset
        where the pixel has no gap, every parameter where too few dates are valid).
    covariance: (p, p, n_pix) formal covariance.
    bootstrap_std: (p, n_pix) bootstrap standard deviations, or None.
    residual_rms: (n_pix,) RMS of the fit residual over the pixel's valid dates [m].
    date_sumsq, date_count: (n_dates,) sum of squared residuals [m²] and number of fitted
        pixels per date: add them over blocks and pass them to `noisy_dates`.
    date_rms: (n_dates,) RMS of the residual of each date over the fitted pixels [m].
    noisy_dates: (n_dates,) dates flagged by `noisy_dates` (this block's pixels only).
    design: (n_dates, p) the design matrix.
    """

    names: tuple[str, ...]
    params: np.ndarray
    covariance: np.ndarray
    bootstrap_std: np.ndarray | None
    residual_rms: np.ndarray
    date_sumsq: np.ndarray
    date_count: np.ndarray
    date_rms: np.ndarray
    noisy_dates: np.ndarray
    design: np.ndarray

    @property
    def std(self) -> np.ndarray:
        """(p, n_pix) formal standard deviations."""
        return np.sqrt(np.einsum("iik->ik", self.covariance))

    def get(self, name: str) -> np.ndarray:
        """Estimates of the parameter `name`, (n_pix,)."""
        return self.params[self.names.index(name)]

    def get_std(self, name: str) -> np.ndarray:
        """Formal standard deviation of the parameter `name`, (n_pix,)."""
        return self.std[self.names.index(name)]

    @property
    def velocity(self) -> np.ndarray:
        """Velocity [m/yr] (at mid-span), (n_pix,)."""
        return self.get("velocity")

    @property
    def velocity_std(self) -> np.ndarray:
        """Formal velocity standard deviation [m/yr], (n_pix,)."""
        return self.get_std("velocity")

    def amplitude(
        self, harmonic: Literal["annual", "semi_annual"] = "annual"
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(amplitude [m], its formal std [m], phase [rad]) of "annual" or "semi_annual".

        The term is amplitude · cos(2π h y - phase); the peak falls phase / (2π h) years
        after 1 January. The std is propagated to first order (poor for amplitudes below
        about twice their std, which are biased high).
        """
        i, j = self.names.index(f"{harmonic}_cos"), self.names.index(f"{harmonic}_sin")
        c, s = self.params[i], self.params[j]
        amp = np.hypot(c, s)
        cov = self.covariance
        with np.errstate(invalid="ignore", divide="ignore"):
            var = (c**2 * cov[i, i] + 2 * c * s * cov[i, j] + s**2 * cov[j, j]) / amp**2
        return amp, np.sqrt(var), np.arctan2(s, c)

    def predict(self) -> np.ndarray:
        """Model displacement at every date, (n_dates, n_pix) [m]; NaN where not fitted."""
        prediction = self.design @ np.nan_to_num(self.params)
        return np.where(np.isfinite(self.velocity), prediction, np.nan)


def smooth_columns(
    dates: np.ndarray, t: np.ndarray, config: ModelConfig
) -> tuple[list[np.ndarray], list[str]]:
    """The model's columns other than steps at `dates`, with time `t` [yr] from the origin
    the caller chooses: offset, velocity, [acceleration t²/2], [annual and semi-annual
    cos/sin, phased from `SEASONAL_ORIGIN`]; and their names."""
    cols, names = [np.ones_like(t), t], ["offset", "velocity"]
    if config.acceleration:
        cols.append(t**2 / 2)
        names.append("acceleration")
    y = years_since(dates, SEASONAL_ORIGIN)
    for h, name in ((1, "annual"), (2, "semi_annual")):
        if getattr(config, name):
            cols += [np.cos(2 * np.pi * h * y), np.sin(2 * np.pi * h * y)]
            names += [f"{name}_cos", f"{name}_sin"]
    return cols, names


def design_matrix(
    dates: np.ndarray, config: ModelConfig, gap_after: np.ndarray | None = None
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Design matrix G (n_dates, p) of the model and the parameter names.

    `gap_after` lists date indices i (1..n-1) with a free offset from date i on (the first
    date after a network gap). A configured step outside the time span raises ConfigError.
    """
    dates = np.asarray(dates, dtype="datetime64[D]")
    t = years_since(dates, dates[0])
    cols, names = smooth_columns(dates, t - (t[0] + t[-1]) / 2, config)
    step_starts = []
    for step in config.steps:
        first = int(np.searchsorted(dates, np.datetime64(step, "D")))
        if not 0 < first < dates.size:
            raise ConfigError(
                f"model.steps: {step} is outside the time series ({dates[0]}..{dates[-1]}); "
                "a step needs acquisitions before and after it: remove it or fix the date"
            )
        if first in step_starts:
            raise ConfigError(
                f"model.steps: {step} falls between the same two acquisitions as another "
                "step, so the two cannot be told apart; keep one of them"
            )
        step_starts.append(first)
        cols.append((np.arange(dates.size) >= first).astype(float))
        names.append(f"step_{step}")
    for first in [] if gap_after is None else np.unique(gap_after).tolist():
        if first in step_starts:  # the step's column already frees this offset
            continue
        cols.append((np.arange(dates.size) >= first).astype(float))
        names.append(f"gap_{dates[first]}")
    return np.column_stack(cols), tuple(names)


def fit_model(
    dates: np.ndarray,
    disp: np.ndarray,
    config: ModelConfig | None = None,
    gaps: np.ndarray | None = None,
    min_group_size: int = 8,
) -> ModelFit:
    """Least-squares fit of the time-series model to `disp` (n_dates, n_pix) [m] per pixel.

    `dates` (n_dates,) datetime64. NaN dates of a pixel are left out of its fit; a pixel
    needs more valid dates than parameters. `gaps`, optional, bool (n_dates-1,) or
    (n_dates-1, n_pix), marks intervals (dates[i], dates[i+1]) that no pair bridges (e.g.
    `SbasResult.gaps` of a min-norm or NSBAS inversion): each gets a free offset where
    marked and the pixel has data on both sides, so that σ accounts for not knowing it
    (module docstring).
    Pixels sharing a pattern of valid dates and gaps are solved with one factorisation when
    at least `min_group_size` share it; the rest by batched normal equations.
    """
    config = config or ModelConfig()
    disp = np.asarray(disp, dtype=float)
    n, k = disp.shape
    if len(dates) != n:
        raise ValueError(f"disp has {n} dates but dates has {len(dates)}")
    valid = np.isfinite(disp)
    # a gap only matters where the pixel has data on both sides of it
    before = np.maximum.accumulate(valid, axis=0)[:-1]
    after = np.maximum.accumulate(valid[::-1], axis=0)[::-1][1:]
    gap_mask = _gap_mask(gaps, n, k) & before & after
    g, names = design_matrix(dates, config, 1 + np.flatnonzero(gap_mask.any(axis=1)))
    active = _active_columns(names, dates, gap_mask)

    y = np.where(valid, disp, 0.0)
    w = valid.astype(float)
    groups = _groups(valid, active, min_group_size)
    x, ninv = _solve(g, y, w, active, groups)
    n_valid = valid.sum(axis=0)
    dof = n_valid - active.sum(axis=0)
    ok = np.isfinite(x).all(axis=0) & (dof > 0)
    x[:, ~ok] = np.nan
    residual = np.where(valid & ok, disp - g @ np.where(active, x, 0.0), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        rss = np.nansum(residual**2, axis=0)
        s2 = np.where(ok, rss / dof, np.nan)
        residual_rms = np.where(ok, np.sqrt(rss / n_valid), np.nan)
    both = active[:, None, :] & active[None, :, :]
    covariance = np.where(both, ninv * s2, np.nan)
    params = np.where(active, x, np.nan)

    sumsq = np.nansum(residual**2, axis=1)
    count = np.isfinite(residual).sum(axis=1)
    date_rms, noisy = noisy_dates(sumsq, count, config.noisy_epoch_factor)

    boot = None
    if config.bootstrap:
        boot = _bootstrap_std(g, y, valid, active, groups, config)
        boot[:, ~ok] = np.nan
    return ModelFit(names, params, covariance, boot, residual_rms, sumsq, count, date_rms, noisy, g)


def noisy_dates(
    sumsq: np.ndarray, count: np.ndarray, factor: float
) -> tuple[np.ndarray, np.ndarray]:
    """(RMS [m], noisy flag) of each date's model residual from its sum of squares and count.

    A date is noisy when its RMS exceeds `factor` times the median over dates (and
    `NOISY_EPOCH_FLOOR_M`): an epoch with strong troposphere or an unwrapping problem,
    in the spirit of LiCSBAS's per-epoch RMS screening (Morishita et al. 2020).
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        rms = np.sqrt(np.asarray(sumsq, dtype=float) / np.asarray(count))
    median = np.nanmedian(rms) if np.isfinite(rms).any() else np.nan
    with np.errstate(invalid="ignore"):
        return rms, rms > max(factor * median, NOISY_EPOCH_FLOOR_M)


def reference_index(dates: np.ndarray, reference_date: str | None) -> int:
    """Index of the temporal reference among `dates` (0 when `reference_date` is None)."""
    if reference_date is None:
        return 0
    dates = np.asarray(dates, dtype="datetime64[D]")
    target = np.datetime64(reference_date, "D")
    hit = np.flatnonzero(dates == target)
    if hit.size == 0:
        nearest = dates[int(np.argmin(np.abs((dates - target).astype(int))))]
        raise ConfigError(
            f"model.reference_date {reference_date} is not an acquisition date "
            f"({dates[0]}..{dates[-1]}); the nearest is {nearest}"
        )
    return int(hit[0])


def rereference(disp: np.ndarray, dates: np.ndarray, reference_date: str | None) -> np.ndarray:
    """Displacement (n_dates, ...) [m] relative to `reference_date` instead of the first date.

    The model's parameters other than the offset do not depend on the temporal reference.
    """
    i = reference_index(dates, reference_date)
    return disp - disp[i : i + 1]


def linear_velocity(t: np.ndarray, disp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares velocity of `disp` (n_dates, n_pix) [m] against time `t` (n_dates,) [yr].

    Returns (velocity, velocity_std) [m/yr]. The standard deviation is the formal one,
    sqrt(s² / Σ(t - t̄)²) with s² the residual variance on n - 2 degrees of freedom (the
    linear case of `fit_model`; see the module docstring for what it includes). Pixels with
    any NaN date get NaN.
    """
    t = np.asarray(t, dtype=float)
    n = t.size
    tc = t - t.mean()
    sxx = float(tc @ tc)
    mean = disp.mean(axis=0)
    velocity = tc @ disp / sxx
    residual = disp - mean - np.outer(tc, velocity)
    dof = max(n - 2, 1)
    std = np.sqrt((residual**2).sum(axis=0) / dof / sxx)
    return velocity, std


# --------------------------------------------------------------------------- internals


def _gap_mask(gaps: np.ndarray | None, n: int, k: int) -> np.ndarray:
    """Gaps as a bool (n-1, k) array."""
    if gaps is None:
        return np.zeros((n - 1, k), dtype=bool)
    gaps = np.asarray(gaps, dtype=bool)
    if gaps.ndim == 1:
        gaps = np.broadcast_to(gaps[:, None], (gaps.size, k))
    if gaps.shape != (n - 1, k):
        raise ValueError(f"gaps must be ({n - 1},) or ({n - 1}, {k}), got {gaps.shape}")
    return gaps


def _active_columns(names: tuple[str, ...], dates: np.ndarray, gap_mask: np.ndarray) -> np.ndarray:
    """(p, k) bool: which parameters each pixel estimates (gap offsets only at its gaps)."""
    dates = np.asarray(dates, dtype="datetime64[D]")
    k = gap_mask.shape[1]
    rows = []
    for name in names:
        if name.startswith("gap_"):
            first = int(np.searchsorted(dates, np.datetime64(name[4:], "D")))
            rows.append(gap_mask[first - 1])
        else:
            rows.append(np.ones(k, dtype=bool))
    return np.array(rows)


def _groups(
    valid: np.ndarray, active: np.ndarray, min_group_size: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """Pixels sharing a pattern of valid dates and active columns, in groups of at least
    `min_group_size`, and the pixels left over."""
    inverse, counts = pattern_groups(np.concatenate([valid, active], axis=0))
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(counts)[:-1]
    groups = [m for m in np.split(order, bounds) if m.size >= min_group_size]
    return groups, np.flatnonzero(counts[inverse] < min_group_size)


def _solve(
    g: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    active: np.ndarray,
    groups: tuple[list[np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least squares of every column of y: (x (p, k), (GᵀWG)⁻¹ (p, p, k)).

    w (n, k) weights (0 = left out), active (p, k) the columns each pixel uses: an inactive
    column is zeroed and its diagonal set to 1, which decouples it (estimate 0). `groups`
    (from `_groups`) share w and active within each group. Singular systems give NaN.
    """
    p, k = g.shape[1], y.shape[1]
    x = np.full((p, k), np.nan)
    ninv = np.full((p, p, k), np.nan)
    shared, rest = groups
    for members in shared:
        act = active[:, members[0]]
        ga = g * act
        normal = ga.T @ (w[:, members[0], None] * ga) + np.diag(~act)
        inv = _inverse(normal[None])[0]
        x[:, members] = inv @ (ga.T @ (w[:, members] * y[:, members]))
        ninv[:, :, members] = inv[:, :, None]
    if rest.size:
        outer = (g[:, :, None] * g[:, None, :]).reshape(g.shape[0], p * p)
        act = active[:, rest].T  # (r, p)
        normal = (w[:, rest].T @ outer).reshape(-1, p, p) * act[:, :, None] * act[:, None, :]
        normal[:, np.arange(p), np.arange(p)] += ~act
        inv = _inverse(normal)
        rhs = (g.T @ (w[:, rest] * y[:, rest])).T * act
        x[:, rest] = np.einsum("rij,rj->ir", inv, rhs)
        ninv[:, :, rest] = inv.transpose(1, 2, 0)
    return x, ninv


def _inverse(normal: np.ndarray) -> np.ndarray:
    """Inverse of symmetric (r, p, p) matrices; NaN where singular."""
    lam, vec = np.linalg.eigh(normal)
    ok = lam[:, :1] > _RCOND * lam[:, -1:]
    with np.errstate(divide="ignore"):
        inv = (vec / np.where(ok, lam, np.inf)[:, None, :]) @ vec.transpose(0, 2, 1)
    inv[~ok[:, 0]] = np.nan
    return inv


def _bootstrap_std(
    g: np.ndarray,
    y: np.ndarray,
    valid: np.ndarray,
    active: np.ndarray,
    groups: tuple[list[np.ndarray], np.ndarray],
    config: ModelConfig,
) -> np.ndarray:
    """Bootstrap std (p, k) of the parameters: dates resampled with replacement.

    Each replicate weighs every date by how often it was drawn; replicates whose draw leaves
    a parameter undetermined (e.g. no date after a step) are skipped for that pixel. Mean and
    variance accumulate on the fly (Welford), so memory does not grow with the replicates.
    """
    rng = np.random.default_rng(config.bootstrap_seed)
    n = g.shape[0]
    p, k = active.shape
    count = np.zeros((p, k))
    mean = np.zeros((p, k))
    m2 = np.zeros((p, k))
    for _ in range(config.bootstrap):
        draws = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
        x, _ = _solve(g, y, draws[:, None] * valid, active, groups)
        ok = np.isfinite(x) & active
        count += ok
        delta = np.where(ok, x - mean, 0.0)
        mean += np.where(ok, delta / np.maximum(count, 1), 0.0)
        m2 += np.where(ok, delta * (np.where(ok, x, 0.0) - mean), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count >= 2, np.sqrt(m2 / (count - 1)), np.nan)
