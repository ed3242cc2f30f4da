"""The interferogram stack (`IfgStack`): schema check and Zarr v3 storage (DESIGN §3).

An IfgStack is an `xarray.Dataset` with dims (pair, y, x):

* coords: `pair` (labels "YYYYMMDD_YYYYMMDD"), `ref_date(pair)`, `sec_date(pair)`
  (datetime64[ns]), `y`/`x` pixel centres (y decreasing, x increasing: north-up), and the CRS
  written the rioxarray way (scalar coord `spatial_ref` with `crs_wkt` and `GeoTransform`);
* variables: `unw(pair,y,x)` float32 rad (positive = range increase, so LOS displacement
  towards the satellite is -wavelength/(4 pi) * unw), `coh(pair,y,x)` float32 0..1,
  `bperp(pair)` float32 m, `height(y,x)` float32 m, `incidence(y,x)` float32 deg and the LOS
  unit vector `los_e/los_n/los_u(y,x)` float32 ground->satellite (or `azimuth(y,x)`);
  optional `conncomp(pair,y,x)`, `water(y,x)`. NaN marks no data;
* attrs: `wavelength` [m] (required), `platform`, `orbit_direction`, `track`, `frame`,
  `processor`, `source`, `multilook`.

Pairs are ordered by (ref_date, sec_date), ref_date < sec_date, and unique.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import rioxarray  # noqa: F401 - registers .rio so opened stacks expose ds.rio.crs
import xarray as xr

from mtinsar.errors import InputError
from mtinsar.progress import progress_bar
from mtinsar.sources import remote

logger = logging.getLogger(__name__)

PAIR_DIMS = ("pair", "y", "x")
GRID_DIMS = ("y", "x")
#: Variables every stack has: name -> dims (all float32).
REQUIRED_VARS: dict[str, tuple[str, ...]] = {
    "unw": PAIR_DIMS,
    "coh": PAIR_DIMS,
    "bperp": ("pair",),
    "height": GRID_DIMS,
    "incidence": GRID_DIMS,
}
LOS_VARS = ("los_e", "los_n", "los_u")
#: Optional variables: name -> (dims, required dtype kind or None for any).
OPTIONAL_VARS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "los_e": (GRID_DIMS, "f4"),
    "los_n": (GRID_DIMS, "f4"),
    "los_u": (GRID_DIMS, "f4"),
    "azimuth": (GRID_DIMS, "f4"),
    "conncomp": (PAIR_DIMS, None),
    "water": (GRID_DIMS, None),
}
_FIX = "re-create the store with `mtinsar ingest`, or fix the reader that built the dataset"


# --------------------------------------------------------------------------- validate


def validate(ds: xr.Dataset, source: str = "stack") -> xr.Dataset:
    """Check `ds` against the IfgStack schema; return it unchanged, or raise InputError.

    Only coordinates and metadata are inspected (no pixel data is loaded), so this is cheap
    on a lazy, dask-backed stack. The error lists every problem found and names `source`.
    """
    problems = _check_dims(ds) + _check_vars(ds) + _check_coords(ds) + _check_attrs(ds)
    if not problems:
        problems = _check_pairs(ds)
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise InputError(f"{source}: not a valid interferogram stack:\n{listing}\nFix: {_FIX}.")
    return ds


def _check_dims(ds: xr.Dataset) -> list[str]:
    return [f"missing dimension '{d}'" for d in PAIR_DIMS if d not in ds.dims]


def _check_vars(ds: xr.Dataset) -> list[str]:
    problems = []
    for name, dims in REQUIRED_VARS.items():
        problems += _check_var(ds, name, dims, "f4", required=True)
    for name, (dims, kind) in OPTIONAL_VARS.items():
        problems += _check_var(ds, name, dims, kind, required=False)
    if not all(v in ds.data_vars for v in LOS_VARS) and "azimuth" not in ds.data_vars:
        problems.append("missing geometry: need variables los_e, los_n, los_u (or azimuth)")
    return problems


def _check_var(
    ds: xr.Dataset, name: str, dims: tuple[str, ...], dtype: str | None, required: bool
) -> list[str]:
    if name not in ds.data_vars:
        need = f" {dims} {dtype}" if dtype else f" {dims}"
        return [f"missing variable '{name}'{need}"] if required else []
    var = ds[name]
    problems = []
    if var.dims != dims:
        problems.append(f"variable '{name}' has dims {var.dims}, expected {dims}")
    if dtype is not None and var.dtype != np.dtype(dtype):
        problems.append(f"variable '{name}' has dtype {var.dtype}, expected {np.dtype(dtype)}")
    return problems


def _check_coords(ds: xr.Dataset) -> list[str]:
    problems = []
    for name in ("pair", "y", "x"):
        if name not in ds.coords:
            problems.append(f"missing coordinate '{name}'")
    for name in ("ref_date", "sec_date"):
        if name not in ds.coords:
            problems.append(f"missing coordinate '{name}(pair)' (datetime64)")
        elif ds[name].dims != ("pair",) or ds[name].dtype.kind != "M":
            problems.append(
                f"coordinate '{name}' must be datetime64 along (pair,), "
                f"got {ds[name].dtype} along {ds[name].dims}"
            )
    if "spatial_ref" not in ds.coords:
        problems.append("missing CRS coordinate 'spatial_ref' (write it with ds.rio.write_crs)")
    for name, sign, word in (("y", -1, "decreasing (north-up)"), ("x", 1, "increasing")):
        if name in ds.coords and ds[name].ndim == 1 and ds[name].size > 1:
            step = np.diff(np.asarray(ds[name].values, dtype=np.float64))
            if not np.all(sign * step > 0):
                problems.append(f"coordinate '{name}' must be strictly {word}")
    return problems


def _check_attrs(ds: xr.Dataset) -> list[str]:
    wavelength = ds.attrs.get("wavelength")
    if wavelength is None:
        return ["missing attribute 'wavelength' [m]"]
    try:
        ok = np.isfinite(float(wavelength)) and float(wavelength) > 0
    except (TypeError, ValueError):
        ok = False
    if ok:
        return []
    return [f"attribute 'wavelength' must be a positive number [m], got {wavelength!r}"]


def _check_pairs(ds: xr.Dataset) -> list[str]:
    """Order, uniqueness and labels of the pairs (needs valid dims and coords)."""
    ref = np.asarray(ds["ref_date"].values).astype("datetime64[ns]")
    sec = np.asarray(ds["sec_date"].values).astype("datetime64[ns]")
    labels = np.array([str(v) for v in ds["pair"].values])
    problems = []
    bad = labels[~(ref < sec)]
    if bad.size:
        problems.append(f"pairs with ref_date >= sec_date: {_few(bad)}")
    expected = np.char.add(np.char.add(_ymd(ref), "_"), _ymd(sec))
    mismatched = labels[labels != expected]
    if mismatched.size:
        problems.append(f"pair labels that do not match ref_date_sec_date: {_few(mismatched)}")
    keys = np.stack([ref.astype(np.int64), sec.astype(np.int64)], axis=1)
    if len(np.unique(keys, axis=0)) != len(keys) or len(np.unique(labels)) != len(labels):
        problems.append("duplicate pairs (the same ref_date, sec_date twice)")
    order = np.lexsort((sec, ref))
    if not np.array_equal(order, np.arange(len(order))):
        problems.append("pairs are not ordered by (ref_date, sec_date)")
    return problems


def _ymd(dates: np.ndarray) -> np.ndarray:
    """datetime64 array -> 'YYYYMMDD' strings."""
    iso = np.datetime_as_string(dates.astype("datetime64[D]"), unit="D")
    return np.char.replace(iso, "-", "")


def _few(items: np.ndarray, n: int = 5) -> str:
    shown = ", ".join(str(v) for v in items[:n])
    return shown + (f" (and {len(items) - n} more)" if len(items) > n else "")


# --------------------------------------------------------------------------- dates


def check_pairs_have_data(ds: xr.Dataset, n_valid: np.ndarray) -> None:
    """Raise InputError if a pair has no valid pixel; `n_valid` (pair,) counts valid unw.

    Readers load pixels lazily, so this runs where the pixels are first read (the run's
    statistics pass, the ingest write) rather than in the reader.
    """
    empty = np.asarray(ds["pair"].values)[np.asarray(n_valid) == 0]
    if empty.size:
        source = ds.attrs.get("source", "the stack")
        raise InputError(
            f"{source}: pair {_few(empty)} has no valid data (every pixel is no data); remove "
            f"it or exclude it with exclude_pairs=['{empty[0]}'] (CLI: --exclude-pair "
            f"{empty[0]})"
        )


def dates(ds: xr.Dataset) -> np.ndarray:
    """Sorted unique acquisition dates (datetime64[D]) of the stack's pairs."""
    both = np.concatenate([np.asarray(ds["ref_date"].values), np.asarray(ds["sec_date"].values)])
    return np.unique(both.astype("datetime64[D]"))


