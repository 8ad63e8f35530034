"""Extract every layer's features of a speech SSL model (HuBERT by default) from a folder of audio.

Writes one {stem}_features.npz per audio file into the folder --print_output_dir shows:
{save_dir}/{model_tag}/librispeech_{dataset_split}_sample{data_sample}/ for the default contextualized frame run;
other rep types/spans add a suffix (_local, _phone, _word, _local_word), --random_init the model tag
{model_tag}-random_init. See README.md, docs/extraction.md (format, identity, folders) and docs/spans.md.

Exit status: 0 all files done (or already complete), 1 some files failed (the rest were done; see failures.tsv),
2 usage error (nothing done), 130 interrupted with files left (finished files are complete; re-run to resume; with
--no_store nothing of the shard is kept and a re-run redoes it from its first file).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from pathlib import Path

from layerwise.cli.common import (
    EXIT_FAILED_INPUTS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    SAME_STOP_SECONDS,
    CliParser,
    add_shard_arguments,
    owns_process,
    setup_logging,
    shard_from_env,
    with_flags,
)
from layerwise.contract import progress
from layerwise.contract.alignments import ALIGNMENT_FORMATS, DEFAULT_SILENCE_LABELS
from layerwise.contract.layout import DEFAULT_REP_TYPE, FRAME_SPAN, SPANS
from layerwise.contract.store import SAVE_DTYPES
from layerwise.errors import LayerwiseError, UsageError, error_text
from layerwise.extract.options import DEVICES, ExtractionOptions, SpanOptions
from layerwise.extract.runlog import INTERRUPTED_NO_STORE
from layerwise.extract.spans import FRAME_RULES, OUT_OF_RANGE_POLICIES, POOLINGS
from layerwise.model.checkpoint import DEFAULT_MODEL, DTYPES, NORMALIZE_MODES, REP_TYPES

log = logging.getLogger("layerwise.extract.run")

EXAMPLE = """examples:
  python extract_features.py --audio_dir content/data/LibriSpeech/dev-clean-2
  python extract_features.py --model_name /path/to/saved_checkpoint --layers 0-4,12 --dtype bfloat16
  python extract_features.py --rep_type local --subset_id 3 --num_subsets 8
  python extract_features.py --no_store --subset_id 3 --num_subsets 8   # no features stored: analysis partials;
  python visualize_features.py --merge --output_dir OUTPUT               # then merge them (docs/scaling.md)
  python extract_features.py --span phone --alignment_dir content/data/librispeech_alignments
  python extract_features.py --num_utterances 500 --data_sample 2 --fbank      # sample set 2: 500 seeded random files
