"""GNSS station time series: reading, projection to the LOS, and tying InSAR to GNSS.

A station is an `xarray.Dataset` with dim `time` and variables `east`, `north`, `up` [m]
(relative to the first epoch; the datum is arbitrary) and `sig_east/north/up` [m] (NaN when
unknown), attrs `name`, `lon`, `lat` [deg], `source` (the file). Formats:

* CSV: a header with `date,east,north,up` [m], optional `sig_east,sig_north,sig_up` [m] and
  `lon,lat` [deg] (else pass lon/lat); dates ISO YYYY-MM-DD.
* UNR `.tenv3` (Nevada Geodetic Laboratory, Blewitt, Hammond & Kreemer 2018, Eos 99): one
  header line, then per day `site YYMMMDD yyyy.yyyy MJD week d reflon e0 east n0 north u0 up
  ant sig_e sig_n sig_u corr_en corr_eu corr_nu lat lon height`; positions are the integer
  part (e0, n0, u0 [m]) plus the fractional part (east, north, up [m]) in a local frame at
  `reflon`; the date is taken from the Modified Julian Day.

LOS projection (DESIGN §3: + towards the satellite, unit vector ground -> satellite)::

    d_los = los_e * east + los_n * north + los_u * up

Tie (re-referencing an InSAR result to GNSS, as in e.g. MintPy's GNSS comparison and
geepers): at each station the InSAR series (median of the valid pixels of a small window)
minus the GNSS LOS series is modelled as ``k_s + c(t)``: a per-station constant k_s (the
GNSS datum) plus the reference pixel's own motion c(t), c = 0 at the reference date, either
`offset="velocity"` (c = v (t - t_ref), a constant velocity offset) or `offset="per_date"`
(c free per date); `offset="none"` fits the datums only, to report the agreement as it is.
The fit is robust (Huber-weighted iteratively reweighted least squares, Huber 1964), then
c(t) is subtracted from every pixel's displacement (and its least-squares slope from
`velocity`). Agreement per station: RMS of the remaining difference, correlation, and the
velocity difference (least-squares slopes: InSAR over its dates, GNSS over its daily data
within the InSAR span).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from matplotlib.figure import Figure
from pyproj import Transformer

from mtinsar.conventions import years_since
from mtinsar.errors import InputError

log = logging.getLogger(__name__)

COMPONENTS = ("east", "north", "up")
LOS_VARIABLES = ("los_e", "los_n", "los_u")
_MJD_EPOCH = np.datetime64("1858-11-17", "D")
_TENV3_COLUMNS = 23
#: Huber tuning constant [robust std units] (95 % efficiency for Gaussian data).
HUBER_K = 1.345


# --------------------------------------------------------------------------- reading


def station_dataset(
    name: str,
    lon: float,
    lat: float,
    time: np.ndarray,
    enu: Sequence[np.ndarray],
    sigmas: Sequence[np.ndarray] | None = None,
    source: str = "",
) -> xr.Dataset:
    """A station Dataset from dates, (east, north, up) [m] and their std [m], sorted by date."""
    time = np.asarray(time, dtype="datetime64[ns]")
    order = np.argsort(time, kind="stable")
    n = len(time)
    sig = sigmas if sigmas is not None else [np.full(n, np.nan)] * 3
    data = {
        c: ("time", np.asarray(v, dtype=np.float64)[order])
        for c, v in zip(COMPONENTS, enu, strict=True)
    }
    for c, s in zip(COMPONENTS, sig, strict=True):
        data[f"sig_{c}"] = ("time", np.asarray(s, dtype=np.float64)[order])
    ds = xr.Dataset(data, coords={"time": time[order]})
    for c in COMPONENTS:
        ds[c] = ds[c] - ds[c].isel(time=0)  # the datum is arbitrary: start at zero
        ds[c].attrs["units"] = "m"
    ds.attrs.update(name=name, lon=float(lon), lat=float(lat), source=source)
    return ds


def read_tenv3(path: str | Path) -> xr.Dataset:
    """Read a UNR `.tenv3` daily ENU series [m] (see module docstring for the columns)."""
    path = Path(path)
    rows: list[list[float]] = []
    site = ""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read GNSS file {path}: {exc}") from exc
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields or fields[0] == "site":
            continue
        if len(fields) < _TENV3_COLUMNS:
            raise InputError(
                f"{path}, line {number}: {len(fields)} columns, a UNR tenv3 line has "
                f"{_TENV3_COLUMNS}; give an unmodified .tenv3 file from geodesy.unr.edu"
            )
        try:
            rows.append([float(f) for f in fields[2:_TENV3_COLUMNS]])
        except ValueError as exc:
            raise InputError(
                f"{path}, line {number}: a non-numeric value ({exc}); give an unmodified "
                ".tenv3 file from geodesy.unr.edu"
            ) from exc
        site = fields[0]
    if not rows:
        raise InputError(f"{path} holds no data lines; is it a UNR .tenv3 file?")
    a = np.asarray(rows)  # columns from yyyy.yyyy (index 0 here) on
    time = _MJD_EPOCH + a[:, 1].astype(np.int64).astype("timedelta64[D]")
    enu = [a[:, 5] + a[:, 6], a[:, 7] + a[:, 8], a[:, 9] + a[:, 10]]
    lon = float(np.median(a[:, 19]))
    lon = lon - 360.0 if lon > 180.0 else lon
    return station_dataset(
        site, lon, float(np.median(a[:, 18])), time, enu, [a[:, 12], a[:, 13], a[:, 14]], str(path)
    )


def read_gnss_csv(
    path: str | Path, lon: float | None = None, lat: float | None = None, name: str | None = None
) -> xr.Dataset:
    """Read a CSV station series: date,east,north,up [m] (+ sig_*, lon, lat; see module doc)."""
    path = Path(path)
    try:
        with path.open(newline="") as fh:
            table = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read GNSS file {path}: {exc}") from exc
    header = set(table[0]) if table else set()
    missing = [c for c in ("date", *COMPONENTS) if c not in header]
    if missing:
        raise InputError(
            f"{path} lacks the column(s) {', '.join(missing)}; a GNSS CSV needs a header "
            "date,east,north,up (metres) and optionally sig_east,sig_north,sig_up,lon,lat"
        )

    def column(key: str, parse: Callable[[str], object]) -> list:
        values = []
        for number, row in enumerate(table, start=2):
            try:
                values.append(parse(row[key]))
            except (TypeError, ValueError) as exc:
                raise InputError(
                    f"{path}, line {number}, column {key!r}: bad value {row[key]!r}; dates are "
                    "YYYY-MM-DD and positions numbers in metres"
                ) from exc
        return values

    time = np.array(column("date", lambda s: np.datetime64(s.strip(), "D")))
    enu = [np.array(column(c, float)) for c in COMPONENTS]
    sig = None
    if all(f"sig_{c}" in header for c in COMPONENTS):
        sig = [np.array(column(f"sig_{c}", float)) for c in COMPONENTS]
    if lon is None or lat is None:
        if not {"lon", "lat"} <= header:
            raise InputError(
                f"{path} has no lon,lat columns and no station position was given; add the "
                "columns or pass lon= and lat="
            )
        lon, lat = float(table[0]["lon"]), float(table[0]["lat"])
    station = name or (table[0].get("station") or path.stem)
    return station_dataset(station, lon, lat, time, enu, sig, str(path))


#: Station file readers by suffix.
READERS: dict[str, Callable[[Path], xr.Dataset]] = {".tenv3": read_tenv3, ".csv": read_gnss_csv}


def read_stations(paths: Iterable[str | Path]) -> list[xr.Dataset]:
    """Read station files (`.tenv3` or `.csv`, by suffix)."""
    stations = []
    for p in map(Path, paths):
        reader = READERS.get(p.suffix.lower())
        if reader is None:
            raise InputError(
                f"{p}: unknown GNSS file type {p.suffix!r}; give {' or '.join(READERS)} files"
            )
        stations.append(reader(p))
    return stations


# --------------------------------------------------------------------------- projection


def project_to_los(station: xr.Dataset, los: Sequence[float]) -> xr.Dataset:
    """`los` [m] and `sig_los` [m] of a station for the unit vector (e, n, u) [ground->sat]."""
    e, n, u = (float(v) for v in los)
    d = e * station["east"] + n * station["north"] + u * station["up"]
    var = (e * station["sig_east"]) ** 2 + (n * station["sig_north"]) ** 2
    var = var + (u * station["sig_up"]) ** 2  # correlations neglected
    return xr.Dataset({"los": d, "sig_los": np.sqrt(var)}, attrs=dict(station.attrs))


def los_at(geometry: xr.Dataset, lon: float, lat: float, name: str = "") -> np.ndarray:
    """LOS unit vector (e, n, u) at lon/lat [deg] from `geometry`'s los_e/los_n/los_u."""
    missing = [v for v in LOS_VARIABLES if v not in geometry.data_vars]
    if missing:
        raise InputError(
            f"no LOS unit vectors ({', '.join(missing)} missing) to project station {name} "
            "with; pass geometry= a dataset with los_e, los_n, los_u (e.g. the input stack)"
        )
    iy, ix = _pixel(geometry, lon, lat, name, "the LOS geometry")
    vec = np.array([float(geometry[v].values[iy, ix]) for v in LOS_VARIABLES])
    if not np.isfinite(vec).all() or abs(np.linalg.norm(vec) - 1.0) > 0.05:
        raise InputError(
            f"the LOS vector at station {name} ({lon:.4f}, {lat:.4f}) is no data or not a unit "
            f"vector ({vec}); give a geometry that covers the station"
        )
    return vec


