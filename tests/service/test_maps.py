"""Map routes on real result folders: a simulated scene run through `run_to_folder`.

Two results of the same noise-free scene: LiCSAR layout (EPSG:4326 grid) and HyP3 layout
(UTM grid), so lon/lat transforms are exercised both ways.
"""

from __future__ import annotations

import io
from pathlib import Path

import morecantile
import numpy as np
import pytest
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from PIL import Image
from pyproj import Transformer
from rio_tiler.colormap import cmap as colormaps

from mtinsar.config import load_config
from mtinsar.results.versions import open_result
from mtinsar.service.maps import make_router, mount_webmap
from mtinsar.simulate import SceneConfig, load_truth, simulate_scene, write_hyp3, write_licsar
from mtinsar.workflows.jobs import run_to_folder

TMS = morecantile.tms.get("WebMercatorQuad")


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, Path]:
    """job id -> result folder: 'geo' (LiCSAR, EPSG:4326) and 'utm' (HyP3, UTM); 'truth'."""
    root = tmp_path_factory.mktemp("maps")
    scene = simulate_scene(SceneConfig.noise_free(ny=60, nx=80, n_dates=16, seed=1, water=True))
    write_licsar(scene, root / "geo_scene")
    write_hyp3(scene, root / "utm_scene")
    cfg = load_config(None)
    run_to_folder(root / "geo_scene", root / "geo", cfg)
    run_to_folder(root / "utm_scene", root / "utm", cfg)
    return {"geo": root / "geo", "utm": root / "utm", "truth": root / "geo_scene"}


@pytest.fixture(scope="module")
def client(results) -> TestClient:
    def result_dir(job_id: str) -> Path:
        if job_id not in ("geo", "utm"):
            raise HTTPException(404, f"no job {job_id}")
        return results[job_id]

    app = FastAPI()
    app.include_router(make_router(result_dir))
    mount_webmap(app)
    return TestClient(app)


@pytest.fixture(scope="module")
def bowl(results) -> tuple[int, int, float]:
    """(row, col, true velocity [mm/yr]) of the fastest-subsiding pixel of the truth."""
    vel = load_truth(results["truth"])["velocity"].values * 1000
    row, col = np.unravel_index(np.nanargmin(vel), vel.shape)
    assert vel[row, col] < -50  # the scene has a subsidence bowl worth mapping
    return int(row), int(col), float(vel[row, col])


def _pixel_lonlat(folder: Path, row: int, col: int) -> tuple[float, float]:
    ds = open_result(folder)
    x, y = float(ds["x"][col]), float(ds["y"][row])
    return Transformer.from_crs(ds.rio.crs, "EPSG:4326", always_xy=True).transform(x, y)


def test_info_bounds_dates_and_range(client, results):
    for job in ("geo", "utm"):
        info = client.get(f"/jobs/{job}/map/info").json()
        ds = open_result(results[job])
        west, south, east, north = info["bounds"]
        lon, lat = Transformer.from_crs(ds.rio.crs, "EPSG:4326", always_xy=True).transform(
            *np.meshgrid(ds["x"].values, ds["y"].values)
        )
        assert west <= lon.min() and lon.max() <= east and south <= lat.min() and lat.max() <= north
        assert east - west < 0.2 and north - south < 0.2  # tight, not the world
        assert info["shape"] == [60, 80]
        assert len(info["dates"]) == 16 and info["dates"][0] == str(ds["time"].values[0])[:10]
        names = [layer["name"] for layer in info["layers"]]
        assert {"velocity", "temporal_coherence"} <= set(names)
        lo, hi = info["velocity_range"]
        vel = ds["velocity"].values * 1000
        assert lo == -hi and hi >= np.nanpercentile(np.abs(vel), 90)
    assert client.get("/jobs/geo/map/info").json()["crs"] == "EPSG:4326"
    assert client.get("/jobs/utm/map/info").json()["crs"].startswith("EPSG:326")


def _tile_pixel(lon: float, lat: float, z: int) -> tuple[morecantile.Tile, int, int]:
    """The tile holding lon/lat at zoom z and the point's column/row in that tile."""
    tile = TMS.tile(lon, lat, z)
    b = TMS.xy_bounds(tile)
    mx, my = TMS.xy(lon, lat)
    return (
        tile,
        int((mx - b.left) / (b.right - b.left) * 256),
        int((b.top - my) / (b.top - b.bottom) * 256),
    )


def _png(response) -> np.ndarray:
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGBA"))


