"""Externally computed tropospheric delays (GACOS, ERA5-derived maps) applied per date.

Users who have per-date delay maps from a weather model, e.g. GACOS (Yu et al. 2018, JGR
Solid Earth 123(10), ZTD from the ECMWF HRES model fused with GNSS) or ERA5 reanalysis
(Hersbach et al. 2020, QJRMS 146; integrated with PyAPS, Jolivet et al. 2011), remove them
as MintPy's `tropo_gacos`/`tropo_pyaps3` do (Yunjun et al. 2019, Comput. Geosci. 133):

1. read each date's map (GeoTIFF, or GACOS binary `.ztd` with its `.rsc` header) and
   resample it bilinearly onto the result grid (`read_delay_map`, `resample_to_grid`);
2. zenith delays are projected on the line of sight, L = Z / cos θ, θ the incidence angle
   (the mapping-function approximation used by GACOS and MintPy);
3. a delay lengthens the path, which looks like motion away from the satellite, so its
   displacement equivalent is -L;
4. it is differenced relative to the reference date and subtracted, and the result is
   re-referenced to the reference area, like the time series (`correct_external`).

Absolute delays are fine: any part that is the same at every date (most of the
hydrostatic delay) cancels in step 4. File reading is in the small I/O functions
`find_delay_files` and `read_delay_map`, wired with the resampling by `load_delays`; the
rest is numerics on arrays.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, cast

import numpy as np
import rioxarray
import xarray as xr
from rasterio.enums import Resampling
from rasterio.errors import RasterioError

from mtinsar.config import ExternalDelayConfig
from mtinsar.conventions import as_day
from mtinsar.corrections.ramp import rereference_to_area
from mtinsar.errors import InputError

log = logging.getLogger(__name__)

#: Coverage tolerance [fraction of a delay-map pixel] when checking that a map holds the grid.
_EDGE_TOL = 0.5


# --------------------------------------------------------------------------- I/O


def find_delay_files(
    directory: str | Path, dates: Sequence[np.datetime64] | np.ndarray, patterns: Sequence[str]
) -> list[Path]:
    """The delay map of each date: the first pattern matching exactly one file."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(
            f"delay-map folder {directory} does not exist; set external.directory to the "
            "folder of GACOS/ERA5 maps or disable external.enabled"
        )
    found, missing = [], []
    for date in dates:
        ymd = str(as_day(date)).replace("-", "")
        match = None
        for pattern in patterns:
            hits = sorted(directory.glob(pattern.format(date=ymd)))
            hits = [h for h in hits if h.suffix != ".rsc"]
            if len(hits) > 1:
                raise InputError(
                    f"{len(hits)} files in {directory} match {pattern!r} for {ymd} "
                    f"({', '.join(h.name for h in hits[:3])}); make external.patterns specific"
                )
            if hits:
                match = hits[0]
                break
        if match is None:
            missing.append(ymd)
        else:
            found.append(match)
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise InputError(
            f"no delay map in {directory} for {len(missing)} of {len(dates)} dates ({shown}) "
            f"with patterns {list(patterns)}; provide a map for every date of the time series "
            "(e.g. order them from GACOS) or fix external.patterns"
        )
    return found


def read_delay_map(path: str | Path) -> xr.DataArray:
    """One delay map as a 2-D DataArray (y, x) with its CRS and transform.

    GeoTIFF (any single-band raster GDAL reads), or GACOS binary: little-endian float32,
    rows north to south, with a ROI_PAC-style `<file>.rsc` header giving WIDTH, FILE_LENGTH,
    X_FIRST, Y_FIRST (upper-left corner of the first pixel), X_STEP, Y_STEP in EPSG:4326.
    """
    path = Path(path)
    rsc = path.with_name(path.name + ".rsc")
    if rsc.is_file():
        return _read_gacos_binary(path, rsc)
    try:
        with cast(xr.DataArray, rioxarray.open_rasterio(path, masked=True)) as da:
            da = da.load()
    except (RasterioError, OSError) as exc:
        raise InputError(
            f"cannot read delay map {path}: {exc}; it must be a GeoTIFF, or a GACOS "
            "binary with its .rsc header next to it"
        ) from None
    if da.rio.crs is None:
        raise InputError(f"delay map {path} has no coordinate reference system; write one")
    if da.sizes.get("band", 1) != 1:
        raise InputError(
            f"delay map {path} has {da.sizes['band']} bands; give one single-band map per date"
        )
    return da.squeeze("band", drop=True)


