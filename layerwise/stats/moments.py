"""Mergeable running statistics of per-layer frame features: moments, linear CKA, uncentered cosine.

Layers are accumulated side by side over frames they share (equal frame counts in every update). The state does
not grow with the number of frames: ``n``; a reference point ``ref`` (N,) float64 (N = Σ dims); ``shift =
Σ_t (x_t − ref)``; ``sq``, the diagonal of W, exact in float64; and ``W = Σ_t (x_t − ref)(x_t − ref)ᵀ`` in float64,
stored as one row block per layer — ``rows[l]`` (D_l, N − off_l): layer l against itself and every later layer.
The centred comoment is ``M = Xcᵀ Xc = W − n·d·dᵀ`` with ``d = shift / n``; it is settled in place (``ref ← mean``)
before a result is read, and the state stays valid for further updates.

A file adds ``Xc_fᵀ Xc_f + n_f·d_f·d_fᵀ`` (``Xc_f`` centred on the file's own mean, ``d_f = mean_f − ref``), which
is exact. With ``precision="float32"`` (what the analysis uses) ``Xc_fᵀ Xc_f`` is float32 GEMMs over blocks of
``BLOCK_FRAMES`` centred rows (rows of consecutive files queued together) summed in float32 accumulators that are
added into the float64 state every ``FLUSH_FRAMES`` frames and at :meth:`LayerStats.end_group`; the between-file
terms are float64 (``MEAN_BATCH`` files per BLAS call). Each file being centred on its own mean, large offsets (mean
1e4, std 1e-2) cost no precision: per-dimension variances are exact float64, CKA within 1e-6 absolute of the pure
float64 computation (tests/test_stats.py). ``precision="float64"`` (the default) uses float64 products, about half
as fast. Partial states merge exactly (:meth:`merge`: another state is one more "file"); a run that ends its groups
where the partial runs ended theirs gives the merged numbers to ≈1e-9 relative.

For debiased CKA (:mod:`layerwise.stats.debiased`) the state also keeps ``quartic`` (L, L) = Σ_t ‖u_t,a‖²‖u_t,b‖² and
``cubic`` (L, N) = Σ_t ‖u_t,a‖²·u_t about ``ref`` (float64, exact per row), moved with the reference at settle and
merge; and per file, per layer, the count, mean and sum of squares the exact jackknife of mean/std needs
(:mod:`layerwise.stats.uncertainty`).

Memory: ``8·Σ_l D_l·(N − off_l)`` ≈ ``4·N²`` bytes float64, half that again for the float32 accumulators, plus the
row queue (``BLOCK_FRAMES × N × 4``): HuBERT-base, 13 layers × 768 dims (N = 9984): about 730 MB.
Time per frame: ``Σ_l 2·D_l·(N − off_l)`` ≈ N² flops (1e8 for HuBERT-base) in float32 GEMMs.
"""

from __future__ import annotations

import numpy as np

from layerwise.errors import StatsError, error_text
from layerwise.stats.debiased import debiased_cka, row_sums, shift_sums

BLOCK_FRAMES = 2048  # rows per product (GEMM K): 2048 × 9984 float32 = 82 MB queued; K = 256 ran at a quarter of the
#                     GEMM peak, K = 2048 near it (2 cores, AVX-512)
MEAN_BATCH = 64  # file means buffered before their float64 rank-k update
PRECISIONS = {"float32": np.float32, "float64": np.float64}
FLUSH_FRAMES = 16384  # frames summed in float32 before they are added to the float64 state (an N²/2 add: keep rare)  # plus one "rows_{l}" array per layer (see state())



