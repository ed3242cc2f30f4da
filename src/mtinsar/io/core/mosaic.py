"""One common grid for products with different extents, grids or frames (no file I/O here:
readers pass in callables that read).

Readers describe each product's raster by a `Grid` (north-up affine transform, shape, CRS) and
hand this module a callable that reads a pixel window of it. This module decides the common
grid and puts every product onto it:

* `common_grid`: the intersection of the products' footprints (snapped inwards to the pixel
  lattice of the first product), or their union, which readers then crop to the user's bbox
  or polygon with `mtinsar.io.core.select.select_area`. A product that does not overlap the others
  (or the selection, `require_overlap`) raises `InputError` naming the product.
* `warp_onto`: reads only the source pixels that fall on the target. Grids on the same lattice
  (same CRS and pixel size, origins a whole number of pixels apart) are copied exactly, pixel
  for pixel; any other grid is resampled with `rasterio.warp.reproject` (GDAL warper). In one
  CRS the result does not depend on the target's extent; between CRSs (e.g. two UTM zones)
  GDAL approximates the coordinate transform piecewise linearly over the area warped (error
  <= 0.125 px, gdalwarp's default), so a block warped alone can differ from the same pixels
  warped with the whole grid by up to that shift times the local gradient.
* `stitch`: frames of one acquisition pair along a track, already on the target grid, merged
  into one array. Frames unwrapped separately can differ by whole phase cycles; with
  `align_cycles` each frame is shifted by the multiple of 2 pi that best matches the frames
  before it in their overlap (median difference, rounded), as ARIA-tools' frame stitching does
  (Sangha et al., ARIA-tools `stitchMethod`, "overlap" correction of integer 2 pi offsets).
* `lazy_layer`: the same placement and stitching as a dask array whose blocks each open and
  read only the source windows under them when computed (the cycle shifts are found once
  per pair from the frames' overlap, so blocks agree with a whole-grid `stitch`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal

import dask.array as da
import numpy as np
import rioxarray  # noqa: F401 - registers the .rio accessor used by stack_dataset
import xarray as xr
from affine import Affine
from dask import delayed
from rasterio.crs import CRS
from rasterio.warp import Resampling, reproject, transform_bounds

from mtinsar.errors import InputError
from mtinsar.io.core import grid as gridlib

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
            f"pixel ({t.a:.7g}, {t.e:.7g}), CRS {self.crs.to_string() if self.crs else 'none'}"
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
    user's bbox or polygon with `mtinsar.io.core.select.select_area`). Raises InputError naming
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


# --------------------------------------------------------------------------- lazy layers

#: Opens one source raster for reading; used as ``with open_() as read: read(window)``. Called
#: once per computed block, so a block opens only the files that cover it.
ReaderOpener = Callable[[], AbstractContextManager[WindowReader]]


@dataclass(frozen=True)
class Source:
    """One frame of one layer: its grid, how to open it, and how to resample it."""

    grid: Grid
    open: ReaderOpener
    resampling: Resampling = Resampling.bilinear


def is_striped(block_shape: tuple[int, int], width: int) -> bool:
    """True for a raster stored in strips (blocks as wide as the raster, GDAL's default
    GeoTIFF layout) rather than tiles; `block_shape` is rasterio's (rows, cols)."""
    return block_shape[1] >= width


