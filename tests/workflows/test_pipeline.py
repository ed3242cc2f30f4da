"""End-to-end SBAS on simulated scenes, scored against the simulator's truth."""

import json

import numpy as np
import pytest

from mtinsar import stack as stack_store
from mtinsar.analysis.model import linear_velocity
from mtinsar.analysis.network import Network
from mtinsar.config import RunConfig
from mtinsar.errors import NetworkError
from mtinsar.simulate import SceneConfig, load_truth, simulate_scene, write_licsar
from mtinsar.simulate.score import referenced_truth, score_result
from mtinsar.workflows.pipeline import load_input, run_sbas


@pytest.fixture(scope="module")
def default_run(default_frame):
    stack = load_input(default_frame, RunConfig())
    return stack, run_sbas(stack, RunConfig()), load_truth(default_frame)


def test_noise_free_scene_is_recovered_exactly(noise_free_frame):
    sbas = run_sbas(load_input(noise_free_frame, RunConfig()), RunConfig())
    truth = load_truth(noise_free_frame)
    res = sbas.result
    vel, disp = referenced_truth(truth, res.attrs["reference_y"], res.attrs["reference_x"])
    assert np.isfinite(res["velocity"].values).all()
    assert np.abs(res["velocity"].values - vel).max() <= 1e-4
    assert np.abs(res["displacement"].values - disp).max() <= 1e-4
    np.testing.assert_allclose(res["temporal_coherence"].values, 1.0, atol=1e-4)
    assert sbas.summary["n_pixels_reliable"] == res["mask"].size


def test_default_scene_velocity_within_noise_bound(default_run):
    """Velocity RMSE is no worse than the injected noise explains.

    The SBAS velocity of a pixel carries two noise terms the skeleton does not correct:
    1. the per-date nuisances (turbulent and stratified troposphere, DEM-error term), which
       are consistent in every pair, so the inversion passes them through unchanged: their
       contribution is exactly the linear fit of `truth.nuisance` relative to the
       reference pixel;
    2. decorrelation noise, independent between pairs with the Cramér-Rao standard deviation
       sigma_k = sqrt((1 - g_k^2) / (2 L g_k^2)) (L looks, g_k the pair coherence); through the
       linear maps inversion -> velocity fit, velocity = c . unw, its variance is
       sum_k c_k^2 sigma_k^2 (lambda / 4 pi)^2, with c from the full network (pixels that lost
       pairs have somewhat larger variance, hence the 30 % margin).
    The expected RMSE is sqrt(mean(term1^2 + term2)); the test asks the measured RMSE to lie
    within [0.5, 1.3] times it, so both a bad estimator and a bound that is too loose fail.
    """
    stack, sbas, truth = default_run
    res = sbas.result
    ry, rx = res.attrs["reference_y"], res.attrs["reference_x"]
    t_years = (res["time"].values - res["time"].values[0]) / np.timedelta64(1, "D") / 365.25

    nuis = truth["nuisance"].values
    v_nuis, _ = linear_velocity(t_years, nuis.reshape(nuis.shape[0], -1))
    v_nuis = v_nuis.reshape(nuis.shape[1:])
    term1 = v_nuis - v_nuis[ry, rx]

    net = Network.from_pair_dates(stack["ref_date"].values, stack["sec_date"].values)
    tc = t_years - t_years.mean()
    g = tc / (tc @ tc)  # velocity = g . displacement
    c = g[1:] @ np.linalg.pinv(net.design_matrix())  # velocity per unit pair phase
    coh = stack["coh"].values.astype(float)
    looks = truth.attrs["looks"]
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma2 = (1 - coh**2) / (2 * looks * coh**2)
    scale = (stack.attrs["wavelength"] / (4 * np.pi)) ** 2
    term2 = np.einsum("k,kyx->yx", c**2, np.nan_to_num(sigma2)) * scale

    score = score_result(res, truth)
    coherent = truth["coherent"].values & np.isfinite(res["velocity"].values)
    expected = np.sqrt(np.mean(term1[coherent] ** 2 + term2[coherent]))
    assert 0.5 * expected <= score["velocity_rmse"] <= 1.3 * expected, (score, expected)
    assert score["coverage"] >= 0.95


def test_disconnected_pixels_are_masked_and_counted(default_run):
    """The simulated ploughed field loses every pair spanning its ploughing date."""
    _, sbas, truth = default_run
    res = sbas.result
    n_comp = res["n_components"].values
    has_data = res["n_valid_pairs"].values > 0
    disconnected = has_data & (n_comp > 1)
    field = truth["ploughed"].values
    assert field.sum() > 20 and (n_comp[field & has_data] >= 2).all()
    assert sbas.summary["n_pixels_disconnected"] == disconnected.sum() >= (field & has_data).sum()
    assert np.isnan(res["velocity"].values[disconnected]).all()
    assert not res["mask"].values[disconnected].any()
    assert sbas.summary["n_pixels_no_data"] == (~has_data).sum() >= truth["water"].values.sum()


