"""Results of sbas jobs as a STAC catalog: one Collection, one Item per successful job.

    GET /stac                                   Catalog (root)
    GET /stac/collections/results               Collection (extent of the caller's items)
    GET /stac/collections/results/items         ItemCollection of the caller's readable results
    GET /stac/collections/results/items/{id}    one Item

Items are built from the result folder itself: the footprint from the velocity COG (its
bounds transformed to WGS84), the time span and processing facts from summary.json, and
assets pointing at the service's file route with absolute URLs. Nothing is fetched from
the network (no schema validation).
"""

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import pystac
import rasterio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from rasterio.warp import transform_bounds

from mtinsar.service.db import Job
from mtinsar.service.processes import COG, SBAS_OUTPUTS

CATALOG_ID, COLLECTION_ID = "mtinsar", "results"
GEOJSON = "application/geo+json"
OPENAPI_JSON = "application/vnd.oai.openapi+json;version=3.0"
_COG_ASSETS = ("velocity", "velocity_std", "temporal_coherence", "mask")
# summary.json facts copied into an Item's properties (prefixed "mtinsar:")
_FACTS = (
    "n_pairs",
    "n_dates",
    "n_pixels",
    "n_pixels_reliable",
    "reference",
    "velocity_mm_per_yr",
    "software",
)


def _day(text: Any, end: bool = False) -> dt.datetime | None:
    """Start (or with `end`, last second) of the UTC day of an ISO date; None if not one."""
    try:
        day = dt.datetime.fromisoformat(str(text)[:10]).replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    return day + dt.timedelta(hours=23, minutes=59, seconds=59) if end else day


def _footprint(cog: Path) -> tuple[dict[str, Any] | None, list[float] | None]:
    """GeoJSON polygon and bbox (WGS84 degrees) of a raster; (None, None) without one."""
    if not cog.is_file():  # a run configured without COGs: STAC allows a null geometry
        return None, None
    with rasterio.open(cog) as src:
        west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "Polygon", "coordinates": [ring]}, [west, south, east, north]


def build_item(job: Job, folder: Path, base: str) -> pystac.Item:
    """The STAC Item of an sbas job's result folder; `base` is the service URL ending in '/'."""
    summary = json.loads((folder / "summary.json").read_text())
    geometry, bbox = _footprint(folder / SBAS_OUTPUTS["velocity"][0])
    created = job.finished_at or job.created_at
    if created.tzinfo is None:  # SQLite hands back naive datetimes; they were written in UTC
        created = created.replace(tzinfo=dt.UTC)
    properties: dict[str, Any] = {f"mtinsar:{k}": summary[k] for k in _FACTS if k in summary}
    properties["created"] = created.isoformat().replace("+00:00", "Z")
    start = _day(summary.get("first_date"))
    end = _day(summary.get("last_date"), end=True)
    item = pystac.Item(
        id=job.id,
        geometry=geometry,
        bbox=bbox,
        datetime=None if start and end else created,  # STAC: a datetime or a range
        start_datetime=start if end else None,
        end_datetime=end if start else None,
        properties=properties,
        collection=COLLECTION_ID,
    )
    files = f"{base}jobs/{job.id}/files/"
    for name in _COG_ASSETS:
        file, _, title = SBAS_OUTPUTS[name]
        if (folder / file).is_file():
            item.add_asset(name, pystac.Asset(files + file, title, media_type=COG, roles=["data"]))
    for name, roles in (("timeseries", ["data"]), ("report", ["overview"])):
        file, media, title = SBAS_OUTPUTS[name]
        if (folder / file).exists():
            item.add_asset(name, pystac.Asset(files + file, title, media_type=media, roles=roles))
    return item


def _item_dict(item: pystac.Item, base: str) -> dict[str, Any]:
    doc = item.to_dict(include_self_link=False, transform_hrefs=False)
    doc["links"] = [
        _link("self", f"{base}stac/collections/{COLLECTION_ID}/items/{item.id}", GEOJSON),
        _link("parent", f"{base}stac/collections/{COLLECTION_ID}"),
        _link("collection", f"{base}stac/collections/{COLLECTION_ID}"),
        _link("root", f"{base}stac"),
        _link("via", f"{base}jobs/{item.id}", title="OGC API job status"),
    ]
    return doc