"""


def build_parser() -> argparse.ArgumentParser:
    p = CliParser(prog="extract_features.py", description=__doc__, epilog=EXAMPLE)
    d = "(default: %(default)s)"
    p.add_argument("--audio_dir", default="content/data/LibriSpeech/dev-clean-2",
                   help=f"folder searched recursively (symbolic links followed) for audio files {d}")
    p.add_argument("--extensions", default="flac,wav",
                   help=f"comma-separated audio extensions taken (any libsndfile decodes, e.g. flac,wav,ogg) {d}")
    p.add_argument("--save_dir", default="output", help=f"root of the output folders {d}")
    p.add_argument("--model_name", default=DEFAULT_MODEL,
                   help=f"Hugging Face id or local save_pretrained folder (HuBERT, wav2vec 2.0, WavLM) {d}")
    p.add_argument("--revision", default=None, help="hub revision (branch, tag or commit) to load (default: main)")
    p.add_argument("--dataset_split", default="dev-clean", help=f"split name used in the output folder {d}")
    p.add_argument("--data_sample", default="1",
                   help=f"sample id in the output folder; with --num_utterances, which seeded sample set {d}")
    p.add_argument("--num_utterances", type=int, default=None,
                   help="sample set --data_sample K = utterances (K-1)N..KN-1 of a seeded permutation of the folder "
                        "(disjoint sets while the folder is large enough); default: every file")
    p.add_argument("--rep_type", choices=REP_TYPES, default=DEFAULT_REP_TYPE,
                   help="contextualized: layer_0..layer_L = hidden_states; local: conv_0..conv_6 = CNN block "
                        f"outputs {d}")
    p.add_argument("--layers", default="all",
                   help=f"layers to save: indices, inclusive ranges or keys, e.g. 0,6,12 or 0-4,12 or layer_3 {d}")
    p.add_argument("--span", choices=SPANS, default=FRAME_SPAN,
                   help=f"frame: every frame; phone/word: mean-pooled per aligned segment (needs --alignment_dir) {d}")
    p.add_argument("--fbank", action="store_true",
                   help="also store the 80-band log-mel filterbank under key 'fbank' (for the cca_mel measure)")
    g = p.add_argument_group("phone/word spans (see docs/spans.md)")
    g.add_argument("--alignment_dir", type=Path, default=None,
                   help="folder of alignments, one per utterance (by stem), or one-line-per-utterance files")
    g.add_argument("--alignment_format", choices=ALIGNMENT_FORMATS, default="auto",
                   help=f"TextGrid, CTM, LibriSpeech one-line word alignments, JSON; auto = by extension {d}")
    g.add_argument("--phone_tier", default="phones", help=f"tier of phones {d}")
    g.add_argument("--word_tier", default="words", help=f"tier of words {d}")
    g.add_argument("--silence_labels", default=",".join(sorted(DEFAULT_SILENCE_LABELS)),
                   help=f"comma-separated labels skipped as silence (empty label always skipped) {d}")
    g.add_argument("--keep_stress", action="store_true", help="keep ARPAbet stress digits (AH0 stays AH0)")
    g.add_argument("--frame_rule", choices=FRAME_RULES, default=FRAME_RULES[0], help=f"frame-to-segment rule {d}")
    g.add_argument("--pooling", choices=POOLINGS, default=POOLINGS[0], help=f"pooling within a segment {d}")
    g.add_argument("--out_of_range", choices=OUT_OF_RANGE_POLICIES, default=OUT_OF_RANGE_POLICIES[0],
                   help="a segment beyond the audio (more than one frame), empty or reversed: fail the file, or "
                        f"drop it and count it in the file's metadata {d}")
    s = p.add_argument_group("sharding and queries")
    add_shard_arguments(s, "file i of the sorted list goes to shard i mod N")
    s.add_argument("--no_store", action="store_true",
                   help="store no feature files: the forward pass feeds the analysis directly and this shard writes "
                        "only its mergeable analysis partial (OUTPUT/partials/partial_K_of_N.npz) and manifest; a "
                        "shard takes whole groups of 64 files in file-name order (the analysis shard rule); then "
                        "visualize_features.py --merge --output_dir OUTPUT (OUTPUT: --print_output_dir) writes "
                        "summary, figures and report. No random-init control, ABX or PNMI (they need the features "
                        "again); see docs/scaling.md")
    s.add_argument("--list_only", action="store_true", help="print the files this shard would take, and exit "
                                                            "(writes and deletes nothing)")
    s.add_argument("--print_output_dir", action="store_true",
                   help="print the output folder these arguments select, and exit (used by the wrapper)")
    s.add_argument("--write_file_list", type=Path, default=None,
                   help="after the run, write the feature files this run completed (done or already complete), one "
                        "per line (used by the wrapper to analyse exactly what it extracted)")
    c = p.add_argument_group("compute")
    c.add_argument("--device", choices=DEVICES, default="auto", help=f"auto = cuda when available {d}")
    c.add_argument("--dtype", choices=DTYPES, default="float32", help=f"compute precision {d}")
    c.add_argument("--save_dtype", choices=tuple(SAVE_DTYPES), default="float32", help=f"stored precision {d}")
    c.add_argument("--normalize", choices=NORMALIZE_MODES, default="auto",
                   help="waveform zero-mean/unit-variance normalisation; auto = the checkpoint's feature extractor "
                        f"setting {d}")
    c.add_argument("--num_threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    c.add_argument("--batch_size", type=int, default=1,
                   help="utterances per forward pass where that is exact: any lengths (padded, with an attention "
                        "mask) for a layer-norm CNN (wav2vec2-large-lv60, HuBERT-large), equal lengths only for a "
                        f"group-norm CNN (HuBERT-base: the others one at a time); for GPUs {d}")
    c.add_argument("--overwrite", action="store_true",
                   help="recompute every file, also those complete or from a run with other settings")
    c.add_argument("--random_init", action="store_true",
                   help="same config with random weights (the control); writes to {model_tag}-random_init/")
    c.add_argument("--seed", type=int, default=0, help=f"seed of the random initialisation {d}")
    p.add_argument("--no_progress", action="store_true", help="no progress bars on stderr")
    p.add_argument("--verbose", action="store_true", help="debug logging and tracebacks")
    return p


def options_from_args(args) -> ExtractionOptions:
    """Flags → the run's options (validated there; the messages name the same parameters as the flags)."""
    spans = SpanOptions(alignment_dir=args.alignment_dir, alignment_format=args.alignment_format,
                        phone_tier=args.phone_tier, word_tier=args.word_tier,
                        silence_labels=tuple(args.silence_labels.split(",")), keep_stress=args.keep_stress,
                        frame_rule=args.frame_rule, pooling=args.pooling, out_of_range=args.out_of_range)
    return ExtractionOptions(model_name=args.model_name, revision=args.revision, rep_type=args.rep_type,
                             layers=args.layers, span=args.span, spans=spans, normalize=args.normalize,
                             dtype=args.dtype, save_dtype=args.save_dtype, random_init=args.random_init,
                             seed=args.seed, fbank=args.fbank, dataset_split=args.dataset_split,
                             data_sample=args.data_sample, num_utterances=args.num_utterances, device=args.device)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    progress.set_enabled(not args.no_progress)
    subset_id, num_subsets = shard_from_env(args.subset_id, args.num_subsets, parser)
    if args.num_threads is not None and args.num_threads < 1:
        parser.error(f"--num_threads {args.num_threads} must be >= 1")
    if args.batch_size < 1:
        parser.error(f"--batch_size {args.batch_size} must be >= 1")
    if args.no_store and args.write_file_list is not None:
        parser.error("--write_file_list lists stored feature files; --no_store stores none (merge its partials "
                     "with visualize_features.py --merge)")
    try:
        options = options_from_args(args)
        out_dir = options.output_dir(args.save_dir)
        if args.print_output_dir:
            print(out_dir)
            return EXIT_OK
        return _run(args, options, out_dir, subset_id, num_subsets, owns=owns_process(argv))
    except LayerwiseError as err:
        log.error("%s", with_flags(error_text(err), vars(args)), exc_info=args.verbose)
        return EXIT_USAGE


