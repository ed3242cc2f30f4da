"""One common grid for products with different extents, grids or frames (no file I/O here).

Readers describe each product's raster by a `Grid` (north-up affine transform, shape, CRS) and
hand this module a callable that reads a pixel window of it. This module decides the common
grid and puts every product onto it:

* `common_grid`: the intersection of the products' footprints (snapped inwards to the pixel
  lattice of the first product), or their union, which readers then crop to the user's bbox
  or polygon with `mtinsar.io.select.select_area`. A product that does not overlap the others
  (or the selection, `require_overlap`) raises `InputError` naming the product.
* `warp_onto`: reads only the source pixels that fall on the target. Grids on the same lattice
  (same CRS and pixel size, origins a whole number of pixels apart) are copied exactly, pixel
  for pixel; any other grid is resampled with `rasterio.warp.reproject` (GDAL warper).
* `stitch`: frames of one acquisition pair along a track, already on the target grid, merged
  into one array. Frames unwrapped separately can differ by whole phase cycles; with
  `align_cycles` each frame is shifted by the multiple of 2 pi that best matches the frames
  before it in their overlap (median difference, rounded), as ARIA-tools' frame stitching does
  (Sangha et al., ARIA-tools `stitchMethod`, "overlap" correction of integer 2 pi offsets).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import rioxarray  # noqa: F401 - registers the .rio accessor used by stack_dataset
import xarray as xr
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import Resampling, reproject, transform_bounds

from mtinsar import grid as gridlib
from mtinsar.errors import InputError

#: Tolerance [pixels] when comparing grid edges, so float noise in degrees does not add or
#: drop a whole row/column or break an exact alignment.
ALIGN_TOL_PX = 1e-3

Bounds = tuple[float, float, float, float]
#: Reads a pixel window of a source raster: float array (NaN = no data) of the window's shape.
WindowReader = Callable[[gridlib.PixelWindow], np.ndarray]


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid: pixel-corner affine transform, (rows, cols) shape and CRS."""

    transform: Affine
    shape: tuple[int, int]
    crs: CRS

    def __post_init__(self) -> None:
        gridlib.check_north_up(self.transform)

    @classmethod
    def from_centres(cls, y: np.ndarray, x: np.ndarray, crs: CRS, tol_px: float = 0.01) -> Grid:
        """Grid of evenly spaced pixel-centre vectors (y decreasing, x increasing).

        Raises ValueError if a vector has fewer than 2 values, is not monotonic in the right
        direction, or strays more than `tol_px` pixels from an even spacing (coordinates
        stored as float32 stray ~0.001 px at 3-arcsecond posting).
        """
        y, x = np.asarray(y, dtype=np.float64), np.asarray(x, dtype=np.float64)
        for name, v, sign in (("y", y, -1), ("x", x, 1)):
            if v.ndim != 1 or v.size < 2:
                raise ValueError(f"{name} needs at least 2 pixel centres, got shape {v.shape}")
            if not np.all(sign * np.diff(v) > 0):
                order = "decreasing (north-up)" if sign < 0 else "increasing"
                raise ValueError(f"{name} pixel centres are not strictly {order}")
            step = (v[-1] - v[0]) / (v.size - 1)
            even = v[0] + step * np.arange(v.size)
            if np.abs(v - even).max() > tol_px * abs(step):
                raise ValueError(f"{name} pixel centres are not evenly spaced")
        return cls(gridlib.transform_from_centres(y, x), (y.size, x.size), crs)

    @property
    def bounds(self) -> Bounds:
        """(x_min, y_min, x_max, y_max) outer pixel edges, in CRS units."""
        return gridlib.extent(self.transform, self.shape)

    @property
    def pixel_size(self) -> tuple[float, float]:
        """(dx, dy), both positive, in CRS units."""
        return self.transform.a, -self.transform.e

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """(y, x) pixel-centre coordinates."""
        return gridlib.pixel_centres(self.transform, self.shape)

    def crop(self, window: gridlib.PixelWindow) -> Grid:
        """The sub-grid of `window`."""
        t = gridlib.window_transform(self.transform, window.row0, window.col0)
        return Grid(t, window.shape, self.crs)

    def coarsen(self, factor: int) -> Grid:
        """The grid after `factor` x `factor` multilooking (remainder rows/cols dropped)."""
        t = gridlib.window_transform(self.transform, 0, 0, factor)
        return Grid(t, gridlib.multilook_shape(self.shape, factor), self.crs)

    def __str__(self) -> str:
        t = self.transform
        return (
            f"{self.shape[0]}x{self.shape[1]} px, origin ({t.c:.7f}, {t.f:.7f}), "
            f"pixel ({t.a:.7g}, {t.e:.7g}), CRS {self.crs.to_string()}"
        )


