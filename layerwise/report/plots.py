"""Figures from already-computed numbers (seaborn on matplotlib, Agg backend). Nothing is computed here but layout.

Every figure: layers in numeric order under their display names (``names.display_name``: L0 … L12, C0 … C6),
axis labels with units, a title whose second line is the caller's subtitle (model tag, files, frames). Each function
writes one PNG atomically and returns its path, or None when there is nothing worth drawing (a 1×1 heatmap).
Scatter figures (PCA, t-SNE) and their colour groups are in :mod:`layerwise.report.scatter`; shared drawing helpers in
:mod:`layerwise.report.plotkit`. matplotlib and seaborn are imported inside the functions (the CLIs import this module).
"""

from __future__ import annotations

import math

import numpy as np

from layerwise.contract import layout
from layerwise.contract.layout import MEASURE
from layerwise.contract.names import display_name
from layerwise.report import plotkit
from layerwise.report.plotkit import caption, layer_positions, style

ANNOTATE_UP_TO = 16  # heatmap cells carry their value up to 16 × 16 layers; beyond, the text would not fit
FLAT_RANGE = 1e-5  # values spanning less than this are one colour: the colour range is [max − FLAT_RANGE, max]
MAX_DIGITS = 5  # decimals written in heatmap cells: enough to tell apart values that differ by 1e-5
HEATMAP_TITLES = {
    "cka": "Linear CKA between layers (centred, over frames)",
    "cosine": "Uncentered cosine between layers' frame matrices",
}
HEATMAP_MEASURES = {"cka": "linear CKA", "cosine": "uncentered cosine"}  # colour bar label
HEATMAP_CAPTIONS = {
    "cosine": "Caveat: the uncentered cosine is dominated by the layers' means and changes under a rotation of one "
              "layer; it is not a similarity of representations. Use the CKA heatmap for that. n/a: layers of "
              "different dimensions.",
}


def feature_statistics(layers, mean: dict, std: dict, path, *, subtitle: str):
    """Mean ± std over all frames × dims, per layer (error bars), x = layer index (gaps between selected layers
    stay visible). mean, std : layer key -> float."""
    with style() as (plt, _sns):
        x = layer_positions(layers)
        m = np.array([mean[k] for k in layers], dtype=float)
        s = np.array([std[k] for k in layers], dtype=float)
        fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(layers) + 3.0), 4.0))
        ax.errorbar(x, m, yerr=s, fmt="o-", capsize=4, color="tab:blue", label="mean ± std")
        ax.fill_between(x, m - s, m + s, alpha=0.15, color="tab:blue")
        ax.set_xticks(x, [display_name(k) for k in layers])
        ax.set_xlabel("layer")
        ax.set_ylabel("feature value (mean ± std over frames × dims)")
        plotkit.plain_numbers(ax, scientific=True)
        ax.set_title(f"Per-layer feature statistics\n{subtitle}", fontsize=10)
        return plotkit.save(fig, path)


def _colour_range(matrix: np.ndarray, vmin: float | None) -> tuple[float, float, str]:
    """(low, high, how) of a heatmap's colour scale: the finite values' range, or ``vmin`` as the lower end."""
    finite = matrix[np.isfinite(matrix)]
    high = float(finite.max()) if finite.size else 1.0
    if vmin is not None:
        low, how = float(vmin), f"lower end set to {vmin:g}; lower values get the lowest colour"
        high = max(high, low + FLAT_RANGE)
    else:
        low, how = (float(finite.min()) if finite.size else 0.0), "from the data"
    if high - low < FLAT_RANGE:
        low = high - FLAT_RANGE
    return low, high, how


def _digits(low: float, high: float) -> int:
    """Decimals that show the differences inside [low, high]: 2 for a range of 0.1 or more, one more per decade
    below, at most MAX_DIGITS (a CKA range of 0.9990–1.0000 gets 4)."""
    return int(min(MAX_DIGITS, max(2, math.ceil(-math.log10(high - low)) + 1)))


