"""Near-real-time update: sequential estimate of new dates, scored against a full re-run and
against the simulator's truth; recursive model fit; input errors."""

import time

import numpy as np
import pytest
import xarray as xr
from pydantic import ValidationError

from mtinsar.analysis.network import Network
from mtinsar.config import NrtConfig, RunConfig
from mtinsar.errors import ConfigError, InputError
from mtinsar.nrt import update
from mtinsar.nrt.network import attach_network
from mtinsar.nrt.rerun import full_rerun_due
from mtinsar.simulate import SceneConfig, simulate_scene
from mtinsar.workflows.pipeline import run_sbas

N_NEW = 5


def _pairs_ending(stack, date):
    return stack.isel(pair=stack["sec_date"].values == date)


@pytest.fixture(scope="module")
def scene():
    sc = simulate_scene(SceneConfig(ny=80, nx=100, n_dates=30))
    return sc, sc.to_ifgstack()


@pytest.fixture(scope="module")
def withheld_run(scene):
    """run_sbas without the last N_NEW dates (every pair touching them dropped)."""
    sc, stack = scene
    old = stack.isel(pair=stack["sec_date"].values < sc.dates[-N_NEW])
    return run_sbas(old, RunConfig())


@pytest.fixture(scope="module")
def sequential(scene, withheld_run):
    """The withheld dates added one by one, each from its own pairs only."""
    sc, stack = scene
    result = attach_network(withheld_run.result, withheld_run.network)
    reports, seconds = [], []
    for date in sc.dates[-N_NEW:]:
        start = time.perf_counter()
        result, report = update(result, _pairs_ending(stack, date), RunConfig())
        seconds.append(time.perf_counter() - start)
        reports.append(report)
    return result, reports, seconds


@pytest.fixture(scope="module")
def full_rerun(scene, withheld_run):
    """run_sbas on every pair, with the reference of the withheld run."""
    _, stack = scene
    res = withheld_run.result
    config = RunConfig(
        reference={"lon": res.attrs["reference_lon"], "lat": res.attrs["reference_lat"]}
    )
    start = time.perf_counter()
    run = run_sbas(stack, config)
    return run, time.perf_counter() - start


def _rms_mm(a):
    return float(np.sqrt(np.mean(a**2)) * 1e3)


def test_sequential_updates_match_full_rerun(scene, sequential, full_rerun):
    sc, _ = scene
    result, reports, seconds = sequential
    run, full_seconds = full_rerun
    full = run.result
    assert (full.attrs["reference_y"], full.attrs["reference_x"]) == (
        result.attrs["reference_y"],
        result.attrs["reference_x"],
    )
    np.testing.assert_array_equal(result["time"].values, full["time"].values)
    reliable = full["mask"].values & result["mask"].values
    assert reliable.mean() > 0.9
    dv = (result["velocity"].values - full["velocity"].values)[reliable]
    rms = _rms_mm(dv)
    print(f"velocity vs full re-run: {rms:.3f} mm/yr RMS over {reliable.sum()} reliable pixels")
    print(f"update {np.mean(seconds):.3f} s each vs full run {full_seconds:.3f} s")
    assert rms <= 0.5
    # the exact sequential step reproduces the full re-run where every pair is valid
    complete = reliable & (full["n_valid_pairs"].values == run.network.n_pairs)
    assert complete.sum() > 1000
    assert np.abs(dv[complete[reliable]]).max() < 1e-4  # m/yr: float32 storage only
    dd = result["displacement"].values - full["displacement"].values
    assert _rms_mm(dd[:, reliable]) < 0.5
    assert all(r.n_pixels_estimated > 0.9 * reliable.size for r in reports)
    # no new signal on these dates: false alert area < 0.1 % of the pixels on each
    assert all(r.alert_pixels < 0.001 * reliable.size for r in reports)
    assert [r.date for r in reports] == [str(d) for d in sc.dates[-N_NEW:]]
    std = result["velocity_std"].values - full["velocity_std"].values
    assert _rms_mm(std[reliable]) < 0.1
    res = result["model_residual"].values - full["model_residual"].values
    assert _rms_mm(res[reliable]) < 0.1


