"""Issue 22, kind 3: a measure that is undefined for its input (a constant layer, one class, too few items) is
``None`` with a reason, never a number; the other layers keep the values an independent computation gives."""

from __future__ import annotations

import numpy as np
import pytest

from layerwise.errors import UndefinedMeasureError
from layerwise.measures import alignment_free, pasad, pwcca, span
from tests.measures.test_alignment_free import GRIDS, collect, files


def constant_layer(data, key, value=0.1):
    """``data`` with ``key`` replaced by the same value in every frame (0.1: its float mean misses it by an ulp)."""
    return [(stem, {**arrays, key: np.full_like(arrays[key], value)}, fb) for stem, arrays, fb in data]


@pytest.mark.parametrize("protocol", ["centred", "pasad"])
def test_zero_variance_layer_gets_null_cca_intra_with_a_reason_not_zero(protocol):
    """The issue's example: CKA null (right) but cca_intra 0.0 (PWCCA z-scored the constant columns to 0)."""
    family = alignment_free.measure(collect(constant_layer(files(), "layer_2")), seed=0, cca_protocol=protocol)
    for name in ("cca_intra", "cca_mel", "speaker_pwcca"):
        assert family.values[name]["layer_2"] is None, name
        assert "layer_2: undefined" in family.unavailable[name] and "constant" in family.unavailable[name]
        assert family.values[name]["layer_1"] is not None  # the other layers stay
    assert family.values["speaker_probe_accuracy"]["layer_2"] is None
    assert "constant" in family.unavailable["speaker_probe_accuracy"]
    assert family.values["cca_intra"]["layer_0"] is None  # the reference layer, as before
    assert "layer_0" not in family.unavailable["cca_intra"]


def test_constant_layer_is_still_measured_as_before_for_the_others():
    """The other layers' values do not depend on a constant neighbour (the same numbers without it)."""
    data = files()
    with_constant = alignment_free.measure(collect(constant_layer(data, "layer_2")), seed=0)
    without = alignment_free.measure(collect(data, layers=["layer_0", "layer_1", "layer_3"],
                                             grids={k: GRIDS[k] for k in ("layer_0", "layer_1", "layer_3")}), seed=0)
    for name in ("cca_intra", "speaker_probe_accuracy", "speaker_pwcca"):
        for key in ("layer_1", "layer_3"):
            assert with_constant.values[name][key] == without.values[name][key]


def test_pwcca_refuses_constant_views_and_heldout_constants():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    onehot = np.eye(3)[rng.integers(0, 3, 60)]
    split = (np.arange(40), np.arange(40, 50), np.arange(50, 60))
    with pytest.raises(UndefinedMeasureError, match="constant"):
        pwcca.pwcca_heldout(np.full((60, 4), 0.1), onehot, split)
    with pytest.raises(UndefinedMeasureError, match="single class"):  # one label class: centred labels are 0
        pwcca.pwcca_heldout(x, np.ones((60, 1)), split)
    with pytest.raises(UndefinedMeasureError, match="constant"):
        pwcca.views_heldout(x, np.full((60, 3), 7.0), split)
    fit = pwcca.fit_cca(x[:40], onehot[:40], reg_x=1e-3)
    held = np.repeat(x[50:51], 10, axis=0)  # the layer constant on the held-out rows: every ρ is 0/0
    with pytest.raises(UndefinedMeasureError, match="held-out"):
        pwcca.pwcca_score(fit, held, onehot[50:60])


def test_standardise_leaves_an_inexactly_averaged_constant_column_at_zero_variance():
    """0.1 repeated: the float mean misses it by an ulp; a z-score by that ~1e-17 std would make noise of it."""
    train = np.column_stack([np.full(7, 0.1), np.arange(7.0)])
    (z,) = pwcca.standardise(train)
    assert np.ptp(z[:, 0]) == 0 and abs(z[0, 0]) < 1e-15
    np.testing.assert_allclose(z[:, 1], (train[:, 1] - 3.0) / np.std(np.arange(7.0)))


def test_pasad_constant_view_and_single_class_mi_are_undefined():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(100, 3)), rng.normal(size=(100, 2))
    parts, trials, eps = pasad.stratified_parts(None, 100, seed=0), pasad.draw_trials(seed=0), pasad.draw_eps_pairs(seed=0)
    with pytest.raises(UndefinedMeasureError, match="view1"):
        pasad.pasad_cca_score(np.full((100, 3), 0.1), y, parts, trials, eps)
    with pytest.raises(UndefinedMeasureError, match="view2"):
        pasad.pasad_cca_score(x, np.full((100, 2), 3.0), parts, trials, eps)
    with pytest.raises(UndefinedMeasureError, match="one label class"):
        pasad.pasad_mi(x, x, np.array(["a"] * 100), span="phone", seed=0)
    # a defined case still equals MI / H computed independently of the code (labels = clusters here)
    labels = np.array(["a", "b"] * 50)
    assert pasad.pasad_mi(np.c_[labels == "a"].astype(float), np.c_[labels == "a"].astype(float), labels,
                          span="phone", seed=0, n_clusters=2) == pytest.approx(1.0)


def test_probe_and_nmi_are_undefined_for_degenerate_inputs():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(30, 4)), np.array(["a", "b", "c"] * 10)
    with pytest.raises(UndefinedMeasureError, match="one class"):
        span.probe_accuracy(x, np.array(["a"] * 30), x, y)
    with pytest.raises(UndefinedMeasureError, match="constant"):
        span.probe_accuracy(np.full((30, 4), 0.1), y, x, y)
    with pytest.raises(UndefinedMeasureError, match="test items"):
        span.probe_accuracy(x, y, x[:0], y[:0])
    with pytest.raises(UndefinedMeasureError, match="test items"):
        span.majority_baseline(y, y[:0])
    with pytest.raises(UndefinedMeasureError, match="constant"):
        span.cluster_nmi(np.full((30, 4), 2.0), y, n_clusters=3, seed=0)
    with pytest.raises(UndefinedMeasureError, match="one label class"):
        span.cluster_nmi(x, np.array(["a"] * 30), n_clusters=3, seed=0)
    assert span.majority_baseline(y, y) == pytest.approx(10 / 30)  # counted by hand: 'a' wins ties, 10 of 30


@pytest.mark.parametrize("cca_protocol, mi_protocol", [("centred", "project"), ("pasad", "pasad")])
def test_span_measures_constant_layer_is_null_with_reason_and_others_kept(cca_protocol, mi_protocol):
    rng = np.random.default_rng(3)
    n = 240
    labels = np.array(list("abcd"))[rng.integers(0, 4, n)]
    groups = np.repeat(np.arange(12), n // 12)
    onehot = (labels[:, None] == np.array(list("abcd"))[None, :]).astype(float)
    features = {"layer_0": onehot @ rng.normal(size=(4, 6)) + 0.5 * rng.normal(size=(n, 6)),
                "layer_1": np.full((n, 6), 0.1)}
    family = span.span_measures(features, labels, groups, seed=0, n_splits=2, cca_protocol=cca_protocol,
                                mi_protocol=mi_protocol)
    for name in ("probe_accuracy", "pwcca", "mi"):
        assert family.values[name]["layer_1"] is None, name
        assert family.values[name]["layer_0"] is not None and np.isfinite(family.values[name]["layer_0"])
        assert family.unavailable[name].startswith("layer_1: undefined (") and "constant" in family.unavailable[name]
