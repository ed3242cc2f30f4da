"""Where and how the chunked computations run: a Dask scheduler chosen by config.

Every per-pixel stage maps a function over spatial blocks of a dask array whose pair/time
axis is whole; which scheduler executes the graph (local threads, local processes, a
`dask.distributed` cluster) is decided here, once, so the stages stay scheduler-agnostic.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import dask
import dask.array as da
import dask.local
import dask.multiprocessing
import dask.threaded
import numpy as np

from mtinsar.config import ExecutionConfig
from mtinsar.errors import ConfigError

#: The local schedulers by their config names.
_LOCAL: dict[str, Callable[..., Any]] = {
    "threads": dask.threaded.get,
    "processes": dask.multiprocessing.get,
    "synchronous": dask.local.get_sync,
}


@contextlib.contextmanager
def executor(config: ExecutionConfig) -> Iterator[None]:
    """Run the enclosed dask computations on the configured scheduler."""
    target = config.scheduler
    if target in _LOCAL:
        # named outright: to choose a scheduler from a name, or a rechunk method, dask
        # asks dask.distributed for a client, importing it (0.3 s in every process)
        local = {"scheduler": _LOCAL[target], "array.rechunk.method": "tasks"}
        with dask.config.set(local, num_workers=config.n_workers):
            yield
        return
    if "://" not in target:
        raise ConfigError(
            f"execution.scheduler = {target!r} is neither 'threads', 'processes', "
            "'synchronous' nor a scheduler address like 'tcp://host:8786'"
        )
    try:
        from distributed import Client
    except ImportError as exc:
        raise ConfigError(
            f"execution.scheduler = {target!r} needs dask.distributed: pip install distributed"
        ) from exc
    try:
        client = Client(target, timeout="10s", set_as_default=False)
    except OSError as exc:
        raise ConfigError(
            f"cannot reach the dask scheduler at {target} ({exc}); start it or fix "
            "execution.scheduler"
        ) from exc
    with client, dask.config.set(scheduler=client):
        yield


def map_pixels(
    func: Callable[..., np.ndarray],
    arrays: list[da.Array],
    n_out: int,
    dtype: Any = np.float32,
    **kwargs: Any,
) -> da.Array:
    """Apply `func(*blocks, **kwargs) -> (n_out, by, bx)` to aligned spatial blocks.

    Each array is (k, y, x) with one chunk along k, or (y, x); all share the y/x chunks of
    the first. The result is (n_out, y, x) with one chunk along its first axis.
    """
    first = arrays[0]
    ychunks, xchunks = first.chunks[-2], first.chunks[-1]
    axes = iter("abcdefghijklmn")  # a distinct name for each array's leading (whole) axis
    args: list[Any] = []
    for arr in arrays:
        arr = arr.rechunk({arr.ndim - 2: ychunks, arr.ndim - 1: xchunks})
        if arr.ndim == 3:
            arr = arr.rechunk({0: -1})
        args += [arr, f"{next(axes)}yx" if arr.ndim == 3 else "yx"]
    return da.blockwise(
        func,
        "oyx",
        *args,
        new_axes={"o": n_out},
        concatenate=True,
        dtype=dtype,
        meta=np.empty((0, 0, 0), dtype=dtype),
        **kwargs,
    )
