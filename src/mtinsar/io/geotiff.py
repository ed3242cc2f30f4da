"""Generic GeoTIFF pair stacks (GAMMA/PyRate, GMTSAR, SNAP exports...) -> `IfgStack`.

One unwrapped-phase GeoTIFF per pair, anywhere below `path` (sub-folders are searched)::

    path/cropA_20180106-20180130_VV_8rlks_eqa_unw.tif        (PyRate/GAMMA)
    path/20180106_20180130/unwrap_ll.tif                     (dates in the folder name)
    path/Unw_Phase_ifg_06Jan2018_30Jan2018.tif               (SNAP-style dates)

Files are told apart by name patterns (`IngestConfig.geotiff_*_patterns`, shell-style,
case-insensitive, matched against the name without `.tif`/`.tiff`): unwrapped phase
(default ``*unw*``), coherence (``*cc*``, ``*coh*``, ``*cor*``) and a DEM without pair dates
(``*dem*``, ``*hgt*``, ``*height*``). The pair of a file comes from its name, else the names
of its folders below `path` (``YYYYMMDD[-_]YYYYMMDD`` or ``DDMonYYYY_DDMonYYYY``), else its
GDAL metadata (``FIRST_DATE``/``SECOND_DATE`` as written by PyRate, or ``REFERENCE_DATE``/
``SECONDARY_DATE``, ``MASTER_DATE``/``SLAVE_DATE``); name and metadata must agree.

Sign and units: the phase is read in radians and multiplied by
`IngestConfig.geotiff_phase_sign` (default **+1**: positive phase = range increase = motion
away from the satellite, the convention of GAMMA, ISCE2, SNAP and MintPy, FORMATS.md §9).
The IfgStack keeps that convention, so LOS displacement towards the satellite is
``-wavelength / (4 pi) * unw`` (`mtinsar.conventions`). Set -1 for products whose positive
phase is motion towards the satellite (e.g. ARIA GUNW exports).

Metadata (GDAL tags of the phase files; the first file's value unless said otherwise):
wavelength [m] ``WAVELENGTH_METRES`` (PyRate), ``WAVELENGTH`` or ``WAVELENGTH_M`` (every file
that has it must agree; `IngestConfig.wavelength` overrides; one of the two is required),
incidence [deg] ``INCIDENCE_DEGREES``/``INCIDENCE_ANGLE``, heading [deg clockwise from north]
``HEADING_DEGREES``/``HEADING``, perpendicular baseline [m] per pair ``BPERP``/
``PERPENDICULAR_BASELINE``, processor ``INSAR_PROCESSOR``.

Approximations, because such stacks carry no per-pixel geometry: `incidence` is the scalar
metadata incidence everywhere (NaN if absent); the LOS unit vector is built from that
incidence and the heading for a right-looking sensor (NaN if either is absent); `bperp` is NaN
without the metadata. The inversion needs none of them.

No data: the file's nodata value and non-finite values; coherence stored as uint8 is 0-255
(= coh x 255). Grids: every file must have the same CRS and pixel size, on one pixel lattice;
extents may differ, and the stack covers their intersection (or the selection inside it).

The raster helpers here (`RasterGrid`, `open_raster`, `common_grid`, `read_stack`...) are
shared by the other GeoTIFF-based readers (`mtinsar.io.hyp3`).
"""

from __future__ import annotations

import fnmatch
import logging
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import rasterio
import rasterio.errors
import rioxarray  # noqa: F401 - registers the .rio accessor used below
import xarray as xr
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from mtinsar import grid as gridlib
from mtinsar.config import IngestConfig
from mtinsar.errors import InputError
from mtinsar.io.select import AreaSelection, select_area, select_pairs
from mtinsar.sources import remote
from mtinsar.stack import validate

logger = logging.getLogger(__name__)

