"""Issue 22, reviewer's round: validation before the streaming pass (analyze/preflight.py), unmatched alignment ids
in the ABX info, remedies that name another setting than the file's, and messages kept whole (error_text)."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess

import numpy as np
import pytest

from layerwise.analyze import spans, stream
from layerwise.analyze.run import run_analysis
from layerwise.contract import store
from layerwise.errors import AnalysisError, InputError, ItemFileError, LayerwiseError, UsageError
from tests.analyze.test_abx import STEMS, write_corpus
from tests.analyze.test_shards import CLI
from tests.conftest import write_textgrid


@pytest.fixture
def no_pass(monkeypatch):
    """Any streaming pass fails the test: what the preflight refuses must be refused before it."""
    def refuse(*args, **kwargs):
        raise AssertionError("the streaming pass was reached")
    monkeypatch.setattr(stream, "collect", refuse)


def analyse(folder, out, **settings):
    return run_analysis(**{"features_dir": folder, "output_dir": out, "num_files": 0, "max_points": 30,
                           "similarity": "cka", "control_dir": "none", **settings})


def test_unknown_phone_tier_is_refused_before_the_pass(tmp_path, no_pass):
    folder, tg, _ = write_corpus(tmp_path)
    with pytest.raises(LayerwiseError, match="nosuch"):
        analyse(folder, tmp_path / "o", alignment_dir=tg, phone_tier="nosuch")


def test_a_truncated_copy_of_the_tools_item_file_is_refused_before_the_pass_naming_its_rebuild(tmp_path, monkeypatch):
    folder, tg, _ = write_corpus(tmp_path)
    analyse(folder, tmp_path / "first", alignment_dir=tg)  # the tool's own abx_triphone.item
    text = (tmp_path / "first" / "abx_triphone.item").read_text()
    copy = tmp_path / "it1" / "abx_triphone.item"
    copy.parent.mkdir()
    copy.write_text(text[: len(text) // 2].rsplit(" ", 1)[0])  # cut inside a line: a short last line
    monkeypatch.setattr(stream, "collect", lambda *a, **k: pytest.fail("the streaming pass was reached"))
    with pytest.raises(ItemFileError) as caught:
        analyse(folder, tmp_path / "o", abx_item=copy)
    message = str(caught.value)
    assert f"{copy}:" in message and "expected 7 fields" in message  # the file and its line
    assert "--alignment_dir" in message and f"--output_dir {copy.parent}" in message  # the command that rebuilds it
    done = subprocess.run(CLI + ["--features_dir", str(folder), "--output_dir", str(tmp_path / "o2"), "--num_files",
                                 "0", "--abx_item", str(copy), "--control_dir", "none"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "--alignment_dir" in done.stderr


def _control(tmp_path, folder, **meta_changes):
    """A copy of ``folder`` whose files' metadata differ by ``meta_changes`` (as another extraction would write)."""
    control = tmp_path / "ctl" / "feat"
    control.mkdir(parents=True)
    for path in store.list_feature_files(folder):
        ff = store.read_features(path)
        store.write_features(control / path.name, ff.layers, {**ff.meta, **meta_changes})
    return control


@pytest.mark.parametrize("changes, message", [
    ({"random_init": False}, "not from a --random_init extraction"),
    ({"random_init": True, "span": "phone"}, "span"),
    ({"random_init": True, "normalize": True}, "normalize"),
])
def test_a_wrong_control_folder_is_refused_before_the_pass(tmp_path, no_pass, changes, message):
    folder, _, _ = write_corpus(tmp_path)
    control = _control(tmp_path, folder, **changes)
    with pytest.raises(AnalysisError, match=message):
        analyse(folder, tmp_path / "o", control_dir=control)


def test_alignment_ids_that_match_no_feature_file_are_counted_and_listed(tmp_path, caplog):
    folder, tg, phones = write_corpus(tmp_path)
    extra = ["9-9-0001", "9-9-0002"]
    for stem in extra:  # alignments of utterances that were never extracted
        (tg / "9").mkdir(exist_ok=True)
        write_textgrid(tg / "9" / f"{stem}.TextGrid", {"phones": phones[STEMS[0]]}, 10.0)
    with caplog.at_level(logging.WARNING):
        summary = analyse(folder, tmp_path / "o", alignment_dir=tg)
    assert summary["abx_info"]["unmatched_alignments"] == extra
    assert any("2 alignment(s)" in note and "9-9-0001" in note for note in summary["notes"])
    assert "2 alignment(s)" in caplog.text


