"""Where does phone/word information live? Per-layer measures on span (segment-pooled) features.

Analysis side: numpy/scipy/scikit-learn only, never torch or transformers. One entry point, ``span_measures``:

- **linear probe**: multinomial logistic regression on standardised features, trained on the utterances of the
  train+dev part of a split and scored (accuracy) on the held-out utterances; the majority-class baseline is the
  test-set frequency of the most frequent training label. Splits are by utterance: no utterance is in two parts.
- **PWCCA** (projection-weighted CCA; Morcos, Raghu & Bengio 2018, "Insights on representational similarity in
  neural networks with canonical correlation", NeurIPS) between the features and one-hot labels, as used for
  layer-wise analysis by Pasad, Chou & Livescu 2021 ("Layer-wise analysis of a self-supervised speech
  representation model", ASRU) and Pasad, Shi & Livescu 2023 (ICASSP): regularised CCA fitted on the train part,
  regularisation picked on the dev part from ``CCA_REG_GRID``, score on the test part, averaged over splits.
- **MI** (optional): normalised mutual information between k-means clusters of the features and the labels.

CCA, as implemented in ``fit_cca`` (X: n×p features, Y: n×q one-hot labels, both centred on the train part)::

    Cxx = XᵀX/(n-1) + rx·I,  Cyy = YᵀY/(n-1) + ry·I,  Cxy = XᵀY/(n-1)
    Wx = Cxx^(-1/2), Wy = Cyy^(-1/2)            (eigh: V diag(w^-1/2) Vᵀ)
    Wx Cxy Wy = U S Vᵀ                          (SVD; S = canonical correlations on the fit data)
    A = Wx U[:, :k],  B = Wy V[:, :k],  k = min(p, q_present - 1, n - 1)

The one-hot columns sum to 1, so centred Y has rank q_present - 1 and its last direction carries no signal; it
is left out. On held-out data, ``ρ_i = corr(X a_i, Y b_i)`` (Pearson). Projection weighting (Morcos et al.; the
reference ``pwcca.py`` of google/svcca) uses the view with fewer columns, Z (the labels here): with Q the
orthonormalised held-out canonical variates of Z (QR), ``α_i = Σ_j |⟨Q_i, z_j⟩|`` over the centred columns z_j
of Z, and ``PWCCA = Σ_i α_i ρ_i / Σ_i α_i``. ``rx = ε · tr(Cxx⁰)/p`` with ε from the grid (features are
standardised on the train part, so tr/p = 1); ``ry = CCA_REG_Y · tr(Cyy⁰)/q``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import linalg

SPLIT_FRACTIONS = (0.6, 0.2, 0.2)  # train / dev / test, as fractions of the utterances
CCA_REG_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)  # ε for the features, relative to mean eig(Cxx)
CCA_REG_Y = 1e-4  # fixed ε for the one-hot labels (only keeps Cyy invertible)
PROBE_C = 1.0  # inverse L2 strength of the logistic regression (standardised features)
PROBE_MAX_ITER = 300


@dataclass
class CCAFit:
    """Regularised CCA fitted on one data part: centring means and canonical directions A (p, k), B (q, k)."""

    mean_x: np.ndarray
    mean_y: np.ndarray
    a: np.ndarray
    b: np.ndarray
    rho_fit: np.ndarray  # canonical correlations on the fit data, (k,)


def utterance_splits(groups: np.ndarray, *, n_splits: int, seed: int) -> list[tuple[np.ndarray, ...]]:
    """``n_splits`` seeded (train, dev, test) index triples over segments, disjoint by utterance id.

    groups : ndarray (n,), the utterance id of each segment. Needs at least 3 distinct utterances; each part
    gets at least one. The utterance sets are checked to be disjoint.
    """
    groups = np.asarray(groups)
    ids, inverse = np.unique(groups, return_inverse=True)
    n_ids = len(ids)
    if n_ids < 3:
        raise ValueError(f"need segments from at least 3 utterances for train/dev/test splits, got {n_ids}")
    if n_splits < 1:
        raise ValueError(f"n_splits={n_splits} must be >= 1")
    n_test = max(1, round(SPLIT_FRACTIONS[2] * n_ids))
    n_dev = max(1, round(SPLIT_FRACTIONS[1] * n_ids))
    n_dev = min(n_dev, n_ids - n_test - 1)
    rng = np.random.default_rng(seed)
    splits = []
    for _ in range(n_splits):
        order = rng.permutation(n_ids)
        part = np.empty(n_ids, dtype=np.int8)
        part[order[:n_test]], part[order[n_test : n_test + n_dev]], part[order[n_test + n_dev :]] = 2, 1, 0
        seg_part = part[inverse]
        train, dev, test = (np.flatnonzero(seg_part == k) for k in range(3))
        used = [set(groups[idx].tolist()) for idx in (train, dev, test)]
        if used[0] & used[1] or used[0] & used[2] or used[1] & used[2]:
            raise RuntimeError("internal error: an utterance landed in two parts of a split")
        splits.append((train, dev, test))
    return splits


def subsample_utterances(groups: np.ndarray, *, max_segments: int, seed: int) -> np.ndarray:
    """Boolean mask (n,) keeping whole utterances, in a seeded random order, while the total stays
    <= ``max_segments`` (at least one utterance); all True when there are no more segments than that."""
    groups = np.asarray(groups)
    if len(groups) <= max_segments:
        return np.ones(len(groups), dtype=bool)
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(counts))
    chosen = order[np.cumsum(counts[order]) <= max_segments]
    return np.isin(inverse, chosen if len(chosen) else order[:1])


def select_classes(labels: np.ndarray, *, min_count: int, max_classes: int | None) -> np.ndarray:
    """Boolean mask (n,) of segments whose label occurs >= ``min_count`` times and is among the
    ``max_classes`` most frequent labels (ties broken alphabetically); ``None`` keeps all."""
    values, counts = np.unique(labels, return_counts=True)
    order = sorted(range(len(values)), key=lambda i: (-counts[i], values[i]))
    keep = [values[i] for i in order if counts[i] >= min_count]
    if max_classes is not None:
        keep = keep[:max_classes]
    return np.isin(labels, np.array(keep, dtype=labels.dtype))


def majority_baseline(y_train: np.ndarray, y_test: np.ndarray) -> float:
    """Accuracy on ``y_test`` of always predicting the most frequent training label (ties: alphabetical)."""
    values, counts = np.unique(y_train, return_counts=True)
    return float(np.mean(y_test == values[np.argmax(counts)]))


def _standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """z-score with the train part's mean/std (float64); constant columns are only centred."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std[std == 0] = 1.0
    return [(x - mean) / std for x in (train, *others)]


