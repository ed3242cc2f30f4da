"""Per-segment metrics and risk classes, on synthetic pixels and on simulated railways."""

import numpy as np
import pandas as pd
import pytest

from mtinsar.errors import ConfigError, InputError
from mtinsar.infra import InfraConfig, analyse
from mtinsar.infra.metrics import AT_RISK_FROM, infra_config, risk_class, segment_metrics
from mtinsar.simulate.infra import segment_truth

_DATES = np.datetime64("2020-01-01") + np.arange(0, 12 * 61, 12).astype("timedelta64[D]")
_T = (_DATES - _DATES[0]) / np.timedelta64(1, "D") / 365.25


def _pixels(rng, n_seg=3, per=6):
    seg = np.repeat(np.arange(n_seg), per)
    s = rng.uniform(0, 100, seg.size) + 100 * seg
    return seg, s


def test_gradient_velocity_and_distortion_of_exact_lines_and_a_plane():
    """v = a + g s on lines and a plane on a polygon are recovered exactly."""
    rng = np.random.default_rng(1)
    seg, s = _pixels(rng)
    g = np.array([-3e-4, 1e-4, 0.0])  # [m/yr per m] = -30, +10, 0 mm/yr per 100 m
    v = -0.02 + g[seg] * (s - 100 * seg)
    # polygon (segment 3): v = 0.01 + 3e-5 e - 4e-5 n  -> |grad| = 5e-5 /yr
    east, north = rng.uniform(0, 80, 8), rng.uniform(0, 60, 8)
    vp = 0.01 + 3e-5 * east - 4e-5 * north
    segment = np.concatenate([seg, np.full(8, 3)])
    coords = np.vstack([np.column_stack([s, np.zeros_like(s)]), np.column_stack([east, north])])
    vel = np.concatenate([v, vp])
    disp = _T[:, None] * vel[None, :]
    is_line = np.array([True, True, True, False])
    out = segment_metrics(
        segment, coords, vel, np.zeros_like(vel), disp, _DATES, is_line, InfraConfig()
    )
    tab = out.table
    np.testing.assert_allclose(tab["diff_settlement_mm_yr_100m"], [-30, 10, 0, 5], atol=1e-6)
    span = _T[-1]
    np.testing.assert_allclose(
        tab["angular_distortion"], [3e-4 * span, 1e-4 * span, 0, 5e-5 * span], rtol=1e-6
    )
    by_seg = pd.Series(vel).groupby(segment)
    np.testing.assert_allclose(tab["v_median_mm_yr"], by_seg.median() * 1e3, rtol=1e-9)
    extreme = by_seg.apply(lambda x: x[x.abs().idxmax()])
    np.testing.assert_allclose(tab["v_extreme_mm_yr"], extreme * 1e3, rtol=1e-9)
    assert tab["n_pixels"].tolist() == [6, 6, 6, 8]
    np.testing.assert_allclose(tab["acceleration_mm_yr2"], 0, atol=1e-6)
    assert not tab["accelerating"].any()


def test_too_few_pixels_and_unreliable_pixels_give_no_data():
    seg = np.array([0, 0, 0, 1, 1, 1])
    coords = np.column_stack([[0, 50, 100, 0, 50, 100], np.zeros(6)]).astype(float)
    vel = np.array([0.01, 0.01, 0.01, 0.01, np.nan, np.nan])  # segment 1: one reliable pixel
    disp = _T[:, None] * np.nan_to_num(vel)[None, :]
    out = segment_metrics(
        seg, coords, vel, np.zeros(6), disp, _DATES, np.array([True, True, True]), InfraConfig()
    )
    assert out.table["risk"].tolist()[1:] == ["no data", "no data"]
    assert out.table["n_pixels"].tolist() == [3, 1, 0]
    assert np.isnan(out.series[1:]).all() and np.isfinite(out.series[0]).all()


