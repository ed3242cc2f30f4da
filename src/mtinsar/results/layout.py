"""The result folder's names: the one place that says what lies where in `OUT/`.

    OUT/
      timeseries.zarr         the full result (DESIGN §3), Zarr v3 chunked in space only
      velocity.tif ...        Cloud-Optimized GeoTIFFs of `COG_LAYERS` (`cog`)
      figures/*.png           velocity map, quality maps, network, coherence matrix, series
      report.html             the run report, self-contained (figures embedded)
      pairs.csv               per-pair QC: coherence, valid fraction, closure, kept or why not
      summary.json            counts, reference, timings, version
      CURRENT                 the current version's name (``v3``); absent: version 0
      versions/vN/            an update or full re-run (`version_folder`):
        timeseries.zarr         its store (a layer on the one below, or whole)
        compact.zarr            a deep layer's chain written whole beside it
        alerts.geojson          an update's alert areas (RFC 7946)
        update.json             an update's per-date summaries
        summary.json, pairs.csv a full re-run's

Names only (no I/O): the writers (`results.writer`, `results.versions`), the jobs and the
service all take them from here.
"""

from __future__ import annotations

import re
from pathlib import Path

STORE = "timeseries.zarr"
SUMMARY = "summary.json"
REPORT = "report.html"
PAIRS = "pairs.csv"
FIGURES = "figures"
#: The layers also written as Cloud-Optimized GeoTIFFs.
COG_LAYERS = ("velocity", "velocity_std", "temporal_coherence", "mask")
CURRENT = "CURRENT"
VERSIONS = "versions"
#: A layered version's chain written whole, beside its layer.
COMPACT = "compact.zarr"
ALERTS = "alerts.geojson"
UPDATE = "update.json"
VERSION_NAME = re.compile(r"^v(\d+)$")


def cog(layer: str) -> str:
    """File name of `layer`'s Cloud-Optimized GeoTIFF."""
    return f"{layer}.tif"


def version_name(number: int) -> str:
    return f"v{number}"


def version_folder(folder: str | Path, number: int) -> Path:
    """Folder of version `number` (> 0) of the result folder `folder`."""
    return Path(folder) / VERSIONS / version_name(number)


def version_store(folder: str | Path, number: int) -> Path:
    """The Zarr store of version `number` (0: the run's own) of `folder`."""
    return Path(folder) / STORE if number == 0 else version_folder(folder, number) / STORE
