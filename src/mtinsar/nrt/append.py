"""Near-real-time update: one new acquisition appended to an existing time series, and alerts.

The new date. Each new pair k links the new date to an existing date o_k, so it measures
x_new - x[o_k] (x the phase history in metres, c = -λ/4π times the pair phase referenced
with the run's reference window). Two estimators, chosen by what the result carries:

- Exact sequential least squares (`mtinsar.nrt.sequential`, when the result holds its run's
  pair network, `attach_network`): the Kalman analysis step of Dalaison & Jolivet 2020
  (JGR Solid Earth 125, e2019JB019150) on the history estimated by the last inversion.
  For a pixel whose pairs are all valid this equals re-inverting every pair (tested to
  1e-9); for pixels that lost pairs it is a close approximation (their Q differs). Cost
  O(k + |W|³) + O(n |W|) per pixel, with no pair of the history read.
- Frozen history (no network stored): each valid pair gives d_new = d[o_k] + c·unw_k and
  they are averaged with the pair weights — the same step in the limit where the past is
  known exactly. O(k) per pixel and only the paired dates are read, but the history keeps
  the small corrections a re-inversion would make (0.6 mm/yr RMS in velocity after 5
  dates on a 30-date scene, against 0.23 mm/yr for the exact step).

The information matrix is extended with the new pairs at each update, so the next one is
exact again. Pair weights are the run's (coherence weights, `inversion.coherence_weights`,
when configured; the prior is then scaled by the pixel's mean new-pair weight).

Unwrapping check. With three or more new pairs, the pairs' estimates of the new phase must
agree up to noise; one that differs from their median by about 2π·m is an unwrapping error
and is corrected by that multiple (the phase-closure idea of Yunjun et al. 2019, Comput.
Geosci. 133, on the triangles new-old_i-old_j). Only when `unwrap.closure` is on, as in the
full run.

The model (velocity, its std, residual) is updated by recursive least squares
(`mtinsar.nrt.state`); what an update takes from the stored history comes from one pass
over its blocks (`nrt_state.history_pass`).

Alerts. The new displacement is compared with the model's prediction from before the
update; the prediction's standard deviation is σ_pred = s·sqrt(1 + gᵀN⁻¹g) with s² the
residual variance on n - p degrees of freedom (the least-squares prediction interval, honest
for the extrapolation to a new date). The new date's long-wavelength atmosphere is
correlated over kilometres, so departures would otherwise exceed k·σ over whole areas on a
stormy date (0.4-2.8 % of the pixels on simulated quiet dates): the departure's local mean
over `highpass_window_px` is removed first (`highpass`). Pixels departing by more than
k·σ_pred that form connected areas of at least `min_area_px` pixels are the alerts: GeoJSON
polygons (RFC 7946, lon/lat) with their area and largest departure, written by
`write_alerts` and POSTed by `post_alerts` to the configured webhooks.

Velocity changes. The first update keeps the velocity and its std of the last full run
(`nrt_velocity_base`, `nrt_velocity_base_std`). After each update, pixels whose velocity
differs from it by more than `velocity_k_sigma`·sqrt(σ_base² + σ_now²) and by at least
`velocity_change_mm_yr` form alert areas of kind "velocity_change" (same area rules).
Both fits share most dates, so the two stds are positively correlated and the root sum of
squares overstates the difference's std: the test is conservative (few false alerts) and
fires on accelerations that persist over several updates.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import shapely
import xarray as xr
from pyproj import Transformer
from rasterio import features
from rasterio.transform import Affine
from scipy import ndimage
from shapely.geometry import mapping, shape
from shapely.ops import unary_union

from mtinsar.analysis import qc
from mtinsar.analysis.inversion import coherence_weights
from mtinsar.analysis.model import reference_index
from mtinsar.analysis.network import Network
from mtinsar.config import NrtConfig, RunConfig
from mtinsar.conventions import SENTINEL1_WAVELENGTH, phase_to_displacement, years_since
from mtinsar.corrections.dem_error import DEFAULT_SLANT_RANGE_M
from mtinsar.corrections.reference import reference_phase
from mtinsar.errors import ConfigError, InputError
from mtinsar.nrt.sequential import NewDate, StepGain, corrected_history, sequential_step, step_gain
from mtinsar.nrt.state import (
    ModelState,
    Solution,
    add_date,
    as_dask,
    correct_history,
    fixed_design,
    history_pass,
    mid_span_velocity,
    prediction_departure,
    solve_state,
)

log = logging.getLogger(__name__)

BASE_VELOCITY = ("nrt_velocity_base", "nrt_velocity_base_std")
#: Variables without a time dimension an update may change (the others it passes on as read).
CHANGED_VARIABLES = (
    "velocity",
    "velocity_std",
    "model_residual",
    "n_valid_pairs",
    "nrt_network",
    *BASE_VELOCITY,
)


@dataclass
class UpdateReport:
    """What one `update` did, for the log, the run summary and the webhooks."""

    date: str
    pairs_used: list[str]
    pairs_dropped: list[dict[str, str]]
    n_pixels_estimated: int
    n_cycles_corrected: int
    alerts: dict[str, Any]
    alert_pixels: int
    updates_since_full: int
    median_residual_m: float
    full_rerun_due: bool
    full_rerun_reason: str
    timings_s: dict[str, float] = field(default_factory=dict)
    webhooks: list[dict[str, Any]] = field(default_factory=list)
    #: the history's correction, history_gain (n, m) @ history_delta (m, y, x) [m]
    history_gain: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)), repr=False)
    history_delta: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0)), repr=False)

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (the alert geometries and the correction left out)."""
        left_out = ("alerts", "history_gain", "history_delta")
        out = {k: v for k, v in self.__dict__.items() if k not in left_out}
        out["n_alert_areas"] = len(self.alerts.get("features", []))
        return out


