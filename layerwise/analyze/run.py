"""The analysis run: compute → write the numbers → draw → write the report.

:func:`check_output_dir` refuses an output folder that cannot be written before anything is computed.
:func:`compute` reads the selected files once (``analyze.stream``: exact statistics, subsample, span features) and
derives every number into a typed :class:`~layerwise.contract.results.AnalysisResult` (``analyze.finish``: PCA, t-SNE,
span and alignment-free measures); :func:`write_numbers` writes per_dim_stats.npz, summary.csv and summary.json at
once; :func:`draw` draws the registry of figures (``report.figures``; one that raises is named and left out);
:func:`write` writes summary.json again with the figures, and report.html (``report.html``), all atomically.
:func:`produce` is that order with the failures of writing (a full disk: one line, the rest named as not written);
:func:`run_analysis` is the composition; sharded runs (``shards``) write partial statistics instead and merge them
later. Errors derive from :class:`~layerwise.errors.LayerwiseError` (usage: exit 2). Never imports torch or
transformers."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from layerwise.analyze.options import AnalysisOptions
from layerwise.contract import store
from layerwise.contract.names import plural
from layerwise.contract.outputs import FOLDER_FULL, check_output_dir, os_reason
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


class _NotWritten(Exception):
    """An output file that could not be written (an OSError): ``name`` the file, ``reason`` the errno text. A
    signal inside this module (as ``model.adapter._StopForward``): caught by :func:`produce`, never raised to
    callers, so it is no part of the error tree."""

    def __init__(self, name: str, err: OSError) -> None:
        self.name, self.reason, self.errno = name, os_reason(err), err.errno
        super().__init__(f"could not write {name}: {self.reason}")


@contextmanager
def _writing(name: str):
    """Turn an OSError of the folder while writing ``name`` into _NotWritten naming it."""
    try:
        yield
    except OSError as err:
        raise _NotWritten(name, err) from err


@dataclass(frozen=True)
class Figures:
    """What :func:`draw` produced: ``drawn`` the ``figures.Drawn`` entries written, in registry order; ``failed``
    figure file name -> why it was not drawn (its exception, one line)."""

    drawn: list
    failed: dict[str, str]


def _guarded(figure, failed: dict[str, str]):
    """``figure`` drawn through ``figures.guarded``: a failure is named in ``failed`` and the others are still
    drawn; an OSError while writing it becomes _NotWritten (its reason the errno text), raised when the folder can
    take no more (FOLDER_FULL)."""
    from dataclasses import replace

    from layerwise.report import figures

    def draw(result, path):
        with _writing(figure.name):
            return figure.draw(result, path)

    return figures.guarded(replace(figure, draw=draw), failed,
                           fatal=lambda err: isinstance(err, _NotWritten) and err.errno in FOLDER_FULL,
                           reason=lambda err: err.reason if isinstance(err, _NotWritten) else
                           figures.failure_reason(err))


def draw(result: AnalysisResult, out: str | Path) -> Figures:
    """Every figure of the registry that applies, drawn into ``out``; a figure that raises is left out and named in
    ``Figures.failed``. Raises _NotWritten when the folder can take no more (FOLDER_FULL)."""
    from layerwise.report import figures

    failed: dict[str, str] = {}
    todo = [_guarded(figure, failed) for figure in figures.FIGURES if figure.applies(result)]
    drawn = figures.draw_all(result, out, todo)
    return Figures(drawn, failed)


def summary_of(result: AnalysisResult, drawn: list) -> dict:
    """The summary.json object: the result's summary, the figures drawn and the per-dimension file's name."""
    from layerwise.report import html

    return {**result.summary(), "figures": [d.figure.name for d in drawn], "per_dim_stats": html.PER_DIM_NPZ}


def write_numbers(result: AnalysisResult, out: str | Path) -> list[Path]:
    """per_dim_stats.npz, summary.csv and summary.json (no figures yet) for ``result``, right after the numbers
    are computed, so that no later failure can lose them. Raises _NotWritten naming the file."""
    from layerwise.contract.results import CONTRACT_KEYS
    from layerwise.report import html

    out = Path(out)
    with _writing(str(out)):
        out.mkdir(parents=True, exist_ok=True)
    paths = []
    with _writing(html.PER_DIM_NPZ):
        paths.append(html.write_per_dim(out, {x.key: x.dim_mean for x in result.layers},
                                        {x.key: x.dim_var for x in result.layers}))
    with _writing(html.SUMMARY_CSV):
        paths.append(html.write_summary_csv(out, html.with_display_names(result.rows())))
    with _writing(html.SUMMARY_JSON):
        paths.append(html.write_summary_json(out, summary_of(result, []), required=CONTRACT_KEYS))
    return paths


def write(result: AnalysisResult, drawn: list, out: str | Path) -> list[Path]:
    """summary.json again (with the figures drawn and every wall time) and report.html, after the figures.
    Raises _NotWritten naming the file."""
    from layerwise.contract.results import CONTRACT_KEYS
    from layerwise.report import html

    out = Path(out)
    with _writing(html.SUMMARY_JSON):
        summary = html.write_summary_json(out, summary_of(result, drawn), required=CONTRACT_KEYS)
    with _writing(html.REPORT_HTML):
        report = html.write_report_html(out, result, drawn)
    return [summary, report]


def produce(result: AnalysisResult, out: str | Path, start: float) -> dict:
    """Write the numbers, draw, write the report (in that order) for ``result`` into ``out``; ``start`` the
    perf_counter of the run's start. A figure that fails is named (a note in summary.json and report.html) and the
    rest is still written; when the folder can take nothing more (_NotWritten) writing stops with one error
    line naming the file and the errno text. Returns the summary.json object with ``not_written`` (file name ->
    why; empty when everything was written)."""
    from dataclasses import replace

    from layerwise.report import html

    out = Path(out)
    not_written: dict[str, str] = {}
    drawn: list = []
    for note in result.notes:
        log.warning(note)
    try:
        write_numbers(result, out)
        draw_start = time.perf_counter()
        figures = draw(result, out)
        drawn, not_written = figures.drawn, dict(figures.failed)
        wall = {**result.run.wall_s, "figures": time.perf_counter() - draw_start,
                "total": time.perf_counter() - start}
        notes = [*result.notes, *(f"figure {name} not drawn: {why}" for name, why in figures.failed.items())]
        result = replace(result, run=replace(result.run, wall_s=wall), notes=notes)
        write(result, drawn, out)
    except _NotWritten as err:
        log.error("%s; stopped writing to %s (what was written before is complete)", err, out)
        not_written[err.name] = err.reason
        if err.name != html.REPORT_HTML:
            not_written[html.REPORT_HTML] = f"writing stopped at {err.name}"
        return {**summary_of(result, drawn), "not_written": not_written}
    log.info("wrote report.html and %d figures to %s in %.1f s", len(drawn), out, wall["total"])
    return {**summary_of(result, drawn), "not_written": not_written}


def run_analysis(options: AnalysisOptions | None = None, **settings) -> dict:
    """Analyse a folder (or one shard of it, or merge the shards' partials): compute, write the numbers, draw,
    write the report.

    options : an :class:`AnalysisOptions`, or its fields as keyword arguments. The output folder is checked first
    (:func:`check_output_dir`). Returns the summary.json object (before NaN → null) with the figure names and
    ``not_written`` (output file -> why it was not written: a figure that raised, a full disk; see :func:`produce`);
    a shard run returns ``{"partial": path}``.
    Raises UsageError (exit 2) or InputError (a damaged file), both LayerwiseError.
    """
    from layerwise.analyze import shards

    options = options or AnalysisOptions(**settings)
    check_output_dir(options.output_dir, AnalysisError)
    start = time.perf_counter()
    if options.merge:
        result = shards.merge(options)
    else:
        files = select_files(options.features_dir, options.num_files, options.file_list)
        if options.sharded:
            return {"partial": str(shards.write_partial(files, options))}
        result = compute(files, options)
    return produce(result, options.output_dir, start)
