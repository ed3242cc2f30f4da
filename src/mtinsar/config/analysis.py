"""Config sections of the time-series analysis: pair QC, reference point, network inversion,
time-series model and reliability mask (the science in `mtinsar.analysis`)."""

from __future__ import annotations

import datetime as _dt
import math
from typing import Literal

from pydantic import Field, field_validator, model_validator

from mtinsar.config.base import Section

#: Default |closure phase| [rad] above which a loop closes badly at a pixel: past the half
#: cycle where the nearest whole number of cycles turns non-zero, with a quarter-cycle
#: margin that decorrelation noise alone rarely crosses.
CLOSURE_THRESHOLD = 1.25 * math.pi


class QcConfig(Section):
    """Pair quality control: drop rules and loop-closure screening of unwrapping errors."""

    min_mean_coherence: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Drop a pair whose mean coherence over its valid pixels is below this "
        "(LiCSBAS step 11 default 0.05).",
    )
    min_valid_fraction: float = Field(
        0.3,
        ge=0,
        le=1,
        description="Drop a pair whose unwrapped (valid) pixels are fewer than this fraction "
        "of the pixels valid in any pair (LiCSBAS step 11 default 0.3).",
    )
    max_components: int | None = Field(
        None,
        ge=1,
        description="Drop a pair with more connected components (of at least "
        "min_component_pixels) than this; only for stacks with `conncomp`. Unset: no limit.",
    )
    min_component_pixels: int = Field(
        50, ge=1, description="Connected components smaller than this [pixels] are not counted."
    )
    closure_threshold: float = Field(
        CLOSURE_THRESHOLD,
        gt=0,
        description="A loop closes badly at a pixel when |closure phase| exceeds this [rad]. "
        "Default 1.25 pi: past the half cycle where the nearest whole number of cycles "
        "turns non-zero, with a margin that decorrelation noise alone rarely crosses.",
    )
    max_bad_fraction: float = Field(
        0.002,
        ge=0,
        le=1,
        description="A loop is bad when more than this fraction of its valid pixels close "
        "badly. Decorrelation alone stays below it; an unwrapping error over a patch of "
        "tens of pixels exceeds it.",
    )
    min_bad_pixels: int = Field(
        10,
        ge=1,
        description="A loop is only bad with at least this many badly closing pixels, so "
        "scattered noise in a small scene is not taken for an unwrapping error.",
    )
    long_loops: int = Field(
        3,
        ge=0,
        description="Pairs in no triplet loop (e.g. 1-year pairs) are checked with up to this "
        "many longer loops, sharing no pair with each other (0 = triplets only).",
    )
    max_loop_length: int = Field(
        12, ge=4, description="Longest such loop, in pairs (the pair itself included)."
    )
    drop_flagged: bool = Field(
        False,
        description="Drop the pairs that closure screening flags instead of only reporting "
        "them. Off by default: the unwrapping-error correction repairs them pixel by pixel.",
    )
    drop_unchecked: bool = Field(
        False,
        description="Also drop pairs that no loop can check (LiCSBAS drops such 'no-loop' "
        "interferograms).",
    )


class ReferenceConfig(Section):
    """Spatial reference point: every displacement is relative to it."""

    lon: float | None = Field(
        None, description="Reference longitude [deg]. Unset (with lat): chosen automatically."
    )
    lat: float | None = Field(
        None, description="Reference latitude [deg]. Unset (with lon): chosen automatically."
    )
    radius: int = Field(
        3,
        ge=0,
        description="Half-size [pixels] of the reference window: the reference phase of each "
        "pair is the median over (2*radius+1)^2 pixels.",
    )

    @model_validator(mode="after")
    def _both_or_none(self) -> ReferenceConfig:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("give both reference lon and lat, or neither")
        return self


