"""Messages that point to the right folder (issue 22, kind 13; ``contract.store.look_around``), for both commands that
read features: visualize_features.py and compare_features.py given a feature file, an analysis output folder not
named ``*_analysis`` (its summary.json names the features folder), or a model checkpoint folder. Expected: the
documented rule (exit 2, the right folder or command named), checked on a real extraction and a real analysis."""

from __future__ import annotations

import logging

import pytest

from layerwise.cli.compare import main as compare_main
from layerwise.cli.extract import main as extract_main
from layerwise.cli.visualize import main as visualize_main
from layerwise.contract import store
from layerwise.errors import error_text


@pytest.fixture
def extracted(tiny_hubert, audio_dir, tmp_path):
    """A features folder written by extract_features.py from the conftest audio and tiny checkpoint."""
    save = tmp_path / "out"
    assert extract_main(["--audio_dir", str(audio_dir), "--save_dir", str(save), "--model_name", str(tiny_hubert),
                         "--device", "cpu", "--no_progress"]) == 0
    (folder,) = {p.parent for p in save.rglob(f"*{store.FEATURE_SUFFIX}")}
    return folder


def error_lines(caplog) -> str:
    text = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    caplog.clear()
    return text


def test_wrong_folders_are_named_with_the_right_one(extracted, tiny_hubert, tmp_path, caplog):
    analysis = tmp_path / "output" / "visualizations"
    code = visualize_main(["--features_dir", str(extracted), "--output_dir", str(analysis), "--no_progress",
                           "--max_points", "50"])
    assert code in (0, 1) and (analysis / "summary.json").is_file()
    comparison = tmp_path / "output" / "comparison"
    assert compare_main(["--features_dirs", str(extracted), str(extracted), "--output_dir", str(comparison),
                         "--no_progress"]) in (0, 1)
    feature_file = store.list_feature_files(extracted)[0]
    expected = {
        feature_file: f"this is a feature file; pass its folder {extracted}",
        analysis: f"an analysis output folder (report.html, summary.json); its features are in {extracted}",
        comparison: f"a comparison output folder (report.html, summary.json); its features are in {extracted}: "
                    f"pass that",
        tiny_hubert: f"it is a model checkpoint (config.json + weights), not features: give it to "
                     f"extract_features.py --model_name {tiny_hubert}",
    }
    caplog.set_level(logging.ERROR)
    caplog.clear()
    for wrong, hint in expected.items():
        assert visualize_main(["--features_dir", str(wrong), "--output_dir", str(tmp_path / "v2"),
                               "--no_progress"]) == 2
        message = error_lines(caplog)
        assert hint in message, (wrong, message)
        assert "does not exist" not in message
        assert compare_main(["--features_dirs", str(extracted), str(wrong), "--output_dir", str(tmp_path / "c"),
                             "--no_progress"]) == 2
        message = error_lines(caplog)
        assert hint in message, (wrong, message)
        assert "does not exist" not in message
    assert not (tmp_path / "v2").exists() and not (tmp_path / "c").exists()  # refused before any output


def test_look_around_of_a_missing_folder_and_of_an_unreadable_summary(tmp_path):
    assert store.look_around(tmp_path / "nowhere") == ""
    out = tmp_path / "visualizations"
    out.mkdir()
    (out / "summary.json").write_text('{"features_dir": ')  # truncated: the hint degrades, never raises
    assert "output folder" in store.look_around(out)


def test_compare_cli_prints_the_whole_error_on_one_line(monkeypatch, tmp_path, caplog):
    """``error_text``: every line of the message kept, folded to one; an empty message gives the type's name."""
    from layerwise.compare import run
    from layerwise.errors import CompareError

    for err, expected in ((CompareError("first line\n  second line: layers: 7"), "first line second line: --layers: 7"),
                          (CompareError(""), "CompareError")):
        def fail(options, err=err):
            raise err

        monkeypatch.setattr(run, "run_comparison", fail)
        caplog.clear()
        with caplog.at_level(logging.ERROR):
            assert compare_main(["--features_dirs", "a", "b", "--output_dir", str(tmp_path), "--layers", "7"]) == 2
        (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert record.getMessage() == expected and "\n" not in record.getMessage()
        assert error_text(err) in expected.replace("--layers", "layers")