def _link(rel: str, href: str, type_: str = "application/json", title: str = "") -> dict:
    link = {"rel": rel, "href": href, "type": type_}
    return {**link, "title": title} if title else link


def catalog(base: str) -> dict[str, Any]:
    """The root Catalog document."""
    cat = pystac.Catalog(CATALOG_ID, "Results of mtinsar jobs", title="mtinsar")
    doc = cat.to_dict(include_self_link=False, transform_hrefs=False)
    doc["links"] = [
        _link("self", f"{base}stac"),
        _link("root", f"{base}stac"),
        _link("child", f"{base}stac/collections/{COLLECTION_ID}", title="sbas results"),
        _link(
            "service-desc", f"{base}openapi.json", "application/vnd.oai.openapi+json;version=3.0"
        ),
    ]
    return doc


def collection(items: list[pystac.Item], base: str) -> dict[str, Any]:
    """The results Collection; its extent covers `items` (the whole globe when none)."""
    boxes = [i.bbox for i in items if i.bbox]
    bbox = [-180.0, -90.0, 180.0, 90.0]
    if boxes:
        bbox = [
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        ]
    starts = [i.common_metadata.start_datetime or i.datetime for i in items]
    ends = [i.common_metadata.end_datetime or i.datetime for i in items]
    interval = [min(starts, default=None), max(ends, default=None)]
    extent = pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([interval]))
    coll = pystac.Collection(
        COLLECTION_ID,
        "LOS velocity, its uncertainty, coherence, mask and time series of sbas jobs",
        extent,
        title="sbas results",
        license="other",
    )
    doc = coll.to_dict(include_self_link=False, transform_hrefs=False)
    doc["links"] = [
        _link("self", f"{base}stac/collections/{COLLECTION_ID}"),
        _link("root", f"{base}stac"),
        _link("parent", f"{base}stac"),
        _link("items", f"{base}stac/collections/{COLLECTION_ID}/items", GEOJSON),
    ]
    return doc


def make_router(
    readable_results: Callable[..., list[tuple[Job, Path]]],
    readable_result: Callable[..., tuple[Job, Path]],
) -> APIRouter:
    """The STAC routes; the dependencies give the (job, result folder) the caller may read.

    `readable_result` receives the path parameter `job_id` and raises a 404 for a job the
    caller may not read or that has no sbas result.
    """
    router = APIRouter(prefix="/stac", tags=["STAC"])
    Results = Annotated[list[tuple[Job, Path]], Depends(readable_results)]
    Result = Annotated[tuple[Job, Path], Depends(readable_result)]

    @router.get("", summary="STAC root catalog")
    def root(request: Request) -> dict[str, Any]:
        return catalog(str(request.base_url))

    @router.get("/collections/results", summary="STAC collection of sbas results")
    def results_collection(request: Request, found: Results) -> dict[str, Any]:
        base = str(request.base_url)
        return collection([build_item(job, folder, base) for job, folder in found], base)

    @router.get(
        "/collections/results/items",
        summary="STAC items of the sbas results the caller may read",
        response_class=JSONResponse,
        responses={200: {"content": {GEOJSON: {}}}},
    )
    def items(request: Request, found: Results) -> JSONResponse:
        base = str(request.base_url)
        features = [_item_dict(build_item(job, folder, base), base) for job, folder in found]
        doc = {
            "type": "FeatureCollection",
            "features": features,
            "links": [
                _link("self", f"{base}stac/collections/{COLLECTION_ID}/items", GEOJSON),
                _link("root", f"{base}stac"),
                _link("collection", f"{base}stac/collections/{COLLECTION_ID}"),
            ],
        }
        return JSONResponse(doc, media_type=GEOJSON)

    @router.get(
        "/collections/results/items/{job_id}",
        summary="STAC item of one sbas result",
        response_class=JSONResponse,
        responses={200: {"content": {GEOJSON: {}}}},
    )
    def item(job_id: str, request: Request, found: Result) -> JSONResponse:
        base = str(request.base_url)
        job, folder = found
        return JSONResponse(_item_dict(build_item(job, folder, base), base), media_type=GEOJSON)

    return router
