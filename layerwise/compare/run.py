"""Compare two or more extraction folders layer by layer: cross-model CKA, same-index curves, per-folder sweeps.

One streaming pass over the utterances present in every folder (matched by file stem): each utterance's files are
read, brought onto one time grid, and folded into :class:`~layerwise.stats.cross.CrossStats`, so memory does not
grow with the number of files. Then numbers (:class:`Comparison`), then figures (``compareplots``), then the
written outputs (``comparereport``).

Time. Row t of every folder must describe the same audio. Each layer's frame grid (hop, receptive field in samples)
comes from the file metadata (:func:`layerwise.contract.store.layer_grid`). The common grid is the coarsest one among the
selected layers of all folders; a layer on a finer grid is average-pooled onto it with
:mod:`layerwise.contract.grid` (the rule the analysis uses for conv layers). Layers on the common grid must have equal
frame counts per utterance in every folder, otherwise the comparison stops naming the file. A pooled layer may end
one frame early (its last window can overrun the audio); all layers are then cut to the shorter count and the number
of frames dropped this way is reported. Files without geometry metadata are compared index by index and must have
equal counts. Span folders (phone/word segments) are compared segment by segment and must hold the same intervals.
Never imports torch or transformers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from layerwise.compare import undefined
from layerwise.compare.frames import align, common_grid
from layerwise.compare.options import DEFAULT_NUM_FILES, CompareOptions
from layerwise.contract import layout, store
from layerwise.contract.grid import Grid, pool_plan
from layerwise.contract.layout import FRAME_SPAN
from layerwise.contract.results import VARIANCE_TARGET, components_for
from layerwise.errors import CompareError, FeatureFileError, UsageError, error_text

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Folder:
    """One compared folder. meta : metadata of its first compared file; grids : layer -> Grid, or None if unknown."""

    label: str
    path: Path
    meta: dict
    layers: list[str]
    dims: list[int]
    grids: dict[str, Grid | None]


@dataclass
class FolderMeasures:
    """A folder's own per-layer measures on the compared frames; arrays of shape (L,) in ``Folder.layers`` order.

    cka_previous[0] is NaN (no previous layer), as is cka_previous_debiased[0] (the unbiased-HSIC twin); pca_ratios[k] is None and pca_components_90[k] None when PCA is
    undefined (constant layer). reasons : measure (``cka_with_previous``, ``pca_components_90``,
    ``pca_explained_variance_ratio``) -> layer -> why that layer's value is NaN/None (every one has its reason).
    """

    mean: np.ndarray
    std: np.ndarray
    cka_previous: np.ndarray
    pca_ratios: list[np.ndarray | None]
    pca_components_90: list[int | None]
    reasons: dict[str, dict[str, str]] = field(default_factory=dict)
    cka_previous_debiased: np.ndarray | None = None  # (L,) debiased CKA with the previous layer; [0] NaN


@dataclass
class PairResult:
    """Folders ``a`` < ``b`` (indices): ``cka`` (L_a, L_b) float64; ``same_layer`` its diagonal (L,) when both have
    the same number of layers, else None; reasons : (i, j) -> why ``cka[i, j]`` is NaN (every NaN has one).
    cka_debiased, reasons_debiased : the same for debiased CKA (unbiased HSIC; ``cka_between_debiased``)."""

    a: int
    b: int
    cka: np.ndarray
    same_layer: np.ndarray | None
    reasons: dict[tuple[int, int], str] = field(default_factory=dict)
    cka_debiased: np.ndarray | None = None
    reasons_debiased: dict[tuple[int, int], str] = field(default_factory=dict)


@dataclass
class Comparison:
    """Everything figures and reports show. grid : the common frame grid (None without geometry metadata);
    pooling : label -> layer -> (kernel, stride) for layers pooled onto it; left_out : label -> stems of that folder
    not present in all folders; edge_frames_dropped : frames cut because a pooled layer ended one frame early;
    command, wall_seconds : how the comparison was run (set by :func:`run_comparison`). unavailable : measure ->
    why some of its requested numbers could not be computed (non-empty: the CLI exits 1); grid_reason : why
    ``grid`` is None (None when there is a grid)."""

    folders: list[Folder]
    stems: list[str]
    left_out: dict[str, list[str]]
    n_frames: int
    span: str
    grid: Grid | None
    pooling: dict[str, dict[str, tuple[int, int]]]
    edge_frames_dropped: int
    pairs: list[PairResult]
    measures: list[FolderMeasures]
    notes: list[str] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)
    grid_reason: str | None = None
    not_written: dict[str, str] = field(default_factory=dict)  # figure file -> why it raised (the others are drawn)
    command: str | None = None  # the command line, for the run card
    wall_seconds: float | None = None  # the comparison's wall time (reading, statistics, figures)


# ---------------------------------------------------------------------------------------------- choosing files
def match_stems(dirs: list[Path]) -> tuple[list[str], list[dict[str, Path]], list[list[str]]]:
    """Stems present in every folder (sorted), each folder's stem -> path, and each folder's stems left out."""
    paths = []
    for folder in dirs:
        if not folder.is_dir():
            found = store.look_around(folder)
            raise CompareError(f"features folder {folder} " + (f"is not a folder: {found}" if found else
                               "does not exist; pass folders written by extract_features.py"))
        files = {store.stem_of(p): p for p in store.list_feature_files(folder)}
        if not files:
            found = store.look_around(folder)
            raise CompareError(f"no *{store.FEATURE_SUFFIX} files in {folder}"
                               + (f": {found}" if found else "; run extract_features.py first"))
        paths.append(files)
    common = sorted(set.intersection(*(set(p) for p in paths)))
    if not common:
        raise CompareError(f"no utterance is present in all of {[str(d) for d in dirs]} (files are matched by "
                           f"name); extract the same audio into each folder")
    left_out = [sorted(set(p) - set(common)) for p in paths]
    return common, paths, left_out


def default_labels(metas: list[dict], dirs: list[Path]) -> list[str]:
    """Each folder's run label (``layout.run_label``: ``hubert-base-ls960``; ``…-random_init`` for the control;
    ``…-local``, ``…-phone`` for other rep types and spans, as in the output folder names), from its model tag or,
    without one, its folder name; names that still repeat get ``#1``, ``#2`` … in folder order."""
    raw = [layout.run_label(layout.model_tag(meta["model_name"]) if meta.get("model_name") else folder.name,
                            rep_type=meta.get("rep_type"), span=meta.get("span"),
                            random_init=bool(meta.get("random_init")))
           for meta, folder in zip(metas, dirs)]
    seen: dict[str, int] = {}
    out = []
    for name in raw:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if raw.count(name) == 1 else f"{name}#{seen[name]}")
    return out


