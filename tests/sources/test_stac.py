"""STAC search (`mtinsar.sources.stac.search`) against a static catalog on disk and a small
STAC API served on loopback, both listing the pairs of a simulated LiCSAR frame.

Each pair of the simulated frame is one STAC item (time interval ref..sec date, track 5,
the frame's bbox, data asset = its unwrapped-phase file); a copy of every item sits on
another track far away. The expected hrefs are computed from the scene's pair dates.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pystac
import pytest
import rasterio
from s3_server import closed_port

from mtinsar.config import StorageConfig
from mtinsar.errors import InputError
from mtinsar.simulate import SceneConfig, simulate_scene, write_licsar
from mtinsar.sources import remote, stac

TRACK = 5
FAR = (100.0, -40.0, 101.0, -39.0)  # bbox of the copies on the other track


@pytest.fixture(scope="module")
def frame(tmp_path_factory) -> Path:
    cfg = SceneConfig(ny=20, nx=24, n_dates=8, seed=3)
    return write_licsar(simulate_scene(cfg), tmp_path_factory.mktemp("stac") / "frame")


def _pairs(frame: Path) -> list[tuple[str, datetime, datetime, Path]]:
    out = []
    for unw in sorted((frame / "interferograms").rglob("*.geo.unw.tif")):
        label = unw.name.split(".")[0]
        ref, sec = (datetime.strptime(d, "%Y%m%d").replace(tzinfo=UTC) for d in label.split("_"))
        out.append((label, ref, sec, unw))
    return out


def _frame_bbox(frame: Path) -> tuple[float, float, float, float]:
    with rasterio.open(next((frame / "interferograms").rglob("*.geo.unw.tif"))) as src:
        return tuple(src.bounds)


def _items(frame: Path) -> list[pystac.Item]:
    bbox = _frame_bbox(frame)
    items = []
    for track, box, collection in ((TRACK, bbox, "licsar"), (99, FAR, "licsar-far")):
        for label, ref, sec, unw in _pairs(frame):
            item = pystac.Item(
                id=f"{track}_{label}",
                geometry={
                    "type": "Polygon",
                    "coordinates": [
                        [
                            [box[0], box[1]],
                            [box[2], box[1]],
                            [box[2], box[3]],
                            [box[0], box[3]],
                            [box[0], box[1]],
                        ]
                    ],
                },
                bbox=list(box),
                datetime=None,
                properties={
                    "start_datetime": pystac.utils.datetime_to_str(ref),
                    "end_datetime": pystac.utils.datetime_to_str(sec),
                    stac.TRACK_KEY: track,
                },
                collection=collection,
            )
            item.add_asset("unw", pystac.Asset(str(unw), roles=["data"]))
            items.append(item)
    return items


def _expected(frame: Path, start: str, end: str) -> list[str]:
    """unw files of the pairs whose interval meets start..end (inclusive days)."""
    t0 = datetime.fromisoformat(start).replace(tzinfo=UTC)
    t1 = datetime.fromisoformat(end).replace(tzinfo=UTC, hour=23, minute=59)
    return [
        str(unw)
        for _, ref, sec, unw in sorted(_pairs(frame), key=lambda p: (p[1], p[0]))
        if ref <= t1 and t0 <= sec
    ]


def _window(frame: Path) -> tuple[str, str]:
    """A date range that keeps some pairs and drops others."""
    dates = sorted({p[1] for p in _pairs(frame)} | {p[2] for p in _pairs(frame)})
    return dates[2].date().isoformat(), dates[3].date().isoformat()


@pytest.fixture(scope="module")
def static_catalog(frame, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("catalog")
    catalog = pystac.Catalog(id="sim", description="simulated LiCSAR pairs")
    for collection_id in ("licsar", "licsar-far"):
        sub = pystac.Catalog(id=collection_id, description=collection_id)
        for item in _items(frame):
            if item.collection_id == collection_id:
                sub.add_item(item)
        catalog.add_child(sub)
    catalog.normalize_hrefs(str(root))
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return root / "catalog.json"


class _StacApi(BaseHTTPRequestHandler):
    """Landing page + /search (GET and POST) of a minimal STAC API: bbox, datetime and
    collections filtered here, one page, no other parameter understood."""

    items: list[dict] = []
    base = ""

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _send(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/geo+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path in ("", "/"):
            self._send(self._landing())
        elif parts.path == "/search":
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if "bbox" in query:
                query["bbox"] = [float(v) for v in query["bbox"].split(",")]
            if "collections" in query:
                query["collections"] = query["collections"].split(",")
            self._send(self._search(query))
        else:
            self.send_error(404)

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/search":
            self.send_error(404)
            return
        length = int(self.headers.get("Content-Length", 0))
        self._send(self._search(json.loads(self.rfile.read(length) or b"{}")))

    def _landing(self) -> dict:
        return {
            "type": "Catalog",
            "stac_version": "1.0.0",
            "id": "sim-api",
            "description": "test STAC API",
            "conformsTo": [
                "https://api.stacspec.org/v1.0.0/core",
                "https://api.stacspec.org/v1.0.0/item-search",
            ],
            "links": [
                {"rel": "self", "href": f"{self.base}/", "type": "application/json"},
                {"rel": "root", "href": f"{self.base}/", "type": "application/json"},
                {
                    "rel": "search",
                    "href": f"{self.base}/search",
                    "type": "application/geo+json",
                    "method": "GET",
                },
                {
                    "rel": "search",
                    "href": f"{self.base}/search",
                    "type": "application/geo+json",
                    "method": "POST",
                },
            ],
        }

    def _search(self, query: dict) -> dict:
        feats = []
        t0 = t1 = None
        if query.get("datetime"):
            lo, _, hi = str(query["datetime"]).partition("/")
            t0 = pystac.utils.str_to_datetime(lo) if lo not in ("", "..") else None
            t1 = pystac.utils.str_to_datetime(hi) if hi not in ("", "..") else None
        for item in self.items:
            b, props = item["bbox"], item["properties"]
            if "bbox" in query:
                q = query["bbox"]
                if not (b[0] <= q[2] and q[0] <= b[2] and b[1] <= q[3] and q[1] <= b[3]):
                    continue
            if query.get("collections") and item["collection"] not in query["collections"]:
                continue
            first = pystac.utils.str_to_datetime(props["start_datetime"])
            last = pystac.utils.str_to_datetime(props["end_datetime"])
            if (t1 is not None and first > t1) or (t0 is not None and last < t0):
                continue
            feats.append(item)
        return {"type": "FeatureCollection", "features": feats, "links": []}


@pytest.fixture(scope="module")
def stac_api(frame):
    handler = type("Handler", (_StacApi,), {"items": [i.to_dict() for i in _items(frame)]})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield handler.base
    server.shutdown()
    server.server_close()


@pytest.fixture(params=["static", "api"])
def catalog(request, static_catalog, stac_api) -> str:
    return str(static_catalog) if request.param == "static" else stac_api


def test_search_by_bbox_dates_and_track(catalog, frame):
    start, end = _window(frame)
    expected = _expected(frame, start, end)
    assert 0 < len(expected) < len(_pairs(frame))  # the date filter drops some pairs
    hrefs = stac.search(catalog, _frame_bbox(frame), start, end, track=TRACK)
    assert hrefs == expected


def test_search_whole_period_without_track_finds_both_tracks(catalog, frame):
    world = (-180.0, -90.0, 180.0, 90.0)
    hrefs = stac.search(catalog, world, "2000-01-01", "2100-01-01")
    n = len(_pairs(frame))
    assert len(hrefs) == 2 * n
    assert sorted(set(hrefs)) == sorted(str(p[3]) for p in _pairs(frame))


def test_search_filters_track_collection_and_bbox(catalog, frame):
    world = (-180.0, -90.0, 180.0, 90.0)
    n = len(_pairs(frame))
    assert len(stac.search(catalog, world, "2000-01-01", "2100-01-01", track=99)) == n
    assert len(stac.search(catalog, world, "2000-01-01", "2100-01-01", track=7)) == 0
    far = stac.search(catalog, world, "2000-01-01", "2100-01-01", collections=["licsar-far"])
    assert len(far) == n
    near_far = (FAR[0] + 0.2, FAR[1] + 0.2, FAR[0] + 0.3, FAR[1] + 0.3)
    assert len(stac.search(catalog, near_far, "2000-01-01", "2100-01-01", track=TRACK)) == 0


def test_found_products_are_readable(stac_api, frame):
    """The hrefs are the products themselves: the pair folders a reader opens."""
    start, end = _window(frame)
    hrefs = stac.search(stac_api, _frame_bbox(frame), start, end, track=TRACK)
    for href in hrefs:
        with rasterio.open(href) as src:
            assert np.isfinite(src.read(1)).all()


def test_bad_inputs_name_the_catalog(tmp_path, monkeypatch):
    with pytest.raises(InputError, match=r"missing\.json: no such STAC catalog file"):
        stac.search(tmp_path / "missing.json", (0, 0, 1, 1), "2020-01-01", "2020-02-01")
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "nothing"}')
    with pytest.raises(InputError, match=r"bad\.json: not a valid STAC catalog"):
        stac.search(bad, (0, 0, 1, 1), "2020-01-01", "2020-02-01")
    with pytest.raises(InputError, match="bbox"):
        stac.search(bad, (1, 0, 0, 1), "2020-01-01", "2020-02-01")
    with pytest.raises(InputError, match="start 2020-03-01 is after end"):
        stac.search(bad, (0, 0, 1, 1), "2020-03-01", "2020-02-01")
    monkeypatch.setattr(remote, "_active", StorageConfig(retries=2, backoff_s=0.1))
    url = f"http://127.0.0.1:{closed_port()}/stac"
    with pytest.raises(InputError, match=rf"{url}: unreachable after 2 attempts"):
        stac.search(url, (0, 0, 1, 1), "2020-01-01", "2020-02-01")


def test_search_command_prints_the_hrefs(catalog, frame):
    start, end = _window(frame)
    west, south, east, north = _frame_bbox(frame)
    cmd = [sys.executable, "-m", "mtinsar", "search", catalog, "--bbox", str(west), str(south)]
    cmd += [str(east), str(north), "--start", start, "--end", end, "--track", str(TRACK)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == _expected(frame, start, end)
    bad = subprocess.run([*cmd[:4], "/nowhere/catalog.json", *cmd[5:]], capture_output=True)
    assert bad.returncode == 2 and b"/nowhere/catalog.json" in bad.stderr
