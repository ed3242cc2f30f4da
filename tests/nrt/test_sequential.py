"""The exact sequential step: equal to re-inverting every pair; unwrapping errors of new
pairs corrected."""

import numpy as np
import pytest

from mtinsar.analysis.network import Network
from mtinsar.nrt.network import network_information
from mtinsar.nrt.sequential import corrected_history, sequential_update


@pytest.mark.parametrize(
    ("new", "weight"),
    [
        ([(8, 12), (10, 12), (11, 12), (3, 12)], None),
        ([(0, 12), (9, 12), (11, 12)], 2.5),  # date 0 (held fixed) among the paired dates
    ],
)
def test_sequential_update_is_exact_least_squares(new, weight):
    """Old pairs inverted, then the new date's pairs added sequentially == all pairs at once."""
    rng = np.random.default_rng(4)
    n, n_pix = 12, 50
    old = [(i, j) for i in range(n) for j in range(i + 1, min(n, i + 4))]
    truth = np.cumsum(rng.normal(0, 1, (n + 1, n_pix)), axis=0)
    truth -= truth[0]

    def phases(pairs):
        p = np.array(pairs)
        return truth[p[:, 1]] - truth[p[:, 0]] + rng.normal(0, 0.3, (len(pairs), n_pix))

    y_old, y_new = phases(old), phases(new)
    dates = np.datetime64("2020-01-01") + 12 * np.arange(n + 1).astype("timedelta64[D]")
    net_old = Network.from_pair_dates(*(dates[np.array(old)].T))
    net_all = Network.from_pair_dates(*(dates[np.array(old + new)].T))
    x_old = np.linalg.lstsq(net_old.design_matrix(), y_old, rcond=None)[0]
    x_all = np.linalg.lstsq(net_all.design_matrix(), np.vstack([y_old, y_new]), rcond=None)[0]
    history = np.vstack([np.zeros(n_pix), x_old])[:, :, None]  # (n, n_pix, 1)
    to_m = 1.0
    est = sequential_update(
        history,
        network_information(net_old),
        np.array([p[0] for p in new]),
        y_new[:, :, None],
        to_m,
        None if weight is None else np.full((len(new), n_pix, 1), weight),
        fix_cycles=False,
    )
    out = corrected_history(history, est)
    np.testing.assert_allclose(out[1:, :, 0], x_all[: n - 1], atol=1e-9)
    np.testing.assert_allclose(est.displacement[:, 0], x_all[n - 1], atol=1e-9)


def test_a_new_pair_off_by_whole_cycles_is_shifted_back():
    """With >= 3 pairs, one pair 2π·m away from the others is corrected by m cycles (and
    counted); with 2 pairs nothing can be told apart."""
    n, n_pix = 6, 4
    old = [(i, j) for i in range(n) for j in range(i + 1, min(n, i + 3))]
    info = network_information(
        Network.from_pair_dates(
            *(np.datetime64("2020-01-01") + 12 * np.array(old).T.astype("timedelta64[D]"))
        )
    )
    history = np.zeros((n, n_pix, 1))
    unw = np.full((3, n_pix, 1), 0.2)
    unw[1, 1] += 2 * np.pi
    unw[2, 2] -= 4 * np.pi
    est = sequential_update(history, info, np.array([3, 4, 5]), unw, 1.0)
    np.testing.assert_array_equal(est.cycles_corrected[:, 0], [0, 1, 1, 0])
    np.testing.assert_allclose(est.displacement[:, 0], 0.2, atol=1e-12)
    two = sequential_update(history, info, np.array([4, 5]), unw[1:], 1.0)
    assert two.cycles_corrected.sum() == 0
