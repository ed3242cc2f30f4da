"""Near-real-time update: one new acquisition appended to an existing time series, and alerts.

The new date. Each new pair k links the new date to an existing date o_k, so it measures
x_new - x[o_k] (x the phase history in metres, c = -λ/4π times the pair phase referenced
with the run's reference window). Two estimators, chosen by what the result carries:

- Exact sequential least squares (`mtinsar.nrt.sequential`, when the result holds its
  run's pair network, `nrt.network.attach_network`): the Kalman analysis step of Dalaison
  & Jolivet 2020 (JGR Solid Earth 125, e2019JB019150) on the history estimated by the last
  inversion. For a pixel whose pairs are all valid this equals re-inverting every pair
  (tested to 1e-9); for pixels that lost pairs it is a close approximation (their Q
  differs). Cost O(k + |W|³) + O(n |W|) per pixel, with no pair of the history read.
- Frozen history (`mtinsar.nrt.frozen`, no network stored): each valid pair gives
  d_new = d[o_k] + c·unw_k and they are averaged with the pair weights — the same step in
  the limit where the past is known exactly. O(k) per pixel and only the paired dates are
  read, but the history keeps the small corrections a re-inversion would make (0.6 mm/yr
  RMS in velocity after 5 dates on a 30-date scene, against 0.23 mm/yr for the exact step).

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
over its blocks (`mtinsar.nrt.state.history_pass`).

The new date's alerts (departures from the model, velocity changes) are made by
`mtinsar.nrt.alerts`; the re-run policy is `mtinsar.nrt.rerun`.

The update is pure: it reads the result's arrays (a lazily opened result is read only
where needed) and returns the new result and a report. Writing the version, its
alerts.geojson and POSTing the webhooks is the job layer's (`mtinsar.workflows.jobs`).
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from mtinsar.analysis.inversion import coherence_weights
from mtinsar.analysis.model import reference_index
from mtinsar.config import NrtConfig, RunConfig
from mtinsar.conventions import SENTINEL1_WAVELENGTH, phase_to_displacement, years_since
from mtinsar.corrections.reference import reference_phase
from mtinsar.nrt.alerts import date_alerts, velocity_change
from mtinsar.nrt.frozen import estimate_new_date
from mtinsar.nrt.network import extended
from mtinsar.nrt.new_pairs import check_config, new_date_of, pair_qc, remove_dem_error
from mtinsar.nrt.rerun import full_rerun_due, median_residual
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
    """What one `update` did, for the log, the run summary and the job that posts alerts."""

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
    #: the history's correction, history_gain (n, m) @ history_delta (m, y, x) [m]
    history_gain: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)), repr=False)
    history_delta: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0)), repr=False)

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (the alert geometries and the correction left out)."""
        left_out = ("alerts", "history_gain", "history_delta")
        out = {k: v for k, v in self.__dict__.items() if k not in left_out}
        out["n_alert_areas"] = len(self.alerts.get("features", []))
        return out


@dataclass
class _Step:
    """The new date estimated and the model refitted with it (what `_step` found)."""

    dates: np.ndarray  # the result's dates and the new one
    old_index: np.ndarray  # each kept pair's earlier date
    est: NewDate
    state: ModelState
    after: Solution  # the model with the new date
    departure: np.ndarray  # (y, x) [m] new displacement minus the model's prediction
    sigma: np.ndarray  # (y, x) [m] the prediction's std


