"""Write a simulated scene in the COMET-LiCSAR frame layout, plus its truth store.

Layout (FORMATS.md §1)::

    out_dir/
      interferograms/YYYYMMDD_YYYYMMDD/YYYYMMDD_YYYYMMDD.geo.unw.tif  float32 rad, 0 = no data
      interferograms/YYYYMMDD_YYYYMMDD/YYYYMMDD_YYYYMMDD.geo.cc.tif   uint8 coh*255, 0 = no data
      metadata/{FRAME}.geo.{E,N,U,hgt}.tif   float32, 0 = no data
      metadata/{FRAME}.geo.landmask.tif      uint8 1 = land, 0 = water
      metadata/baselines                     "frame_master epoch bperp btemp"
      metadata/metadata.txt                  key=value
      truth.zarr                             truth Dataset (Zarr v3, chunked in space only)
      scene.json                             the SceneConfig

Unwrapped phase is written with the LiCSAR sign (positive = range increase, away from the
satellite); readers convert with displacement = -wavelength / (4 pi) * unw.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import rasterio
import xarray as xr
from rasterio.crs import CRS
from rasterio.transform import Affine

from mtinsar.errors import InputError
from mtinsar.simulate.scene import SLANT_RANGE_M, TRACK, Scene, SceneConfig

logger = logging.getLogger(__name__)

#: Sentinel-1 IW SLC pixel spacings written to metadata.txt [m] (typical values).
AZIMUTH_PIXEL_M = 13.968
RANGE_PIXEL_M = 2.329562
#: Scene centre time (UTC) of the fictional frame per orbit direction.
CENTER_TIME = {"ascending": "0:36:12.417325", "descending": "12:41:05.128834"}
_LOCATION = {"ascending": 1234, "descending": 4321}


def frame_id(config: SceneConfig) -> str:
    """LiCSAR frame id of the fictional frame, e.g. '005A_01234_131313'."""
    letter = "A" if config.orbit == "ascending" else "D"
    return f"{TRACK[config.orbit]:03d}{letter}_{_LOCATION[config.orbit]:05d}_131313"


def geotransform(config: SceneConfig) -> Affine:
    """North-up EPSG:4326 transform of the scene grid (upper-left corner lon0, lat0)."""
    p = config.posting_deg
    return Affine(p, 0.0, config.lon0, 0.0, -p, config.lat0)


def write_licsar(scene: Scene, out_dir: Path, progress: bool = False) -> Path:
    """Write `scene` as a LiCSAR frame directory at `out_dir`; returns `out_dir`.

    Interferograms are computed and written one pair at a time. Everything goes to a
    temporary sibling directory renamed to `out_dir` at the end, so an interrupted write
    leaves nothing at `out_dir`. Raises InputError if `out_dir` exists and is not empty.
    """
    out_dir = Path(out_dir)
    _check_target(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.partial-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        _write_metadata(scene, tmp / "metadata")
        _write_interferograms(scene, tmp / "interferograms", progress)
        write_truth(scene.truth, tmp / "truth.zarr")
        (tmp / "scene.json").write_text(scene.config.model_dump_json(indent=2) + "\n")
        _check_target(out_dir)
        if out_dir.exists():
            out_dir.rmdir()  # empty: rename(2) cannot replace a directory portably
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info(
        "wrote LiCSAR frame %s (%d pairs) to %s", frame_id(scene.config), len(scene.pairs), out_dir
    )
    return out_dir


def load_truth(out_dir: Path) -> xr.Dataset:
    """Open the truth Dataset of a written scene (lazy, from out_dir/truth.zarr)."""
    path = Path(out_dir) / "truth.zarr"
    if not path.is_dir():
        raise InputError(f"{path}: no truth store; write the scene with write_licsar first")
    return xr.open_zarr(path, consolidated=False, decode_coords="all")


def _check_target(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise InputError(
            f"{out_dir}: already exists and is not an empty directory; "
            "choose a new output directory or remove it first"
        )


# --------------------------------------------------------------------------- rasters


def _write_tif(path: Path, array: np.ndarray, config: SceneConfig, predictor: int) -> None:
    """Single-band deflate-compressed EPSG:4326 GeoTIFF with nodata 0."""
    profile = {
        "driver": "GTiff",
        "height": array.shape[0],
        "width": array.shape[1],
        "count": 1,
        "dtype": array.dtype.name,
        "crs": CRS.from_epsg(4326),
        "transform": geotransform(config),
        "nodata": 0,
        "compress": "deflate",
        "predictor": predictor,
        "zlevel": 1,  # speed over a few % of size: files are rewritten on every test run
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array, 1)


def encode_unw(unw: np.ndarray) -> np.ndarray:
    """float32 phase with NaN no-data -> LiCSAR float32 with 0 no-data."""
    return np.where(np.isnan(unw), np.float32(0), unw).astype(np.float32)


def encode_cc(coh: np.ndarray) -> np.ndarray:
    """Coherence 0..1 with NaN no-data -> uint8 round(coh*255), valid clipped to >= 1, 0 no-data."""
    valid = ~np.isnan(coh)
    code = np.clip(np.rint(np.where(valid, coh, 0.0) * 255.0), 1, 255)
    return np.where(valid, code, 0).astype(np.uint8)


def _write_interferograms(scene: Scene, root: Path, progress: bool) -> None:
    names = scene.pair_names()
    ks: Iterable[int] = range(len(names))
    if progress:
        from tqdm.auto import tqdm

        ks = tqdm(ks, total=len(names), desc="interferograms", unit="pair")
    for k in ks:
        unw, coh = scene.interferogram(k)
        folder = root / names[k]
        folder.mkdir(parents=True)
        _write_tif(folder / f"{names[k]}.geo.unw.tif", encode_unw(unw), scene.config, predictor=3)
        _write_tif(folder / f"{names[k]}.geo.cc.tif", encode_cc(coh), scene.config, predictor=2)


def _write_metadata(scene: Scene, root: Path) -> None:
    root.mkdir()
    cfg, truth = scene.config, scene.truth
    frame = frame_id(cfg)
    for suffix, var in (("E", "los_e"), ("N", "los_n"), ("U", "los_u"), ("hgt", "height")):
        arr = truth[var].values.astype(np.float32)
        arr[arr == 0] = np.float32(1e-6)  # 0 reads as no data
        _write_tif(root / f"{frame}.geo.{suffix}.tif", arr, cfg, predictor=3)
    land = (~truth["water"].values).astype(np.uint8)
    _write_tif(root / f"{frame}.geo.landmask.tif", land, cfg, predictor=2)
    (root / "baselines").write_text(_baselines_text(scene))
    (root / "metadata.txt").write_text(_metadata_text(scene))


def _ymd(date: np.datetime64) -> str:
    return str(np.datetime64(date, "D")).replace("-", "")


def _baselines_text(scene: Scene) -> str:
    """One line per epoch: frame_master epoch bperp[m] btemp[days] (master first, 0 0)."""
    master = _ymd(scene.dates[0])
    lines = []
    for date, bp in zip(scene.dates, scene.bperp_dates, strict=True):
        btemp = float((date - scene.dates[0]).astype(np.int64))
        lines.append(f"{master} {_ymd(date)} {bp:.3f} {btemp:.1f}")
    return "\n".join(lines) + "\n"


def _metadata_text(scene: Scene) -> str:
    truth, cfg = scene.truth, scene.config
    land = ~truth["water"].values
    items = {
        "master": _ymd(scene.dates[0]),
        "center_time": CENTER_TIME[cfg.orbit],
        "heading": f"{truth.attrs['heading']:.6f}",
        "avg_incidence_angle": f"{float(truth['incidence'].values.mean()):.4f}",
        "azimuth_resolution": f"{AZIMUTH_PIXEL_M:.6f}",
        "range_resolution": f"{RANGE_PIXEL_M:.6f}",
        "centre_range_m": f"{SLANT_RANGE_M:.4f}",
        "avg_height": f"{float(truth['height'].values[land].mean()):.3f}",
        "applied_DEM": "CopernicusDEM_30m",
    }
    return "".join(f"{k}={v}\n" for k, v in items.items())


# --------------------------------------------------------------------------- truth store


def write_truth(truth: xr.Dataset, path: Path) -> None:
    """Zarr v3, chunked in space only (each chunk holds a pixel's whole history).

    Cubes held as dask arrays are computed and written band by band (bounded memory).
    """
    ny, nx = truth.sizes["y"], truth.sizes["x"]
    nt = truth.sizes["time"]
    side = 256 if nt <= 64 else 128
    cy, cx = min(ny, side), min(nx, side)
    truth = truth.copy()
    encoding: dict[str, dict[str, tuple[int, ...]]] = {}
    for name, var in list(truth.data_vars.items()):
        chunks = {"time": nt, "y": cy, "x": cx}
        encoding[str(name)] = {"chunks": tuple(chunks[d] for d in var.dims)}
        if var.chunks is not None:  # a spilled cube (simulate_scene(spill_dir=...)): written
            # one band of whole rows at a time, each band a whole number of store chunks
            truth[name] = var.chunk({"time": nt, "y": cy, "x": nx})
            var = truth[name]
        # The Zarr backend drops a `grid_mapping` encoding; as an attribute it survives and
        # lets readers (decode_coords="all", rioxarray) find the CRS again.
        if "grid_mapping" in var.encoding:
            var.attrs["grid_mapping"] = var.encoding.pop("grid_mapping")
    truth.to_zarr(path, mode="w-", zarr_format=3, consolidated=False, encoding=encoding)
