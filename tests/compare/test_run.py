"""layerwise.compare.run against direct numpy computations: cross-model CKA, invariances, matching, time pooling, memory."""

from __future__ import annotations

import itertools
import json
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from layerwise.cli.compare import main
from layerwise.compare.run import compare, run_comparison
from layerwise.contract import store
from layerwise.errors import CompareError


def gram_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA in the Gram form (Kornblith et al. 2019): HSIC(K, L)/sqrt(HSIC(K, K)·HSIC(L, L)), K = XXᵀ centred."""
    n = len(x)
    h = np.eye(n) - 1.0 / n
    k, l = h @ x @ x.T @ h, h @ y @ y.T @ h
    return float(np.sum(k * l) / np.sqrt(np.sum(k * k) * np.sum(l * l)))


def components_90(x: np.ndarray) -> int:
    eig = np.clip(np.linalg.eigvalsh(np.cov(x.T, bias=True))[::-1], 0, None)
    return int(np.argmax(np.cumsum(eig) / eig.sum() >= 0.9 - 1e-12) + 1)


def meta_for(name: str, keys: list[str], *, rep_type: str = "contextualized", config: dict | None = None) -> dict:
    meta = {"model_name": name, "rep_type": rep_type, "span": "frame", "layers": keys, "sample_rate": 16000,
            "random_init": False}
    if config is not None:
        meta["model_config"] = config
    else:
        meta.update(hop_samples=320, receptive_field_samples=400)
    return meta


def write_folder(folder, files: dict[str, dict[str, np.ndarray]], meta: dict):
    folder.mkdir(parents=True, exist_ok=True)
    for stem, arrays in files.items():
        store.write_features(store.feature_path(folder, stem), arrays, meta)
    return folder


def synthetic(rng, lengths, dims=(6, 5, 4)) -> dict[str, dict[str, np.ndarray]]:
    """Utterances of given frame counts; layer_1 a noisy map of layer_0, layer_2 partly related; large means."""
    out = {}
    maps = [rng.normal(size=(dims[0], d)) for d in dims[1:]]
    for i, t in enumerate(lengths):
        x = rng.normal(3.0, 2.0, size=(t, dims[0]))
        out[f"19-198-{i:04d}"] = {
            "layer_0": x.astype(np.float32),
            "layer_1": (x @ maps[0] + rng.normal(size=(t, dims[1]))).astype(np.float32),
            "layer_2": (np.tanh(x @ maps[1]) + 5 * rng.normal(size=(t, dims[2])) - 40).astype(np.float32),
        }
    return out


def concat(files, stems, key) -> np.ndarray:
    return np.concatenate([files[s][key] for s in stems]).astype(np.float64)


# ---------------------------------------------------------------------------------------------- real checkpoints
def model_frames(checkpoint, waves) -> tuple[dict, list[dict], list[dict]]:
    """Per utterance: hidden states (``model(x, output_hidden_states=True)``) and the conv blocks' outputs, straight
    from transformers; plus the config the metadata carries."""
    import torch
    from transformers import AutoModel, Wav2Vec2FeatureExtractor

    model = AutoModel.from_pretrained(checkpoint).eval()
    extractor = Wav2Vec2FeatureExtractor.from_pretrained(checkpoint)
    hidden, conv = [], []
    with torch.no_grad():
        for wave in waves:
            x = extractor(wave, sampling_rate=16000, return_tensors="pt").input_values
            states = model(x, output_hidden_states=True).hidden_states
            hidden.append({f"layer_{k}": s[0].numpy() for k, s in enumerate(states)})
            h, blocks = x[:, None], {}
            for k, layer in enumerate(model.feature_extractor.conv_layers):
                h = layer(h)
                blocks[f"conv_{k}"] = h[0].T.numpy().copy()
            conv.append(blocks)
    c = model.config
    return {"conv_kernel": list(c.conv_kernel), "conv_stride": list(c.conv_stride)}, hidden, conv


def covering_pool(fine: np.ndarray, hop_f: int, field_f: int, hop_c: int, field_c: int, n_c: int) -> np.ndarray:
    """Oracle: coarse frame j = mean of the consecutive fine frames from the one starting at j·hop_c until their
    windows cover the coarse window [j·hop_c, j·hop_c + field_c); frames whose cover runs past the fine sequence are
    absent."""
    rows = []
    for j in range(n_c):
        first = j * hop_c // hop_f
        last = first
        while last * hop_f + field_f < j * hop_c + field_c:
            last += 1
        if last >= len(fine):
            break
        rows.append(fine[first:last + 1].astype(np.float64).mean(axis=0))
    return np.array(rows)


@pytest.mark.slow
def test_cross_model_cka_equals_numpy_on_model_frames(tiny_hubert, tiny_wav2vec2, audio_dir, tmp_path):
    paths = sorted(audio_dir.rglob("*.*"), key=lambda p: p.stem)
    waves = [sf.read(p, dtype="float32")[0] for p in paths]
    stems = [p.stem for p in paths]
    config_h, hidden_h, conv_h = model_frames(tiny_hubert, waves)
    config_w, hidden_w, _ = model_frames(tiny_wav2vec2, waves)
    keys = list(hidden_h[0])
    a = write_folder(tmp_path / "hubert", dict(zip(stems, hidden_h)), meta_for(str(tiny_hubert), keys, config=config_h))
    b = write_folder(tmp_path / "w2v2", dict(zip(stems, hidden_w)), meta_for(str(tiny_wav2vec2), keys, config=config_w))
    local = {s: {k: c[k] for k in ("conv_0", "conv_6")} for s, c in zip(stems, conv_h)}
    c = write_folder(tmp_path / "local", local, meta_for(str(tiny_hubert), ["conv_0", "conv_6"], rep_type="local",
                                                          config=config_h))
    out = tmp_path / "cmp"
    assert main(["--features_dirs", str(a), str(b), str(c), "--output_dir", str(out), "--labels", "H", "W",
                 "HC"]) == 0
    summary = json.loads((out / "summary.json").read_text())

    ref_a = {k: np.concatenate([h[k] for h in hidden_h]).astype(np.float64) for k in keys}
    ref_b = {k: np.concatenate([h[k] for h in hidden_w]).astype(np.float64) for k in keys}
    # conv_0 (hop 5, field 10 samples) pooled onto the transformer grid (hop 320, field 400) by covering windows
    n_frames = [len(h["layer_0"]) for h in hidden_h]
    ref_c = {"conv_0": np.concatenate([covering_pool(cv["conv_0"], 5, 10, 320, 400, n) for cv, n in
                                       zip(conv_h, n_frames)]),
             "conv_6": np.concatenate([cv["conv_6"] for cv in conv_h]).astype(np.float64)}
    assert summary["n_frames"] == sum(n_frames) == len(ref_c["conv_0"])
    assert summary["files"] == stems and summary["n_left_out"] == {"H": 0, "W": 0, "HC": 0}
    assert summary["folders"][2]["pooled_onto_grid"] == {"conv_0": {"kernel": 79, "stride": 64}}
    refs = {"H": ref_a, "W": ref_b, "HC": ref_c}
    assert [(e["a"], e["b"]) for e in summary["cka_between"]] == [("H", "W"), ("H", "HC"), ("W", "HC")]
    for entry in summary["cka_between"]:
        x, y = refs[entry["a"]], refs[entry["b"]]
        expected = [[gram_cka(x[p], y[q]) for q in entry["layers_b"]] for p in entry["layers_a"]]
        np.testing.assert_allclose(entry["matrix"], expected, rtol=0, atol=1e-6)
    assert len(summary["cka_same_layer"]) == 1  # only H vs W have equal layer counts
    same = summary["cka_same_layer"][0]
    np.testing.assert_allclose(same["values"], [gram_cka(ref_a[k], ref_b[k]) for k in keys], atol=1e-6)
    sweep = summary["per_folder"]["W"]
    for i, key in enumerate(keys):
        np.testing.assert_allclose(sweep["mean"][key], ref_b[key].mean(), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(sweep["std"][key], ref_b[key].std(), rtol=1e-6)
        assert sweep["pca_components_90"][key] == components_90(ref_b[key])
        if i:
            np.testing.assert_allclose(sweep["cka_with_previous"][key], gram_cka(ref_b[keys[i - 1]], ref_b[key]),
                                       atol=1e-6)
    assert sweep["cka_with_previous"]["layer_0"] is None


def test_folders_written_by_extract_features(tiny_hubert, audio_dir, tmp_path):
    """extract_features.py (trained, --random_init, --rep_type local) -> compare: default labels from the metadata,
    conv_0 pooled onto the transformer grid from the stored config, CKA equal to numpy on the stored frames."""
    from layerwise.cli.extract import main as extract

    common = ["--audio_dir", str(audio_dir), "--save_dir", str(tmp_path / "out"), "--model_name", str(tiny_hubert),
              "--device", "cpu", "--no_progress"]
    for extra in ([], ["--random_init", "--seed", "3"], ["--rep_type", "local", "--layers", "0,6"]):
        assert extract(common + extra) == 0
    tag = tiny_hubert.name
    trained = tmp_path / "out" / tag / "librispeech_dev-clean_sample1"
    control = tmp_path / "out" / f"{tag}-random_init" / "librispeech_dev-clean_sample1"
    local = tmp_path / "out" / tag / "librispeech_dev-clean_sample1_local"
    result = compare([trained, control, local])
    assert [f.label for f in result.folders] == [tag, f"{tag}-random_init", f"{tag}-local"]
    assert result.pooling[f"{tag}-local"] == {"conv_0": (79, 64)} and result.edge_frames_dropped == 0
    stems = sorted(store.stem_of(p) for p in store.list_feature_files(trained))
    read = {d: [store.read_features(store.feature_path(d, s)) for s in stems] for d in (trained, local)}
    hidden = np.concatenate([ff.layers["layer_2"] for ff in read[trained]]).astype(np.float64)
    pooled = np.concatenate([covering_pool(ff.layers["conv_0"], 5, 10, 320, 400, len(h.layers["layer_2"]))
                             for ff, h in zip(read[local], read[trained])])
    assert result.n_frames == len(hidden) == len(pooled)
    np.testing.assert_allclose(result.pairs[1].cka[2, 0], gram_cka(hidden, pooled), atol=1e-6)
    assert np.all(result.pairs[0].same_layer < 0.999)  # another seed: the control differs from the checkpoint


# ---------------------------------------------------------------------------------------------- invariances
def test_folder_with_itself_and_a_rotated_scaled_copy(tmp_path):
    rng = np.random.default_rng(1)
    files = synthetic(rng, (30, 7, 52, 11))
    a = write_folder(tmp_path / "a", files, meta_for("org/model-a", ["layer_0", "layer_1", "layer_2"]))
    rotated = {}
    for stem, arrays in files.items():
        rotated[stem] = {}
        for key, x in arrays.items():
            q, _ = np.linalg.qr(np.random.default_rng(len(key) + x.shape[1]).normal(size=(x.shape[1],) * 2))
            rotated[stem][key] = (3.7 * x.astype(np.float64) @ q + 11.0).astype(np.float32)  # same Q per layer
    b = write_folder(tmp_path / "b", rotated, meta_for("org/model-a", ["layer_0", "layer_1", "layer_2"]))
    result = compare([a, a, b])
    assert [f.label for f in result.folders] == ["model-a#1", "model-a#2", "model-a#3"]
    stems = sorted(files)
    within = np.array([[gram_cka(concat(files, stems, p), concat(files, stems, q)) for q in files[stems[0]]]
                       for p in files[stems[0]]])
    for pair in result.pairs:  # a-a, a-b, a-b: every matrix is the folder's own layer-by-layer CKA
        np.testing.assert_allclose(np.diagonal(pair.cka), 1.0, atol=1e-6)
        np.testing.assert_allclose(pair.cka, within, atol=1e-6)
        np.testing.assert_allclose(pair.same_layer, 1.0, atol=1e-6)
    assert within[0, 2] < 0.9  # the test is not vacuous: different layers are not CKA-equal


# ---------------------------------------------------------------------------------------------- matching
def test_utterances_missing_from_a_folder_are_left_out_and_reported(tmp_path):
    rng = np.random.default_rng(2)
    files = synthetic(rng, (9, 10, 11, 12, 13))
    stems = sorted(files)
    a = write_folder(tmp_path / "a", {s: files[s] for s in stems[:4]}, meta_for("m/a", list(files[stems[0]])))
    b = write_folder(tmp_path / "b", {s: files[s] for s in stems[1:]}, meta_for("m/b", list(files[stems[0]])))
    out = tmp_path / "cmp"
    result = run_comparison(features_dirs=[a, b], output_dir=out)
    assert result.stems == stems[1:4]
    assert result.left_out == {"a": [stems[0]], "b": [stems[4]]}
    assert result.n_frames == 10 + 11 + 12
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_left_out"] == {"a": 1, "b": 1} and summary["left_out"]["b"] == [stems[4]]
    assert any(stems[0] in n and stems[4] in n for n in summary["notes"])
    assert stems[0] in (out / "report.html").read_text()
    assert compare([a, b], num_files=2).stems == stems[1:3]


def test_mismatched_frame_counts_are_refused_naming_the_file(tmp_path, caplog):
    rng = np.random.default_rng(3)
    files = synthetic(rng, (9, 10, 11))
    stems = sorted(files)
    keys = list(files[stems[0]])
    a = write_folder(tmp_path / "a", files, meta_for("m/a", keys))
    short = {s: ({k: v[:-1] for k, v in arr.items()} if s == stems[1] else arr) for s, arr in files.items()}
    b = write_folder(tmp_path / "b", short, meta_for("m/b", keys))
    with pytest.raises(CompareError, match=f"{stems[1]}_features.npz.*9 frames.*10"):
        compare([a, b])
    assert main(["--features_dirs", str(a), str(b), "--output_dir", str(tmp_path / "cmp")]) == 2
    assert str(b / f"{stems[1]}_features.npz") in caplog.text
    assert not (tmp_path / "cmp" / "summary.json").exists()


def test_finer_grid_is_average_pooled_onto_the_coarser(tmp_path):
    """Fine grid hop 10/field 25 onto hop 20/field 40: 3 fine frames cover a coarse one and overrun it by 5 samples,
    so the last coarse frame of some utterances has no complete cover and is dropped (and counted)."""
    rng = np.random.default_rng(4)
    samples = (100, 130, 161)
    coarse_cfg = {"conv_kernel": [40], "conv_stride": [20]}  # grid (20, 40)
    fine_cfg = {"conv_kernel": [25], "conv_stride": [10]}  # grid (10, 25)
    coarse, fine = {}, {}
    for i, n in enumerate(samples):
        stem = f"u{i}"
        coarse[stem] = {"layer_0": rng.normal(size=((n - 40) // 20 + 1, 4)).astype(np.float32)}
        t_f = (n - 25) // 10 + 1
        base = rng.normal(size=(t_f, 3))
        fine[stem] = {"layer_0": base.astype(np.float32),
                      "layer_1": (base @ rng.normal(size=(3, 5)) + 0.1 * rng.normal(size=(t_f, 5))).astype(np.float32)}
    a = write_folder(tmp_path / "coarse", coarse, meta_for("m/coarse", ["layer_0"], config=coarse_cfg))
    b = write_folder(tmp_path / "fine", fine, meta_for("m/fine", ["layer_0", "layer_1"], config=fine_cfg))
    result = compare([a, b])
    assert result.pooling == {"coarse": {}, "fine": {"layer_0": (3, 2), "layer_1": (3, 2)}}
    pooled = {k: [covering_pool(fine[s][k], 10, 25, 20, 40, len(coarse[s]["layer_0"])) for s in sorted(fine)]
              for k in ("layer_0", "layer_1")}
    counts = [len(p) for p in pooled["layer_0"]]
    x = np.concatenate([coarse[s]["layer_0"][:c] for s, c in zip(sorted(coarse), counts)]).astype(np.float64)
    assert result.n_frames == sum(counts) == len(x)
    assert result.edge_frames_dropped == sum(len(coarse[s]["layer_0"]) for s in coarse) - sum(counts) > 0
    expected = [[gram_cka(x, np.concatenate(pooled[k])) for k in ("layer_0", "layer_1")]]
    np.testing.assert_allclose(result.pairs[0].cka, expected, atol=1e-9)
    assert result.pairs[0].same_layer is None


# ---------------------------------------------------------------------------------------------- outputs and CLI
def test_cli_outputs_and_usage_errors(tmp_path):
    rng = np.random.default_rng(5)
    files = synthetic(rng, (20, 25, 30))
    keys = list(files["19-198-0000"])
    dirs = [write_folder(tmp_path / n, files, meta_for(f"m/{n}", keys)) for n in ("a", "b", "c")]
    out = tmp_path / "cmp"
    args = ["--features_dirs", *map(str, dirs), "--output_dir", str(out), "--layers", "0,2"]
    assert main(args) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["cka_between_1_2.png", "cka_between_1_3.png", "cka_between_2_3.png", "cka_same_layer.png",
                     "report.html", "summary.csv", "summary.json", "sweep.png"]  # no temporaries left
    rows = (out / "summary.csv").read_text().splitlines()
    assert rows[0].split(",")[:3] == ["folder", "layer", "dim"] and len(rows) == 1 + 3 * 2
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5 + 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cka_between"][0]["layers_a"] == ["layer_0", "layer_2"]
    assert [f["identity"]["model_name"] for f in summary["folders"]] == ["m/a", "m/b", "m/c"]
    assert "L0 … L2 = stored keys layer_0 … layer_2" in html
    assert main(["--features_dirs", str(dirs[0]), "--output_dir", str(out)]) == 2
    assert main([*args, "--labels", "x", "y"]) == 2
    assert main([*args, "--labels", "x", "x", "y"]) == 2
    assert main(["--features_dirs", str(dirs[0]), str(tmp_path / "nowhere"), "--output_dir", str(out)]) == 2
    assert main([*args[:-2], "--layers", "7"]) == 2


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_number_of_files(tmp_path):
    """200 utterances vs 50: the state is fixed-size (cross-products), files are streamed one at a time."""
    rng = np.random.default_rng(6)
    keys = ["layer_0", "layer_1"]
    folder = tmp_path / "a"
    folder.mkdir()
    for i in range(200):
        arrays = {k: rng.normal(size=(20, 128)).astype(np.float32) for k in keys}
        store.write_features(store.feature_path(folder, f"u{i:04d}"), arrays, meta_for("m/a", keys))

    def peak(num_files: int) -> int:
        tracemalloc.start()
        try:
            result = compare([folder, folder], num_files=num_files)  # two folders' worth of state and reads
            assert len(result.stems) == num_files
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    compare([folder, folder], num_files=2)  # first call: deferred imports (scipy, tqdm) are not the comparison's
    small, large = peak(50), peak(200)
    print(f"peak traced memory: {small / 1e6:.2f} MB over 50 files, {large / 1e6:.2f} MB over 200")
    assert large < 1.3 * small, (small, large)


def test_span_folders_are_compared_segment_by_segment(tmp_path):
    rng = np.random.default_rng(7)
    files = synthetic(rng, (6, 9, 8))
    keys = list(files["19-198-0000"])
    intervals = {s: np.cumsum(rng.uniform(0.05, 0.2, size=(len(a["layer_0"]), 2)), axis=None).reshape(-1, 2)
                 for s, a in files.items()}
    labels = {s: np.array(["a", "b", "c"] * 3)[: len(a["layer_0"])] for s, a in files.items()}

    def span_folder(name, arrays, meta, shift=0.0):
        folder = tmp_path / name
        folder.mkdir()
        for stem, arr in arrays.items():
            store.write_features(store.feature_path(folder, stem), arr, {**meta, "span": "phone"},
                                 labels=labels[stem], intervals=intervals[stem] + (shift if stem.endswith("2") else 0))
        return folder

    trained = span_folder("trained", files, meta_for("org/model-a", keys))
    noisy = {s: {k: v + rng.normal(size=v.shape).astype(np.float32) for k, v in a.items()} for s, a in files.items()}
    control = span_folder("control", noisy, {**meta_for("org/model-a", keys), "random_init": True})
    result = compare([trained, control])
    assert [f.label for f in result.folders] == ["model-a-phone", "model-a-random_init-phone"]
    assert result.span == "phone" and result.grid is None and result.n_frames == 6 + 9 + 8
    stems = sorted(files)
    expected = [[gram_cka(concat(files, stems, p), concat(noisy, stems, q)) for q in keys] for p in keys]
    np.testing.assert_allclose(result.pairs[0].cka, expected, atol=1e-9)

    moved = span_folder("moved", files, meta_for("org/model-a", keys), shift=0.01)
    with pytest.raises(CompareError, match="19-198-0002_features.npz.*segments differ"):
        compare([trained, moved])
    frames = write_folder(tmp_path / "frames", files, meta_for("org/model-b", keys))
    with pytest.raises(CompareError, match="different units"):
        compare([trained, frames])


def test_a_folder_mixing_extractions_is_refused(tmp_path):
    rng = np.random.default_rng(8)
    files = synthetic(rng, (5, 6))
    keys = list(files["19-198-0000"])
    a = write_folder(tmp_path / "a", files, meta_for("m/a", keys))
    b = write_folder(tmp_path / "b", {"19-198-0000": files["19-198-0000"]}, meta_for("m/b", keys))
    write_folder(b, {"19-198-0001": files["19-198-0001"]}, meta_for("m/other", keys))
    with pytest.raises(CompareError, match="19-198-0001_features.npz was made with other settings.*model_name"):
        compare([a, b])


def test_report_run_card_display_names_and_plain_tick_labels(tmp_path, monkeypatch):
    """The compare report opens with a run card (folders with model, revision, random init and seed, layers,
    settings, the extraction's versions from its manifest; common utterances and frames; date, wall time, versions,
    the command with the wrapper's temporary list marked); every table and axis names layers L0 …; nearly equal
    CKA values are written out, not as an offset above the axis."""
    from layerwise.contract.provenance import analysis_versions
    from layerwise.report import compareplots
    from tests.report.test_html import Page, Tables

    rng = np.random.default_rng(9)
    files = {}
    for i, t in enumerate((40, 50, 60)):
        x = rng.normal(size=(t, 6))
        files[f"19-198-{i:04d}"] = {f"layer_{k}": (x + 1e-3 * k * rng.normal(size=(t, 6))).astype(np.float32)
                                    for k in range(3)}  # neighbouring layers: CKA 0.9999…
    for k in range(3):  # centred over all frames: layer means of order 1e-9 (float32 rounding)
        centre = np.concatenate([f[f"layer_{k}"] for f in files.values()]).astype(np.float64).mean(axis=0)
        for f in files.values():
            f[f"layer_{k}"] = (f[f"layer_{k}"] - centre).astype(np.float32)
    keys = ["layer_0", "layer_1", "layer_2"]
    a = write_folder(tmp_path / "m" / "a", files, meta_for("org/model-a", keys))
    (a / "manifest.json").write_text(json.dumps({"tool": {"versions": {"torch": "9.9.9"}}}))
    b = write_folder(tmp_path / "r" / "b", files, {**meta_for("org/model-a", keys), "random_init": True, "seed": 3,
                                                    "model_revision": "abc"})
    drawn = {}
    real_save = compareplots._save

    def keep(fig, path):
        fig.canvas.draw()
        drawn[path.name] = [(ax.get_title(), [t.get_text() for t in ax.get_xticklabels()],
                             ax.yaxis.get_offset_text().get_text(), [t.get_text() for t in ax.get_yticklabels()])
                            for ax in fig.axes]
        real_save(fig, path)

    monkeypatch.setattr(compareplots, "_save", keep)
    out = tmp_path / "cmp"
    command = f"compare_features.py --features_dirs {a} {b} --file_list /tmp/layerwise-files.Q1w2E3"
    result = run_comparison(features_dirs=[a, b], output_dir=out, command=command)
    html = (out / "report.html").read_text()
    page = Page()
    page.feed(html)
    card = page.card
    assert card["Folder model-a"].startswith(f"{a} — org/model-a (revision not recorded); rep_type contextualized, "
                                             f"span frame; layers L0 … L2 (3); waveform normalisation not recorded")
    assert card["Folder model-a"].endswith("0 of its utterances not in every folder (left out); extraction versions: "
                                           "torch 9.9.9")
    assert card["Folder model-a-random_init"].startswith(
        f"{b} — org/model-a (revision abc) — RANDOM INITIALISATION (seed 3), not the trained weights")
    assert card["Data"].startswith(f"3 utterances present in every folder, {40 + 50 + 60:,} frames; common grid")
    assert card["Wall time"].startswith("comparison ") and card["Date"].startswith("report ")
    assert card["Versions"] == ", ".join(f"{k} {v}" for k, v in analysis_versions().items())
    commands = card["Commands"].split("\n")
    assert commands[0] == f"comparison: {command}" and "a temporary list written by the wrapper" in commands[1]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["command"] == command and summary["wall_seconds"] > 0 and summary["versions"]["numpy"]
    assert summary["folders"][1]["model_revision"] == "abc"

    parser = Tables()
    parser.feed(html)
    cka_table = next(t for t in parser.tables if t[0][:1] == [""])
    assert cka_table[0] == ["", "L0", "L1", "L2"] and [row[0] for row in cka_table[1:]] == ["L0", "L1", "L2"]
    sweep_table = next(t for t in parser.tables if t[0][:2] == ["folder", "layer"])
    assert [row[1] for row in sweep_table[1:]] == ["L0", "L1", "L2"] * 2
    assert "layer_1" not in "".join(cell for t in parser.tables for row in t for cell in row)

    panels = {title: rest for title, *rest in drawn["sweep.png"]}
    ticks, offset, labels = panels["CKA with the previous layer (solid: linear; dashed: debiased)"]
    assert ticks == ["L0", "L1", "L2"] and offset == ""
    values = [float(text.replace("−", "-")) for text in labels if text]
    assert max(values) - min(values) >= 0.05 - 1e-9  # CKA ≈ 0.99998 everywhere: never zoomed into its noise
    assert all(len(text) <= 6 for text in labels)  # plain tick values ("0.98"), no offset notation
    ticks, offset, labels = panels["mean over frames × dims"]  # means near 0: a ×10ⁿ factor, distinct labels
    assert len(set(labels)) == len(labels) and (offset == "" or offset.startswith("1e"))
    (same,) = drawn["cka_same_layer.png"]
    assert same[1] == ["L0", "L1", "L2"] and same[2] == ""
    assert result.command == command


def gram_cka_debiased(x: np.ndarray, y: np.ndarray) -> float:
    """Debiased CKA in the Gram form: Song et al. (2012) unbiased HSIC with K = XXᵀ, L = YYᵀ, zeroed diagonals."""
    def hsic(a, b):
        n = len(a)
        a, b = a - a.mean(0), b - b.mean(0)  # the estimator is shift-invariant; centring keeps float64 accurate
        k, l = a @ a.T, b @ b.T
        np.fill_diagonal(k, 0.0)
        np.fill_diagonal(l, 0.0)
        one = np.ones(n)
        return (np.trace(k @ l) + k.sum() * l.sum() / ((n - 1) * (n - 2)) - 2 / (n - 2) * one @ k @ l @ one)

    return float(hsic(x, y) / np.sqrt(hsic(x, x) * hsic(y, y)))


def test_cka_between_debiased_equals_gram_form_and_is_written(tmp_path):
    rng = np.random.default_rng(9)
    keys = ["layer_0", "layer_1", "layer_2"]
    files_a, files_b = synthetic(rng, (30, 7, 52, 11)), synthetic(rng, (30, 7, 52, 11))
    files_b = {stem: {k: files_b[s][k] for k in keys} for stem, s in zip(sorted(files_a), sorted(files_b))}
    for stem in files_b:  # b's layer_0 shares a's layer_0 plus noise: one planted relation
        files_b[stem]["layer_0"] = (files_a[stem]["layer_0"] + rng.normal(size=files_a[stem]["layer_0"].shape)
                                    ).astype(np.float32)
    a = write_folder(tmp_path / "a", files_a, meta_for("org/model-a", keys))
    b = write_folder(tmp_path / "b", files_b, meta_for("org/model-b", keys))
    result = compare([a, b])
    stems = sorted(files_a)
    want = np.array([[gram_cka_debiased(concat(files_a, stems, p), concat(files_b, stems, q)) for q in keys]
                     for p in keys])
    np.testing.assert_allclose(result.pairs[0].cka_debiased, want, atol=1e-9)
    previous = [gram_cka_debiased(concat(files_a, stems, p), concat(files_a, stems, q)) for p, q in
                itertools.pairwise(keys)]
    np.testing.assert_allclose(result.measures[0].cka_previous_debiased[1:], previous, atol=1e-9)
    assert want[0, 0] > 0.5 and abs(want[2, 1]) < 0.2 < result.pairs[0].cka[2, 1] + 0.2
    from layerwise.report.comparereport import summary_dict

    summary = summary_dict(result, [])
    entry = summary["cka_between_debiased"][0]
    assert (entry["a"], entry["b"], entry["layers_a"]) == ("model-a", "model-b", keys)
    np.testing.assert_allclose(entry["matrix"], want, atol=1e-9)
    assert set(summary["per_folder"]["model-a"]["cka_with_previous_debiased"]) == set(keys)


# ---------------------------------------------------------------------------------------------- stops and full disks
@pytest.fixture
def three_folders(tmp_path):
    files = synthetic(np.random.default_rng(5), (20, 25, 30))
    keys = list(files["19-198-0000"])
    return [write_folder(tmp_path / n, files, meta_for(f"m/{n}", keys)) for n in ("a", "b", "c")]


def test_an_output_dir_under_a_file_is_refused_before_computing(three_folders, tmp_path, monkeypatch, caplog):
    from layerwise.compare import run as compare_run

    monkeypatch.setattr(compare_run, "compute", lambda options: pytest.fail("computed before checking the folder"))
    (tmp_path / "a_file").write_text("x")
    out = tmp_path / "a_file" / "cmp"
    assert main(["--features_dirs", *map(str, three_folders), "--output_dir", str(out), "--no_progress"]) == 2
    assert "a_file is a file, not a folder" in caplog.text


@pytest.mark.parametrize("how", ["ctrl_c", "sigterm"])
def test_a_stop_while_drawing_is_one_line_exit_130(three_folders, tmp_path, monkeypatch, caplog, capfd, how):
    import os
    import signal

    from layerwise.report import figures

    def stop(*args, **kwargs):
        if how == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)  # a batch system's time limit
        raise KeyboardInterrupt

    monkeypatch.setattr(figures, "draw_all", stop)
    before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "cmp"
    assert main(["--features_dirs", *map(str, three_folders), "--output_dir", str(out), "--no_progress"]) == 130
    first = "terminated (SIGTERM):" if how == "sigterm" else "interrupted:"
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith(first)]
    assert len(lines) == 1 and "summary.json, summary.csv written" in lines[0] and "report.html" in lines[0]
    assert sorted(p.name for p in out.iterdir()) == ["summary.csv", "summary.json"]  # the numbers come first
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["cka_between"]) == 3 and summary["files"] == ["19-198-0000", "19-198-0001", "19-198-0002"]
    assert signal.getsignal(signal.SIGTERM) is before
    assert "Traceback" not in caplog.text + capfd.readouterr().err


def test_a_full_disk_is_one_line_naming_the_file_exit_1(three_folders, tmp_path, monkeypatch, caplog, capfd):
    import errno
    import os

    from layerwise.report import comparereport

    def full(result, out, figures):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out / "summary.json"))

    monkeypatch.setattr(comparereport, "write_all", full)
    out = tmp_path / "cmp"
    assert main(["--features_dirs", *map(str, three_folders), "--output_dir", str(out), "--no_progress"]) == 1
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("could not write"))
    assert str(out / "summary.json") in line and "(ENOSPC)" in line and "sweep.png" in line
    assert "Traceback" not in caplog.text + capfd.readouterr().err


def test_an_output_that_cannot_be_written_is_one_line_naming_it_exit_1(three_folders, tmp_path, caplog, capfd):
    out = tmp_path / "cmp"
    (out / "sweep.png").mkdir(parents=True)  # a folder where a figure goes
    assert main(["--features_dirs", *map(str, three_folders), "--output_dir", str(out), "--no_progress"]) == 1
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("could not write"))
    assert line.startswith(f"could not write {out / 'sweep.png'}: ") and "(EISDIR)" in line
    assert "summary.json" in line and not any(p.name.endswith(".tmp") for p in out.iterdir())
    assert "Traceback" not in caplog.text + capfd.readouterr().err


def test_an_os_error_that_is_not_the_output_folders_is_one_figures_failure(three_folders, tmp_path, monkeypatch,
                                                                            caplog, capfd):
    """A figure failing on a file elsewhere (a font it cannot read) is that figure's failure: named, the rest
    drawn, exit 1, no traceback (an OSError of the output folder instead ends the run, tested above)."""
    import errno

    from layerwise.report import compareplots

    def font(result, path):
        raise OSError(errno.EACCES, "Permission denied", "/usr/share/fonts/DejaVuSans.ttf")

    monkeypatch.setattr(compareplots, "_draw_sweep", font)
    out = tmp_path / "cmp"
    assert main(["--features_dirs", *map(str, three_folders), "--output_dir", str(out), "--no_progress"]) == 1
    assert list(json.loads((out / "summary.json").read_text())["not_written"]) == ["sweep.png"]
    assert (out / "report.html").is_file() and "Traceback" not in caplog.text + capfd.readouterr().err


def test_a_figure_that_raises_is_named_the_others_drawn_exit_1(three_folders, tmp_path, monkeypatch, caplog):
    """One figure failing (here: the sweep) is named in the log, summary.json not_written and the report's notes;
    every other output is written; exit 1. A label matplotlib would parse as mathtext is drawn as typed."""
    from layerwise.report import compareplots

    def broken(result, path):
        raise ValueError("no room for the legend")

    monkeypatch.setattr(compareplots, "_draw_sweep", broken)
    out = tmp_path / "cmp"
    argv = ["--features_dirs", *map(str, three_folders), "--output_dir", str(out), "--no_progress",
            "--labels", r"$\frac$", "b", "c"]
    assert main(argv) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["not_written"] == {"sweep.png": "ValueError: no room for the legend"}
    assert "sweep.png" not in summary["figures"] and "cka_between_1_2.png" in summary["figures"]
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".png") == [
        "cka_between_1_2.png", "cka_between_1_3.png", "cka_between_2_3.png", "cka_same_layer.png"]
    assert "sweep.png not drawn: ValueError: no room for the legend" in (out / "report.html").read_text()
    assert "not drawn: sweep.png (ValueError: no room for the legend)" in caplog.text


def test_a_stop_wrapped_in_another_exception_while_drawing_is_the_stop(three_folders, tmp_path, monkeypatch,
                                                                       caplog):
    """A SIGTERM surfacing as a RuntimeError (a lazy import wraps it) inside a figure: one stop line, 130, not a
    figure failure."""
    from layerwise.report import compareplots
    from tests.conftest import sigterm_surfacing_wrapped

    monkeypatch.setattr(compareplots, "_draw_sweep", sigterm_surfacing_wrapped)
    out = tmp_path / "cmp"
    assert main(["--features_dirs", *map(str, three_folders), "--output_dir", str(out), "--no_progress"]) == 130
    assert [r.getMessage().split(":")[0] for r in caplog.records if r.levelname == "ERROR"] == ["terminated (SIGTERM)"]
    assert "sweep.png" not in json.loads((out / "summary.json").read_text())["not_written"]