def _pixel(ds: xr.Dataset, lon: float, lat: float, name: str, what: str) -> tuple[int, int]:
    """Nearest (row, col) of lon/lat in `ds`'s grid; InputError when outside it."""
    crs = ds.rio.crs or "EPSG:4326"
    x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
    left, bottom, right, top = ds.rio.bounds()
    if not (left <= x <= right and bottom <= y <= top):
        raise InputError(
            f"station {name} at lon {lon:.4f}, lat {lat:.4f} lies outside {what} "
            f"(bounds {left:.4f}..{right:.4f}, {bottom:.4f}..{top:.4f} in {crs}); remove it "
            "from the station list or pass outside='skip'"
        )
    return int(np.argmin(np.abs(ds["y"].values - y))), int(np.argmin(np.abs(ds["x"].values - x)))


# --------------------------------------------------------------------------- tie


def tie_to_gnss(
    result: xr.Dataset,
    stations: Sequence[xr.Dataset],
    *,
    geometry: xr.Dataset | None = None,
    offset: Literal["velocity", "per_date", "none"] = "velocity",
    radius: int = 1,
    half_window_days: float = 0.0,
    outside: Literal["raise", "skip"] = "raise",
) -> tuple[xr.Dataset, xr.Dataset]:
    """Re-reference `result` to GNSS; returns (tied result, per-station agreement report).

    `result`: dims time, y, x with `displacement` [m] (LOS, + towards the satellite) and a
    CRS; LOS vectors from the result or `geometry` (any grid/CRS). A station's InSAR value is
    the median of the valid pixels in a (2 radius + 1)^2 window; its GNSS value on an InSAR
    date is the median of its daily solutions within +-`half_window_days` (0: that day).
    The report (dim station, and station x time) holds `rms_diff` [m], `correlation`,
    `insar_velocity`, `gnss_velocity`, `velocity_diff` [m/yr], the series `insar` and
    `gnss` (aligned) and `offset(time)` [m].
    """
    if "displacement" not in result.data_vars or result.rio.crs is None:
        raise InputError("tie_to_gnss needs a result with `displacement` and a CRS")
    geom = result if all(v in result.data_vars for v in LOS_VARIABLES) else geometry
    if geom is None:
        geom = result  # los_at raises the InputError naming the fix
    dates = result["time"].values
    t_ref = _reference_date(result)
    used, insar, gnss, sig, meta = [], [], [], [], []
    for st in stations:
        name = str(st.attrs.get("name", "?"))
        try:
            iy, ix = _pixel(result, st.attrs["lon"], st.attrs["lat"], name, "the InSAR result")
            vec = los_at(geom, st.attrs["lon"], st.attrs["lat"], name)
        except InputError:
            if outside == "skip":
                log.info("station %s skipped: outside the result or its geometry", name)
                continue
            raise
        series = _window_median(result["displacement"], iy, ix, radius)
        los = project_to_los(st, vec)
        on_dates = gnss_on_dates(los, dates, half_window_days)
        if np.isfinite(series).sum() < 2 or np.isfinite(on_dates["los"].values).sum() < 2:
            log.warning("station %s: fewer than 2 dates with both InSAR and GNSS", name)
            continue
        used.append(st)
        insar.append(series)
        gnss.append(on_dates["los"].values)
        sig.append(on_dates["sig_los"].values)
        meta.append((name, st.attrs["lon"], st.attrs["lat"], iy, ix, vec, los))
    if not used:
        raise InputError(
            f"no GNSS station has at least 2 dates in common with the InSAR result "
            f"({dates[0]}..{dates[-1]}) inside its area; give stations covering that period "
            "and area"
        )
    insar_a, gnss_a = np.array(insar), np.array(gnss)
    tau = years_since(dates, t_ref)
    k, c = fit_offsets(insar_a - gnss_a, tau, offset, np.array(sig))
    tied = _remove_offset(result, c, tau, offset)
    tied_series = insar_a - c[None, :]
    aligned = gnss_a + k[:, None]
    report = _report(meta, dates, tau, tied_series, aligned, c)
    tied.attrs.update(
        reference_method=f"gnss ({offset})",
        gnss_stations=", ".join(m[0] for m in meta),
        gnss_offset_velocity=float(_slope(tau, c[None, :])[0]),
    )
    return tied, report


