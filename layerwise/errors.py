"""The one error tree of the package; the CLIs catch :class:`LayerwiseError` once.

    LayerwiseError
    ├── UsageError            bad arguments, settings or a folder that cannot be used as asked: exit 2
    │   ├── ModelLoadError    the checkpoint cannot be found, loaded or used
    │   ├── DuplicateStemError  two audio files whose feature files would collide
    │   ├── AnalysisError     a folder (or its random-init control) that cannot be analysed as asked
    │   ├── CompareError      folders that cannot be compared as asked
    │   ├── StatsError        frames that do not fit the accumulated statistics, too few frames
    │   ├── OwnFileError      a file this tool wrote earlier cannot be read back (names it and its rebuild command)
    │   └── ItemFileError     a malformed ABX item file (the message names the file and line)
    ├── InputError            one input file cannot be used: extraction records it in failures.tsv and goes on
    │   ├── AudioLoadError    undecodable, empty or unreadable audio
    │   ├── AlignmentError    an alignment folder or file that cannot be used
    │   │   └── SegmentRangeError  a segment outside the audio (or empty, reversed)
    │   ├── FeatureFileError  a feature file that cannot be read or does not follow the format
    │   └── UnsafeArchiveError  an archive member that would land outside the destination
    ├── EmbedError            too few or degenerate points for PCA/t-SNE (that figure is skipped with its reason)
    ├── UndefinedMeasureError a measure undefined for its input (constant layer, one class, too few items): null + why
    └── DataError             a download, verification or extraction failure: exit 1

Messages name parameters (``layers``, ``span``), not flags: the CLIs map them to flags when they print. Each message
says which file and what to do.
"""

from __future__ import annotations


class LayerwiseError(Exception):
    """Base of every error this package raises on purpose."""


def error_text(err: BaseException) -> str:
    """The whole message of ``err`` on one line (every line kept, each run of whitespace, newlines included,
    folded to one space), or the exception's type name when it has no message: the form in which a reason is
    stored (failures.tsv, manifests) and printed."""
    return one_line(str(err)) or type(err).__name__


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines, tabs) folded to one space, stripped: nothing is dropped."""
    return " ".join(str(text).split())


class UsageError(LayerwiseError):
    """Bad usage: arguments, settings, a missing or unusable folder, a model that cannot be loaded. Exit status 2."""


class InputError(LayerwiseError):
    """One input file cannot be used (undecodable audio, alignment beyond the audio, damaged feature file)."""


class ModelLoadError(UsageError):
    """The checkpoint cannot be loaded (offline and not cached, folder missing, weights missing, not a speech SSL
    model, ...)."""


class DuplicateStemError(UsageError):
    """Two audio files share a stem, so their feature files would collide."""


class AnalysisError(UsageError):
    """A folder that cannot be analysed as asked (missing, empty, too few frames, a missing, foreign or mismatched
    random-init control)."""


class CompareError(UsageError):
    """Folders that cannot be compared as asked (missing, no common utterance, other audio, other dims): exit 2."""


class StatsError(UsageError):
    """Inputs that do not fit the accumulated statistics (other layers, dims, unequal row counts, too few frames)."""


class OwnFileError(UsageError):
    """A file this tool wrote and reads back (a partial, a manifest, a file list, a marker) is missing, truncated or
    damaged; the message names the file and the command that rebuilds it (``contract.store.read_own``). Exit 2."""


class ItemFileError(UsageError):
    """A malformed ABX item file (the message names the file and line)."""


class AudioLoadError(InputError):
    """An audio file that cannot be decoded (corrupt, empty, not audio, unreadable)."""


class AlignmentError(InputError):
    """An alignment folder or file that cannot be used."""


class SegmentRangeError(AlignmentError):
    """A segment outside the audio (or empty/reversed): the alignment does not belong to this audio."""


class FeatureFileError(InputError):
    """A feature file that cannot be read or does not follow the format."""


class UnsafeArchiveError(InputError):
    """An archive member would land outside the destination, or cannot be extracted."""


class EmbedError(LayerwiseError):
    """Too few points, or points that cannot be embedded (constant layer)."""


class UndefinedMeasureError(LayerwiseError, ValueError):
    """A measure that is undefined for its input (a constant layer, one label class, fewer items than it needs): the
    measure families report ``None`` for that layer with this message as the reason, never a placeholder number.
    A ``ValueError`` too, so callers that treat bad data as a value error keep doing so."""


class DataError(LayerwiseError):
    """A download, verification or extraction failure (``python -m layerwise.data`` exits 1)."""


def caused_by_interrupt(err: BaseException) -> bool:
    """Whether ``err`` came out of a KeyboardInterrupt (Ctrl-C, or a SIGTERM a CLI turned into one): one in its
    chain of causes or contexts, as when a lazy import wraps it in a RuntimeError. A guard that names one failure
    and goes on (a figure that raised) must re-raise such an error: it is the stop, not a failure."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, KeyboardInterrupt):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False