def _inf_file(folder, compute_dtype):
    """Two good files and one whose layer_2 holds an inf, written as the format says (np.savez, meta JSON)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    meta = {"model_name": "synthetic", "rep_type": "contextualized", "span": "frame", "compute_dtype": compute_dtype}
    for i in range(3):
        arrays = {f"layer_{k}": rng.normal(size=(20, 4)).astype(np.float32) for k in range(3)}
        if i == 2:
            arrays["layer_2"][3, 1] = np.inf
            np.savez(store.feature_path(folder, f"1-1-{i:04d}"), **arrays,
                     meta=np.array(json.dumps({"format_version": 1, **meta})))
        else:
            store.write_features(store.feature_path(folder, f"1-1-{i:04d}"), arrays, meta)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_advice_for_inf_features_names_a_setting_other_than_the_files(tmp_path, dtype):
    _inf_file(tmp_path / "feat", dtype)
    with pytest.raises(InputError) as caught:
        analyse(tmp_path / "feat", tmp_path / "o")
    message = str(caught.value)
    assert "1-1-0002" in message and "layer_2" in message
    if dtype == "float32":  # float32 compute cannot be the cure of a float32 file
        assert "float32 compute" not in message and "--dtype float32" not in message
        assert "damaged" in message and "checkpoint" in message
    else:
        assert "--dtype float32" in message


def test_remedy_never_names_the_dtype_in_use():
    for dtype in ("float32", "float64", None, "float16", "bfloat16"):
        remedy = store.nonfinite_remedy(dtype)
        assert dtype is None or f"--dtype {dtype}" not in remedy


def test_stored_and_printed_messages_keep_every_line(tmp_path, monkeypatch, caplog):
    """Issue 22 kind 1 in analyze/ and cli/visualize: reasons and printed errors fold newlines, drop nothing."""
    from layerwise.analyze import finish
    from layerwise.cli import visualize
    from layerwise.errors import EmbedError, UndefinedMeasureError
    from layerwise.measures import span

    def fail_tsne(*args, **kwargs):
        raise EmbedError("t-SNE failed:\n  second line")
    folder, _, _ = write_corpus(tmp_path)
    monkeypatch.setattr(finish, "tsne_embed", fail_tsne)
    summary = analyse(folder, tmp_path / "o")
    assert summary["reasons"]["tsne"]["layer_0"] == "t-SNE failed: second line"

    def fail_spans(*args, **kwargs):  # what span_measures raises for too few classes (an undefined measure)
        raise UndefinedMeasureError("too few classes:\nonly 'a'")
    monkeypatch.setattr(span, "span_measures", fail_spans)
    features = spans.SpanFeatures()
    features.add("1-1-0001", {"layer_0": np.ones((2, 2))}, np.array(["a", "a"]))
    family = spans.measures(features, seed=0, n_splits=2)
    assert set(family.unavailable.values()) == {"too few classes: only 'a'"}

    def fail_run(options):
        raise UsageError("first line\nsecond line")
    monkeypatch.setattr("layerwise.analyze.run.run_analysis", fail_run)
    with caplog.at_level(logging.ERROR):
        assert visualize.main(["--features_dir", str(folder), "--output_dir", str(tmp_path / "p")]) == 2
    assert "first line second line" in caplog.text


def test_preflight_resolves_the_control_once(tmp_path, monkeypatch):
    """The control is resolved before the pass and handed on: finish does not resolve it again."""
    from layerwise.analyze import control, finish, preflight

    folder, _, _ = write_corpus(tmp_path)
    calls = []
    real = control.resolve_control

    def counted(*args):
        calls.append(args)
        return real(*args)
    monkeypatch.setattr(preflight, "resolve_control", counted)
    monkeypatch.setattr(finish, "resolve_control", counted)
    shutil.rmtree(tmp_path / "o", ignore_errors=True)
    analyse(folder, tmp_path / "o", control_dir="auto")
    assert len(calls) == 1


def test_a_bug_in_the_span_measures_is_not_turned_into_an_unavailable_measure(monkeypatch):
    """Only an undefined measure (too few utterances or classes) becomes 'unavailable'; any other error surfaces."""
    from layerwise.measures import span

    def broken(*args, **kwargs):
        raise ValueError("labels (3,) and groups (4,) must both be (n_segments,)")
    monkeypatch.setattr(span, "span_measures", broken)
    features = spans.SpanFeatures()
    features.add("1-1-0001", {"layer_0": np.ones((2, 2))}, np.array(["a", "b"]))
    with pytest.raises(ValueError, match="must both be"):
        spans.measures(features, seed=0, n_splits=2)
