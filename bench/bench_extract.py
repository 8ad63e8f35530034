#!/usr/bin/env python3
"""Extraction benchmark, offline, in one run on the machine at hand (see docs/benchmarks.md).

Builds a randomly initialised HuBERT-base (real config, so real FLOPs) saved with save_pretrained, synthesizes
``--seconds`` of LibriSpeech-like audio (2–20 s utterances, FLAC), and times, as ratios within this one run:
  (a) the naive per-file loop (soundfile → HF feature extractor → model(x, output_hidden_states=True) → np.savez),
  (b) model-only time of layerwise.model.adapter.SpeechModel.features on decoded audio (no file I/O), per --dtypes, and
      with --subset_layers (early exit: the transformer runs only through the deepest requested layer),
  (c) extract_features.py end to end, per --dtypes (a subprocess; start-up reported separately, steady state from
      the output files' write times, first file excluded),
  (d) the peak GFLOP/s of a large matmul per dtype,
  (e) the peak RSS of one --long_seconds utterance, all layers, in a fresh process (bench_long.py): the automatic
      chunked CNN, and with --long_compare also the whole-utterance CNN.
Where bf16 is emulated (AVX2-only CPUs: ≈ 1 GFLOP/s bf16 matmuls), --low_utterances K times the lower-precision
rows on the first K utterances only (their ratio to the naive loop compares per-file steady rates), and the
bf16 matmul peak runs at --low_matmul_n (default 1024 there). Prints the CPU's SIMD flags and torch's kernel level.
With --repeats R every timing runs R times in alternation and each row keeps its fastest round (a shared
machine's background load only slows a round down). Checks fp32 equality with the naive loop and, for lower
precisions, per-layer relative error and linear CKA vs fp32. Prints the CPU kind (from /proc/cpuinfo), a table,
and writes JSON (default bench/results/). The defaults take ≈ 3–4 min on 2 idle cores.

example:  python bench/bench_extract.py                          # reduced default: 60 s corpus, 300 s long file
          python bench/bench_extract.py --seconds 120 --repeats 3 --long_compare
          python bench/bench_extract.py --device cuda --dtypes float32,float16,bfloat16 --seconds 600
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from layerwise.contract import store
from layerwise.model import machine

if __package__ in (None, ""):  # run as a script (python bench/bench_extract.py): this folder is on sys.path
    import benchlib
else:
    from . import benchlib

ROOT = Path(__file__).resolve().parents[1]

NAIVE, MODEL_ONLY, END_TO_END = "naive loop", "model only (SpeechModel.features)", "extract_features.py end to end"
SUBSET = "model only, --layers {}"
EMULATED_MATMUL_N = 1024  # bf16 peak matmul where bf16 is emulated: 2·1024³ FLOP ≈ 2 s at ≈ 1 GFLOP/s
TARGETS = {"fp32_vs_naive": 1.0, "fp32_max_rel_err": 1e-4, "fp32_peak_frac": 0.70, "low_vs_naive": 1.8,
           "low_peak_frac": 0.40, "low_cka": 0.999, "e2e_vs_model": 0.9}


def simd_flags(flags: set[str]) -> list[str]:
    """The /proc/cpuinfo flags that decide which kernels torch runs: AVX*, AMX*, FMA, F16C (sorted)."""
    return sorted(f for f in flags if f.startswith(("avx", "amx")) or f in ("fma", "f16c"))


def subset_folder(files: list[tuple[Path, float]], root: Path, folder: Path) -> Path:
    """A copy of ``files`` (paths under ``root``) under ``folder``, same relative paths: the corpus of the
    lower-precision rows with --low_utterances."""
    for path, _ in files:
        target = folder / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return folder


def row(name, dtype, audio_s, wall_s, flops, peak, naive_rate=None, startup_s=None, **extra) -> dict:
    """One table row: throughput as realtime factor, ratio to the naive loop, GFLOP/s and fraction of peak."""
    rtf = audio_s / wall_s
    return {"name": name, "dtype": dtype, "audio_s": audio_s, "wall_s": wall_s, "startup_s": startup_s,
            "realtime_factor": rtf, "vs_naive_fp32": rtf / naive_rate if naive_rate else None,
            "gflops": flops / wall_s / 1e9, "peak_gflops": peak, "peak_fraction": flops / wall_s / 1e9 / peak, **extra}


def run_cli(model_dir: Path, audio_dir: Path, save_dir: Path, dtype: str, device: str, threads: int) -> dict:
    """Run extract_features.py as a user would; steady state = from the first to the last output file's write."""
    cmd = [sys.executable, str(ROOT / "extract_features.py"), "--model_name", str(model_dir), "--audio_dir",
           str(audio_dir), "--save_dir", str(save_dir), "--dtype", dtype, "--device", device, "--num_threads",
           str(threads), "--no_progress", "--overwrite"]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    total = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"extract_features.py failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    outputs = sorted(save_dir.rglob(f"*{store.FEATURE_SUFFIX}"), key=lambda p: p.stat().st_mtime)
    return {"outputs": outputs, "total_s": total, "launch": t0, "mtimes": [p.stat().st_mtime for p in outputs]}


