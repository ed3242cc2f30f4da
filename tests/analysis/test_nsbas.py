"""NSBAS (Doin et al. 2011) across network gaps, scored against the simulator's truth."""

import numpy as np
import pytest

from mtinsar.analysis.inversion import _linear_constraint, invert, invert_nsbas, invert_sbas
from mtinsar.analysis.model import fit_model
from mtinsar.analysis.network import Network
from mtinsar.config import RunConfig
from mtinsar.conventions import phase_to_displacement, years_since
from mtinsar.corrections.reference import reference_phase
from mtinsar.errors import NetworkError
from mtinsar.simulate import SceneConfig, simulate_scene
from mtinsar.simulate.scene import GAP_POSITION, acquisition_dates, gap_index
from mtinsar.simulate.score import referenced_truth
from mtinsar.workflows.pipeline import run_sbas

SIZE = {"ny": 80, "nx": 100, "n_dates": 40}


def _referenced(scene, radius: int = 3):
    """(network, pair phases referenced as run_sbas does, reference pixel, wavelength).

    The reference pixel is the simulator's stable one, the reference phase of each pair the
    median over its (2·radius+1)² window (`RunConfig().reference.radius` = 3).
    """
    stack = scene.to_ifgstack()
    net = Network.from_pair_dates(stack["ref_date"].values, stack["sec_date"].values)
    ry, rx = scene.truth.attrs["ref_y"], scene.truth.attrs["ref_x"]
    unw = stack["unw"].values.astype(np.float64)
    window = unw[:, max(ry - radius, 0) : ry + radius + 1, max(rx - radius, 0) : rx + radius + 1]
    flat = unw.reshape(net.n_pairs, -1) - reference_phase(window)[:, None]
    return net, flat, (ry, rx), stack.attrs["wavelength"]


def _series_and_velocity(scene, method, **kwargs):
    """Displacement (time, pix) [m], velocity and its std [m/yr] (pix,), result, ref pixel.

    The velocity is a linear fit that ignores gaps, as the pipeline does today.
    """
    net, flat, ref, wavelength = _referenced(scene)
    res = invert(flat, net, method, **kwargs)
    disp = res.phase * phase_to_displacement(wavelength)
    fit = fit_model(net.dates, disp)
    return disp, fit.velocity, fit.velocity_std, res, ref


def _rmse(scene, ref, disp, v):
    """Velocity [m/yr] and displacement [m] RMSE over the coherent pixels, and coverage."""
    truth_v, truth_d = referenced_truth(scene.truth, *ref)
    coherent = scene.truth["coherent"].values.ravel()
    ok = coherent & np.isfinite(v)
    dv = (v - truth_v.ravel())[ok]
    dd = (disp - truth_d.reshape(disp.shape[0], -1))[:, ok]
    return np.sqrt(np.mean(dv**2)), np.sqrt(np.mean(dd**2)), ok.sum() / coherent.sum()


def _free_offset_velocity_rmse(scene, ref):
    """Velocity RMSE of the best estimator that does not know the offset across the gap.

    It fits a line plus an offset after the gap to the true displacement plus the true
    per-date nuisance (what a perfect inversion without decorrelation noise delivers), so
    its velocity is the pooled slope within the two groups of dates.
    """
    truth_v, truth_d = referenced_truth(scene.truth, *ref)
    nuis = scene.truth["nuisance"].values
    nuis = nuis - nuis[:, ref[0] : ref[0] + 1, ref[1] : ref[1] + 1]
    t = years_since(scene.dates, scene.dates[0])
    after = np.arange(t.size) >= gap_index(t.size, scene.config.gap_position)
    g = np.column_stack([np.ones_like(t), t, after])
    v = (np.linalg.pinv(g) @ (truth_d + nuis).reshape(t.size, -1))[1]
    coherent = scene.truth["coherent"].values.ravel()
    return np.sqrt(np.mean((v - truth_v.ravel())[coherent] ** 2))


