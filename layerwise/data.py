"""Download LibriSpeech audio and MFA alignments: checksums, resume, safe extraction.

Usage (see ``--help``)::

    python -m layerwise.data download --split dev-clean-2 --dest content/data
    python -m layerwise.data --list

``download_split("dev-clean-2", "content/data")`` returns ``content/data/LibriSpeech/dev-clean-2`` holding
``<spk>/<chapter>/<spk>-<chapter>-<utt>.flac`` and one ``<spk>-<chapter>.trans.txt`` per chapter.

Steps for one resource: (1) skip if ``<dest>/<folder>/.download_complete`` names the resource's MD5;
(2) reuse ``<dest>/<archive>`` if it verifies, else download to ``<dest>/<archive>.part`` (resumed with an HTTP
Range request; a server answering 200 instead of 206 restarts it), trying each mirror in turn; (3) verify size and
MD5, then rename ``.part`` to the archive name (a mismatch moves it to ``<archive>.bad`` and tries the next mirror);
(4) check every member (no absolute path, no ``..``, no link leaving the destination, no device file) before
extracting anything, and extract tars with ``filter="data"`` as a second guard; (5) write the marker.
Networking is the standard library (urllib) only.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import logging
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from .archive import UnsafeArchiveError, safe_extract
from .errors import UsageError

try:
    import fcntl
except ImportError:  # Windows: no lock; run one download at a time
    fcntl = None

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20  # 1 MiB per read
TIMEOUT_S = 60.0  # socket timeout for one read, seconds
MARKER_NAME = ".download_complete"
USER_AGENT = "layerwise-data/1 (python urllib)"
DEFAULT_SPLIT = "dev-clean-2"
ALIGNMENTS = "alignments"
_OPENSLR_HOSTS = ("https://www.openslr.org", "https://us.openslr.org",
                  "https://openslr.elda.org", "https://openslr.trmal.net")


class DataError(UsageError):
    """A download, verification or extraction failure (CLI exit status 1)."""


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


def _openslr(resource_id: int, split: str, size: int | None, md5: str) -> Resource:
    archive = f"{split}.tar.gz"
    urls = tuple(f"{host}/resources/{resource_id}/{archive}" for host in _OPENSLR_HOSTS)
    return Resource(archive, size, md5, urls, "", f"LibriSpeech/{split}")


# The only table of resources. Sizes and MD5s as published by OpenSLR and Zenodo.
RESOURCES: dict[str, Resource] = {
    "dev-clean-2": _openslr(31, "dev-clean-2", 126_046_265, "6d7ab67ac6a1d2c993d050e16d61080d"),
    "train-clean-5": _openslr(31, "train-clean-5", 332_954_390, "5df7d4e78065366204ca6845bb08f490"),
    "dev-clean": _openslr(12, "dev-clean", 337_926_286, "42e2234ba48799c1f50f24a7926300a1"),
    "test-clean": _openslr(12, "test-clean", 346_663_984, "32fa31d27d2e1cad72775fee3f4849a9"),
    "dev-other": _openslr(12, "dev-other", None, "c8d0bcc9cca99d4f8b62fcc847357931"),
    "test-other": _openslr(12, "test-other", None, "fb5a50374b501bb3bac4815ee91d3135"),
    ALIGNMENTS: Resource(
        "librispeech_alignments.zip", 623_023_332, "2bab567d0ace651a4ba254e813629f46",
        ("https://zenodo.org/record/2619474/files/librispeech_alignments.zip",
         "https://zenodo.org/records/2619474/files/librispeech_alignments.zip?download=1"),
        ALIGNMENTS, ALIGNMENTS),
}


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
        raise DataError(f"{url}: {getattr(err, 'reason', err)!s}") from err
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
                raise DataError(f"{url}: connection lost after {f.tell():,} bytes ({err})") from err
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
                errors.append(str(err))
                break
            problem = verify(part, resource)
            if problem is None:
                part.replace(final)
                return final
            part.replace(final.with_name(final.name + ".bad"))
            errors.append(f"{url}: downloaded file failed verification: {problem}")
            if not resumed:
                break
    raise DataError(f"could not get a verified {resource.archive}:\n  " + "\n  ".join(errors))


def _is_complete(marker: Path, resource: Resource) -> bool:
    """True when the extraction marker exists and names the resource's MD5."""
    try:
        return json.loads(marker.read_text()).get("md5") == resource.md5
    except (ValueError, OSError, AttributeError):
        return False


