"""`mtinsar ingest` and `run` with products and stores on an S3 server on loopback."""

import os
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from mtinsar.simulate import SceneConfig, simulate_scene, write_licsar
from mtinsar.sources import remote
from sources.s3_server import closed_port, make_bucket, moto_s3

BUCKET = "cli-bucket"


@pytest.fixture
def s3(monkeypatch):
    with moto_s3(monkeypatch) as server:
        make_bucket(server, BUCKET)
        yield server


def mtinsar(*args):
    cmd = [sys.executable, "-m", "mtinsar", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=os.environ.copy())


def test_ingest_and_run_from_object_storage(s3, tmp_path):
    frame = write_licsar(
        simulate_scene(SceneConfig.noise_free(ny=40, nx=48, n_dates=10)), tmp_path / "f"
    )
    fs = remote.filesystem(f"s3://{BUCKET}")
    for file in frame.rglob("*"):
        if file.is_file() and "truth.zarr" not in file.parts:
            fs.put_file(str(file), f"{BUCKET}/frame/{file.relative_to(frame).as_posix()}")
    endpoint = ["--endpoint-url", s3.endpoint]
    proc = mtinsar("ingest", f"s3://{BUCKET}/frame", f"s3://{BUCKET}/stack.zarr", *endpoint, "-q")
    assert proc.returncode == 0, proc.stderr
    proc = mtinsar("run", f"s3://{BUCKET}/stack.zarr", tmp_path / "remote", *endpoint, "-q")
    assert proc.returncode == 0, proc.stderr
    proc = mtinsar("run", frame, tmp_path / "local", "-q")
    assert proc.returncode == 0, proc.stderr
    remote_v = xr.open_zarr(tmp_path / "remote" / "timeseries.zarr")["velocity"].values
    local_v = xr.open_zarr(tmp_path / "local" / "timeseries.zarr")["velocity"].values
    np.testing.assert_allclose(remote_v, local_v, atol=1e-7)
    proc = mtinsar("run", f"s3://{BUCKET}/nothing", tmp_path / "x", *endpoint, "-q")
    assert proc.returncode == 2 and f"s3://{BUCKET}/nothing" in proc.stderr


def test_unreachable_endpoint_fails_with_the_url_and_leaves_no_store(monkeypatch, tmp_path):
    """Exit 2, the URL and the endpoint named after the retries, and nothing written."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    endpoint = f"http://127.0.0.1:{closed_port()}"
    out = tmp_path / "out" / "stack.zarr"
    proc = mtinsar("ingest", f"s3://{BUCKET}/frame", out, "--endpoint-url", endpoint, "-q")
    assert proc.returncode == 2, proc.stderr
    assert f"s3://{BUCKET}/frame: unreachable at endpoint {endpoint}" in proc.stderr
    assert not out.exists() and not any(tmp_path.rglob("*.zarr*"))
