"""Unwrapping-error correction, scored against the simulator's injected errors."""

import json

import numpy as np
import pydantic
import pytest
from scipy import ndimage

from mtinsar.analysis.network import Network
from mtinsar.config import RunConfig, UnwrapConfig
from mtinsar.corrections.reference import auto_reference, reference_phase
from mtinsar.corrections.unwrap import (
    apply_component_cycles,
    bridge_components,
    closure_cycles,
    component_cycles,
    correct_closure,
)
from mtinsar.simulate import SceneConfig, simulate_scene
from mtinsar.simulate.scene import UnwrapErrorPatch
from mtinsar.simulate.score import score_result
from mtinsar.workflows.pipeline import run_sbas

SHAPE = (100, 120)
#: Nuisances that SBAS alone does not remove; off where the errors' effect must stand out.
UNCORRECTED = {"turbulence": False, "stratified": False, "dem_error": False}


def _scene(seed, fraction=0.05, **overrides):
    cfg = SceneConfig(ny=SHAPE[0], nx=SHAPE[1], n_dates=30, seed=seed, unwrap_errors=fraction)
    return simulate_scene(cfg.model_copy(update=overrides))


def _network(stack):
    return Network.from_pair_dates(stack["ref_date"].values, stack["sec_date"].values)


def _referenced(stack, net):
    """unw with each pair's phase at an automatic reference window removed."""
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


def _patches(scene):
    return [
        UnwrapErrorPatch(
            e["index"], e["cycles"], e["center_y"], e["center_x"], e["radius_y"], e["radius_x"]
        )
        for e in json.loads(scene.truth.attrs["unwrap_error_pairs"])
    ]


def _true_cycles(scene, n_pairs):
    """Cycles that undo the injected errors, (n_pairs, ny, nx)."""
    out = np.zeros((n_pairs, *SHAPE), dtype=int)
    for p in _patches(scene):
        out[p.pair][p.mask(SHAPE)] = -p.cycles
    return out


def _velocity_rmse(scene, unw=None):
    """Velocity RMSE of a plain run (the pipeline's own closure correction off)."""
    stack = scene.to_ifgstack()
    if unw is not None:
        stack["unw"] = (("pair", "y", "x"), unw.astype(np.float32))
    cfg = RunConfig()
    cfg.unwrap.closure = False
    return score_result(run_sbas(stack, cfg).result, scene.truth)["velocity_rmse"]


# --------------------------------------------------------------------------- phase closure


@pytest.mark.parametrize("seed", [0, 3])
def test_closure_correction_restores_the_injected_cycles(seed):
    scene = _scene(seed)
    stack = scene.to_ifgstack()
    net = _network(stack)
    unw = _referenced(stack, net)
    fixed = correct_closure(unw, net.closure_matrix(long_loops=3))
    truth = _true_cycles(scene, net.n_pairs)
    valid = np.isfinite(unw)
    need = (truth != 0) & valid
    assert need.sum() > 500
    assert (fixed.cycles[need] == truth[need]).mean() >= 0.99
    assert ((fixed.cycles != 0) & (truth == 0) & valid).sum() <= 1e-5 * valid.sum()
    np.testing.assert_array_equal(np.isnan(fixed.unw), np.isnan(unw))
    np.testing.assert_allclose(fixed.unw[valid], (unw + 2 * np.pi * fixed.cycles)[valid])
    assert fixed.n_unclosed.shape == SHAPE


def test_clean_scene_is_left_alone():
    stack = _scene(2, fraction=0.0).to_ifgstack()
    net = _network(stack)
    cycles, _ = closure_cycles(_referenced(stack, net), net.closure_matrix(long_loops=3))
    assert (cycles != 0).sum() <= 1e-5 * cycles.size


def test_correction_is_the_same_block_by_block():
    stack = _scene(1).to_ifgstack()
    net = _network(stack)
    unw = _referenced(stack, net)
    c = net.closure_matrix(long_loops=3)
    whole, _ = closure_cycles(unw, c)
    flat = unw.reshape(net.n_pairs, -1)
    parts = [closure_cycles(flat[:, s : s + 5000], c)[0] for s in range(0, flat.shape[1], 5000)]
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), whole.reshape(net.n_pairs, -1))


def test_one_loop_is_not_enough_evidence():
    """A single bad loop cannot say which of its three pairs is wrong: nothing is changed."""
    net = Network.from_pair_dates(
        np.array(["2020-01-01", "2020-01-01", "2020-01-13"], dtype="datetime64[D]"),
        np.array(["2020-01-13", "2020-01-25", "2020-01-25"], dtype="datetime64[D]"),
    )
    unw = np.array([[0.1], [0.3 + 2 * np.pi], [0.2]])
    cycles, unclosed = closure_cycles(unw, net.closure_matrix())
    assert not cycles.any() and unclosed.tolist() == [1]
    cycles, unclosed = closure_cycles(unw, net.closure_matrix(), min_improvement=1)
    assert abs(cycles).sum() == 1 and unclosed.tolist() == [0]


