"""The one streaming pass of an analysis: every selected file read once, checked, folded into bounded state.

Per file: :class:`~layerwise.stats.grids.GridStats` (exact moments, CKA, cosine; layers on other frame grids over
their own frames and, pairwise, time-matched), :class:`~layerwise.stats.sample.FrameSampler` (seeded subsample for the
scatters), span features for span folders and the alignment-free property collector when the package has one.
Memory does not grow with the number of files (span features excepted: segments are kept for the span measures).

Files are folded in groups of ``GROUP_FILES`` consecutive files (in file-name order): the float32 accumulators are
added into the float64 statistics at the end of each group, and analysis shards take whole groups, so merged
shards equal a single-process run to ≈1e-9 relative (float32 block products summed in another order).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from layerwise.analyze.control import check_control_file
from layerwise.analyze.spans import SpanFeatures
from layerwise.contract import layout, store
from layerwise.contract.grid import Grid
from layerwise.contract.results import ControlResult
from layerwise.errors import FeatureFileError, InputError, UsageError, error_text
from layerwise.stats.grids import GridStats, grids_for
from layerwise.stats.sample import FrameSampler

log = logging.getLogger(__name__)

GROUP_FILES = 64  # files per group (float32 accumulators flushed; the unit of an analysis shard)


@dataclass
class Collected:
    """The state of the streaming pass (mutable while files are added).

    files : stems folded in, in order; layers, dims : selected keys and dims; grids : key -> Grid or None (one
    group); meta : the first file's metadata; stats, sampler, spans (span folders), properties (or None);
    empty : stems of files without frames (skipped, reported).
    """

    layers: list[str]
    dims: list[int]
    grids: dict[str, Grid] | None
    meta: dict
    first_name: str
    stats: GridStats
    sampler: FrameSampler
    spans: SpanFeatures | None
    files: list[str] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    properties: object | None = None

    @property
    def is_span(self) -> bool:
        return self.spans is not None


def read(path: Path, layers: list[str] | None) -> store.FeatureFile:
    """One feature file, or an :class:`InputError` that says which file, what is wrong and what to do."""
    try:
        return store.read_features(path, layers)
    except FeatureFileError as err:
        raise InputError(f"{error_text(err)}. Remove the file, or re-extract it (extract_features.py recomputes a damaged file; "
                         f"a file with other layers needs --overwrite); all files of a folder must come from one "
                         f"extraction") from err


def start(first: store.FeatureFile, layer_spec: str | None, *, seed: int, max_points: int,
          precision: str) -> Collected:
    """An empty pass shaped by the first file: selected layers, dims, frame grids, span or frame folder."""
    available = list(first.layers)
    if len({layout.parse_layer_key(k)[0] for k in available}) > 1:
        raise InputError(f"{first.path}: mixes layer_k and conv_k arrays ({available}); it is not a file of "
                         f"extract_features.py — remove it")
    layers = layout.parse_layer_spec(layer_spec, available)
    dims = [int(first.layers[k].shape[1]) for k in layers]
    grids = grids_for(first.meta, layers) if first.labels is None else None
    stats = GridStats(layers, dims, grids, precision=precision)
    sampler = FrameSampler(layers, dims, max_points=max_points, seed=seed)
    spans = SpanFeatures() if first.labels is not None else None
    return Collected(layers, dims, grids, first.meta, first.path.name, stats, sampler, spans)


def check(ff: store.FeatureFile, state: Collected) -> None:
    """Refuse a file that does not belong with the first one, naming the file, the difference and the way out."""
    name = ff.path.name
    layout.check_same_extraction(ff.meta, state.meta, subject=name, reference_name=state.first_name,
                                 advice=". A folder must hold one extraction; analyse each extraction's own folder "
                                        "(or move the odd files out)")
    for key, dim in zip(state.layers, state.dims):
        value = ff.layers[key]
        if value.shape[1] != dim:
            raise UsageError(f"{name}: {key} has dim {value.shape[1]}, but {state.first_name} has {dim}; the folder "
                             f"mixes models — analyse one extraction at a time")
        if not np.isfinite(value).all():
            raise InputError(f"{name}: {key} contains NaN or inf; remove the file, or: "
                             f"{store.nonfinite_remedy(ff.meta.get('compute_dtype'))}")
    if (ff.labels is not None) != state.is_span:
        raise UsageError(f"{name} and {state.first_name}: one has span labels, the other not (mixed frame and span "
                         f"files); analyse each extraction's own folder")
    span = ff.meta.get("span")  # absent in prototype files: the arrays alone say frame or span
    if span is not None and span not in layout.SPANS:
        raise InputError(f"{name}: its metadata names span={span!r}, not one of {', '.join(layout.SPANS)}; it is not "
                         f"a file as extract_features.py writes it — remove it or re-extract it")
    if span is not None and (ff.labels is not None) != (span != layout.FRAME_SPAN):
        held = "span labels" if ff.labels is not None else "no span labels"
        raise InputError(f"{name}: holds {held} but its metadata says span={span!r}; it is not a file as "
                         f"extract_features.py writes it — remove it or re-extract it")
    rows = len(ff.layers[state.layers[0]])
    if ff.labels is not None and len(ff.labels) != rows:
        raise InputError(f"{name}: {len(ff.labels)} labels for {rows} segments; the file is damaged — remove it or "
                         f"re-extract it")


def _sample_rows(state: Collected, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each layer's rows at the sampled time points: the coarsest grid's frames, and for a finer layer its own
    frame whose centre is nearest (``round((j·hop_c + field_c/2 − field_f/2) / hop_f)``), so every panel of a
    scatter shows the same instants while each layer keeps its own (not pooled) frames."""
    if not state.grids or len(state.stats.groups) == 1:
        return arrays
    coarse_grid = state.stats.group_grids[-1]
    coarse_key = state.stats.groups[-1].layers[0]
    j = np.arange(len(arrays[coarse_key]))
    out = {}
    for key in state.layers:
        grid = state.grids[key]
        rows = np.rint((j * coarse_grid.hop + (coarse_grid.field - grid.field) / 2) / grid.hop).astype(np.int64)
        # Never binds for nested conv grids (field_f + hop_f <= field_c, so the finer frame centred in a coarse frame
        # that fits the audio fits it too); kept so a scatter point can never index past the file.
        out[key] = np.asarray(arrays[key])[np.clip(rows, 0, len(arrays[key]) - 1)]
    return out