def probe_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> float:
    """Test accuracy of a logistic-regression probe (standardised features, L2, C=PROBE_C).

    x_* : ndarray (n, D); y_* : label arrays. Test labels never seen in training count as errors.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y_train)) < 2:  # nothing to learn: the only training label is the prediction
        return majority_baseline(y_train, y_test)
    x_train, x_test = _standardise(np.asarray(x_train, np.float64), np.asarray(x_test, np.float64))
    model = LogisticRegression(C=PROBE_C, max_iter=PROBE_MAX_ITER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # an unconverged probe is still a valid lower bound
        model.fit(x_train, y_train)
    return float(np.mean(model.predict(x_test) == y_test))


class _CCAMoments:
    """Centred covariances of one fit part and their eigendecompositions, reused across the ε grid."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        n = len(x)
        self.mean_x, self.mean_y = x.mean(axis=0), y.mean(axis=0)
        xc, yc = x - self.mean_x, y - self.mean_y
        cxx, cyy = xc.T @ xc / (n - 1), yc.T @ yc / (n - 1)
        self.cxy = xc.T @ yc / (n - 1)
        self.wx, self.vx = linalg.eigh(cxx)  # Cxx = Vx diag(wx) Vxᵀ
        self.wy, self.vy = linalg.eigh(cyy)
        self.wx, self.wy = np.clip(self.wx, 0, None), np.clip(self.wy, 0, None)
        self.scale_x = max(self.wx.mean(), 1e-12)  # tr(Cxx)/p
        self.scale_y = max(self.wy.mean(), 1e-12)
        self.rank_y = int(np.sum(self.wy > 1e-10 * self.wy.max())) if self.wy.max() > 0 else 0
        self.k_max = max(1, min(x.shape[1], self.rank_y, n - 1))

    def fit(self, reg_x: float, reg_y: float) -> CCAFit:
        # (C + r I)^(-1/2) = V diag((w + r)^(-1/2)) Vᵀ, applied as products so no p×p inverse is formed.
        dx = (self.wx + reg_x * self.scale_x) ** -0.5
        dy = (self.wy + reg_y * self.scale_y) ** -0.5
        wx_cxy = self.vx @ (dx[:, None] * (self.vx.T @ self.cxy))  # Wx Cxy
        t = (wx_cxy @ self.vy) * dy[None, :] @ self.vy.T  # Wx Cxy Wy
        u, s, vt = linalg.svd(t, full_matrices=False)
        k = min(self.k_max, len(s))
        a = self.vx @ (dx[:, None] * (self.vx.T @ u[:, :k]))  # Wx U_k
        b = self.vy @ (dy[:, None] * (self.vy.T @ vt[:k].T))  # Wy V_k
        return CCAFit(self.mean_x, self.mean_y, a, b, s[:k])


