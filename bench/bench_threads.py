#!/usr/bin/env python3
"""Where end-to-end extraction loses time to its I/O threads: the same forward passes, four ways, interleaved.

On a 2-core machine torch runs 2 compute threads; extract_features.py adds a decoder and a writer thread
(``store.write_features``: finiteness check, cast, ``np.savez`` with CRC32, fsync; ≈ 20 MB per 10 s of audio for 13
layers). When the writer runs, one compute thread is descheduled, and the other waits for it at the end of the
operator (torch's OpenMP threads synchronise after every operator), so a little I/O CPU can cost more compute time.
This script measures it on decoded audio, each mode on the same utterances (best of ``--repeats`` per file):

  compute only          SpeechModel.features, nothing written (the ceiling)
  serial write          features, then write_features in the same thread (what the naive loop does)
  writer thread         writes on a background thread, at most 2 pending (what extract.py does)
  writer thread nice 19 the same with the writer thread at the lowest CPU priority (Linux per-thread nice)

Run it once per CPU kind; to see an AVX2-only machine's code paths on a newer CPU, restrict torch's kernels:
``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 python bench/bench_threads.py``.

example:  python bench/bench_threads.py --seconds 40 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

if __package__ in (None, ""):  # run as a script: this folder is on sys.path
    import benchlib
else:
    from . import benchlib

MODES = ("compute only", "serial write", "writer thread", "writer thread nice 19")


def _lowest_priority() -> None:
    """Thread initializer: nice 19 for the calling thread only (Linux: a thread id is a PRIO_PROCESS target)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):
        pass


def run_mode(model, waves, mode: str, out: Path) -> list[float]:
    """Seconds per utterance from the start of its forward pass to the start of the next one (the last one waits
    for its write), as extraction sees it."""
    from layerwise.contract import store

    layers = list(range(model.num_layers + 1))
    pool = ThreadPoolExecutor(1, initializer=_lowest_priority if mode.endswith("nice 19") else None)
    pending, times = [], []
    try:
        for i, wave in enumerate(waves):
            t0 = time.perf_counter()
            feats = model.features(wave, "contextualized", layers)
            target = out / f"{i:04d}{store.FEATURE_SUFFIX}"
            if mode == "serial write":
                store.write_features(target, feats, {"i": i})
            elif mode != "compute only":
                pending.append(pool.submit(store.write_features, target, feats, {"i": i}))
                while len(pending) > 2 or (pending and pending[0].done()):
                    pending.pop(0).result()
            if i == len(waves) - 1:
                for future in pending:
                    future.result()
            times.append(time.perf_counter() - t0)
    finally:
        pool.shutdown()
    return times


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=40, help="seconds of synthetic audio (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=2, help="rounds; each file keeps its fastest (default: %(default)s)")
    p.add_argument("--dtype", default="float32", help="(default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np
    import torch

    from layerwise.model.adapter import SpeechModel

    if args.threads:
        torch.set_num_threads(args.threads)
    info = benchlib.machine_info("cpu") | {"torch_capability": torch.backends.cpu.get_cpu_capability()}
    print(f"# {info['cpu']} ({info['cpu_kind']}; torch kernels {info['torch_capability']}) | "
          f"{torch.get_num_threads()} threads | load {info['loadavg_start'][0]:.2f}", flush=True)
    rng = np.random.default_rng(args.seed)
    waves = [benchlib.speech_like(round(s * benchlib.SAMPLE_RATE), rng)
             for s in benchlib.utterance_lengths(args.seconds, args.seed)]
    with tempfile.TemporaryDirectory(prefix="bench-threads-") as tmp:
        model_dir = benchlib.save_checkpoint(Path(tmp) / "hubert-base-random", seed=args.seed)
        model = SpeechModel.load(str(model_dir), device="cpu", dtype=args.dtype)
        model.features(waves[0], "contextualized", [0])  # warm-up
        best = {mode: [float("inf")] * len(waves) for mode in MODES}
        for round_ in range(args.repeats):
            for mode in MODES:
                out = Path(tmp) / f"out-{round_}-{MODES.index(mode)}"
                out.mkdir()
                times = run_mode(model, waves, mode, out)
                best[mode] = [min(a, b) for a, b in zip(best[mode], times)]
    audio = sum(len(w) for w in waves) / benchlib.SAMPLE_RATE
    ceiling = audio / sum(best["compute only"])
    rows = [{"mode": m, "wall_s": sum(t), "realtime_factor": audio / sum(t), "vs_compute_only": audio / sum(t) / ceiling}
            for m, t in best.items()]
    print(f"{'mode':<24} {'wall s':>7} {'x realtm':>8} {'vs compute only':>15}")
    for r in rows:
        print(f"{r['mode']:<24} {r['wall_s']:>7.2f} {r['realtime_factor']:>8.2f} {r['vs_compute_only']:>15.3f}")
    print(f"# {len(waves)} utterances, {audio:.1f} s; load average end {os.getloadavg()[0]:.2f}")
    print(json.dumps({"machine": info, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
