"""The web map page in a real browser (headless Chromium) against a real server on loopback.

The app holds only the map routes (no /jobs API): the job list shows its error and the map,
opened with `/#job=<id>`, must work regardless.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI, Header, HTTPException
from PIL import Image
from playwright.sync_api import expect

from mtinsar.config import load_config
from mtinsar.results.versions import open_result
from mtinsar.service import devdb
from mtinsar.service.maps import make_router, mount_webmap
from mtinsar.simulate import SceneConfig, load_truth, simulate_scene, write_licsar
from mtinsar.workflows.jobs import run_to_folder

KEY = "mti_test-key"


@pytest.fixture(scope="module")
def result(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("webmap")
    scene = simulate_scene(SceneConfig.noise_free(ny=60, nx=80, n_dates=16, seed=1))
    write_licsar(scene, root / "scene")
    run_to_folder(root / "scene", root / "result", load_config(None))
    return root


@pytest.fixture(scope="module")
def server(result) -> Iterator[str]:
    """Base URL of the map app served by uvicorn in a thread; the API key is checked."""

    def result_dir(job_id: str, authorization: str | None = Header(None)) -> Path:
        if authorization != f"Bearer {KEY}":
            raise HTTPException(401, "missing or wrong API key")
        if job_id != "sim":
            raise HTTPException(404, f"no job {job_id}")
        return result / "result"

    app = FastAPI()
    app.include_router(make_router(result_dir))
    mount_webmap(app)
    with devdb.serve_in_thread(app) as url:
        yield url


def test_open_map_click_bowl_shows_subsidence(page, server, result):
    page.goto(server + "/")
    page.fill("#api-key", KEY)
    page.click("#login")
    expect(page.locator("#jobs-error")).to_be_visible()  # no /jobs in this app: shown, harmless
    page.goto(server + "/#job=sim")  # the key stays in localStorage
    expect(page.locator("#map")).to_have_attribute("data-state", "ready", timeout=15000)
    expect(page.locator("#vmin")).not_to_have_value("")
    expect(page.locator("#colorbar")).to_contain_text("mm/yr")

    truth = load_truth(result / "scene")["velocity"].values * 1000
    row, col = np.unravel_index(np.nanargmin(truth), truth.shape)
    ds = open_result(result / "result")
    lon, lat = float(ds["x"][col]), float(ds["y"][row])
    # every tile drawn and loaded, then the bowl pixel must look red (subsidence)
    page.wait_for_function(
        "() => { const t = [...document.querySelectorAll('#map img.tile')];"
        " return t.length > 0 && t.every(i => i.complete && i.naturalWidth === 256); }",
        timeout=15000,
    )
    px, py = page.evaluate(f"mtinsarMap.lonLatToPixel({lon}, {lat})")
    shot = np.asarray(Image.open(io.BytesIO(page.locator("#map").screenshot())).convert("RGB"))
    r, g, b = (int(v) for v in shot[int(py), int(px)])
    assert r > 1.5 * b and r > 100, (r, g, b)

    box = page.locator("#map").bounding_box()
    page.mouse.click(box["x"] + 1 + px, box["y"] + 1 + py)  # +1: the map's border
    velocity = page.locator("#ts-velocity")
    expect(velocity).to_have_text(re.compile(r"^-?\d+\.\d mm/yr$"), timeout=15000)
    shown = float(velocity.inner_text().split()[0])
    estimated = float(ds["velocity"][row, col]) * 1000
    assert shown < 0
    assert shown == pytest.approx(estimated, abs=0.6)  # the clicked pixel or a neighbour
    assert shown == pytest.approx(float(truth[row, col]), rel=0.1)
    assert page.locator("#ts-chart circle").count() == 16
    assert page.locator("#ts-chart polyline.model").count() == 1
    n_pairs = len((result / "result" / "pairs.csv").read_text().strip().splitlines()) - 1
    expect(page.locator("#network line.pair-kept, #network line.pair-dropped")).to_have_count(
        n_pairs
    )

    # a click outside the grid explains itself
    page.mouse.click(box["x"] + 5, box["y"] + 5)
    expect(page.locator("#map-status")).to_contain_text("outside the result grid")
    # zoom in keeps working and redraws tiles at the next zoom
    zoom = int(page.locator("#map").get_attribute("data-zoom"))
    page.click("#zoom-in")
    expect(page.locator("#map")).to_have_attribute("data-zoom", str(zoom + 1))


def test_wrong_key_shows_an_error(page, server):
    page.goto(server + "/")
    page.fill("#api-key", "mti_wrong")
    page.click("#login")
    page.goto(server + "/#job=sim")
    expect(page.locator("#map-status")).to_contain_text("API key", timeout=15000)
    expect(page.locator("#map")).to_have_attribute("data-state", "error")
