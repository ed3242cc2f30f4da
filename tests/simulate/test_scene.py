"""Synthetic scene: determinism, network, and the physics of every simulated term."""

import json

import numpy as np
import pydantic
import pytest
import xarray as xr

from mtinsar import stack
from mtinsar.conventions import SENTINEL1_WAVELENGTH
from mtinsar.errors import ConfigError
from mtinsar.simulate import (
    SLANT_RANGE_M,
    SceneConfig,
    acquisition_dates,
    coherence_phase_sigma,
    licsar_network,
    network_is_connected,
    perpendicular_baselines,
    power_law_field,
    simulate_scene,
)

SMALL = {"ny": 60, "nx": 80, "n_dates": 15}
K4PI = 4.0 * np.pi / SENTINEL1_WAVELENGTH


def expected_phase(scene, k):
    """Phase [rad] of pair k from the truth cubes alone (deformation + nuisance, no noise)."""
    i, j = scene.pairs[k]
    d = scene.truth["displacement"].values.astype(np.float64)
    n = scene.truth["nuisance"].values.astype(np.float64)
    return -K4PI * ((d[j] + n[j]) - (d[i] + n[i]))


@pytest.fixture(scope="module")
def full_scene():
    return simulate_scene(SceneConfig(**SMALL, seed=7))


@pytest.fixture(scope="module")
def clean_scene():
    return simulate_scene(SceneConfig.noise_free(**SMALL, seed=7))


# --------------------------------------------------------------------------- config


def test_presets_and_noise_free_flags():
    assert SceneConfig.preset("small").model_dump(include={"ny", "nx", "n_dates"}) == {
        "ny": 200,
        "nx": 250,
        "n_dates": 40,
    }
    assert (SceneConfig.preset("medium").ny, SceneConfig.preset("medium").n_dates) == (600, 80)
    assert (SceneConfig.preset("large").nx, SceneConfig.preset("large").n_dates) == (2000, 150)
    assert SceneConfig.preset("small", seed=3).seed == 3
    nf = SceneConfig.noise_free()
    assert nf.deformation and not any(
        [nf.turbulence, nf.stratified, nf.dem_error, nf.decorrelation, nf.water, nf.unwrap_errors]
    )
    assert SceneConfig.noise_free(water=True).water


def test_config_rejects_bad_input():
    with pytest.raises(pydantic.ValidationError):
        SceneConfig(bogus=1)
    with pytest.raises(pydantic.ValidationError):
        SceneConfig(start_date="04/01/2019")
    with pytest.raises(pydantic.ValidationError):
        SceneConfig(unwrap_errors=1.5)
    with pytest.raises(ConfigError, match="huge"):
        SceneConfig.preset("huge")


def test_every_config_field_is_documented():
    for name, info in SceneConfig.model_fields.items():
        assert info.description and "Default" in info.description, name


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_scene_any_order(full_scene):
    again = simulate_scene(SceneConfig(**SMALL, seed=7))
    xr.testing.assert_identical(full_scene.truth, again.truth)
    order = [5, 0, len(again.pairs) - 1]
    late = {k: again.interferogram(k) for k in reversed(order)}
    for k in order:
        unw, coh = full_scene.interferogram(k)
        np.testing.assert_array_equal(unw, late[k][0])
        np.testing.assert_array_equal(coh, late[k][1])


def test_different_seed_different_scene(full_scene):
    other = simulate_scene(SceneConfig(**SMALL, seed=8))
    assert not np.array_equal(other.truth["nuisance"].values, full_scene.truth["nuisance"].values)
    assert not np.array_equal(other.truth["height"].values, full_scene.truth["height"].values)
    a, b = full_scene.interferogram(0)[0], other.interferogram(0)[0]
    assert np.nanmax(np.abs(a - b)) > 0.1


def test_switching_a_nuisance_keeps_the_others():
    with_turb = simulate_scene(SceneConfig.noise_free(**SMALL, turbulence=True, stratified=True))
    strat_only = simulate_scene(SceneConfig.noise_free(**SMALL, stratified=True))
    turb_only = simulate_scene(SceneConfig.noise_free(**SMALL, turbulence=True))
    np.testing.assert_allclose(
        with_turb.truth["nuisance"].values,
        strat_only.truth["nuisance"].values + turb_only.truth["nuisance"].values,
        atol=1e-7,
    )


