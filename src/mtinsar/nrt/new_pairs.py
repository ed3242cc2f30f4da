"""The new date's pairs before an NRT update: checked against the result (grid, dates,
config), quality-controlled like the run's, and the run's DEM-error term removed."""

from __future__ import annotations

import logging

import numpy as np
import xarray as xr

from mtinsar.analysis import qc
from mtinsar.config import RunConfig
from mtinsar.conventions import SENTINEL1_WAVELENGTH, phase_to_displacement
from mtinsar.corrections.dem_error import DEFAULT_SLANT_RANGE_M
from mtinsar.errors import ConfigError, InputError

log = logging.getLogger(__name__)


def check_config(config: RunConfig) -> None:
    """ConfigError when `config` enables per-date corrections an update cannot apply."""
    on = [name for name in ("external", "troposphere", "ramp") if getattr(config, name).enabled]
    if on:
        raise ConfigError(
            f"update: corrections [{', '.join(on)}] are enabled, but the update cannot apply "
            "them to a new date (only dem_error, whose per-pixel estimate it carries over) and "
            "would mix corrected and uncorrected dates; run `mtinsar run --full` instead, or "
            "disable them for monitoring"
        )


def remove_dem_error(kept: xr.Dataset, result: xr.Dataset, config: RunConfig) -> xr.Dataset:
    """The new pairs without the DEM-error term the run removed from `result`'s history.

    The DEM error is a constant of each pixel (Fattahi & Amelung 2013): pair (i, j) carries
    B⊥_ij ε' with ε' = Δz / (R sin θ) (`corrections.dem_error`), taken here from the run's
    estimate (`dem_error` [m], R from `dem_error.slant_range_m`), not re-estimated: a full
    re-run refits it. Follows the result: without a `dem_error` layer its history is
    uncorrected and so are the new pairs.
    """
    if "dem_error" not in result.data_vars:
        if config.dem_error.enabled:
            log.warning(
                "update: the result has no DEM-error estimate; the new date is not corrected"
            )
        return kept
    for name, ds, where in (("bperp", kept, "new pairs"), ("incidence", result, "result")):
        if name not in ds.variables:
            raise InputError(
                f"update: the result was corrected for DEM error but the {where} have no "
                f"'{name}'; give products with baselines and geometry, or re-run without dem_error"
            )
    slant = config.dem_error.slant_range_m or DEFAULT_SLANT_RANGE_M
    sin_inc = np.sin(np.deg2rad(result["incidence"].values.astype(np.float64)))
    eps = np.nan_to_num(result["dem_error"].values / (slant * sin_inc))  # NaN: not corrected
    term = kept["bperp"].values.astype(np.float64)[:, None, None] * eps  # (pair, y, x) [m]
    to_metres = phase_to_displacement(float(kept.attrs.get("wavelength", SENTINEL1_WAVELENGTH)))
    out = kept.copy()
    out["unw"] = kept["unw"] - (term / to_metres).astype(kept["unw"].dtype)
    return out


def new_date_of(result: xr.Dataset, stack: xr.Dataset) -> np.datetime64:
    """The new date; InputError when the pairs cannot extend `result`."""
    for name in ("displacement", "velocity", "model_residual", "mask"):
        if name not in result.data_vars:
            raise InputError(
                f"update: the result has no '{name}' variable; pass a result of `mtinsar run`"
            )
    for name in ("unw", "coh"):
        if name not in stack.data_vars:
            raise InputError(f"update: the new pairs have no '{name}' variable (IfgStack schema)")
    if stack.sizes.get("pair", 0) == 0:
        raise InputError("update: no new pairs; give the interferograms of the new date")
    for dim in ("y", "x"):
        a, b = result[dim].values, stack[dim].values
        if a.shape != b.shape or not np.allclose(a, b, rtol=0, atol=1e-9 * max(1, np.abs(a).max())):
            raise InputError(
                f"update: the new pairs' {dim} grid ({b.size} values) differs from the result's "
                f"({a.size}); ingest the new products with the same grid (ingest.crop, "
                "multilook) as the stack of the last run"
            )
    known = result["time"].values.astype("datetime64[D]")
    ref = stack["ref_date"].values.astype("datetime64[D]")
    sec = stack["sec_date"].values.astype("datetime64[D]")
    new = np.unique(sec)
    labels = stack["pair"].values.astype(str)
    if new.size != 1:
        raise InputError(
            f"update: the new pairs end on {new.size} dates ({', '.join(map(str, new))}); an "
            "update adds one date: pass the pairs of each new date separately, oldest first"
        )
    if new[0] <= known[-1]:
        raise InputError(
            f"update: the new date {new[0]} is not after the last date of the result "
            f"({known[-1]}); a date inside the series needs `mtinsar run --full`"
        )
    unknown = ~np.isin(ref, known)
    if unknown.any():
        raise InputError(
            f"update: pairs {', '.join(labels[unknown][:5])} start on dates the result does not "
            "have; add the missing dates first (oldest first) or run `mtinsar run --full`"
        )
    return new[0]


def pair_qc(stack: xr.Dataset, config: RunConfig) -> tuple[xr.Dataset, list[dict[str, str]]]:
    """The new pairs passing the run's pair QC, and the dropped ones with their reason."""
    conn = stack["conncomp"].values if "conncomp" in stack.data_vars else None
    counts = qc.pair_counts(stack["unw"].values, stack["coh"].values, conn)
    table = qc.pair_table(counts, stack["pair"].values, config.qc)
    keep = table["keep"].values
    dropped = [
        {"pair": str(p), "reason": str(r)}
        for p, r in zip(table["pair"].values[~keep], table["reason"].values[~keep], strict=True)
    ]
    if not keep.any():
        raise InputError(
            f"update: every new pair failed quality control ({dropped[0]['reason']}, ...); "
            "check the products of the new date or relax the qc section"
        )
    return stack.isel(pair=keep), dropped
