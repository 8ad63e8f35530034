"""The frame grid: where each frame of a sequence sits in the audio, and how two grids are matched in time.

A grid is ``(hop, field)`` in samples: frame ``i`` covers samples ``[i·hop, i·hop + field)``. For the CNN feature
encoder of a wav2vec2-style checkpoint both come from its config (``conv_kernel``/``conv_stride``); HuBERT-base:

    HOP   = prod(s_i)                                  = 5·2·2·2·2·2·2 = 320 samples (20 ms at 16 kHz, 50 frames/s)
    FIELD = k_0 + Σ_{i≥1} (k_i − 1)·prod(s_0..s_{i−1})  = 400 samples (25 ms): the receptive field of one frame
    n_frames(L) = ((L − k)//s + 1, block by block)     = floor((L − 400)/320) + 1 (16000 samples → 49, 400 → 1)
    centre of frame i = (i·HOP + FIELD/2) / sample_rate seconds   ((i·320 + 200) / 16000)

``layer_k`` arrays sit on the whole stack's grid; ``conv_k`` on the grid of blocks 0..k (:func:`layer_blocks`).

Matching two sequences of the same audio on different grids (a conv block at 5 samples per frame and the transformer
at 320, the log-mel filterbank at 160 and a conv block at 10, ...): as in the published layer-wise analyses (Pasad et
al.), the finer sequence is average-pooled onto the coarser one. Coarse frame ``j`` takes the mean of the fine frames
``j·stride … j·stride + kernel − 1`` with

    stride = hop_c / hop_f                                  (an integer, else the grids do not nest)
    kernel = ceil((field_c − field_f) / hop_f) + 1          (fine frames whose windows cover the coarse window)

e.g. HuBERT-base ``conv_0`` (hop 5, field 10) onto the transformer frames (hop 320, field 400): stride 64, kernel 79;
onto the filterbank (:data:`FBANK_GRID`, hop 160, field 400): stride 32, kernel 79. Equal grids give kernel 1,
stride 1 (the identity). All grids start at sample 0.
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


# The log-mel filterbank's grid (extract/fbank.py computes the features; measures pair model frames with them):
FBANK_HOP = 160  # samples = 10 ms at 16 kHz
FBANK_WINDOW = 400  # samples = 25 ms
# The published reference pairs fbank frame j with model frames as if it started at sample 160·j (librosa centres its
# window on that sample instead, 12.5 ms later); this is that grid, so cca_mel pairs frames as the published numbers do.
FBANK_GRID = Grid(hop=FBANK_HOP, field=FBANK_WINDOW)


def conv_grid(kernels, strides) -> Grid:
    """Grid of a conv stack: ``hop = prod(s_i)``, ``field = k_0 + Σ_{i≥1} (k_i − 1)·prod(s_0..s_{i−1})`` (320/400
    for HuBERT-base's 7 blocks; 5/10 for its first block alone). The one receptive-field formula of the project."""
    hop, field = 1, 1
    for kernel, stride in zip(kernels, strides):
        field += (kernel - 1) * hop
        hop *= stride
    return Grid(hop, field)


def conv_output_length(n_samples: int, kernels, strides) -> int:
    """Frames after the conv stack: ``(L − k)//s + 1`` block by block; 0 when the input is too short."""
    length = n_samples
    for kernel, stride in zip(kernels, strides):
        if length < kernel:
            return 0
        length = (length - kernel) // stride + 1
    return length


def layer_blocks(kind: str, index: int, n_blocks: int) -> int:
    """How many conv blocks lie under the array of layer key ``(kind, index)`` of a model with ``n_blocks`` blocks:
    ``conv_k`` → k + 1 (blocks 0..k); ``layer_k`` → all of them (every hidden state is on the whole stack's grid)."""
    return index + 1 if kind == "conv" else n_blocks


def frame_centres(n_frames: int, hop: int, field: int, sample_rate: int) -> np.ndarray:
    """Centre time of each frame in seconds, shape (n_frames,) float64: ``(i·hop + field/2) / sample_rate``."""
    return (np.arange(n_frames) * hop + field / 2) / sample_rate


@dataclass(frozen=True)
class FrameGeometry:
    """Frame math of a checkpoint's CNN, read from its config: kernels and strides per block, input rate in Hz."""

    kernels: tuple[int, ...]
    strides: tuple[int, ...]
    sample_rate: int

    @property
    def grid(self) -> Grid:
        """The grid of the whole stack (320/400 samples for HuBERT-base)."""
        return conv_grid(self.kernels, self.strides)

    @property
    def hop(self) -> int:
        """Samples between frames (320 for HuBERT-base)."""
        return self.grid.hop

    @property
    def receptive_field(self) -> int:
        """Samples seen by one frame (400 for HuBERT-base)."""
        return self.grid.field

    @property
    def frame_rate(self) -> float:
        """Frames per second (50.0 for HuBERT-base at 16 kHz)."""
        return self.sample_rate / self.hop

    def n_frames(self, n_samples: int) -> int:
        """Frames of an input of ``n_samples`` samples (0 when shorter than the receptive field)."""
        return conv_output_length(n_samples, self.kernels, self.strides)

    def conv_lengths(self, n_samples: int) -> list[int]:
        """Frames after each conv block, e.g. [3199, 1599, ...] for 16000 samples."""
        return [conv_output_length(n_samples, self.kernels[: i + 1], self.strides[: i + 1])
                for i in range(len(self.kernels))]

    def centres(self, n_frames: int) -> np.ndarray:
        """Centre times (n_frames,) in seconds of this stack's frames (see :func:`frame_centres`)."""
        return frame_centres(n_frames, self.hop, self.receptive_field, self.sample_rate)

    def of_layer(self, kind: str, index: int) -> FrameGeometry:
        """The geometry of the array of layer key ``(kind, index)``: ``layer_k`` → this one; ``conv_k`` → blocks
        0..k (:func:`layer_blocks`)."""
        depth = layer_blocks(kind, index, len(self.kernels))
        if depth == len(self.kernels):
            return self
        return FrameGeometry(self.kernels[:depth], self.strides[:depth], self.sample_rate)


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
