"""The PNMI stage of an analysis: phone labels at frame centres → k-means per layer → exact joint counts.

For a frame folder analysed with ``alignment_dir``: every frame takes the phone whose interval holds its centre
(``contract.grid.frame_centres`` on the layer's own grid, the phone rule of ``contract.alignments``: stress digits
stripped; frames in silence or in no interval are excluded and counted). Two passes over the files, each reading
every selected layer of a file at once:

1. fit: files in a seeded order of their stems (not the order they arrive in), at most
   ``max(FIT_FRAMES_PER_FILE, ceil(pnmi_fit_frames / n_files))`` labelled frames of each (seeded by the stem and the
   grid), until ``pnmi_fit_frames`` frames; then per layer and per K of ``pnmi_clusters`` a seeded k-means
   (``measures.pnmi.fit_kmeans``). Memory: pnmi_fit_frames × Σ dims × 4 B (10,000 × 13 × 768: 400 MB).
2. assignment: every labelled frame of every analysed file gets its cluster; the per-utterance (phone, cluster)
   counts are kept sparsely (``measures.pnmi.UtteranceTables``), so the joint counts cover all frames exactly.

Per layer: ``pnmi``, ``phone_purity``, ``cluster_purity`` of the first K (``<score>_per_k`` for every K), a
bootstrap interval over utterances and the chance level of permuted phone labels (``measures.pnmi``). The
random-init control gets the same from its own files (its own k-means). Span folders: a note. Never imports torch.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from layerwise.analyze.control import ControlSource, check_control_file
from layerwise.analyze.options import AnalysisOptions
from layerwise.analyze.stream import Collected, control_result, read
from layerwise.contract import layout, store
from layerwise.contract.grid import Grid, frame_centres
from layerwise.contract.results import ControlResult, MeasureFamily, layer_reasons
from layerwise.errors import AnalysisError, UndefinedMeasureError, error_text
from layerwise.measures import pnmi

log = logging.getLogger(__name__)

INFO_KEY = "pnmi_info"  # summary.json key of the PNMI settings and counts
PER_K = {name: f"{name}_per_k" for name in pnmi.SCORES}  # summary.json: {str(K): {layer: value}} for every K
FIT_FRAMES_PER_FILE = 100  # the per-file cap of fit frames is max(this, ceil(pnmi_fit_frames / n_files)):
# with 100 files or more at the default 10,000 fit frames at most 100 from each file; fewer files give more each
SPAN_NOTE = ("PNMI and purity need frames: analyse the frame folder of the same extraction with alignment_dir "
             "(span folders hold one pooled vector per segment)")
CHANCE_METHOD = "the same scores with the scored frames' phone labels permuted once (seeded)"


@dataclass
class _Labels:
    """Every analysed utterance's phone tier (raw segments), the phone inventory and the files without one."""

    segments: dict[str, list]
    phones: list[str]
    missing: list[str] = field(default_factory=list)


def _read_labels(options: AnalysisOptions, stems: list[str]) -> _Labels:
    """The phone tier of each analysed stem that has an alignment (silences still in, ``measures.pnmi.label_frames``
    excludes them); the inventory is every non-silent phone label (stress stripped) of those files, sorted."""
    from layerwise.contract.alignments import DEFAULT_SILENCE_LABELS, find_alignments, read_segments, read_spans

    sources = find_alignments(options.alignment_dir, options.alignment_format)
    aligned = [s for s in stems if s in sources]
    if not aligned:
        raise AnalysisError(f"alignment_dir {options.alignment_dir} has no alignment of the {len(stems)} analysed "
                            f"files ({', '.join(stems[:3])} …): PNMI needs each file's phones, named by its stem")
    silence = options.silence_labels or DEFAULT_SILENCE_LABELS
    segments = {s: read_segments(sources[s], options.phone_tier) for s in aligned}
    phones = sorted({seg.label for s in aligned for seg in read_spans(sources[s], options.phone_tier,
                                                                       silence_labels=silence,
                                                                       strip_stress_digits=True)})
    return _Labels(segments, phones, [s for s in stems if s not in sources])


