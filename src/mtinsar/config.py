"""Run configuration: one pydantic model per stage, read from TOML, defaults documented here.

`mtinsar config` prints the full default configuration as commented TOML; every key below
appears there with its description, so a config file only needs the keys it changes.
"""

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mtinsar.analysis.model import ModelConfig
from mtinsar.analysis.qc import QcConfig
from mtinsar.corrections.dem_error import DemErrorConfig
from mtinsar.corrections.external import ExternalDelayConfig
from mtinsar.corrections.ramp import RampConfig
from mtinsar.corrections.troposphere import TroposphereConfig
from mtinsar.corrections.unwrap import UnwrapConfig
from mtinsar.errors import ConfigError
from mtinsar.sources.remote import StorageConfig


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class IngestConfig(_Section):
    """Reading products into an interferogram stack: selection, multilook, format options."""

    format: Literal["auto", "licsar", "hyp3", "aria", "isce", "mintpy", "geotiff"] = Field(
        "auto",
        description="Product format: auto (detected from file names), licsar (COMET-LiCSAR "
        "frame or LiCSBAS GEOC folder), hyp3 (ASF HyP3 INSAR_GAMMA folders/zips), aria (JPL "
        "ARIA GUNW netCDF files, frames mosaicked), isce (ISCE2 topsStack merged/ folder), "
        "mintpy (MintPy ifgramStack.h5 + geometryGeo.h5), "
        "geotiff (generic per-pair GeoTIFFs).",
    )
    dem: str | None = Field(
        None,
        description="DEM raster [m] for products without heights (ARIA GUNW): sets `height` "
        "and the height at which geometry cubes are read. Unset: geometry at 0 m, height NaN.",
    )
    bbox: tuple[float, float, float, float] | None = Field(
        None,
        description="Crop to [x_min, y_min, x_max, y_max] in `selection_crs` (default: "
        "lon_min, lat_min, lon_max, lat_max in degrees). Unset: the whole frame.",
    )
    polygon: str | None = Field(
        None,
        description="Crop to a GeoJSON polygon: a file path or the GeoJSON text (Geometry, "
        "Feature or FeatureCollection). Its CRS is the GeoJSON 'crs' member if present, else "
        "`selection_crs`. Pixels outside it are no data. Unset: no polygon.",
    )
    selection_crs: str = Field(
        "EPSG:4326",
        description="CRS of `bbox` and of a `polygon` without a 'crs' member (any string "
        "pyproj understands, e.g. EPSG:32614).",
    )
    start_date: date | None = Field(
        None, description="Keep only pairs whose both dates are on or after this day. Unset: all."
    )
    end_date: date | None = Field(
        None, description="Keep only pairs whose both dates are on or before this day. Unset: all."
    )
    max_temporal_baseline_days: int | None = Field(
        None, ge=1, description="Keep only pairs spanning at most this many days. Unset: all."
    )
    ending_after: date | None = Field(
        None,
        description="Keep only pairs whose later date is after this day (what `mtinsar update` "
        "reads: the acquisitions newer than the result). Unset: all.",
    )
    include_pairs: list[str] = Field(
        default_factory=list,
        description='Keep only these pairs, as "YYYYMMDD_YYYYMMDD" names (empty: all).',
    )
    exclude_pairs: list[str] = Field(
        default_factory=list,
        description='Pairs to leave out, as "YYYYMMDD_YYYYMMDD" names.',
    )
    multilook: int = Field(
        1, ge=1, description="Integer multilook factor applied after cropping (1 = none)."
    )
    wavelength: float | None = Field(
        None,
        gt=0,
        description="Radar wavelength [m]; overrides the product metadata. Unset: from the "
        "metadata (generic GeoTIFF: required there), else Sentinel-1 C-band 0.05546576 m.",
    )
    chunk_size: int = Field(
        256, ge=16, description="Spatial chunk size [pixels] of the Zarr stack store."
    )
    geotiff_unw_patterns: list[str] = Field(
        default_factory=lambda: ["*unw*"],
        description="Generic GeoTIFF stacks: file-name patterns (shell-style, case-insensitive, "
        "without the .tif/.tiff extension) of the unwrapped-phase files.",
    )
    geotiff_coh_patterns: list[str] = Field(
        default_factory=lambda: ["*cc*", "*coh*", "*cor*"],
        description="Generic GeoTIFF stacks: file-name patterns of the coherence files "
        "(matched to their pair by the dates).",
    )
    geotiff_dem_patterns: list[str] = Field(
        default_factory=lambda: ["*dem*", "*hgt*", "*height*"],
        description="Generic GeoTIFF stacks: file-name patterns of the DEM (a file without "
        "pair dates). None found: height is NaN.",
    )
    geotiff_phase_sign: Literal[1, -1] = Field(
        1,
        description="Generic GeoTIFF stacks: 1 if positive phase is motion away from the "
        "satellite (GAMMA, ISCE, SNAP, MintPy), -1 if towards it (e.g. ARIA GUNW exports).",
    )

    @field_validator("bbox")
    @classmethod
    def _ordered(cls, v: tuple[float, float, float, float] | None) -> Any:
        if v is not None and not (v[0] < v[2] and v[1] < v[3]):
            raise ValueError("bbox must be [x_min, y_min, x_max, y_max] with min < max")
        return v

    @model_validator(mode="after")
    def _date_range(self) -> IngestConfig:
        if self.start_date and self.end_date and self.start_date > self.end_date:
            raise ValueError("start_date must not be after end_date")
        return self


class ReferenceConfig(_Section):
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


