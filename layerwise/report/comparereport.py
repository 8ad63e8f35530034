"""Written outputs of a comparison: summary.json, summary.csv, report.html (each written atomically).

Nothing is computed here; the numbers come from :class:`~layerwise.compare.run.Comparison`. NaN (CKA of a constant
layer, CKA with the previous layer of the first layer) is written as JSON ``null`` and an empty CSV cell.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import html
import io
import math
from pathlib import Path

from layerwise.contract import layout, store
from layerwise.contract.names import display_name, naming_legend
from layerwise.contract.results import N_PCA_COMPONENTS
from layerwise.report import runcard
from layerwise.report.html import REPORT_HTML, STYLE, SUMMARY_CSV, SUMMARY_JSON, card_html


def _num(value):
    """float/int/numpy scalar -> Python number; NaN/inf -> None."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def summary_dict(result, figures) -> dict:
    """The summary.json object: folders, utterances used and left out, time matching, ``cka_between`` (one entry per
    pair of folders: the layers-of-a × layers-of-b matrix with the layer keys), ``cka_same_layer`` (pairs with equal
    layer counts), each folder's own per-layer measures, figures, notes, and how it was run (command, wall
    seconds, package versions)."""
    folders = []
    for folder in result.folders:
        pooled = result.pooling.get(folder.label, {})
        folders.append({
            "label": folder.label, "features_dir": str(folder.path), "model_name": folder.meta.get("model_name"),
            "model_revision": folder.meta.get("model_revision"), "rep_type": folder.meta.get("rep_type"), "random_init": folder.meta.get("random_init"),
            "layers": folder.layers, "dims": dict(zip(folder.layers, folder.dims)),
            "pooled_onto_grid": {k: {"kernel": kern, "stride": stride} for k, (kern, stride) in pooled.items()},
            "identity": layout.identity_of(folder.meta),
        })
    between, same = [], []
    for pair in result.pairs:
        a, b = result.folders[pair.a], result.folders[pair.b]
        between.append({"a": a.label, "b": b.label, "layers_a": a.layers, "layers_b": b.layers,
                        "matrix": [[_num(v) for v in row] for row in pair.cka]})
        if pair.same_layer is not None:
            same.append({"a": a.label, "b": b.label, "layers_a": a.layers, "layers_b": b.layers,
                         "values": [_num(v) for v in pair.same_layer]})
    per_folder = {}
    for folder, m in zip(result.folders, result.measures):
        keys = folder.layers
        per_folder[folder.label] = {
            "layers": keys,
            "mean": {k: _num(v) for k, v in zip(keys, m.mean)},
            "std": {k: _num(v) for k, v in zip(keys, m.std)},
            "cka_with_previous": {k: _num(v) for k, v in zip(keys, m.cka_previous)},
            "pca_components_90": dict(zip(keys, m.pca_components_90)),
            "pca_explained_variance_ratio": {
                k: None if r is None else [_num(v) for v in r[:N_PCA_COMPONENTS]] for k, r in zip(keys, m.pca_ratios)},
        }
    grid = None if result.grid is None else {"hop_samples": result.grid.hop,
                                             "receptive_field_samples": result.grid.field}
    return {
        "labels": [f.label for f in result.folders], "folders": folders,
        "files": result.stems, "n_files": len(result.stems), "n_frames": result.n_frames, "span": result.span,
        "left_out": result.left_out, "n_left_out": {k: len(v) for k, v in result.left_out.items()},
        "grid": grid, "edge_frames_dropped": result.edge_frames_dropped,
        "cka_between": between, "cka_same_layer": same, "per_folder": per_folder,
        "figures": [f.name for f in figures], "notes": result.notes,
        "command": result.command, "wall_seconds": result.wall_seconds, "versions": runcard.analysis_versions(),
    }


def csv_rows(result) -> list[dict]:
    """One row per folder and layer: the sweep measures."""
    rows = []
    for folder, m in zip(result.folders, result.measures):
        for k, key in enumerate(folder.layers):
            ratios = m.pca_ratios[k]
            rows.append({
                "folder": folder.label, "layer": key, "dim": folder.dims[k], "n_frames": result.n_frames,
                "mean": float(m.mean[k]), "std": float(m.std[k]), "cka_with_previous": float(m.cka_previous[k]),
                "pca_evr_pc1": float("nan") if ratios is None else float(ratios[0]),
                "pca_components_90": "" if m.pca_components_90[k] is None else m.pca_components_90[k],
            })
    return rows


def _csv_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()})
    return buffer.getvalue()


def _layer_range(keys: list[str]) -> str:
    names = [display_name(k) for k in keys]
    return names[0] if len(names) == 1 else f"{names[0]} … {names[-1]} ({len(names)})"


