"""Write a simulated scene as NASA JPL ARIA Sentinel-1 GUNW products (netCDF4/HDF5).

One file per pair and frame, structured like real GUNW products (FORMATS.md §2)::

    out_dir/S1-GUNW-{A|D}-R-{track:03}-tops-{LATER}_{EARLIER}-{HHMMSS}-{lon}{E|W}_{lat}{N|S}-PP-{hash}-v3_0_1.nc
      /  attrs Conventions, title, version, ...; productBoundingBox (WKT polygon string)
      /science/grids/data/            dims (latitude, longitude), EPSG:4326 pixel centres
          latitude, longitude         float64 deg (latitude decreasing)
          unwrappedPhase              float32 rad, + towards the sensor, _FillValue 0
          coherence                   float32 0-1, _FillValue 0
          connectedComponents         int16 (1 unwrapped, 0 unreliable), _FillValue -1
          amplitude                   float32 (synthetic), _FillValue 0
          crs                         CF grid mapping (latitude_longitude, WGS84)
      /science/grids/imagingGeometry/ dims (heightsMeta, latitudeMeta, longitudeMeta), 0.1 deg
          perpendicularBaseline, parallelBaseline [m], incidenceAngle, lookAngle,
          azimuthAngle [deg] cubes; heightsMeta -1500, 0, 3000, 9000 m
      /science/radarMetaData/         wavelength [m], centerFrequency [Hz], missionID, ...
          inputSLC/{reference,secondary}/L1InputGranules
    out_dir/DEM/dem.tif               the scene's height [m] (GUNW carries no DEM)
    out_dir/scene.json                the SceneConfig

The scene grid (EPSG:4326, the scene's posting) is kept. Conventions written, i.e. what a
reader must undo: the pair is LATER_EARLIER, ``unwrappedPhase = -unw`` (the scene's `unw` is
earlier->later, positive away), ``perpendicularBaseline = -bperp``. Cubes: incidence and
azimuth are planes in (lat, lon) fitted to the scene's (exact for its linear geometry), the
incidence growing by `INCIDENCE_PER_M` per metre of height (a target raised by h is seen
~h sin(i) cos(i) / H more obliquely from an orbit H = 693 km up); azimuthAngle is measured
from east, anticlockwise (ARIA); lookAngle and parallelBaseline are synthetic fillers.

`frames` > 1 splits the scene into north-to-south frames overlapping by `overlap` rows; with
`frame_cycles` every frame after the first is off by whole 2 pi cycles, as frames unwrapped
separately are. `extent_jitter` trims each pair's footprint by up to that many pixels per
side, so products of a stack differ in extent as real ones do.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

import h5netcdf
import h5py
import numpy as np
import rasterio
from rasterio.crs import CRS

from mtinsar.errors import InputError
from mtinsar.simulate.licsar import CENTER_TIME, geotransform
from mtinsar.simulate.scene import TRACK, Scene

logger = logging.getLogger(__name__)

#: Lateral spacing of the imaging-geometry cubes [deg] and their height levels [m].
CUBE_SPACING_DEG = 0.1
HEIGHTS_M = np.array([-1500.0, 0.0, 3000.0, 9000.0])
#: Growth of the incidence angle with target height [deg/m] (sin i cos i / 693 km, i ~ 39 deg).
INCIDENCE_PER_M = 4.0e-5
#: incidence - look angle [deg] of the synthetic lookAngle cube (Earth curvature at ~880 km).
CURVATURE_DEG = 4.5
#: Where the DEM goes, relative to out_dir.
DEM_FILE = Path("DEM") / "dem.tif"
VERSION = "3.0.1"
_C = 299_792_458.0


def write_aria(
    scene: Scene,
    out_dir: Path,
    *,
    frames: int = 1,
    overlap: int = 6,
    frame_cycles: bool = True,
    extent_jitter: int = 0,
    dem: bool = True,
    progress: bool = False,
) -> Path:
    """Write `scene` as GUNW files in `out_dir` (created; must not exist or be empty).

    Written into a temporary sibling renamed at the end: an interrupted write leaves nothing.
    """
    out_dir = Path(out_dir)
    cfg = scene.config
    if frames < 1 or overlap < 0 or extent_jitter < 0:
        raise ValueError("frames must be >= 1, overlap and extent_jitter >= 0")
    if frames * 4 + overlap > cfg.ny:
        raise ValueError(f"{frames} frames of >= 4 rows do not fit the scene's {cfg.ny} rows")
    _check_target(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.partial-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        geometry = _geometry_planes(scene)
        names = scene.pair_names()
        ks: Iterable[int] = range(len(names))
        if progress:
            from tqdm.auto import tqdm

            ks = tqdm(ks, total=len(names), desc="GUNW pairs", unit="pair")
        for k in ks:
            rows, cols = _footprint(scene, k, extent_jitter)
            unw, coh = scene.interferogram(k)
            for f, (r0, r1) in enumerate(_frame_rows(rows, frames, overlap)):
                cycles = ((k + f) % 5) - 2 if (frame_cycles and f > 0) else 0
                window = (slice(r0, r1), cols)
                _write_file(tmp, scene, k, unw[window], coh[window], window, cycles, geometry)
        if dem:
            _write_dem(scene, tmp / DEM_FILE)
        (tmp / "scene.json").write_text(cfg.model_dump_json(indent=2) + "\n")
        _check_target(out_dir)
        if out_dir.exists():
            out_dir.rmdir()
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("wrote %d GUNW pairs (%d frame(s) each) to %s", len(names), frames, out_dir)
    return out_dir


def _check_target(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise InputError(
            f"{out_dir}: already exists and is not an empty directory; "
            "choose a new output directory or remove it first"
        )


# --------------------------------------------------------------------------- layout


def _footprint(scene: Scene, k: int, jitter: int) -> tuple[tuple[int, int], slice]:
    """Rows (start, stop) and column slice of pair k's product after the extent jitter."""
    ny, nx = scene.config.ny, scene.config.nx
    if jitter == 0:
        return (0, ny), slice(0, nx)
    top, bottom, left, right = np.random.default_rng([scene.config.seed, 101, k]).integers(
        0, jitter + 1, size=4
    )
    return (int(top), ny - int(bottom)), slice(int(left), nx - int(right))


