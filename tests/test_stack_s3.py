"""Stack stores on object storage: `stack.save`/`stack.open` with `s3://` URLs.

Against a real S3-compatible server (moto's server mode) on loopback; the stacks are
simulator scenes, so a round trip is checked value for value against the scene.
"""

import time

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from mtinsar import stack
from mtinsar.config import StorageConfig
from mtinsar.errors import InputError
from mtinsar.simulate import SceneConfig, simulate_scene
from mtinsar.sources import remote
from sources.s3_server import closed_port, make_bucket, moto_s3

BUCKET = "stacks"


@pytest.fixture
def s3(monkeypatch):
    with moto_s3(monkeypatch) as server:
        make_bucket(server, BUCKET)
        yield server


@pytest.fixture(scope="module")
def scene_stack() -> xr.Dataset:
    return simulate_scene(SceneConfig(ny=24, nx=20, n_dates=6, seed=11)).to_ifgstack()


def _keys(prefix: str = BUCKET) -> list[str]:
    return sorted(remote.filesystem(f"s3://{prefix}").find(prefix))


def test_round_trip_on_s3_equals_scene(s3, scene_stack):
    url = stack.save(scene_stack, f"s3://{BUCKET}/run/stack.zarr", chunk_size=8)
    assert url == f"s3://{BUCKET}/run/stack.zarr"
    opened = stack.open(url)
    assert isinstance(opened["unw"].data, da.Array)  # lazy: read from the bucket on demand
    assert opened["unw"].data.chunksize == (scene_stack.sizes["pair"], 8, 8)
    xr.testing.assert_identical(opened.load(), scene_stack)
    # Only the store itself is left in the bucket (the temporary prefix is gone).
    assert all(k.startswith(f"{BUCKET}/run/stack.zarr/") for k in _keys())


def test_overwrite_replaces_the_store(s3, scene_stack):
    url = f"s3://{BUCKET}/stack.zarr"
    stack.save(scene_stack, url)
    changed = scene_stack.copy()
    changed["unw"] = changed["unw"] + np.float32(1.0)
    stack.save(changed, url)
    opened = stack.open(url).load()
    np.testing.assert_array_equal(opened["unw"].values, changed["unw"].values)


def _failing(ds: xr.Dataset, name: str) -> xr.Dataset:
    """`ds` whose variable `name` raises when its pixels are computed (a failed read)."""

    def explode(block: np.ndarray) -> np.ndarray:
        raise RuntimeError("disk on fire")

    data = da.from_array(ds[name].values, chunks=(-1, 8, 8)).map_blocks(explode, dtype=np.float32)
    return ds.assign({name: ds[name].copy(data=data)})


def test_failed_write_leaves_old_store_and_no_partial_objects(s3, scene_stack):
    url = f"s3://{BUCKET}/stack.zarr"
    stack.save(scene_stack, url)
    before = _keys()
    broken = _failing(scene_stack, "coh")
    with pytest.raises(RuntimeError, match="disk on fire"):
        stack.save(broken, url, chunk_size=8)
    assert _keys() == before  # no temporary prefix, old store untouched
    xr.testing.assert_identical(stack.open(url).load(), scene_stack)


def test_failed_first_write_leaves_nothing(s3, scene_stack):
    with pytest.raises(RuntimeError, match="disk on fire"):
        stack.save(_failing(scene_stack, "unw"), f"s3://{BUCKET}/new.zarr", chunk_size=8)
    assert _keys() == []


def test_store_without_root_metadata_is_refused(s3, scene_stack):
    """What a write killed before its last step leaves: every object but the root zarr.json."""
    url = stack.save(scene_stack, f"s3://{BUCKET}/killed.zarr")
    remote.filesystem(url).rm(f"{BUCKET}/killed.zarr/zarr.json")
    with pytest.raises(InputError, match=r"s3://stacks/killed\.zarr: not a stack store"):
        stack.open(url)


def test_open_missing_store_names_url(s3):
    with pytest.raises(InputError, match=r"s3://stacks/nothing\.zarr: no such stack store"):
        stack.open(f"s3://{BUCKET}/nothing.zarr")


def test_save_refuses_to_replace_a_non_store(s3, scene_stack):
    remote.filesystem("s3://x").pipe(f"{BUCKET}/data/readme.txt", b"keep me")
    with pytest.raises(InputError, match=r"s3://stacks/data: exists and is not a stack store"):
        stack.save(scene_stack, f"s3://{BUCKET}/data")
    assert _keys() == [f"{BUCKET}/data/readme.txt"]


@pytest.mark.parametrize("action", ["save", "open"])
def test_unreachable_endpoint_retries_then_names_url(monkeypatch, scene_stack, action):
    endpoint = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setattr(remote, "_active", StorageConfig(retries=3, backoff_s=0.2))
    url = f"s3://{BUCKET}/stack.zarr"
    start = time.monotonic()
    with pytest.raises(InputError) as info:
        if action == "save":
            stack.save(scene_stack, url)
        else:
            stack.open(url)
    elapsed = time.monotonic() - start
    message = str(info.value)
    assert message.startswith(f"{url}: unreachable at endpoint {endpoint} after 3 attempts")
    assert "storage.endpoint_url" in message
    assert elapsed >= 0.2 + 0.4  # two waits with exponential backoff between three attempts
