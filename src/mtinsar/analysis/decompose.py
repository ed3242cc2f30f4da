"""Ascending + descending decomposition into vertical and east-west motion.

Two time-series results of the same area, seen from two look directions, give per pixel two
LOS observations of one 3-D motion (east, north, up)::

    d_asc  = e_a * E + n_a * N + u_a * U
    d_desc = e_d * E + n_d * N + u_d * U

with (e, n, u) the LOS unit vector, ground -> satellite (DESIGN §3: displacement positive
towards the satellite). Two equations cannot give three unknowns, so the north component is
assumed zero (Wright, Parsons & Lu 2004, GRL 31, L01607; Fuhrmann & Garthwaite 2019, Remote
Sens. 11, 241). For Sentinel-1 (near-polar orbits, heading about -12 / -168 deg) the LOS is
nearly east-west: n is about -0.13 on both tracks, so a north rate v_N leaks into the
solution as the bias G^-1 [n_a, n_d]^T v_N. The output carries that bias per unit north rate
(`north_leak_east`, `north_leak_up`, m/yr of error per m/yr of north motion). As n has the
same sign on both tracks it goes almost entirely into U: for Sentinel-1 the U leak is about
-0.17 and the E leak below 0.05 (measured on the simulator's geometry), i.e. 10 mm/yr of
northward motion reads as about -1.7 mm/yr vertical.

Per pixel the 2x2 weighted least-squares solution with weights 1/velocity_std^2 is, with two
observations, the exact inverse G^-1 d; its covariance (G^T W G)^-1 = G^-1 diag(s_a^2, s_d^2)
G^-T gives `velocity_east_std`, `velocity_up_std` and `velocity_east_up_corr`. Time series get
no std (the results carry none per date).

Grids: the descending result is resampled onto the ascending grid, clipped to the area both
cover (`rioxarray` `reproject_match`: bilinear for values, nearest for the mask).
Dates: the common dates are the ascending dates inside the time span both tracks cover; the
descending series is linearly interpolated in time to them (`dates="interpolate"`), or only
ascending dates with a descending date within `tolerance_days` are kept, taking that date's
value (`dates="nearest"`). Both series are then re-referenced to the first common date.
Both results must be referenced to the same (stable) ground: give `reference` (lon, lat) to
re-reference both to one point, or tie both to GNSS first (`mtinsar.analysis.gnss.tie_to_gnss`).
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from pyproj import Transformer
from rasterio.enums import Resampling
from rioxarray.exceptions import NoDataInBounds, OneDimensionalRaster

from mtinsar.errors import InputError

log = logging.getLogger(__name__)

LOS_VARIABLES = ("los_e", "los_n", "los_u")
#: Smallest |det G| accepted: below it the two look directions are too alike to separate E/U.
MIN_DETERMINANT = 0.2


def decompose(
    asc: xr.Dataset,
    desc: xr.Dataset,
    *,
    asc_geometry: xr.Dataset | None = None,
    desc_geometry: xr.Dataset | None = None,
    reference: tuple[float, float] | None = None,
    reference_radius: int = 2,
    dates: Literal["interpolate", "nearest"] = "interpolate",
    tolerance_days: float = 6.0,
) -> xr.Dataset:
    """Vertical and east-west velocity [m/yr] and displacement [m] from two LOS results.

    `asc`, `desc`: time-series results (dims time, y, x; `displacement`, `velocity`,
    `velocity_std`, `mask`; a CRS). The LOS unit vectors `los_e/los_n/los_u` are taken from
    each result, or from `*_geometry` (e.g. the input stack) when the result lacks them.
    `reference`: (lon, lat) [deg] to re-reference both tracks to (median over a
    (2 r + 1)^2 window of valid pixels). Returns a Dataset on the common grid (the
    ascending grid clipped to the overlap) with `velocity_east/up` (+ `_std`),
    `velocity_east_up_corr`, `displacement_east/up(time, y, x)`, `north_leak_east/up`, `mask`.
    """
    a = attach_los(asc, asc_geometry, "ascending")
    d = attach_los(desc, desc_geometry, "descending")
    a, d = common_grid(a, d)
    a, d = common_dates(a, d, dates, tolerance_days)
    if reference is not None:
        a = rereference_at(a, reference, reference_radius, "ascending")
        d = rereference_at(d, reference, reference_radius, "descending")

    ginv, solvable = _los_inverse(a, d)
    out = _solve(a, d, ginv, solvable)
    out.attrs.update(
        {
            "method": "asc/desc decomposition, north motion assumed zero (Wright et al. 2004)",
            "dates": dates if dates == "interpolate" else f"nearest within {tolerance_days} d",
            "reference_date": str(a["time"].values[0].astype("datetime64[D]")),
            "reference_lon": np.nan if reference is None else float(reference[0]),
            "reference_lat": np.nan if reference is None else float(reference[1]),
            "asc_source": str(asc.attrs.get("source", "")),
            "desc_source": str(desc.attrs.get("source", "")),
        }
    )
    return out.rio.write_crs(a.rio.crs)


def _los_inverse(a: xr.Dataset, d: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel inverse of the (asc, desc) x (E, U) LOS matrix, NaN where not separable."""
    ga = np.stack([a["los_e"].values, a["los_u"].values], axis=-1).astype(np.float64)
    gd = np.stack([d["los_e"].values, d["los_u"].values], axis=-1).astype(np.float64)
    g = np.stack([ga, gd], axis=-2)  # (y, x, 2 obs, 2 unknowns [E, U])
    det = g[..., 0, 0] * g[..., 1, 1] - g[..., 0, 1] * g[..., 1, 0]
    solvable = np.isfinite(det) & (np.abs(det) >= MIN_DETERMINANT)
    if not solvable.any():
        raise InputError(
            "the two results look at the ground from (nearly) the same direction "
            f"(|det| of the LOS matrix < {MIN_DETERMINANT} everywhere); decomposition needs "
            "one ascending and one descending result"
        )
    return _inverse_2x2(np.where(solvable[..., None, None], g, np.nan), det), solvable


