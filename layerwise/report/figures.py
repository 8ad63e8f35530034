"""The figure registry of both reports: :class:`Figure` (file name, title, caption, when it applies, the callable
that draws it), :class:`Drawn` (a figure a run wrote) and :func:`draw_all`, which draws the entries that apply.

An analysis's figures are :data:`FIGURES`, defined here and nowhere else; a comparison's are built per result by
``compareplots.figures_of`` (one heatmap per pair of folders) with the same type. ``html`` reads the drawn entries
for headings and captions. The analysis's draw callables only pick numbers out of an
:class:`~layerwise.contract.results.AnalysisResult` and call the matching ``plots``/``scatter`` function (matplotlib is
imported when the first figure is drawn, not when this module is imported).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from layerwise.contract.layout import ABX_MEASURES, MEASURE, PROPERTY_MEASURES, SPAN_MEASURES
from layerwise.contract.results import N_PCA_COMPONENTS, AnalysisResult
from layerwise.errors import caused_by_interrupt, error_text

log = logging.getLogger(__name__)

NO_CONTROL_CAPTION = ("No random-initialisation control in this run, so no dashed lines: only the analysed model is "
                      "drawn (see the notes for where the control was looked for).")


@dataclass(frozen=True)
class Figure:
    """One figure of a report: ``name`` its PNG file in the output folder, ``title`` its heading, ``caption`` how to
    read it. applies(result) says whether this run draws it; draw(result, path) writes the PNG and returns its path,
    or None when there is nothing to draw (e.g. a 1×1 heatmap). ``result`` is whatever the report is of (an
    ``AnalysisResult``, a ``Comparison``)."""

    name: str
    title: str
    caption: str
    applies: Callable[[object], bool]
    draw: Callable[[object, Path], Path | None]
    control: str = ""  # what the dashed lines are: added to the caption when the run has a random-init control
    describe: Callable[[object], str] | None = None  # the caption for this run's content, when it depends on it

    def caption_for(self, result) -> str:
        """The caption of this figure in ``result`` (``describe(result)`` when set, else ``caption``): with the
        control's sentence when a control is drawn, and NO_CONTROL_CAPTION instead when this figure would draw one
        but the run has none."""
        text = self.describe(result) if self.describe is not None else self.caption
        if not self.control:
            return text
        return f"{text} {self.control if result.control is not None else NO_CONTROL_CAPTION}"


@dataclass(frozen=True)
class Drawn:
    """A figure written by this run: its registry entry and where the PNG is."""

    figure: Figure
    path: Path
    caption: str = ""  # the caption for this run (Figure.caption_for); the registry's caption when empty

    def __post_init__(self):
        if not self.caption:
            object.__setattr__(self, "caption", self.figure.caption)

    @property
    def name(self) -> str:
        return self.figure.name


def _plots():
    from layerwise.report import plots  # matplotlib on first use only

    return plots


def _scatter():
    from layerwise.report import scatter

    return scatter


def subtitle(result: AnalysisResult) -> str:
    """``hubert-base-ls960: 12 files, 3,646 frames`` — the model's tag, not a machine path; layers at several frame
    rates (conv blocks) give each group of layers its own count (``C0: 48,000; C1: 24,000; … frames``)."""
    from layerwise.contract.names import model_label, plural

    counts: dict[int, list[str]] = {}
    for x in result.layers:
        counts.setdefault(x.n_frames, []).append(x.key)
    if len(counts) > 1:  # conv blocks at their own frame rates: each block's own count, not the coarsest one's
        from layerwise.contract.names import layer_range

        frames = "; ".join(f"{layer_range(keys)}: {n:,}" for n, keys in counts.items()) + f" {result.unit}"
    else:
        frames = f"{result.n_frames:,} {result.unit}"
    return f"{model_label(result.meta.get('model_name'))}: {plural(len(result.files), 'file')}, {frames}"


def model_name(result: AnalysisResult) -> str:
    """The legend's name of the analysed model: its tag, "(random init)" added when its weights are random."""
    from layerwise.contract.names import model_label

    tag = model_label(result.meta.get("model_name"))
    return f"{tag} (random init)" if result.meta.get("random_init") else tag


