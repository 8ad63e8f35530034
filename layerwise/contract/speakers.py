"""LibriSpeech's ``SPEAKERS.TXT``: each speaker's sex, for the gender probe (``measures.gender``).

The file (in the ``LibriSpeech/`` folder of every archive, beside the split folders) holds ``;`` comment lines and
one line per speaker: ``ID | SEX | SUBSET | MINUTES | NAME``, SEX ``F`` or ``M``; a name may itself hold ``|``
(speaker 60: ``|CBW|Simon``), so a line is split at its first four bars only. :func:`find_speakers_file` looks for it
above the audio a feature file records (``meta["source_path"]``: ``LibriSpeech/<split>/<spk>/<chapter>/<utt>.flac``).
No heavy imports.
"""

from __future__ import annotations

from pathlib import Path

from layerwise.errors import AnalysisError

SPEAKERS_FILE = "SPEAKERS.TXT"
SEXES = ("F", "M")  # the values of the SEX column
SEARCH_DEPTH = 4  # folders above an utterance's audio file searched: chapter, speaker, split, LibriSpeech/


def read_speakers(path: str | Path) -> dict[str, str]:
    """Speaker id -> ``"F"`` or ``"M"`` from a ``SPEAKERS.TXT``. Raises AnalysisError naming the file and line for
    a line that is not ``ID | SEX | ...`` with SEX in ``SEXES``, a speaker listed twice, or a file without speakers."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise AnalysisError(f"speakers_file {path}: cannot read it ({type(err).__name__}: {err})") from err
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith(";"):
            continue
        fields = [f.strip() for f in line.split("|", 4)]
        if len(fields) < 2 or not fields[0] or fields[1].upper() not in SEXES:
            raise AnalysisError(f"speakers_file {path} line {number}: {line.strip()!r} is not 'ID | SEX | SUBSET | "
                                f"MINUTES | NAME' with SEX F or M (LibriSpeech's SPEAKERS.TXT)")
        if fields[0] in out:
            raise AnalysisError(f"speakers_file {path} line {number}: speaker {fields[0]} is listed twice")
        out[fields[0]] = fields[1].upper()
    if not out:
        raise AnalysisError(f"speakers_file {path} lists no speaker (only comments or blank lines)")
    return out


def find_speakers_file(meta: dict) -> Path | None:
    """The ``SPEAKERS.TXT`` in a folder above the audio file of ``meta["source_path"]`` (at most ``SEARCH_DEPTH``
    levels up: LibriSpeech keeps it beside the split folders), or None when none is found or no path is recorded."""
    source = meta.get("source_path")
    if not source:
        return None
    for folder in list(Path(source).parents)[:SEARCH_DEPTH]:
        candidate = folder / SPEAKERS_FILE
        if candidate.is_file():
            return candidate
    return None