# --------------------------------------------------------------------------- entry point


def update(
    result: xr.Dataset, new_pairs_stack: xr.Dataset, config: RunConfig, nrt: NrtConfig
) -> tuple[xr.Dataset, UpdateReport]:
    """Append the one new date of `new_pairs_stack` to `result`; return it and a report.

    `result` is a `run_sbas` (or earlier `update`) result; `new_pairs_stack` an `IfgStack` on
    the same grid whose pairs each link the new date (later than every date of `result`) to
    a date of `result`. Displacement of the new date [m] is relative to the same reference
    date and pixel; velocity, velocity_std and model_residual are refitted incrementally;
    alerts (GeoJSON dict) are in the report and POSTed to `nrt.webhooks` (never raises).
    """
    timings: dict[str, float] = {}
    start = time.perf_counter()
    _check_config(config)
    new_date = _check_inputs(result, new_pairs_stack)
    kept, dropped = _pair_qc(new_pairs_stack, config)
    kept = remove_dem_error(kept, result, config)
    timings["qc"] = _lap(start)

    known = result["time"].values.astype("datetime64[D]")
    old_index = np.searchsorted(known, kept["ref_date"].values.astype("datetime64[D]"))
    iref = reference_index(known, config.model.reference_date)
    step = _step_plan(result, old_index, iref)
    wanted = np.unique([*old_index, 0, iref])
    gain = None if step is None else step.gain
    sums = history_pass(result["displacement"].data, known, wanted, config.model, gain)
    state = sums.state
    timings["read"] = _lap(start)
    rows = dict(zip(wanted.tolist(), sums.rows, strict=True))
    est = _estimate(result, kept, old_index, config, step, rows, iref)
    timings["estimate"] = _lap(start)

    before = solve_state(state)
    dates = np.append(known, new_date)
    g_new = fixed_design(np.array([new_date]), state.origin, config.model)[0][0]
    departure, sigma = prediction_departure(before, g_new, est.displacement)
    if est.history_gain is not None:  # the exact step moved the history too
        state = correct_history(
            state, known, sums, est.history_gain, est.history_delta, config.model
        )
    state = add_date(state, g_new, est.displacement)
    after = solve_state(state)
    timings["model"] = _lap(start)

    mask = result["mask"].values.astype(bool) if nrt.reliable_only else None
    departure = highpass(departure, nrt.highpass_window_px, mask)
    labels, areas = alert_areas(departure, sigma, nrt.k_sigma, nrt, mask)
    collection = alert_features(labels, areas, departure, sigma, result, str(new_date))

    updated = _updated_result(result, est, state, after, dates, kept, old_index)
    change, change_std = velocity_change(result, updated, nrt)
    v_labels, v_areas = alert_areas(change, change_std, nrt.velocity_k_sigma, nrt, mask)
    changed = alert_features(
        v_labels, v_areas, change, change_std, result, str(new_date), "velocity_change"
    )
    collection["features"] += changed["features"]
    for number, feature in enumerate(collection["features"], start=1):
        feature["properties"]["id"] = number
    timings["alerts"] = _lap(start)
    median_res = _median(updated["model_residual"].values, updated["mask"].values)
    count = int(result.attrs.get("nrt_updates_since_full", 0)) + 1
    baseline = float(result.attrs.get("nrt_baseline_residual_m", np.nan))
    if not np.isfinite(baseline):
        baseline = _median(result["model_residual"].values, result["mask"].values)
    due, reason = full_rerun_due(count, median_res, baseline, nrt)
    updated.attrs.update(
        nrt_updates_since_full=count,
        nrt_baseline_residual_m=baseline,
        nrt_last_update=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    )
    report = UpdateReport(
        date=str(new_date),
        pairs_used=[str(p) for p in kept["pair"].values],
        pairs_dropped=dropped,
        n_pixels_estimated=int(np.isfinite(est.displacement).sum()),
        n_cycles_corrected=int(est.cycles_corrected.sum()),
        alerts=collection,
        alert_pixels=int(((labels > 0) | (v_labels > 0)).sum()),
        updates_since_full=count,
        median_residual_m=median_res,
        full_rerun_due=due,
        full_rerun_reason=reason,
    )
    if est.history_gain is not None:
        report.history_gain, report.history_delta = est.history_gain, est.history_delta
    else:
        report.history_gain = np.zeros((known.size, 0))
        report.history_delta = np.zeros((0, *est.displacement.shape))
    timings["result"] = _lap(start)
    if nrt.webhooks and collection["features"]:
        report.webhooks = post_alerts(collection, nrt)
    timings["webhooks"] = _lap(start)
    report.timings_s = _stage_times(timings)
    log.info(
        "update %s: %d pairs, %d pixels, %d alert areas%s",
        new_date,
        len(report.pairs_used),
        report.n_pixels_estimated,
        len(collection["features"]),
        f"; full re-run due: {reason}" if due else "",
    )
    return updated, report


