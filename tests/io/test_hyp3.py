"""ASF HyP3 InSAR (GAMMA) products: simulated scenes written by `write_hyp3`, read back."""

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine

from mtinsar.config import IngestConfig, RunConfig
from mtinsar.conventions import SENTINEL1_WAVELENGTH
from mtinsar.errors import InputError
from mtinsar.io.core import grid as gridlib
from mtinsar.io.hyp3 import is_hyp3, parse_metadata, read_hyp3, relative_orbit
from mtinsar.io.licsar import read_licsar
from mtinsar.simulate import SceneConfig, simulate_scene, write_licsar
from mtinsar.simulate.geotiff import shifted_grid, write_tif
from mtinsar.simulate.hyp3 import (
    POSTING_M,
    neighbour_zone_grid,
    product_name,
    scene_grid,
    utm_grid,
    write_hyp3,
)
from mtinsar.simulate.score import referenced_truth, score_result
from mtinsar.workflows.pipeline import run_sbas


@pytest.fixture(scope="module")
def scene():
    return simulate_scene(SceneConfig(ny=40, nx=50, n_dates=12, seed=7))


@pytest.fixture(scope="module")
def written(scene, tmp_path_factory):
    base = tmp_path_factory.mktemp("hyp3")
    return {
        "licsar": write_licsar(scene, base / "licsar"),
        "folders": write_hyp3(scene, base / "folders"),
        "zips": write_hyp3(scene, base / "zips", as_zip=True, conncomp=True),
    }


@pytest.fixture(scope="module")
def full_stack(written):
    return read_hyp3(written["folders"])


def copy_of(src: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(src, tmp_path / "products"))


def product_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir())


def rewrite(path: Path, transform=None, crop=None) -> None:
    with rasterio.open(path) as src:
        data, profile = src.read(1), src.profile
    t = transform or profile["transform"]
    if crop is not None:
        data = data[crop]
        t = gridlib.window_transform(t, crop[0].start or 0, crop[1].start or 0)
    path.unlink()
    write_tif(path, data, profile["crs"], t, nodata=profile["nodata"])


def edit_txt(product: Path, **changes) -> None:
    txt = product / f"{product.name}.txt"
    lines = []
    for line in txt.read_text().splitlines():
        key = line.partition(":")[0]
        if key in changes:
            if changes[key] is None:
                continue
            line = f"{key}: {changes[key]}"
        lines.append(line)
    txt.write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------ acceptance


@pytest.mark.parametrize("layout", ["folders", "zips"])
def test_same_velocity_as_the_licsar_layout(scene, written, layout):
    cfg = RunConfig()
    ours = run_sbas(read_hyp3(written[layout]), cfg).result
    theirs = run_sbas(read_licsar(written["licsar"]), cfg).result
    v, v0 = ours["velocity"].values, theirs["velocity"].values
    np.testing.assert_array_equal(np.isnan(v), np.isnan(v0))
    assert np.isfinite(v).sum() > 1500
    assert np.nanmax(np.abs(v - v0)) <= 1e-6
    rmse, rmse0 = (score_result(r, scene.truth)["velocity_rmse"] for r in (ours, theirs))
    assert abs(rmse - rmse0) <= 1e-6 and rmse < 0.05


def test_uplift_is_positive(tmp_path):
    """HyP3 phase is + away from the sensor: read with factor +1, uplift comes out > 0."""
    scene = simulate_scene(SceneConfig.noise_free(ny=40, nx=50, n_dates=10, seed=2))
    res = run_sbas(read_hyp3(write_hyp3(scene, tmp_path / "p")), RunConfig()).result
    vel, disp = referenced_truth(scene.truth, res.attrs["reference_y"], res.attrs["reference_x"])
    up = vel > 0.005
    assert up.sum() > 20
    assert (res["velocity"].values[up] > 0).all()
    np.testing.assert_allclose(res["velocity"].values, vel, atol=1e-4)
    np.testing.assert_allclose(res["displacement"].values, disp, atol=1e-4)


