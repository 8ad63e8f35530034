"""Analysis across machines and the analysis' integrity: merged shards equal one process, mixed extractions are
refused naming the setting, undefined numbers are None (never 1), options are validated once."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from layerwise.analyze import shards, stream
from layerwise.analyze.options import AnalysisOptions
from layerwise.analyze.run import run_analysis
from layerwise.contract import store
from layerwise.errors import LayerwiseError, UsageError
from tests.conftest import ROOT

CLI = [sys.executable, str(ROOT / "visualize_features.py")]
META = {"model_name": "synthetic", "rep_type": "contextualized", "span": "frame", "normalize": False}


def write_files(folder, count, *, dim=5, layers=3, seed=0, meta=META, constant_layer=None):
    """``count`` LibriSpeech-named files of 20-60 frames; layer k is a noisy map of layer k-1 with an offset."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        t = int(rng.integers(20, 60))
        h = rng.normal(size=(t, dim)) + 3.0 * (i % 4)
        arrays = {}
        for k in range(layers):
            h = np.tanh(h @ rng.normal(size=(dim, dim)) / 2) + 0.3 * rng.normal(size=(t, dim)) + 100.0 * k
            arrays[f"layer_{k}"] = h.astype(np.float32)
        if constant_layer is not None:
            arrays[f"layer_{constant_layer}"] = np.full((t, dim), 2.5, np.float32)
        store.write_features(store.feature_path(folder, f"{10 + i % 3}-100-{i:04d}"), arrays, meta)
    return folder


