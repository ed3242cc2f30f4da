"""COMET-LiCSAR frame products (GeoTIFF) -> `IfgStack`.

Two folder layouts are detected automatically (FORMATS.md §1):

* COMET-LiCSAR portal frame::

    path/interferograms/YYYYMMDD_YYYYMMDD/YYYYMMDD_YYYYMMDD.geo.unw.tif  (+ .geo.cc.tif)
    path/metadata/{FRAME}.geo.{E,N,U,hgt}.tif, baselines, metadata.txt

* LiCSBAS download folder (``GEOC``; ``path`` may also be its parent)::

    path/YYYYMMDD_YYYYMMDD/YYYYMMDD_YYYYMMDD.geo.unw.tif  (+ .geo.cc.tif)
    path/{FRAME}.geo.{E,N,U,hgt}.tif, baselines, metadata.txt

Sign and units of the phase: ``*.geo.unw.tif`` is unwrapped phase in radians, positive for
a range increase (motion away from the satellite). LiCSBAS turns it into LOS displacement
with ``coef_r2m = -wavelength / (4 pi)`` (x1000 for mm; "positive is -LOS", FORMATS.md §1).
That is the IfgStack convention already, so the factor applied here is **+1**
(``unw = file value``) and displacement towards the satellite is
``-wavelength / (4 pi) * unw`` (`mtinsar.conventions.phase_to_displacement`).

Other decoding: 0 is no data in every file (-> NaN); coherence is uint8 0-255 (= coh x 255)
in current products, float32 0-1 in older ones (told apart by dtype); E/N/U is the LOS unit
vector ground -> satellite, hgt the DEM height [m]. The radar wavelength is not in the files:
`SENTINEL1_WAVELENGTH` unless given.

Grids (`mtinsar.io.core.mosaic`): the stack lies on the first interferogram's pixel lattice over
the area every file covers (or the selection); files on it are copied pixel for pixel, files
off it (another extent is fine; a sub-pixel shift or another posting) resampled onto it.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
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
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import Resampling
from rasterio.windows import Window

from mtinsar.config import IngestConfig
from mtinsar.conventions import SENTINEL1_WAVELENGTH
from mtinsar.errors import InputError
from mtinsar.io.core import grid as gridlib
from mtinsar.io.core import mosaic
from mtinsar.io.core.select import AreaSelection, select_area, select_pairs
from mtinsar.sources.remote import as_path, open_raster, quiet_gdal
from mtinsar.stack import validate

logger = logging.getLogger(__name__)

UNW_SUFFIX = ".geo.unw.tif"
CC_SUFFIX = ".geo.cc.tif"
#: Geometry file component -> IfgStack variable.
GEOMETRY_FILES = {"E": "los_e", "N": "los_n", "U": "los_u", "hgt": "height"}
PAIR_RE = re.compile(r"^(\d{8})_(\d{8})$")
FRAME_RE = re.compile(r"\d{3}[AD]_\d{5}_\d{6}")
_GEOMETRY_RE = re.compile(r"^(.+)\.geo\.(E|N|U|hgt)\.tif$")
_EXCLUDE_FIX = "exclude_pairs=[...] (CLI: --exclude-pair)"
_LAYOUT_HELP = (
    "{p}/interferograms/YYYYMMDD_YYYYMMDD/YYYYMMDD_YYYYMMDD.geo.unw.tif (COMET-LiCSAR portal "
    "frame), {p}/YYYYMMDD_YYYYMMDD/YYYYMMDD_YYYYMMDD.geo.unw.tif (LiCSBAS GEOC folder) and "
    "{p}/GEOC/YYYYMMDD_YYYYMMDD/... (parent of a GEOC folder)"
)


@dataclass(frozen=True)
class _Layout:
    name: str
    ifg_root: Path  # folder holding the pair folders
    meta_dir: Path  # folder holding geometry, baselines, metadata.txt


@dataclass(frozen=True)
class _Pair:
    label: str
    ref: np.datetime64
    sec: np.datetime64
    unw: Path

    @property
    def cc(self) -> Path:
        return self.unw.with_name(self.label + CC_SUFFIX)


# --------------------------------------------------------------------------- entry point


def read_licsar_config(
    path: str | Path, config: IngestConfig | None = None, progress: bool = False
) -> xr.Dataset:
    """`read_licsar` with its options from an `IngestConfig` (the common reader signature).

    Every selection option applies (`mtinsar.io.core.select`): pairs and dates, and the area: a
    lon/lat bbox directly, a polygon or a bbox in another CRS through `select_area` on the
    common grid (pixels outside the polygon become no data).
    """
    config = config or IngestConfig()
    layout = _find_layout(as_path(path))
    found = _discover_pairs(layout)
    labels = sorted(found, key=lambda k: _pair_key(found[k]))
    refs = np.array([found[k].ref for k in labels])
    secs = np.array([found[k].sec for k in labels])
    kept = set(np.asarray(labels)[select_pairs(labels, refs, secs, config, str(path))])
    general = config.polygon is not None or config.selection_crs != "EPSG:4326"
    return read_licsar(
        path,
        bbox=config.bbox if not general else None,
        discovered=found,
        multilook=config.multilook,
        exclude_pairs=[k for k in labels if k not in kept],
        wavelength=config.wavelength,
        chunk_size=config.chunk_size,
        progress=progress,
        selection=config if general else None,
    )


def read_licsar(
    path: str | Path,
    *,
    bbox: tuple[float, float, float, float] | None = None,
    multilook: int = 1,
    exclude_pairs: Sequence[str] = (),
    wavelength: float | None = None,
    chunk_size: int = 256,
    progress: bool = False,
    selection: IngestConfig | None = None,
    discovered: dict[str, _Pair] | None = None,
) -> xr.Dataset:
    """Read a COMET-LiCSAR frame folder (portal or LiCSBAS GEOC layout) into an IfgStack.

    bbox: (lon_min, lat_min, lon_max, lat_max) in degrees (EPSG:4326); pixels overlapping it
    are kept and only they are read. multilook: integer factor, NaN-aware block mean applied
    after cropping (trailing rows/columns that do not fill a block are dropped).
    exclude_pairs: pair labels "YYYYMMDD_YYYYMMDD" to leave out. wavelength [m]: defaults to
    Sentinel-1's. selection: instead of `bbox`, the bbox/polygon (any CRS) of an
    `IngestConfig`, applied by `select_area`. discovered: the folder's pairs when the caller
    has just listed them (`_discover_pairs`). `path` may also be an ``s3://`` or
    ``https://`` folder URL: the folder is listed once through fsspec and the rasters are read
    in place, window by window, through GDAL's /vsis3/ or /vsicurl/ (`mtinsar.sources.remote`).

    Grids (`mtinsar.io.core.mosaic`): the stack lies on the pixel lattice of the first
    interferogram and covers the area every file covers (or the selection inside their union).
    Files on that lattice are copied pixel for pixel; files on another lattice (a sub-pixel
    shift, another posting) are resampled onto it (bilinear). Returns a validated IfgStack
    whose unw/coh are dask arrays read lazily in (all pairs, chunk_size, chunk_size) blocks,
    or whole-width bands of as many pixels when the files are striped as LiCSAR writes them
    (`mosaic.layer_chunks`) (geometry is read now); raises InputError naming the file or
    value at fault. A pair without any valid pixel is reported when the pixels are first
    read (`mtinsar.stack.check_pairs_have_data`).
    """
    path = as_path(path)
    _check_options(bbox, multilook, wavelength)
    layout = _find_layout(path)
    found = _discover_pairs(layout) if discovered is None else discovered
    pairs = _select_pairs(found, exclude_pairs, layout)
    first = pairs[0].unw
    grids, bare, striped = _pair_grids(pairs, progress)
    footprints = [[g] for g in grids.values()]
    labels = [str(f) for f in grids]
    selected = bbox is not None or (
        selection is not None and (selection.bbox is not None or selection.polygon is not None)
    )
    base = mosaic.common_grid(footprints, labels, "union" if selected else "intersection")
    if selection is not None:
        area = select_area(base.transform, base.shape, base.crs, selection, str(path))
    else:
        area = AreaSelection(_read_window(base, bbox, multilook, first))
    window = area.window
    dst = base.crop(window)
    mosaic.require_overlap(dst, footprints, labels)
    chunks = mosaic.layer_chunks(gridlib.multilook_shape(dst.shape, multilook), chunk_size, striped)
    unw, coh = _lazy_pairs(pairs, grids, dst, area.inside, multilook, chunks)
    frame, files = _geometry_files(layout.meta_dir, path)
    geometry = _read_geometry(files, dst, multilook, unw.shape[1:])
    out_transform = gridlib.window_transform(base.transform, window.row0, window.col0, multilook)
    y, x = gridlib.pixel_centres(base.transform, unw.shape[1:], window.row0, window.col0, multilook)
    ds = _build_dataset(pairs, unw, coh, geometry, (y, x), out_transform, base.crs)
    ds["bperp"] = ("pair", _pair_bperp(layout.meta_dir / "baselines", pairs))
    ds.attrs.update(_attributes(layout, frame, path, multilook, wavelength))
    if bare:  # logged only now that every file has been read successfully
        logger.warning("%s: no CRS in the GeoTIFFs; assumed EPSG:4326 (LiCSAR's)", bare[0])
    logger.info("read %d pairs (%s) from %s: %s", len(pairs), layout.name, path, dict(ds.sizes))
    return validate(ds, source=str(path))


# --------------------------------------------------------------------------- options


def _check_options(
    bbox: tuple[float, float, float, float] | None, multilook: int, wavelength: float | None
) -> None:
    if bbox is not None:
        try:
            values = [float(v) for v in bbox]
        except (TypeError, ValueError):
            values = []
        if len(values) != 4 or not np.all(np.isfinite(values)):
            raise InputError(
                f"bbox {bbox!r}: expected 4 numbers (lon_min, lat_min, lon_max, lat_max) in degrees"
            )
        lon_min, lat_min, lon_max, lat_max = values
        if not (lon_min < lon_max and lat_min < lat_max):
            raise InputError(
                f"bbox {tuple(values)}: invalid, need lon_min < lon_max and lat_min < lat_max "
                "(order: lon_min, lat_min, lon_max, lat_max)"
            )
    if isinstance(multilook, bool) or not isinstance(multilook, int | np.integer) or multilook < 1:
        raise InputError(f"multilook {multilook!r}: must be an integer >= 1 (1 = no multilook)")
    if wavelength is not None and not _positive(wavelength):
        raise InputError(f"wavelength {wavelength!r}: must be a positive number in metres")


def _positive(value: Any) -> bool:
    try:
        return bool(np.isfinite(float(value)) and float(value) > 0)
    except (TypeError, ValueError):
        return False


# --------------------------------------------------------------------------- discovery


def _find_layout(path: Path) -> _Layout:
    """The one layout under `path` that holds interferograms."""
    if not path.exists():
        raise InputError(
            f"{path}: no such folder; point at a COMET-LiCSAR frame folder (with "
            "interferograms/ and metadata/) or a LiCSBAS GEOC folder"
        )
    if not path.is_dir():
        raise InputError(f"{path}: not a folder; point at a LiCSAR frame folder or a GEOC folder")
    own_meta = path
    if path.name == "interferograms" and (path.parent / "metadata").is_dir():
        own_meta = path.parent / "metadata"  # pointed inside a portal frame
    candidates = [
        _Layout("COMET-LiCSAR portal frame", path / "interferograms", path / "metadata"),
        _Layout("LiCSBAS GEOC", path / "GEOC", path / "GEOC"),
        _Layout("LiCSBAS GEOC", path, own_meta),
    ]
    found = [c for c in candidates if _holds_pairs(c.ifg_root)]
    if not found:
        raise InputError(
            f"{path}: no interferograms found; looked for {_LAYOUT_HELP.format(p=path)}. "
            "Point at the frame folder or the GEOC folder."
        )
    if len(found) > 1:
        roots = " and ".join(str(c.ifg_root) for c in found)
        raise InputError(
            f"{path}: interferograms found in two places ({roots}); point at one of them"
        )
    return found[0]


def is_licsar(path: str | Path) -> bool:
    """Cheap sniff (names only): a LiCSAR portal frame, a GEOC folder or a GEOC's parent."""
    path = as_path(path)
    return path.is_dir() and any(
        _holds_pairs(root) for root in (path / "interferograms", path / "GEOC", path)
    )


