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

import errno
import json
import os
import secrets
import socket
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from layerwise.contract.layout import (
    FRAME_SPAN,
    describe_diff,
    identity_difference,
    parse_layer_key,
    sort_layer_keys,
)
from layerwise.errors import FeatureFileError, OwnFileError, error_text

FEATURE_SUFFIX = "_features.npz"
META_KEY = "meta"
LABELS_KEY = "labels"
INTERVALS_KEY = "intervals"
FORMAT_VERSION = 1
SAVE_DTYPES = {"float32": np.float32, "float16": np.float16}
FBANK_KEY = "fbank"  # optional log-mel filterbank frames (T_fbank, 80) of the utterance, written with --fbank



def feature_path(out_dir: str | Path, stem: str) -> Path:
    return Path(out_dir) / f"{stem}{FEATURE_SUFFIX}"


def stem_of(path: str | Path) -> str:
    """``.../1272-128104-0000_features.npz -> "1272-128104-0000"``."""
    name = Path(path).name
    return name[: -len(FEATURE_SUFFIX)] if name.endswith(FEATURE_SUFFIX) else Path(path).stem


def list_feature_files(features_dir: str | Path) -> list[Path]:
    """Every ``*_features.npz`` directly in ``features_dir``, sorted by file name."""
    return sorted(Path(features_dir).glob(f"*{FEATURE_SUFFIX}"), key=lambda p: p.name)


AUDIO_SUFFIXES = (".flac", ".wav", ".mp3", ".ogg", ".opus", ".m4a", ".sph")  # what "audio, not features" looks like
ANALYSIS_SUFFIX = "_analysis"  # an analysis output folder named after its features folder (docs, the wrapper)
OUTPUT_SUMMARY = "summary.json"  # what an analysis's or a comparison's output folder holds (its features_dir inside)
CHECKPOINT_CONFIG = "config.json"  # a save_pretrained folder: this config beside weight files of these patterns
CHECKPOINT_WEIGHTS = ("*.safetensors", "*.bin")


def look_around(folder: str | Path) -> str:
    """Why ``folder`` holds no ``*_features.npz`` and where the right folder is, for a "not found" message: a path
    that is a file (a feature file: its folder; audio: extract it first), a model checkpoint (give it to
    extract_features.py), what a folder holds (subfolders with feature files — the folder one level above the
    features —, audio, an analysis's or a comparison's outputs: the features folder its ``summary.json`` names, or
    the sibling without ``_analysis``). ``""`` when nothing useful is found."""
    folder = Path(folder)
    if folder.is_file():
        return _file_hint(folder)
    if not folder.is_dir():
        return ""
    hints = []
    holders = sorted({p.parent for p in folder.glob(f"*/*{FEATURE_SUFFIX}")} |
                     {p.parent for p in folder.glob(f"*/*/*{FEATURE_SUFFIX}")})
    if holders:
        shown = ", ".join(str(h) for h in holders[:5]) + (" …" if len(holders) > 5 else "")
        hints.append(f"{len(holders)} folder(s) below it hold feature files: {shown}; pass one of them")
    if (folder / CHECKPOINT_CONFIG).is_file() and any(next(folder.glob(p), None) for p in CHECKPOINT_WEIGHTS):
        hints.append(f"it is a model checkpoint ({CHECKPOINT_CONFIG} + weights), not features: give it to "
                     f"extract_features.py --model_name {folder} and pass the output folder it prints")
    if folder.name.endswith(ANALYSIS_SUFFIX) or (folder / OUTPUT_SUMMARY).is_file():
        hints.append(_output_folder_hint(folder))
    audio = next((p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES), None)
    if audio is not None and not holders:
        hints.append(f"it holds audio ({audio.relative_to(folder)} …), not features: run extract_features.py "
                     f"--audio_dir {folder} first and pass the output folder it prints")
    return "; ".join(hints)


def _file_hint(path: Path) -> str:
    """What to pass instead of the file ``path``: its folder for a feature file, an extraction for audio, the
    features folder of an analysis's or comparison's output file."""
    if path.name.endswith(FEATURE_SUFFIX):
        return f"this is a feature file; pass its folder {path.parent}"
    if path.suffix.lower() in AUDIO_SUFFIXES:
        return (f"this is an audio file, not features: run extract_features.py --audio_dir {path.parent} first and "
                f"pass the output folder it prints")
    if (path.parent / OUTPUT_SUMMARY).is_file():
        return f"this is a file of an output folder, not a folder of features: {_output_folder_hint(path.parent)}"
    return "this is a file, not a folder: pass the folder of *_features.npz files that extract_features.py wrote"