def similarity_heatmap(matrix: np.ndarray, layers, path, *, kind: str, subtitle: str, vmin: float | None = None):
    """Layer × layer heatmap with each cell's value written in it (up to ANNOTATE_UP_TO layers).

    matrix : (L, L) float, NaN where undefined (drawn grey, "n/a"). kind : "cka" (linear CKA, centred) or "cosine"
    (uncentered cosine; its caveat is printed as a caption). The colour scale spans the values present (the range is
    in the colour bar label), or [vmin, max] with an explicit ``vmin``. Returns None for fewer than two layers (a 1×1
    heatmap says nothing).
    """
    matrix = np.asarray(matrix, dtype=float)
    if len(layers) < 2:
        return None
    low, high, how = _colour_range(matrix, vmin)
    names = [display_name(k) for k in layers]
    annotate = len(layers) <= ANNOTATE_UP_TO
    digits = _digits(low, high)
    with style() as (plt, sns):
        size = max(5.0, (0.45 + 0.07 * (digits - 2)) * len(layers) + 2.5)  # wider cells for longer numbers
        fig, ax = plt.subplots(figsize=(size + 1.2, size))
        ax.set_facecolor("0.85")  # undefined cells
        sns.heatmap(matrix, mask=~np.isfinite(matrix), vmin=low, vmax=high, cmap="viridis", square=True,
                    annot=annotate, fmt=f".{digits}f", annot_kws={"fontsize": 7}, xticklabels=names,
                    yticklabels=names, linewidths=0.5, linecolor="white", ax=ax,
                    cbar_kws={"label": f"{HEATMAP_MEASURES.get(kind, kind)}, colour range {low:.{digits}f} – "
                                       f"{high:.{digits}f} ({how})",
                              "shrink": 0.8, "format": f"%.{digits}f"})
        if annotate:
            for i, j in zip(*np.nonzero(~np.isfinite(matrix))):
                ax.text(j + 0.5, i + 0.5, "n/a", ha="center", va="center", fontsize=7, color="0.3")
        ax.set_xlabel("layer")
        ax.set_ylabel("layer")
        ax.tick_params(axis="y", rotation=0)
        ax.set_title(f"{HEATMAP_TITLES.get(kind, kind)}\n{subtitle}", fontsize=10)
        if kind in HEATMAP_CAPTIONS:
            caption(fig, HEATMAP_CAPTIONS[kind])
        return plotkit.save(fig, path)


def variance_distribution(layers, dim_var: dict, path, *, subtitle: str):
    """Histogram (with a KDE) of log10 per-dimension variance over frames, one panel per layer, shared x axis.
    dim_var : layer key -> (D,) variances; the median is marked and given in the panel title."""
    logs = {k: np.log10(np.maximum(np.asarray(dim_var[k], dtype=float), 1e-12)) for k in layers}
    low = min(v.min() for v in logs.values())
    high = max(v.max() for v in logs.values())
    bins = np.linspace(low, high + 1e-9, 40)
    with style() as (plt, sns):
        fig, axes = plotkit.grid(plt, len(layers))
        for ax, key in zip(axes, layers):
            values = logs[key]
            kde = values.size > 2 and np.ptp(values) > 0
            sns.histplot(x=values, bins=bins, kde=kde, color="tab:blue", ax=ax)
            median = float(np.median(dim_var[key]))
            ax.axvline(np.log10(max(median, 1e-12)), color="tab:red", linestyle="--", linewidth=1)
            ax.set_title(f"{display_name(key)}: median {median:.3g} (red)", fontsize=9)
            ax.set_xlabel("log10 variance of a dimension")
            ax.set_ylabel("dimensions")
        plotkit.finish(fig, f"Per-dimension variance over frames\n{subtitle}")
        return plotkit.save(fig, path)


SPAN_MEASURES = tuple((key, MEASURE[key].label, MEASURE[key].colour) for key in layout.SPAN_MEASURES)


def _values(per_layer: dict, layers) -> list[float]:
    """Per-layer values in ``layers`` order, None -> NaN (a gap in the line)."""
    return [np.nan if per_layer.get(k) is None else float(per_layer[k]) for k in layers]


