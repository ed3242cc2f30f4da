"""Product selection common to every reader: which pairs, which pixels.

Readers call these before reading pixel data, so only the selection is read:

* `select_pairs` keeps the pairs allowed by `IngestConfig` (include/exclude lists, date
  range, maximum temporal baseline), from the pair dates alone;
* `select_area` turns the area of interest (a bbox and/or a GeoJSON polygon, each in any CRS)
  into a pixel window of the product grid, trimmed to whole multilook blocks, plus a mask of
  the pixels inside the polygon.

Geometry is reprojected with pyproj after densifying the edges (a straight edge in one CRS is
curved in another), and tested with shapely. Nothing here reads rasters.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from affine import Affine
from pyproj import CRS as ProjCRS
from pyproj import Transformer
from pyproj.exceptions import CRSError
from shapely.geometry.base import BaseGeometry

from mtinsar.config import IngestConfig
from mtinsar.errors import ConfigError, InputError, NothingSelected
from mtinsar.io.core import grid as gridlib

logger = logging.getLogger(__name__)

#: Points per edge when reprojecting a bbox or polygon edge, so curvature is followed.
_DENSIFY_POINTS = 64
_PAIR_HELP = 'pair names are "YYYYMMDD_YYYYMMDD" (earlier date first)'


# --------------------------------------------------------------------------- pairs


def select_pairs(
    labels: Sequence[str],
    ref_dates: np.ndarray,
    sec_dates: np.ndarray,
    config: IngestConfig,
    source: str,
) -> np.ndarray:
    """Indices (into `labels`) of the pairs `config` keeps, in the given order.

    Applied in this order: `include_pairs` (if not empty), `exclude_pairs`, `start_date`/
    `end_date` (both dates of a pair inside the range, inclusive),
    `max_temporal_baseline_days` and `ending_after`. Names in the include/exclude lists that
    match no pair raise InputError, a selection that keeps nothing NothingSelected, naming
    `source` and the option at fault.
    """
    names = [str(v) for v in labels]
    ref = np.asarray(ref_dates).astype("datetime64[D]")
    sec = np.asarray(sec_dates).astype("datetime64[D]")
    keep = np.ones(len(names), dtype=bool)
    present = set(names)
    for option, listed in (
        ("include_pairs", config.include_pairs),
        ("exclude_pairs", config.exclude_pairs),
    ):
        unknown = [p for p in listed if p not in present]
        if unknown:
            some = ", ".join(sorted(present)[:5])
            raise InputError(
                f"ingest.{option}: {', '.join(unknown)} not found in {source}; existing pairs "
                f"include {some} ({len(names)} in all; {_PAIR_HELP}). Fix the pair name(s)."
            )
    if config.include_pairs:
        keep &= np.isin(names, config.include_pairs)
    keep &= ~np.isin(names, config.exclude_pairs)
    if config.start_date is not None:
        keep &= ref >= _day(config.start_date)
    if config.end_date is not None:
        keep &= sec <= _day(config.end_date)
    if config.max_temporal_baseline_days is not None:
        span = (sec - ref).astype(np.int64)
        keep &= span <= config.max_temporal_baseline_days
    if config.ending_after is not None:
        keep &= sec > _day(config.ending_after)
    if not keep.any():
        raise NothingSelected(
            f"{source}: no pair of the {len(names)} found is left after selection "
            f"({_describe(config)}); widen the date range or pair lists"
        )
    logger.debug("%s: %d of %d pairs selected", source, int(keep.sum()), len(names))
    return np.flatnonzero(keep)


def _day(value: date) -> np.datetime64:
    return np.datetime64(value.isoformat(), "D")


def _describe(config: IngestConfig) -> str:
    parts = []
    for key in ("include_pairs", "exclude_pairs"):
        if getattr(config, key):
            parts.append(f"{key}={getattr(config, key)}")
    for key in ("start_date", "end_date", "max_temporal_baseline_days", "ending_after"):
        if getattr(config, key) is not None:
            parts.append(f"{key}={getattr(config, key)}")
    return ", ".join(parts) or "no selection options"


# --------------------------------------------------------------------------- area


@dataclass(frozen=True)
class AreaSelection:
    """Pixels to read: a window of the product grid and, for a polygon, who is inside.

    `window` is trimmed to whole multilook blocks. `inside` is None (keep every pixel) or a
    bool array of the window's shape, True for pixels whose centre is inside the polygon.
    """

    window: gridlib.PixelWindow
    inside: np.ndarray | None = None


def select_area(
    transform: Affine,
    shape: tuple[int, int],
    crs: Any,
    config: IngestConfig,
    source: str,
) -> AreaSelection:
    """Pixel window of a north-up grid covering `config`'s bbox and/or polygon.

    `crs` is the grid's CRS (rasterio or pyproj CRS, or None when unknown). The bbox keeps
    every pixel overlapping it; the polygon crops to its bounds and marks pixels whose centre
    lies inside it. With both, their intersection is used. The window is then trimmed to whole
    `config.multilook` blocks. Raises InputError naming `source` when the selection misses
    the grid or is smaller than one multilook block.
    """
    full = gridlib.PixelWindow(0, shape[0], 0, shape[1])
    areas = _areas_in_grid_crs(crs, config, source)
    window, inside = full, None
    if areas:
        region = shapely.intersection_all([a for a, _ in areas])
        if region.is_empty:
            raise InputError(
                f"ingest.bbox and ingest.polygon do not overlap; {_fix_area(transform, shape, crs)}"
            )
        crop = gridlib.bbox_window(transform, shape, region.bounds)
        if crop is None:
            raise InputError(
                f"the selected area ({_area_words(areas)}) does not intersect the data of "
                f"{source}; {_fix_area(transform, shape, crs)}"
            )
        window = crop
        polygons = [a for a, is_polygon in areas if is_polygon]
        if polygons:
            inside = _inside(transform, window, shapely.intersection_all(polygons))
            if not inside.any():
                raise InputError(
                    f"ingest.polygon contains no pixel centre of {source}; "
                    f"{_fix_area(transform, shape, crs)}"
                )
    return _trim(window, inside, config.multilook, source, bool(areas))


def _areas_in_grid_crs(
    crs: Any, config: IngestConfig, source: str
) -> list[tuple[BaseGeometry, bool]]:
    """(geometry in the grid CRS, is_polygon) for the bbox and the polygon that are set."""
    if config.bbox is None and config.polygon is None:
        return []
    if crs is None:
        raise InputError(
            f"{source}: the rasters have no CRS, so ingest.bbox/polygon cannot be placed on "
            "them; fix the GeoTIFF georeferencing or read without a selection"
        )
    target = ProjCRS.from_user_input(crs)
    default = _parse_crs(config.selection_crs, "ingest.selection_crs")
    areas = []
    if config.bbox is not None:
        box = shapely.box(*config.bbox)
        areas.append((_reproject(box, default, target), False))
    if config.polygon is not None:
        polygon, polygon_crs = load_polygon(config.polygon, default)
        areas.append((_reproject(polygon, polygon_crs, target), True))
    return areas


def load_polygon(spec: str, default_crs: ProjCRS) -> tuple[BaseGeometry, ProjCRS]:
    """(Polygon/MultiPolygon, its CRS) from a GeoJSON file path or GeoJSON text.

    Accepts a Geometry, a Feature or a FeatureCollection (the union of its polygons). The CRS
    is the (2008 GeoJSON) 'crs' member, e.g. {"type": "name", "properties": {"name":
    "EPSG:32614"}}, else `default_crs`. Raises ConfigError naming the file and the problem.
    """
    text, where = _polygon_text(spec)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"ingest.polygon: {where} is not valid GeoJSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"ingest.polygon: {where} is not a GeoJSON object")
    crs = default_crs
    member = doc.get("crs")
    if isinstance(member, dict):
        name = member.get("properties", {}).get("name")
        crs = _parse_crs(str(name), f"the 'crs' member of {where}")
    geometries = _geometries(doc, where)
    try:
        shapes = [shapely.geometry.shape(g) for g in geometries]
    except (TypeError, ValueError, AttributeError, shapely.errors.GEOSException) as exc:
        raise ConfigError(f"ingest.polygon: {where} holds an invalid geometry ({exc})") from None
    polygons = [s for s in shapes if s.geom_type in ("Polygon", "MultiPolygon") and not s.is_empty]
    if not polygons:
        kinds = sorted({s.geom_type for s in shapes}) or ["nothing"]
        raise ConfigError(
            f"ingest.polygon: {where} holds {', '.join(kinds)}, no Polygon or MultiPolygon; "
            "give the area of interest as a polygon"
        )
    region = shapely.union_all([shapely.make_valid(p) for p in polygons])
    return region, crs


def _polygon_text(spec: str) -> tuple[str, str]:
    """(GeoJSON text, words naming where it came from)."""
    stripped = spec.strip()
    if stripped.startswith("{"):
        return stripped, "the GeoJSON text given"
    path = Path(spec).expanduser()
    try:
        return path.read_text(), f"file {path}"
    except OSError as exc:
        raise ConfigError(
            f"ingest.polygon: cannot read GeoJSON file {path} ({exc.strerror or exc}); "
            "give an existing file path or the GeoJSON text itself"
        ) from None


def _geometries(doc: dict[str, Any], where: str) -> list[dict[str, Any]]:
    kind = doc.get("type")
    if kind == "FeatureCollection":
        return [f.get("geometry") for f in doc.get("features", []) if f.get("geometry")]
    if kind == "Feature":
        return [doc["geometry"]] if doc.get("geometry") else []
    if kind == "GeometryCollection":
        return list(doc.get("geometries", []))
    if isinstance(kind, str) and "coordinates" in doc:
        return [doc]
    raise ConfigError(
        f"ingest.polygon: {where} is not a GeoJSON Geometry, Feature or FeatureCollection "
        f"(type {kind!r})"
    )


def _parse_crs(text: str, what: str) -> ProjCRS:
    try:
        return ProjCRS.from_user_input(text)
    except CRSError as exc:
        raise ConfigError(
            f"{what}: {text!r} is not a CRS pyproj understands ({exc}); use e.g. 'EPSG:4326'"
        ) from None


def _reproject(geom: BaseGeometry, src: ProjCRS, dst: ProjCRS) -> BaseGeometry:
    """`geom` from `src` to `dst`, edges densified first."""
    if src == dst:
        return geom
    x0, y0, x1, y1 = geom.bounds
    step = max(x1 - x0, y1 - y0) / _DENSIFY_POINTS
    dense = shapely.segmentize(geom, step) if step > 0 else geom
    transformer = Transformer.from_crs(src, dst, always_xy=True)
    out = shapely.transform(dense, lambda xy: np.column_stack(transformer.transform(*xy.T)))
    if not np.all(np.isfinite(out.bounds)):
        raise InputError(
            f"the selected area cannot be expressed in the grid CRS {dst.to_string()} "
            "(outside its valid area); check ingest.selection_crs and the coordinates"
        )
    return shapely.make_valid(out)


def _inside(transform: Affine, window: gridlib.PixelWindow, region: BaseGeometry) -> np.ndarray:
    """True for the window's pixels whose centre lies inside `region` (or on its edge)."""
    y, x = gridlib.pixel_centres(transform, window.shape, window.row0, window.col0)
    xx, yy = np.meshgrid(x, y)
    return shapely.intersects_xy(region, xx, yy)


