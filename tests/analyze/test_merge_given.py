"""A merge takes its settings from the partials: a flag given to --merge with another value than the shards were made
with is refused (exit 2, naming the flag and both values) before the partials are read; the same value, or a flag
left out, merges with the partials' values (issue 23, F4)."""

from __future__ import annotations

import json
import logging

import pytest

from layerwise.analyze import shards
from layerwise.analyze.options import AnalysisOptions
from layerwise.analyze.partial import PartialFeed
from layerwise.analyze.run import run_analysis
from layerwise.cli import common
from layerwise.cli.visualize import build_parser, main
from layerwise.contract import outputs, store
from layerwise.errors import UsageError
from tests.analyze.test_shards import META, write_files

# The shards' settings, none at its default (AnalysisOptions: seed 0, max_points 500, num_files 3, all layers)
SHARDS = {"seed": 3, "max_points": 30, "num_files": 0, "layers": "0,2"}
KEYS = ["layer_0", "layer_1", "layer_2"]  # write_files' three layers, recorded in the meta as an extraction does


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """Two shards of 12 files with three layers each, made with :data:`SHARDS`: (features folder, output folder)."""
    root = tmp_path_factory.mktemp("given")
    feat = write_files(root / "feat", 12, meta={**META, "layers": KEYS})
    for k in range(2):
        run_analysis(features_dir=feat, output_dir=root / "out", subset_id=k, num_subsets=2, **SHARDS)
    return feat, root / "out"


def merge_cli(out, *flags, caplog) -> tuple[int, str]:
    """visualize_features.py --merge through its entry point: (exit status, what it logged)."""
    caplog.clear()
    with caplog.at_level(logging.INFO):
        status = main(["--merge", "--output_dir", str(out), "--no_progress", *flags])
    return status, caplog.text


@pytest.mark.parametrize(("flags", "given", "partials"), [
    (["--seed", "7"], "--seed=7", "--seed=3"),
    (["--seed", "0"], "--seed=0", "--seed=3"),  # given with the default value: still given
    (["--max_points", "100"], "--max_points=100", "--max_points=30"),
    (["--num_files", "5"], "--num_files=5", "--num_files=0"),
    (["--layers", "0-2"], "--layers=0-2", "--layers=0,2"),  # layer_1 too: other keys
    (["--layers", "all"], "--layers=all", "--layers=0,2"),
])
def test_a_flag_given_with_another_value_is_refused_naming_both(sharded, caplog, flags, given, partials):
    _, out = sharded
    status, text = merge_cli(out, *flags, caplog=caplog)
    assert status == 2
    assert f"but it was given {given}, the partials' {partials}" in text
    assert "Re-run the shards" in text and "leave it out of the merge" in text
    assert not (out / "summary.json").exists()


def test_another_features_dir_and_a_file_list_of_other_files_are_refused(sharded, caplog, tmp_path):
    feat, out = sharded
    status, text = merge_cli(out, "--features_dir", str(tmp_path), caplog=caplog)
    assert status == 2 and f"--features_dir={tmp_path}" in text and f"--features_dir={feat}" in text
    listed = tmp_path / "list.txt"
    listed.write_text("\n".join(str(p) for p in store.list_feature_files(feat)[:5]) + "\n")
    status, text = merge_cli(out, "--file_list", str(listed), caplog=caplog)
    assert status == 2 and f"--file_list={listed} (5 files)" in text and "selection of 12 files" in text


@pytest.mark.slow
def test_equal_values_and_left_out_flags_merge_with_the_partials_settings(sharded, caplog, tmp_path):
    """--seed 3, the same layers spelt as keys, the same folder spelt differently, a file_list of the same files:
    accepted; --max_points left out (default 500): the partials' 30 is used and recorded."""
    feat, out = sharded
    listed = tmp_path / "all.txt"
    listed.write_text("\n".join(p.name for p in store.list_feature_files(feat)) + "\n")
    status, text = merge_cli(out, "--seed", "3", "--layers", "layer_2,layer_0", "--num_files", "0",
                             "--features_dir", f"{feat}/", "--file_list", str(listed), "--control_dir", "none",
                             "--n_boot", "0", "--similarity", "cka", caplog=caplog)
    assert status in (0, 1), text  # 1: a measure these synthetic files cannot give (named), not a refusal
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["seed"], summary["max_points"]) == (3, 30)
    assert sorted(summary["files"]) == sorted(store.stem_of(p) for p in store.list_feature_files(feat))


