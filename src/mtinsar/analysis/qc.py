"""Pair quality control and loop-closure screening, built from per-block partial sums.

Pair-level decisions (which interferograms to drop) need statistics over the whole scene, but
the pipeline reads the stack one block of pixels at a time. Every statistic therefore comes in
two halves:

1. a kernel on one block, returning additive counts: `pair_counts` -> `PairCounts` and
   `loop_counts` -> `LoopCounts` (plus per-pixel layers for that block);
2. the counts of all blocks added up (`total = a + b`, or `sum(blocks, start=...)`), then a
   decision on the totals: `pair_table` (coherence / coverage / component rules) and
   `screen_pairs` (unwrapping errors from loop closure).

Closure kernels expect `unw` *referenced*: the phase of each pair at a common reference pixel
(or window) subtracted, so that a closed loop sums to ~0 rad and an unwrapping error to
~2 pi k. Without it the arbitrary constant of each unwrapped pair ends up in every closure.

Methods: per-pair coherence / unwrapped-coverage rules and loop-closure screening after
LiCSBAS (Morishita et al. 2020, Remote Sens. 12(3), 424, steps 11-12); phase closure of
triplets after MintPy (Yunjun et al. 2019, Comput. Geosci. 133, 104331).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr
from scipy.sparse import csr_matrix

from mtinsar.config import QcConfig
from mtinsar.config.analysis import CLOSURE_THRESHOLD
from mtinsar.errors import InputError

# --------------------------------------------------------------------------- helpers


def _as_pixels(a: np.ndarray, name: str) -> tuple[np.ndarray, tuple[int, ...]]:
    """(n_pairs, ...) -> (n_pairs, n_pix) float view and the spatial shape."""
    a = np.asarray(a)
    if a.ndim not in (2, 3):
        raise ValueError(f"{name} must be (n_pairs, n_pix) or (n_pairs, ny, nx), got {a.shape}")
    return a.reshape(a.shape[0], int(np.prod(a.shape[1:]))), a.shape[1:]


def closure_phase(unw: np.ndarray, closure: csr_matrix) -> np.ndarray:
    """Closure phase C @ unw [rad] of every loop at every pixel; NaN where a pair is missing.

    `unw` is (n_pairs, n_pix) or (n_pairs, ny, nx), referenced (module docstring); returns
    (n_loops, ...) with the same pixel shape, float32 (ample for phases of a few hundred
    rad, and half the memory of a block's loops in float64).
    """
    flat, shape = _as_pixels(unw, "unw")
    if flat.shape[0] != closure.shape[1]:
        raise ValueError(f"unw has {flat.shape[0]} pairs, the closure matrix {closure.shape[1]}")
    # A missing pair (NaN) makes every loop through it NaN by itself: the sparse product only
    # adds the loop's own pairs, so no second product is needed to find the missing loops.
    # Non-finite sums (an infinite phase) count as missing too.
    phase = np.asarray(closure @ flat.astype(np.float32), dtype=np.float32)
    phase[~np.isfinite(phase)] = np.nan
    return phase.reshape(closure.shape[0], *shape)


# --------------------------------------------------------------------------- pair statistics


@dataclass
class PairCounts:
    """Additive per-pair statistics of some pixels; add the counts of every block.

    n_pixels: pixels valid in at least one pair (the denominator of the valid fraction).
    n_valid, coh_sum, coh_count: (n_pairs,) valid pixels, sum and count of their coherence.
    component_pixels: (n_pairs, n_labels) pixels per `conncomp` label (label 0 = not
        unwrapped), or None for stacks without `conncomp`.
    """

    n_pixels: int
    n_valid: np.ndarray
    coh_sum: np.ndarray
    coh_count: np.ndarray
    component_pixels: np.ndarray | None = None

    def __add__(self, other: PairCounts) -> PairCounts:
        comp = _add_padded(self.component_pixels, other.component_pixels)
        return PairCounts(
            self.n_pixels + other.n_pixels,
            self.n_valid + other.n_valid,
            self.coh_sum + other.coh_sum,
            self.coh_count + other.coh_count,
            comp,
        )


def _add_padded(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    """Sum of two (n_pairs, n_labels) tables whose label counts may differ."""
    if a is None or b is None:
        return a if b is None else b
    out = np.zeros((a.shape[0], max(a.shape[1], b.shape[1])), dtype=np.int64)
    out[:, : a.shape[1]] += a
    out[:, : b.shape[1]] += b
    return out


def pair_counts(unw: np.ndarray, coh: np.ndarray, conncomp: np.ndarray | None = None) -> PairCounts:
    """Per-pair counts of one block: `unw` [rad], `coh` [0-1], optional `conncomp` labels.

    Arrays are (n_pairs, n_pix) or (n_pairs, ny, nx); NaN marks no data. `conncomp` labels
    <= 0 (or NaN) mean "not in a component" (SNAPHU / HyP3: 0, ARIA: -1 for no data).
    """
    u, _ = _as_pixels(unw, "unw")
    c, _ = _as_pixels(coh, "coh")
    valid = np.isfinite(u)
    ok_coh = valid & np.isfinite(c)
    comp = None
    if conncomp is not None:
        labels, _ = _as_pixels(conncomp, "conncomp")
        labels = np.where(np.isfinite(labels) & valid, labels, 0).astype(np.int64)
        labels = np.maximum(labels, 0)
        n_labels = int(labels.max(initial=0)) + 1
        offset = np.arange(u.shape[0])[:, None] * n_labels
        comp = np.bincount((labels + offset).ravel(), minlength=u.shape[0] * n_labels)
        comp = comp.reshape(u.shape[0], n_labels)
    return PairCounts(
        n_pixels=int(valid.any(axis=0).sum()),
        n_valid=valid.sum(axis=1).astype(np.int64),
        coh_sum=np.where(ok_coh, c, 0.0).sum(axis=1, dtype=np.float64),
        coh_count=ok_coh.sum(axis=1).astype(np.int64),
        component_pixels=comp,
    )


def pair_table(counts: PairCounts, pairs: np.ndarray, config: QcConfig) -> xr.Dataset:
    """Per-pair QC table from whole-scene `counts`: statistics, `keep`, and `reason`.

    `pairs` are the pair labels ("YYYYMMDD_YYYYMMDD"). Variables along `pair`:
    mean_coherence [0-1], valid_fraction [0-1], n_components (-1 without conncomp),
    keep (bool), reason (str, empty when kept; rules joined with "; ").
    """
    pairs = np.asarray(pairs).astype(str)
    n = len(pairs)
    if counts.n_valid.shape != (n,):
        raise ValueError(f"counts are for {counts.n_valid.size} pairs, got {n} pair labels")
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_coh = counts.coh_sum / counts.coh_count
        frac = counts.n_valid / counts.n_pixels if counts.n_pixels else np.zeros(n)
    n_comp = np.full(n, -1, dtype=np.int64)
    if counts.component_pixels is not None:
        big = counts.component_pixels[:, 1:] >= config.min_component_pixels
        n_comp = big.sum(axis=1)
    reasons: list[list[str]] = [[] for _ in range(n)]
    for k in np.flatnonzero(~(mean_coh >= config.min_mean_coherence)):
        reasons[k].append(
            f"mean coherence {mean_coh[k]:.3f} < qc.min_mean_coherence {config.min_mean_coherence}"
        )
    for k in np.flatnonzero(frac < config.min_valid_fraction):
        reasons[k].append(
            f"valid fraction {frac[k]:.3f} < qc.min_valid_fraction {config.min_valid_fraction}"
        )
    if config.max_components is not None and counts.component_pixels is not None:
        for k in np.flatnonzero(n_comp > config.max_components):
            reasons[k].append(
                f"{n_comp[k]} connected components > qc.max_components {config.max_components}"
            )
    reason = np.array(["; ".join(r) for r in reasons], dtype=object).astype(str)
    return xr.Dataset(
        {
            "mean_coherence": ("pair", mean_coh.astype(np.float32)),
            "valid_fraction": ("pair", frac.astype(np.float32)),
            "n_components": ("pair", n_comp),
            "keep": ("pair", reason == ""),
            "reason": ("pair", reason),
        },
        coords={"pair": pairs},
    )


# --------------------------------------------------------------------------- loop closure


@dataclass
class LoopCounts:
    """Additive per-loop closure statistics; add the counts of every block.

    n_valid: (n_loops,) pixels where every pair of the loop is valid.
    n_bad: (n_loops,) of those, pixels with |closure| > threshold.
    sq_sum: (n_loops,) sum of closure^2 over the valid pixels [rad^2] (for the RMS).
    """

    n_valid: np.ndarray
    n_bad: np.ndarray
    sq_sum: np.ndarray

    def __add__(self, other: LoopCounts) -> LoopCounts:
        return LoopCounts(
            self.n_valid + other.n_valid, self.n_bad + other.n_bad, self.sq_sum + other.sq_sum
        )

    @property
    def rms(self) -> np.ndarray:
        """RMS closure phase of each loop [rad] (LiCSBAS's loop-phase statistic)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sqrt(self.sq_sum / self.n_valid)

    @property
    def bad_fraction(self) -> np.ndarray:
        """Fraction of each loop's valid pixels that close badly (0 with no valid pixel)."""
        return self.n_bad / np.maximum(self.n_valid, 1)


@dataclass
class PixelClosure:
    """Per-pixel closure layers of one block (spatial shape of the input).

    n_loops: loops whose pairs are all valid at the pixel.
    n_bad_loops: of those, loops with |closure| > threshold: the loop-closure error count
        noise index (Morishita et al. 2020, "n_loop_err").
    rms: RMS closure phase over the valid loops [rad], NaN with none.
    """

    n_loops: np.ndarray
    n_bad_loops: np.ndarray
    rms: np.ndarray


def loop_counts(
    unw: np.ndarray, closure: csr_matrix, threshold: float = CLOSURE_THRESHOLD
) -> tuple[LoopCounts, PixelClosure]:
    """Closure statistics of one block: per-loop counts (to add up) and per-pixel layers.

    `unw` (n_pairs, n_pix) or (n_pairs, ny, nx) [rad], referenced; `closure` from
    `Network.closure_matrix`; `threshold` [rad] on |closure phase|.
    """
    phase = closure_phase(unw, closure)
    shape = phase.shape[1:]
    flat = phase.reshape(phase.shape[0], int(np.prod(shape)))
    ok = np.isfinite(flat)
    flat[~ok] = 0.0  # missing loops (NaN): 0, neither bad nor in the RMS
    bad = np.abs(flat) > threshold
    sq = np.square(flat, out=flat)
    counts = LoopCounts(
        n_valid=ok.sum(axis=1).astype(np.int64),
        n_bad=bad.sum(axis=1).astype(np.int64),
        sq_sum=sq.sum(axis=1, dtype=np.float64),
    )
    n_ok = ok.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rms = np.sqrt(sq.sum(axis=0, dtype=np.float64) / n_ok)
    pixel = PixelClosure(
        n_loops=n_ok.reshape(shape).astype(np.int16),
        n_bad_loops=bad.sum(axis=0).reshape(shape).astype(np.int16),
        rms=np.where(n_ok > 0, rms, np.nan).reshape(shape).astype(np.float32),
    )
    return counts, pixel


def closure_error_count(
    unw: np.ndarray, closure: csr_matrix, threshold: float = CLOSURE_THRESHOLD
) -> np.ndarray:
    """Number of loops with |closure phase| > `threshold` [rad] at each pixel (int16).

    The loop-closure error count noise index of LiCSBAS (Morishita et al. 2020); ~0 where
    unwrapping is consistent. Same pixel shape as `unw`; `unw` referenced. Equal to
    `loop_counts(...)[1].n_bad_loops` without its other sums: a missing loop (NaN) is not bad.
    """
    with np.errstate(invalid="ignore"):
        bad = np.abs(closure_phase(unw, closure)) > threshold
    return bad.sum(axis=0).astype(np.int16)


@dataclass
class Screening:
    """Result of closure screening; arrays along pairs unless said otherwise.

    bad_loop: (n_loops,) loops judged bad. n_loops / n_bad_loops: judged loops containing
    each pair and how many of them are bad. closure_rms: mean over those loops of their RMS
    closure phase [rad] (NaN with none). flagged: pairs found to carry an unwrapping error.
    checked: pairs in at least one judged loop.
    """

    bad_loop: np.ndarray
    n_loops: np.ndarray
    n_bad_loops: np.ndarray
    closure_rms: np.ndarray
    flagged: np.ndarray
    checked: np.ndarray


def screen_pairs(counts: LoopCounts, closure: csr_matrix, config: QcConfig) -> Screening:
    """Flag the pairs carrying unwrapping errors from whole-scene loop `counts`.

    A loop is bad when more than `max_bad_fraction` of its valid pixels, and at least
    `min_bad_pixels`, close badly. As in LiCSBAS (Morishita et al. 2020, step 12) bad loops
    point at bad pairs; rather than flagging every pair with no good loop, which also catches
    good pairs whose loops all share one bad pair, pairs are flagged greedily: the pair in the
    most bad loops (ties: the largest share of its loops bad) is flagged, its loops are set
    aside as explained, and so on until no bad loop is left.
    """
    member = abs(closure).astype(bool).tocsc()
    judged = counts.n_valid >= config.min_bad_pixels
    bad = (
        judged
        & (counts.bad_fraction > config.max_bad_fraction)
        & (counts.n_bad >= config.min_bad_pixels)
    )
    n_loops = np.asarray(member.T @ judged.astype(np.int64)).ravel()
    n_bad = np.asarray(member.T @ bad.astype(np.int64)).ravel()
    rms_sum = np.asarray(member.T @ np.where(judged, counts.rms, 0.0)).ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        rms = np.where(n_loops > 0, rms_sum / n_loops, np.nan)
    flagged = np.zeros(closure.shape[1], dtype=bool)
    left = bad.copy()
    while left.any():
        in_left = np.asarray(member.T @ left.astype(np.int64)).ravel()
        share = in_left / np.maximum(n_loops, 1)
        best = int(np.lexsort((share, in_left))[-1])
        flagged[best] = True
        left &= ~member[:, best].toarray().ravel()
    return Screening(bad, n_loops, n_bad, rms, flagged, n_loops > 0)


def add_screening(table: xr.Dataset, screening: Screening, config: QcConfig) -> xr.Dataset:
    """The QC `table` with closure columns added and `keep`/`reason` updated per config.

    Adds n_loops, n_bad_loops (int), closure_rms [rad] and unwrap_error (bool, flagged by
    screening). Flagged pairs are dropped when `drop_flagged`, unchecked ones when
    `drop_unchecked`.
    """
    out = table.copy()
    out["n_loops"] = ("pair", screening.n_loops)
    out["n_bad_loops"] = ("pair", screening.n_bad_loops)
    out["closure_rms"] = ("pair", screening.closure_rms.astype(np.float32))
    out["unwrap_error"] = ("pair", screening.flagged)
    reason = [str(r) for r in out["reason"].values]
    rules = []
    if config.drop_flagged:
        rules.append((screening.flagged, "unwrapping error: {b} of {n} loops close badly"))
    if config.drop_unchecked:
        rules.append((~screening.checked, "no loop checks it (qc.drop_unchecked)"))
    for mask, text in rules:
        for k in np.flatnonzero(mask):
            msg = text.format(b=screening.n_bad_loops[k], n=screening.n_loops[k])
            reason[k] = f"{reason[k]}; {msg}" if reason[k] else msg
    out["reason"] = ("pair", np.array(reason, dtype=object).astype(str))
    out["keep"] = ("pair", out["reason"].values == "")
    return out


def require_pairs_left(table: xr.Dataset, source: str = "the stack") -> None:
    """Raise InputError when QC drops every pair (naming the rules to relax)."""
    if not bool(table["keep"].any()):
        first = str(table["reason"].values[0])
        raise InputError(
            f"quality control drops every pair of {source} (e.g. {table['pair'].values[0]}: "
            f"{first}); relax the [qc] thresholds named there"
        )
