"""The OGC API - Processes endpoints on SQLite and PostgreSQL: documents, jobs, errors, files."""

import shutil
from pathlib import Path

from sqlalchemy import update

from mtinsar.analysis import jax_backend
from mtinsar.service import auth, db
from mtinsar.service.app import CONFORMANCE
from mtinsar.service.db import Job
from mtinsar.service.schemas import OGC_EXC


def _key(factory, name: str, role: str = "scientist", quota: float | None = None) -> dict:
    with factory.begin() as s:
        _, key = auth.create_user(s, name, role, quota)
    return {"Authorization": f"Bearer {key}"}


def _succeed(config, factory, job_id: str, result: Path) -> None:
    """Mark a job successful with `result` as its result folder (what a worker would do)."""
    shutil.copytree(result, config.job_dir(job_id) / "result")
    with factory.begin() as s:
        s.execute(update(Job).where(Job.id == job_id).values(status=db.SUCCESSFUL, progress=100))


def _submit(client, headers, config) -> dict:
    source = str(config.data_dir / "inbox" / "frame")
    answer = client.post(
        "/processes/sbas/execution", json={"inputs": {"source": source}}, headers=headers
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_landing_page_is_json_for_clients_and_the_map_for_browsers(service):
    _, client, _ = service
    for headers, params in (({}, {}), ({"Accept": "application/json"}, {}), ({}, {"f": "json"})):
        page = client.get("/", headers=headers, params=params)
        assert page.headers["content-type"] == "application/json"
        rels = {link["rel"]: link["href"] for link in page.json()["links"]}
        assert rels["service-desc"].endswith("/openapi.json")
        assert rels["http://www.opengis.net/def/rel/ogc/1.0/conformance"].endswith("/conformance")
        assert rels["data"].endswith("/stac")
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    for headers, params in (({"Accept": browser}, {}), ({}, {"f": "html"})):
        page = client.get("/", headers=headers, params=params)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert client.get("/", params={"f": "xml"}).status_code == 400


def test_conformance_and_process_documents(service):
    _, client, _ = service
    assert client.get("/conformance").json()["conformsTo"] == CONFORMANCE
    listed = client.get("/processes").json()
    assert [p["id"] for p in listed["processes"]] == ["sbas", "update", "infra"]
    assert all("inputs" not in p for p in listed["processes"])
    sbas = client.get("/processes/sbas").json()
    assert sbas["jobControlOptions"] == ["async-execute"]
    assert sbas["inputs"]["source"]["minOccurs"] == 1
    assert sbas["outputs"]["velocity"]["schema"]["contentMediaType"].startswith("image/tiff")
    execute = [link for link in sbas["links"] if link["rel"].endswith("/execute")]
    assert execute[0]["href"].endswith("/processes/sbas/execution")


def test_unknown_process_is_an_ogc_404(service):
    _, client, factory = service
    for answer in (
        client.get("/processes/nope"),
        client.post("/processes/nope/execution", json={"inputs": {}}, headers=_key(factory, "a")),
    ):
        assert answer.status_code == 404
        body = answer.json()
        assert body["type"] == OGC_EXC + "no-such-process"
        assert body["status"] == 404 and "nope" in body["detail"] and body["title"]


def test_bad_inputs_are_refused_with_400_naming_the_input(service, tmp_path):
    config, client, factory = service
    headers = _key(factory, "ann")
    inbox = str(config.data_dir / "inbox" / "frame")
    cases = {
        "source": {},
        str(tmp_path): {"source": str(tmp_path)},  # outside the allowed roots
        "ingest.chunk_size": {"source": inbox, "config": {"ingest": {"chunk_size": -5}}},
        "bogus": {"source": inbox, "bogus": 1},
        # files named in the config are held to the same roots as the source
        "ingest.dem": {"source": inbox, "config": {"ingest": {"dem": "/etc/passwd"}}},
        "ingest.polygon": {"source": inbox, "config": {"ingest": {"polygon": "/etc/hosts"}}},
        "external.directory": {
            "source": inbox,
            "config": {"external": {"enabled": True, "directory": str(tmp_path)}},
        },
    }
    for named, inputs in cases.items():
        answer = client.post("/processes/sbas/execution", json={"inputs": inputs}, headers=headers)
        assert answer.status_code == 400, answer.text
        assert named in answer.json()["detail"]
    answer = client.post("/processes/sbas/execution", content=b"{", headers=headers)
    assert answer.status_code == 400 and answer.json()["status"] == 400


def test_the_jax_backend_is_refused_with_400_where_jax_is_missing(service, monkeypatch):
    config, client, factory = service
    monkeypatch.setattr(jax_backend, "available", lambda: False)
    inputs = {
        "source": str(config.data_dir / "inbox" / "frame"),
        "config": {"inversion": {"backend": "jax"}},
    }
    answer = client.post(
        "/processes/sbas/execution", json={"inputs": inputs}, headers=_key(factory, "ann")
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["detail"] == jax_backend.MISSING


def test_execute_queues_an_async_job_and_lists_it(service):
    config, client, factory = service
    headers = _key(factory, "ann")
    info = _submit(client, headers, config)
    assert info["status"] == "accepted" and info["processID"] == "sbas" and info["progress"] == 0
    assert info["type"] == "process" and info["created"].endswith("Z")
    answer = client.get(f"/jobs/{info['jobID']}", headers=headers)
    assert answer.json() == info
    listed = client.get("/jobs", headers=headers).json()["jobs"]
    assert [j["jobID"] for j in listed] == [info["jobID"]]
    assert client.get("/jobs", params={"status": "successful"}, headers=headers).json() == {
        "jobs": [],
        "links": [
            {
                "href": "http://testserver/jobs",
                "rel": "self",
                "type": "application/json",
                "title": "",
            }
        ],
    }
    assert (
        len(client.get("/jobs?processID=sbas&status=accepted", headers=headers).json()["jobs"]) == 1
    )
    assert client.get("/jobs?processID=infra", headers=headers).json()["jobs"] == []


def test_location_header_and_results_not_ready(service):
    config, client, factory = service
    headers = _key(factory, "ann")
    source = str(config.data_dir / "inbox" / "frame")
    answer = client.post(
        "/processes/sbas/execution", json={"inputs": {"source": source}}, headers=headers
    )
    job_id = answer.json()["jobID"]
    assert answer.headers["location"] == f"http://testserver/jobs/{job_id}"
    results = client.get(f"/jobs/{job_id}/results", headers=headers)
    assert results.status_code == 404
    assert results.json()["type"] == OGC_EXC + "result-not-ready"


def test_dismiss_cancels_a_queued_job(service):
    config, client, factory = service
    headers = _key(factory, "ann")
    job_id = _submit(client, headers, config)["jobID"]
    other = _key(factory, "bob")
    assert client.delete(f"/jobs/{job_id}", headers=other).status_code == 404
    answer = client.delete(f"/jobs/{job_id}", headers=headers)
    assert answer.status_code == 200 and answer.json()["status"] == "dismissed"
    assert client.get(f"/jobs/{job_id}", headers=headers).json()["status"] == "dismissed"


def test_dismiss_removes_a_finished_jobs_results(service, sbas_result):
    config, client, factory = service
    headers = _key(factory, "ann")
    job_id = _submit(client, headers, config)["jobID"]
    _succeed(config, factory, job_id, sbas_result)
    assert client.get(f"/jobs/{job_id}/files/velocity.tif", headers=headers).status_code == 200
    answer = client.delete(f"/jobs/{job_id}", headers=headers)
    assert answer.status_code == 200 and answer.json()["status"] == "dismissed"
    assert not (config.job_dir(job_id) / "result").exists()
    assert client.get(f"/jobs/{job_id}/results", headers=headers).status_code == 404


def test_results_document_and_files_with_ranges(service, sbas_result):
    config, client, factory = service
    headers = _key(factory, "ann")
    job_id = _submit(client, headers, config)["jobID"]
    _succeed(config, factory, job_id, sbas_result)
    results = client.get(f"/jobs/{job_id}/results", headers=headers).json()
    assert set(results) == {
        "velocity",
        "velocity_std",
        "temporal_coherence",
        "mask",
        "timeseries",
        "report",
        "summary",
    }
    velocity = results["velocity"]
    assert velocity["type"] == "image/tiff; application=geotiff; profile=cloud-optimized"
    whole = client.get(velocity["href"], headers=headers)
    assert whole.content == (sbas_result / "velocity.tif").read_bytes()
    part = client.get(velocity["href"], headers={**headers, "Range": "bytes=0-15"})
    assert part.status_code == 206 and part.content == whole.content[:16]
    head = client.head(velocity["href"], headers=headers)
    assert head.status_code == 200 and int(head.headers["content-length"]) == len(whole.content)
    zarr = client.get(f"/jobs/{job_id}/files/timeseries.zarr/zarr.json", headers=headers)
    assert zarr.status_code == 200 and zarr.json()["zarr_format"] == 3
    for bad in ("../../mtinsar.db", "..%2F..%2Fmtinsar.db", "timeseries.zarr", "nope.tif"):
        answer = client.get(f"/jobs/{job_id}/files/{bad}", headers=headers)
        assert answer.status_code == 404, bad
    (config.data_dir / "secret.txt").write_text("not for you")
    (config.job_dir(job_id) / "result" / "link.txt").symlink_to(config.data_dir / "secret.txt")
    for escape in ("..%2F..%2F..%2Fsecret.txt", "link.txt"):
        answer = client.get(f"/jobs/{job_id}/files/{escape}", headers=headers)
        assert answer.status_code == 404 and "no file" in answer.json()["detail"], escape
    status = client.get(f"/jobs/{job_id}", headers=headers).json()
    assert any(link["href"].endswith(f"/jobs/{job_id}/results") for link in status["links"])


def test_update_and_infra_need_a_successful_sbas_job_of_the_caller(service, sbas_result):
    config, client, factory = service
    ann, bob = _key(factory, "ann"), _key(factory, "bob")
    source = str(config.data_dir / "inbox" / "frame")
    queued = _submit(client, ann, config)["jobID"]

    def update(job_id, headers):
        inputs = {"job": job_id, "source": source}
        return client.post("/processes/update/execution", json={"inputs": inputs}, headers=headers)

    assert update("nope", ann).status_code == 404
    assert update(queued, ann).status_code == 400 and "sbas" in update(queued, ann).json()["detail"]
    _succeed(config, factory, queued, sbas_result)
    assert update(queued, bob).status_code == 404  # private: bob cannot even see it
    client.put(f"/jobs/{queued}/access", json={"visibility": "public"}, headers=ann)
    assert update(queued, bob).status_code == 403  # bob may read it, not change it
    lines = {"type": "FeatureCollection", "features": []}
    infra = client.post(
        "/processes/infra/execution",
        json={"inputs": {"job": queued, "lines": lines}},
        headers=bob,
    )
    assert infra.status_code == 201, infra.text
    assert update(queued, ann).status_code == 201


def test_openapi_declares_both_key_schemes(service):
    _, client, _ = service
    doc = client.get("/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["apiKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schemes["bearer"]["scheme"] == "bearer"
    execute = doc["paths"]["/processes/{process_id}/execution"]["post"]
    assert {"apiKey": []} in execute["security"] and "429" in execute["responses"]


def test_odd_characters_in_ids_are_plain_404s(service):
    _, client, factory = service
    headers = _key(factory, "ann")
    for path in ("/jobs/a%00b", "/jobs/%F0%9F%92%A5", "/stac/collections/results/items/a%00"):
        answer = client.get(path, headers=headers)
        assert answer.status_code == 404, (path, answer.text)
    answer = client.get("/jobs", params={"processID": "a\x00b"}, headers=headers)
    assert answer.status_code == 200 and answer.json()["jobs"] == []


def test_qualified_input_values_are_understood(service):
    config, client, factory = service
    source = str(config.data_dir / "inbox" / "frame")
    inputs = {"source": {"value": source, "mediaType": "text/plain"}}
    answer = client.post(
        "/processes/sbas/execution", json={"inputs": inputs}, headers=_key(factory, "ann")
    )
    assert answer.status_code == 201, answer.text
    with factory() as s:
        assert s.get(Job, answer.json()["jobID"]).inputs["source"] == source
