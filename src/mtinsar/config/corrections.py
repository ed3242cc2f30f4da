"""Config sections of the corrections (`mtinsar.corrections`): unwrapping errors, external
and empirical troposphere, ramps, DEM error."""

from __future__ import annotations

import datetime
from typing import Literal

from pydantic import Field, field_validator, model_validator

from mtinsar.config.base import Section

#: Delay-map file names tried per date when none are configured, "{date}" being YYYYMMDD:
#: GACOS GeoTIFF and binary zenith delays (the names MintPy and LiCSBAS accept).
DEFAULT_DELAY_PATTERNS = ("{date}.ztd.tif", "{date}.ztd")


class UnwrapConfig(Section):
    """Unwrapping-error correction (phase closure; bridging of connected components)."""

    closure: bool = Field(
        True, description="Correct unwrapping errors per pixel from loop closure (phase closure)."
    )
    min_improvement: int = Field(
        2,
        ge=1,
        description="Shift a pair by a cycle at a pixel only when that makes at least this many "
        "more loops close there. 2 leaves alone a pixel whose only evidence is one loop, "
        "which cannot tell which of its pairs is wrong.",
    )
    max_corrections: int = Field(
        6, ge=1, description="Most single-cycle shifts per pixel (all pairs together)."
    )
    bridging: bool = Field(
        True,
        description="Bridge connected components (stacks with `conncomp` only): shift each "
        "component by the whole cycles that make its phase continuous with its neighbour's.",
    )
    bridge_radius: int = Field(
        3,
        ge=0,
        description="Half-size [pixels] of the windows, at either end of a bridge, whose "
        "median phases are compared.",
    )
    min_component_pixels: int = Field(
        50, ge=1, description="Components smaller than this [pixels] are left unchanged."
    )


class ExternalDelayConfig(Section):
    """Externally computed tropospheric delays (GACOS, ERA5) subtracted per date."""

    enabled: bool = Field(
        False, description="Subtract per-date delay maps read from `directory`. Default off."
    )
    directory: str | None = Field(
        None, description="Folder holding one delay map per acquisition date."
    )
    patterns: list[str] = Field(
        default_factory=lambda: list(DEFAULT_DELAY_PATTERNS),
        description='File names tried per date, "{date}" standing for YYYYMMDD; shell '
        'wildcards allowed (e.g. "ERA5_{date}*.tif"). Default: GACOS "{date}.ztd.tif", '
        '"{date}.ztd". LiCSAR GACOS: "{date}.sltd.geo.tif" with kind "slant", units "rad".',
    )
    kind: Literal["zenith", "slant"] = Field(
        "zenith",
        description='"zenith": zenith delays, projected with 1/cos(incidence) (GACOS .ztd); '
        '"slant": already along the line of sight.',
    )
    units: Literal["m", "rad"] = Field(
        "m",
        description='Units of the maps: "m" of one-way path delay, or "rad" of radar phase '
        "(converted with wavelength / 4 pi; LiCSAR .sltd.geo.tif). Positive = longer path.",
    )

    @model_validator(mode="after")
    def _directory_when_enabled(self) -> ExternalDelayConfig:
        if self.enabled and not self.directory:
            raise ValueError("external.enabled needs external.directory, the folder of delay maps")
        return self


