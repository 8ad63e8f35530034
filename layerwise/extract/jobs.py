"""Which files a run takes: scan the audio folder → sample set → this shard → one job per file.

Selection has no side effects (``--list_only`` and ``--print_output_dir`` write and delete nothing). Only a real run
calls :func:`remove_stale_temporaries`, which removes temporaries that cannot belong to a live writer.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from layerwise.contract import layout, store
from layerwise.errors import UsageError
from layerwise.extract import audio

SAMPLE_SEED = 0  # permutation of the sorted file list that sample sets are cut from (recorded in the manifest)
# A temporary output is written in one go (seconds for the longest utterance); one untouched for an hour belongs to a
# writer that died. Younger ones may belong to a live writer on another node of a shared filesystem: left alone.
STALE_TMP_AGE_S = 3600


@dataclass
class Job:
    """One audio file of this shard and where its features go."""

    source: Path
    target: Path
    wave: audio.Waveform | None = None
    alignment: object | None = None
    extra: dict = field(default_factory=dict)  # per-file facts written to the file's meta
    extra_meta: dict = field(default_factory=dict)  # facts known before computing (e.g. the alignment's digest)


@dataclass
class Selection:
    """The files of one shard. ``scan`` says what the folder held and what was not taken, and why;
    ``sample`` records how the sample set was drawn (None when the whole folder is the set)."""

    jobs: list[Job]
    scan: audio.AudioScan
    sample: dict | None = None
    all_stems: list[str] = field(default_factory=list)  # every shard's files (the sample set), in shard order


def shard_files(files: list, subset_id: int, num_subsets: int, *, unit: int = 1) -> list:
    """File i of the sorted list belongs to shard ``(i // unit) mod num_subsets`` (``layout.shard_indices``;
    ``unit`` 1: i mod N)."""
    return [files[i] for i in layout.shard_indices(len(files), subset_id, num_subsets, unit=unit)]


def sample_set(files: list[Path], num_utterances: int, data_sample: str) -> tuple[list[Path], dict]:
    """Sample set ``data_sample`` (an integer K ≥ 1): utterances ``(K−1)·N … K·N − 1`` of a seeded permutation of the
    sorted files, so sets 1, 2, … are disjoint while ``K·N`` ≤ the number of files; beyond that set K is a fresh
    seeded draw of N (it may overlap earlier sets; the record says so). Returned sorted, with the record."""
    try:
        k = int(data_sample)
    except ValueError:
        raise UsageError(f"data_sample={data_sample!r} must be an integer >= 1 when --num_utterances is set") from None
    if k < 1:
        raise UsageError(f"data_sample={k} must be >= 1 when --num_utterances is set")
    if num_utterances > len(files):
        raise UsageError(f"num_utterances={num_utterances} but the folder holds {len(files)} audio files")
    order = np.random.default_rng(SAMPLE_SEED).permutation(len(files))
    disjoint = k * num_utterances <= len(files)
    if disjoint:
        chosen = order[(k - 1) * num_utterances: k * num_utterances]
    else:
        chosen = np.random.default_rng([SAMPLE_SEED, k]).choice(len(files), num_utterances, replace=False)
    picked = sorted(files[i] for i in chosen)
    record = {"num_utterances": num_utterances, "data_sample": k, "seed": SAMPLE_SEED, "of_files": len(files),
              "disjoint_from_other_sets": bool(disjoint), "stems": [p.stem for p in picked]}
    return picked, record


def select(audio_dir: str | Path, out_dir: Path, options, subset_id: int, num_subsets: int,
           extensions: tuple[str, ...] = audio.AUDIO_EXTENSIONS, *, group_files: int | None = None) -> Selection:
    """The jobs of shard ``subset_id`` of ``num_subsets`` for ``options`` (an ExtractionOptions).

    Duplicate stems are an error over the WHOLE folder (so all shards agree) before any work.
    group_files : None = the stored rule (file i of the sorted list to shard i mod N); an int G = the analysis
    shard rule (``extract_features.py --no_store``): the files in feature-file-name order, whole groups of G
    consecutive files, group g to shard g mod N (:func:`shard_files`).
    """
    if not 0 <= subset_id < num_subsets:
        raise UsageError(f"subset_id={subset_id} not in [0, {num_subsets - 1}] for num_subsets={num_subsets}")
    scan = audio.find_audio_files(audio_dir, extensions)
    if not scan.files:
        raise UsageError(f"no {'/'.join(extensions)} files below {audio_dir}"
                         + (f"; not taken: {'; '.join(scan.skipped_summary())}" if scan.skipped else ""))
    audio.check_unique_stems(scan.files)
    files, sample = scan.files, None
    if options.num_utterances is not None:
        files, sample = sample_set(files, options.num_utterances, options.data_sample)
    if group_files is not None:  # the order and groups an analysis of the stored files would use
        files = sorted(files, key=lambda p: store.feature_path(out_dir, p.stem).name)
    taken = shard_files(files, subset_id, num_subsets, unit=group_files or 1)
    jobs = [Job(p, store.feature_path(out_dir, p.stem)) for p in taken]
    return Selection(jobs, scan, sample, [p.stem for p in files])


def remove_stale_temporaries(out_dir: Path, jobs: list[Job], *, now: float | None = None) -> int:
    """Remove temporaries of this shard's outputs that cannot belong to a live writer: written on this host by a
    process that no longer exists, or (any host, or names of older versions) untouched for :data:`STALE_TMP_AGE_S`.
    Other shards' files, and live writers' files on other nodes of a shared filesystem, are left alone."""
    if not out_dir.is_dir():
        return 0
    now = time.time() if now is None else now
    targets = {job.target.name for job in jobs}
    removed = 0
    for tmp in out_dir.glob(f".*{store.FEATURE_SUFFIX}*.tmp"):
        writer = store.temporary_writer(tmp)
        name = writer[0] if writer else tmp.name[1:].split(store.FEATURE_SUFFIX)[0] + store.FEATURE_SUFFIX
        try:
            old = now - tmp.stat().st_mtime > STALE_TMP_AGE_S
            if name in targets and (old or (writer is not None and not store.writer_alive(*writer[1:]))):
                os.unlink(tmp)
                removed += 1
        except FileNotFoundError:
            pass
    return removed