class InversionConfig(Section):
    """Network inversion of the pairs into a time series: SBAS, min-norm SBAS or NSBAS."""

    method: Literal["sbas", "min-norm", "nsbas"] = Field(
        "sbas",
        description="sbas: least squares (Berardino et al. 2002); pixels whose valid pairs "
        "do not link every date are left out, and a network split stops the run. min-norm: "
        "the SVD minimum-norm solution, which bridges gaps with zero velocity (biased where "
        "the ground moves). nsbas: pairs plus a linear-in-time constraint of weight gamma "
        "(Doin et al. 2011) that bridges gaps with a continuous series.",
    )
    gamma: float = Field(
        0.01,
        gt=0,
        description="NSBAS constraint weight, relative to a pair of the pixel's mean weight. "
        "Small values leave pixels whose pairs link every date at their SBAS solution and "
        "only fill what the pairs leave free.",
    )
    min_valid_pairs: int | None = Field(
        None,
        ge=1,
        description="min-norm and nsbas: pixels with fewer valid pairs are not estimated. "
        "Unset: the number of dates - 1, the fewest that can link every date.",
    )
    weighting: Literal["none", "coherence"] = Field(
        "none",
        description="none: every valid pair counts equally (fastest: pixels sharing a "
        "valid-pair pattern share one factorisation). coherence: each pair weighs the "
        "inverse of its phase variance derived from coherence and looks (as MintPy).",
    )
    variance_model: Literal["pdf", "cramer-rao"] = Field(
        "pdf",
        description="Coherence-to-phase-variance model of coherence weighting: pdf, the "
        "variance of the multilook phase distribution (Tough et al. 1995); cramer-rao, the "
        "Cramér-Rao bound (1 - g²) / (2 L g²), right for Gaussian phase noise only.",
    )
    looks: int = Field(
        20,
        ge=1,
        description="Effective number of looks of the coherence estimates, for weighting.",
    )
    min_group_size: int = Field(
        8,
        ge=1,
        description="Pixels sharing one valid-pair pattern are solved with a single "
        "factorisation when at least this many share it; the rest use batched normal "
        "equations. A speed knob only: results are the same.",
    )
    backend: Literal["numpy", "jax"] = Field(
        "numpy",
        description="numpy: on the CPU (compiled sparse Cholesky per pixel, BLAS for shared "
        "patterns). jax: every pixel's normal equations solved by JAX in float64 on its "
        "default device, a GPU when jax is installed with CUDA (pip install "
        "'jax[cuda12]'); sbas and nsbas only. Results agree to float rounding.",
    )

    @model_validator(mode="after")
    def _backend_supports_method(self) -> InversionConfig:
        # whether jax is installed is the run's check (`workflows.pipeline.check_runnable`):
        # a config stays valid on a machine that only reads its results
        if self.backend == "jax" and self.method == "min-norm":
            raise ValueError("backend 'jax' solves sbas and nsbas, not min-norm")
        return self


class ModelConfig(Section):
    """Time-series model fitted to each pixel (the linear trend is always in)."""

    annual: bool = Field(False, description="Fit an annual sinusoid (amplitude, phase).")
    semi_annual: bool = Field(False, description="Fit a semi-annual sinusoid.")
    acceleration: bool = Field(
        False, description="Fit a constant acceleration [m/yr²]; velocity is then mid-span."
    )
    steps: list[str] = Field(
        default_factory=list,
        description='Dates of steps (e.g. earthquakes) as "YYYY-MM-DD"; each step is in '
        "every acquisition on or after its date.",
    )
    reference_date: str | None = Field(
        None,
        description='Temporal reference "YYYY-MM-DD" (an acquisition date): displacement is '
        "zero there. Unset: the first date.",
    )
    bootstrap: int = Field(
        0,
        ge=0,
        description="Number of bootstrap resamplings of the dates for a second standard "
        "deviation of each parameter (0 = off; 100-400 is typical).",
    )
    bootstrap_seed: int = Field(0, ge=0, description="Random seed of the bootstrap.")
    noisy_epoch_factor: float = Field(
        2.0,
        gt=1,
        description="A date whose residual RMS over the scene exceeds this factor times the "
        "median over dates is flagged as noisy.",
    )

    @field_validator("steps")
    @classmethod
    def _iso_dates(cls, values: list[str]) -> list[str]:
        for v in values:
            _check_iso(v, "steps")
        return sorted(set(values))

    @field_validator("reference_date")
    @classmethod
    def _iso_date(cls, value: str | None) -> str | None:
        return None if value is None else _check_iso(value, "reference_date")


def _check_iso(value: str, field: str) -> str:
    try:
        _dt.date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{field}: {value!r} is not a YYYY-MM-DD date") from exc
    return value


class MaskConfig(Section):
    """Reliability mask of the result: a pixel is reliable when it passes every rule set.

    Every noise index behind a rule is saved as its own layer, so a stricter or looser mask
    can be made afterwards without re-running.
    """

    min_temporal_coherence: float = Field(
        0.7,
        ge=0,
        le=1,
        description="Pixels below this temporal coherence are masked (MintPy's default 0.7).",
    )
    min_valid_pairs: int | None = Field(
        None, ge=1, description="Pixels with fewer valid pairs are masked. Unset: no rule."
    )
    min_mean_coherence: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Pixels whose mean coherence over their valid pairs is below this are "
        "masked (LiCSBAS uses 0.05). Unset: no rule.",
    )
    max_velocity_std: float | None = Field(
        None,
        gt=0,
        description="Pixels with a larger velocity std [m/yr] are masked. Unset: no rule.",
    )
    max_closure_errors: int | None = Field(
        None,
        ge=0,
        description="Pixels with more loops that close badly (before correction) are masked "
        "(LiCSBAS n_loop_err). Unset: no rule.",
    )
    max_model_residual: float | None = Field(
        None,
        gt=0,
        description="Pixels whose time-series model residual RMS [m] is larger are masked. "
        "Unset: no rule.",
    )
