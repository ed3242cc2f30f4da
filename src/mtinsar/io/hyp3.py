"""ASF HyP3 InSAR (GAMMA) products -> `IfgStack`.

`path` is a folder holding one product per pair, as a folder or as the .zip ASF delivers
(read in place through GDAL's /vsizip/, never extracted)::

    path/S1AA_20161223T070700_20170116T070658_VVP024_INT80_G_ueF_74C2/       (or .zip holding it)
      {name}_unw_phase.tif   float32 rad      {name}_corr.tif        float32 coherence 0-1
      {name}_conncomp.tif    labels (opt.)    {name}_dem.tif         float32 height [m]
      {name}_lv_theta.tif    float32 rad      {name}_lv_phi.tif      float32 rad
      {name}_water_mask.tif  uint8 1 = land   {name}.txt             "Key: value" metadata

Names follow ``S1xy_YYYYMMDDTHHMMSS_YYYYMMDDTHHMMSS_{VV|HH}{P|R|O}ddd_INT{80|40}_G_{u|w}{e|c}
{1|2|3|F}_XXXX`` (FORMATS.md §3; MintPy ``prep_hyp3.py``): reference (older) scene first.
Rasters are UTM. The stack lies on the pixel lattice of the first product (in pair order)
and covers the products' common area (or the selection); products on that lattice (HyP3
snaps its grids) are copied pixel for pixel, others (another posting, a sub-pixel shift, the
neighbouring UTM zone) resampled onto it (`mtinsar.io.geotiff.stack_grid`,
`mtinsar.io.core.mosaic`).

Sign and units: ``_unw_phase.tif`` is unwrapped phase in radians, positive for motion away
from the sensor ("Positive values indicate movement away from the sensor", HyP3 InSAR product
guide / README_InSAR_GAMMA.txt; MintPy reads it unchanged), which is the IfgStack convention:
the factor applied is **+1** and LOS displacement towards the satellite is
``-wavelength / (4 pi) * unw``. HyP3 references every pair to its highest-coherence pixel (set
to 0); as 0 is also HyP3's no-data value, 0 is read as no data (one pixel per pair is lost).

Geometry (FORMATS.md §3): ``lv_theta`` is the elevation angle θ of the look vector
ground -> satellite above the horizontal, ``lv_phi`` its horizontal orientation φ from east,
counter-clockwise, so the LOS unit vector is E = cos θ cos φ, N = cos θ sin φ, U = sin θ, and
incidence = 90° - θ (MintPy: inc = 90 - deg(θ), az = deg(φ) - 90). Geometry layers come from
the first product (in pair order) that has them; missing ones are NaN.

Metadata read from ``{name}.txt``: ``Baseline`` (perpendicular baseline [m] -> `bperp`),
``Heading`` (deg clockwise from north), ``Reference Granule`` (platform), ``Reference Pass
Direction`` and ``Reference Orbit Number`` (relative orbit = track; all products must share
one track). Wavelength: not in the products; Sentinel-1 C band c / 5.405 GHz =
`SENTINEL1_WAVELENGTH`, unless `IngestConfig.wavelength` is set. Pair dates are days; the
acquisition times are dropped (all pairs of a track are imaged at about the same time).
"""

from __future__ import annotations

import logging
import re
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from rasterio.warp import Resampling

from mtinsar.config import IngestConfig
from mtinsar.conventions import SENTINEL1_WAVELENGTH
from mtinsar.errors import InputError
from mtinsar.io.core import grid as gridlib
from mtinsar.io.core import mosaic
from mtinsar.io.core.select import AreaSelection, select_pairs
from mtinsar.io.geotiff import (
    PairFiles,
    PhaseDecoding,
    build_dataset,
    decode_float,
    label_of,
    normalise_los,
    parse_pair_label,
    probe,
    progress_bar,
    read_layer,
    read_stack,
    stack_grid,
)
from mtinsar.sources import remote

logger = logging.getLogger(__name__)

