"""GNSS: reading, LOS projection, tie of an InSAR result to GNSS, agreement report.

Scored against the simulator's truth (3 simulated stations) and against real data: UNR tenv3
series of 10 Kilauea stations with a 5-date InSAR displacement series (geepers test data).
"""

from pathlib import Path

import numpy as np
import pytest
import rioxarray
import xarray as xr

from mtinsar.analysis.gnss import (
    read_gnss_csv,
    read_stations,
    read_tenv3,
    tie_to_gnss,
    write_report,
)
from mtinsar.config import RunConfig
from mtinsar.errors import InputError
from mtinsar.simulate import SceneConfig, simulate_scene
from mtinsar.simulate.gnss import simulate_stations, write_gnss_csv, write_tenv3
from mtinsar.workflows.pipeline import run_sbas

SIGMA = 0.002  # GNSS noise per component [m]
HAWAII = Path(__file__).parents[3] / "shared" / "realdata" / "geepers_hawaii_disp_gnss"
if not HAWAII.is_dir():  # the shared folder sits next to the checkout
    HAWAII = Path("/work/shared/realdata/geepers_hawaii_disp_gnss")


# --------------------------------------------------------------------------- simulated tie


@pytest.fixture(scope="module")
def tied_scene(tmp_path_factory):
    """A scene referenced to a pixel inside the main bowl, and 3 stations written to files.

    The troposphere is off so that the GNSS noise, not the InSAR atmosphere at the three
    station pixels, sets how well the reference motion can be recovered.
    """
    scene = simulate_scene(
        SceneConfig(ny=40, nx=48, n_dates=20, seed=2, turbulence=False, stratified=False)
    )
    truth = scene.truth
    iy, ix = np.unravel_index(np.argmax(np.abs(truth["velocity"].values)), (40, 48))
    cfg = RunConfig.model_validate(
        {"reference": {"lon": float(truth["x"][ix]), "lat": float(truth["y"][iy])}}
    )
    stack = scene.to_ifgstack()
    result = run_sbas(stack, cfg).result
    stations = simulate_stations(scene, [(5, 5), (30, 10), (10, 40)], sigma=SIGMA, seed=1)
    folder = tmp_path_factory.mktemp("gnss")
    paths = [write_gnss_csv(stations[0], folder / "S000.csv")]
    paths += [write_tenv3(s, folder / f"S00{k}.tenv3") for k, s in enumerate(stations[1:], 1)]
    return scene, stack, result, paths


def _offset_rms(result: xr.Dataset, truth: xr.Dataset) -> float:
    """RMS over dates of the median (result - truth) over coherent reliable pixels [m]."""
    ok = truth["coherent"].values & result["mask"].values
    err = result["displacement"].values - truth["displacement"].values
    return float(np.sqrt(np.mean(np.median(err[:, ok], axis=1) ** 2)))


@pytest.mark.parametrize("offset", ["velocity", "per_date"])
def test_tie_removes_the_reference_offset_within_gnss_noise(tied_scene, offset):
    """Acceptance: 3 stations remove the reference pixel's motion to within their noise."""
    scene, stack, result, paths = tied_scene
    before = _offset_rms(result, scene.truth)
    assert before > 10 * SIGMA  # the reference sits in the bowl: cm of offset
    stations = read_stations(paths)
    tied, report = tie_to_gnss(result, stations, geometry=stack, offset=offset, half_window_days=3)
    after = _offset_rms(tied, scene.truth)
    assert after <= SIGMA, (before, after)
    assert list(report["station"].values) == ["S000", "S001", "S002"]
    # agreement at the stations: InSAR decorrelation noise plus the GNSS noise
    assert (report["rms_diff"].values < 3 * SIGMA).all(), report["rms_diff"].values
    assert tied.attrs["reference_method"] == f"gnss ({offset})"
    ok = scene.truth["coherent"].values & tied["mask"].values
    v_err = np.median((tied["velocity"] - scene.truth["velocity"]).values[ok])
    v_before = np.median((result["velocity"] - scene.truth["velocity"]).values[ok])
    assert abs(v_err) < 0.1 * abs(v_before)