def _step_plan(result: xr.Dataset, old_index: np.ndarray, iref: int) -> StepGain | None:
    """The exact step's network part for these pairs (None without the run's network: the
    history is then frozen), its gain moved to the temporal reference date `iref`."""
    if "nrt_network" not in result.data_vars:
        return None
    step = step_gain(result["nrt_network"].values, old_index)
    if iref:  # the history is referenced to date iref: its correction holds that date still
        step.gain_at_reference = step.gain[iref].copy()
        step.gain = step.gain - step.gain[iref]
    return step


def _estimate(
    result: xr.Dataset,
    kept: xr.Dataset,
    old_index: np.ndarray,
    config: RunConfig,
    step: StepGain | None,
    rows: dict[int, np.ndarray],
    iref: int,
) -> NewDate:
    """The new date's estimate from the history's `rows` (date index -> (y, x) [m]) whose
    temporal reference is date `iref`; with the run's network (`step`) the history's
    correction too."""
    ry, rx = int(result.attrs["reference_y"]), int(result.attrs["reference_x"])
    r = config.reference.radius
    unw = kept["unw"].values.astype(np.float64)
    window = unw[:, max(ry - r, 0) : ry + r + 1, max(rx - r, 0) : rx + r + 1]
    unw = unw - reference_phase(window)[:, None, None]
    weights = None
    if config.inversion.weighting == "coherence":
        inv = config.inversion
        coh = kept["coh"].values.astype(np.float64)
        weights = coherence_weights(coh, inv.looks, inv.variance_model)
    to_metres = phase_to_displacement(float(kept.attrs.get("wavelength", SENTINEL1_WAVELENGTH)))
    fix = config.unwrap.closure

    def at(index: np.ndarray) -> np.ndarray:
        return np.stack([rows[int(i)] for i in index]).astype(np.float64)

    if step is None:  # frozen: each pair adds its phase to its stored earlier date
        return estimate_new_date(at(old_index), unw, to_metres, weights, fix)
    date0 = rows[0] if iref else None
    est = sequential_step(step, at(step.dates_w), unw, to_metres, weights, fix, date0)
    if iref:  # from date 0 back to the configured temporal reference
        moved = np.tensordot(step.gain_at_reference, est.history_delta, axes=1)  # (y, x)
        est.displacement = est.displacement - (rows[iref] - rows[0] + moved)
    return est


