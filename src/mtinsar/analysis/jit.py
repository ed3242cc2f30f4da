"""Compiled per-pixel kernels: numba on first use, run on a thread pool over pixel blocks."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache

#: Functions that compiled kernels call, by module (`helper`).
_HELPERS: dict[str, list[Callable]] = {}


def helper(function: Callable) -> Callable:
    """Mark `function` as called from the compiled kernels of its module: `compiled`
    compiles it with them (nopython code can call only compiled functions). Until then it
    stays a plain Python function, so importing its module does not import numba."""
    _HELPERS.setdefault(function.__module__, []).append(function)
    return function


@cache
def compiled(kernel: Callable) -> Callable:
    """`kernel` compiled by numba (nopython, GIL released, cached on disk), together with
    the `helper` functions of its module, which its body calls by their global names.

    numba is imported here, on first use, so that importing mtinsar stays fast.
    """
    import numba

    namespace = kernel.__globals__
    for function in _HELPERS.get(kernel.__module__, []):
        if namespace.get(function.__name__) is function:
            namespace[function.__name__] = numba.njit(nogil=True, cache=True)(function)
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
