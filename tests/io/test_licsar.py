"""COMET-LiCSAR reader on tiny frames written here with rasterio (4 dates, 5 pairs, 12x16 px)."""

import logging
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine

from mtinsar import stack
from mtinsar.conventions import SENTINEL1_WAVELENGTH, phase_to_displacement
from mtinsar.errors import InputError
from mtinsar.io.licsar import orbit_direction, read_baselines, read_licsar

NY, NX = 12, 16
POSTING = 0.001
TRANSFORM = Affine(POSTING, 0.0, 10.0, 0.0, -POSTING, 45.0)
FRAME = "005A_01234_131313"
DATES = ["20200101", "20200113", "20200125", "20200206"]
PAIRS = [(0, 1), (0, 2), (1, 2), (1, 3), (2, 3)]
LABELS = [f"{DATES[i]}_{DATES[j]}" for i, j in PAIRS]
BPERP = {"20200101": 0.0, "20200113": 30.5, "20200125": -20.25, "20200206": 55.0}
NEW_BASELINES = "".join(  # current form, here without the master's own row
    f"20200101 {d} {BPERP[d]} {12.0 * k}\n" for k, d in enumerate(DATES) if k
)
OLD_BASELINES = (
    "1 20200101 20200113 30.5 12.0 0.0 12.0 0.0 30.5\n"
    "2 20200113 20200125 -50.75 12.0 12.0 24.0 30.5 -20.25\n"
    "3 20200125 20200206 75.25 12.0 24.0 36.0 -20.25 55.0\n"
)


@dataclass
class Frame:
    """A written frame and the decoded values the reader must return."""

    root: Path  # what to pass to read_licsar
    ifg_dir: Path  # folder holding the pair folders
    meta_dir: Path
    unw: np.ndarray  # (pair, y, x) float32 rad, NaN = no data
    coh: np.ndarray
    geometry: dict[str, np.ndarray] = field(default_factory=dict)

    def unw_file(self, k: int) -> Path:
        return self.ifg_dir / LABELS[k] / f"{LABELS[k]}.geo.unw.tif"

    def cc_file(self, k: int) -> Path:
        return self.ifg_dir / LABELS[k] / f"{LABELS[k]}.geo.cc.tif"


def write_tif(path: Path, array: np.ndarray, transform: Affine = TRANSFORM) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(driver="GTiff", height=array.shape[0], width=array.shape[1], count=1)
    profile.update(dtype=array.dtype.name, crs="EPSG:4326", transform=transform, nodata=0)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array, 1)


def phase_history() -> np.ndarray:
    """(date, y, x) phase [rad] decreasing in time (range shortening = uplift)."""
    rows, cols = np.mgrid[0:NY, 0:NX]
    rate = 1.0 + rows / NY + cols / 100.0
    return -np.arange(len(DATES))[:, None, None] * rate[None] * 0.7


def make_frame(
    base: Path,
    layout: str = "portal",
    cc_dtype: str = "uint8",
    baselines: str | None = NEW_BASELINES,
    heading: float | None = -13.775063,
    geometry: bool = True,
) -> Frame:
    """Write a LiCSAR frame under `base` in the portal or GEOC layout."""
    if layout == "portal":
        root = base / "021" / FRAME
        ifg_dir, meta_dir = root / "interferograms", root / "metadata"
    else:
        root = base / "GEOC"
        ifg_dir = meta_dir = root
    rng = np.random.default_rng(42)
    phase = phase_history()
    unw = np.stack([phase[j] - phase[i] for i, j in PAIRS]).astype(np.float32)
    unw[1, 3, 4] = 0.0  # no data
    if cc_dtype == "uint8":
        code = rng.integers(1, 256, size=unw.shape).astype(np.uint8)
        code[2, 5, 6] = 0
        coh = code.astype(np.float32) / np.float32(255)
    else:
        code = rng.uniform(0.05, 1.0, size=unw.shape).astype(np.float32)
        code[2, 5, 6] = 0
        coh = code.copy()
    coh[code == 0] = np.nan
    for k, label in enumerate(LABELS):
        write_tif(ifg_dir / label / f"{label}.geo.unw.tif", unw[k])
        write_tif(ifg_dir / label / f"{label}.geo.cc.tif", code[k])
    frame = Frame(root, ifg_dir, meta_dir, np.where(unw == 0, np.nan, unw), coh)
    meta_dir.mkdir(parents=True, exist_ok=True)
    if geometry:
        frame.geometry = write_geometry(meta_dir, rng)
    if baselines is not None:
        (meta_dir / "baselines").write_text(baselines)
    if heading is not None:
        (meta_dir / "metadata.txt").write_text(
            f"master=20200101\ncenter_time=0:36:12.4\nheading={heading}\navg_height=300.0\n"
        )
    return frame


