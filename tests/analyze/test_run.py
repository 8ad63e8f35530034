"""End-to-end analysis runs on synthetic feature folders: numbers against direct numpy, outputs, bad input, memory."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from sklearn.decomposition import PCA

from layerwise.analyze.run import run_analysis, select_files
from layerwise.contract import store
from layerwise.errors import LayerwiseError

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, str(ROOT / "visualize_features.py")]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FIGURES = ["feature_statistics.png", "layer_similarity_cka.png", "layer_similarity_cosine.png", "pca.png",
           "tsne.png", "variance_distribution.png"]


def write_folder(folder, lengths, *, n_layers=3, dim=6, prefix="layer", seed=0, labels=False, meta=None):
    """Files ``utt-00..`` whose layers are noisy maps of each other (layer k = tanh-chain), offset per file."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays_by_stem = {}
    for i, t in enumerate(lengths):
        h = rng.normal(size=(t, dim)) + i
        arrays = {}
        for k in range(n_layers):
            h = np.tanh(h @ rng.normal(size=(dim, dim)) / 2) + 0.3 * rng.normal(size=(t, dim)) + 0.5 * k
            arrays[f"{prefix}_{k}"] = h.astype(np.float32)
        stem = f"utt-{i:02d}"
        extra = {}
        if labels:
            extra = {"labels": np.array([f"ph{j % 3}" for j in range(t)]),
                     "intervals": np.stack([np.arange(t) * 0.1, np.arange(t) * 0.1 + 0.1], axis=1)}
        store.write_features(store.feature_path(folder, stem), arrays,
                             meta or {"model_name": "synthetic", "rep_type": "contextualized", "span": "frame"}, **extra)
        arrays_by_stem[stem] = arrays
    return arrays_by_stem


def cat(arrays_by_stem, key):
    return np.concatenate([a[key] for a in arrays_by_stem.values()]).astype(np.float64)


def gram_cka(x, y):
    n = len(x)
    h = np.eye(n) - 1.0 / n
    k, l = h @ x @ x.T @ h, h @ y @ y.T @ h
    return np.sum(k * l) / np.sqrt(np.sum(k * k) * np.sum(l * l))


def check_png(path):
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