TIF_SUFFIXES = (".tif", ".tiff")
WAVELENGTH_KEYS = ("WAVELENGTH_METRES", "WAVELENGTH", "WAVELENGTH_M")
INCIDENCE_KEYS = ("INCIDENCE_DEGREES", "INCIDENCE_ANGLE")
HEADING_KEYS = ("HEADING_DEGREES", "HEADING")
BPERP_KEYS = ("BPERP", "PERPENDICULAR_BASELINE")
DATE_KEYS = (
    ("FIRST_DATE", "SECOND_DATE"),
    ("REFERENCE_DATE", "SECONDARY_DATE"),
    ("MASTER_DATE", "SLAVE_DATE"),
)
_NUMERIC_PAIR_RE = re.compile(r"(?<!\d)(\d{8})[-_](\d{8})(?!\d)")
_MONTH_PAIR_RE = re.compile(r"(?<!\d)(\d{2}[A-Za-z]{3}\d{4})[-_](\d{2}[A-Za-z]{3}\d{4})(?!\d)")
#: Relative tolerance for two wavelengths to count as the same radar.
_WAVELENGTH_RTOL = 1e-6
_EXCLUDE_FIX = "exclude the pair with ingest.exclude_pairs (CLI: --exclude-pair)"


# =========================================================================== raster helpers


@dataclass(frozen=True)
class RasterGrid:
    """Shape, north-up affine transform and CRS of one raster."""

    shape: tuple[int, int]
    transform: Affine
    crs: CRS | None

    def __str__(self) -> str:
        t = self.transform
        crs = self.crs.to_string() if self.crs else "none"
        return (
            f"{self.shape[0]}x{self.shape[1]} px, origin ({t.c:.9g}, {t.f:.9g}), "
            f"pixel ({t.a:.9g}, {t.e:.9g}), CRS {crs}"
        )


@dataclass(frozen=True)
class RasterInfo:
    """What a header read tells about a raster: grid, nodata, dtype and GDAL tags."""

    path: str
    grid: RasterGrid
    nodata: float | None
    dtype: str
    tags: dict[str, str] = field(default_factory=dict)


@contextmanager
def open_raster(path: str, fix: str) -> Iterator[Any]:
    """rasterio dataset of `path` (a file, a GDAL /vsi path, or an ``s3://``/``https://``
    URL read in place through `mtinsar.sources.remote`); read failures inside become an
    InputError naming it and saying `fix`."""
    gdal_log = logging.getLogger("rasterio._env")
    level = gdal_log.level
    # GDAL's own log lines would only repeat the InputError below on the user's terminal.
    gdal_log.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with remote.open_raster(path) as src:
                yield src
    except rasterio.errors.RasterioError as exc:
        detail = str(exc.__cause__ or exc)
        raise InputError(
            f"{path}: unreadable GeoTIFF, corrupt or incomplete ({detail}); {fix}"
        ) from exc
    finally:
        gdal_log.setLevel(level)


def probe(path: str, fix: str) -> RasterInfo:
    """Header of `path` (no pixel read); checks it is a north-up single-band raster."""
    with open_raster(path, fix) as src:
        grid = RasterGrid((int(src.height), int(src.width)), src.transform, src.crs)
        info = RasterInfo(path, grid, src.nodata, src.dtypes[0], dict(src.tags()))
    try:
        gridlib.check_north_up(grid.transform)
    except ValueError as exc:
        raise InputError(
            f"{path}: {exc}; reproject it to a north-up grid (e.g. gdalwarp)"
        ) from None
    return info


def common_grid(infos: Sequence[RasterInfo], fix: str) -> RasterGrid:
    """The intersection of the grids of `infos`, which must share CRS, pixel size and lattice.

    Raises InputError naming the first file whose grid cannot be aligned with the first one
    (different CRS or pixel size, origin off the pixel lattice) or when the extents do not
    overlap at all.
    """
    first = infos[0]
    g0 = first.grid
    x_min, y_min, x_max, y_max = gridlib.extent(g0.transform, g0.shape)
    for info in infos[1:]:
        g = info.grid
        problem = _alignment_problem(g, g0)
        if problem:
            raise InputError(
                f"{info.path}: grid ({g}) cannot be aligned with that of {first.path} ({g0}): "
                f"{problem}. Every raster of a stack must share CRS, pixel size and pixel "
                f"lattice; resample it onto the others' grid (e.g. gdalwarp -tap) or {fix}"
            )
        e = gridlib.extent(g.transform, g.shape)
        x_min, y_min = max(x_min, e[0]), max(y_min, e[1])
        x_max, y_max = min(x_max, e[2]), min(y_max, e[3])
    t0 = g0.transform
    col0 = round((x_min - t0.c) / t0.a)
    row0 = round((y_max - t0.f) / t0.e)
    ncol = round((x_max - x_min) / t0.a)
    nrow = round((y_min - y_max) / t0.e)
    if ncol <= 0 or nrow <= 0:
        raise InputError(
            f"the rasters of the stack do not overlap (e.g. {first.path} and "
            f"{infos[-1].path}); keep products of one area, or {fix}"
        )
    return RasterGrid((nrow, ncol), gridlib.window_transform(t0, row0, col0), g0.crs)