# --------------------------------------------------------------------------- alignment


def is_aligned(a: Grid, b: Grid, tol_px: float = ALIGN_TOL_PX) -> bool:
    """True if `a` and `b` share one lattice: same CRS and pixel size, and origins a whole
    number of pixels apart (to `tol_px`), so copying pixels between them is exact."""
    if a.crs != b.crs:
        return False
    (dxa, dya), (dxb, dyb) = a.pixel_size, b.pixel_size
    n = max(a.shape + b.shape)
    # Pixel sizes must agree well enough not to drift by tol_px across the larger grid.
    if abs(dxa - dxb) * n > tol_px * dxa or abs(dya - dyb) * n > tol_px * dya:
        return False
    cols = (b.transform.c - a.transform.c) / dxa
    rows = (a.transform.f - b.transform.f) / dya
    return abs(cols - round(cols)) <= tol_px and abs(rows - round(rows)) <= tol_px


def overlap_windows(src: Grid, dst: Grid) -> tuple[gridlib.PixelWindow, gridlib.PixelWindow] | None:
    """(window in src, window in dst) of the pixels two aligned grids share; None if none."""
    dx, dy = dst.pixel_size
    col = round((src.transform.c - dst.transform.c) / dx)
    row = round((dst.transform.f - src.transform.f) / dy)
    r0, r1 = max(row, 0), min(row + src.shape[0], dst.shape[0])
    c0, c1 = max(col, 0), min(col + src.shape[1], dst.shape[1])
    if r1 <= r0 or c1 <= c0:
        return None
    return (
        gridlib.PixelWindow(r0 - row, r1 - row, c0 - col, c1 - col),
        gridlib.PixelWindow(r0, r1, c0, c1),
    )


def source_window(src: Grid, dst: Grid, margin: int = 2) -> gridlib.PixelWindow | None:
    """Pixels of `src` needed to resample onto `dst` (its footprint plus `margin` pixels)."""
    bounds = dst.bounds if src.crs == dst.crs else transform_bounds(dst.crs, src.crs, *dst.bounds)
    win = gridlib.bbox_window(src.transform, src.shape, bounds)
    if win is None:
        return None
    return gridlib.PixelWindow(
        max(win.row0 - margin, 0),
        min(win.row1 + margin, src.shape[0]),
        max(win.col0 - margin, 0),
        min(win.col1 + margin, src.shape[1]),
    )


def warp_onto(
    dst: Grid,
    src: Grid,
    read: WindowReader,
    resampling: Resampling = Resampling.bilinear,
) -> np.ndarray:
    """The source raster on `dst` as float32 (NaN where the source has no data or no pixel).

    Only the source window that overlaps `dst` is read. Aligned grids are copied exactly;
    others are resampled by GDAL (`resampling`; use nearest for labels such as connected
    components), NaN being the no-data value on both sides.
    """
    out = np.full(dst.shape, np.nan, dtype=np.float32)
    if is_aligned(src, dst):
        windows = overlap_windows(src, dst)
        if windows is not None:
            src_win, dst_win = windows
            out[dst_win.slices()] = read(src_win)
        return out
    win = source_window(src, dst)
    if win is None:
        return out
    data = np.ascontiguousarray(read(win), dtype=np.float32)
    reproject(
        source=data,
        destination=out,
        src_transform=gridlib.window_transform(src.transform, win.row0, win.col0),
        src_crs=src.crs,
        src_nodata=np.nan,
        dst_transform=dst.transform,
        dst_crs=dst.crs,
        dst_nodata=np.nan,
        resampling=resampling,
    )
    return out


# --------------------------------------------------------------------------- common grid


def _in_crs(grid: Grid, crs: CRS) -> Bounds:
    return grid.bounds if grid.crs == crs else transform_bounds(grid.crs, crs, *grid.bounds)


def _union(bounds: Sequence[Bounds]) -> Bounds:
    b = np.asarray(bounds, dtype=np.float64)
    return (b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max())


