"""IfgStack schema: validate, Zarr v3 save/open (exact, space-chunked, atomic), dates."""

import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from affine import Affine

from mtinsar import stack
from mtinsar.errors import InputError

TRANSFORM = Affine(0.001, 0.0, 10.0, 0.0, -0.001, 45.0)
PAIRS = [("20200101", "20200113"), ("20200101", "20200125"), ("20200113", "20200125")]


def make_stack(ny: int = 6, nx: int = 5, pairs=PAIRS, seed: int = 0) -> xr.Dataset:
    """A small valid IfgStack with random values and a few NaNs."""
    rng = np.random.default_rng(seed)
    n = len(pairs)
    unw = rng.normal(size=(n, ny, nx)).astype(np.float32)
    unw[0, 1, 2] = np.nan
    coh = rng.uniform(0.1, 1, size=(n, ny, nx)).astype(np.float32)
    grid2 = {
        name: (("y", "x"), rng.normal(size=(ny, nx)).astype(np.float32))
        for name in ("height", "los_e", "los_n", "los_u", "incidence")
    }
    ds = xr.Dataset(
        {
            "unw": (("pair", "y", "x"), unw),
            "coh": (("pair", "y", "x"), coh),
            "bperp": ("pair", rng.normal(size=n).astype(np.float32)),
            **grid2,
        },
        coords={
            "pair": np.array([f"{a}_{b}" for a, b in pairs]),
            "ref_date": ("pair", np.array([np.datetime64(_iso(a), "ns") for a, _ in pairs])),
            "sec_date": ("pair", np.array([np.datetime64(_iso(b), "ns") for _, b in pairs])),
            "y": TRANSFORM.f + TRANSFORM.e * (np.arange(ny) + 0.5),
            "x": TRANSFORM.c + TRANSFORM.a * (np.arange(nx) + 0.5),
        },
        attrs={
            "wavelength": 0.05546576,
            "platform": "Sentinel-1",
            "orbit_direction": "ascending",
            "track": 5,
            "frame": "005A_01234_131313",
            "processor": "COMET-LiCSAR",
            "source": "/data/frame",
            "multilook": 1,
        },
    )
    return ds.rio.write_crs("EPSG:4326").rio.write_transform(TRANSFORM)


def _iso(ymd: str) -> str:
    return f"{ymd[:4]}-{ymd[4:6]}-{ymd[6:]}"


def rio_transform(ds: xr.Dataset) -> Affine:
    # rioxarray 0.19 multiplies Affines with `*`, which affine 3 flags as pending deprecation.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return ds.rio.transform()


# --------------------------------------------------------------------------- validate


def test_validate_accepts_a_valid_stack():
    ds = make_stack()
    assert stack.validate(ds) is ds


@pytest.mark.parametrize(
    ("breaker", "expected"),
    [
        (lambda ds: ds.drop_vars("coh"), "missing variable 'coh'"),
        (lambda ds: ds.drop_vars(["los_e", "los_n", "los_u"]), "missing geometry"),
        (lambda ds: ds.assign(unw=ds["unw"].astype(np.float64)), "'unw' has dtype float64"),
        (lambda ds: ds.assign(bperp=ds["height"]), "'bperp' has dims ('y', 'x')"),
        (lambda ds: ds.drop_attrs(deep=False), "missing attribute 'wavelength'"),
        (lambda ds: ds.assign_attrs(wavelength=-1.0), "positive number"),
        (lambda ds: ds.drop_vars("spatial_ref"), "missing CRS"),
        (lambda ds: ds.drop_vars("ref_date"), "missing coordinate 'ref_date(pair)'"),
        (lambda ds: ds.isel(y=slice(None, None, -1)), "'y' must be strictly decreasing"),
        (lambda ds: ds.isel(pair=[1, 0, 2]), "not ordered by (ref_date, sec_date)"),
        (lambda ds: ds.isel(pair=[0, 0, 1, 2]), "duplicate pairs"),
    ],
)
def test_validate_names_each_problem(breaker, expected):
    with pytest.raises(InputError) as err:
        stack.validate(breaker(make_stack()), source="my.zarr")
    message = str(err.value)
    assert message.startswith("my.zarr: not a valid interferogram stack")
    assert expected in message
    assert "mtinsar ingest" in message


def test_validate_rejects_ref_not_before_sec_and_bad_labels():
    ds = make_stack()
    ds = ds.assign_coords(sec_date=ds["sec_date"].copy(data=ds["ref_date"].values))
    with pytest.raises(InputError, match="ref_date >= sec_date: 20200101_20200113"):
        stack.validate(ds)
    ds = make_stack().assign_coords(pair=["a", "b", "c"])
    with pytest.raises(InputError, match="labels that do not match"):
        stack.validate(ds)


def test_validate_accepts_azimuth_instead_of_los_vector():
    ds = make_stack().drop_vars(["los_e", "los_n", "los_u"])
    ds["azimuth"] = ds["height"]
    stack.validate(ds)


# --------------------------------------------------------------------------- save / open


def test_save_open_round_trip_is_exact(tmp_path):
    ds = make_stack()
    out = stack.save(ds, tmp_path / "stack.zarr")
    assert out == tmp_path / "stack.zarr"
    opened = stack.open(out)
    assert opened["unw"].chunks is not None  # lazy, dask-backed
    loaded = opened.load()
    xr.testing.assert_identical(loaded, ds)
    assert loaded["pair"].dtype.kind == "U"
    assert loaded["ref_date"].dtype == np.dtype("datetime64[ns]")
    assert all(loaded[v].dtype == np.float32 for v in ds.data_vars)
    assert loaded.attrs == ds.attrs and isinstance(loaded.attrs["track"], int)
    assert opened.rio.crs.to_epsg() == 4326
    assert rio_transform(opened) == TRANSFORM
    assert list(tmp_path.iterdir()) == [out]  # no temporary left behind


