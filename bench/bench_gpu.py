#!/usr/bin/env python3
"""GPU benchmark, prepared so that a short lent window suffices (issue 23, item 4): one command, ≤ 5 minutes.

On ``--device`` (default cuda), with synthetic LibriSpeech-like audio (bench/benchlib.py) and a checkpoint that is
either ``--model_dir`` or a random-init HuBERT-base config saved in-process (no download):
  (1) equality: the device float32 path (TF32 off for matmuls and cuDNN convolutions) against the CPU float32 path on
      the first ``CHECK_UTTERANCES`` utterances, every layer: max relative error ≤ ``DEVICE_RTOL``;
  (2) per-utterance extraction timing per ``--dtypes`` row (float32, tf32 = float32 weights with
      ``torch.backends.cuda.matmul.allow_tf32``/``cudnn.allow_tf32``, bfloat16): model only
      (``SpeechModel.features``, one warm-up call first) and through the library's extraction call
      (``layerwise.extract.run.extract_folder`` into a temporary folder, the loaded model reused), and the same call
      with ``--no_store`` (the features feed one shard's analysis partial, ``analyze.partial.PartialFeed``; no file
      per utterance; its wall includes writing that partial once, ≈ 430 MB for HuBERT-base, so on a short corpus it
      reads slower than the per-utterance rows);
  (3) batched extraction where it is exact: on the same config with a layer-norm CNN and pre-LN transformer
      (``feat_extract_norm="layer"``, the wav2vec2-large-lv60 / HuBERT-large kind; random init, the same FLOPs),
      ``--batch_size`` consecutive utterances per padded, masked forward pass (``SpeechModel.features_batch`` on the
      groups of ``batch_groups``, and ``extract_folder(batch_size=...)``) against one pass per utterance of that
      model on the same device and dtype: max relative error ≤ ``BATCH_RTOL`` (float32);
  (4) the streaming statistics on the device: layerwise's ``LayerStats`` is numpy-only, so the same sums (n, Σ(x − r),
      Σ(x − r)(x − r)ᵀ over all layers side by side, r = the first utterance's mean) are accumulated by torch in
      float64 on the device, timed, and checked against ``LayerStats(precision="float64")`` (timed on the CPU too):
      mean, every centred cross-product block and the linear CKA matrix within ``MOMENTS_RTOL``.
Prints the machine (device name, torch/CUDA versions, CPU flags) and a table (per row: seconds, × realtime, max
relative error against its reference), and writes JSON. Exit status 1 when an equality check fails.
With ``--device cpu`` everything runs on the CPU (the TF32 row is skipped with its reason): the test that keeps this
script from rotting runs it that way on a tiny checkpoint.

example:  python bench/bench_gpu.py                                   # HuBERT-base random init, 180 s of audio
          python bench/bench_gpu.py --model_dir /path/to/hubert-base-ls960 --seconds 300 --out gpu.json
          python bench/bench_gpu.py --device cpu --seconds 30 --dtypes float32    # a CPU dry run (bf16 rows: only
                                                                        # where bf16 is native, else ~100x slower)
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script (python bench/bench_gpu.py): this folder is on sys.path
    import benchlib
else:
    from . import benchlib

log = logging.getLogger(__name__)

DEVICE_RTOL = 1e-4  # device float32 vs CPU float32, max|Δ| / max|ref| per layer (the target)
BATCH_RTOL = 1e-5  # padded batch vs one utterance per pass, same device and dtype (the contract)
MOMENTS_RTOL = 1e-9  # torch float64 sums on the device vs numpy LayerStats float64 (the target)
CHECK_UTTERANCES = 3  # "a few utterances" for the equality check: ≈ 37 s of audio at the corpus' 12.3 s mean
ROW_DTYPES = {"float32": "float32", "tf32": "float32", "bfloat16": "bfloat16"}  # row -> compute dtype of the weights
TF32_CPU = "TF32 is a CUDA tensor-core matmul mode (torch.backends.cuda.matmul.allow_tf32); no CPU equivalent"
MODEL_ROW, LIBRARY_ROW = "extraction, model only", "extraction, extract_folder"
NO_STORE_ROW = "extraction, extract_folder --no_store"
LN_SINGLE_ROW = "layer-norm CNN, per utterance, model only"
LN_BATCH_ROW, LN_LIBRARY_ROW = "layer-norm CNN, batched, model only", "layer-norm CNN, batched, extract_folder"
STATS_DEVICE_ROW, STATS_CPU_ROW = "streaming stats, torch float64 on {}", "streaming stats, LayerStats float64 (CPU)"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="(default: %(default)s)")
    p.add_argument("--model_dir", type=Path, default=None,
                   help="local save_pretrained checkpoint (default: random-init HuBERT-base built here, no download)")
    p.add_argument("--seconds", type=float, default=180, help="seconds of synthetic audio (default: %(default)s)")
    p.add_argument("--dtypes", default="float32,tf32,bfloat16",
                   help=f"rows, float32 first; of {','.join(ROW_DTYPES)} (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and audio (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no_library", action="store_true", help="skip the extract_folder rows")
    p.add_argument("--batch_size", type=int, default=8,
                   help="utterances per pass of the batched rows; 1 skips them (default: %(default)s)")
    p.add_argument("--workdir", type=Path, default=None, help="keep checkpoint/audio/outputs here (default: temp)")
    p.add_argument("--out", type=Path, default=None, help="JSON path (default: bench/results/gpu-<time>.json)")
    args = p.parse_args(argv)
    args.dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    if not args.dtypes or args.dtypes[0] != "float32" or any(d not in ROW_DTYPES for d in args.dtypes):
        p.error(f"--dtypes {','.join(args.dtypes)!r}: float32 first, then any of {','.join(ROW_DTYPES)}")
    if args.batch_size < 1:
        p.error(f"--batch_size {args.batch_size} must be >= 1")
    if args.model_dir is not None and not (args.model_dir / "config.json").is_file():
        p.error(f"--model_dir {args.model_dir} holds no config.json (a save_pretrained folder is expected)")
    return args


@contextlib.contextmanager
def tf32_mode(enabled: bool):
    """TF32 for CUDA matmuls and cuDNN convolutions on (``enabled``) or off inside the block; restored after.
    (cuDNN convolutions default to TF32 on: the float32 rows must switch it off to be float32.)"""
    import torch

    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def run_model(model, waves: list[np.ndarray], keep: int) -> tuple[list[float], list[dict[str, np.ndarray]]]:
    """Seconds per utterance of ``model.features`` (every layer; one untimed warm-up call on the first utterance
    first) and the features of the first ``keep`` utterances (key -> (T, D) float32)."""
    layers = list(range(model.num_layers + 1))
    model.features(waves[0], "contextualized", layers)  # warm-up: kernel selection, allocator, lazy init
    times, kept = [], []
    for i, wave in enumerate(waves):
        benchlib.sync(model.device)
        t0 = time.perf_counter()
        feats = model.features(wave, "contextualized", layers)
        benchlib.sync(model.device)
        times.append(time.perf_counter() - t0)
        if i < keep:
            kept.append(feats)
    return times, kept


def agreement(feats: list[dict], ref: list[dict]) -> dict:
    """Per layer over the utterances of ``ref`` (all frames together): max relative error ``max|Δ| / max|ref|`` and
    linear CKA; plus their worst values over the layers."""
    per_layer = {}
    for key in ref[0]:
        a = np.concatenate([f[key] for f in feats[:len(ref)]])
        b = np.concatenate([r[key] for r in ref])
        per_layer[key] = {"max_rel_err": benchlib.max_rel_error(a, b), "cka": benchlib.linear_cka(a, b)}
    return {"max_rel_err": max(v["max_rel_err"] for v in per_layer.values()),
            "min_cka": min(v["cka"] for v in per_layer.values()), "per_layer": per_layer}


def row(name: str, dtype: str, audio_s: float, wall_s: float, reference: str, agree: dict | None = None) -> dict:
    """One table row; ``realtime_factor`` = audio seconds / wall seconds."""
    agree = agree or {}
    return {"name": name, "dtype": dtype, "audio_s": audio_s, "wall_s": wall_s, "realtime_factor": audio_s / wall_s,
            "reference": reference, "max_rel_err": agree.get("max_rel_err"), "min_cka": agree.get("min_cka"),
            "per_layer": agree.get("per_layer"), "skipped": None}


def library_call(model, model_dir: Path, audio_dir: Path, save_dir: Path, check_stems: list[str],
                 batch_size: int = 1) -> tuple:
    """``extract_folder`` over ``audio_dir`` into ``save_dir`` with ``model`` (already loaded, so no load time) and
    ``batch_size``: (wall seconds, features of ``check_stems`` read back from the written files)."""
    from layerwise.contract import store
    from layerwise.extract.options import ExtractionOptions
    from layerwise.extract.run import extract_folder

    options = ExtractionOptions(model_name=str(model_dir), dtype=model.dtype, device=model.device,
                                dataset_split="bench", data_sample="gpu")
    benchlib.sync(model.device)
    t0 = time.perf_counter()
    runlog = extract_folder(audio_dir, save_dir, options, model=model, overwrite=True, batch_size=batch_size)
    benchlib.sync(model.device)
    wall = time.perf_counter() - t0
    if runlog.failures:
        raise RuntimeError(f"extract_folder failed on {len(runlog.failures)} file(s): {runlog.failures[:3]}")
    written = {store.stem_of(p): p for p in options.output_dir(save_dir).rglob(f"*{store.FEATURE_SUFFIX}")}
    feats = []
    for stem in check_stems:
        layers = store.read_features(written[stem]).layers
        feats.append({k: v.reshape(-1, v.shape[-1]) for k, v in layers.items()})
    return wall, feats


def no_store_call(model, model_dir: Path, audio_dir: Path, save_dir: Path) -> tuple[float, Path]:
    """``extract_features.py --no_store`` as a library call: ``extract_folder`` feeding the analysis partial of one
    shard (``analyze.partial.PartialFeed``) instead of writing feature files, with ``model`` already loaded:
    (wall seconds, the partial written)."""
    from layerwise.analyze.partial import PartialFeed
    from layerwise.extract.options import ExtractionOptions
    from layerwise.extract.run import extract_folder

    options = ExtractionOptions(model_name=str(model_dir), dtype=model.dtype, device=model.device,
                                dataset_split="bench", data_sample="gpu")
    sink = PartialFeed(options.output_dir(save_dir))
    benchlib.sync(model.device)
    t0 = time.perf_counter()
    runlog = extract_folder(audio_dir, save_dir, options, model=model, overwrite=True, sink=sink)
    benchlib.sync(model.device)
    wall = time.perf_counter() - t0
    if runlog.failures or not sink.path.is_file():
        raise RuntimeError(f"--no_store failed on {len(runlog.failures)} file(s) ({runlog.failures[:3]}) or wrote "
                           f"no partial ({sink.path})")
    return wall, sink.path


def models_per_dtype(args, checkpoint: Path, skipped_name: str, rows: list[dict]):
    """(dtype, model of ``checkpoint`` on ``args.device`` in that dtype's compute dtype) per ``args.dtypes``, one
    model loaded per compute dtype; tf32 off CUDA is appended to ``rows`` as a skipped ``skipped_name`` row."""
    from layerwise.model.adapter import SpeechModel

    models = {}
    for dtype in args.dtypes:
        if dtype == "tf32" and args.device != "cuda":
            rows.append({"name": skipped_name, "dtype": dtype, "skipped": TF32_CPU})
            continue
        compute = ROW_DTYPES[dtype]
        if compute not in models:
            models[compute] = SpeechModel.load(str(checkpoint), device=args.device, dtype=compute)
        yield dtype, models[compute]


def extraction_rows(args, model_dir: Path, audio_dir: Path, corpus: list, ref: list[dict], work: Path) -> tuple:
    """Model-only and library rows per ``args.dtypes`` on ``args.device`` (each against the CPU float32 ``ref``);
    returns (rows, features of every utterance from the float32 model-only row, for the statistics)."""
    waves, stems = [w for _, _, w in corpus], [p.stem for p, _, _ in corpus]
    audio_s = sum(s for _, s, _ in corpus)
    rows, all_feats = [], None
    for dtype, model in models_per_dtype(args, model_dir, MODEL_ROW, rows):
        with tf32_mode(dtype == "tf32"):
            keep = len(waves) if dtype == "float32" else len(ref)
            times, feats = run_model(model, waves, keep)
            all_feats = feats if dtype == "float32" else all_feats
            rows.append(row(MODEL_ROW, dtype, audio_s, sum(times), "CPU float32", agreement(feats, ref)))
            if not args.no_library:
                wall, lib = library_call(model, model_dir, audio_dir, work / f"library-{dtype}", stems[:len(ref)])
                rows.append(row(LIBRARY_ROW, dtype, audio_s, wall, "CPU float32", agreement(lib, ref)))
                wall, partial = no_store_call(model, model_dir, audio_dir, work / f"no-store-{dtype}")
                rows.append({**row(NO_STORE_ROW, dtype, audio_s, wall, "-"), "partial": str(partial)})
        print(f"# {dtype}: done ({rows[-1]['realtime_factor']:.1f}× realtime)", flush=True)
    return rows, all_feats


def layer_norm_checkpoint(model_dir: Path, folder: Path, seed: int) -> Path:
    """``model_dir``'s config with a layer-norm CNN and a pre-LN transformer (``feat_extract_norm="layer"``,
    ``do_stable_layer_norm=True``: the wav2vec2-large-lv60 / HuBERT-large kind), random weights seeded by ``seed``,
    saved with save_pretrained: the same FLOPs, and utterances of any length may share a padded forward pass."""
    import torch
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

    config = AutoConfig.from_pretrained(model_dir)
    config.feat_extract_norm, config.do_stable_layer_norm = "layer", True
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        AutoModel.from_config(config).save_pretrained(folder)
    AutoFeatureExtractor.from_pretrained(model_dir).save_pretrained(folder)
    return folder


def run_batched(model, waves: list[np.ndarray], batch_size: int) -> tuple[float, list[dict[str, np.ndarray]], int]:
    """Seconds of ``model.features_batch`` over the groups ``model.batch_groups`` makes of consecutive ``waves``
    (one untimed warm-up batch first), every utterance's features in order, and the number of padded batches (two
    or more utterances of different lengths: what the equality check tests)."""
    layers = list(range(model.num_layers + 1))
    groups = model.batch_groups([len(w) for w in waves], batch_size)
    padded = sum(len({len(waves[i]) for i in g}) > 1 for g in groups)
    model.features_batch([waves[i] for i in groups[0]], "contextualized", layers)  # warm-up
    benchlib.sync(model.device)
    t0 = time.perf_counter()
    feats = [f for g in groups for f in model.features_batch([waves[i] for i in g], "contextualized", layers)]
    benchlib.sync(model.device)
    return time.perf_counter() - t0, feats, padded


def batched_rows(args, model_dir: Path, audio_dir: Path, corpus: list, work: Path) -> list[dict]:
    """Per ``args.dtypes``: the layer-norm variant of ``model_dir`` one utterance per pass (model only), then
    ``args.batch_size`` per pass (model only, and through extract_folder), each batched row against the
    per-utterance features of the same model, device and dtype."""
    folder = layer_norm_checkpoint(model_dir, work / "layer-norm-cnn", args.seed)
    waves, stems = [w for _, _, w in corpus], [p.stem for p, _, _ in corpus]
    audio_s, rows = sum(s for _, s, _ in corpus), []
    for dtype, model in models_per_dtype(args, folder, LN_BATCH_ROW, rows):
        with tf32_mode(dtype == "tf32"):
            times, single = run_model(model, waves, len(waves))
            rows.append(row(LN_SINGLE_ROW, dtype, audio_s, sum(times), "-"))
            wall, batched, padded = run_batched(model, waves, args.batch_size)
            rows.append(row(LN_BATCH_ROW, dtype, audio_s, wall, "per utterance", agreement(batched, single))
                        | {"padded_batches": padded})
            if not padded:
                print(f"# batch {args.batch_size} over {len(waves)} utterance(s): no batch holds two utterances of "
                      f"different lengths, so the padded-batch equality is NOT tested (give more --seconds)",
                      flush=True)
            if not args.no_library:
                wall, lib = library_call(model, folder, audio_dir, work / f"batched-{dtype}", stems,
                                         batch_size=args.batch_size)
                rows.append(row(LN_LIBRARY_ROW, dtype, audio_s, wall, "per utterance", agreement(lib, single)))
        print(f"# {dtype}, batch {args.batch_size}: done ({rows[-1]['realtime_factor']:.1f}× realtime)", flush=True)
    return rows


def device_moments(feats: list[dict[str, np.ndarray]], keys: list[str], device: str) -> dict:
    """The streaming sums in torch float64 on ``device`` over utterances of frames (key -> (T, D)), layers side by
    side (N = Σ D): ``n``, ``ref`` (N,) = the first utterance's mean, ``shift`` (N,) = Σ_t (x_t − ref) and
    ``w`` (N, N) = Σ_t (x_t − ref)(x_t − ref)ᵀ. Host → device copies included (the adapter returns numpy)."""
    import torch

    n, ref, shift, w = 0, None, None, None
    for f in feats:
        x = torch.cat([torch.from_numpy(f[k]).to(device, non_blocking=True) for k in keys], dim=1).double()
        if ref is None:
            ref = x.mean(dim=0)
            shift = torch.zeros_like(ref)
            w = torch.zeros(ref.shape[0], ref.shape[0], dtype=torch.float64, device=device)
        xc = x - ref
        shift += xc.sum(dim=0)
        w.addmm_(xc.T, xc)
        n += x.shape[0]
    return {"n": n, "ref": ref, "shift": shift, "w": w}


def settle(sums: dict, dims: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From :func:`device_moments`: the mean (N,), the centred comoment ``M = W − shift·shiftᵀ / n`` (N, N) and the
    linear CKA (L, L) = ‖M_ij‖²_F / (‖M_ii‖_F ‖M_jj‖_F), computed on the device, returned as float64 numpy."""
    import torch

    n, shift = sums["n"], sums["shift"]
    m = sums["w"] - torch.outer(shift, shift) / n
    edges = np.concatenate([[0], np.cumsum(dims)])
    blocks = [slice(int(a), int(b)) for a, b in itertools.pairwise(edges)]
    sq = torch.stack([torch.stack([m[a, b].square().sum() for b in blocks]) for a in blocks])
    cka = sq / torch.sqrt(torch.outer(sq.diagonal(), sq.diagonal()))
    return (sums["ref"] + shift / n).cpu().numpy(), m.cpu().numpy(), cka.cpu().numpy()