def gnss_on_dates(los: xr.Dataset, dates: np.ndarray, half_window_days: float) -> xr.Dataset:
    """GNSS `los`/`sig_los` [m] on `dates`: median of the daily solutions within the window.

    A window of +-half_window_days (e.g. 3 for 12-day InSAR sampling) averages down the
    daily GNSS noise; sig_los becomes the window's median sigma / sqrt(n). NaN where none.
    """
    t = los["time"].values
    half = np.timedelta64(int(round(half_window_days * 86400)), "s")
    lo = np.searchsorted(t, dates - half, side="left")
    hi = np.searchsorted(t, dates + half, side="right")
    value = np.full(len(dates), np.nan)
    sigma = np.full(len(dates), np.nan)
    d, s = los["los"].values, los["sig_los"].values
    for i, (a, b) in enumerate(zip(lo, hi, strict=True)):  # per InSAR date, not per pixel
        if b > a:
            value[i] = np.median(d[a:b])
            sigma[i] = np.median(s[a:b]) / np.sqrt(b - a)
    return xr.Dataset({"los": ("time", value), "sig_los": ("time", sigma)}, {"time": dates})


def _reference_date(result: xr.Dataset) -> np.datetime64:
    ref = result.attrs.get("reference_date")
    return np.datetime64(ref, "D") if ref else result["time"].values[0].astype("datetime64[D]")


