"""Selection common to every reader: pairs by name/date/span, area by bbox or polygon."""

import json
from datetime import date

import numpy as np
import pytest
import shapely
from affine import Affine
from pydantic import ValidationError
from pyproj import Transformer
from rasterio.crs import CRS

from mtinsar.config import IngestConfig
from mtinsar.errors import ConfigError, InputError
from mtinsar.io.core import grid as gridlib
from mtinsar.io.core.select import load_polygon, select_area, select_pairs

# ------------------------------------------------------------------ pairs

DATES = np.array(["2020-01-01", "2020-01-13", "2020-01-25", "2020-02-06", "2020-03-01"], "M8[D]")
IJ = [(0, 1), (0, 2), (1, 2), (1, 3), (2, 3), (2, 4), (3, 4)]
LABELS = [f"{str(DATES[i]).replace('-', '')}_{str(DATES[j]).replace('-', '')}" for i, j in IJ]
REF = np.array([DATES[i] for i, _ in IJ])
SEC = np.array([DATES[j] for _, j in IJ])


def kept(**options) -> list[str]:
    idx = select_pairs(LABELS, REF, SEC, IngestConfig(**options), "stack")
    return [LABELS[i] for i in idx]


def test_no_option_keeps_every_pair_in_order():
    assert kept() == LABELS


def test_include_exclude_dates_and_span_combine():
    assert kept(include_pairs=[LABELS[1], LABELS[3]]) == [LABELS[1], LABELS[3]]
    assert kept(exclude_pairs=[LABELS[0]]) == LABELS[1:]
    # Both dates of a pair inside [start, end], inclusive.
    assert kept(start_date=date(2020, 1, 13), end_date=date(2020, 2, 6)) == [
        "20200113_20200125",
        "20200113_20200206",
        "20200125_20200206",
    ]
    spans = (SEC - REF).astype(int)
    short = [lab for lab, s in zip(LABELS, spans, strict=True) if s <= 12]
    assert kept(max_temporal_baseline_days=12) == short == [LABELS[0], LABELS[2], LABELS[4]]
    assert kept(max_temporal_baseline_days=24, exclude_pairs=["20200101_20200113"]) == [
        lab for lab, s in zip(LABELS, spans, strict=True) if s <= 24 and lab != LABELS[0]
    ]


def test_unknown_pair_names_and_empty_selection_are_errors():
    with pytest.raises(InputError, match=r"ingest\.exclude_pairs: 20200101_20200201 not found"):
        kept(exclude_pairs=["20200101_20200201"])
    with pytest.raises(InputError, match=r"ingest\.include_pairs: nope not found in stack"):
        kept(include_pairs=["nope"])
    with pytest.raises(InputError, match="no pair .* left after selection.*start_date=2021"):
        kept(start_date=date(2021, 1, 1))


def test_config_rejects_reversed_date_range():
    with pytest.raises(ValidationError, match="start_date must not be after end_date"):
        IngestConfig(start_date=date(2020, 2, 1), end_date=date(2020, 1, 1))


# ------------------------------------------------------------------ area

UTM = CRS.from_epsg(32614)
T_UTM = Affine(80.0, 0.0, 468_000.0, 0.0, -80.0, 2_168_000.0)
SHAPE = (40, 50)


def centres_lonlat():
    y, x = gridlib.pixel_centres(T_UTM, SHAPE)
    xx, yy = np.meshgrid(x, y)
    lon, lat = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True).transform(xx, yy)
    return lon, lat


def test_no_selection_is_the_whole_grid():
    area = select_area(T_UTM, SHAPE, UTM, IngestConfig(), "stack")
    assert area.window == gridlib.PixelWindow(0, 40, 0, 50) and area.inside is None


def test_bbox_in_grid_crs_gives_the_exact_window():
    # Edges inside pixels (col 10.5 .. 30.5, row 5.5 .. 20.5): every overlapped pixel is kept.
    x0, x1 = T_UTM.c + 10.5 * 80, T_UTM.c + 30.5 * 80
    y1, y0 = T_UTM.f - 5.5 * 80, T_UTM.f - 20.5 * 80
    cfg = IngestConfig(bbox=(x0, y0, x1, y1), selection_crs="EPSG:32614")
    area = select_area(T_UTM, SHAPE, UTM, cfg, "stack")
    assert area.window == gridlib.PixelWindow(5, 21, 10, 31)
    cfg = IngestConfig(bbox=(x0, y0, x1, y1), selection_crs="EPSG:32614", multilook=4)
    assert select_area(T_UTM, SHAPE, UTM, cfg, "stack").window == gridlib.PixelWindow(5, 21, 10, 30)


