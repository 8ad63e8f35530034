"""Extraction end to end: outputs equal an independent per-file reference; sharding, resume, bad input, CLI."""

from __future__ import annotations

import csv
import json
import os
import shutil

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from transformers import AutoModel

from layerwise.cli import extract as extract_features
from layerwise.contract import store
from layerwise.extract.options import ExtractionOptions, SpanOptions
from layerwise.extract.run import extract_folder
from tests.conftest import tone, write_textgrid


def run_extraction(*, audio_dir, save_dir, subset_id=0, num_subsets=1, overwrite=False, progress=False,
                   span_options=None, **options):
    """The library entry point with the options object built from keyword arguments."""
    opts = ExtractionOptions(spans=span_options or SpanOptions(), **options)
    return extract_folder(audio_dir, save_dir, opts, subset_id=subset_id, num_subsets=num_subsets,
                          overwrite=overwrite, progress=progress)


def out_folder(save_dir, model_folder, suffix=""):
    """The documented folder rule, written out: the default run's folder; other rep types/spans add a suffix."""
    return save_dir / model_folder.name / f"librispeech_dev-clean_sample1{suffix}"


def reference(model_folder, samples: np.ndarray) -> dict[str, np.ndarray]:
    """Independent reference: HF model on the one utterance, hidden states and hooked CNN block outputs."""
    ref = AutoModel.from_pretrained(model_folder).eval()
    convs = []
    for i, layer in enumerate(ref.feature_extractor.conv_layers):
        layer.register_forward_hook(lambda m, inp, out, i=i: convs.append((f"conv_{i}", out[0].T.numpy().copy())))
    with torch.no_grad():
        out = ref(torch.from_numpy(samples)[None], output_hidden_states=True)
    return {**{f"layer_{i}": h[0].numpy() for i, h in enumerate(out.hidden_states)}, **dict(convs)}


@pytest.mark.parametrize("rep_type", ["contextualized", "local"])
def test_outputs_equal_unbatched_reference(tiny_hubert, audio_dir, tmp_path, rep_type):
    log = run_extraction(audio_dir=audio_dir, save_dir=tmp_path / "out", model_name=str(tiny_hubert),
                         rep_type=rep_type, device="cpu", progress=False)
    assert (log.n_done, log.failures) == (4, [])
    folder = out_folder(tmp_path / "out", tiny_hubert, "" if rep_type == "contextualized" else "_local")
    files = sorted(audio_dir.rglob("*.*"))
    assert sorted(p.name for p in folder.glob("*_features.npz")) == sorted(f"{p.stem}_features.npz" for p in files)
    prefix, count = ("layer", 3) if rep_type == "contextualized" else ("conv", 7)
    for path in files:
        samples, _ = sf.read(path, dtype="float32")
        expected = reference(tiny_hubert, samples)  # tiny_hubert has do_normalize=False
        with np.load(folder / f"{path.stem}_features.npz", allow_pickle=False) as data:
            keys = [k for k in data.files if k.startswith(prefix)]
            assert sorted(keys) == sorted(f"{prefix}_{i}" for i in range(count))
            for key in keys:
                assert data[key].dtype == np.float32 and data[key].ndim == 2
                np.testing.assert_allclose(data[key], expected[key], atol=1e-4, rtol=1e-4)
            meta = json.loads(str(data["meta"]))
        n_frames = (len(samples) - 400) // 320 + 1
        assert meta["n_frames"] == n_frames and meta["duration_s"] == pytest.approx(len(samples) / 16000)
        if rep_type == "contextualized":
            assert expected["layer_0"].shape[0] == n_frames
        assert meta["rep_type"] == rep_type and meta["source_path"] == str(path) and meta["sample_rate"] == 16000


