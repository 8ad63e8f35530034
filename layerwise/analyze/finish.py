"""From the streaming pass to the typed result: every derived number of an analysis, computed once.

Per layer (over its own frames): mean, std, per-dimension mean and variance, PCA from the exact covariance
(explained-variance ratios up to the components holding 90 % of the variance, at least ``N_PCA_COMPONENTS``), the
sampled points on PC1/PC2, their t-SNE; between layers: CKA, cosine, frames compared; span measures (span folders,
with the random-init control) and alignment-free property measures when the package has them. What cannot be
computed is ``None`` with its reason, never a placeholder number.

Each measure family (span, alignment-free) comes back as a ``MeasureFamily`` with its control's family beside it;
the control is resolved once per run (``control.resolve_control``) and each control file checked once, and the
families are merged field by field (values, info, unavailable) — no key or note is parsed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

import numpy as np

from layerwise.analyze.control import ControlSource, read_control, resolve_control
from layerwise.analyze.options import FEW_N_BOOT, AnalysisOptions
from layerwise.analyze.spans import analyse as analyse_spans
from layerwise.analyze.spans import more_files
from layerwise.analyze.stream import Collected, control_meta
from layerwise.contract import layout
from layerwise.contract.names import speakers_of
from layerwise.contract.results import (
    N_PCA_COMPONENTS,
    AnalysisResult,
    ControlResult,
    LayerResult,
    MeasureFamily,
    RunInfo,
    SampleInfo,
    components_for,
)
from layerwise.errors import EmbedError, UsageError, error_text
from layerwise.stats.sample import effective_rank, pca_spectrum, project, tsne_embed
from layerwise.stats.uncertainty import StatisticIntervals, statistic_intervals

log = logging.getLogger(__name__)


def _speakers(utterances: np.ndarray) -> np.ndarray | None:
    return speakers_of(utterances)[0]


def _pca(stats, key: str, n: int, dim: int, sample_points: np.ndarray):
    """(ratios (k,), components_90, projection (n_points, 2), effective rank) of one layer, or raises EmbedError."""
    ratios, components, spectrum = pca_spectrum(stats.covariance(key), n, dim)
    needed = components_for(ratios)
    keep = max(N_PCA_COMPONENTS, needed or 0)
    coords = project(sample_points, stats.dim_mean(key), components[:2])
    return ratios[:keep], needed, np.pad(coords, ((0, 0), (0, 2 - coords.shape[1]))), effective_rank(spectrum)


def _layers(state: Collected, sample, cka: np.ndarray, seed: int, rate,
            cka_debiased: np.ndarray) -> list[LayerResult]:
    from layerwise.contract.workers import over_layers

    def embed(i: int) -> tuple:
        """PCA and t-SNE of layer i (the costly part; the layers run in parallel threads): (ratios, needed,
        projection, rank, embedding, reasons)."""
        key, reasons = state.layers[i], {}
        stats = state.stats.stats_of(key)
        ratios = needed = projection = embedding = rank = None
        try:
            ratios, needed, projection, rank = _pca(stats, key, stats.n, state.dims[i], sample.points[key])
            if needed is None:
                reasons["components_90"] = "the spectrum never reaches 90 % (numerically degenerate covariance)"
        except EmbedError as err:
            reasons["pca"] = error_text(err)
        try:
            embedding = tsne_embed(sample.points[key], seed=seed)
        except EmbedError as err:
            reasons["tsne"] = error_text(err)
        return ratios, needed, projection, rank, embedding, reasons

    for key in state.layers:
        state.stats.stats_of(key).settle()  # the threads below only read the moments
    out = []
    for i, future in over_layers(embed, range(len(state.layers)), "PCA + t-SNE"):
        key, stats = state.layers[i], state.stats.stats_of(state.layers[i])
        ratios, needed, projection, rank, embedding, reasons = future.result()
        previous = None
        if i:
            previous = float(cka[i, i - 1]) if np.isfinite(cka[i, i - 1]) else None
            if previous is None:
                reasons["cka_with_previous"] = "undefined (a constant layer, or no frames to match in time)"
        debiased = float(cka_debiased[i, i - 1]) if i and np.isfinite(cka_debiased[i, i - 1]) else None
        if i and debiased is None:
            reasons["cka_with_previous_debiased"] = ("undefined (a constant layer, fewer than 4 frames, or too few "
                                                     "frames for the unbiased estimate)")
        var = stats.dim_var(key)
        out.append(LayerResult(
            key=key, dim=state.dims[i], n_frames=stats.n, frame_rate=state.stats.frame_rate(key, rate),
            mean=stats.layer_mean()[key], std=stats.layer_std()[key], dim_mean=stats.dim_mean(key), dim_var=var,
            explained_variance_ratio=ratios, components_90=needed, projection=projection, embedding=embedding,
            cka_with_previous=previous, reasons=reasons, effective_rank=rank, cka_with_previous_debiased=debiased))
    return out


def _statistic_intervals(state: Collected, sample, layers: list[LayerResult], options: AnalysisOptions,
                         wall: dict) -> StatisticIntervals:
    """95 % intervals of the per-layer statistics (``stats.uncertainty``), under their summary.json names; none with
    ``n_boot`` 0 (the statistics' are jackknives: n_boot says only whether). Its time goes into ``wall``."""
    if not options.n_boot:
        return StatisticIntervals()
    start = time.perf_counter()
    values = {"pca_components_90": "components_90", "effective_rank": "effective_rank",
              "cka_with_previous": "cka_with_previous", "cka_with_previous_debiased": "cka_with_previous_debiased"}
    full = {name: {x.key: getattr(x, attr) for x in layers} for name, attr in values.items()}
    found = statistic_intervals({k: state.stats.stats_of(k) for k in state.layers},
                                {x.key: (x.mean, x.std) for x in layers}, sample.points, sample.utterances, full,
                                seed=options.seed)
    wall["statistic_intervals"] = time.perf_counter() - start
    return found


@dataclass
class _Measures:
    """The measure families of a run, merged in the order they were computed (span, alignment-free, ABX).

    values, info, unavailable, intervals, chance, n_test, methods : the union of the families' fields
    (``AnalysisResult.measures``, ``measure_info``, ``unavailable``, ``intervals``, ``chance``, ``n_test``,
    ``interval_methods``); control : the control's :class:`ControlResult` (the families' controls merged field by
    field; folder and meta of the first); notes : for the report (each family's part hands its notes in ``add``).
    """

    values: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    unavailable: dict = field(default_factory=dict)
    intervals: dict = field(default_factory=dict)
    chance: dict = field(default_factory=dict)
    n_test: dict = field(default_factory=dict)
    methods: dict = field(default_factory=dict)
    control: ControlResult | None = None
    notes: list[str] = field(default_factory=list)

    def add(self, family: MeasureFamily, control: ControlResult | None, notes: list[str]) -> None:
        self.values.update(family.values)
        self.info.update(family.info)
        self.unavailable.update(family.unavailable)
        self.intervals.update(family.intervals)
        self.chance.update(family.chance)
        self.n_test.update(family.n_test)
        self.methods.update(family.methods)
        if control is not None and self.control is not None:
            first = self.control
            control = replace(first, measures={**first.measures, **control.measures},
                              measure_info={**first.measure_info, **control.measure_info},
                              unavailable={**first.unavailable, **control.unavailable},
                              intervals={**first.intervals, **control.intervals},
                              chance={**first.chance, **control.chance}, n_test={**first.n_test, **control.n_test})
        self.control = control or self.control
        self.notes += notes + stable_notes(family)


def stable_notes(family: MeasureFamily) -> list[str]:
    """A note per published PWCCA (``layout.TWIN_MEASURES`` ending ``_stable``) whose stable twin lies outside its
    95 % interval on some layer: there the published value carries the one-hot null pair's rounding noise."""
    notes = []
    for twin in layout.TWIN_MEASURES:
        base = layout.MEASURE[twin].twin_of
        if not twin.endswith("_stable") or twin not in family.values or base not in family.intervals:
            continue
        outside = [key for key, (low, high) in family.intervals[base].items()
                   if family.values[twin].get(key) is not None and not low <= family.values[twin][key] <= high]
        if outside:
            notes.append(f"{base}: on {', '.join(outside)} the published value's 95 % interval does not contain its "
                         f"stable twin {twin} (one one-hot column dropped): there it carries the rounding noise of "
                         f"the one-hot's null direction; quote {twin}")
    return notes


def _span_part(state: Collected, options: AnalysisOptions,
               source: ControlSource) -> tuple[MeasureFamily, ControlResult | None, list[str]]:
    """The span measures of a span folder with its control's: (family, the control's result or None, notes)."""
    control_spans = None
    if source.folder is not None:
        control_spans = read_control(source.folder, state.spans, state.meta, dict(zip(state.layers, state.dims)))
        log.info("random-init control: %s (%d of the %d analysed utterances)", source.folder,
                 len(control_spans.stems), len(state.files))
    family, notes = analyse_spans(state.spans, control_spans, seed=options.seed, n_splits=options.probe_splits,
                                  cca_protocol=options.cca_protocol, mi_protocol=options.mi_protocol,
                                  unit=state.meta.get("span", "phone"), num_files=options.num_files,
                                  n_boot=options.n_boot)
    control = None
    if family.control is not None:
        control = ControlResult.of(family.control, features_dir=source.folder, n_files=len(control_spans.stems),
                                   meta=control_meta(source.folder, control_spans.stems))
    return family, control, notes


def _properties(state: Collected, options: AnalysisOptions,
                source: ControlSource) -> tuple[MeasureFamily, ControlResult | None, list[str]]:
    """Alignment-free property measures of a frame folder, with the random-init control when it shares utterances:
    (family, the control's result or None, notes)."""
    from layerwise.analyze import stream
    from layerwise.measures import alignment_free

    folder = source.folder
    control_state = stream.collect_control(folder, state, seed=options.seed) if folder is not None else None
    if control_state is not None:
        log.info("random-init control: %s (%d of the %d analysed utterances)", folder, len(control_state.stems),
                 len(state.files))
    family = alignment_free.analyse(state.properties, control_state, seed=options.seed,
                                    cca_protocol=options.cca_protocol, n_boot=options.n_boot)
    notes, control = list(family.notes), None
    if family.control is not None:
        control = ControlResult.of(family.control, features_dir=folder, n_files=len(control_state.stems),
                                   meta=control_meta(folder, control_state.stems))
        if len(control_state.stems) < len(state.files):
            notes.append(f"random-init control: {len(control_state.stems)} of the {len(state.files)} analysed "
                         f"utterances in {folder}; its measures use those")
    return family, control, notes


def _explain(state: Collected, unavailable: dict[str, str], measures: dict,
             num_files: int = 0) -> dict[str, dict[str, str]]:
    """Reasons a reader can act on, rewritten in place in ``unavailable``, and the cells that are empty by
    definition (column -> layer -> why), for the report's table."""
    from layerwise.measures.alignment_free import BASE_LAYER

    keys = state.layers
    if "cca_intra" in unavailable and all(layout.parse_layer_key(k)[0] == "conv" for k in keys):
        unavailable["cca_intra"] = (f"does not apply to conv-only (rep_type local) folders: it compares each "
                                    f"transformer layer with {BASE_LAYER}")
    elif "cca_intra" in unavailable and BASE_LAYER not in keys:
        unavailable["cca_intra"] += " (add 0 to --layers)"
    found = _speakers(np.array(state.files))
    speakers = set() if found is None else set(found.tolist())
    if len(speakers) == 1:
        for name, reason in list(unavailable.items()):
            if name in layout.SPEAKER_MEASURES:
                unavailable[name] = (f"{reason}, but the analysed files hold one speaker only (speaker "
                                     f"{next(iter(speakers))}; --num_files N takes the first N files by name): "
                                     f"{more_files(num_files)}")
    cells = {"cka_with_previous": {keys[0]: "the first layer: no previous one"},
             "cka_with_previous_debiased": {keys[0]: "the first layer: no previous one"}}
    if BASE_LAYER in (measures.get("cca_intra") or {}):
        cells["cca_intra"] = {BASE_LAYER: "the reference layer"}
    return cells


def _requested(state: Collected, options: AnalysisOptions) -> list[str]:
    """Measures this run is expected to produce (a span folder: the span measures and, with word_embeddings or
    speakers_file, cca_word_embedding and the gender probe; a frame folder with ABX items:
    the ABX measures; a frame folder in one process: the property measures its files allow — cca_mel with stored
    filterbanks, cca_intra with layer_0 analysed, the speaker measures with LibriSpeech names); an unavailable one
    (whole or on some layers) makes the CLI exit 1."""
    from layerwise.analyze import standard

    if state.spans is not None:  # the span measures and the standard stages asked for (cca_word_embedding)
        return list(layout.SPAN_MEASURES) + standard.requested(state, options)
    requested = list(layout.ABX_MEASURES) if options.abx else []
    requested += standard.requested(state, options)
    if state.properties is not None:  # one process over a frame folder: the property measures its files allow
        from layerwise.measures.alignment_free import BASE_LAYER, MEASURES

        c = state.properties
        allowed = {"cca_mel": c.n_fbank_files > 0, "cca_intra": BASE_LAYER in c.layers,
                   **dict.fromkeys(MEASURES[2:], c.speakers()[0] is not None)}
        requested += [m for m in MEASURES if allowed[m]]
    return requested


def _notes(state: Collected, result_layers: list[LayerResult], n_boot: int) -> list[str]:
    notes = []
    if 0 < n_boot < FEW_N_BOOT:
        notes.append(f"n_boot {n_boot}: a 95 % interval from fewer than {FEW_N_BOOT} resamples is rough (its ends "
                     f"rest on one or two replicates); use --n_boot 200 or more")
    if len(set(state.dims)) > 1:
        notes.append("cosine is undefined (null) between layers of different dims")
    if len(state.stats.groups) > 1:
        notes.append(state.stats.rule())
    if state.empty:
        notes.append(f"{len(state.empty)} files without frames were skipped: {', '.join(state.empty[:5])}")
    return notes


def _sample(state: Collected, options: AnalysisOptions, order: list[str], unit: str):
    """(the sampled points, their speakers or None), after refusing a run with no statistic or a colouring the
    files cannot give."""
    counts = {k: state.stats.n_frames(k) for k in state.layers}
    if min(counts.values(), default=0) < 2:
        raise UsageError(f"only {min(counts.values(), default=0)} {unit} in {len(state.files)} files: no statistic "
                         f"is defined — {more_files(options.num_files)}")
    # Fewer than sample.MIN_TSNE_POINTS: statistics and similarities are still written; PCA/t-SNE of the layers that
    # are too small carry their reason (LayerResult.reasons), as every other measure that cannot be computed.
    sample = state.sampler.result(order=order)
    speakers = _speakers(sample.utterances)
    if options.color_by == "speaker" and speakers is None:
        raise UsageError("color_by=speaker needs LibriSpeech file names {speaker}-{chapter}-{utterance}; these "
                         "files are named otherwise — colour by utterance")
    if options.color_by == "label" and sample.labels is None:
        raise UsageError("color_by=label needs a span folder (extracted with span=phone or word)")
    return sample, speakers


def _run_info(options: AnalysisOptions, wall: dict[str, float], shards: int) -> RunInfo:
    return RunInfo(features_dir=str(options.features_dir), output_dir=str(options.output_dir), seed=options.seed,
                   max_points=options.max_points, num_files=options.num_files, similarity=options.similarity,
                   cka_vmin=options.cka_vmin, color_by=options.color_by, cca_protocol=options.cca_protocol,
                   mi_protocol=options.mi_protocol, wall_s=wall, command=options.command, shards=shards,
                   file_list=None if options.file_list is None else str(options.file_list))


def finish(state: Collected, options: AnalysisOptions, *, order: list[str], wall: dict[str, float],
           shards: int = 1, preflight=None) -> AnalysisResult:
    """The typed result of a finished streaming pass (``order``: stems in file-name order, for the sample).
    preflight : what ``analyze.preflight.check`` resolved before the pass (the control, the ABX items); None (a
    merge): resolved here."""
    span = state.meta.get("span", layout.FRAME_SPAN)
    unit = "frames" if span == layout.FRAME_SPAN else f"{span} segments"
    sample, speakers = _sample(state, options, order, unit)
    measured = state.spans is not None or state.properties is not None or options.abx
    if preflight is not None:
        source = preflight.source if measured else None
    else:
        source = resolve_control(options.features_dir, options.control_dir) if measured else None  # once per run
    found = _Measures()
    if state.spans is not None:
        start = time.perf_counter()
        found.add(*_span_part(state, options, source))
        wall = {**wall, "span_measures": time.perf_counter() - start}
    start = time.perf_counter()
    cka, cka_debiased = state.stats.cka(), state.stats.cka_debiased()
    layers = _layers(state, sample, cka, options.seed, state.meta.get("sample_rate"), cka_debiased)
    wall = {**wall, "pca_tsne": time.perf_counter() - start}
    log.info("PCA and t-SNE of %d points × %d layers in %.1f s", len(sample), len(layers), wall["pca_tsne"])
    statistics = _statistic_intervals(state, sample, layers, options, wall)
    found.notes += statistics.notes()
    if state.properties is not None:
        start = time.perf_counter()
        found.add(*_properties(state, options, source))
        wall["property_measures"] = time.perf_counter() - start
        log.info("alignment-free property measures in %.1f s", wall["property_measures"])
    if options.abx:
        from layerwise.analyze import abx

        start = time.perf_counter()
        found.add(*abx.analyse(state, options, source, preflight.items if preflight is not None else None))
        wall["abx"] = time.perf_counter() - start
        log.info("ABX error rates in %.1f s", wall["abx"])
    from layerwise.analyze import standard  # PNMI, gender probe, word-embedding CCA: own stages, wall entries

    for stage, part in standard.stages(state, options):
        start = time.perf_counter()
        found.add(*part(state, options, source))
        wall[stage] = time.perf_counter() - start
    no_control = source.no_control_note() if found.control is None and measured else None
    if no_control is not None:
        found.notes.append(no_control)  # logged with the other notes at the end
    not_applicable = _explain(state, found.unavailable, found.values, options.num_files)
    if found.control is not None:
        _explain(state, found.control.unavailable, found.control.measures, options.num_files)
    return AnalysisResult(
        files=list(order), layers=layers, cka=cka, cosine=state.stats.cosine(), similarity_frames=state.stats.frames(),
        similarity_rule=state.stats.rule(),
        sample=SampleInfo(sample.utterances, sample.frame_index, sample.labels, speakers),
        meta=state.meta, run=_run_info(options, wall, shards), unit=unit, unavailable=found.unavailable,
        notes=_notes(state, layers, options.n_boot) + found.notes, requested=_requested(state, options),
        intervals={**found.intervals, **statistics.intervals},
        interval_methods={**found.methods, **statistics.methods}, chance=found.chance, n_test=found.n_test,
        n_boot=options.n_boot, cka_debiased=cka_debiased,
        measures=found.values, measure_info=found.info, control=found.control, not_applicable=not_applicable,
        no_control=no_control)