#: HyP3 INSAR_GAMMA product name (MintPy prep_hyp3.py), groups: platforms, dates, times.
NAME_RE = re.compile(
    r"^S1(?P<ref_sat>[A-D])(?P<sec_sat>[A-D])_(?P<ref>\d{8})T(?P<ref_time>\d{6})_"
    r"(?P<sec>\d{8})T(?P<sec_time>\d{6})_(?:VV|HH)[PRO]\d{3}_INT\d{2}_G_[uw][ec][123F]_"
    r"[0-9A-F]{4}$"
)
REQUIRED_KEYS = (
    "Reference Granule",
    "Reference Pass Direction",
    "Reference Orbit Number",
    "Baseline",
    "Heading",
)
GEOMETRY_SUFFIXES = ("dem", "lv_theta", "lv_phi", "water_mask")
#: Relative orbit from absolute orbit per Sentinel-1 unit (ESA; MintPy mintpy.geometry.orbit).
_ORBIT_OFFSET = {"A": 73, "B": 27, "C": 172}
_ORBITS_PER_CYCLE = 175
_EXCLUDE_FIX = "exclude the pair with ingest.exclude_pairs (CLI: --exclude-pair)"


@dataclass(frozen=True)
class Product:
    """One HyP3 product (folder or zip) found by its name; its files are listed by `open`."""

    name: str
    label: str
    ref: np.datetime64
    sec: np.datetime64
    location: Path  # the folder or the .zip

    @property
    def zipped(self) -> bool:
        return self.location.suffix == ".zip"

    def open(self) -> OpenProduct:
        """The product's files; InputError for a truncated zip or a missing phase file."""
        fix = f"download it again, or {_EXCLUDE_FIX}"
        if self.zipped:
            try:
                with self._zip() as zf:
                    names = zf.namelist()
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise InputError(
                    f"{self.location}: truncated or corrupt .zip ({exc}); {fix}"
                ) from None
            files = {n.rsplit("/", 1)[-1]: n for n in names}
            members = {k: self._member(files[f]) for k, f in self._names().items() if f in files}
            txt = files.get(f"{self.name}.txt")
        else:
            members = {
                k: str(self.location / f)
                for k, f in self._names().items()
                if (self.location / f).is_file()
            }
            txt = f"{self.name}.txt" if (self.location / f"{self.name}.txt").is_file() else None
        if "unw_phase" not in members:
            raise InputError(
                f"{self.location}: no {self.name}_unw_phase.tif inside, an incomplete product; "
                f"{fix}"
            )
        return OpenProduct(self, members, txt)

    @contextmanager
    def _zip(self) -> Iterator[zipfile.ZipFile]:
        """The .zip opened for listing and reading members (ranged reads when remote)."""
        with remote.open_file(self.location) as handle, zipfile.ZipFile(handle) as zf:
            yield zf

    def _member(self, name: str) -> str:
        """What GDAL opens for the member `name` of the .zip."""
        if remote.is_remote(self.location):
            return remote.zip_member(self.location, name)
        return f"/vsizip/{self.location.resolve()}/{name}"

    def _names(self) -> dict[str, str]:
        return {
            k: f"{self.name}_{k}.tif" for k in ("unw_phase", "corr", "conncomp", *GEOMETRY_SUFFIXES)
        }


@dataclass(frozen=True)
class OpenProduct:
    """A product's rasters (suffix -> path GDAL opens) and its .txt (member or file name)."""

    product: Product
    members: dict[str, str]
    txt: str | None

    @property
    def location(self) -> Path:
        return self.product.location

    def raster(self, suffix: str) -> str | None:
        return self.members.get(suffix)

    def read_text(self) -> str:
        p = self.product
        if self.txt is None:
            raise InputError(
                f"{p.location}: metadata file {p.name}.txt missing; download the product "
                f"again, or {_EXCLUDE_FIX}"
            )
        if p.zipped:
            with p._zip() as zf:
                return zf.read(self.txt).decode("utf-8", errors="replace")
        return (p.location / self.txt).read_text(errors="replace")


# --------------------------------------------------------------------------- entry points


