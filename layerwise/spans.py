"""Forced alignments -> segments -> frame selection -> one pooled vector per segment.

Pure functions of (frame features, frame centre times, segments); no model, no files written. The frame math
(hop, receptive field, frame rate) lives in ``model.py``: callers pass the frame centre times it computes,
``centres[i] = (i * hop + receptive_field / 2) / sample_rate`` seconds (HuBERT-base: ``(i * 320 + 200) / 16000``).

Frame-selection rules for a segment ``[start, end)`` (seconds), with ``T`` frames:

- ``centre`` (default): frames whose centre lies in ``[start, end)``; if there is none (a segment shorter than
  a frame hop), the single frame whose centre is nearest the segment midpoint ``(start + end) / 2``
  (ties go to the earlier frame).
- ``pasad`` (the rule of Pasad et al.'s fairseq-based code): frames ``floor(start * frame_rate)`` ...
  ``ceil(end * frame_rate) - 1`` inclusive, clipped to ``[0, T - 1]``, at least one frame. The products are
  rounded to 6 decimals first so that e.g. ``0.3 * 50 = 15.000000000000002`` counts as 15.

Pooling over the selected frames ``f_0 .. f_{n-1}``:

- ``mean`` (default): the mean of all n frames.
- ``middle_third``: the mean of frames ``f_{n//3} .. f_{n - n//3 - 1}``, i.e. the half-open range
  ``[n//3, n - n//3)``. Never empty: n=1 -> f_0; n=2 -> both; n=3 -> f_1; n=4 -> f_1, f_2; n=5 -> f_1..f_3;
  n=6 -> f_2, f_3. Published analyses use it for phones only; the caller decides.

Label normalisation: labels are stripped of surrounding whitespace; a segment whose label is, case-insensitively,
in ``silence_labels`` (default ``{"", "sil", "sp", "spn"}``) is skipped, and an empty label always is; for phones, trailing ARPAbet stress
digits are removed (``AH0 -> AH``) unless the caller keeps stress.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from .errors import InputError

TEXTGRID_SUFFIXES = (".textgrid",)  # compared lower-case: matches .TextGrid and .textgrid
DEFAULT_SILENCE_LABELS = frozenset({"", "sil", "sp", "spn"})
FRAME_RULES = ("centre", "pasad")
POOLINGS = ("mean", "middle_third")
_STRESS_RE = re.compile(r"(?<=\D)[0-9]+$")  # trailing stress digits after a non-digit: AH0 -> AH, ER12 -> ER
_PASAD_DECIMALS = 6  # rounding of time * frame_rate before floor/ceil


class AlignmentError(InputError):
    """An alignment folder or TextGrid file that cannot be used."""


@dataclass(frozen=True)
class Segment:
    """One aligned interval: ``[start, end)`` in seconds and its label."""

    start: float
    end: float
    label: str


def find_alignments(alignment_dir: str | Path) -> dict[str, Path]:
    """TextGrid files anywhere below ``alignment_dir``, by utterance stem (file name without suffix).

    Returns stem -> path, sorted by stem. Raises ``AlignmentError`` when the folder does not exist or when two
    files share a stem (both paths named), since the utterance they belong to would be ambiguous.
    """
    root = Path(alignment_dir)
    if not root.is_dir():
        raise AlignmentError(f"alignment_dir {str(root)!r} is not a folder")
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in TEXTGRID_SUFFIXES or not path.is_file():
            continue
        stem = path.stem
        if stem in found:
            raise AlignmentError(
                f"two alignments for utterance {stem!r}: {found[stem]} and {path}; keep one per utterance"
            )
        found[stem] = path
    return dict(sorted(found.items()))


def read_segments(textgrid_path: str | Path, tier: str) -> list[Segment]:
    """All labelled intervals of interval tier ``tier`` in a TextGrid, in time order (parsed with praatio).

    Empty intervals are dropped here already (praatio ``includeEmptyIntervals=False``); other silence labels
    are left for ``normalise_segments``. Raises ``AlignmentError`` when the file cannot be parsed or the tier
    is missing (naming the tiers present) or is a point tier.
    """
    from praatio import textgrid  # deferred: only extraction with --span needs it

    path = Path(textgrid_path)
    try:
        grid = textgrid.openTextgrid(str(path), includeEmptyIntervals=False, reportingMode="silence")
    except Exception as err:  # praatio raises a variety of types for malformed files
        raise AlignmentError(f"cannot read TextGrid {path}: {err}") from err
    if tier not in grid.tierNames:
        raise AlignmentError(f"{path}: no tier {tier!r}; tiers present: {list(grid.tierNames)}")
    entries = grid.getTier(tier).entries
    segments = []
    for entry in entries:
        if len(entry) != 3:
            raise AlignmentError(f"{path}: tier {tier!r} is a point tier, expected an interval tier")
        segments.append(Segment(float(entry[0]), float(entry[1]), str(entry[2])))
    return sorted(segments, key=lambda s: (s.start, s.end))


def strip_stress(label: str) -> str:
    """``"AH0" -> "AH"``, ``"ER1" -> "ER"``, ``"B" -> "B"``: trailing digits after a non-digit removed."""
    return _STRESS_RE.sub("", label)


def normalise_segments(
    segments: list[Segment],
    *,
    silence_labels=DEFAULT_SILENCE_LABELS,
    strip_stress_digits: bool = False,
) -> list[Segment]:
    """Drop silence/empty segments, strip whitespace and (phones: ``strip_stress_digits=True``) stress digits.

    A label that is empty after stripping is always dropped, whether or not ``""`` is in ``silence_labels``.

    For phones pass ``strip_stress_digits=not keep_stress``; for words leave it False.
    Raises ``AlignmentError`` for a segment with ``end < start``.
    """
    silence = {s.strip().lower() for s in silence_labels}
    kept = []
    for seg in segments:
        if seg.end < seg.start:
            raise AlignmentError(f"segment {seg.label!r} ends before it starts: [{seg.start}, {seg.end})")
        label = seg.label.strip()
        if not label or label.lower() in silence:
            continue
        if strip_stress_digits:
            label = strip_stress(label)
        kept.append(Segment(seg.start, seg.end, label))
    return kept


def read_spans(
    textgrid_path: str | Path,
    tier: str,
    *,
    silence_labels=DEFAULT_SILENCE_LABELS,
    strip_stress_digits: bool = False,
) -> list[Segment]:
    """``read_segments`` then ``normalise_segments``: the non-silent, normalised segments of one tier."""
    return normalise_segments(
        read_segments(textgrid_path, tier), silence_labels=silence_labels, strip_stress_digits=strip_stress_digits
    )


def select_frames(
    centres: np.ndarray, start: float, end: float, *, rule: str = "centre", frame_rate: float | None = None
) -> np.ndarray:
    """Indices (int64, ascending, never empty) of the frames that belong to segment ``[start, end)``.

    centres : ndarray (T,), float seconds, increasing — frame centre times from the model adapter.
    rule : ``centre`` or ``pasad`` (see the module docstring); ``pasad`` needs ``frame_rate`` (Hz).
    """
    n_frames = len(centres)
    if n_frames == 0:
        raise ValueError("no frames: centres is empty")
    if rule == "centre":
        lo = int(np.searchsorted(centres, start, side="left"))  # first centre >= start
        hi = int(np.searchsorted(centres, end, side="left"))  # first centre >= end
        if hi > lo:
            return np.arange(lo, hi, dtype=np.int64)
        midpoint = 0.5 * (start + end)
        return np.array([int(np.argmin(np.abs(centres - midpoint)))], dtype=np.int64)  # argmin: earliest tie
    if rule == "pasad":
        if frame_rate is None or frame_rate <= 0:
            raise ValueError(f"rule='pasad' needs a positive frame_rate, got {frame_rate!r}")
        first = math.floor(round(start * frame_rate, _PASAD_DECIMALS))
        last = math.ceil(round(end * frame_rate, _PASAD_DECIMALS)) - 1
        first = min(max(first, 0), n_frames - 1)
        last = min(max(last, first), n_frames - 1)
        return np.arange(first, last + 1, dtype=np.int64)
    raise ValueError(f"rule={rule!r} not in {FRAME_RULES}")


def pooled_indices(indices: np.ndarray, pooling: str = "mean") -> np.ndarray:
    """The subset of selected frame indices that pooling averages: all (``mean``) or ``[n//3, n - n//3)``."""
    if pooling == "mean":
        return indices
    if pooling == "middle_third":
        n = len(indices)
        return indices[n // 3 : n - n // 3]
    raise ValueError(f"pooling={pooling!r} not in {POOLINGS}")


def pool_segments(
    frame_feats: dict[str, np.ndarray],
    centres: np.ndarray,
    segments: list[Segment],
    *,
    rule: str = "centre",
    pooling: str = "mean",
    frame_rate: float | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Pool frame features into one vector per segment.

    frame_feats : layer key -> ndarray (T, D), any float dtype; every array must have T == len(centres)
        (layers with other frame counts, e.g. ``conv_k`` outputs, need their own call with their own centres).
    centres : ndarray (T,), frame centre times in seconds (increasing).
    segments : already normalised (see ``normalise_segments``), in the order wanted in the output.
    rule, pooling, frame_rate : see the module docstring; ``frame_rate`` (Hz) is required for ``pasad``.

    Returns ``(pooled, labels, intervals)``: pooled key -> ndarray (n_segments, D) float32 (means accumulated
    in float64), labels unicode ndarray (n_segments,), intervals float64 ndarray (n_segments, 2) of
    ``[start, end]`` seconds. With no segments the arrays have n_segments = 0.
    """
    centres = np.asarray(centres, dtype=np.float64)
    if centres.ndim != 1:
        raise ValueError(f"centres must be 1-D (T,), got shape {centres.shape}")
    if len(centres) > 1 and np.any(np.diff(centres) <= 0):
        raise ValueError("centres must be strictly increasing")
    if rule not in FRAME_RULES:
        raise ValueError(f"rule={rule!r} not in {FRAME_RULES}")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling={pooling!r} not in {POOLINGS}")
    for key, value in frame_feats.items():
        if value.ndim != 2 or value.shape[0] != len(centres):
            raise ValueError(f"{key}: shape {value.shape} does not match {len(centres)} frame centres (T, D)")

    # Averaging matrix W (n_segments, T): row s holds 1/m on the m frames pooled for segment s,
    # so pooled = W @ feats for every layer with one matrix product.
    weights = np.zeros((len(segments), len(centres)), dtype=np.float64)
    for row, seg in enumerate(segments):
        chosen = pooled_indices(select_frames(centres, seg.start, seg.end, rule=rule, frame_rate=frame_rate), pooling)
        weights[row, chosen] = 1.0 / len(chosen)
    pooled = {
        key: (weights @ np.asarray(value, dtype=np.float64)).astype(np.float32) for key, value in frame_feats.items()
    }
    labels = np.array([seg.label for seg in segments], dtype=np.str_)
    intervals = np.array([[seg.start, seg.end] for seg in segments], dtype=np.float64).reshape(-1, 2)
    return pooled, labels, intervals