def moments_rows(feats: list[dict], device: str, audio_s: float) -> list[dict]:
    """Time the float64 sums on ``device`` and numpy ``LayerStats(precision="float64")`` over the same frames; the
    device row's ``max_rel_err`` is the worst of mean / every centred block (relative to the largest entry) and the
    absolute CKA difference, against LayerStats."""
    from layerwise.stats.moments import LayerStats

    keys = list(feats[0])
    dims = [feats[0][k].shape[1] for k in keys]
    benchlib.sync(device)
    t0 = time.perf_counter()
    sums = device_moments(feats, keys, device)
    benchlib.sync(device)
    device_s = time.perf_counter() - t0
    mean, m, cka = settle(sums, dims)
    t0 = time.perf_counter()
    stats = LayerStats(keys, dims, precision="float64")
    for f in feats:
        stats.update(f)
    stats.end_group()
    cpu_s = time.perf_counter() - t0
    edges = np.concatenate([[0], np.cumsum(dims)])
    scale = np.max(np.abs(m))
    block_err = max(np.max(np.abs(m[edges[i]:edges[i + 1], edges[j]:edges[j + 1]] - stats.block(a, b))) / scale
                    for i, a in enumerate(keys) for j, b in enumerate(keys) if i <= j)
    errors = {"mean": benchlib.max_rel_error(mean, stats.mean), "comoment": float(block_err),
              "cka_abs": float(np.max(np.abs(cka - stats.cka()))), "frames": int(sums["n"])}
    return [{**row(STATS_DEVICE_ROW.format(device), "float64", audio_s, device_s, "LayerStats float64"),
             "max_rel_err": max(errors["mean"], errors["comoment"], errors["cka_abs"]), "moments": errors},
            row(STATS_CPU_ROW, "float64", audio_s, cpu_s, "-")]


