"""MintPy HDF5 export/import, checked against the simulator's truth and MintPy's layout."""

import json
import shutil

import h5py
import numpy as np
import pytest
import shapely
from pyproj import Transformer

from mtinsar import stack as stack_store
from mtinsar.config import IngestConfig, RunConfig
from mtinsar.conventions import SENTINEL1_WAVELENGTH
from mtinsar.errors import InputError, MtinsarError
from mtinsar.io.core import grid as gridlib
from mtinsar.io.mintpy import (
    GEOMETRY_FILE,
    STACK_FILE,
    is_mintpy,
    model_slant_range,
    read_mintpy,
    write_mintpy,
)
from mtinsar.simulate import SceneConfig, simulate_scene
from mtinsar.simulate.score import referenced_truth
from mtinsar.workflows.pipeline import run_sbas

REF = (5, 6)  # reference pixel (row, col) written as REF_Y/REF_X


@pytest.fixture(scope="module")
def scene():
    """A tiny scene with every nuisance on, incl. a lake (NaN in every pair)."""
    return simulate_scene(SceneConfig(ny=30, nx=36, n_dates=10, seed=2))


@pytest.fixture(scope="module")
def exported(scene, tmp_path_factory):
    stack = scene.to_ifgstack()
    work = tmp_path_factory.mktemp("mintpy") / "work"
    write_mintpy(stack, work / "inputs", reference=REF, looks=20, slant_range=880e3)
    return stack, work


def _copy(work, tmp_path):
    target = tmp_path / "work"
    shutil.copytree(work, target)
    return target


def test_round_trip_equals_the_original(exported):
    stack, work = exported
    back = read_mintpy(work)
    assert list(back["pair"].values) == list(stack["pair"].values)
    np.testing.assert_array_equal(back["ref_date"].values, stack["ref_date"].values)
    np.testing.assert_array_equal(back["sec_date"].values, stack["sec_date"].values)
    for name in ("unw", "coh", "bperp", "height", "incidence", "water"):
        assert back[name].dtype == stack[name].dtype, name
        np.testing.assert_array_equal(back[name].values, stack[name].values, err_msg=name)
    assert np.isnan(back["unw"].values).sum() == np.isnan(stack["unw"].values).sum() > 0
    for name in ("los_e", "los_n", "los_u"):  # through MintPy's angles: float32 rounding only
        np.testing.assert_allclose(back[name].values, stack[name].values, atol=2e-7, rtol=0)
    np.testing.assert_allclose(back["x"].values, stack["x"].values, rtol=0, atol=1e-11)
    np.testing.assert_allclose(back["y"].values, stack["y"].values, rtol=0, atol=1e-11)
    assert back.rio.crs.to_epsg() == 4326
    np.testing.assert_array_equal(back["slant_range"].values, np.float32(880e3))
    for key, value in stack.attrs.items():
        assert back.attrs[key] == value, key


def test_files_follow_mintpy_layout(scene, exported):
    stack, work = exported
    cfg, truth = scene.config, scene.truth
    with h5py.File(work / "inputs" / STACK_FILE, "r") as f:
        a = f.attrs
        assert a["FILE_TYPE"] == "ifgramStack"
        assert (int(a["LENGTH"]), int(a["WIDTH"])) == (cfg.ny, cfg.nx)
        # X/Y_FIRST are the outer corner of the upper-left pixel (MintPy's get_lat_lon adds 0.5)
        assert float(a["X_FIRST"]) == pytest.approx(cfg.lon0, abs=1e-12)
        assert float(a["Y_FIRST"]) == pytest.approx(cfg.lat0, abs=1e-12)
        assert float(a["X_STEP"]) == pytest.approx(cfg.posting_deg, rel=1e-9)
        assert float(a["Y_STEP"]) == pytest.approx(-cfg.posting_deg, rel=1e-9)
        assert float(a["WAVELENGTH"]) == SENTINEL1_WAVELENGTH
        assert (int(a["REF_Y"]), int(a["REF_X"])) == REF
        assert float(a["REF_LAT"]) == pytest.approx(cfg.lat0 - (REF[0] + 0.5) * cfg.posting_deg)
        assert (a["PLATFORM"], a["ORBIT_DIRECTION"]) == ("Sen", "ASCENDING")
        assert float(a["HEADING"]) == pytest.approx(truth.attrs["heading"], abs=1e-3)
        assert float(a["NCORRLOOKS"]) == 20
        assert f["date"].dtype == np.dtype("S8") and f["date"].shape == (stack.sizes["pair"], 2)
        labels = [f"{r.decode()}_{s.decode()}" for r, s in f["date"][()]]
        assert labels == list(scene.pair_names())
        np.testing.assert_array_equal(f["bperp"][()], scene.pair_bperp().astype(np.float32))
        assert f["dropIfgram"].dtype == bool and f["dropIfgram"][()].all()
        k = 3
        unw, coh = scene.interferogram(k)
        np.testing.assert_array_equal(f["unwrapPhase"][k], unw)  # factor +1: same sign
        np.testing.assert_array_equal(f["coherence"][k], coh)
    with h5py.File(work / "inputs" / GEOMETRY_FILE, "r") as f:
        assert f.attrs["FILE_TYPE"] == "geometry"
        np.testing.assert_array_equal(f["height"][()], truth["height"].values)
        np.testing.assert_allclose(f["incidenceAngle"][()], truth["incidence"].values)
        # MintPy's heading2azimuth_angle for a right-looking radar: az = 90 - heading
        expected_az = 90.0 - truth.attrs["heading"]
        np.testing.assert_allclose(f["azimuthAngle"][()], expected_az, atol=1e-3)
        np.testing.assert_array_equal(f["waterMask"][()], ~truth["water"].values)
        assert truth["water"].values.any()
        np.testing.assert_array_equal(f["slantRangeDistance"][()], np.float32(880e3))


