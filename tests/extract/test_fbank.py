"""fbank.log_mel against librosa and scipy called directly with the reference's settings."""

import librosa
import numpy as np
import pytest
import scipy.signal

from layerwise.contract.grid import FBANK_GRID, Grid, pool_plan
from layerwise.errors import InputError
from layerwise.extract import fbank
from tests.conftest import tone


def reference_log_mel(wav, sr=16000):
    """The published code's steps, spelled out with the libraries: peak 0.999, pre-emphasis 0.97, 80 mel
    magnitudes (n_fft 2048, hop 160, window 400, fmin 50), dB with top_db 80, / 80 + 1."""
    wav = wav / np.abs(wav).max() * 0.999
    mel = librosa.feature.melspectrogram(y=scipy.signal.lfilter([1, -0.97], [1], wav), sr=sr, n_fft=2048,
                                         n_mels=80, hop_length=160, win_length=400, fmin=50, power=1)
    return (librosa.amplitude_to_db(mel, top_db=80) / 80 + 1).T


@pytest.mark.slow
def test_log_mel_equals_the_reference_steps():
    wav = tone(23456, seed=2).astype(np.float32) * 0.3
    got = fbank.log_mel(wav, 16000)
    expected = reference_log_mel(wav)
    assert got.shape == (1 + 23456 // 160, 80) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert got.max() - got.min() <= 1.0 + 1e-6  # top_db 80: at most 80 dB below the utterance's maximum
    # gain does not matter (peak scaling); other sample rates are resampled to 16 kHz first
    np.testing.assert_allclose(fbank.log_mel(wav * 7, 16000), got, atol=1e-5)
    resampled = fbank.log_mel(librosa.resample(wav, orig_sr=16000, target_sr=8000), 8000)
    assert resampled.shape[1] == 80 and abs(resampled.shape[0] - got.shape[0]) <= 1


def test_grid_reproduces_the_reference_pooling_table():
    """HuBERT conv blocks onto the fbank grid: the reference's 79/32, 39/16, 19/8, 9/4, 4/2, 2/1; the 20 ms grid
    takes every other fbank frame (kernel 1, stride 2)."""
    kernels, strides = (10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2)
    hop, field, plans = 1, 1, []
    for k, s in zip(kernels, strides):
        field, hop = field + (k - 1) * hop, hop * s
        plans.append((hop, field))
    conv = [pool_plan(Grid(h, f), FBANK_GRID) for h, f in plans[:6]]
    assert conv == [(79, 32), (39, 16), (19, 8), (9, 4), (4, 2), (2, 1)]
    assert pool_plan(FBANK_GRID, Grid(*plans[6])) == (1, 2)


def test_silent_audio_is_an_input_error():
    with pytest.raises(InputError, match="silent"):
        fbank.log_mel(np.zeros(1600, np.float32), 16000)