def test_geometry_metadata_and_grid(scene, written, full_stack):
    ds, truth = full_stack, scene.truth
    crs, transform = utm_grid(scene.config)
    assert ds.rio.crs == crs and crs.to_epsg() == 32614
    np.testing.assert_allclose(ds["x"].values[:2], transform.c + np.array([40.0, 120.0]))
    np.testing.assert_allclose(ds["y"].values[0], transform.f - 40.0)
    for name in ("los_e", "los_n", "los_u"):
        np.testing.assert_allclose(ds[name].values, truth[name].values, atol=1e-6)
    np.testing.assert_allclose(ds["incidence"].values, truth["incidence"].values, atol=1e-4)
    np.testing.assert_array_equal(ds["height"].values, truth["height"].values)
    np.testing.assert_array_equal(ds["water"].values, truth["water"].values)
    np.testing.assert_allclose(ds["bperp"].values, scene.pair_bperp(), rtol=1e-6)
    assert ds.attrs["wavelength"] == SENTINEL1_WAVELENGTH
    assert (ds.attrs["orbit_direction"], ds.attrs["track"]) == ("ascending", 5)
    assert ds.attrs["heading"] == truth.attrs["heading"]
    # Both layouts, and the conncomp written into the zips: 1 where the phase is valid.
    zipped = read_hyp3(written["zips"], IngestConfig(chunk_size=32))  # 2 x 2 lazy blocks
    assert zipped["unw"].chunks[1:] == ((32, 8), (32, 18))
    np.testing.assert_array_equal(zipped["unw"].values, ds["unw"].values)
    np.testing.assert_array_equal(zipped["conncomp"].values, np.isfinite(ds["unw"].values))
    assert "conncomp" not in ds
    # Multilooked labels: a 2 x 2 block keeps its label only where its 4 pixels share it.
    looked = read_hyp3(written["zips"], IngestConfig(multilook=2, chunk_size=16))
    labels = zipped["conncomp"].values[:, :40, :50].reshape(-1, 20, 2, 25, 2)
    same = labels.min(axis=(2, 4)) == labels.max(axis=(2, 4))
    np.testing.assert_array_equal(
        looked["conncomp"].values, np.where(same, labels[:, :, 0, :, 0], 0)
    )
    assert looked["conncomp"].chunks[1:] == ((16, 4), (16, 9))


def test_metadata_parsing_and_relative_orbit(scene, written):
    folder = product_dirs(written["folders"])[0]
    items = parse_metadata((folder / f"{folder.name}.txt").read_text())
    assert items["Reference Pass Direction"] == "ASCENDING"
    assert float(items["Baseline"]) == pytest.approx(scene.pair_bperp()[0])
    # 175 orbits per 12-day cycle: one cycle later is the same track, one orbit later the next.
    orbit = int(items["Reference Orbit Number"])
    assert relative_orbit("S1A", orbit) == 5 == relative_orbit("S1A", orbit + 175 * 9)
    assert relative_orbit("S1A", orbit + 1) == 6 and relative_orbit("S1A", orbit - 5) == 175
    assert relative_orbit("S1A", 73) == 1 and relative_orbit("S1B", 27) == 1
    assert relative_orbit("ALOS", 100) == 0  # unknown unit: no track check
    assert folder.name == product_name(scene, 0)


def test_bbox_in_lonlat_and_multilook(written, full_stack, scene):
    # The window's bounds in lon/lat: reading them again gives (at least) the same pixels.
    from pyproj import Transformer

    x, y = full_stack["x"].values, full_stack["y"].values
    to_lonlat = Transformer.from_crs(full_stack.rio.crs, "EPSG:4326", always_xy=True)
    lon0, lat0 = to_lonlat.transform(x[12], y[25])
    lon1, lat1 = to_lonlat.transform(x[30], y[8])
    crop = read_hyp3(written["zips"], IngestConfig(bbox=(lon0, lat0, lon1, lat1)))
    i0 = int(np.flatnonzero(x == crop["x"].values[0])[0])
    j0 = int(np.flatnonzero(y == crop["y"].values[0])[0])
    ny, nx = crop.sizes["y"], crop.sizes["x"]
    assert i0 <= 12 and i0 + nx > 30 and j0 <= 8 and j0 + ny > 25 and nx < 24 and ny < 22
    np.testing.assert_array_equal(
        crop["unw"].values, full_stack["unw"].values[:, j0 : j0 + ny, i0 : i0 + nx]
    )
    looked = read_hyp3(written["folders"], IngestConfig(multilook=5))
    np.testing.assert_allclose(
        looked["unw"].values, gridlib.multilook(full_stack["unw"].values, 5), atol=1e-5
    )
    water = gridlib.multilook(scene.truth["water"].values.astype(float), 5) > 0.5
    np.testing.assert_array_equal(looked["water"].values, water)
    los = np.stack([looked[v].values for v in ("los_e", "los_n", "los_u")])
    np.testing.assert_allclose((los**2).sum(0), 1.0, atol=1e-6)


