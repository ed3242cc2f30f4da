"""How result stores encode their float rasters."""

from __future__ import annotations

import xarray as xr
from zarr.codecs import BloscCodec

#: Codec of float rasters: displacement and phase barely compress (zstd alone keeps 0.88 of
#: the raw size of a simulated cube); a byte shuffle + LZ4 (Blosc) keeps 0.83 and decodes
#: 2x, encodes 4x faster than zstd (medium cube: read 0.06 s against 0.13 s).
FLOAT_CODECS = (BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),)


def with_float_codecs(ds: xr.Dataset) -> xr.Dataset:
    """A shallow copy of `ds` whose float variables of 2 or more dimensions are encoded
    with `FLOAT_CODECS`, unless their encoding already names compressors."""
    ds = ds.copy()
    for var in ds.variables.values():
        if var.dtype.kind == "f" and var.ndim >= 2 and "compressors" not in var.encoding:
            var.encoding = {**var.encoding, "compressors": FLOAT_CODECS}
    return ds
