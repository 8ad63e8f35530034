"""The run card of both reports: what was run, on what, with which settings and versions, how long it took.

Facts come from the typed result (``results.AnalysisResult`` or ``compare.run.Comparison``) and from the extraction
manifests (``manifest*.json``, one per shard) in a features folder; a fact that is not recorded is shown as "not
recorded", never guessed. :func:`build_card` is the one builder: a report's own facts, then the Date, Wall time,
Versions and Commands rows built the same way from the programs that ran (:class:`Step`). :func:`analysis_card` and
:func:`comparison_card` gather those facts; ``html`` renders the (label, text) rows. No heavy imports.
"""

from __future__ import annotations

import datetime as dt
import logging
import shlex
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from layerwise.contract.names import (
    NOT_RECORDED,
    display_name,
    format_duration,
    layer_range,
    naming_legend,
    plural,
)
from layerwise.contract.provenance import MANIFEST_GLOB, analysis_versions
from layerwise.contract.store import read_own
from layerwise.errors import OwnFileError

log = logging.getLogger(__name__)

DATE_FORMAT = "%Y-%m-%d %H:%M UTC"
MAX_FAILURES_SHOWN = 10
FILE_LIST_FLAGS = ("--file_list", "--write_file_list")  # arguments naming a list of feature files
WRAPPER_LIST_PREFIX = "layerwise-files."  # extract_hubert_features.sh: mktemp "${TMPDIR:-/tmp}/layerwise-files.XXXXXX"


@dataclass
class Extraction:
    """What the extraction manifests of a features folder say, summed over shards.

    counts : files, done, skipped, failed, missing_alignment, not_taken summed; audio_hours summed;
    wall_seconds : the longest shard (shards run side by side); commands : one command line per shard;
    versions : package -> version of the first shard; finished : newest manifest's modification time (UTC);
    failures : (path, reason) of every shard; problems : manifests that could not be read;
    no_store : a manifest records an ``extract_features.py --no_store`` partial (its files were extracted, not written).
    """

    paths: list[Path] = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    audio_hours: float | None = None
    wall_seconds: float | None = None
    commands: list[str] = field(default_factory=list)
    versions: dict = field(default_factory=dict)
    tool: dict = field(default_factory=dict)
    finished: dt.datetime | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    no_store: bool = False


def read_extraction(features_dir: str | Path) -> Extraction:
    """The manifests of ``features_dir`` summed over shards; an empty :class:`Extraction` when there are none."""
    out = Extraction()
    for path in sorted(Path(features_dir).glob(MANIFEST_GLOB)):
        try:
            manifest = read_own(path, what="extraction manifest", kind="json",
                                rebuild="re-run extract_features.py with this folder's settings (it rewrites its "
                                        "manifest), or remove the file")
        except OwnFileError as err:  # the report is still written; the card names the manifest it could not read
            out.problems.append(str(err))
            continue
        out.paths.append(path)
        counts = manifest.get("counts") or {}
        for key in ("files", "done", "skipped", "failed", "missing_alignment", "not_taken"):
            if isinstance(counts.get(key), (int, float)):
                out.counts[key] = out.counts.get(key, 0) + int(counts[key])
        if isinstance(counts.get("audio_hours"), (int, float)):
            out.audio_hours = (out.audio_hours or 0.0) + float(counts["audio_hours"])
        out.no_store = out.no_store or bool(manifest.get("no_store"))
        if isinstance(counts.get("wall_seconds"), (int, float)):
            out.wall_seconds = max(out.wall_seconds or 0.0, float(counts["wall_seconds"]))
        command = manifest.get("command")
        if command:
            out.commands.append(shlex.join(command) if isinstance(command, list) else str(command))
        tool = manifest.get("tool") or {}
        out.tool = out.tool or {k: v for k, v in tool.items() if k != "versions"}
        out.versions = out.versions or dict(tool.get("versions") or {})
        out.failures += [(str(f.get("path")), str(f.get("reason"))) for f in manifest.get("failures") or []]
        mtime = dt.datetime.fromtimestamp(path.stat().st_mtime, tz=dt.UTC)
        out.finished = max(out.finished or mtime, mtime)
    return out