def test_polygon_masks_pixels_by_centre_also_on_resampled_products(scene, full_stack, tmp_path):
    """A UTM GeoJSON triangle: the read is cropped to its bounds, pixels whose centre is
    outside are no data, inside ones equal the whole read (products on the lattice), also
    for a product resampled from the next UTM zone (to GDAL's transform approximation)."""
    x, y = full_stack["x"].values, full_stack["y"].values
    ring = [[x[5] + 20.0, y[3]], [x[44], y[10] - 20.0], [x[20] - 20.0, y[36]]]
    doc = {
        "type": "Polygon",
        "coordinates": [[*ring, ring[0]]],
        "crs": {"type": "name", "properties": {"name": "EPSG:32614"}},
    }
    inside = shapely.intersects_xy(shapely.Polygon(ring), *np.meshgrid(x, y))
    moved = {3: neighbour_zone_grid(scene_grid(scene.config))}
    folder = write_hyp3(scene, tmp_path / "zone", pair_grids=moved)
    whole = read_hyp3(folder)
    got = read_hyp3(folder, IngestConfig(polygon=json.dumps(doc), chunk_size=16))
    r0 = int(np.flatnonzero(y == got["y"].values[0])[0])
    c0 = int(np.flatnonzero(x == got["x"].values[0])[0])
    window = (slice(r0, r0 + got.sizes["y"]), slice(c0, c0 + got.sizes["x"]))
    rows, cols = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
    assert rows[0] - 1 <= r0 <= rows[0] and rows[-1] < window[0].stop <= rows[-1] + 2
    assert cols[0] - 1 <= c0 <= cols[0] and cols[-1] < window[1].stop <= cols[-1] + 2
    mask = inside[window]
    others = [k for k in range(len(scene.pairs)) if k not in moved]
    for name in ("unw", "coh"):
        expected = np.where(mask, full_stack[name].values[others][:, *window], np.nan)
        np.testing.assert_array_equal(got[name].values[others], expected, err_msg=name)
    # The zone-15 product: no data outside the polygon; inside, the whole read's values to
    # within GDAL's approximate CRS transform (<= 0.125 px, gdalwarp's default error), which
    # depends on the area warped (here the selection's 16 px blocks vs the whole grid).
    resampled, reference = got["unw"].values[3], whole["unw"].values[3][window]
    assert np.isnan(resampled[~mask]).all()
    both = mask & np.isfinite(resampled) & np.isfinite(reference)
    assert both.sum() > 0.9 * mask.sum()
    # Measured: max 0.079 rad, median 2e-4 rad; neighbouring pixels differ by ~1 rad (std),
    # so 0.125 px of position error allows ~0.15 rad.
    assert np.abs(resampled - reference)[both].max() < 0.15
    assert np.median(np.abs(resampled - reference)[both]) < 0.005


def test_pair_selection_before_reading(written, full_stack):
    labels = list(full_stack["pair"].values)
    cfg = IngestConfig(max_temporal_baseline_days=24, exclude_pairs=[labels[0]])
    ds = read_hyp3(written["folders"], cfg)
    spans = (full_stack["sec_date"] - full_stack["ref_date"]).values / np.timedelta64(1, "D")
    expected = [lab for lab, s in zip(labels, spans, strict=True) if s <= 24 and lab != labels[0]]
    assert list(ds["pair"].values) == expected


def test_products_with_differing_extents_share_their_overlap(written, full_stack, tmp_path):
    folder = copy_of(written["folders"], tmp_path)
    product = product_dirs(folder)[2]
    for file in product.glob("*.tif"):
        rewrite(file, crop=(slice(0, 36), slice(4, None)))
    ds = read_hyp3(folder)
    np.testing.assert_array_equal(ds["unw"].values, full_stack["unw"].values[:, :36, 4:])
    np.testing.assert_allclose(ds["x"].values, full_stack["x"].values[4:], rtol=0, atol=1e-6)


def test_zip_next_to_its_extracted_folder_is_read_once(written, full_stack, tmp_path):
    folder = copy_of(written["folders"], tmp_path)
    first = product_dirs(folder)[0]
    shutil.make_archive(str(first), "zip", root_dir=folder, base_dir=first.name)
    assert is_hyp3(folder) and not is_hyp3(written["licsar"])
    np.testing.assert_array_equal(read_hyp3(folder)["unw"].values, full_stack["unw"].values)


# ------------------------------------------------------------------ bad input