# --------------------------------------------------------------------------- save


def save(
    ds: xr.Dataset, path: str | Path, chunk_size: int = 256, progress: bool = False
) -> Path | str:
    """Write a stack to a Zarr v3 store at `path`, atomically; returns the path.

    Chunked in space only: every chunk holds all pairs of a `chunk_size` x `chunk_size` pixel
    block (or of a whole-width band as large, see `chunked`), so one pixel's history is one
    read. The store is written to a temporary sibling
    and renamed into place; an existing store at `path` is removed only after the new one is
    complete, and a failure leaves it untouched with no temporary directory behind.

    `path` may be an object-storage URL (``s3://bucket/stack.zarr``; returned as a string);
    see `_save_remote` for how the missing atomic rename is made up for there.
    """
    validate(ds, source="stack to save")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer [pixels], got {chunk_size!r}")
    if remote.is_remote(path):
        url = str(path).rstrip("/")
        _save_remote(ds, url, chunk_size, progress)
        logger.info("saved stack of %d pairs to %s", ds.sizes["pair"], url)
        return url
    path = Path(path)
    _check_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        _write(ds, tmp, chunk_size, progress, label=path.name)
        _replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("saved stack of %d pairs to %s", ds.sizes["pair"], path)
    return path


def _check_target(path: Path) -> None:
    """Refuse to replace anything but a Zarr store (protects unrelated user folders)."""
    if path.exists() and not (path.is_dir() and (path / "zarr.json").is_file()):
        raise InputError(
            f"{path}: exists and is not a stack store; choose another output path or remove it"
        )


