"""Closure loops, gaps and redundancy of the pair graph."""

import itertools

import numpy as np

from mtinsar.analysis.network import Network
from mtinsar.simulate import SceneConfig, simulate_scene


def _network(pairs, n_dates=None):
    ref, sec = np.array(pairs).T
    n = n_dates or sec.max() + 1
    dates = np.datetime64("2020-01-01") + 12 * np.arange(n)
    return Network.from_pair_dates(dates[ref], dates[sec])


def _consistent_phase(net, seed=0):
    """Pair phases of random date phases: every loop of them closes exactly."""
    d = np.random.default_rng(seed).normal(0, 5, net.n_dates)
    return d[net.sec] - d[net.ref]


def test_triplets_of_a_complete_network():
    net = _network(list(itertools.combinations(range(5), 2)))
    loops = net.triplets()
    assert len(loops) == 10  # every 3 of 5 dates
    dates = [(net.ref[a], net.sec[a], net.sec[b]) for a, b, _ in loops]
    assert dates == list(itertools.combinations(range(5), 3))
    for a, b, c in loops:  # pair(i,j), pair(j,k), pair(i,k)
        assert net.sec[a] == net.ref[b] and net.ref[c] == net.ref[a] and net.sec[c] == net.sec[b]


def test_closure_of_consistent_phases_is_zero_and_errors_show():
    net = _network([(0, 1), (0, 2), (1, 2), (1, 3), (2, 3), (2, 4), (3, 4), (0, 4)])
    c = net.closure_matrix(long_loops=2)
    unw = _consistent_phase(net)
    np.testing.assert_allclose(c @ unw, 0, atol=1e-12)
    unw[3] += 2 * np.pi  # pair (1,3): every loop through it is off by one cycle
    closure = c @ unw
    through = c.toarray()[:, 3] != 0
    np.testing.assert_allclose(np.abs(closure[through]), 2 * np.pi)
    np.testing.assert_allclose(closure[~through], 0, atol=1e-12)


def test_closure_matrix_spans_the_loops_of_a_complete_network():
    net = _network(list(itertools.combinations(range(6), 2)))
    c = net.closure_matrix().toarray()
    assert set(np.unique(c)) == {-1, 0, 1}
    assert (np.abs(c).sum(axis=1) == 3).all()
    assert np.linalg.matrix_rank(c) == net.n_independent_loops() == 15 - 6 + 1


def test_long_loops_check_pairs_in_no_triplet():
    # two 4-pair routes from date 0 to date 5 and the pair (0,5): no triangle anywhere
    pairs = [(0, 1), (1, 2), (2, 5), (0, 3), (3, 4), (4, 5), (0, 5)]
    net = _network(pairs)
    assert len(net.triplets()) == 0 and (net.redundancy() == 0).all()
    assert net.closure_matrix().shape == (0, 7)
    c = net.closure_matrix(long_loops=3)
    routes = {frozenset(np.flatnonzero(row).tolist()) for row in c.toarray()}
    index = {p: k for k, p in enumerate(pairs)}
    year = index[(0, 5)]
    north = frozenset(index[p] for p in [(0, 1), (1, 2), (2, 5)]) | {year}
    south = frozenset(index[p] for p in [(0, 3), (3, 4), (4, 5)]) | {year}
    assert routes == {north, south}
    assert c.shape[0] == 2  # the same loop found from several pairs is kept once
    np.testing.assert_allclose(c @ _consistent_phase(net), 0, atol=1e-12)
    assert net.closure_matrix(long_loops=3, max_length=3).shape[0] == 0  # loops have 4 pairs


def test_licsar_year_pairs_get_long_loops():
    scene = simulate_scene(SceneConfig(ny=16, nx=16, n_dates=30, seed=1))
    ij = np.asarray(scene.pairs)
    net = Network.from_pair_dates(scene.dates[ij[:, 0]], scene.dates[ij[:, 1]])
    uncovered = np.flatnonzero(net.redundancy() == 0)
    spans = net.temporal_baselines()
    assert uncovered.size > 0 and (spans[uncovered] > 300).all()  # the ~1-year pairs
    c = net.closure_matrix(long_loops=3, max_length=12)
    n_tri = len(net.triplets())
    covered = np.abs(c[n_tri:]).sum(axis=0).A1 > 0
    assert covered[uncovered].all()
    assert (np.abs(c[n_tri:]).sum(axis=1).A1 <= 12).all()
    np.testing.assert_allclose(c @ _consistent_phase(net), 0, atol=1e-9)


def test_gaps_and_interval_coverage():
    net = _network([(0, 1), (0, 2), (1, 2), (3, 4), (3, 5), (4, 5)])
    np.testing.assert_array_equal(net.interval_coverage(), [2, 2, 0, 2, 2])
    np.testing.assert_array_equal(net.gaps(), [2])
    valid = np.array([[1, 1], [1, 0], [1, 0], [1, 1], [1, 1], [1, 1]], dtype=bool)
    per_pixel = net.interval_coverage(valid)  # pixel 1 lost (0,2) and (1,2): gap after date 1
    np.testing.assert_array_equal(per_pixel[:, 0], [2, 2, 0, 2, 2])
    np.testing.assert_array_equal(per_pixel[:, 1], [1, 0, 0, 2, 2])


def test_interleaved_split_has_no_gap_but_two_groups():
    net = _network([(0, 2), (1, 3)])
    assert net.gaps().size == 0 and len(net.date_groups()) == 2


def test_redundancy_degree_and_independent_loops():
    net = _network([(0, 1), (0, 2), (1, 2), (1, 3), (2, 3), (3, 4)])
    # triplets (0,1,2) and (1,2,3); pair (3,4) is in none
    np.testing.assert_array_equal(net.redundancy(), [1, 1, 2, 1, 1, 0])
    np.testing.assert_array_equal(net.degree(), [2, 3, 3, 3, 1])
    assert net.n_independent_loops() == 2


def test_summary_reports_gaps_and_loops():
    net = _network([(0, 1), (0, 2), (1, 2), (3, 4), (3, 5), (4, 5), (5, 6)])
    s = net.summary()
    assert s == {
        "n_dates": 7,
        "n_pairs": 7,
        "n_groups": 2,
        "gaps": ["2020-01-25..2020-02-06"],
        "n_triplets": 2,
        "n_independent_loops": 2,
        "min_pairs_per_date": 1,
        "n_pairs_in_no_triplet": 1,
    }
