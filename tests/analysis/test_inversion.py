import numpy as np
import pytest

from mtinsar.analysis.inversion import (
    _LaplacianAssembly,
    coherence_weights,
    cramer_rao_variance,
    invert,
    invert_sbas,
    phase_variance,
    temporal_coherence,
)
from mtinsar.analysis.model import linear_velocity
from mtinsar.analysis.network import Network
from mtinsar.conventions import phase_to_displacement, years_since
from mtinsar.corrections.reference import reference_phase
from mtinsar.simulate import SceneConfig, simulate_scene
from mtinsar.simulate.score import referenced_truth


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


# --------------------------------------------------------------------------- methods


def test_min_norm_equals_sbas_on_connected_pixels():
    net = _network(links=3)
    truth = _truth(net, 200, seed=9)
    rng = np.random.default_rng(10)
    unw = truth[net.sec] - truth[net.ref] + rng.normal(0, 0.3, (net.n_pairs, 200))
    unw[rng.random(unw.shape) < 0.05] = np.nan
    sbas = invert_sbas(unw, net)
    for group in (1, 10**9):  # grouped and batched paths
        mn = invert_sbas(unw, net, min_norm=True, min_group_size=group)
        ok = sbas.solved
        np.testing.assert_allclose(mn.phase[:, ok], sbas.phase[:, ok], atol=1e-8)


def test_min_norm_bridges_a_split_with_zero_velocity():
    """Berardino et al. 2002: the SVD solution sets the unobserved interval's velocity to 0."""
    net = _network(n_dates=10, links=2)
    truth = _truth(net, 50, seed=11)
    unw = truth[net.sec] - truth[net.ref]
    spans = (net.ref < 5) & (net.sec >= 5)  # no valid pair across interval (4, 5)
    unw[spans] = np.nan
    res = invert(unw, net, "min-norm", min_group_size=10**9)
    assert res.solved.all()
    np.testing.assert_array_equal(res.n_components, 2)
    np.testing.assert_allclose(res.phase[5], res.phase[4], atol=1e-9)
    # inside each group the pairs are honoured exactly
    np.testing.assert_allclose(res.phase[:5], truth[:5], atol=1e-9)
    np.testing.assert_allclose(res.phase[5:] - res.phase[5], truth[5:] - truth[5], atol=1e-9)
    gaps = res.gaps
    assert gaps[4].all() and not gaps[np.arange(9) != 4].any()


@pytest.mark.parametrize("weighted", [False, True])
def test_min_norm_matches_the_pseudo_inverse_for_any_split(weighted):
    """Gaps, a date skipped by every pair and a date without pairs, vs per-pixel SVD."""
    net = _network(n_dates=12, links=3)
    rng = np.random.default_rng(13)
    unw = rng.normal(0, 2, (net.n_pairs, 4))
    unw[(net.ref < 6) & (net.sec >= 6), 0] = np.nan  # a gap
    unw[(net.ref == 4) | (net.sec == 4), 1] = np.nan  # date 4 skipped: pairs (3, 5) remain
    unw[(net.ref <= 2) & (net.sec >= 3), 2] = np.nan  # a gap, and date 9 skipped
    unw[(net.ref == 9) | (net.sec == 9), 2] = np.nan
    w = rng.uniform(0.5, 3.0, unw.shape) if weighted else np.ones_like(unw)
    res = invert(unw, net, "min-norm", weights=w if weighted else None, min_group_size=10**9)
    np.testing.assert_array_equal(res.n_components, [2, 2, 3, 1])
    days = np.diff(net.dates).astype(float)
    t = np.tril(np.broadcast_to(days / days.mean(), (net.n_dates - 1,) * 2))
    a = net.design_matrix()
    for p in range(4):
        ok = np.isfinite(unw[:, p])
        sw = np.sqrt(w[ok, p])
        b = (a[ok] @ t) * sw[:, None]
        expected = t @ np.linalg.pinv(b, rcond=1e-10) @ (unw[ok, p] * sw)
        np.testing.assert_allclose(res.phase[1:, p], expected, atol=1e-8)


def test_normal_equations_build_the_pair_graph_laplacian():
    """The sparse assembly of AᵀWA equals the dense product for random weights."""
    net = _network(links=4)
    rng = np.random.default_rng(12)
    w = rng.uniform(0.1, 3.0, (net.n_pairs, 7))
    w[rng.random(w.shape) < 0.2] = 0.0
    a = net.design_matrix()
    lap = _LaplacianAssembly(net)(w)
    for p in range(7):
        np.testing.assert_allclose(lap[p], a.T @ (w[:, p, None] * a), atol=1e-12)


