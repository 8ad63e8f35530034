"""The analysis run: compute → draw → write.

:func:`compute` reads the selected files once (``analyze.stream``: exact statistics, subsample, span features) and
derives every number into a typed :class:`~layerwise.contract.results.AnalysisResult` (``analyze.finish``: PCA, t-SNE,
span and alignment-free measures); :func:`draw` draws the registry of figures (``report.figures``); :func:`write`
writes summary.json/csv, per_dim_stats.npz and report.html atomically (``report.html``). :func:`run_analysis` is the composition; sharded runs
(``shards``) write partial statistics instead and merge them later. Errors derive from
:class:`~layerwise.errors.LayerwiseError` (usage: exit 2). Never imports torch or transformers.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from layerwise.analyze.options import AnalysisOptions
from layerwise.contract import store
from layerwise.contract.names import plural
from layerwise.contract.results import AnalysisResult
from layerwise.errors import AnalysisError

log = logging.getLogger(__name__)



def _listed(line: str, folder: Path) -> Path:
    """A file_list line as a path: itself when it exists, else a name or stem inside ``folder``."""
    for candidate in (Path(line), folder / line, store.feature_path(folder, line)):
        if candidate.is_file():
            return candidate
    return Path(line)


def select_files(features_dir: str | Path, num_files: int, file_list: str | Path | None = None) -> list[Path]:
    """The first ``num_files`` ``*_features.npz`` of the folder in file-name order (0 = all); with ``file_list``
    (one path per line, as ``extract_features.py --write_file_list`` writes them: absolute or relative to the
    current directory) only the files it names."""
    folder = Path(features_dir)
    if not folder.is_dir():
        found = store.look_around(folder)
        raise AnalysisError(f"features folder {folder} " + (f"is not a folder: {found}" if found else
                            "does not exist; run extract_features.py first or pass features_dir with its output "
                            "folder"))
    if file_list is not None:
        text = store.read_own(file_list, what="file_list", rebuild=(
            f"extract_features.py --write_file_list {file_list} with the extraction's settings writes it again "
            f"(or leave out file_list to analyse every file of {folder})"))
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        files = sorted((_listed(line, folder) for line in lines), key=lambda p: p.name)
        missing = [str(p) for p in files if not p.is_file()]
        if missing:
            raise AnalysisError(f"file_list {file_list} names {len(missing)} file(s) that do not exist "
                                f"({missing[0]} …): each line must be the path of a *{store.FEATURE_SUFFIX} file "
                                f"(as extract_features.py --write_file_list writes them) or a file name or stem "
                                f"in features_dir {folder}")
    else:
        files = store.list_feature_files(folder)
    if not files:
        found = store.look_around(folder) if file_list is None else ""
        raise AnalysisError(f"no *{store.FEATURE_SUFFIX} files in {folder}"
                            + (f" named by {file_list}" if file_list is not None else "")
                            + (f": {found}" if found else "; run extract_features.py first or pass features_dir "
                                                          "with its output folder"))
    return files if num_files == 0 else files[:num_files]


def compute(files: list[Path], options: AnalysisOptions) -> AnalysisResult:
    """One streaming pass over ``files`` and every derived number. Raises LayerwiseError subclasses."""
    from layerwise.analyze import finish, preflight, stream
    from layerwise.contract.names import speaker_of

    if options.color_by == "speaker":  # before the pass: a name that has no speaker is known from the file names
        for path in files:
            speaker_of(store.stem_of(path))
    checked = preflight.check(files, options)  # the first file, the control, the ABX items: before the pass
    start = time.perf_counter()
    state = stream.collect(files, list(range(len(files))), layer_spec=options.layers, seed=options.seed,
                            max_points=options.max_points, precision=options.precision)
    elapsed = time.perf_counter() - start
    log.info("streaming pass: %s, %s frames in %.1f s", plural(len(state.files), "file"),
             f"{min(state.stats.n_frames(k) for k in state.layers):,}", elapsed)
    return finish.finish(state, options, order=state.files, wall={"streaming_pass": elapsed}, preflight=checked)


def draw(result: AnalysisResult, out: str | Path) -> list:
    """Every figure of the registry that applies, drawn into ``out``; returns ``figures.Drawn`` entries."""
    from layerwise.report import figures

    return figures.draw_all(result, out)


def write(result: AnalysisResult, drawn: list, out: str | Path) -> list[Path]:
    """summary.json, summary.csv, per_dim_stats.npz and report.html for ``result`` (atomic writes)."""
    from layerwise.report import html

    return html.write_outputs(result, drawn, out)


def run_analysis(options: AnalysisOptions | None = None, **settings) -> dict:
    """Analyse a folder (or one shard of it, or merge the shards' partials): compute, draw, write.

    options : an :class:`AnalysisOptions`, or its fields as keyword arguments. Returns the summary.json object
    (before NaN → null) with the figure names; a shard run returns ``{"partial": path}``.
    Raises UsageError (exit 2) or InputError (a damaged file), both LayerwiseError.
    """
    from dataclasses import replace

    from layerwise.analyze import shards

    options = options or AnalysisOptions(**settings)
    start = time.perf_counter()
    if options.merge:
        result = shards.merge(options)
    else:
        files = select_files(options.features_dir, options.num_files, options.file_list)
        if options.sharded:
            return {"partial": str(shards.write_partial(files, options))}
        result = compute(files, options)
    out = Path(options.output_dir)
    draw_start = time.perf_counter()
    drawn = draw(result, out)
    wall = {**result.run.wall_s, "figures": time.perf_counter() - draw_start, "total": time.perf_counter() - start}
    result = replace(result, run=replace(result.run, wall_s=wall))
    write(result, drawn, out)
    for note in result.notes:
        log.warning(note)
    log.info("wrote report.html and %d figures to %s in %.1f s", len(drawn), out, wall["total"])
    return {**result.summary(), "figures": [d.name for d in drawn]}