class LayerStats:
    """Running per-layer statistics over frames, exact in float64 up to float32 block products, and mergeable.

    layers : ordered layer keys (e.g. ``["layer_0", "layer_6"]``); rows/cols of the matrices follow this order.
    dims : feature dimension of each layer, same order. precision : "float32" (block products) or "float64".
    """

    def __init__(self, layers: list[str], dims: list[int], *, precision: str = "float64"):
        if len(layers) != len(dims) or not layers:
            raise StatsError(f"need one dim per layer, got layers={layers} dims={dims}")
        if precision not in PRECISIONS:
            raise StatsError(f"precision={precision!r} not in {sorted(PRECISIONS)}")
        self.layers = list(layers)
        self.dims = [int(d) for d in dims]
        self.precision = precision
        self.offsets = np.concatenate([[0], np.cumsum(self.dims)]).astype(int)
        size = int(self.offsets[-1])
        self.n = 0
        self.ref = np.zeros(size)
        self.shift = np.zeros(size)
        self.sq = np.zeros(size)  # diagonal of W, accumulated exactly in float64
        self.rows = [np.zeros((d, size - int(o)), order="F") for d, o in zip(self.dims, self.offsets)]
        self._acc = self.rows if precision == "float64" else [np.zeros(r.shape, np.float32, order="F")
                                                               for r in self.rows]
        self._acc_frames = 0
        self._acc_stale = precision != "float64"  # float32 accumulators hold nothing yet (rows do in float64 mode)
        self._buf: np.ndarray | None = None  # (BLOCK_FRAMES, N) centred rows waiting for their product
        self._buf_rows = 0
        self._pending: list[np.ndarray] = []
        # Debiased CKA (layerwise.stats.debiased): Σ_t p_t(a)·p_t(b) (L, L) and Σ_t p_t(a)·u_t (L, N), p_t(a) =
        # ‖u_t,a‖², u_t = x_t − ref, float64; trace[a] = Σ_t p_t(a) is the layer's sum of ``sq``.
        self.quartic = np.zeros((len(self.layers), len(self.layers)))
        self.cubic = np.zeros((len(self.layers), size))
        # Per file, per layer (exact group jackknife of mean and std, stats.uncertainty): values summed (frames ×
        # dims), their mean and the sum of squares about it.
        self.file_count: list[int] = []
        self.file_mean: list[np.ndarray] = []
        self.file_m2: list[np.ndarray] = []
        self._cross_cache: tuple[int, np.ndarray] | None = None  # (n, _cross_sq()): CKA and debiased CKA share it

    # ---------------------------------------------------------------- accumulation
    def _stack(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """The selected layers of one file side by side: (T, N), float32 (float64 when an input is float64)."""
        missing = [k for k in self.layers if k not in arrays]
        if missing:
            raise StatsError(f"missing layers {missing}; have {sorted(arrays)}")
        blocks = []
        for key, dim in zip(self.layers, self.dims):
            value = np.asarray(arrays[key])
            if value.ndim == 3 and value.shape[0] == 1:
                value = value[0]  # prototype layout (1, T, D)
            if value.ndim != 2 or value.shape[1] != dim:
                raise StatsError(f"{key}: expected (T, {dim}), got {value.shape}")
            blocks.append(value)
        frames = {b.shape[0] for b in blocks}
        if len(frames) != 1:
            raise StatsError(f"layers have different frame counts {dict(zip(self.layers, (len(b) for b in blocks)))}")
        return np.concatenate(blocks, axis=1, dtype=np.result_type(np.float32, *blocks))

    def update(self, arrays: dict[str, np.ndarray]) -> None:
        """Add one file's frames. arrays : layer key -> ndarray (T, D), float16/32/64, equal T for every layer."""
        x = self._stack(arrays)
        t = x.shape[0]
        if t == 0:
            return
        file_mean = x.mean(axis=0, dtype=np.float64)
        ref = file_mean if self.n == 0 and not self._pending else self.ref  # what _add_mean makes the reference
        d = file_mean - ref
        colsq = np.zeros_like(file_mean)
        for start in range(0, t, BLOCK_FRAMES):
            centred = x[start:start + BLOCK_FRAMES] - file_mean  # float64 (B, N)
            colsq += np.einsum("ij,ij->j", centred, centred)
            self._buffer_rows(centred)
            centred += d  # u_t = x_t − ref, in place (the queue holds its own copy)
            p = row_sums(centred, self.offsets)  # (B, L)
            self.quartic += p.T @ p
            self.cubic += p.T @ centred
        self.sq += colsq  # exact float64 diagonal
        self._record_file(t, file_mean, colsq)
        self._add_mean(t, file_mean)

    def _record_file(self, t: int, file_mean: np.ndarray, colsq: np.ndarray) -> None:
        """Keep the file's per-layer count, mean and sum of squares about it over frames × dims (L floats each)."""
        starts = self.offsets[:-1]
        dims = np.asarray(self.dims)
        layer_mean = np.add.reduceat(file_mean, starts) / dims
        spread = (file_mean - np.repeat(layer_mean, dims)) ** 2
        self.file_count.append(t)
        self.file_mean.append(layer_mean)
        self.file_m2.append(np.add.reduceat(colsq, starts) + t * np.add.reduceat(spread, starts))

    def _buffer_rows(self, centred: np.ndarray) -> None:
        """Queue centred rows (of any files) for the products: one GEMM per layer per ``BLOCK_FRAMES`` rows, whose
        efficiency grows with the rows (K) of the product — one short file alone would leave most of it unused."""
        if self._buf is None:
            self._buf = np.empty((BLOCK_FRAMES, int(self.offsets[-1])), PRECISIONS[self.precision], order="F")
        done = 0
        while done < len(centred):
            take = min(len(centred) - done, BLOCK_FRAMES - self._buf_rows)
            self._buf[self._buf_rows:self._buf_rows + take] = centred[done:done + take]
            self._buf_rows += take
            done += take
            if self._buf_rows == BLOCK_FRAMES:
                self._drain()

    def _drain(self) -> None:
        """Multiply out the queued rows: acc_l += block_lᵀ · block_{l:} for every layer l (one GEMM each).

        block : (B, N) Fortran-ordered, so every column slice is contiguous and BLAS reads it without a copy.
        """
        if not self._buf_rows:
            return
        from scipy.linalg import blas

        block = self._buf if self._buf_rows == BLOCK_FRAMES else np.asfortranarray(self._buf[: self._buf_rows])
        self._buf_rows = 0
        gemm = blas.sgemm if block.dtype == np.float32 else blas.dgemm
        beta = 0.0 if self._acc_stale else 1.0  # beta = 0 overwrites stale accumulators: no zero fill needed
        self._acc_stale = False
        for i, (off, end) in enumerate(zip(self.offsets[:-1], self.offsets[1:])):
            self._acc[i] = gemm(1.0, block[:, off:end], block[:, off:], trans_a=1, beta=beta, c=self._acc[i],
                                overwrite_c=1)
        self._acc_frames += block.shape[0]
        if self._acc_frames >= FLUSH_FRAMES:
            self._flush_acc()

    def end_group(self) -> None:
        """End of a group of files: add the float32 accumulators into the float64 state. A run that calls this at the
        same file boundaries as its shards gives the shards' merged numbers to ≈1e-9 relative."""
        self._flush_acc()

    def _flush_acc(self) -> None:
        """Multiply out queued rows, add the float32 accumulators into the float64 rows and clear them."""
        if self._buf_rows:
            self._drain()
        if self._acc is self.rows or not self._acc_frames:
            self._acc_frames = 0
            return
        for rows, acc in zip(self.rows, self._acc):
            rows += acc
        self._acc_stale = True
        self._acc_frames = 0

    def _add_mean(self, count: int, mean: np.ndarray) -> None:
        """Account for ``count`` frames with mean ``mean`` whose centred products are already in ``rows``."""
        if self.n == 0 and not self._pending:
            self.ref = mean.astype(np.float64, copy=True)  # d = 0 for the first file: nothing to buffer
        else:
            d = mean - self.ref
            self.shift += count * d
            self.sq += count * d * d
            self._pending.append(np.sqrt(count) * d)
            if len(self._pending) >= MEAN_BATCH:
                self._flush()
        self.n += count

    def _flush(self) -> None:
        """W += Σ_f n_f·d_f·d_fᵀ for the buffered files (one float64 product per layer row block)."""
        self._flush_acc()
        if not self._pending:
            return
        from scipy.linalg import blas

        batch = np.asfortranarray(np.stack(self._pending))
        self._pending = []
        for i, (off, end) in enumerate(zip(self.offsets[:-1], self.offsets[1:])):  # in place: no N² temporary
            self.rows[i] = blas.dgemm(1.0, batch[:, off:end], batch[:, off:], trans_a=1, beta=1.0, c=self.rows[i],
                                      overwrite_c=1)

    def settle(self) -> None:
        """Fold the buffered rows in and move the reference to the mean now. Every read settles lazily, which
        changes the state; after this call reads change nothing, so threads may read the statistics at once."""
        self._settle()

    def _settle(self) -> None:
        """Move the reference to the mean: ``W ← W − n·d·dᵀ``, ``ref ← mean``, ``shift ← 0``."""
        self._flush()
        if self.n == 0 or not self.shift.any():
            return
        from scipy.linalg import blas

        d = self.shift / self.n
        self.quartic, self.cubic, _ = self._shifted(d)  # before W moves: the expansion uses W about the old ref
        for i, (off, end) in enumerate(zip(self.offsets[:-1], self.offsets[1:])):  # rank-1 update in place
            self.rows[i] = blas.dger(-float(self.n), d[off:end], d[off:], a=self.rows[i], overwrite_a=1)
        self.sq -= self.n * d * d
        self.ref = self.ref + d
        self.shift = np.zeros_like(self.shift)

    def merge(self, other: LayerStats) -> LayerStats:
        """Fold ``other`` (same layers and dims) into ``self``; returns ``self``. Exact (a file of n_b frames)."""
        if other.layers != self.layers or other.dims != self.dims:
            raise StatsError(f"cannot merge stats of {other.layers}/{other.dims} into {self.layers}/{self.dims}")
        if other.n == 0:
            return self
        other._settle()
        self._flush()
        target = other.ref if self.n == 0 else self.ref  # the reference _add_mean keeps
        quartic, cubic, _ = other._shifted(target - other.ref)
        self.quartic += quartic
        self.cubic += cubic
        for mine, theirs in zip(self.rows, other.rows):
            mine += theirs
        self.sq += other.sq
        self.file_count += other.file_count
        self.file_mean += other.file_mean
        self.file_m2 += other.file_m2
        self._add_mean(other.n, other.ref)
        return self

    def _w_delta(self, delta: np.ndarray) -> np.ndarray:
        """(L, N): row a is δ_aᵀ·W_{a,:} for the symmetric W about the current reference (its diagonal: ``sq``)."""
        out = np.empty((len(self.layers), int(self.offsets[-1])))
        for a, (off, end) in enumerate(zip(self.offsets[:-1], self.offsets[1:])):
            da = delta[off:end]
            out[a, off:] = da @ self.rows[a]
            out[a, off:end] += da * (self.sq[off:end] - np.diagonal(self._view(a, a)))
            for c in range(a):
                out[a, self.offsets[c]:self.offsets[c + 1]] = self._view(c, a) @ da
        return out

    def _shifted(self, delta: np.ndarray):
        """(quartic, cubic, trace) about ``ref + delta`` (layerwise.stats.debiased.shift_sums); state unchanged."""
        trace = np.add.reduceat(self.sq, self.offsets[:-1])
        return shift_sums(self.quartic, self.cubic, trace, self.shift, self.n, delta, self._w_delta(delta),
                          self.offsets)

    # ---------------------------------------------------------------- persistence (analysis shards)
    def state(self) -> dict[str, np.ndarray]:
        """The settled state as arrays: ``n``, ``ref`` (= mean), ``shift`` (zeros), ``sq``, ``quartic`` (L, L) and
        ``cubic`` (L, N) (debiased CKA), ``file_count`` (F,), ``file_mean``/``file_m2`` (F, L) (jackknife of mean
        and std), ``rows_{l}`` per layer."""
        self._settle()
        out = {"n": np.array(self.n), "ref": self.ref, "shift": self.shift, "sq": self.sq,
               "quartic": self.quartic, "cubic": self.cubic, **self._file_arrays()}
        out.update({f"rows_{i}": rows for i, rows in enumerate(self.rows)})
        return out

    def _file_arrays(self) -> dict[str, np.ndarray]:
        count = len(self.layers)
        return {"file_count": np.array(self.file_count, np.int64),
                "file_mean": np.array(self.file_mean, np.float64).reshape(-1, count),
                "file_m2": np.array(self.file_m2, np.float64).reshape(-1, count)}

    def file_sums(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per file (in the order they were added, merged partials after), per layer: (values over frames × dims
        (F,) int — frames × the layer's dim, means (F, L), sums of squares about each file's layer mean (F, L))."""
        arrays = self._file_arrays()
        return arrays["file_count"][:, None] * np.asarray(self.dims)[None, :], arrays["file_mean"], arrays["file_m2"]

    @classmethod
    def from_state(cls, layers: list[str], dims: list[int], state: dict[str, np.ndarray], *,
                   precision: str = "float64") -> LayerStats:
        """Inverse of :meth:`state` (shapes checked)."""
        stats = cls(layers, dims, precision=precision)
        try:
            stats.n = int(state["n"])
            stats.ref = np.array(state["ref"], np.float64)
            stats.shift = np.array(state["shift"], np.float64)
            stats.sq = np.array(state["sq"], np.float64)
            stats.quartic = np.array(state["quartic"], np.float64)
            stats.cubic = np.array(state["cubic"], np.float64)
            count = [int(c) for c in np.asarray(state["file_count"]).reshape(-1)]
            means = np.array(state["file_mean"], np.float64)
            m2 = np.array(state["file_m2"], np.float64)
            rows = [np.array(state[f"rows_{i}"], np.float64, order="F") for i in range(len(layers))]
        except KeyError as err:
            raise StatsError(f"statistics state lacks {error_text(err)}") from err
        size = (int(sum(dims)),)
        count_l = len(layers)
        expected = {"ref": size, "shift": size, "sq": size, "quartic": (count_l, count_l),
                    "cubic": (count_l, size[0]), "file_mean": (len(count), count_l), "file_m2": (len(count), count_l),
                    **{f"rows_{i}": r.shape for i, r in enumerate(stats.rows)}}
        found = {"ref": stats.ref.shape, "shift": stats.shift.shape, "sq": stats.sq.shape,
                 "quartic": stats.quartic.shape, "cubic": stats.cubic.shape, "file_mean": means.shape,
                 "file_m2": m2.shape, **{f"rows_{i}": r.shape for i, r in enumerate(rows)}}
        wrong = [f"{k} {found[k]} (expected {v})" for k, v in expected.items() if found[k] != v]
        if wrong or stats.n < 0:
            raise StatsError(f"statistics state does not fit layers {layers} with dims {dims}: "
                             + ("; ".join(wrong) or f"n = {stats.n} frames"))
        stats.rows = rows
        stats.file_count, stats.file_mean, stats.file_m2 = count, list(means), list(m2)
        if precision == "float64":
            stats._acc = rows
        return stats

    # ---------------------------------------------------------------- results
    def _check(self, minimum: int = 1) -> None:
        if self.n < minimum:
            raise StatsError(f"{self.n} frames accumulated; at least {minimum} needed")
        self._settle()

    @property
    def mean(self) -> np.ndarray:
        """Per-dimension mean of all selected layers side by side, (N,) float64."""
        self._settle()
        return self.ref.copy()

    def _slice(self, key: str) -> slice:
        i = self.layers.index(key)
        return slice(self.offsets[i], self.offsets[i + 1])

    def _view(self, i: int, j: int) -> np.ndarray:
        """The stored (D_i, D_j) block for i ≤ j, no copy (a diagonal block's diagonal is the product's, not sq)."""
        start = self.offsets[j] - self.offsets[i]
        return self.rows[i][:, start:start + self.dims[j]]

    def block(self, a: str, b: str) -> np.ndarray:
        """``Xc_aᵀ Xc_b`` (D_a, D_b), float64: the centred cross-product of layers ``a`` and ``b``."""
        self._settle()
        ia, ib = self.layers.index(a), self.layers.index(b)
        if ia > ib:
            return self.block(b, a).T
        out = self._view(ia, ib).copy()
        if ia == ib:  # the diagonal block: symmetric, with the exact float64 diagonal
            out = np.triu(out) + np.triu(out, 1).T
            np.fill_diagonal(out, self.sq[self._slice(a)])
        return out

    def dim_mean(self, key: str) -> np.ndarray:
        """Per-dimension mean over frames, (D,)."""
        self._check()
        return self.ref[self._slice(key)].copy()

    def dim_var(self, key: str) -> np.ndarray:
        """Per-dimension variance over frames (ddof=0), (D,)."""
        self._check()
        return self.sq[self._slice(key)] / self.n

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

    def _cross_sq(self) -> np.ndarray:
        """(L, L) ‖Xc_iᵀ Xc_j‖²_F; the diagonal from the stored block with its diagonal replaced by the exact sums of
        squares (no copies)."""
        if self._cross_cache is not None and self._cross_cache[0] == self.n:
            return self._cross_cache[1]
        count = len(self.layers)
        sq = [self.sq[self._slice(k)] for k in self.layers]
        out = np.zeros((count, count))
        for i in range(count):
            v = self._view(i, i)
            out[i, i] = np.vdot(v, v) - np.vdot(np.diagonal(v), np.diagonal(v)) + sq[i] @ sq[i]
            for j in range(i + 1, count):
                view = self._view(i, j)
                out[i, j] = out[j, i] = np.vdot(view, view)
        self._cross_cache = (self.n, out)
        return out

    def cka(self) -> np.ndarray:
        """Linear CKA (Kornblith et al. 2019) between every pair of layers, (L, L), rows/cols in ``layers`` order.

        CKA(X, Y) = ‖Xcᵀ Yc‖²_F / (‖Xcᵀ Xc‖_F · ‖Ycᵀ Yc‖_F); the 1/(n−1)² of HSIC cancels. NaN for a constant layer.
        Biased upwards by about D/(n + D) on independent features: see :meth:`cka_debiased`.
        """
        self._check(2)
        count = len(self.layers)
        cross = self._cross_sq()
        self_norm = np.sqrt(np.diagonal(cross))
        out = np.eye(count)
        for i in range(count):
            for j in range(i + 1, count):
                denom = self_norm[i] * self_norm[j]
                out[i, j] = out[j, i] = cross[i, j] / denom if denom > 0 else np.nan
        out[np.diag_indices(count)] = np.where(self_norm > 0, 1.0, np.nan)
        return out

    def cka_debiased(self) -> np.ndarray:
        """Debiased linear CKA (unbiased HSIC, Song et al. 2012; Kornblith et al. 2019's ``debiased=True``) between
        every pair of layers, (L, L), from the same moments plus Σ_t ‖x̃_t,a‖²‖x̃_t,b‖² (``quartic``, settled).
        ≈ 0 on independent features where linear CKA is not; NaN below 4 frames or where a layer's unbiased
        self-HSIC is not positive (a constant layer). The diagonal is 1 where defined."""
        self._check(2)
        cross = self._cross_sq()
        trace = np.add.reduceat(self.sq, self.offsets[:-1])
        own = (np.diagonal(cross), np.diagonal(self.quartic))
        out = debiased_cka(cross, self.quartic, trace, trace, own, own, self.n)
        out[np.diag_indices(len(self.layers))] = np.where(np.isfinite(np.diagonal(out)), 1.0, np.nan)
        return out

    def cosine(self) -> np.ndarray:
        """Uncentered cosine between layers' frame matrices, (L, L): <X, Y>_F / (‖X‖_F ‖Y‖_F).

        <X, Y>_F = trace(XcᵀYc) + n·μx·μy; ‖X‖²_F = trace(XcᵀXc) + n·‖μx‖². Defined only for layers of equal dim
        (frame t, dim d of X against frame t, dim d of Y); NaN otherwise. Not a similarity of representations in the
        CKA sense: it changes under rotation of one layer and is dominated by the means.
        """
        self._check()
        count = len(self.layers)
        mus = [self.dim_mean(k) for k in self.layers]
        sq = np.array([self.sq[self._slice(k)].sum() + self.n * m @ m for k, m in zip(self.layers, mus)])
        out = np.full((count, count), np.nan)
        for i in range(count):
            for j in range(i, count):
                if self.dims[i] != self.dims[j] or sq[i] <= 0 or sq[j] <= 0:
                    continue
                trace = np.trace(self._view(i, j)) if i != j else self.sq[self._slice(self.layers[i])].sum()
                inner = trace + self.n * mus[i] @ mus[j]
                out[i, j] = out[j, i] = inner / np.sqrt(sq[i] * sq[j])
        return out
