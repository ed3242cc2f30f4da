"""ISCE2 topsStack reader on simulated stacks: acceptance vs LiCSAR, sign, layout, errors."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from mtinsar.config import IngestConfig, RunConfig
from mtinsar.errors import InputError
from mtinsar.io.isce import PHASE_FACTOR, is_isce, read_isce, read_tops_baselines
from mtinsar.io.licsar import read_licsar
from mtinsar.simulate import SceneConfig, simulate_scene, write_licsar
from mtinsar.simulate.isce import stack_reference_index, write_isce
from mtinsar.simulate.score import referenced_truth
from mtinsar.workflows.pipeline import run_sbas

SCENE = SceneConfig(ny=40, nx=50, n_dates=12)


@pytest.fixture(scope="module")
def scene():
    return simulate_scene(SCENE)


@pytest.fixture(scope="module")
def written(scene, tmp_path_factory):
    base = tmp_path_factory.mktemp("isce")
    return {"licsar": write_licsar(scene, base / "licsar"), "isce": write_isce(scene, base / "s")}


@pytest.fixture(scope="module")
def licsar_stack(written):
    return read_licsar(written["licsar"])


@pytest.fixture(scope="module")
def isce_stack(written):
    return read_isce(written["isce"])


@pytest.fixture
def stack_copy(written, tmp_path) -> Path:
    """A copy of the simulated topsStack folder to break."""
    return Path(shutil.copytree(written["isce"], tmp_path / "stack"))


def first_pair(root: Path) -> Path:
    return sorted((root / "merged" / "interferograms").iterdir())[0]


# --------------------------------------------------------------------------- acceptance


def test_velocity_equals_the_licsar_read(isce_stack, licsar_stack):
    cfg = RunConfig()
    ref = run_sbas(licsar_stack, cfg).result
    got = run_sbas(isce_stack, cfg).result
    assert (got.attrs["reference_y"], got.attrs["reference_x"]) == (
        ref.attrs["reference_y"],
        ref.attrs["reference_x"],
    )
    np.testing.assert_array_equal(np.isnan(got["velocity"]), np.isnan(ref["velocity"]))
    assert np.isfinite(ref["velocity"].values).sum() > 1500
    assert np.nanmax(np.abs(got["velocity"].values - ref["velocity"].values)) <= 1e-6


def test_stack_matches_the_scene(isce_stack, licsar_stack, scene):
    np.testing.assert_allclose(isce_stack["x"], licsar_stack["x"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(isce_stack["y"], licsar_stack["y"], rtol=0, atol=1e-9)
    assert PHASE_FACTOR == 1.0  # topsStack phase is earlier -> later, + away: as the stack's
    np.testing.assert_array_equal(isce_stack["unw"], licsar_stack["unw"])
    truth_coh = np.stack([scene.interferogram(k)[1] for k in range(len(scene.pairs))])
    np.testing.assert_allclose(isce_stack["coh"], truth_coh, atol=1e-7)
    np.testing.assert_allclose(isce_stack["bperp"], scene.pair_bperp(), atol=1e-4)
    t = scene.truth
    for name in ("height", "incidence", "los_e", "los_n", "los_u"):
        np.testing.assert_allclose(isce_stack[name], t[name], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(isce_stack["water"], t["water"])
    assert (isce_stack["conncomp"].values == 1).sum() == np.isfinite(isce_stack["unw"]).sum()
    attrs = isce_stack.attrs
    assert (attrs["track"], attrs["orbit_direction"]) == (5, "ascending")
    assert attrs["wavelength"] == pytest.approx(scene.wavelength)


def test_uplift_gives_positive_velocity(tmp_path):
    scene = simulate_scene(SceneConfig.noise_free(ny=32, nx=40, n_dates=8))
    res = run_sbas(read_isce(write_isce(scene, tmp_path / "s")), RunConfig()).result
    vel, _ = referenced_truth(scene.truth, res.attrs["reference_y"], res.attrs["reference_x"])
    up, down = vel > 0.005, vel < -0.02
    assert up.sum() > 20 and down.sum() > 20
    assert (res["velocity"].values[up] > 0).all() and (res["velocity"].values[down] < 0).all()
    np.testing.assert_allclose(res["velocity"].values, vel, atol=1e-4)


def test_baselines_are_against_the_stack_reference(written, scene):
    bperp = read_tops_baselines(written["isce"] / "baselines")
    r = stack_reference_index(scene)
    dates = [str(d).replace("-", "") for d in scene.dates.astype("datetime64[D]")]
    assert bperp[dates[r]] == 0.0 and len(bperp) == len(dates)
    expected = scene.bperp_dates - scene.bperp_dates[r]
    np.testing.assert_allclose([bperp[d] for d in dates], expected, atol=1e-9)


# --------------------------------------------------------------------------- layout variants


def test_raw_images_with_isce_xml_read_like_the_vrt(stack_copy, isce_stack):
    for vrt in stack_copy.rglob("*.vrt"):
        vrt.unlink()
    stack = read_isce(stack_copy)
    np.testing.assert_array_equal(stack["unw"], isce_stack["unw"])
    np.testing.assert_array_equal(stack["incidence"], isce_stack["incidence"])
    np.testing.assert_allclose(stack["x"], isce_stack["x"], rtol=0, atol=1e-12)


def test_pointing_inside_the_stack_and_detection(written, isce_stack):
    inner = read_isce(written["isce"] / "merged" / "interferograms")
    np.testing.assert_array_equal(inner["unw"], isce_stack["unw"])
    assert is_isce(written["isce"]) and is_isce(written["isce"] / "merged")
    assert not is_isce(written["licsar"]) and not is_isce(written["isce"] / "nope")


def test_two_stacks_along_track_are_stitched(scene, isce_stack, tmp_path):
    north = write_isce(scene, tmp_path / "north", rows=(0, 24))
    south = write_isce(scene, tmp_path / "south", rows=(16, SCENE.ny))
    # The south stack's unwrapping is off by 2 whole cycles in one pair.
    k = 4
    label = str(isce_stack["pair"].values[k])
    raw = south / "merged" / "interferograms" / label / "filt_fine.unw.geo"
    data = np.fromfile(raw, dtype="<f4").reshape(SCENE.ny - 16, 2, SCENE.nx)
    valid = data[:, 1] != 0
    data[:, 1][valid] += np.float32(4 * np.pi)
    data.tofile(raw)
    both = read_isce([north, south])
    np.testing.assert_allclose(both["y"], isce_stack["y"], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(np.isnan(both["unw"]), np.isnan(isce_stack["unw"]))
    np.testing.assert_allclose(both["unw"], isce_stack["unw"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(both["los_u"], isce_stack["los_u"], rtol=0, atol=1e-7)


def test_bbox_and_multilook_match_the_licsar_read(written, scene):
    y, x = scene.truth["y"].values, scene.truth["x"].values
    bbox = (float(x[3]), float(y[35]), float(x[40]), float(y[9]))
    stack = read_isce(written["isce"], IngestConfig(bbox=bbox, multilook=3))
    lic = read_licsar(written["licsar"], bbox=bbox, multilook=3)
    np.testing.assert_allclose(stack["x"], lic["x"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(stack["y"], lic["y"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(stack["unw"], lic["unw"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(stack["los_e"], lic["los_e"], rtol=0, atol=1e-5)


def test_polygon_keeps_only_the_pixels_inside(written, isce_stack, scene):
    y, x = scene.truth["y"].values, scene.truth["x"].values
    corners = [[x[2], y[2]], [x[30], y[2]], [x[2], y[25]], [x[2], y[2]]]  # a right triangle
    ring = [[float(a), float(b)] for a, b in corners]
    geojson = json.dumps({"type": "Polygon", "coordinates": [ring]})
    stack = read_isce(written["isce"], IngestConfig(polygon=geojson))
    full = isce_stack.sel(y=stack["y"], x=stack["x"], method="nearest", tolerance=1e-7)
    xx, yy = np.meshgrid(stack["x"].values, stack["y"].values)
    # Inside: above the hypotenuse from (x2, y25) to (x30, y2), in pixel units.
    col = (xx - x[2]) / (x[1] - x[0])
    row = (yy - y[2]) / (y[1] - y[0])
    inside = col / 28 + row / 23 <= 1 + 1e-9
    unw = stack["unw"].values
    assert np.isnan(unw[:, ~inside]).all()
    np.testing.assert_array_equal(unw[:, inside], full["unw"].values[:, inside])
    assert inside.sum() > 250


# --------------------------------------------------------------------------- bad input


def edit_xml(file: Path, name: str, value: str | None) -> None:
    """Set (or with None remove) the <property name=...> of an ISCE XML file."""
    text = file.read_text()
    pattern = rf'\s*<property name="{name}"><value>[^<]*</value></property>'
    new = "" if value is None else f'<property name="{name}"><value>{value}</value></property>'
    file.write_text(re.sub(pattern, new, text, count=1))


def test_mixed_tracks_and_wavelengths_are_refused(written, stack_copy):
    for xml in (stack_copy / "reference").glob("IW*.xml"):
        edit_xml(xml, "tracknumber", "99")
    with pytest.raises(InputError, match=r"mixed tracks: .*stack is track 99.*read each track"):
        read_isce([written["isce"], stack_copy])
    for xml in (stack_copy / "reference").glob("IW*.xml"):
        edit_xml(xml, "tracknumber", "5")
        edit_xml(xml, "radarwavelength", "0.2362")
    with pytest.raises(InputError, match=r"mixed wavelengths: .*stack has 0.2362 m"):
        read_isce([written["isce"], stack_copy])


def test_swaths_that_disagree_are_refused(stack_copy):
    edit_xml(stack_copy / "reference" / "IW2.xml", "radarwavelength", "0.0555")
    with pytest.raises(InputError, match=r"IW2.xml: radarwavelength = 0.0555 but .*IW1.xml"):
        read_isce(stack_copy)


def test_missing_metadata_key_is_named(stack_copy):
    xml = stack_copy / "reference" / "IW1.xml"
    edit_xml(xml, "radarwavelength", None)
    with pytest.raises(InputError, match=r"IW1.xml: missing metadata key 'radarwavelength'.*"
                       r"set ingest.wavelength"):  # fmt: skip
        read_isce(stack_copy)
    assert read_isce(stack_copy, IngestConfig(wavelength=0.0555)).attrs["wavelength"] == 0.0555
    shutil.rmtree(stack_copy / "reference")
    with pytest.raises(InputError, match=r"reference: no IW\*.xml .*set ingest.wavelength"):
        read_isce(stack_copy)


def test_truncated_image_is_named(stack_copy):
    raw = first_pair(stack_copy) / "filt_fine.unw.geo"
    raw.write_bytes(raw.read_bytes()[:1000])
    words = r"filt_fine.unw.geo: truncated \(1000 bytes, its header describes 16000\); copy"
    with pytest.raises(InputError, match=words):
        read_isce(stack_copy)


def test_missing_files_are_named(stack_copy):
    pair = first_pair(stack_copy)
    for sidecar in ("filt_fine.cor.geo.vrt", "filt_fine.cor.geo.xml"):
        (pair / sidecar).unlink()
    with pytest.raises(InputError, match=r"filt_fine.cor.geo: no .*\.vrt or .*\.xml next to it"):
        read_isce(stack_copy)
    for name in ("filt_fine.cor.geo",):
        (pair / name).unlink()
    with pytest.raises(InputError, match=rf"{pair.name}: no coherence file"):
        read_isce(stack_copy)
    shutil.rmtree(pair)
    geom = stack_copy / "merged" / "geom_reference"
    for f in geom.glob("los.rdr.geo*"):
        f.unlink()
    with pytest.raises(InputError, match=r"geom_reference: missing los.rdr.geo \(geometry\)"):
        read_isce(stack_copy)


def test_radar_coordinates_only_are_refused(stack_copy):
    for folder in (stack_copy / "merged" / "interferograms").iterdir():
        for f in folder.glob("filt_fine.unw.geo*"):
            f.rename(f.with_name(f.name.replace(".unw.geo", ".unw")))
    with pytest.raises(InputError, match="only radar-coordinate products .*geocode the stack"):
        read_isce(stack_copy)


def test_stacks_without_overlap_cannot_be_aligned(written, tmp_path):
    far = write_isce(
        simulate_scene(SceneConfig(ny=20, nx=24, n_dates=6, lon0=-97.0, start_date="2021-03-01")),
        tmp_path / "far",
    )
    with pytest.raises(InputError, match="grids cannot be aligned: .*does not overlap"):
        read_isce([written["isce"], far])


# --------------------------------------------------------------------------- lazy reads


def test_pixels_are_read_lazily_per_chunk_and_stack(scene, isce_stack, tmp_path):
    """unw/coh/conncomp are dask arrays of (pairs, chunk, chunk) blocks; a block opens only
    the stacks under it, so the northern rows compute after the southern files are gone."""
    north = write_isce(scene, tmp_path / "north", rows=(0, 24))
    south = write_isce(scene, tmp_path / "south", rows=(16, SCENE.ny))
    both = read_isce([north, south], IngestConfig(chunk_size=16))
    n = both.sizes["pair"]
    for name in ("unw", "coh", "conncomp"):
        assert both[name].chunks == ((n,), (16, 16, 8), (16, 16, 16, 2))
    for cor in (south / "merged" / "interferograms").glob("*/filt_fine.cor.geo"):
        cor.unlink()  # after the stack was opened
    np.testing.assert_array_equal(both["coh"][:, :16, 16:32].values,
                                  isce_stack["coh"][:, :16, 16:32].values)  # fmt: skip
    with pytest.raises(InputError, match=r"south/.*filt_fine.cor.geo.vrt: unreadable"):
        both["coh"][:, 16:, :].load()
    # unw blocks share the pair's 2 pi cycle alignment, read once from the frames' overlap.
    np.testing.assert_array_equal(both["unw"][:, 32:, :].values, isce_stack["unw"][:, 32:].values)