def test_report_files(tied_scene, tmp_path):
    _, stack, result, paths = tied_scene
    stations = read_stations(paths)
    _, report = tie_to_gnss(result, stations, geometry=stack, offset="per_date")
    written = write_report(report, tmp_path, stations)
    assert [p.name for p in written] == [
        "gnss_agreement.csv",
        "gnss_S000.png",
        "gnss_S001.png",
        "gnss_S002.png",
    ]
    assert all(p.stat().st_size > 5000 for p in written[1:])
    lines = (tmp_path / "gnss_agreement.csv").read_text().splitlines()
    assert lines[0].startswith("station,") and "rms_diff" in lines[0] and len(lines) == 4
    rms = float(lines[1].split(",")[lines[0].split(",").index("rms_diff")])
    assert rms == pytest.approx(float(report["rms_diff"][0]))


# --------------------------------------------------------------------------- real data


def _hawaii_result() -> xr.Dataset:
    """The 5 displacement GeoTIFFs as a result (first date 2016-07-11 = 0)."""
    files = sorted(HAWAII.glob("displacement_20160711_*.tif"))
    layers = [rioxarray.open_rasterio(f, masked=True).squeeze("band", drop=True) for f in files]
    zero = xr.zeros_like(layers[0]).where(np.isfinite(layers[0]))
    dates = ["2016-07-11"] + [f"{f.stem[-8:-4]}-{f.stem[-4:-2]}-{f.stem[-2:]}" for f in files]
    disp = xr.concat([zero, *layers], dim="time").assign_coords(
        time=np.array(dates, dtype="datetime64[ns]")
    )
    ds = xr.Dataset({"displacement": disp.astype(np.float32)}).rio.write_crs(layers[0].rio.crs)
    ds.attrs["reference_date"] = "2016-07-11"
    return ds


def _hawaii_geometry() -> xr.Dataset:
    los = rioxarray.open_rasterio(HAWAII / "hawaii_los_enu.tif", masked=True)  # 0 = nodata
    bands = {v: los.isel(band=i, drop=True) for i, v in enumerate(("los_e", "los_n", "los_u"))}
    return xr.Dataset(bands).rio.write_crs(los.rio.crs)


@pytest.fixture(scope="module")
def hawaii():
    stations = read_stations(sorted((HAWAII / "unr_tenv3").glob("*.tenv3")))
    return _hawaii_result(), _hawaii_geometry(), stations


def test_tenv3_values_read_as_written():
    """HLNA's first two days, by hand from the file (MJD 50296 = 1996-08-01)."""
    st = read_tenv3(HAWAII / "unr_tenv3" / "HLNA.tenv3")
    assert st.attrs["name"] == "HLNA"
    assert st["time"].values[0] == np.datetime64("1996-08-01")
    assert st.attrs["lat"] == pytest.approx(19.2933, abs=1e-4)
    assert st.attrs["lon"] == pytest.approx(-155.3101, abs=1e-4)
    assert float(st["east"][1]) == pytest.approx(-0.636623 + 0.633032, abs=1e-9)
    assert float(st["north"][1]) == pytest.approx(0.484244 - 0.482174, abs=1e-9)
    assert float(st["up"][1]) == pytest.approx(0.343765 - 0.345777, abs=1e-9)
    assert float(st["sig_up"][0]) == pytest.approx(0.003979)
    assert st.sizes["time"] == 9429  # the README's day count


