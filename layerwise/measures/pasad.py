"""The CCA and MI protocol of the published layer-wise analyses (Pasad et al., ASRU 2021, ICASSP 2023, TACL 2024).

Numbers computed this way can be put next to the published curves; the project's default (``probes``: centred,
shift-invariant PWCCA on utterance splits) cannot. Written from the description of that code (its ``cca_core.CCA``
and ``tools.CCACrossVal``), checked against numbers it produced (tests/data/pasad_pwcca_reference.npz).

CCA of view1 X (n, dx) and view2 Y (n, dy) fitted on one data part, with regularisation (εx, εy)::

    C = np.cov([Xᵀ; Yᵀ])                          (ddof 1)  -> Cxx, Cxy, Cyy
    Cxx /= max|Cxx|,  Cyy /= max|Cyy|,  Cxy /= sqrt(max|Cxx| · max|Cyy|)      (max-normalised)
    keep dims with diag(Cxx) >= εx (diag(Cyy) >= εy)          (near-constant dims dropped)
    Cxx += εx I,  Cyy += εy I
    Wx = sqrtm(pinv(Cxx)),  Wy = sqrtm(pinv(Cyy))             (eigh; pseudo-inverse square roots)
    Wx Cxy Wy = U S Vᵀ;   Px = Uᵀ Wx,  Py = Vᵀ Wy             (projections, rows = directions)

Scoring a fitted (Px, Py) on a part (its own means m, k = min(#kept x dims, #kept y dims))::

    hx = Px[:k] (X_keptᵀ − mx),  hy = Py[:k] (Y_keptᵀ − my)              (k, n)
    ρ_i = ⟨hx_i, hy_i⟩ / (‖hx_i‖ ‖hy_i‖)
    Q = qr((hx + mx[:k])ᵀ)  — the means of the first k kept dims added back (uncentred weighting)
    α = Σ_j |Qᵀ x_j| over the first k kept dims of the *uncentred* X;  score_x = Σ α_i ρ_i / Σ α_i

and the score is score_x when X has fewer kept dims than Y, else score_y (``mean_score``: their mean). When the
part has fewer points than k, Q has only n columns: directions beyond them weigh 0 (the reference code raises).

One-hot label views: the one-hot columns sum to 1, so the centred labels have a null direction; the last canonical
pair then lies along it, its label variate is rounding noise (norm ~1e-10 against ~3 for the others) and its
correlation a random number, yet the uncentred weighting gives it about 1/k of the weight. The reference's phone and
word scores therefore carry a rounding-noise term of ~0.01–0.03 that changes with the BLAS kernels and with a 1e-15
relative change of the input. For a fixed kernel set it is deterministic: with OpenBLAS's Haswell kernels (those
the reference numbers were made with) every stored score of the phone cases is reproduced to ≤ 2.2e-16, and layer
vs layer to ~1e-14 with any kernels (tests/test_pasad.py shows both, and the size of the noise).

Cross-validation: 10 parts (label-stratified for label views), 3 trials of (dev part, test part) with the other
8 parts as training set; per trial the ε pairs are fitted on the training set and scored on dev, the best pair's
fit is scored on test; the result is the mean test score. The reference draws parts, trials and the order of ε
pairs unseeded; :func:`stratified_parts`, :func:`draw_trials` and :func:`draw_eps_pairs` draw them from a seed.

Fallback and retries, as the reference's ``CCACrossVal.train_cca`` / ``cca_trainer``: the ε pairs are an ordered
list of candidates — the 9 pairs of ``EPS_VALUES`` shuffled, then the 16 pairs of the larger ``EPS_FALLBACK``
shuffled — tried in order until ``N_EPS_PAIRS`` fits have succeeded; a pair whose fit fails (``LinAlgError``) is
recorded and the next, eventually larger, ε is tried. A trial on which every pair fails is recorded and replaced by
a (dev, test) pair of parts no trial uses (the reference draws it at random among them; here in ascending order),
until ``N_TRIALS`` trials have succeeded; fewer is a ``LinAlgError`` (the reference stops at an assertion there).

Speed: the published order of operations (``pinv`` + ``sqrtm`` per ε pair) is kept. Caching one
eigendecomposition per view and applying ε to its eigenvalues was measured (a 768- vs 768-dim layer pair, 1,500
frames: 106 s → 65 s per layer) but does not give the same numbers: the uncentred weighting adds each kept dim's mean
to a canonical variate whose sign is arbitrary (LAPACK's), so the score moves with rounding (2.2e-3 under a 1e-15
relative change of the input, with the reference order itself) and the faster order differed by ~1e-2. The default
protocol (``measures/pwcca.py``) has the fast path, exact to 1e-10.

Where the reference divides 0 by 0 (a view constant on the fit part: max|C| = 0; a test part on which a view is
constant: NaN correlations; MI of a part holding one label: H = 0) this module raises
:class:`~layerwise.errors.UndefinedMeasureError` instead of a NaN or a 0.
"""