class _Clock:
    """Seconds per stage of one update."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.stages: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.stages[stage], self.last = round(now - self.last, 4), now

    def seconds(self) -> dict[str, float]:
        return {**self.stages, "total": round(self.last - self.start, 4)}


# --------------------------------------------------------------------------- entry point


def update(
    result: xr.Dataset, new_pairs_stack: xr.Dataset, config: RunConfig
) -> tuple[xr.Dataset, UpdateReport]:
    """Append the one new date of `new_pairs_stack` to `result`; return it and a report.

    `result` is a `run_sbas` (or earlier `update`) result; `new_pairs_stack` an `IfgStack` on
    the same grid whose pairs each link the new date (later than every date of `result`) to
    a date of `result`. Displacement of the new date [m] is relative to the same reference
    date and pixel; velocity, velocity_std and model_residual are refitted incrementally;
    the new date's alerts (`config.nrt`; GeoJSON dict) are in the report. No I/O beyond
    reading `result`'s arrays: the caller writes and posts.
    """
    clock, nrt = _Clock(), config.nrt
    check_config(config)
    new_date = new_date_of(result, new_pairs_stack)
    kept, dropped = pair_qc(new_pairs_stack, config)
    kept = remove_dem_error(kept, result, config)
    clock.lap("qc")
    step = _step(result, kept, new_date, config, clock)
    base = _base_velocity(result)
    updated = _updated_result(result, step, kept, base)
    clock.lap("result")
    mask = result["mask"].values.astype(bool) if nrt.reliable_only else None
    velocity, velocity_std = updated["velocity"].values, updated["velocity_std"].values
    change = velocity_change(velocity, velocity_std, *base, nrt.velocity_change_mm_yr * 1e-3)
    departure = (step.departure, step.sigma)
    collection, alert_pixels = date_alerts(result, str(new_date), departure, change, nrt, mask)
    clock.lap("alerts")
    count, median_res, due, reason = _rerun_policy(result, updated, nrt)
    updated.attrs["nrt_last_update"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    est = step.est
    gain, delta = est.correction() or (
        np.zeros((step.dates.size - 1, 0)),  # frozen: the history is not corrected
        np.zeros((0, *est.displacement.shape)),
    )
    report = UpdateReport(
        date=str(new_date),
        pairs_used=[str(p) for p in kept["pair"].values],
        pairs_dropped=dropped,
        n_pixels_estimated=int(np.isfinite(est.displacement).sum()),
        n_cycles_corrected=int(est.cycles_corrected.sum()),
        alerts=collection,
        alert_pixels=alert_pixels,
        updates_since_full=count,
        median_residual_m=median_res,
        full_rerun_due=due,
        full_rerun_reason=reason,
        history_gain=gain,
        history_delta=delta,
    )
    clock.lap("report")
    report.timings_s = clock.seconds()
    log.info(
        "update %s: %d pairs, %d pixels, %d alert areas%s",
        new_date,
        len(report.pairs_used),
        report.n_pixels_estimated,
        len(collection["features"]),
        f"; full re-run due: {reason}" if due else "",
    )
    return updated, report


def _step(
    result: xr.Dataset, kept: xr.Dataset, new_date: np.datetime64, config: RunConfig, clock: _Clock
) -> _Step:
    """The new date's estimate from the `kept` pairs, with the model refitted (one pass over
    the stored history, `history_pass`)."""
    known = result["time"].values.astype("datetime64[D]")
    old_index = np.searchsorted(known, kept["ref_date"].values.astype("datetime64[D]"))
    iref = reference_index(known, config.model.reference_date)
    plan = _step_plan(result, old_index, iref)
    wanted = np.unique([*old_index, 0, iref])
    gain = None if plan is None else plan.gain
    sums = history_pass(result["displacement"].data, known, wanted, config.model, gain)
    clock.lap("read")
    rows = dict(zip(wanted.tolist(), sums.rows, strict=True))
    est = _estimate(result, kept, old_index, config, plan, rows, iref)
    clock.lap("estimate")
    state = sums.state
    before = solve_state(state)
    g_new = fixed_design(np.array([new_date]), state.origin, config.model)[0][0]
    departure, sigma = prediction_departure(before, g_new, est.displacement)
    correction = est.correction()
    if correction is not None:  # the exact step moved the history too
        state = correct_history(state, known, sums, *correction, config.model)
    state = add_date(state, g_new, est.displacement)
    after = solve_state(state)
    clock.lap("model")
    dates = np.append(known, new_date)
    return _Step(dates, old_index, est, state, after, departure, sigma)


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
        assert step.gain_at_reference is not None and est.history_delta is not None  # iref > 0
        moved = np.tensordot(step.gain_at_reference, est.history_delta, axes=1)  # (y, x)
        est.displacement = est.displacement - (rows[iref] - rows[0] + moved)
    return est


def _rerun_policy(
    result: xr.Dataset, updated: xr.Dataset, nrt: NrtConfig
) -> tuple[int, float, bool, str]:
    """(updates since the last full run, median residual [m], re-run due, why) after this
    update; the count and the baseline residual of the last full run go to `updated`'s attrs
    (`rerun.rerun_due` reads them)."""
    median = median_residual(updated)
    count = int(result.attrs.get("nrt_updates_since_full", 0)) + 1
    baseline = float(result.attrs.get("nrt_baseline_residual_m", np.nan))
    if not np.isfinite(baseline):
        baseline = median_residual(result)
    updated.attrs.update(nrt_updates_since_full=count, nrt_baseline_residual_m=baseline)
    return count, median, *full_rerun_due(count, median, baseline, nrt)


# --------------------------------------------------------------------------- the new result


def _base_velocity(result: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(velocity, its std) [m/yr] of the last full run: kept by the earlier updates, or
    `result`'s own at the first update after a full run."""
    if all(name in result.data_vars for name in BASE_VELOCITY):
        base, base_std = (result[name].values for name in BASE_VELOCITY)
        return base, base_std
    return result["velocity"].values, result["velocity_std"].values


