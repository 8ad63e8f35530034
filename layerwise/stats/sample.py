"""Frames as points: reproducible subsampling, PCA from the exact covariance, t-SNE on the subsample.

Subsampling is bottom-k sampling: every frame gets a uniform random key from a generator seeded by
``(seed, crc32(stem))`` and the ``max_points`` smallest keys over all files are kept. That is a uniform sample without
replacement of all frames, the same whatever the order in which files arrive, and bounded in memory
(``max_points × Σ dims × 4`` bytes: 2000 points × 13 layers × 768 dims = 80 MB).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from layerwise.errors import EmbedError

MIN_PCA_FRAMES = 2  # a covariance needs two frames
MIN_TSNE_POINTS = 10  # below this t-SNE's neighbourhoods are meaningless
TSNE_PERPLEXITY = 30.0  # sklearn's default; lowered to (n − 1)/3 for small samples
TSNE_PCA_DIMS = 50  # usual PCA pre-reduction before t-SNE (van der Maaten's reference implementation)
# The Barnes-Hut gradient and the PCA before it (BLAS) can be multi-threaded; on 2 shared cores two threads measured
# 2.5x slower than one (openTSNE, 500 points: 2.2 s vs 0.86 s while other processes ran), so t-SNE and its PCA run
# single-threaded for predictable time; the analysis runs the layers side by side instead (contract.workers: 13 layers
# of 500 points, 12.1 s one layer at a time vs 7.0 s two at once, bit-identical maps; AMD EPYC, 2 cores, 2026-12-07).
TSNE_THREADS = 1  # also used for the eigendecomposition in pca_from_covariance
# Iterations after PCA initialisation: 100 early-exaggeration + 250 (openTSNE's defaults are 250 + 500). Measured on
# 500 points in 10 planted clusters of 768 dims: KL 0.317 vs 0.311, silhouette 0.925 vs 0.934, in 53 % of the time.
TSNE_EXAGGERATION_ITER, TSNE_ITER = 100, 250



def _check_state(arrays: dict[str, np.ndarray], n: int, dims: list[tuple[str, int]]) -> None:
    """Refuse a saved sample whose arrays do not fit together (EmbedError naming the array): ``keys`` (n,) float,
    ``points_i`` (n, D_i), ``file``/``row``/``labels`` (n,), ``file`` ids within ``stems``, ``row`` >= 0."""
    want = {"keys": (n,), "file": (n,), "row": (n,), "labels": (n,), "has_labels": ()}
    want.update({f"points_{i}": (n, d) for i, (_, d) in enumerate(dims)})
    for name, shape in want.items():
        if name not in arrays:
            raise EmbedError(f"saved sample lacks {name}")
        if np.shape(arrays[name]) != shape:
            raise EmbedError(f"saved sample: {name} has shape {np.shape(arrays[name])}, expected {shape} "
                             f"({n} points in keys; layers {[k for k, _ in dims]})")
    stems = arrays.get("stems")
    if stems is None or np.ndim(stems) != 1:
        raise EmbedError("saved sample lacks its stems (1-D)")
    ids, rows = np.asarray(arrays["file"]), np.asarray(arrays["row"])
    if n and (ids.min() < 0 or ids.max() >= len(stems) or rows.min() < 0):
        raise EmbedError(f"saved sample: file ids {ids.min()}..{ids.max()} for {len(stems)} stems, or a negative "
                         f"row: its arrays do not fit together")


@dataclass
class Subsample:
    """The sampled frames, ordered by (file order, frame index).

    points : layer key -> ndarray (k, D) float32.
    utterances : (k,) str, the stem each point comes from; frame_index : (k,) int, its row in that file.
    labels : (k,) str span labels when the files have ``labels``, else None.
    """

    points: dict[str, np.ndarray]
    utterances: np.ndarray
    frame_index: np.ndarray
    labels: np.ndarray | None

    def __len__(self) -> int:
        return len(self.utterances)


class FrameSampler:
    """Seeded uniform sample of at most ``max_points`` frames (rows) across files, one file at a time.

    layers, dims : the layer keys kept for each point and their dims.
    """

    def __init__(self, layers: list[str], dims: list[int], *, max_points: int, seed: int):
        if max_points < 1:
            raise EmbedError(f"max_points={max_points} must be >= 1")
        self.layers, self.max_points, self.seed = list(layers), int(max_points), int(seed)
        self._points = {k: np.empty((self.max_points, d), np.float32) for k, d in zip(layers, dims)}
        self._keys = np.empty(self.max_points)
        self._file = np.empty(self.max_points, np.int64)
        self._row = np.empty(self.max_points, np.int64)
        self._labels = np.empty(self.max_points, dtype=object)
        self._stems: list[str] = []
        self.filled = 0
        self.has_labels = False

    def add(self, stem: str, arrays: dict[str, np.ndarray], labels: np.ndarray | None = None) -> None:
        """Offer every row of one file. arrays : layer key -> (T, D); labels : (T,) or None."""
        count = arrays[self.layers[0]].shape[0]
        rng = np.random.default_rng([self.seed, zlib.crc32(stem.encode())])
        new_keys = rng.random(count)
        file_id = len(self._stems)
        self._stems.append(stem)
        self.has_labels |= labels is not None
        combined = np.concatenate([self._keys[: self.filled], new_keys])
        if len(combined) <= self.max_points:
            old_kept = np.arange(self.filled)
            new_rows = np.arange(count)
        else:
            keep = np.argpartition(combined, self.max_points - 1)[: self.max_points]
            old_kept = keep[keep < self.filled]
            new_rows = np.sort(keep[keep >= self.filled] - self.filled)
        # Slots freed by evicted old points, then slots never filled.
        free = np.setdiff1d(np.arange(self.filled), old_kept, assume_unique=True)
        slots = np.concatenate([free, np.arange(self.filled, self.filled + len(new_rows) - len(free))]).astype(int)
        for key in self.layers:
            self._points[key][slots] = arrays[key][new_rows]
        self._keys[slots] = new_keys[new_rows]
        self._file[slots] = file_id
        self._row[slots] = new_rows
        self._labels[slots] = None if labels is None else np.asarray(labels)[new_rows]
        self.filled = max(self.filled, int(slots.max()) + 1) if len(slots) else self.filled

    def merge(self, other: FrameSampler) -> FrameSampler:
        """Fold another sampler (same layers, seed and max_points; other files) into this one; returns ``self``.
        Bottom-k samples merge exactly: the union keeps the ``max_points`` smallest keys of both."""
        if other.layers != self.layers or other.seed != self.seed or other.max_points != self.max_points:
            raise EmbedError("cannot merge samplers with other layers, seed or max_points")
        offset = len(self._stems)
        self._stems += other._stems
        self.has_labels |= other.has_labels
        keys = np.concatenate([self._keys[: self.filled], other._keys[: other.filled]])
        keep = np.sort(np.argsort(keys, kind="stable")[: self.max_points])
        def pick(mine, theirs):
            return np.concatenate([mine[: self.filled], theirs[: other.filled]])[keep]
        for key in self.layers:
            self._points[key][: len(keep)] = pick(self._points[key], other._points[key])
        self._keys[: len(keep)] = keys[keep]
        self._file[: len(keep)] = pick(self._file, other._file + offset)
        self._row[: len(keep)] = pick(self._row, other._row)
        self._labels[: len(keep)] = pick(self._labels, other._labels)
        self.filled = len(keep)
        return self

    def state(self) -> dict[str, np.ndarray]:
        """The sample as plain arrays (no pickling): points per layer, keys, file ids, rows, labels, stems."""
        n = self.filled
        labels = np.array(["" if v is None else str(v) for v in self._labels[:n]], dtype=str)
        return {**{f"points_{i}": self._points[k][:n] for i, k in enumerate(self.layers)},
                "keys": self._keys[:n], "file": self._file[:n], "row": self._row[:n], "labels": labels,
                "has_labels": np.array(self.has_labels), "stems": np.array(self._stems, dtype=str)}

    def load_state(self, arrays: dict[str, np.ndarray]) -> FrameSampler:
        """Replace this (empty) sampler's contents by a saved :meth:`state`."""
        n = len(arrays["keys"])
        if n > self.max_points:
            raise EmbedError(f"saved sample of {n} points exceeds max_points={self.max_points}")
        _check_state(arrays, n, [(k, self._points[k].shape[1]) for k in self.layers])
        for i, key in enumerate(self.layers):
            self._points[key][:n] = arrays[f"points_{i}"]
        self._keys[:n], self._file[:n], self._row[:n] = arrays["keys"], arrays["file"], arrays["row"]
        self.has_labels = bool(arrays["has_labels"])
        self._labels[:n] = [str(v) if self.has_labels else None for v in arrays["labels"]]
        self._stems = [str(s) for s in arrays["stems"]]
        self.filled = n
        return self

    def result(self, order: list[str] | None = None) -> Subsample:
        """The sample ordered by (file, row); files in the order they were added, or in ``order`` (stems)."""
        files = self._file[: self.filled]
        if order is not None:
            position = {stem: i for i, stem in enumerate(order)}
            files = np.array([position[self._stems[f]] for f in files], dtype=np.int64)
        order_ = np.lexsort((self._row[: self.filled], files))
        labels = None
        if self.has_labels:
            labels = np.array(["" if v is None else str(v) for v in self._labels[: self.filled][order_]])
        return Subsample(
            points={k: v[: self.filled][order_] for k, v in self._points.items()},
            utterances=np.array(self._stems, dtype=str)[self._file[: self.filled][order_]]
            if self.filled else np.array([], dtype=str),
            frame_index=self._row[: self.filled][order_],
            labels=labels,
        )


