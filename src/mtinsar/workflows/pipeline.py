"""Wiring of the stages: stack in, time-series result out, block by block.

The pipeline is the only module that knows both the data layout (an `IfgStack`, possibly
lazy over a Zarr store) and the numerics. Memory is bounded by the block size: each block
holds every pair of a (block x block) pixel window, never the whole stack.
"""

from __future__ import annotations

import functools
import logging
import operator
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import dask
import dask.array as da
import numpy as np
import xarray as xr
from pyproj import Transformer
from scipy.sparse import csr_matrix

from mtinsar import __version__
from mtinsar import stack as stack_store
from mtinsar.analysis import jax_backend, qc
from mtinsar.analysis.inversion import coherence_weights, invert
from mtinsar.analysis.model import fit_model, reference_index, rereference
from mtinsar.analysis.network import Network
from mtinsar.config import MaskConfig, RunConfig
from mtinsar.conventions import SENTINEL1_WAVELENGTH, phase_to_displacement
from mtinsar.corrections.reference import (
    ReferencePoint,
    auto_reference,
    reference_from_lonlat,
    reference_phase,
)
from mtinsar.corrections.unwrap import correct_closure
from mtinsar.errors import NetworkError
from mtinsar.io.products import read_products
from mtinsar.nrt.network import attach_network
from mtinsar.progress import progress_bar
from mtinsar.results.writer import SbasRun
from mtinsar.sources.remote import as_path
from mtinsar.workflows import corrections as chain
from mtinsar.workflows.checkpoint import Checkpoint, create_store, write_regions
from mtinsar.workflows.execution import map_pixels

log = logging.getLogger(__name__)


@dataclass
class StackStats:
    """Per-pixel and per-pair statistics from one pass over the stack."""

    mean_coherence: np.ndarray  # (y, x) mean coherence over valid pairs
    n_valid: np.ndarray  # (y, x) number of valid pairs
    phase_rate: np.ndarray  # (y, x) rad/day, sum of phases over sum of time spans
    pair_coherence: np.ndarray  # (pair,) mean coherence of each pair over its valid pixels


_INVERSION_LAYERS = (
    "velocity",
    "velocity_std",
    "temporal_coherence",
    "closure_errors",
    "n_components",
    "model_residual",
)


#: Pixels processed together inside a chunk: bounds the working arrays of closure
#: correction and inversion (about 4 KB per pixel per 100 pairs) whatever the chunk size.
PIXEL_BATCH = 16384


def _block_inversion(
    unw: np.ndarray,
    *coh: np.ndarray,
    ref_phase: np.ndarray,
    network: Network,
    closure: csr_matrix,
    config: RunConfig,
    to_metres: float,
) -> np.ndarray:
    """Displacement per date [m] and the `_INVERSION_LAYERS` of one block, stacked.

    Per pixel: reference, loop-closure error count, unwrapping-error correction by phase
    closure, network inversion, time-series model fit; `PIXEL_BATCH` pixels at a time.
    """
    shape = unw.shape[1:]
    flat = unw.reshape(network.n_pairs, -1)
    flat_coh = coh[0].reshape(network.n_pairs, -1) if coh else None
    out = np.empty((network.n_dates + len(_INVERSION_LAYERS), flat.shape[1]), dtype=np.float32)
    for start in range(0, flat.shape[1], PIXEL_BATCH):
        cols = slice(start, start + PIXEL_BATCH)
        batch_coh = None if flat_coh is None else flat_coh[:, cols]
        out[:, cols] = _invert_pixels(
            flat[:, cols], batch_coh, ref_phase, network, closure, config, to_metres
        )
    return out.reshape(-1, *shape)


