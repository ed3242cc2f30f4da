"""Map data of a job's result: layer info, XYZ tiles, pixel time series, pair network.

Routes (all under `/jobs/{job_id}/map`, built by `make_router`):

    GET info                          layers, lon/lat bounds, native CRS, dates, colour range
    GET tiles/{layer}/{z}/{x}/{y}.png Web-Mercator PNG tiles of a layer's COG (rio-tiler)
    GET timeseries?lon=&lat=          one pixel's displacement [mm], model fit [mm], velocity
    GET network                       dates, perpendicular baselines and pairs (kept/dropped)
    GET segments                      an infra job's segments (GeoJSON, lon/lat) and risk

An infra job's result holds segments, not rasters: its `info` says so (`kind` "infra") and
names the sbas job it analysed (`result_job`), whose layers the map shows beneath them.

Values are stored in metres and m/yr (DESIGN §3) and shown here in mm and mm/yr. A tile
that does not touch the grid is answered 200 with a fully transparent PNG, so a map client
never sees an error for the empty ocean around a result; an invalid tile index is a 422.

`mount_webmap` serves the single-page web map (`webmap/`) at `/` and `/static/`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import xarray as xr
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pyproj import CRS, Transformer
from rasterio.warp import transform_bounds
from rio_tiler.colormap import cmap as colormaps
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader
from rio_tiler.utils import render

from mtinsar.analysis.model import fit_model
from mtinsar.config import ModelConfig
from mtinsar.errors import MtinsarError
from mtinsar.results import versions

log = logging.getLogger(__name__)

WEBMAP_DIR = Path(__file__).with_name("webmap")
TILE_SIZE = 256
MAX_ZOOM = 24
WGS84 = "EPSG:4326"


@dataclass(frozen=True)
class Layer:
    """How a result layer is shown: scale from stored units, units shown, colours, range."""

    scale: float
    units: str
    colormap: str
    default_range: tuple[float, float] | None  # None: from the data (velocity)
    masked: bool  # unreliable pixels (mask != 1) transparent


LAYERS: dict[str, Layer] = {
    "velocity": Layer(1000.0, "mm/yr", "rdbu", None, True),
    "velocity_std": Layer(1000.0, "mm/yr", "viridis", (0.0, 10.0), True),
    "temporal_coherence": Layer(1.0, "", "viridis", (0.0, 1.0), False),
    "mask": Layer(1.0, "", "viridis", (0.0, 1.0), False),
}
#: Colour maps a client may ask for (diverging ones read red = negative = moving away).
COLORMAPS = ("rdbu", "rdbu_r", "rdylbu", "coolwarm", "viridis", "plasma", "magma", "cividis")

_EMPTY_TILE: bytes | None = None


def make_router(result_dir: Callable[..., Path]) -> APIRouter:
    """The map-data routes; `result_dir` is a dependency giving the job's result folder.

    `result_dir` receives the path parameter `job_id` (and whatever else it declares, e.g.
    credentials) and returns the folder or raises HTTPException (404 for an unknown job).
    """
    router = APIRouter(prefix="/jobs/{job_id}/map", tags=["map"])
    folder_dep = Depends(result_dir)

    @router.get("/info", summary="Layers, bounds, dates and colour range of a job's result")
    def info(job_id: str, folder: Path = folder_dep) -> dict[str, Any]:
        return map_info(folder)

    @router.get(
        "/tiles/{layer}/{z}/{x}/{y}.png",
        summary="Web-Mercator XYZ PNG tile of a result layer",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}},
    )
    def tile(
        job_id: str,
        layer: str,
        z: int,
        x: int,
        y: int,
        folder: Path = folder_dep,
        vmin: Annotated[float | None, Query(description="Low end [layer units, mm/yr]")] = None,
        vmax: Annotated[float | None, Query(description="High end [layer units, mm/yr]")] = None,
        cmap: Annotated[str | None, Query(description=f"One of {', '.join(COLORMAPS)}")] = None,
    ) -> Response:
        png = render_tile(folder, layer, z, x, y, vmin, vmax, cmap)
        return Response(
            png, media_type="image/png", headers={"Cache-Control": "private, max-age=60"}
        )

    @router.get("/timeseries", summary="Displacement time series of the pixel at lon/lat")
    def timeseries(
        job_id: str,
        lon: Annotated[float, Query(ge=-180, le=180, description="Longitude, WGS84 [deg]")],
        lat: Annotated[float, Query(ge=-90, le=90, description="Latitude, WGS84 [deg]")],
        folder: Path = folder_dep,
    ) -> dict[str, Any]:
        return pixel_timeseries(folder, lon, lat)

    @router.get("/network", summary="Dates and interferometric pairs for a network plot")
    def network(job_id: str, folder: Path = folder_dep) -> dict[str, Any]:
        return pair_network(folder)

    @router.get(
        "/segments",
        summary="An infra job's segments with their metrics and risk class (GeoJSON, lon/lat)",
        responses={200: {"content": {"application/geo+json": {}}}},
    )
    def segments(job_id: str, folder: Path = folder_dep) -> JSONResponse:
        return JSONResponse(segment_layer(folder), media_type="application/geo+json")

    return router


def mount_webmap(app: FastAPI, path: str = "/") -> None:
    """Serve the web map page at `path` and its scripts and styles under `/static/`."""
    index = WEBMAP_DIR / "index.html"

    @app.get(path, include_in_schema=False)
    def webmap_page() -> FileResponse:
        return FileResponse(index, media_type="text/html")

    app.mount("/static", StaticFiles(directory=WEBMAP_DIR), name="static")


# --------------------------------------------------------------------------- reading


def _open(folder: Path) -> xr.Dataset:
    try:
        return versions.open_result(folder)
    except MtinsarError as exc:
        raise HTTPException(404, f"the job has no readable result: {exc}") from exc


def _grid_crs(ds: xr.Dataset) -> CRS:
    crs = ds.rio.crs
    if crs is None:
        raise HTTPException(500, "the result has no CRS (spatial_ref); it cannot be mapped")
    return CRS.from_user_input(crs.to_wkt())


def _crs_name(crs: CRS) -> str:
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_string()


def _iso(dates: Any) -> list[str]:
    return [str(d)[:10] for d in np.asarray(dates, dtype="datetime64[D]")]


def _mm(values: np.ndarray, scale: float = 1000.0) -> list[float | None]:
    return [None if not np.isfinite(v) else round(float(v) * scale, 3) for v in values]


def _scalar(value: Any, scale: float = 1.0) -> float | None:
    v = float(value)
    return round(v * scale, 4) if math.isfinite(v) else None


def map_info(folder: Path) -> dict[str, Any]:
    """What the map needs to start: layers, bounds (lon/lat), CRS, dates, colour range.

    For an infra job: `kind` "infra", the analysed sbas job (`result_job`), the segments'
    lon/lat bounds and risk counts; the map shows that job's layers beneath the segments.
    """
    summary = infra_summary(folder)
    if summary is not None:
        return _infra_info(folder, summary)
    ds = _open(folder)
    crs = _grid_crs(ds)
    left, bottom, right, top = ds.rio.bounds()
    west, south, east, north = transform_bounds(
        crs, WGS84, left, bottom, right, top, densify_pts=21
    )
    vrange = velocity_range(ds)
    layers = []
    for name, spec in LAYERS.items():
        if name in ds:
            rng = spec.default_range if spec.default_range is not None else vrange
            layers.append(
                {"name": name, "units": spec.units, "colormap": spec.colormap, "range": list(rng)}
            )
    ref = {k: ds.attrs.get(f"reference_{k}") for k in ("lon", "lat", "y", "x", "date")}
    return {
        "kind": "timeseries",
        "layers": layers,
        "bounds": [west, south, east, north],
        "center": [(west + east) / 2, (south + north) / 2],
        "crs": _crs_name(crs),
        "native_bounds": [left, bottom, right, top],
        "shape": [int(ds.sizes["y"]), int(ds.sizes["x"])],
        "dates": _iso(ds["time"].values),
        "velocity_range": list(vrange),
        "units": {"velocity": "mm/yr", "displacement": "mm", "temporal_coherence": "0..1"},
        "reference": ref,
        "version": versions.current(folder) if (folder / versions.STORE).is_dir() else None,
        "colormaps": list(COLORMAPS),
        "tile_size": TILE_SIZE,
    }


def velocity_range(ds: xr.Dataset) -> tuple[float, float]:
    """Symmetric colour range [mm/yr] from the 2nd/98th percentiles of reliable pixels."""
    vel = np.asarray(ds["velocity"].values, dtype=float) * 1000.0
    ok = np.isfinite(vel)
    if "mask" in ds:
        ok &= np.asarray(ds["mask"].values).astype(bool)
    if not ok.any():
        return (-10.0, 10.0)
    p2, p98 = np.percentile(vel[ok], [2, 98])
    half = _nice(max(abs(p2), abs(p98), 1.0))
    return (-half, half)


def _nice(value: float) -> float:
    """`value` rounded up to 1, 2, 2.5 or 5 times a power of ten."""
    power = 10 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= value)


# --------------------------------------------------------------------------- tiles


def layer_path(folder: Path, layer: str) -> Path:
    """The COG of `layer` for the result's current version.

    Version 0 (`mtinsar run`) has its COGs in the folder; versions added by `update` hold
    only Zarr, so their COGs are written once into `.map-cache/vN/` and reused.
    """
    number = versions.current(folder) if (folder / versions.STORE).is_dir() else 0
    if number == 0:
        path = folder / f"{layer}.tif"
        if path.is_file():
            return path
    own = folder / "versions" / f"v{number}" / f"{layer}.tif"
    if own.is_file():
        return own
    cached = folder / ".map-cache" / f"v{number}" / f"{layer}.tif"
    if not cached.is_file():
        _write_cached_cog(_open(folder)[layer], cached)
    return cached


def _write_cached_cog(data: xr.DataArray, path: Path) -> None:
    from mtinsar.results.writer import write_cog

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tif")
    try:
        write_cog(data.load(), tmp)
        os.replace(tmp, path)  # concurrent requests may race: the last complete file wins
    finally:
        tmp.unlink(missing_ok=True)


def render_tile(
    folder: Path,
    layer: str,
    z: int,
    x: int,
    y: int,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str | None = None,
) -> bytes:
    """PNG bytes of the XYZ tile (z, x, y) of `layer`, coloured between vmin and vmax.

    vmin/vmax are in the layer's display units (mm/yr for velocity); no-data pixels, and
    unreliable ones for velocity layers, are transparent.
    """
    spec = LAYERS.get(layer)
    if spec is None:
        raise HTTPException(404, f"unknown layer {layer!r}; layers: {', '.join(LAYERS)}")
    if not 0 <= z <= MAX_ZOOM or not (0 <= x < 2**z and 0 <= y < 2**z):
        raise HTTPException(422, f"tile {z}/{x}/{y} does not exist (0 <= x, y < 2**z, z <= 24)")
    name = cmap or spec.colormap
    if name not in COLORMAPS:
        raise HTTPException(422, f"unknown colormap {name!r}; use one of {', '.join(COLORMAPS)}")
    lo, hi = _range(folder, spec, vmin, vmax)
    values = _read_tile(layer_path(folder, layer), z, x, y)
    if values is None:
        return empty_tile()
    data, valid = values
    if spec.masked and (mask_values := _read_tile(layer_path(folder, "mask"), z, x, y)):
        valid &= mask_values[1] & (mask_values[0] == 1)
    scaled = data * spec.scale
    index = np.clip(np.round((scaled - lo) / (hi - lo) * 255), 0, 255)
    lut = _lut(name)
    rgba = lut[np.where(valid, index, 0).astype(np.uint8)]
    alpha = np.where(valid, 255, 0).astype(np.uint8)
    return render(np.moveaxis(rgba[..., :3], -1, 0), mask=alpha, img_format="PNG")


def _range(
    folder: Path, spec: Layer, vmin: float | None, vmax: float | None
) -> tuple[float, float]:
    if vmin is None or vmax is None:
        lo, hi = spec.default_range or velocity_range(_open(folder))
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    if not (math.isfinite(vmin) and math.isfinite(vmax)) or vmax <= vmin:
        raise HTTPException(422, f"vmin ({vmin}) must be below vmax ({vmax}), both finite")
    return vmin, vmax


def _read_tile(path: Path, z: int, x: int, y: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(values, valid) of the tile resampled by nearest neighbour, or None if outside."""
    with Reader(str(path)) as src:
        try:
            img = src.tile(x, y, z, tilesize=TILE_SIZE, resampling_method="nearest")
        except TileOutsideBounds:
            return None
    band = np.ma.asarray(img.array[0]).astype(float)
    values = np.asarray(band.filled(np.nan))
    valid = ~np.ma.getmaskarray(band) & np.isfinite(values)
    return values, valid