def _alignment_problem(g: RasterGrid, ref: RasterGrid, tol_px: float = 0.01) -> str:
    """Why `g` is not on `ref`'s lattice ('' if it is)."""
    if (g.crs is None) != (ref.crs is None) or (g.crs is not None and g.crs != ref.crs):
        return "different CRS"
    t, r = g.transform, ref.transform
    n = max(g.shape)
    # A pixel-size difference matters once it adds up to tol_px across the grid.
    if abs(t.a - r.a) * n > tol_px * abs(r.a) or abs(t.e - r.e) * n > tol_px * abs(r.e):
        return "different pixel size"
    dc, dr = (t.c - r.c) / r.a, (t.f - r.f) / r.e
    if abs(dc - round(dc)) > tol_px or abs(dr - round(dr)) > tol_px:
        return f"origin shifted by a fraction of a pixel ({dc % 1:.3f}, {dr % 1:.3f} px)"
    return ""


def locate(info: RasterInfo, grid: RasterGrid, fix: str) -> tuple[int, int]:
    """(row, col) of `grid`'s first pixel in the raster `info`, which must contain `grid`."""
    problem = _alignment_problem(info.grid, grid)
    t, g = info.grid.transform, grid.transform
    row = round((g.f - t.f) / t.e)
    col = round((g.c - t.c) / t.a)
    if not problem and not (
        0 <= row
        and 0 <= col
        and row + grid.shape[0] <= info.grid.shape[0]
        and col + grid.shape[1] <= info.grid.shape[1]
    ):
        problem = "it does not cover the stack's common area"
    if problem:
        raise InputError(
            f"{info.path}: grid ({info.grid}) does not fit the stack grid ({grid}): {problem}; "
            f"use the file that belongs to this stack, or {fix}"
        )
    return row, col


def read_window(
    info: RasterInfo, grid: RasterGrid, window: gridlib.PixelWindow, fix: str
) -> np.ndarray:
    """Band 1 of `info` inside `window` of the stack grid `grid` (only those pixels read)."""
    row, col = locate(info, grid, fix)
    win = Window(col + window.col0, row + window.row0, window.width, window.height)
    with open_raster(info.path, fix) as src:
        return src.read(1, window=win)


def decode_float(
    array: np.ndarray, nodata: float | None, zero_is_nodata: bool = False
) -> np.ndarray:
    """float32 copy with no data (nodata value, non-finite, optionally 0) -> NaN."""
    out = array.astype(np.float32)
    bad = ~np.isfinite(out)
    if nodata is not None and np.isfinite(nodata):
        bad |= array == nodata
    if zero_is_nodata:
        bad |= array == 0
    out[bad] = np.nan
    return out


def decode_coherence(
    array: np.ndarray, nodata: float | None, path: str, zero_is_nodata: bool = False
) -> np.ndarray:
    """Coherence 0..1 float32: floats as stored, uint8 as 0-255 (= coh x 255); no data NaN."""
    if array.dtype == np.uint8:
        out = decode_float(array, nodata, zero_is_nodata) / np.float32(255.0)
    elif np.issubdtype(array.dtype, np.floating):
        out = decode_float(array, nodata, zero_is_nodata)
    else:
        raise InputError(
            f"{path}: coherence of data type {array.dtype}; expected float (0-1) or uint8 "
            f"(0-255): convert the file, or {_EXCLUDE_FIX}"
        )
    return out


def multilook_labels(labels: np.ndarray, factor: int) -> np.ndarray:
    """Block label of an integer label image: the block's label if all its pixels share it,
    else 0 (SNAPHU's 'not unwrapped')."""
    if factor == 1:
        return labels.copy()
    ny, nx = gridlib.multilook_shape(labels.shape, factor)
    blocks = labels[: ny * factor, : nx * factor].reshape(ny, factor, nx, factor)
    low, high = blocks.min(axis=(1, 3)), blocks.max(axis=(1, 3))
    return np.where(low == high, low, 0).astype(labels.dtype)


