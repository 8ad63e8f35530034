"""A comparison with a constant layer (issue 22, kind 3 and 11): every null of summary.json carries its reason, the
numbers that could not be computed are named under ``unavailable``, the report shows ``n/a (why)``, and the CLI exits
1 (README "Exit status": some requested numbers missing, the rest written). Expected values from numpy (Gram-form
CKA) and from the documented rule: CKA and PCA are undefined for a layer with zero variance."""

from __future__ import annotations

import html as htmllib
import json
import logging
import re

import numpy as np
import pytest

from layerwise.cli.compare import main
from tests.compare.test_run import gram_cka, meta_for, synthetic, write_folder

FIRST_LAYER = "no previous layer"  # the one null that is empty by definition (README / report legend)


def unexplained_nulls(summary: dict) -> list[str]:
    """Where summary.json holds a null without a reason next to it (the documented places of reasons: each
    ``cka_between``/``cka_same_layer`` entry's and each ``per_folder`` entry's ``reasons``, ``grid_reason``)."""
    out = []
    for entry in summary["cka_between"]:
        for i, row in enumerate(entry["matrix"]):
            for j, value in enumerate(row):
                if value is None and not entry["reasons"].get(entry["layers_a"][i], {}).get(entry["layers_b"][j]):
                    out.append(f"cka_between {entry['a']}/{entry['b']} [{i}, {j}]")
    for entry in summary["cka_same_layer"]:
        out += [f"cka_same_layer {entry['a']}/{entry['b']} [{i}]" for i, value in enumerate(entry["values"])
                if value is None and not entry["reasons"].get(entry["layers_a"][i])]
    for label, measures in summary["per_folder"].items():
        for measure, values in measures.items():
            if isinstance(values, dict) and measure != "reasons":
                out += [f"{label} {measure} {key}" for key, value in values.items()
                        if value is None and not measures["reasons"].get(measure, {}).get(key)]
    if summary["grid"] is None and not summary.get("grid_reason"):
        out.append("grid")
    return out


def folders_with_constant(tmp_path, value: float, *, which: str = "b"):
    """Folders a and b of the same synthetic utterances; in folder ``which``, layer_1 of every file is ``value``."""
    rng = np.random.default_rng(11)
    files = synthetic(rng, (20, 25, 30))
    keys = list(files["19-198-0000"])
    flat = {s: {**d, "layer_1": np.full_like(d["layer_1"], value)} for s, d in files.items()}
    a = write_folder(tmp_path / "a", flat if which == "a" else files, meta_for("m/a", keys))
    b = write_folder(tmp_path / "deg" / "zero", flat if which == "b" else files, meta_for("m/b", keys))
    return a, b, files, flat


@pytest.mark.parametrize("value", [0.0, 0.1, -3.5e3])
def test_constant_layer_nulls_have_reasons_and_exit_1(tmp_path, caplog, value):
    a, b, files, flat = folders_with_constant(tmp_path, value)
    out = tmp_path / "cmp"
    with caplog.at_level(logging.INFO):
        code = main(["--features_dirs", str(a), str(b), "--output_dir", str(out), "--no_progress"])
    assert code == 1  # some requested numbers were not computed, the rest is written and named
    summary = json.loads((out / "summary.json").read_text())
    assert unexplained_nulls(summary) == []

    # The numbers that exist equal numpy's; the nulls are exactly the cells with the constant layer (b's layer_1).
    stems = sorted(files)
    x = {k: np.concatenate([files[s][k] for s in stems]).astype(np.float64) for k in files[stems[0]]}
    y = {k: np.concatenate([flat[s][k] for s in stems]).astype(np.float64) for k in files[stems[0]]}
    assert all(np.ptp(y["layer_1"], axis=0) == 0)  # the rule's premise: zero variance in every dimension
    matrix = summary["cka_between"][0]["matrix"]
    for i, ka in enumerate(x):
        for j, kb in enumerate(y):
            if kb == "layer_1":
                assert matrix[i][j] is None
                assert "constant" in summary["cka_between"][0]["reasons"][ka][kb]
            else:
                assert matrix[i][j] == pytest.approx(gram_cka(x[ka], y[kb]), abs=1e-9)
    assert summary["cka_same_layer"][0]["values"][1] is None
    assert summary["per_folder"]["b"]["pca_components_90"]["layer_1"] is None
    assert summary["per_folder"]["b"]["cka_with_previous"] == {"layer_0": None, "layer_1": None, "layer_2": None}
    assert FIRST_LAYER in summary["per_folder"]["a"]["reasons"]["cka_with_previous"]["layer_0"]

    # unavailable names every missing measure (not the first layer's empty-by-definition cell) ...
    assert set(summary["unavailable"]) == {"cka_between", "cka_same_layer", "cka_with_previous",
                                           "cka_between_debiased", "cka_with_previous_debiased",
                                           "pca_components_90", "pca_explained_variance_ratio"}
    assert all("layer_1" in why for why in summary["unavailable"].values())
    # ... and so do the log (with the report's path) and the report (n/a (why) cells, the notes).
    errors = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    assert "cka_same_layer" in errors and str(out / "report.html") in errors
    page = htmllib.unescape((out / "report.html").read_text())
    cells = re.findall(r"n/a \(([^<]*)\)", page)
    assert any("constant" in c and "CKA undefined" in c for c in cells)
    assert any("PCA" in c for c in cells)
    assert "cka_same_layer not computed: a vs b: b layer_1 constant" in page


def test_constant_layer_in_the_first_folder_names_its_rows(tmp_path):
    a, b, _, _ = folders_with_constant(tmp_path, 0.0, which="a")
    out = tmp_path / "cmp"
    assert main(["--features_dirs", str(a), str(b), "--output_dir", str(out), "--no_progress"]) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert unexplained_nulls(summary) == []
    entry = summary["cka_between"][0]
    assert [row[1] is None for row in entry["matrix"]] == [False, True, False]  # b's layer_1 is fine
    assert all(v is None for v in entry["matrix"][1]) and set(entry["reasons"]) == {"layer_1"}
    assert "a layer_1 constant" in entry["reasons"]["layer_1"]["layer_0"]


def test_everything_computed_exits_0_and_only_the_first_layer_is_null(tmp_path, caplog):
    rng = np.random.default_rng(12)
    files = synthetic(rng, (20, 25))
    keys = list(files["19-198-0000"])
    dirs = [write_folder(tmp_path / n, files, meta_for(f"m/{n}", keys)) for n in ("a", "b")]
    out = tmp_path / "cmp"
    with caplog.at_level(logging.INFO):
        assert main(["--features_dirs", *map(str, dirs), "--output_dir", str(out), "--no_progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["unavailable"] == {} and unexplained_nulls(summary) == []
    assert {m["reasons"]["cka_with_previous"]["layer_0"] for m in summary["per_folder"].values()} == {
        "first layer of its folder: no previous layer"}
    assert str(out / "report.html") in caplog.text


def test_no_geometry_grid_null_has_its_reason(tmp_path):
    rng = np.random.default_rng(13)
    files = synthetic(rng, (20, 25))
    keys = list(files["19-198-0000"])
    meta = {k: v for k, v in meta_for("m/a", keys).items() if k not in ("hop_samples", "receptive_field_samples")}
    dirs = [write_folder(tmp_path / n, files, meta) for n in ("a", "b")]
    out = tmp_path / "cmp"
    main(["--features_dirs", *map(str, dirs), "--output_dir", str(out), "--no_progress", "--labels", "x", "y"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["grid"] is None and "index by index" in summary["grid_reason"]
    assert unexplained_nulls(summary) == []
