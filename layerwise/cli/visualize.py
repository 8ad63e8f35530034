"""Layer-wise analysis of extracted features: statistics, CKA/cosine similarity, PCA, t-SNE, span measures, report.

Reads a folder written by extract_features.py (one {stem}_features.npz per utterance) and writes PNG figures,
summary.json, summary.csv, per_dim_stats.npz and report.html to --output_dir. See docs/analysis.md.

Example:
  python visualize_features.py --features_dir output/hubert-base-ls960/librispeech_dev-clean_sample1 \\
      --num_files 0 --layers 0-12 --similarity cka --color_by speaker
  # local (CNN) features: each conv block over its own frames, pairs matched in time
  python visualize_features.py --features_dir output/hubert-base-ls960/librispeech_dev-clean_sample1_local
  # on a cluster: one shard per array task, then one merge (docs/scaling.md)
  python visualize_features.py --features_dir F --output_dir O --num_files 0 --subset_id 3 --num_subsets 8
  python visualize_features.py --features_dir F --output_dir O --merge
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from layerwise.analyze.control import CONTROL_AUTO, DEFAULT_PROBE_SPLITS
from layerwise.analyze.options import (
    COLOR_BY_CHOICES,
    DEFAULT_ABX_DISTANCE,
    DEFAULT_ABX_MAX_SIZE_GROUP,
    DEFAULT_ABX_MAX_X_ACROSS,
    DEFAULT_CCA_PROTOCOL,
    DEFAULT_MAX_POINTS,
    DEFAULT_MI_PROTOCOL,
    DEFAULT_N_BOOT,
    DEFAULT_NUM_FILES,
    SIMILARITY_CHOICES,
    AnalysisOptions,
)
from layerwise.cli import common
from layerwise.contract import progress
from layerwise.contract.outputs import FOLDER_FULL, os_reason, snapshot
from layerwise.contract.provenance import command_line
from layerwise.errors import LayerwiseError, caused_by_interrupt, error_text

# extract_features.py's default output folder: {save_dir}/{model_tag}/librispeech_{dataset_split}_sample{data_sample}
# with its defaults (output, facebook/hubert-base-ls960, dev-clean, 1); tests/test_analyze.py checks they agree.
DEFAULT_FEATURES_DIR = "output/hubert-base-ls960/librispeech_dev-clean_sample1"
DEFAULT_OUTPUT_DIR = "output/visualizations"
# parameter names in library messages -> the flags a user types


def build_parser() -> argparse.ArgumentParser:
    p = common.CliParser(prog="visualize_features.py", description=__doc__.split("\n\n")[0],
                  epilog=__doc__[__doc__.index("Example:"):])
    d = "(default: %(default)s)"
    p.add_argument("--features_dir", default=DEFAULT_FEATURES_DIR, help=f"folder of *_features.npz files {d}")
    p.add_argument("--output_dir", default=DEFAULT_OUTPUT_DIR, help=f"where figures and reports go {d}")
    p.add_argument("--num_files", type=int, default=DEFAULT_NUM_FILES,
                   help=f"analyse the first N files in file-name order; 0 = all {d}")
    p.add_argument("--file_list", default=None,
                   help="a text file naming the feature files to analyse, one path per line (the wrapper passes the "
                        "files its extraction completed); default: every file of --features_dir")
    p.add_argument("--layers", default="all",
                   help=f"layers as in extract_features.py: indices (0,6,12), ranges (0-12) or keys (layer_3, "
                        f"conv_0) {d}")
    p.add_argument("--seed", type=int, default=0, help=f"seed of the frame subsample, t-SNE and splits {d}")
    p.add_argument("--max_points", type=int, default=DEFAULT_MAX_POINTS,
                   help=f"frames sampled for the PCA/t-SNE scatters (statistics use all frames) {d}")
    p.add_argument("--similarity", choices=SIMILARITY_CHOICES, default="both",
                   help=f"which similarity heatmaps to draw; summary.json always holds both cka and cosine {d}")
    p.add_argument("--cka_vmin", type=float, default=None,
                   help="zoom the CKA heatmaps: lower end of their colour scale, upper end 1 (default: a fixed 0–1 scale; the "
                        "title says 'zoomed' when set)")
    p.add_argument("--color_by", choices=COLOR_BY_CHOICES, default="auto",
                   help=f"scatter colours: utterance, speaker (LibriSpeech names), label (span folders); auto = "
                        f"label for span folders, else utterance {d}")
    g = p.add_argument_group("span and property measures")
    g.add_argument("--control_dir", default=CONTROL_AUTO,
                   help=f"features of the random-initialisation control (extract_features.py --random_init), "
                        f"analysed with the same measures, seed and utterances into summary.json 'random_init'; "
                        f"'auto' = the sibling {{parent}}-random_init/{{name}} when it exists, 'none' = no control {d}")
    g.add_argument("--probe_splits", type=int, default=DEFAULT_PROBE_SPLITS,
                   help=f"seeded train/dev/test utterance splits the probe and PWCCA average over {d}")
    g.add_argument("--cca_protocol", default=DEFAULT_CCA_PROTOCOL,
                   help=f"CCA measure: centred (PWCCA on utterance splits) or pasad (the published protocol) {d}")
    g.add_argument("--mi_protocol", default=DEFAULT_MI_PROTOCOL,
                   help=f"MI measure: project (k-means NMI) or pasad (the published protocol) {d}")
    g.add_argument("--n_boot", type=int, default=DEFAULT_N_BOOT,
                   help=f"bootstrap replicates of the 95 %% intervals of every per-layer number (summary.json "
                        f"<measure>_ci); 0 = no intervals {d}")
    _abx_arguments(p)
    s = p.add_argument_group("analysis across machines (docs/scaling.md)")
    common.add_shard_arguments(s, "analyse groups of files g with g mod N == K and write partial statistics to "
                           "OUTPUT_DIR/partials")
    s.add_argument("--merge", action="store_true",
                   help="merge every shard's partial statistics in OUTPUT_DIR/partials into the full summary, "
                        "figures and report (the count comes from the partials; --num_subsets N, if given, must "
                        "match it)")
    p.add_argument("--no_progress", action="store_true", help="no progress bars on stderr")
    p.add_argument("--verbose", action="store_true", help="debug logging, and tracebacks on errors")
    return p


def _abx_arguments(p: argparse.ArgumentParser) -> None:
    """The ABX flags (docs/analysis.md, "ABX"); alignment flags spelled and defaulted as extract_features.py's."""
    from layerwise.contract.alignments import ALIGNMENT_FORMATS, DEFAULT_SILENCE_LABELS, PHONES_TIER

    d = "(default: %(default)s)"
    a = p.add_argument_group("ABX error rates per layer (frame folders; docs/analysis.md)")
    a.add_argument("--abx_item", default=None,
                   help="a ZeroSpeech item file (#file onset offset #phone prev-phone next-phone speaker) whose "
                        "#file names feature-file stems: ABX error rates per layer")
    a.add_argument("--alignment_dir", default=None,
                   help="phone alignments of the analysed files (LibriSpeech names): PNMI and phone/cluster purity "
                        "per layer (--pnmi_clusters) and, without --abx_item, ABX triphone items built from them "
                        "and written to OUTPUT_DIR/abx_triphone.item")
    a.add_argument("--alignment_format", choices=ALIGNMENT_FORMATS, default="auto", help=f"as extract_features.py {d}")
    a.add_argument("--phone_tier", default=PHONES_TIER, help=f"tier of phones {d}")
    a.add_argument("--silence_labels", default=",".join(sorted(DEFAULT_SILENCE_LABELS)),
                   help=f"comma-separated labels that are silence (never items nor context) {d}")
    a.add_argument("--abx_distance", default=DEFAULT_ABX_DISTANCE,
                   help=f"angular (arccos of the cosine / pi) or euclidean, between frames, DTW-aligned {d}")
    a.add_argument("--abx_max_size_group", type=int, default=DEFAULT_ABX_MAX_SIZE_GROUP,
                   help=f"ZeroSpeech subsampling: at most N items of A, B and X per cell, seeded by --seed; 0 = all {d}")
    a.add_argument("--abx_max_x_across", type=int, default=DEFAULT_ABX_MAX_X_ACROSS,
                   help=f"across-speaker mode: at most N X speakers per (A, B) group; 0 = all {d}")
    _standard_arguments(p)


