"""Projection-weighted CCA (Morcos, Raghu & Bengio 2018), centred and shift-invariant: the project's default.

CCA, as implemented in ``fit_cca`` (X: n×p features, Y: n×q one-hot labels, both centred on the train part)::

    Cxx = XᵀX/(n-1) + rx·I,  Cyy = YᵀY/(n-1) + ry·I,  Cxy = XᵀY/(n-1)
    Wx = Cxx^(-1/2), Wy = Cyy^(-1/2)            (eigh: V diag(w^-1/2) Vᵀ)
    Wx Cxy Wy = U S Vᵀ                          (SVD; S = canonical correlations on the fit data)
    A = Wx U[:, :k],  B = Wy V[:, :k],  k = min(p, q_present - 1, n - 1)

The one-hot columns sum to 1, so centred Y has rank q_present - 1 and its last direction carries no signal; it
is left out. On held-out data, ``ρ_i = corr(X a_i, Y b_i)`` (Pearson). Projection weighting (Morcos et al.; the
reference ``pwcca.py`` of google/svcca) uses the view with fewer columns, Z (the labels here): with Q the
orthonormalised held-out canonical variates of Z (QR), ``α_i = Σ_j |⟨Q_i, z_j⟩|`` over the centred columns z_j
of Z, and ``PWCCA = Σ_i α_i ρ_i / Σ_i α_i``. ``rx = ε · tr(Cxx⁰)/p`` with ε from the grid (features are
standardised on the train part, so tr/p = 1); ``ry = CCA_REG_Y · tr(Cyy⁰)/q``.

When the held-out part has fewer points than there are canonical variates (a word-span folder of a few utterances),
QR gives as many orthonormal directions as points: the variates beyond them add nothing new and weigh 0.

Undefined inputs raise :class:`~layerwise.errors.UndefinedMeasureError` (the families report ``None`` with its
message), never a number: a view with zero variance on the fit part (a constant layer, one label class), a weighted
variate whose held-out correlation is 0/0 (a view constant on the held-out part), no variate with weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from layerwise.errors import UndefinedMeasureError

CCA_REG_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)  # ε for the features, relative to mean eig(Cxx)
CCA_REG_Y = 1e-4  # fixed ε for the one-hot labels (only keeps Cyy invertible)
ZERO_REL = 1e-12  # a norm below this fraction of the largest one is rounding noise: that variate has no variance


def standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """z-score with the train part's mean/std (float64); constant columns are only centred. Constant is told
    exactly (max == min): the mean of n equal values can miss them by an ulp, and dividing that ~1e-17 std would
    blow rounding noise up to unit variance."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std[(std == 0) | (np.ptp(train, axis=0) == 0 if len(train) else True)] = 1.0
    return [(x - mean) / std for x in (train, *others)]


@dataclass
class CCAFit:
    """Regularised CCA fitted on one data part: centring means and canonical directions A (p, k), B (q, k)."""

    mean_x: np.ndarray
    mean_y: np.ndarray
    a: np.ndarray
    b: np.ndarray
    rho_fit: np.ndarray  # canonical correlations on the fit data, (k,)


ROUNDING_NEGATIVE = 1e-9  # eigenvalues of a covariance / Gram matrix below −this × the largest are not rounding


def psd_eigenvalues(w: np.ndarray) -> np.ndarray:
    """Eigenvalues (..., r) of positive semi-definite matrices with their rounding negatives set to 0. A negative
    beyond ``ROUNDING_NEGATIVE`` × the largest eigenvalue of its matrix is not rounding (the matrix was not a
    covariance): ArithmeticError, which the measures report as that layer's failure instead of a number."""
    w = np.asarray(w, np.float64)
    top = np.maximum(np.max(np.abs(w), axis=-1, keepdims=True), 1e-300)
    if (w < -ROUNDING_NEGATIVE * top).any():
        raise ArithmeticError(f"a covariance has eigenvalue {float(np.min(w / top)):.3g} × its largest: not "
                              f"positive semi-definite beyond rounding")
    return np.clip(w, 0, None)


@dataclass
class ViewEigen:
    """One view's centred covariance on a fit part in its eigenbasis: ``C = v diag(w) vᵀ`` restricted to the
    directions the data span. mean (p,); w (r,) eigenvalues >= 0; v (p, r) orthonormal columns; scale = tr(C)/p."""

    mean: np.ndarray
    w: np.ndarray
    v: np.ndarray
    scale: float