def pca_from_covariance(covariance: np.ndarray, n_frames: int, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """PCA with frames as points, from the exact (D, D) covariance over all frames.

    Returns (explained_variance_ratio (k,), components (k, D)), k = min(n_components, D, n_frames − 1) (a sample of n
    frames spans at most n − 1 directions). Signs by scikit-learn's ``svd_flip`` (largest-magnitude entry positive).
    """
    ratios, components, _ = pca_spectrum(covariance, n_frames, n_components)
    return ratios, components


def pca_spectrum(covariance: np.ndarray, n_frames: int,
                 n_components: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`pca_from_covariance` plus the whole spectrum: (ratios (k,), components (k, D), eigenvalues (D,)
    descending, clipped at 0) — one eigendecomposition for PCA and :func:`effective_rank`."""
    if n_frames < MIN_PCA_FRAMES:
        raise EmbedError(f"PCA needs at least {MIN_PCA_FRAMES} frames, got {n_frames}")
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=TSNE_THREADS):  # 768 dims: 0.16 s on one thread, 1.2 s on 2 busy cores
        values, vectors = np.linalg.eigh(covariance)
    values, vectors = np.clip(values[::-1], 0.0, None), vectors[:, ::-1]
    total = values.sum()
    if total <= 0:
        raise EmbedError("all frames are identical (zero variance): PCA is undefined")
    k = min(n_components, covariance.shape[0], n_frames - 1)
    from sklearn.utils.extmath import svd_flip

    _, components = svd_flip(vectors[:, :k], vectors[:, :k].T, u_based_decision=False)  # largest |entry| > 0
    return values[:k] / total, components, values


def effective_rank(eigenvalues: np.ndarray) -> float:
    """exp of the Shannon entropy of the normalised spectrum, p_i = λ_i / Σλ, zeros excluded (Roy & Vetterli 2007;
    the RankMe of Garrido et al. 2023 on the covariance's eigenvalues). Between 1 and the number of non-zero
    eigenvalues; r for a rank-r isotropic covariance. eigenvalues : (D,) ≥ 0 (negative rounding noise is clipped)."""
    values = np.clip(np.asarray(eigenvalues, np.float64), 0.0, None)
    total = values.sum()
    if not total > 0:
        raise EmbedError("zero variance: the effective rank is undefined")
    p = values[values > 0] / total
    return float(np.exp(-np.sum(p * np.log(p))))


def project(points: np.ndarray, mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    """Coordinates of points (k, D) on components (c, D) around mean (D,): (k, c) float64."""
    return (np.asarray(points, np.float64) - mean) @ components.T


def tsne_embed(points: np.ndarray, *, seed: int, perplexity: float = TSNE_PERPLEXITY) -> np.ndarray:
    """2-D t-SNE of points (k, D), after PCA to ``TSNE_PCA_DIMS`` dims; returns (k, 2) float64.

    openTSNE's Barnes-Hut t-SNE (PCA initialisation, ``TSNE_EXAGGERATION_ITER`` + ``TSNE_ITER`` iterations), one
    thread: 500 points × 768 dims take about 0.5 s on one core (sklearn's TSNE: 2.9 s). Perplexity is lowered to
    (k − 1)/3 when the sample is small; raises EmbedError below ``MIN_TSNE_POINTS`` or for constant points.
    """
    import openTSNE
    from sklearn.decomposition import PCA
    from threadpoolctl import threadpool_limits

    points = np.asarray(points, np.float64)
    count = points.shape[0]
    if count < MIN_TSNE_POINTS:
        raise EmbedError(f"t-SNE needs at least {MIN_TSNE_POINTS} points, got {count}")
    if not np.ptp(points, axis=0).any():
        raise EmbedError("all points are identical: t-SNE is undefined")
    dims = min(TSNE_PCA_DIMS, points.shape[1], count - 1)
    perplexity = min(perplexity, (count - 1) / 3.0)
    with threadpool_limits(limits=TSNE_THREADS):
        if dims < points.shape[1]:
            points = PCA(n_components=dims, svd_solver="covariance_eigh").fit_transform(points)
        model = openTSNE.TSNE(n_components=2, perplexity=perplexity, initialization="pca", random_state=seed,
                              n_jobs=TSNE_THREADS, negative_gradient_method="bh", verbose=False,
                              early_exaggeration_iter=TSNE_EXAGGERATION_ITER, n_iter=TSNE_ITER)
        return np.asarray(model.fit(points), dtype=np.float64)
