"""MintPy HDF5 stacks: import into an `IfgStack`, and export an `IfgStack` for MintPy.

MintPy (Yunjun et al. 2019, Computers & Geosciences 133, 104331) keeps a loaded stack in
``inputs/ifgramStack.h5`` and its geometry in ``inputs/geometryGeo.h5``; all datasets and
attributes sit at the root (MintPy docs ``api/data_structure.md``, ``api/attributes.md``;
FORMATS.md §5):

``ifgramStack.h5``
    ``date`` (m, 2) ``|S8`` YYYYMMDD reference and secondary date (earlier first);
    ``bperp`` (m,) float32 [m]; ``dropIfgram`` (m,) bool, True = keep;
    ``unwrapPhase`` (m, l, w) float32 [rad]; ``coherence`` (m, l, w) float32 0..1;
    optional ``connectComponent`` (m, l, w) int16, 0 = not unwrapped.
    Attributes: ``FILE_TYPE=ifgramStack``, ``LENGTH``, ``WIDTH``, ``WAVELENGTH`` [m],
    ``X_FIRST/Y_FIRST`` (outer corner of the upper-left pixel; pixel centres are at
    ``X_FIRST + (col + 0.5) X_STEP``), ``X_STEP/Y_STEP``, ``X_UNIT/Y_UNIT``, ``EPSG``,
    ``REF_Y/REF_X`` (reference pixel), ``PLATFORM``, ``ORBIT_DIRECTION``, ...
``geometryGeo.h5``
    ``height`` [m], ``incidenceAngle`` [deg from vertical], ``azimuthAngle`` [deg, of the
    ground-to-satellite LOS vector, from north, anticlockwise positive],
    ``slantRangeDistance`` [m], ``waterMask`` (bool, True = land).

Sign and units: MintPy's ``unwrapPhase`` is radians, positive for a range increase (motion
away from the satellite): its ``ifgram_inversion`` turns phase into LOS displacement towards
the satellite with ``-WAVELENGTH / (4 pi)``. That is the IfgStack convention, so the factor
applied here is **+1** in both directions (pinned by ``tests/io/test_mintpy.py``). MintPy treats
an exact 0 phase as no data; this reader turns 0 and NaN into NaN, the writer writes NaN.

Geometry: the IfgStack LOS unit vector (ground -> satellite) relates to MintPy's angles by
``e = -sin(inc) sin(az)``, ``n = sin(inc) cos(az)``, ``u = cos(inc)`` (MintPy
``utils0.get_unit_vector4component_of_interest``), hence ``az = atan2(-e, n)``. Only
geocoded stacks (``Y_FIRST`` present) are supported; radar-coordinate stacks must be
geocoded with MintPy's ``geocode.py`` first.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import rioxarray  # noqa: F401 - registers the .rio accessor used below
import xarray as xr
from affine import Affine
from rasterio.crs import CRS

from mtinsar.config import IngestConfig, RunConfig
from mtinsar.conventions import SENTINEL1_WAVELENGTH
from mtinsar.errors import InputError
from mtinsar.io.core import grid as gridlib
from mtinsar.io.core.select import select_area, select_pairs
from mtinsar.sources import remote
from mtinsar.stack import validate

logger = logging.getLogger(__name__)

STACK_FILE = "ifgramStack.h5"
GEOMETRY_FILE = "geometryGeo.h5"
#: Root attribute holding the IfgStack attrs as JSON, so an export reads back unchanged.
ATTRS_KEY = "MTINSAR_ATTRS"
#: Earth radius and Sentinel-1 orbit altitude [m], for a slant range modelled from incidence.
EARTH_RADIUS_M = 6_371_000.0
SENTINEL1_ALTITUDE_M = 693_000.0
#: Sentinel-1 IW single-look pixel spacings [m] (range, azimuth), as MintPy's sensor table.
_S1_PIXEL_M = (2.329562, 13.968)
_PLATFORM_TO_MINTPY = {"sentinel-1": "Sen", "sentinel1": "Sen", "s1": "Sen"}
_PLATFORM_FROM_MINTPY = {"sen": "Sentinel-1"}
_STACK_FIX = (
    "point at a MintPy inputs/ folder (or its ifgramStack.h5) written by MintPy's "
    "load_data.py or by mtinsar's write_mintpy"
)


@dataclass(frozen=True)
class MintpyFiles:
    """Paths of a MintPy stack: the interferograms and the geometry (may not exist)."""

    stack: Path | remote.RemotePath
    geometry: Path | remote.RemotePath


# --------------------------------------------------------------------------- discovery


def locate(path: str | Path) -> MintpyFiles:
    """The stack and geometry files for `path`: a MintPy work dir, its inputs/, or the file
    (local, or an ``s3://``/``https://`` URL listed through `mtinsar.sources.remote`)."""
    path = remote.as_path(path)
    if isinstance(path, remote.RemotePath) and path.suffix == ".h5":
        # A remote listing is of a folder: list the file's folder, then take the file.
        path = remote.as_path(str(path.parent)) / path.name
    for candidate in (path, path / STACK_FILE, path / "inputs" / STACK_FILE):
        if candidate.is_file() and candidate.suffix == ".h5":
            return MintpyFiles(candidate, candidate.with_name(GEOMETRY_FILE))
    if not path.exists():
        raise InputError(f"{path}: no such file or folder; {_STACK_FIX}")
    raise InputError(f"{path}: no {STACK_FILE} here nor in {path / 'inputs'}; {_STACK_FIX}")


def is_mintpy(path: str | Path) -> bool:
    """True if `path` is, or holds (directly or in inputs/), a MintPy ifgramStack.h5."""
    try:
        files = locate(path)
        with _open_h5(files.stack) as f:
            return _text(f.attrs.get("FILE_TYPE", "")) == "ifgramStack"
    except (InputError, OSError):
        return False


# --------------------------------------------------------------------------- import


@dataclass(frozen=True)
class _Selection:
    """What to read: pair indices in file order, their date/sign fixes, and the pixel window."""

    index: np.ndarray  # (k,) pair indices into the file, in output order
    sign: np.ndarray  # (k,) +1, or -1 where the file lists the later date first
    ref: np.ndarray  # (k,) datetime64[D]
    sec: np.ndarray  # (k,) datetime64[D]
    window: gridlib.PixelWindow
    factor: int
    inside: np.ndarray | None  # (window) True inside the polygon; None: every pixel


def read_mintpy(
    path: str | Path, config: IngestConfig | RunConfig | None = None, progress: bool = False
) -> xr.Dataset:
    """Read a MintPy ``ifgramStack.h5`` (+ ``geometryGeo.h5``) into a validated IfgStack.

    `path`: a MintPy work dir, its ``inputs/`` folder, or the ``ifgramStack.h5`` file.
    `path` may be an ``s3://`` or ``https://`` URL: the HDF5 files are then read in place
    through fsspec file objects, each read a ranged request (`remote.open_file`).
    `config`: an `IngestConfig` (or a `RunConfig`, whose ``ingest`` is used); every selection
    option applies (`mtinsar.io.core.select`: pairs and dates, a bbox and/or polygon in any CRS;
    pixels outside the polygon are no data), plus ``multilook`` and ``wavelength``. Pairs
    MintPy marked dropped (``dropIfgram`` False) are left out. Only the selected window is
    read from the file (h5py slices). Raises InputError naming the file and the fix.
    """
    ingest = getattr(config, "ingest", config) or IngestConfig()
    files = locate(path)
    with _open_h5(files.stack) as f:
        meta = _stack_meta(f, files.stack)
        crs, transform = _geo_grid(meta, files.stack)
        sel = _select(f, meta, transform, crs, ingest, files.stack)
        unw, coh, conncomp = _read_pairs(f, sel, files.stack, progress)
        bperp = _read_bperp(f, sel, files.stack)
    geometry = _read_geometry(files, meta, sel, unw.shape[1:])
    y, x = gridlib.pixel_centres(
        transform, unw.shape[1:], sel.window.row0, sel.window.col0, sel.factor
    )
    ds = _build_dataset(sel, unw, coh, conncomp, bperp, geometry, (y, x))
    # inplace: without it rioxarray deep-copies the cubes, twice the stack's memory
    ds.rio.write_crs(crs, inplace=True)
    ds.rio.write_transform(
        gridlib.window_transform(transform, sel.window.row0, sel.window.col0, sel.factor),
        inplace=True,
    )
    ds.attrs.update(_attributes(meta, files.stack, ingest, sel.factor))
    logger.info("read %d pairs from %s: %s", len(sel.index), files.stack, dict(ds.sizes))
    return validate(ds, source=str(files.stack))


@dataclass(frozen=True)
class _Meta:
    attrs: dict[str, str]
    shape: tuple[int, int, int]  # (pairs, rows, cols)


@contextmanager
def _open_h5(file: Path | remote.RemotePath) -> Iterator[h5py.File]:
    """`file` opened with h5py (a remote one through `remote.open_file`: ranged reads)."""
    with remote.open_file(file) as target:
        try:
            handle = h5py.File(target, "r")
        except OSError as exc:
            raise InputError(
                f"{file}: not a readable HDF5 file, corrupt or truncated ({exc}); write it "
                f"again with MintPy's load_data.py (or mtinsar's write_mintpy), or {_STACK_FIX}"
            ) from exc
        with handle:
            yield handle


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray) and value.size == 1:
        return _text(value.item())
    return str(value)


