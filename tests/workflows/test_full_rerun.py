"""Automatic full re-run: when the policy says so, the whole history is re-inverted as a new
version of the result folder, equal to a direct full run, and the update count restarts."""

import json
import shutil

import numpy as np
import pytest

from mtinsar.config import RunConfig
from mtinsar.results import versions
from mtinsar.simulate import SceneConfig, simulate_scene, write_licsar
from mtinsar.workflows.jobs import run_to_folder, update_folder


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    """Copies of one frame holding the pairs up to dates[-4], [-3], [-2] and [-1]."""
    root = tmp_path_factory.mktemp("rerun")
    scene = simulate_scene(SceneConfig(ny=50, nx=60, n_dates=18, seed=11))
    full = write_licsar(scene, root / "full")
    out = []
    for k in (4, 3, 2, 1):
        stage = root / f"upto{k}"
        shutil.copytree(full, stage)
        late = {str(d).replace("-", "") for d in scene.dates[len(scene.dates) - k + 1 :]}
        for pair in (stage / "interferograms").iterdir():
            if set(pair.name.split("_")) & late:
                shutil.rmtree(pair)
        out.append(stage)
    return out, scene


def test_due_rerun_is_a_new_version_equal_to_a_full_run(stages, tmp_path):
    (stage0, *updates), scene = stages
    results = tmp_path / "results"
    run_to_folder(stage0, results, RunConfig())
    cfg = RunConfig.model_validate({"nrt": {"full_rerun_every": 2}})

    first = update_folder(results, updates[0], cfg, full_when_due=True)
    assert versions.current(results) == 1 and not any("full re-run" in s for s in first)
    assert versions.open_version(results).attrs["nrt_updates_since_full"] == 1

    second = update_folder(results, updates[1], cfg, full_when_due=True)
    assert "a full re-run is due (2 updates since the last full run" in second[-2]
    assert second[-1].split()[1:4] == ["full", "re-run", "of"] and "version 3" in second[-1]
    assert versions.versions(results) == [0, 1, 2, 3] and versions.current(results) == 3
    rerun = versions.open_version(results).load()
    assert "nrt_updates_since_full" not in rerun.attrs  # a full run's result
    assert rerun.sizes["time"] == len(scene.dates) - 1
    summary = json.loads((results / "versions" / "v3" / "summary.json").read_text())
    assert summary["full_rerun"]["replaces_version"] == 2
    assert summary["n_dates"] == len(scene.dates) - 1
    # earlier versions stay readable
    assert versions.open_version(results, 2).sizes["time"] == len(scene.dates) - 1
    assert versions.open_version(results, 0).sizes["time"] == len(scene.dates) - 3

    # the same as running from scratch on all products, with the result's reference point
    ref = {"lon": rerun.attrs["reference_lon"], "lat": rerun.attrs["reference_lat"]}
    direct = tmp_path / "direct"
    run_to_folder(updates[1], direct, RunConfig.model_validate({"reference": ref}))
    expected = versions.open_version(direct).load()
    assert (rerun.attrs["reference_y"], rerun.attrs["reference_x"]) == (
        expected.attrs["reference_y"],
        expected.attrs["reference_x"],
    )
    for name in ("velocity", "displacement", "mask"):
        np.testing.assert_allclose(
            rerun[name].values, expected[name].values, rtol=1e-6, atol=1e-9, equal_nan=True
        )
    # ... and not what the sequential updates had (else the test could not fail)
    updated = versions.open_version(results, 2)["velocity"].values
    assert not np.allclose(updated, expected["velocity"].values, equal_nan=True)

    third = update_folder(results, updates[2], cfg, full_when_due=True)
    assert versions.current(results) == 4 and "re-run is due" not in third[-1]
    assert versions.open_version(results).attrs["nrt_updates_since_full"] == 1  # restarted


def test_due_without_the_flag_only_says_so(stages, tmp_path):
    (stage0, *updates), _ = stages
    results = tmp_path / "results"
    run_to_folder(stage0, results, RunConfig())
    cfg = RunConfig.model_validate({"nrt": {"full_rerun_every": 1}})
    lines = update_folder(results, updates[0], cfg)
    assert lines[-1].endswith(": mtinsar update --full-when-due")
    assert versions.versions(results) == [0, 1]
    # a later look that finds nothing new still catches up on the due re-run
    again = update_folder(results, updates[0], cfg, full_when_due=True)
    assert "nothing to add" in again[0] and "full re-run" in again[1]
    assert versions.current(results) == 2
    assert "nrt_updates_since_full" not in versions.open_version(results).attrs
