"""Synthetic Sentinel-1 scenes with known truth, and writers of product layouts.

from mtinsar.simulate import SceneConfig, simulate_scene, write_licsar, load_truth
scene = simulate_scene(SceneConfig.preset("small", seed=3))
write_licsar(scene, out_dir)

Writers of the other layouts (`WRITERS`): write_hyp3, write_aria, write_isce, MintPy,
write_geotiff_stack; `write_licsar` also stores the truth (`truth.zarr`), for the others call
`write_truth(scene.truth, out_dir / "truth.zarr")`.
"""

from pathlib import Path

from mtinsar.simulate.aria import write_aria
from mtinsar.simulate.geotiff import write_geotiff_stack
from mtinsar.simulate.hyp3 import write_hyp3
from mtinsar.simulate.isce import write_isce
from mtinsar.simulate.licsar import frame_id, load_truth, write_licsar, write_truth
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


def write_mintpy_scene(scene: Scene, out_dir: Path, progress: bool = False) -> Path:
    """The scene as MintPy's inputs/ifgramStack.h5 + geometryGeo.h5 in `out_dir`."""
    from mtinsar.io.mintpy import write_mintpy

    ref = (int(scene.truth.attrs["ref_y"]), int(scene.truth.attrs["ref_x"]))
    write_mintpy(scene.to_ifgstack(), Path(out_dir), reference=ref, progress=progress)
    return Path(out_dir)


#: Product layout -> writer(scene, out_dir, progress=False).
WRITERS = {
    "licsar": write_licsar,
    "hyp3": write_hyp3,
    "aria": write_aria,
    "isce": write_isce,
    "mintpy": write_mintpy_scene,
    "geotiff": write_geotiff_stack,
}

__all__ = [
    "WRITERS",
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
    "write_aria",
    "write_geotiff_stack",
    "write_hyp3",
    "write_isce",
    "write_licsar",
    "write_truth",
]
