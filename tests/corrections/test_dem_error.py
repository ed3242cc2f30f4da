"""DEM-error correction (Fattahi & Amelung 2013), scored against the simulator's truth.

The main scene goes through LiCSAR files and the reader, so the baselines' sign and units
on the way from the `baselines` file to the fit are tested too; the others are built in
memory (`Scene.to_ifgstack`), which is faster.
"""

import numpy as np
import pydantic
import pytest

from mtinsar.analysis.model import linear_velocity
from mtinsar.config import DemErrorConfig, RunConfig
from mtinsar.conventions import years_since
from mtinsar.corrections.dem_error import correct_dem_error, deformation_design
from mtinsar.errors import InputError
from mtinsar.simulate import SLANT_RANGE_M, SceneConfig, load_truth, simulate_scene, write_licsar
from mtinsar.simulate.score import referenced_truth, score_result
from mtinsar.workflows.pipeline import load_input, run_sbas

#: Absolute tolerance on "a clean scene is not made worse" [m/yr]: see test_ramp.CLEAN_FLOOR
#: (0.01 mm/yr, ~100x below Sentinel-1 velocity precision; the clean SBAS result is exact
#: to float32 rounding, ~1e-9 m/yr, so a purely relative test would fail on noise).
CLEAN_FLOOR = 1e-5
SCENE = {"ny": 80, "nx": 100, "n_dates": 30}


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """(truth, stack, SBAS result) of one scene with the given nuisances, cached by name."""
    cache = {}

    def get(name, licsar=False, **nuisances):
        if name not in cache:
            scene = simulate_scene(SceneConfig.noise_free(**SCENE, **nuisances))
            if licsar:
                path = write_licsar(scene, tmp_path_factory.mktemp(name) / "frame")
                truth, stack = load_truth(path), load_input(path, RunConfig())
            else:
                truth, stack = scene.truth, scene.to_ifgstack()
            cache[name] = (truth, stack, run_sbas(stack, RunConfig()).result)
        return cache[name]

    return get


def _correct(stack, result, **kwargs):
    t = years_since(result["time"].values, result["time"].values[0])
    return correct_dem_error(
        result["displacement"].values,
        result["bperp"].values,
        stack["incidence"].values,
        t,
        slant_range=SLANT_RANGE_M,
        reference=(result.attrs["reference_y"], result.attrs["reference_x"]),
        reference_radius=RunConfig().reference.radius,
        **kwargs,
    )


def _velocity(result, displacement) -> np.ndarray:
    t = years_since(result["time"].values, result["time"].values[0])
    v, _ = linear_velocity(t, displacement.reshape(len(t), -1).astype(float))
    return v.reshape(displacement.shape[1:])


def _velocity_rmse(result, truth, displacement) -> float:
    scored = result.assign(
        displacement=(("time", "y", "x"), displacement),
        velocity=(("y", "x"), _velocity(result, displacement)),
    )
    return score_result(scored, truth)["velocity_rmse"]


@pytest.mark.parametrize("seed", [0, 2])
def test_dem_error_is_recovered_and_velocity_error_removed(frames, seed):
    truth, stack, result = frames(f"dem{seed}", licsar=seed == 0, dem_error=True, seed=seed)
    before = _velocity_rmse(result, truth, result["displacement"].values)
    corrected, fit = _correct(stack, result)
    after = _velocity_rmse(result, truth, corrected)
    assert after <= 0.5 * before, (before, after)
    assert after <= 0.15 * before

    # The estimate is relative to the reference area: compare up to one constant.
    coherent = truth["coherent"].values
    diff = (fit.dem_error - truth["dem_error"].values)[coherent]
    diff -= np.median(diff)
    assert np.sqrt(np.mean(diff**2)) <= 1.5  # [m], for a DEM error of std 10 m
    assert np.corrcoef(fit.dem_error[coherent], truth["dem_error"].values[coherent])[0, 1] > 0.99
    _, disp = referenced_truth(truth, result.attrs["reference_y"], result.attrs["reference_x"])
    assert np.sqrt(np.mean((corrected - disp)[:, coherent] ** 2)) <= 2e-4  # [m]


