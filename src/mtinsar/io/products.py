"""Which reader reads a product folder: the configured format, or one detected from names.

Readers share one signature, ``read(path, config: IngestConfig, progress) -> IfgStack``, and
each format module has a cheap ``is_<format>(path)`` sniffer that looks at names only.
Modules are imported on demand so one format's dependencies never burden another's users.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import xarray as xr

from mtinsar.config import IngestConfig
from mtinsar.errors import InputError
from mtinsar.sources.remote import as_path, is_remote

#: format -> (module, reader, sniffer), in detection order: specific layouts before the
#: generic GeoTIFF folder, which matches almost any folder of per-pair rasters.
FORMATS: dict[str, tuple[str, str, str]] = {
    "aria": ("mtinsar.io.aria", "read_aria", "is_aria"),
    "isce": ("mtinsar.io.isce", "read_isce", "is_isce"),
    "mintpy": ("mtinsar.io.mintpy", "read_mintpy", "is_mintpy"),
    "licsar": ("mtinsar.io.licsar", "read_licsar_config", "is_licsar"),
    "hyp3": ("mtinsar.io.hyp3", "read_hyp3", "is_hyp3"),
    "geotiff": ("mtinsar.io.geotiff", "read_geotiff", "is_geotiff"),
}


def detect_format(path: str | Path) -> str:
    """The format of the product folder `path`, from file and folder names."""
    path = as_path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder; give the product folder's path")
    for name, (module, _, sniffer) in FORMATS.items():
        # Sniffers get a URL as text: those that cannot list remote folders say "no".
        if getattr(importlib.import_module(module), sniffer)(
            str(path) if is_remote(path) else path
        ):
            return name
    if (path / "interferograms").is_dir() or (path / "metadata").is_dir():
        return "licsar"  # a damaged LiCSAR frame: its reader says what exactly is missing
    raise InputError(
        f"{path}: no supported products found (looked for {', '.join(FORMATS)}); check the "
        "path, or name the format with ingest.format (CLI: --format)"
    )


def read_products(
    path: str | Path, config: IngestConfig | None = None, progress: bool = False
) -> xr.Dataset:
    """Read the product folder `path` into an IfgStack with the format's reader."""
    config = config or IngestConfig()
    name = detect_format(path) if config.format == "auto" else config.format
    module, reader, _ = FORMATS[name]
    return getattr(importlib.import_module(module), reader)(path, config, progress)
