"""Written outputs of an analysis run: summary.json, summary.csv, per_dim_stats.npz, report.html — each atomically.

Nothing is computed here: numbers come from a ``results.AnalysisResult``, figure titles and captions from the
registry in ``figures``, the run card from ``runcard``. ``summary.json`` keeps the contract keys (files, layers,
n_frames, mean, std, cka, cosine, pca_explained_variance_ratio) plus extra keys; NaN is written as JSON ``null``.
report.html is one self-contained page (figures embedded as base64 PNG) that opens offline: the run card first,
then every note and every measure that could not be computed with its reason, the per-layer table, the figures.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
from pathlib import Path

import numpy as np

from layerwise.contract import store
from layerwise.contract.layout import MEASURES
from layerwise.contract.names import display_name, model_label
from layerwise.contract.results import CONTRACT_KEYS, CONTROL_KEY
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
    "probe_majority_baseline": "accuracy of always answering the most frequent label",
    **{m.key: m.description for m in MEASURES},  # the measure registry (contract.py)
}
STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1150px;margin:auto;padding:1em;color:#222}"
    "img{max-width:100%;border:1px solid #ddd}table{border-collapse:collapse;font-size:0.85em}"
    "td,th{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}"
    "table.card{width:100%;background:#f7f9fc}table.card th{width:9em;background:#e8eef7}"
    "pre{white-space:pre-wrap;word-break:break-all;margin:0;font-size:0.95em}"
    ".notes{background:#fff6e0;border-left:5px solid #e0a000;padding:0.4em 1em}"
    ".ok{background:#eaf6ea;border-left:5px solid #3a3;padding:0.4em 1em}"
    ".how{background:#f4f4f4;padding:0.5em}td.num{text-align:right;font-variant-numeric:tabular-nums;"
    "white-space:nowrap}.wide{overflow-x:auto}.wide th{min-width:3.6em;vertical-align:bottom}"
    "td.na{color:#666;font-size:0.9em}"
)


def _clean(value):
    """NaN/inf -> None, numpy scalars/arrays -> Python, recursively (strict JSON)."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_clean(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
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


def write_summary_json(output_dir: Path, summary: dict) -> Path:
    """``summary.json`` in insertion order (layers stay in numeric order); raises KeyError without a contract key."""
    missing = [k for k in CONTRACT_KEYS if k not in summary]
    if missing:
        raise KeyError(f"summary lacks contract keys {missing}")
    path = Path(output_dir) / SUMMARY_JSON
    store.write_json_atomic(path, _clean(summary), sort_keys=False)
    return path


def write_summary_csv(output_dir: Path, rows: list[dict]) -> Path:
    """One row per layer; columns from the first row's keys, plus ``name`` (L0 …) after ``layer`` (the stored key).
    None/NaN/inf are written as empty cells."""
    buffer = io.StringIO()
    columns = list(rows[0])
    if "layer" in columns and "name" not in columns:
        columns.insert(columns.index("layer") + 1, "name")
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        full = {"name": display_name(str(row.get("layer", ""))), **row}
        writer.writerow({k: _empty_if_missing(full.get(k)) for k in columns})
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


# ---------------------------------------------------------------------------------------------- report.html
def _cell(value, why: str | None = None) -> str:
    """One table cell; ``why`` : the reason an empty cell is empty by definition (shown as ``n/a (why)``)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        if why:
            return f"<td class='na'>n/a ({html.escape(why)})</td>"
        return "<td class='num' title='not computed (see the notes)'>—</td>"
    if isinstance(value, (float, np.floating)):
        return f"<td class='num'>{value:.4g}</td>"
    if isinstance(value, (int, np.integer)):
        return f"<td class='num'>{value:,}</td>"
    return f"<td>{html.escape(str(value))}</td>"


def _header(name: str) -> str:
    """A column header that may wrap after each underscore (never inside a word)."""
    return f"<th>{html.escape(str(name)).replace('_', '_<wbr>')}</th>"


def _table(rows: list[dict], not_applicable: dict[str, dict[str, str]] | None = None) -> str:
    """Rows as an HTML table that scrolls sideways when wide; a ``layer`` column shows the display name (L0 …);
    headers wrap at underscores. not_applicable : column -> layer key -> why the cell is empty by definition (a
    ``random_init_`` column uses the reason of its measure)."""
    not_applicable = not_applicable or {}

    def why(column: str, layer) -> str | None:
        measure = column.removeprefix(f"{CONTROL_KEY}_")
        return not_applicable.get(measure, {}).get(str(layer))

    head = "".join(_header(k) for k in rows[0])
    body = "".join("<tr>" + "".join(_cell(display_name(v), None) if k == "layer" else _cell(v, why(k, row.get("layer")))
                                    for k, v in row.items()) + "</tr>" for row in rows)
    return f"<div class='wide'><table><tr>{head}</tr>{body}</table></div>"


def _split_rows(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """(the analysed model's columns, the control's ``random_init_…`` columns with ``layer``; [] without any)."""
    prefix = f"{CONTROL_KEY}_"
    own = [{k: v for k, v in r.items() if not k.startswith(prefix)} for r in rows]
    control = [{"layer": r["layer"], **{k: v for k, v in r.items() if k.startswith(prefix)}} for r in rows]
    return own, (control if len(control[0]) > 1 else [])


def _columns_help(columns, control: bool = False) -> str:
    """What each column present holds, then the random-init and missing-value conventions."""
    prefix = f"{CONTROL_KEY}_"
    known = [f"<b>{html.escape(c)}</b>: {html.escape(COLUMN_HELP[c.removeprefix(prefix)])}" for c in columns
             if c.removeprefix(prefix) in COLUMN_HELP and not (control and c == "layer")]
    if control:
        known.insert(0, f"<b>{CONTROL_KEY}_…</b>: the measure of that name on the random-initialisation control "
                        f"(same utterances, seed and protocol)")
    known.append("<b>n/a (…)</b>: undefined for that layer, for the reason given")
    known.append("<b>—</b>: not computed (the reason is in the notes). The same numbers are in summary.csv and "
                 "summary.json")
    return "<p class='how'><b>Columns.</b> " + "; ".join(known) + ".</p>"


def card_html(rows: list[tuple[str, str]]) -> str:
    """A run card's (label, text) rows as a table; the ``Commands`` row keeps its line breaks."""
    cells = "".join(f"<tr><th>{html.escape(label)}</th><td><pre>{html.escape(text)}</pre></td></tr>"
                    if label == "Commands" else f"<tr><th>{html.escape(label)}</th><td>{html.escape(text)}</td></tr>"
                    for label, text in rows)
    return f"<table class='card'>{cells}</table>"


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


