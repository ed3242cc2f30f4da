"""The JAX backend (GPU when jax has CUDA) against the CPU solvers, run here on JAX's CPU."""

import re

import numpy as np
import pytest
from tests.analysis.test_envelope import _licsar, _pixels

from mtinsar.analysis import envelope, jax_backend
from mtinsar.analysis.inversion import _line_basis, invert
from mtinsar.config import RunConfig, load_config
from mtinsar.errors import ConfigError
from mtinsar.workflows.jobs import run_to_folder
from mtinsar.workflows.pipeline import check_runnable, load_input, run_sbas


@pytest.mark.parametrize("gamma", [0.0, 0.05])
def test_same_solution_as_the_envelope_solver(gamma):
    net = _licsar(40)
    unw, w = _pixels(net, 700, seed=7)
    spans = (net.ref < 15) & (net.sec >= 15)
    unw[np.ix_(spans, np.arange(30))] = np.nan  # split: sbas gives NaN, nsbas bridges
    line = _line_basis(net)[1:]
    cols = np.arange(700)
    want = envelope.solve(unw, w, cols, envelope.envelope_order(net), gamma, line)
    got = jax_backend.solve(unw, w, cols, net, gamma, line)
    assert np.isnan(want[:, :30]).all() == (gamma == 0)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = np.isfinite(want)
    np.testing.assert_allclose(got[ok], want[ok], rtol=0, atol=1e-8)


@pytest.mark.parametrize("method", ["sbas", "nsbas"])
def test_invert_with_the_jax_backend_equals_numpy(method):
    net = _licsar(30)
    unw, w = _pixels(net, 500, seed=8)
    for weights in (None, w):
        a = invert(unw, net, method, weights=weights)
        b = invert(unw, net, method, weights=weights, backend="jax")
        np.testing.assert_allclose(b.phase, a.phase, rtol=0, atol=1e-8)
        np.testing.assert_allclose(b.temporal_coherence, a.temporal_coherence, atol=1e-6)


def test_run_with_the_jax_backend_equals_the_default(noise_free_frame):
    cfg = RunConfig.model_validate({"inversion": {"backend": "jax", "weighting": "coherence"}})
    stack = load_input(noise_free_frame, cfg)
    got = run_sbas(stack, cfg).result
    want = run_sbas(stack, RunConfig.model_validate({"inversion": {"weighting": "coherence"}}))
    for name in ("displacement", "velocity"):
        np.testing.assert_allclose(got[name].values, want.result[name].values, atol=1e-7)


def test_min_norm_on_jax_is_refused(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('[inversion]\nbackend = "jax"\nmethod = "min-norm"\n')
    with pytest.raises(ConfigError, match=r"run.toml.*\[inversion\].*not min-norm"):
        load_config(toml)
    with pytest.raises(ValueError, match="backend"):
        invert(np.zeros((3, 1)), _licsar(4), "min-norm", backend="jax")


@pytest.fixture
def without_jax(monkeypatch):
    """This machine as one without jax installed."""
    monkeypatch.setattr(jax_backend, "available", lambda: False)


def test_a_jax_config_is_valid_where_jax_is_missing(tmp_path, without_jax):
    # a config is a schema: a machine that only reads a jax run's result can still load it
    toml = tmp_path / "run.toml"
    toml.write_text('[inversion]\nbackend = "jax"\n')
    assert load_config(toml).inversion.backend == "jax"


def test_a_jax_run_where_jax_is_missing_is_refused_before_any_work(tmp_path, without_jax):
    cfg = RunConfig.model_validate({"inversion": {"backend": "jax"}})
    with pytest.raises(ConfigError, match=re.escape(jax_backend.MISSING)):
        run_sbas(object(), cfg)  # refused before the stack is looked at
    out = tmp_path / "results"
    with pytest.raises(ConfigError, match=re.escape(jax_backend.MISSING)):
        run_to_folder(tmp_path / "no_products", out, cfg)  # before the input is read
    assert list(tmp_path.iterdir()) == []  # no result, no work folder
    check_runnable(RunConfig())  # the numpy backend needs nothing more
