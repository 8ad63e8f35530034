"""Frame-level phone purity, cluster purity and PNMI of k-means units (HuBERT, Hsu et al. 2021, Sec. IV-B/V-C).

The quality check of fairseq's ``examples/hubert/measure_teacher_quality.py`` (written here from its definitions):
k-means on a layer's frames, then the joint distribution of frame-level phone labels and cluster ids, a (P, K)
table of counts ``n[ph, c]`` with ``p(ph, c) = n[ph, c] / N``::

    phone purity   = Σ_c p(c) · max_ph p(ph | c)   = Σ_c max_ph p(ph, c)      (how pure each cluster is)
    cluster purity = Σ_ph p(ph) · max_c p(c | ph)  = Σ_ph max_c p(ph, c)      (how concentrated each phone is)
    PNMI           = I(ph; c) / H(ph),  I = Σ p(ph, c) log(p(ph, c) / (p(ph) p(c)))   (0 log 0 = 0, natural log)

fairseq adds 1e-8 inside its logarithms; here the sums run over the non-zero cells only, so the values are exact
(they differ from fairseq's by ~1e-8). Frames take the phone whose interval ``[start, end)`` holds their centre
(:func:`label_frames`); frames in silence or in no interval are excluded and counted.

Intervals: a percentile bootstrap over utterances of the per-utterance count tables (resample utterances, sum their
tables: exact and cheap; the k-means fit is held fixed), centred on the estimate as ``measures.resample``'s (median
shift) and clipped to [0, 1]. Chance: the same scores of one seeded permutation of the
scored frames' phone labels (a table with the same margins and no dependence). No torch.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from layerwise.contract.alignments import DEFAULT_SILENCE_LABELS, Segment, strip_stress
from layerwise.errors import UndefinedMeasureError
from layerwise.measures.resample import LEVEL, MIN_FINITE_SHARE, centred_percentiles, permute_within

SCORES = ("pnmi", "phone_purity", "cluster_purity")  # summary.json keys (contract.layout.MEASURES)
LABELLED, NO_PHONE, SILENCE = 0, 1, 2  # frame status codes of label_frames
STATUS_NAMES = {NO_PHONE: "no_phone", SILENCE: "silence"}  # excluded frames, as pnmi_info counts them
# fairseq examples/hubert/simple_kmeans/learn_kmeans.py fits MiniBatchKMeans(init="k-means++", max_iter=100,
# batch_size=10000, tol=0.0, n_init=20, ...): with the fit sample no larger than a batch every step is a full-batch
# update, i.e. Lloyd's k-means. Here sklearn KMeans (Lloyd, k-means++, one init, at most 100 iterations, sklearn's
# tol): on 10,000 × 768 Gaussian frames K=100 took 24 s (18 iterations) and K=500 41 s against 46 s / 138 s for
# fairseq's MiniBatchKMeans settings with n_init=1 (2 cores under load 5, measured); real layers converge sooner.
KMEANS_SETTINGS = {"init": "k-means++", "n_init": 1, "max_iter": 100}


def label_frames(centres: np.ndarray, segments: list[Segment], *, silence_labels=DEFAULT_SILENCE_LABELS,
                 strip_stress_digits: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The phone at each frame centre.

    centres : (n,) float64 seconds (``contract.grid.frame_centres``); segments : one tier's intervals as read
    (``alignments.read_segments``: silences still in). A frame takes the segment whose ``[start, end)`` holds its
    centre (the earliest one when segments overlap). Returns (labels (n,) str, "" where excluded; status (n,) int8:
    ``LABELLED``, ``NO_PHONE`` (in no interval) or ``SILENCE`` (in an interval labelled silence or empty)).
    """
    centres = np.asarray(centres, np.float64)
    labels = np.full(len(centres), "", dtype=object)
    status = np.full(len(centres), NO_PHONE, dtype=np.int8)
    silence = {s.strip().lower() for s in silence_labels}
    for seg in sorted(segments, key=lambda s: (s.start, s.end), reverse=True):  # earliest written last: it wins
        inside = (centres >= seg.start) & (centres < seg.end)
        label = seg.label.strip()
        if not label or label.lower() in silence:
            status[inside], labels[inside] = SILENCE, ""
            continue
        status[inside], labels[inside] = LABELLED, strip_stress(label) if strip_stress_digits else label
    return labels.astype(str), status


def contingency(phones: np.ndarray, clusters: np.ndarray, n_phones: int, n_clusters: int) -> np.ndarray:
    """(n_phones, n_clusters) int64 counts of (phone id, cluster id) pairs; phones, clusters : (n,) ints."""
    codes = np.asarray(phones, np.int64) * n_clusters + np.asarray(clusters, np.int64)
    return np.bincount(codes, minlength=n_phones * n_clusters).reshape(n_phones, n_clusters)


def scores(table: np.ndarray) -> dict[str, float]:
    """PNMI, phone purity and cluster purity of a (P, K) count (or weight) table (module docstring). Raises
    UndefinedMeasureError for an empty table or one phone (H(phone) = 0: PNMI is 0/0)."""
    table = np.asarray(table, np.float64)
    total = table.sum()
    if not total > 0:
        raise UndefinedMeasureError("no labelled frame was scored: the table is empty")
    p = table / total
    p_ph, p_c = p.sum(axis=1), p.sum(axis=0)
    nz = p > 0
    h_ph = -float(np.sum(p_ph[p_ph > 0] * np.log(p_ph[p_ph > 0])))
    if not h_ph > 0:
        raise UndefinedMeasureError("every scored frame has the same phone: H(phone) = 0, PNMI is 0/0")
    outer = np.outer(p_ph, p_c)
    mi = float(np.sum(p[nz] * np.log(p[nz] / outer[nz])))
    return {"pnmi": mi / h_ph, "phone_purity": float(p.max(axis=0).sum()),
            "cluster_purity": float(p.max(axis=1).sum())}