def _window_median(disp: xr.DataArray, iy: int, ix: int, radius: int) -> np.ndarray:
    """Median over the window's pixels with data, per date [m] (NaN when none)."""
    win = disp.isel(
        y=slice(max(iy - radius, 0), iy + radius + 1), x=slice(max(ix - radius, 0), ix + radius + 1)
    ).values
    flat = win.reshape(win.shape[0], -1).astype(np.float64)
    good = np.isfinite(flat).all(axis=0)
    if not good.any():
        return np.full(flat.shape[0], np.nan)
    return np.median(flat[:, good], axis=1)


def fit_offsets(
    diff: np.ndarray,
    tau: np.ndarray,
    offset: Literal["velocity", "per_date", "none"] = "velocity",
    sigma: np.ndarray | None = None,
    iterations: int = 20,
) -> tuple[np.ndarray, np.ndarray]:
    """Robust fit of diff(station, date) = k_s + c(t) [m]; returns (k (station,), c (date,)).

    c(t) = v tau with `offset="velocity"` (tau [yr] from the reference date, where c = 0), or
    free per date with c = 0 where tau == 0 (`"per_date"`), or zero (`"none"`: only the
    station datums; the agreement of the result as it is). Huber IRLS with a MAD scale;
    `sigma` (station, date) [m] weights the data where finite.
    """
    n_st, n_t = diff.shape
    ok = np.isfinite(diff)
    rows_s, rows_t = np.nonzero(ok)
    y = diff[ok]
    a_k = np.zeros((y.size, n_st))
    a_k[np.arange(y.size), rows_s] = 1.0
    if offset == "velocity":
        a_c = tau[rows_t][:, None]
    elif offset == "per_date":
        free = np.flatnonzero(tau != 0)
        a_c = (rows_t[:, None] == free[None, :]).astype(float)
    elif offset == "none":
        a_c = np.zeros((y.size, 0))
    else:
        raise InputError(f"offset must be 'velocity', 'per_date' or 'none', got {offset!r}")
    a = np.hstack([a_k, a_c])
    w0 = np.ones(y.size)
    if sigma is not None:
        s = sigma[ok]
        good = np.isfinite(s) & (s > 0)
        if good.all():
            w0 = 1.0 / s**2
    w = w0.copy()
    for _ in range(iterations):
        sw = np.sqrt(w)
        sol, *_ = np.linalg.lstsq(a * sw[:, None], y * sw, rcond=None)
        r = y - a @ sol
        scale = 1.4826 * np.median(np.abs(r - np.median(r)))
        if not scale > 0:
            break
        u = np.abs(r) / (HUBER_K * scale)
        w = w0 * np.where(u <= 1, 1.0, 1.0 / np.maximum(u, 1e-12))
    k = sol[:n_st]
    if offset == "velocity":
        c = sol[n_st] * tau
    elif offset == "none":
        c = np.zeros(n_t)
    else:
        c = np.zeros(n_t)
        c[free] = sol[n_st:]
        seen = np.isin(np.arange(n_t), rows_t)
        c[~seen] = np.nan
    return k, c


