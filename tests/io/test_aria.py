"""ARIA GUNW reader on simulated products: acceptance vs LiCSAR, sign, geometry, frames, errors."""

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from mtinsar.config import IngestConfig, RunConfig
from mtinsar.errors import InputError, MtinsarError
from mtinsar.io.aria import (
    BPERP_FACTOR,
    PHASE_FACTOR,
    inspect_gunw,
    interpolate_cube,
    is_aria,
    read_aria,
)
from mtinsar.io.licsar import read_licsar, read_licsar_config
from mtinsar.simulate import SceneConfig, simulate_scene, write_licsar
from mtinsar.simulate.aria import DEM_FILE, INCIDENCE_PER_M, write_aria
from mtinsar.simulate.score import referenced_truth
from mtinsar.workflows.pipeline import run_sbas

SCENE = SceneConfig(ny=40, nx=50, n_dates=12)


@pytest.fixture(scope="module")
def scene():
    return simulate_scene(SCENE)


@pytest.fixture(scope="module")
def written(scene, tmp_path_factory):
    """The scene as a LiCSAR frame, as single-frame GUNW files and as two GUNW frames."""
    base = tmp_path_factory.mktemp("aria")
    return {
        "licsar": write_licsar(scene, base / "licsar"),
        "one": write_aria(scene, base / "one"),
        "two": write_aria(scene, base / "two", frames=2, overlap=8),
    }


@pytest.fixture(scope="module")
def licsar_stack(written):
    return read_licsar(written["licsar"])


