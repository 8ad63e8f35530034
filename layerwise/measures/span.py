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
import zlib
from dataclasses import dataclass

import numpy as np

from layerwise.contract.layout import FRAME_SPAN, SPANS
from layerwise.contract.results import MeasureFamily, layer_reasons
from layerwise.errors import UndefinedMeasureError, error_text
from layerwise.measures import pasad, resample
from layerwise.measures.pwcca import pwcca_heldout, standardise
from layerwise.measures.resample import (
    DEFAULT_N_BOOT,
    FEW_TEST_ITEMS,
    Scored,
    accuracy_scorer,
    centred_pwcca_scorer,
    method_text,
    pasad_pwcca_scorer,
    permute_within,
)

SPLIT_FRACTIONS = (0.6, 0.2, 0.2)  # train / dev / test, as fractions of the utterances
PROBE_C = 1.0  # inverse L2 strength of the logistic regression (standardised features)
PROBE_MAX_ITER = 300
# The protocols: choices validated once by analyze.options.AnalysisOptions, trusted here and in alignment_free.
CCA_PROTOCOLS = ("centred", "pasad")  # centred PWCCA on utterance splits (pwcca.py) | the published one (pasad.py)
MI_PROTOCOLS = ("project", "pasad")  # NMI of k = n_classes clusters | MI / H(labels), fitted on one set (pasad.py)
UNITS = tuple(s for s in SPANS if s != FRAME_SPAN)  # the spans whose segments carry labels: phone, word
CLUSTERS_PER_ITEM = 10  # k-means with more than n / 10 clusters for n scored items: a note (MI's bias grows with k/n)


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
    if len(y_test) == 0:
        raise UndefinedMeasureError(f"{len(y_train)} training and {len(y_test)} test items: a probe needs both")
    return float(np.mean(probe_predictions(x_train, y_train, x_test) == np.asarray(y_test)))


