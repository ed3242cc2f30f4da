"""The corrections of a time series, applied in order: external → troposphere → ramp → DEM error.

The order follows MintPy (Yunjun et al. 2019): externally computed delays first (they need
no fit); the phase–elevation fit next, with the ramp terms fitted jointly so a tilted
terrain does not bias the height ratio; the ramp; and the DEM error last, fitted per pixel
together with the deformation model once the spatially correlated delays are gone (fitted
first, it absorbs per-date delays that happen to correlate with the baselines).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from mtinsar.config import RunConfig
from mtinsar.conventions import years_since
from mtinsar.corrections import dem_error, external, ramp, troposphere

log = logging.getLogger(__name__)


@dataclass
class Corrected:
    """A corrected displacement cube and what the corrections estimated."""

    displacement: np.ndarray  # (time, y, x) [m]
    layers: dict[str, np.ndarray] = field(default_factory=dict)  # (y, x) maps, e.g. dem_error
    applied: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # correction -> why


def any_enabled(config: RunConfig) -> bool:
    """Whether any correction stage is on."""
    return any(
        c.enabled for c in (config.external, config.troposphere, config.ramp, config.dem_error)
    )


def apply_corrections(
    displacement: np.ndarray,
    result: xr.Dataset,
    stack: xr.Dataset,
    fit_mask: np.ndarray,
    config: RunConfig,
) -> Corrected:
    """Run the enabled corrections on `displacement` (time, y, x) [m].

    `result` supplies dates, per-date Bperp, the reference pixel and the grid; `stack` the
    geometry (height, incidence); `fit_mask` (y, x) the reliable pixels the spatial fits use.
    """
    dates = result["time"].values
    ref: dict[str, Any] = {
        "reference": (int(result.attrs["reference_y"]), int(result.attrs["reference_x"])),
        "reference_radius": config.reference.radius,
    }
    incidence = np.asarray(stack["incidence"].values, dtype=np.float64)
    out = Corrected(displacement)
    if config.external.enabled:
        delay = external.load_delays(
            config.external, dates, result["velocity"], float(result.attrs["wavelength"])
        )
        out.displacement, _ = external.correct_external(
            out.displacement, delay, incidence, config.external.kind, **ref
        )
        out.applied.append("external")
    if config.troposphere.enabled:
        tc = config.troposphere
        out.displacement, _ = troposphere.correct_phase_elevation(
            out.displacement,
            np.asarray(stack["height"].values, dtype=np.float64),
            fit_mask,
            ramp_order=config.ramp.order if config.ramp.enabled else tc.ramp_order,
            window=tc.window,
            robust=tc.robust,
            max_fit_pixels=tc.max_fit_pixels,
            **ref,
        )
        out.applied.append("troposphere")
    if config.ramp.enabled:
        rc = config.ramp
        out.displacement, _ = ramp.correct_ramp(
            out.displacement,
            rc.order,
            fit_mask,
            robust=rc.robust,
            max_fit_pixels=rc.max_fit_pixels,
            **ref,
        )
        out.applied.append("ramp")
    if config.dem_error.enabled:
        _dem_error(out, result, incidence, config, ref)
    return out


def _dem_error(
    out: Corrected, result: xr.Dataset, incidence: np.ndarray, config: RunConfig, ref: dict
) -> None:
    bperp = np.asarray(result["bperp"].values, dtype=np.float64)
    if not np.isfinite(bperp).all() or np.ptp(bperp) == 0:
        why = "the stack has no perpendicular baselines"
        log.warning("DEM-error correction skipped: %s", why)
        out.skipped["dem_error"] = why
        return
    dc, model = config.dem_error, config.model
    dates = result["time"].values
    # the deformation fitted with the DEM error is the run's own time-series model
    periods = set(dc.periods) | ({1.0} if model.annual else set())
    periods |= {0.5} if model.semi_annual else set()
    steps = np.array(sorted(set(dc.step_dates) | set(model.steps)), dtype="datetime64[D]")
    out.displacement, fit = dem_error.correct_dem_error(
        out.displacement,
        bperp,
        incidence,
        years_since(dates, dates[0]),
        slant_range=dc.slant_range_m or dem_error.DEFAULT_SLANT_RANGE_M,
        poly_order=max(dc.poly_order, 2 if model.acceleration else 1),
        periods=sorted(periods),
        step_years=years_since(steps, dates[0]).tolist(),
        phase_velocity=dc.phase_velocity,
        robust=dc.robust,
        **ref,
    )
    out.layers["dem_error"] = fit.dem_error.astype(np.float32)
    out.applied.append("dem_error")