@pytest.fixture(scope="module")
def one_stack(written):
    return read_aria(written["one"], dem=written["one"] / DEM_FILE)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny GUNW stack whose files the error tests copy and break."""
    return write_aria(
        simulate_scene(SceneConfig(ny=20, nx=24, n_dates=6, seed=3)),
        tmp_path_factory.mktemp("tiny") / "gunw",
    )


def gunw_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("S1-GUNW-*.nc"))


def copy_files(files: list[Path], dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy(f, dst / f.name)
    return dst


# --------------------------------------------------------------------------- acceptance


@pytest.mark.parametrize("layout", ["one", "two"])
def test_velocity_equals_the_licsar_read(written, licsar_stack, layout):
    """Same scene, GUNW vs LiCSAR layout: SBAS velocities agree to 1e-6 m/yr."""
    aria = read_aria(written[layout], dem=written[layout] / DEM_FILE)
    cfg = RunConfig()
    ref = run_sbas(licsar_stack, cfg).result
    got = run_sbas(aria, cfg).result
    assert (got.attrs["reference_y"], got.attrs["reference_x"]) == (
        ref.attrs["reference_y"],
        ref.attrs["reference_x"],
    )
    np.testing.assert_array_equal(np.isnan(got["velocity"]), np.isnan(ref["velocity"]))
    assert np.isfinite(ref["velocity"].values).sum() > 1500
    assert np.nanmax(np.abs(got["velocity"].values - ref["velocity"].values)) <= 1e-6


def test_stack_matches_the_scene_grid_and_values(one_stack, licsar_stack, scene):
    np.testing.assert_allclose(one_stack["x"], licsar_stack["x"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(one_stack["y"], licsar_stack["y"], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(one_stack["pair"], licsar_stack["pair"])
    np.testing.assert_array_equal(one_stack["unw"], licsar_stack["unw"])  # NaN where no data
    truth_coh = np.stack([scene.interferogram(k)[1] for k in range(len(scene.pairs))])
    np.testing.assert_allclose(one_stack["coh"], truth_coh, atol=1e-7)
    np.testing.assert_allclose(one_stack["bperp"], scene.pair_bperp(), atol=1e-4)
    assert one_stack.attrs["track"] == 5 and one_stack.attrs["orbit_direction"] == "ascending"
    assert one_stack.attrs["wavelength"] == pytest.approx(scene.wavelength)
    cc = one_stack["conncomp"].values
    np.testing.assert_array_equal(cc == 1, np.isfinite(one_stack["unw"].values))


def test_sign_factors_pinned_on_the_file(written, one_stack):
    """The file holds LATER_EARLIER phase, + towards the sensor: the stack flips both."""
    assert PHASE_FACTOR == -1.0 and BPERP_FACTOR == -1.0
    k = 3
    label = str(one_stack["pair"].values[k])
    earlier, later = label.split("_")
    (file,) = [f for f in gunw_files(written["one"]) if f"-{later}_{earlier}-" in f.name]
    with h5py.File(file) as f:
        phase = f["science/grids/data/unwrappedPhase"][:]
        cube = f["science/grids/imagingGeometry/perpendicularBaseline"][:]
    valid = phase != 0
    np.testing.assert_array_equal(one_stack["unw"].values[k][valid], -phase[valid])
    assert one_stack["bperp"].values[k] == pytest.approx(-cube.mean(), abs=1e-4)


def test_uplift_gives_positive_velocity(tmp_path):
    """Sign pin end to end: simulated uplift -> positive LOS velocity after run_sbas."""
    scene = simulate_scene(SceneConfig.noise_free(ny=32, nx=40, n_dates=8))
    folder = write_aria(scene, tmp_path / "gunw", dem=False)
    res = run_sbas(read_aria(folder), RunConfig()).result
    vel, _ = referenced_truth(scene.truth, res.attrs["reference_y"], res.attrs["reference_x"])
    up, down = vel > 0.005, vel < -0.02
    assert up.sum() > 20 and down.sum() > 20
    assert (res["velocity"].values[up] > 0).all()
    assert (res["velocity"].values[down] < 0).all()
    np.testing.assert_allclose(res["velocity"].values, vel, atol=1e-4)


# --------------------------------------------------------------------------- geometry


def test_geometry_cubes_are_read_at_the_dem_height(one_stack, scene):
    truth = scene.truth
    height = truth["height"].values
    np.testing.assert_allclose(one_stack["height"], height, atol=1e-3)
    expected = truth["incidence"].values + INCIDENCE_PER_M * height
    np.testing.assert_allclose(one_stack["incidence"], expected, atol=2e-3)
    inc = np.deg2rad(one_stack["incidence"].values)
    horizontal = np.hypot(one_stack["los_e"].values, one_stack["los_n"].values)
    np.testing.assert_allclose(horizontal, np.sin(inc), atol=1e-6)
    # Same horizontal direction as the scene's LOS (heading -12 deg, looking right).
    cos = (one_stack["los_e"] * truth["los_e"] + one_stack["los_n"] * truth["los_n"]) / (
        horizontal * np.hypot(truth["los_e"], truth["los_n"])
    )
    np.testing.assert_allclose(cos, 1.0, atol=1e-6)


def test_without_dem_geometry_is_at_zero_height(written, scene):
    stack = read_aria(written["one"])
    assert np.isnan(stack["height"].values).all()
    np.testing.assert_allclose(stack["incidence"], scene.truth["incidence"], atol=2e-3)
    for c in ("los_e", "los_n", "los_u"):
        np.testing.assert_allclose(stack[c], scene.truth[c], atol=5e-5)


def test_interpolate_cube_is_trilinear():
    heights = np.array([-1500.0, 0.0, 3000.0, 9000.0])
    lats = np.array([20.0, 19.9, 19.8])  # decreasing, as in GUNW
    lons = np.array([-99.4, -99.3, -99.2, -99.1])
    h, la, lo = np.meshgrid(heights, lats, lons, indexing="ij")

    def f(h, la, lo):  # trilinear in (h, lat, lon): reproduced exactly
        return 1.0 + 2e-3 * h + 5.0 * la - 3.0 * lo + 1e-3 * h * la

    lat = np.array([[19.95, 19.81], [19.9, 19.75]])  # 19.75 is outside: extrapolated
    lon = np.array([[-99.35, -99.12], [-99.3, -99.25]])
    height = np.array([[120.0, 4500.0], [-20.0, 8000.0]])
    got = interpolate_cube(f(h, la, lo), heights, lats, lons, lat, lon, height)
    np.testing.assert_allclose(got, f(height, lat, lon), rtol=1e-12)


# --------------------------------------------------------------------------- frames, extents


def test_two_frames_equal_one_frame(written, one_stack):
    """North/south frames, each off by whole 2 pi cycles, stitch back to the single frame."""
    files = gunw_files(written["two"])
    assert len(files) == 2 * one_stack.sizes["pair"]
    two = read_aria(written["two"], dem=written["two"] / DEM_FILE)
    np.testing.assert_allclose(two["y"], one_stack["y"], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(np.isnan(two["unw"]), np.isnan(one_stack["unw"]))
    np.testing.assert_allclose(two["unw"], one_stack["unw"], rtol=0, atol=1e-5)
    for name in ("coh", "conncomp", "bperp", "incidence", "los_e", "height"):
        np.testing.assert_allclose(two[name], one_stack[name], rtol=0, atol=1e-6)
    # Without the cycle alignment the southern frame keeps its 2 pi offsets.
    raw = read_aria(written["two"], align_cycles=False)
    steps = np.abs(raw["unw"].values - one_stack["unw"].values)
    assert np.nanmax(steps) == pytest.approx(4 * np.pi, abs=1e-4)


def test_products_of_different_extents_are_cut_to_their_intersection(tmp_path):
    scene = simulate_scene(SceneConfig(ny=20, nx=24, n_dates=6, seed=3))
    folder = write_aria(scene, tmp_path / "jitter", extent_jitter=3, dem=False)
    stack = read_aria(folder)
    assert stack.sizes["y"] < 20 - 2 and stack.sizes["x"] < 24 - 2
    full = read_licsar(write_licsar(scene, tmp_path / "licsar"))
    ref = full.sel(y=stack["y"], x=stack["x"], method="nearest", tolerance=1e-7)
    np.testing.assert_allclose(stack["y"], ref["y"], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(stack["unw"], ref["unw"])
    # Every product covers the common grid: no pair is cut.
    assert np.isfinite(stack["unw"].values).any(axis=(1, 2)).all()


def test_bbox_and_multilook_match_the_licsar_read(written, scene):
    y, x = scene.truth["y"].values, scene.truth["x"].values
    bbox = (float(x[7]), float(y[30]), float(x[33]), float(y[4]))
    cfg = IngestConfig(bbox=bbox, multilook=2)
    aria = read_aria(written["two"], cfg)
    lic = read_licsar(written["licsar"], bbox=bbox, multilook=2)
    np.testing.assert_allclose(aria["x"], lic["x"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(aria["y"], lic["y"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(aria["unw"], lic["unw"], rtol=0, atol=1e-5)


def test_polygon_across_two_frames_matches_the_licsar_read(written, scene):
    """A lon/lat triangle over the frames' overlap: the mosaic is masked like the LiCSAR read
    (pixels whose centre is outside are no data), with multilooking."""
    y, x = scene.truth["y"].values, scene.truth["x"].values
    ring = [[x[4], y[3]], [x[34], y[12]], [x[14], y[33]]]
    polygon = json.dumps({"type": "Polygon", "coordinates": [[*ring, ring[0]]]})
    cfg = IngestConfig(polygon=polygon, multilook=2)
    aria = read_aria(written["two"], cfg)
    lic = read_licsar_config(written["licsar"], cfg)
    np.testing.assert_allclose(aria["x"], lic["x"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(aria["y"], lic["y"], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(np.isnan(aria["unw"]), np.isnan(lic["unw"]))
    np.testing.assert_allclose(aria["unw"], lic["unw"], rtol=0, atol=1e-5)
    outside = np.isnan(lic["coh"].values).all(axis=0)
    assert 0.2 < outside.mean() < 0.8  # the triangle masks part of its bounding box


def test_pair_selection_and_detection(written, tiny, tmp_path):
    stack = read_aria(written["one"], IngestConfig(max_temporal_baseline_days=30))
    span = (stack["sec_date"] - stack["ref_date"]).values / np.timedelta64(1, "D")
    assert span.max() <= 30 and stack.sizes["pair"] >= 11
    assert is_aria(tiny) and is_aria(gunw_files(tiny)[0])
    assert not is_aria(written["licsar"]) and not is_aria(tmp_path)


# --------------------------------------------------------------------------- bad input


def test_mixed_tracks_are_refused(tiny, tmp_path):
    other = write_aria(
        simulate_scene(SceneConfig(ny=20, nx=24, n_dates=6, seed=3, orbit="descending")),
        tmp_path / "desc",
    )
    mixed = copy_files(gunw_files(tiny)[:3] + gunw_files(other)[:1], tmp_path / "mixed")
    with pytest.raises(InputError, match=r"mixed tracks: .*S1-GUNW-D-R-012.* track 12 .*"
                       r"read each track's products separately"):  # fmt: skip
        read_aria(mixed)


def test_mixed_wavelengths_are_refused(tiny, tmp_path):
    folder = copy_files(gunw_files(tiny), tmp_path / "wl")
    odd = gunw_files(folder)[2]
    with h5py.File(odd, "r+") as f:
        f["science/radarMetaData/wavelength"][()] = 0.2362  # L-band
    with pytest.raises(InputError, match=rf"mixed wavelengths: .*{odd.name} has 0.2362 m"):
        read_aria(folder)
    assert read_aria(folder, IngestConfig(wavelength=0.05546576)).attrs["wavelength"] == 0.05546576


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("science/grids/imagingGeometry", "missing /science/grids/imagingGeometry/perpendicular"),
        ("science/grids/data/coherence", "missing /science/grids/data/coherence"),
        ("science/radarMetaData/wavelength", "missing /science/radarMetaData/wav.*set ingest.wav"),
    ],
)
def test_missing_groups_and_keys_are_named(tiny, tmp_path, path, words):
    folder = copy_files(gunw_files(tiny), tmp_path / "broken")
    broken = gunw_files(folder)[1]
    with h5py.File(broken, "r+") as f:
        del f[path]
    with pytest.raises(InputError, match=rf"{broken.name}: {words}"):
        read_aria(folder)


def test_missing_wavelength_is_fine_when_configured(tiny, tmp_path):
    folder = copy_files(gunw_files(tiny), tmp_path / "nowl")
    for file in gunw_files(folder):
        with h5py.File(file, "r+") as f:
            del f["science/radarMetaData/wavelength"]
    stack = read_aria(folder, IngestConfig(wavelength=0.0555))
    assert stack.attrs["wavelength"] == 0.0555


def test_truncated_file_is_named(tiny, tmp_path):
    folder = copy_files(gunw_files(tiny), tmp_path / "trunc")
    victim = gunw_files(folder)[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=rf"{victim.name}: .*truncated or corrupt: download"):
        read_aria(folder)


def test_grids_without_overlap_cannot_be_aligned(tiny, tmp_path):
    far = write_aria(
        simulate_scene(
            SceneConfig(ny=20, nx=24, n_dates=6, seed=3, lon0=-98.0, start_date="2021-03-01")
        ),
        tmp_path / "far",
    )
    both = copy_files(gunw_files(tiny) + gunw_files(far), tmp_path / "both")
    with pytest.raises(InputError, match="grids cannot be aligned: .*does not overlap"):
        read_aria(both)
    inside = IngestConfig(bbox=(-99.299, 19.585, -99.28, 19.599))
    with pytest.raises(InputError, match="does not cover any of the selected area"):
        read_aria(both, inside)


def test_bad_names_and_duplicates_are_refused(tiny, tmp_path):
    folder = copy_files(gunw_files(tiny)[:2], tmp_path / "names")
    first = gunw_files(folder)[0]
    later, earlier = first.name.split("-")[6].split("_")
    swapped = first.with_name(first.name.replace(f"{later}_{earlier}", f"{earlier}_{later}"))
    first.rename(swapped)
    with pytest.raises(InputError, match="not LATER_EARLIER .*restore the product's original"):
        read_aria(folder)
    twin = copy_files(gunw_files(tiny)[:1], tmp_path / "twin")
    shutil.copy(gunw_files(twin)[0], twin / gunw_files(twin)[0].name.replace("-PP-", "-PP-x"))
    with pytest.raises(InputError, match="the same pair and frame twice"):
        read_aria(twin)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: no ARIA GUNW product .* in this folder"):
        read_aria(tmp_path / "empty")
    assert issubclass(InputError, MtinsarError)


# --------------------------------------------------------------------------- lazy reads


def test_pixels_are_read_lazily_per_chunk_and_frame(written, one_stack, tmp_path):
    """unw/coh/conncomp are dask arrays of (pairs, chunk, chunk) blocks; a block opens only
    the frames under it, so the northern rows compute after the southern frames are gone."""
    folder = copy_files(gunw_files(written["two"]), tmp_path / "two")
    stack = read_aria(folder, IngestConfig(chunk_size=16), dem=written["two"] / DEM_FILE)
    n = stack.sizes["pair"]
    for name in ("unw", "coh", "conncomp"):
        assert stack[name].chunks == ((n,), (16, 16, 8), (16, 16, 16, 2))
    tops = {f: inspect_gunw(f).grid.bounds[3] for f in gunw_files(folder)}
    south = [f for f, top in tops.items() if top < max(tops.values()) - 1e-9]
    assert len(south) == n
    south_top = max(tops[f] for f in south)
    for f in south:
        f.write_bytes(f.read_bytes()[:1000])  # after the stack was opened
    rows = slice(0, 16)
    assert float(stack["y"][15]) > south_top  # the block lies north of every southern frame
    window = stack["coh"][:, rows, 16:32].values
    np.testing.assert_array_equal(window, one_stack["coh"][:, rows, 16:32].values)
    with pytest.raises(InputError, match=r"S1-GUNW-.*\.nc: cannot be read"):
        stack["coh"][:, 32:, :].load()