def _holds_pairs(root: Path) -> bool:
    return root.is_dir() and next(root.glob(f"*/*{UNW_SUFFIX}"), None) is not None


def _discover_pairs(layout: _Layout) -> dict[str, _Pair]:
    """Pairs under the layout's root, keyed by label; checks names and duplicates.

    Every `*.geo.unw.tif` below the root counts (so a stray copy in a sub-folder is caught
    as a duplicate), and every folder directly in the root must be named like a pair.
    """
    pairs: dict[str, _Pair] = {}
    for file in sorted(layout.ifg_root.rglob(f"*{UNW_SUFFIX}")):
        label = file.name[: -len(UNW_SUFFIX)]
        ref, sec = _parse_pair(label, file)
        if label in pairs:
            raise InputError(
                f"pair {label} found twice: {pairs[label].unw} and {file}; "
                "remove one copy (e.g. a backup folder)"
            )
        if file.parent.name != label:
            logger.warning("%s: file of pair %s in folder %s", file, label, file.parent.name)
        pairs[label] = _Pair(label, ref, sec, file)
    holding = {p.unw.parent for p in pairs.values()}
    for folder in sorted(p for p in layout.ifg_root.iterdir() if p.is_dir()):
        if folder.name.startswith("."):
            continue  # hidden folders (e.g. notebook checkpoints) are not products
        _parse_pair(folder.name, folder)
        if folder not in holding:
            logger.warning("%s: no %s file; pair skipped", folder, UNW_SUFFIX)
    return pairs


