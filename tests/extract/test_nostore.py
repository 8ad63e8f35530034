"""extract_features.py --no_store: the forward pass feeds the analysis, shards write partials, --merge finishes.

The reference is the stored path: the same files extracted to disk and analysed in one process. Every number of the
summary (walked recursively) must agree to 1e-9 relative and the same frames must be sampled; shards interleave
(groups of 2 files here), so the group rule and the merge are exercised.
"""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest
import soundfile as sf

from layerwise.analyze import shards, stream
from layerwise.analyze.options import AnalysisOptions
from layerwise.analyze.partial import PartialFeed
from layerwise.analyze.run import compute
from layerwise.contract import store
from layerwise.errors import UsageError
from layerwise.extract.options import ExtractionOptions, SpanOptions
from layerwise.extract.run import extract_folder
from layerwise.report import runcard
from tests.conftest import ROOT, tone, write_textgrid

# Analysis settings shared by both paths: a small sample keeps t-SNE fast; a few replicates test the intervals.
SETTINGS = {"max_points": 20, "n_boot": 2}
GROUP = 2  # files per analysis group in these tests: 7 files -> groups 0..3, shard 0 takes 0 and 2, shard 1 1 and 3
STEMS = [f"{spk}-{ch}-{i:04d}" for spk, ch in ((19, 198), (19, 227), (26, 495), (26, 496)) for i in range(2)][:7]


@pytest.fixture
def corpus(tmp_path):
    """Seven LibriSpeech-named files of 0.5-1.1 s in nested folders, with phone TextGrids."""
    audio, al = tmp_path / "audio", tmp_path / "al"
    al.mkdir()
    for i, stem in enumerate(STEMS):
        n = 8000 + 1500 * ((i * 3) % 7)
        path = audio / stem.split("-")[0] / stem.split("-")[1] / f"{stem}.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, tone(n, seed=i), 16000)
        end = n / 16000
        cuts = np.linspace(0.0, end - 0.01, 7)
        phones = [(float(a), float(b), ("AH0", "S", "T", "IY1", "sil", "N")[(i + j) % 6])
                  for j, (a, b) in enumerate(itertools.pairwise(cuts))]
        write_textgrid(al / f"{stem}.TextGrid", {"phones": phones, "words": [(0.0, end - 0.01, "w")]}, end)
    return audio, al


# Float64 rounding of numbers that cancel: a layer mean of O(1) features that sums to ~1e-9 (layer_0 of a phone
# folder here) keeps only its absolute accuracy, ~1e-17; 1e-12 absolute is far above that and far below any value
# of interest.
ATOL = 1e-12