def fit_cca(x: np.ndarray, y: np.ndarray, *, reg_x: float, reg_y: float = CCA_REG_Y) -> CCAFit:
    """Regularised CCA of x (n, p) and y (n, q) (formulas in the module docstring); reg_* relative to tr/dim."""
    return _CCAMoments(np.asarray(x, np.float64), np.asarray(y, np.float64)).fit(reg_x, reg_y)


def _columnwise_corr(hx: np.ndarray, hy: np.ndarray) -> np.ndarray:
    hx, hy = hx - hx.mean(axis=0), hy - hy.mean(axis=0)
    denom = np.sqrt((hx**2).sum(axis=0) * (hy**2).sum(axis=0))
    num = (hx * hy).sum(axis=0)
    return np.divide(num, denom, out=np.zeros_like(num), where=denom > 1e-12 * max(denom.max(), 1e-300))


def pwcca_score(fit: CCAFit, x: np.ndarray, y: np.ndarray) -> float:
    """Projection-weighted mean of the canonical correlations of ``fit`` on data (x, y) (held-out or not)."""
    hx, hy = (x - fit.mean_x) @ fit.a, (y - fit.mean_y) @ fit.b
    rho = _columnwise_corr(hx, hy)
    z, h = (y, hy) if y.shape[1] <= x.shape[1] else (x, hx)
    z, h = z - z.mean(axis=0), h - h.mean(axis=0)
    q, r = np.linalg.qr(h)
    alpha = np.abs(q.T @ z).sum(axis=1)
    diag = np.abs(np.diag(r))
    alpha[diag <= 1e-10 * max(diag.max(), 1e-300)] = 0.0  # variates that vanish here (class absent) weigh nothing
    return float(alpha @ rho / alpha.sum()) if alpha.sum() > 0 else 0.0


def pwcca_heldout(x: np.ndarray, onehot: np.ndarray, split: tuple[np.ndarray, ...]) -> tuple[float, float]:
    """PWCCA on the test part with ε chosen on the dev part; returns (score, chosen ε).

    x : ndarray (n, p) features (standardised here on the train part); onehot : (n, q); split : (train, dev, test).
    """
    train, dev, test = split
    x_train, x_dev, x_test = _standardise(x[train], x[dev], x[test])
    moments = _CCAMoments(x_train, onehot[train])
    best = (-np.inf, None, None)
    for eps in CCA_REG_GRID:
        fit = moments.fit(eps, CCA_REG_Y)
        score = pwcca_score(fit, x_dev, onehot[dev])
        if score > best[0]:
            best = (score, fit, eps)
    _, fit, eps = best
    return pwcca_score(fit, x_test, onehot[test]), eps


def cluster_nmi(x: np.ndarray, labels: np.ndarray, *, n_clusters: int, seed: int) -> float:
    """NMI (arithmetic normalisation) between MiniBatchKMeans clusters of standardised x (n, D) and labels."""
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.metrics import normalized_mutual_info_score

    (xs,) = _standardise(np.asarray(x, np.float64))
    km = MiniBatchKMeans(n_clusters=n_clusters, random_state=seed, n_init=1, batch_size=2048)
    return float(normalized_mutual_info_score(labels, km.fit_predict(xs)))


