"""Write a simulated scene as geocoded ISCE2 topsStack products.

Layout (FORMATS.md §4; geocoded files carry ``.geo``, each raw image with the ``.xml`` and
``.vrt`` sidecars ISCE writes)::

    out_dir/reference/IW{1,2,3}.xml                     radarwavelength, passdirection, tracknumber
    out_dir/baselines/{REF}_{DATE}/{REF}_{DATE}.txt     per swath "Bperp (average): <m>"
    out_dir/merged/interferograms/{EARLIER}_{LATER}/
        filt_fine.unw.geo                 2-band BIL float32: amplitude, phase [rad] (+ away)
        filt_fine.cor.geo                 1-band float32 coherence
        filt_fine.unw.conncomp.geo        1-band uint8 (1 unwrapped, 0 not)
    out_dir/merged/geom_reference/
        hgt.rdr.geo                       float64 height [m]
        los.rdr.geo                       2-band BIL float32: incidence, azimuth [deg]
        waterMask.rdr.geo                 uint8, 1 land, 0 water
    out_dir/scene.json

Phase is written with the scene's sign (earlier->later, positive away: ISCE's). No data is
0 in every band. REF in the baseline folders is the stack reference date (the middle date),
so the files give each date's Bperp against it, as topsStack does. The azimuth band is the
LOS vector's (ground -> satellite) direction from north, anticlockwise.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.crs import CRS

from mtinsar.errors import InputError
from mtinsar.simulate.scene import TRACK, Scene

logger = logging.getLogger(__name__)

#: ISCE data type names of the numpy types written.
_ISCE_TYPES = {"float32": "FLOAT", "float64": "DOUBLE", "uint8": "BYTE"}
_GDAL_TYPES = {"float32": "Float32", "float64": "Float64", "uint8": "Byte"}
#: Per-swath Bperp offsets [m] around a date's mean (sum 0: the mean is the date's value).
SWATH_OFFSETS_M = (-0.6, 0.2, 0.4)


def write_isce(
    scene: Scene, out_dir: Path, progress: bool = False, rows: tuple[int, int] | None = None
) -> Path:
    """Write `scene` as a topsStack folder at `out_dir` (must not exist or be empty).

    rows: (start, stop) to write only that band of rows, as the stack of one frame along the
    track (default: all). Written into a temporary sibling renamed at the end: an interrupted
    write leaves nothing.
    """
    out_dir = Path(out_dir)
    start, stop = rows if rows is not None else (0, scene.config.ny)
    if not 0 <= start < stop <= scene.config.ny:
        raise ValueError(f"rows {rows} outside the scene's 0..{scene.config.ny}")
    band = _Band(scene, slice(start, stop))
    _check_target(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.partial-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        _write_reference(scene, tmp / "reference")
        _write_baselines(scene, tmp / "baselines")
        _write_geometry(band, tmp / "merged" / "geom_reference")
        _write_interferograms(band, tmp / "merged" / "interferograms", progress)
        (tmp / "scene.json").write_text(scene.config.model_dump_json(indent=2) + "\n")
        _check_target(out_dir)
        if out_dir.exists():
            out_dir.rmdir()
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("wrote ISCE2 topsStack (%d pairs) to %s", len(scene.pairs), out_dir)
    return out_dir


def _check_target(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise InputError(
            f"{out_dir}: already exists and is not an empty directory; "
            "choose a new output directory or remove it first"
        )


@dataclass(frozen=True)
class _Band:
    """The rows of the scene written, and their EPSG:4326 georeferencing."""

    scene: Scene
    rows: slice

    @property
    def geo(self) -> tuple[float, float, float, float]:
        """(lon0, dlon, lat0, dlat) of the upper-left corner and pixel size."""
        cfg = self.scene.config
        p = cfg.posting_deg
        return (cfg.lon0, p, cfg.lat0 - self.rows.start * p, -p)

    def truth(self, name: str) -> np.ndarray:
        return self.scene.truth[name].values[self.rows]


def _ymd(date: np.datetime64) -> str:
    return str(np.datetime64(date, "D")).replace("-", "")


# --------------------------------------------------------------------------- ISCE images


def write_isce_image(
    path: Path,
    bands: Sequence[np.ndarray],
    geo: tuple[float, float, float, float],
    image_type: str = "bil",
) -> None:
    """Raw band-interleaved-by-line image at `path` plus its ISCE ``.xml`` and GDAL ``.vrt``.

    geo: (lon0, dlon, lat0, dlat) upper-left corner and pixel size in EPSG:4326 degrees.
    All bands share one dtype.
    """
    data = np.stack([np.asarray(b) for b in bands])  # (band, y, x)
    dtype = data.dtype.newbyteorder("<")
    n_bands, ny, nx = data.shape
    path.parent.mkdir(parents=True, exist_ok=True)
    np.ascontiguousarray(data.transpose(1, 0, 2), dtype=dtype).tofile(path)
    path.with_name(path.name + ".xml").write_text(
        _isce_xml(path.name, data.dtype.name, n_bands, ny, nx, image_type, geo)
    )
    path.with_name(path.name + ".vrt").write_text(_vrt(path.name, data.dtype, n_bands, ny, nx, geo))


def _prop(name: str, value: object, doc: str = "") -> str:
    inner = f"<value>{value}</value>" + (f"<doc>{doc}</doc>" if doc else "")
    return f'    <property name="{name}">{inner}</property>\n'


def _coordinate(name: str, start: float, delta: float, size: int) -> str:
    return (
        f'    <component name="{name}">\n'
        "        <factorymodule>isceobj.Image</factorymodule>\n"
        "        <factoryname>createCoordinate</factoryname>\n"
        f"    {_prop('delta', repr(delta))}"
        f"    {_prop('endingvalue', repr(start + delta * size))}"
        f"    {_prop('family', 'imagecoordinate')}"
        f"    {_prop('name', 'imagecoordinate_name')}"
        f"    {_prop('size', size)}"
        f"    {_prop('startingvalue', repr(start))}"
        "    </component>\n"
    )


def _isce_xml(
    name: str,
    dtype: str,
    n_bands: int,
    ny: int,
    nx: int,
    image_type: str,
    geo: tuple[float, float, float, float],
) -> str:
    lon0, dlon, lat0, dlat = geo
    return (
        "<imageFile>\n"
        + _prop("access_mode", "read")
        + _prop("byte_order", "l")
        + _prop("data_type", _ISCE_TYPES[dtype])
        + _prop("family", "image")
        + _prop("file_name", name)
        + _prop("image_type", image_type)
        + _prop("length", ny)
        + _prop("number_bands", n_bands)
        + _prop("scheme", "BIL")
        + _prop("width", nx)
        + _prop("xmax", nx)
        + _prop("xmin", 0)
        + _coordinate("coordinate1", lon0, dlon, nx)
        + _coordinate("coordinate2", lat0, dlat, ny)
        + "</imageFile>\n"
    )


def _vrt(name: str, dtype: np.dtype, n_bands: int, ny: int, nx: int, geo: tuple[float, ...]) -> str:
    lon0, dlon, lat0, dlat = geo
    size = dtype.itemsize
    bands = "".join(
        f'    <VRTRasterBand dataType="{_GDAL_TYPES[dtype.name]}" band="{b + 1}" '
        'subClass="VRTRawRasterBand">\n'
        f'        <SourceFilename relativeToVRT="1">{name}</SourceFilename>\n'
        "        <ByteOrder>LSB</ByteOrder>\n"
        f"        <ImageOffset>{b * size * nx}</ImageOffset>\n"
        f"        <PixelOffset>{size}</PixelOffset>\n"
        f"        <LineOffset>{n_bands * size * nx}</LineOffset>\n"
        "    </VRTRasterBand>\n"
        for b in range(n_bands)
    )
    return (
        f'<VRTDataset rasterXSize="{nx}" rasterYSize="{ny}">\n'
        f"    <SRS>{CRS.from_epsg(4326).to_wkt()}</SRS>\n"
        f"    <GeoTransform>{lon0!r}, {dlon!r}, 0.0, {lat0!r}, 0.0, {dlat!r}</GeoTransform>\n"
        f"{bands}</VRTDataset>\n"
    )


# --------------------------------------------------------------------------- content


def _write_reference(scene: Scene, folder: Path) -> None:
    folder.mkdir(parents=True)
    orbit = scene.config.orbit
    for swath in (1, 2, 3):
        burst = (
            _prop("passdirection", orbit.upper())
            + _prop("radarwavelength", repr(scene.wavelength))
            + _prop("swathnumber", swath)
            + _prop("tracknumber", TRACK[orbit])
        )
        (folder / f"IW{swath}.xml").write_text(
            "<productmanager_name>\n"
            '  <component name="instance">\n'
            "    <factorymodule>isceobj.Sensor.TOPS</factorymodule>\n"
            "    <factoryname>createTOPSSwathSLCProduct</factoryname>\n"
            + _prop("numberofbursts", 1)
            + '    <component name="bursts">\n'
            '      <component name="burst1">\n'
            "        <factorymodule>isceobj.Sensor.TOPS</factorymodule>\n"
            "        <factoryname>createBurstSLC</factoryname>\n"
            + burst
            + "      </component>\n    </component>\n  </component>\n</productmanager_name>\n"
        )


def stack_reference_index(scene: Scene) -> int:
    """Index of the date the simulated topsStack uses as its reference (the middle one)."""
    return len(scene.dates) // 2


def _write_baselines(scene: Scene, folder: Path) -> None:
    r = stack_reference_index(scene)
    ref = _ymd(scene.dates[r])
    for k, date in enumerate(scene.dates):
        if k == r:
            continue
        name = f"{ref}_{_ymd(date)}"
        bperp = float(scene.bperp_dates[k] - scene.bperp_dates[r])
        lines = []
        for swath, offset in enumerate(SWATH_OFFSETS_M, start=1):
            lines += [
                f"swath: IW{swath}",
                f"Bperp (average): {bperp + offset!r}",
                f"Bpar (average): {0.4 * bperp!r}",
            ]
        (folder / name).mkdir(parents=True)
        (folder / name / f"{name}.txt").write_text("\n".join(lines) + "\n")


def _write_geometry(band: _Band, folder: Path) -> None:
    inc = band.truth("incidence").astype(np.float32)
    # Direction of the LOS vector (ground -> satellite) from north, anticlockwise.
    az = np.degrees(np.arctan2(-band.truth("los_e"), band.truth("los_n"))).astype(np.float32)
    write_isce_image(folder / "hgt.rdr.geo", [band.truth("height").astype(np.float64)], band.geo)
    write_isce_image(folder / "los.rdr.geo", [inc, az], band.geo)
    land = (~band.truth("water")).astype(np.uint8)
    write_isce_image(folder / "waterMask.rdr.geo", [land], band.geo)


def _write_interferograms(band: _Band, root: Path, progress: bool) -> None:
    names = band.scene.pair_names()
    ks: Iterable[int] = range(len(names))
    if progress:
        from tqdm.auto import tqdm

        ks = tqdm(ks, total=len(names), desc="interferograms", unit="pair")
    for k in ks:
        unw, coh = (a[band.rows] for a in band.scene.interferogram(k))
        folder = root / names[k]
        valid = np.isfinite(unw)
        coh0 = np.where(np.isfinite(coh), coh, 0).astype(np.float32)
        amp = np.where(valid, 50.0 + 400.0 * coh0, 0).astype(np.float32)
        phase = np.where(valid, unw, 0).astype(np.float32)
        write_isce_image(folder / "filt_fine.unw.geo", [amp, phase], band.geo, "unw")
        write_isce_image(folder / "filt_fine.cor.geo", [coh0], band.geo, "cor")
        conncomp = [valid.astype(np.uint8)]
        write_isce_image(folder / "filt_fine.unw.conncomp.geo", conncomp, band.geo)