def cpu_reference(model_dir: Path, waves: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    """CPU float32 features (every layer) of ``waves``: the reference of every extraction row."""
    from layerwise.model.adapter import SpeechModel

    model = SpeechModel.load(str(model_dir), device="cpu", dtype="float32")
    layers = list(range(model.num_layers + 1))
    return [model.features(w, "contextualized", layers) for w in waves]


def machine_line(device: str) -> dict:
    """benchlib's machine facts (CPU name, kind, ISA flags, torch) plus the CUDA/cuDNN versions and the device."""
    import torch

    info = benchlib.machine_info(device)
    info.update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version() if device == "cuda" else None,
                device_name=info.get("gpu", f"CPU: {info['cpu']}"))
    print(f"# device {info['device_name']} | torch {info['torch']} | CUDA {info['cuda']} | cuDNN {info['cudnn']}")
    print(f"# CPU {info['cpu']} ({info['cpu_kind']}) | {info['torch_threads']} threads | "
          f"ISA {','.join(info['isa']) or 'none of ' + ','.join(benchlib.ISA_FLAGS)}", flush=True)
    return info


def evaluate(rows: list[dict]) -> dict:
    """The equality checks: (value, target, met)."""
    fp32 = [r for r in rows if r.get("dtype") == "float32" and r["name"] in (MODEL_ROW, LIBRARY_ROW)]
    err = max(r["max_rel_err"] for r in fp32)
    stats = next(r for r in rows if r["name"].startswith("streaming stats, torch"))
    checks = {}
    batched = [r for r in rows if r.get("dtype") == "float32" and r["name"] in (LN_BATCH_ROW, LN_LIBRARY_ROW)]
    if batched:
        worst = max(r["max_rel_err"] for r in batched)
        tested = any(r.get("padded_batches") for r in rows if r["name"] == LN_BATCH_ROW)  # None: nothing padded
        checks["float32 batched == per utterance"] = (worst, f"<= {BATCH_RTOL}", worst <= BATCH_RTOL if tested else None)
    return checks | {"device float32 == CPU float32": (err, f"<= {DEVICE_RTOL}", err <= DEVICE_RTOL),
            "device float64 moments == LayerStats": (stats["max_rel_err"], f"<= {MOMENTS_RTOL}",
                                                     stats["max_rel_err"] <= MOMENTS_RTOL)}