def walk(a, b, where="summary"):
    """Every number of ``a`` equals ``b``'s to 1e-9 relative (or :data:`ATOL` absolute) (dicts, lists, ints,
    floats, NaN); strings equal."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), (where, set(a) ^ set(b))
        for key in a:
            walk(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple | np.ndarray):
        assert len(a) == len(b), where
        for n, (x, y) in enumerate(zip(a, b)):
            walk(x, y, f"{where}[{n}]")
    elif isinstance(a, float | np.floating) or isinstance(b, float | np.floating):
        assert (np.isnan(a) and np.isnan(b)) or np.isclose(a, b, rtol=1e-9, atol=ATOL), (where, a, b)
    else:
        assert a == b, (where, a, b)


# Keys that name where or how long, not what was measured
NOT_NUMBERS = {"features_dir", "shards", "wall_seconds", "command", "notes"}


def stored_summary(audio, tmp_path, options: ExtractionOptions):
    """Extract-then-analyse, one process: the reference."""
    log = extract_folder(audio, tmp_path / "stored", options)
    assert log.failures == []
    folder = options.output_dir(tmp_path / "stored")
    files = store.list_feature_files(folder)
    result = compute(files, AnalysisOptions(features_dir=folder, output_dir=tmp_path / "a", num_files=0,
                                            control_dir=None, **SETTINGS))
    return result


def no_store_result(audio, tmp_path, options: ExtractionOptions, num_subsets=2):
    out = options.output_dir(tmp_path / "nostore")
    for k in range(num_subsets):
        log = extract_folder(audio, tmp_path / "nostore", options, subset_id=k, num_subsets=num_subsets,
                             sink=PartialFeed(out, k, num_subsets, max_points=SETTINGS["max_points"]))
        assert log.failures == [] and log.partial == shards.partial_path(out, k, num_subsets)
    assert store.list_feature_files(out) == []  # nothing stored
    return shards.merge(AnalysisOptions(features_dir=out, output_dir=out, merge=True, **SETTINGS)), out


@pytest.mark.parametrize("kind", ["frame", "phone", "local"])
def test_no_store_equals_extract_then_analyse(tiny_hubert, corpus, tmp_path, monkeypatch, kind):
    """Frame (with filterbanks, float16 storage: the rounding must happen before the statistics), phone-span and
    rep_type local folders: two interleaved --no_store shards merged equal the stored one-process analysis."""
    monkeypatch.setattr(stream, "GROUP_FILES", GROUP)
    audio, al = corpus
    settings = {"frame": {"fbank": True, "save_dtype": "float16"},
                "phone": {"span": "phone", "spans": SpanOptions(alignment_dir=al)},
                "local": {"rep_type": "local"}}[kind]
    options = ExtractionOptions(model_name=str(tiny_hubert), device="cpu", **settings)
    single = stored_summary(audio, tmp_path, options)
    merged, _ = no_store_result(audio, tmp_path, options)
    a, b = single.summary(), merged.summary()
    walk({k: v for k, v in a.items() if k not in NOT_NUMBERS}, {k: v for k, v in b.items() if k not in NOT_NUMBERS})
    # the same frames sampled (by utterance name), in the same order
    assert list(a["files"]) == sorted(STEMS)
    np.testing.assert_array_equal(single.sample.utterances, merged.sample.utterances)
    np.testing.assert_array_equal(single.sample.frame_index, merged.sample.frame_index)
    if kind == "frame":  # the alignment-free measures come through the merge too
        assert {"cca_mel", "cca_intra", "speaker_probe_accuracy"} <= set(b) and b["cca_mel"]["layer_1"] is not None
    assert shards.NO_STORE_NOTE in merged.notes and merged.no_control == shards.NO_STORE_NOTE


def test_ordinary_analysis_shards_now_merge_the_property_measures(tiny_hubert, corpus, tmp_path, monkeypatch):
    """Bonus of the mergeable property collector: visualize_features.py shards of a stored frame folder merge into
    the alignment-free measures of one process (before: "not computed in sharded runs")."""
    monkeypatch.setattr(stream, "GROUP_FILES", GROUP)
    options = ExtractionOptions(model_name=str(tiny_hubert), device="cpu", fbank=True)
    single = stored_summary(corpus[0], tmp_path, options).summary()
    folder = options.output_dir(tmp_path / "stored")
    common = {"features_dir": folder, "output_dir": tmp_path / "sh", "num_files": 0, "control_dir": None, **SETTINGS}
    files = store.list_feature_files(folder)
    for k in range(3):
        shards.write_partial(files, AnalysisOptions(subset_id=k, num_subsets=3, **common))
    merged = shards.merge(AnalysisOptions(**common, merge=True)).summary()
    assert merged["cca_mel"]["layer_1"] is not None and merged["speaker_probe_accuracy"]
    walk({k: v for k, v in single.items() if k not in NOT_NUMBERS},
         {k: v for k, v in merged.items() if k not in NOT_NUMBERS})


def test_partials_of_different_extractions_are_refused_naming_the_setting(tiny_hubert, corpus, tmp_path,
                                                                          monkeypatch):
    """Shard 0 stored float32, then shard 1 float16 into the same output folder: refused at its start, before the
    model loads, naming save_dtype and the way out; a float16 partial copied in anyway: the merge names it."""
    from layerwise.model.adapter import SpeechModel

    audio, _ = corpus
    first, other = (ExtractionOptions(model_name=str(tiny_hubert), device="cpu", save_dtype=d)
                    for d in ("float32", "float16"))
    out = first.output_dir(tmp_path / "ns")
    extract_folder(audio, tmp_path / "ns", first, subset_id=0, num_subsets=2, sink=PartialFeed(out, 0, 2))

    def no_model(*args, **kwargs):
        raise AssertionError("a refused shard must not load the model")

    with monkeypatch.context() as m:
        m.setattr(SpeechModel, "load", no_model)
        with pytest.raises(UsageError, match=r"partial_0000_of_0002.npz was made with other settings than this "
                                             r"--no_store shard: save_dtype: 'float32' vs 'float16'.*"
                                             r"remove .*partials, or choose another --save_dir"):
            extract_folder(audio, tmp_path / "ns", other, subset_id=1, num_subsets=2, sink=PartialFeed(out, 1, 2))
    assert not shards.partial_path(out, 1, 2).exists()
    elsewhere = other.output_dir(tmp_path / "ns16")
    extract_folder(audio, tmp_path / "ns16", other, subset_id=1, num_subsets=2, sink=PartialFeed(elsewhere, 1, 2))
    shutil.copy(shards.partial_path(elsewhere, 1, 2), shards.partial_path(out, 1, 2))
    with pytest.raises(UsageError, match="save_dtype: 'float16' vs 'float32'"):
        shards.merge(AnalysisOptions(features_dir=out, output_dir=out, merge=True))


def test_other_layers_refused_at_the_start(tiny_hubert, corpus, tmp_path):
    """A --no_store shard with other --layers than the partials already in the folder is refused before it runs,
    naming the layers (before: it ran whole and only the merge refused)."""
    audio, _ = corpus
    one, two = (ExtractionOptions(model_name=str(tiny_hubert), device="cpu", layers=spec) for spec in ("0,1", "all"))
    out = one.output_dir(tmp_path / "ns")
    assert two.output_dir(tmp_path / "ns") == out
    extract_folder(audio, tmp_path / "ns", one, subset_id=1, num_subsets=2, sink=PartialFeed(out, 1, 2))
    with pytest.raises(UsageError, match=r"other settings than this --no_store shard: layers: "):
        extract_folder(audio, tmp_path / "ns", two, subset_id=0, num_subsets=2, sink=PartialFeed(out, 0, 2))
    assert not shards.partial_path(out, 0, 2).exists()


def test_copied_folder_is_the_same_extraction(tiny_hubert, corpus, tmp_path, monkeypatch):
    """cp -r of a two-shard --no_store folder: a complete shard is skipped there, a removed one is redone, and the
    merge of the copy equals the merge of the original (the folder's path is not part of a partial's identity)."""
    monkeypatch.setattr(stream, "GROUP_FILES", GROUP)
    audio, _ = corpus
    options = ExtractionOptions(model_name=str(tiny_hubert), device="cpu")
    original, _ = no_store_result(audio, tmp_path, options)
    shutil.copytree(tmp_path / "nostore", tmp_path / "copy")
    copy = options.output_dir(tmp_path / "copy")
    shards.partial_path(copy, 1, 2).unlink()
    for k in range(2):
        log = extract_folder(audio, tmp_path / "copy", options, subset_id=k, num_subsets=2,
                             sink=PartialFeed(copy, k, 2, max_points=SETTINGS["max_points"]))
        assert (log.n_skipped > 0, log.n_done > 0) == (k == 0, k == 1)
    merged = shards.merge(AnalysisOptions(features_dir=copy, output_dir=copy, merge=True, **SETTINGS)).summary()
    assert merged["features_dir"] == str(copy)
    walk({k: v for k, v in original.summary().items() if k not in NOT_NUMBERS},
         {k: v for k, v in merged.items() if k not in NOT_NUMBERS})


def test_stored_run_into_a_no_store_folder_is_refused(tiny_hubert, corpus, tmp_path):
    """The reverse of the refusal in test_resume_failures_and_refusals: a stored extraction into a folder holding
    a --no_store run's partial names it and the way out (before: accepted, replacing its manifest)."""
    audio, _ = corpus
    options = ExtractionOptions(model_name=str(tiny_hubert), device="cpu", layers="0")
    out = options.output_dir(tmp_path / "ns")
    extract_folder(audio, tmp_path / "ns", options, sink=PartialFeed(out))
    with pytest.raises(UsageError, match=r"holds 1 analysis partial of an extract_features.py --no_store run "
                                         r"\(e.g. .*partial_0000_of_0001.npz\); merge them with "
                                         r"visualize_features.py --merge --output_dir .*another --save_dir"):
        extract_folder(audio, tmp_path / "ns", options)
    assert store.list_feature_files(out) == []