def _notes_html(lines: list[str]) -> str:
    if not lines:
        return ("<div class='ok'><h2>Notes</h2><p>None: every requested measure was computed and the extraction "
                "recorded no failure.</p></div>")
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return (f"<div class='notes'><h2>Notes and what could not be computed ({len(lines)})</h2>"
            f"<ul>{items}</ul></div>")


def _measures_text(result) -> str:
    info = result.measure_info.get("span_measures_info") or {}
    if not info:
        return ""
    text = (f"Span measures on {info.get('n_segments')} segments of {info.get('n_utterances')} utterances, "
            f"{info.get('n_classes')} classes, mean over {info.get('n_splits')} utterance splits, seed "
            f"{info.get('seed')}.")
    return f"<p>{html.escape(text)}</p>"


def _figure_html(drawn) -> str:
    data = base64.b64encode(Path(drawn.path).read_bytes()).decode("ascii")
    figure = drawn.figure
    anchor = html.escape(Path(figure.name).stem)
    return (f"<section id='{anchor}'><h2>{html.escape(figure.title)}</h2>"
            f"<img alt='{html.escape(figure.title)}' src='data:image/png;base64,{data}'>"
            f"<p class='how'><b>How to read this:</b> {html.escape(drawn.caption)}</p></section>")


def _control_table(result, rows: list[dict]) -> str:
    """The control's per-layer columns as their own table (the main table stays readable), or ""."""
    if not rows:
        return ""
    intro = f"Random-initialisation control: {result.control.describe(len(result.files))}."
    return (f"<h3>Random-initialisation control per layer</h3><p>{html.escape(intro)}</p>"
            + _table(rows, result.not_applicable) + _columns_help(rows[0], control=True))


def render_html(result, drawn: list, card: list[tuple[str, str]], notes: list[str]) -> str:
    """The page: title, run card, notes, contents, per-layer table, figures, files (all text escaped)."""
    title = f"Layer-wise analysis: {model_label(result.meta.get('model_name'))}"
    if result.meta.get("random_init"):
        title += " (random initialisation, not the trained weights)"
    contents = "".join(f"<li><a href='#{html.escape(Path(d.figure.name).stem)}'>{html.escape(d.figure.title)}"
                       f"</a></li>" for d in drawn)
    files = html.escape(", ".join(result.files))
    own, control = _split_rows(result.rows())
    return "\n".join([
        (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>"),
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Run card</h2>" + card_html(card),
        _notes_html(notes),
        f"<h2>Figures</h2><ol>{contents}</ol>",
        "<h2>Summary per layer</h2>" + _measures_text(result) + _table(own, result.not_applicable)
        + _columns_help(own[0]) + _control_table(result, control),
        *[_figure_html(d) for d in drawn],
        f"<details><summary>Files analysed ({len(result.files)})</summary><p>{files}</p></details></body></html>",
    ])


def write_report_html(output_dir: Path, result, drawn: list) -> Path:
    """``report.html`` for ``result`` with the figures ``drawn`` (``figures.Drawn``: registry entry + PNG path)."""
    extraction = runcard.read_extraction(result.run.features_dir)
    card = runcard.run_card(result, extraction)
    notes = notes_of(result, runcard.extraction_problems(extraction, result.run.features_dir))
    path = Path(output_dir) / REPORT_HTML
    store.write_text_atomic(path, render_html(result, drawn, card, notes))
    return path


def write_outputs(result, drawn: list, output_dir: str | Path) -> list[Path]:
    """Everything an analysis writes besides the figures: per_dim_stats.npz, summary.csv, summary.json (with the
    figure names), report.html. Returns their paths."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = {**result.summary(), "figures": [d.figure.name for d in drawn], "per_dim_stats": PER_DIM_NPZ}
    return [
        write_per_dim(out, {x.key: x.dim_mean for x in result.layers}, {x.key: x.dim_var for x in result.layers}),
        write_summary_csv(out, result.rows()),
        write_summary_json(out, summary),
        write_report_html(out, result, drawn),
    ]

