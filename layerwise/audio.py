"""Audio input: find files, decode with soundfile, downmix to mono, resample with soxr.

Knows nothing about models. Every decoding problem surfaces as :class:`AudioLoadError` with the path and a reason.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .errors import InputError, UsageError

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".flac", ".wav")


class AudioLoadError(InputError):
    """An audio file that cannot be decoded (corrupt, empty, not audio, unreadable)."""


class DuplicateStemError(UsageError):
    """Two audio files share a stem, so their feature files would collide."""


@dataclass
class Waveform:
    """A decoded utterance.

    samples : ndarray of shape (n_samples,), float32, mono, at ``sample_rate``.
    source_rate : the file's own rate in Hz; source_channels : its channel count (both before conversion).
    """

    samples: np.ndarray
    sample_rate: int
    source_rate: int
    source_channels: int

    @property
    def duration(self) -> float:
        """Seconds."""
        return len(self.samples) / self.sample_rate


def find_audio_files(audio_dir: str | Path, errors: list[tuple[Path, str]] | None = None) -> list[Path]:
    """Every ``.flac``/``.wav`` below ``audio_dir`` (recursive, case-insensitive extension), sorted, each once.

    Sub-directories that cannot be read are appended to ``errors`` as ``(path, reason)`` (or logged) and skipped,
    so one bad folder does not stop a run. Symlinked duplicates are listed once (by resolved path).
    """
    audio_dir = Path(audio_dir)
    if not audio_dir.is_dir():
        raise FileNotFoundError(f"audio folder not found: {audio_dir}")

    def on_error(err: OSError) -> None:
        reason = f"cannot read directory: {err.strerror or err}"
        if errors is not None:
            errors.append((Path(err.filename), reason))
        log.warning("%s: %s", err.filename, reason)

    seen: set[Path] = set()
    found: list[Path] = []
    for root, dirs, files in os.walk(audio_dir, onerror=on_error, followlinks=False):
        dirs.sort()
        for name in files:
            if name.lower().endswith(AUDIO_EXTENSIONS) and not name.startswith("."):
                path = Path(root) / name
                real = path.resolve()
                if real not in seen:
                    seen.add(real)
                    found.append(path)
    return sorted(found)


def check_unique_stems(paths: list[Path]) -> None:
    """Raise :class:`DuplicateStemError` naming every clash (``a/x.flac`` and ``b/x.wav`` both give ``x``)."""
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for path in paths:
        by_stem[path.stem].append(path)
    clashes = {stem: ps for stem, ps in by_stem.items() if len(ps) > 1}
    if clashes:
        lines = [f"  {stem}: " + ", ".join(str(p) for p in ps) for stem, ps in sorted(clashes.items())]
        raise DuplicateStemError(
            f"{len(clashes)} audio stem(s) occur more than once; outputs are named by stem, so they would overwrite "
            "each other. Rename or move them:\n" + "\n".join(lines[:20])
        )


def load_audio(path: str | Path, sample_rate: int) -> Waveform:
    """Decode ``path``, average channels to mono, resample to ``sample_rate`` Hz with soxr (VHQ).

    Returns float32 samples in [-1, 1] as decoded. Raises :class:`AudioLoadError` on any decoding problem.
    """
    path = Path(path)
    try:
        data, source_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError, TypeError) as err:
        raise AudioLoadError(f"cannot decode audio: {err}") from err
    if data.shape[0] == 0:
        raise AudioLoadError("file holds no samples")
    channels = data.shape[1]
    samples = data.mean(axis=1, dtype=np.float32) if channels > 1 else data[:, 0]
    if not np.all(np.isfinite(samples)):
        raise AudioLoadError("audio contains NaN or infinite samples")
    if source_rate != sample_rate:
        samples = soxr.resample(samples, source_rate, sample_rate, quality="VHQ").astype(np.float32, copy=False)
    return Waveform(np.ascontiguousarray(samples), sample_rate, int(source_rate), channels)
