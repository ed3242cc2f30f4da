"""Fixed conventions shared by every module (DESIGN §3).

Displacement is positive towards the satellite (range shortening, e.g. uplift), in metres.
Unwrapped phase in an `IfgStack` (`unw`, radians) follows the MintPy/LiCSAR/HyP3 sign: positive
phase is range increase (motion away from the satellite), so

    displacement = -wavelength / (4 pi) * unw

Readers whose format uses the opposite sign (ARIA GUNW) multiply by -1 when reading.
"""

from typing import Any

import numpy as np

#: Sentinel-1 C-band radar wavelength [m] (c / 5.405 GHz), used when a product does not say.
SENTINEL1_WAVELENGTH = 0.05546576

#: Days per year used to express rates per year.
DAYS_PER_YEAR = 365.25


def phase_to_displacement(wavelength: float) -> float:
    """Factor turning `unw` [rad] into LOS displacement [m], positive towards the satellite."""
    return -wavelength / (4.0 * np.pi)


def as_day(value: Any) -> np.datetime64:
    """`value` (a date, datetime64 or ISO date string) as a datetime64 day."""
    return np.datetime64(value, "D")


def years_since(dates: np.ndarray, origin: np.datetime64) -> np.ndarray:
    """Time of each date since `origin`, in decimal years (365.25-day years)."""
    days = (np.asarray(dates, dtype="datetime64[D]") - as_day(origin)).astype(float)
    return days / DAYS_PER_YEAR
