"""Common-grid logic: alignment, intersection/union, windowed placement, reprojection, stitching."""

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform

from mtinsar.errors import InputError
from mtinsar.io.core import grid as gridlib
from mtinsar.io.core import mosaic

WGS84 = CRS.from_epsg(4326)
P = 0.001


def geo_grid(col0: int, row0: int, rows: int, cols: int, crs: CRS = WGS84) -> mosaic.Grid:
    """Grid on the lattice with origin (10.0, 45.0) and pixel P, starting at (row0, col0)."""
    return mosaic.Grid(Affine(P, 0, 10.0 + col0 * P, 0, -P, 45.0 - row0 * P), (rows, cols), crs)


def ramp(grid: mosaic.Grid) -> np.ndarray:
    """A field linear in x and y, evaluated at the grid's pixel centres."""
    y, x = grid.centres()
    return (3.0 * (x[None, :] - 10.0) / P + 7.0 * (45.0 - y[:, None]) / P).astype(np.float32)


def reader(array: np.ndarray, log: list | None = None) -> mosaic.WindowReader:
    def read(win: gridlib.PixelWindow) -> np.ndarray:
        if log is not None:
            log.append(win)
        return array[win.slices()].astype(np.float32)

    return read


def test_grid_from_centres_round_trip_and_errors():
    g = geo_grid(3, 5, 20, 30)
    y, x = g.centres()
    back = mosaic.Grid.from_centres(y, x, WGS84)
    assert back.shape == (20, 30)
    assert tuple(back.transform)[:6] == pytest.approx(tuple(g.transform)[:6], abs=1e-12)
    assert back.bounds == pytest.approx((10.003, 45.0 - 0.025, 10.033, 44.995), abs=1e-12)
    with pytest.raises(ValueError, match="decreasing"):
        mosaic.Grid.from_centres(y[::-1], x, WGS84)
    uneven = x.copy()
    uneven[5] += P / 3
    with pytest.raises(ValueError, match="evenly spaced"):
        mosaic.Grid.from_centres(y, uneven, WGS84)


def test_alignment_needs_same_lattice():
    a = geo_grid(0, 0, 10, 10)
    assert mosaic.is_aligned(a, geo_grid(7, -3, 5, 5))
    half = mosaic.Grid(Affine(P, 0, 10.0 + P / 2, 0, -P, 45.0), (10, 10), WGS84)
    assert not mosaic.is_aligned(a, half)
    coarser = mosaic.Grid(Affine(2 * P, 0, 10.0, 0, -2 * P, 45.0), (10, 10), WGS84)
    assert not mosaic.is_aligned(a, coarser)
    assert not mosaic.is_aligned(a, geo_grid(0, 0, 10, 10, CRS.from_epsg(32632)))


def test_intersection_and_union_of_footprints():
    a, b = geo_grid(0, 0, 30, 40), geo_grid(10, 5, 40, 20)  # b: cols 10..30, rows 5..45
    inter = mosaic.common_grid([[a], [b]], ["a", "b"], "intersection")
    assert inter.shape == (25, 20)
    assert mosaic.overlap_windows(inter, a)[1] == gridlib.PixelWindow(5, 30, 10, 30)
    union = mosaic.common_grid([[a], [b]], ["a", "b"], "union")
    assert union.shape == (45, 40)
    # Frames of one group count together: the group covers the union of its frames.
    north, south = geo_grid(0, 0, 20, 40), geo_grid(0, 15, 20, 40)
    grid = mosaic.common_grid([[north, south], [a]], ["ns", "a"], "intersection")
    assert grid.shape == (30, 40)


