"""resample.py: the group-sum scorers against direct computations, chance levels on shuffled labels, the stable
label PWCCA under a 1e-12 perturbation, and the n_boot setting."""

import numpy as np
import pytest
from sklearn.metrics import adjusted_mutual_info_score, mutual_info_score, normalized_mutual_info_score

from layerwise.analyze.options import AnalysisOptions
from layerwise.errors import UsageError
from layerwise.measures import pasad, pwcca, resample, span


def labelled(n=600, q=5, p=12, seed=0):
    rng = np.random.default_rng(seed)
    lab = rng.integers(q, size=n)
    onehot = np.eye(q)[lab]
    x = onehot @ rng.normal(size=(q, p)) + rng.normal(size=(n, p))
    groups = np.repeat(np.arange(n // 10), 10)
    return x, lab, onehot, groups


def test_scorers_at_unit_weights_equal_the_direct_scores():
    x, lab, onehot, groups = labelled()
    part = np.zeros(60, int)
    order = np.random.default_rng(1).permutation(60)
    part[order[:12]], part[order[12:24]] = 2, 1
    split = tuple(np.flatnonzero(part[groups] == k) for k in range(3))
    keep = {}
    score, _ = pwcca.pwcca_heldout(x, onehot, split, keep)
    scorer, g = resample.centred_pwcca_scorer(keep, groups[split[2]])
    assert g == 12 and scorer(np.ones((1, g)))[0] == pytest.approx(score, abs=1e-8)
    # a group drawn twice counts as its rows twice: the direct score on the duplicated rows
    weights = np.ones((1, g))
    weights[0, 0], weights[0, 1] = 2, 0
    test_groups = np.unique(groups[split[2]])
    rows = np.r_[split[2], split[2][groups[split[2]] == test_groups[0]]]
    rows = rows[groups[rows] != test_groups[1]]
    direct = pwcca.pwcca_score(keep["fit"], keep["x_test"][np.searchsorted(split[2], rows)], onehot[rows])
    assert scorer(weights)[0] == pytest.approx(direct, abs=1e-8)
    # the published protocol with one one-hot column dropped (no null direction): its uncentred weighting
    parts = pasad.stratified_parts(lab, len(lab), seed=0)
    _, details = pasad.pasad_cca_score(x, onehot[:, 1:], parts, pasad.draw_trials(seed=0),
                                       pasad.draw_eps_pairs(seed=0))
    for trial in details["trials"]:
        test = parts[trial["test"]]
        scorer, g = resample.pasad_pwcca_scorer(trial["fit"], x[test], onehot[test, 1:], groups[test])
        assert scorer(np.ones((1, g)))[0] == pytest.approx(trial["test_score"], abs=1e-8)
    # accuracy and MI from their group tables
    hits = np.random.default_rng(2).random(600) < 0.7
    scorer, g = resample.accuracy_scorer(hits, groups)
    assert scorer(np.ones((1, g)))[0] == pytest.approx(hits.mean(), abs=1e-15)
    clusters = (x[:, 0] > 0).astype(int) + 2 * (x[:, 1] > 0)
    scorer, g = resample.mi_scorer(lab, clusters, groups, normalise="arithmetic")
    assert scorer(np.ones((1, g)))[0] == pytest.approx(normalized_mutual_info_score(lab, clusters), abs=1e-12)
    scorer, g = resample.mi_scorer(lab, clusters, groups, normalise="labels")
    assert scorer(np.ones((1, g)))[0] == pytest.approx(
        mutual_info_score(lab, clusters) / mutual_info_score(lab, lab), abs=1e-12)
    scorer, g = resample.mi_scorer(lab, clusters, groups, normalise="arithmetic",
                                   expected_mi=span.expected_mi(lab, clusters))
    assert scorer(np.ones((1, g)))[0] == pytest.approx(adjusted_mutual_info_score(lab, clusters), abs=1e-9)


def test_wilson_matches_its_formula_and_permutation_keeps_part_counts():
    low, high = resample.wilson(1.0, 12)
    assert low == pytest.approx(12 / (12 + 1.959963984540054**2), abs=1e-12) and high == 1.0
    labels = np.array(list("aabbbcccc"))
    parts = [np.arange(4), np.arange(4, 9)]
    out = resample.permute_within(labels, parts, seed=0)
    for part in parts:
        assert sorted(out[part]) == sorted(labels[part])


def test_chance_levels_sit_at_the_majority_baseline_and_the_measure_on_shuffled_labels_at_its_chance():
    rng = np.random.default_rng(0)
    n, q = 960, 8
    lab_idx = np.arange(n) % q
    rng.shuffle(lab_idx)
    labels = np.array([f"p{i}" for i in lab_idx])
    groups = np.repeat(np.arange(48), 20)
    x = 2.0 * rng.normal(size=(q, 16))[lab_idx] + rng.normal(size=(n, 16))
    res = span.span_measures({"layer_0": x}, labels, groups, seed=0, n_splits=2, n_boot=50)
    base = res.info["probe_majority_baseline"]
    assert abs(res.chance["probe_accuracy"]["layer_0"] - base) < 0.06  # balanced classes: both about 1/8
    assert abs(res.chance["pwcca"]["layer_0"]) < 0.1 and res.chance["mi"]["layer_0"] < 0.05
    assert res.values["probe_accuracy"]["layer_0"] > 0.9  # the real labels are far above their chance level
    shuffled = span.span_measures({"layer_0": x}, rng.permutation(labels), groups, seed=1, n_splits=2, n_boot=50)
    for name in ("probe_accuracy", "pwcca", "mi"):
        assert abs(shuffled.values[name]["layer_0"] - shuffled.chance[name]["layer_0"]) < 0.08, name
    assert abs(shuffled.values["mi_adjusted"]["layer_0"]) < 0.02  # adjusted MI: 0 for unrelated labels
    assert res.chance["mi_adjusted"] == {"layer_0": 0.0}  # written, 0 by construction (and the method says so)
    assert "mi_adjusted_chance is 0.0 by construction" in res.methods["mi_adjusted"]
    for name, per_layer in res.intervals.items():
        low, high = per_layer["layer_0"]
        assert low <= res.values[name]["layer_0"] <= high and name in res.methods
    assert set(res.n_test) >= {"probe_accuracy", "pwcca", "mi"}


def test_stable_label_pwcca_does_not_move_under_a_tiny_perturbation():
    x, lab, onehot, _ = labelled(n=400, q=6, p=20, seed=3)
    parts = pasad.stratified_parts(lab, len(lab), seed=0)
    trials, eps = pasad.draw_trials(seed=0), pasad.draw_eps_pairs(seed=0)
    rng = np.random.default_rng(9)
    moved = x * (1 + 1e-12 * rng.standard_normal(x.shape))
    stable = [pasad.pasad_cca_score(v, onehot[:, 1:], parts, trials, eps)[0] for v in (x, moved)]
    published = [pasad.pasad_cca_score(v, onehot, parts, trials, eps)[0] for v in (x, moved)]
    assert abs(stable[0] - stable[1]) < 1e-9
    # the published value carries the null pair's rounding noise: here it moves by ~3e-3 (kernel-dependent)
    assert abs(published[0] - published[1]) > 100 * abs(stable[0] - stable[1])


def test_n_boot_is_validated_and_zero_gives_no_intervals():
    for bad in (-1, 1, 2.5, True):
        with pytest.raises(UsageError, match="n_boot"):
            AnalysisOptions(features_dir="f", output_dir="o", n_boot=bad)
    assert AnalysisOptions(features_dir="f", output_dir="o").n_boot == resample.DEFAULT_N_BOOT == 200
    x, lab, _, groups = labelled(n=300)
    res = span.span_measures({"layer_0": x}, lab.astype(str), groups, seed=0, n_splits=2, n_boot=0,
                             compute_mi=False)
    assert res.intervals == {} and res.methods == {} and "probe_accuracy" in res.chance
    few = span.span_measures({"layer_0": x[:60]}, lab.astype(str)[:60], groups[:60], seed=0, n_splits=2, n_boot=0,
                             compute_mi=False)
    assert min(few.n_test.values()) < resample.FEW_TEST_ITEMS and not any("wide" in n for n in few.notes)


def test_pwcca_replicates_do_not_depend_on_the_variates_means():
    """Only centred sums enter a replicate: variates and data shifted by 1e6 give the replicate scores of the
    unshifted ones (the sums are taken after subtracting the test means, so Σhhᵀ − N·m·mᵀ does not cancel)."""
    from layerwise.measures.resample import pwcca_scorer

    rng = np.random.default_rng(3)
    n, k = 240, 3
    hx = rng.normal(size=(n, k))
    hy = hx + 0.5 * rng.normal(size=(n, k))
    groups = np.repeat(np.arange(24), 10)
    weights = rng.multinomial(24, np.full(24, 1 / 24), size=50).astype(float)
    plain, g = pwcca_scorer(hx, hy, "x", hx, groups)
    shifted, _ = pwcca_scorer(hx + 1e6, hy - 1e6, "x", hx + 1e6, groups)
    assert g == 24
    np.testing.assert_allclose(shifted(weights), plain(weights), rtol=1e-9, atol=1e-12)
