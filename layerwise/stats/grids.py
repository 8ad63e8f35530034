"""Statistics of layers that may sit on different frame grids: each layer over its own frames, pairs by time.

Layers of one file can have different frame rates (``rep_type local``: ``conv_0`` at 3200 frames/s … ``conv_6`` at
50). Layers on the same grid share one :class:`~layerwise.stats.moments.LayerStats` (moments, covariance, CKA, cosine over
their own frames). Every pair of different grids gets a second ``LayerStats`` over the matched frames: the finer
layers average-pooled onto the coarser grid with :mod:`layerwise.contract.grid` (kernel and stride from hop and receptive
field, as the published layer-wise analyses do), the coarser ones cut to the same count. CKA and cosine of two
layers on different grids come from that pair's statistics, so numerator and normalisers use the same frames; the
number of frames each pair was compared over is :meth:`GridStats.frames`.

Without grids (span folders, whose layers are pooled to the same segments; prototype files without metadata) all
layers form one group and must have equal row counts.
"""

from __future__ import annotations

import numpy as np

from layerwise.contract import layout
from layerwise.contract.grid import Grid, pool_frames, pool_plan
from layerwise.errors import InputError
from layerwise.stats.moments import LayerStats


def grids_for(meta: dict, keys: list[str]) -> dict[str, Grid] | None:
    """Grid of every key (``layout.layer_grid``: from the file's metadata) for frame folders; None for span folders
    or when any grid is unknown (then all layers form one group)."""
    if meta.get("span", layout.FRAME_SPAN) != layout.FRAME_SPAN:
        return None
    grids = {key: layout.layer_grid(meta, key) for key in keys}
    return None if any(g is None for g in grids.values()) else grids