@pytest.mark.parametrize("job", ["geo", "utm"])
def test_velocity_tile_colours_the_bowl_red_and_outside_transparent(client, results, bowl, job):
    row, col, _ = bowl
    lon, lat = _pixel_lonlat(results[job], row, col)
    estimated = float(open_result(results[job])["velocity"][row, col]) * 1000
    z = 13  # a tile's pixel is finer than the grid's, coarse enough to reach beyond it
    tile, px, py = _tile_pixel(lon, lat, z)
    rgba = _png(
        client.get(f"/jobs/{job}/map/tiles/velocity/{z}/{tile.x}/{tile.y}.png?vmin=-120&vmax=120")
    )
    assert rgba.shape == (256, 256, 4)
    lut = colormaps.get("rdbu")
    expected = np.array(lut[int(np.clip(round((estimated + 120) / 240 * 255), 0, 255))][:3])
    got = rgba[py, px]
    assert got[3] == 255
    # nearest resampling may take a neighbouring grid pixel at the very edge: allow a
    # little, then insist it is the red (negative, subsiding) end of red-blue
    assert np.abs(got[:3].astype(int) - expected).max() <= 25, (got, expected)
    assert got[0] > 2 * got[2]
    # the grid covers only part of this tile: the rest is transparent
    assert (rgba[..., 3] == 0).any() and (rgba[..., 3] == 255).any()


def test_velocity_range_changes_colours(client, results, bowl):
    row, col, _ = bowl
    lon, lat = _pixel_lonlat(results["geo"], row, col)
    tile, px, py = _tile_pixel(lon, lat, 13)
    url = f"/jobs/geo/map/tiles/velocity/13/{tile.x}/{tile.y}.png"
    saturated = _png(client.get(url + "?vmin=-10&vmax=10"))[py, px]
    assert tuple(saturated[:3]) == tuple(colormaps.get("rdbu")[0][:3])
    flipped = _png(client.get(url + "?vmin=-10&vmax=10&cmap=rdbu_r"))[py, px]
    assert flipped[2] > 2 * flipped[0]  # reversed map: subsidence blue


def test_coherence_tile_and_empty_tiles(client, results):
    lon, lat = _pixel_lonlat(results["geo"], 30, 40)
    tile, px, py = _tile_pixel(lon, lat, 13)
    coh = float(open_result(results["geo"])["temporal_coherence"][30, 40])
    rgba = _png(client.get(f"/jobs/geo/map/tiles/temporal_coherence/13/{tile.x}/{tile.y}.png"))
    expected = colormaps.get("viridis")[int(round(coh * 255))][:3]
    assert np.abs(rgba[py, px, :3].astype(int) - np.array(expected)).max() <= 25
    far = _png(client.get("/jobs/geo/map/tiles/velocity/13/10/10.png"))  # the Arctic
    assert (far[..., 3] == 0).all()


def test_tile_errors(client):
    assert client.get("/jobs/geo/map/tiles/phase/3/1/1.png").status_code == 404
    assert client.get("/jobs/geo/map/tiles/velocity/3/9/1.png").status_code == 422
    bad = client.get("/jobs/geo/map/tiles/velocity/3/1/1.png?vmin=5&vmax=-5")
    assert bad.status_code == 422 and "vmin" in bad.json()["detail"]
    assert client.get("/jobs/geo/map/tiles/velocity/3/1/1.png?cmap=jet").status_code == 422
    assert client.get("/jobs/nope/map/tiles/velocity/3/1/1.png").status_code == 404


@pytest.mark.parametrize("job", ["geo", "utm"])
def test_timeseries_at_the_bowl(client, results, bowl, job):
    row, col, truth = bowl
    lon, lat = _pixel_lonlat(results[job], row, col)
    answer = client.get(f"/jobs/{job}/map/timeseries", params={"lon": lon, "lat": lat})
    assert answer.status_code == 200, answer.text
    ts = answer.json()
    assert (ts["pixel"]["row"], ts["pixel"]["col"]) == (row, col)
    assert ts["pixel"]["lon"] == pytest.approx(lon, abs=1e-6)
    ds = open_result(results[job])
    disp = ds["displacement"][:, row, col].values * 1000
    np.testing.assert_allclose(ts["displacement_mm"], disp, atol=1e-3)
    assert ts["dates"] == [str(d)[:10] for d in ds["time"].values]
    assert ts["velocity_mm_per_yr"] == pytest.approx(
        float(ds["velocity"][row, col]) * 1000, abs=1e-3
    )
    assert ts["velocity_mm_per_yr"] < 0
    assert ts["velocity_mm_per_yr"] == pytest.approx(truth, rel=0.1)
    assert ts["velocity_std_mm_per_yr"] >= 0 and 0 <= ts["temporal_coherence"] <= 1
    # the model line is the fitted linear trend: its slope is the velocity
    t = (ds["time"].values - ds["time"].values[0]) / np.timedelta64(1, "D") / 365.25
    slope = np.polyfit(t, ts["model_mm"], 1)[0]
    assert slope == pytest.approx(ts["velocity_mm_per_yr"], rel=1e-3)
    assert np.std(np.array(ts["displacement_mm"]) - ts["model_mm"]) < 0.2 * np.ptp(disp)


