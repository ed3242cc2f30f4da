"""Infrastructure geometry: read lines/polygons, cut lines into segments, find their pixels.

Lines (roads, railways, pipelines) are cut into segments of a fixed length along the line,
each with a buffer; polygons (buildings, bridges, dams) are kept whole. Everything is done in
a local metric CRS (the UTM zone of the features, from pyproj's CRS database) so lengths and
buffers are in metres whatever the CRS of the file.

A pixel belongs to a segment when its cell (footprint on the result's grid) intersects the
segment's buffer, so a segment shorter than a pixel still gets the pixels under it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError
from shapely.ops import substring

from mtinsar.errors import ConfigError, InputError

log = logging.getLogger(__name__)

_LINES = ("LineString", "MultiLineString", "LinearRing")
_POLYGONS = ("Polygon", "MultiPolygon")
#: Columns of the segment table besides the geometries.
SEGMENT_COLUMNS = (
    "segment_id",
    "feature",
    "kind",
    "chainage_start_m",
    "chainage_end_m",
    "length_m",
)


def read_features(path: str | Path, assume_crs: str | None = None) -> gpd.GeoDataFrame:
    """Line and polygon features of a GeoJSON / GeoPackage / Shapefile, multi-parts exploded.

    `assume_crs` is used only when the file declares no CRS. Raises InputError naming the
    file when it is missing or unreadable, has no line/polygon feature, or has no CRS.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(
            f"infrastructure file {path} not found; give the path of a GeoJSON, GeoPackage or "
            "Shapefile holding the lines or polygons to assess"
        )
    try:
        gdf = gpd.read_file(path, engine="pyogrio")
    except Exception as exc:  # pyogrio raises several types for unreadable data
        raise InputError(
            f"cannot read {path} as a vector file ({exc}); give a GeoJSON, GeoPackage or "
            "Shapefile (with its .shx/.dbf/.prj beside it)"
        ) from exc
    if gdf.crs is None:
        if assume_crs is None:
            raise InputError(
                f"{path} declares no CRS (a Shapefile without its .prj?); add the .prj, or "
                "set infra.lines_crs (e.g. 'EPSG:32633') to the CRS of its coordinates"
            )
        gdf = gdf.set_crs(_crs(assume_crs))
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty]
    gdf = gdf.explode(index_parts=False, ignore_index=False)
    kinds = gdf.geom_type
    keep = kinds.isin(_LINES + _POLYGONS)
    if not keep.any():
        found = sorted(set(kinds)) or ["no geometry"]
        raise InputError(
            f"{path} has no line or polygon feature (found: {', '.join(found)}); give the "
            "infrastructure as LineStrings (roads, railways) or Polygons (structures)"
        )
    if not keep.all():
        log.warning("%s: %d non-line/polygon features ignored", path, int((~keep).sum()))
    out = gdf[keep].copy()
    out["feature"] = out.index.astype(str)
    return out.reset_index(drop=True)


def _crs(text: str) -> CRS:
    try:
        return CRS.from_user_input(text)
    except CRSError as exc:
        raise ConfigError(
            f"infra.lines_crs: {text!r} is not a CRS pyproj knows ({exc}); use e.g. 'EPSG:4326'"
        ) from exc


def metric_crs(features: gpd.GeoDataFrame) -> CRS:
    """The UTM CRS (WGS 84) of the zone holding the features' centre."""
    return features.estimate_utm_crs()


def make_segments(
    features: gpd.GeoDataFrame, length: float, buffer: float, crs: CRS | None = None
) -> gpd.GeoDataFrame:
    """Segments in a metric CRS: lines cut every `length` m, polygons whole.

    The last piece of a line is merged into the one before when shorter than length / 2, so
    every segment of a line longer than that measures between 0.5 and 1.5 `length`.
    Columns: `SEGMENT_COLUMNS`, `geometry` (the segment line or polygon) and `footprint`
    (the segment buffered by `buffer` m; a polygon grows by `buffer`). Chainage is the
    distance along the feature from its first vertex [m] (NaN for polygons).
    """
    crs = crs or metric_crs(features)
    metric = features.to_crs(crs)
    rows: list[tuple[str, str, float, float, shapely.Geometry]] = []
    for feature, geom in zip(metric["feature"], metric.geometry, strict=True):
        if geom.geom_type in _POLYGONS:
            rows.append((feature, "polygon", np.nan, np.nan, geom))
            continue
        total = geom.length
        if total <= 0:
            continue
        n = max(1, int(round(total / length)))
        cuts = np.minimum(np.arange(n + 1) * length, total)
        cuts[-1] = total
        for start, end in zip(cuts[:-1], cuts[1:], strict=True):
            rows.append((feature, "line", float(start), float(end), substring(geom, start, end)))
    table = pd.DataFrame(
        rows, columns=["feature", "kind", "chainage_start_m", "chainage_end_m", "g"]
    )
    geoms = gpd.GeoSeries(table.pop("g").to_numpy(), crs=crs)
    table["segment_id"] = np.arange(len(table))
    table["length_m"] = np.where(
        table["kind"] == "line", table["chainage_end_m"] - table["chainage_start_m"], np.nan
    )
    segs = gpd.GeoDataFrame(table[list(SEGMENT_COLUMNS)], geometry=geoms, crs=crs)
    segs["footprint"] = segs.geometry.buffer(buffer) if buffer > 0 else segs.geometry
    return segs


