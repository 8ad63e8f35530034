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
    "cka_debiased": "Debiased CKA between layers (unbiased HSIC, over frames)",
    "cosine": "Uncentered cosine between layers' frame matrices",
}
HEATMAP_MEASURES = {"cka": "linear CKA", "cka_debiased": "debiased CKA", "cosine": "uncentered cosine"}  # colour bar
HEATMAP_SCALE = (0.0, 1.0)  # fixed colour scale of every similarity heatmap: 0.91 must look close to 1, not "unrelated"
HEATMAP_CAPTIONS = {
    "cosine": "Caveat: the uncentered cosine is dominated by the layers' means and changes under a rotation of one "
              "layer; it is not a similarity of representations. Use the CKA heatmap for that. n/a: layers of "
              "different dimensions.",
}


def rms_norm(dim_mean: np.ndarray, dim_var: np.ndarray) -> float:
    """Root-mean-square feature-vector norm sqrt(E‖x‖²) from per-dimension moments (exact):
    E‖x‖² = Σ_d E[x_d²] = Σ_d (var_d + mean_d²). dim_mean, dim_var : (dim,) over frames."""
    return float(np.sqrt(np.sum(np.asarray(dim_var, float) + np.asarray(dim_mean, float) ** 2)))


def feature_statistics(layers, mean: dict, std: dict, path, *, subtitle: str, dim_mean: dict | None = None,
                       dim_var: dict | None = None, ranks: dict | None = None, intervals: dict | None = None):
    """Per layer, x = layer index (gaps between selected layers stay visible). Left: mean ± std over all frames ×
    dims (error bars). With per-dimension moments (dim_mean, dim_var : layer key -> (dim,)): middle, the spread over
    dimensions of each dimension's std and mean (box plots: a LayerNorm output's flat 0 ± 1 band is resolved here);
    right, the RMS feature norm sqrt(Σ_d (var_d + mean_d²)). mean, std : layer key -> float. ranks : {"effective_rank":
    {layer: value}, "pca_components_90": {layer: value}} — a last panel with each as a line and its 95 % interval
    (``intervals``: statistic -> layer -> (low, high)) as a band."""
    with style() as (plt, _sns):
        x = layer_positions(layers)
        m = np.array([mean[k] for k in layers], dtype=float)
        s = np.array([std[k] for k in layers], dtype=float)
        per_dim = dim_mean is not None and dim_var is not None
        panels = (3 if per_dim else 1) + (ranks is not None)
        width = max(6.0, 0.5 * len(layers) + 3.0)
        fig, axes = plt.subplots(1, panels, figsize=(width * (0.75 * panels + 0.1), 4.0), squeeze=False)
        ax = axes[0, 0]
        ax.errorbar(x, m, yerr=s, fmt="o-", capsize=4, color="#0072B2", label="mean ± std")
        ax.fill_between(x, m - s, m + s, alpha=0.15, color="#0072B2")
        ax.set_ylabel("feature value (mean ± std over frames × dims)")
        ax.set_title("all values pooled", fontsize=9)
        if per_dim:
            ax = axes[0, 1]
            stds = [np.sqrt(np.maximum(np.asarray(dim_var[k], float), 0.0)) for k in layers]
            means = [np.asarray(dim_mean[k], float) for k in layers]
            offset = 0.18
            ax.boxplot(stds, positions=[p - offset for p in x], widths=0.3, showfliers=False, patch_artist=True,
                       boxprops={"facecolor": "#56B4E9"}, medianprops={"color": "black"})
            ax.boxplot(means, positions=[p + offset for p in x], widths=0.3, showfliers=False, patch_artist=True,
                       boxprops={"facecolor": "#E69F00"}, medianprops={"color": "black"})
            from matplotlib.patches import Patch

            ax.legend(handles=[Patch(color="#56B4E9", label="per-dimension std"),  # below the axes: never on a box
                               Patch(color="#E69F00", label="per-dimension mean")], fontsize=8, ncol=2,
                      loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False)
            ax.set_ylabel("over dimensions (box: quartiles, whiskers 1.5 IQR)")
            ax.set_title("per-dimension spread", fontsize=9)
            ax = axes[0, 2]
            ax.plot(x, [rms_norm(dim_mean[k], dim_var[k]) for k in layers], "o-", color="#009E73")
            ax.set_ylabel("RMS feature norm sqrt(E‖x‖²)")
            ax.set_title("feature-vector norm", fontsize=9)
        if ranks is not None:
            ax = axes[0, -1]
            for key, name, colour in (("effective_rank", "effective rank", "#D55E00"),
                                      ("pca_components_90", "components for 90 %", "#CC79A7")):
                draw_curve(ax, x, layers, ranks, key, colour=colour, label=name, intervals=intervals)
            ax.set_ylabel("dimensions")
            ax.set_title("effective rank (exp entropy of the spectrum); band: 95 % interval", fontsize=9)
            ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False, ncol=2)
        for ax in axes.flat:
            ax.set_xticks(x, [display_name(k) for k in layers])
            ax.set_xlabel("layer")
            plotkit.plain_numbers(ax, scientific=True)
        plotkit.finish(fig, f"Per-layer feature statistics\n{subtitle}")
        return plotkit.save(fig, path)