def test_normalisation_is_applied_when_the_checkpoint_asks(tiny_wav2vec2, tmp_path):
    sf.write(tmp_path / "a.wav", tone(9000) * 4, 16000, subtype="FLOAT")
    run_extraction(audio_dir=tmp_path, save_dir=tmp_path / "out", model_name=str(tiny_wav2vec2), device="cpu",
                   progress=False)
    x, _ = sf.read(tmp_path / "a.wav", dtype="float32")
    expected = reference(tiny_wav2vec2, ((x - x.mean()) / np.sqrt(x.var() + 1e-7)).astype(np.float32))
    f = store.read_features(store.feature_path(out_folder(tmp_path / "out", tiny_wav2vec2), "a"))
    assert f.meta["normalize"] is True
    for key, value in f.layers.items():
        np.testing.assert_allclose(value, expected[key], atol=1e-4, rtol=1e-4)


def test_layers_subset_and_float16(tiny_hubert, audio_dir, tmp_path):
    run_extraction(audio_dir=audio_dir, save_dir=tmp_path, model_name=str(tiny_hubert), layers="0,2",
                   save_dtype="float16", device="cpu", progress=False)
    f = store.read_features(next(out_folder(tmp_path, tiny_hubert).glob("*_features.npz")))
    assert list(f.layers) == ["layer_0", "layer_2"] and f.layers["layer_0"].dtype == np.float16
    assert f.meta["layers"] == ["layer_0", "layer_2"]


def test_resampled_stereo_equals_reference_on_soxr_mono(tiny_hubert, tmp_path):
    stereo = tone(44100, rate=44100, channels=2)
    sf.write(tmp_path / "s.wav", stereo, 44100, subtype="FLOAT")
    run_extraction(audio_dir=tmp_path, save_dir=tmp_path / "o", model_name=str(tiny_hubert), device="cpu",
                   progress=False)
    mono = soxr.resample(stereo.mean(axis=1), 44100, 16000, quality="VHQ").astype(np.float32)
    f = store.read_features(store.feature_path(out_folder(tmp_path / "o", tiny_hubert), "s"))
    expected = reference(tiny_hubert, mono)
    np.testing.assert_allclose(f.layers["layer_2"], expected["layer_2"], atol=1e-4, rtol=1e-4)
    assert (f.meta["source_sample_rate"], f.meta["source_channels"]) == (44100, 2)


def test_shards_are_disjoint_and_complete(tiny_hubert, audio_dir, tmp_path):
    for k in range(3):
        log = run_extraction(audio_dir=audio_dir, save_dir=tmp_path, model_name=str(tiny_hubert), subset_id=k,
                             num_subsets=3, device="cpu", progress=False, layers="0")
        assert log.manifest_path.name == f"manifest.shard-{k}-of-3.json"
    folder = out_folder(tmp_path, tiny_hubert)
    shards = [set(json.loads((folder / f"manifest.shard-{k}-of-3.json").read_text())["files"]) for k in range(3)]
    everything = {f"{p.stem}_features.npz" for p in audio_dir.rglob("*.*")}
    assert set().union(*shards) == everything and sum(map(len, shards)) == len(everything)
    assert {p.name for p in folder.glob("*_features.npz")} == everything
    empty = run_extraction(audio_dir=audio_dir, save_dir=tmp_path, model_name="not/loaded", subset_id=7,
                           num_subsets=10, progress=False)  # more shards than files: no model load, no error
    assert (empty.n_done, empty.failures) == (0, [])


def test_resume_skips_and_overwrite_redoes(tiny_hubert, audio_dir, tmp_path):
    kwargs = {"audio_dir": audio_dir, "save_dir": tmp_path, "model_name": str(tiny_hubert), "device": "cpu", "progress": False}
    run_extraction(**kwargs)
    folder = out_folder(tmp_path, tiny_hubert)
    mtimes = {p.name: p.stat().st_mtime_ns for p in folder.glob("*_features.npz")}
    victim = sorted(mtimes)[1]
    (folder / victim).unlink()
    log = run_extraction(**kwargs)
    assert (log.n_done, log.n_skipped) == (1, 3)
    after = {p.name: p.stat().st_mtime_ns for p in folder.glob("*_features.npz")}
    assert all(after[n] == t for n, t in mtimes.items() if n != victim)
    log = run_extraction(**kwargs, overwrite=True)
    assert (log.n_done, log.n_skipped) == (4, 0)
    # Existing outputs from other settings are never silently replaced.
    log = run_extraction(**kwargs, layers="0")
    assert log.n_done == 0 and len(log.failures) == 4 and "--overwrite" in log.failures[0][1]


