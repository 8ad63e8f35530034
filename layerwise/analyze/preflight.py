"""The checks of an analysis that need no streaming pass, run before it (issue 22, "validation after the expensive
part").

Everything that can be checked from the arguments, the first selected feature file, the first control file, the
alignments and the ABX item file is checked here, so that a run that would be refused is refused in seconds, not
after reading every file and computing PCA and t-SNE: the layer selection and colouring against the first file, the
random-init control (resolved once per run, its first shared file checked with the one control rule), and the ABX
items (read and validated, or built from the alignments' phone tier). What is resolved here is handed to
``analyze.finish`` so nothing is resolved twice. Never imports torch or transformers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from layerwise.analyze.control import ControlSource, check_control_file, resolve_control
from layerwise.analyze.options import AnalysisOptions
from layerwise.analyze.stream import read
from layerwise.contract import layout, store
from layerwise.errors import UsageError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Preflight:
    """What an analysis resolved before its streaming pass.

    source : the run's random-init control (None when no measure can use one). items : the ABX items with their
    item file, notes and info (``abx.Items``), or None without ABX (or for a span folder).
    """

    source: ControlSource | None = None
    items: object | None = None


def _first_control(source: ControlSource, files: list[Path]) -> Path | None:
    """The control's file for the first selected stem it has (file-name order), or None when it has none."""
    control = {store.stem_of(p): p for p in store.list_feature_files(source.folder)}
    return next((control[s] for s in (store.stem_of(p) for p in files) if s in control), None)


def check(files: list[Path], options: AnalysisOptions) -> Preflight:
    """Every check that needs no streaming pass, in the order a user fixes them; returns what was resolved.

    files : the selected feature files (file-name order). Raises UsageError subclasses (AnalysisError, ItemFileError)
    or InputError naming the flag or file and the way out.
    """
    from layerwise.analyze import abx

    first = read(files[0], None)
    available = list(first.layers)
    layout.parse_layer_spec(options.layers, available)  # a layer the files lack: refused before any pass
    is_span = first.labels is not None
    if options.color_by == "label" and not is_span:
        raise UsageError("color_by=label needs a span folder (extracted with span=phone or word)")
    measured = is_span or options.abx or bool(first.meta)  # frame folders with metadata: the property measures
    source = resolve_control(options.features_dir, options.control_dir) if measured else None
    if source is not None and source.folder is not None:
        control_file = _first_control(source, files)
        if control_file is not None:
            check_control_file(read(control_file, []), first.meta)
    items = None
    if options.abx and not is_span:
        items = abx.items_for(options, [store.stem_of(p) for p in files])
    checked = ["settings", "first file"] + (["control"] if source is not None and source.folder is not None else []) \
        + (["ABX items"] if items is not None else [])
    log.info("preflight: %s checked before the streaming pass", ", ".join(checked))
    return Preflight(source=source, items=items)
