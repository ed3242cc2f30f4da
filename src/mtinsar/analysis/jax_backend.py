"""Per-pixel network inversion on an accelerator with JAX (optional backend).

The same normal equations as `mtinsar.analysis.envelope` (weighted pair-graph Laplacian without
date 0; NSBAS adds gamma² · mean weight · (I - U Uᵀ)), but dense and batched: a GPU
factorises thousands of small matrices at once, so sparsity is not worth its branches
there. Runs in float64 on JAX's default device (a GPU when jax is installed with CUDA,
e.g. ``pip install 'jax[cuda12]'``; else the CPU). Selected by ``inversion.backend: jax``.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from mtinsar.analysis.envelope import MIN_PIVOT
from mtinsar.analysis.network import Network
from mtinsar.errors import ConfigError

#: What to do when jax is missing.
MISSING = (
    "inversion.backend 'jax' needs JAX: pip install 'mtinsar[gpu]' (CPU) or "
    "pip install 'jax[cuda12]' (NVIDIA GPU), or set inversion.backend: numpy"
)
#: Pixels per device call; inputs are padded to it so that one compiled program serves all.
BATCH = 8192


def available() -> bool:
    """Whether jax can be imported."""
    try:
        import jax  # noqa: F401
    except ImportError:
        return False
    return True


def require() -> None:
    """Raise ConfigError naming the fix when jax is missing."""
    if not available():
        raise ConfigError(MISSING)


def solve(
    unw: np.ndarray,
    weights: np.ndarray | None,
    pixels: np.ndarray,
    network: Network,
    gamma: float = 0.0,
    line: np.ndarray | None = None,
) -> np.ndarray:
    """Date phases (n_dates - 1, len(pixels)) of the pixel columns `pixels` of `unw` [rad].

    Arguments as `mtinsar.analysis.envelope.solve` (`line` needed when `gamma` > 0); NaN where the
    normal matrix is not positive definite (the valid pairs do not link every date).
    """
    require()
    import jax
    import jax.numpy as jnp

    m = network.n_dates - 1
    out = np.empty((m, pixels.size))
    reg = np.zeros((m, m))
    if gamma > 0:
        if line is None or line.shape != (m, 2):
            raise ValueError(f"gamma > 0 needs line of shape ({m}, 2)")
        reg = gamma**2 * (np.eye(m) - line @ line.T)
    batch = min(BATCH, 1 << max(int(pixels.size - 1).bit_length(), 4))
    with jax.enable_x64(True):
        kernel = _compiled(network.n_dates)
        ref, sec, reg_d = jnp.asarray(network.ref), jnp.asarray(network.sec), jnp.asarray(reg)
        for s in range(0, pixels.size, batch):
            cols = pixels[s : s + batch]
            b = np.zeros((batch, network.n_pairs))
            w = np.zeros((batch, network.n_pairs))
            b[: cols.size] = unw[:, cols].T
            w[: cols.size] = 1.0 if weights is None else weights[:, cols].T
            ok = np.isfinite(b) & np.isfinite(w) & (w > 0)
            b, w = np.where(ok, b, 0.0), np.where(ok, w, 0.0)
            x = kernel(jnp.asarray(b), jnp.asarray(w), ref, sec, reg_d)
            out[:, s : s + cols.size] = np.asarray(x)[: cols.size].T
    return out


@cache
def _compiled(n_dates: int):  # noqa: ANN202
    import jax
    import jax.numpy as jnp

    def kernel(b, w, ref, sec, reg):  # noqa: ANN001, ANN202
        n_pix = b.shape[0]
        normal = jnp.zeros((n_pix, n_dates, n_dates), dtype=b.dtype)
        normal = normal.at[:, ref, ref].add(w).at[:, sec, sec].add(w)
        normal = normal.at[:, ref, sec].add(-w).at[:, sec, ref].add(-w)[:, 1:, 1:]
        wb = w * b
        rhs = jnp.zeros((n_pix, n_dates), dtype=b.dtype).at[:, sec].add(wb).at[:, ref].add(-wb)
        # the NSBAS constraint is relative to a pair of the pixel's mean weight
        mean = w.sum(axis=1) / jnp.maximum((w > 0).sum(axis=1), 1)
        normal = normal + mean[:, None, None] * reg
        factor = jnp.linalg.cholesky(normal)
        # a split graph is singular: rounding may leave it a tiny pivot rather than a NaN
        pivot = jnp.diagonal(factor, axis1=1, axis2=2) ** 2
        ok = (pivot > MIN_PIVOT * jnp.diagonal(normal, axis1=1, axis2=2)).all(axis=1)
        x = jax.scipy.linalg.cho_solve((factor, True), rhs[:, 1:, None])[:, :, 0]
        return jnp.where(ok[:, None], x, jnp.nan)

    return jax.jit(kernel)
