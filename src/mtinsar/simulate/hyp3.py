"""Write a simulated scene as ASF HyP3 INSAR_GAMMA products (folders or .zip files).

One product per pair (FORMATS.md §3; read by `mtinsar.io.hyp3.read_hyp3`)::

    out_dir/S1AA_{ref}T{hhmmss}_{sec}T{hhmmss}_VVP{days:03d}_INT80_G_ueF_{id}/   (or .zip)
      {name}_unw_phase.tif  float32 rad, + = away, nodata 0
      {name}_corr.tif       float32 0-1, nodata 0
      {name}_conncomp.tif   uint16, 1 = unwrapped, 0 = not (only with conncomp=True)
      {name}_dem.tif        float32 m         {name}_water_mask.tif  uint8 1 land, 0 water
      {name}_lv_theta.tif   float32 rad       {name}_lv_phi.tif      float32 rad
      {name}.txt            "Key: value" metadata as hyp3-gamma writes it
    out_dir/scene.json      the SceneConfig

Grid: the scene's pixel arrays placed on a UTM grid (zone of the scene centre) with HyP3's
80 m posting, its upper-left corner at the UTM position of the scene's corner (snapped to the
80 m lattice). The scene itself is simulated on a 0.001 deg grid, so this grid is a relabelling,
not a resampling: pixel values are those the LiCSAR writer writes (phase bit for bit,
coherence quantised to 1/255 as LiCSAR's uint8 files decode), so both layouts give the same
time series. Look vectors follow GAMMA's definition: θ = asin(U) elevation of the ground ->
satellite vector, φ = atan2(N, E) from east, counter-clockwise.

`pair_grids` writes chosen products on another grid, every layer resampled onto it
(`mtinsar.simulate.geotiff.warp_layer`): a fraction of a pixel off the lattice
(`mtinsar.simulate.geotiff.shifted_grid`) or in the neighbouring UTM zone
(`neighbour_zone_grid`), as products processed separately can be.
"""

from __future__ import annotations

import logging
import shutil
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.warp import transform_bounds

from mtinsar.io.core import mosaic
from mtinsar.simulate.geotiff import (
    licsar_coherence,
    staged_directory,
    warp_layer,
    write_tif,
    ymd,
)
from mtinsar.simulate.licsar import CENTER_TIME, encode_unw
from mtinsar.simulate.scene import SLANT_RANGE_M, TRACK, Scene, SceneConfig

logger = logging.getLogger(__name__)

#: HyP3 INSAR_GAMMA posting [m] of the INT80 products.
POSTING_M = 80.0
#: Absolute orbit of the first acquisition: on the scene's track (S1A), in 2019's range.
_FIRST_ORBIT_CYCLES = 145
_SPACECRAFT_HEIGHT = 693000.0
_EARTH_RADIUS = 6337286.638938101
_SWATH_HALF_WIDTH_M = 125_000.0


def utm_grid(config: SceneConfig) -> tuple[CRS, Affine]:
    """UTM CRS (zone of the scene centre) and the 80 m north-up transform of the scene."""
    lon_c = config.lon0 + config.nx * config.posting_deg / 2
    lat_c = config.lat0 - config.ny * config.posting_deg / 2
    zone = int((lon_c + 180.0) // 6.0) + 1
    epsg = (32600 if lat_c >= 0 else 32700) + zone
    to_utm = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)
    east, north = to_utm.transform(config.lon0, config.lat0)
    east, north = round(east / POSTING_M) * POSTING_M, round(north / POSTING_M) * POSTING_M
    return CRS.from_epsg(epsg), Affine(POSTING_M, 0.0, east, 0.0, -POSTING_M, north)


def scene_grid(config: SceneConfig) -> mosaic.Grid:
    """The scene's UTM grid (`utm_grid`) as a `mosaic.Grid`."""
    crs, transform = utm_grid(config)
    return mosaic.Grid(transform, (config.ny, config.nx), crs)