def run_card(result, *, now: dt.datetime | None = None) -> list[tuple[str, str]]:
    """(label, text) rows of the comparison's run card: each folder (path, model and revision, rep type and span,
    layers, extraction settings, the extraction's package versions from its manifests), the common utterances and
    frames, date, wall time, versions, command line. ``now`` : the report's date (default: now, UTC)."""
    now = now or dt.datetime.now(dt.UTC)
    unit = "frames" if result.span == "frame" else f"{result.span} segments"
    rows = []
    for folder in result.folders:
        meta = folder.meta
        extraction = runcard.read_extraction(folder.path)
        versions = ", ".join(f"{k} {v}" for k, v in extraction.versions.items()) or runcard.NOT_RECORDED
        rows.append((f"Folder {folder.label}", (
            f"{folder.path} — {runcard.model_text(meta)}; rep_type {meta.get('rep_type', runcard.NOT_RECORDED)}, "
            f"span {meta.get('span', 'frame')}; layers {_layer_range(folder.layers)}; {runcard.settings_text(meta)}; "
            f"{len(result.left_out[folder.label])} of its utterances not in every folder (left out); extraction "
            f"versions: {versions}")))
    grid = ("segments compared one by one" if result.span != "frame" else
            "no frame-geometry metadata (frames compared index by index)" if result.grid is None else
            f"common grid: hop {result.grid.hop} samples, receptive field {result.grid.field} samples")
    command = (runcard.annotate_command(result.command, len(result.stems)) if result.command
               else runcard.NOT_RECORDED)
    return rows + [
        ("Data", f"{len(result.stems)} utterances present in every folder, {result.n_frames:,} {unit}; {grid}"),
        ("Date", f"report {now.strftime('%Y-%m-%d %H:%M UTC')}"),
        ("Wall time", f"comparison {runcard.format_duration(result.wall_seconds)}"),
        ("Versions", ", ".join(f"{k} {v}" for k, v in runcard.analysis_versions().items())),
        ("Commands", f"comparison: {command}"),
    ]


def _cell(value) -> str:
    if isinstance(value, float):
        return "<td>n/a</td>" if not math.isfinite(value) else f"<td>{value:.4g}</td>"
    return f"<td>{html.escape(str(value))}</td>"


def _table(head: list[str], rows: list[list]) -> str:
    top = "".join(f"<th>{html.escape(str(h))}</th>" for h in head)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{top}</tr>{body}</table>"


def html_text(result, figures, out: Path, *, now: dt.datetime | None = None) -> str:
    """One self-contained page: run card, folders, notes, every figure (base64 PNG) with how to read it, the
    numbers. Layers are shown by their display names (L0 …, C0 …) everywhere; the stored keys once, in the legend."""
    head = ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Layer-wise comparison</title>"
            f"<style>{STYLE}</style></head><body><h1>Layer-wise comparison: "
            f"{html.escape(', '.join(f.label for f in result.folders))}</h1>")
    parts = [head, "<h2>Run card</h2>", card_html(run_card(result, now=now)),
             "<h2>Folders</h2>",
             _table(["label", "folder", "model", "random init", "layers", "pooled onto the common grid",
                     "utterances left out"],
                    [[f.label, str(f.path), f.meta.get("model_name", "?"), f.meta.get("random_init", "?"),
                      _layer_range(f.layers),
                      ", ".join(f"{display_name(k)} (kernel {a}, stride {b})"
                                for k, (a, b) in result.pooling[f.label].items()) or "none",
                      len(result.left_out[f.label])] for f in result.folders])]
    legend = naming_legend({k for f in result.folders for k in f.layers})
    parts += [f"<p>Layer names: {html.escape(legend)}.</p>"] if legend else []
    parts += [f"<p><b>Note:</b> {html.escape(n)}</p>" for n in result.notes]
    for figure in figures:
        data = base64.b64encode((out / figure.name).read_bytes()).decode("ascii")
        parts.append(f"<h2>{html.escape(figure.heading)}</h2><img alt='{figure.name}' "
                     f"src='data:image/png;base64,{data}'><p class='how'><b>How to read this:</b> "
                     f"{html.escape(figure.how)}</p>")
    parts.append("<h2>Numbers: linear CKA between folders</h2>")
    for pair in result.pairs:
        a, b = result.folders[pair.a], result.folders[pair.b]
        parts.append(f"<h3>{html.escape(a.label)} (rows) vs {html.escape(b.label)} (columns)</h3>")
        parts.append(_table([""] + [display_name(k) for k in b.layers],
                            [[display_name(key), *map(float, row)] for key, row in zip(a.layers, pair.cka)]))
    rows = [{**r, "layer": display_name(r["layer"])} for r in csv_rows(result)]
    parts.append("<h2>Numbers: per-folder sweeps (summary.csv; layer there is the stored key)</h2>")
    parts.append(_table(list(rows[0]), [list(r.values()) for r in rows]))
    parts.append("<p class='how'>n/a: cka_with_previous of a folder's first layer (it has no previous layer), or a "
                 "value undefined for a constant layer (see the notes).</p>")
    parts.append(f"<h2>Utterances</h2><p>{html.escape(', '.join(result.stems))}</p></body></html>")
    return "\n".join(parts)


def write_all(result, out: Path, figures) -> None:
    """summary.json, summary.csv and report.html into ``out`` (figures already drawn there)."""
    out = Path(out)
    store.write_json_atomic(out / SUMMARY_JSON, summary_dict(result, figures), sort_keys=False)
    store.write_text_atomic(out / SUMMARY_CSV, _csv_text(csv_rows(result)))
    store.write_text_atomic(out / REPORT_HTML, html_text(result, figures, out))
