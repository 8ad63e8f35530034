"""Content fingerprint of a local checkpoint folder: what pins its weights the way a hub commit hash does.

A folder path says nothing about what is in it (weights replaced in place, or the same relative name in another
working directory), so a run's identity records ``sha256:<16 hex>`` over the bytes of ``config.json``,
``preprocessor_config.json`` (if present) and every weight file (``*.safetensors``, ``*.bin``), sorted by name.
Each file enters the hash as its name, its size and its bytes, so moving bytes between files changes the result.
Reading is streamed in :data:`CHUNK_BYTES` pieces (a 360 MB base model hashes in about a second) and cached per
process by (resolved folder, name, size, mtime, ctime, inode of each file), so describing and then loading a model hashes once.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from layerwise.model.files import read_error

CONFIG_FILES = ("config.json", "preprocessor_config.json")
WEIGHT_PATTERNS = ("*.safetensors", "*.bin")
# 4 MiB reads: large enough that the per-call overhead is negligible next to SHA-256 (≈ 0.4–1 GB/s), small enough
# that memory stays flat whatever the checkpoint size.
CHUNK_BYTES = 4 << 20
# 16 hex digits = 64 bits: two different checkpoints collide with probability ≈ 2^-64 per pair.
DIGEST_HEX = 16
_CACHE: dict[tuple, str] = {}  # (resolved folder, ((name, size, mtime_ns, ctime_ns, inode), ...)) -> fingerprint


def fingerprinted_files(folder: Path) -> list[Path]:
    """The files whose bytes define the checkpoint: its configs (those present) and weights, sorted by name."""
    weights = {p for pattern in WEIGHT_PATTERNS for p in folder.glob(pattern) if p.is_file()}
    configs = {folder / n for n in CONFIG_FILES if (folder / n).is_file()}
    return sorted(configs | weights, key=lambda p: p.name)


def folder_fingerprint(folder: str | Path) -> str:
    """``"sha256:" + 16 hex digits`` over the name, size and bytes of each of :func:`fingerprinted_files`.
    A file that cannot be read (permission denied, I/O error) is a ModelLoadError naming it."""
    folder = Path(folder).expanduser().resolve()
    files = fingerprinted_files(folder)
    stats = tuple((p.name, (s := p.stat()).st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino) for p in files)
    key = (str(folder), stats)
    if key not in _CACHE:
        digest = hashlib.sha256()
        for path, (name, size, *_) in zip(files, stats):
            digest.update(name.encode() + b"\0" + size.to_bytes(8, "little"))
            try:
                with open(path, "rb") as stream:
                    while chunk := stream.read(CHUNK_BYTES):
                        digest.update(chunk)
            except OSError as err:
                raise read_error(path, err) from err
        _CACHE[key] = "sha256:" + digest.hexdigest()[:DIGEST_HEX]
    return _CACHE[key]
