"""Debiased linear CKA (unbiased HSIC) of every stream against the Gram-form estimator of Song et al. (2012)."""

import numpy as np
import pytest

from layerwise.stats.cross import CrossStats
from layerwise.stats.grids import GridStats
from layerwise.stats.moments import LayerStats

LAYERS = ["layer_0", "layer_1", "layer_2"]
DIMS = [6, 6, 5]


def gram_hsic_u(x, y):
    """Song et al. (2012) unbiased HSIC with K = XXᵀ, L = YYᵀ, diagonals zeroed (the oracle; n × n matrices).
    Rows are centred first only for float64 accuracy at large offsets (the estimator does not change with a shift)."""
    n = len(x)
    x, y = x - x.mean(axis=0), y - y.mean(axis=0)
    k, l = x @ x.T, y @ y.T
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(l, 0.0)
    one = np.ones(n)
    return (np.trace(k @ l) + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * (one @ k @ l @ one)) / (n * (n - 3))


def gram_cka_debiased(x, y):
    return gram_hsic_u(x, y) / np.sqrt(gram_hsic_u(x, x) * gram_hsic_u(y, y))


def make_files(rng, lengths=(3, 50, 17, 1, 30), offset=0.0):
    mix = rng.normal(size=(6, 6))
    files = []
    for t in lengths:
        x = rng.normal(4.0, 2.0, size=(t, 6)) + offset
        files.append({"layer_0": x, "layer_1": x @ mix + rng.normal(size=(t, 6)),
                      "layer_2": rng.normal(-50.0, 0.5, size=(t, 5))})
    return files


def oracle(files):
    xs = {k: np.concatenate([f[k] for f in files]).astype(np.float64) for k in LAYERS}
    return np.array([[gram_cka_debiased(xs[a], xs[b]) for b in LAYERS] for a in LAYERS])


def stream(files, precision="float64"):
    stats = LayerStats(LAYERS, DIMS, precision=precision)
    for f in files:
        stats.update(f)
    return stats


@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_debiased_cka_equals_gram_form(offset):
    files = make_files(np.random.default_rng(0), offset=offset)
    got = stream(files).cka_debiased()
    np.testing.assert_allclose(got, oracle(files), atol=1e-9, rtol=0)
    assert 0.4 < got[0, 1] < 0.9 and abs(got[0, 2]) < 0.1


def test_debiased_cka_float32_products():
    """float32 block products: the centred rows' GEMM rounds each sum at ≈ 2⁻²⁴·sqrt(B) relative (B ≤ 2048 rows per
    block), ≈ 3e-6 of ‖X̃ᵀỸ‖²; the fourth-moment sums stay float64. 1e-6 absolute is the linear CKA's contract too."""
    files = [{k: v.astype(np.float32) for k, v in f.items()} for f in make_files(np.random.default_rng(1),
                                                                                 offset=1e4)]
    got = stream(files, "float32").cka_debiased()
    np.testing.assert_allclose(got, oracle(files), atol=1e-6, rtol=0)


def test_debiased_cka_near_zero_on_independent_features_where_linear_is_not():
    rng = np.random.default_rng(2)
    stats = LayerStats(["layer_0", "layer_1"], [768, 768])
    for _ in range(4):  # 1000 frames in 4 files
        stats.update({"layer_0": rng.normal(size=(250, 768)), "layer_1": rng.normal(size=(250, 768))})
    assert stats.cka()[0, 1] > 0.15
    assert abs(stats.cka_debiased()[0, 1]) < 0.05


def test_merged_shards_and_state_round_trip_equal_one_pass():
    files = make_files(np.random.default_rng(3), lengths=(9, 40, 2, 25, 11, 7), offset=300.0)
    whole = stream(files).cka_debiased()
    parts = [stream(files[:2]), stream(files[2:4]), stream(files[4:])]
    merged = LayerStats(LAYERS, DIMS)
    for part in parts:
        merged.merge(LayerStats.from_state(LAYERS, DIMS, part.state()))
    np.testing.assert_allclose(merged.cka_debiased(), whole, atol=1e-9)
    more = stream(files[:3])  # an unsettled state merged into, then updated further
    more.merge(stream(files[3:5]))
    more.update(files[5])
    np.testing.assert_allclose(more.cka_debiased(), whole, atol=1e-9)


def test_below_four_frames_is_nan():
    files = make_files(np.random.default_rng(4), lengths=(3,))
    assert np.isnan(stream(files).cka_debiased()).all()


def test_grid_stats_one_group_matches():
    files = make_files(np.random.default_rng(5))
    stats = GridStats(LAYERS, DIMS, None, precision="float64")
    for f in files:
        stats.update(f)
    np.testing.assert_allclose(stats.cka_debiased(), oracle(files), atol=1e-9)


def test_cross_stats_between_and_previous_equal_gram_form():
    rng = np.random.default_rng(6)
    utterances = []
    for t in (5, 40, 13, 22):
        a = rng.normal(size=(t, 4)) + 1e3
        b = a[:, :3] @ rng.normal(size=(3, 3)) + rng.normal(size=(t, 3))
        c = rng.normal(size=(t, 5)) * 3 - 7
        d = np.concatenate([a[:, :2], rng.normal(size=(t, 2))], axis=1)
        utterances.append([np.concatenate([a, b], axis=1), np.concatenate([c, d], axis=1)])
    stats = CrossStats([["l0", "l1"], ["m0", "m1"]], [[4, 3], [5, 4]])
    for u in utterances:
        stats.update(u)
    x, y = (np.concatenate([u[i] for u in utterances]) for i in (0, 1))
    first, second = [x[:, :4], x[:, 4:]], [y[:, :5], y[:, 5:]]
    want = np.array([[gram_cka_debiased(a, b) for b in second] for a in first])
    np.testing.assert_allclose(stats.cka_between_debiased(0, 1), want, atol=1e-9)
    np.testing.assert_allclose(stats.cka_between_debiased(1, 0), want.T, atol=1e-9)
    np.testing.assert_allclose(stats.cka_previous_debiased(0)[1], gram_cka_debiased(*first), atol=1e-9)
    np.testing.assert_allclose(stats.cka_previous_debiased(1)[1], gram_cka_debiased(*second), atol=1e-9)
    assert np.isnan(stats.cka_previous_debiased(0)[0])
    assert want[0, 1] > 0.3  # the planted shared directions are seen