def _lut(name: str) -> np.ndarray:
    table = colormaps.get(name)
    return np.array([table[i] for i in range(256)], dtype=np.uint8)


def empty_tile() -> bytes:
    """A fully transparent tile (PNG)."""
    global _EMPTY_TILE
    if _EMPTY_TILE is None:
        zeros = np.zeros((3, TILE_SIZE, TILE_SIZE), dtype=np.uint8)
        _EMPTY_TILE = render(zeros, mask=zeros[0], img_format="PNG")
    return _EMPTY_TILE


# --------------------------------------------------------------------------- time series


def pixel_timeseries(folder: Path, lon: float, lat: float) -> dict[str, Any]:
    """The pixel under (lon, lat) WGS84: displacement and model fit [mm], velocity [mm/yr]."""
    ds = _open(folder)
    crs = _grid_crs(ds)
    gx, gy = Transformer.from_crs(WGS84, crs, always_xy=True).transform(lon, lat)
    col_f, row_f = ~ds.rio.transform() * (gx, gy)
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    if not (math.isfinite(col_f) and math.isfinite(row_f)) or not (
        0 <= col_f < nx and 0 <= row_f < ny
    ):
        west, south, east, north = transform_bounds(crs, WGS84, *ds.rio.bounds(), densify_pts=21)
        raise HTTPException(
            404,
            f"lon {lon:.5f}, lat {lat:.5f} is outside the result grid (lon {west:.5f}..{east:.5f}, "
            f"lat {south:.5f}..{north:.5f}); click inside the coloured area",
        )
    row, col = int(row_f), int(col_f)
    pixel = ds.isel(y=row, x=col).load()
    disp = np.asarray(pixel["displacement"].values, dtype=float)
    if not np.isfinite(disp).any():
        raise HTTPException(
            404, f"the pixel at row {row}, col {col} (lon {lon:.5f}, lat {lat:.5f}) has no data"
        )
    dates = pixel["time"].values
    model = _model_fit(ds, folder, dates, disp)
    px_lon, px_lat = Transformer.from_crs(crs, WGS84, always_xy=True).transform(
        float(pixel["x"]), float(pixel["y"])
    )
    reliable = bool(pixel["mask"].values) if "mask" in pixel else None
    return {
        "lon": lon,
        "lat": lat,
        "pixel": {
            "row": row,
            "col": col,
            "lon": px_lon,
            "lat": px_lat,
            "x": float(pixel["x"]),
            "y": float(pixel["y"]),
            "crs": _crs_name(crs),
        },
        "dates": _iso(dates),
        "displacement_mm": _mm(disp),
        "model_mm": _mm(model),
        "velocity_mm_per_yr": _scalar(pixel["velocity"].values, 1000.0),
        "velocity_std_mm_per_yr": _scalar(pixel["velocity_std"].values, 1000.0)
        if "velocity_std" in pixel
        else None,
        "temporal_coherence": _scalar(pixel["temporal_coherence"].values)
        if "temporal_coherence" in pixel
        else None,
        "reliable": reliable,
        "reference": {k: ds.attrs.get(f"reference_{k}") for k in ("lon", "lat", "date")},
        "units": {"displacement": "mm", "model": "mm", "velocity": "mm/yr"},
    }


