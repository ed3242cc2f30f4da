"""External tropospheric delays (GACOS/ERA5 maps), scored against the simulator's truth.

The maps are made from the simulated troposphere itself: zenith delay = -(LOS nuisance) x
cos(incidence) plus a static hydrostatic-like part that is the same at every date, written
on a coarser grid (2x the posting) whose origin is offset from the scene's, as GACOS
delivers them for a user's bounding box.
"""

import numpy as np
import pydantic
import pytest
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from scipy.interpolate import RegularGridInterpolator

from mtinsar.analysis.model import linear_velocity
from mtinsar.config import ExternalDelayConfig, RunConfig
from mtinsar.conventions import years_since
from mtinsar.corrections.external import (
    correct_external,
    delay_to_displacement,
    find_delay_files,
    load_delays,
    read_delay_map,
)
from mtinsar.errors import InputError
from mtinsar.simulate import SceneConfig, simulate_scene
from mtinsar.simulate.score import score_result
from mtinsar.workflows.pipeline import run_sbas

SCENE = {"ny": 80, "nx": 100, "n_dates": 30}
COARSE_STEP = 0.002  # [deg], twice the scene posting


def _ymd(date) -> str:
    return str(np.datetime64(date, "D")).replace("-", "")


@pytest.fixture(scope="module")
def tropo_scene():
    scene = simulate_scene(SceneConfig.noise_free(**SCENE, stratified=True, turbulence=True))
    stack = scene.to_ifgstack()
    return scene, stack, run_sbas(stack, RunConfig()).result


def _coarse_maps(truth):
    """Zenith delays [m] (t, cy, cx) on the coarse grid, with its (lat, lon) centres."""
    lat, lon = truth["y"].values, truth["x"].values
    clon = np.arange(lon[0] - 0.0017, lon[-1] + 0.004, COARSE_STEP)
    clat = np.arange(lat[0] + 0.0017, lat[-1] - 0.004, -COARSE_STEP)
    yy, xx = np.meshgrid(clat, clon, indexing="ij")

    def resample(field):
        f = RegularGridInterpolator(
            (lat[::-1], lon), field[::-1], bounds_error=False, fill_value=None
        )
        return f((yy, xx))

    cos_inc = resample(np.cos(np.deg2rad(truth["incidence"].values.astype(float))))
    static = 2.3 * np.exp(-resample(truth["height"].values.astype(float)) / 7000.0)
    nuisance = truth["nuisance"].values.astype(float)
    zenith = np.stack([static - resample(n) * cos_inc for n in nuisance])
    return zenith, cos_inc, clat, clon


def _geotiff(path, values, clat, clon):
    da = xr.DataArray(values.astype(np.float32), coords={"y": clat, "x": clon}, dims=("y", "x"))
    da.rio.write_crs("EPSG:4326").rio.to_raster(path)


def _gacos_binary(path, values, clat, clon):
    values.astype("<f4").tofile(path)
    header = {
        "WIDTH": len(clon),
        "FILE_LENGTH": len(clat),
        "X_FIRST": clon[0] - COARSE_STEP / 2,
        "Y_FIRST": clat[0] + COARSE_STEP / 2,
        "X_STEP": COARSE_STEP,
        "Y_STEP": -COARSE_STEP,
    }
    path.with_name(path.name + ".rsc").write_text(
        "".join(f"{k:<14}{v}\n" for k, v in header.items())
    )


@pytest.fixture(scope="module")
def gacos_dir(tropo_scene, tmp_path_factory):
    scene, _, _ = tropo_scene
    zenith, _, clat, clon = _coarse_maps(scene.truth)
    folder = tmp_path_factory.mktemp("gacos")
    for date, z in zip(scene.dates, zenith, strict=True):
        _geotiff(folder / f"{_ymd(date)}.ztd.tif", z, clat, clon)
    return folder


def _velocity_rmse(result, truth, displacement) -> float:
    t = years_since(result["time"].values, result["time"].values[0])
    v, _ = linear_velocity(t, displacement.reshape(len(t), -1).astype(float))
    scored = result.assign(
        displacement=(("time", "y", "x"), displacement),
        velocity=(("y", "x"), v.reshape(displacement.shape[1:])),
    )
    return score_result(scored, truth)["velocity_rmse"]


def _reference(result) -> dict:
    return {
        "reference": (result.attrs["reference_y"], result.attrs["reference_x"]),
        "reference_radius": RunConfig().reference.radius,
    }


def test_gacos_maps_remove_most_of_the_tropospheric_error(tropo_scene, gacos_dir):
    scene, stack, result = tropo_scene
    config = ExternalDelayConfig(enabled=True, directory=str(gacos_dir))
    wavelength = stack.attrs["wavelength"]
    delay = load_delays(config, result["time"].values, result["velocity"], wavelength)
    assert np.isfinite(delay).all()
    corrected, correction = correct_external(
        result["displacement"].values, delay, stack["incidence"].values, **_reference(result)
    )
    before = _velocity_rmse(result, scene.truth, result["displacement"].values)
    after = _velocity_rmse(result, scene.truth, corrected)
    # What remains is the turbulence finer than the maps' 2x coarser grid.
    assert after <= 0.2 * before, (before, after)
    np.testing.assert_allclose(result["displacement"].values - corrected, correction, atol=1e-6)


