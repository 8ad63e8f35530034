"""Issue 20's done-when: on a synthesized LibriSpeech-style frame folder with a phone TextGrid per file, the analysis
writes pnmi, phone_purity, cluster_purity (and their per-K forms) and gender_probe_accuracy for every layer with
``_ci`` and ``_chance``; a word-span folder with a GloVe-format file written here gets cca_word_embedding the same
way; each new stage has its own wall_seconds entry."""

from __future__ import annotations

import json

import numpy as np
import pytest

from layerwise.analyze.run import run_analysis
from layerwise.contract import store
from tests.analyze.test_pnmi import META, STEMS, write_corpus

SPEAKERS = "; ID | SEX | SUBSET | MINUTES | NAME\n84 | F | dev | 1 | a\n174 | M | dev | 1 | b\n251 | F | dev | 1 | c\n"
LAYERS = ("layer_0", "layer_1")


def check_every_layer(summary: dict, names) -> None:
    for name in names:
        assert set(summary[name]) == set(LAYERS), name
        assert all(summary[name][k] is not None for k in LAYERS), name
        assert set(summary[f"{name}_ci"]) == set(LAYERS), name
        assert set(summary[f"{name}_chance"]) == set(LAYERS), name
        for key in LAYERS:
            low, high = summary[f"{name}_ci"][key]
            assert low <= summary[name][key] <= high


@pytest.mark.slow
def test_frame_folder_with_textgrids_writes_pnmi_and_gender_with_intervals_and_chance(tmp_path):
    folder, tg, _ = write_corpus(tmp_path)
    speakers = tmp_path / "SPEAKERS.TXT"
    speakers.write_text(SPEAKERS)
    out = tmp_path / "out"
    run_analysis(features_dir=folder, output_dir=out, num_files=0, max_points=30, similarity="cka",
                 control_dir="none", alignment_dir=tg, pnmi_clusters="8,16", pnmi_fit_frames=400, n_boot=20,
                 speakers_file=speakers)
    summary = json.loads((out / "summary.json").read_text())
    check_every_layer(summary, ("pnmi", "phone_purity", "cluster_purity"))
    # 3 speakers: one per part of each split, so no part holds both sexes and permuting them changes nothing
    assert set(summary["gender_probe_accuracy_ci"]) == set(LAYERS) and "gender_probe_accuracy_chance" not in summary
    assert "changes nothing" in summary["gender_probe_info"]["chance_undefined"]
    assert set(summary["pnmi_per_k"]) == {"8", "16"} and summary["pnmi_per_k"]["8"] == summary["pnmi"]
    assert set(summary["phone_purity_per_k"]["16"]) == set(LAYERS)
    assert summary["pnmi_info"]["k"] == [8, 16] and summary["pnmi_info"]["fit_frames_requested"] == 400
    assert summary["pnmi"]["layer_0"] > 0.95 and summary["pnmi"]["layer_1"] < 0.1
    assert set(summary["gender_probe_majority_baseline"]) == set(LAYERS)
    for key in ("pnmi", "phone_purity", "cluster_purity"):
        assert set(summary[f"{key}_per_k_ci"]) == set(summary[f"{key}_per_k_chance"]) == {"8", "16"}
    assert {"pnmi", "gender_probe"} <= set(summary["wall_seconds"])
    assert not {"pnmi", "gender_probe_accuracy"} & set(summary["unavailable"])


def write_word_folder(tmp_path):
    """Word-span files of :data:`STEMS`: 20 words per utterance from 12 words, layer_0 a linear map of the words'
    GloVe vectors (+ noise), layer_1 noise; and the GloVe file (one analysed word missing from it)."""
    rng = np.random.default_rng(5)
    words = [f"word{i}" for i in range(12)]
    vectors = {w: rng.normal(size=5) for w in words}
    glove = tmp_path / "glove.txt"
    glove.write_text("".join(f"{w} {' '.join(map(repr, v.tolist()))}\n" for w, v in vectors.items()
                             if w != "word11"))
    folder = tmp_path / "w" / "feat"
    folder.mkdir(parents=True)
    mix = rng.normal(size=(5, 8))
    for stem in STEMS:
        labels = rng.choice(words, size=20)
        y = np.stack([vectors[w] for w in labels])
        arrays = {"layer_0": (y @ mix + 0.01 * rng.normal(size=(20, 8))).astype(np.float32),
                  "layer_1": rng.normal(size=(20, 8)).astype(np.float32)}
        intervals = np.stack([np.arange(20) * 0.3, np.arange(20) * 0.3 + 0.25], axis=1)
        store.write_features(store.feature_path(folder, stem), arrays, {**META, "span": "word"},
                             labels=labels, intervals=intervals)
    return folder, glove