def _noise_inflation(seed: int, position: float) -> float:
    """Velocity noise std with a free offset across a 60-day gap over that without the gap.

    For noise independent from date to date, sqrt(Σ(t - t̄)² / Σ(t - t̄_group)²) on the
    scene's calendars: the efficiency bound on the gap/no-gap velocity RMSE ratio.
    """

    def var_v(cfg: SceneConfig) -> float:
        dates = acquisition_dates(cfg)
        t = years_since(dates, dates[0])
        cols = [np.ones_like(t), t]
        if cfg.gap_days:
            cols.append(np.arange(t.size) >= gap_index(t.size, cfg.gap_position))
        g = np.column_stack(cols)
        return np.linalg.inv(g.T @ g)[1, 1]

    base = SceneConfig(**SIZE, seed=seed)
    gapped = base.model_copy(update={"gap_days": 60, "gap_position": position})
    return float(np.sqrt(var_v(gapped) / var_v(base)))


@pytest.fixture(scope="module")
def gap_scene():
    return simulate_scene(SceneConfig(**SIZE, gap_days=60))


def test_plain_sbas_reports_the_gap(gap_scene):
    net, flat, _, _ = _referenced(gap_scene)
    assert len(net.date_groups()) == 2
    res = invert_sbas(flat, net)
    land = ~gap_scene.truth["water"].values.ravel()
    assert not res.solved.any()
    assert (res.n_components[land] >= 2).all()
    assert res.gaps[gap_index(net.n_dates) - 1, land].all()
    with pytest.raises(NetworkError, match="2 groups"):
        run_sbas(gap_scene.to_ifgstack(), RunConfig())


def test_nsbas_bridges_a_two_month_gap(gap_scene):
    """A 60-day gap with no pair across it (the network splits in two), seed 0.

    NSBAS (linear constraint) gives a continuous series at every land pixel whose
    displacement RMSE stays within 1.5x that of the same scene without the gap (seed 0:
    13.3 vs 14.4 mm). Its velocity RMSE (3.63 mm/yr against 5.43 without the gap) is held
    to the best that any estimator not knowing the offset across the gap achieves
    (`_free_offset_velocity_rmse`, 4.07 mm/yr), and it beats Berardino's min-norm bridge
    (zero velocity across the gap: 10.5 mm/yr).
    """
    no_gap = simulate_scene(SceneConfig(**SIZE))
    d0, v0, _, _, ref0 = _series_and_velocity(no_gap, "sbas")
    vel0, disp0, cover0 = _rmse(no_gap, ref0, d0, v0)

    d, v, _, res, ref = _series_and_velocity(gap_scene, "nsbas")
    land = ~gap_scene.truth["water"].values.ravel()
    assert res.solved[land].all() and np.isfinite(d[:, land]).all()
    vel, disp, cover = _rmse(gap_scene, ref, d, v)
    assert cover == 1.0 and cover0 == 1.0
    assert disp <= 1.5 * disp0, (disp, disp0)
    assert vel <= 1.5 * vel0, (vel, vel0)
    bound = _free_offset_velocity_rmse(gap_scene, ref)
    assert vel <= 1.2 * bound, (vel, bound, vel0)

    dm, vm, _, _, _ = _series_and_velocity(gap_scene, "min-norm")
    vel_mn, _, _ = _rmse(gap_scene, ref, dm, vm)
    assert vel_mn >= 1.25 * vel, (vel_mn, vel)


def test_gap_position_sets_the_velocity_noise_floor():
    """Why the scene's gap sits after the first fifth of the dates, not at the middle.

    Across a gap the offset is unknown, so only the slope within the two groups of dates
    tells the velocity. Against per-date noise (the troposphere) its std grows by
    `_noise_inflation`: about 2 for a gap at the middle (no estimator can then be within
    1.5x of the no-gap velocity RMSE), 1.35-1.41 for the default position 0.2 (seeds 0-7).
    """
    middle = [_noise_inflation(seed, 0.5) for seed in range(8)]
    default = [_noise_inflation(seed, GAP_POSITION) for seed in range(8)]
    assert min(middle) > 1.8, middle
    assert max(default) < 1.45, default