# =========================================================================== stack assembly


@dataclass(frozen=True)
class PairFiles:
    """The rasters of one pair: headers of its phase, coherence and optional conncomp."""

    label: str
    ref: np.datetime64
    sec: np.datetime64
    unw: RasterInfo
    coh: RasterInfo
    conncomp: RasterInfo | None = None


@dataclass(frozen=True)
class PhaseDecoding:
    """How a format's pixel values become IfgStack values."""

    sign: float = 1.0  # unw = sign * file phase [rad]
    zero_is_nodata: bool = False  # 0 marks no data (besides the nodata tag)


def read_stack(
    pairs: Sequence[PairFiles],
    grid: RasterGrid,
    area: AreaSelection,
    factor: int,
    decoding: PhaseDecoding,
    chunk_size: int = 256,
    progress: bool = False,
) -> dict[str, da.Array]:
    """Lazy unw [rad], coh (pair, y, x) float32 and optional conncomp, cropped, multilooked.

    Every file's header is checked now (alignment with `grid`, coverage), so a bad file fails
    before any work; pixels are read later, one `chunk_size` x `chunk_size` output block of
    every pair per task (only the window, through rasterio windows), which bounds memory by
    the chunk size. Pixels outside the area's polygon are NaN (coherence too).
    """
    fix = f"download the product again or {_EXCLUDE_FIX}"
    with_cc = all(p.conncomp is not None for p in pairs)
    if not with_cc and any(p.conncomp is not None for p in pairs):
        logger.warning("conncomp files exist for only some pairs; connected components skipped")
    roles = {"unw": [p.unw for p in pairs], "coh": [p.coh for p in pairs]}
    if with_cc:
        roles["conncomp"] = [p.conncomp for p in pairs]  # type: ignore[misc]
    for pair in _progress(pairs, progress, "checking interferograms"):
        for info in (pair.unw, pair.coh, pair.conncomp):
            if info is not None:
                locate(info, grid, fix)
    ny, nx = gridlib.multilook_shape(area.window.shape, factor)
    chunks = ((len(pairs),), _split(ny, chunk_size), _split(nx, chunk_size))
    out = {}
    for role, infos in roles.items():
        dtype = np.int16 if role == "conncomp" else np.float32
        out[role] = da.map_blocks(
            _read_block,
            infos=infos,
            role=role,
            grid=grid,
            area=area,
            factor=factor,
            decoding=decoding,
            chunks=chunks,
            dtype=dtype,
            meta=np.empty((0, 0, 0), dtype=dtype),
        )
    return out


def _split(n: int, size: int) -> tuple[int, ...]:
    return tuple(min(size, n - i) for i in range(0, n, size))


def _read_block(
    infos: list[RasterInfo],
    role: str,
    grid: RasterGrid,
    area: AreaSelection,
    factor: int,
    decoding: PhaseDecoding,
    block_info: dict | None = None,
) -> np.ndarray:
    """One output block (every pair) of `role`, decoded, masked and multilooked."""
    _, (y0, y1), (x0, x1) = block_info[None]["array-location"]  # type: ignore[index]
    w = area.window
    sub = gridlib.PixelWindow(
        w.row0 + y0 * factor, w.row0 + y1 * factor, w.col0 + x0 * factor, w.col0 + x1 * factor
    )
    inside = None
    if area.inside is not None:
        inside = area.inside[y0 * factor : y1 * factor, x0 * factor : x1 * factor]
    fix = f"download the product again or {_EXCLUDE_FIX}"
    dtype = np.int16 if role == "conncomp" else np.float32
    out = np.empty((len(infos), y1 - y0, x1 - x0), dtype=dtype)
    for k, info in enumerate(infos):
        raw = read_window(info, grid, sub, fix)
        if role == "conncomp":
            labels = raw.astype(np.int16)
            if inside is not None:
                labels[~inside] = 0
            out[k] = multilook_labels(labels, factor)
            continue
        if role == "unw":
            values = decode_float(raw, info.nodata, decoding.zero_is_nodata)
            if decoding.sign != 1.0:
                values *= np.float32(decoding.sign)
        else:
            values = decode_coherence(raw, info.nodata, info.path, decoding.zero_is_nodata)
        if inside is not None:
            values[~inside] = np.nan
        out[k] = gridlib.multilook(values, factor)
    return out


def read_layer(
    info: RasterInfo, grid: RasterGrid, area: AreaSelection, factor: int, fix: str
) -> np.ndarray:
    """One (y, x) float32 layer (e.g. DEM) on the stack grid, cropped and multilooked."""
    values = decode_float(read_window(info, grid, area.window, fix), info.nodata)
    return gridlib.multilook(values, factor)


def los_from_angles(incidence: np.ndarray, heading: np.ndarray) -> dict[str, np.ndarray]:
    """LOS unit vector ground -> satellite of a right-looking sensor.

    incidence [deg] from the vertical, heading [deg] clockwise from north. The satellite lies
    at azimuth heading - 90 deg seen from the ground, hence E = -sin(inc) cos(heading),
    N = sin(inc) sin(heading), U = cos(inc) (the convention of LiCSAR's E/N/U files).
    """
    inc, head = np.deg2rad(incidence), np.deg2rad(heading)
    return {
        "los_e": (-np.sin(inc) * np.cos(head)).astype(np.float32),
        "los_n": (np.sin(inc) * np.sin(head)).astype(np.float32),
        "los_u": np.cos(inc).astype(np.float32),
    }


def build_dataset(
    pairs: Sequence[PairFiles],
    rasters: dict[str, Any],
    geometry: dict[str, np.ndarray],
    bperp: np.ndarray,
    grid: RasterGrid,
    area: AreaSelection,
    factor: int,
    attrs: dict[str, Any],
    source: str,
) -> xr.Dataset:
    """Assemble and validate the IfgStack (coords from the stack grid and the window)."""
    window = area.window
    shape = rasters["unw"].shape[1:]
    y, x = gridlib.pixel_centres(grid.transform, shape, window.row0, window.col0, factor)
    dims = ("pair", "y", "x")
    data_vars: dict[str, Any] = {name: (dims, values) for name, values in rasters.items()}
    data_vars.update({name: (("y", "x"), values) for name, values in geometry.items()})
    data_vars["bperp"] = ("pair", np.asarray(bperp, dtype=np.float32))
    ds = xr.Dataset(
        data_vars,
        coords={
            "pair": np.array([p.label for p in pairs], dtype=str),
            "ref_date": ("pair", np.array([p.ref for p in pairs], dtype="datetime64[ns]")),
            "sec_date": ("pair", np.array([p.sec for p in pairs], dtype="datetime64[ns]")),
            "y": y,
            "x": x,
        },
        attrs={**attrs, "multilook": int(factor), "source": source},
    )
    transform = gridlib.window_transform(grid.transform, window.row0, window.col0, factor)
    ds = ds.rio.write_crs(grid.crs if grid.crs is not None else CRS.from_epsg(4326))
    ds = ds.rio.write_transform(transform)
    return validate(ds, source=source)


def normalise_los(geometry: dict[str, np.ndarray]) -> None:
    """Restore unit length of block-averaged LOS vectors; set incidence = acos(U), in place."""
    norm = np.sqrt(geometry["los_e"] ** 2 + geometry["los_n"] ** 2 + geometry["los_u"] ** 2)
    for name in ("los_e", "los_n", "los_u"):
        geometry[name] = (geometry[name] / norm).astype(np.float32)
    up = np.clip(geometry["los_u"], -1.0, 1.0)
    geometry["incidence"] = np.degrees(np.arccos(up)).astype(np.float32)


def _progress(items: Sequence[PairFiles], enabled: bool, desc: str) -> Iterable[PairFiles]:
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="pair")


def parse_pair_label(ref: str, sec: str, where: str) -> tuple[np.datetime64, np.datetime64]:
    """(ref, sec) dates from two date strings (YYYYMMDD, YYYY-MM-DD or DDMonYYYY)."""
    fix = "name pairs earlier date first, e.g. YYYYMMDD_YYYYMMDD"
    try:
        d1, d2 = _parse_date(ref), _parse_date(sec)
    except ValueError as exc:
        raise InputError(f"{where}: invalid pair dates {ref!r}, {sec!r} ({exc}); {fix}") from None
    if d1 >= d2:
        raise InputError(
            f"{where}: pair {ref}-{sec} has its first date not before the second; {fix}"
        )
    return d1, d2


