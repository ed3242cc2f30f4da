"""Ascending + descending decomposition, scored against a 3-D ground-motion truth.

The two tracks are simulated from one east/north/up motion (`simulate/descending.py`) on
different grids and calendars, inverted with the SBAS pipeline and decomposed.
"""

import numpy as np
import pytest
import xarray as xr

from mtinsar.analysis.decompose import attach_los, decompose, rereference_at
from mtinsar.config import RunConfig
from mtinsar.errors import InputError
from mtinsar.simulate.descending import GroundMotion, simulate_track, simulate_track_pair, truth_on
from mtinsar.workflows.pipeline import run_sbas

#: A stable, coherent point inside both frames (away from the bowl and the slope).
REFERENCE = (-99.294, 19.562)
NOISE_OFF = {
    "turbulence": False,
    "stratified": False,
    "dem_error": False,
    "decorrelation": False,
    "water": False,
    "field_event": False,
}


def _run_pair(**kwargs):
    asc, desc, motion = simulate_track_pair(n_dates=30, **kwargs)
    stacks = asc.to_ifgstack(), desc.to_ifgstack()
    results = [run_sbas(s, RunConfig()).result for s in stacks]
    return asc, desc, motion, stacks, results


@pytest.fixture(scope="module")
def noisy_pair():
    return _run_pair()


@pytest.fixture(scope="module")
def clean_pair():
    return _run_pair(**NOISE_OFF)


def _decompose(run, **kwargs):
    _, _, _, (sa, sd), (ra, rd) = run
    return decompose(ra, rd, asc_geometry=sa, desc_geometry=sd, reference=REFERENCE, **kwargs)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)))


def _los_rmse(scene, result) -> float:
    """LOS velocity RMSE of one track vs its truth, both relative to REFERENCE."""
    ds = rereference_at(attach_los(result, scene.truth, "track"), REFERENCE, 2, "track")
    ok = ds["mask"].values
    return _rms(ds["velocity"].values[ok] - scene.truth["velocity"].values[ok])


def test_noise_free_tracks_give_the_3d_truth(clean_pair):
    """Without noise only resampling and the model's seasonal leak remain: < 1.5 mm/yr."""
    out = _decompose(clean_pair)
    motion = clean_pair[2]
    truth = truth_on(out, motion)
    ok = out["mask"].values
    assert ok.sum() > 0.8 * ok.size
    for comp in ("east", "up"):
        err = out[f"velocity_{comp}"].values[ok] - truth[f"velocity_{comp}"].values[ok]
        assert _rms(err) < 1.5e-3, comp
    # the motion is large: a swapped or sign-flipped component would fail by cm/yr
    assert np.abs(truth["velocity_up"].values[ok]).max() > 0.05
    assert np.abs(truth["velocity_east"].values[ok]).max() > 0.025
    lon, lat = np.meshgrid(out["x"].values, out["y"].values)
    east, _, up = motion.displacement(out["time"].values, lon, lat)
    for comp, series in (("east", east), ("up", up)):
        err = out[f"displacement_{comp}"].values[:, ok] - (series - series[:1])[:, ok]
        assert _rms(err) < 1.5e-3, comp


def test_noisy_velocity_rmse_within_1p5_los_rmse(noisy_pair):
    """Acceptance: vertical and east RMSE vs truth within 1.5x the LOS RMSE of the tracks."""
    asc, desc, motion, _, (ra, rd) = noisy_pair
    los_rmse = np.sqrt((_los_rmse(asc, ra) ** 2 + _los_rmse(desc, rd) ** 2) / 2)
    out = _decompose(noisy_pair)
    truth = truth_on(out, motion)
    ok = out["mask"].values
    rmse = {
        c: _rms(out[f"velocity_{c}"].values[ok] - truth[f"velocity_{c}"].values[ok])
        for c in ("east", "up")
    }
    assert rmse["east"] <= 1.5 * los_rmse, (rmse, los_rmse)
    assert rmse["up"] <= 1.5 * los_rmse, (rmse, los_rmse)
    assert los_rmse > 1e-3  # the scene is noisy: the bound is not met trivially


def test_covariance_is_the_weighted_least_squares_one(noisy_pair):
    """velocity_*_std and the correlation equal (G^T W G)^-1 computed pixel by pixel."""
    _, _, _, (sa, sd), (ra, rd) = noisy_pair
    out = _decompose(noisy_pair)
    iy, ix = 20, 12
    lat, lon = float(out["y"][iy]), float(out["x"][ix])
    rows, sig = [], []
    for stack, res in ((sa, ra), (sd, rd)):
        px = {"y": lat, "x": lon}
        if stack is sd:  # the descending track is resampled bilinearly onto this pixel
            g = [float(stack[v].interp(px)) for v in ("los_e", "los_u")]
            s = float(res["velocity_std"].interp(px))
        else:
            g = [float(stack[v].sel(px)) for v in ("los_e", "los_u")]
            s = float(res["velocity_std"].sel(px))
        rows.append(g)
        sig.append(s)
    g = np.array(rows)
    cov = np.linalg.inv(g.T @ np.diag(1 / np.array(sig) ** 2) @ g)
    got = out.isel(y=iy, x=ix)
    np.testing.assert_allclose(float(got["velocity_east_std"]), np.sqrt(cov[0, 0]), rtol=2e-3)
    np.testing.assert_allclose(float(got["velocity_up_std"]), np.sqrt(cov[1, 1]), rtol=2e-3)
    corr = cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1])
    np.testing.assert_allclose(float(got["velocity_east_up_corr"]), corr, atol=2e-3)