def _output_folder_hint(folder: Path) -> str:
    """An analysis's or comparison's output folder: the features folder(s) its ``summary.json`` names (or, without
    one, the sibling without ``_analysis`` when it holds features)."""
    sources, kind = [], "an analysis"
    try:
        summary = read_own(folder / OUTPUT_SUMMARY, what="summary", rebuild="")
    except OwnFileError:
        summary = None
    if isinstance(summary, dict):
        kind = "a comparison" if "folders" in summary else kind
        named = [summary.get("features_dir")] + [f.get("features_dir") for f in summary.get("folders") or []
                                                 if isinstance(f, dict)]
        sources = list(dict.fromkeys(str(d) for d in named if isinstance(d, str) and d))
    if not sources:
        sibling = folder.with_name(folder.name.removesuffix(ANALYSIS_SUFFIX))
        sources = [str(sibling)] if sibling != folder and list_feature_files(sibling) else []
    where = f"; its features are in {' and '.join(sources)}: pass {'that' if len(sources) == 1 else 'one'}" \
        if sources else ""
    return f"it is {kind} output folder (report.html, {OUTPUT_SUMMARY}){where}"


HALF_DTYPES = ("float16", "bfloat16")  # compute dtypes whose range (float16: 65504) a model's activations can overflow


def nonfinite_remedy(compute_dtype: str | None) -> str:
    """What to do about NaN/inf features computed in ``compute_dtype`` (a file's ``meta["compute_dtype"]``): a half
    type can overflow, so float32 compute; float32 (or unrecorded) cannot be helped by another dtype, so the
    features or the model are damaged. Never advises the setting already in use."""
    if compute_dtype in HALF_DTYPES:
        return (f"it was computed in {compute_dtype}, whose range the model can overflow: re-extract with --dtype "
                f"float32")
    computed = f"computed in {compute_dtype}" if compute_dtype else "its compute dtype is not recorded"
    return (f"{computed}, so no dtype change helps: the file or the model is damaged — re-extract the file "
            f"(extract_features.py recomputes non-finite files) and check the checkpoint's weights for NaN/inf")


def write_features(
    path: str | Path,
    arrays: dict[str, np.ndarray],
    meta: dict,
    *,
    save_dtype: str = "float32",
    labels: np.ndarray | None = None,
    intervals: np.ndarray | None = None,
    fbank: np.ndarray | None = None,
) -> None:
    """Atomically write one feature file. Nothing is written when any check fails.

    arrays : layer key -> ndarray of shape (n_frames, dim); cast to ``save_dtype`` (a finite value that float16
        cannot hold, |x| > 65504, is an error rather than a silent inf).
    meta : JSON-serialisable dict, stored under ``meta``.
    labels, intervals : for spans, shapes (n,) and (n, 2) in seconds.
    fbank : optional log-mel frames (T_fbank, n_mels), stored float32 under ``fbank``.
    Raises :class:`FeatureFileError` (an input error: the file fails, the run goes on) for NaN/inf features.
    """
    payload = encode_features(arrays, meta, save_dtype=save_dtype, labels=labels, intervals=intervals, fbank=fbank)
    with atomic_open(Path(path), "wb") as handle:
        np.savez(handle, **payload)