def test_manifest_records_the_batch_size_which_is_not_identity(tiny_hubert, audio_dir, tmp_path):
    """--batch_size is how a run ran, not what it stores (like --num_threads): a resume with another batch size
    skips the complete files, and each run's manifest records the batch size it ran with (before: not recorded)."""
    options = ExtractionOptions(model_name=str(tiny_hubert), device="cpu", layers="0")
    manifest = options.output_dir(tmp_path) / "manifest.json"
    assert extract_folder(audio_dir, tmp_path, options, batch_size=3).n_done == 4
    assert json.loads(manifest.read_text())["run"]["batch_size"] == 3
    log = extract_folder(audio_dir, tmp_path, options)
    assert (log.n_done, log.n_skipped, log.failures) == (0, 4, [])
    assert json.loads(manifest.read_text())["run"]["batch_size"] == 1


def write_bad_files(folder):
    bad = folder / "bad"
    bad.mkdir(parents=True)
    (bad / "corrupt.flac").write_bytes(np.random.default_rng(0).bytes(5000))
    (bad / "empty.flac").write_bytes(b"")
    (bad / "text.wav").write_text("this is not audio\n")
    sf.write(bad / "short.wav", tone(399), 16000)
    sf.write(bad / "stereo.flac", tone(20000, channels=2), 16000)
    sf.write(bad / "eight.wav", tone(8000, rate=8000), 8000)
    sf.write(bad / "cd.flac", tone(44100, rate=44100, channels=2), 44100)
    (folder / "locked").mkdir()
    sf.write(folder / "locked" / "hidden.wav", tone(8000), 16000)
    return {"corrupt", "empty", "text", "short"}


def test_bad_files_are_listed_and_the_rest_is_done(tiny_hubert, audio_dir, tmp_path, monkeypatch):
    failing = write_bad_files(audio_dir)
    real_scandir = os.scandir

    def scandir(path):  # "locked" behaves as a directory without read permission (root ignores chmod)
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    out = out_folder(tmp_path, tiny_hubert)
    out.mkdir(parents=True)
    good = store.feature_path(out, "19-198-0000")
    good.write_bytes(b"PK\x03\x04 half-written by a crash")
    code = extract_features.main(["--audio_dir", str(audio_dir), "--save_dir", str(tmp_path), "--model_name",
                                  str(tiny_hubert), "--device", "cpu", "--no_progress"])
    assert code == 1
    with open(out / "failures.tsv") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert {r["path"].rsplit("/", 1)[1].split(".")[0] for r in rows} == failing | {"locked"}
    assert all(r["reason"] for r in rows)
    done = {p.name.removesuffix("_features.npz") for p in out.glob("*_features.npz")}
    good_files = [p for p in audio_dir.rglob("*.*") if p.stem not in failing and p.parent.name != "locked"]
    assert done == {p.stem for p in good_files}
    for path in good_files:  # stereo, 8 kHz and 44.1 kHz included: the reference sees 16 kHz mono via soxr
        samples, rate = sf.read(path, dtype="float32", always_2d=True)
        mono = samples.mean(axis=1, dtype=np.float32)
        if rate != 16000:
            mono = soxr.resample(mono, rate, 16000, quality="VHQ").astype(np.float32)
        f = store.read_features(store.feature_path(out, path.stem))
        expected = reference(tiny_hubert, mono)
        for key in ("layer_0", "layer_2"):
            np.testing.assert_allclose(f.layers[key], expected[key], atol=1e-4, rtol=1e-4)
    assert store.read_features(good).layers["layer_0"].shape[0] == 49  # the broken file was recomputed


