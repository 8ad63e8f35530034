"""Written outputs of an analysis run: summary.json, summary.csv, per_dim_stats.npz, report.html.

Nothing is computed here; numbers come from ``stats``/``embed`` via ``analyze``. ``summary.json`` keeps the contract
keys (files, layers, n_frames, mean, std, cka, cosine, pca_explained_variance_ratio) plus a few extra keys.
NaN (e.g. cosine between layers of different dims) is written as JSON ``null``.
"""

from __future__ import annotations

import base64
import csv
import html
import math
from pathlib import Path

import numpy as np

from . import store
from .spanalysis import CONTROL_KEY

SUMMARY_JSON = "summary.json"
SUMMARY_CSV = "summary.csv"
PER_DIM_NPZ = "per_dim_stats.npz"
REPORT_HTML = "report.html"
CONTRACT_KEYS = ("files", "layers", "n_frames", "mean", "std", "cka", "cosine", "pca_explained_variance_ratio")

# figure file -> (heading, how to read it)
FIGURES = {
    "feature_statistics.png": (
        "Feature statistics per layer",
        (
            "Mean and standard deviation of all values of a layer (every real frame × every dimension). Padding never "
            "enters. A jump in the std marks a change of scale between layers (e.g. the first transformer layer after "
            "the CNN); scale alone says nothing about what a layer encodes."
        ),
    ),
    "layer_similarity_cka.png": (
        "Layer similarity: linear CKA",
        (
            "Linear centred kernel alignment over frames (Kornblith et al. 2019): 1 means the two layers' frame "
            "representations are the same up to rotation and isotropic scaling; near 0 means unrelated. Read blocks of "
            "high CKA as groups of layers that compute similar things; the diagonal is 1 by definition."
        ),
    ),
    "layer_similarity_cosine.png": (
        "Layer similarity: uncentered cosine (for comparison with the prototype)",
        (
            "Cosine between the two layers' whole frame matrices, frame t/dim d against frame t/dim d, without "
            "centring. Large shared means push it towards 1 and a rotation of one layer changes it, so it is not a "
            "similarity of representations; use the CKA heatmap for that. Undefined (n/a) for layers of different dims."
        ),
    ),
    "pca.png": (
        "PCA with frames as points",
        (
            "Top left: cumulative share of variance in the first principal components, from the exact covariance over "
            "all frames (one curve per layer, dark = early). Top right: how many components hold 50 % / 90 % of the "
            "variance, a rough effective dimensionality per layer. Below: the sampled frames on PC1/PC2; clusters by "
            "colour mean the leading directions separate utterances (speaker/channel) or labels."
        ),
    ),
    "tsne.png": (
        "t-SNE of sampled frames",
        (
            "A 2-D neighbourhood map of the seeded frame subsample per layer. Only local neighbourhoods are meaningful: "
            "distances between clusters and cluster sizes are not. Colour by utterance shows speaker/recording "
            "clustering; colour by phone (span folders) shows phonetic clustering."
        ),
    ),
    "variance_distribution.png": (
        "Per-dimension variance",
        (
            "Histogram over dimensions of the variance of each dimension across frames (log10 scale, shared axis). "
            "A few dimensions with variance orders of magnitude above the rest are outlier dimensions; they dominate "
            "Euclidean distances, the uncentered cosine and the first principal components."
        ),
    ),
    "span_measures.png": (
        "Where label information lives: probe accuracy, PWCCA, MI per layer",
        (
            "Span folders only. x: layer in numeric order; y: held-out scores in [0, 1] (PWCCA can dip slightly below "
            "0). Blue: accuracy of a linear probe predicting each segment's phone/word, trained and tested on disjoint "
            "utterances; read it as its height above the dotted majority-class baseline (a layer at the baseline carries "
            "no linearly decodable label information). Orange: projection-weighted CCA between the segment vectors and "
            "the one-hot labels (the measure of the published layer-wise curves). Green: normalised mutual information "
            "between k-means clusters and labels (no supervision; slightly above 0 even for noise). Solid lines: the "
            "analysed model; dashed: the same measures on a randomly initialised model of the same config (same "
            "utterances, seed and splits). The gap between solid and dashed is what training added; a peak shows where "
            "the information is most linearly accessible, not the only place it exists."
        ),
    ),
}
SPAN_KEYS = ("probe_accuracy", "pwcca", "mi")  # per-layer span measures (summary.json: layer -> float)


