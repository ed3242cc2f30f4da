import numpy as np
import pytest

from mtinsar.analysis import envelope
from mtinsar.analysis.network import Network
from mtinsar.simulate.scene import licsar_network


def _network(pairs, n_dates=None):
    ref, sec = np.array(sorted(pairs)).T
    n = n_dates or int(sec.max()) + 1
    dates = np.datetime64("2021-03-01") + 12 * np.arange(n)
    return Network.from_pair_dates(dates[ref], dates[sec])


def _licsar(n_dates=60):
    dates = np.datetime64("2020-01-01") + 12 * np.arange(n_dates)
    return _network(licsar_network(dates, seed=1))


def _lstsq(net, unw, w):
    """Weighted least squares per pixel, the slow reference (NaN where rank deficient)."""
    a = net.design_matrix()
    out = np.full((net.n_dates - 1, unw.shape[1]), np.nan)
    for p in range(unw.shape[1]):
        ok = np.isfinite(unw[:, p]) & (w[:, p] > 0)
        sw = np.sqrt(w[ok, p])
        if np.linalg.matrix_rank(a[ok]) == a.shape[1]:
            out[:, p] = np.linalg.lstsq(a[ok] * sw[:, None], unw[ok, p] * sw, rcond=None)[0]
    return out


def _pixels(net, n_pix, seed, drop=0.08):
    rng = np.random.default_rng(seed)
    truth = np.cumsum(rng.normal(0, 2, (net.n_dates, n_pix)), axis=0)
    unw = truth[net.sec] - truth[net.ref] + rng.normal(0, 0.5, (net.n_pairs, n_pix))
    unw[rng.random(unw.shape) < drop] = np.nan
    w = rng.uniform(0.2, 50.0, unw.shape)
    return unw, w


def test_envelope_holds_every_pair_and_beats_dense_on_a_licsar_network():
    net = _licsar()
    order = envelope.envelope_order(net)
    both = (order.ref >= 0) & (order.sec >= 0)
    lo = np.minimum(order.ref, order.sec)[both]
    hi = np.maximum(order.ref, order.sec)[both]
    assert (order.first[hi] <= lo).all()
    m = net.n_dates - 1
    assert order.size < 0.35 * m * (m + 1) / 2


def test_weighted_solution_equals_least_squares_per_pixel():
    net = _licsar()
    unw, w = _pixels(net, 300, seed=2)
    got = envelope.solve(unw, w, np.arange(300), envelope.envelope_order(net))
    want = _lstsq(net, unw, w)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = np.isfinite(want).all(axis=0)
    assert ok.sum() > 250
    np.testing.assert_allclose(got[:, ok], want[:, ok], rtol=0, atol=1e-9)


def test_reordered_dates_give_the_same_solution():
    # a path through the dates in the order 1 8 2 7 3 6 4 5: date order has a wide envelope,
    # reverse Cuthill-McKee a narrow one
    path = [1, 8, 2, 7, 3, 6, 4, 5]
    pairs = [(0, 1), (0, 8)] + [tuple(sorted(p)) for p in zip(path[:-1], path[1:], strict=True)]
    pairs += [(1, 2), (6, 7)]
    net = _network(pairs)
    order = envelope.envelope_order(net)
    assert not (order.position == np.arange(net.n_dates - 1)).all()
    unw, w = _pixels(net, 50, seed=3, drop=0.0)
    got = envelope.solve(unw, w, np.arange(50), order)
    np.testing.assert_allclose(got, _lstsq(net, unw, w), rtol=0, atol=1e-9)


def test_split_graph_gives_nan_and_leaves_other_pixels_alone():
    net = _licsar(30)
    unw, w = _pixels(net, 40, seed=4, drop=0.0)
    order = envelope.envelope_order(net)
    before = envelope.solve(unw, w, np.arange(40), order)
    spans = (net.ref < 10) & (net.sec >= 10)  # no pair across 10: dates 10.. float free
    unw[np.ix_(spans, [5, 17])] = np.nan
    w[np.ix_(spans, [23])] = 0.0
    after = envelope.solve(unw, w, np.arange(40), order)
    assert np.isnan(after[:, [5, 17, 23]]).all()
    keep = np.setdiff1d(np.arange(40), [5, 17, 23])
    np.testing.assert_array_equal(after[:, keep], before[:, keep])


@pytest.mark.parametrize("weighted", [True, False])
def test_column_subset_and_threads_do_not_change_the_answer(weighted):
    net = _licsar()
    unw, w = _pixels(net, 9000, seed=5)
    weights = w if weighted else None
    order = envelope.envelope_order(net)
    cols = np.arange(9000)[::-3][::-1]
    one = envelope.solve(unw, weights, cols, order, threads=1)
    two = envelope.solve(unw, weights, cols, order, threads=2)
    np.testing.assert_array_equal(one, two)
    alone = envelope.solve(
        unw[:, cols[:7]], weights if weights is None else w[:, cols[:7]], np.arange(7), order
    )
    np.testing.assert_array_equal(one[:, :7], alone)
    if not weighted:
        np.testing.assert_allclose(
            one[:, 7:20], _lstsq(net, unw[:, cols[7:20]], np.ones((net.n_pairs, 13))), atol=1e-9
        )


def test_nsbas_constraint_equals_the_dense_normal_equations_across_gaps():
    from mtinsar.analysis.inversion import _line_basis, _linear_constraint

    net = _licsar(40)
    unw, w = _pixels(net, 60, seed=6)
    spans = (net.ref < 15) & (net.sec >= 15)
    unw[np.ix_(spans, np.arange(20))] = np.nan  # a network gap in a third of the pixels
    unw[np.ix_((net.ref == 30) | (net.sec == 30), np.arange(20, 30))] = np.nan  # no pair
    gamma = 0.05
    got = envelope.solve(
        unw, w, np.arange(60), envelope.envelope_order(net), gamma, _line_basis(net)[1:]
    )
    a, reg = net.design_matrix(), gamma**2 * _linear_constraint(net)
    err = 0.0
    for p in range(60):
        ok = np.isfinite(unw[:, p])
        wp = np.where(ok, w[:, p], 0.0)
        normal = a.T @ (wp[:, None] * a) + wp[ok].mean() * reg
        want = np.linalg.solve(normal, a.T @ (wp * np.where(ok, unw[:, p], 0.0)))
        err = max(err, np.abs(got[:, p] - want).max() / np.abs(want).max())
    assert err < 1e-9
