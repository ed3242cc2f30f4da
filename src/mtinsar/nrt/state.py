"""The time-series model of a monitored result as per-pixel normal equations, and the one
pass an update makes over the stored history.

Model update by recursive least squares. The time-series model (`mtinsar.analysis.model`) is kept as
per-pixel normal equations in a fixed parametrisation (time from the first date, so old
rows never change): N = Σ g gᵀ, b = Σ g d, s = Σ d², n (Björck 1996, Numerical Methods for
Least Squares Problems, §3.3, updating the normal equations). A new date adds one row,
O(p²) per pixel; a corrected history adds Gᵀδd and the change of Σ d², O(n p); the solve
is O(p³) with p ≤ ~8 (`solve_state`: one factorisation for the pixels with every date,
which share N, and a compiled Cholesky for each of the others). Each update builds
the state from the stored cube in the pass it makes over it anyway (below): the sums
b = Gᵀd and Σd² ride on the product that gives gainᵀd, and N needs only each pixel's valid
dates, so storing the state would cost more to write and read than to rebuild. Velocity
is reported at mid-span as `fit_model` does: v_mid = v₀ + a·t_mid, and equals `fit_model`
on the updated cube (tested). Network-gap offsets of NSBAS/min-norm runs are not in this
state (they need the pairs); the periodic full re-run (`full_rerun_due`) restores them.

The history pass (`history_pass`). Of the stored displacement cube an update needs only the
dates its new pairs touch (with date 0 and the reference date), the projection gainᵀd of
every pixel's series on the exact step's gain (for the change of Σ d²; the gain depends on
the pair network alone, so it is known before any pixel is read) and the model state. One
pass over the cube's spatial blocks (one dask task a block; a layered version's blocks are
composed as they are read, `versions.open_store`) gives all of them, so an update holds a
few blocks of the history at a time however long the history is.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np

from mtinsar.analysis import jit
from mtinsar.analysis.model import smooth_columns
from mtinsar.config import ModelConfig
from mtinsar.conventions import years_since

#: Cholesky pivot, relative to its diagonal entry, below which a normal matrix is singular.
_RCOND = 1e-10
#: Pixels per task of the compiled solve.
_BLOCK_PX = 65536


@dataclass
class ModelState:
    """Per-pixel normal equations of the time-series model in the fixed parametrisation.

    names (p,); origin: the first date (t = 0); normal (p, p): N of the pixels with every
    date (they share it); gaps (K,): flat indices of the pixels lacking some date, sorted,
    and gap_normal (p, p, K) their N; rhs (p, y, x) [m]; sumsq (y, x) [m²]; count (y, x)
    dates fitted. N is kept per pixel only where it differs: O(p²) memory for a frame
    without gaps, not O(p² pixels).
    """

    names: tuple[str, ...]
    origin: np.datetime64
    normal: np.ndarray
    gaps: np.ndarray
    gap_normal: np.ndarray
    rhs: np.ndarray
    sumsq: np.ndarray
    count: np.ndarray


@dataclass
class Solution:
    """Model solution of a `ModelState`: parameters (p, y, x), the inverse normal matrix
    N⁻¹ (p, p) of the pixels with every date and gap_ninv (p, p, K) of the state's `gaps`
    (NaN where singular), and the residual variance s² on n - p degrees of freedom and
    residual RMS (y, x) [m², m]."""

    params: np.ndarray
    ninv: np.ndarray
    gaps: np.ndarray
    gap_ninv: np.ndarray
    s2: np.ndarray
    rms: np.ndarray


@dataclass
class HistorySums:
    """What an update takes from the history cube (n, y, x) [m], in one pass (`history_pass`).

    rows (k, y, x) [m]: the cube at the requested dates, in its dtype; proj (m, y, x) [m]:
    gainᵀd with missing dates counted as 0 (None without a gain); gaps (K,): flat indices of
    the pixels lacking some date, gap_valid (n, K) bool: their valid dates; state: the
    model state built from the cube.
    """

    rows: np.ndarray
    proj: np.ndarray | None
    gaps: np.ndarray
    gap_valid: np.ndarray
    state: ModelState


def fixed_design(
    dates: np.ndarray, origin: np.datetime64, config: ModelConfig
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Rows (n, p) of the model in the fixed parametrisation, t [yr] since `origin`, and names.

    Columns: offset, velocity (at t = 0), [acceleration (t²/2)], [annual cos/sin],
    [semi-annual cos/sin], [one step per `config.steps`] — `mtinsar.analysis.model.design_matrix`
    without the mid-span centring, so a new date never changes the old rows.
    """
    dates = np.asarray(dates, dtype="datetime64[D]")
    cols, names = smooth_columns(dates, years_since(dates, origin), config)
    for step in config.steps:
        cols.append((dates >= np.datetime64(step, "D")).astype(float))
        names.append(f"step_{step}")
    return np.column_stack(cols), tuple(names)


