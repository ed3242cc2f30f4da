"""Versions of a result folder: every `mtinsar update` (and every full re-run of the whole
history, `workflow.rerun_as_version`) adds one; earlier ones stay readable.

Layout of a result folder `OUT/` (from `mtinsar run`) after updates:

    OUT/timeseries.zarr            version 0, as `mtinsar run` wrote it
    OUT/versions/v1/timeseries.zarr, alerts.geojson, update.json
    OUT/versions/v2/...
    OUT/versions/v3/timeseries.zarr, summary.json, pairs.csv   a full re-run (when due)
    OUT/CURRENT                    "v3": the version readers open by default

A new version is written under a temporary name, renamed into `versions/` when complete,
and only then made current by atomically replacing `CURRENT` (write-new-then-switch). A crash
at any point leaves the previous version current and intact; leftovers of an interrupted
update are removed by the next one.

Layered versions. An update changes little of a result: the new date's displacement, a
rank-m correction of the history (the exact sequential step moves every date by
gain @ δx_W, `mtinsar.nrt.sequential`), and a few 2-D layers (velocity, its std, the
residual). Rewriting the whole cube for that cost most of an update, so an update's store
is a layer on the store it updates (`layer_dataset`): it holds the new dates
(`displacement_added`), the correction's factors (`history_gain` (time, rank) and
`history_delta` (rank, y, x) [m]) and the variables that changed; its attrs name the base
store (relative path) and the variables inherited unchanged from it. `open_store` composes
a chain of layers, displacement = concat(base, added...) + Σ history_gain @ history_delta,
so every reader sees a plain result. A layer is never changed once written and its base never
moves, so earlier versions stay readable.

Compaction bounds the chains: once a version's chain is `MAX_LAYERS` - 1 layers deep, the
update that wrote it (after the version is current and its alerts are sent) also writes
the composed version whole beside its layer (`COMPACT`, `write_compact`), and reads of that
version and the layers on it stop there. Should that not have happened (the process was
killed), the update whose layer would make the chain `MAX_LAYERS` deep writes its version
whole instead.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
import zarr

from mtinsar.errors import InputError

STORE = "timeseries.zarr"
#: A layered version's chain written whole, beside its layer (`write_compact`).
COMPACT = "compact.zarr"
_VERSION_RE = re.compile(r"^v(\d+)$")
#: Attrs of a layered store: its base (path relative to the store) and what it inherits.
BASE_ATTR, INHERITED_ATTR = "version_base", "version_inherited"
#: Longest chain of layers read before a version is written whole again.
MAX_LAYERS = 16
#: A layer's added dates or correction up to this size [bytes] are read whole by
#: `open_store(cached=True)` (and kept with the layer); larger ones block by block, so
#: that an update's memory stays bounded by the chunks on large frames.
_WHOLE_BYTES = 32 * 2**20


def versions(folder: str | Path) -> list[int]:
    """Version numbers present in the result folder (0 = the `mtinsar run` result)."""
    folder = Path(folder)
    found = [0] if (folder / STORE).is_dir() else []
    vdir = folder / "versions"
    if vdir.is_dir():
        found += sorted(int(m.group(1)) for p in vdir.iterdir() if (m := _VERSION_RE.match(p.name)))
    return found


def current(folder: str | Path) -> int:
    """The current version number of a result folder."""
    folder = Path(folder)
    marker = folder / "CURRENT"
    if marker.is_file():
        m = _VERSION_RE.match(marker.read_text().strip())
        if m is None:
            raise InputError(f"{marker}: not a version name like 'v3'; fix or remove the file")
        return int(m.group(1))
    if not (folder / STORE).is_dir():
        raise InputError(f"{folder}: not a result folder of `mtinsar run` (no {STORE})")
    return 0


def store_path(folder: str | Path, version: int | None = None) -> Path:
    """The Zarr store of `version` (default: the current one) of a result folder."""
    folder = Path(folder)
    number = current(folder) if version is None else version
    path = folder / STORE if number == 0 else folder / "versions" / f"v{number}" / STORE
    if not path.is_dir():
        have = ", ".join(str(v) for v in versions(folder)) or "none"
        raise InputError(f"{folder}: no version {number} (versions: {have})")
    return path


def open_version(
    folder: str | Path, version: int | None = None, cached: bool = False
) -> xr.Dataset:
    """The result of `version` (default: current), lazily (dask); `open_store` for
    `cached`."""
    return open_store(store_path(folder, version), cached)


def open_result(path: str | Path) -> xr.Dataset:
    """The current version of a result folder, or a result store given directly (lazy)."""
    path = Path(path)
    if (path / "zarr.json").is_file():
        return open_store(path)
    return open_version(path)


def open_store(path: str | Path, cached: bool = False) -> xr.Dataset:
    """A result store, its layers composed onto their bases (lazy; `open_version`).

    A chain of layers is composed in one step: the whole store's cube and every layer's
    added dates joined block by block, plus the sum of the layers' corrections as one
    product. With `cached` every variable but the cube is read whole when first used and
    then kept in memory (what an update wants: it reads a few of them several times and
    most never), and so are the layers' added dates and corrections up to `_WHOLE_BYTES`
    each; the cube stays lazy, a dask array over the whole store's chunks. The stores
    below the top are then also kept between calls (`_open_below`): the next update of a
    standing process reads only the store it wrote last.
    """
    paths = _chain(path)
    if not cached:
        chain = [xr.open_zarr(p, decode_coords="all", chunks={}) for p in paths]
    else:
        chain = [_open_cached(paths[0]), *(_open_below(str(p), _identity(p)) for p in paths[1:])]
    return _composed(path, chain, paths if cached else None) if len(chain) > 1 else chain[0]


def _open_cached(path: Path) -> xr.Dataset:
    """One store of a chain for `open_store(cached=True)`; a whole store's cube lazy over
    its own chunks."""
    ds = xr.open_zarr(path, decode_coords="all", chunks=None)
    if "displacement" in ds.data_vars:
        cube = ds["displacement"]
        ds["displacement"] = cube.chunk(dict(zip(cube.dims, cube.encoding["chunks"], strict=True)))
    return ds


@functools.lru_cache(maxsize=MAX_LAYERS + 1)
def _open_below(path: str, identity: tuple[int, int, int]) -> xr.Dataset:
    """`_open_cached` for a store below the top of a chain, kept for later calls.

    A store is never changed once written, so what was read of it stays true; `identity`
    (of its metadata file, `_identity`) tells a store written anew at the same path. Only
    stores below the top are kept: what is read of them (the inherited variables) every
    update reads again, while the top's own 2-D layers are shadowed by the next update's.
    """
    return _open_cached(Path(path))


@functools.lru_cache(maxsize=2 * (MAX_LAYERS + 1))
def _whole(store: str, identity: tuple[int, int, int], name: str) -> np.ndarray:
    """The array `name` of a layer's store (a new date's or a correction's piece), read
    whole and kept for later calls like `_open_below` (also the top's: it is a layer below
    the next update's)."""
    values = zarr.open_array(Path(store) / name, mode="r")[...]
    values.flags.writeable = False  # shared by every later read
    return values


def _identity(store: Path) -> tuple[int, int, int]:
    """Inode, modification time [ns] and size of a store's metadata file."""
    st = (store / "zarr.json").stat()
    return st.st_ino, st.st_mtime_ns, st.st_size


def _composed(path: str | Path, chain: list[xr.Dataset], stores: list[Path] | None) -> xr.Dataset:
    """The top of `chain` (top first, down to a whole store) with the chain composed; given
    the chain's `stores` (an update's open), the layers' pieces are read whole (`_whole`)."""
    top, root = chain[0], chain[-1]["displacement"]
    spatial = root.data.chunks[1:]

    def blocks(layer: xr.Dataset, store: Path | None, name: str, dims: tuple[str, ...]) -> Any:
        piece = layer[name]
        if store is not None and piece.nbytes <= _WHOLE_BYTES and piece.dims == dims:
            values = _whole(str(store), _identity(store), name)  # read once
            return da.from_array(values, chunks=(-1, *spatial), name=False)  # not hashed
        return piece.transpose(*dims).chunk(dict(zip(dims, (-1, *spatial), strict=True))).data

    pieces, gains, deltas = [root.data.rechunk({0: -1})], [], []
    n_dates = top.sizes["time"]
    layer_stores = stores[-2::-1] if stores else [None] * (len(chain) - 1)  # bottom-up
    for base, layer, store in zip(chain[:0:-1], chain[-2::-1], layer_stores, strict=True):
        n_old = base.sizes["time"]
        if not np.array_equal(base["time"].values, layer["time"].values[:n_old]):
            raise InputError(f"{path}: a layer's dates do not continue those below; re-run")
        pieces.append(blocks(layer, store, "displacement_added", ("added_time", "y", "x")))
        gain = layer["history_gain"].values
        gains.append(np.pad(gain, ((0, n_dates - gain.shape[0]), (0, 0))))
        deltas.append(blocks(layer, store, "history_delta", ("history_rank", "y", "x")))
    # float32 as the cube: half the memory traffic of float64
    gain = np.concatenate(gains, axis=1).astype(np.float32)
    args = [da.concatenate(deltas).rechunk({0: -1}), "ryx"]
    letters = "abcdefghijklmnopqstuvw"[: len(pieces)]  # a block index per piece's dates
    for piece, letter in zip(pieces, letters, strict=True):
        args += [piece, f"{letter}yx"]
    # one task a block: the block's correction, with the stored dates added into it
    composed = da.blockwise(
        _compose, "Tyx", *args, gain=gain, concatenate=True, dtype=np.float32,
        new_axes={"T": n_dates}, adjust_chunks=None,
    )  # fmt: skip
    new: dict[str, Any] = {"displacement": (("time", "y", "x"), composed, root.attrs)}
    for name in json.loads(top.attrs[INHERITED_ATTR]):  # from the nearest layer holding it
        new[name] = next(ds[name].variable for ds in chain[1:] if name in ds.data_vars)
    out = top.drop_vars(["displacement_added", "history_gain", "history_delta"])
    out = out.assign(new)  # at once: each xarray assignment aligns the whole dataset
    out.attrs = {k: v for k, v in top.attrs.items() if k not in (BASE_ATTR, INHERITED_ATTR)}
    return out


def _compose(delta: np.ndarray, *stored: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """A block (time, by, bx) of the composed cube: the stored dates + gain @ delta (the
    stored pieces added into the product: no joined copy of them)."""
    out = (gain @ delta.reshape(delta.shape[0], -1)).reshape(gain.shape[0], *delta.shape[1:])
    start = 0
    for piece in stored:
        out[start : start + piece.shape[0]] += piece
        start += piece.shape[0]
    return out


def _chain(path: str | Path) -> list[Path]:
    """The store at `path` and the stores below it, down to one written whole (a version's
    `COMPACT` store, when it has one, stands for its layer and all below)."""
    chain = [Path(path)]
    while True:
        if (chain[-1].parent / COMPACT).is_dir() and chain[-1].name == STORE:
            chain[-1] = chain[-1].parent / COMPACT
            return chain
        attrs = json.loads((chain[-1] / "zarr.json").read_text()).get("attributes", {})
        if BASE_ATTR not in attrs:
            return chain
        base = Path(os.path.normpath(chain[-1] / attrs[BASE_ATTR]))
        if not (base / "zarr.json").is_file():
            raise InputError(
                f"{chain[-1]}: its base store {base} is missing; restore it (a version is a "
                "layer on the one before) or re-run the whole history with `mtinsar run`"
            )
        chain.append(base)


def layers_below(path: str | Path) -> int:
    """How many layered stores the store at `path` is (0: written whole)."""
    return len(_chain(path)) - 1


def layer_dataset(
    result: xr.Dataset,
    base: xr.Dataset,
    base_store: Path,
    store: Path,
    gain: np.ndarray,
    delta: np.ndarray,
    changed: Collection[str] | None = None,
) -> xr.Dataset:
    """The layer that turns `base` (as stored at `base_store`) into `result`, for `store`.

    result's displacement must equal concat(base's, added dates) + gain @ delta with gain
    (time, rank) over result's dates and delta (rank, y, x) [m]. Variables without a time
    dimension equal to base's (NaN = NaN) are inherited, the others stored. With `changed`
    (the names the caller may have changed) only those are compared: the others are
    inherited without being read.
    """
    n_old = base.sizes["time"]

    def unchanged(name: str, var: xr.Variable) -> bool:
        if changed is not None and name not in changed:
            return True
        return np.array_equal(np.asarray(base[name].values), np.asarray(var.values), equal_nan=True)

    inherited = [
        name
        for name, var in result.data_vars.items()
        if name != "displacement"
        and "time" not in var.dims
        and name in base.data_vars
        and base[name].dims == var.dims
        and base[name].shape == var.shape
        and unchanged(name, var)
    ]
    if gain.shape[1] == 0:  # no correction (frozen history): one zero term keeps shapes simple
        gain, delta = np.zeros((gain.shape[0], 1)), np.zeros((1, *delta.shape[1:]))
    new = result["displacement"][n_old:].values.astype(np.float64)  # only the added dates
    added = new - np.tensordot(gain[n_old:], delta, axes=1)
    layer = result.drop_vars(["displacement", *inherited])
    layer["displacement_added"] = (("added_time", "y", "x"), added.astype(np.float32))
    layer["history_gain"] = (("time", "history_rank"), gain.astype(np.float64))
    layer["history_delta"] = (("history_rank", "y", "x"), delta.astype(np.float32))
    # the cube's pieces in the whole store's spatial chunks, so composing them stays one
    # task a block
    blocks = base["displacement"].chunks  # an opened version's: the whole store's blocks
    if blocks:
        root = tuple(c[0] for c in blocks)
    else:
        root = xr.open_zarr(_chain(base_store)[-1])["displacement"].encoding["chunks"]
    for var in layer.variables.values():
        var.encoding = {}
        if var.ndim and var.dims[-2:] == ("y", "x"):
            rows = root[-2]
            if var.ndim == 2:  # a map: read whole, so in as few chunks as _WHOLE_BYTES allows
                whole = _WHOLE_BYTES // (var.dtype.itemsize * root[-1]) // rows * rows
                rows = min(max(rows, whole), var.shape[0])
            var.encoding["chunks"] = (*var.shape[:-2], rows, root[-1])
    base_rel = os.path.relpath(base_store, store)
    layer.attrs.update({BASE_ATTR: base_rel, INHERITED_ATTR: json.dumps(inherited)})
    return layer


def write_compact(layer: Path, fill: Callable[[Path], None]) -> Path:
    """Give the version whose layered store is `layer` its `COMPACT` store: `fill(tmp)`
    writes the composed version as a whole store at `tmp`, renamed into place when done.

    The version reads the same either way (`_chain` prefers the compact store), so this
    may run after the version is current; an interrupted one leaves only a temporary
    store, removed by the next.
    """
    for stale in layer.parent.glob(f".{COMPACT}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = layer.parent / f".{COMPACT}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        fill(tmp)
        os.replace(tmp, layer.parent / COMPACT)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return layer.parent / COMPACT


def write_version(folder: str | Path, fill: Callable[[Path], None]) -> int:
    """Add a version: `fill(tmp)` writes its files into a temporary folder; returns its number.

    The version becomes current only once completely written.
    """
    folder = Path(folder)
    vdir = folder / "versions"
    vdir.mkdir(exist_ok=True)
    for stale in vdir.glob(".tmp-*"):  # an interrupted update's leftovers
        shutil.rmtree(stale, ignore_errors=True)
    number = max(versions(folder), default=0) + 1
    tmp = vdir / f".tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        fill(tmp)
        os.replace(tmp, vdir / f"v{number}")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    marker = folder / f".CURRENT.tmp-{uuid.uuid4().hex[:8]}"
    marker.write_text(f"v{number}\n")
    os.replace(marker, folder / "CURRENT")
    return number
