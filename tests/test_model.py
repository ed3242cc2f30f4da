import numpy as np

from mtinsar.model import linear_velocity


def test_linear_velocity_exact_and_std_matches_formula():
    t = np.linspace(0, 3, 40)
    rng = np.random.default_rng(0)
    v_true = np.array([-0.1, 0.0, 0.03])
    noise_sd = 0.004
    n_trials = 4000
    disp = 0.2 + np.outer(t, v_true)[:, :, None] + rng.normal(0, noise_sd, (40, 3, n_trials))
    v, sd = linear_velocity(t, disp.reshape(40, -1))
    v = v.reshape(3, n_trials)
    sd = sd.reshape(3, n_trials)
    np.testing.assert_allclose(v.mean(axis=1), v_true, atol=1e-4)
    expected_sd = noise_sd / np.sqrt(((t - t.mean()) ** 2).sum())
    # formal std is right on average and matches the scatter of the estimates
    np.testing.assert_allclose(sd.mean(axis=1), expected_sd, rtol=0.03)
    np.testing.assert_allclose(v.std(axis=1), expected_sd, rtol=0.06)


def test_noise_free_line_has_zero_std_and_nan_propagates():
    t = np.array([0.0, 0.5, 1.0, 2.0])
    disp = np.column_stack([0.01 * t, [0, np.nan, 0, 0]])
    v, sd = linear_velocity(t, disp)
    assert abs(v[0] - 0.01) < 1e-15 and sd[0] < 1e-15
    assert np.isnan(v[1]) and np.isnan(sd[1])
