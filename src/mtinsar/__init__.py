"""mtinsar: Multi-Temporal InSAR time series from stacks of unwrapped interferograms."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mtinsar")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

from mtinsar.errors import MtinsarError

__all__ = ["MtinsarError", "__version__"]
