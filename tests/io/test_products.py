"""Format detection and dispatch: every simulated product layout is read by its reader."""

import numpy as np
import pytest

from mtinsar.config import IngestConfig
from mtinsar.errors import InputError
from mtinsar.io.products import FORMATS, detect_format, read_products
from mtinsar.simulate import WRITERS, SceneConfig, simulate_scene


@pytest.fixture(scope="module")
def scene():
    return simulate_scene(SceneConfig(ny=24, nx=30, n_dates=8, seed=2))


@pytest.fixture(scope="module")
def layouts(scene, tmp_path_factory):
    root = tmp_path_factory.mktemp("layouts")
    for name, write in WRITERS.items():
        write(scene, root / name)
    return root


def test_every_format_has_a_writer():
    assert set(WRITERS) == set(FORMATS)


@pytest.mark.parametrize("name", list(WRITERS))
def test_each_layout_is_detected_and_read_with_the_same_pixels(layouts, scene, name):
    assert detect_format(layouts / name) == name
    stack = read_products(layouts / name)
    assert stack.sizes["pair"] == len(scene.pairs)
    expected = scene.to_ifgstack()
    # the phase of every format, in the project's convention, equals the simulated one up to
    # each pair's constant (ARIA re-references frames; compare pair-wise differences)
    unw, ref = stack["unw"].values, expected["unw"].values
    both = np.isfinite(unw) & np.isfinite(ref)
    offset = np.nanmedian(np.where(both, unw - ref, np.nan), axis=(1, 2))[:, None, None]
    np.testing.assert_allclose(np.where(both, unw - offset, 0), np.where(both, ref, 0), atol=1e-4)


def test_forced_format_that_does_not_match_fails_clearly(layouts):
    with pytest.raises(InputError, match=str(layouts / "licsar")):
        read_products(layouts / "licsar", IngestConfig(format="hyp3"))


def test_nothing_to_read(tmp_path):
    with pytest.raises(InputError, match="no such file or folder"):
        read_products(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no supported products found.*--format"):
        read_products(tmp_path / "empty")


def test_reference_lonlat_on_a_projected_grid(layouts, scene):
    """HyP3 grids are UTM: a lon/lat reference is converted to the grid and back."""
    from pyproj import Transformer

    from mtinsar.config import RunConfig
    from mtinsar.workflows.pipeline import run_sbas

    stack = read_products(layouts / "hyp3")
    assert not stack.rio.crs.is_geographic
    row, col = scene.truth.attrs["ref_y"], scene.truth.attrs["ref_x"]
    to_lonlat = Transformer.from_crs(stack.rio.crs, "EPSG:4326", always_xy=True)
    lon, lat = to_lonlat.transform(float(stack["x"][col]), float(stack["y"][row]))
    cfg = RunConfig.model_validate({"reference": {"lon": lon, "lat": lat, "radius": 1}})
    result = run_sbas(stack, cfg).result
    assert (result.attrs["reference_y"], result.attrs["reference_x"]) == (row, col)
    assert result.attrs["reference_lon"] == pytest.approx(lon, abs=1e-9)
    assert result.attrs["reference_lat"] == pytest.approx(lat, abs=1e-9)


def test_licsar_polygon_and_projected_bbox(layouts):
    """A polygon keeps the pixels whose centre it contains; a UTM bbox the pixels it covers."""
    import json

    import shapely
    from pyproj import Transformer

    full = read_products(layouts / "licsar")
    x, y = full["x"].values, full["y"].values
    d = 0.27 * (x[1] - x[0])  # vertices between pixel centres: no centre on an edge
    tri = shapely.Polygon([(x[2] - d, y[3] + d), (x[20] + d, y[3] + d), (x[2] - d, y[18] - d)])
    geojson = json.dumps(shapely.geometry.mapping(tri))
    cut = read_products(layouts / "licsar", IngestConfig(polygon=geojson))
    unw = cut["unw"].values[0]
    ref = full["unw"].sel(y=cut["y"], x=cut["x"]).values[0]
    xx, yy = np.meshgrid(cut["x"].values, cut["y"].values)
    inside = shapely.contains_xy(tri, xx, yy)
    assert inside.sum() > 50 and np.isnan(unw[~inside]).all()
    np.testing.assert_array_equal(unw[inside], ref[inside])
    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32614", always_xy=True)
    (x0, x1), (y0, y1) = to_utm.transform([x[5], x[15]], [y[15], y[5]])
    box = IngestConfig(bbox=(x0, y0, x1, y1), selection_crs="EPSG:32614")
    sub = read_products(layouts / "licsar", box)
    assert 0 < sub.sizes["x"] < full.sizes["x"] and 0 < sub.sizes["y"] < full.sizes["y"]
    assert np.isfinite(sub["unw"].values).any()
