import numpy as np

from mtinsar.analysis.network import Network


def _network(pairs, n_dates=None):
    ref, sec = np.array(pairs).T
    n = n_dates or sec.max() + 1
    dates = np.datetime64("2020-01-01") + 12 * np.arange(n)
    return Network.from_pair_dates(dates[ref], dates[sec])


def test_from_pair_dates_indexes_sorted_unique_dates():
    d = np.array(["2020-01-13", "2020-01-01", "2020-01-25"], dtype="datetime64[D]")
    net = Network.from_pair_dates(d[[1, 1, 0]], d[[0, 2, 2]])
    assert list(net.dates) == sorted(d)
    assert list(net.ref) == [0, 0, 1] and list(net.sec) == [1, 2, 2]
    np.testing.assert_array_equal(net.temporal_baselines(), [12, 24, 12])


def test_design_matrix_differences_dates():
    net = _network([(0, 1), (0, 2), (1, 3)])
    d = np.array([0.0, 1.5, -2.0, 4.0])
    np.testing.assert_allclose(net.design_matrix() @ d[1:], d[[1, 2, 3]] - d[[0, 0, 1]])


def test_n_components_counts_groups_per_pixel():
    net = _network([(0, 1), (1, 2), (2, 3), (0, 2)])
    valid = np.array(
        [
            [1, 1, 0, 0, 1],  # (0,1)
            [1, 0, 1, 0, 1],  # (1,2)
            [1, 1, 1, 0, 0],  # (2,3)
            [0, 0, 0, 0, 1],  # (0,2)
        ],
        dtype=bool,
    )
    # pixel 0: chain 0-1-2-3 -> 1; pixel 1: {0,1},{2,3} -> 2; pixel 2: {0},{1,2,3} -> 2;
    # pixel 3: no pair -> 4 singletons; pixel 4: {0,1,2},{3} -> 2
    np.testing.assert_array_equal(net.n_components(valid), [1, 2, 2, 4, 2])


def test_date_groups_finds_unbridged_groups():
    net = _network([(0, 2), (1, 3)])
    groups = net.date_groups()
    assert [list(g) for g in groups] == [[0, 2], [1, 3]]
    assert len(_network([(0, 1), (1, 2)]).date_groups()) == 1
