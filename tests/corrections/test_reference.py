import numpy as np
import pytest

from mtinsar.corrections.reference import auto_reference, reference_from_lonlat, reference_phase
from mtinsar.errors import InputError


def test_auto_reference_prefers_coherent_and_flat_area():
    ny, nx = 40, 50
    coh = np.full((ny, nx), 0.5)
    coh[5:20, 5:20] = 0.9  # coherent block A: moving (strong rate gradient)
    coh[22:37, 30:45] = 0.9  # coherent block B: stable (flat rate)
    rate = np.zeros((ny, nx))
    rate[5:20, 5:20] = np.linspace(-1, 1, 15)[None, :]
    valid = np.ones((ny, nx), bool)
    ref = auto_reference(coh, valid, rate, radius=3)
    assert 22 + 3 <= ref.y < 37 - 3 and 30 + 3 <= ref.x < 45 - 3
    assert ref.method == "auto"


def test_auto_reference_needs_a_fully_valid_window():
    valid = np.zeros((10, 10), bool)
    valid[::2] = True  # no 3x3 window fully valid
    with pytest.raises(InputError, match="--ref-lon"):
        auto_reference(np.ones((10, 10)), valid, np.zeros((10, 10)), radius=1)


def test_reference_from_lonlat_picks_nearest_and_checks_bounds():
    xs = -99.0 + 0.001 * np.arange(20)
    ys = 19.5 - 0.001 * np.arange(10)
    valid = np.ones((10, 20), bool)
    ref = reference_from_lonlat(-98.9952, 19.4931, xs, ys, valid)
    assert (ref.y, ref.x, ref.method) == (7, 5, "given")
    with pytest.raises(InputError, match="outside the data"):
        reference_from_lonlat(-98.0, 19.49, xs, ys, valid)
    valid[7, 5] = False
    with pytest.raises(InputError, match="no data"):
        reference_from_lonlat(-98.9952, 19.4931, xs, ys, valid)


def test_reference_phase_is_nan_median_and_refuses_empty_windows():
    w = np.arange(2 * 3 * 3, dtype=float).reshape(2, 3, 3)
    w[0, 0, 0] = np.nan
    np.testing.assert_allclose(reference_phase(w), [np.nanmedian(w[0]), 13.0])
    w[1] = np.nan
    with pytest.raises(InputError, match="1 interferogram"):
        reference_phase(w)
