"""ZeroSpeech ABX error rates, computed exactly like fastabx (bootphon/fastabx 0.9.0, torchdtw 0.4.2).

Pure numpy + numba; no torch, no polars.  Written from the definitions read in fastabx's source
(``src/fastabx/{zerospeech,task,cell,subsample,group,distance,score,dataset}.py``) and torchdtw's
``src/torchdtw/csrc/dtw.cpp``.  Summary of those definitions:

* Items: ZeroSpeech item file ``#file onset offset #phone prev-phone next-phone speaker`` (times in s).
  Frames of an item: ``[ceil(onset*rate - 0.5), floor(offset*rate - 0.5) + 1)``, computed in decimal
  arithmetic (fastabx uses polars Decimals), so 0.27 s at 50 Hz is frame 13 exactly.
* Cells (``on = #phone``):
  - ``within_speaker_triphone``: by = (prev-phone, next-phone, speaker).  A and X are the *same* item set
    (phone p in that context/speaker), B = items of another phone q with the same by-values.  Only A sets
    with >= 2 items give cells (``MIN_A_LEN = 2``).  X == A (the same item) is excluded; cell size
    ``na * nb * (na - 1)``.
  - ``within_speaker_phoneme`` (context "any"): by = (speaker,), otherwise as above.
  - ``across_speaker_triphone``: by = (prev-phone, next-phone), across = speaker.  A and B share context and
    speaker s; X has A's phone and context and a speaker s_x != s.  No minimum size; size ``na * nb * nx``.
  - ``across_speaker_phoneme`` (context "any", extra): by = (), across = speaker.
* Distances between frames: ``angular`` = arccos(clip(<u, v>, -1, 1)) / pi on L2-normalised frames
  (a zero frame becomes the constant vector 1/sqrt(D); fastabx also appends a 1e-12 "singularity border"
  column whose effect, +-1e-24 on dot products, vanishes in float32 and is not reproduced);
  ``euclidean`` = ||u - v||_2 computed directly (torch.cdist, ``donot_use_mm_for_euclid_dist``).  All in
  float32 like fastabx/torch (the summation order of the euclidean distance mimics torch's CPU kernel).
* DTW (torchdtw): cost[i,j] = d[i,j] + min(cost[i-1,j], cost[i-1,j-1], cost[i,j-1]) (each step adds d once,
  no diagonal weight), float32; result = cost[-1,-1] / len(path), where the path is backtracked from the end
  preferring diagonal if c_diag <= c_left and c_diag <= c_up, else left (target index - 1) if
  c_left <= c_up, else up (X index - 1).  X is always the first (row) sequence.
* Cell score (error rate): ``1 - sum_{x,a,b} 0.5 * (1 - sign(d(x,a) - d(x,b))) / size``; ties count 0.5,
  the excluded X == A diagonal counts 0.
* Collapse (``Score.collapse(levels)``): drop the ``*_x`` columns, then plain (unweighted) means:
  first over contexts (prev/next phone; in across mode this mean also runs over speaker_x, which was
  dropped), then over speakers, then the plain mean over the remaining (#phone, #phone_b) pairs.
* Subsampling (``Subsampler``): across mode first keeps, for each (A, B) group, at most ``max_x_across``
  X speakers (a seeded shuffle of the candidate speakers); then each cell keeps at most ``max_size_group``
  items of A, B and X each (a seeded shuffle + head).  fastabx shuffles with polars' RNG, which applies the
  same permutation to every list of equal length; we reproduce that *structure* (same permutation per
  length, so A and X stay in step) with numpy's RNG, so subsampled scores are statistically equivalent to,
  but not bit-identical with, fastabx's.  Without subsampling the results are identical.

Beside the measure: :func:`abx_items_from_segments` builds triphone items from phone alignments (abkhazia's rule,
which made the ZeroSpeech / Libri-light item files), :func:`write_item_file` writes them, and :func:`abx_interval`
gives a percentile bootstrap interval over speakers from the per-cell scores (no DTW recomputed).
"""

from __future__ import annotations

import math
import os
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from pathlib import Path
from typing import Callable, Iterable, Mapping, NamedTuple, Sequence

import numba as nb
import numpy as np

from layerwise.errors import AlignmentError, ItemFileError

__all__ = [
    "ABXInterval",
    "ABXResult",
    "DISTANCES",
    "ITEM_COLUMNS",
    "Item",
    "MODES",
    "abx_error_rates",
    "abx_error_rates_of_items",
    "abx_interval",
    "abx_items_from_segments",
    "dtw",
    "frame_distances",
    "item_frames",
    "read_item_file",
    "slice_items",
    "write_item_file",
]

# ---------------------------------------------------------------------------------------------------------------
# Constants (defined once)
# ---------------------------------------------------------------------------------------------------------------

#: Columns of a ZeroSpeech item file, in order.
ITEM_COLUMNS = ("#file", "onset", "offset", "#phone", "prev-phone", "next-phone", "speaker")
#: Default feature rate (Hz) of ZeroSpeech 2021 / HuBERT-like features.
DEFAULT_RATE = 50.0
#: Minimum number of items in A (== X) for a within-speaker cell (fastabx ``cell.MIN_A_LEN``).
MIN_A_LEN = 2
#: Half-frame shift of the slicing rule ``[ceil(t*rate - 0.5), floor(t*rate - 0.5) + 1)``.
HALF_FRAME = Decimal("0.5")
#: Two phones are neighbours (each other's context) when the second starts at most this long after the first ends:
#: alignment times are written with a few decimals (TextGrid, CTM), so equal times may differ by rounding; 0.1 ms is
#: far above such rounding and far below a 20 ms feature frame or any real silence.
ADJACENT_TOL_S = Decimal("0.0001")
#: Supported distances.
DISTANCES = ("angular", "euclidean")
#: Supported modes -> (by columns, across columns, collapse levels).  The collapse levels are applied in order,
#: each a tuple of columns averaged out; the remaining (#phone, #phone_b) rows are then plainly averaged.
MODES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[tuple[str, ...], ...]]] = {
    "within_speaker_triphone": (
        ("prev-phone", "next-phone", "speaker"), (), (("next-phone", "prev-phone"), ("speaker",))
    ),
    "across_speaker_triphone": (
        ("prev-phone", "next-phone"), ("speaker",), (("next-phone", "prev-phone"), ("speaker",))
    ),
    "within_speaker_phoneme": (("speaker",), (), (("speaker",),)),
    "across_speaker_phoneme": ((), ("speaker",), (("speaker",),)),
}
#: Max number of frame-distance entries computed at once in one block (bounds memory, ~256 MiB float32).
MAX_BLOCK_ENTRIES = 64 * 1024 * 1024
_PI32 = np.float32(math.pi)
#: Vector width (float32 lanes) of torch's CPU cdist reduction we mimic (AVX2 / default build: 8).
_CDIST_LANES = 8


# ---------------------------------------------------------------------------------------------------------------
# Item file and frame slicing
# ---------------------------------------------------------------------------------------------------------------


