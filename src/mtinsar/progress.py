"""Progress bars on the terminal (stderr) for long work: dask task counts through tqdm."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from dask.callbacks import Callback
from tqdm.auto import tqdm


@contextlib.contextmanager
def progress_bar(desc: str, enabled: bool = True) -> Iterator[None]:
    """A tqdm bar (stderr) over the tasks of the dask computations in the block.

    Only local schedulers report tasks through callbacks; on a distributed cluster the
    dashboard shows progress instead.
    """
    if not enabled:
        yield
        return
    bars: list[Any] = []  # made once dask knows the number of tasks

    def start_state(dsk: Any, state: dict[str, Any]) -> None:
        total = sum(len(state[k]) for k in ("ready", "waiting", "running", "finished"))
        bars.append(tqdm(total=total, desc=desc, unit="task"))

    def posttask(key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        if bars:
            bars[-1].update(1)

    def finish(dsk: Any, state: Any, errored: bool) -> None:
        if bars:
            bars[-1].close()

    with Callback(start_state=start_state, posttask=posttask, finish=finish):
        yield
