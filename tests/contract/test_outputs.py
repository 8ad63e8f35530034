"""contract/outputs: the output-folder check both commands run before computing, and what an interrupted run wrote."""

from __future__ import annotations

import os

import pytest

from layerwise.contract import outputs
from layerwise.errors import CompareError, UsageError


def test_a_missing_output_dir_is_accepted_and_not_created_by_the_check(tmp_path):
    out = tmp_path / "new" / "deeper"
    outputs.check_output_dir(out)
    assert not (tmp_path / "new").exists() and list(tmp_path.iterdir()) == []


def test_a_path_under_a_file_is_refused_with_the_callers_error(tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(CompareError, match="a_file is a file, not a folder"):
        outputs.check_output_dir(tmp_path / "a_file" / "out", CompareError)
    with pytest.raises(UsageError):
        outputs.check_output_dir(tmp_path / "a_file")


def test_a_dangling_link_a_loop_and_a_name_too_long_are_refused_before_anything_is_made(tmp_path):
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere" / "x")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    for out in (tmp_path / "dangling", tmp_path / "dangling" / "deeper", tmp_path / "loop"):
        with pytest.raises(UsageError, match="is a symbolic link to"):
            outputs.check_output_dir(out)
    with pytest.raises(UsageError, match=r"\(ENAMETOOLONG\)"):
        outputs.check_output_dir(tmp_path / ("x" * 300) / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling", "loop"]  # no probe left, nothing made


def test_written_since_lists_new_and_rewritten_files_oldest_first_without_temporaries(tmp_path):
    (tmp_path / "partials").mkdir()
    for name in ("old.txt", "kept.txt"):
        (tmp_path / name).write_text("x")
    before = outputs.snapshot(tmp_path)
    assert sorted(before) == ["kept.txt", "old.txt"]
    stamp = (tmp_path / "old.txt").stat().st_mtime_ns
    replacement = tmp_path / "new_inode"  # rewritten atomically within the same clock tick: a new inode
    replacement.write_text("y")
    os.utime(replacement, ns=(stamp, stamp))
    os.replace(replacement, tmp_path / "old.txt")
    for name, when in (("summary.json", 2), ("partials/p.npz", 3), (".summary.json~x.tmp", 4)):
        (tmp_path / name).write_text("x")
        os.utime(tmp_path / name, ns=(stamp + when * 10**9,) * 2)
    assert outputs.written_since(tmp_path, before) == ["old.txt", "summary.json", "partials/p.npz"]
    assert outputs.written_since(tmp_path / "absent", {}) == []


def test_a_stop_during_the_probe_leaves_no_probe(tmp_path, monkeypatch):
    import signal

    from layerwise.cli.common import stops_as_interrupt

    real = os.open

    def open_then_stop(file, flags, *args, **kwargs):
        fd = real(file, flags, *args, **kwargs)
        if outputs.PROBE_PREFIX in str(file):
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, with the probe on disk
        return fd

    monkeypatch.setattr(os, "open", open_then_stop)
    with pytest.raises(KeyboardInterrupt), stops_as_interrupt():
        outputs.check_output_dir(tmp_path)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []
