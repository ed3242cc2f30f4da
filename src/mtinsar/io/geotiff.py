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
(= coh x 255). Grids (`stack_grid`, `mtinsar.io.core.mosaic`): the stack lies on the pixel lattice
of the first phase file and covers the intersection of all files (or the selected bbox/polygon
inside their union). Files on that lattice (same CRS and posting, origins whole pixels apart)
are copied pixel for pixel; files on another lattice (other posting, sub-pixel shift) or in
another CRS are resampled onto it by GDAL's warper, bilinear (nearest for labels), window by
window. A file that does not overlap the others or the selection is an error naming it; so is
a file without CRS off the first file's lattice (it cannot be placed).

The raster helpers here (`RasterInfo`, `open_raster`, `stack_grid`, `read_stack`...) are
shared by the other GeoTIFF-based readers (`mtinsar.io.hyp3`).
"""

from __future__ import annotations

import fnmatch
import logging
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import rasterio
import rasterio.errors
import rioxarray  # noqa: F401 - registers the .rio accessor used below
import xarray as xr
from rasterio.crs import CRS
from rasterio.warp import Resampling
from rasterio.windows import Window

from mtinsar.config import IngestConfig
from mtinsar.errors import InputError
from mtinsar.io.core import grid as gridlib
from mtinsar.io.core import mosaic
from mtinsar.io.core.select import AreaSelection, select_area, select_pairs
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
class RasterInfo:
    """What a header read tells about a raster: grid, nodata, dtype, GDAL tags and layout.

    `grid.crs` is None for a file without georeferencing of its CRS; `striped`: stored in
    strips, not tiles (`mosaic.is_striped`)."""

    path: str
    grid: mosaic.Grid
    nodata: float | None
    dtype: str
    tags: dict[str, str] = field(default_factory=dict)
    striped: bool = False


@contextmanager
def open_raster(path: str, fix: str) -> Iterator[Any]:
    """rasterio dataset of `path` (a file, a GDAL /vsi path, or an ``s3://``/``https://``
    URL read in place through `mtinsar.sources.remote`); read failures inside become an
    InputError naming it and saying `fix`."""
    try:
        # GDAL's own log lines would only repeat the InputError below on the user's terminal.
        with warnings.catch_warnings(), remote.quiet_gdal():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with remote.open_raster(path) as src:
                yield src
    except rasterio.errors.RasterioError as exc:
        detail = str(exc.__cause__ or exc)
        raise InputError(
            f"{path}: unreadable GeoTIFF, corrupt or incomplete ({detail}); {fix}"
        ) from exc


def probe(path: str, fix: str) -> RasterInfo:
    """Header of `path` (no pixel read); checks it is a north-up raster."""
    with open_raster(path, fix) as src:
        transform, shape, crs = src.transform, (int(src.height), int(src.width)), src.crs
        nodata, dtype, tags = src.nodata, src.dtypes[0], dict(src.tags())
        striped = mosaic.is_striped(src.block_shapes[0], src.width)
    try:
        grid = mosaic.Grid(transform, shape, crs)
    except ValueError as exc:
        raise InputError(
            f"{path}: {exc}; reproject it to a north-up grid (e.g. gdalwarp)"
        ) from None
    return RasterInfo(path, grid, nodata, dtype, tags, striped)


def stack_grid(
    infos: Sequence[RasterInfo], config: IngestConfig, source: str, fix: str
) -> tuple[mosaic.Grid, AreaSelection]:
    """(base grid, selection on it) every raster of a stack is put on (`mosaic`).

    The base grid lies on the pixel lattice of ``infos[0]``: the intersection of all the
    rasters' footprints, or, when `config` selects a bbox/polygon, their union cropped by
    `select_area`. Rasters on that lattice are later copied pixel for pixel, the others
    (another posting, a fractional-pixel shift, another CRS such as the neighbouring UTM zone)
    resampled onto it (`mosaic.warp_onto`). Raises InputError naming the file that does not
    overlap the others or the selection, or whose grid cannot be placed (no CRS, off lattice).
    """
    first = infos[0]
    for info in infos[1:]:
        g, g0 = info.grid, first.grid
        if (g.crs is None or g0.crs is None) and not mosaic.is_aligned(g, g0):
            bare = info.path if g.crs is None else first.path
            raise InputError(
                f"{info.path}: grid ({g}) is not on the pixel lattice of {first.path} ({g0}) "
                f"and {bare} has no CRS, so it cannot be resampled; add the CRS to the file "
                f"(e.g. gdal_edit.py -a_srs), resample it onto the others' grid (gdalwarp "
                f"-tap), or {fix}"
            )
    footprints = [[info.grid] for info in infos]
    labels = [info.path for info in infos]
    selected = config.bbox is not None or config.polygon is not None
    base = mosaic.common_grid(footprints, labels, "union" if selected else "intersection")
    area = select_area(base.transform, base.shape, base.crs, config, source)
    mosaic.require_overlap(base.crop(area.window), footprints, labels)
    resampled = [i.path for i in infos if not mosaic.is_aligned(i.grid, base)]
    if resampled:
        logger.info(
            "%d raster(s) not on the pixel lattice of %s are resampled onto it, e.g. %s",
            len(resampled),
            first.path,
            resampled[0],
        )
    return base, area


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
    """Block label of (..., y, x) integer label images: the block's label if all its pixels
    share it, else 0 (SNAPHU's 'not unwrapped')."""
    if factor == 1:
        return labels.copy()
    ny, nx = gridlib.multilook_shape(labels.shape[-2:], factor)
    lead = labels.shape[:-2]
    blocks = labels[..., : ny * factor, : nx * factor].reshape(*lead, ny, factor, nx, factor)
    axes = (len(lead) + 1, len(lead) + 3)
    low, high = blocks.min(axis=axes), blocks.max(axis=axes)
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


def _decoder(info: RasterInfo, role: str, decoding: PhaseDecoding) -> Callable[[Any], Any]:
    """Pixel values of `role` -> float32 IfgStack values (NaN = no data)."""
    if role == "unw":

        def unw(raw: np.ndarray) -> np.ndarray:
            values = decode_float(raw, info.nodata, decoding.zero_is_nodata)
            return values * np.float32(decoding.sign) if decoding.sign != 1.0 else values

        return unw
    if role == "coh":
        return lambda raw: decode_coherence(raw, info.nodata, info.path, decoding.zero_is_nodata)
    return lambda raw: decode_float(raw, info.nodata)


def _open_window_reader(
    path: str, decode: Callable[[Any], Any], fix: str
) -> AbstractContextManager[mosaic.WindowReader]:
    """Opener of band 1 of `path` as a `mosaic.WindowReader` of decoded values."""

    @contextmanager
    def opened() -> Iterator[mosaic.WindowReader]:
        with open_raster(path, fix) as src:

            def read(win: gridlib.PixelWindow) -> np.ndarray:
                window = Window(win.col0, win.row0, win.width, win.height)
                return decode(src.read(1, window=window))

            yield read

    return opened()


def source_of(
    info: RasterInfo,
    decode: Callable[[Any], Any],
    fix: str,
    resampling: Resampling = Resampling.bilinear,
) -> mosaic.Source:
    """A lazy `mosaic.Source` of band 1 of `info`, decoded by `decode` window by window."""
    return mosaic.Source(
        info.grid, partial(_open_window_reader, info.path, decode, fix), resampling
    )


def read_stack(
    pairs: Sequence[PairFiles],
    base: mosaic.Grid,
    area: AreaSelection,
    factor: int,
    decoding: PhaseDecoding,
    chunk_size: int = 256,
) -> dict[str, da.Array]:
    """Lazy unw [rad], coh (pair, y, x) float32 and optional conncomp on the selection of
    `base` (`stack_grid`), multilooked by `factor`.

    Pixels are read when computed, one `chunk_size` x `chunk_size` output block of every
    pair per task (a whole-width band as large when the files are striped,
    `mosaic.layer_chunks`), each reading only the source windows under it
    (`mosaic.lazy_layer`), which bounds memory by the chunk size. Rasters on `base`'s
    lattice are copied exactly, others resampled (bilinear; nearest for connected
    components). Pixels outside the area's polygon are NaN (conncomp 0). Conncomp blocks are
    multilooked by `multilook_labels`.
    """
    fix = f"download the product again or {_EXCLUDE_FIX}"
    dst = base.crop(area.window)
    with_cc = all(p.conncomp is not None for p in pairs)
    if not with_cc and any(p.conncomp is not None for p in pairs):
        logger.warning("conncomp files exist for only some pairs; connected components skipped")
    common = {"inside": area.inside}
    striped = any(p.unw.striped or p.coh.striped for p in pairs)
    cy, cx = mosaic.layer_chunks(gridlib.multilook_shape(dst.shape, factor), chunk_size, striped)
    out = {}
    for role in ("unw", "coh"):
        sources = [[source_of(getattr(p, role), _decoder(getattr(p, role), role, decoding), fix)]
                   for p in pairs]  # fmt: skip
        out[role] = mosaic.lazy_layer(sources, dst, factor=factor, chunks=(cy, cx), **common)
    if with_cc:
        sources = [
            [source_of(p.conncomp, _decoder(p.conncomp, "cc", decoding), fix, Resampling.nearest)]
            for p in pairs
            if p.conncomp is not None
        ]
        # Full resolution blocks factor times the output ones, then the all-or-nothing rule.
        cc = mosaic.lazy_layer(sources, dst, chunks=(cy * factor, cx * factor), **common)
        labels = da.where(da.isnan(cc), 0, cc).astype(np.int16)
        out["conncomp"] = labels.map_blocks(
            multilook_labels,
            factor,
            chunks=(
                labels.chunks[0],
                *(tuple(c // factor for c in ch) for ch in labels.chunks[1:]),
            ),
            dtype=np.int16,
        )
    return out


def read_layer(
    info: RasterInfo,
    base: mosaic.Grid,
    area: AreaSelection,
    fix: str,
    decode: Callable[[Any], Any] | None = None,
    resampling: Resampling = Resampling.bilinear,
) -> np.ndarray:
    """One full-resolution (y, x) float32 layer (e.g. a DEM) on the selection of `base`:
    only the pixels under it read, copied if on its lattice, else resampled. `decode`
    defaults to `decode_float` with the file's nodata."""
    decode = decode or (lambda raw: decode_float(raw, info.nodata))
    dst = base.crop(area.window)
    with _open_window_reader(info.path, decode, fix) as read:
        return mosaic.warp_onto(dst, info.grid, read, resampling)


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
    grid: mosaic.Grid,
    area: AreaSelection,
    factor: int,
    attrs: dict[str, Any],
    source: str,
) -> xr.Dataset:
    """Assemble and validate the IfgStack (coords from the base grid and the window)."""
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


def progress_bar(items: Sequence[Any], enabled: bool, desc: str, unit: str) -> Iterable[Any]:
    """`items`, shown as a tqdm progress bar when `enabled`."""
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit=unit)


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
    found = _discover(root, config, progress)
    labels = sorted(found.unw, key=lambda k: (found.unw[k][0], found.unw[k][1]))
    refs = np.array([found.unw[k][0] for k in labels])
    secs = np.array([found.unw[k][1] for k in labels])
    kept = [labels[i] for i in select_pairs(labels, refs, secs, config, str(root))]
    pairs = [_pair_files(label, found) for label in kept]
    meta = _metadata(pairs, config, root)  # before any pixel is read: fail fast
    fix = f"remove the stray file, or {_EXCLUDE_FIX}"
    infos = [f for p in pairs for f in (p.unw, p.coh)]
    grid, area = stack_grid(infos, config, str(root), fix)
    decoding = PhaseDecoding(sign=float(config.geotiff_phase_sign))
    rasters = read_stack(pairs, grid, area, config.multilook, decoding, config.chunk_size)
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


def _discover(root: Path, config: IngestConfig, progress: bool = False) -> _Found:
    if not root.is_dir():
        raise InputError(
            f"{root}: no such folder; point at the folder holding one unwrapped-phase GeoTIFF "
            "per pair"
        )
    unw: dict[str, tuple[np.datetime64, np.datetime64, RasterInfo]] = {}
    coh: dict[str, RasterInfo] = {}
    dems: list[Path] = []
    for file in progress_bar(list(_tifs(root)), progress, "reading headers", "file"):
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
    grid: mosaic.Grid,
    area: AreaSelection,
    factor: int,
    shape: tuple[int, int],
) -> dict[str, np.ndarray]:
    """height from the DEM; constant incidence and LOS vector from the scalar metadata."""
    out: dict[str, np.ndarray] = {}
    if dem is not None:
        fix = "use the DEM of this stack (same area), or narrow ingest.geotiff_dem_patterns"
        height = read_layer(probe(str(dem), fix), grid, area, fix)
        out["height"] = gridlib.multilook(height, factor)
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
