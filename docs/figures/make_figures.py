"""Rebuild the example figures in docs/figures/ from a small synthetic run (no download, a few minutes on 2 cores).

    python docs/figures/make_figures.py            # from the repository root, in the project's environment

A tiny random HuBERT-style checkpoint with 12 transformer layers (hidden size 48) is saved to a temporary folder;
12 synthetic utterances (3 speakers × 4, LibriSpeech-style names ``{speaker}-{chapter}-{utt}``) are built from
"phones" (harmonic tones whose partials depend on the phone and whose pitch depends on the speaker) with a TextGrid
per utterance. The script then runs the command-line tools as a user would: extract_features.py for frames (with
--fbank) and phone spans, each also with --random_init (the control), then visualize_features.py on both folders
(the frame folder with the TextGrids as --alignment_dir and two K of --pnmi_clusters, so PNMI and purity are drawn),
and copies one figure of each kind here as an optimised PNG (< 300 kB), plus pnmi.png (the PNMI/purity panels of the
frame analysis alone, drawn from its summary.json) and the top of report.html as headless Chromium shows it (when
``chromium`` is installed). Tiny random model, synthesized audio: the figures show the layout, not real numbers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
RATE = 16000
PHONES = {"AA": (1.0, 2.1, 3.3), "IY": (1.0, 3.9, 5.2), "S": (7.0, 9.5, 11.0), "M": (1.0, 1.5, 2.0),
          "K": (4.0, 6.0, 8.5)}  # partials as multiples of the speaker's pitch
SPEAKERS = {"84": 110.0, "174": 180.0, "1272": 240.0}  # pitch in Hz
WORDS = (("AA", "M"), ("S", "IY"), ("M", "AA", "K"), ("M", "IY", "K"))  # AA/IY in one context: ABX triphones
PHONE_S = 0.12  # seconds per phone
FROM_FRAMES = {  # figure in docs/figures/ <- figure of the frame analysis
    "feature_statistics.png": "feature_statistics.png", "layer_similarity_cka.png": "layer_similarity_cka.png",
    "layer_similarity_cosine.png": "layer_similarity_cosine.png", "pca.png": "pca.png", "tsne.png": "tsne.png",
    "variance_distribution.png": "variance_distribution.png",
    "what_each_layer_encodes.png": "what_each_layer_encodes.png"}
FROM_SPANS = {"span_measures.png": "span_measures.png", "tsne_phones.png": "tsne.png"}
MAX_BYTES = 300_000
PNMI_CLUSTERS = "8,16"  # two K (~900 labelled frames in the corpus): one line per K in the PNMI panels
UNITS = ("pnmi", "phone_purity", "cluster_purity")  # the measures of pnmi.png


def save_checkpoint(folder: Path) -> None:
    import torch
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    config = HubertConfig(hidden_size=48, num_hidden_layers=12, num_attention_heads=4, intermediate_size=96,
                          conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        HubertModel(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=False, return_attention_mask=False).save_pretrained(folder)


def write_corpus(audio: Path, grids: Path) -> None:
    """3 speakers × 4 utterances of 3 words each, with a TextGrid (words, phones) per utterance."""
    import soundfile as sf
    from praatio import textgrid
    from praatio.data_classes.interval_tier import IntervalTier

    rng = np.random.default_rng(0)
    for speaker, pitch in SPEAKERS.items():
        for utt in range(4):
            stem = f"{speaker}-1000-{utt:04d}"
            pieces, words, phones, t = [np.zeros(int(0.1 * RATE))], [], [], 0.1
            for w in range(3):
                word = WORDS[(utt + w) % len(WORDS)]
                start = t
                for phone in word:
                    n = int(PHONE_S * RATE)
                    time = np.arange(n) / RATE
                    wave = sum(np.sin(2 * np.pi * pitch * k * time) / (i + 1) for i, k in enumerate(PHONES[phone]))
                    pieces.append(0.2 * wave * np.hanning(n) + 0.01 * rng.standard_normal(n))
                    phones.append((t, t + PHONE_S, phone))
                    t += PHONE_S
                words.append((start, t, "".join(word).lower()))
            pieces.append(np.zeros(int(0.1 * RATE)))
            samples = np.concatenate(pieces).astype(np.float32)
            path = audio / speaker / "1000" / f"{stem}.flac"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, samples, RATE)
            grid = textgrid.Textgrid()
            end = len(samples) / RATE
            grid.addTier(IntervalTier("words", words, 0.0, end))
            grid.addTier(IntervalTier("phones", phones, 0.0, end))
            grids.mkdir(parents=True, exist_ok=True)
            grid.save(str(grids / f"{stem}.TextGrid"), format="long_textgrid", includeBlankSpaces=True)


def run(*args: str) -> str:
    out = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"{' '.join(args[:1])} exited {out.returncode}:\n{out.stderr[-3000:]}")
    return out.stdout.strip()


def optimised_copy(source: Path, target: Path) -> None:
    """A 256-colour PNG of ``source`` (the figures use few colours), refused above MAX_BYTES."""
    from PIL import Image

    image = Image.open(source).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)
    if target.stat().st_size > MAX_BYTES:
        raise SystemExit(f"{target} is {target.stat().st_size:,} bytes (> {MAX_BYTES:,})")


def pnmi_figure(summary_path: Path, target: Path) -> None:
    """The PNMI / purity panels of an analysis alone (every K, bands, chance, the control dashed), drawn by the
    report's own functions from its summary.json."""
    from layerwise.report import figures, plots

    s = json.loads(summary_path.read_text())
    runs = {"trained": s, "random init": s.get("random_init") or {}}
    measures = {run: {k: r[k] for k in UNITS if k in r} for run, r in runs.items()}
    bands = {run: ({k: r[f"{k}_ci"] for k in UNITS if f"{k}_ci" in r},
                   {k: r[f"{k}_chance"] for k in UNITS if f"{k}_chance" in r}) for run, r in runs.items()}
    per_k = {run: figures.per_k_of(r, *bands[run]) for run, r in runs.items()}
    plots.what_each_layer_encodes(s["layers"], measures["trained"], measures["random init"] or None, target,
                                  subtitle=f"{Path(s['model_name']).name}: {s['n_frames']:,} frames (tiny random "
                                           "model, synthesized audio: the layout, not real numbers)",
                                  bands=bands, model="tiny model", per_k=per_k)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model, audio, grids, save = tmp / "hubert-tiny-12", tmp / "audio", tmp / "grids", tmp / "features"
        save_checkpoint(model)
        write_corpus(audio, grids)
        common = ["extract_features.py", "--audio_dir", str(audio), "--model_name", str(model), "--save_dir",
                  str(save), "--no_progress"]
        folders = {}
        for span in ("frame", "phone"):
            extra = ["--fbank"] if span == "frame" else ["--span", "phone", "--alignment_dir", str(grids)]
            for control in ([], ["--random_init"]):
                run(*common, *extra, *control)
            folders[span] = run(*common, *extra, "--print_output_dir")
        for span, color_by, extra in (("frame", "speaker", ["--alignment_dir", str(grids), "--pnmi_clusters",
                                                            PNMI_CLUSTERS]), ("phone", "label", [])):
            run("visualize_features.py", "--features_dir", folders[span], "--output_dir", str(tmp / span),
                "--num_files", "0", "--color_by", color_by, "--no_progress", *extra)
        pnmi_figure(tmp / "frame" / "summary.json", tmp / "pnmi.png")
        optimised_copy(tmp / "pnmi.png", HERE / "pnmi.png")
        print(f"{HERE / 'pnmi.png'}: {(HERE / 'pnmi.png').stat().st_size:,} bytes")
        for names, span in ((FROM_FRAMES, "frame"), (FROM_SPANS, "phone")):
            for target, source in names.items():
                optimised_copy(tmp / span / source, HERE / target)
                print(f"{HERE / target}: {(HERE / target).stat().st_size:,} bytes")
        browser = shutil.which("chromium") or shutil.which("chromium-browser")
        if browser:  # the top of report.html as a browser shows it
            shot = tmp / "report.png"
            subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                            "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp / 'profile'}",
                            f"--screenshot={shot}", "--window-size=1200,1100",
                            (tmp / "frame" / "report.html").as_uri()], check=True, capture_output=True, cwd=tmp)
            optimised_copy(shot, HERE / "report_top.png")
            print(f"{HERE / 'report_top.png'}: {(HERE / 'report_top.png').stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
