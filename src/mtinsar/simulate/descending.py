"""An ascending and a descending scene of the same 3-D ground motion (for decomposition tests).

`simulate_scene` defines its deformation directly as LOS fields of its own geometry, so two
scenes with different orbits do not see one common ground motion in a form the tests can use.
Here the ground motion is defined once, in 3-D (east, north, up) and as a function of lon/lat
and absolute time, and each track's LOS truth is its projection with that track's per-pixel
LOS unit vector (ground -> satellite)::

    d_los = los_e * d_east + los_n * d_north + los_u * d_up

The scene is simulated with `deformation=False` (so its nuisances, network and coherence are
unchanged) and its `displacement`/`velocity` truth is replaced by that projection; the
interferograms (`Scene.interferogram`) are computed from the truth, so they carry it. The
tracks get different grids (origin, posting), calendars and seeds, as real frames do. The
truth also holds the 3-D fields `east`, `north`, `up` [m] and `velocity_east/north/up` [m/yr].
"""

from __future__ import annotations

import dataclasses

import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field

from mtinsar.conventions import years_since
from mtinsar.simulate.datestack import DateStack
from mtinsar.simulate.scene import Scene, SceneConfig, simulate_scene


class GroundMotion(BaseModel):
    """3-D ground motion: a subsidence bowl and an east-moving slope, plus seasonal uplift.

    Positions are lon/lat [deg]; radii in degrees; rates in m/yr (east, north, up positive);
    time origin `epoch` so that every track sees the same motion whatever its calendar.
    """

    model_config = ConfigDict(extra="forbid")

    bowl_lon: float = Field(-99.282, description="Subsidence bowl centre longitude [deg].")
    bowl_lat: float = Field(19.576, description="Subsidence bowl centre latitude [deg].")
    bowl_radius: float = Field(0.012, gt=0, description="Bowl radius [deg].")
    bowl_up_rate: float = Field(-0.06, description="Vertical rate at the bowl centre [m/yr].")
    slope_lon: float = Field(-99.263, description="Moving-slope centre longitude [deg].")
    slope_lat: float = Field(19.587, description="Moving-slope centre latitude [deg].")
    slope_radius: float = Field(0.010, gt=0, description="Moving-slope radius [deg].")
    slope_east_rate: float = Field(0.03, description="Eastward rate of the slope [m/yr].")
    slope_up_rate: float = Field(-0.01, description="Vertical rate of the slope [m/yr].")
    north_rate: float = Field(
        0.0, description="North rate of the slope [m/yr] (0: the N-S assumption holds)."
    )
    seasonal_up: float = Field(
        0.004, ge=0, description="Annual vertical amplitude in the bowl [m]."
    )
    epoch: str = Field("2019-01-01", description="Time origin of the motion, YYYY-MM-DD.")

    def rates(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(east, north, up) velocity [m/yr] at lon/lat [deg] (broadcast)."""
        bowl = _bump(np.hypot(lon - self.bowl_lon, lat - self.bowl_lat) / self.bowl_radius)
        slope = _bump(np.hypot(lon - self.slope_lon, lat - self.slope_lat) / self.slope_radius)
        east = self.slope_east_rate * slope
        north = self.north_rate * slope
        up = self.bowl_up_rate * bowl + self.slope_up_rate * slope
        return east, north, up

    def displacement(
        self, dates: np.ndarray, lon: np.ndarray, lat: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(east, north, up) displacement (time, y, x) [m] since `epoch` at the given dates."""
        t = years_since(dates, np.datetime64(self.epoch, "D"))[:, None, None]
        ve, vn, vu = (
            np.broadcast_to(r, np.broadcast_shapes(lon.shape, lat.shape))
            for r in self.rates(lon, lat)
        )
        bowl = _bump(np.hypot(lon - self.bowl_lon, lat - self.bowl_lat) / self.bowl_radius)
        seasonal = self.seasonal_up * np.sin(2 * np.pi * t) * bowl
        return ve * t, vn * t, vu * t + seasonal


def _bump(r: np.ndarray) -> np.ndarray:
    """Smooth compact bump: (1 - r^2)^3 for r < 1, else 0."""
    rc = np.minimum(r, 1.0)
    return (1.0 - rc**2) ** 3


def simulate_track(config: SceneConfig, motion: GroundMotion) -> Scene:
    """A scene (nuisances as in `config`) whose deformation truth is `motion` seen in its LOS."""
    scene = simulate_scene(config.model_copy(update={"deformation": False}))
    truth = scene.truth
    lon, lat = np.meshgrid(truth["x"].values, truth["y"].values)
    east, north, up = motion.displacement(scene.dates, lon, lat)
    first = (east[:1], north[:1], up[:1])
    east, north, up = east - first[0], north - first[1], up - first[2]  # relative to date 0
    los = [truth[v].values.astype(np.float64) for v in ("los_e", "los_n", "los_u")]
    d_los = (los[0] * east + los[1] * north + los[2] * up).astype(np.float32)
    ve, vn, vu = (np.broadcast_to(r, lon.shape) for r in motion.rates(lon, lat))
    t = years_since(scene.dates, scene.dates[0])
    tc = t - t.mean()
    v_los = np.tensordot(tc / (tc @ tc), d_los.astype(np.float64), axes=1)
    cube, plane = ("time", "y", "x"), ("y", "x")
    new_truth = truth.assign(
        displacement=(cube, d_los, {"units": "m"}),
        velocity=(plane, v_los.astype(np.float32), {"units": "m/yr"}),
        east=(cube, east.astype(np.float32), {"units": "m"}),
        north=(cube, north.astype(np.float32), {"units": "m"}),
        up=(cube, up.astype(np.float32), {"units": "m"}),
        velocity_east=(plane, ve.astype(np.float32), {"units": "m/yr"}),
        velocity_north=(plane, vn.astype(np.float32), {"units": "m/yr"}),
        velocity_up=(plane, vu.astype(np.float32), {"units": "m/yr"}),
    )
    new_truth.attrs["ground_motion"] = motion.model_dump_json()
    # the interferograms are made from the model's per-date truth, not from `truth`
    stack = DateStack(len(scene.dates), d_los.shape[1:])
    for k, layer in enumerate(d_los):
        stack[k] = layer
    model = dataclasses.replace(scene._model, displacement=stack)
    return dataclasses.replace(scene, truth=new_truth, _model=model)


def simulate_track_pair(
    ny: int = 40, nx: int = 48, n_dates: int = 16, seed: int = 0, **overrides: object
) -> tuple[Scene, Scene, GroundMotion]:
    """Ascending and descending scenes of one `GroundMotion`, on different grids and calendars.

    The descending frame is shifted by a few pixels, has a 10 % coarser posting, starts 6 days
    later and has its own seed, so the two overlap only in part, as real frames do.
    """
    motion = GroundMotion()
    asc = SceneConfig(ny=ny, nx=nx, n_dates=n_dates, seed=seed, **overrides)
    desc = asc.model_copy(
        update={
            "orbit": "descending",
            "seed": seed + 1,
            "lon0": asc.lon0 + 3.3 * asc.posting_deg,
            "lat0": asc.lat0 - 2.6 * asc.posting_deg,
            "posting_deg": asc.posting_deg * 1.1,
            "start_date": str(np.datetime64(asc.start_date, "D") + np.timedelta64(6, "D")),
        }
    )
    return simulate_track(asc, motion), simulate_track(desc, motion), motion


def truth_on(dataset: xr.Dataset, motion: GroundMotion) -> xr.Dataset:
    """3-D velocity truth (velocity_east/north/up [m/yr]) on a lon/lat grid like `dataset`'s."""
    lon, lat = np.meshgrid(dataset["x"].values, dataset["y"].values)
    ve, vn, vu = (np.broadcast_to(r, lon.shape) for r in motion.rates(lon, lat))
    plane = ("y", "x")
    return xr.Dataset(
        {"velocity_east": (plane, ve), "velocity_north": (plane, vn), "velocity_up": (plane, vu)},
        coords={"y": dataset["y"].values, "x": dataset["x"].values},
    )
