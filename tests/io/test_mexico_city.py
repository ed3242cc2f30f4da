"""Real Sentinel-1 data: PyRate's "cropA" GAMMA stack over Mexico City, read as generic GeoTIFFs.

The data and its README are in ../shared/realdata/pyrate_s1_mexico_city (30 pairs, 13 dates,
2018-01-06..2018-07-17, 100 x 60 px at 0.00139 deg, nodata 0). The README reports that the
lake-bed (east) moves away from the satellite by about 200 mm/yr (LOS) relative to the
western hills: the well-known subsidence of Mexico City's lake-bed clays.
"""

from pathlib import Path

import numpy as np
import pytest

from mtinsar.config import RunConfig
from mtinsar.io.geotiff import is_geotiff, read_geotiff
from mtinsar.stack import dates
from mtinsar.workflows.pipeline import run_sbas

DATA = Path(__file__).resolve().parents[3] / "shared/realdata/pyrate_s1_mexico_city/geotiffs"
#: WAVELENGTH_METRES and INCIDENCE_DEGREES in the files' GDAL metadata (README: 0.0555 m, 39.70).
WAVELENGTH = 0.05550415767769124
INCIDENCE = 39.7026


@pytest.fixture(scope="module")
def stack():
    return read_geotiff(DATA)


def test_the_stack_is_read_as_the_readme_describes(stack):
    assert is_geotiff(DATA)
    assert stack.sizes == {"pair": 30, "y": 60, "x": 100}
    assert len(dates(stack)) == 13
    assert str(dates(stack)[0]) == "2018-01-06" and str(dates(stack)[-1]) == "2018-07-17"
    assert stack.attrs["wavelength"] == WAVELENGTH and stack.attrs["processor"] == "GAMMA"
    np.testing.assert_allclose(stack["incidence"].values, INCIDENCE, atol=1e-4)
    # Upper-left corner lon -99.19107, lat 19.45129, posting 0.0013888889 deg.
    assert stack["x"].values[0] == pytest.approx(-99.19107 + 0.0013888889 / 2, abs=1e-5)
    assert stack["y"].values[0] == pytest.approx(19.45129 - 0.0013888889 / 2, abs=1e-5)
    nodata = np.isnan(stack["unw"].values).mean()
    assert 0.01 < nodata < 0.025  # README: about 1.7 % of the values are 0 = no data
    height = stack["height"].values
    assert np.nanmin(height) == 2217 and np.nanmax(height) == 2287  # README: 2217-2287 m
    coh = stack["coh"].values
    assert np.nanmin(coh) > 0 and np.nanmax(coh) <= 1


def test_lake_bed_subsides_relative_to_the_western_hills(stack):
    """SBAS with the default configuration (automatic reference point)."""
    run = run_sbas(stack, RunConfig())
    vel = run.result["velocity"].values  # LOS m/yr, + towards the satellite
    assert np.isfinite(vel).mean() > 0.97
    west = np.nanmedian(vel[:, :15])  # hills: the westernmost 15 % of the columns
    east = vel[:, 80:]  # lake-bed: the easternmost 20 %
    relative = np.nanmedian(east) - west
    # README: about -0.2 m/yr LOS relative (away from the satellite).
    assert -0.30 < relative < -0.14, relative
    assert (east[np.isfinite(east)] < west - 0.05).mean() > 0.95
    # Subsidence grows from west to east (column medians), as the basin deepens eastwards.
    profile = np.nanmedian(vel, axis=0)
    assert np.corrcoef(np.arange(100), profile)[0, 1] < -0.9
    assert run.result["temporal_coherence"].values[np.isfinite(vel)].mean() > 0.9
