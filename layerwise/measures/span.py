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

CCA (centred PWCCA, the default ``cca_protocol="centred"``) is ``pwcca.py``; the published protocol
(``cca_protocol="pasad"``, ``mi_protocol="pasad"``) is ``pasad.py``. A measure that cannot be computed is reported
under ``unavailable`` of the returned :class:`~layerwise.contract.results.MeasureFamily` with its reason; the other
measures are still computed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from layerwise.contract.layout import FRAME_SPAN, SPANS
from layerwise.contract.results import MeasureFamily, layer_reasons
from layerwise.errors import UndefinedMeasureError, error_text
from layerwise.measures import pasad
from layerwise.measures.pwcca import pwcca_heldout, standardise

SPLIT_FRACTIONS = (0.6, 0.2, 0.2)  # train / dev / test, as fractions of the utterances
PROBE_C = 1.0  # inverse L2 strength of the logistic regression (standardised features)
PROBE_MAX_ITER = 300
# The protocols: choices validated once by analyze.options.AnalysisOptions, trusted here and in alignment_free.
CCA_PROTOCOLS = ("centred", "pasad")  # centred PWCCA on utterance splits (pwcca.py) | the published one (pasad.py)
MI_PROTOCOLS = ("project", "pasad")  # NMI of k = n_classes clusters | MI / H(labels), fitted on one set (pasad.py)
UNITS = tuple(s for s in SPANS if s != FRAME_SPAN)  # the spans whose segments carry labels: phone, word


def utterance_splits(groups: np.ndarray, *, n_splits: int, seed: int) -> list[tuple[np.ndarray, ...]]:
    """``n_splits`` seeded (train, dev, test) index triples over segments, disjoint by utterance id.

    groups : ndarray (n,), the utterance id of each segment. Needs at least 3 distinct utterances; each part
    gets at least one. The utterance sets are checked to be disjoint.
    """
    groups = np.asarray(groups)
    ids, inverse = np.unique(groups, return_inverse=True)
    n_ids = len(ids)
    if n_ids < 3:
        raise UndefinedMeasureError(f"need segments from at least 3 utterances for train/dev/test splits, got {n_ids}")
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
    """Accuracy on ``y_test`` of always predicting the most frequent training label (ties: alphabetical).
    Raises :class:`UndefinedMeasureError` for an empty training or test part (an accuracy of nothing is 0/0)."""
    if len(y_train) == 0 or len(y_test) == 0:
        raise UndefinedMeasureError(f"{len(y_train)} training and {len(y_test)} test items: an accuracy needs both")
    values, counts = np.unique(y_train, return_counts=True)
    return float(np.mean(y_test == values[np.argmax(counts)]))


