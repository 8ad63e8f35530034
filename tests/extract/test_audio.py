"""Audio discovery and decoding against direct soundfile/soxr/numpy computations."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf
import soxr

from layerwise.errors import AudioLoadError, DuplicateStemError
from layerwise.extract import audio
from tests.conftest import tone


def test_find_audio_files_sorted_recursive_unique(tmp_path):
    for rel in ("b/2.flac", "a/1.wav", "a/x/3.FLAC", "c/notes.txt", "a/.hidden.flac"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    os.symlink(tmp_path / "b/2.flac", tmp_path / "c/link.flac")  # same file twice: listed once
    scan = audio.find_audio_files(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in scan.files] == ["a/1.wav", "a/x/3.FLAC", "b/2.flac"]
    assert {reason.split(" (")[0]: len(paths) for reason, paths in scan.skipped.items()} == {
        "hidden file": 1, "extension .txt not selected": 1, "same file as an earlier path": 1}


def test_unreadable_subdirectory_is_reported(tmp_path, monkeypatch):
    (tmp_path / "ok").mkdir()
    sf.write(tmp_path / "ok/a.wav", tone(1000), 16000)
    locked = tmp_path / "locked"
    locked.mkdir()
    sf.write(locked / "b.wav", tone(1000), 16000)
    real_scandir = os.scandir

    def scandir(path):  # what os.walk sees for a directory without read permission (root ignores chmod)
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(locked))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    scan = audio.find_audio_files(tmp_path)
    assert [p.name for p in scan.files] == ["a.wav"]
    assert scan.skipped == {"cannot read directory: Permission denied": [locked]}


def test_duplicate_stems_are_an_error(tmp_path):
    paths = [tmp_path / "a/x.flac", tmp_path / "b/x.wav", tmp_path / "b/y.wav"]
    with pytest.raises(DuplicateStemError, match="x: "):
        audio.check_unique_stems(paths)
    audio.check_unique_stems(paths[1:])


def test_stereo_is_averaged_to_mono(tmp_path):
    x = tone(5000, channels=2)
    sf.write(tmp_path / "s.wav", x, 16000, subtype="FLOAT")
    wave = audio.load_audio(tmp_path / "s.wav", 16000)
    assert wave.source_channels == 2 and wave.samples.ndim == 1
    np.testing.assert_allclose(wave.samples, x.mean(axis=1), atol=1e-7)


@pytest.mark.parametrize("rate", [8000, 44100])
def test_other_rates_are_resampled_with_soxr(tmp_path, rate):
    x = tone(rate, rate=rate)  # one second
    sf.write(tmp_path / "r.wav", x, rate, subtype="FLOAT")
    wave = audio.load_audio(tmp_path / "r.wav", 16000)
    assert wave.source_rate == rate and wave.sample_rate == 16000
    assert abs(len(wave.samples) - 16000) <= 1
    np.testing.assert_allclose(wave.samples, soxr.resample(x, rate, 16000, quality="VHQ"), atol=1e-6)


@pytest.mark.parametrize("content", [b"", b"\x00" * 10, os.urandom(4096), b"fLaC" + os.urandom(2000), b"hello, I am text"])
def test_undecodable_input_raises_audio_load_error(tmp_path, content):
    path = tmp_path / "bad.flac"
    path.write_bytes(content)
    with pytest.raises(AudioLoadError):
        audio.load_audio(path, 16000)


def test_header_only_wav_is_empty(tmp_path):
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioLoadError, match="no samples"):
        audio.load_audio(tmp_path / "empty.wav", 16000)