def bands(result: AnalysisResult) -> dict:
    """run -> (intervals, chance) for the curves: the analysed model's and, with a control, the control's."""
    out = {"trained": (result.intervals, getattr(result, "chance", {}))}
    if result.control is not None:
        out["random init"] = (result.control.intervals, getattr(result.control, "chance", {}))
    return out


def _groups(result: AnalysisResult):
    """(group per point, group names, what) for the scatters, from ``result.run.color_by``."""
    choice = None if result.run.color_by == "auto" else result.run.color_by
    return _scatter().point_groups(result.sample.utterances, result.sample.labels, color_by=choice,
                                   speakers=result.sample.speakers)


def _draw_statistics(result: AnalysisResult, path: Path):
    keys = result.keys
    return _plots().feature_statistics(keys, {x.key: x.mean for x in result.layers},
                                       {x.key: x.std for x in result.layers}, path, subtitle=subtitle(result),
                                       dim_mean={x.key: x.dim_mean for x in result.layers},
                                       dim_var={x.key: x.dim_var for x in result.layers},
                                       ranks={"effective_rank": {x.key: x.effective_rank for x in result.layers},
                                              "pca_components_90": {x.key: x.components_90 for x in result.layers}},
                                       intervals=result.intervals)


def _draw_similarity(kind: str, result: AnalysisResult, path: Path):
    if len(result.layers) < 2:
        return None  # a single layer has no heatmap worth drawing
    matrix = {"cka": result.cka, "cka_debiased": result.cka_debiased, "cosine": result.cosine}[kind]
    vmin = result.run.cka_vmin if kind != "cosine" else None
    return _plots().similarity_heatmap(matrix, result.keys, path, kind=kind, subtitle=subtitle(result), vmin=vmin)


def _similarity_applies(kind: str, result: AnalysisResult) -> bool:
    wanted = "cka" if kind == "cka_debiased" else kind
    present = kind != "cka_debiased" or getattr(result, "cka_debiased", None) is not None
    return result.run.similarity in (wanted, "both") and len(result.layers) > 1 and present


def _similarity(kind: str):
    """(applies, draw) of the ``kind`` heatmap: partials of module-level functions (a Figure pickles)."""
    return partial(_similarity_applies, kind), partial(_draw_similarity, kind)


def _draw_pca(result: AnalysisResult, path: Path):
    groups, names, what = _groups(result)
    ratios = {x.key: x.explained_variance_ratio for x in result.layers}
    projections = {x.key: x.projection for x in result.layers}
    return _scatter().pca_figure(result.keys, ratios, projections, groups, names, what, path,
                               subtitle=f"{subtitle(result)}; scatter: {len(result.sample)} sampled",
                               n_show=N_PCA_COMPONENTS)


def _draw_tsne(result: AnalysisResult, path: Path):
    groups, names, what = _groups(result)
    embeddings = {x.key: x.embedding if x.embedding is not None else f"t-SNE not computed:\n{x.reasons.get('tsne')}"
                  for x in result.layers}
    return _scatter().tsne_figure(result.keys, embeddings, groups, names, what, path,
                                subtitle=f"{len(result.sample)} of {result.n_frames:,} {result.unit} sampled (seed "
                                         f"{result.run.seed}); {subtitle(result)}")


def _draw_variance(result: AnalysisResult, path: Path):
    return _plots().variance_distribution(result.keys, {x.key: x.dim_var for x in result.layers}, path,
                                          subtitle=subtitle(result))


def _span_dict(measures: dict, info: dict) -> dict:
    return {**{k: measures[k] for k in SPAN_MEASURES if k in measures}, **info}


def _draw_span(result: AnalysisResult, path: Path):
    control = None
    if result.control is not None and "probe_accuracy" in result.control.measures:
        control = _span_dict(result.control.measures, result.control.measure_info)
    return _plots().span_measures(result.keys, _span_dict(result.measures, result.measure_info), control, path,
                                  subtitle=subtitle(result), span=result.meta.get("span", "span"),
                                  bands=bands(result), model=model_name(result))


