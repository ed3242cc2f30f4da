"""Whole jobs, from products to a result folder: what `mtinsar run`/`update` and the service do.

Each function takes a validated `RunConfig`, reads where the products lie, and writes its
result folder atomically (an earlier result stays intact when it fails). A job runs with
its storage settings and on its scheduler (`_job`) and leaves the process's as they were.
An update's alerts are posted to the webhooks here, once per update and after its version
is written (`mtinsar.nrt.update` itself does no I/O).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from mtinsar import atomic, nrt
from mtinsar.config import NrtConfig, RunConfig
from mtinsar.conventions import as_day
from mtinsar.errors import InputError, MtinsarError, NothingSelected
from mtinsar.io.products import FORMATS, read_listed, read_products
from mtinsar.nrt import alerts, rerun, sequential, webhooks
from mtinsar.nrt import state as nrt_state
from mtinsar.nrt.append import CHANGED_VARIABLES
from mtinsar.results import layout, versions
from mtinsar.results import writer as output
from mtinsar.sources import remote, stac
from mtinsar.workflows import pipeline
from mtinsar.workflows.checkpoint import Checkpoint, fingerprint, work_folder
from mtinsar.workflows.execution import executor

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _job(cfg: RunConfig) -> Iterator[None]:
    """The job's storage settings (`cfg.storage`) and scheduler (`cfg.execution`) for the
    enclosed block; the process's own are back after it."""
    with remote.using(cfg.storage), executor(cfg.execution):
        yield


def run_to_folder(
    source: str | Path, out: Path, cfg: RunConfig, progress: bool = False, fresh: bool = False
) -> dict:
    """Ingest `source` (stack store or products), run SBAS, write the result folder `out`.

    Each stage checkpoints to a work folder beside `out` (`checkpoint.work_folder`): a run
    that was killed or crashed, started again with the same source and configuration,
    resumes where it stopped; with `fresh` it starts over. The work folder goes when the
    result is written, or when the run fails on its input or configuration (an
    `MtinsarError`: running again cannot help until they change). Returns the run's
    summary (as in summary.json).
    """
    with _job(cfg):
        pipeline.check_runnable(cfg)
        output.check_writable(out)  # fail before hours of work, not after
        stack = pipeline.load_input(source, cfg, progress=progress)
        out.parent.mkdir(parents=True, exist_ok=True)
        work = Checkpoint.open(work_folder(out), fingerprint(source, stack, cfg), fresh=fresh)
        try:
            # the time series streams to a store in the work folder (bounded memory), which
            # the result folder then adopts
            store = work.folder / layout.STORE
            sbas = pipeline.run_sbas(stack, cfg, progress, store=store, checkpoint=work)
            output.write_results(sbas, out, cfg.output, chunk_size=cfg.ingest.chunk_size)
        except MtinsarError:
            work.remove()
            raise
    work.remove()
    return sbas.summary


#: Where products are read from: a folder or stack store (local or URL), or a STAC search.
Source = str | Path | stac.Query


def read_source(
    source: Source, cfg: RunConfig, after: np.datetime64 | None = None, progress: bool = False
) -> xr.Dataset | None:
    """The stack of `source`, lazily: all its pairs, or with `after` only the pairs ending
    after that date (a STAC search asks only for those items, a folder opens only their files).

    None when no such pair is found; a folder without products raises InputError.
    """
    if isinstance(source, stac.Query):
        start = stac.EPOCH if after is None else (as_day(after) + 1).astype(object)
        found = source.items(start=start)
        if not found:
            return None
        listed = {}
        for item in found:
            if item.pair in listed:
                log.warning("%s: items for pair %s twice; using %s", source, item.pair, item.href)
            listed[item.pair] = item.href
        return read_listed(listed, cfg.ingest, progress=progress)
    if after is None:
        return pipeline.load_input(source, cfg, progress=progress)
    newer = cfg.ingest.model_copy(update={"ending_after": as_day(after).astype(object)})
    try:  # only the new pairs' files are opened
        return read_products(source, newer, progress=progress)
    except NothingSelected:
        return None


def warm_up() -> None:
    """Pay the one-off costs of a process's first update now (~0.5 s), as a standing
    `mtinsar watch` does when it starts: the compiled kernels (numba and its disk cache)
    and the product readers (format detection imports them on first use)."""
    import importlib

    sequential.warm_up()
    nrt_state.warm_up()
    for module, _, _ in FORMATS.values():
        importlib.import_module(module)