from __future__ import annotations

import logging

import numpy as np

from layerwise.errors import UndefinedMeasureError

log = logging.getLogger(__name__)

N_PARTS = 10  # the reference's num_splits
N_TRIALS = 3  # the reference's num_trials
N_EPS_PAIRS = 6  # the reference's num_reg_param_values
EPS_VALUES = (1e-10, 1e-11, 1e-9)  # the reference's first three ε values; pairs from these are tried first
EPS_FALLBACK = (1e-8, 1e-7, 1e-6, 1e-5)  # the reference's larger ε values: their 16 pairs follow, for failed fits
MI_CLUSTERS = {"phone": 500, "word": 5000}  # the reference's k-means sizes (capped by the number of points)
MI_BATCH = {"phone": 1500, "word": 4000}
MI_MAX_ITER = 500


class PasadFit:
    """Projections fitted on one part: ``px``, ``py`` (rows = the min(kept x, kept y) directions), kept-dim masks.

    Views are taken as (dims, points) arrays, the layout of the reference code (``x[idx].T``): the weighting of the
    one-hot label view's null direction amplifies rounding, so operations follow the reference's order and layout.
    """

    def __init__(self, vx: np.ndarray, vy: np.ndarray, eps_x: float, eps_y: float, cov: np.ndarray | None = None):
        """vx (dx, n), vy (dy, n); ``cov``: ``np.cov(vx, vy)`` when already computed (it does not depend on ε)."""
        dx = vx.shape[0]
        cov = np.cov(vx, vy) if cov is None else cov.copy()  # normalised in place below
        sxx, sxy, syy = cov[:dx, :dx], cov[:dx, dx:], cov[dx:, dx:]
        xmax, ymax = np.max(np.abs(sxx)), np.max(np.abs(syy))
        _check_views(vx, vy, xmax, ymax)
        sxx /= xmax
        syy /= ymax
        sxy /= np.sqrt(xmax * ymax)
        self.x_idx, self.y_idx = np.abs(np.diagonal(sxx)) >= eps_x, np.abs(np.diagonal(syy)) >= eps_y
        if not self.x_idx.any() or not self.y_idx.any():
            raise np.linalg.LinAlgError(f"no dimension has a normalised variance >= ε ({eps_x}, {eps_y})")
        sxx = sxx[self.x_idx][:, self.x_idx]
        syy = syy[self.y_idx][:, self.y_idx]
        sxy = sxy[self.x_idx][:, self.y_idx]
        sxx += eps_x * np.eye(sxx.shape[0])
        syy += eps_y * np.eye(syy.shape[0])
        inv_sqrt_xx, inv_sqrt_yy = _sqrtm(np.linalg.pinv(sxx)), _sqrtm(np.linalg.pinv(syy))
        # Only the first min(kept x, kept y) directions are ever scored: the reduced SVD gives them without the
        # (dx, dx) factor of the full one (a third of the time for 768 dims against 39 labels).
        u, _, vh = np.linalg.svd(np.dot(inv_sqrt_xx, np.dot(sxy, inv_sqrt_yy)), full_matrices=False)
        self.px, self.py = np.dot(u.T, inv_sqrt_xx), np.dot(vh, inv_sqrt_yy)
        self.kept_x, self.kept_y = sxx.shape[0], syy.shape[0]

    def score(self, vx: np.ndarray, vy: np.ndarray, mean_score: bool = False) -> float:
        """PWCCA of this fit on data vx (dx, n), vy (dy, n), uncentred projection weighting (module docstring)."""
        k = min(self.kept_x, self.kept_y)
        mx, my = np.mean(vx, axis=1, keepdims=True), np.mean(vy, axis=1, keepdims=True)
        hx = np.dot(self.px[:k], vx[self.x_idx] - mx[self.x_idx])
        hy = np.dot(self.py[:k], vy[self.y_idx] - my[self.y_idx])
        rho = np.einsum("ij,ij->i", hx, hy)
        rho /= np.sqrt(np.multiply(np.einsum("ij,ij->i", hx, hx), np.einsum("ij,ij->i", hy, hy)))
        score_x = _weighted(vx[self.x_idx][:k], mx[self.x_idx][:k], hx, rho)
        score_y = _weighted(vy[self.y_idx][:k], my[self.y_idx][:k], hy, rho)
        if mean_score:
            return float((score_x + score_y) / 2)
        return float(score_x if self.kept_x < self.kept_y else score_y)