def _colour_range(matrix: np.ndarray, vmin: float | None) -> tuple[float, float, str]:
    """(low, high, how) of a heatmap's colour scale: the fixed ``HEATMAP_SCALE`` (0–1), or [``vmin``, 1] when zoomed
    (``--cka_vmin``). Values outside get the end colours."""
    low, high = HEATMAP_SCALE
    if vmin is not None:
        low = min(float(vmin), high - FLAT_RANGE)
        return low, high, f"zoomed: lower end v_min = {vmin:g}; lower values get the lowest colour"
    return low, high, "fixed; values below 0 get the lowest colour"


def _colour_bar_label(kind: str, low: float, high: float, how: str, height: float) -> str:
    """The colour bar's label, wrapped to lines no longer than the bar (0.8 × the axes, about ``height`` − 2 inches
    of a ``height``-inch figure): one long vertical line ran past the figure, into the title and the caption."""
    text = f"{HEATMAP_MEASURES.get(kind, kind)}, colour range {low:g}–{high:g} ({how})"
    return plotkit.wrap(text, max(24, int(0.8 * (height - 2.0) * plotkit.CAPTION_CHARS_PER_INCH)))


def _data_digits(matrix: np.ndarray) -> int:
    """Decimals of the cell texts: enough to tell the values present apart (:func:`_digits` of their range)."""
    finite = matrix[np.isfinite(matrix)]
    if finite.size < 2 or np.ptp(finite) <= 0:
        return 2
    return _digits(float(finite.min()), float(finite.max()))


def _digits(low: float, high: float) -> int:
    """Decimals that show the differences inside [low, high]: 2 for a range of 0.1 or more, one more per decade
    below, at most MAX_DIGITS (a CKA range of 0.9990–1.0000 gets 4)."""
    return int(min(MAX_DIGITS, max(2, math.ceil(-math.log10(high - low)) + 1)))


def similarity_heatmap(matrix: np.ndarray, layers, path, *, kind: str, subtitle: str, vmin: float | None = None):
    """Layer × layer heatmap with each cell's value written in it (up to ANNOTATE_UP_TO layers).

    matrix : (L, L) float, NaN where undefined (drawn grey, "n/a"). kind : "cka" (linear CKA, centred),
    "cka_debiased" (unbiased HSIC) or "cosine" (uncentered cosine; its caveat is printed as a caption). The colour
    scale is fixed at 0–1 (``HEATMAP_SCALE``), or [vmin, 1] with an explicit ``vmin`` (the title then says "zoomed:
    v_min = …"); the cells' decimals follow the values' range. Returns None for fewer than two layers.
    """
    matrix = np.asarray(matrix, dtype=float)
    if len(layers) < 2:
        return None
    low, high, how = _colour_range(matrix, vmin)
    names = [display_name(k) for k in layers]
    annotate = len(layers) <= ANNOTATE_UP_TO
    digits = _data_digits(matrix)
    with style() as (plt, sns):
        size = max(5.0, (0.45 + 0.07 * (digits - 2)) * len(layers) + 2.5)  # wider cells for longer numbers
        fig, ax = plt.subplots(figsize=(size + 1.2, size))
        ax.set_facecolor("0.85")  # undefined cells
        sns.heatmap(matrix, mask=~np.isfinite(matrix), vmin=low, vmax=high, cmap="viridis", square=True,
                    annot=annotate, fmt=f".{digits}f", annot_kws={"fontsize": 7}, xticklabels=names,
                    yticklabels=names, linewidths=0.5, linecolor="white", ax=ax,
                    cbar_kws={"label": _colour_bar_label(kind, low, high, how, size), "shrink": 0.8,
                              "format": "%.2f" if vmin is None else f"%.{_digits(low, high)}f"})
        if annotate:
            for i, j in zip(*np.nonzero(~np.isfinite(matrix))):
                ax.text(j + 0.5, i + 0.5, "n/a", ha="center", va="center", fontsize=7, color="0.3")
        ax.set_xlabel("layer")
        ax.set_ylabel("layer")
        ax.tick_params(axis="y", rotation=0)
        zoom = "" if vmin is None else f" — zoomed: v_min = {vmin:g}"
        ax.set_title(f"{HEATMAP_TITLES.get(kind, kind)}{zoom}\n{subtitle}", fontsize=10)
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