def test_exact_delays_on_the_result_grid_correct_exactly(tropo_scene):
    """Sign, LOS projection and referencing, without resampling."""
    scene, stack, result = tropo_scene
    inc = stack["incidence"].values.astype(float)
    zenith = 2.0 - scene.truth["nuisance"].values * np.cos(np.deg2rad(inc))
    disp = result["displacement"].values
    corrected, _ = correct_external(disp, zenith, inc, **_reference(result))
    assert _velocity_rmse(result, scene.truth, corrected) <= 1e-6
    scored = result.assign(displacement=(("time", "y", "x"), corrected))
    assert score_result(scored, scene.truth)["displacement_rmse"] <= 1e-6


def test_gacos_binary_and_licsar_slant_radians_read_the_same(tropo_scene, gacos_dir, tmp_path):
    scene, stack, result = tropo_scene
    zenith, cos_inc, clat, clon = _coarse_maps(scene.truth)
    wavelength = stack.attrs["wavelength"]
    dates = scene.dates[:3]
    for date, z in zip(dates, zenith, strict=False):
        _gacos_binary(tmp_path / f"{_ymd(date)}.ztd", z, clat, clon)
        rad = z / cos_inc * 4 * np.pi / wavelength
        _geotiff(tmp_path / f"{_ymd(date)}.sltd.geo.tif", rad, clat, clon)
    like, inc = result["velocity"], stack["incidence"].values
    tif = load_delays(ExternalDelayConfig(directory=str(gacos_dir)), dates, like, wavelength)
    ztd = load_delays(ExternalDelayConfig(directory=str(tmp_path)), dates, like, wavelength)
    sltd_config = ExternalDelayConfig(
        directory=str(tmp_path), patterns=["{date}.sltd.geo.tif"], kind="slant", units="rad"
    )
    sltd = load_delays(sltd_config, dates, like, wavelength)
    np.testing.assert_allclose(ztd, tif, atol=1e-6)  # float32 files, same grid
    los_tif = delay_to_displacement(tif, inc, "zenith")
    los_sltd = delay_to_displacement(sltd, inc, "slant")
    # Projected before or after resampling: equal to second order in the grid spacing.
    assert np.abs((los_sltd - los_sltd[0]) - (los_tif - los_tif[0])).max() < 2e-4


def test_missing_and_ambiguous_files_are_named(tropo_scene, gacos_dir, tmp_path):
    scene, _, _ = tropo_scene
    dates = scene.dates[:4]
    for date in dates[:2]:
        (tmp_path / f"{_ymd(date)}.ztd.tif").write_bytes(b"")
    with pytest.raises(InputError, match=f"{_ymd(dates[2])}.*external.patterns"):
        find_delay_files(tmp_path, dates, ["{date}.ztd.tif"])
    (tmp_path / f"{_ymd(dates[0])}_b.ztd.tif").write_bytes(b"")
    with pytest.raises(InputError, match="specific"):
        find_delay_files(tmp_path, dates[:1], ["{date}*.ztd.tif"])
    with pytest.raises(InputError, match="does not exist"):
        find_delay_files(tmp_path / "nowhere", dates, ["{date}.ztd.tif"])
    with pytest.raises(InputError, match=f"cannot read delay map .*{_ymd(dates[1])}"):
        read_delay_map(tmp_path / f"{_ymd(dates[1])}.ztd.tif")
    assert find_delay_files(gacos_dir, dates, ["{date}.ztd.tif"])[3].parent == gacos_dir


def test_maps_that_miss_part_of_the_grid_are_refused(tropo_scene, tmp_path):
    scene, stack, result = tropo_scene
    date = scene.dates[0]
    lat, lon = scene.truth["y"].values, scene.truth["x"].values
    clat = np.arange(lat[0], lat[40], -COARSE_STEP)  # the northern half only
    clon = np.arange(lon[0], lon[-1] + 0.004, COARSE_STEP)
    _geotiff(tmp_path / f"{_ymd(date)}.ztd.tif", np.ones((len(clat), len(clon))), clat, clon)
    config = ExternalDelayConfig(directory=str(tmp_path))
    with pytest.raises(InputError, match=f"{_ymd(date)}.ztd.tif covers .*larger area"):
        load_delays(config, [date], result["velocity"], stack.attrs["wavelength"])


def test_broken_gacos_header_multiband_map_and_config_are_refused(tmp_path):
    path = tmp_path / "20200101.ztd"
    np.zeros(12, dtype="<f4").tofile(path)
    rsc = tmp_path / "20200101.ztd.rsc"
    rsc.write_text("WIDTH 4\nFILE_LENGTH 4\nX_FIRST 0\nY_FIRST 1\nX_STEP 0.1\nY_STEP -0.1\n")
    with pytest.raises(InputError, match="holds 12 values"):
        read_delay_map(path)
    rsc.write_text("WIDTH 4\nFILE_LENGTH 3\n")
    with pytest.raises(InputError, match="X_FIRST"):
        read_delay_map(path)
    two_bands = xr.DataArray(
        np.zeros((2, 3, 4), np.float32),
        coords={"band": [1, 2], "y": [1.0, 0.9, 0.8], "x": [0.0, 0.1, 0.2, 0.3]},
        dims=("band", "y", "x"),
    )
    two_bands.rio.write_crs("EPSG:4326").rio.to_raster(tmp_path / "multi.tif")
    with pytest.raises(InputError, match="multi.tif has 2 bands"):
        read_delay_map(tmp_path / "multi.tif")
    with pytest.raises(pydantic.ValidationError, match="external.directory"):
        ExternalDelayConfig(enabled=True)
    with pytest.raises(InputError, match="do not match"):
        correct_external(np.zeros((3, 4, 4)), np.zeros((2, 4, 4)), np.full((4, 4), 35.0))
