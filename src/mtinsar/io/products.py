"""Which reader reads a product folder: the configured format, or one detected from names.

Readers share one signature, ``read(path, config: IngestConfig, progress) -> IfgStack``, and
each format module has a cheap ``is_<format>(path)`` sniffer that looks at names only.
Modules are imported on demand so one format's dependencies never burden another's users.

Products listed one by one (the hrefs of STAC items, `read_listed`) are read in place from
the folders that hold them, with the reader's own pair selection (``include_pairs``): no
copy, no staging folder of links (which could not point into object storage), and each
format's layout rules (a LiCSAR pair needs its frame's metadata/ beside interferograms/)
stay in its reader.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path

import xarray as xr

from mtinsar.config import IngestConfig
from mtinsar.errors import InputError
from mtinsar.sources.remote import RemotePath, as_path, is_remote

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


def product_root(href: str | Path, pair: str) -> Path | RemotePath:
    """The folder holding the product `href` of `pair` ('YYYYMMDD_YYYYMMDD') among others.

    Every format names a pair's files or folders with its two dates (LiCSAR pair folders,
    HyP3 product names, ARIA GUNW names, per-pair GeoTIFFs), so the root is the nearest
    folder above `href` whose name does not hold both dates: ``frame/interferograms`` for
    ``frame/interferograms/P/P.geo.unw.tif``, the folder of a HyP3 .zip or GUNW .nc file.
    """
    dates = pair.split("_")
    product = as_path(href)
    path = product.parent
    while all(d in path.name for d in dates) and path.parent != path:
        path = path.parent
    if path == product or all(d in path.name for d in dates) or not path.name:
        raise InputError(f"{href}: no folder above this product of pair {pair} to read it from")
    return path


def read_listed(
    products: Mapping[str, str], config: IngestConfig | None = None, progress: bool = False
) -> xr.Dataset:
    """Read the products `products` (pair label -> href of its file or folder) in place.

    Products are grouped by `product_root` and each root is read with ``include_pairs`` set
    to its pairs (other pairs there are not read). Roots on one grid are joined into one
    stack; a missing href, or roots on different grids, raise InputError naming them.
    """
    config = config or IngestConfig()
    if not products:
        raise InputError("no products listed: nothing to read")
    roots: dict[str, list[str]] = {}
    for pair, href in products.items():
        if not as_path(href).exists():
            raise InputError(f"{href}: product of pair {pair} not found; check the catalog")
        roots.setdefault(str(product_root(href, pair)), []).append(pair)
    stacks = [
        read_products(root, config.model_copy(update={"include_pairs": sorted(pairs)}), progress)
        for root, pairs in roots.items()
    ]
    if len(stacks) == 1:
        return stacks[0]
    try:
        joined = xr.concat(
            stacks,
            dim="pair",
            data_vars="minimal",
            coords="minimal",
            compat="override",
            join="exact",
        )
    except ValueError as exc:
        raise InputError(
            f"products in {', '.join(roots)} are on different grids ({exc}); list products of "
            "one frame, or crop them to one area with ingest.bbox"
        ) from exc
    return joined.sortby(["ref_date", "sec_date"])