def _remove_offset(result: xr.Dataset, c: np.ndarray, tau: np.ndarray, offset: str) -> xr.Dataset:
    """`result` minus the reference motion c(t) (and its slope from velocity)."""
    if not np.isfinite(c).all():
        log.warning(
            "no station has data on %d date(s): their offset is left at 0",
            int((~np.isfinite(c)).sum()),
        )
    corr = xr.DataArray(np.nan_to_num(c), dims="time", coords={"time": result["time"]})
    out = result.assign(displacement=(result["displacement"] - corr).astype(np.float32))
    out["displacement"].attrs = dict(result["displacement"].attrs)
    if "velocity" in result.data_vars:
        v = float(_slope(tau, c[None, :])[0])
        out["velocity"] = (result["velocity"] - v).astype(np.float32)
        out["velocity"].attrs = dict(result["velocity"].attrs)
    return out


def _slope(tau: np.ndarray, series: np.ndarray) -> np.ndarray:
    """Least-squares slope [m/yr] (with intercept) of each row of `series` vs tau [yr]."""
    out = np.full(series.shape[0], np.nan)
    for i, row in enumerate(series):  # a handful of stations
        ok = np.isfinite(row)
        if ok.sum() >= 2:
            out[i] = np.polyfit(tau[ok], row[ok], 1)[0]
    return out


