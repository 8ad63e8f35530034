"""The download engine: fetch one archive from its mirrors with resume, verify its size and MD5, lock a folder.

Steps for one archive: reuse ``{dest}/{archive}`` if it verifies, else download to ``{dest}/{archive}.part``
(resumed with an HTTP Range request; a server answering 200 instead of 206 restarts it), trying each mirror in
turn; verify size and MD5, then rename ``.part`` to the archive name (a mismatch moves it to ``{archive}.bad`` and
tries the next mirror). Networking is the standard library (urllib) only. What to download is
``librispeech.RESOURCES``; the folder lock is :class:`filelock.FileLock`.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from filelock import FileLock, Timeout
from tqdm import tqdm

from layerwise.errors import DataError, error_text, one_line

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20  # 1 MiB per read
TIMEOUT_S = 60.0  # socket timeout for one read, seconds
USER_AGENT = "layerwise-data/1 (python urllib)"


@dataclass(frozen=True)
class Resource:
    """One downloadable archive.

    archive : file name on the mirrors; size : bytes, or None when unpublished; md5 : hex digest;
    mirrors : full URLs tried in order; extract_to : folder below dest the archive is unpacked into;
    folder : folder below dest that must exist afterwards (what ``download_split`` returns).
    """

    archive: str
    size: int | None
    md5: str
    mirrors: tuple[str, ...]
    extract_to: str
    folder: str


def mirror_url(mirror: str, archive: str) -> str:
    """A full URL for ``archive``: ``mirror`` itself if its path ends with the archive name, else ``mirror/archive``."""
    if PurePosixPath(urllib.parse.urlsplit(mirror).path).name == archive:
        return mirror
    return mirror.rstrip("/") + "/" + archive


def file_md5(path: Path) -> str:
    """Hex MD5 of a file, read in CHUNK_BYTES blocks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, resource: Resource) -> str | None:
    """None when ``path`` has the resource's size and MD5, else the reason it does not."""
    size = path.stat().st_size
    if resource.size is not None and size != resource.size:
        return f"size {size:,} bytes, expected {resource.size:,}"
    md5 = file_md5(path)
    if md5 != resource.md5:
        return f"MD5 {md5}, expected {resource.md5}"
    return None


def _fetch(url: str, part: Path, resource: Resource, *, progress: bool) -> None:
    """Download ``url`` into ``part``, resuming from its current length when the server honours Range.

    Raises DataError on HTTP/network errors or a short or wrong-sized body; ``part`` is kept for resuming.
    """
    offset = part.stat().st_size if part.exists() else 0
    if resource.size is not None and offset > resource.size:
        part.unlink()
        offset = 0
    if resource.size is not None and offset == resource.size:
        return  # complete already; verification decides
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # range not satisfiable: nothing left to send (or a stale part)
            return
        raise DataError(f"{url}: HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        raise DataError(f"{url}: {one_line(str(getattr(err, 'reason', err))) or error_text(err)}") from err
    with response:
        length = response.headers.get("Content-Length")
        if response.status == 206:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                raise DataError(f"{url}: unexpected Content-Range {content_range!r} for offset {offset}")
            mode = "ab"
        else:  # 200: the server ignored Range (or none was sent): start again
            if offset:
                log.info("%s ignored the Range request; restarting from byte 0", url)
            offset, mode = 0, "wb"
        expected = offset + int(length) if length is not None else resource.size
        if resource.size is not None and expected != resource.size:
            raise DataError(f"{url}: server offers {expected:,} bytes, expected {resource.size:,}")
        with open(part, mode) as f, tqdm(total=expected, initial=offset, unit="B", unit_scale=True,
                                         unit_divisor=1024, desc=resource.archive, disable=not progress) as bar:
            try:
                while block := response.read(CHUNK_BYTES):
                    f.write(block)
                    bar.update(len(block))
            except (OSError, http.client.HTTPException) as err:
                raise DataError(f"{url}: connection lost after {f.tell():,} bytes ({error_text(err)})") from err
            got = f.tell()
    if expected is not None and got < expected:
        raise DataError(f"{url}: connection closed after {got:,} of {expected:,} bytes")


def fetch_archive(resource: Resource, dest: Path, *, mirrors: list[str] | None = None,
                  progress: bool = True) -> Path:
    """Return ``dest/<archive>`` verified against the resource's size and MD5, downloading it if needed.

    Each mirror is tried in order; a partial ``.part`` carries over between mirrors (same bytes, same MD5).
    A file failing verification is moved to ``<archive>.bad``; if it was a resumed download the same mirror is
    tried once more from byte 0. Raises DataError when every mirror fails.
    """
    final = dest / resource.archive
    if final.exists():
        if (problem := verify(final, resource)) is None:
            return final
        log.warning("existing %s does not verify (%s); downloading again", final, problem)
        final.replace(final.with_name(final.name + ".bad"))
    part = final.with_name(final.name + ".part")
    urls = [mirror_url(m, resource.archive) for m in mirrors] if mirrors else list(resource.mirrors)
    errors = []
    for url in urls:
        for _attempt in range(2):
            resumed = part.exists() and part.stat().st_size > 0
            log.info("downloading %s", url)
            try:
                _fetch(url, part, resource, progress=progress)
            except DataError as err:
                errors.append(error_text(err))
                break
            problem = verify(part, resource)
            if problem is None:
                part.replace(final)
                return final
            part.replace(final.with_name(final.name + ".bad"))
            errors.append(f"{url}: downloaded file failed verification: {problem}")
            if not resumed:
                break
    raise DataError(f"could not get a verified {resource.archive} from {len(urls)} mirror(s): " + "; ".join(errors))


@contextlib.contextmanager
def locked(path: Path):
    """Hold an exclusive lock on the file ``path`` (:class:`filelock.FileLock`: ``flock`` on POSIX), so parallel jobs
    download and extract once; the lock file is removed on release, also after a failure.

    Removal is safe against waiters: the file is unlinked while the lock is still held, and a job whose turn comes on
    the unlinked file sees that (filelock checks the link count after locking) and locks the new file instead, so two
    jobs never both hold it. A lock file left by a crashed run is locked and removed like any other.
    """
    lock = FileLock(path)
    try:
        lock.acquire(blocking=False)
    except Timeout:
        log.info("waiting for another process holding %s", path)
        lock.acquire()
    try:
        yield
    finally:
        try:
            # while still holding the lock; Windows refuses to unlink an open file, and filelock removes it there
            with contextlib.suppress(FileNotFoundError, PermissionError):
                os.unlink(path)
        finally:
            lock.release()
