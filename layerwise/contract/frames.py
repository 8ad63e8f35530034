"""Frame math of a wav2vec2-style CNN feature encoder, read from a checkpoint's config; nothing else.

HuBERT-base, derived from the config (``conv_kernel``/``conv_stride``):
    HOP = prod(strides) = 5·2·2·2·2·2·2 = 320 samples (20 ms at 16 kHz, 50 frames/s)
    RECEPTIVE_FIELD = k0 + Σ_i (k_i − 1)·prod(s_0..s_{i-1}) = 400 samples (25 ms)
    n_frames(L) = ((L − k)//s + 1 applied layer by layer) = floor((L − 400)/320) + 1
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from layerwise.contract.layout import parse_layer_key


def conv_output_length(n_samples: int, kernels, strides) -> int:
    """Frames after the conv stack: ``(L − k)//s + 1`` layer by layer; 0 when the input is too short."""
    length = n_samples
    for kernel, stride in zip(kernels, strides):
        if length < kernel:
            return 0
        length = (length - kernel) // stride + 1
    return length


def receptive_field(kernels, strides) -> int:
    """Samples seen by one output frame: ``k0 + Σ_i (k_i − 1)·prod(s_0..s_{i−1})`` (400 for HuBERT-base)."""
    field, jump = 1, 1
    for kernel, stride in zip(kernels, strides):
        field += (kernel - 1) * jump
        jump *= stride
    return field


def frame_centres(n_frames: int, hop: int, field: int, sample_rate: int) -> np.ndarray:
    """Centre time of each frame in seconds, shape (n_frames,): ``(i·hop + field/2) / sample_rate``.

    For HuBERT-base at 16 kHz: ``(i·320 + 200) / 16000``.
    """
    return (np.arange(n_frames) * hop + field / 2) / sample_rate


@dataclass(frozen=True)
class FrameGeometry:
    """Frame math of a checkpoint, read from its config."""

    kernels: tuple[int, ...]
    strides: tuple[int, ...]
    sample_rate: int

    @property
    def hop(self) -> int:
        """Samples between frames (320 for HuBERT-base)."""
        return math.prod(self.strides)

    @property
    def receptive_field(self) -> int:
        return receptive_field(self.kernels, self.strides)

    @property
    def frame_rate(self) -> float:
        """Frames per second (50.0 for HuBERT-base at 16 kHz)."""
        return self.sample_rate / self.hop

    def n_frames(self, n_samples: int) -> int:
        return conv_output_length(n_samples, self.kernels, self.strides)

    def conv_lengths(self, n_samples: int) -> list[int]:
        """Frames after each conv block, e.g. [3199, 1599, ...] for 16000 samples."""
        return [conv_output_length(n_samples, self.kernels[: i + 1], self.strides[: i + 1]) for i in range(len(self.kernels))]

    def centres(self, n_frames: int) -> np.ndarray:
        return frame_centres(n_frames, self.hop, self.receptive_field, self.sample_rate)


def parse_layer_geometry(geometry: FrameGeometry, key: str) -> FrameGeometry:
    """Frame geometry of the array stored under ``key``: ``layer_k`` → the model's; ``conv_k`` → conv blocks 0..k."""
    parsed = parse_layer_key(key)
    if parsed is None:
        raise ValueError(f"not a layer key: {key!r}")
    kind, index = parsed
    if kind == "conv":
        return FrameGeometry(geometry.kernels[: index + 1], geometry.strides[: index + 1], geometry.sample_rate)
    return geometry