def _standard_arguments(p: argparse.ArgumentParser) -> None:
    """PNMI/purity (with --alignment_dir), word-embedding CCA and the gender probe (docs/analysis.md)."""
    from layerwise.analyze.options import DEFAULT_PNMI_CLUSTERS, DEFAULT_PNMI_FIT_FRAMES

    d = "(default: %(default)s)"
    s = p.add_argument_group("PNMI, word embeddings, gender (docs/analysis.md)")
    s.add_argument("--pnmi_clusters", default=DEFAULT_PNMI_CLUSTERS,
                   help=f"K of the k-means units for PNMI and purity, comma list e.g. 100,500 (frame folders with "
                        f"--alignment_dir; summary keys of the first K, *_per_k of all) {d}")
    s.add_argument("--pnmi_fit_frames", type=int, default=DEFAULT_PNMI_FIT_FRAMES,
                   help=f"labelled frames (seeded by utterance name) the k-means is fitted on {d}")
    s.add_argument("--word_embeddings", default=None,
                   help="GloVe or word2vec (text or binary) file: cca_word_embedding of word-span folders")
    s.add_argument("--speakers_file", default=None,
                   help="LibriSpeech SPEAKERS.TXT for gender_probe_accuracy (default: looked for above the audio "
                        "the features record)")


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    common.setup_logging(args.verbose)
    progress.set_enabled(not args.no_progress)
    log = logging.getLogger("visualize_features")
    if args.merge and args.subset_id is not None:
        parser.error(f"--merge combines the partials of every shard and --subset_id {args.subset_id} selects one: "
                     f"leave --subset_id out of the merge")
    if args.merge and args.num_subsets is not None and args.num_subsets < 1:
        parser.error(f"--num_subsets must be >= 1, got {args.num_subsets}")
    before = snapshot(args.output_dir)  # what an interrupted run wrote: what differs from this at the end
    with common.stops_as_interrupt(until_exit=common.owns_process(argv)) as terminated:  # SLURM: as Ctrl-C
        status, summary = _run(args, argv, parser, before, terminated, log)
    if terminated and status != common.EXIT_INTERRUPTED:  # the stop was swallowed and the run went on: still a stop
        log.error("%s: %s", common.interrupted_by(terminated), interrupted_text(args, before))
        return common.EXIT_INTERRUPTED
    return exit_status(summary, args.output_dir, log) if status is None else status