@pytest.mark.parametrize(
    ("seed", "overrides"),
    [(0, UNCORRECTED), (2, UNCORRECTED), (1, {})],
    ids=["seed0-sbas-nuisances-off", "seed2-sbas-nuisances-off", "seed1-all-nuisances"],
)
def test_corrected_velocity_matches_the_error_free_scene(seed, overrides):
    """Velocity RMSE after correction is within 10 % of the same scene without errors.

    Where the nuisances SBAS does not correct are off, the errors alone must worsen the RMSE
    by more than 10 %, so a correction that does nothing fails; with every nuisance on
    (seed 1) the troposphere dominates, but correction must still not cost accuracy.
    """
    scene = _scene(seed, **overrides)
    stack = scene.to_ifgstack()
    net = _network(stack)
    fixed = correct_closure(_referenced(stack, net), net.closure_matrix(long_loops=3))
    clean = _velocity_rmse(_scene(seed, fraction=0.0, **overrides))
    corrected = _velocity_rmse(scene, fixed.unw)
    assert corrected <= 1.1 * clean, (corrected, clean)
    if overrides:
        assert _velocity_rmse(scene) > 1.1 * clean


# --------------------------------------------------------------------------- bridging


def _components(scene, stack):
    """SNAPHU-like labels: 1 for the pair's valid pixels, 2 for its error patch, 0 between."""
    labels = np.where(np.isfinite(stack["unw"].values), 1, 0).astype(np.int16)
    for p in _patches(scene):
        m = p.mask(SHAPE)
        ring = ndimage.binary_dilation(m) & ~m
        labels[p.pair][ring] = 0
        labels[p.pair][m & (labels[p.pair] == 1)] = 2
    return labels


@pytest.fixture(scope="module")
def bridged():
    scene = _scene(4)
    stack = scene.to_ifgstack()
    clean = _scene(4, fraction=0.0).to_ifgstack()["unw"].values
    return scene, stack, _components(scene, stack), clean


def test_bridging_undoes_errors_of_separate_components(bridged):
    scene, stack, labels, clean = bridged
    unw = stack["unw"].values
    fixed, table = bridge_components(unw, labels)
    patches = _patches(scene)
    assert len(patches) >= 4
    for p in patches:
        assert table[p.pair].tolist() == [0, 0, -p.cycles]
    others = np.setdiff1d(np.arange(len(unw)), [p.pair for p in patches])
    assert not table[others].any()
    np.testing.assert_allclose(fixed, clean, atol=1e-5)
    blocks = [
        apply_component_cycles(unw[:, :, s : s + 50], labels[:, :, s : s + 50], table)
        for s in (0, 50, 100)
    ]
    np.testing.assert_array_equal(np.concatenate(blocks, axis=2), fixed)


def test_bridging_keeps_the_reference_component(bridged):
    scene, stack, labels, clean = bridged
    p = _patches(scene)[0]
    unw, lab = stack["unw"].values[p.pair], labels[p.pair]
    inside = (p.center_y, p.center_x)
    assert lab[inside] == 2
    cycles = component_cycles(unw, lab, reference=inside)
    assert cycles.tolist() == [0, p.cycles, 0]  # the rest moves to the patch instead
    shifted = unw + 2 * np.pi * cycles[lab]
    delta = (shifted - clean[p.pair])[lab > 0]
    np.testing.assert_allclose(delta, 2 * np.pi * p.cycles, atol=1e-5)


def test_bridging_chains_components_and_skips_small_ones(bridged):
    scene, stack, labels, clean = bridged
    p = _patches(scene)[1]
    unw = stack["unw"].values[p.pair].astype(np.float64)
    lab = labels[p.pair].copy()
    lab[:, 100:] = np.where(lab[:, 100:] > 0, 3, 0)  # east strip: its own component...
    lab[:, 99] = 0
    unw[:, 100:] -= 2 * np.pi  # ...one cycle low
    lab[2:5, 2:5] = np.where(lab[2:5, 2:5] > 0, 4, 0)  # 9 pixels: below min_pixels
    unw[2:5, 2:5] += 4 * np.pi
    cycles = component_cycles(unw, lab, min_pixels=50)
    expected = [0, 0, 0, 1, 0]
    expected[2] = -p.cycles if (lab == 2).sum() >= 50 else 0
    assert cycles.tolist() == expected
    assert component_cycles(unw, np.where(lab > 0, 1, 0)).tolist() == [0, 0]  # one component


def test_config_rejects_bad_values():
    with pytest.raises(pydantic.ValidationError, match="min_improvement"):
        UnwrapConfig(min_improvement=0)
    with pytest.raises(pydantic.ValidationError, match="extra"):
        UnwrapConfig(method="l1")