def _intersection(a: Bounds, b: Bounds) -> Bounds | None:
    out = (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
    return out if out[0] < out[2] and out[1] < out[3] else None


def on_lattice(lattice: Grid, bounds: Bounds, outer: bool) -> Grid | None:
    """Grid on `lattice`'s pixel lattice covering `bounds` (same CRS).

    outer: every pixel touching the bounds' interior (a bbox); else only pixels lying wholly
    inside them (an intersection of footprints). None if no pixel qualifies.
    """
    t, (dx, dy) = lattice.transform, lattice.pixel_size
    x0, y0, x1, y1 = ((bounds[0] - t.c) / dx, (t.f - bounds[3]) / dy, (bounds[2] - t.c) / dx,
                      (t.f - bounds[1]) / dy)  # fmt: skip
    tol = ALIGN_TOL_PX
    if outer:
        c0, r0 = math.floor(x0 + tol), math.floor(y0 + tol)
        c1, r1 = math.ceil(x1 - tol), math.ceil(y1 - tol)
    else:
        c0, r0 = math.ceil(x0 - tol), math.ceil(y0 - tol)
        c1, r1 = math.floor(x1 + tol), math.floor(y1 + tol)
    if c1 <= c0 or r1 <= r0:
        return None
    return Grid(Affine(dx, 0.0, t.c + c0 * dx, 0.0, -dy, t.f - r0 * dy), (r1 - r0, c1 - c0),
                lattice.crs)  # fmt: skip


def common_grid(
    footprints: Sequence[Sequence[Grid]],
    labels: Sequence[str],
    extent: Literal["intersection", "union"] = "intersection",
) -> Grid:
    """The grid every product is put on, on the pixel lattice of `footprints[0][0]`.

    footprints[k] lists the frames of product group k (e.g. the files of one pair); a group
    covers the union of its frames' extents. `extent` "intersection": the area all groups
    cover (pixels wholly inside it); "union": the area any group covers (to be cropped to the
    user's bbox or polygon with `mtinsar.io.select.select_area`). Raises InputError naming
    `labels[k]` when group k does not overlap the groups before it.
    """
    lattice = footprints[0][0]
    crs = lattice.crs
    unions = [_union([_in_crs(g, crs) for g in frames]) for frames in footprints]
    if extent == "union":
        grid = on_lattice(lattice, _union(unions), outer=True)
    else:
        inter: Bounds | None = unions[0]
        for k, u in enumerate(unions[1:], start=1):
            inter = _intersection(inter, u) if inter is not None else None
            if inter is None:
                raise InputError(
                    f"grids cannot be aligned: {labels[k]} (extent {_fmt(u)}) does not overlap "
                    f"the area common to {labels[0]} and the products before it; read products "
                    "of one area together, or leave this product out"
                )
        assert inter is not None
        grid = on_lattice(lattice, inter, outer=False)
    if grid is None:
        raise InputError(
            f"the products {labels[0]} ... {labels[-1]} share no whole pixel; read products "
            "of one area together"
        )
    return grid


def require_overlap(dst: Grid, footprints: Sequence[Sequence[Grid]], labels: Sequence[str]) -> None:
    """Raise InputError naming `labels[k]` if no frame of group k overlaps `dst`."""
    for frames, label in zip(footprints, labels, strict=True):
        if not any(_intersection(_in_crs(g, dst.crs), dst.bounds) for g in frames):
            raise InputError(
                f"{label}: does not cover any of the selected area {_fmt(dst.bounds)} "
                f"({dst.crs.to_string()}); leave it out (ingest.exclude_pairs) or select an "
                "area it covers"
            )


def _fmt(bounds: Bounds) -> str:
    return "(" + ", ".join(f"{v:.6f}" for v in bounds) + ")"


# --------------------------------------------------------------------------- stitching


def cycle_offset(base: np.ndarray, piece: np.ndarray, period: float = 2 * np.pi) -> int:
    """Whole cycles k such that `piece - k * period` best matches `base` where both are valid
    (median of the difference, rounded); 0 without overlap."""
    both = np.isfinite(base) & np.isfinite(piece)
    if not both.any():
        return 0
    diff = piece[both].astype(np.float64) - base[both]
    return int(np.rint(np.median(diff) / period))


def stitch(
    pieces: Sequence[np.ndarray], align_cycles: bool = False, period: float = 2 * np.pi
) -> np.ndarray:
    """Merge frames placed on one grid (NaN outside each): the first valid value wins.

    With `align_cycles`, each frame is first shifted by the whole number of `period`s that
    matches it to the frames merged before it (`cycle_offset`): unwrapped phase of frames
    unwrapped separately. Returns a float32 array.
    """
    if not pieces:
        raise ValueError("stitch needs at least one piece")
    out = np.array(pieces[0], dtype=np.float32, copy=True)
    for piece in pieces[1:]:
        piece = np.asarray(piece, dtype=np.float32)
        if align_cycles:
            k = cycle_offset(out, piece, period)
            if k:
                piece = (piece.astype(np.float64) - k * period).astype(np.float32)
        fill = np.isnan(out) & np.isfinite(piece)
        out[fill] = piece[fill]
    return out


def multilook_nearest(array: np.ndarray, factor: int) -> np.ndarray:
    """Down-sample labels (e.g. connected components) by `factor`: the pixel at each block's
    centre, as MintPy's 'nearest' multilook does. Remainder rows/cols are dropped."""
    if factor == 1:
        return array.copy()
    ny, nx = gridlib.multilook_shape(array.shape[-2:], factor)
    half = factor // 2
    return array[..., half : ny * factor : factor, half : nx * factor : factor].copy()


# --------------------------------------------------------------------------- dataset


def stack_dataset(
    grid: Grid,
    pairs: Sequence[str],
    pair_vars: dict[str, np.ndarray],
    grid_vars: dict[str, np.ndarray],
    attrs: dict[str, object],
) -> xr.Dataset:
    """An IfgStack-shaped Dataset on `grid` (not validated: readers call `stack.validate`).

    pairs: labels "YYYYMMDD_YYYYMMDD" (earlier first), already in (ref, sec) order;
    pair_vars: name -> (pair, y, x) arrays, plus "bperp" (pair,); grid_vars: name -> (y, x).
    """
    ref = np.array([np.datetime64(f"{p[0:4]}-{p[4:6]}-{p[6:8]}", "ns") for p in pairs])
    sec = np.array([np.datetime64(f"{p[9:13]}-{p[13:15]}-{p[15:17]}", "ns") for p in pairs])
    data_vars: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
    for name, values in pair_vars.items():
        dims = ("pair",) if values.ndim == 1 else ("pair", "y", "x")
        data_vars[name] = (dims, values)
    data_vars.update({name: (("y", "x"), values) for name, values in grid_vars.items()})
    y, x = grid.centres()
    ds = xr.Dataset(
        data_vars,
        coords={
            "pair": np.array(list(pairs), dtype=str),
            "ref_date": ("pair", ref.astype("datetime64[ns]")),
            "sec_date": ("pair", sec.astype("datetime64[ns]")),
            "y": y,
            "x": x,
        },
        attrs=dict(attrs),
    )
    ds = ds.rio.write_crs(grid.crs)
    return ds.rio.write_transform(grid.transform)


# --------------------------------------------------------------------------- geometry


def los_from_angles(incidence: np.ndarray, azimuth: np.ndarray) -> dict[str, np.ndarray]:
    """LOS unit vector (ground -> satellite) east/north/up from angles [deg].

    incidence: from the vertical at the target; azimuth: of the LOS vector from north,
    anticlockwise (ISCE2 ``los.rdr`` band 2, MintPy ``azimuthAngle``). As MintPy's
    ``get_unit_vector4component_of_interest``: e = -sin(inc) sin(az), n = sin(inc) cos(az),
    u = cos(inc). Returns float32 arrays los_e, los_n, los_u.
    """
    inc = np.deg2rad(np.asarray(incidence, dtype=np.float64))
    az = np.deg2rad(np.asarray(azimuth, dtype=np.float64))
    return {
        "los_e": (-np.sin(inc) * np.sin(az)).astype(np.float32),
        "los_n": (np.sin(inc) * np.cos(az)).astype(np.float32),
        "los_u": np.cos(inc).astype(np.float32),
    }


def stack_geometry(
    incidence: np.ndarray, azimuth: np.ndarray, height: np.ndarray, factor: int
) -> dict[str, np.ndarray]:
    """height, incidence, los_e/n/u (y, x) float32 after `factor` multilooking.

    incidence, azimuth [deg] as in `los_from_angles`. The LOS vector is computed at full
    resolution, block-averaged and renormalised to unit length.
    """
    los = los_from_angles(incidence, azimuth)
    out = {name: gridlib.multilook(v, factor) for name, v in los.items()}
    if factor > 1:
        norm = np.sqrt(out["los_e"] ** 2 + out["los_n"] ** 2 + out["los_u"] ** 2)
        out = {name: (v / norm).astype(np.float32) for name, v in out.items()}
    out["incidence"] = gridlib.multilook(np.asarray(incidence, dtype=np.float32), factor)
    out["height"] = gridlib.multilook(np.asarray(height, dtype=np.float32), factor)
    return out