def _has_span(result: AnalysisResult) -> bool:
    return "probe_accuracy" in result.measures and "probe_majority_baseline" in result.measure_info


def _has_properties(result: AnalysisResult) -> bool:
    """Any registry measure besides the span folders' label measures (span_measures.png) and ABX (abx.png): the
    property measures and every measure added to the registry since (drawn through the registry, no special case)."""
    own = set(SPAN_MEASURES) | set(ABX_MEASURES)
    return any(k in result.measures and k not in own and MEASURE[k].twin_of not in SPAN_MEASURES
               for k in MEASURE) or any(k in result.measures for k in PROPERTY_MEASURES)


MAJORITY_SUFFIX = ("_accuracy", "_majority_baseline")  # probe measure <p>_accuracy -> its <p>_majority_baseline


def majority_of(measures: dict, info: dict) -> dict:
    """measure -> the majority-class baseline of each probe measure (``<probe>_accuracy`` ->
    ``<probe>_majority_baseline`` in measure_info or measures: one float, or layer -> float), for the probes whose
    baseline is not a registry measure of its own (speaker's is, and is drawn with its group)."""
    out = {}
    for key in MEASURE:
        if key.endswith(MAJORITY_SUFFIX[0]):
            base = key.removesuffix(MAJORITY_SUFFIX[0]) + MAJORITY_SUFFIX[1]
            level = info.get(base, measures.get(base))
            if base not in MEASURE and level is not None:
                out[key] = level
    return out


def per_k_of(info: dict, intervals: dict, chance: dict) -> dict:
    """measure -> {str(K): (values, intervals, chance)} of each registry measure with ``<measure>_per_k`` in
    measure_info (PNMI and purities, one entry per K of --pnmi_clusters), with ``<measure>_per_k_ci`` /
    ``_per_k_chance`` when written, else (first K only) the measure's own interval and chance."""
    out = {}
    for key in MEASURE:
        per_k = info.get(f"{key}_per_k") or {}
        ci, level = info.get(f"{key}_per_k_ci") or {}, info.get(f"{key}_per_k_chance") or {}
        first = next(iter(per_k), None)
        out.update({key: {k: (values, ci.get(k) or (intervals.get(key) if k == first else None),
                              level.get(k) or (chance.get(key) if k == first else None))
                          for k, values in per_k.items()}} if per_k else {})
    return out


def _draw_properties(result: AnalysisResult, path: Path):
    runs = {"trained": result} if result.control is None else {"trained": result, "random init": result.control}
    majority = {run: majority_of(r.measures, r.measure_info) for run, r in runs.items()}
    per_k = {run: per_k_of(r.measure_info, r.intervals, getattr(r, "chance", {})) for run, r in runs.items()}
    control = result.control.measures if result.control is not None else None
    return _plots().what_each_layer_encodes(result.keys, result.measures, control, path, subtitle=subtitle(result),
                                            bands=bands(result), model=model_name(result), majority=majority,
                                            per_k=per_k)


ENCODES_INTRO = ("One panel per measure this run computed (own y-axis; one Okabe–Ito colour per measure, colour-blind "
                 "safe); x: layer. Band: 95 % interval; grey dashed: chance (the same measure on permuted labels); "
                 "dotted: a probe's majority-class baseline.")
