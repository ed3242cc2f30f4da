"""Find products in a STAC API or a static STAC catalog (https://stacspec.org).

`search` returns the hrefs of the matching items' product assets, ready for the readers
(`mtinsar.io.products.read_products`) or `mtinsar ingest`. Matching, as the STAC API item
search defines it: the item's bbox intersects `bbox` (lon/lat, EPSG:4326), its time (its
``datetime``, or ``start_datetime``..``end_datetime`` for an interferogram) intersects
``start``..``end`` (inclusive days), its collection is one of `collections`, and its track
(``sat:relative_orbit``, STAC "sat" extension) equals `track`. A STAC API (pystac-client)
filters bbox/time/collections on the server; every filter is applied again here, so servers
that ignore one (or the track query) still give exact results.

`search_items` keeps each item's id and time interval (its pair label, `Found.pair`); a
`Query` is a saved search that `mtinsar watch --stac` polls.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import pystac

from mtinsar.errors import InputError
from mtinsar.sources import remote

logger = logging.getLogger(__name__)

TRACK_KEY = "sat:relative_orbit"


#: Open ends of a search for "any time".
EPOCH, FOREVER = date(1970, 1, 1), date(2999, 12, 31)


@dataclass(frozen=True)
class Found:
    """One matching item: its id, product href, and time interval (UTC)."""

    id: str
    href: str
    start: datetime
    end: datetime

    @property
    def pair(self) -> str:
        """'YYYYMMDD_YYYYMMDD' of the item's interval: the pair label the readers use."""
        return f"{self.start:%Y%m%d}_{self.end:%Y%m%d}"


@dataclass(frozen=True)
class Query:
    """A saved STAC search (what `mtinsar watch --stac` polls): catalog or API, bbox
    [lon_min, lat_min, lon_max, lat_max] (degrees), track, collections and asset key."""

    catalog: str
    bbox: tuple[float, float, float, float]
    track: int | None = None
    collections: tuple[str, ...] | None = None
    asset: str | None = None

    def items(self, start: date | str = EPOCH, end: date | str = FOREVER) -> list[Found]:
        """The matching items whose time meets `start`..`end` (default: any time)."""
        return search_items(
            self.catalog, self.bbox, start, end, self.track, self.collections, self.asset
        )

    def __str__(self) -> str:
        return f"STAC {self.catalog}"


def search(
    catalog_or_api_url: str | Path,
    bbox: Sequence[float],
    start: date | str,
    end: date | str,
    track: int | None = None,
    collections: Sequence[str] | None = None,
    asset: str | None = None,
) -> list[str]:
    """Hrefs of the products matching bbox [lon_min, lat_min, lon_max, lat_max] (degrees),
    dates `start`..`end` (inclusive), `track` and `collections`, ordered by time then id.

    `catalog_or_api_url`: a STAC API root URL, or a static catalog's JSON file (a local path
    or a URL ending in ``.json``). Each item gives the href of its asset `asset` if given,
    else of its first asset with role "data", else of its first asset; items without it are
    skipped with a warning. Raises InputError naming the catalog for an unreachable or
    invalid catalog and for bad arguments.
    """
    found = search_items(catalog_or_api_url, bbox, start, end, track, collections, asset)
    return [item.href for item in found]


def search_items(
    catalog_or_api_url: str | Path,
    bbox: Sequence[float],
    start: date | str,
    end: date | str,
    track: int | None = None,
    collections: Sequence[str] | None = None,
    asset: str | None = None,
) -> list[Found]:
    """`search`, keeping each item's id and time interval with its href."""
    source = str(catalog_or_api_url)
    box = _check_bbox(bbox)
    t0, t1 = _day_start(start, "start"), _day_end(end, "end")
    if t0 > t1:
        raise InputError(f"dates: start {start} is after end {end}; swap them")
    wanted = set(collections) if collections else None
    if _is_static(source):
        items: Iterable[pystac.Item] = _static_items(source)
    else:
        items = _api_items(source, box, t0, t1, wanted)
    found = [
        item
        for item in items
        if _bbox_hits(item, box)
        and _time_hits(item, t0, t1)
        and (wanted is None or item.collection_id in wanted)
        and (track is None or _track(item) == int(track))
    ]
    found.sort(key=lambda item: (_interval(item)[0], item.id))
    out = []
    for item in found:
        href = _asset_href(item, asset)
        if href is None:
            logger.warning("%s: STAC item %s has no asset %r; skipped", source, item.id, asset)
        else:
            out.append(Found(item.id, href, *_interval(item)))
    logger.info("%s: %d product(s) found", source, len(out))
    return out