@pytest.mark.slow
def test_word_folder_with_glove_file_writes_word_embedding_cca(tmp_path):
    folder, glove = write_word_folder(tmp_path)
    out = tmp_path / "out"
    run_analysis(features_dir=folder, output_dir=out, num_files=0, max_points=30, similarity="cka",
                 control_dir="none", word_embeddings=glove, n_boot=20)
    summary = json.loads((out / "summary.json").read_text())
    check_every_layer(summary, ("cca_word_embedding",))
    assert summary["cca_word_embedding"]["layer_0"] > 0.95
    info = summary["cca_word_embedding_info"]
    assert info["n_words_missing"] == 1 and info["missing_words"] == ["word11"]
    assert "word_embedding_cca" in summary["wall_seconds"]


@pytest.mark.slow
def test_summary_json_writes_cka_with_previous_and_notes_on_flags_and_few_resamples(tmp_path):
    folder, _, _ = write_corpus(tmp_path)
    out = tmp_path / "out"
    run_analysis(features_dir=folder, output_dir=out, num_files=0, max_points=30, similarity="cka",
                 control_dir="none", pnmi_clusters="8", pnmi_fit_frames=400, n_boot=5)
    summary = json.loads((out / "summary.json").read_text())
    cka, debiased = np.array(summary["cka"], float), np.array(summary["cka_debiased"], float)
    assert summary["cka_with_previous"]["layer_0"] is None and summary["cka_with_previous_debiased"]["layer_0"] is None
    assert summary["cka_with_previous"]["layer_1"] == pytest.approx(cka[1, 0], abs=1e-12)
    assert summary["cka_with_previous_debiased"]["layer_1"] == pytest.approx(debiased[1, 0], abs=1e-12)
    assert summary["reasons"]["cka_with_previous"]["layer_0"] == "the first layer: no previous one"
    assert ("--pnmi_clusters and --pnmi_fit_frames given without --alignment_dir: PNMI and purity need each file's "
            "phones, so they are not computed (give --alignment_dir with the frame folder's alignments)"
            in summary["notes"])
    assert any(n.startswith("n_boot 5: a 95 % interval from fewer than 50 resamples is rough") for n in summary["notes"])
    assert "pnmi" not in summary


def test_a_huge_n_boot_is_refused_as_a_typo():
    from layerwise.analyze.options import AnalysisOptions
    from layerwise.errors import UsageError

    with pytest.raises(UsageError, match="n_boot=100001 must be 0 .* or an int from 2 to 100000"):
        AnalysisOptions(features_dir="f", output_dir="o", n_boot=100_001)
    assert AnalysisOptions(features_dir="f", output_dir="o", n_boot=100_000).n_boot == 100_000


@pytest.mark.slow
def test_word_embeddings_make_cca_word_embedding_requested_so_a_failure_exits_1(tmp_path):
    from layerwise.cli.visualize import main

    folder, _ = write_word_folder(tmp_path)
    const = tmp_path / "const.txt"
    const.write_text("".join(f"word{i} 1 1 1 1 1\n" for i in range(12)))  # one vector: CCA undefined
    out = tmp_path / "out"
    code = main(["--features_dir", str(folder), "--output_dir", str(out), "--num_files", "0", "--max_points", "30",
                 "--control_dir", "none", "--n_boot", "0", "--no_progress", "--word_embeddings", str(const)])
    summary = json.loads((out / "summary.json").read_text())
    assert "cca_word_embedding" in summary["requested_measures"] and "cca_word_embedding" in summary["unavailable"]
    assert code == 1