def _model_fit(ds: xr.Dataset, folder: Path, dates: np.ndarray, disp: np.ndarray) -> np.ndarray:
    """The time-series model of the run's config refitted to one pixel [m] at `dates`.

    The result stores the velocity but not every model term, so the pixel is refitted with
    the same model (same design matrix, free offsets over network gaps for NSBAS), which
    reproduces the run's fit.
    """
    config = json.loads(ds.attrs.get("config", "{}")) if "config" in ds.attrs else {}
    try:
        model_config = ModelConfig.model_validate(config.get("model", {}))
    except ValueError:
        model_config = ModelConfig()
    method = config.get("inversion", {}).get("method", "sbas")
    gaps = None if method == "sbas" else _gaps(folder, dates)
    try:
        fit = fit_model(dates, disp[:, None], model_config, gaps=gaps)
    except MtinsarError:
        fit = fit_model(dates, disp[:, None], ModelConfig(), gaps=gaps)
    return fit.predict()[:, 0]


def _gaps(folder: Path, dates: np.ndarray) -> np.ndarray | None:
    """Intervals between consecutive dates that no kept pair spans, or None if unknown."""
    pairs = _read_pairs(folder)
    if pairs is None:
        return None
    kept = pairs[pairs["kept"]]
    d = np.asarray(dates, dtype="datetime64[D]")
    ref = kept["reference"].to_numpy(dtype="datetime64[D]")
    sec = kept["secondary"].to_numpy(dtype="datetime64[D]")
    covered = (ref[None, :] <= d[:-1, None]) & (sec[None, :] >= d[1:, None])
    return ~covered.any(axis=1)