def per_file(times_or_stamps: list[float], stems: list[str], *, stamps: bool) -> dict[str, float]:
    """Seconds each file took in steady state, first file excluded (warm-up, or no earlier output to time from):
    from per-file durations, or from output write times in order (file i took stamp_i − stamp_{i−1})."""
    if len(stems) < 2:
        raise ValueError("steady state needs at least 2 utterances: raise --seconds")
    if stamps:
        return {s: b - a for s, a, b in zip(stems[1:], times_or_stamps, times_or_stamps[1:])}
    return dict(zip(stems[1:], times_or_stamps[1:]))


def steady(rounds: list[dict[str, float]], by_stem: dict[str, tuple[float, float]]) -> tuple[float, float, float]:
    """(audio s, wall s, FLOPs) with each file's fastest time over the rounds (load bursts only slow files down).
    ``by_stem``: stem -> (audio seconds, FLOPs)."""
    fastest = {stem: min(r[stem] for r in rounds) for stem in rounds[0]}
    return (sum(by_stem[s][0] for s in fastest), sum(fastest.values()), sum(by_stem[s][1] for s in fastest))


def compare(files_a: list[Path], files_b: list[Path], keys: list[str]) -> dict[str, dict]:
    """Per layer: max relative error, Frobenius relative error and linear CKA of a vs b over all frames."""
    a = [store.read_features(p) for p in files_a]
    b = [store.read_features(p) for p in files_b]
    out = {}
    for key in keys:
        xa = np.concatenate([f.layers[key].reshape(-1, f.layers[key].shape[-1]) for f in a])
        xb = np.concatenate([f.layers[key].reshape(-1, f.layers[key].shape[-1]) for f in b])
        out[key] = {"max_rel_err": benchlib.max_rel_error(xa, xb), "fro_rel_err": benchlib.fro_rel_error(xa, xb),
                    "cka": benchlib.linear_cka(xa, xb)}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60, help="seconds of synthetic audio (default: %(default)s)")
    p.add_argument("--subset_layers", default="0,3,6", help="layers of the early-exit row (default: %(default)s)")
    p.add_argument("--long_seconds", type=float, default=300,
                   help="length of the long-file memory row; 0 skips it (default: %(default)s)")
    p.add_argument("--long_compare", action="store_true", help="also measure the long file with the unchunked CNN")
    p.add_argument("--dtypes", default="float32,bfloat16", help="compute dtypes; float32 first (default: %(default)s)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="(default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and audio (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=1,
                   help="rounds of all measurements; each row keeps its fastest (default: %(default)s)")
    p.add_argument("--matmul_n", type=int, default=4096, help="size of the peak matmul (default: %(default)s)")
    p.add_argument("--low_matmul_n", type=int, default=None,
                   help="size of the lower-precision peak matmul (default: --matmul_n where bf16 is native on the "
                        "device, else 1024: an emulated 4096³ bf16 matmul takes minutes)")
    p.add_argument("--low_utterances", type=int, default=None,
                   help="time the lower-precision rows on the first K utterances only, K >= 2 (default: all)")
    p.add_argument("--workdir", type=Path, default=None, help="keep checkpoint/audio/outputs here (default: temp)")
    p.add_argument("--out", type=Path, default=None, help="JSON path (default: bench/results/extract-<time>.json)")
    args = p.parse_args(argv)
    dtypes = [d.strip() for d in args.dtypes.split(",")]
    if dtypes[0] != "float32":
        p.error("--dtypes must start with float32 (the reference)")
    subset = sorted({int(i) for i in args.subset_layers.split(",")})
    if args.low_utterances is not None and args.low_utterances < 2:
        p.error(f"--low_utterances {args.low_utterances}: steady state needs >= 2 utterances")

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    tmp = None if args.workdir else tempfile.TemporaryDirectory(prefix="bench-extract-")
    work = args.workdir or Path(tmp.name)
    info = benchlib.machine_info(args.device)
    print(f"# {info['cpu']} ({info['cpu_kind']}) | {info.get('gpu', 'no GPU')} | torch {info['torch']} | "
          f"{threads} threads | load {info['loadavg_start'][0]:.2f} | ISA {','.join(info['isa'])}", flush=True)
    print(f"# CPU flags (SIMD): {' '.join(simd_flags(machine.cpu_flags()))} | torch kernels "
          f"{torch.backends.cpu.get_cpu_capability()} | native bf16: {machine.native_bf16_cpu()}", flush=True)
    info["simd_flags"] = simd_flags(machine.cpu_flags())
    low_n = args.low_matmul_n or (args.matmul_n if args.device == "cuda" or machine.native_bf16_cpu()
                                  else min(args.matmul_n, EMULATED_MATMUL_N))

    model_dir = benchlib.save_checkpoint(work / "hubert-base-random", seed=args.seed)
    corpus = benchlib.write_corpus(work / "audio", args.seconds, seed=args.seed)
    from transformers import AutoConfig

    from layerwise.extract.audio import load_audio

    config = AutoConfig.from_pretrained(model_dir)
    waves = [load_audio(path, benchlib.SAMPLE_RATE).samples for path, _ in corpus]
    seconds = [len(w) / benchlib.SAMPLE_RATE for w in waves]
    flops = [benchlib.forward_flops(config, len(w))["total"] for w in waves]
    print(f"# {len(corpus)} utterances, {sum(seconds):.1f} s; {sum(flops) / sum(seconds) / 1e9:.2f} GFLOP per "
          "second of audio", flush=True)

    # Rounds of every measurement in turn; each file keeps its fastest round, each peak its largest: background load
    # on a shared machine only ever slows a measurement down, and hits every row alike when they alternate.
    peaks = {d: 0.0 for d in dtypes}
    timings: dict[tuple[str, str], list[dict]] = {}
    startups: dict[tuple[str, str], list[float]] = {}
    results: dict[str, dict] = {}
    naive_out = work / "naive"
    stems = [p.stem for p, _ in corpus]
    low_k = min(args.low_utterances or len(corpus), len(corpus))
    low_audio = subset_folder(corpus[:low_k], work / "audio", work / "audio-low") if low_k < len(corpus) else \
        work / "audio"
    by_stem = {stem: (s, f) for stem, s, f in zip(stems, seconds, flops)}
    for round_ in range(args.repeats):
        print(f"# round {round_ + 1}/{args.repeats} (load {os.getloadavg()[0]:.2f})", flush=True)
        for d in dtypes:
            peaks[d] = max(peaks[d], benchlib.matmul_peak(d, n=args.matmul_n if d == "float32" else low_n,
                                                          device=args.device))
        load_s, times = benchlib.naive_loop(model_dir, [p for p, _ in corpus], naive_out, device=args.device)
        timings.setdefault((NAIVE, "float32"), []).append(per_file(times, stems, stamps=False))
        startups.setdefault((NAIVE, "float32"), []).append(load_s + times[0])
        for d in dtypes:
            k = len(waves) if d == "float32" else low_k
            times = benchlib.model_only(model_dir, waves[:k], dtype=d, device=args.device)
            timings.setdefault((MODEL_ONLY, d), []).append(per_file(times, stems[:k], stamps=False))
        times = benchlib.model_only(model_dir, waves, dtype="float32", device=args.device, layers=subset)
        timings.setdefault((SUBSET.format(args.subset_layers), "float32"), []).append(per_file(times, stems, stamps=False))
        for d in dtypes:
            folder = work / "audio" if d == "float32" else low_audio
            res = results[d] = run_cli(model_dir, folder, work / f"out-{d}", d, args.device, threads)
            order = [store.stem_of(o) for o in res["outputs"]]
            timings.setdefault((END_TO_END, d), []).append(per_file(res["mtimes"], order, stamps=True))
            startups.setdefault((END_TO_END, d), []).append(res["mtimes"][0] - res["launch"])

    best = {}
    for key, rounds in timings.items():
        a, w, f = steady(rounds, by_stem)
        best[key] = {"a": a, "w": w, "f": f, "rounds_realtime": [sum(by_stem[s][0] for s in r) / sum(r.values())
                                                               for r in rounds]}
        if key in startups:  # time to the first file, less that file's steady-state compute time
            best[key]["startup_s"] = min(startups[key]) - by_stem[stems[0]][0] * w / a
    naive_rate = best[NAIVE, "float32"]["a"] / best[NAIVE, "float32"]["w"]
    rows = [{"name": f"matmul {args.matmul_n if d == 'float32' else low_n}^3 peak", "dtype": d, "audio_s": None,
             "wall_s": None, "startup_s": None,
             "realtime_factor": None, "vs_naive_fp32": None, "gflops": peaks[d], "peak_gflops": peaks[d],
             "peak_fraction": 1.0} for d in dtypes]
    for (name, d), m in best.items():
        rows.append(row(name, d, m.pop("a"), m.pop("w"), m.pop("f"), peaks[d], naive_rate, **m))
    model_rates = {r["dtype"]: r["realtime_factor"] for r in rows if r["name"] == MODEL_ONLY}
    for r in rows:
        if r["name"] == END_TO_END:
            r["vs_model_only"] = r["realtime_factor"] / model_rates[r["dtype"]]
        if r["name"].startswith("model only, --layers"):
            r["vs_all_layers"] = r["realtime_factor"] / model_rates[r["dtype"]]
    long_rows = [long_file(model_dir, args.long_seconds, unchunked, threads)
                 for unchunked in ((False, True) if args.long_compare else (False,)) if args.long_seconds > 0]

    naive_files = sorted(naive_out.glob(f"*{store.FEATURE_SUFFIX}"))
    keys = [f"layer_{i}" for i in range(config.num_hidden_layers + 1)]
    by_name = lambda r: sorted(r["outputs"], key=lambda p: p.name)
    agreement = {"float32_vs_naive": compare(by_name(results["float32"]), naive_files, keys)}
    for d in dtypes[1:]:
        low = by_name(results[d])
        names = {p.name for p in low}
        agreement[f"{d}_vs_float32"] = compare(low, [p for p in by_name(results["float32"]) if p.name in names], keys)
    info["loadavg_end"] = list(os.getloadavg())

    print_table(rows, agreement, info, long_rows)
    checks = evaluate(rows, agreement, dtypes)
    for name, (value, target, ok) in checks.items():
        print(f"  {'PASS' if ok else 'MISS'} {name}: {value:.4g} (target {target})")
    out = args.out or ROOT / "bench" / "results" / f"extract-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "machine": info,
                               "corpus": {"utterances": len(corpus), "seconds": sum(seconds),
                                          "gflop_per_audio_second": sum(flops) / sum(seconds) / 1e9},
                               "rows": rows, "long_file": long_rows, "agreement": agreement,
                               "checks": {k: {"value": v, "target": t, "ok": ok} for k, (v, t, ok) in checks.items()}},
                              indent=1, default=str))
    print(f"# wrote {out}")
    if tmp:
        tmp.cleanup()
    return 0


