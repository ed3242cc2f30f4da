"""An infra job as a map layer: the segments route, and the web page drawing it (Chromium).

One service (SQLite) for the module: an sbas job on a simulated scene with a subsidence
bowl and an infra job with a railway across it, both run by a worker.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image
from playwright.sync_api import expect

from mtinsar.infra.metrics import AT_RISK_FROM
from mtinsar.service import auth, db, devdb
from mtinsar.service.app import create_app
from mtinsar.service.processes import RESULT
from mtinsar.service.settings import ServiceConfig
from mtinsar.service.worker import work
from mtinsar.simulate import SceneConfig, load_truth, simulate_scene, write_licsar
from mtinsar.simulate.infra import segment_truth, write_railway

#: The page's colours of the risk classes (webmap/app.js RISK)
COLOURS = {3: (215, 48, 39), 2: (252, 141, 89), 1: (254, 224, 139), 0: (26, 152, 80)}


@dataclass
class Deployment:
    config: ServiceConfig
    app: FastAPI
    client: TestClient  # carries the key of `key`
    key: str
    scene: Path
    sbas: str  # job ids
    infra: str

    @property
    def infra_dir(self) -> Path:
        return self.config.job_dir(self.infra) / RESULT


def _run(config: ServiceConfig, client: TestClient, process: str, inputs: dict) -> str:
    response = client.post(f"/processes/{process}/execution", json={"inputs": inputs})
    assert response.status_code == 201, response.text
    assert work(config, max_jobs=1) == 1
    job_id = response.json()["jobID"]
    assert client.get(f"/jobs/{job_id}").json()["status"] == db.SUCCESSFUL
    return job_id


@pytest.fixture(scope="module")
def deployment(tmp_path_factory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("infra_map")
    cfg = SceneConfig.noise_free(ny=60, nx=80, n_dates=16, seed=1)
    scene = write_licsar(simulate_scene(cfg), root / "inbox" / "scene")
    config = ServiceConfig(
        data_dir=root / "svc",
        database_url=f"sqlite:///{root / 'service.db'}",
        source_roots=[str(root / "inbox")],
        poll_seconds=0.2,
    )
    app = create_app(config)
    with app.state.sessions.begin() as s:
        _, key = auth.create_user(s, "rui", "scientist")
    with TestClient(app, headers={"Authorization": f"Bearer {key}"}) as client:
        sbas = _run(config, client, "sbas", {"source": str(scene)})
        lines = json.loads(write_railway(load_truth(scene), root / "railway.geojson").read_text())
        infra = _run(config, client, "infra", {"job": sbas, "lines": lines})
        yield Deployment(config, app, client, key, scene, sbas, infra)
    app.state.engine.dispose()


@pytest.fixture(scope="module")
def bowl_segments(deployment) -> dict[str, list[int]]:
    """Segment ids over the bowl (true median velocity below -40 mm/yr) and on still ground."""
    seg = gpd.read_file(deployment.infra_dir / "segments.gpkg", layer="segments")
    summary = json.loads((deployment.infra_dir / "summary.json").read_text())
    truth = segment_truth(load_truth(deployment.scene), seg.to_crs(summary["metric_crs"]))
    ids = seg["segment_id"]
    return {
        "bowl": ids[truth["true_v_median_mm_yr"] < -40].tolist(),
        "still": ids[truth["true_v_max_abs_mm_yr"] == 0].tolist(),
    }


def _plain(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def test_segments_route_serves_the_infra_output(deployment):
    client, infra = deployment.client, deployment.infra
    response = client.get(f"/jobs/{infra}/map/segments")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/geo+json")
    layer = response.json()
    assert layer["type"] == "FeatureCollection" and layer["result_job"] == deployment.sbas
    written = json.loads((deployment.infra_dir / "segments.geojson").read_text())
    assert len(layer["features"]) == len(written["features"]) > 20
    for served, feature in zip(layer["features"], written["features"], strict=True):
        assert served["geometry"] == feature["geometry"]
        assert served["properties"] == {k: _plain(v) for k, v in feature["properties"].items()}
        assert served["id"] == feature["properties"]["segment_id"]
    # lon/lat on the scene (corner -99.30/19.60 in the simulator's EPSG:4326 grid)
    lon, lat = np.array([xy for f in layer["features"] for xy in f["geometry"]["coordinates"]]).T
    sbas_info = client.get(f"/jobs/{deployment.sbas}/map/info").json()
    west, south, east, north = sbas_info["bounds"]
    assert west <= lon.min() and lon.max() <= east and south <= lat.min() and lat.max() <= north
    risk = {f["properties"]["risk_class"] for f in layer["features"]}
    assert {0, 3} <= risk and layer["risk_labels"]["3"] == "high"

    info = client.get(f"/jobs/{infra}/map/info").json()
    assert info["kind"] == "infra" and info["result_job"] == deployment.sbas
    assert info["n_segments"] == len(layer["features"])
    assert info["bounds"] == pytest.approx([lon.min(), lat.min(), lon.max(), lat.max()])
    assert sbas_info["kind"] == "timeseries"


def test_segments_route_refuses_what_is_not_an_infra_job(deployment):
    client = deployment.client
    sbas = client.get(f"/jobs/{deployment.sbas}/map/segments")
    assert sbas.status_code == 404 and "not an infrastructure analysis" in sbas.json()["detail"]
    anonymous = TestClient(deployment.app).get(f"/jobs/{deployment.infra}/map/segments")
    assert anonymous.status_code == 404  # a private job: as if it did not exist


@pytest.fixture(scope="module")
def server(deployment) -> Iterator[str]:
    """Base URL of the whole service app (same data and database) served by uvicorn."""
    app = create_app(deployment.config)
    try:
        with devdb.serve_in_thread(app) as url:
            yield url
    finally:
        app.state.engine.dispose()


def test_page_draws_the_segments_coloured_by_risk(page, server, deployment, bowl_segments):
    bowl, still = bowl_segments["bowl"], bowl_segments["still"]
    assert len(bowl) >= 5 and len(still) >= 5
    page.goto(server + "/")
    page.fill("#api-key", deployment.key)
    page.click("#login")
    item = page.locator(f"[data-testid=job-{deployment.infra}]")
    expect(item).to_have_attribute("data-status", "successful", timeout=15_000)
    item.click()  # the infra job opens its sbas job's map with the segments on top
    map_el = page.locator("#map")
    expect(map_el).to_have_attribute("data-state", "ready", timeout=15_000)
    expect(map_el).to_have_attribute("data-job", deployment.sbas)
    expect(map_el).to_have_attribute("data-overlay", deployment.infra)
    layer = json.loads((deployment.infra_dir / "segments.geojson").read_text())
    segments = page.locator("#segments-layer [data-segment]")
    expect(segments).to_have_count(len(layer["features"]))
    page.wait_for_function(
        "() => { const t = [...document.querySelectorAll('#map img.tile')];"
        " return t.length > 0 && t.every(i => i.complete && i.naturalWidth === 256); }",
        timeout=15_000,
    )

    shot = np.asarray(Image.open(io.BytesIO(map_el.screenshot())).convert("RGB")).astype(int)
    for sid in bowl + still:
        element = page.locator(f"#segments-layer [data-segment='{sid}']")
        risk = int(element.get_attribute("data-risk"))
        assert (risk >= AT_RISK_FROM) if sid in bowl else (risk == 0), (sid, risk)
        assert ("risk-high" if risk == 3 else "risk-") in element.get_attribute("class")
        # the middle of the drawn line has the colour of its class
        x, y = element.evaluate(
            "g => { const l = g.querySelector('polyline');"
            " const p = l.getPointAtLength(l.getTotalLength() / 2); return [p.x, p.y]; }"
        )
        pixel = shot[round(y) + 1, round(x) + 1]  # +1: the map's border
        assert np.abs(pixel - COLOURS[risk]).max() <= 8, (sid, risk, pixel)

    legend = page.locator("#segments-legend")
    expect(legend).to_be_visible()
    n_high = sum(f["properties"]["risk_class"] == 3 for f in layer["features"])
    expect(legend.locator("[data-risk='3']")).to_contain_text(f"high ({n_high})")

    # clicking a segment over the bowl shows its metrics
    target = bowl[len(bowl) // 2]
    props = next(
        f["properties"] for f in layer["features"] if f["properties"]["segment_id"] == target
    )
    x, y = page.locator(f"#segments-layer [data-segment='{target}']").evaluate(
        "g => { const l = g.querySelector('polyline');"
        " const p = l.getPointAtLength(l.getTotalLength() / 2); return [p.x, p.y]; }"
    )
    box = map_el.bounding_box()
    page.mouse.click(box["x"] + 1 + x, box["y"] + 1 + y)
    info = page.locator("#segment-info")
    expect(info).to_have_attribute("data-segment", str(target))
    expect(info).to_be_visible()
    expect(info.locator("[data-metric=v_median_mm_yr]")).to_have_text(
        f"{props['v_median_mm_yr']:.1f} mm/yr"
    )
    expect(info.locator("[data-metric=diff_settlement_mm_yr_100m]")).to_contain_text(
        f"{props['diff_settlement_mm_yr_100m']:.2f}"
    )
    expect(page.locator(f"#segments-layer [data-segment='{target}']")).to_have_class(
        "segment risk-high selected"
        if props["risk_class"] == 3
        else "segment risk-moderate selected"
    )
    expect(page.locator("#ts-velocity")).to_have_text("")  # a segment click picks no pixel

    # the sbas job itself: no segments
    page.goto(server + f"/#job={deployment.sbas}")
    expect(map_el).to_have_attribute("data-job", deployment.sbas)
    expect(map_el).not_to_have_attribute("data-overlay", deployment.infra)
    expect(page.locator("#segments-layer")).to_have_count(0)
    expect(legend).to_be_hidden()