def test_truncated_zip(written, full_stack, tmp_path):
    folder = copy_of(written["zips"], tmp_path)
    victim = sorted(folder.glob("*.zip"))[3]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=f"{victim.name}: truncated or corrupt .zip.*again"):
        read_hyp3(folder)
    # The fix offered: leave that pair out (its zip is then never opened).
    label = str(full_stack["pair"].values[3])
    ds = read_hyp3(folder, IngestConfig(exclude_pairs=[label]))
    assert label not in ds["pair"].values and ds.sizes["pair"] == full_stack.sizes["pair"] - 1


def test_incomplete_product(written, tmp_path):
    folder = copy_of(written["zips"], tmp_path)
    victim = sorted(folder.glob("*.zip"))[0]
    with zipfile.ZipFile(victim, "w") as zf:
        zf.writestr("README.txt", "nothing here")
    with pytest.raises(InputError, match=f"{victim.name}: no .*_unw_phase.tif inside"):
        read_hyp3(folder)
    folder = copy_of(written["folders"], tmp_path / "dirs")
    product = product_dirs(folder)[2]
    (product / f"{product.name}_corr.tif").unlink()
    with pytest.raises(InputError, match=f"coherence file {product.name}_corr.tif missing"):
        read_hyp3(folder)


def test_missing_metadata_key(written, tmp_path):
    folder = copy_of(written["folders"], tmp_path)
    product = product_dirs(folder)[1]
    edit_txt(product, Baseline=None)
    with pytest.raises(InputError, match=f"{product.name}.txt: metadata key.*'Baseline' missing"):
        read_hyp3(folder)
    edit_txt(product, Heading="north-ish")
    (product / f"{product.name}.txt").write_text(
        (product / f"{product.name}.txt").read_text() + "Baseline: 12.5\n"
    )
    with pytest.raises(InputError, match=r"metadata Heading='north-ish' is not a number"):
        read_hyp3(folder)
    (product / f"{product.name}.txt").unlink()
    with pytest.raises(InputError, match=f"metadata file {product.name}.txt missing"):
        read_hyp3(folder)


def test_mixed_tracks(written, tmp_path):
    folder = copy_of(written["folders"], tmp_path)
    product = product_dirs(folder)[4]
    edit_txt(product, **{"Reference Orbit Number": "26000"})
    with pytest.raises(InputError, match=f"mixed relative orbit .*{product.name}"):
        read_hyp3(folder)


def test_pair_whose_grid_differs_is_resampled(written, full_stack, tmp_path):
    folder = copy_of(written["folders"], tmp_path)
    product = product_dirs(folder)[5]
    corr = product / f"{product.name}_corr.tif"
    with rasterio.open(corr) as src:
        t, (ny, nx) = src.transform, src.shape

    # Coherence at half the posting (40 m), a plane in x and y: resampling reproduces a plane,
    # so on the 80 m grid it must read as the plane at the 80 m pixel centres (no offset).
    def plane(x, y):
        return 0.2 + 0.5 * (x - t.c) / (nx * 80.0) + 0.2 * (t.f - y) / (ny * 80.0)

    rows, cols = np.arange(2 * ny) + 0.5, np.arange(2 * nx) + 0.5
    yy, xx = np.meshgrid(t.f - 40.0 * rows, t.c + 40.0 * cols, indexing="ij")
    corr.unlink()
    write_tif(corr, plane(xx, yy).astype(np.float32), full_stack.rio.crs,
              Affine(40.0, 0, t.c, 0, -40.0, t.f))  # fmt: skip
    ds = read_hyp3(folder)
    np.testing.assert_array_equal(ds["unw"].values, full_stack["unw"].values)
    k = list(ds["pair"].values).index(full_stack["pair"].values[5])
    expected = plane(*np.meshgrid(ds["x"].values, ds["y"].values))
    got = ds["coh"].values[k]
    np.testing.assert_allclose(got[2:-2, 2:-2], expected[2:-2, 2:-2], rtol=0, atol=1e-5)
    others = np.delete(np.arange(ds.sizes["pair"]), k)
    np.testing.assert_array_equal(ds["coh"].values[others], full_stack["coh"].values[others])


def test_no_overlap_is_an_error_naming_the_product(scene, tmp_path):
    base = scene_grid(scene.config)
    far = {3: shifted_grid(base, 0.0, 100.0)}  # 8 km south of the others
    folder = write_hyp3(scene, tmp_path / "far", pair_grids=far)
    name = product_name(scene, 3)
    with pytest.raises(InputError, match=f"grids cannot be aligned: .*{name}_unw_phase.tif"):
        read_hyp3(folder)
    # Inside a selection that the far product does not reach (the union of footprints).
    lon, lat = scene.config.lon0 + 0.01, scene.config.lat0 - 0.01
    with pytest.raises(InputError, match=f"{name}_unw_phase.tif: does not cover any of"):
        read_hyp3(folder, IngestConfig(bbox=(lon, lat - 0.01, lon + 0.01, lat)))


