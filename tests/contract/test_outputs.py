"""contract/outputs: the output-folder check both commands run before computing, and what an interrupted run wrote."""

from __future__ import annotations

import os
import time

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


def test_written_since_lists_new_files_oldest_first_without_temporaries(tmp_path):
    old = tmp_path / "old.txt"
    old.write_text("x")
    os.utime(old, (time.time() - 100, time.time() - 100))
    since = time.time()
    (tmp_path / "partials").mkdir()
    for name, age in (("summary.json", 2), ("partials/p.npz", 1), (".summary.json~x.tmp", 0)):
        (tmp_path / name).write_text("x")
        os.utime(tmp_path / name, (since + 5 - age, since + 5 - age))
    assert outputs.written_since(tmp_path, since) == ["summary.json", "partials/p.npz"]