def update_folder(
    results: Path,
    products: Source,
    cfg: RunConfig,
    progress: bool = False,
    full_when_due: bool = False,
) -> list[str]:
    """Append the acquisitions of `products` newer than the result as a new version.

    Returns human-readable lines of what was done (one per date, then a closing line);
    empty pairs are ignored, so calling it twice with the same products adds nothing.
    The version holds the alerts of all the dates added (alerts.geojson, each feature with
    its date) and their reports (update.json); once it is written, that collection is
    POSTed to each of `cfg.nrt.webhooks` once (`_post_alerts`). With `full_when_due`, when
    the re-run policy (`cfg.nrt`, `rerun.rerun_due`) says so after the update (or already
    before, e.g. when an earlier re-run was killed), the whole history is then re-inverted
    as one more version (`rerun_as_version`). Runs on the configured scheduler
    (`cfg.execution`).
    """
    with _job(cfg):
        return _update_folder(results, products, cfg, progress, full_when_due)


def _update_folder(
    results: Path, products: Source, cfg: RunConfig, progress: bool, full_when_due: bool
) -> list[str]:
    start = time.perf_counter()
    before = versions.current(results)
    result = versions.open_version(results, cached=True)
    last = result["time"].values[-1]
    stack = read_source(products, cfg, after=last, progress=progress)
    sec = stack["sec_date"].values if stack is not None else last[None]
    new_dates = np.unique(sec[sec > last])
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    if stack is None or new_dates.size == 0:
        lines = [f"{stamp} no pair ends after {str(last)[:10]}: nothing to add"]
        due, reason = rerun.rerun_due(result, cfg.nrt)
        if due and full_when_due:
            lines.append(_rerun_line(results, products, cfg, progress, reason))
        return lines

    base, base_store = result, versions.store_path(results)
    lines, reports = [], []
    for date in new_dates:
        known = np.isin(stack["ref_date"].values, result["time"].values)
        pairs = stack.isel(pair=(sec == date) & known).load()
        result, report = nrt.update(result, pairs, cfg)
        reports.append(report)
        lines.append(
            f"{report.date}: {len(report.pairs_used)} pairs, "
            f"{report.n_pixels_estimated} pixels, {report.alert_pixels} alert pixels"
        )
    collection = alerts.merged([r.alerts for r in reports])

    def fill(folder: Path) -> None:
        if versions.layers_below(base_store) + 1 < versions.MAX_LAYERS:
            gain, delta = _history_correction(reports, result.sizes["time"])
            store = folder / layout.STORE
            layer = versions.layer_dataset(
                result, base, base_store, store, gain, delta, CHANGED_VARIABLES
            )
            output.write_store(layer, folder, layout.STORE)
        else:  # whole: the composed cube in blocks of every date (Zarr wants even chunks)
            whole = result.assign(displacement=result["displacement"].chunk({"time": -1}))
            output.write_store(whole, folder, layout.STORE)
        atomic.write_text(folder / layout.ALERTS, json.dumps(collection, indent=1))
        summaries = [r.summary() for r in reports]
        atomic.write_text(folder / layout.UPDATE, json.dumps(summaries, indent=2, default=str))

    number = versions.write_version(results, fill)
    posted = _post_alerts(collection, cfg.nrt)  # after the version: a dead webhook costs none
    due, reason = rerun.rerun_due(result, cfg.nrt)
    hint = "" if full_when_due else ": mtinsar update --full-when-due"
    lines.append(
        f"{stamp} {len(new_dates)} date(s) added in {time.perf_counter() - start:.1f} s: "
        f"version {before} -> {number} in {results}/versions/"
        + (f"; a full re-run is due ({reason}){hint}" if due else "")
    )
    lines += posted
    store = versions.store_path(results, number)
    depth = versions.layers_below(store)
    if depth and depth + 1 >= versions.MAX_LAYERS:  # off the update's path: it is done
        lines.append(_compact_line(store))
    if due and full_when_due:
        lines.append(_rerun_line(results, products, cfg, progress, reason))
    return lines


def _post_alerts(collection: dict[str, Any], nrt_cfg: NrtConfig) -> list[str]:
    """POST an update's alerts to `nrt_cfg.webhooks`, each once; when it raised none, only
    with `webhook_on_quiet` (a heartbeat). A line saying where they went (none: no POST)."""
    if not nrt_cfg.webhooks or not (collection["features"] or nrt_cfg.webhook_on_quiet):
        return []
    records = webhooks.post_alerts(collection, nrt_cfg)
    failed = [f"{r['url']} ({r['error']})" for r in records if not r["ok"]]
    return [
        f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {len(collection['features'])} alert area(s) "
        f"posted to {len(records) - len(failed)}/{len(records)} webhook(s)"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    ]