# --------------------------------------------------------------------------- network


def _read_pairs(folder: Path) -> pd.DataFrame | None:
    """pairs.csv as reference, secondary (datetime64), kept, reason, mean_coherence."""
    path = folder / "pairs.csv"
    if not path.is_file():
        return None
    table = pd.read_csv(path, dtype={"pair": str})
    parts = table["pair"].str.split("_", expand=True)
    out = pd.DataFrame(
        {
            "reference": pd.to_datetime(parts[0], format="%Y%m%d"),
            "secondary": pd.to_datetime(parts[1], format="%Y%m%d"),
            "kept": table["keep"].astype(bool) if "keep" in table else True,
        }
    )
    out["reason"] = (
        table["reason"].where(table["reason"].notna(), None) if "reason" in table else None
    )
    if "mean_coherence" in table:
        out["mean_coherence"] = table["mean_coherence"]
    return out


def pair_network(folder: Path) -> dict[str, Any]:
    """Dates (with perpendicular baselines [m] where known) and pairs, kept or dropped."""
    ds = _open(folder)
    dates = _iso(ds["time"].values)
    bperp = _mm(np.asarray(ds["bperp"].values, dtype=float), 1.0) if "bperp" in ds else None
    pairs = _read_pairs(folder)
    items: list[dict[str, Any]] = []
    if pairs is not None:
        for row in pairs.itertuples(index=False):
            coh = getattr(row, "mean_coherence", None)
            items.append(
                {
                    "reference": str(row.reference.date()),
                    "secondary": str(row.secondary.date()),
                    "kept": bool(row.kept),
                    "reason": row.reason if isinstance(row.reason, str) and row.reason else None,
                    "mean_coherence": _scalar(coh) if coh is not None else None,
                }
            )
    pair_dates = {p["reference"] for p in items} | {p["secondary"] for p in items}
    return {
        "dates": dates,
        "bperp_m": bperp,
        "other_dates": sorted(pair_dates - set(dates)),
        "pairs": items,
        "n_kept": sum(p["kept"] for p in items),
        "n_dropped": sum(not p["kept"] for p in items),
    }