def _solve(a: xr.Dataset, d: xr.Dataset, ginv: np.ndarray, solvable: np.ndarray) -> xr.Dataset:
    """E/U velocity, its covariance, displacement and north leakage through `ginv`."""
    vel = np.stack([a["velocity"].values, d["velocity"].values], axis=-1).astype(np.float64)
    std = np.stack([a["velocity_std"].values, d["velocity_std"].values], axis=-1)
    v_eu = np.einsum("yxij,yxj->yxi", ginv, vel)
    cov = np.einsum("yxij,yxj,yxkj->yxik", ginv, std.astype(np.float64) ** 2, ginv)
    disp = np.stack([a["displacement"].values, d["displacement"].values], axis=-1)
    d_eu = np.einsum("yxij,tyxj->tyxi", ginv, disp.astype(np.float64))
    n_obs = np.stack([a["los_n"].values, d["los_n"].values], axis=-1).astype(np.float64)
    leak = np.einsum("yxij,yxj->yxi", ginv, n_obs)

    mask = solvable & a["mask"].values.astype(bool) & d["mask"].values.astype(bool)
    mask &= np.isfinite(v_eu).all(axis=-1)
    with np.errstate(invalid="ignore"):
        corr = cov[..., 0, 1] / np.sqrt(cov[..., 0, 0] * cov[..., 1, 1])
    plane, cube = ("y", "x"), ("time", "y", "x")

    def f32(x: np.ndarray) -> np.ndarray:
        return x.astype(np.float32)

    return xr.Dataset(
        {
            "velocity_east": (plane, f32(v_eu[..., 0]), _attrs("m/yr", "east velocity, + east")),
            "velocity_up": (plane, f32(v_eu[..., 1]), _attrs("m/yr", "vertical velocity, + up")),
            "velocity_east_std": (plane, f32(np.sqrt(cov[..., 0, 0])), _attrs("m/yr", "std")),
            "velocity_up_std": (plane, f32(np.sqrt(cov[..., 1, 1])), _attrs("m/yr", "std")),
            "velocity_east_up_corr": (plane, f32(corr), _attrs("1", "correlation of E and U")),
            "displacement_east": (cube, f32(d_eu[..., 0]), _attrs("m", "east displacement")),
            "displacement_up": (cube, f32(d_eu[..., 1]), _attrs("m", "vertical displacement")),
            "north_leak_east": (
                plane,
                f32(leak[..., 0]),
                _attrs("1", "E bias per unit north rate (N-S assumed zero)"),
            ),
            "north_leak_up": (
                plane,
                f32(leak[..., 1]),
                _attrs("1", "U bias per unit north rate (N-S assumed zero)"),
            ),
            "mask": (plane, mask, {"long_name": "both tracks reliable and E/U separable"}),
        },
        coords={"time": a["time"].values, "y": a["y"].values, "x": a["x"].values},
    )


