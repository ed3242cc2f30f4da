"""The model state of NRT updates: recursive least squares equal to a batch fit, and the
one pass over the history equal to the same sums taken on the whole cube in memory."""

import dask.array as da
import numpy as np
import pytest

from mtinsar.analysis.model import fit_model
from mtinsar.config import ModelConfig
from mtinsar.nrt.state import (
    add_date,
    build_state,
    correct_history,
    fixed_design,
    history_pass,
    mid_span_velocity,
    solve_state,
)


@pytest.mark.parametrize(
    "model",
    [ModelConfig(), ModelConfig(acceleration=True, annual=True, steps=["2020-03-01"])],
)
def test_recursive_model_fit_equals_fit_model(model):
    rng = np.random.default_rng(1)
    dates = np.datetime64("2019-06-01") + 12 * np.arange(40).astype("timedelta64[D]")
    disp = rng.normal(0, 0.01, (40, 6, 7)) + 0.02 * np.arange(40)[:, None, None] / 30
    disp[rng.random(disp.shape) < 0.05] = np.nan
    state = build_state(dates[:30], disp[:30], model)
    for k in range(30, 40):
        row = fixed_design(dates[k : k + 1], state.origin, model)[0][0]
        state = add_date(state, row, disp[k])
    sol = solve_state(state)
    t = (dates - dates[0]).astype(float) / 365.25
    v, v_std = mid_span_velocity(sol, state.names, (t[0] + t[-1]) / 2)
    fit = fit_model(dates, disp.reshape(40, -1), model)
    np.testing.assert_allclose(v.ravel(), fit.velocity, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(v_std.ravel(), fit.velocity_std, rtol=1e-6)
    np.testing.assert_allclose(sol.rms.ravel(), fit.residual_rms, rtol=1e-6)


def _cube(seed=2, n=25, ny=13, nx=11):
    rng = np.random.default_rng(seed)
    dates = np.datetime64("2021-01-05") + 12 * np.arange(n).astype("timedelta64[D]")
    cube = (rng.normal(0, 0.004, (n, ny, nx)) + 0.03 * np.arange(n)[:, None, None] / n).astype(
        np.float32
    )
    cube[rng.random(cube.shape) < 0.03] = np.nan  # pixels lacking some dates
    return dates, cube


def test_history_pass_by_blocks_equals_the_whole_cube():
    """Rows, gainᵀd, the gaps and the built state do not depend on how the cube is blocked,
    and equal sums taken directly on the cube."""
    dates, cube = _cube()
    model = ModelConfig(annual=True)
    gain = np.random.default_rng(3).normal(size=(dates.size, 3))
    rows = np.array([0, 4, 20])
    whole = history_pass(cube, dates, rows, model, gain)
    blocked = history_pass(da.from_array(cube, chunks=(7, 5, 4)), dates, rows, model, gain)
    for sums in (whole, blocked):
        np.testing.assert_array_equal(sums.rows, cube[rows])
        expected = np.einsum("tm,tyx->myx", gain, np.nan_to_num(cube.astype(np.float64)))
        np.testing.assert_allclose(sums.proj, expected, rtol=1e-5, atol=1e-7)
        lacking = ~np.isfinite(cube).all(axis=0).ravel()
        np.testing.assert_array_equal(sums.gaps, np.flatnonzero(lacking))
        np.testing.assert_array_equal(
            sums.gap_valid, np.isfinite(cube.reshape(dates.size, -1))[:, lacking]
        )
    direct = build_state(dates, cube, model)
    for name in ("normal", "gaps", "gap_normal", "rhs", "sumsq", "count"):
        np.testing.assert_allclose(getattr(blocked.state, name), getattr(direct, name), rtol=1e-12)
    assert direct.gaps.size and np.array_equal(direct.gaps, np.flatnonzero(lacking))
    assert history_pass(cube, dates, rows, model).proj is None


@pytest.mark.parametrize("rank", [1, 4])
def test_corrected_state_equals_the_state_of_the_corrected_cube(rank):
    """Moving the history by gain @ delta through the pass's sums gives the state built
    from the moved cube, also for pixels lacking dates."""
    dates, cube = _cube(seed=5)
    rng = np.random.default_rng(rank)
    gain = rng.normal(0, 0.5, (dates.size, rank))
    delta = rng.normal(0, 0.002, (rank, *cube.shape[1:]))
    model = ModelConfig(acceleration=True)
    sums = history_pass(da.from_array(cube, chunks=(25, 6, 6)), dates, np.array([0]), model, gain)
    moved = correct_history(sums.state, dates, sums, gain, delta, model)
    shifted = cube.astype(np.float64) + np.tensordot(gain, delta, axes=1)
    expected = build_state(dates, shifted, model)
    np.testing.assert_allclose(moved.rhs, expected.rhs, rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(moved.sumsq, expected.sumsq, rtol=1e-5, atol=1e-10)
    assert sums.gaps.size > 10  # the masked branch was exercised


def test_history_pass_holds_a_block_at_a_time():
    """The pass over a lazy cube never holds it whole: peak memory is a few blocks."""
    import tracemalloc

    n, ny, nx = 120, 200, 200
    dates = np.datetime64("2020-01-01") + 6 * np.arange(n).astype("timedelta64[D]")
    cube = da.random.default_rng(0).normal(0, 0.01, (n, ny, nx), chunks=(n, 40, 40))
    cube = cube.astype(np.float32)
    gain = np.ones((n, 2))
    history_pass(cube[:, :40, :40], dates, np.array([0]), ModelConfig(), gain)  # one-off costs
    tracemalloc.start()
    sums = history_pass(cube, dates, np.array([0, n - 1]), ModelConfig(), gain)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    whole = n * ny * nx * 4
    assert sums.proj.shape == (2, ny, nx) and sums.state.count.min() == n
    assert peak < 0.5 * whole, f"peak {peak / 1e6:.0f} MB vs cube {whole / 1e6:.0f} MB"


def test_singular_pixels_are_nan():
    """A step after the last date, or too few dates, leaves nothing to solve: NaN."""
    dates = np.datetime64("2021-01-01") + 12 * np.arange(6).astype("timedelta64[D]")
    disp = np.random.default_rng(0).normal(0, 0.01, (6, 1, 3))
    disp[2:, 0, 2] = np.nan  # two dates: no degree of freedom for offset + velocity
    plain = solve_state(build_state(dates, disp, ModelConfig()))
    assert np.isfinite(plain.params[:, 0, :2]).all() and np.isnan(plain.params[:, 0, 2]).all()
    assert np.isnan(plain.s2[0, 2]) and np.isfinite(plain.s2[0, :2]).all()
    late = solve_state(build_state(dates, disp, ModelConfig(steps=["2022-01-01"])))
    assert np.isnan(late.params).all() and np.isnan(late.ninv).all()
    assert np.isnan(late.gap_ninv).all() and late.gaps.tolist() == [2]
