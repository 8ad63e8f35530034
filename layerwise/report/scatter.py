"""Scatter figures of sampled frames (PCA, t-SNE) and what colours their points (utterance, speaker, label).

Points are coloured by one category; at most MAX_COLOUR_GROUPS colours, the rarer groups share one grey "other".
matplotlib and seaborn are imported on first use (through ``plotkit.style``).
"""

from __future__ import annotations

import re

import numpy as np

from layerwise.contract.names import display_name, speaker_of
from layerwise.errors import UsageError
from layerwise.report import plotkit

MAX_COLOUR_GROUPS = 10  # tab10 has ten colours; beyond, the most frequent nine keep theirs and the rest are "other"
OTHER = "other"
OTHER_COLOUR = "0.7"  # matplotlib grey level of the "other" group
POINT_SIZE = 6  # points², small enough for 500–2000 points per panel
LEVELS = (0.5, 0.9)  # shares of variance whose number of components is shown per layer
TEXT_SIZE = 9  # points: axis labels and ticks of the PCA panels (readable at the report's width)
LOG_AXIS_FROM = 40  # the cumulative-variance x axis turns logarithmic when it must show more components than this


def _natural(value) -> tuple:
    """Sort key that puts "84" before "174" and "u2" before "u10"."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", str(value)))


def point_groups(utterances: np.ndarray, labels: np.ndarray | None, *, color_by: str | None = None,
                 speakers: np.ndarray | None = None) -> tuple[np.ndarray, list[str], str]:
    """Colour group index per point, group names and what they are (the legend title).

    utterances : (n,) utterance stem of each point; labels : (n,) phone/word label of each point, or None for frame
    folders. color_by : "utterance", "speaker" (from LibriSpeech stems ``{speaker}-{chapter}-{utterance}``),
    "label", or None = label when there are labels, else utterance. speakers : (n,) speaker of each point when the
    caller has them (``SampleInfo.speakers``); else they come from the stems through ``names.speaker_of``. Beyond
    MAX_COLOUR_GROUPS groups the most frequent MAX_COLOUR_GROUPS − 1 keep a colour and the rest share the group
    "other" (index len(names) − 1).
    Raises UsageError for color_by="label" without labels, a speaker-less stem, or an unknown choice.
    """
    if color_by is None:  # a reader wants speakers over utterances when there are several
        several = speakers is not None and len(np.unique(np.asarray(speakers).astype(str))) > 1
        color_by = "label" if labels is not None else "speaker" if several else "utterance"
    if color_by == "label" and labels is None:
        raise UsageError("color_by=label needs phone/word labels (a folder extracted with span=phone or word); "
                         "these frames have none — colour by utterance or speaker")
    values = {"label": labels, "utterance": utterances,
              "speaker": None if color_by != "speaker" else
              speakers if speakers is not None else np.array([speaker_of(u) for u in utterances])}[color_by]
    values = np.asarray(values).astype(str)
    names, counts = np.unique(values, return_counts=True)
    if len(names) > MAX_COLOUR_GROUPS:
        top = names[np.argsort(-counts, kind="stable")[: MAX_COLOUR_GROUPS - 1]]
        names = sorted(top, key=_natural) + [OTHER]
    else:
        names = sorted(names, key=_natural)
    names = [str(n) for n in names]
    index = {n: i for i, n in enumerate(names)}
    other = len(names) - 1
    groups = np.array([index.get(v, other) for v in values], dtype=int)
    return groups, names, color_by


def palette(names: list[str]) -> dict[str, object]:
    """Group name -> colour: tab10 in order, grey for "other"."""
    import matplotlib

    tab10 = matplotlib.colormaps["tab10"]
    return {name: OTHER_COLOUR if name == OTHER else tab10(i % 10) for i, name in enumerate(names)}


def _scatter_panel(ax, value, title: str, groups, names, colours) -> bool:
    """One panel: ``value`` is (k, 2) coordinates, or a string (or None) saying why there are none. True if drawn."""
    ax.set_title(title, fontsize=9)
    if value is None or isinstance(value, str):
        ax.text(0.5, 0.5, plotkit.wrap(value or "not computed", 40), ha="center", va="center", fontsize=8,
                transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        return False
    from matplotlib.colors import to_rgba_array

    coords = np.asarray(value, dtype=float)
    faces = to_rgba_array([colours[n] for n in names])[np.asarray(groups, dtype=int)]  # (k, 4): each point's group
    # what seaborn's scatterplot(hue=…, palette=colours, linewidth=0) draws, one collection in the points' order,
    # without its per-panel data frame and hue mapping (a third of the figure's time with 13 panels)
    ax.scatter(coords[:, 0], coords[:, 1], s=POINT_SIZE, facecolors=faces, edgecolors="w", linewidths=0)
    ax.tick_params(labelsize=7)
    return True


def _legend(fig, names, what, colours) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", linestyle="", markersize=6, markerfacecolor=colours[n],
                      markeredgewidth=0, label=n) for n in names]
    title = what if OTHER not in names else f"{what} ({len(names) - 1} most frequent;\ngrey: all others)"
    fig.legend(handles=handles, title=title, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)


def components_needed(ratio, level: float) -> int | None:
    """Smallest number of leading components whose explained-variance ratios sum to >= ``level``; None when the
    given spectrum (descending, maybe truncated) does not reach it or is undefined."""
    if ratio is None or isinstance(ratio, str):
        return None
    cumulative = np.cumsum(np.asarray(ratio, dtype=float))
    if cumulative.size == 0 or not np.isfinite(cumulative).all() or cumulative[-1] < level - 1e-9:
        return None
    return int(np.searchsorted(cumulative, level - 1e-9) + 1)


def _variance_panels(fig, ax_curve, ax_dim, layers, ratios, n_show) -> None:
    """Cumulative explained variance per layer (colour = depth, colour bar) and components needed per layer."""
    import matplotlib.ticker

    x = plotkit.layer_positions(layers)
    norm = matplotlib.colors.Normalize(min(x), max(max(x), min(x) + 1))
    cmap = matplotlib.colormaps["viridis"]
    needed = {level: [components_needed(ratios.get(k), level) for k in layers] for level in LEVELS}
    lengths = [len(ratios[k]) for k in layers if components_needed(ratios.get(k), 0.0) is not None]
    reach = [n for n in needed[LEVELS[-1]] if n is not None]
    shown = max(reach + [n_show or 1]) if reach and len(reach) == len(lengths) else max(lengths + [1])
    for position, key in zip(x, layers):
        if components_needed(ratios.get(key), 0.0) is None:
            continue
        r = np.asarray(ratios[key], dtype=float)[:shown]
        ax_curve.plot(np.arange(1, len(r) + 1), np.cumsum(r), color=cmap(norm(position)), linewidth=1.2)
    ax_curve.axhline(LEVELS[-1], color="0.4", linestyle="--", linewidth=0.8)
    ax_curve.text(1, LEVELS[-1] + 0.01, f"{LEVELS[-1]:.0%}", fontsize=7, color="0.3", va="bottom")
    if shown > LOG_AXIS_FROM:
        ax_curve.set_xscale("log")
    else:  # whole components only: 1, 2, 3 … (never 2.5)
        ax_curve.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax_curve.set_xlim(0.5, shown + 0.5)
    ax_curve.set_xlabel("number of principal components", fontsize=TEXT_SIZE)
    ax_curve.set_ylabel("cumulative explained variance", fontsize=TEXT_SIZE)
    ax_curve.tick_params(labelsize=TEXT_SIZE)
    ax_curve.set_ylim(0, 1.01)
    bar = fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax_curve, pad=0.02)
    ticks = x if len(x) <= 13 else x[:: max(1, len(x) // 8)]
    bar.set_ticks(ticks, labels=[display_name(layers[x.index(t)]) for t in ticks])
    bar.set_label("layer (dark = early)")
    for level, marker in zip(LEVELS, ("o", "s")):
        ys = [np.nan if n is None else n for n in needed[level]]
        ax_dim.plot(x, ys, marker=marker, label=f"{level:.0%} of variance")
    ax_dim.set_xticks(x, [display_name(k) for k in layers], fontsize=TEXT_SIZE if len(layers) <= 16 else 7)
    ax_dim.set_xlabel("layer", fontsize=TEXT_SIZE)
    ax_dim.set_ylabel("components needed", fontsize=TEXT_SIZE)
    ax_dim.tick_params(axis="y", labelsize=TEXT_SIZE)
    ax_dim.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax_dim.legend(fontsize=8)


def pca_figure(layers, ratios: dict, projections: dict, groups, names, what, path, *, subtitle: str,
               n_show: int | None = None):
    """Explained-variance panels (top) and PC1/PC2 scatters of the subsample, one per layer (below).

    ratios : layer -> explained-variance-ratio spectrum (descending), or None/NaN when PCA is undefined;
    projections : layer -> (k, 2) coordinates, or None / a string saying why not; groups, names, what : from
    :func:`point_groups`. The curves run to the components every layer needs for 90 % (at least ``n_show``).
    Scatter axes carry tick labels and each PC's share of variance.
    """
    count = len(layers)
    cols = max(plotkit.grid_columns(count), 2)
    rows = 1 + -(-count // cols)
    with plotkit.style() as (plt, _sns):
        fig = plt.figure(figsize=(plotkit.PANEL_SIZE[0] * max(cols, 3), plotkit.PANEL_SIZE[1] * rows + 0.6))
        spec = fig.add_gridspec(rows, cols)
        half = (cols + 1) // 2  # the curves (with their colour bar) get the wider half
        _variance_panels(fig, fig.add_subplot(spec[0, :half]), fig.add_subplot(spec[0, half:]), layers, ratios,
                         n_show)
        colours = palette(names)
        for i, key in enumerate(layers):
            ax = fig.add_subplot(spec[1 + i // cols, i % cols])
            drawn = _scatter_panel(ax, projections.get(key), display_name(key), groups, names, colours)
            ratio = ratios.get(key)
            if drawn and components_needed(ratio, 0.0) is not None:
                shares = list(np.asarray(ratio, dtype=float)[:2]) + [0.0, 0.0]
                ax.set_xlabel(f"PC1 ({shares[0]:.1%} of variance)", fontsize=TEXT_SIZE)
                ax.set_ylabel(f"PC2 ({shares[1]:.1%})", fontsize=TEXT_SIZE)
                ax.tick_params(labelsize=TEXT_SIZE - 1)
        _legend(fig, names, what, colours)
        plotkit.finish(fig, f"PCA with frames as points (spectrum from all frames, scatter of the subsample, coloured by "
                     f"{what})\n{subtitle}")
        return plotkit.save(fig, path)


def tsne_figure(layers, embeddings: dict, groups, names, what, path, *, subtitle: str):
    """One t-SNE scatter per layer; embeddings : layer -> (k, 2), or a string/None saying why not computed.
    t-SNE axes have no units, so no tick labels."""
    with plotkit.style() as (plt, _sns):
        fig, axes = plotkit.grid(plt, len(layers))
        colours = palette(names)
        for ax, key in zip(axes, layers):
            _scatter_panel(ax, embeddings.get(key), display_name(key), groups, names, colours)
            ax.set_xticks([])
            ax.set_yticks([])
        _legend(fig, names, what, colours)
        plotkit.finish(fig, f"t-SNE of the sampled points, coloured by {what}\n{subtitle}")
        return plotkit.save(fig, path)
