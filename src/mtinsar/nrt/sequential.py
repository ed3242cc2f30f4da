"""The exact sequential least-squares step of an NRT update (`mtinsar.nrt.append`), compiled.

One new date, k new pairs from the earlier dates W. The history estimated by the last
inversion is Gaussian with covariance σ²Q, Q = (AᵀA)⁻¹ of the run's pair network with
date 0 fixed (one (n x n) matrix for the scene, `step_gain`). Conditioning it on the new
pairs is the Kalman analysis step (Dalaison & Jolivet 2020, JGR Solid Earth 125,
e2019JB019150; no forecast noise): x_new and x_W are solved jointly with the prior
x_W ~ N(x̂_W, σ²Q_WW), and every other date moves by the regression Q_rW Q_WW⁻¹ δx_W. Per
pixel that is an (|W|+1)² system. Two compiled passes over each block of pixels make the
step: the unwrapping check (pairs' estimates of the new phase 2π·m away from their median
are shifted by that multiple, Yunjun et al. 2019, Comput. Geosci. 133), then the solve,
with no (pairs, pixels) temporaries besides the pairs' phases the step returns.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask.array as da
import numpy as np

from mtinsar.analysis import jit
from mtinsar.nrt.state import as_dask

#: Pixels per task of the compiled step.
_BLOCK_PX = 65536


@dataclass
class NewDate:
    """Sequential estimate of one new date from its pairs.

    displacement: (y, x) [m], NaN where no valid pair. n_pairs: (y, x) valid pairs used.
    cycles_corrected: (y, x) number of pairs shifted by a multiple of 2π.
    corrected_phase: (k, y, x) [rad] each pair's estimate of the new phase, cycles removed.
    history_gain (n, m), history_delta (m, y, x) [m]: the exact step's correction of the
    history is their product (m = 0 when the history is frozen).
    """

    displacement: np.ndarray
    n_pairs: np.ndarray
    cycles_corrected: np.ndarray
    corrected_phase: np.ndarray
    history_gain: np.ndarray | None = None
    history_delta: np.ndarray | None = None

    def correction(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The history's correction as (history_gain, history_delta); None when frozen."""
        if self.history_gain is None or self.history_delta is None:
            return None
        return self.history_gain, self.history_delta


@dataclass
class StepGain:
    """The part of the exact sequential step that depends on the pair network alone.

    dates_w (m,): the earlier dates of the new pairs; j (k,): each pair's index in dates_w;
    prior (m, m) = Q_WW⁻¹; gain (n, m) = Q_rW Q_WW⁻¹, the regression of every date on x_W
    (the history moves by gain @ δx_W); gain_at_reference (m,): the row of the reference
    date when the history is referenced to a date other than 0 (`gain` then holds it still).
    """

    dates_w: np.ndarray
    j: np.ndarray
    prior: np.ndarray
    gain: np.ndarray
    gain_at_reference: np.ndarray | None = None


def step_gain(information: np.ndarray, old_index: np.ndarray) -> StepGain:
    """`StepGain` of new pairs from the dates `old_index` (k,), for a history behind which
    are the pairs of `information` (n, n) (`network_information`): O(n³) once per update,
    no pixel read. Date 0 is held fixed (the series' origin)."""
    n = information.shape[0]
    dates_w, j = np.unique(old_index, return_inverse=True)
    q = np.zeros((n, n))
    q[1:, 1:] = np.linalg.pinv(information[1:, 1:], hermitian=True)
    prior = np.linalg.pinv(q[np.ix_(dates_w, dates_w)], hermitian=True)  # 0 rows at date 0
    gain = q[:, dates_w] @ prior
    if 0 in dates_w:  # date 0 is fixed: it is known exactly, not a prior draw
        gain[:, dates_w == 0] = 0.0
        gain[0] = 0.0
    return StepGain(dates_w=dates_w, j=j.ravel(), prior=prior, gain=gain)


