"""Products read in place from object storage (`mtinsar.sources.remote`).

A simulated LiCSAR frame is uploaded to a real S3-compatible server (moto's server mode) on
loopback and read through the public reader with an `s3://` URL. The reference is the same
folder read from local disk (itself tested against the simulator's truth in
tests/io/test_licsar.py), so every pixel must agree; the server counts the bytes it sends.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import rasterio
import rasterio.shutil
import xarray as xr
from s3_server import closed_port, make_bucket, moto_s3

from mtinsar.config import IngestConfig, StorageConfig
from mtinsar.errors import InputError
from mtinsar.io.aria import read_aria
from mtinsar.io.isce import read_isce
from mtinsar.io.licsar import read_licsar
from mtinsar.io.mintpy import GEOMETRY_FILE, STACK_FILE, read_mintpy, write_mintpy
from mtinsar.io.products import detect_format, read_products
from mtinsar.simulate import SceneConfig, simulate_scene, write_licsar
from mtinsar.simulate.aria import DEM_FILE, write_aria
from mtinsar.simulate.geotiff import write_geotiff_stack
from mtinsar.simulate.hyp3 import write_hyp3
from mtinsar.simulate.isce import write_isce
from mtinsar.sources import remote

BUCKET = "products"
FRAME_KEY = "frames/005A_01234_131313"
#: A second copy read only by the acceptance test: GDAL keeps the byte ranges it downloaded
#: per path for the life of the process, so a path no other test reads keeps the count cold.
ACCEPTANCE_KEY = "acceptance/005A_01234_131313"
#: COG tile side [px]: the unit of a windowed remote read.
TILE = 32


def _to_cog(folder: Path) -> None:
    """Rewrite every GeoTIFF under `folder` as a tiled GeoTIFF, header first (COG-like).

    The simulator writes striped GeoTIFFs as LiCSAR publishes them (licsar_proc's
    create_geoctiffs_to_pub.sh: gdal_translate -co COMPRESS=DEFLATE -co PREDICTOR=3, no
    TILED=YES), and a window of a striped file spans whole rows: a 5 % bbox (22 % of the
    rows) cannot cost less than ~22 % of the bytes. The acceptance figure is therefore
    measured on COG copies, which is what a user hosting LiCSAR frames for cloud reads
    (or any COG product: HyP3, generic GeoTIFF) provides.
    """
    for tif in sorted(folder.rglob("*.tif")):
        cog = tif.with_suffix(".cog")
        with rasterio.open(tif) as src:
            predictor = 3 if src.dtypes[0] == "float32" else 2
        rasterio.shutil.copy(
            tif,
            cog,
            driver="GTiff",
            tiled=True,
            blockxsize=TILE,
            blockysize=TILE,
            compress="DEFLATE",
            predictor=predictor,
        )
        cog.replace(tif)


@pytest.fixture(scope="module")
def frame(tmp_path_factory) -> Path:
    cfg = SceneConfig(ny=640, nx=640, n_dates=5, seed=5)
    folder = write_licsar(simulate_scene(cfg), tmp_path_factory.mktemp("remote") / "frame")
    _to_cog(folder)
    return folder


@pytest.fixture(scope="module")
def s3(frame):
    """The server, with the frame's products (not the simulator's truth) uploaded."""
    with pytest.MonkeyPatch.context() as mp, moto_s3(mp) as server:
        make_bucket(server, BUCKET)
        fs = remote.filesystem(f"s3://{BUCKET}")
        for key in (FRAME_KEY, ACCEPTANCE_KEY):
            for sub in ("interferograms", "metadata"):
                fs.put(str(frame / sub), f"{BUCKET}/{key}/{sub}", recursive=True)
        yield server


def _product_bytes(frame: Path) -> int:
    return sum(
        f.stat().st_size
        for sub in ("interferograms", "metadata")
        for f in (frame / sub).rglob("*")
        if f.is_file()
    )


def _bbox_fraction(frame: Path, fraction: float, offset: float = 0.37) -> tuple[float, ...]:
    """A lon/lat square covering `fraction` of the frame's area, off the tile lattice."""
    tif = next((frame / "interferograms").rglob("*.geo.unw.tif"))
    with rasterio.open(tif) as src:
        left, bottom, right, top = src.bounds
    side = math.sqrt(fraction)
    w, h = (right - left) * side, (top - bottom) * side
    x0, y0 = left + (right - left) * offset, bottom + (top - bottom) * offset
    return (x0, y0, x0 + w, y0 + h)


