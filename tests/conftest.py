"""Shared fixtures: tiny checkpoints built with save_pretrained, synthetic audio written with soundfile.

Nothing here touches the network: every model is a small random config saved to a temp folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"  # reference numbers of published code (fixtures/README.md)
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

# Tiny but structurally faithful: 7 conv blocks with HuBERT-base kernels/strides (hop 320, field 400).
TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64, "conv_dim": (16,) * 7,
            "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2}


TRAINED_SEED = 1234  # the "trained" tiny checkpoints; never 0, the default --random_init --seed of the control


def build_tiny(kind: str, seed: int = TRAINED_SEED, **overrides):
    """A tiny random ``kind`` (hubert | wav2vec2 | wavlm) model in eval mode: :data:`TINY` plus ``overrides``
    (e.g. ``do_stable_layer_norm=True``), its weights seeded without touching the session's global RNG."""
    import torch
    from transformers import HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2Model, WavLMConfig, WavLMModel

    config_cls, model_cls = {"hubert": (HubertConfig, HubertModel), "wav2vec2": (Wav2Vec2Config, Wav2Vec2Model),
                             "wavlm": (WavLMConfig, WavLMModel)}[kind]
    extra = {"num_buckets": 16, "max_bucket_distance": 64} if kind == "wavlm" else {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_cls(config_cls(**(TINY | extra | overrides))).eval()


def save_tiny(kind: str, folder: Path, do_normalize: bool, seed: int = TRAINED_SEED, model=None) -> Path:
    """Save a tiny checkpoint (``model``, or :func:`build_tiny` of ``kind``) with its feature extractor.

    Its weights differ from a ``--random_init --seed 0`` control of the same config (seed ≠ 0), so tests comparing
    a model with its control compare two different networks."""
    from transformers import Wav2Vec2FeatureExtractor

    model = build_tiny(kind, seed) if model is None else model
    model.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=do_normalize, return_attention_mask=False).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_hubert(tmp_path_factory) -> Path:
    """HuBERT-base-like (group-norm CNN), pre-trained on unnormalised audio: do_normalize False."""
    return save_tiny("hubert", tmp_path_factory.mktemp("tiny-hubert"), do_normalize=False)


@pytest.fixture(scope="session")
def tiny_wav2vec2(tmp_path_factory) -> Path:
    return save_tiny("wav2vec2", tmp_path_factory.mktemp("tiny-wav2vec2"), do_normalize=True)


@pytest.fixture(scope="session")
def tiny_wavlm(tmp_path_factory) -> Path:
    return save_tiny("wavlm", tmp_path_factory.mktemp("tiny-wavlm"), do_normalize=True)


def tone(n_samples: int, rate: int = 16000, seed: int = 0, channels: int = 1) -> np.ndarray:
    """Speech-like test signal: a few harmonics plus noise, float32 in [-1, 1], shape (n,) or (n, channels)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / rate
    base = sum(np.sin(2 * np.pi * f * t) / (i + 1) for i, f in enumerate((180 + 20 * seed, 440, 1200)))
    x = 0.3 * base / 2 + 0.02 * rng.standard_normal(n_samples)
    if channels > 1:
        x = np.stack([x * (1 - 0.2 * c) for c in range(channels)], axis=1)
    return x.astype(np.float32)


def write_textgrid(path: Path, tiers: dict[str, list[tuple[float, float, str]]], end: float) -> Path:
    """An MFA-like TextGrid written with praatio: tiers name -> (start, end, label) intervals in seconds; intervals
    labelled ``""`` and gaps are left out, so they appear as empty intervals in the file."""
    from praatio import textgrid
    from praatio.data_classes.interval_tier import IntervalTier

    grid = textgrid.Textgrid()
    for name, entries in tiers.items():
        grid.addTier(IntervalTier(name, [e for e in entries if e[2] != ""], 0.0, end))
    grid.save(str(path), format="long_textgrid", includeBlankSpaces=True)
    return Path(path)


@pytest.fixture
def audio_dir(tmp_path) -> Path:
    """Four 16 kHz mono files of different lengths in nested folders (LibriSpeech-like layout)."""
    folder = tmp_path / "audio"
    lengths = {"19/198/19-198-0000.flac": 16000, "19/198/19-198-0001.flac": 23456,
               "26/495/26-495-0000.wav": 9000, "26/495/26-495-0001.flac": 31234}
    for i, (rel, n) in enumerate(sorted(lengths.items())):
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, tone(n, seed=i), 16000)
    return folder


# The audio_dir fixture holds 2 speakers × 2 utterances: too few for a held-out speaker PWCCA (train/dev/test parts
# by utterance), which the analysis names as not produced. Everything else is produced.
FIXTURE_GAPS = {"speaker_pwcca"}


def check_analysis_exit(code: int, summary: dict, allowed=FIXTURE_GAPS) -> None:
    """The README's exit rule for an analysis: 1 when a requested measure was not produced (named under
    ``unavailable``), else 0; only the ``allowed`` measures may be missing."""
    missing = set(summary.get("requested_measures", [])) & set(summary.get("unavailable", {}))
    assert missing <= set(allowed), missing
    assert code == (1 if missing else 0), (code, missing)


def sigterm_surfacing_wrapped(*args, **kwargs):
    """A drawing step hit by SIGTERM whose KeyboardInterrupt comes back wrapped in a RuntimeError, as matplotlib's
    first import wraps one raised in a dataclass ``__set_name__``: the stop must still be the stop."""
    import signal

    try:
        os.kill(os.getpid(), signal.SIGTERM)
    except KeyboardInterrupt as err:
        raise RuntimeError("Error calling __set_name__ on '_AxisMethod' instance") from err
    raise AssertionError("SIGTERM did not raise KeyboardInterrupt (no stop handler installed)")
