"""Results as STAC: the catalog, the collection and items built from a real sbas result."""

import shutil
from pathlib import Path

import pystac
from numpy.testing import assert_allclose
from sqlalchemy import update

from mtinsar.service import auth, db
from mtinsar.service.db import Job

ITEMS = "/stac/collections/results/items"


def _job(config, factory, owner: str, result: Path | None, visibility="private") -> str:
    with factory.begin() as s:
        user, _ = auth.create_user(s, owner, "scientist")
        job = Job(id=f"job{owner}", owner_id=user.id, process_id="sbas", inputs={})
        job.visibility = visibility
        job.status = db.SUCCESSFUL if result else db.ACCEPTED
        s.add(job)
    if result:
        shutil.copytree(result, config.job_dir(job.id) / "result")
    return job.id


def _headers(factory, name: str) -> dict:
    with factory.begin() as s:
        _, key = auth.create_user(s, name, "viewer")
    return {"X-API-Key": key}


def test_item_describes_the_result_footprint_time_and_assets(service, sbas_result):
    config, client, factory = service
    job_id = _job(config, factory, "ann", sbas_result, visibility="public")
    doc = client.get(f"{ITEMS}/{job_id}")
    assert doc.status_code == 200 and doc.headers["content-type"] == "application/geo+json"
    item = pystac.Item.from_dict(doc.json())
    west, south, east, north = item.bbox
    # the grid's outer edges: corner -99.30/19.60, 50 x 40 pixels of 0.001 deg
    assert_allclose([west, east], [-99.30, -99.30 + 50 * 0.001], atol=1e-9)
    assert_allclose([north, south], [19.60, 19.60 - 40 * 0.001], atol=1e-9)
    assert item.geometry["coordinates"][0][0] == [west, south]
    assert item.datetime is None
    assert item.common_metadata.start_datetime.isoformat() == "2019-01-04T00:00:00+00:00"
    assert item.common_metadata.end_datetime.date().isoformat() == "2019-05-04"
    assert item.properties["mtinsar:n_dates"] == 10 and item.properties["mtinsar:n_pairs"] == 26
    assert item.properties["mtinsar:reference"]["date"] == "2019-01-04"
    assert set(item.assets) == {
        "velocity",
        "velocity_std",
        "temporal_coherence",
        "mask",
        "timeseries",
        "report",
    }
    velocity = item.assets["velocity"]
    assert velocity.roles == ["data"] and "cloud-optimized" in velocity.media_type
    assert velocity.href == f"http://testserver/jobs/{job_id}/files/velocity.tif"
    assert client.get(velocity.href).content == (sbas_result / "velocity.tif").read_bytes()
    assert item.assets["timeseries"].media_type == "application/vnd+zarr"
    assert client.get(item.assets["report"].href).headers["content-type"].startswith("text/html")
    rels = {link["rel"]: link["href"] for link in doc.json()["links"]}
    assert rels["collection"].endswith("/stac/collections/results")
    assert rels["self"].endswith(f"{ITEMS}/{job_id}")


def test_catalog_and_collection_follow_what_the_caller_may_read(service, sbas_result):
    config, client, factory = service
    private = _job(config, factory, "ann", sbas_result)
    public = _job(config, factory, "bob", sbas_result, visibility="public")
    _job(config, factory, "cat", None, visibility="public")  # queued: no item
    catalog = client.get("/stac").json()
    assert catalog["type"] == "Catalog" and catalog["id"] == "mtinsar"
    child = [link["href"] for link in catalog["links"] if link["rel"] == "child"]
    assert child == ["http://testserver/stac/collections/results"]
    collection = pystac.Collection.from_dict(client.get("/stac/collections/results").json())
    assert_allclose(collection.extent.spatial.bboxes[0][0], -99.30, atol=1e-9)
    assert collection.extent.temporal.intervals[0][0].year == 2019

    anonymous = client.get(ITEMS).json()
    assert anonymous["type"] == "FeatureCollection"
    assert [f["id"] for f in anonymous["features"]] == [public]
    assert client.get(f"{ITEMS}/{private}").status_code == 404
    with factory.begin() as s:
        s.execute(update(Job).where(Job.id == private).values(visibility="public"))
    assert sorted(f["id"] for f in client.get(ITEMS).json()["features"]) == sorted(
        [private, public]
    )
    viewer = _headers(factory, "vic")
    assert client.get(f"{ITEMS}/jobcat", headers=viewer).status_code == 404


def test_empty_collection_spans_the_globe(service):
    _, client, _ = service
    collection = client.get("/stac/collections/results").json()
    assert collection["extent"]["spatial"]["bbox"] == [[-180.0, -90.0, 180.0, 90.0]]
    assert client.get(ITEMS).json()["features"] == []


def test_a_result_without_cogs_or_dates_still_has_an_item(service, tmp_path):
    config, client, factory = service
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "summary.json").write_text('{"n_dates": 3}')
    job_id = _job(config, factory, "ann", bare, visibility="public")
    item = client.get(f"{ITEMS}/{job_id}").json()
    assert item["geometry"] is None and "bbox" not in item and item["assets"] == {}
    assert item["properties"]["datetime"] == item["properties"]["created"]
    assert item["properties"]["mtinsar:n_dates"] == 3
    collection = client.get("/stac/collections/results").json()
    assert collection["extent"]["temporal"]["interval"][0][0] == item["properties"]["datetime"]
