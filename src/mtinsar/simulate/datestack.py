"""Per-date layers of a scene's truth cubes (time, y, x), in memory or in a raw file on disk.

A large scene's cubes do not fit in memory (150 dates of 1500 x 2000 px are 1.8 GB per
cube): spilled, each date is written once as it is simulated, read back one date at a time
by the interferograms and one band of rows (every date) at a time by the truth writer, with
plain reads (`numpy.fromfile`), not a memory map, so only what is read stays resident.
"""

from __future__ import annotations

from pathlib import Path

import dask
import dask.array as da
import numpy as np

_DTYPE = np.dtype(np.float32)


class DateStack:
    """`n` float32 layers of `shape` (ny, nx): `stack[k]` reads date k, `stack[k] = a` writes it.

    With `path` the layers live in that raw file (date-major, native float32), created or
    truncated here; without, in one in-memory array (`array()` returns it as is).
    """

    def __init__(self, n: int, shape: tuple[int, int], path: Path | None = None) -> None:
        self.n, self.layer_shape = n, (int(shape[0]), int(shape[1]))
        self.shape = (n, *self.layer_shape)  # like the (time, y, x) array it stands for
        self.path = None if path is None else Path(path)
        self._layer_bytes = self.layer_shape[0] * self.layer_shape[1] * _DTYPE.itemsize
        self._memory: np.ndarray | None = None
        if self.path is None:
            self._memory = np.empty(self.shape, dtype=_DTYPE)
        else:
            with self.path.open("wb") as f:
                f.truncate(n * self._layer_bytes)

    def __len__(self) -> int:
        return self.n

    def __setitem__(self, k: int, layer: np.ndarray) -> None:
        if self._memory is not None:
            self._memory[k] = layer
            return
        data = np.ascontiguousarray(layer, dtype=_DTYPE)
        if data.shape != self.layer_shape:
            raise ValueError(f"layer of shape {data.shape}, the stack holds {self.layer_shape}")
        with self.path.open("r+b") as f:  # type: ignore[union-attr]
            f.seek(int(k) * self._layer_bytes)
            f.write(data.tobytes())

    def __getitem__(self, k: int) -> np.ndarray:
        """Date k as a (ny, nx) float32 array (a view when in memory: do not modify it)."""
        if self._memory is not None:
            return self._memory[k]
        ny, nx = self.layer_shape
        return self._read(int(k) * self._layer_bytes, ny * nx).reshape(ny, nx)

    def rows(self, y0: int, y1: int) -> np.ndarray:
        """Rows y0:y1 of every date, (n, y1 - y0, nx) float32."""
        if self._memory is not None:
            return self._memory[:, y0:y1]
        nx = self.layer_shape[1]
        out = np.empty((self.n, y1 - y0, nx), dtype=_DTYPE)
        for k in range(self.n):  # rows of one date are contiguous in the file
            start = k * self._layer_bytes + y0 * nx * _DTYPE.itemsize
            out[k] = self._read(start, (y1 - y0) * nx).reshape(y1 - y0, nx)
        return out

    def array(self, band: int = 128) -> np.ndarray | da.Array:
        """The whole cube: the in-memory array itself, or a dask array of `band`-row blocks."""
        if self._memory is not None:
            return self._memory
        ny, nx = self.layer_shape
        blocks = [
            da.from_delayed(
                dask.delayed(self.rows)(y0, min(y0 + band, ny)),
                shape=(self.n, min(y0 + band, ny) - y0, nx),
                dtype=_DTYPE,
            )
            for y0 in range(0, ny, band)
        ]
        return da.concatenate(blocks, axis=1)

    def _read(self, offset: int, count: int) -> np.ndarray:
        with self.path.open("rb") as f:  # type: ignore[union-attr]
            return np.fromfile(f, dtype=_DTYPE, count=count, offset=offset)