class InversionConfig(_Section):
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


class MaskConfig(_Section):
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


class OutputConfig(_Section):
    """What goes into the result folder."""

    cog: bool = Field(True, description="Write Cloud-Optimized GeoTIFFs of the main layers.")
    figures: bool = Field(True, description="Write PNG figures and the HTML report.")
    n_sample_points: int = Field(
        4, ge=0, le=12, description="Number of pixels whose time series are plotted."
    )


class ExecutionConfig(_Section):
    """How the chunked computations run (Dask)."""

    scheduler: str = Field(
        "threads",
        description="Dask scheduler: 'threads', 'processes', 'synchronous' (one thread, for "
        "debugging), or a dask.distributed scheduler address such as 'tcp://host:8786'.",
    )
    n_workers: int | None = Field(
        None, ge=1, description="Threads or processes of a local scheduler (default: all cores)."
    )


class NrtConfig(_Section):
    """Near-real-time updates: alert thresholds, webhooks and the full re-run policy."""

    k_sigma: float = Field(
        3.0,
        gt=0,
        description="A pixel alerts when its new displacement departs from the model "
        "prediction by more than k_sigma prediction standard deviations.",
    )
    min_area_px: int = Field(
        20, ge=1, description="Smallest connected area of alerting pixels that is reported."
    )
    connectivity: Literal[4, 8] = Field(
        8, description="Pixel connectivity of alert areas: 4 (edges) or 8 (edges and corners)."
    )
    highpass_window_px: int = Field(
        31,
        ge=0,
        description="Side [pixels] of the window whose mean departure (the new date's "
        "long-wavelength atmosphere) is removed before the test; areas much smaller than "
        "the window are detected, larger ones look like atmosphere (0 = off).",
    )
    reliable_only: bool = Field(
        True, description="Alert only on pixels of the result's reliability mask."
    )
    velocity_k_sigma: float = Field(
        3.0,
        gt=0,
        description="A pixel alerts when its velocity differs from the velocity of the last "
        "full run by more than velocity_k_sigma times the difference's standard deviation...",
    )
    velocity_change_mm_yr: float = Field(
        5.0,
        ge=0,
        description="...and by at least this much [mm/yr] (formal stds of long series are "
        "small: a significant but tiny change is not worth an alert).",
    )
    webhooks: list[str] = Field(
        default_factory=list,
        description="URLs that receive the alerts as a GeoJSON POST after an update with alerts.",
    )
    webhook_timeout_s: float = Field(5.0, gt=0, description="Timeout of one webhook request [s].")
    webhook_retries: int = Field(
        3, ge=0, description="Retries of a failed webhook request (exponential backoff)."
    )
    webhook_backoff_s: float = Field(
        0.5, ge=0, description="Wait before the first retry [s]; doubled at each retry."
    )
    webhook_max_s: float = Field(
        30.0,
        gt=0,
        description="Time budget for one webhook, retries included [s]: a dead webhook never "
        "holds the update longer.",
    )
    full_rerun_every: int = Field(
        12,
        ge=1,
        description="A full re-inversion (`mtinsar run --full`) is due after this many "
        "updates (about 5 months of 12-day revisits).",
    )
    residual_growth_factor: float = Field(
        1.5,
        gt=1,
        description="A full re-inversion is due when the median model residual RMS of the "
        "reliable pixels exceeds this factor times its value after the last full run.",
    )


class RunConfig(_Section):
    """Everything `mtinsar run` needs. Each section documents its keys."""

    ingest: IngestConfig = Field(default_factory=IngestConfig)
    qc: QcConfig = Field(default_factory=QcConfig)
    reference: ReferenceConfig = Field(default_factory=ReferenceConfig)
    unwrap: UnwrapConfig = Field(default_factory=UnwrapConfig)
    inversion: InversionConfig = Field(default_factory=InversionConfig)
    external: ExternalDelayConfig = Field(default_factory=ExternalDelayConfig)
    troposphere: TroposphereConfig = Field(default_factory=TroposphereConfig)
    ramp: RampConfig = Field(default_factory=RampConfig)
    dem_error: DemErrorConfig = Field(default_factory=DemErrorConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    mask: MaskConfig = Field(default_factory=MaskConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    nrt: NrtConfig = Field(default_factory=NrtConfig)


def load_config(path: str | Path | None = None, **overrides: dict[str, Any]) -> RunConfig:
    """Read a TOML config (or the defaults), then apply per-section `overrides`.

    `overrides` maps a section name to the keys set on the command line, e.g.
    ``load_config(p, ingest={"multilook": 2})``; keys whose value is None are ignored.
    """
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist; check the path") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    for section, values in overrides.items():
        data.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        where = f"config file {path}" if path is not None else "options"
        problems = "; ".join(
            f"[{'.'.join(str(p) for p in err['loc'])}] {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(
            f"invalid {where}: {problems}. Run `mtinsar config` to see every key and its default."
        ) from None


def default_toml() -> str:
    """The default configuration as commented TOML (every key, its description, its default)."""
    lines = ["# mtinsar run configuration: every key with its default.", ""]
    for name, field in RunConfig.model_fields.items():
        section = field.default_factory()  # type: ignore[misc]
        lines += [
            f"# {line.strip()}".rstrip() for line in type(section).__doc__.strip().splitlines()
        ]
        lines.append(f"[{name}]")
        for key, sub in type(section).model_fields.items():
            lines.append(f"# {sub.description}")
            value = getattr(section, key)
            if value is None:
                lines.append(f"# {key} =")
            else:
                lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)