def test_usage_errors_exit_2(tiny_hubert, audio_dir, tmp_path):
    base = ["--save_dir", str(tmp_path), "--model_name", str(tiny_hubert), "--device", "cpu", "--no_progress"]
    assert extract_features.main(["--audio_dir", str(audio_dir), "--span", "phone", *base]) == 2
    assert extract_features.main(["--audio_dir", str(audio_dir), "--layers", "0,9", *base]) == 2
    shutil.copy(next(audio_dir.rglob("*.flac")), audio_dir / "19-198-0000.wav")  # duplicate stem
    assert extract_features.main(["--audio_dir", str(audio_dir), *base]) == 2
    assert not list(tmp_path.rglob("*_features.npz"))  # reported before any work
    (tmp_path / "empty").mkdir()
    assert extract_features.main(["--audio_dir", str(tmp_path / "empty"), *base]) == 2
    assert extract_features.main(["--audio_dir", str(tmp_path / "missing"), *base]) == 2


def test_list_only_and_slurm_variables(audio_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "0")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    assert extract_features.main(["--audio_dir", str(audio_dir), "--save_dir", str(tmp_path), "--list_only",
                                  "--num_subsets", "2"]) == 0
    listed = capsys.readouterr().out.split()
    assert listed == [str(p) for p in sorted(audio_dir.rglob("*.*"))[1::2]]  # shard 1 of 2: files 1 and 3


def test_word_spans_are_means_of_centre_rule_frames(tiny_hubert, tmp_path):
    n = 32000  # 2 s -> 99 frames, centres (i*320 + 200)/16000
    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio/spk-ch-0001.flac", tone(n), 16000)
    sf.write(tmp_path / "audio/spk-ch-0002.flac", tone(n, seed=3), 16000)  # no alignment: reported, skipped
    words = [(0.0, 0.31, ""), (0.31, 0.72, "hello"), (0.72, 0.735, "a"), (0.735, 1.5, "world"), (1.5, 2.0, "sp")]
    phones = [(0.31, 0.4, "HH"), (0.4, 0.72, "AH0")]
    (tmp_path / "tg/spk").mkdir(parents=True)
    write_textgrid(tmp_path / "tg/spk/spk-ch-0001.TextGrid", {"words": words, "phones": phones}, 2.0)
    log = run_extraction(audio_dir=tmp_path / "audio", save_dir=tmp_path / "out", model_name=str(tiny_hubert),
                         span="word", span_options=SpanOptions(alignment_dir=tmp_path / "tg"), device="cpu",
                         progress=False)
    assert log.n_done == 1 and [p.rsplit("/", 1)[1] for p in log.missing_alignment] == ["spk-ch-0002.flac"]
    samples, _ = sf.read(tmp_path / "audio/spk-ch-0001.flac", dtype="float32")
    frames = reference(tiny_hubert, samples)
    centres = (np.arange(frames["layer_0"].shape[0]) * 320 + 200) / 16000
    f = store.read_features(store.feature_path(out_folder(tmp_path / "out", tiny_hubert, "_word"), "spk-ch-0001"))
    assert f.labels.tolist() == ["hello", "a", "world"]
    np.testing.assert_allclose(f.intervals, [[0.31, 0.72], [0.72, 0.735], [0.735, 1.5]])
    for key in ("layer_0", "layer_2"):
        assert f.layers[key].shape == (3, 32)
        for row, (start, end, _) in enumerate(w for w in words if w[2] not in ("", "sp")):
            inside = np.flatnonzero((centres >= start) & (centres < end))
            if inside.size == 0:  # shorter than a frame: the frame nearest the midpoint
                inside = [np.argmin(np.abs(centres - (start + end) / 2))]
            np.testing.assert_allclose(f.layers[key][row], frames[key][inside].mean(axis=0), atol=1e-4, rtol=1e-4)
    assert f.meta["span"] == "word"


