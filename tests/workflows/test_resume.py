"""Resume: a run killed mid-way and started again redoes nothing done and gives the same result.

Real processes killed with SIGKILL, real checkpoint folders; results compared bit for bit.
"""

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr

from mtinsar.config import load_config
from mtinsar.errors import InputError
from mtinsar.simulate import SceneConfig, simulate_scene, write_licsar
from mtinsar.workflows import pipeline
from mtinsar.workflows.checkpoint import Checkpoint, fingerprint, work_folder
from mtinsar.workflows.execution import executor
from mtinsar.workflows.jobs import run_to_folder

N_REGIONS = 20  # 120 x 150 pixels in 32 x 32 chunks: 4 x 5 regions

CONFIG = """
[ingest]
chunk_size = 32
[execution]
scheduler = "synchronous"  # one region after the other: a kill lands between two
[output]
figures = false
"""


def mtinsar(*args: object, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mtinsar", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def finish(proc: subprocess.Popen) -> str:
    """Wait for `proc`, require success, return its log (stderr)."""
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return err


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("resume")
    frame = write_licsar(simulate_scene(SceneConfig(ny=120, nx=150, n_dates=20)), root / "frame")
    config = root / "run.toml"
    config.write_text(CONFIG)
    return frame, config


@pytest.fixture(scope="module")
def uninterrupted(scene, tmp_path_factory) -> Path:
    frame, config = scene
    out = tmp_path_factory.mktemp("uninterrupted") / "results"
    log = finish(mtinsar("run", frame, out, "--config", config))
    assert "resumed" not in log
    return out


def _velocity(out: Path) -> np.ndarray:
    with rasterio.open(out / "velocity.tif") as src:
        return src.read(1)


def _displacement(out: Path) -> np.ndarray:
    with xr.open_zarr(out / "timeseries.zarr") as ds:
        return ds["displacement"].values


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def _kill_during_inversion(proc: subprocess.Popen, markers: Path) -> set[str]:
    """SIGKILL `proc` once some but not all regions are written; the regions written."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        done = os.listdir(markers) if markers.is_dir() else []
        if 0 < len(done) < N_REGIONS:
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=60)
            return set(os.listdir(markers))
        time.sleep(0.005)
    proc.kill()
    pytest.fail(f"the run ended before it could be killed mid-inversion: {proc.communicate()}")


def test_killed_run_resumes_where_it_stopped_and_gives_the_same_result(
    scene, uninterrupted, tmp_path
):
    frame, config = scene
    out = tmp_path / "results"
    shutil.copytree(uninterrupted, out)  # an earlier result the killed run must not damage
    before = _tree(out)
    work = work_folder(out)
    proc = mtinsar("run", frame, out, "--config", config)
    done = _kill_during_inversion(proc, work / "timeseries.zarr.regions")
    assert proc.returncode == -signal.SIGKILL
    assert _tree(out) == before
    assert 0 < len(done) < N_REGIONS
    chunks = work / "timeseries.zarr" / "velocity" / "c"
    written = {name: (chunks / name.replace("_", "/")).stat().st_mtime_ns for name in done}

    log = finish(mtinsar("run", frame, out, "--config", config))

    for stage in ("statistics", "reference", "closure screening"):
        assert f"stage {stage}: resumed from checkpoint" in log
    n = len(done)
    assert f"{n} of {N_REGIONS} regions resumed from checkpoint" in log
    assert f"computing {N_REGIONS - n} of {N_REGIONS} regions" in log
    # the regions written before the kill are the very files of the result: not rewritten
    chunks = out / "timeseries.zarr" / "velocity" / "c"
    for name, mtime in written.items():
        assert (chunks / name.replace("_", "/")).stat().st_mtime_ns == mtime
    assert np.array_equal(_velocity(out), _velocity(uninterrupted), equal_nan=True)
    assert np.array_equal(_displacement(out), _displacement(uninterrupted), equal_nan=True)
    assert (out / "summary.json").is_file() and not work.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def _checkpoint_only(frame: Path, out: Path, cfg) -> None:
    """What a run killed just before writing `out` leaves: every stage and region saved."""
    stack = pipeline.load_input(frame, cfg)
    work = Checkpoint.open(work_folder(out), fingerprint(str(frame), stack, cfg))
    with executor(cfg.execution):
        pipeline.run_sbas(stack, cfg, store=work.folder / "timeseries.zarr", checkpoint=work)


def test_another_config_does_not_reuse_the_checkpoint(scene, uninterrupted, tmp_path, caplog):
    frame, config = scene
    out = tmp_path / "results"
    other = load_config(config, reference={"radius": 1})  # another reference phase
    _checkpoint_only(frame, out, other)
    caplog.set_level(logging.INFO)
    run_to_folder(str(frame), out, load_config(config))
    assert "not reused (another input, configuration or version): cleared" in caplog.text
    assert "resumed" not in caplog.text
    assert f"computing {N_REGIONS} of {N_REGIONS} regions" in caplog.text
    assert np.array_equal(_velocity(out), _velocity(uninterrupted), equal_nan=True)
    assert not work_folder(out).exists()


def test_fresh_starts_over(scene, uninterrupted, tmp_path):
    frame, config = scene
    out = tmp_path / "results"
    _checkpoint_only(frame, out, load_config(config))
    log = finish(mtinsar("run", frame, out, "--config", config, "--fresh"))
    assert "not reused (--fresh): cleared" in log
    assert "resumed" not in log
    assert f"computing {N_REGIONS} of {N_REGIONS} regions" in log
    assert np.array_equal(_displacement(out), _displacement(uninterrupted), equal_nan=True)


def test_same_config_resumes_everything_and_execution_settings_do_not_matter(
    scene, uninterrupted, tmp_path, caplog
):
    frame, config = scene
    out = tmp_path / "results"
    _checkpoint_only(frame, out, load_config(config))
    caplog.set_level(logging.INFO)
    run_to_folder(str(frame), out, load_config(config, execution={"scheduler": "threads"}))
    assert f"{N_REGIONS} of {N_REGIONS} regions resumed from checkpoint" in caplog.text
    assert f"computing 0 of {N_REGIONS} regions" in caplog.text
    assert np.array_equal(_displacement(out), _displacement(uninterrupted), equal_nan=True)


def test_dropped_pairs_and_corrections_resume_to_the_uninterrupted_result(scene, tmp_path):
    """Pairs dropped by QC (pair table and statistics restored) and an in-memory correction
    after a checkpointed inversion: resumed, the result is the in-memory run's."""
    frame, config = scene
    cfg = load_config(
        config,
        qc={"min_mean_coherence": 0.6, "drop_unchecked": True},
        ramp={"enabled": True},
    )
    stack = pipeline.load_input(frame, cfg)
    with executor(cfg.execution):
        expected = pipeline.run_sbas(stack, cfg)
    assert 0 < int((~expected.pairs["keep"].values.astype(bool)).sum()) < stack.sizes["pair"]
    out = tmp_path / "results"
    _checkpoint_only(frame, out, cfg)
    regions = work_folder(out) / "inversion.zarr.regions"
    for marker in sorted(regions.iterdir())[:3]:  # as if killed before these were written
        marker.unlink()
    summary = run_to_folder(str(frame), out, cfg)
    with xr.open_zarr(out / "timeseries.zarr") as result:
        for name in ("displacement", "velocity", "velocity_std", "mask", "n_valid_pairs"):
            assert np.array_equal(result[name].values, expected.result[name].values, True)
    assert summary["pairs_dropped"] == expected.summary["pairs_dropped"]
    assert summary["corrections"] == expected.summary["corrections"]
    assert (out / "pairs.csv").read_text() == expected.pairs.to_dataframe().to_csv()


def test_a_store_lost_after_the_inversion_is_computed_again(scene, uninterrupted, tmp_path):
    """Killed while the result folder adopted the store: the store is gone, markers stay."""
    frame, config = scene
    out = tmp_path / "results"
    _checkpoint_only(frame, out, load_config(config))
    shutil.rmtree(work_folder(out) / "timeseries.zarr")
    run_to_folder(str(frame), out, load_config(config))
    assert np.array_equal(_displacement(out), _displacement(uninterrupted), equal_nan=True)


def test_regions_written_by_a_distributed_cluster_resume_too(scene, uninterrupted, tmp_path):
    """Region tasks (data, then marker) run on the cluster's worker processes."""
    distributed = pytest.importorskip("distributed")  # a declared dependency: always present
    frame, config = scene
    cfg = load_config(config)
    stack = pipeline.load_input(frame, cfg)
    work = Checkpoint.open(tmp_path / "work", fingerprint(str(frame), stack, cfg))
    store = work.folder / "timeseries.zarr"
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address=None,
        local_directory=str(tmp_path),
    ) as cluster:
        with executor(cfg.execution.model_copy(update={"scheduler": cluster.scheduler_address})):
            pipeline.run_sbas(stack, cfg, store=store, checkpoint=work)
            markers = sorted(work.regions(store).folder.iterdir())
            assert len(markers) == N_REGIONS
            for marker in markers[::2]:
                marker.unlink()
            run = pipeline.run_sbas(stack, cfg, store=store, checkpoint=work)
    assert len(list(work.regions(store).folder.iterdir())) == N_REGIONS
    disp = run.result["displacement"].values
    assert np.array_equal(disp, _displacement(uninterrupted), equal_nan=True)


def test_a_foreign_folder_at_the_work_path_is_left_alone(tmp_path):
    folder = work_folder(tmp_path / "results")
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="no mtinsar work folder"):
        Checkpoint.open(folder, "abc")
    assert (folder / "notes.txt").read_text() == "mine"
    empty = work_folder(tmp_path / "other")
    empty.mkdir()  # what a kill right after creating the folder leaves: taken over
    assert Checkpoint.open(empty, "abc").load("statistics") is None