def span_columns(summary: dict, layer: str) -> dict:
    """summary.csv columns of the span measures for one layer: the measures, the baseline, and the control's as
    ``random_init_<measure>``; ``{}`` when the summary has none (frame folders)."""
    if "probe_accuracy" not in summary:
        return {}
    row = {k: summary[k][layer] for k in SPAN_KEYS if k in summary}
    row["probe_majority_baseline"] = summary["probe_majority_baseline"]
    control = summary.get(CONTROL_KEY) or {}
    row.update({f"{CONTROL_KEY}_{k}": control[k][layer] for k in SPAN_KEYS if k in control})
    return row


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


def write_summary_json(output_dir: Path, summary: dict) -> Path:
    missing = [k for k in CONTRACT_KEYS if k not in summary]
    if missing:
        raise KeyError(f"summary lacks contract keys {missing}")
    path = Path(output_dir) / SUMMARY_JSON
    store.write_json_atomic(path, _clean(summary), sort_keys=False)  # insertion order = numeric layer order
    return path


def write_summary_csv(output_dir: Path, rows: list[dict]) -> Path:
    """One row per layer; columns from the first row's keys."""
    path = Path(output_dir) / SUMMARY_CSV
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()})
    return path


def write_per_dim(output_dir: Path, dim_mean: dict, dim_var: dict) -> Path:
    """``{layer}_mean`` and ``{layer}_var`` arrays (D,) float64 per layer (not a feature file)."""
    path = Path(output_dir) / PER_DIM_NPZ
    arrays = {f"{k}_mean": np.asarray(v) for k, v in dim_mean.items()}
    arrays.update({f"{k}_var": np.asarray(v) for k, v in dim_var.items()})
    np.savez(path, **arrays)
    return path


def _table(rows: list[dict]) -> str:
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = []
    for row in rows:
        cells = "".join(
            f"<td>{v:.4g}</td>" if isinstance(v, float) else f"<td>{html.escape(str(v))}</td>" for v in row.values()
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _span_table(summary: dict) -> str:
    """Per-layer span measures, trained next to random init, and where they came from."""
    rows = [{"layer": k, **span_columns(summary, k)} for k in summary["layers"]]
    info = summary.get("span_measures_info", {})
    text = (f"Measured on {info.get('n_segments')} segments of {info.get('n_utterances')} utterances, "
            f"{info.get('n_classes')} classes, mean over {info.get('n_splits')} utterance splits, seed "
            f"{info.get('seed')}.")
    control = summary.get(CONTROL_KEY)
    if control:
        text += (f" Random-init control: {control.get('n_files')} files from {control.get('features_dir')}"
                 + (f" (skipped: {control['span_measures_skipped']})" if "span_measures_skipped" in control else "."))
    else:
        text += " No random-init control (extract one with extract_features.py --random_init)."
    return f"<p>{html.escape(text)}</p>" + _table(rows)


def write_html(output_dir: Path, summary: dict, rows: list[dict], figures: list[str], notes: list[str]) -> Path:
    """One self-contained page: every figure drawn (base64 PNG), the per-layer table, how to read each figure."""
    output_dir = Path(output_dir)
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}img{max-width:100%}"
        "table{border-collapse:collapse;font-size:0.85em}td,th{border:1px solid #ccc;padding:2px 6px}"
        ".how{background:#f4f4f4;padding:0.5em}"
    )
    unit = "frames" if summary.get("span", "frame") == "frame" else f"{summary['span']} segments"
    intro = (
        f"<p>{len(summary['files'])} files, {summary['n_frames']:,} {unit}, layers {', '.join(summary['layers'])}; "
        f"features from <code>{html.escape(str(summary.get('features_dir', '')))}</code>; seed "
        f"{summary.get('seed')}; {summary.get('n_points', 0)} sampled points for the scatters.</p>"
    )
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>Layer-wise analysis</title><style>{style}</style></head><body>",
        "<h1>Layer-wise analysis</h1>",
        intro,
    ]
    for note in notes:
        parts.append(f"<p><b>Note:</b> {html.escape(note)}</p>")
    parts.append("<h2>Summary per layer</h2>" + _table(rows))
    for name in figures:
        heading, how = FIGURES[name]
        data = base64.b64encode((output_dir / name).read_bytes()).decode("ascii")
        parts.append(f"<h2>{html.escape(heading)}</h2><img alt='{name}' src='data:image/png;base64,{data}'>"
                     f"<p class='how'><b>How to read this:</b> {html.escape(how)}</p>")
        if name == "span_measures.png":
            parts.append(_span_table(summary))
    parts.append(f"<h2>Files</h2><p>{html.escape(', '.join(summary['files']))}</p></body></html>")
    path = output_dir / REPORT_HTML
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
