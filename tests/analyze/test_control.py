"""Span analysis end to end: span-feature folders whose layers carry the label with known signal-to-noise, the
random-initialisation control (auto-detected, matched by stem, checked), summary.json/csv, figure, report, CLI."""

import csv
import json
import logging
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from layerwise.analyze import control
from layerwise.analyze import spans as span_step
from layerwise.analyze.run import run_analysis
from layerwise.contract import layout, store
from layerwise.errors import AnalysisError
from layerwise.measures import span
from layerwise.report import figures
from tests.report.test_html import Page

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, str(ROOT / "visualize_features.py")]
CLASSES = np.array(["AA", "K", "S", "T"])
PROBS = (0.4, 0.3, 0.2, 0.1)  # unequal, so the majority baseline (about 0.4) differs from 1/4
SNRS = (0.0, 0.3, 0.7, 2.0)  # layer_k = SNRS[k] * class_mean[label] + N(0, 1); layer_0 is pure noise
CONTROL_SNRS = (0.0, 0.1, 0.1, 0.2)
DIM = 8
KEYS = [f"layer_{k}" for k in range(len(SNRS))]
SPLITS = 2


def write_spans(folder, stems, *, snrs=SNRS, dim=DIM, random_init=False, seed=0, label_seed=1):
    """One span file per stem: 15-24 segments, labels drawn with PROBS from a per-stem generator (the same labels
    for the trained and the control folder), layer k = snrs[k] * class mean + unit noise. Returns
    stem -> (layer -> (n, dim) float32, labels (n,))."""
    folder.mkdir(parents=True, exist_ok=True)
    means = np.random.default_rng(123).normal(size=(len(CLASSES), dim))
    rng = np.random.default_rng(seed)
    meta = {"model_name": "synthetic", "rep_type": "contextualized", "span": "phone", "random_init": random_init,
            **({"seed": seed, "model_revision": "r-ctrl"} if random_init else {})}
    written = {}
    for stem in stems:
        lab_rng = np.random.default_rng([label_seed, int(stem.split("-")[1])])
        idx = lab_rng.choice(len(CLASSES), size=int(lab_rng.integers(15, 25)), p=PROBS)
        arrays = {f"layer_{k}": (snr * means[idx] + rng.normal(size=(len(idx), dim))).astype(np.float32)
                  for k, snr in enumerate(snrs)}
        bounds = np.arange(len(idx) + 1) * 0.08
        store.write_features(store.feature_path(folder, stem), arrays, meta, labels=CLASSES[idx],
                             intervals=np.stack([bounds[:-1], bounds[1:]], axis=1))
        written[stem] = (arrays, CLASSES[idx])
    return written


def stems(count, start=0):
    return [f"utt-{i:02d}" for i in range(start, start + count)]


@pytest.fixture
def folders(tmp_path):
    """Trained folder .../model/split with 30 utterances, control .../model-random_init/split lacking utt-00 and
    holding an extra utt-99 (not analysed)."""
    trained = tmp_path / "model" / "split"
    control = tmp_path / "model-random_init" / "split"
    write_spans(trained, stems(30))
    control_data = write_spans(control, stems(29, start=1) + ["utt-99"], snrs=CONTROL_SNRS, random_init=True, seed=5)
    return trained, control, control_data


