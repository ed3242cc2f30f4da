"""Scores of a time-series result against a simulated scene's truth."""

from __future__ import annotations

import numpy as np
import xarray as xr


def referenced_truth(truth: xr.Dataset, ref_y: int, ref_x: int) -> tuple[np.ndarray, np.ndarray]:
    """Truth velocity (y, x) [m/yr] and displacement (time, y, x) [m] relative to a pixel."""
    vel = truth["velocity"].values
    disp = truth["displacement"].values
    return vel - vel[ref_y, ref_x], disp - disp[:, ref_y : ref_y + 1, ref_x : ref_x + 1]


def score_result(result: xr.Dataset, truth: xr.Dataset) -> dict[str, float]:
    """Velocity/displacement RMSE [m/yr, m] over the truth's coherent area, and coverage.

    The truth is re-referenced to the result's reference pixel first. `coverage` is the
    fraction of coherent pixels that got an estimate. `velocity_rmse_demeaned` is the RMSE
    after removing the mean velocity error: the reference pixel's own error offsets every
    velocity alike, so this one compares runs that chose different reference pixels. Result
    and truth must share a grid.
    """
    if result.sizes["y"] != truth.sizes["y"] or result.sizes["x"] != truth.sizes["x"]:
        raise ValueError("result and truth grids differ; score a run without crop or multilook")
    vel, disp = referenced_truth(truth, result.attrs["reference_y"], result.attrs["reference_x"])
    est_vel = np.asarray(result["velocity"].values)
    est_disp = np.asarray(result["displacement"].values)
    coherent = truth["coherent"].values
    estimated = coherent & np.isfinite(est_vel)
    error = (est_vel - vel)[estimated]
    return {
        "velocity_rmse": float(np.sqrt(np.mean(error**2))),
        "velocity_rmse_demeaned": float(np.sqrt(np.mean((error - error.mean()) ** 2))),
        "displacement_rmse": float(np.sqrt(np.mean((est_disp - disp)[:, estimated] ** 2))),
        "coverage": float(estimated.sum() / coherent.sum()),
    }