def _compact_line(layer: Path) -> str:
    """Write the version whose store is `layer` whole beside it (`versions.write_compact`);
    a line saying so."""
    start = time.perf_counter()
    composed = versions.open_store(layer)

    def fill(tmp: Path) -> None:
        output.write_store(composed, tmp.parent, tmp.name)

    versions.write_compact(layer, fill)
    return (
        f"{time.strftime('%Y-%m-%dT%H:%M:%S')} version {layer.parent.name} compacted "
        f"({versions.MAX_LAYERS - 1} layers deep) in {time.perf_counter() - start:.1f} s: "
        "the next update is a layer on it"
    )


def _history_correction(
    reports: list[nrt.UpdateReport], n_dates: int
) -> tuple[np.ndarray, np.ndarray]:
    """The updates' corrections of the history as one product gain (n_dates, m) @ delta.

    Each update corrects the dates it found (rows beyond them are zero for it), so the sum
    of their corrections is one block-padded gain times the stacked deltas.
    """
    gains = [
        np.pad(r.history_gain, ((0, n_dates - r.history_gain.shape[0]), (0, 0))) for r in reports
    ]
    return np.concatenate(gains, axis=1), np.concatenate([r.history_delta for r in reports])


def _rerun_line(results: Path, source: Source, cfg: RunConfig, progress: bool, reason: str) -> str:
    start = time.perf_counter()
    number = _rerun_version(results, source, cfg, progress, reason)
    return (
        f"{time.strftime('%Y-%m-%dT%H:%M:%S')} full re-run of the whole history "
        f"({time.perf_counter() - start:.0f} s): version {number} in {results}/versions/"
    )


def rerun_config(result: xr.Dataset, cfg: RunConfig) -> RunConfig:
    """The config of a full re-run of `result`: the run's own (``attrs["config"]``), with
    its reference point pinned to the result's (so versions stay comparable), and neither
    an end date nor a pair list that would leave out the dates added since; where and how
    to compute (`storage`, `execution`) and the update policy (`nrt`) come from `cfg`.
    """
    try:
        own = RunConfig.model_validate_json(result.attrs["config"])
    except (KeyError, ValueError) as exc:
        raise InputError(
            f"the result holds no valid run config ({exc}); run `mtinsar run` on all products"
        ) from exc
    ingest = own.ingest.model_copy(update={"end_date": None, "include_pairs": []})
    lon, lat = (float(result.attrs[f"reference_{k}"]) for k in ("lon", "lat"))
    reference = own.reference.model_copy(update={"lon": lon, "lat": lat})
    return own.model_copy(
        update={
            "ingest": ingest,
            "reference": reference,
            "storage": cfg.storage,
            "execution": cfg.execution,
            "nrt": cfg.nrt,
        }
    )


def rerun_as_version(
    results: Path, source: Source, cfg: RunConfig, progress: bool = False, reason: str = ""
) -> int:
    """Re-invert the whole history from all products of `source` as a new version of
    `results` (earlier versions stay readable); returns its number.

    Uses the run's own config (`rerun_config`). The version holds the time-series store
    (a full run's: no ``nrt_updates_since_full``, so the update count restarts), the run's
    summary.json (with a ``full_rerun`` entry: reason, source, version replaced) and
    pairs.csv.
    """
    with _job(cfg):
        return _rerun_version(results, source, cfg, progress, reason)


def _rerun_version(
    results: Path, source: Source, cfg: RunConfig, progress: bool, reason: str
) -> int:
    """`rerun_as_version` inside its job (`_job(cfg)`: the re-run's storage and scheduler
    are `cfg`'s, `rerun_config`)."""
    before = versions.current(results)
    run_cfg = rerun_config(versions.open_version(results), cfg)
    pipeline.check_runnable(run_cfg)
    stack = read_source(source, run_cfg, progress=progress)
    if stack is None:
        raise InputError(f"{source}: no products found for the full re-run of {results}")

    def fill(folder: Path) -> None:
        store = folder / layout.STORE
        sbas = pipeline.run_sbas(stack, run_cfg, progress=progress, store=store)
        summary = {
            **sbas.summary,
            "full_rerun": {"reason": reason, "source": str(source), "replaces_version": before},
        }
        (folder / layout.SUMMARY).write_text(json.dumps(summary, indent=2, default=str))
        sbas.pairs.to_dataframe().to_csv(folder / layout.PAIRS)

    number = versions.write_version(results, fill)
    log.info("full re-run of %s written as version %d", results, number)
    return number
