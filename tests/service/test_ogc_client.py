"""A real OGC API - Processes client (OWSLib) against a live server and worker on loopback."""

import asyncio
import threading
import time

import httpx
import numpy as np
import owslib.ogcapi
import pytest
import rasterio
import requests
from owslib.ogcapi.processes import Processes
from rasterio.io import MemoryFile

from mtinsar.service import auth, devdb
from mtinsar.service.app import create_app
from mtinsar.service.settings import ServiceConfig
from mtinsar.service.worker import work
from mtinsar.simulate import SceneConfig, load_truth, simulate_scene, write_licsar


@pytest.fixture
def live(database_url, tmp_path, monkeypatch):
    """(config, base URL, admin key) of a server and one worker running in threads."""
    # OWSLib keeps its request headers in a module-level dict and adds ours to it: isolate it
    monkeypatch.setattr(owslib.ogcapi, "REQUEST_HEADERS", dict(owslib.ogcapi.REQUEST_HEADERS))
    config = ServiceConfig(data_dir=tmp_path / "svc", database_url=database_url, poll_seconds=0.2)
    app = create_app(config)
    with app.state.sessions.begin() as s:
        _, key = auth.create_user(s, "ann", "scientist")
    stop = threading.Event()
    worker = threading.Thread(target=work, args=(config, "test-worker", stop), daemon=True)
    worker.start()
    try:
        with devdb.serve_in_thread(app) as url:
            yield config, url, key
    finally:
        stop.set()
        worker.join(timeout=60)
        app.state.engine.dispose()


def test_owslib_runs_an_sbas_job_to_completion(live):
    config, base, key = live
    scene = simulate_scene(SceneConfig(ny=40, nx=50, n_dates=10, seed=1))
    frame = write_licsar(scene, config.data_dir / "inbox" / "frame")
    headers = {"X-API-Key": key}

    client = Processes(base, headers=headers)  # reads the landing page (JSON to non-browsers)
    assert any(link["rel"] == "service-desc" for link in client.links)
    assert client.conformance()["conformsTo"][0].endswith("/conf/core")
    assert [p["id"] for p in client.processes()] == ["sbas", "update", "infra"]
    assert "source" in client.process("sbas")["inputs"]
    assert "openapi" in client.api()

    status = client.execute("sbas", {"source": str(frame)}, async_=True)
    assert status["status"] == "accepted"
    assert client.response_headers["Location"] == f"{base}/jobs/{status['jobID']}"
    job_url = client.response_headers["Location"]
    deadline = time.monotonic() + 240
    while status["status"] in ("accepted", "running") and time.monotonic() < deadline:
        time.sleep(0.5)
        status = requests.get(job_url, headers=headers, timeout=10).json()
    assert status["status"] == "successful", status
    assert status["progress"] == 100 and status["finished"] >= status["started"]

    links = {link["rel"]: link["href"] for link in status["links"]}
    results = requests.get(links["http://www.opengis.net/def/rel/ogc/1.0/results"], headers=headers)
    velocity_ref = results.json()["velocity"]
    fetched = requests.get(velocity_ref["href"], headers=headers, timeout=10).content
    on_disk = config.job_dir(status["jobID"]) / "result" / "velocity.tif"
    assert fetched == on_disk.read_bytes()
    with MemoryFile(fetched) as memory, memory.open() as cog:
        velocity = cog.read(1)  # m/yr, uplift positive
        assert cog.shape == (40, 50) and cog.crs.to_epsg() == 4326
    truth = load_truth(frame)["velocity"].values
    bowl = truth < -0.02  # the simulated subsidence bowl, faster than 2 cm/yr
    assert bowl.sum() > 50
    assert np.nanmean(velocity[bowl]) < -0.01  # subsiding: moving away from the satellite
    assert np.nanmean(velocity[~bowl]) > np.nanmean(velocity[bowl]) + 0.01

    item = requests.get(links["alternate"], headers=headers, timeout=10).json()
    assert item["id"] == status["jobID"] and item["properties"]["mtinsar:n_dates"] == 10
    assert item["assets"]["velocity"]["href"] == velocity_ref["href"]
    with rasterio.open(on_disk) as src:
        assert src.bounds.left == pytest.approx(item["bbox"][0], abs=1e-9)
    anonymous = requests.get(job_url, timeout=10)
    assert anonymous.status_code == 404  # private until shared


def test_hundreds_of_concurrent_requests_are_all_answered(live):
    """200 requests at once: every one answered 200 (a too-small thread/connection budget
    used to deadlock the server here for good)."""
    config, base, key = live
    headers = {"Authorization": f"Bearer {key}"}

    async def blast() -> list[int]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits) as client:
            answers = await asyncio.gather(
                *(client.get("/jobs", timeout=60) for _ in range(200)), return_exceptions=True
            )
        return [a.status_code if isinstance(a, httpx.Response) else repr(a) for a in answers]

    assert asyncio.run(blast()) == [200] * 200
