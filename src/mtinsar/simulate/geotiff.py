"""Write a simulated scene as a generic GeoTIFF pair stack (PyRate/GAMMA-like layout).

Layout (read by `mtinsar.io.geotiff.read_geotiff`)::

    out_dir/
      ifg_YYYYMMDD-YYYYMMDD_unw.tif   float32 phase [rad] x phase_sign, nodata 0
      ifg_YYYYMMDD-YYYYMMDD_coh.tif   float32 coherence 0-1, nodata 0
      dem.tif                         float32 height [m]
      scene.json                      the SceneConfig

on the scene's EPSG:4326 grid (the LiCSAR writer's); `pair_grids` writes chosen pairs on another
grid instead (e.g. `shifted_grid`, a fraction of a pixel off), resampled by `warp_layer`, to
test a reader's resampling. Each phase file carries the GDAL tags
FIRST_DATE, SECOND_DATE (ISO), WAVELENGTH_METRES, INCIDENCE_DEGREES (scene mean), HEADING_DEGREES,
BPERP [m] and INSAR_PROCESSOR, as PyRate writes them. Pixel values equal what the LiCSAR layout
decodes to: phase bit for bit (times `phase_sign`), coherence quantised to 1/255 like LiCSAR's
uint8 files, so a stack read from either layout gives the same time series.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import Resampling

from mtinsar.errors import InputError
from mtinsar.io.core import mosaic
from mtinsar.simulate.licsar import encode_cc, encode_unw, geotransform
from mtinsar.simulate.scene import Scene

logger = logging.getLogger(__name__)


@contextmanager
def staged_directory(out_dir: Path) -> Iterator[Path]:
    """A temporary sibling of `out_dir` to write into, renamed to `out_dir` on success.

    `out_dir` must not exist or be an empty folder (InputError otherwise). On any failure the
    temporary folder is removed, so an interrupted write leaves nothing at `out_dir`.
    """
    out_dir = Path(out_dir)
    _check_empty(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.partial-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        yield tmp
        _check_empty(out_dir)
        if out_dir.exists():
            out_dir.rmdir()  # empty: rename(2) cannot replace a folder portably
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_empty(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise InputError(
            f"{out_dir}: already exists and is not an empty directory; "
            "choose a new output directory or remove it first"
        )


def write_tif(
    path: Path,
    array: np.ndarray,
    crs: CRS,
    transform: Affine,
    tags: dict[str, Any] | None = None,
    nodata: float | None = 0,
) -> None:
    """Single-band deflate-compressed GeoTIFF, tiled 16 x 16 px so windows read little."""
    profile = {
        "driver": "GTiff",
        "height": array.shape[0],
        "width": array.shape[1],
        "count": 1,
        "dtype": array.dtype.name,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
        "compress": "deflate",
        "predictor": 3 if array.dtype.kind == "f" else 2,
        "zlevel": 1,
        "tiled": True,
        "blockxsize": 16,
        "blockysize": 16,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array, 1)
        if tags:
            dst.update_tags(**{k: str(v) for k, v in tags.items()})


def licsar_coherence(coh: np.ndarray) -> np.ndarray:
    """Coherence as the LiCSAR layout decodes it (uint8 code / 255), 0 where no data."""
    return encode_cc(coh).astype(np.float32) / np.float32(255.0)


def shifted_grid(grid: mosaic.Grid, dx_px: float, dy_px: float) -> mosaic.Grid:
    """`grid` moved by (dx_px east, dy_px south) pixels: off its lattice unless whole."""
    t = grid.transform
    moved = Affine(t.a, 0.0, t.c + dx_px * t.a, 0.0, t.e, t.f + dy_px * t.e)
    return mosaic.Grid(moved, grid.shape, grid.crs)


def warp_layer(
    values: np.ndarray, src: mosaic.Grid, dst: mosaic.Grid, labels: bool = False
) -> np.ndarray:
    """A (y, x) layer (NaN = no data) on `src` resampled onto `dst` (bilinear; nearest for
    labels) with the readers' own `mosaic.warp_onto`: the simulated field seen on a product
    grid that is not the scene's. Returns float32, NaN where `dst` lies outside `src`."""
    data = np.asarray(values, dtype=np.float32)
    method = Resampling.nearest if labels else Resampling.bilinear
    return mosaic.warp_onto(dst, src, lambda win: data[win.slices()], method)


def ymd(date: np.datetime64) -> str:
    """'YYYYMMDD' of a date."""
    return str(np.datetime64(date, "D")).replace("-", "")


def write_geotiff_stack(
    scene: Scene,
    out_dir: Path,
    phase_sign: int = 1,
    progress: bool = False,
    pair_grids: Mapping[int, mosaic.Grid] | None = None,
) -> Path:
    """Write `scene` as a generic GeoTIFF pair stack at `out_dir`; returns `out_dir`.

    `phase_sign` is the file's convention: +1 writes the scene's phase (positive = away from
    the satellite), -1 its negative; read it back with `IngestConfig.geotiff_phase_sign` equal
    to it. `pair_grids` {pair index: grid}: those pairs' phase and coherence are resampled
    onto that grid (`warp_layer`). Written to a temporary folder renamed at the end (nothing
    left on failure).
    """
    if phase_sign not in (1, -1):
        raise ValueError(f"phase_sign must be 1 or -1, got {phase_sign!r}")
    cfg, truth = scene.config, scene.truth
    crs, transform = CRS.from_epsg(4326), geotransform(cfg)
    scene_grid = mosaic.Grid(transform, (cfg.ny, cfg.nx), crs)
    pair_grids = dict(pair_grids or {})
    common = {
        "WAVELENGTH_METRES": repr(scene.wavelength),
        "INCIDENCE_DEGREES": repr(float(truth["incidence"].values.mean())),
        "HEADING_DEGREES": repr(float(truth.attrs["heading"])),
        "INSAR_PROCESSOR": "mtinsar.simulate",
        "DATA_UNITS": "RADIANS",
    }
    bperp = scene.pair_bperp()
    ks: Any = range(len(scene.pairs))
    if progress:
        from tqdm.auto import tqdm

        ks = tqdm(ks, desc="interferograms", unit="pair")
    with staged_directory(Path(out_dir)) as tmp:
        for k in ks:
            i, j = scene.pairs[k]
            ref, sec = scene.dates[i], scene.dates[j]
            unw, coh = scene.interferogram(k)
            grid = pair_grids.get(k, scene_grid)
            if k in pair_grids:
                unw, coh = (warp_layer(v, scene_grid, grid) for v in (unw, coh))
            stem = f"ifg_{ymd(ref)}-{ymd(sec)}"
            tags = {
                **common,
                "FIRST_DATE": str(np.datetime64(ref, "D")),
                "SECOND_DATE": str(np.datetime64(sec, "D")),
                "BPERP": repr(float(bperp[k])),
            }
            phase = encode_unw(unw) * np.float32(phase_sign)
            write_tif(tmp / f"{stem}_unw.tif", phase, grid.crs, grid.transform, tags)
            write_tif(tmp / f"{stem}_coh.tif", licsar_coherence(coh), grid.crs, grid.transform)
        height = truth["height"].values.astype(np.float32)
        write_tif(tmp / "dem.tif", height, crs, transform, nodata=None)
        (tmp / "scene.json").write_text(cfg.model_dump_json(indent=2) + "\n")
    logger.info("wrote generic GeoTIFF stack (%d pairs) to %s", len(scene.pairs), out_dir)
    return Path(out_dir)