def _sqrtm(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(a)
    return np.dot(v, np.dot(np.diag(np.sqrt(w)), np.conj(v).T))


def _weighted(acts: np.ndarray, means: np.ndarray, proj: np.ndarray, rho: np.ndarray) -> float:
    """Σ α_i ρ_i / Σ α_i with α from the uncentred variates (acts, proj: (k, n); means (k, 1))."""
    q, _ = np.linalg.qr((proj + means).T)  # (n, min(n, k))
    weights = np.zeros(len(rho))
    weights[: q.shape[1]] = np.sum(np.abs(np.dot(q.T, acts.T)), axis=1)  # directions beyond n points weigh 0
    weights = weights / np.sum(weights)
    return float(np.sum(weights * rho))


def _check_views(vx: np.ndarray, vy: np.ndarray, xmax: float, ymax: float) -> None:
    constant_x = not xmax > 0 or not np.ptp(vx, axis=1).max() > 0  # exact: np.cov of equal values can miss 0
    if constant_x or not ymax > 0 or not np.ptp(vy, axis=1).max() > 0:  # max-normalising zero is 0/0
        view = "view1 (the layer)" if constant_x else "view2"
        raise UndefinedMeasureError(f"{view} is constant on the {vx.shape[1]} fit points (zero covariance)")


def _trial(x, y, parts, dev, test, eps_pairs, n_eps, mean_score) -> tuple[dict, PasadFit]:
    """One (dev, test) trial: ε pairs tried in order until ``n_eps`` fits succeed (failures recorded, the next
    pair tried), the best on dev scored on test; returns (its record, the best fit). Raises ``LinAlgError`` when
    every pair fails."""
    train = np.concatenate([p for i, p in enumerate(parts) if i not in (dev, test)])
    vx, vy = x[train].T, y[train].T
    record = {"dev": int(dev), "test": int(test), "eps_pairs": [], "train_scores": [], "dev_scores": [],
              "failed_eps": []}
    cov = np.cov(vx, vy)  # the same for every ε pair
    fits = []
    for eps_x, eps_y in eps_pairs:
        if len(fits) == n_eps:
            break
        try:
            fit = PasadFit(vx, vy, eps_x, eps_y, cov)
            train_score = fit.score(vx, vy, mean_score)
        except np.linalg.LinAlgError:
            record["failed_eps"].append([float(eps_x), float(eps_y)])
            log.info("CCA fit failed for ε = (%g, %g) on trial (dev %d, test %d); trying the next pair",
                     eps_x, eps_y, dev, test)
            continue
        fits.append(fit)
        record["eps_pairs"].append([float(eps_x), float(eps_y)])
        record["train_scores"].append(train_score)
        record["dev_scores"].append(fit.score(x[parts[dev]].T, y[parts[dev]].T, mean_score))
    if not fits:
        raise np.linalg.LinAlgError(f"CCA failed for every one of the {len(eps_pairs)} ε pairs on trial (dev {dev}, "
                                    f"test {test})")
    best = int(np.argmax(record["dev_scores"]))
    record["best_eps"] = record["eps_pairs"][best]
    record["test_score"] = fits[best].score(x[parts[test]].T, y[parts[test]].T, mean_score)
    record["fit"] = fits[best]  # the chosen PasadFit, for rescoring resampled test parts (resample.py); not written
    return record, fits[best]


def pasad_cca_score(
    view1: np.ndarray,
    view2: np.ndarray,
    parts: list[np.ndarray],
    trials: list[tuple[int, int]],
    eps_pairs: list[tuple[float, float]],
    mean_score: bool = False,
) -> tuple[float, dict]:
    """Cross-validated PWCCA exactly as the reference protocol (module docstring).

    view1, view2 : (n_points, d1), (n_points, d2), any float dtype (computed in float64).
    parts : index arrays into the points (the 10 parts). trials : (dev part, test part) per trial, the training set
    being the other parts concatenated in part order; a trial on which every ε pair fails is replaced by a pair
    of parts no trial uses (``_spare_trials``). eps_pairs : (εx, εy) candidates in order; on each trial they are
    tried until ``min(N_EPS_PAIRS, len(eps_pairs))`` fits succeed, a pair whose fit fails (``LinAlgError``) is
    recorded and the next one tried, as the reference does (module docstring: fallback and retries).

    Returns ``(score, details)``: score = mean test score over the trials; details = ``{"trials": [{"dev", "test",
    "eps_pairs", "train_scores", "dev_scores", "best_eps", "test_score", "failed_eps"}], "fits": [the best
    PasadFit of each trial], "failed_trials": [[dev, test], ...], "mean_score": ..., "score": ...}``. Raises
    ``LinAlgError`` when fewer than ``len(trials)`` trials succeed.
    """
    x, y = np.asarray(view1, np.float64), np.asarray(view2, np.float64)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"views have {x.shape[0]} and {y.shape[0]} points; they must describe the same points")
    parts = [np.asarray(p, dtype=np.int64) for p in parts]
    n_trials, n_eps = len(trials), min(N_EPS_PAIRS, len(eps_pairs))
    out, fits, failed = [], [], []
    for dev, test in [*trials, *_spare_trials(trials, len(parts))]:
        if len(out) == n_trials:
            break
        try:
            record, fit = _trial(x, y, parts, dev, test, eps_pairs, n_eps, mean_score)
        except np.linalg.LinAlgError as err:
            failed.append([int(dev), int(test)])
            log.info("%s; trying another (dev, test) pair of unused parts", err)
            continue
        out.append(record)
        fits.append(fit)
    if len(out) < n_trials:
        raise np.linalg.LinAlgError(f"CCA failed for every ε pair on the (dev, test) parts {failed}; only {len(out)} "
                                    f"of {n_trials} trials succeeded")
    score = float(np.mean([r["test_score"] for r in out]))
    if not np.isfinite(score):  # a view constant on a test part: its correlations are 0/0
        undefined = [r["test"] for r in out if not np.isfinite(r["test_score"])]
        raise UndefinedMeasureError(f"CCA is undefined on test part(s) {undefined}: a view has no variance there "
                                    f"(0/0)")
    return score, {"trials": out, "fits": fits, "failed_trials": failed, "mean_score": bool(mean_score),
                   "score": score}


