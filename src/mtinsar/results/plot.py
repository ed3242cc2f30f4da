"""Figures of a run: velocity map, network, coherence matrix, sample time series.

Each function takes arrays/Datasets and returns a matplotlib Figure; saving is the caller's.
Display units are mm and mm/yr (the data stay in m, m/yr).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window (also safe on servers)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import rioxarray  # noqa: E402, F401 - registers the .rio accessor used for the grid's CRS
import xarray as xr  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from mtinsar.analysis.network import Network  # noqa: E402


def _extent(ds: xr.Dataset) -> list[float]:
    x, y = ds["x"].values, ds["y"].values
    dx = (x[-1] - x[0]) / max(len(x) - 1, 1)
    dy = (y[-1] - y[0]) / max(len(y) - 1, 1)
    return [x[0] - dx / 2, x[-1] + dx / 2, y[-1] + dy / 2, y[0] - dy / 2]


def _axis_labels(ds: xr.Dataset) -> dict[str, str]:
    """Axis labels in the grid's own coordinates: lon/lat degrees, or projected metres."""
    crs = ds.rio.crs if "spatial_ref" in ds.coords else None
    if crs is None or crs.is_geographic:
        return {"xlabel": "longitude [deg]", "ylabel": "latitude [deg]"}
    return {"xlabel": f"easting [m] ({crs.to_string()})", "ylabel": "northing [m]"}


def _where(ds: xr.Dataset, row: int, col: int) -> str:
    x, y = float(ds["x"][col]), float(ds["y"][row])
    if _axis_labels(ds)["xlabel"].startswith("longitude"):
        return f"lon {x:.4f}, lat {y:.4f}"
    return f"E {x:.0f} m, N {y:.0f} m"


def velocity_map(result: xr.Dataset, points: list[tuple[int, int]] = ()) -> Figure:
    """Velocity [mm/yr] on a diverging colormap centred on 0, masked pixels blank.

    The reference pixel is a black triangle; `points` (row, col) are numbered circles.
    """
    v = np.where(result["mask"].values, result["velocity"].values * 1000, np.nan)
    finite = v[np.isfinite(v)]
    lim = float(np.percentile(np.abs(finite), 99)) if finite.size else 1.0
    lim = max(lim, 1.0)
    fig, ax = plt.subplots(figsize=(7, 5.5), layout="constrained")
    im = ax.imshow(
        v,
        cmap="RdBu_r",
        norm=TwoSlopeNorm(0.0, -lim, lim),
        extent=_extent(result),
        interpolation="nearest",
    )
    fig.colorbar(im, ax=ax, label="LOS velocity [mm/yr] (+ towards satellite)", extend="both")
    ax.plot(
        float(result["x"][result.attrs["reference_x"]]),
        float(result["y"][result.attrs["reference_y"]]),
        "k^",
        markersize=9,
        label="reference",
    )
    xs, ys = result["x"].values, result["y"].values
    for n, (py, px) in enumerate(points, start=1):
        ax.plot(xs[px], ys[py], "o", mfc="none", mec="k")
        ax.annotate(str(n), (xs[px], ys[py]), xytext=(4, 4), textcoords="offset points")
    ax.legend(loc="lower right", fontsize="small")
    ax.set(**_axis_labels(result), title="LOS velocity")
    return fig


def network_plot(network: Network, bperp_dates: np.ndarray) -> Figure:
    """Pairs as lines between acquisition dates (x) at their perpendicular baselines (y, m)."""
    fig, ax = plt.subplots(figsize=(9, 4), layout="constrained")
    b = np.nan_to_num(np.asarray(bperp_dates, dtype=float))
    d = network.dates.astype("datetime64[D]").astype("O")
    for i, j in zip(network.ref, network.sec, strict=True):
        ax.plot([d[i], d[j]], [b[i], b[j]], "-", color="tab:blue", lw=0.7, alpha=0.7)
    ax.plot(d, b, "o", color="tab:orange", ms=4)
    ax.set(
        xlabel="acquisition date",
        ylabel="perpendicular baseline [m]",
        title=f"Network: {network.n_pairs} pairs, {network.n_dates} dates",
    )
    return fig


