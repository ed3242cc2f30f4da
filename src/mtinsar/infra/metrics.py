"""Per-segment stability metrics and risk classes (numerics only, no file I/O).

Inputs are the reliable pixels of each segment (from `segments.assign_pixels`): their LOS
velocity [m/yr], displacement series [m] and position (chainage along the line [m], or
east/north for polygons). Every reduction is vectorised over (segment, pixel) pairs.

Metrics (LOS, positive towards the satellite; displayed in mm as the column names say):
* median and extreme (largest |v|) velocity, number of reliable pixels;
* differential settlement: slope of a least-squares fit of velocity against chainage, in
  mm/yr per 100 m (for a polygon, the magnitude of a plane fit's gradient);
* angular distortion over the monitoring period: slope of the displacement accumulated
  between the first and last dates against chainage [rad] (Skempton & MacDonald 1956:
  differential settlement between two points over their distance);
* acceleration: quadratic term of a fit of the segment's median series [mm/yr^2], and a
  change-point test: the velocity of the last `recent_dates` dates against the velocity of
  the earlier dates, Welch-style t statistic on the two slope estimates (independent
  residuals assumed; atmosphere and seasonal motion make it optimistic, hence the minimum
  change also required).

Risk class (0 stable, 1 low, 2 moderate, 3 high; -1 no data) is the worst of two
criteria, each extrapolated at the current rate `horizon_years` past the last date:
* settlement: the significant part of the median velocity, max(|v| - z sigma_v, 0) with
  sigma_v the segment's median formal velocity std, times (monitoring span + horizon);
  thresholds after Rankin (1988). Subtracting z sigma_v keeps atmospheric noise on stable
  ground from being read as settlement;
* angular distortion: observed + |differential settlement| x horizon; thresholds after
  Bjerrum (1963) and Skempton & MacDonald (1956), consistent with the damage categories of
  Boscardin & Cording (1989) at zero horizontal strain.
A significant acceleration raises a non-stable class by one.

References
* Skempton, A. W., MacDonald, D. H. (1956). The allowable settlements of buildings.
  Proc. Inst. Civil Engineers 5(6), 727-768.
* Bjerrum, L. (1963). Allowable settlement of structures. Proc. 3rd European Conf. Soil
  Mech. Found. Eng., Wiesbaden, vol. 2, 135-137.
* Rankin, W. J. (1988). Ground movements resulting from urban tunnelling: predictions and
  effects. Geol. Soc. London, Eng. Geol. Spec. Publ. 5, 79-92.
* Boscardin, M. D., Cording, E. J. (1989). Building response to excavation-induced
  settlement. J. Geotech. Eng. 115(1), 1-21.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import Field, ValidationError, field_validator
from scipy import stats

from mtinsar.config import Section
from mtinsar.conventions import years_since
from mtinsar.errors import ConfigError

#: Risk class -> label (-1: fewer reliable pixels than `min_pixels`).
RISK_LABELS = {-1: "no data", 0: "stable", 1: "low", 2: "moderate", 3: "high"}
#: Classes from which a segment is reported "at risk".
AT_RISK_FROM = 2


class InfraConfig(Section):
    """Infrastructure stability: segmentation, pixel selection, metrics and risk thresholds."""

    segment_length: float = Field(
        100.0, gt=0, description="Length [m] lines are cut into (polygons stay whole)."
    )
    buffer: float = Field(
        20.0,
        ge=0,
        description="Half-width [m] around a segment; pixels whose cell intersects it count.",
    )
    lines_crs: str | None = Field(
        None,
        description="CRS of the lines file when it declares none (a Shapefile without .prj), "
        "e.g. 'EPSG:32633'. Unset: such a file is refused.",
    )
    use_mask: bool = Field(
        True, description="Use only the result's reliable pixels (its `mask` layer)."
    )
    min_pixels: int = Field(
        2,
        ge=2,
        description="Segments with fewer reliable pixels get no metrics ('no data'). 2, the "
        "fewest that give a gradient, suits grids of ~100 m pixels where a 100 m segment "
        "touches 2-4 cells; raise it for denser (persistent-scatterer) results.",
    )
    horizon_years: float = Field(
        5.0,
        ge=0,
        description="Years past the last date over which the current rates are extrapolated "
        "before comparison with the damage thresholds (0: what was observed only).",
    )
    settlement_thresholds: tuple[float, float, float] = Field(
        (0.010, 0.050, 0.075),
        description="Settlement [m] from which a segment is low / moderate / high risk "
        "(Rankin 1988: <10 mm negligible, 10-50 slight, 50-75 moderate, >75 high).",
    )
    distortion_thresholds: tuple[float, float, float] = Field(
        (1 / 500, 1 / 300, 1 / 150),
        description="Angular distortion [rad] from which a segment is low / moderate / high "
        "risk: 1/500 safe limit against cracking (Bjerrum 1963), 1/300 cracking of panel "
        "walls, 1/150 structural damage (Skempton & MacDonald 1956).",
    )
    significance_z: float = Field(
        2.0,
        ge=0,
        description="Velocity counted as settlement is |median velocity| minus this many "
        "formal velocity stds (2: about 95 % one-sided confidence; 0: ignore uncertainty).",
    )
    recent_dates: int = Field(
        10,
        ge=3,
        description="Dates at the end of the series tested for a change of velocity (10 "
        "Sentinel-1 dates: 2-4 months; fewer make the recent slope too noisy to test).",
    )
    change_alpha: float = Field(
        0.01, gt=0, lt=1, description="Significance level of the change-point t-test."
    )
    min_velocity_change: float = Field(
        0.005,
        ge=0,
        description="Smallest speed-up [m/yr] of |velocity| (recent vs earlier) reported as "
        "acceleration, whatever the test says.",
    )
    n_worst: int = Field(5, ge=1, description="Segments whose time series the report shows.")

    @field_validator("settlement_thresholds", "distortion_thresholds")
    @classmethod
    def _ascending(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if not (0 < v[0] < v[1] < v[2]):
            raise ValueError("thresholds must be positive and strictly increasing")
        return v


def infra_config(**overrides: object) -> InfraConfig:
    """The defaults with `overrides` (None values ignored); ConfigError naming a bad key."""
    try:
        return InfraConfig(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise ConfigError(
            f"infra.{key}: {err['msg']}; see `InfraConfig` for each setting's range"
        ) from exc


@dataclass(frozen=True)
class SegmentMetrics:
    """Per-segment metrics table and the median displacement series behind it."""

    table: pd.DataFrame  # one row per segment, in segment order; columns in `COLUMNS`
    series: np.ndarray  # (segment, time) median displacement [m] (NaN: no data)


#: Metric columns and their meaning (units in the names).
COLUMNS = {
    "n_pixels": "reliable pixels in the buffer",
    "v_median_mm_yr": "median LOS velocity [mm/yr]",
    "v_extreme_mm_yr": "LOS velocity of largest magnitude [mm/yr]",
    "diff_settlement_mm_yr_100m": "velocity gradient along the line [mm/yr per 100 m]",
    "angular_distortion": "displacement gradient over the monitoring period [rad]",
    "displacement_mm": "median displacement accumulated over the period [mm]",
    "acceleration_mm_yr2": "quadratic term of the median series [mm/yr^2]",
    "v_early_mm_yr": "velocity before the recent dates [mm/yr]",
    "v_recent_mm_yr": "velocity over the recent dates [mm/yr]",
    "change_p_value": "two-sided p-value of recent vs earlier velocity",
    "accelerating": "significant speed-up",
    "v_std_mm_yr": "median formal velocity std of the pixels [mm/yr]",
    "projected_settlement_mm": "significant settlement over the period + horizon [mm]",
    "projected_distortion": "angular distortion extrapolated to the horizon [rad]",
    "risk_class": "-1 no data, 0 stable, 1 low, 2 moderate, 3 high",
    "risk": "risk label",
}


def segment_metrics(
    segment: np.ndarray,
    coords: np.ndarray,
    velocity: np.ndarray,
    velocity_std: np.ndarray,
    displacement: np.ndarray,
    dates: np.ndarray,
    is_line: np.ndarray,
    config: InfraConfig,
) -> SegmentMetrics:
    """Metrics of every segment from its pixels.

    segment: (n,) segment index of each (segment, pixel) entry; coords: (n, 2) chainage and
    0 for line segments, east/north [m] for polygons; velocity, velocity_std: (n,) [m/yr]
    (std NaN or 0 where unknown); displacement: (time, n) [m]; dates: (time,) datetime64;
    is_line: (n_segments,) bool.
    Entries with a non-finite velocity or series are ignored.
    """
    n_seg = len(is_line)
    ok = np.isfinite(velocity) & np.isfinite(displacement).all(axis=0)
    segment, coords = segment[ok], coords[ok]
    velocity, displacement = velocity[ok], displacement[:, ok]
    v_std = pd.Series(np.nan_to_num(velocity_std[ok])).groupby(segment).median()
    v_std = v_std.reindex(range(n_seg)).to_numpy()
    counts = np.bincount(segment, minlength=n_seg)
    enough = counts >= config.min_pixels

    v_median, v_extreme = _median_and_extreme(segment, velocity, n_seg)
    diff_settlement, distortion = _gradients(segment, coords, velocity, displacement, is_line)
    series = (
        pd.DataFrame(displacement.T)
        .groupby(segment)
        .median()
        .reindex(range(n_seg))
        .to_numpy(dtype=np.float64, copy=True)
    )
    t = years_since(dates, dates[0])
    accel = _quadratic_term(t, series)
    change = _change_point(t, series, config)

    d_total = series[:, -1] - series[:, 0]
    significant = np.maximum(np.abs(v_median) - config.significance_z * v_std, 0.0)
    proj_settle = significant * (t[-1] - t[0] + config.horizon_years)
    proj_dist = distortion + np.abs(diff_settlement) * config.horizon_years
    risk = risk_class(proj_settle, proj_dist, change["accelerating"], config)

    table = pd.DataFrame(
        {
            "n_pixels": counts,
            "v_median_mm_yr": v_median * 1e3,
            "v_extreme_mm_yr": v_extreme * 1e3,
            "diff_settlement_mm_yr_100m": diff_settlement * 1e5,
            "angular_distortion": distortion,
            "displacement_mm": d_total * 1e3,
            "acceleration_mm_yr2": accel * 1e3,
            "v_early_mm_yr": change["v_early"] * 1e3,
            "v_recent_mm_yr": change["v_recent"] * 1e3,
            "change_p_value": change["p_value"],
            "accelerating": change["accelerating"],
            "v_std_mm_yr": v_std * 1e3,
            "projected_settlement_mm": proj_settle * 1e3,
            "projected_distortion": proj_dist,
            "risk_class": risk,
        }
    )
    numeric = [c for c in table.columns if c not in ("n_pixels", "accelerating", "risk_class")]
    table.loc[~enough, numeric] = np.nan
    table.loc[~enough, "accelerating"] = False
    table.loc[~enough, "risk_class"] = -1
    table["risk"] = table["risk_class"].map(RISK_LABELS)
    series[~enough] = np.nan
    return SegmentMetrics(table, series)


def _median_and_extreme(
    segment: np.ndarray, velocity: np.ndarray, n_seg: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-segment median velocity and the velocity of largest magnitude (NaN: no pixels)."""
    frame = pd.DataFrame({"s": segment, "v": velocity})
    v_median = frame.groupby("s")["v"].median().reindex(range(n_seg)).to_numpy()
    extreme_idx = frame["v"].abs().groupby(frame["s"]).idxmax()
    v_extreme = pd.Series(frame["v"].to_numpy()[extreme_idx.to_numpy()], extreme_idx.index)
    return v_median, v_extreme.reindex(range(n_seg)).to_numpy()


