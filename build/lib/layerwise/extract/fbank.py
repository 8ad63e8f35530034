"""Log-mel filterbank features as the published layer-wise analyses compute them (Pasad et al., ``extract_fbank.py``).

The acoustic reference for ``cca_mel`` (``measures/alignment_free.py``): per utterance, the waveform is peak-scaled
to 0.999, pre-emphasised (``y[t] = x[t] − 0.97·x[t−1]``), turned into an 80-band mel *magnitude* spectrogram
(librosa, n_fft 2048, hop 160, window 400, fmin 50, power 1) and into dB re 1.0, clipped at ``top_db`` = 80 dB below
the utterance's maximum, then scaled ``dB / 80 + 1`` (values span at most 1). librosa centres frames: frame ``j`` is
the window centred on sample ``160·j``, i.e. samples ``[160·j − 200, 160·j + 200)``. The reference pairs fbank frame
``j`` with model frames as if it started at sample ``160·j`` (no centring offset); that grid, hop and window are
:data:`layerwise.contract.grid.FBANK_GRID`, ``FBANK_HOP`` and ``FBANK_WINDOW`` (12.5 ms earlier than the true window;
docs/analysis.md).
"""

from __future__ import annotations

import numpy as np

from layerwise.contract.grid import FBANK_HOP, FBANK_WINDOW
from layerwise.errors import InputError

SAMPLE_RATE = 16000  # Hz; other rates are resampled first, as the reference's librosa.load(sr=16000)
N_MELS = 80
PREEMPHASIS = 0.97
N_FFT = 2048
FMIN = 50  # Hz
TOP_DB = 80.0
PEAK = 0.999  # the waveform's absolute maximum after scaling


def log_mel(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Log-mel features of one utterance: ndarray (T, 80) float32 with ``T = 1 + n // 160`` (librosa centring).

    samples : ndarray (n,), mono waveform, any float dtype. sample_rate : Hz (resampled to 16 kHz when different).
    Raises ``InputError`` for silent (all-zero) or non-finite audio, which has no peak to scale by.
    """
    import librosa  # deferred: only extraction with --fbank needs it
    from scipy.signal import lfilter

    wav = np.asarray(samples, dtype=np.float32)
    if wav.ndim != 1:
        raise InputError(f"log_mel expects mono samples (n,), got shape {wav.shape}")
    if sample_rate != SAMPLE_RATE:
        wav = librosa.resample(wav, orig_sr=sample_rate, target_sr=SAMPLE_RATE)
    peak = float(np.abs(wav).max()) if wav.size else 0.0
    if not np.isfinite(peak) or peak == 0.0:
        raise InputError("cannot compute filterbanks of silent or non-finite audio (no peak to scale by)")
    wav = wav / peak * PEAK
    mel = librosa.feature.melspectrogram(y=lfilter([1, -PREEMPHASIS], [1], wav), sr=SAMPLE_RATE, n_fft=N_FFT,
                                         n_mels=N_MELS, hop_length=FBANK_HOP, win_length=FBANK_WINDOW, fmin=FMIN,
                                         power=1)
    logmel = librosa.amplitude_to_db(mel, top_db=TOP_DB) / TOP_DB + 1
    return np.ascontiguousarray(logmel.T, dtype=np.float32)
