"""Simulated GNSS stations: consistent with the LOS truth, noise as asked, files round-trip."""

import numpy as np
import pytest

from mtinsar.analysis.gnss import project_to_los, read_gnss_csv, read_stations, read_tenv3
from mtinsar.simulate import SceneConfig, simulate_scene
from mtinsar.simulate.gnss import simulate_stations, write_gnss_csv, write_tenv3

SIGMA = 0.003
#: (row, col): stable corner, the main subsidence bowl, far corner
PIXELS = [(4, 5), (10, 10), (20, 22)]


@pytest.fixture(scope="module")
def scene():
    return simulate_scene(SceneConfig(ny=24, nx=28, n_dates=12, seed=5))


@pytest.fixture(scope="module")
def stations(scene):
    return simulate_stations(scene, PIXELS, sigma=SIGMA, seed=3)


def test_station_los_matches_truth_within_noise(scene, stations):
    truth = scene.truth
    residuals = []
    for st, (iy, ix) in zip(stations, PIXELS, strict=True):
        vec = [float(truth[v].values[iy, ix]) for v in ("los_e", "los_n", "los_u")]
        los = project_to_los(st, vec)["los"].sel(time=truth["time"].values)
        want = truth["displacement"].values[:, iy, ix]
        # the series starts at zero on the first (noisy) day: compare after removing the mean
        r = los.values - want
        residuals.append(r - r.mean())
        assert st["east"].std() == pytest.approx(SIGMA, rel=0.2)  # east is noise only
        assert st.attrs["lon"] == pytest.approx(float(truth["x"][ix]))
        assert st.attrs["lat"] == pytest.approx(float(truth["y"][iy]))
    r = np.concatenate(residuals)
    # LOS noise = SIGMA (unit vector); the truth signal itself reaches cm, so a wrong
    # projection (e.g. d_up = d_los) would fail
    assert np.std(r) == pytest.approx(SIGMA, rel=0.35)
    assert np.abs(scene.truth["displacement"].values[:, 10, 10]).max() > 10 * SIGMA
    assert stations[1]["up"].values.min() < -10 * SIGMA  # the bowl subsides


def test_daily_epochs_span_the_scene(scene, stations):
    t = stations[0]["time"].values
    assert t[0] == scene.dates[0] and t[-1] == scene.dates[-1]
    assert (np.diff(t) == np.timedelta64(1, "D")).all()


@pytest.mark.parametrize("fmt", ["csv", "tenv3"])
def test_files_round_trip(tmp_path, stations, fmt):
    st = stations[1]
    if fmt == "csv":
        path = write_gnss_csv(st, tmp_path / "S001.csv")
        back = read_gnss_csv(path)
    else:
        path = write_tenv3(st, tmp_path / "S001.tenv3")
        back = read_tenv3(path)
    np.testing.assert_array_equal(back["time"].values, st["time"].values)
    for c in ("east", "north", "up", "sig_up"):
        np.testing.assert_allclose(back[c].values, st[c].values, atol=2e-6)
    assert back.attrs["lon"] == pytest.approx(st.attrs["lon"], abs=1e-6)
    assert back.attrs["lat"] == pytest.approx(st.attrs["lat"], abs=1e-6)
    assert read_stations([path])[0].attrs["name"].startswith("S001")