def _invert_pixels(
    unw: np.ndarray,
    coh: np.ndarray | None,
    ref_phase: np.ndarray,
    network: Network,
    closure: csr_matrix,
    config: RunConfig,
    to_metres: float,
) -> np.ndarray:
    """`_block_inversion` on (n_pairs, n_pix) phases [rad]; returns (n_dates + layers, n_pix)."""
    flat = unw.astype(np.float64) - ref_phase[:, None]
    n_bad = qc.closure_error_count(flat, closure, config.qc.closure_threshold)
    if config.unwrap.closure:
        flat = correct_closure(flat, closure, config.unwrap).unw
    inv = config.inversion
    weights = None
    if inv.weighting == "coherence" and coh is not None:
        weights = coherence_weights(coh.astype(np.float64), inv.looks, inv.variance_model)
    res = invert(
        flat,
        network,
        inv.method,
        weights=weights,
        min_group_size=inv.min_group_size,
        gamma=inv.gamma,
        min_valid=inv.min_valid_pairs,
        backend=inv.backend,
    )
    d = rereference(res.phase * to_metres, network.dates, config.model.reference_date)
    # where NSBAS/min-norm bridged a gap its offset is unknown: free in the fit (model.py)
    gaps = None if inv.method == "sbas" else res.gaps
    fit = fit_model(network.dates, d, config.model, gaps=gaps)
    layers = [
        fit.velocity,
        fit.velocity_std,
        res.temporal_coherence,
        n_bad,
        res.n_components,
        fit.residual_rms,
    ]
    return np.concatenate([d, np.stack(layers)])


@dataclass
class Timer:
    """Wall time [s] of each named stage."""

    seconds: dict[str, float] = field(default_factory=dict)

    def __call__(self, name: str) -> _Stage:
        return _Stage(self, name)


class _Stage:
    def __init__(self, timer: Timer, name: str) -> None:
        self.timer, self.name = timer, name

    def __enter__(self) -> None:
        self.start = time.perf_counter()
        log.info("stage %s", self.name)

    def __exit__(self, *exc: object) -> None:
        self.timer.seconds[self.name] = round(time.perf_counter() - self.start, 3)


def check_runnable(config: RunConfig) -> None:
    """Raise ConfigError naming the fix when this machine cannot run `config`: the JAX
    inversion backend without jax installed. Called before any work, so a run fails in
    seconds, not after its first passes over the stack."""
    if config.inversion.backend == "jax":
        jax_backend.require()


def load_input(path: str | Path, config: RunConfig, progress: bool = False) -> xr.Dataset:
    """Open a stack store, or read a product folder into a (lazy) stack."""
    if (as_path(path) / "zarr.json").is_file():  # a Zarr v3 group: a store from `ingest`
        return stack_store.open(path)
    return read_products(path, config.ingest, progress)  # lazy: pixels load chunk by chunk


def stack_statistics(stack: xr.Dataset, network: Network, progress: bool = False) -> StackStats:
    """One pass over the (dask-chunked) stack for the reference choice and the plots."""
    unw, coh = stack["unw"].data, stack["coh"].data
    spans = network.temporal_baselines().astype(np.float64)
    pixel = map_pixels(_block_statistics, [unw, coh], n_out=3, spans=spans)
    ok = da.isfinite(unw) & da.isfinite(coh)
    coh_sum = da.where(ok, coh, 0).sum(axis=(1, 2), dtype=np.float64)
    coh_count = ok.sum(axis=(1, 2))
    unw_count = da.isfinite(unw).sum(axis=(1, 2))
    with progress_bar("statistics", progress):
        pixel, coh_sum, coh_count, unw_count = dask.compute(pixel, coh_sum, coh_count, unw_count)
    stack_store.check_pairs_have_data(stack, unw_count)
    with np.errstate(invalid="ignore", divide="ignore"):
        pair_coh = coh_sum / coh_count
    return StackStats(pixel[0], pixel[1].astype(np.int32), pixel[2], pair_coh)


