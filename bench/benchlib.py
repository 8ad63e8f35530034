"""Building blocks of the extraction benchmark (bench_extract.py): FLOP count, synthetic corpus, checkpoint,
the naive baseline loop, timing helpers and the bf16-vs-fp32 agreement measures.

Everything here runs offline: the model is a randomly initialised HuBERT-base config (same FLOPs as the released
checkpoint) saved with ``save_pretrained``; the audio is synthesized with a seeded numpy generator.
"""

from __future__ import annotations

import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from layerwise.contract.grid import FrameGeometry
from layerwise.model import machine
from layerwise.stats.moments import LayerStats

SAMPLE_RATE = 16000  # Hz, HuBERT/wav2vec2 input rate
MIN_UTT_S, MAX_UTT_S = 2.0, 20.0  # LibriSpeech utterance lengths lie in about this range
MEAN_UTT_S, SD_UTT_S = 12.3, 4.0  # LibriSpeech dev-clean: mean ≈ 12.3 s per utterance


# ---------------------------------------------------------------------------------------------------- FLOPs
def forward_flops(config, n_samples: int) -> dict[str, float]:
    """Multiply-add FLOPs (2 per MAC) of one forward pass of a wav2vec2-style model on ``n_samples`` samples.

    Counted from the config (``conv_dim``/``conv_kernel``/``conv_stride``, ``hidden_size`` H, ``intermediate_size`` I,
    ``num_hidden_layers``, ``num_conv_pos_embeddings`` K, ``num_conv_pos_embedding_groups`` G), T = frames:
      cnn         Σ_k 2·T_k·C_in·C_out·kernel_k                (C_in = 1 for the first layer)
      projection  2·T·C_last·H
      pos_conv    2·T·H·(H/G)·K                                (grouped conv, output trimmed to T frames)
      per layer   4·2·T·H² (q, k, v, out) + 2·2·T²·H (scores, weighted sum) + 2·2·T·H·I (feed-forward)
    Norms, activations and softmax are element-wise (O(T·H)) and left out. Returns a dict with keys
    ``cnn``, ``transformer`` and ``total`` in FLOPs. HuBERT-base: ≈ 4.9 G CNN + ≈ 9.9 G transformer per second of
    audio for an 11 s utterance (the T² attention term makes longer utterances cost slightly more per second).
    """
    kernels, strides, dims = list(config.conv_kernel), list(config.conv_stride), list(config.conv_dim)
    lengths = FrameGeometry(tuple(kernels), tuple(strides), SAMPLE_RATE).conv_lengths(n_samples)
    c_in = [1] + dims[:-1]
    cnn = sum(2.0 * t * ci * co * k for t, ci, co, k in zip(lengths, c_in, dims, kernels))
    t, h, i = float(lengths[-1]), config.hidden_size, config.intermediate_size
    pos = 2 * t * h * (h / config.num_conv_pos_embedding_groups) * config.num_conv_pos_embeddings
    layer = 4 * 2 * t * h * h + 2 * 2 * t * t * h + 2 * 2 * t * h * i
    transformer = 2 * t * dims[-1] * h + pos + config.num_hidden_layers * layer
    return {"cnn": cnn, "transformer": transformer, "total": cnn + transformer}


# ---------------------------------------------------------------------------------------------------- corpus
def utterance_lengths(total_seconds: float, seed: int) -> list[float]:
    """LibriSpeech-like utterance durations in seconds (normal(12.3, 4) clipped to [2, 20]) summing to about
    ``total_seconds``; the last one is trimmed to fit (and dropped if shorter than 2 s)."""
    if total_seconds < MIN_UTT_S:
        raise ValueError(f"--seconds {total_seconds} < {MIN_UTT_S} (one utterance)")
    rng = np.random.default_rng(seed)
    lengths: list[float] = []
    while (left := total_seconds - sum(lengths)) >= MIN_UTT_S:
        d = float(np.clip(rng.normal(MEAN_UTT_S, SD_UTT_S), MIN_UTT_S, MAX_UTT_S))
        lengths.append(round(min(d, left), 3))
    return lengths


def speech_like(n_samples: int, rng: np.random.Generator, rate: int = SAMPLE_RATE) -> np.ndarray:
    """A voiced-speech caricature, float32 (n_samples,) in [-1, 1]: harmonics of a gliding f0 (90–250 Hz),
    a 4 Hz syllable envelope, and noise."""
    t = np.arange(n_samples) / rate
    f0 = rng.uniform(90, 250) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.2, 1.0) * t))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 2 * np.pi)))
    x = 0.15 * envelope * voiced + 0.01 * rng.standard_normal(n_samples)
    return np.clip(x, -1, 1).astype(np.float32)


def write_corpus(folder: str | Path, total_seconds: float, seed: int) -> list[tuple[Path, float]]:
    """Write LibriSpeech-like 16 kHz FLAC files ``spk/chapter/spk-chapter-NNNN.flac``; returns (path, seconds)."""
    folder = Path(folder) / "1000" / "100"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    files = []
    for n, seconds in enumerate(utterance_lengths(total_seconds, seed)):
        path = folder / f"1000-100-{n:04d}.flac"
        sf.write(path, speech_like(round(seconds * SAMPLE_RATE), rng), SAMPLE_RATE, subtype="PCM_16")
        files.append((path, seconds))
    return files