def _stack_meta(f: h5py.File, file: Path) -> _Meta:
    """Root attributes as strings, after checking FILE_TYPE and the required datasets."""
    attrs = {k: _text(v) for k, v in f.attrs.items()}
    kind = attrs.get("FILE_TYPE")
    if kind != "ifgramStack":
        raise InputError(
            f"{file}: FILE_TYPE is {kind!r}, not 'ifgramStack' (a MintPy "
            f"{kind or 'unknown'} file, not an interferogram stack); point at "
            f"inputs/{STACK_FILE} instead"
        )
    missing = [name for name in ("date", "unwrapPhase", "coherence") if name not in f]
    if missing:
        raise InputError(
            f"{file}: missing dataset(s) {', '.join(missing)} (an ifgramStack needs date, "
            f"unwrapPhase and coherence); load the stack again with MintPy's load_data.py, "
            "including the coherence files (mintpy.load.corFile)"
        )
    unw = f["unwrapPhase"]
    if unw.ndim != 3:
        raise InputError(f"{file}: unwrapPhase has {unw.ndim} dimensions, expected 3 (m, l, w)")
    if f["coherence"].shape != unw.shape:
        raise InputError(
            f"{file}: coherence shape {f['coherence'].shape} differs from unwrapPhase "
            f"{unw.shape}; load the stack again with MintPy's load_data.py"
        )
    if f["date"].shape != (unw.shape[0], 2):
        raise InputError(
            f"{file}: date has shape {f['date'].shape}, expected ({unw.shape[0]}, 2) "
            "(one reference and one secondary date per interferogram)"
        )
    for key, size in (("LENGTH", unw.shape[1]), ("WIDTH", unw.shape[2])):
        if key in attrs and _int(attrs[key], key, file) != size:
            raise InputError(
                f"{file}: attribute {key}={attrs[key]} does not match the data ({size}); "
                "the file is inconsistent: write it again"
            )
    return _Meta(attrs, tuple(int(n) for n in unw.shape))  # type: ignore[arg-type]


