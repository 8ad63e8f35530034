"""probes.py on synthetic span features whose label content is known, and CCA against independent algebra."""

from itertools import pairwise

import numpy as np
import pytest

from layerwise.analyze.options import AnalysisOptions
from layerwise.errors import UsageError
from layerwise.measures import pasad, pwcca, span

N_CLASSES, DIM = 8, 24


def synthetic(n=960, n_utts=48, snrs=(0.0, 0.25, 0.5, 1.0, 2.0), seed=0):
    """Balanced labels; layer k = snr_k * class_mean[label] + N(0, 1) noise (snr 0: pure noise)."""
    rng = np.random.default_rng(seed)
    label_idx = np.arange(n) % N_CLASSES
    rng.shuffle(label_idx)
    labels = np.array([f"p{i}" for i in label_idx])
    groups = np.repeat(np.arange(n_utts), n // n_utts)
    means = rng.normal(size=(N_CLASSES, DIM))
    feats = {
        f"layer_{k}": (snr * means[label_idx] + rng.normal(size=(n, DIM))).astype(np.float32)
        for k, snr in enumerate(snrs)
    }
    return feats, labels, groups


def test_utterance_splits_never_share_an_utterance():
    groups = np.random.default_rng(1).integers(0, 23, size=500).astype(str)
    splits = span.utterance_splits(groups, n_splits=4, seed=7)
    assert len(splits) == 4
    for train, dev, test in splits:
        parts = [set(groups[idx]) for idx in (train, dev, test)]
        assert all(parts) and not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        assert sorted(np.r_[train, dev, test].tolist()) == list(range(500))
    again = span.utterance_splits(groups, n_splits=4, seed=7)
    assert all(np.array_equal(a[2], b[2]) for a, b in zip(splits, again))
    assert not np.array_equal(splits[0][2], span.utterance_splits(groups, n_splits=1, seed=8)[0][2])
    with pytest.raises(ValueError, match="at least 3 utterances"):
        span.utterance_splits(np.array(["a", "b", "a"]), n_splits=1, seed=0)


def test_majority_baseline_and_class_selection():
    assert span.majority_baseline(np.array(["a", "a", "b"]), np.array(["a", "b", "b", "c"])) == 0.25
    labels = np.array(list("aaabbbccd"))
    assert span.select_classes(labels, min_count=2, max_classes=None).tolist() == [True] * 8 + [False]
    assert span.select_classes(labels, min_count=1, max_classes=2).tolist() == [True] * 6 + [False] * 3


def test_subsample_keeps_whole_utterances_under_the_cap():
    groups = np.repeat(np.arange(30), np.arange(1, 31))  # utterance u has u + 1 segments; 465 in all
    mask = span.subsample_utterances(groups, max_segments=100, seed=0)
    assert 0 < mask.sum() <= 100
    kept = set(groups[mask])
    assert all(mask[groups == g].all() for g in kept)  # whole utterances only
    assert span.subsample_utterances(groups, max_segments=465, seed=0).all()
    feats, labels, groups = synthetic(snrs=(1.0,))
    res = span.span_measures(feats, labels, groups, n_splits=1, compute_mi=False, max_segments=400)
    info = res.info["span_measures_info"]
    assert info["n_segments"] <= 400 and info["n_segments_available"] == 960


def test_probe_counts_unseen_test_labels_as_errors():
    rng = np.random.default_rng(0)
    means = {"a": np.full(4, 5.0), "b": np.full(4, -5.0), "c": np.array([5.0, -5, 5, -5])}

    def make(ys):
        return np.array([means[y] for y in ys]) + 0.1 * rng.normal(size=(len(ys), 4))

    y_train, y_test = np.array(list("ab" * 20)), np.array(list("ab" * 5 + "c" * 10))
    acc = span.probe_accuracy(make(y_train), y_train, make(y_test), y_test)
    assert acc == pytest.approx(10 / 20)  # a and b all right, the 10 unseen c all wrong


def test_measures_rise_with_snr_and_noise_stays_at_baseline():
    feats, labels, groups = synthetic()
    res = span.span_measures(feats, labels, groups, seed=0, n_splits=2, compute_mi=True)
    acc, pw, mi = res.values["probe_accuracy"], res.values["pwcca"], res.values["mi"]
    keys = [f"layer_{k}" for k in range(5)]
    base = res.info["probe_majority_baseline"]
    assert 0.08 < base < 0.2  # balanced 8 classes: about 1/8
    assert all(acc[a] < acc[b] for a, b in pairwise(keys)), acc
    assert all(pw[a] < pw[b] for a, b in pairwise(keys)), pw
    assert abs(acc["layer_0"] - base) < 0.07 and abs(pw["layer_0"]) < 0.1
    assert acc["layer_4"] > 0.95 and pw["layer_4"] > 0.8
    assert mi["layer_0"] < 0.1 and mi["layer_4"] > 0.6
    info = res.info["span_measures_info"]
    assert info["n_segments"] == 960 and info["n_classes"] == N_CLASSES and info["seed"] == 0


def test_shuffled_labels_give_chance():
    feats, labels, groups = synthetic(snrs=(2.0,))
    shuffled = np.random.default_rng(3).permutation(labels)
    res = span.span_measures(feats, shuffled, groups, seed=1, n_splits=2, compute_mi=False)
    assert "mi" not in res.values
    chance = max(res.info["probe_majority_baseline"], 1 / N_CLASSES)
    assert res.values["probe_accuracy"]["layer_0"] < chance + 0.06
    assert abs(res.values["pwcca"]["layer_0"]) < 0.1


def test_canonical_correlations_match_qr_svd():
    """Björck–Golub: canonical correlations are the singular values of Qxᵀ Qy (Q from QR of centred data)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6))
    y = x[:, :3] @ rng.normal(size=(3, 3)) + rng.normal(size=(300, 3))
    qx, _ = np.linalg.qr(x - x.mean(axis=0))
    qy, _ = np.linalg.qr(y - y.mean(axis=0))
    expected = np.linalg.svd(qx.T @ qy, compute_uv=False)
    fit = pwcca.fit_cca(x, y, reg_x=1e-12, reg_y=1e-12)
    np.testing.assert_allclose(fit.rho_fit, expected, atol=1e-8)
    # The directions reproduce them as plain Pearson correlations of the variates.
    hx, hy = (x - fit.mean_x) @ fit.a, (y - fit.mean_y) @ fit.b
    np.testing.assert_allclose([np.corrcoef(hx[:, i], hy[:, i])[0, 1] for i in range(3)], expected, atol=1e-8)
    # With a single component, PWCCA is that one correlation (= multiple correlation R of least squares).
    y1 = y[:, :1]
    design = np.c_[np.ones(300), x]
    resid = y1 - design @ np.linalg.lstsq(design, y1, rcond=None)[0]
    r = np.sqrt(1 - resid.var() / y1.var())
    assert pwcca.pwcca_score(pwcca.fit_cca(x, y1, reg_x=1e-12, reg_y=1e-12), x, y1) == pytest.approx(r, abs=1e-8)


def test_pwcca_linear_relation_is_one_and_independent_noise_is_low():
    rng = np.random.default_rng(2)
    _, labels, groups = synthetic()
    classes = np.unique(labels)
    onehot = (labels[:, None] == classes[None, :]).astype(float)
    linear = onehot @ rng.normal(size=(N_CLASSES, DIM)) + 1e-6 * rng.normal(size=(len(labels), DIM))
    noise = rng.normal(size=(len(labels), DIM))
    res = span.span_measures({"layer_0": linear, "layer_1": noise}, labels, groups, seed=0, n_splits=2,
                               compute_mi=False)
    assert res.values["pwcca"]["layer_0"] > 0.99
    assert abs(res.values["pwcca"]["layer_1"]) < 0.1


def test_pwcca_stays_one_when_the_evaluation_data_lacks_a_class():
    rng = np.random.default_rng(4)
    idx = np.arange(400) % 5
    onehot = np.eye(5)[idx]
    x = onehot @ rng.normal(size=(5, 12)) + 1e-6 * rng.normal(size=(400, 12))
    fit = pwcca.fit_cca(x, onehot, reg_x=1e-4)
    present = idx != 4  # evaluation data without class 4: the variates become linearly dependent
    assert pwcca.pwcca_score(fit, x[present], onehot[present]) > 0.99


def test_span_measures_validation():
    feats, labels, groups = synthetic(snrs=(1.0,))
    with pytest.raises(ValueError, match=r"expected \(960, D\)"):
        span.span_measures({"layer_0": feats["layer_0"][:10]}, labels, groups)
    with pytest.raises(ValueError, match="groups"):
        span.span_measures(feats, labels, groups[:5])
    with pytest.raises(ValueError, match=">= 2 label classes"):
        span.span_measures(feats, np.full(960, "a"), groups)


def test_pasad_protocols_rise_with_snr_and_record_their_parts():
    feats, labels, groups = synthetic(n=480, n_utts=24, snrs=(0.0, 0.5, 2.0))
    res = span.span_measures(feats, labels, groups, seed=0, n_splits=2, cca_protocol="pasad", mi_protocol="pasad")
    assert res.unavailable == {}
    pw, mi = res.values["pwcca"], res.values["mi"]
    assert pw["layer_0"] < pw["layer_1"] < pw["layer_2"] and pw["layer_2"] > 0.8
    assert mi["layer_0"] < mi["layer_1"] < mi["layer_2"]
    info = res.info["span_measures_info"]
    assert info["cca_protocol"] == "pasad" and info["mi_protocol"] == "pasad"
    parts = [np.array(p) for p in info["pasad_cca"]["parts"]]
    assert len(parts) == 10 and sorted(np.concatenate(parts).tolist()) == list(range(480))
    for cls in np.unique(labels):  # label-stratified: every part holds 1/10 of each class (±1)
        counts = [int(np.sum(labels[p] == cls)) for p in parts]
        assert max(counts) - min(counts) <= 1
    # replaying the recorded parts, trials and ε pairs gives the reported score
    onehot = (labels[:, None] == np.unique(labels)[None, :]).astype(float)
    again, _ = pasad.pasad_cca_score(feats["layer_2"], onehot, parts, info["pasad_cca"]["trials"],
                                      info["pasad_cca"]["eps_pairs"])
    assert again == pytest.approx(pw["layer_2"], abs=1e-12)
    # Protocols are validated once, by the analysis options; the measures trust them.
    with pytest.raises(UsageError, match="cca_protocol='svcca'"):
        AnalysisOptions(features_dir="f", output_dir="o", cca_protocol="svcca")
    with pytest.raises(UsageError, match="mi_protocol='knn'"):
        AnalysisOptions(features_dir="f", output_dir="o", mi_protocol="knn")
