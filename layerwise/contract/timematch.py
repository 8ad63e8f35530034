"""Matching two frame sequences in time: average-pool the finer one onto the coarser one's frames.

Two sequences that describe the same audio at different frame rates (a conv block at 5 samples per frame and the
transformer at 320, a log-mel filterbank at 160 and a conv block at 10, ...) are compared frame by frame only after
one is brought onto the other's grid. As in the published layer-wise analyses (Pasad et al.), the finer sequence is
average-pooled: coarse frame ``j`` (samples ``[j·hop_c, j·hop_c + field_c)``) takes the mean of the fine frames
``j·stride … j·stride + kernel − 1`` with

    stride = hop_c / hop_f                                  (an integer, else the grids do not nest)
    kernel = ceil((field_c − field_f) / hop_f) + 1          (fine frames whose windows cover the coarse window)

e.g. HuBERT-base ``conv_0`` (hop 5, field 10 samples) onto the transformer frames (hop 320, field 400):
stride 64, kernel 79; onto a 10 ms filterbank with a 25 ms window (hop 160, field 400): stride 32, kernel 79.
Equal geometry gives kernel 1, stride 1 (the identity). Both grids start at sample 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from layerwise.errors import UsageError


@dataclass(frozen=True)
class Grid:
    """A frame grid in samples: frame ``i`` covers ``[i·hop, i·hop + field)``."""

    hop: int
    field: int


def conv_grid(kernels, strides) -> Grid:
    """Grid of a conv stack: hop = prod(strides), field = k0 + Σ_i (k_i − 1)·prod(s_0..s_{i−1}) (320/400 for
    HuBERT-base's 7 blocks; 5/10 for its first block alone)."""
    hop, field = 1, 1
    for kernel, stride in zip(kernels, strides):
        field += (kernel - 1) * hop
        hop *= stride
    return Grid(hop, field)


def pool_plan(fine: Grid, coarse: Grid) -> tuple[int, int]:
    """``(kernel, stride)`` that maps ``fine`` frames onto ``coarse`` frames (see the module docstring)."""
    if coarse.hop % fine.hop:
        raise UsageError(f"frame grids do not nest: hop {coarse.hop} is not a multiple of hop {fine.hop} samples")
    if coarse.hop < fine.hop:
        raise UsageError(f"hop {coarse.hop} < hop {fine.hop}: pass the finer grid first")
    kernel = max(1, math.ceil((coarse.field - fine.field) / fine.hop) + 1)
    return kernel, coarse.hop // fine.hop


def pool_frames(x: np.ndarray, kernel: int, stride: int, n_out: int | None = None) -> np.ndarray:
    """Mean of ``x[j·stride : j·stride + kernel]`` for every ``j`` whose window lies inside ``x``.

    x : ndarray (T, D). Returns (n, D) float64 with ``n = (T − kernel)//stride + 1`` (0 when T < kernel), cut to
    ``n_out`` when given (the coarse sequence's own frame count, which can be one or two frames shorter).
    """
    x = np.asarray(x)
    n = max(0, (x.shape[0] - kernel) // stride + 1)
    if n_out is not None:
        n = min(n, n_out)
    if kernel == 1:
        return x[: n * stride : stride].astype(np.float64, copy=True)[:n]
    csum = np.zeros((x.shape[0] + 1, x.shape[1]), dtype=np.float64)
    np.cumsum(x, axis=0, dtype=np.float64, out=csum[1:])
    starts = np.arange(n) * stride
    return (csum[starts + kernel] - csum[starts]) / kernel


def match(a: np.ndarray, grid_a: Grid, b: np.ndarray, grid_b: Grid) -> tuple[np.ndarray, np.ndarray]:
    """``a`` and ``b`` on a common grid (the coarser one), cut to the same number of frames.

    a, b : (T_a, D_a), (T_b, D_b) of the same audio. Returns two float64 arrays with equal row counts.
    """
    if grid_a.hop <= grid_b.hop:
        fine, coarse, swap = (a, grid_a), (b, grid_b), False
    else:
        fine, coarse, swap = (b, grid_b), (a, grid_a), True
    kernel, stride = pool_plan(fine[1], coarse[1])
    pooled = pool_frames(fine[0], kernel, stride, n_out=coarse[0].shape[0])
    other = np.asarray(coarse[0], dtype=np.float64)[: pooled.shape[0]]
    return (other, pooled) if swap else (pooled, other)