def test_new_dates_follow_the_truth(scene, sequential, full_rerun):
    """The new dates equal truth deformation + nuisance (what the pairs carry), relative to
    the reference pixel, as closely as a full re-run gets them; the step from the previous
    date, measured directly by pairs, is within their noise (~0.3 mm on coherent land)."""
    sc, _ = scene
    result, _, _ = sequential
    full = full_rerun[0].result
    ry, rx = result.attrs["reference_y"], result.attrs["reference_x"]
    truth = (sc.truth["displacement"] + sc.truth["nuisance"]).values[-N_NEW - 1 :]
    truth = truth - truth[:, ry : ry + 1, rx : rx + 1]
    coherent = sc.truth["coherent"].values & result["mask"].values & full["mask"].values
    ours = result["displacement"].values[-N_NEW - 1 :] - truth
    theirs = full["displacement"].values[-N_NEW - 1 :] - truth
    for k in range(1, N_NEW + 1):
        assert _rms_mm(ours[k][coherent]) <= 1.05 * _rms_mm(theirs[k][coherent]) + 0.05
        step, full_step = ours[k] - ours[k - 1], theirs[k] - theirs[k - 1]
        assert _rms_mm(step[coherent]) <= 1.05 * _rms_mm(full_step[coherent]) + 0.05
        # the reference window's median differs from the truth's reference pixel by a
        # per-date constant (shared by both runs); the rest is the pairs' noise
        assert _rms_mm(step[coherent] - np.median(step[coherent])) < 0.6


def test_update_without_network_estimates_only_the_new_date(scene, withheld_run, full_rerun):
    """Without the run's network the history stays as it was; the result is still close."""
    sc, stack = scene
    result = withheld_run.result.drop_vars("nrt_network")  # runs attach it: take it away
    for date in sc.dates[-N_NEW:]:
        result, _ = update(result, _pairs_ending(stack, date), RunConfig())
    n_old = withheld_run.result.sizes["time"]
    np.testing.assert_array_equal(
        result["displacement"].values[:n_old], withheld_run.result["displacement"].values
    )
    full = full_rerun[0].result
    reliable = full["mask"].values & result["mask"].values
    assert _rms_mm((result["velocity"] - full["velocity"]).values[reliable]) < 1.0


def test_unwrapping_error_in_a_new_pair_is_corrected(scene, withheld_run):
    sc, stack = scene
    new = _pairs_ending(stack, sc.dates[-N_NEW]).copy(deep=True)
    assert new.sizes["pair"] >= 3
    clean, _ = update(withheld_run.result, new, RunConfig())
    unw = new["unw"].values
    unw[1, 10:30, 20:50] += 2 * np.pi
    new["unw"].values[...] = unw
    fixed, report = update(withheld_run.result, new, RunConfig())
    assert report.n_cycles_corrected >= 0.9 * 20 * 30
    a, b = clean["displacement"].values[-1], fixed["displacement"].values[-1]
    same = np.abs(a[10:30, 20:50] - b[10:30, 20:50]) < 1e-6
    assert same.mean() > 0.99  # a pixel whose clean pairs already disagree by ~π may differ
    off = RunConfig(unwrap={"closure": False})
    broken, report = update(withheld_run.result, new, off)
    assert report.n_cycles_corrected == 0
    jump = broken["displacement"].values[-1, 10:30, 20:50] - a[10:30, 20:50]
    assert np.nanmedian(np.abs(jump)) > 0.003  # a 2π error moves the mean of ~4 pairs by ~7 mm


def test_full_rerun_policy(scene, withheld_run):
    sc, stack = scene
    nrt = NrtConfig(full_rerun_every=2)
    result = withheld_run.result
    result, first = update(result, _pairs_ending(stack, sc.dates[-5]), RunConfig(nrt=nrt))
    result, second = update(result, _pairs_ending(stack, sc.dates[-4]), RunConfig(nrt=nrt))
    assert (first.full_rerun_due, second.full_rerun_due) == (False, True)
    assert "full_rerun_every" in second.full_rerun_reason
    assert result.attrs["nrt_updates_since_full"] == 2
    due, reason = full_rerun_due(1, 0.0031, 0.002, NrtConfig(residual_growth_factor=1.5))
    assert due and "residual_growth_factor" in reason
    assert full_rerun_due(1, 0.0029, 0.002, NrtConfig(residual_growth_factor=1.5)) == (False, "")


def test_bad_inputs_name_the_problem(scene, withheld_run):
    sc, stack = scene
    res = withheld_run.result
    cfg = RunConfig()
    two_dates = stack.isel(pair=np.isin(stack["sec_date"].values, sc.dates[-2:]))
    with pytest.raises(InputError, match="one date"):
        update(res, two_dates, cfg)
    with pytest.raises(InputError, match="not after the last date"):
        update(res, _pairs_ending(stack, sc.dates[-N_NEW - 1]), cfg)
    with pytest.raises(InputError, match="start on dates the result does not have"):
        update(res, _pairs_ending(stack, sc.dates[-1]), cfg)
    new = _pairs_ending(stack, sc.dates[-N_NEW])
    with pytest.raises(InputError, match="x grid"):
        update(res, new.isel(x=slice(0, 50)), cfg)
    with pytest.raises(InputError, match="'unw'"):
        update(res, new.drop_vars("unw"), cfg)
    with pytest.raises(InputError, match="no 'velocity'"):
        update(res.drop_vars("velocity"), new, cfg)
    with pytest.raises(ConfigError, match="ramp"):
        update(res, new, RunConfig(ramp={"enabled": True}))
    with pytest.raises(InputError, match="quality control"):
        update(res, new, RunConfig(qc={"min_mean_coherence": 0.99}))
    with pytest.raises(InputError, match="network has"):
        attach_network(
            res, Network.from_pair_dates(stack["ref_date"].values, stack["sec_date"].values)
        )
    with pytest.raises(ValidationError):
        NrtConfig(k_sigma=0)
    with pytest.raises(ValidationError):
        NrtConfig(webhook=["http://x"])  # misspelt key: extra keys are refused