# measure key -> how to read its panel (said once, for the measures drawn in this run)
ENCODES_READING = {
    "probe_accuracy": "Label probe accuracy, PWCCA and MI are the measures of span_measures.png, one panel each: read "
                      "the probe as its height above the dotted majority-class baseline and above chance.",
    "mi_adjusted": "Label MI (adjusted) is chance-corrected: 0 = clusters unrelated to the labels.",
    "cca_mel": "CCA with the log-mel filterbank: canonical correlation between the layer's frames and the log-mel "
               "frames at the same times; high where a layer keeps the acoustic surface.",
    "cca_intra": "CCA with L0: the same against the transformer input (L0 against itself is 1).",
    "speaker_probe_accuracy": "Speaker probe accuracy: a linear probe predicting the speaker from utterance means "
                              "on held-out utterances, against its dotted majority baseline.",
    "speaker_pwcca": "Speaker PWCCA: projection-weighted CCA between frames and one-hot speaker.",
    "pnmi": "PNMI: the share of the phone uncertainty that the frame's k-means cluster removes (I(phone; cluster) / "
            "H(phone); 0 = none, 1 = all), from the frames' alignments.",
    "phone_purity": "Phone purity: how pure each cluster is (the accuracy of naming a cluster by its majority phone).",
    "cluster_purity": "Cluster purity: how concentrated each phone is in one cluster (falls as K grows).",
    "cca_word_embedding": "CCA with word embeddings: PWCCA between word-segment vectors and the embeddings of their "
                          "words (--word_embeddings); higher = more of the word's lexical identity is linearly "
                          "there.",
    "gender_probe_accuracy": "Gender probe accuracy: a linear probe predicting the speaker's sex (SPEAKERS.TXT) from "
                             "utterance means, train and test speakers disjoint; read it against its dotted majority "
                             "baseline and chance.",
}
ENCODES_STABLE = ("PWCCA (stable), beside PWCCA under --cca_protocol pasad: the published weighting gives the centred "
                  "one-hot's null direction a canonical pair of rounding noise, so a 1e-12 change of the input can "
                  "move the published value; the stable twin drops one one-hot column, which removes that pair. "
                  "Where the two panels differ, that noise moved the published curve: compare papers with the "
                  "published one, read layers with the stable one. The default protocol leaves that direction out "
                  "already, so it has no stable twin.")
ENCODES_PER_K = "Several K (--pnmi_clusters): one line per K, labelled K=… in the panel; the control shows the first K."
ENCODES_HSU = ("For context, as reported by Hsu et al. 2021 (LibriSpeech, K=100): k-means on MFCCs gives cluster "
               "purity ≈ 0.099, phone purity ≈ 0.335 and PNMI ≈ 0.255, and HuBERT-base PNMI ≈ 0.70 for layers 7–12; "
               "other models and data need not match.")


def _encodes_caption(result: AnalysisResult) -> str:
    """How to read what_each_layer_encodes.png in this run: the intro, then one sentence per measure drawn (twins
    explained when present, K lines when several K, Hsu et al. 2021's values as context when PNMI is drawn)."""
    drawn = {k for k, v in result.measures.items() if any(x is not None for x in (v or {}).values())}
    parts = [ENCODES_INTRO] + [text for key, text in ENCODES_READING.items() if key in drawn]
    if any(k.endswith("_stable") for k in drawn):
        parts.append(ENCODES_STABLE)
    if "pnmi" in drawn:
        if len(result.measure_info.get("pnmi_per_k") or {}) > 1:
            parts.append(ENCODES_PER_K)
        parts.append(ENCODES_HSU)
    return " ".join(parts)


def _has_abx(result: AnalysisResult) -> bool:
    return any(k in result.measures for k in ABX_MEASURES)


def _draw_abx(result: AnalysisResult, path: Path):
    control = result.control
    info = result.measure_info.get("abx_info", {})
    limits = (f"{info.get('n_items', 0):,} items, {info.get('distance')} distance, subsampling max_size_group "
              f"{info.get('max_size_group') or 'off'}, max_x_across {info.get('max_x_across') or 'off'}")
    return _plots().abx_measures(result.keys, result.measures, result.intervals,
                                 None if control is None else control.measures,
                                 None if control is None else control.intervals, path, subtitle=subtitle(result),
                                 info=limits, model=model_name(result))


def always(result) -> bool:
    """``Figure.applies`` of a figure every run draws."""
    return True


_CKA = _similarity("cka")
_CKA_DEBIASED = _similarity("cka_debiased")
_COSINE = _similarity("cosine")

