"""Facts about the machine that decide how to run: native bf16, and memory available to this process.

bf16 on a CPU is fast only with native instructions: ``avx512_bf16`` (AVX-512 BF16 dot products, e.g. AMD Zen 4,
Intel Cooper Lake) or ``amx_bf16`` (Intel AMX tiles, Sapphire Rapids and later). Without them torch emulates bf16
matmuls in float32 with conversions: measured ≈ 25× slower than float32 on a 2-core AVX2-only AMD EPYC (1 GFLOP/s).
On CUDA, bf16 is native from compute capability 8.0 (Ampere: A100, A10/A40, RTX 30xx; Ada: L4/L40, RTX 40xx;
Hopper: H100/H200).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)

NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flag names
CUDA_BF16_CAPABILITY = (8, 0)  # Ampere and later
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


def _meminfo_available(meminfo: str | Path = "/proc/meminfo") -> int | None:
    """``MemAvailable`` of /proc/meminfo in bytes (Linux), None elsewhere."""
    try:
        for line in Path(meminfo).read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the kernel reports kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def available_memory() -> int:
    """Bytes this process can still allocate: the smaller of the system's available memory (/proc/meminfo, else
    psutil) and the cgroup's room (SLURM job, container). Without either source: no limit is assumed."""
    free = _meminfo_available()
    if free is None:
        try:
            import psutil

            free = psutil.virtual_memory().available
        except ImportError:
            free = 1 << 62
    cgroup = _cgroup_available()
    return min(free, cgroup) if cgroup is not None else free