def test_acceleration_and_change_point():
    """Known quadratic term; a late speed-up is detected, steady motion in noise is not."""
    rng = np.random.default_rng(7)
    n_seg = 40
    accel = np.where(np.arange(n_seg) < 20, -0.03, 0.0)  # m/yr^2
    clean = -0.01 * _T[:, None] + 0.5 * accel[None, :] * _T[:, None] ** 2
    # segments 20-29: linear, then 40 mm/yr faster over the last 10 dates; 30-39 steady
    late = np.clip(_T - _T[-11], 0, None)[:, None]
    clean[:, 20:30] += -0.04 * late
    noise = rng.normal(0, 0.002, clean.shape)
    disp = np.repeat(clean + noise, 3, axis=1)  # three identical pixels per segment
    seg = np.repeat(np.arange(n_seg), 3)
    coords = np.column_stack([np.tile([0.0, 50.0, 100.0], n_seg), np.zeros(seg.size)])
    vel = np.full(seg.size, -0.01)
    out = segment_metrics(
        seg, coords, vel, np.zeros(seg.size), disp, _DATES, np.ones(n_seg, bool), InfraConfig()
    )
    tab = out.table
    # noise 2 mm on 61 dates over 2 years: the quadratic term's std is 1.71 mm/yr^2
    tc = _T - _T.mean()
    design = np.column_stack([np.ones_like(tc), tc, 0.5 * tc**2])
    sigma = 2.0 * np.sqrt(np.linalg.inv(design.T @ design)[2, 2])
    assert sigma == pytest.approx(1.71, abs=0.01)
    np.testing.assert_allclose(tab["acceleration_mm_yr2"][:20], -30, atol=4 * sigma)
    assert np.std(tab["acceleration_mm_yr2"][:20]) < 2 * sigma
    # the recent slope (10 dates, 108 days) has a std of 6.7 mm/yr: t ~ 6 for the speed-up
    recent = _T[-10:] - _T[-10:].mean()
    se = 2.0 / np.sqrt(recent @ recent)
    assert tab["accelerating"][20:30].all()
    assert (tab["change_p_value"][20:30] < 1e-3).all()
    np.testing.assert_allclose(tab["v_recent_mm_yr"][20:30], -50, atol=4 * se)
    np.testing.assert_allclose(tab["v_early_mm_yr"][30:], -10, atol=4)
    assert tab["accelerating"][30:].sum() <= 1  # alpha = 0.01 on 10 segments


def test_risk_classes_follow_the_cited_thresholds():
    cfg = InfraConfig()
    settle = np.array([0.005, 0.02, 0.06, 0.08, 0.0, 0.0, 0.0, 0.02, np.nan])
    dist = np.array([0.0, 0.0, 0.0, 0.0, 1 / 400, 1 / 250, 1 / 100, 0.0, np.nan])
    acc = np.array([True, False, False, False, False, False, False, True, False])
    # Rankin 1988: <10 mm, 10-50, 50-75, >75; Bjerrum 1/500; Skempton & MacDonald 1/300, 1/150
    expected = [0, 1, 2, 3, 1, 2, 3, 2, -1]
    assert risk_class(settle, dist, acc, cfg).tolist() == expected


def test_velocity_uncertainty_is_not_settlement():
    """A 3 mm/yr velocity with a 2 mm/yr std is noise for z = 2, settlement for z = 0."""
    seg = np.zeros(4, dtype=int)
    coords = np.column_stack([[0.0, 30, 60, 90], np.zeros(4)])
    vel = np.full(4, -0.003)
    disp = _T[:, None] * vel[None, :]
    args = (seg, coords, vel, np.full(4, 0.002), disp, _DATES, np.array([True]))
    assert segment_metrics(*args, InfraConfig()).table["risk_class"][0] == 0
    span_plus = _T[-1] + 5.0
    tab = segment_metrics(*args, InfraConfig(significance_z=0)).table
    assert tab["projected_settlement_mm"][0] == pytest.approx(3 * span_plus)
    assert tab["risk_class"][0] == 1  # 21 mm over the ~7 years: Rankin's 'slight' (low)


def _scored(case, config=None):
    analysis = analyse(case.result, case.lines, config or InfraConfig())
    truth = segment_truth(case.truth, analysis.segments)
    return analysis.segments.join(truth)


def _relative_error(df):
    est, true = df["diff_settlement_mm_yr_100m"], df["true_diff_settlement_mm_yr_100m"]
    return ((est - true).abs() / true.abs()).to_numpy()


def test_railway_over_bowl_noise_free(noise_free_railway):
    """Segments over the bowl are at risk, stable ground is stable, gradients match truth."""
    df = _scored(noise_free_railway)
    assert (df["risk_class"] >= 0).all()  # every segment has pixels
    bowl = df["true_v_median_mm_yr"].abs() >= 15
    stable = df["true_v_max_abs_mm_yr"] == 0
    assert bowl.sum() >= 15 and stable.sum() >= 20
    assert (df.loc[bowl, "risk_class"] >= AT_RISK_FROM).all()
    assert (df.loc[stable, "risk_class"] == 0).all()
    steep = df["true_diff_settlement_mm_yr_100m"].abs() >= 2  # mm/yr per 100 m
    assert steep.sum() >= 20
    assert _relative_error(df[steep]).max() <= 0.20
    np.testing.assert_allclose(df.loc[stable, "diff_settlement_mm_yr_100m"], 0, atol=1e-3)