def encode_features(arrays: dict[str, np.ndarray], meta: dict, *, save_dtype: str = "float32",
                    labels: np.ndarray | None = None, intervals: np.ndarray | None = None,
                    fbank: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The arrays :func:`write_features` stores (same arguments, same checks and errors), not written: what
    ``extract_features.py --no_store`` feeds the analysis (:func:`decode_features`), so its numbers equal a stored
    file's."""
    payload: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        if parse_layer_key(key) is None:
            raise ValueError(f"not a layer key: {key!r}")
        if value.ndim != 2:
            raise ValueError(f"{key}: expected a 2-D (T, D) array, got shape {value.shape}")
        if not np.isfinite(value).all():
            raise FeatureFileError(f"{key} contains NaN or inf (compute_dtype={meta.get('compute_dtype')!r}); "
                                   f"nothing written — {nonfinite_remedy(meta.get('compute_dtype'))}")
        with np.errstate(over="ignore"):  # overflow is checked, with a clearer message, just below
            stored = np.ascontiguousarray(value, dtype=SAVE_DTYPES[save_dtype])
        if stored.dtype == np.float16 and np.any(np.isinf(stored) & np.isfinite(value)):
            raise FeatureFileError(f"{key}: values up to {np.nanmax(np.abs(value[np.isfinite(value)])):.6g} overflow "
                             f"float16 (max {np.finfo(np.float16).max:.6g}); save this model with "
                             f"--save_dtype float32")
        payload[key] = stored
    if labels is not None:
        payload[LABELS_KEY] = np.asarray(labels, dtype=np.str_)
    if intervals is not None:
        payload[INTERVALS_KEY] = np.asarray(intervals, dtype=np.float64).reshape(-1, 2)
    if fbank is not None:
        payload[FBANK_KEY] = np.ascontiguousarray(fbank, dtype=np.float32)
    payload[META_KEY] = np.array(json.dumps({"format_version": FORMAT_VERSION, **meta}, sort_keys=True))
    return payload


def decode_features(path: str | Path, payload: dict[str, np.ndarray]) -> FeatureFile:
    """The :class:`FeatureFile` that :func:`read_features` would return for ``payload`` (from
    :func:`encode_features`) written at ``path``: the same arrays and dtypes, the metadata through the same JSON."""
    layers = {key: payload[key] for key in sort_layer_keys(payload)}
    return FeatureFile(stem_of(path), Path(path), layers, payload.get(LABELS_KEY), payload.get(INTERVALS_KEY),
                       json.loads(str(payload[META_KEY])), payload.get(FBANK_KEY))


TMP_SEP = "~"  # temporaries: .{name}~{host}~{pid}~{random}.tmp (the writer is known, so a stale one can be told)
_HOST = socket.gethostname().replace(TMP_SEP, "-") or "host"


def temporary_writer(tmp: Path) -> tuple[str, str, int] | None:
    """``(target name, host, pid)`` of a temporary written by :func:`atomic_open`, or None for other names."""
    parts = tmp.name[1:].rsplit(TMP_SEP, 3) if tmp.name.startswith(".") and tmp.name.endswith(".tmp") else []
    if len(parts) != 4 or not parts[2].isdigit():
        return None
    return parts[0], parts[1], int(parts[2])


def writer_alive(host: str, pid: int) -> bool:
    """Whether a temporary's writer may still be running: always True for another host (it cannot be checked
    from here); on this host, whether the process exists."""
    if host != _HOST:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _process_umask() -> int:
    """The process umask, read without changing it (``os.umask`` can only be read by setting it, a process-wide side
    effect racing other threads): from /proc on Linux, else the usual 022."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


TMP_TRIES = 100  # names tried when a random temporary name is taken (as tempfile.mkstemp does)


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs):
    """An open handle on a temporary file in ``path``'s folder, moved onto ``path`` with ``os.replace`` on success
    and removed on any failure (also KeyboardInterrupt, at any point: its name is known before it is created); an
    OSError of the temporary names ``path``, the file the caller asked for. Same folder = same filesystem, so the
    move is atomic; the name ``.{name}~{host}~{pid}~{random}.tmp`` does not end in FEATURE_SUFFIX, so a crash never
    leaves a look-alike file, and host and pid tell a stale temporary (writer gone) from a live one. Every output of
    the package goes through here.
    """
    path = Path(path)
    prefix = f".{path.name}{TMP_SEP}{_HOST}{TMP_SEP}{os.getpid()}{TMP_SEP}"
    tmp = candidate = None
    try:
        for _ in range(TMP_TRIES):
            candidate = str(path.parent / f"{prefix}{secrets.token_hex(4)}.tmp")
            try:
                tmp = candidate  # before the file exists: a stop while it is made still finds it below
                fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
                break
            except FileExistsError:
                tmp = None  # another writer's: never ours to remove
        else:
            raise FileExistsError(errno.EEXIST, f"no free temporary name after {TMP_TRIES} tries", str(path))
        os.fchmod(fd, 0o666 & ~_process_umask())
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename in (None, tmp, candidate):  # named as the file asked for
            err.filename = str(path)
        raise


@dataclass
class FeatureFile:
    """One utterance's features as read back.

    layers : layer key -> ndarray (n_frames, dim), in numeric key order, as stored (float32 or float16).
    labels, intervals : span labels (n,) and [start, end) seconds (n, 2), or None for frame features.
    meta : the stored metadata (empty for prototype files).
    fbank : log-mel frames (T_fbank, n_mels) float32 when extracted with ``fbank``, else None.
    """

    stem: str
    path: Path
    layers: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    intervals: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    fbank: np.ndarray | None = None


# What reading back a file can raise when it is truncated, damaged or not what was written: a cut zip (BadZipFile,
# EOFError), a CRC mismatch or bad deflate data (BadZipFile, zlib.error), JSON or UTF-8 that does not decode
# (ValueError), a member missing (KeyError), a file gone or unreadable (OSError).
READ_ERRORS = (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError, zlib.error)
REBUILD_FEATURES = ("re-run extract_features.py with this folder's settings (it recomputes a damaged file), or "
                    "remove the file")


@contextmanager
def guarded(path: str | Path, *, what: str, rebuild: str, error: type[Exception] = OwnFileError,
            also: tuple[type[Exception], ...] = ()):
    """The one guard for reading back a file this tool wrote: any :data:`READ_ERRORS` raised inside the block
    becomes ``error`` naming ``what``, the file, the cause and the command that rebuilds it.

    also : further exception types that mean "the file's contents do not fit together" inside the block (e.g. the
    ``StatsError`` of arrays whose shapes disagree), turned into ``error`` the same way."""
    try:
        yield Path(path)
    except (*READ_ERRORS, *also) as err:
        state = "it is missing" if isinstance(err, FileNotFoundError) else "damaged or incomplete"
        raise error(f"cannot read {what} {path}: {state} ({type(err).__name__}: {error_text(err)}); "
                    f"rebuild it: {rebuild}") from err


OWN_KINDS = ("npz", "json", "text")


def read_own(path: str | Path, *, what: str, rebuild: str, kind: str | None = None):
    """Read back a file this tool wrote: ``kind`` ``"npz"`` -> dict key -> ndarray (every array read, never
    unpickled), ``"json"`` -> the decoded object, ``"text"`` -> its text (UTF-8, BOM dropped); ``None``: by the
    suffix (``.npz``, ``.json``, anything else text).

    what : what the file is, for the message (``"partial statistics"``); rebuild : the command that rewrites it.
    Raises :class:`~layerwise.errors.OwnFileError` (a usage error, exit 2) naming the file, the cause and ``rebuild``
    when it is missing, truncated or does not decode.
    """
    path = Path(path)
    kind = kind or {".npz": "npz", ".json": "json"}.get(path.suffix, "text")
    if kind not in OWN_KINDS:
        raise ValueError(f"kind={kind!r} not in {OWN_KINDS}")
    with guarded(path, what=what, rebuild=rebuild):
        if kind == "npz":
            with np.load(path, allow_pickle=False) as data:
                return {key: data[key] for key in data.files}
        text = path.read_text(encoding="utf-8-sig")
        return json.loads(text) if kind == "json" else text


def read_features(path: str | Path, layers: list[str] | None = None) -> FeatureFile:
    """Read one feature file; ``layers`` restricts which layer keys are loaded (error if one is missing).

    Accepts the current ``(T, D)`` layout and the prototype's ``(1, T, D)``. Never unpickles. Read through
    :func:`guarded`: a truncated or damaged file is a :class:`FeatureFileError` naming it and how to rebuild it.
    """
    path = Path(path)
    with guarded(path, what="feature file", rebuild=REBUILD_FEATURES, error=FeatureFileError), \
            np.load(path, allow_pickle=False) as data:
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
        fbank = data[FBANK_KEY] if FBANK_KEY in data.files else None
    return FeatureFile(stem_of(path), path, arrays, labels, intervals, meta, fbank)


def resume_state(path: str | Path, expected_keys: list[str], identity: dict,
                 expected_shapes=None, file_facts: dict | None = None) -> tuple[str, str]:
    """What an existing output means for a resumed run: ``(state, detail)``, from one full read of the file.

    ``"missing"`` (no file); ``"damaged"`` (unreadable, CRC error, an array with NaN/inf, a key missing, an array
    whose shape or dtype is not what the run writes, span labels/intervals that do not match the rows: recompute
    it); ``"other_settings"`` (readable, but its identity differs from ``identity`` — detail names the differing
    settings — or it has no metadata, as prototype files: never overwritten without ``overwrite``); ``"complete"``.
    Every array is read, so a file is complete only when all of it decodes, is finite and has the expected form.

    expected_shapes : ``callable(meta) -> {key: (rows or None, dim)}`` — the shape each layer array must have for
        the file with this metadata (rows None: not known from the metadata, e.g. span files).
    file_facts : per-file inputs the stored file must have been made from (e.g. ``alignment_sha256``); a
        difference is ``"other_settings"`` (the input changed since), never complete.
    """
    path = Path(path)
    if not path.is_file():
        return "missing", ""
    try:
        with np.load(path, allow_pickle=False) as data:
            files = set(data.files)
            if META_KEY not in files:
                return "other_settings", "no metadata (a file of an older tool)"
            meta = json.loads(str(data[META_KEY]))
            why = _other_settings(meta, identity, file_facts)
            if why:
                return "other_settings", why
            missing = [k for k in expected_keys if k not in files]
            if missing:
                return "damaged", f"missing {missing}"
            why, rows = _damaged_arrays(data, files, expected_keys, identity,
                                        expected_shapes(meta) if expected_shapes else {})
            if not why and identity.get("span") not in (None, FRAME_SPAN):
                why = _damaged_spans(data, files, rows)
            if why:
                return "damaged", why
    except READ_ERRORS as err:
        return "damaged", error_text(err)
    return "complete", ""


def _other_settings(meta: dict, identity: dict, file_facts: dict | None) -> str:
    """Why a stored file belongs to another run (its identity, or an input that changed since); ``""`` if not."""
    differences = identity_difference(meta, identity)
    if differences:
        return differences
    changed = [k for k, v in (file_facts or {}).items() if meta.get(k) != v]
    return f"{describe_diff(meta, file_facts, changed)}: its input changed since" if changed else ""


def _damaged_arrays(data, files: set[str], expected_keys: list[str], identity: dict,
                    shapes: dict) -> tuple[str, set[int]]:
    """(why an array is damaged or ``""``, the row counts of the layer arrays): non-finite values anywhere; a layer
    array of another shape or dtype than the run writes (``shapes``: key -> (rows or None, dim or None))."""
    rows = set()
    for key in sorted(files - {META_KEY, LABELS_KEY}):
        value = data[key]
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            return f"{key} holds NaN or inf", rows
        if key in expected_keys:
            want_rows, want_dim = shapes.get(key, (None, None))
            if value.ndim != 2 or value.dtype != SAVE_DTYPES.get(identity.get("save_dtype"), value.dtype) \
                    or (want_dim is not None and value.shape[1] != want_dim) \
                    or (want_rows is not None and value.shape[0] != want_rows):
                return (f"{key} has shape {value.shape} {value.dtype}, expected ({want_rows or 'T'}, "
                        f"{want_dim or 'D'}) {identity.get('save_dtype')}"), rows
            rows.add(value.shape[0])
    return "", rows


def _damaged_spans(data, files: set[str], rows: set[int]) -> str:
    """Why a span file's labels and intervals do not fit its layer rows (``""`` when they do)."""
    if LABELS_KEY not in files or INTERVALS_KEY not in files:
        return "a span file without labels or intervals"
    labels, intervals = data[LABELS_KEY], data[INTERVALS_KEY]
    if rows != {len(labels)} or intervals.shape != (len(labels), 2) or not (intervals[:, 1] > intervals[:, 0]).all():
        return f"{len(labels)} labels, intervals {intervals.shape}, layer rows {sorted(rows)} do not match"
    return ""


def write_json_atomic(path: str | Path, obj, *, sort_keys: bool = True) -> None:
    """Write strict JSON through a temporary file and ``os.replace`` (manifests, summaries).

    ``sort_keys=False`` keeps insertion order (e.g. layers in numeric order, which sorting would break).
    """
    with atomic_open(path, "w") as handle:
        json.dump(obj, handle, indent=2, sort_keys=sort_keys, allow_nan=False)
        handle.write("\n")


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a text file (csv, tsv, html) atomically."""
    with atomic_open(path, "w", newline="") as handle:
        handle.write(text)