# --------------------------------------------------------------------------- infra segments

SEGMENTS_FILE = "segments.geojson"  # written in EPSG:4326 by mtinsar.infra.report


def infra_summary(folder: Path) -> dict[str, Any] | None:
    """The summary of an infra result folder, or None when `folder` holds another result."""
    try:
        summary = json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    ours = isinstance(summary, dict) and summary.get("kind") == "infra"
    return summary if ours and (folder / SEGMENTS_FILE).is_file() else None


def segment_layer(folder: Path) -> dict[str, Any]:
    """The segments of an infra result as a GeoJSON FeatureCollection in lon/lat (WGS84).

    Each feature's id is its `segment_id`; properties are the infra metrics as written by
    `mtinsar infra` (velocities in mm/yr, differential settlement in mm/yr per 100 m,
    `risk_class` -1..3 and its label `risk`), with NaN given as null. Foreign members:
    `result_job` (the sbas job analysed, null if unknown), `risk_labels`, `at_risk_from`.
    """
    from mtinsar.infra.metrics import AT_RISK_FROM, RISK_LABELS

    summary = infra_summary(folder)
    if summary is None:
        raise HTTPException(
            404,
            "this job's result is not an infrastructure analysis, so it has no segments; "
            "run the 'infra' process on it and open that job",
        )
    doc = json.loads((folder / SEGMENTS_FILE).read_text())
    crs = (doc.get("crs") or {}).get("properties", {}).get("name", "")
    if crs and not crs.endswith(("CRS84", "EPSG::4326", "EPSG:4326")):
        raise HTTPException(500, f"{SEGMENTS_FILE} is in {crs}, not lon/lat; re-run the job")
    features = [
        {
            "type": "Feature",
            "id": feature["properties"]["segment_id"],
            "geometry": feature["geometry"],
            "properties": {k: _json_value(v) for k, v in feature["properties"].items()},
        }
        for feature in doc.get("features", [])
    ]
    return {
        "type": "FeatureCollection",
        "result_job": summary.get("job"),
        "risk_labels": {str(k): v for k, v in RISK_LABELS.items()},
        "at_risk_from": AT_RISK_FROM,
        "units": {
            "v_median_mm_yr": "mm/yr",
            "v_extreme_mm_yr": "mm/yr",
            "diff_settlement_mm_yr_100m": "mm/yr per 100 m",
            "angular_distortion": "rad",
            "displacement_mm": "mm",
        },
        "features": features,
    }


