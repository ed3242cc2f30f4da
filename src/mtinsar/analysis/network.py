"""The pair graph: dates and pairs as indices, design matrix, connectivity, gaps, closure loops.

Loops follow the phase closure of MintPy (Yunjun et al. 2019, Comput. Geosci. 133, 104331)
and LiCSBAS (Morishita et al. 2020, Remote Sens. 12(3), 424): the unwrapped phases of the
pairs of a closed loop sum to zero up to noise, so a non-zero multiple of 2 pi reveals an
unwrapping error in one of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components, shortest_path


@dataclass(frozen=True)
class Network:
    """Acquisition dates and the pairs linking them, as date indices.

    `ref[k] < sec[k]` index into `dates` (datetime64[D], sorted, unique).
    """

    dates: np.ndarray
    ref: np.ndarray
    sec: np.ndarray

    @classmethod
    def from_pair_dates(cls, ref_dates: np.ndarray, sec_dates: np.ndarray) -> Network:
        """Build from each pair's reference and secondary dates."""
        ref_d = np.asarray(ref_dates, dtype="datetime64[D]")
        sec_d = np.asarray(sec_dates, dtype="datetime64[D]")
        dates = np.unique(np.concatenate([ref_d, sec_d]))
        return cls(dates, np.searchsorted(dates, ref_d), np.searchsorted(dates, sec_d))

    @property
    def n_dates(self) -> int:
        return len(self.dates)

    @property
    def n_pairs(self) -> int:
        return len(self.ref)

    def temporal_baselines(self) -> np.ndarray:
        """Time span of each pair [days]."""
        return (self.dates[self.sec] - self.dates[self.ref]).astype(float)

    def design_matrix(self) -> np.ndarray:
        """Matrix A (n_pairs, n_dates-1) with A @ d = pair differences d[sec] - d[ref].

        Unknowns are the displacements at dates 1..n-1; date 0 is the temporal reference
        (displacement 0), which makes A full rank exactly when the pair graph is connected
        (Berardino et al. 2002 use the equivalent velocity parametrisation).
        """
        a = np.zeros((self.n_pairs, self.n_dates), dtype=float)
        rows = np.arange(self.n_pairs)
        a[rows, self.sec] = 1.0
        a[rows, self.ref] = -1.0
        return a[:, 1:]

    def date_groups(self) -> list[np.ndarray]:
        """Date indices of each connected group of the full pair graph, earliest first."""
        graph = coo_matrix(
            (np.ones(self.n_pairs), (self.ref, self.sec)), shape=(self.n_dates, self.n_dates)
        )
        _, labels = connected_components(graph, directed=False)
        groups = [np.flatnonzero(labels == g) for g in np.unique(labels)]
        return sorted(groups, key=lambda g: g[0])

    def n_components(self, valid: np.ndarray) -> np.ndarray:
        """Number of connected components of each pixel's graph of valid pairs.

        `valid` is (n_pairs, n_pix) bool. A date with no valid pair is a component of its
        own, so 1 means every date is linked to every other. Label propagation, vectorised
        over pixels: each sweep takes the smaller label across every valid pair; at most
        n_dates sweeps are needed.
        """
        n_pix = valid.shape[1]
        labels = np.broadcast_to(np.arange(self.n_dates)[:, None], (self.n_dates, n_pix)).copy()
        for _ in range(self.n_dates):
            changed = False
            for k in range(self.n_pairs):
                i, j, v = self.ref[k], self.sec[k], valid[k]
                low = np.minimum(labels[i], labels[j])
                if np.any(v & ((labels[i] != low) | (labels[j] != low))):
                    changed = True
                    labels[i] = np.where(v, low, labels[i])
                    labels[j] = np.where(v, low, labels[j])
            if not changed:
                break
        # a component is a label that is still its own date index
        return (labels == np.arange(self.n_dates)[:, None]).sum(axis=0)

    # ----------------------------------------------------------------- gaps and redundancy

    def degree(self) -> np.ndarray:
        """Number of pairs that use each date, (n_dates,) int."""
        return np.bincount(np.concatenate([self.ref, self.sec]), minlength=self.n_dates)

    def interval_coverage(self, valid: np.ndarray | None = None) -> np.ndarray:
        """Number of pairs spanning each interval between consecutive dates.

        Interval i runs from dates[i] to dates[i+1]; pair k spans it when ref[k] <= i < sec[k].
        Returns (n_dates-1,) int, or with `valid` (n_pairs, n_pix) bool the count of valid
        spanning pairs per pixel, (n_dates-1, n_pix). 0 marks a gap (Morishita et al. 2020).
        """
        i = np.arange(self.n_dates - 1)
        spans = (self.ref[None, :] <= i[:, None]) & (i[:, None] < self.sec[None, :])
        if valid is None:
            return spans.sum(axis=1)
        return spans.astype(np.int32) @ np.asarray(valid, dtype=np.int32)

    def gaps(self) -> np.ndarray:
        """Indices i of the intervals (dates[i], dates[i+1]) that no pair spans.

        Every such gap splits the network (LiCSBAS "network gaps", Morishita et al. 2020);
        a network can also split without a gap (interleaved pairs), see `date_groups`.
        """
        return np.flatnonzero(self.interval_coverage() == 0)

    def redundancy(self) -> np.ndarray:
        """Number of triplet loops each pair belongs to, (n_pairs,) int.

        0 means closure cannot check the pair; see `closure_matrix(long_loops=...)`.
        """
        return np.bincount(self.triplets().ravel(), minlength=self.n_pairs)

    def n_independent_loops(self) -> int:
        """Cyclomatic number n_pairs - n_dates + n_groups: how many pairs are redundant."""
        return self.n_pairs - self.n_dates + len(self.date_groups())

    # ----------------------------------------------------------------- closure loops

    def triplets(self) -> np.ndarray:
        """Every triplet loop, (n_loops, 3) pair indices [pair(i,j), pair(j,k), pair(i,k)].

        All date triples i < j < k whose three pairs exist, ordered by (i, j, k). The closure
        phase of a loop is unw[ij] + unw[jk] - unw[ik] (Yunjun et al. 2019).
        """
        index = np.full((self.n_dates, self.n_dates), -1, dtype=np.int64)
        index[self.ref, self.sec] = np.arange(self.n_pairs)
        rows = []
        for ik in np.lexsort((self.sec, self.ref)):  # pairs (i, k): search the middle date j
            i, k = self.ref[ik], self.sec[ik]
            ij, jk = index[i, i + 1 : k], index[i + 1 : k, k]
            both = np.flatnonzero((ij >= 0) & (jk >= 0))
            rows += [(ij[m], jk[m], ik) for m in both]
        if not rows:
            return np.zeros((0, 3), dtype=np.int64)
        loops = np.asarray(rows, dtype=np.int64)
        order = np.lexsort((self.sec[loops[:, 1]], self.sec[loops[:, 0]], self.ref[loops[:, 0]]))
        return loops[order]

    def closure_matrix(self, long_loops: int = 0, max_length: int = 12) -> csr_matrix:
        """Sparse closure matrix C (n_loops, n_pairs), entries in {-1, 0, +1}.

        (C @ unw)[l] is the closure phase of loop l. Rows are first every triplet (+1 for
        pairs (i,j) and (j,k), -1 for (i,k)); then, for each pair in no triplet (such as the
        ~1-year pairs of a LiCSAR network), up to `long_loops` longer loops through it, each
        the pair against a shortest path of other pairs from its ref to its sec date (at most
        `max_length` pairs in all), the paths sharing no pair with each other. MintPy and
        LiCSBAS check triplets only; long loops extend the check to the pairs no triplet
        contains.
        """
        loops = self.triplets()
        n_tri = len(loops)
        rows = [np.repeat(np.arange(n_tri), 3)]
        cols = [loops.ravel()]
        vals = [np.tile([1, 1, -1], n_tri)]
        n = n_tri
        if long_loops > 0:
            seen: set[frozenset[int]] = set()  # two uncovered pairs can find the same loop
            for p in np.flatnonzero(self.redundancy() == 0):
                for path in self._disjoint_paths(int(p), long_loops, max_length - 1):
                    key = frozenset(path[:, 0].tolist() + [int(p)])
                    if key in seen:
                        continue
                    seen.add(key)
                    signs = np.where(self.ref[path[:, 0]] == path[:, 1], 1, -1)
                    rows.append(np.full(len(path) + 1, n))
                    cols.append(np.concatenate([path[:, 0], [p]]))
                    vals.append(np.concatenate([signs, [-1]]))
                    n += 1
        return csr_matrix(
            (np.concatenate(vals).astype(np.int8), (np.concatenate(rows), np.concatenate(cols))),
            shape=(n, self.n_pairs),
        )

    def _disjoint_paths(self, pair: int, n_paths: int, max_pairs: int) -> list[np.ndarray]:
        """Shortest paths ref -> sec of `pair` through other pairs, sharing no pair.

        Each path is (n_steps, 2): the pair index and the date the step leaves from, in order.
        """
        usable = np.ones(self.n_pairs, dtype=bool)
        usable[pair] = False
        start, end = self.ref[pair], self.sec[pair]
        paths = []
        for _ in range(n_paths):
            k = np.flatnonzero(usable)
            graph = coo_matrix(
                (np.ones(len(k)), (self.ref[k], self.sec[k])), shape=(self.n_dates, self.n_dates)
            ).tocsr()
            dist, pred = shortest_path(
                graph, directed=False, unweighted=True, indices=start, return_predecessors=True
            )
            if not np.isfinite(dist[end]) or dist[end] > max_pairs:
                break
            steps = []
            node = end
            while node != start:
                prev = pred[node]
                a, b = min(prev, node), max(prev, node)
                cand = k[(self.ref[k] == a) & (self.sec[k] == b)]
                steps.append((cand[0], prev))
                node = prev
            path = np.asarray(steps[::-1], dtype=np.int64)
            usable[path[:, 0]] = False
            paths.append(path)
        return paths

    def summary(self) -> dict[str, object]:
        """Plain-type facts about the network for run summaries and reports."""
        gaps = self.gaps()
        return {
            "n_dates": self.n_dates,
            "n_pairs": self.n_pairs,
            "n_groups": len(self.date_groups()),
            "gaps": [f"{self.dates[i]}..{self.dates[i + 1]}" for i in gaps],
            "n_triplets": len(self.triplets()),
            "n_independent_loops": self.n_independent_loops(),
            "min_pairs_per_date": int(self.degree().min()) if self.n_dates else 0,
            "n_pairs_in_no_triplet": int((self.redundancy() == 0).sum()),
        }
