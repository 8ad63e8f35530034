"""Download LibriSpeech audio and MFA alignments: checksums, resume, safe extraction.

Usage (see ``--help``)::

    python -m layerwise.data download --split dev-clean-2 --dest content/data
    python -m layerwise.data --list

``download_split("dev-clean-2", "content/data")`` returns ``content/data/LibriSpeech/dev-clean-2`` holding
``<spk>/<chapter>/<spk>-<chapter>-<utt>.flac`` and one ``<spk>-<chapter>.trans.txt`` per chapter.

Steps for one resource: (1) skip if ``{dest}/{folder}/.download_complete`` names the resource's MD5;
(2) take an exclusive lock ``{dest}/.{archive}.lock`` (removed again when done, also after a failure);
(3) get a verified ``{dest}/{archive}`` (``download.fetch_archive``: mirrors in turn, resume, size and MD5);
(4) check every member (no absolute path, no ``..``, no link leaving the destination, no device file) before
extracting anything, and extract tars with ``filter="data"`` as a second guard; (5) write the marker.
A failure prints the real paths of what was kept and how to use data one already has (``failure_advice``).
Networking is the standard library (urllib) only.
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath

from layerwise.contract.store import read_own, write_json_atomic
from layerwise.data.archive import safe_extract
from layerwise.data.download import Resource, fetch_archive, locked
from layerwise.errors import DataError, OwnFileError, UnsafeArchiveError, error_text

log = logging.getLogger(__name__)

MARKER_NAME = ".download_complete"
DEFAULT_SPLIT = "dev-clean-2"
DEFAULT_DEST = "content/data"
ALIGNMENTS = "alignments"
_OPENSLR_HOSTS = ("https://www.openslr.org", "https://us.openslr.org",
                  "https://openslr.elda.org", "https://openslr.trmal.net")



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


def _is_complete(marker: Path, resource: Resource) -> bool:
    """True when the extraction marker exists and names the resource's MD5. A marker that cannot be read back
    (``store.read_own``: truncated, not JSON) is logged with its name and the extraction is done again (that is
    what rebuilds it)."""
    if not marker.is_file():
        return False
    try:
        content = read_own(marker, what="extraction marker", rebuild="the download extracts the archive again",
                           kind="json")
    except OwnFileError as err:
        log.warning("%s", err)
        return False
    return isinstance(content, dict) and content.get("md5") == resource.md5


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
    with locked(dest / f".{resource.archive}.lock"):
        if _is_complete(marker, resource):  # another job finished it while we waited
            return folder
        archive = fetch_archive(resource, dest, mirrors=mirrors, progress=progress)
        log.info("extracting %s into %s", archive, dest / resource.extract_to)
        try:
            safe_extract(archive, dest / resource.extract_to)
        except UnsafeArchiveError as err:
            raise DataError(error_text(err)) from err
        if not folder.is_dir():
            raise DataError(f"{archive} did not contain {resource.folder}/")
        write_json_atomic(marker, {"resource": name, "archive": resource.archive, "md5": resource.md5})
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


def failure_advice(name: str, dest: str | Path, *, resources: dict[str, Resource] | None = None) -> str:
    """What to read after resource ``name`` failed below ``dest``: the real paths of what was kept, how the next run
    resumes, and how to use data one already has instead of downloading it."""
    resource = (RESOURCES if resources is None else resources)[name]
    dest = Path(dest).absolute()
    part, bad = dest / f"{resource.archive}.part", dest / f"{resource.archive}.bad"
    total = f" of {resource.size:,}" if resource.size is not None else ""
    lines = [f"{dest / resource.folder} is not there or not marked complete."]
    if part.is_file():
        lines.append(f"The partial download {part} ({part.stat().st_size:,}{total} bytes) is kept; the same command "
                     f"resumes it.")
    else:
        lines.append(f"Nothing of {resource.archive} was kept; the same command starts it again.")
    if bad.is_file():
        lines.append(f"{bad} failed verification; it is kept for inspection (delete it freely).")
    lines.append(f"Check the network, or fetch from another mirror: python -m layerwise.data download "
                 f"{'--split none --alignments' if name == ALIGNMENTS else '--split ' + name} --dest {dest} --mirror URL "
                 f"(python -m layerwise.data --list shows every mirror).")
    if name == ALIGNMENTS:
        lines.append("Already have the MFA TextGrids? Skip this download and pass their folder as --alignment_dir.")
    else:
        example = f"/path/to/LibriSpeech/{PurePosixPath(resource.folder).name}"
        lines.append(f"Already have the audio? Skip the download: AUDIO_DIR={example} ./extract_hubert_features.sh "
                     f"(or extract_features.py --audio_dir {example}).")
    return "\n".join(lines)


def format_table(resources: dict[str, Resource] | None = None, dest: str | Path = DEFAULT_DEST) -> str:
    """The resource table as text: name, archive, size, MD5, the folder it unpacks to below ``dest``, mirrors."""
    lines = []
    for name, r in (RESOURCES if resources is None else resources).items():
        size = f"{r.size:,} bytes" if r.size is not None else "size unpublished"
        lines.append(f"{name:14s} {r.archive}  {size}  md5 {r.md5}  -> {Path(dest) / r.folder}")
        lines += [f"{'':14s}   {url}" for url in r.mirrors]
    return "\n".join(lines)
