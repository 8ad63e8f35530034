"""analyze/pnmi.py: a synthesized frame folder with phone TextGrids; a layer equal to the phone identity gives
PNMI ≈ 1, a noise layer ≈ 0; frames in silence or without a phone are excluded and counted as a loop counts them."""

from __future__ import annotations

import numpy as np
import pytest

from layerwise.analyze import pnmi as stage
from layerwise.analyze.options import AnalysisOptions
from layerwise.contract import store
from tests.conftest import write_textgrid

PHONES = ("AA", "B", "S", "IY")
STEMS = [f"{spk}-{chapter}-{u:04d}" for spk, chapter in (("84", "121123"), ("174", "50561"), ("251", "118436"))
         for u in range(3)]
# one frame every 320 samples, 400 wide: centres (i·320 + 200) / 16000 s
META = {"model_name": "synthetic", "rep_type": "contextualized", "span": "frame", "sample_rate": 16000,
        "model_config": {"conv_kernel": [400], "conv_stride": [320]}}


def utterance(rng):
    """(start, end, label) intervals on a 10 ms grid: phones (stress digit on AA), one silence, one gap; end s."""
    out, t = [], 0
    for k in range(20):
        if k == 10:
            out.append((t / 100, (t + 12) / 100, "sil"))
            t += 12
        if k == 15:
            t += 9  # a gap: no interval at all
        dur = int(rng.integers(6, 13))
        label = PHONES[int(rng.integers(len(PHONES)))]
        out.append((t / 100, (t + dur) / 100, label + ("1" if label == "AA" else "")))
        t += dur
    return out, t / 100


def phone_at(intervals, t):
    """The interval label holding time t by a loop ("" none)."""
    for start, stop, label in intervals:
        if start <= t < stop:
            return label
    return ""