def describe_folders(dirs: list[Path], firsts: list[store.FeatureFile], layer_spec: str | None,
                     labels: tuple[str, ...] | None) -> list[Folder]:
    """The compared layers, dims and grids of each folder, from its first compared file (``labels``: one per
    folder, checked by :class:`~layerwise.compare.options.CompareOptions`; None: :func:`default_labels`)."""
    if labels is None:
        labels = default_labels([ff.meta for ff in firsts], dirs)
    folders = []
    for label, folder, ff in zip(labels, dirs, firsts):
        try:
            layers = layout.parse_layer_spec(layer_spec, list(ff.layers))
        except UsageError as err:
            raise CompareError(f"{folder}: {error_text(err)}") from err
        folders.append(Folder(label, folder, ff.meta, layers, [ff.layers[k].shape[1] for k in layers],
                              {k: layout.layer_grid(ff.meta, k) for k in layers}))
    spans = {f.meta.get("span", FRAME_SPAN) for f in folders}
    if len(spans) > 1:
        found = ", ".join(f"{f.label}: {f.meta.get('span', FRAME_SPAN)}" for f in folders)
        raise CompareError(f"the folders hold different units ({found}); compare frame folders with frame folders, "
                           f"or span folders of one span")
    rates = {f.meta["sample_rate"] for f in folders if "sample_rate" in f.meta}
    if len(rates) > 1:
        raise CompareError(f"the folders were extracted at different sample rates {sorted(rates)}")
    return folders


def pooling_plan(folder: Folder, grid: Grid | None) -> dict[str, tuple[int, int]]:
    """layer -> (kernel, stride) for each layer of ``folder`` not on ``grid`` (see :mod:`layerwise.contract.grid`)."""
    plan = {}
    for key, own in folder.grids.items():
        if grid is None or own == grid:
            continue
        try:
            plan[key] = pool_plan(own, grid)
        except UsageError as err:
            raise CompareError(f"{folder.label} {key} (hop {own.hop}, field {own.field} samples) cannot be matched "
                               f"in time with the common grid (hop {grid.hop}, field {grid.field}): {error_text(err)}; compare "
                               f"other layers (layers)") from err
    return plan


def _read(path: Path, layers: list[str] | None, first: store.FeatureFile | None, dims=None) -> store.FeatureFile:
    try:
        ff = store.read_features(path, layers)
    except FeatureFileError as err:
        raise CompareError(f"{error_text(err)}; re-extract the file or remove it") from err
    if first is not None:
        layout.check_same_extraction(ff.meta, first.meta, subject=str(path),
                                     reference_name=f"{first.path.name} in the same folder",
                                     advice="; compare one extraction per folder", error=CompareError)
        shapes = {k: ff.layers[k].shape[1] for k in layers}
        if list(shapes.values()) != list(dims):
            raise CompareError(f"{path}: layer dims {shapes} differ from {first.path.name}'s {list(dims)}")
    return ff


