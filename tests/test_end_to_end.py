"""extract_features.py → visualize_features.py on the same folder: summary.json equals numpy on the real frames."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from layerwise.extract import run_extraction
from tests.conftest import ROOT


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Gram-matrix form (Kornblith et al. 2019): HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)), K = XXᵀ, centred."""
    n = len(x)
    h = np.eye(n) - 1.0 / n
    k, l = h @ x @ x.T @ h, h @ y @ y.T @ h
    return float(np.sum(k * l) / np.sqrt(np.sum(k * k) * np.sum(l * l)))


def test_summary_equals_numpy_on_extracted_frames(tiny_hubert, audio_dir, tmp_path):
    run_extraction(audio_dir=audio_dir, save_dir=tmp_path / "out", model_name=str(tiny_hubert), device="cpu",
                   progress=False)
    folder = tmp_path / "out" / tiny_hubert.name / "librispeech_dev-clean_sample1"
    result = subprocess.run([sys.executable, str(ROOT / "visualize_features.py"), "--features_dir", str(folder),
                             "--output_dir", str(tmp_path / "vis"), "--num_files", "0", "--max_points", "100"],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "vis" / "summary.json").read_text())

    files = sorted(folder.glob("*_features.npz"))
    frames = {}  # layer -> concatenated real frames of every file, read straight from the npz files
    for path in files:
        with np.load(path, allow_pickle=False) as data:
            for key in ("layer_0", "layer_1", "layer_2"):
                frames.setdefault(key, []).append(data[key].astype(np.float64))
    frames = {k: np.concatenate(v) for k, v in frames.items()}
    lengths = {len(np.load(p)["layer_0"]) for p in files}
    assert len(lengths) == len(files)  # really different lengths

    assert summary["files"] == [p.name.removesuffix("_features.npz") for p in files]
    assert summary["layers"] == ["layer_0", "layer_1", "layer_2"]
    assert summary["n_frames"] == len(frames["layer_0"])
    for i, (key, x) in enumerate(frames.items()):
        np.testing.assert_allclose(summary["mean"][key], x.mean(), rtol=1e-5, atol=1e-12)
        np.testing.assert_allclose(summary["std"][key], x.std(), rtol=1e-5)
        eig = np.linalg.eigvalsh(np.cov(x.T, bias=True))[::-1]
        ratios = summary["pca_explained_variance_ratio"][key]
        np.testing.assert_allclose(ratios, (eig / eig.sum())[: len(ratios)], rtol=1e-5, atol=1e-9)
        for j, (other, y) in enumerate(frames.items()):
            np.testing.assert_allclose(summary["cka"][i][j], linear_cka(x, y), rtol=1e-5)
            cosine = np.sum(x * y) / np.sqrt(np.sum(x * x) * np.sum(y * y))
            np.testing.assert_allclose(summary["cosine"][i][j], cosine, rtol=1e-5)