def test_north_motion_leaks_as_documented():
    """With a north rate the bias equals north_leak * v_N (the documented N-S assumption)."""
    motion = GroundMotion(north_rate=0.02, seasonal_up=0.0)
    cfgs = simulate_track_pair(n_dates=12, **NOISE_OFF)
    scenes = [simulate_track(s.config, motion) for s in cfgs[:2]]
    stacks = [s.to_ifgstack() for s in scenes]
    ra, rd = (run_sbas(s, RunConfig()).result for s in stacks)
    out = decompose(ra, rd, asc_geometry=stacks[0], desc_geometry=stacks[1], reference=REFERENCE)
    truth = truth_on(out, motion)
    ok = out["mask"].values
    vn = truth["velocity_north"].values[ok]
    assert vn.max() == pytest.approx(0.02, rel=0.05)
    bias_up = out["velocity_up"].values[ok] - truth["velocity_up"].values[ok]
    predicted = out["north_leak_up"].values[ok] * vn
    assert np.abs(predicted).max() > 2e-3  # the leak is real, not negligible
    assert _rms(bias_up - predicted) < 1.5e-3


def test_nearest_dates_match_interpolated_velocity(clean_pair):
    near = _decompose(clean_pair, dates="nearest", tolerance_days=6)
    interp = _decompose(clean_pair)
    assert near.sizes["time"] >= 0.8 * interp.sizes["time"]
    np.testing.assert_allclose(near["velocity_up"], interp["velocity_up"])


def test_missing_los_is_an_input_error(clean_pair):
    _, _, _, _, (ra, rd) = clean_pair
    los = ["los_e", "los_n", "los_u"]
    with pytest.raises(InputError, match="asc_geometry"):
        decompose(ra.drop_vars(los), rd.drop_vars(los))


def test_same_look_direction_is_refused(clean_pair):
    _, _, _, (sa, _), (ra, _) = clean_pair
    with pytest.raises(InputError, match="same direction"):
        decompose(ra, ra, asc_geometry=sa, desc_geometry=sa)


def test_results_that_do_not_overlap(clean_pair):
    _, _, _, (sa, sd), (ra, rd) = clean_pair
    far = rd.assign_coords(x=rd["x"] + 1.0)
    geom = sd.assign_coords(x=sd["x"] + 1.0)
    with pytest.raises(InputError, match="do not overlap"):
        decompose(ra, far, asc_geometry=sa, desc_geometry=geom)


def test_no_common_dates(clean_pair):
    _, _, _, (sa, sd), (ra, rd) = clean_pair
    later = rd.assign_coords(time=rd["time"] + np.timedelta64(3 * 365, "D"))
    with pytest.raises(InputError, match="common period"):
        decompose(ra, later, asc_geometry=sa, desc_geometry=sd)
    with pytest.raises(InputError, match="tolerance_days"):
        decompose(ra, later, asc_geometry=sa, desc_geometry=sd, dates="nearest")


def test_result_with_los_needs_no_geometry(clean_pair):
    _, _, _, (sa, sd), (ra, rd) = clean_pair
    with_los = [
        r.assign({v: s[v] for v in ("los_e", "los_n", "los_u")}) for r, s in ((ra, sa), (rd, sd))
    ]
    out = decompose(*with_los, reference=REFERENCE)
    ref = _decompose(clean_pair)
    xr.testing.assert_allclose(out["velocity_up"], ref["velocity_up"])


def test_descending_result_in_another_crs(clean_pair):
    """A descending result on a UTM grid is resampled onto the ascending lon/lat grid."""
    asc, desc, motion, (sa, sd), (ra, rd) = clean_pair
    d = attach_los(rd, sd, "descending")
    d = d.assign(mask=d["mask"].astype(np.float32)).rio.write_crs(d.rio.crs)
    utm = xr.Dataset(
        {
            k: v.rio.write_nodata(np.nan, encoded=False).rio.reproject("EPSG:32614")
            for k, v in d.data_vars.items()
        }
    )
    utm = utm.assign(mask=utm["mask"] == 1).rio.write_crs("EPSG:32614")
    out = decompose(ra, utm, asc_geometry=sa, reference=REFERENCE)
    truth = truth_on(out, motion)
    ok = out["mask"].values
    assert ok.sum() > 0.8 * ok.size
    for comp in ("east", "up"):
        err = out[f"velocity_{comp}"].values[ok] - truth[f"velocity_{comp}"].values[ok]
        assert _rms(err) < 2e-3, comp  # two resamplings (to UTM and back): measured 0.7/1.2
