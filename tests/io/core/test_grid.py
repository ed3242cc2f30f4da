"""Grid numerics: multilook, bbox windows, transforms and pixel centres."""

import numpy as np
import pytest
from affine import Affine

from mtinsar.io.core import grid

T = Affine(0.001, 0.0, 10.0, 0.0, -0.001, 45.0)  # north-up, 0.001 deg posting


def test_multilook_hand_computed_block_means_with_nan():
    a = np.arange(5 * 7, dtype=np.float32).reshape(5, 7)
    a[0, 1] = np.nan
    a[2:4, 2:4] = np.nan  # a whole block
    out = grid.multilook(a, 2)
    assert out.shape == (2, 3)  # row 4 and column 6 dropped
    assert out.dtype == np.float32
    assert out[0, 0] == pytest.approx((0 + 7 + 8) / 3)  # NaN left out of the mean
    assert out[0, 1] == pytest.approx((2 + 3 + 9 + 10) / 4)
    assert out[1, 0] == pytest.approx((14 + 15 + 21 + 22) / 4)
    assert np.isnan(out[1, 1])  # all-NaN block -> NaN, without a RuntimeWarning
    assert out[1, 2] == pytest.approx((18 + 19 + 25 + 26) / 4)


def test_multilook_leading_axes_and_dtypes():
    a = np.arange(2 * 4 * 6, dtype=np.float64).reshape(2, 4, 6)
    out = grid.multilook(a, 2)
    assert out.shape == (2, 2, 3)
    np.testing.assert_allclose(out[1], grid.multilook(a[1], 2))
    assert grid.multilook(np.ones((4, 4), dtype=np.int16), 2).dtype == np.float64


def test_multilook_factor_one_is_a_copy():
    a = np.ones((3, 3), dtype=np.float32)
    out = grid.multilook(a, 1)
    out[0, 0] = 5
    assert a[0, 0] == 1


@pytest.mark.parametrize("factor", [0, -1, 1.5, True])
def test_multilook_rejects_bad_factor(factor):
    with pytest.raises(ValueError, match="integer >= 1"):
        grid.multilook(np.ones((4, 4)), factor)


def test_multilook_rejects_factor_larger_than_grid():
    with pytest.raises(ValueError, match="larger than the grid"):
        grid.multilook(np.ones((4, 6)), 5)
    assert grid.multilook_shape((4, 6), 3) == (1, 2)


def test_bbox_window_on_pixel_edges_and_inside():
    # Edges exactly on pixel boundaries (with float noise) select exactly those pixels.
    w = grid.bbox_window(T, (12, 16), (10.003, 45.0 - 0.007, 10.009, 45.0 - 0.002))
    assert (w.row0, w.row1, w.col0, w.col1) == (2, 7, 3, 9)
    assert w.shape == (5, 6)
    # A bbox inside single pixels keeps every pixel it overlaps.
    w = grid.bbox_window(T, (12, 16), (10.0035, 44.9935, 10.0045, 44.9975))
    assert (w.row0, w.row1, w.col0, w.col1) == (2, 7, 3, 5)


def test_bbox_window_clips_and_detects_no_overlap():
    w = grid.bbox_window(T, (12, 16), (9.0, 44.0, 10.0025, 44.9995))
    assert (w.row0, w.row1, w.col0, w.col1) == (0, 12, 0, 3)
    assert grid.bbox_window(T, (12, 16), (11.0, 44.0, 12.0, 44.5)) is None
    assert grid.bbox_window(T, (12, 16), (10.016, 44.9, 10.02, 45.0)) is None  # touches edge
    with pytest.raises(ValueError, match="invalid bbox"):
        grid.bbox_window(T, (12, 16), (10.01, 44.9, 10.0, 45.0))


def test_extent_and_north_up_check():
    assert grid.extent(T, (12, 16)) == pytest.approx((10.0, 44.988, 10.016, 45.0))
    for bad in (Affine(0.001, 0, 10, 0, 0.001, 45), Affine(0.001, 0.0001, 10, 0, -0.001, 45)):
        with pytest.raises(ValueError, match="north-up"):
            grid.check_north_up(bad)


def test_window_transform_and_centres_after_crop_and_multilook():
    y, x = grid.pixel_centres(T, (12, 16))
    assert y[0] == pytest.approx(44.9995) and np.all(np.diff(y) < 0)
    assert x[0] == pytest.approx(10.0005)
    t2 = grid.window_transform(T, row0=2, col0=3, factor=2)
    assert tuple(t2)[:6] == pytest.approx((0.002, 0, 10.003, 0, -0.002, 44.998))
    y2, x2 = grid.pixel_centres(t2, (3, 4))
    # The centre of a block is the mean of the centres of its pixels.
    np.testing.assert_allclose(y2, y[2:8].reshape(3, 2).mean(axis=1))
    np.testing.assert_allclose(x2, x[3:11].reshape(4, 2).mean(axis=1))
    back = grid.transform_from_centres(y2, x2)
    np.testing.assert_allclose(tuple(back)[:6], tuple(t2)[:6], atol=1e-12)


def test_same_grid_tolerance():
    assert grid.same_grid(T, (12, 16), T, (12, 16))
    noisy = Affine(0.001 + 1e-12, 0, 10.0 + 1e-9, 0, -0.001, 45.0)
    assert grid.same_grid(T, (12, 16), noisy, (12, 16))
    shifted = Affine(0.001, 0, 10.0005, 0, -0.001, 45.0)
    assert not grid.same_grid(T, (12, 16), shifted, (12, 16))
    assert not grid.same_grid(T, (12, 16), T, (12, 15))
    coarser = Affine(0.0011, 0, 10.0, 0, -0.001, 45.0)
    assert not grid.same_grid(T, (12, 16), coarser, (12, 16))