class TroposphereConfig(Section):
    """Empirical phase-elevation troposphere correction (Doin et al. 2009; Lin et al. 2010)."""

    enabled: bool = Field(
        False,
        description="Remove, per date, the part of the displacement proportional to terrain "
        "height (stratified troposphere). Off by default: in areas where deformation follows "
        "the relief everywhere (e.g. a volcano) it can remove real signal.",
    )
    ramp_order: Literal[0, 1, 2] = Field(
        1,
        description="Order of the polynomial ramp fitted together with the height term (not "
        "removed here) so that a ramp correlated with the terrain does not bias the "
        "delay/height ratio: 0 = a constant only, 1 = plane, 2 = quadratic.",
    )
    window: int = Field(
        0,
        ge=0,
        description="Side [pixels] of the square windows in which the delay/height ratio is "
        "estimated separately and then interpolated (Lin et al. 2010); 0 = one ratio per "
        "date for the whole scene. Use windows of tens of km on large scenes.",
    )
    robust: bool = Field(
        True,
        description="Fit on pixels that behave as stable (iteratively reweighted, so "
        "deformation correlated with height is not taken for delay). Off: plain least "
        "squares on the mask.",
    )
    max_fit_pixels: int = Field(
        100_000,
        ge=100,
        description="At most this many mask pixels (an even subsample) enter the fit.",
    )


class RampConfig(Section):
    """Per-date ramp removal (MintPy `deramp`; Yunjun et al. 2019)."""

    enabled: bool = Field(
        False,
        description="Remove a per-date polynomial ramp (orbit/ionosphere residual). Off by "
        "default, as in MintPy: a ramp fit can absorb real long-wavelength deformation.",
    )
    order: Literal[1, 2] = Field(
        1,
        description="Polynomial order of the ramp: 1 = plane (a + b x + c y), 2 = quadratic "
        "(adds x², y², x y; for curved ionospheric ramps, at more risk of absorbing broad "
        "deformation).",
    )
    robust: bool = Field(
        True,
        description="Fit on pixels that behave as stable (iteratively reweighted, so "
        "deforming areas do not bend the ramp). Off: plain least squares on the mask.",
    )
    max_fit_pixels: int = Field(
        100_000,
        ge=100,
        description="At most this many mask pixels (an even subsample) enter the fit; a ramp "
        "has at most 6 parameters, so more only costs time.",
    )


class DemErrorConfig(Section):
    """DEM error (topographic residual) correction (Fattahi & Amelung 2013)."""

    enabled: bool = Field(
        False,
        description="Estimate and remove the DEM-error term Bperp_t dz / (R sin inc) pixel by "
        "pixel. Off by default (MintPy has it on): `mtinsar update` cannot extend a corrected "
        "series, and deformation the model below does not describe still leaks a little into "
        "the estimate, so give it the [model] terms the area needs.",
    )
    poly_order: int = Field(
        2,
        ge=1,
        le=3,
        description="Order of the polynomial in time of the deformation model fitted with the "
        "DEM error: 1 = offset + velocity, 2 = adds acceleration (MintPy default).",
    )
    periods: list[float] = Field(
        default_factory=list,
        description="Periods [years] of sine/cosine terms added to the deformation model, "
        "e.g. [1.0, 0.5] for annual and semi-annual motion. Default none.",
    )
    step_dates: list[str] = Field(
        default_factory=list,
        description='Dates "YYYY-MM-DD" of steps (e.g. earthquakes) in the deformation model. '
        "Default none.",
    )
    phase_velocity: bool = Field(
        True,
        description="Fit the phase velocity (differences of consecutive dates over their time "
        "span; Fattahi & Amelung 2013) instead of the phase (MintPy's default): smooth "
        "deformation the model misses leaks much less into the DEM error.",
    )
    robust: bool = Field(
        True,
        description="Reweight the fit with Tukey's biweight (IRLS), so a jump the model does "
        "not hold (a step, an unwrapping error) is left out instead of biasing the DEM error.",
    )
    slant_range_m: float | None = Field(
        None,
        gt=0,
        description="Slant range [m] used to turn the fit into a height error. Unset: the "
        "stack's `slant_range` layer where the product has one, else 880 km (Sentinel-1 IW "
        "scene centre). It does not change the corrected time series.",
    )

    @field_validator("step_dates")
    @classmethod
    def _iso_dates(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                datetime.date.fromisoformat(value)
            except ValueError:
                raise ValueError(f"step date {value!r} is not YYYY-MM-DD") from None
        return values