def _trim(
    window: gridlib.PixelWindow,
    inside: np.ndarray | None,
    factor: int,
    source: str,
    cropped: bool,
) -> AreaSelection:
    """Drop trailing rows/columns that do not fill a whole multilook block."""
    if factor > min(window.shape):
        raise InputError(
            f"multilook {factor} is larger than the {'selected ' if cropped else ''}grid of "
            f"{window.height}x{window.width} px of {source}; use a smaller ingest.multilook "
            "or a larger area"
        )
    ny, nx = gridlib.multilook_shape(window.shape, factor)
    trimmed = gridlib.PixelWindow(
        window.row0, window.row0 + ny * factor, window.col0, window.col0 + nx * factor
    )
    if inside is not None:
        inside = inside[: ny * factor, : nx * factor]
    return AreaSelection(trimmed, inside)


def _area_words(areas: list[tuple[BaseGeometry, bool]]) -> str:
    return " and ".join(
        "ingest.polygon" if is_polygon else "ingest.bbox" for _, is_polygon in areas
    )


def _fix_area(transform: Affine, shape: tuple[int, int], crs: Any) -> str:
    """Advice naming the data extent in the grid CRS and in lon/lat."""
    x0, y0, x1, y1 = gridlib.extent(transform, shape)
    words = f"the data covers x {x0:.6g}..{x1:.6g}, y {y0:.6g}..{y1:.6g}"
    if crs is not None:
        grid_crs = ProjCRS.from_user_input(crs)
        words += f" in {grid_crs.to_string()}"
        if not grid_crs.is_geographic:
            lon0, lat0, lon1, lat1 = Transformer.from_crs(
                grid_crs, "EPSG:4326", always_xy=True
            ).transform_bounds(x0, y0, x1, y1)
            words += f" (lon {lon0:.5f}..{lon1:.5f}, lat {lat0:.5f}..{lat1:.5f})"
    return words + "; choose an area inside it (ingest.selection_crs sets the CRS of bbox)"
