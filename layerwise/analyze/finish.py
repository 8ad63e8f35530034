"""From the streaming pass to the typed result: every derived number of an analysis, computed once.

Per layer (over its own frames): mean, std, per-dimension mean and variance, PCA from the exact covariance
(explained-variance ratios up to the components holding 90 % of the variance, at least ``N_PCA_COMPONENTS``), the
sampled points on PC1/PC2, their t-SNE; between layers: CKA, cosine, frames compared; span measures (span folders,
with the random-init control) and alignment-free property measures when the package has them. What cannot be
computed is ``None`` with its reason, never a placeholder number.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from layerwise.analyze.control import (
    CONTROL_KEY,
    CONTROL_NONE,
    SPAN_MEASURES,
    auto_control_path,
    control_folder,
    read_control,
)
from layerwise.analyze.control import analyse as analyse_spans
from layerwise.analyze.options import AnalysisOptions
from layerwise.analyze.stream import Collected, control_meta
from layerwise.contract import layout
from layerwise.contract.names import speaker_of
from layerwise.contract.results import (
    N_PCA_COMPONENTS,
    NO_CONTROL,
    AnalysisResult,
    ControlResult,
    LayerResult,
    RunInfo,
    SampleInfo,
    components_for,
)
from layerwise.errors import EmbedError, UsageError
from layerwise.stats.sample import pca_from_covariance, project, tsne_embed

log = logging.getLogger(__name__)


def _speakers(utterances: np.ndarray) -> np.ndarray | None:
    try:
        return np.array([speaker_of(u) for u in utterances], dtype=str)
    except UsageError:
        return None


def _pca(stats, key: str, n: int, dim: int, sample_points: np.ndarray):
    """(ratios (k,), components_90, projection (n_points, 2)) of one layer, or raises EmbedError."""
    ratios, components = pca_from_covariance(stats.covariance(key), n, dim)
    needed = components_for(ratios)
    keep = max(N_PCA_COMPONENTS, needed or 0)
    coords = project(sample_points, stats.dim_mean(key), components[:2])
    return ratios[:keep], needed, np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))


def _layers(state: Collected, sample, cka: np.ndarray, seed: int, rate) -> list[LayerResult]:
    from tqdm import tqdm

    out = []
    for i, key in enumerate(tqdm(state.layers, desc="PCA + t-SNE", unit="layer", disable=None)):
        stats, reasons = state.stats.stats_of(key), {}
        ratios = needed = projection = embedding = None
        try:
            ratios, needed, projection = _pca(stats, key, stats.n, state.dims[i], sample.points[key])
            if needed is None:
                reasons["components_90"] = "the spectrum never reaches 90 % (numerically degenerate covariance)"
        except EmbedError as err:
            reasons["pca"] = str(err)
        try:
            embedding = tsne_embed(sample.points[key], seed=seed)
        except EmbedError as err:
            reasons["tsne"] = str(err)
        previous = None
        if i:
            previous = float(cka[i, i - 1]) if np.isfinite(cka[i, i - 1]) else None
            if previous is None:
                reasons["cka_with_previous"] = "undefined (a constant layer, or no frames to match in time)"
        var = stats.dim_var(key)
        out.append(LayerResult(
            key=key, dim=state.dims[i], n_frames=stats.n, frame_rate=state.stats.frame_rate(key, rate),
            mean=stats.layer_mean()[key], std=stats.layer_std()[key], dim_mean=stats.dim_mean(key), dim_var=var,
            explained_variance_ratio=ratios, components_90=needed, projection=projection, embedding=embedding,
            cka_with_previous=previous, reasons=reasons))
    return out


def _span_part(state: Collected, options: AnalysisOptions):
    """(measures, measure_info, unavailable, control, notes) of a span folder; empty for frame folders."""
    if state.spans is None:
        return {}, {}, {}, None, []
    try:
        folder = control_folder(options.features_dir, options.control_dir)
        control_spans = None
        if folder is not None:
            from layerwise.analyze.stream import check_control_folder

            control_spans = read_control(folder, state.spans, state.meta, dict(zip(state.layers, state.dims)))
            check_control_folder(folder, state)  # then every other setting of the extraction identity
            log.info("random-init control: %s (%d of the %d analysed utterances)", folder, len(control_spans.stems),
                     len(state.files))
    except UsageError as err:  # AnalysisError or a control of another extraction identity
        from layerwise.errors import AnalysisError

        raise AnalysisError(str(err)) from err
    summary, notes = analyse_spans(state.spans, control_spans, control_dir=folder, seed=options.seed,
                                        n_splits=options.probe_splits, cca_protocol=options.cca_protocol,
                                        mi_protocol=options.mi_protocol, unit=state.meta.get("span", "phone"))
    control_summary = summary.pop(CONTROL_KEY, None)
    measures, info, unavailable = _split(summary)
    control_result = None
    if control_summary is not None:
        c_measures, c_info, c_unavailable = _split(control_summary)
        control_result = ControlResult(str(c_info.pop("features_dir", folder)), int(c_info.pop("n_files", 0)),
                                       c_measures, c_info, c_unavailable,
                                       meta=control_meta(folder, control_spans.stems if control_spans is not None else []))
    notes = [n for n in notes if "could not be computed" not in n]  # listed from ``unavailable`` instead
    return measures, info, unavailable, control_result, notes


def _split(summary: dict) -> tuple[dict, dict, dict]:
    """A measures dict as returned by the span/property functions -> (per-layer measures, scalars/info,
    unavailable)."""
    summary = dict(summary)
    unavailable = dict(summary.pop("unavailable", {}) or {})
    if "span_measures_skipped" in summary:
        unavailable["span measures"] = str(summary.pop("span_measures_skipped"))
    measures = {k: v for k, v in summary.items() if isinstance(v, dict) and k != "span_measures_info"}
    info = {k: v for k, v in summary.items() if k not in measures}
    return measures, info, unavailable


def _properties(state: Collected, options: AnalysisOptions) -> tuple[dict, dict, ControlResult | None, list]:
    """Alignment-free property measures of a frame folder, with the random-init control when there is one:
    (measures, unavailable, the control's result or None, notes)."""
    from layerwise.analyze import stream
    from layerwise.measures import alignment_free

    folder = control_folder(options.features_dir, options.control_dir)
    control_state = stream.collect_control(folder, state, seed=options.seed) if folder is not None else None
    if control_state is not None:
        log.info("random-init control: %s (%d of the %d analysed utterances)", folder, len(control_state.stems),
                 len(state.files))
    measures, unavailable = alignment_free.analyse(state.properties, control_state, seed=options.seed,
                                               cca_protocol=options.cca_protocol)
    control_measures = measures.pop(CONTROL_KEY, None)
    notes, result = [], None
    if control_state is not None:
        prefix = f"{CONTROL_KEY}."
        result = ControlResult(str(folder), len(control_state.stems), control_measures or {},
                               unavailable={k[len(prefix):]: v for k, v in unavailable.items() if k.startswith(prefix)},
                               meta=control_meta(folder, control_state.stems))
        unavailable = {k: v for k, v in unavailable.items() if not k.startswith(prefix)}
        if len(control_state.stems) < len(state.files):
            notes.append(f"random-init control: {len(control_state.stems)} of the {len(state.files)} analysed utterances "
                         f"in {folder}; its measures use those")
    return measures, unavailable, result, notes


def no_control_note(options: AnalysisOptions, folder: Path | None) -> str:
    """The one note of a run whose measures have no random-init control (``folder``: the control folder found,
    which then shares no analysed utterance)."""
    how = "extract one with extract_features.py --random_init (same settings and files) to draw the dashed lines"
    if folder is not None:
        return (f"{NO_CONTROL}: {folder} holds none of the analysed utterances; extract them "
                f"there with --random_init to draw the dashed lines")
    if options.control_dir is None or str(options.control_dir).lower() == CONTROL_NONE:
        return f"{NO_CONTROL}: control_dir none was given; the figures show the analysed model only"
    return f"{NO_CONTROL}: looked for {auto_control_path(options.features_dir)}; {how}"


def _explain(state: Collected, unavailable: dict[str, str], measures: dict) -> dict[str, dict[str, str]]:
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
            if name.startswith("speaker_"):
                unavailable[name] = (f"{reason}, but the analysed files hold one speaker only (speaker "
                                     f"{next(iter(speakers))}; --num_files N takes the first N files by name): use "
                                     f"more files (--num_files 0 = all)")
    cells = {"cka_with_previous": {keys[0]: "the first layer: no previous one"}}
    if BASE_LAYER in (measures.get("cca_intra") or {}):
        cells["cca_intra"] = {BASE_LAYER: "the reference layer"}
    return cells


def _requested(state: Collected) -> list[str]:
    """Measures this run is expected to produce (a span folder: the span measures); an unavailable one makes the
    CLI exit non-zero. Alignment-free property measures are opportunistic (e.g. cca_mel needs stored filterbanks)."""
    return list(SPAN_MEASURES) if state.spans is not None else []


def _notes(state: Collected, result_layers: list[LayerResult]) -> list[str]:
    notes = []
    if len(set(state.dims)) > 1:
        notes.append("cosine is undefined (null) between layers of different dims")
    if len(state.stats.groups) > 1:
        notes.append(state.stats.rule())
    if state.empty:
        notes.append(f"{len(state.empty)} files without frames were skipped: {', '.join(state.empty[:5])}")
    return notes


def finish(state: Collected, options: AnalysisOptions, *, order: list[str], wall: dict[str, float],
           shards: int = 1) -> AnalysisResult:
    """The typed result of a finished streaming pass (``order``: stems in file-name order, for the sample)."""
    unit = "frames" if state.meta.get("span", "frame") == "frame" else f"{state.meta['span']} segments"
    counts = {k: state.stats.n_frames(k) for k in state.layers}
    if min(counts.values(), default=0) < 2:
        raise UsageError(f"only {min(counts.values(), default=0)} {unit} in {len(state.files)} files: no statistic "
                         f"is defined — use more files (num_files, 0 = all)")
    # Fewer than sample.MIN_TSNE_POINTS: statistics and similarities are still written; PCA/t-SNE of the layers that
    # are too small carry their reason (LayerResult.reasons), as every other measure that cannot be computed.
    sample = state.sampler.result(order=order)
    speakers = _speakers(sample.utterances)
    if options.color_by == "speaker" and speakers is None:
        raise UsageError("color_by=speaker needs LibriSpeech file names {speaker}-{chapter}-{utterance}; these "
                         "files are named otherwise — colour by utterance")
    if options.color_by == "label" and sample.labels is None:
        raise UsageError("color_by=label needs a span folder (extracted with span=phone or word)")
    start = time.perf_counter()
    span_measures, info, unavailable, control, span_notes = _span_part(state, options)
    if state.spans is not None:
        wall = {**wall, "span_measures": time.perf_counter() - start}
    start = time.perf_counter()
    cka = state.stats.cka()
    layers = _layers(state, sample, cka, options.seed, state.meta.get("sample_rate"))
    wall = {**wall, "pca_tsne": time.perf_counter() - start}
    log.info("PCA and t-SNE of %d points × %d layers in %.1f s", len(sample), len(layers), wall["pca_tsne"])
    control_notes = []
    if state.properties is not None:
        start = time.perf_counter()
        props, props_unavailable, props_control, control_notes = _properties(state, options)
        wall["property_measures"] = time.perf_counter() - start
        log.info("alignment-free property measures in %.1f s", wall["property_measures"])
        span_measures.update(props)
        unavailable.update(props_unavailable)
        control = control or props_control
    if control is None and (state.spans is not None or state.properties is not None):
        folder = control_folder(options.features_dir, options.control_dir)
        control_notes.append(no_control_note(options, folder))  # logged with the other notes at the end
    not_applicable = _explain(state, unavailable, span_measures)
    if control is not None:
        _explain(state, control.unavailable, control.measures)
    run = RunInfo(features_dir=str(options.features_dir), output_dir=str(options.output_dir), seed=options.seed,
                  max_points=options.max_points, num_files=options.num_files, similarity=options.similarity,
                  cka_vmin=options.cka_vmin, color_by=options.color_by, cca_protocol=options.cca_protocol,
                  mi_protocol=options.mi_protocol, wall_s=wall, command=options.command, shards=shards,
                  file_list=None if options.file_list is None else str(options.file_list))
    return AnalysisResult(
        files=list(order), layers=layers, cka=cka, cosine=state.stats.cosine(), similarity_frames=state.stats.frames(),
        similarity_rule=state.stats.rule(),
        sample=SampleInfo(sample.utterances, sample.frame_index, sample.labels, speakers),
        meta=state.meta, run=run, unit=unit, notes=_notes(state, layers) + span_notes + control_notes,
        unavailable=unavailable, requested=_requested(state),
        measures=span_measures, measure_info=info, control=control, not_applicable=not_applicable)