def test_timeseries_outside_grid_and_bad_input(client):
    outside = client.get("/jobs/utm/map/timeseries", params={"lon": 10.0, "lat": 45.0})
    assert outside.status_code == 404 and "outside the result grid" in outside.json()["detail"]
    assert client.get("/jobs/geo/map/timeseries", params={"lon": 0, "lat": 95}).status_code == 422
    assert client.get("/jobs/geo/map/timeseries", params={"lon": 0}).status_code == 422


def test_timeseries_pixel_without_data(client, results, tmp_path):
    ds = open_result(results["geo"])
    disp = ds["displacement"].values
    empty = np.argwhere(~np.isfinite(disp).any(axis=0))
    assert empty.size, "the scene's lake should leave pixels without data"
    row, col = empty[0]
    lon, lat = _pixel_lonlat(results["geo"], int(row), int(col))
    answer = client.get("/jobs/geo/map/timeseries", params={"lon": lon, "lat": lat})
    assert answer.status_code == 404 and "no data" in answer.json()["detail"]


def test_network(client, results):
    net = client.get("/jobs/geo/map/network").json()
    ds = open_result(results["geo"])
    assert len(net["dates"]) == 16 and len(net["bperp_m"]) == 16
    np.testing.assert_allclose(net["bperp_m"], ds["bperp"].values, atol=1e-3)
    pairs = (results["geo"] / "pairs.csv").read_text().strip().splitlines()[1:]
    assert len(net["pairs"]) == len(pairs) == net["n_kept"] + net["n_dropped"]
    first = net["pairs"][0]
    assert first["reference"] < first["secondary"] and first["kept"] in (True, False)
    assert (
        first["reference"].replace("-", "") + "_" + first["secondary"].replace("-", "")
        == pairs[0].split(",")[0]
    )


def test_webmap_files(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="map"' in page.text and "/static/app.js" in page.text
    script = client.get("/static/app.js")
    assert script.status_code == 200
    assert script.headers["content-type"].split(";")[0] in (
        "text/javascript",
        "application/javascript",
    )
    assert "mtinsarMap" in script.text
    assert client.get("/static/app.css").headers["content-type"].startswith("text/css")


def test_updated_result_is_mapped_from_its_current_version(results, bowl, tmp_path):
    """A version added by `update` has no COGs: tiles come from COGs cached from its Zarr."""
    import shutil

    from mtinsar.results.versions import STORE, write_version
    from mtinsar.results.writer import write_store

    folder = tmp_path / "result"
    shutil.copytree(results["geo"], folder)
    ds = open_result(folder).load()

    def fill(tmp: Path) -> None:  # a new version whose velocity is halved
        new = ds.assign(velocity=ds["velocity"] / 2)
        new.attrs = dict(ds.attrs)
        write_store(new, tmp, STORE)

    assert write_version(folder, fill) == 1
    app = FastAPI()
    app.include_router(make_router(lambda job_id: folder))
    client = TestClient(app)
    row, col, _ = bowl
    lon, lat = _pixel_lonlat(folder, row, col)
    ts = client.get("/jobs/x/map/timeseries", params={"lon": lon, "lat": lat}).json()
    halved = float(ds["velocity"][row, col]) * 500
    assert ts["velocity_mm_per_yr"] == pytest.approx(halved, abs=1e-3)
    assert client.get("/jobs/x/map/info").json()["version"] == 1
    tile, px, py = _tile_pixel(lon, lat, 13)
    rgba = _png(
        client.get(f"/jobs/x/map/tiles/velocity/13/{tile.x}/{tile.y}.png?vmin=-120&vmax=120")
    )
    expected = colormaps.get("rdbu")[int(round((halved + 120) / 240 * 255))][:3]
    assert np.abs(rgba[py, px, :3].astype(int) - np.array(expected)).max() <= 25
    assert (folder / ".map-cache" / "v1" / "velocity.tif").is_file()