class Item(NamedTuple):
    """One line of an item file.  ``onset``/``offset`` are exact Decimals in seconds; ``line`` is 1-based (0 for an
    item not read from a file)."""

    file: str
    onset: Decimal
    offset: Decimal
    phone: str
    prev_phone: str
    next_phone: str
    speaker: str
    line: int = 0


# Map of item-file column name -> Item attribute.
_COLUMN_ATTR = {
    "#file": "file",
    "onset": "onset",
    "offset": "offset",
    "#phone": "phone",
    "prev-phone": "prev_phone",
    "next-phone": "next_phone",
    "speaker": "speaker",
}


def _to_decimal(value: str | float | int | Decimal) -> Decimal:
    """Exact decimal of a time or rate.  Floats go through ``repr`` (shortest round-trip), so 0.27 -> 0.27."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise TypeError("a time or rate cannot be a bool")
    if isinstance(value, (int, np.integer)):
        return Decimal(int(value))
    if isinstance(value, (float, np.floating)):
        return Decimal(repr(float(value)))
    return Decimal(str(value).strip())


def read_item_file(path: str | os.PathLike) -> list[Item]:
    """Read a ZeroSpeech item file (``#file onset offset #phone prev-phone next-phone speaker``).

    Whitespace-separated, first line is the header (a UTF-8 BOM is accepted), blank lines are skipped.
    The header must contain the 7 columns of :data:`ITEM_COLUMNS` (any order; extra columns are ignored).

    :raises ItemFileError: (a ValueError) naming the file and line for a bad header, a wrong number of fields,
        a non-numeric / non-finite / negative time, or ``onset > offset``.
    :returns: the items, in file order (``Item.line`` is the 1-based line number).
    """
    path = Path(path)
    with open(path, encoding="utf-8-sig") as f:
        lines = f.read().splitlines()
    header_idx = next((i for i, line in enumerate(lines) if line.strip()), None)
    if header_idx is None:
        raise ItemFileError(f"{path}: empty item file (no header line)")
    header = lines[header_idx].split()
    missing = [c for c in ITEM_COLUMNS if c not in header]
    if missing or len(set(header)) != len(header):
        raise ItemFileError(
            f"{path}:{header_idx + 1}: bad header {header!r}; expected the columns {' '.join(ITEM_COLUMNS)}"
            + (f" (missing {missing})" if missing else " (duplicate column)")
        )
    pos = {c: header.index(c) for c in ITEM_COLUMNS}
    items = []
    for i in range(header_idx + 1, len(lines)):
        raw = lines[i]
        if not raw.strip():
            continue
        fields = raw.split()
        where = f"{path}:{i + 1}"
        if len(fields) != len(header):
            raise ItemFileError(
                f"{where}: expected {len(header)} fields ({' '.join(header)}), got {len(fields)}: {raw!r}"
            )
        values = {}
        for col in ITEM_COLUMNS:
            v = fields[pos[col]]
            if col in ("onset", "offset"):
                try:
                    d = Decimal(v)
                except InvalidOperation:
                    raise ItemFileError(f"{where}: {col} {v!r} is not a number") from None
                if not d.is_finite() or d < 0:
                    raise ItemFileError(f"{where}: {col} {v!r} must be a finite non-negative time in seconds")
                values[_COLUMN_ATTR[col]] = d
            else:
                values[_COLUMN_ATTR[col]] = v
        if values["onset"] > values["offset"]:
            raise ItemFileError(f"{where}: onset {values['onset']} > offset {values['offset']}")
        items.append(Item(**values, line=i + 1))
    return items


def _item_field(value: str, what: str, where: str) -> str:
    """A text field of an item file: non-empty and without whitespace (the format is whitespace-separated)."""
    value = str(value)
    if not value or any(ch.isspace() for ch in value):
        raise ItemFileError(f"{where}: {what} {value!r} must be non-empty and contain no whitespace")
    return value


def write_item_file(items: Sequence[Item], path: str | os.PathLike) -> Path:
    """Write ``items`` as a ZeroSpeech item file: the header :data:`ITEM_COLUMNS`, then one line per item.

    Times (seconds) are written as the exact decimals they hold (``Decimal`` in plain notation, no exponent), so
    :func:`read_item_file` gives the same items back (``Item.line`` then holds the line number: item ``i`` is on
    line ``i + 2``).

    :param items: (n_items,) :class:`Item` (``line`` is not written).
    :raises ItemFileError: for a field that is empty or contains whitespace, or a time that is negative,
        non-finite or has ``onset > offset``; nothing is written then.
    :returns: the path written.
    """
    path = Path(path)
    lines = [" ".join(ITEM_COLUMNS)]
    for i, it in enumerate(items):
        where = f"item {i} ({it.file} {it.onset} {it.offset})"
        onset, offset = _to_decimal(it.onset), _to_decimal(it.offset)
        if not (onset.is_finite() and offset.is_finite()) or onset < 0 or onset > offset:
            raise ItemFileError(f"{where}: times must be finite, >= 0 and onset <= offset")
        texts = [_item_field(getattr(it, _COLUMN_ATTR[c]), c, where)
                 for c in ("#file", "#phone", "prev-phone", "next-phone", "speaker")]
        lines.append(" ".join([texts[0], format(onset, "f"), format(offset, "f"), *texts[1:]]))
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def _file_runs(stem: str, segs: Sequence[tuple[Decimal, Decimal, str]]) -> list[list[tuple[Decimal, Decimal, str]]]:
    """Split one file's time-ordered phones ``(onset, offset, phone)`` into runs of adjacent phones: a new run
    starts where a phone begins more than :data:`ADJACENT_TOL_S` after the previous one ends (a removed silence).

    :raises AlignmentError: for an empty or reversed phone, or phones out of time order / overlapping.
    """
    runs: list[list[tuple[Decimal, Decimal, str]]] = []
    prev_end = None
    for k, (onset, offset, phone) in enumerate(segs):
        if not (onset.is_finite() and offset.is_finite()) or onset < 0 or offset <= onset:
            raise AlignmentError(f"{stem}: phone {k} ({phone!r} {onset}-{offset} s) must have 0 <= onset < offset")
        if prev_end is not None and onset < prev_end - ADJACENT_TOL_S:
            raise AlignmentError(f"{stem}: phone {k} ({phone!r} at {onset} s) starts before the previous one ends "
                                 f"({prev_end} s): phones must be in time order and not overlap")
        if prev_end is None or onset - prev_end > ADJACENT_TOL_S:
            runs.append([])
        runs[-1].append((onset, offset, phone))
        prev_end = offset
    return runs


def abx_items_from_segments(
    segments: Iterable[tuple[str, float | str | Decimal, float | str | Decimal, str]],
    *,
    speaker_of: Mapping[str, str] | Callable[[str], str],
) -> list[Item]:
    """Triphone ABX items (ZeroSpeech item-file rows) from phone alignments.

    The rule, as abkhazia's ``alignment2item`` (bootphon; the tool that wrote the ZeroSpeech / Libri-light item
    files: ``abkhazia/utils/abkhazia2abx.py``, ``segment_extension='single_phone'`` times with triphone context
    columns): an item is one phone; ``prev-phone``/``next-phone`` are the phones just before and after it in the
    same utterance; silences are excluded as main and as context phones (``exclude_phones``), so a phone next to a
    silence is no item.  Here the caller has removed the silences, so a gap of more than :data:`ADJACENT_TOL_S`
    between two phones (where a silence or an unaligned stretch was) separates them: they are not each other's
    context.  Hence, in every run of adjacent phones, the first and the last phone have no context and are not
    items; a run of n >= 3 phones gives n - 2 items.

    :param segments: ``(stem, onset_s, offset_s, phone)`` in seconds, in time order within each stem (stems may
        come one after another or interleaved); floats are taken through their shortest repr (0.27 -> 0.27).
    :param speaker_of: stem -> speaker id, a mapping or a function.
    :returns: the items, files in order of first appearance, each file's items in time order; ``Item.line`` is 0
        (not read from a file).
    :raises AlignmentError: for an empty/reversed, overlapping or out-of-order phone (naming the stem).
    :raises ItemFileError: for a stem, phone or speaker that is empty or contains whitespace, or a stem without
        a speaker.
    """
    per_file: dict[str, list[tuple[Decimal, Decimal, str]]] = defaultdict(list)
    for seg in segments:
        if len(seg) != 4:
            raise AlignmentError(f"a segment must be (stem, onset_s, offset_s, phone), got {seg!r}")
        stem, onset, offset, phone = seg
        stem = _item_field(stem, "stem", f"segment {seg!r}")
        per_file[stem].append((_to_decimal(onset), _to_decimal(offset), _item_field(phone, "phone", stem)))
    lookup = speaker_of.get if isinstance(speaker_of, Mapping) else speaker_of
    items: list[Item] = []
    for stem, segs in per_file.items():
        speaker = lookup(stem)
        if speaker is None:
            raise ItemFileError(f"{stem}: no speaker for this file (speaker_of has no entry)")
        speaker = _item_field(speaker, "speaker", stem)
        for run in _file_runs(stem, segs):
            for (_, _, prev), (onset, offset, phone), (_, _, nxt) in zip(run, run[1:], run[2:]):
                items.append(Item(stem, onset, offset, phone, prev, nxt, speaker))
    return items


def item_frames(
    onset: str | float | Decimal, offset: str | float | Decimal, rate: str | float | Decimal = DEFAULT_RATE
) -> tuple[int, int]:
    """Frame range ``[start, stop)`` of an item: ``[ceil(onset*rate - 0.5), floor(offset*rate - 0.5) + 1)``.

    Computed in exact decimal arithmetic (floats are converted through their shortest repr), so boundary
    times such as 0.27 s at 50 Hz (13.5 - 0.5 = 13 exactly) are not pushed over by binary rounding.

    :param onset: start time in seconds.
    :param offset: end time in seconds.
    :param rate: feature rate in Hz (frames per second).
    :returns: ``(start, stop)`` frame indices, stop exclusive; may be empty (stop <= start).
    """
    r = _to_decimal(rate)
    start = (_to_decimal(onset) * r - HALF_FRAME).to_integral_value(rounding=ROUND_CEILING)
    stop = (_to_decimal(offset) * r - HALF_FRAME).to_integral_value(rounding=ROUND_FLOOR) + 1
    return int(start), int(stop)


# ---------------------------------------------------------------------------------------------------------------
# Frame distances and DTW (numba)
# ---------------------------------------------------------------------------------------------------------------


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation in float32; zero rows become the constant vector 1/sqrt(D) (as fastabx)."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float32))[:, None]
    out = np.empty_like(x)
    zero = norm[:, 0] == 0
    np.divide(x, norm, out=out, where=~zero[:, None])
    if zero.any():
        out[zero] = np.float32(1.0 / math.sqrt(x.shape[1]))
    return out


def frame_distances(x: np.ndarray, y: np.ndarray, distance: str, *, normalized: bool = False) -> np.ndarray:
    """Frame-to-frame distance matrix, float32, shape (len(x), len(y)).

    :param x: (n, D) frames.  :param y: (m, D) frames.
    :param distance: ``"angular"`` (arccos of the clipped dot product of L2-normalised frames, divided by pi,
        in [0, 1]) or ``"euclidean"`` (L2 distance).
    :param normalized: for angular, whether x and y are already L2-normalised.
    """
    if distance == "angular":
        if not normalized:
            x, y = _l2_normalize(x), _l2_normalize(y)
        dots = np.asarray(x, np.float32) @ np.asarray(y, np.float32).T
        np.clip(dots, np.float32(-1), np.float32(1), out=dots)
        d = np.arccos(dots)
        d /= _PI32
        return d
    if distance == "euclidean":
        x32 = np.ascontiguousarray(x, dtype=np.float32)
        y32 = np.ascontiguousarray(y, dtype=np.float32)
        out = np.empty((x32.shape[0], y32.shape[0]), np.float32)
        _euclidean_f32(x32, y32, _CDIST_LANES, out)
        return out
    raise ValueError(f"unknown distance {distance!r}; expected one of {DISTANCES}")


@nb.njit(cache=True, nogil=True)
def _euclidean_f32(x, y, lanes, out):
    """out[i, j] = sqrt(sum_k (x[i,k] - y[j,k])**2) in float32, summed like torch.cdist's CPU kernel
    (``compute_mode="donot_use_mm_for_euclid_dist"``): ``lanes`` partial sums over strided chunks, then
    summed in order; sequential when D < lanes.  Reproducing this order matters for exact ABX ties."""
    n, dim = x.shape
    m = y.shape[0]
    acc = np.zeros(lanes, np.float32)
    full = dim - dim % lanes
    for i in range(n):
        for j in range(m):
            if dim < lanes:
                d = x[i, 0] - y[j, 0]
                s = d * d
                for k in range(1, dim):
                    d = x[i, k] - y[j, k]
                    s = s + d * d
                out[i, j] = np.sqrt(s)
                continue
            for k in range(lanes):
                d = x[i, k] - y[j, k]
                acc[k] = d * d
            for c in range(lanes, full, lanes):
                for k in range(lanes):
                    d = x[i, c + k] - y[j, c + k]
                    acc[k] = acc[k] + d * d
            for k in range(dim - full):
                d = x[i, full + k] - y[j, full + k]
                acc[k] = acc[k] + d * d
            s = acc[0]
            for k in range(1, lanes):
                s = s + acc[k]
            out[i, j] = np.sqrt(s)


@nb.njit(cache=True, nogil=True)
def _dtw_one(d, r0, nr, c0, nc, cost):
    """torchdtw's DTW on d[r0:r0+nr, c0:c0+nc] (float32), using ``cost`` (>= nr*nc float32) as scratch."""
    cost[0] = d[r0, c0]
    for i in range(1, nr):
        cost[i * nc] = d[r0 + i, c0] + cost[(i - 1) * nc]
    for j in range(1, nc):
        cost[j] = d[r0, c0 + j] + cost[j - 1]
    for i in range(1, nr):
        for j in range(1, nc):
            up = cost[(i - 1) * nc + j]
            diag = cost[(i - 1) * nc + j - 1]
            left = cost[i * nc + j - 1]
            m = up
            if diag < m:
                m = diag
            if left < m:
                m = left
            cost[i * nc + j] = d[r0 + i, c0 + j] + m
    # backtrack: path length only
    i = nr - 1
    j = nc - 1
    length = 1
    while i > 0 and j > 0:
        c_up = cost[(i - 1) * nc + j]
        c_left = cost[i * nc + j - 1]
        c_diag = cost[(i - 1) * nc + j - 1]
        if c_diag <= c_left and c_diag <= c_up:
            i -= 1
            j -= 1
        elif c_left <= c_up:
            j -= 1
        else:
            i -= 1
        length += 1
    length += i + j
    return np.float32(cost[nr * nc - 1]) / np.float32(length)