def versions_text(versions: dict) -> str:
    """``"numpy 2.3.1, scipy 1.16.0"``; NOT_RECORDED for none."""
    return ", ".join(f"{k} {v}" for k, v in versions.items()) or NOT_RECORDED


def _value(meta: dict, key: str) -> str:
    value = meta.get(key)
    return NOT_RECORDED if value is None else str(value)


def _options_text(run) -> str:
    """The analysis options that shape the figures and measures (RunInfo fields that are set)."""
    files = "all files" if not run.num_files else f"the first {run.num_files} files"
    if run.file_list:
        files = f"{files} named by --file_list (see Commands)"
    parts = [files, f"similarity {run.similarity}", f"max_points {run.max_points}",
             f"color_by {run.color_by}"]
    for name in ("cka_vmin", "cca_protocol", "mi_protocol"):
        if getattr(run, name, None) is not None:
            parts.append(f"{name} {getattr(run, name)}")
    if run.shards > 1:
        parts.append(f"merged from {run.shards} partial analyses")
    return ", ".join(parts)


def _on_off(value) -> str:
    return NOT_RECORDED if value is None else ("on" if value else "off")


def model_text(meta: dict) -> str:
    """``{model_name} (revision r)``, with a loud mark for a random-initialisation extraction."""
    model = f"{_value(meta, 'model_name')} (revision {_value(meta, 'model_revision')})"
    if meta.get("random_init"):
        model += f" — RANDOM INITIALISATION (seed {_value(meta, 'seed')}), not the trained weights"
    return model


def settings_text(meta: dict) -> str:
    """The extraction settings of a file's metadata that change the numbers besides model and layers."""
    return (f"waveform normalisation {_on_off(meta.get('normalize'))}, compute dtype {_value(meta, 'compute_dtype')}, "
            f"stored as {_value(meta, 'save_dtype')}, sample rate {_value(meta, 'sample_rate')} Hz")


def _layers_text(result) -> str:
    names = ", ".join(display_name(k) for k in result.keys)
    legend = naming_legend(result.keys)
    return f"{names} — {legend}" if legend else names


def _data_text(result, extraction: Extraction) -> str:
    layers = result.layers
    if len({x.n_frames for x in layers}) == 1:
        frames = f"{layers[0].n_frames:,} {result.unit}"
    else:
        frames = ", ".join(f"{display_name(x.key)}: {x.n_frames:,}" for x in layers) + f" {result.unit}"
    text = f"{plural(len(result.files), 'file')} analysed, {frames}"
    timed = [x for x in layers if x.frame_rate]
    if result.unit == "frames" and timed:  # the coarsest layer's frames × its hop ≈ the audio analysed
        coarse = min(timed, key=lambda x: x.frame_rate)
        text += (f" (≈ {format_duration(coarse.n_frames / coarse.frame_rate)} of audio: "
                 f"{display_name(coarse.key)} at {coarse.frame_rate:g} frames/s)")
    c = extraction.counts
    if extraction.paths:
        text += (f"; the extraction: {c.get('done', 0) + c.get('skipped', 0)} of {c.get('files', '?')} files "
                 f"complete ({c.get('done', 0)} {'extracted' if extraction.no_store else 'written'}, "
                 f"{c.get('skipped', 0)} already complete), "
                 f"{c.get('failed', 0)} failed")
        if c.get("missing_alignment"):
            text += f", {c['missing_alignment']} without alignment"
        if c.get("not_taken"):
            text += f", {c['not_taken']} not taken"
        if extraction.audio_hours is not None:
            text += f", {format_duration(extraction.audio_hours * 3600)} of audio computed in this run"
    return text


def _extraction_step(extraction: Extraction, n_files: int) -> Step:
    """The extraction as its manifests record it: command lines, longest shard's wall time and realtime factor,
    package versions (and python), when the newest manifest was written."""
    wall = NOT_RECORDED
    if extraction.wall_seconds is not None:
        rtf = ""
        if extraction.audio_hours and extraction.wall_seconds > 0:
            rtf = f", {extraction.audio_hours * 3600 / extraction.wall_seconds:.1f}× realtime"
        shards = f" (longest of {len(extraction.paths)} shards)" if len(extraction.paths) > 1 else ""
        wall = f"{format_duration(extraction.wall_seconds)}{shards}{rtf}"
    python = extraction.tool.get("python")
    versions = versions_text(extraction.versions) + (f", python {python}" if python else "")
    finished = extraction.finished.strftime(DATE_FORMAT) if extraction.finished else NOT_RECORDED
    return Step("extraction", tuple(annotate_command(c, n_files) for c in extraction.commands), wall, versions,
                finished)


