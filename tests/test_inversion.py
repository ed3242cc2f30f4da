import numpy as np
import pytest

from mtinsar.inversion import invert_sbas, temporal_coherence
from mtinsar.network import Network


def _network(n_dates=12, links=3, extra=()):
    pairs = [(i, j) for i in range(n_dates) for j in range(i + 1, min(n_dates, i + 1 + links))]
    pairs += list(extra)
    ref, sec = np.array(sorted(pairs)).T
    dates = np.datetime64("2021-03-01") + 12 * np.arange(n_dates)
    return Network.from_pair_dates(dates[ref], dates[sec])


def _truth(net, n_pix, seed=0):
    rng = np.random.default_rng(seed)
    phase = np.cumsum(rng.normal(0, 2, (net.n_dates, n_pix)), axis=0)
    return phase - phase[0]


def test_exact_recovery_shared_and_individual_patterns():
    net = _network()
    truth = _truth(net, 400)
    unw = truth[net.sec] - truth[net.ref]
    rng = np.random.default_rng(1)
    # half of the pixels lose random pairs: individual patterns -> normal equations path
    drop = (rng.random(unw.shape) < 0.1) & (np.arange(400) >= 200)
    unw[drop] = np.nan
    res = invert_sbas(unw, net)
    ok = res.solved
    assert ok[:200].all()
    np.testing.assert_allclose(res.phase[:, ok], truth[:, ok], atol=1e-9)
    np.testing.assert_allclose(res.temporal_coherence[ok], 1.0, atol=1e-12)
    np.testing.assert_array_equal(res.n_valid, np.isfinite(unw).sum(axis=0))


def test_same_answer_whatever_the_grouping():
    net = _network()
    truth = _truth(net, 300, seed=3)
    rng = np.random.default_rng(4)
    unw = truth[net.sec] - truth[net.ref] + rng.normal(0, 0.3, (net.n_pairs, 300))
    unw[rng.random(unw.shape) < 0.05] = np.nan
    grouped = invert_sbas(unw, net, min_group_size=1)
    normal = invert_sbas(unw, net, min_group_size=10**9)
    np.testing.assert_allclose(grouped.phase, normal.phase, atol=1e-9)
    np.testing.assert_allclose(grouped.temporal_coherence, normal.temporal_coherence, atol=1e-9)


def test_least_squares_with_noise_matches_lstsq_per_pixel():
    net = _network(links=4)
    truth = _truth(net, 5, seed=5)
    rng = np.random.default_rng(6)
    unw = truth[net.sec] - truth[net.ref] + rng.normal(0, 0.5, (net.n_pairs, 5))
    res = invert_sbas(unw, net)
    a = net.design_matrix()
    for p in range(5):
        expected, *_ = np.linalg.lstsq(a, unw[:, p], rcond=None)
        np.testing.assert_allclose(res.phase[1:, p], expected, atol=1e-9)
    assert np.all(res.temporal_coherence < 1)


def test_weights_reproduce_weighted_least_squares():
    net = _network(links=4)
    truth = _truth(net, 3, seed=7)
    rng = np.random.default_rng(8)
    unw = truth[net.sec] - truth[net.ref] + rng.normal(0, 0.5, (net.n_pairs, 3))
    w = rng.uniform(0.2, 5.0, unw.shape)
    res = invert_sbas(unw, net, weights=w)
    a = net.design_matrix()
    for p in range(3):
        sw = np.sqrt(w[:, p])
        expected, *_ = np.linalg.lstsq(a * sw[:, None], unw[:, p] * sw, rcond=None)
        np.testing.assert_allclose(res.phase[1:, p], expected, atol=1e-9)


def test_disconnected_pixels_are_reported_not_filled():
    net = _network(n_dates=6, links=1)  # a chain: one missing pair splits it
    truth = _truth(net, 3)
    unw = truth[net.sec] - truth[net.ref]
    unw[2, 1] = np.nan  # pixel 1 loses the link 2-3
    unw[:, 2] = np.nan  # pixel 2 has no data
    res = invert_sbas(unw, net)
    np.testing.assert_array_equal(res.solved, [True, False, False])
    np.testing.assert_array_equal(res.n_components, [1, 2, 6])
    assert np.isnan(res.phase[:, 1:]).all()
    assert np.isnan(res.temporal_coherence[1:]).all()


def test_temporal_coherence_drops_with_a_2pi_error_in_one_pair():
    net = _network(n_dates=10, links=3)
    truth = _truth(net, 1)
    unw = truth[net.sec] - truth[net.ref]
    unw[5] += 2 * np.pi
    res = invert_sbas(unw, net)
    assert res.temporal_coherence[0] < 0.95
    phase = np.vstack([np.zeros((1, 1)), np.ones((net.n_dates - 1, 1))])
    assert temporal_coherence(unw * 0 + 1, phase, net)[0] < 1


def test_shape_mismatch_is_rejected():
    net = _network()
    with pytest.raises(ValueError, match="n_pairs"):
        invert_sbas(np.zeros((net.n_pairs + 1, 4)), net)
