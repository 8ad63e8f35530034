"""The ABX step of an analysis: items → each layer's item frames → error rates, intervals, the control.

Items come from a ZeroSpeech item file (``abx_item``, whose ``#file`` names feature-file stems) or are built from
phone alignments (``alignment_dir``; :func:`layerwise.measures.abx.abx_items_from_segments`, abkhazia's triphone rule)
and written to ``{output_dir}/abx_triphone.item`` for reuse. Every layer is scored at its own frame rate
(``sample_rate / hop`` of ``layout.layer_grid``: 50 Hz for ``layer_k`` of HuBERT-base, conv_k at its block's rate),
an item taking frames ``[ceil(onset·rate − 0.5), floor(offset·rate − 0.5) + 1)``. Files are read one layer at a time
and file by file: only the item frames of one layer are held, never all frames of all files.

Per layer, the three modes of ``layout.ABX_MEASURES`` (:data:`KEY_MODE`), with ZeroSpeech subsampling seeded by the
analysis seed, and a percentile bootstrap interval over speakers (:func:`~layerwise.measures.abx.abx_interval`). The
random-init control (the run's one :class:`~layerwise.analyze.control.ControlSource`) is scored the same way on the
items of the utterances it shares. Span folders: ABX does not apply (a note). Never imports torch.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from layerwise.analyze.control import ControlSource, check_control_file
from layerwise.analyze.options import AnalysisOptions
from layerwise.analyze.stream import Collected, control_result, read
from layerwise.contract import layout, store
from layerwise.contract.names import speakers_of
from layerwise.contract.results import ControlResult, MeasureFamily
from layerwise.errors import AnalysisError, ItemFileError, error_text

log = logging.getLogger(__name__)

ITEM_FILE = "abx_triphone.item"  # triphone items built from alignments, written to the output folder for reuse
KEY_MODE = {key: key.removeprefix("abx_") for key in layout.ABX_MEASURES}  # summary key -> measures.abx mode
INFO_KEY = "abx_info"  # summary.json key of the ABX settings, counts and interval method
FRAME_RULE = "[ceil(onset*rate - 0.5), floor(offset*rate - 0.5) + 1) at the layer's frame rate"
SPAN_NOTE = ("ABX does not apply to span folders (one pooled vector per segment, no frames to align): analyse the "
             "frame folder of the same extraction with the ABX flags")


@dataclass(frozen=True)
class Items:
    """A run's ABX items (:func:`items_for`): items, the item file they are in, notes for the report, and what they
    add to ``abx_info`` (``unmatched_alignments``: alignment ids that match no analysed file, sorted)."""

    items: list
    item_file: str
    notes: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)


def _items_from_alignments(options: AnalysisOptions, stems: list[str]) -> Items:
    """Triphone items of the analysed ``stems`` that have a phone alignment, written to ``ITEM_FILE``. Phones are
    read as the extraction reads them (silences dropped, stress digits stripped); alignment ids that match no
    analysed file are counted in the log and a note and listed in the info (as the extraction does)."""
    from layerwise.contract.alignments import (  # the extraction's phone rule
        DEFAULT_SILENCE_LABELS,
        find_alignments,
        read_spans,
    )
    from layerwise.measures.abx import abx_items_from_segments, write_item_file

    sources = find_alignments(options.alignment_dir, options.alignment_format)
    aligned = [s for s in stems if s in sources]
    if not aligned:
        raise AnalysisError(f"--alignment_dir {options.alignment_dir} has no alignment of the {len(stems)} analysed "
                            f"files ({', '.join(stems[:3])} …): ABX items need each file's phones, named by its stem")
    speakers, reason = speakers_of(aligned)
    if speakers is None:
        raise AnalysisError(f"ABX items from alignments need each file's speaker: {reason}; write an item file "
                            f"with a speaker column and pass it as --abx_item")
    silence = options.silence_labels or DEFAULT_SILENCE_LABELS
    segments = [(stem, seg.start, seg.end, seg.label) for stem in aligned
                for seg in read_spans(sources[stem], options.phone_tier, silence_labels=silence,
                                      strip_stress_digits=True)]
    items = abx_items_from_segments(segments, speaker_of=dict(zip(aligned, speakers.tolist())))
    out = Path(options.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_item_file(items, out / ITEM_FILE)
    log.info("ABX: %d triphone items built from the phone tier %r of %d files' alignments, written to %s (reuse it "
             "with --abx_item)", len(items), options.phone_tier, len(aligned), out / ITEM_FILE)
    notes = []
    if len(aligned) < len(stems):
        notes.append(f"ABX: {len(stems) - len(aligned)} of the {len(stems)} analysed files have no alignment in "
                     f"{options.alignment_dir}; their frames are not scored")
    unmatched = sorted(set(sources) - set(stems))
    if unmatched:
        log.warning("ABX: %d alignment(s) in %s match no analysed feature file (%s); they give no items",
                    len(unmatched), options.alignment_dir, ", ".join(unmatched[:5]) + (" …" if len(unmatched) > 5
                                                                                        else ""))
        notes.append(f"ABX: {len(unmatched)} alignment(s) in {options.alignment_dir} match no analysed feature file "
                     f"({', '.join(unmatched[:3])}{' …' if len(unmatched) > 3 else ''}; all listed in abx_info "
                     f"unmatched_alignments); they give no items")
    return Items(items, str(out / ITEM_FILE), notes, {"unmatched_alignments": unmatched})


def _read_items(options: AnalysisOptions) -> list:
    """The items of ``abx_item``; a malformed file is an ItemFileError naming the file and line and, for the item
    file this tool writes (``ITEM_FILE``), the command that rebuilds it."""
    from layerwise.measures.abx import read_item_file

    path = Path(options.abx_item)
    try:
        return read_item_file(path)
    except (ItemFileError, OSError, UnicodeDecodeError) as err:
        rebuild = ""
        if path.name == ITEM_FILE:
            rebuild = (f"; it is the item file an analysis writes: rebuild it with visualize_features.py "
                       f"--features_dir {options.features_dir} --output_dir {path.parent} --alignment_dir "
                       f"ALIGNMENTS (the phone alignments it was built from) instead of --abx_item")
        raise ItemFileError(f"--abx_item {path}: {error_text(err)}{rebuild}") from err


def items_for(options: AnalysisOptions, stems: list[str]) -> Items:
    """The run's ABX items (:class:`Items`). Raises ItemFileError for a malformed item file, AnalysisError when
    none of the items names an analysed file."""
    if options.abx_item is None:
        return _items_from_alignments(options, stems)
    items = _read_items(options)
    analysed = set(stems)
    named = {it.file for it in items}
    if not named & analysed:
        raise AnalysisError(f"--abx_item {options.abx_item}: none of its {len(named)} files ({', '.join(sorted(named)[:3])}"
                            f" …) is an analysed file; its #file column must name feature-file stems")
    outside = sum(it.file not in analysed for it in items)
    notes = [(f"ABX: {outside:,} of the {len(items):,} items of {options.abx_item} name files that are not "
              f"analysed; they are left out")] if outside else []
    return Items(items, str(options.abx_item), notes)


def layer_rate(meta: dict, key: str) -> Decimal | None:
    """Frames per second of layer ``key`` as an exact decimal (``sample_rate / hop``: 16000 / 320 = 50), or None
    when the files do not record their frame grid."""
    grid, sample_rate = layout.layer_grid(meta, key), meta.get("sample_rate")
    if grid is None or not sample_rate:
        return None
    return Decimal(int(sample_rate)) / Decimal(int(grid.hop))


def _item_frames(paths: dict[str, Path], items: list, key: str, rate: Decimal, check_meta: dict | None):
    """(frames, excluded) of every item at layer ``key`` (``abx.slice_items``), read file by file; the control's
    files are checked against the analysed files' metadata ``check_meta`` (the control rule) when given."""
    from layerwise.measures.abx import slice_items

    by_file: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        by_file.setdefault(item.file, []).append(i)
    frames, excluded = [None] * len(items), []
    for stem, indices in by_file.items():
        ff = read(paths[stem], [key]) if stem in paths else None
        if ff is not None and check_meta is not None:
            check_control_file(ff, check_meta)
        part, why = slice_items({} if ff is None else {stem: ff.layers[key]}, items, rate, only=indices)
        for i in indices:
            frames[i] = part[i]
        excluded += why
    return frames, sorted(excluded, key=lambda e: e[0])