def _grids(meta: dict, layers: list[str]) -> dict[str, Grid]:
    grids = {key: layout.layer_grid(meta, key) for key in layers}
    unknown = [k for k, g in grids.items() if g is None]
    if unknown or not meta.get("sample_rate"):
        raise UndefinedMeasureError(f"the frame grid of {', '.join(unknown) or 'the layers'} is not recorded in the "
                                    f"files' metadata (model_config, sample_rate)")
    return grids


class _Frames:
    """Frame labels of one file per grid (cached: every layer_k shares one grid)."""

    def __init__(self, labels: _Labels, options: AnalysisOptions, sample_rate: int):
        from layerwise.contract.alignments import DEFAULT_SILENCE_LABELS

        self.labels, self.rate = labels, int(sample_rate)
        self.silence = options.silence_labels or DEFAULT_SILENCE_LABELS
        self.index = {ph: i for i, ph in enumerate(labels.phones)}

    def of(self, stem: str, n: int, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
        """(phone id per frame, -1 where excluded (n,) int64; status (n,) int8)."""
        names, status = pnmi.label_frames(frame_centres(n, grid.hop, grid.field, self.rate),
                                          self.labels.segments[stem], silence_labels=self.silence)
        ids = np.array([self.index.get(x, -1) for x in names], np.int64)
        ids[status != pnmi.LABELLED] = -1
        return ids, status


def _fit_frames_per_file(options: AnalysisOptions, n_files: int) -> int:
    """The per-file cap of fit frames: ``max(FIT_FRAMES_PER_FILE, ceil(pnmi_fit_frames / n_files))``."""
    return max(FIT_FRAMES_PER_FILE, math.ceil(options.pnmi_fit_frames / max(n_files, 1)))


def _fit_sample(paths: dict[str, Path], layers, grids, frames: _Frames, options: AnalysisOptions,
                check_meta: dict | None) -> tuple[dict[str, np.ndarray], list[str]]:
    """Pass 1: (layer -> (n_fit, D) float32 fit frames, stems read), files in a seeded order of their stems."""
    stems = sorted(paths)
    order = [stems[i] for i in np.random.default_rng(options.seed).permutation(len(stems))]
    per_file = _fit_frames_per_file(options, len(stems))
    picked: dict[str, list[np.ndarray]] = {k: [] for k in layers}
    taken, used = 0, []
    for stem in order:
        if taken >= options.pnmi_fit_frames:
            break
        ff = read(paths[stem], layers)
        if check_meta is not None:
            check_control_file(ff, check_meta)
        room = min(per_file, options.pnmi_fit_frames - taken)
        counts = []
        for key in layers:
            ids, _ = frames.of(stem, len(ff.layers[key]), grids[key])
            rows = np.flatnonzero(ids >= 0)
            rows = rows[pnmi.sample_rows(len(rows), room, seed=options.seed, name=f"{stem}/{grids[key]}")]
            picked[key].append(np.asarray(ff.layers[key][rows], np.float32))
            counts.append(len(rows))
        taken += min(counts)
        used.append(stem)
    return {k: np.concatenate(v) for k, v in picked.items()}, used


def _assign(paths: dict[str, Path], layers, grids, frames: _Frames, models: dict, ks: list[int],
            check_meta: dict | None) -> tuple[dict, dict]:
    """Pass 2: ((layer, K) -> UtteranceTables over every labelled frame; layer -> frame counts: ``scored`` and the
    excluded ones by reason, ``no_phone`` and ``silence``)."""
    per_utt: dict[tuple[str, int], list] = {(k, K): [] for k in layers for K in ks}
    counted = {k: {"scored": 0, **dict.fromkeys(pnmi.STATUS_NAMES.values(), 0)} for k in layers}
    for stem in sorted(paths):
        ff = read(paths[stem], layers)
        if check_meta is not None:
            check_control_file(ff, check_meta)
        for key in layers:
            x = ff.layers[key]
            ids, status = frames.of(stem, len(x), grids[key])
            for code, name in pnmi.STATUS_NAMES.items():
                counted[key][name] += int(np.sum(status == code))
            rows = np.flatnonzero(ids >= 0)
            counted[key]["scored"] += len(rows)
            for K in ks:
                model = models.get((key, K))
                clusters = model.predict(np.asarray(x[rows], np.float32)) if model is not None and len(rows) \
                    else np.zeros(0, np.int64)
                per_utt[(key, K)].append((ids[rows] if model is not None else ids[:0], clusters))
    shape = len(frames.labels.phones)
    return {(k, K): pnmi.UtteranceTables.of(v, (shape, K)) for (k, K), v in per_utt.items()}, counted


def _fit(sample: dict[str, np.ndarray], ks: list[int], seed: int) -> tuple[dict, dict[str, dict[int, str]]]:
    """((layer, K) -> fitted k-means, layer -> K -> why it could not be fitted)."""
    from threadpoolctl import threadpool_limits

    from layerwise.contract.progress import bar

    models, failed = {}, {}
    with threadpool_limits(limits=1):  # many medium products on shared cores (see span.span_measures)
        for key in bar(list(sample), "PNMI k-means", "layer"):
            for K in ks:
                try:
                    models[(key, K)] = pnmi.fit_kmeans(sample[key], K, seed=seed)
                except UndefinedMeasureError as err:
                    failed.setdefault(key, {})[K] = f"undefined ({error_text(err)})"
    return models, failed


def _score(family: MeasureFamily, tables: dict, failed: dict, layers, ks, options: AnalysisOptions) -> list[str]:
    """Values, intervals and chance per layer and K (the first K as the measures, every K under ``<score>_per_k``,
    ``_per_k_ci``, ``_per_k_chance`` in ``family.info``); returns notes on the layers left without an interval."""
    from layerwise.measures.resample import method_text

    n_boot = options.n_boot
    per_k = {name: {str(K): {} for K in ks} for name in pnmi.SCORES}
    per_k_ci = {name: {str(K): {} for K in ks} for name in pnmi.SCORES}
    per_k_chance = {name: {str(K): {} for K in ks} for name in pnmi.SCORES}
    reasons: dict[str, str] = {}
    no_interval: dict[str, dict[str, str]] = {}  # why -> layers (ordered)
    for key in layers:
        for K in ks:
            why = failed.get(key, {}).get(K)
            try:
                if why is not None:
                    raise UndefinedMeasureError(why)
                table = tables[(key, K)].table()
                values = pnmi.scores(table)
            except UndefinedMeasureError as err:
                values = dict.fromkeys(pnmi.SCORES)
                if K == ks[0]:
                    reasons[key] = why or f"undefined ({error_text(err)})"
            for name in pnmi.SCORES:
                per_k[name][str(K)][key] = values[name]
            if values["pnmi"] is None:
                continue
            for name, interval in pnmi.bootstrap(tables[(key, K)], n_boot=n_boot, seed=options.seed).items():
                if interval is not None:
                    per_k_ci[name][str(K)][key] = list(interval)
                elif n_boot and K == ks[0]:
                    no_interval.setdefault(pnmi.no_interval_reason(tables[(key, K)], n_boot), {})[key] = name
            for name, value in pnmi.permuted_chance(table, seed=options.seed).items():
                per_k_chance[name][str(K)][key] = value
    first = str(ks[0])
    for name in pnmi.SCORES:
        family.info[PER_K[name]] = per_k[name]
        family.info[f"{PER_K[name]}_ci"] = per_k_ci[name]
        family.info[f"{PER_K[name]}_chance"] = per_k_chance[name]
        if per_k_ci[name][first]:
            family.intervals[name] = {k: tuple(v) for k, v in per_k_ci[name][first].items()}
            family.methods[name] = method_text("groups", n_boot, "utterances")
        if per_k_chance[name][first]:
            family.chance[name] = dict(per_k_chance[name][first])
        if reasons:
            family.unavailable[name] = layer_reasons(reasons, len(layers))
        if any(v is not None for v in per_k[name][first].values()):
            family.values[name] = per_k[name][first]
    return [f"PNMI: no interval for {', '.join(pnmi.SCORES)} on {', '.join(keys)}: {why}"
            for why, keys in no_interval.items()]


def _k_notes(ks: list[int], counted: dict, sample: dict[str, np.ndarray]) -> list[str]:
    """A note for each K not far below the scored frames (K > frames / ``span.CLUSTERS_PER_ITEM``, the rule of the
    MI notes): PNMI's finite-sample bias (``pnmi_chance``) is then large."""
    from layerwise.measures.span import CLUSTERS_PER_ITEM as FRAMES_PER_CLUSTER

    scored = min((c["scored"] for c in counted.values()), default=0)
    fitted = min((len(v) for v in sample.values()), default=0)
    return [f"PNMI: K={K} clusters for {scored} scored frames (fewer than {FRAMES_PER_CLUSTER} frames per "
            f"cluster; {fitted} fit frames): PNMI and purity are biased upwards, read them against pnmi_chance, "
            f"or analyse more files / lower --pnmi_clusters"
            for K in ks if K * FRAMES_PER_CLUSTER > scored]


def score(paths: dict[str, Path], labels: _Labels, layers: list[str], meta: dict, options: AnalysisOptions, *,
          check_meta: dict | None = None) -> MeasureFamily:
    """The PNMI family of one folder: ``paths`` stem -> feature file (stems with an alignment only)."""
    family = MeasureFamily()
    try:
        grids = _grids(meta, layers)
    except UndefinedMeasureError as err:
        family.unavailable.update(dict.fromkeys(pnmi.SCORES, error_text(err)))
        return family
    ks = list(options.pnmi_clusters)
    frames = _Frames(labels, options, int(meta["sample_rate"]))
    sample, fit_files = _fit_sample(paths, layers, grids, frames, options, check_meta)
    models, failed = _fit(sample, ks, options.seed)
    tables, counted = _assign(paths, layers, grids, frames, models, ks, check_meta)
    family.info[INFO_KEY] = {
        "k": ks, "fit_frames_requested": options.pnmi_fit_frames,
        "fit_frames": {k: len(v) for k, v in sample.items()}, "fit_files": len(fit_files),
        "fit_frames_per_file": _fit_frames_per_file(options, len(paths)),
        "frames_scored": {k: c["scored"] for k, c in counted.items()},
        "frames_excluded": {k: {n: c[n] for n in pnmi.STATUS_NAMES.values()} for k, c in counted.items()},
        "n_files": len(paths), "n_phones": len(labels.phones), "seed": options.seed, "phone_tier": options.phone_tier,
        "kmeans": {"algorithm": "sklearn KMeans on raw frames", **pnmi.KMEANS_SETTINGS},
        "frame_rule": "the phone whose [start, end) holds the frame centre (i*hop + field/2) / sample_rate",
        "chance": CHANCE_METHOD}
    family.notes.extend(_score(family, tables, failed, layers, ks, options))
    family.notes.extend(_k_notes(ks, counted, sample))
    return family


def analyse(state: Collected, options: AnalysisOptions,
            source: ControlSource | None) -> tuple[MeasureFamily, ControlResult | None, list[str]]:
    """The PNMI family of a frame folder and of its random-init control: (family, control's result or None, notes).
    A span folder gets no PNMI, only the note that it does not apply."""
    if state.is_span:
        return MeasureFamily(), None, [SPAN_NOTE]
    labels = _read_labels(options, state.files)
    notes = []
    if labels.missing:
        notes.append(f"PNMI: {len(labels.missing)} of the {len(state.files)} analysed files have no alignment in "
                     f"{options.alignment_dir}; their frames are not scored")
    folder = Path(options.features_dir)
    paths = {s: store.feature_path(folder, s) for s in state.files if s in labels.segments}
    family = score(paths, labels, state.layers, state.meta, options)
    notes.extend(family.notes)
    for name, reason in family.unavailable.items():
        log.warning("%s could not be computed: %s", name, reason)
    control = control_result(source, paths, lambda shared: score(shared, labels, state.layers, state.meta, options,
                                                                 check_meta=state.meta))
    return family, control, notes
