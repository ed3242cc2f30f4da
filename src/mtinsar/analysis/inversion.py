"""Network inversion of pair phases into date phases (SBAS, min-norm SBAS, NSBAS), batched.

Each pixel's unwrapped pair phases are inverted by (weighted) least squares for the phase at
every date relative to the first, using only that pixel's valid pairs:

- ``sbas``: Berardino et al. 2002 (IEEE TGRS 40(11)) least squares. Pixels whose valid pairs
  do not connect all dates are rank deficient and are reported (`n_components` > 1), not
  filled.
- ``min-norm``: Berardino et al.'s SVD solution. The unknowns are the mean velocities between
  consecutive dates and the minimum-norm solution is taken, so across a gap that no pair
  bridges the velocity is set to zero: continuous, but biased where the ground moves.
- ``nsbas``: Doin et al. 2011 (Fringe 2011, ESA SP-697) / López-Quiroz et al. 2009 (Int. J.
  Appl. Earth Obs. 11(2)). The pair equations are augmented with one equation per date,
  weighted by gamma, tying the series to the linear model ``phi_t = v t + c``. With v and c
  free, the constraint is eliminated in closed form: it adds ``gamma² P`` to the normal
  matrix, P the projector off span{1, t}. Where the pairs connect every date a small gamma
  leaves the SBAS answer nearly unchanged; where they do not, the constraint fixes what the
  pairs leave free (offsets between disconnected groups of dates, dates without any pair),
  so the series is continuous across network gaps. Across a gap the offset then comes from
  the whole series, which is why the linear model is used rather than a smoothness
  (second-difference) constraint: that one takes the offset from the few dates next to the
  gap, and gave 5-10x larger velocity errors on simulated 60-day gaps.

Pair weights are inverse phase variances; `coherence_weights` derives them from coherence
and the number of looks (Tough et al. 1995, Proc. R. Soc. A 449; MintPy's default, Yunjun et
al. 2019, Comput. Geosci. 133).

Speed without a per-pixel Python loop:
- unweighted pixels sharing one valid-pair pattern (most of a coherent scene) are solved
  together with one factorisation per pattern;
- the rest go through per-pixel normal equations. N = AᵀWA is the pixel's weighted
  pair-graph Laplacian with the row and column of date 0 removed. For `sbas` and `nsbas`
  it is built and factorised inside its sparse envelope by a compiled kernel
  (`mtinsar.analysis.envelope`: ~4x fewer entries than dense on a LiCSAR-like network; the NSBAS
  constraint is a diagonal shift plus a rank-2 term); `min-norm` assembles it with one
  sparse product (4 entries per pair) and solves in batches with LAPACK.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
from scipy import sparse
from scipy.special import gammaln, hyp2f1

from mtinsar.analysis import envelope, jax_backend
from mtinsar.analysis.network import Network
from mtinsar.analysis.patterns import pattern_groups

#: Upper bound on the memory of one batch of normal matrices [bytes].
_BATCH_BYTES = 64 * 2**20
#: Relative eigenvalue threshold below which a min-norm direction counts as undetermined.
_MIN_NORM_RCOND = 1e-10
#: Default NSBAS constraint weight, relative to one pair equation of average weight.
NSBAS_GAMMA = 1e-2
#: Coherence cap of the phase-variance model: a coherence of 1 would give infinite weight.
MAX_COHERENCE = 0.999

Method = Literal["sbas", "min-norm", "nsbas"]
VarianceModel = Literal["pdf", "cramer-rao"]
Backend = Literal["numpy", "jax"]


@dataclass
class SbasResult:
    """Per-pixel results of a network inversion; pixel axis last.

    phase: (n_dates, n_pix) rad, phase at each date relative to the first (0 at date 0),
        NaN where not solved.
    temporal_coherence: (n_pix,) 0..1 over the valid pairs (Pepe & Lanari 2006; Yunjun et al.
        2019 eq. 4), NaN where not solved. It cannot see how a gap was bridged.
    n_valid: (n_pix,) number of valid pairs.
    n_components: (n_pix,) connected components of the valid-pair graph (1 = connected; more
        means network gaps, bridged only by `min-norm` and `nsbas`).
    gaps: (n_dates-1, n_pix) bool, intervals (dates[i], dates[i+1]) that no valid pair spans
        (LiCSBAS's network gaps, Morishita et al. 2020): where `min-norm`/`nsbas` bridged the
        series the offset across them is not measured; pass them to `model.fit_model`.
    """

    phase: np.ndarray
    temporal_coherence: np.ndarray
    n_valid: np.ndarray
    n_components: np.ndarray
    gaps: np.ndarray

    @property
    def solved(self) -> np.ndarray:
        """Pixels with an estimate at every date."""
        return np.isfinite(self.phase).all(axis=0)


def invert(
    unw: np.ndarray,
    network: Network,
    method: Method = "sbas",
    weights: np.ndarray | None = None,
    min_group_size: int = 8,
    gamma: float = NSBAS_GAMMA,
    min_valid: int | None = None,
    backend: Backend = "numpy",
) -> SbasResult:
    """Invert pair phases `unw` (n_pairs, n_pix) [rad, NaN = missing] for date phases.

    `method` picks the estimator (module docstring). `weights` (n_pairs, n_pix), optional,
    are inverse variances of the pair phases [rad⁻²] (e.g. from `coherence_weights`); without
    them every valid pair counts equally and pixels sharing a valid-pair pattern are solved
    with one factorisation when at least `min_group_size` share it. `gamma` weighs the NSBAS
    constraint relative to a pair equation of the pixel's mean weight. `min-norm` and
    `nsbas` solve pixels with at least `min_valid` valid pairs (default n_dates - 1, the
    fewest that can connect every date); `sbas` solves connected pixels only. `backend`
    "jax" solves every pixel's normal equations with JAX (`mtinsar.analysis.jax_backend`, e.g. on a
    GPU; not for `min-norm`).
    """
    if backend not in ("numpy", "jax") or (backend == "jax" and method == "min-norm"):
        raise ValueError(f"backend must be 'numpy' or, except for min-norm, 'jax': {backend!r}")
    if unw.ndim != 2 or unw.shape[0] != network.n_pairs:
        raise ValueError(f"unw must be (n_pairs={network.n_pairs}, n_pix), got {unw.shape}")
    if weights is not None and weights.shape != unw.shape:
        raise ValueError(f"weights must have the shape of unw {unw.shape}, got {weights.shape}")
    if method not in ("sbas", "min-norm", "nsbas"):
        raise ValueError(f"method must be 'sbas', 'min-norm' or 'nsbas', got {method!r}")
    if not gamma > 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")
    valid = np.isfinite(unw)
    if weights is not None:
        valid &= np.isfinite(weights) & (weights > 0)
    n_valid = valid.sum(axis=0)
    n_comp = network.n_components(valid)
    gaps = _pixel_gaps(network, valid)
    if method == "sbas":
        todo = np.flatnonzero(n_comp == 1)
    else:
        need = network.n_dates - 1 if min_valid is None else min_valid
        todo = np.flatnonzero(n_valid >= max(need, 1))

    solver = _Solver(network, method, gamma)
    x = np.full((network.n_dates - 1, unw.shape[1]), np.nan)
    line, g = (_line_basis(network)[1:], gamma) if method == "nsbas" else (None, 0.0)
    if backend == "jax":
        x[:, todo] = jax_backend.solve(unw, weights, todo, network, g, line)
    else:
        if weights is None:
            todo = solver.solve_shared_patterns(unw, valid, todo, x, min_group_size)
        if todo.size and method == "min-norm":
            w = np.where(valid[:, todo], 1.0 if weights is None else weights[:, todo], 0.0)
            b = np.where(w > 0, unw[:, todo], 0.0)
            x[:, todo] = solver.solve_min_norm(b, w, n_comp[todo], gaps[:, todo])
        elif todo.size:
            order = envelope.envelope_order(network)
            x[:, todo] = envelope.solve(unw, weights, todo, order, g, line)

    solved = np.isfinite(x).all(axis=0)
    phase = np.concatenate([np.where(solved, 0.0, np.nan)[None], x])
    return SbasResult(
        phase=phase,
        temporal_coherence=temporal_coherence(unw, phase, network, valid),
        n_valid=n_valid,
        n_components=n_comp,
        gaps=gaps,
    )


def _pixel_gaps(network: Network, valid: np.ndarray) -> np.ndarray:
    """(n_dates-1, n_pix) bool: intervals between consecutive dates no valid pair spans."""
    i = np.arange(network.n_dates - 1)[:, None]
    spans = (network.ref[None, :] <= i) & (i < network.sec[None, :])
    return (spans.astype(np.float32) @ valid.astype(np.float32)) == 0


def invert_sbas(
    unw: np.ndarray,
    network: Network,
    weights: np.ndarray | None = None,
    min_group_size: int = 8,
    min_norm: bool = False,
) -> SbasResult:
    """SBAS inversion (Berardino et al. 2002); `min_norm` takes their SVD solution.

    See `invert`. Plain SBAS leaves pixels whose valid pairs split the dates unsolved;
    the min-norm solution bridges such gaps with zero velocity.
    """
    method: Method = "min-norm" if min_norm else "sbas"
    return invert(unw, network, method, weights, min_group_size)


def invert_nsbas(
    unw: np.ndarray,
    network: Network,
    weights: np.ndarray | None = None,
    min_group_size: int = 8,
    gamma: float = NSBAS_GAMMA,
    min_valid: int | None = None,
) -> SbasResult:
    """NSBAS inversion (Doin et al. 2011; López-Quiroz et al. 2009), continuous across gaps.

    See `invert` and the module docstring for the constraint.
    """
    return invert(unw, network, "nsbas", weights, min_group_size, gamma, min_valid)


class _Solver:
    """The per-method algebra of the grouped path and of min-norm's batched path.

    Unknowns are the phases of dates 1..n-1 (date 0 is 0). For `min-norm` they are
    reparametrised as x = T u with u the velocities between consecutive dates, T the
    cumulative sum of the time steps, and the minimum-norm u is taken.
    """

    def __init__(self, network: Network, method: Method, gamma: float):
        self.network, self.method = network, method
        self.a = network.design_matrix()
        m = network.n_dates - 1
        self.reg = np.zeros((m, m))
        if method == "nsbas":
            self.reg = gamma**2 * _linear_constraint(network)
        days = np.diff(network.dates).astype(float)
        self.t = np.tril(np.broadcast_to(days / days.mean(), (m, m)))

    def group_operator(self, rows: np.ndarray) -> np.ndarray:
        """Matrix M with x = M @ unw[rows] for pixels whose valid pairs are `rows`."""
        a = self.a[rows]
        if self.method == "min-norm":
            return self.t @ np.linalg.pinv(a @ self.t, rcond=_MIN_NORM_RCOND)
        if self.method == "nsbas":
            return np.linalg.solve(a.T @ a + self.reg, a.T)
        return np.linalg.pinv(a)

    def solve_shared_patterns(
        self,
        unw: np.ndarray,
        valid: np.ndarray,
        pixels: np.ndarray,
        x: np.ndarray,
        min_group_size: int,
    ) -> np.ndarray:
        """Solve groups of `pixels` sharing a valid-pair pattern; return the pixels left."""
        if pixels.size == 0:
            return pixels
        inverse, counts = pattern_groups(valid[:, pixels])
        for g in np.flatnonzero(counts >= min_group_size):
            members = pixels[inverse == g]
            rows = valid[:, members[0]]
            x[:, members] = self.group_operator(rows) @ unw[np.ix_(rows, members)]
        return pixels[counts[inverse] < min_group_size]

    def solve_min_norm(
        self, b: np.ndarray, w: np.ndarray, n_comp: np.ndarray, gaps: np.ndarray
    ) -> np.ndarray:
        """Min-norm solution of each pixel column; b, w are (n_pairs, n_pix), w = 0 off.

        `n_comp` (n_pix,) and `gaps` (n_dates-1, n_pix) describe each pixel's valid-pair
        graph. Min-norm (velocity unknowns u) needs care only where it is split: when every
        split is a gap, the undetermined u are exactly the gap intervals' (their columns are
        0), so fixing those at 0 on the diagonal gives the minimum-norm solution with one
        linear solve; only other splits (a date whose pairs all jump over it) take the
        slower (~20x) eigen-decomposition.
        """
        m = self.network.n_dates - 1
        assemble = _LaplacianAssembly(self.network)
        a_t = sparse.csr_matrix(self.a.T)
        out = np.empty((m, b.shape[1]))
        step = max(1, _BATCH_BYTES // (8 * m * m))
        for s in range(0, b.shape[1], step):
            sl = slice(s, s + step)
            wb = w[:, sl]
            normal = assemble(wb)
            rhs = (a_t @ (wb * b[:, sl])).T[:, :, None]
            gap = gaps[:, sl].T
            hard = n_comp[sl] - 1 != gap.sum(axis=1)
            normal = self.t.T @ normal @ self.t
            normal[:, np.arange(m), np.arange(m)] += gap
            rhs = self.t.T @ rhs
            if hard.any():
                pinv = np.linalg.pinv(normal[hard], rcond=_MIN_NORM_RCOND, hermitian=True)
                out[:, s + np.flatnonzero(hard)] = (pinv @ rhs[hard])[:, :, 0].T
            if not hard.all():
                x = np.linalg.solve(normal[~hard], rhs[~hard])
                out[:, s + np.flatnonzero(~hard)] = x[:, :, 0].T
        return self.t @ out


class _LaplacianAssembly:
    """AᵀWA of every pixel at once, (n_pix, m, m) with m = n_dates - 1.

    AᵀWA is the weighted Laplacian of the pair graph without date 0's row and column: pair
    (i, j) of weight w adds w at (i, i) and (j, j) and -w at (i, j) and (j, i). Off-diagonal
    cells belong to one pair each (pairs are unique), so they are written directly; the
    diagonal (weighted degree) is one sparse product. Built pixel-major, it needs no
    transpose of an (m², n_pix) array.
    """

    def __init__(self, network: Network) -> None:
        m = network.n_dates - 1
        i, j = network.ref - 1, network.sec - 1
        both = (i >= 0) & (j >= 0)  # date 0 is fixed, not an unknown
        self.m, self.both = m, both
        self.upper, self.lower = (i * m + j)[both], (j * m + i)[both]
        self.diagonal = np.arange(m) * (m + 1)
        k = np.arange(network.n_pairs)
        rows = np.concatenate([i[i >= 0], j[j >= 0]])
        cols = np.concatenate([k[i >= 0], k[j >= 0]])
        self.incidence = sparse.csr_matrix(
            (np.ones(rows.size), (rows, cols)), shape=(m, network.n_pairs)
        )

    def __call__(self, w: np.ndarray) -> np.ndarray:
        """Normal matrices of weights `w` (n_pairs, n_pix)."""
        n_pix = w.shape[1]
        normal = np.zeros((n_pix, self.m * self.m))
        off = -w[self.both].T
        normal[:, self.upper] = off
        normal[:, self.lower] = off
        normal[:, self.diagonal] = (self.incidence @ w).T
        return normal.reshape(n_pix, self.m, self.m)


def _linear_constraint(network: Network) -> np.ndarray:
    """Quadratic form R (m, m) of the NSBAS constraint on date phases 1..n-1 (date 0 = 0).

    R = Sᵀ (I - Q Qᵀ) S with Q an orthonormal basis of span{1, t} and S inserting the fixed
    date 0: xᵀ R x is the squared residual of the best line through the series, i.e. Doin
    et al.'s equations gamma (phi_t - v t - c) = 0 with v and c eliminated.
    """
    q = _line_basis(network)
    return (np.eye(network.n_dates) - q @ q.T)[1:, 1:]


def _line_basis(network: Network) -> np.ndarray:
    """Orthonormal basis (n_dates, 2) of span{1, t} over the dates."""
    days = (network.dates - network.dates[0]).astype(float)
    q, _ = np.linalg.qr(np.column_stack([np.ones(days.size), days / max(days[-1], 1.0)]))
    return q


def temporal_coherence(
    unw: np.ndarray, phase: np.ndarray, network: Network, valid: np.ndarray | None = None
) -> np.ndarray:
    """Temporal coherence |mean_k exp(i·(unw_k - (phase[sec_k] - phase[ref_k])))| over valid pairs.

    1 means the date phases explain every pair exactly; unwrapping errors and noise lower it
    (Pepe & Lanari 2006; Yunjun et al. 2019, eq. 4). Pairs count where `valid` (default:
    where `unw` is finite). NaN where `phase` is NaN.
    """
    # float32 sines are exact enough for a 0..1 statistic of residuals of a few radians,
    # and many times faster than complex float64 exponentials
    p32 = phase.astype(np.float32)
    residual = unw.astype(np.float32)
    residual -= p32[network.sec]
    residual += p32[network.ref]
    ok = np.isfinite(residual)
    if valid is not None:
        ok &= valid
    np.copyto(residual, 0.0, where=~ok)  # cos(0) = 1 is taken off again below
    n = ok.sum(axis=0)
    re = np.cos(residual).sum(axis=0, dtype=np.float64) - (ok.shape[0] - n)
    im = np.sin(residual).sum(axis=0, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        gamma = np.hypot(re, im) / n
    return np.where(np.isfinite(phase).all(axis=0) & (n > 0), gamma, np.nan)


# --------------------------------------------------------------------------- weights


def cramer_rao_variance(coherence: np.ndarray, looks: float) -> np.ndarray:
    """Cramér-Rao bound of the interferometric phase variance [rad²]: (1-g²) / (2 L g²).

    Rodriguez & Martin 1992 (IEE Proc. F 139(2)); tight for many looks and high coherence,
    too small (and unbounded as g -> 0) otherwise.
    """
    g = np.asarray(coherence, dtype=float)
    with np.errstate(divide="ignore"):
        return (1.0 - g**2) / (2.0 * looks * g**2)


def phase_variance(coherence: np.ndarray, looks: int) -> np.ndarray:
    """Variance [rad²] of the multilooked interferometric phase for coherence and looks.

    The second moment over (-pi, pi] of the phase PDF of an L-look interferogram (Lee et
    al. 1994, IEEE TGRS 32(5); Tough et al. 1995, Proc. R. Soc. A 449), tabulated once per L.
    It is pi²/3 (uniform) at coherence 0 and tends to the Cramér-Rao bound at high coherence,
    which is used above coherence 0.99 (scaled to be continuous there). Coherence is capped
    at `MAX_COHERENCE` so that no pair gets an unbounded weight. NaN stays NaN.
    """
    if looks < 1:
        raise ValueError(f"looks must be >= 1, got {looks}")
    grid, log_var = _phase_variance_table(int(looks))
    g = np.clip(np.asarray(coherence, dtype=float), 0.0, MAX_COHERENCE)
    var = np.exp(np.interp(g, grid, log_var))
    top = grid[-1]
    ratio = np.exp(log_var[-1]) / cramer_rao_variance(top, looks)
    with np.errstate(invalid="ignore"):
        high = g > top
    var = np.where(high, ratio * cramer_rao_variance(np.where(high, g, top), looks), var)
    return np.where(np.isfinite(coherence), var, np.nan)


def coherence_weights(
    coherence: np.ndarray, looks: int, model: VarianceModel = "pdf"
) -> np.ndarray:
    """Pair weights [rad⁻²]: inverse phase variance from coherence and looks.

    `model` "pdf" uses `phase_variance` (the weighting of MintPy's default network
    inversion, Yunjun et al. 2019, sect. 2.3); "cramer-rao" uses `cramer_rao_variance` with
    coherence capped at `MAX_COHERENCE`, the noise model of Gaussian phase noise (as in
    `mtinsar.simulate`). NaN coherence gives NaN (the pair is left out).
    """
    if looks < 1:
        raise ValueError(f"looks must be >= 1, got {looks}")
    if model == "pdf":
        return 1.0 / phase_variance(coherence, looks)
    if model == "cramer-rao":
        g = np.minimum(np.asarray(coherence, dtype=float), MAX_COHERENCE)
        with np.errstate(invalid="ignore"):
            positive = g > 0
        w = np.where(positive, 1.0 / cramer_rao_variance(np.where(positive, g, 0.5), looks), 0.0)
        return np.where(np.isnan(g), np.nan, w)
    raise ValueError(f"model must be 'pdf' or 'cramer-rao', got {model!r}")


@lru_cache(maxsize=8)
def _phase_variance_table(looks: int) -> tuple[np.ndarray, np.ndarray]:
    """(coherence grid, log phase variance) for `looks`, by numerical integration."""
    grid = np.linspace(0.0, 0.99, 199)
    phi = np.linspace(0.0, np.pi, 2001)  # the PDF is even: integrate over half the circle
    g, p = grid[:, None], phi[None, :]
    beta = g * np.cos(p)
    one_g, one_b = np.log1p(-(g**2)), np.log1p(-(beta**2))
    # Lee et al. 1994 eq. 7, the 2F1 term rewritten with Pfaff's transformation so that it
    # stays finite for many looks near coherence 1; where it still overflows the Cramér-Rao
    # bound, which it approaches there, stands in
    with np.errstate(all="ignore"):
        first = np.exp(
            gammaln(looks + 0.5) - gammaln(looks) + looks * one_g - (looks + 0.5) * one_b
        )
        first *= beta / (2 * np.sqrt(np.pi))
        second = np.exp(looks * (one_g - one_b)) / (2 * np.pi)
        second *= hyp2f1(looks, -0.5, 0.5, beta**2 / (beta**2 - 1.0))
        var = 2 * np.trapezoid(p**2 * (first + second), phi, axis=1)
        bad = ~np.isfinite(var) | (var <= 0)
        var[bad] = cramer_rao_variance(grid[bad], looks)
    return grid, np.log(var)