def _int(value: str, key: str, file: Path) -> int:
    try:
        return int(float(value))
    except ValueError:
        raise InputError(f"{file}: attribute {key}={value!r} is not a number") from None


def _float(attrs: dict[str, str], key: str, file: Path) -> float:
    try:
        value = float(attrs[key])
    except KeyError:
        raise InputError(
            f"{file}: missing attribute {key}; geocode the stack with MintPy's geocode.py "
            "(mtinsar reads geocoded stacks only)"
        ) from None
    except ValueError:
        raise InputError(f"{file}: attribute {key}={attrs[key]!r} is not a number") from None
    if not np.isfinite(value):
        raise InputError(f"{file}: attribute {key}={attrs[key]!r} is not finite")
    return value


def _geo_grid(meta: _Meta, file: Path) -> tuple[CRS, Affine]:
    """CRS and north-up transform of a geocoded stack (corner of the upper-left pixel)."""
    attrs = meta.attrs
    if "Y_FIRST" not in attrs:
        raise InputError(
            f"{file}: stack in radar coordinates (no Y_FIRST attribute); geocode it with "
            "MintPy's geocode.py first (mtinsar reads geocoded stacks only)"
        )
    x0, y0 = _float(attrs, "X_FIRST", file), _float(attrs, "Y_FIRST", file)
    dx, dy = _float(attrs, "X_STEP", file), _float(attrs, "Y_STEP", file)
    if not (dx > 0 and dy < 0):
        raise InputError(
            f"{file}: X_STEP={dx}, Y_STEP={dy}: expected X_STEP > 0 and Y_STEP < 0 (a north-up "
            "grid); resample the stack to a north-up grid"
        )
    return _crs(attrs, file), Affine(dx, 0.0, x0, 0.0, dy, y0)


def _crs(attrs: dict[str, str], file: Path) -> CRS:
    if attrs.get("EPSG", "").strip() not in ("", "None"):
        return CRS.from_epsg(_int(attrs["EPSG"], "EPSG", file))
    zone = attrs.get("UTM_ZONE", "").strip()
    if zone:
        number, letter = int(zone[:-1]), zone[-1].upper()
        return CRS.from_epsg((32600 if letter >= "N" else 32700) + number)
    if not attrs.get("X_UNIT", "degrees").lower().startswith("deg"):
        raise InputError(
            f"{file}: projected grid (X_UNIT={attrs['X_UNIT']}) without EPSG or UTM_ZONE "
            "attribute; add the EPSG attribute (e.g. with MintPy's add_attribute.py)"
        )
    return CRS.from_epsg(4326)


