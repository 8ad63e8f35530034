"""The typed result of an analysis run: what ``analyze.compute`` returns and what figures and reports read.

Every number a figure, a table or ``summary.json`` shows is in here, computed once by ``analyze.compute`` (derived
numbers included: components for 90 % of the variance, medians, CKA with the previous layer). Nothing below computes
statistics; the methods only reshape the result into the on-disk forms (``summary.json`` dict, ``summary.csv`` rows).

A value that could not be computed is ``None`` and its reason is a string in ``LayerResult.reasons`` (per layer) or
``AnalysisResult.unavailable`` (per measure) — never a message string in place of an array.

Every measure family (the span measures, the alignment-free measures) returns one :class:`MeasureFamily`: values,
what could not be computed and why, its scalars and provenance, and the control's family beside it, so the finish
step merges families without parsing keys or note strings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from layerwise.contract.layout import FRAME_SPAN

N_PCA_COMPONENTS = 20  # explained-variance ratios kept per layer (summary.json, the cumulative-variance panel)
VARIANCE_TARGET = 0.9  # components_90: the fewest principal components holding this share of the variance
CONTRACT_KEYS = ("files", "layers", "n_frames", "mean", "std", "cka", "cosine", "pca_explained_variance_ratio")
CONTROL_KEY = "random_init"  # summary.json key holding the random-init control's measures
NO_CONTROL = "no random-initialisation control"  # how the note of a run without its control begins
CONTROL_META = ("model_name", "model_revision", "seed")  # what the report and summary.json say of a control's files
INTERVAL_LEVEL = 0.95  # coverage of every interval summary.json writes (its "intervals" object says so)


def components_for(ratios: np.ndarray | None, target: float = VARIANCE_TARGET) -> int | None:
    """The fewest leading components whose explained-variance ratios sum to ``target``; ``None`` when PCA is
    undefined (``ratios`` None/empty) or the kept ratios never reach ``target`` (more than ``N_PCA_COMPONENTS``)."""
    if ratios is None or len(ratios) == 0:
        return None
    cumulative = np.cumsum(ratios)
    reached = np.flatnonzero(cumulative >= target - 1e-12)
    return int(reached[0]) + 1 if len(reached) else None


@dataclass(frozen=True)
class LayerResult:
    """One layer's numbers, over that layer's own frames.

    key : stored key (``layer_3``, ``conv_0``); dim : D; n_frames : frames (or segments) of this layer over all files;
    frame_rate : frames per second of this layer (``None`` for span folders and files without metadata).
    mean, std : over all frames × dims (ddof=0). dim_mean, dim_var : (D,) float64 per-dimension mean and variance.
    explained_variance_ratio : (k,) float64, k ≤ N_PCA_COMPONENTS, from the exact covariance; ``None`` if undefined.
    components_90 : fewest components holding 90 % of the variance (``None`` if undefined or beyond the kept k).
    projection : (n_points, 2) float64 sampled points on PC1/PC2 (PC2 column 0 when only one component exists).
    embedding : (n_points, 2) float64 t-SNE coordinates of the sampled points.
    cka_with_previous : CKA with the previous selected layer (``None`` for the first or when undefined).
    reasons : measure ("pca", "tsne", "cka_with_previous") -> why it is ``None``.
    """

    key: str
    dim: int
    n_frames: int
    frame_rate: float | None
    mean: float
    std: float
    dim_mean: np.ndarray
    dim_var: np.ndarray
    explained_variance_ratio: np.ndarray | None
    components_90: int | None
    projection: np.ndarray | None
    embedding: np.ndarray | None
    cka_with_previous: float | None = None
    reasons: dict[str, str] = field(default_factory=dict)
    effective_rank: float | None = None  # exp of the entropy of the normalised covariance spectrum (stats.sample)
    cka_with_previous_debiased: float | None = None  # debiased CKA (unbiased HSIC) with the previous layer

    @property
    def dim_var_median(self) -> float:
        return float(np.median(self.dim_var))

    @property
    def dim_var_max(self) -> float:
        return float(np.max(self.dim_var))

    @property
    def evr_pc1(self) -> float | None:
        ratios = self.explained_variance_ratio
        return None if ratios is None or len(ratios) == 0 else float(ratios[0])


@dataclass(frozen=True)
class SampleInfo:
    """Where the sampled points (rows of every layer's ``projection``/``embedding``) come from, (n_points,) each.

    utterances : stem of each point; frame_index : its row in that file (at the first selected layer's rate);
    labels : span label of each point, or None for frame folders; speakers : LibriSpeech speaker of each point, or
    None when a stem does not follow ``{speaker}-{chapter}-{utterance}``.
    """

    utterances: np.ndarray
    frame_index: np.ndarray
    labels: np.ndarray | None
    speakers: np.ndarray | None

    def __len__(self) -> int:
        return len(self.utterances)


@dataclass(frozen=True)
class RunInfo:
    """How the analysis was run: inputs, options, wall times in seconds per stage, and the command line."""

    features_dir: str
    output_dir: str | None
    seed: int
    max_points: int
    num_files: int
    similarity: str
    cka_vmin: float | None = None
    color_by: str = "auto"
    cca_protocol: str | None = None
    mi_protocol: str | None = None
    wall_s: dict[str, float] = field(default_factory=dict)
    command: str | None = None
    shards: int = 1  # > 1 when merged from partial statistics
    file_list: str | None = None  # the list file that chose the files (--file_list), if any


@dataclass(frozen=True)
class MeasureFamily:
    """What one family of per-layer measures found (``span.span_measures``, ``alignment_free.measure``).

    values : measure -> layer -> float, or ``None`` where undefined for that layer (``cca_intra`` of its reference
        layer, a layer whose computation failed: its reason is then under ``unavailable``).
    unavailable : measure -> why it could not be computed (a measure listed here is absent from ``values``, or
        ``None`` on the layers the reason names).
    info : scalars and provenance that ``summary.json`` writes beside the values, under these keys
        (``probe_majority_baseline``, ``span_measures_info``); ``{}`` when the family writes none.
    provenance : how the family was computed (seed, protocol, sizes) when it is not written to ``summary.json``.
    control : the same family on the random-initialisation control (same seed, protocol, utterances), or None.
    intervals : measure -> layer -> (low, high), the 95 % interval (``summary.json``: ``<measure>_ci``).
    chance : measure -> layer -> the same measure on labels permuted within the split (``<measure>_chance``).
    n_test : measure -> scored test items, summed over the splits (``<measure>_n_test``).
    methods : measure -> how its interval was made (``"percentile bootstrap, 200 resamples: ..."``).
    notes : sentences for the report (few test items, a split that could not be made as asked, ...).
    The dicts are filled while the family is computed; the fields are never rebound.
    """

    values: dict[str, dict[str, float | None]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    control: MeasureFamily | None = None
    intervals: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    chance: dict[str, dict[str, float]] = field(default_factory=dict)
    n_test: dict[str, int] = field(default_factory=dict)
    methods: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ControlResult:
    """The random-initialisation control's measures (same seed, utterances and protocol as the trained run).

    features_dir : the control folder; n_files : its utterances used (those it shares with the analysed files);
    measures, measure_info, unavailable, intervals, chance, n_test : as in :class:`AnalysisResult`; meta : the
    metadata of the control's first shared file (model_name, model_revision, seed, random_init …; ``{}`` when not
    read).
    """

    features_dir: str
    n_files: int
    measures: dict[str, dict[str, float | None]] = field(default_factory=dict)
    measure_info: dict = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    intervals: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    chance: dict[str, dict[str, float]] = field(default_factory=dict)
    n_test: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, family: MeasureFamily, *, features_dir, n_files: int, meta: dict) -> ControlResult:
        """The control's result from its :class:`MeasureFamily` (the ``control`` of the trained run's family)."""
        return cls(str(features_dir), n_files, dict(family.values), dict(family.info), dict(family.unavailable),
                   meta, dict(family.intervals), dict(family.chance), dict(family.n_test))

    def describe(self, n_analysed: int) -> str:
        """``{folder}: {model} (revision r), random initialisation seed s; N of M analysed utterances shared``."""
        meta = {k: "not recorded" if v is None else v for k, v in self.meta.items()}
        model = f"{meta.get('model_name', 'model not recorded')} (revision {meta.get('model_revision', 'not recorded')})"
        init = (f"random initialisation seed {meta.get('seed', 'not recorded')}" if self.meta.get("random_init")
                else "random initialisation not recorded in its files")
        return f"{self.features_dir}: {model}, {init}; {self.n_files} of {n_analysed} analysed utterances shared"

    def summary(self) -> dict:
        """The ``random_init`` object of ``summary.json``: measures flat (measure -> layer -> value) as for the
        trained model, then the scalars, the folder, the count, what could not be computed and ``reasons``
        (measure -> layer -> why its value is null)."""
        return {**{k: dict(v) for k, v in self.measures.items()}, **ci_keys(self.intervals),
                **chance_keys(self.chance), **n_test_keys(self.n_test), **self.measure_info,
                "features_dir": self.features_dir, "n_files": self.n_files, "unavailable": dict(self.unavailable),
                **{k: self.meta.get(k) for k in CONTROL_META},
                REASONS_KEY: _measure_reasons(self.measures, self.unavailable, self.measure_info)}


@dataclass(frozen=True)
class AnalysisResult:
    """Everything an analysis run found, in the order of ``layers`` (numeric).

    files : stems analysed, in file-name order. layers : one :class:`LayerResult` per selected layer.
    cka, cosine : (L, L) float64, NaN where undefined (cosine between layers of different dims; a constant layer).
    similarity_frames : (L, L) int, frames each pair was compared over (layers of other frame rates: after
        average-pooling the finer onto the coarser grid, see ``contract.grid``); similarity_rule : how pairs were matched.
    sample : the sampled points. meta : the extraction's metadata (first file; ``{}`` for prototype files).
    run : options, wall times, command. unit : "frames" or "phone segments"/"word segments".
    notes : things the reader should know (also logged). unavailable : measure -> why it could not be computed.
    measures : per-layer span/property measures, measure -> layer -> value or None (probe_accuracy, pwcca, mi,
        cca_mel, cca_intra, speaker_probe_accuracy, speaker_pwcca, ...); measure_info : scalars and provenance of
        those measures (probe_majority_baseline, span_measures_info, ...); control : the random-init control's
        :class:`ControlResult`, or None. requested : measures this run was expected to produce; one of them in
        ``unavailable`` makes the CLI exit non-zero. not_applicable : column (a ``rows()`` key: measure or
        ``cka_with_previous``) -> layer -> why that cell is empty by definition (``"the reference layer"``); it
        holds for the control's column of the same measure too. intervals : measure -> layer -> (low, high), the
        95 % interval of a measure that has one (written as ``<measure>_ci``; how it was made: ``interval_methods``,
        its replicates ``n_boot``). chance : measure -> layer -> the measure on labels permuted within the split
        (``<measure>_chance``). n_test : measure -> scored test items (``<measure>_n_test``).
        no_control : the note of a run whose measures would be drawn against a control but that has none; None
        when there is a control or no such measure.
    """

    files: list[str]
    layers: list[LayerResult]
    cka: np.ndarray
    cosine: np.ndarray
    similarity_frames: np.ndarray
    similarity_rule: str
    sample: SampleInfo
    meta: dict
    run: RunInfo
    unit: str = "frames"
    notes: list[str] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)
    measures: dict[str, dict[str, float | None]] = field(default_factory=dict)
    measure_info: dict = field(default_factory=dict)
    control: ControlResult | None = None
    requested: list[str] = field(default_factory=list)
    not_applicable: dict[str, dict[str, str]] = field(default_factory=dict)
    intervals: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    no_control: str | None = None  # why a run whose measures would draw a control has none (also in ``notes``)
    chance: dict[str, dict[str, float]] = field(default_factory=dict)
    n_test: dict[str, int] = field(default_factory=dict)
    interval_methods: dict[str, str] = field(default_factory=dict)
    n_boot: int = 0  # bootstrap replicates of the measures' intervals (0: none)
    cka_debiased: np.ndarray | None = None  # (L, L) debiased linear CKA (unbiased HSIC), NaN where undefined

    # ------------------------------------------------------------------ views
    @property
    def keys(self) -> list[str]:
        return [layer.key for layer in self.layers]

    def layer(self, key: str) -> LayerResult:
        return self.layers[self.keys.index(key)]

    @property
    def n_frames(self) -> int:
        """Frames of the coarsest selected layer (all layers' counts are equal unless their frame rates differ)."""
        return min(layer.n_frames for layer in self.layers)

    @property
    def dims(self) -> list[int]:
        return [layer.dim for layer in self.layers]

    @property
    def model_name(self) -> str:
        return str(self.meta.get("model_name") or "unknown model (no metadata)")

    # ------------------------------------------------------------------ on-disk forms
    def summary(self) -> dict:
        """The ``summary.json`` object (contract keys first; NaN stays NaN — the writer turns it into null)."""
        layers = self.layers
        out = {
            "files": list(self.files), "layers": self.keys, "n_frames": int(self.n_frames),
            "mean": {x.key: x.mean for x in layers}, "std": {x.key: x.std for x in layers},
            "cka": self.cka.tolist(), "cosine": self.cosine.tolist(),
            "pca_explained_variance_ratio": {
                x.key: [] if x.explained_variance_ratio is None else x.explained_variance_ratio.tolist()
                for x in layers},
            "pca_components_90": {x.key: x.components_90 for x in layers},
            "effective_rank": {x.key: x.effective_rank for x in layers},
            "cka_with_previous": {x.key: x.cka_with_previous for x in layers},  # null for the first: see reasons
            "cka_with_previous_debiased": {x.key: x.cka_with_previous_debiased for x in layers},
            **({} if self.cka_debiased is None else {"cka_debiased": self.cka_debiased.tolist()}),
            "n_frames_per_layer": {x.key: x.n_frames for x in layers},
            "frame_rate": {x.key: x.frame_rate for x in layers},
            "dims": {x.key: x.dim for x in layers},
            "similarity_frames": self.similarity_frames.tolist(), "similarity_rule": self.similarity_rule,
            "seed": self.run.seed, "features_dir": self.run.features_dir, "n_files": len(self.files),
            "max_points": self.run.max_points, "n_points": len(self.sample), "similarity_drawn": self.run.similarity,
            "model_name": self.meta.get("model_name"), "model_revision": self.meta.get("model_revision"),
            "rep_type": self.meta.get("rep_type"), "span": self.meta.get("span", FRAME_SPAN), "unit": self.unit,
            "shards": self.run.shards, "wall_seconds": dict(self.run.wall_s), "command": self.run.command,
            "notes": list(self.notes), "unavailable": dict(self.unavailable),
            "requested_measures": list(self.requested),
        }
        out.update({name: dict(values) for name, values in self.measures.items()})
        out.update(ci_keys(self.intervals))
        out.update(chance_keys(self.chance))
        out.update(n_test_keys(self.n_test))
        out["intervals"] = {"n_boot": self.n_boot, "level": INTERVAL_LEVEL, "methods": dict(self.interval_methods)}
        out.update(self.measure_info)
        if self.control is not None:
            out[CONTROL_KEY] = self.control.summary()
        out[REASONS_KEY] = self.reasons()
        return out

    def reasons(self) -> dict[str, dict[str, str]]:
        """Why each empty per-layer value is empty: column (a summary.json key: ``cka``, ``cosine``,
        ``pca_explained_variance_ratio``, ``pca_components_90``, ``tsne``, ``cka_with_previous``, ``frame_rate``, a
        measure) -> layer -> why. Holds every null/[] a layer has in summary.json and summary.csv (cells empty by
        definition, ``not_applicable``, included), so no empty value comes without its reason."""
        out: dict[str, dict[str, str]] = {}
        for x in self.layers:
            for what, why in x.reasons.items():
                for column in LAYER_REASON_COLUMNS.get(what, (what,)):
                    out.setdefault(column, {})[x.key] = why
            if x.frame_rate is None:
                out.setdefault("frame_rate", {})[x.key] = (
                    "span folders hold one vector per segment, not frames" if self.unit != "frames"
                    else "the files do not record their frame grid (model_config, sample_rate)")
        debiased = () if self.cka_debiased is None else (("cka_debiased", self.cka_debiased),)
        for name, matrix in (("cka", self.cka), ("cosine", self.cosine), *debiased):
            found = _matrix_reasons(name, np.asarray(matrix, float), self.layers, self.similarity_frames)
            if found:
                out[name] = found
        out.update(_measure_reasons(self.measures, self.unavailable, self.measure_info))
        for column, cells in self.not_applicable.items():
            out.setdefault(column, {}).update(cells)
        return out

    def rows(self, part: str = "all") -> list[dict]:
        """``summary.csv``: one row per layer (None/NaN are written as empty cells). part : ``"all"`` (the CSV),
        ``"own"`` (the analysed model's columns) or ``"control"`` (``layer`` and the control's ``random_init_…``
        columns; ``[]`` without a control)."""
        if part not in ("all", "own", "control"):
            raise ValueError(f"part={part!r} not in ('all', 'own', 'control')")
        if part == "control" and self.control is None:
            return []
        rows = []
        baseline = self.measure_info.get("probe_majority_baseline")
        control = self.control.measures if self.control is not None else {}
        for x in self.layers:
            own: dict = {} if part == "control" else {
                "layer": x.key, "dim": x.dim, "n_frames": x.n_frames, "frame_rate": x.frame_rate,
                "mean": x.mean, "std": x.std, "dim_var_median": x.dim_var_median, "dim_var_max": x.dim_var_max,
                "pca_evr_pc1": x.evr_pc1, "pca_components_90": x.components_90, "effective_rank": x.effective_rank,
                "cka_with_previous": x.cka_with_previous, "cka_with_previous_debiased": x.cka_with_previous_debiased,
            }
            if part != "control":
                for column in STATISTIC_INTERVALS:
                    own.update(_ci_cells(column, self.intervals, x.key))
                for name, values in self.measures.items():
                    own[name] = values.get(x.key)
                    own.update(_ci_cells(name, self.intervals, x.key))
                    if name in self.chance:
                        own[f"{name}_chance"] = self.chance[name].get(x.key)
                if baseline is not None:
                    own["probe_majority_baseline"] = baseline
            theirs: dict = {}
            if part != "own":
                for name, values in control.items():
                    theirs[f"{CONTROL_KEY}_{name}"] = values.get(x.key)
                    theirs.update(_ci_cells(f"{CONTROL_KEY}_{name}", self.control.intervals, x.key, name))
                    if name in self.control.chance:
                        theirs[f"{CONTROL_KEY}_{name}_chance"] = self.control.chance[name].get(x.key)
            rows.append({"layer": x.key, **theirs} if part == "control" else {**own, **theirs})
        return rows


REASONS_KEY = "reasons"  # summary.json: column -> layer -> why that layer's value is null or []
# LayerResult.reasons keys -> the summary.json / summary.csv columns they empty (PCA undefined: its ratios and count)
LAYER_REASON_COLUMNS = {"pca": ("pca_explained_variance_ratio", "pca_components_90", "pca_evr_pc1",
                                "effective_rank"),
                        "components_90": ("pca_components_90",)}
# Per-layer statistics with a 95 % interval (stats.uncertainty), under their summary.json / summary.csv names
STATISTIC_INTERVALS = ("mean", "std", "pca_components_90", "effective_rank", "cka_with_previous",
                       "cka_with_previous_debiased")


def _measure_reasons(measures: dict, unavailable: dict[str, str], info: dict) -> dict[str, dict[str, str]]:
    """measure -> layer -> why, for every layer whose value of a measure is None: the layer's own reason when a
    family records one (``info[...]["undefined"]``, e.g. ``abx_info``), else the measure's ``unavailable`` text."""
    per_layer = {}
    for value in info.values():
        if isinstance(value, dict) and isinstance(value.get("undefined"), dict):
            per_layer.update(value["undefined"])
    out = {}
    for name, values in measures.items():
        for key, value in values.items():
            if value is None or (isinstance(value, float) and not np.isfinite(value)):
                out.setdefault(name, {})[key] = (per_layer.get(name, {}).get(key) or unavailable.get(name)
                                                 or "undefined for this layer's input")
    return out


def _matrix_reasons(name: str, matrix: np.ndarray, layers: list, frames: np.ndarray) -> dict[str, str]:
    """layer -> why its row of the (L, L) ``name`` matrix (``"cka"`` or ``"cosine"``) holds nulls: the layer is
    constant (CKA: zero variance; cosine: all-zero frames), its partners are, fewer than 2 frames were matched in
    time, or (cosine) the dims differ."""
    def empty(x) -> bool:  # CKA is 0/0 for zero variance; cosine for zero norm (zero variance and zero mean)
        constant = not np.any(np.asarray(x.dim_var) > 0)
        return constant and (name != "cosine" or not np.any(np.asarray(x.dim_mean) != 0))

    what = "zero variance in every dimension" if name != "cosine" else "every frame is zero"
    out = {}
    for i, x in enumerate(layers):
        bad = [j for j in range(len(layers)) if not np.isfinite(matrix[i, j])]
        if not bad:
            continue
        if empty(x):
            out[x.key] = f"{x.key} is constant ({what}): {name} is 0/0, undefined with every layer"
            continue
        causes: dict[str, list[str]] = {}
        for j in bad:
            y = layers[j]
            cause = ("fewer than 2 frames matched in time" if frames[i, j] < 2
                     else f"different dims ({x.dim} vs {y.dim}): cosine compares dimension d with dimension d"
                     if name == "cosine" and x.dim != y.dim
                     else f"the other layer is constant ({what})" if empty(y)
                     else "fewer than 4 frames: the unbiased HSIC needs n ≥ 4"
                     if name == "cka_debiased" and frames[i, j] < 4
                     else "the unbiased estimate of a layer's similarity with itself is not positive (too few "
                          "frames for its dimension)" if name == "cka_debiased"
                     else "numerically degenerate (0/0)")
            causes.setdefault(cause, []).append(y.key)
        out[x.key] = "; ".join(f"undefined with {', '.join(keys)}: {cause}" for cause, keys in causes.items())
    return out


def ci_keys(intervals: dict[str, dict[str, tuple[float, float]]]) -> dict[str, dict[str, list[float]]]:
    """``summary.json``'s form of per-layer intervals: ``{"<measure>_ci": {layer: [low, high]}}``."""
    return {f"{name}_ci": {layer: [float(low), float(high)] for layer, (low, high) in per_layer.items()}
            for name, per_layer in intervals.items()}


def chance_keys(chance: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """``summary.json``'s form of chance levels: ``{"<measure>_chance": {layer: value}}``."""
    return {f"{name}_chance": dict(per_layer) for name, per_layer in chance.items()}


def n_test_keys(n_test: dict[str, int]) -> dict[str, int]:
    """``summary.json``'s form of the scored test items: ``{"<measure>_n_test": int}``."""
    return {f"{name}_n_test": int(count) for name, count in n_test.items()}


def _ci_cells(column: str, intervals: dict, layer: str, measure: str | None = None) -> dict:
    """``summary.csv`` cells ``<column>_ci_low``/``_ci_high`` of one layer when the measure has intervals (empty
    cells for a layer without one), else none."""
    per_layer = intervals.get(measure or column)
    if per_layer is None:
        return {}
    low, high = per_layer.get(layer, (None, None))
    return {f"{column}_ci_low": low, f"{column}_ci_high": high}


def finite_or_none(value) -> float | None:
    """A Python float, or None for NaN/inf/None (for JSON and tables)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def layer_reasons(reasons: dict[str, str], n_layers: int) -> str:
    """The ``unavailable`` text of a measure from its per-layer reasons (layer -> why): one sentence when every
    layer fails the same way (``"every layer: why"``), else ``"layer_0: why; layer_2: why"``."""
    texts = set(reasons.values())
    if len(texts) == 1 and len(reasons) == n_layers:
        return f"every layer: {texts.pop()}"
    return "; ".join(f"{key}: {why}" for key, why in reasons.items())