def _finish_then_stop(stop: threading.Event):
    """The extraction's stop handler: the first SIGINT/SIGTERM sets ``stop`` (the file in progress is finished and
    written, then the run ends); another one later than SAME_STOP_SECONDS aborts at once (KeyboardInterrupt;
    write_features removes its temporary file); one sooner is a copy of the first (the whole group was signalled and
    the wrapper forwarded its own) and only logged."""
    first = []  # time.monotonic() of the first stop signal

    def on_signal(signum, frame):
        name = signal.Signals(signum).name
        if stop.is_set():
            if time.monotonic() - first[0] < SAME_STOP_SECONDS:
                log.info("%s again within %.0f s: taken as a copy of the first stop (again later to abort)", name,
                         SAME_STOP_SECONDS)
                return
            raise KeyboardInterrupt
        first.append(time.monotonic())  # before logging: a copy arriving during the log call is seen as a copy
        stop.set()
        log.warning("%s: finishing the current file, then stopping (again to abort)", name)

    return on_signal


def _run(args, options: ExtractionOptions, out_dir: Path, subset_id: int, num_subsets: int, *,
         owns: bool = False) -> int:
    """The extraction of parsed ``args``; ``owns``: this command is the process (``common.owns_process``), so
    stop signals stay ignored after the run instead of getting their previous handlers back."""
    from layerwise.extract import audio, jobs

    if not Path(args.audio_dir).is_dir():
        raise UsageError(f"--audio_dir {args.audio_dir} does not exist. Download LibriSpeech with: python -m "
                         f"layerwise.data download --split dev-clean-2 --dest content/data, or point --audio_dir "
                         f"(AUDIO_DIR= for the wrapper) at audio you have")
    extensions = audio.parse_extensions(args.extensions)
    sink = None
    if args.no_store:  # the analysis side of this shard, fed by the extraction (layerwise/analyze/partial.py)
        from layerwise.analyze.partial import PartialFeed

        sink = PartialFeed(out_dir, subset_id, num_subsets)
    if args.list_only:  # a query: selects and prints, writes and deletes nothing
        selection = jobs.select(args.audio_dir, out_dir, options, subset_id, num_subsets, extensions,
                                group_files=None if sink is None else sink.group_files)
        for line in selection.scan.skipped_summary():
            log.info("not taken: %s", line)
        for job in selection.jobs:
            print(job.source)
        return EXIT_OK

    from layerwise.extract.run import extract_folder

    stop = threading.Event()
    handler = _finish_then_stop(stop)  # one handler for both: a SIGTERM after a Ctrl-C is the same stop
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        runlog = extract_folder(args.audio_dir, args.save_dir, options, subset_id=subset_id, num_subsets=num_subsets,
                                extensions=extensions, overwrite=args.overwrite, stop=stop,
                                progress=not args.no_progress, num_threads=args.num_threads,
                                batch_size=args.batch_size, sink=sink)
    except KeyboardInterrupt:
        log.error("aborted; %s", INTERRUPTED_NO_STORE if args.no_store
                  else "finished files are complete, re-run to resume")
        return EXIT_INTERRUPTED
    finally:  # a command that is the process ignores stops after this: its summary and exit cannot become 143
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_IGN if owns else handler)
    for line in runlog.summary_lines():
        log.info(line)
    if runlog.partial is not None:
        log.info("when every shard is done: python visualize_features.py --merge --output_dir %s", out_dir)
    if args.write_file_list is not None:
        from layerwise.contract.store import write_text_atomic

        write_text_atomic(args.write_file_list, "".join(f"{p}\n" for p in runlog.complete_files))
    if runlog.was_interrupted:
        return EXIT_INTERRUPTED
    if runlog.failures and not runlog.files:  # every file failed: nothing produced (README, "Exit status")
        return EXIT_USAGE
    return EXIT_FAILED_INPUTS if runlog.failures else EXIT_OK
