"""CNN feature encoder for long audio in bounded memory: the unchunked numbers to float32 rounding, in chunks.

The unchunked CNN of HuBERT-base holds about three copies of its first block's output (conv, GroupNorm, GELU:
512 channels at ``sample_rate / 5`` frames/s, float32), i.e. ``3 · 512/5 · 4 B ≈ 1.2 kB`` per input sample
(≈ 20 MB per second of 16 kHz audio, ≈ 6 GB for 300 s). Here the CNN runs on chunks of
:data:`CHUNK_SECONDS` of output frames, so that cost stops at ≈ ``CHUNK_SECONDS · 20 MB`` whatever the length.

Why it equals the unchunked CNN (up to the order of float32 sums inside GroupNorm):

- Output frame ``j`` sees input samples ``[j·hop, j·hop + field)``. A chunk of output frames ``[a, b)`` is computed
  from samples ``[a·hop, (b−1)·hop + field)`` (chunks overlap by ``field − hop`` samples, 80 for HuBERT-base).
  ``a·hop`` is a multiple of every block's cumulative stride, so every block's frames in the chunk are the
  unchunked frames ``a·hop / P_i ...`` (``P_i`` = product of strides 0..i): no alignment shift anywhere.
- Conv blocks with LayerNorm (``feat_extract_norm="layer"``) or no norm are local in time: chunking changes nothing.
- The first block of a group-norm CNN (``feat_extract_norm="group"``, HuBERT-base, wav2vec2-base) is
  ``GroupNorm(C, C)``: each channel normalised by its mean and variance over the WHOLE utterance. A first pass
  runs only that block's convolution chunk by chunk and merges per-chunk (count, mean, M2) in float64 (Chan et al.'s
  parallel variance); the second pass applies ``(h − mean)/sqrt(var + eps)·w + b`` with those global statistics.
  The float64 statistics differ from torch's float32 GroupNorm by rounding only (≈ 1e-7 relative).

Used automatically for inputs longer than :data:`LONG_AUDIO_SECONDS`; shorter ones take the transformers module
unchanged (bitwise its numbers). A config that breaks what the above relies on (unpadded convs with the config's
kernels and strides, no later block whose kernel < stride skips samples a chunk's frames need, time normalisation
only in the first block; :func:`chunking_obstacle`) takes that unchunked path at every length.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from layerwise.contract.grid import conv_grid, conv_output_length

log = logging.getLogger(__name__)

# Output-frame chunk: 20 s bounds the CNN's working set at ≈ 20 s · 20 MB/s ≈ 0.4 GB (HuBERT-base, float32) and
# keeps the overlap (field − hop = 80 samples per 320,000) and the extra first-block pass (≈ 3 % of CNN time) small.
CHUNK_SECONDS = 20.0
# Above this length the CNN runs in chunks. 40 s is longer than every LibriSpeech utterance (≤ 35 s), so corpora
# of read speech keep the transformers forward pass bitwise; from 40 s on, the unchunked CNN would need ≥ 0.8 GB.
LONG_AUDIO_SECONDS = 40.0


def _norm_kind(block: nn.Module) -> str:
    """``group`` (a per-channel GroupNorm), ``layer`` (LayerNorm), ``none``; anything else is ``unknown ...``."""
    norm = getattr(block, "layer_norm", None)
    if norm is None:
        return "none"
    if isinstance(norm, nn.GroupNorm):
        return "group" if norm.num_groups == norm.num_channels else (
            f"unknown: GroupNorm with {norm.num_groups} groups over {norm.num_channels} channels")
    if isinstance(norm, nn.LayerNorm):
        return "layer"
    return f"unknown: {type(norm).__name__}"


def chunking_obstacle(blocks, kernels, strides) -> str | None:
    """Why chunks of output frames would NOT reproduce the unchunked CNN for this stack, or None when they do.

    What the chunked path relies on (module docstring), checked one by one:

    - every block is an unpadded, undilated conv with the config's kernel and stride (the frame math is the
      config's, and a chunk's edges would otherwise see padding);
    - a chunk of last-block frames ``[a, b)``, cut from samples ``[a·hop, (b−1)·hop + field)``, holds every frame of
      each earlier block ``i`` that those frames use, ``(b−a)·hop / P_i`` of them. With ``F_i`` the receptive field
      and ``P_i`` the hop of blocks 0..i this needs ``field − F_i ≥ hop − P_i``, i.e. (both sides telescoped over
      the later blocks) ``Σ_{j>i} (k_j − s_j)·P_{j−1} ≥ 0``: true whenever every later kernel ≥ its stride. A block
      with kernel 1 < stride 2 after block i skips samples, and the chunk would hold too few of block i's frames;
    - only the first block normalises over time (a per-channel GroupNorm), every other norm is a LayerNorm or none.
    """
    for i, (block, k, s) in enumerate(zip(blocks, kernels, strides)):
        conv = getattr(block, "conv", None)
        if not isinstance(conv, nn.Conv1d):
            return f"CNN block {i} has no Conv1d 'conv'"
        if (conv.kernel_size[0], conv.stride[0]) != (k, s):
            return (f"CNN block {i} has kernel {conv.kernel_size[0]} / stride {conv.stride[0]}, the config says "
                    f"{k} / {s}")
        if conv.padding not in ((0,), "valid") or conv.dilation != (1,):
            return f"CNN block {i} pads ({conv.padding}) or dilates ({conv.dilation}) its input"
    cum = [math.prod(strides[: i + 1]) for i in range(len(strides))]
    for i in range(len(kernels) - 1):
        slack = sum((kernels[j] - strides[j]) * cum[j - 1] for j in range(i + 1, len(kernels)))
        if slack < 0:
            later = [f"block {j}: kernel {kernels[j]} < stride {strides[j]}" for j in range(i + 1, len(kernels))
                     if kernels[j] < strides[j]]
            return (f"the CNN skips input samples ({', '.join(later)}), so a chunk would hold too few frames of "
                    f"block {i}")
    kinds = [_norm_kind(b) for b in blocks]
    if any(kind.startswith("unknown") for kind in kinds):
        return f"CNN norm {next(k for k in kinds if k.startswith('unknown'))[len('unknown: '):]} is not supported"
    if "group" in kinds[1:]:
        return "a GroupNorm after the first CNN block normalises over the whole utterance"
    return None


class ChunkedFeatureEncoder(nn.Module):
    """Drop-in replacement for a wav2vec2-style ``feature_extractor`` (same ``conv_layers``, same parameters).

    ``forward(input_values (1, n_samples)) -> (1, C, T)``: the transformers computation for inputs up to
    ``long_samples``; chunked (exact, bounded memory) above. :meth:`block_outputs` gives every block's output.
    A stack that breaks an assumption of the chunked path (:func:`chunking_obstacle`; ``obstacle`` says which)
    always takes the unchunked computation, whatever the length: exact, without the memory bound (said once in the
    log at load, and the memory estimate of machine.py counts the whole first block).
    """

    def __init__(self, encoder: nn.Module, kernels, strides, sample_rate: int,
                 chunk_seconds: float = CHUNK_SECONDS, long_seconds: float = LONG_AUDIO_SECONDS):
        super().__init__()
        self.conv_layers = encoder.conv_layers  # the same modules: parameter names and values unchanged
        self.kernels, self.strides = tuple(kernels), tuple(strides)
        grid = conv_grid(self.kernels, self.strides)
        self.hop, self.field = grid.hop, grid.field
        self.chunk_frames = max(1, int(chunk_seconds * sample_rate) // self.hop)
        self.long_samples = int(long_seconds * sample_rate)
        self.obstacle = chunking_obstacle(self.conv_layers, self.kernels, self.strides)
        if self.obstacle:
            log.warning("long audio runs through the CNN in one piece (exact, memory not bounded): %s", self.obstacle)
        self.group_first = _norm_kind(self.conv_layers[0]) == "group"

    def chunked(self, n_samples: int) -> bool:
        """True when an input of ``n_samples`` samples takes the chunked path."""
        return self.obstacle is None and n_samples > self.long_samples

    # ------------------------------------------------------------------------------------------------ public
    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        """input_values (1, n_samples) -> last block's output (1, C, T)."""
        if not self.chunked(input_values.shape[-1]):
            hidden = input_values[:, None]
            for block in self.conv_layers:
                hidden = block(hidden)
            return hidden
        last = len(self.conv_layers) - 1
        return torch.cat([outs[last] for outs in self._chunks(input_values, {last})], dim=-1)

    def block_outputs(self, input_values: torch.Tensor, wanted: set[int]) -> dict[int, torch.Tensor]:
        """Outputs (1, C_i, T_i) of the blocks in ``wanted`` (after their activation), chunked for long inputs."""
        if not self.chunked(input_values.shape[-1]):
            hidden, outputs = input_values[:, None], {}
            for i, block in enumerate(self.conv_layers):
                if i > max(wanted):
                    break
                hidden = block(hidden)
                if i in wanted:
                    outputs[i] = hidden
            return outputs
        parts: dict[int, list[torch.Tensor]] = {i: [] for i in wanted}
        for outs in self._chunks(input_values, wanted):
            for i, value in outs.items():
                parts[i].append(value)
        return {i: torch.cat(values, dim=-1) for i, values in parts.items()}

    # ------------------------------------------------------------------------------------------------ chunks
    def _chunks(self, x: torch.Tensor, wanted: set[int]):
        """Yield, per chunk of output frames, {block i: its frames of that chunk (1, C_i, n)} without overlap."""
        n_samples = x.shape[-1]
        total = conv_output_length(n_samples, self.kernels, self.strides)
        stats = self._first_block_stats(x) if self.group_first else None
        cum = [math.prod(self.strides[: i + 1]) for i in range(len(self.strides))]
        deepest = max(wanted)
        for a in range(0, total, self.chunk_frames):
            b = min(a + self.chunk_frames, total)
            is_last = b == total
            piece = x[..., a * self.hop: n_samples if is_last else (b - 1) * self.hop + self.field]
            hidden, outs = piece[:, None], {}
            for i, block in enumerate(self.conv_layers[: deepest + 1]):
                hidden = self._first_block(block, hidden, stats) if (i == 0 and stats) else block(hidden)
                if i in wanted:
                    keep = hidden.shape[-1] if is_last else (b - a) * self.hop // cum[i]
                    outs[i] = hidden[..., :keep]
            yield outs

    def _first_block_stats(self, x: torch.Tensor):
        """Per-channel mean and biased variance of the first block's convolution over the whole input (float64),
        from chunks of that block's frames merged with Chan et al.'s pairwise update."""
        block = self.conv_layers[0]
        k, s = self.kernels[0], self.strides[0]
        n0 = (x.shape[-1] - k) // s + 1
        step = self.chunk_frames * self.hop // s
        count, mean, m2 = 0, None, None
        for m0 in range(0, n0, step):
            m1 = min(m0 + step, n0)
            h = block.conv(x[..., m0 * s: (m1 - 1) * s + k][:, None])[0].double()  # (C, m1 - m0)
            n = h.shape[-1]
            var_c, mean_c = torch.var_mean(h, dim=-1, correction=0)
            if mean is None:
                count, mean, m2 = n, mean_c, var_c * n
                continue
            delta = mean_c - mean
            total = count + n
            mean = mean + delta * (n / total)
            m2 = m2 + var_c * n + delta.square() * (count * n / total)
            count = total
        return mean, m2 / count

    @staticmethod
    def _first_block(block: nn.Module, hidden: torch.Tensor, stats) -> torch.Tensor:
        """Conv → GroupNorm with the whole utterance's statistics → activation, for one chunk."""
        mean, var = stats
        norm = block.layer_norm
        scale = norm.weight.double() / torch.sqrt(var + norm.eps)  # w · rstd, as torch's GroupNorm
        h = block.conv(hidden)
        # in float32 at least, as torch's GroupNorm computes internally for bf16/fp16 inputs
        work = torch.promote_types(h.dtype, torch.float32)
        out = (h.to(work) - mean.to(work)[:, None]) * scale.to(work)[:, None] + norm.bias.to(work)[:, None]
        return block.activation(out.to(h.dtype))