def test_lonlat_bbox_on_utm_grid_covers_every_pixel_inside_and_little_more():
    lon, lat = centres_lonlat()
    bbox = (float(lon[0, 12]), float(lat[30, 0]), float(lon[0, 35]), float(lat[8, 0]))
    area = select_area(T_UTM, SHAPE, UTM, IngestConfig(bbox=bbox), "stack")
    inside = (lon >= bbox[0]) & (lon <= bbox[2]) & (lat >= bbox[1]) & (lat <= bbox[3])
    rows, cols = np.nonzero(inside)
    w = area.window
    assert w.row0 <= rows.min() and rows.max() < w.row1
    assert w.col0 <= cols.min() and cols.max() < w.col1
    # UTM grid north is not true north: the lon/lat box is a slightly rotated shape in UTM,
    # so its bounds exceed the pixels inside by at most a pixel or two on each side.
    assert w.row0 >= rows.min() - 2 and w.row1 <= rows.max() + 3
    assert w.col0 >= cols.min() - 2 and w.col1 <= cols.max() + 3


def test_polygon_in_another_crs_masks_pixels_by_centre():
    # A triangle given in Web Mercator through its GeoJSON 'crs' member.
    lon, lat = centres_lonlat()
    to_merc = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    corners = [(lon[5, 5], lat[5, 5]), (lon[5, 45], lat[5, 45]), (lon[35, 25], lat[35, 25])]
    ring = [list(to_merc.transform(a, b)) for a, b in corners]
    doc = {
        "type": "Feature",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3857"}},
        "geometry": {"type": "Polygon", "coordinates": [[*ring, ring[0]]]},
        "properties": {},
    }
    area = select_area(T_UTM, SHAPE, UTM, IngestConfig(polygon=json.dumps(doc)), "stack")
    # Truth: pixel centres taken to Web Mercator, tested against the straight-edged triangle.
    mx, my = to_merc.transform(lon, lat)
    truth = shapely.contains_xy(shapely.Polygon(ring), mx, my)
    w = area.window
    assert not truth[: w.row0].any() and not truth[w.row1 :].any()
    assert not truth[:, : w.col0].any() and not truth[:, w.col1 :].any()
    np.testing.assert_array_equal(area.inside, truth[w.row0 : w.row1, w.col0 : w.col1])
    assert 200 < area.inside.sum() < 0.5 * area.inside.size


def test_polygon_from_file_and_bbox_intersect(tmp_path):
    x_mid = T_UTM.c + 25 * 80
    square = shapely.box(T_UTM.c + 10 * 80, T_UTM.f - 30 * 80, T_UTM.c + 40 * 80, T_UTM.f - 10 * 80)
    path = tmp_path / "aoi.geojson"
    collection = {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "geometry": shapely.geometry.mapping(square)}],
    }
    path.write_text(json.dumps(collection))
    bbox = (x_mid, T_UTM.f - 40 * 80, T_UTM.c + 50 * 80, T_UTM.f)
    cfg = IngestConfig(polygon=str(path), bbox=bbox, selection_crs="EPSG:32614")
    area = select_area(T_UTM, SHAPE, UTM, cfg, "stack")
    assert area.window == gridlib.PixelWindow(10, 30, 25, 40)
    assert area.inside.all()


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("{not json", "not valid GeoJSON"),
        ('{"type": "Point", "coordinates": [1, 2]}', "holds Point, no Polygon"),
        ('{"type": "Topology"}', "not a GeoJSON Geometry, Feature"),
        ("/no/such/aoi.geojson", "cannot read GeoJSON file /no/such/aoi.geojson"),
    ],
)
def test_bad_polygons_name_the_problem(spec, match):
    with pytest.raises(ConfigError, match=match):
        load_polygon(spec, CRS.from_epsg(4326))


def test_selection_outside_the_data_names_the_extent():
    cfg = IngestConfig(bbox=(10.0, 45.0, 10.1, 45.1))
    with pytest.raises(InputError, match=r"does not intersect the data of stack.*lon -99\.3"):
        select_area(T_UTM, SHAPE, UTM, cfg, "stack")
    with pytest.raises(InputError, match="multilook 60 is larger than the grid of 40x50"):
        select_area(T_UTM, SHAPE, UTM, IngestConfig(multilook=60), "stack")
    with pytest.raises(ConfigError, match="selection_crs.*not a CRS"):
        select_area(T_UTM, SHAPE, UTM, IngestConfig(bbox=(0, 0, 1, 1), selection_crs="EPSG:0"), "s")
    with pytest.raises(InputError, match="have no CRS"):
        select_area(T_UTM, SHAPE, None, IngestConfig(bbox=(0, 0, 1, 1)), "stack")
