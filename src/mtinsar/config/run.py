"""The whole run's configuration (`RunConfig`) and its run-level sections: outputs,
execution, near-real-time updates."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mtinsar.config.analysis import (
    InversionConfig,
    MaskConfig,
    ModelConfig,
    QcConfig,
    ReferenceConfig,
)
from mtinsar.config.base import Section
from mtinsar.config.corrections import (
    DemErrorConfig,
    ExternalDelayConfig,
    RampConfig,
    TroposphereConfig,
    UnwrapConfig,
)
from mtinsar.config.ingest import IngestConfig, StorageConfig


class OutputConfig(Section):
    """What goes into the result folder."""

    cog: bool = Field(True, description="Write Cloud-Optimized GeoTIFFs of the main layers.")
    figures: bool = Field(True, description="Write PNG figures and the HTML report.")
    n_sample_points: int = Field(
        4, ge=0, le=12, description="Number of pixels whose time series are plotted."
    )


class ExecutionConfig(Section):
    """How the chunked computations run (Dask)."""

    scheduler: str = Field(
        "threads",
        description="Dask scheduler: 'threads', 'processes', 'synchronous' (one thread, for "
        "debugging), or a dask.distributed scheduler address such as 'tcp://host:8786'.",
    )
    n_workers: int | None = Field(
        None, ge=1, description="Threads or processes of a local scheduler (default: all cores)."
    )


class NrtConfig(Section):
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
        description="URLs that receive an update's alerts as one GeoJSON POST (the alerts of "
        "every date it added, each feature with its date), after an update with alerts.",
    )
    webhook_on_quiet: bool = Field(
        False,
        description="POST an empty collection also after updates without alerts (a heartbeat).",
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


class RunConfig(Section):
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