def _parse_pair(label: str, where: Path) -> tuple[np.datetime64, np.datetime64]:
    """(ref, sec) dates of a pair name 'YYYYMMDD_YYYYMMDD', or InputError naming `where`."""
    fix = "rename it to earlier_later dates YYYYMMDD_YYYYMMDD or remove it"
    match = PAIR_RE.match(label)
    if not match:
        raise InputError(f"{where}: '{label}' is not a pair name YYYYMMDD_YYYYMMDD; {fix}")
    try:
        # int fields, not strptime: ~10x faster for the thousands of names of a frame
        ref, sec = (datetime(int(d[:4]), int(d[4:6]), int(d[6:8])) for d in match.groups())
    except ValueError as exc:
        raise InputError(
            f"{where}: '{label}' does not hold two valid dates ({exc}); {fix}"
        ) from exc
    if ref >= sec:
        raise InputError(f"{where}: pair '{label}' has its first date not before the second; {fix}")
    return np.datetime64(ref.date(), "ns"), np.datetime64(sec.date(), "ns")


def _select_pairs(
    pairs: dict[str, _Pair], exclude_pairs: Sequence[str], layout: _Layout
) -> list[_Pair]:
    """Pairs minus the excluded ones, ordered by (ref, sec); checks coherence files exist."""
    excluded = [exclude_pairs] if isinstance(exclude_pairs, str) else list(exclude_pairs)
    unknown = [label for label in excluded if label not in pairs]
    if unknown:
        some = ", ".join(sorted(pairs)[:5])
        raise InputError(
            f"exclude_pairs: {', '.join(map(str, unknown))} not found in {layout.ifg_root}; "
            f"existing pairs include {some} ({len(pairs)} in all). Fix the pair label(s)."
        )
    kept = sorted((p for p in pairs.values() if p.label not in excluded), key=_pair_key)
    if not kept:
        raise InputError(f"{layout.ifg_root}: every pair is excluded; exclude fewer pairs")
    for pair in kept:
        if not pair.cc.is_file():
            raise InputError(
                f"{pair.cc}: coherence file missing for pair {pair.label}; download it, or "
                f"exclude the pair with {_EXCLUDE_FIX}"
            )
    return kept


