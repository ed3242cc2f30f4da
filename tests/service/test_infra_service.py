"""The `infra` process end to end through the HTTP API and a worker.

An sbas job on a simulated scene with a subsidence bowl, then an infra job with a railway
crossing the bowl: the results document lists the infra outputs, the segments equal those
of `mtinsar infra` run on the same result, and the segments over the bowl are at risk.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from fastapi.testclient import TestClient

from mtinsar.infra.metrics import AT_RISK_FROM
from mtinsar.service import auth, db
from mtinsar.service.app import create_app
from mtinsar.service.processes import RESULT
from mtinsar.service.settings import ServiceConfig
from mtinsar.service.worker import work
from mtinsar.simulate import SceneConfig, load_truth, simulate_scene, write_licsar
from mtinsar.simulate.infra import segment_truth, write_railway


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    """A noise-free scene (60 x 80 px, 16 dates) whose truth has a bowl of about -100 mm/yr."""
    cfg = SceneConfig.noise_free(ny=60, nx=80, n_dates=16, seed=1)
    return write_licsar(simulate_scene(cfg), tmp_path_factory.mktemp("inbox") / "scene")


@pytest.fixture
def api(tmp_path, database_url, scene):
    """(ServiceConfig, TestClient with a scientist's key) of a fresh service."""
    config = ServiceConfig(
        data_dir=tmp_path / "svc",
        database_url=database_url,
        source_roots=[str(scene.parent)],
        poll_seconds=0.2,
    )
    app = create_app(config)
    with app.state.sessions.begin() as s:
        _, key = auth.create_user(s, "ines", "scientist")
    with TestClient(app, headers={"Authorization": f"Bearer {key}"}) as client:
        yield config, client
    app.state.engine.dispose()


def _run(config: ServiceConfig, client: TestClient, process: str, inputs: dict) -> str:
    """Submit a job over HTTP, have a worker run it, check it succeeded; its id."""
    response = client.post(f"/processes/{process}/execution", json={"inputs": inputs})
    assert response.status_code == 201, response.text
    job_id = response.json()["jobID"]
    assert work(config, max_jobs=1) == 1
    status = client.get(f"/jobs/{job_id}").json()
    assert status["status"] == db.SUCCESSFUL, status
    return job_id


def _features(doc: dict) -> list[dict]:
    return sorted((f["properties"] for f in doc["features"]), key=lambda p: p["segment_id"])


def test_infra_job_matches_the_cli_and_flags_the_bowl(api, scene, tmp_path):
    config, client = api
    sbas_id = _run(config, client, "sbas", {"source": str(scene)})
    railway = write_railway(load_truth(scene), tmp_path / "railway.geojson")
    lines = json.loads(railway.read_text())
    infra_id = _run(config, client, "infra", {"job": sbas_id, "lines": lines})

    results = client.get(f"/jobs/{infra_id}/results").json()
    assert set(results) == {"segments", "report", "summary"}
    assert results["segments"]["type"] == "application/geo+json"
    served = client.get(results["segments"]["href"]).json()
    summary = client.get(results["summary"]["href"]).json()
    assert summary["kind"] == "infra" and summary["job"] == sbas_id
    assert "<html" in client.get(results["report"]["href"]).text.lower()

    # the same analysis as `mtinsar infra` on the sbas job's result folder
    direct = tmp_path / "direct"
    sbas_result = config.job_dir(sbas_id) / RESULT
    cmd = [sys.executable, "-m", "mtinsar", "infra", str(sbas_result), str(railway), str(direct)]
    subprocess.run([*cmd, "-q"], check=True)
    expected = json.loads((direct / "segments.geojson").read_text())
    ours, theirs = _features(served), _features(expected)
    assert len(ours) == len(theirs) == summary["n_segments"] > 20
    for a, b in zip(ours, theirs, strict=True):
        assert a.keys() == b.keys()
        for name, value in a.items():
            if isinstance(value, float):
                np.testing.assert_allclose(value, b[name], rtol=1e-12, equal_nan=True)
            else:
                assert value == b[name], name
    cli_summary = json.loads((direct / "summary.json").read_text())
    for key in ("risk_counts", "segments_at_risk", "max_abs_diff_settlement_mm_yr_100m"):
        assert summary[key] == cli_summary[key]

    # segments whose true median velocity is fast subsidence are at risk; stable ones stable
    seg = gpd.read_file(config.job_dir(infra_id) / RESULT / "segments.gpkg", layer="segments")
    seg = seg.to_crs(summary["metric_crs"])
    truth = segment_truth(load_truth(scene), seg)
    bowl = truth["true_v_median_mm_yr"] < -40
    still = truth["true_v_max_abs_mm_yr"] == 0
    assert bowl.sum() >= 5 and still.sum() >= 5
    assert (seg.loc[bowl, "risk_class"] >= AT_RISK_FROM).all()
    assert (seg.loc[still, "risk_class"] == 0).all()
    assert sorted(seg.loc[seg["risk_class"] >= AT_RISK_FROM, "segment_id"]) == sorted(
        summary["segments_at_risk"]
    )
