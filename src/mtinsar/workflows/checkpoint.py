"""Checkpoints of a run, so that a run killed mid-way resumes where it stopped.

A run keeps its checkpoints in a work folder beside its result folder, `.{OUT}.work/`:

    checkpoint.json     the run's fingerprint and the stages done (with their small values)
    {stage}.npz         arrays a stage produced (pixel statistics, reference phases)
    {stage}.{key}.nc    tables a stage produced (the per-pair QC table)
    *.zarr              the time-series store, written region by region
    {store}.regions/    one empty marker per region of that store whose data are written

Each stage's files are written before checkpoint.json names the stage (atomic renames), and
a region's marker after the region's data, so whatever a kill interrupts is redone and
nothing half-written is trusted. A checkpoint belongs to one input and one configuration
(the fingerprint): any other run finds it stale and starts afresh.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import dask
import numpy as np
import xarray as xr

from mtinsar import __version__
from mtinsar.config import RunConfig
from mtinsar.errors import InputError
from mtinsar.results.encoding import with_float_codecs

log = logging.getLogger(__name__)

STATE = "checkpoint.json"

#: Config sections that change how a run executes or what it exports, never its numbers.
_NOT_FINGERPRINTED = {"execution", "output"}


def work_folder(out: Path) -> Path:
    """The work folder of the result folder `out`: a hidden sibling with a fixed name."""
    return out.parent / f".{out.name}.work"


def fingerprint(source: str | Path, stack: xr.Dataset, config: RunConfig) -> str:
    """What makes checkpoints reusable: the input (its location, pairs, shape), the
    configuration that affects the numbers, and the software version (sha256 hex)."""
    doc = {
        "software": __version__,
        "source": str(source),
        "pairs": [str(p) for p in stack["pair"].values],
        "shape": {str(dim): int(size) for dim, size in stack.sizes.items()},
        "config": config.model_dump(mode="json", exclude=_NOT_FINGERPRINTED),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


class Checkpoint:
    """The checkpoints of one run in `folder` (see the module docstring for the layout)."""

    def __init__(self, folder: Path, state: dict[str, Any]) -> None:
        self.folder = folder
        self._state = state

    @classmethod
    def open(cls, folder: str | Path, fingerprint: str, fresh: bool = False) -> Checkpoint:
        """The checkpoints in `folder` if they belong to `fingerprint` (and not `fresh`);
        otherwise the folder is cleared and the run starts from nothing."""
        folder = Path(folder)
        state = _read_state(folder)
        if state is not None and state.get("fingerprint") == fingerprint and not fresh:
            done = ", ".join(state["stages"]) or "none"
            log.info("resuming from the checkpoints in %s (stages done: %s)", folder, done)
            return cls(folder, state)
        if state is None and folder.is_dir() and any(folder.iterdir()):
            raise InputError(
                f"{folder} exists and is no mtinsar work folder (no {STATE}); move it away so "
                "that the run can keep its checkpoints there"
            )
        if folder.exists():
            why = "--fresh" if fresh else "another input, configuration or version"
            log.info("checkpoints in %s are not reused (%s): cleared", folder, why)
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        checkpoint = cls(folder, {"fingerprint": fingerprint, "stages": {}})
        checkpoint._write_state()
        return checkpoint

    def load(self, stage: str) -> dict[str, Any] | None:
        """The values `stage` saved, or None when it has not completed."""
        if stage not in self._state["stages"]:
            return None
        values = dict(self._state["stages"][stage])
        for key in values.pop("_tables"):
            with _local():
                values[key] = xr.load_dataset(self._table_path(stage, key), engine="h5netcdf")
        if values.pop("_arrays"):
            with np.load(self.folder / f"{_stem(stage)}.npz", allow_pickle=False) as arrays:
                values.update({key: arrays[key] for key in arrays.files})
        return values

    def save(self, stage: str, values: dict[str, Any]) -> None:
        """Record `stage` as done with `values`: arrays, Datasets, and JSON-able others."""
        arrays = {k: v for k, v in values.items() if isinstance(v, np.ndarray)}
        tables = {k: v for k, v in values.items() if isinstance(v, xr.Dataset)}
        small = {k: v for k, v in values.items() if k not in arrays and k not in tables}
        for key, table in tables.items():
            path = self._table_path(stage, key)
            with _local():
                table.to_netcdf(_partial(path), engine="h5netcdf")
            os.replace(_partial(path), path)
        if arrays:
            path = self.folder / f"{_stem(stage)}.npz"
            with _partial(path).open("wb") as f:
                np.savez(f, **arrays)
            os.replace(_partial(path), path)
        self._state["stages"][stage] = {**small, "_tables": list(tables), "_arrays": bool(arrays)}
        self._write_state()

    def regions(self, store: Path) -> Regions:
        """The region markers of the Zarr `store` (a path inside the work folder)."""
        return Regions(store.with_name(store.name + ".regions"))

    def remove(self) -> None:
        """Delete the work folder (the run is finished, or cannot succeed as configured)."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def _table_path(self, stage: str, key: str) -> Path:
        return self.folder / f"{_stem(stage)}.{key}.nc"

    def _write_state(self) -> None:
        path = self.folder / STATE
        _partial(path).write_text(json.dumps(self._state, indent=1))
        os.replace(_partial(path), path)