def test_round_trip_keeps_sub_day_times(tmp_path):
    ds = make_stack()
    ds = ds.assign_coords(ref_date=ds["ref_date"] + np.timedelta64(5 * 3600 + 7, "s"))
    loaded = stack.open(stack.save(ds, tmp_path / "s.zarr")).load()
    np.testing.assert_array_equal(loaded["ref_date"].values, ds["ref_date"].values)


def test_saved_store_is_chunked_in_space_only(tmp_path):
    ds = make_stack(ny=10, nx=7)
    path = stack.save(ds, tmp_path / "stack.zarr", chunk_size=4)
    group = zarr.open_group(path, mode="r")
    assert group["unw"].chunks == (3, 4, 4)
    assert group["coh"].chunks == (3, 4, 4)
    assert group["height"].chunks == (4, 4)
    assert group["bperp"].chunks == (3,)
    assert group.metadata.zarr_format == 3
    big = stack.save(ds, tmp_path / "big.zarr", chunk_size=256)
    assert zarr.open_group(big, mode="r")["unw"].chunks == (3, 10, 7)


def test_whole_width_bands_are_kept_in_work_and_store(tmp_path):
    # The chunks readers give striped GeoTIFFs (mosaic.layer_chunks): not squared again.
    bands = make_stack(ny=10, nx=7).chunk({"pair": -1, "y": 2, "x": -1})
    assert stack.chunked(bands, chunk_size=4)["unw"].chunks == ((3,), (2,) * 5, (7,))
    group = zarr.open_group(stack.save(bands, tmp_path / "bands.zarr", chunk_size=4), mode="r")
    assert group["unw"].chunks == (3, 2, 7) and group["height"].chunks == (2, 7)
    # Bands larger than chunk_size², or rows narrower than a chunk: squares as ever.
    wide = make_stack(ny=10, nx=7).chunk({"y": 3, "x": -1})
    assert stack.chunked(wide, chunk_size=4)["unw"].chunks[1:] == ((4, 4, 2), (4, 3))
    narrow = make_stack(ny=10, nx=4).chunk({"y": 1, "x": -1})
    assert stack.chunked(narrow, chunk_size=4)["unw"].chunks[1:] == ((4, 4, 2), (4,))


def test_save_replaces_an_existing_store(tmp_path):
    path = tmp_path / "stack.zarr"
    stack.save(make_stack(seed=1), path)
    stack.save(make_stack(seed=2), path, progress=True)
    xr.testing.assert_identical(stack.open(path).load(), make_stack(seed=2))
    assert [p.name for p in tmp_path.iterdir()] == ["stack.zarr"]


def test_failed_save_leaves_previous_store_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "stack.zarr"
    stack.save(make_stack(seed=1), path)
    real_write = stack._write

    def write_then_fail(ds, target, *args, **kwargs):
        real_write(ds, target, *args, **kwargs)  # the temporary store is complete...
        raise RuntimeError("disk full")  # ...and then something fails

    monkeypatch.setattr(stack, "_write", write_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        stack.save(make_stack(seed=2), path)
    assert [p.name for p in tmp_path.iterdir()] == ["stack.zarr"]
    xr.testing.assert_identical(stack.open(path).load(), make_stack(seed=1))


def test_failed_rename_puts_previous_store_back(tmp_path, monkeypatch):
    path = tmp_path / "stack.zarr"
    stack.save(make_stack(seed=1), path)
    real_rename = stack.os.rename

    def rename(src, dst):
        if ".tmp-" in str(src):
            raise OSError("rename failed")
        real_rename(src, dst)

    monkeypatch.setattr(stack.os, "rename", rename)
    with pytest.raises(OSError, match="rename failed"):
        stack.save(make_stack(seed=2), path)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["stack.zarr"]
    xr.testing.assert_identical(stack.open(path).load(), make_stack(seed=1))


def test_save_refuses_to_replace_something_else(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not a stack store"):
        stack.save(make_stack(), folder)
    assert (folder / "notes.txt").read_text() == "keep me"


def test_save_validates_first(tmp_path):
    with pytest.raises(InputError, match="stack to save"):
        stack.save(make_stack().drop_vars("unw"), tmp_path / "s.zarr")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("kind", ["missing", "file", "folder"])
def test_open_non_store_gives_input_error(tmp_path, kind):
    path = tmp_path / "thing"
    if kind == "file":
        path.write_text("x")
    elif kind == "folder":
        path.mkdir()
    with pytest.raises(InputError) as err:
        stack.open(path)
    assert str(path) in str(err.value) and "mtinsar ingest" in str(err.value)


def test_open_foreign_zarr_store_names_it(tmp_path):
    path = tmp_path / "other.zarr"
    xr.Dataset({"a": ("t", np.arange(3.0))}).to_zarr(path, zarr_format=3, consolidated=False)
    with pytest.raises(InputError, match=f"{path}: not a valid interferogram stack"):
        stack.open(path)


# --------------------------------------------------------------------------- dates


def test_dates_sorted_unique_days():
    d = stack.dates(make_stack())
    assert d.dtype == np.dtype("datetime64[D]")
    expected = np.array(["2020-01-01", "2020-01-13", "2020-01-25"], dtype="datetime64[D]")
    np.testing.assert_array_equal(d, expected)


def test_dates_of_opened_store(tmp_path):
    opened = stack.open(stack.save(make_stack(), Path(tmp_path) / "s.zarr"))
    assert len(stack.dates(opened)) == 3