def _run(args, argv, parser, before: dict, terminated: list, log: logging.Logger) -> tuple[int | None, dict]:
    """The analysis of parsed ``args``: (None, the summary) when it wrote its outputs (:func:`exit_status` says the
    status), else (the exit status, {}) after one logged line: a usage error (2), Ctrl-C or SIGTERM
    (``terminated``; 130, naming the files that differ from ``before``, :func:`~layerwise.contract.outputs.snapshot`),
    a full disk (1)."""
    subset_id, num_subsets = (0, 1) if args.merge else common.shard_from_env(args.subset_id, args.num_subsets, parser)
    try:
        from layerwise.analyze.run import run_analysis

        options = AnalysisOptions(
            features_dir=args.features_dir, output_dir=args.output_dir, num_files=args.num_files,
            file_list=args.file_list,
            layers=None if args.layers == "all" else args.layers, seed=args.seed, max_points=args.max_points,
            similarity=args.similarity, cka_vmin=args.cka_vmin, color_by=args.color_by, control_dir=args.control_dir,
            probe_splits=args.probe_splits, cca_protocol=args.cca_protocol, mi_protocol=args.mi_protocol,
            subset_id=subset_id, num_subsets=num_subsets, merge=args.merge, abx_item=args.abx_item,
            alignment_dir=args.alignment_dir, alignment_format=args.alignment_format, phone_tier=args.phone_tier,
            silence_labels=tuple(args.silence_labels.split(",")), abx_distance=args.abx_distance,
            abx_max_size_group=args.abx_max_size_group, abx_max_x_across=args.abx_max_x_across,
            n_boot=args.n_boot, pnmi_clusters=args.pnmi_clusters, pnmi_fit_frames=args.pnmi_fit_frames,
            word_embeddings=args.word_embeddings, speakers_file=args.speakers_file, command=command_line(argv),
            given=common.flags_given(build_parser(), argv))
        if args.merge and args.num_subsets is not None:  # given: the merge checks it against the partials
            from layerwise.analyze.shards import check_shard_count

            check_shard_count(args.output_dir, args.num_subsets)
        summary = run_analysis(options)
    except (KeyboardInterrupt, Exception) as err:  # not SystemExit: parser.error's status stands
        if terminated or caused_by_interrupt(err):  # Ctrl-C/SIGTERM, also wrapped (a lazy import's RuntimeError)
            log.error("%s: %s", common.interrupted_by(terminated), interrupted_text(args, before))
            return common.EXIT_INTERRUPTED, {}  # SIGTERM too: README's one exit rule (extraction does the same)
        if isinstance(err, LayerwiseError):
            log.error("%s", common.with_flags(error_text(err), vars(args)))
            if args.verbose:
                raise
            return common.EXIT_USAGE, {}
        if not (isinstance(err, OSError) and err.errno in FOLDER_FULL):
            raise
        # a full disk outside the outputs run_analysis guards (a shard's partial, the ABX items)
        log.error("could not write %s: %s", err.filename or f"to {args.output_dir}", os_reason(err))
        if args.verbose:
            raise
        return common.EXIT_FAILED_INPUTS, {}
    return None, summary