def _frame_rows(rows: tuple[int, int], frames: int, overlap: int) -> list[tuple[int, int]]:
    """(start, stop) rows of each frame, north first, neighbours sharing `overlap` rows."""
    start, stop = rows
    edges = np.linspace(start, stop, frames + 1).round().astype(int)
    lo, hi = overlap // 2, overlap - overlap // 2
    return [
        (max(start, int(edges[f]) - (lo if f else 0)),
         min(stop, int(edges[f + 1]) + (hi if f < frames - 1 else 0)))
        for f in range(frames)
    ]  # fmt: skip


def gunw_name(scene: Scene, k: int, lat: np.ndarray, lon: np.ndarray) -> str:
    """File name of pair k's frame with pixel centres lat/lon (LATER_EARLIER dates)."""
    cfg = scene.config
    earlier, later = (_ymd(d) for d in scene.pair_names()[k].split("_"))
    hms = "".join(f"{int(float(v)):02d}" for v in CENTER_TIME[cfg.orbit].split(":"))
    clon, clat = float(np.mean(lon)), float(np.mean(lat))
    where = (
        f"{abs(round(clon * 100)):05d}{'E' if clon >= 0 else 'W'}_"
        f"{abs(round(clat * 100)):05d}{'N' if clat >= 0 else 'S'}"
    )
    digest = hashlib.sha1(f"{cfg.seed}{later}{earlier}{where}".encode()).hexdigest()[:4]
    letter = "A" if cfg.orbit == "ascending" else "D"
    version = VERSION.replace(".", "_")
    return (
        f"S1-GUNW-{letter}-R-{TRACK[cfg.orbit]:03d}-tops-{later}_{earlier}-{hms}-{where}"
        f"-PP-{digest}-v{version}.nc"
    )


def _ymd(text: str) -> str:
    return text.replace("-", "")


# --------------------------------------------------------------------------- geometry


def _geometry_planes(scene: Scene) -> dict[str, np.ndarray]:
    """Least-squares planes a + b lat + c lon of incidence and ARIA azimuth [deg]."""
    t = scene.truth
    lat, lon = np.meshgrid(t["y"].values, t["x"].values, indexing="ij")
    design = np.column_stack([np.ones(lat.size), lat.ravel(), lon.ravel()])
    inc = t["incidence"].values.astype(np.float64).ravel()
    # ARIA azimuthAngle: LOS vector (ground -> sensor) direction from east, anticlockwise.
    az = np.degrees(np.arctan2(t["los_n"].values, t["los_e"].values)).astype(np.float64) % 360
    planes = {}
    for name, values in (("incidenceAngle", inc), ("azimuthAngle", az.ravel())):
        planes[name], *_ = np.linalg.lstsq(design, values, rcond=None)
    return planes


