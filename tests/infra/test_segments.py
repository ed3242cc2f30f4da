"""Reading infrastructure files, cutting lines into segments, and finding their pixels."""

import geopandas as gpd
import numpy as np
import pytest
import shapely
from pyproj import CRS, Geod

from mtinsar.errors import ConfigError, InputError
from mtinsar.infra.segments import assign_pixels, make_segments, metric_crs, read_features

# A 3.1 km line with a bend near Mexico City (lon, lat).
_LINE = shapely.LineString([(-99.20, 19.50), (-99.19, 19.51), (-99.175, 19.512)])
_POLY = shapely.box(-99.185, 19.495, -99.183, 19.497)


def _geodesic_length(line: shapely.LineString) -> float:
    return float(Geod(ellps="WGS84").geometry_length(line))


def _write(path, geoms, crs="EPSG:4326", driver=None):
    gdf = gpd.GeoDataFrame({"name": [f"f{i}" for i in range(len(geoms))]}, geometry=geoms, crs=crs)
    gdf.to_file(path, driver=driver)
    return path


@pytest.mark.parametrize("name", ["lines.geojson", "lines.gpkg", "lines.shp"])
def test_every_format_gives_segments_adding_up_to_the_geodesic_length(tmp_path, name):
    # a Shapefile holds one geometry type: the line only there
    path = _write(tmp_path / name, [_LINE] if name.endswith(".shp") else [_LINE, _POLY])
    feats = read_features(path)
    segs = make_segments(feats, 100.0, 20.0)
    lines = segs[segs["kind"] == "line"]
    truth = _geodesic_length(_LINE)
    # UTM scale error is below 0.04 % near the central meridian
    assert lines["length_m"].sum() == pytest.approx(truth, rel=4e-4)
    np.testing.assert_allclose(lines.geometry.length, lines["length_m"], rtol=1e-9)
    assert lines["length_m"].between(50.0, 150.0).all()
    # segments follow each other along the line
    np.testing.assert_allclose(
        lines["chainage_start_m"].to_numpy()[1:], lines["chainage_end_m"].to_numpy()[:-1]
    )
    assert len(lines) == round(truth / 100.0)
    # the polygon stays whole; its footprint grows by the buffer
    poly = segs[segs["kind"] == "polygon"]
    assert len(poly) == (0 if name.endswith(".shp") else 1)
    if len(poly):
        assert poly["footprint"].iloc[0].contains(poly.geometry.iloc[0])
    assert metric_crs(feats) == CRS.from_epsg(32614)  # UTM zone 14N holds lon -99.2


def test_any_crs_of_the_file_gives_the_same_segments(tmp_path):
    wgs = read_features(_write(tmp_path / "a.geojson", [_LINE]))
    utm = gpd.GeoSeries([_LINE], crs="EPSG:4326").to_crs("EPSG:32614")
    merc = gpd.GeoSeries([_LINE], crs="EPSG:4326").to_crs("EPSG:3857")
    a = make_segments(wgs, 100.0, 20.0)
    for series, name in ((utm, "b.gpkg"), (merc, "c.shp")):
        b = make_segments(read_features(_write(tmp_path / name, list(series), series.crs)), 100, 20)
        assert b.crs == a.crs
        np.testing.assert_allclose(b["length_m"], a["length_m"], rtol=1e-6)
        dist = shapely.hausdorff_distance(a.geometry.to_numpy(), b.geometry.to_numpy())
        assert dist.max() < 0.01  # metres


def test_short_last_piece_is_merged():
    feats = gpd.GeoDataFrame(
        {"feature": ["0"]}, geometry=[shapely.LineString([(0, 0), (1030, 0)])], crs="EPSG:32614"
    )
    segs = make_segments(feats, 200.0, 10.0, crs=CRS.from_epsg(32614))
    np.testing.assert_allclose(segs["length_m"], [200, 200, 200, 200, 230])
    segs = make_segments(feats, 300.0, 10.0, crs=CRS.from_epsg(32614))
    np.testing.assert_allclose(segs["length_m"], [300, 300, 430])


def test_pixels_are_the_cells_touching_the_buffer_with_their_chainage():
    """Membership equals a brute-force cell-by-cell test; chainage is the distance along."""
    crs = CRS.from_epsg(32614)
    line = shapely.LineString([(500_130, 2_100_020), (501_070, 2_100_460)])
    feats = gpd.GeoDataFrame({"feature": ["0"]}, geometry=[line], crs=crs)
    segs = make_segments(feats, 100.0, 25.0, crs=crs)
    x = 500_000 + 40.0 * np.arange(30) + 20.0  # 40 m pixels
    y = 2_100_600 - 40.0 * np.arange(16) - 20.0  # north-up: y decreasing
    got = assign_pixels(segs, x, y, crs)
    cells = shapely.box(x[None, :] - 20, y[:, None] - 20, x[None, :] + 20, y[:, None] + 20).ravel()
    expected = set()
    for k, fp in enumerate(segs["footprint"]):
        for idx in np.flatnonzero(shapely.intersects(fp, cells)):
            expected.add((k, idx // len(x), idx % len(x)))
    assert set(zip(got.segment, got.row, got.col, strict=True)) == expected
    # chainage = projection on the straight line, also beyond its ends (no clamping)
    a, b = np.asarray(line.coords)
    u = (b - a) / np.hypot(*(b - a))
    along = (x[got.col] - a[0]) * u[0] + (y[got.row] - a[1]) * u[1]
    assert along.min() < 0  # some cells lie before the first vertex
    np.testing.assert_allclose(got.chainage, along, atol=1e-6)
    np.testing.assert_allclose(got.east, x[got.col], atol=1e-6)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(InputError, match=r"nowhere\.geojson not found.*GeoJSON, GeoPackage"):
        read_features(tmp_path / "nowhere.geojson")


def test_unreadable_file_names_it(tmp_path):
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json")
    with pytest.raises(InputError, match=r"cannot read .*bad\.geojson"):
        read_features(bad)


def test_points_only_are_refused(tmp_path):
    path = _write(tmp_path / "pts.geojson", [shapely.Point(-99.2, 19.5)])
    with pytest.raises(InputError, match=r"pts\.geojson has no line or polygon.*Point"):
        read_features(path)


def test_unknown_crs_is_refused_unless_given(tmp_path):
    path = _write(tmp_path / "noprj.shp", [_LINE])
    (tmp_path / "noprj.prj").unlink()
    with pytest.raises(InputError, match=r"noprj\.shp declares no CRS.*infra\.lines_crs"):
        read_features(path)
    feats = read_features(path, assume_crs="EPSG:4326")
    assert make_segments(feats, 100, 20)["length_m"].sum() == pytest.approx(
        _geodesic_length(_LINE), rel=4e-4
    )
    with pytest.raises(ConfigError, match="lines_crs.*not a CRS"):
        read_features(path, assume_crs="EPSG:999999")