@pytest.mark.parametrize("seed", [0, 1])
def test_the_dem_part_of_a_noisy_error_is_removed(frames, seed):
    """With decorrelation noise, compare with the same noise realisation without DEM error.

    Measured: the DEM part of the velocity error drops 56 % (seed 0, where it is only
    0.09 mm/yr and the noise leaking into the estimate is comparable) and 80 % (seed 1).
    """
    truth, stack, result = frames(f"dem_noisy{seed}", dem_error=True, decorrelation=True, seed=seed)
    _, _, no_dem = frames(f"noisy{seed}", decorrelation=True, seed=seed)
    target = _velocity(no_dem, no_dem["displacement"].values)
    coherent = truth["coherent"].values
    before = np.sqrt(np.mean((result["velocity"].values - target)[coherent] ** 2))
    corrected, _ = _correct(stack, result)
    after = np.sqrt(np.mean((_velocity(result, corrected) - target)[coherent] ** 2))
    assert after <= 0.5 * before, (before, after)


@pytest.mark.parametrize("seed", [0, 1, 3])
def test_clean_scene_is_left_alone(frames, seed):
    """With the default model too, though the scene does more than it describes.

    The simulated deformation has an acceleration (in MintPy's default quadratic model),
    an annual term and a 3 cm step at `step_date` (not in it). With those in the model, a
    clean scene is untouched. With the default model the unmodelled part leaks into the DEM
    error in proportion to its correlation with the baselines: MintPy's estimator (least
    squares on the phase) loses 0.03 mm/yr on seed 1 and 0.40 mm/yr on seed 3; the phase
    velocity with Tukey reweighting (default) 0.002 and 0.006 mm/yr, under CLEAN_FLOOR.
    """
    truth, stack, result = frames(f"clean{seed}", seed=seed)
    t0 = result["time"].values[0]
    step = years_since(np.array([np.datetime64(truth.attrs["step_date"])]), t0)
    before = _velocity_rmse(result, truth, result["displacement"].values)
    corrected, _ = _correct(stack, result, periods=[1.0], step_years=step)
    after = _velocity_rmse(result, truth, corrected)
    assert after <= 1.05 * before + CLEAN_FLOOR, (before, after)
    corrected, _ = _correct(stack, result)
    after = _velocity_rmse(result, truth, corrected)
    assert after <= 1.05 * before + CLEAN_FLOOR, (before, after)
    corrected, _ = _correct(stack, result, phase_velocity=False, robust=False)
    leak = _velocity_rmse(result, truth, corrected)
    assert leak >= 3 * after  # the regression this guards against: 10x and more here


def test_unmodelled_step_does_not_bias_a_noisy_dem_correction(frames):
    """Seed 3 (decorrelation noise, 10 m DEM error, default quadratic model): the corrected
    velocity is as good as the same noise realisation without any DEM error.

    Measured: 0.98 mm/yr before, 0.437 after, 0.444 for the scene without DEM error
    (uncorrected); MintPy's estimator 0.595, as it takes part of the step for DEM error.
    """
    truth, stack, result = frames("dem_noisy3", dem_error=True, decorrelation=True, seed=3)
    _, _, no_dem = frames("noisy3", decorrelation=True, seed=3)
    floor = _velocity_rmse(no_dem, truth, no_dem["displacement"].values)
    corrected, _ = _correct(stack, result)
    after = _velocity_rmse(result, truth, corrected)
    assert after <= 1.02 * floor, (floor, after)
    corrected, _ = _correct(stack, result, phase_velocity=False, robust=False)
    assert _velocity_rmse(result, truth, corrected) >= 1.2 * floor  # the method matters here