def stratified_parts(labels: np.ndarray | None, n_points: int, *, seed: int, n_parts: int = N_PARTS
                     ) -> list[np.ndarray]:
    """``n_parts`` seeded parts of ``range(n_points)``, label-stratified as the reference's ``chunk``.

    Per label (sorted; ``labels=None``: one group of all points): its points in a seeded random order, ``len //
    n_parts`` to each part, the remainder one by one to random parts. Returns sorted int64 index arrays.
    """
    rng = np.random.default_rng(seed)
    groups = [np.arange(n_points)] if labels is None else [
        np.flatnonzero(np.asarray(labels) == lab) for lab in np.unique(labels)]
    parts: list[list[np.ndarray]] = [[] for _ in range(n_parts)]
    for idx in groups:
        idx = rng.permutation(idx)
        size = len(idx) // n_parts
        for p in range(n_parts):
            parts[p].append(idx[p * size : (p + 1) * size])
        for extra in idx[n_parts * size :]:
            parts[int(rng.integers(n_parts))].append(np.array([extra]))
    return [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]


def draw_trials(*, seed: int, n_parts: int = N_PARTS, n_trials: int = N_TRIALS) -> list[tuple[int, int]]:
    """``n_trials`` (dev, test) pairs of distinct parts, no part used twice (the reference's ``cca_trainer``)."""
    order = np.random.default_rng(seed).permutation(n_parts)[: 2 * n_trials]
    return [(int(order[2 * t]), int(order[2 * t + 1])) for t in range(n_trials)]


