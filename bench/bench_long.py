#!/usr/bin/env python3
"""Peak memory of ONE long utterance through SpeechModel.features, in a fresh process (so the peak RSS is its own).

Builds (or reuses) a randomly initialised HuBERT-base (``HubertConfig()`` defaults, no download), synthesizes
``--seconds`` of speech-like audio and extracts every requested layer (default all 13). ``--unchunked`` forces the
whole-utterance CNN (what happened before chunking) for comparison. Prints one JSON line: wall seconds, peak RSS
(``ru_maxrss``) after loading and at the end, and the model's own estimate (``layerwise.model.machine.memory_needed``).

example:  python bench/bench_long.py --seconds 300                 # chunked (automatic above 40 s)
          python bench/bench_long.py --seconds 300 --unchunked     # the old whole-utterance CNN
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: this folder is on sys.path
    import benchlib
else:
    from . import benchlib

GIB = 2**30


def peak_rss() -> int:
    """Peak resident set size of this process in bytes (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def long_wave(seconds: float, seed: int, piece_s: float = 10.0):
    """Speech-like float32 audio built in ``piece_s`` pieces: synthesizing 300 s at once takes ≈ 1.8 GB of float64
    temporaries, which would set the peak RSS this script exists to measure."""
    import numpy as np

    rng, n = np.random.default_rng(seed), round(seconds * benchlib.SAMPLE_RATE)
    step = round(piece_s * benchlib.SAMPLE_RATE)
    return np.concatenate([benchlib.speech_like(min(step, n - i), rng) for i in range(0, n, step)])


def measure(model_dir: Path, seconds: float, *, dtype: str, layers: list[int] | None, unchunked: bool,
            seed: int = 0) -> dict:
    from layerwise.model import machine
    from layerwise.model.adapter import SpeechModel

    model = SpeechModel.load(str(model_dir), device="cpu", dtype=dtype)
    if unchunked:
        model.model.feature_extractor.long_samples = sys.maxsize
    layers = list(range(model.num_layers + 1)) if layers is None else layers
    wave = long_wave(seconds, seed)
    after_load = peak_rss()
    t0 = time.perf_counter()
    feats = model.features(wave, "contextualized", layers)
    wall = time.perf_counter() - t0
    return {"seconds": seconds, "dtype": dtype, "layers": len(layers), "unchunked": unchunked, "wall_s": wall,
            "frames": len(next(iter(feats.values()))), "rss_after_load_gib": after_load / GIB,
            "peak_rss_gib": peak_rss() / GIB,
            "estimate_gib": machine.memory_needed(model, len(wave), "contextualized", layers) / GIB}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=300, help="utterance length (default: %(default)s)")
    p.add_argument("--dtype", default="float32", help="(default: %(default)s)")
    p.add_argument("--layers", default=None, help="comma-separated indices (default: all)")
    p.add_argument("--unchunked", action="store_true", help="force the whole-utterance CNN")
    p.add_argument("--model_dir", type=Path, default=None, help="checkpoint folder (default: build one in a temp dir)")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import tempfile

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-long-") as tmp:
        model_dir = args.model_dir or benchlib.save_checkpoint(Path(tmp) / "hubert-base-random", seed=0)
        layers = [int(i) for i in args.layers.split(",")] if args.layers else None
        print(json.dumps(measure(model_dir, args.seconds, dtype=args.dtype, layers=layers,
                                 unchunked=args.unchunked)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