def _parse_date(text: str) -> np.datetime64:
    text = text.strip()
    for fmt in ("%Y%m%d", "%Y-%m-%d", "%d%b%Y"):
        try:
            return np.datetime64(datetime.strptime(text, fmt).date(), "D")
        except ValueError:
            continue
    raise ValueError(f"not a date: {text!r}")


def label_of(ref: np.datetime64, sec: np.datetime64) -> str:
    """'YYYYMMDD_YYYYMMDD' of two dates."""
    return "_".join(str(np.datetime64(d, "D")).replace("-", "") for d in (ref, sec))


# =========================================================================== generic reader


@dataclass(frozen=True)
class _Found:
    """Files under the stack folder, by role."""

    unw: dict[str, tuple[np.datetime64, np.datetime64, RasterInfo]]
    coh: dict[str, RasterInfo]
    dem: Path | None


def read_geotiff(
    path: str | Path, config: IngestConfig | None = None, progress: bool = False
) -> xr.Dataset:
    """Read a folder of per-pair GeoTIFFs (generic layout, see the module doc) into an IfgStack.

    `config` selects pairs and area, the multilook factor, the file-name patterns, the phase
    sign, the wavelength and the chunk size. Returns a validated IfgStack whose unw and coh
    are dask arrays read lazily in (all pairs x chunk_size x chunk_size) blocks; raises
    InputError naming the file or value at fault and the fix.
    """
    config = config or IngestConfig()
    root = remote.as_path(path)
    found = _discover(root, config)
    labels = sorted(found.unw, key=lambda k: (found.unw[k][0], found.unw[k][1]))
    refs = np.array([found.unw[k][0] for k in labels])
    secs = np.array([found.unw[k][1] for k in labels])
    kept = [labels[i] for i in select_pairs(labels, refs, secs, config, str(root))]
    pairs = [_pair_files(label, found) for label in kept]
    meta = _metadata(pairs, config, root)  # before any pixel is read: fail fast
    fix = f"remove the stray file, or {_EXCLUDE_FIX}"
    grid = common_grid([f for p in pairs for f in (p.unw, p.coh)], fix)
    area = select_area(grid.transform, grid.shape, grid.crs, config, str(root))
    decoding = PhaseDecoding(sign=float(config.geotiff_phase_sign))
    rasters = read_stack(pairs, grid, area, config.multilook, decoding, config.chunk_size, progress)
    geometry = _geometry(found.dem, meta, grid, area, config.multilook, rasters["unw"].shape[1:])
    bperp = np.array([_float_tag(p.unw, BPERP_KEYS) for p in pairs], dtype=np.float32)
    if np.isnan(bperp).any():
        logger.warning(
            "%s: no perpendicular baseline (%s) in the metadata of %d pair(s); bperp is NaN",
            root,
            "/".join(BPERP_KEYS),
            int(np.isnan(bperp).sum()),
        )
    ds = build_dataset(
        pairs, rasters, geometry, bperp, grid, area, config.multilook, meta, str(root)
    )
    logger.info("read %d pairs (generic GeoTIFF) from %s: %s", len(pairs), root, dict(ds.sizes))
    return ds


def is_geotiff(path: str | Path) -> bool:
    """Cheap sniff: a folder holding (up to two levels down) a .tif named like an unwrapped
    phase file (default pattern ``*unw*``) with a pair of dates in its name or folder."""
    root = remote.as_path(path)
    if not root.is_dir():
        return False
    patterns = IngestConfig().geotiff_unw_patterns
    for file in _tifs(root, max_depth=2):
        try:
            if _matches(file, patterns) and _dates_from_names(file, root) is not None:
                return True
        except InputError:  # an ambiguous name: reading will say so, sniffing must not
            continue
    return False


def _tifs(root: Path, max_depth: int | None = None) -> Iterator[Path]:
    for file in sorted(root.rglob("*")):
        if max_depth is not None and len(file.relative_to(root).parts) > max_depth:
            continue
        if file.suffix.lower() in TIF_SUFFIXES and file.is_file() and not file.name.startswith("."):
            yield file


def _stem(file: Path) -> str:
    return file.name[: -len(file.suffix)].lower()


def _matches(file: Path, patterns: Sequence[str]) -> bool:
    stem = _stem(file)
    return any(fnmatch.fnmatchcase(stem, p.lower()) for p in patterns)


