"""The pair graph: dates and pairs as indices, design matrix, per-pixel connectivity."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


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
