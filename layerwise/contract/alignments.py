"""Forced-alignment files -> per-utterance segments, for four formats that all give the same :class:`Segment` list.

Formats (``alignment_format``; ``auto`` picks each file's format from its name):

- ``textgrid``: one Praat TextGrid per utterance, ``<utterance>.TextGrid`` (any case); tiers by name (MFA writes
  ``words`` and ``phones``). Parsed with praatio when the segments are read.
- ``ctm``: ``utt channel start duration label [confidence]`` per line, many utterances per file. A CTM file holds
  one tier, named by the file: ``phones.ctm`` -> ``phones``, ``dev-clean.words.ctm`` -> ``words`` (the last
  dot-separated part of the name before ``.ctm``).
- ``librispeech``: the one-line-per-utterance word alignments of LibriSpeech (``<speaker>-<chapter>.alignment.txt``):
  ``utt ",w1,w2,..." "end1,end2,..."``; an empty word is silence and each time is the *end* of its segment (the
  first starts at 0). Words only: tier ``words``. ``auto`` takes files ending in ``.alignment.txt``; with
  ``alignment_format="librispeech"`` every ``.txt`` file.
- ``json``: the reference layer-wise analysis code's ``alignment_{phone|word}_<split>.json``: label ->
  list of ``[utt, audio_path, start, end]``. ``phone`` files give tier ``phones``, ``word`` files tier ``words``.
  ``auto`` takes ``.json`` files whose name starts with ``alignment_``; ``alignment_format="json"`` every ``.json``.

Times are kept as the float of the decimal text in the file (``float("0.41")``); a CTM end is computed as the
exact decimal sum ``start + duration`` rounded once, so ``0.30 + 0.11`` is the same float as a TextGrid's ``0.41``.
The multi-utterance formats are parsed once by :func:`find_alignments` (their segments are held in memory);
TextGrids are parsed one at a time by :func:`read_segments`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from layerwise.errors import AlignmentError, UsageError, error_text

ALIGNMENT_FORMATS = ("auto", "textgrid", "ctm", "librispeech", "json")
TEXTGRID_SUFFIX = ".textgrid"  # compared lower-case: matches .TextGrid and .textgrid
LIBRISPEECH_AUTO_SUFFIX = ".alignment.txt"
JSON_AUTO_PREFIX = "alignment_"
WORDS_TIER, PHONES_TIER = "words", "phones"
JSON_UNIT_TIERS = {"phone": PHONES_TIER, "word": WORDS_TIER}  # reference file unit -> tier name
_LIBRISPEECH_LINE = re.compile(r'^(\S+)\s+"([^"]*)"\s+"([^"]*)"\s*$')



@dataclass(frozen=True)
class Segment:
    """One aligned interval: ``[start, end)`` in seconds and its label."""

    start: float
    end: float
    label: str


@dataclass(frozen=True)
class Source:
    """Where one utterance's alignment lives (opaque to callers: pass it to :func:`read_segments`).

    ``path`` is the file; ``tiers`` holds the already parsed segments of the multi-utterance formats
    (tier -> segments), ``None`` for a TextGrid (parsed on demand).
    """

    path: Path
    format: str
    tiers: dict[str, tuple[Segment, ...]] | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        return self.path.name

    def __str__(self) -> str:
        return str(self.path)


def _time(text: str, where: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation as err:
        raise AlignmentError(f"{where}: {text!r} is not a time in seconds") from err
    if not value.is_finite():
        raise AlignmentError(f"{where}: {text!r} is not a finite time")
    return value


def _auto_format(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(TEXTGRID_SUFFIX):
        return "textgrid"
    if name.endswith(".ctm"):
        return "ctm"
    if name.endswith(LIBRISPEECH_AUTO_SUFFIX):
        return "librispeech"
    if name.endswith(".json") and name.startswith(JSON_AUTO_PREFIX):
        return "json"
    return None


def _file_format(path: Path, alignment_format: str) -> str | None:
    if alignment_format == "auto":
        return _auto_format(path)
    suffix = {"textgrid": (TEXTGRID_SUFFIX,), "ctm": (".ctm",), "librispeech": (".txt",), "json": (".json",)}
    return alignment_format if path.name.lower().endswith(suffix[alignment_format]) else None


def _read_text(path: Path) -> str:
    """The text of alignment file ``path`` (UTF-8, a byte-order mark dropped), or an AlignmentError naming it."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise AlignmentError(f"cannot read alignment file {path}: {error_text(err)}") from err


def _ctm_tier(path: Path) -> str:
    """``phones.ctm`` -> ``phones``; ``dev-clean.words.ctm`` -> ``words``."""
    return path.name[: -len(".ctm")].rsplit(".", 1)[-1]