def _dates_from_names(file: Path, root: Path) -> tuple[str, str] | None:
    """The pair's two date strings from the file name, else from its folders below root."""
    names = [file.name, *reversed(file.parent.relative_to(root).parts)]
    for name in names:
        for regex in (_NUMERIC_PAIR_RE, _MONTH_PAIR_RE):
            found = regex.findall(name)
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise InputError(
                    f"{file}: several date pairs in the name {name!r}; rename it so that it "
                    "holds one pair YYYYMMDD_YYYYMMDD"
                )
    return None


def _dates_from_tags(tags: dict[str, str]) -> tuple[str, str] | None:
    for first, second in DATE_KEYS:
        if first in tags and second in tags:
            return tags[first], tags[second]
    return None


def _pair_dates(
    file: Path, root: Path
) -> tuple[tuple[np.datetime64, np.datetime64] | None, RasterInfo]:
    """Dates of the pair a file belongs to (name, else GDAL tags; both must agree) or None,
    and the file's header."""
    info = probe(str(file), "fix or remove the file")
    named, tagged = _dates_from_names(file, root), _dates_from_tags(info.tags)
    if named is None and tagged is None:
        return None, info
    dates = parse_pair_label(*(named or tagged), where=str(file))  # type: ignore[misc]
    if named is not None and tagged is not None:
        from_tags = parse_pair_label(*tagged, where=str(file))
        if from_tags != dates:
            raise InputError(
                f"{file}: the name says pair {label_of(*dates)} but the GDAL metadata says "
                f"{label_of(*from_tags)}; fix the name or the metadata"
            )
    return dates, info


def _discover(root: Path, config: IngestConfig) -> _Found:
    if not root.is_dir():
        raise InputError(
            f"{root}: no such folder; point at the folder holding one unwrapped-phase GeoTIFF "
            "per pair"
        )
    unw: dict[str, tuple[np.datetime64, np.datetime64, RasterInfo]] = {}
    coh: dict[str, RasterInfo] = {}
    dems: list[Path] = []
    for file in _tifs(root):
        role = _role(file, config)
        if role is None:
            logger.debug("%s: matches no file pattern; ignored", file)
            continue
        if role == "dem":
            dems.append(file)
            continue
        dates, info = _pair_dates(file, root)
        if dates is None:
            logger.warning("%s: no pair dates in its name or metadata; ignored", file)
            continue
        label = label_of(*dates)
        previous = (unw[label][2] if label in unw else None) if role == "unw" else coh.get(label)
        if previous is not None:
            raise InputError(
                f"pair {label}: two {'phase' if role == 'unw' else 'coherence'} files, "
                f"{previous.path} and {file}; remove one, or narrow "
                f"ingest.geotiff_{role}_patterns"
            )
        if role == "unw":
            unw[label] = (*dates, info)
        else:
            coh[label] = info
    if not unw:
        raise InputError(
            f"{root}: no unwrapped-phase GeoTIFF found (names matching "
            f"{config.geotiff_unw_patterns} with pair dates YYYYMMDD_YYYYMMDD in the file or "
            "folder name, or FIRST_DATE/SECOND_DATE metadata); point at the stack folder or "
            "set ingest.geotiff_unw_patterns"
        )
    if len(dems) > 1:
        raise InputError(
            f"{root}: several DEM files ({', '.join(str(d) for d in dems)}); keep one, or "
            "narrow ingest.geotiff_dem_patterns"
        )
    return _Found(unw, coh, dems[0] if dems else None)


def _role(file: Path, config: IngestConfig) -> str | None:
    """'unw', 'coh' or 'dem' by the name patterns, checked in that order; None if none."""
    for role, patterns in (
        ("unw", config.geotiff_unw_patterns),
        ("coh", config.geotiff_coh_patterns),
        ("dem", config.geotiff_dem_patterns),
    ):
        if _matches(file, patterns):
            return role
    return None


def _pair_files(label: str, found: _Found) -> PairFiles:
    ref, sec, unw_info = found.unw[label]
    coh_info = found.coh.get(label)
    if coh_info is None:
        raise InputError(
            f"{unw_info.path}: no coherence file for pair {label} (names matching "
            f"ingest.geotiff_coh_patterns with the same dates); add it, or {_EXCLUDE_FIX}"
        )
    return PairFiles(label, ref, sec, unw_info, coh_info)


