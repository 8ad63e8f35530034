"""Bookkeeping of an extraction run: output folder, sharding, per-shard manifest, failures.tsv, end summary.

Several shards may write into one folder at once, so every file here is per shard:
``manifest.json`` / ``failures.tsv`` for an unsharded run, ``manifest.shard-K-of-N.json`` /
``failures.shard-K-of-N.tsv`` for shard K of N. :func:`merge_manifests` joins them.
"""

from __future__ import annotations

import csv
import json
import logging
import platform
import time
from pathlib import Path

from . import __version__, store

log = logging.getLogger(__name__)

RANDOM_INIT_SUFFIX = "-random_init"  # keeps the control's features away from the trained model's


def model_tag(model_name: str) -> str:
    """Last path component of a hub id or folder: ``facebook/hubert-base-ls960 -> hubert-base-ls960``."""
    return Path(str(model_name).rstrip("/")).name


def output_folder(save_dir, model_name: str, dataset_split: str, data_sample, *, random_init: bool = False) -> Path:
    """``{save_dir}/{model_tag}/librispeech_{dataset_split}_sample{data_sample}`` (tag + ``-random_init`` for the
    random-initialisation control)."""
    tag = model_tag(model_name) + (RANDOM_INIT_SUFFIX if random_init else "")
    return Path(save_dir) / tag / f"librispeech_{dataset_split}_sample{data_sample}"


def shard_files(files: list, subset_id: int, num_subsets: int) -> list:
    """File i of the sorted list belongs to shard ``i mod num_subsets``: disjoint shards whose union is all files."""
    return files[subset_id::num_subsets]


def shard_suffix(subset_id: int, num_subsets: int) -> str:
    return "" if num_subsets == 1 else f".shard-{subset_id}-of-{num_subsets}"


class RunLog:
    """Counts, failures and per-file records of one shard's run; writes manifest and failures at the end."""

    def __init__(self, out_dir: Path, subset_id: int, num_subsets: int):
        self.out_dir = Path(out_dir)
        self.suffix = shard_suffix(subset_id, num_subsets)
        self.subset_id, self.num_subsets = subset_id, num_subsets
        self.failures: list[tuple[str, str]] = []
        self.missing_alignment: list[str] = []
        self.files: dict[str, dict] = {}
        self.n_done = self.n_skipped = 0
        self.audio_seconds = 0.0
        self.meta: dict = {}
        self.n_files = 0
        self.was_interrupted = False
        self._t0 = time.perf_counter()

    @property
    def manifest_path(self) -> Path:
        return self.out_dir / f"manifest{self.suffix}.json"

    @property
    def failures_path(self) -> Path:
        return self.out_dir / f"failures{self.suffix}.tsv"

    def start(self, meta: dict, n_files: int) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.meta, self.n_files = meta, n_files
        self._t0 = time.perf_counter()

    def done(self, source: Path, target: Path, duration: float, extra: dict) -> None:
        self.n_done += 1
        self.audio_seconds += duration
        self.files[target.name] = {**extra, "status": "done"}

    def skip(self, source: Path, target: Path) -> None:
        self.n_skipped += 1
        self.files[target.name] = {"source_path": str(source), "status": "skipped (complete)"}

    def fail(self, source: Path, reason: str, exc: BaseException | None = None) -> None:
        self.failures.append((str(source), reason))
        log.error("FAILED %s: %s", source, reason, exc_info=exc if log.isEnabledFor(logging.DEBUG) else None)

    def no_alignment(self, source: Path) -> None:
        self.missing_alignment.append(str(source))
        log.warning("no alignment for %s: skipped", source)

    def interrupted(self, n_left: int) -> None:
        self.was_interrupted = True
        log.warning("interrupted: the file in progress was written; %d file(s) left for a re-run", n_left)

    @property
    def wall_seconds(self) -> float:
        return time.perf_counter() - self._t0

    def finish(self) -> None:
        """Write the manifest and failures file of this shard, then log the end summary."""
        if not self.meta:
            return
        with open(self.failures_path, "w", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerow(["path", "reason"])
            writer.writerows(self.failures)
        store.write_json_atomic(self.manifest_path, {
            "tool": {"name": "layerwise", "version": __version__, "python": platform.python_version(),
                     "versions": _library_versions()},
            "run": self.meta,
            "shard": {"subset_id": self.subset_id, "num_subsets": self.num_subsets},
            "counts": self.counts(),
            "files": self.files,
            "failures": [{"path": p, "reason": r} for p, r in self.failures],
            "missing_alignment": self.missing_alignment,
        })
        for line in self.summary_lines():
            log.info(line)

    def counts(self) -> dict:
        return {"files": self.n_files, "done": self.n_done, "skipped": self.n_skipped, "failed": len(self.failures),
                "missing_alignment": len(self.missing_alignment), "audio_hours": self.audio_seconds / 3600,
                "wall_seconds": self.wall_seconds, "interrupted": self.was_interrupted,
                "realtime_factor": self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else None}

    def summary_lines(self) -> list[str]:
        c = self.counts()
        rtf = f"{c['realtime_factor']:.1f}x realtime" if c["realtime_factor"] else "n/a"
        lines = [f"done {c['done']}, skipped {c['skipped']} (already complete), failed {c['failed']}"
                 + (f", no alignment {c['missing_alignment']}" if c["missing_alignment"] else "")
                 + f" | {c['audio_hours']:.3f} h of audio in {c['wall_seconds']:.1f} s ({rtf})",
                 f"outputs: {self.out_dir}"]
        if self.failures:
            lines.append(f"failures ({len(self.failures)}), listed in {self.failures_path}:")
            lines += [f"  {p}: {r}" for p, r in self.failures[:50]]
        if self.missing_alignment:
            lines.append("files without an alignment (skipped): " + ", ".join(Path(p).name for p in self.missing_alignment[:20]))
        return lines


def _library_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "transformers", "numpy", "soundfile", "soxr"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def merge_manifests(out_dir: str | Path) -> dict:
    """Join the manifests of every shard in ``out_dir`` into one dict (``files`` and ``failures`` concatenated).

    Raises ValueError when the shards were run with different settings.
    """
    paths = sorted(Path(out_dir).glob("manifest*.json"))
    if not paths:
        raise FileNotFoundError(f"no manifest*.json in {out_dir}")
    manifests = [json.loads(p.read_text()) for p in paths]
    runs = {json.dumps({k: v for k, v in m["run"].items() if k != "device"}, sort_keys=True) for m in manifests}
    if len(runs) > 1:
        raise ValueError(f"{out_dir}: shards were run with different settings ({len(runs)} variants)")
    merged = {"run": manifests[0]["run"], "shards": [m["shard"] for m in manifests], "files": {}, "failures": []}
    for m in manifests:
        merged["files"].update(m["files"])
        merged["failures"] += m["failures"]
    return merged