FIGURES: tuple[Figure, ...] = (
    Figure("feature_statistics.png", "Feature statistics per layer", (
        "Mean and standard deviation of all values of a layer (every real frame × every dimension). Padding never "
        "enters. A jump in the std marks a change of scale between layers (e.g. the first transformer layer after "
        "the CNN); scale alone says nothing about what a layer encodes. Middle: the spread over dimensions of each "
        "dimension's std and mean (a LayerNorm output pools to a flat 0 ± 1 band; its dimensions need not be). "
        "Then the RMS feature-vector norm sqrt(Σ_d (var_d + mean_d²)), exact from the same moments. Last: the "
        "effective rank (exp of the entropy of the normalised covariance spectrum, Roy & Vetterli 2007 / RankMe) "
        "and the components holding 90 % of the variance, with their 95 % intervals as bands (group jackknife over "
        "utterances of the frame sample: conservative)."), always,
        _draw_statistics),
    Figure("layer_similarity_cka_debiased.png", "Layer similarity: debiased CKA", (
        "Debiased linear CKA over frames: the unbiased HSIC estimator (Song et al. 2012; Kornblith et al. 2019's "
        "debiased=True) in place of the plug-in one. Linear CKA is biased upwards by about D/(n + D) for D dimensions "
        "over n frames (0.43 for unrelated 768-dim features over 1,000 frames); the debiased estimate is ≈ 0 there, "
        "and can dip slightly below 0. Shown by default; the linear CKA of the published analyses is one click "
        "away. Colour scale fixed at 0–1 (--cka_vmin zooms, and the title then says so)."), *_CKA_DEBIASED),
    Figure("layer_similarity_cka.png", "Layer similarity: linear CKA", (
        "Linear centred kernel alignment over frames (Kornblith et al. 2019): 1 means the two layers' frame "
        "representations are the same up to rotation and isotropic scaling; near 0 means unrelated. Read blocks of "
        "high CKA as groups of layers that compute similar things; the diagonal is 1 by definition. Layers of "
        "different frame rates are compared after average-pooling the finer layer onto the coarser layer's frames. "
        "Biased upwards by about D/(n + D) (D dims, n frames): few frames make unrelated layers look similar; the "
        "debiased heatmap corrects that. Colour scale fixed at 0–1 unless zoomed with --cka_vmin."),
        *_CKA),
    Figure("layer_similarity_cosine.png", "Layer similarity: uncentered cosine (for comparison with the prototype)", (
        "Cosine between the two layers' whole frame matrices, frame t/dim d against frame t/dim d, without "
        "centring. Large shared means push it towards 1 and a rotation of one layer changes it, so it is not a "
        "similarity of representations; use the CKA heatmap for that. Undefined (n/a) for layers of different "
        "dims."), *_COSINE),
    Figure("pca.png", "PCA with frames as points", (
        "Top left: cumulative share of variance in the first principal components, from the exact covariance over "
        "all frames (one curve per layer, dark = early). Top right: how many components hold 50 % / 90 % of the "
        "variance, a rough effective dimensionality per layer. Below: the sampled frames on PC1/PC2; clusters by "
        "colour mean the leading directions separate utterances (speaker/channel) or labels."), always, _draw_pca),
    Figure("tsne.png", "t-SNE of sampled frames", (
        "A 2-D neighbourhood map of the seeded frame subsample per layer. Only local neighbourhoods are meaningful: "
        "distances between clusters and cluster sizes are not. Colour by utterance or speaker shows "
        "speaker/recording clustering; colour by phone (span folders) shows phonetic clustering."), always,
        _draw_tsne),
    Figure("variance_distribution.png", "Per-dimension variance", (
        "Histogram over dimensions of the variance of each dimension across frames (log10 scale, shared axis). "
        "A few dimensions with variance orders of magnitude above the rest are outlier dimensions; they dominate "
        "Euclidean distances, the uncentered cosine and the first principal components."), always, _draw_variance),
    Figure("span_measures.png", "Where label information lives: probe accuracy, PWCCA, MI per layer", (
        "Span folders only. x: layer in numeric order; y: held-out scores in [0, 1] (PWCCA can dip slightly below "
        "0). Blue: accuracy of a linear probe predicting each segment's phone/word, trained and tested on disjoint "
        "utterances; read it as its height above the dotted majority-class baseline (a layer at the baseline "
        "carries no linearly decodable label information). Orange: projection-weighted CCA between the segment "
        "vectors and the one-hot labels (the measure of the published layer-wise curves). Green: normalised mutual "
        "information between k-means clusters and labels (no supervision; biased upwards on few segments — 0.4 for "
        "unrelated features at 300 segments — so read it against its dashed chance line and the adjusted MI). A peak "
        "shows where the information is most linearly accessible, not the only place it exists."), _has_span,
        _draw_span, control=(
            "Solid lines: the analysed model; dashed: the same measures on a randomly initialised model of the same "
            "config (same utterances, seed and splits). The gap between solid and dashed is what training added.")),
    Figure("what_each_layer_encodes.png", "What each layer encodes: one panel per measure", ENCODES_INTRO,
           _has_properties, _draw_properties, control=(
               "Solid: the analysed model; dashed: the random-initialisation control (same utterances, seed and "
               "protocol); the gap is what training added."), describe=_encodes_caption),
    Figure("abx.png", "ABX discriminability per layer (ZeroSpeech)", (
        "ABX error rate per layer: for triples of items A, B, X where A and X are the same phone and B another, "
        "the share of triples in which X is closer to B than to A (DTW over the frames, angular or euclidean "
        "distance). Lower = better; 0.5 = chance (the dotted line). Within speaker: A, B and X of one speaker; "
        "across speakers: X of another speaker, so speaker information hurts; triphone: A and B in the same "
        "phone context; phoneme: any context. Bands: 95 % percentile bootstrap intervals over speakers."),
        _has_abx, _draw_abx, control=(
            "Dashed: the random-initialisation control on the same items (its bands lighter); the gap is what "
            "training added.")),
)
FIGURE_NAMES = tuple(f.name for f in FIGURES)
BY_NAME = {f.name: f for f in FIGURES}


