"""layerwise.stats.sample: seeded subsampling, PCA against sklearn on all frames, t-SNE guards."""

import numpy as np
import pytest
from sklearn.decomposition import PCA

from layerwise.errors import EmbedError
from layerwise.stats.sample import MIN_TSNE_POINTS, FrameSampler, pca_from_covariance, project, tsne_embed


def make_files(rng, lengths):
    """stem -> arrays whose rows encode (file number, row) so sampled points can be traced back."""
    files = {}
    for i, t in enumerate(lengths):
        rows = np.stack([np.full(t, i), np.arange(t)], axis=1).astype(np.float32)
        files[f"utt{i:02d}"] = {"layer_0": rows, "layer_1": rows * 2 + rng.normal(size=(t, 2)).astype(np.float32)}
    return files


def sample(files, order, max_points, seed, labels=None):
    sampler = FrameSampler(["layer_0", "layer_1"], [2, 2], max_points=max_points, seed=seed)
    for stem in order:
        sampler.add(stem, files[stem], None if labels is None else labels[stem])
    return sampler.result()


def test_sample_is_exact_subset_reproducible_and_order_independent():
    rng = np.random.default_rng(0)
    files = make_files(rng, [5, 300, 40, 1, 120])
    stems = sorted(files)
    result = sample(files, stems, 50, seed=3)
    assert len(result) == 50
    for i, (stem, row) in enumerate(zip(result.utterances, result.frame_index)):
        for key in ("layer_0", "layer_1"):  # each point is a real frame of every layer, traced back
            np.testing.assert_array_equal(result.points[key][i], files[stem][key][row])
    pairs = list(zip(result.utterances, result.frame_index))
    assert len(set(pairs)) == 50  # without replacement
    assert pairs == sorted(pairs)  # ordered by file then frame
    again = sample(files, stems, 50, seed=3)
    np.testing.assert_array_equal(again.points["layer_1"], result.points["layer_1"])
    shuffled = sample(files, stems[::-1], 50, seed=3)
    assert sorted(zip(shuffled.utterances, shuffled.frame_index)) == sorted(pairs)
    other = sample(files, stems, 50, seed=4)
    assert list(zip(other.utterances, other.frame_index)) != pairs


def test_sample_keeps_all_when_few_and_carries_labels():
    rng = np.random.default_rng(1)
    files = make_files(rng, [3, 4])
    labels = {s: np.array([f"{s}-{r}" for r in range(len(f["layer_0"]))]) for s, f in files.items()}
    result = sample(files, sorted(files), 100, seed=0, labels=labels)
    assert len(result) == 7
    assert list(result.labels) == [f"{u}-{r}" for u, r in zip(result.utterances, result.frame_index)]
    assert sample(files, sorted(files), 100, seed=0).labels is None


def test_sample_is_roughly_uniform_over_frames():
    rng = np.random.default_rng(2)
    files = make_files(rng, [100, 900])
    shares = [np.mean(sample(files, sorted(files), 200, seed=s).utterances == "utt00") for s in range(20)]
    assert 0.07 < np.mean(shares) < 0.13  # 100 of 1000 frames -> 10 %


def test_pca_from_covariance_matches_sklearn_on_all_frames():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 6)) @ np.diag([5, 3, 2, 1, 0.5, 0.1]) @ np.linalg.qr(rng.normal(size=(6, 6)))[0] + 7
    ratio, components = pca_from_covariance(np.cov(x.T, ddof=0), len(x), 4)
    reference = PCA(n_components=4).fit(x)
    np.testing.assert_allclose(ratio, reference.explained_variance_ratio_, rtol=1e-9)
    np.testing.assert_allclose(np.abs(components), np.abs(reference.components_), atol=1e-8)
    coords = project(x, x.mean(0), components)
    np.testing.assert_allclose(np.abs(coords), np.abs(reference.transform(x)), atol=1e-8)
    # three frames span two directions, whatever the dim: no trivial "100 % in 3 components"
    ratio3, _ = pca_from_covariance(np.cov(x[:3].T, ddof=0), 3, 10)
    assert len(ratio3) == 2


def test_pca_and_tsne_refuse_degenerate_input_clearly():
    with pytest.raises(EmbedError, match="at least 2 frames"):
        pca_from_covariance(np.eye(3), 1, 2)
    with pytest.raises(EmbedError, match="zero variance"):
        pca_from_covariance(np.zeros((3, 3)), 10, 2)
    with pytest.raises(EmbedError, match=f"at least {MIN_TSNE_POINTS} points"):
        tsne_embed(np.ones((MIN_TSNE_POINTS - 1, 3)), seed=0)
    with pytest.raises(EmbedError, match="identical"):
        tsne_embed(np.ones((20, 3)), seed=0)
    with pytest.raises(EmbedError, match="max_points"):
        FrameSampler(["layer_0"], [2], max_points=0, seed=0)


def test_tsne_seeded_and_keeps_clusters_apart():
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(0, 1, (30, 60)), rng.normal(8, 1, (30, 60))])
    a, b = tsne_embed(x, seed=1), tsne_embed(x, seed=1)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (60, 2)
    nearest = np.argsort(((a[:, None] - a[None]) ** 2).sum(-1), axis=1)[:, 1]
    assert np.mean((nearest < 30) == (np.arange(60) < 30)) > 0.95


def test_effective_rank_equals_direct_formula_and_planted_ranks():
    from layerwise.contract.results import VARIANCE_TARGET
    from layerwise.stats import uncertainty
    from layerwise.stats.sample import effective_rank, pca_spectrum

    assert uncertainty.VARIANCE_TARGET == VARIANCE_TARGET
    rng = np.random.default_rng(11)
    x = rng.normal(size=(300, 12)) * np.linspace(0.2, 3.0, 12)
    cov = np.cov(x.T, ddof=0)
    lam = np.linalg.eigvalsh(cov)
    p = lam / lam.sum()
    _, _, spectrum = pca_spectrum(cov, len(x), 5)
    np.testing.assert_allclose(effective_rank(spectrum), np.exp(-np.sum(p * np.log(p))), rtol=1e-12)
    for r in (1, 3, 7):  # rank-r isotropic covariance in 20 dims → r
        basis = np.linalg.qr(rng.normal(size=(20, r)))[0]
        np.testing.assert_allclose(effective_rank(np.linalg.eigvalsh(basis @ basis.T * 2.5)), r, rtol=1e-9)
    with pytest.raises(EmbedError):
        effective_rank(np.zeros(4))
