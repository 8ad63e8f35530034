"""Layer-wise analysis of extracted features: statistics, CKA/cosine similarity, PCA, t-SNE, report.

Reads a folder written by extract_features.py (one {stem}_features.npz per utterance) and writes PNG figures,
summary.json, summary.csv, per_dim_stats.npz and report.html to --output_dir. See docs/analysis.md.

Example:
  python visualize_features.py --features_dir output/hubert-base-ls960/librispeech_dev-clean_sample1 \\
      --num_files 0 --layers 0,6,12 --similarity cka
  # phone spans (extract_features.py --span phone --save_dir output/phones, and again with --random_init):
  # probes, PWCCA and MI per layer; the control in the sibling hubert-base-ls960-random_init/ is found automatically
  python visualize_features.py --features_dir output/phones/hubert-base-ls960/librispeech_dev-clean_sample1 \\
      --num_files 0
"""

from __future__ import annotations

import argparse
import logging
import sys

from layerwise.analyze import (
    DEFAULT_MAX_POINTS,
    DEFAULT_NUM_FILES,
    SIMILARITY_CHOICES,
    AnalysisError,
    run_analysis,
)
from layerwise.spanalysis import CONTROL_AUTO, DEFAULT_PROBE_SPLITS

# extract_features.py's default output folder: {save_dir}/{model_tag}/librispeech_{dataset_split}_sample{data_sample}
# with its defaults (output, facebook/hubert-base-ls960, dev-clean, 1); tests/test_analyze.py checks they agree.
DEFAULT_FEATURES_DIR = "output/hubert-base-ls960/librispeech_dev-clean_sample1"
DEFAULT_OUTPUT_DIR = "output/visualizations"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__[__doc__.index("Example:"):],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = "(default: %(default)s)"
    p.add_argument("--features_dir", default=DEFAULT_FEATURES_DIR, help=f"folder of *_features.npz files {d}")
    p.add_argument("--output_dir", default=DEFAULT_OUTPUT_DIR, help=f"where figures and reports go {d}")
    p.add_argument("--num_files", type=int, default=DEFAULT_NUM_FILES,
                   help=f"analyse the first N files in file-name order; 0 = all {d}")
    p.add_argument("--layers", default="all",
                   help=f"comma-separated layer indices or keys, e.g. 0,6,12 (layer_k, or conv_k for local "
                        f"features) {d}")
    p.add_argument("--seed", type=int, default=0, help=f"seed of the frame subsample and t-SNE {d}")
    p.add_argument("--max_points", type=int, default=DEFAULT_MAX_POINTS,
                   help=f"frames sampled for the PCA/t-SNE scatters (statistics use all frames) {d}")
    p.add_argument("--similarity", choices=SIMILARITY_CHOICES, default="both",
                   help=f"which similarity heatmaps to draw; summary.json always holds both cka and cosine {d}")
    p.add_argument("--control_dir", default=CONTROL_AUTO,
                   help=f"span folders: features of the random-initialisation control (extract_features.py "
                        f"--random_init), analysed with the same measures, seed and utterances (those present in "
                        f"both) into summary.json 'random_init'; 'auto' = the sibling {{parent}}-random_init/{{name}} "
                        f"when it exists, 'none' = no control {d}")
    p.add_argument("--probe_splits", type=int, default=DEFAULT_PROBE_SPLITS,
                   help=f"span folders: seeded train/dev/test utterance splits the probe and PWCCA average over {d}")
    p.add_argument("--verbose", action="store_true", help="debug logging, and tracebacks on errors")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("visualize_features")
    try:
        run_analysis(
            features_dir=args.features_dir,
            output_dir=args.output_dir,
            num_files=args.num_files,
            layers=None if args.layers == "all" else args.layers,
            seed=args.seed,
            max_points=args.max_points,
            similarity=args.similarity,
            control_dir=args.control_dir,
            probe_splits=args.probe_splits,
        )
    except AnalysisError as err:
        log.error("%s", err)
        if args.verbose:
            raise
        return 2
    except Exception as err:  # unexpected: a one-line message; the traceback with --verbose
        if args.verbose:
            raise
        log.error("analysis failed: %s: %s (run with --verbose for the traceback)", type(err).__name__, err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
