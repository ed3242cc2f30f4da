"""Simulated railways over SBAS results of small scenes, shared by the infra tests."""

from dataclasses import dataclass
from pathlib import Path

import pytest
import xarray as xr

from mtinsar.config import OutputConfig, RunConfig
from mtinsar.results.writer import write_results
from mtinsar.simulate import SceneConfig, load_truth, simulate_scene, write_licsar
from mtinsar.simulate.infra import write_railway
from mtinsar.workflows.pipeline import load_input, run_sbas


@dataclass
class RailwayCase:
    """An SBAS result, its truth, and a railway crossing the main subsidence bowl."""

    result: xr.Dataset
    truth: xr.Dataset
    lines: Path
    result_dir: Path  # a `mtinsar run`-style folder holding timeseries.zarr


def _case(tmp: Path, scene: SceneConfig) -> RailwayCase:
    frame = write_licsar(simulate_scene(scene), tmp / "frame")
    run = run_sbas(load_input(frame, RunConfig()), RunConfig())
    truth = load_truth(frame)
    out = write_results(run, tmp / "run", OutputConfig(cog=False, figures=False))
    return RailwayCase(run.result, truth, write_railway(truth, tmp / "railway.geojson"), out)


@pytest.fixture(scope="session")
def noise_free_railway(tmp_path_factory) -> RailwayCase:
    """Deformation only: 100 x 120 px, 20 dates (about 8 months)."""
    cfg = SceneConfig.noise_free(ny=100, nx=120, n_dates=20)
    return _case(tmp_path_factory.mktemp("rail_noise_free"), cfg)


@pytest.fixture(scope="session")
def noisy_railway(tmp_path_factory) -> RailwayCase:
    """Every default nuisance (troposphere, DEM error, decorrelation, lake, field), 60 dates.

    About two years of data: what stability monitoring of infrastructure works with; over
    a few months the per-date troposphere alone moves velocities by ~10 mm/yr.
    """
    cfg = SceneConfig(ny=100, nx=120, n_dates=60)
    return _case(tmp_path_factory.mktemp("rail_noisy"), cfg)