def _pair_dates(f: h5py.File, file: Path) -> tuple[np.ndarray, np.ndarray]:
    """(m,) datetime64[D] first and second date of every pair, as stored."""
    text = [_text(v) for v in np.asarray(f["date"][()]).ravel()]
    days = np.array([_day(d, file) for d in text], dtype="datetime64[D]").reshape(-1, 2)
    return days[:, 0], days[:, 1]


def _day(text: str, file: Path) -> np.datetime64:
    try:
        if len(text) != 8 or not text.isdigit():
            raise ValueError(text)
        return np.datetime64(date(int(text[:4]), int(text[4:6]), int(text[6:8])), "D")
    except ValueError:
        raise InputError(
            f"{file}: dataset date holds {text!r}, expected YYYYMMDD strings; write the stack "
            "again with MintPy's load_data.py"
        ) from None


def _select(
    f: h5py.File, meta: _Meta, transform: Affine, crs: CRS, ingest: IngestConfig, file: Any
) -> _Selection:
    first, second = _pair_dates(f, file)
    keep = np.asarray(f["dropIfgram"][()], dtype=bool) if "dropIfgram" in f else None
    if keep is None or keep.shape != first.shape:
        keep = np.ones(first.shape, dtype=bool)
    if (first == second).any():
        raise InputError(f"{file}: interferogram(s) with the same date twice; drop them in MintPy")
    sign = np.where(first < second, 1, -1)
    ref, sec = np.minimum(first, second), np.maximum(first, second)
    if (sign < 0).any():
        logger.info("%s: %d pair(s) list the later date first: flipped", file, (sign < 0).sum())
    if (~keep).any():
        logger.info("%s: leaving out %d pair(s) MintPy marked dropped", file, (~keep).sum())
    chosen = np.zeros(keep.shape, dtype=bool)
    chosen[select_pairs(_labels(ref, sec), ref, sec, ingest, str(file))] = True
    keep &= chosen
    if not keep.any():
        raise InputError(
            f"{file}: no interferogram left after the selection (dropIfgram and the ingest "
            "options); widen the date range or the pair lists"
        )
    idx = np.flatnonzero(keep)
    order = idx[np.lexsort((sec[idx], ref[idx]))]
    keys = np.stack([ref[order], sec[order]], axis=1).astype(np.int64)
    if len(np.unique(keys, axis=0)) != len(keys):
        raise InputError(
            f"{file}: the same pair appears twice; mark the duplicate as dropped "
            "(MintPy modify_network.py) or exclude it"
        )
    area = select_area(transform, meta.shape[1:], crs, ingest, str(file))
    return _Selection(
        order, sign[order], ref[order], sec[order], area.window, ingest.multilook, area.inside
    )


def _ymd(dates: np.ndarray) -> np.ndarray:
    """datetime64 array -> 'YYYYMMDD' strings."""
    iso = np.datetime_as_string(np.asarray(dates).astype("datetime64[D]"), unit="D")
    return np.char.replace(iso, "-", "")


def _labels(ref: np.ndarray, sec: np.ndarray) -> np.ndarray:
    return np.char.add(np.char.add(_ymd(ref), "_"), _ymd(sec))


def _read_pairs(
    f: h5py.File, sel: _Selection, file: Path, progress: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """unw [rad], coh, conncomp arrays (pair, y, x) of the window, multilooked."""
    w, k = sel.window, sel.factor
    shape = (len(sel.index), *gridlib.multilook_shape(w.shape, k))
    unw = np.empty(shape, dtype=np.float32)
    coh = np.empty(shape, dtype=np.float32)
    has_cc = "connectComponent" in f and f["connectComponent"].shape == f["unwrapPhase"].shape
    conncomp = np.zeros(shape, dtype=np.int16) if has_cc else None
    rows, cols = slice(w.row0, w.row1), slice(w.col0, w.col1)
    outside = None if sel.inside is None else ~sel.inside
    try:
        for n, i in enumerate(_progress(sel.index, progress, "reading interferograms")):
            phase = f["unwrapPhase"][i, rows, cols].astype(np.float32)
            phase[(phase == 0) | ~np.isfinite(phase)] = np.nan  # MintPy: 0 = no data
            c = f["coherence"][i, rows, cols].astype(np.float32)
            if outside is not None:
                phase[outside] = np.nan
                c[outside] = np.nan
            unw[n] = gridlib.multilook(phase * np.float32(sel.sign[n]), k)
            coh[n] = gridlib.multilook(c, k)
            if conncomp is not None:
                labels = f["connectComponent"][i, rows, cols].astype(np.int16)
                if outside is not None:
                    labels[outside] = 0
                # Labels are not averaged: take the upper-left pixel of each block.
                conncomp[n] = labels[::k, ::k]
    except OSError as exc:
        raise InputError(
            f"{file}: cannot read interferogram data ({exc}); the file is corrupt or "
            "truncated: write it again"
        ) from exc
    return unw, coh, conncomp


def _progress(items: np.ndarray, enabled: bool, desc: str) -> Any:
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="pair")


