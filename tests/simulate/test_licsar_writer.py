"""LiCSAR frame writer: names, encodings, georeferencing, metadata, truth store, atomicity."""

import json
import re

import numpy as np
import pytest
import rasterio
import xarray as xr
from rasterio.transform import Affine

from mtinsar.errors import InputError
from mtinsar.simulate import SceneConfig, frame_id, load_truth, simulate_scene, write_licsar
from mtinsar.simulate.scene import Scene

CFG = SceneConfig(ny=60, nx=80, n_dates=15, seed=3, unwrap_errors=0.1)
FRAME_RE = re.compile(r"^\d{3}[AD]_\d{5}_\d{6}$")


@pytest.fixture(scope="module")
def scene():
    return simulate_scene(CFG)


@pytest.fixture(scope="module")
def frame(scene, tmp_path_factory):
    return write_licsar(scene, tmp_path_factory.mktemp("licsar") / "frame")


def read(path):
    with rasterio.open(path) as src:
        return src.read(1), src.profile


def test_layout_and_names(scene, frame):
    names = scene.pair_names()
    assert names == sorted(names) and all(re.fullmatch(r"\d{8}_\d{8}", n) for n in names)
    assert sorted(p.name for p in (frame / "interferograms").iterdir()) == names
    for name in names:
        files = sorted(p.name for p in (frame / "interferograms" / name).iterdir())
        assert files == [f"{name}.geo.cc.tif", f"{name}.geo.unw.tif"]
    fid = frame_id(CFG)
    assert FRAME_RE.match(fid) and fid[3] == "A"
    assert frame_id(CFG.model_copy(update={"orbit": "descending"}))[3] == "D"
    meta = {p.name for p in (frame / "metadata").iterdir()}
    expected = {f"{fid}.geo.{s}.tif" for s in ("E", "N", "U", "hgt", "landmask")}
    assert expected | {"baselines", "metadata.txt"} == meta
    assert (frame / "truth.zarr").is_dir()
    assert SceneConfig.model_validate_json((frame / "scene.json").read_text()) == CFG
    assert [p.name for p in frame.parent.iterdir()] == ["frame"]  # no temporary left


def test_geotiff_encoding_and_georeferencing(scene, frame):
    name = scene.pair_names()[0]
    expected = Affine(0.001, 0.0, -99.30, 0.0, -0.001, 19.60)
    for suffix, dtype in (("unw", "float32"), ("cc", "uint8")):
        _, prof = read(frame / "interferograms" / name / f"{name}.geo.{suffix}.tif")
        assert prof["dtype"] == dtype and prof["nodata"] == 0
        assert prof["crs"].to_epsg() == 4326
        assert prof["transform"].almost_equals(expected, precision=1e-12)
        assert (prof["height"], prof["width"]) == (60, 80)
        assert prof["compress"] == "deflate"


def test_unw_and_cc_read_back(scene, frame):
    assert any(scene.truth["water"].values.ravel())
    for k, name in enumerate(scene.pair_names()):
        unw, coh = scene.interferogram(k)
        folder = frame / "interferograms" / name
        got_unw, _ = read(folder / f"{name}.geo.unw.tif")
        np.testing.assert_array_equal(got_unw, np.where(np.isnan(unw), 0, unw))
        assert ((got_unw == 0) == np.isnan(unw)).all()
        cc, _ = read(folder / f"{name}.geo.cc.tif")
        valid = ~np.isnan(coh)
        assert ((cc == 0) == ~valid).all()
        np.testing.assert_allclose(cc[valid] / 255.0, coh[valid], atol=1 / 255)


def test_geometry_rasters(scene, frame):
    fid = frame_id(CFG)
    t = scene.truth
    for suffix, var in (("E", "los_e"), ("N", "los_n"), ("U", "los_u"), ("hgt", "height")):
        arr, prof = read(frame / "metadata" / f"{fid}.geo.{suffix}.tif")
        assert prof["dtype"] == "float32" and prof["nodata"] == 0
        np.testing.assert_array_equal(arr, t[var].values)
    land, _ = read(frame / "metadata" / f"{fid}.geo.landmask.tif")
    np.testing.assert_array_equal(land == 0, t["water"].values)


def test_baselines_and_metadata_parse(scene, frame):
    rows = [line.split() for line in (frame / "metadata" / "baselines").read_text().splitlines()]
    assert len(rows) == len(scene.dates)
    master = str(scene.dates[0]).replace("-", "")
    assert rows[0] == [master, master, "0.000", "0.0"]
    assert all(r[0] == master for r in rows)
    assert [r[1] for r in rows] == [str(d).replace("-", "") for d in scene.dates]
    np.testing.assert_allclose([float(r[2]) for r in rows], scene.bperp_dates, atol=5e-4)
    days = (scene.dates - scene.dates[0]).astype(float)
    np.testing.assert_array_equal([float(r[3]) for r in rows], days)

    meta = dict(
        line.split("=", 1)
        for line in (frame / "metadata" / "metadata.txt").read_text().splitlines()
    )
    assert set(meta) == {
        "master",
        "center_time",
        "heading",
        "avg_incidence_angle",
        "azimuth_resolution",
        "range_resolution",
        "centre_range_m",
        "avg_height",
        "applied_DEM",
    }
    assert meta["master"] == master
    assert re.fullmatch(r"\d{1,2}:\d{2}:\d{2}\.\d{6}", meta["center_time"])
    assert float(meta["heading"]) == pytest.approx(-12.0)
    assert 31 < float(meta["avg_incidence_angle"]) < 46
    assert float(meta["centre_range_m"]) == pytest.approx(scene.truth.attrs["slant_range_m"])
    land = ~scene.truth["water"].values
    assert float(meta["avg_height"]) == pytest.approx(
        scene.truth["height"].values[land].mean(), abs=1e-2
    )


def test_truth_round_trip(scene, frame):
    loaded = load_truth(frame)
    assert loaded.rio.crs.to_epsg() == 4326
    xr.testing.assert_equal(
        loaded.load().drop_vars("spatial_ref"), scene.truth.drop_vars("spatial_ref")
    )
    assert loaded.attrs == scene.truth.attrs
    errors = json.loads(loaded.attrs["unwrap_error_pairs"])
    assert len(errors) == round(0.1 * len(scene.pairs))
    chunks = loaded["displacement"].encoding["chunks"]
    assert chunks[0] == len(scene.dates)  # chunked in space only


def test_refuses_non_empty_out_dir(scene, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(InputError, match="not an empty directory"):
        write_licsar(scene, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(InputError):
        write_licsar(scene, a_file)


def test_empty_out_dir_is_accepted(tmp_path):
    tiny = simulate_scene(SceneConfig(ny=20, nx=24, n_dates=5))
    (tmp_path / "empty").mkdir()
    out = write_licsar(tiny, tmp_path / "empty", progress=True)
    assert len(list((out / "interferograms").iterdir())) == len(tiny.pairs)


def test_failure_mid_write_leaves_nothing(tmp_path, monkeypatch):
    tiny = simulate_scene(SceneConfig(ny=20, nx=24, n_dates=6))
    original = Scene.interferogram

    def failing(self, k):
        if k == 3:
            raise RuntimeError("disk on fire")
        return original(self, k)

    monkeypatch.setattr(Scene, "interferogram", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_licsar(tiny, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_load_truth_missing_store(tmp_path):
    with pytest.raises(InputError, match="truth.zarr"):
        load_truth(tmp_path)