def _pair_key(pair: _Pair) -> tuple[np.datetime64, np.datetime64]:
    return (pair.ref, pair.sec)


# --------------------------------------------------------------------------- rasters


@contextmanager
def _open_raster(file: Path, fix: str) -> Iterator[Any]:
    """rasterio dataset of `file`; any read failure inside becomes an InputError naming it."""
    try:
        with warnings.catch_warnings(), quiet_gdal():
            # A file without georeferencing is reported below as a grid problem instead.
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with open_raster(file) as src:
                yield src
    except rasterio.errors.RasterioError as exc:
        # rasterio often says only "see previous exception": the GDAL cause is the useful part.
        detail = str(exc.__cause__ or exc)
        raise InputError(
            f"{file}: unreadable GeoTIFF, corrupt or incomplete ({detail}); {fix}"
        ) from exc


def _raster_grid(src: Any, file: Path) -> tuple[mosaic.Grid, bool]:
    """(grid, had no CRS) of an open raster; a missing CRS is LiCSAR's EPSG:4326."""
    try:
        grid = mosaic.Grid(
            src.transform, (int(src.height), int(src.width)), src.crs or CRS.from_epsg(4326)
        )
    except ValueError as exc:
        raise InputError(f"{file}: {exc}; LiCSAR products are north-up WGS84 grids") from exc
    if not grid.crs.is_geographic:
        raise InputError(
            f"{file}: CRS {grid.crs.to_string()} is not geographic; LiCSAR products are "
            "EPSG:4326 lon/lat grids"
        )
    return grid, src.crs is None


