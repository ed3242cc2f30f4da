"""Simulated GNSS stations at chosen pixels of a simulated scene, and their file writers.

The simulator's truth is LOS displacement only, so the station's 3-D motion is built to be
consistent with it: all of it vertical, d_up = d_los / los_u, d_east = d_north = 0 (its LOS
projection is then exactly the LOS truth). Between acquisitions the truth is interpolated
linearly to daily epochs, as GNSS solutions are daily; each component gets white noise of
std `sigma` [m] (so the LOS noise std is `sigma` too, the LOS vector being a unit vector).
Writers: CSV (`date,east,north,up,sig_east,sig_north,sig_up,lon,lat`) and UNR `.tenv3`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from mtinsar.analysis.gnss import COMPONENTS, station_dataset
from mtinsar.simulate.scene import Scene

_MJD_EPOCH = np.datetime64("1858-11-17", "D")
_GPS_EPOCH_MJD = 44244  # 1980-01-06
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def simulate_stations(
    scene: Scene,
    pixels: Sequence[tuple[int, int]],
    sigma: float = 0.002,
    seed: int = 0,
    names: Sequence[str] | None = None,
) -> list[xr.Dataset]:
    """Daily ENU station series [m] at (row, col) pixels of `scene`, vertical-only motion."""
    truth = scene.truth
    days = np.arange(scene.dates[0], scene.dates[-1] + np.timedelta64(1, "D"))
    t_acq = (scene.dates - scene.dates[0]).astype(np.float64)
    t_day = (days - scene.dates[0]).astype(np.float64)
    rng = np.random.default_rng([seed, 77])
    stations = []
    for k, (iy, ix) in enumerate(pixels):
        name = names[k] if names else f"S{k:03d}"
        d_los = truth["displacement"].values[:, iy, ix].astype(np.float64)
        up = np.interp(t_day, t_acq, d_los) / float(truth["los_u"].values[iy, ix])
        enu = [np.zeros_like(up), np.zeros_like(up), up]
        noisy = [c + rng.normal(0.0, sigma, size=c.shape) for c in enu]
        sig = [np.full(up.shape, sigma)] * 3
        lon, lat = float(truth["x"].values[ix]), float(truth["y"].values[iy])
        stations.append(station_dataset(name, lon, lat, days, noisy, sig, "simulated"))
    return stations


def write_gnss_csv(station: xr.Dataset, path: str | Path) -> Path:
    """Write a station as CSV: date,east,north,up,sig_*,lon,lat [m, deg]."""
    path = Path(path)
    dates = station["time"].values.astype("datetime64[D]").astype(str)
    cols = [station[c].values for c in COMPONENTS] + [
        station[f"sig_{c}"].values for c in COMPONENTS
    ]
    lines = ["date,east,north,up,sig_east,sig_north,sig_up,lon,lat"]
    lon, lat = station.attrs["lon"], station.attrs["lat"]
    for i, d in enumerate(dates):
        values = ",".join(f"{c[i]:.6f}" for c in cols)
        lines.append(f"{d},{values},{lon:.7f},{lat:.7f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_tenv3(station: xr.Dataset, path: str | Path, height: float = 100.0) -> Path:
    """Write a station in the UNR `.tenv3` layout (integer + fractional metres per axis)."""
    path = Path(path)
    name = str(station.attrs["name"])[:4].upper().ljust(4, "X")
    days = station["time"].values.astype("datetime64[D]")
    mjd = (days - _MJD_EPOCH).astype(np.int64)
    year = days.astype("datetime64[Y]").astype(np.int64) + 1970
    doy = (days - days.astype("datetime64[Y]")).astype(np.int64) + 1
    month = days.astype("datetime64[M]").astype(np.int64) % 12
    dom = (days - days.astype("datetime64[M]")).astype(np.int64) + 1
    lon, lat = station.attrs["lon"], station.attrs["lat"]
    header = (
        "site YYMMMDD yyyy.yyyy __MJD week d reflon _e0(m) __east(m) ____n0(m) _north(m) "
        "u0(m) ____up(m) _ant(m) sig_e(m) sig_n(m) sig_u(m) __corr_en __corr_eu __corr_nu "
        "_latitude(deg) _longitude(deg) __height(m)"
    )
    lines = [header]
    offsets = {"east": 5123.0, "north": 2144348.0, "up": float(round(height))}
    for i in range(len(days)):
        parts = [
            name,
            f"{year[i] % 100:02d}{_MONTHS[month[i]]}{dom[i]:02d}",
            f"{year[i] + (doy[i] - 0.5) / 365.25:.4f}",
            f"{mjd[i]}",
            f"{(mjd[i] - _GPS_EPOCH_MJD) // 7}",
            f"{(mjd[i] - _GPS_EPOCH_MJD) % 7}",
            f"{round(lon, 1)}",
        ]
        for c in COMPONENTS:
            parts += [f"{offsets[c]:.0f}", f"{float(station[c].values[i]):.6f}"]
        parts.append("0.0000")
        parts += [f"{float(station[f'sig_{c}'].values[i]):.6f}" for c in COMPONENTS]
        parts += ["0.000000"] * 3
        parts += [f"{lat:.10f}", f"{lon:.10f}", f"{height:.5f}"]
        lines.append(" ".join(parts))
    path.write_text("\n".join(lines) + "\n")
    return path
