"""Where products and stacks live: local paths, object storage (`s3://`), HTTP(S), STAC.

`mtinsar.sources.remote` turns URLs into fsspec file systems (listing, small text files,
Zarr stores) and GDAL virtual paths (windowed raster reads); `mtinsar.sources.stac` finds
product hrefs in a STAC API or a static catalog.
"""

from mtinsar.sources.remote import (
    RemotePath,
    as_path,
    configure,
    is_remote,
)

__all__ = ["RemotePath", "as_path", "configure", "is_remote"]