def test_railway_over_bowl_with_nuisances(noisy_railway):
    """Troposphere, DEM error and decorrelation: classes hold, gradients match on average."""
    df = _scored(noisy_railway)
    bowl = df["true_v_median_mm_yr"].abs() >= 15
    stable = df["true_v_max_abs_mm_yr"] == 0
    assert bowl.sum() >= 15 and stable.sum() >= 20
    assert (df.loc[bowl, "risk_class"] >= AT_RISK_FROM).all()
    assert (df.loc[stable, "risk_class"] < AT_RISK_FROM).all()
    assert (df.loc[stable, "risk_class"] == 0).mean() >= 0.8
    steep = df["true_diff_settlement_mm_yr_100m"].abs() >= 2
    err = _relative_error(df[steep])
    # 2-6 pixels per segment carry decorrelation noise: the median segment is within 20 %
    assert np.median(err) <= 0.20
    true, est = (
        df.loc[steep, "true_diff_settlement_mm_yr_100m"],
        df.loc[steep, "diff_settlement_mm_yr_100m"],
    )
    assert float((true * est).sum() / (true * true).sum()) == pytest.approx(1.0, abs=0.2)


def test_lines_outside_the_result_are_refused(noise_free_railway, tmp_path):
    import geopandas as gpd
    import shapely

    far = tmp_path / "far.geojson"
    gpd.GeoDataFrame(
        geometry=[shapely.LineString([(10.0, 45.0), (10.01, 45.0)])], crs="EPSG:4326"
    ).to_file(far)
    with pytest.raises(InputError, match=r"no feature of .*far\.geojson overlaps the result"):
        analyse(noise_free_railway.result, far, InfraConfig())


def test_bad_settings_name_the_key():
    assert infra_config(segment_length=250.0, buffer=None).segment_length == 250.0
    with pytest.raises(ConfigError, match=r"infra\.buffer: .*greater than or equal to 0"):
        infra_config(buffer=-5.0)
    with pytest.raises(ConfigError, match=r"infra\.settlement_thresholds: .*increasing"):
        infra_config(settlement_thresholds=(0.05, 0.01, 0.1))


def test_polygons_on_the_bowl_flank_and_on_stable_ground(noise_free_railway, tmp_path):
    """A structure on the flank gets the truth's planar gradient; one on stable ground none."""
    import geopandas as gpd
    import shapely
    from pyproj import Transformer

    from mtinsar.simulate.infra import bowl_centre_and_radius

    truth = noise_free_railway.truth
    row, col, radius = bowl_centre_and_radius(truth)
    x, y = truth["x"].to_numpy(), truth["y"].to_numpy()
    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32614", always_xy=True)
    centres = [to_utm.transform(x[c], y[row]) for c in (col + radius // 2, col - 2 * radius)]
    squares = [shapely.box(e - 150, n - 150, e + 150, n + 150) for e, n in centres]
    path = tmp_path / "blocks.gpkg"
    gpd.GeoDataFrame({"name": ["flank", "stable"]}, geometry=squares, crs=32614).to_file(path)
    seg = analyse(noise_free_railway.result, path, InfraConfig()).segments
    assert seg["kind"].tolist() == ["polygon", "polygon"]
    # truth: plane fit of the truth velocity sampled every 10 m inside the flank square
    e, n = np.meshgrid(np.arange(-145, 150, 10.0), np.arange(-145, 150, 10.0))
    lon, lat = Transformer.from_crs(32614, 4326, always_xy=True).transform(
        e.ravel() + centres[0][0], n.ravel() + centres[0][1]
    )
    at = {"x": ("p", np.asarray(lon)), "y": ("p", np.asarray(lat))}
    v = truth["velocity"].astype(float).interp(at).to_numpy()
    design = np.column_stack([np.ones(v.size), e.ravel(), n.ravel()])
    grad = np.linalg.lstsq(design, v, rcond=None)[0][1:]
    true_mm = float(np.hypot(*grad)) * 1e5
    assert true_mm > 3  # a steep flank
    assert seg["diff_settlement_mm_yr_100m"].iloc[0] == pytest.approx(true_mm, rel=0.2)
    assert seg["risk_class"].tolist() == [3, 0]
    assert seg["diff_settlement_mm_yr_100m"].iloc[1] == pytest.approx(0, abs=1e-3)