def span_measures(layers, trained: dict, control: dict | None, path, *, subtitle: str, span: str):
    """Probe accuracy, PWCCA and MI against layer on one axes: trained solid, random-init control dashed, the
    majority baseline of the probe as a horizontal line.

    trained, control : dicts as returned by ``spanalysis.analyse`` (layer -> float or None under
    ``probe_accuracy``/``pwcca``/``mi``, one float ``probe_majority_baseline``, ``span_measures_info``); control
    may be None or lack the measures (not drawn).
    """
    x = layer_positions(layers)
    runs = [("trained", trained, "-", "o")]
    if control is not None and "probe_accuracy" in control:
        runs.append(("random init", control, "--", "x"))
    with style() as (plt, _sns):
        fig, ax = plt.subplots(figsize=(max(7.0, 0.5 * len(layers) + 3.0), 4.5))
        drawn = []
        for run, values, line_style, marker in runs:
            for key, name, colour in SPAN_MEASURES:
                if key in values:
                    ys = _values(values[key], layers)
                    drawn += ys
                    ax.plot(x, ys, linestyle=line_style, marker=marker, color=colour, label=f"{name}, {run}")
        base = trained["probe_majority_baseline"]
        ax.axhline(base, color="0.35", linestyle=":", label=f"majority baseline ({base:.2f})")
        if len(runs) > 1 and abs(control["probe_majority_baseline"] - base) > 1e-9:
            ax.axhline(control["probe_majority_baseline"], color="0.6", linestyle="-.",
                       label=f"majority baseline, random init ({control['probe_majority_baseline']:.2f})")
        ax.set_xticks(x, [display_name(k) for k in layers])
        ax.set_xlabel("layer")
        ax.set_ylabel("accuracy / correlation / NMI")
        plotkit.plain_numbers(ax)
        ax.set_ylim(min([0.0] + [v for v in drawn if np.isfinite(v)]) - 0.02, 1.02)
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
        info = trained.get("span_measures_info", {})
        counts = ", ".join(f"{info[k]:,} {what}" for k, what in (
            ("n_segments", f"{span} segments"), ("n_classes", "classes"), ("n_utterances", "utterances"),
            ("n_splits", "splits")) if k in info)
        ax.set_title(f"Where {span} information lives: held-out measures per layer\n{counts}\n{subtitle}",
                     fontsize=10)
        return plotkit.save(fig, path)


# measure key -> (legend name, colour); baselines (constant reference lines) are drawn dotted
ENCODES_MEASURES = {m.key: (m.label, m.colour) for m in layout.MEASURES}  # the registry in contract.py
ENCODES_GROUPS = tuple(tuple(m.key for m in layout.MEASURES if m.group == group)
                       for group in ("acoustic", "speaker", "label"))
RUN_STYLES = {"trained": ("-", "o"), "random init": ("--", "x")}


def what_each_layer_encodes(layers, measures: dict, control: dict | None, path, *, subtitle: str):
    """Every available measure against layer on one axes: trained solid, random-init control dashed (same colour).

    measures, control : measure key (ENCODES_MEASURES) -> {layer key -> float or None}; None = not computed for that
    layer (a gap). Measures absent or None for every layer are not drawn; those of a group (ENCODES_GROUPS: mel,
    speaker, label) of which another measure is drawn are named in a caption as not computed. Returns None when no
    measure has a value.
    """
    x = layer_positions(layers)
    runs = [("trained", measures)] + ([("random init", control)] if control else [])
    present = {k for k in ENCODES_MEASURES if any(v is not None for v in (measures.get(k) or {}).values())}
    if not present:
        return None
    # a group none of whose measures applies (no labels in a frame folder, no speakers) is not "missing"
    missing = [ENCODES_MEASURES[k][0] for group in ENCODES_GROUPS if present & set(group)
               for k in group if k not in present]
    with style() as (plt, _sns):
        from matplotlib.lines import Line2D

        fig, ax = plt.subplots(figsize=(max(7.5, 0.5 * len(layers) + 4.0), 4.8))
        handles, drawn = [], []
        for key, (name, colour) in ENCODES_MEASURES.items():
            shown = False
            for run, values in runs:
                ys = _values((values or {}).get(key) or {}, layers)
                if not np.isfinite(ys).any():
                    continue
                line_style, marker = (":", None) if key.endswith("baseline") else RUN_STYLES[run]
                if key.endswith("baseline") and run != "trained":
                    line_style = "-."
                ax.plot(x, ys, linestyle=line_style, marker=marker, color=colour, label=f"{key}, {run}")
                drawn += [v for v in ys if np.isfinite(v)]
                shown = True
            if shown:
                handles.append(Line2D([], [], color=colour, linestyle=":" if key.endswith("baseline") else "-",
                                      label=name))
        handles += [Line2D([], [], color="0.2", linestyle=s, marker=m, label=f"{run} ({'solid' if s == '-' else 'dashed'})")
                    for run, (s, m) in RUN_STYLES.items() if run == "trained" or control]
        ax.legend(handles=handles, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
        ax.set_xticks(x, [display_name(k) for k in layers])
        ax.set_xlabel("layer")
        ax.set_ylabel("score (accuracy, correlation, NMI)")
        plotkit.plain_numbers(ax)
        ax.set_ylim(min([0.0] + drawn) - 0.02, max([1.0] + drawn) + 0.02)
        ax.set_title(f"What each layer encodes\n{subtitle}", fontsize=10)
        if missing:
            caption(fig, "Not computed (see the report's notes for why): " + ", ".join(missing) + ".")
        return plotkit.save(fig, path)