def _report(
    meta: list,
    dates: np.ndarray,
    tau: np.ndarray,
    insar: np.ndarray,
    gnss: np.ndarray,
    c: np.ndarray,
) -> xr.Dataset:
    """The per-station agreement Dataset (see `tie_to_gnss`)."""
    diff = insar - gnss
    ok = np.isfinite(diff)
    rms = np.sqrt(np.nanmean(np.where(ok, diff, np.nan) ** 2, axis=1))
    corr = np.array(
        [
            np.corrcoef(i[m], g[m])[0, 1] if m.sum() >= 3 and np.std(g[m]) > 0 else np.nan
            for i, g, m in zip(insar, gnss, ok, strict=True)
        ]
    )
    v_insar = _slope(tau, np.where(ok, insar, np.nan))
    v_gnss = np.array([_daily_velocity(m[6], dates) for m in meta])
    names = [m[0] for m in meta]
    station = ("station",)
    return xr.Dataset(
        {
            "lon": (station, [m[1] for m in meta]),
            "lat": (station, [m[2] for m in meta]),
            "row": (station, [m[3] for m in meta]),
            "col": (station, [m[4] for m in meta]),
            "los_e": (station, [m[5][0] for m in meta]),
            "los_n": (station, [m[5][1] for m in meta]),
            "los_u": (station, [m[5][2] for m in meta]),
            "n_dates": (station, ok.sum(axis=1)),
            "rms_diff": (station, rms, {"units": "m"}),
            "correlation": (station, corr),
            "insar_velocity": (station, v_insar, {"units": "m/yr"}),
            "gnss_velocity": (station, v_gnss, {"units": "m/yr"}),
            "velocity_diff": (station, v_insar - v_gnss, {"units": "m/yr"}),
            "insar": (("station", "time"), insar, {"units": "m", "long_name": "InSAR, tied"}),
            "gnss": (("station", "time"), gnss, {"units": "m", "long_name": "GNSS LOS"}),
            "offset": ("time", c, {"units": "m", "long_name": "removed reference motion"}),
        },
        coords={"station": names, "time": dates},
    )


def _daily_velocity(los: xr.Dataset, dates: np.ndarray) -> float:
    """LS slope [m/yr] of the daily GNSS LOS series within the InSAR span."""
    span = los.sel(time=slice(dates[0], dates[-1]))
    t = years_since(span["time"].values, dates[0])
    return float(_slope(t, span["los"].values[None, :])[0])


# --------------------------------------------------------------------------- outputs


def write_report(
    report: xr.Dataset, out_dir: str | Path, stations: Sequence[xr.Dataset] = ()
) -> list[Path]:
    """`gnss_agreement.csv` and one PNG per station (`gnss_<NAME>.png`) in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = report.drop_dims("time").to_dataframe()
    csv_path = out / "gnss_agreement.csv"
    table.to_csv(csv_path.with_suffix(".tmp"))
    csv_path.with_suffix(".tmp").replace(csv_path)
    written = [csv_path]
    by_name = {str(s.attrs.get("name")): s for s in stations}
    for name in report["station"].values:
        path = out / f"gnss_{name}.png"
        plot_station(report.sel(station=name), by_name.get(str(name)), path)
        written.append(path)
    return written


def plot_station(row: xr.Dataset, station: xr.Dataset | None, path: Path) -> None:
    """InSAR (tied) vs GNSS LOS [mm] at one station, as a PNG."""
    fig = Figure(figsize=(7, 3.2))
    ax = fig.add_subplot()
    t = row["time"].values
    if station is not None:
        vec = [float(row[v]) for v in LOS_VARIABLES]
        daily = project_to_los(station, vec)["los"].sel(time=slice(t[0], t[-1]))
        k = float(np.nanmedian(row["gnss"].values - daily.reindex(time=t).values))
        ax.plot(daily["time"], (daily + k) * 1e3, ".", ms=2, color="0.6", label="GNSS LOS daily")
    ax.plot(t, row["gnss"] * 1e3, "s-", color="tab:orange", label="GNSS LOS")
    ax.plot(t, row["insar"] * 1e3, "o-", color="tab:blue", label="InSAR (GNSS-tied)")
    ax.set_ylabel("LOS [mm], + to satellite")
    ax.set_title(
        f"{row['station'].item()}: RMS diff {float(row['rms_diff']) * 1e3:.1f} mm, "
        f"r = {float(row['correlation']):.2f}, dv = {float(row['velocity_diff']) * 1e3:.1f} mm/yr",
        fontsize=9,
    )
    ax.legend(fontsize=7)
    fig.autofmt_xdate()
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    tmp.replace(path)
