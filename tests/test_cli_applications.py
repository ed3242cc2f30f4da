"""`mtinsar infra`, `decompose` and `gnss` end to end on simulated scenes."""

import json
import subprocess
import sys

import numpy as np
import pytest
import rasterio
import xarray as xr

from mtinsar.simulate import SceneConfig, load_truth, simulate_scene, write_licsar
from mtinsar.simulate.descending import simulate_track_pair
from mtinsar.simulate.gnss import simulate_stations, write_tenv3
from mtinsar.simulate.infra import write_railway


def mtinsar(*args):
    cmd = [sys.executable, "-m", "mtinsar", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def scene_and_results(tmp_path_factory):
    root = tmp_path_factory.mktemp("apps")
    scene = simulate_scene(SceneConfig.noise_free(ny=100, nx=120, n_dates=20))
    frame = write_licsar(scene, root / "frame")
    proc = mtinsar("run", frame, root / "results", "-q")
    assert proc.returncode == 0, proc.stderr
    return scene, frame, root / "results"


def test_infra_flags_the_bowl_segments(scene_and_results, tmp_path):
    _, frame, results = scene_and_results
    rail = write_railway(load_truth(frame), tmp_path / "rail.geojson")
    proc = mtinsar("infra", results, rail, tmp_path / "infra", "-q")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "infra" / "summary.json").read_text())
    assert summary["segments_at_risk"] and summary["n_segments"] > len(summary["segments_at_risk"])
    assert (tmp_path / "infra" / "report.html").stat().st_size > 10_000
    bad = mtinsar("infra", results, tmp_path / "missing.geojson", tmp_path / "x", "-q")
    assert bad.returncode == 2 and "missing.geojson" in bad.stderr


def test_gnss_tie_removes_the_reference_offset(scene_and_results, tmp_path):
    """Referenced inside the subsidence bowl, the result is off by the bowl's motion; tied to
    three stations on other pixels, it matches the (absolute) truth again."""
    scene, frame, _ = scene_and_results
    truth = scene.truth
    iy, ix = np.unravel_index(np.argmin(truth["velocity"].values), truth["velocity"].shape)
    lon, lat = float(truth["x"][ix]), float(truth["y"][iy])
    results = tmp_path / "moving_ref"
    proc = mtinsar("run", frame, results, "--ref-lon", lon, "--ref-lat", lat, "-q")
    assert proc.returncode == 0, proc.stderr
    pixels = [(20, 30), (70, 90), (50, 20)]
    files = [
        write_tenv3(st, tmp_path / f"{st.attrs['name']}.tenv3")
        for st in simulate_stations(scene, pixels, sigma=0.001)
    ]
    before = xr.open_zarr(results / "timeseries.zarr")["displacement"].values[-1]
    proc = mtinsar("gnss", results, *files, tmp_path / "tied", "-q")
    assert proc.returncode == 0, proc.stderr
    after = xr.open_zarr(tmp_path / "tied" / "timeseries.zarr")["displacement"].values[-1]
    true_last = truth["displacement"].values[-1]  # relative to the first date only
    assert np.nanmedian(np.abs(before - true_last)) > 0.02  # the reference pixel's motion
    assert np.nanmedian(np.abs(after - true_last)) < 0.003  # removed to the stations' noise
    assert (tmp_path / "tied" / "gnss_agreement.csv").is_file()


def test_decompose_gives_vertical_and_east(tmp_path):
    quiet = {"turbulence": False, "stratified": False, "dem_error": False, "water": False}
    asc, desc, _ = simulate_track_pair(ny=40, nx=48, n_dates=16, **quiet)
    for name, scene in (("asc", asc), ("desc", desc)):
        proc = mtinsar("run", write_licsar(scene, tmp_path / name), tmp_path / f"r_{name}", "-q")
        assert proc.returncode == 0, proc.stderr
    lon, lat = float(asc.truth["x"][20]), float(asc.truth["y"][20])
    proc = mtinsar(
        "decompose", tmp_path / "r_asc", tmp_path / "r_desc", tmp_path / "ew",
        "--ref-lon", lon, "--ref-lat", lat, "-q",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with rasterio.open(tmp_path / "ew" / "velocity_up.tif") as src:
        up = src.read(1)
    assert np.isfinite(up).mean() > 0.5
