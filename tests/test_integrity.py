"""No silent wrong results on the extraction side: every path gives the model's exact numbers or says why.

One test per kind of fault, each built from a small input (tiny checkpoint, synthesized audio); expected values come
from transformers / numpy / the file system directly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import AutoModel

from layerwise.cli import extract as cli
from layerwise.contract import layout, store
from layerwise.errors import FeatureFileError
from layerwise.extract import jobs
from layerwise.extract.options import ExtractionOptions, SpanOptions
from layerwise.extract.run import extract_folder
from tests.conftest import ROOT, tone

BASE = ["--device", "cpu", "--no_progress"]


def hidden_states(model_folder, samples: np.ndarray) -> list[np.ndarray]:
    """Independent reference: the HF model on one utterance."""
    model = AutoModel.from_pretrained(model_folder).eval()
    with torch.no_grad():
        return [h[0].numpy() for h in model(torch.from_numpy(samples)[None], output_hidden_states=True).hidden_states]


def default_folder(save_dir, model_folder, suffix=""):
    return save_dir / model_folder.name / f"librispeech_dev-clean_sample1{suffix}"


# ---- 1. a file made with other settings never counts as complete; its manifest is not rewritten ----------------

@pytest.mark.slow
@pytest.mark.parametrize("first, second, differing", [
    (["--normalize", "off"], ["--normalize", "on"], "normalize"),
    ([], ["--dtype", "bfloat16"], "compute_dtype"),
    (["--random_init", "--seed", "1"], ["--random_init", "--seed", "2"], "seed"),
])
def test_other_settings_are_failures_named_and_the_manifest_is_kept(tiny_hubert, audio_dir, tmp_path, first, second,
                                                                    differing):
    args = ["--audio_dir", str(audio_dir), "--save_dir", str(tmp_path), "--model_name", str(tiny_hubert), *BASE]
    assert cli.main(args + first) == 0
    folder = next(tmp_path.glob("*/librispeech_dev-clean_sample1"))
    manifest_before = (folder / "manifest.json").read_bytes()
    files_before = {p.name: p.read_bytes() for p in folder.glob("*_features.npz")}
    failures_before = (folder / "failures.tsv").read_bytes()
    assert cli.main(args + second) == 2  # every file fails (nothing produced), none is "skipped (already complete)"
    assert (folder / "manifest.json").read_bytes() == manifest_before
    assert (folder / "failures.tsv").read_bytes() == failures_before
    assert {p.name: p.read_bytes() for p in folder.glob("*_features.npz")} == files_before
    log = extract_folder(audio_dir, tmp_path, cli.options_from_args(cli.build_parser().parse_args(args + second)))
    assert log.n_skipped == 0 and len(log.failures) == 4
    assert all(differing in reason and "--overwrite" in reason and "--save_dir" in reason
               for _, reason in log.failures)


def test_normalize_on_after_off_gives_the_normalised_reference_with_overwrite(tiny_hubert, tmp_path):
    sf.write(tmp_path / "a.wav", tone(12000) * 3, 16000, subtype="FLOAT")
    args = ["--audio_dir", str(tmp_path), "--save_dir", str(tmp_path / "o"), "--model_name", str(tiny_hubert), *BASE]
    assert cli.main(args + ["--normalize", "off"]) == 0
    assert cli.main(args + ["--normalize", "on", "--overwrite"]) == 0
    x, _ = sf.read(tmp_path / "a.wav", dtype="float32")
    expected = hidden_states(tiny_hubert, ((x - x.mean()) / np.sqrt(x.var() + 1e-7)).astype(np.float32))
    f = store.read_features(store.feature_path(default_folder(tmp_path / "o", tiny_hubert), "a"))
    assert f.meta["normalize"] is True
    np.testing.assert_allclose(f.layers["layer_2"], expected[2], atol=1e-4, rtol=1e-4)
    manifest = json.loads((default_folder(tmp_path / "o", tiny_hubert) / "manifest.json").read_text())
    assert manifest["run"]["normalize"] is True


def test_identity_holds_every_setting_that_changes_numbers(tiny_hubert, tmp_path):
    from layerwise.model.checkpoint import describe

    options = ExtractionOptions(model_name=str(tiny_hubert), layers="0-1", dtype="float16", random_init=True,
                                seed=3, fbank=True)
    identity = options.identity(describe(str(tiny_hubert)))
    assert tuple(identity) == layout.IDENTITY_KEYS
    assert identity["layers"] == ["layer_0", "layer_1"] and identity["compute_dtype"] == "float16"
    assert (identity["seed"], identity["sample_rate"], identity["normalize"]) == (3, 16000, False)


# ---- 2. default output folders never collide; the wrapper analyses only what it extracted ---------------------

def test_each_rep_type_and_span_has_its_own_default_folder(tmp_path):
    rule = {(rep, span): layout.output_folder("out", "org/m", "dev-clean", 1, rep_type=rep, span=span)
            for rep in ("contextualized", "local") for span in ("frame", "phone", "word")}
    assert rule["contextualized", "frame"].as_posix() == "out/m/librispeech_dev-clean_sample1"
    assert rule["local", "word"].as_posix() == "out/m/librispeech_dev-clean_sample1_local_word"
    assert len(set(rule.values())) == 6


def test_print_output_dir_shows_the_rule(capsys):
    assert cli.main(["--rep_type", "local", "--print_output_dir"]) == 0
    assert capsys.readouterr().out.strip() == "output/hubert-base-ls960/librispeech_dev-clean_sample1_local"


def run_wrapper(env, args, cwd):
    env = {**os.environ, "PYTHON": sys.executable, "HF_HUB_OFFLINE": "1", "DEVICE": "cpu", **env}
    return subprocess.run(["bash", str(ROOT / "extract_hubert_features.sh"), *args, "--no_progress"], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.slow
def test_wrapper_does_not_analyse_a_folder_its_extraction_did_not_write(tiny_hubert, audio_dir, tmp_path):
    env = {"AUDIO_DIR": str(audio_dir), "SAVE_DIR": str(tmp_path), "MODEL_NAME": str(tiny_hubert),
           "VIS_DIR": str(tmp_path / "vis")}
    first = run_wrapper({**env, "RUN_VISUALIZE": "0"}, ["--normalize", "off"], tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    second = run_wrapper(env, ["--normalize", "on"], tmp_path)  # refused for every file
    assert second.returncode == 2 and "nothing to analyse" in second.stderr
    assert not (tmp_path / "vis").exists()


# ---- 6. inputs are never dropped in silence ------------------------------------------------------------------

def test_symlinked_folders_are_followed_once_and_skips_are_counted(tmp_path, capsys):
    real = tmp_path / "elsewhere" / "spk2"
    real.mkdir(parents=True)
    sf.write(real / "2-1-0000.flac", tone(8000), 16000)
    audio = tmp_path / "audio"
    (audio / "spk1").mkdir(parents=True)
    sf.write(audio / "spk1" / "1-1-0000.flac", tone(8000), 16000)
    sf.write(audio / "spk1" / "1-1-0001.ogg", tone(8000), 16000, format="OGG")
    (audio / "spk1" / "1-1.trans.txt").write_text("HELLO\n")
    (audio / "spk2").symlink_to(real, target_is_directory=True)
    (audio / "spk1" / "loop").symlink_to(audio, target_is_directory=True)  # a cycle: must end
    assert cli.main(["--audio_dir", str(audio), "--list_only"]) == 0
    listed = capsys.readouterr().out.split()
    assert [os.path.basename(p) for p in listed] == ["1-1-0000.flac", "2-1-0000.flac"]
    scan = jobs.audio.find_audio_files(audio)
    reasons = " | ".join(scan.skipped_summary())
    assert "extension .ogg not selected" in reasons and "extension .txt not selected" in reasons
    assert cli.main(["--audio_dir", str(audio), "--extensions", "flac,ogg", "--list_only"]) == 0
    assert len(capsys.readouterr().out.split()) == 3
    assert cli.main(["--audio_dir", str(audio), "--extensions", "flac,docx", "--list_only"]) == 2


# ---- 7. a query changes no file; stale temporaries go only when no live writer can own them -------------------

def test_queries_write_and_delete_nothing(audio_dir, tmp_path):
    folder = default_folder(tmp_path, type("M", (), {"name": "hubert-base-ls960"}))
    folder.mkdir(parents=True)
    import socket

    tmp = folder / f".19-198-0000_features.npz~{socket.gethostname()}~{os.getpid()}~abc.tmp"
    tmp.write_bytes(b"a live writer's partial file")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    for query in (["--list_only"], ["--print_output_dir"]):
        assert cli.main(["--audio_dir", str(audio_dir), "--save_dir", str(tmp_path), *query]) == 0
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_only_temporaries_without_a_live_writer_are_stale(tmp_path):
    import socket

    host = socket.gethostname()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()  # a pid that has just exited
    target = tmp_path / "u_features.npz"
    live_here = tmp_path / f".u_features.npz~{host}~{os.getpid()}~a.tmp"
    gone_here = tmp_path / f".u_features.npz~{host}~{dead}~b.tmp"
    other_node = tmp_path / f".u_features.npz~another-node~{dead}~c.tmp"
    old_other_node = tmp_path / f".u_features.npz~another-node~{dead}~d.tmp"
    for path in (live_here, gone_here, other_node, old_other_node):
        path.write_bytes(b"")
    hour_ago = time.time() - jobs.STALE_TMP_AGE_S - 10
    os.utime(old_other_node, (hour_ago, hour_ago))
    assert jobs.remove_stale_temporaries(tmp_path, [jobs.Job(tmp_path / "u.flac", target)]) == 2
    assert live_here.exists() and other_node.exists()
    assert not gone_here.exists() and not old_other_node.exists()


# ---- 4. non-finite or damaged outputs are never complete -----------------------------------------------------

def test_non_finite_features_are_refused_and_an_existing_non_finite_file_is_recomputed(tiny_hubert, tmp_path):
    with pytest.raises(FeatureFileError, match="layer_1.*NaN or inf"):
        store.write_features(tmp_path / "x_features.npz", {"layer_1": np.array([[np.nan, 1.0]])}, {})
    assert not (tmp_path / "x_features.npz").exists()
    sf.write(tmp_path / "a.wav", tone(9000), 16000)
    args = ["--audio_dir", str(tmp_path), "--save_dir", str(tmp_path / "o"), "--model_name", str(tiny_hubert), *BASE]
    assert cli.main(args) == 0
    path = store.feature_path(default_folder(tmp_path / "o", tiny_hubert), "a")
    with np.load(path) as data:  # the same identity, but one value became NaN on disk
        payload = {k: data[k] for k in data.files}
    payload["layer_1"] = payload["layer_1"].copy()
    payload["layer_1"][0, 0] = np.nan
    np.savez(path, **payload)
    assert store.resume_state(path, ["layer_0", "layer_1", "layer_2"],
                              layout.identity_of(json.loads(str(payload["meta"]))))[0] == "damaged"
    log = extract_folder(tmp_path, tmp_path / "o", ExtractionOptions(model_name=str(tiny_hubert), device="cpu"))
    assert log.n_done == 1 and np.isfinite(store.read_features(path).layers["layer_1"]).all()


# ---- 10. exit status and messages that do not mislead ---------------------------------------------------------

def test_missing_alignment_dir_is_a_usage_error(audio_dir, tmp_path, caplog):
    code = cli.main(["--audio_dir", str(audio_dir), "--save_dir", str(tmp_path), "--span", "phone",
                     "--alignment_dir", str(tmp_path / "nope"), *BASE])
    err = caplog.text
    assert code == 2 and "alignment_dir" in err and "does not exist" in err
    assert cli.main(["--audio_dir", str(audio_dir), "--save_dir", str(tmp_path), "--span", "word", *BASE]) == 2


def test_bad_layers_fail_before_weights_load_and_complete_folders_load_nothing(tiny_hubert, audio_dir, tmp_path,
                                                                             monkeypatch):
    from layerwise.model import adapter

    args = ["--audio_dir", str(audio_dir), "--save_dir", str(tmp_path), "--model_name", str(tiny_hubert), *BASE]
    assert cli.main(args) == 0

    def no_load(*a, **k):
        raise AssertionError("weights loaded")

    monkeypatch.setattr(adapter.SpeechModel, "load", no_load)
    assert cli.main(args + ["--layers", "0,7"]) == 2  # validated from the config alone
    assert cli.main(args) == 0  # every file complete: nothing to compute, nothing loaded


def test_stop_during_the_last_file_is_not_an_interruption(tiny_hubert, audio_dir, tmp_path):
    import threading

    from layerwise.model.adapter import SpeechModel

    model = SpeechModel.load(str(tiny_hubert), device="cpu")
    stop, calls, real = threading.Event(), [], model.features

    def features(*a, **k):
        calls.append(1)
        if len(calls) == 4:  # the signal arrives while the last file is computed
            stop.set()
        return real(*a, **k)

    model.features = features
    log = extract_folder(audio_dir, tmp_path, ExtractionOptions(model_name=str(tiny_hubert)), model=model, stop=stop)
    assert log.n_done == 4 and not log.was_interrupted


# ---- 11. outputs are atomic; importing the package changes no process state ----------------------------------

def test_importing_the_package_does_not_touch_the_umask(tmp_path):
    probe = ("import os\n"
             "def boom(*a): raise SystemExit('umask changed')\n"
             "os.umask = boom\n"
             "import layerwise, layerwise.contract.store, layerwise.extract.run, layerwise.extract.runlog, layerwise.extract.options\n"
             "from layerwise.contract import store\n"
             "store.write_json_atomic('x.json', {'a': 1})\n"
             "print(oct(os.stat('x.json').st_mode & 0o777))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == oct(0o666 & ~current_umask())


def current_umask() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    return 0o022


def test_failures_file_is_replaced_atomically(tiny_hubert, tmp_path, monkeypatch):
    sf.write(tmp_path / "a.wav", tone(9000), 16000)
    (tmp_path / "bad.wav").write_text("not audio")
    options = ExtractionOptions(model_name=str(tiny_hubert), device="cpu")
    log = extract_folder(tmp_path, tmp_path / "o", options)
    failures = log.failures_path.read_bytes()
    assert b"bad.wav" in failures

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        extract_folder(tmp_path, tmp_path / "o", options, overwrite=True)
    assert log.failures_path.read_bytes() == failures  # the old file is intact, no partial one
    assert not list(log.failures_path.parent.glob(".failures*.tmp"))


def test_span_options_are_part_of_the_identity(tmp_path):
    a = ExtractionOptions(span="phone", spans=SpanOptions(alignment_dir=tmp_path, frame_rule="pasad"))
    b = ExtractionOptions(span="phone", spans=SpanOptions(alignment_dir=tmp_path, frame_rule="centre"))
    info = type("Info", (), {"revision": None, "normalize": False, "sample_rate": 16000,
                             "keys": lambda self, rep: ["layer_0"]})()
    assert layout.identity_diff(a.identity(info), b.identity(info)) == ["span_options"]


# ---- 5. alignments beyond the audio fail the file, never a made-up frame --------------------------------------

def test_alignment_beyond_the_audio_fails_the_file_or_is_dropped_and_counted(tiny_hubert, tmp_path, caplog):
    from tests.conftest import write_textgrid

    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / "s-c-0001.flac", tone(24000), 16000)  # 1.5 s
    phones = [(0.1, 0.5, "AA"), (0.5, 1.4, "B"), (1.6, 2.0, "C"), (2.0, 2.5, "D"), (2.5, 3.0, "E")]
    (tmp_path / "tg").mkdir()
    write_textgrid(tmp_path / "tg" / "s-c-0001.TextGrid", {"phones": phones, "words": []}, 3.0)
    args = ["--audio_dir", str(tmp_path / "audio"), "--save_dir", str(tmp_path / "o"), "--model_name",
            str(tiny_hubert), "--span", "phone", "--alignment_dir", str(tmp_path / "tg"), *BASE]
    assert cli.main(args) == 2  # its only file failed: nothing produced
    err = caplog.text
    assert "'C'" in err and "3.0 s" in err and "1.5 s" in err
    assert not list((tmp_path / "o").rglob("*_features.npz"))
    assert cli.main(args + ["--out_of_range", "drop"]) == 0
    f = store.read_features(next((tmp_path / "o").rglob("*_features.npz")))
    assert f.labels.tolist() == ["AA", "B"] and f.meta["segments_dropped_out_of_range"] == 3
    frames = hidden_states(tiny_hubert, sf.read(tmp_path / "audio" / "s-c-0001.flac", dtype="float32")[0])
    centres = (np.arange(frames[0].shape[0]) * 320 + 200) / 16000
    inside = (centres >= 0.5) & (centres < 1.4)
    np.testing.assert_allclose(f.layers["layer_2"][1], frames[2][inside].mean(axis=0), atol=1e-4, rtol=1e-4)


def rewrite(path, **changes):
    """Rewrite a feature file with some arrays changed (meta left as it is), as damage on disk would."""
    with np.load(path) as data:
        payload = {k: data[k] for k in data.files}
    for key, value in changes.items():
        if value is None:
            payload.pop(key)
        else:
            payload[key] = value
    np.savez(path, **payload)


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["cut", "one_layer_short", "transposed", "float64"])
def test_files_of_the_wrong_form_are_recomputed_not_complete(tiny_hubert, audio_dir, tmp_path, damage):
    args = ["--audio_dir", str(audio_dir), "--save_dir", str(tmp_path), "--model_name", str(tiny_hubert), *BASE]
    assert cli.main(args) == 0
    path = store.feature_path(default_folder(tmp_path, tiny_hubert), "19-198-0001")
    good = store.read_features(path).layers
    layers = {k: v.copy() for k, v in good.items()}
    change = {"cut": {k: v[:10] for k, v in layers.items()}, "one_layer_short": {"layer_1": layers["layer_1"][:-5]},
              "transposed": {"layer_2": layers["layer_2"].T.copy()},
              "float64": {"layer_0": layers["layer_0"].astype(np.float64)}}[damage]
    rewrite(path, **change)
    log = extract_folder(audio_dir, tmp_path, ExtractionOptions(model_name=str(tiny_hubert), device="cpu"))
    assert (log.n_done, log.n_skipped) == (1, 3)
    samples, _ = sf.read(next(audio_dir.rglob("19-198-0001.flac")), dtype="float32")
    expected = hidden_states(tiny_hubert, samples)
    for i, value in enumerate(store.read_features(path).layers.values()):
        np.testing.assert_allclose(value, expected[i], atol=1e-4, rtol=1e-4)


def test_a_refused_run_adds_no_file_beside_another_runs_files(tiny_hubert, audio_dir, tmp_path):
    args = ["--audio_dir", str(audio_dir), "--save_dir", str(tmp_path), "--model_name", str(tiny_hubert), *BASE]
    assert cli.main(args + ["--normalize", "off"]) == 0
    folder = default_folder(tmp_path, tiny_hubert)
    for path in sorted(folder.glob("19-*_features.npz")):
        path.unlink()
    assert cli.main(args + ["--normalize", "on"]) == 2  # every file refused: nothing produced
    metas = {p.name: store.read_features(p).meta["normalize"] for p in folder.glob("*_features.npz")}
    assert set(metas.values()) == {False} and len(metas) == 2  # nothing of the other run was mixed in


def test_overlapping_or_negative_segments_fail_in_every_format(tiny_hubert, tmp_path, caplog):
    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / "s-c-0001.flac", tone(24000), 16000)
    for name, lines in (("overlap", ["s-c-0001 1 0.00 0.10 AH", "s-c-0001 1 0.05 0.30 Z", "s-c-0001 1 0.40 0.2 B"]),
                        ("negative", ["s-c-0001 1 -0.50 0.60 AH", "s-c-0001 1 0.40 0.2 B"])):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "phones.ctm").write_text("\n".join(lines) + "\n")
        code = cli.main(["--audio_dir", str(tmp_path / "audio"), "--save_dir", str(tmp_path / f"o_{name}"),
                         "--model_name", str(tiny_hubert), "--span", "phone", "--alignment_dir", str(folder), *BASE])
        assert code == 2, name  # the only file failed: nothing produced
        assert not list((tmp_path / f"o_{name}").rglob("*_features.npz"))
    assert "overlap" in caplog.text and "starts before 0 s" in caplog.text


def test_checkpoints_of_two_training_runs_get_their_own_folders():
    a = layout.output_folder("out", "runA/checkpoint-1000", "dev-clean", 1)
    b = layout.output_folder("out", "runB/checkpoint-1000", "dev-clean", 1)
    assert a.parent.name == "runA-checkpoint-1000" and a != b


@pytest.mark.parametrize("extra", [["--num_threads", "-2"], ["--random_init", "--seed", "99999999999999999999"],
                                   ["--layers", "2-1"]])
def test_bad_values_are_usage_errors_not_tracebacks(tiny_hubert, audio_dir, tmp_path, extra, capsys):
    args = ["--audio_dir", str(audio_dir), "--save_dir", str(tmp_path), "--model_name", str(tiny_hubert), *BASE]
    try:
        code = cli.main(args + extra)
    except SystemExit as exit_info:  # argparse's own usage errors
        code = exit_info.code
    assert code == 2 and not list(tmp_path.rglob("*_features.npz"))


def test_save_dir_that_is_a_file_is_a_usage_error(tiny_hubert, audio_dir, tmp_path, caplog):
    (tmp_path / "afile").write_text("x")
    code = cli.main(["--audio_dir", str(audio_dir), "--save_dir", str(tmp_path / "afile"), "--model_name",
                     str(tiny_hubert), *BASE])
    assert code == 2 and "cannot create the output folder" in caplog.text


@pytest.mark.parametrize("env, expected", [
    ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "2",
      "SLURM_ARRAY_TASK_COUNT": "3"}, 2),  # array 0-2: task 2 is shard 2 of --num_subsets 3
    ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_MIN": "2", "SLURM_ARRAY_TASK_MAX": "2",
      "SLURM_ARRAY_TASK_COUNT": "1"}, 2),  # its re-run alone (sbatch --array=2): still shard 2 of 3
    ({"SLURM_ARRAY_TASK_ID": "abc"}, None), ({"SLURM_ARRAY_TASK_ID": "abc", "SLURM_ARRAY_TASK_COUNT": "2"}, None),
    ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MAX": "3"}, None),  # array 1-3 for 3 shards: task 3 is none
])
def test_slurm_arrays_and_garbage(audio_dir, tmp_path, monkeypatch, capsys, env, expected):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    files = sorted(audio_dir.rglob("*.*"))
    args = ["--audio_dir", str(audio_dir), "--save_dir", str(tmp_path), "--list_only", "--num_subsets", "3"]
    if expected is None:
        with pytest.raises(SystemExit) as exit_info:
            cli.main(args)
        assert exit_info.value.code == 2
        return
    assert cli.main(args) == 0
    assert capsys.readouterr().out.split() == [str(p) for p in files[expected::3]]


def test_changed_alignments_are_not_complete(tiny_hubert, tmp_path, caplog):
    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / "s-c-0001.flac", tone(24000), 16000)
    (tmp_path / "al").mkdir()
    ctm = tmp_path / "al" / "phones.ctm"
    ctm.write_text("s-c-0001 1 0.10 0.40 AH\ns-c-0001 1 0.50 0.40 K\n")
    args = ["--audio_dir", str(tmp_path / "audio"), "--save_dir", str(tmp_path / "o"), "--model_name",
            str(tiny_hubert), "--span", "phone", "--alignment_dir", str(tmp_path / "al"), *BASE]
    assert cli.main(args) == 0
    ctm.write_text("s-c-0001 1 0.10 0.40 AH\ns-c-0001 1 0.50 0.40 ZH\n")  # the aligner was re-run
    assert cli.main(args) == 2 and "alignment_sha256" in caplog.text and "input changed" in caplog.text
    assert cli.main(args + ["--overwrite"]) == 0
    assert store.read_features(next((tmp_path / "o").rglob("*_features.npz"))).labels.tolist() == ["AH", "ZH"]


# --- issue 22: the extraction/model kinds (1, 7, 8, 9, 12) end to end ------------------------------------------

def test_failure_reason_keeps_the_whole_message(tiny_hubert, tmp_path):
    """Kind 1, the issue's example: praatio's two-line overlap message reaches failures.tsv and the manifest whole
    (newline folded to a space), not cut after "overlap in time:"."""
    from praatio import textgrid as praat_textgrid

    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / "s-c-0001.flac", tone(16000), 16000)
    (tmp_path / "tg").mkdir()
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0", "xmax = 1",
             "tiers? <exists>", "size = 1", "item []:", "    item [1]:", '        class = "IntervalTier"',
             '        name = "phones"', "        xmin = 0", "        xmax = 1", "        intervals: size = 2",
             "        intervals [1]:", "            xmin = 0.1", "            xmax = 0.5", '            text = "AH0"',
             "        intervals [2]:", "            xmin = 0.3", "            xmax = 0.7", '            text = "B"', ""]
    text = "\n".join(lines)
    (tmp_path / "tg" / "s-c-0001.TextGrid").write_text(text)
    with pytest.raises(Exception) as praat:  # what praatio itself says (the independent reference)
        praat_textgrid.openTextgrid(str(tmp_path / "tg" / "s-c-0001.TextGrid"), includeEmptyIntervals=False)
    assert "\n" in str(praat.value)
    code = cli.main(["--audio_dir", str(tmp_path / "audio"), "--save_dir", str(tmp_path / "o"), "--model_name",
                     str(tiny_hubert), "--span", "phone", "--alignment_dir", str(tmp_path / "tg"), *BASE])
    assert code != 0  # the file failed (1 or 2 by the exit-status rule)
    tsv = next((tmp_path / "o").rglob("failures*.tsv")).read_text().splitlines()
    assert len(tsv) == 2  # header + one line: the reason holds no newline
    whole = " ".join(str(praat.value).split())
    assert whole in tsv[1]
    manifest = json.loads(next((tmp_path / "o").rglob("manifest*.json")).read_text())
    assert whole in manifest["failures"][0]["reason"]


def test_ctm_with_a_bom_and_unmatched_ids(tiny_hubert, tmp_path, caplog):
    """Kind 7, the issue's example: a CTM saved with a UTF-8 BOM gives its first utterance every phone (not a
    phantom "\\ufeffs-c-0001"), exit 0; an id that matches no audio file is counted in the log and listed in the
    manifest."""
    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / "s-c-0001.flac", tone(24000), 16000)
    (tmp_path / "al").mkdir()
    rows = "s-c-0001 1 0.10 0.40 AH\ns-c-0001 1 0.50 0.40 K\ns-c-0099 1 0.10 0.20 Z\n"
    (tmp_path / "al" / "phones.ctm").write_bytes(b"\xef\xbb\xbf" + rows.encode())
    code = cli.main(["--audio_dir", str(tmp_path / "audio"), "--save_dir", str(tmp_path / "o"), "--model_name",
                     str(tiny_hubert), "--span", "phone", "--alignment_dir", str(tmp_path / "al"), *BASE])
    assert code == 0
    assert store.read_features(next((tmp_path / "o").rglob("*_features.npz"))).labels.tolist() == ["AH", "K"]
    manifest = json.loads(next((tmp_path / "o").rglob("manifest*.json")).read_text())
    assert manifest["unmatched_alignments"] == ["s-c-0099"]
    assert "1 alignment id(s)" in caplog.text and "s-c-0099" in caplog.text


def test_word_ending_one_frame_after_the_audio_is_kept_end_to_end(tiny_hubert, tmp_path):
    """Kind 9, the issue's example through the extraction: a 4.01 s file, a word ending at 4.03 s (one 20 ms frame
    after it) is kept; one ending at 4.04 s fails the file."""
    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / "s-c-0001.flac", tone(64160), 16000)
    for end, expected in (("0.13", True), ("0.14", False)):  # durations from 3.90 s
        folder = tmp_path / f"al{end}"
        folder.mkdir()
        (folder / "words.ctm").write_text(f"s-c-0001 1 0.50 3.40 a\ns-c-0001 1 3.90 {end} b\n")
        code = cli.main(["--audio_dir", str(tmp_path / "audio"), "--save_dir", str(tmp_path / f"o{end}"),
                         "--model_name", str(tiny_hubert), "--span", "word", "--alignment_dir", str(folder), *BASE])
        assert (code == 0) is expected  # refused: the file failed (exit 1 or 2 by the exit-status rule)


def test_rerun_of_one_slurm_task_is_that_shard(tiny_hubert, audio_dir, tmp_path, monkeypatch):
    """Kind 8, the issue's example: shards 0..2 of 3 run as a job array; task 1 is re-run alone (sbatch --array=1:
    MIN = MAX = 1, COUNT = 1). It is shard 1 of the script's --num_subsets 3 again: exactly shard 1's files
    (i mod 3 == 1 of the sorted list), its own manifest, no unsharded manifest; without --num_subsets it is a
    usage error, never "shard 0 of 1"."""
    args = ["--audio_dir", str(audio_dir), "--save_dir", str(tmp_path / "o"), "--model_name", str(tiny_hubert),
            "--num_subsets", "3", *BASE]
    for task in range(3):
        for key, value in {"ID": task, "MIN": 0, "MAX": 2, "COUNT": 3}.items():
            monkeypatch.setenv(f"SLURM_ARRAY_TASK_{key}", str(value))
        assert cli.main(args) == 0
    folder = next(p.parent for p in (tmp_path / "o").rglob("manifest*.json"))
    for key, value in {"ID": 1, "MIN": 1, "MAX": 1, "COUNT": 1}.items():
        monkeypatch.setenv(f"SLURM_ARRAY_TASK_{key}", str(value))
    assert cli.main(args + ["--overwrite"]) == 0
    manifests = sorted(p.name for p in folder.glob("manifest*.json"))
    assert manifests == [f"manifest.shard-{k}-of-3.json" for k in range(3)]
    rerun = json.loads((folder / "manifest.shard-1-of-3.json").read_text())
    stems = sorted(p.stem for p in audio_dir.rglob("*.*"))
    assert sorted(rerun["files"]) == [f"{s}_features.npz" for s in stems[1::3]]
    assert rerun["counts"]["done"] == len(stems[1::3]) and rerun["shard"] == {"subset_id": 1, "num_subsets": 3}
    with pytest.raises(SystemExit) as exit_info:
        cli.main([a for a in args if a not in ("--num_subsets", "3")])
    assert exit_info.value.code == 2


@pytest.mark.parametrize("extra", [["--layers", "3"], ["--rep_type", "local", "--layers", "7"],
                                   ["--device", "cuda"]])
def test_settings_are_refused_before_weights_or_features_are_read(tiny_hubert, audio_dir, tmp_path, monkeypatch,
                                                                   caplog, extra):
    """Kind 12, the issue's example (a layer the 2-layer config does not have) and its kin: refused (exit 2) before
    any weight byte (load or folder fingerprint) or any existing feature file is read, which here fail loudly."""
    if extra[:2] == ["--device", "cuda"] and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    from layerwise.model import adapter, checkpoint

    def loud(*args, **kwargs):
        raise AssertionError("weights or features were read before the settings were checked")

    folder = tmp_path / "o"
    assert cli.main(["--audio_dir", str(audio_dir), "--save_dir", str(folder), "--model_name", str(tiny_hubert),
                     *BASE]) == 0  # complete files for resume to read
    for target, name in ((checkpoint, "folder_fingerprint"), (checkpoint, "load_base_model"),
                         (adapter, "load_base_model"), (store, "resume_state"), (store, "read_features")):
        monkeypatch.setattr(target, name, loud)
    monkeypatch.setattr("layerwise.model.fingerprint.folder_fingerprint", loud)
    code = cli.main(["--audio_dir", str(audio_dir), "--save_dir", str(folder), "--model_name", str(tiny_hubert),
                     *BASE, *extra])
    assert code == 2 and "weights or features were read" not in caplog.text


def test_missing_tier_of_a_ctm_is_refused_before_the_weights(tiny_hubert, tmp_path, monkeypatch, caplog):
    """Kind 12: a tier that no CTM holds (--span word with only phones.ctm) is a usage error naming the tiers
    present, before the weights load."""
    from layerwise.model import adapter

    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / "s-c-0001.flac", tone(24000), 16000)
    (tmp_path / "al").mkdir()
    (tmp_path / "al" / "phones.ctm").write_text("s-c-0001 1 0.10 0.40 AH\n")
    monkeypatch.setattr(adapter, "load_base_model", lambda *a, **k: (_ for _ in ()).throw(AssertionError("loaded")))
    code = cli.main(["--audio_dir", str(tmp_path / "audio"), "--save_dir", str(tmp_path / "o"), "--model_name",
                     str(tiny_hubert), "--span", "word", "--alignment_dir", str(tmp_path / "al"), *BASE])
    assert code == 2 and "word_tier" in caplog.text and "['phones']" in caplog.text