def evaluate(rows, agreement, dtypes) -> dict:
    """The issue's targets as (value, target, met)."""
    e2e = {r["dtype"]: r for r in rows if r["name"] == END_TO_END}
    fp32, checks = e2e["float32"], {}
    err = max(v["max_rel_err"] for v in agreement["float32_vs_naive"].values())
    checks["fp32 end-to-end vs naive"] = (fp32["vs_naive_fp32"], f">= {TARGETS['fp32_vs_naive']}",
                                          fp32["vs_naive_fp32"] >= TARGETS["fp32_vs_naive"])
    checks["fp32 max rel error vs naive"] = (err, f"<= {TARGETS['fp32_max_rel_err']}", err <= TARGETS["fp32_max_rel_err"])
    checks["fp32 fraction of matmul peak"] = (fp32["peak_fraction"], f">= {TARGETS['fp32_peak_frac']}",
                                              fp32["peak_fraction"] >= TARGETS["fp32_peak_frac"])
    for d in dtypes[1:]:
        r, cka = e2e[d], min(v["cka"] for v in agreement[f"{d}_vs_float32"].values())
        checks[f"{d} end-to-end vs naive fp32"] = (r["vs_naive_fp32"], f">= {TARGETS['low_vs_naive']}",
                                                   r["vs_naive_fp32"] >= TARGETS["low_vs_naive"])
        checks[f"{d} fraction of its matmul peak"] = (r["peak_fraction"], f">= {TARGETS['low_peak_frac']}",
                                                      r["peak_fraction"] >= TARGETS["low_peak_frac"])
        checks[f"{d} min per-layer CKA vs fp32"] = (cka, f">= {TARGETS['low_cka']}", cka >= TARGETS["low_cka"])
    for d, r in e2e.items():
        checks[f"{d} end-to-end / model-only"] = (r["vs_model_only"], f">= {TARGETS['e2e_vs_model']}",
                                                  r["vs_model_only"] >= TARGETS["e2e_vs_model"])
    return checks


