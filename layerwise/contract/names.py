"""Names shown to readers: one display name per stored layer key, the model's tag, LibriSpeech speakers, durations.

Every table, axis, legend and figure file name uses :func:`display_name`; the report states the mapping to the
stored keys once with :func:`naming_legend`. No heavy imports (the CLIs import this at start-up).
"""

from __future__ import annotations

import re

import numpy as np

from layerwise.contract import layout
from layerwise.errors import UsageError

# stored key prefix -> display prefix: layer_k -> Lk (hidden state k), conv_k -> Ck (CNN block k)
DISPLAY_PREFIX = {"layer": "L", "conv": "C"}
# LibriSpeech utterance ids: {speaker}-{chapter}-{utterance}, e.g. 84-121123-0001 (speaker 84)
LIBRISPEECH_STEM = re.compile(r"^(\d+)-(\d+)-(\d+)$")
COLOR_BY_CHOICES = ("utterance", "speaker", "label")
NOT_RECORDED = "not recorded"  # what a report shows for a fact its inputs do not record (never a guess)
SECONDS_UP_TO = 120  # s: format_duration writes shorter durations in seconds (119.9 s), longer in minutes (2.0 min)
MINUTES_UP_TO = 2 * 3600  # s: … and from 2 h on in hours (2.00 h)


def display_name(key: str) -> str:
    """``"layer_10" -> "L10"``, ``"conv_3" -> "C3"``; any other string (``"fbank"``) is returned unchanged."""
    parsed = layout.parse_layer_key(key)
    if parsed is None:
        return key
    prefix, index = parsed
    return f"{DISPLAY_PREFIX[prefix]}{index}"


def naming_legend(keys) -> str:
    """One sentence mapping display names to the stored keys of ``keys``, e.g.
    ``"L0 … L12 = stored keys layer_0 … layer_12 (hidden state k: L0 is the transformer's input, Lk the output of
    block k)"``; ``""`` when ``keys`` holds no layer key."""
    parts = []
    for prefix, what in (("layer", "hidden state k: L0 is the transformer's input, Lk the output of block k"),
                         ("conv", "output of CNN feature-encoder block k")):
        mine = [k for k in layout.sort_layer_keys(keys) if layout.parse_layer_key(k)[0] == prefix]
        if not mine:
            continue
        shown = (f"{display_name(mine[0])} = stored key {mine[0]}" if len(mine) == 1 else
                 f"{display_name(mine[0])} … {display_name(mine[-1])} = stored keys {mine[0]} … {mine[-1]}")
        parts.append(f"{shown} ({what})")
    return "; ".join(parts)


def layer_range(keys) -> str:
    """``"L0 … L12 (13)"`` for the keys of a folder in their order; one key alone is its display name (``"L3"``)."""
    shown = [display_name(k) for k in keys]
    return shown[0] if len(shown) == 1 else f"{shown[0]} … {shown[-1]} ({len(shown)})"


def model_label(model_name: str | None) -> str:
    """What a figure subtitle shows for a model: its tag (``facebook/hubert-base-ls960`` or
    ``/home/me/ckpt/hubert-base-ls960`` -> ``hubert-base-ls960``), never a machine's full path."""
    if not model_name:
        return "unknown model (no metadata)"
    return layout.model_tag(model_name)


def speakers_of(stems) -> tuple[np.ndarray | None, str | None]:
    """(speaker id of each stem (n,), None), or (None, reason) when a name is not LibriSpeech-style."""
    stems = [str(s) for s in stems]
    bad = [s for s in stems if LIBRISPEECH_STEM.match(s) is None]
    if bad:
        return None, (f"{len(bad)} of {len(stems)} file names (e.g. {bad[0]!r}) do not follow the LibriSpeech "
                      f"pattern {{speaker}}-{{chapter}}-{{utterance}}; speaker unknown")
    return np.array([LIBRISPEECH_STEM.match(s).group(1) for s in stems], dtype=str), None


def chapters_of(stems) -> tuple[np.ndarray | None, str | None]:
    """(``{speaker}-{chapter}`` of each stem (n,): the recording session, None), or (None, reason) when a name is not
    LibriSpeech-style (as :func:`speakers_of`)."""
    speakers, reason = speakers_of(stems)
    if speakers is None:
        return None, reason
    return np.array(["-".join(LIBRISPEECH_STEM.match(str(s)).groups()[:2]) for s in stems], dtype=str), None


def speaker_of(stem: str) -> str:
    """Speaker id of a LibriSpeech utterance stem (``"84-121123-0001" -> "84"``).

    Raises UsageError for a name that does not follow ``{speaker}-{chapter}-{utterance}``.
    """
    stem = str(stem)
    match = LIBRISPEECH_STEM.match(stem)
    if match is None:
        raise UsageError(f"color_by=speaker needs LibriSpeech utterance names {{speaker}}-{{chapter}}-{{utterance}} "
                         f"(e.g. 84-121123-0001); {stem!r} is not one — colour by utterance instead")
    return match.group(1)


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """``"1 file"``, ``"0 files"``, ``"1,234 files"``: a count with its noun in the right number (``plural_form``
    for irregular nouns, default ``noun + "s"``)."""
    return f"{count:,} {noun if count == 1 else plural_form or noun + 's'}"


def format_duration(seconds: float | None) -> str:
    """``42.0 s``, ``3.5 min``, ``2.25 h``: audio and wall time in units a person reads; NOT_RECORDED for None."""
    if seconds is None:
        return NOT_RECORDED
    if seconds < SECONDS_UP_TO:
        return f"{seconds:.1f} s"
    if seconds < MINUTES_UP_TO:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"