def _gradients(
    segment: np.ndarray,
    coords: np.ndarray,
    velocity: np.ndarray,
    displacement: np.ndarray,
    is_line: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Differential settlement [m/yr per m] and angular distortion [rad] per segment.

    Along the chainage for lines (signed), the gradient's magnitude for polygons.
    """
    total = displacement[-1] - displacement[0]
    dims = np.where(is_line[segment][:, None], [[1.0, 0.0]], [[1.0, 1.0]])
    values = np.column_stack([velocity, total])
    grad = _gradient(segment, coords * dims, values, len(is_line))
    diff_settlement = np.where(is_line, grad[:, 0, 0], np.hypot(grad[:, 0, 0], grad[:, 1, 0]))
    distortion = np.where(is_line, np.abs(grad[:, 0, 1]), np.hypot(grad[:, 0, 1], grad[:, 1, 1]))
    return diff_settlement, distortion


def _gradient(group: np.ndarray, xy: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Per-group least-squares gradient of `values` (k columns) over the plane `xy`.

    Returns (n, 2, k): d value / d x and d value / d y per group (units of value per m). A
    zero column of `xy` gives a zero gradient along it (a line fit); a group whose points
    do not span the axes it uses gets NaN.
    """
    cnt = np.bincount(group, minlength=n).astype(np.float64)
    safe = np.maximum(cnt, 1)
    mean_xy = np.stack([np.bincount(group, xy[:, i], n) / safe for i in range(2)], axis=1)
    mean_v = np.stack(
        [np.bincount(group, values[:, j], n) / safe for j in range(values.shape[1])], axis=1
    )
    dx = xy - mean_xy[group]
    dv = values - mean_v[group]
    sxx = np.empty((n, 2, 2))
    sxv = np.empty((n, 2, values.shape[1]))
    for a in range(2):
        for b in range(2):
            sxx[:, a, b] = np.bincount(group, dx[:, a] * dx[:, b], n)
        for j in range(values.shape[1]):
            sxv[:, a, j] = np.bincount(group, dx[:, a] * dv[:, j], n)
    # An axis a group does not use (all-zero column) gets a large variance: gradient 0 there.
    unused = (sxx[:, [0, 1], [0, 1]] == 0) & (
        np.stack([np.bincount(group, np.abs(xy[:, i]), n) for i in range(2)], axis=1) == 0
    )
    for a in range(2):
        sxx[unused[:, a], a, a] = 1e12 * safe[unused[:, a]]
    # Spread below 1 m (one position, or collinear points of a polygon): no gradient.
    eig = np.linalg.eigvalsh(sxx)
    degenerate = (eig[:, 0] / safe < 1.0) | (cnt < 2)
    sxx[degenerate] = np.eye(2)
    grad = np.linalg.solve(sxx, sxv)
    grad[degenerate] = np.nan
    return grad


def _quadratic_term(t: np.ndarray, series: np.ndarray) -> np.ndarray:
    """Acceleration [m/yr^2] of d = c + v t + a t^2 / 2 fitted to each row of `series`."""
    tc = t - t.mean()
    design = np.column_stack([np.ones_like(tc), tc, 0.5 * tc**2])
    coef = np.linalg.lstsq(design, np.nan_to_num(series.T), rcond=None)[0]
    return np.where(np.isfinite(series).all(axis=1), coef[2], np.nan)


def _slope(t: np.ndarray, series: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares slope of each row against t and its standard error."""
    tc = t - t.mean()
    sxx = float(tc @ tc)
    slope = series @ tc / sxx
    resid = series - series.mean(axis=1, keepdims=True) - slope[:, None] * tc
    dof = len(t) - 2
    se = np.sqrt((resid**2).sum(axis=1) / dof / sxx) if dof > 0 else np.full(len(slope), np.inf)
    return slope, se


def _change_point(t: np.ndarray, series: np.ndarray, config: InfraConfig) -> dict:
    """Velocity over the recent dates vs before them: slopes, p-value, speed-up flag."""
    n_recent = config.recent_dates
    n = len(t)
    nan = np.full(len(series), np.nan)
    if n - n_recent < 3:  # too few earlier dates for a slope and its error
        return {
            "v_early": nan,
            "v_recent": nan,
            "p_value": nan,
            "accelerating": np.zeros(len(series), dtype=bool),
        }
    v_e, se_e = _slope(t[: n - n_recent], series[:, : n - n_recent])
    v_r, se_r = _slope(t[n - n_recent :], series[:, n - n_recent :])
    se = np.hypot(se_e, se_r)
    with np.errstate(divide="ignore", invalid="ignore"):
        tstat = np.where(se > 0, (v_r - v_e) / se, np.where(v_r == v_e, 0.0, np.inf))
    dof = n - 4
    p = 2 * stats.t.sf(np.abs(tstat), dof)
    speed_up = np.abs(v_r) - np.abs(v_e)
    accelerating = (p < config.change_alpha) & (speed_up >= config.min_velocity_change)
    return {"v_early": v_e, "v_recent": v_r, "p_value": p, "accelerating": accelerating}


def risk_class(
    settlement: np.ndarray,
    distortion: np.ndarray,
    accelerating: np.ndarray,
    config: InfraConfig,
) -> np.ndarray:
    """Risk class 0-3 from projected settlement [m] and angular distortion [rad].

    The worse of the two criteria; a significant speed-up raises a class >= 1 by one.
    NaN in both gives -1.
    """
    s = np.searchsorted(config.settlement_thresholds, np.nan_to_num(settlement), "right")
    d = np.searchsorted(config.distortion_thresholds, np.nan_to_num(distortion), "right")
    level = np.maximum(s, d)
    level = np.where(accelerating & (level >= 1), np.minimum(level + 1, 3), level)
    none = ~np.isfinite(settlement) & ~np.isfinite(distortion)
    return np.where(none, -1, level).astype(np.int64)