def _updated_result(
    result: xr.Dataset, step: _Step, kept: xr.Dataset, base: tuple[np.ndarray, np.ndarray]
) -> xr.Dataset:
    """`result` with the (corrected) history, the new date, the refitted model layers and
    the last full run's velocity `base` (velocity, std)."""
    est, dates = step.est, step.dates
    t = years_since(dates, step.state.origin)
    v, v_std = mid_span_velocity(step.after, step.state.names, float((t[0] + t[-1]) / 2))
    cube = _appended_cube(result["displacement"].data, est)
    out = result.drop_vars("nrt_network", errors="ignore").drop_dims("time")
    out = out.assign_coords(time=dates.astype("datetime64[ns]"))
    grid = {"grid_mapping": "spatial_ref"} if "spatial_ref" in result.coords else {}
    bperp = np.append(result["bperp"].values, _new_bperp(result, kept)).astype(np.float32)
    new: dict[str, Any] = {  # assigned at once: each xarray assignment aligns the dataset
        "displacement": (("time", "y", "x"), cube, {**result["displacement"].attrs, **grid}),
        "bperp": ("time", bperp, result["bperp"].attrs),
    }
    layers = (("velocity", v), ("velocity_std", v_std), ("model_residual", step.after.rms))
    for name, values in layers:
        new[name] = (("y", "x"), values.astype(np.float32), {**result[name].attrs, **grid})
    if "n_valid_pairs" in result.data_vars:
        new["n_valid_pairs"] = (
            ("y", "x"),
            (result["n_valid_pairs"].values + est.n_pairs).astype(np.int16),
            result["n_valid_pairs"].attrs,
        )
    if "nrt_network" in result.data_vars:
        lap = extended(result["nrt_network"].values, step.old_index)
        new["nrt_network"] = (("nrt_date", "nrt_date_2"), lap)
    for name, values in zip(BASE_VELOCITY, base, strict=True):
        new[name] = (("y", "x"), values.astype(np.float32), result["velocity"].attrs)
    out = out.assign(new)
    out.attrs.update(result.attrs)
    return out


def _appended_cube(history: Any, est: NewDate) -> da.Array:
    """The corrected history and the new date as one lazy float32 cube (time, y, x) [m].

    Lazy so that an update writing a layer (`versions.layer_dataset`) computes only the new
    date: the corrected history is stored as its factors, never as a cube.
    """
    hist = as_dask(corrected_history(as_dask(history).astype(np.float32), est))
    new = as_dask(est.displacement.astype(np.float32)[None])
    return da.concatenate([hist, new.rechunk((1, *hist.chunks[1:]))], axis=0)


def _new_bperp(result: xr.Dataset, kept: xr.Dataset) -> float:
    """Perpendicular baseline [m] of the new date w.r.t. the first: mean over its pairs."""
    if "bperp" not in kept or "bperp" not in result:
        return float("nan")
    old = result["bperp"].sel(time=kept["ref_date"].values).values
    return float(np.nanmean(old + kept["bperp"].values)) if np.isfinite(old).any() else np.nan