def test_conv_spans_pool_each_block_with_its_own_frame_centres(tiny_hubert, tmp_path):
    """--rep_type local --span word: conv_k is pooled with the centres of blocks 0..k (hop Π strides, field from
    the kernels), written out here from HuBERT's kernels (10,3,3,3,3,2,2) and strides (5,2,2,2,2,2,2)."""
    n = 16000
    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio/spk-ch-0001.flac", tone(n), 16000)
    words = [(0.05, 0.3, "one"), (0.3, 0.3004, "tick"), (0.3004, 0.9, "two")]
    (tmp_path / "tg").mkdir()
    write_textgrid(tmp_path / "tg/spk-ch-0001.TextGrid", {"words": words, "phones": []}, 1.0)
    log = run_extraction(audio_dir=tmp_path / "audio", save_dir=tmp_path / "out", model_name=str(tiny_hubert),
                         rep_type="local", layers="0,3,6", span="word",
                         span_options=SpanOptions(alignment_dir=tmp_path / "tg"), device="cpu", progress=False)
    assert (log.n_done, log.failures) == (1, [])
    samples, _ = sf.read(tmp_path / "audio/spk-ch-0001.flac", dtype="float32")
    frames = reference(tiny_hubert, samples)
    f = store.read_features(store.feature_path(out_folder(tmp_path / "out", tiny_hubert, "_local_word"),
                                               "spk-ch-0001"))
    assert list(f.layers) == ["conv_0", "conv_3", "conv_6"] and f.labels.tolist() == ["one", "tick", "two"]
    for key, hop, field in (("conv_0", 5, 10), ("conv_3", 40, 80), ("conv_6", 320, 400)):
        centres = (np.arange(frames[key].shape[0]) * hop + field / 2) / 16000
        for row, (start, end, _) in enumerate(words):
            inside = np.flatnonzero((centres >= start) & (centres < end))
            if inside.size == 0:
                inside = [np.argmin(np.abs(centres - (start + end) / 2))]
            np.testing.assert_allclose(f.layers[key][row], frames[key][inside].mean(axis=0), atol=1e-4, rtol=1e-4)


def test_fbank_is_stored_beside_the_layers(tiny_hubert, tmp_path):
    """--fbank: key ``fbank`` = the reference's log-mel recipe on the decoded audio, computed here with librosa."""
    import librosa
    from scipy.signal import lfilter

    sf.write(tmp_path / "a.wav", tone(20000), 16000, subtype="FLOAT")
    log = run_extraction(audio_dir=tmp_path, save_dir=tmp_path / "o", model_name=str(tiny_hubert), fbank=True,
                         device="cpu")
    assert log.n_done == 1
    f = store.read_features(store.feature_path(out_folder(tmp_path / "o", tiny_hubert), "a"))
    x, _ = sf.read(tmp_path / "a.wav", dtype="float32")
    x = lfilter([1, -0.97], [1], x / np.abs(x).max() * 0.999)
    mel = librosa.feature.melspectrogram(y=x, sr=16000, n_fft=2048, n_mels=80, hop_length=160, win_length=400,
                                         fmin=50, power=1)
    expected = (librosa.amplitude_to_db(mel, top_db=80.0) / 80.0 + 1).T
    assert f.fbank.shape == (1 + 20000 // 160, 80) and f.meta["fbank"] is True
    np.testing.assert_allclose(f.fbank, expected, atol=1e-5)


def _one_file_with_textgrids(tmp_path, grids: dict) -> tuple:
    """An audio folder with s-c-0001.flac (1.5 s) and an alignment folder holding ``grids`` (file name -> tiers)."""
    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / "s-c-0001.flac", tone(24000), 16000)
    (tmp_path / "al").mkdir()
    for name, tiers in grids.items():
        if tiers is None:
            (tmp_path / "al" / name).write_text("not a TextGrid\n")
        else:
            write_textgrid(tmp_path / "al" / name, tiers, 1.5)
    return tmp_path / "audio", tmp_path / "al"


def _loud(*args, **kwargs):
    raise AssertionError("the checkpoint was described or loaded before the tier was checked")


