"""``python -m layerwise.data``: download LibriSpeech splits and MFA alignments (the library is layerwise.data)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from layerwise.cli import common
from layerwise.cli.common import (
    EXIT_FAILED_INPUTS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CliParser,
    setup_logging,
)
from layerwise.data.librispeech import (
    ALIGNMENTS,
    DEFAULT_DEST,
    DEFAULT_SPLIT,
    RESOURCES,
    download,
    failure_advice,
    format_table,
)
from layerwise.errors import DataError, error_text

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    splits = [n for n in RESOURCES if n != ALIGNMENTS]
    parser = CliParser(
        prog="python -m layerwise.data",
        description="Download LibriSpeech splits and MFA alignments with checksums, resume and safe extraction.",
        epilog="example:\n  python -m layerwise.data download --split dev-clean-2 --dest content/data\n"
               "  -> content/data/LibriSpeech/dev-clean-2/<spk>/<chapter>/<utt>.flac (path printed on stdout)\n"
               "  python -m layerwise.data download --split none --alignments --dest content/data\n"
               "  -> content/data/alignments/ (TextGrids; use as --alignment_dir)")
    parser.add_argument("--list", action="store_true", help="print the known resources and exit")
    parser.add_argument("--verbose", action="store_true", help="debug logging and tracebacks")
    sub = parser.add_subparsers(dest="command")
    dl = sub.add_parser("download", help="download, verify and extract", epilog=parser.epilog)
    dl.add_argument("--split", action="append", choices=splits + ["none"],
                    help=f"split to fetch, repeatable; 'none' for alignments only (default: {DEFAULT_SPLIT})")
    dl.add_argument("--dest", default=DEFAULT_DEST,
                    help="folder the archives are downloaded and unpacked into (default: %(default)s)")
    dl.add_argument("--alignments", action="store_true", help="also fetch the MFA alignments (Zenodo 2619474)")
    dl.add_argument("--mirror", action="append", metavar="URL",
                    help="mirror to use instead of the built-in list, repeatable; a base URL (archive name "
                         "appended) or a full URL to the archive")
    dl.add_argument("--delete-archive", action="store_true", help="remove the archive after extraction")
    dl.add_argument("--no-progress", action="store_true", help="no progress bar")
    # SUPPRESS: a sub-parser default would overwrite the same flag given before the command.
    dl.add_argument("--list", action="store_true", default=argparse.SUPPRESS, help="print the known resources")
    dl.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging, tracebacks")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    if args.list:
        print(format_table())
        return EXIT_OK
    if args.command != "download":
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: give a command (download) or --list", file=sys.stderr)
        return EXIT_USAGE
    splits = args.split or [DEFAULT_SPLIT]
    names = [s for s in dict.fromkeys(splits) if s != "none"] + ([ALIGNMENTS] if args.alignments else [])
    if not names:
        print(f"{parser.prog}: error: --split none needs --alignments", file=sys.stderr)
        return EXIT_USAGE
    name, produced, failed = names[0], [], []
    with common.stops_as_interrupt(until_exit=common.owns_process(argv)) as terminated:  # SLURM, kill: as Ctrl-C
        try:
            for name in names:
                try:
                    print(download(name, args.dest, mirrors=args.mirror, keep_archive=not args.delete_archive,
                                   progress=not args.no_progress))
                    produced.append(name)
                except (DataError, OSError) as err:  # the other resources are still fetched; this one is named
                    if terminated:
                        raise KeyboardInterrupt from err
                    if args.verbose:
                        log.exception("failed")
                    print(f"error: {name}: {error_text(err)}\n{failure_advice(name, args.dest)}", file=sys.stderr)
                    failed.append(name)
        except KeyboardInterrupt:
            part = Path(args.dest).absolute() / f"{RESOURCES[name].archive}.part"
            left = (f"the partial download {part} resumes with the same command" if part.exists() else
                    f"{name} was not finished; run the same command again")
            print(f"{common.interrupted_by(terminated)}; {left}", file=sys.stderr)
            return EXIT_INTERRUPTED
    if terminated:  # the stop was swallowed and the downloads went on to the end: still a stop
        print(f"{common.interrupted_by(terminated)}; the downloads had finished", file=sys.stderr)
        return EXIT_INTERRUPTED
    if failed:  # the one exit rule: 1 when some was produced (the rest named), 2 when nothing was
        print(f"not downloaded: {', '.join(failed)}" + (f"; done: {', '.join(produced)}" if produced else ""),
              file=sys.stderr)
        return EXIT_FAILED_INPUTS if produced else EXIT_USAGE
    return EXIT_OK