def _read_ctm(path: Path) -> dict[str, dict[str, list[Segment]]]:
    tier = _ctm_tier(path)
    out: dict[str, dict[str, list[Segment]]] = {}
    for number, line in enumerate(_read_text(path).splitlines(), 1):
        fields = line.split()
        if not fields or line.lstrip().startswith(";;"):
            continue
        where = f"{path}:{number}"
        if len(fields) not in (5, 6):
            raise AlignmentError(f"{where}: expected 'utt channel start duration label [confidence]', got {line!r}")
        start, duration = _time(fields[2], where), _time(fields[3], where)
        out.setdefault(fields[0], {}).setdefault(tier, []).append(
            Segment(float(start), float(start + duration), fields[4]))
    return out


def _read_librispeech(path: Path) -> dict[str, dict[str, list[Segment]]]:
    out: dict[str, dict[str, list[Segment]]] = {}
    for number, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        match = _LIBRISPEECH_LINE.match(line)
        if match is None:
            raise AlignmentError(f'{where}: expected \'utt "w1,w2,..." "end1,end2,..."\', got {line[:80]!r}')
        utt, words, ends = match.group(1), match.group(2).split(","), match.group(3).split(",")
        if len(words) != len(ends):
            raise AlignmentError(f"{where}: {len(words)} words but {len(ends)} end times for {utt}")
        segments, start = [], Decimal(0)
        for word, end_text in zip(words, ends):
            end = _time(end_text, where)
            segments.append(Segment(float(start), float(end), word))
            start = end
        if utt in out:
            raise AlignmentError(f"{where}: utterance {utt} appears twice in {path.name}; keep one line per utterance")
        out[utt] = {WORDS_TIER: segments}
    return out


def _read_json(path: Path) -> dict[str, dict[str, list[Segment]]]:
    unit = next((u for u in JSON_UNIT_TIERS if f"_{u}_" in f"_{path.stem.lower()}_"), None)
    if unit is None:
        raise AlignmentError(f"{path}: cannot tell phones from words; name it alignment_phone_<split>.json or "
                             f"alignment_word_<split>.json as the reference code does")
    try:
        content = json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        raise AlignmentError(f"cannot read JSON alignment {path}: {error_text(err)}") from err
    if not isinstance(content, dict):
        raise AlignmentError(f"{path}: expected an object label -> [[utt, audio_path, start, end], ...]")
    tier = JSON_UNIT_TIERS[unit]
    out: dict[str, dict[str, list[Segment]]] = {}
    for label, occurrences in content.items():
        for item in occurrences:
            if not isinstance(item, (list, tuple)) or len(item) != 4:
                raise AlignmentError(f"{path}: label {label!r}: expected [utt, audio_path, start, end], got {item!r}")
            utt, _, start, end = item
            where = f"{path} ({utt}, {label!r})"
            out.setdefault(str(utt), {}).setdefault(tier, []).append(
                Segment(float(_time(str(start), where)), float(_time(str(end), where)), str(label)))
    return out


_READERS = {"ctm": _read_ctm, "librispeech": _read_librispeech, "json": _read_json}


def find_alignments(alignment_dir: str | Path, alignment_format: str = "auto") -> dict[str, Source]:
    """Every utterance with an alignment anywhere below ``alignment_dir``: stem -> :class:`Source`, sorted by stem.

    alignment_format : one of ``ALIGNMENT_FORMATS`` (module docstring says which files each takes).
    Raises ``UsageError`` for an unknown format and ``AlignmentError`` when the folder does not exist, a file
    cannot be parsed, or one utterance is found in two files (both named: the utterance would be ambiguous). Two
    tiers of one utterance may come from two files of the same format (``phones.ctm`` and ``words.ctm``).
    """
    if alignment_format not in ALIGNMENT_FORMATS:
        raise UsageError(f"alignment_format={alignment_format!r} not in {ALIGNMENT_FORMATS}")
    root = Path(alignment_dir)
    if not root.is_dir():
        raise AlignmentError(f"alignment_dir {str(root)!r} is not a folder")
    found: dict[str, Source] = {}
    parsed: dict[str, dict[str, tuple[Path, list[Segment]]]] = {}  # utt -> tier -> (file, segments)
    for path in sorted(root.rglob("*")):
        fmt = _file_format(path, alignment_format)
        if fmt is None or not path.is_file():
            continue
        if fmt == "textgrid":
            stem = path.name[: -len(TEXTGRID_SUFFIX)]
            if stem in found or stem in parsed:
                other = found[stem].path if stem in found else next(iter(parsed[stem].values()))[0]
                raise AlignmentError(f"two alignments for utterance {stem!r}: {other} and {path}; keep one")
            found[stem] = Source(path, fmt)
            continue
        for utt, tiers in _READERS[fmt](path).items():
            if utt in found:
                raise AlignmentError(f"two alignments for utterance {utt!r}: {found[utt].path} and {path}; keep one")
            for tier, segments in tiers.items():
                earlier = parsed.setdefault(utt, {}).get(tier)
                if earlier is not None and earlier[0] != path:
                    raise AlignmentError(f"two alignments for tier {tier!r} of utterance {utt!r}: {earlier[0]} and "
                                         f"{path}; keep one")
                parsed[utt].setdefault(tier, (path, []))[1].extend(segments)
    for utt, tiers in parsed.items():
        first = min(p for p, _ in tiers.values())
        found[utt] = Source(first, _file_format(first, alignment_format) or "auto",
                            {tier: tuple(segs) for tier, (_, segs) in tiers.items()})
    return dict(sorted(found.items()))