def _read_bperp(f: h5py.File, sel: _Selection, file: Path) -> np.ndarray:
    if "bperp" not in f or f["bperp"].shape != (f["unwrapPhase"].shape[0],):
        logger.warning("%s: no bperp dataset; bperp is NaN for every pair", file)
        return np.full(len(sel.index), np.nan, dtype=np.float32)
    return (np.asarray(f["bperp"][()], dtype=np.float32)[sel.index] * sel.sign).astype(np.float32)


def _read_geometry(
    files: MintpyFiles, meta: _Meta, sel: _Selection, shape: tuple[int, int]
) -> dict[str, np.ndarray]:
    """height, incidence, los_e/n/u, and water / slant_range where present, on the grid."""
    nan = np.full(shape, np.nan, dtype=np.float32)
    out: dict[str, np.ndarray] = {}
    if not files.geometry.is_file():
        logger.warning(
            "%s: no %s beside the stack; height and LOS geometry are NaN (the inversion does "
            "not need them)",
            files.stack,
            GEOMETRY_FILE,
        )
        raw: dict[str, np.ndarray] = {}
    else:
        raw = _read_geometry_file(files.geometry, meta, sel)
    out["height"] = raw.get("height", nan)
    inc = raw.get("incidenceAngle", nan)
    out["incidence"] = inc
    az = raw.get("azimuthAngle", nan)
    inc_r, az_r = np.deg2rad(inc.astype(np.float64)), np.deg2rad(az.astype(np.float64))
    out["los_e"] = (-np.sin(inc_r) * np.sin(az_r)).astype(np.float32)
    out["los_n"] = (np.sin(inc_r) * np.cos(az_r)).astype(np.float32)
    out["los_u"] = np.cos(inc_r).astype(np.float32)
    if "slantRangeDistance" in raw:
        out["slant_range"] = raw["slantRangeDistance"]
    if "waterMask" in raw:
        out["water"] = raw["waterMask"] == 0  # MintPy: True (1) = land
    return out


def _read_geometry_file(file: Path, meta: _Meta, sel: _Selection) -> dict[str, np.ndarray]:
    w, k = sel.window, sel.factor
    rows, cols = slice(w.row0, w.row1), slice(w.col0, w.col1)
    out = {}
    with _open_h5(file) as f:
        attrs = {key: _text(v) for key, v in f.attrs.items()}
        kind = attrs.get("FILE_TYPE", "geometry")
        if kind != "geometry":
            raise InputError(
                f"{file}: FILE_TYPE is {kind!r}, not 'geometry'; put MintPy's "
                f"{GEOMETRY_FILE} beside {STACK_FILE}"
            )
        for name in ("height", "incidenceAngle", "azimuthAngle", "slantRangeDistance"):
            if name not in f:
                continue
            _check_grid_shape(f[name].shape, meta, file, name)
            values = f[name][rows, cols].astype(np.float32)
            out[name] = gridlib.multilook(values, k)
        if "waterMask" in f:
            _check_grid_shape(f["waterMask"].shape, meta, file, "waterMask")
            out["waterMask"] = np.asarray(f["waterMask"][rows, cols][::k, ::k], dtype=bool)
    if "height" not in out:
        logger.warning("%s: no height dataset; height is NaN", file)
    return out


def _check_grid_shape(shape: tuple[int, ...], meta: _Meta, file: Path, name: str) -> None:
    if tuple(shape) != meta.shape[1:]:
        raise InputError(
            f"{file}: dataset {name} has shape {tuple(shape)}, but the stack grid is "
            f"{meta.shape[1:]}; use the geometry file of the same MintPy run"
        )


