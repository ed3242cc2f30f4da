"""End to end, as a user: `mtinsar serve` + `mtinsar worker` processes, headless Chromium.

Log in with a key made by `mtinsar users add`, submit an sbas job on a simulated scene in
the web page, wait for the worker to finish it, open its map, click the subsiding bowl and
read a negative velocity in the time-series chart.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from playwright.sync_api import expect

from mtinsar.service import devdb
from mtinsar.simulate import SceneConfig, load_truth, simulate_scene, write_licsar

MTINSAR = [sys.executable, "-m", "mtinsar"]


@pytest.fixture
def service(tmp_path):
    """(base URL, admin key, scene folder) of a live service with one worker."""
    data, inbox = tmp_path / "svc", tmp_path / "inbox"
    scene = write_licsar(
        simulate_scene(SceneConfig.noise_free(ny=60, nx=80, n_dates=16, seed=1)), inbox / "frame"
    )
    common = ["--data", str(data)]
    key = subprocess.run(
        [*MTINSAR, "users", "add", "ana", "--role", "scientist", *common],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    port = devdb.free_port()
    roots = ["--source-root", str(inbox)]
    log = open(tmp_path / "service.log", "w")  # noqa: SIM115 (closed below)
    procs = [
        subprocess.Popen(
            [*MTINSAR, "serve", *common, *roots, "--port", str(port)], stdout=log, stderr=log
        ),
        subprocess.Popen([*MTINSAR, "worker", *common, *roots], stdout=log, stderr=log),
    ]
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/conformance", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "service.log").read_text()
            time.sleep(0.2)
        yield base, key, scene
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(30)
        log.close()


def test_submit_in_the_page_then_click_the_bowl(page, service):
    base, key, scene = service
    page.goto(base + "/")
    page.fill("#api-key", key)
    page.click("#login")
    page.fill("#submit-source", str(scene))
    page.click("#submit")
    status = page.locator("#submit-status")
    expect(status).to_have_attribute("data-job-id", re.compile(r"^[0-9a-f]{32}$"))
    job_id = status.get_attribute("data-job-id")
    item = page.locator(f"[data-testid=job-{job_id}]")
    expect(item).to_have_attribute("data-status", "successful", timeout=120_000)
    item.click()
    expect(page.locator("#map")).to_have_attribute("data-state", "ready", timeout=20_000)

    truth = load_truth(scene)["velocity"]
    row, col = np.unravel_index(np.nanargmin(truth.values), truth.shape)
    lon, lat = float(truth["x"][col]), float(truth["y"][row])
    px, py = page.evaluate(f"mtinsarMap.lonLatToPixel({lon}, {lat})")
    box = page.locator("#map").bounding_box()
    page.mouse.click(box["x"] + 1 + px, box["y"] + 1 + py)  # +1: the map's border
    velocity = page.locator("#ts-velocity")
    expect(velocity).to_have_text(re.compile(r"^-?\d+\.\d mm/yr$"), timeout=15_000)
    shown = float(velocity.inner_text().split()[0])
    assert shown < 0
    assert shown == pytest.approx(float(truth.values[row, col]) * 1000, rel=0.1)
    assert page.locator("#ts-chart circle").count() == 16
