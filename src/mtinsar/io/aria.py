"""NASA JPL ARIA Sentinel-1 GUNW products (netCDF4/HDF5) -> `IfgStack`.

One file per pair and frame, named (FORMATS.md §2)::

    S1-GUNW-{A|D}-{R|L}-{track:03}-tops-{LATER}_{EARLIER}-{HHMMSS}-{lon}{E|W}_{lat}{N|S}-PP-{hash}-v{X_Y_Z}.nc

Files are opened with h5netcdf (structure, dimensions, coordinates, metadata); pixel windows
and cubes are sliced through h5py, the HDF5 layer h5netcdf is built on, so only the selected
pixels are read. Fields read:

* ``/science/grids/data/unwrappedPhase`` [rad], ``coherence`` [0-1] and, when present,
  ``connectedComponents`` (2-D on the ``latitude``/``longitude`` pixel-centre vectors,
  EPSG:4326); no data is the variable's ``_FillValue`` (GUNW: 0, 0 and -1), else 0 / 0 / -1;
* ``/science/grids/imagingGeometry/{perpendicularBaseline, incidenceAngle, azimuthAngle}``:
  3-D cubes on (``heightsMeta``, ``latitudeMeta``, ``longitudeMeta``), interpolated
  trilinearly to every pixel at its DEM height (`interpolate_cube`);
* ``/science/radarMetaData/wavelength`` [m] (the config's wavelength overrides it);
* the file name: dates, track, orbit direction; the root attribute ``version``.

Sign and baseline convention: a GUNW pair is named LATER_EARLIER (the later date is the
reference) and its unwrapped phase is positive for range *decrease* (towards the sensor),
the opposite of the IfgStack's earlier->later, positive-away `unw`. MintPy's ``prep_aria.py``
converts with ``unwrapPhase *= -1`` and ``bperp *= -1`` ("date2_date1 -> date1_date2"); so
here ``unw = PHASE_FACTOR * unwrappedPhase`` and ``bperp = BPERP_FACTOR * perpendicularBaseline``
with both factors -1, and the pair is labelled EARLIER_LATER.

Geometry: GUNW carries no DEM. With ``dem=`` (any raster GDAL reads, any CRS; resampled
bilinearly onto the stack grid) the cubes are read at each pixel's DEM height and `height`
is that DEM. Without it, `height` is NaN and the cubes are read at 0 m (ellipsoid): at
Sentinel-1's ~700 km altitude the incidence angle changes by ~0.04 deg per km of height, so
the LOS vector is off by < 1e-3 per km of topography. `incidence` [deg]; the LOS unit vector
(ground -> satellite) comes from ``azimuthAngle``, which GUNW measures from east,
anticlockwise; MintPy subtracts 90 deg to get ISCE's from-north convention.

Several frames of one pair (along a track) are stitched onto one grid, northern frame first,
each later frame shifted by the whole 2 pi cycles that match it to the frames before it in
their overlap (`mtinsar.io.core.mosaic.stitch`). Products of different extents are put on the
intersection of all pairs, or on the user's bbox/polygon (`mtinsar.io.core.select`).

Pixels are read lazily (`mtinsar.io.core.mosaic.lazy_layer`): unw/coh/conncomp are dask arrays
whose (all pairs, chunk_size, chunk_size) blocks each open only the frames under them and
read only their window, resampled where grids differ. Headers, bperp and the geometry are
read when the stack is opened, so a bad file fails then.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import dask.array as da
import h5netcdf
import h5py
import numpy as np
import rasterio
import rasterio.errors
import xarray as xr
from rasterio.crs import CRS
from rasterio.warp import Resampling
from rasterio.windows import Window

from mtinsar.config import IngestConfig
from mtinsar.errors import InputError
from mtinsar.io.core import grid as gridlib
from mtinsar.io.core import mosaic
from mtinsar.io.core.select import select_area, select_pairs
from mtinsar.sources import remote
from mtinsar.stack import validate

logger = logging.getLogger(__name__)

#: unw = PHASE_FACTOR * unwrappedPhase: GUNW phase is later->earlier, positive towards the
#: sensor; MintPy prep_aria.py multiplies by -1 ("date2_date1 -> date1_date2").
PHASE_FACTOR = -1.0
#: bperp = BPERP_FACTOR * perpendicularBaseline (same reason, same source).
BPERP_FACTOR = -1.0
#: GUNW azimuthAngle (from east, anticlockwise) minus this = ISCE/MintPy azimuth (from north).
AZIMUTH_EAST_TO_NORTH_DEG = 90.0

DATA = "science/grids/data"
GEOMETRY = "science/grids/imagingGeometry"
RADAR = "science/radarMetaData"
#: Data-group layer -> (default no-data value, resampling when grids differ).
LAYERS = {
    "unwrappedPhase": (0.0, Resampling.bilinear),
    "coherence": (0.0, Resampling.bilinear),
    "connectedComponents": (-1.0, Resampling.nearest),
}
REQUIRED = [f"{DATA}/{v}" for v in ("unwrappedPhase", "coherence", "latitude", "longitude")] + [
    f"{GEOMETRY}/{v}"
    for v in (
        "perpendicularBaseline",
        "incidenceAngle",
        "azimuthAngle",
        "heightsMeta",
        "latitudeMeta",
        "longitudeMeta",
    )
]
NAME_RE = re.compile(
    r"^S1-GUNW-(?P<direction>[AD])-(?P<look>[RL])-(?P<track>\d{3})-tops-"
    r"(?P<later>\d{8})_(?P<earlier>\d{8})-(?P<time>\d{6})-.+\.nc$"
)
_NAME_HELP = (
    "S1-GUNW-{A|D}-{R|L}-{track}-tops-{LATER}_{EARLIER}-{HHMMSS}-{lon}_{lat}-PP-{hash}-v{X_Y_Z}.nc"
)
_REDOWNLOAD = "download the product again"
#: Bperp is averaged over at most this many pixels per frame (the cube is smooth: ~11 km).
_BPERP_SAMPLES = 200
#: Pixels per block when interpolating cubes (bounds the memory of the point arrays).
_CUBE_BLOCK_PX = 1 << 20
#: Bytes per ranged request when a GUNW file is read from object storage / HTTP (the choice
#: is measured at `remote.HDF5_BLOCK_BYTES`).
REMOTE_BLOCK_BYTES = remote.HDF5_BLOCK_BYTES


@dataclass(frozen=True)
class GunwFile:
    """What one GUNW file holds, from its name and coordinates (no pixel data read)."""

    path: Path | remote.RemotePath
    label: str  # "EARLIER_LATER", the IfgStack pair label
    track: int
    orbit_direction: str  # "ascending" | "descending"
    grid: mosaic.Grid
    wavelength: float | None
    version: str
    has_conncomp: bool


# --------------------------------------------------------------------------- entry points


def is_aria(path: str | Path) -> bool:
    """True for an ARIA GUNW file (by name) or a folder holding some."""
    p = remote.as_path(path)
    if p.is_file():
        return NAME_RE.match(p.name) is not None
    if p.is_dir():
        return any(NAME_RE.match(f.name) for f in p.glob("S1-GUNW-*.nc"))
    return False


def read_aria(
    path_or_paths: str | Path | Sequence[str | Path],
    config: IngestConfig | None = None,
    progress: bool = False,
    *,
    dem: str | Path | None = None,
    align_cycles: bool = True,
) -> xr.Dataset:
    """Read ARIA GUNW products (files and/or folders of them) into one IfgStack.

    config: selection (pairs, dates, bbox/polygon), multilook and wavelength override.
    dem: optional DEM raster for `height` and for reading the geometry cubes at ground
    height (default `config.dem`; else 0 m, see the module doc). align_cycles: shift each
    frame of a pair by whole 2 pi cycles to match its neighbour before stitching. Returns a
    validated IfgStack whose unw/coh/conncomp are dask arrays of (all pairs,
    config.chunk_size, config.chunk_size) blocks, each reading only its window of the files
    under it when computed (headers, bperp and geometry are read now); raises InputError
    naming the file and the fix.
    """
    config = config if config is not None else IngestConfig()
    dem = dem if dem is not None else config.dem
    files = find_products(path_or_paths)
    products = [inspect_gunw(f, need_wavelength=config.wavelength is None) for f in files]
    track, direction = _check_track(products)
    wavelength = config.wavelength or _check_wavelength(products)
    groups = _group_by_pair(products)
    labels = sorted(groups)
    ref = np.array([_date(lb[:8]) for lb in labels])
    sec = np.array([_date(lb[9:]) for lb in labels])
    source = _source_name(path_or_paths)
    labels = [labels[k] for k in select_pairs(labels, ref, sec, config, source)]
    footprints = [[f.grid for f in groups[lb]] for lb in labels]
    names = [_names(groups[lb]) for lb in labels]
    selected = config.bbox is not None or config.polygon is not None
    base = mosaic.common_grid(footprints, names, "union" if selected else "intersection")
    area = select_area(base.transform, base.shape, base.crs, config, source)
    dst = base.crop(area.window)
    mosaic.require_overlap(dst, footprints, names)

    height = _dem_on_grid(remote.as_path(dem), dst) if dem is not None else None
    pair_groups = [groups[lb] for lb in labels]
    pair_vars = _lazy_pairs(pair_groups, dst, area.inside, config, align_cycles)
    pair_vars["bperp"] = _pair_bperp(pair_groups, dst, height, progress)
    geometry = _geometry(products, dst, height)
    ds = _assemble(labels, pair_vars, geometry, dst, config.multilook)
    ds.attrs.update(
        wavelength=float(wavelength),
        platform="Sentinel-1",
        orbit_direction=direction,
        track=track,
        frame="",
        processor="ARIA-GUNW",
        source=source,
        multilook=int(config.multilook),
        product_version=",".join(sorted({p.version for p in products})),
    )
    logger.info("read %d pairs (%d GUNW files) from %s: %s", len(labels), len(files), source,
                dict(ds.sizes))  # fmt: skip
    return validate(ds, source=source)


# --------------------------------------------------------------------------- discovery


def find_products(
    path_or_paths: str | Path | Sequence[str | Path],
) -> list[Path | remote.RemotePath]:
    """GUNW files named by the argument: files as given, folders searched for S1-GUNW-*.nc.

    Local paths or `s3://`/`https://` URLs (read in place, see `_open`)."""
    single = isinstance(path_or_paths, str | Path | remote.RemotePath)
    items = [path_or_paths] if single else list(path_or_paths)
    if not items:
        raise InputError("no ARIA GUNW product given; pass .nc files or a folder holding them")
    files: list[Path | remote.RemotePath] = []
    for item in map(remote.as_path, items):
        if item.is_dir():
            found = sorted(item.glob("S1-GUNW-*.nc")) or sorted(item.rglob("S1-GUNW-*.nc"))
            if not found:
                raise InputError(
                    f"{item}: no ARIA GUNW product (S1-GUNW-*.nc) in this folder; point at the "
                    "folder holding the downloaded .nc files"
                )
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise InputError(f"{item}: no such file or folder; check the path")
    duplicates = {f.name for f in files if sum(g.name == f.name for g in files) > 1}
    if duplicates:
        raise InputError(
            f"{sorted(duplicates)[0]}: the same GUNW file given twice; pass each product once"
        )
    return files


def _parse_name(path: Path) -> re.Match[str]:
    match = NAME_RE.match(path.name)
    if match is None:
        raise InputError(
            f"{path}: not an ARIA GUNW file name ({_NAME_HELP}); keep the product's original "
            "name, which holds its dates and track"
        )
    try:
        later, earlier = (datetime.strptime(match[k], "%Y%m%d") for k in ("later", "earlier"))
    except ValueError as exc:
        raise InputError(f"{path}: invalid date in the file name ({exc}); {_REDOWNLOAD}") from exc
    if not later > earlier:
        raise InputError(
            f"{path}: dates {match['later']}_{match['earlier']} are not LATER_EARLIER as in every "
            "GUNW name (the later date is the reference); the phase sign depends on it, so "
            "restore the product's original name"
        )
    return match


@contextmanager
def _open(path: Path | remote.RemotePath, opener: Any = h5netcdf.File) -> Iterator[Any]:
    """The file opened with `opener` (h5netcdf.File, or h5py.File for fast window slices);
    HDF5 failures (missing, truncated, corrupt file) become an InputError naming it.

    A remote file is handed to HDF5 as an fsspec file object: HDF5 seeks to the metadata
    and chunks it needs and each read becomes a ranged request (of `REMOTE_BLOCK_BYTES`,
    cached), so a window costs its chunks, not the file."""
    with remote.open_file(path, REMOTE_BLOCK_BYTES) as target:
        with _open_hdf5(path, target, opener) as handle:
            yield handle


@contextmanager
def _open_hdf5(path: Path | remote.RemotePath, target: Any, opener: Any) -> Iterator[Any]:
    try:
        handle = opener(target, "r")
    except (OSError, ValueError) as exc:
        raise InputError(
            f"{path}: cannot be read as a netCDF4/HDF5 file ({exc}); it is truncated or "
            f"corrupt: {_REDOWNLOAD}"
        ) from exc
    try:
        yield handle
    except (OSError, RuntimeError) as exc:  # h5py raises these for unreadable chunks
        raise InputError(
            f"{path}: data unreadable ({exc}); the file is truncated or corrupt: {_REDOWNLOAD}"
        ) from exc
    finally:
        handle.close()


def inspect_gunw(path: Path | remote.RemotePath, need_wavelength: bool = True) -> GunwFile:
    """Name, structure, grid and metadata of one GUNW file (checks every required field)."""
    path = remote.as_path(path)
    match = _parse_name(path)
    with _open(path) as f:
        # One h5netcdf Group per path (building one is the costly part of a look-up).
        groups = {g: f[g] if g in f else None for g in (DATA, GEOMETRY, RADAR)}
        present = {
            f"{g}/{v}" for g, group in groups.items() if group is not None for v in group.variables
        }
        missing = [name for name in REQUIRED if name not in present]
        if need_wavelength and f"{RADAR}/wavelength" not in present:
            missing.append(f"{RADAR}/wavelength")
        if missing:
            fix = _REDOWNLOAD
            if missing == [f"{RADAR}/wavelength"]:
                fix = "set ingest.wavelength [m] (Sentinel-1: 0.05546576), or " + fix
            raise InputError(
                f"{path}: missing /{', /'.join(missing)}: not a complete ARIA GUNW product; {fix}"
            )
        data = groups[DATA]
        lat = np.asarray(data.variables["latitude"][:], dtype=np.float64)
        lon = np.asarray(data.variables["longitude"][:], dtype=np.float64)
        try:
            grid = mosaic.Grid.from_centres(lat, lon, CRS.from_epsg(4326))
        except ValueError as exc:
            raise InputError(
                f"{path}: /{DATA}/latitude, longitude do not form a north-up grid ({exc}); "
                f"{_REDOWNLOAD}"
            ) from exc
        layers = [name for name in LAYERS if f"{DATA}/{name}" in present]
        for name in layers:
            shape = tuple(data.variables[name].shape)
            if shape != grid.shape:
                raise InputError(
                    f"{path}: /{DATA}/{name} has shape {shape}, but latitude x longitude is "
                    f"{grid.shape}; {_REDOWNLOAD}"
                )
        radar = groups[RADAR]
        wavelength = (
            float(radar.variables["wavelength"][()]) if f"{RADAR}/wavelength" in present else None
        )
        version = _text(f.attrs.get("version", "unknown"))
    if wavelength is not None and not (np.isfinite(wavelength) and wavelength > 0):
        raise InputError(
            f"{path}: /{RADAR}/wavelength is {wavelength!r}, not a positive length [m]; "
            "set ingest.wavelength or " + _REDOWNLOAD
        )
    return GunwFile(
        path=path,
        label=f"{match['earlier']}_{match['later']}",
        track=int(match["track"]),
        orbit_direction="ascending" if match["direction"] == "A" else "descending",
        grid=grid,
        wavelength=wavelength,
        version=version,
        has_conncomp="connectedComponents" in layers,
    )


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, np.ndarray) and value.size == 1:
        return _text(value.item())
    return str(value)


def _check_track(products: list[GunwFile]) -> tuple[int, str]:
    first = products[0]
    for p in products[1:]:
        if (p.track, p.orbit_direction) != (first.track, first.orbit_direction):
            raise InputError(
                f"mixed tracks: {p.path} is track {p.track} ({p.orbit_direction}) but "
                f"{first.path} is track {first.track} ({first.orbit_direction}); a stack holds "
                "one track: read each track's products separately"
            )
    return first.track, first.orbit_direction


def _check_wavelength(products: list[GunwFile]) -> float:
    first = products[0]
    assert first.wavelength is not None
    for p in products[1:]:
        assert p.wavelength is not None
        if abs(p.wavelength - first.wavelength) > 1e-6 * first.wavelength:
            raise InputError(
                f"mixed wavelengths: {p.path} has {p.wavelength} m but {first.path} has "
                f"{first.wavelength} m; a stack holds one sensor's products: read them "
                "separately"
            )
    return first.wavelength


def _group_by_pair(products: list[GunwFile]) -> dict[str, list[GunwFile]]:
    """Files of each pair, northern frame first; refuses the same frame twice."""
    groups: dict[str, list[GunwFile]] = {}
    for p in products:
        groups.setdefault(p.label, []).append(p)
    for frames in groups.values():
        frames.sort(key=lambda p: (-p.grid.bounds[3], p.grid.bounds[0], p.path.name))
        for a, b in zip(frames, frames[1:], strict=False):
            if np.allclose(a.grid.bounds, b.grid.bounds, rtol=0, atol=1e-6):
                raise InputError(
                    f"{a.path} and {b.path}: the same pair and frame twice (e.g. two product "
                    "versions); keep one of them (the newest version)"
                )
    return groups


def _names(frames: list[GunwFile]) -> str:
    return " + ".join(str(f.path) for f in frames)


def _source_name(path_or_paths: str | Path | Sequence[str | Path]) -> str:
    if isinstance(path_or_paths, str | Path | remote.RemotePath):
        return str(path_or_paths)
    items = [str(p) for p in path_or_paths]
    return items[0] if len(items) == 1 else f"{items[0]} (+{len(items) - 1} more)"


def _date(ymd: str) -> np.datetime64:
    return np.datetime64(f"{ymd[:4]}-{ymd[4:6]}-{ymd[6:8]}", "ns")


# --------------------------------------------------------------------------- pixels


def _fill_value(var: Any, default: float | None) -> float | None:
    fill = var.attrs.get("_FillValue", default)
    return None if fill is None else float(np.asarray(fill).ravel()[0])


def _layer_reader(var: Any, default_fill: float) -> mosaic.WindowReader:
    """Reads windows of the HDF5 dataset `var` as float32, its no-data value -> NaN."""
    fill = _fill_value(var, default_fill)

    def read(win: gridlib.PixelWindow) -> np.ndarray:
        raw = np.asarray(var[win.row0 : win.row1, win.col0 : win.col1])
        out = raw.astype(np.float32)
        bad = ~np.isfinite(out)
        if fill is not None and np.isfinite(fill):
            bad |= raw == np.asarray(fill, dtype=raw.dtype)
        out[bad] = np.nan
        return out

    return read


def _open_layer(
    path: Path | remote.RemotePath, name: str, fill: float, factor: float
) -> contextlib.AbstractContextManager[mosaic.WindowReader]:
    """Opener of one data layer of a GUNW file, its values times `factor` (sign)."""

    @contextmanager
    def opened() -> Iterator[mosaic.WindowReader]:
        # Window slices go through h5py (h5netcdf's own layer): h5netcdf adds ~3 ms of
        # dimension bookkeeping per access, more than reading a small window.
        with _open(path, h5py.File) as f:
            read = _layer_reader(f[f"{DATA}/{name}"], fill)
            if factor == 1.0:
                yield read
            else:
                yield lambda win: read(win) * np.float32(factor)

    return opened()


def _sources(groups: list[list[GunwFile]], name: str) -> list[list[mosaic.Source]]:
    """The frames of every pair as lazy sources of data layer `name`."""
    fill, resampling = LAYERS[name]
    factor = PHASE_FACTOR if name == "unwrappedPhase" else 1.0
    return [
        [
            mosaic.Source(f.grid, partial(_open_layer, f.path, name, fill, factor), resampling)
            for f in frames
        ]
        for frames in groups
    ]


def _lazy_pairs(
    groups: list[list[GunwFile]],
    dst: mosaic.Grid,
    inside: np.ndarray | None,
    config: IngestConfig,
    align_cycles: bool,
) -> dict[str, Any]:
    """Lazy unw [rad], coh [0-1] and (when every file has it) conncomp (pair, y, x) on the
    multilooked `dst`: dask arrays of (all pairs, chunk_size, chunk_size) blocks, each block
    reading only its own window of the files that cover it when computed."""
    common = {"factor": config.multilook, "chunk_size": config.chunk_size, "inside": inside}
    out: dict[str, Any] = {
        "unw": mosaic.lazy_layer(
            _sources(groups, "unwrappedPhase"), dst, align_cycles=align_cycles, **common
        ),
        "coh": mosaic.lazy_layer(_sources(groups, "coherence"), dst, **common),
    }
    if all(f.has_conncomp for frames in groups for f in frames):
        cc = mosaic.lazy_layer(
            _sources(groups, "connectedComponents"), dst, labels=True, **{**common, "inside": None}
        )
        out["conncomp"] = da.where(da.isnan(cc), -1, cc).astype(np.int16)
    return out


def _pair_bperp(
    groups: list[list[GunwFile]], dst: mosaic.Grid, height: np.ndarray | None, progress: bool
) -> np.ndarray:
    """bperp [m, IfgStack sign] (pair,) float32: mean of the cube over the frames' pixels."""
    bperp = np.full(len(groups), np.nan, dtype=np.float32)
    for k, frames in enumerate(_progress(groups, progress)):
        samples = []
        for frame in frames:
            with _open(frame.path, h5py.File) as f:
                samples.append(_bperp_samples(f, frame, dst, height))
        values = np.concatenate(samples)
        if np.isfinite(values).any():
            bperp[k] = BPERP_FACTOR * np.nanmean(values)
    return bperp