def build_state(dates: np.ndarray, displacement: np.ndarray, config: ModelConfig) -> ModelState:
    """Normal equations of the model from a displacement cube (n, y, x) [m] (NaN = no date).

    Cost O(n p²) per pixel; `add_date` then adds a date in O(p²).
    """
    dates = np.asarray(dates, dtype="datetime64[D]")
    g, names = fixed_design(dates, dates[0], config)
    n, shape = displacement.shape[0], displacement.shape[1:]
    sums = _series_sums(displacement.reshape(n, -1), g, None)
    return _state(names, dates[0], sums, shape)


def _series_sums(flat: np.ndarray, g: np.ndarray, gain: np.ndarray | None) -> dict[str, Any]:
    """Per-pixel sums of series flat (n, npx) [m] (NaN = no date) for design rows g (n, p)
    and a gain (n, m): normal gᵀg (p, p), rhs = gᵀd (p, npx), sumsq, count, proj = gainᵀd
    (m, npx; None without a gain), and the pixels lacking some date (gaps, gap_valid,
    gap_normal (p, p, K)).

    Missing dates count as 0. The sums come from one compiled pass over the series
    (`_sum_pixels`, float64 accumulators, no temporaries of the series' size).
    """
    n, p = g.shape
    npx = flat.shape[1]
    w = np.ascontiguousarray(g if gain is None else np.hstack([g, gain]), dtype=np.float64)
    projected, sumsq = np.empty((w.shape[1], npx)), np.empty(npx)
    count = np.empty(npx, dtype=np.int32)
    jit.compiled(_sum_pixels)(np.ascontiguousarray(flat), w, projected, sumsq, count)
    gaps = np.flatnonzero(count < n)
    gap_valid = np.isfinite(flat[:, gaps])
    outer = (g[:, :, None] * g[:, None, :]).reshape(n, p * p)
    return {
        "normal": g.T @ g,
        "gap_normal": (outer.T @ gap_valid.astype(np.float64)).reshape(p, p, gaps.size),
        "rhs": projected[:p],
        "proj": None if gain is None else projected[p:],
        "sumsq": sumsq,
        "count": count,
        "gaps": gaps,
        "gap_valid": gap_valid,
    }


def _sum_pixels(flat, w, projected, sumsq, count):  # pragma: no cover
    """Kernel of `_series_sums` (numba): projected = wᵀd, Σd², valid dates, NaN as 0."""
    n, npx = flat.shape
    row = np.empty(npx)
    projected[:] = 0.0
    sumsq[:] = 0.0
    count[:] = 0
    for t in range(n):
        for px in range(npx):
            v = np.float64(flat[t, px])
            ok = np.isfinite(v)
            d = v if ok else 0.0
            row[px] = d
            count[px] += ok
            sumsq[px] += d * d
        for k in range(w.shape[1]):  # pixels innermost: vectorised
            c = w[t, k]
            for px in range(npx):
                projected[k, px] += c * row[px]


def _state(
    names: tuple[str, ...], origin: np.datetime64, sums: dict[str, Any], shape: tuple[int, ...]
) -> ModelState:
    """The `ModelState` of `_series_sums` (or of sums stitched from blocks) on a grid."""
    p = len(names)
    return ModelState(
        names=names,
        origin=origin,
        normal=sums["normal"],
        gaps=sums["gaps"],
        gap_normal=sums["gap_normal"],
        rhs=sums["rhs"].reshape(p, *shape),
        sumsq=sums["sumsq"].reshape(shape),
        count=sums["count"].reshape(shape),
    )


