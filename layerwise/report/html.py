"""The written outputs of both reports, and the analysis's own: summary.json, summary.csv, report.html (the one
writer of each, each file written atomically), per_dim_stats.npz.

Nothing is computed here: numbers come from a typed result, figure titles and captions from the registry in
``figures``, the run card from ``runcard``. summary.json: NaN/inf are written as JSON ``null`` (an analysis's also
keeps the contract keys: files, layers, n_frames, mean, std, cka, cosine, pca_explained_variance_ratio).
summary.csv: None/NaN/inf are empty cells. report.html: one self-contained page (figures embedded as base64 PNG)
that opens offline, from the one template ``templates/report.html.j2``: the run card first, then every note and
every measure that could not be computed with its reason, the contents, the tables, the figures, the files.
One convention for a cell without a value: ``n/a (why)`` when it is undefined by definition (the reason given),
``—`` when it was not computed (the reason is in the notes).
"""

from __future__ import annotations

import base64
import csv
import functools
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from layerwise.contract import store
from layerwise.contract.layout import MEASURES
from layerwise.contract.names import display_name, model_label
from layerwise.contract.results import CONTROL_KEY
from layerwise.report import runcard

SUMMARY_JSON = "summary.json"
SUMMARY_CSV = "summary.csv"
PER_DIM_NPZ = "per_dim_stats.npz"
REPORT_HTML = "report.html"
# summary.csv / table column -> what it holds (shown under the table for the columns present)
COLUMN_HELP = {
    "dim": "dimensions of the layer",
    "n_frames": "frames (segments for span folders) of the layer over all files analysed",
    "frame_rate": "frames per second of the layer (— for span folders: segments have no rate)",
    "mean": "mean over all frames × dimensions", "std": "standard deviation over all frames × dimensions",
    "dim_var_median": "median of the per-dimension variances", "dim_var_max": "largest per-dimension variance",
    "pca_evr_pc1": "share of the variance on the first principal component",
    "pca_components_90": "fewest principal components holding 90 % of the variance (— when PCA is undefined or "
                         "needs more than the components kept)",
    "cka_with_previous": "linear CKA with the row above",
    "cka_with_previous_debiased": "debiased CKA (unbiased HSIC) with the row above: ≈ 0 for unrelated layers",
    "probe_majority_baseline": "accuracy of always answering the most frequent label",
    "cka_debiased": "debiased CKA (unbiased HSIC)",
    **{m.key: m.description for m in MEASURES},  # the measure registry (contract.py)
}
TEMPLATES = Path(__file__).parent / "templates"  # shipped as package data (pyproject.toml)
TEMPLATE = "report.html.j2"
NOT_COMPUTED = "not computed (see the notes)"  # the tooltip of a "—" cell
ANALYSIS_NO_NOTES = "None: every requested measure was computed and the extraction recorded no failure."
CELL_LEGEND = (("x [a, b]", ("the value and its 95 % interval (how it was made: summary.json intervals.methods), "
                             "rounded to the digits the interval supports; summary.csv keeps full precision")),
               ("n/a (…)", "undefined for that layer, for the reason given"),
               ("—", ("not computed (the reason is in the notes). The same numbers are in summary.csv and "
                      "summary.json")))


