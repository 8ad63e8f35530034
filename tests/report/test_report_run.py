"""A real run (extract_features.py, then visualize_features.py, on the synthesized LibriSpeech-style folder with a
tiny checkpoint): report.html's run card, figures and notes describe that run. Expected values are computed here
from the audio files and the command lines (frame counts from the conv kernels/strides, seconds from the samples)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from tests.conftest import ROOT, check_analysis_exit
from tests.report.test_html import Page

pytestmark = pytest.mark.slow  # end-to-end: subprocess runs of the CLIs / the wrapper

KERNELS, STRIDES = (10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2)  # HuBERT's CNN (the tiny checkpoint keeps them)


def frames(n_samples: int) -> int:
    for kernel, stride in zip(KERNELS, STRIDES):
        n_samples = (n_samples - kernel) // stride + 1
    return n_samples


def cli(*args: str, cwd, analysis: Path | None = None) -> str:
    """Run a script; 0 expected, or for an analysis (``analysis``: its output folder) the README's exit rule."""
    out = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if analysis is None:
        assert out.returncode == 0, out.stderr[-3000:]
    else:
        check_analysis_exit(out.returncode, json.loads((analysis / "summary.json").read_text()))
    return out.stdout.strip()


def test_report_of_a_real_run_describes_it(tiny_hubert, audio_dir, tmp_path):
    extract = [str(ROOT / "extract_features.py"), "--audio_dir", str(audio_dir), "--model_name", str(tiny_hubert),
               "--save_dir", str(tmp_path / "out"), "--layers", "0,2", "--no_progress"]
    cli(*extract, cwd=tmp_path)
    folder = cli(*extract, "--print_output_dir", cwd=tmp_path)
    analysis = tmp_path / "analysis"
    cli(str(ROOT / "visualize_features.py"), "--features_dir", folder, "--output_dir", str(analysis),
        "--num_files", "0", "--color_by", "speaker", "--seed", "3", cwd=tmp_path, analysis=analysis)

    page = Page()
    page.feed((analysis / "report.html").read_text(encoding="utf-8"))
    card = page.card
    samples = [sf.info(p).frames for p in sorted(audio_dir.rglob("*.*"))]
    n_frames = sum(frames(n) for n in samples)
    assert card["Model"].startswith(f"{tiny_hubert} (revision ")
    assert card["Layers"].startswith("L0, L2 — ")
    assert card["Data"].startswith(f"4 files analysed, {n_frames:,} frames (≈ {n_frames / 50:.1f} s of audio: L0 "
                                   f"at 50 frames/s)")
    assert (f"the extraction: 4 of 4 files complete (4 written, 0 already complete), 0 failed, "
            f"{sum(samples) / 16000:.1f} s of audio computed in this run") in card["Data"]
    assert card["Seeds"].startswith("analysis seed 3 ")
    assert "color_by speaker" in card["Analysis"] and "all files" in card["Analysis"]
    extraction_line, analysis_line = card["Commands"].split("\n")
    assert extraction_line.startswith("extraction: ") and "--layers 0,2" in extraction_line
    assert analysis_line.startswith("analysis: ") and "--color_by speaker --seed 3" in analysis_line
    assert card["Settings"].startswith("waveform normalisation off")  # the tiny checkpoint: do_normalize False

    summary = json.loads((analysis / "summary.json").read_text())
    # no {model}-random_init sibling: said once, in the card, the notes and summary.json, with where it was looked for
    sibling = Path(folder).resolve()
    sibling = sibling.parent.with_name(sibling.parent.name + "-random_init") / sibling.name
    note = (f"no random-initialisation control: looked for {sibling}; extract one with extract_features.py "
            f"--random_init (same settings and files) to draw the dashed lines")
    assert card["Control"].startswith("none in this run (see the notes)")
    assert summary["notes"].count(note) == 1 and page.items.count(note) == 1
    assert "cca_mel" in summary["unavailable"]  # extracted without --fbank
    for measure, reason in summary["unavailable"].items():
        assert f"{measure} not computed: {reason}" in page.items
    assert all(note in page.items for note in summary["notes"])
    assert len(page.images) == len(summary["figures"]) + 1 >= 7  # the key figure also opens the page
    assert {"Layer similarity: debiased CKA", "PCA with frames as points", "t-SNE of sampled frames"} <= set(
        page.headings)
    # linear CKA is the debiased heatmap's second tab (report.FIGURE_TABS), not a heading of its own
    assert "Shown: Layer similarity: linear CKA." in (analysis / "report.html").read_text(encoding="utf-8")