def _write(
    ds: xr.Dataset,
    target: Path | str,
    chunk_size: int,
    progress: bool,
    label: str,
    storage_options: dict[str, Any] | None = None,
) -> None:
    out, encoding = _prepare(ds, chunk_size)
    delayed = out.to_zarr(
        target,
        mode="w-",
        zarr_format=3,
        consolidated=False,
        encoding=encoding,
        compute=False,
        storage_options=storage_options,
    )
    n_valid = da.isfinite(out["unw"].data).sum(axis=(1, 2))
    with progress_bar(f"writing {label}", progress):
        _, n_valid = dask.compute(delayed, n_valid)  # one pass over the pixels
    check_pairs_have_data(ds, n_valid)


def chunked(ds: xr.Dataset, chunk_size: int) -> xr.Dataset:
    """`ds` chunked in space only (whole along `pair`), about `chunk_size`² pixels a chunk.

    Square `chunk_size` blocks, except that whole-width bands of at most `chunk_size`²
    pixels, the chunks readers give stacks of striped GeoTIFFs
    (`mtinsar.io.core.mosaic.layer_chunks`), are kept: squaring those would make every square
    wait for a whole row of bands, every pair of it, in memory.
    """
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    chunks = ds["unw"].chunks
    if chunks is not None and len(chunks[2]) == 1 and nx > chunk_size:
        if max(chunks[1]) * nx <= chunk_size * chunk_size:
            return ds.chunk({"pair": -1, "y": chunks[1], "x": -1})
    return ds.chunk({"pair": -1, "y": min(chunk_size, ny), "x": min(chunk_size, nx)})


