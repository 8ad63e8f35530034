"""The bash wrapper end to end: env overrides, pass-through arguments, any working directory, analysis after."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, check_analysis_exit

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
    folder = work / "out" / tiny_hubert.name / "librispeech_test_sample7"
    check_analysis_exit(result.returncode, json.loads(
        (folder.parent / "librispeech_test_sample7_analysis" / "summary.json").read_text()))
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
    # NUM_FILES=2: the two files of speaker 19 — one speaker, two utterances: the speaker measures and the held-out
    # cca_intra are named as not produced (exit 1), everything else is there
    check_analysis_exit(result.returncode, json.loads((tmp_path / "vis" / "summary.json").read_text()),
                        allowed={"cca_intra", "speaker_majority_baseline", "speaker_probe_accuracy", "speaker_pwcca"})
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
    trained = run_wrapper({**env, "COMPARE_DIRS": str(control_dir)}, ["--fbank"], tmp_path)
    assert trained.returncode in (0, 1), trained.stderr[-3000:]  # 1 only if a requested measure is unavailable
    # every stage a person waits for printed its progress bar (stage names; layerwise.contract.progress)
    for stage in ("extracting", "streaming pass (reading)", "PCA + t-SNE", "cca_mel", "speaker_pwcca", "figures",
                  "comparing (cross-folder CKA)"):
        assert f"{stage}:" in trained.stderr, stage
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


def test_wrapper_alignment_dir_gives_abx_per_layer_with_intervals(tiny_hubert, tmp_path):
    """ALIGNMENT_DIR on a frame extraction: the wrapper's analysis builds triphone items from the phone TextGrids of
    a LibriSpeech-style folder and writes the three abx_* keys for every layer, each with its interval."""
    import numpy as np
    import soundfile as sf

    from tests.conftest import tone, write_textgrid

    audio, tg = tmp_path / "LibriSpeech" / "dev-clean", tmp_path / "alignments"
    tg.mkdir()
    for s, speaker in enumerate(("84", "174", "251")):
        for u in range(2):
            stem = f"{speaker}-10-{u:04d}"
            path = audio / speaker / "10" / f"{stem}.flac"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, tone(40000, seed=2 * s + u), 16000)
            rng, t, phones = np.random.default_rng(2 * s + u), 0, []
            while t < 220:  # centiseconds: 24 or so phones of 60–120 ms from three labels, inside the 2.5 s
                dur = int(rng.integers(6, 13))
                phones.append((t / 100, (t + dur) / 100, ("AA1", "B", "S")[int(rng.integers(3))]))
                t += dur
            write_textgrid(tg / f"{stem}.TextGrid", {"phones": phones}, 2.5)
    env = {"AUDIO_DIR": str(audio), "SAVE_DIR": str(tmp_path / "out"), "MODEL_NAME": str(tiny_hubert),
           "DEVICE": "cpu", "ALIGNMENT_DIR": str(tg), "ANALYSIS_ARGS": "--abx_max_size_group 0 --control_dir none"}
    result = run_wrapper(env, ["--no_progress"], tmp_path)
    assert result.returncode in (0, 1), result.stderr[-3000:]  # 1 only if a requested measure is unavailable
    analysis = tmp_path / "out" / tiny_hubert.name / "librispeech_dev-clean_sample1_analysis"
    summary = json.loads((analysis / "summary.json").read_text())
    assert not [k for k in summary["unavailable"] if k.startswith("abx")], summary["unavailable"]
    assert summary["abx_info"]["max_size_group"] is None and (analysis / "abx_triphone.item").exists()
    for key in ("abx_within_speaker_triphone", "abx_across_speaker_triphone", "abx_within_speaker_phoneme"):
        assert set(summary[key]) == set(summary["layers"]) == set(summary[f"{key}_ci"]), key
        for layer, (low, high) in summary[f"{key}_ci"].items():
            assert 0.0 <= low <= high <= 1.0 and 0.0 <= summary[key][layer] <= 1.0
    assert (analysis / "abx.png").exists()


@pytest.mark.slow
def test_wrapper_alignment_dir_and_speakers_txt_give_the_standard_measures(tiny_hubert, tmp_path):
    """Issue 20's done-when through the wrapper: a LibriSpeech-style folder with a phone TextGrid per file and a
    SPEAKERS.TXT beside the split (found without a flag). The analysis writes pnmi, phone_purity, cluster_purity,
    effective_rank and gender_probe_accuracy for every layer, each with its interval, and the label measures with
    their chance level."""
    import numpy as np
    import soundfile as sf

    from tests.conftest import tone, write_textgrid

    root = tmp_path / "LibriSpeech"
    audio, tg = root / "dev-clean", tmp_path / "alignments"
    tg.mkdir()
    speakers = (("84", "F"), ("174", "M"), ("251", "M"), ("422", "F"), ("652", "M"), ("777", "F"))
    (root).mkdir(parents=True)
    (root / "SPEAKERS.TXT").write_text("; ID | SEX | SUBSET | MINUTES | NAME\n" + "".join(
        f"{spk:<5}| {sex} | dev-clean        | 8.02 | Reader {spk}\n" for spk, sex in speakers))
    for s, (speaker, _) in enumerate(speakers):
        for u in range(2):
            stem = f"{speaker}-{10 + u}-{u:04d}"
            path = audio / speaker / str(10 + u) / f"{stem}.flac"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, tone(40000, seed=2 * s + u), 16000)
            rng, t, phones = np.random.default_rng(2 * s + u), 0, []
            while t < 220:  # centiseconds: phones of 60–120 ms from three labels, inside the 2.5 s
                dur = int(rng.integers(6, 13))
                phones.append((t / 100, (t + dur) / 100, ("AA1", "B", "S")[int(rng.integers(3))]))
                t += dur
            write_textgrid(tg / f"{stem}.TextGrid", {"phones": phones}, 2.5)
    env = {"AUDIO_DIR": str(audio), "SAVE_DIR": str(tmp_path / "out"), "MODEL_NAME": str(tiny_hubert),
           "DEVICE": "cpu", "ALIGNMENT_DIR": str(tg), "NUM_FILES": "0",
           "ANALYSIS_ARGS": "--pnmi_clusters 8 --abx_max_size_group 0 --control_dir none"}
    result = run_wrapper(env, ["--no_progress"], tmp_path)
    assert result.returncode in (0, 1), result.stderr[-3000:]
    analysis = next((tmp_path / "out" / tiny_hubert.name).glob("*_analysis"))
    summary = json.loads((analysis / "summary.json").read_text())
    layers = set(summary["layers"])
    for key in ("pnmi", "phone_purity", "cluster_purity", "gender_probe_accuracy", "effective_rank"):
        assert set(summary[key]) == layers == set(summary[f"{key}_ci"]), (key, summary.get("reasons", {}).get(key))
        for layer, (low, high) in summary[f"{key}_ci"].items():
            assert low <= summary[key][layer] <= high, (key, layer)
    for key in ("pnmi", "phone_purity", "cluster_purity", "gender_probe_accuracy"):
        assert set(summary[f"{key}_chance"]) == layers, key
    for key in ("pnmi", "phone_purity", "cluster_purity"):
        assert all(0.0 <= v <= 1.0 for v in summary[key].values()), key
    assert summary["gender_probe_info"]["n_speakers"] == len(speakers), summary["gender_probe_info"]
    # issue 19: every per-layer measure of the registry (and every per-layer statistic) has its interval
    from layerwise.contract.layout import MEASURES

    statistics = ("mean", "std", "effective_rank", "pca_components_90", "cka_with_previous")
    per_layer = [m.key for m in MEASURES if not m.key.endswith("majority_baseline")] + list(statistics)
    written = [key for key in per_layer if isinstance(summary.get(key), dict)]
    assert {"cca_intra", "speaker_probe_accuracy", "pnmi", "abx_within_speaker_triphone",
            *statistics} <= set(written), written  # no --fbank here: no cca_mel
    for key in written:
        defined = {layer for layer, value in summary[key].items() if value is not None}
        assert defined and defined <= set(summary[f"{key}_ci"]), (key, summary.get(f"{key}_ci"))
        for layer in defined:
            low, high = summary[f"{key}_ci"][layer]
            assert low <= high, (key, layer, low, high)


@pytest.mark.parametrize("when", ["extracting", "analysing"])
def test_wrapper_sigterm_stops_the_running_step_and_exits_130(tiny_hubert, audio_dir, tmp_path, when):
    """`kill PID` of the wrapper alone (not its group): the step running gets the signal and stops cleanly, no later
    step runs, the wrapper exits 130, and no process of its group is left running."""
    import signal
    import time

    env = {**os.environ, "PYTHON": sys.executable, "HF_HUB_OFFLINE": "1", "AUDIO_DIR": str(audio_dir),
           "SAVE_DIR": str(tmp_path / "out"), "MODEL_NAME": str(tiny_hubert), "DEVICE": "cpu",
           "VIS_DIR": str(tmp_path / "vis")}
    wrapper = subprocess.Popen(["bash", str(ROOT / "extract_hubert_features.sh"), "--no_progress"], cwd=tmp_path,
                               env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    marker = "[wrapper] extracting" if when == "extracting" else "streaming pass"
    seen = []
    for line in wrapper.stderr:  # wait until the step of interest runs
        seen.append(line)
        if marker in line:
            break
    wrapper.send_signal(signal.SIGTERM)
    rest = wrapper.stderr.read()
    assert wrapper.wait(timeout=120) == 130, "".join(seen) + rest
    assert "[wrapper] stopped by SIGTERM; no later step was run" in rest
    if when == "extracting":
        assert not (tmp_path / "vis").exists()  # the analysis never started
    else:
        assert "terminated (SIGTERM):" in rest and "Traceback" not in rest
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the group empties: no step outlives the wrapper
        try:
            os.killpg(wrapper.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("a process of the wrapper's group is still running after the wrapper exited")
