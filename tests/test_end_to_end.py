"""extract_features.py → visualize_features.py on the same folder; the analysis' numbers against numpy on frames
computed by transformers directly (frame folders: the hidden states; local folders: each conv block's output,
pooled in time by an explicit window loop)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from layerwise.cli import visualize
from layerwise.contract import layout
from tests.conftest import ROOT, check_analysis_exit

pytestmark = pytest.mark.slow  # end-to-end: subprocess runs of the CLIs / the wrapper

EXTRACT = [sys.executable, str(ROOT / "extract_features.py")]


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Gram-matrix form (Kornblith et al. 2019): HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)), K = XXᵀ, centred."""
    n = len(x)
    h = np.eye(n) - 1.0 / n
    k, l = h @ x @ x.T @ h, h @ y @ y.T @ h
    return float(np.sum(k * l) / np.sqrt(np.sum(k * k) * np.sum(l * l)))


def extract(audio_dir: Path, save_dir: Path, model: Path, *extra: str) -> Path:
    """Run the extraction CLI; returns the folder it wrote (asked with --print_output_dir)."""
    args = ["--audio_dir", str(audio_dir), "--save_dir", str(save_dir), "--model_name", str(model), "--device", "cpu",
            "--no_progress", *extra]
    done = subprocess.run(EXTRACT + args, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    rep_type = extra[extra.index("--rep_type") + 1] if "--rep_type" in extra else "contextualized"
    return layout.output_folder(save_dir, str(model), "dev-clean", 1, rep_type=rep_type)


def analyse(folder: Path, out: Path) -> dict:
    """The analysis CLI's entry point in-process (the subprocess path is tested in test_analyze.py)."""
    code = visualize.main(["--features_dir", str(folder), "--output_dir", str(out), "--num_files", "0",
                           "--max_points", "60", "--similarity", "cka"])
    summary = json.loads((out / "summary.json").read_text())
    check_analysis_exit(code, summary)
    return summary


def reference_frames(model_dir: Path, audio_dir: Path, local: bool) -> tuple[list[str], dict[str, list[np.ndarray]]]:
    """Stems in file-name order and, per key, each file's frames from transformers directly (float64)."""
    import torch
    from transformers import HubertModel

    model = HubertModel.from_pretrained(model_dir).eval()
    paths = sorted(p for p in audio_dir.rglob("*") if p.suffix in (".flac", ".wav"))
    paths.sort(key=lambda p: f"{p.stem}_features.npz")
    frames: dict[str, list[np.ndarray]] = {}
    with torch.no_grad():
        for path in paths:
            wave = torch.from_numpy(sf.read(path, dtype="float32")[0])[None]  # do_normalize False: raw samples
            if local:
                hidden = wave[:, None]
                for k, layer in enumerate(model.feature_extractor.conv_layers):
                    hidden = layer(hidden)
                    frames.setdefault(f"conv_{k}", []).append(hidden[0].T.double().numpy())
            else:
                states = model(wave, output_hidden_states=True).hidden_states
                for k, state in enumerate(states):
                    frames.setdefault(f"layer_{k}", []).append(state[0].double().numpy())
    return [p.stem for p in paths], frames


def window_mean(fine: np.ndarray, kernel: int, stride: int, n_coarse: int) -> np.ndarray:
    """Coarse frame j = mean of fine frames j·stride … j·stride + kernel − 1, for every window inside ``fine``."""
    count = min(n_coarse, (len(fine) - kernel) // stride + 1)
    return np.stack([fine[j * stride: j * stride + kernel].mean(axis=0) for j in range(count)])


def test_frame_folder_equals_numpy_on_transformers_hidden_states(tiny_hubert, audio_dir, tmp_path):
    folder = extract(audio_dir, tmp_path / "out", tiny_hubert)
    summary = analyse(folder, tmp_path / "vis")
    stems, frames = reference_frames(tiny_hubert, audio_dir, local=False)
    x_all = {k: np.concatenate(v) for k, v in frames.items()}
    assert summary["files"] == stems and summary["layers"] == ["layer_0", "layer_1", "layer_2"]
    assert summary["n_frames"] == len(x_all["layer_0"])
    for i, (key, x) in enumerate(x_all.items()):
        np.testing.assert_allclose(summary["mean"][key], x.mean(), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(summary["std"][key], x.std(), rtol=1e-4)
        eig = np.linalg.eigvalsh(np.cov(x.T, bias=True))[::-1]
        ratios = summary["pca_explained_variance_ratio"][key]
        np.testing.assert_allclose(ratios, (eig / eig.sum())[: len(ratios)], rtol=1e-4, atol=1e-7)
        needed = int(np.searchsorted(np.cumsum(eig / eig.sum()), 0.9 - 1e-12) + 1)
        assert summary["pca_components_90"][key] == needed
        for j, (other, y) in enumerate(x_all.items()):
            np.testing.assert_allclose(summary["cka"][i][j], linear_cka(x, y), rtol=1e-4)


def test_local_folder_each_layer_over_its_own_frames_pairs_pooled_in_time(tiny_hubert, audio_dir, tmp_path):
    """conv_0 (hop 5, field 10 samples) … conv_6 (hop 320, field 400): statistics over each block's own frames; CKA
    of two blocks over the finer one average-pooled onto the coarser one's frames (kernel (field_c − field_f)/hop_f
    + 1, stride hop_c/hop_f, counted here from the conv kernels and strides)."""
    folder = extract(audio_dir, tmp_path / "out", tiny_hubert, "--rep_type", "local")
    summary = analyse(folder, tmp_path / "vis")
    stems, frames = reference_frames(tiny_hubert, audio_dir, local=True)
    keys = [f"conv_{k}" for k in range(7)]
    assert summary["layers"] == keys and summary["files"] == stems
    kernels, strides = (10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2)
    hops = np.cumprod(strides)
    fields = [kernels[0] + sum((kernels[i] - 1) * hops[i - 1] for i in range(1, k + 1)) for k in range(7)]
    assert list(hops) == [5, 10, 20, 40, 80, 160, 320] and fields[-1] == 400
    for i, key in enumerate(keys):
        x = np.concatenate(frames[key])
        assert summary["n_frames_per_layer"][key] == len(x)
        assert summary["frame_rate"][key] == pytest.approx(16000 / hops[i])
        np.testing.assert_allclose(summary["mean"][key], x.mean(), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(summary["std"][key], x.std(), rtol=1e-4)
    with np.load(tmp_path / "vis" / "per_dim_stats.npz") as per_dim:
        np.testing.assert_allclose(per_dim["conv_0_var"], np.concatenate(frames["conv_0"]).var(axis=0), rtol=1e-4)
    for a, b in ((0, 6), (2, 3), (1, 5), (5, 6)):
        kernel, stride = (fields[b] - fields[a]) // hops[a] + 1, hops[b] // hops[a]
        pooled, coarse = [], []
        for fine_f, coarse_f in zip(frames[keys[a]], frames[keys[b]]):
            p = window_mean(fine_f, kernel, stride, len(coarse_f))
            pooled.append(p)
            coarse.append(coarse_f[: len(p)])
        x, y = np.concatenate(pooled), np.concatenate(coarse)
        assert summary["similarity_frames"][a][b] == len(x)
        np.testing.assert_allclose(summary["cka"][a][b], linear_cka(x, y), rtol=1e-4)
        np.testing.assert_allclose(summary["cka"][b][a], summary["cka"][a][b], rtol=1e-12)
    assert any("average-pooling the finer layer" in note for note in summary["notes"])