SPAN_CURVES = tuple((key, MEASURE[key].label, MEASURE[key].colour) for key in layout.SPAN_MEASURES)  # drawn


def _values(per_layer: dict, layers) -> list[float]:
    """Per-layer values in ``layers`` order, None -> NaN (a gap in the line)."""
    return [np.nan if per_layer.get(k) is None else float(per_layer[k]) for k in layers]


def span_measures(layers, trained: dict, control: dict | None, path, *, subtitle: str, span: str,
                  bands: dict | None = None, model: str = "analysed model"):
    """Probe accuracy, PWCCA and MI against layer on one axes: trained solid, random-init control dashed, the
    majority baseline of the probe as a horizontal line.

    trained, control : dicts as returned by ``spanalysis.analyse`` (layer -> float or None under
    ``probe_accuracy``/``pwcca``/``mi``, one float ``probe_majority_baseline``, ``span_measures_info``); control
    may be None or lack the measures (not drawn). bands : "trained"/"random init" -> (intervals, chance): each
    curve's 95 % interval as a band, its chance level as a dashed grey line. model : the legend's name of the
    analysed model (its tag; "random init" names the control).
    """
    x = layer_positions(layers)
    runs = [(model, trained, "-", "o")]
    if control is not None and "probe_accuracy" in control:
        runs.append(("random init", control, "--", "x"))
    with style() as (plt, _sns):
        fig, ax = plt.subplots(figsize=(max(7.0, 0.5 * len(layers) + 3.0), 4.5))
        drawn = []
        for i, (run, values, line_style, marker) in enumerate(runs):
            intervals, chance = (bands or {}).get("trained" if i == 0 else "random init", (None, None))
            for key, name, colour in SPAN_CURVES:
                if key in values:
                    drawn += draw_curve(ax, x, layers, values, key, colour=colour, line_style=line_style,
                                        marker=marker, label=f"{name}, {run}", intervals=intervals,
                                        chance=chance if i == 0 else None, alpha=0.15 if i == 0 else 0.07)
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
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))  # one "chance" entry for all curves
        ax.legend(unique.values(), unique.keys(), fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
        info = trained.get("span_measures_info", {})
        counts = ", ".join(f"{info[k]:,} {what}" for k, what in (
            ("n_segments", f"{span} segments"), ("n_classes", "classes"), ("n_utterances", "utterances"),
            ("n_splits", "splits")) if k in info)
        ax.set_title(f"Where {span} information lives: held-out measures per layer\n{counts}\n{subtitle}",
                     fontsize=10)
        return plotkit.save(fig, path)


# Okabe & Ito (2008), "Color Universal Design": colours told apart under every common colour-vision deficiency
# (their yellow #F0E442 left out: too light for a line on white)
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000")
# measure key -> legend name; each non-baseline measure gets its own panel and an Okabe–Ito colour by registry order
ENCODES_MEASURES = {m.key: m.label for m in layout.MEASURES}  # the registry in contract.layout
ENCODES_GROUPS = tuple(tuple(m.key for m in layout.MEASURES if m.group == group)
                       for group in layout.MEASURE_GROUPS if group != "abx")  # ABX: its own figure
BASELINE_SUFFIX = "baseline"  # a measure key ending so is a reference line, drawn dotted in its group's first panel
RUN_STYLES = {"trained": ("-", "o"), "random init": ("--", "x")}
BASELINE_STYLE = ":"  # dotted, for the trained model's and the control's baselines alike
ENCODES_LEGEND = ("solid: analysed model; dashed: random-init control; dotted: majority baseline "
                  "(same colour as its measure's panel); band: 95 % interval; grey dashed: chance")
CHANCE_STYLE = {"color": "0.45", "linestyle": (0, (4, 2)), "linewidth": 1.0}  # the chance line of every curve
BAND_ALPHA = {"trained": 0.18, "random init": 0.08}  # the control's band lighter


def band_of(intervals: dict | None, key: str, layers) -> tuple[list[float], list[float]]:
    """(low, high) per layer (NaN where a layer has no interval) of measure ``key`` in ``intervals`` (measure ->
    layer -> (low, high))."""
    per_layer = (intervals or {}).get(key) or {}
    low = [np.nan if per_layer.get(k) is None else float(per_layer[k][0]) for k in layers]
    high = [np.nan if per_layer.get(k) is None else float(per_layer[k][1]) for k in layers]
    return low, high


def chance_of(chance: dict | None, key: str, layers) -> list[float]:
    """The chance level per layer of measure ``key``: ``chance`` (measure -> layer -> value, labels permuted) when
    it has the measure, else the registry's fixed chance (ABX: 0.5), else NaN."""
    per_layer = (chance or {}).get(key)
    if per_layer:
        return _values(per_layer, layers)
    fixed = MEASURE[key].chance if key in MEASURE else None
    return [np.nan if fixed is None else float(fixed)] * len(layers)


def draw_curve(ax, x, layers, values: dict, key: str, *, colour, line_style="-", marker="o", label="",
               intervals: dict | None = None, chance: dict | None = None, alpha: float = 0.18) -> list[float]:
    """One measure's per-layer line with its 95 % interval as a band (when ``intervals`` has it) and its chance
    level as a dashed grey line labelled "chance" (when known); returns every y drawn (for the axis limits)."""
    ys = _values(values.get(key) or {}, layers)
    drawn = [v for v in ys if np.isfinite(v)]
    if not drawn:
        return []
    ax.plot(x, ys, linestyle=line_style, marker=marker, color=colour, label=label)
    low, high = band_of(intervals, key, layers)
    if np.isfinite(low).any():
        ax.fill_between(x, low, high, color=colour, alpha=alpha, linewidth=0)
        drawn += [v for v in low + high if np.isfinite(v)]
    level = chance_of(chance, key, layers)
    if np.isfinite(level).any():
        ax.plot(x, level, label="chance", **CHANCE_STYLE)
        drawn += [v for v in level if np.isfinite(v)]
    return drawn


def _present(values: dict | None, key: str, layers) -> bool:
    return np.isfinite(_values((values or {}).get(key) or {}, layers)).any()


def _encodes_panels(layers, runs) -> list[tuple[str, list[str]]]:
    """(measure key, [baseline keys drawn with it]) per panel: every non-baseline measure with a value; a group's
    baselines go into the panel of the group's first measure."""
    panels = []
    for group in ENCODES_GROUPS:
        shown = [k for k in group if any(_present(v, k, layers) for _, v in runs)]
        main = [k for k in shown if not k.endswith(BASELINE_SUFFIX)]
        if main:
            panels += [(k, [b for b in shown if b.endswith(BASELINE_SUFFIX)] if i == 0 else [])
                       for i, k in enumerate(main)]
    return panels


K_STYLES = (("-", "o"), ("-.", "s"), ((0, (1, 1)), "^"), ((0, (6, 2, 1, 2, 1, 2)), "D"))  # per K: line, marker
K_BAND_ALPHA = 0.1  # the bands of several K overlap on one panel: lighter than one curve's


def _level(level, layers) -> list[float]:
    """A reference level per layer: one float for every layer, or layer -> float (None/absent = NaN)."""
    if isinstance(level, dict):
        return _values(level, layers)
    return [np.nan if level is None else float(level)] * len(layers)


def _per_k_curves(ax, x, layers, key, curves: dict, colour) -> None:
    """Every K of ``--pnmi_clusters`` on one panel: one line style and marker per K (K_STYLES, the first K solid),
    labelled K=…, each with its interval band and chance line when given. curves : str(K) -> (values, intervals,
    chance), each layer -> value / (low, high) / value, or None."""
    for i, (k, (values, intervals, chance)) in enumerate(curves.items()):
        line_style, marker = K_STYLES[i % len(K_STYLES)]
        draw_curve(ax, x, layers, {key: values}, key, colour=colour, line_style=line_style, marker=marker,
                   label=f"K={k}", intervals={key: intervals} if intervals else None,
                   chance={key: chance} if chance else None, alpha=K_BAND_ALPHA)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))  # one "chance" entry for all K
    ax.legend(unique.values(), unique.keys(), fontsize=6, loc="best", framealpha=0.7)


