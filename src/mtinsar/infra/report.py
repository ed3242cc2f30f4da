"""Infrastructure stability of a result: analysis driver and its output folder.

Layout of `OUT/` (written into a temporary sibling folder, then swapped in):
    segments.gpkg      layers `segments` (metrics, segment geometry, CRS of the input file)
                       and `footprints` (the buffers whose pixels were used)
    segments.geojson   the segments with metrics, EPSG:4326 (RFC 7946)
    segments.csv       the metrics with each segment's midpoint lon/lat
    report.html        self-contained: map of segments by risk over the velocity map, the
                       worst segments' time series, thresholds and their sources
    summary.json       counts per risk class, segments at risk, config, inputs
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window (also safe on servers)

import geopandas as gpd  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import rioxarray  # noqa: E402, F401 - registers the .rio accessor
import shapely  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from pyproj import CRS, Transformer  # noqa: E402

from mtinsar import __version__  # noqa: E402
from mtinsar.errors import InputError  # noqa: E402
from mtinsar.infra.metrics import (  # noqa: E402
    AT_RISK_FROM,
    COLUMNS,
    RISK_LABELS,
    InfraConfig,
    segment_metrics,
)
from mtinsar.infra.segments import (  # noqa: E402
    Membership,
    assign_pixels,
    make_segments,
    read_features,
)
from mtinsar.results import versions  # noqa: E402
from mtinsar.results.writer import result_folder  # noqa: E402

log = logging.getLogger(__name__)

SUMMARY = "summary.json"
_RISK_COLOURS = {-1: "#9e9e9e", 0: "#1a9850", 1: "#fee08b", 2: "#f46d43", 3: "#a50026"}
_REQUIRED = ("velocity", "displacement")


@dataclass(frozen=True)
class InfraAnalysis:
    """Segments with their metrics (metric CRS), median series and pixel membership."""

    segments: gpd.GeoDataFrame
    series: np.ndarray  # (segment, time) median displacement [m]
    membership: Membership
    input_crs: CRS


def open_result(source: str | Path | xr.Dataset) -> xr.Dataset:
    """A result Dataset, or the one in a result folder (`timeseries.zarr`) or Zarr store."""
    if isinstance(source, xr.Dataset):
        ds = source
        name = "the result"
    else:
        path = Path(source)
        if not ((path / "zarr.json").is_file() or (path / versions.STORE).is_dir()):
            raise InputError(
                f"{path} is not an mtinsar result: no timeseries.zarr store there; give the "
                "output folder of `mtinsar run` (or its timeseries.zarr)"
            )
        ds = versions.open_result(path)  # a folder's current version (after updates)
        name = str(path)
    missing = [v for v in _REQUIRED if v not in ds.data_vars]
    if missing:
        raise InputError(
            f"{name} lacks {', '.join(missing)}; give a time-series result of `mtinsar run`"
        )
    if ds.rio.crs is None:
        raise InputError(
            f"{name} has no CRS (no spatial_ref coordinate); write one with "
            "ds.rio.write_crs(...) or re-run `mtinsar run`"
        )
    return ds


def analyse(result: xr.Dataset, lines_path: str | Path, config: InfraConfig) -> InfraAnalysis:
    """Segments of the features in `lines_path` with their metrics from `result`."""
    features = read_features(lines_path, config.lines_crs)
    segments = make_segments(features, config.segment_length, config.buffer)
    grid_crs = result.rio.crs
    x, y = result["x"].to_numpy(), result["y"].to_numpy()
    member = assign_pixels(segments, x, y, CRS.from_user_input(grid_crs))
    if len(member.segment) == 0:
        raise InputError(_outside_message(lines_path, features, result))
    pix = member.row * len(x) + member.col
    unique, inverse = np.unique(pix, return_inverse=True)
    rows, cols = unique // len(x), unique % len(x)
    at = {"y": xr.DataArray(rows, dims="p"), "x": xr.DataArray(cols, dims="p")}
    velocity = result["velocity"].isel(at).to_numpy().astype(np.float64)[inverse]
    disp = result["displacement"].isel(at).transpose("time", "p").to_numpy()
    disp = disp.astype(np.float64)[:, inverse]
    v_std = np.zeros_like(velocity)
    if "velocity_std" in result.data_vars:
        v_std = result["velocity_std"].isel(at).to_numpy().astype(np.float64)[inverse]
    if config.use_mask and "mask" in result.data_vars:
        keep = result["mask"].isel(at).to_numpy().astype(bool)[inverse]
        velocity = np.where(keep, velocity, np.nan)
    is_line = segments["kind"].to_numpy() == "line"
    line_entry = is_line[member.segment]
    coords = np.column_stack(
        [
            np.where(line_entry, member.chainage, member.east),
            np.where(line_entry, 0.0, member.north),
        ]
    )
    metrics = segment_metrics(
        member.segment,
        coords,
        velocity,
        v_std,
        disp,
        result["time"].to_numpy(),
        is_line,
        config,
    )
    table = segments.join(metrics.table)
    return InfraAnalysis(table, metrics.series, member, CRS.from_user_input(features.crs))


def _outside_message(path: str | Path, features: gpd.GeoDataFrame, result: xr.Dataset) -> str:
    lon_lat = features.to_crs("EPSG:4326").total_bounds
    x, y = result["x"].to_numpy(), result["y"].to_numpy()
    tr = Transformer.from_crs(result.rio.crs, "EPSG:4326", always_xy=True)
    lon, lat = tr.transform([x.min(), x.max()], [y.min(), y.max()])
    return (
        f"no feature of {path} overlaps the result (features: lon {lon_lat[0]:.4f}..."
        f"{lon_lat[2]:.4f}, lat {lon_lat[1]:.4f}..{lon_lat[3]:.4f}; result: lon "
        f"{min(lon):.4f}..{max(lon):.4f}, lat {min(lat):.4f}..{max(lat):.4f}); give lines "
        "inside the processed area, or check the file's CRS"
    )


def run_infra(
    result: str | Path | xr.Dataset,
    lines_path: str | Path,
    out_dir: str | Path,
    config: InfraConfig | None = None,
) -> dict[str, Any]:
    """Analyse `lines_path` over `result` and write the folder `out_dir`; return the summary.

    An existing `out_dir` is replaced only if it is an earlier infra output (or empty).
    """
    config = config or InfraConfig()
    out_dir = Path(out_dir)
    _check_writable(out_dir)
    ds = open_result(result)
    analysis = analyse(ds, lines_path, config)
    summary = _summary(analysis, ds, lines_path, config)
    with result_folder(out_dir) as tmp:
        write_outputs(analysis, ds, summary, tmp, config)
    log.info("infrastructure report written to %s", out_dir)
    return summary


def _check_writable(out_dir: Path) -> None:
    if not out_dir.exists():
        return
    marker = out_dir / SUMMARY
    try:
        ours = marker.is_file() and json.loads(marker.read_text()).get("kind") == "infra"
    except (ValueError, AttributeError):  # not JSON, or not an object: not ours
        ours = False
    if not out_dir.is_dir() or (any(out_dir.iterdir()) and not ours):
        raise InputError(
            f"output folder {out_dir} exists and is not an mtinsar infra output; choose a new "
            "or empty folder so nothing of yours is overwritten"
        )


def _summary(
    analysis: InfraAnalysis, ds: xr.Dataset, lines_path: str | Path, config: InfraConfig
) -> dict[str, Any]:
    seg = analysis.segments
    counts = seg["risk"].value_counts()
    at_risk = seg[seg["risk_class"] >= AT_RISK_FROM]
    return {
        "kind": "infra",
        "software": f"mtinsar {__version__}",
        "lines": str(lines_path),
        "result_source": str(ds.attrs.get("source", "")),
        "metric_crs": seg.crs.to_string(),
        "n_features": int(seg["feature"].nunique()),
        "n_segments": len(seg),
        "risk_counts": {label: int(counts.get(label, 0)) for label in RISK_LABELS.values()},
        "segments_at_risk": [int(i) for i in at_risk["segment_id"]],
        "max_abs_diff_settlement_mm_yr_100m": _max_abs(seg["diff_settlement_mm_yr_100m"]),
        "max_abs_velocity_mm_yr": _max_abs(seg["v_median_mm_yr"]),
        "n_accelerating": int(seg["accelerating"].sum()),
        "first_date": str(ds["time"].to_numpy()[0])[:10],
        "last_date": str(ds["time"].to_numpy()[-1])[:10],
        "config": config.model_dump(mode="json"),
    }


def _max_abs(col: Any) -> float | None:
    values = np.abs(col.to_numpy(dtype=np.float64))
    return round(float(np.nanmax(values)), 3) if np.isfinite(values).any() else None


def write_outputs(
    analysis: InfraAnalysis,
    ds: xr.Dataset,
    summary: dict[str, Any],
    folder: Path,
    config: InfraConfig,
) -> None:
    """Write the vector files, CSV, report and summary of `analysis` into `folder`."""
    seg = analysis.segments
    table = seg.drop(columns="footprint")
    table.to_crs(analysis.input_crs).to_file(folder / "segments.gpkg", layer="segments")
    footprints = gpd.GeoDataFrame(
        seg[["segment_id"]], geometry=seg["footprint"].to_numpy(), crs=seg.crs
    )
    footprints.to_crs(analysis.input_crs).to_file(folder / "segments.gpkg", layer="footprints")
    table.to_crs("EPSG:4326").to_file(folder / "segments.geojson", driver="GeoJSON")
    mid = table.geometry.representative_point().to_crs("EPSG:4326")
    csv = table.drop(columns="geometry").assign(lon=mid.x.round(6), lat=mid.y.round(6))
    csv.to_csv(folder / "segments.csv", index=False)
    worst = worst_segments(seg, config.n_worst)
    html_text = render_report(
        summary,
        seg,
        _png(segment_map(ds, seg)),
        _png(worst_series_plot(ds["time"].to_numpy(), analysis.series, seg, worst)),
        worst,
        config,
    )
    (folder / "report.html").write_text(html_text, encoding="utf-8")
    (folder / SUMMARY).write_text(json.dumps(summary, indent=2))


def worst_segments(seg: gpd.GeoDataFrame, n: int) -> list[int]:
    """Row positions of the `n` worst segments with data: by class, gradient, velocity."""
    have = seg[seg["risk_class"] >= 0]
    order = have.assign(
        g=have["diff_settlement_mm_yr_100m"].abs().fillna(0),
        v=have["v_median_mm_yr"].abs(),
    ).sort_values(["risk_class", "g", "v"], ascending=False)
    return [int(seg.index.get_loc(i)) for i in order.index[:n]]


def segment_map(ds: xr.Dataset, seg: gpd.GeoDataFrame) -> Figure:
    """Segments coloured by risk class over the LOS velocity [mm/yr] of reliable pixels."""
    v = ds["velocity"].to_numpy() * 1e3
    if "mask" in ds.data_vars:
        v = np.where(ds["mask"].to_numpy(), v, np.nan)
    x, y = ds["x"].to_numpy(), ds["y"].to_numpy()
    dx, dy = (x[-1] - x[0]) / max(len(x) - 1, 1), (y[-1] - y[0]) / max(len(y) - 1, 1)
    finite = v[np.isfinite(v)]
    lim = max(float(np.percentile(np.abs(finite), 99)) if finite.size else 1.0, 1.0)
    fig, ax = plt.subplots(figsize=(8, 6), layout="constrained")
    im = ax.imshow(
        v,
        cmap="RdBu_r",
        norm=TwoSlopeNorm(0.0, -lim, lim),
        extent=[x[0] - dx / 2, x[-1] + dx / 2, y[-1] + dy / 2, y[0] - dy / 2],
        interpolation="nearest",
        alpha=0.8,
    )
    fig.colorbar(im, ax=ax, label="LOS velocity [mm/yr] (+ towards satellite)", extend="both")
    grid = seg.to_crs(ds.rio.crs)
    lines = [
        np.asarray(shapely.get_exterior_ring(g).coords if g.geom_type == "Polygon" else g.coords)[
            :, :2
        ]
        for g in grid.geometry
    ]
    colours = [_RISK_COLOURS[int(c)] for c in grid["risk_class"]]
    ax.add_collection(LineCollection(lines, colors=colours, linewidths=3.5))
    for cls, label in RISK_LABELS.items():
        ax.plot([], [], color=_RISK_COLOURS[cls], lw=3.5, label=label)
    ax.legend(loc="lower right", fontsize="small", title="risk")
    ax.set(title="Segments by risk class over LOS velocity")
    return fig


def worst_series_plot(
    time: np.ndarray, series: np.ndarray, seg: gpd.GeoDataFrame, worst: list[int]
) -> Figure:
    """Median LOS displacement [mm] of the worst segments over time."""
    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    for i in worst:
        row = seg.iloc[i]
        ax.plot(
            time,
            series[i] * 1e3,
            "o-",
            ms=3,
            label=f"segment {row['segment_id']} ({row['risk']})",
        )
    if worst:
        ax.legend(fontsize="small")
    ax.set(ylabel="median LOS displacement [mm]", title="Worst segments")
    ax.grid(alpha=0.3)
    return fig


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: .5em 0 1em; } img { max-width: 100%; }
td, th { border: 1px solid #ddd; padding: .25em .6em; font-size: .9em; } th { background: #f3f3f3; }
.note { color: #555; font-size: .92em; }
"""
_SHOWN = (
    "segment_id",
    "feature",
    "chainage_start_m",
    "n_pixels",
    "v_median_mm_yr",
    "v_extreme_mm_yr",
    "diff_settlement_mm_yr_100m",
    "angular_distortion",
    "acceleration_mm_yr2",
    "change_p_value",
    "risk",
)


