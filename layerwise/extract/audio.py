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

from layerwise.errors import AudioLoadError, DuplicateStemError, UsageError, error_text

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".flac", ".wav")
UNREADABLE = "cannot read directory"  # reason prefix of folders that could not be scanned (failures, not skips)




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


@dataclass
class AudioScan:
    """What a folder scan found: ``files`` (sorted, each real file once) and what was NOT taken, with the reason:
    ``skipped`` maps a reason (``"extension .mp3 not selected"``, ``"hidden file"``, ``"same file as ..."``,
    ``"cannot read directory: ..."``) to the paths, so the run can say how many and why."""

    files: list[Path]
    skipped: dict[str, list[Path]]

    def skipped_summary(self) -> list[str]:
        """One line per reason: ``"3 files: extension .mp3 not selected (e.g. a/x.mp3)"``."""
        return [f"{len(paths)} file(s): {reason} (e.g. {paths[0]})" for reason, paths in sorted(self.skipped.items())]


def decodable_extensions() -> set[str]:
    """Lower-case extensions libsndfile can decode here (``flac``, ``wav``, ``ogg``, ``mp3``, ``aiff`` ...)."""
    known = {name.lower() for name in sf.available_formats()}  # format names double as extensions: WAV, FLAC, OGG
    aliases = {"aiff": ("aif",), "ogg": ("oga", "opus"), "mpeg": ("mp3",)}
    return known | {alias for name, extra in aliases.items() if name in known for alias in extra}


def parse_extensions(spec: str | tuple[str, ...]) -> tuple[str, ...]:
    """``"flac,WAV"`` → ``(".flac", ".wav")``; each must be one libsndfile decodes (:class:`UsageError` if not)."""
    items = spec.split(",") if isinstance(spec, str) else spec
    exts = tuple(sorted({"." + e.strip().lower().lstrip(".") for e in items if e.strip()}))
    known = decodable_extensions()
    unknown = [e for e in exts if e[1:] not in known]
    if not exts or unknown:
        raise UsageError(f"extensions={spec!r}: {unknown or 'none given'} not decodable by libsndfile here; "
                         f"choose from {','.join(sorted(known))}")
    return exts


def find_audio_files(audio_dir: str | Path, extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> AudioScan:
    """Every audio file below ``audio_dir`` with one of ``extensions`` (case-insensitive), sorted.

    Symbolic links to folders are followed (each real folder visited once, so loops end); a file reached twice
    (a link and its target) is taken once. Everything not taken is recorded in :attr:`AudioScan.skipped` with the
    reason: other extensions, hidden files, duplicates, unreadable folders.
    """
    audio_dir = Path(audio_dir)
    if not audio_dir.is_dir():
        raise UsageError(f"audio_dir {audio_dir} does not exist or is not a folder")
    skipped: dict[str, list[Path]] = defaultdict(list)

    def on_error(err: OSError) -> None:
        skipped[f"{UNREADABLE}: {err.strerror or error_text(err)}"].append(Path(err.filename))
        log.warning("%s: cannot read directory: %s", err.filename, err.strerror or error_text(err))

    visited: set[Path] = set()
    seen: dict[Path, Path] = {}
    found: list[Path] = []
    for root, dirs, files in os.walk(audio_dir, onerror=on_error, followlinks=True):
        real_root = Path(root).resolve()
        if real_root in visited:  # a link back to a folder already scanned: do not descend again
            dirs[:] = []
            skipped["folder reached twice through a symbolic link"].append(Path(root))
            continue
        visited.add(real_root)
        dirs.sort()
        for name in files:
            path = Path(root) / name
            ext = os.path.splitext(name)[1].lower()
            if name.startswith("."):
                skipped["hidden file"].append(path)
            elif ext not in extensions:
                skipped[f"extension {ext or '(none)'} not selected (extensions={','.join(e[1:] for e in extensions)})"
                        ].append(path)
            elif (real := path.resolve()) in seen:
                skipped["same file as an earlier path (link)"].append(path)
            else:
                seen[real] = path
                found.append(path)
    return AudioScan(sorted(found), dict(skipped))


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
        raise AudioLoadError(f"cannot decode audio: {error_text(err)}") from err
    if data.shape[0] == 0:
        raise AudioLoadError("file holds no samples")
    channels = data.shape[1]
    samples = data.mean(axis=1, dtype=np.float32) if channels > 1 else data[:, 0]
    if not np.all(np.isfinite(samples)):
        raise AudioLoadError("audio contains NaN or infinite samples")
    if source_rate != sample_rate:
        samples = soxr.resample(samples, source_rate, sample_rate, quality="VHQ").astype(np.float32, copy=False)
    return Waveform(np.ascontiguousarray(samples), sample_rate, int(source_rate), channels)