def _analysis_step(result) -> Step:
    """The analysis: its command line, wall time per stage (``RunInfo.wall_s``), this process's versions."""
    run = result.run
    stages = run.wall_s or {}
    wall = NOT_RECORDED
    if stages:
        total = stages.get("total", sum(v for k, v in stages.items() if k != "total"))
        detail = ", ".join(f"{k} {format_duration(v)}" for k, v in stages.items() if k != "total")
        wall = format_duration(total) + (f" ({detail})" if detail else "")
    commands = (annotate_command(run.command, len(result.files)),) if run.command else ()
    return Step("analysis", commands, wall, versions_text(analysis_versions()))


def _control_text(result) -> str:
    """The random-init control: folder, model, seed, utterances shared; or that there is none (see the notes)."""
    if result.control is not None:
        return result.control.describe(len(result.files))
    if result.no_control is not None:
        return "none in this run (see the notes): the figures draw no dashed control lines"
    return "none (this run computes no measure with a control)"


def _list_arguments(args: list[str]) -> list[tuple[str, str]]:
    """(flag, path) of each file-list argument in ``args`` (``--flag PATH`` or ``--flag=PATH``)."""
    found = []
    for i, arg in enumerate(args):
        flag, _, value = arg.partition("=")
        if flag in FILE_LIST_FLAGS:
            value = value or (args[i + 1] if i + 1 < len(args) else "")
            if value:
                found.append((flag, value))
    return found


def annotate_command(command: str, n_files: int) -> str:
    """``command`` as run, then one line per file-list argument saying what that list was: the wrapper
    (extract_hubert_features.sh) passes temporary lists (``--write_file_list``/``--file_list``) that it deletes when
    it ends, so the path cannot be opened afterwards; the files analysed are in summary.json ``files``."""
    try:
        args = shlex.split(command)
    except ValueError:
        return command
    lines = [command]
    for flag, path in _list_arguments(args):
        temporary = Path(path).name.startswith(WRAPPER_LIST_PREFIX) or Path(path).parent == Path(tempfile.gettempdir())
        what = "a temporary list written by the wrapper and deleted after the run" if temporary else "a list file"
        if flag == "--file_list":
            lines.append(f"  ({flag} {path}: {what}; the {n_files} files it named are listed in summary.json "
                         f"'files' and under 'Files analysed'; to re-run on the same files write them to a list "
                         f"and pass it with --file_list, or pass --num_files 0 for every file of the folder)")
        else:
            lines.append(f"  ({flag} {path}: {what}; it collects the files this extraction completed; not needed "
                         f"to re-run the extraction)")
    return "\n".join(lines)


@dataclass(frozen=True)
class Step:
    """One program behind a report, as the run card shows it: "extraction", "analysis" or "comparison".

    commands : its command lines as run (annotated, :func:`annotate_command`); empty when not recorded.
    wall : its wall time as text. versions : its package versions as text, or None when the card does not show them.
    finished : when it finished, as text, or None when the card does not show it.
    """

    name: str
    commands: tuple[str, ...] = ()
    wall: str = NOT_RECORDED
    versions: str | None = None
    finished: str | None = None


def build_card(facts: list[tuple[str, str]], steps: list[Step], *,
               now: dt.datetime | None = None) -> list[tuple[str, str]]:
    """The run card of any report: ``facts`` (its own (label, text) rows: data, settings, control …), then the rows
    every report has, built from ``steps`` in the order they ran: Date (the report's, and each step's end where
    shown), Wall time, Versions (named by step when more than one step shows them), Commands (one line per command,
    "not recorded" for a step without one). ``now`` : the report's date (default: now, UTC)."""
    now = now or dt.datetime.now(dt.UTC)
    date = "; ".join([f"report {now.strftime(DATE_FORMAT)}"]
                     + [f"{s.name} finished {s.finished}" for s in steps if s.finished is not None])
    shown = [s for s in steps if s.versions is not None]
    versions = shown[0].versions if len(shown) == 1 else "; ".join(f"{s.name}: {s.versions}" for s in shown)
    return [*facts,
            ("Date", date),
            ("Wall time", "; ".join(f"{s.name} {s.wall}" for s in steps)),
            ("Versions", versions),
            ("Commands", "\n".join(f"{s.name}: {c}" for s in steps for c in s.commands or (NOT_RECORDED,)))]


