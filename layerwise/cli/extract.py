"""Extract every layer's features of a speech SSL model (HuBERT by default) from a folder of audio.

Writes one {stem}_features.npz per audio file into
{save_dir}/{model_tag}/librispeech_{dataset_split}_sample{data_sample}/ . See README.md and docs/format.md.
Exit status: 0 all files done (or already complete), 1 some files failed (the rest were done), 2 usage error,
130 interrupted (finished files are complete; re-run to resume).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from layerwise.extract import SPANS, SpanOptions
from layerwise.model import DEFAULT_MODEL, DTYPES, NORMALIZE_MODES, REP_TYPES

log = logging.getLogger("extract_features")
from layerwise.spans import DEFAULT_SILENCE_LABELS, FRAME_RULES, POOLINGS
from layerwise.store import SAVE_DTYPES

EXAMPLE = """examples:
  python extract_features.py --audio_dir content/data/LibriSpeech/dev-clean-2
  python extract_features.py --model_name /path/to/saved_checkpoint --layers 0,6,12 --dtype bfloat16
  python extract_features.py --rep_type local --subset_id 3 --num_subsets 8
  python extract_features.py --span phone --alignment_dir content/data/librispeech_alignments
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, epilog=EXAMPLE,
                                formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(prog, width=110))
    d = "(default: %(default)s)"
    p.add_argument("--audio_dir", default="content/data/LibriSpeech/dev-clean-2",
                   help=f"folder searched recursively for .flac/.wav files {d}")
    p.add_argument("--save_dir", default="output", help=f"root of the output folders {d}")
    p.add_argument("--model_name", default=DEFAULT_MODEL,
                   help=f"Hugging Face id or local save_pretrained folder (HuBERT, wav2vec 2.0, WavLM) {d}")
    p.add_argument("--revision", default=None, help="hub revision (branch, tag or commit) to load (default: main)")
    p.add_argument("--dataset_split", default="dev-clean", help=f"split name used in the output folder {d}")
    p.add_argument("--data_sample", default="1", help=f"sample id used in the output folder {d}")
    p.add_argument("--rep_type", choices=REP_TYPES, default="contextualized",
                   help="contextualized: layer_0..layer_L = hidden_states; local: conv_0..conv_6 = CNN block "
                        f"outputs {d}")
    p.add_argument("--layers", default="all", help=f"comma-separated layer indices to save, e.g. 0,6,12 {d}")
    p.add_argument("--span", choices=SPANS, default="frame",
                   help=f"frame: every frame; phone/word: mean-pooled per aligned segment (needs --alignment_dir) {d}")
    g = p.add_argument_group("phone/word spans (see docs/spans.md)")
    g.add_argument("--alignment_dir", type=Path, default=None, help="folder with one TextGrid per utterance (by stem)")
    g.add_argument("--phone_tier", default="phones", help=f"TextGrid tier of phones {d}")
    g.add_argument("--word_tier", default="words", help=f"TextGrid tier of words {d}")
    g.add_argument("--silence_labels", default=",".join(sorted(DEFAULT_SILENCE_LABELS)),
                   help=f"comma-separated labels skipped as silence (empty label always skipped) {d}")
    g.add_argument("--keep_stress", action="store_true", help="keep ARPAbet stress digits (AH0 stays AH0)")
    g.add_argument("--frame_rule", choices=FRAME_RULES, default=FRAME_RULES[0], help=f"frame-to-segment rule {d}")
    g.add_argument("--pooling", choices=POOLINGS, default=POOLINGS[0], help=f"pooling within a segment {d}")
    p.add_argument("--subset_id", type=int, default=None,
                   help="shard K: file i of the sorted list goes to shard i mod N (default 0, or "
                        "SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN when set)")
    p.add_argument("--num_subsets", type=int, default=None,
                   help="number of shards N (default 1, or SLURM_ARRAY_TASK_COUNT when set)")
    p.add_argument("--list_only", action="store_true", help="print the files this shard would take, and exit")
    p.add_argument("--print_output_dir", action="store_true",
                   help="print the output folder these arguments select, and exit (used by the wrapper)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help=f"auto = cuda when available {d}")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help=f"compute precision {d}")
    p.add_argument("--save_dtype", choices=tuple(SAVE_DTYPES), default="float32", help=f"stored precision {d}")
    p.add_argument("--normalize", choices=NORMALIZE_MODES, default="auto",
                   help="waveform zero-mean/unit-variance normalisation; auto = the checkpoint's feature extractor "
                        f"setting {d}")
    p.add_argument("--num_threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--overwrite", action="store_true", help="recompute files whose output is already complete")
    p.add_argument("--random_init", action="store_true",
                   help="same config with random weights (the control); writes to {model_tag}-random_init/")
    p.add_argument("--seed", type=int, default=0, help=f"seed of the random initialisation {d}")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    p.add_argument("--verbose", action="store_true", help="debug logging and tracebacks")
    return p


def shard_from_env(args, parser) -> tuple[int, int]:
    """--subset_id/--num_subsets, else the SLURM job-array variables, else shard 0 of 1."""
    env = os.environ
    subset, count = args.subset_id, args.num_subsets
    if subset is None and count is None and "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        try:
            subset = int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", 0))
            count = int(env["SLURM_ARRAY_TASK_COUNT"])
        except ValueError:
            parser.error("SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT are not integers")
        log.info("shard %d of %d from SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT", subset, count)
    subset, count = (0 if subset is None else subset), (1 if count is None else count)
    if count < 1 or not 0 <= subset < count:
        parser.error(f"--subset_id {subset} not in [0, {count - 1}] for --num_subsets {count}")
    return subset, count


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "httpcore", "urllib3", "filelock", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    subset_id, num_subsets = shard_from_env(args, parser)
    if args.print_output_dir:
        from layerwise.runlog import output_folder

        print(output_folder(args.save_dir, args.model_name, args.dataset_split, args.data_sample,
                            random_init=args.random_init))
        return 0
    if not Path(args.audio_dir).is_dir():
        parser.error(f"--audio_dir {args.audio_dir} does not exist (download it: python -m layerwise.data download "
                     "--split dev-clean-2 --dest content/data)")
    if args.num_threads:
        import torch

        torch.set_num_threads(args.num_threads)

    from layerwise.audio import DuplicateStemError
    from layerwise.extract import run_extraction
    from layerwise.model import ModelLoadError

    stop = threading.Event()

    def on_signal(signum, frame):
        if stop.is_set():  # second signal: abort now; write_features removes its temporary file
            raise KeyboardInterrupt
        log.warning("%s: finishing the current file, then stopping (again to abort)", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    spans = SpanOptions(alignment_dir=args.alignment_dir, phone_tier=args.phone_tier, word_tier=args.word_tier,
                        silence_labels=tuple(s.strip().lower() for s in args.silence_labels.split(",")),
                        keep_stress=args.keep_stress, frame_rule=args.frame_rule, pooling=args.pooling)
    try:
        runlog = run_extraction(
            audio_dir=args.audio_dir, save_dir=args.save_dir, model_name=args.model_name,
            dataset_split=args.dataset_split, data_sample=args.data_sample, rep_type=args.rep_type,
            layers=args.layers, span=args.span, span_options=spans, subset_id=subset_id, num_subsets=num_subsets,
            device=args.device, dtype=args.dtype, save_dtype=args.save_dtype, normalize=args.normalize,
            overwrite=args.overwrite, random_init=args.random_init, revision=args.revision, seed=args.seed,
            list_only=args.list_only, stop=stop, progress=not args.no_progress)
    except (ValueError, FileNotFoundError, DuplicateStemError, ModelLoadError) as err:
        log.error("%s", err, exc_info=args.verbose)
        return 2
    except KeyboardInterrupt:
        log.error("aborted; finished files are complete, re-run to resume")
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if runlog.was_interrupted:
        return 130
    return 1 if runlog.failures else 0


if __name__ == "__main__":
    sys.exit(main())
