"""What an update job sends and leaves behind: one POST per webhook per update, after its
version is written, with the alerts of every date it added (the version's alerts.geojson);
none after a quiet update unless `webhook_on_quiet`; the job's storage settings apply inside
the job only."""

import json
import os
import shutil
import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from mtinsar.config import RunConfig
from mtinsar.results import layout, versions
from mtinsar.simulate import SceneConfig, simulate_scene, write_licsar
from mtinsar.sources import remote
from mtinsar.workflows import jobs

#: Every pixel departs by more than k·σ: each new date alerts.
LOUD = {"k_sigma": 1e-3, "highpass_window_px": 0}
#: No pixel can: the dates are quiet.
QUIET = {"k_sigma": 1e3, "velocity_k_sigma": 1e3}


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    """The frame up to dates[-3], [-2] and [-1] (hard-linked copies), and a result folder
    run on the first (all dates but the last 2)."""
    root = tmp_path_factory.mktemp("hooks")
    scene = simulate_scene(SceneConfig(ny=30, nx=40, n_dates=10, seed=3))
    full = write_licsar(scene, root / "full")
    frames = []
    for k in (3, 2, 1):
        frame = root / f"upto{k}"
        shutil.copytree(full, frame, copy_function=os.link)
        late = {str(d).replace("-", "") for d in scene.dates[len(scene.dates) - k + 1 :]}
        for pair in (frame / "interferograms").iterdir():
            if set(pair.name.split("_")) & late:
                shutil.rmtree(pair)
        frames.append(frame)
    results = root / "results"
    jobs.run_to_folder(frames[0], results, RunConfig())
    return scene, frames, results


class _Recorder(BaseHTTPRequestHandler):
    posts: list = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).posts.append((self.path, json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """A webhook receiver on loopback: its base URL and the (path, body) of each POST."""
    _Recorder.posts = []
    httpd = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Recorder.posts
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def _update(stages, tmp_path, frame, nrt):
    """A copy of the result folder updated from `frames[frame]`: (folder, lines)."""
    _, frames, results = stages
    target = tmp_path / "results"
    shutil.copytree(results, target)
    return target, jobs.update_folder(target, frames[frame], RunConfig(nrt=nrt))


def _written(folder):
    return json.loads((layout.version_folder(folder, 1) / layout.ALERTS).read_text())


def test_one_date_is_one_post_per_webhook(stages, tmp_path, server):
    url, posts = server
    scene = stages[0]
    nrt = {**LOUD, "webhooks": [f"{url}/a", f"{url}/b"]}
    folder, lines = _update(stages, tmp_path, 1, nrt)
    assert Counter(path for path, _ in posts) == {"/a": 1, "/b": 1}
    body = posts[0][1]
    assert body["features"] and posts[1][1] == body
    assert {f["properties"]["date"] for f in body["features"]} == {str(scene.dates[-2])}
    assert _written(folder) == body
    assert any("posted to 2/2 webhook(s)" in line for line in lines)


def test_two_dates_are_one_post_with_the_alerts_of_both(stages, tmp_path, server):
    url, posts = server
    scene = stages[0]
    folder, _ = _update(stages, tmp_path, 2, {**LOUD, "webhooks": [f"{url}/a", f"{url}/b"]})
    assert Counter(path for path, _ in posts) == {"/a": 1, "/b": 1}
    body = posts[0][1]
    dates = [f["properties"]["date"] for f in body["features"]]
    assert sorted(set(dates)) == [str(d) for d in scene.dates[-2:]]
    assert [f["properties"]["id"] for f in body["features"]] == list(range(1, len(dates) + 1))
    assert _written(folder) == body
    report = json.loads((layout.version_folder(folder, 1) / layout.UPDATE).read_text())
    assert sum(r["n_alert_areas"] for r in report) == len(dates)


def test_a_quiet_update_posts_nothing(stages, tmp_path, server):
    url, posts = server
    folder, _ = _update(stages, tmp_path, 1, {**QUIET, "webhooks": [f"{url}/a"]})
    assert versions.current(folder) == 1
    assert posts == []
    assert _written(folder) == {"type": "FeatureCollection", "features": []}


def test_a_quiet_update_posts_a_heartbeat_when_asked(stages, tmp_path, server):
    url, posts = server
    nrt = {**QUIET, "webhooks": [f"{url}/a"], "webhook_on_quiet": True}
    _update(stages, tmp_path, 2, nrt)
    assert posts == [("/a", {"type": "FeatureCollection", "features": []})]


def test_a_dead_webhook_never_costs_the_version(stages, tmp_path, server):
    url, posts = server
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/dead"
    nrt = {**LOUD, "webhooks": [dead, f"{url}/a"], "webhook_retries": 0}
    folder, lines = _update(stages, tmp_path, 1, nrt)
    assert versions.current(folder) == 1
    assert versions.open_version(folder).sizes["time"] == stages[0].dates.size - 1
    assert [path for path, _ in posts] == ["/a"]
    assert any("posted to 1/2 webhook(s); failed: " + dead in line for line in lines)


def test_a_job_keeps_its_storage_settings_to_itself(stages, tmp_path, monkeypatch):
    """`cfg.storage` holds inside the job (here: while it reads the products) and the
    process's settings are back after it."""
    monkeypatch.setattr(remote, "_active", None)
    before = remote.current()
    seen = []
    read = jobs.read_source

    def spy(*args, **kwargs):
        seen.append(remote.current().endpoint_url)
        return read(*args, **kwargs)

    monkeypatch.setattr(jobs, "read_source", spy)
    _, frames, results = stages
    target = tmp_path / "results"
    shutil.copytree(results, target)
    cfg = RunConfig(storage={"endpoint_url": "http://127.0.0.1:1"})
    jobs.update_folder(target, frames[1], cfg)
    assert seen == ["http://127.0.0.1:1"]
    assert remote.current() == before
    jobs.run_to_folder(frames[0], tmp_path / "run", cfg)
    assert remote.current() == before
