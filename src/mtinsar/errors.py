"""One exception root for every user-facing failure.

Messages name the file or field at fault and say how to fix it; the CLI prints them
without a traceback and exits with status 2 (DESIGN §6).
"""


class MtinsarError(Exception):
    """Root of all mtinsar errors a user can act on."""


class InputError(MtinsarError):
    """An input product, folder or store is missing, unreadable or inconsistent."""


class NothingSelected(InputError):
    """The pair selection (dates, lists) leaves no pair of the products."""


class ConfigError(MtinsarError):
    """A configuration file or option is invalid."""


class NetworkError(MtinsarError):
    """The interferogram network cannot support the requested inversion."""