def _attributes(meta: _Meta, file: Path, ingest: Any, factor: int) -> dict[str, Any]:
    attrs = meta.attrs
    saved: dict[str, Any] = {}
    if ATTRS_KEY in attrs:
        try:
            saved = json.loads(attrs[ATTRS_KEY])
        except json.JSONDecodeError:
            logger.warning("%s: attribute %s is not JSON; ignored", file, ATTRS_KEY)
    override = getattr(ingest, "wavelength", None)
    if override is not None:
        wavelength = float(override)
    elif "WAVELENGTH" in attrs:
        wavelength = _float(attrs, "WAVELENGTH", file)
    else:
        raise InputError(
            f"{file}: missing attribute WAVELENGTH; give the radar wavelength in metres with "
            "ingest.wavelength (CLI: --wavelength), e.g. 0.05546576 for Sentinel-1"
        )
    platform = attrs.get("PLATFORM", "")
    native = {
        "platform": _PLATFORM_FROM_MINTPY.get(platform.lower(), platform),
        "orbit_direction": attrs.get("ORBIT_DIRECTION", "unknown").lower(),
        "track": _int(attrs.get("relative_orbit", "0"), "relative_orbit", file),
        "processor": attrs.get("PROCESSOR", "mintpy"),
        "multilook": factor,
    }
    out = {**native, **saved}
    if factor != 1:
        out["multilook"] = int(saved.get("multilook", 1)) * factor
    out["wavelength"] = wavelength
    out["source"] = str(file)
    return out


def _build_dataset(
    sel: _Selection,
    unw: np.ndarray,
    coh: np.ndarray,
    conncomp: np.ndarray | None,
    bperp: np.ndarray,
    geometry: dict[str, np.ndarray],
    centres: tuple[np.ndarray, np.ndarray],
) -> xr.Dataset:
    pair_dims = ("pair", "y", "x")
    data_vars: dict[str, Any] = {
        "unw": (pair_dims, unw),
        "coh": (pair_dims, coh),
        "bperp": ("pair", bperp),
    }
    if conncomp is not None:
        data_vars["conncomp"] = (pair_dims, conncomp)
    data_vars.update({name: (("y", "x"), values) for name, values in geometry.items()})
    return xr.Dataset(
        data_vars,
        coords={
            "pair": np.asarray(_labels(sel.ref, sel.sec), dtype=str),
            "ref_date": ("pair", sel.ref.astype("datetime64[ns]")),
            "sec_date": ("pair", sel.sec.astype("datetime64[ns]")),
            "y": centres[0],
            "x": centres[1],
        },
    )


# --------------------------------------------------------------------------- export


def write_mintpy(
    stack: xr.Dataset,
    out_dir: str | Path,
    *,
    reference: tuple[int, int] | None = None,
    looks: float | None = None,
    slant_range: float | np.ndarray | None = None,
    block_size: int = 256,
    progress: bool = False,
) -> MintpyFiles:
    """Write `stack` as MintPy's ``ifgramStack.h5`` and ``geometryGeo.h5`` in `out_dir`.

    `out_dir` is the MintPy ``inputs/`` folder (created if needed). `reference` (row, col)
    sets REF_Y/REF_X (MintPy's ifgram_inversion needs one). `looks` is the number of
    independent looks MintPy uses to turn coherence into weights (NCORRLOOKS); unset, MintPy
    derives it from ALOOKS x RLOOKS = the stack's multilook factor squared. `slant_range` [m]
    (scalar or (y, x)); unset: the stack's ``slant_range`` variable, else a spherical-Earth
    model from the incidence angle and Sentinel-1's orbit altitude. The stack is copied
    `block_size` pixels square at a time, so a lazy (Zarr) stack never sits whole in memory.
    Each file is written under a temporary name and renamed into place.
    """
    validate(stack, source="stack to export")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ny, nx = stack.sizes["y"], stack.sizes["x"]
    if reference is not None and not (0 <= reference[0] < ny and 0 <= reference[1] < nx):
        raise InputError(f"reference pixel {reference} is outside the {ny}x{nx} grid")
    attrs = _export_attrs(stack, reference, looks)
    files = MintpyFiles(out_dir / STACK_FILE, out_dir / GEOMETRY_FILE)
    _atomic(files.stack, lambda tmp: _write_stack(stack, tmp, attrs, block_size, progress))
    geometry = _export_geometry(stack, slant_range)
    geo_attrs = {**attrs, "FILE_TYPE": "geometry", "UNIT": "1"}
    _atomic(files.geometry, lambda tmp: _write_geometry(geometry, tmp, geo_attrs))
    logger.info("wrote MintPy stack of %d pairs to %s", stack.sizes["pair"], out_dir)
    return files