def test_uplift_is_positive_after_the_round_trip(tmp_path):
    scene = simulate_scene(SceneConfig.noise_free(ny=60, nx=80, n_dates=16))
    write_mintpy(scene.to_ifgstack(), tmp_path / "inputs")
    res = run_sbas(read_mintpy(tmp_path), RunConfig()).result
    vel, disp = referenced_truth(scene.truth, res.attrs["reference_y"], res.attrs["reference_x"])
    np.testing.assert_allclose(res["velocity"].values, vel, atol=1e-4)
    np.testing.assert_allclose(res["displacement"].values, disp, atol=1e-4)
    up = vel > 0.01
    assert up.sum() > 20 and (res["velocity"].values[up] > 0).all()


def _hand_written_stack(path, phase, dates, wavelength=SENTINEL1_WAVELENGTH):
    """An ifgramStack.h5 written the way MintPy's load_data.py does, without mtinsar."""
    m, ny, nx = phase.shape
    with h5py.File(path, "w") as f:
        f.attrs.update(
            FILE_TYPE="ifgramStack",
            LENGTH=str(ny),
            WIDTH=str(nx),
            X_FIRST="10.0",
            Y_FIRST="45.0",
            X_STEP="0.001",
            Y_STEP="-0.001",
            X_UNIT="degrees",
            Y_UNIT="degrees",
            WAVELENGTH=str(wavelength),
            PLATFORM="Sen",
            ORBIT_DIRECTION="DESCENDING",
            PROCESSOR="isce",
        )
        f["date"] = np.array(dates, dtype="S8")
        f["bperp"] = np.zeros(m, dtype=np.float32)
        f["dropIfgram"] = np.ones(m, dtype=bool)
        f["unwrapPhase"] = phase.astype(np.float32)
        f["coherence"] = np.full(phase.shape, 0.8, dtype=np.float32)


def test_mintpy_phase_of_uplift_reads_as_positive_displacement(tmp_path):
    """MintPy: unwrapPhase > 0 = range increase; an uplift of d gives -4 pi d / wavelength."""
    dates = ["20200101", "20200113", "20200125", "20200206"]
    pairs = [(0, 1), (0, 2), (1, 2), (1, 3), (2, 3)]
    uplift = np.array([0.0, 0.004, 0.009, 0.012])  # m, right half of the grid only
    ny, nx = 12, 12
    phase = np.zeros((len(pairs), ny, nx))
    for k, (i, j) in enumerate(pairs):
        phase[k, :, 6:] = -4 * np.pi / SENTINEL1_WAVELENGTH * (uplift[j] - uplift[i])
    phase += 0.25  # MintPy's 0 = no data; a constant per pair is removed by the reference
    _hand_written_stack(tmp_path / STACK_FILE, phase, [[dates[i], dates[j]] for i, j in pairs])
    stack = read_mintpy(tmp_path / STACK_FILE)
    np.testing.assert_array_equal(stack["unw"].values, phase.astype(np.float32))
    assert stack.attrs["orbit_direction"] == "descending"
    assert stack.attrs["platform"] == "Sentinel-1"
    cfg = RunConfig.model_validate(
        {"reference": {"lon": float(stack["x"][2]), "lat": float(stack["y"][5]), "radius": 1}}
    )
    disp = run_sbas(stack, cfg).result["displacement"].values
    np.testing.assert_allclose(disp[:, 0, 11], uplift, atol=1e-6)
    np.testing.assert_allclose(disp[:, 0, 0], 0.0, atol=1e-6)