def _encodes_panel(ax, x, layers, key, baselines, runs, colour, extras: dict) -> None:
    """One measure of what_each_layer_encodes on its own axes: each run's line with its band and chance line, its
    baselines and majority-class baseline dotted; several K (``per_k``) of the analysed model as one line each.
    extras : "bands", "majority", "per_k" as :func:`what_each_layer_encodes` takes them."""
    for run, values in runs:
        line_style, marker = RUN_STYLES[run]
        intervals, chance = (extras.get("bands") or {}).get(run, (None, None))
        curves = ((extras.get("per_k") or {}).get(run) or {}).get(key) or {}
        if run == "trained" and len(curves) > 1:
            _per_k_curves(ax, x, layers, key, curves, colour)
        else:
            draw_curve(ax, x, layers, values or {}, key, colour=colour, line_style=line_style, marker=marker,
                       label=run, intervals=intervals, chance=chance if run == "trained" else None,
                       alpha=BAND_ALPHA[run])
        levels = [(f"{ENCODES_MEASURES[b]}, {run}", _values((values or {}).get(b) or {}, layers)) for b in baselines]
        majority = ((extras.get("majority") or {}).get(run) or {}).get(key)
        levels.append((f"majority baseline, {run}", _level(majority, layers)))
        for label, ys in levels:
            if np.isfinite(ys).any():
                ax.plot(x, ys, linestyle=BASELINE_STYLE, color=colour, alpha=1.0 if run == "trained" else 0.55,
                        label=label)
    ax.set_title(ENCODES_MEASURES[key], fontsize=9, color=colour)
    ax.set_xticks(x, [display_name(k) for k in layers], fontsize=7)
    plotkit.plain_numbers(ax)