def _progress(items: list[list[GunwFile]], enabled: bool) -> Iterable[list[GunwFile]]:
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc="reading GUNW pairs", unit="pair")


def _covered(frame: GunwFile, dst: mosaic.Grid) -> gridlib.PixelWindow | None:
    """Pixels of `dst` inside the frame's footprint."""
    return gridlib.bbox_window(dst.transform, dst.shape, frame.grid.bounds)


# --------------------------------------------------------------------------- geometry cubes


def interpolate_cube(
    cube: np.ndarray,
    heights: np.ndarray,
    lats: np.ndarray,
    lons: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    height: np.ndarray,
) -> np.ndarray:
    """Trilinear interpolation of a (height, lat, lon) cube at points (lat, lon, height).

    `cube` is sampled on the 1-D axes `heights` [m], `lats`, `lons` [deg] (either order);
    `lat`, `lon`, `height` broadcast together to the output shape. Points outside the cube
    are extrapolated linearly (GUNW cubes extend past the data; the DEM may exceed the
    height levels). Returns float64; NaN in the cube propagates.
    """
    axes = [np.asarray(a, dtype=np.float64) for a in (heights, lats, lons)]
    values = np.asarray(cube, dtype=np.float64)
    for i, axis in enumerate(axes):
        if axis.size > 1 and axis[0] > axis[-1]:
            axes[i] = axis[::-1]
            values = np.flip(values, axis=i)
    # imported here: format detection imports this module for every product folder, and
    # scipy.interpolate alone costs ~0.2 s of start-up
    from scipy.interpolate import RegularGridInterpolator

    interp = RegularGridInterpolator(
        tuple(axes), values, method="linear", bounds_error=False, fill_value=None
    )
    h, y, x = np.broadcast_arrays(
        np.asarray(height, np.float64), np.asarray(lat, np.float64), np.asarray(lon, np.float64)
    )
    points = np.column_stack([h.ravel(), y.ravel(), x.ravel()])
    out = np.empty(points.shape[0], dtype=np.float64)
    for start in range(0, points.shape[0], _CUBE_BLOCK_PX):
        out[start : start + _CUBE_BLOCK_PX] = interp(points[start : start + _CUBE_BLOCK_PX])
    return out.reshape(h.shape)