def test_interrupted_shard_says_nothing_is_kept(tiny_hubert, corpus, tmp_path, caplog):
    """A signal before the shard ends: no partial, and the log says so and that a re-run redoes the shard (not
    "files finished before the signal are written")."""
    audio, _ = corpus
    options = ExtractionOptions(model_name=str(tiny_hubert), device="cpu", layers="0")
    out = options.output_dir(tmp_path / "ns")
    stop = threading.Event()
    stop.set()
    with caplog.at_level(logging.WARNING):
        log = extract_folder(audio, tmp_path / "ns", options, sink=PartialFeed(out), stop=stop)
    assert log.was_interrupted and log.partial is None and not shards.partial_path(out, 0, 1).exists()
    assert ("interrupted: no partial was written (a --no_store shard writes its partial only when all its files "
            "are done); a re-run redoes this shard from its first file") in caplog.text
    assert "finished before the signal" not in caplog.text


def test_empty_shard_says_why_and_the_merge_takes_it(tiny_hubert, corpus, tmp_path, monkeypatch, caplog):
    """Seven files in groups of 4 make two groups: shard 2 of 3 is empty, says why (whole groups, file-name order)
    and that nothing is wrong; it writes an empty partial, its manifest and its failures file (before: the partial
    only, so the run card lacked that shard and a stored run was told of too few partials), and the three shards
    merge into all seven files. A missing shard's message names dashed flags."""
    monkeypatch.setattr(stream, "GROUP_FILES", 4)
    audio, _ = corpus
    options = ExtractionOptions(model_name=str(tiny_hubert), device="cpu", layers="0,1")
    out = options.output_dir(tmp_path / "ns")
    for k in (0, 2):
        with caplog.at_level(logging.WARNING):
            extract_folder(audio, tmp_path / "ns", options, subset_id=k, num_subsets=3, sink=PartialFeed(out, k, 3))
    # ceil(7 / 4) = 2 groups, so 2 shards or less leave none empty
    assert (f"shard 2 of 3 holds no files: --no_store shards take whole groups of 4 files in file-name order (group "
            f"g to shard g mod 3) and the 7 selected audio files of {audio} make 2 groups. Nothing is wrong: this "
            f"shard writes its empty partial and the merge takes it; with 7 files, --num_subsets 2 or less gives "
            f"every shard files") in caplog.text
    empty = json.loads((out / "manifest.shard-2-of-3.json").read_text())
    assert empty["no_store"]["partial"] == str(shards.partial_path(out, 2, 3))
    assert (empty["counts"]["files"], empty["counts"]["done"], empty["files"]) == (0, 0, {})
    assert (out / "failures.shard-2-of-3.tsv").read_text() == "path\treason\n"
    with pytest.raises(UsageError, match=r"shards \[1\] of 3 are missing .*\(--subset_id 1 --num_subsets 3 …\)"):
        shards.merge(AnalysisOptions(features_dir=out, output_dir=out, merge=True, max_points=20))
    extract_folder(audio, tmp_path / "ns", options, subset_id=1, num_subsets=3, sink=PartialFeed(out, 1, 3))
    merged = shards.merge(AnalysisOptions(features_dir=out, output_dir=out, merge=True, max_points=20))
    assert list(merged.summary()["files"]) == sorted(STEMS)
    card = dict(runcard.analysis_card(merged, runcard.read_extraction(out)))
    assert "(longest of 3 shards)" in card["Wall time"]
    # every partial in partials/ is counted, also one whose shard left no manifest (an empty shard of before)
    (out / "manifest.shard-2-of-3.json").unlink()
    assert len(list((out / "partials").glob("*.npz"))) == 3
    with pytest.raises(UsageError, match=r"holds 3 analysis partials of an extract_features.py --no_store run"):
        extract_folder(audio, tmp_path / "ns", options)