@nb.njit(cache=True, nogil=True)
def _dtw_block(d, r_off, r_len, c_off, c_len, out):
    """out[i, j] = DTW of row-sequence i vs column-sequence j, read from the frame-distance matrix d."""
    maxr = 1
    for i in range(r_len.shape[0]):
        maxr = max(maxr, r_len[i])
    maxc = 1
    for j in range(c_len.shape[0]):
        maxc = max(maxc, c_len[j])
    cost = np.empty(maxr * maxc, dtype=np.float32)
    for i in range(r_len.shape[0]):
        for j in range(c_len.shape[0]):
            out[i, j] = _dtw_one(d, r_off[i], r_len[i], c_off[j], c_len[j], cost)


@nb.njit(cache=True, nogil=True)
def _score_cells(m, x_rows, x_ptr, a_cols, a_ptr, b_cols, b_ptr, symmetric, counts, sizes):
    """'Correct' counts (d(x,a) < d(x,b) -> 1, tie -> 0.5) and sizes of the cells of one block.

    m: (rows, cols) DTW matrix.  Cell k: X rows ``x_rows[x_ptr[k]:x_ptr[k+1]]``, A columns
    ``a_cols[a_ptr[k]:a_ptr[k+1]]``, B columns ``b_cols[b_ptr[k]:b_ptr[k+1]]``.  When ``symmetric``, A and X
    are the same items aligned position by position, and the pair X == A (same position) is skipped
    (fastabx fills that diagonal with +inf, which counts 0); size = nx * (na - 1) * nb, else nx * na * nb.
    """
    ncell = x_ptr.shape[0] - 1
    for k in range(ncell):
        xs = x_rows[x_ptr[k]:x_ptr[k + 1]]
        as_ = a_cols[a_ptr[k]:a_ptr[k + 1]]
        bs = b_cols[b_ptr[k]:b_ptr[k + 1]]
        c = 0.0
        for xi in range(xs.shape[0]):
            row = m[xs[xi]]
            for ai in range(as_.shape[0]):
                if symmetric and ai == xi:
                    continue
                da = row[as_[ai]]
                for bi in range(bs.shape[0]):
                    db = row[bs[bi]]
                    if da < db:
                        c += 1.0
                    elif da == db:
                        c += 0.5
        counts[k] = c
        sizes[k] = xs.shape[0] * bs.shape[0] * (as_.shape[0] - 1 if symmetric else as_.shape[0])


