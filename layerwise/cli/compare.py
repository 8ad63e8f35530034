"""Compare extraction folders layer by layer: cross-model linear CKA, same-index curves, per-folder sweeps, report.

Reads two or more folders written by extract_features.py (utterances matched by file name; only those present in
every folder are used) and writes one heatmap per pair of folders, cka_same_layer.png, sweep.png, summary.json,
summary.csv and report.html to --output_dir. See docs/analysis.md, "Comparing models and checkpoints".

Example:
  python compare_features.py \\
      --features_dirs output/hubert-base-ls960/librispeech_dev-clean_sample1 \\
                      output/wav2vec2-base/librispeech_dev-clean_sample1 \\
                      output/hubert-base-ls960-random_init/librispeech_dev-clean_sample1 \\
      --output_dir output/comparison --layers 0-12
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from layerwise.cli.common import (
    EXIT_FAILED_INPUTS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CliParser,
    interrupted_by,
    owns_process,
    setup_logging,
    stopped_text,
    stops_as_interrupt,
    with_flags,
)
from layerwise.compare.options import DEFAULT_NUM_FILES, DEFAULT_OUTPUT_DIR, CompareOptions
from layerwise.contract import progress
from layerwise.contract.outputs import FOLDER_FULL, about_output, os_reason, snapshot
from layerwise.errors import LayerwiseError, caused_by_interrupt, error_text


def build_parser() -> argparse.ArgumentParser:
    p = CliParser(prog="compare_features.py", description=__doc__.split("\n\n")[0],
                  epilog=__doc__[__doc__.index("Example:"):])
    d = "(default: %(default)s)"
    p.add_argument("--features_dirs", nargs="+", required=True, metavar="DIR",
                   help="two or more folders of *_features.npz files (extract_features.py output folders)")
    p.add_argument("--output_dir", default=DEFAULT_OUTPUT_DIR, help=f"where figures and reports go {d}")
    p.add_argument("--num_files", type=int, default=DEFAULT_NUM_FILES,
                   help=f"compare the first N utterances present in every folder, in file-name order; 0 = all {d}")
    p.add_argument("--layers", default="all",
                   help=f"layers compared in every folder: indices, ranges or keys, e.g. 0,6,12 or 0-12 or "
                        f"layer_3 {d}")
    p.add_argument("--labels", nargs="+", metavar="NAME",
                   help="one legend name per folder, in the same order (default: each folder's model tag from its "
                        "metadata, '-random_init' appended for a control)")
    p.add_argument("--no_progress", action="store_true", help="no progress bars on stderr")
    p.add_argument("--verbose", action="store_true", help="debug logging, and tracebacks on errors")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    progress.set_enabled(not args.no_progress)
    log = logging.getLogger("compare_features")
    before = snapshot(args.output_dir)  # what a stopped run wrote: what differs from this at the end
    with stops_as_interrupt(until_exit=owns_process(argv)) as terminated:  # SLURM's time limit: as Ctrl-C
        status, result = _run(args, before, terminated, log)
    if terminated and status != EXIT_INTERRUPTED:  # the stop was swallowed and the run went on: still a stop
        log.error("%s: %s", interrupted_by(terminated), stopped_text(args.output_dir, before))
        return EXIT_INTERRUPTED
    if status is not None:
        return status
    return exit_status(result.unavailable, args.output_dir, log, result.not_written)


def _run(args, before: dict, terminated: list, log: logging.Logger) -> tuple[int | None, object]:
    """The comparison of parsed ``args``: (None, the Comparison) when it wrote its outputs, else (the exit
    status, None) after one logged line: a usage error (2), Ctrl-C or SIGTERM (``terminated``; 130), an
    output that could not be written (1: the file and the errno text, and what was written)."""
    try:
        from layerwise.compare.run import run_comparison

        result = run_comparison(CompareOptions(features_dirs=args.features_dirs, output_dir=args.output_dir,
                                               num_files=args.num_files, layers=args.layers, labels=args.labels))
    except (KeyboardInterrupt, Exception) as err:
        if terminated or caused_by_interrupt(err):  # Ctrl-C/SIGTERM, also wrapped (a lazy import's RuntimeError)
            log.error("%s: %s", interrupted_by(terminated), stopped_text(args.output_dir, before))
            return EXIT_INTERRUPTED, None
        if isinstance(err, LayerwiseError):
            log.error("%s", with_flags(error_text(err), vars(args)))
            if args.verbose:
                raise
            return EXIT_USAGE, None
        if not (isinstance(err, OSError) and about_output(err, args.output_dir)):
            raise
        advice = ("free some space, then " if err.errno in FOLDER_FULL
                  else f"make {Path(err.filename).name} writable (move away what is in its place), then ")
        log.error("could not write %s: %s; %s", err.filename, os_reason(err),
                  stopped_text(args.output_dir, before, advice=advice))
        if args.verbose:
            raise
        return EXIT_FAILED_INPUTS, None
    return None, result


def exit_status(unavailable: dict[str, str], output_dir: str, log: logging.Logger,
                not_written: dict[str, str] | None = None) -> int:
    """The one exit rule (README, "Exit status") for a comparison that wrote its outputs: 0 when every requested
    number was computed and every figure drawn, 1 when some could not be (``unavailable``: measure -> why;
    ``not_written``: figure -> why; each named in the log). The report's path is always printed. (2, nothing
    produced, is the error path of :func:`main`.)"""
    report = Path(output_dir) / "report.html"
    if unavailable:
        log.error("not computed: %s", "; ".join(f"{k}: {v}" for k, v in unavailable.items()))
    if not_written:
        log.error("not drawn: %s", "; ".join(f"{k} ({v})" for k, v in not_written.items()))
    if unavailable or not_written:
        log.error("everything else was written; report: %s", report)
        return EXIT_FAILED_INPUTS
    log.info("report: %s", report)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