def probe_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> float:
    """Test accuracy of a logistic-regression probe (standardised features, L2, C=PROBE_C).

    x_* : ndarray (n, D); y_* : label arrays. Test labels never seen in training count as errors.
    Raises :class:`UndefinedMeasureError` when there is nothing to probe: an empty part, one training class, or a
    constant layer (every training row equal: the probe can only echo the majority label).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    if len(y_train) == 0 or len(y_test) == 0:
        raise UndefinedMeasureError(f"{len(y_train)} training and {len(y_test)} test items: a probe needs both")
    if len(np.unique(y_train)) < 2:
        raise UndefinedMeasureError(f"the training part holds one class ({np.unique(y_train)[0]!r}): nothing to "
                                    f"probe")
    if not np.ptp(np.asarray(x_train), axis=0).max() > 0:
        raise UndefinedMeasureError("the layer is constant on the training part (every row equal): nothing to probe")
    x_train, x_test = standardise(np.asarray(x_train, np.float64), np.asarray(x_test, np.float64))
    model = LogisticRegression(C=PROBE_C, max_iter=PROBE_MAX_ITER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # an unconverged probe is still a valid lower bound
        model.fit(x_train, y_train)
    return float(np.mean(model.predict(x_test) == y_test))


def cluster_nmi(x: np.ndarray, labels: np.ndarray, *, n_clusters: int, seed: int) -> float:
    """NMI (arithmetic normalisation) between MiniBatchKMeans clusters of standardised x (n, D) and labels.
    Raises :class:`UndefinedMeasureError` for a constant layer (one cluster: scikit-learn would say 0, or 1 against
    one label) or labels of one class (normalising by H = 0)."""
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.metrics import normalized_mutual_info_score

    if len(x) < 2 or not np.ptp(np.asarray(x), axis=0).max() > 0:
        raise UndefinedMeasureError(f"the layer is constant on its {len(x)} items (every row equal): no clusters")
    if len(np.unique(labels)) < 2:
        raise UndefinedMeasureError("one label class: normalised MI divides by its entropy, 0")
    (xs,) = standardise(np.asarray(x, np.float64))
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
    cca_protocol: str = "centred",
    mi_protocol: str = "project",
    unit: str = "phone",
) -> MeasureFamily:
    """Per-layer probe accuracy, PWCCA and (optionally) MI of span features; a measure that fails is reported.

    features : layer key -> ndarray (n_segments, D), any float dtype; all with the same n_segments.
    labels : ndarray (n_segments,) of str — the phone or word of each segment.
    groups : ndarray (n_segments,) — the utterance id of each segment (splits never share an utterance).
    seed : the one source of randomness (splits, parts, k-means). n_splits : seeded utterance splits averaged over.
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
    cca_protocol : ``"centred"`` (default; ``pwcca.py``) or ``"pasad"`` (``pasad.pasad_cca_score`` on 10 seeded
        label-stratified parts of the segments, 3 trials, 6 ε pairs; comparable with the published curves).
    mi_protocol : ``"project"`` (NMI of k = n_classes clusters of standardised features) or ``"pasad"``
        (``pasad.pasad_mi`` fitted on the train+dev utterances of each split, applied to its test utterances).
        Both protocols are validated once, by ``analyze.options.AnalysisOptions`` (``CCA_PROTOCOLS``,
        ``MI_PROTOCOLS``); this function trusts them.
    unit : ``"phone"`` or ``"word"`` (the folder's span): the reference's cluster count for ``mi_protocol="pasad"``.

    Returns a :class:`~layerwise.contract.results.MeasureFamily`: ``values`` holds ``probe_accuracy``, ``pwcca``
    and ``mi`` (when compute_mi), each ``{layer: float}``; ``info`` holds ``probe_majority_baseline`` (float) and
    ``span_measures_info`` (seed, sizes, protocols, chosen ε and, pasad, the parts, trials and ε pairs), as
    ``summary.json`` writes them. A measure that cannot be computed (for any layer) is left out of ``values`` and
    its reason is under ``unavailable``; the others are still there. Accuracies and the baseline are means over the
    splits' test parts. Raises ``ValueError`` only when no measure can be computed at all (malformed arrays, fewer
    than 2 classes or 3 utterances).
    """
    if unit not in UNITS:  # from the folder's metadata: data, checked here
        raise ValueError(f"unit={unit!r} not in {UNITS}")
    options = {"seed": seed, "n_splits": n_splits, "compute_mi": compute_mi, "min_count": min_count,
               "max_classes": max_classes, "max_segments": max_segments, "cca_protocol": cca_protocol,
               "mi_protocol": mi_protocol, "unit": unit}
    if n_threads is None:
        return _span_measures(features, labels, groups, **options)
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    with threadpool_limits(limits=n_threads):
        return _span_measures(features, labels, groups, **options)


_MEASURE_ERRORS = (ValueError, ArithmeticError, np.linalg.LinAlgError)  # data a measure cannot handle


def _per_layer(name: str, features: dict[str, np.ndarray], compute, family: MeasureFamily) -> None:
    """``family.values[name][layer] = compute(layer, x)`` for every layer. A layer on which the measure is undefined
    (:class:`UndefinedMeasureError`: a constant layer, one class, too few items) is ``None`` and named with its
    reason under ``family.unavailable[name]``, the other layers keep their values (as CKA's null); any other
    failure makes the measure unavailable (the reason names the layer) and drops the layers done so far: a measure
    is reported whole (gaps named) or not at all."""
    from layerwise.contract.progress import bar

    values, undefined = {}, {}
    for key, x in bar(features.items(), name, "layer", total=len(features)):
        try:
            values[key] = compute(key, x)
        except UndefinedMeasureError as err:
            values[key] = None
            undefined[key] = f"undefined ({error_text(err)})"
        except _MEASURE_ERRORS as err:
            family.unavailable[name] = f"{key}: {type(err).__name__}: {error_text(err)}"
            return
    if undefined:
        family.unavailable[name] = layer_reasons(undefined, len(features))
    if any(v is not None for v in values.values()):
        family.values[name] = values


@dataclass(frozen=True)
class _Segments:
    """The segments the measures use, after the utterance cap and the class filter.

    xs : layer -> (n, D) float64; labels, groups : (n,); classes : the sorted label set; onehot : (n, n_classes)
    float64; n_available : segments before the cap and the filter; splits : seeded utterance splits."""

    xs: dict[str, np.ndarray]
    labels: np.ndarray
    groups: np.ndarray
    classes: np.ndarray
    onehot: np.ndarray
    n_available: int
    splits: list[tuple[np.ndarray, ...]]


def _segments(features, labels, groups, *, seed, n_splits, min_count, max_classes, max_segments) -> _Segments:
    """Check the arrays (data), keep whole utterances under ``max_segments`` and the labels ``select_classes``
    keeps; raises ValueError when nothing can be measured."""
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
        raise UndefinedMeasureError(f"need >= 2 label classes with >= {min_count} segments each, got {len(classes)}")
    splits = utterance_splits(groups, n_splits=n_splits, seed=seed)
    onehot = (labels[:, None] == classes[None, :]).astype(np.float64)
    xs = {key: np.asarray(value[keep], dtype=np.float64) for key, value in features.items()}
    return _Segments(xs, labels, groups, classes, onehot, len(keep), splits)


def _probe(seg: _Segments, family: MeasureFamily) -> None:
    """``probe_accuracy`` per layer and the majority baseline (means over the splits' test parts)."""
    labels, splits = seg.labels, seg.splits
    family.info["probe_majority_baseline"] = float(np.mean([
        majority_baseline(labels[np.r_[tr, dv]], labels[te]) for tr, dv, te in splits]))

    def probe(_, x):
        return float(np.mean([probe_accuracy(x[np.r_[tr, dv]], labels[np.r_[tr, dv]], x[te], labels[te])
                              for tr, dv, te in splits]))

    _per_layer("probe_accuracy", seg.xs, probe, family)


def _pwcca_centred(seg: _Segments, family: MeasureFamily, info: dict) -> None:
    """``pwcca`` on held-out utterances (``pwcca.py``); the ε chosen per layer and split go to ``info``."""
    chosen = {}

    def cca(key, x):
        scores = [pwcca_heldout(x, seg.onehot, split) for split in seg.splits]
        chosen[key] = [eps for _, eps in scores]
        return float(np.mean([score for score, _ in scores]))

    _per_layer("pwcca", seg.xs, cca, family)
    info["pwcca_reg_chosen"] = chosen


def _pwcca_pasad(seg: _Segments, family: MeasureFamily, info: dict, *, seed: int) -> None:
    """``pwcca`` with the published protocol (``pasad.py``); its parts, trials, ε pairs and chosen ε to ``info``."""
    parts = pasad.stratified_parts(seg.labels, len(seg.labels), seed=seed)
    trials, eps_pairs = pasad.draw_trials(seed=seed), pasad.draw_eps_pairs(seed=seed)
    chosen = {}

    def cca(key, x):
        score, details = pasad.pasad_cca_score(x, seg.onehot, parts, trials, eps_pairs)
        chosen[key] = [t["best_eps"] for t in details["trials"]]
        return score

    _per_layer("pwcca", seg.xs, cca, family)
    info["pasad_cca"] = {"parts": [p.tolist() for p in parts], "trials": [list(t) for t in trials],
                         "eps_pairs": [list(p) for p in eps_pairs], "best_eps": chosen}


def _mi(seg: _Segments, family: MeasureFamily, *, mi_protocol: str, unit: str, seed: int) -> None:
    """``mi`` per layer: NMI of k-means clusters (``project``) or ``pasad.pasad_mi`` on each split (``pasad``)."""
    labels = seg.labels
    if mi_protocol == "project":
        _per_layer("mi", seg.xs, lambda _, x: cluster_nmi(x, labels, n_clusters=min(len(seg.classes), len(x)),
                                                         seed=seed), family)
        return

    def mi(_, x):
        return float(np.mean([pasad.pasad_mi(x[np.r_[tr, dv]], x[te], labels[te], span=unit, seed=seed)
                              for tr, dv, te in seg.splits]))

    _per_layer("mi", seg.xs, mi, family)


def _span_measures(features, labels, groups, *, seed, n_splits, compute_mi, min_count, max_classes, max_segments,
                   cca_protocol, mi_protocol, unit) -> MeasureFamily:
    """:func:`span_measures` without the thread limit: segments, then probe, PWCCA and MI, in that order."""
    seg = _segments(features, labels, groups, seed=seed, n_splits=n_splits, min_count=min_count,
                    max_classes=max_classes, max_segments=max_segments)
    family = MeasureFamily()
    info = {"seed": seed, "n_splits": n_splits, "n_segments": len(seg.labels), "n_segments_available": seg.n_available,
            "n_classes": len(seg.classes), "n_utterances": len(np.unique(seg.groups)), "min_count": min_count,
            "max_classes": max_classes, "max_segments": max_segments, "cca_protocol": cca_protocol,
            "mi_protocol": mi_protocol if compute_mi else None}
    _probe(seg, family)
    if cca_protocol == "centred":
        _pwcca_centred(seg, family, info)
    else:
        _pwcca_pasad(seg, family, info, seed=seed)
    if compute_mi:
        _mi(seg, family, mi_protocol=mi_protocol, unit=unit, seed=seed)
    family.info["span_measures_info"] = info
    return family
