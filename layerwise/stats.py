"""Mergeable running statistics of per-layer frame features: moments, linear CKA, uncentered cosine.

Everything is accumulated in float64 over real frames only (a caller with padded batches passes ``lengths``).
The state does not grow with the number of frames:

- ``n`` : number of frames seen.
- ``mean`` : per-dimension mean of the concatenated layers, shape (N,), N = sum of the selected layers' dims.
- ``comoment`` : centred cross-product matrix ``M = Xcᵀ Xc`` of the concatenated features, shape (N, N), where
  ``X = [X_0 | X_1 | ...]`` is (n_frames, N) and ``Xc = X − 1·meanᵀ``. Its (l, m) block is ``Xc_lᵀ Xc_m``; only the
  upper triangle is kept (the matrix is symmetric), so ``Xc_lᵀ Xc_m = XᵀY − n·μxμyᵀ`` is available for every pair.

Sum and sum of squares are not stored as such: ``sum = n·mean`` and ``sumsq_d = M_dd + n·mean_d²``. Centred storage
with the pairwise update of Chan, Golub & LeVeque (1979) avoids the catastrophic cancellation of ``XᵀY − n·μxμyᵀ``
in floating point when means are large compared with standard deviations (HuBERT has such outlier dimensions):

    merge (n_a, μ_a, M_a) with (n_b, μ_b, M_b):  δ = μ_b − μ_a,  n = n_a + n_b,
    μ = μ_a + δ·n_b/n,   M = M_a + M_b + (n_a·n_b/n)·δδᵀ        (exact; one symmetric rank-1 update)

A file is merged by centring it on its own mean and adding ``Xc_fᵀXc_f`` in place with BLAS ``dsyrk``.

Memory: ``8·N²`` bytes for ``M`` (Fortran order; only the upper triangle is meaningful, but OpenBLAS touches the
whole matrix, so all of it is resident). HuBERT-base, 13 layers × 768 dims: N = 9984, 797 MB (a whole run peaked at
about 1.05 GB RSS); 3 layers × 768: 42 MB; 7 conv layers × 512: 103 MB. Storing only the L(L+1)/2 upper blocks would
halve this at the cost of one BLAS call per pair; not done, for simplicity.
Time: one ``dsyrk`` of (T, N) per file, T·N² flops: about 1.5 s for T = 350 frames, N = 9984, on 2 cores.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import blas
from .errors import UsageError


class StatsError(UsageError, ValueError):
    """Inputs that do not fit the accumulated statistics (other layers, dims, too few frames)."""


class LayerStats:
    """Running per-layer statistics over frames, exact and mergeable.

    layers : ordered layer keys (e.g. ``["layer_0", "layer_6"]``); rows/cols of the matrices follow this order.
    dims : feature dimension of each layer, same order.
    """

    def __init__(self, layers: list[str], dims: list[int]):
        if len(layers) != len(dims) or not layers:
            raise StatsError(f"need one dim per layer, got layers={layers} dims={dims}")
        self.layers = list(layers)
        self.dims = [int(d) for d in dims]
        self.offsets = np.concatenate([[0], np.cumsum(self.dims)]).astype(int)
        size = int(self.offsets[-1])
        self.n = 0
        self.mean = np.zeros(size)
        self.comoment = np.zeros((size, size), order="F")  # upper triangle valid

    # ---------------------------------------------------------------- accumulation
    def _stack(self, arrays: dict[str, np.ndarray], lengths=None) -> np.ndarray:
        """Concatenate the selected layers of one file (or padded batch) into (T, N) float64, real frames only."""
        missing = [k for k in self.layers if k not in arrays]
        if missing:
            raise StatsError(f"missing layers {missing}; have {sorted(arrays)}")
        blocks = []
        for key, dim in zip(self.layers, self.dims):
            value = np.asarray(arrays[key])
            if value.ndim == 3:
                if lengths is None:
                    if value.shape[0] != 1:
                        raise StatsError(f"{key}: batch of shape {value.shape} needs `lengths`")
                    lengths_ = [value.shape[1]]
                else:
                    lengths_ = [int(x) for x in lengths]
                if len(lengths_) != value.shape[0] or any(not 0 <= t <= value.shape[1] for t in lengths_):
                    raise StatsError(f"{key}: lengths {lengths_} do not fit shape {value.shape}")
                value = np.concatenate([value[i, :t] for i, t in enumerate(lengths_)], axis=0)
            if value.ndim != 2 or value.shape[1] != dim:
                raise StatsError(f"{key}: expected (T, {dim}), got {value.shape}")
            blocks.append(value)
        frames = {b.shape[0] for b in blocks}
        if len(frames) != 1:
            raise StatsError(f"layers have different frame counts {dict(zip(self.layers, (b.shape[0] for b in blocks)))}")
        return np.concatenate(blocks, axis=1, dtype=np.float64)

    def update(self, arrays: dict[str, np.ndarray], lengths=None) -> None:
        """Add one file's frames.

        arrays : layer key -> ndarray (T, D) (float32/float16/float64); or (B, T_max, D) padded batches with
            ``lengths`` (B,) real frame counts — padding beyond each length never enters a number. (1, T, D) is
            accepted without ``lengths`` (the prototype layout).
        """
        x = self._stack(arrays, lengths)
        t = x.shape[0]
        if t == 0:
            return
        file_mean = x.mean(axis=0)
        x -= file_mean
        # M += Xc_fᵀ Xc_f  (upper triangle, in place; x.T is a Fortran-ordered view, no copy)
        self.comoment = blas.dsyrk(1.0, x.T, beta=1.0, c=self.comoment, trans=0, lower=0, overwrite_c=1)
        self._merge_moments(t, file_mean)

    def _merge_moments(self, n_b: int, mean_b: np.ndarray) -> None:
        """Mean update and the (n_a·n_b/n)·δδᵀ correction; ``M_b`` must already be added."""
        n_a, n = self.n, self.n + n_b
        delta = mean_b - self.mean
        if n_a:
            self.comoment = blas.dsyr(n_a * n_b / n, delta, lower=0, a=self.comoment, overwrite_a=1)
        self.mean += delta * (n_b / n)
        self.n = n

    def merge(self, other: LayerStats) -> LayerStats:
        """Fold ``other`` (same layers and dims) into ``self``; returns ``self``."""
        if other.layers != self.layers or other.dims != self.dims:
            raise StatsError(f"cannot merge stats of {other.layers}/{other.dims} into {self.layers}/{self.dims}")
        if other.n == 0:
            return self
        self.comoment += other.comoment  # in place; the lower triangles are ignored on both sides
        self._merge_moments(other.n, other.mean)
        return self

    # ---------------------------------------------------------------- results
    def _check(self, minimum: int = 1) -> None:
        if self.n < minimum:
            raise StatsError(f"{self.n} frames accumulated; at least {minimum} needed")

    def _slice(self, key: str) -> slice:
        i = self.layers.index(key)
        return slice(self.offsets[i], self.offsets[i + 1])

    def block(self, a: str, b: str) -> np.ndarray:
        """``Xc_aᵀ Xc_b`` (D_a, D_b), float64: the centred cross-product of layers ``a`` and ``b``."""
        ia, ib = self.layers.index(a), self.layers.index(b)
        if ia > ib:
            return self.block(b, a).T
        blk = self.comoment[self._slice(a), self._slice(b)]
        if ia < ib:
            return blk.copy()  # rows of layer a precede columns of layer b: strictly upper triangle
        return np.triu(blk) + np.triu(blk, 1).T  # diagonal block: symmetrise from its upper triangle

    def dim_mean(self, key: str) -> np.ndarray:
        """Per-dimension mean over frames, (D,)."""
        self._check()
        return self.mean[self._slice(key)].copy()

    def dim_var(self, key: str) -> np.ndarray:
        """Per-dimension variance over frames (ddof=0), (D,)."""
        self._check()
        s = self._slice(key)
        return np.diagonal(self.comoment)[s] / self.n

    def covariance(self, key: str) -> np.ndarray:
        """Covariance of the layer's dimensions over frames (ddof=0), (D, D)."""
        self._check()
        return self.block(key, key) / self.n

    def layer_mean(self) -> dict[str, float]:
        """Mean over all frames × dims, per layer."""
        return {k: float(self.dim_mean(k).mean()) for k in self.layers}

    def layer_std(self) -> dict[str, float]:
        """Standard deviation (ddof=0) over all frames × dims, per layer.

        var = (1/(nD)) Σ_d Σ_t (x_td − μ̄)² = mean_d [ var_d + (μ_d − μ̄)² ],  μ̄ the layer mean.
        """
        out = {}
        for key in self.layers:
            mu = self.dim_mean(key)
            out[key] = float(np.sqrt(np.mean(self.dim_var(key) + (mu - mu.mean()) ** 2)))
        return out

    def cka(self) -> np.ndarray:
        """Linear CKA (Kornblith et al. 2019) between every pair of layers, (L, L), rows/cols in ``layers`` order.

        CKA(X, Y) = ‖Xcᵀ Yc‖²_F / (‖Xcᵀ Xc‖_F · ‖Ycᵀ Yc‖_F); the 1/(n−1)² of HSIC cancels. NaN for a constant layer.
        """
        self._check(2)
        count = len(self.layers)
        self_norm = np.array([np.linalg.norm(self.block(k, k)) for k in self.layers])
        out = np.eye(count)
        for i in range(count):
            for j in range(i + 1, count):
                cross = np.linalg.norm(self.block(self.layers[i], self.layers[j])) ** 2
                denom = self_norm[i] * self_norm[j]
                out[i, j] = out[j, i] = cross / denom if denom > 0 else np.nan
        out[np.diag_indices(count)] = np.where(self_norm > 0, 1.0, np.nan)
        return out

    def cosine(self) -> np.ndarray:
        """Uncentered cosine between layers' frame matrices, (L, L): <X, Y>_F / (‖X‖_F ‖Y‖_F).

        <X, Y>_F = trace(XᵀY) = trace(Xc_ᵀYc) + n·μx·μy; ‖X‖²_F = trace(XcᵀXc) + n·‖μx‖². Defined only for layers of
        equal dim (frame t, dim d of X against frame t, dim d of Y); NaN otherwise. Not a similarity of
        representations in the CKA sense: it changes under rotation of one layer and is dominated by the means.
        """
        self._check()
        count = len(self.layers)
        mus = [self.dim_mean(k) for k in self.layers]
        sq = np.array([np.trace(self.block(k, k)) + self.n * m @ m for k, m in zip(self.layers, mus)])
        out = np.full((count, count), np.nan)
        for i in range(count):
            for j in range(i, count):
                if self.dims[i] != self.dims[j] or sq[i] <= 0 or sq[j] <= 0:
                    continue
                inner = np.trace(self.block(self.layers[i], self.layers[j])) + self.n * mus[i] @ mus[j]
                out[i, j] = out[j, i] = inner / np.sqrt(sq[i] * sq[j])
        return out
