"""The span measures of a span folder (``labels`` present) and of its random-init control.

``analyze.stream`` collects every segment's features into :class:`SpanFeatures`; :func:`analyse` computes the span
measures of :func:`layerwise.measures.span.span_measures` on them and, with the same seed and protocols, on the
control's (read by ``analyze.control.read_control``). Never imports torch or transformers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np

from layerwise.contract.layout import SPAN_MEASURES
from layerwise.contract.results import MeasureFamily
from layerwise.errors import UndefinedMeasureError, error_text
from layerwise.measures.resample import DEFAULT_N_BOOT

log = logging.getLogger(__name__)

FEW_UTTERANCES = 10  # below this, the held-out parts of a split are a handful of utterances: noisy, say so


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


def more_files(num_files: int) -> str:
    """The way to more data that is not the setting in use: ``--num_files 0`` only when the run took fewer files
    than the folder holds (num_files > 0); with every file taken, more must be extracted."""
    if num_files == 0:
        return "every file of the folder is already analysed (--num_files 0): extract more utterances into it"
    return f"analyse more files (--num_files {num_files} now; 0 = all)"


def measures(spans: SpanFeatures, *, seed: int, n_splits: int, cca_protocol: str = "centred",
             mi_protocol: str = "project", unit: str = "phone", n_boot: int = DEFAULT_N_BOOT) -> MeasureFamily:
    """The span measures of :func:`layerwise.measures.span.span_measures` on ``spans`` (a
    :class:`~layerwise.contract.results.MeasureFamily`; what could not be computed is logged as a warning).

    When no measure can be computed (fewer than 2 classes with 2 segments, fewer than 3 utterances), every measure
    is under ``unavailable`` with that reason and nothing else is in the family.
    """
    from layerwise.measures import span  # scipy/sklearn only when there are spans

    features, labels, groups = spans.arrays()
    try:
        result = span.span_measures(features, labels, groups, seed=seed, n_splits=n_splits,
                                    cca_protocol=cca_protocol, mi_protocol=mi_protocol, unit=unit, n_boot=n_boot)
    except UndefinedMeasureError as err:  # too few utterances or classes: every measure unavailable, with why
        log.warning("span measures could not be computed: %s", error_text(err))
        return MeasureFamily(unavailable=dict.fromkeys(SPAN_MEASURES, error_text(err)))
    for name, reason in result.unavailable.items():
        log.warning("span measure %s could not be computed: %s", name, reason)
    return result


def analyse(spans: SpanFeatures, control: SpanFeatures | None, *, seed: int, n_splits: int,
            cca_protocol: str = "centred", mi_protocol: str = "project",
            unit: str = "phone", num_files: int = 0, n_boot: int = DEFAULT_N_BOOT) -> tuple[MeasureFamily, list[str]]:
    """The span measures of a span folder and, with the same seed, protocols and measures, of its control.

    Returns ``(family, notes)``: ``family`` is :func:`measures` of the trained features (``probe_accuracy``,
    ``pwcca``, ``mi`` per layer; ``probe_majority_baseline`` and ``span_measures_info`` under ``info``; what could
    not be computed under ``unavailable``) with the control's family as ``control`` (None without one); ``notes``
    are sentences for the report (too few utterances, utterances the control lacks). cca_protocol, mi_protocol,
    unit, n_boot : passed to ``span.span_measures``; num_files : the run's setting (advice never repeats it); the
    family's own notes (few test items, clusters, the published protocol's splits) come first in ``notes``. The control's utterances are those of the analysed selection that it
    also has.
    """
    options = {"seed": seed, "n_splits": n_splits, "cca_protocol": cca_protocol, "mi_protocol": mi_protocol,
               "unit": unit, "n_boot": n_boot}
    family = measures(spans, **options)
    notes = list(family.notes)
    if len(spans.stems) < FEW_UTTERANCES:
        notes.append(f"span measures from only {len(spans.stems)} utterances (test parts of one or two "
                     f"utterances): noisy; {more_files(num_files)}")
    if control is None:
        return family, notes
    if len(control.stems) < len(spans.stems):
        missing = sorted(set(spans.stems) - set(control.stems))
        notes.append(f"random-init control lacks {len(missing)} of the {len(spans.stems)} analysed utterances "
                     f"({', '.join(missing[:3])}...); its measures use the other {len(control.stems)}")
    return replace(family, control=measures(control, **options)), notes