def layer_chunks(shape: tuple[int, int], chunk_size: int, striped: bool) -> tuple[int, int]:
    """(rows, cols) of the output blocks of `lazy_layer` on an output grid of `shape`.

    Square `chunk_size` blocks, except over striped files (`is_striped`: how GDAL writes a
    GeoTIFF unless asked for tiles, and how LiCSAR and most processors' GeoTIFFs come):
    reading any pixel of a strip decodes the whole strip, so square blocks side by side
    would each decode the full width of their rows (an 800 px wide frame ~4 times per
    pass, a 2000 px one 8 times). There the blocks are whole-width bands of about
    chunk_size² pixels: each strip is decoded once per pass and a block holds no more
    pixels than a square one, so memory stays bounded by the chunk size. The bands are made
    equal (the last one not much shorter) so that the blocks balance across workers.
    """
    ny, nx = shape
    if not striped or nx <= chunk_size:
        return chunk_size, chunk_size
    n_bands = max(1, math.ceil(ny / max(1, chunk_size * chunk_size // nx)))
    return max(1, math.ceil(ny / n_bands)), nx


def lazy_layer(
    pairs: Sequence[Sequence[Source]],
    dst: Grid,
    *,
    factor: int = 1,
    chunk_size: int = 256,
    chunks: tuple[int, int] | None = None,
    align_cycles: bool = False,
    inside: np.ndarray | None = None,
    labels: bool = False,
) -> da.Array:
    """(pair, y, x) float32 dask array of the stitched layer on `dst`, multilooked by `factor`.

    pairs[k]: the frames of pair k in stitching order. Each (all pairs, rows, cols) block of
    the output, `chunks` = (rows, cols) at output resolution (default `chunk_size` square;
    see `layer_chunks`), opens and reads, when computed, only the source windows
    under it (`warp_onto` on the block's sub-grid), then stitches, masks pixels outside
    `inside` (full-resolution (y, x) bool on `dst`) and multilooks (block mean; the block
    centre pixel with `labels`, for connected components). With `align_cycles`, the whole
    2 pi cycles of each frame are found once per pair from the frames' overlap only
    (`cycle_offsets`, a shared task), so every block applies the same shift as `stitch` on
    the whole grid would.
    """
    ny, nx = gridlib.multilook_shape(dst.shape, factor)
    offsets: list[Any] = [None] * len(pairs)
    if align_cycles:
        offsets = [
            delayed(cycle_offsets, pure=False)(frames, dst) if len(frames) > 1 else None
            for frames in pairs
        ]
    # One graph node holds the sources; every block task refers to it by key.
    shared = delayed((tuple(tuple(f) for f in pairs), dst), pure=False, traverse=False)
    cy, cx = chunks or (chunk_size, chunk_size)
    rows = []
    for y0 in range(0, ny, cy):
        y1 = min(y0 + cy, ny)
        row = []
        for x0 in range(0, nx, cx):
            x1 = min(x0 + cx, nx)
            win = gridlib.PixelWindow(y0 * factor, y1 * factor, x0 * factor, x1 * factor)
            mask = None if inside is None else inside[win.slices()]
            task = delayed(_layer_block, pure=False)(shared, win, offsets, mask, factor, labels)
            row.append(da.from_delayed(task, (len(pairs), y1 - y0, x1 - x0), dtype=np.float32))
        rows.append(row)
    return da.block([rows]) if rows else da.empty((len(pairs), 0, 0), dtype=np.float32)


def _covered(src: Grid, dst: Grid) -> gridlib.PixelWindow | None:
    """Pixels of `dst` that `src` may put a value on: those overlapping its footprint (the
    warper gives a pixel a value only when its centre falls inside the source)."""
    return gridlib.bbox_window(dst.transform, dst.shape, _in_crs(src, dst.crs))


def _place(frames: Sequence[Source], dst: Grid) -> list[np.ndarray | None]:
    """Each frame warped onto `dst`; None (not opened) for a frame that does not reach it."""
    pieces: list[np.ndarray | None] = []
    for frame in frames:
        if _covered(frame.grid, dst) is None:
            pieces.append(None)
            continue
        with frame.open() as read:
            pieces.append(warp_onto(dst, frame.grid, read, frame.resampling))
    return pieces


def _merge(
    pieces: Sequence[np.ndarray | None], shape: tuple[int, int], shifts: Sequence[int] | None
) -> np.ndarray:
    """`stitch` with known cycle shifts: first valid value wins, frame j minus shifts[j] 2 pi."""
    out = np.full(shape, np.nan, dtype=np.float32)
    for j, piece in enumerate(pieces):
        if piece is None:
            continue
        if shifts is not None and shifts[j]:
            piece = (piece.astype(np.float64) - shifts[j] * 2 * np.pi).astype(np.float32)
        fill = np.isnan(out) & np.isfinite(piece)
        out[fill] = piece[fill]
    return out


def cycle_offsets(frames: Sequence[Source], dst: Grid) -> list[int]:
    """Whole 2 pi cycles to subtract from each frame of one pair, as `stitch(align_cycles=True)`
    finds them on all of `dst`, reading only where each frame meets the frames before it."""
    shifts = [0]
    covers = [_covered(f.grid, dst) for f in frames]
    for j in range(1, len(frames)):
        before = [c for c in covers[:j] if c is not None]
        own = covers[j]
        if own is None or not before:
            shifts.append(0)
            continue
        r0, r1 = (
            max(own.row0, min(c.row0 for c in before)),
            min(own.row1, max(c.row1 for c in before)),
        )
        c0, c1 = (
            max(own.col0, min(c.col0 for c in before)),
            min(own.col1, max(c.col1 for c in before)),
        )
        if r1 <= r0 or c1 <= c0:
            shifts.append(0)
            continue
        sub = dst.crop(gridlib.PixelWindow(r0, r1, c0, c1))
        pieces = _place(frames[: j + 1], sub)
        base = _merge(pieces[:j], sub.shape, shifts)
        piece = pieces[j]
        shifts.append(0 if piece is None else cycle_offset(base, piece))
    return shifts


def _layer_block(
    shared: tuple[Sequence[Sequence[Source]], Grid],
    win: gridlib.PixelWindow,
    offsets: Sequence[list[int] | None],
    inside: np.ndarray | None,
    factor: int,
    labels: bool,
) -> np.ndarray:
    """One block (every pair) of `lazy_layer` at output resolution."""
    pairs, dst = shared
    sub = dst.crop(win)
    out = np.empty((len(pairs), win.height // factor, win.width // factor), dtype=np.float32)
    for k, frames in enumerate(pairs):
        values = _merge(_place(frames, sub), sub.shape, offsets[k])
        if inside is not None:
            values[~inside] = np.nan
        out[k] = multilook_nearest(values, factor) if labels else gridlib.multilook(values, factor)
    return out