def _pair_grids(
    pairs: list[_Pair], progress: bool
) -> tuple[dict[Path, mosaic.Grid], list[Path], bool]:
    """Grid of every interferogram and coherence file (headers only, so a bad file fails
    before any work), the files without a CRS, and whether any file is striped
    (`mosaic.is_striped`; LiCSAR's gdal_translate calls ask for no tiles)."""
    fix = f"download the pair again or exclude it with {_EXCLUDE_FIX}"
    grids: dict[Path, mosaic.Grid] = {}
    bare: list[Path] = []
    striped = False
    for pair in _progress(pairs, progress, "checking interferograms"):
        for file in (pair.unw, pair.cc):
            with _open_raster(file, fix) as src:
                grids[file], no_crs = _raster_grid(src, file)
                striped = striped or mosaic.is_striped(src.block_shapes[0], src.width)
            if no_crs:
                bare.append(file)
    return grids, bare, striped


def _read_window(
    grid: mosaic.Grid, bbox: tuple[float, float, float, float] | None, factor: int, file: Path
) -> gridlib.PixelWindow:
    """Pixels to read: the bbox crop, trimmed to whole multilook blocks."""
    window = gridlib.PixelWindow(0, grid.shape[0], 0, grid.shape[1])
    if bbox is not None:
        crop = gridlib.bbox_window(grid.transform, grid.shape, tuple(float(v) for v in bbox))
        if crop is None:
            data = tuple(round(v, 7) for v in gridlib.extent(grid.transform, grid.shape))
            raise InputError(
                f"bbox {tuple(bbox)} (lon_min, lat_min, lon_max, lat_max) does not intersect "
                f"the data extent {data} of {file}; choose a bbox inside the data extent"
            )
        window = crop
    if factor > min(window.shape):
        raise InputError(
            f"multilook {factor} is larger than the {'cropped ' if bbox else ''}grid of "
            f"{window.height}x{window.width} px ({file}); use a smaller factor or a larger bbox"
        )
    ny, nx = gridlib.multilook_shape(window.shape, factor)
    return gridlib.PixelWindow(
        window.row0, window.row0 + ny * factor, window.col0, window.col0 + nx * factor
    )


