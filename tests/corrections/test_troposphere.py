"""Phase-elevation troposphere correction, scored against known delays and simulator truth."""

import numpy as np
import pydantic
import pytest

from mtinsar.analysis.model import linear_velocity
from mtinsar.config import RunConfig, TroposphereConfig
from mtinsar.conventions import years_since
from mtinsar.corrections.ramp import correct_ramp, ramp_basis
from mtinsar.corrections.troposphere import correct_phase_elevation
from mtinsar.errors import InputError
from mtinsar.simulate import SceneConfig, simulate_scene
from mtinsar.simulate.score import score_result
from mtinsar.workflows.pipeline import run_sbas

#: Absolute tolerance on "a clean scene is not made worse" [m/yr]: see test_ramp.CLEAN_FLOOR
#: (0.01 mm/yr, ~100x below Sentinel-1 velocity precision; the clean SBAS result is exact
#: to float32 rounding, ~1e-9 m/yr, so a purely relative test would fail on noise).
CLEAN_FLOOR = 1e-5
SCENE = {"ny": 80, "nx": 100, "n_dates": 30}


def _run(**nuisances):
    scene = simulate_scene(SceneConfig.noise_free(**SCENE, **nuisances))
    stack = scene.to_ifgstack()
    return scene, stack, run_sbas(stack, RunConfig()).result


def _velocity_rmse(result, truth, displacement) -> float:
    t = years_since(result["time"].values, result["time"].values[0])
    v, _ = linear_velocity(t, displacement.reshape(len(t), -1).astype(float))
    scored = result.assign(
        displacement=(("time", "y", "x"), displacement),
        velocity=(("y", "x"), v.reshape(displacement.shape[1:])),
    )
    return score_result(scored, truth)["velocity_rmse"]


def _reference(result) -> dict:
    return {
        "reference": (result.attrs["reference_y"], result.attrs["reference_x"]),
        "reference_radius": RunConfig().reference.radius,
    }


@pytest.fixture(scope="module", params=[0, 1])
def stratified_scene(request):
    return _run(stratified=True, seed=request.param)


@pytest.fixture(scope="module", params=[0, 1])
def clean_scene(request):
    return _run(seed=request.param)


def _terrain_cube(n_dates=12, shape=(60, 70), seed=0):
    """Known ratios K_t and planar ramps over rough terrain, plus subsidence in the valley."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(float)
    height = 400 + 8 * xx + 150 * np.sin(yy / 6) * np.cos(xx / 9)  # rises to the east
    k = rng.normal(0, 1e-5, n_dates)
    k[0] = 0
    ramp = rng.normal(0, 0.01, (n_dates, 3))
    ramp[0] = 0
    valley = np.clip(1 - ((yy - 30) ** 2 + (xx - 12) ** 2) / 12**2, 0, None) ** 2
    t = np.arange(n_dates) / 10
    cube = (
        k[:, None, None] * height
        + np.einsum("tk,kyx->tyx", ramp, ramp_basis(shape, 1))
        - 0.06 * t[:, None, None] * valley
    )
    return cube, height, k


def test_robust_joint_fit_recovers_known_ratios():
    cube, height, k = _terrain_cube()
    _, fit = correct_phase_elevation(cube, height, ramp_order=1)
    np.testing.assert_allclose(fit.ratio, k, atol=1e-9)
    # Without the joint ramp, the eastward rise of the terrain takes part of the ramp.
    _, no_ramp = correct_phase_elevation(cube, height, ramp_order=0)
    assert np.abs(no_ramp.ratio - k).max() > 1e-6
    # Without reweighting, the subsiding valley (low ground) biases the ratio.
    _, plain = correct_phase_elevation(cube, height, ramp_order=1, robust=False)
    assert np.abs(plain.ratio - k).max() > 1e-7


def test_correction_halves_velocity_error_of_stratified_scene(stratified_scene):
    scene, stack, result = stratified_scene
    before = _velocity_rmse(result, scene.truth, result["displacement"].values)
    for window in (0, 25):
        corrected, fit = correct_phase_elevation(
            result["displacement"].values,
            stack["height"].values,
            result["mask"].values,
            window=window,
            **_reference(result),
        )
        after = _velocity_rmse(result, scene.truth, corrected)
        assert after <= 0.5 * before, (window, before, after)
        assert after <= 0.01 * before  # the only nuisance is exactly height-proportional
        assert (fit.window_ratio is None) == (window == 0)


def test_correction_leaves_clean_scene_alone(clean_scene):
    scene, stack, result = clean_scene
    before = _velocity_rmse(result, scene.truth, result["displacement"].values)
    for window in (0, 25):
        corrected, _ = correct_phase_elevation(
            result["displacement"].values,
            stack["height"].values,
            result["mask"].values,
            window=window,
            **_reference(result),
        )
        after = _velocity_rmse(result, scene.truth, corrected)
        assert after <= 1.05 * before + CLEAN_FLOOR, (window, before, after)


def test_troposphere_then_ramp_removes_both():
    """The recommended order: phase-elevation with a joint ramp, then the ramp stage."""
    scene, stack, result = _run(stratified=True, ramp=True)
    disp, mask, ref = result["displacement"].values, result["mask"].values, _reference(result)
    before = _velocity_rmse(result, scene.truth, disp)
    step1, _ = correct_phase_elevation(disp, stack["height"].values, mask, ramp_order=2, **ref)
    step2, _ = correct_ramp(step1, 2, mask, **ref)
    assert _velocity_rmse(result, scene.truth, step2) <= 0.05 * before


def test_nan_height_gives_nan_and_windows_without_relief_fall_back():
    cube, height, k = _terrain_cube()
    height[:, :20] = 400.0  # flat west: windows there cannot estimate a ratio
    cube = cube.astype(np.float32)
    height[0, 0] = np.nan
    corrected, fit = correct_phase_elevation(cube, height, ramp_order=1, window=20)
    assert corrected.dtype == np.float32
    assert np.isnan(corrected[:, 0, 0]).all()
    assert np.isfinite(corrected[:, 1:, 1:]).all()
    west = fit.window_ratio[:, :, 0]
    np.testing.assert_allclose(west, np.broadcast_to(fit.ratio[:, None], west.shape), atol=1e-15)
    assert np.abs(fit.window_ratio[:, :, 2] - fit.ratio[:, None]).max() > 0  # own estimates


def test_bad_inputs_are_refused():
    cube, height, _ = _terrain_cube()
    with pytest.raises(InputError, match="height grid"):
        correct_phase_elevation(cube, height[:-1])
    with pytest.raises(InputError, match="troposphere.enabled"):
        correct_phase_elevation(cube, np.full_like(height, np.nan))
    with pytest.raises(pydantic.ValidationError):
        TroposphereConfig(window=-1)
    with pytest.raises(pydantic.ValidationError):
        TroposphereConfig(ramp_order=3)