@dataclass(frozen=True)
class UtteranceTables:
    """The per-utterance count tables of one layer and K, stored sparsely: entry i adds ``count[i]`` to cell
    ``code[i] = phone · K + cluster`` of utterance ``utt[i]``. shape : (P, K); n_utts : utterances."""

    utt: np.ndarray
    code: np.ndarray
    count: np.ndarray
    shape: tuple[int, int]
    n_utts: int

    @classmethod
    def of(cls, per_utt: list[tuple[np.ndarray, np.ndarray]], shape: tuple[int, int]) -> UtteranceTables:
        """From one (phone ids, cluster ids) pair of (n_u,) int arrays per utterance."""
        utt, code, count = [], [], []
        for u, (phones, clusters) in enumerate(per_utt):
            values, counts = np.unique(np.asarray(phones, np.int64) * shape[1] + np.asarray(clusters, np.int64),
                                       return_counts=True)
            utt.append(np.full(len(values), u, np.int64))
            code.append(values)
            count.append(counts)
        join = (lambda parts: np.concatenate(parts) if parts else np.zeros(0, np.int64))
        return cls(join(utt), join(code), join(count), shape, len(per_utt))

    def table(self, weights: np.ndarray | None = None) -> np.ndarray:
        """The summed (P, K) table; weights : (n_utts,) times each utterance is counted (None: once)."""
        w = self.count if weights is None else self.count * np.asarray(weights, np.float64)[self.utt]
        return np.bincount(self.code, weights=w, minlength=self.shape[0] * self.shape[1]).reshape(self.shape)


def bootstrap(tables: UtteranceTables, *, n_boot: int, seed: int, level: float = LEVEL
              ) -> dict[str, tuple[float, float] | None]:
    """Intervals of :func:`scores` over ``n_boot`` resamples of the utterances (with replacement; seeded): the
    percentiles centred on the estimate (``resample.centred_percentiles``: median shift, widened to contain the
    estimate), clipped to [0, 1]. A score is None when fewer than 2 utterances, ``n_boot`` 0, or fewer than
    ``resample.MIN_FINITE_SHARE`` of the resamples define it (:func:`no_interval_reason` says which)."""
    if tables.n_utts < 2 or n_boot < 1:
        return dict.fromkeys(SCORES)
    estimate = scores(tables.table())
    rng = np.random.default_rng(seed)
    found: dict[str, list[float]] = {name: [] for name in SCORES}
    for _ in range(n_boot):
        weights = np.bincount(rng.integers(tables.n_utts, size=tables.n_utts), minlength=tables.n_utts)
        try:
            values = scores(tables.table(weights))
        except UndefinedMeasureError:
            continue
        for name in SCORES:
            found[name].append(values[name])
    out = {}
    for name, v in found.items():
        if len(v) < MIN_FINITE_SHARE * n_boot:
            out[name] = None
            continue
        low, high = centred_percentiles(np.asarray(v), estimate[name], level)
        out[name] = (max(0.0, low), min(1.0, high))
    return out


def no_interval_reason(tables: UtteranceTables, n_boot: int) -> str:
    """Why :func:`bootstrap` gave no interval (``n_boot`` > 0)."""
    if tables.n_utts < 2:
        return (f"{tables.n_utts} utterance(s) scored: the interval resamples utterances and needs at least 2 "
                f"(add alignments of more analysed files)")
    return f"fewer than {MIN_FINITE_SHARE:.0%} of the {n_boot} utterance resamples define the score"


def permuted_chance(table: np.ndarray, *, seed: int) -> dict[str, float]:
    """:func:`scores` of the frames' phone labels permuted once (seeded) across all scored frames: a table with the
    margins of ``table`` and no dependence between phone and cluster (the finite-sample level of no information)."""
    table = np.asarray(table, np.int64)
    n_phones, n_clusters = table.shape
    cells = np.flatnonzero(table.ravel())
    frames = np.repeat(cells, table.ravel()[cells])
    phones, clusters = frames // n_clusters, frames % n_clusters
    permuted = permute_within(phones, [np.arange(len(phones))], seed=seed)
    return scores(contingency(permuted, clusters, n_phones, n_clusters))


def fit_kmeans(x: np.ndarray, n_clusters: int, *, seed: int):
    """A fitted ``sklearn.cluster.KMeans`` (``KMEANS_SETTINGS``, ``random_state=seed``) on raw frames x (n, D) (no
    standardisation, as the reference). Raises UndefinedMeasureError with fewer frames than clusters or a constant
    layer."""
    from sklearn.cluster import KMeans

    x = np.asarray(x, np.float32)
    if len(x) < n_clusters:
        raise UndefinedMeasureError(f"{len(x)} fit frames for {n_clusters} clusters: the analysed files gave only "
                                    f"{len(x)} labelled fit frames (each file at most pnmi_info.fit_frames_per_file)"
                                    f"; analyse more files or lower --pnmi_clusters")
    if not np.ptp(x, axis=0).max() > 0:
        raise UndefinedMeasureError(f"the layer is constant on its {len(x)} fit frames: no clusters")
    return KMeans(n_clusters=n_clusters, random_state=seed, **KMEANS_SETTINGS).fit(x)


def sample_rows(n: int, size: int, *, seed: int, name: str) -> np.ndarray:
    """Sorted indices of at most ``size`` of ``n`` rows, drawn from the seed and ``name`` (an utterance stem and
    grid), so the sample does not depend on the order in which files arrive."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    return np.sort(rng.choice(n, size=min(n, size), replace=False))