def view_eigen(x: np.ndarray) -> ViewEigen:
    """:class:`ViewEigen` of x (n, p) float64. With n > p: ``eigh`` of the p×p covariance (every direction). With
    n <= p the centred rows span at most n − 1 directions: the thin SVD of the centred rows gives them (C = V diag(s²/
    (n − 1)) Vᵀ) and leaves out the p − n directions whose eigenvalue is 0 (exactly, up to rounding): they carry no
    part of the cross-covariance (x_c v = 0), so the canonical pairs are the same (to ~1e-12, tested against the
    full eigendecomposition) and the whitened cross-covariance is n×q instead of p×q."""
    n, p = x.shape
    mean = x.mean(axis=0)
    xc = x - mean
    if n <= p:
        _, s, vt = np.linalg.svd(xc, full_matrices=False)
        w = s**2 / (n - 1)
        return ViewEigen(mean, w, vt.T, max(float(np.einsum("ij,ij->", xc, xc)) / (n - 1) / p, 1e-12))
    w, v = np.linalg.eigh(xc.T @ xc / (n - 1))  # numpy's: releases the GIL (threads over layers)
    w = psd_eigenvalues(w)
    return ViewEigen(mean, w, v, max(w.mean(), 1e-12))


class _CCAMoments:
    """Centred covariances of one fit part and their eigendecompositions, reused across the ε grid: one
    eigendecomposition per view and split, the ε grid costs one SVD per ε (of the whitened cross-covariance).
    x_eigen : :func:`view_eigen` of x when the caller has it already (the same first view against several second
    views: layers against ``layer_0``, labels against permuted labels)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, *, x_eigen: ViewEigen | None = None):
        n = len(x)
        for name, view in (("the first view (the layer)", x), ("the second view", y)):
            if n < 2 or not np.ptp(view, axis=0).max() > 0:  # every column constant (exact): CCA is 0/0
                raise UndefinedMeasureError(f"{name} is constant on the {n} fit rows (zero variance in every "
                                            f"dimension; for one-hot labels: a single class)")
        ex, ey = x_eigen or view_eigen(x), view_eigen(y)
        self.mean_x, self.mean_y = ex.mean, ey.mean
        self.cxy = (x - ex.mean).T @ (y - ey.mean) / (n - 1)
        self.wx, self.vx, self.wy, self.vy = ex.w, ex.v, ey.w, ey.v  # Cxx = Vx diag(wx) Vxᵀ (its spanned part)
        self.cxy_eig = self.vx.T @ self.cxy @ self.vy  # Cxy in the eigenbases: Vxᵀ Cxy Vy, (rx, ry), once per split
        self.scale_x, self.scale_y = ex.scale, ey.scale  # tr(C)/p (> 0: a constant view was refused above)
        self.rank_y = int(np.sum(self.wy > 1e-10 * self.wy.max())) if self.wy.max() > 0 else 0
        self.k_max = max(1, min(x.shape[1], self.rank_y, n - 1))

    def _svd(self, reg_x: float, reg_y: float):
        # (C + r I)^(-1/2) = V diag(d) Vᵀ with d = (w + r)^(-1/2): ε only shifts the eigenvalues. So
        # Wx Cxy Wy = Vx [diag(dx) (Vxᵀ Cxy Vy) diag(dy)] Vyᵀ; the SVD of the bracket, Ũ S Ṽᵀ, gives U = Vx Ũ and
        # V = Vy Ṽ (the same singular values; vectors up to a joint sign per pair, which the score ignores), and
        # A = Wx U = Vx diag(dx) Ũ, B = Vy diag(dy) Ṽ. Per ε: one SVD, no p×p inverse. (Directions left out of Vx
        # (view_eigen, n <= p) have Vᵀ Cxy = 0: their rows of the bracket are 0.) numpy's SVD, not scipy's: it
        # releases the GIL, so the layers' fits run in parallel threads (``measures.layers``).
        dx = (self.wx + reg_x * self.scale_x) ** -0.5
        dy = (self.wy + reg_y * self.scale_y) ** -0.5
        u, s, vt = np.linalg.svd(dx[:, None] * self.cxy_eig * dy[None, :], full_matrices=False)
        k = min(self.k_max, len(s))
        return dx, dy, u[:, :k], s[:k], vt[:k].T

    def fit(self, reg_x: float, reg_y: float) -> CCAFit:
        """The CCA fit for one (ε_x, ε_y): A = Vx diag(dx) Ũ_k (p, k), B = Vy diag(dy) Ṽ_k (q, k)."""
        dx, dy, u, s, v = self._svd(reg_x, reg_y)
        return CCAFit(self.mean_x, self.mean_y, self.vx @ (dx[:, None] * u), self.vy @ (dy[:, None] * v), s)

    def best_fit(self, x_dev: np.ndarray, y_dev: np.ndarray, regs) -> tuple[CCAFit, float]:
        """(fit, ε_x) of the (ε_x, ε_y) in ``regs`` whose :func:`pwcca_score` on (x_dev (n, p), y_dev (n, q)) is
        highest (the first of equal ones). The dev rows are projected on the eigenbases once, ``(x − m) Vx``, and
        per ε only scaled by dx and multiplied by Ũ_k: the dev variates (x − m) A without forming A (p, k) per ε
        (equal to rounding); A and B are formed once, for the chosen ε."""
        _check_rows(x_dev)
        px, py = (x_dev - self.mean_x) @ self.vx, (y_dev - self.mean_y) @ self.vy
        use_y = y_dev.shape[1] <= x_dev.shape[1]
        best = (-np.inf, None)
        for reg_x, reg_y in regs:
            dx, dy, u, s, v = self._svd(reg_x, reg_y)
            score = _weighted_score((px * dx) @ u, (py * dy) @ v, y_dev if use_y else x_dev, use_y)
            if score > best[0]:
                best = (score, (reg_x, dx, dy, u, s, v))
        reg_x, dx, dy, u, s, v = best[1]
        return CCAFit(self.mean_x, self.mean_y, self.vx @ (dx[:, None] * u), self.vy @ (dy[:, None] * v), s), reg_x


def fit_cca(x: np.ndarray, y: np.ndarray, *, reg_x: float, reg_y: float = CCA_REG_Y) -> CCAFit:
    """Regularised CCA of x (n, p) and y (n, q) (formulas in the module docstring); reg_* relative to tr/dim."""
    return _CCAMoments(np.asarray(x, np.float64), np.asarray(y, np.float64)).fit(reg_x, reg_y)


def _columnwise_corr(hx: np.ndarray, hy: np.ndarray) -> np.ndarray:
    """Pearson correlation of matching columns of hx, hy (n, k), (k,); NaN where a column has no variance (0/0):
    constant exactly (max == min) or a norm below ``ZERO_REL`` of the largest."""
    constant = (np.ptp(hx, axis=0) == 0) | (np.ptp(hy, axis=0) == 0)
    hx, hy = hx - hx.mean(axis=0), hy - hy.mean(axis=0)
    denom = np.sqrt((hx**2).sum(axis=0) * (hy**2).sum(axis=0))
    num = (hx * hy).sum(axis=0)
    defined = (denom > ZERO_REL * max(denom.max(), 1e-300)) & ~constant
    return np.divide(num, denom, out=np.full_like(num, np.nan), where=defined)


def _check_rows(x: np.ndarray) -> None:
    if len(x) < 2:
        raise UndefinedMeasureError(f"PWCCA needs >= 2 held-out points for a correlation, got {len(x)} (too few "
                                    f"utterances for a train/dev/test split)")


def pwcca_score(fit: CCAFit, x: np.ndarray, y: np.ndarray) -> float:
    """Projection-weighted mean of the canonical correlations of ``fit`` on data (x, y) (held-out or not).

    x : (n, p), y : (n, q) with n >= 2 (a correlation needs two points; fewer raises ``UndefinedMeasureError``).
    """
    _check_rows(x)
    use_y = y.shape[1] <= x.shape[1]
    return _weighted_score((x - fit.mean_x) @ fit.a, (y - fit.mean_y) @ fit.b, y if use_y else x, use_y)


def _weighted_score(hx: np.ndarray, hy: np.ndarray, z: np.ndarray, use_y: bool) -> float:
    """PWCCA from the canonical variates hx, hy (n, k) of n rows: z (n, ·) is the data of the weighting view (the one
    with fewer columns: y when ``use_y``), whose variates are hy (else hx)."""
    rho = _columnwise_corr(hx, hy)
    h = hy if use_y else hx
    z, h = z - z.mean(axis=0), h - h.mean(axis=0)
    q, r = np.linalg.qr(h)  # q (n, m), m = min(n, k): with fewer points than variates only m directions exist
    alpha = np.zeros(h.shape[1])
    alpha[: q.shape[1]] = np.abs(q.T @ z).sum(axis=1)  # variates beyond the m-th add no new direction: weight 0
    diag = np.zeros(h.shape[1])
    diag[: min(r.shape)] = np.abs(np.diag(r))
    alpha[diag <= 1e-10 * max(diag.max(), 1e-300)] = 0.0  # variates that vanish here (class absent) weigh nothing
    if not alpha.sum() > 0:
        raise UndefinedMeasureError(f"no canonical variate varies on the {len(h)} held-out rows: PWCCA is 0/0")
    weighted = alpha > 0
    if np.isnan(rho[weighted]).any():
        raise UndefinedMeasureError(f"{int(np.isnan(rho[weighted]).sum())} weighted canonical variate(s) have no "
                                    f"variance on the {len(h)} held-out rows (a view constant there): correlation 0/0")
    return float(alpha @ np.where(weighted, rho, 0.0) / alpha.sum())  # unweighted variates: 0 · ρ = 0


def _first_view(x: np.ndarray, split: tuple[np.ndarray, ...], cache: dict | None):
    """((x_train, x_dev, x_test) standardised on train, :func:`view_eigen` of x_train), taken from ``cache`` when it
    holds the same x and split (values compared, so a hit is exact), else computed and stored there."""
    entry = (cache or {}).get("first_view")  # one tuple, set in one step: threads share the cache (over_layers)
    if entry and entry[0].shape == x.shape and np.array_equal(entry[0], x) and all(
            np.array_equal(a, b) for a, b in zip(entry[1], split)):
        return entry[2], entry[3]
    train, dev, test = split
    parts = standardise(x[train], x[dev], x[test])
    eigen = view_eigen(parts[0]) if len(parts[0]) >= 2 else None  # < 2 rows: _CCAMoments refuses
    if cache is not None:
        cache["first_view"] = (x, split, parts, eigen)
    return parts, eigen


def pwcca_heldout(x: np.ndarray, onehot: np.ndarray, split: tuple[np.ndarray, ...],
                  keep: dict | None = None, *, cache: dict | None = None) -> tuple[float, float]:
    """PWCCA on the test part with ε chosen on the dev part; returns (score, chosen ε).

    x : ndarray (n, p) features (standardised here on the train part); onehot : (n, q); split : (train, dev, test).
    keep : a dict that receives the chosen ``fit`` and the scored ``x_test``, ``y_test`` (for rescoring resamples).
    cache : a dict kept by the caller per split: x's standardisation and eigendecomposition are reused when the
    next call has the same x and split (the permuted-label chance fit; only the label view changes).
    """
    train, dev, test = split
    (x_train, x_dev, x_test), x_eigen = _first_view(np.asarray(x, np.float64), split, cache)
    moments = _CCAMoments(x_train, onehot[train], x_eigen=x_eigen)
    fit, eps = moments.best_fit(x_dev, onehot[dev], [(eps, CCA_REG_Y) for eps in CCA_REG_GRID])
    if keep is not None:
        keep.update(fit=fit, x_test=x_test, y_test=onehot[test])
    return pwcca_score(fit, x_test, onehot[test]), eps


def views_heldout(x: np.ndarray, y: np.ndarray, split: tuple[np.ndarray, ...],
                  keep: dict | None = None, *, cache: dict | None = None) -> tuple[float, float]:
    """PWCCA of two continuous views on the test part, one ε for both views chosen on the dev part.

    x : (n, p), y : (n, q) (e.g. a layer and the filterbanks, or two layers), both standardised on the train part;
    split : (train, dev, test) index arrays. Weights use the view with fewer columns. Returns (score, chosen ε).
    keep, cache : as :func:`pwcca_heldout` (cache: the same first view against several second views, e.g.
    ``layer_0`` or the filterbanks against every layer).
    """
    train, dev, test = split
    (x_train, x_dev, x_test), x_eigen = _first_view(np.asarray(x, np.float64), split, cache)
    y = np.asarray(y, np.float64)
    y_train, y_dev, y_test = standardise(y[train], y[dev], y[test])
    moments = _CCAMoments(x_train, y_train, x_eigen=x_eigen)
    fit, eps = moments.best_fit(x_dev, y_dev, [(eps, eps) for eps in CCA_REG_GRID])
    if keep is not None:
        keep.update(fit=fit, x_test=x_test, y_test=y_test)
    return pwcca_score(fit, x_test, y_test), eps
