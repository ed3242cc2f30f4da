"""Compiled per-pixel kernels: numba on first use, run on a thread pool over pixel blocks."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache


@cache
def compiled(kernel: Callable) -> Callable:
    """`kernel` compiled by numba (nopython, GIL released, cached on disk).

    numba is imported here, on first use, so that importing mtinsar stays fast.
    """
    import numba

    return numba.njit(nogil=True, cache=True)(kernel)


def over_blocks(task: Callable[[slice], None], n: int, block: int, threads: int | None) -> None:
    """Call `task(slice)` on consecutive blocks of `block` of `n` items, `threads` at a time.

    `threads` None: all cores when called from the main thread, 1 from any other (Dask's
    or a service's worker threads already run one task per core: more would oversubscribe).
    """
    blocks = [slice(s, s + block) for s in range(0, n, block)]
    if threads is None:
        main = threading.current_thread() is threading.main_thread()
        threads = (os.cpu_count() or 1) if main else 1
    if min(threads, len(blocks)) <= 1:
        for b in blocks:
            task(b)
        return
    with ThreadPoolExecutor(min(threads, len(blocks))) as pool:
        list(pool.map(task, blocks))