def span_measures(
    features: dict[str, np.ndarray],
    labels: np.ndarray,
    groups: np.ndarray,
    *,
    seed: int = 0,
    n_splits: int = 3,
    compute_mi: bool = True,
    min_count: int = 2,
    max_classes: int | None = 200,
    max_segments: int | None = 10_000,
    n_threads: int | None = 1,
) -> dict:
    """Per-layer probe accuracy, PWCCA and (optionally) clustering NMI of span features.

    features : layer key -> ndarray (n_segments, D), any float dtype; all with the same n_segments.
    labels : ndarray (n_segments,) of str — the phone or word of each segment.
    groups : ndarray (n_segments,) — the utterance id of each segment (splits never share an utterance).
    seed : the one source of randomness (splits, k-means). n_splits : seeded utterance splits averaged over.
    min_count, max_classes : segments are kept when their label occurs >= ``min_count`` times and is among
        the ``max_classes`` most frequent labels (a label seen once cannot be both trained and tested; the cap
        bounds the cost for word vocabularies). ``None`` keeps every label.
    max_segments : above this many segments, a seeded random subset of whole utterances is used (the cost
        grows about linearly: 3,000 segments x 13 layers x 768 dims took ~30 s, 10,000 ~90 s on one core).
        ``None`` uses everything.
    n_threads : BLAS/OpenMP threads while computing (threadpoolctl; ``None`` leaves the libraries' default).
        The work is many medium-sized products and decompositions: on 2 shared cores one thread was 7x faster
        than the default (27 s against 189 s for 3000 segments x 13 layers x 768 dims), whose spinning
        threads fight other processes.

    Returns ``{"probe_accuracy": {layer: float}, "probe_majority_baseline": float, "pwcca": {layer: float},
    "mi": {layer: float} (only when compute_mi), "span_measures_info": {...}}`` — accuracies and the baseline
    are means over the splits' test parts; ``span_measures_info`` records seed, sizes and the chosen ε.
    """
    if n_threads is None:
        return _span_measures(features, labels, groups, seed, n_splits, compute_mi, min_count, max_classes,
                              max_segments)
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    with threadpool_limits(limits=n_threads):
        return _span_measures(features, labels, groups, seed, n_splits, compute_mi, min_count, max_classes,
                              max_segments)


def _span_measures(features, labels, groups, seed, n_splits, compute_mi, min_count, max_classes, max_segments):
    labels, groups = np.asarray(labels).astype(np.str_), np.asarray(groups)
    if labels.ndim != 1 or groups.shape != labels.shape:
        raise ValueError(f"labels {labels.shape} and groups {groups.shape} must both be (n_segments,)")
    if not features:
        raise ValueError("no feature layers given")
    for key, value in features.items():
        if value.ndim != 2 or value.shape[0] != len(labels):
            raise ValueError(f"{key}: shape {value.shape}, expected ({len(labels)}, D) to match the labels")
    keep = np.ones(len(labels), dtype=bool)
    if max_segments is not None:
        keep = subsample_utterances(groups, max_segments=max_segments, seed=seed)
    keep[keep] = select_classes(labels[keep], min_count=min_count, max_classes=max_classes)
    labels, groups = labels[keep], groups[keep]
    classes = np.unique(labels)
    if len(classes) < 2:
        raise ValueError(f"need >= 2 label classes with >= {min_count} segments each, got {len(classes)}")
    splits = utterance_splits(groups, n_splits=n_splits, seed=seed)
    onehot = (labels[:, None] == classes[None, :]).astype(np.float64)

    baseline = float(np.mean([majority_baseline(labels[np.r_[tr, dv]], labels[te]) for tr, dv, te in splits]))
    result = {"probe_accuracy": {}, "probe_majority_baseline": baseline, "pwcca": {}}
    if compute_mi:
        result["mi"] = {}
    chosen_eps = {}
    for key, value in features.items():
        x = np.asarray(value[keep], dtype=np.float64)
        accs, scores, epss = [], [], []
        for split in splits:
            train, dev, test = split
            fit_idx = np.r_[train, dev]
            accs.append(probe_accuracy(x[fit_idx], labels[fit_idx], x[test], labels[test]))
            score, eps = pwcca_heldout(x, onehot, split)
            scores.append(score)
            epss.append(eps)
        result["probe_accuracy"][key] = float(np.mean(accs))
        result["pwcca"][key] = float(np.mean(scores))
        chosen_eps[key] = epss
        if compute_mi:
            result["mi"][key] = cluster_nmi(x, labels, n_clusters=min(len(classes), len(x)), seed=seed)
    result["span_measures_info"] = {
        "seed": seed,
        "n_splits": n_splits,
        "n_segments": len(labels),
        "n_segments_available": len(keep),
        "n_classes": len(classes),
        "n_utterances": len(np.unique(groups)),
        "min_count": min_count,
        "max_classes": max_classes,
        "max_segments": max_segments,
        "pwcca_reg_chosen": chosen_eps,
    }
    return result