def interrupted_text(args, before: dict) -> str:
    """What an interrupted analysis (parsed ``args``) had written to its output folder and what it had not, in one
    line (``common.stopped_text``; a shard run writes only its partial)."""
    shard = not args.merge and (args.subset_id is not None or args.num_subsets is not None)
    return common.stopped_text(args.output_dir, before, shard=shard)


def exit_status(summary: dict, output_dir: str, log: logging.Logger) -> int:
    """The one exit rule of every command (README, "Exit status"), for an analysis that wrote its outputs: 0 when
    everything requested was produced, 1 when a requested measure is missing (whole or on some layers; each named)
    or an output was not written (``summary["not_written"]``: a figure that raised, a full disk; each named).
    (2, nothing produced, is the error path of :func:`main`.) Requested: summary.json/csv, report.html, the figures
    and ``summary["requested_measures"]`` (``analyze.finish``: the span measures of a span folder; the property
    measures a frame folder's files allow in one process; ABX when asked). The report's path is always printed."""
    if "partial" in summary:
        log.info("partial statistics written to %s; merge every shard with --merge", summary["partial"])
        return common.EXIT_OK
    report = Path(output_dir) / "report.html"
    not_written = summary.get("not_written") or {}
    if not_written:  # each was logged where it failed; the outputs not listed are complete
        log.error("not written: %s", "; ".join(f"{name} ({why})" for name, why in not_written.items()))
    missing = {k: v for k, v in (summary.get("unavailable") or {}).items()
               if k in summary.get("requested_measures", ())}
    if missing:
        by_reason: dict[str, list[str]] = {}  # measures that share a reason are named together, the reason once
        for name, reason in missing.items():
            by_reason.setdefault(reason, []).append(name)
        log.error("not produced: %s", "; ".join(f"{', '.join(names)}: {reason}" for reason, names in by_reason.items()))
    if "report.html" in not_written:  # writing stopped (a full disk): the files written before it are complete
        log.error("the files written before it are complete; run again once %s can take the rest", output_dir)
        return common.EXIT_FAILED_INPUTS
    if missing or not_written:
        log.error("everything else was written; report: %s", report)
        return common.EXIT_FAILED_INPUTS
    log.info("report: %s", report)
    return common.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
