"""Config sections of reading the input: product selection and formats, object storage."""

from __future__ import annotations

import os
from datetime import date
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from mtinsar.config.base import Section


class IngestConfig(Section):
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


class StorageConfig(Section):
    """How to reach object storage / HTTP servers (unset keys: AWS environment variables)."""

    endpoint_url: str | None = Field(
        None,
        description="S3-compatible endpoint, e.g. http://127.0.0.1:9000 (MinIO, Ceph, moto). "
        "Unset: AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, else Amazon S3.",
    )
    anonymous: bool | None = Field(
        None,
        description="Unsigned requests (public buckets). Unset: AWS_NO_SIGN_REQUEST=YES.",
    )
    region: str | None = Field(
        None, description="S3 region. Unset: AWS_REGION or AWS_DEFAULT_REGION."
    )
    retries: int = Field(
        3, ge=1, le=20, description="Attempts to reach the store before giving up."
    )
    backoff_s: float = Field(
        0.5, ge=0, description="First wait between attempts [s]; doubles after each."
    )
    timeout_s: float = Field(10.0, gt=0, description="Connect/read timeout of one request [s].")

    def resolved(self) -> StorageConfig:
        """A copy with the unset keys filled from the environment."""
        env = os.environ
        anonymous = self.anonymous
        if anonymous is None:
            anonymous = env.get("AWS_NO_SIGN_REQUEST", "").upper() in ("YES", "TRUE", "1")
        return self.model_copy(
            update={
                "endpoint_url": self.endpoint_url
                or env.get("AWS_ENDPOINT_URL_S3")
                or env.get("AWS_ENDPOINT_URL"),
                "anonymous": anonymous,
                "region": self.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
            }
        )