def test_nsbas_velocity_across_a_gap_within_1p5x_of_no_gap_over_seeds():
    """Issue #4: velocity RMSE with a 2-month gap <= 1.5x that without, seeds 0-7 pooled.

    One scene's ratio swings widely (seeds 0-7: 0.67-2.08) because the velocity error is
    dominated by the slope of a few large-scale troposphere patterns; the efficient
    free-offset fit to the exact data swings as much (0.75-2.66), so the per-seed excess is
    sampling, not the method. Pooled over 8 scenes (mean squared error per scene) the ratio
    is 1.40, near the 1.35-1.41 efficiency bound; a gap at the middle gives 2.14 (bound
    ~2). NSBAS stays within 1.2x of that bound in every scene (0.75-1.16).
    """
    sq_gap = sq_full = 0.0
    for seed in range(8):
        full = simulate_scene(SceneConfig(**SIZE, seed=seed))
        gapped = simulate_scene(SceneConfig(**SIZE, seed=seed, gap_days=60))
        d0, v0, _, _, ref0 = _series_and_velocity(full, "sbas")
        d, v, _, _, ref = _series_and_velocity(gapped, "nsbas")
        vel0, _, cover0 = _rmse(full, ref0, d0, v0)
        vel, _, cover = _rmse(gapped, ref, d, v)
        assert cover == 1.0 and cover0 == 1.0, seed
        bound = _free_offset_velocity_rmse(gapped, ref)
        assert vel <= 1.2 * bound, (seed, vel, bound)
        sq_gap, sq_full = sq_gap + vel**2, sq_full + vel0**2
    assert np.sqrt(sq_gap / sq_full) <= 1.5, np.sqrt(sq_gap / sq_full)


def test_velocity_std_across_a_gap_needs_a_free_offset():
    """Noise-only scenes, gap at the middle: σ is calibrated only with the gap offset free.

    NSBAS fixes the offset across the gap from the linear model; a fit that then treats it
    as known finds σ about half the true scatter (measured: 20-43 % of pixels within 1σ).
    With the gaps passed to `fit_model` the velocity is the same (for the linear
    constraint) and 60-75 % of the pixels, pooled over 6 seeds, lie within 1σ.
    """
    plain, aware = [], []
    for seed in range(6):
        cfg = SceneConfig(**SIZE, gap_days=60, gap_position=0.5, deformation=False, seed=seed)
        scene = simulate_scene(cfg)
        disp, v, s, res, _ = _series_and_velocity(scene, "nsbas")
        fit = fit_model(scene.dates, disp, gaps=res.gaps)
        va, sa = fit.velocity, fit.velocity_std
        ok = res.solved & (s > 0)
        np.testing.assert_allclose(va[ok], v[ok], atol=1e-6 * np.abs(v[ok]).max())
        plain.append(np.abs(v[ok]) < s[ok])
        aware.append(np.abs(va[ok]) < sa[ok])
    assert np.mean(np.concatenate(plain)) < 0.5
    assert 0.60 <= np.mean(np.concatenate(aware)) <= 0.75


# --------------------------------------------------------------------------- numerics


