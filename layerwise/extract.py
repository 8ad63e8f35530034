"""The extraction run: files → shard → decode ahead / compute / write behind → manifest, failures, summary.

One utterance per forward pass (exact: see model.py). Decoding of the next files and writing of finished ones run on
background threads so the model does not wait on I/O. Every per-file problem becomes a line in ``failures.tsv``;
the run always finishes the remaining files.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import audio, spans, store
from .runlog import RunLog, output_folder, shard_files

log = logging.getLogger(__name__)

SPANS = ("frame", "phone", "word")
LOOKAHEAD = 3  # files decoded ahead of the model; bounds memory to a few utterances


@dataclass
class SpanOptions:
    """How phone/word spans are built from alignments (see docs/spans.md)."""

    alignment_dir: Path | None = None
    phone_tier: str = "phones"
    word_tier: str = "words"
    silence_labels: tuple[str, ...] = tuple(sorted(spans.DEFAULT_SILENCE_LABELS))
    keep_stress: bool = False
    frame_rule: str = spans.FRAME_RULES[0]
    pooling: str = spans.POOLINGS[0]


@dataclass
class Job:
    """One audio file of this shard and where its features go."""

    source: Path
    target: Path
    wave: audio.Waveform | None = None
    alignment: Path | None = None
    extra: dict = field(default_factory=dict)


def select_jobs(audio_dir: Path, out_dir: Path, subset_id: int, num_subsets: int, runlog: RunLog) -> list[Job]:
    """Every audio file of this shard, with unreadable folders recorded as failures. Duplicate stems are an error
    raised before any work (over the WHOLE folder, so all shards agree)."""
    errors: list[tuple[Path, str]] = []
    files = audio.find_audio_files(audio_dir, errors)
    for path, reason in errors:
        runlog.fail(path, reason)
    if not files:
        raise ValueError(f"no .flac or .wav files below {audio_dir}")
    audio.check_unique_stems(files)
    jobs = [Job(p, store.feature_path(out_dir, p.stem)) for p in shard_files(files, subset_id, num_subsets)]
    # Temporaries of this shard's files left by a killed run (".{name}.{random}.tmp"); other shards' are not touched.
    targets = {job.target.name for job in jobs}
    for stale in out_dir.glob(f".*{store.FEATURE_SUFFIX}.*.tmp") if out_dir.is_dir() else ():
        if stale.name[1:].rsplit(".", 2)[0] in targets:
            stale.unlink(missing_ok=True)
    return jobs


def run_extraction(
    *,
    audio_dir: str | Path,
    save_dir: str | Path = "output",
    model_name: str,
    dataset_split: str = "dev-clean",
    data_sample: int | str = 1,
    rep_type: str = "contextualized",
    layers: str | None = None,
    span: str = "frame",
    span_options: SpanOptions | None = None,
    subset_id: int = 0,
    num_subsets: int = 1,
    device: str = "auto",
    dtype: str = "float32",
    save_dtype: str = "float32",
    normalize: str = "auto",
    overwrite: bool = False,
    random_init: bool = False,
    revision: str | None = None,
    seed: int = 0,
    list_only: bool = False,
    stop: threading.Event | None = None,
    progress: bool = True,
) -> RunLog:
    """Extract features for shard ``subset_id`` of ``num_subsets`` and return the run log (counts, failures).

    Output: ``{save_dir}/{model_tag}/librispeech_{dataset_split}_sample{data_sample}/{stem}_features.npz``.
    ``stop`` (set by a SIGINT/SIGTERM handler) ends the run after the file in progress is written.
    """
    from .model import SpeechModel, parse_layers

    if span not in SPANS:
        raise ValueError(f"--span {span!r} not in {'|'.join(SPANS)}")
    if not 0 <= subset_id < num_subsets:
        raise ValueError(f"--subset_id {subset_id} not in [0, {num_subsets - 1}] (--num_subsets {num_subsets})")
    span_options = span_options or SpanOptions()
    out_dir = output_folder(save_dir, model_name, dataset_split, data_sample, random_init=random_init)
    runlog = RunLog(out_dir, subset_id, num_subsets)
    jobs = select_jobs(Path(audio_dir), out_dir, subset_id, num_subsets, runlog)
    if list_only:
        for job in jobs:
            print(job.source)
        return runlog
    if not jobs:  # more shards than files: nothing to do, and no reason to load (or download) the model
        log.warning("shard %d of %d holds no files (%s)", subset_id, num_subsets, audio_dir)
        return runlog
    alignments = _find_alignments(span, span_options) if span != "frame" else {}

    model = SpeechModel.load(model_name, device=device, dtype=dtype, normalize=normalize, random_init=random_init,
                             revision=revision, seed=seed)
    all_keys = model.keys(rep_type)
    indices = parse_layers(layers, len(all_keys), "conv layer" if rep_type == "local" else "layer")
    keys = [all_keys[i] for i in indices]
    run_meta = {
        "model_name": model_name, "model_revision": model.revision, "model_config": model.config_summary(),
        "random_init": random_init, "seed": seed if random_init else None, "rep_type": rep_type, "span": span,
        "layers": keys, "sample_rate": model.sample_rate, "frame_rate": model.geometry.frame_rate,
        "hop_samples": model.geometry.hop, "receptive_field_samples": model.geometry.receptive_field,
        "compute_dtype": dtype, "save_dtype": save_dtype, "normalize": model.normalize, "device": model.device,
    }
    if span != "frame":
        run_meta["span_options"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(span_options).items()}
    identity = {k: run_meta[k] for k in ("model_name", "rep_type", "span", "layers", "save_dtype", "random_init")}
    runlog.start(run_meta, n_files=len(jobs))
    log.info("%d files in shard %d/%d -> %s", len(jobs), subset_id, num_subsets, out_dir)

    todo = []
    for job in jobs:
        job.alignment = alignments.get(job.source.stem)
        state = "missing" if overwrite else store.resume_state(job.target, keys, identity)
        if span != "frame" and job.alignment is None:
            runlog.no_alignment(job.source)
        elif state == "complete":
            runlog.skip(job.source, job.target)
        elif state == "other_settings":
            runlog.fail(job.source, f"{job.target.name} exists from a run with other settings; pass --overwrite "
                                    "to replace it or choose another --save_dir")
        else:
            todo.append(job)

    def compute(job: Job) -> dict[str, np.ndarray]:
        feats = model.features(job.wave.samples, rep_type, indices)
        n_frames = model.geometry.n_frames(len(job.wave.samples))
        job.extra = {"source_path": str(job.source), "duration_s": job.wave.duration, "n_frames": n_frames,
                     "source_sample_rate": job.wave.source_rate, "source_channels": job.wave.source_channels}
        if span == "frame":
            return feats
        return _pool(job, feats, model.geometry, span, span_options)

    def write(job: Job, result) -> None:
        feats, labels, intervals = result if isinstance(result, tuple) else (result, None, None)
        store.write_features(job.target, feats, {**run_meta, **job.extra}, save_dtype=save_dtype,
                             labels=labels, intervals=intervals)

    _pipeline(todo, model.sample_rate, model.geometry.receptive_field, compute, write, runlog, stop, progress)
    runlog.finish()
    return runlog


def _pipeline(jobs, sample_rate, min_samples, compute, write, runlog: RunLog, stop, progress) -> None:
    """Decode ahead (1 thread), compute in this thread, write behind (1 thread); failures go to ``runlog``."""
    from tqdm import tqdm

    def decode(job: Job) -> Job:
        job.wave = audio.load_audio(job.source, sample_rate)
        if len(job.wave.samples) < min_samples:
            raise audio.AudioLoadError(f"too short: {len(job.wave.samples)} samples at {sample_rate} Hz, one frame "
                                       f"needs {min_samples}")
        return job

    with ThreadPoolExecutor(1, "decode") as decoder, ThreadPoolExecutor(1, "write") as writer, \
            tqdm(total=len(jobs), unit="file", disable=not progress, dynamic_ncols=True) as bar:
        queue: deque[tuple[Job, Future]] = deque()
        writes: deque[tuple[Job, Future, float]] = deque()
        upcoming = iter(jobs)
        for job in upcoming:
            queue.append((job, decoder.submit(decode, job)))
            if len(queue) >= LOOKAHEAD:
                break
        while queue and not (stop and stop.is_set()):
            job, decoded = queue.popleft()
            if (nxt := next(upcoming, None)) is not None:
                queue.append((nxt, decoder.submit(decode, nxt)))
            try:
                decoded.result()
                if job.wave.source_rate != sample_rate or job.wave.source_channels != 1:
                    log.info("%s: %d Hz, %d channel(s) -> resampled/downmixed to %d Hz mono", job.source.name,
                             job.wave.source_rate, job.wave.source_channels, sample_rate)
                result = compute(job)
                writes.append((job, writer.submit(write, job, result), job.wave.duration))
            except Exception as err:  # noqa: BLE001 -- one bad file must not stop the run; reason to failures.tsv
                runlog.fail(job.source, _reason(err), exc=err)
                bar.update(1)
            job.wave = None  # free the samples; the writer keeps only the features
            while writes and (writes[0][1].done() or len(writes) > 2):
                _collect(writes.popleft(), runlog, bar)
        for _, pending in queue:
            pending.cancel()
        while writes:
            _collect(writes.popleft(), runlog, bar)
    if stop and stop.is_set():
        runlog.interrupted(len(queue) + sum(1 for _ in upcoming))  # decoded ahead + never started


def _collect(item, runlog: RunLog, bar) -> None:
    job, future, duration = item
    try:
        future.result()
        runlog.done(job.source, job.target, duration, job.extra)
    except Exception as err:  # noqa: BLE001 -- a failed write is that file's failure, not the run's
        runlog.fail(job.source, f"cannot write {job.target.name}: {_reason(err)}", exc=err)
    bar.update(1)


def _reason(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _find_alignments(span: str, options: SpanOptions) -> dict[str, Path]:
    if options.alignment_dir is None:
        raise ValueError(f"--span {span} needs --alignment_dir (a folder of TextGrid files; see docs/spans.md)")
    return spans.find_alignments(options.alignment_dir)


def _pool(job: Job, feats: dict[str, np.ndarray], geometry, span: str, options: SpanOptions):
    """Pool frame features into the segments of the job's TextGrid: (features, labels, intervals).

    Each key is pooled with the frame centres of its own layer: all ``layer_k`` share the model's frame rate,
    ``conv_k`` has the hop and receptive field of the first k+1 conv blocks.
    """
    from .model import FrameGeometry, parse_layer_geometry

    tier = options.phone_tier if span == "phone" else options.word_tier
    segments = spans.read_spans(job.alignment, tier, silence_labels=options.silence_labels,
                                strip_stress_digits=span == "phone" and not options.keep_stress)
    if not segments:
        raise ValueError(f"no non-silence segments in tier {tier!r} of {job.alignment.name}")
    by_geometry: dict[FrameGeometry, dict[str, np.ndarray]] = {}
    for key, value in feats.items():  # one pooling matrix per frame geometry, not per key
        by_geometry.setdefault(parse_layer_geometry(geometry, key), {})[key] = value
    pooled, labels, intervals = {}, None, None
    for geo, group in by_geometry.items():
        out, labels, intervals = spans.pool_segments(group, geo.centres(len(next(iter(group.values())))), segments,
                                                     rule=options.frame_rule, pooling=options.pooling,
                                                     frame_rate=geo.frame_rate)
        pooled.update(out)
    return {key: pooled[key] for key in feats}, labels, intervals