def test_uplift_is_positive(noise_free_frame):
    res = run_sbas(load_input(noise_free_frame, RunConfig()), RunConfig()).result
    truth = load_truth(noise_free_frame)
    vel, _ = referenced_truth(truth, res.attrs["reference_y"], res.attrs["reference_x"])
    up = vel > 0.01  # the simulated uplift zone, relative to the reference
    assert up.sum() > 20
    assert (res["velocity"].values[up] > 0).all()
    assert (res["displacement"].values[-1][up] > 0).all()
    down = vel < -0.05
    assert (res["velocity"].values[down] < 0).all()


def test_stack_store_gives_the_same_result_as_the_folder(noise_free_frame, tmp_path):
    cfg = RunConfig()
    direct = run_sbas(load_input(noise_free_frame, cfg), cfg).result
    stack_store.save(load_input(noise_free_frame, cfg), tmp_path / "stack.zarr", chunk_size=32)
    cfg.ingest.chunk_size = 32  # several blocks: exercises the block loop too
    stored = run_sbas(load_input(tmp_path / "stack.zarr", cfg), cfg).result
    np.testing.assert_allclose(stored["velocity"], direct["velocity"], atol=1e-7)
    np.testing.assert_allclose(stored["displacement"], direct["displacement"], atol=1e-7)


def test_whole_width_bands_give_the_result_of_square_blocks(default_frame):
    # The simulator writes striped GeoTIFFs, as LiCSAR does: the blocks are bands of
    # chunk_size² pixels, kept so by the run; the result is that of square blocks.
    cfg = RunConfig()
    cfg.ingest.chunk_size = 64
    stack = load_input(default_frame, cfg)
    assert stack["unw"].chunks[1:] == ((16,) * 12 + (8,), (250,))  # 13 bands of 64² px
    bands = run_sbas(stack, cfg)
    squares = run_sbas(stack.chunk({"y": 64, "x": 64}), cfg)
    for name in ("n_components", "closure_errors", "mask"):
        np.testing.assert_array_equal(bands.result[name], squares.result[name])
    for name in ("displacement", "velocity", "temporal_coherence"):
        np.testing.assert_allclose(bands.result[name], squares.result[name], rtol=0, atol=1e-6)
    assert bands.summary["reference"] == squares.summary["reference"]


def test_given_reference_point_is_used(noise_free_frame):
    truth = load_truth(noise_free_frame)
    lon, lat = float(truth["x"][10]), float(truth["y"][12])
    cfg = RunConfig.model_validate({"reference": {"lon": lon, "lat": lat}})
    res = run_sbas(load_input(noise_free_frame, cfg), cfg).result
    assert (res.attrs["reference_y"], res.attrs["reference_x"]) == (12, 10)
    assert res.attrs["reference_method"] == "given"


