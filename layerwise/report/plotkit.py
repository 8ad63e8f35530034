"""Drawing helpers shared by the figure modules: a local seaborn style, atomic PNG saving, captions, layer x positions.

matplotlib and seaborn are imported on first use (``style()``), with the Agg backend, so importing this module costs
nothing; the style is applied per figure through context managers, never to the process (no ``sns.set_theme``).
"""

from __future__ import annotations

import contextlib
import math
import textwrap
from pathlib import Path

from layerwise.contract import layout, store

DPI = 110
CAPTION_CHARS = 110  # characters per line of wrapped text by default
CAPTION_CHARS_PER_INCH = 15  # 8-pt captions: about 72 pt/inch ÷ 4.6 pt per average character
PANEL_SIZE = (3.3, 3.1)  # inches (width, height) of one panel in a grid of per-layer panels


@contextlib.contextmanager
def style():
    """``with style() as (plt, sns):`` pyplot (Agg) and seaborn, inside seaborn's whitegrid style."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.8):
        yield plt, sns


def save(fig, path) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically (a temporary file moved into place) and close it.

    The PNG is cropped to the figure's tight bounding box padded by ``savefig.pad_inches`` (what
    ``bbox_inches="tight"`` writes, pixel for pixel), but the box is measured once here on the laid-out figure:
    ``bbox_inches="tight"`` first draws the whole figure without rendering to measure it, a layout pass as costly as
    the draw itself (text layout of every tick label)."""
    import matplotlib
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        box = "tight"  # a layout engine that runs at draw time (constrained) must run before measuring
        if fig.get_layout_engine() is None:
            fig.set_dpi(DPI)  # measured at the PNG's resolution, as savefig does
            box = fig.get_tightbbox(fig.canvas.get_renderer()).padded(matplotlib.rcParams["savefig.pad_inches"])
        with store.atomic_open(path, "wb") as handle:
            fig.savefig(handle, format="png", dpi=DPI, bbox_inches=box)
    finally:
        plt.close(fig)
    return path


def wrap(text: str, width: int = CAPTION_CHARS) -> str:
    """``text`` broken into lines of at most ``width`` characters."""
    return "\n".join(textwrap.wrap(text, width))


def caption(fig, text: str) -> None:
    """A caption just under the lowest axes' labels (left-aligned, small, wrapped to the figure's width); call it
    after ``tight_layout``. ``bbox_inches="tight"`` keeps it in the saved PNG."""
    renderer = fig.canvas.get_renderer()
    boxes = [ax.get_tightbbox(renderer) for ax in fig.axes if ax.get_visible() and ax.axison]
    to_figure = fig.transFigure.inverted()
    left, bottom = to_figure.transform((min(b.x0 for b in boxes), min(b.y0 for b in boxes)))
    chars = int(fig.get_figwidth() * CAPTION_CHARS_PER_INCH)
    fig.text(max(left, 0.0), bottom - 0.01, wrap(text, chars), ha="left", va="top", fontsize=8, color="0.25")


def finish(fig, title: str) -> None:
    """Figure title (two lines: what, then the subtitle) above a tight layout that leaves it room."""
    fig.suptitle(title, fontsize=10)
    lines = title.count("\n") + 1
    tight_layout(fig, rect=(0, 0, 1, 1 - (0.16 * lines + 0.05) / fig.get_figheight()))


def tight_layout(fig, *, rect=(0, 0, 1, 1)) -> None:
    """``fig.tight_layout(rect=rect)`` (the same subplot parameters) at half the cost, leaving no layout engine
    on the figure (so :func:`save` measures the saved area once, without a first layout-only draw).

    matplotlib's tight layout measures every axes' decorations twice (margins for the whole figure, then again for
    the rect), though nothing moves in between; the second measurement, a text layout of every tick label, is
    served from the first here (each axes' ``get_tightbbox`` memoised for the call, then restored)."""
    from matplotlib.layout_engine import TightLayoutEngine

    measured = {}
    axes = list(fig.axes)

    def once(ax, measure):
        def get_tightbbox(*args, **kwargs):
            key = (id(ax), repr(args[1:]), repr(sorted(kwargs.items())))  # args[0]: the one renderer
            if key not in measured:
                measured[key] = measure(*args, **kwargs)
            return measured[key]

        return get_tightbbox

    for ax in axes:
        ax.get_tightbbox = once(ax, ax.get_tightbbox)  # an instance attribute over the method, deleted below
    try:
        TightLayoutEngine(rect=rect).execute(fig)  # what Figure.tight_layout runs, minus the engine left behind
    finally:
        for ax in axes:
            del ax.get_tightbbox


def plain_numbers(ax, axis: str = "y", *, scientific: bool = False) -> None:
    """Tick labels of ``ax``'s ``axis`` as the values themselves: no offset label (``1e-5+9.999e-1`` above the
    axis, which hides that 0.99991 … 0.99998 are nearly equal) and, unless ``scientific``, no ×10ⁿ factor either.
    Axes whose formatter is not matplotlib's ScalarFormatter (log scales, fixed labels) are left as they are."""
    try:
        ax.ticklabel_format(axis=axis, useOffset=False, style="sci" if scientific else "plain")
    except AttributeError:
        pass


def layer_positions(layers) -> list[int]:
    """x position of each layer: its index (``layer_10`` -> 10), so gaps between selected layers stay visible;
    ``0 … n−1`` when the keys are not all of one kind (or not layer keys)."""
    parsed = [layout.parse_layer_key(k) for k in layers]
    if any(p is None for p in parsed) or len({p[0] for p in parsed}) > 1:
        return list(range(len(layers)))
    return [p[1] for p in parsed]


def grid_columns(count: int) -> int:
    """Columns of a grid of ``count`` per-layer panels: 4 up to 16 panels, 5 beyond (25 layers -> 5 × 5)."""
    return min(count, 4 if count <= 16 else 5)


def grid(plt, count: int, *, share: bool = False):
    """A figure with ``count`` panels in rows of ``grid_columns(count)``; unused panels hidden. Returns (fig, axes)."""
    cols = grid_columns(count)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(PANEL_SIZE[0] * cols, PANEL_SIZE[1] * rows), squeeze=False,
                             sharex=share, sharey=share)
    for ax in axes.flat[count:]:
        ax.axis("off")
    return fig, list(axes.flat)[:count]