def dtw(x: np.ndarray, y: np.ndarray, distance: str = "angular") -> float:
    """DTW distance between two sequences (n, D) and (m, D), exactly as torchdtw/fastabx (X = x, rows)."""
    d = frame_distances(x, y, distance)
    out = np.empty((1, 1), np.float32)
    _dtw_block(d, np.zeros(1, np.int64), np.array([len(x)]), np.zeros(1, np.int64), np.array([len(y)]), out)
    return float(out[0, 0])


# ---------------------------------------------------------------------------------------------------------------
# Cells, subsampling, scoring, collapse
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class ABXResult:
    """Result of :func:`abx_error_rates`.

    :ivar score: final ABX error rate (0 = perfect, 0.5 = chance), a plain mean as fastabx's ``collapse``.
    :ivar cells: per-cell table, column name -> numpy array, columns as fastabx's ``Score.cells`` CSV
        (``#phone``, context/speaker columns, ``#phone_b``, [``speaker_x``], ``score`` (float32), ``size``).
    :ivar excluded: items not used, as ``(item_index, Item, reason)``; ``excluded_counts`` counts them by reason.
    """

    score: float
    cells: dict[str, np.ndarray]
    mode: str
    distance: str
    n_items: int
    n_items_used: int
    excluded: list[tuple[int, Item, str]] = field(default_factory=list)
    excluded_counts: dict[str, int] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        return list(self.cells)

    def rows(self) -> list[tuple]:
        """Per-cell rows, in :attr:`columns` order."""
        cols = list(self.cells.values())
        if not cols:
            return []
        return [tuple(c[i].item() if hasattr(c[i], "item") else c[i] for c in cols) for i in range(len(cols[0]))]

    def write_csv(self, path: str | os.PathLike) -> None:
        """Write the per-cell table as CSV (same layout as fastabx's ``Score.write_csv``)."""
        with open(path, "w", encoding="utf-8") as f:
            f.write(",".join(self.cells) + "\n")
            for row in self.rows():
                f.write(",".join(str(v) for v in row) + "\n")


def _perm(seed: int, n: int) -> np.ndarray:
    """Seeded permutation of range(n); identical for every list of the same length (as polars' shuffle(seed))."""
    return np.random.default_rng([seed, n]).permutation(n)


def _subsample(indices: np.ndarray, size: int | None, seed: int) -> np.ndarray:
    """At most ``size`` of the (n,) ``indices``: a seeded shuffle + head (all of them, in order, if n <= size)."""
    if size is None or len(indices) <= size:
        return indices
    return indices[_perm(seed, len(indices))[:size]]


def _check_size(name: str, value: int | None) -> int | None:
    """Validate a subsampling limit: None/0 -> None (disabled), else an int >= 2."""
    if value is None or value == 0:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 2:
        raise ValueError(f"{name} must be None/0 (disabled) or an int >= 2, got {value!r}")
    return int(value)


