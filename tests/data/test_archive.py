"""archive.safe_extract: hostile zip members are rejected before anything is written (tars: see test_data.py)."""

from __future__ import annotations

import io
import stat
import zipfile

import pytest

from layerwise.data.archive import safe_extract
from layerwise.errors import UnsafeArchiveError


def all_files(root):
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink()}


@pytest.mark.parametrize("bad_name", ["../evil", "/abs_evil", "sub/../../evil", "symlink"])
def test_unsafe_zip_is_rejected(tmp_path, bad_name):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("alignments/ok.TextGrid", "ok")
        info = zipfile.ZipInfo(bad_name)
        if bad_name == "symlink":
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "../../etc" if bad_name == "symlink" else "evil")
    archive = tmp_path / "x.zip"
    archive.write_bytes(buf.getvalue())
    assert [i.filename for i in zipfile.ZipFile(archive).infolist()][1] == bad_name  # stored unsanitised

    with pytest.raises(UnsafeArchiveError, match="unsafe archive member"):
        safe_extract(archive, tmp_path / "dest")
    assert all_files(tmp_path) == {"x.zip"}
