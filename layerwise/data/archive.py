"""Safe unpacking of downloaded archives: every member is checked to stay inside the destination first.

Rejected: absolute paths, ``..`` components, symlinks or hard links that lead outside, device files and FIFOs.
Tars are then extracted with ``filter="data"`` (Python >= 3.11.4) as a second guard.
"""

from __future__ import annotations

import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from layerwise.errors import UnsafeArchiveError, error_text


def _check_member(name: str, root: Path, *, link_target: str | None = None) -> None:
    """Raise UnsafeArchiveError unless archive member ``name`` (and its link target) stays inside ``root``."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in PurePosixPath(name).parts:
        raise UnsafeArchiveError(f"unsafe archive member {name!r}: absolute path or '..'")
    target = root.joinpath(name).resolve()
    if link_target is not None:
        if link_target.startswith(("/", "\\")):
            raise UnsafeArchiveError(f"unsafe archive member {name!r}: link to absolute path {link_target!r}")
        target = root.joinpath(name).parent.joinpath(link_target).resolve()
    if not target.is_relative_to(root):
        raise UnsafeArchiveError(f"unsafe archive member {name!r}: leads outside {root}")


def safe_extract(archive: Path, root: Path) -> None:
    """Unpack a .tar.gz/.tgz or .zip into ``root``; every member is checked before anything is written."""
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                file_type = stat.S_IFMT(info.external_attr >> 16)  # 0 when the zip carries no Unix mode
                if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
                    raise UnsafeArchiveError(f"unsafe archive member {info.filename!r}: link or special file")
                _check_member(info.filename, root)
            zf.extractall(root)
        return
    if not hasattr(tarfile, "data_filter"):
        raise UnsafeArchiveError("safe tar extraction needs Python >= 3.11.4 (tarfile filter='data')")
    try:
        with tarfile.open(archive, "r:*") as tf:
            members = tf.getmembers()
            for m in members:
                if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
                    raise UnsafeArchiveError(f"unsafe archive member {m.name!r}: device, FIFO or other special file")
                if m.islnk():  # hard link targets are relative to the archive root
                    _check_member(m.linkname, root)
                _check_member(m.name, root, link_target=m.linkname if m.issym() else None)
            tf.extractall(root, members=members, filter="data")
    except (tarfile.TarError, EOFError) as err:
        raise UnsafeArchiveError(f"cannot extract {archive}: {error_text(err)}") from err