class GridStats:
    """Per-layer statistics over each layer's own frames and pairwise CKA/cosine over time-matched frames.

    layers, dims : selected keys in numeric order and their dims. grids : key -> Grid, or None (one group).
    """

    def __init__(self, layers: list[str], dims: list[int], grids: dict[str, Grid] | None, *,
                 precision: str = "float32"):
        self.layers, self.dims, self.precision = list(layers), [int(d) for d in dims], precision
        self.grids = dict(grids) if grids else None
        order = sorted({g for g in self.grids.values()}, key=lambda g: (g.hop, g.field)) if self.grids else [None]
        self.group_grids = order  # finest first
        self.group_of = {k: (order.index(self.grids[k]) if self.grids else 0) for k in self.layers}
        self.groups = []
        for g in range(len(order)):
            keys = [k for k in self.layers if self.group_of[k] == g]
            self.groups.append(LayerStats(keys, [self.dims[self.layers.index(k)] for k in keys], precision=precision))
        self.pairs: dict[tuple[int, int], tuple[tuple[int, int], LayerStats]] = {}
        for a in range(len(order)):
            for b in range(a + 1, len(order)):
                plan = pool_plan(order[a], order[b])
                keys = self.groups[a].layers + self.groups[b].layers
                dims = self.groups[a].dims + self.groups[b].dims
                self.pairs[(a, b)] = (plan, LayerStats(keys, dims, precision=precision))

    # ---------------------------------------------------------------- accumulation
    def update(self, arrays: dict[str, np.ndarray], name: str = "a file") -> None:
        """Add one file: arrays : key -> (T_k, D_k), T_k equal within a grid."""
        for group in self.groups:
            counts = {k: len(arrays[k]) for k in group.layers}
            if len(set(counts.values())) > 1:
                raise InputError(f"{name}: layers have different frame counts {counts} and the file's metadata does "
                                 f"not give their frame grids (hop_samples, receptive_field_samples, model_config); "
                                 f"analyse layers of one frame rate (layers=...) or re-extract with this version")
            group.update({k: arrays[k] for k in group.layers})
        for (a, b), ((kernel, stride), stats) in self.pairs.items():
            coarse = self.groups[b].layers
            n_coarse = len(arrays[coarse[0]])
            pooled = {k: pool_frames(arrays[k], kernel, stride, n_out=n_coarse) for k in self.groups[a].layers}
            count = len(next(iter(pooled.values())))
            stats.update({**pooled, **{k: np.asarray(arrays[k])[:count] for k in coarse}})

    def end_group(self) -> None:
        for stats in self._all():
            stats.end_group()

    def _all(self) -> list[LayerStats]:
        return self.groups + [stats for _, stats in self.pairs.values()]

    def merge(self, other: GridStats) -> GridStats:
        for mine, theirs in zip(self._all(), other._all()):
            mine.merge(theirs)
        return self

    def state(self) -> dict[str, np.ndarray]:
        """Arrays of every group's and pair's state, prefixed ``g{i}_`` / ``p{a}_{b}_``."""
        out = {}
        for i, group in enumerate(self.groups):
            out.update({f"g{i}_{k}": v for k, v in group.state().items()})
        for (a, b), (_, stats) in self.pairs.items():
            out.update({f"p{a}_{b}_{k}": v for k, v in stats.state().items()})
        return out

    def load_state(self, arrays: dict[str, np.ndarray]) -> GridStats:
        """Replace the (empty) statistics by a saved :meth:`state`."""
        def part(prefix):
            return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}

        self.groups = [LayerStats.from_state(g.layers, g.dims, part(f"g{i}_"), precision=self.precision)
                       for i, g in enumerate(self.groups)]
        for (a, b), (plan, stats) in list(self.pairs.items()):
            self.pairs[(a, b)] = (plan, LayerStats.from_state(stats.layers, stats.dims, part(f"p{a}_{b}_"),
                                                              precision=self.precision))
        return self

    # ---------------------------------------------------------------- results
    def stats_of(self, key: str) -> LayerStats:
        """The statistics over ``key``'s own frames."""
        return self.groups[self.group_of[key]]

    def n_frames(self, key: str) -> int:
        return self.stats_of(key).n

    def frame_rate(self, key: str, sample_rate: float | None) -> float | None:
        """Frames per second of ``key`` (None without grids or sample rate)."""
        if not self.grids or not sample_rate:
            return None
        return float(sample_rate) / self.grids[key].hop

    def _pair(self, a: str, b: str) -> LayerStats:
        ga, gb = sorted((self.group_of[a], self.group_of[b]))
        return self.groups[ga] if ga == gb else self.pairs[(ga, gb)][1]

    def _matrix(self, measure: str) -> np.ndarray:
        count = len(self.layers)
        out = np.full((count, count), np.nan)
        values = {}
        for i, a in enumerate(self.layers):
            for j, b in enumerate(self.layers):
                stats = self._pair(a, b)
                if stats.n < 2:
                    continue
                if id(stats) not in values:
                    values[id(stats)] = getattr(stats, measure)()
                out[i, j] = values[id(stats)][stats.layers.index(a), stats.layers.index(b)]
        return out

    def cka(self) -> np.ndarray:
        """(L, L) linear CKA; layers of different grids over their matched frames; NaN where undefined."""
        return self._matrix("cka")

    def cka_debiased(self) -> np.ndarray:
        """(L, L) debiased linear CKA (unbiased HSIC), paired as :meth:`cka`; NaN where undefined (below 4 frames)."""
        return self._matrix("cka_debiased")

    def cosine(self) -> np.ndarray:
        """(L, L) uncentered cosine (equal dims only); layers of different grids over their matched frames."""
        return self._matrix("cosine")

    def frames(self) -> np.ndarray:
        """(L, L) int: frames each pair was compared over (the diagonal: the layer's own frames)."""
        return np.array([[self._pair(a, b).n for b in self.layers] for a in self.layers], dtype=np.int64)

    def rule(self) -> str:
        """How layers were paired, for the report."""
        if len(self.groups) == 1:
            return "all layers share one frame grid: compared frame by frame"
        plans = ", ".join(f"hop {self.group_grids[a].hop}→{self.group_grids[b].hop}: kernel {k}, stride {s}"
                          for (a, b), ((k, s), _) in self.pairs.items() if b == a + 1)
        return (f"layers at {len(self.groups)} frame rates: each layer's statistics over its own frames; a pair of "
                f"layers at different rates is compared after average-pooling the finer layer onto the coarser "
                f"layer's frames ({plans}, …)")
