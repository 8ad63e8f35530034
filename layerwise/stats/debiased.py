"""Debiased linear CKA: the unbiased HSIC of Song et al. (2012) in feature space, and the per-frame sums it needs.

Linear CKA's HSIC (``‖X̃ᵀỸ‖²_F``, X̃ centred) is biased upwards by about ``D/(n + D)`` for independent features of
D dimensions over n rows. The unbiased estimator (Song et al. 2012, with the diagonals of the Gram matrices
K = X̃X̃ᵀ, L = ỸỸᵀ zeroed) is, in feature space (Kornblith et al. 2019, ``feature_space_linear_cka(...,
debiased=True)``, google-research ``representation_similarity``)::

    n(n−3)·HSIC_u = ‖X̃ᵀỸ‖²_F − n/(n−2)·Σ_t ‖x̃_t‖²‖ỹ_t‖² + ‖X̃‖²_F·‖Ỹ‖²_F / ((n−1)(n−2))

and debiased CKA = HSIC_u(X, Y) / sqrt(HSIC_u(X, X)·HSIC_u(Y, Y)): the n(n−3) cancels. Beyond the comoments a stream
already keeps, this needs ``S4 = Σ_t ‖x̃_t‖²‖ỹ_t‖²`` per pair of layers, over rows centred on the *final* mean.

While streaming that mean is unknown, so the sums are kept about a reference point r (u_t = x_t − r):
``quartic[a, b] = Σ_t p_t(a)·p_t(b)`` with ``p_t(a) = ‖u_t,a‖²`` (L, L), ``cubic[a] = Σ_t p_t(a)·u_t`` (L, N), next
to ``trace[a] = Σ_t p_t(a)``, ``shift = Σ_t u_t`` and ``W = Σ_t u_t u_tᵀ``. Moving the reference by δ
(u' = u − δ, g_t(a) = u_t,a·δ_a, α_a = ‖δ_a‖²) expands exactly (:func:`shift_sums`)::

    p'(a) = p(a) − 2·g(a) + α_a
    quartic'[a,b] = quartic[a,b] − 2Σp(a)g(b) − 2Σg(a)p(b) + 4·δ_aᵀW_ab δ_b + Q_a α_b + α_a Q_b
                    − 2α_b Σg(a) − 2α_a Σg(b) + n·α_a α_b
    cubic'[a] = cubic[a] − 2·δ_aᵀW_{a,:} + α_a·shift − δ·(Q_a − 2Σg(a) + n·α_a)

with ``Σp(a)g(b) = cubic[a, b-slice]·δ_b`` and ``Σg(a) = shift_a·δ_a``. Centring is the shift to the mean; a merge
is the shift of one state to the other's reference. numpy only.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np

MIN_FRAMES_DEBIASED = 4  # the unbiased HSIC's normaliser 1/(n(n−3)) needs n ≥ 4 rows


def debiased_hsic(cross_sq, quartic, trace_x, trace_y, n: int):
    """n(n−3)·HSIC_u from feature-space sums (Kornblith et al.'s ``_debiased_dot_product_similarity_helper``).

    cross_sq : ‖X̃ᵀỸ‖²_F; quartic : Σ_t ‖x̃_t‖²‖ỹ_t‖²; trace_x, trace_y : ‖X̃‖²_F, ‖Ỹ‖²_F; arrays broadcast.
    """
    return cross_sq - n / (n - 2.0) * quartic + trace_x * trace_y / ((n - 1.0) * (n - 2.0))


def debiased_cka(cross_sq: np.ndarray, quartic: np.ndarray, trace_x: np.ndarray, trace_y: np.ndarray,
                 self_x: tuple[np.ndarray, np.ndarray], self_y: tuple[np.ndarray, np.ndarray], n: int) -> np.ndarray:
    """Debiased CKA of every layer of X (rows) with every layer of Y (columns), (L, M) float64.

    cross_sq, quartic : (L, M) ‖X̃_iᵀỸ_j‖²_F and Σ_t ‖x̃_t,i‖²‖ỹ_t,j‖²; trace_x (L,), trace_y (M,) : ‖X̃_i‖²_F;
    self_x, self_y : (‖X̃_iᵀX̃_i‖²_F, Σ_t ‖x̃_t,i‖⁴), each (L,) / (M,). NaN where n < ``MIN_FRAMES_DEBIASED`` or a
    layer's unbiased self-HSIC is not positive (a constant layer; too few rows for its dimension).
    """
    shape = (len(trace_x), len(trace_y))
    if n < MIN_FRAMES_DEBIASED:
        return np.full(shape, np.nan)
    hx = debiased_hsic(self_x[0], self_x[1], trace_x, trace_x, n)
    hy = debiased_hsic(self_y[0], self_y[1], trace_y, trace_y, n)
    hxy = debiased_hsic(cross_sq, quartic, trace_x[:, None], trace_y[None, :], n)
    denom = np.sqrt(np.clip(np.outer(hx, hy), 0.0, None))
    ok = (hx[:, None] > 0) & (hy[None, :] > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, hxy / np.where(ok, denom, 1.0), np.nan)


def slice_sums(matrix: np.ndarray, delta: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(L, L): entry [a, b] = matrix[a, b-slice]·δ_b for matrix (L, N), δ (N,), layer b at offsets[b]:offsets[b+1]."""
    return np.add.reduceat(matrix * delta, offsets[:-1], axis=1)


def shift_sums(quartic: np.ndarray, cubic: np.ndarray, trace: np.ndarray, shift: np.ndarray, n: int,
               delta: np.ndarray, w_delta: np.ndarray, offsets: np.ndarray):
    """The sums about a reference moved by ``delta``: (quartic' (L, L), cubic' (L, N), trace' (L,)), new arrays.

    quartic (L, L), cubic (L, N), trace (L,), shift (N,) : sums about the old reference over n rows; delta (N,) :
    new reference − old; w_delta (L, N) : row a is δ_aᵀ·W_{a,:} (W = Σ_t u_t u_tᵀ about the old reference; NaN in
    blocks that are not kept, which then make only the quartic/cubic entries that need them NaN); offsets (L+1,).
    """
    starts = offsets[:-1]
    alpha = np.add.reduceat(delta * delta, starts)  # ‖δ_a‖², (L,)
    sum_g = np.add.reduceat(shift * delta, starts)  # Σ_t g_t(a), (L,)
    pg = slice_sums(cubic, delta, offsets)  # Σ_t p_t(a)·g_t(b), (L, L)
    gg = slice_sums(w_delta, delta, offsets)  # Σ_t g_t(a)·g_t(b) = δ_aᵀ W_ab δ_b
    quartic = (quartic - 2.0 * (pg + pg.T) + 4.0 * gg + np.outer(trace, alpha) + np.outer(alpha, trace)
               - 2.0 * (np.outer(sum_g, alpha) + np.outer(alpha, sum_g)) + n * np.outer(alpha, alpha))
    new_trace = trace - 2.0 * sum_g + n * alpha
    cubic = cubic - 2.0 * w_delta + np.outer(alpha, shift) - np.outer(new_trace, delta)
    return quartic, cubic, new_trace


def row_sums(rows: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """p_t per layer: (T, L) squared norms of each layer's slice of rows (T, N)."""
    return np.stack([np.einsum("ij,ij->i", rows[:, a:b], rows[:, a:b]) for a, b in pairwise(offsets)], axis=1)
