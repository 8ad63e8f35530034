"""The bash wrapper end to end: env overrides, pass-through arguments, any working directory, analysis after."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # end-to-end: subprocess runs of the CLIs / the wrapper


def run_wrapper(env_overrides, args, cwd):
    env = {**os.environ, "PYTHON": sys.executable, "HF_HUB_OFFLINE": "1", **env_overrides}
    return subprocess.run(["bash", str(ROOT / "extract_hubert_features.sh"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_wrapper_end_to_end_from_another_directory(tiny_hubert, audio_dir, tmp_path):
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {"AUDIO_DIR": str(audio_dir), "SAVE_DIR": "out", "MODEL_NAME": str(tiny_hubert), "DATASET_SPLIT": "test",
           "DATA_SAMPLE": "7", "LAYERS": "0,2", "DEVICE": "cpu", "DTYPE": "float32", "NUM_FILES": "0"}
    result = run_wrapper(env, ["--save_dtype", "float16", "--no_progress"], work)
    assert result.returncode == 0, result.stderr[-3000:]
    folder = work / "out" / tiny_hubert.name / "librispeech_test_sample7"
    files = sorted(folder.glob("*_features.npz"))
    assert len(files) == 4
    meta = json.loads((folder / "manifest.json").read_text())["run"]
    assert meta["layers"] == ["layer_0", "layer_2"] and meta["save_dtype"] == "float16"
    summary = json.loads((folder.parent / "librispeech_test_sample7_analysis" / "summary.json").read_text())
    assert summary["layers"] == ["layer_0", "layer_2"] and len(summary["files"]) == 4
    assert f"report: out/{tiny_hubert.name}/librispeech_test_sample7_analysis/report.html" in result.stderr


def test_wrapper_missing_audio_without_download_is_a_usage_error(tmp_path):
    result = run_wrapper({"AUDIO_DIR": str(tmp_path / "nope"), "DOWNLOAD_SPLIT": ""}, [], tmp_path)
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_wrapper_passes_usage_errors_through(tiny_hubert, audio_dir, tmp_path):
    env = {"AUDIO_DIR": str(audio_dir), "SAVE_DIR": str(tmp_path), "MODEL_NAME": str(tiny_hubert), "DEVICE": "cpu"}
    result = run_wrapper(env, ["--layers", "0,99"], tmp_path)
    assert result.returncode == 2 and "layers: 0,99" not in result.stderr and "99" in result.stderr
    assert "not in [0, 2]" in result.stderr
    assert not list(tmp_path.rglob("*_analysis"))  # no analysis after a usage error


def test_wrapper_analyses_the_folder_that_extra_arguments_select(tiny_hubert, audio_dir, tmp_path):
    env = {"AUDIO_DIR": str(audio_dir), "SAVE_DIR": str(tmp_path / "ignored"), "MODEL_NAME": str(tiny_hubert),
           "DEVICE": "cpu", "VIS_DIR": str(tmp_path / "vis"), "NUM_FILES": "2"}
    result = run_wrapper(env, ["--save_dir", str(tmp_path / "real"), "--random_init", "--no_progress"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    folder = tmp_path / "real" / f"{tiny_hubert.name}-random_init" / "librispeech_dev-clean_sample1"
    assert len(list(folder.glob("*_features.npz"))) == 4 and not (tmp_path / "ignored").exists()
    summary = json.loads((tmp_path / "vis" / "summary.json").read_text())
    assert summary["features_dir"] == str(folder) and len(summary["files"]) == 2


def test_wrapper_help_explains_and_runs_nothing(tmp_path):
    result = run_wrapper({}, ["--help"], tmp_path)  # the default AUDIO_DIR is missing here: no download either
    assert result.returncode == 0 and "AUDIO_DIR" in result.stdout and "--rep_type" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_wrapper_frame_run_with_fbank_control_local_and_comparison(tiny_hubert, tmp_path):
    """The alignment-free measures end to end: a --random_init control and a trained run with --fbank give the
    'what each layer encodes' figure and every measure key (trained and random_init); REP_TYPE=local runs end to end
    into its own folder; COMPARE_DIRS compares the new folder with the control."""
    import soundfile as sf

    from tests.conftest import tone

    audio = tmp_path / "LibriSpeech" / "dev-clean"
    for s, speaker in enumerate(("84", "174", "251")):
        for u in range(3):
            path = audio / speaker / "10" / f"{speaker}-10-{u:04d}.flac"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, tone(16000 + 2000 * u, seed=3 * s + u), 16000)
    env = {"AUDIO_DIR": str(audio), "SAVE_DIR": str(tmp_path / "out"), "MODEL_NAME": str(tiny_hubert), "DEVICE": "cpu"}
    control = run_wrapper({**env, "RUN_VISUALIZE": "0"}, ["--fbank", "--random_init", "--no_progress"], tmp_path)
    assert control.returncode == 0, control.stderr[-3000:]
    control_dir = tmp_path / "out" / f"{tiny_hubert.name}-random_init" / "librispeech_dev-clean_sample1"
    trained = run_wrapper({**env, "COMPARE_DIRS": str(control_dir)}, ["--fbank", "--no_progress"], tmp_path)
    assert trained.returncode in (0, 1), trained.stderr[-3000:]  # 1 only if a requested measure is unavailable
    folder = tmp_path / "out" / tiny_hubert.name / "librispeech_dev-clean_sample1"
    analysis = folder.parent / (folder.name + "_analysis")
    summary = json.loads((analysis / "summary.json").read_text())
    measures = ("cca_mel", "cca_intra", "speaker_probe_accuracy", "speaker_majority_baseline", "speaker_pwcca")
    for key in measures:
        assert key in summary or key in summary.get("unavailable", {}), key
        assert key in summary["random_init"] or f"random_init.{key}" in summary.get("unavailable", {}) \
            or key in summary["random_init"].get("unavailable", {}), key
    assert set(summary["cca_mel"]) == set(summary["layers"]) and (analysis / "what_each_layer_encodes.png").exists()
    compared = json.loads((folder.parent / (folder.name + "_compare") / "summary.json").read_text())
    assert len(compared["cka_between"]) == 1
    local = run_wrapper({**env, "REP_TYPE": "local"}, ["--no_progress"], tmp_path)
    assert local.returncode == 0, local.stderr[-3000:]
    local_summary = json.loads((folder.parent / (folder.name + "_local_analysis") / "summary.json").read_text())
    assert local_summary["layers"] == [f"conv_{i}" for i in range(7)]
