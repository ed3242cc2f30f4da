"""Pixels grouped by a shared boolean pattern (their valid pairs, or valid dates)."""

from __future__ import annotations

import numpy as np


def pattern_groups(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group the columns (pixels) of `mask` (k, n) bool by identical pattern.

    Returns (inverse (n,), counts (n_groups,)): the group of each column and each group's
    size; groups are ordered by pattern, so the grouping does not depend on pixel order.
    """
    packed = np.ascontiguousarray(np.packbits(mask, axis=0).T)  # one row of bytes a pixel
    # each pixel's bytes as one opaque item: sorting those compares whole rows at once,
    # ~6x faster than np.unique(axis=0) with its one field per byte (same groups, same order)
    rows = packed.view(np.dtype((np.void, packed.shape[1]))).ravel()
    _, inverse, counts = np.unique(rows, return_inverse=True, return_counts=True)
    return inverse.ravel(), counts
