"""layerwise.stats.moments against direct numpy computations on the concatenated real frames."""

import numpy as np
import pytest

from layerwise.errors import StatsError
from layerwise.stats.moments import LayerStats

LAYERS = ["layer_0", "layer_1", "layer_2"]


def make_files(rng, lengths=(3, 200, 17, 1), dim=6):
    """Files of very different lengths; layer_1 is a noisy linear map of layer_0, layer_2 independent, big means."""
    files = []
    mix = rng.normal(size=(dim, dim))
    for t in lengths:
        x = rng.normal(4.0, 2.0, size=(t, dim))
        files.append({
            "layer_0": x.astype(np.float32),
            "layer_1": (x @ mix + rng.normal(size=(t, dim))).astype(np.float32),
            "layer_2": rng.normal(-50.0, 0.5, size=(t, dim)).astype(np.float16),
        })
    return files


def concat(files, key):
    return np.concatenate([f[key] for f in files]).astype(np.float64)


def accumulate(files, layers=LAYERS, dim=6, precision="float64"):
    stats = LayerStats(layers, [dim] * len(layers), precision=precision)
    for f in files:
        stats.update(f)
    return stats


def gram_cka(x, y):
    """Linear CKA via n×n Gram matrices and the centring matrix H (HSIC form), the test oracle."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l = x @ x.T, y @ y.T
    hsic = lambda a, b: np.trace(a @ h @ b @ h) / (n - 1) ** 2
    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


def test_moments_equal_numpy_on_concatenated_frames():
    rng = np.random.default_rng(0)
    files = make_files(rng)
    stats = accumulate(files)
    assert stats.n == sum(f["layer_0"].shape[0] for f in files)
    for key in LAYERS:
        x = concat(files, key)
        np.testing.assert_allclose(stats.layer_mean()[key], x.mean(), rtol=1e-12)
        np.testing.assert_allclose(stats.layer_std()[key], x.std(), rtol=1e-10)
        np.testing.assert_allclose(stats.dim_mean(key), x.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(stats.dim_var(key), x.var(axis=0), rtol=1e-9)
        np.testing.assert_allclose(stats.covariance(key), np.cov(x.T, ddof=0), rtol=1e-9, atol=1e-12)


def test_legacy_1_t_d_layout_accepted():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(9, 4))
    a, b = LayerStats(["layer_0"], [4]), LayerStats(["layer_0"], [4])
    a.update({"layer_0": x[None]})
    b.update({"layer_0": x})
    np.testing.assert_array_equal(a.covariance("layer_0"), b.covariance("layer_0"))
    assert a.n == 9


def test_cka_equals_gram_matrix_hsic_formula():
    rng = np.random.default_rng(3)
    files = make_files(rng, lengths=(7, 30, 12))
    stats = accumulate(files)
    cka = stats.cka()
    for i, a in enumerate(LAYERS):
        for j, b in enumerate(LAYERS):
            np.testing.assert_allclose(cka[i, j], gram_cka(concat(files, a), concat(files, b)), rtol=1e-8)
    np.testing.assert_allclose(np.diag(cka), 1.0)
    np.testing.assert_array_equal(cka, cka.T)
    assert 0.5 < cka[0, 1] < 1.0 and cka[0, 2] < 0.3


def test_cka_invariant_to_rotation_scaling_and_translation():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(80, 5)) + 10.0
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    y = 3.7 * x @ q - 2.0
    z = rng.normal(size=(80, 5))
    stats = LayerStats(["layer_0", "layer_1", "layer_2"], [5, 5, 5], precision="float64")
    for part in (slice(0, 30), slice(30, 80)):
        stats.update({"layer_0": x[part], "layer_1": y[part], "layer_2": z[part]})
    cka = stats.cka()
    np.testing.assert_allclose(cka[0, 1], 1.0, rtol=1e-10)
    np.testing.assert_allclose(cka[0, 2], cka[1, 2], rtol=1e-8)
    # ...while the uncentered cosine of the same pair is not 1
    assert stats.cosine()[0, 1] < 0.99


def test_cka_layers_of_different_dims_and_cosine_nan():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(50, 3))
    y = np.concatenate([x @ rng.normal(size=(3, 3)), rng.normal(size=(50, 4))], axis=1)
    stats = LayerStats(["layer_0", "layer_1"], [3, 7], precision="float64")
    stats.update({"layer_0": x, "layer_1": y})
    np.testing.assert_allclose(stats.cka()[0, 1], gram_cka(x, y), rtol=1e-8)
    assert np.isnan(stats.cosine()[0, 1]) and stats.cosine()[0, 0] == pytest.approx(1.0)


def test_cosine_equals_direct_frobenius_cosine():
    rng = np.random.default_rng(6)
    files = make_files(rng)
    cos = accumulate(files).cosine()
    for i, a in enumerate(LAYERS):
        for j, b in enumerate(LAYERS):
            x, y = concat(files, a), concat(files, b)
            np.testing.assert_allclose(cos[i, j], (x * y).sum() / np.linalg.norm(x) / np.linalg.norm(y), rtol=1e-9)


def test_streaming_merge_equals_one_shot():
    rng = np.random.default_rng(7)
    files = make_files(rng, lengths=(4, 60, 9, 33, 2))
    one_shot = LayerStats(LAYERS, [6] * 3, precision="float64")
    one_shot.update({k: np.concatenate([f[k] for f in files]) for k in LAYERS})
    left, right = accumulate(files[:2]), accumulate(files[2:])
    merged = left.merge(right)
    assert merged.n == one_shot.n
    np.testing.assert_allclose(merged.mean, one_shot.mean, rtol=1e-12)
    for a in LAYERS:
        for b in LAYERS:
            np.testing.assert_allclose(merged.block(a, b), one_shot.block(a, b), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(merged.cka(), one_shot.cka(), rtol=1e-10)
    np.testing.assert_allclose(merged.cosine(), one_shot.cosine(), rtol=1e-10)
    assert merged.merge(LayerStats(LAYERS, [6] * 3)).n == one_shot.n  # merging empty stats is a no-op
    with pytest.raises(StatsError):
        merged.merge(LayerStats(LAYERS[:2], [6, 6]))


def test_large_mean_small_variance_stays_accurate():
    """Centred accumulation (float32 products by default): mean 1e4 with std 1e-2 would lose every digit in
    XᵀX − nμμᵀ."""
    rng = np.random.default_rng(8)
    x = 1e4 + 1e-2 * rng.normal(size=(300, 3))
    y = x @ rng.normal(size=(3, 3))
    stats = LayerStats(["layer_0", "layer_1"], [3, 3], precision="float32")
    for part in np.array_split(np.arange(300), 7):
        stats.update({"layer_0": x[part], "layer_1": y[part]})
    np.testing.assert_allclose(stats.dim_var("layer_0"), x.var(axis=0), rtol=1e-6)
    np.testing.assert_allclose(stats.cka()[0, 1], gram_cka(x - x.mean(0), y - y.mean(0)), rtol=1e-6)


def test_constant_layer_gives_nan_cka_and_errors_are_clear():
    stats = LayerStats(["layer_0", "layer_1"], [2, 2])
    with pytest.raises(StatsError, match="0 frames"):
        stats.layer_mean()
    stats.update({"layer_0": np.ones((5, 2)), "layer_1": np.arange(10.0).reshape(5, 2)})
    assert np.isnan(stats.cka()[0, 1]) and np.isnan(stats.cka()[0, 0]) and stats.cka()[1, 1] == 1.0
    with pytest.raises(StatsError, match="missing"):
        stats.update({"layer_0": np.ones((5, 2))})
    with pytest.raises(StatsError, match=r"expected \(T, 2\)"):
        stats.update({"layer_0": np.ones((5, 3)), "layer_1": np.ones((5, 2))})
    with pytest.raises(StatsError, match="different frame counts"):
        stats.update({"layer_0": np.ones((5, 2)), "layer_1": np.ones((4, 2))})


def feature_cka(x, y):
    """Linear CKA in feature space, pure float64 numpy on the concatenated frames."""
    x, y = x - x.mean(0), y - y.mean(0)
    return np.linalg.norm(x.T @ y) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


@pytest.mark.parametrize("offset, scale", [(0.0, 1.0), (1e4, 1e-2)])
def test_float32_products_within_contract_of_pure_float64(offset, scale):
    """Default precision: per-dimension variances within 1e-6 relative, CKA within 1e-6 absolute of float64 numpy,
    also for a large offset with a small spread; files long enough to span several product blocks."""
    rng = np.random.default_rng(9)
    layers, dim = ["layer_0", "layer_1", "layer_2", "layer_3"], 48
    mix = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    files = []
    for t in (700, 2500, 90, 1300):
        h = rng.normal(size=(t, dim)) + rng.normal(size=dim)  # per-file offset as well
        arrays = {}
        for k, key in enumerate(layers):
            h = np.tanh(h @ mix) + 0.3 * rng.normal(size=(t, dim))
            arrays[key] = (offset + scale * (h + 5.0 * k)).astype(np.float32)
        files.append(arrays)
    stats = accumulate(files, layers, dim, precision="float32")
    cka = stats.cka()
    for i, a in enumerate(layers):
        x = concat(files, a)
        np.testing.assert_allclose(stats.dim_var(a), x.var(axis=0), rtol=1e-6)
        np.testing.assert_allclose(stats.dim_mean(a), x.mean(axis=0), rtol=1e-12)
        for j, b in enumerate(layers[i + 1:], i + 1):
            assert abs(cka[i, j] - feature_cka(x, concat(files, b))) < 1e-6
    assert 0.05 < cka[0, 1] < 0.99


def test_state_round_trip_and_merge_of_partials_equal_one_pass():
    """Partial statistics written as arrays and merged equal one pass over all files (float32 products are
    per file group; the merge is float64): 1e-9 relative."""
    rng = np.random.default_rng(10)
    files = make_files(rng, lengths=(40, 300, 9, 120, 77, 5))
    whole = accumulate(files, precision="float32")
    parts = [accumulate(files[:2], precision="float32"), accumulate(files[2:5], precision="float32"),
             accumulate(files[5:], precision="float32")]
    for part in parts:
        part.end_group()
    whole_grouped = LayerStats(LAYERS, [6] * 3, precision="float32")
    for group in (files[:2], files[2:5], files[5:]):
        for f in group:
            whole_grouped.update(f)
        whole_grouped.end_group()
    merged = LayerStats.from_state(LAYERS, [6] * 3, parts[0].state(), precision="float32")
    for part in parts[1:]:
        merged.merge(LayerStats.from_state(LAYERS, [6] * 3, part.state(), precision="float32"))
    assert merged.n == whole.n == sum(len(f["layer_0"]) for f in files)
    np.testing.assert_allclose(merged.cka(), whole_grouped.cka(), rtol=1e-9)
    np.testing.assert_allclose(merged.cosine(), whole_grouped.cosine(), rtol=1e-9)
    for key in LAYERS:
        np.testing.assert_allclose(merged.covariance(key), whole_grouped.covariance(key), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(merged.dim_mean(key), whole.dim_mean(key), rtol=1e-12)
    with pytest.raises(StatsError, match="does not fit"):
        LayerStats.from_state(LAYERS[:2], [6, 5], parts[0].state())
