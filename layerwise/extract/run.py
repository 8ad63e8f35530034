"""The extraction run: jobs → resume check → (load the model only if work remains) → decode ahead / compute /
write behind → manifest, failures.

One utterance per forward pass, or with ``batch_size`` a few where that is exact (see model/adapter.py). Decoding
of the next files and writing of finished ones run on background threads so the model does not wait on I/O.
Every per-file problem becomes a line in ``failures.tsv``; the run always finishes the remaining files. Nothing
here prints: the CLI does.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Collection
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from layerwise.contract import layout, store
from layerwise.contract.alignments import digest as alignment_digest
from layerwise.contract.alignments import find_alignments, read_spans, tier_names
from layerwise.contract.grid import FrameGeometry
from layerwise.contract.names import plural
from layerwise.errors import AlignmentError, AudioLoadError, UsageError, caused_by_interrupt, error_text
from layerwise.extract import audio, jobs, spans
from layerwise.extract.jobs import Job
from layerwise.extract.options import ExtractionOptions
from layerwise.extract.runlog import RunLog

log = logging.getLogger(__name__)

LOOKAHEAD = 3  # files decoded ahead of the model; bounds memory to a few utterances
OVERWRITE_HINT = "pass --overwrite to replace it, or choose another --save_dir"


def run_extraction(model, jobs: list[Job], out_dir: Path, options: ExtractionOptions, *, info, runlog: RunLog,
                   overwrite: bool = False, stop: threading.Event | None = None, progress: bool = True,
                   audio_stems: Collection[str] | None = None, alignments: dict | None = None,
                   batch_size: int = 1, sink=None) -> RunLog:
    """Extract the features of ``jobs`` into ``out_dir`` and return ``runlog`` with counts and failures.

    model : a loaded :class:`~layerwise.model.adapter.SpeechModel`, or a callable returning one — called only when some file
        needs computing (a resumed run whose files are all complete loads nothing).
    info : the checkpoint's config-only :class:`~layerwise.model.adapter.ModelInfo` (identity, layer keys, frame math).
    An existing output with another identity is a per-file failure naming the differing settings; damaged or
    non-finite ones are recomputed. ``stop`` (set by a signal handler) ends the run after the file in progress.
    audio_stems : the stems of every audio file of the folder (all shards; default: those of ``jobs``): alignment
        ids that match none of them are counted in the log and listed in the manifest.
    alignments : the run's alignments as :func:`load_alignments` returns them (default: read here).
    batch_size : up to this many consecutive utterances per forward pass where that is exact
        (``SpeechModel.batch_groups``; :func:`_batch_ahead`); 1 = one utterance per pass.
    sink : ``extract_features.py --no_store``: an ``analyze.partial.PartialFeed``, already begun, fed each
        utterance as its feature file would read back (``store.encode_features``/``decode_features``) instead of
        writing it; it writes the shard's analysis partial at the end (not when interrupted). None: store files.
    Raises :class:`~layerwise.errors.UsageError` for unusable settings (bad layers, missing alignments, a tier the
    alignments do not have).
    """
    keys = options.layer_keys(info)
    identity = options.identity(info)
    runlog.no_store, runlog.batch_size = sink is not None, batch_size
    if alignments is None:
        alignments = load_alignments(options)
    stems = set(audio_stems) if audio_stems is not None else {job.source.stem for job in jobs}
    if unmatched := sorted(set(alignments) - stems):
        runlog.unmatched_alignments(unmatched, options.spans.alignment_dir)
    run_meta = {**identity, "options": options.to_meta(), "model_config": info.config_summary,
                "frame_rate": info.geometry.frame_rate, "hop_samples": info.geometry.hop,
                "receptive_field_samples": info.geometry.receptive_field}
    runlog.start(run_meta, n_files=len(jobs), overwrite=overwrite)

    todo = _todo(jobs, keys, identity, alignments, info, options, runlog, overwrite, sink)
    if not todo:
        return _finish(runlog, sink)

    if callable(model) and not hasattr(model, "features"):
        model = model()
    run_meta["device"] = model.device
    indices = [layout.parse_layer_key(k)[1] for k in keys]
    ahead: dict[Path, dict] = {}  # target -> features computed in a batch with an earlier job
    compute, write = _steps(model, indices, ahead, run_meta, info, options, sink)
    batch = _batch_ahead(model, batch_size, options.rep_type, indices, ahead) if batch_size > 1 else None
    _pipeline(todo, info.sample_rate, info.geometry.receptive_field, compute, write, runlog, stop, progress, batch,
              max(LOOKAHEAD, batch_size))
    return _finish(runlog, sink)


def _steps(model, indices: list[int], ahead: dict, run_meta: dict, info, options: ExtractionOptions, sink):
    """The pipeline's ``compute(job) -> result`` (forward pass, or the batch's features from ``ahead``; filterbank;
    span pooling) and ``write(job, result)`` (the feature file, or under ``sink`` the same arrays fed to it)."""
    fbank = _fbank_function() if options.fbank else None

    def compute(job: Job):
        samples = job.wave.samples
        feats = ahead.pop(job.target, None)
        if feats is None:
            feats = model.features(samples, options.rep_type, indices)
        job.extra = {**job.extra_meta, "source_path": str(job.source), "duration_s": job.wave.duration,
                     "n_samples": len(samples), "n_frames": info.geometry.n_frames(len(samples)),
                     "source_sample_rate": job.wave.source_rate, "source_channels": job.wave.source_channels}
        extra = {"fbank": fbank(samples, info.sample_rate)} if fbank else {}
        if options.span == layout.FRAME_SPAN:
            return feats, None, None, extra
        pooled, labels, intervals = _pool(job, feats, info.geometry, len(samples), options)
        return pooled, labels, intervals, extra

    def write(job: Job, result) -> None:
        feats, labels, intervals, extra = result
        settings = {"save_dtype": options.save_dtype, "labels": labels, "intervals": intervals, **extra}
        if sink is None:
            store.write_features(job.target, feats, {**run_meta, **job.extra}, **settings)
        else:  # rounded to the storage dtype, the metadata through JSON: what the stored file would read back as
            sink.add(store.decode_features(job.target, store.encode_features(feats, {**run_meta, **job.extra},
                                                                             **settings)))

    return compute, write


def _todo(jobs, keys, identity, alignments, info, options: ExtractionOptions, runlog: RunLog, overwrite: bool,
          sink) -> list[Job]:
    """The jobs to compute: stored runs by :func:`_resume`; under ``sink`` (``--no_store``) none when the shard's
    partial is already complete, else every job (nothing stored to resume from: the shard is redone whole)."""
    if sink is not None and sink.complete:
        for job in jobs:
            runlog.skip(job.source, job.target)
        return []
    return _resume(jobs, keys, identity, alignments, info, options, runlog, overwrite or sink is not None)


def _finish(runlog: RunLog, sink) -> RunLog:
    """Under ``sink``, write the shard's partial (unless the run was interrupted: a partial of part of a shard must
    never be merged); then the manifest and failures. A partial found complete (a re-run, e.g. a SLURM requeue)
    is not rewritten, and the manifest of the run that wrote it is kept (``RunLog.keep_manifest_of``): it holds
    that run's audio, wall time and command, which the run card reports."""
    if sink is not None and not runlog.was_interrupted:
        if sink.complete:
            runlog.partial = sink.path
            if runlog.keep_manifest_of(sink.path):
                return runlog
        else:
            runlog.partial = sink.finish([Path(p).stem for p, _ in runlog.failures])
    runlog.finish()
    return runlog