@pytest.mark.parametrize("first_unreadable", [False, True])
def test_missing_textgrid_tier_is_refused_before_the_model(tiny_hubert, tmp_path, monkeypatch, caplog,
                                                           first_unreadable):
    """--phone_tier nosuchtier with TextGrid alignments: exit 2 naming the tiers the first (readable) TextGrid holds
    (read here with praatio's writer input: words, phones), before the checkpoint is described or loaded. An
    unreadable first TextGrid is that file's own matter; the next one decides."""
    from layerwise.extract import run
    from layerwise.model import adapter

    grids = {"s-c-0001.TextGrid": {"words": [(0.1, 0.5, "a")], "phones": [(0.1, 0.5, "AH")]}}
    if first_unreadable:
        grids["s-c-0000.TextGrid"] = None
    audio, al = _one_file_with_textgrids(tmp_path, grids)
    monkeypatch.setattr(run, "check_settings", _loud)
    monkeypatch.setattr(adapter, "load_base_model", _loud)
    code = extract_features.main(["--audio_dir", str(audio), "--save_dir", str(tmp_path / "o"), "--model_name",
                                  str(tiny_hubert), "--span", "phone", "--alignment_dir", str(al),
                                  "--phone_tier", "nosuchtier", "--device", "cpu", "--no_progress"])
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert code == 2 and len(errors) == 1, caplog.text
    assert "--phone_tier='nosuchtier'" in errors[0] and "['phones', 'words']" in errors[0]
    assert "s-c-0001.TextGrid" in errors[0] and "described or loaded" not in caplog.text


def test_textgrid_tier_present_runs(tiny_hubert, tmp_path):
    """The same folder with the right tier: the phone span is extracted (the check refuses nothing it should not)."""
    audio, al = _one_file_with_textgrids(tmp_path, {"s-c-0001.TextGrid": {"phones": [(0.1, 0.5, "AH0")],
                                                                          "words": [(0.1, 0.5, "a")]}})
    code = extract_features.main(["--audio_dir", str(audio), "--save_dir", str(tmp_path / "o"), "--model_name",
                                  str(tiny_hubert), "--span", "phone", "--alignment_dir", str(al), "--device", "cpu",
                                  "--no_progress"])
    assert code == 0
    assert store.read_features(next((tmp_path / "o").rglob("*_features.npz"))).labels.tolist() == ["AH"]


def test_alignment_dir_with_the_frame_span_is_said_to_be_ignored(tiny_hubert, audio_dir, tmp_path, caplog):
    """--alignment_dir without --span phone|word pools nothing: a warning says so and where alignments are used
    (spans: --span phone|word; ABX: the analysis' --alignment_dir); the frame files are written as without it."""
    (tmp_path / "al").mkdir()
    code = extract_features.main(["--audio_dir", str(audio_dir), "--save_dir", str(tmp_path / "o"), "--model_name",
                                  str(tiny_hubert), "--alignment_dir", str(tmp_path / "al"), "--device", "cpu",
                                  "--no_progress"])
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "alignment_dir" in
                r.getMessage()]
    assert code == 0 and len(warnings) == 1
    assert "ignored" in warnings[0] and "--span phone|word" in warnings[0]
    assert "visualize_features.py --alignment_dir" in warnings[0]
    assert len(list((tmp_path / "o").rglob("*_features.npz"))) == 4


def test_cli_prints_the_whole_message_on_one_line(tiny_hubert, audio_dir, tmp_path, monkeypatch, caplog):
    """A usage error whose message spans lines (a foreign reason inside it) is printed whole, newlines folded
    (errors.error_text): nothing after the first line is lost."""
    from layerwise.errors import UsageError
    from layerwise.extract import run

    def refuse(options):
        raise UsageError("first line:\n(0.1, 0.5, AH0) and\n  (0.3, 0.7, B)")

    monkeypatch.setattr(run, "check_settings", refuse)
    code = extract_features.main(["--audio_dir", str(audio_dir), "--save_dir", str(tmp_path / "o"), "--model_name",
                                  str(tiny_hubert), "--device", "cpu", "--no_progress"])
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert code == 2 and errors == ["first line: (0.1, 0.5, AH0) and (0.3, 0.7, B)"]
