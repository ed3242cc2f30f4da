"""Alerts of an NRT update: areas departing from the model, or whose velocity changed, as
GeoJSON features (RFC 7946, lon/lat). Pure: the job layer writes and posts them.

Departures. The new displacement is compared with the model's prediction from before the
update; the prediction's standard deviation is σ_pred = s·sqrt(1 + gᵀN⁻¹g) with s² the
residual variance on n - p degrees of freedom (the least-squares prediction interval, honest
for the extrapolation to a new date; `nrt.state.prediction_departure`). The new date's
long-wavelength atmosphere is correlated over kilometres, so departures would otherwise
exceed k·σ over whole areas on a stormy date (0.4-2.8 % of the pixels on simulated quiet
dates): the departure's local mean over `highpass_window_px` is removed first (`highpass`).
Pixels departing by more than k·σ_pred that form connected areas of at least
`min_area_px` pixels are the alerts (`alert_areas`, `alert_features`).

Velocity changes. The first update keeps the velocity and its std of the last full run
(`nrt_velocity_base`, `nrt_velocity_base_std`). After each update, pixels whose velocity
differs from it by more than `velocity_k_sigma`·sqrt(σ_base² + σ_now²) and by at least
`velocity_change_mm_yr` form alert areas of kind "velocity_change" (same area rules).
Both fits share most dates, so the two stds are positively correlated and the root sum of
squares overstates the difference's std: the test is conservative (few false alerts) and
fires on accelerations that persist over several updates.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import shapely
import xarray as xr
from pyproj import Transformer
from rasterio import features
from rasterio.transform import Affine
from scipy import ndimage
from shapely.geometry import mapping, shape
from shapely.ops import unary_union

from mtinsar.config import NrtConfig

DEPARTURE = "departure_from_model"
VELOCITY_CHANGE = "velocity_change"


def empty() -> dict[str, Any]:
    """A FeatureCollection without features."""
    return {"type": "FeatureCollection", "features": []}


def date_alerts(
    grid: xr.Dataset,
    date: str,
    departure: tuple[np.ndarray, np.ndarray],
    change: tuple[np.ndarray, np.ndarray],
    nrt: NrtConfig,
    mask: np.ndarray | None = None,
) -> tuple[dict[str, Any], int]:
    """(FeatureCollection, alerting pixels) of one new date on `grid`'s pixels.

    `departure`: (new displacement minus the model's prediction, σ_pred) (y, x) [m], high-
    passed here; `change`: (velocity change, its std) (y, x) [m/yr] (`velocity_change`).
    Departure areas first, then velocity-change areas, numbered 1..n over both; `mask`
    (y, x) bool: the pixels that may alert (None: all).
    """
    moved = highpass(departure[0], nrt.highpass_window_px, mask)
    labels, areas = alert_areas(moved, departure[1], nrt.k_sigma, nrt, mask)
    collection = alert_features(labels, areas, moved, departure[1], grid, date)
    v_labels, v_areas = alert_areas(*change, nrt.velocity_k_sigma, nrt, mask)
    changed = alert_features(v_labels, v_areas, *change, grid, date, VELOCITY_CHANGE)
    collection["features"] += changed["features"]
    for number, feature in enumerate(collection["features"], start=1):
        feature["properties"]["id"] = number
    return collection, int(((labels > 0) | (v_labels > 0)).sum())


def merged(collections: list[dict[str, Any]]) -> dict[str, Any]:
    """One FeatureCollection of the features of `collections` in their order (e.g. the
    dates of one update), renumbered 1..n; the features are copies."""
    out = empty()
    for collection in collections:
        for feature in collection["features"]:
            number = len(out["features"]) + 1
            out["features"].append(
                {**feature, "properties": {**feature["properties"], "id": number}}
            )
    return out


def highpass(field: np.ndarray, window: int, mask: np.ndarray | None = None) -> np.ndarray:
    """`field` (y, x) minus its local mean over `window` x `window` pixels (0: unchanged).

    The mean is a normalised convolution (Knutsson & Westin 1993, CVPR): NaN and pixels off
    `mask` are left out of it rather than counted as zero. The new date's atmospheric delay
    is correlated over kilometres (Hanssen 2001, ch. 4) and would otherwise alert as whole
    areas on a stormy date; events much smaller than the window (a 20-pixel area in a
    31-pixel window shifts the local mean by ~2 % of its amplitude) keep their departure.
    """
    if window <= 1:
        return field
    ok = np.isfinite(field) & (True if mask is None else mask)
    num = ndimage.uniform_filter(np.where(ok, field, 0.0), window, mode="nearest")
    den = ndimage.uniform_filter(ok.astype(np.float64), window, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        return field - num / den


def velocity_change(
    velocity: np.ndarray,
    velocity_std: np.ndarray,
    base: np.ndarray,
    base_std: np.ndarray,
    min_change: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(change [m/yr], its std [m/yr]) (y, x) of `velocity` from the last full run's `base`.

    The std is sqrt(σ_base² + σ²) (conservative: module docstring). The change is 0 where it
    is below `min_change` [m/yr], so that only sizeable changes can alert.
    """
    change = velocity - base
    with np.errstate(invalid="ignore"):
        std = np.sqrt(base_std.astype(np.float64) ** 2 + velocity_std**2)
        small = np.abs(change) < min_change
    return np.where(small, 0.0, change), std


def alert_areas(
    departure: np.ndarray,
    sigma: np.ndarray,
    k: float,
    nrt: NrtConfig,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(labels (y, x) int32, area [px] per label 1..m) of areas departing > k·σ.

    Pixels with |departure| > k·sigma (and in `mask`) are grouped by
    `scipy.ndimage.label`; areas smaller than `min_area_px` are dropped and the rest
    renumbered 1..m (0 = no alert).
    """
    with np.errstate(invalid="ignore"):
        hit = np.abs(departure) > k * sigma
    hit &= np.isfinite(departure) & np.isfinite(sigma)
    if mask is not None:
        hit &= mask
    structure = ndimage.generate_binary_structure(2, 1 if nrt.connectivity == 4 else 2)
    labels, n = ndimage.label(hit, structure=structure)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    big = np.flatnonzero(sizes >= nrt.min_area_px)
    big = big[big > 0]
    renumber = np.zeros(n + 1, dtype=np.int32)
    renumber[big] = np.arange(1, big.size + 1)
    return renumber[labels], sizes[big]


def alert_features(
    labels: np.ndarray,
    areas: np.ndarray,
    departure: np.ndarray,
    sigma: np.ndarray,
    grid: xr.Dataset,
    date: str,
    kind: str = DEPARTURE,
) -> dict[str, Any]:
    """GeoJSON FeatureCollection (RFC 7946, lon/lat) of the alert areas of `labels`.

    Each feature is one area's outline (`rasterio.features.shapes`), with properties id,
    date, kind, area_px, max_departure_mm (signed, largest magnitude), mean_departure_mm,
    max_sigma_ratio (largest |departure|/σ) and the lon/lat of the pixel of largest departure.
    For kind "velocity_change" the departure is a velocity change and its properties are
    max_change_mm_per_yr and mean_change_mm_per_yr instead.
    """
    quantity = "change_mm_per_yr" if kind == VELOCITY_CHANGE else "departure_mm"
    if areas.size == 0:
        return empty()
    transform = _grid_transform(grid)
    to_lonlat = Transformer.from_crs(grid.rio.crs or "EPSG:4326", "EPSG:4326", always_xy=True)

    def _lonlat(xy: np.ndarray) -> np.ndarray:
        return np.column_stack(to_lonlat.transform(xy[:, 0], xy[:, 1]))

    parts: dict[int, list] = {}
    for geom, value in features.shapes(
        labels, mask=labels > 0, transform=transform, connectivity=8
    ):
        parts.setdefault(int(value), []).append(shape(geom))
    index = np.arange(1, areas.size + 1)
    flat = np.where(labels > 0, departure, 0.0)
    peak = ndimage.maximum_position(np.abs(flat), labels, index)
    mean = ndimage.mean(flat, labels, index)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = ndimage.maximum(np.where(labels > 0, np.abs(departure) / sigma, 0.0), labels, index)
    xs, ys = grid["x"].values, grid["y"].values
    out = []
    rows = zip(areas, peak, mean, np.atleast_1d(ratio), strict=True)
    for i, (area, (py, px), m, z) in enumerate(rows, start=1):
        outline = shapely.transform(unary_union(parts[i]), _lonlat)
        lon, lat = to_lonlat.transform(float(xs[px]), float(ys[py]))
        out.append(
            {
                "type": "Feature",
                "geometry": mapping(outline),
                "properties": {
                    "id": i,
                    "date": date,
                    "kind": kind,
                    "area_px": int(area),
                    f"max_{quantity}": round(float(departure[py, px]) * 1e3, 2),
                    f"mean_{quantity}": round(float(m) * 1e3, 2),
                    "max_sigma_ratio": round(float(z), 2),
                    "peak_lon": round(lon, 7),
                    "peak_lat": round(lat, 7),
                },
            }
        )
    return {"type": "FeatureCollection", "features": out}


def _grid_transform(grid: xr.Dataset) -> Affine:
    """Affine transform of the pixel corners from the regular pixel-centre coordinates."""
    xs, ys = grid["x"].values, grid["y"].values
    dx = float(xs[1] - xs[0]) if xs.size > 1 else 1.0
    dy = float(ys[1] - ys[0]) if ys.size > 1 else -1.0
    return Affine(dx, 0.0, float(xs[0]) - dx / 2, 0.0, dy, float(ys[0]) - dy / 2)