# --------------------------------------------------------------------------- arguments


def _check_bbox(bbox: Sequence[float]) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(v) for v in bbox)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 4 or not (values[0] < values[2] and values[1] < values[3]):
        raise InputError(
            f"bbox {bbox!r}: expected lon_min, lat_min, lon_max, lat_max in degrees with min < max"
        )
    return values


def _as_date(value: date | str, name: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise InputError(f"{name} date {value!r}: expected YYYY-MM-DD") from exc


def _day_start(value: date | str, name: str) -> datetime:
    return datetime.combine(_as_date(value, name), time.min, tzinfo=UTC)


def _day_end(value: date | str, name: str) -> datetime:
    return datetime.combine(_as_date(value, name), time.max, tzinfo=UTC)


# --------------------------------------------------------------------------- sources


def _is_static(source: str) -> bool:
    return not remote.is_remote(source) or source.lower().endswith(".json")


def _static_items(source: str) -> list[pystac.Item]:
    """Every item below a static catalog (sub-catalogs and collections included)."""

    def load() -> list[pystac.Item]:
        catalog = pystac.read_file(source)
        if isinstance(catalog, pystac.Item):
            return [catalog]
        if not isinstance(catalog, pystac.Catalog):
            raise InputError(f"{source}: not a STAC catalog, collection or item")
        return list(catalog.get_items(recursive=True))

    if not remote.is_remote(source) and not Path(source).is_file():
        raise InputError(f"{source}: no such STAC catalog file; give the path of catalog.json")
    try:
        return remote.call_with_retries(load, source, "reading the STAC catalog")
    except (pystac.STACError, pystac.STACTypeError, ValueError, KeyError) as exc:
        raise InputError(f"{source}: not a valid STAC catalog ({exc}); check the file") from exc


def _api_items(
    url: str,
    box: tuple[float, float, float, float],
    t0: datetime,
    t1: datetime,
    collections: set[str] | None,
) -> list[pystac.Item]:
    """Items of a STAC API item search (all pages)."""
    from pystac_client import Client
    from pystac_client.exceptions import APIError

    def run() -> list[pystac.Item]:
        try:
            client = Client.open(url, timeout=remote.current().timeout_s)
            result = client.search(
                bbox=list(box),
                datetime=[t0, t1],
                collections=sorted(collections) if collections else None,
            )
            return list(result.items())
        except APIError as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, OSError) or "Connection" in type(cause).__name__:
                raise ConnectionError(str(exc)) from exc
            raise InputError(f"{url}: the STAC API refused the search ({exc})") from exc

    try:
        return remote.call_with_retries(run, url, "searching the STAC API")
    except NotImplementedError as exc:
        raise InputError(
            f"{url}: not a STAC API with item search ({exc}); for a static catalog give the "
            "URL of its catalog.json"
        ) from exc


# --------------------------------------------------------------------------- matching


def _bbox_hits(item: pystac.Item, box: tuple[float, float, float, float]) -> bool:
    if item.bbox is None:
        return False
    b = item.bbox
    xmin, ymin, xmax, ymax = (b[0], b[1], b[3], b[4]) if len(b) == 6 else b
    return xmin <= box[2] and box[0] <= xmax and ymin <= box[3] and box[1] <= ymax


def _interval(item: pystac.Item) -> tuple[datetime, datetime]:
    props = item.properties
    if props.get("start_datetime") and props.get("end_datetime"):
        first = pystac.utils.str_to_datetime(props["start_datetime"])
        last = pystac.utils.str_to_datetime(props["end_datetime"])
    elif item.datetime is not None:
        first = last = item.datetime
    else:
        raise InputError(f"STAC item {item.id}: no datetime nor start/end_datetime")
    return _utc(first), _utc(last)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _time_hits(item: pystac.Item, t0: datetime, t1: datetime) -> bool:
    first, last = _interval(item)
    return first <= t1 and t0 <= last


def _track(item: pystac.Item) -> int | None:
    value: Any = item.properties.get(TRACK_KEY)
    return int(value) if value is not None else None


def _asset_href(item: pystac.Item, key: str | None) -> str | None:
    assets = item.assets
    if key is not None:
        chosen = assets.get(key)
    else:
        data = [a for a in assets.values() if "data" in (a.roles or [])]
        chosen = data[0] if data else next(iter(assets.values()), None)
    if chosen is None:
        return None
    return chosen.get_absolute_href() or chosen.href
