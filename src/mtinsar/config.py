"""Run configuration: one pydantic model per stage, read from TOML, defaults documented here.

`mtinsar config` prints the full default configuration as commented TOML; every key below
appears there with its description, so a config file only needs the keys it changes.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mtinsar.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class IngestConfig(_Section):
    """Reading products into an interferogram stack."""

    bbox: tuple[float, float, float, float] | None = Field(
        None,
        description="Crop to [lon_min, lat_min, lon_max, lat_max] in degrees (EPSG:4326). "
        "Unset: the whole frame.",
    )
    multilook: int = Field(
        1, ge=1, description="Integer multilook factor applied after cropping (1 = none)."
    )
    exclude_pairs: list[str] = Field(
        default_factory=list,
        description='Pairs to leave out, as "YYYYMMDD_YYYYMMDD" names.',
    )
    wavelength: float | None = Field(
        None,
        gt=0,
        description="Radar wavelength [m]. Unset: from the product metadata, else Sentinel-1 "
        "C-band 0.05546576 m.",
    )
    chunk_size: int = Field(
        256, ge=16, description="Spatial chunk size [pixels] of the Zarr stack store."
    )

    @field_validator("bbox")
    @classmethod
    def _ordered(cls, v: tuple[float, float, float, float] | None) -> Any:
        if v is not None and not (v[0] < v[2] and v[1] < v[3]):
            raise ValueError("bbox must be [lon_min, lat_min, lon_max, lat_max] with min < max")
        return v


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
    """SBAS network inversion."""

    min_group_size: int = Field(
        8,
        ge=1,
        description="Pixels sharing one valid-pair pattern are solved with a single "
        "factorisation when at least this many share it; the rest use batched normal "
        "equations. A speed knob only: results are the same.",
    )


class MaskConfig(_Section):
    """Reliability mask of the result."""

    min_temporal_coherence: float = Field(
        0.7, ge=0, le=1, description="Pixels below this temporal coherence are masked."
    )


class OutputConfig(_Section):
    """What goes into the result folder."""

    cog: bool = Field(True, description="Write Cloud-Optimized GeoTIFFs of the main layers.")
    figures: bool = Field(True, description="Write PNG figures.")
    n_sample_points: int = Field(
        4, ge=0, le=12, description="Number of pixels whose time series are plotted."
    )


class RunConfig(_Section):
    """Everything `mtinsar run` needs. Each section documents its keys."""

    ingest: IngestConfig = Field(default_factory=IngestConfig)
    reference: ReferenceConfig = Field(default_factory=ReferenceConfig)
    inversion: InversionConfig = Field(default_factory=InversionConfig)
    mask: MaskConfig = Field(default_factory=MaskConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)


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
        lines.append(f"# {type(section).__doc__.strip()}")
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