@pytest.mark.parametrize("estimator", [{}, {"phase_velocity": False, "robust": False}])
def test_pixels_missing_dates_are_solved_on_their_valid_dates(estimator):
    rng = np.random.default_rng(1)
    n, shape = 25, (6, 7)
    t = np.sort(rng.uniform(0, 2, n))
    t[0] = 0
    bperp = rng.normal(0, 60, n)
    bperp[0] = 0
    incidence = np.full(shape, 38.0)
    dz = rng.normal(0, 10, shape)
    velocity = rng.normal(0, 0.01, shape)
    factor = dz / (SLANT_RANGE_M * np.sin(np.deg2rad(incidence)))
    cube = velocity * t[:, None, None] + bperp[:, None, None] * factor
    cube = cube - cube[0]
    cube[3:9, 1, 2] = np.nan  # a few dates missing: still solvable
    cube[2:, 4, 4] = np.nan  # two dates left: too few for 4 parameters
    corrected, fit = correct_dem_error(cube, bperp, incidence, t, poly_order=2, **estimator)
    solvable = np.ones(shape, bool)
    solvable[4, 4] = False
    np.testing.assert_allclose(fit.dem_error[solvable], dz[solvable], atol=1e-6)
    np.testing.assert_allclose(fit.model[1][solvable], velocity[solvable], atol=1e-9)
    assert np.isnan(fit.dem_error[4, 4])
    np.testing.assert_array_equal(corrected[:, 4, 4], cube[:, 4, 4])  # left as it was
    np.testing.assert_array_equal(np.isnan(corrected), np.isnan(cube))
    expected = velocity * t[:, None, None]
    ok = np.isfinite(cube) & solvable
    np.testing.assert_allclose(corrected[ok], expected[ok], atol=1e-9)
    assert np.nanmax(fit.residual_rms) < 1e-9


def test_deformation_design_columns():
    t = np.array([0.0, 0.5, 1.0, 2.0])
    g = deformation_design(t, poly_order=2, periods=[1.0], step_years=[0.75])
    np.testing.assert_allclose(g[:, 0], 1)
    np.testing.assert_allclose(g[:, 1], t)
    np.testing.assert_allclose(g[:, 2], t**2 / 2)  # coefficient = acceleration
    np.testing.assert_allclose(g[:, 3], np.cos(2 * np.pi * t), atol=1e-12)
    np.testing.assert_allclose(g[:, 5], [0, 0, 1, 1])
    with pytest.raises(ValueError, match="periods"):
        deformation_design(t, periods=[0.0])


def test_bad_inputs_are_refused():
    cube = np.zeros((5, 4, 4))
    t = np.arange(5) / 10
    inc = np.full((4, 4), 35.0)
    with pytest.raises(InputError, match="bperp"):
        correct_dem_error(cube, np.array([0, 1, np.nan, 2, 3]), inc, t)
    with pytest.raises(InputError, match="bperp"):
        correct_dem_error(cube, np.zeros(4), inc, t)
    with pytest.raises(InputError, match="dummy baselines"):
        correct_dem_error(cube, np.zeros(5), inc, t)
    with pytest.raises(InputError, match="incidence grid"):
        correct_dem_error(cube, np.arange(5.0), inc[:3], t)
    with pytest.raises(pydantic.ValidationError):
        DemErrorConfig(poly_order=0)
    with pytest.raises(pydantic.ValidationError):
        DemErrorConfig(slant_range_m=-1)
    with pytest.raises(pydantic.ValidationError, match="YYYY-MM-DD"):
        DemErrorConfig(step_dates=["2020-13-01"])
    assert DemErrorConfig(step_dates=["2020-02-29"]).step_dates == ["2020-02-29"]


def test_compiled_reweighting_equals_the_vectorised_loop():
    from mtinsar.corrections.dem_error import _irls, _per_pixel

    rng = np.random.default_rng(3)
    g = rng.normal(size=(41, 3))
    y = g @ rng.normal(size=(3, 500)) + rng.normal(0, 0.1, (41, 500))
    y[rng.random(y.shape) < 0.05] += 3.0  # outliers the reweighting must drop
    w = np.ones_like(y)
    compiled = _irls(y, g, w, robust=True)  # shared design: the numba kernel
    looped = _irls(y, _per_pixel(g, 500), w, robust=True)  # per-pixel design: NumPy
    np.testing.assert_allclose(compiled, looped, rtol=0, atol=1e-10)
    plain = _irls(y, g, w, robust=False)
    assert np.abs(compiled - plain).max() > 1e-3  # the reweighting did something