def neighbour_zone_grid(grid: mosaic.Grid, step: int = 1) -> mosaic.Grid:
    """An 80 m grid in the UTM zone `step` zones east of `grid`'s covering all of it."""
    epsg = grid.crs.to_epsg()
    crs = CRS.from_epsg(epsg + step)
    x0, y0, x1, y1 = transform_bounds(grid.crs, crs, *grid.bounds, densify_pts=64)
    x0, y0 = np.floor(x0 / POSTING_M) * POSTING_M, np.floor(y0 / POSTING_M) * POSTING_M
    x1, y1 = np.ceil(x1 / POSTING_M) * POSTING_M, np.ceil(y1 / POSTING_M) * POSTING_M
    shape = (round((y1 - y0) / POSTING_M), round((x1 - x0) / POSTING_M))
    return mosaic.Grid(Affine(POSTING_M, 0.0, x0, 0.0, -POSTING_M, y1), shape, crs)


def product_name(scene: Scene, k: int) -> str:
    """HyP3 INSAR_GAMMA name of pair k, e.g. S1AA_20190104T003612_20190116T003612_VVP012_..."""
    i, j = scene.pairs[k]
    days = int((scene.dates[j] - scene.dates[i]).astype(np.int64))
    hhmmss = _hhmmss(scene.config)
    job = (0x1F3A + 7919 * k) % 0x10000  # a deterministic 4-hex-digit product id
    return (
        f"S1AA_{ymd(scene.dates[i])}T{hhmmss}_{ymd(scene.dates[j])}T{hhmmss}_"
        f"VVP{days:03d}_INT80_G_ueF_{job:04X}"
    )


def write_hyp3(
    scene: Scene,
    out_dir: Path,
    as_zip: bool = False,
    conncomp: bool = False,
    progress: bool = False,
    pair_grids: Mapping[int, mosaic.Grid] | None = None,
) -> Path:
    """Write `scene` as HyP3 products at `out_dir` (one folder, or .zip, per pair).

    pair_grids {pair index: grid}: those products are written on that grid instead of the
    scene's, every layer resampled onto it (`warp_layer`; nearest for labels and the water
    mask). Written to a temporary folder renamed at the end, so a failure leaves nothing
    behind.
    """
    base = scene_grid(scene.config)
    pair_grids = dict(pair_grids or {})
    geometry = _geometry_layers(scene)
    ks: Any = range(len(scene.pairs))
    if progress:
        from tqdm.auto import tqdm

        ks = tqdm(ks, desc="HyP3 products", unit="pair")
    with staged_directory(Path(out_dir)) as tmp:
        for k in ks:
            name = product_name(scene, k)
            folder = tmp / name
            folder.mkdir()
            unw, coh = scene.interferogram(k)
            labels = np.isfinite(unw).astype(np.uint16)
            layers = {"unw_phase": unw, "corr": coh, "conncomp": labels} | {
                suffix: values for suffix, (values, _) in geometry.items()
            }
            grid = pair_grids.get(k, base)
            if k in pair_grids:
                layers = {s: _on_grid(s, v, base, grid) for s, v in layers.items()}
            crs, transform = grid.crs, grid.transform
            write_tif(folder / f"{name}_unw_phase.tif", encode_unw(layers["unw_phase"]), crs,
                      transform)  # fmt: skip
            write_tif(folder / f"{name}_corr.tif", licsar_coherence(layers["corr"]), crs, transform)
            if conncomp:
                write_tif(folder / f"{name}_conncomp.tif", layers["conncomp"], crs, transform,
                          nodata=None)  # fmt: skip
            for suffix, (_, nodata) in geometry.items():
                write_tif(folder / f"{name}_{suffix}.tif", layers[suffix], crs, transform,
                          nodata=nodata)  # fmt: skip
            (folder / f"{name}.txt").write_text(metadata_text(scene, k))
            if as_zip:
                _zip_folder(folder)
        (tmp / "scene.json").write_text(scene.config.model_dump_json(indent=2) + "\n")
    logger.info("wrote %d HyP3 products to %s", len(scene.pairs), out_dir)
    return Path(out_dir)


