"""Bookkeeping of an extraction run: per-shard manifest, failures.tsv, counts and the end summary.

Several shards may write into one folder at once, so every file here is per shard:
``manifest.json`` / ``failures.tsv`` for an unsharded run, ``manifest.shard-K-of-N.json`` /
``failures.shard-K-of-N.tsv`` for shard K of N. Both are written atomically. A run never replaces the manifest
of an earlier run with another identity (its files stay what that manifest says) unless it ran with overwrite.
"""

from __future__ import annotations

import csv
import io
import logging
import platform
import sys
import time
from pathlib import Path

from layerwise import __version__
from layerwise.contract import layout, store
from layerwise.contract.names import format_duration
from layerwise.contract.provenance import MANIFEST_GLOB, extraction_versions
from layerwise.errors import OwnFileError, UsageError, error_text, one_line

log = logging.getLogger(__name__)

# The analysis partials' names below a folder (``analyze.shards.partial_path``; extract/ never imports analyze/)
PARTIALS_GLOB = "partials/partial_*_of_*.npz"
INTERRUPTED_NO_STORE = ("no partial was written (a --no_store shard writes its partial only when all its files are "
                        "done); a re-run redoes this shard from its first file")


class RunLog:
    """Counts, failures and per-file records of one shard's run; writes manifest and failures at the end."""

    def __init__(self, out_dir: Path, subset_id: int = 0, num_subsets: int = 1, *, command: list[str] | None = None,
                 not_taken: dict[str, list] | None = None, sample: dict | None = None):
        self.out_dir = Path(out_dir)
        self.suffix = layout.shard_suffix(subset_id, num_subsets)
        self.subset_id, self.num_subsets = subset_id, num_subsets
        self.command = command if command is not None else list(sys.argv)
        self.not_taken = {reason: [str(p) for p in paths] for reason, paths in (not_taken or {}).items()}
        self.sample = sample
        self.failures: list[tuple[str, str]] = []
        self.missing_alignment: list[str] = []
        self.unmatched_alignment: list[str] = []  # alignment ids that match no audio file of the folder
        self.files: dict[str, dict] = {}
        self.n_done = self.n_skipped = 0
        self.audio_seconds = 0.0
        self.meta: dict = {}
        self.n_files = 0
        self.overwrite = False
        self.was_interrupted = False
        self.manifest_kept: str | None = None  # why an earlier run's manifest was left in place
        self.partial: Path | None = None  # --no_store: the analysis partial this shard wrote (no feature files)
        self.no_store = False  # --no_store run: an interrupted shard keeps nothing (its partial is written whole)
        self.batch_size = 1  # utterances per forward pass where exact: how the run ran, not part of its identity
        self._t0 = time.perf_counter()

    @property
    def manifest_path(self) -> Path:
        return self.out_dir / f"manifest{self.suffix}.json"

    @property
    def failures_path(self) -> Path:
        return self.out_dir / f"failures{self.suffix}.tsv"

    def start(self, meta: dict, n_files: int, *, overwrite: bool = False) -> None:
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UsageError(f"cannot create the output folder {self.out_dir}: "
                             f"{err.strerror or error_text(err)} (check --save_dir)") from err
        self.meta, self.n_files, self.overwrite = meta, n_files, overwrite
        self._t0 = time.perf_counter()

    def done(self, source: Path, target: Path, duration: float, extra: dict) -> None:
        self.n_done += 1
        self.audio_seconds += duration
        self.files[target.name] = {**extra, "status": "done"}

    def skip(self, source: Path, target: Path) -> None:
        self.n_skipped += 1
        self.files[target.name] = {"source_path": str(source), "status": "skipped (complete)"}

    def fail(self, source: Path, reason: str, exc: BaseException | None = None) -> None:
        """Record ``source`` as failed: ``reason`` is kept whole, its newlines folded (``errors.one_line``), so one
        failure is one line of failures.tsv, of the manifest and of the log."""
        reason = one_line(reason)
        self.failures.append((str(source), reason))
        log.error("FAILED %s: %s", source, reason, exc_info=exc if log.isEnabledFor(logging.DEBUG) else None)

    def no_alignment(self, source: Path) -> None:
        self.missing_alignment.append(str(source))
        log.warning("no alignment for %s: skipped", source)

    def unmatched_alignments(self, ids: list[str], alignment_dir) -> None:
        """Record alignment ids (utterances) that match no audio file: counted in the log, listed in the manifest
        (a typo'd id, a BOM glued to the first id of a file, or alignments of another split)."""
        self.unmatched_alignment = list(ids)
        log.warning("%d alignment id(s) in %s match no audio file (e.g. %s); they are listed in the manifest "
                    "under unmatched_alignments", len(ids), alignment_dir, ", ".join(map(repr, ids[:5])))

    def interrupted(self, n_left: int) -> None:
        self.was_interrupted = True
        if self.no_store:
            log.warning("interrupted: %s", INTERRUPTED_NO_STORE)
        else:
            log.warning("interrupted: files finished before the signal are written; %d file(s) left for a re-run",
                        n_left)

    @property
    def wall_seconds(self) -> float:
        return time.perf_counter() - self._t0

    @property
    def complete_files(self) -> list[Path]:
        """Feature files of this run that are complete now (written or found complete)."""
        return [self.out_dir / name for name, rec in sorted(self.files.items())]

    def no_store_partials(self) -> list[str]:
        """The analysis partials of a ``--no_store`` run in this folder (a stored extraction must not write beside
        them: its manifest would replace theirs): none unless a manifest here records a partial that still exists;
        then every partial in ``partials/`` (what ``visualize_features.py --merge`` takes), also one whose
        shard recorded no manifest (an empty shard of an older version)."""
        if not self.out_dir.is_dir():
            return []
        recorded = False
        for path in sorted(self.out_dir.glob(MANIFEST_GLOB)):
            manifest = store.read_own(path, what="extraction manifest", kind="json",
                                      rebuild="remove the damaged manifest, or choose another --save_dir")
            partial = (manifest.get("no_store") or {}).get("partial")
            recorded = recorded or bool(partial and (self.out_dir / "partials" / Path(partial).name).is_file())
        return [str(path) for path in sorted(self.out_dir.glob(PARTIALS_GLOB))] if recorded else []

    def keep_manifest_of(self, partial: Path) -> bool:
        """A ``--no_store`` shard found ``partial`` complete (a re-run: nothing computed): keep this shard's
        manifest when it records that partial, so the facts of the run that wrote it (its audio, wall time, command)
        stay; returns whether it was kept (else :meth:`finish` writes this run's)."""
        try:
            manifest = store.read_own(self.manifest_path, what="extraction manifest", kind="json",
                                      rebuild="it is rewritten by this run")
        except OwnFileError:
            return False
        recorded = (manifest.get("no_store") or {}).get("partial") if isinstance(manifest, dict) else None
        if not recorded or Path(recorded).name != Path(partial).name:
            return False
        self.manifest_kept = f"{self.manifest_path.name} records the run that wrote {Path(partial).name}"
        log.info("%s: kept as it is (this run found that partial complete and computed nothing)",
                 self.manifest_kept)
        return True

    def earlier_run_differs(self) -> str | None:
        """Why this run must not write into the folder: a manifest there describes a run with other settings whose
        feature files are still present (a manifest whose files are all gone, or that wrote none, does not count).
        None when the folder is free for this run."""
        for path in sorted(self.out_dir.glob(MANIFEST_GLOB)):
            manifest = store.read_own(path, what="extraction manifest", kind="json",
                                      rebuild="re-run this extraction with --overwrite (it rewrites the manifest "
                                              "and every file), or remove the damaged manifest")
            earlier = manifest.get("run", {})
            differ = layout.identity_diff(earlier, self.meta)
            present = any((self.out_dir / name).is_file() for name in manifest.get("files", {}))
            if differ and present:
                return (f"{path.name} describes a run with other settings "
                        f"({layout.describe_diff(earlier, self.meta, differ)})")
        return None

    def finish(self) -> None:
        """Write the manifest and failures file of this shard (atomically), unless they belong to an earlier run
        with other settings and this run did not overwrite."""
        if not self.meta:
            return
        if not self.overwrite and (why := self.earlier_run_differs()):
            self.manifest_kept = why
            log.warning("%s: kept as it is (this run was refused for those files)", why)
            return
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
        writer.writerow(["path", "reason"])
        writer.writerows(self.failures)
        store.write_text_atomic(self.failures_path, buffer.getvalue())
        store.write_json_atomic(self.manifest_path, {
            "tool": {"name": "layerwise", "version": __version__, "python": platform.python_version(),
                     "versions": extraction_versions()},
            "command": self.command,
            "run": {**self.meta, "batch_size": self.batch_size},
            "shard": {"subset_id": self.subset_id, "num_subsets": self.num_subsets},
            "sample": self.sample,
            "counts": self.counts(),
            "files": self.files,
            "failures": [{"path": p, "reason": r} for p, r in self.failures],
            "missing_alignment": self.missing_alignment,
            "unmatched_alignments": self.unmatched_alignment,
            "not_taken": self.not_taken,
            **({} if self.partial is None else {"no_store": {"partial": str(self.partial), "feature_files": False}}),
        })

    def counts(self) -> dict:
        return {"files": self.n_files, "done": self.n_done, "skipped": self.n_skipped, "failed": len(self.failures),
                "missing_alignment": len(self.missing_alignment), "audio_hours": self.audio_seconds / 3600,
                "wall_seconds": self.wall_seconds, "interrupted": self.was_interrupted,
                "not_taken": sum(len(v) for v in self.not_taken.values()),
                "realtime_factor": self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else None}

    def summary_lines(self) -> list[str]:
        """The end summary the CLI prints: files done/skipped/failed, audio, wall time, realtime factor."""
        c = self.counts()
        rtf = f"{c['realtime_factor']:.1f}× realtime" if c["realtime_factor"] else "no audio computed"
        lines = [f"files: {c['done']} done, {c['skipped']} skipped (already complete), {c['failed']} failed"
                 + (f", {c['missing_alignment']} without alignment" if c["missing_alignment"] else "")
                 + f" | {format_duration(self.audio_seconds)} of audio in {format_duration(c['wall_seconds'])} "
                 + f"({rtf})",
                 f"outputs: {self.out_dir}" + (f" (no feature files stored; analysis partial {self.partial})"
                                               if self.partial is not None else "")]
        for reason, paths in sorted(self.not_taken.items()):
            lines.append(f"not taken: {len(paths)} file(s): {reason} (e.g. {paths[0]})")
        if self.failures:
            where = self.failures_path if self.manifest_kept is None else "the log above"
            lines.append(f"failures ({len(self.failures)}), listed in {where}:")
            by_reason: dict[str, list[str]] = {}
            for path, reason in self.failures:
                by_reason.setdefault(reason, []).append(path)
            for reason, paths in list(by_reason.items())[:50]:  # one line per reason, not per file
                lines.append(f"  {paths[0]}: {reason}" if len(paths) == 1
                             else f"  {len(paths)} files (e.g. {paths[0]}): {reason}")
        if self.unmatched_alignment:
            lines.append(f"alignment ids matching no audio file: {len(self.unmatched_alignment)} (e.g. "
                         + ", ".join(map(repr, self.unmatched_alignment[:5])) + "), listed in the manifest")
        if self.missing_alignment:
            lines.append("files without an alignment (skipped): "
                         + ", ".join(Path(p).name for p in self.missing_alignment[:20]))
        if self.manifest_kept:
            lines.append(f"{self.manifest_kept}: kept; nothing of this run was recorded there")
        return lines