@pytest.mark.slow
def test_measures_rise_with_snr_and_control_is_detected_and_summarised(folders, tmp_path, caplog):
    trained, control, control_data = folders
    out = tmp_path / "out"
    caplog.set_level(logging.INFO, logger="layerwise")
    run_analysis(features_dir=trained, output_dir=out, num_files=0, max_points=40, seed=3, probe_splits=SPLITS)
    summary = json.loads((out / "summary.json").read_text())
    acc, pw, base = summary["probe_accuracy"], summary["pwcca"], summary["probe_majority_baseline"]
    assert list(acc) == KEYS and list(pw) == KEYS and list(summary["mi"]) == KEYS
    assert 0.3 < base < 0.55
    assert all(acc[a] < acc[b] for a, b in pairwise(KEYS)), acc
    assert all(pw[a] < pw[b] for a, b in pairwise(KEYS)), pw
    assert abs(acc["layer_0"] - base) < 0.1 and abs(pw["layer_0"]) < 0.15  # pure noise: at the baseline
    assert acc["layer_3"] > base + 0.4 and pw["layer_3"] > 0.7

    # The control: auto-detected sibling, the analysed stems it also has (utt-01..29, not utt-99), same seed/splits.
    ctrl = summary["random_init"]
    assert {"probe_accuracy", "probe_majority_baseline", "pwcca", "mi"} <= set(ctrl)
    assert ctrl["n_files"] == 29 and Path(ctrl["features_dir"]) == control.resolve()
    order = stems(29, start=1)
    direct = span.span_measures(
        {k: np.concatenate([control_data[s][0][k] for s in order]) for k in KEYS},
        np.concatenate([control_data[s][1] for s in order]),
        np.concatenate([np.full(len(control_data[s][1]), s) for s in order]), seed=3, n_splits=SPLITS)
    for key in ("probe_accuracy", "pwcca", "mi"):
        assert ctrl[key] == pytest.approx(direct.values[key], abs=1e-9)
    assert ctrl["probe_majority_baseline"] == pytest.approx(direct.info["probe_majority_baseline"])
    # intervals, chance levels and test counts travel into summary.json (trained and control) and summary.csv
    for key in ("probe_accuracy", "pwcca", "mi"):
        assert ctrl[f"{key}_chance"] == pytest.approx(direct.chance[key], abs=1e-9)
        assert ctrl[f"{key}_n_test"] == direct.n_test[key]
        for layer, (low, high) in summary[f"{key}_ci"].items():
            assert low <= summary[key][layer] <= high
        assert set(summary[f"{key}_chance"]) == set(KEYS) and summary[f"{key}_n_test"] > 0
    assert summary["intervals"]["n_boot"] == 200 and summary["intervals"]["level"] == 0.95
    assert "bootstrap" in summary["intervals"]["methods"]["pwcca"]
    assert ctrl["pwcca"]["layer_3"] < pw["layer_3"] - 0.2  # the control carries less
    assert any("lacks 1 of the 30" in note for note in summary["notes"])

    # summary.csv columns, the figure and the report.
    with open(out / "summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["layer"] for r in rows] == KEYS
    for row in rows:
        assert float(row["probe_accuracy"]) == pytest.approx(acc[row["layer"]])
        assert float(row["pwcca"]) == pytest.approx(pw[row["layer"]])
        assert float(row["random_init_pwcca"]) == pytest.approx(ctrl["pwcca"][row["layer"]])
        assert float(row["probe_majority_baseline"]) == pytest.approx(base)
        assert float(row["pwcca_ci_low"]) <= float(row["pwcca"]) <= float(row["pwcca_ci_high"])
        assert float(row["random_init_pwcca_chance"]) == pytest.approx(ctrl["pwcca_chance"][row["layer"]])
    assert "span_measures.png" in summary["figures"]
    assert (out / "span_measures.png").read_bytes()[:4] == b"\x89PNG"
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 7 + 1 + 1 and page.count("How to read this") == 7 + 1
    assert "<th>random_init_probe_accuracy</th>" in page.replace("<wbr>", "") and "phone segments" in page

    # The control is visible: the log and the run card name its folder, its model and seed (from its files), and
    # how many utterances it shares; summary.json has the same; the caption explains the dashed lines.
    folder = control.resolve()
    assert f"random-init control: {folder} (29 of the 30 analysed utterances)" in caplog.text
    assert (ctrl["model_name"], ctrl["model_revision"], ctrl["seed"]) == ("synthetic", "r-ctrl", 5)
    parsed = Page()
    parsed.feed(page)
    assert parsed.card["Control"] == (f"{folder}: synthetic (revision r-ctrl), random initialisation seed 5; 29 of 30 "
                                      f"analysed utterances shared")
    assert figures.BY_NAME["span_measures.png"].control in page and figures.NO_CONTROL_CAPTION not in page
    assert not any(note.startswith("no random-initialisation control") for note in summary["notes"])


def no_control_shown(out, summary, note: str) -> None:
    """The run without a control says so once (a note in summary.json and report.html), the run card says none,
    and the span figure's caption describes no dashed line."""
    notes = [n for n in summary["notes"] if n.startswith("no random-initialisation control")]
    assert notes == [note]
    page = Page()
    html = (out / "report.html").read_text()
    page.feed(html)
    assert page.items.count(note) == 1 and page.card["Control"].startswith("none in this run (see the notes)")
    assert figures.NO_CONTROL_CAPTION in html and figures.BY_NAME["span_measures.png"].control not in html


@pytest.mark.slow
def test_control_none_and_frame_folders_have_no_random_init(folders, tmp_path):
    trained, _, _ = folders
    summary = run_analysis(features_dir=trained, output_dir=tmp_path / "o", num_files=0, max_points=20,
                           probe_splits=1, control_dir="none", layers="0,3")
    assert "random_init" not in summary and list(summary["pwcca"]) == ["layer_0", "layer_3"]
    no_control_shown(tmp_path / "o", summary, "no random-initialisation control: control_dir none was given; the "
                                              "figures show the analysed model only")
    assert control.resolve_control(trained, "auto").folder.resolve() == (trained.parents[1] / "model-random_init"
                                                                         / "split").resolve()
    # the path the note names is the one resolve_control looks at
    source = control.resolve_control(trained, "auto")
    assert layout.control_folder_of(trained) == source.folder == source.looked_for
    assert control.resolve_control(trained, None).folder is None
    assert control.resolve_control(tmp_path / "model-random_init" / "split", "auto").folder is None


@pytest.mark.parametrize("case, message", [
    ("fewer_layers", r"missing \['layer_3'\]"),
    ("other_dims", "has shape .*dim 8"),
    ("other_labels", "span labels differ"),
    ("trained_as_control", "not from a --random_init"),
    ("other_span", "span: 'word' vs 'phone'"),
    ("no_common_stems", "has none of the 30"),
    ("missing_dir", "does not exist"),
    ("itself", "analysed folder itself"),
])
def test_mismatched_control_is_a_clear_error(tmp_path, case, message):
    trained = tmp_path / "model" / "split"
    write_spans(trained, stems(30))
    control = tmp_path / "ctrl"
    if case == "fewer_layers":
        write_spans(control, stems(30), snrs=CONTROL_SNRS[:3], random_init=True)
    elif case == "other_dims":
        write_spans(control, stems(30), dim=6, random_init=True)
    elif case == "other_labels":
        write_spans(control, stems(30), random_init=True, label_seed=2)
    elif case == "trained_as_control":
        write_spans(control, stems(30), random_init=False)
    elif case == "other_span":
        write_spans(control, stems(30), random_init=True)
        path = store.feature_path(control, "utt-07")
        ff = store.read_features(path)
        store.write_features(path, ff.layers, {**ff.meta, "span": "word"}, labels=ff.labels, intervals=ff.intervals)
    elif case == "no_common_stems":
        write_spans(control, stems(5, start=50), random_init=True)
    elif case == "itself":
        control = trained
    with pytest.raises(AnalysisError, match=message):
        run_analysis(features_dir=trained, output_dir=tmp_path / "o", num_files=0, max_points=20,
                     control_dir=control)
    assert not (tmp_path / "o" / "summary.json").exists()  # stopped before writing anything


@pytest.mark.slow
def test_cli_detects_the_control_and_rejects_a_mismatched_one(folders, tmp_path):
    trained, _, _ = folders
    out = tmp_path / "cli"
    args = ["--features_dir", str(trained), "--num_files", "0", "--max_points", "20", "--layers", "0,3",
            "--probe_splits", "1", "--similarity", "cka"]
    done = subprocess.run(CLI + args + ["--output_dir", str(out)], capture_output=True, text=True, check=False,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["random_init"]["n_files"] == 29 and set(summary["random_init"]["pwcca"]) == {"layer_0", "layer_3"}
    assert summary["span_measures_info"]["n_splits"] == 1
    bad = tmp_path / "bad"
    write_spans(bad, stems(30), dim=5, random_init=True)
    done = subprocess.run(CLI + args + ["--output_dir", str(tmp_path / "cli2"), "--control_dir", str(bad)],
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 2 and "dim 8" in done.stderr and "Traceback" not in done.stderr


def word_like(n_utts=12, dim=32, seed=0):
    """A word-span-like set: 12 utterances of 6-10 words from a 40-word Zipf-ish vocabulary, so after dropping
    words seen once there are more canonical variates (classes - 1) than segments in a 2-utterance test part."""
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(40)])
    p = 1.0 / np.arange(1, 41)
    spans = span_step.SpanFeatures()
    means = rng.normal(size=(40, dim))
    for u in range(n_utts):
        idx = rng.choice(40, size=int(rng.integers(6, 11)), p=p / p.sum())
        spans.add(f"84-121123-{u:04d}", {"layer_0": rng.normal(size=(len(idx), dim)),
                                         "layer_1": means[idx] + 0.3 * rng.normal(size=(len(idx), dim))}, vocab[idx])
    return spans


def test_word_spans_of_12_utterances_give_every_measure():
    """Fewer held-out segments than canonical variates is valid input: PWCCA is computed and nothing is dropped."""
    spans = word_like()
    _features, labels, groups = spans.arrays()
    result, _notes = span_step.analyse(spans, None, seed=0, n_splits=3, unit="word")
    n_classes = result.info["span_measures_info"]["n_classes"]
    tests = [te for _, _, te in span.utterance_splits(groups[span.select_classes(labels, min_count=2,
                                                                                      max_classes=200)],
                                                          n_splits=3, seed=0)]
    assert min(len(te) for te in tests) < n_classes - 1  # the situation that used to fail
    assert result.unavailable == {} and result.control is None
    for name in ("probe_accuracy", "pwcca", "mi"):
        assert set(result.values[name]) == {"layer_0", "layer_1"}
    assert result.values["pwcca"]["layer_1"] > result.values["pwcca"]["layer_0"]
    assert result.values["probe_accuracy"]["layer_1"] > result.values["probe_accuracy"]["layer_0"]


def test_a_measure_that_fails_is_reported_and_the_others_stay(monkeypatch):
    def broken(*args, **kwargs):
        raise np.linalg.LinAlgError("SVD did not converge")

    monkeypatch.setattr(span, "pwcca_heldout", broken)
    result, notes = span_step.analyse(word_like(), None, seed=0, n_splits=2)
    assert "pwcca" not in result.values and result.unavailable["pwcca"].startswith("layer_0: LinAlgError: SVD")
    assert set(result.values["probe_accuracy"]) == {"layer_0", "layer_1"}
    assert set(result.values["mi"]) == {"layer_0", "layer_1"}
    assert not any("could not be computed" in n for n in notes)  # the reason travels in ``unavailable`` only
    # nothing computable at all (one class): every measure unavailable with the reason, no exception
    one = span_step.SpanFeatures()
    for u in range(4):
        one.add(f"s-{u}", {"layer_0": np.ones((3, 2))}, np.array(["a"] * 3))
    result, notes = span_step.analyse(one, None, seed=0, n_splits=2)
    assert set(result.unavailable) == {"probe_accuracy", "pwcca", "mi"} and result.values == {}
    assert "2 label classes" in result.unavailable["pwcca"]


@pytest.mark.slow
def test_without_a_sibling_control_the_note_names_where_it_was_looked_for(tmp_path):
    trained = tmp_path / "lonely" / "split"
    write_spans(trained, stems(12))
    out = tmp_path / "o"
    summary = run_analysis(features_dir=trained, output_dir=out, num_files=0, max_points=20, probe_splits=1,
                           layers="0,3", similarity="cka")
    expected = tmp_path.resolve() / "lonely-random_init" / "split"
    assert not expected.exists() and "random_init" not in summary
    no_control_shown(out, summary, f"no random-initialisation control: looked for {expected}; extract one with "
                                   f"extract_features.py --random_init (same settings and files) to draw the dashed "
                                   f"lines")