def _resume(jobs, keys, identity, alignments, info, options: ExtractionOptions, runlog: RunLog,
            overwrite: bool) -> list[Job]:
    """Classify every job's existing output (``store.resume_state``) and return the jobs to compute: complete
    ones are skipped, other settings' (or, in a folder holding another run, any) are failures, damaged ones redone."""
    earlier = None if overwrite else runlog.earlier_run_differs()
    if earlier:
        log.warning("%s: its files will not be replaced or counted as complete, and no file is added beside them; "
                    "%s", earlier, OVERWRITE_HINT)
    shapes = expected_shapes(info, keys, options)
    tier = options.spans.phone_tier if options.span == "phone" else options.spans.word_tier
    todo = []
    for job in jobs:
        job.alignment = alignments.get(job.source.stem)
        facts = {}
        if job.alignment is not None:
            facts["alignment_sha256"] = alignment_digest(job.alignment, tier)
            job.extra_meta = facts
        state, detail = (("missing", "") if overwrite
                         else store.resume_state(job.target, keys, identity, shapes, file_facts=facts))
        if options.span != layout.FRAME_SPAN and job.alignment is None:
            runlog.no_alignment(job.source)
        elif state == "complete":
            runlog.skip(job.source, job.target)
        elif state == "other_settings":
            runlog.fail(job.source, f"its output exists from a run with other settings ({detail}); {OVERWRITE_HINT}")
        elif earlier:  # writing it would put two runs' files in one folder
            runlog.fail(job.source, f"not written: the folder holds a run with other settings ({earlier}); "
                                    f"{OVERWRITE_HINT}")
        else:
            if state == "damaged":
                log.info("%s is damaged (%s): recomputing it", job.target.name, detail)
            todo.append(job)
    return todo


