"""Facts about the machine that decide how to run: native bf16, the memory this process may still use, and whether
one utterance's features fit in it.

bf16 on a CPU is fast only with native instructions: ``avx512_bf16`` (AVX-512 BF16 dot products, e.g. AMD Zen 4,
Intel Cooper Lake) or ``amx_bf16`` (Intel AMX tiles, Sapphire Rapids and later). Without them torch emulates bf16
matmuls in float32 with conversions: measured ≈ 25× slower than float32 on a 2-core AVX2-only AMD EPYC (1 GFLOP/s).
On CUDA, bf16 is native from compute capability 8.0 (Ampere: A100, A10/A40, RTX 30xx; Ada: L4/L40, RTX 40xx;
Hopper: H100/H200).

Available memory: on CUDA the device's free memory; on the host ``psutil.virtual_memory().available`` (the kernel's
``MemAvailable`` on Linux), capped by the cgroup's room (SLURM job, container), which psutil does not see.

How much one utterance's features need is estimated before the forward pass, so a file that cannot fit fails alone
(:class:`~layerwise.errors.InputError` with the numbers) instead of an out-of-memory kill of the whole shard. For T
frames, hidden size H, feed-forward size I, compute dtype of b bytes, N requested layers (contextualized), on top of
the loaded model:

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

import logging
import time
from pathlib import Path

import psutil

from layerwise.errors import InputError
from layerwise.model.checkpoint import DTYPE_BYTES

log = logging.getLogger(__name__)

NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flag names
CUDA_BF16_CAPABILITY = (8, 0)  # Ampere and later
GIB = 2**30
_warned: set[str] = set()  # warn once per process and device kind


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The ``flags`` of the first CPU in ``cpuinfo`` (empty when the file cannot be read, e.g. not Linux)."""
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_name(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def native_bf16_cpu(flags: set[str] | None = None) -> bool:
    """True when the CPU has native bf16 (``avx512_bf16`` or ``amx_bf16`` in its flags)."""
    flags = cpu_flags() if flags is None else flags
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)


def measure_bf16_slowdown(n: int = 256, repeats: int = 3) -> float:
    """Seconds of an n×n bf16 matmul divided by the float32 one (best of ``repeats``) with torch's threads:
    ≈ 0.5 where bf16 is native, ≫ 1 where it is emulated. Takes ≈ 0.1 s even on emulated bf16 (2·256³ FLOPs)."""
    import torch

    g = torch.Generator().manual_seed(0)
    a32 = torch.randn(n, n, generator=g)
    best = {}
    for dtype in (torch.float32, torch.bfloat16):
        a = a32.to(dtype)
        a @ a  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ a
            times.append(time.perf_counter() - t0)
        best[dtype] = min(times)
    return best[torch.bfloat16] / max(best[torch.float32], 1e-9)


def check_bf16(device: str, flags: set[str] | None = None) -> str | None:
    """Warn once (and return the message) when ``dtype=bfloat16`` will run without native bf16 on ``device``."""
    if device.startswith("cuda"):
        import torch

        major, minor = torch.cuda.get_device_capability()
        if (major, minor) >= CUDA_BF16_CAPABILITY:
            return None
        message = (f"dtype bfloat16: {torch.cuda.get_device_name()} (compute capability {major}.{minor}) has no "
                   "native bf16; it is native from compute capability 8.0 (A100, A10/A40, RTX 30xx/40xx, L4/L40, "
                   "H100/H200). Use dtype float16 (close to float32 on these models) or float32 here.")
    else:
        if native_bf16_cpu(flags):
            return None
        slowdown = measure_bf16_slowdown()
        message = (f"dtype bfloat16: this CPU ({cpu_name()}) has no native bf16 (no {' or '.join(NATIVE_BF16_FLAGS)} "
                   f"in /proc/cpuinfo), so torch emulates it: a bf16 matmul measured {slowdown:.1f}× the time of "
                   "float32 just now. Use dtype float32 (--dtype float32) on this machine.")
    if device.split(":")[0] not in _warned:
        _warned.add(device.split(":")[0])
        log.warning("%s", message)
    return message


def _cgroup_available() -> int | None:
    """Bytes the cgroup (SLURM job, container) still allows: memory.max − memory.current (v2) or limit − usage (v1)."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:  # "max" or a huge number: no limit
            return int(limit) - usage
    return None


def available_memory(device: str = "cpu") -> int:
    """Bytes this process can still allocate on ``device``: free device memory on CUDA; on the host
    ``psutil.virtual_memory().available``, or the cgroup's room (SLURM job, container) when that is smaller."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info()[0])
    free = psutil.virtual_memory().available
    cgroup = _cgroup_available()
    return min(free, cgroup) if cgroup is not None else free


def memory_needed(model, n_samples: int, rep_type: str, layers: list[int]) -> int:
    """Estimated peak bytes of ``model.features(samples, rep_type, layers)`` for ``n_samples`` samples (the
    estimate in the module docstring)."""
    b = DTYPE_BYTES[model.dtype]
    copy = 4 if (b != 4 or model.device != "cpu") else 0
    summary = model.info.config_summary
    dims = list(summary.get("conv_dim", [512] * model.num_conv_layers))
    lengths = model.geometry.conv_lengths(n_samples)
    encoder = model.model.feature_extractor
    first_frames = lengths[0]
    if getattr(encoder, "chunked", lambda n: False)(n_samples):  # chunked: one chunk of the first block's frames
        first_frames = min(first_frames, encoder.chunk_frames * encoder.hop // model.geometry.strides[0] + 1)
    total = 5 * dims[0] * first_frames * b // 2 + 3 * n_samples * 4
    if rep_type == "contextualized":
        frames, hidden = lengths[-1], model.hidden_size
        inner = int(summary.get("intermediate_size", 4 * hidden))
        total += len(layers) * frames * hidden * (b + copy) + frames * (2 * inner + 8 * hidden) * b
    else:
        total += sum(dims[i] * lengths[i] * (b + copy) for i in layers)
    return total


def out_of_memory(needed: int, seconds: float, device: str, free: int | None = None) -> InputError:
    """The per-file error for an utterance that does not fit, with the memory it needs."""
    free = available_memory(device) if free is None else free
    return InputError(f"{seconds:.1f} s of audio needs about {needed / GIB:.1f} GiB for its features, "
                      f"{free / GIB:.1f} GiB is available ({device}); skipped. Extract it on a machine with more "
                      "memory, or with fewer layers (--layers), or cut the recording.")


def check_memory(needed: int, seconds: float, device: str) -> None:
    """Raise :func:`out_of_memory` when ``needed`` bytes exceed what is available now."""
    free = available_memory(device)
    if needed > free:
        raise out_of_memory(needed, seconds, device, free)