def read_hyp3(
    path: str | Path, config: IngestConfig | None = None, progress: bool = False
) -> xr.Dataset:
    """Read a folder of HyP3 INSAR_GAMMA products (folders and/or .zip) into an IfgStack.

    `config` selects pairs and area (bbox/polygon in any CRS; the grid is UTM), the multilook
    factor, the chunk size and an optional wavelength override. Returns a validated
    IfgStack whose unw, coh (and conncomp) are dask arrays read lazily in (all pairs x
    chunk_size x chunk_size) blocks; raises InputError naming the product or file at fault
    and the fix.
    """
    config = config or IngestConfig()
    root = remote.as_path(path)
    products = discover(root)
    labels = [p.label for p in products]
    kept = select_pairs(
        labels,
        np.array([p.ref for p in products]),
        np.array([p.sec for p in products]),
        config,
        str(root),
    )
    opened = [products[i].open() for i in kept]
    meta = [_metadata(p) for p in opened]
    attrs = _stack_attributes(opened, meta, config)
    pairs = [_pair_files(p) for p in progress_bar(opened, progress, "reading headers", "pair")]
    infos = [f for p in pairs for f in (p.unw, p.coh) + ((p.conncomp,) if p.conncomp else ())]
    fix = f"reprocess the product with the stack's others, or {_EXCLUDE_FIX}"
    grid, area = stack_grid(infos, config, str(root), fix)
    decoding = PhaseDecoding(sign=1.0, zero_is_nodata=True)
    rasters = read_stack(pairs, grid, area, config.multilook, decoding, config.chunk_size)
    geometry = _geometry(opened, grid, area, config.multilook, rasters["unw"].shape[1:])
    bperp = np.array([m["Baseline"] for m in meta], dtype=np.float32)
    ds = build_dataset(
        pairs, rasters, geometry, bperp, grid, area, config.multilook, attrs, str(root)
    )
    logger.info("read %d HyP3 pairs from %s: %s", len(pairs), root, dict(ds.sizes))
    return ds


def is_hyp3(path: str | Path) -> bool:
    """Cheap sniff (names only): a folder holding a HyP3 INSAR_GAMMA product folder or .zip."""
    root = remote.as_path(path)
    if not root.is_dir():
        return False
    for entry in root.iterdir():
        stem = entry.name[:-4] if entry.name.endswith(".zip") else entry.name
        if NAME_RE.match(stem) and (entry.is_dir() or entry.suffix == ".zip"):
            return True
    return False


# --------------------------------------------------------------------------- discovery


def discover(root: Path) -> list[Product]:
    """Products in `root` (folders and zips), ordered by (ref, sec); one per pair."""
    if not root.is_dir():
        raise InputError(
            f"{root}: no such folder; point at the folder holding the HyP3 product folders or "
            ".zip files"
        )
    by_label: dict[str, Product] = {}
    for entry in sorted(root.iterdir()):
        zipped = entry.suffix == ".zip" and entry.is_file()
        match = NAME_RE.match(entry.name[:-4] if zipped else entry.name)
        if match is None or not (zipped or entry.is_dir()):
            continue
        ref, sec = parse_pair_label(match["ref"], match["sec"], str(entry))
        product = Product(match.string, label_of(ref, sec), ref, sec, entry)
        previous = by_label.get(product.label)
        if previous is not None:
            if previous.name == product.name:  # a .zip and its extracted folder
                if not product.zipped:
                    by_label[product.label] = product  # the folder reads faster
                continue
            raise InputError(
                f"pair {product.label}: two products, {previous.location} and "
                f"{product.location}; keep one (e.g. the latest processing), or {_EXCLUDE_FIX}"
            )
        by_label[product.label] = product
    if not by_label:
        raise InputError(
            f"{root}: no HyP3 InSAR product found (folders or .zip files named like "
            "S1AA_20161223T070700_20170116T070658_VVP024_INT80_G_ueF_74C2 holding "
            "{name}_unw_phase.tif); point at the folder holding the products"
        )
    return sorted(by_label.values(), key=lambda p: (p.ref, p.sec))


def _pair_files(product: OpenProduct) -> PairFiles:
    fix = f"download the product again, or {_EXCLUDE_FIX}"
    p = product.product
    corr = product.raster("corr")
    if corr is None:
        raise InputError(f"{p.location}: coherence file {p.name}_corr.tif missing; {fix}")
    conncomp = product.raster("conncomp")
    return PairFiles(
        p.label,
        p.ref,
        p.sec,
        probe(product.members["unw_phase"], fix),
        probe(corr, fix),
        probe(conncomp, fix) if conncomp else None,
    )


# --------------------------------------------------------------------------- metadata


def parse_metadata(text: str) -> dict[str, str]:
    """'Key: value' lines of a HyP3 .txt (split at the first ':')."""
    items = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            items[key.strip()] = value.strip()
    return items