def add(state: Collected, ff: store.FeatureFile) -> None:
    """Fold one checked file into the pass."""
    arrays = {k: ff.layers[k] for k in state.layers}
    if min(len(a) for a in arrays.values()) == 0:
        log.warning("%s has no frames; skipped", ff.path.name)
        state.empty.append(ff.stem)
        return
    state.stats.update(arrays, ff.path.name)
    state.sampler.add(ff.stem, _sample_rows(state, arrays), ff.labels)
    if state.spans is not None:
        state.spans.add(ff.stem, arrays, ff.labels)
    if state.properties is not None:
        state.properties.add(ff.stem, arrays, ff.fbank)
    state.files.append(ff.stem)


def collect(files: list[Path], indices: list[int], *, layer_spec: str | None, seed: int, max_points: int,
            precision: str, progress: bool | None = None, properties: bool = True) -> Collected:
    """The streaming pass over ``files`` (global positions ``indices`` in the selection, for the groups);
    ``properties=False`` leaves out the alignment-free property collector (sharded runs, benchmarks).

    Raises UsageError (mixed extractions, bad layers) or InputError (a damaged file), each naming the file.
    """
    from layerwise.contract.progress import bar

    first = read(files[0], None)
    state = start(first, layer_spec, seed=seed, max_points=max_points, precision=precision)
    state.properties = property_collector(state, seed=seed) if properties else None
    for n, (path, index) in enumerate(zip(bar(files, "streaming pass (reading)", "file",
                                              enabled=progress), indices)):
        ff = first if n == 0 else read(path, state.layers)
        check(ff, state)
        add(state, ff)
        if (index + 1) % GROUP_FILES == 0 or n == len(files) - 1:
            state.stats.end_group()
    return state


def property_collector(state: Collected, *, seed: int):
    """The alignment-free property collector (``alignment_free.PropertyCollector``) for frame folders with grids;
    None for span folders."""
    if state.is_span or not state.grids:
        return None
    from layerwise.measures import alignment_free

    return alignment_free.PropertyCollector(state.layers, state.grids, seed=seed,
                                            max_frames_per_file=alignment_free.DEFAULT_MAX_FRAMES_PER_FILE)


def collect_control(folder: Path, state: Collected, *, seed: int):
    """The random-init control's property collector: the analysed stems that ``folder`` also has, their selected
    layers (and filterbanks), each file checked once with the control rule (``control.check_control_file``); None
    when the folder has none of them. Raises AnalysisError (a UsageError) for a control made with other settings
    or not random-init."""
    files = {store.stem_of(p): p for p in store.list_feature_files(folder)}
    collector = property_collector(state, seed=seed)
    common = [stem for stem in state.files if stem in files]
    if collector is None or not common:
        return None
    for stem in common:
        ff = read(files[stem], state.layers)
        check_control_file(ff, state.meta)
        collector.add(ff.stem, {k: ff.layers[k] for k in state.layers}, ff.fbank)
    return collector


def control_meta(folder: Path, stems: list[str]) -> dict:
    """The metadata of the control's file for the first of ``stems`` (no arrays read); ``{}`` without one."""
    files = {store.stem_of(p): p for p in store.list_feature_files(folder)}
    first = next((files[s] for s in stems if s in files), None)
    return {} if first is None else read(first, []).meta


def control_result(source, paths: dict[str, Path], score) -> ControlResult | None:
    """A measure family on the random-init control: ``score(files)`` over the control folder's feature files whose
    stems ``paths`` (stem -> analysed file) holds, as a :class:`ControlResult`; None without a control folder
    (``source``: a ``control.ControlSource`` or None) or without shared stems."""
    if source is None or source.folder is None:
        return None
    shared = {store.stem_of(p): p for p in store.list_feature_files(source.folder) if store.stem_of(p) in paths}
    if not shared:
        return None
    return ControlResult.of(score(shared), features_dir=source.folder, n_files=len(shared),
                            meta=control_meta(source.folder, sorted(shared)))