def test_temporal_reference_date_is_kept(scene, withheld_run):
    """With model.reference_date the update's series is the default one re-referenced."""
    sc, stack = scene
    base = attach_network(withheld_run.result, withheld_run.network)
    k = 7
    shifted = base.copy()
    shifted["displacement"] = base["displacement"] - base["displacement"].isel(time=k)
    new = _pairs_ending(stack, sc.dates[-N_NEW])
    plain, _ = update(base, new, RunConfig())
    cfg = RunConfig(model={"reference_date": str(sc.dates[k])})
    moved, _ = update(shifted, new, cfg)
    expected = plain["displacement"] - plain["displacement"].isel(time=k)
    np.testing.assert_allclose(moved["displacement"].values, expected.values, atol=1e-6)
    np.testing.assert_allclose(moved["velocity"].values, plain["velocity"].values, atol=1e-6)
    assert np.nanmax(np.abs(moved["displacement"].values[k])) == 0.0


def test_updated_result_round_trips_through_zarr(scene, withheld_run, tmp_path):
    """An updated result survives a Zarr store: the next update from the store equals the
    next update from the result in memory."""
    sc, stack = scene
    first, _ = update(
        attach_network(withheld_run.result, withheld_run.network),
        _pairs_ending(stack, sc.dates[-N_NEW]),
        RunConfig(),
    )
    first.to_zarr(tmp_path / "v1.zarr", zarr_format=3, consolidated=False)
    reopened = xr.open_zarr(tmp_path / "v1.zarr", consolidated=False, decode_coords="all")
    new = _pairs_ending(stack, sc.dates[-N_NEW + 1])
    a, _ = update(first, new, RunConfig())
    b, report = update(reopened, new, RunConfig())
    for name in ("displacement", "velocity", "velocity_std", "model_residual", "nrt_network"):
        np.testing.assert_allclose(b[name].values, a[name].values, rtol=1e-6, atol=1e-9)
    assert b.attrs["nrt_updates_since_full"] == 2 and report.updates_since_full == 2


def test_update_carries_the_runs_dem_error_over_to_the_new_date():
    sc = simulate_scene(
        SceneConfig(ny=60, nx=80, n_dates=24, turbulence=False, stratified=False, seed=4)
    )
    stack, last = sc.to_ifgstack(), sc.dates[-1]
    cfg = RunConfig(dem_error={"enabled": True})
    run = run_sbas(stack.isel(pair=stack["sec_date"].values < last), cfg)
    result = attach_network(run.result, run.network)
    new = _pairs_ending(stack, last)
    corrected, _ = update(result, new, cfg)
    uncorrected, _ = update(result.drop_vars("dem_error"), new, cfg)
    res = run.result
    ref = {"lon": res.attrs["reference_lon"], "lat": res.attrs["reference_lat"]}
    full = run_sbas(stack, RunConfig(dem_error={"enabled": True}, reference=ref)).result
    reliable = full["mask"].values & res["mask"].values
    err = {
        name: _rms_mm((r["displacement"].values[-1] - full["displacement"].values[-1])[reliable])
        for name, r in (("corrected", corrected), ("uncorrected", uncorrected))
    }
    print(f"new date vs full re-run with DEM-error correction [mm]: {err}")
    assert err["corrected"] < 0.5 * err["uncorrected"]
    assert err["corrected"] < 0.3


def test_update_refuses_corrections_it_cannot_apply(scene, withheld_run):
    sc, stack = scene
    cfg = RunConfig(ramp={"enabled": True})
    with pytest.raises(ConfigError, match=r"corrections \[ramp\].*mtinsar run --full"):
        update(withheld_run.result, _pairs_ending(stack, sc.dates[-N_NEW]), cfg)


def test_dem_error_carried_over_needs_the_new_pairs_baselines(scene, withheld_run):
    sc, stack = scene
    result = withheld_run.result.assign(dem_error=withheld_run.result["velocity"] * 0 + 5.0)
    new = _pairs_ending(stack, sc.dates[-N_NEW]).drop_vars("bperp")
    with pytest.raises(InputError, match=r"corrected for DEM error.*'bperp'"):
        update(result, new, RunConfig())