def test_requeued_complete_shard_keeps_the_manifest_of_the_run_that_wrote_it(tiny_hubert, corpus, tmp_path,
                                                                              monkeypatch):
    """A SLURM requeue of a complete --no_store shard ("0 done, 4 skipped") leaves the manifest of the run that
    wrote its partial byte for byte (before: replaced, so the run card summed 0 s of that shard's audio and took
    the requeue's wall time); the run card says the files were extracted (nothing is written per file)."""
    monkeypatch.setattr(stream, "GROUP_FILES", GROUP)
    audio, _ = corpus
    options = ExtractionOptions(model_name=str(tiny_hubert), device="cpu")
    merged, out = no_store_result(audio, tmp_path, options)
    manifest = out / "manifest.shard-0-of-2.json"
    before = manifest.read_bytes()
    again = extract_folder(audio, tmp_path / "nostore", options, subset_id=0, num_subsets=2,
                           sink=PartialFeed(out, 0, 2, max_points=SETTINGS["max_points"]))
    # shard 0 of 2 takes groups 0 and 2 of the groups of 2 files: 4 of the 7 files
    assert (again.n_done, again.n_skipped, again.failures) == (0, 4, [])
    assert manifest.read_bytes() == before
    assert again.summary_lines()[-1] == (f"{manifest.name} records the run that wrote partial_0000_of_0002.npz: "
                                         f"kept; nothing of this run was recorded there")
    extraction = runcard.read_extraction(out)
    seconds = sum(sf.info(path).duration for path in audio.rglob("*.flac"))
    assert extraction.audio_hours * 3600 == pytest.approx(seconds, rel=1e-9)
    card = dict(runcard.analysis_card(merged, extraction))
    assert "the extraction: 7 of 7 files complete (7 extracted, 0 already complete), 0 failed" in card["Data"]


