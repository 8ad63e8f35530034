"""bench/bench_gpu.py stays runnable without a GPU: its pieces against independent computations, and the whole
script as a subprocess with ``--device cpu`` on a tiny checkpoint, its JSON and table checked against facts
computed here (the audio written, the frame counts from the conv kernels, seconds / wall)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from bench import bench_gpu
from tests.conftest import ROOT, save_tiny

HUBERT_CONV = ((10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2))  # kernels, strides of HuBERT's CNN (the tiny one too)


def frames(n_samples: int) -> int:
    """Frames of HuBERT's CNN by hand: (L − k) // s + 1 per conv layer."""
    for k, s in zip(*HUBERT_CONV):
        n_samples = (n_samples - k) // s + 1
    return n_samples


def test_device_moments_equal_direct_float64_formulas():
    """The torch float64 sums, settled, give the mean, the centred cross-products and linear CKA of the frames
    concatenated, computed here directly in numpy (large offset: centring on the first file's mean must hold)."""
    rng = np.random.default_rng(0)
    feats = [{"a": (1e3 + rng.standard_normal((t, 3))).astype(np.float32),
              "b": (rng.standard_normal((t, 5)) * [1, 2, 3, 4, 5]).astype(np.float32)} for t in (7, 1, 12)]
    sums = bench_gpu.device_moments(feats, ["a", "b"], "cpu")
    mean, m, cka = bench_gpu.settle(sums, [3, 5])
    x = np.concatenate([np.concatenate([f["a"], f["b"]], axis=1) for f in feats]).astype(np.float64)
    xc = x - x.mean(axis=0)
    assert sums["n"] == 20
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(m, xc.T @ xc, rtol=1e-9, atol=1e-9 * np.abs(xc.T @ xc).max())
    a, b = xc[:, :3], xc[:, 3:]
    cross = np.linalg.norm(b.T @ a) ** 2 / (np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b))
    np.testing.assert_allclose(cka, [[1, cross], [cross, 1]], rtol=1e-12)


def test_tf32_mode_sets_and_restores_both_flags():
    import torch

    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    with bench_gpu.tf32_mode(True):
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    with bench_gpu.tf32_mode(False):
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


@pytest.mark.parametrize("dtypes", ["bfloat16,float32", "float32,float16", ""])
def test_dtypes_validated(dtypes):
    with pytest.raises(SystemExit) as err:
        bench_gpu.parse_args(["--dtypes", dtypes])
    assert err.value.code == 2


@pytest.mark.slow
def test_bench_gpu_runs_on_cpu(tmp_path):
    model_dir = save_tiny("hubert", tmp_path / "tiny", do_normalize=False)
    out, work = tmp_path / "gpu.json", tmp_path / "work"
    cmd = [sys.executable, str(ROOT / "bench" / "bench_gpu.py"), "--device", "cpu", "--model_dir", str(model_dir),
           "--seconds", "16", "--threads", "1", "--batch_size", "2", "--workdir", str(work), "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result, printed = json.loads(out.read_text()), proc.stdout

    flacs = sorted((work / "audio").rglob("*.flac"))  # the audio the script wrote, read independently
    samples = [sf.info(p).frames for p in flacs]
    audio_s = sum(samples) / 16000
    assert len(flacs) == result["corpus"]["utterances"] == 2
    assert result["corpus"]["seconds"] == pytest.approx(audio_s, rel=1e-12)

    rows = {(r["name"], r["dtype"]): r for r in result["rows"]}
    model, library = "extraction, model only", "extraction, extract_folder"
    stats_dev, stats_cpu = "streaming stats, torch float64 on cpu", "streaming stats, LayerStats float64 (CPU)"
    single, batched = "layer-norm CNN, per utterance, model only", "layer-norm CNN, batched, model only"
    batched_lib = "layer-norm CNN, batched, extract_folder"
    no_store = "extraction, extract_folder --no_store"
    assert set(rows) == {(model, "float32"), (library, "float32"), (model, "tf32"), (model, "bfloat16"),
                         (library, "bfloat16"), (stats_dev, "float64"), (stats_cpu, "float64"),
                         *((name, d) for name in (single, batched, batched_lib, no_store)
                           for d in ("float32", "bfloat16")),
                         (batched, "tf32")}
    assert "CUDA" in rows[model, "tf32"]["skipped"] and "CUDA" in rows[batched, "tf32"]["skipped"]
    for r in (r for r in result["rows"] if not r["skipped"]):
        assert r["audio_s"] == pytest.approx(audio_s, rel=1e-12) and r["wall_s"] > 0
        assert r["realtime_factor"] == pytest.approx(r["audio_s"] / r["wall_s"], rel=1e-12)
    for key in ((model, "float32"), (library, "float32")):  # the equality check, per layer
        assert len(rows[key]["per_layer"]) == 3  # tiny: layer_0..layer_2
        assert max(v["max_rel_err"] for v in rows[key]["per_layer"].values()) <= 1e-4
    assert 0.99 < rows[model, "bfloat16"]["min_cka"] <= 1 + 1e-12
    for key in ((batched, "float32"), (batched_lib, "float32")):  # padded batch == one utterance per pass
        assert len(rows[key]["per_layer"]) == 3 and rows[key]["max_rel_err"] <= 1e-5
    ln_config = json.loads((work / "layer-norm-cnn" / "config.json").read_text())
    tiny_config = json.loads((model_dir / "config.json").read_text())
    assert (ln_config["feat_extract_norm"], ln_config["do_stable_layer_norm"]) == ("layer", True)
    assert ln_config["hidden_size"] == tiny_config["hidden_size"] and ln_config["conv_dim"] == tiny_config["conv_dim"]
    assert len(list((work / "batched-float32").rglob("*_features.npz"))) == 2
    for d in ("float32", "bfloat16"):  # --no_store: one shard's analysis partial, no feature file
        partials = list((work / f"no-store-{d}").rglob("partial_*.npz"))
        assert [str(p) for p in partials] == [rows[no_store, d]["partial"]]
        assert not list((work / f"no-store-{d}").rglob("*_features.npz"))
    moments = rows[stats_dev, "float64"]["moments"]
    assert moments["frames"] == sum(frames(n) for n in samples)
    assert max(moments["mean"], moments["comoment"], moments["cka_abs"]) <= 1e-9
    assert all(c["ok"] for c in result["checks"].values()) and len(result["checks"]) == 3
    assert len(list((work / "library-float32").rglob("*_features.npz"))) == 2

    for text in ("# device CPU", "torch", "ISA", model, library, stats_dev, stats_cpu, "skipped: TF32",
                 "PASS device float32 == CPU float32", "PASS device float64 moments == LayerStats",
                 "PASS float32 batched == per utterance", batched, batched_lib, no_store):
        assert text in printed, text
    line = next(s for s in printed.splitlines() if s.startswith(model) and " float32 " in s)
    assert float(line.split()[-5]) == pytest.approx(rows[model, "float32"]["realtime_factor"], abs=0.051)  # .1f