class Regions:
    """Markers of the written regions of a store: an empty file per region, named `iy_ix`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def done(self) -> set[tuple[int, int]]:
        """The (iy, ix) chunk indices of the regions written."""
        if not self.folder.is_dir():
            return set()
        names = (p.name.split("_") for p in self.folder.iterdir())
        return {(int(iy), int(ix)) for iy, ix in names}

    def mark(self, block: tuple[int, int]) -> None:
        """Record region `block` as written (call after its data are in the store)."""
        (self.folder / f"{block[0]}_{block[1]}").touch()

    def clear(self) -> None:
        """Forget every region (the store is new)."""
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)


def create_store(result: xr.Dataset, store: Path) -> None:
    """Create the Zarr `store` of `result`: its metadata and in-memory variables; the lazy
    (dask) variables are left for `write_regions`."""
    with warnings.catch_warnings():  # consolidated on purpose, as in `output.write_store`
        warnings.filterwarnings("ignore", "Consolidated metadata", UserWarning)
        with_float_codecs(result).to_zarr(
            store, mode="w", zarr_format=3, consolidated=True, compute=False
        )


def write_regions(result: xr.Dataset, store: Path, regions: Regions) -> int:
    """Compute the lazy variables of `result` into `store` one spatial chunk at a time.

    `store` was made by `create_store(result, ...)`; the regions with a marker in `regions`
    are skipped, each one written gets its marker. The dask variables must share their y/x
    chunks and be whole along their other axes. The regions run in parallel on the current
    scheduler (a cluster's workers must see `store`). Returns the number of regions computed.
    """
    lazy = [name for name, var in result.data_vars.items() if var.chunks is not None]
    if not lazy:
        return 0
    ychunks, xchunks = result[lazy[0]].chunks[-2:]
    ystarts, xstarts = np.cumsum((0, *ychunks)), np.cumsum((0, *xchunks))
    dims = {name: result[name].dims for name in lazy}
    done = regions.done()
    tasks = []
    for iy in range(len(ychunks)):
        for ix in range(len(xchunks)):
            if (iy, ix) in done:
                continue
            where = {
                "y": slice(int(ystarts[iy]), int(ystarts[iy + 1])),
                "x": slice(int(xstarts[ix]), int(xstarts[ix + 1])),
            }
            blocks = {name: _block(result[name].data, iy, ix) for name in lazy}
            tasks.append(dask.delayed(_write_region)(blocks, dims, store, where, regions, (iy, ix)))
    total = len(ychunks) * len(xchunks)
    if done:
        log.info("%s: %d of %d regions resumed from checkpoint", store.name, len(done), total)
    log.info("%s: computing %d of %d regions", store.name, len(tasks), total)
    dask.compute(*tasks)
    return len(tasks)


def _block(data: Any, iy: int, ix: int) -> Any:
    """The single-chunk dask array of block (iy, ix) of a (..., y, x) array."""
    return data.blocks[(0,) * (data.ndim - 2) + (iy, ix)]


def _write_region(
    blocks: dict[str, np.ndarray],
    dims: dict[str, tuple[str, ...]],
    store: Path,
    where: dict[str, slice],
    regions: Regions,
    block: tuple[int, int],
) -> None:
    """Write one region's values into `store` (xarray encodes them as the store says), then
    its marker: a region is trusted only once all its variables are on disk."""
    part = xr.Dataset({name: (dims[name], values) for name, values in blocks.items()})
    part.to_zarr(store, region=where, mode="r+", zarr_format=3, consolidated=False)
    regions.mark(block)


def _read_state(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / STATE).read_text())
    except (OSError, ValueError):
        return None


def _local() -> Any:
    """The small in-memory tables are read and written here, whatever the run's scheduler
    (xarray would take a cluster-wide file lock under a dask.distributed scheduler)."""
    return dask.config.set(scheduler="synchronous")


def _stem(stage: str) -> str:
    return stage.replace(" ", "_")


def _partial(path: Path) -> Path:
    return path.with_name(path.name + ".partial")