def write_corpus(tmp_path):
    """Folder ``m/feat`` (layer_0: phone identity one-hot × 5 + 0.01 noise; layer_1: noise) and TextGrids ``tg``;
    returns (folder, tg, counts {"scored", "silence", "no_phone"} counted by a loop)."""
    rng = np.random.default_rng(0)
    folder, tg = tmp_path / "m" / "feat", tmp_path / "tg"
    folder.mkdir(parents=True)
    tg.mkdir()
    counts = {"scored": 0, "silence": 0, "no_phone": 0}
    for i, stem in enumerate(STEMS):
        intervals, end = utterance(np.random.default_rng(i))
        write_textgrid(tg / f"{stem}.TextGrid", {"phones": intervals}, end + 0.1)
        n = int((end * 16000 - 400) // 320) + 1
        labels = [phone_at(intervals, (f * 320 + 200) / 16000) for f in range(n)]
        onehot = np.zeros((n, 8))
        for f, label in enumerate(labels):
            kind = "no_phone" if label == "" else "silence" if label == "sil" else "scored"
            counts[kind] += 1
            if kind == "scored":
                onehot[f, PHONES.index(label.rstrip("1"))] = 5.0
        arrays = {"layer_0": (onehot + 0.01 * rng.normal(size=(n, 8))).astype(np.float32),
                  "layer_1": rng.normal(size=(n, 8)).astype(np.float32)}
        store.write_features(store.feature_path(folder, stem), arrays, META)
    return folder, tg, counts


def test_planted_phone_layer_gives_pnmi_one_and_noise_near_zero_with_exact_counts(tmp_path):
    folder, tg, counts = write_corpus(tmp_path)
    options = AnalysisOptions(features_dir=folder, output_dir=tmp_path / "out", alignment_dir=tg,
                              pnmi_clusters="8,4", pnmi_fit_frames=600, n_boot=50, num_files=0)
    labels = stage._read_labels(options, STEMS)
    assert labels.phones == sorted(PHONES)
    paths = {s: store.feature_path(folder, s) for s in STEMS}
    family = stage.score(paths, labels, ["layer_0", "layer_1"], META, options)
    assert family.values["pnmi"]["layer_0"] == pytest.approx(1.0, abs=1e-9)
    assert family.values["phone_purity"]["layer_0"] == pytest.approx(1.0, abs=1e-9)
    assert family.values["pnmi"]["layer_1"] < 0.05
    info = family.info[stage.INFO_KEY]
    assert info["k"] == [8, 4] and info["fit_frames_requested"] == 600
    assert info["frames_scored"] == {"layer_0": counts["scored"], "layer_1": counts["scored"]}
    assert info["frames_excluded"]["layer_0"] == {"no_phone": counts["no_phone"], "silence": counts["silence"]}
    assert counts["no_phone"] > 0 and counts["silence"] > 0
    assert set(family.info["pnmi_per_k"]) == {"8", "4"}
    assert family.info["pnmi_per_k"]["8"] == family.values["pnmi"]
    for name in ("pnmi", "phone_purity", "cluster_purity"):
        for key in ("layer_0", "layer_1"):
            low, high = family.intervals[name][key]
            assert low <= family.values[name][key] <= high
            assert key in family.chance[name]
    assert family.chance["pnmi"]["layer_0"] < 0.05  # the permuted labels carry no phone information


def test_the_fit_sample_does_not_depend_on_the_order_files_arrive_in(tmp_path):
    folder, tg, _ = write_corpus(tmp_path)
    options = AnalysisOptions(features_dir=folder, output_dir=tmp_path / "out", alignment_dir=tg,
                              pnmi_clusters="4", pnmi_fit_frames=300, num_files=0)
    labels = stage._read_labels(options, STEMS)
    frames = stage._Frames(labels, options, 16000)
    grids = stage._grids(META, ["layer_1"])
    paths = {s: store.feature_path(folder, s) for s in STEMS}
    forward, used = stage._fit_sample(paths, ["layer_1"], grids, frames, options, None)
    backward, _ = stage._fit_sample(dict(reversed(list(paths.items()))), ["layer_1"], grids, frames, options, None)
    np.testing.assert_array_equal(forward["layer_1"], backward["layer_1"])
    # at most 100 labelled frames per file (FIT_FRAMES_PER_FILE; these files hold fewer): only some files are read
    assert len(forward["layer_1"]) == 300 and 3 <= len(used) < len(STEMS)


def test_every_k_gets_its_interval_and_chance_and_the_first_k_is_the_measure(tmp_path):
    folder, tg, _ = write_corpus(tmp_path)
    options = AnalysisOptions(features_dir=folder, output_dir=tmp_path / "out", alignment_dir=tg,
                              pnmi_clusters="8,4", pnmi_fit_frames=600, n_boot=30, num_files=0)
    labels = stage._read_labels(options, STEMS)
    family = stage.score({s: store.feature_path(folder, s) for s in STEMS}, labels, ["layer_0", "layer_1"], META,
                         options)
    for name in ("pnmi", "phone_purity", "cluster_purity"):
        ci, chance = family.info[f"{name}_per_k_ci"], family.info[f"{name}_per_k_chance"]
        assert set(ci) == set(chance) == {"8", "4"}
        assert ci["8"] == {k: list(v) for k, v in family.intervals[name].items()}
        assert chance["8"] == family.chance[name]
        for key in ("layer_0", "layer_1"):
            low, high = ci["4"][key]
            assert 0.0 <= low <= family.info[f"{name}_per_k"]["4"][key] <= high <= 1.0
    assert family.info["pnmi_per_k_chance"]["4"]["layer_0"] < 0.05


def test_one_aligned_file_says_why_there_is_no_interval_and_large_k_gets_a_note(tmp_path):
    folder, tg, counts = write_corpus(tmp_path)
    stem = STEMS[0]
    options = AnalysisOptions(features_dir=folder, output_dir=tmp_path / "out", alignment_dir=tg,
                              pnmi_clusters="8", pnmi_fit_frames=100, n_boot=20, num_files=0)
    labels = stage._read_labels(options, STEMS)
    family = stage.score({stem: store.feature_path(folder, stem)}, labels, ["layer_0"], META, options)
    scored = family.info[stage.INFO_KEY]["frames_scored"]["layer_0"]
    assert "pnmi" in family.values and "pnmi" not in family.intervals and "pnmi" not in family.methods
    assert ("PNMI: no interval for pnmi, phone_purity, cluster_purity on layer_0: 1 utterance(s) scored: the "
            "interval resamples utterances and needs at least 2 (add alignments of more analysed files)"
            in family.notes)
    assert not any("K=8 clusters" in n for n in family.notes)  # 8 · 10 ≤ scored frames of one file
    k = scored // 10 + 1  # K > n / 10: the MI rule
    options = AnalysisOptions(features_dir=folder, output_dir=tmp_path / "out", alignment_dir=tg,
                              pnmi_clusters=str(k), pnmi_fit_frames=scored, n_boot=0, num_files=0)
    family = stage.score({stem: store.feature_path(folder, stem)}, labels, ["layer_0"], META, options)
    assert any(n.startswith(f"PNMI: K={k} clusters for {scored} scored frames") for n in family.notes)
    assert counts["scored"] > scored


def test_too_few_fit_frames_advise_more_files_or_fewer_clusters_not_more_fit_frames(tmp_path):
    folder, tg, _ = write_corpus(tmp_path)
    stem = STEMS[0]
    options = AnalysisOptions(features_dir=folder, output_dir=tmp_path / "out", alignment_dir=tg,
                              pnmi_clusters="500", pnmi_fit_frames=1000, n_boot=0, num_files=0)
    labels = stage._read_labels(options, STEMS)
    family = stage.score({stem: store.feature_path(folder, stem)}, labels, ["layer_0"], META, options)
    reason = family.unavailable["pnmi"]
    assert "analyse more files or lower --pnmi_clusters" in reason and "raise" not in reason
