"""Synthetic Sentinel-1 scenes with known truth, and writers of product layouts.

from mtinsar.simulate import SceneConfig, simulate_scene, write_licsar, load_truth
scene = simulate_scene(SceneConfig.preset("small", seed=3))
write_licsar(scene, out_dir)
"""

from mtinsar.simulate.licsar import frame_id, load_truth, write_licsar
from mtinsar.simulate.scene import (
    SLANT_RANGE_M,
    Scene,
    SceneConfig,
    acquisition_dates,
    coherence_phase_sigma,
    licsar_network,
    network_is_connected,
    perpendicular_baselines,
    power_law_field,
    simulate_scene,
)

__all__ = [
    "SLANT_RANGE_M",
    "Scene",
    "SceneConfig",
    "acquisition_dates",
    "coherence_phase_sigma",
    "frame_id",
    "licsar_network",
    "load_truth",
    "network_is_connected",
    "perpendicular_baselines",
    "power_law_field",
    "simulate_scene",
    "write_licsar",
]
