"""Alerts after an update: a step injected on the newest date is found, a quiet date gives
(almost) none, the GeoJSON holds the area; the update itself posts nothing, and webhooks get
the alerts without a dead one blocking the next."""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest
from shapely.geometry import Point, shape

from mtinsar.config import NrtConfig, RunConfig
from mtinsar.nrt import update
from mtinsar.nrt.alerts import alert_areas
from mtinsar.nrt.network import attach_network
from mtinsar.nrt.webhooks import post_alerts
from mtinsar.simulate import SceneConfig, simulate_scene
from mtinsar.workflows.pipeline import run_sbas

STEP_M = 0.05  # LOS step towards the satellite [m]
BLOCK = 5  # the step covers BLOCK x BLOCK pixels (25, "a ~20-pixel area")


@pytest.fixture(scope="module")
def monitored():
    """A run on every date but the last, and the last date's pairs."""
    sc = simulate_scene(SceneConfig(ny=80, nx=100, n_dates=30, seed=2))
    stack = sc.to_ifgstack()
    run = run_sbas(stack.isel(pair=stack["sec_date"].values < sc.dates[-1]), RunConfig())
    new = stack.isel(pair=stack["sec_date"].values == sc.dates[-1])
    return attach_network(run.result, run.network), new


def _step_site(result):
    """Upper-left pixel of a BLOCK x BLOCK reliable area far from the reference."""
    mask = result["mask"].values
    ry, rx = result.attrs["reference_y"], result.attrs["reference_x"]
    for y in range(5, mask.shape[0] - BLOCK - 5, 2):
        for x in range(5, mask.shape[1] - BLOCK - 5, 2):
            if (
                mask[y - 3 : y + BLOCK + 3, x - 3 : x + BLOCK + 3].all()
                and abs(y - ry) + abs(x - rx) > 30
            ):
                return y, x
    raise AssertionError("no reliable site for the step")


def _with_step(new, y, x, wavelength):
    stepped = new.copy(deep=True)
    unw = stepped["unw"].values
    unw[:, y : y + BLOCK, x : x + BLOCK] += -4 * np.pi / wavelength * STEP_M
    stepped["unw"].values[...] = unw
    return stepped


