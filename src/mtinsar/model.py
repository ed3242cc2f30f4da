"""Time-series models fitted per pixel: linear velocity with its standard deviation."""

from __future__ import annotations

import numpy as np


def linear_velocity(t: np.ndarray, disp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares velocity of `disp` (n_dates, n_pix) [m] against time `t` (n_dates,) [yr].

    Returns (velocity, velocity_std) [m/yr]. The standard deviation is the formal one,
    sqrt(s² / Σ(t - t̄)²) with s² the residual variance on n - 2 degrees of freedom; it
    treats dates as independent, so it is optimistic when noise is correlated in time.
    Pixels with any NaN date get NaN.
    """
    t = np.asarray(t, dtype=float)
    n = t.size
    tc = t - t.mean()
    sxx = float(tc @ tc)
    mean = disp.mean(axis=0)
    velocity = tc @ disp / sxx
    residual = disp - mean - np.outer(tc, velocity)
    dof = max(n - 2, 1)
    std = np.sqrt((residual**2).sum(axis=0) / dof / sxx)
    return velocity, std
