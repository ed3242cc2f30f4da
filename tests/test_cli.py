"""The command line as a user runs it: real processes, exit codes, files left behind."""

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine

from mtinsar.simulate import load_truth


def mtinsar(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "mtinsar", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


def _tree(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def result_dir(noise_free_frame, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "results"
    proc = mtinsar("run", noise_free_frame, out, "-q")
    assert proc.returncode == 0, proc.stderr
    return out


BLAS_PROBE = (
    "import os, sys; from mtinsar.cli import BLAS_THREAD_VARIABLES, single_threaded_blas; "
    "numpy_first = sys.argv[1] == 'numpy' and __import__('numpy'); single_threaded_blas(); "
    "print(' '.join(os.environ.get(v, '-') for v in BLAS_THREAD_VARIABLES))"
)


@pytest.mark.parametrize(
    ("given", "first", "expected"),
    [({}, "", "1 1 1"), ({"OPENBLAS_NUM_THREADS": "3"}, "", "1 3 1"), ({}, "numpy", "- - -")],
)
def test_blas_gets_one_thread_unless_told_or_too_late(given, first, expected):
    # Dask's one task per core, each with a BLAS pool, would oversubscribe the cores.
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    out = subprocess.run(
        [sys.executable, "-c", BLAS_PROBE, first or "-"],
        capture_output=True,
        text=True,
        env={**env, **given},
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == expected.split()


def test_run_writes_every_output(result_dir):
    for name in ("velocity", "velocity_std", "temporal_coherence", "mask"):
        assert (result_dir / f"{name}.tif").is_file()
    assert (result_dir / "report.html").stat().st_size > 10_000
    for name in ("velocity", "quality", "network", "coherence_matrix", "timeseries"):
        img = matplotlib.image.imread(result_dir / "figures" / f"{name}.png")
        assert img.shape[1] > 200 and img.std() > 0  # a real, non-blank picture
    umask = os.umask(0)
    os.umask(umask)
    assert result_dir.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's private 0o700
    assert not list(result_dir.parent.glob(".*"))  # no work or temporary folder left behind
    summary = json.loads((result_dir / "summary.json").read_text())
    assert summary["n_pairs"] > 0 and summary["software"].startswith("mtinsar")
    assert set(summary["timings_s"]) >= {"statistics", "reference", "inversion"}


def test_cog_layers_match_the_zarr_store_and_are_cogs(result_dir, noise_free_frame):
    res = xr.open_zarr(result_dir / "timeseries.zarr")
    with rasterio.open(result_dir / "velocity.tif") as src:
        assert src.crs.to_epsg() == 4326
        assert src.profile["tiled"] and src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        vel = src.read(1)
        # same grid as the truth: pixel (0, 0) centre at the first x/y coordinate
        truth = load_truth(noise_free_frame)
        x0, y0 = src.xy(0, 0)  # centre of pixel (row 0, col 0)
        assert abs(x0 - float(truth["x"][0])) < 1e-9 and abs(y0 - float(truth["y"][0])) < 1e-9
    np.testing.assert_array_equal(vel, res["velocity"].values)


def test_uplift_positive_in_every_output(result_dir, noise_free_frame):
    truth = load_truth(noise_free_frame)
    res = xr.open_zarr(result_dir / "timeseries.zarr")
    up = (
        truth["velocity"].values
        - truth["velocity"].values[res.attrs["reference_y"], res.attrs["reference_x"]]
    )
    iy, ix = np.unravel_index(np.argmax(up), up.shape)
    assert up[iy, ix] > 0.01
    with rasterio.open(result_dir / "velocity.tif") as src:
        assert src.read(1)[iy, ix] > 0
    assert float(res["velocity"][iy, ix]) > 0
    assert float(res["displacement"][-1, iy, ix]) > 0


def test_ingest_then_run_on_the_store(noise_free_frame, tmp_path, result_dir):
    store = tmp_path / "stack.zarr"
    proc = mtinsar("ingest", noise_free_frame, store, "-q")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "res"
    assert mtinsar("run", store, out, "-q").returncode == 0
    a = xr.open_zarr(out / "timeseries.zarr")["velocity"].values
    b = xr.open_zarr(result_dir / "timeseries.zarr")["velocity"].values
    np.testing.assert_allclose(a, b, atol=1e-7)


def test_config_prints_valid_toml():
    proc = mtinsar("config")
    assert proc.returncode == 0
    assert tomllib.loads(proc.stdout)["mask"]["min_temporal_coherence"] == 0.7


def test_help_for_every_command():
    for cmd in ("simulate", "ingest", "run", "demo", "config"):
        proc = mtinsar(cmd, "--help")
        assert proc.returncode == 0 and "Usage" in proc.stdout


def _first_pair(frame: Path) -> Path:
    return sorted((frame / "interferograms").iterdir())[0]


def _break_missing(frame):
    shutil.rmtree(frame)
    return frame.name


def _break_empty(frame):
    shutil.rmtree(frame / "interferograms")
    (frame / "interferograms").mkdir()
    return "interferograms"


def _break_name(frame):
    (frame / "interferograms" / "2019_notapair").mkdir()
    return "2019_notapair"


def _break_grid(frame):
    """A grid that cannot be aligned: the pair's phase placed 1 degree east of the others."""
    pair = _first_pair(frame)
    f = pair / f"{pair.name}.geo.unw.tif"
    with rasterio.open(f) as src:
        data, profile = src.read(1), src.profile
    profile.update(transform=profile["transform"] * Affine.translation(1000, 0))
    with rasterio.open(f, "w", **profile) as dst:
        dst.write(data, 1)
    return f.name


def _break_corrupt(frame):
    pair = _first_pair(frame)
    f = pair / f"{pair.name}.geo.unw.tif"
    f.write_bytes(f.read_bytes()[:300])
    return f.name


def _break_all_nan(frame):
    pair = _first_pair(frame)
    f = pair / f"{pair.name}.geo.unw.tif"
    with rasterio.open(f, "r+") as dst:
        dst.write(np.zeros((dst.height, dst.width), np.float32), 1)
    return pair.name


def _break_duplicate(frame):
    pair = _first_pair(frame)
    shutil.copytree(pair, frame / "interferograms" / "copy" / pair.name)
    return pair.name


@pytest.mark.parametrize(
    ("breaker", "extra"),
    [
        (_break_missing, []),
        (_break_empty, []),
        (_break_name, []),
        (_break_grid, []),
        (_break_corrupt, []),
        (_break_all_nan, []),
        (_break_duplicate, []),
        (None, ["--bbox", "10", "10", "11", "11"]),
    ],
)
def test_bad_input_exits_2_names_the_culprit_and_keeps_results(
    tiny_frame, tmp_path, result_dir, breaker, extra
):
    frame = tmp_path / "frame"
    shutil.copytree(tiny_frame, frame)
    culprit = breaker(frame) if breaker else "bbox"
    out = tmp_path / "results"
    shutil.copytree(result_dir, out)
    before = _tree(out)
    proc = mtinsar("run", frame, out, "-q", *extra)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ")
    assert culprit in proc.stderr
    assert _tree(out) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_run_refuses_to_overwrite_a_foreign_folder(noise_free_frame, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    proc = mtinsar("run", noise_free_frame, out, "-q")
    assert proc.returncode == 2 and "not an mtinsar result folder" in proc.stderr
    assert (out / "thesis.tex").read_text() == "precious"


def test_demo_prints_where_the_outputs_are(tmp_path):
    proc = mtinsar("demo", "--out", tmp_path / "demo", "-q")
    assert proc.returncode == 0, proc.stderr
    assert str(tmp_path / "demo" / "results") in proc.stdout
    assert "velocity RMSE" in proc.stdout
    assert (tmp_path / "demo" / "results" / "figures" / "velocity.png").is_file()