def _prepare(ds: xr.Dataset, chunk_size: int) -> tuple[xr.Dataset, dict[str, dict[str, Any]]]:
    """Copy of `ds` chunked for storage, and the encodings that make the round trip exact."""
    out = ds.drop_encoding()
    # Variable-length UTF-8 has a Zarr v3 spec; fixed-width numpy unicode does not (it warns).
    out = out.assign_coords(pair=np.asarray([str(v) for v in out["pair"].values], dtype=object))
    out = chunked(out, chunk_size)
    encoding: dict[str, dict[str, Any]] = {
        name: _date_encoding(out[name].values) for name in ("ref_date", "sec_date")
    }
    for name, var in out.data_vars.items():
        if "y" in var.dims and "x" in var.dims:
            encoding[str(name)] = {"grid_mapping": "spatial_ref"}
    return out, encoding


def _date_encoding(values: np.ndarray) -> dict[str, Any]:
    """Integer days since the epoch when exact (LiCSAR dates are whole days), else ns."""
    ns = values.astype("datetime64[ns]")
    whole_days = np.array_equal(ns, ns.astype("datetime64[D]").astype("datetime64[ns]"))
    unit = "days" if whole_days else "nanoseconds"
    return {
        "units": f"{unit} since 1970-01-01",
        "calendar": "proleptic_gregorian",
        "dtype": "int64",
    }


def _replace(tmp: Path, path: Path) -> None:
    """Move the finished store `tmp` to `path`, replacing an existing store last."""
    if not path.exists():
        os.rename(tmp, path)
        return
    old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:12]}"
    os.rename(path, old)
    try:
        os.rename(tmp, path)
    except BaseException:
        os.rename(old, path)  # put the previous store back
        raise
    shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- object storage


def _save_remote(ds: xr.Dataset, url: str, chunk_size: int, progress: bool) -> None:
    """Write a stack store to object storage, never leaving a partial store `open` accepts.

    Object stores have no atomic rename, so: (1) the whole store is written under a hidden
    temporary prefix beside `url`; (2) an existing store at `url` is deleted (object storage
    cannot swap it atomically: a failure after this point loses the old store, never leaves
    a half one); (3) every object is copied server-side (no download) to `url`, the root
    ``zarr.json`` LAST; (4) the temporary prefix is deleted. `open` requires the root
    ``zarr.json``, so a store interrupted at any step (even by SIGKILL) is refused; on an
    exception both prefixes are cleaned up, so nothing partial is left behind.
    """
    fs = remote.filesystem(url)
    key = remote.strip_scheme(url)
    parent, _, name = key.rpartition("/")
    if not parent or not name:
        raise InputError(f"{url}: give a store path inside a bucket, e.g. s3://bucket/stack.zarr")
    state = _remote_state(fs, url, key)
    if state == "other":
        raise InputError(
            f"{url}: exists and is not a stack store; choose another output path or remove it"
        )
    tmp_key = f"{parent}/.{name}.tmp-{uuid.uuid4().hex[:12]}"
    tmp_url = url[: len(url) - len(key)] + tmp_key
    published = False
    try:
        _write(ds, tmp_url, chunk_size, progress, name, remote.storage_options(url))
        if state == "store":
            remote.call_with_retries(
                lambda: fs.rm(key, recursive=True), url, "removing the old store"
            )
        published = True
        _publish(fs, tmp_key, key, url)
    except BaseException:
        if published:
            _remove_quietly(fs, key)
        raise
    finally:
        _remove_quietly(fs, tmp_key)