def test_resume_failures_and_refusals(tiny_hubert, corpus, tmp_path):
    """A failed utterance is logged and left out of the partial (recorded, so a re-run redoes the shard); a
    complete shard is skipped without loading the model; a folder of stored features and ABX at the merge are
    refused."""
    audio, _ = corpus
    sf.write(audio / "19" / "198" / "19-198-0009.flac", tone(200, seed=9), 16000)  # shorter than one frame
    options = ExtractionOptions(model_name=str(tiny_hubert), device="cpu")
    out = options.output_dir(tmp_path / "ns")
    log = extract_folder(audio, tmp_path / "ns", options, sink=PartialFeed(out))
    assert [p.rsplit("/", 1)[-1] for p, _ in log.failures] == ["19-198-0009.flac"]
    header = json.loads(str(np.load(log.partial)["header"]))
    assert header["failed"] == ["19-198-0009"] and "19-198-0009" not in header["files"] and header["no_store"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["no_store"]["partial"] == str(log.partial) and manifest["counts"]["failed"] == 1
    (audio / "19" / "198" / "19-198-0009.flac").unlink()
    redo = extract_folder(audio, tmp_path / "ns", options, sink=PartialFeed(out))  # failed before: redone
    assert (redo.n_done, redo.n_skipped) == (len(STEMS), 0)
    stamp = redo.partial.stat().st_mtime_ns

    def no_model():
        raise AssertionError("a complete shard must not load the model")

    from layerwise.extract import jobs
    from layerwise.extract.run import check_settings, run_extraction
    from layerwise.extract.runlog import RunLog

    feed = PartialFeed(out)
    selection = jobs.select(audio, out, options, 0, 1, group_files=feed.group_files)
    info = check_settings(options)
    assert feed.begin(selection.all_stems, options.identity(info)) is True
    again = run_extraction(no_model, selection.jobs, out, options, info=info, runlog=RunLog(out), sink=feed)
    assert again.n_skipped == len(STEMS) and redo.partial.stat().st_mtime_ns == stamp
    with pytest.raises(UsageError, match="ABX and PNMI need the stored features"):
        shards.merge(AnalysisOptions(features_dir=out, output_dir=out, merge=True, alignment_dir=corpus[1]))
    stored = ExtractionOptions(model_name=str(tiny_hubert), device="cpu", layers="0")
    extract_folder(audio, tmp_path / "ns2", stored)
    with pytest.raises(UsageError, match="stored feature file"):
        extract_folder(audio, tmp_path / "ns2", stored, sink=PartialFeed(stored.output_dir(tmp_path / "ns2")))


def test_help_shows_the_flag_and_write_file_list_is_refused(tmp_path):
    cli = [sys.executable, str(ROOT / "extract_features.py")]
    done = subprocess.run([*cli, "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and "--no_store" in done.stdout and "visualize_features.py --merge" in done.stdout
    done = subprocess.run([*cli, "--no_store", "--write_file_list", str(tmp_path / "l.txt")], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2 and "--write_file_list" in done.stderr
