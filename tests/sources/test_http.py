"""Products read in place over HTTP(S) with range requests (`mtinsar.sources.remote`).

A real HTTP server on loopback (`http_server.serve_folder`, byte ranges added to Python's
static file server) serves simulated products; every stack read through an ``http://`` URL
must equal the same folder read from disk, and a small bbox must move few bytes. The scheme
is the only difference between http:// and https:// for GDAL's /vsicurl/ and fsspec.
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest
import xarray as xr
from http_server import serve_folder
from s3_server import closed_port
from test_remote import _bbox_fraction, _product_bytes, _to_cog

from mtinsar.config import IngestConfig, StorageConfig
from mtinsar.errors import InputError
from mtinsar.io.mintpy import write_mintpy
from mtinsar.io.products import detect_format, read_products
from mtinsar.simulate import SceneConfig, simulate_scene, write_licsar
from mtinsar.simulate.aria import write_aria
from mtinsar.simulate.isce import write_isce
from mtinsar.sources import remote


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A folder of products (a tiled LiCSAR frame, GUNW files, a topsStack) and its server."""
    root = tmp_path_factory.mktemp("site")
    write_licsar(simulate_scene(SceneConfig(ny=480, nx=480, n_dates=5, seed=6)), root / "frame")
    _to_cog(root / "frame")
    small = simulate_scene(SceneConfig(ny=24, nx=20, n_dates=5, seed=8))
    write_aria(small, root / "gunw")
    write_isce(small, root / "tops")
    write_mintpy(small.to_ifgstack(), root / "mintpy" / "inputs")
    with serve_folder(root) as server:
        yield root, server


def _same_stack(remote_ds: xr.Dataset, local_ds: xr.Dataset) -> None:
    assert remote_ds.attrs.pop("source").startswith("http://127.0.0.1:")
    local_ds.attrs.pop("source")
    xr.testing.assert_identical(remote_ds, local_ds)


def test_server_honours_byte_ranges(site):
    root, server = site
    tif = next((root / "frame" / "interferograms").rglob("*.geo.unw.tif"))
    url = f"{server.url}/{tif.relative_to(root).as_posix()}"
    request = urllib.request.Request(url, headers={"Range": "bytes=10-19"})
    with urllib.request.urlopen(request) as response:
        assert response.status == 206
        assert response.headers["Content-Range"] == f"bytes 10-19/{tif.stat().st_size}"
        assert response.read() == tif.read_bytes()[10:20]


@pytest.mark.parametrize(("folder", "fmt"), [("frame", "licsar"), ("gunw", "aria"),
                                             ("tops", "isce"), ("mintpy", "mintpy")])  # fmt: skip
def test_products_over_http_equal_local(site, folder, fmt):
    root, server = site
    url = f"{server.url}/{folder}"
    assert detect_format(url) == fmt
    config = IngestConfig(multilook=2, chunk_size=64)
    _same_stack(read_products(url, config).load(), read_products(root / folder, config).load())


def test_licsar_bbox_over_http_moves_few_bytes(site):
    """Acceptance figure over HTTP: a 5 % bbox moves <= 15 % of the product bytes."""
    root, server = site
    frame = root / "frame"
    config = IngestConfig(bbox=_bbox_fraction(frame, 0.05, offset=0.41))
    server.counter.reset()
    remote_ds = read_products(f"{server.url}/frame", config).load()
    sent, total = server.counter.sent, _product_bytes(frame)
    print(f"\nbytes over HTTP: {sent} of {total} product bytes ({sent / total:.1%})")
    _same_stack(remote_ds, read_products(frame, config).load())
    assert sent <= 0.15 * total
    # Ranged GETs only: no pixel file went out whole.
    per_path = server.counter.by_path()
    for tif in frame.rglob("*.tif"):
        assert per_path.get(f"/{tif.relative_to(root).as_posix()}", 0) < tif.stat().st_size / 2


def test_missing_folder_names_the_url(site):
    _, server = site
    url = f"{server.url}/nothing_here"
    with pytest.raises(InputError, match=rf"{url}: no such file or folder"):
        read_products(url)


def test_unreachable_server_retries_with_backoff(monkeypatch):
    monkeypatch.setattr(remote, "_active", StorageConfig(retries=3, backoff_s=0.2))
    url = f"http://127.0.0.1:{closed_port()}/frame"
    start = time.monotonic()
    with pytest.raises(InputError) as info:
        read_products(url)
    assert str(info.value).startswith(f"{url}: unreachable after 3 attempts")
    assert time.monotonic() - start >= 0.2 + 0.4


def test_https_urls_go_through_vsicurl():
    assert remote.is_remote("https://example.org/frame")
    assert remote.gdal_path("https://example.org/f.tif") == "/vsicurl/https://example.org/f.tif"
    assert Path(remote.strip_scheme("https://example.org/f.tif")) != Path("f.tif")