def test_disjoint_products_cannot_be_aligned():
    a, b, far = geo_grid(0, 0, 10, 10), geo_grid(5, 5, 10, 10), geo_grid(100, 0, 10, 10)
    with pytest.raises(InputError, match="grids cannot be aligned: far.nc .*does not overlap"):
        mosaic.common_grid([[a], [b], [far]], ["a.nc", "b.nc", "far.nc"])
    dst = mosaic.common_grid([[a], [b]], ["a", "b"])
    with pytest.raises(InputError, match="far.nc: does not cover any of the selected area"):
        mosaic.require_overlap(dst, [[a], [far]], ["a.nc", "far.nc"])


def test_aligned_placement_is_exact_and_reads_only_the_overlap():
    src = geo_grid(0, 0, 30, 40)
    dst = geo_grid(25, 10, 15, 30)  # sticks out east of src
    data = ramp(src)
    log: list = []
    out = mosaic.warp_onto(dst, src, reader(data, log))
    assert log == [gridlib.PixelWindow(10, 25, 25, 40)]  # only the overlapping pixels
    np.testing.assert_array_equal(out[:, :15], data[10:25, 25:40])
    assert np.isnan(out[:, 15:]).all()
    np.testing.assert_array_equal(out[:, :15], ramp(dst)[:, :15])


def test_misaligned_grid_is_resampled_bilinearly():
    src = geo_grid(0, 0, 40, 40)
    shifted = mosaic.Grid(Affine(P, 0, 10.0 + 5.5 * P, 0, -P, 45.0 - 4.5 * P), (20, 20), WGS84)
    out = mosaic.warp_onto(shifted, src, reader(ramp(src)))
    # Bilinear interpolation reproduces a linear field exactly (float32 rounding aside).
    np.testing.assert_allclose(out, ramp(shifted), atol=1e-3)


def test_other_crs_is_reprojected():
    """A UTM product put on a lon/lat grid: values follow the field at each lon/lat centre."""
    utm = CRS.from_epsg(32632)
    src = mosaic.Grid(Affine(30.0, 0, 500_000.0, 0, -30.0, 4_985_000.0), (200, 200), utm)
    ys, xs = src.centres()
    field = ((xs[None, :] - 500_000.0) * 0.01 + (4_985_000.0 - ys[:, None]) * 0.02).astype(
        np.float32
    )
    dst = mosaic.Grid(Affine(0.0005, 0, 9.01, 0, -0.0005, 45.0), (60, 60), WGS84)
    out = mosaic.warp_onto(dst, src, reader(field))
    lat, lon = dst.centres()
    lon2, lat2 = np.meshgrid(lon, lat)
    east, north = transform(WGS84, utm, lon2.ravel(), lat2.ravel())
    expected = (np.array(east) - 500_000.0) * 0.01 + (4_985_000.0 - np.array(north)) * 0.02
    inside = np.isfinite(out.ravel())
    assert inside.mean() > 0.9
    # GDAL's approximate transformer may place a point up to 1/8 pixel off; the field changes
    # by 0.6 per source pixel, so 0.1 is that bound (a wrong CRS or axis would be off by 10s).
    np.testing.assert_allclose(out.ravel()[inside], expected[inside], atol=0.1)


def test_stitch_first_frame_wins_and_cycles_are_aligned():
    base = np.full((6, 4), np.nan, dtype=np.float32)
    base[:4] = np.arange(16, dtype=np.float32).reshape(4, 4)
    other = np.full((6, 4), np.nan, dtype=np.float32)
    truth_south = np.arange(8, 24, dtype=np.float32).reshape(4, 4)  # rows 2..5, same field
    other[2:] = truth_south + np.float32(3 * 2 * np.pi)
    other[2, 0] += 0.3  # noise does not move the median
    assert mosaic.cycle_offset(base, other) == 3
    out = mosaic.stitch([base, other], align_cycles=True)
    np.testing.assert_array_equal(out[:4], base[:4])  # the first frame is kept in the overlap
    np.testing.assert_allclose(out[4:], truth_south[2:], atol=1e-5)
    plain = mosaic.stitch([base, other])
    np.testing.assert_allclose(plain[4:], truth_south[2:] + 6 * np.pi, atol=1e-5)
    assert mosaic.cycle_offset(base, np.full_like(base, np.nan)) == 0