def test_bad_arguments_are_rejected():
    net = _network()
    unw = np.zeros((net.n_pairs, 3))
    with pytest.raises(ValueError, match="method"):
        invert(unw, net, "svd")
    with pytest.raises(ValueError, match="gamma"):
        invert(unw, net, "nsbas", gamma=0.0)
    with pytest.raises(ValueError, match="weights"):
        invert(unw, net, weights=np.ones((net.n_pairs, 4)))
    with pytest.raises(ValueError, match="looks"):
        phase_variance(np.array([0.5]), 0)
    with pytest.raises(ValueError, match="model"):
        coherence_weights(np.array([0.5]), 4, "gaussian")


# --------------------------------------------------------------------------- weights


def _multilook_phase(coherence: float, looks: int, n: int, rng) -> np.ndarray:
    """Phase of L-look interferograms of two circular Gaussian signals with this coherence."""
    s1 = rng.normal(size=(n, looks)) + 1j * rng.normal(size=(n, looks))
    noise = rng.normal(size=(n, looks)) + 1j * rng.normal(size=(n, looks))
    s2 = coherence * s1 + np.sqrt(1 - coherence**2) * noise
    return np.angle((s1 * np.conj(s2)).sum(axis=1))


@pytest.mark.parametrize("looks", [1, 4, 20])
@pytest.mark.parametrize("coherence", [0.1, 0.4, 0.7, 0.95])
def test_phase_variance_matches_simulated_multilook_phase(looks, coherence):
    """The tabulated PDF variance (Tough et al. 1995) against Monte Carlo interferograms."""
    rng = np.random.default_rng(looks * 100 + int(coherence * 100))
    phase = _multilook_phase(coherence, looks, 100_000, rng)
    measured = np.mean(phase**2)
    assert phase_variance(np.array([coherence]), looks)[0] == pytest.approx(measured, rel=0.03)


def test_phase_variance_limits():
    g = np.array([0.0, 0.98, 0.999, np.nan])
    var = phase_variance(g, 20)
    assert var[0] == pytest.approx(np.pi**2 / 3, rel=1e-3)  # uniform phase
    crb = cramer_rao_variance(g[1:3], 20)
    np.testing.assert_allclose(var[1:3], crb, rtol=0.06)  # tends to the Cramér-Rao bound
    assert np.isnan(var[3])
    assert np.all(np.diff(phase_variance(np.linspace(0, 1, 101), 4)) <= 0)
    # a coherence of 1 gets a large but finite weight
    assert np.isfinite(coherence_weights(np.array([1.0]), 20)).all()
    np.testing.assert_allclose(
        coherence_weights(np.array([0.5, np.nan]), 20, "cramer-rao"),
        [1 / cramer_rao_variance(0.5, 20), np.nan],
    )


def _decorrelated_velocity_rmse(scene, weights_model):
    """SBAS velocity RMSE [m/yr] vs truth over all estimated pixels, with or without weights."""
    stack = scene.to_ifgstack()
    net = Network.from_pair_dates(stack["ref_date"].values, stack["sec_date"].values)
    ry, rx = scene.truth.attrs["ref_y"], scene.truth.attrs["ref_x"]
    unw = stack["unw"].values.astype(np.float64)
    ref = reference_phase(unw[:, ry - 3 : ry + 4, rx - 3 : rx + 4])
    flat = unw.reshape(net.n_pairs, -1) - ref[:, None]
    w = None
    if weights_model is not None:
        coh = stack["coh"].values.reshape(net.n_pairs, -1).astype(np.float64)
        w = coherence_weights(coh, scene.config.looks, weights_model)
    res = invert_sbas(flat, net, weights=w)
    disp = res.phase * phase_to_displacement(stack.attrs["wavelength"])
    v, _ = linear_velocity(years_since(net.dates, net.dates[0]), disp)
    truth_v, _ = referenced_truth(scene.truth, ry, rx)
    ok = np.isfinite(v)
    assert ok.sum() > 0.9 * (~scene.truth["water"].values).sum()
    return float(np.sqrt(np.mean((v - truth_v.ravel())[ok] ** 2)))


def test_coherence_weighting_reduces_velocity_error_under_strong_decorrelation():
    """Weighting by inverse phase variance helps where decorrelation noise dominates.

    Scene: 4 looks (phase noise ~2x the default 20-look scene at equal coherence), 40 %
    vegetated land with fast coherence loss; troposphere and DEM error off, since a per-date
    signal is consistent in every pair and passes any weighting unchanged. Measured (seed
    0): RMSE 4.44 mm/yr unweighted, 4.20 with the PDF weights (-5 %), 4.07 with Cramér-Rao
    weights (-8 %), the latter being the simulator's own noise model (best linear unbiased).
    """
    cfg = SceneConfig(
        ny=80, nx=100, n_dates=40, looks=4, turbulence=False, stratified=False, dem_error=False
    )
    scene = simulate_scene(cfg)
    none = _decorrelated_velocity_rmse(scene, None)
    pdf = _decorrelated_velocity_rmse(scene, "pdf")
    crb = _decorrelated_velocity_rmse(scene, "cramer-rao")
    assert pdf <= 0.97 * none, (none, pdf)
    assert crb <= 0.95 * none, (none, crb)
