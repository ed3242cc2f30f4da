"""`mtinsar watch --stac`: a static STAC catalog on disk whose items point at the pairs of a
simulated LiCSAR frame grows between looks; each look ingests what is new, once."""

import json
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio

from mtinsar.io.products import product_root
from mtinsar.results import versions
from mtinsar.simulate import SceneConfig, simulate_scene, write_licsar
from mtinsar.sources import stac

TRACK = 5


def mtinsar(*args):
    cmd = [sys.executable, "-m", "mtinsar", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def frame(tmp_path_factory):
    scene = simulate_scene(SceneConfig(ny=40, nx=50, n_dates=14, seed=7))
    return write_licsar(scene, tmp_path_factory.mktemp("watch") / "frame"), scene


def _pairs(frame: Path) -> list[tuple[str, datetime, datetime, Path]]:
    out = []
    for unw in sorted((frame / "interferograms").rglob("*.geo.unw.tif")):
        label = unw.name.split(".")[0]
        ref, sec = (datetime.strptime(d, "%Y%m%d").replace(tzinfo=UTC) for d in label.split("_"))
        out.append((label, ref, sec, unw))
    return out


def _bbox(frame: Path) -> tuple[float, float, float, float]:
    with rasterio.open(next((frame / "interferograms").rglob("*.geo.unw.tif"))) as src:
        return tuple(src.bounds)


def write_catalog(root: Path, frame: Path, last: np.datetime64, broken: str = "") -> Path:
    """A catalog of the frame's pairs ending on or before `last`, one item each (track 5,
    data asset = its unwrapped phase); pair `broken`'s asset points at a missing file."""
    shutil.rmtree(root, ignore_errors=True)
    box = _bbox(frame)
    ring = [[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]]]
    catalog = pystac.Catalog(id="sim", description="simulated LiCSAR pairs")
    for label, ref, sec, unw in _pairs(frame):
        if np.datetime64(sec.date()) > last:
            continue
        item = pystac.Item(
            id=label,
            geometry={"type": "Polygon", "coordinates": [[*ring, ring[0]]]},
            bbox=list(box),
            datetime=None,
            properties={
                "start_datetime": pystac.utils.datetime_to_str(ref),
                "end_datetime": pystac.utils.datetime_to_str(sec),
                stac.TRACK_KEY: TRACK,
            },
        )
        href = unw.with_name("missing.tif") if label == broken else unw
        item.add_asset("unw", pystac.Asset(str(href), roles=["data"]))
        catalog.add_item(item)
    catalog.normalize_hrefs(str(root))
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return root / "catalog.json"


def test_product_root_is_the_folder_of_the_pairs(frame):
    folder, _ = frame
    label, _, _, unw = _pairs(folder)[0]
    assert product_root(unw, label) == folder / "interferograms"
    hyp3 = "S1AA_{}T054321_{}T054322_VVP012_INT80_G_ueF_1A2B.zip".format(*label.split("_"))
    assert str(product_root(f"s3://b/x/{hyp3}", label)) == "s3://b/x"
    assert product_root(folder / "product.nc", label) == folder


def test_watch_stac_ingests_new_items_once_and_retries_a_broken_one(frame, tmp_path):
    folder, scene = frame
    dates = scene.dates.astype("datetime64[D]")
    results, cat_dir = tmp_path / "results", tmp_path / "catalog"
    end = str(dates[-3])
    assert mtinsar("run", folder, results, "--end-date", end, "-q").returncode == 0
    catalog = write_catalog(cat_dir, folder, dates[-3])
    look = ["watch", results, "--stac", catalog, "--bbox", *_bbox(folder), "--track", TRACK]
    look += ["--once", "-q"]

    quiet = mtinsar(*look)
    assert quiet.returncode == 0, quiet.stderr
    assert "nothing to add" in quiet.stdout and versions.current(results) == 0

    write_catalog(cat_dir, folder, dates[-2])  # the next acquisition's pairs are published
    grown = mtinsar(*look)
    assert grown.returncode == 0, grown.stderr
    assert "version 0 -> 1" in grown.stdout
    assert versions.open_version(results).sizes["time"] == len(dates) - 1
    again = mtinsar(*look)  # the same items again: nothing is ingested twice
    assert again.returncode == 0 and "nothing to add" in again.stdout
    assert versions.versions(results) == [0, 1]

    # the last date arrives with one broken item: the look fails and names it ...
    last_pairs = [p[0] for p in _pairs(folder) if np.datetime64(p[2].date()) == dates[-1]]
    write_catalog(cat_dir, folder, dates[-1], broken=last_pairs[0])
    failed = mtinsar(*look)
    assert failed.returncode == 2 and "missing.tif" in failed.stderr, failed.stderr
    assert versions.current(results) == 1

    # ... and a running watch logs it, keeps looking, and ingests once the item is fixed
    log = tmp_path / "watch.log"
    cmd = [sys.executable, "-m", "mtinsar", *map(str, look[:-2]), "--interval", "1"]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while "retrying later" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert "missing.tif" in log.read_text()
        write_catalog(cat_dir, folder, dates[-1])
        while versions.current(results) != 2 and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert versions.current(results) == 2, log.read_text()
    final = versions.open_version(results)
    assert final.sizes["time"] == len(dates)
    report = json.loads((results / "versions" / "v2" / "update.json").read_text())
    assert [r["date"] for r in report] == [str(dates[-1])]
    assert sorted(report[0]["pairs_used"]) == sorted(last_pairs)

    # the same as updating from the product folder directly
    direct = tmp_path / "direct"
    assert mtinsar("run", folder, direct, "--end-date", end, "-q").returncode == 0
    assert mtinsar("update", direct, folder, "-q").returncode == 0
    np.testing.assert_allclose(
        final["velocity"].values, versions.open_version(direct)["velocity"].values, equal_nan=True
    )