def digest(source: Source, tier: str) -> str:
    """A fingerprint of what ``source`` says for ``tier`` (SHA-256, 16 hex digits): of the file's bytes for a
    TextGrid, of the utterance's parsed segments for the multi-utterance formats. Stored in each span file's
    metadata, so a re-run after the alignments changed does not take the old file as complete."""
    import hashlib

    if source.tiers is None:
        data = Path(source.path).read_bytes()
    else:
        data = repr([(seg.start, seg.end, seg.label) for seg in source.tiers.get(tier, ())]).encode()
    return hashlib.sha256(data).hexdigest()[:16]


def read_segments(source: Source | str | Path, tier: str) -> list[Segment]:
    """All labelled intervals of tier ``tier`` of one utterance, in time order (labels as in the file).

    A TextGrid (a ``Source`` or a path) is parsed with praatio; empty intervals are dropped there already,
    other silence labels are left for :func:`normalise_segments`. Raises ``AlignmentError`` when the file cannot
    be parsed or the tier is missing (naming the tiers present) or is a point tier.
    """
    if not isinstance(source, Source):
        source = Source(Path(source), "textgrid")
    if source.tiers is not None:
        if tier not in source.tiers:
            raise AlignmentError(f"{source.path}: no tier {tier!r} for this utterance; tiers present: "
                                 f"{sorted(source.tiers)}")
        segments = list(source.tiers[tier])
    else:
        segments = _read_textgrid(source.path, tier)
    return sorted(segments, key=lambda s: (s.start, s.end))


def tier_names(source: Source | str | Path) -> list[str]:
    """The tier names of one utterance's alignment (a TextGrid is parsed here), sorted. Raises ``AlignmentError``
    when the file cannot be parsed."""
    if not isinstance(source, Source):
        source = Source(Path(source), "textgrid")
    if source.tiers is not None:
        return sorted(source.tiers)
    return sorted(_open_textgrid(source.path).tierNames)


def _open_textgrid(path: Path):
    from praatio import textgrid  # deferred: only extraction with --span needs it

    try:
        return textgrid.openTextgrid(str(path), includeEmptyIntervals=False, reportingMode="silence")
    except Exception as err:  # praatio raises a variety of types for malformed files
        raise AlignmentError(f"cannot read TextGrid {path}: {error_text(err)}") from err


def _read_textgrid(path: Path, tier: str) -> list[Segment]:
    grid = _open_textgrid(path)
    if tier not in grid.tierNames:
        raise AlignmentError(f"{path}: no tier {tier!r}; tiers present: {list(grid.tierNames)}")
    segments = []
    for entry in grid.getTier(tier).entries:
        if len(entry) != 3:
            raise AlignmentError(f"{path}: tier {tier!r} is a point tier, expected an interval tier")
        segments.append(Segment(float(entry[0]), float(entry[1]), str(entry[2])))
    return segments


# ---- labels: silences dropped, stress digits stripped (the phone rule of spans, ABX items, frame labels) ----

DEFAULT_SILENCE_LABELS = frozenset({"", "sil", "sp", "spn"})
_STRESS_RE = re.compile(r"(?<=\D)[0-9]+$")  # trailing stress digits after a non-digit: AH0 -> AH, ER12 -> ER


def strip_stress(label: str) -> str:
    """``"AH0" -> "AH"``, ``"ER1" -> "ER"``, ``"B" -> "B"``: trailing digits after a non-digit removed."""
    return _STRESS_RE.sub("", label)


def normalise_segments(
    segments: list[Segment],
    *,
    silence_labels=DEFAULT_SILENCE_LABELS,
    strip_stress_digits: bool = False,
) -> list[Segment]:
    """Drop silence/empty-label segments, strip whitespace and (phones: ``strip_stress_digits=True``) stress digits.

    A label that is empty after stripping is always dropped, whether or not ``""`` is in ``silence_labels``.
    For phones pass ``strip_stress_digits=not keep_stress``; for words leave it False. Times are not checked here
    (:func:`check_segments` does, against the audio).
    """
    silence = {s.strip().lower() for s in silence_labels}
    kept = []
    for seg in segments:
        label = seg.label.strip()
        if not label or label.lower() in silence:
            continue
        if strip_stress_digits:
            label = strip_stress(label)
        kept.append(Segment(seg.start, seg.end, label))
    return kept


def read_spans(
    source: Source | str,
    tier: str,
    *,
    silence_labels=DEFAULT_SILENCE_LABELS,
    strip_stress_digits: bool = False,
) -> list[Segment]:
    """``read_segments`` then ``normalise_segments``: the non-silent, normalised segments of one tier.

    source : a :class:`Source` from :func:`find_alignments` (or a TextGrid path).
    """
    return normalise_segments(
        read_segments(source, tier), silence_labels=silence_labels, strip_stress_digits=strip_stress_digits
    )
