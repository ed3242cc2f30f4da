"""Unwrapping-error correction: whole cycles added back to the pairs that lost them.

Two methods after MintPy (Yunjun et al. 2019, Comput. Geosci. 133, 104331):

* phase closure (`closure_cycles`, `correct_closure`): per pixel, the integer closure
  ambiguity K = round(C @ unw / 2 pi) of every loop is explained by integer cycles U per pair,
  K + C @ U = 0, choosing the sparsest U (an unwrapping error is rare: most pairs of a pixel
  are right). Yunjun et al. solve the L1 problem per pixel; here it is solved greedily for all
  pixels of a block at once: each round shifts, at every pixel, the one pair by the one cycle
  that makes the most loops close, until no shift makes `min_improvement` more loops close.
  Pixel-wise, so it runs block by block with no whole-scene statistic; `unw` must be
  referenced (the phase of each pair at a common reference subtracted, see `mtinsar.analysis.qc`).
* bridging (`component_cycles`, `bridge_components`): in a pair unwrapped by connected
  components (`conncomp`), each component may be off by whole cycles from the others. The
  components are linked by a minimum spanning tree of their shortest gaps ("bridges"); along
  each bridge the phase of the far component is shifted by the whole cycles that make it
  continuous with the near one, starting from the component of the reference pixel. This
  needs the whole image of a pair (components cross blocks), one pair at a time: estimate the
  cycles per component once (`component_cycles`), then apply them to any block with
  `apply_component_cycles`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import breadth_first_order, minimum_spanning_tree
from scipy.spatial import cKDTree

from mtinsar.analysis.qc import closure_phase
from mtinsar.config import UnwrapConfig

TWO_PI = 2.0 * np.pi
#: Most pixels with non-closing loops handled at once (bounds the (nnz, pixels) work arrays).
_BATCH = 4096


# --------------------------------------------------------------------------- phase closure


class ClosureCorrection(NamedTuple):
    """Output of `correct_closure`; pixel shapes as the input `unw`.

    unw: corrected phase [rad] (input + 2 pi cycles; NaN kept). cycles: (n_pairs, ...) int16
    whole cycles added. n_unclosed: (...) int16 loops still not closing after correction.
    """

    unw: np.ndarray
    cycles: np.ndarray
    n_unclosed: np.ndarray


def closure_cycles(
    unw: np.ndarray,
    closure: csr_matrix,
    min_improvement: int = 2,
    max_corrections: int = 6,
) -> tuple[np.ndarray, np.ndarray]:
    """Whole cycles per pair and pixel that make the loops close (phase-closure method).

    `unw` (n_pairs, n_pix) or (n_pairs, ny, nx) [rad], referenced; `closure` from
    `Network.closure_matrix`. Returns (cycles (n_pairs, ...) int16, n_unclosed (...) int16):
    add 2 pi * cycles to `unw`; n_unclosed counts loops still off by a cycle or more.
    """
    phase = closure_phase(unw, closure)
    shape = phase.shape[1:]
    phase = phase.reshape(phase.shape[0], int(np.prod(shape)))
    ok = np.isfinite(phase)
    phase[~ok] = 0.0  # closure_phase leaves no other non-finite value than NaN
    k = np.rint(phase / TWO_PI).astype(np.int16)  # |K| stays far below 2**15 cycles
    del phase
    n_pairs = closure.shape[1]
    cycles = np.zeros((n_pairs, k.shape[1]), dtype=np.int16)
    c = closure.tocoo()
    rows, cols, vals = c.row, c.col, c.data.astype(np.int32)
    # sums the per-(loop, pair) gains of each pair
    gather = csr_matrix(
        (np.ones(len(cols)), (cols, np.arange(len(cols)))), shape=(n_pairs, len(cols))
    )
    dense = closure.toarray().astype(np.int32)
    # one shift changes each loop by at most a cycle, so a pixel with fewer non-closing loops
    # than `min_improvement` can gain nothing: skipping it is exact, and most noisy pixels go
    active = np.flatnonzero((k != 0).sum(axis=0) >= min_improvement)
    for start in range(0, active.size, _BATCH):
        pix = active[start : start + _BATCH]
        kb, okb = k[:, pix].astype(np.int32), ok[:, pix]
        ub = np.zeros((n_pairs, pix.size), dtype=np.int16)
        live = np.arange(pix.size)
        for _ in range(max_corrections):
            kl = kb[:, live]
            # the shift of each pair that lowers sum |K| over its loops
            step = -np.sign(np.asarray(closure.T @ kl)).astype(np.int32)
            k_e = kl[rows]
            gain_e = (np.abs(k_e) - np.abs(k_e + vals[:, None] * step[cols])) * okb[rows][:, live]
            gain = np.asarray(gather @ gain_e)
            best = np.argmax(gain, axis=0)
            take = gain[best, np.arange(live.size)] >= min_improvement
            if not take.any():
                break
            who, pair = live[take], best[take]
            shift = step[pair, np.flatnonzero(take)]
            ub[pair, who] += shift.astype(np.int16)
            kb[:, who] += dense[:, pair] * shift
            live = who[(kb[:, who] != 0).any(axis=0)]
            if live.size == 0:
                break
        cycles[:, pix] = ub
        k[:, pix] = kb
    n_unclosed = (k != 0).sum(axis=0).astype(np.int16)
    return cycles.reshape(n_pairs, *shape), n_unclosed.reshape(shape)


def correct_closure(
    unw: np.ndarray, closure: csr_matrix, config: UnwrapConfig | None = None
) -> ClosureCorrection:
    """`unw` [rad] with unwrapping errors corrected by phase closure (see `closure_cycles`).

    Works on one block of pixels, (n_pairs, n_pix) or (n_pairs, ny, nx), referenced; the
    output keeps the input's dtype and NaNs.
    """
    cfg = config or UnwrapConfig()
    cycles, n_unclosed = closure_cycles(unw, closure, cfg.min_improvement, cfg.max_corrections)
    fixed = (np.asarray(unw) + TWO_PI * cycles).astype(np.asarray(unw).dtype, copy=False)
    return ClosureCorrection(fixed, cycles, n_unclosed)


# --------------------------------------------------------------------------- bridging


def component_cycles(
    unw: np.ndarray,
    conncomp: np.ndarray,
    reference: tuple[int, int] | None = None,
    radius: int = 3,
    min_pixels: int = 50,
) -> np.ndarray:
    """Whole cycles to add to each connected component of one pair (bridging method).

    `unw` (ny, nx) [rad] and `conncomp` (ny, nx) labels (<= 0 or NaN: in no component) of one
    pair. The component holding `reference` (row, col) is kept as it is, else the largest.
    Returns (n_labels,) int16 indexed by label (0 for unlabelled, unchanged or too-small
    components) such that unw + 2 pi * cycles[conncomp] is continuous across every bridge.
    """
    labels = np.where(np.isfinite(conncomp), conncomp, 0).astype(np.int64)
    labels[~np.isfinite(unw) | (labels < 0)] = 0
    out = np.zeros(int(labels.max(initial=0)) + 1, dtype=np.int16)
    sizes = np.bincount(labels.ravel(), minlength=out.size)
    comps = [int(lab) for lab in np.flatnonzero(sizes >= min_pixels) if lab > 0]
    if len(comps) < 2:
        return out
    edges = [_edge_pixels(labels == lab) for lab in comps]
    trees = [cKDTree(e) for e in edges]
    n = len(comps)
    dist = np.zeros((n, n))
    ends: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    for a in range(n):
        for b in range(a + 1, n):
            d, j = trees[a].query(edges[b])
            i = int(np.argmin(d))
            dist[a, b] = dist[b, a] = max(float(d[i]), 1e-6)  # 0 would read as "no edge"
            ends[(a, b)] = (edges[a][j[i]], edges[b][i])
            ends[(b, a)] = (edges[b][i], edges[a][j[i]])
    root = _root_component(labels, comps, sizes, reference)
    tree = minimum_spanning_tree(csr_matrix(dist))
    order, parent = breadth_first_order(tree, root, directed=False)
    for node in order[1:]:
        near, far = ends[(int(parent[node]), int(node))]
        near_phase = _window_median(unw, labels, near, comps[parent[node]], radius)
        near_phase += TWO_PI * out[comps[parent[node]]]
        far_phase = _window_median(unw, labels, far, comps[node], radius)
        out[comps[node]] = int(np.rint((near_phase - far_phase) / TWO_PI))
    return out


def _edge_pixels(mask: np.ndarray) -> np.ndarray:
    """(n, 2) row/col of the pixels of `mask` that touch a pixel outside it."""
    edge = mask & ~ndimage.binary_erosion(mask, border_value=0)
    return np.argwhere(edge)


def _root_component(
    labels: np.ndarray, comps: list[int], sizes: np.ndarray, reference: tuple[int, int] | None
) -> int:
    """Index into `comps` of the component kept as it is."""
    if reference is not None:
        lab = labels[reference]
        if lab in comps:
            return comps.index(int(lab))
    return int(np.argmax(sizes[comps]))


def _window_median(
    unw: np.ndarray, labels: np.ndarray, at: np.ndarray, label: int, radius: int
) -> float:
    """Median phase of component `label` in the (2 radius + 1)^2 window around `at`."""
    y, x = int(at[0]), int(at[1])
    ys = slice(max(y - radius, 0), y + radius + 1)
    xs = slice(max(x - radius, 0), x + radius + 1)
    inside = labels[ys, xs] == label
    return float(np.median(unw[ys, xs][inside]))


def apply_component_cycles(unw: np.ndarray, conncomp: np.ndarray, cycles: np.ndarray) -> np.ndarray:
    """Add 2 pi * cycles[pair, label] to a block: `unw`, `conncomp` (n_pairs, ...) alike.

    `cycles` is (n_pairs, n_labels) int, one `component_cycles` row per pair (zero-padded to
    the longest); labels beyond it, <= 0 or NaN are left unchanged.
    """
    unw = np.asarray(unw)
    labels = np.where(np.isfinite(conncomp), conncomp, 0).astype(np.int64)
    labels = np.where((labels > 0) & (labels < cycles.shape[1]), labels, 0)
    table = np.asarray(cycles, dtype=np.int64).copy()
    table[:, 0] = 0
    pair = np.arange(unw.shape[0]).reshape(-1, *([1] * (unw.ndim - 1)))
    return (unw + TWO_PI * table[pair, labels]).astype(unw.dtype, copy=False)


def bridge_components(
    unw: np.ndarray,
    conncomp: np.ndarray,
    reference: tuple[int, int] | None = None,
    config: UnwrapConfig | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Bridge the components of every pair of an in-memory (n_pairs, ny, nx) stack.

    Returns (corrected unw, cycles (n_pairs, n_labels) int16). For a stack larger than
    memory, call `component_cycles` per pair and `apply_component_cycles` per block.
    """
    cfg = config or UnwrapConfig()
    rows = [
        component_cycles(u, c, reference, cfg.bridge_radius, cfg.min_component_pixels)
        for u, c in zip(unw, conncomp, strict=True)
    ]
    table = np.zeros((len(rows), max((len(r) for r in rows), default=1)), dtype=np.int16)
    for k, r in enumerate(rows):
        table[k, : len(r)] = r
    return apply_component_cycles(unw, conncomp, table), table
