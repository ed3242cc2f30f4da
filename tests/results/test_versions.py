"""`mtinsar update` and the versions of a result folder."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from mtinsar.errors import InputError
from mtinsar.results import versions
from mtinsar.simulate import SceneConfig, simulate_scene, write_licsar


def mtinsar(*args):
    cmd = [sys.executable, "-m", "mtinsar", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """The full frame, and a copy without the pairs touching its last 2 dates."""
    root = tmp_path_factory.mktemp("nrt")
    scene = simulate_scene(SceneConfig(ny=60, nx=80, n_dates=20, seed=5))
    full = write_licsar(scene, root / "full")
    old = root / "old"
    shutil.copytree(full, old)
    last = {str(d).replace("-", "") for d in scene.dates[-2:]}
    for pair in (old / "interferograms").iterdir():
        if set(pair.name.split("_")) & last:
            shutil.rmtree(pair)
    return full, old, scene


def test_update_appends_dates_as_a_new_version_close_to_a_full_run(frames, tmp_path):
    full, old, scene = frames
    results = tmp_path / "results"
    assert mtinsar("run", old, results, "-q").returncode == 0
    proc = mtinsar("update", results, full, "-q")
    assert proc.returncode == 0, proc.stderr
    assert "version 0 -> 1" in proc.stdout
    assert versions.versions(results) == [0, 1] and versions.current(results) == 1
    updated = versions.open_version(results)
    assert updated.sizes["time"] == 20 and versions.open_version(results, 0).sizes["time"] == 18
    ref = updated.attrs["reference_lon"], updated.attrs["reference_lat"]
    rerun = tmp_path / "rerun"
    args = ["--ref-lon", ref[0], "--ref-lat", ref[1], "-q"]
    assert mtinsar("run", full, rerun, *args).returncode == 0
    full_v = xr.open_zarr(rerun / "timeseries.zarr")["velocity"].values
    mask = updated["mask"].values & np.isfinite(full_v)
    rms = np.sqrt(np.mean((updated["velocity"].values[mask] - full_v[mask]) ** 2))
    assert rms < 0.0005, rms  # 0.5 mm/yr (issue #6)
    report = json.loads((results / "versions" / "v1" / "update.json").read_text())
    assert [r["date"] for r in report] == [str(d) for d in scene.dates[-2:]]
    again = mtinsar("update", results, full, "-q")
    assert again.returncode == 0 and "nothing to add" in again.stdout
    assert versions.current(results) == 1
    listed = mtinsar("versions", results).stdout.splitlines()
    assert [line.split()[0] for line in listed] == ["v0", "*"]  # v1 marked current
    assert "18 dates" in listed[0] and "update" in listed[1] and "20 dates" in listed[1]
    old_store = listed[0].split()[-1]  # any command reads an earlier version from its store
    assert versions.open_result(old_store).sizes["time"] == 18


def test_a_failed_version_write_leaves_the_current_one(tmp_path):
    folder = tmp_path / "r"
    (folder / versions.STORE).mkdir(parents=True)

    def crash(tmp):
        (tmp / "half-written").write_text("x")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        versions.write_version(folder, crash)
    assert versions.current(folder) == 0 and versions.versions(folder) == [0]
    assert list((folder / "versions").iterdir()) == []
    assert versions.write_version(folder, lambda tmp: (tmp / versions.STORE).mkdir()) == 1
    assert versions.current(folder) == 1
    with pytest.raises(InputError, match="no version 7"):
        versions.store_path(folder, 7)


def test_update_killed_at_any_moment_leaves_a_readable_current_version(frames, tmp_path):
    """SIGKILL `mtinsar update` at spread-out moments of its run: whenever it dies, the
    current version opens whole (18 dates before the switch, 20 after); a rerun finishes."""
    import signal
    import time

    full, old, _ = frames
    results = tmp_path / "results"
    assert mtinsar("run", old, results, "-q").returncode == 0
    start = time.perf_counter()
    probe = tmp_path / "probe"
    shutil.copytree(results, probe)
    assert mtinsar("update", probe, full, "-q").returncode == 0
    duration = time.perf_counter() - start
    cmd = [sys.executable, "-m", "mtinsar", "update", str(results), str(full), "-q"]
    for fraction in (0.5, 0.7, 0.8, 0.9, 0.95, 0.99):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(fraction * duration)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        n_dates = versions.open_version(results).sizes["time"]
        assert (versions.current(results), n_dates) in ((0, 18), (1, 20))
        if versions.current(results) == 1:
            break
    if versions.current(results) == 0:
        assert mtinsar("update", results, full, "-q").returncode == 0
    assert versions.current(results) == 1
    assert versions.open_version(results)["displacement"].shape[0] == 20


def test_watch_is_idempotent_and_restartable(frames, tmp_path):
    """An inbox that grows: each look adds only what is new; looking again adds nothing."""
    full, old, _ = frames
    results = tmp_path / "results"
    inbox = tmp_path / "inbox"
    shutil.copytree(old, inbox)
    assert mtinsar("run", inbox, results, "-q").returncode == 0
    quiet = mtinsar("watch", results, inbox, "--once", "-q")
    assert quiet.returncode == 0 and "nothing to add" in quiet.stdout
    assert versions.current(results) == 0
    shutil.rmtree(inbox / "interferograms")
    shutil.copytree(full / "interferograms", inbox / "interferograms")  # new pairs arrive
    grown = mtinsar("watch", results, inbox, "--once", "-q")
    assert grown.returncode == 0 and "version 0 -> 1" in grown.stdout
    again = mtinsar("watch", results, inbox, "--once", "-q")  # a restart sees nothing new
    assert again.returncode == 0 and "nothing to add" in again.stdout
    assert versions.current(results) == 1 and versions.versions(results) == [0, 1]


def _frame_without(full, target, dates):
    """A copy of the frame `full` without the pairs touching `dates` (YYYYMMDD)."""
    shutil.copytree(full, target)
    for pair in (target / "interferograms").iterdir():
        if set(pair.name.split("_")) & dates:
            shutil.rmtree(pair)
    return target


def test_update_versions_are_layers_that_compose_to_the_updated_result(frames, tmp_path):
    """Each update's store holds only its new date, the history's low-rank correction and
    the changed layers; opened, it equals the result the update computed in memory, and
    the version below it still reads as it was."""
    from mtinsar import nrt
    from mtinsar.config import RunConfig
    from mtinsar.workflows import jobs as workflow

    full, old, scene = frames
    cfg = RunConfig()
    results = tmp_path / "results"
    workflow.run_to_folder(old, results, cfg)
    last = str(scene.dates[-1]).replace("-", "")
    middle = _frame_without(full, tmp_path / "middle", {last})
    base = versions.open_version(results).load()
    expected, _ = nrt.update(
        base, workflow.read_source(middle, cfg, after=base["time"].values[-1]).load(), cfg
    )
    workflow.update_folder(results, middle, cfg)
    layer = xr.open_zarr(versions.store_path(results, 1))
    assert "displacement" not in layer and layer.sizes["added_time"] == 1
    assert "mask" not in layer and "velocity" in layer  # unchanged layers are inherited
    assert layer.attrs[versions.BASE_ATTR] == "../../../timeseries.zarr"
    root = xr.open_zarr(results / versions.STORE)["displacement"].encoding["chunks"]
    assert layer["history_delta"].encoding["chunks"][1:] == root[1:]  # the cube's blocks
    assert layer["velocity"].encoding["chunks"] == layer["velocity"].shape  # maps whole
    v1 = versions.open_version(results, 1).load()
    moved = np.nanmax(np.abs(v1["displacement"].values[:-1] - base["displacement"].values))
    assert moved > 1e-5  # the exact step corrected the history ...
    error = np.nanmax(np.abs(v1["displacement"].values - expected["displacement"].values))
    assert error < 1e-7, error  # ... and the layer reproduces it to float32 rounding
    for name in ("velocity", "velocity_std", "model_residual", "mask", "nrt_network"):
        np.testing.assert_array_equal(v1[name].values, expected[name].values)

    workflow.update_folder(results, full, cfg)
    assert versions.layers_below(versions.store_path(results, 2)) == 2
    v2 = versions.open_version(results).load()
    assert v2.sizes["time"] == 20 and versions.open_version(results, 1).sizes["time"] == 19
    np.testing.assert_array_equal(
        versions.open_version(results, 1)["displacement"], v1["displacement"]
    )
    monkey = pytest.MonkeyPatch()
    for limit in (versions._WHOLE_BYTES, 0):  # an update's open: layers whole, or by blocks
        monkey.setattr(versions, "_WHOLE_BYTES", limit)
        cached = versions.open_version(results, cached=True)
        np.testing.assert_array_equal(cached["displacement"].values, v2["displacement"].values)
    monkey.undo()
    whole = tmp_path / "whole"  # the same two updates written whole
    workflow.run_to_folder(old, whole, cfg)
    monkey.setattr(versions, "MAX_LAYERS", 1)
    workflow.update_folder(whole, middle, cfg)
    workflow.update_folder(whole, full, cfg)
    monkey.undo()
    assert "displacement" in xr.open_zarr(versions.store_path(whole, 2))
    error = np.nanmax(
        np.abs(v2["displacement"].values - versions.open_version(whole)["displacement"].values)
    )
    assert error < 1e-7, error

    shutil.rmtree(versions.store_path(results, 1))
    with pytest.raises(InputError, match="base store .*v1.* is missing"):
        versions.open_version(results)


def test_a_deep_chain_is_compacted_after_its_update(frames, tmp_path, monkeypatch):
    """The update that makes a chain MAX_LAYERS - 1 deep then writes its version whole
    beside the layer: the version reads the same, the next update is a layer on it; an
    interrupted compaction leaves nothing behind."""
    from mtinsar.config import RunConfig
    from mtinsar.workflows import jobs as workflow

    full, _, scene = frames
    days = [str(d).replace("-", "") for d in scene.dates[-3:]]
    frames_by_update = [_frame_without(full, tmp_path / f"f{k}", set(days[k:])) for k in (0, 1, 2)]
    frames_by_update.append(full)
    cfg = RunConfig()
    plain, compacted = tmp_path / "plain", tmp_path / "compacted"
    for results in (plain, compacted):
        workflow.run_to_folder(frames_by_update[0], results, cfg)
    lines = []
    for frame in frames_by_update[1:]:
        workflow.update_folder(plain, frame, cfg)
        monkeypatch.setattr(versions, "MAX_LAYERS", 3)
        lines += workflow.update_folder(compacted, frame, cfg)
        monkeypatch.undo()
    assert versions.layers_below(versions.store_path(plain, 3)) == 3
    assert (compacted / "versions" / "v2" / versions.COMPACT).is_dir()
    assert [line for line in lines if "version v2 compacted" in line] != []
    assert sum(" compacted (" in line for line in lines) == 1
    assert versions.layers_below(versions.store_path(compacted, 2)) == 0
    assert versions.layers_below(versions.store_path(compacted, 3)) == 1  # on the compact
    for number in (1, 2, 3):  # the same up to float32 rounding (v3: summed in another order)
        a = versions.open_version(plain, number).load()
        b = versions.open_version(compacted, number).load()
        for name in ("displacement", "velocity", "velocity_std"):
            np.testing.assert_allclose(b[name].values, a[name].values, rtol=1e-4, atol=1e-7)

    layer = versions.store_path(plain, 2)

    def interrupted(tmp):
        tmp.mkdir()
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        versions.write_compact(layer, interrupted)
    assert [p.name for p in layer.parent.iterdir() if "compact" in p.name] == []
    assert versions.layers_below(layer) == 2


def test_a_store_written_anew_at_the_same_path_is_read_anew(tmp_path):
    """Stores below the top of a chain are kept between opens (`versions._open_below`);
    a store replaced at the same path (a new run into the same folder) is not taken for
    the one kept."""
    from mtinsar.results.writer import write_store

    store = tmp_path / versions.STORE
    for value in (1.0, 2.0):
        if store.exists():
            shutil.rmtree(store)
        ds = xr.Dataset({"velocity": (("y", "x"), np.full((3, 4), value, dtype=np.float32))})
        write_store(ds, tmp_path)
        seen = versions._open_below(str(store), versions._identity(store))
        assert float(seen["velocity"].values.max()) == value