@pytest.mark.slow
def test_run_matches_independent_computation_and_writes_every_output(tmp_path):
    lengths = [2, 300, 15, 41, 7, 120, 3, 60, 9, 33, 5, 80]  # very different lengths
    data = write_folder(tmp_path / "feat", lengths, n_layers=12)
    out = tmp_path / "out"
    summary = run_analysis(features_dir=tmp_path / "feat", output_dir=out, num_files=0, max_points=60, seed=1)
    on_disk = json.loads((out / "summary.json").read_text())
    # the keys other tools read (the original design's summary.json contract), written out here, not imported
    assert {"files", "layers", "n_frames", "mean", "std", "cka", "cosine", "pca_explained_variance_ratio"} <= set(on_disk)
    keys = [f"layer_{k}" for k in range(12)]  # numeric order, layer_2 before layer_10
    assert on_disk["layers"] == keys and list(on_disk["mean"]) == keys and list(on_disk["std"]) == keys
    assert on_disk["files"] == sorted(data) and on_disk["n_frames"] == sum(lengths)
    for i, key in enumerate(keys):
        x = cat(data, key)
        assert on_disk["mean"][key] == pytest.approx(x.mean(), rel=1e-5)
        assert on_disk["std"][key] == pytest.approx(x.std(), rel=1e-5)
        padded = np.zeros((len(lengths), max(lengths), 6))
        for j, a in enumerate(data.values()):
            padded[j, : len(a[key])] = a[key]
        assert abs(on_disk["mean"][key] - padded.mean()) > 0.01 * abs(x.mean())  # the prototype's number differs
        evr = PCA(n_components=len(on_disk["pca_explained_variance_ratio"][key])).fit(x).explained_variance_ratio_
        np.testing.assert_allclose(on_disk["pca_explained_variance_ratio"][key], evr, rtol=1e-5)
        for j in (0, 5, 11):
            y = cat(data, keys[j])
            assert on_disk["cka"][i][j] == pytest.approx(gram_cka(x, y), rel=1e-5)
            assert on_disk["cosine"][i][j] == pytest.approx(np.sum(x * y) / np.linalg.norm(x) / np.linalg.norm(y),
                                                             rel=1e-5)
    assert summary["n_points"] == 60 and on_disk["seed"] == 1
    for name in FIGURES:
        check_png(out / name)
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 6 + 1 + 1 and page.count("How to read this") == 6 + 1  # figures, the key figure, the linear-CKA tab
    rows = (out / "summary.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == keys
    with np.load(out / "per_dim_stats.npz") as per_dim:
        np.testing.assert_allclose(per_dim["layer_10_var"], cat(data, "layer_10").var(axis=0), rtol=1e-6)


@pytest.mark.slow
def test_legacy_three_d_arrays_give_the_same_numbers(tmp_path):
    data = write_folder(tmp_path / "new", [20, 35])
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    for stem, arrays in data.items():  # the prototype wrote (1, T, D) arrays with plain np.savez, no metadata
        np.savez(legacy / f"{stem}_features.npz", **{k: v[None] for k, v in arrays.items()})
    a = run_analysis(features_dir=tmp_path / "new", output_dir=tmp_path / "o1", num_files=0, max_points=20)
    b = run_analysis(features_dir=legacy, output_dir=tmp_path / "o2", num_files=0, max_points=20)
    assert a["mean"] == b["mean"] and a["cka"] == b["cka"] and b["n_frames"] == 55


@pytest.mark.slow
def test_cli_subset_of_files_and_layers_draws_only_requested_similarity(tmp_path):
    write_folder(tmp_path / "feat", [30, 25, 40, 12], n_layers=4)
    out = tmp_path / "out"
    done = subprocess.run(CLI + ["--features_dir", str(tmp_path / "feat"), "--output_dir", str(out), "--num_files",
                                 "2", "--layers", "2,0", "--similarity", "cka", "--max_points", "30"],
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["files"] == ["utt-00", "utt-01"] and summary["layers"] == ["layer_0", "layer_2"]
    assert summary["n_frames"] == 55 and len(summary["cosine"]) == 2  # cosine computed though not drawn
    assert (out / "layer_similarity_cka.png").exists() and not (out / "layer_similarity_cosine.png").exists()


@pytest.mark.parametrize("case, message", [
    ("missing", "does not exist"),
    ("empty", "no \\*_features.npz"),
    ("corrupt", "cannot read"),
    ("foreign", "no layer_k/conv_k arrays"),
    ("mixed_rep", "missing \\['layer_0'"),
    ("mixed_dims", "has dim 5, but utt-00_features.npz has 6"),
    ("mixed_model", "model_name: 'other' vs 'synthetic'"),
    ("too_few", "only 1 frames"),
    ("bad_layer", "layers: 9 not in \\[0, 2\\]"),
    ("bad_layer_text", "is not an index"),
    ("negative_files", "num_files=-1 must be >= 0"),
    ("small_max_points", "max_points=3 must be >= 10"),
])
def test_bad_input_gives_a_clear_error(tmp_path, case, message):
    feat = tmp_path / "feat"
    kwargs = {"features_dir": feat, "output_dir": tmp_path / "out", "num_files": 0, "max_points": 20}
    if case != "missing":
        feat.mkdir()
    if case in ("corrupt", "foreign", "mixed_rep", "mixed_dims", "mixed_model", "bad_layer", "bad_layer_text",
                "negative_files", "small_max_points"):
        write_folder(feat, [30])
    if case == "corrupt":
        (feat / "zz_features.npz").write_bytes(np.random.default_rng(0).bytes(500))
    elif case == "foreign":
        np.savez(feat / "zz_features.npz", x=np.zeros(3))
    elif case == "mixed_rep":
        write_folder(tmp_path / "conv", [10], prefix="conv")
        (tmp_path / "conv" / "utt-00_features.npz").rename(feat / "zz_features.npz")
    elif case == "mixed_dims":
        write_folder(tmp_path / "d5", [10], dim=5)
        (tmp_path / "d5" / "utt-00_features.npz").rename(feat / "zz_features.npz")
    elif case == "mixed_model":
        write_folder(tmp_path / "m", [10], meta={"model_name": "other", "rep_type": "contextualized", "span": "frame"})
        (tmp_path / "m" / "utt-00_features.npz").rename(feat / "zz_features.npz")
    elif case == "too_few":
        write_folder(feat, [1])
    kwargs.update({"bad_layer": {"layers": "0,9"}, "bad_layer_text": {"layers": "first"},
                   "negative_files": {"num_files": -1}, "small_max_points": {"max_points": 3}}.get(case, {}))
    with pytest.raises(LayerwiseError, match=message):
        run_analysis(**kwargs)
    assert not (tmp_path / "out" / "summary.json").exists()


def test_cli_bad_input_exit_2_with_message_and_no_traceback(tmp_path):
    feat = tmp_path / "feat"
    write_folder(feat, [30])
    with zipfile.ZipFile(feat / "zz_features.npz", "w") as archive:  # half-written / truncated npz
        archive.writestr("layer_0.npy", b"\x93NUMPY garbage")
    done = subprocess.run(CLI + ["--features_dir", str(feat), "--output_dir", str(tmp_path / "o"), "--num_files", "0"],
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 2
    assert "zz_features.npz" in done.stderr and "Traceback" not in done.stderr
    missing = subprocess.run(CLI + ["--features_dir", str(tmp_path / "nope")], capture_output=True, text=True, check=False,
                             timeout=120)
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr


@pytest.mark.slow
def test_span_files_reach_the_span_measures_and_colour_by_label(tmp_path, monkeypatch):
    data = write_folder(tmp_path / "feat", [12, 20], labels=True,
                        meta={"model_name": "synthetic", "rep_type": "contextualized", "span": "phone"})
    seen, drawn = {}, {}

    def fake_span_measures(features, labels, groups, *, seed, n_splits, **protocols):
        seen.update(features=features, labels=labels, groups=groups, seed=seed, n_splits=n_splits)
        return MeasureFamily(values={"probe_accuracy": dict.fromkeys(features, 0.5),
                                     "pwcca": dict.fromkeys(features, 0.1)},
                             info={"probe_majority_baseline": 0.25}, unavailable={"mi": "planted reason"})

    def spy_tsne(layers, embeddings, groups, names, what, path, *, subtitle):
        drawn.update(groups=groups, names=names, what=what)
        return real_tsne(layers, embeddings, groups, names, what, path, subtitle=subtitle)

    from layerwise.contract.results import MeasureFamily
    from layerwise.measures import span
    from layerwise.report import scatter
    real_tsne = scatter.tsne_figure
    monkeypatch.setattr(span, "span_measures", fake_span_measures)
    monkeypatch.setattr(scatter, "tsne_figure", spy_tsne)
    summary = run_analysis(features_dir=tmp_path / "feat", output_dir=tmp_path / "out", num_files=0, max_points=20,
                           seed=4, probe_splits=2)
    assert seen["seed"] == 4 and seen["n_splits"] == 2 and list(seen["groups"]) == ["utt-00"] * 12 + ["utt-01"] * 20
    np.testing.assert_array_equal(seen["features"]["layer_1"], cat(data, "layer_1"))
    assert list(seen["labels"][:4]) == ["ph0", "ph1", "ph2", "ph0"]
    assert summary["probe_accuracy"]["layer_0"] == 0.5 and summary["span"] == "phone"
    assert "random_init" not in summary  # no sibling control folder
    assert summary["unavailable"] == {"mi": "planted reason"}  # reported; the other measures still appear
    assert any("only 2 utterances" in note for note in summary["notes"])
    # The scatters are coloured by phone: the sampled points' groups are their labels ph<j % 3>.
    assert drawn["what"] == "label" and drawn["names"] == ["ph0", "ph1", "ph2"]
    sampled = json.loads((tmp_path / "out" / "summary.json").read_text())["n_points"]
    assert len(drawn["groups"]) == sampled == 20 and set(drawn["groups"]) <= {0, 1, 2}


def test_default_features_dir_is_the_extraction_default_and_no_torch_import():
    probe = ("import sys; from layerwise.cli import visualize as visualize_features, extract as extract_features; from layerwise.contract import layout\n"
             "a = extract_features.build_parser().parse_args([])\n"
             "print(layout.output_folder(a.save_dir, a.model_name, a.dataset_split, a.data_sample))\n"
             "print(visualize_features.DEFAULT_FEATURES_DIR)\n"
             "import layerwise.analyze.run, layerwise.report.plots, layerwise.report.html, layerwise.stats.sample, layerwise.stats.moments\n"
             "print('torch' in sys.modules or 'transformers' in sys.modules)")
    lines = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False, cwd=ROOT,
                           timeout=60).stdout.split()
    assert lines[0] == lines[1] and lines[2] == "False"


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_files(tmp_path):
    """Done-when: peak RSS over 200 files <= 1.3 × over 50. Each file is 0.3 MB of float32 (2 × 128 dims × 300
    frames), so keeping the frames (or float64 copies) of 150 extra files would add >= 45 MB over a ~150 MB base."""
    feat = tmp_path / "feat"
    feat.mkdir()
    rng = np.random.default_rng(0)
    for i in range(200):
        x = rng.normal(size=(300, 128)).astype(np.float32)
        store.write_features(store.feature_path(feat, f"u{i:03d}"),
                             {"layer_0": x, "layer_1": x * 2 + 1}, {})
    peaks = {}
    for n in (50, 200):
        wrapper = ("import resource, subprocess, sys\n"
                   f"r = subprocess.run({CLI!r} + ['--features_dir', {str(feat)!r}, '--output_dir', "
                   f"{str(tmp_path / f'o{n}')!r}, '--num_files', '{n}', '--max_points', '40'])\n"
                   "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)")
        rss, code = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, check=False,
                                   timeout=300).stdout.split()[-2:]
        assert code == "0"
        peaks[n] = int(rss)
        assert json.loads((tmp_path / f"o{n}" / "summary.json").read_text())["n_frames"] == 300 * n
    assert peaks[200] <= 1.3 * peaks[50], peaks


@pytest.mark.slow
def test_file_list_selects_exactly_the_named_files(tmp_path):
    write_folder(tmp_path / "feat", [30, 25, 40, 12])
    listing = tmp_path / "files.txt"
    listing.write_text(f"{tmp_path / 'feat' / 'utt-02_features.npz'}\n{tmp_path / 'feat' / 'utt-00_features.npz'}\n")
    summary = run_analysis(features_dir=tmp_path / "feat", output_dir=tmp_path / "o", num_files=0, max_points=20,
                           file_list=listing)
    assert summary["files"] == ["utt-00", "utt-02"] and summary["n_frames"] == 70
    listing.write_text("utt-01\nutt-03_features.npz\n")  # a stem and a file name inside the folder
    summary = run_analysis(features_dir=tmp_path / "feat", output_dir=tmp_path / "o3", num_files=0, max_points=20,
                           file_list=listing)
    assert summary["files"] == ["utt-01", "utt-03"] and summary["n_frames"] == 37
    listing.write_text(f"{tmp_path / 'feat' / 'gone_features.npz'}\n")
    with pytest.raises(LayerwiseError, match="names 1 file\\(s\\) that do not exist .* each line must be"):
        run_analysis(features_dir=tmp_path / "feat", output_dir=tmp_path / "o2", num_files=0, file_list=listing)


@pytest.mark.slow
def test_cli_exit_1_when_a_requested_measure_cannot_be_computed_and_the_rest_is_written(tmp_path, monkeypatch):
    """A span folder requests the span measures: one that cannot be computed is in summary.json ``unavailable`` and
    the report with its reason, the others and every figure are still written, and the exit status is 1."""
    from layerwise.cli import visualize
    from layerwise.contract.results import MeasureFamily
    from layerwise.measures import span

    write_folder(tmp_path / "feat", [12, 20, 15], labels=True,
                 meta={"model_name": "synthetic", "rep_type": "contextualized", "span": "phone"})

    def partly(features, labels, groups, *, seed, n_splits, **protocols):
        return MeasureFamily(values={"probe_accuracy": dict.fromkeys(features, 0.5), "mi": dict.fromkeys(features, 0.2)},
                             info={"probe_majority_baseline": 0.25},
                             unavailable={"pwcca": "held-out part too small (planted)"})

    monkeypatch.setattr(span, "span_measures", partly)
    out = tmp_path / "out"
    code = visualize.main(["--features_dir", str(tmp_path / "feat"), "--output_dir", str(out), "--num_files", "0",
                           "--max_points", "20", "--control_dir", "none"])
    summary = json.loads((out / "summary.json").read_text())
    assert code == 1
    assert summary["unavailable"] == {"pwcca": "held-out part too small (planted)"}
    assert summary["probe_accuracy"]["layer_0"] == 0.5 and "pwcca" not in summary
    assert "span_measures.png" in summary["figures"] and "held-out part too small (planted)" in (
        out / "report.html").read_text()


# Frame folders the alignment-free property measures run on: a frame grid in the metadata (one 400-sample window
# every 320 samples for every layer), LibriSpeech names.
GRID_META = {"model_name": "synthetic", "rep_type": "contextualized", "span": "frame", "sample_rate": 16000,
             "model_config": {"conv_kernel": [400, 1, 1], "conv_stride": [320, 1, 1]}}


def write_speakers(folder, stems, *, prefix="layer", meta=GRID_META, seed=0):
    """One file per LibriSpeech stem, layers as in :func:`write_folder`; returns nothing."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i, stem in enumerate(stems):
        h = rng.normal(size=(50, 6)) + i
        arrays = {}
        for k in range(3):
            h = np.tanh(h @ rng.normal(size=(6, 6)) / 2) + 0.3 * rng.normal(size=(50, 6))
            arrays[f"{prefix}_{k}"] = h.astype(np.float32)
        store.write_features(store.feature_path(folder, stem), arrays, meta)


def table_and_notes(out):
    from tests.report.test_html import layer_tables

    page = (out / "report.html").read_text()
    summary = json.loads((out / "summary.json").read_text())
    notes = summary["notes"] + [f"{k} not computed: {v}" for k, v in summary["unavailable"].items()]
    return page, layer_tables(page), notes, summary


@pytest.mark.slow
def test_one_speaker_and_reference_layer_cells_say_why(tmp_path):
    """Three files of one speaker (what --num_files 3 often gives): the speaker measures' reason says how to get
    more speakers; cca_intra of layer_0 is 'n/a (the reference layer)', the first layer's CKA with the previous
    one 'n/a (the first layer …)'; every remaining '—' cell is explained by a note or the legend."""
    from tests.report.test_html import unexplained_dashes

    write_speakers(tmp_path / "m" / "feat", [f"19-198-{i:04d}" for i in range(3)] + ["26-495-0000"])
    out = tmp_path / "o"
    run_analysis(features_dir=tmp_path / "m" / "feat", output_dir=out, num_files=3, max_points=30,
                 similarity="cka")
    page, (table,), notes, summary = table_and_notes(out)
    for name in ("speaker_probe_accuracy", "speaker_pwcca"):
        reason = summary["unavailable"][name]
        assert "one speaker only (speaker 19" in reason and reason.endswith("analyse more files (--num_files 3 now; 0 = all)")
    assert set(summary["cca_intra"]) == {"layer_0", "layer_1", "layer_2"} and summary["cca_intra"]["layer_0"] is None
    assert [row["layer"] for row in table] == ["L0", "L1", "L2"]
    assert table[0]["cca_intra"] == "n/a (the reference layer)" and table[1]["cca_intra"] not in ("—", "")
    assert table[0]["cka_with_previous"] == "n/a (the first layer: no previous one)"
    assert unexplained_dashes(page, notes) == []


@pytest.mark.slow
def test_conv_only_folder_says_cca_intra_does_not_apply(tmp_path):
    from tests.report.test_html import unexplained_dashes

    write_speakers(tmp_path / "m" / "conv", [f"19-198-{i:04d}" for i in range(2)] + ["26-495-0000", "26-495-0001"],
                   prefix="conv", meta={**GRID_META, "rep_type": "local"})
    out = tmp_path / "o"
    run_analysis(features_dir=tmp_path / "m" / "conv", output_dir=out, num_files=0, max_points=30, similarity="cka")
    page, (table,), notes, summary = table_and_notes(out)
    assert summary["unavailable"]["cca_intra"].startswith("does not apply to conv-only (rep_type local) folders")
    assert "cca_intra" not in summary and "cca_intra" not in table[0]
    assert unexplained_dashes(page, notes) == []


@pytest.mark.slow
def test_frame_folder_control_is_named_and_drawn_dashed(tmp_path, caplog):
    """An auto-detected control of a frame folder: the log and run card name it with its model, seed and shared
    utterances, its measures sit in their own table, and the caption describes the dashed lines."""
    import logging

    from layerwise.report import figures
    from tests.report.test_html import Page, layer_tables

    stems = [f"19-198-{i:04d}" for i in range(3)] + ["26-495-0000", "26-495-0001"]
    trained, control = tmp_path / "m" / "feat", tmp_path / "m-random_init" / "feat"
    write_speakers(trained, stems)
    write_speakers(control, stems[1:], meta={**GRID_META, "random_init": True, "seed": 7}, seed=1)
    caplog.set_level(logging.INFO, logger="layerwise")
    out = tmp_path / "o"
    summary = run_analysis(features_dir=trained, output_dir=out, num_files=0, max_points=30, similarity="cka")
    folder = control.resolve()
    assert f"random-init control: {folder} (4 of the 5 analysed utterances)" in caplog.text
    assert summary["random_init"]["seed"] == 7 and summary["random_init"]["n_files"] == 4
    page = (out / "report.html").read_text()
    parsed = Page()
    parsed.feed(page)
    assert parsed.card["Control"] == (f"{folder}: synthetic (revision not recorded), random initialisation seed 7; 4 of 5 "
                                      f"analysed utterances shared")
    own, ctrl = layer_tables(page)
    assert not any(c.startswith("random_init_") for c in own[0]) and "random_init_cca_intra" in ctrl[0]
    assert ctrl[0]["random_init_cca_intra"] == "n/a (the reference layer)"
    assert figures.BY_NAME["what_each_layer_encodes.png"].control in page
    assert figures.NO_CONTROL_CAPTION not in page


@pytest.mark.slow
def test_few_frames_still_give_statistics_and_similarity_with_pca_tsne_reasons(tmp_path):
    """4 frames: too few for t-SNE, not for means and CKA — those are written (numpy on the frames), the t-SNE of
    each layer carries its reason, nothing else is refused."""
    frames = write_folder(tmp_path / "feat", [4], n_layers=2)
    out = tmp_path / "out"
    done = subprocess.run(CLI + ["--features_dir", str(tmp_path / "feat"), "--output_dir", str(out), "--num_files",
                                 "0"], capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    x = np.concatenate([f["layer_1"] for f in frames.values()]).astype(np.float64)
    assert summary["n_frames"] == 4 and summary["mean"]["layer_1"] == pytest.approx(x.mean(), rel=1e-6)
    assert "t-SNE" in (out / "report.html").read_text() and "not computed" in (out / "report.html").read_text()


@pytest.mark.slow
def test_a_file_without_frames_is_named_in_the_notes_not_counted(tmp_path):
    frames = write_folder(tmp_path / "feat", [30, 25])
    store.write_features(store.feature_path(tmp_path / "feat", "utt-99"),
                         {f"layer_{k}": np.zeros((0, 6), np.float32) for k in range(3)},
                         {"model_name": "synthetic", "rep_type": "contextualized", "span": "frame"})
    summary = run_analysis(features_dir=tmp_path / "feat", output_dir=tmp_path / "o", num_files=0, max_points=20)
    assert summary["files"] == ["utt-00", "utt-01"] and summary["n_frames"] == 55
    x = cat(frames, "layer_2").astype(np.float64)
    assert summary["mean"]["layer_2"] == pytest.approx(x.mean(), rel=1e-6)
    assert any("without frames were skipped: utt-99" in note for note in summary["notes"])


# ---------------------------------------------------------------- issue 22, kinds 11 and 13
def test_exit_status_rule_and_report_path_always_printed(tmp_path, caplog):
    import logging

    from layerwise.cli.visualize import exit_status

    log = logging.getLogger("t")
    with caplog.at_level(logging.INFO):
        full = {"unavailable": {}, "requested_measures": ["pwcca"]}
        assert exit_status(full, str(tmp_path), log) == 0
        part = {"unavailable": {"pwcca": "layer_1: undefined (constant)"}, "requested_measures": ["pwcca"]}
        assert exit_status(part, str(tmp_path), log) == 1
    assert caplog.text.count(str(tmp_path / "report.html")) == 2 and "pwcca: layer_1" in caplog.text


def test_not_found_says_what_is_there_and_where_the_features_are(tmp_path):
    from layerwise.contract import store
    from layerwise.errors import AnalysisError

    feat = tmp_path / "out" / "hubert" / "split"
    feat.mkdir(parents=True)
    store.write_features(store.feature_path(feat, "1-2-0003"), {"layer_0": np.ones((3, 2), np.float32)}, {})
    audio = tmp_path / "audio" / "1" / "2"
    audio.mkdir(parents=True)
    (audio / "1-2-0003.flac").write_bytes(b"")
    analysis = tmp_path / "out" / "hubert" / "split_analysis"
    analysis.mkdir()
    (analysis / "summary.json").write_text("{}")
    with pytest.raises(AnalysisError, match=rf"below it hold feature files: {feat}"):
        select_files(tmp_path / "out", 0)
    with pytest.raises(AnalysisError, match=r"holds audio .*run extract_features.py --audio_dir"):
        select_files(tmp_path / "audio", 0)
    with pytest.raises(AnalysisError, match=rf"analysis (or comparison )?output folder.*its features are in {feat}"):
        select_files(analysis, 0)


def test_a_control_folder_has_no_control_and_advice_never_repeats_the_setting(tmp_path):
    from layerwise.analyze.control import resolve_control
    from layerwise.analyze.spans import more_files

    control = tmp_path / "hubert-random_init" / "split"
    control.mkdir(parents=True)
    source = resolve_control(control, "auto")
    assert source.folder is None and "random_init-random_init" not in source.no_control_note()
    assert "itself a random-initialisation control" in source.no_control_note()
    assert "--num_files 0" not in more_files(0).replace("(--num_files 0)", "")
    assert "--num_files 5 now" in more_files(5)


@pytest.mark.parametrize(("labels", "span", "said"), [
    (True, "frame", "holds span labels but its metadata says span='frame'"),
    (False, "word", "holds no span labels but its metadata says span='word'"),
    (True, "Phone", "its metadata names span='Phone', not one of frame, phone, word"),
])
def test_a_file_whose_labels_contradict_its_span_is_refused_naming_it(tmp_path, labels, span, said, caplog):
    """Span labels in a file whose metadata says span='frame', none in a 'word' file, a span no extraction writes:
    not a file of extract_features.py; refused before any measure, exit 2, instead of a traceback from the span
    measures."""
    from layerwise.cli.visualize import main

    meta = {"model_name": "synthetic", "rep_type": "contextualized", "span": span}
    write_folder(tmp_path / "feat", [12, 20], labels=labels, meta=meta)
    status = main(["--features_dir", str(tmp_path / "feat"), "--output_dir", str(tmp_path / "out"), "--no_progress"])
    assert status == 2 and f"utt-00_features.npz: {said}" in caplog.text
    assert not (tmp_path / "out" / "summary.json").exists()
