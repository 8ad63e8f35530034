"""pwcca.py's ε grid from one eigendecomposition per view and split equals the former per-ε whitening to 1e-10."""

import numpy as np
import pytest
from scipy import linalg

from layerwise.measures import pwcca


def _slow_fit(x, y, reg_x, reg_y):
    """The former ``_CCAMoments.fit`` (before the eigenbasis speed-up), copied: whitening applied in the original
    basis per ε, SVD of Wx Cxy Wy, A = Wx U_k, B = Wy V_k."""
    n = len(x)
    mean_x, mean_y = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - mean_x, y - mean_y
    cxx, cyy, cxy = xc.T @ xc / (n - 1), yc.T @ yc / (n - 1), xc.T @ yc / (n - 1)
    wx, vx = linalg.eigh(cxx)
    wy, vy = linalg.eigh(cyy)
    wx, wy = np.clip(wx, 0, None), np.clip(wy, 0, None)
    rank_y = int(np.sum(wy > 1e-10 * wy.max()))
    k_max = max(1, min(x.shape[1], rank_y, n - 1))
    dx = (wx + reg_x * max(wx.mean(), 1e-12)) ** -0.5
    dy = (wy + reg_y * max(wy.mean(), 1e-12)) ** -0.5
    t = ((vx @ (dx[:, None] * (vx.T @ cxy))) @ vy) * dy[None, :] @ vy.T
    u, s, vt = linalg.svd(t, full_matrices=False)
    k = min(k_max, len(s))
    a = vx @ (dx[:, None] * (vx.T @ u[:, :k]))
    b = vy @ (dy[:, None] * (vy.T @ vt[:k].T))
    return pwcca.CCAFit(mean_x, mean_y, a, b, s[:k])


def _slow_heldout(x, y, split, reg_y=None):
    """Dev-chosen ε, test score, with the slow fit (views standardised as ``pwcca`` does)."""
    train, dev, test = split
    x_train, x_dev, x_test = pwcca.standardise(x[train], x[dev], x[test])
    if reg_y is None:  # two continuous views: both standardised, one ε for both
        y_train, y_dev, y_test = pwcca.standardise(y[train], y[dev], y[test])
    else:
        y_train, y_dev, y_test = y[train], y[dev], y[test]
    best = (-np.inf, None, None)
    for eps in pwcca.CCA_REG_GRID:
        fit = _slow_fit(x_train, y_train, eps, eps if reg_y is None else reg_y)
        score = pwcca.pwcca_score(fit, x_dev, y_dev)
        if score > best[0]:
            best = (score, fit, eps)
    return pwcca.pwcca_score(best[1], x_test, y_test), best[2]


def _split(n, seed):
    order = np.random.default_rng(seed).permutation(n)
    return order[: n * 3 // 5], order[n * 3 // 5 : n * 4 // 5], order[n * 4 // 5 :]


@pytest.mark.parametrize("seed", [0, 1])
def test_views_heldout_equals_the_per_eps_whitening(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(700, 60)) * rng.uniform(0.5, 20, 60) + 50 * (np.arange(60) == 3)  # outlier dim
    y = x[:, :30] @ rng.normal(size=(30, 45)) + 3 * rng.normal(size=(700, 45))
    split = _split(len(x), seed)
    got = pwcca.views_heldout(x, y, split)
    want = _slow_heldout(x, y, split)
    assert got[1] == want[1] and got[0] == pytest.approx(want[0], abs=1e-10)


def test_label_pwcca_equals_the_per_eps_whitening_on_the_pasad_fixture():
    from tests.conftest import FIXTURES

    ref = np.load(FIXTURES / "pasad_pwcca_reference.npz")
    x, labels = ref["X"], ref["labels"]
    onehot = (labels[:, None] == np.unique(labels)[None, :]).astype(np.float64)
    for seed in (0, 1, 2):
        split = _split(len(x), seed)
        got = pwcca.pwcca_heldout(x, onehot, split)
        want = _slow_heldout(x, onehot, split, reg_y=pwcca.CCA_REG_Y)
        assert got[1] == want[1] and got[0] == pytest.approx(want[0], abs=1e-10)


@pytest.mark.parametrize("seed", [0, 1])
def test_fewer_rows_than_dims_equals_the_full_eigendecomposition(seed):
    """n <= p: view_eigen keeps the n spanned directions of each view (thin SVD); the full eigh and per-ε whitening
    of the former code give the same scores and ε."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(150, 180)) @ rng.normal(size=(180, 180)) / 13 + 30 * (np.arange(180) == 5)
    y = x[:, :90] @ rng.normal(size=(90, 170)) + 2 * rng.normal(size=(150, 170))
    split = _split(len(x), seed)  # 90 train rows < 170 and 180 dims
    got, want = pwcca.views_heldout(x, y, split), _slow_heldout(x, y, split)
    assert got[1] == want[1] and got[0] == pytest.approx(want[0], abs=1e-10)
    labels = rng.integers(0, 6, len(x))
    onehot = (labels[:, None] == np.arange(6)[None, :]).astype(np.float64)
    x_lab = x + 3 * onehot @ rng.normal(size=(6, 180))
    got, want = pwcca.pwcca_heldout(x_lab, onehot, split), _slow_heldout(x_lab, onehot, split, reg_y=pwcca.CCA_REG_Y)
    assert got[1] == want[1] and got[0] == pytest.approx(want[0], abs=1e-10)


def test_the_first_view_cache_is_exact_and_refreshes_on_other_data():
    rng = np.random.default_rng(3)
    x, y, z = rng.normal(size=(300, 20)), rng.normal(size=(300, 15)), rng.normal(size=(300, 10))
    split, cache = _split(300, 3), {}
    first = pwcca.views_heldout(x, y + x[:, :15], split, cache=cache)
    again = pwcca.views_heldout(x, z + x[:, :10], split, cache=cache)  # hit: x and split unchanged
    assert again == pwcca.views_heldout(x, z + x[:, :10], split)
    other = pwcca.views_heldout(x[::-1].copy(), y, split, cache=cache)  # other x: recomputed
    assert other == pwcca.views_heldout(x[::-1].copy(), y, split) and first == pwcca.views_heldout(x, y + x[:, :15],
                                                                                                  split)


def test_psd_eigenvalues_clip_only_rounding_and_refuse_a_real_negative():
    """A rank-deficient covariance: eigh gives rounding negatives, set to 0, the rest kept as they are; a matrix
    with a real negative eigenvalue (not a covariance) raises instead of becoming a plausible number."""
    from layerwise.measures.pwcca import psd_eigenvalues

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5)) @ rng.normal(size=(5, 12))  # rank 5 in 12 dims
    w = np.linalg.eigh(np.cov(x.T))[0]
    clipped = psd_eigenvalues(w)
    assert (clipped >= 0).all() and np.array_equal(clipped[w > 0], w[w > 0])
    assert np.count_nonzero(clipped[:7] > 1e-9 * w.max()) == 0  # the 7 null directions stay null
    batch = np.stack([w, w])
    assert np.array_equal(psd_eigenvalues(batch), np.stack([clipped, clipped]))
    with pytest.raises(ArithmeticError, match="not positive semi-definite"):
        psd_eigenvalues(np.linalg.eigh(np.diag([3.0, 1.0, -0.5]))[0])