def _network(n_dates=14, links=3, gap=None):
    pairs = [(i, j) for i in range(n_dates) for j in range(i + 1, min(n_dates, i + 1 + links))]
    if gap is not None:
        pairs = [(i, j) for i, j in pairs if not i < gap <= j]
    ref, sec = np.array(pairs).T
    dates = np.datetime64("2021-03-01") + np.cumsum(np.r_[0, [12, 24, 12, 36] * n_dates])
    dates = dates[:n_dates]
    return Network.from_pair_dates(dates[ref], dates[sec])


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("group", [1, 10**9])
def test_nsbas_is_exact_for_linear_motion_across_gaps_and_missing_dates(weighted, group):
    net = _network(gap=7)
    days = (net.dates - net.dates[0]).astype(float)
    rng = np.random.default_rng(0)
    rate = rng.normal(0, 0.05, 60)  # rad/day
    truth = np.outer(days, rate)
    unw = truth[net.sec] - truth[net.ref]
    unw[(net.ref == 3) | (net.sec == 3), :20] = np.nan  # date 3 has no pair at pixels 0-19
    w = rng.uniform(0.5, 4.0, unw.shape) if weighted else None
    res = invert_nsbas(unw, net, weights=w, min_group_size=group, min_valid=5)
    assert res.solved.all()
    np.testing.assert_array_equal(res.n_components[:20], 3)
    np.testing.assert_array_equal(res.n_components[20:], 2)
    np.testing.assert_allclose(res.phase, truth, atol=1e-7)


def test_nsbas_closed_form_equals_doin_augmented_system():
    """Eliminating (v, c) from Doin et al.'s system changes nothing: compare with lstsq."""
    net = _network(gap=6)
    rng = np.random.default_rng(1)
    unw = rng.normal(0, 3, (net.n_pairs, 4))
    w = rng.uniform(0.2, 5.0, unw.shape)
    gamma = 0.3
    res = invert_nsbas(unw, net, weights=w, gamma=gamma)
    a = net.design_matrix()
    days = (net.dates - net.dates[0]).astype(float)
    t = days / days[-1]
    m = net.n_dates - 1
    for p in range(4):
        scale = np.sqrt(w[:, p].mean())  # gamma is relative to the mean pair weight
        # unknowns: phases of dates 1..n-1, then v, c; one constraint row per date
        top = np.hstack([a * np.sqrt(w[:, p, None]), np.zeros((net.n_pairs, 2))])
        cons = np.zeros((net.n_dates, m + 2))
        cons[1:, :m] = np.eye(m)
        cons[:, m] = -t
        cons[:, m + 1] = -1
        g = np.vstack([top, gamma * scale * cons])
        rhs = np.concatenate([unw[:, p] * np.sqrt(w[:, p]), np.zeros(net.n_dates)])
        expected, *_ = np.linalg.lstsq(g, rhs, rcond=None)
        np.testing.assert_allclose(res.phase[1:, p], expected[:m], atol=1e-8)


def test_gamma_trades_the_pairs_against_the_linear_model():
    net = _network(links=4)
    rng = np.random.default_rng(2)
    truth = np.cumsum(rng.normal(0, 1, (net.n_dates, 50)), axis=0)
    truth -= truth[0]
    unw = truth[net.sec] - truth[net.ref] + rng.normal(0, 0.2, (net.n_pairs, 50))
    sbas = invert_sbas(unw, net)
    small = invert_nsbas(unw, net, gamma=1e-3)
    np.testing.assert_allclose(small.phase, sbas.phase, atol=1e-4)
    line = invert_nsbas(unw, net, gamma=1e4)
    off_line = _linear_constraint(net)
    x = line.phase[1:]
    assert np.einsum("ip,ij,jp->p", x, off_line, x).max() < 1e-6 * (x**2).sum(0).min()
    assert (line.temporal_coherence < sbas.temporal_coherence).all()


def test_min_valid_leaves_pixels_with_too_few_pairs():
    """By default NSBAS needs n_dates - 1 valid pairs, the fewest that can link every date."""
    net = _network()
    unw = np.zeros((net.n_pairs, 4))
    need = net.n_dates - 1
    unw[need:, 1] = np.nan
    unw[need - 1 :, 2] = np.nan
    unw[:, 3] = np.nan
    res = invert_nsbas(unw, net)
    np.testing.assert_array_equal(res.solved, [True, True, False, False])
    assert np.isnan(res.phase[:, 2:]).all() and np.isnan(res.temporal_coherence[2:]).all()
    np.testing.assert_array_equal(invert_nsbas(unw, net, min_valid=1).solved, [1, 1, 1, 0])