def _on_grid(suffix: str, values: np.ndarray, src: mosaic.Grid, dst: mosaic.Grid) -> np.ndarray:
    """A layer resampled onto `dst`, back in its file data type (0 = no data / outside)."""
    labels = suffix in ("conncomp", "water_mask")
    out = warp_layer(values.astype(np.float32), src, dst, labels=labels)
    if values.dtype.kind == "f":
        return out
    return np.where(np.isfinite(out), out, 0).astype(values.dtype)


def _geometry_layers(scene: Scene) -> dict[str, tuple[np.ndarray, float | None]]:
    """{suffix: (array, nodata)} of the DEM, look-vector angles and water mask."""
    t = scene.truth
    e, n, u = (t[v].values.astype(np.float64) for v in ("los_e", "los_n", "los_u"))
    height = t["height"].values.astype(np.float32)
    height[height == 0] = np.float32(1e-6)  # 0 reads as no data
    return {
        "dem": (height, 0),
        "lv_theta": (np.arcsin(np.clip(u, -1, 1)).astype(np.float32), 0),
        "lv_phi": (np.arctan2(n, e).astype(np.float32), 0),
        "water_mask": ((~t["water"].values).astype(np.uint8), None),
    }


def _zip_folder(folder: Path) -> None:
    """Replace `folder` by `folder`.zip holding it (as ASF delivers products)."""
    archive = folder.with_name(folder.name + ".zip")
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(folder.iterdir()):
            zf.write(file, f"{folder.name}/{file.name}")
    shutil.rmtree(folder)


def _hhmmss(config: SceneConfig) -> str:
    h, m, s = CENTER_TIME[config.orbit].split(":")
    return f"{int(h):02d}{int(m):02d}{int(float(s)):02d}"


def _seconds_of_day(config: SceneConfig) -> float:
    h, m, s = CENTER_TIME[config.orbit].split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def absolute_orbit(scene: Scene, index: int) -> int:
    """S1A absolute orbit of acquisition `index` on the scene's track (175 orbits / 12 days)."""
    track = TRACK[scene.config.orbit]
    days = int((scene.dates[index] - scene.dates[0]).astype(np.int64))
    first = 73 + (track - 1) + 175 * _FIRST_ORBIT_CYCLES
    return first + 175 * days // 12


def metadata_text(scene: Scene, k: int) -> str:
    """The product's .txt, with the keys and layout of hyp3-gamma's metadata writer."""
    i, j = scene.pairs[k]
    direction = scene.config.orbit.upper()
    hhmmss = _hhmmss(scene.config)

    def granule(index: int) -> str:
        day = ymd(scene.dates[index])
        orbit = absolute_orbit(scene, index)
        return (
            f"S1A_IW_SLC__1SDV_{day}T{hhmmss}_{day}T{hhmmss}_{orbit:06d}_0{orbit % 4096:05X}_ABCD"
        )

    items = {
        "Reference Granule": granule(i),
        "Secondary Granule": granule(j),
        "Reference Pass Direction": direction,
        "Reference Orbit Number": absolute_orbit(scene, i),
        "Secondary Pass Direction": direction,
        "Secondary Orbit Number": absolute_orbit(scene, j),
        "Baseline": repr(float(scene.pair_bperp()[k])),
        "UTC time": repr(_seconds_of_day(scene.config)),
        "Heading": repr(float(scene.truth.attrs["heading"])),
        "Spacecraft height": _SPACECRAFT_HEIGHT,
        "Earth radius at nadir": _EARTH_RADIUS,
        "Slant range near": SLANT_RANGE_M - _SWATH_HALF_WIDTH_M / 2,
        "Slant range center": SLANT_RANGE_M,
        "Slant range far": SLANT_RANGE_M + _SWATH_HALF_WIDTH_M / 2,
        "Range looks": 20,
        "Azimuth looks": 4,
        "INSAR phase filter": "yes",
        "Phase filter parameter": 0.6,
        "Range bandpass filter": "no",
        "Azimuth bandpass filter": "no",
        "DEM source": "GLO_30",
        "DEM resolution (m)": 30,
        "Unwrapping type": "mcf",
        "Speckle filter": "yes",
    }
    return "".join(f"{key}: {value}\n" for key, value in items.items())