def _lap(start: float) -> float:
    return time.perf_counter() - start


def _stage_times(cumulative: dict[str, float]) -> dict[str, float]:
    """Per-stage seconds from cumulative lap times."""
    out, last = {}, 0.0
    for name, t in cumulative.items():
        out[name], last = round(t - last, 4), t
    out["total"] = round(last, 4)
    return out


def _median(values: np.ndarray, mask: np.ndarray) -> float:
    v = values[mask.astype(bool) & np.isfinite(values)]
    return float(np.median(v)) if v.size else float("nan")


def full_rerun_due(
    updates_since_full: int, median_residual: float, baseline: float, nrt: NrtConfig
) -> tuple[bool, str]:
    """Whether a full re-inversion is due, and why (empty when not)."""
    if updates_since_full >= nrt.full_rerun_every:
        return True, f"{updates_since_full} updates since the last full run (full_rerun_every)"
    if np.isfinite(baseline) and median_residual > nrt.residual_growth_factor * baseline:
        return True, (
            f"median model residual {median_residual * 1e3:.2f} mm > "
            f"{nrt.residual_growth_factor} x {baseline * 1e3:.2f} mm after the last full run "
            "(residual_growth_factor)"
        )
    return False, ""


def rerun_due(result: xr.Dataset, nrt: NrtConfig) -> tuple[bool, str]:
    """`full_rerun_due` for a stored result: never for a full run's own result (it has no
    ``nrt_updates_since_full``); for an updated one, from its attrs and residual layer."""
    count = result.attrs.get("nrt_updates_since_full")
    if count is None:
        return False, ""
    median = _median(result["model_residual"].values, result["mask"].values)
    baseline = float(result.attrs.get("nrt_baseline_residual_m", np.nan))
    return full_rerun_due(int(count), median, baseline, nrt)


# --------------------------------------------------------------------------- checks


def _check_config(config: RunConfig) -> None:
    on = [name for name in ("external", "troposphere", "ramp") if getattr(config, name).enabled]
    if on:
        raise ConfigError(
            f"update: corrections [{', '.join(on)}] are enabled, but the update cannot apply "
            "them to a new date (only dem_error, whose per-pixel estimate it carries over) and "
            "would mix corrected and uncorrected dates; run `mtinsar run --full` instead, or "
            "disable them for monitoring"
        )


def remove_dem_error(kept: xr.Dataset, result: xr.Dataset, config: RunConfig) -> xr.Dataset:
    """The new pairs without the DEM-error term the run removed from `result`'s history.

    The DEM error is a constant of each pixel (Fattahi & Amelung 2013): pair (i, j) carries
    B⊥_ij ε' with ε' = Δz / (R sin θ) (`corrections.dem_error`), taken here from the run's
    estimate (`dem_error` [m], R from `dem_error.slant_range_m`), not re-estimated: a full
    re-run refits it. Follows the result: without a `dem_error` layer its history is
    uncorrected and so are the new pairs.
    """
    if "dem_error" not in result.data_vars:
        if config.dem_error.enabled:
            log.warning(
                "update: the result has no DEM-error estimate; the new date is not corrected"
            )
        return kept
    for name, ds, where in (("bperp", kept, "new pairs"), ("incidence", result, "result")):
        if name not in ds.variables:
            raise InputError(
                f"update: the result was corrected for DEM error but the {where} have no "
                f"'{name}'; give products with baselines and geometry, or re-run without dem_error"
            )
    slant = config.dem_error.slant_range_m or DEFAULT_SLANT_RANGE_M
    sin_inc = np.sin(np.deg2rad(result["incidence"].values.astype(np.float64)))
    eps = np.nan_to_num(result["dem_error"].values / (slant * sin_inc))  # NaN: not corrected
    term = kept["bperp"].values.astype(np.float64)[:, None, None] * eps  # (pair, y, x) [m]
    to_metres = phase_to_displacement(float(kept.attrs.get("wavelength", SENTINEL1_WAVELENGTH)))
    out = kept.copy()
    out["unw"] = kept["unw"] - (term / to_metres).astype(kept["unw"].dtype)
    return out