def probe_predictions(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    """The labels (n_test,) a logistic-regression probe (:func:`probe_accuracy`) fitted on (x_train, y_train)
    predicts for x_test (n_test, D); raises :class:`UndefinedMeasureError` as :func:`probe_accuracy`."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    if len(y_train) == 0 or len(x_test) == 0:
        raise UndefinedMeasureError(f"{len(y_train)} training and {len(x_test)} test items: a probe needs both")
    if len(np.unique(y_train)) < 2:
        raise UndefinedMeasureError(f"the training part holds one class ({str(np.unique(y_train)[0])!r}): nothing to "
                                    f"probe")
    if not np.ptp(np.asarray(x_train), axis=0).max() > 0:
        raise UndefinedMeasureError("the layer is constant on the training part (every row equal): nothing to probe")
    x_train, x_test = standardise(np.asarray(x_train, np.float64), np.asarray(x_test, np.float64))
    model = LogisticRegression(C=PROBE_C, max_iter=PROBE_MAX_ITER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # an unconverged probe is still a valid lower bound
        model.fit(x_train, y_train)
    return model.predict(x_test)


def cluster_nmi(x: np.ndarray, labels: np.ndarray, *, n_clusters: int, seed: int) -> float:
    """NMI (arithmetic normalisation) between MiniBatchKMeans clusters of standardised x (n, D) and labels.
    Raises :class:`UndefinedMeasureError` for a constant layer (one cluster: scikit-learn would say 0, or 1 against
    one label) or labels of one class (normalising by H = 0)."""
    from sklearn.metrics import normalized_mutual_info_score

    return float(normalized_mutual_info_score(labels, cluster_labels(x, labels, n_clusters=n_clusters, seed=seed)))


def cluster_labels(x: np.ndarray, labels: np.ndarray, *, n_clusters: int, seed: int) -> np.ndarray:
    """The MiniBatchKMeans cluster (n,) of each row of standardised x (n, D) that :func:`cluster_nmi` scores (the
    project's own setting: one initialisation, batch 2048, seeded); raises as :func:`cluster_nmi`."""
    from sklearn.cluster import MiniBatchKMeans

    if len(x) < 2 or not np.ptp(np.asarray(x), axis=0).max() > 0:
        raise UndefinedMeasureError(f"the layer is constant on its {len(x)} items (every row equal): no clusters")
    if len(np.unique(labels)) < 2:
        raise UndefinedMeasureError("one label class: normalised MI divides by its entropy, 0")
    (xs,) = standardise(np.asarray(x, np.float64))
    km = MiniBatchKMeans(n_clusters=n_clusters, random_state=seed, n_init=1, batch_size=2048)
    return km.fit_predict(xs)


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
    n_boot: int = DEFAULT_N_BOOT,
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
        grows about linearly: 3,000 segments x 13 layers x 768 dims took ~30 s, 10,000 ~90 s on one core); None: all.
    n_threads : BLAS/OpenMP threads while computing (threadpoolctl; ``None`` leaves the libraries' default).
        Many medium-sized products and decompositions: on 2 shared cores one thread was 7x faster than the default
        (27 s against 189 s for 3000 segments x 13 layers x 768 dims), whose spinning threads fight other processes.
    cca_protocol : ``"centred"`` (default; ``pwcca.py``) or ``"pasad"`` (``pasad.pasad_cca_score`` on 10 seeded
        label-stratified parts of the segments, 3 trials, 6 ε pairs; comparable with the published curves).
    mi_protocol : ``"project"`` (NMI of k = n_classes clusters of standardised features) or ``"pasad"``
        (``pasad.pasad_mi`` fitted on the train+dev utterances of each split, applied to its test utterances).
        Both protocols are validated once, by ``analyze.options.AnalysisOptions`` (``CCA_PROTOCOLS``,
        ``MI_PROTOCOLS``); this function trusts them.
    unit : ``"phone"`` or ``"word"`` (the folder's span): the reference's cluster count for ``mi_protocol="pasad"``;
    n_boot : bootstrap replicates of the intervals (``resample.py``; 0: none).

    Returns a :class:`~layerwise.contract.results.MeasureFamily`: ``values`` holds ``probe_accuracy``, ``pwcca``
    (and, pasad, ``pwcca_stable``), ``mi`` and ``mi_adjusted`` (when compute_mi), each ``{layer: float}``, with
    ``intervals``, ``chance`` (mi_adjusted: 0.0 by construction, not permuted), ``n_test`` and ``methods``; ``info`` holds ``probe_majority_baseline`` (float) and
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
               "mi_protocol": mi_protocol, "unit": unit, "n_boot": n_boot}
    if n_threads is None:
        return _span_measures(features, labels, groups, **options)
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    with threadpool_limits(limits=n_threads):
        return _span_measures(features, labels, groups, **options)


_MEASURE_ERRORS = (ValueError, ArithmeticError, np.linalg.LinAlgError)  # data a measure cannot handle


def measure_seed(seed: int, name: str, index: int) -> list[int]:
    """The seed of one measure's resampling at one layer: the analysis seed, the measure, the layer's position."""
    return [seed, zlib.crc32(name.encode()), index]


def record(family: MeasureFamily, name: str, scored: dict[str, Scored | None], *, n_boot: int, seed: int,
           method: str | None) -> None:
    """Intervals, chance levels and test-item counts of measure ``name`` from its layers' :class:`Scored` (None: an
    undefined layer) into ``family``; ``method`` names how the intervals were made (None: no interval)."""
    found = [x for x in scored.values() if x is not None]
    intervals = {}
    for i, (key, x) in enumerate(scored.items()):
        interval = None if x is None else x.interval(n_boot=n_boot, seed=measure_seed(seed, name, i))
        if interval is not None:
            intervals[key] = interval
    if intervals:
        family.intervals[name] = intervals
        family.methods[name] = method
    chance = {key: x.chance for key, x in scored.items() if x is not None and x.chance is not None}
    if chance:
        family.chance[name] = chance
    if found and any(x.n_test for x in found):
        family.n_test[name] = min(x.n_test for x in found)


def per_layer(name: str, features: dict[str, np.ndarray], compute, family: MeasureFamily, *, n_boot: int = 0,
               seed: int = 0, method: str | None = None, threads: int | None = None) -> None:
    """``family.values[name][layer] = compute(layer, x).value`` for every layer (``compute`` returns a
    :class:`~layerwise.measures.resample.Scored`; its interval, chance and test count go to ``family`` through
    :func:`record`). A layer on which the measure is undefined (:class:`UndefinedMeasureError`: a constant layer,
    one class, too few items) is ``None`` and named with its reason under ``family.unavailable[name]``, the other
    layers keep their values (as CKA's null); any other failure makes the measure unavailable (the reason names the
    layer) and drops the layers done so far: a measure is reported whole (gaps named) or not at all. The layers run
    in parallel threads (``contract.workers.over_layers``); ``threads=1`` for a measure whose code is not
    thread-safe (the probes silence a warning)."""
    from layerwise.contract.workers import over_layers

    values, undefined, scored = {}, {}, {}
    for key, future in over_layers(lambda k: compute(k, features[k]), features, name, threads=threads):
        try:
            scored[key] = future.result()
            values[key] = scored[key].value
        except UndefinedMeasureError as err:
            values[key], scored[key] = None, None
            undefined[key] = f"undefined ({error_text(err)})"
        except _MEASURE_ERRORS as err:
            family.unavailable[name] = f"{key}: {type(err).__name__}: {error_text(err)}"
            return
    if undefined:
        family.unavailable[name] = layer_reasons(undefined, len(features))
    if any(v is not None for v in values.values()):
        family.values[name] = values
        record(family, name, scored, n_boot=n_boot, seed=seed, method=method)


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


def _fit_part(split: tuple[np.ndarray, ...]) -> np.ndarray:
    return np.r_[split[0], split[1]]


def _probe(seg: _Segments, family: MeasureFamily, *, n_boot: int, seed: int) -> None:
    """``probe_accuracy`` per layer (mean over the splits' test parts) with its interval (test utterances
    resampled, predictions kept), its chance level (labels permuted within train+dev and test of every split) and
    the majority baseline."""
    labels, splits = seg.labels, seg.splits
    family.info["probe_majority_baseline"] = float(np.mean([
        majority_baseline(labels[_fit_part(sp)], labels[sp[2]]) for sp in splits]))
    permuted = [permute_within(labels, [_fit_part(sp), sp[2]], seed=[seed, s]) for s, sp in enumerate(splits)]

    def probe(_, x):
        hits = [probe_predictions(x[_fit_part(sp)], labels[_fit_part(sp)], x[sp[2]]) == labels[sp[2]]
                for sp in splits]
        scorers = [accuracy_scorer(hit, seg.groups[sp[2]]) for hit, sp in zip(hits, splits)]
        chance = np.mean([probe_accuracy(x[_fit_part(sp)], y[_fit_part(sp)], x[sp[2]], y[sp[2]])
                          for sp, y in zip(splits, permuted)])
        return Scored(float(np.mean([h.mean() for h in hits])), [f for f, _ in scorers], [g for _, g in scorers],
                      [float(h.mean()) for h in hits], sum(len(h) for h in hits), float(chance),
                      accuracy_items=float(np.mean([len(h) for h in hits])))

    per_layer("probe_accuracy", seg.xs, probe, family, n_boot=n_boot, seed=seed,
              method=method_text("accuracy", n_boot, "utterances"), threads=1)  # probe_predictions: not thread-safe


def _pwcca_centred(seg: _Segments, family: MeasureFamily, info: dict, *, n_boot: int, seed: int) -> None:
    """``pwcca`` on held-out utterances (``pwcca.py``) with its interval and chance level; the ε chosen per layer
    and split go to ``info``."""
    chosen = {}
    permuted = [permute_within(seg.onehot, sp, seed=[seed, s]) for s, sp in enumerate(seg.splits)]

    def cca(key, x):
        kept = [{} for _ in seg.splits]
        scores = [pwcca_heldout(x, seg.onehot, split, keep) for split, keep in zip(seg.splits, kept)]
        chosen[key] = [eps for _, eps in scores]
        scorers = [centred_pwcca_scorer(keep, seg.groups[sp[2]]) for keep, sp in zip(kept, seg.splits)]
        chance = np.mean([pwcca_heldout(x, y, split)[0] for split, y in zip(seg.splits, permuted)])
        return Scored(float(np.mean([score for score, _ in scores])), [f for f, _ in scorers],
                      [g for _, g in scorers], [score for score, _ in scores],
                      sum(len(sp[2]) for sp in seg.splits), float(chance))

    per_layer("pwcca", seg.xs, cca, family, n_boot=n_boot, seed=seed,
               method=method_text("two_stage", n_boot, "utterances"))
    info["pwcca_reg_chosen"] = chosen


def pasad_scored(x: np.ndarray, y: np.ndarray, parts, trials, eps_pairs, groups: np.ndarray, *,
                 chance_y: np.ndarray | None = None) -> tuple[Scored, dict]:
    """``pasad.pasad_cca_score`` of views x (n, dx), y (n, dy) as a :class:`Scored` (its trials' test parts
    resampled by ``groups`` (n,), fits kept) and its details; ``chance_y``: y permuted within the parts, whose
    score is the chance level."""
    score, details = pasad.pasad_cca_score(x, y, parts, trials, eps_pairs)
    scorers = []
    for trial in details["trials"]:
        fit = trial["fit"]
        test = parts[trial["test"]]
        scorers.append(pasad_pwcca_scorer(fit, x[test], y[test], groups[test]))
    chance = None if chance_y is None else pasad.pasad_cca_score(x, chance_y, parts, trials, eps_pairs)[0]
    return Scored(score, [f for f, _ in scorers], [g for _, g in scorers],
                  [t["test_score"] for t in details["trials"]], sum(len(parts[t["test"]]) for t in details["trials"]),
                  chance), details


def _pwcca_pasad(seg: _Segments, family: MeasureFamily, info: dict, *, seed: int, n_boot: int) -> None:
    """``pwcca`` with the published protocol (``pasad.py``) and ``pwcca_stable`` (one one-hot column dropped), each
    with its interval (test parts resampled by utterance) and chance level; parts, trials, ε pairs and chosen ε go
    to ``info``."""
    parts = pasad.stratified_parts(seg.labels, len(seg.labels), seed=seed)
    trials, eps_pairs = pasad.draw_trials(seed=seed), pasad.draw_eps_pairs(seed=seed)
    permuted = permute_within(seg.onehot, parts, seed=seed)
    chosen = {}
    method = method_text("two_stage", n_boot, "utterances")

    def cca(key, x):
        scored, details = pasad_scored(x, seg.onehot, parts, trials, eps_pairs, seg.groups, chance_y=permuted)
        chosen[key] = [t["best_eps"] for t in details["trials"]]
        return scored

    def stable(_, x):
        return pasad_scored(x, seg.onehot[:, 1:], parts, trials, eps_pairs, seg.groups,
                            chance_y=permuted[:, 1:])[0]

    per_layer("pwcca", seg.xs, cca, family, n_boot=n_boot, seed=seed, method=method)
    per_layer("pwcca_stable", seg.xs, stable, family, n_boot=n_boot, seed=seed, method=method)
    info["pasad_cca"] = {"parts": [p.tolist() for p in parts], "trials": [list(t) for t in trials],
                         "eps_pairs": [list(p) for p in eps_pairs], "best_eps": chosen}


def expected_mi(labels: np.ndarray, clusters: np.ndarray) -> float:
    """E[MI] of labels and clusters under random assignment with their margins (nats), from scikit-learn's
    adjusted MI (arithmetic normalisation): AMI = (MI − E) / (mean H − E) solved for E."""
    from sklearn.metrics import adjusted_mutual_info_score, mutual_info_score

    mi, ami = mutual_info_score(labels, clusters), adjusted_mutual_info_score(labels, clusters)
    norm = (mutual_info_score(labels, labels) + mutual_info_score(clusters, clusters)) / 2
    return float((mi - ami * norm) / (1 - ami)) if ami < 1 else float(mi)


def _mi_scored(pairs, *, normalise: str, seed: int, n_items_for_note: list) -> tuple[Scored, Scored]:
    """(MI, adjusted MI) as :class:`Scored` from ``pairs`` = per split (labels, clusters, groups) of the scored
    items; the chance level is MI of labels permuted among the scored items of each split."""
    from sklearn.metrics import adjusted_mutual_info_score, mutual_info_score

    def mi_of(labels, clusters):
        value = mutual_info_score(labels, clusters)
        h_lab, h_clu = mutual_info_score(labels, labels), mutual_info_score(clusters, clusters)
        norm = h_lab if normalise == "labels" else (h_lab + h_clu) / 2
        if not norm > 0:
            raise UndefinedMeasureError(f"the {len(labels)} scored items hold one label class: MI normalised by "
                                        f"its entropy is 0/0")
        return float(value / norm)

    values = [mi_of(lab, clu) for lab, clu, _ in pairs]
    adjusted = [float(adjusted_mutual_info_score(lab, clu)) for lab, clu, _ in pairs]
    chance = [mi_of(permute_within(lab, [np.arange(len(lab))], seed=[seed, s]), clu)
              for s, (lab, clu, _) in enumerate(pairs)]
    plain = [resample.mi_scorer(lab, clu, grp, normalise=normalise) for lab, clu, grp in pairs]
    adj = [resample.mi_scorer(lab, clu, grp, normalise=normalise, expected_mi=expected_mi(lab, clu))
           for lab, clu, grp in pairs]
    n_test = sum(len(lab) for lab, _, _ in pairs)
    n_items_for_note.append((max(len(np.unique(clu)) for _, clu, _ in pairs), min(len(lab) for lab, _, _ in pairs)))
    return (Scored(float(np.mean(values)), [f for f, _ in plain], [g for _, g in plain], values, n_test,
                   float(np.mean(chance))),
            Scored(float(np.mean(adjusted)), [f for f, _ in adj], [g for _, g in adj], adjusted, n_test))


def _mi(seg: _Segments, family: MeasureFamily, *, mi_protocol: str, unit: str, seed: int, n_boot: int) -> None:
    """``mi`` and ``mi_adjusted`` per layer: NMI of k-means clusters of every segment (``project``) or MI / H(labels)
    of ``pasad.pasad_clusters`` on each split's test utterances (``pasad``), with intervals (utterances resampled,
    clusters kept) and chance levels; a note when the clusters are not far fewer than the scored items."""
    labels, adjusted, sizes = seg.labels, {}, []

    def mi(key, x):
        if mi_protocol == "project":
            clusters = cluster_labels(x, labels, n_clusters=min(len(seg.classes), len(x)), seed=seed)
            pairs = [(labels, clusters, seg.groups)]
            plain, adjusted[key] = _mi_scored(pairs, normalise="arithmetic", seed=seed, n_items_for_note=sizes)
        else:
            pairs = [(labels[sp[2]], pasad.pasad_clusters(x[_fit_part(sp)], x[sp[2]], span=unit, seed=seed),
                      seg.groups[sp[2]]) for sp in seg.splits]
            plain, adjusted[key] = _mi_scored(pairs, normalise="labels", seed=seed, n_items_for_note=sizes)
        return plain

    what = "utterances" if mi_protocol == "project" else "test utterances"
    method = method_text("groups" if mi_protocol == "project" else "two_stage", n_boot, "utterances")
    per_layer("mi", seg.xs, mi, family, n_boot=n_boot, seed=seed, method=method, threads=1)  # k-means: one layer at a time
    if "mi" in family.values:
        family.values["mi_adjusted"] = {key: adjusted[key].value if key in adjusted else None for key in seg.xs}
        record(family, "mi_adjusted", {key: adjusted.get(key) for key in seg.xs}, n_boot=n_boot, seed=seed,
               method=method + "; the expected MI of each resample held at its value on the scored items; "
                               "mi_adjusted_chance is 0.0 by construction (the expected MI under permuted labels "
                               "is subtracted), not a permutation")
        family.chance["mi_adjusted"] = {key: 0.0 for key, v in family.values["mi_adjusted"].items() if v is not None}
    if sizes:
        k, n = max(s[0] for s in sizes), min(s[1] for s in sizes)
        if k > n / CLUSTERS_PER_ITEM:
            family.notes.append(f"mi: {k} clusters for {n} scored segments ({what}; more than one cluster per "
                                f"{CLUSTERS_PER_ITEM} items): MI is biased upwards at this ratio; read mi against "
                                f"mi_chance and mi_adjusted")


def _span_measures(features, labels, groups, *, seed, n_splits, compute_mi, min_count, max_classes, max_segments,
                   cca_protocol, mi_protocol, unit, n_boot) -> MeasureFamily:
    """:func:`span_measures` without the thread limit: segments, then probe, PWCCA and MI, in that order."""
    import time

    seg = _segments(features, labels, groups, seed=seed, n_splits=n_splits, min_count=min_count,
                    max_classes=max_classes, max_segments=max_segments)
    family = MeasureFamily()
    info = {"seed": seed, "n_splits": n_splits, "n_segments": len(seg.labels), "n_segments_available": seg.n_available,
            "n_classes": len(seg.classes), "n_utterances": len(np.unique(seg.groups)), "min_count": min_count,
            "max_classes": max_classes, "max_segments": max_segments, "cca_protocol": cca_protocol,
            "mi_protocol": mi_protocol if compute_mi else None, "n_boot": n_boot,
            "chance": "the same measure on labels permuted within each part of every split (train+dev and test; "
                      "pasad CCA: within each of its 10 parts), seeded by the analysis seed"}
    if mi_protocol == "pasad" and compute_mi:
        info["kmeans_n_init"] = pasad.kmeans_n_init()
    if cca_protocol == "pasad":
        family.notes.append("cca_protocol pasad: its 10 parts are drawn over segments, so segments of one utterance "
                            "are on both sides of a split (the published protocol); the centred protocol splits by "
                            "utterance")
    start = time.perf_counter()
    _probe(seg, family, n_boot=n_boot, seed=seed)
    if cca_protocol == "centred":
        _pwcca_centred(seg, family, info, n_boot=n_boot, seed=seed)
    else:
        _pwcca_pasad(seg, family, info, seed=seed, n_boot=n_boot)
    if compute_mi:
        _mi(seg, family, mi_protocol=mi_protocol, unit=unit, seed=seed, n_boot=n_boot)
    family.provenance["seconds"] = time.perf_counter() - start
    for name, count in family.n_test.items():
        if n_boot and count < FEW_TEST_ITEMS and name != "mi_adjusted":  # n_boot 0: no interval to call wide
            family.notes.append(f"{name}: {count} scored test items over the splits (fewer than {FEW_TEST_ITEMS}): "
                                f"its interval is wide; analyse more files")
    family.info["span_measures_info"] = info
    return family