# ---------------------------------------------------------------------------------------------- summary files
def json_ready(value):
    """NaN/inf -> None, numpy scalars/arrays -> Python, recursively (strict JSON)."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_ready(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _empty_if_missing(value):
    """A csv cell: None, NaN and inf are empty."""
    if value is None or (isinstance(value, (float, np.floating)) and not math.isfinite(value)):
        return ""
    return value


def write_summary_json(output_dir: Path, summary: dict, *, required=()) -> Path:
    """``summary.json`` in insertion order (layers stay in numeric order), NaN/inf as ``null``, numpy values as
    Python ones; raises KeyError when a key of ``required`` (an analysis: ``CONTRACT_KEYS``) is missing."""
    missing = [k for k in required if k not in summary]
    if missing:
        raise KeyError(f"summary lacks contract keys {missing}")
    path = Path(output_dir) / SUMMARY_JSON
    store.write_json_atomic(path, json_ready(summary), sort_keys=False)
    return path


def with_display_names(rows: list[dict]) -> list[dict]:
    """``rows`` with a ``name`` column (L0 …, :func:`display_name`) right after ``layer`` (the stored key)."""
    out = []
    for row in rows:
        named = {}
        for key, value in row.items():
            named[key] = value
            if key == "layer" and "name" not in row:
                named["name"] = display_name(str(value))
        out.append(named)
    return out


def write_summary_csv(output_dir: Path, rows: list[dict]) -> Path:
    """``summary.csv``: one line per row, columns from the first row's keys in their order; None/NaN/inf are
    written as empty cells, other values as ``str`` writes them."""
    buffer = io.StringIO()
    columns = list(rows[0])
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _empty_if_missing(row.get(k)) for k in columns})
    path = Path(output_dir) / SUMMARY_CSV
    store.write_text_atomic(path, buffer.getvalue())
    return path


def write_per_dim(output_dir: Path, dim_mean: dict, dim_var: dict) -> Path:
    """``{layer}_mean`` and ``{layer}_var`` arrays (D,) float64 per layer (not a feature file)."""
    path = Path(output_dir) / PER_DIM_NPZ
    arrays = {f"{k}_mean": np.asarray(v) for k, v in dim_mean.items()}
    arrays.update({f"{k}_var": np.asarray(v) for k, v in dim_var.items()})
    with store.atomic_open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return path




# ---------------------------------------------------------------------------------------------- the page renderer
@dataclass(frozen=True)
class Cell:
    """One table cell as shown: its text, CSS class ("num", "na" or "") and tooltip."""

    text: str
    css: str = ""
    title: str = ""


CI_SUFFIXES = ("_ci_low", "_ci_high")  # summary.csv's interval columns of a value column
ZERO_WIDTH_DIGITS = 4  # significant digits of a value whose interval has zero width (as cell() writes a float)
MAX_DECIMALS = 6  # decimals of an interval's numbers at most (fixed-point)
TINY = 1e-4  # below this, MAX_DECIMALS fixed-point decimals would show less than 2 significant digits


@dataclass(frozen=True)
class Estimate:
    """A value with its 95 % interval, shown with only the digits the interval supports."""

    value: float
    low: float
    high: float

    @property
    def spec(self) -> str:
        """The format of all three numbers: decimals down to one digit below the first significant digit of the
        half-width (half-width 0.0123 -> ``.3f``: ``0.456``), at most MAX_DECIMALS; ``.0f`` when value and ends
        are all integers (a component count) or the half-width is 10 or more. A zero-width interval: the value's
        ZERO_WIDTH_DIGITS significant digits (``.4g``). An interval finer than MAX_DECIMALS around a value below
        TINY (which MAX_DECIMALS would print as 0.000000): the significant digits it supports, at most
        ZERO_WIDTH_DIGITS (3.59e-9 in [2.92e-9, 4.26e-9] -> ``.3g``: 3.59e-09)."""
        if all(float(v).is_integer() for v in (self.value, self.low, self.high)):
            return ".0f"
        half = (self.high - self.low) / 2.0
        if not half > 0:
            return f".{ZERO_WIDTH_DIGITS}g"
        decimals = max(0, -math.floor(math.log10(half)) + 1)
        largest = max(abs(self.value), abs(self.low), abs(self.high))
        if decimals <= MAX_DECIMALS or largest >= TINY:
            return f".{min(decimals, MAX_DECIMALS)}f"
        significant = decimals + math.floor(math.log10(largest)) + 1
        return f".{min(max(significant, 1), ZERO_WIDTH_DIGITS)}g"

    def text(self) -> str:
        """``value [low, high]``: ``0.456 [0.444, 0.468]``, ``10 [10, 10]``, ``3.59e-09 [2.92e-09, 4.26e-09]``."""
        spec = self.spec
        return f"{self.value:{spec}} [{self.low:{spec}}, {self.high:{spec}}]"


def with_intervals(row: dict) -> dict:
    """A table row with each value that has ``<column>_ci_low/_ci_high`` cells turned into an :class:`Estimate`
    (rounded to what its interval supports) and the interval columns dropped; summary.csv keeps full precision."""
    out = {}
    for column, value in row.items():
        if column.endswith(CI_SUFFIXES):
            continue
        low, high = row.get(f"{column}_ci_low"), row.get(f"{column}_ci_high")
        finite = all(isinstance(v, (int, float, np.number)) and math.isfinite(v) for v in (value, low, high))
        out[column] = Estimate(float(value), float(low), float(high)) if finite else value
    return out


def cell(value, why: str | None = None) -> Cell:
    """The one cell convention of both reports. A missing value (None, NaN, inf) reads ``n/a (why)`` when ``why``
    says why it is undefined by definition, else ``—`` (not computed; the reason is in the notes). Floats with 4
    significant digits, integers with thousands separators, anything else as its text."""
    if value is None or (isinstance(value, (float, np.floating)) and not math.isfinite(value)):
        return Cell(f"n/a ({why})", "na") if why else Cell("—", "num", NOT_COMPUTED)
    if isinstance(value, Estimate):
        return Cell(value.text(), "num", "value [95 % interval]; digits as the interval supports")
    if isinstance(value, (bool, np.bool_)):
        return Cell(str(bool(value)))
    if isinstance(value, (float, np.floating)):
        return Cell(f"{value:.4g}", "num")
    if isinstance(value, (int, np.integer)):
        return Cell(f"{value:,}", "num")
    return Cell(str(value))


@dataclass(frozen=True)
class Table:
    """A table of the page. rows : cell values, one list per row in ``columns`` order; reasons : (row index,
    column) -> why that cell is undefined by definition; heading, intro : an h3 and a paragraph above it; legend :
    (term, what it means) pairs below it ("Columns. …")."""

    columns: list[str]
    rows: list[list]
    reasons: dict[tuple[int, str], str] = field(default_factory=dict)
    heading: str = ""
    intro: str = ""
    legend: tuple[tuple[str, str], ...] = ()

    def cells(self) -> list[list[Cell]]:
        return [[cell(v, self.reasons.get((i, c))) for c, v in zip(self.columns, row)] for i, row in enumerate(self.rows)]


def layer_table(rows: list[dict], reasons=None, **kwargs) -> Table:
    """A :class:`Table` of per-layer ``rows`` (columns from the first row's keys); the ``layer`` column shows the
    display name (L0 …). reasons : callable (row, column) -> why a cell is undefined by definition, or None."""
    shown = [with_intervals(row) for row in rows]
    columns = list(shown[0])
    values = [[display_name(str(row.get(c))) if c == "layer" else row.get(c) for c in columns] for row in shown]
    why = {}
    if reasons is not None:
        why = {(i, c): r for i, row in enumerate(rows) for c in columns if (r := reasons(row, c))}
    return Table(columns, values, why, **kwargs)


@dataclass(frozen=True)
class Section:
    """A titled part of the page: paragraphs, then tables."""

    heading: str
    paragraphs: tuple[str, ...] = ()
    tables: tuple[Table, ...] = ()


@dataclass(frozen=True)
class FigureView:
    """A drawn figure as the page shows it: anchor (the file's stem), title, caption, base64 PNG. alternative : a
    second figure shown in its place one click away (two tabs, plain HTML/CSS), or None."""

    anchor: str
    title: str
    caption: str
    data: str
    alternative: FigureView | None = None
    tab: str = ""  # the label of this view's tab when it has an alternative (or is one)


def figure_view(drawn) -> FigureView:
    """``drawn`` (``figures.Drawn``: registry entry + PNG path) with its PNG read and base64-encoded."""
    data = base64.b64encode(Path(drawn.path).read_bytes()).decode("ascii")
    return FigureView(Path(drawn.name).stem, drawn.figure.title, drawn.caption, data)


GLANCE_LINES = 5  # rows of the condensed run card on the first screen (one line each, full text on hover)
GLANCE_ROWS = ("Model", "Data", "Layers", "Control", "Wall time")  # which rows, when the card has them
# the figure a reader wants first (anchor = PNG stem): what each layer encodes, else the layer-similarity heatmap;
# a comparison has neither and shows its first figure (its same-index CKA curves)
KEY_FIGURES = ("what_each_layer_encodes", "span_measures", "layer_similarity_cka_debiased", "layer_similarity_cka",
               "cka_same_layer")
# (default, alternative, their tab labels): figures shown as two tabs of one figure, the default first
FIGURE_TABS = (("layer_similarity_cka_debiased", "layer_similarity_cka", "debiased CKA (shown by default)",
                "linear CKA (as published)"),)


def with_tabs(views: list[FigureView]) -> list[FigureView]:
    """``views`` with each FIGURE_TABS pair present merged into one view: the default with the other as its
    ``alternative`` (the other's own entry removed)."""
    from dataclasses import replace

    by_anchor = {v.anchor: v for v in views}
    merged = {}
    for default, other, tab_default, tab_other in FIGURE_TABS:
        if default in by_anchor and other in by_anchor:
            merged[default] = replace(by_anchor[default], tab=tab_default,
                                      alternative=replace(by_anchor[other], tab=tab_other))
            merged[other] = None
    return [merged.get(v.anchor, v) for v in views if merged.get(v.anchor, v) is not None]


@dataclass(frozen=True)
class Page:
    """Everything report.html shows, in order: title, run card ((label, text) rows), notes (or ``no_notes`` when
    there are none), contents and figures, sections, and the files (``files_heading``)."""

    title: str
    card: list[tuple[str, str]]
    notes: list[str]
    sections: list[Section]
    figures: list[FigureView]
    files: list[str]
    files_heading: str = "Files analysed"
    no_notes: str = ANALYSIS_NO_NOTES

    @property
    def glance(self) -> list[tuple[str, str]]:
        """The run card condensed to GLANCE_LINES rows for the first screen: the rows named in GLANCE_ROWS that the
        card has, in that order, filled up with the card's first rows (a comparison's card names its folders)."""
        rows = dict(self.card)
        chosen = [label for label in GLANCE_ROWS if label in rows]
        chosen += [label for label, _ in self.card if label not in chosen and label != "Commands"]
        return [(label, rows[label]) for label in chosen[:GLANCE_LINES]]

    @property
    def key_figure(self) -> FigureView | None:
        """The figure of the first screen: the first of KEY_FIGURES this page has, else its first figure."""
        by_anchor = {f.anchor: f for f in self.figures}
        return next((by_anchor[a] for a in KEY_FIGURES if a in by_anchor),
                    self.figures[0] if self.figures else None)


@functools.lru_cache(maxsize=1)
def _template():
    import jinja2  # only when a page is rendered

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    return env.get_template(TEMPLATE)


def render(page: Page) -> str:
    """The page as one self-contained HTML document (every text escaped)."""
    return _template().render(page=page)


def write_page(output_dir: Path, page: Page) -> Path:
    """``report.html`` for ``page`` (atomically: a failure while rendering leaves an earlier report in place)."""
    path = Path(output_dir) / REPORT_HTML
    store.write_text_atomic(path, render(page))
    return path


# ---------------------------------------------------------------------------------------------- an analysis's page
def notes_of(result, problems: list[str]) -> list[str]:
    """Every note and every measure that could not be computed, with its reason, in one list: the run's notes,
    ``unavailable`` (measure -> reason), each layer's reasons, the control's, then the extraction's problems."""
    lines = list(result.notes)
    lines += [f"{measure} not computed: {reason}" for measure, reason in result.unavailable.items()]
    for layer in result.layers:
        lines += [f"{display_name(layer.key)}: {what} not computed: {reason}" for what, reason in layer.reasons.items()]
    if result.control is not None:
        lines += [f"random-init control: {measure} not computed: {reason}"
                  for measure, reason in result.control.unavailable.items()]
    if len(result.layers) == 1:
        lines.append("a single layer was selected: no layer-similarity heatmap")
    return lines + problems


def _measures_text(result) -> tuple[str, ...]:
    info = result.measure_info.get("span_measures_info") or {}
    if not info:
        return ()
    text = (f"Span measures on {info.get('n_segments')} segments of {info.get('n_utterances')} utterances, "
            f"{info.get('n_classes')} classes, mean over {info.get('n_splits')} utterance splits, seed "
            f"{info.get('seed')}.")
    return (text,)


def _legend(columns, control: bool = False) -> tuple[tuple[str, str], ...]:
    """What each column present holds (COLUMN_HELP), then the random-init and missing-value conventions."""
    prefix = f"{CONTROL_KEY}_"
    known = [(c, COLUMN_HELP[c.removeprefix(prefix)]) for c in columns
             if c.removeprefix(prefix) in COLUMN_HELP and not (control and c == "layer")]
    if control:
        known.insert(0, (f"{CONTROL_KEY}_…", ("the measure of that name on the random-initialisation control "
                                              "(same utterances, seed and protocol)")))
    return (*known, *CELL_LEGEND)


def _layer_tables(result) -> tuple[Table, ...]:
    """The per-layer table of the analysed model and, with a control, the control's columns as their own table
    (the main table stays readable). A ``random_init_`` column's undefined cells use the reason of its measure."""
    def why(row: dict, column: str) -> str | None:
        return result.not_applicable.get(column.removeprefix(f"{CONTROL_KEY}_"), {}).get(str(row.get("layer")))

    own, control = result.rows("own"), result.rows("control")
    control = control if control and len(control[0]) > 1 else []  # a control without per-layer measures: no table
    tables = [layer_table(own, why, legend=_legend(own[0]))]
    if control:
        tables.append(layer_table(control, why, heading="Random-initialisation control per layer",
                                  intro=f"Random-initialisation control: {result.control.describe(len(result.files))}.",
                                  legend=_legend(control[0], control=True)))
    return tuple(tables)


def analysis_page(result, drawn: list, card: list[tuple[str, str]], notes: list[str]) -> Page:
    """The page of an analysis: ``result`` (``results.AnalysisResult``), the figures ``drawn`` (``figures.Drawn``),
    its run card (``runcard.analysis_card``) and notes (:func:`notes_of`)."""
    title = f"Layer-wise analysis: {model_label(result.meta.get('model_name'))}"
    if result.meta.get("random_init"):
        title += " (random initialisation, not the trained weights)"
    summary = Section("Summary per layer", _measures_text(result), _layer_tables(result))
    return Page(title, card, notes, [summary], with_tabs([figure_view(d) for d in drawn]), list(result.files))


def write_report_html(output_dir: Path, result, drawn: list) -> Path:
    """``report.html`` for ``result`` with the figures ``drawn`` (``figures.Drawn``: registry entry + PNG path)."""
    extraction = runcard.read_extraction(result.run.features_dir)
    card = runcard.analysis_card(result, extraction)
    notes = notes_of(result, runcard.extraction_problems(extraction, result.run.features_dir))
    return write_page(output_dir, analysis_page(result, drawn, card, notes))
