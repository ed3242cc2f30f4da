"""Scenes shared by the tests: simulated once per session, in LiCSAR layout."""

from pathlib import Path

import pytest

from mtinsar.simulate import SceneConfig, simulate_scene, write_licsar


def _write(tmp_path_factory: pytest.TempPathFactory, name: str, cfg: SceneConfig) -> Path:
    return write_licsar(simulate_scene(cfg), tmp_path_factory.mktemp(name) / "frame")


@pytest.fixture(scope="session")
def noise_free_frame(tmp_path_factory) -> Path:
    """A small deformation-only scene (no nuisance at all)."""
    return _write(tmp_path_factory, "noise_free", SceneConfig.noise_free(ny=60, nx=80, n_dates=24))


@pytest.fixture(scope="session")
def default_frame(tmp_path_factory) -> Path:
    """The default small scene: every nuisance on except unwrapping errors."""
    return _write(tmp_path_factory, "default", SceneConfig.preset("small"))


@pytest.fixture(scope="session")
def tiny_frame(tmp_path_factory) -> Path:
    """A tiny noisy scene to copy and break in error-path tests."""
    return _write(tmp_path_factory, "tiny", SceneConfig(ny=20, nx=24, n_dates=8, seed=3))