def _settings(options: AnalysisOptions) -> dict:
    """The keyword arguments of ``abx_error_rates_of_items`` an analysis sets (0 = no limit -> None)."""
    return {"distance": options.abx_distance, "max_size_group": options.abx_max_size_group or None,
            "max_x_across": options.abx_max_x_across or None, "seed": options.seed}


def _score_layer(family: MeasureFamily, info: dict, key: str, frames, items, excluded,
                 options: AnalysisOptions) -> None:
    """The three modes of one layer, with their intervals (seeded by the analysis seed), into ``family``/``info``."""
    from layerwise.measures.abx import abx_error_rates_of_items, abx_interval

    for name, mode in KEY_MODE.items():
        result = abx_error_rates_of_items(frames, items, excluded, mode=mode, **_settings(options))
        info["n_items_used"][key] = result.n_items_used
        info["excluded"][key] = dict(sorted(result.excluded_counts.items()))
        info["n_cells"].setdefault(name, {})[key] = len(result.cells["score"])
        if math.isnan(result.score):
            family.values.setdefault(name, {})[key] = None
            info.setdefault("undefined", {}).setdefault(name, {})[key] = (
                f"no ABX cell at this layer ({result.n_items_used} of {len(items)} items usable; left out: "
                f"{info['excluded'][key]}): mode {mode} needs two phones in one context "
                + ("and X of another speaker" if "across" in name else "of one speaker"))
            continue
        family.values.setdefault(name, {})[key] = result.score
        if not options.n_boot:  # --n_boot 0: no intervals (otherwise ABX keeps its own abx.DEFAULT_N_BOOT)
            continue
        interval = abx_interval(result, seed=options.seed)
        info["interval"][name] = {"method": interval.method, "n_boot": interval.n_boot, "level": interval.level}
        family.methods[name] = f"{interval.method}, {interval.n_boot} resamples"
        if interval.low is None:
            info["interval_unavailable"].setdefault(name, {})[key] = interval.reason
        else:
            family.intervals.setdefault(name, {})[key] = (interval.low, interval.high)


