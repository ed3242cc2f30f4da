"""Workers run jobs in child processes: results, progress, CPU accounting, cancel, lost workers."""

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr
from sqlalchemy import select

from mtinsar.service import auth, db, queue
from mtinsar.service.processes import PROCESSES, RESULT
from mtinsar.service.settings import ServiceConfig
from mtinsar.service.worker import work
from mtinsar.simulate import SceneConfig, load_truth, simulate_scene, write_licsar


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    cfg = SceneConfig.noise_free(ny=40, nx=50, n_dates=10)
    return write_licsar(simulate_scene(cfg), tmp_path_factory.mktemp("inbox") / "scene")


def _service(tmp_path, database_url, scene, **extra) -> ServiceConfig:
    return ServiceConfig(
        data_dir=tmp_path / "service",
        database_url=database_url,
        source_roots=[str(scene.parent)],
        poll_seconds=0.2,
        **extra,
    )


def _submit(factory, config, scene, user="ann", quota=None, **inputs):
    with factory.begin() as s:
        owner, _ = auth.create_user(s, user, "scientist", quota)
        checked = PROCESSES["sbas"].check({"source": str(scene), **inputs}, config)
        job = queue.submit(s, owner, "sbas", checked)
    return job.id


def _wait(factory, job_id, until, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with factory() as s:
            job = s.get(db.Job, job_id)
            if until(job):
                return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} stuck: {job.status} {job.progress}% {job.message}")


def test_worker_runs_a_job_to_the_same_result_as_the_cli(tmp_path, database_url, factory, scene):
    config = _service(tmp_path, database_url, scene)
    job_id = _submit(factory, config, scene)
    assert work(config, max_jobs=1) == 1
    with factory() as s:
        job, user = s.get(db.Job, job_id), s.scalars(select(db.User)).one()
        assert (job.status, job.progress, job.attempts) == (db.SUCCESSFUL, 100, 1)
        assert job.cpu_seconds > 0.5 and user.cpu_seconds_used == pytest.approx(job.cpu_seconds)
        assert job.outputs["summary"]["n_dates"] == 10
    cli = tmp_path / "cli"
    subprocess.run([sys.executable, "-m", "mtinsar", "run", str(scene), str(cli), "-q"], check=True)
    served = xr.open_dataarray(config.job_dir(job_id) / RESULT / "velocity.tif").values
    direct = xr.open_dataarray(cli / "velocity.tif").values
    np.testing.assert_array_equal(served, direct)
    truth = load_truth(scene)["velocity"].values
    ok = np.isfinite(served[0])
    assert np.sqrt(np.mean((served[0][ok] - truth[ok]) ** 2)) < 1e-4  # m/yr: a real result
    assert (config.job_dir(job_id) / "job.log").read_text().count("stage inversion") == 1


def test_a_failing_job_says_why_and_is_charged(tmp_path, database_url, factory, scene):
    config = _service(tmp_path, database_url, scene)
    empty = scene.parent / "empty"
    empty.mkdir(exist_ok=True)
    job_id = _submit(factory, config, empty)
    work(config, max_jobs=1)
    with factory() as s:
        job = s.get(db.Job, job_id)
    assert job.status == db.FAILED and job.message.startswith("failed: ")
    assert "empty" in job.message and "internal error" not in job.message
    assert not (config.job_dir(job_id) / RESULT).exists()


def test_cancelling_a_running_job_stops_its_process(tmp_path, database_url, factory, scene):
    config = _service(tmp_path, database_url, scene, lease_seconds=1.5)
    job_id = _submit(factory, config, scene)  # cancelled while its process starts up
    stop = threading.Event()
    thread = threading.Thread(target=work, args=(config,), kwargs={"stop": stop})
    thread.start()
    try:
        _wait(factory, job_id, lambda j: j.status == db.RUNNING)
        with factory.begin() as s:
            queue.cancel(s, s.get(db.Job, job_id))
        job = _wait(factory, job_id, lambda j: j.status in db.FINISHED, timeout=30)
    finally:
        stop.set()
        thread.join()
    assert job.status == db.DISMISSED and "cancelled" in job.message
    assert not (config.job_dir(job_id) / RESULT).exists()


def test_a_killed_worker_job_is_finished_by_another(tmp_path, database_url, factory, scene):
    config = _service(tmp_path, database_url, scene)
    job_id = _submit(factory, config, scene)
    cmd = [sys.executable, "-m", "mtinsar", "worker", "--data", str(config.data_dir)]
    cmd += ["--db", config.url, "--lease", "2", "--source-root", str(scene.parent)]
    first = subprocess.Popen(cmd, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait(factory, job_id, lambda j: j.status == db.RUNNING, timeout=60)
        time.sleep(1.0)  # let its child start the job
        os.kill(first.pid, signal.SIGKILL)  # no goodbye: only the lease can tell
        first.wait()
        job = _wait(factory, job_id, lambda j: j.lease_expires_at is not None, timeout=5)
        assert job.status == db.RUNNING  # still claimed by the dead worker
        assert work(config.model_copy(update={"lease_seconds": 2.0}), max_jobs=1) == 1
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    with factory() as s:
        job = s.get(db.Job, job_id)
    assert (job.status, job.attempts) == (db.SUCCESSFUL, 2), job.message
    assert xr.open_dataarray(config.job_dir(job_id) / RESULT / "velocity.tif").notnull().any()
