"""The output folder of a command (analysis, comparison): checked before any computation, the errno values after
which nothing more can be written to it, and what an interrupted run had written there."""

from __future__ import annotations

import errno
import math
import os
import tempfile
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
    the errno text: a read-only folder, a path under a regular file, a parent without write permission."""
    out = Path(output_dir)
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise error(f"output_dir: {out} cannot be created: {existing} is a file, not a folder; pass an "
                    f"output_dir that is a folder or can be made one")
    try:
        fd, probe = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        where = "" if existing == out else f" (it does not exist and its parent {existing} cannot take it)"
        raise error(f"output_dir: cannot write to {out}{where}: {os_reason(err)}; pass an output_dir you "
                    f"can write to") from err


def written_since(output_dir: str | Path, since: float) -> list[str]:
    """The files of ``output_dir`` (and of its ``partials`` folder) modified at or after ``since`` (``time.time()``,
    floored to the second for file systems that keep whole seconds), oldest first, temporaries left out: what an
    interrupted run had written."""
    out = Path(output_dir)
    found = []
    for folder in (out, out / "partials"):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.is_file() and not path.name.startswith(".") and path.stat().st_mtime >= math.floor(since):
                found.append((path.stat().st_mtime, str(path.relative_to(out))))
    return [name for _, name in sorted(found)]