def _infra_info(folder: Path, summary: dict[str, Any]) -> dict[str, Any]:
    layer = segment_layer(folder)
    coords = [
        xy for feature in layer["features"] for xy in _positions(feature["geometry"]["coordinates"])
    ]
    lon = [float(c[0]) for c in coords] or [0.0]
    lat = [float(c[1]) for c in coords] or [0.0]
    return {
        "kind": "infra",
        "result_job": layer["result_job"],
        "bounds": [min(lon), min(lat), max(lon), max(lat)],
        "n_segments": len(layer["features"]),
        "risk_counts": summary.get("risk_counts", {}),
        "segments_at_risk": summary.get("segments_at_risk", []),
        "first_date": summary.get("first_date"),
        "last_date": summary.get("last_date"),
    }


def _positions(coords: Any) -> list[list[float]]:
    """The positions of a GeoJSON coordinates array of any depth."""
    if coords and isinstance(coords[0], (int, float)):
        return [coords]
    return [p for part in coords for p in _positions(part)]


def _json_value(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


__all__ = [
    "LAYERS",
    "empty_tile",
    "infra_summary",
    "layer_path",
    "make_router",
    "map_info",
    "mount_webmap",
    "pair_network",
    "pixel_timeseries",
    "render_tile",
    "segment_layer",
]