def _lazy_pairs(
    pairs: list[_Pair],
    grids: dict[Path, mosaic.Grid],
    dst: mosaic.Grid,
    inside: np.ndarray | None,
    factor: int,
    chunks: tuple[int, int],
) -> tuple[da.Array, da.Array]:
    """Lazy unw [rad] and coh [0..1] (pair, y, x) float32 on `dst`, multilooked.

    Pixels are read later, one (rows, cols) = `chunks` block of every pair per task, each
    reading only the windows under it (`mosaic.lazy_layer`), which bounds memory by the chunk
    size whatever the frame size. Pixels outside `inside` (a polygon) are no data.
    """
    fix = f"download the pair again or exclude it with {_EXCLUDE_FIX}"

    def sources(kind: str) -> list[list[mosaic.Source]]:
        files = [p.unw if kind == "unw" else p.cc for p in pairs]
        return [
            [mosaic.Source(grids[f], partial(_open_reader, f, kind, fix), Resampling.bilinear)]
            for f in files
        ]

    common = {"factor": factor, "chunks": chunks, "inside": inside}
    return (
        mosaic.lazy_layer(sources("unw"), dst, **common),
        mosaic.lazy_layer(sources("cc"), dst, **common),
    )


def _open_reader(file: Path, kind: str, fix: str) -> AbstractContextManager[mosaic.WindowReader]:
    """Opener of `file` as a window reader of decoded values (unw: +1 x file, cc: 0..1)."""

    @contextmanager
    def opened() -> Iterator[mosaic.WindowReader]:
        with _open_raster(file, fix) as src:

            def read(win: gridlib.PixelWindow) -> np.ndarray:
                values = src.read(1, window=Window(win.col0, win.row0, win.width, win.height))
                if kind == "unw":
                    return _decode_float(values, src.nodata)
                return _decode_cc(values, src.nodata, file)

            yield read

    return opened()


def _progress(items: list[_Pair], enabled: bool, desc: str) -> Iterable[_Pair]:
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="pair")


def _nodata_mask(array: np.ndarray, nodata: float | None) -> np.ndarray:
    """True where `array` is no data: 0 (LiCSAR), non-finite, or the file's nodata tag."""
    bad = array == 0
    if np.issubdtype(array.dtype, np.floating):
        bad |= ~np.isfinite(array)
    if nodata is not None and np.isfinite(nodata):
        bad |= array == nodata
    return bad


def _decode_float(array: np.ndarray, nodata: float | None) -> np.ndarray:
    """float32 copy with no data -> NaN (unw keeps the file's sign: factor +1)."""
    out = array.astype(np.float32)
    out[_nodata_mask(array, nodata)] = np.nan
    return out


def _decode_cc(array: np.ndarray, nodata: float | None, file: Path) -> np.ndarray:
    """Coherence 0..1 float32 from uint8 0-255 (current) or float 0-1 (older); 0 -> NaN."""
    if array.dtype == np.uint8:
        out = array.astype(np.float32) / np.float32(255.0)
    elif np.issubdtype(array.dtype, np.floating):
        out = array.astype(np.float32)
    else:
        raise InputError(
            f"{file}: coherence of data type {array.dtype}; expected uint8 (0-255) or "
            "float32 (0-1): re-download the pair or exclude it"
        )
    out[_nodata_mask(array, nodata)] = np.nan
    return out


# --------------------------------------------------------------------------- geometry


def _geometry_files(meta_dir: Path, path: Path) -> tuple[str, dict[str, Path]]:
    """Frame id and the existing {component: file} geometry files in `meta_dir`."""
    found: dict[str, dict[str, Path]] = {}
    if meta_dir.is_dir():
        for file in sorted(meta_dir.iterdir()):
            match = _GEOMETRY_RE.match(file.name)
            if match and file.is_file():
                found.setdefault(match[1], {})[match[2]] = file
    if len(found) > 1:
        raise InputError(
            f"{meta_dir}: geometry files of several frames ({', '.join(sorted(found))}); "
            "keep only those of the frame whose interferograms are read"
        )
    if found:
        frame, files = next(iter(found.items()))
    else:
        frame, files = _frame_from_path(path), {}
    missing = [f"{frame or '{FRAME}'}.geo.{c}.tif" for c in GEOMETRY_FILES if c not in files]
    if missing:
        logger.warning(
            "%s: geometry file(s) %s missing; the matching variables are NaN "
            "(the inversion does not need them)",
            meta_dir,
            ", ".join(missing),
        )
    return frame, files


