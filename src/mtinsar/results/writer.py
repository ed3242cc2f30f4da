"""The result folder: Zarr store, COG layers, figures and summary, written atomically.

Layout of `OUT/`:
    timeseries.zarr         the full result (DESIGN §3), Zarr v3 chunked in space only
    velocity.tif            LOS velocity [m/yr]       (Cloud-Optimized GeoTIFF)
    velocity_std.tif        its standard deviation [m/yr]
    temporal_coherence.tif  0..1
    mask.tif                1 = reliable pixel
    figures/*.png           velocity map, quality maps, network, coherence matrix, time series
    report.html             the run report, self-contained (figures embedded)
    pairs.csv               per-pair QC: coherence, valid fraction, closure, kept or why not
    summary.json            counts, reference, timings, version

Everything is written into a temporary sibling folder first and swapped in at the end, so
a failure never leaves a half-written result or damages an earlier one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from mtinsar.analysis.network import Network
from mtinsar.config import OutputConfig
from mtinsar.errors import InputError
from mtinsar.results.encoding import with_float_codecs
from mtinsar.results.report import render_report

log = logging.getLogger(__name__)

COG_LAYERS = ("velocity", "velocity_std", "temporal_coherence", "mask")
SUMMARY = "summary.json"
REPORT = "report.html"
PAIRS = "pairs.csv"


@dataclass
class SbasRun:
    """What `run_sbas` produces: the result Dataset plus what the outputs need besides."""

    result: xr.Dataset
    summary: dict
    network: Network
    pair_coherence: np.ndarray  # (pair,) mean coherence of each pair
    pairs: xr.Dataset  # per-pair QC table of every input pair: statistics, keep, reason
    store: Path | None = None  # the Zarr store the result was streamed to, if any


def check_writable(out_dir: Path) -> None:
    """Refuse to replace a folder that is not empty and not an earlier mtinsar result."""
    if out_dir.exists() and (not out_dir.is_dir() or _is_foreign(out_dir)):
        raise InputError(
            f"output folder {out_dir} exists and is not an mtinsar result folder (no "
            f"{SUMMARY}); choose a new or empty folder so nothing of yours is overwritten"
        )


def _is_foreign(path: Path) -> bool:
    return any(path.iterdir()) and not (path / SUMMARY).is_file()


def write_results(
    run: SbasRun, out_dir: str | Path, config: OutputConfig, chunk_size: int = 256
) -> Path:
    """Write the result folder `out_dir` (replacing an earlier result there) and return it.

    A result streamed to a local store (`run.store`) is moved into the folder, not copied;
    `run.result` must not be read afterwards.
    """
    result = run.result
    log.info("writing results to %s", out_dir)
    with result_folder(out_dir) as tmp:
        if config.cog:
            for name in COG_LAYERS:
                write_cog(result[name], tmp / f"{name}.tif")
        if config.figures:
            figures = _write_figures(run, tmp / "figures", config)
            html = render_report(run.summary, figures, result.attrs["config"])
            (tmp / REPORT).write_text(html, encoding="utf-8")
        if run.store is not None and run.store.is_dir():
            shutil.move(run.store, tmp / "timeseries.zarr")  # streamed there already: adopt it
        else:
            write_store(result.chunk({"time": -1, "y": chunk_size, "x": chunk_size}), tmp)
        run.pairs.to_dataframe().to_csv(tmp / PAIRS)
        (tmp / SUMMARY).write_text(json.dumps(run.summary, indent=2))
    log.info("results written to %s", out_dir)
    return Path(out_dir)


@contextlib.contextmanager
def result_folder(out_dir: str | Path) -> Iterator[Path]:
    """A temporary sibling of `out_dir` to fill; swapped in for `out_dir` when the block ends.

    Refuses a non-empty `out_dir` that is not an mtinsar result folder (no summary.json);
    on failure nothing of `out_dir` changes and the temporary folder is removed.
    """
    out_dir = Path(out_dir)
    check_writable(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        yield tmp
        _swap_in(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_store(ds: xr.Dataset, folder: Path, name: str = "timeseries.zarr") -> Path:
    """`ds` as a Zarr v3 store `folder/name` with consolidated metadata; float rasters
    with `encoding.FLOAT_CODECS` unless their encoding names compressors."""
    ds = with_float_codecs(ds)
    with warnings.catch_warnings():
        # Consolidated metadata is kept on purpose (one read to open the store, also on
        # object storage) although Zarr v3 has not standardised it yet.
        warnings.filterwarnings("ignore", "Consolidated metadata", UserWarning)
        ds.to_zarr(folder / name, zarr_format=3, mode="w", consolidated=True)
    return folder / name


def write_cog(layer: xr.DataArray, path: Path) -> None:
    """Write a 2-D layer as a Cloud-Optimized GeoTIFF (float32, NaN no-data; bool as uint8)."""
    if layer.dtype == bool:
        data = layer.astype(np.uint8)
        data.rio.write_nodata(255, encoded=False, inplace=True)
    else:
        data = layer.astype(np.float32)
        data.rio.write_nodata(np.nan, encoded=False, inplace=True)
    data.rio.to_raster(path, driver="COG", compress="DEFLATE")


def _write_figures(run: SbasRun, folder: Path, config: OutputConfig) -> dict[str, Path]:
    """The PNG figures of a run; returns name -> file."""
    import matplotlib.pyplot as plt  # here: `mtinsar update` writes stores, never figures

    from mtinsar.results import plot

    folder.mkdir()
    result, network = run.result, run.network
    points = plot.sample_points(result, config.n_sample_points)
    figures = {
        "velocity": plot.velocity_map(result, points),
        "quality": plot.quality_maps(result),
        "network": plot.network_plot(network, result["bperp"].values),
        "coherence_matrix": plot.coherence_matrix(network, run.pair_coherence),
    }
    if points:
        figures["timeseries"] = plot.timeseries_plot(result, points)
    files = {}
    for name, fig in figures.items():
        files[name] = folder / f"{name}.png"
        fig.savefig(files[name], dpi=110)
        plt.close(fig)
    return files


def _swap_in(tmp: Path, out_dir: Path) -> None:
    """Replace `out_dir` by `tmp`; the old folder is removed only after the rename."""
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; a result folder is not
    if not out_dir.exists():
        os.replace(tmp, out_dir)
        return
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)
