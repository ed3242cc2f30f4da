"""Spilled truth cubes: a scene simulated with `spill_dir` is the in-memory scene, bit for bit."""

import dask.array as da
import numpy as np
import pytest
import rasterio

from mtinsar.simulate import SceneConfig, load_truth, simulate_scene, write_licsar
from mtinsar.simulate.datestack import DateStack

# ramp and gap on too, so every nuisance is exercised; 70 dates > 64 give the truth store
# 128-px chunks, so the 150 rows are written as two bands, the second one partial
CFG = SceneConfig(ny=150, nx=90, n_dates=70, seed=4, unwrap_errors=0.1, ramp=True, gap_days=48)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    spill = tmp_path_factory.mktemp("spill")
    return simulate_scene(CFG), simulate_scene(CFG, spill_dir=spill), spill


def test_date_stack_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    cube = rng.standard_normal((5, 7, 3)).astype(np.float32)
    disk, memory = DateStack(5, (7, 3), tmp_path / "c.f32"), DateStack(5, (7, 3))
    for k in (3, 0, 4, 1, 2):  # any order
        disk[k] = cube[k].astype(np.float64)  # cast on write, like an array's assignment
        memory[k] = cube[k].astype(np.float64)
    assert (tmp_path / "c.f32").stat().st_size == cube.nbytes
    for k in range(5):
        np.testing.assert_array_equal(disk[k], cube[k])
    np.testing.assert_array_equal(disk.rows(2, 6), cube[:, 2:6])
    assert isinstance(disk.array(band=3), da.Array)
    np.testing.assert_array_equal(disk.array(band=3).compute(), cube)
    np.testing.assert_array_equal(memory.array(), cube)
    with pytest.raises(ValueError, match="shape"):
        disk[0] = cube[0, :3]


def test_spilled_scene_equals_in_memory_scene(scenes):
    memory, spilled, spill = scenes
    assert sorted(p.name for p in spill.iterdir()) == ["displacement.f32", "nuisance.f32"]
    for name in ("displacement", "nuisance"):
        assert isinstance(spilled.truth[name].data, da.Array)  # not held in memory
        assert isinstance(memory.truth[name].data, np.ndarray)
    assert set(memory.truth.data_vars) == set(spilled.truth.data_vars)
    for name in memory.truth.data_vars:
        np.testing.assert_array_equal(spilled.truth[name].values, memory.truth[name].values)
    assert memory.truth.attrs == spilled.truth.attrs
    assert memory.pairs == spilled.pairs
    for k in range(len(memory.pairs)):
        for a, b in zip(memory.interferogram(k), spilled.interferogram(k), strict=True):
            np.testing.assert_array_equal(a, b)


def test_spilled_scene_writes_the_same_frame(scenes, tmp_path):
    memory, spilled, _ = scenes
    a = write_licsar(memory, tmp_path / "memory")
    b = write_licsar(spilled, tmp_path / "spilled")
    files = sorted(p.relative_to(a) for p in a.rglob("*.tif"))
    assert files == sorted(p.relative_to(b) for p in b.rglob("*.tif"))
    assert len(files) == 2 * len(memory.pairs) + 5
    for rel in files:
        with rasterio.open(a / rel) as fa, rasterio.open(b / rel) as fb:
            np.testing.assert_array_equal(fa.read(1), fb.read(1))
    for name in ("baselines", "metadata.txt"):
        assert (a / "metadata" / name).read_text() == (b / "metadata" / name).read_text()
    ta, tb = load_truth(a), load_truth(b)
    assert ta["displacement"].encoding["chunks"] == tb["displacement"].encoding["chunks"]
    for name in ta.data_vars:
        np.testing.assert_array_equal(tb[name].values, ta[name].values)
    # and the store holds the scene's truth
    np.testing.assert_array_equal(tb["nuisance"].values, memory.truth["nuisance"].values)