def _frame_from_path(path: Path) -> str:
    """Frame id found in the folder names (portal paths end in {track}/{frame})."""
    for part in reversed(path.resolve().parts):
        match = FRAME_RE.search(part)
        if match:
            return match[0]
    return ""


def _read_geometry(
    files: dict[str, Path], dst: mosaic.Grid, factor: int, shape: tuple[int, int]
) -> dict[str, np.ndarray]:
    """los_e/n/u, height, incidence (y, x) float32 on the output grid; NaN where missing.

    Each file is put on `dst` like the interferograms (copied if on its lattice, else
    resampled); one that does not reach `dst` belongs to another frame: an InputError."""
    fix = "use the metadata files of the same frame as the interferograms"
    out = {}
    for component, name in GEOMETRY_FILES.items():
        if component not in files:
            out[name] = np.full(shape, np.nan, dtype=np.float32)
            continue
        file = files[component]
        with _open_raster(file, fix) as src:
            grid, _ = _raster_grid(src, file)
            try:
                mosaic.require_overlap(dst, [[grid]], [str(file)])
            except InputError as exc:
                raise InputError(f"{exc}; {fix}") from None

            def read(win: gridlib.PixelWindow, src: Any = src) -> np.ndarray:
                window = Window(win.col0, win.row0, win.width, win.height)
                return _decode_float(src.read(1, window=window), src.nodata)

            values = mosaic.warp_onto(dst, grid, read)
        out[name] = gridlib.multilook(values, factor)
    if factor > 1:
        # A block mean of unit vectors is slightly shorter than 1: restore unit length.
        norm = np.sqrt(out["los_e"] ** 2 + out["los_n"] ** 2 + out["los_u"] ** 2)
        for name in ("los_e", "los_n", "los_u"):
            out[name] = (out[name] / norm).astype(np.float32)
    out["incidence"] = np.degrees(np.arccos(np.clip(out["los_u"], -1.0, 1.0))).astype(np.float32)
    return out


# --------------------------------------------------------------------------- baselines


def read_baselines(path: Path) -> dict[str, float]:
    """Perpendicular baseline [m] of each epoch 'YYYYMMDD' relative to the frame master.

    Reads the current 4-column form ``frame_master epoch bperp btemp`` and the old 9-column
    form ``num mdate sdate bp dt dt_m_sm dt_s_sm bp_m_sm bp_s_sm`` (columns 8 and 9 are the
    baselines of mdate and sdate relative to the single master). Returns {} with a logged
    warning if the file is missing; unparseable lines are skipped with a warning.
    """
    path = as_path(path)
    if not path.is_file():
        logger.warning("%s: baselines file missing; bperp is NaN for every pair", path)
        return {}
    epochs: dict[str, float] = {}
    masters: set[str] = set()
    bad_lines = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        cols = line.split()
        if not cols or cols[0].startswith("#"):
            continue
        try:
            epochs.update(_baseline_row(cols))
        except ValueError:
            bad_lines.append(number)
            continue
        if len(cols) == 4:
            masters.add(cols[0])
    for master in masters:
        # The frame master is listed as an epoch (bperp 0) only in some products.
        epochs.setdefault(master, 0.0)
    if bad_lines:
        logger.warning("%s: skipped unparseable line(s) %s", path, bad_lines[:10])
    if not epochs:
        logger.warning("%s: no baselines found; bperp is NaN for every pair", path)
    return epochs


def _baseline_row(cols: list[str]) -> dict[str, float]:
    """{epoch: bperp} from one row of either form; ValueError if it is neither."""
    if len(cols) == 4:
        _epoch(cols[0])
        return {_epoch(cols[1]): float(cols[2])}
    if len(cols) == 9:
        return {_epoch(cols[1]): float(cols[7]), _epoch(cols[2]): float(cols[8])}
    raise ValueError(f"expected 4 or 9 columns, got {len(cols)}")