def sequential_update(
    history: np.ndarray,
    information: np.ndarray,
    old_index: np.ndarray,
    unw: np.ndarray,
    to_metres: float,
    weights: np.ndarray | None = None,
    fix_cycles: bool = True,
    date0: np.ndarray | None = None,
) -> NewDate:
    """Exact sequential least-squares step: new date estimated, history's correction found.

    history (n, y, x) [m]: displacement of the existing dates; information (n, n): the
    unit-weight information matrix of the pairs behind it (`network_information`);
    old_index (k,): each new pair's earlier date; unw (k, y, x) [rad] referenced phases;
    weights optional inverse variances; date0 (y, x) [m]: the history's value at date 0
    when it is referenced to another date (the step holds date 0 at zero). The posterior of
    the history is Gaussian with covariance σ²Q, Q = information[1:, 1:]⁻¹ (date 0 fixed).
    Conditioning on the new pairs (Kalman analysis step; Dalaison & Jolivet 2020, eq. 6-8)
    needs only the block of the dates W the new pairs touch: the new date and x_W are
    solved jointly with the prior x_W ~ N(x̂_W, σ²Q_WW), O(k + |W|³) per pixel, and every
    other date moves by the regression Q_rW Q_WW⁻¹ δx_W, O(n |W|). For a pixel whose pairs
    are all valid this equals re-inverting every pair. Returns the new date (relative to
    date 0) with the history's correction as factors, gain = Q_rW Q_WW⁻¹ (n, |W|) and δx_W
    (`corrected_history` adds them); only the paired dates of `history` are read.
    """
    step = step_gain(information, old_index)
    x_w = np.asarray(history)[step.dates_w]
    return sequential_step(step, x_w, unw, to_metres, weights, fix_cycles, date0)


def sequential_step(
    step: StepGain,
    x_w: np.ndarray,
    unw: np.ndarray,
    to_metres: float,
    weights: np.ndarray | None = None,
    fix_cycles: bool = True,
    date0: np.ndarray | None = None,
    threads: int | None = None,
) -> NewDate:
    """`sequential_update` given the history's values x_w (m, y, x) [m] at `step.dates_w`.

    Pairs' weights `weights` (k, y, x) (None: 1) scale the prior by their mean over the
    pixel's valid pairs; `threads` as `jit.over_blocks`.
    """
    shape = x_w.shape[1:]
    m, k = step.dates_w.size, unw.shape[0]
    zero = 0.0 if date0 is None else np.asarray(date0, dtype=np.float64).reshape(-1)
    x_w = np.ascontiguousarray(x_w.reshape(m, -1) - zero, dtype=np.float64)
    unw = np.ascontiguousarray(unw.reshape(k, -1), dtype=np.float64)
    w = np.ones((k, 1)) if weights is None else weights.reshape(k, -1)
    w = np.ascontiguousarray(w, dtype=np.float64)
    npx = x_w.shape[1]
    new, delta = np.empty(npx), np.empty((m, npx))
    n_pairs, cycles = np.empty(npx, dtype=np.int16), np.empty(npx, dtype=np.int16)
    phase = np.empty((k, npx))
    phases, solve = jit.compiled(_new_phases), jit.compiled(_solve_step)
    fixed0 = step.dates_w == 0
    j = step.j.astype(np.int64)

    def task(b: slice) -> None:  # whole arrays and a pixel range: one compiled signature
        lo, hi = b.start, min(b.stop, npx)
        phases(x_w, unw, w, j, to_metres, fix_cycles, lo, hi, n_pairs, cycles, phase)
        solve(x_w, phase, w, j, step.prior, fixed0, to_metres, lo, hi, n_pairs, new, delta)

    jit.over_blocks(task, npx, _BLOCK_PX, threads)
    return NewDate(
        displacement=new.reshape(shape),
        n_pairs=n_pairs.reshape(shape),
        cycles_corrected=cycles.reshape(shape),
        corrected_phase=phase.reshape(k, *shape),
        history_gain=step.gain,
        history_delta=delta.reshape(m, *shape),
    )


def warm_up() -> None:
    """Load the compiled step (numba and its on-disk cache, once per process)."""
    one = StepGain(np.array([1]), np.array([0]), np.ones((1, 1)), np.zeros((2, 1)))
    sequential_step(one, np.zeros((1, 1)), np.zeros((1, 1)), 1.0, threads=1)