def _same_stack(remote_ds: xr.Dataset, local_ds: xr.Dataset) -> None:
    assert remote_ds.attrs.pop("source").startswith("s3://")
    local_ds.attrs.pop("source")
    xr.testing.assert_identical(remote_ds, local_ds)


def test_licsar_bbox_read_in_place_moves_few_bytes(s3, frame):
    """Acceptance (issue #3): a 5 % bbox transfers <= 15 % of the product bytes."""
    url = f"s3://{BUCKET}/{ACCEPTANCE_KEY}"
    config = IngestConfig(bbox=_bbox_fraction(frame, 0.05))
    s3.counter.reset()
    remote_ds = read_products(url, config).load()
    sent = s3.counter.sent
    total = _product_bytes(frame)
    fraction = sent / total
    print(f"\nbytes from the object store: {sent} of {total} product bytes ({fraction:.1%})")
    assert remote_ds.sizes["pair"] > 0 and 0.04 < remote_ds["unw"][0].size / 640**2 < 0.06
    _same_stack(remote_ds, read_products(frame, config).load())
    assert fraction <= 0.15
    # Every pixel file was read through ranged requests, none downloaded whole.
    sizes = {str(f.relative_to(frame)): f.stat().st_size for f in frame.rglob("*.tif")}
    per_path = s3.counter.by_path()
    for rel, size in sizes.items():
        assert per_path.get(f"/{BUCKET}/{ACCEPTANCE_KEY}/{rel}", 0) < size / 2, rel


def test_whole_frame_read_in_place_equals_local(s3, frame):
    url = f"s3://{BUCKET}/{FRAME_KEY}"
    config = IngestConfig(multilook=4, chunk_size=80)
    assert detect_format(url) == "licsar"
    _same_stack(read_products(url, config).load(), read_products(frame, config).load())


def test_missing_frame_names_url(s3):
    url = f"s3://{BUCKET}/frames/nothing_here"
    with pytest.raises(InputError, match=r"s3://products/frames/nothing_here: no such folder"):
        read_licsar(url)


def test_unreachable_endpoint_retries_with_backoff(monkeypatch):
    endpoint = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setattr(
        remote, "_active", StorageConfig(endpoint_url=endpoint, retries=3, backoff_s=0.2)
    )
    url = f"s3://{BUCKET}/{FRAME_KEY}"
    start = time.monotonic()
    with pytest.raises(InputError) as info:
        read_licsar(url)
    elapsed = time.monotonic() - start
    assert str(info.value).startswith(f"{url}: unreachable at endpoint {endpoint} after 3 attempts")
    assert elapsed >= 0.2 + 0.4


# --------------------------------------------------------------------------- helpers


def test_gdal_paths_and_options_for_a_loopback_endpoint():
    cfg = StorageConfig(endpoint_url="http://127.0.0.1:9000", anonymous=True)
    assert remote.gdal_path("s3://b/k/x.tif") == "/vsis3/b/k/x.tif"
    assert remote.gdal_path("https://h/x.tif") == "/vsicurl/https://h/x.tif"
    assert remote.gdal_path("/data/x.tif") == "/data/x.tif"
    options = remote.gdal_options("s3://b/k/x.tif", cfg)
    assert options["AWS_S3_ENDPOINT"] == "127.0.0.1:9000"
    assert options["AWS_HTTPS"] == "NO"
    assert options["AWS_VIRTUAL_HOSTING"] == "FALSE"
    assert options["AWS_NO_SIGN_REQUEST"] == "YES"
    assert remote.gdal_options("/data/x.tif", cfg) == {}
    assert "AWS_S3_ENDPOINT" not in remote.gdal_options("https://h/x.tif", cfg)