# --------------------------------------------------------------------------- dates & network


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_dates_have_12_day_steps_and_some_gaps(seed):
    dates = acquisition_dates(SceneConfig(n_dates=40, seed=seed))
    assert dates.dtype == np.dtype("datetime64[D]") and len(dates) == 40
    assert str(dates[0]) == "2019-01-04"
    steps = np.diff(dates).astype(int)
    assert set(steps) <= {12, 24, 36} and (steps >= 24).any()
    missing = steps.sum() / 12 + 1 - len(dates)
    assert 0.04 <= missing / (missing + len(dates)) <= 0.2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_network_is_licsar_like(seed):
    dates = acquisition_dates(SceneConfig(n_dates=60, seed=seed))
    pairs = licsar_network(dates, seed)
    n = len(dates)
    assert pairs == sorted(set(pairs)) and all(i < j for i, j in pairs)
    assert network_is_connected(n, pairs)
    for i in range(n - 4):
        short = {j for a, j in pairs if a == i and j <= i + 4}
        assert short in ({i + 1, i + 2, i + 3}, {i + 1, i + 2, i + 3, i + 4}), i
    days = (dates - dates[0]).astype(int)
    year = [(i, j) for i, j in pairs if j > i + 4]
    assert len(year) >= (n // 3) // 2
    for i, j in year:
        assert abs(days[j] - days[i] - 365) <= 24 and i % 3 == 0
    n_succ = [len({j for a, j in pairs if a == i and j <= i + 4}) for i in range(n - 4)]
    assert {3, 4} <= set(n_succ)


def test_network_connectivity_check_detects_a_split():
    assert not network_is_connected(5, [(0, 1), (1, 2), (3, 4)])
    assert network_is_connected(3, [(0, 2), (1, 2)])


def test_bperp_first_zero_and_spread():
    bperp = perpendicular_baselines(400, seed=1)
    assert bperp[0] == 0.0
    assert 50 < bperp[1:].std() < 70 and abs(bperp[1:].mean()) < 10


# --------------------------------------------------------------------------- truth dataset


def test_truth_schema(full_scene):
    t = full_scene.truth
    assert dict(t.sizes) == {"time": 15, "y": 60, "x": 80}
    assert t["time"].dtype == np.dtype("datetime64[ns]")
    assert (np.diff(t["y"].values) < 0).all() and (np.diff(t["x"].values) > 0).all()
    assert t.rio.crs.to_epsg() == 4326
    np.testing.assert_allclose(t["y"].values[0], 19.60 - 0.0005)
    np.testing.assert_allclose(t["x"].values[0], -99.30 + 0.0005)
    for name in ("displacement", "nuisance"):
        assert t[name].dims == ("time", "y", "x") and t[name].dtype == np.float32
    for name in ("velocity", "dem_error", "height", "los_e", "los_n", "los_u", "incidence"):
        assert t[name].dims == ("y", "x")
    assert t["coherent"].dtype == bool and t["water"].dtype == bool
    np.testing.assert_array_equal(t["bperp"].values, full_scene.bperp_dates)
    assert SceneConfig.model_validate_json(t.attrs["config"]) == full_scene.config
    assert t.attrs["wavelength"] == SENTINEL1_WAVELENGTH and t.attrs["looks"] == 20
    assert t.attrs["slant_range_m"] == SLANT_RANGE_M
    assert np.datetime64(t.attrs["step_date"]) in full_scene.dates


def test_reference_pixel_is_stable_coherent_land(full_scene):
    t = full_scene.truth
    ry, rx = t.attrs["ref_y"], t.attrs["ref_x"]
    assert bool(t["coherent"][ry, rx]) and not bool(t["water"][ry, rx])
    assert (t["displacement"].values[:, ry, rx] == 0).all()
    assert t.attrs["ref_lat"] == pytest.approx(float(t["y"][ry]))
    assert t.attrs["ref_lon"] == pytest.approx(float(t["x"][rx]))
    stable = (np.abs(t["displacement"].values).max(axis=0) == 0) & t["coherent"].values
    assert stable.mean() > 0.1


def test_land_cover_terrain_and_coherence(full_scene):
    t = full_scene.truth
    land = ~t["water"].values
    coherent = t["coherent"].values
    assert 0.3 < coherent[land].mean() < 0.8
    assert t["water"].values.any()
    h = t["height"].values[land]
    assert h.min() > 0 and 900 < h.max() - h.min() < 1600
    mc = t["mean_coherence"].values
    assert np.isnan(mc[~land]).all()
    assert mc[coherent].mean() > 0.75 and mc[land & ~coherent].mean() < 0.45


def test_ploughed_field_splits_the_network_there(full_scene):
    """Pairs spanning the ploughing date are no-data in the field and nowhere else because of it."""
    t = full_scene.truth
    field = t["ploughed"].values
    assert field.sum() > 20 and not (field & t["coherent"].values).any()
    event = np.datetime64(t.attrs["field_event_date"])
    for k, (i, j) in enumerate(full_scene.pairs):
        unw, _ = full_scene.interferogram(k)
        spans = full_scene.dates[i] < event <= full_scene.dates[j]
        if spans:
            assert np.isnan(unw[field]).all()
        elif full_scene.dates[j] - full_scene.dates[i] <= np.timedelta64(12, "D"):
            assert np.isfinite(unw[field]).mean() > 0.9
    off = simulate_scene(SceneConfig(**SMALL, seed=7, field_event=False))
    assert not off.truth["ploughed"].values.any()


def test_los_geometry():
    for orbit, east_sign in (("ascending", -1), ("descending", 1)):
        t = simulate_scene(SceneConfig.noise_free(**SMALL, orbit=orbit)).truth
        e, n, u = (t[c].values.astype(float) for c in ("los_e", "los_n", "los_u"))
        np.testing.assert_allclose(e**2 + n**2 + u**2, 1.0, atol=1e-6)
        assert (np.sign(e) == east_sign).all() and (n < 0).all() and (u > 0).all()
        inc = t["incidence"].values
        assert 30.5 < inc.min() < 32 and 45 < inc.max() < 46.5
        grows_east = inc[0, -1] > inc[0, 0]
        assert grows_east == (orbit == "ascending")
        np.testing.assert_allclose(np.degrees(np.arccos(u)), inc, atol=1e-4)


def test_deformation_signals(clean_scene):
    t = clean_scene.truth
    d = t["displacement"].values
    vel = t["velocity"].values
    assert (d[0] == 0).all()
    vertical = vel / t["los_u"].values
    assert -0.16 < vertical.min() < -0.08  # main bowl, up to ~15 cm/yr
    assert 0.015 < vel.max() < 0.04  # uplift zone
    k = int(np.searchsorted(clean_scene.dates, np.datetime64(t.attrs["step_date"])))
    jump = d[k] - d[k - 1] - (d[k - 1] - d[k - 2])  # step minus a smooth trend
    assert -0.04 < jump.min() < -0.015
    off = simulate_scene(SceneConfig.noise_free(**SMALL, deformation=False))
    assert (off.truth["displacement"].values == 0).all()


def test_velocity_is_least_squares_fit_of_displacement(full_scene):
    t = full_scene.truth
    years = (full_scene.dates - full_scene.dates[0]).astype(float) / 365.25
    d = t["displacement"].values.reshape(len(years), -1).astype(np.float64)
    slope = np.polyfit(years, d, 1)[0].reshape(t["velocity"].shape)
    np.testing.assert_allclose(t["velocity"].values, slope, rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------- phase physics


def test_noise_free_phase_is_minus_4pi_over_lambda_displacement(clean_scene):
    t = clean_scene.truth
    d = t["displacement"].values.astype(np.float64)
    ry, rx = t.attrs["ref_y"], t.attrs["ref_x"]
    for k in (0, 7, len(clean_scene.pairs) - 1):
        i, j = clean_scene.pairs[k]
        unw, coh = clean_scene.interferogram(k)
        assert unw.dtype == np.float32 and coh.dtype == np.float32
        assert not np.isnan(unw).any()
        dd = (d[j] - d[i]) - (d[j, ry, rx] - d[i, ry, rx])
        got = unw.astype(np.float64) - unw[ry, rx]
        np.testing.assert_allclose(got, -K4PI * dd, atol=2e-5)
        assert np.ptp(got) > 0.3  # the test compares real signal, not zeros


def test_uplift_has_positive_displacement_and_negative_phase(clean_scene):
    t = clean_scene.truth
    ry, rx = t.attrs["ref_y"], t.attrs["ref_x"]
    up = np.unravel_index(np.argmax(t["velocity"].values), t["velocity"].shape)
    last = [k for k, (i, j) in enumerate(clean_scene.pairs) if i == 0][-1]
    j = clean_scene.pairs[last][1]
    d_up = t["displacement"].values[j][up]
    assert d_up > 0.001
    unw, _ = clean_scene.interferogram(last)
    assert unw[up] - unw[ry, rx] < -0.2
    assert unw[up] - unw[ry, rx] == pytest.approx(-K4PI * d_up, rel=1e-4)


def test_pair_offsets_are_constant_per_pair(full_scene, clean_scene):
    no_offsets = simulate_scene(SceneConfig.noise_free(**SMALL, seed=7, pair_offsets=False))
    offsets = []
    for k in range(len(clean_scene.pairs)):
        diff = clean_scene.interferogram(k)[0] - no_offsets.interferogram(k)[0].astype(np.float64)
        assert np.ptp(diff) < 1e-4
        offsets.append(diff.mean())
    assert -np.pi <= min(offsets) and max(offsets) <= np.pi and np.std(offsets) > 1.0


def test_no_valid_pixel_is_exactly_zero():
    scene = simulate_scene(SceneConfig.noise_free(**SMALL, pair_offsets=False))
    ry, rx = scene.truth.attrs["ref_y"], scene.truth.attrs["ref_x"]
    for k in range(len(scene.pairs)):
        unw = scene.interferogram(k)[0]
        assert not (unw == 0).any()
        assert 0 < abs(unw[ry, rx]) <= 1e-6


def test_stratified_term_tracks_height():
    scene = simulate_scene(SceneConfig.noise_free(**SMALL, stratified=True, water=True))
    t = scene.truth
    land = ~t["water"].values
    h = t["height"].values[land]
    nuis = t["nuisance"].values
    assert (nuis[0] == 0).all()
    for k in range(1, len(scene.dates)):
        r = np.corrcoef(nuis[k][land], h)[0, 1]
        assert abs(r) > 0.999
    # coefficient spread ~ stratified_std_m_per_km / 1000 (x sqrt 2: relative to the first date)
    coef = [np.polyfit(h, nuis[k][land], 1)[0] for k in range(1, len(scene.dates))]
    assert 0.3e-5 < np.std(coef) < 3e-5


def test_dem_error_term_is_proportional_to_bperp():
    scene = simulate_scene(SceneConfig.noise_free(**SMALL, dem_error=True))
    t = scene.truth
    dz = t["dem_error"].values.astype(np.float64)
    assert 5 < dz.std() < 15
    factor = dz / (SLANT_RANGE_M * np.sin(np.radians(t["incidence"].values.astype(np.float64))))
    nuis = t["nuisance"].values
    for k, bp in enumerate(scene.bperp_dates):
        np.testing.assert_allclose(nuis[k], bp * factor, rtol=1e-5, atol=1e-9)
    bperp_pair = scene.pair_bperp()
    k = int(np.argmax(np.abs(bperp_pair)))
    i, j = scene.pairs[k]
    assert bperp_pair[k] == scene.bperp_dates[j] - scene.bperp_dates[i]
    no_dem = simulate_scene(SceneConfig.noise_free(**SMALL))
    diff = scene.interferogram(k)[0].astype(np.float64) - no_dem.interferogram(k)[0]
    np.testing.assert_allclose(diff, -K4PI * bperp_pair[k] * factor, atol=2e-5)


def test_ramp_is_a_low_order_polynomial_per_date():
    scene = simulate_scene(SceneConfig.noise_free(**SMALL, ramp=True))
    nuis = scene.truth["nuisance"].values.astype(np.float64)
    assert (nuis[0] == 0).all()
    yn, xn = np.meshgrid(
        np.linspace(-1, 1, SMALL["ny"]), np.linspace(-1, 1, SMALL["nx"]), indexing="ij"
    )
    basis = np.stack([np.ones_like(xn), xn, yn, xn * yn, xn**2, yn**2]).reshape(6, -1).T
    for k in range(1, len(scene.dates)):
        coef, *_ = np.linalg.lstsq(basis, nuis[k].ravel(), rcond=None)
        np.testing.assert_allclose(basis @ coef, nuis[k].ravel(), atol=1e-7)
    span = nuis[1:].max(axis=(1, 2)) - nuis[1:].min(axis=(1, 2))
    assert 0.01 < np.median(span) < 0.1  # ~1 cm per half width, relative to the first date


def test_gap_splits_the_network_in_two():
    from mtinsar.simulate.scene import gap_index

    scene = simulate_scene(SceneConfig.noise_free(**SMALL, gap_days=60))
    g = gap_index(len(scene.dates))
    assert scene.dates[g] - scene.dates[g - 1] == np.timedelta64(60, "D")
    assert not any(i < g <= j for i, j in scene.pairs)
    assert not network_is_connected(len(scene.dates), scene.pairs)
    base = simulate_scene(SceneConfig.noise_free(**SMALL))
    assert (scene.dates[:g] == base.dates[:g]).all()


def test_turbulence_spectrum_and_amplitude():
    slopes = []
    for seed in range(4):
        f = power_law_field(np.random.default_rng(seed), (128, 160), beta=8 / 3)
        assert abs(f.mean()) < 1e-5 and f.std() == pytest.approx(1.0, rel=1e-5)
        slopes.append(_spectral_slope(f))
    assert np.mean(slopes) == pytest.approx(-8 / 3, abs=0.25)
    scene = simulate_scene(SceneConfig.noise_free(**SMALL, turbulence=True, turbulence_std_m=0.01))
    stds = scene.truth["nuisance"].values[1:].std(axis=(1, 2))
    assert np.mean(stds) == pytest.approx(0.01 * np.sqrt(2), rel=0.3)


def _spectral_slope(f):
    """Log-log slope of the radially averaged (Hann-windowed) power spectrum."""
    ny, nx = f.shape
    win = np.hanning(ny)[:, None] * np.hanning(nx)[None, :]
    power = (np.abs(np.fft.fft2(f * win)) ** 2).ravel()
    k = np.hypot(np.fft.fftfreq(ny)[:, None], np.fft.fftfreq(nx)[None, :]).ravel()
    edges = np.logspace(np.log10(0.02), np.log10(0.25), 12)
    idx = np.digitize(k, edges)
    kc = [k[idx == b].mean() for b in range(1, len(edges))]
    pc = [power[idx == b].mean() for b in range(1, len(edges))]
    return np.polyfit(np.log(kc), np.log(pc), 1)[0]


# --------------------------------------------------------------------------- decorrelation


@pytest.fixture(scope="module")
def decorrelated():
    cfg = SceneConfig.noise_free(ny=100, nx=120, n_dates=15, decorrelation=True, pair_offsets=False)
    return simulate_scene(cfg)


def test_cramer_rao_sigma_formula():
    # sqrt((1 - g^2) / (2 L g^2)) by hand for g = 0.9, L = 20 and g = 0.3, L = 5
    assert coherence_phase_sigma(0.9, 20) == pytest.approx(0.0765780, rel=1e-5)
    assert coherence_phase_sigma(0.3, 5) == pytest.approx(1.0055402, rel=1e-5)


def test_phase_noise_matches_cramer_rao(decorrelated):
    scene = decorrelated
    coherent = scene.truth["coherent"].values
    for k in (0, 1, 2):  # short pairs: both classes mostly above the unwrapping threshold
        unw, coh = scene.interferogram(k)
        noise = unw - expected_phase(scene, k)
        valid = ~np.isnan(unw)
        for cls in (coherent, ~coherent):
            sel = cls & valid
            assert sel.sum() > 1000
            sigma = coherence_phase_sigma(np.nanmean(coh[sel]), scene.config.looks)
            assert np.std(noise[sel]) == pytest.approx(sigma, rel=0.15)
            assert abs(np.mean(noise[sel])) < 0.1 * sigma
            normalised = noise[sel] / coherence_phase_sigma(coh[sel], scene.config.looks)
            assert np.std(normalised) == pytest.approx(1.0, rel=0.05)


def test_low_coherence_pixels_are_not_unwrapped(decorrelated):
    scene = decorrelated
    thr = scene.config.unwrap_min_coherence
    n_low = 0
    for k in range(len(scene.pairs)):
        unw, coh = scene.interferogram(k)
        assert not np.isnan(coh).any()
        np.testing.assert_array_equal(np.isnan(unw), coh < thr)
        n_low += int((coh < thr).sum())
    assert n_low > 0
    t = scene.truth
    veg = ~t["coherent"].values
    days = [(scene.dates[j] - scene.dates[i]).astype(int) for i, j in scene.pairs]
    longest = int(np.argmax(days))
    assert days[longest] >= 60  # vegetation coherence there: ~0.18 < 0.2
    assert np.isnan(scene.interferogram(longest)[0][veg]).mean() > 0.9
    assert not np.isnan(scene.interferogram(longest)[0][~veg]).any()
    assert not np.isnan(scene.interferogram(0)[0][veg]).any()  # 12-day pair: all unwrapped


def test_without_decorrelation_coherence_masks_nothing():
    scene = simulate_scene(SceneConfig.noise_free(**SMALL))
    for k in range(len(scene.pairs)):
        unw, coh = scene.interferogram(k)
        assert not np.isnan(unw).any() and np.nanmin(coh) > 0


def test_water_is_nan_in_every_pair(full_scene):
    water = full_scene.truth["water"].values
    assert water.sum() > 50
    for k in range(len(full_scene.pairs)):
        unw, coh = full_scene.interferogram(k)
        assert np.isnan(unw[water]).all() and np.isnan(coh[water]).all()
        assert not np.isnan(coh[~water]).any()


# --------------------------------------------------------------------------- unwrapping errors


def test_unwrap_errors_shift_listed_patches_by_2pi():
    cfg = SceneConfig.noise_free(ny=60, nx=80, n_dates=30, pair_offsets=False, water=True)
    scene = simulate_scene(cfg.model_copy(update={"unwrap_errors": 0.1}))
    errors = json.loads(scene.truth.attrs["unwrap_error_pairs"])
    n_pairs = len(scene.pairs)
    assert len(errors) == round(0.1 * n_pairs) > 5
    names = scene.pair_names()
    water = scene.truth["water"].values
    ry, rx = scene.truth.attrs["ref_y"], scene.truth.attrs["ref_x"]
    by_index = {e["index"]: e for e in errors}
    for k in range(n_pairs):
        residual = scene.interferogram(k)[0] - expected_phase(scene, k)
        land = ~water
        if k not in by_index:
            assert np.nanmax(np.abs(residual)) < 1e-4
            continue
        e = by_index[k]
        assert e["pair"] == names[k] and e["cycles"] in (-1, 1)
        assert 3 <= e["radius_y"] <= 30 and 3 <= e["radius_x"] <= 30
        yy, xx = np.mgrid[: cfg.ny, : cfg.nx]
        inside = ((yy - e["center_y"]) / e["radius_y"]) ** 2 + (
            (xx - e["center_x"]) / e["radius_x"]
        ) ** 2 <= 1
        assert not (inside & water).any() and not inside[ry, rx]
        np.testing.assert_allclose(residual[inside & land], 2 * np.pi * e["cycles"], atol=1e-4)
        assert np.abs(residual[~inside & land]).max() < 1e-4


# --------------------------------------------------------------------------- IfgStack


def test_to_ifgstack_schema_and_values(full_scene):
    st = full_scene.to_ifgstack()
    n = len(full_scene.pairs)
    assert dict(st.sizes) == {"pair": n, "y": 60, "x": 80}
    for name in ("unw", "coh"):
        assert st[name].dims == ("pair", "y", "x") and st[name].dtype == np.float32
    ref, sec = st["ref_date"].values, st["sec_date"].values
    assert ref.dtype == np.dtype("datetime64[ns]") and (ref < sec).all()
    assert list(zip(ref, sec, strict=True)) == sorted(zip(ref, sec, strict=True))
    np.testing.assert_allclose(st["bperp"].values, full_scene.pair_bperp(), rtol=1e-6)
    assert list(st["pair"].values) == full_scene.pair_names()
    stack.validate(st)  # the schema every reader produces
    assert st.rio.crs.to_epsg() == 4326
    assert st.attrs["wavelength"] == SENTINEL1_WAVELENGTH
    assert st.attrs["orbit_direction"] == "ascending" and st.attrs["platform"] == "Sentinel-1"
    for name in ("height", "incidence", "los_e", "los_n", "los_u", "water"):
        np.testing.assert_array_equal(st[name].values, full_scene.truth[name].values)
    for k in (0, n - 1):
        unw, coh = full_scene.interferogram(k)
        np.testing.assert_array_equal(st["unw"].values[k], unw)
        np.testing.assert_array_equal(st["coh"].values[k], coh)
        np.testing.assert_array_equal(full_scene.coherence(k), coh)
