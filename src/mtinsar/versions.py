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
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import xarray as xr

from mtinsar.errors import InputError

STORE = "timeseries.zarr"
_VERSION_RE = re.compile(r"^v(\d+)$")


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


def open_version(folder: str | Path, version: int | None = None) -> xr.Dataset:
    """The result of `version` (default: current), lazily."""
    return xr.open_zarr(store_path(folder, version), decode_coords="all")


def open_result(path: str | Path) -> xr.Dataset:
    """The current version of a result folder, or a result store given directly (lazy)."""
    path = Path(path)
    if (path / "zarr.json").is_file():
        return xr.open_zarr(path, decode_coords="all")
    return open_version(path)


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