def test_storage_config_falls_back_to_environment(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1234")
    monkeypatch.setenv("AWS_NO_SIGN_REQUEST", "YES")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    resolved = StorageConfig().resolved()
    assert resolved.endpoint_url == "http://127.0.0.1:1234"
    assert resolved.anonymous is True
    explicit = StorageConfig(endpoint_url="http://10.0.0.1:9000", anonymous=False)
    assert explicit.resolved().endpoint_url == "http://10.0.0.1:9000"
    assert explicit.resolved().anonymous is False


def test_remote_path_listing(s3, frame):
    root = remote.as_path(f"s3://{BUCKET}/{FRAME_KEY}")
    assert isinstance(root, remote.RemotePath)
    assert root.is_dir() and (root / "metadata").is_dir()
    local = sorted(p.name for p in (frame / "interferograms").iterdir())
    assert [p.name for p in (root / "interferograms").iterdir()] == local
    unw = sorted(root.rglob("*.geo.unw.tif"))
    assert [p.name for p in unw] == sorted(p.name for p in frame.rglob("*.geo.unw.tif"))
    assert unw[0].with_name("x.tif").parent == unw[0].parent
    local_unw = frame / unw[0].parts[-3] / unw[0].parts[-2] / unw[0].name
    assert unw[0].stat().st_size == local_unw.stat().st_size
    baselines = (root / "metadata" / "baselines").read_text()
    assert baselines == (frame / "metadata" / "baselines").read_text()
    assert remote.as_path(frame) == frame


# --------------------------------------------------------------------------- other formats


def _upload(folder: Path, key: str) -> str:
    """Upload the product files under `folder` (not the simulator's scene.json) to `key`."""
    fs = remote.filesystem(f"s3://{BUCKET}")
    for file in sorted(folder.rglob("*")):
        if file.is_file() and file.name != "scene.json":
            fs.put_file(str(file), f"{BUCKET}/{key}/{file.relative_to(folder).as_posix()}")
    return f"s3://{BUCKET}/{key}"


@pytest.fixture(scope="module")
def small_scene():
    return simulate_scene(SceneConfig(ny=24, nx=20, n_dates=5, seed=8))


def test_hyp3_folders_read_in_place_equal_local(s3, small_scene, tmp_path):
    folder = write_hyp3(small_scene, tmp_path / "hyp3")
    url = _upload(folder, "hyp3")
    assert detect_format(url) == "hyp3"
    config = IngestConfig(chunk_size=16)
    _same_stack(read_products(url, config).load(), read_products(folder, config).load())


def test_hyp3_zips_in_a_bucket_read_in_place_equal_local(s3, small_scene, tmp_path):
    """Zipped products are read through /vsizip//vsis3/ without downloading the archives;
    a truncated archive is named by its URL."""
    folder = write_hyp3(small_scene, tmp_path / "hyp3zip", as_zip=True)
    url = _upload(folder, "hyp3zip")
    config = IngestConfig(format="hyp3", chunk_size=16)
    _same_stack(read_products(url, config).load(), read_products(folder, config).load())
    broken = sorted(folder.glob("*.zip"))[0]
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
    url = _upload(folder, "hyp3zip-truncated")
    with pytest.raises(InputError, match=rf"s3://products/hyp3zip-truncated/{broken.name}: trunc"):
        read_products(url, config)


def test_generic_geotiff_stack_read_in_place_equals_local(s3, small_scene, tmp_path):
    folder = write_geotiff_stack(small_scene, tmp_path / "gtiff")
    url = _upload(folder, "gtiff")
    config = IngestConfig(format="geotiff", multilook=2)
    _same_stack(read_products(url, config).load(), read_products(folder, config).load())


def test_aria_gunw_files_read_in_place_equal_local(s3, small_scene, tmp_path):
    """GUNW netCDF read through HDF5 on an fsspec file: ranged reads, never a download."""
    folder = write_aria(small_scene, tmp_path / "gunw", frames=2, overlap=4)
    url = _upload(folder, "gunw")
    assert detect_format(url) == "aria"
    config = IngestConfig(multilook=2)
    dem = f"{url}/{DEM_FILE}"
    remote_ds = read_aria(url, config, dem=dem)
    local_ds = read_aria(folder, config, dem=folder / DEM_FILE)
    _same_stack(remote_ds, local_ds)
    # Also through the generic entry point (no DEM: geometry at 0 m, height NaN).
    _same_stack(read_products(url, config), read_products(folder, config))


def test_aria_bbox_reads_only_part_of_each_file(s3, tmp_path):
    """A small bbox costs the HDF5 metadata and the chunks it touches, not whole files."""
    scene = simulate_scene(SceneConfig(ny=400, nx=400, n_dates=5, seed=4))
    folder = write_aria(scene, tmp_path / "gunw_big")
    url = _upload(folder, "gunw_big")
    nc = sorted(folder.glob("S1-GUNW-*.nc"))
    total = sum(f.stat().st_size for f in nc)
    tif = _aria_bounds(nc[0])
    config = IngestConfig(bbox=tif)
    s3.counter.reset()
    remote_ds = read_aria(url, config)
    sent = s3.counter.sent
    print(f"\nGUNW bytes from the object store: {sent} of {total} ({sent / total:.1%})")
    _same_stack(remote_ds, read_aria(folder, config))
    assert 0.03 < remote_ds["unw"][0].size / 400**2 < 0.08
    assert sent < 0.5 * total


def _aria_bounds(nc: Path, fraction: float = 0.05) -> tuple[float, float, float, float]:
    """A lon/lat square covering about `fraction` of a GUNW file's grid."""
    with h5py.File(nc, "r") as f:
        lat = f["science/grids/data/latitude"][:]
        lon = f["science/grids/data/longitude"][:]
    side = math.sqrt(fraction)
    x0 = lon.min() + 0.4 * (lon.max() - lon.min())
    y0 = lat.min() + 0.4 * (lat.max() - lat.min())
    return (x0, y0, x0 + side * (lon.max() - lon.min()), y0 + side * (lat.max() - lat.min()))


def test_isce_topsstack_read_in_place_equals_local(s3, small_scene, tmp_path):
    """Raw ISCE images through their .vrt on /vsis3/; XML and baseline text through fsspec."""
    folder = write_isce(small_scene, tmp_path / "tops")
    url = _upload(folder, "tops")
    assert detect_format(url) == "isce"
    config = IngestConfig(multilook=2)
    _same_stack(read_products(url, config), read_products(folder, config))


def test_isce_missing_metadata_on_s3_names_the_url(s3, small_scene, tmp_path):
    folder = write_isce(small_scene, tmp_path / "tops_nometa")
    for xml in (folder / "reference").glob("IW*.xml"):
        xml.unlink()
    url = _upload(folder, "tops_nometa")
    with pytest.raises(InputError, match=r"s3://products/tops_nometa/reference: no IW\*\.xml"):
        read_isce(url)


def test_truncated_gunw_on_s3_names_the_url(s3, small_scene, tmp_path):
    folder = write_aria(small_scene, tmp_path / "gunw_cut")
    nc = sorted(folder.glob("S1-GUNW-*.nc"))[0]
    nc.write_bytes(nc.read_bytes()[: nc.stat().st_size // 3])
    url = _upload(folder, "gunw_cut")
    with pytest.raises(InputError, match=rf"{url}/{nc.name}: .*truncated or corrupt"):
        read_aria(url)


# --------------------------------------------------------------------------- MintPy


def test_mintpy_stack_read_in_place_equals_local(s3, small_scene, tmp_path):
    """ifgramStack.h5 + geometryGeo.h5 through h5py on fsspec files (ranged reads), with the
    shared selection (bbox and polygon) and multilooking."""
    folder = tmp_path / "mintpy"
    write_mintpy(small_scene.to_ifgstack(), folder / "inputs", reference=(3, 4))
    url = _upload(folder, "mintpy")
    assert detect_format(url) == "mintpy"
    _same_stack(read_products(url), read_products(folder))
    stack = read_mintpy(folder)
    x, y = stack["x"].values, stack["y"].values
    polygon = {"type": "Polygon", "coordinates": [[[x[2], y[2]], [x[17], y[5]], [x[9], y[20]],
                                                   [x[2], y[2]]]]}  # fmt: skip
    config = IngestConfig(bbox=(x[1], y[22], x[18], y[1]), polygon=json.dumps(polygon), multilook=2)
    remote_ds = read_mintpy(f"{url}/inputs/{STACK_FILE}", config)
    local_ds = read_mintpy(folder / "inputs", config)
    assert 0 < np.isnan(local_ds["unw"].values).mean() < 1  # the polygon masked some cells
    _same_stack(remote_ds, local_ds)


def test_mintpy_bbox_reads_only_part_of_the_files(s3, tmp_path):
    """A 5 % bbox inside one 128 x 128 HDF5 chunk: each file moves well under half its bytes
    (measured: ifgramStack.h5 1.85 of 4.74 MB, 39 %, one chunk of four per pair plus HDF5
    metadata in 32 KiB blocks; geometryGeo.h5, contiguous rows, 0.46 of 1.12 MB, 41 %)."""
    scene = simulate_scene(SceneConfig(ny=256, nx=256, n_dates=5, seed=9))
    folder = tmp_path / "mintpy_big"
    files = write_mintpy(scene.to_ifgstack(), folder / "inputs")
    url = _upload(folder, "mintpy_big")
    x, y = scene.truth["x"].values, scene.truth["y"].values
    bbox = (x[140], y[200], x[196], y[144])  # 57 x 57 px: 5 % of the frame
    s3.counter.reset()
    remote_ds = read_mintpy(url, IngestConfig(bbox=bbox))
    per_path = s3.counter.by_path()
    for file in (files.stack, files.geometry):
        key = f"/{BUCKET}/mintpy_big/inputs/{file.name}"
        print(f"\n{file.name}: {per_path.get(key, 0)} of {file.stat().st_size} bytes")
        assert 0 < per_path.get(key, 0) < file.stat().st_size / 2
    _same_stack(remote_ds, read_mintpy(folder, IngestConfig(bbox=bbox)))


def test_truncated_mintpy_stack_on_s3_names_the_url(s3, small_scene, tmp_path):
    folder = tmp_path / "mintpy_cut"
    files = write_mintpy(small_scene.to_ifgstack(), folder / "inputs")
    files.stack.write_bytes(files.stack.read_bytes()[: files.stack.stat().st_size // 3])
    url = _upload(folder, "mintpy_cut")
    with pytest.raises(InputError, match=rf"{url}/inputs/{STACK_FILE}: .*corrupt or truncated"):
        read_mintpy(url)
    assert GEOMETRY_FILE == files.geometry.name


def test_quiet_gdal_mutes_only_its_own_thread(caplog):
    gdal = logging.getLogger("rasterio._env")
    with caplog.at_level(logging.WARNING, logger="rasterio._env"):
        with remote.quiet_gdal():
            gdal.warning("muted")
            other = threading.Thread(target=gdal.warning, args=("other thread",))
            other.start()
            other.join()
        gdal.warning("after")
    assert [r.getMessage() for r in caplog.records] == ["other thread", "after"]
    assert gdal.level == logging.NOTSET  # no level left behind
