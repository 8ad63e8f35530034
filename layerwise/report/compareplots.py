"""Figures of a comparison (matplotlib, Agg backend), drawn from a computed :class:`~layerwise.compare.run.Comparison`.

Nothing is computed here but layout. :func:`figures_of` lists a comparison's figures as entries of the one figure
registry type (``figures.Figure``: file name, title, caption, when it applies, how to draw it); ``figures.draw_all``
draws them, each written atomically, and the report shows each with its caption.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from layerwise.contract import layout
from layerwise.contract.names import display_name
from layerwise.report import figures, plotkit
from layerwise.report.plotkit import plain_numbers

MAX_TICKS = 13  # labelled layers on a line plot's x axis: L0 … L12 all; 25 layers every second one
ANNOTATE_MAX = 16  # write the value in each heatmap cell up to this many layers per axis
SAME_LAYER_PNG = "cka_same_layer.png"
SWEEP_PNG = "sweep.png"


def pair_png(a: int, b: int) -> str:
    """File name of the heatmap of folders a and b (indices in the order given, from 1): ``cka_between_1_2.png``."""
    return f"cka_between_{a + 1}_{b + 1}.png"


def _index(key: str) -> int:
    return layout.parse_layer_key(key)[1]


def _layer_ticks(ax, folders) -> None:
    """x ticks at the layer indices of ``folders`` labelled with the display names (L0 …, C0 …; ``L3/C3`` where
    folders of different rep types share an index), numbers on the y axis without an offset label."""
    names: dict[int, set[str]] = {}
    for folder in folders:
        for key in folder.layers:
            names.setdefault(_index(key), set()).add(display_name(key))
    positions = sorted(names)
    shown = positions[:: -(-len(positions) // MAX_TICKS)]
    ax.set_xticks(shown, ["/".join(sorted(names[p])) for p in shown])
    ax.set_xlabel("layer")
    plain_numbers(ax)


def _save(fig, path: Path) -> None:
    plotkit.save(fig, path)  # the one PNG writer (atomic, plotkit.DPI)


def cka_heatmap(matrix: np.ndarray, rows: list[str], cols: list[str], label_a: str, label_b: str, path: Path, *,
                subtitle: str) -> None:
    """(L_a, L_b) CKA matrix: layers of folder a down, layers of folder b across."""
    fig, ax = plt.subplots(figsize=(max(5.0, 0.5 * len(cols) + 3.0), max(4.0, 0.5 * len(rows) + 2.0)))
    image = ax.imshow(np.ma.masked_invalid(matrix), vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(cols)), [display_name(k) for k in cols], rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), [display_name(k) for k in rows])
    if max(len(rows), len(cols)) <= ANNOTATE_MAX:
        for i in range(len(rows)):
            for j in range(len(cols)):
                value = matrix[i, j]
                ax.text(j, i, "n/a" if np.isnan(value) else f"{value:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if np.isfinite(value) and value > 0.6 else "white")
    fig.colorbar(image, ax=ax, fraction=0.046, label="linear CKA")
    ax.set_xlabel(f"{label_b}: layer")
    ax.set_ylabel(f"{label_a}: layer")
    ax.set_title(f"Linear CKA between the layers of {label_a} and {label_b}\n{subtitle}", fontsize=10)
    _save(fig, path)


def same_layer(result, path: Path, *, subtitle: str) -> None:
    """CKA of layer k with layer k, one line per pair of folders with equal layer counts."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for pair in result.pairs:
        if pair.same_layer is None:
            continue
        a, b = result.folders[pair.a], result.folders[pair.b]
        ax.plot([_index(k) for k in a.layers], pair.same_layer, marker="o", label=f"{a.label} vs {b.label}")
    _layer_ticks(ax, result.folders)
    ax.set_ylabel("linear CKA of layer k with layer k")
    ax.set_ylim(0.0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_title(f"Same-index layers across folders\n{subtitle}", fontsize=10)
    _save(fig, path)


# Sweeps never zoom below this span (a comparison has no interval to set it): differences under 0.05 in CKA are
# inside the seed-to-seed spread of such numbers (issue 19: ±0.015 to ±0.03 on 13 files), so 1e-9 noise stays flat.
MIN_SWEEP_SPAN = 0.05
MIN_RELATIVE_SPAN = 0.1  # mean, std: at least 10 % of the largest |value| (their scale differs between models)
MIN_COUNT_SPAN = 4.0  # components for 90 %: integers


def hold_span(ax, values, span: float) -> None:
    """Widen the y-axis of ``ax`` to at least ``span`` around the finite ``values`` (never zoom into noise)."""
    finite = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not finite:
        return
    low, high = min(finite), max(finite)
    if high - low < span:
        centre = (low + high) / 2.0
        ax.set_ylim(centre - span / 2.0, centre + span / 2.0)


def sweep(result, path: Path, *, subtitle: str) -> None:
    """Each folder's own per-layer measures, one line per folder: mean, std, CKA with the previous layer, PCA
    components for 90 % of the variance."""
    panels = (("mean", "mean over frames × dims"), ("std", "std over frames × dims"),
              ("cka_previous", "CKA with the previous layer (solid: linear; dashed: debiased)"),
              ("pca_components_90", "PCA components for 90 % of the variance"))
    fig, axes = plt.subplots(2, 2, figsize=(11.0, 7.5))
    for ax, (attr, title) in zip(axes.flat, panels):
        shown = []
        for folder, measures in zip(result.folders, result.measures):
            values = [np.nan if v is None else v for v in getattr(measures, attr)]
            line = ax.plot([_index(k) for k in folder.layers], values, marker="o", label=folder.label)[0]
            shown += values
            if attr == "cka_previous" and measures.cka_previous_debiased is not None:
                ax.plot([_index(k) for k in folder.layers], measures.cka_previous_debiased, marker="x",
                        linestyle="--", color=line.get_color(), label=f"{folder.label}, debiased")
                shown += list(measures.cka_previous_debiased)
        finite = [abs(v) for v in shown if np.isfinite(v)]
        span = {"cka_previous": MIN_SWEEP_SPAN, "pca_components_90": MIN_COUNT_SPAN}.get(
            attr, max(MIN_SWEEP_SPAN, MIN_RELATIVE_SPAN * max(finite, default=0.0)))
        hold_span(ax, shown, span)
        ax.set_title(title, fontsize=10)
        _layer_ticks(ax, result.folders)
        if attr == "pca_components_90":
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        elif attr in ("mean", "std"):
            plain_numbers(ax, scientific=True)  # values near 0 keep a ×10ⁿ factor, never an offset
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    axes.flat[2].legend(fontsize=7)
    fig.suptitle(f"Per-folder layer sweeps on the compared frames\n{subtitle}", fontsize=11)
    plotkit.tight_layout(fig)
    _save(fig, path)


def subtitle_of(result) -> str:
    unit = "frames" if result.span == "frame" else f"{result.span} segments"
    return f"{len(result.stems)} utterances in every folder, {result.n_frames:,} {unit}"


PAIR_CAPTION = (
    "Every layer of one folder against every layer of the other, over the same frames (the same audio, row by row "
    "in time). 1 means the two layers' frame representations agree up to a rotation and an isotropic scaling; near "
    "0 means unrelated. A bright diagonal means layer k of one model matches layer k of the other; a bright band off "
    "the diagonal means the corresponding computation sits at another depth. With few frames CKA of unrelated layers "
    "is biased upwards (about D/(n + D) for D dims and n frames): the debiased numbers (unbiased HSIC) are in the "
    "tables below and in summary.json cka_between_debiased.")
SAME_LAYER_CAPTION = (
    "The diagonal of each heatmap above, for pairs of folders with the same number of layers. Against a folder "
    "written with --random_init this reads as how far training moved each layer: low CKA = the trained layer "
    "differs most from its random initialisation. Between checkpoints of one run it shows which layers are still "
    "changing.")
SWEEP_CAPTION = (
    "Each folder's own per-layer measures, one line per folder, computed on the compared frames (the common "
    "utterances, after time matching), so they can differ slightly from visualize_features.py on one folder. Mean "
    "and std show scale; CKA with the previous layer shows where the representation changes fastest; the number of "
    "principal components for 90 % of the variance is a rough effective dimensionality. The axes never zoom below "
    "a span of 0.05 (CKA) or 10 % of the values (mean, std), so noise of 1e-9 stays a flat line.")


def _draw_pair(pair, result, path: Path) -> Path:
    a, b = result.folders[pair.a], result.folders[pair.b]
    cka_heatmap(pair.cka, a.layers, b.layers, a.label, b.label, path, subtitle=subtitle_of(result))
    return path


def _draw_same_layer(result, path: Path) -> Path:
    same_layer(result, path, subtitle=subtitle_of(result))
    return path


def _draw_sweep(result, path: Path) -> Path:
    sweep(result, path, subtitle=subtitle_of(result))
    return path


def _has_same_layer(result) -> bool:
    return any(p.same_layer is not None for p in result.pairs)


def figures_of(result) -> tuple[figures.Figure, ...]:
    """The figures of ``result`` in report order: one CKA heatmap per pair of folders, the same-index curves (pairs
    with equal layer counts), the per-folder sweeps."""
    pairs = tuple(
        figures.Figure(pair_png(pair.a, pair.b),
                       f"Linear CKA: {result.folders[pair.a].label} (rows) vs {result.folders[pair.b].label} (columns)",
                       PAIR_CAPTION, figures.always, partial(_draw_pair, pair))
        for pair in result.pairs)
    return (*pairs,
            figures.Figure(SAME_LAYER_PNG, "Same-index curves: layer k vs layer k", SAME_LAYER_CAPTION,
                           _has_same_layer, _draw_same_layer),
            figures.Figure(SWEEP_PNG, "Per-folder sweeps", SWEEP_CAPTION, figures.always, _draw_sweep))