def _check_inputs(result: xr.Dataset, stack: xr.Dataset) -> np.datetime64:
    """The new date; InputError when the pairs cannot extend `result`."""
    for name in ("displacement", "velocity", "model_residual", "mask"):
        if name not in result.data_vars:
            raise InputError(
                f"update: the result has no '{name}' variable; pass a result of `mtinsar run`"
            )
    for name in ("unw", "coh"):
        if name not in stack.data_vars:
            raise InputError(f"update: the new pairs have no '{name}' variable (IfgStack schema)")
    if stack.sizes.get("pair", 0) == 0:
        raise InputError("update: no new pairs; give the interferograms of the new date")
    for dim in ("y", "x"):
        a, b = result[dim].values, stack[dim].values
        if a.shape != b.shape or not np.allclose(a, b, rtol=0, atol=1e-9 * max(1, np.abs(a).max())):
            raise InputError(
                f"update: the new pairs' {dim} grid ({b.size} values) differs from the result's "
                f"({a.size}); ingest the new products with the same grid (ingest.crop, "
                "multilook) as the stack of the last run"
            )
    known = result["time"].values.astype("datetime64[D]")
    ref = stack["ref_date"].values.astype("datetime64[D]")
    sec = stack["sec_date"].values.astype("datetime64[D]")
    new = np.unique(sec)
    labels = stack["pair"].values.astype(str)
    if new.size != 1:
        raise InputError(
            f"update: the new pairs end on {new.size} dates ({', '.join(map(str, new))}); an "
            "update adds one date: pass the pairs of each new date separately, oldest first"
        )
    if new[0] <= known[-1]:
        raise InputError(
            f"update: the new date {new[0]} is not after the last date of the result "
            f"({known[-1]}); a date inside the series needs `mtinsar run --full`"
        )
    unknown = ~np.isin(ref, known)
    if unknown.any():
        raise InputError(
            f"update: pairs {', '.join(labels[unknown][:5])} start on dates the result does not "
            "have; add the missing dates first (oldest first) or run `mtinsar run --full`"
        )
    return new[0]


def _pair_qc(stack: xr.Dataset, config: RunConfig) -> tuple[xr.Dataset, list[dict[str, str]]]:
    """The new pairs passing the run's pair QC, and the dropped ones with their reason."""
    conn = stack["conncomp"].values if "conncomp" in stack.data_vars else None
    counts = qc.pair_counts(stack["unw"].values, stack["coh"].values, conn)
    table = qc.pair_table(counts, stack["pair"].values, config.qc)
    keep = table["keep"].values
    dropped = [
        {"pair": str(p), "reason": str(r)}
        for p, r in zip(table["pair"].values[~keep], table["reason"].values[~keep], strict=True)
    ]
    if not keep.any():
        raise InputError(
            f"update: every new pair failed quality control ({dropped[0]['reason']}, ...); "
            "check the products of the new date or relax the qc section"
        )
    return stack.isel(pair=keep), dropped


# --------------------------------------------------------------------------- new date


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
    (module docstring).
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


