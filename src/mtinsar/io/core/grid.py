"""Pure numerics for regular north-up grids: multilooking, bbox windows, transforms.

A grid is described by a GDAL-style affine transform (`affine.Affine`, pixel corner
(col, row) -> (x, y)) and a shape (rows, cols). Only north-up grids are handled: no rotation,
x increasing with column, y decreasing with row. Nothing here reads files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from affine import Affine

#: Tolerance [pixels] when a bbox edge falls on a pixel edge, so float noise in degrees
#: does not add or drop a whole row/column.
_EDGE_TOL_PX = 1e-6


@dataclass(frozen=True)
class PixelWindow:
    """A rectangular block of pixels: rows row0..row1-1, columns col0..col1-1."""

    row0: int
    row1: int
    col0: int
    col1: int

    @property
    def height(self) -> int:
        return self.row1 - self.row0

    @property
    def width(self) -> int:
        return self.col1 - self.col0

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    def slices(self) -> tuple[slice, slice]:
        """(row slice, column slice) selecting this window from a full-grid array."""
        return slice(self.row0, self.row1), slice(self.col0, self.col1)


def multilook(array: np.ndarray, factor: int) -> np.ndarray:
    """NaN-aware block mean over the last two axes, `factor` x `factor` pixels per block.

    Trailing rows/columns that do not fill a whole block are dropped. A block whose pixels
    are all NaN gives NaN. Float inputs keep their dtype (sums are accumulated in float64);
    integer inputs give float64. `factor` = 1 returns a float copy.
    """
    factor = _check_factor(factor)
    a = np.asarray(array)
    if a.ndim < 2:
        raise ValueError(f"multilook needs an array of >= 2 dimensions, got shape {a.shape}")
    ny, nx = a.shape[-2] // factor, a.shape[-1] // factor
    if ny == 0 or nx == 0:
        raise ValueError(f"multilook factor {factor} is larger than the grid {a.shape[-2:]}")
    out_dtype = a.dtype if np.issubdtype(a.dtype, np.floating) else np.dtype(np.float64)
    if factor == 1:
        return a.astype(out_dtype, copy=True)
    a = a[..., : ny * factor, : nx * factor]
    blocks = a.reshape(*a.shape[:-2], ny, factor, nx, factor)
    valid = ~np.isnan(blocks)
    total = np.where(valid, blocks, 0).sum(axis=(-3, -1), dtype=np.float64)
    count = valid.sum(axis=(-3, -1))
    # Divide only where a block has data: avoids the all-NaN RuntimeWarning of np.nanmean.
    mean = np.divide(total, count, out=np.full(total.shape, np.nan), where=count > 0)
    return mean.astype(out_dtype, copy=False)


def multilook_shape(shape: tuple[int, int], factor: int) -> tuple[int, int]:
    """Grid shape (rows, cols) after multilooking by `factor` (remainder dropped)."""
    factor = _check_factor(factor)
    return (shape[0] // factor, shape[1] // factor)


def check_north_up(transform: Affine) -> None:
    """Raise ValueError unless `transform` is north-up (no rotation, dx > 0, dy < 0)."""
    if transform.b != 0 or transform.d != 0 or transform.a <= 0 or transform.e >= 0:
        raise ValueError(
            "grid is not north-up (expected no rotation, x pixel size > 0, y pixel size < 0): "
            f"transform {tuple(transform)[:6]}"
        )


def extent(transform: Affine, shape: tuple[int, int]) -> tuple[float, float, float, float]:
    """Outer edges (x_min, y_min, x_max, y_max) of a north-up grid, in CRS units."""
    check_north_up(transform)
    rows, cols = shape
    x_min, y_max = transform.c, transform.f
    return (x_min, y_max + transform.e * rows, x_min + transform.a * cols, y_max)


def bbox_window(
    transform: Affine, shape: tuple[int, int], bbox: tuple[float, float, float, float]
) -> PixelWindow | None:
    """Pixels of a north-up grid whose area overlaps `bbox` = (x_min, y_min, x_max, y_max).

    The window is clipped to the grid; returns None when bbox and grid do not overlap.
    A pixel merely touching the bbox edge is not included.
    """
    check_north_up(transform)
    x_min, y_min, x_max, y_max = (float(v) for v in bbox)
    if not (x_min < x_max and y_min < y_max):
        raise ValueError(f"invalid bbox {bbox}: need x_min < x_max and y_min < y_max")
    rows, cols = shape
    dx, dy = transform.a, -transform.e
    col0 = int(np.floor((x_min - transform.c) / dx + _EDGE_TOL_PX))
    col1 = int(np.ceil((x_max - transform.c) / dx - _EDGE_TOL_PX))
    row0 = int(np.floor((transform.f - y_max) / dy + _EDGE_TOL_PX))
    row1 = int(np.ceil((transform.f - y_min) / dy - _EDGE_TOL_PX))
    col0, col1 = max(col0, 0), min(col1, cols)
    row0, row1 = max(row0, 0), min(row1, rows)
    if col1 <= col0 or row1 <= row0:
        return None
    return PixelWindow(row0, row1, col0, col1)


def window_transform(transform: Affine, row0: int = 0, col0: int = 0, factor: int = 1) -> Affine:
    """Transform of the grid cropped to start at (row0, col0), then multilooked by `factor`."""
    check_north_up(transform)
    factor = _check_factor(factor)
    return Affine(
        transform.a * factor,
        0.0,
        transform.c + transform.a * col0,
        0.0,
        transform.e * factor,
        transform.f + transform.e * row0,
    )


def pixel_centres(
    transform: Affine, shape: tuple[int, int], row0: int = 0, col0: int = 0, factor: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """(y, x) pixel-centre coordinates of a north-up grid; y decreases with row.

    With `row0`, `col0`, `factor`: centres of the grid cropped at (row0, col0) and multilooked
    by `factor`, `shape` being the output shape. They are computed from the uncropped
    `transform`, so a crop's coordinates equal the full grid's bit for bit (exact alignment).
    """
    check_north_up(transform)
    factor = _check_factor(factor)
    rows, cols = shape
    y = transform.f + transform.e * (row0 + factor * (np.arange(rows) + 0.5))
    x = transform.c + transform.a * (col0 + factor * (np.arange(cols) + 0.5))
    return y, x


def transform_from_centres(y: np.ndarray, x: np.ndarray) -> Affine:
    """North-up transform from evenly spaced pixel-centre coordinates (>= 2 of each)."""
    y, x = np.asarray(y, dtype=np.float64), np.asarray(x, dtype=np.float64)
    if y.size < 2 or x.size < 2:
        raise ValueError("need at least 2 pixel centres along y and x to derive a transform")
    dx = (x[-1] - x[0]) / (x.size - 1)
    dy = (y[-1] - y[0]) / (y.size - 1)
    return Affine(dx, 0.0, x[0] - dx / 2, 0.0, dy, y[0] - dy / 2)


def same_grid(
    t1: Affine, shape1: tuple[int, int], t2: Affine, shape2: tuple[int, int], tol_px: float = 0.01
) -> bool:
    """True if two grids have the same shape and all four corners agree to `tol_px` pixels."""
    if tuple(shape1) != tuple(shape2):
        return False
    # Comparing corners rather than transform terms catches an origin shift as well as a
    # pixel-size difference that only adds up across the grid.
    pixel = max(abs(t1.a), abs(t1.b), abs(t1.d), abs(t1.e))
    return bool(np.all(np.abs(_corners(t1, shape1) - _corners(t2, shape2)) <= tol_px * pixel))


def _corners(t: Affine, shape: tuple[int, int]) -> np.ndarray:
    """(4, 2) array of the grid's corner coordinates."""
    rows, cols = shape
    c = np.array([0, cols, 0, cols], dtype=np.float64)
    r = np.array([0, 0, rows, rows], dtype=np.float64)
    return np.stack([t.a * c + t.b * r + t.c, t.d * c + t.e * r + t.f], axis=1)


def _check_factor(factor: int) -> int:
    if isinstance(factor, bool) or not isinstance(factor, int | np.integer) or factor < 1:
        raise ValueError(f"multilook factor must be an integer >= 1, got {factor!r}")
    return int(factor)