# ---------------------------------------------------------------------------------------------- the run
def _stream(stems: list[str], paths: list[dict[str, Path]], firsts: list[store.FeatureFile], folders: list[Folder],
            grid: Grid | None, plans: list[dict]):
    """One pass over the common utterances: (the filled ``CrossStats``, frames dropped at utterance ends)."""
    from layerwise.contract.progress import bar
    from layerwise.stats.cross import MIN_FRAMES, CrossStats  # scipy: deferred, the CLI imports this module at start-up

    stats = CrossStats([f.layers for f in folders], [f.dims for f in folders])
    dropped = 0
    for stem in bar(stems, "comparing (cross-folder CKA)", "utterance"):
        files = [first if first.stem == stem else _read(p[stem], f.layers, first, f.dims)
                 for first, p, f in zip(firsts, paths, folders)]
        frames, cut = align(files, [f.layers for f in folders], grid, plans)
        stats.update(frames)
        dropped += cut
    if stats.n < MIN_FRAMES:
        raise CompareError(f"only {stats.n} frames in {len(stems)} utterances; use more files (num_files, 0 = all)")
    log.info("compared %d utterances, %d frames, %d folders", len(stems), stats.n, len(folders))
    return stats, dropped


def _pairs(stats, folders: list[Folder], constant: list[dict[str, str]]) -> list[PairResult]:
    """Cross-model CKA of every pair of folders (a < b), with its diagonal when the layer counts agree and the
    reason of each undefined cell (``constant``: per folder, layer -> why it is constant)."""
    pairs = []
    for a in range(len(folders)):
        for b in range(a + 1, len(folders)):
            matrix = stats.cka_between(a, b)
            same = np.diagonal(matrix).copy() if matrix.shape[0] == matrix.shape[1] else None
            why = undefined.cka_cell_reasons(matrix, folders[a], folders[b], constant[a], constant[b])
            debiased = stats.cka_between_debiased(a, b)
            why_debiased = undefined.cka_cell_reasons(debiased, folders[a], folders[b], constant[a], constant[b])
            pairs.append(PairResult(a, b, matrix, same, why, debiased, why_debiased))
    return pairs


def _folder_measures(stats, folders: list[Folder], constant: list[dict[str, str]]) -> list[FolderMeasures]:
    """Each folder's own per-layer measures on the compared frames, each value that is undefined with its reason."""
    from layerwise.errors import EmbedError
    from layerwise.stats.sample import pca_from_covariance

    measures = []
    for f, folder in enumerate(folders):
        ratios, needed, no_pca, no_90 = [], [], {}, {}
        for k, key in enumerate(folder.layers):
            try:
                ratio, _ = pca_from_covariance(stats.covariance(f, k), stats.n, folder.dims[k])
            except EmbedError as err:
                no_pca[key] = f"PCA not computed: {error_text(err)}"
                ratio = None
            ratios.append(ratio)
            needed.append(components_for(ratio))
            if ratio is not None and needed[-1] is None:
                no_90[key] = f"the {len(ratio)} components of the PCA do not reach {VARIANCE_TARGET:.0%} of the variance"
        previous, debiased = stats.cka_previous(f), stats.cka_previous_debiased(f)
        reasons = {"cka_with_previous": undefined.previous_reasons(previous, folder.layers, constant[f]),
                   "cka_with_previous_debiased": undefined.previous_reasons(debiased, folder.layers, constant[f]),
                   "pca_components_90": {**no_pca, **no_90}, "pca_explained_variance_ratio": no_pca}
        measures.append(FolderMeasures(stats.layer_mean(f), stats.layer_std(f), previous, ratios, needed,
                                       {m: r for m, r in reasons.items() if r}, debiased))
    return measures


def _input_notes(folders: list[Folder], left: list[list[str]], span: str, grid: Grid | None,
                 dropped: int) -> list[str]:
    """What the reader should know about the inputs: utterances left out, no geometry, frames dropped."""
    notes = []
    if any(left):
        notes.append("utterances not in every folder were left out: " + "; ".join(
            f"{f.label}: {len(s)} ({', '.join(s[:5])}{', …' if len(s) > 5 else ''})" for f, s in zip(folders, left) if s))
    if span == FRAME_SPAN and grid is None:
        notes.append("no frame-geometry metadata: frames compared index by index")
    if dropped:
        notes.append(f"{dropped} frames at utterance ends dropped: a pooled layer's last window overran the audio")
    return notes