def _atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:12]}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _export_attrs(
    stack: xr.Dataset, reference: tuple[int, int] | None, looks: float | None
) -> dict[str, str]:
    """MintPy root attributes (all strings, as MintPy writes them)."""
    transform = gridlib.transform_from_centres(stack["y"].values, stack["x"].values)
    ny, nx = stack.sizes["y"], stack.sizes["x"]
    crs = stack.rio.crs or CRS.from_epsg(4326)
    geographic = bool(crs.is_geographic)
    platform = str(stack.attrs.get("platform", ""))
    direction = str(stack.attrs.get("orbit_direction", "unknown")).upper()
    factor = int(stack.attrs.get("multilook", 1) or 1)
    attrs = {
        "FILE_TYPE": "ifgramStack",
        "PROCESSOR": "mtinsar",
        "DATA_TYPE": "float32",
        "UNIT": "radian",
        "LENGTH": ny,
        "WIDTH": nx,
        "X_FIRST": repr(transform.c),
        "Y_FIRST": repr(transform.f),
        "X_STEP": repr(transform.a),
        "Y_STEP": repr(transform.e),
        "X_UNIT": "degrees" if geographic else "meters",
        "Y_UNIT": "degrees" if geographic else "meters",
        "WAVELENGTH": repr(float(stack.attrs.get("wavelength", SENTINEL1_WAVELENGTH))),
        "PLATFORM": _PLATFORM_TO_MINTPY.get(platform.lower(), platform),
        "ORBIT_DIRECTION": direction,
        "relative_orbit": int(stack.attrs.get("track", 0) or 0),
        "ANTENNA_SIDE": -1,  # Sentinel-1 looks right
        "ALOOKS": factor,
        "RLOOKS": factor,
        "RANGE_PIXEL_SIZE": _S1_PIXEL_M[0] * factor,
        "AZIMUTH_PIXEL_SIZE": _S1_PIXEL_M[1] * factor,
        "EARTH_RADIUS": EARTH_RADIUS_M,
        "HEIGHT": SENTINEL1_ALTITUDE_M,
        ATTRS_KEY: json.dumps(_jsonable(stack.attrs)),
    }
    epsg = crs.to_epsg()
    if epsg is not None:
        attrs["EPSG"] = epsg
    if not geographic and epsg is not None and epsg // 100 in (326, 327):
        attrs["UTM_ZONE"] = f"{epsg % 100}{'N' if epsg // 100 == 326 else 'S'}"
    heading = _heading(stack)
    if heading is not None:
        attrs["HEADING"] = repr(heading)
    if geographic:
        attrs.update(_corner_refs(transform, (ny, nx), direction))
    if looks is not None:
        attrs["NCORRLOOKS"] = repr(float(looks))
    if reference is not None:
        ry, rx = (int(v) for v in reference)
        attrs.update(
            REF_Y=ry,
            REF_X=rx,
            REF_LAT=repr(float(stack["y"][ry])),
            REF_LON=repr(float(stack["x"][rx])),
        )
    return {k: str(v) for k, v in attrs.items()}