def test_network_split_into_groups_is_refused(noise_free_frame):
    stack = load_input(noise_free_frame, RunConfig())
    dates = stack_store.dates(stack)
    cut = dates[len(dates) // 2]
    bridging = (stack["ref_date"].values < cut) & (stack["sec_date"].values >= cut)
    with pytest.raises(NetworkError, match="2 groups"):
        run_sbas(stack.isel(pair=~bridging), RunConfig())


def test_streamed_result_equals_the_in_memory_one(noise_free_frame, tmp_path):
    cfg = RunConfig()
    cfg.ingest.chunk_size = 24  # several blocks, uneven at the edges
    stack = load_input(noise_free_frame, cfg)
    in_memory = run_sbas(stack, cfg).result
    streamed = run_sbas(stack, cfg, store=tmp_path / "work.zarr")
    assert streamed.result["displacement"].chunks is not None  # lazy, read from the store
    assert (tmp_path / "work.zarr" / "zarr.json").is_file()
    for name in ("displacement", "velocity", "temporal_coherence", "mask", "n_components"):
        np.testing.assert_array_equal(streamed.result[name].values, in_memory[name].values)
    assert streamed.result.rio.crs == in_memory.rio.crs
    assert streamed.summary["n_pixels_reliable"] == in_memory["mask"].values.sum()


def test_unwrapping_errors_are_found_and_corrected_in_the_run(tmp_path):
    """Injected ±2π patches: screening names the pairs, correction restores the clean RMSE.

    Troposphere and DEM error are off so that the errors visibly worsen the uncorrected
    result (with them on, the troposphere dominates the RMSE and the test could not fail).
    """
    quiet = {"turbulence": False, "stratified": False, "dem_error": False, "seed": 4}
    shape = {"ny": 100, "nx": 120, "n_dates": 30}
    scores = {}
    for name, errors in (("clean", 0.0), ("errors", 0.05)):
        frame = tmp_path / name
        write_licsar(simulate_scene(SceneConfig(**shape, **quiet, unwrap_errors=errors)), frame)
        truth = load_truth(frame)
        for closure in (True, False):
            cfg = RunConfig()
            cfg.unwrap.closure = closure
            sbas = run_sbas(load_input(frame, cfg), cfg)
            scores[name, closure] = score_result(sbas.result, truth)["velocity_rmse"]
            if name == "errors" and closure:
                injected = {e["pair"] for e in json.loads(truth.attrs["unwrap_error_pairs"])}
                flagged = set(sbas.summary["closure"]["flagged pairs"])
                assert injected and flagged == injected
                assert sbas.result["closure_errors"].values.max() >= 2
    assert scores["errors", True] <= 1.1 * scores["clean", True]
    assert scores["errors", False] > 1.1 * scores["clean", True]  # the errors did matter


def test_nsbas_bridges_a_network_gap_that_sbas_refuses(tmp_path):
    frame = write_licsar(
        simulate_scene(SceneConfig.noise_free(ny=40, nx=50, n_dates=20, gap_days=60)),
        tmp_path / "gap",
    )
    stack = load_input(frame, RunConfig())
    with pytest.raises(NetworkError, match="2 groups"):
        run_sbas(stack, RunConfig())
    cfg = RunConfig.model_validate({"inversion": {"method": "nsbas"}})
    sbas = run_sbas(stack, cfg)
    assert np.isfinite(sbas.result["displacement"].values).all()
    assert sbas.result["mask"].values.all()
    truth = load_truth(frame)
    vel, _ = referenced_truth(
        truth, sbas.result.attrs["reference_y"], sbas.result.attrs["reference_x"]
    )
    # across the gap the offset is unknown, so the velocity is that of the two halves: good
    # to a few mm/yr on this noise-free scene, not exact
    assert np.sqrt(np.mean((sbas.result["velocity"].values - vel) ** 2)) < 0.01


def test_ramp_correction_in_the_run_removes_most_of_the_ramp_error(tmp_path):
    frame = write_licsar(
        simulate_scene(SceneConfig.noise_free(ny=60, nx=80, n_dates=24, ramp=True)),
        tmp_path / "ramp",
    )
    truth = load_truth(frame)
    stack = load_input(frame, RunConfig())
    plain = run_sbas(stack, RunConfig())
    cfg = RunConfig.model_validate({"ramp": {"enabled": True}})
    fixed = run_sbas(stack, cfg)
    assert fixed.summary["corrections"] == {"applied": ["ramp"], "skipped": {}}
    before = score_result(plain.result, truth)["velocity_rmse"]
    after = score_result(fixed.result, truth)["velocity_rmse"]
    assert after <= 0.5 * before, (before, after)


def test_dem_error_is_skipped_with_a_reason_without_baselines(noise_free_frame):
    stack = load_input(noise_free_frame, RunConfig())
    stack["bperp"] = stack["bperp"] * np.nan
    cfg = RunConfig.model_validate({"dem_error": {"enabled": True}})
    sbas = run_sbas(stack, cfg)
    assert sbas.summary["corrections"]["skipped"] == {
        "dem_error": "the stack has no perpendicular baselines"
    }
    assert np.isfinite(sbas.result["velocity"].values).all()


def test_dem_error_correction_in_the_run(tmp_path):
    frame = write_licsar(
        simulate_scene(SceneConfig.noise_free(ny=60, nx=80, n_dates=30, dem_error=True, seed=1)),
        tmp_path / "dem",
    )
    truth = load_truth(frame)
    stack = load_input(frame, RunConfig())
    plain = run_sbas(stack, RunConfig())
    # the deformation fitted with the DEM error: the simulated signal's terms (the velocity
    # itself stays the linear fit, as the truth's)
    dem = {"enabled": True, "periods": [1.0], "step_dates": [truth.attrs["step_date"]]}
    fixed = run_sbas(stack, RunConfig.model_validate({"dem_error": dem}))
    assert fixed.summary["corrections"]["applied"] == ["dem_error"]
    before = score_result(plain.result, truth)["velocity_rmse"]
    after = score_result(fixed.result, truth)["velocity_rmse"]
    assert after <= 0.5 * before, (before, after)
    # the estimated DEM error follows the simulated one (up to the reference's own)
    dz = truth["dem_error"].values
    est = fixed.result["dem_error"].values
    ok = np.isfinite(est)
    assert np.corrcoef(est[ok], dz[ok])[0, 1] > 0.95


def test_mask_rules_each_remove_exactly_their_pixels(default_run):
    stack, sbas, _ = default_run
    base = sbas.result
    n_valid = base["n_valid_pairs"].values
    std = base["velocity_std"].values
    limit_pairs = int(n_valid.max())  # keep only pixels valid in every pair
    limit_std = float(np.nanpercentile(std, 80))
    cfg = RunConfig.model_validate(
        {"mask": {"min_valid_pairs": limit_pairs, "max_velocity_std": limit_std}}
    )
    strict = run_sbas(stack, cfg).result["mask"].values
    expected = base["mask"].values & (n_valid >= limit_pairs) & (std <= limit_std)
    np.testing.assert_array_equal(strict, expected)
    assert 0 < strict.sum() < base["mask"].values.sum()
