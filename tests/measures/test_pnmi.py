"""measures/pnmi.py: PNMI and purities against a direct contingency-table computation, frame labels at centres,
the utterance bootstrap and the permuted-label chance level."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import mutual_info_score

from layerwise.contract.alignments import Segment
from layerwise.errors import UndefinedMeasureError
from layerwise.measures import pnmi


def direct(phones, clusters):
    """PNMI, phone purity, cluster purity by loops over the pairs (sklearn's MI in nats, H by its definition)."""
    n = len(phones)
    ph_values, cl_values = sorted(set(phones)), sorted(set(clusters))
    joint = {(a, b): 0 for a in ph_values for b in cl_values}
    for a, b in zip(phones, clusters):
        joint[(a, b)] += 1
    h = -sum((c / n) * np.log(c / n) for c in (list(phones).count(a) for a in ph_values))
    phone_purity = sum(max(joint[(a, b)] for a in ph_values) for b in cl_values) / n
    cluster_purity = sum(max(joint[(a, b)] for b in cl_values) for a in ph_values) / n
    return mutual_info_score(phones, clusters) / h, phone_purity, cluster_purity


def test_scores_equal_the_direct_contingency_computation():
    rng = np.random.default_rng(0)
    phones = rng.integers(0, 7, size=3000)
    clusters = (phones * 3 + rng.integers(0, 5, size=3000)) % 20  # dependent, not pure
    got = pnmi.scores(pnmi.contingency(phones, clusters, 7, 20))
    want = direct(phones.tolist(), clusters.tolist())
    assert got["pnmi"] == pytest.approx(want[0], abs=1e-12)
    assert got["phone_purity"] == pytest.approx(want[1], abs=1e-12)
    assert got["cluster_purity"] == pytest.approx(want[2], abs=1e-12)
    assert 0.2 < got["pnmi"] < 0.9


def test_pure_clusters_give_pnmi_one_and_independent_ones_near_zero():
    rng = np.random.default_rng(1)
    phones = rng.integers(0, 5, size=20000)
    pure = pnmi.scores(pnmi.contingency(phones, phones * 4 + rng.integers(0, 4, size=20000), 5, 20))
    assert pure["pnmi"] == pytest.approx(1.0, abs=1e-12) and pure["phone_purity"] == pytest.approx(1.0)
    independent = pnmi.scores(pnmi.contingency(phones, rng.integers(0, 20, size=20000), 5, 20))
    assert independent["pnmi"] < 0.01


def test_one_phone_or_no_frame_is_undefined():
    with pytest.raises(UndefinedMeasureError, match="H\\(phone\\) = 0"):
        pnmi.scores(pnmi.contingency(np.zeros(10, int), np.arange(10) % 3, 1, 3))
    with pytest.raises(UndefinedMeasureError, match="empty"):
        pnmi.scores(np.zeros((3, 4)))


def test_frames_take_the_phone_at_their_centre_and_silence_or_gaps_are_excluded():
    segments = [Segment(0.0, 0.1, "AH0"), Segment(0.1, 0.2, "sil"), Segment(0.25, 0.4, "B")]
    centres = np.array([0.05, 0.099, 0.1, 0.15, 0.22, 0.25, 0.39, 0.4, 0.5])
    labels, status = pnmi.label_frames(centres, segments)
    assert labels.tolist() == ["AH", "AH", "", "", "", "B", "B", "", ""]
    assert status.tolist() == [0, 0, 2, 2, 1, 0, 0, 1, 1]  # LABELLED, SILENCE, NO_PHONE


def test_utterance_tables_sum_to_the_whole_table_and_the_bootstrap_brackets_the_estimate():
    rng = np.random.default_rng(2)
    per_utt = []
    for _ in range(30):
        ph = rng.integers(0, 4, size=int(rng.integers(20, 60)))
        per_utt.append((ph, (ph + (rng.random(len(ph)) < 0.3)) % 6))
    tables = pnmi.UtteranceTables.of(per_utt, (4, 6))
    whole = pnmi.contingency(np.concatenate([p for p, _ in per_utt]), np.concatenate([c for _, c in per_utt]), 4, 6)
    np.testing.assert_array_equal(tables.table(), whole)
    weights = np.zeros(30)
    weights[[0, 0, 5]] = 1
    weights[0] = 2  # utterance 0 twice, 5 once
    twice = 2 * pnmi.contingency(*per_utt[0], 4, 6) + pnmi.contingency(*per_utt[5], 4, 6)
    np.testing.assert_array_equal(tables.table(weights), twice)
    estimate = pnmi.scores(whole)
    intervals = pnmi.bootstrap(tables, n_boot=100, seed=0)
    for name in pnmi.SCORES:
        low, high = intervals[name]
        assert low <= estimate[name] <= high and high - low < 0.3
    assert pnmi.bootstrap(tables, n_boot=0, seed=0) == dict.fromkeys(pnmi.SCORES)


def test_chance_keeps_the_margins_and_sits_near_the_majority_phone():
    rng = np.random.default_rng(3)
    phones = rng.choice(4, size=5000, p=[0.55, 0.25, 0.15, 0.05])
    table = pnmi.contingency(phones, phones * 2 + rng.integers(0, 2, size=5000), 4, 8)
    chance = pnmi.permuted_chance(table, seed=0)
    assert chance["pnmi"] < 0.01
    assert chance["phone_purity"] == pytest.approx(0.55, abs=0.03)  # every cluster's majority is the common phone
    assert pnmi.scores(table)["pnmi"] == pytest.approx(1.0)


def _brute_bootstrap(per_utt, shape, n_boot, seed):
    """The bootstrap written out: the same draws, each resample's table built from the drawn utterances' frames,
    raw 2.5/50/97.5 percentiles shifted so the median is the estimate, widened to hold it, clipped to [0, 1]."""
    rng = np.random.default_rng(seed)
    n = len(per_utt)
    whole = pnmi.scores(pnmi.contingency(np.concatenate([p for p, _ in per_utt]),
                                         np.concatenate([c for _, c in per_utt]), *shape))
    found = {name: [] for name in pnmi.SCORES}
    for _ in range(n_boot):
        drawn = rng.integers(n, size=n)
        ph = np.concatenate([per_utt[i][0] for i in drawn])
        cl = np.concatenate([per_utt[i][1] for i in drawn])
        for name, v in pnmi.scores(pnmi.contingency(ph, cl, *shape)).items():
            found[name].append(v)
    out = {}
    for name, v in found.items():
        lo, med, hi = np.percentile(v, [2.5, 50, 97.5])
        lo, hi = min(lo - (med - whole[name]), whole[name]), max(hi - (med - whole[name]), whole[name])
        out[name] = (max(0.0, lo), min(1.0, hi))
    return whole, out


def test_bootstrap_is_centred_on_the_estimate_by_the_median_shift_and_clipped_to_0_1():
    rng = np.random.default_rng(4)
    per_utt = []
    for _ in range(12):  # few frames per cluster: resampling utterances inflates PNMI (raw percentiles sit above)
        ph = rng.integers(0, 5, size=30)
        per_utt.append((ph, rng.integers(0, 40, size=30)))
    tables = pnmi.UtteranceTables.of(per_utt, (5, 40))
    whole, expected = _brute_bootstrap(per_utt, (5, 40), 60, 7)
    found = pnmi.bootstrap(tables, n_boot=60, seed=7)
    for name in pnmi.SCORES:
        np.testing.assert_allclose(found[name], expected[name], rtol=1e-12, atol=1e-12)
    assert found["pnmi"][0] < whole["pnmi"] < found["pnmi"][1]  # the raw percentiles would start above it
    perfect = [(ph, ph) for ph, _ in per_utt]  # every cluster one phone: purity 1 in every resample
    found = pnmi.bootstrap(pnmi.UtteranceTables.of(perfect, (5, 40)), n_boot=60, seed=7)
    assert all(0.0 <= found[name][0] <= found[name][1] <= 1.0 for name in pnmi.SCORES)
    assert found["phone_purity"] == pytest.approx((1.0, 1.0), abs=1e-12)


def test_one_utterance_gets_no_interval_and_its_reason():
    tables = pnmi.UtteranceTables.of([(np.array([0, 1, 1]), np.array([0, 1, 1]))], (2, 2))
    assert pnmi.bootstrap(tables, n_boot=50, seed=0) == dict.fromkeys(pnmi.SCORES)
    assert pnmi.no_interval_reason(tables, 50).startswith("1 utterance(s) scored: the interval resamples utterances")