def _attrs(units: str, long_name: str) -> dict[str, str]:
    return {"units": units, "long_name": long_name}


def _inverse_2x2(g: np.ndarray, det: np.ndarray) -> np.ndarray:
    """Batched inverse of (..., 2, 2) matrices with given determinants."""
    inv = np.empty_like(g)
    with np.errstate(invalid="ignore", divide="ignore"):
        inv[..., 0, 0] = g[..., 1, 1] / det
        inv[..., 1, 1] = g[..., 0, 0] / det
        inv[..., 0, 1] = -g[..., 0, 1] / det
        inv[..., 1, 0] = -g[..., 1, 0] / det
    return inv


_NEEDED = ("displacement", "velocity", "velocity_std", "mask")
_PARAM = {"ascending": "asc_geometry", "descending": "desc_geometry"}


def attach_los(result: xr.Dataset, geometry: xr.Dataset | None, track: str) -> xr.Dataset:
    """The result's variables we need plus LOS vectors (from the result or `geometry`)."""
    source = result.attrs.get("source") or f"the {track} result"
    missing = [v for v in _NEEDED if v not in result.data_vars]
    if missing:
        raise InputError(
            f"{source} lacks {', '.join(missing)}; give a time-series result made by `mtinsar run`"
        )
    if result.rio.crs is None:
        raise InputError(f"{source} has no CRS (spatial_ref); write one with rioxarray")
    out = result[list(_NEEDED)]
    if all(v in result.data_vars for v in LOS_VARIABLES):
        return out.assign({v: result[v] for v in LOS_VARIABLES})
    if geometry is None or not all(v in geometry.data_vars for v in LOS_VARIABLES):
        raise InputError(
            f"{source} has no LOS unit vectors (los_e, los_n, los_u) and none were given; "
            f"pass {_PARAM.get(track, 'geometry')}= the input stack (or any dataset with "
            "los_e/los_n/los_u)"
        )
    los = geometry[list(LOS_VARIABLES)]
    if los.rio.crs is None:
        los = los.rio.write_crs(result.rio.crs)
    if los.sizes["y"] != result.sizes["y"] or los.sizes["x"] != result.sizes["x"]:
        los = _reproject(los, result)
    else:
        los = los.assign_coords(y=result["y"].values, x=result["x"].values)
    return out.assign({v: los[v].reset_coords(drop=True) for v in LOS_VARIABLES})


def common_grid(a: xr.Dataset, d: xr.Dataset) -> tuple[xr.Dataset, xr.Dataset]:
    """Both datasets on `a`'s grid clipped to the area both cover (d resampled)."""
    bounds = d.rio.transform_bounds(a.rio.crs)
    try:
        clipped = a.rio.clip_box(*bounds)
    except (NoDataInBounds, OneDimensionalRaster) as exc:
        raise InputError(
            f"the two results do not overlap (descending bounds {np.round(bounds, 4).tolist()} "
            f"vs ascending {np.round(a.rio.bounds(), 4).tolist()} in {a.rio.crs}); "
            "give results over the same area"
        ) from exc
    return clipped, _reproject(d, clipped)