def test_multilook_nearest_takes_block_centres():
    labels = np.arange(7 * 9).reshape(7, 9)
    out = mosaic.multilook_nearest(labels, 3)
    assert out.shape == (2, 3)
    np.testing.assert_array_equal(out, labels[1:6:3, 1:9:3])


def test_los_vector_from_isce_angles():
    """Ascending Sentinel-1: heading -12 deg, so the LOS azimuth is 90 - heading = 102 deg."""
    inc = np.array([[31.0, 46.0]])
    los = mosaic.los_from_angles(inc, np.full_like(inc, 102.0))
    s = np.sin(np.deg2rad(inc))
    heading = np.deg2rad(-12.0)
    np.testing.assert_allclose(los["los_e"], -s * np.cos(heading), atol=1e-6)
    np.testing.assert_allclose(los["los_n"], s * np.sin(heading), atol=1e-6)
    np.testing.assert_allclose(los["los_u"], np.cos(np.deg2rad(inc)), atol=1e-6)
    geo = mosaic.stack_geometry(
        np.full((4, 4), 40.0), np.full((4, 4), 102.0), np.full((4, 4), 10.0), 2
    )
    norm = np.sqrt(geo["los_e"] ** 2 + geo["los_n"] ** 2 + geo["los_u"] ** 2)
    np.testing.assert_allclose(norm, 1.0, atol=1e-6)
    assert geo["incidence"].shape == (2, 2) and geo["height"][0, 0] == 10.0


def test_stack_dataset_coordinates_follow_the_grid():
    grid = geo_grid(2, 3, 4, 5)
    labels = ["20200101_20200113", "20200101_20200125"]
    ds = mosaic.stack_dataset(
        grid,
        labels,
        {"unw": np.zeros((2, 4, 5), np.float32), "bperp": np.zeros(2, np.float32)},
        {"height": np.zeros((4, 5), np.float32)},
        {"wavelength": 0.05},
    )
    y, x = grid.centres()
    np.testing.assert_array_equal(ds["x"], x)
    np.testing.assert_array_equal(ds["y"], y)
    assert str(ds["sec_date"].values[1])[:10] == "2020-01-25"
    assert ds.rio.crs == WGS84


# --------------------------------------------------------------------------- lazy layers


def source(grid: mosaic.Grid, data: np.ndarray, opened: list, reads: list) -> mosaic.Source:
    """A frame whose openings and window reads are logged as (grid, window)."""

    @contextmanager
    def open_() -> Iterator[mosaic.WindowReader]:
        opened.append(grid)
        log: list = []
        yield reader(data, log)
        reads.extend((grid, win) for win in log)

    return mosaic.Source(grid, open_)


def frames_of_two_pairs(opened: list, reads: list) -> tuple[mosaic.Grid, list]:
    """dst (40 x 30) and two pairs: a north and a south frame overlapping by 6 rows, the
    south one off by 2 (pair 0) and -1 (pair 1) cycles; pair 1 also has a misaligned frame."""
    dst = geo_grid(0, 0, 40, 30)
    north, south = geo_grid(0, 0, 23, 30), geo_grid(0, 17, 23, 30)
    pairs = []
    for k, cycles in enumerate((2, -1)):
        field = ramp(dst) * np.float32(0.01 * (k + 1))
        south_data = field[17:40] + np.float32(cycles * 2 * np.pi)
        frames = [source(north, field[:23], opened, reads),
                  source(south, south_data, opened, reads)]  # fmt: skip
        pairs.append(frames)
    return dst, pairs


def eager(pairs: list, dst: mosaic.Grid, inside: np.ndarray, factor: int) -> np.ndarray:
    """The whole-grid path: warp every frame onto dst, stitch, mask, multilook."""
    out = []
    for frames in pairs:
        pieces = []
        for f in frames:
            with f.open() as read:
                pieces.append(mosaic.warp_onto(dst, f.grid, read, f.resampling))
        values = mosaic.stitch(pieces, align_cycles=True)
        values[~inside] = np.nan
        out.append(gridlib.multilook(values, factor))
    return np.stack(out)


