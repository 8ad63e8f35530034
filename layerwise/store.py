"""The feature-file contract, in one place.

One ``{stem}_features.npz`` per utterance, flat in the output folder. Inside:

- ``layer_0`` ... ``layer_L`` (rep_type ``contextualized``) or ``conv_0`` ... ``conv_6`` (rep_type ``local``):
  2-D, time-major arrays of shape ``(n_frames, dim)`` (or ``(n_segments, dim)`` for phone/word spans),
  float32 unless saved as float16. No batch dimension.
- ``labels`` (unicode, ``(n_segments,)``) and ``intervals`` (float64, ``(n_segments, 2)``, seconds) for spans.
- ``meta``: a 0-d unicode array holding a JSON object (model, rep_type, span, layers, rates, dtypes, source path,
  duration, frame count, ...). Plain unicode, so files load with ``allow_pickle=False``.

Writes are atomic: a temporary file in the same folder, then ``os.replace``. Reading also accepts the older
prototype layout ``(1, T, D)``. Nothing else in the project calls ``np.savez``/``np.load`` on feature files.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from .errors import InputError

FEATURE_SUFFIX = "_features.npz"
META_KEY = "meta"
LABELS_KEY = "labels"
INTERVALS_KEY = "intervals"
FORMAT_VERSION = 1
# rep_type -> key prefix; a key is f"{prefix}_{index}".
KEY_PREFIX = {"contextualized": "layer", "local": "conv"}
_KEY_RE = re.compile(r"^(layer|conv)_(\d+)$")
SAVE_DTYPES = {"float32": np.float32, "float16": np.float16}
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: mkstemp creates 0600 files, finished files get the usual 0666 & ~umask


class FeatureFileError(InputError):
    """A feature file that cannot be read or does not follow the format."""


def layer_key(rep_type: str, index: int) -> str:
    """``layer_key("contextualized", 3) == "layer_3"``; ``layer_key("local", 0) == "conv_0"``."""
    return f"{KEY_PREFIX[rep_type]}_{index}"


def parse_layer_key(key: str) -> tuple[str, int] | None:
    """``"layer_10" -> ("layer", 10)``; ``None`` for keys that are not layer arrays (``meta``, ``labels``...)."""
    match = _KEY_RE.match(key)
    return (match.group(1), int(match.group(2))) if match else None


def sort_layer_keys(keys) -> list[str]:
    """Layer keys in numeric order (``layer_2`` before ``layer_10``), non-layer keys dropped."""
    parsed = [(parse_layer_key(k), k) for k in keys]
    return [k for p, k in sorted((p, k) for p, k in parsed if p is not None)]


def feature_path(out_dir: str | Path, stem: str) -> Path:
    return Path(out_dir) / f"{stem}{FEATURE_SUFFIX}"


def stem_of(path: str | Path) -> str:
    """``.../1272-128104-0000_features.npz -> "1272-128104-0000"``."""
    name = Path(path).name
    return name[: -len(FEATURE_SUFFIX)] if name.endswith(FEATURE_SUFFIX) else Path(path).stem


def list_feature_files(features_dir: str | Path) -> list[Path]:
    """Every ``*_features.npz`` directly in ``features_dir``, sorted by file name."""
    return sorted(Path(features_dir).glob(f"*{FEATURE_SUFFIX}"), key=lambda p: p.name)


def write_features(
    path: str | Path,
    arrays: dict[str, np.ndarray],
    meta: dict,
    *,
    save_dtype: str = "float32",
    labels: np.ndarray | None = None,
    intervals: np.ndarray | None = None,
) -> None:
    """Atomically write one feature file.

    arrays : layer key -> ndarray of shape (n_frames, dim); cast to ``save_dtype`` (a finite value that float16
        cannot hold, |x| > 65504, is an error rather than a silent inf).
    meta : JSON-serialisable dict, stored under ``meta``.
    labels, intervals : for spans, shapes (n,) and (n, 2) in seconds.
    """
    path = Path(path)
    if save_dtype not in SAVE_DTYPES:
        raise ValueError(f"save_dtype={save_dtype!r} not in {sorted(SAVE_DTYPES)}")
    payload: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        if parse_layer_key(key) is None:
            raise ValueError(f"not a layer key: {key!r}")
        if value.ndim != 2:
            raise ValueError(f"{key}: expected a 2-D (T, D) array, got shape {value.shape}")
        with np.errstate(over="ignore"):  # overflow is checked, with a clearer message, just below
            stored = np.ascontiguousarray(value, dtype=SAVE_DTYPES[save_dtype])
        if stored.dtype == np.float16 and np.any(np.isinf(stored) & np.isfinite(value)):
            raise ValueError(f"{key}: values up to {np.nanmax(np.abs(value[np.isfinite(value)])):.6g} overflow "
                             f"float16 (max {np.finfo(np.float16).max:.6g}); save this model with "
                             f"--save_dtype float32")
        payload[key] = stored
    if labels is not None:
        payload[LABELS_KEY] = np.asarray(labels, dtype=np.str_)
    if intervals is not None:
        payload[INTERVALS_KEY] = np.asarray(intervals, dtype=np.float64).reshape(-1, 2)
    payload[META_KEY] = np.array(json.dumps({"format_version": FORMAT_VERSION, **meta}, sort_keys=True))
    with _atomic(path, "wb") as handle:
        np.savez(handle, **payload)
        handle.flush()
        os.fsync(handle.fileno())


@contextmanager
def _atomic(path: Path, mode: str):
    """An open handle on a temporary file in ``path``'s folder, moved onto ``path`` with ``os.replace`` on success
    and removed on any failure (also KeyboardInterrupt). Same folder = same filesystem, so the move is atomic; the
    name ``.{name}.{random}.tmp`` does not end in FEATURE_SUFFIX, so a crash never leaves a look-alike file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, mode) as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class FeatureFile:
    """One utterance's features as read back.

    layers : layer key -> ndarray (n_frames, dim), in numeric key order, as stored (float32 or float16).
    labels, intervals : span labels (n,) and [start, end) seconds (n, 2), or None for frame features.
    meta : the stored metadata (empty for prototype files).
    """

    stem: str
    path: Path
    layers: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    intervals: np.ndarray | None = None
    meta: dict = field(default_factory=dict)