def _metadata(product: OpenProduct) -> dict[str, Any]:
    """The keys the reader needs, parsed; InputError naming the .txt and the key if absent."""
    items = parse_metadata(product.read_text())
    where = f"{product.location}: {product.product.name}.txt"
    missing = [k for k in REQUIRED_KEYS if k not in items]
    if missing:
        raise InputError(
            f"{where}: metadata key(s) {', '.join(repr(k) for k in missing)} missing (a HyP3 "
            f"INSAR_GAMMA .txt lists them); download the product again, or {_EXCLUDE_FIX}"
        )
    out: dict[str, Any] = {"Reference Granule": items["Reference Granule"]}
    for key, kind in (("Baseline", float), ("Heading", float), ("Reference Orbit Number", int)):
        try:
            out[key] = kind(items[key])
        except ValueError:
            raise InputError(
                f"{where}: metadata {key}={items[key]!r} is not a number; download the product "
                f"again, or {_EXCLUDE_FIX}"
            ) from None
    out["direction"] = items["Reference Pass Direction"].strip().lower()
    out["platform"] = items["Reference Granule"][:3].upper()
    out["track"] = relative_orbit(out["platform"], out["Reference Orbit Number"])
    return out


def relative_orbit(platform: str, absolute_orbit: int) -> int:
    """Sentinel-1 relative orbit (track) from the absolute orbit; 0 if the unit is unknown."""
    offset = _ORBIT_OFFSET.get(platform[-1:]) if platform.startswith("S1") else None
    if offset is None:
        return 0
    return (absolute_orbit - offset) % _ORBITS_PER_CYCLE + 1


def _stack_attributes(
    products: Sequence[OpenProduct], meta: Sequence[dict[str, Any]], config: IngestConfig
) -> dict[str, Any]:
    """Attributes of the stack; all products must share pass direction and track."""
    for key, words in (("direction", "pass direction"), ("track", "relative orbit (track)")):
        values = {m[key] for m in meta if m[key] not in (0, "")}
        if len(values) > 1:
            first = {}
            for p, m in zip(products, meta, strict=True):
                first.setdefault(m[key], p.location)
            listing = "; ".join(f"{v}: e.g. {f}" for v, f in first.items())
            raise InputError(
                f"mixed {words}s in one stack ({listing}); a stack holds one track: move the "
                "other track's products to another folder"
            )
    heading = float(meta[0]["Heading"])
    return {
        "wavelength": float(config.wavelength or SENTINEL1_WAVELENGTH),
        "platform": "Sentinel-1",
        "orbit_direction": meta[0]["direction"] or "unknown",
        "track": int(meta[0]["track"]),
        "processor": "ASF HyP3 (GAMMA)",
        "heading": heading,
    }


# --------------------------------------------------------------------------- geometry


def _geometry(
    products: Sequence[OpenProduct],
    grid: mosaic.Grid,
    area: AreaSelection,
    factor: int,
    shape: tuple[int, int],
) -> dict[str, np.ndarray]:
    """height, LOS unit vector (ground -> satellite), incidence and water on the stack grid
    (resampled like the pairs when the holder's grid is on another lattice; water nearest)."""
    raw: dict[str, np.ndarray] = {}
    for suffix in GEOMETRY_SUFFIXES:
        holder = next((p for p in products if p.raster(suffix)), None)
        if holder is None:
            logger.warning("no product has a _%s.tif; the layers made from it are NaN", suffix)
            continue
        fix = f"download {holder.location} again, or exclude its pair"
        info = probe(holder.members[suffix], fix)
        if suffix == "water_mask":
            mask = read_layer(info, grid, area, fix, lambda raw: raw.astype(np.float32),
                              Resampling.nearest)  # fmt: skip
            raw[suffix] = (mask == 0).astype(np.float32)  # 1 = land, 0 = water, NaN = not covered
        else:
            decode = partial(decode_float, nodata=info.nodata, zero_is_nodata=True)
            raw[suffix] = read_layer(info, grid, area, fix, decode)
    nan = np.full(shape, np.nan, dtype=np.float32)
    out = {"height": gridlib.multilook(raw["dem"], factor) if "dem" in raw else nan.copy()}
    if "lv_theta" in raw and "lv_phi" in raw:
        theta, phi = raw["lv_theta"].astype(np.float64), raw["lv_phi"].astype(np.float64)
        vectors = {
            "los_e": np.cos(theta) * np.cos(phi),
            "los_n": np.cos(theta) * np.sin(phi),
            "los_u": np.sin(theta),
        }
        geometry = {k: gridlib.multilook(v.astype(np.float32), factor) for k, v in vectors.items()}
        normalise_los(geometry)  # also sets incidence = acos(U) = 90 deg - theta
        out.update(geometry)
    else:
        out.update({k: nan.copy() for k in ("los_e", "los_n", "los_u", "incidence")})
    if "water_mask" in raw:
        # A multilooked block is water when most of its pixels are.
        out["water"] = gridlib.multilook(raw["water_mask"], factor) > 0.5
    return out
