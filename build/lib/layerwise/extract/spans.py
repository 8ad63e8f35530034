"""Segments -> frame selection -> one pooled vector per segment.

Pure functions of (frame features, frame centre times, segments, audio length); no model, no files written. Reading
alignment files (TextGrid, CTM, LibriSpeech word lines, the reference JSON) is ``alignments.py``. The frame math
(hop, receptive field, frame rate) lives in :mod:`layerwise.contract.grid`: callers pass the frame centre times it
computes, ``centres[i] = (i * hop + receptive_field / 2) / sample_rate`` seconds (HuBERT-base:
``(i * 320 + 200) / 16000``).

Frame-selection rules for a segment ``[start, end)`` (seconds), with ``T`` frames (docs/spans.md has the tables):

- ``centre`` (default): frames whose centre lies in ``[start, end)`` (a centre within ``BOUNDARY_SECONDS`` of a
  boundary counts as on it); if there is none (a segment shorter than a
  frame hop), the single frame whose centre is nearest the segment midpoint ``(start + end) / 2``; distances within
  ``TIE_SECONDS`` of each other count as a tie, which goes to the earlier frame.
- ``pasad`` (exactly the rule of Pasad et al.'s code, ``get_segment_idx``): with ``period = 1 / frame_rate``,
  ``first = floor(start / period)``, ``end = ceil(end / period)`` in float64 on the times as read, no rounding
  (``0.14 / 0.02 = 7.000000000000001``, so ``[0, 0.14)`` takes frames 0..7); pooling ``middle_third`` then trims
  ``k = floor((end - first + 1) / 3)`` frames from each side; then ``end == first -> end + 1`` and
  ``end == T + 1 -> T``; frames ``first .. end - 1``. Where the reference would index past the last frame (a
  segment inside the audio but starting in its last ``period``, or ending up to one frame after it), only existing
  frames are used: the range is cut at ``T`` and, if that leaves nothing, frame ``T - 1`` (whose receptive field
  covers the end of the audio) is taken.

Pooling over the selected frames ``f_0 .. f_{n-1}``:

- ``mean`` (default): the mean of all n frames.
- ``middle_third``: the reference's trim ``k = floor((n + 1) / 3)`` from each side, frames ``[k, n - k)``, or
  ``f_k`` alone when that is empty (n = 2). For ``pasad`` the trim is applied before the end-of-audio fix, as there.

Out-of-range segments (:func:`check_segments`, every limit compared in whole samples): a segment that is empty or
reversed, starts at or after the end of the audio, or ends more than ``tolerance_s`` (one frame) after it is an ``InputError`` naming it, or is dropped and
counted with ``out_of_range="drop"``. :func:`pool_segments` re-checks with ``"fail"``, so no segment is ever pooled
from frames made up at the end of the audio.

Label normalisation: labels are stripped of surrounding whitespace; a segment whose label is, case-insensitively,
in ``silence_labels`` (default ``{"", "sil", "sp", "spn"}``) is skipped, and an empty label always is; for phones,
trailing ARPAbet stress digits are removed (``AH0 -> AH``) unless the caller keeps stress.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from layerwise.contract.alignments import Segment
from layerwise.errors import SegmentRangeError

FRAME_RULES = ("centre", "pasad")
POOLINGS = ("mean", "middle_third")
OUT_OF_RANGE_POLICIES = ("fail", "drop")
TIE_SECONDS = 1e-9  # centre-rule fallback: distances to the midpoint closer than 1 ns are a tie (earlier frame wins)
# Centre rule: a centre within 1 ns of a segment boundary counts as ON it (inside at the start, outside at the end),
# so binary rounding of times read as decimals never moves a frame across a boundary (a frame hop is ≥ 1e5 ns).
BOUNDARY_SECONDS = 1e-9
# Segment limits are compared in whole samples (:func:`to_samples`); callers pass the audio's rate, and this one
# (HuBERT's input rate; 62.5 µs per sample, far below the 10 ms of alignment times) is the default grid.
LIMIT_SAMPLE_RATE = 16000



def to_samples(seconds: float, sample_rate: int) -> int:
    """``seconds`` as the nearest whole sample at ``sample_rate`` Hz: the unit in which every limit is compared
    (``4.03 · 16000 = 64480.00000000001`` is sample 64480, exactly the audio's 64160 + one 320-sample frame)."""
    return round(float(seconds) * sample_rate)


def check_segments(
    segments: list[Segment],
    *,
    audio_seconds: float,
    tolerance_s: float,
    out_of_range: str = "fail",
    source: str = "alignment",
    sample_rate: int = LIMIT_SAMPLE_RATE,
) -> tuple[list[Segment], int]:
    """The segments that lie in the audio, and how many were dropped.

    audio_seconds : length of the audio (n_samples / sample_rate). tolerance_s : how far (seconds) a segment may
    end after the audio (one frame of the model: hop / sample_rate; alignments are rounded to 10 ms).
    out_of_range : ``"fail"`` raises :class:`SegmentRangeError` for the first bad segment (naming it, the alignment's
    length and the audio's); ``"drop"`` leaves bad segments out and counts them. ``source`` names the file.
    Every limit is compared in whole samples at ``sample_rate`` (:func:`to_samples`), never in binary seconds:
    kept are segments with ``0 ≤ start < n_audio`` and ``start < end ≤ n_audio + n_tolerance`` samples.
    """
    if out_of_range not in OUT_OF_RANGE_POLICIES:
        raise ValueError(f"out_of_range={out_of_range!r} not in {OUT_OF_RANGE_POLICIES}")
    n_audio, n_tolerance = to_samples(audio_seconds, sample_rate), to_samples(tolerance_s, sample_rate)

    def span(seg: Segment) -> tuple[int, int]:
        return to_samples(seg.start, sample_rate), to_samples(seg.end, sample_rate)

    aligned = max((s.end for s in segments), default=0.0)
    ordered = sorted(segments, key=lambda x: (x.start, x.end))
    for before, seg in itertools.pairwise(ordered):
        (b0, b1), (s0, s1) = span(before), span(seg)
        if s0 < b1 and s1 > s0 and b1 > b0:  # never a policy matter
            raise SegmentRangeError(f"{source}: segments {before.label!r} [{before.start}, {before.end}) and "
                                    f"{seg.label!r} [{seg.start}, {seg.end}) s overlap; a tier's segments must not "
                                    f"overlap (check the alignment file)")
    kept = []
    for seg in segments:
        start, end = span(seg)
        if not end > start:
            problem = "is empty or reversed"
        elif start < 0:
            problem = "starts before 0 s"
        elif start >= n_audio:
            problem = "starts after the end of the audio"
        elif end > n_audio + n_tolerance:
            problem = f"ends more than {tolerance_s * 1000:g} ms (one frame) after the end of the audio"
        else:
            kept.append(seg)
            continue
        if out_of_range == "fail":
            raise SegmentRangeError(
                f"{source}: segment {seg.label!r} [{seg.start}, {seg.end}) s {problem}: the alignment runs to "
                f"{aligned} s, the audio is {audio_seconds} s long; check that the alignment belongs to this audio "
                f"(or drop such segments with out_of_range='drop')")
    return kept, len(segments) - len(kept)


def _middle_third(first: int, end: int) -> tuple[int, int]:
    """The reference's trim of the frame range ``[first, end)``: ``k = floor((end - first + 1) / 3)`` per side."""
    k = (end - first + 1) // 3
    return first + k, end - k


def select_frames(
    centres: np.ndarray,
    start: float,
    end: float,
    *,
    rule: str = "centre",
    frame_rate: float | None = None,
    pooling: str = "mean",
) -> np.ndarray:
    """Indices (int64, ascending, never empty) of the frames that segment ``[start, end)`` averages.

    centres : ndarray (T,), float seconds, increasing — frame centre times from the model adapter.
    rule : ``centre`` or ``pasad``; ``pasad`` needs ``frame_rate`` (Hz). pooling : ``mean`` or ``middle_third``
    (module docstring). The segment is assumed inside the audio (:func:`check_segments`).
    """
    n_frames = len(centres)
    if n_frames == 0:
        raise ValueError("no frames: centres is empty")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling={pooling!r} not in {POOLINGS}")
    if rule == "centre":
        lo = int(np.searchsorted(centres, start - BOUNDARY_SECONDS, side="left"))  # first centre >= start
        hi = int(np.searchsorted(centres, end - BOUNDARY_SECONDS, side="left"))  # first centre >= end
        if hi <= lo:
            distance = np.abs(np.asarray(centres, np.float64) - 0.5 * (start + end))
            return np.array([int(np.flatnonzero(distance <= distance.min() + TIE_SECONDS)[0])], dtype=np.int64)
        if pooling == "middle_third":
            lo, hi = _middle_third(lo, hi)
            hi = max(hi, lo + 1)  # n = 2: the trim leaves nothing; f_1 as in the reference
        return np.arange(lo, hi, dtype=np.int64)
    if rule == "pasad":
        if frame_rate is None or frame_rate <= 0:
            raise ValueError(f"rule='pasad' needs a positive frame_rate, got {frame_rate!r}")
        period = 1.0 / frame_rate  # 1 / 50.0 == 0.02 == 320 / 16000 as float64: the reference's stride_sec
        first, last = math.floor(float(start) / period), math.ceil(float(end) / period)
        if pooling == "middle_third":
            first, last = _middle_third(first, last)
        if last == first:
            last += 1
        if last == n_frames + 1:
            last = n_frames
        # Beyond the reference (which fails here): never a frame that does not exist.
        first, last = max(first, 0), min(last, n_frames)
        if last <= first:
            first, last = min(first, n_frames - 1), min(first, n_frames - 1) + 1
        return np.arange(first, last, dtype=np.int64)
    raise ValueError(f"rule={rule!r} not in {FRAME_RULES}")


def pool_segments(
    frame_feats: dict[str, np.ndarray],
    centres: np.ndarray,
    segments: list[Segment],
    *,
    audio_seconds: float,
    tolerance_s: float,
    rule: str = "centre",
    pooling: str = "mean",
    frame_rate: float | None = None,
    source: str = "alignment",
    sample_rate: int = LIMIT_SAMPLE_RATE,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Pool frame features into one vector per segment.

    frame_feats : layer key -> ndarray (T, D), any float dtype; every array must have T == len(centres)
        (layers with other frame counts, e.g. ``conv_k`` outputs, need their own call with their own centres).
    centres : ndarray (T,), frame centre times in seconds (increasing).
    segments : normalised (``normalise_segments``) and in range (``check_segments``), in the output order.
    audio_seconds, tolerance_s : the audio length and one model frame (seconds); a segment outside raises
        :class:`SegmentRangeError` (``check_segments`` with ``"fail"``, limits in whole samples at
        ``sample_rate``): pooling never makes up a frame.
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
    check_segments(segments, audio_seconds=audio_seconds, tolerance_s=tolerance_s, out_of_range="fail",
                   source=source, sample_rate=sample_rate)

    # Averaging matrix W (n_segments, T): row s holds 1/m on the m frames pooled for segment s,
    # so pooled = W @ feats for every layer with one matrix product.
    weights = np.zeros((len(segments), len(centres)), dtype=np.float64)
    for row, seg in enumerate(segments):
        chosen = select_frames(centres, seg.start, seg.end, rule=rule, frame_rate=frame_rate, pooling=pooling)
        weights[row, chosen] = 1.0 / len(chosen)
    pooled = {
        key: (weights @ np.asarray(value, dtype=np.float64)).astype(np.float32) for key, value in frame_feats.items()
    }
    labels = np.array([seg.label for seg in segments], dtype=np.str_)
    intervals = np.array([[seg.start, seg.end] for seg in segments], dtype=np.float64).reshape(-1, 2)
    return pooled, labels, intervals