def test_step_on_newest_date_is_alerted(monitored):
    result, new = monitored
    y, x = _step_site(result)
    stepped = _with_step(new, y, x, new.attrs["wavelength"])
    _, report = update(result, stepped, RunConfig())
    collection = json.loads(json.dumps(report.alerts))  # as the job writes it
    assert collection["type"] == "FeatureCollection"
    outlines = [shape(f["geometry"]) for f in collection["features"]]
    lon, lat = result["x"].values, result["y"].values
    inside = [
        any(o.contains(Point(lon[i], lat[j])) for o in outlines)
        for j in range(y, y + BLOCK)
        for i in range(x, x + BLOCK)
    ]
    assert np.mean(inside) >= 0.9
    centre = Point(lon[x + BLOCK // 2], lat[y + BLOCK // 2])
    hit = [f for f, o in zip(collection["features"], outlines, strict=True) if o.contains(centre)]
    assert len(hit) == 1
    props = hit[0]["properties"]
    assert BLOCK * BLOCK * 0.8 <= props["area_px"] <= BLOCK * BLOCK * 1.5
    assert 0.6 * STEP_M * 1e3 < props["max_departure_mm"] < 1.6 * STEP_M * 1e3
    assert props["max_sigma_ratio"] > NrtConfig().k_sigma
    assert props["date"] == report.date
    # nothing else in the scene alerts
    assert report.alert_pixels <= props["area_px"] + 0.001 * result["mask"].size


def test_quiet_date_has_almost_no_false_alerts(monitored):
    result, new = monitored
    _, report = update(result, new, RunConfig())
    assert report.alert_pixels / result["mask"].size < 0.001
    # the long-wavelength atmosphere of the new date is what the high-pass removes: without
    # it the same quiet date alerts over a larger area than the bound (the test can fail)
    _, raw = update(result, new, RunConfig(nrt={"highpass_window_px": 0}))
    assert raw.alert_pixels / result["mask"].size >= 0.001


def test_alert_areas_keep_connected_areas_above_min_size():
    departure = np.zeros((40, 50))
    departure[5:10, 5:9] = 0.05  # 20 px
    departure[30, 30] = 0.05  # isolated pixel
    departure[20:22, 40:45] = -0.05  # 10 px, negative
    sigma = np.full(departure.shape, 0.01)
    labels, areas = alert_areas(departure, sigma, 3.0, NrtConfig(min_area_px=20))
    assert areas.tolist() == [20]
    assert (labels > 0).sum() == 20 and labels[7, 7] == 1
    labels, areas = alert_areas(departure, sigma, 3.0, NrtConfig(min_area_px=10))
    assert sorted(areas.tolist()) == [10, 20]
    mask = np.ones(departure.shape, dtype=bool)
    mask[5:10, 5:7] = False
    _, areas = alert_areas(departure, sigma, 3.0, NrtConfig(min_area_px=20), mask)
    assert areas.size == 0
    _, areas = alert_areas(departure, np.full(departure.shape, 0.02), 3.0, NrtConfig(min_area_px=1))
    assert areas.size == 0  # 5 cm is 2.5 σ, below k = 3


class _Recorder(BaseHTTPRequestHandler):
    bodies: list = []
    fail_first: int = 0

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).bodies.append((self.headers["Content-Type"], json.loads(body)))
        if type(self).fail_first > 0:
            type(self).fail_first -= 1
            self.send_response(503)
        else:
            self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Recorder.bodies, _Recorder.fail_first = [], 0
    httpd = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/hook", _Recorder
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def _closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_update_posts_nothing_and_the_webhook_receives_the_alerts(monitored, server):
    url, recorder = server
    result, new = monitored
    y, x = _step_site(result)
    stepped = _with_step(new, y, x, new.attrs["wavelength"])
    nrt = NrtConfig(webhooks=[url])
    _, report = update(result, stepped, RunConfig(nrt=nrt))
    assert report.alerts["features"] and recorder.bodies == []  # no HTTP: the job posts
    records = post_alerts(report.alerts, nrt)
    assert records == [{"url": url, "ok": True, "status": 200, "attempts": 1, "error": ""}]
    assert len(recorder.bodies) == 1
    content_type, body = recorder.bodies[0]
    assert content_type == "application/geo+json"
    assert body == json.loads(json.dumps(report.alerts))
    assert body["features"]


def test_webhook_retries_after_a_server_error(server):
    url, recorder = server
    recorder.fail_first = 2
    nrt = NrtConfig(webhooks=[url], webhook_retries=3, webhook_backoff_s=0.01)
    (record,) = post_alerts({"type": "FeatureCollection", "features": []}, nrt)
    assert record["ok"] and record["attempts"] == 3
    assert len(recorder.bodies) == 3


def test_dead_webhook_does_not_block_the_next(monitored, server):
    """(That it never costs the update's result: tests/workflows/test_update_webhooks.py.)"""
    live, recorder = server
    dead = f"http://127.0.0.1:{_closed_port()}/hook"
    result, new = monitored
    y, x = _step_site(result)
    stepped = _with_step(new, y, x, new.attrs["wavelength"])
    nrt = NrtConfig(webhooks=[dead, live], webhook_retries=2, webhook_backoff_s=0.05)
    _, report = update(result, stepped, RunConfig(nrt=nrt))
    start = time.perf_counter()
    failed, delivered = post_alerts(report.alerts, nrt)
    assert time.perf_counter() - start < 5.0
    assert not failed["ok"] and failed["attempts"] == 3 and failed["error"]
    assert delivered["ok"]  # the dead one did not stop the next
    # a budget shorter than the retries bounds the time spent on a dead webhook
    slow = NrtConfig(webhooks=[dead], webhook_retries=50, webhook_backoff_s=0.2, webhook_max_s=1.0)
    start = time.perf_counter()
    (record,) = post_alerts(report.alerts, slow)
    assert time.perf_counter() - start < 2.0 and not record["ok"]


RATE = 1.0  # new LOS velocity [m/yr] of a block from the withheld dates on (e.g. a landslide)


@pytest.fixture(scope="module")
def accelerating():
    """A run on all but the last 5 dates, and those 5 dates' pairs, some with a new trend."""
    sc = simulate_scene(SceneConfig(ny=80, nx=100, n_dates=30, seed=4))
    stack = sc.to_ifgstack()
    start = sc.dates[-6]
    run = run_sbas(stack.isel(pair=stack["sec_date"].values <= start), RunConfig())
    return attach_network(run.result, run.network), stack, sc.dates[-5:], start


def _add_trend(pairs, y, x, start):
    """Pairs with displacement RATE·(t - start)⁺ added over a BLOCK x BLOCK area."""
    years = [
        np.maximum((pairs[d].values - start) / np.timedelta64(1, "D"), 0) / 365.25
        for d in ("ref_date", "sec_date")
    ]
    extra = RATE * (years[1] - years[0])  # [m] per pair
    out = pairs.copy(deep=True)
    phase = -4 * np.pi / pairs.attrs["wavelength"] * extra
    out["unw"].values[:, y : y + BLOCK, x : x + BLOCK] += phase[:, None, None]
    return out


def _updates(result, stack, dates, site=None, start=None):
    reports = []
    for date in dates:
        pairs = stack.isel(pair=stack["sec_date"].values == date).load()
        if site is not None:
            pairs = _add_trend(pairs, *site, start)
        result, report = update(result, pairs, RunConfig())
        reports.append(report)
    return result, reports


def test_velocity_change_is_alerted_and_quiet_scene_is_not(accelerating):
    result, stack, dates, start = accelerating
    y, x = _step_site(result)
    final, reports = _updates(result, stack, dates, (y, x), start)
    changes = [
        f for f in reports[-1].alerts["features"] if f["properties"]["kind"] == "velocity_change"
    ]
    ids = [f["properties"]["id"] for f in reports[-1].alerts["features"]]
    assert ids == list(range(1, len(ids) + 1))  # one numbering over both kinds
    lon, lat = result["x"].values, result["y"].values
    centre = Point(lon[x + BLOCK // 2], lat[y + BLOCK // 2])
    hit = [f for f in changes if shape(f["geometry"]).contains(centre)]
    assert len(hit) == 1
    change = hit[0]["properties"]["max_change_mm_per_yr"]
    truth = float(
        (final["velocity"] - final["nrt_velocity_base"]).values[y : y + BLOCK, x : x + BLOCK].mean()
    )
    assert change > 5 and change == pytest.approx(truth * 1e3, rel=0.5)
    # the same five updates without the new trend: (almost) no velocity-change alert
    _, quiet = _updates(result, stack, dates)
    changed_px = sum(
        f["properties"]["area_px"]
        for r in quiet
        for f in r.alerts["features"]
        if f["properties"]["kind"] == "velocity_change"
    )
    assert changed_px / result["mask"].size < 0.001