def test_lazy_layer_equals_the_whole_grid_stitch():
    opened: list = []
    dst, pairs = frames_of_two_pairs(opened, [])
    inside = np.ones(dst.shape, dtype=bool)
    inside[:3, :5] = False
    lazy = mosaic.lazy_layer(pairs, dst, factor=2, chunk_size=7, align_cycles=True, inside=inside)
    assert lazy.shape == (2, 20, 15) and lazy.chunks[1:] == ((7, 7, 6), (7, 7, 1))
    assert not opened  # nothing is read until computed
    expected = eager(pairs, dst, inside, 2)
    np.testing.assert_array_equal(lazy.compute(), expected)
    # The cycle shifts are really applied: each pair is the continuous field again.
    for k in range(2):
        truth = ramp(dst) * np.float32(0.01 * (k + 1))
        truth[~inside] = np.nan
        np.testing.assert_allclose(expected[k], gridlib.multilook(truth, 2), atol=1e-5)


def test_layer_chunks_follow_the_file_layout():
    assert mosaic.is_striped((1, 800), 800) and mosaic.is_striped((16, 16), 16)
    assert not mosaic.is_striped((256, 256), 800)
    # Tiles, or rows no wider than a block: square blocks.
    assert mosaic.layer_chunks((600, 800), 256, striped=False) == (256, 256)
    assert mosaic.layer_chunks((600, 200), 256, striped=True) == (256, 256)
    # Strips: whole-width bands of at most chunk_size² pixels, of equal height.
    assert mosaic.layer_chunks((600, 800), 256, striped=True) == (75, 800)  # 8 bands
    assert mosaic.layer_chunks((1500, 2000), 256, striped=True) == (32, 2000)
    assert mosaic.layer_chunks((10, 800), 256, striped=True) == (10, 800)
    assert mosaic.layer_chunks((5, 70000), 256, striped=True) == (1, 70000)


def test_one_block_reads_only_its_window():
    opened: list = []
    reads: list = []
    dst, pairs = frames_of_two_pairs(opened, reads)
    lazy = mosaic.lazy_layer(pairs, dst, chunk_size=8)  # no cycle alignment: no overlap reads
    block = lazy[:, :8, 8:16].compute()
    # Only the northern frames lie under rows 0-7; each read is the block's 8 x 8 window.
    assert {g.transform.f for g in opened} == {45.0}
    assert [win for _, win in reads] == [gridlib.PixelWindow(0, 8, 8, 16)] * 2
    np.testing.assert_array_equal(
        block, eager(pairs, dst, np.ones(dst.shape, bool), 1)[:, :8, 8:16]
    )


def test_lazy_layer_resamples_misaligned_frames_block_by_block():
    src = geo_grid(0, 0, 40, 40)
    dst = mosaic.Grid(Affine(P, 0, 10.0 + 5.5 * P, 0, -P, 45.0 - 4.5 * P), (30, 30), WGS84)
    opened: list = []
    reads: list = []
    lazy = mosaic.lazy_layer([[source(src, ramp(src), opened, reads)]], dst, chunk_size=10)
    whole = mosaic.warp_onto(dst, src, reader(ramp(src)))
    np.testing.assert_allclose(lazy.compute()[0], whole, rtol=0, atol=1e-4)
    np.testing.assert_allclose(whole[:-1, :-1], ramp(dst)[:-1, :-1], atol=1e-3)
    # Each of the 9 blocks read only its own footprint: 10 px, 1 px it straddles and the
    # 2 px resampling margin each side (15 px), not the 40 x 40 source.
    assert len(reads) == 9 and all(w.height <= 15 and w.width <= 15 for _, w in reads)