def read_meta(path: str | Path) -> dict:
    """The metadata of a feature file without loading its arrays ({} for prototype files)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return json.loads(str(data[META_KEY])) if META_KEY in data.files else {}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as err:
        raise FeatureFileError(f"cannot read {path}: {err}") from err


def read_features(path: str | Path, layers: list[str] | None = None) -> FeatureFile:
    """Read one feature file; ``layers`` restricts which layer keys are loaded (error if one is missing).

    Accepts the current ``(T, D)`` layout and the prototype's ``(1, T, D)``. Never unpickles.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            available = sort_layer_keys(data.files)
            if not available:
                raise FeatureFileError(f"{path}: no layer_k/conv_k arrays (keys: {sorted(data.files)})")
            wanted = available if layers is None else list(layers)
            missing = [k for k in wanted if k not in available]
            if missing:
                raise FeatureFileError(f"{path}: missing {missing}; it has {available}")
            arrays = {}
            for key in wanted:
                value = data[key]
                if value.ndim == 3 and value.shape[0] == 1:
                    value = value[0]  # prototype layout (1, T, D)
                if value.ndim != 2:
                    raise FeatureFileError(f"{path}: {key} has shape {value.shape}, expected (T, D) or (1, T, D)")
                arrays[key] = value
            labels = data[LABELS_KEY] if LABELS_KEY in data.files else None
            intervals = data[INTERVALS_KEY] if INTERVALS_KEY in data.files else None
            meta = json.loads(str(data[META_KEY])) if META_KEY in data.files else {}
    except FeatureFileError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as err:
        raise FeatureFileError(f"cannot read {path}: {err}") from err
    return FeatureFile(stem_of(path), path, arrays, labels, intervals, meta)


def resume_state(path: str | Path, expected_keys: list[str], expected_meta: dict | None = None) -> str:
    """What an existing output means for a resumed run, from one read of the file:

    ``"missing"`` (no file), ``"damaged"`` (unreadable, e.g. half-written by a crash of an older tool: recompute it),
    ``"other_settings"`` (readable, but its metadata differs from ``expected_meta`` or it has none, as prototype
    files: overwriting would lose it),
    ``"incomplete"`` (same settings, an expected key or ``meta`` missing) or ``"complete"``.
    """
    path = Path(path)
    if not path.is_file():
        return "missing"
    try:
        with np.load(path, allow_pickle=False) as data:  # one open: the key list and the metadata
            files = set(data.files)
            meta = json.loads(str(data[META_KEY])) if META_KEY in files else {}  # {}: a prototype file
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError):
        return "damaged"
    if any(meta.get(k) != v for k, v in (expected_meta or {}).items()):
        return "other_settings"
    return "complete" if set(expected_keys) <= files and META_KEY in files else "incomplete"


def is_complete(path: str | Path, expected_keys: list[str], expected_meta: dict | None = None) -> bool:
    """True when ``path`` is a readable feature file holding every expected key, with metadata matching."""
    return resume_state(path, expected_keys, expected_meta) == "complete"


def write_json_atomic(path: str | Path, obj, *, sort_keys: bool = True) -> None:
    """Write strict JSON through a temporary file and ``os.replace`` (manifests, summaries).

    ``sort_keys=False`` keeps insertion order (e.g. layers in numeric order, which sorting would break).
    """
    with _atomic(Path(path), "w") as handle:
        json.dump(obj, handle, indent=2, sort_keys=sort_keys, allow_nan=False)
        handle.write("\n")