def _read_gacos_binary(path: Path, rsc: Path) -> xr.DataArray:
    keys = {}
    for line in rsc.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) >= 2:
            keys[parts[0].upper()] = parts[1]
    try:
        width, length = int(keys["WIDTH"]), int(keys["FILE_LENGTH"])
        x0, y0 = float(keys["X_FIRST"]), float(keys["Y_FIRST"])
        dx, dy = float(keys["X_STEP"]), float(keys["Y_STEP"])
    except (KeyError, ValueError) as exc:
        raise InputError(
            f"GACOS header {rsc} lacks or garbles {exc}; it needs WIDTH, FILE_LENGTH, "
            "X_FIRST, Y_FIRST, X_STEP, Y_STEP"
        ) from None
    data = np.fromfile(path, dtype="<f4")
    if data.size != width * length:
        raise InputError(
            f"GACOS file {path} holds {data.size} values but its header says "
            f"{length} x {width}; download it again"
        )
    da = xr.DataArray(
        data.reshape(length, width),
        coords={"y": y0 + (np.arange(length) + 0.5) * dy, "x": x0 + (np.arange(width) + 0.5) * dx},
        dims=("y", "x"),
    )
    return da.rio.write_crs("EPSG:4326")


def load_delays(
    config: ExternalDelayConfig,
    dates: Sequence[np.datetime64] | np.ndarray,
    like: xr.DataArray,
    wavelength: float,
) -> np.ndarray:
    """Delay maps of `dates` on the grid of `like`, as one-way path delay (t, y, x) [m].

    Still zenith or slant as `config.kind` says; `correct_external` does the projection.
    """
    if config.directory is None:
        raise InputError("external.directory is not set; give the folder of delay maps")
    files = find_delay_files(config.directory, dates, config.patterns)
    factor = wavelength / (4.0 * np.pi) if config.units == "rad" else 1.0
    cube = np.empty((len(files), like.sizes["y"], like.sizes["x"]), dtype=np.float64)
    for k, path in enumerate(files):
        cube[k] = resample_to_grid(read_delay_map(path), like, str(path)) * factor
    log.info("read %d delay maps from %s", len(files), config.directory)
    return cube


# --------------------------------------------------------------------------- numerics


def resample_to_grid(delay: xr.DataArray, like: xr.DataArray, source: str = "") -> np.ndarray:
    """`delay` bilinearly resampled onto the grid of `like` (y, x) (float64, NaN = no data).

    Raises InputError when the delay map does not cover the grid.
    """
    left, bottom, right, top = like.rio.transform_bounds(delay.rio.crs)
    d_left, d_bottom, d_right, d_top = delay.rio.bounds()
    rx, ry = (abs(r) for r in delay.rio.resolution())
    if (
        left < d_left - _EDGE_TOL * rx
        or right > d_right + _EDGE_TOL * rx
        or bottom < d_bottom - _EDGE_TOL * ry
        or top > d_top + _EDGE_TOL * ry
    ):
        raise InputError(
            f"delay map {source or '(in memory)'} covers x {d_left:.4f}..{d_right:.4f}, "
            f"y {d_bottom:.4f}..{d_top:.4f} but the result grid spans x {left:.4f}..{right:.4f}, "
            f"y {bottom:.4f}..{top:.4f}; order maps for a larger area"
        )
    out = delay.astype(np.float64).rio.reproject_match(like, resampling=Resampling.bilinear)
    return np.asarray(out.values, dtype=np.float64)


def delay_to_displacement(
    delay: np.ndarray, incidence: np.ndarray | None, kind: Literal["zenith", "slant"] = "zenith"
) -> np.ndarray:
    """LOS displacement equivalent [m, + towards the satellite] of one-way delays [m].

    `delay` (t, y, x) is a zenith delay (projected by 1/cos(incidence [deg]), `incidence`
    (y, x) required) or a slant delay; a longer path reads as motion away, hence -L.
    """
    if kind == "zenith":
        if incidence is None:
            raise ValueError("zenith delays need the incidence angle to be projected on the LOS")
        return -delay / np.cos(np.deg2rad(np.asarray(incidence, dtype=np.float64)))
    if kind == "slant":
        return -np.asarray(delay, dtype=np.float64)
    raise ValueError(f"kind must be 'zenith' or 'slant', got {kind!r}")


def correct_external(
    displacement: np.ndarray,
    delay: np.ndarray,
    incidence: np.ndarray | None,
    kind: Literal["zenith", "slant"] = "zenith",
    reference: tuple[int, int] | None = None,
    reference_radius: int = 0,
    reference_index: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Subtract external delays `delay` (t, y, x) [m] from `displacement` (t, y, x) [m].

    The delays' displacement equivalent (`delay_to_displacement`) is taken relative to the
    date `reference_index`; with `reference` (row, col) and `reference_radius` the result
    is re-referenced to the reference area (`ramp.rereference_to_area`). NaN in a map gives NaN
    there. Returns (corrected cube with the input's dtype, the correction actually
    subtracted (t, y, x) [m]).
    """
    if delay.shape != displacement.shape:
        raise InputError(
            f"delay maps {delay.shape} do not match the time series {displacement.shape}; "
            "one map per date on the result grid is needed"
        )
    correction = delay_to_displacement(delay, incidence, kind)
    correction -= correction[reference_index]
    corrected = (displacement - correction).astype(displacement.dtype)
    rereference_to_area(corrected, reference, reference_radius)
    return corrected, displacement - corrected
