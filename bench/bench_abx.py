#!/usr/bin/env python3
"""ABX benchmark, offline, in one run on the machine at hand (issue 21; see docs/benchmarks.md).

Times ``layerwise.measures.abx.abx_error_rates`` per layer on synthetic aligned "audio": ``--hours`` of phones
(gamma durations, mean 80 ms, on a 10 ms alignment grid, phones drawn with English-like skewed frequencies), in
LibriSpeech-like utterances (2–20 s) with pauses (removed silences, so the phones beside them have no context),
``--speakers_per_hour`` speakers, and per layer 50 Hz features of ``--dim`` dims (phone mean × a layer-dependent
strength + a speaker offset + noise). Triphone items are built with ``abx_items_from_segments``; every layer runs the
three ZeroSpeech modes (within/across-speaker triphone, within-speaker phoneme; angular distance) with ZeroSpeech
subsampling (max_size_group = 10, max_x_across = 5). Next to it, in the same process, the fp32 extraction time of
the same audio: a random-init HuBERT-base forward (``SpeechModel.features``, all 13 layers, no file I/O) on
``--extract_seconds`` of synthesized speech (bench_analysis.extraction_rate), scaled to the corpus' audio
(phones + pauses). Prints the CPU, a table and the ratio "ABX all layers / extraction"; writes JSON only with --out.

example:  python bench/bench_abx.py --hours 1                     # ≈ 40 speakers, 13 layers × 768 dims
          python bench/bench_abx.py --hours 0.05 --layers 2 --dim 32 --extract_seconds 0   # a few seconds
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np

from layerwise.measures import abx
from layerwise.model import machine

if __package__ in (None, ""):  # run as a script (python bench/bench_abx.py): this folder is on sys.path
    import bench_analysis
    import benchlib
else:
    from . import bench_analysis, benchlib

RATE = 50  # Hz: transformer-layer frame rate of HuBERT-base (16 kHz / hop 320)
STEP_CS = 1  # alignment grid in centiseconds: 10 ms, the frame shift of Kaldi/MFA alignments
MEAN_PHONE_CS, PHONE_SHAPE, MIN_PHONE_CS = 8, 4.0, 3  # gamma(shape 4, mean 80 ms) → sd 40 ms; ≥ 30 ms (3 HMM states)
PAUSE_PROB, MEAN_PAUSE_CS = 0.06, 25  # a removed silence after 6 % of phones, gamma(shape 2, mean 250 ms)
# 39 ARPAbet phones (CMU dictionary, stress removed), drawn with geometric frequencies ∝ exp(-rank / 12): the most
# frequent ≈ 9 %, the rarest ≈ 0.4 %, about the spread of English phone frequencies.
PHONES = ("AH IH N T R S D L IY K EH M Z ER DH AE W P EY B AY F AA V UW OW HH NG G SH Y AO TH JH CH AW UH OY ZH"
          .split())
PHONE_DECAY = 12.0
PHONE_NORM, SPEAKER_NORM = 3.0, 1.0  # ≈ norms of a phone mean and a speaker offset (noise: N(0, 1) per dim, ≈ √dim)
MODES = ("within_speaker_triphone", "across_speaker_triphone", "within_speaker_phoneme")
SHORT = {"within_speaker_triphone": "within tri", "across_speaker_triphone": "across tri",
         "within_speaker_phoneme": "within pho"}
MAX_SIZE_GROUP, MAX_X_ACROSS = 10, 5  # ZeroSpeech 2021 subsampling (fastabx's zerospeech_abx defaults)


@dataclass(frozen=True)
class Corpus:
    """Synthetic aligned corpus. segments: (stem, onset s, offset s, phone) in time order, silences removed;
    speaker_of: stem → speaker; utt_cs: stem → utterance length in centiseconds (phones + pauses)."""

    segments: list[tuple[str, Decimal, Decimal, str]]
    speaker_of: dict[str, str]
    utt_cs: dict[str, int]

    @property
    def aligned_s(self) -> float:
        """Seconds of aligned phones (the pauses left out)."""
        return float(sum(off - on for _, on, off, _ in self.segments))

    @property
    def audio_s(self) -> float:
        """Seconds of audio, pauses included (what extraction processes)."""
        return sum(self.utt_cs.values()) / 100


def _utterance(rng: np.random.Generator, stem: str, length_cs: int, p: np.ndarray) -> list[tuple]:
    """Phones of one utterance of ``length_cs`` centiseconds: gamma durations, a pause after some phones."""
    segs, t = [], 0
    while True:
        dur = max(MIN_PHONE_CS, round(rng.gamma(PHONE_SHAPE, MEAN_PHONE_CS / PHONE_SHAPE) / STEP_CS) * STEP_CS)
        if t + dur > length_cs:
            return segs
        segs.append((stem, Decimal(t) / 100, Decimal(t + dur) / 100, PHONES[rng.choice(len(PHONES), p=p)]))
        t += dur
        if rng.random() < PAUSE_PROB:
            t += max(STEP_CS, round(rng.gamma(2.0, MEAN_PAUSE_CS / 2.0)))


def make_corpus(hours: float, speakers_per_hour: float, seed: int) -> Corpus:
    """LibriSpeech-like utterances (normal(12.3 s, 4 s) clipped to [2, 20] s) until ``hours`` of aligned phones;
    utterance k belongs to speaker k mod n_speakers, n_speakers = max(2, round(hours × speakers_per_hour))."""
    if hours <= 0:
        raise ValueError(f"hours={hours} must be > 0")
    rng = np.random.default_rng(seed)
    p = np.exp(-np.arange(len(PHONES)) / PHONE_DECAY)
    p /= p.sum()
    n_speakers = max(2, round(hours * speakers_per_hour))
    segments, speaker_of, utt_cs, aligned_cs = [], {}, {}, 0
    while aligned_cs < hours * 360000:
        k = len(utt_cs)
        stem = f"spk{k % n_speakers:03d}-utt{k:05d}"
        length = round(100 * float(np.clip(rng.normal(benchlib.MEAN_UTT_S, benchlib.SD_UTT_S), benchlib.MIN_UTT_S,
                                           benchlib.MAX_UTT_S)))
        segs = _utterance(rng, stem, length, p)
        segments += segs
        speaker_of[stem], utt_cs[stem] = f"spk{k % n_speakers:03d}", length
        aligned_cs += sum(int((off - on) * 100) for _, on, off, _ in segs)
    return Corpus(segments, speaker_of, utt_cs)


def layer_features(corpus: Corpus, layer: int, n_layers: int, dim: int, seed: int) -> dict[str, np.ndarray]:
    """stem → (T, dim) float32 features at :data:`RATE` Hz, T = ceil(utterance s × RATE): frame f (centre at
    (f + 0.5) / RATE s) = a_l × mean of its phone (silence has its own) + speaker offset + N(0, 1) noise, with a
    phone strength a_l = 0.6 + 0.6 sin(π l / n_layers) that peaks mid-stack, as phone ABX does in HuBERT."""
    rng = np.random.default_rng([seed, layer])
    means = rng.normal(scale=PHONE_NORM / math.sqrt(dim), size=(len(PHONES) + 1, dim)).astype(np.float32)
    strength = np.float32(0.6 + 0.6 * math.sin(math.pi * layer / max(n_layers, 1)))
    speakers = sorted(set(corpus.speaker_of.values()))
    offsets = dict(zip(speakers, rng.normal(scale=SPEAKER_NORM / math.sqrt(dim), size=(len(speakers), dim))))
    by_stem: dict[str, list[tuple]] = {stem: [] for stem in corpus.utt_cs}
    for stem, on, off, ph in corpus.segments:
        by_stem[stem].append((int(on * 100), int(off * 100), PHONES.index(ph)))
    feats = {}
    for stem, segs in by_stem.items():
        n = math.ceil(corpus.utt_cs[stem] * RATE / 100)
        centre_cs = (np.arange(n) + 0.5) * 100 / RATE
        label = np.full(n, len(PHONES))  # silence
        for on, off, ph in segs:
            label[(centre_cs >= on) & (centre_cs < off)] = ph
        x = rng.standard_normal((n, dim), dtype=np.float32)
        x += strength * means[label] + offsets[corpus.speaker_of[stem]].astype(np.float32)
        feats[stem] = x
    return feats


def time_layer(feats: dict[str, np.ndarray], items: list[abx.Item], seed: int, n_jobs: int | None) -> dict:
    """ABX of one layer in the three :data:`MODES` (angular, ZeroSpeech subsampling): per mode seconds, error
    rate, items used and cells."""
    row = {}
    for mode in MODES:
        t0 = time.perf_counter()
        r = abx.abx_error_rates(feats, items, mode=mode, distance="angular", max_size_group=MAX_SIZE_GROUP,
                                max_x_across=MAX_X_ACROSS, seed=seed, n_jobs=n_jobs)
        row[mode] = {"seconds": time.perf_counter() - t0, "error": r.score, "items_used": r.n_items_used,
                     "cells": int(len(r.cells["score"]))}
    row["seconds"] = sum(row[m]["seconds"] for m in MODES)
    return row


def warm_up(corpus: Corpus, dim: int, seed: int) -> float:
    """Seconds of a first ABX call on a few utterances (numba compilation or cache load), kept out of the rows."""
    stems = list(corpus.utt_cs)[:4]
    small = Corpus([s for s in corpus.segments if s[0] in stems], {k: corpus.speaker_of[k] for k in stems},
                   {k: corpus.utt_cs[k] for k in stems})
    t0 = time.perf_counter()
    items = abx.abx_items_from_segments(small.segments, speaker_of=small.speaker_of)
    time_layer(layer_features(small, 0, 1, dim, seed), items, seed, None)
    return time.perf_counter() - t0


def run(hours: float, dim: int, layers: int, seed: int, speakers_per_hour: float, extract_seconds: float,
        n_jobs: int | None) -> dict:
    """The whole benchmark; returns the result dict that :func:`report` prints (seconds, error rates, counts)."""
    flags = machine.cpu_flags()
    out = {"machine": {"cpu": machine.cpu_name(), "cpu_kind": benchlib.cpu_kind(flags), "cpu_count": os.cpu_count(),
                       "isa": sorted(flags & set(benchlib.ISA_FLAGS)), "loadavg_start": list(os.getloadavg())},
           "args": {"hours": hours, "dim": dim, "layers": layers, "seed": seed,
                    "speakers_per_hour": speakers_per_hour, "extract_seconds": extract_seconds, "jobs": n_jobs}}
    corpus = make_corpus(hours, speakers_per_hour, seed)
    t0 = time.perf_counter()
    items = abx.abx_items_from_segments(corpus.segments, speaker_of=corpus.speaker_of)
    out["corpus"] = {"aligned_s": corpus.aligned_s, "audio_s": corpus.audio_s, "utterances": len(corpus.utt_cs),
                     "speakers": len(set(corpus.speaker_of.values())), "phones": len(corpus.segments),
                     "items": len(items), "items_s": time.perf_counter() - t0}
    out["warm_up_s"] = warm_up(corpus, dim, seed)
    out["layers"] = []
    for layer in range(layers):
        feats = layer_features(corpus, layer, layers, dim, seed)
        out["layers"].append({"layer": layer, **time_layer(feats, items, seed, n_jobs)})
        del feats
    total = sum(r["seconds"] for r in out["layers"])
    hours_aligned = corpus.aligned_s / 3600
    out["abx"] = {"seconds": total, "s_per_hour_aligned": total / hours_aligned,
                  "s_per_layer_per_hour": total / layers / hours_aligned}
    if extract_seconds > 0:
        with tempfile.TemporaryDirectory() as work:
            ex = bench_analysis.extraction_rate(Path(work), extract_seconds, seed)
        per_audio_s = ex["wall_s"] / ex["audio_s"]
        out["extraction"] = {**ex, "x_realtime": 1 / per_audio_s, "s_per_hour_audio": 3600 * per_audio_s,
                             "corpus_s": per_audio_s * corpus.audio_s}
        out["abx_vs_extraction"] = total / out["extraction"]["corpus_s"]
    out["machine"]["loadavg_end"] = list(os.getloadavg())
    return out


def report(res: dict) -> None:
    """Print the machine, the corpus, one row per layer and the totals of :func:`run`'s result."""
    m, c, a = res["machine"], res["corpus"], res["args"]
    print(f"machine: {m['cpu']} ({m['cpu_kind']}), {m['cpu_count']} cores; ISA flags: {' '.join(m['isa']) or '-'}; "
          f"1-min load {m['loadavg_start'][0]:.1f} at the start, {m['loadavg_end'][0]:.1f} at the end")
    print(f"corpus: {c['aligned_s'] / 3600:.3f} h of aligned phones ({c['audio_s'] / 3600:.3f} h of audio with "
          f"pauses), {c['utterances']} utterances, {c['speakers']} speakers, {c['phones']} phones -> "
          f"{c['items']} triphone items (built in {c['items_s']:.2f} s)")
    print(f"ABX: angular, max_size_group {MAX_SIZE_GROUP}, max_x_across {MAX_X_ACROSS}, {a['dim']} dims, seed "
          f"{a['seed']}; warm-up (numba) {res['warm_up_s']:.1f} s, not counted")
    head = "".join(f"{SHORT[mo] + ' s':>13}" for mo in MODES) + "".join(f"{'err ' + SHORT[mo]:>16}" for mo in MODES)
    print(f"{'layer':>5}{'items':>8}{'cells':>9}{head}{'all 3 s':>10}{'s/h aligned':>13}")
    hours = c["aligned_s"] / 3600
    for r in res["layers"]:
        secs = "".join(f"{r[mo]['seconds']:>13.2f}" for mo in MODES)
        errs = "".join(f"{r[mo]['error']:>16.3f}" for mo in MODES)
        cells = sum(r[mo]["cells"] for mo in MODES)
        print(f"{r['layer']:>5}{r[MODES[0]]['items_used']:>8}{cells:>9}{secs}{errs}{r['seconds']:>10.2f}"
              f"{r['seconds'] / hours:>13.1f}")
    t = res["abx"]
    print(f"ABX total ({len(res['layers'])} layers x 3 modes): {t['seconds']:.1f} s = {t['s_per_hour_aligned']:.0f} s "
          f"per hour of aligned audio ({t['s_per_layer_per_hour']:.1f} s per layer per hour)")
    if "extraction" not in res:
        print("extraction: skipped (--extract_seconds 0)")
        return
    e = res["extraction"]
    print(f"extraction (fp32, random-init HuBERT-base, all 13 layers, model only, {e['audio_s']:.1f} s of audio): "
          f"{e['x_realtime']:.1f}x realtime = {e['s_per_hour_audio']:.0f} s per hour of audio -> "
          f"{e['corpus_s']:.1f} s for this corpus' {c['audio_s'] / 3600:.3f} h of audio")
    print(f"ABX all layers / extraction of the same audio: {res['abx_vs_extraction']:.2f} (issue 21 target: <= 1)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hours", type=float, default=1.0, help="hours of aligned phones (default: %(default)s)")
    p.add_argument("--dim", type=int, default=768, help="feature dimension (default: %(default)s, HuBERT-base)")
    p.add_argument("--layers", type=int, default=13, help="layers timed (default: %(default)s, HuBERT-base 0..12)")
    p.add_argument("--seed", type=int, default=0, help="seed of corpus, features and subsampling (default: 0)")
    p.add_argument("--speakers_per_hour", type=float, default=40.0, help="(default: %(default)s)")
    p.add_argument("--extract_seconds", type=float, default=20.0,
                   help="audio for the extraction rate; 0 skips it (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=None, help="ABX threads (default: all CPUs)")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here (default: nothing written)")
    args = p.parse_args(argv)
    if args.dim < 1 or args.layers < 1:
        p.error(f"--dim {args.dim} and --layers {args.layers} must be >= 1")
    if args.hours <= 0 or args.speakers_per_hour <= 0 or args.extract_seconds < 0:
        p.error("--hours and --speakers_per_hour must be > 0, --extract_seconds >= 0")
    res = run(args.hours, args.dim, args.layers, args.seed, args.speakers_per_hour, args.extract_seconds, args.jobs)
    report(res)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
