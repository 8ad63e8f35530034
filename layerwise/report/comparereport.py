"""What a comparison writes besides its figures: summary.json, summary.csv, report.html (each atomically).

Nothing is computed here; the numbers come from :class:`~layerwise.compare.run.Comparison`, the run card from
``runcard.comparison_card``, and every file is written by the one writer in ``html`` (NaN: JSON ``null``, an empty
CSV cell, and on the page ``n/a (why)`` for a value undefined by definition, ``—`` for one not computed).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from layerwise.contract import layout
from layerwise.contract.names import display_name, layer_range, naming_legend
from layerwise.contract.provenance import analysis_versions
from layerwise.contract.results import N_PCA_COMPONENTS
from layerwise.report import html, runcard

NO_NOTES = "None: every number of the comparison was computed."
DEBIASED_TEXT = ("Unbiased HSIC (Song et al. 2012), as Kornblith et al.'s debiased=True: ≈ 0 for unrelated layers, "
                 "where linear CKA is biased upwards by about D/(n + D) (D dims, n frames).")
# summary.csv column -> the FolderMeasures.reasons measure whose reasons explain its empty cells
CSV_REASONS = {"cka_with_previous": "cka_with_previous", "cka_with_previous_debiased": "cka_with_previous_debiased",
               "pca_evr_pc1": "pca_explained_variance_ratio",
               "pca_components_90": "pca_components_90"}
SWEEP_HELP = {
    "folder": "the folder's label", "dim": "dimensions of the layer",
    "n_frames": "frames (segments for span folders) compared, the same in every folder",
    "cka_with_previous": "linear CKA with the previous layer of the same folder",
    "cka_with_previous_debiased": "debiased CKA (unbiased HSIC) with the previous layer of the same folder",
}


def _folder_entry(result, folder) -> dict:
    """summary.json ``folders`` entry: where it is, which model and settings, its layers and their dims, the layers
    pooled onto the common grid (kernel, stride), its identity."""
    pooled = result.pooling.get(folder.label, {})
    meta = folder.meta
    return {
        "label": folder.label, "features_dir": str(folder.path), "model_name": meta.get("model_name"),
        "model_revision": meta.get("model_revision"), "rep_type": meta.get("rep_type"),
        "random_init": meta.get("random_init"),
        "layers": folder.layers, "dims": dict(zip(folder.layers, folder.dims)),
        "pooled_onto_grid": {k: {"kernel": kern, "stride": stride} for k, (kern, stride) in pooled.items()},
        "identity": layout.identity_of(meta),
    }


def _folder_measures(folder, m) -> dict:
    """summary.json ``per_folder`` entry: the folder's own per-layer measures on the compared frames."""
    keys = folder.layers
    return {
        "layers": keys,
        "mean": dict(zip(keys, m.mean)),
        "std": dict(zip(keys, m.std)),
        "cka_with_previous": dict(zip(keys, m.cka_previous)),
        "cka_with_previous_debiased": dict(zip(keys, m.cka_previous_debiased)),
        "pca_components_90": dict(zip(keys, m.pca_components_90)),
        "pca_explained_variance_ratio": {k: None if r is None else list(r[:N_PCA_COMPONENTS])
                                         for k, r in zip(keys, m.pca_ratios)},
        "reasons": m.reasons,
    }


def _pair_entries(result, pair, debiased: bool = False) -> tuple[dict, dict | None]:
    """summary.json ``cka_between`` and ``cka_same_layer`` entries of one pair (the latter None when the layer
    counts differ); ``reasons`` there: row layer -> column layer -> why that cell is null, and layer of ``a`` ->
    why that value is null. debiased : the ``cka_between_debiased`` entry instead (no same-layer entry)."""
    a, b = result.folders[pair.a], result.folders[pair.b]
    head = {"a": a.label, "b": b.label, "layers_a": a.layers, "layers_b": b.layers}
    cells: dict[str, dict[str, str]] = {}
    for (i, j), why in (pair.reasons_debiased if debiased else pair.reasons).items():
        cells.setdefault(a.layers[i], {})[b.layers[j]] = why
    between = {**head, "matrix": pair.cka_debiased if debiased else pair.cka, "reasons": cells}
    if debiased:
        return between, None
    if pair.same_layer is None:
        return between, None
    diagonal = {a.layers[i]: why for (i, j), why in pair.reasons.items() if i == j}
    return between, {**head, "values": list(pair.same_layer), "reasons": diagonal}


def summary_dict(result, figures) -> dict:
    """The summary.json object (before NaN → null): folders, utterances used and left out, time matching,
    ``cka_between`` (one entry per pair of folders: the layers-of-a × layers-of-b matrix with the layer keys),
    ``cka_same_layer`` (pairs with equal layer counts), ``cka_between_debiased`` (as ``cka_between``, debiased CKA),
    each folder's own per-layer measures, figures, notes,
    ``unavailable`` (measure -> why some of its numbers could not be computed), and how it was run (command, wall
    seconds, package versions). Every null has its reason: in the entry's ``reasons``, or ``grid_reason``."""
    between, same = [], []
    for pair in result.pairs:
        entry, diagonal = _pair_entries(result, pair)
        between.append(entry)
        if diagonal is not None:
            same.append(diagonal)
    grid = None if result.grid is None else {"hop_samples": result.grid.hop,
                                             "receptive_field_samples": result.grid.field}
    return {
        "labels": [f.label for f in result.folders], "folders": [_folder_entry(result, f) for f in result.folders],
        "files": result.stems, "n_files": len(result.stems), "n_frames": result.n_frames, "span": result.span,
        "left_out": result.left_out, "n_left_out": {k: len(v) for k, v in result.left_out.items()},
        "grid": grid, **({"grid_reason": result.grid_reason} if grid is None else {}),
        "edge_frames_dropped": result.edge_frames_dropped,
        "cka_between": between, "cka_same_layer": same,
        "cka_between_debiased": [_pair_entries(result, pair, debiased=True)[0] for pair in result.pairs],
        "per_folder": {f.label: _folder_measures(f, m) for f, m in zip(result.folders, result.measures)},
        "figures": [f.name for f in figures], "not_written": result.not_written, "notes": result.notes,
        "unavailable": result.unavailable,
        "command": result.command, "wall_seconds": result.wall_seconds, "versions": analysis_versions(),
    }