def add_date(state: ModelState, row: np.ndarray, displacement: np.ndarray) -> ModelState:
    """The state with one more date: its design `row` (p,) and `displacement` (y, x) [m].

    Pixels that had every date but lack this one join the gaps with the old N."""
    ok = np.isfinite(displacement)
    d = np.where(ok, displacement, 0.0)
    outer = np.outer(row, row)
    lost = np.setdiff1d(np.flatnonzero(~ok), state.gaps, assume_unique=True)
    gaps = np.concatenate([state.gaps, lost])
    gap_normal = np.concatenate(
        [
            state.gap_normal + outer[:, :, None] * ok.reshape(-1)[state.gaps],
            np.repeat(state.normal[:, :, None], lost.size, axis=2),
        ],
        axis=2,
    )
    order = np.argsort(gaps, kind="stable")
    return ModelState(
        names=state.names,
        origin=state.origin,
        normal=state.normal + outer,
        gaps=gaps[order],
        gap_normal=gap_normal[:, :, order],
        rhs=state.rhs + np.multiply.outer(row, d),
        sumsq=state.sumsq + d**2,
        count=state.count + ok,
    )


def correct_history(
    state: ModelState,
    dates: np.ndarray,
    sums: HistorySums,
    gain: np.ndarray,
    delta: np.ndarray,
    config: ModelConfig,
) -> ModelState:
    """The state after the history moved by c = gain (n, m) @ delta (m, y, x) [m], O(n m) a
    pixel; `sums` from `history_pass` over the history before the move, with this gain.

    rhs gains Gᵀc = (Gᵀgain) δ and Σd² gains 2 δ·(gainᵀd) + δᵀ(gainᵀgain)δ; dates a pixel
    lacks are not in its state, so for such pixels c is masked to their valid dates.
    """
    n, m = gain.shape
    if m == 0:
        return state
    g, _ = fixed_design(dates, state.origin, config)
    p, shape = len(state.names), state.sumsq.shape
    if sums.proj is None:
        raise ValueError("correct_history needs sums from a history_pass with this gain")
    d = delta.reshape(m, -1)
    proj = sums.proj.reshape(m, -1)
    rhs = state.rhs.reshape(p, -1) + (g.T @ gain) @ d
    sumsq = state.sumsq.reshape(-1) + 2 * np.einsum("ij,ij->j", d, proj)
    sumsq += np.einsum("ij,ij->j", d, (gain.T @ gain) @ d)
    if sums.gaps.size:
        k = sums.gaps
        c = np.where(sums.gap_valid, gain @ d[:, k], 0.0)  # (n, K) the move at valid dates
        rhs[:, k] = state.rhs.reshape(p, -1)[:, k] + g.T @ c
        sumsq[k] = (
            state.sumsq.reshape(-1)[k]
            + 2 * np.einsum("ij,ij->j", d[:, k], proj[:, k])
            + np.einsum("ij,ij->j", c, c)
        )
    return ModelState(
        names=state.names,
        origin=state.origin,
        normal=state.normal,
        gaps=state.gaps,
        gap_normal=state.gap_normal,
        rhs=rhs.reshape(p, *shape),
        sumsq=sumsq.reshape(shape),
        count=state.count,
    )