def _float_tag(info: RasterInfo, keys: Sequence[str]) -> float:
    """First of `keys` in the file's GDAL tags as a float (NaN if none); InputError if bad."""
    for key in keys:
        if key in info.tags:
            try:
                return float(info.tags[key])
            except ValueError:
                raise InputError(
                    f"{info.path}: metadata {key}={info.tags[key]!r} is not a number; fix "
                    "the GDAL metadata of the file"
                ) from None
    return float("nan")


def _metadata(pairs: Sequence[PairFiles], config: IngestConfig, root: Path) -> dict[str, Any]:
    """Stack attributes; wavelength from config or the files (which must agree)."""
    seen = [(p.unw.path, _float_tag(p.unw, WAVELENGTH_KEYS)) for p in pairs]
    seen = [(f, w) for f, w in seen if np.isfinite(w)]
    for file, value in seen[1:]:
        if not np.isclose(value, seen[0][1], rtol=_WAVELENGTH_RTOL, atol=0):
            raise InputError(
                f"mixed wavelengths in one stack: {file} says {value} m, {seen[0][0]} says "
                f"{seen[0][1]} m; a stack holds one sensor: move the other sensor's pairs to "
                "another folder, or fix the metadata"
            )
    if config.wavelength is not None:
        wavelength = float(config.wavelength)
        if seen and not np.isclose(wavelength, seen[0][1], rtol=_WAVELENGTH_RTOL, atol=0):
            logger.warning(
                "ingest.wavelength %s m overrides %s m from %s", wavelength, seen[0][1], seen[0][0]
            )
    elif seen:
        wavelength = seen[0][1]
    else:
        raise InputError(
            f"{pairs[0].unw.path}: no radar wavelength in the metadata (GDAL tag "
            f"{' or '.join(WAVELENGTH_KEYS)}); set ingest.wavelength (m, e.g. 0.05546576 for "
            "Sentinel-1) or add the tag"
        )
    first = pairs[0].unw
    heading = _float_tag(first, HEADING_KEYS)
    attrs: dict[str, Any] = {
        "wavelength": wavelength,
        "platform": first.tags.get("PLATFORM", first.tags.get("SENSOR", "unknown")),
        "orbit_direction": _orbit_direction(heading),
        "track": 0,
        "processor": first.tags.get("INSAR_PROCESSOR", "unknown"),
    }
    # Only finite scalars become attributes: NaN does not survive every store's JSON.
    for key, value in (("heading", heading), ("incidence", _float_tag(first, INCIDENCE_KEYS))):
        if np.isfinite(value):
            attrs[key] = value
    return attrs


def _orbit_direction(heading: float) -> str:
    if not np.isfinite(heading):
        return "unknown"
    wrapped = (heading + 180.0) % 360.0 - 180.0
    return "ascending" if abs(wrapped) < 90.0 else "descending"


def _geometry(
    dem: Path | None,
    meta: dict[str, Any],
    grid: RasterGrid,
    area: AreaSelection,
    factor: int,
    shape: tuple[int, int],
) -> dict[str, np.ndarray]:
    """height from the DEM; constant incidence and LOS vector from the scalar metadata."""
    out: dict[str, np.ndarray] = {}
    if dem is not None:
        fix = "use the DEM of this stack (same grid), or narrow ingest.geotiff_dem_patterns"
        out["height"] = read_layer(probe(str(dem), fix), grid, area, factor, fix)
    else:
        logger.warning("no DEM file found (ingest.geotiff_dem_patterns); height is NaN")
        out["height"] = np.full(shape, np.nan, dtype=np.float32)
    incidence = np.full(shape, meta.get("incidence", np.nan), dtype=np.float32)
    out["incidence"] = incidence
    out.update(los_from_angles(incidence, np.full(shape, meta.get("heading", np.nan))))
    if "incidence" not in meta:
        logger.warning(
            "no incidence (%s) in the metadata; incidence and LOS vector are NaN",
            "/".join(INCIDENCE_KEYS),
        )
    elif "heading" not in meta:
        logger.warning(
            "no heading (%s) in the metadata; los_e and los_n are NaN", "/".join(HEADING_KEYS)
        )
    return out
