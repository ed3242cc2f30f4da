"""Per-date ramp removal, scored against known ramps and the simulator's truth."""

import numpy as np
import pydantic
import pytest

from mtinsar.analysis.model import linear_velocity
from mtinsar.config import RampConfig, RunConfig
from mtinsar.conventions import years_since
from mtinsar.corrections.ramp import correct_ramp, fit_per_date, ramp_basis, reference_value
from mtinsar.simulate import SceneConfig, simulate_scene
from mtinsar.simulate.score import referenced_truth, score_result
from mtinsar.workflows.pipeline import run_sbas

#: Absolute tolerance on "a clean scene is not made worse" [m/yr]. The clean SBAS velocity is
#: exact to ~1e-9 m/yr (float32 rounding), so a relative 5 % alone would fail on noise; 0.01
#: mm/yr is ~100x below the best velocity precision of Sentinel-1 time series (~1 mm/yr)
#: and ~500x below the nuisance errors of these scenes, so passing it means no harm done.
CLEAN_FLOOR = 1e-5
SCENE = {"ny": 80, "nx": 100, "n_dates": 30}


def _run(**nuisances):
    scene = simulate_scene(SceneConfig.noise_free(**SCENE, **nuisances))
    result = run_sbas(scene.to_ifgstack(), RunConfig()).result
    return scene, result


def _velocity_rmse(result, truth, displacement) -> float:
    """Velocity RMSE vs truth after refitting the velocity of a corrected time series."""
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
def ramp_scene(request):
    return _run(ramp=True, seed=request.param)


@pytest.fixture(scope="module", params=[0, 1])
def clean_scene(request):
    return _run(seed=request.param)


def _bowl_cube(n_dates=12, shape=(60, 70), seed=0):
    """Known per-date ramps plus a subsiding bowl that covers ~15 % of the scene."""
    rng = np.random.default_rng(seed)
    basis = ramp_basis(shape, 2)
    coef = rng.normal(0, 0.01, size=(n_dates, 6))
    coef[0] = 0
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    bowl = np.clip(1 - ((yy - 20) ** 2 + (xx - 45) ** 2) / 15**2, 0, None) ** 2
    t = np.arange(n_dates) / 10
    cube = np.einsum("tk,kyx->tyx", coef, basis) - 0.08 * t[:, None, None] * bowl
    return cube, coef, basis


def test_robust_fit_recovers_known_ramps_despite_deformation():
    cube, coef, basis = _bowl_cube()
    fit = fit_per_date(cube, basis)
    np.testing.assert_allclose(fit.coefficients, coef, atol=1e-6)
    assert np.all(fit.weights[20, 45] == 0)  # the bowl centre is excluded
    plain = fit_per_date(cube, basis, robust=False)
    assert np.abs(plain.coefficients - coef).max() > 1e-3  # the bowl bends a plain fit


def test_ramp_correction_halves_velocity_error(ramp_scene):
    scene, result = ramp_scene
    before = _velocity_rmse(result, scene.truth, result["displacement"].values)
    for order in (1, 2):
        corrected, fit = correct_ramp(
            result["displacement"].values, order, result["mask"].values, **_reference(result)
        )
        after = _velocity_rmse(result, scene.truth, corrected)
        assert after <= 0.5 * before, (order, before, after)
        assert fit.coefficients.shape == (result.sizes["time"], 3 if order == 1 else 6)
    # The simulated ramp is a plane plus a weaker quadratic part: order 2 removes all of it.
    # What remains is one constant: the truth is scored relative to the reference pixel, the
    # result relative to the median of the reference window, where the scene may deform.
    t = years_since(result["time"].values, result["time"].values[0])
    v, _ = linear_velocity(t, corrected.reshape(len(t), -1).astype(float))
    vel, _ = referenced_truth(scene.truth, *_reference(result)["reference"])
    error = (v.reshape(vel.shape) - vel)[scene.truth["coherent"].values]
    assert error.std() <= 0.01 * before


def test_ramp_correction_leaves_clean_scene_alone(clean_scene):
    scene, result = clean_scene
    before = _velocity_rmse(result, scene.truth, result["displacement"].values)
    for order in (1, 2):
        corrected, _ = correct_ramp(
            result["displacement"].values, order, result["mask"].values, **_reference(result)
        )
        after = _velocity_rmse(result, scene.truth, corrected)
        assert after <= 1.05 * before + CLEAN_FLOOR, (order, before, after)


def test_nan_pixels_stay_nan_and_result_is_referenced():
    cube, _, _ = _bowl_cube()
    cube = cube.astype(np.float32)
    cube[:, 5:9, 10:30] = np.nan  # a hole in every date
    cube[4, 50:, :] = np.nan  # part of one date missing
    ref = (40, 10)
    corrected, fit = correct_ramp(cube, 2, reference=ref, reference_radius=2)
    assert corrected.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(corrected), np.isnan(cube))
    np.testing.assert_allclose(reference_value(corrected, ref, 2), 0, atol=1e-7)
    # Away from the bowl the ramps are gone, the missing rows notwithstanding.
    assert np.nanmax(np.abs(corrected[:, 45:, :20])) < 1e-5
    assert np.isnan(fit.weights[5:9, 10:30]).all()


def test_date_without_data_stays_uncorrected():
    cube, _, _ = _bowl_cube()
    cube[3, :, :] = np.nan
    cube[3, 0, :4] = 0.01  # 4 valid pixels cannot support a 6-term fit
    corrected, fit = correct_ramp(cube, 2)
    assert np.isnan(fit.coefficients[3]).all()
    np.testing.assert_array_equal(corrected[3, 0, :4], cube[3, 0, :4])


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="time, y, x"):
        correct_ramp(np.zeros((10, 10)))
    with pytest.raises(ValueError, match="order"):
        ramp_basis((10, 10), 3)
    with pytest.raises(pydantic.ValidationError):
        RampConfig(order=3)
    with pytest.raises(pydantic.ValidationError):
        RampConfig(unknown_key=True)
    assert RampConfig().enabled is False