def failure_reason(err: Exception) -> str:
    """Why a figure was not drawn, in one line: the exception's type and message."""
    return f"{type(err).__name__}: {error_text(err)}"


def guarded(figure: Figure, failed: dict[str, str], *, fatal: Callable[[Exception], bool] = lambda err: False,
            reason: Callable[[Exception], str] = failure_reason) -> Figure:
    """``figure`` whose draw records an exception in ``failed`` (file name -> ``reason(err)``; logged as an error
    naming the figure, the traceback at debug level only) and returns None, so the other figures are still drawn.
    Raised instead: a stop (Ctrl-C, SIGTERM, also wrapped in another exception: ``errors.caused_by_interrupt``)
    and what ``fatal`` picks (an output folder that can take no more). Both commands draw through this."""
    def draw(result, path):
        try:
            return figure.draw(result, path)
        except Exception as err:  # one figure's failure: named, the others still drawn
            if caused_by_interrupt(err) or fatal(err):
                raise
            log.debug("figure %s: traceback", figure.name, exc_info=True)  # shown with --verbose only
            failed[figure.name] = reason(err)
            log.error("figure %s not drawn: %s", figure.name, failed[figure.name])
            return None

    return replace(figure, draw=draw)


def draw_all(result, out: str | Path, figures=FIGURES) -> list[Drawn]:
    """Draw every entry of ``figures`` (default: the analysis's :data:`FIGURES`; a comparison passes
    ``compareplots.figures_of(result)``) that applies to ``result`` into ``out``; returns those drawn, in order.
    (The draw callables write each PNG atomically; text is drawn as typed, no mathtext.) One process: a worker process drawing half of them was measured
    (2026-12-07) and left out — starting it re-imports the caller's main module (an unguarded script runs twice) and
    a killed run could leave it writing PNGs."""
    import matplotlib

    from layerwise.contract.progress import bar

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    drawn = []
    todo = [figure for figure in figures if figure.applies(result)]
    with matplotlib.rc_context({"text.parse_math": False}):  # names and labels drawn as typed ("$" included)
        for figure in bar(todo, "figures", "figure"):
            if figure.draw(result, out / figure.name) is not None:
                drawn.append(Drawn(figure, out / figure.name, figure.caption_for(result)))
    return drawn