def history_pass(
    cube: Any,
    dates: np.ndarray,
    rows: np.ndarray,
    model: ModelConfig,
    gain: np.ndarray | None = None,
) -> HistorySums:
    """One pass over a history cube (n, y, x) [m] (NumPy or dask): its values at the date
    indices `rows`, the `model`'s state built from it (`build_state`) and gainᵀd for
    `gain` (n, m), one dask task per spatial block."""
    arr = as_dask(cube)
    if arr.numblocks[0] > 1:  # one task sees a pixel's whole series
        arr = arr.rechunk({0: -1})
    n, ny, nx = arr.shape
    dates = np.asarray(dates, dtype="datetime64[D]")
    g, names = fixed_design(dates, dates[0], model)
    rows = np.asarray(rows, dtype=np.int64)
    blocks = arr.to_delayed()[0]
    starts = [np.cumsum((0, *c))[:-1] for c in arr.chunks[1:]]
    parts = dask.compute(
        *(
            dask.delayed(_block_sums)(blocks[i, j], rows, g, gain)
            for i in range(blocks.shape[0])
            for j in range(blocks.shape[1])
        )
    )
    p = len(names)
    out: dict[str, Any] = {
        "rows": np.empty((rows.size, ny, nx), dtype=arr.dtype),
        "proj": None if gain is None else np.empty((gain.shape[1], ny, nx)),
        "rhs": np.empty((p, ny, nx)),
        "sumsq": np.empty((ny, nx)),
        "count": np.empty((ny, nx), dtype=np.int32),
    }
    gaps, gap_valid, gap_normal = [], [], []
    for (i, j), part in zip(np.ndindex(blocks.shape), parts, strict=True):
        y0, x0 = starts[0][i], starts[1][j]
        by, bx = part["rows"].shape[1:]
        window = (slice(y0, y0 + by), slice(x0, x0 + bx))
        for name, values in out.items():
            if values is not None:
                lead = (slice(None),) * (values.ndim - 2)
                values[(*lead, *window)] = part[name].reshape(*values.shape[:-2], by, bx)
        local = part["gaps"]
        gaps.append((y0 + local // bx) * nx + x0 + local % bx)
        gap_valid.append(part["gap_valid"])
        gap_normal.append(part["gap_normal"])
    order = np.argsort(np.concatenate(gaps), kind="stable")
    out["gaps"] = np.concatenate(gaps)[order]
    out["gap_normal"] = np.concatenate(gap_normal, axis=2)[:, :, order]
    out["normal"] = g.T @ g
    return HistorySums(
        rows=out["rows"],
        proj=out["proj"],
        gaps=out["gaps"],
        gap_valid=np.concatenate(gap_valid, axis=1)[:, order],
        state=_state(names, dates[0], out, (ny, nx)),
    )


def _block_sums(
    block: np.ndarray, rows: np.ndarray, g: np.ndarray, gain: np.ndarray | None
) -> dict[str, Any]:
    """`history_pass` on one block (n, by, bx) of the cube."""
    n, shape = block.shape[0], block.shape[1:]
    flat = block.reshape(n, -1)
    out = _series_sums(flat, g, gain)
    out["rows"] = flat[rows].reshape(-1, *shape)
    return out


def solve_state(state: ModelState, threads: int | None = None) -> Solution:
    """Per-pixel least-squares solution of the state's normal equations.

    The pixels with every date share one factorisation; the others (`state.gaps`) are
    solved by a compiled loop (Cholesky factor and inverse of each normal matrix). NaN where
    a pivot falls below `_RCOND` times its diagonal entry (singular: e.g. a step with no
    date after it, or fewer dates than parameters) or no degree of freedom is left.
    `threads` as `jit.over_blocks`.
    """
    p = len(state.names)
    shape = state.rhs.shape[1:]
    rhs = state.rhs.reshape(p, -1)
    count = state.count.reshape(-1).astype(np.int64)
    gaps = state.gaps
    ninv = _solved(state.normal[:, :, None], np.zeros((p, 1)), threads)[1][:, :, 0]
    params = ninv @ rhs  # NaN everywhere when the shared N is singular
    params[:, gaps], gap_ninv = _solved(state.gap_normal, rhs[:, gaps], threads)
    params[:, count <= p] = np.nan
    with np.errstate(invalid="ignore"):
        rss = np.maximum(state.sumsq.reshape(-1) - np.einsum("ij,ij->j", params, rhs), 0.0)
        s2 = np.where(count > p, rss / np.maximum(count - p, 1), np.nan)
        rms = np.where(count > p, np.sqrt(rss / np.maximum(count, 1)), np.nan)
    return Solution(
        params=params.reshape(p, *shape),
        ninv=ninv,
        gaps=gaps,
        gap_ninv=gap_ninv,
        s2=s2.reshape(shape),
        rms=rms.reshape(shape),
    )


def _solved(
    normal: np.ndarray, rhs: np.ndarray, threads: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """(x = N⁻¹ rhs (p, K), N⁻¹ (p, p, K)) of K normal matrices N (p, p, K) and right-hand
    sides (p, K); NaN where singular (`_solve_pixels`)."""
    p, k = rhs.shape
    params, ninv = np.empty((p, k)), np.empty((p, p, k))
    normal = np.ascontiguousarray(normal, dtype=np.float64)
    rhs = np.ascontiguousarray(rhs, dtype=np.float64)
    kernel = jit.compiled(_solve_pixels)

    def task(b: slice) -> None:  # whole arrays and a pixel range: one compiled signature
        kernel(normal, rhs, _RCOND, b.start, min(b.stop, k), params, ninv)

    jit.over_blocks(task, k, _BLOCK_PX, threads)
    return params, ninv


def warm_up() -> None:
    """Load the compiled kernels (numba and its on-disk cache, once per process)."""
    dates = np.datetime64("2020-01-01") + np.arange(3).astype("timedelta64[D]")
    state = build_state(dates, np.zeros((3, 1, 1), dtype=np.float32), ModelConfig())
    solve_state(state, threads=1)


def _solve_pixels(normal, rhs, rcond, lo, hi, params, ninv):  # pragma: no cover
    """Kernel of `_solved` on the matrices lo..hi-1 (numba; arrays pixel-last)."""
    p = rhs.shape[0]
    low, inv = np.zeros((p, p)), np.zeros((p, p))
    for px in range(lo, hi):
        ok = True
        for i in range(p):  # Cholesky: normal = low lowᵀ
            for j in range(i + 1):
                v = normal[i, j, px]
                for k in range(j):
                    v -= low[i, k] * low[j, k]
                if i == j:
                    if not v > rcond * normal[i, i, px]:
                        ok = False
                        v = 1.0
                    low[i, i] = np.sqrt(v)
                else:
                    low[i, j] = v / low[j, j]
        if not ok:
            for i in range(p):
                params[i, px] = np.nan
                for j in range(p):
                    ninv[i, j, px] = np.nan
            continue
        for j in range(p):  # inv = low⁻¹, column by column (forward substitution)
            for i in range(p):
                v = 1.0 if i == j else 0.0
                for k in range(i):
                    v -= low[i, k] * inv[k, j]
                inv[i, j] = v / low[i, i] if i >= j else 0.0
        for i in range(p):  # normal⁻¹ = invᵀ inv; x = normal⁻¹ rhs
            x = 0.0
            for j in range(p):
                v = 0.0
                for k in range(max(i, j), p):
                    v += inv[k, i] * inv[k, j]
                ninv[i, j, px] = v
                x += v * rhs[j, px]
            params[i, px] = x


def mid_span_velocity(
    sol: Solution, names: tuple[str, ...], t_mid: float
) -> tuple[np.ndarray, np.ndarray]:
    """(velocity, formal std) [m/yr] at `t_mid` [yr since the origin], as `fit_model` reports.

    With acceleration a the rate at t_mid is v₀ + a·t_mid; else v₀.
    """
    p = len(names)
    c = np.zeros(p)
    c[names.index("velocity")] = 1.0
    if "acceleration" in names:
        c[names.index("acceleration")] = t_mid
    v = np.einsum("i,i...->...", c, sol.params)
    with np.errstate(invalid="ignore"):
        return v, np.sqrt(quadratic(sol, c) * sol.s2)


def prediction_departure(
    sol: Solution, row: np.ndarray, displacement: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(departure [m], prediction std [m]) of `displacement` (y, x) from the model at `row`.

    σ_pred = s·sqrt(1 + gᵀN⁻¹g): residual noise plus the extrapolated model's uncertainty.
    """
    predicted = np.einsum("i,i...->...", row, sol.params)
    with np.errstate(invalid="ignore"):
        sigma = np.sqrt(sol.s2 * (1.0 + quadratic(sol, row)))
    return displacement - predicted, sigma


def quadratic(sol: Solution, c: np.ndarray) -> np.ndarray:
    """cᵀN⁻¹c of every pixel (y, x) for a vector c (p,) of the model's parameters."""
    out = np.full(sol.s2.shape, c @ sol.ninv @ c)
    out.reshape(-1)[sol.gaps] = np.einsum("i,j,ijk->k", c, c, sol.gap_ninv)
    return out


def as_dask(array: Any) -> da.Array:
    """`array` as a dask array; a NumPy array becomes one block that is the array itself
    (`da.from_array` would copy and hash it: 0.5 s for a medium scene's cube)."""
    if isinstance(array, da.Array):
        return array
    name = f"nrt-{uuid.uuid4().hex}"
    chunks = tuple((n,) for n in array.shape)
    return da.Array({(name, *(0,) * array.ndim): array}, name, chunks, dtype=array.dtype)