def _block_statistics(unw: np.ndarray, coh: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """(mean coherence, valid-pair count, phase rate [rad/day]) of one block, stacked."""
    valid = np.isfinite(unw)
    ok_coh = np.isfinite(coh) & valid
    s = spans[:, None, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_coh = np.where(ok_coh, coh, 0).sum(0, dtype=np.float64) / ok_coh.sum(0)
        rate = np.where(valid, unw, 0).sum(0, dtype=np.float64) / np.where(valid, s, 0).sum(0)
    return np.stack([mean_coh, valid.sum(0), rate]).astype(np.float32)


def choose_reference(
    stack: xr.Dataset, stats: StackStats, network: Network, config: RunConfig
) -> ReferencePoint:
    """The reference pixel: the configured lon/lat, or the automatic choice."""
    all_valid = stats.n_valid == network.n_pairs
    ref = config.reference
    if ref.lon is not None and ref.lat is not None:
        x, y = _lonlat_transformer(stack, inverse=True).transform(ref.lon, ref.lat)
        return reference_from_lonlat(x, y, stack["x"].values, stack["y"].values, all_valid)
    return auto_reference(
        np.nan_to_num(stats.mean_coherence), all_valid, np.nan_to_num(stats.phase_rate), ref.radius
    )


def run_sbas(
    stack: xr.Dataset,
    config: RunConfig,
    progress: bool = False,
    store: str | Path | None = None,
    checkpoint: Checkpoint | None = None,
) -> SbasRun:
    """SBAS time series of an `IfgStack`: the result Dataset and a run summary.

    Displacement is LOS [m], positive towards the satellite, relative to the first date and
    the reference pixel (DESIGN §3). With `store` (a Zarr path) the result is streamed there
    block by block and returned lazily, so memory stays bounded by the chunk size; without,
    it is computed in memory. With `checkpoint` too (and `store` inside its folder), each
    stage saves its results there and the store is written region by region: a run killed
    mid-way and called again with the same arguments skips what was done and gives the
    same result.
    """
    check_runnable(config)
    timer = Timer()
    source = stack.attrs.get("source", "the stack")
    size = config.ingest.chunk_size
    every = stack, stack_store.chunked(stack, size)

    with timer("statistics"):  # pair QC and pixel statistics in one pass over the pixels
        done = _stage(checkpoint, "statistics", lambda: _statistics(every[1], config, progress))
        pairs, stats = done["pairs"], _stats(done)
        stack, lazy, network = _kept(every, pairs, source, config)
    with timer("reference"):
        done = _stage(checkpoint, "reference", lambda: _reference(stack, stats, network, config))
        ref, ref_phase = ReferencePoint(done["y"], done["x"], done["method"]), done["ref_phase"]
    with timer("closure screening"):
        done = _stage(
            checkpoint,
            "closure screening",
            lambda: _screening(lazy, network, pairs, ref_phase, config, progress),
        )
        if "n_valid" in done:  # screening dropped pairs (qc.drop_flagged/unchecked)
            stats = _stats(done)
            stack, lazy, network = _kept(every, done["pairs"], source, config)
        pairs, ref_phase = done["pairs"], done["ref_phase"]
        closure = network.closure_matrix(config.qc.long_loops, config.qc.max_loop_length)

    with timer("inversion"):
        result = _inversion(lazy, stack, network, closure, ref_phase, stats, ref, config)
        correcting = chain.any_enabled(config)
        with progress_bar("inversion", progress):
            if checkpoint is not None and store is not None:
                # the corrections fit whole-scene models: they start from a store of their own
                target = Path(store).with_name("inversion.zarr") if correcting else Path(store)
                result = _resumable(result, target, checkpoint)
                result = result.load() if correcting else result
            else:
                # the corrections fit whole-scene models: with them the series is in memory
                result = result.compute() if correcting else _materialise(result, store)
    corrections = None
    if correcting:
        with timer("corrections"):
            corrections = _correct(result, stack, network, config)
            result = _materialise(result, store)
    summary = _summary(result, stats, network, ref, timer)
    if corrections is not None:
        summary["corrections"] = {"applied": corrections.applied, "skipped": corrections.skipped}
    summary.update(_pairs_summary(pairs, network, closure))
    return SbasRun(
        result,
        summary,
        network,
        stats.pair_coherence,
        pairs,
        None if store is None else Path(store),
    )


def _inversion(
    lazy: xr.Dataset,
    stack: xr.Dataset,
    network: Network,
    closure: csr_matrix,
    ref_phase: np.ndarray,
    stats: StackStats,
    ref: ReferencePoint,
    config: RunConfig,
) -> xr.Dataset:
    """The inverted result of the kept pairs `lazy`, lazily (one task a spatial block)."""
    weighted = config.inversion.weighting != "none"
    wavelength = float(stack.attrs.get("wavelength", SENTINEL1_WAVELENGTH))
    out = map_pixels(
        _block_inversion,
        [lazy["unw"].data, lazy["coh"].data] if weighted else [lazy["unw"].data],
        n_out=network.n_dates + len(_INVERSION_LAYERS),
        ref_phase=ref_phase,
        network=network,
        closure=closure,
        config=config,
        to_metres=phase_to_displacement(wavelength),
    )
    disp = out[: network.n_dates]
    layers = dict(zip(_INVERSION_LAYERS, out[network.n_dates :], strict=True))
    n_comp = layers.pop("n_components").astype(np.int16)
    layers["closure_errors"] = layers["closure_errors"].astype(np.int16)
    result = _result_dataset(stack, network, disp, layers, stats, n_comp, ref, config)
    return attach_network(result, network)  # what `mtinsar update` needs later


def _pairs_summary(pairs: xr.Dataset, network: Network, closure: csr_matrix) -> dict[str, Any]:
    """The summary's entries on the pairs: those dropped and why, loop closure, network."""
    dropped = pairs.isel(pair=~pairs["keep"].values.astype(bool))
    return {
        "pairs_dropped": [
            {"pair": str(p), "reason": str(r)}
            for p, r in zip(dropped["pair"].values, dropped["reason"].values, strict=True)
        ],
        "closure": _closure_summary(pairs, closure.shape[0]),
        "network": network.summary(),
    }


def _stage(
    checkpoint: Checkpoint | None, name: str, compute: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """The values of stage `name`: saved by an earlier, interrupted run, or computed (and
    saved when checkpointing)."""
    if checkpoint is not None:
        saved = checkpoint.load(name)
        if saved is not None:
            log.info("stage %s: resumed from checkpoint", name)
            return saved
    values = compute()
    if checkpoint is not None:
        checkpoint.save(name, values)
    return values


def _statistics(lazy: xr.Dataset, config: RunConfig, progress: bool) -> dict[str, Any]:
    """The pair QC table of every pair and the pixel statistics over the pairs kept."""
    source = lazy.attrs.get("source", "the stack")
    pairs, stats = survey(lazy, config, progress)
    qc.require_pairs_left(pairs, source)
    keep = pairs["keep"].values
    if not keep.all():  # the pixel statistics must count only the pairs kept
        kept = lazy.isel(pair=keep)
        stats = stack_statistics(kept, _network(kept, source, config), progress)
    return {"pairs": pairs, **vars(stats)}


def _reference(
    stack: xr.Dataset, stats: StackStats, network: Network, config: RunConfig
) -> dict[str, Any]:
    """The reference point (y, x, method) and the per-pair reference phase [rad]."""
    ref = choose_reference(stack, stats, network, config)
    ref_phase = _reference_phase(stack, ref, config.reference.radius)
    return {"y": int(ref.y), "x": int(ref.x), "method": ref.method, "ref_phase": ref_phase}


def _screening(
    lazy: xr.Dataset,
    network: Network,
    pairs: xr.Dataset,
    ref_phase: np.ndarray,
    config: RunConfig,
    progress: bool,
) -> dict[str, Any]:
    """Loop-closure screening: the updated pair table, the reference phase of the pairs
    left and, when screening dropped pairs, the pixel statistics over those left."""
    source = lazy.attrs.get("source", "the stack")
    closure = network.closure_matrix(config.qc.long_loops, config.qc.max_loop_length)
    screening = screen_closure(lazy, ref_phase, closure, config, progress)
    kept = qc.add_screening(pairs.sel(pair=lazy["pair"].values), screening, config.qc)
    pairs = _merge_pair_tables(pairs, kept)
    if kept["keep"].all():
        return {"pairs": pairs, "ref_phase": ref_phase}
    qc.require_pairs_left(kept, source)  # screening dropped pairs (qc.drop_flagged/unchecked)
    keep = kept["keep"].values
    left = lazy.isel(pair=keep)
    stats = stack_statistics(left, _network(left, source, config), progress)
    return {"pairs": pairs, "ref_phase": ref_phase[keep], **vars(stats)}


def _stats(values: dict[str, Any]) -> StackStats:
    return StackStats(**{name: values[name] for name in StackStats.__dataclass_fields__})


def _kept(
    every: tuple[xr.Dataset, xr.Dataset], pairs: xr.Dataset, source: str, config: RunConfig
) -> tuple[xr.Dataset, xr.Dataset, Network]:
    """Both views of the stack restricted to the pairs `pairs` keeps, and their network."""
    stack, lazy = _keep(*every, pairs["keep"].values.astype(bool))
    return stack, lazy, _network(stack, source, config)


def _resumable(result: xr.Dataset, store: Path, checkpoint: Checkpoint) -> xr.Dataset:
    """`_materialise` region by region, skipping the regions an interrupted run wrote."""
    regions = checkpoint.regions(store)
    created = checkpoint.load(f"{store.name} created") is not None
    if created and not store.is_dir():
        log.warning("%s of the interrupted run is gone: computing it again", store)
    if not (created and store.is_dir()):
        create_store(result, store)
        regions.clear()
        checkpoint.save(f"{store.name} created", {})
    write_regions(result, store, regions)
    return xr.open_zarr(store, decode_coords="all")


def _correct(
    result: xr.Dataset, stack: xr.Dataset, network: Network, config: RunConfig
) -> chain.Corrected:
    """Apply the enabled corrections to `result` (in memory) and refit the time-series model."""
    disp = result["displacement"].values
    corrected = chain.apply_corrections(disp, result, stack, result["mask"].values, config)
    result["displacement"].values[...] = corrected.displacement
    result["displacement"].attrs.update(_VARIABLE_ATTRS["displacement"])
    for name, layer in corrected.layers.items():
        result[name] = (("y", "x"), layer, _VARIABLE_ATTRS[name])
    # network gaps (no pair spans them anywhere) keep their free offset in the refit
    gaps = None if config.inversion.method == "sbas" else network.interval_coverage() == 0
    flat = corrected.displacement.reshape(network.n_dates, -1)
    names = ("velocity", "velocity_std", "model_residual")
    refit = {name: np.full(flat.shape[1], np.nan, dtype=np.float32) for name in names}
    step = 65536  # pixels per fit: bounds the fit's temporaries
    for start in range(0, flat.shape[1], step):
        fit = fit_model(network.dates, flat[:, start : start + step], config.model, gaps=gaps)
        for name, values in zip(
            names, (fit.velocity, fit.velocity_std, fit.residual_rms), strict=True
        ):
            refit[name][start : start + step] = values
    for name, values in refit.items():
        result[name].values[...] = values.reshape(result[name].shape)
    result["mask"] = reliable(result, config.mask)
    return corrected


def reliable(result: xr.Dataset, rules: MaskConfig) -> xr.DataArray:
    """The reliability mask: an estimate, and every rule of `rules` passed (lazy or not)."""
    finite = cast(xr.DataArray, np.isfinite(result["velocity"]))  # (typed as an ndarray)
    mask = finite & (result["temporal_coherence"] >= rules.min_temporal_coherence)
    limits = [
        ("n_valid_pairs", rules.min_valid_pairs, operator.ge),
        ("mean_coherence", rules.min_mean_coherence, operator.ge),
        ("velocity_std", rules.max_velocity_std, operator.le),
        ("closure_errors", rules.max_closure_errors, operator.le),
        ("model_residual", rules.max_model_residual, operator.le),
    ]
    for name, limit, passes in limits:
        if limit is not None:
            mask = mask & passes(result[name], limit)
    return mask.assign_attrs(_VARIABLE_ATTRS["mask"])


def survey(
    lazy: xr.Dataset, config: RunConfig, progress: bool = False
) -> tuple[xr.Dataset, StackStats]:
    """Per-pair QC table (coherence, valid fraction, components; keep and reason) and the
    pixel statistics over every pair, from one pass over the pixels."""
    unw, coh = lazy["unw"].data, lazy["coh"].data
    arrays = [unw, coh] + ([lazy["conncomp"].data] if "conncomp" in lazy.data_vars else [])
    every = Network.from_pair_dates(lazy["ref_date"].values, lazy["sec_date"].values)
    spans = every.temporal_baselines().astype(np.float64)
    pixel = map_pixels(_block_statistics, [unw, coh], n_out=3, spans=spans)
    blocks = zip(*(a.to_delayed().ravel() for a in arrays), strict=True)
    parts = [dask.delayed(qc.pair_counts)(*b) for b in blocks]
    with progress_bar("statistics", progress):
        pixel, *parts = dask.compute(pixel, *parts)  # each chunk is read once for both
    counts = functools.reduce(operator.add, parts)
    stack_store.check_pairs_have_data(lazy, counts.n_valid)  # an empty pair is an input error
    with np.errstate(invalid="ignore", divide="ignore"):
        pair_coh = counts.coh_sum / counts.coh_count
    stats = StackStats(pixel[0], pixel[1].astype(np.int32), pixel[2], pair_coh)
    return qc.pair_table(counts, lazy["pair"].values, config.qc), stats


def screen_closure(
    lazy: xr.Dataset,
    ref_phase: np.ndarray,
    closure: csr_matrix,
    config: RunConfig,
    progress: bool = False,
) -> qc.Screening:
    """Loop-closure screening of the referenced pairs for unwrapping errors."""

    def counts(unw: np.ndarray) -> qc.LoopCounts:
        flat = unw.reshape(unw.shape[0], -1)
        parts = [
            qc.loop_counts(
                flat[:, i : i + PIXEL_BATCH].astype(np.float64) - ref_phase[:, None],
                closure,
                config.qc.closure_threshold,
            )[0]
            for i in range(0, flat.shape[1], PIXEL_BATCH)
        ]
        return functools.reduce(operator.add, parts)

    with progress_bar("closure screening", progress):
        total = _sum_blocks(counts, [lazy["unw"].data])
    return qc.screen_pairs(total, closure, config.qc)


def _sum_blocks(func: Callable[..., Any], arrays: list[da.Array]) -> Any:
    """Sum of `func(*blocks)` over aligned spatial blocks (whole along the pair axis)."""
    blocks = zip(*(a.to_delayed().ravel() for a in arrays), strict=True)
    parts = dask.compute(*[dask.delayed(func)(*b) for b in blocks])
    return functools.reduce(operator.add, parts)


def _keep(stack: xr.Dataset, lazy: xr.Dataset, keep: np.ndarray) -> tuple[xr.Dataset, xr.Dataset]:
    """Both views of the stack restricted to the pairs to `keep`."""
    if keep.all():
        return stack, lazy
    return stack.isel(pair=keep), lazy.isel(pair=keep)


def _network(stack: xr.Dataset, source: str, config: RunConfig) -> Network:
    network = Network.from_pair_dates(stack["ref_date"].values, stack["sec_date"].values)
    if config.inversion.method == "sbas":
        _require_connected(network, source)
    elif len(network.date_groups()) > 1:
        log.warning(
            "the pairs split the dates into %d groups; %s bridges them",
            len(network.date_groups()),
            config.inversion.method,
        )
    return network


def _reference_phase(stack: xr.Dataset, ref: ReferencePoint, radius: int) -> np.ndarray:
    """Per-pair phase [rad] of the reference window (its median)."""
    window = stack["unw"][
        :, max(ref.y - radius, 0) : ref.y + radius + 1, max(ref.x - radius, 0) : ref.x + radius + 1
    ].values
    return reference_phase(np.asarray(window, dtype=np.float64))


def _merge_pair_tables(every: xr.Dataset, kept: xr.Dataset) -> xr.Dataset:
    """The table of every pair, with the closure columns of those that reached screening."""
    return kept.combine_first(every).sel(pair=every["pair"].values)


def _closure_summary(pairs: xr.Dataset, n_loops: int) -> dict[str, Any]:
    """Loop-closure facts for the summary and the report."""
    flagged = pairs["unwrap_error"].fillna(False).astype(bool).values
    rms = pairs["closure_rms"].values
    return {
        "loops checked": n_loops,
        "pairs flagged with unwrapping errors": int(flagged.sum()),
        "flagged pairs": [str(p) for p in pairs["pair"].values[flagged]],
        "median pair closure RMS [rad]": (
            round(float(np.nanmedian(rms)), 4) if np.isfinite(rms).any() else None
        ),
    }


def _materialise(result: xr.Dataset, store: str | Path | None) -> xr.Dataset:
    """Compute a lazy result in memory, or stream it to the Zarr `store` and reopen it."""
    if store is None:
        return result.compute()
    with warnings.catch_warnings():
        # Consolidated metadata on purpose: one read opens the store (also on object storage).
        warnings.filterwarnings("ignore", "Consolidated metadata", UserWarning)
        result.to_zarr(store, mode="w", zarr_format=3, consolidated=True)
    return xr.open_zarr(store, decode_coords="all")


_GEOMETRY_LAYERS = ("los_e", "los_n", "los_u", "incidence", "height")

_VARIABLE_ATTRS = {
    "displacement": {"units": "m", "long_name": "LOS displacement, + towards the satellite"},
    "velocity": {"units": "m/yr", "long_name": "LOS velocity (time-series model, mid-span)"},
    "velocity_std": {
        "units": "m/yr",
        "long_name": "formal std of velocity from the model-fit residual",
    },
    "model_residual": {"units": "m", "long_name": "RMS residual of the time-series model"},
    "dem_error": {"units": "m", "long_name": "DEM error (Fattahi & Amelung 2013)"},
    "temporal_coherence": {"units": "1", "long_name": "temporal coherence of the inversion"},
    "closure_errors": {
        "units": "1",
        "long_name": "loops with |closure phase| > qc.closure_threshold, before correction",
    },
    "mask": {"long_name": "reliable: estimated and passing every [mask] rule"},
    "n_valid_pairs": {"units": "1", "long_name": "number of valid pairs"},
    "n_components": {"units": "1", "long_name": "components of the valid-pair graph (1 = ok)"},
    "mean_coherence": {"units": "1", "long_name": "mean coherence over valid pairs"},
    "bperp": {"units": "m", "long_name": "perpendicular baseline w.r.t. the first date"},
}


def _result_dataset(
    stack: xr.Dataset,
    network: Network,
    disp: np.ndarray,
    layers: dict[str, np.ndarray],
    stats: StackStats,
    n_comp: np.ndarray,
    ref: ReferencePoint,
    config: RunConfig,
) -> xr.Dataset:
    yx = ("y", "x")
    variables = {
        "displacement": (("time", "y", "x"), disp),
        "velocity": (yx, layers["velocity"]),
        "velocity_std": (yx, layers["velocity_std"]),
        "temporal_coherence": (yx, layers["temporal_coherence"]),
        "closure_errors": (yx, layers["closure_errors"]),
        "model_residual": (yx, layers["model_residual"]),
        "n_valid_pairs": (yx, stats.n_valid.astype(np.int16)),
        "n_components": (yx, n_comp),
        "mean_coherence": (yx, stats.mean_coherence),
        "bperp": (("time",), _date_bperp(stack, network).astype(np.float32)),
    }
    coords = {
        "time": network.dates.astype("datetime64[ns]"),
        "y": stack["y"].values,
        "x": stack["x"].values,
    }
    ds = xr.Dataset(
        {k: (dims, data, _VARIABLE_ATTRS[k]) for k, (dims, data) in variables.items()}, coords
    )
    ds["mask"] = reliable(ds, config.mask)
    for name in _GEOMETRY_LAYERS:  # what decomposition, GNSS ties and infra need later
        if name in stack.data_vars:
            ds[name] = (yx, np.asarray(stack[name].values, dtype=np.float32))
            ds[name].attrs.update(stack[name].attrs)
    if "spatial_ref" in stack.coords:
        ds = ds.assign_coords(spatial_ref=stack["spatial_ref"])
        for var in ds.data_vars:
            ds[var].attrs["grid_mapping"] = "spatial_ref"
    to_lonlat = _lonlat_transformer(stack)
    lon, lat = to_lonlat.transform(float(stack["x"][ref.x]), float(stack["y"][ref.y]))
    ds.attrs.update(
        reference_y=ref.y,
        reference_x=ref.x,
        reference_lon=lon,
        reference_lat=lat,
        reference_method=ref.method,
        reference_date=str(
            network.dates[reference_index(network.dates, config.model.reference_date)]
        ),
        wavelength=float(stack.attrs.get("wavelength", SENTINEL1_WAVELENGTH)),
        orbit_direction=str(stack.attrs.get("orbit_direction", "")),
        source=str(stack.attrs.get("source", "")),
        config=config.model_dump_json(),
        software=f"mtinsar {__version__}",
    )
    return ds


def _lonlat_transformer(stack: xr.Dataset, inverse: bool = False) -> Transformer:
    """Grid coordinates -> lon/lat [deg] (or back); identity on a lon/lat grid."""
    crs = stack.rio.crs or "EPSG:4326"
    pair = (crs, "EPSG:4326") if not inverse else ("EPSG:4326", crs)
    return Transformer.from_crs(pair[0], pair[1], always_xy=True)


def _date_bperp(stack: xr.Dataset, network: Network) -> np.ndarray:
    """Per-date Bperp [m] relative to the first date, by inverting the pair baselines."""
    bperp = np.asarray(stack["bperp"].values, dtype=float)
    if not np.isfinite(bperp).all():
        return np.full(network.n_dates, np.nan)
    sol, *_ = np.linalg.lstsq(network.design_matrix(), bperp, rcond=None)
    return np.concatenate([[0.0], sol])


def _summary(
    result: xr.Dataset, stats: StackStats, network: Network, ref: ReferencePoint, timer: Timer
) -> dict:
    n_comp = result["n_components"].values
    mask = result["mask"].values
    has_data = stats.n_valid > 0
    vel_mm = result["velocity"].values[mask] * 1000
    return {
        "software": result.attrs["software"],
        "n_dates": network.n_dates,
        "n_pairs": network.n_pairs,
        "first_date": str(network.dates[0]),
        "last_date": str(network.dates[-1]),
        "n_pixels": int(n_comp.size),
        "n_pixels_no_data": int((~has_data).sum()),
        "n_pixels_disconnected": int((has_data & (n_comp != 1)).sum()),
        "n_pixels_estimated": int((n_comp == 1).sum()),
        "n_pixels_reliable": int(mask.sum()),
        "reference": {
            "y": ref.y,
            "x": ref.x,
            "lon": result.attrs["reference_lon"],
            "lat": result.attrs["reference_lat"],
            "method": ref.method,
            "date": result.attrs["reference_date"],
        },
        "velocity_mm_per_yr": {
            "p01": float(np.percentile(vel_mm, 1)) if vel_mm.size else None,
            "median": float(np.median(vel_mm)) if vel_mm.size else None,
            "p99": float(np.percentile(vel_mm, 99)) if vel_mm.size else None,
        },
        "timings_s": timer.seconds,
    }


def _require_connected(network: Network, source: str) -> None:
    """Refuse a network whose pairs do not link every date to every other."""
    groups = network.date_groups()
    if len(groups) > 1:
        desc = "; ".join(
            f"{network.dates[g[0]]}..{network.dates[g[-1]]} ({len(g)} dates)" for g in groups
        )
        raise NetworkError(
            f"the interferograms of {source} split the dates into {len(groups)} groups that no "
            f"pair links: {desc}. Add pairs that bridge the groups, or exclude the dates of "
            "the smaller groups (ingest.exclude_pairs)"
        )
