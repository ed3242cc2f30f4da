"""A simulated railway across the scene's main subsidence bowl, and its truth per segment.

The line runs west to east through the deepest point of the truth velocity (the main bowl's
centre), with a gentle bend there, from stable ground to stable ground. The truth per
segment comes from the truth velocity field sampled along the segment.
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import xarray as xr
from pyproj import Transformer

#: Vertices of the railway relative to the bowl centre, in bowl radii (x east, y south).
_VERTICES = ((-2.3, -0.3), (0.0, 0.0), (1.7, 0.3))
#: Sampling step [m] of the truth along a segment.
_STEP_M = 5.0


def bowl_centre_and_radius(truth: xr.Dataset) -> tuple[int, int, int]:
    """(row, col) of the deepest truth velocity and the bowl radius [pixels] along its row.

    The radius is where the velocity first returns to zero (the bowls have compact support).
    """
    v = truth["velocity"].to_numpy()
    row, col = np.unravel_index(int(np.nanargmin(v)), v.shape)
    line = v[row]
    still = np.flatnonzero(line == 0)
    west = col - still[still < col].max() if (still < col).any() else col
    east = still[still > col].min() - col if (still > col).any() else len(line) - col
    return int(row), int(col), int(max(west, east))


def railway_line(truth: xr.Dataset) -> shapely.LineString:
    """The railway in EPSG:4326 (the simulator's grid), three vertices, crossing the bowl."""
    row, col, radius = bowl_centre_and_radius(truth)
    x, y = truth["x"].to_numpy(), truth["y"].to_numpy()
    ny, nx = len(y), len(x)
    cols = np.clip([col + u * radius for u, _ in _VERTICES], 1, nx - 2)
    rows = np.clip([row + v * radius for _, v in _VERTICES], 1, ny - 2)
    lon = np.interp(cols, np.arange(nx), x)
    lat = np.interp(rows, np.arange(ny), y)
    return shapely.LineString(np.column_stack([lon, lat]))


def write_railway(truth: xr.Dataset, path: str | Path) -> Path:
    """Write the railway as a GeoJSON FeatureCollection (RFC 7946, lon/lat) and return it."""
    path = Path(path)
    feature = {
        "type": "Feature",
        "properties": {"name": "simulated railway", "kind": "railway"},
        "geometry": shapely.geometry.mapping(railway_line(truth)),
    }
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    return path


def segment_truth(truth: xr.Dataset, segments: gpd.GeoDataFrame) -> pd.DataFrame:
    """True metrics per line segment from the truth velocity sampled every 5 m along it.

    Columns: `true_diff_settlement_mm_yr_100m` (least-squares slope of velocity against
    chainage), `true_v_median_mm_yr`, `true_v_max_abs_mm_yr` (largest |velocity| along the
    segment prolonged by one pixel at both ends: 0 means stable ground). Velocities are the
    truth's LOS velocity; relative gradients do not depend on the reference point.
    """
    lines = segments.geometry.to_numpy()
    to_grid = Transformer.from_crs(segments.crs, truth.rio.crs, always_xy=True)
    # one pixel [m] at most (degrees of longitude are shorter than this): the stable-ground
    # test looks that far beyond the segment, as far as the pixels assigned to it reach
    pixel = float(abs(truth["x"][1] - truth["x"][0])) * 111_320.0
    n = np.maximum(np.ceil(shapely.length(lines) / _STEP_M).astype(int), 2)
    seg = np.repeat(np.arange(len(lines)), n)
    frac = np.concatenate([np.linspace(0.0, 1.0, k) for k in n])
    dist = frac * shapely.length(lines)[seg]
    pts = shapely.line_interpolate_point(lines[seg], dist)
    v = _sample(truth, to_grid, shapely.get_x(pts), shapely.get_y(pts))
    table = pd.DataFrame({"s": seg, "d": dist, "v": v})
    dc = table["d"] - table.groupby("s")["d"].transform("mean")
    vc = table["v"] - table.groupby("s")["v"].transform("mean")
    slope = (dc * vc).groupby(table["s"]).sum() / (dc * dc).groupby(table["s"]).sum()

    ext_pts = _prolonged_samples(lines, pixel)
    v_ext = _sample(truth, to_grid, shapely.get_x(ext_pts[1]), shapely.get_y(ext_pts[1]))
    vmax = pd.Series(np.abs(v_ext)).groupby(ext_pts[0]).max()
    return pd.DataFrame(
        {
            "true_diff_settlement_mm_yr_100m": slope.to_numpy() * 1e5,
            "true_v_median_mm_yr": table.groupby("s")["v"].median().to_numpy() * 1e3,
            "true_v_max_abs_mm_yr": vmax.to_numpy() * 1e3,
        },
        index=segments.index,
    )


def _prolonged_samples(lines: np.ndarray, pad: float) -> tuple[np.ndarray, np.ndarray]:
    """(segment index, points) every 5 m along each line prolonged by `pad` m at both ends."""
    seg, pts = [], []
    for i, g in enumerate(lines):
        c = np.asarray(g.coords)[:, :2]
        head = c[0] - pad * _unit(c[1] - c[0])
        tail = c[-1] + pad * _unit(c[-1] - c[-2])
        ext = shapely.LineString(np.vstack([head, c, tail]))
        d = np.arange(0.0, ext.length + _STEP_M, _STEP_M)
        seg.append(np.full(len(d), i))
        pts.append(shapely.line_interpolate_point(ext, np.minimum(d, ext.length)))
    return np.concatenate(seg), np.concatenate(pts)


def _unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.hypot(*v))
    return v / norm if norm > 0 else v


def _sample(truth: xr.Dataset, to_grid: Transformer, east: np.ndarray, north: np.ndarray):
    """Truth velocity [m/yr] at metric points, bilinear between pixel centres."""
    gx, gy = to_grid.transform(east, north)
    at = {"x": xr.DataArray(np.asarray(gx), dims="p"), "y": xr.DataArray(np.asarray(gy), dims="p")}
    return truth["velocity"].astype(np.float64).interp(at, method="linear").to_numpy()
