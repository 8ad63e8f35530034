"""Native-bf16 detection (patched flag lists and cpuinfo files), the memory the process may still use, and the
bytes per value of each compute dtype."""

from __future__ import annotations

import logging

import pytest

from layerwise.model import machine


def test_cpu_flags_from_a_cpuinfo_file(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse avx avx2 fma\n\n"
                    "processor\t: 1\nflags\t\t: fpu\n")
    assert machine.cpu_flags(info) == {"fpu", "sse", "avx", "avx2", "fma"}
    assert machine.cpu_name(info) == "AMD EPYC 7B13"
    assert machine.cpu_flags(tmp_path / "missing") == set()


@pytest.mark.parametrize("flags, native", [({"avx2", "fma"}, False), ({"avx512f", "avx512_vnni"}, False),
                                           ({"avx512f", "avx512_bf16"}, True), ({"amx_tile", "amx_bf16"}, True)])
def test_native_bf16_from_flags(flags, native):
    assert machine.native_bf16_cpu(flags) is native


def test_bf16_without_native_support_warns_once_with_measured_slowdown(monkeypatch, caplog):
    monkeypatch.setattr(machine, "_warned", set())
    monkeypatch.setattr(machine, "measure_bf16_slowdown", lambda: 24.6)
    with caplog.at_level(logging.WARNING, logger="layerwise.model.machine"):
        first = machine.check_bf16("cpu", flags={"avx2", "fma"})
        second = machine.check_bf16("cpu", flags={"avx2", "fma"})
    assert first == second and "24.6× the time of float32" in first and "dtype float32" in first
    assert len(caplog.records) == 1
    assert machine.check_bf16("cpu", flags={"amx_bf16"}) is None


def test_measured_slowdown_is_a_positive_ratio():
    assert 0 < machine.measure_bf16_slowdown(n=64, repeats=1) < 1000


def test_available_memory_respects_a_cgroup_limit(monkeypatch):
    import psutil

    monkeypatch.setattr(machine, "_cgroup_available", lambda: 3 * 2**30)
    assert machine.available_memory() == min(3 * 2**30, psutil.virtual_memory().available)
    monkeypatch.setattr(machine, "_cgroup_available", lambda: None)
    assert machine.available_memory() == pytest.approx(psutil.virtual_memory().available, rel=0.2)


def test_available_memory_is_the_kernels_memavailable_on_linux(monkeypatch):
    """psutil's figure is /proc/meminfo's MemAvailable (kB) read independently here, within what moves between reads."""
    import pathlib

    meminfo = pathlib.Path("/proc/meminfo")
    if not meminfo.exists():
        pytest.skip("no /proc/meminfo (not Linux)")
    monkeypatch.setattr(machine, "_cgroup_available", lambda: None)
    line = next(x for x in meminfo.read_text().splitlines() if x.startswith("MemAvailable:"))
    assert machine.available_memory("cpu") == pytest.approx(int(line.split()[1]) * 1024, rel=0.1)


def test_compute_dtype_sizes_are_numpy_item_sizes():
    import numpy as np
    import torch

    from layerwise.model.checkpoint import DTYPE_BYTES, DTYPES

    assert DTYPES == tuple(DTYPE_BYTES) == ("float32", "bfloat16", "float16")
    assert {k: torch.empty(0, dtype=getattr(torch, k)).element_size() for k in DTYPES} == DTYPE_BYTES
    assert DTYPE_BYTES["float16"] == np.dtype(np.float16).itemsize


def test_bf16_on_an_old_gpu_names_the_gpus_that_have_it(monkeypatch):
    import torch

    monkeypatch.setattr(machine, "_warned", set())
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    message = machine.check_bf16("cuda")
    assert "Tesla T4 (compute capability 7.5) has no native bf16" in message
    assert "A100" in message and "H100" in message and "float16" in message
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert machine.check_bf16("cuda") is None