def expected_shapes(info, keys: list[str], options: ExtractionOptions):
    """``meta -> {key: (rows, dim)}``: the form each stored array of a file must have (for resume). Dims from the
    config; rows from the file's own metadata for frame files (``n_frames`` for ``layer_k``, the conv frame count of
    ``n_samples`` for ``conv_k``), unknown (None) for span files (checked against the labels instead)."""
    conv_dims = info.config_summary.get("conv_dim") or []

    def shapes(meta: dict) -> dict:
        n_samples = meta.get("n_samples")
        if n_samples is None and meta.get("duration_s") is not None:
            n_samples = round(meta["duration_s"] * info.sample_rate)
        conv_rows = info.geometry.conv_lengths(n_samples) if n_samples is not None else []
        out = {}
        for key in keys:
            kind, index = layout.parse_layer_key(key)
            dim = info.hidden_size if kind == "layer" else (conv_dims[index] if index < len(conv_dims) else None)
            rows = None
            if options.span == layout.FRAME_SPAN:
                rows = meta.get("n_frames") if kind == "layer" else (conv_rows[index] if conv_rows else None)
            out[key] = (rows, dim)
        return out

    return shapes


def extract_folder(audio_dir: str | Path, save_dir: str | Path, options: ExtractionOptions, *, subset_id: int = 0,
                   num_subsets: int = 1, extensions: tuple[str, ...] = audio.AUDIO_EXTENSIONS, overwrite: bool = False,
                   model=None, stop: threading.Event | None = None, progress: bool = False,
                   num_threads: int | None = None, batch_size: int = 1, sink=None) -> RunLog:
    """The whole extraction of one shard as a library call: select the files → describe the checkpoint (config only;
    bad ``layers`` fail here) → :func:`run_extraction`, loading the weights only when some file needs computing.

    model : an already loaded SpeechModel to reuse (tests, notebooks), else it is loaded from ``options``.
    batch_size : utterances per forward pass where exact (:func:`run_extraction`); how to run, not what is stored.
    sink : ``--no_store``: an ``analyze.partial.PartialFeed`` for this shard (:func:`run_extraction`); the shard
        then takes whole groups of ``sink.group_files`` files in feature-file-name order (the analysis shard rule,
        ``jobs.select``), and even a shard without files writes its (empty) partial, as every shard must for a merge,
        with its manifest and failures file.
    Returns the run log (``n_done``, ``n_skipped``, ``failures``, ``complete_files``, ``summary_lines()``).
    Raises :class:`~layerwise.errors.UsageError` for bad settings or folders, before any file is written.
    """
    from layerwise.model.adapter import SpeechModel

    if not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"batch_size={batch_size!r} must be an integer >= 1")
    out_dir = options.output_dir(save_dir)
    alignments = load_alignments(options)  # a wrong tier is refused here, before any weight or audio byte is read
    selection = jobs.select(audio_dir, out_dir, options, subset_id, num_subsets, extensions,
                            group_files=None if sink is None else sink.group_files)
    runlog = RunLog(out_dir, subset_id, num_subsets, not_taken=selection.scan.skipped, sample=selection.sample)
    for reason, paths in selection.scan.skipped.items():
        for path in paths if reason.startswith(audio.UNREADABLE) else ():
            runlog.fail(path, reason)
    if sink is None:
        _refuse_no_store_folder(runlog)
    if not selection.jobs:  # more shards than files: nothing to do, and no reason to load (or download) the model
        log.warning("%s", empty_shard_text(subset_id, num_subsets, len(selection.all_stems), audio_dir,
                                           None if sink is None else sink.group_files))
        if sink is None:
            return runlog
    info = model.info if model is not None else check_settings(options)
    if sink is not None:
        _begin_feed(sink, out_dir, selection.all_stems, options.identity(info), overwrite)
        # an empty shard goes on too: run_extraction computes nothing (no model loads) and writes its empty partial,
        # its manifest and its failures file, as every shard does

    def load() -> SpeechModel:
        if num_threads:
            import torch

            torch.set_num_threads(num_threads)
        return SpeechModel.load(options.model_name, device=options.device, dtype=options.dtype,
                                normalize=options.normalize, random_init=options.random_init,
                                revision=options.revision, seed=options.seed)

    removed = jobs.remove_stale_temporaries(out_dir, selection.jobs)
    if removed:
        log.info("removed %d stale temporary file(s) of killed runs in %s", removed, out_dir)
    log.info("%s in shard %d/%d -> %s", plural(len(selection.jobs), "file"), subset_id, num_subsets, out_dir)
    return run_extraction(model if model is not None else load, selection.jobs, out_dir, options, info=info,
                          runlog=runlog, overwrite=overwrite, stop=stop, progress=progress,
                          audio_stems={path.stem for path in selection.scan.files}, alignments=alignments,
                          batch_size=batch_size, sink=sink)