def test_selection_reads_only_what_is_asked(exported, tmp_path):
    stack, work = exported
    work = _copy(work, tmp_path)
    drop, flip, excluded = 2, 4, str(stack["pair"].values[7])
    with h5py.File(work / "inputs" / STACK_FILE, "r+") as f:
        f["dropIfgram"][drop] = False
        # the same pair listed later-date first, with the opposite sign: read back unchanged
        f["date"][flip] = f["date"][flip][::-1]
        f["unwrapPhase"][flip] = -f["unwrapPhase"][flip]
        f["bperp"][flip] = -f["bperp"][flip]
    x, y = stack["x"].values, stack["y"].values
    bbox = (x[4] - 1e-4, y[21] - 1e-4, x[27] + 1e-4, y[6] + 1e-4)  # cols 4..27, rows 6..21
    cfg = IngestConfig(bbox=bbox, multilook=2, exclude_pairs=[excluded])
    got = read_mintpy(work / "inputs", cfg)
    keep = [k for k in range(stack.sizes["pair"]) if k != drop and k != 7]
    assert list(got["pair"].values) == list(stack["pair"].values[keep])
    expected = gridlib.multilook(stack["unw"].values[keep][:, 6:22, 4:28], 2)
    np.testing.assert_allclose(got["unw"].values, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(got["bperp"].values, stack["bperp"].values[keep])
    np.testing.assert_allclose(got["x"].values, x[4:28].reshape(-1, 2).mean(1), atol=1e-11)
    np.testing.assert_allclose(got["y"].values, y[6:22].reshape(-1, 2).mean(1), atol=1e-11)
    assert got.attrs["multilook"] == 2


def test_polygon_in_another_crs_masks_pixels_by_centre(exported):
    """The shared selection (`mtinsar.io.core.select`): a GeoJSON triangle in UTM crops the read to
    its bounds and sets the pixels whose centre lies outside it to no data."""
    stack, work = exported
    x, y = stack["x"].values, stack["y"].values
    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32614", always_xy=True)
    step = x[1] - x[0]  # corners a third of a pixel off the centres: no centre on an edge
    corners = [(x[3] + step / 3, y[4]), (x[30], y[8] - step / 3), (x[10] - step / 3, y[25])]
    ring = [list(to_utm.transform(lon, lat)) for lon, lat in corners]
    doc = {
        "type": "Polygon",
        "coordinates": [[*ring, ring[0]]],
        "crs": {"type": "name", "properties": {"name": "EPSG:32614"}},
    }
    got = read_mintpy(work, IngestConfig(polygon=json.dumps(doc)))
    # Expected independently: pixel centres, in UTM, inside the UTM triangle.
    xx, yy = to_utm.transform(*np.meshgrid(x, y))
    inside = shapely.intersects_xy(shapely.Polygon(ring), xx, yy)
    # The read window: the pixels overlapping the polygon's bounds (one pixel more than the
    # centres inside it, at most, on each side).
    r0, c0 = (
        int(np.flatnonzero(y == got["y"].values[0])[0]),
        int(np.flatnonzero(x == got["x"].values[0])[0]),
    )
    window = (slice(r0, r0 + got.sizes["y"]), slice(c0, c0 + got.sizes["x"]))
    rows, cols = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
    assert rows[0] - 1 <= r0 <= rows[0] and rows[-1] < window[0].stop <= rows[-1] + 2
    assert cols[0] - 1 <= c0 <= cols[0] and cols[-1] < window[1].stop <= cols[-1] + 2
    expected = np.where(inside[window], stack["unw"].values[:, *window], np.nan)
    np.testing.assert_array_equal(got["unw"].values, expected)
    assert np.isnan(got["coh"].values[:, ~inside[window]]).all()
    np.testing.assert_array_equal(got["height"].values, stack["height"].values[window])


def test_lazy_stack_exports_the_same_file(exported, tmp_path):
    stack, work = exported
    stack_store.save(stack, tmp_path / "stack.zarr", chunk_size=16)
    lazy = stack_store.open(tmp_path / "stack.zarr")
    write_mintpy(lazy, tmp_path / "inputs", reference=REF, looks=20, block_size=16)
    with (
        h5py.File(work / "inputs" / STACK_FILE, "r") as a,
        h5py.File(tmp_path / "inputs" / STACK_FILE, "r") as b,
    ):
        for name in ("date", "bperp", "unwrapPhase", "coherence"):
            np.testing.assert_array_equal(a[name][()], b[name][()], err_msg=name)
    with h5py.File(tmp_path / "inputs" / GEOMETRY_FILE, "r") as f:
        # no slant range given: the spherical-Earth model; Sentinel-1 IW spans ~800-950 km
        rng = f["slantRangeDistance"][()]
        np.testing.assert_allclose(rng, model_slant_range(stack["incidence"].values))
        assert 780e3 < rng.min() < rng.max() < 960e3


def test_is_mintpy(exported, tiny_frame, tmp_path):
    _, work = exported
    assert (
        is_mintpy(work) and is_mintpy(work / "inputs") and is_mintpy(work / "inputs" / STACK_FILE)
    )
    assert not is_mintpy(tiny_frame)
    assert not is_mintpy(tmp_path / "missing")
    assert not is_mintpy(work / "inputs" / GEOMETRY_FILE)


def _break_missing_dataset(f):
    del f["unwrapPhase"]


def _break_file_type(f):
    f.attrs["FILE_TYPE"] = "timeseries"


def _break_radar(f):
    del f.attrs["Y_FIRST"]


def _break_wavelength(f):
    del f.attrs["WAVELENGTH"]


def _break_dates(f):
    f["date"][0] = [b"2019-01-", b"20190116"]


BROKEN = {
    "missing dataset": (_break_missing_dataset, r"missing dataset\(s\) unwrapPhase.*load_data"),
    "wrong FILE_TYPE": (_break_file_type, r"FILE_TYPE is 'timeseries'.*inputs/ifgramStack.h5"),
    "radar coordinates": (_break_radar, r"radar coordinates.*geocode\.py"),
    "no wavelength": (_break_wavelength, r"WAVELENGTH.*ingest\.wavelength"),
    "bad date": (_break_dates, r"'2019-01-'.*YYYYMMDD"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_stack_names_file_and_fix(exported, tmp_path, case):
    _, work = exported
    work = _copy(work, tmp_path)
    breaker, message = BROKEN[case]
    with h5py.File(work / "inputs" / STACK_FILE, "r+") as f:
        breaker(f)
    with pytest.raises(InputError, match=message) as err:
        read_mintpy(work)
    assert str(work / "inputs" / STACK_FILE) in str(err.value)


def test_missing_wavelength_can_be_given(exported, tmp_path):
    _, work = exported
    work = _copy(work, tmp_path)
    with h5py.File(work / "inputs" / STACK_FILE, "r+") as f:
        del f.attrs["WAVELENGTH"]
    got = read_mintpy(work, IngestConfig(wavelength=0.0555))
    assert got.attrs["wavelength"] == 0.0555


def test_truncated_and_absent_files(exported, tmp_path):
    _, work = exported
    work = _copy(work, tmp_path)
    file = work / "inputs" / STACK_FILE
    file.write_bytes(file.read_bytes()[:5000])
    with pytest.raises(InputError, match=r"corrupt or truncated") as err:
        read_mintpy(work)
    assert str(file) in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"no ifgramStack\.h5 here nor in .*inputs"):
        read_mintpy(tmp_path / "empty")
    with pytest.raises(InputError, match=r"no such file or folder"):
        read_mintpy(tmp_path / "nowhere")


def test_geometry_of_another_grid_is_refused(exported, tmp_path):
    _, work = exported
    work = _copy(work, tmp_path)
    with h5py.File(work / "inputs" / GEOMETRY_FILE, "r+") as f:
        del f["height"]
        f["height"] = np.zeros((3, 4), dtype=np.float32)
    with pytest.raises(InputError, match=r"geometryGeo\.h5: dataset height .*same MintPy run"):
        read_mintpy(work)


def test_export_refuses_a_reference_outside_the_grid(exported, tmp_path):
    stack, _ = exported
    with pytest.raises(MtinsarError, match=r"reference pixel \(30, 0\) is outside"):
        write_mintpy(stack, tmp_path, reference=(30, 0))
    assert not any(tmp_path.iterdir())