def _epoch(text: str) -> str:
    """`text` if it is a YYYYMMDD date, else ValueError."""
    if len(text) != 8:
        raise ValueError(f"not a YYYYMMDD date: {text}")
    datetime.strptime(text, "%Y%m%d")
    return text


def _pair_bperp(path: Path, pairs: list[_Pair]) -> np.ndarray:
    """bperp[sec] - bperp[ref] [m] per pair, float32; NaN (with a warning) where unknown."""
    epochs = read_baselines(path)
    bperp = np.full(len(pairs), np.nan, dtype=np.float32)
    missing: set[str] = set()
    for k, pair in enumerate(pairs):
        ref, sec = pair.label.split("_")
        if ref in epochs and sec in epochs:
            bperp[k] = epochs[sec] - epochs[ref]
        else:
            missing.update(d for d in (ref, sec) if d not in epochs)
    if missing and epochs:
        logger.warning(
            "%s: no baseline for epoch(s) %s; bperp is NaN for the pairs using them",
            path,
            ", ".join(sorted(missing)[:10]),
        )
    return bperp


# --------------------------------------------------------------------------- metadata


def read_metadata_txt(path: Path) -> dict[str, str]:
    """key=value pairs of a LiCSAR metadata.txt ({} if the file is missing)."""
    path = as_path(path)
    if not path.is_file():
        return {}
    items = {}
    for line in path.read_text(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            items[key.strip()] = value.strip()
    return items


def orbit_direction(heading: float | None, frame: str) -> str:
    """'ascending'/'descending' from the heading [deg] (|heading| < 90 -> ascending, after
    wrapping to -180..180), else from the frame id letter; 'unknown' if neither is known."""
    if heading is not None and np.isfinite(heading):
        wrapped = (heading + 180.0) % 360.0 - 180.0
        return "ascending" if abs(wrapped) < 90.0 else "descending"
    if FRAME_RE.fullmatch(frame):
        return "ascending" if frame[3] == "A" else "descending"
    return "unknown"


def _attributes(
    layout: _Layout, frame: str, path: Path, multilook: int, wavelength: float | None
) -> dict[str, Any]:
    meta = read_metadata_txt(layout.meta_dir / "metadata.txt")
    try:
        heading: float | None = float(meta["heading"])
    except (KeyError, ValueError):
        heading = None
    direction = orbit_direction(heading, frame)
    if direction == "unknown":
        logger.warning(
            "%s: orbit direction unknown (no heading in metadata.txt, no frame id)", path
        )
    return {
        "wavelength": float(wavelength) if wavelength is not None else SENTINEL1_WAVELENGTH,
        "platform": "Sentinel-1",
        "orbit_direction": direction,
        "track": int(frame[:3]) if FRAME_RE.fullmatch(frame) else 0,
        "frame": frame,
        "processor": "COMET-LiCSAR",
        "source": str(path),
        "multilook": int(multilook),
    }


# --------------------------------------------------------------------------- dataset


def _build_dataset(
    pairs: list[_Pair],
    unw: np.ndarray,
    coh: np.ndarray,
    geometry: dict[str, np.ndarray],
    centres: tuple[np.ndarray, np.ndarray],
    transform: Affine,
    crs: CRS | None,
) -> xr.Dataset:
    y, x = centres
    dims = ("pair", "y", "x")
    data_vars: dict[str, Any] = {"unw": (dims, unw), "coh": (dims, coh)}
    data_vars.update({name: (("y", "x"), values) for name, values in geometry.items()})
    ds = xr.Dataset(
        data_vars,
        coords={
            "pair": np.array([p.label for p in pairs], dtype=str),
            "ref_date": ("pair", np.array([p.ref for p in pairs], dtype="datetime64[ns]")),
            "sec_date": ("pair", np.array([p.sec for p in pairs], dtype="datetime64[ns]")),
            "y": y,
            "x": x,
        },
    )
    ds = ds.rio.write_crs(crs if crs is not None else CRS.from_epsg(4326))
    return ds.rio.write_transform(transform)