def test_kilauea_insar_agrees_with_gnss_after_the_tie(hawaii):
    """Real data: the 7 stations the README lists are used (the other 3 start after 2016);
    the tie improves the agreement from about 16 mm to about 5 mm RMS, judged per station
    on a tie to the other six (leave-one-station-out)."""
    result, geometry, stations = hawaii
    assert len(stations) == 10
    _, raw = tie_to_gnss(
        result, stations, geometry=geometry, offset="none", outside="skip", half_window_days=3
    )
    names = sorted(raw["station"].values)
    assert names == ["AHUP", "CNPK", "CRIM", "HLNA", "KOSM", "MANE", "OUTL"]
    # LOS at the stations: unit vectors, looking from the west and up (an ascending track)
    vec = np.stack([raw[v].values for v in ("los_e", "los_n", "los_u")])
    np.testing.assert_allclose(np.linalg.norm(vec, axis=0), 1.0, atol=5e-3)
    assert (raw["los_e"] < -0.6).all() and (raw["los_u"] > 0.7).all()
    rms_raw = float(np.median(raw["rms_diff"]))
    assert rms_raw > 0.012  # the result's own reference point moves: cm of disagreement

    inside = [s for s in stations if s.attrs["name"] in names]
    held_out = []
    for k, st in enumerate(inside):  # each station judged by a tie to the 6 others
        tied, _ = tie_to_gnss(
            result,
            inside[:k] + inside[k + 1 :],
            geometry=geometry,
            offset="per_date",
            half_window_days=3,
        )
        _, one = tie_to_gnss(tied, [st], geometry=geometry, offset="none", half_window_days=3)
        held_out.append((float(one["rms_diff"][0]), float(one["correlation"][0])))
    rms, corr = np.array(held_out).T
    # measured: median 5.4 mm (3.6 .. 14.4 mm; HLNA, on the raster's last row, is worst)
    assert np.median(rms) < 0.007
    assert np.median(rms) < 0.5 * rms_raw
    assert (corr > 0.5).sum() >= 4


# --------------------------------------------------------------------------- bad inputs


def test_malformed_tenv3(tmp_path):
    good = (HAWAII / "unr_tenv3" / "PUHR.tenv3").read_text().splitlines()
    short = tmp_path / "SHRT.tenv3"
    short.write_text("\n".join([*good[:3], " ".join(good[3].split()[:10])]) + "\n")
    with pytest.raises(InputError, match=r"SHRT\.tenv3, line 4: 10 columns"):
        read_tenv3(short)
    text = tmp_path / "TEXT.tenv3"
    text.write_text("\n".join([good[0], good[1].replace("0.0000", "n/a", 1)]) + "\n")
    with pytest.raises(InputError, match=r"TEXT\.tenv3, line 2: a non-numeric"):
        read_tenv3(text)
    empty = tmp_path / "EMPT.tenv3"
    empty.write_text(good[0] + "\n")
    with pytest.raises(InputError, match="no data lines"):
        read_tenv3(empty)


def test_malformed_csv(tmp_path):
    no_up = tmp_path / "a.csv"
    no_up.write_text("date,east,north\n2020-01-01,0,0\n")
    with pytest.raises(InputError, match=r"a\.csv lacks the column\(s\) up"):
        read_gnss_csv(no_up, lon=0, lat=0)
    bad_date = tmp_path / "b.csv"
    bad_date.write_text("date,east,north,up,lon,lat\n01/02/2020,0,0,0,1,2\n")
    with pytest.raises(InputError, match=r"b\.csv, line 2, column 'date'"):
        read_gnss_csv(bad_date)
    no_pos = tmp_path / "c.csv"
    no_pos.write_text("date,east,north,up\n2020-01-01,0,0,0\n")
    with pytest.raises(InputError, match="pass lon= and lat="):
        read_gnss_csv(no_pos)
    with pytest.raises(InputError, match="unknown GNSS file type"):
        read_stations([tmp_path / "d.txt"])


def test_station_outside_the_grid(hawaii):
    result, geometry, stations = hawaii
    moved = stations[0].assign_attrs(name="AWAY", lon=-154.5)  # 80 km east of the raster
    with pytest.raises(InputError, match="station AWAY .* outside the InSAR result"):
        tie_to_gnss(result, [moved, *stations[1:]], geometry=geometry)
    _, report = tie_to_gnss(result, [moved, *stations[1:]], geometry=geometry, outside="skip")
    assert "AWAY" not in report["station"].values and report.sizes["station"] == 6


def test_no_common_dates(hawaii):
    result, geometry, stations = hawaii
    # DVLT, PUHI (2018 on) and PUHR (2023 on) lie inside the raster but have no 2016 data
    late = [s for s in stations if s.attrs["name"] in ("DVLT", "PUHI", "PUHR")]
    with pytest.raises(InputError, match="no GNSS station has at least 2 dates in common"):
        tie_to_gnss(result, late, geometry=geometry)


def test_missing_los(hawaii):
    result, _, stations = hawaii
    with pytest.raises(InputError, match="pass geometry="):
        tie_to_gnss(result, stations[:1], outside="raise")