def long_file(model_dir: Path, seconds: float, unchunked: bool, threads: int) -> dict:
    """Peak RSS of one long utterance, all layers, in a fresh process (bench_long.py)."""
    cmd = [sys.executable, str(Path(__file__).with_name("bench_long.py")), "--model_dir", str(model_dir),
           "--seconds", str(seconds), "--threads", str(threads)] + (["--unchunked"] if unchunked else [])
    print(f"# long file: {seconds:.0f} s, {'unchunked' if unchunked else 'chunked'} CNN ...", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"seconds": seconds, "unchunked": unchunked, "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def print_table(rows, agreement, info, long_rows=()) -> None:
    fmt = "{:<34} {:<9} {:>8} {:>8} {:>8} {:>9} {:>8} {:>9} {:>7}"
    print(fmt.format("row", "dtype", "audio s", "wall s", "start s", "x realtm", "x naive", "GFLOP/s", "% peak"))
    num = lambda v, f: "-" if v is None or np.isnan(v) else format(v, f)
    for r in rows:
        print(fmt.format(r["name"], r["dtype"], num(r["audio_s"], ".1f"), num(r["wall_s"], ".2f"),
                         num(r["startup_s"], ".1f"), num(r["realtime_factor"], ".2f"), num(r["vs_naive_fp32"], ".2f"),
                         num(r["gflops"], ".1f"), num(100 * r["peak_fraction"], ".0f")))
    for name, layers in agreement.items():
        print(f"# {name}: " + "  ".join(f"{k.split('_')[1]}: err {v['fro_rel_err']:.1e}/{v['max_rel_err']:.1e} "
                                        f"cka {v['cka']:.5f}" for k, v in layers.items()))
    for r in rows:
        if "vs_all_layers" in r:
            print(f"# {r['name']}: {r['vs_all_layers']:.2f}× the speed of all layers")
    for r in long_rows:
        cnn = "unchunked CNN" if r["unchunked"] else "chunked CNN"
        if "error" in r:
            print(f"# long file {r['seconds']:.0f} s, {cnn}: FAILED {r['error']}")
            continue
        print(f"# long file {r['seconds']:.0f} s, {r['layers']} layers, {cnn}: peak RSS {r['peak_rss_gib']:.2f} GiB "
              f"(after load {r['rss_after_load_gib']:.2f}, estimate +{r['estimate_gib']:.2f}), {r['wall_s']:.1f} s "
              f"({r['seconds'] / r['wall_s']:.2f}× realtime)")
    print(f"# load average start {info['loadavg_start'][0]:.2f}, end {info['loadavg_end'][0]:.2f}")
    if max(info["loadavg_start"][0], info["loadavg_end"][0]) > 0.75 * (info["cpu_count"] or 1):
        print("# WARNING: other processes were using the CPU; timings are noisy (rerun when the machine is idle)")


if __name__ == "__main__":
    sys.exit(main())
