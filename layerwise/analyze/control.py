"""The random-init control, resolved and checked once per run.

This module resolves where the run's random-initialisation control is (:func:`resolve_control`, once per run: a
:class:`ControlSource`), checks each control file against the analysed files with the one rule of
``layout.CONTROL_DIFFERS`` (:func:`check_control_file`), reads the control's segment features (only the layers and
files needed: the control's frame statistics are never computed) and computes the span measures of
:func:`layerwise.measures.span.span_measures` on both. Problems with the control raise :class:`AnalysisError` (a
usage error, exit 2). Never imports torch or transformers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from layerwise.analyze.spans import SpanFeatures
from layerwise.contract import layout, store
from layerwise.contract.results import NO_CONTROL
from layerwise.errors import AnalysisError, FeatureFileError, error_text

log = logging.getLogger(__name__)

CONTROL_AUTO = "auto"  # look for the sibling {parent}-random_init/{name} folder (layout.control_folder_of)
CONTROL_NONE = "none"  # no control
DEFAULT_PROBE_SPLITS = 3


@dataclass(frozen=True)
class ControlSource:
    """Where a run's random-init control comes from, resolved once (:func:`resolve_control`).

    folder : the control folder to read, or None (none asked for, or no ``auto`` sibling found).
    looked_for : the ``auto`` sibling looked for (``layout.control_folder_of``), or None when a folder or none was
    given.
    """

    folder: Path | None
    looked_for: Path | None = None
    is_control: bool = False  # the analysed folder is itself a control (auto looks for no control of a control)

    def no_control_note(self) -> str:
        """The one note of a run whose measures have no random-initialisation control (the folder, when there is
        one, shares no analysed utterance)."""
        if self.folder is not None:
            return (f"{NO_CONTROL}: {self.folder} holds none of the analysed utterances; extract them "
                    f"there with --random_init to draw the dashed lines")
        if self.is_control:
            return (f"{NO_CONTROL}: the analysed folder is itself a random-initialisation control (its parent ends in "
                    f"{layout.RANDOM_INIT_SUFFIX}); a control has no control of its own")
        if self.looked_for is None:
            return f"{NO_CONTROL}: control_dir none was given; the figures show the analysed model only"
        return (f"{NO_CONTROL}: looked for {self.looked_for}; extract one with extract_features.py --random_init "
                f"(same settings and files) to draw the dashed lines")


def resolve_control(features_dir: str | Path, control_dir: str | Path | None) -> ControlSource:
    """The control of the analysis of ``features_dir``.

    control_dir : ``"auto"`` -> ``layout.control_folder_of(features_dir)`` (``{parent}-random_init/{name}``, the
    layout of ``extract_features.py --random_init``) when that folder exists; ``None``/``"none"`` -> no control;
    else a folder that must exist and not be ``features_dir`` itself (:class:`AnalysisError` otherwise).
    """
    if control_dir is None or str(control_dir).lower() == CONTROL_NONE:
        return ControlSource(None)
    if str(control_dir) == CONTROL_AUTO:
        if Path(features_dir).resolve().parent.name.endswith(layout.RANDOM_INIT_SUFFIX):
            return ControlSource(None, is_control=True)
        sibling = layout.control_folder_of(features_dir)
        return ControlSource(sibling if sibling.is_dir() else None, looked_for=sibling)
    folder = Path(control_dir)
    if not folder.is_dir():
        raise AnalysisError(f"--control_dir {folder} does not exist; pass the folder written by extract_features.py "
                            f"--random_init, or --control_dir none")
    if folder.resolve() == Path(features_dir).resolve():
        raise AnalysisError(f"--control_dir {folder} is the analysed folder itself; pass the --random_init folder")
    return ControlSource(folder)


def check_control_file(ff: store.FeatureFile, analysed_meta: dict) -> None:
    """The control rule, applied to one control file: the analysed files' extraction identity except
    ``layout.CONTROL_DIFFERS`` (revision, random_init, seed), and not ``random_init: false``. Raises
    :class:`AnalysisError` naming the file, the differing settings and the way out."""
    subject = f"control file {ff.path}"
    layout.check_same_extraction(ff.meta, analysed_meta, may_differ=layout.CONTROL_DIFFERS, subject=subject,
                                 reference_name="the analysed files", error=AnalysisError,
                                 advice="; extract the control with the same settings plus --random_init, or pass "
                                        "control_dir=none")
    if ff.meta.get("random_init") is False:
        raise AnalysisError(f"{subject} is not from a --random_init extraction (meta random_init=false); pass the "
                            f"folder written with --random_init, or control_dir=none")


def read_control(folder: Path, trained: SpanFeatures, meta: dict, dims: dict[str, int]) -> SpanFeatures:
    """The control's segment features for the trained run's stems that the control also has (same order).

    Reads only the layers in ``dims`` (layer -> D). Checks each file once: the control rule
    (:func:`check_control_file` against ``meta``, the analysed files' metadata), same layers and dims, finite
    values, labels identical to the trained file's (same alignment and span options).
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
            raise AnalysisError(f"control does not match the analysed features: {error_text(err)}") from err
        name = f"control file {ff.path}"
        check_control_file(ff, meta)
        for key, dim in dims.items():
            if ff.layers[key].shape[1] != dim or not np.isfinite(ff.layers[key]).all():
                raise AnalysisError(f"{name}: {key} has shape {ff.layers[key].shape} (or non-finite values); the "
                                   f"analysed files have dim {dim}: the control must come from the same config")
        if ff.labels is None or not np.array_equal(np.asarray(ff.labels).astype(str), trained_labels[stem]):
            raise AnalysisError(f"{name}: span labels differ from the analysed file's (other alignment or span "
                               f"options?); extract both with the same --span flags")
        control.add(stem, ff.layers, ff.labels)
    return control