def _encodes_handles(layers, panels, control, bands, majority, model):
    """The figure legend's entries: the runs' line styles, band, chance and dotted baseline when drawn."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    names = {"trained": model, "random init": "random init"}
    handles = [Line2D([], [], color="0.2", linestyle=s, marker=m,
                      label=f"{names[run]} ({'solid' if s == '-' else 'dashed'})")
               for run, (s, m) in RUN_STYLES.items() if run == "trained" or control]
    if any(np.isfinite(band_of(i, k, layers)[0]).any() for i, _ in (bands or {}).values() for k, _ in panels):
        handles.append(Patch(color="0.6", alpha=0.4, label="95 % interval (band)"))
    if any(np.isfinite(chance_of((bands or {}).get("trained", (None, None))[1], k, layers)).any()
           for k, _ in panels):
        handles.append(Line2D([], [], label="chance", **CHANCE_STYLE))
    levels = [lv for run in (majority or {}).values() for k, lv in (run or {}).items() if k in dict(panels)]
    if any(b for _, b in panels) or any(np.isfinite(_level(lv, layers)).any() for lv in levels):
        handles.append(Line2D([], [], color="0.2", linestyle=BASELINE_STYLE, label="majority baseline (dotted)"))
    return handles


def what_each_layer_encodes(layers, measures: dict, control: dict | None, path, *, subtitle: str,
                            bands: dict | None = None, model: str = "analysed model", majority: dict | None = None,
                            per_k: dict | None = None):
    """Small multiples: one panel per available measure (x: layer, y: its score), the analysed model solid, the
    random-init control dashed, majority baselines dotted (ENCODES_LEGEND), one Okabe–Ito colour per measure.

    measures, control : measure key (ENCODES_MEASURES) -> {layer key -> float or None}; None = not computed for that
    layer (a gap). Measures absent or None for every layer are not drawn; those of a group (ENCODES_GROUPS: mel,
    speaker, label) of which another measure is drawn are named in a caption as not computed, except the twins
    (``Measure.twin_of``: computed only under ``--cca_protocol pasad`` by design). Returns None when no measure has
    a value. bands : "trained"/"random init" -> (intervals, chance) (measure -> layer -> (low, high) / value): every
    measure's interval is drawn as a band and its chance level as a dashed grey line, whatever the measure (the
    registry's, new ones included). majority : run -> {measure -> its majority-class baseline (one float, or layer
    -> float)}, drawn dotted in the measure's panel. per_k : run -> {measure -> {str(K) -> (values, intervals,
    chance)}}: with several K the analysed model draws one line per K (K_STYLES, labelled K=…). model : the
    legend's name of the analysed model (its tag).
    """
    x = layer_positions(layers)
    runs = [("trained", measures)] + ([("random init", control)] if control else [])
    present = {k for k in ENCODES_MEASURES if _present(measures, k, layers)}
    panels = _encodes_panels(layers, runs)
    if not present or not panels:
        return None
    missing = [ENCODES_MEASURES[k] for group in ENCODES_GROUPS if present & set(group)
               for k in group if k not in present and MEASURE[k].twin_of is None]
    colours = {m.key: OKABE_ITO[i % len(OKABE_ITO)] for i, m in
               enumerate(m for m in layout.MEASURES if not m.key.endswith(BASELINE_SUFFIX))}
    extras = {"bands": bands, "majority": majority, "per_k": per_k}
    with style() as (plt, _sns):
        cols = min(len(panels), 3)
        rows = math.ceil(len(panels) / cols)
        width = max(3.2, 0.28 * len(layers) + 1.6)
        fig, axes = plt.subplots(rows, cols, figsize=(cols * width + 0.5, rows * 2.6 + 1.3), squeeze=False,
                                 sharex=True)
        for ax, (key, baselines) in zip(axes.flat, panels):
            _encodes_panel(ax, x, layers, key, baselines, runs, colours[key], extras)
        for ax in list(axes.flat)[len(panels):]:
            ax.set_visible(False)
        for ax in axes[-1]:
            ax.set_xlabel("layer")
        for ax in axes[:, 0]:
            ax.set_ylabel("score")
        handles = _encodes_handles(layers, panels, control, bands, majority, model)
        plotkit.finish(fig, f"What each layer encodes (one panel per measure)\n{subtitle}\n")
        fig.legend(handles=handles, fontsize=8, loc="upper center",
                   bbox_to_anchor=(0.5, 1 - 0.42 / fig.get_figheight()), ncol=len(handles), frameon=False)
        if missing:
            caption(fig, "Not computed (see the report's notes for why): " + ", ".join(missing) + ".")
        return plotkit.save(fig, path)


def abx_measures(layers, measures: dict, intervals: dict, control: dict | None, control_intervals: dict | None,
                 path, *, subtitle: str, info: str = "", model: str = "analysed model"):
    """The three ABX error rates against layer (``layout.ABX_MEASURES``): the analysed model solid with its 95 %
    interval as a band, the random-init control dashed (its band lighter), chance (0.5) as a dotted line.

    measures, control : measure key -> {layer key -> error rate or None}; intervals, control_intervals : measure key
    -> {layer key -> (low, high)}; info : a line of counts for the title. Returns None when no rate has a value.
    """
    x = layer_positions(layers)
    # light bands (three modes share the axis): the interval is the band, its edges a hairline of the line's colour
    runs = [(model, measures, intervals or {}, "-", "o", 0.1)]
    if control:
        runs.append(("random init", control, control_intervals or {}, "--", "x", 0.05))
    keys = [k for k in layout.ABX_MEASURES if _present(measures, k, layers)]
    if not keys:
        return None
    chance = MEASURE[keys[0]].chance
    with style() as (plt, _sns):
        fig, ax = plt.subplots(figsize=(max(7.5, 0.5 * len(layers) + 4.0), 4.8))
        drawn = [chance]
        for run, values, bands, line_style, marker, alpha in runs:
            for key in keys:
                ys = _values(values.get(key) or {}, layers)
                if not np.isfinite(ys).any():
                    continue
                colour = MEASURE[key].colour
                ax.plot(x, ys, linestyle=line_style, marker=marker, color=colour, label=f"{MEASURE[key].label}, {run}")
                band = bands.get(key) or {}
                low = [band[k][0] if band.get(k) is not None else np.nan for k in layers]
                high = [band[k][1] if band.get(k) is not None else np.nan for k in layers]
                if np.isfinite(low).any():
                    ax.fill_between(x, low, high, color=colour, alpha=alpha, linewidth=0)
                    for edge in (low, high):
                        ax.plot(x, edge, color=colour, linewidth=0.5, linestyle=line_style, alpha=0.6)
                drawn += [v for v in [*ys, *low, *high] if np.isfinite(v)]
        ax.axhline(chance, color="0.35", linestyle=":", label=f"chance ({chance:g})")
        ax.set_xticks(x, [display_name(k) for k in layers])
        ax.set_xlabel("layer")
        ax.set_ylabel("ABX error rate (lower = better)")
        plotkit.plain_numbers(ax)
        ax.set_ylim(max(0.0, min(drawn) - 0.02), min(1.0, max(drawn) + 0.02))
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
        lines = "\n".join(part for part in ("ABX error rate per layer (ZeroSpeech): lower = better, 0.5 = chance",
                                            info, subtitle) if part)
        ax.set_title(lines, fontsize=10)
        return plotkit.save(fig, path)
