"""The files of a local checkpoint folder, checked before transformers reads them: every way reading them can fail
is one :class:`~layerwise.errors.ModelLoadError` (exit 2) naming the file and what to do.

Checked in seconds, before any audio is read or weights load:

- ``config.json`` and ``preprocessor_config.json`` (when present) must be readable, UTF-8 and a JSON object;
- the weight files transformers would load (the ``*.safetensors`` files, or the ``*.bin`` files of a folder without
  any) must be readable and whole: a safetensors file's header is parsed (:func:`safetensors.safe_open`, which
  checks that the header's tensors cover the file exactly: a file cut short fails here), a ``.bin`` must be the
  zip archive ``torch.save`` writes (its central directory sits at the end, so a truncated file fails) or a legacy
  pickle (first byte ``0x80``, the pickle PROTO opcode).

Only headers are read (a few kilobytes per file), not the tensor data; non-finite values are caught when the
weights load (:func:`layerwise.model.checkpoint.check_finite`).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from layerwise.errors import ModelLoadError, error_text

CONFIG_FILE, PREPROCESSOR_FILE = "config.json", "preprocessor_config.json"
PICKLE_PROTO = b"\x80"  # first byte of a pickle of protocol >= 2: the legacy (pre-zip) torch.save format


def remedy(folder: Path) -> str:
    """What to do about a damaged file of the local checkpoint ``folder`` (a local folder is already in use, so the
    advice is to rebuild that folder, never to pass one)."""
    return (f"Re-save the checkpoint into {folder} (model.save_pretrained and feature_extractor.save_pretrained) "
            f"or re-download it (`hf download ORG/NAME --local-dir {folder}`), or pass another checkpoint folder.")


def read_error(path: Path, err: OSError) -> ModelLoadError:
    """The load error for a checkpoint file that cannot be opened or read (permission denied, I/O error, ...)."""
    cause = err.strerror or error_text(err)
    fix = ("give this user read permission (chmod a+r)" if isinstance(err, PermissionError)
           else "check the file and its disk")
    return ModelLoadError(f"cannot read {path}: {cause}; {fix}. {remedy(path.parent)}")


def read_json_file(path: Path) -> dict:
    """``path`` as a JSON object (config.json, preprocessor_config.json), or a :class:`ModelLoadError` naming it."""
    try:
        with open(path, "rb") as stream:
            data = stream.read()
    except OSError as err:
        raise read_error(path, err) from err
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise ModelLoadError(f"{path} is not valid JSON ({error_text(err)}; {len(data)} bytes): the file is damaged "
                             f"or was edited by hand. {remedy(path.parent)}") from err
    if not isinstance(value, dict):
        raise ModelLoadError(f"{path} holds a JSON {type(value).__name__}, not the object of a checkpoint's "
                             f"settings. {remedy(path.parent)}")
    return value


def weight_files(folder: Path) -> list[Path]:
    """The weight files transformers loads from ``folder``: every ``*.safetensors`` (preferred, as transformers
    does), else every ``*.bin``; sorted by name, empty when there is none."""
    for pattern in ("*.safetensors", "*.bin"):
        if found := sorted(p for p in folder.glob(pattern) if p.is_file()):
            return found
    return []


def check_weight_file(path: Path) -> None:
    """Raise :class:`ModelLoadError` when weight file ``path`` cannot be read or is not whole (header only)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as stream:
            head = stream.read(8)
    except OSError as err:
        raise read_error(path, err) from err
    problem = None
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="numpy") as reader:
                reader.keys()
        except OSError as err:
            raise read_error(path, err) from err
        except Exception as err:  # noqa: BLE001 -- SafetensorError (no public base class) and its kin
            problem = error_text(err)
    elif not head.startswith(PICKLE_PROTO):
        try:
            with zipfile.ZipFile(path):
                pass
        except OSError as err:
            raise read_error(path, err) from err
        except (zipfile.BadZipFile, ValueError, EOFError) as err:
            problem = f"neither the zip archive of torch.save nor a pickle ({error_text(err)})"
    if problem:
        raise ModelLoadError(f"weight file {path} ({size} bytes) is damaged or incomplete: {problem}. A download or "
                             f"copy cut short leaves such a file. {remedy(path.parent)}")


def check_local_files(folder: Path, *, weights: bool = True) -> None:
    """Check the files of local checkpoint ``folder`` (module docstring); ``weights=False`` skips the weight files
    (a random-initialisation control needs only the config). Raises :class:`ModelLoadError`."""
    read_json_file(folder / CONFIG_FILE)
    if (folder / PREPROCESSOR_FILE).exists():
        read_json_file(folder / PREPROCESSOR_FILE)
    if not weights:
        return
    found = weight_files(folder)
    if not found:
        raise ModelLoadError(f"{folder} holds no weight file (model.safetensors or pytorch_model.bin): a "
                             f"config-only folder can only build --random_init models. {remedy(folder)}")
    for path in found:
        check_weight_file(path)
