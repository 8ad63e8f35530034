"""How much memory one utterance's features need, checked before the forward pass so a file that cannot fit fails
alone (:class:`~layerwise.errors.InputError` with the numbers) instead of an out-of-memory kill of the whole shard.

Estimate for T frames, hidden size H, feed-forward size I, compute dtype of b bytes, N requested layers
(contextualized), on top of the loaded model:

    kept states     N · T · H · (b + 4)       each requested layer on the device, plus its float32 host copy
                                              (no copy for float32 on the CPU: 4 bytes then)
    transformer     T · (2·I + 8·H) · b       one layer's transients: feed-forward intermediate and activation,
                                              q, k, v, attention output, residual and norm outputs
    CNN             2.5 · C0 · T0 · b         first block (C0 channels, T0 frames): two live outputs (conv → norm →
                                              activation), plus the next block's at half the rate; T0 bounded by
                                              the chunk for long audio (longaudio.py)
    input           3 · n_samples · 4         waveform, normalised copy, device copy

``--rep_type local`` keeps ``C_i · T_i · (b + 4)`` per requested block instead of the states and transformer terms.
The CPU flash attention of torch's SDPA works in blocks (memory O(T), not O(T²)), so no T² term.

Checked against ``bench/bench_long.py`` (HuBERT-base, float32, 13 layers, 300 s): peak RSS grew by 1.5 GiB over
the loaded model with the chunked CNN (estimate 1.6 GiB) and by 4.6 GiB with the whole-utterance CNN (estimate
5.9 GiB): the estimate errs on the safe side.
"""

from __future__ import annotations

from layerwise.errors import InputError

GIB = 2**30
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def memory_needed(model, n_samples: int, rep_type: str, layers: list[int]) -> int:
    """Estimated peak bytes of ``model.features(samples, rep_type, layers)`` for ``n_samples`` samples (see module)."""
    b = DTYPE_BYTES[model.dtype]
    copy = 4 if (b != 4 or model.device != "cpu") else 0
    summary = model.info.config_summary
    dims = list(summary.get("conv_dim", [512] * model.num_conv_layers))
    lengths = model.geometry.conv_lengths(n_samples)
    encoder = model.model.feature_extractor
    first_frames = lengths[0]
    if n_samples > getattr(encoder, "long_samples", n_samples):  # chunked: one chunk of the first block's frames
        first_frames = min(first_frames, encoder.chunk_frames * encoder.hop // model.geometry.strides[0] + 1)
    total = 5 * dims[0] * first_frames * b // 2 + 3 * n_samples * 4
    if rep_type == "contextualized":
        frames, hidden = lengths[-1], model.hidden_size
        inner = int(summary.get("intermediate_size", 4 * hidden))
        total += len(layers) * frames * hidden * (b + copy) + frames * (2 * inner + 8 * hidden) * b
    else:
        total += sum(dims[i] * lengths[i] * (b + copy) for i in layers)
    return total


def available(device: str) -> int:
    """Bytes still free for this process: device memory on CUDA, else the system's/cgroup's available memory."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info()[0])
    from layerwise.model.machine import available_memory

    return available_memory()


def out_of_memory(needed: int, seconds: float, device: str, free: int | None = None) -> InputError:
    """The per-file error for an utterance that does not fit, with the memory it needs."""
    free = available(device) if free is None else free
    return InputError(f"{seconds:.1f} s of audio needs about {needed / GIB:.1f} GiB for its features, "
                      f"{free / GIB:.1f} GiB is available ({device}); skipped. Extract it on a machine with more "
                      "memory, or with fewer layers (--layers), or cut the recording.")


def check_memory(needed: int, seconds: float, device: str) -> None:
    """Raise :func:`out_of_memory` when ``needed`` bytes exceed what is available now."""
    free = available(device)
    if needed > free:
        raise out_of_memory(needed, seconds, device, free)