def csv_rows(result) -> list[dict]:
    """One row per folder and layer: the sweep measures (summary.csv; NaN and None are empty cells there)."""
    rows = []
    for folder, m in zip(result.folders, result.measures):
        for k, key in enumerate(folder.layers):
            ratios = m.pca_ratios[k]
            rows.append({
                "folder": folder.label, "layer": key, "dim": folder.dims[k], "n_frames": result.n_frames,
                "mean": float(m.mean[k]), "std": float(m.std[k]), "cka_with_previous": float(m.cka_previous[k]),
                "cka_with_previous_debiased": float(m.cka_previous_debiased[k]),
                "pca_evr_pc1": float("nan") if ratios is None else float(ratios[0]),
                "pca_components_90": m.pca_components_90[k],
            })
    return rows


def _folders_section(result) -> html.Section:
    columns = ["label", "folder", "model", "random init", "layers", "pooled onto the common grid",
               "utterances left out"]
    rows = [[f.label, str(f.path), f.meta.get("model_name", "?"), f.meta.get("random_init", "?"),
             layer_range(f.layers),
             ", ".join(f"{display_name(k)} (kernel {a}, stride {b})" for k, (a, b) in result.pooling[f.label].items())
             or "none",
             len(result.left_out[f.label])] for f in result.folders]
    legend = naming_legend({k for f in result.folders for k in f.layers})
    return html.Section("Folders", (f"Layer names: {legend}.",) if legend else (), (html.Table(columns, rows),))


def _numbers_sections(result) -> list[html.Section]:
    """The CKA matrices (one table per pair) and the per-folder sweeps (summary.csv's rows)."""
    matrices, debiased = [], []
    for pair in result.pairs:
        a, b = result.folders[pair.a], result.folders[pair.b]
        columns = [""] + [display_name(k) for k in b.layers]
        for into, matrix, why in ((matrices, pair.cka, pair.reasons),
                                  (debiased, pair.cka_debiased, pair.reasons_debiased)):
            into.append(html.Table(columns,
                                   [[display_name(key), *map(float, row)] for key, row in zip(a.layers, matrix)],
                                   {(i, columns[j + 1]): r for (i, j), r in why.items()},
                                   heading=f"{a.label} (rows) vs {b.label} (columns)"))
    reasons = {f.label: m.reasons for f, m in zip(result.folders, result.measures)}

    def why(row: dict, column: str) -> str | None:
        measure = CSV_REASONS.get(column)
        return reasons[row["folder"]].get(measure, {}).get(row["layer"]) if measure else None

    rows = csv_rows(result)
    legend = tuple((c, SWEEP_HELP.get(c) or html.COLUMN_HELP[c]) for c in rows[0]
                   if c in SWEEP_HELP or c in html.COLUMN_HELP) + html.CELL_LEGEND
    return [html.Section("Numbers: linear CKA between folders", (), tuple(matrices)),
            html.Section("Numbers: debiased CKA between folders", (DEBIASED_TEXT,), tuple(debiased)),
            html.Section("Numbers: per-folder sweeps (summary.csv; layer there is the stored key)", (),
                         (html.layer_table(rows, why, legend=legend),))]


def comparison_page(result, figures, *, now: dt.datetime | None = None) -> html.Page:
    """The page of a comparison: run card, notes, folders, every figure with how to read it, the numbers, the
    utterances. Layers are shown by their display names (L0 …, C0 …) everywhere; the stored keys once, in the
    legend. ``now`` : the report's date (default: now, UTC)."""
    title = f"Layer-wise comparison: {', '.join(f.label for f in result.folders)}"
    sections = [_folders_section(result), *_numbers_sections(result)]
    notes = [*result.notes, *(f"{measure} not computed: {why}" for measure, why in result.unavailable.items()),
             *(f"{name} not drawn: {why}" for name, why in result.not_written.items())]
    return html.Page(title, runcard.comparison_card(result, now=now), notes, sections,
                     [html.figure_view(d) for d in figures], list(result.stems), files_heading="Utterances",
                     no_notes=NO_NOTES)


def write_numbers(result, out: Path, drawn) -> None:
    """summary.json and summary.csv into ``out`` before the figures are drawn (``drawn``: none yet, so
    ``"figures": []``), so that a stop or a full disk while drawing cannot lose the numbers; :func:`write_all` then
    writes summary.json again with the figures drawn, those not drawn and the whole wall time."""
    out = Path(out)
    html.write_summary_json(out, summary_dict(result, drawn))
    html.write_summary_csv(out, csv_rows(result))


def write_all(result, out: Path, figures) -> None:
    """summary.json, summary.csv and report.html into ``out`` (figures already drawn there)."""
    out = Path(out)
    html.write_summary_json(out, summary_dict(result, figures))
    html.write_summary_csv(out, csv_rows(result))
    html.write_page(out, comparison_page(result, figures))