def _reproject(src: xr.Dataset, like: xr.Dataset) -> xr.Dataset:
    """`src` resampled onto `like`'s grid: bilinear for values, nearest for the mask."""
    out = {}
    for name, var in src.data_vars.items():
        is_mask = var.dtype == bool
        data = var.astype(np.uint8 if is_mask else np.float32)
        data = data.rio.write_nodata(255 if is_mask else np.nan, encoded=False)
        data = data.rio.write_crs(src.rio.crs)
        resampling = Resampling.nearest if is_mask else Resampling.bilinear
        moved = data.rio.reproject_match(like, resampling=resampling)
        out[name] = (moved == 1) if is_mask else moved
    ds = xr.Dataset(out).assign_coords(y=like["y"].values, x=like["x"].values)
    return ds.drop_vars("spatial_ref", errors="ignore").rio.write_crs(like.rio.crs)


def common_dates(
    a: xr.Dataset,
    d: xr.Dataset,
    dates: Literal["interpolate", "nearest"] = "interpolate",
    tolerance_days: float = 6.0,
) -> tuple[xr.Dataset, xr.Dataset]:
    """Both series on the common dates (a's dates), re-referenced to the first of them."""
    ta, td = a["time"].values, d["time"].values
    if dates == "interpolate":
        keep = (ta >= td.min()) & (ta <= td.max())
        common = ta[keep]
        if len(common) < 2:
            raise InputError(
                f"the time spans do not overlap enough: ascending {ta.min()}..{ta.max()}, "
                f"descending {td.min()}..{td.max()} share {len(common)} ascending dates; "
                "give results covering a common period"
            )
        d_disp = d["displacement"].interp(time=common, method="linear")
    elif dates == "nearest":
        gap = np.abs(ta[:, None] - td[None, :]) / np.timedelta64(1, "D")
        nearest = np.argmin(gap, axis=1)
        keep = gap[np.arange(len(ta)), nearest] <= tolerance_days
        common = ta[keep]
        if len(common) < 2:
            raise InputError(
                f"fewer than 2 ascending dates have a descending date within {tolerance_days} "
                "days; raise tolerance_days or use dates='interpolate'"
            )
        d_disp = d["displacement"].isel(time=nearest[keep]).assign_coords(time=common)
    else:
        raise InputError(f"dates must be 'interpolate' or 'nearest', got {dates!r}")
    a_disp = a["displacement"].sel(time=common)
    a = a.drop_dims("time").assign(displacement=a_disp - a_disp.isel(time=0))
    d = d.drop_dims("time").assign(displacement=d_disp - d_disp.isel(time=0))
    return a, d


def rereference_at(
    ds: xr.Dataset, lonlat: tuple[float, float], radius: int, track: str
) -> xr.Dataset:
    """`ds` relative to the median of the valid pixels around lon/lat (velocity, series)."""
    to_grid = Transformer.from_crs("EPSG:4326", ds.rio.crs, always_xy=True)
    x, y = to_grid.transform(*lonlat)
    iy = int(np.argmin(np.abs(ds["y"].values - y)))
    ix = int(np.argmin(np.abs(ds["x"].values - x)))
    inside = ds.rio.bounds()
    if not (inside[0] <= x <= inside[2] and inside[1] <= y <= inside[3]):
        raise InputError(
            f"reference lon/lat {lonlat} lies outside the common area of the two results; "
            "pick a point both cover"
        )
    window = {
        "y": slice(max(iy - radius, 0), iy + radius + 1),
        "x": slice(max(ix - radius, 0), ix + radius + 1),
    }
    win = ds.isel(window)
    ok = win["mask"].values & np.isfinite(win["velocity"].values)
    if not ok.any():
        raise InputError(
            f"no reliable {track} pixel within {radius} pixels of the reference {lonlat}; "
            "pick a coherent, stable point or a larger reference_radius"
        )
    v0 = float(np.median(win["velocity"].values[ok]))
    d0 = np.nanmedian(win["displacement"].values[:, ok], axis=1)
    return ds.assign(
        velocity=ds["velocity"] - v0,
        displacement=ds["displacement"] - xr.DataArray(d0, dims="time"),
    )