def empty_shard_text(subset_id: int, num_subsets: int, n_files: int, audio_dir, group_files: int | None) -> str:
    """Why shard ``subset_id`` of ``num_subsets`` holds none of the ``n_files`` selected files, and whether that
    needs anything: stored shards take file i when ``i mod N == K``; ``--no_store`` shards (``group_files`` G) take
    whole groups of G files in file-name order, group g when ``g mod N == K``, and still write an (empty) partial,
    which is all the merge needs of them."""
    head = f"shard {subset_id} of {num_subsets} holds no files"
    if group_files is None:
        return (f"{head}: {audio_dir} has {plural(n_files, 'selected audio file')} and file i goes to shard i mod "
                f"{num_subsets}; pass --num_subsets {max(n_files, 1)} or fewer")
    groups = -(-n_files // group_files)  # ceil: the last group may be short
    return (f"{head}: --no_store shards take whole groups of {group_files} files in file-name order (group g to "
            f"shard g mod {num_subsets}) and the {plural(n_files, 'selected audio file')} of {audio_dir} make "
            f"{plural(groups, 'group')}. Nothing is wrong: this shard writes its empty partial and the merge takes "
            f"it; with {plural(n_files, 'file')}, --num_subsets {max(groups, 1)} or less gives every shard files")


def _refuse_no_store_folder(runlog: RunLog) -> None:
    """Refuse a stored extraction into a folder that holds a ``--no_store`` run's partials (its manifest would
    replace theirs; the reverse is refused by :func:`_begin_feed`)."""
    if partials := runlog.no_store_partials():
        raise UsageError(f"{runlog.out_dir} holds {plural(len(partials), 'analysis partial')} of an "
                         f"extract_features.py --no_store run (e.g. {partials[0]}); merge them "
                         f"with visualize_features.py --merge --output_dir {runlog.out_dir}, or choose another "
                         f"--save_dir for the stored run")


def _begin_feed(sink, out_dir: Path, all_stems: list[str], identity: dict, overwrite: bool) -> None:
    """Start a ``--no_store`` shard's feed, after refusing a folder that holds stored feature files (this run's
    manifest would replace theirs)."""
    stored = store.list_feature_files(out_dir) if out_dir.is_dir() else []
    if stored:
        raise UsageError(f"--no_store: {out_dir} holds {plural(len(stored), 'stored feature file')} (e.g. "
                         f"{stored[0].name}); analyse that folder with visualize_features.py, or choose another "
                         f"--save_dir for the --no_store run")
    sink.begin(all_stems, identity, overwrite=overwrite)


def check_settings(options: ExtractionOptions):
    """Every setting that the checkpoint's config or this machine can refute, refuted before a weight byte or a
    feature file is read: ``layers`` against the config's layer counts, ``device`` against the machine (a config-
    only :func:`~layerwise.model.checkpoint.describe` without the folder fingerprint, which reads the weights).
    Returns the complete ModelInfo (fingerprint included). Raises :class:`~layerwise.errors.UsageError`."""
    from layerwise.model.adapter import resolve_device
    from layerwise.model.checkpoint import describe, with_fingerprint

    info = describe(options.model_name, revision=options.revision, normalize=options.normalize, fingerprint=False,
                    weights=not options.random_init)
    options.layer_keys(info)  # a bad layer spec fails here
    resolve_device(options.device)  # --device cuda without a GPU fails here
    return with_fingerprint(info)


# A TextGrid is parsed to learn its tiers; when the first ones cannot be parsed (each such file is its own failure
# later), this many are tried before the check is left to the files.
TIER_PROBE_FILES = 5
ALIGNMENTS_IGNORED = ("--alignment_dir (alignment_dir) is ignored with the frame span, which stores every frame and "
                      "pools nothing: phone/word spans need --span phone|word; for ABX error rates per layer give "
                      "the alignments to the analysis instead (visualize_features.py --alignment_dir)")


def load_alignments(options: ExtractionOptions) -> dict:
    """The run's alignments (utterance stem -> Source; empty for the frame span), with the tier checked
    (:func:`check_tier`); for the frame span a given ``alignment_dir`` is said to be ignored (a warning)."""
    if options.span == layout.FRAME_SPAN:
        if options.spans.alignment_dir is not None:
            log.warning("%s", ALIGNMENTS_IGNORED)
        return {}
    alignments = find_alignments(options.spans.alignment_dir, options.spans.alignment_format)
    check_tier(alignments, options)
    return alignments


def check_tier(alignments: dict, options: ExtractionOptions) -> None:
    """Refuse a tier that the alignments do not hold, before the weights load: the first alignment file that can
    be parsed (any format; a TextGrid is parsed here) decides, and for the multi-utterance formats (parsed up
    front) any utterance holding the tier is enough. Raises :class:`~layerwise.errors.UsageError` naming the
    tiers found."""
    name, tier = (("phone_tier", options.spans.phone_tier) if options.span == "phone"
                  else ("word_tier", options.spans.word_tier))
    if any(source.tiers is not None and tier in source.tiers for source in alignments.values()):
        return
    for source in list(alignments.values())[:TIER_PROBE_FILES]:
        try:
            present = tier_names(source)
        except AlignmentError:
            continue  # an unparsable file: that file's failure, the next one decides
        if tier in present:
            return
        raise UsageError(f"{name}={tier!r}: the alignment {source} has no such tier; tiers found there: {present}. "
                         f"Pass the one that holds the {options.span}s as --{name}")


def _fbank_function() -> Callable:
    from layerwise.extract.fbank import log_mel  # librosa, imported only when --fbank is asked for

    return log_mel


def _pipeline(jobs, sample_rate, min_samples, compute, write, runlog: RunLog, stop, progress, batch=None,
              lookahead: int = LOOKAHEAD) -> None:
    """Decode ahead (``lookahead`` files, 1 thread), compute in this thread, write behind (1 thread); failures go
    to ``runlog``. ``batch(job, queue)``, when given, runs before each job's compute (:func:`_batch_ahead`)."""
    from tqdm import tqdm

    def decode(job: Job) -> Job:
        job.wave = audio.load_audio(job.source, sample_rate)
        if len(job.wave.samples) < min_samples:
            raise AudioLoadError(f"too short: {len(job.wave.samples)} samples at {sample_rate} Hz, one frame "
                                       f"needs {min_samples}")
        return job

    with ThreadPoolExecutor(1, "decode") as decoder, ThreadPoolExecutor(1, "write") as writer, \
            tqdm(total=len(jobs), desc="extracting", unit="file", disable=not progress, dynamic_ncols=True) as bar:
        queue: deque[tuple[Job, Future]] = deque()
        writes: deque[tuple[Job, Future, float]] = deque()
        upcoming = iter(jobs)
        for job in upcoming:
            queue.append((job, decoder.submit(decode, job)))
            if len(queue) >= lookahead:
                break
        while queue and not (stop and stop.is_set()):
            job, decoded = queue.popleft()
            if (nxt := next(upcoming, None)) is not None:
                queue.append((nxt, decoder.submit(decode, nxt)))
            try:
                decoded.result()
                if batch is not None:
                    batch(job, queue)
                if job.wave.source_rate != sample_rate or job.wave.source_channels != 1:
                    log.info("%s: %d Hz, %d channel(s) -> resampled/downmixed to %d Hz mono", job.source.name,
                             job.wave.source_rate, job.wave.source_channels, sample_rate)
                result = compute(job)
                writes.append((job, writer.submit(write, job, result), job.wave.duration))
            except Exception as err:  # one bad file must not stop the run; reason to failures.tsv
                if caused_by_interrupt(err):  # the abort surfaced wrapped (a lazy import): the stop, not a failure
                    raise
                runlog.fail(job.source, error_text(err), exc=err)
                bar.update(1)
            job.wave = None  # free the samples; the writer keeps only the features
            while writes and (writes[0][1].done() or len(writes) > 2):
                _collect(writes.popleft(), runlog, bar)
        for _, pending in queue:
            pending.cancel()
        while writes:
            _collect(writes.popleft(), runlog, bar)
    left = len(queue) + sum(1 for _ in upcoming)  # decoded ahead + never started
    if stop and stop.is_set() and left:
        runlog.interrupted(left)


def _batch_ahead(model, batch_size: int, rep_type: str, indices: list[int], ahead: dict) -> Callable:
    """The pipeline's batching step: before a job is computed, its features and those of the next decoded jobs
    that may share its forward pass (``model.batch_groups``: any lengths for a layer-norm CNN, equal lengths for a
    group-norm one) are computed together into ``ahead`` (target -> features). A job already in ``ahead`` is left
    alone; a failed batch leaves its jobs to the one-utterance path, so every failure is that file's own."""
    if not model.padding_exact:
        log.warning("--batch_size %d: this model's CNN normalises its first block over the whole utterance "
                    "(feat_extract_norm='group'), so zero padding would change its features; only consecutive "
                    "utterances of equal length share a forward pass, the others run one at a time", batch_size)

    def batch(job: Job, queue: deque) -> None:
        if job.target in ahead:
            return
        group = [job]
        for nxt, decoded in list(queue)[: batch_size - 1]:
            try:
                decoded.result()
            except Exception as err:  # that file fails on its own turn
                if caused_by_interrupt(err):
                    raise
                break
            group.append(nxt)
        lengths = [len(j.wave.samples) for j in group]
        group = [group[i] for i in model.batch_groups(lengths, batch_size)[0]]
        if len(group) < 2:
            return
        try:
            feats = model.features_batch([j.wave.samples for j in group], rep_type, indices)
        except Exception as err:  # retried one by one: each file's own error, if any
            if caused_by_interrupt(err):
                raise
            log.info("a batch of %d utterances failed (%s); computing them one by one", len(group), err)
            return
        ahead.update({j.target: f for j, f in zip(group, feats)})

    return batch


def _collect(item, runlog: RunLog, bar) -> None:
    job, future, duration = item
    try:
        future.result()
        runlog.done(job.source, job.target, duration, job.extra)
    except Exception as err:  # a failed write is that file's failure, not the run's
        if caused_by_interrupt(err):
            raise
        runlog.fail(job.source, f"not written: {error_text(err)}", exc=err)
    bar.update(1)


def _pool(job: Job, feats: dict[str, np.ndarray], geometry, n_samples: int, options: ExtractionOptions):
    """Pool frame features into the segments of the job's alignment: (features, labels, intervals).

    Each key is pooled with the frames of its own layer: all ``layer_k`` share the model's frame rate, ``conv_k``
    has the hop and receptive field of the first k+1 conv blocks. Segments beyond the audio fail the file (or, with
    ``out_of_range="drop"``, are dropped and counted in the file's metadata).
    """
    span_options = options.spans
    tier = span_options.phone_tier if options.span == "phone" else span_options.word_tier
    segments = read_spans(job.alignment, tier, silence_labels=span_options.silence_labels,
                                strip_stress_digits=options.span == "phone" and not span_options.keep_stress)
    audio_seconds, frame_seconds = n_samples / geometry.sample_rate, geometry.hop / geometry.sample_rate
    segments, dropped = spans.check_segments(segments, audio_seconds=audio_seconds, tolerance_s=frame_seconds,
                                             out_of_range=span_options.out_of_range, source=str(job.alignment),
                                             sample_rate=geometry.sample_rate)
    if dropped:
        job.extra["segments_dropped_out_of_range"] = dropped
        log.warning("%s: %d segment(s) outside the audio dropped (out_of_range=drop)", job.source.name, dropped)
    if not segments:
        raise AlignmentError(f"no non-silence segments in tier {tier!r} of {job.alignment}")
    by_geometry: dict[FrameGeometry, dict[str, np.ndarray]] = {}
    for key, value in feats.items():  # one pooling matrix per frame geometry, not per key
        by_geometry.setdefault(geometry.of_layer(*layout.parse_layer_key(key)), {})[key] = value
    pooled, labels, intervals = {}, None, None
    for geo, group in by_geometry.items():
        out, labels, intervals = spans.pool_segments(group, geo.centres(len(next(iter(group.values())))), segments,
                                                     audio_seconds=audio_seconds, tolerance_s=frame_seconds,
                                                     rule=span_options.frame_rule, pooling=span_options.pooling,
                                                     frame_rate=geo.frame_rate, source=str(job.alignment),
                                                     sample_rate=geometry.sample_rate)
        pooled.update(out)
    return {key: pooled[key] for key in feats}, labels, intervals