def write_geometry(meta_dir: Path, rng: np.random.Generator) -> dict[str, np.ndarray]:
    east = np.linspace(-0.55, -0.65, NX, dtype=np.float32)[None].repeat(NY, axis=0)
    north = np.full((NY, NX), -0.11, dtype=np.float32)
    up = np.sqrt(1 - east**2 - north**2).astype(np.float32)
    hgt = rng.uniform(100, 500, size=(NY, NX)).astype(np.float32)
    hgt[0, 0] = 0.0  # no data
    for comp, arr in (("E", east), ("N", north), ("U", up), ("hgt", hgt)):
        write_tif(meta_dir / f"{FRAME}.geo.{comp}.tif", arr)
    return {"los_e": east, "los_n": north, "los_u": up, "height": np.where(hgt == 0, np.nan, hgt)}


def rio_transform(ds: xr.Dataset) -> Affine:
    # rioxarray 0.19 multiplies Affines with `*`, which affine 3 flags as pending deprecation.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return ds.rio.transform()


def assert_transform(ds: xr.Dataset, expected: tuple[float, ...]) -> None:
    assert tuple(rio_transform(ds))[:6] == pytest.approx(expected, abs=1e-12)


def block_mean(a: np.ndarray, f: int) -> np.ndarray:
    """Reference multilook written the slow, obvious way."""
    ny, nx = a.shape[-2] // f, a.shape[-1] // f
    out = np.full((*a.shape[:-2], ny, nx), np.nan)
    for i in range(ny):
        for j in range(nx):
            block = a[..., i * f : (i + 1) * f, j * f : (j + 1) * f].reshape(*a.shape[:-2], -1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks
                out[..., i, j] = np.nanmean(block, axis=-1)
    return out


@pytest.fixture
def frame(tmp_path) -> Frame:
    return make_frame(tmp_path)


# --------------------------------------------------------------------------- values


def test_reads_portal_frame_values_sign_and_units(frame):
    ds = read_licsar(frame.root)
    assert list(ds["pair"].values) == LABELS
    assert ds["unw"].dtype == np.float32 and ds["coh"].dtype == np.float32
    # Factor +1: the stack holds the file's phase unchanged; 0 became NaN.
    np.testing.assert_array_equal(ds["unw"].values, frame.unw)
    assert np.isnan(ds["unw"].values[1, 3, 4])
    # Phase decreasing in time = range shortening = uplift: displacement must be positive.
    disp = phase_to_displacement(ds.attrs["wavelength"]) * ds["unw"].sel(pair=LABELS[0])
    assert float(ds["unw"].values[0, 0, 0]) == pytest.approx(-0.7)
    assert float(disp[0, 0]) == pytest.approx(SENTINEL1_WAVELENGTH / (4 * np.pi) * 0.7)
    assert bool((disp > 0).all())
    np.testing.assert_array_equal(ds["ref_date"].values[:2], np.datetime64("2020-01-01", "ns"))
    assert ds["sec_date"].values[-1] == np.datetime64("2020-02-06", "ns")


def test_coherence_uint8_scaled_and_zero_is_nodata(frame):
    ds = read_licsar(frame.root)
    np.testing.assert_allclose(ds["coh"].values, frame.coh, rtol=1e-6)
    assert np.isnan(ds["coh"].values[2, 5, 6])
    assert np.nanmax(ds["coh"].values) <= 1.0 and np.nanmin(ds["coh"].values) > 0


def test_coherence_float32_older_products(tmp_path):
    frame = make_frame(tmp_path, cc_dtype="float32")
    ds = read_licsar(frame.root)
    np.testing.assert_array_equal(ds["coh"].values, frame.coh)
    assert np.isnan(ds["coh"].values[2, 5, 6])


def test_geometry_and_incidence(frame):
    ds = read_licsar(frame.root)
    for name in ("los_e", "los_n", "los_u", "height"):
        np.testing.assert_array_equal(ds[name].values, frame.geometry[name])
        assert ds[name].dtype == np.float32
    assert np.isnan(ds["height"].values[0, 0])
    expected = np.degrees(np.arccos(frame.geometry["los_u"]))
    np.testing.assert_allclose(ds["incidence"].values, expected, rtol=1e-5)


def test_missing_geometry_is_nan_with_warning(tmp_path, caplog):
    frame = make_frame(tmp_path, geometry=False)
    with caplog.at_level(logging.WARNING):
        ds = read_licsar(frame.root)
    assert np.isnan(ds["height"].values).all() and np.isnan(ds["incidence"].values).all()
    assert "geometry file(s)" in caplog.text and f"{FRAME}.geo.E.tif" in caplog.text
    assert ds.attrs["frame"] == FRAME  # from the portal path .../021/{frame}


def test_geometry_on_a_larger_grid_or_another_frame(frame):
    hgt = frame.meta_dir / f"{FRAME}.geo.hgt.tif"
    wider = np.arange(NY * (NX + 1), dtype=np.float32).reshape(NY, NX + 1) + 1
    write_tif(hgt, wider)  # one more column on the same lattice: its pixels are copied
    np.testing.assert_array_equal(read_licsar(frame.root)["height"].values, wider[:, :NX])
    write_tif(hgt, wider, Affine(POSTING, 0.0, 20.0, 0.0, -POSTING, 45.0))  # elsewhere
    with pytest.raises(InputError, match=f"{hgt}: does not cover .*metadata files of the same"):
        read_licsar(frame.root)


# --------------------------------------------------------------------------- baselines


@pytest.mark.parametrize("text", [NEW_BASELINES, OLD_BASELINES], ids=["current", "old"])
def test_bperp_from_baselines_both_forms(tmp_path, text):
    frame = make_frame(tmp_path, baselines=text)
    ds = read_licsar(frame.root)
    expected = [BPERP[DATES[j]] - BPERP[DATES[i]] for i, j in PAIRS]
    np.testing.assert_allclose(ds["bperp"].values, expected)
    assert ds["bperp"].dtype == np.float32
    assert read_baselines(frame.meta_dir / "baselines") == BPERP


def test_bperp_nan_when_file_missing_or_epoch_missing(tmp_path, caplog):
    frame = make_frame(tmp_path / "a", baselines=None)
    with caplog.at_level(logging.WARNING):
        ds = read_licsar(frame.root)
    assert np.isnan(ds["bperp"].values).all()
    assert "baselines file missing" in caplog.text
    caplog.clear()
    partial = "".join(line + "\n" for line in NEW_BASELINES.splitlines()[:2])  # no 20200206
    frame = make_frame(tmp_path / "b", baselines=partial)
    with caplog.at_level(logging.WARNING):
        ds = read_licsar(frame.root)
    assert np.isnan(ds["bperp"].values[3:]).all() and np.isfinite(ds["bperp"].values[:3]).all()
    assert "20200206" in caplog.text


# --------------------------------------------------------------------------- attributes


def test_attributes(frame):
    ds = read_licsar(frame.root, wavelength=0.0555)
    assert ds.attrs == {
        "wavelength": 0.0555,
        "platform": "Sentinel-1",
        "orbit_direction": "ascending",
        "track": 5,
        "frame": FRAME,
        "processor": "COMET-LiCSAR",
        "source": str(frame.root),
        "multilook": 1,
    }
    assert ds.rio.crs.to_epsg() == 4326
    assert rio_transform(ds) == TRANSFORM
    assert read_licsar(frame.root).attrs["wavelength"] == SENTINEL1_WAVELENGTH


def test_orbit_direction_from_heading_overrides_frame_letter(tmp_path):
    frame = make_frame(tmp_path, heading=-166.2)
    assert read_licsar(frame.root).attrs["orbit_direction"] == "descending"


@pytest.mark.parametrize(
    ("heading", "frame", "expected"),
    [
        (-13.8, "", "ascending"),
        (346.2, "", "ascending"),  # the same heading written as 0..360
        (-166.2, "", "descending"),
        (193.8, "005A_01234_131313", "descending"),
        (None, "124D_05678_131313", "descending"),
        (None, "005A_01234_131313", "ascending"),
        (None, "", "unknown"),
    ],
)
def test_orbit_direction(heading, frame, expected):
    assert orbit_direction(heading, frame) == expected


# --------------------------------------------------------------------------- crop, multilook


def test_bbox_crop_equals_sub_array_and_reads_only_the_window(frame, monkeypatch):
    reads = []
    real_read = rasterio.io.DatasetReader.read

    def spy(self, *args, **kwargs):
        reads.append(kwargs.get("window"))
        return real_read(self, *args, **kwargs)

    monkeypatch.setattr(rasterio.io.DatasetReader, "read", spy)
    bbox = (10.003, 45.0 - 0.007, 10.009, 45.0 - 0.002)  # rows 2..6, cols 3..8
    ds = read_licsar(frame.root, bbox=bbox).load()  # pixels load lazily: load them now
    cropped = list(reads)
    full = read_licsar(frame.root)
    np.testing.assert_array_equal(ds["unw"].values, frame.unw[:, 2:7, 3:9])
    # Same values and bit-identical coordinates as the full grid's: crops align exactly.
    sub = full.isel(y=slice(2, 7), x=slice(3, 9))
    xr.testing.assert_identical(ds.drop_vars("spatial_ref"), sub.drop_vars("spatial_ref"))
    assert_transform(ds, (POSTING, 0, 10.003, 0, -POSTING, 44.998))
    assert len(cropped) == 2 * len(LABELS) + 4  # unw + cc per pair, E/N/U/hgt
    assert all((w.row_off, w.col_off, w.height, w.width) == (2, 3, 5, 6) for w in cropped)


def test_multilook_block_means_with_nan(frame):
    ds = read_licsar(frame.root, multilook=2)
    assert ds.sizes == {"pair": 5, "y": 6, "x": 8}
    expected = block_mean(frame.unw, 2)
    np.testing.assert_allclose(ds["unw"].values, expected, rtol=1e-6)
    # Pair 1 has a NaN at (3, 4): its block (1, 2) is the mean of the 3 other pixels.
    hand = np.mean([frame.unw[1, 2, 4], frame.unw[1, 2, 5], frame.unw[1, 3, 5]])
    assert ds["unw"].values[1, 1, 2] == pytest.approx(hand, rel=1e-6)
    np.testing.assert_allclose(ds["coh"].values, block_mean(frame.coh, 2), rtol=1e-6)
    height = block_mean(frame.geometry["height"], 2)
    np.testing.assert_allclose(ds["height"].values, height, rtol=1e-6)
    norm = np.sqrt(ds["los_e"] ** 2 + ds["los_n"] ** 2 + ds["los_u"] ** 2)
    np.testing.assert_allclose(norm, 1.0, rtol=1e-6)
    assert_transform(ds, (2 * POSTING, 0, 10.0, 0, -2 * POSTING, 45.0))
    np.testing.assert_allclose(ds["y"].values, 45.0 - 0.002 * (np.arange(6) + 0.5))
    assert ds.attrs["multilook"] == 2


def test_multilook_after_crop_drops_remainder(frame):
    bbox = (10.003, 45.0 - 0.012, 10.016, 45.0 - 0.002)  # rows 2..11 (10), cols 3..15 (13)
    ds = read_licsar(frame.root, bbox=bbox, multilook=3)
    assert (ds.sizes["y"], ds.sizes["x"]) == (3, 4)
    expected = block_mean(frame.unw[:, 2:11, 3:15], 3)
    np.testing.assert_allclose(ds["unw"].values, expected, rtol=1e-6)
    assert_transform(ds, (0.003, 0, 10.003, 0, -0.003, 44.998))
    np.testing.assert_allclose(ds["x"].values, 10.003 + 0.003 * (np.arange(4) + 0.5))


def _spy_reads(monkeypatch) -> list:
    """(file name, window) of every rasterio read from now on."""
    reads = []
    real_read = rasterio.io.DatasetReader.read

    def spy(self, *args, **kwargs):
        reads.append((Path(self.name).name, kwargs.get("window")))
        return real_read(self, *args, **kwargs)

    monkeypatch.setattr(rasterio.io.DatasetReader, "read", spy)
    return reads


def test_striped_files_are_read_in_whole_width_bands_once(frame, monkeypatch):
    # GDAL's default layout, as LiCSAR writes: a read decodes whole strips, so the blocks are
    # bands of chunk_size² pixels (8² = 64 px: 4 rows x 16), each row read once per pair.
    with rasterio.open(frame.unw_file(0)) as src:
        assert src.block_shapes[0][1] == NX  # striped
    ds = read_licsar(frame.root, chunk_size=8)
    assert ds["unw"].chunks[1:] == ds["coh"].chunks[1:] == ((4, 4, 4), (NX,))
    reads = _spy_reads(monkeypatch)
    np.testing.assert_array_equal(ds["unw"].values, frame.unw)
    np.testing.assert_array_equal(ds["coh"].values, frame.coh)
    unw = [w for name, w in reads if name == frame.unw_file(0).name]
    assert sorted((w.row_off, w.height, w.col_off, w.width) for w in unw) == [
        (0, 4, 0, NX), (4, 4, 0, NX), (8, 4, 0, NX)
    ]  # fmt: skip
    # Multilooked: bands of the output grid (6 x 8 -> 2 rows x 8 for 4² px), same values.
    looked = read_licsar(frame.root, multilook=2, chunk_size=4)
    assert looked["unw"].chunks[1:] == ((2, 2, 2), (8,))
    np.testing.assert_allclose(looked["unw"].values, block_mean(frame.unw, 2), rtol=1e-6)
    # Blocks that already hold whole rows stay square.
    assert read_licsar(frame.root, chunk_size=NX)["unw"].chunks[1:] == ((NY,), (NX,))


# --------------------------------------------------------------------------- layouts


def test_geoc_layout_and_its_parent(tmp_path):
    geoc = make_frame(tmp_path / "g", layout="geoc")
    portal = make_frame(tmp_path / "p")
    ref = read_licsar(portal.root)
    for path in (geoc.root, geoc.root.parent):
        ds = read_licsar(path)
        xr.testing.assert_identical(ds.drop_attrs(), ref.drop_attrs())
        assert ds.attrs["frame"] == FRAME and ds.attrs["track"] == 5


def test_exclude_pairs(frame):
    ds = read_licsar(frame.root, exclude_pairs=[LABELS[2]])
    assert list(ds["pair"].values) == LABELS[:2] + LABELS[3:]
    with pytest.raises(InputError) as err:
        read_licsar(frame.root, exclude_pairs=["20190101_20190113"])
    assert "20190101_20190113 not found" in str(err.value) and LABELS[0] in str(err.value)


def test_result_saves_and_reopens(frame, tmp_path):
    ds = read_licsar(frame.root, multilook=2, progress=True)
    opened = stack.open(stack.save(ds, tmp_path / "stack.zarr"))
    xr.testing.assert_identical(opened.load(), ds)


# --------------------------------------------------------------------------- bad inputs


def test_missing_path_and_not_a_folder(tmp_path):
    with pytest.raises(InputError, match=f"{tmp_path / 'nope'}: no such folder"):
        read_licsar(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        read_licsar(tmp_path / "file")


def test_no_interferograms_lists_layouts(tmp_path):
    (tmp_path / "interferograms").mkdir()
    with pytest.raises(InputError) as err:
        read_licsar(tmp_path)
    message = str(err.value)
    assert "no interferograms found" in message and str(tmp_path) in message
    assert "interferograms/YYYYMMDD_YYYYMMDD" in message and "GEOC" in message


def test_two_layouts_at_once(tmp_path):
    make_frame(tmp_path, layout="geoc")
    shutil.copytree(tmp_path / "GEOC", tmp_path / "interferograms")
    with pytest.raises(InputError, match="found in two places"):
        read_licsar(tmp_path)


@pytest.mark.parametrize(
    ("label", "why"),
    [
        ("20200125_20200113", "first date not before"),
        ("20200113_20200113", "first date not before"),
        ("20201301_20201302", "valid dates"),
    ],
)
def test_bad_pair_names(frame, label, why):
    write_tif(frame.ifg_dir / label / f"{label}.geo.unw.tif", np.ones((NY, NX), np.float32))
    with pytest.raises(InputError) as err:
        read_licsar(frame.root)
    assert label in str(err.value) and why in str(err.value)


def test_bad_file_name_in_other_folder(frame):
    bad = frame.ifg_dir / "extra" / "pair1.geo.unw.tif"
    write_tif(bad, np.ones((NY, NX), np.float32))
    with pytest.raises(InputError, match=f"{bad}: 'pair1' is not a pair name"):
        read_licsar(frame.root)


def test_every_folder_must_be_a_pair_folder(frame):
    (frame.ifg_dir / ".ipynb_checkpoints").mkdir()  # hidden: ignored
    assert read_licsar(frame.root).sizes["pair"] == 5
    (frame.ifg_dir / "2019_notapair").mkdir()
    with pytest.raises(InputError, match="2019_notapair' is not a pair name"):
        read_licsar(frame.root)


def test_pair_folder_without_unw_is_skipped_with_warning(frame, caplog):
    (frame.ifg_dir / "20200101_20200206").mkdir()
    with caplog.at_level(logging.WARNING):
        assert read_licsar(frame.root).sizes["pair"] == 5
    assert "20200101_20200206: no .geo.unw.tif file" in caplog.text


def test_nested_copy_is_a_duplicate(frame):
    copy = frame.ifg_dir / "20200101_20200206" / "old" / LABELS[2]
    shutil.copytree(frame.ifg_dir / LABELS[2], copy)
    with pytest.raises(InputError, match=f"pair {LABELS[2]} found twice"):
        read_licsar(frame.root)


def test_duplicate_pair_names_both_paths(frame):
    shutil.copytree(frame.ifg_dir / LABELS[0], frame.ifg_dir / "backup")
    with pytest.raises(InputError) as err:
        read_licsar(frame.root)
    message = str(err.value)
    assert f"pair {LABELS[0]} found twice" in message
    assert str(frame.unw_file(0)) in message and str(frame.ifg_dir / "backup") in message


def test_pair_off_the_lattice_is_resampled(frame):
    """Pair 3 written half a pixel east of the others' lattice: resampled onto it. Its phase
    is a plane in x and y, which bilinear resampling reproduces, so the resampled values are
    the plane at the lattice's pixel centres; the other pairs are copied exactly."""
    i, j = PAIRS[3]
    rows, cols = np.mgrid[0:NY, 0:NX]
    rate = 1.0 + rows / NY + (cols + 0.5) / 100.0  # the plane at the shifted pixel centres
    shifted = Affine(POSTING, 0.0, 10.0 + POSTING / 2, 0.0, -POSTING, 45.0)
    write_tif(frame.unw_file(3), (-(j - i) * 0.7 * rate).astype(np.float32), shifted)
    ds = read_licsar(frame.root)
    # The shifted file covers only half of the first column: the common area starts at col 1.
    assert ds.sizes["x"] == NX - 1 and ds["x"].values[0] == pytest.approx(10.0 + 1.5 * POSTING)
    others = [k for k in range(len(PAIRS)) if k != 3]
    np.testing.assert_array_equal(ds["unw"].values[others], frame.unw[others][:, :, 1:])
    np.testing.assert_allclose(ds["unw"].values[3], frame.unw[3][:, 1:], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(ds["coh"].values, frame.coh[:, :, 1:])


def test_grids_without_overlap_name_the_file(frame):
    far = Affine(POSTING, 0.0, 11.0, 0.0, -POSTING, 45.0)  # 1 deg east of the others
    write_tif(frame.unw_file(3), np.ones((NY, NX), np.float32), far)
    with pytest.raises(InputError, match=f"cannot be aligned: {frame.unw_file(3)} .*not overlap"):
        read_licsar(frame.root)


def test_smaller_coherence_crops_the_stack(frame):
    write_tif(frame.cc_file(2), np.full((NY - 1, NX), 255, np.uint8))
    ds = read_licsar(frame.root)
    assert ds.sizes["y"] == NY - 1
    np.testing.assert_array_equal(ds["unw"].values, frame.unw[:, : NY - 1])
    np.testing.assert_array_equal(ds["coh"].values[2], np.ones((NY - 1, NX), np.float32))


def test_truncated_geotiff(frame):
    data = frame.unw_file(0).read_bytes()
    frame.unw_file(0).write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=f"{frame.unw_file(0)}: unreadable GeoTIFF"):
        read_licsar(frame.root).load()  # the header survives: the pixels fail when read


def test_missing_crs_assumes_wgs84_with_warning(tmp_path, caplog):
    frame = make_frame(tmp_path)
    for k in range(len(LABELS)):
        for file in (frame.unw_file(k), frame.cc_file(k)):
            with rasterio.open(file) as src:
                data, profile = src.read(1), src.profile
            profile["crs"] = None
            with rasterio.open(file, "w", **profile) as dst:
                dst.write(data, 1)
    shutil.rmtree(frame.meta_dir)
    with caplog.at_level(logging.WARNING):
        ds = read_licsar(frame.root)
    assert ds.rio.crs.to_epsg() == 4326 and "assumed EPSG:4326" in caplog.text


def test_not_georeferenced_geotiff(frame):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(
            frame.unw_file(0), "w", driver="GTiff", height=NY, width=NX, count=1, dtype="float32"
        ) as dst:
            dst.write(np.ones((NY, NX), np.float32), 1)
    with pytest.raises(InputError, match=f"{frame.unw_file(0)}: grid is not north-up"):
        read_licsar(frame.root)


def test_corrupt_geotiff(frame):
    frame.unw_file(2).write_bytes(b"II*\x00" + b"garbage" * 20)
    with pytest.raises(InputError, match=f"{frame.unw_file(2)}: unreadable GeoTIFF"):
        read_licsar(frame.root)


def test_missing_coherence_file(frame):
    frame.cc_file(4).unlink()
    with pytest.raises(InputError, match=f"{frame.cc_file(4)}: coherence file missing"):
        read_licsar(frame.root)


def test_all_nodata_pair(frame, tmp_path):
    """Pixels load lazily: an empty pair is reported where they are first read (ingest)."""
    write_tif(frame.unw_file(1), np.zeros((NY, NX), np.float32))
    with pytest.raises(InputError) as err:
        stack.save(read_licsar(frame.root), tmp_path / "out" / "stack.zarr")
    message = str(err.value)
    assert str(frame.root) in message and LABELS[1] in message and "no valid data" in message
    assert f"--exclude-pair {LABELS[1]}" in message
    assert not list((tmp_path / "out").iterdir())  # no partial store left behind
    kept = read_licsar(frame.root, exclude_pairs=[LABELS[1]])
    assert stack.save(kept, tmp_path / "out" / "stack.zarr").is_dir()
    assert kept.sizes["pair"] == 4


def test_bbox_outside_data_gives_both_extents(frame):
    with pytest.raises(InputError) as err:
        read_licsar(frame.root, bbox=(11.0, 44.0, 11.5, 44.5))
    message = str(err.value)
    assert "(11.0, 44.0, 11.5, 44.5)" in message and "(10.0, 44.988, 10.016, 45.0)" in message


@pytest.mark.parametrize("bbox", [(10.01, 44.99, 10.0, 45.0), (10.0, 45.0, 10.01, 44.99)])
def test_invalid_bbox(frame, bbox):
    with pytest.raises(InputError, match="invalid, need lon_min < lon_max"):
        read_licsar(frame.root, bbox=bbox)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"multilook": 0}, "multilook 0: must be an integer >= 1"),
        ({"multilook": 13}, "multilook 13 is larger than the grid of 12x16 px"),
        ({"multilook": 6, "bbox": (10.0, 44.996, 10.01, 45.0)}, "cropped grid of 4x10 px"),
        ({"wavelength": -0.05}, "wavelength -0.05"),
        ({"wavelength": "abc"}, "wavelength .abc."),
        ({"bbox": (1, 2, 3)}, "expected 4 numbers"),
    ],
)
def test_bad_options(frame, kwargs, match):
    with pytest.raises(InputError, match=match):
        read_licsar(frame.root, **kwargs)