def network_information(network: Network) -> np.ndarray:
    """Information matrix (n_dates, n_dates) of the run's unit-weight pair network.

    The weighted pair-graph Laplacian Σ a aᵀ, a = e_sec - e_ref: what `update` needs, with
    date 0 held fixed, for the covariance of the estimated dates (Q = L[1:, 1:]⁻¹ per unit
    pair variance).
    """
    lap = np.zeros((network.n_dates, network.n_dates))
    np.add.at(lap, (network.ref, network.ref), 1.0)
    np.add.at(lap, (network.sec, network.sec), 1.0)
    np.add.at(lap, (network.ref, network.sec), -1.0)
    np.add.at(lap, (network.sec, network.ref), -1.0)
    return lap


def attach_network(result: xr.Dataset, network: Network) -> xr.Dataset:
    """`result` with its pair network's information matrix (`nrt_network`), for `update`.

    With it an update re-estimates the whole history by the exact sequential least-squares
    step (`sequential_update`); without it only the new date is estimated.
    """
    lap = network_information(network)
    if lap.shape[0] != result.sizes["time"]:
        raise InputError(
            f"the network has {lap.shape[0]} dates but the result {result.sizes['time']}; "
            "pass the network of the run that made this result"
        )
    return result.assign(nrt_network=(("nrt_date", "nrt_date_2"), lap))


# --------------------------------------------------------------------------- model state


def _updated_result(
    result: xr.Dataset,
    est: NewDate,
    state: ModelState,
    sol: Solution,
    dates: np.ndarray,
    kept: xr.Dataset,
    old_index: np.ndarray,
) -> xr.Dataset:
    """`result` with the (corrected) history, the new date and the refitted model layers."""
    t = years_since(dates, state.origin)
    v, v_std = mid_span_velocity(sol, state.names, float((t[0] + t[-1]) / 2))
    cube = _appended_cube(result["displacement"].data, est)
    out = result.drop_vars("nrt_network", errors="ignore").drop_dims("time")
    out = out.assign_coords(time=dates.astype("datetime64[ns]"))
    grid = {"grid_mapping": "spatial_ref"} if "spatial_ref" in result.coords else {}
    bperp = np.append(result["bperp"].values, _new_bperp(result, kept)).astype(np.float32)
    new: dict[str, Any] = {  # assigned at once: each xarray assignment aligns the dataset
        "displacement": (("time", "y", "x"), cube, {**result["displacement"].attrs, **grid}),
        "bperp": ("time", bperp, result["bperp"].attrs),
    }
    for name, values in (("velocity", v), ("velocity_std", v_std), ("model_residual", sol.rms)):
        new[name] = (("y", "x"), values.astype(np.float32), {**result[name].attrs, **grid})
    if "n_valid_pairs" in result.data_vars:
        new["n_valid_pairs"] = (
            ("y", "x"),
            (result["n_valid_pairs"].values + est.n_pairs).astype(np.int16),
            result["n_valid_pairs"].attrs,
        )
    if "nrt_network" in result.data_vars:
        lap = np.pad(result["nrt_network"].values, ((0, 1), (0, 1)))
        last = dates.size - 1
        for o in old_index:
            lap[[o, last], [o, last]] += 1.0
            lap[o, last] -= 1.0
            lap[last, o] -= 1.0
        new["nrt_network"] = (("nrt_date", "nrt_date_2"), lap)
    out = out.assign(new)
    out.attrs.update(result.attrs)
    return out


def _appended_cube(history: Any, est: NewDate) -> da.Array:
    """The corrected history and the new date as one lazy float32 cube (time, y, x) [m].

    Lazy so that an update writing a layer (`versions.layer_dataset`) computes only the new
    date: the corrected history is stored as its factors, never as a cube.
    """
    hist = corrected_history(as_dask(history).astype(np.float32), est)
    new = as_dask(est.displacement.astype(np.float32)[None])
    return da.concatenate([hist, new.rechunk((1, *hist.chunks[1:]))], axis=0)


def _new_bperp(result: xr.Dataset, kept: xr.Dataset) -> float:
    """Perpendicular baseline [m] of the new date w.r.t. the first: mean over its pairs."""
    if "bperp" not in kept or "bperp" not in result:
        return float("nan")
    old = result["bperp"].sel(time=kept["ref_date"].values).values
    return float(np.nanmean(old + kept["bperp"].values)) if np.isfinite(old).any() else np.nan


