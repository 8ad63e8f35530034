"""The output folder of a command (analysis, comparison): checked before any computation, the errno values after
which nothing more can be written to it, and what an interrupted run had written there."""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path

from layerwise.errors import UsageError

# The errno values after which no further output can be written to the folder (the disk or quota is full, the file
# system was remounted read-only): the run stops writing, names what was not written and exits 1.
FOLDER_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
PROBE_PREFIX = ".layerwise-probe-"  # the probe file of check_output_dir, removed at once


def os_reason(err: OSError) -> str:
    """The errno text of ``err`` and its symbol, e.g. ``No space left on device (ENOSPC)``."""
    symbol = errno.errorcode.get(err.errno or 0)
    text = err.strerror or str(err)
    return f"{text} ({symbol})" if symbol else text


def check_output_dir(output_dir: str | Path, error: type[UsageError] = UsageError) -> None:
    """Refuse an output folder this process cannot write to, before any computation: creates and removes a probe
    file in ``output_dir`` or, when it does not exist yet, in its nearest existing parent (the folder itself is
    created only when the first output is written). Raises ``error`` (a UsageError: exit 2) naming the folder and
    the errno text: a read-only folder, a path under a regular file or a dangling symbolic link, a parent without
    write permission, a name too long for the file system."""
    out = Path(output_dir)
    existing = out
    try:
        while not existing.exists() and not existing.is_symlink() and existing != existing.parent:
            existing = existing.parent
        if existing.is_symlink() and not existing.exists():  # dangling, or a loop: nothing can be made there
            raise error(f"output_dir: {out} cannot be created: {existing} is a symbolic link to "
                        f"{os.readlink(existing)}, which does not exist (or loops); pass an output_dir that is a "
                        f"folder or can be made one")
        if not existing.is_dir():
            raise error(f"output_dir: {out} cannot be created: {existing} is a file, not a folder; pass an "
                        f"output_dir that is a folder or can be made one")
        too_long = [name for name in out.relative_to(existing).parts
                    if len(os.fsencode(name)) > os.pathconf(existing, "PC_NAME_MAX")]
        if too_long:
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), too_long[0])
        probe = existing / f"{PROBE_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"  # named first: a stop removes it
        try:
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        finally:
            probe.unlink(missing_ok=True)
    except OSError as err:  # the probe failed, or the path cannot even be looked at (a name over NAME_MAX)
        where = "" if existing == out else f" (it does not exist and its parent {existing} cannot take it)"
        raise error(f"output_dir: cannot write to {out}{where}: {os_reason(err)}; pass an output_dir you "
                    f"can write to") from err


def snapshot(output_dir: str | Path) -> dict[str, tuple[int, int]]:
    """The files of ``output_dir`` and of its ``partials`` folder (relative name -> (inode, st_mtime_ns)),
    temporaries left out: taken when a run starts, so that :func:`written_since` can say what the run wrote."""
    out = Path(output_dir)
    found = {}
    for folder in (out, out / "partials"):
        try:
            entries = list(folder.iterdir()) if folder.is_dir() else []
        except OSError:  # a folder that cannot be listed holds nothing this run wrote
            entries = []
        for path in entries:
            if not path.name.startswith(".") and path.is_file():
                info = path.stat()
                found[str(path.relative_to(out))] = (info.st_ino, info.st_mtime_ns)
    return found


def written_since(output_dir: str | Path, before: dict[str, tuple[int, int]]) -> list[str]:
    """The files of ``output_dir`` (and of its ``partials`` folder) that are new or changed since ``before``
    (:func:`snapshot` taken when the run started), oldest first: what an interrupted run had written. Exact on any
    file-system time resolution: every output is written atomically (a new inode), so a file is listed only when
    its inode or modification time differs from the snapshot's."""
    now = snapshot(output_dir)
    changed = [name for name, signature in now.items() if before.get(name) != signature]
    return sorted(changed, key=lambda name: (now[name][1], name))


def about_output(err: OSError, output_dir: str | Path) -> bool:
    """Whether ``err`` is about writing an output to ``output_dir``: its file lies there (``store.atomic_open``
    names the file asked for), or the folder took no more (FOLDER_FULL) wherever it was named. Other OSErrors (a
    font, an input) are not the output folder's."""
    if err.errno in FOLDER_FULL:
        return True
    return err.filename is not None and Path(err.filename).parent.resolve() == Path(output_dir).resolve()
