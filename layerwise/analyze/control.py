"""The span part of an analysis run: segment features -> probe/PWCCA/MI, with a random-init control.

``analyze`` collects the segment features of a span folder (``labels`` present) into :class:`SpanFeatures`;
this module finds and reads the random-initialisation control (only the layers and files needed: the control's
frame statistics are never computed), checks that it matches, and computes the measures of
:func:`layerwise.measures.span.span_measures` on both. Problems with the control raise :class:`AnalysisError` (the
orchestrator turns it into its own usage error, exit 2). Never imports torch or transformers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from layerwise.contract import layout, store
from layerwise.contract.layout import RANDOM_INIT_SUFFIX
from layerwise.errors import AnalysisError, FeatureFileError

log = logging.getLogger(__name__)

CONTROL_AUTO = "auto"  # look for the sibling {parent}-random_init/{name} folder
CONTROL_NONE = "none"  # no control
DEFAULT_PROBE_SPLITS = 3
FEW_UTTERANCES = 10  # below this, the held-out parts of a split are a handful of utterances: noisy, say so
CONTROL_KEY = "random_init"  # summary.json key holding the control's measures
MATCH_META = ("model_name", "rep_type", "span", "span_options")  # must agree between trained and control



@dataclass
class SpanFeatures:
    """Every segment's features of span files, in file order, for the span measures.

    Unlike the frame statistics this grows with the data: n_segments × Σ dims × 4 bytes.
    """

    layers: dict[str, list[np.ndarray]] = field(default_factory=dict)
    labels: list[np.ndarray] = field(default_factory=list)
    stems: list[str] = field(default_factory=list)

    def add(self, stem: str, arrays: dict[str, np.ndarray], labels: np.ndarray) -> None:
        """arrays : layer key -> (n_segments, D); labels : (n_segments,)."""
        for key, value in arrays.items():
            self.layers.setdefault(key, []).append(np.asarray(value, np.float32))
        self.labels.append(np.asarray(labels).astype(str))
        self.stems.append(stem)

    def arrays(self) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """(layer -> (n_segments, D), labels (n_segments,), utterance of each segment (n_segments,))."""
        groups = [np.full(len(lab), stem) for stem, lab in zip(self.stems, self.labels)]
        return ({k: np.concatenate(v) for k, v in self.layers.items()}, np.concatenate(self.labels),
                np.concatenate(groups))


def auto_control_path(features_dir) -> Path:
    """Where ``control_dir="auto"`` looks for the random-init control: ``{parent}-random_init/{name}`` of the
    features folder (the layout of ``extract_features.py --random_init``)."""
    features = Path(features_dir).resolve()
    return features.parent.with_name(features.parent.name + RANDOM_INIT_SUFFIX) / features.name


def control_folder(features_dir: str | Path, control_dir: str | Path | None) -> Path | None:
    """The control folder to use, or None.

    control_dir : ``"auto"`` -> ``{features_dir's parent}-random_init/{features_dir's name}`` when that folder
    exists (the layout of ``extract_features.py --random_init``); ``None``/``"none"`` -> no control; else a folder
    that must exist.
    """
    if control_dir is None or str(control_dir).lower() == CONTROL_NONE:
        return None
    features = Path(features_dir).resolve()
    if str(control_dir) == CONTROL_AUTO:
        sibling = auto_control_path(features)
        return sibling if sibling.is_dir() else None
    folder = Path(control_dir)
    if not folder.is_dir():
        raise AnalysisError(f"--control_dir {folder} does not exist; pass the folder written by extract_features.py "
                           f"--random_init, or --control_dir none")
    if folder.resolve() == features:
        raise AnalysisError(f"--control_dir {folder} is the analysed folder itself; pass the --random_init folder")
    return folder


def read_control(folder: Path, trained: SpanFeatures, meta: dict, dims: dict[str, int]) -> SpanFeatures:
    """The control's segment features for the trained run's stems that the control also has (same order).

    Reads only the layers in ``dims`` (layer -> D). Checks each file: same layers and dims, labels identical to
    the trained file's (same alignment and span options), matching metadata, ``random_init`` true, finite values.
    """
    files = {store.stem_of(p): p for p in store.list_feature_files(folder)}
    common = [s for s in trained.stems if s in files]
    if not common:
        raise AnalysisError(f"control folder {folder} has none of the {len(trained.stems)} analysed utterances "
                           f"({', '.join(trained.stems[:3])}...); extract them with --random_init or pass "
                           f"--control_dir none")
    trained_labels = dict(zip(trained.stems, trained.labels))
    control = SpanFeatures()
    for stem in common:
        try:
            ff = store.read_features(files[stem], list(dims))
        except FeatureFileError as err:
            raise AnalysisError(f"control does not match the analysed features: {err}") from err
        name = f"control file {ff.path}"
        for key in MATCH_META:
            if key in meta and key in ff.meta and ff.meta[key] != meta[key]:
                raise AnalysisError(f"{name}: {key}={ff.meta[key]!r}, but the analysed files have {meta[key]!r}")
        if ff.meta.get("random_init") is False:
            raise AnalysisError(f"{name} is not from a --random_init extraction (meta random_init=false)")
        for key, dim in dims.items():
            if ff.layers[key].shape[1] != dim or not np.isfinite(ff.layers[key]).all():
                raise AnalysisError(f"{name}: {key} has shape {ff.layers[key].shape} (or non-finite values); the "
                                   f"analysed files have dim {dim}: the control must come from the same config")
        if ff.labels is None or not np.array_equal(np.asarray(ff.labels).astype(str), trained_labels[stem]):
            raise AnalysisError(f"{name}: span labels differ from the analysed file's (other alignment or span "
                               f"options?); extract both with the same --span flags")
        control.add(stem, ff.layers, ff.labels)
    return control


SPAN_MEASURES = layout.SPAN_MEASURES  # per-layer span measures (summary.json keys)


def measures(spans: SpanFeatures, *, seed: int, n_splits: int, cca_protocol: str = "centred",
             mi_protocol: str = "project", unit: str = "phone") -> dict:
    """The span measures of :func:`layerwise.measures.span.span_measures` (its return value), always with ``unavailable``.

    When no measure can be computed (fewer than 2 classes with 2 segments, fewer than 3 utterances), every measure
    is under ``unavailable`` with that reason (logged as a warning) and nothing else is returned.
    """
    from layerwise.measures import span  # scipy/sklearn only when there are spans

    features, labels, groups = spans.arrays()
    try:
        result = span.span_measures(features, labels, groups, seed=seed, n_splits=n_splits,
                                      cca_protocol=cca_protocol, mi_protocol=mi_protocol, unit=unit)
    except ValueError as err:
        log.warning("span measures could not be computed: %s", err)
        return {"unavailable": dict.fromkeys(SPAN_MEASURES, str(err))}
    for name, reason in result["unavailable"].items():
        log.warning("span measure %s could not be computed: %s", name, reason)
    return result


def analyse(spans: SpanFeatures | None, control: SpanFeatures | None, *, control_dir: Path | None, seed: int,
            n_splits: int, cca_protocol: str = "centred", mi_protocol: str = "project",
            unit: str = "phone") -> tuple[dict, list[str]]:
    """Summary keys for span folders (``{}`` for frame folders) and notes for the report.

    Returns ``(summary, notes)``. ``summary`` holds what :func:`measures` returns for the trained features —
    per-layer objects ``probe_accuracy``, ``pwcca``, ``mi`` (measure -> layer -> float), the scalar
    ``probe_majority_baseline``, ``span_measures_info`` (seed, sizes, protocols, chosen ε, pasad parts/trials) and
    ``unavailable`` (measure -> reason; a measure listed there is absent, the others are present) — and, with a
    control, the same for the control under ``random_init`` plus its ``features_dir`` and ``n_files``. ``notes``
    are sentences for the report. cca_protocol, mi_protocol, unit : passed to ``span.span_measures``.

    The control gets the same seed, protocols and measures; its utterances are those of the analysed selection
    that the control also has.
    """
    if spans is None:
        return {}, []
    options = {"seed": seed, "n_splits": n_splits, "cca_protocol": cca_protocol, "mi_protocol": mi_protocol,
               "unit": unit}
    result = measures(spans, **options)
    notes = []
    if len(spans.stems) < FEW_UTTERANCES:
        notes.append(f"span measures from only {len(spans.stems)} utterances (test parts of one or two "
                     f"utterances): noisy; analyse more files (--num_files 0 = all)")
    for name, reason in result["unavailable"].items():
        notes.append(f"{name} could not be computed: {reason}")
    if control is not None:
        result[CONTROL_KEY] = {**measures(control, **options),
                               "features_dir": str(control_dir), "n_files": len(control.stems)}
        for name, reason in result[CONTROL_KEY]["unavailable"].items():
            notes.append(f"random-init control: {name} could not be computed: {reason}")
        if len(control.stems) < len(spans.stems):
            missing = sorted(set(spans.stems) - set(control.stems))
            notes.append(f"random-init control lacks {len(missing)} of the {len(spans.stems)} analysed utterances "
                         f"({', '.join(missing[:3])}...); its measures use the other {len(control.stems)}")
    return result, notes