def _crop_to(ds, full):
    """(row, col) slices of `full` (on the same lattice) covering `ds`'s pixels."""
    col = round((ds["x"].values[0] - full["x"].values[0]) / POSTING_M)
    row = round((full["y"].values[0] - ds["y"].values[0]) / POSTING_M)
    return {"y": slice(row, row + ds.sizes["y"]), "x": slice(col, col + ds.sizes["x"])}


@pytest.mark.parametrize("case", ["subpixel_shift", "neighbour_utm_zone"])
def test_products_on_other_grids_are_resampled(scene, full_stack, tmp_path, case):
    """Products off the first one's lattice, or in the next UTM zone (15 instead of 14), are
    resampled onto the common grid; those on it stay exact copies.

    Velocity error vs truth, scored on the same pixels after removing its mean (the
    resampled coherence can move the reference pixel, whose own error offsets every
    velocity). Measured (seed 7, 40 x 50 px, 33 pairs): every third product shifted by
    (0.3, 0.45) px: 0.023126 vs 0.023499 m/yr aligned (-1.6 %); two products in zone 15: 0.023711 vs
    0.023722 (-0.05 %). Bilinear resampling (in the
    simulator, then the reader) averages neighbouring pixels of the moved products, which
    changes their noise, not the deformation; tolerance 3 %.
    """
    base = scene_grid(scene.config)
    n = len(scene.pairs)
    if case == "subpixel_shift":
        moved = {k: shifted_grid(base, 0.3, 0.45) for k in range(1, n, 3)}
    else:
        moved = {k: neighbour_zone_grid(base) for k in (2, 7)}
        assert moved[2].crs.to_epsg() == base.crs.to_epsg() + 1
    folder = write_hyp3(scene, tmp_path / case, pair_grids=moved)
    ds = read_hyp3(folder)
    assert ds.rio.crs == base.crs and ds.sizes["pair"] == n
    # Resampled block by block (16 x 16 px tasks) and multilooked: the same as multilooking
    # the whole resampled grid (to 1e-3 rad: across UTM zones GDAL's warper approximates the
    # coordinate transform piecewise linearly, differently per block, ~1e-4 rad here).
    looked = read_hyp3(folder, IngestConfig(multilook=3, chunk_size=16))
    np.testing.assert_allclose(
        looked["unw"].values, gridlib.multilook(ds["unw"].values, 3), rtol=0, atol=1e-3
    )
    # Products shifted by (0.3, 0.45) px do not wholly cover the first row and column: the
    # common area loses them; a zone-15 product covers all of the scene.
    expected = (39, 49) if case == "subpixel_shift" else (40, 50)
    assert (ds.sizes["y"], ds.sizes["x"]) == expected
    crop = _crop_to(ds, full_stack)
    aligned = full_stack.isel(crop).rio.write_transform(ds.rio.transform())
    # Products on the stack's lattice (the first product's) are copied pixel for pixel.
    exact = sorted(set(range(n)) - set(moved))
    unw, unw0 = ds["unw"].values, aligned["unw"].values
    np.testing.assert_array_equal(unw[exact], unw0[exact])
    diff = unw[sorted(moved)] - unw0[sorted(moved)]
    assert np.isfinite(diff).mean() > 0.8 and 0 < np.nanmedian(np.abs(diff)) < 1.0
    truth = scene.truth.isel(crop)
    rmse, rmse0 = (
        score_result(run_sbas(s, RunConfig()).result, truth)["velocity_rmse_demeaned"]
        for s in (ds, aligned)
    )
    assert abs(rmse - rmse0) <= 0.03 * rmse0, (rmse, rmse0)


def test_no_products_or_duplicates(written, tmp_path):
    with pytest.raises(InputError, match="no HyP3 InSAR product found"):
        read_hyp3(tmp_path)
    with pytest.raises(InputError, match="no such folder"):
        read_hyp3(tmp_path / "none")
    folder = copy_of(written["folders"], tmp_path)
    first = product_dirs(folder)[0]
    twin = first.with_name(first.name[:-4] + "FFFF")
    twin.mkdir()
    for file in first.iterdir():  # the same pair processed again: another product id
        shutil.copy(file, twin / file.name.replace(first.name, twin.name))
    with pytest.raises(InputError, match=f"two products, .*{first.name} and .*{twin.name}"):
        read_hyp3(folder)
