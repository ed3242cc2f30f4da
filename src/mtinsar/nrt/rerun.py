"""When a full re-inversion is due after NRT updates (`[nrt] full_rerun_every`,
`residual_growth_factor`): updates keep the history's small errors and the model's drift,
a full re-run removes them."""

from __future__ import annotations

import numpy as np
import xarray as xr

from mtinsar.config import NrtConfig


def full_rerun_due(
    updates_since_full: int, median_residual: float, baseline: float, nrt: NrtConfig
) -> tuple[bool, str]:
    """Whether a full re-inversion is due, and why (empty when not); residuals in [m]."""
    if updates_since_full >= nrt.full_rerun_every:
        return True, f"{updates_since_full} updates since the last full run (full_rerun_every)"
    if np.isfinite(baseline) and median_residual > nrt.residual_growth_factor * baseline:
        return True, (
            f"median model residual {median_residual * 1e3:.2f} mm > "
            f"{nrt.residual_growth_factor} x {baseline * 1e3:.2f} mm after the last full run "
            "(residual_growth_factor)"
        )
    return False, ""


def rerun_due(result: xr.Dataset, nrt: NrtConfig) -> tuple[bool, str]:
    """`full_rerun_due` for a stored result: never for a full run's own result (it has no
    ``nrt_updates_since_full``); for an updated one, from its attrs and residual layer."""
    count = result.attrs.get("nrt_updates_since_full")
    if count is None:
        return False, ""
    baseline = float(result.attrs.get("nrt_baseline_residual_m", np.nan))
    return full_rerun_due(int(count), median_residual(result), baseline, nrt)


def median_residual(result: xr.Dataset) -> float:
    """Median model residual RMS [m] of `result`'s reliable pixels (NaN: none)."""
    values = result["model_residual"].values
    v = values[result["mask"].values.astype(bool) & np.isfinite(values)]
    return float(np.median(v)) if v.size else float("nan")