def _cube_axes(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cube node latitudes (decreasing) and longitudes covering the frame plus one node."""
    s = CUBE_SPACING_DEG
    lat_nodes = np.arange(np.ceil(lat.max() / s) + 1, np.floor(lat.min() / s) - 2, -1) * s
    lon_nodes = np.arange(np.floor(lon.min() / s) - 1, np.ceil(lon.max() / s) + 2) * s
    return np.round(lat_nodes, 10), np.round(lon_nodes, 10)


def _cubes(
    planes: dict[str, np.ndarray], lat_nodes: np.ndarray, lon_nodes: np.ndarray, bperp: float
) -> dict[str, np.ndarray]:
    """(height, lat, lon) float32 cubes; `bperp` in the GUNW sign (secondary = earlier)."""
    la, lo = np.meshgrid(lat_nodes, lon_nodes, indexing="ij")
    h = HEIGHTS_M[:, None, None]

    def plane(name: str) -> np.ndarray:
        a, b, c = planes[name]
        return (a + b * la + c * lo)[None]

    inc = plane("incidenceAngle") + INCIDENCE_PER_M * h
    shape = (HEIGHTS_M.size, *la.shape)
    cubes = {
        "perpendicularBaseline": np.full(shape, bperp),
        "parallelBaseline": np.full(shape, 0.4 * bperp),
        "incidenceAngle": inc,
        "lookAngle": inc - CURVATURE_DEG,
        "azimuthAngle": np.broadcast_to(plane("azimuthAngle"), shape),
    }
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in cubes.items()}


# --------------------------------------------------------------------------- files


def _write_file(
    folder: Path,
    scene: Scene,
    k: int,
    unw: np.ndarray,
    coh: np.ndarray,
    window: tuple[slice, slice],
    cycles: int,
    planes: dict[str, np.ndarray],
) -> Path:
    lat = scene.truth["y"].values[window[0]]
    lon = scene.truth["x"].values[window[1]]
    path = folder / gunw_name(scene, k, lat, lon)
    valid = np.isfinite(unw)
    # GUNW phase: later -> earlier, + towards the sensor; frames off by whole cycles.
    phase = (-unw.astype(np.float64) + 2 * np.pi * cycles).astype(np.float32)
    phase = np.where(valid, phase, np.float32(0))
    phase[valid & (phase == 0)] = np.float32(1e-6)  # 0 is the fill value
    with h5netcdf.File(path, "w") as f:
        f.attrs.update(
            Conventions="CF-1.6",
            title="ARIA standard product UNW",
            version=VERSION,
            author="mtinsar.simulate (synthetic)",
            institution="none: simulated product",
            references="FORMATS.md §2",
        )
        bbox = f.create_variable("productBoundingBox", (), dtype=h5py.string_dtype())
        bbox[()] = _footprint_wkt(lat, lon, scene.config.posting_deg)
        _write_data(f, lat, lon, phase, coh, valid)
        bperp = -float(scene.pair_bperp()[k])  # GUNW: secondary (earlier) minus reference
        _write_geometry(f, _cube_axes(lat, lon), planes, bperp)
        _write_radar(f, scene, k)
    return path


def _footprint_wkt(lat: np.ndarray, lon: np.ndarray, posting: float) -> str:
    h = posting / 2
    w, e, s, n = lon.min() - h, lon.max() + h, lat.min() - h, lat.max() + h
    return f"POLYGON (({w} {n}, {e} {n}, {e} {s}, {w} {s}, {w} {n}))"


def _chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(min(n, 128) for n in shape)


def _write_data(
    f: h5netcdf.File,
    lat: np.ndarray,
    lon: np.ndarray,
    phase: np.ndarray,
    coh: np.ndarray,
    valid: np.ndarray,
) -> None:
    g = f.create_group("science/grids/data")
    g.dimensions = {"latitude": lat.size, "longitude": lon.size}
    for name, values, units, std in (
        ("latitude", lat, "degrees_north", "latitude"),
        ("longitude", lon, "degrees_east", "longitude"),
    ):
        v = g.create_variable(name, (name,), "f8", data=values.astype(np.float64))
        v.attrs.update(units=units, standard_name=std, long_name=std)
    crs = g.create_variable("crs", (), "i4")
    wkt = CRS.from_epsg(4326).to_wkt()
    crs.attrs.update(
        grid_mapping_name="latitude_longitude",
        longitude_of_prime_meridian=0.0,
        semi_major_axis=6378137.0,
        inverse_flattening=298.257223563,
        spatial_ref=wkt,
        crs_wkt=wkt,
    )
    coh_out = np.where(np.isfinite(coh), coh, np.float32(0)).astype(np.float32)
    layers = {
        "unwrappedPhase": (phase, "f4", np.float32(0), "radians"),
        "coherence": (coh_out, "f4", np.float32(0), "1"),
        "connectedComponents": (valid.astype(np.int16), "i2", np.int16(-1), "1"),
        "amplitude": (np.where(valid, 50.0 + 400.0 * coh_out, 0).astype(np.float32), "f4",
                      np.float32(0), "watt"),
    }  # fmt: skip
    dims = ("latitude", "longitude")
    for name, (values, dtype, fill, units) in layers.items():
        v = g.create_variable(name, dims, dtype, data=values, fillvalue=fill,
                              chunks=_chunks(values.shape), compression="gzip",
                              compression_opts=1, shuffle=True)  # fmt: skip
        v.attrs.update(long_name=name, units=units, grid_mapping="crs")


def _write_geometry(
    f: h5netcdf.File,
    axes: tuple[np.ndarray, np.ndarray],
    planes: dict[str, np.ndarray],
    bperp: float,
) -> None:
    lat_nodes, lon_nodes = axes
    g = f.create_group("science/grids/imagingGeometry")
    g.dimensions = {
        "heightsMeta": HEIGHTS_M.size,
        "latitudeMeta": lat_nodes.size,
        "longitudeMeta": lon_nodes.size,
    }
    for name, values, units in (
        ("heightsMeta", HEIGHTS_M, "m"),
        ("latitudeMeta", lat_nodes, "degrees_north"),
        ("longitudeMeta", lon_nodes, "degrees_east"),
    ):
        g.create_variable(name, (name,), "f8", data=values).attrs["units"] = units
    dims = ("heightsMeta", "latitudeMeta", "longitudeMeta")
    units = {"perpendicularBaseline": "m", "parallelBaseline": "m"}
    for name, cube in _cubes(planes, lat_nodes, lon_nodes, bperp).items():
        v = g.create_variable(name, dims, "f4", data=cube)
        v.attrs.update(long_name=name, units=units.get(name, "degrees"))


def _write_radar(f: h5netcdf.File, scene: Scene, k: int) -> None:
    g = f.create_group("science/radarMetaData")
    wavelength = scene.wavelength
    scalars = {
        "wavelength": (wavelength, "m"),
        "centerFrequency": (_C / wavelength, "Hz"),
        "slantRangeSpacing": (2.329562187194824, "m"),
        "slantRangeStart": (798980.125, "m"),
        "slantRangeEnd": (956307.125, "m"),
    }
    for name, (value, units) in scalars.items():
        g.create_variable(name, (), "f8", data=np.float64(value)).attrs["units"] = units
    for name, text in (("missionID", "Sentinel-1"), ("productType", "UNW GEO IFG")):
        v = g.create_variable(name, (), dtype=h5py.string_dtype())
        v[()] = text
    earlier, later = scene.pair_names()[k].split("_")
    hms = "".join(f"{int(float(v)):02d}" for v in CENTER_TIME[scene.config.orbit].split(":"))
    for role, date in (("reference", later), ("secondary", earlier)):
        slc = g.create_group(f"inputSLC/{role}")
        slc.dimensions = {"nfiles": 1}
        granule = f"S1A_IW_SLC__1SDV_{date}T{hms}_{date}T{hms}_000000_000000_0000"
        slc.create_variable(
            "L1InputGranules",
            ("nfiles",),
            dtype=h5py.string_dtype(),
            data=np.array([granule], dtype=object),
        )


def _write_dem(scene: Scene, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    height = scene.truth["height"].values.astype(np.float32)
    profile = {
        "driver": "GTiff",
        "height": height.shape[0],
        "width": height.shape[1],
        "count": 1,
        "dtype": "float32",
        "crs": CRS.from_epsg(4326),
        "transform": geotransform(scene.config),
        "nodata": -32768.0,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(height, 1)
