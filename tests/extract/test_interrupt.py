"""Interruption with real subprocesses: SIGINT stops cleanly, SIGKILL never leaves a truncated feature file."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from layerwise.contract import store
from tests.conftest import ROOT, tone

pytestmark = pytest.mark.slow  # end-to-end: subprocess runs of the CLIs / the wrapper

N_FILES = 24


def make_audio(folder):
    for i in range(N_FILES):
        sf.write(folder / f"utt-{i:03d}.flac", tone(24000 + 1601 * i, seed=i), 16000)


def start(audio, save_dir, model):
    cmd = [sys.executable, str(ROOT / "extract_features.py"), "--audio_dir", str(audio), "--save_dir", str(save_dir),
           "--model_name", str(model), "--device", "cpu", "--rep_type", "local", "--no_progress"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_outputs(folder, proc, n=1, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if folder.is_dir() and len(list(folder.glob("*_features.npz"))) >= n:
            return
        time.sleep(0.005)


def run_to_end(audio, save_dir, model):
    proc = start(audio, save_dir, model)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    return out


def started_run(tiny_hubert, tmp_path):
    """(audio folder, features folder, the extraction process once its first file is written)."""
    audio = tmp_path / "audio"
    audio.mkdir()
    make_audio(audio)
    folder = tmp_path / "out" / tiny_hubert.name / "librispeech_dev-clean_sample1_local"
    proc = start(audio, tmp_path / "out", tiny_hubert)
    wait_for_outputs(folder, proc)
    return audio, folder, proc


def test_sigint_finishes_cleanly_and_resumes(tiny_hubert, tmp_path):
    audio, folder, proc = started_run(tiny_hubert, tmp_path)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    done = list(folder.glob("*_features.npz"))
    assert 1 <= len(done) < N_FILES
    assert f"{N_FILES - len(done)} file(s) left for a re-run" in out  # every file not written, not just the queue
    assert not list(folder.glob(".*.tmp"))
    for path in done:
        assert store.read_features(path).layers.keys() == {f"conv_{i}" for i in range(7)}
    out = run_to_end(audio, tmp_path / "out", tiny_hubert)
    assert f"{len(done)} skipped (already complete)" in out
    assert len(list(folder.glob("*_features.npz"))) == N_FILES


def test_sigkill_at_any_moment_leaves_no_truncated_file(tiny_hubert, tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    make_audio(audio)
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    folder = killed / tiny_hubert.name / "librispeech_dev-clean_sample1_local"
    rng = np.random.default_rng(0)
    for attempt in range(3):
        proc = start(audio, killed, tiny_hubert)
        wait_for_outputs(folder, proc, n=1 + 6 * attempt)
        time.sleep(rng.uniform(0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        for path in folder.glob("*_features.npz"):  # every visible feature file is whole
            store.read_features(path)
    assert len(list(folder.glob("*_features.npz"))) < N_FILES
    run_to_end(audio, killed, tiny_hubert)
    run_to_end(audio, clean, tiny_hubert)
    reference = clean / tiny_hubert.name / "librispeech_dev-clean_sample1_local"
    assert not list(folder.glob(".*.tmp"))
    names = sorted(p.name for p in reference.glob("*_features.npz"))
    assert names == sorted(p.name for p in folder.glob("*_features.npz")) and len(names) == N_FILES
    for name in names:
        a, b = store.read_features(folder / name), store.read_features(reference / name)
        for key in a.layers:
            np.testing.assert_array_equal(a.layers[key], b.layers[key])


def test_a_copy_of_the_stop_signal_is_the_same_stop(tiny_hubert, tmp_path):
    """Ctrl-C and a SIGTERM at once (a terminal signals the group and the wrapper forwards its own): one clean stop
    with its manifest, not the abort a second Ctrl-C asks for (cli/common.SAME_STOP_SECONDS)."""
    _, folder, proc = started_run(tiny_hubert, tmp_path)
    proc.send_signal(signal.SIGINT)  # Ctrl-C reaches the whole group ...
    proc.send_signal(signal.SIGTERM)  # ... and the wrapper forwards its own as SIGTERM
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert out.count("finishing the current file, then stopping") == 1 and "aborted" not in out
    assert "FAILED" not in out and "Error" not in out  # the copy is no failure of the file in progress
    assert (folder / "manifest.json").is_file() and "file(s) left for a re-run" in out