def render_report(
    summary: dict[str, Any],
    seg: gpd.GeoDataFrame,
    map_png: str,
    series_png: str,
    worst: list[int],
    config: InfraConfig,
) -> str:
    """The HTML text of the report (figures embedded as base64 PNG)."""
    e = html.escape
    counts = "".join(
        f"<tr><td>{e(k)}</td><td>{v}</td></tr>" for k, v in summary["risk_counts"].items()
    )
    head = "".join(f"<th>{e(c)}</th>" for c in _SHOWN)
    rows = "".join(
        "<tr>" + "".join(f"<td>{e(_fmt(seg.iloc[i][c]))}</td>" for c in _SHOWN) + "</tr>"
        for i in worst
    )
    legend = "".join(f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in COLUMNS.items())
    thresholds = "".join(
        f"<tr><td>{e(name)}</td><td>{e(str(field.description))}</td>"
        f"<td>{e(str(getattr(config, name)))}</td></tr>"
        for name, field in InfraConfig.model_fields.items()
    )
    return "\n".join(
        [
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
            f"<title>mtinsar infrastructure report</title><style>{_STYLE}</style></head><body>",
            "<h1>Infrastructure stability</h1>",
            f"<p class='note'>{e(summary['software'])}; lines {e(summary['lines'])}; "
            f"{summary['n_segments']} segments of {summary['n_features']} features; dates "
            f"{e(summary['first_date'])} .. {e(summary['last_date'])}. Velocities are "
            "line-of-sight, positive towards the satellite, relative to the result's reference "
            "point; rates are extrapolated "
            f"{config.horizon_years:g} years before comparison with damage thresholds.</p>",
            f"<h2>Risk classes</h2><table><tr><th>class</th><th>segments</th></tr>{counts}</table>",
            f"<img alt='segment map' src='data:image/png;base64,{map_png}'>",
            f"<h2>Worst segments</h2><table><tr>{head}</tr>{rows}</table>",
            f"<img alt='worst time series' src='data:image/png;base64,{series_png}'>",
            f"<h2>Columns</h2><table>{legend}</table>",
            "<h2>Settings and thresholds</h2><table><tr><th>setting</th><th>meaning and "
            f"source</th><th>value</th></tr>{thresholds}</table>",
            "</body></html>",
        ]
    )


def _fmt(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return "" if not np.isfinite(value) else f"{value:.4g}"
    return str(value)