def close(a, b, rtol=1e-9):
    """Equal up to float64 rounding (nested lists/dicts/None/str)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            close(a[key], b[key], rtol)
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            close(x, y, rtol)
    elif isinstance(a, float) and isinstance(b, float):
        assert np.isclose(a, b, rtol=rtol, atol=0) or (np.isnan(a) and np.isnan(b)), (a, b)
    else:
        assert a == b


@pytest.mark.slow
def test_merged_shards_equal_one_process(tmp_path, monkeypatch):
    """Three shards of 40 files (groups of 8 here, so shards interleave: groups 0, 3 / 1, 4 / 2), partials written
    atomically, merged: every number of summary.json equals the single-process run to 1e-9 relative, and the same
    sample is drawn."""
    monkeypatch.setattr(stream, "GROUP_FILES", 8)
    feat = write_files(tmp_path / "feat", 40)
    common = {"features_dir": feat, "num_files": 0, "max_points": 30, "seed": 2, "similarity": "cka"}
    single = run_analysis(output_dir=tmp_path / "single", **common)
    for k in range(3):
        out = run_analysis(output_dir=tmp_path / "sharded", subset_id=k, num_subsets=3, **common)
        assert out["partial"].endswith(f"partial_{k:04d}_of_0003.npz")
    assert not (tmp_path / "sharded" / "summary.json").exists()
    merged = run_analysis(output_dir=tmp_path / "sharded", merge=True, features_dir=feat, similarity="cka")
    skip = {"wall_seconds", "shards", "command", "notes"}
    assert merged["shards"] == 3 and single["shards"] == 1
    close({k: v for k, v in merged.items() if k not in skip}, {k: v for k, v in single.items() if k not in skip})
    # the merge read no feature file: its numbers come from the partials alone
    on_disk = json.loads((tmp_path / "sharded" / "summary.json").read_text())
    assert on_disk["n_frames"] == single["n_frames"] and (tmp_path / "sharded" / "report.html").exists()
    assert shards.shard_indices(40, 0, 3) == [*range(8), *range(24, 32)]


@pytest.mark.slow
def test_merged_span_shards_equal_one_process(tmp_path, monkeypatch):
    """Span folders: the partials carry the segments, so the span measures after the merge are those of one run."""
    monkeypatch.setattr(stream, "GROUP_FILES", 4)
    feat = tmp_path / "feat"
    feat.mkdir()
    rng = np.random.default_rng(3)
    for i in range(18):
        labels = rng.choice(["a", "b", "c"], size=int(rng.integers(8, 16)))
        signal = (labels[:, None] == np.array(["a", "b", "c"])).astype(float) @ rng.normal(size=(3, 4))
        arrays = {f"layer_{k}": (signal * k + rng.normal(size=signal.shape)).astype(np.float32) for k in range(2)}
        store.write_features(store.feature_path(feat, f"{10 + i % 3}-100-{i:04d}"), arrays, {**META, "span": "phone"},
                             labels=labels, intervals=np.stack([np.arange(len(labels)), np.arange(len(labels)) + 1], 1))
    common = {"features_dir": feat, "num_files": 0, "max_points": 20, "control_dir": "none", "probe_splits": 1}
    single = run_analysis(output_dir=tmp_path / "single", **common)
    for k in range(2):
        run_analysis(output_dir=tmp_path / "sharded", subset_id=k, num_subsets=2, **common)
    merged = run_analysis(output_dir=tmp_path / "sharded", merge=True, features_dir=feat, control_dir="none",
                          probe_splits=1)
    for key in ("probe_accuracy", "pwcca", "mi", "probe_majority_baseline", "files", "n_frames"):
        close(merged[key], single[key])


def test_merge_refuses_missing_or_foreign_partials(tmp_path):
    feat = write_files(tmp_path / "feat", 20)
    run_analysis(features_dir=feat, output_dir=tmp_path / "o", num_files=0, max_points=20, subset_id=1,
                 num_subsets=2)
    with pytest.raises(UsageError, match=r"shards \[0\] of 2 are missing"):
        run_analysis(features_dir=feat, output_dir=tmp_path / "o", merge=True)
    run_analysis(features_dir=feat, output_dir=tmp_path / "o", num_files=0, max_points=20, seed=5, subset_id=0,
                 num_subsets=2)
    with pytest.raises(UsageError, match="seed"):
        run_analysis(features_dir=feat, output_dir=tmp_path / "o", merge=True)


def test_cli_shard_from_slurm_array_variables(tmp_path):
    feat = write_files(tmp_path / "feat", 20)
    env = {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "1",
           "PATH": "/usr/bin:/bin"}
    done = subprocess.run(CLI + ["--features_dir", str(feat), "--output_dir", str(tmp_path / "o"), "--num_files",
                                 "0", "--max_points", "20", "--num_subsets", "2"], capture_output=True, text=True,
                          env=env, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "o" / "partials" / "partial_0001_of_0002.npz").exists()


@pytest.mark.parametrize("setting, value", [("normalize", True), ("model_revision", "abc123"),
                                             ("compute_dtype", "float16")])
def test_folder_mixing_identities_is_refused_naming_the_setting(tmp_path, setting, value):
    feat = write_files(tmp_path / "feat", 4)
    write_files(tmp_path / "other", 1, meta={**META, setting: value}, seed=1)
    odd = next((tmp_path / "other").glob("*.npz"))
    odd.rename(feat / "99-100-9999_features.npz")
    with pytest.raises(UsageError, match=rf"99-100-9999_features.npz was made with other settings.*{setting}: "):
        run_analysis(features_dir=feat, output_dir=tmp_path / "o", num_files=0, max_points=20)
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_prototype_files_without_metadata_still_analysed(tmp_path):
    feat = tmp_path / "proto"
    feat.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        np.savez(feat / f"u{i}_features.npz", layer_0=rng.normal(size=(1, 30, 4)), layer_1=rng.normal(size=(1, 30, 4)))
    summary = run_analysis(features_dir=feat, output_dir=tmp_path / "o", num_files=0, max_points=20)
    assert summary["n_frames"] == 90 and summary["model_name"] is None


@pytest.mark.slow
def test_undefined_pca_is_none_not_one_and_reported(tmp_path):
    feat = write_files(tmp_path / "feat", 3, constant_layer=1)
    summary = run_analysis(features_dir=feat, output_dir=tmp_path / "o", num_files=0, max_points=20)
    assert summary["pca_components_90"]["layer_1"] is None
    assert summary["pca_explained_variance_ratio"]["layer_1"] == []
    assert summary["pca_components_90"]["layer_0"] is not None
    assert np.isnan(summary["cka"][0][1])
    rows = (tmp_path / "o" / "summary.csv").read_text().splitlines()
    header = rows[0].split(",")
    row = dict(zip(header, rows[2].split(",")))
    assert row["layer"] == "layer_1" and row["pca_components_90"] == "" and row["cka_with_previous"] == ""
    page = (tmp_path / "o" / "report.html").read_text()
    assert "zero variance" in page  # the reason is in the report


@pytest.mark.parametrize("field, value, message", [
    ("max_points", 3, "max_points=3 must be >= 10"),
    ("similarity", "both2", "similarity='both2' not in"),
    ("color_by", "colour", "color_by='colour' not in"),
    ("cka_vmin", 1.5, r"cka_vmin=1.5 not in \[-1, 1\)"),
    ("subset_id", 3, r"subset_id=3 not in \[0, 1\]"),
    ("cca_protocol", "other", "cca_protocol='other' not in"),
])
def test_options_validated_once_with_parameter_names(field, value, message):
    kwargs = {"features_dir": "f", "output_dir": "o", "num_subsets": 2 if field == "subset_id" else 1, field: value}
    with pytest.raises(UsageError, match=message):
        AnalysisOptions(**kwargs)


def test_cli_help_is_fast_and_errors_name_flags(tmp_path):
    start = time.perf_counter()
    done = subprocess.run(CLI + ["--help"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and "--color_by" in done.stdout and "--merge" in done.stdout
    assert time.perf_counter() - start < 1.5  # the interpreter alone takes ~0.1 s; torch/matplotlib not imported
    probe = "import sys, layerwise.cli.visualize; print(sorted(m for m in ('torch', 'matplotlib', 'scipy', 'sklearn') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                          timeout=60).stdout.strip() == "[]"
    bad = subprocess.run(CLI + ["--features_dir", str(tmp_path), "--max_points", "3"], capture_output=True, text=True,
                         timeout=60, check=False)
    assert bad.returncode == 2 and "--max_points=3 must be >= 10" in bad.stderr and "Traceback" not in bad.stderr


def test_every_error_is_a_layerwise_error(tmp_path):
    (tmp_path / "feat").mkdir()
    (tmp_path / "feat" / "x_features.npz").write_bytes(b"not a zip")
    with pytest.raises(LayerwiseError, match="x_features.npz.*Remove the file, or re-extract it"):
        run_analysis(features_dir=tmp_path / "feat", output_dir=tmp_path / "o", num_files=0)


@pytest.mark.parametrize("span", ["frame", "phone"])
def test_control_with_another_identity_is_refused_naming_the_setting(tmp_path, span):
    """The random-init control may differ only in revision, random_init and seed (layout.CONTROL_DIFFERS). Frame
    folders read it for the alignment-free property measures (which need the frame grid in the metadata)."""
    meta = {**META, "span": span, "hop_samples": 320, "receptive_field_samples": 400, "sample_rate": 16000}
    rng = np.random.default_rng(4)
    for folder, extra in ((tmp_path / "model" / "f", {}),
                          (tmp_path / "model-random_init" / "f", {"random_init": True, "normalize": True})):
        folder.mkdir(parents=True)
        for i in range(4):
            arrays = {f"layer_{k}": rng.normal(size=(30, 4)).astype(np.float32) for k in range(2)}
            labels = {} if span == "frame" else {"labels": np.array(["a", "b", "c"] * 10),
                                                 "intervals": np.stack([np.arange(30), np.arange(30) + 1], 1)}
            store.write_features(store.feature_path(folder, f"{10 + i}-100-{i:04d}"), arrays, {**meta, **extra},
                                 **labels)
    with pytest.raises(UsageError, match="control file .* other settings .*normalize: True vs False"):
        run_analysis(features_dir=tmp_path / "model" / "f", output_dir=tmp_path / "o", num_files=0, max_points=20)
    assert not (tmp_path / "o" / "summary.json").exists()


@pytest.mark.parametrize("damage", ["truncated", "no_header"])
def test_merge_of_a_truncated_partial_exits_2_naming_it_and_its_shard_command(tmp_path, damage):
    """Issue 22 kind 6: a truncated partials/partial_0000_of_0002.npz made --merge exit 1 with a raw BadZipFile."""
    feat, out = write_files(tmp_path / "feat", 20), tmp_path / "o"
    for k in range(2):
        run_analysis(features_dir=feat, output_dir=out, num_files=0, max_points=20, subset_id=k, num_subsets=2)
    path = out / "partials" / "partial_0000_of_0002.npz"
    if damage == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:  # a readable zip without the header the tool writes
        np.savez(path, other=np.ones(3))
    done = subprocess.run(CLI + ["--features_dir", str(feat), "--output_dir", str(out), "--merge"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert str(path) in done.stderr
    assert "--subset_id 0 --num_subsets 2" in done.stderr


def test_unreadable_file_list_exits_2_naming_it(tmp_path):
    feat = write_files(tmp_path / "feat", 4)
    listing = tmp_path / "files.txt"
    listing.write_bytes(b"\xff\xfe\xc3 not utf-8")
    done = subprocess.run(CLI + ["--features_dir", str(feat), "--output_dir", str(tmp_path / "o"), "--file_list",
                                 str(listing)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and str(listing) in done.stderr and "--write_file_list" in done.stderr


@pytest.mark.parametrize("damage", ["points_columns", "keys_short", "stats_row_short", "stems_short"])
def test_merge_of_a_partial_with_inconsistent_shapes_exits_2_naming_it_and_its_shard_command(tmp_path, damage):
    """A damaged partial that is a valid npz whose arrays do not fit together (reviewer's round of issue 22 kind 6):
    an OwnFileError naming the file and the command that rebuilds that shard, never a raw ValueError."""
    from layerwise.errors import OwnFileError

    feat, out = write_files(tmp_path / "feat", 20), tmp_path / "o"
    for k in range(2):
        run_analysis(features_dir=feat, output_dir=out, num_files=0, max_points=20, subset_id=k, num_subsets=2)
    path = out / "partials" / "partial_0000_of_0002.npz"  # 20 files: one group, all in shard 0
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    if damage == "points_columns":
        arrays["sample_points_0"] = arrays["sample_points_0"][:, :-1]
    elif damage == "keys_short":
        arrays["sample_keys"] = arrays["sample_keys"][:-1]
    elif damage == "stats_row_short":
        arrays["stats_g0_rows_0"] = arrays["stats_g0_rows_0"][:-1]
    else:
        arrays["sample_stems"] = arrays["sample_stems"][:1]
    np.savez(path, **arrays)
    with pytest.raises(OwnFileError) as caught:
        run_analysis(features_dir=feat, output_dir=out, merge=True)
    assert str(path) in str(caught.value) and "--subset_id 0 --num_subsets 2" in str(caught.value)
    done = subprocess.run(CLI + ["--features_dir", str(feat), "--output_dir", str(out), "--merge"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert str(path) in done.stderr and "--subset_id 0 --num_subsets 2" in done.stderr


def test_every_null_of_a_constant_layer_has_its_reason_in_summary_json(tmp_path):
    """Reviewer's round of issue 22 kind 3: a constant (all-zero) layer's nulls and [] in summary.json each have a
    reason in summary.json ``reasons`` (column -> layer -> why); the numbers are those of numpy."""
    feat = tmp_path / "feat"
    rng = np.random.default_rng(1)
    feat.mkdir()
    for i in range(6):
        arrays = {f"layer_{k}": rng.normal(size=(30, 4)).astype(np.float32) for k in range(3)}
        arrays["layer_1"] = np.zeros((30, 4), np.float32)
        store.write_features(store.feature_path(feat, f"{10 + i % 3}-100-{i:04d}"), arrays, META)
    out = tmp_path / "o"
    run_analysis(features_dir=feat, output_dir=out, num_files=0, max_points=20, control_dir="none")
    summary = json.loads((out / "summary.json").read_text())
    reasons = summary["reasons"]
    layers = summary["layers"]
    for name in ("cka", "cosine"):  # numpy: CKA 0/0 for zero variance, cosine 0/0 for a zero norm
        matrix = summary[name]
        for i, key in enumerate(layers):
            if any(v is None for v in matrix[i]):
                assert key in reasons[name], (name, key)
        assert all(v is None for v in matrix[1]) and "constant" in reasons[name]["layer_1"]
        assert "layer_1" in reasons[name]["layer_0"]  # the partner's row names the constant layer
    for column, values in summary.items():  # every per-layer null or [] has its reason
        if isinstance(values, dict) and set(values) <= set(layers) and values:
            for key, value in values.items():
                if value is None or value == []:
                    assert key in reasons.get(column, {}), (column, key)
    assert summary["pca_explained_variance_ratio"]["layer_1"] == []
    assert reasons["pca_components_90"]["layer_1"]
    assert summary["std"]["layer_1"] == 0.0  # numbers unchanged beside the new key