def test_no_store_merge_refuses_a_control_folder_and_other_settings(tmp_path, caplog):
    """--no_store partials (streaming defaults: seed 0, max_points 500, every layer): an explicit --control_dir
    folder is refused naming --no_store; the breaker's F4 command is refused naming each differing flag; --control_dir
    none with no other flag passes the check."""
    feat = write_files(tmp_path / "feat", 6, meta={**META, "layers": KEYS})
    out = tmp_path / "ns"
    files = store.list_feature_files(feat)
    feed = PartialFeed(out)
    assert feed.begin([store.stem_of(p) for p in files], {**META, "layers": KEYS}) \
        is False
    for path in files:
        feed.add(store.read_features(path))
    feed.finish([])
    status, text = merge_cli(out, "--control_dir", str(feat), caplog=caplog)
    assert status == 2 and f"--control_dir={feat}" in text and "--no_store" in text and "--control_dir=none" in text
    status, text = merge_cli(out, "--control_dir", "none", "--max_points", "100", "--seed", "7", "--layers", "0,2",
                             caplog=caplog)
    assert status == 2
    for pair in (("--seed=7", "--seed=0"), ("--max_points=100", "--max_points=500"), ("--layers=0,2", "--layers=all")):
        assert all(part in text for part in pair), pair
    header = shards.read_header(shards.partial_path(out, 0, 1))
    shards.check_given(AnalysisOptions(features_dir=out, output_dir=out, merge=True, control_dir="none",
                                       given={"control_dir", "seed", "features_dir"}), header)


def test_given_is_what_was_typed_and_a_library_merge_takes_the_partials(sharded):
    """flags_given sees a flag typed with its default value and nothing left out; a library call (given empty)
    merges with the partials' values whatever its own."""
    assert common.flags_given(build_parser(), ["--merge", "--seed", "0", "--layers=all"]) == {"merge", "seed",
                                                                                               "layers"}
    assert common.flags_given(build_parser(), []) == frozenset()
    with pytest.raises(UsageError, match="given='seed' must be a collection"):
        AnalysisOptions(features_dir=".", output_dir=".", given="seed")
    _, out = sharded
    header = shards.read_header(shards.partial_path(out, 0, 2))
    shards.check_given(AnalysisOptions(features_dir=".", output_dir=out, merge=True, seed=9, max_points=50), header)
    with pytest.raises(UsageError, match="given seed=9, the partials' seed=3"):
        shards.check_given(AnalysisOptions(features_dir=".", output_dir=out, merge=True, seed=9, given={"seed"}),
                           header)


def test_num_subsets_given_to_the_merge_must_match_the_partials(sharded, caplog):
    """--num_subsets N at the merge is checked against the partials (2 shards here), not ignored."""
    _, out = sharded
    before = outputs.snapshot(out)
    status, text = merge_cli(out, "--num_subsets", "3", caplog=caplog)
    assert status == 2 and "num_subsets=3" in text and "are 2 shards" in text and "run 3 shards with" in text
    assert outputs.written_since(out, before) == []  # nothing written (the module's merge test may have run)
    shards.check_shard_count(out, 2)  # the partials' own count passes the check


def test_subset_id_given_to_the_merge_is_refused(sharded, capsys):
    _, out = sharded
    before = outputs.snapshot(out)
    with pytest.raises(SystemExit) as stop:
        main(["--merge", "--output_dir", str(out), "--subset_id", "1", "--no_progress"])
    assert stop.value.code == 2 and "leave --subset_id out of the merge" in capsys.readouterr().err
    assert outputs.written_since(out, before) == []


def test_shards_and_merge_run_from_other_folders_with_relative_paths(tmp_path, monkeypatch, caplog):
    """The partials record the features folder as an absolute path: a merge from another working folder that
    names the same folder by another relative path is accepted, and the merged summary names it absolutely."""
    root = tmp_path / "data"
    feat = write_files(root / "feat", 4, meta={**META, "layers": KEYS})
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(root)
    for k in range(2):
        run_analysis(features_dir="feat", output_dir=tmp_path / "out", subset_id=k, num_subsets=2, num_files=0,
                     max_points=20, control_dir="none")
    monkeypatch.chdir(tmp_path / "elsewhere")
    header = shards.read_header(next((tmp_path / "out" / shards.PARTIALS_DIR).glob("*.npz")))
    assert header["features_dir"] == str(feat)
    shards.check_given(AnalysisOptions(features_dir="../data/feat", output_dir=tmp_path / "out", merge=True,
                                       given=frozenset({"features_dir"})), header)  # the same folder: accepted
    with pytest.raises(UsageError, match="features_dir"):
        shards.check_given(AnalysisOptions(features_dir="feat", output_dir=tmp_path / "out", merge=True,
                                           given=frozenset({"features_dir"})), header)