def _remote_state(fs: Any, url: str, key: str) -> str:
    """'none' (nothing at `key`), 'store' (a Zarr store) or 'other'."""

    def look() -> str:
        if fs.exists(f"{key}/zarr.json"):
            return "store"
        return "other" if fs.exists(key) else "none"

    return remote.call_with_retries(look, url, "checking the store path")


def _publish(fs: Any, tmp_key: str, key: str, url: str) -> None:
    """Server-side copy of the store at `tmp_key` to `key`, root metadata last."""
    root_meta = f"{tmp_key}/zarr.json"
    objects = remote.call_with_retries(lambda: fs.find(tmp_key), url, "listing the new store")
    body = [o for o in objects if o != root_meta]
    if body:
        targets = [key + o[len(tmp_key) :] for o in body]
        remote.call_with_retries(lambda: fs.copy(body, targets), url, "copying the store")
    remote.call_with_retries(
        lambda: fs.copy(root_meta, f"{key}/zarr.json"), url, "publishing the store"
    )


def _remove_quietly(fs: Any, key: str, rounds: int = 3) -> None:
    """Delete everything under `key`; never raises (cleanup must not hide the first error).

    When a Dask write fails, blocks already running in other threads still finish their
    upload after the error reaches us, so the prefix is checked again after a short wait.
    """
    for _ in range(rounds):
        try:
            if not fs.exists(key):
                return
            fs.rm(key, recursive=True)
        except Exception as exc:
            logger.warning("could not remove %s: %s", key, exc)
            return
        time.sleep(0.2)


# --------------------------------------------------------------------------- open


def open(path: str | Path) -> xr.Dataset:  # shadows the builtin on purpose: `stack.open`
    """Open a stack store lazily (dask-backed) and validate it.

    Raises InputError naming `path` if it is missing, is not a Zarr stack store, or does not
    follow the IfgStack schema. `path` may be an object-storage URL (``s3://...``).
    """
    if remote.is_remote(path):
        return _open_remote(str(path).rstrip("/"))
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such stack store; create it with `mtinsar ingest`")
    if not (path.is_dir() and (path / "zarr.json").is_file()):
        raise InputError(
            f"{path}: not a stack store (no Zarr v3 'zarr.json' inside); "
            "create it with `mtinsar ingest`"
        )
    return _open_store(path, str(path), None)


def _open_remote(url: str) -> xr.Dataset:
    fs = remote.filesystem(url)
    state = _remote_state(fs, url, remote.strip_scheme(url))
    if state == "none":
        raise InputError(f"{url}: no such stack store; create it with `mtinsar ingest`")
    if state == "other":
        raise InputError(
            f"{url}: not a stack store (no Zarr v3 'zarr.json' inside; an interrupted write "
            "leaves none); create it with `mtinsar ingest`"
        )
    return _open_store(url, url, remote.storage_options(url))


def _open_store(
    store: Path | str, source: str, storage_options: dict[str, Any] | None
) -> xr.Dataset:
    path = source
    try:
        ds = xr.open_zarr(
            store,
            consolidated=False,
            zarr_format=3,
            decode_coords="all",
            storage_options=storage_options,
        )
    except Exception as exc:  # zarr/xarray raise many types for a damaged or foreign store
        raise InputError(
            f"{path}: cannot be opened as a stack store ({exc}); create it with `mtinsar ingest`"
        ) from exc
    if "pair" in ds.coords and ds["pair"].dtype.kind != "U":
        # Zarr returns variable-length strings (object/StringDType): restore numpy unicode.
        ds = ds.assign_coords(pair=np.asarray([str(v) for v in ds["pair"].values], dtype=str))
    return validate(ds, source=source)