@dataclass(frozen=True)
class _Cube:
    heights: np.ndarray
    lats: np.ndarray
    lons: np.ndarray
    values: np.ndarray

    def at(self, lat: np.ndarray, lon: np.ndarray, height: np.ndarray) -> np.ndarray:
        return interpolate_cube(self.values, self.heights, self.lats, self.lons, lat, lon, height)


def _cube(f: h5py.File, name: str, path: Path | remote.RemotePath) -> _Cube:
    axes = [np.asarray(f[f"{GEOMETRY}/{a}"][:], dtype=np.float64)
            for a in ("heightsMeta", "latitudeMeta", "longitudeMeta")]  # fmt: skip
    var = f[f"{GEOMETRY}/{name}"]
    values = np.asarray(var[:], dtype=np.float64)
    expected = tuple(a.size for a in axes)
    if values.shape != expected:
        raise InputError(
            f"{path}: /{GEOMETRY}/{name} has shape {values.shape}, expected (heightsMeta, "
            f"latitudeMeta, longitudeMeta) = {expected}; {_REDOWNLOAD}"
        )
    fill = _fill_value(var, None)
    if fill is not None and np.isfinite(fill):
        values[values == fill] = np.nan
    return _Cube(*axes, values)


def _window_points(
    dst: mosaic.Grid, win: gridlib.PixelWindow, height: np.ndarray | None, step: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lat, lon, height) of every `step`-th pixel of `win`; NaN/absent height -> 0 m."""
    y, x = dst.centres()
    rows = np.arange(win.row0, win.row1, step)
    cols = np.arange(win.col0, win.col1, step)
    lat, lon = y[rows][:, None], x[cols][None, :]
    if height is None:
        h = np.zeros((rows.size, cols.size))
    else:
        h = np.nan_to_num(height[np.ix_(rows, cols)].astype(np.float64), nan=0.0)
    return lat, lon, h


def _bperp_samples(
    f: h5py.File, frame: GunwFile, dst: mosaic.Grid, height: np.ndarray | None
) -> np.ndarray:
    """perpendicularBaseline [m, GUNW sign] at up to ~_BPERP_SAMPLES^2 pixels of the frame."""
    win = _covered(frame, dst)
    if win is None:
        return np.empty(0)
    step = max(1, max(win.shape) // _BPERP_SAMPLES)
    lat, lon, h = _window_points(dst, win, height, step)
    return _cube(f, "perpendicularBaseline", frame.path).at(lat, lon, h).ravel()


def _geometry(
    products: list[GunwFile], dst: mosaic.Grid, height: np.ndarray | None
) -> dict[str, np.ndarray]:
    """incidence, azimuth (ISCE convention) [deg] and height [m] (y, x) on `dst`.

    Each pixel takes its value from the first file (in the given order) covering it; files
    whose footprint adds no uncovered pixel are not opened.
    """
    inc = np.full(dst.shape, np.nan)
    az = np.full(dst.shape, np.nan)
    for product in products:
        win = _covered(product, dst)
        if win is None:
            continue
        todo = np.isnan(inc[win.slices()])
        if not todo.any():
            continue
        lat, lon, h = _window_points(dst, win, height)
        with _open(product.path, h5py.File) as f:
            inc_w = _cube(f, "incidenceAngle", product.path).at(lat, lon, h)
            az_w = _cube(f, "azimuthAngle", product.path).at(lat, lon, h)
        inc[win.slices()][todo] = inc_w[todo]
        az[win.slices()][todo] = az_w[todo] - AZIMUTH_EAST_TO_NORTH_DEG
    out = {"incidence": inc.astype(np.float32), "azimuth": az.astype(np.float32)}
    out["height"] = (
        height.astype(np.float32) if height is not None else np.full(dst.shape, np.nan, np.float32)
    )
    return out


# --------------------------------------------------------------------------- DEM


def _dem_on_grid(path: Path | remote.RemotePath, dst: mosaic.Grid) -> np.ndarray:
    """The DEM [m] resampled (bilinear) onto `dst`, NaN where it has no data."""
    fix = "give a DEM raster (GeoTIFF or any GDAL format) covering the products"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with remote.open_raster(path) as src:
                try:
                    grid = mosaic.Grid(
                        src.transform, (src.height, src.width), src.crs or CRS.from_epsg(4326)
                    )
                except ValueError as exc:
                    raise InputError(f"{path}: DEM grid is not north-up ({exc}); {fix}") from exc
                nodata = src.nodata

                def read(win: gridlib.PixelWindow) -> np.ndarray:
                    raw = src.read(1, window=Window(win.col0, win.row0, win.width, win.height))
                    out = raw.astype(np.float32)
                    if nodata is not None and np.isfinite(nodata):
                        out[raw == nodata] = np.nan
                    return out

                height = mosaic.warp_onto(dst, grid, read, Resampling.bilinear)
    except rasterio.errors.RasterioError as exc:
        raise InputError(f"{path}: unreadable DEM ({exc.__cause__ or exc}); {fix}") from exc
    if np.isnan(height).all():
        raise InputError(f"{path}: the DEM does not cover the products' area; {fix}")
    if np.isnan(height).any():
        logger.warning("%s: DEM has no data at %d pixels; geometry read at 0 m there",
                       path, int(np.isnan(height).sum()))  # fmt: skip
    return height


# --------------------------------------------------------------------------- dataset


def _assemble(
    labels: list[str],
    pair_vars: dict[str, Any],
    geometry: dict[str, np.ndarray],
    dst: mosaic.Grid,
    factor: int,
) -> xr.Dataset:
    """LOS vector and multilooked geometry; the IfgStack Dataset (pair_vars already lazy,
    masked and multilooked)."""
    grid_vars = mosaic.stack_geometry(
        geometry["incidence"], geometry["azimuth"], geometry["height"], factor
    )
    ds = mosaic.stack_dataset(dst.coarsen(factor), labels, pair_vars, grid_vars, {})
    if "conncomp" in ds:
        ds["conncomp"].attrs.update(nodata=-1, long_name="connected component (0 = unreliable)")
    return ds