def _check_file_array(name: str, arr: np.ndarray, dim: int | None) -> int:
    """The feature dimension of one file's (T, D) array; raises ValueError for another shape or dimension."""
    if arr.ndim != 2:
        raise ValueError(f"features[{name!r}] must be 2-D (T, D), got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"features[{name!r}] has dimension {arr.shape[1]}, expected {dim}")
    return int(arr.shape[1])


def slice_items(
    features: Mapping[str, np.ndarray], items: Sequence[Item], rate: float | str | Decimal = DEFAULT_RATE, *,
    only: Iterable[int] | None = None,
) -> tuple[list[np.ndarray | None], list[tuple[int, Item, str]]]:
    """The frames of every item (:func:`item_frames` at ``rate``), or why an item cannot be used.

    :param features: file id -> (T, D) array at ``rate`` Hz; only the files the items name are touched.
    :param items: (n_items,) :class:`Item`.  :param rate: feature rate in Hz.
    :param only: indices into ``items`` to slice (default: all); the others stay None and are not listed as
        excluded, so a caller can slice file by file and combine the parts (``frames[i]`` of the part that had i).
    :returns: (frames: (n_items,) list of (n_i, D) float32 copies or None, excluded: ``(index, Item, reason)`` for
        each item of ``only`` that is not used: its file is missing, its frame range is empty (shorter than one
        frame) or beyond the features, or the file holds non-finite values).
    """
    r = _to_decimal(rate)
    frames: list[np.ndarray | None] = [None] * len(items)
    excluded: list[tuple[int, Item, str]] = []
    finite: dict[str, bool] = {}
    dim = None
    for i in range(len(items)) if only is None else only:
        it = items[i]
        if it.file not in features:
            excluded.append((i, it, "missing features for file"))
            continue
        arr = features[it.file]
        if it.file not in finite:
            dim = _check_file_array(it.file, np.asarray(arr), dim)
            finite[it.file] = bool(np.isfinite(arr).all())
        start, stop = item_frames(it.onset, it.offset, r)
        if stop <= start:
            excluded.append((i, it, f"empty frame range [{start}, {stop}) (shorter than one frame at {r} Hz)"))
        elif start < 0 or stop > arr.shape[0]:
            excluded.append((i, it, f"frame range [{start}, {stop}) beyond the features ({arr.shape[0]} frames)"))
        elif not finite[it.file]:
            excluded.append((i, it, "non-finite values in the file's features"))
        else:
            frames[i] = np.array(arr[start:stop], dtype=np.float32)
    return frames, excluded


def _pack_items(
    frames: Sequence[np.ndarray | None], distance: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All used items' frames in one array: (frames (F, D) float32 [L2-normalised for angular], offsets (n_items,)
    int64 (-1 for an unused item), lengths (n_items,) int64)."""
    n = len(frames)
    offsets = np.full(n, -1, np.int64)
    lengths = np.zeros(n, np.int64)
    chunks, total, dim = [], 0, None
    for i, seg in enumerate(frames):
        if seg is None:
            continue
        dim = _check_file_array(f"item {i}", seg, dim)
        chunks.append(np.asarray(seg, np.float32))
        offsets[i], lengths[i] = total, len(seg)
        total += len(seg)
    packed = np.concatenate(chunks, axis=0) if chunks else np.zeros((0, dim or 1), np.float32)
    if distance == "angular":
        packed = _l2_normalize(packed)
    return packed, offsets, lengths


#: Key of an item group: (values of the mode's ``by`` columns, values of its ``across`` columns, #phone).
_GroupKey = tuple[tuple[str, ...], tuple[str, ...], str]
#: Item-file columns a mode may group by, -> Item attribute.
_GROUP_ATTR = {c: _COLUMN_ATTR[c] for c in ("prev-phone", "next-phone", "speaker")}


@dataclass
class _Block:
    """Rows (X items) x columns (target items) whose DTW matrix is computed together, and its cells.

    ``rows``/``cols`` are item indices (into the item list); each cell is ``(key, x, a, b)`` with ``key`` its
    row of the cell table (see :func:`_cell_columns`) and ``x`` (nx,), ``a`` (na,), ``b`` (nb,) int arrays of
    positions in ``rows`` (x) and ``cols`` (a, b).  ``symmetric``: A and X are the same items, in step.
    """

    rows: list[int]
    cols: list[int]
    symmetric: bool
    cells: list[tuple[tuple, np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)


def _group_items(items: Sequence[Item], used: np.ndarray, mode: str) -> dict[_GroupKey, np.ndarray]:
    """Used items grouped by (by values, across values, #phone) of ``mode``.

    :param used: (n_items,) bool, items that have frames.
    :returns: group key -> (n,) int64 item indices in file order; groups in order of first appearance.
    """
    by, across, _ = MODES[mode]
    groups: dict[_GroupKey, list[int]] = defaultdict(list)
    for i in np.flatnonzero(used):
        it = items[i]
        key_by = tuple(getattr(it, _GROUP_ATTR[c]) for c in by)
        key_ac = tuple(getattr(it, _GROUP_ATTR[c]) for c in across)
        groups[(key_by, key_ac, it.phone)].append(int(i))
    return {k: np.asarray(v, np.int64) for k, v in groups.items()}


def _keys_by_context(keys: Sequence[_GroupKey]) -> dict[tuple[str, ...], list[_GroupKey]]:
    """Group keys sharing the same ``by`` values (order of first appearance kept)."""
    by_key: dict[tuple[str, ...], list[_GroupKey]] = defaultdict(list)
    for k in keys:
        by_key[k[0]].append(k)
    return by_key


def _chunk_rows(a_keys: Sequence[_GroupKey], sub: Mapping[_GroupKey, np.ndarray], lengths: np.ndarray,
                col_frames: int) -> list[list[_GroupKey]]:
    """Split the A groups (X rows) of one symmetric block into consecutive chunks such that
    (row frames) x ``col_frames`` stays <= :data:`MAX_BLOCK_ENTRIES` (a single group may exceed it alone).

    :param lengths: (n_items,) frames per item.  :param col_frames: frames of all the block's columns.
    """
    chunks: list[list[_GroupKey]] = []
    chunk: list[_GroupKey] = []
    chunk_frames = 0
    for ka in a_keys:
        f = int(lengths[sub[ka]].sum())
        if chunk and (chunk_frames + f) * col_frames > MAX_BLOCK_ENTRIES:
            chunks.append(chunk)
            chunk, chunk_frames = [], 0
        chunk.append(ka)
        chunk_frames += f
    if chunk:
        chunks.append(chunk)
    return chunks


def _within_block(chunk: Sequence[_GroupKey], keys: Sequence[_GroupKey], cols: np.ndarray,
                  sub: Mapping[_GroupKey, np.ndarray]) -> _Block:
    """Symmetric block: rows = the items of the A groups in ``chunk`` (X == A), columns = ``cols`` (the items
    of every group in ``keys``, one context).  One cell per (A group, B group of another phone)."""
    col_pos = {int(it): p for p, it in enumerate(cols)}
    rows = np.concatenate([sub[k] for k in chunk])
    blk = _Block(rows=list(rows), cols=list(cols), symmetric=True)
    r0 = 0
    for ka in chunk:
        xa = sub[ka]
        xr = np.arange(r0, r0 + len(xa))
        r0 += len(xa)
        ac = np.array([col_pos[int(t)] for t in xa])
        for kq in keys:
            if kq[2] == ka[2]:
                continue
            bc = np.array([col_pos[int(t)] for t in sub[kq]])
            blk.cells.append(((ka[2],) + ka[0] + (kq[2],), xr, ac, bc))
    return blk


def _within_blocks(full: Mapping[_GroupKey, np.ndarray], sub: Mapping[_GroupKey, np.ndarray],
                   lengths: np.ndarray) -> list[_Block]:
    """Within-speaker (symmetric) blocks: per context, A == X groups of >= :data:`MIN_A_LEN` items (counted
    before subsampling) against every group of the context; contexts with a single phone give nothing."""
    blocks: list[_Block] = []
    for keys in _keys_by_context(list(full)).values():
        a_keys = [k for k in keys if len(full[k]) >= MIN_A_LEN]
        if not a_keys or len(keys) < 2:
            continue
        cols = np.concatenate([sub[k] for k in keys])
        col_frames = int(lengths[cols].sum())
        blocks.extend(_within_block(chunk, keys, cols, sub) for chunk in _chunk_rows(a_keys, sub, lengths, col_frames))
    return blocks


def _across_pairs(keys: Sequence[_GroupKey], max_x_across: int | None,
                  seed: int) -> dict[_GroupKey, list[tuple[_GroupKey, _GroupKey]]]:
    """Across-speaker cells of one context: X group -> its (A group, B group) pairs.

    A and B share the across value s (speaker); X has A's phone and another across value, at most
    ``max_x_across`` of them per (A, B) pair (seeded choice among the candidates).
    """
    ab_by_spk: dict[tuple[str, ...], dict[str, _GroupKey]] = defaultdict(dict)  # across value -> phone -> key
    for k in keys:
        ab_by_spk[k[1]][k[2]] = k
    per_x: dict[_GroupKey, list[tuple[_GroupKey, _GroupKey]]] = defaultdict(list)
    for s, phones in ab_by_spk.items():
        for p, ka in phones.items():
            # candidate X speakers for (A phone p, speaker s): other speakers having phone p in this by-group
            cands = [s2 for s2 in ab_by_spk if s2 != s and p in ab_by_spk[s2]]
            for q, kq in phones.items():
                if q == p or not cands:
                    continue
                chosen = cands
                if max_x_across is not None and len(cands) > max_x_across:
                    chosen = [cands[t] for t in _perm(seed, len(cands))[:max_x_across]]
                for s2 in chosen:
                    per_x[ab_by_spk[s2][p]].append((ka, kq))
    return per_x


def _across_block(kx: _GroupKey, pairs: Sequence[tuple[_GroupKey, _GroupKey]],
                  sub: Mapping[_GroupKey, np.ndarray]) -> _Block:
    """Block of one X group: rows = its items, columns = the items of every A and B group it is scored on."""
    rows = sub[kx]
    tkeys = list(dict.fromkeys([k for pair in pairs for k in pair]))
    cols = np.concatenate([sub[k] for k in tkeys])
    starts = {}
    c0 = 0
    for k in tkeys:
        starts[k] = c0
        c0 += len(sub[k])
    blk = _Block(rows=list(rows), cols=list(cols), symmetric=False)
    xr = np.arange(len(rows))
    for ka, kq in pairs:
        ac = np.arange(starts[ka], starts[ka] + len(sub[ka]))
        bc = np.arange(starts[kq], starts[kq] + len(sub[kq]))
        key = (ka[2],) + ka[0] + ka[1] + (kq[2],) + kx[1]
        blk.cells.append((key, xr, ac, bc))
    return blk


def _across_blocks(full: Mapping[_GroupKey, np.ndarray], sub: Mapping[_GroupKey, np.ndarray],
                   max_x_across: int | None, seed: int) -> list[_Block]:
    """Across-speaker blocks, one per (context, X group)."""
    blocks: list[_Block] = []
    for keys in _keys_by_context(list(full)).values():
        per_x = _across_pairs(keys, max_x_across, seed)
        blocks.extend(_across_block(kx, pairs, sub) for kx, pairs in per_x.items())
    return blocks


def _build_blocks(items: Sequence[Item], used: np.ndarray, lengths: np.ndarray, mode: str,
                  max_size_group: int | None, max_x_across: int | None, seed: int) -> list[_Block]:
    """All blocks (and their cells) of ``mode``: group the used items, subsample each group to at most
    ``max_size_group`` items, then build within-speaker (symmetric) or across-speaker blocks.

    :param used: (n_items,) bool.  :param lengths: (n_items,) frames per item.
    """
    full = _group_items(items, used, mode)
    sub = {k: _subsample(v, max_size_group, seed) for k, v in full.items()}
    if not MODES[mode][1]:  # no across column: symmetric, X == A
        return _within_blocks(full, sub, lengths)
    return _across_blocks(full, sub, max_x_across, seed)


def _run_block(blk: _Block, frames: np.ndarray, offsets: np.ndarray, lengths: np.ndarray,
               distance: str) -> tuple[np.ndarray, np.ndarray]:
    """DTW matrix (rows x cols, float32) of one block, then its cells' 'correct' counts and sizes.

    :param frames: (F, D) float32 frames of all used items (L2-normalised for angular).
    :param offsets: (n_items,) int64 first frame of each item in ``frames``.  :param lengths: (n_items,) frames.
    :returns: counts (n_cells,) float64 (ties count 0.5) and sizes (n_cells,) int64.
    """
    rows = np.asarray(blk.rows, np.int64)
    cols = np.asarray(blk.cols, np.int64)
    r_len, c_len = lengths[rows], lengths[cols]
    r_off = np.concatenate(([0], np.cumsum(r_len)[:-1]))
    c_off = np.concatenate(([0], np.cumsum(c_len)[:-1]))
    r_idx = np.concatenate([np.arange(offsets[i], offsets[i] + lengths[i]) for i in rows])
    c_idx = np.concatenate([np.arange(offsets[i], offsets[i] + lengths[i]) for i in cols])
    d = frame_distances(frames[r_idx], frames[c_idx], distance, normalized=True)
    m = np.empty((len(rows), len(cols)), np.float32)
    _dtw_block(d, r_off, r_len, c_off, c_len, m)
    n = len(blk.cells)
    ptrs = []
    flat = []
    for j in (1, 2, 3):
        lens = np.array([len(c[j]) for c in blk.cells], np.int64)
        ptrs.append(np.concatenate(([0], np.cumsum(lens))).astype(np.int64))
        flat.append(np.concatenate([c[j] for c in blk.cells]).astype(np.int64))
    counts = np.zeros(n, np.float64)
    sizes = np.zeros(n, np.int64)
    _score_cells(m, flat[0], ptrs[0], flat[1], ptrs[1], flat[2], ptrs[2], blk.symmetric, counts, sizes)
    return counts, sizes


def _reason_kind(reason: str) -> str:
    """Short kind of an exclusion reason (the part before any detail)."""
    for kind in ("missing features", "empty frame range", "frame range", "non-finite"):
        if reason.startswith(kind):
            return {"frame range": "beyond the features"}.get(kind, kind)
    return reason


def _cell_columns(mode: str) -> list[str]:
    """Key columns of the cell table of ``mode`` (fastabx ``Score.cells`` order), without score and size."""
    by, across, _ = MODES[mode]
    return ["#phone", *by, *across, "#phone_b", *[f"{c}_x" for c in across]]


def _collapse_levels(keys: Sequence[tuple], scores: Sequence[float], mode: str,
                     levels: Sequence[tuple[str, ...]]) -> tuple[list[str], list[tuple], list[float]]:
    """The first steps of fastabx ``Score.collapse``: drop the ``*_x`` columns, then mean out each of ``levels`` in
    turn (plain, unweighted means over the rows sharing the other columns).

    :param keys: (n_cells,) cell keys in :func:`_cell_columns` order.  :param scores: (n_cells,) cell scores.
    :returns: (column names left, rows of their values, the mean score of each row).
    """
    cols = _cell_columns(mode)
    keep = [i for i, c in enumerate(cols) if not c.endswith("_x")]
    names = [cols[i] for i in keep]
    rows = [tuple(k[i] for i in keep) for k in keys]
    vals = [float(s) for s in scores]
    for level in levels:
        idx = [i for i, c in enumerate(names) if c not in level]
        sums: dict[tuple, list[float]] = {}
        for r, v in zip(rows, vals):
            g = tuple(r[i] for i in idx)
            acc = sums.setdefault(g, [0.0, 0])
            acc[0] += v
            acc[1] += 1
        names = [names[i] for i in idx]
        rows = list(sums)
        vals = [s / n for s, n in sums.values()]
    return names, rows, vals


def _collapse(keys: list[tuple], scores: np.ndarray, mode: str) -> float:
    """fastabx ``Score.collapse(levels)``: drop ``*_x`` columns, mean out each level in turn, then plain mean."""
    _, _, vals = _collapse_levels(keys, scores, mode, MODES[mode][2])
    return float(np.mean(vals)) if vals else float("nan")


def _check_arguments(mode: str, distance: str, max_size_group: int | None, max_x_across: int | None,
                     seed: int) -> tuple[int | None, int | None]:
    """Validate the options of :func:`abx_error_rates`; returns the normalised (max_size_group, max_x_across)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {list(MODES)}")
    if distance not in DISTANCES:
        raise ValueError(f"unknown distance {distance!r}; expected one of {DISTANCES}")
    max_size_group = _check_size("max_size_group", max_size_group)
    max_x_across = _check_size("max_x_across", max_x_across)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r}")
    return max_size_group, max_x_across


def _score_blocks(blocks: Sequence[_Block], frames: np.ndarray, offsets: np.ndarray, lengths: np.ndarray,
                  distance: str, n_jobs: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(counts (n_cells,) float64, sizes (n_cells,) int64) of every block, on ``n_jobs`` threads (default: all CPUs)."""

    def work(blk):
        return _run_block(blk, frames, offsets, lengths, distance)

    n_jobs = n_jobs or os.cpu_count() or 1
    if n_jobs > 1 and len(blocks) > 1:
        with ThreadPoolExecutor(n_jobs) as ex:
            return list(ex.map(work, blocks, chunksize=1))
    return [work(b) for b in blocks]


def _assemble_result(blocks: Sequence[_Block], results: Sequence[tuple[np.ndarray, np.ndarray]], mode: str,
                     distance: str, n_items: int, n_used: int, excluded: list[tuple[int, Item, str]]) -> ABXResult:
    """Cell table (scores float32 = 1 - counts / sizes, in block order), collapsed score and exclusions."""
    keys: list[tuple] = []
    counts_l, sizes_l = [], []
    for blk, (counts, sizes) in zip(blocks, results):
        keys.extend(c[0] for c in blk.cells)
        counts_l.append(counts)
        sizes_l.append(sizes)
    counts = np.concatenate(counts_l) if counts_l else np.zeros(0)
    sizes = np.concatenate(sizes_l) if sizes_l else np.zeros(0, np.int64)
    scores = (1.0 - counts / sizes).astype(np.float32)
    cols = _cell_columns(mode)
    table = {c: np.array([k[i] for k in keys], dtype=object) for i, c in enumerate(cols)}
    table["score"] = scores
    table["size"] = sizes.astype(np.int64)
    return ABXResult(
        score=_collapse(keys, scores, mode),
        cells=table,
        mode=mode,
        distance=distance,
        n_items=n_items,
        n_items_used=n_used,
        excluded=excluded,
        excluded_counts=dict(Counter(_reason_kind(r) for _, _, r in excluded)),
    )


def abx_error_rates(
    features: Mapping[str, np.ndarray],
    items: Sequence[Item] | str | os.PathLike,
    *,
    mode: str,
    distance: str = "angular",
    rate: float | str | Decimal = DEFAULT_RATE,
    max_size_group: int | None = None,
    max_x_across: int | None = None,
    seed: int = 0,
    n_jobs: int | None = None,
) -> ABXResult:
    """ABX error rate of ``features`` on ``items``, as fastabx's ``zerospeech_abx``.

    :param features: file id -> (T, D) array of frame features at ``rate`` Hz (cast to float32).
    :param items: list of :class:`Item` (see :func:`read_item_file`) or a path to an item file.
    :param mode: one of ``within_speaker_triphone``, ``across_speaker_triphone``, ``within_speaker_phoneme``
        (and ``across_speaker_phoneme``).
    :param distance: ``"angular"`` (default) or ``"euclidean"``.
    :param rate: feature rate in Hz (frames per second).
    :param max_size_group: max number of A, B and X items per cell (ZeroSpeech: 10); None or 0 disables.
    :param max_x_across: across modes, max number of X speakers per (A, B) group (ZeroSpeech: 5); None/0 disables.
    :param seed: seed of the subsampling.
    :param n_jobs: threads (default: all CPUs).
    :returns: :class:`ABXResult` with the score (error rate in [0, 1], 0.5 = chance), the per-cell table and
        the excluded items (with reasons).
    """
    _check_arguments(mode, distance, max_size_group, max_x_across, seed)
    if isinstance(items, (str, os.PathLike)):
        items = read_item_file(items)
    items = list(items)
    frames, excluded = slice_items(features, items, rate)
    return abx_error_rates_of_items(frames, items, excluded, mode=mode, distance=distance,
                                    max_size_group=max_size_group, max_x_across=max_x_across, seed=seed,
                                    n_jobs=n_jobs)


def abx_error_rates_of_items(
    frames: Sequence[np.ndarray | None],
    items: Sequence[Item],
    excluded: Sequence[tuple[int, Item, str]] = (),
    *,
    mode: str,
    distance: str = "angular",
    max_size_group: int | None = None,
    max_x_across: int | None = None,
    seed: int = 0,
    n_jobs: int | None = None,
) -> ABXResult:
    """:func:`abx_error_rates` from the items' frames already sliced (:func:`slice_items`, e.g. file by file, so
    no caller needs every frame of every file at once).

    :param frames: (n_items,) the (n_i, D) frames of each item, None for an item not used.
    :param items: (n_items,) :class:`Item`.  :param excluded: why items are not used (``slice_items``' list).
    Other parameters and the result as :func:`abx_error_rates`.
    """
    max_size_group, max_x_across = _check_arguments(mode, distance, max_size_group, max_x_across, seed)
    items = list(items)
    if len(frames) != len(items):
        raise ValueError(f"{len(frames)} frame arrays for {len(items)} items")
    packed, offsets, lengths = _pack_items(frames, distance)
    used = offsets >= 0
    blocks = _build_blocks(items, used, lengths, mode, max_size_group, max_x_across, int(seed))
    results = _score_blocks(blocks, packed, offsets, lengths, distance, n_jobs)
    return _assemble_result(blocks, results, mode, distance, len(items), int(used.sum()), list(excluded))


# ---------------------------------------------------------------------------------------------------------------
# Interval: bootstrap over speakers
# ---------------------------------------------------------------------------------------------------------------

#: Default number of bootstrap replicates of :func:`abx_interval` (a percentile interval's ends are stable to about
#: 1e-3 of the error rate with 2000; each replicate is two small matrix products, so this costs milliseconds).
DEFAULT_N_BOOT = 2000
#: The column of the cell table holding the speaker that is resampled (the A/B speaker in across modes).
SPEAKER_COLUMN = "speaker"
_INTERVAL_METHOD = "percentile bootstrap over speakers"


@dataclass(frozen=True)
class ABXInterval:
    """A confidence interval of an ABX error rate (see :func:`abx_interval`).

    :ivar low, high: the interval's ends (error rates in [0, 1]), or None when it cannot be computed.
    :ivar n_boot: bootstrap replicates drawn (0 when none).  :ivar level: coverage (0.95).
    :ivar n_speakers: speakers in the cell table (the resampled units).
    :ivar method: how it was computed.  :ivar reason: why ``low``/``high`` are None, else None.
    """

    low: float | None
    high: float | None
    n_boot: int
    method: str
    level: float
    n_speakers: int
    reason: str | None = None


def _speaker_sums(result: ABXResult) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The collapse of ``result`` up to its speaker level, as per-speaker sums.

    fastabx's collapse means out the levels before the speaker level within each speaker (contexts, and in across
    modes the dropped ``speaker_x``); the speaker level then takes, per remaining group g (the (#phone, #phone_b)
    pair), the plain mean of the rows left.  With a speaker drawn c_s times that mean is
    ``sum_s c_s W[s, g] / sum_s c_s N[s, g]``.

    :returns: (speakers (n_spk,), W (n_spk, n_groups) float64 sums of the rows' scores, N (n_spk, n_groups) float64
        counts of rows).
    """
    levels = MODES[result.mode][2]
    at = next(i for i, lv in enumerate(levels) if SPEAKER_COLUMN in lv)
    if at != len(levels) - 1:
        raise ValueError(f"mode {result.mode!r}: the speaker level must be the collapse's last level")
    cols = _cell_columns(result.mode)
    keys = list(zip(*(result.cells[c] for c in cols))) if len(result.cells["score"]) else []
    names, rows, vals = _collapse_levels(keys, result.cells["score"], result.mode, levels[:at])
    si = names.index(SPEAKER_COLUMN)
    gi = [i for i, c in enumerate(names) if c not in levels[at]]
    speakers = sorted({r[si] for r in rows})
    groups = sorted({tuple(r[i] for i in gi) for r in rows})
    s_pos = {s: k for k, s in enumerate(speakers)}
    g_pos = {g: k for k, g in enumerate(groups)}
    w = np.zeros((len(speakers), len(groups)))
    n = np.zeros((len(speakers), len(groups)))
    for r, v in zip(rows, vals):
        k, j = s_pos[r[si]], g_pos[tuple(r[i] for i in gi)]
        w[k, j] += v
        n[k, j] += 1
    return speakers, w, n


def _replicate_scores(w: np.ndarray, n: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Collapsed score of each replicate: per group the mean over drawn speakers (with multiplicity), then the plain
    mean over the groups some drawn speaker has.

    :param w, n: (n_spk, n_groups) from :func:`_speaker_sums`.  :param counts: (n_rep, n_spk) draws per speaker.
    :returns: (n_rep,) float64 scores (NaN for a replicate without any group).
    """
    num, den = counts @ w, counts @ n
    have = den > 0
    means = np.where(have, num / np.where(have, den, 1.0), 0.0)
    n_groups = have.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return means.sum(axis=1) / n_groups


def abx_interval(result: ABXResult, *, n_boot: int = DEFAULT_N_BOOT, seed: int = 0,
                 level: float = 0.95) -> ABXInterval:
    """Percentile bootstrap interval of ``result.score``, resampling speakers (the independent unit).

    Each replicate draws as many speakers as the cell table has, with replacement (``numpy.random.default_rng(seed)``),
    and recomputes fastabx's collapse from the stored per-cell scores (no DTW again): contexts are averaged within
    each speaker as in the point estimate, then every drawn copy of a speaker counts as one more speaker in the
    speaker mean of each (#phone, #phone_b) pair, then the pairs present are averaged.  With every speaker drawn
    once this is exactly ``result.score``.

    Within-speaker modes resample the ``speaker`` column (A, B and X are that speaker's items).  Across modes resample
    the A/B speaker (``speaker``); ``speaker_x`` is not resampled: fastabx drops it and averages it together with the
    contexts, so a drawn A/B speaker brings its cells with the X speakers they had.  The interval then covers the
    variation over A/B speakers given the X speakers, and is somewhat narrower than a two-way bootstrap would be.

    :param result: from :func:`abx_error_rates` (any mode).
    :param n_boot: replicates (>= 1).  :param seed: seed of the draws.  :param level: coverage in (0, 1).
    :returns: :class:`ABXInterval`; ``low``/``high`` None with a ``reason`` when the table has no cell or only one
        speaker (resampling one speaker cannot show any variation).
    """
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be an int >= 1, got {n_boot!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    speakers, w, n = _speaker_sums(result)
    method = f"{_INTERVAL_METHOD} ({'A/B speaker' if MODES[result.mode][1] else 'speaker'} resampled)"
    if len(speakers) < 2:
        reason = "no ABX cell" if not speakers else f"one speaker ({speakers[0]}): resampling speakers cannot vary"
        return ABXInterval(None, None, 0, method, level, len(speakers), reason)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(speakers), np.full(len(speakers), 1.0 / len(speakers)), size=n_boot)
    scores = _replicate_scores(w, n, counts.astype(np.float64))
    low, high = np.quantile(scores, [(1 - level) / 2, (1 + level) / 2])
    return ABXInterval(float(low), float(high), int(n_boot), method, level, len(speakers))
