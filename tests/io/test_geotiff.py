"""Generic GeoTIFF pair stacks: simulated scenes written by `write_geotiff_stack`, read back."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from mtinsar.config import IngestConfig, RunConfig
from mtinsar.conventions import SENTINEL1_WAVELENGTH
from mtinsar.errors import InputError
from mtinsar.io.core import grid as gridlib
from mtinsar.io.core import mosaic
from mtinsar.io.geotiff import is_geotiff, read_geotiff
from mtinsar.io.licsar import read_licsar
from mtinsar.simulate import SceneConfig, simulate_scene, write_licsar
from mtinsar.simulate.geotiff import shifted_grid, write_geotiff_stack, write_tif
from mtinsar.simulate.score import referenced_truth, score_result
from mtinsar.workflows.pipeline import run_sbas


@pytest.fixture(scope="module")
def scene():
    return simulate_scene(SceneConfig(ny=40, nx=50, n_dates=12, seed=5))


@pytest.fixture(scope="module")
def written(scene, tmp_path_factory):
    base = tmp_path_factory.mktemp("geotiff")
    return write_licsar(scene, base / "licsar"), write_geotiff_stack(scene, base / "stack")


@pytest.fixture(scope="module")
def full_stack(written):
    return read_geotiff(written[1])


def copy_of(src: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(src, tmp_path / "stack"))


def rewrite(path: Path, tags=None, drop=(), transform=None, crop=None) -> None:
    """Write `path` again with changed tags, transform or a crop (rows, cols slices)."""
    with rasterio.open(path) as src:
        data, profile, old = src.read(1), src.profile, src.tags()
    new = {k: v for k, v in old.items() if k not in drop and k != "AREA_OR_POINT"}
    new.update(tags or {})
    t = transform or profile["transform"]
    if crop is not None:
        data = data[crop]
        t = gridlib.window_transform(t, crop[0].start or 0, crop[1].start or 0)
    path.unlink()
    write_tif(path, data, profile["crs"], t, new, nodata=profile["nodata"])


# ------------------------------------------------------------------ acceptance


def test_same_velocity_as_the_licsar_layout(scene, written):
    licsar_dir, stack_dir = written
    cfg = RunConfig()
    ours = run_sbas(read_geotiff(stack_dir), cfg).result
    theirs = run_sbas(read_licsar(licsar_dir), cfg).result
    v, v0 = ours["velocity"].values, theirs["velocity"].values
    np.testing.assert_array_equal(np.isnan(v), np.isnan(v0))
    assert np.isfinite(v).sum() > 1500
    assert np.nanmax(np.abs(v - v0)) <= 1e-6
    rmse, rmse0 = (score_result(r, scene.truth)["velocity_rmse"] for r in (ours, theirs))
    assert abs(rmse - rmse0) <= 1e-6 and rmse < 0.05


def test_stack_contents_follow_the_files(scene, full_stack):
    ds = full_stack
    assert list(ds["pair"].values) == scene.pair_names()
    assert ds.attrs["wavelength"] == SENTINEL1_WAVELENGTH
    assert (
        ds.attrs["orbit_direction"] == "ascending" and ds.attrs["processor"] == "mtinsar.simulate"
    )
    np.testing.assert_allclose(ds["bperp"].values, scene.pair_bperp(), atol=1e-4)
    np.testing.assert_array_equal(ds["height"].values, scene.truth["height"].values)
    unw, coh = scene.interferogram(3)
    np.testing.assert_array_equal(ds["unw"].values[3], unw)
    np.testing.assert_allclose(ds["coh"].values[3], coh, atol=0.5 / 255)
    # Scalar incidence/heading from the metadata: a constant field, and LOS built from them.
    inc = float(scene.truth["incidence"].values.mean())
    np.testing.assert_allclose(ds["incidence"].values, inc, atol=1e-4)
    los = np.stack([ds[v].values for v in ("los_e", "los_n", "los_u")])
    np.testing.assert_allclose((los**2).sum(0), 1.0, atol=1e-6)
    np.testing.assert_allclose(ds["los_u"].values, np.cos(np.deg2rad(inc)), atol=1e-6)
    assert (ds["los_e"].values < 0).all()  # ascending: the satellite is to the west


@pytest.mark.parametrize("sign", [1, -1])
def test_sign_factor_uplift_is_positive(tmp_path, sign):
    """Files whose phase sign is `sign` read with geotiff_phase_sign=sign: uplift > 0."""
    scene = simulate_scene(SceneConfig.noise_free(ny=40, nx=50, n_dates=10, seed=2))
    folder = write_geotiff_stack(scene, tmp_path / "s", phase_sign=sign)
    res = run_sbas(read_geotiff(folder, IngestConfig(geotiff_phase_sign=sign)), RunConfig()).result
    vel, _ = referenced_truth(scene.truth, res.attrs["reference_y"], res.attrs["reference_x"])
    up = vel > 0.005
    assert up.sum() > 20
    assert (res["velocity"].values[up] > 0).all()
    np.testing.assert_allclose(res["velocity"].values, vel, atol=1e-4)
    # Read with the wrong sign, the same uplift comes out as subsidence.
    flipped = IngestConfig(geotiff_phase_sign=-sign)
    wrong = run_sbas(read_geotiff(folder, flipped), RunConfig()).result
    assert (wrong["velocity"].values[up] < 0).all()


# ------------------------------------------------------------------ selection and layout


def test_bbox_polygon_and_multilook(written, full_stack):
    t = gridlib.transform_from_centres(full_stack["y"].values, full_stack["x"].values)
    bbox = (t.c + 10.5 * t.a, t.f + 30.5 * t.e, t.c + 30.5 * t.a, t.f + 5.5 * t.e)
    crop = read_geotiff(written[1], IngestConfig(bbox=bbox))
    expected = full_stack.isel(y=slice(5, 31), x=slice(10, 31))
    np.testing.assert_array_equal(crop["unw"].values, expected["unw"].values)
    np.testing.assert_array_equal(crop["x"].values, expected["x"].values)
    corners = [[bbox[0], bbox[1]], [bbox[2], bbox[1]], [bbox[0], bbox[3]], [bbox[0], bbox[1]]]
    triangle = json.dumps({"type": "Polygon", "coordinates": [corners]})
    masked = read_geotiff(written[1], IngestConfig(polygon=triangle))
    assert masked.sizes == crop.sizes
    lower_left = np.add.outer(np.arange(26)[::-1] / 26, np.arange(21) / 21) < 1 - 0.1
    valid = np.isfinite(expected["unw"].values[0])
    assert np.isfinite(masked["unw"].values[0][lower_left & valid]).all()
    assert np.isnan(masked["unw"].values[0][~lower_left]).mean() > 0.9
    # Small chunks: several lazy blocks, each reading its part of the window and the mask.
    blocks = read_geotiff(written[1], IngestConfig(polygon=triangle, chunk_size=16))
    assert blocks["unw"].chunks[1:] == ((16, 10), (16, 5))
    np.testing.assert_array_equal(blocks["unw"].values, masked["unw"].values)
    blocks = read_geotiff(written[1], IngestConfig(multilook=2, chunk_size=16))
    assert blocks["coh"].chunks[1:] == ((16, 4), (16, 9))
    np.testing.assert_allclose(
        blocks["coh"].values, gridlib.multilook(full_stack["coh"].values, 2), rtol=0, atol=1e-6
    )
    looked = read_geotiff(written[1], IngestConfig(multilook=4))
    np.testing.assert_allclose(
        looked["unw"].values, gridlib.multilook(full_stack["unw"].values, 4), rtol=0, atol=1e-5
    )


def test_only_the_selected_window_is_read(written, tmp_path):
    """Bytes of a tile outside the bbox are destroyed: a bbox read still works (it never
    touches them), a full read fails naming the file."""
    folder = copy_of(written[1], tmp_path)
    victim = sorted(folder.glob("*_unw.tif"))[0]
    with rasterio.open(victim) as src:  # tiles of 16 x 16 px: tile (col 2, row 2) at px 32..
        offset = int(src.get_tag_item("BLOCK_OFFSET_2_2", "TIFF", bidx=1))
        size = int(src.get_tag_item("BLOCK_SIZE_2_2", "TIFF", bidx=1))
        t = src.transform
    with open(victim, "r+b") as f:
        f.seek(offset)
        f.write(b"\xff" * size)
    bbox = (t.c + 1 * t.a, t.f + 15 * t.e, t.c + 15 * t.a, t.f + 1 * t.e)
    crop = read_geotiff(folder, IngestConfig(bbox=bbox))
    assert np.isfinite(crop["unw"].values).sum() > 100
    lazy = read_geotiff(folder)  # headers only: the damage is not seen yet
    with pytest.raises(InputError, match=f"{victim.name}: unreadable GeoTIFF"):
        lazy["unw"].load()


def test_dates_from_metadata_or_folder_names(written, full_stack, tmp_path):
    folder = copy_of(written[1], tmp_path)
    files = sorted(folder.glob("ifg_*.tif"))
    for k, file in enumerate(files):
        if k % 2:  # dates in the GDAL metadata only
            file.rename(folder / file.name.replace(file.name[4:21], f"n{k:03d}"))
        else:  # dates in a GMTSAR-like pair folder
            (folder / file.name[4:21]).mkdir(exist_ok=True)
            file.rename(folder / file.name[4:21] / file.name.replace(file.name[4:21], "x"))
    ds = read_geotiff(folder)
    np.testing.assert_array_equal(ds["pair"].values, full_stack["pair"].values)
    np.testing.assert_array_equal(ds["unw"].values, full_stack["unw"].values)


def test_differing_extents_on_one_lattice_are_cropped_to_the_overlap(written, full_stack, tmp_path):
    folder = copy_of(written[1], tmp_path)
    rewrite(next(folder.glob("*_unw.tif")), crop=(slice(3, None), slice(0, 45)))
    ds = read_geotiff(folder)
    np.testing.assert_array_equal(ds["unw"].values, full_stack["unw"].values[:, 3:, :45])
    np.testing.assert_allclose(ds["y"].values, full_stack["y"].values[3:], rtol=0, atol=1e-9)


def test_is_geotiff(written, tmp_path):
    assert is_geotiff(written[1])
    assert not is_geotiff(tmp_path) and not is_geotiff(written[1] / "dem.tif")


# ------------------------------------------------------------------ bad input


def test_mixed_wavelengths(written, tmp_path):
    folder = copy_of(written[1], tmp_path)
    odd = sorted(folder.glob("*_unw.tif"))[4]
    rewrite(odd, tags={"WAVELENGTH_METRES": "0.2362"})  # an L-band pair among C-band ones
    with pytest.raises(
        InputError, match=f"mixed wavelengths in one stack: .*{odd.name} says 0.2362"
    ):
        read_geotiff(folder)


def test_missing_wavelength_needs_the_config(written, tmp_path):
    folder = copy_of(written[1], tmp_path)
    for file in folder.glob("*_unw.tif"):
        rewrite(file, drop=("WAVELENGTH_METRES",))
    with pytest.raises(
        InputError, match=r"no radar wavelength in the metadata.*ingest\.wavelength"
    ):
        read_geotiff(folder)
    ds = read_geotiff(folder, IngestConfig(wavelength=0.0555))
    assert ds.attrs["wavelength"] == 0.0555


def test_pair_off_the_lattice_is_resampled(scene, full_stack, tmp_path):
    """One pair written half a pixel off the others' lattice is resampled onto it; the other
    pairs are copied exactly.

    Scored on the same pixels, after removing the mean velocity error (the resampled
    coherence moves the reference pixel, whose own error offsets every velocity: plain RMSE
    0.01316 vs 0.01489 m/yr). Measured, seed 5: 0.012221 m/yr vs 0.012204 aligned (+0.14 %);
    bilinear resampling averages neighbouring pixels of 1 of 33 pairs. Tolerance 2 %.
    """
    grid = mosaic.Grid(full_stack.rio.transform(), (40, 50), full_stack.rio.crs)
    moved = {4: shifted_grid(grid, 0.5, 0.5)}
    ds = read_geotiff(write_geotiff_stack(scene, tmp_path / "shifted", pair_grids=moved))
    # The shifted pair does not cover the first row and column wholly: the common area.
    assert (ds.sizes["y"], ds.sizes["x"]) == (39, 49)
    np.testing.assert_allclose(ds["x"].values, full_stack["x"].values[1:], rtol=0, atol=1e-9)
    others = np.delete(np.arange(ds.sizes["pair"]), 4)
    np.testing.assert_array_equal(
        ds["unw"].values[others], full_stack["unw"].values[others, 1:, 1:]
    )
    diff = ds["unw"].values[4] - full_stack["unw"].values[4, 1:, 1:]
    assert np.isfinite(diff).mean() > 0.9 and 0 < np.nanmedian(np.abs(diff)) < 1.0
    truth = scene.truth.isel(y=slice(1, None), x=slice(1, None))
    aligned = full_stack.isel(y=slice(1, None), x=slice(1, None))
    aligned = aligned.rio.write_transform(ds.rio.transform())
    rmse, rmse0 = (
        score_result(run_sbas(s, RunConfig()).result, truth)["velocity_rmse_demeaned"]
        for s in (ds, aligned)
    )
    assert abs(rmse - rmse0) <= 0.02 * rmse0, (rmse, rmse0)


def test_grids_that_cannot_be_placed(written, tmp_path):
    folder = copy_of(written[1], tmp_path)
    odd = sorted(folder.glob("*_coh.tif"))[2]
    with rasterio.open(odd) as src:
        t, data = src.transform, src.read(1)
    far = Affine(t.a, 0, t.c + 200 * t.a, 0, t.e, t.f)  # 0.2 deg east: no overlap
    rewrite(odd, transform=far)
    with pytest.raises(
        InputError, match=f"grids cannot be aligned: .*{odd.name}.*does not overlap"
    ):
        read_geotiff(folder)
    odd.unlink()  # off the lattice and without CRS: it cannot be placed on the others
    write_tif(odd, data, None, Affine(t.a, 0, t.c + t.a / 2, 0, t.e, t.f))
    with pytest.raises(InputError, match=f"{odd.name}: grid .* has no CRS.*gdalwarp -tap"):
        read_geotiff(folder)


def test_no_matching_files(written, tmp_path):
    with pytest.raises(InputError, match="no unwrapped-phase GeoTIFF found"):
        read_geotiff(tmp_path)
    with pytest.raises(InputError, match="no such folder"):
        read_geotiff(tmp_path / "missing")
    folder = copy_of(written[1], tmp_path)
    with pytest.raises(InputError, match=r"no unwrapped-phase GeoTIFF.*geotiff_unw_patterns"):
        read_geotiff(folder, IngestConfig(geotiff_unw_patterns=["*phase*"]))
    lonely = sorted(folder.glob("*_coh.tif"))[1]
    label = lonely.name[4:21].replace("-", "_")
    lonely.unlink()
    with pytest.raises(InputError, match=f"no coherence file for pair {label}.*exclude_pairs"):
        read_geotiff(folder)
    assert read_geotiff(folder, IngestConfig(exclude_pairs=[label])).sizes["pair"] > 0


def test_name_and_metadata_disagree_or_repeat(written, tmp_path):
    folder = copy_of(written[1], tmp_path)
    file = sorted(folder.glob("*_unw.tif"))[0]
    rewrite(file, tags={"SECOND_DATE": "2030-01-01"})
    with pytest.raises(InputError, match=f"{file.name}: the name says pair .* metadata says"):
        read_geotiff(folder)
    folder2 = copy_of(written[1], tmp_path / "two")
    file = sorted(folder2.glob("*_unw.tif"))[0]
    (folder2 / "backup").mkdir()
    shutil.copy(file, folder2 / "backup" / file.name)
    with pytest.raises(InputError, match="two phase files"):
        read_geotiff(folder2)
