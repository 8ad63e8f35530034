"""bench/bench_abx.py on tiny sizes: it runs, prints every row, and its numbers agree with independent counts."""

from __future__ import annotations

import json
import math

import pytest

from bench import bench_abx


def _count_items(segments) -> int:
    """Triphone items counted by hand: per file, runs of phones where each starts exactly where the previous one
    ends; a run of n phones gives n - 2 items (its first and last phone have no context)."""
    runs: list[int] = []
    prev_stem = prev_end = None
    for stem, onset, offset, _ in segments:
        if stem == prev_stem and onset == prev_end:
            runs[-1] += 1
        else:
            runs.append(1)
        prev_stem, prev_end = stem, offset
    return sum(max(0, n - 2) for n in runs)


def test_corpus_is_as_documented():
    corpus = bench_abx.make_corpus(0.1, 40, seed=3)
    durations = [float(off - on) for _, on, off, _ in corpus.segments]
    assert abs(sum(durations) - corpus.aligned_s) < 1e-9 and 360 <= corpus.aligned_s < 380  # 0.1 h, last utt over
    assert 0.07 < sum(durations) / len(durations) < 0.10 and min(durations) >= 0.03  # ≈ 80 ms mean, ≥ 30 ms
    assert all(round(d * 100, 9).is_integer() for d in durations)  # on the 10 ms alignment grid
    assert len(set(corpus.speaker_of.values())) == 4  # 40 per hour
    assert corpus.audio_s > corpus.aligned_s  # pauses


def test_bench_abx_smoke(tmp_path, capsys, monkeypatch):
    out = tmp_path / "abx.json"
    args = ["--hours", "0.02", "--dim", "16", "--layers", "2", "--seed", "1", "--extract_seconds", "0"]
    assert bench_abx.main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for text in ("machine:", "ISA flags", "corpus:", "within tri s", "err across tri", "ABX total (2 layers x 3 modes)",
                 "extraction: skipped"):
        assert text in printed, text
    res = json.loads(out.read_text())
    corpus = bench_abx.make_corpus(0.02, 40, seed=1)
    n_items = _count_items(corpus.segments)
    assert res["corpus"]["items"] == n_items > 100 and res["corpus"]["phones"] == len(corpus.segments)
    aligned_s = sum(float(off - on) for _, on, off, _ in corpus.segments)
    assert abs(res["corpus"]["aligned_s"] - aligned_s) < 1e-9
    rows = [line.split() for line in printed.splitlines() if line.split() and line.split()[0].isdigit()]
    assert [int(r[0]) for r in rows] == [0, 1] and all(int(r[1]) == n_items for r in rows)  # items column
    for layer, row in zip(res["layers"], rows):
        for mode in bench_abx.MODES:
            assert layer[mode]["items_used"] == n_items and 0 <= layer[mode]["error"] <= 1
            assert layer[mode]["cells"] > 0 and layer[mode]["seconds"] > 0
        assert math.isclose(layer["seconds"], sum(layer[m]["seconds"] for m in bench_abx.MODES))
        assert abs(float(row[-1]) - layer["seconds"] / (aligned_s / 3600)) < 0.051  # s/h aligned, 1 decimal
    total = sum(layer["seconds"] for layer in res["layers"])
    assert math.isclose(res["abx"]["seconds"], total)
    assert math.isclose(res["abx"]["s_per_layer_per_hour"], total / 2 / (aligned_s / 3600))
    # nothing written without --out
    monkeypatch.chdir(tmp_path)
    out.unlink()
    assert bench_abx.main(["--hours", "0.005", "--dim", "8", "--layers", "1", "--extract_seconds", "0"]) == 0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_bench_abx_extraction_ratio(tmp_path):
    """With the extraction row (a random-init HuBERT-base forward): the ratio is ABX seconds / scaled extraction."""
    out = tmp_path / "abx.json"
    assert bench_abx.main(["--hours", "0.005", "--dim", "8", "--layers", "1", "--extract_seconds", "2.5",
                           "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    ex = res["extraction"]
    assert ex["wall_s"] > 0 and math.isclose(ex["corpus_s"], ex["wall_s"] / ex["audio_s"] * res["corpus"]["audio_s"])
    assert math.isclose(res["abx_vs_extraction"], res["abx"]["seconds"] / ex["corpus_s"])