def score(paths: dict[str, Path], items: list, item_file: str, layers: list[str], meta: dict,
          options: AnalysisOptions, *, desc: str, check_meta: dict | None = None,
          extra_info: dict | None = None) -> MeasureFamily:
    """The ABX family of one folder: ``paths`` stem -> feature file, ``items`` scored at every layer of ``layers``
    (one progress bar over the layers). A measure without a value on any layer is under ``unavailable``."""
    from layerwise.contract.progress import bar

    family = MeasureFamily(chance={name: dict.fromkeys(layers, layout.MEASURE[name].chance) for name in KEY_MODE})
    rates = {key: layer_rate(meta, key) for key in layers}
    unknown = [key for key, rate in rates.items() if rate is None]
    if unknown:
        family.unavailable.update(dict.fromkeys(KEY_MODE, f"the frame rate of {', '.join(unknown)} is not recorded "
                                                          f"in the files' metadata (model_config, sample_rate)"))
        return family
    info = {"item_file": item_file, "n_items": len(items), "frame_rule": FRAME_RULE,
            "chance": layout.MEASURE[layout.ABX_MEASURES[0]].chance, **_settings(options),
            "frame_rate": {key: float(rate) for key, rate in rates.items()}, "n_items_used": {}, "excluded": {},
            "n_cells": {}, "interval": {}, "interval_unavailable": {}, **(extra_info or {})}
    for key in bar(layers, desc, "layer"):
        frames, excluded = _item_frames(paths, items, key, rates[key], check_meta)
        _score_layer(family, info, key, frames, items, excluded, options)
    for name, mode in KEY_MODE.items():
        if all(v is None for v in family.values.get(name, {}).values()):
            family.values.pop(name, None)
            family.unavailable[name] = (f"no ABX cell in any layer ({info['n_items_used'][layers[0]]} of the "
                                        f"{len(items)} items usable; left out: {info['excluded'][layers[0]]}): mode "
                                        f"{mode} needs two phones in one context "
                                        + ("and X of another speaker" if "across" in name else "of one speaker"))
    family.info[INFO_KEY] = info
    return family


def analyse(state: Collected, options: AnalysisOptions, source: ControlSource | None,
            found: Items | None = None) -> tuple[MeasureFamily, ControlResult | None, list[str]]:
    """The ABX measures of a frame folder and of its random-init control: (family, the control's result or None,
    notes). A span folder gets no ABX, only the note that it does not apply. found : the items read before the
    streaming pass (``analyze.preflight``); None: read here (a merge)."""
    if state.is_span:
        return MeasureFamily(), None, [SPAN_NOTE]
    found = found or items_for(options, state.files)
    items, item_file, notes = found.items, found.item_file, list(found.notes)
    folder = Path(options.features_dir)
    paths = {stem: store.feature_path(folder, stem) for stem in state.files}
    family = score(paths, items, item_file, state.layers, state.meta, options, desc="ABX", extra_info=found.info)
    for name, reason in family.unavailable.items():
        log.warning("%s could not be computed: %s", name, reason)
    control = control_result(source, paths, lambda shared: score(
        shared, items, item_file, state.layers, state.meta, options, desc="ABX (random-init control)",
        check_meta=state.meta))
    return family, control, notes
