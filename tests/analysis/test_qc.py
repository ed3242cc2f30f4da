"""Pair QC and loop-closure screening, scored against the simulator's injected errors."""

import json

import numpy as np
import pydantic
import pytest

from mtinsar.analysis import qc
from mtinsar.analysis.network import Network
from mtinsar.config import QcConfig
from mtinsar.corrections.reference import auto_reference, reference_phase
from mtinsar.errors import InputError
from mtinsar.simulate import SceneConfig, simulate_scene
from mtinsar.simulate.scene import UnwrapErrorPatch

SEEDS = (0, 1, 2, 3)


def referenced(stack, net):
    """The stack's unw with each pair's phase at an automatic reference window removed."""
    unw = stack["unw"].values.astype(np.float64)
    coh = stack["coh"].values.astype(np.float64)
    valid = np.isfinite(unw)
    ok = valid & np.isfinite(coh)
    spans = net.temporal_baselines()[:, None, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_coh = np.where(ok, coh, 0).sum(0) / ok.sum(0)
        rate = np.where(valid, unw, 0).sum(0) / np.where(valid, spans, 0).sum(0)
    ref = auto_reference(np.nan_to_num(mean_coh), valid.all(0), np.nan_to_num(rate), 3)
    window = unw[:, max(ref.y - 3, 0) : ref.y + 4, max(ref.x - 3, 0) : ref.x + 4]
    return unw - reference_phase(window)[:, None, None]


def error_scene(seed, fraction=0.05, **overrides):
    """(scene, stack, network, referenced unw, injected error pair indices)."""
    cfg = SceneConfig(ny=100, nx=120, n_dates=30, seed=seed, unwrap_errors=fraction, **overrides)
    scene = simulate_scene(cfg)
    stack = scene.to_ifgstack()
    net = Network.from_pair_dates(stack["ref_date"].values, stack["sec_date"].values)
    errors = json.loads(scene.truth.attrs["unwrap_error_pairs"])
    return scene, stack, net, referenced(stack, net), errors


def patch_mask(errors, shape, unw=None):
    """Pixels inside an injected patch (and valid in its pair when `unw` is given)."""
    mask = np.zeros(shape, dtype=bool)
    for e in errors:
        p = UnwrapErrorPatch(
            e["index"], e["cycles"], e["center_y"], e["center_x"], e["radius_y"], e["radius_x"]
        )
        m = p.mask(shape)
        mask |= m if unw is None else m & np.isfinite(unw[e["index"]])
    return mask


def blocks(ny, nx, size):
    for y0 in range(0, ny, size):
        for x0 in range(0, nx, size):
            yield slice(y0, y0 + size), slice(x0, x0 + size)


@pytest.fixture(scope="module")
def scenes():
    return {seed: error_scene(seed) for seed in SEEDS}


# --------------------------------------------------------------------------- pair QC


def test_pair_counts_and_table_on_known_values():
    nan = np.nan
    unw = np.array([[1.0, 2.0, nan, 4.0], [1.0, nan, nan, nan], [nan, nan, nan, nan]])
    coh = np.array([[0.5, 0.7, 0.9, 0.3], [0.04, 0.2, 0.2, 0.2], [0.9, 0.9, 0.9, 0.9]])
    conncomp = np.array([[1, 1, 0, 2], [1, 0, 0, 0], [0, 0, 0, 0]])
    counts = qc.pair_counts(unw, coh, conncomp)
    assert counts.n_pixels == 3  # pixel 2 has no valid pair
    np.testing.assert_array_equal(counts.n_valid, [3, 1, 0])
    # column 0: pixels in no component (label 0 or no data)
    np.testing.assert_array_equal(counts.component_pixels, [[1, 2, 1], [3, 1, 0], [4, 0, 0]])
    cfg = QcConfig(min_mean_coherence=0.1, min_valid_fraction=0.5, min_component_pixels=1)
    cfg.max_components = 1
    table = qc.pair_table(counts, ["a", "b", "c"], cfg)
    np.testing.assert_allclose(table["mean_coherence"][:2], [0.5, 0.04], rtol=1e-6)
    assert np.isnan(table["mean_coherence"][2])
    np.testing.assert_allclose(table["valid_fraction"], [1, 1 / 3, 0], rtol=1e-6)
    np.testing.assert_array_equal(table["n_components"], [2, 1, 0])
    assert table["keep"].values.tolist() == [False, False, False]
    reasons = table["reason"].values
    assert "2 connected components > qc.max_components 1" in reasons[0]
    assert "mean coherence 0.040 < qc.min_mean_coherence" in reasons[1]
    assert "valid fraction 0.333 < qc.min_valid_fraction" in reasons[1]
    assert "qc.min_valid_fraction" in reasons[2] and "qc.min_mean_coherence" in reasons[2]
    with pytest.raises(InputError, match=r"drops every pair of demo.*relax the \[qc\]"):
        qc.require_pairs_left(table, "demo")


def test_block_counts_add_up_to_the_whole_scene(scenes):
    _, stack, net, unw, _ = scenes[0]
    coh = stack["coh"].values
    labels = np.where(np.isfinite(unw), 1 + (np.arange(120) >= 70), 0)  # two components
    c = net.closure_matrix(long_loops=3)
    whole_pairs = qc.pair_counts(unw, coh, np.broadcast_to(labels, unw.shape))
    whole_loops, whole_pixels = qc.loop_counts(unw, c)
    pair_sum, loop_sum = None, None
    count_layer = np.zeros(unw.shape[1:], dtype=int)
    for ys, xs in blocks(100, 120, 48):
        p = qc.pair_counts(unw[:, ys, xs], coh[:, ys, xs], labels[:, ys, xs])
        lc, px = qc.loop_counts(unw[:, ys, xs], c)
        pair_sum = p if pair_sum is None else pair_sum + p
        loop_sum = lc if loop_sum is None else loop_sum + lc
        count_layer[ys, xs] = px.n_bad_loops
    assert pair_sum.n_pixels == whole_pairs.n_pixels
    np.testing.assert_array_equal(pair_sum.n_valid, whole_pairs.n_valid)
    np.testing.assert_allclose(pair_sum.coh_sum, whole_pairs.coh_sum, rtol=1e-10)
    np.testing.assert_array_equal(pair_sum.component_pixels, whole_pairs.component_pixels)
    np.testing.assert_array_equal(loop_sum.n_valid, whole_loops.n_valid)
    np.testing.assert_array_equal(loop_sum.n_bad, whole_loops.n_bad)
    np.testing.assert_allclose(loop_sum.sq_sum, whole_loops.sq_sum, rtol=1e-10)
    np.testing.assert_array_equal(count_layer, whole_pixels.n_bad_loops)


def test_default_rules_keep_the_simulated_pairs_and_drop_a_decorrelated_one(scenes):
    _, stack, net, unw, _ = scenes[1]
    coh = stack["coh"].values.copy()
    unw = unw.copy()
    unw[7, :, 30:] = np.nan  # pair 7 unwrapped on a quarter of the scene only
    counts = qc.pair_counts(unw, coh)
    table = qc.pair_table(counts, stack["pair"].values, QcConfig())
    assert table["keep"].values.sum() == net.n_pairs - 1 and not table["keep"].values[7]
    assert str(table["reason"].values[7]).startswith("valid fraction 0.2")
    assert table["n_components"].values.tolist() == [-1] * net.n_pairs  # no conncomp


# --------------------------------------------------------------------------- closure screening


def _screen(net, unw, cfg=None):
    cfg = cfg or QcConfig()
    c = net.closure_matrix(long_loops=cfg.long_loops, max_length=cfg.max_loop_length)
    counts, _ = qc.loop_counts(unw, c, cfg.closure_threshold)
    return qc.screen_pairs(counts, c, cfg)


def test_screening_finds_the_injected_unwrapping_errors(scenes):
    """Recall and precision >= 90 % over the pairs of several seeds (~5 erroneous each)."""
    tp = fp = fn = 0
    for _, _, net, unw, errors in scenes.values():
        flagged = set(np.flatnonzero(_screen(net, unw).flagged).tolist())
        # a patch that fell where its pair has no data leaves no error to find
        truth = {e["index"] for e in errors if patch_mask([e], unw.shape[1:], unw).any()}
        tp, fp, fn = tp + len(flagged & truth), fp + len(flagged - truth), fn + len(truth - flagged)
    assert tp + fn >= 15
    recall, precision = tp / (tp + fn), tp / (tp + fp)
    assert recall >= 0.9 and precision >= 0.9, (recall, precision)


def test_screening_flags_nothing_on_a_clean_scene():
    _, _, net, unw, errors = error_scene(5, fraction=0.0)
    s = _screen(net, unw)
    assert not errors and not s.flagged.any() and not s.bad_loop.any()
    assert s.checked.all()  # with long loops, even the 1-year pairs are checked
    assert (s.closure_rms[s.checked] < 1.0).all()


def test_long_loops_catch_an_error_in_a_year_pair():
    scene, stack, net, unw, _ = error_scene(1, fraction=0.0)
    year = int(np.argmax(net.temporal_baselines()))
    assert net.redundancy()[year] == 0
    unw = unw.copy()
    unw[year, 20:45, 30:60] += 2 * np.pi  # a patch of 750 pixels off by one cycle
    assert _screen(net, unw).flagged.tolist() == [k == year for k in range(net.n_pairs)]
    triplets_only = _screen(net, unw, QcConfig(long_loops=0))
    assert not triplets_only.checked[year] and not triplets_only.flagged.any()


def test_screening_table_and_drop_options(scenes):
    _, stack, net, unw, errors = scenes[2]
    truth = sorted(e["index"] for e in errors)
    table = qc.pair_table(
        qc.pair_counts(unw, stack["coh"].values), stack["pair"].values, QcConfig()
    )
    s = _screen(net, unw)
    report = qc.add_screening(table, s, QcConfig())
    assert report["keep"].all()  # default: flagged pairs are reported, kept for correction
    assert np.flatnonzero(report["unwrap_error"].values).tolist() == truth
    assert (report["n_bad_loops"].values[truth] >= 1).all()
    dropped = qc.add_screening(table, s, QcConfig(drop_flagged=True))
    assert np.flatnonzero(~dropped["keep"].values).tolist() == truth
    k = truth[0]
    assert dropped["reason"].values[k] == (
        f"unwrapping error: {s.n_bad_loops[k]} of {s.n_loops[k]} loops close badly"
    )


def test_closure_error_count_layer(scenes):
    """~0 loops close badly on a clean scene; most loops do inside the injected patches."""
    clean_scene, _, net, unw, _ = error_scene(0, fraction=0.0)
    c = net.closure_matrix(long_loops=3)
    count = qc.closure_error_count(unw, c, QcConfig().closure_threshold)
    land = ~clean_scene.truth["water"].values
    assert count.shape == (100, 120) and count.dtype == np.int16
    assert count[land].mean() < 0.005 and count.max() <= 1

    scene, _, net, unw, errors = scenes[0]
    c = net.closure_matrix(long_loops=3)
    count = qc.closure_error_count(unw, c, QcConfig().closure_threshold)
    patch = patch_mask(errors, count.shape, unw)
    assert patch.sum() > 500
    assert (count[patch] >= 2).mean() > 0.98
    assert count[~patch & land].mean() < 0.005
    # The per-pixel layer of loop_counts, exactly, NaN pairs included.
    holed = np.where(np.random.default_rng(1).random(unw.shape) < 0.05, np.nan, unw)
    _, pixel = qc.loop_counts(holed, c, QcConfig().closure_threshold)
    count = qc.closure_error_count(holed, c, QcConfig().closure_threshold)
    np.testing.assert_array_equal(count, pixel.n_bad_loops)


def test_closure_phase_marks_missing_pairs_and_checks_shapes():
    net = Network.from_pair_dates(
        np.array(["2020-01-01", "2020-01-01", "2020-01-13"], dtype="datetime64[D]"),
        np.array(["2020-01-13", "2020-01-25", "2020-01-25"], dtype="datetime64[D]"),
    )
    c = net.closure_matrix()
    unw = np.array([[1.0, 1.0, 1.0, np.inf], [3.0, np.nan, np.inf, np.inf], [2.0, 2.0, 2, 2]])
    np.testing.assert_array_equal(qc.closure_phase(unw, c), [[0.0, np.nan, np.nan, np.nan]])
    with pytest.raises(ValueError, match="unw has 2 pairs, the closure matrix 3"):
        qc.closure_phase(unw[:2], c)


def test_config_rejects_bad_thresholds():
    with pytest.raises(pydantic.ValidationError, match="min_valid_fraction"):
        QcConfig(min_valid_fraction=1.5)
    with pytest.raises(pydantic.ValidationError, match="closure_threshold"):
        QcConfig(closure_threshold=0)
    with pytest.raises(pydantic.ValidationError, match="extra"):
        QcConfig(min_coherence=0.2)


def test_a_network_without_loops_checks_nothing_and_can_drop_the_unchecked():
    dates = np.datetime64("2020-01-01") + 12 * np.arange(3)
    net = Network.from_pair_dates(dates[[0, 1]], dates[[1, 2]])  # a chain: no loop at all
    c = net.closure_matrix(long_loops=3)
    unw = np.random.default_rng(0).normal(0, 3, (2, 6, 7))
    counts, pixel = qc.loop_counts(unw, c)
    assert c.shape == (0, 2) and pixel.n_bad_loops.shape == (6, 7) and not pixel.n_loops.any()
    s = qc.screen_pairs(counts, c, QcConfig())
    assert not s.flagged.any() and not s.checked.any()
    cfg = QcConfig(drop_unchecked=True)
    table = qc.pair_table(qc.pair_counts(unw, np.full_like(unw, 0.5)), ["p0", "p1"], cfg)
    table = qc.add_screening(table, s, cfg)
    assert table["reason"].values.tolist() == ["no loop checks it (qc.drop_unchecked)"] * 2
