"""ISCE2 topsStack geocoded products -> `IfgStack` (read through GDAL: rasterio).

Layout read (FORMATS.md §4, geocoded files carry the extra ``.geo`` suffix)::

    {stack}/merged/interferograms/YYYYMMDD_YYYYMMDD/
        filt_fine.unw.geo   (+ .vrt / .xml)   2-band BIL float32: amplitude, unwrapped phase [rad]
        filt_fine.cor.geo   (+ .vrt / .xml)   coherence 0-1 (the last band; phsig.cor.geo accepted)
        filt_fine.unw.conncomp.geo            SNAPHU connected components (optional)
    {stack}/merged/geom_reference/
        hgt.rdr.geo  (or hgt.geo)             height [m]
        los.rdr.geo  (or los.geo)             2-band: incidence [deg], azimuth [deg]
        waterMask.rdr.geo                     1 = land, 0 = water (optional)
    {stack}/baselines/{REF}_{DATE}/{REF}_{DATE}.txt   "Bperp (average): <m>" per swath (optional)
    {stack}/reference/IW*.xml                 radarwavelength, passdirection, tracknumber

Each raster is opened through its GDAL ``.vrt`` (VRTRawRasterBand, as ISCE writes it) when
present, else through the raw file and its ISCE ``.xml`` (GDAL's ISCE driver); only the
selected window is read.

Sign and units: topsStack pairs are named earlier_later and the unwrapped phase is positive
for a range increase (away from the satellite); MintPy's ``prep_isce.py`` loads it as is
(FORMATS.md §9). That is the IfgStack convention, so ``unw = PHASE_FACTOR * phase`` with
``PHASE_FACTOR = +1``. No data: amplitude 0 or phase exactly 0 (ISCE writes 0 outside the
footprint and where unwrapping failed; MintPy treats 0 phase as no data), coherence 0.

Geometry: ``los`` band 1 is the incidence angle, band 2 the azimuth of the LOS vector
(ground -> satellite) from north, anticlockwise (MintPy ``azimuthAngle`` takes it as is); the
LOS unit vector follows from `mosaic.los_from_angles`. Incidence 0 marks no data.

Baselines: topsStack writes one file per date against the stack reference date (the first
date of every folder name); Bperp of a date is the mean over swaths (MintPy
``read_tops_baseline``) and the pair's ``bperp = B(sec) - B(ref)``. Missing: NaN.

Several stacks (e.g. adjacent frames along a track) can be read together: each pair is
stitched from the stacks holding it and put on one common grid (`mtinsar.io.core.mosaic`).
unw/coh/conncomp are read lazily (`mosaic.lazy_layer`): each (all pairs, chunk_size,
chunk_size) block reads only its window of the files under it when computed; every file's
header is checked, and the geometry read, when the stack is opened.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import dask.array as da
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

#: unw = PHASE_FACTOR * phase: topsStack phase is earlier->later, positive away (MintPy).
PHASE_FACTOR = 1.0
UNW = "filt_fine.unw.geo"
COR = ("filt_fine.cor.geo", "phsig.cor.geo")
CONNCOMP = "filt_fine.unw.conncomp.geo"
HEIGHT = ("hgt.rdr.geo", "hgt.geo")
LOS = ("los.rdr.geo", "los.geo")
WATER = ("waterMask.rdr.geo", "waterMask.geo")
PAIR_RE = re.compile(r"^(\d{8})_(\d{8})$")
_LAYOUT = "{stack}/merged/interferograms/YYYYMMDD_YYYYMMDD/" + UNW
_EXCLUDE = "or leave the pair out with ingest.exclude_pairs"


@dataclass(frozen=True)
class IsceStack:
    """One topsStack folder: where its files are and what its metadata says."""

    root: Path
    pairs: dict[str, Path]  # label -> interferogram folder
    geometry_dir: Path
    wavelength: float | None
    track: int | None
    orbit_direction: str
    bperp: dict[str, float] = field(default_factory=dict)  # date -> Bperp vs stack reference


# --------------------------------------------------------------------------- entry points


def is_isce(path: str | Path) -> bool:
    """True for a topsStack folder (or its merged/ or merged/interferograms/) with geocoded
    unwrapped interferograms."""
    try:
        root = _stack_root(remote.as_path(path))
    except InputError:
        return False
    return any((root / "merged" / "interferograms").glob(f"*/{UNW}"))


def read_isce(
    path_or_paths: str | Path | Sequence[str | Path],
    config: IngestConfig | None = None,
    progress: bool = False,
) -> xr.Dataset:
    """Read one or several ISCE2 topsStack folders of geocoded products into one IfgStack.

    config: selection (pairs, dates, bbox/polygon), multilook and wavelength override.
    Returns a validated IfgStack whose unw/coh/conncomp are dask arrays of (all pairs,
    config.chunk_size, config.chunk_size) blocks, each reading only its window of the files
    under it when computed (headers are checked and geometry is read now); raises InputError
    naming the file and fix.
    """
    config = config if config is not None else IngestConfig()
    items = [path_or_paths] if isinstance(path_or_paths, str | Path) else list(path_or_paths)
    if not items:
        raise InputError("no ISCE2 topsStack folder given; pass the stack folder(s)")
    stacks = [inspect_stack(remote.as_path(p), config.wavelength) for p in items]
    track, direction = _check_consistent(stacks, config.wavelength)
    source = str(items[0]) if len(items) == 1 else f"{items[0]} (+{len(items) - 1} more)"
    all_labels = sorted({lb for s in stacks for lb in s.pairs})
    ref = np.array([_date(lb[:8]) for lb in all_labels])
    sec = np.array([_date(lb[9:]) for lb in all_labels])
    labels = [all_labels[k] for k in select_pairs(all_labels, ref, sec, config, source)]
    frames = {lb: [(s, _raster_grid(s.pairs[lb] / UNW)) for s in stacks if lb in s.pairs]
              for lb in labels}  # fmt: skip
    footprints = [[g for _, g in frames[lb]] for lb in labels]
    names = [" + ".join(str(s.pairs[lb] / UNW) for s, _ in frames[lb]) for lb in labels]
    selected = config.bbox is not None or config.polygon is not None
    base = mosaic.common_grid(footprints, names, "union" if selected else "intersection")
    area = select_area(base.transform, base.shape, base.crs, config, source)
    dst = base.crop(area.window)
    mosaic.require_overlap(dst, footprints, names)

    pair_stacks = [[s for s, _ in frames[lb]] for lb in labels]
    pair_vars = _lazy_pairs(labels, pair_stacks, dst, area.inside, config, progress)
    pair_vars["bperp"] = _pair_bperp(stacks, labels)
    geometry = _read_geometry(stacks, dst)
    ds = _assemble(labels, pair_vars, geometry, dst, config.multilook)
    wavelength = config.wavelength or stacks[0].wavelength
    ds.attrs.update(
        wavelength=float(wavelength or 0.0),  # set: inspect_stack refuses a stack without it
        platform="Sentinel-1",
        orbit_direction=direction,
        track=track,
        frame="",
        processor="ISCE2-topsStack",
        source=source,
        multilook=int(config.multilook),
    )
    logger.info("read %d pairs from %s: %s", len(labels), source, dict(ds.sizes))
    return validate(ds, source=source)


# --------------------------------------------------------------------------- discovery


def _stack_root(path: Path) -> Path:
    """The topsStack folder from itself, its merged/ or its merged/interferograms/."""
    if not path.is_dir():
        raise InputError(f"{path}: no such folder; point at the ISCE2 topsStack folder")
    if path.name == "interferograms" and path.parent.name == "merged":
        return path.parent.parent
    if path.name == "merged" and (path / "interferograms").is_dir():
        return path.parent
    return path


def inspect_stack(path: Path, wavelength: float | None = None) -> IsceStack:
    """Pairs, geometry folder, metadata and baselines of one topsStack folder."""
    root = _stack_root(path)
    ifg_dir = root / "merged" / "interferograms"
    pairs: dict[str, Path] = {}
    radar_only: list[Path] = []
    if ifg_dir.is_dir():
        for folder in sorted(p for p in ifg_dir.iterdir() if p.is_dir()):
            if folder.name.startswith("."):
                continue
            if (folder / UNW).exists() or (folder / f"{UNW}.vrt").exists():
                pairs[_pair_label(folder)] = folder
            elif (folder / "filt_fine.unw").exists():
                radar_only.append(folder)
    if not pairs:
        if radar_only:
            raise InputError(
                f"{radar_only[0]}: only radar-coordinate products (filt_fine.unw); mtinsar reads "
                "geocoded ones: geocode the stack first (e.g. ISCE2 geocodeGdal.py, or MintPy's "
                f"geocode.py) so that {UNW} exists"
            )
        raise InputError(
            f"{path}: no geocoded ISCE2 interferograms found; looked for "
            f"{_LAYOUT.format(stack=root)}. Point at the topsStack folder"
        )
    meta = _read_reference_metadata(root, wavelength)
    return IsceStack(
        root=root,
        pairs=pairs,
        geometry_dir=root / "merged" / "geom_reference",
        wavelength=meta.get("radarwavelength"),
        track=meta.get("tracknumber"),
        orbit_direction=meta.get("passdirection", "unknown"),
        bperp=read_tops_baselines(root / "baselines"),
    )


def _pair_label(folder: Path) -> str:
    match = PAIR_RE.match(folder.name)
    fix = "rename it to earlier_later dates YYYYMMDD_YYYYMMDD or remove it"
    if not match:
        raise InputError(f"{folder}: '{folder.name}' is not a pair name YYYYMMDD_YYYYMMDD; {fix}")
    try:
        ref, sec = (np.datetime64(f"{d[:4]}-{d[4:6]}-{d[6:]}", "D") for d in match.groups())
    except ValueError as exc:
        raise InputError(f"{folder}: invalid date in '{folder.name}' ({exc}); {fix}") from exc
    if ref >= sec:
        raise InputError(f"{folder}: first date of '{folder.name}' is not before the second; {fix}")
    return folder.name


def _date(ymd: str) -> np.datetime64:
    return np.datetime64(f"{ymd[:4]}-{ymd[4:6]}-{ymd[6:8]}", "ns")


# --------------------------------------------------------------------------- metadata


def read_isce_properties(path: Path) -> dict[str, str]:
    """First value of every ``<property name=...>`` of an ISCE XML file, keyed by the name
    lower-cased without spaces (ISCE writes public names such as 'radar wavelength')."""
    try:
        # Bytes, not a file name: the same call serves local files and remote objects.
        root = ET.fromstring(path.read_bytes())
    except (ET.ParseError, OSError) as exc:
        raise InputError(f"{path}: not a readable ISCE XML file ({exc}); restore it") from exc
    props: dict[str, str] = {}
    for prop in root.iter("property"):
        name = re.sub(r"[\s_]", "", prop.get("name", "")).lower()
        value = prop.find("value")
        if name and value is not None and value.text is not None and name not in props:
            props[name] = value.text.strip()
    return props


def _read_reference_metadata(root: Path, wavelength: float | None) -> dict[str, Any]:
    """radarwavelength [m], tracknumber, passdirection from reference/IW*.xml (all swaths
    must agree). Without the files, ingest.wavelength must be given."""
    files = sorted((root / "reference").glob("IW*.xml"))
    if not files:
        if wavelength is None:
            raise InputError(
                f"{root / 'reference'}: no IW*.xml stack metadata (they hold the radar "
                "wavelength); copy the stack's reference/ folder next to merged/, or set "
                "ingest.wavelength [m] (Sentinel-1: 0.05546576)"
            )
        logger.warning("%s: no reference/IW*.xml; track and orbit direction unknown", root)
        return {}
    found: dict[str, tuple[Any, Path]] = {}
    for file in files:
        props = read_isce_properties(file)
        values = _decode_metadata(props, file, need_wavelength=wavelength is None)
        for key, value in values.items():
            if key in found and not _same(found[key][0], value):
                raise InputError(
                    f"{file}: {key} = {value} but {found[key][1]} says {found[key][0]}; the "
                    "swaths of one stack must agree: restore the reference/ folder of this stack"
                )
            found.setdefault(key, (value, file))
    return {key: value for key, (value, _) in found.items()}


def _decode_metadata(props: dict[str, str], file: Path, need_wavelength: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "radarwavelength" in props:
        try:
            out["radarwavelength"] = float(props["radarwavelength"])
        except ValueError:
            out["radarwavelength"] = float("nan")
        if not (np.isfinite(out["radarwavelength"]) and out["radarwavelength"] > 0):
            raise InputError(
                f"{file}: radarwavelength {props['radarwavelength']!r} is not a positive length "
                "[m]; restore the file or set ingest.wavelength"
            )
    elif need_wavelength:
        raise InputError(
            f"{file}: missing metadata key 'radarwavelength'; restore the topsStack reference "
            "XML, or set ingest.wavelength [m] (Sentinel-1: 0.05546576)"
        )
    if "tracknumber" in props:
        try:
            out["tracknumber"] = int(float(props["tracknumber"]))
        except ValueError:
            logger.warning("%s: tracknumber %r is not a number", file, props["tracknumber"])
    direction = props.get("passdirection", "").strip().lower()
    if direction in ("ascending", "descending"):
        out["passdirection"] = direction
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-6 * abs(a)
    return bool(a == b)


def _check_consistent(stacks: list[IsceStack], wavelength: float | None) -> tuple[int, str]:
    first = stacks[0]
    for s in stacks[1:]:
        if (s.track, s.orbit_direction) != (first.track, first.orbit_direction):
            raise InputError(
                f"mixed tracks: {s.root} is track {s.track} ({s.orbit_direction}) but "
                f"{first.root} is track {first.track} ({first.orbit_direction}); a stack holds "
                "one track: read each track's products separately"
            )
        if wavelength is None and not _same(first.wavelength, s.wavelength):
            raise InputError(
                f"mixed wavelengths: {s.root} has {s.wavelength} m but {first.root} has "
                f"{first.wavelength} m; read each sensor's products separately"
            )
    return (first.track if first.track is not None else 0), first.orbit_direction


def read_tops_baselines(folder: Path) -> dict[str, float]:
    """Bperp [m] of each date against the stack reference (reference itself: 0).

    Reads ``{folder}/{REF}_{DATE}/{REF}_{DATE}.txt``: the mean of the ``Bperp (average):``
    lines (one per swath), as MintPy's ``read_tops_baseline``. {} (with a warning) if absent.
    """
    files = sorted(folder.glob("*_*/*_*.txt")) if folder.is_dir() else []
    if not files:
        logger.warning("%s: no topsStack baseline files; bperp is NaN", folder)
        return {}
    out: dict[str, float] = {}
    for file in files:
        match = PAIR_RE.match(file.stem)
        if not match:
            continue
        values = []
        for line in file.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Bperp (average)":
                try:
                    values.append(float(value))
                except ValueError:
                    pass
        if not values:
            logger.warning("%s: no 'Bperp (average):' line; skipped", file)
            continue
        ref, date = match.groups()
        out.setdefault(ref, 0.0)
        out[date] = float(np.mean(values))
    return out


def _pair_bperp(stacks: list[IsceStack], labels: list[str]) -> np.ndarray:
    """B(sec) - B(ref) per pair from the first stack knowing both dates; NaN otherwise."""
    bperp = np.full(len(labels), np.nan, dtype=np.float32)
    for k, label in enumerate(labels):
        ref, sec = label.split("_")
        for s in stacks:
            if ref in s.bperp and sec in s.bperp:
                bperp[k] = s.bperp[sec] - s.bperp[ref]
                break
    if np.isnan(bperp).any() and any(s.bperp for s in stacks):
        logger.warning("no baseline for %d pair(s); their bperp is NaN", int(np.isnan(bperp).sum()))
    return bperp


# --------------------------------------------------------------------------- rasters


def _find(folder: Path, names: Sequence[str]) -> Path | None:
    for name in names:
        if (folder / name).exists() or (folder / f"{name}.vrt").exists():
            return folder / name
    return None


@contextmanager
def _open_raster(file: Path, fix: str) -> Iterator[Any]:
    """rasterio dataset of an ISCE image via its .vrt, else the raw file and its .xml."""
    vrt, xml = file.with_name(file.name + ".vrt"), file.with_name(file.name + ".xml")
    if vrt.is_file():
        target = vrt
    elif file.is_file() and xml.is_file():
        target = file
    elif file.is_file():
        raise InputError(
            f"{file}: no {vrt.name} or {xml.name} next to it; GDAL needs one of them to read a "
            "raw ISCE image: copy it along, or recreate it with ISCE2's fixImageXml.py"
        )
    else:
        raise InputError(f"{file}: missing; {fix}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            # Local, /vsis3/ or /vsicurl/: a VRT's raw file resolves next to the VRT.
            with remote.open_raster(target) as src:
                _check_size(file, src, fix)
                yield src
    except rasterio.errors.RasterioError as exc:
        raise InputError(
            f"{target}: unreadable, truncated or corrupt ({exc.__cause__ or exc}); {fix}"
        ) from exc


def _check_size(file: Path, src: Any, fix: str) -> None:
    """Refuse a raw image shorter than its header says: GDAL's raw reader would return
    zeros past the end of the file, which read as no data instead of an error."""
    if not file.is_file():
        return
    expected = src.width * src.height * sum(np.dtype(d).itemsize for d in src.dtypes)
    size = file.stat().st_size
    if size < expected:
        raise InputError(
            f"{file}: truncated ({size} bytes, its header describes {expected}); {fix}"
        )


def _raster_grid(file: Path, fix: str = f"copy it again, {_EXCLUDE}") -> mosaic.Grid:
    with _open_raster(file, fix) as src:
        return _grid_of(src, file)


def _grid_of(src: Any, file: Path) -> mosaic.Grid:
    crs = src.crs if src.crs is not None else CRS.from_epsg(4326)  # ISCE geocodes to WGS84
    try:
        return mosaic.Grid(src.transform, (int(src.height), int(src.width)), crs)
    except ValueError as exc:
        raise InputError(
            f"{file}: not a geocoded north-up grid ({exc}); mtinsar reads geocoded topsStack "
            "products (*.geo)"
        ) from exc


def _band_reader(src: Any, bands: Sequence[int], decode: Any) -> mosaic.WindowReader:
    """Reads `bands` of a window and turns them into one float32 array with `decode`."""

    def read(win: gridlib.PixelWindow) -> np.ndarray:
        window = Window(win.col0, win.row0, win.width, win.height)
        return decode(*(src.read(b, window=window) for b in bands))

    return read


def _decode_unw(amplitude: np.ndarray, phase: np.ndarray) -> np.ndarray:
    out = phase.astype(np.float32) * np.float32(PHASE_FACTOR)
    out[(amplitude == 0) | (phase == 0) | ~np.isfinite(phase)] = np.nan
    return out


def _decode_positive(values: np.ndarray) -> np.ndarray:
    """Coherence / incidence: 0 and non-finite are no data."""
    out = values.astype(np.float32)
    out[(values == 0) | ~np.isfinite(out)] = np.nan
    return out


def _decode_finite(values: np.ndarray) -> np.ndarray:
    out = values.astype(np.float32)
    out[~np.isfinite(out)] = np.nan
    return out


def _read_layer(
    file: Path,
    dst: mosaic.Grid,
    bands: Sequence[int] | None,
    decode: Any,
    resampling: Resampling,
    fix: str,
    n_bands: int | None = None,
) -> np.ndarray:
    """One layer of `file` on `dst` (bands None: the last band)."""
    with _open_raster(file, fix) as src:
        if n_bands is not None and src.count != n_bands:
            raise InputError(
                f"{file}: {src.count} band(s), expected {n_bands}; not an ISCE2 topsStack "
                f"product as expected: {fix}"
            )
        use = bands if bands is not None else [src.count]
        return mosaic.warp_onto(dst, _grid_of(src, file), _band_reader(src, use, decode),
                                resampling)  # fmt: skip


def _open_layer(
    file: Path, bands: Sequence[int] | None, decode: Any, fix: str
) -> contextlib.AbstractContextManager[mosaic.WindowReader]:
    """Opener of one layer of `file` (bands None: the last band) as a window reader."""

    @contextmanager
    def opened() -> Iterator[mosaic.WindowReader]:
        with _open_raster(file, fix) as src:
            yield _band_reader(src, bands if bands is not None else [src.count], decode)

    return opened()


def _layer_source(
    file: Path,
    bands: Sequence[int] | None,
    decode: Any,
    resampling: Resampling,
    fix: str,
    n_bands: int | None = None,
) -> mosaic.Source:
    """A lazy source of one layer of `file`; its header (size, bands, grid) is checked now."""
    with _open_raster(file, fix) as src:
        if n_bands is not None and src.count != n_bands:
            raise InputError(
                f"{file}: {src.count} band(s), expected {n_bands}; not an ISCE2 topsStack "
                f"product as expected: {fix}"
            )
        grid = _grid_of(src, file)
    return mosaic.Source(grid, partial(_open_layer, file, bands, decode, fix), resampling)


def _lazy_pairs(
    labels: list[str],
    stacks: list[list[IsceStack]],
    dst: mosaic.Grid,
    inside: np.ndarray | None,
    config: IngestConfig,
    progress: bool,
) -> dict[str, Any]:
    """Lazy unw [rad], coh [0-1] (and conncomp when every pair has it) (pair, y, x) on the
    multilooked `dst`: dask arrays of (all pairs, chunk_size, chunk_size) blocks, each
    reading only its window of the files under it when computed. Every file's header is
    checked now, so a missing or broken file fails before any pixel is read.

    stacks[k]: the stacks holding pair labels[k]; their frames are stitched in that order.
    """
    sources: dict[str, list[list[mosaic.Source]]] = {"unw": [], "coh": [], "cc": []}
    has_cc = True
    for k, label in enumerate(_progress(labels, progress)):
        frames: dict[str, list[mosaic.Source]] = {"unw": [], "coh": [], "cc": []}
        for stack in stacks[k]:
            folder = stack.pairs[label]
            fix = f"copy the pair folder {folder} again, {_EXCLUDE}"
            frames["unw"].append(_layer_source(folder / UNW, [1, 2], _decode_unw,
                                               Resampling.bilinear, fix, n_bands=2))  # fmt: skip
            cor = _find(folder, COR)
            if cor is None:
                raise InputError(f"{folder}: no coherence file ({' or '.join(COR)}); {fix}")
            frames["coh"].append(
                _layer_source(cor, None, _decode_positive, Resampling.bilinear, fix)
            )
            if _find(folder, [CONNCOMP]) is not None:
                frames["cc"].append(_layer_source(folder / CONNCOMP, [1], _decode_finite,
                                                  Resampling.nearest, fix))  # fmt: skip
            else:
                has_cc = False
        for name, items in frames.items():
            sources[name].append(items)
    common = {"factor": config.multilook, "chunk_size": config.chunk_size}
    out: dict[str, Any] = {
        "unw": mosaic.lazy_layer(sources["unw"], dst, align_cycles=True, inside=inside, **common),
        "coh": mosaic.lazy_layer(sources["coh"], dst, inside=inside, **common),
    }
    if has_cc:
        cc = mosaic.lazy_layer(sources["cc"], dst, labels=True, **common)
        out["conncomp"] = da.where(da.isnan(cc), -1, cc).astype(np.int16)
    return out


def _progress(items: list[Any], enabled: bool) -> Iterable[Any]:
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc="reading ISCE2 pairs", unit="pair")


def _read_geometry(stacks: list[IsceStack], dst: mosaic.Grid) -> dict[str, np.ndarray]:
    """incidence, azimuth [deg], height [m], water (y, x) on `dst`, stitched over stacks."""
    pieces: dict[str, list[np.ndarray]] = {"incidence": [], "azimuth": [], "height": [],
                                            "water": []}  # fmt: skip
    for stack in stacks:
        fix = f"copy {stack.geometry_dir} from the topsStack run"
        los = _find(stack.geometry_dir, LOS)
        hgt = _find(stack.geometry_dir, HEIGHT)
        if los is None or hgt is None:
            missing = " and ".join(n[0] for n, f in ((LOS, los), (HEIGHT, hgt)) if f is None)
            raise InputError(f"{stack.geometry_dir}: missing {missing} (geometry); {fix}")
        inc = _read_layer(los, dst, [1], _decode_positive, Resampling.bilinear, fix, n_bands=2)
        az = _read_layer(los, dst, [2], _decode_finite, Resampling.bilinear, fix, n_bands=2)
        az[np.isnan(inc)] = np.nan
        height = _read_layer(hgt, dst, [1], _decode_finite, Resampling.bilinear, fix)
        height[np.isnan(inc)] = np.nan
        pieces["incidence"].append(inc)
        pieces["azimuth"].append(az)
        pieces["height"].append(height)
        water = _find(stack.geometry_dir, WATER)
        if water is not None:
            land = _read_layer(water, dst, [1], _decode_finite, Resampling.nearest, fix)
            land[np.isnan(inc)] = np.nan
            pieces["water"].append(land)
    out = {name: mosaic.stitch(p) for name, p in pieces.items() if p and name != "water"}
    if len(pieces["water"]) == len(stacks):
        out["land"] = mosaic.stitch(pieces["water"])
    return out


def _assemble(
    labels: list[str],
    pair_vars: dict[str, Any],
    geometry: dict[str, np.ndarray],
    dst: mosaic.Grid,
    factor: int,
) -> xr.Dataset:
    """LOS vector, water mask and multilooked geometry; the IfgStack Dataset (pair_vars
    already lazy, masked and multilooked)."""
    grid_vars = mosaic.stack_geometry(
        geometry["incidence"], geometry["azimuth"], geometry["height"], factor
    )
    if "land" in geometry:
        land = mosaic.multilook_nearest(geometry["land"], factor)
        grid_vars["water"] = land == 0
    ds = mosaic.stack_dataset(dst.coarsen(factor), labels, pair_vars, grid_vars, {})
    if "conncomp" in ds:
        ds["conncomp"].attrs.update(nodata=-1, long_name="connected component (0 = unreliable)")
    return ds