def coherence_matrix(network: Network, pair_coherence: np.ndarray) -> Figure:
    """Mean coherence of each pair in a dates x dates matrix; empty cells have no pair."""
    m = np.full((network.n_dates, network.n_dates), np.nan)
    m[network.ref, network.sec] = pair_coherence
    m[network.sec, network.ref] = pair_coherence
    fig, ax = plt.subplots(figsize=(6, 5), layout="constrained")
    im = ax.imshow(m, vmin=0, vmax=1, cmap="viridis", interpolation="nearest")
    fig.colorbar(im, ax=ax, label="mean coherence")
    ticks = np.linspace(0, network.n_dates - 1, min(network.n_dates, 6)).astype(int)
    labels = [str(network.dates[t]) for t in ticks]
    ax.set_xticks(ticks, labels, rotation=45, ha="right")
    ax.set_yticks(ticks, labels)
    ax.set_title("Coherence matrix")
    return fig


def timeseries_plot(result: xr.Dataset, points: list[tuple[int, int]]) -> Figure:
    """Displacement [mm] against time at `points` (row, col), with their linear fits."""
    n = max(len(points), 1)
    fig, axes = plt.subplots(n, 1, figsize=(8, 2.2 * n), sharex=True, layout="constrained")
    axes = np.atleast_1d(axes)
    t = result["time"].values
    years = (t - t[0]) / np.timedelta64(1, "D") / 365.25
    for n_pt, (ax, (py, px)) in enumerate(zip(axes, points, strict=False), start=1):
        d = result["displacement"][:, py, px].values * 1000  # one pixel: no full-cube read
        v = float(result["velocity"].values[py, px]) * 1000
        ax.plot(t, d, "o", ms=3, label="displacement")
        fit = np.nanmean(d) + v * (years - np.nanmean(years))
        ax.plot(t, fit, "-", label=f"linear fit {v:+.1f} mm/yr")
        ax.set_title(f"point {n_pt}: {_where(result, py, px)}", fontsize="small")
        ax.set_ylabel("LOS [mm]")
        ax.legend(fontsize="x-small", loc="best")
    axes[-1].set_xlabel("date")
    return fig


def quality_maps(result: xr.Dataset) -> Figure:
    """Velocity std [mm/yr], temporal coherence and the reliability mask, side by side."""
    std = result["velocity_std"].values * 1000
    finite = std[np.isfinite(std)]
    std_max = max(float(np.percentile(finite, 99)), 1e-3) if finite.size else 1.0
    panels = [
        (std, "velocity std [mm/yr]", "magma_r", std_max),
        (result["temporal_coherence"].values, "temporal coherence", "viridis", 1.0),
        (result["mask"].values.astype(float), "mask (1 = reliable)", "Greys_r", 1.0),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), layout="constrained", sharey=True)
    for ax, (data, label, cmap, vmax) in zip(axes, panels, strict=True):
        im = ax.imshow(
            data, cmap=cmap, vmin=0, vmax=vmax, extent=_extent(result), interpolation="nearest"
        )
        fig.colorbar(im, ax=ax, label=label, shrink=0.85)
        ax.set(xlabel=_axis_labels(result)["xlabel"], title=label)
    axes[0].set_ylabel(_axis_labels(result)["ylabel"])
    return fig


def sample_points(result: xr.Dataset, n: int) -> list[tuple[int, int]]:
    """Up to `n` reliable pixels spanning the velocity range: fastest down, fastest up, between."""
    mask = result["mask"].values
    v = np.where(mask, result["velocity"].values, np.nan)
    idx = np.flatnonzero(np.isfinite(v))
    if idx.size == 0 or n == 0:
        return []
    order = idx[np.argsort(v.ravel()[idx])]
    picks = order[np.unique(np.linspace(0, order.size - 1, n).round().astype(int))]
    return [tuple(int(c) for c in np.unravel_index(p, v.shape)) for p in picks]