def _spare_trials(trials: list[tuple[int, int]], n_parts: int) -> list[tuple[int, int]]:
    """Replacement (dev, test) pairs from the parts no given trial uses, in ascending order (the reference draws
    them at random from the unused parts; ascending keeps the result a function of the given trials)."""
    unused = sorted(set(range(n_parts)) - {p for t in trials for p in t})
    return [(unused[i], unused[i + 1]) for i in range(0, len(unused) - 1, 2)]


def draw_eps_pairs(*, seed: int, n_pairs: int | None = None) -> list[tuple[float, float]]:
    """The reference's ε candidates in a seeded order: the 9 pairs from ``EPS_VALUES`` shuffled, then the 16 pairs
    from ``EPS_FALLBACK`` shuffled (the reference's ``get_epsilon_lst``); the first ``n_pairs`` (None: all 25).
    ``pasad_cca_score`` tries them in order until ``N_EPS_PAIRS`` fits succeed."""
    rng = np.random.default_rng(seed)
    first = [(a, b) for a in EPS_VALUES for b in EPS_VALUES]
    larger = [(a, b) for a in EPS_FALLBACK for b in EPS_FALLBACK]
    pairs = [first[i] for i in rng.permutation(len(first))] + [larger[i] for i in rng.permutation(len(larger))]
    return pairs if n_pairs is None else pairs[:n_pairs]


def pasad_clusters(fit_x: np.ndarray, eval_x: np.ndarray, *, span: str, seed: int,
                   n_clusters: int | None = None) -> np.ndarray:
    """k-means cluster (n_eval,) of each evaluated item, as the reference's ``get_mi_score`` clusters.

    MiniBatchKMeans (``MI_CLUSTERS[span]`` clusters capped by ``len(fit_x)``, batch ``MI_BATCH[span]``,
    ``MI_MAX_ITER`` iterations, seeded; ``n_init`` left at scikit-learn's default, as the reference leaves it:
    :func:`kmeans_n_init` says what that default is) fitted on ``fit_x`` (n_fit, D) and applied to ``eval_x``
    (n_eval, D). Raw features, as the reference (no standardisation). ``n_clusters`` overrides the cluster count.
    """
    from sklearn.cluster import MiniBatchKMeans

    if span not in MI_CLUSTERS:
        raise ValueError(f"span={span!r} not in {tuple(MI_CLUSTERS)}")
    if len(fit_x) < 2 or not np.ptp(np.asarray(fit_x), axis=0).max() > 0:
        raise UndefinedMeasureError(f"the layer is constant on its {len(fit_x)} fit items (every row equal): one "
                                    f"cluster, MI 0 by construction")
    kmeans = MiniBatchKMeans(n_clusters=min(n_clusters or MI_CLUSTERS[span], len(fit_x)), batch_size=MI_BATCH[span],
                             max_iter=MI_MAX_ITER, random_state=seed)
    return kmeans.fit(np.asarray(fit_x, np.float64)).predict(np.asarray(eval_x, np.float64))


def kmeans_n_init() -> str:
    """scikit-learn's default ``n_init`` of MiniBatchKMeans as this installation resolves it (the reference passes
    none): ``"auto"`` = 1 run with k-means++ (scikit-learn >= 1.4); 3 before 1.4 (the published numbers' era)."""
    import inspect

    from sklearn.cluster import MiniBatchKMeans

    default = inspect.signature(MiniBatchKMeans).parameters["n_init"].default
    return "auto (1 run with k-means++ initialisation)" if default == "auto" else str(default)


def pasad_mi(fit_x: np.ndarray, eval_x: np.ndarray, eval_labels: np.ndarray, *, span: str, seed: int,
             n_clusters: int | None = None) -> float:
    """MI between k-means clusters (:func:`pasad_clusters`) and labels, normalised by the label entropy:
    MI(labels, clusters) / H(labels) on the evaluated items (eval_x (n_eval, D), eval_labels (n_eval,))."""
    from sklearn.metrics import mutual_info_score

    clusters = pasad_clusters(fit_x, eval_x, span=span, seed=seed, n_clusters=n_clusters)
    entropy = mutual_info_score(eval_labels, eval_labels)
    if not entropy > 0:
        raise UndefinedMeasureError(f"the {len(eval_labels)} evaluated points hold one label class: MI / H(labels) "
                                    f"is 0/0")
    return float(mutual_info_score(eval_labels, clusters) / entropy)