@contextlib.contextmanager
def _locked(path: Path):
    """Hold an exclusive advisory lock (POSIX flock) on ``path``, so parallel jobs download and extract once."""
    with open(path, "a") as handle:
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("waiting for another process holding %s", path)
                fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def download(name: str, dest: str | Path, *, mirrors: list[str] | None = None, keep_archive: bool = True,
             progress: bool = True, resources: dict[str, Resource] | None = None) -> Path:
    """Fetch, verify and extract resource ``name`` (a split or ``"alignments"``) below ``dest``.

    Returns ``dest/<folder>``. Idempotent: returns at once when the folder holds a marker with the right MD5.
    ``mirrors`` (base or full URLs) replace the table's; ``resources`` replaces the table (tests).
    """
    table = RESOURCES if resources is None else resources
    if name not in table:
        raise ValueError(f"unknown resource {name!r}; known: {', '.join(table)}")
    resource, dest = table[name], Path(dest)
    folder, marker = dest / resource.folder, dest / resource.folder / MARKER_NAME
    if _is_complete(marker, resource):
        log.info("%s already present in %s", name, folder)
        return folder
    dest.mkdir(parents=True, exist_ok=True)
    with _locked(dest / f".{resource.archive}.lock"):
        if _is_complete(marker, resource):  # another job finished it while we waited
            return folder
        archive = fetch_archive(resource, dest, mirrors=mirrors, progress=progress)
        log.info("extracting %s into %s", archive, dest / resource.extract_to)
        try:
            safe_extract(archive, dest / resource.extract_to)
        except UnsafeArchiveError as err:
            raise DataError(str(err)) from err
        if not folder.is_dir():
            raise DataError(f"{archive} did not contain {resource.folder}/")
        marker.write_text(json.dumps({"resource": name, "archive": resource.archive, "md5": resource.md5}) + "\n")
        if not keep_archive:
            archive.unlink()
    return folder


def download_split(split: str, dest: str | Path, *, mirrors: list[str] | None = None, keep_archive: bool = True,
                   progress: bool = True, resources: dict[str, Resource] | None = None) -> Path:
    """Download one LibriSpeech split; returns ``dest/LibriSpeech/<split>`` (see ``download``)."""
    return download(split, dest, mirrors=mirrors, keep_archive=keep_archive, progress=progress,
                    resources=resources)


def download_alignments(dest: str | Path, **options) -> Path:
    """Download the MFA TextGrids (Zenodo 2619474); returns ``dest/alignments`` (pass it as --alignment_dir)."""
    return download(ALIGNMENTS, dest, **options)


def format_table(resources: dict[str, Resource] | None = None) -> str:
    """The resource table as text: name, archive, size, MD5, folder, mirrors."""
    lines = []
    for name, r in (RESOURCES if resources is None else resources).items():
        size = f"{r.size:,} bytes" if r.size is not None else "size unpublished"
        lines.append(f"{name:14s} {r.archive}  {size}  md5 {r.md5}  -> <dest>/{r.folder}")
        lines += [f"{'':14s}   {url}" for url in r.mirrors]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    splits = [n for n in RESOURCES if n != ALIGNMENTS]
    parser = argparse.ArgumentParser(
        prog="python -m layerwise.data", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Download LibriSpeech splits and MFA alignments with checksums, resume and safe extraction.",
        epilog="example:\n  python -m layerwise.data download --split dev-clean-2 --dest content/data\n"
               "  -> content/data/LibriSpeech/dev-clean-2/<spk>/<chapter>/<utt>.flac (path printed on stdout)\n"
               "  python -m layerwise.data download --split none --alignments --dest content/data\n"
               "  -> content/data/alignments/ (TextGrids; use as --alignment_dir)")
    parser.add_argument("--list", action="store_true", help="print the known resources and exit")
    parser.add_argument("--verbose", action="store_true", help="debug logging and tracebacks")
    sub = parser.add_subparsers(dest="command")
    dl = sub.add_parser("download", help="download, verify and extract",
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=parser.epilog)
    dl.add_argument("--split", action="append", choices=splits + ["none"],
                    help=f"split to fetch, repeatable; 'none' for alignments only (default: {DEFAULT_SPLIT})")
    dl.add_argument("--dest", default="content/data", help="folder the archives are downloaded and unpacked into (default: %(default)s)")
    dl.add_argument("--alignments", action="store_true", help="also fetch the MFA alignments (Zenodo 2619474)")
    dl.add_argument("--mirror", action="append", metavar="URL",
                    help="mirror to use instead of the built-in list, repeatable; a base URL (archive name "
                         "appended) or a full URL to the archive")
    dl.add_argument("--delete-archive", action="store_true", help="remove the archive after extraction")
    dl.add_argument("--no-progress", action="store_true", help="no progress bar")
    # SUPPRESS: a sub-parser default would overwrite the same flag given before the command.
    dl.add_argument("--list", action="store_true", default=argparse.SUPPRESS, help="print the known resources")
    dl.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging, tracebacks")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s",
                        stream=sys.stderr)
    if args.list:
        print(format_table())
        return 0
    if args.command != "download":
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: give a command (download) or --list", file=sys.stderr)
        return 2
    splits = args.split or [DEFAULT_SPLIT]
    names = [s for s in dict.fromkeys(splits) if s != "none"] + ([ALIGNMENTS] if args.alignments else [])
    if not names:
        print(f"{parser.prog}: error: --split none needs --alignments", file=sys.stderr)
        return 2
    try:
        for name in names:
            folder = download(name, args.dest, mirrors=args.mirror, keep_archive=not args.delete_archive,
                              progress=not args.no_progress)
            print(folder)
    except (DataError, OSError) as err:
        if args.verbose:
            log.exception("failed")
        print(f"error: {err}\nThe failed resource is not marked complete. Any partial download is kept as "
              f"<dest>/<archive>.part and resumes on the next run; check the network or pass --mirror URL.",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; the partial download resumes on the next run", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