@dataclass(frozen=True)
class Membership:
    """Pixels of each segment: one entry per (segment, pixel) pair."""

    segment: np.ndarray  # (n,) segment index (row of the segment table)
    row: np.ndarray  # (n,) grid row
    col: np.ndarray  # (n,) grid column
    chainage: np.ndarray  # (n,) along-line position of the pixel centre [m] (NaN: polygon)
    east: np.ndarray  # (n,) pixel centre in the metric CRS [m]
    north: np.ndarray  # (n,) [m]


def assign_pixels(
    segments: gpd.GeoDataFrame, x: np.ndarray, y: np.ndarray, grid_crs: CRS
) -> Membership:
    """Every (segment, pixel) whose cell intersects the segment's footprint.

    x, y: pixel-centre coordinates of a regular grid in `grid_crs` (any order). Vectorised:
    candidates come from each footprint's bounding box, then one shapely intersects call.
    """
    if len(x) < 2 or len(y) < 2:
        raise InputError(f"the result grid is {len(y)} x {len(x)} pixels; it needs at least 2 x 2")
    to_grid = Transformer.from_crs(segments.crs, grid_crs, always_xy=True)
    # densify so the footprint keeps its shape through a non-linear CRS change
    step = max(float(segments["footprint"].length.min()) / 64.0, 1.0)
    dense = shapely.segmentize(segments["footprint"].values.to_numpy(), step)
    fp = shapely.transform(dense, lambda c: np.column_stack(to_grid.transform(c[:, 0], c[:, 1])))
    dx, dy = abs(float(x[1] - x[0])), abs(float(y[1] - y[0]))
    b = shapely.bounds(fp)
    c0, c1 = _index_range(x, b[:, 0] - dx / 2, b[:, 2] + dx / 2)
    r0, r1 = _index_range(y, b[:, 1] - dy / 2, b[:, 3] + dy / 2)
    nc, nr = np.maximum(c1 - c0, 0), np.maximum(r1 - r0, 0)
    counts = nc * nr
    seg = np.repeat(np.arange(len(fp)), counts)
    offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    row = r0[seg] + offset // np.maximum(nc[seg], 1)
    col = c0[seg] + offset % np.maximum(nc[seg], 1)
    cells = shapely.box(x[col] - dx / 2, y[row] - dy / 2, x[col] + dx / 2, y[row] + dy / 2)
    hit = shapely.intersects(fp[seg], cells)
    seg, row, col = seg[hit], row[hit], col[hit]
    east, north = Transformer.from_crs(grid_crs, segments.crs, always_xy=True).transform(
        x[col], y[row]
    )
    east, north = np.asarray(east, dtype=np.float64), np.asarray(north, dtype=np.float64)
    chainage = _chainage(segments, seg, east, north)
    return Membership(seg, row, col, chainage, east, north)


def _index_range(coord: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, ...]:
    """[start, stop) indices of the coordinates inside [lo, hi], ascending or descending."""
    if coord[0] <= coord[-1]:
        return np.searchsorted(coord, lo, "left"), np.searchsorted(coord, hi, "right")
    rev = coord[::-1]
    n = len(coord)
    return n - np.searchsorted(rev, hi, "right"), n - np.searchsorted(rev, lo, "left")


def _chainage(
    segments: gpd.GeoDataFrame, seg: np.ndarray, east: np.ndarray, north: np.ndarray
) -> np.ndarray:
    """Along-line position [m] of each pixel centre on its segment's line (NaN: polygon).

    The centre is projected on the segment's line extended at both ends along its end
    directions, so pixels just beyond a segment end keep their true distance (a projection
    on the segment alone would clamp them to its end and bias the gradient fit).
    """
    out = np.full(len(seg), np.nan)
    is_line = (segments["kind"].to_numpy() == "line")[seg]
    if not is_line.any():
        return out
    s = seg[is_line]
    geoms = segments.geometry.values.to_numpy()
    start = segments["chainage_start_m"].to_numpy()
    pts = shapely.points(east[is_line], north[is_line])
    ext, pad = _extended(geoms)
    out[is_line] = start[s] + shapely.line_locate_point(ext[s], pts) - pad[s]
    return out


def _extended(lines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each line prolonged by its own length at both ends, and that prolongation [m]."""
    pad = shapely.length(lines)
    coords = [np.asarray(g.coords)[:, :2] for g in lines]
    out = []
    for c, p in zip(coords, pad, strict=True):
        head = c[0] - p * _unit(c[1] - c[0])
        tail = c[-1] + p * _unit(c[-1] - c[-2])
        out.append(shapely.linestrings(np.vstack([head, c, tail])))
    return np.asarray(out, dtype=object), pad


def _unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.hypot(*v))
    return v / norm if norm > 0 else v
