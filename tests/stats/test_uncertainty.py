"""stats.uncertainty: the jackknife intervals of the per-layer statistics against brute-force recomputation."""

import numpy as np
import pytest
from scipy.stats import t as student_t

from layerwise.stats import uncertainty
from layerwise.stats.moments import LayerStats

KEYS = ["layer_0", "layer_1"]


def make_files(rng, count, offset=1e3):
    files = []
    for i in range(count):
        t = int(rng.integers(5, 40))
        shift = rng.normal(size=4)  # each utterance its own mean: utterances are the unit
        x = rng.normal(size=(t, 4)) + shift + offset
        files.append({"layer_0": x, "layer_1": x[:, :3] * 2.0 + rng.normal(size=(t, 3))})
    return files


def stream(files):
    stats = LayerStats(KEYS, [4, 3])
    for f in files:
        stats.update(f)
    return stats


def test_leave_one_out_moments_equal_recomputation_without_each_file():
    files = make_files(np.random.default_rng(0), 6)
    count, means, m2 = stream(files).file_sums()
    mean_out, std_out = uncertainty.leave_one_out_moments(count, means, m2)
    for f in range(len(files)):
        for i, key in enumerate(KEYS):
            rest = np.concatenate([g[key] for j, g in enumerate(files) if j != f])
            np.testing.assert_allclose(mean_out[f, i], rest.mean(), rtol=1e-12)
            np.testing.assert_allclose(std_out[f, i], rest.std(), rtol=1e-9)


def test_file_sums_survive_state_and_merge():
    files = make_files(np.random.default_rng(1), 7)
    one = stream(files).file_sums()
    merged = LayerStats.from_state(KEYS, [4, 3], stream(files[:3]).state())
    merged.merge(LayerStats.from_state(KEYS, [4, 3], stream(files[3:]).state()))
    for a, b in zip(one, merged.file_sums()):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_jackknife_of_a_mean_is_the_classical_t_interval():
    """For the mean of G equal groups the jackknife se is s/sqrt(G) (ddof 1): the textbook t interval."""
    values = np.random.default_rng(2).normal(size=9)
    replicates = (values.sum() - values) / (len(values) - 1)
    low, high = uncertainty.jackknife_interval(values.mean(), replicates)
    half = student_t.ppf(0.975, 8) * values.std(ddof=1) / 3.0
    np.testing.assert_allclose([low, high], [values.mean() - half, values.mean() + half], rtol=1e-10)


def test_mean_and_std_intervals_narrow_with_more_utterances():
    rng = np.random.default_rng(3)
    widths = []
    for count in (8, 32):
        files = make_files(rng, count)
        stats = stream(files)
        full = {k: (stats.layer_mean()[k], stats.layer_std()[k]) for k in KEYS}
        out = uncertainty.StatisticIntervals()
        uncertainty.moment_intervals({k: stats for k in KEYS}, full, out)
        low, high = out.intervals["mean"]["layer_0"]
        assert low <= full["layer_0"][0] <= high
        widths.append(high - low)
        assert "exact group jackknife" in out.methods["std"]
    assert widths[1] < widths[0]


def brute_statistics(x_prev, x):
    """Direct numpy: components_90 and effective rank of x's covariance; linear and debiased CKA with x_prev."""
    lam = np.clip(np.linalg.eigvalsh(np.cov(x.T, ddof=0))[::-1], 0, None)
    p = lam / lam.sum()
    needed = int(np.searchsorted(np.cumsum(p), 0.9 - 1e-12)) + 1
    p = p[p > 0]
    a, b = x_prev - x_prev.mean(0), x - x.mean(0)
    n = len(a)
    linear = np.linalg.norm(a.T @ b) ** 2 / (np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b))

    def hsic(u, v):  # Kornblith et al.'s feature-space unbiased HSIC (times n(n−3))
        su, sv = (u * u).sum(1), (v * v).sum(1)
        return (np.linalg.norm(u.T @ v) ** 2 - n / (n - 2) * su @ sv + su.sum() * sv.sum() / ((n - 1) * (n - 2)))

    debiased = hsic(a, b) / np.sqrt(hsic(a, a) * hsic(b, b))
    return {"pca_components_90": needed, "effective_rank": np.exp(-np.sum(p * np.log(p))),
            "cka_with_previous": linear, "cka_with_previous_debiased": debiased}


def test_sample_intervals_equal_brute_force_leave_group_out():
    rng = np.random.default_rng(4)
    k = 120
    utterances = np.array([f"u{i // 5:02d}" for i in range(k)])  # 24 utterances → dealt into MAX_GROUPS groups
    base = rng.normal(size=(k, 6)) * np.linspace(0.3, 2.0, 6)
    points = {"layer_0": base, "layer_1": base[:, :5] + 0.5 * rng.normal(size=(k, 5))}
    full = {name: {"layer_1": 0.5} for name in uncertainty.SAMPLE_STATISTICS}
    out = uncertainty.StatisticIntervals()
    uncertainty.sample_intervals(points, utterances, full, seed=7, out=out)
    groups = uncertainty.utterance_groups(utterances, 7)
    assert len(np.unique(groups)) == uncertainty.MAX_GROUPS
    reps = [brute_statistics(points["layer_0"][groups != g], points["layer_1"][groups != g])
            for g in range(uncertainty.MAX_GROUPS)]
    for name in uncertainty.SAMPLE_STATISTICS:
        low, high = uncertainty.jackknife_interval(0.5, np.array([r[name] for r in reps]))
        if name == "pca_components_90":
            low, high = np.floor(low), np.ceil(high)
        np.testing.assert_allclose(out.intervals[name]["layer_1"], (low, high), rtol=1e-8, atol=1e-10)
    assert "layer_0" not in out.intervals.get("cka_with_previous", {})


def test_one_utterance_gives_reasons_not_intervals():
    points = {"layer_0": np.random.default_rng(5).normal(size=(30, 3))}
    out = uncertainty.StatisticIntervals()
    uncertainty.sample_intervals(points, np.array(["a"] * 30), {}, seed=0, out=out)
    assert not out.intervals and "1 utterance" in out.reasons["effective_rank"]


@pytest.mark.slow
def test_time_budget_13_layers_768_dims_500_points():
    import time

    rng = np.random.default_rng(6)
    points = {f"layer_{i}": rng.normal(size=(500, 768)).astype(np.float32) for i in range(13)}
    utterances = np.array([f"u{i // 10:03d}" for i in range(500)])
    full = {name: {k: 1.0 for k in points} for name in uncertainty.SAMPLE_STATISTICS}
    start = time.perf_counter()
    uncertainty.sample_intervals(points, utterances, full, seed=0, out=uncertainty.StatisticIntervals())
    assert time.perf_counter() - start < 6.0  # budget 3 s on 2 idle cores; slack for a shared machine