# --------------------------------------------------------------------------- alerts


def highpass(field: np.ndarray, window: int, mask: np.ndarray | None = None) -> np.ndarray:
    """`field` (y, x) minus its local mean over `window` x `window` pixels (0: unchanged).

    The mean is a normalised convolution (Knutsson & Westin 1993, CVPR): NaN and pixels off
    `mask` are left out of it rather than counted as zero. The new date's atmospheric delay
    is correlated over kilometres (Hanssen 2001, ch. 4) and would otherwise alert as whole
    areas on a stormy date; events much smaller than the window (a 20-pixel area in a
    31-pixel window shifts the local mean by ~2 % of its amplitude) keep their departure.
    """
    if window <= 1:
        return field
    ok = np.isfinite(field) & (True if mask is None else mask)
    num = ndimage.uniform_filter(np.where(ok, field, 0.0), window, mode="nearest")
    den = ndimage.uniform_filter(ok.astype(np.float64), window, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        return field - num / den


def velocity_change(
    result: xr.Dataset, updated: xr.Dataset, nrt: NrtConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(change [m/yr], its std [m/yr]) of `updated`'s velocity from the last full run's.

    Sets the base layers in `updated` (kept from `result`, or taken from `result`'s own
    velocity at the first update after a full run). The change is 0 where it is below
    `velocity_change_mm_yr`, so that only sizeable changes can alert.
    """
    if all(name in result.data_vars for name in BASE_VELOCITY):
        base, base_std = (result[name].values for name in BASE_VELOCITY)
    else:
        base, base_std = result["velocity"].values, result["velocity_std"].values
    attrs = result["velocity"].attrs
    updated.update(
        {name: (("y", "x"), values.astype(np.float32), attrs)
         for name, values in zip(BASE_VELOCITY, (base, base_std), strict=True)}
    )  # fmt: skip
    change = updated["velocity"].values - base
    with np.errstate(invalid="ignore"):
        std = np.sqrt(base_std.astype(np.float64) ** 2 + updated["velocity_std"].values ** 2)
        small = np.abs(change) < nrt.velocity_change_mm_yr * 1e-3
    return np.where(small, 0.0, change), std


def alert_areas(
    departure: np.ndarray,
    sigma: np.ndarray,
    k: float,
    nrt: NrtConfig,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(labels (y, x) int32, area [px] per label 1..m) of areas departing > k·σ.

    Pixels with |departure| > k·sigma (and in `mask`) are grouped by
    `scipy.ndimage.label`; areas smaller than `min_area_px` are dropped and the rest
    renumbered 1..m (0 = no alert).
    """
    with np.errstate(invalid="ignore"):
        hit = np.abs(departure) > k * sigma
    hit &= np.isfinite(departure) & np.isfinite(sigma)
    if mask is not None:
        hit &= mask
    structure = ndimage.generate_binary_structure(2, 1 if nrt.connectivity == 4 else 2)
    labels, n = ndimage.label(hit, structure=structure)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    big = np.flatnonzero(sizes >= nrt.min_area_px)
    big = big[big > 0]
    renumber = np.zeros(n + 1, dtype=np.int32)
    renumber[big] = np.arange(1, big.size + 1)
    return renumber[labels], sizes[big]


def alert_features(
    labels: np.ndarray,
    areas: np.ndarray,
    departure: np.ndarray,
    sigma: np.ndarray,
    grid: xr.Dataset,
    date: str,
    kind: str = "departure_from_model",
) -> dict[str, Any]:
    """GeoJSON FeatureCollection (RFC 7946, lon/lat) of the alert areas of `labels`.

    Each feature is one area's outline (`rasterio.features.shapes`), with properties id,
    date, kind, area_px, max_departure_mm (signed, largest magnitude), mean_departure_mm,
    max_sigma_ratio (largest |departure|/σ) and the lon/lat of the pixel of largest departure.
    For kind "velocity_change" the departure is a velocity change and its properties are
    max_change_mm_per_yr and mean_change_mm_per_yr instead.
    """
    quantity = "change_mm_per_yr" if kind == "velocity_change" else "departure_mm"
    if areas.size == 0:
        return {"type": "FeatureCollection", "features": []}
    transform = _grid_transform(grid)
    to_lonlat = Transformer.from_crs(grid.rio.crs or "EPSG:4326", "EPSG:4326", always_xy=True)

    def _lonlat(xy: np.ndarray) -> np.ndarray:
        return np.column_stack(to_lonlat.transform(xy[:, 0], xy[:, 1]))

    parts: dict[int, list] = {}
    for geom, value in features.shapes(
        labels, mask=labels > 0, transform=transform, connectivity=8
    ):
        parts.setdefault(int(value), []).append(shape(geom))
    index = np.arange(1, areas.size + 1)
    flat = np.where(labels > 0, departure, 0.0)
    peak = ndimage.maximum_position(np.abs(flat), labels, index)
    mean = ndimage.mean(flat, labels, index)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = ndimage.maximum(np.where(labels > 0, np.abs(departure) / sigma, 0.0), labels, index)
    xs, ys = grid["x"].values, grid["y"].values
    out = []
    rows = zip(areas, peak, mean, np.atleast_1d(ratio), strict=True)
    for i, (area, (py, px), m, z) in enumerate(rows, start=1):
        outline = shapely.transform(unary_union(parts[i]), _lonlat)
        lon, lat = to_lonlat.transform(float(xs[px]), float(ys[py]))
        out.append(
            {
                "type": "Feature",
                "geometry": mapping(outline),
                "properties": {
                    "id": i,
                    "date": date,
                    "kind": kind,
                    "area_px": int(area),
                    f"max_{quantity}": round(float(departure[py, px]) * 1e3, 2),
                    f"mean_{quantity}": round(float(m) * 1e3, 2),
                    "max_sigma_ratio": round(float(z), 2),
                    "peak_lon": round(lon, 7),
                    "peak_lat": round(lat, 7),
                },
            }
        )
    return {"type": "FeatureCollection", "features": out}


def _grid_transform(grid: xr.Dataset) -> Affine:
    """Affine transform of the pixel corners from the regular pixel-centre coordinates."""
    xs, ys = grid["x"].values, grid["y"].values
    dx = float(xs[1] - xs[0]) if xs.size > 1 else 1.0
    dy = float(ys[1] - ys[0]) if ys.size > 1 else -1.0
    return Affine(dx, 0.0, float(xs[0]) - dx / 2, 0.0, dy, float(ys[0]) - dy / 2)


# --------------------------------------------------------------------------- I/O


def write_alerts(collection: dict[str, Any], path: str | Path) -> Path:
    """Write the alerts as GeoJSON to `path` atomically (temporary name, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(collection, indent=1))
    tmp.replace(path)
    return path


def post_alerts(collection: dict[str, Any], nrt: NrtConfig) -> list[dict[str, Any]]:
    """POST `collection` as JSON to every `nrt.webhooks` URL; never raises.

    Each URL gets up to 1 + `webhook_retries` attempts with exponential backoff, each with
    `webhook_timeout_s`, all within `webhook_max_s`. Returns one record per URL: url, ok,
    status (HTTP code or None), attempts, error.
    """
    body = json.dumps(collection).encode()
    return [_post_one(url, body, nrt) for url in nrt.webhooks]


def _post_one(url: str, body: bytes, nrt: NrtConfig) -> dict[str, Any]:
    deadline = time.monotonic() + nrt.webhook_max_s
    wait, error, status = nrt.webhook_backoff_s, "", None
    for attempt in range(1, nrt.webhook_retries + 2):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/geo+json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=min(nrt.webhook_timeout_s, left)) as r:
                status = r.status
                return {"url": url, "ok": True, "status": status, "attempts": attempt, "error": ""}
        except urllib.error.HTTPError as exc:
            status, error = exc.code, f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            error = str(getattr(exc, "reason", exc))
        if attempt <= nrt.webhook_retries:
            time.sleep(max(0.0, min(wait, deadline - time.monotonic())))
            wait *= 2
    log.warning("webhook %s failed: %s", url, error)
    return {"url": url, "ok": False, "status": status, "attempts": attempt, "error": error}
