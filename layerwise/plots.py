"""Figures from already-computed numbers (matplotlib, Agg backend). Nothing is computed here but layout.

Every figure: layers in the order given (numeric), axis labels, and a title line saying how many files and frames.
Each function writes one PNG and returns its path.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from . import store

DPI = 110
MAX_COLOUR_GROUPS = 10  # utterances/labels beyond the most frequent ones are drawn grey as "other"
POINT_SIZE = 4


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def _short(key: str) -> str:
    """``layer_10 -> L10``, ``conv_3 -> C3`` for crowded axes."""
    prefix, index = store.parse_layer_key(key)
    return f"{'L' if prefix == 'layer' else 'C'}{index}"


def _grid(count: int):
    cols = min(4, count)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.axis("off")
    return fig, axes.flat


def feature_statistics(layers, mean: dict, std: dict, path, *, subtitle: str) -> Path:
    """Mean ± std over all frames × dims, per layer."""
    x = np.arange(len(layers))
    m = np.array([mean[k] for k in layers])
    s = np.array([std[k] for k in layers])
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(layers)), 4.0))
    ax.errorbar(x, m, yerr=s, fmt="o-", capsize=4)
    ax.fill_between(x, m - s, m + s, alpha=0.15)
    ax.set_xticks(x, layers, rotation=45, ha="right")
    ax.set_xlabel("layer (numeric order)")
    ax.set_ylabel("feature value: mean ± std over frames × dims")
    ax.set_title(f"Per-layer feature statistics\n{subtitle}")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def similarity_heatmap(matrix: np.ndarray, layers, path, *, kind: str, subtitle: str) -> Path:
    """Layer × layer heatmap. kind : "cka" (linear CKA, centred) or "cosine" (uncentered cosine)."""
    titles = {
        "cka": "Linear CKA between layers (centred, over frames)",
        "cosine": "Uncentered cosine between layers' frame matrices (not CKA; dominated by means)",
    }
    matrix = np.asarray(matrix, dtype=float)
    size = max(5.0, 0.5 * len(layers) + 2.0)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    low = 0.0 if kind == "cka" else min(0.0, np.nanmin(matrix))
    image = ax.imshow(np.ma.masked_invalid(matrix), vmin=low, vmax=1.0, cmap="viridis")
    labels = [_short(k) for k in layers] if len(layers) > 8 else layers
    ax.set_xticks(range(len(layers)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(layers)), labels)
    if len(layers) <= 16:
        for i in range(len(layers)):
            for j in range(len(layers)):
                value = matrix[i, j]
                text = "n/a" if np.isnan(value) else f"{value:.2f}"
                ax.text(j, i, text, ha="center", va="center", fontsize=7,
                        color="black" if np.isfinite(value) and value > 0.6 else "white")
    fig.colorbar(image, ax=ax, fraction=0.046, label=kind)
    ax.set_xlabel("layer")
    ax.set_ylabel("layer")
    ax.set_title(f"{titles[kind]}\n{subtitle}", fontsize=10)
    return _save(fig, path)


def point_groups(utterances: np.ndarray, labels: np.ndarray | None) -> tuple[np.ndarray, list[str], str]:
    """Colour group index per point, group names and what they are. Labels (phones/words) win over utterances;
    beyond ``MAX_COLOUR_GROUPS`` the rarer groups share one grey "other" group (its index = len(names) − 1)."""
    values, what = (labels, "label") if labels is not None else (utterances, "utterance")
    names, counts = np.unique(values, return_counts=True)
    if len(names) > MAX_COLOUR_GROUPS:
        top = names[np.argsort(-counts, kind="stable")[: MAX_COLOUR_GROUPS - 1]]
        names = list(np.sort(top)) + ["other"]
    else:
        names = list(names)
    index = {n: i for i, n in enumerate(names)}
    other = len(names) - 1
    groups = np.array([index.get(v, other) for v in values], dtype=int)
    return groups, names, what


def _scatter(ax, coords, groups, names):
    colours = plt.get_cmap("tab10")
    for g, name in enumerate(names):
        sel = groups == g
        colour = "0.7" if name == "other" else colours(g % 10)
        ax.scatter(coords[sel, 0], coords[sel, 1], s=POINT_SIZE, color=colour, label=name, linewidths=0)


def _scatter_panel(ax, value, title: str, groups, names) -> None:
    """One scatter panel without ticks; ``value`` is (k, 2) coordinates or a string saying why there are none."""
    if isinstance(value, str):
        ax.text(0.5, 0.5, value, ha="center", va="center", wrap=True, fontsize=8, transform=ax.transAxes)
    else:
        _scatter(ax, value, groups, names)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def _legend(fig, axes, names, what):
    handles, texts = next((h for h in (ax.get_legend_handles_labels() for ax in axes) if h[0]), ([], []))
    if not handles:
        return
    fig.legend(handles, texts, title=what, loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=3,
               fontsize=8)


def pca_figure(layers, ratios: dict, projections: dict, groups, names, what, path, *, subtitle: str,
               n_show: int) -> Path:
    """Explained-variance curves (first ``n_show`` components, all frames) and PC1/PC2 scatters of the subsample.

    ratios : layer -> full explained-variance-ratio spectrum (descending); projections : layer -> (k, 2) or None.
    """
    count = len(layers)
    cols = min(4, count)
    rows = 1 + math.ceil(count / cols)
    fig = plt.figure(figsize=(3.2 * max(cols, 3), 3.0 * rows + 0.5))
    grid = fig.add_gridspec(rows, max(cols, 2))
    cmap = plt.get_cmap("viridis")
    ax_curve = fig.add_subplot(grid[0, : max(cols, 2) // 2])
    ax_dim = fig.add_subplot(grid[0, max(cols, 2) // 2:])
    for i, key in enumerate(layers):
        r = np.asarray(ratios[key])[:n_show]
        ax_curve.plot(np.arange(1, len(r) + 1), np.cumsum(r), color=cmap(i / max(count - 1, 1)), label=key)
    ax_curve.set_xlabel("number of principal components")
    ax_curve.set_ylabel("cumulative explained variance")
    ax_curve.set_ylim(0, 1.01)
    ax_curve.legend(fontsize=6, ncol=2)
    for level, marker in ((0.5, "o"), (0.9, "s")):
        needed = [int(np.searchsorted(np.cumsum(ratios[k]), level) + 1) for k in layers]
        ax_dim.plot(range(count), needed, marker=marker, label=f"{int(level * 100)} % of variance")
    ax_dim.set_xticks(range(count), [_short(k) for k in layers], rotation=45)
    ax_dim.set_xlabel("layer")
    ax_dim.set_ylabel("components needed")
    ax_dim.legend(fontsize=8)
    scatter_axes = []
    for i, key in enumerate(layers):
        ax = fig.add_subplot(grid[1 + i // cols, i % cols])
        scatter_axes.append(ax)
        value = projections.get(key)
        _scatter_panel(ax, "n/a" if value is None else value,
                       f"{key}: PC1 vs PC2", groups, names)
    _legend(fig, scatter_axes, names, what)
    fig.suptitle(f"PCA with frames as points (spectrum from all frames, scatter of the subsample)\n{subtitle}")
    fig.tight_layout()
    return _save(fig, path)


def tsne_figure(layers, embeddings: dict, groups, names, what, path, *, subtitle: str) -> Path:
    """One t-SNE scatter per layer; embeddings : layer -> (k, 2) or an explanatory string when not computed."""
    fig, axes = _grid(len(layers))
    axes = list(axes)
    for ax, key in zip(axes, layers):
        _scatter_panel(ax, embeddings[key], key, groups, names)
    _legend(fig, axes, names, what)
    fig.suptitle(f"t-SNE of sampled frames, coloured by {what}\n{subtitle}")
    fig.tight_layout()
    return _save(fig, path)


def variance_distribution(layers, dim_var: dict, path, *, subtitle: str) -> Path:
    """Histogram of log10 per-dimension variance (over frames), one panel per layer, shared x axis."""
    logs = {k: np.log10(np.maximum(np.asarray(dim_var[k]), 1e-12)) for k in layers}
    low = min(v.min() for v in logs.values())
    high = max(v.max() for v in logs.values())
    bins = np.linspace(low, high + 1e-9, 40)
    fig, axes = _grid(len(layers))
    for ax, key in zip(axes, layers):
        ax.hist(logs[key], bins=bins, color="tab:blue")
        ax.set_title(f"{key} (median {np.median(dim_var[key]):.3g})", fontsize=9)
        ax.set_xlabel("log10 variance of a dimension")
        ax.set_ylabel("dimensions")
    fig.suptitle(f"Per-dimension variance over frames\n{subtitle}")
    fig.tight_layout()
    return _save(fig, path)


SPAN_MEASURES = (("probe_accuracy", "probe accuracy", "tab:blue"), ("pwcca", "PWCCA", "tab:orange"),
                 ("mi", "MI (k-means NMI)", "tab:green"))


def _layer_index(key: str) -> int:
    """``layer_10 -> 10``: x position, so gaps between selected layers stay visible."""
    return store.parse_layer_key(key)[1]


def span_measures(layers, trained: dict, control: dict | None, path, *, subtitle: str, span: str) -> Path:
    """Probe accuracy, PWCCA and MI against layer on one axes: trained solid, random-init control dashed, the
    majority baseline of the probe as a horizontal line.

    trained, control : dicts as returned by ``probes.span_measures`` (layer -> float objects under
    ``probe_accuracy``/``pwcca``/``mi``, one float ``probe_majority_baseline``, ``span_measures_info``); control
    may be None or lack the measures (skipped).
    """
    x = [_layer_index(k) for k in layers]
    fig, ax = plt.subplots(figsize=(max(7.0, 0.55 * len(layers) + 2.5), 4.5))
    runs = [("trained", trained, "-", "o")]
    if control is not None and "probe_accuracy" in control:
        runs.append(("random init", control, "--", "x"))
    for run, values, style, marker in runs:
        for key, name, colour in SPAN_MEASURES:
            if key in values:
                ax.plot(x, [values[key][k] for k in layers], linestyle=style, marker=marker, color=colour,
                        label=f"{name}, {run}")
    base = trained["probe_majority_baseline"]
    ax.axhline(base, color="0.35", linestyle=":", label=f"majority baseline ({base:.2f})")
    if len(runs) > 1 and abs(control["probe_majority_baseline"] - base) > 1e-9:
        ax.axhline(control["probe_majority_baseline"], color="0.6", linestyle="-.",
                   label=f"majority baseline, random init ({control['probe_majority_baseline']:.2f})")
    ax.set_xticks(x, [_short(k) for k in layers] if len(layers) > 8 else layers, rotation=45, ha="right")
    ax.set_xlabel("layer (numeric order)")
    ax.set_ylabel("accuracy / correlation / NMI")
    low = min([0.0] + [values[key][k] for _, values, _, _ in runs for key, _, _ in SPAN_MEASURES
                       if key in values for k in layers])
    ax.set_ylim(low - 0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    info = trained.get("span_measures_info", {})
    counts = ", ".join(f"{info[k]:,} {what}" for k, what in (("n_segments", f"{span} segments"),
                       ("n_classes", "classes"), ("n_utterances", "utterances"), ("n_splits", "splits")) if k in info)
    ax.set_title(f"Where {span} information lives: held-out measures per layer\n{counts}\n{subtitle}", fontsize=10)
    return _save(fig, path)