def print_table(rows: list[dict], checks: dict) -> None:
    fmt = "{:<48} {:<9} {:>8} {:>8} {:>9} {:>10} {:>9}  {}"
    print(fmt.format("row", "dtype", "audio s", "wall s", "x realtm", "max rel", "min CKA", "vs"))

    def num(v, f):
        return "-" if v is None else format(v, f)

    for r in rows:
        if r.get("skipped"):
            print(fmt.format(r["name"], r["dtype"], "-", "-", "-", "-", "-", f"skipped: {r['skipped']}"))
            continue
        print(fmt.format(r["name"], r["dtype"], num(r["audio_s"], ".1f"), num(r["wall_s"], ".3f"),
                         num(r["realtime_factor"], ".1f"), num(r["max_rel_err"], ".1e"), num(r["min_cka"], ".6f"),
                         r["reference"]))
    for name, (value, target, ok) in checks.items():
        verdict = {True: "PASS", False: "FAIL", None: "NOT TESTED (no padded batch)"}[ok]
        print(f"  {verdict} {name}: {value:.3g} (target {target})")


def make_corpus(args, work: Path) -> tuple[Path, list[tuple[Path, float, np.ndarray]]]:
    """The checkpoint folder and the synthetic corpus as (path, seconds, decoded samples)."""
    from layerwise.extract.audio import load_audio

    model_dir = args.model_dir or benchlib.save_checkpoint(work / "hubert-base-random", seed=args.seed)
    files = benchlib.write_corpus(work / "audio", args.seconds, seed=args.seed)
    corpus = []
    for path, _ in files:
        samples = load_audio(path, benchlib.SAMPLE_RATE).samples
        corpus.append((path, len(samples) / benchlib.SAMPLE_RATE, samples))
    print(f"# {model_dir}: {len(corpus)} utterances, {sum(s for _, s, _ in corpus):.1f} s of audio; equality on the "
          f"first {min(CHECK_UTTERANCES, len(corpus))}", flush=True)
    return model_dir, corpus


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA device (use --device cpu)", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    info = machine_line(args.device)
    tmp = None if args.workdir else tempfile.TemporaryDirectory(prefix="bench-gpu-")
    work = args.workdir or Path(tmp.name)
    model_dir, corpus = make_corpus(args, work)
    ref = cpu_reference(model_dir, [w for _, _, w in corpus[:CHECK_UTTERANCES]])
    rows, feats = extraction_rows(args, model_dir, work / "audio", corpus, ref, work)
    if args.batch_size > 1:
        rows += batched_rows(args, model_dir, work / "audio", corpus, work)
    rows += moments_rows(feats, args.device, sum(s for _, s, _ in corpus))
    checks = evaluate(rows)
    print_table(rows, checks)
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "machine": info,
              "corpus": {"utterances": len(corpus), "seconds": sum(s for _, s, _ in corpus),
                         "check_utterances": len(ref)},
              "rows": rows, "checks": {k: {"value": v, "target": t, "ok": ok} for k, (v, t, ok) in checks.items()},
              "total_s": time.perf_counter() - t_start}
    out = args.out or Path(__file__).resolve().parent / "results" / f"gpu-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str))
    print(f"# total {result['total_s']:.1f} s; wrote {out}")
    if tmp:
        tmp.cleanup()
    return 0 if all(ok is not False for _, _, ok in checks.values()) else 1  # a check not tested says so above


if __name__ == "__main__":
    sys.exit(main())