# ---------------------------------------------------------------------------------------------------- checkpoint
def save_checkpoint(folder: str | Path, seed: int, **config_overrides) -> Path:
    """A randomly initialised HuBERT (HubertConfig() defaults = hubert-base) plus a Wav2Vec2FeatureExtractor
    (16 kHz, do_normalize True as in facebook/hubert-base-ls960's preprocessor_config), saved with save_pretrained."""
    import torch
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = HubertModel(HubertConfig(**config_overrides))
    model.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False).save_pretrained(folder)
    return Path(folder)


# ---------------------------------------------------------------------------------------------------- machine
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile")


def cpu_kind(flags: set[str]) -> str:
    """The CPU kind that decides extraction speed, from /proc/cpuinfo flags (the tables in docs/benchmarks.md)."""
    if "amx_bf16" in flags:
        return "AVX-512 + AMX (native bf16)"
    if "avx512_bf16" in flags:
        return "AVX-512 + AVX512_BF16 (native bf16, no AMX)"
    if "avx512f" in flags:
        return "AVX-512 without bf16 (emulated bf16)"
    if "avx2" in flags:
        return "AVX2 only (no AVX-512, emulated bf16)"
    return "no AVX2"


def machine_info(device: str) -> dict:
    """CPU name and kind, ISA flags, core count, torch version and threads, load average (and the GPU's name)."""
    import torch

    flags = machine.cpu_flags()
    info = {"cpu": machine.cpu_name(), "cpu_kind": cpu_kind(flags), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "python": platform.python_version(), "isa": sorted(flags & set(ISA_FLAGS)),
            "torch_threads": torch.get_num_threads(), "loadavg_start": list(os.getloadavg())}
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


# ---------------------------------------------------------------------------------------------------- timing
def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def matmul_peak(dtype: str, *, n: int = 4096, repeats: int = 5, device: str = "cpu") -> float:
    """Best-of-``repeats`` GFLOP/s of an n×n @ n×n matmul (2·n³ FLOPs) in ``dtype`` with torch's current threads."""
    import torch

    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device, getattr(torch, dtype))
    b = torch.randn(n, n, generator=g).to(device, getattr(torch, dtype))
    a @ b  # warm-up (allocations, kernel selection)
    best = math.inf
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def naive_loop(model_dir: Path, files: list[Path], out_dir: Path, *, dtype: str = "float32",
               device: str = "cpu") -> tuple[float, list[float]]:
    """The baseline: per file soundfile.read → HF feature extractor → ``model(x, output_hidden_states=True)`` →
    ``np.savez`` of every layer as (1, T, D) float32 (the prototype layout, which store.read_features accepts).
    Returns (seconds to load the model, seconds spent on each file; the first includes warm-up)."""
    import torch
    from transformers import AutoFeatureExtractor, AutoModel

    t0 = time.perf_counter()
    model = AutoModel.from_pretrained(model_dir).eval().to(device, getattr(torch, dtype))
    extractor = AutoFeatureExtractor.from_pretrained(model_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    load_s, times = time.perf_counter() - t0, []
    for path in files:
        t0 = time.perf_counter()
        wave, rate = sf.read(path, dtype="float32")
        x = extractor(wave, sampling_rate=rate, return_tensors="pt").input_values
        with torch.inference_mode():
            states = model(x.to(device, getattr(torch, dtype)), output_hidden_states=True).hidden_states
        np.savez(out_dir / f"{path.stem}_features.npz",
                 **{f"layer_{i}": h.float().cpu().numpy() for i, h in enumerate(states)})
        times.append(time.perf_counter() - t0)
    return load_s, times


def model_only(model_dir: Path, waves: list[np.ndarray], *, dtype: str, device: str = "cpu",
               layers: list[int] | None = None) -> list[float]:
    """Seconds per utterance of ``SpeechModel.features`` (contextualized; ``layers``, default all) on decoded audio:
    no file I/O. The first call includes warm-up."""
    from layerwise.model.adapter import SpeechModel

    model = SpeechModel.load(str(model_dir), device=device, dtype=dtype)
    layers = list(range(model.num_layers + 1)) if layers is None else layers
    times = []
    for wave in waves:
        t0 = time.perf_counter()
        model.features(wave, "contextualized", layers)
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


# ---------------------------------------------------------------------------------------------------- agreement
def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of (n, d1) and (n, d2) features, by the project's one CKA (``layerwise.stats.moments.LayerStats``:
    centred columns, ``‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F)``, float64)."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA needs the same number of rows, got {x.shape[0]} and {y.shape[0]}")
    stats = LayerStats(["x", "y"], [x.shape[1], y.shape[1]])
    stats.update({"x": x, "y": y})
    return float(stats.cka()[0, 1])


def max_rel_error(a: np.ndarray, ref: np.ndarray) -> float:
    """``max|a − ref| / max|ref|``: the largest deviation relative to the array's scale."""
    ref = np.asarray(ref, np.float64)
    return float(np.max(np.abs(np.asarray(a, np.float64) - ref)) / max(np.max(np.abs(ref)), 1e-30))


def fro_rel_error(a: np.ndarray, ref: np.ndarray) -> float:
    """``‖a − ref‖_F / ‖ref‖_F``."""
    ref = np.asarray(ref, np.float64)
    return float(np.linalg.norm(np.asarray(a, np.float64) - ref) / max(np.linalg.norm(ref), 1e-30))
