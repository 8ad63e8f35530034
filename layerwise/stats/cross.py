"""Streaming moments of several aligned frame matrices and the cross-products between them: cross-model CKA.

Folder ``f`` contributes, per utterance, a frame matrix ``X_f`` of shape ``(T, N_f)``: its selected layers side by
side (``N_f = Σ dims``), on a time grid shared by all folders (row ``t`` of every ``X_f`` is the same stretch of
audio). Accumulated in float64 over all frames, with a state that does not grow with the number of frames:

- ``n`` : frames seen (the same for every folder);
- ``mean[f]`` : per-dimension mean, (N_f,);
- ``within[f][k]`` : ``Xc_kᵀ Xc_k`` of layer ``k`` of folder ``f`` (D_k, D_k): covariance, PCA, CKA norms;
- ``adjacent[f][k]`` : ``Xc_{k−1}ᵀ Xc_k`` (D_{k−1}, D_k), k ≥ 1: CKA of each layer with the previous one;
- ``between[(f, g)]`` : ``Xc_fᵀ Xc_g`` (N_f, N_g) for every pair f < g: CKA of every layer of f with every layer
  of g.

with ``Xc = X − 1·meanᵀ``. Debiased CKA (:mod:`layerwise.stats.debiased`) also needs, over all layers of all folders,
``quartic`` = Σ_t ‖u_t,a‖²‖u_t,b‖² (ΣL, ΣL) and ``cubic`` = Σ_t ‖u_t,a‖²·u_t (ΣL, ΣN), kept about a fixed reference
``ref[f]`` (the first utterance's mean, u = x − ref) and moved to the final mean when a result is read. Each file is centred on its own mean and merged with the exact pairwise update of Chan,
Golub & LeVeque (1979), which avoids the cancellation of ``XᵀY − n·μxμyᵀ`` when means are large (HuBERT's outlier
dimensions):

    C = C_a + C_b + (n_a·n_b/n)·δxδyᵀ,   δx = μx_b − μx_a,  δy = μy_b − μy_a,  n = n_a + n_b

Linear CKA (Kornblith et al. 2019) then is ``‖Xc_kᵀYc_l‖²_F / (‖Xc_kᵀXc_k‖_F ‖Yc_lᵀYc_l‖_F)``: the 1/(n−1)² of HSIC
cancels, and no n×n Gram matrix is formed.

Why not one :class:`~layerwise.stats.moments.LayerStats` over all folders' layers: it keeps every within-folder block
(8·N² bytes), of which the comparison needs only the diagonal and first off-diagonal blocks. Memory here:
8·(Σ_{f<g} N_f·N_g + Σ_f Σ_k (D_k² + D_{k−1}·D_k)) bytes; two HuBERT-base folders with all 13 layers × 768 dims:
797 MB for ``between`` + 2 × 118 MB within/adjacent; three folders: 3 × 797 MB + 3 × 118 MB. ``--layers`` cuts
this quadratically (measured peak RSS for two such folders: 1.2 GB). Time per file: one (N_f × T × N_g) product per
pair, 2·N_f·N_g·T = 70 GFLOP for T = 350 frames and N_f = N_g = 9984, measured 5.2 s on 2 cores shared with other
jobs, plus about 1.3 s per folder for the per-layer blocks.
"""

from __future__ import annotations

from contextlib import nullcontext
from itertools import pairwise

import numpy as np
from scipy.linalg import blas

from layerwise.errors import StatsError
from layerwise.stats.debiased import debiased_cka, row_sums, shift_sums

MIN_FRAMES = 2  # a centred cross-product needs two frames
# Below this many flops per utterance (≈ 2·T·(Σ_f N_f)²) the products run on one BLAS thread: starting and
# spinning threads costs more than they save. Measured on 2 cores shared with other jobs: 200 utterances of
# 20 frames × 256 dims per folder took 5.8 s with 2 threads and 0.46 s with 1; 350 × 1536: 439 vs 153 ms per update.
# Larger products keep the library's threads (on an idle many-core machine they are what makes 13-layer models fast).
SINGLE_THREAD_FLOPS = 1e9