def _jsonable(attrs: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in attrs.items():
        if isinstance(value, np.generic):
            value = value.item()
        out[str(key)] = value if isinstance(value, str | int | float | bool) else str(value)
    return out


def _heading(stack: xr.Dataset) -> float | None:
    """Platform heading [deg clockwise from north] from the mean LOS azimuth (MintPy: 90 - az)."""
    if "heading" in stack.attrs:
        return float(stack.attrs["heading"])
    az = _azimuth_angle(stack)
    if az is None or not np.isfinite(az).any():
        return None
    mean = float(np.rad2deg(np.angle(np.nanmean(np.exp(1j * np.deg2rad(az))))))
    return (90.0 - mean + 180.0) % 360.0 - 180.0


def _corner_refs(transform: Affine, shape: tuple[int, int], direction: str) -> dict[str, str]:
    """LAT/LON_REF1..4: the scene corners in MintPy's radar order (as its prep_hyp3 does)."""
    w, e = transform.c, transform.c + transform.a * shape[1]
    n, s = transform.f, transform.f + transform.e * shape[0]
    if direction == "ASCENDING":
        lats, lons = (s, s, n, n), (w, e, w, e)
    else:
        lats, lons = (n, n, s, s), (e, w, e, w)
    out = {f"LAT_REF{i + 1}": repr(v) for i, v in enumerate(lats)}
    out.update({f"LON_REF{i + 1}": repr(v) for i, v in enumerate(lons)})
    return out


def _blocks(ny: int, nx: int, size: int) -> Iterator[tuple[slice, slice]]:
    for y0 in range(0, ny, size):
        for x0 in range(0, nx, size):
            yield slice(y0, min(y0 + size, ny)), slice(x0, min(x0 + size, nx))


def _write_stack(
    stack: xr.Dataset, file: Path, attrs: dict[str, str], block_size: int, progress: bool
) -> None:
    m, ny, nx = stack.sizes["pair"], stack.sizes["y"], stack.sizes["x"]
    dates = np.stack(
        [_ymd(stack["ref_date"].values), _ymd(stack["sec_date"].values)], axis=1
    ).astype("S8")
    chunks = (1, min(ny, 128), min(nx, 128))
    now = str(time.time())
    with h5py.File(file, "w") as f:
        f.attrs.update(attrs)
        f.create_dataset("date", data=dates)
        f.create_dataset("bperp", data=np.asarray(stack["bperp"].values, dtype=np.float32))
        f.create_dataset("dropIfgram", data=np.ones(m, dtype=bool))
        cubes = {"unwrapPhase": ("unw", np.float32), "coherence": ("coh", np.float32)}
        if "conncomp" in stack.data_vars:
            cubes["connectComponent"] = ("conncomp", np.int16)
        for name, (_, dtype) in cubes.items():
            dset = f.create_dataset(
                name, shape=(m, ny, nx), dtype=dtype, chunks=chunks, maxshape=(None, ny, nx)
            )
            dset.attrs["MODIFICATION_TIME"] = now
        bar = _blocks(ny, nx, block_size)
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(list(bar), desc="writing ifgramStack.h5", unit="block")
        for ys, xs in bar:
            for name, (var, dtype) in cubes.items():
                block = np.asarray(stack[var][:, ys, xs].values)
                if dtype is np.int16:
                    block = np.nan_to_num(block, nan=0).astype(np.int16)
                f[name][:, ys, xs] = block.astype(dtype, copy=False)


def _azimuth_angle(stack: xr.Dataset) -> np.ndarray | None:
    """MintPy azimuthAngle [deg] from the LOS unit vector: atan2(-e, n)."""
    if "los_e" in stack.data_vars and "los_n" in stack.data_vars:
        e = np.asarray(stack["los_e"].values, dtype=np.float64)
        n = np.asarray(stack["los_n"].values, dtype=np.float64)
        return np.rad2deg(np.arctan2(-e, n)).astype(np.float32)
    return None


def _export_geometry(
    stack: xr.Dataset, slant_range: float | np.ndarray | None
) -> dict[str, np.ndarray]:
    shape = (stack.sizes["y"], stack.sizes["x"])
    inc = np.asarray(stack["incidence"].values, dtype=np.float32)
    out = {
        "height": np.asarray(stack["height"].values, dtype=np.float32),
        "incidenceAngle": inc,
    }
    az = _azimuth_angle(stack)
    if az is None and "azimuth" in stack.data_vars:
        logger.warning(
            "stack has 'azimuth' but no LOS unit vector; azimuthAngle is not written "
            "(its convention is not fixed by the IfgStack schema)"
        )
    if az is not None:
        out["azimuthAngle"] = az
    if slant_range is None and "slant_range" in stack.data_vars:
        slant_range = np.asarray(stack["slant_range"].values)
    if slant_range is None:
        slant_range = model_slant_range(inc)
    out["slantRangeDistance"] = np.broadcast_to(
        np.asarray(slant_range, dtype=np.float32), shape
    ).copy()
    if "water" in stack.data_vars:
        water = np.asarray(stack["water"].values)
        is_water = water.astype(bool) if water.dtype == bool else np.nan_to_num(water) != 0
        out["waterMask"] = ~is_water
    return out


def model_slant_range(
    incidence_deg: np.ndarray,
    altitude_m: float = SENTINEL1_ALTITUDE_M,
    earth_radius_m: float = EARTH_RADIUS_M,
) -> np.ndarray:
    """Slant range [m] from the incidence angle [deg] on a spherical Earth.

    Law of sines in the triangle Earth centre - target - satellite: the look angle is
    asin(Re sin(inc) / (Re + H)) and the range (Re + H) sin(inc - look) / sin(inc).
    """
    inc = np.deg2rad(np.asarray(incidence_deg, dtype=np.float64))
    orbit = earth_radius_m + altitude_m
    look = np.arcsin(earth_radius_m * np.sin(inc) / orbit)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (orbit * np.sin(inc - look) / np.sin(inc)).astype(np.float32)


def _write_geometry(geometry: dict[str, np.ndarray], file: Path, attrs: dict[str, str]) -> None:
    with h5py.File(file, "w") as f:
        f.attrs.update(attrs)
        for name, values in geometry.items():
            f.create_dataset(name, data=values)
