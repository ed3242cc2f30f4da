"""Whole jobs, from products to a result folder: what `mtinsar run`/`update` and the service do.

Each function takes a validated `RunConfig`, reads where the products lie, and writes its
result folder atomically (an earlier result stays intact when it fails).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from mtinsar import nrt, output, pipeline, versions
from mtinsar.config import RunConfig
from mtinsar.execution import executor
from mtinsar.io.products import read_products
from mtinsar.sources import remote

log = logging.getLogger(__name__)


def run_to_folder(source: str | Path, out: Path, cfg: RunConfig, progress: bool = False) -> dict:
    """Ingest `source` (stack store or products), run SBAS, write the result folder `out`.

    Returns the run's summary (as in summary.json).
    """
    remote.configure(cfg.storage)
    output.check_writable(out)  # fail before hours of work, not after
    stack = pipeline.load_input(source, cfg, progress=progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    # The time series streams to a work store beside `out` (bounded memory), which the
    # result folder then adopts; a failed run leaves no temporary folder behind.
    with (
        executor(cfg.execution),
        tempfile.TemporaryDirectory(prefix=f".{out.name}.work-", dir=out.parent) as work,
    ):
        store = Path(work) / "timeseries.zarr"
        sbas = pipeline.run_sbas(stack, cfg, progress=progress, store=store)
        output.write_results(sbas, out, cfg.output, chunk_size=cfg.ingest.chunk_size)
    return sbas.summary


def update_folder(
    results: Path, products: str, cfg: RunConfig, progress: bool = False
) -> list[str]:
    """Append the acquisitions of `products` newer than the result as a new version.

    Returns human-readable lines of what was done (one per date, then a closing line);
    empty pairs are ignored, so calling it twice with the same products adds nothing.
    """
    remote.configure(cfg.storage)
    before = versions.current(results)
    result = versions.open_version(results).load()
    stack = read_products(products, cfg.ingest, progress=progress)
    sec = stack["sec_date"].values
    new_dates = np.unique(sec[sec > result["time"].values[-1]])
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    if new_dates.size == 0:
        last = str(result["time"].values[-1])[:10]
        return [f"{stamp} no pair ends after {last}: nothing to add"]

    lines, reports = [], []
    for date in new_dates:
        known = np.isin(stack["ref_date"].values, result["time"].values)
        pairs = stack.isel(pair=(sec == date) & known).load()
        result, report = nrt.update(result, pairs, cfg, cfg.nrt)
        reports.append(report)
        lines.append(
            f"{report.date}: {len(report.pairs_used)} pairs, "
            f"{report.n_pixels_estimated} pixels, {report.alert_pixels} alert pixels"
        )

    def fill(folder: Path) -> None:
        output.write_store(result, folder, versions.STORE)
        nrt.write_alerts(reports[-1].alerts, folder / "alerts.geojson")
        summaries = [r.summary() for r in reports]
        (folder / "update.json").write_text(json.dumps(summaries, indent=2, default=str))

    number = versions.write_version(results, fill)
    for report in reports:  # after the version is safe: a dead webhook never costs a result
        nrt.post_alerts(report.alerts, cfg.nrt)
    due = [r.full_rerun_reason for r in reports if r.full_rerun_due]
    lines.append(
        f"{stamp} {len(new_dates)} date(s) added: version {before} -> {number} in "
        f"{results}/versions/" + (f"; a full re-run is due ({due[-1]}): mtinsar run" if due else "")
    )
    return lines