class CrossStats:
    """Running centred moments of aligned frame matrices, one per folder, and their cross-products.

    layers : per folder, its ordered layer keys; dims : per folder, the dim of each of those layers.
    """

    def __init__(self, layers: list[list[str]], dims: list[list[int]]):
        if len(layers) < 2 or len(layers) != len(dims):
            raise StatsError(f"need two or more folders with one dim per layer, got layers={layers} dims={dims}")
        for keys, ds in zip(layers, dims):
            if not keys or len(keys) != len(ds):
                raise StatsError(f"need one dim per layer, got layers={keys} dims={ds}")
        self.layers = [list(k) for k in layers]
        self.dims = [[int(d) for d in ds] for ds in dims]
        self.offsets = [np.concatenate([[0], np.cumsum(ds)]).astype(int) for ds in self.dims]
        self.n = 0
        self.mean = [np.zeros(off[-1]) for off in self.offsets]
        self.within = [[np.zeros((d, d)) for d in ds] for ds in self.dims]
        self.adjacent = [[np.zeros((a, b)) for a, b in pairwise(ds)] for ds in self.dims]
        count = len(self.layers)
        # Fortran order: dgemm/dger accumulate into it in place (no (N_f, N_g) temporary per file).
        self.between = {(f, g): np.zeros((self.offsets[f][-1], self.offsets[g][-1]), order="F")
                        for f in range(count) for g in range(f + 1, count)}
        self._threads = None  # threadpoolctl controller, made on the first small update
        self.ref: list[np.ndarray] | None = None
        self.all_offsets = np.concatenate([[0], np.cumsum([d for ds in self.dims for d in ds])]).astype(int)
        size, total = int(self.all_offsets[-1]), len(self.all_offsets) - 1
        self.quartic = np.zeros((total, total))
        self.cubic = np.zeros((total, size))

    def _slice(self, folder: int, index: int) -> slice:
        return slice(self.offsets[folder][index], self.offsets[folder][index + 1])

    # ---------------------------------------------------------------- accumulation
    def update(self, frames: list[np.ndarray]) -> None:
        """Add one utterance: ``frames[f]`` is folder f's layers side by side, (T, N_f), any float dtype; the same
        T for every folder, row t of each describing the same time. Not modified."""
        if len(frames) != len(self.layers):
            raise StatsError(f"{len(frames)} frame matrices for {len(self.layers)} folders")
        shapes = [np.shape(x) for x in frames]
        if any(len(s) != 2 or s[1] != off[-1] for s, off in zip(shapes, self.offsets)) or len(
                {s[0] for s in shapes}) != 1:
            raise StatsError(f"frame matrices of shapes {shapes}; expected (T, {[int(o[-1]) for o in self.offsets]})"
                                  f" with one T")
        t = shapes[0][0]
        if t == 0:
            return
        small = 2.0 * t * sum(int(o[-1]) for o in self.offsets) ** 2 < SINGLE_THREAD_FLOPS
        with self._one_thread() if small else nullcontext():
            self._accumulate(frames, t)

    def _one_thread(self):
        """A context limiting BLAS to one thread (the controller is made once: 0.03 ms per use, not 0.9 ms)."""
        if self._threads is None:
            from threadpoolctl import ThreadpoolController

            self._threads = ThreadpoolController()
        return self._threads.limit(limits=1, user_api="blas")

    def _accumulate(self, frames: list[np.ndarray], t: int) -> None:
        # Centre each folder's frames on the file's own mean; float64 copies (T, N_f).
        centred, file_means = [], []
        for x in frames:
            x = np.array(x, dtype=np.float64, order="C")
            mean = x.mean(axis=0)
            x -= mean
            centred.append(x)
            file_means.append(mean)
        if self.ref is None:
            self.ref = [m.copy() for m in file_means]
        u = np.concatenate([x + (m - r) for x, m, r in zip(centred, file_means, self.ref)], axis=1)  # (T, ΣN)
        p = row_sums(u, self.all_offsets)
        self.quartic += p.T @ p
        self.cubic += p.T @ u
        del u
        n_a, n = self.n, self.n + t
        weight = n_a * t / n  # the (n_a·n_b/n) of the merge; 0 for the first file
        deltas = [m - mu for m, mu in zip(file_means, self.mean)]
        for f, x in enumerate(centred):
            for k in range(len(self.layers[f])):
                s = self._slice(f, k)
                self.within[f][k] += x[:, s].T @ x[:, s] + weight * np.outer(deltas[f][s], deltas[f][s])
                if k:
                    p = self._slice(f, k - 1)
                    self.adjacent[f][k - 1] += x[:, p].T @ x[:, s] + weight * np.outer(deltas[f][p], deltas[f][s])
        for (f, g), c in self.between.items():
            # C += Xc_fᵀ Xc_g: x.T is a Fortran-ordered view, so BLAS reads both without copying.
            c = blas.dgemm(1.0, centred[f].T, centred[g].T, beta=1.0, c=c, trans_b=1, overwrite_c=1)
            if weight:
                c = blas.dger(weight, deltas[f], deltas[g], a=c, overwrite_a=1)
            self.between[(f, g)] = c
        for f in range(len(self.mean)):
            self.mean[f] += deltas[f] * (t / n)
        self.n = n

    # ---------------------------------------------------------------- results
    def _check(self, minimum: int = 1) -> None:
        if self.n < minimum:
            raise StatsError(f"{self.n} frames accumulated; at least {minimum} needed")

    def _norms(self, folder: int) -> np.ndarray:
        """‖Xc_kᵀXc_k‖_F per layer of ``folder``, (L_f,)."""
        return np.array([np.linalg.norm(w) for w in self.within[folder]])

    def cka_between(self, f: int, g: int) -> np.ndarray:
        """Linear CKA of every layer of folder f (rows) with every layer of folder g (columns), (L_f, L_g) float64.
        NaN where a layer is constant."""
        self._check(MIN_FRAMES)
        if f == g:
            raise StatsError("cka_between needs two different folders; use cka_previous within one")
        swap = f > g
        cross = self.between[(g, f) if swap else (f, g)]
        cross = cross.T if swap else cross
        norm_f, norm_g = self._norms(f), self._norms(g)
        out = np.full((len(self.layers[f]), len(self.layers[g])), np.nan)
        for i in range(len(self.layers[f])):
            for j in range(len(self.layers[g])):
                denom = norm_f[i] * norm_g[j]
                if denom > 0:
                    out[i, j] = np.linalg.norm(cross[self._slice(f, i), self._slice(g, j)]) ** 2 / denom
        return out

    def cka_previous(self, folder: int) -> np.ndarray:
        """Linear CKA of each layer of ``folder`` with the layer before it in its list, (L_f,); entry 0 is NaN."""
        self._check(MIN_FRAMES)
        norms = self._norms(folder)
        out = np.full(len(self.layers[folder]), np.nan)
        for k, cross in enumerate(self.adjacent[folder], start=1):
            denom = norms[k - 1] * norms[k]
            if denom > 0:
                out[k] = np.linalg.norm(cross) ** 2 / denom
        return out

    def _layer_index(self, folder: int, index: int) -> int:
        return sum(len(k) for k in self.layers[:folder]) + index

    def _centred_quartic(self) -> np.ndarray:
        """(ΣL, ΣL) Σ_t ‖x̃_t,a‖²‖x̃_t,b‖² about the final means, defined for the pairs this class keeps blocks of (a
        layer with itself, with its neighbours in its folder, with every layer of the other folders); NaN elsewhere."""
        delta = np.concatenate([m - r for m, r in zip(self.mean, self.ref)])
        off = self.all_offsets
        alpha = np.add.reduceat(delta * delta, off[:-1])
        w_delta = np.full(self.cubic.shape, np.nan)  # row a: δ_aᵀ·(C + n·δδᵀ)_{a,:} about the reference
        starts = [self._layer_index(f, 0) for f in range(len(self.layers))]
        for f, keys in enumerate(self.layers):
            for k in range(len(keys)):
                a = starts[f] + k
                da = delta[off[a]:off[a + 1]]
                for c, block in ((k, self.within[f][k]), (k - 1, self.adjacent[f][k - 1].T if k else None),
                                 (k + 1, self.adjacent[f][k] if k + 1 < len(keys) else None)):
                    if block is not None:
                        w_delta[a, off[starts[f] + c]:off[starts[f] + c + 1]] = da @ block
                for (g0, g1), cross in self.between.items():
                    if f in (g0, g1):
                        other = g1 if f == g0 else g0
                        rows = cross[self._slice(f, k), :] if f == g0 else cross[:, self._slice(f, k)].T
                        w_delta[a, off[starts[other]]:off[starts[other] + len(self.layers[other])]] = da @ rows
                w_delta[a] += self.n * alpha[a] * delta
        trace = np.array([np.trace(w) for ws in self.within for w in ws]) + self.n * alpha
        quartic, _, _ = shift_sums(self.quartic, self.cubic, trace, self.n * delta, self.n, delta, w_delta, off)
        return quartic

    def _own_terms(self, folder: int, quartic: np.ndarray):
        """(trace (L_f,), (‖X̃ᵀX̃‖²_F, Σ_t ‖x̃_t‖⁴) per layer) of ``folder``."""
        index = [self._layer_index(folder, k) for k in range(len(self.layers[folder]))]
        trace = np.array([np.trace(w) for w in self.within[folder]])
        return trace, (self._norms(folder) ** 2, quartic[index, index]), index

    def cka_between_debiased(self, f: int, g: int) -> np.ndarray:
        """Debiased linear CKA (unbiased HSIC) of every layer of folder f with every layer of folder g, (L_f, L_g);
        NaN below 4 frames or where a layer is constant."""
        self._check(MIN_FRAMES)
        if f == g:
            raise StatsError("cka_between_debiased needs two different folders")
        cross = self.between[(g, f)].T if f > g else self.between[(f, g)]
        quartic = self._centred_quartic()
        trace_f, own_f, index_f = self._own_terms(f, quartic)
        trace_g, own_g, index_g = self._own_terms(g, quartic)
        cross_sq = np.array([[np.linalg.norm(cross[self._slice(f, i), self._slice(g, j)]) ** 2
                              for j in range(len(self.layers[g]))] for i in range(len(self.layers[f]))])
        return debiased_cka(cross_sq, quartic[np.ix_(index_f, index_g)], trace_f, trace_g, own_f, own_g, self.n)

    def cka_previous_debiased(self, folder: int) -> np.ndarray:
        """Debiased linear CKA of each layer of ``folder`` with the layer before it, (L_f,); entry 0 is NaN."""
        self._check(MIN_FRAMES)
        quartic = self._centred_quartic()
        trace, own, index = self._own_terms(folder, quartic)
        out = np.full(len(index), np.nan)
        for k, cross in enumerate(self.adjacent[folder], start=1):
            value = debiased_cka(np.array([[np.linalg.norm(cross) ** 2]]),
                                 np.array([[quartic[index[k - 1], index[k]]]]), trace[[k - 1]], trace[[k]],
                                 tuple(o[[k - 1]] for o in own), tuple(o[[k]] for o in own), self.n)
            out[k] = value[0, 0]
        return out

    def covariance(self, folder: int, index: int) -> np.ndarray:
        """Covariance (ddof 0) of layer ``index`` of ``folder`` over frames, (D, D) float64."""
        self._check()
        return self.within[folder][index] / self.n

    def layer_mean(self, folder: int) -> np.ndarray:
        """Mean over all frames × dims of each layer of ``folder``, (L_f,)."""
        self._check()
        return np.array([self.mean[folder][self._slice(folder, k)].mean() for k in range(len(self.layers[folder]))])

    def layer_std(self, folder: int) -> np.ndarray:
        """Std (ddof 0) over all frames × dims of each layer, (L_f,): sqrt(mean_d[var_d + (μ_d − μ̄)²])."""
        self._check()
        out = []
        for k in range(len(self.layers[folder])):
            mu = self.mean[folder][self._slice(folder, k)]
            var = np.diagonal(self.within[folder][k]) / self.n
            out.append(np.sqrt(np.mean(var + (mu - mu.mean()) ** 2)))
        return np.array(out)