def analysis_card(result, extraction: Extraction, *, now: dt.datetime | None = None) -> list[tuple[str, str]]:
    """The run card of an analysis: ``result`` (a ``results.AnalysisResult``) and the extraction manifests of its
    features folder (:func:`read_extraction`). ``now`` : the report's date (default: now, UTC)."""
    meta, run = result.meta, result.run
    span = _value(meta, "span") if meta.get("span") else "frame"
    if meta.get("span_options"):
        span += " (" + ", ".join(f"{k} {v}" for k, v in meta["span_options"].items()) + ")"
    seeds = (f"analysis seed {run.seed} (frame subsample of {len(result.sample)} points, t-SNE, splits); "
             + (f"random-initialisation seed {_value(meta, 'seed')}" if meta.get("random_init")
                else "no extraction seed (trained weights)"))
    features = f"{run.features_dir}" + (f" ({len(extraction.paths)} manifest(s))" if extraction.paths else
                                        " (no extraction manifest found: prototype or copied files)")
    facts = [
        ("Model", model_text(meta)),
        ("Representation", f"rep_type {_value(meta, 'rep_type')}, span {span}"),
        ("Layers", _layers_text(result)),
        ("Settings", settings_text(meta)),
        ("Data", _data_text(result, extraction)),
        ("Seeds", seeds),
        ("Analysis", _options_text(run)),
        ("Features", features),
        ("Control", _control_text(result)),
    ]
    steps = [_extraction_step(extraction, len(result.files)), _analysis_step(result)]
    return build_card(facts, steps, now=now)


def comparison_card(result, *, now: dt.datetime | None = None) -> list[tuple[str, str]]:
    """The run card of a comparison (a ``compare.run.Comparison``): one row per folder (path, model and revision,
    rep type and span, layers, extraction settings, utterances left out, the extraction's package versions from its
    manifests), the common utterances and frames, then Date, Wall time, Versions, Commands of the comparison."""
    unit = "frames" if result.span == "frame" else f"{result.span} segments"
    facts = []
    for folder in result.folders:
        meta = folder.meta
        versions = versions_text(read_extraction(folder.path).versions)
        facts.append((f"Folder {folder.label}", (
            f"{folder.path} — {model_text(meta)}; rep_type {meta.get('rep_type', NOT_RECORDED)}, "
            f"span {meta.get('span', 'frame')}; layers {layer_range(folder.layers)}; {settings_text(meta)}; "
            f"{len(result.left_out[folder.label])} of its utterances not in every folder (left out); extraction "
            f"versions: {versions}")))
    grid = ("segments compared one by one" if result.span != "frame" else
            "no frame-geometry metadata (frames compared index by index)" if result.grid is None else
            f"common grid: hop {result.grid.hop} samples, receptive field {result.grid.field} samples")
    data = f"{len(result.stems)} utterances present in every folder, {result.n_frames:,} {unit}; {grid}"
    facts.append(("Data", data))
    commands = (annotate_command(result.command, len(result.stems)),) if result.command else ()
    step = Step("comparison", commands, format_duration(result.wall_seconds), versions_text(analysis_versions()))
    return build_card(facts, [step], now=now)


def extraction_problems(extraction: Extraction, features_dir) -> list[str]:
    """Lines the report lists with the notes: extraction failures (first MAX_FAILURES_SHOWN) and unreadable
    manifests."""
    lines = list(extraction.problems)
    failures = extraction.failures
    lines += [f"extraction failed for {path}: {reason}" for path, reason in failures[:MAX_FAILURES_SHOWN]]
    if len(failures) > MAX_FAILURES_SHOWN:
        lines.append(f"… and {len(failures) - MAX_FAILURES_SHOWN} more extraction failures (failures*.tsv in "
                     f"{features_dir})")
    return lines