def compute(options: CompareOptions) -> Comparison:
    """Compute the comparison that ``options`` describe (nothing is written): match the utterances, describe the
    folders, one streaming pass, then the pairwise CKA and each folder's own measures."""
    dirs = list(options.features_dirs)
    stems, paths, left = match_stems(dirs)
    stems = stems if options.num_files == 0 else stems[:options.num_files]
    firsts = [_read(p[stems[0]], None, None) for p in paths]
    folders = describe_folders(dirs, firsts, options.layers, options.labels)
    span = folders[0].meta.get("span", FRAME_SPAN)
    grid = common_grid([g for f in folders for g in f.grids.values()]) if span == FRAME_SPAN else None
    plans = [pooling_plan(f, grid) for f in folders]
    stats, dropped = _stream(stems, paths, firsts, folders, grid, plans)
    notes = _input_notes(folders, left, span, grid, dropped)
    constant = undefined.constant_layers(stats, folders, "frames" if span == FRAME_SPAN else f"{span} segments")
    pairs = _pairs(stats, folders, constant)
    measures = _folder_measures(stats, folders, constant)
    missing = undefined.unavailable(
        [(folders[p.a].label, folders[p.b].label, _pair_cells(p)) for p in pairs],
        [(f.label, m.reasons) for f, m in zip(folders, measures)])
    grid_reason = (None if grid is not None else "span folders: segments are compared one by one, on no frame grid"
                   if span != FRAME_SPAN else "no frame-geometry metadata: frames compared index by index")
    return Comparison(folders, stems, {f.label: s for f, s in zip(folders, left)}, int(stats.n), span, grid,
                      {f.label: p for f, p in zip(folders, plans)}, dropped, pairs, measures, notes, missing,
                      grid_reason)


def _pair_cells(pair: PairResult) -> dict[str, dict]:
    """measure -> cell -> why, for a pair's undefined numbers: the matrix's cells and, when it has one, its
    diagonal's (``cka_same_layer``)."""
    cells = {"cka_between": pair.reasons, "cka_between_debiased": pair.reasons_debiased}
    if pair.same_layer is not None:
        cells["cka_same_layer"] = {ij: why for ij, why in pair.reasons.items() if ij[0] == ij[1]}
    return cells


def compare(features_dirs: list[str | Path], *, num_files: int = DEFAULT_NUM_FILES, layers: str | None = None,
            labels: list[str] | None = None) -> Comparison:
    """Compute the comparison of ``features_dirs`` (two or more folders of ``*_features.npz``); nothing is written.

    num_files : the first N common utterances in name order (0 = all). layers : layer spec applied to every folder
    (``"0,6,12"``, ``"0-12"``, keys; None = all). labels : one display name per folder (default: run labels).
    The settings are validated by :class:`~layerwise.compare.options.CompareOptions`.
    """
    return compute(CompareOptions(features_dirs=features_dirs, num_files=num_files, layers=layers, labels=labels))


def _draw(result: Comparison, out: Path) -> list:
    """The comparison's figures (``compareplots.figures_of``) drawn into ``out`` through ``figures.guarded``: one
    that raises is left out, named in the log and in ``result.not_written`` (the others are drawn). An OSError of
    the output folder (a full disk, a folder in the file's place) and a stop are raised: they end the run."""
    from layerwise.contract.outputs import about_output
    from layerwise.report import compareplots, figures

    def fatal(err: Exception) -> bool:
        return isinstance(err, OSError) and about_output(err, out)

    todo = [figures.guarded(figure, result.not_written, fatal=fatal) for figure in compareplots.figures_of(result)]
    return figures.draw_all(result, out, todo)


def run_comparison(options: CompareOptions | None = None, **settings) -> Comparison:
    """Compare the folders, write summary.json and summary.csv, draw the figures, then write report.html and
    summary.json again with the figures drawn and the whole wall time, to ``options.output_dir`` (every file written
    atomically; the folder is checked before computing).

    options : a :class:`~layerwise.compare.options.CompareOptions`, or its fields as keyword arguments
    (``features_dirs``, ``output_dir``, ``num_files``, ``layers``, ``labels``, ``command``: the command line for the
    run card, default this process's ``sys.argv``). Returns the :class:`Comparison`.
    """
    import time

    from layerwise.contract.outputs import check_output_dir
    from layerwise.contract.provenance import command_line
    from layerwise.report import comparereport, html

    options = options or CompareOptions(**settings)
    check_output_dir(options.output_dir, CompareError)  # before any computation
    start = time.perf_counter()
    result = compute(options)
    result.command = options.command if options.command is not None else command_line()
    out = Path(options.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    result.wall_seconds = time.perf_counter() - start  # the numbers first: a stop while drawing cannot lose them
    comparereport.write_numbers(result, out, [])
    figures = _draw(result, out)
    result.wall_seconds = time.perf_counter() - start
    comparereport.write_all(result, out, figures)
    for note in result.notes:
        log.warning(note)
    log.info("wrote %s and %d figures to %s", html.REPORT_HTML, len(figures), out)
    return result
