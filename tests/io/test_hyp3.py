"""ASF HyP3 InSAR (GAMMA) products: simulated scenes written by `write_hyp3`, read back."""

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from mtinsar import grid as gridlib
from mtinsar.config import IngestConfig, RunConfig
from mtinsar.conventions import SENTINEL1_WAVELENGTH
from mtinsar.errors import InputError
from mtinsar.io.hyp3 import is_hyp3, parse_metadata, read_hyp3, relative_orbit
from mtinsar.io.licsar import read_licsar
from mtinsar.pipeline import run_sbas
from mtinsar.simulate import SceneConfig, simulate_scene, write_licsar
from mtinsar.simulate.geotiff import write_tif
from mtinsar.simulate.hyp3 import product_name, utm_grid, write_hyp3
from mtinsar.simulate.score import referenced_truth, score_result


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


def test_pair_whose_grid_differs(written, tmp_path):
    folder = copy_of(written["folders"], tmp_path)
    product = product_dirs(folder)[5]
    corr = product / f"{product.name}_corr.tif"
    with rasterio.open(corr) as src:
        t = src.transform
    rewrite(corr, transform=Affine(40.0, 0, t.c, 0, -40.0, t.f))
    with pytest.raises(InputError, match=f"{corr.name}: grid .* different pixel size"):
        read_hyp3(folder)
    for file in product.glob("*.tif"):  # the whole product half a pixel off the lattice
        rewrite(file, transform=Affine(80.0, 0, t.c + 40.0, 0, -80.0, t.f))
    with pytest.raises(InputError, match=f"{product.name}_unw_phase.tif: grid .* origin shifted"):
        read_hyp3(folder)


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
