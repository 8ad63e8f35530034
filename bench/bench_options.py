#!/usr/bin/env python3
"""Compare speed options of one HuBERT-base forward pass (random weights, real config) on the machine at hand.

Variants, timed interleaved (best of --repeats, so background load hits all of them alike) on one synthetic
utterance of --utt_seconds: float32 with SDPA or eager attention, bfloat16 weights (what ``--dtype bfloat16``
does) vs. float32 weights under ``torch.autocast``, float16 weights (GPU), and with --compile a torch.compile'd model
(reports its compile time). Each variant's max relative error vs. float32 SDPA is printed next to its speed.
Run it on each CPU kind before changing a default (docs/benchmarks.md records what won here).

example:  python bench/bench_options.py --threads 1,2 --repeats 5
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

if __package__ in (None, ""):  # run as a script: this folder is on sys.path
    import benchlib
else:
    from . import benchlib


def build_variants(model, device: str, compile_model: bool) -> dict:
    """name -> (module, input dtype, autocast dtype or None)."""
    import torch

    def clone(dtype, attn="sdpa"):
        m = copy.deepcopy(model)
        m.config._attn_implementation = attn
        return m.to(device, dtype)

    variants = {"float32 sdpa": (clone(torch.float32), torch.float32, None),
                "float32 eager attention": (clone(torch.float32, "eager"), torch.float32, None),
                "bfloat16 weights": (clone(torch.bfloat16), torch.bfloat16, None),
                "bfloat16 autocast": (clone(torch.float32), torch.float32, torch.bfloat16)}
    if device == "cuda":
        variants["float16 weights"] = (clone(torch.float16), torch.float16, None)
        variants["float16 autocast"] = (clone(torch.float32), torch.float32, torch.float16)
    if compile_model:
        variants["float32 torch.compile"] = (torch.compile(clone(torch.float32), dynamic=True), torch.float32, None)
        variants["bfloat16 torch.compile"] = (torch.compile(clone(torch.bfloat16), dynamic=True), torch.bfloat16, None)
    return variants


def forward(module, x, autocast, device):
    import torch

    with torch.inference_mode(), torch.autocast(device, dtype=autocast or torch.float32, enabled=autocast is not None):
        states = module(x, output_hidden_states=True).hidden_states
    benchlib.sync(device)
    return states


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--utt_seconds", type=float, default=12.0, help="utterance length (default: %(default)s)")
    p.add_argument("--threads", default=None, help="comma-separated torch thread counts (default: torch's choice)")
    p.add_argument("--repeats", type=int, default=3, help="best of this many (default: %(default)s)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="JSON path (default: bench/results/options-<time>.json)")
    args = p.parse_args(argv)

    import numpy as np
    import torch
    from transformers import HubertConfig, HubertModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        model = HubertModel(HubertConfig()).eval()
    n = int(args.utt_seconds * benchlib.SAMPLE_RATE)
    wave = benchlib.speech_like(n, np.random.default_rng(args.seed))
    wave = (wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)
    gflop = benchlib.forward_flops(model.config, n)["total"] / 1e9
    results = []
    for threads in [int(t) for t in args.threads.split(",")] if args.threads else [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        variants = build_variants(model, args.device, args.compile)
        peaks = {"float32": benchlib.matmul_peak("float32", device=args.device),
                 "bfloat16": benchlib.matmul_peak("bfloat16", device=args.device)}
        best, reference = {}, None
        for name, (module, dtype, autocast) in variants.items():  # warm-up (and compilation)
            t1 = time.perf_counter()
            states = forward(module, torch.from_numpy(wave)[None].to(args.device, dtype), autocast, args.device)
            if name.endswith("compile"):
                print(f"# {name}: first call (compilation) {time.perf_counter() - t1:.1f} s", flush=True)
            best[name] = (float("inf"), states)
            reference = reference or [s.float().cpu() for s in states]
        for _ in range(args.repeats):
            for name, (module, dtype, autocast) in variants.items():
                x = torch.from_numpy(wave)[None].to(args.device, dtype)
                t1 = time.perf_counter()
                forward(module, x, autocast, args.device)
                best[name] = (min(best[name][0], time.perf_counter() - t1), best[name][1])
        for name, (seconds, states) in best.items():
            err = max(benchlib.max_rel_error(s.float().cpu().numpy(), r.numpy()) for s, r in zip(states, reference))
            peak = peaks["bfloat16" if ("bfloat16" in name or "float16" in name) else "float32"]
            results.append({"threads": threads, "variant": name, "seconds": seconds,
                            "realtime_factor": args.utt_seconds / seconds, "gflops": gflop / seconds,
                            "peak_fraction": gflop / seconds / peak, "max_rel_err_vs_fp32": err})
        print(f"# {threads} threads: matmul peak fp32 {peaks['float32']:.0f}, bf16 {peaks['bfloat16']:.0f} GFLOP/s "
              f"(setup {time.perf_counter() - t0:.0f} s)")
    print(f"{'threads':>7} {'variant':<24} {'s/utt':>7} {'x realtm':>8} {'GFLOP/s':>8} {'% peak':>6} {'rel err':>8}")
    for r in results:
        print(f"{r['threads']:>7} {r['variant']:<24} {r['seconds']:>7.3f} {r['realtime_factor']:>8.2f} "
              f"{r['gflops']:>8.1f} {100 * r['peak_fraction']:>6.0f} {r['max_rel_err_vs_fp32']:>8.1e}")
    import os

    out = args.out or ROOT / "bench" / "results" / f"options-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args) | {"out": str(out)}, "loadavg": os.getloadavg(),
                               "utt_gflop": gflop, "results": results}, indent=1))
    print(f"# load average {os.getloadavg()[0]:.2f}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