def _new_phases(x_w, unw, w, j, to_m, fix, lo, hi, n_pairs, cycles, phase):  # pragma: no cover
    """First pass of `sequential_step` on the pixels lo..hi-1 (numba; arrays pixel-last):
    each pair's estimate of the new phase [rad] into `phase` (NaN: pair not valid), with
    the unwrapping check; the valid pairs and the pairs shifted into `n_pairs`, `cycles`."""
    k = unw.shape[0]
    vals = np.empty(k)
    for p in range(lo, hi):
        n = 0
        for i in range(k):
            ph = x_w[j[i], p] / to_m + unw[i, p]
            wi = w[i, 0] if w.shape[1] == 1 else w[i, p]
            if np.isfinite(ph) and np.isfinite(wi) and wi > 0:
                phase[i, p], vals[n] = ph, ph
                n += 1
            else:
                phase[i, p] = np.nan
        ncyc = 0
        if fix and n >= 3:  # an estimate ~2π·m from the median is an unwrapping error
            for a in range(1, n):  # insertion sort of a few values: no allocation
                v, b = vals[a], a - 1
                while b >= 0 and vals[b] > v:
                    vals[b + 1] = vals[b]
                    b -= 1
                vals[b + 1] = v
            centre = 0.5 * (vals[(n - 1) // 2] + vals[n // 2])
            for i in range(k):
                if np.isfinite(phase[i, p]):
                    c = np.rint((phase[i, p] - centre) / (2 * np.pi))
                    if c != 0:
                        phase[i, p] -= 2 * np.pi * c
                        ncyc += 1
        n_pairs[p], cycles[p] = n, ncyc


def _solve_step(
    x_w, phase, w, j, prior, fixed0, to_m, lo, hi, n_pairs, new, delta
):  # pragma: no cover
    """Second pass of `sequential_step` on the pixels lo..hi-1 (numba; arrays pixel-last):
    the new date and the history's correction at the dates W from the pairs' phases of
    `_new_phases`, by the joint least-squares system of the module docstring."""
    m, k = x_w.shape[0], phase.shape[0]
    hess, rhs, ww = np.empty((m + 1, m + 1)), np.empty(m + 1), np.empty(k)
    for p in range(lo, hi):
        complete = n_pairs[p] > 0
        for a in range(m):
            complete = complete and np.isfinite(x_w[a, p])
        if not complete:
            new[p] = np.nan
            for a in range(m):
                delta[a, p] = 0.0
            continue
        wsum = 0.0
        for i in range(k):  # a pair is valid where it has a phase: its weight, else 0
            ok = np.isfinite(phase[i, p])
            ww[i] = (w[i, 0] if w.shape[1] == 1 else w[i, p]) if ok else 0.0
            wsum += ww[i]
        wbar = wsum / n_pairs[p]
        for a in range(m):  # the prior's information, scaled by the mean pair weight
            s = 0.0
            for b in range(m):
                hess[a, b] = wbar * prior[a, b]
                s += prior[a, b] * x_w[b, p]
            rhs[a] = wbar * s
            hess[a, m], hess[m, a] = 0.0, 0.0
        hess[m, m], rhs[m] = wsum, 0.0
        for i in range(k):  # pair i observes x_new - x[j_i]
            if ww[i] == 0:
                continue
            y = phase[i, p] * to_m - x_w[j[i], p]
            rhs[m] += ww[i] * y
            a = j[i]
            if not fixed0[a]:  # x_0 = 0 is known: the pair observes x_new alone
                rhs[a] -= ww[i] * y
                hess[a, a] += ww[i]
                hess[a, m] -= ww[i]
                hess[m, a] -= ww[i]
        for a in range(m):
            if fixed0[a]:
                hess[a, a] += 1.0
                rhs[a] = 0.0
        # hess u = rhs, u into rhs (Gaussian elimination, partial pivoting)
        for c in range(m + 1):
            piv = c
            for r in range(c + 1, m + 1):
                if abs(hess[r, c]) > abs(hess[piv, c]):
                    piv = r
            if piv != c:
                for q in range(m + 1):
                    hess[c, q], hess[piv, q] = hess[piv, q], hess[c, q]
                rhs[c], rhs[piv] = rhs[piv], rhs[c]
            for r in range(c + 1, m + 1):
                f = hess[r, c] / hess[c, c]
                for q in range(c, m + 1):
                    hess[r, q] -= f * hess[c, q]
                rhs[r] -= f * rhs[c]
        for c in range(m, -1, -1):
            s = rhs[c]
            for q in range(c + 1, m + 1):
                s -= hess[c, q] * rhs[q]
            rhs[c] = s / hess[c, c]
        new[p] = rhs[m]
        for a in range(m):
            delta[a, p] = rhs[a] - x_w[a, p]


def corrected_history(history: np.ndarray | da.Array, est: NewDate) -> np.ndarray | da.Array:
    """`history` (n, y, x) [m] with the exact step's correction gain @ delta added.

    Same dtype; lazy when `history` is a dask array.
    """
    correction = est.correction()
    if correction is None:
        return history
    gain, delta = (part.astype(history.dtype) for part in correction)
    if isinstance(history, da.Array):
        return history + np.tensordot(gain, as_dask(delta), axes=1)
    return history + np.tensordot(gain, delta, axes=1)
