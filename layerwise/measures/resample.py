"""Intervals and chance levels of the per-layer measures: the resampling helpers every measure family shares.

Analysis side: numpy only (no torch). Three pieces:

- **Intervals of fitted measures** (:func:`two_stage_interval`): the fits are kept; a replicate first draws the run's
  splits with replacement (so the spread over which utterances land in train and test enters), then, for every drawn
  split, its scored test groups (utterances; speakers for speaker measures) with replacement, and recomputes the
  split's test score from per-group sufficient statistics (no refit, no pass over the rows again). The replicate is
  the mean of its splits' scores, like the estimate. The interval is the percentile interval of the replicates
  shifted so that their median is the estimate (drawing groups with replacement duplicates rows, which inflates
  correlations and MI: the raw percentiles sit above the estimate), then widened to contain the estimate. Resampling the splits and, inside them, the test groups counts the test-sampling
  variance twice: a deliberate, conservative choice (three splits alone cannot estimate the spread over seeds).
- **Scores from group sums**: accuracy (:func:`accuracy_scorer`), PWCCA in its centred and in the published
  (uncentred-weighting) form (:func:`pwcca_scorer`, the formulas of ``pwcca.pwcca_score`` and
  ``pasad.PasadFit.score`` rewritten on Gram matrices) and MI from contingency tables (:func:`mi_scorer`).
- **Chance levels** (:func:`permute_within`, :func:`permuted_chance`): the same measure on labels permuted within
  each part of the split (train, dev, test), seeded — shared with the other label measures (gender probe, PNMI).

Every function takes its randomness from one ``seed`` (``numpy.random.default_rng``), never a global state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from layerwise.contract.results import INTERVAL_LEVEL as LEVEL  # coverage of every interval (0.95)

DEFAULT_N_BOOT = 200  # replicates (--n_boot); 0 = no intervals
FEW_TEST_ITEMS = 50  # fewer scored test items than this: a note says the interval is wide for a reason
MIN_FINITE_SHARE = 0.5  # fewer finite replicates than this share: no interval (the resamples mostly undefined)
WILSON_Z = 1.959963984540054  # the normal quantile of LEVEL: Φ⁻¹(0.975)
GRAM_ZERO_REL = 1e-7  # a Gram-form pivot below this share of the largest is a dependent variate (≈ 1e-14 in QR form)
# More variates than this (a layer against a layer: k = 768) and the weights α are those of the whole test part in
# every replicate: recomputing them costs a (k, k) eigendecomposition per replicate (200 × 768³ ≈ 10^11 flops per
# layer and split), while resampling moves the correlations, not the weights, to first order.
# Σh² − N·mean² below this share of Σh² is the rounding of the sums (≈ N · 1e-16), not a variance: that variate is
# constant on the resampled groups. Without it, a replicate drawing one speaker scored rounding noise.
VARIANCE_ZERO_REL = 1e-10
FULL_WEIGHTS_MAX_K = 40  # phone labels (39 classes) and speakers keep recomputed weights; filterbanks (80) do not

Scorer = Callable[[np.ndarray], np.ndarray]  # weights (B, G) of the test groups -> scores (B,), NaN where undefined


# ---------------------------------------------------------------------------------------------------- intervals
def group_ids(groups: np.ndarray) -> tuple[np.ndarray, int]:
    """(index of each row's group (n,), number of groups) for any label array ``groups`` (n,)."""
    _, inverse = np.unique(np.asarray(groups), return_inverse=True)
    return inverse.ravel(), int(inverse.max()) + 1 if len(inverse) else 0


def group_sums(values: np.ndarray, ids: np.ndarray, n_groups: int) -> np.ndarray:
    """Per-group sums of the rows of ``values`` (n, ...) -> (n_groups, ...), float64."""
    values = np.asarray(values, np.float64)
    out = np.zeros((n_groups, *values.shape[1:]))
    if len(ids) == 0:
        return out
    order = np.argsort(ids, kind="stable")
    present, starts = np.unique(ids[order], return_index=True)
    out[present] = np.add.reduceat(values[order], starts, axis=0)  # contiguous runs: no unbuffered np.add.at
    return out


def two_stage_interval(scorers: Sequence[Scorer], n_groups: Sequence[int], estimate: float, *, n_boot: int,
                       seed: int | Sequence[int], level: float = LEVEL,
                       split_values: Sequence[float] | None = None) -> tuple[float, float] | None:
    """Percentile interval of the mean over splits (module docstring), or None when fewer than
    ``MIN_FINITE_SHARE`` of the replicates are defined.

    scorers : one per split, weights (B, G_s) -> scores (B,). n_groups : G_s, the test groups of each split.
    estimate : the reported value (the interval is widened to contain it). split_values : each split's reported
    score; a split's replicates are shifted by (its value − its scorer at unit weights), so a score the group sums
    cannot reproduce exactly (the published PWCCA's rounding-noise pair) keeps its own centre.
    """
    rng = np.random.default_rng(seed)
    n_splits = len(scorers)
    replicates = np.empty((n_splits, n_boot))
    for s, (scorer, g) in enumerate(zip(scorers, n_groups)):
        if g == 0:
            replicates[s] = np.nan
            continue
        counts = rng.multinomial(g, np.full(g, 1.0 / g), size=n_boot).astype(np.float64)
        replicates[s] = scorer(counts)
        unit = scorer(np.ones((1, g)))[0] if split_values is not None else np.nan
        if np.isfinite(unit):
            replicates[s] += split_values[s] - unit
    drawn = rng.integers(n_splits, size=(n_boot, n_splits))  # splits drawn with replacement, per replicate
    combined = replicates[drawn, np.arange(n_boot)[:, None]].mean(axis=1)
    finite = combined[np.isfinite(combined)]
    if len(finite) < MIN_FINITE_SHARE * n_boot or not np.isfinite(estimate):
        return None
    return centred_percentiles(finite, estimate, level)


def centred_percentiles(replicates: np.ndarray, estimate: float, level: float = LEVEL) -> tuple[float, float]:
    """The ``level`` percentile interval of the finite ``replicates`` (B,) shifted so that their median is
    ``estimate`` (resampling with duplicates inflates correlations, MI and PNMI: the raw percentiles sit above the
    estimate), then widened to contain it."""
    low, median, high = np.quantile(replicates, [(1 - level) / 2, 0.5, (1 + level) / 2])
    bias = median - estimate
    return float(min(low - bias, estimate)), float(max(high - bias, estimate))


def wilson(accuracy: float, n_items: float, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of a proportion ``accuracy`` observed on ``n_items`` items (at ``level`` = 0.95)."""
    if level != LEVEL:
        raise ValueError(f"level={level}: only {LEVEL} is tabulated (WILSON_Z)")
    z2 = WILSON_Z**2
    centre = (accuracy + z2 / (2 * n_items)) / (1 + z2 / n_items)
    half = WILSON_Z * math.sqrt(accuracy * (1 - accuracy) / n_items + z2 / (4 * n_items**2)) / (1 + z2 / n_items)
    return max(0.0, centre - half), min(1.0, centre + half)


def hull(a: tuple[float, float] | None, b: tuple[float, float] | None) -> tuple[float, float] | None:
    """The smallest interval holding both (either may be None)."""
    if a is None or b is None:
        return a or b
    return min(a[0], b[0]), max(a[1], b[1])


# ---------------------------------------------------------------------------------------------------- scorers
def accuracy_scorer(correct: np.ndarray, test_groups: np.ndarray) -> tuple[Scorer, int]:
    """(scorer, G) of an accuracy: correct (n,) bool per scored test item, test_groups (n,) its group."""
    ids, g = group_ids(test_groups)
    hits, items = group_sums(correct, ids, g), group_sums(np.ones(len(ids)), ids, g)

    def score(weights: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return (weights @ hits) / (weights @ items)

    return score, g


def pwcca_scorer(hx: np.ndarray, hy: np.ndarray, weighting: str, acts: np.ndarray, test_groups: np.ndarray,
                 *, uncentred: bool = False) -> tuple[Scorer, int]:
    """(scorer, G) of a PWCCA test score from its fitted variates, recomputed on reweighted test groups.

    hx, hy : (n, k) canonical variates of the test rows (any centring: only centred sums are used).
    weighting : ``"x"`` or ``"y"``, the view whose variates weigh (``pwcca.pwcca_score``: the view with fewer
    columns). acts : (n, q) that view's data (the centred protocol: all its columns; ``uncentred``: the first k
    kept dims, as ``pasad.PasadFit.score``). Per replicate, with N, means and centred Gram matrices from the group
    sums: ρ_i = Pearson(hx_i, hy_i); R from RᵀR = Gram(u) where u = centred h (``uncentred``: h + mean(acts)),
    α_i = Σ_j |(R⁻ᵀ Σ u aᵀ)_ij|, a variate with a pivot below ``GRAM_ZERO_REL`` of the largest or without variance
    (ρ 0/0) weighs 0; score = Σ α_i ρ_i / Σ α_i. With unit weights this is the estimate (to the rounding of the Gram
    form), except the published label score, whose rounding-noise pair the Gram form cannot see (its replicates are
    shifted onto it: :func:`two_stage_interval`).
    """
    ids, g = group_ids(test_groups)
    hx, hy, acts = (np.asarray(v, np.float64) for v in (hx, hy, acts))
    # The sums below enter only centred quantities, which a constant shift does not change; shifting by the test
    # means first keeps Σhhᵀ − N·m·mᵀ from cancelling (the published protocol's variates carry the raw means: the
    # Gram came out indefinite, down to −0.7 × its largest eigenvalue). acts' own mean is kept for "uncentred".
    hx, hy, act_mean = hx - hx.mean(axis=0), hy - hy.mean(axis=0), acts.mean(axis=0)
    acts = acts - act_mean
    h = hx if weighting == "x" else hy
    k, q = h.shape[1], acts.shape[1]
    fixed = k > FULL_WEIGHTS_MAX_K
    n_g = group_sums(np.ones(len(ids)), ids, g)
    sums = {name: group_sums(v, ids, g) for name, v in
            (("x", hx), ("y", hy), ("xx", hx * hx), ("yy", hy * hy), ("xy", hx * hy), ("a", acts))}
    if fixed:  # many variates (layer vs layer): the weights of the whole test part, for every replicate
        hc = h - h.mean(axis=0)
        gram, cross = (hc.T @ hc)[None], (hc.T @ acts)[None]
        if uncentred:
            gram, cross = gram + len(h) * np.outer(act_mean, act_mean), cross + len(h) * np.outer(act_mean, act_mean)
        alpha_fixed = _alphas(gram, cross, np.array([float(len(h))]))
    else:
        sums["hh"], sums["ha"] = _outer_sums(h, h, ids, g), _outer_sums(h, acts, ids, g)

    def score(weights: np.ndarray) -> np.ndarray:
        n = weights @ n_g  # (B,)
        s = {name: weights @ value for name, value in sums.items()}
        with np.errstate(invalid="ignore", divide="ignore"):
            mx, my = s["x"] / n[:, None], s["y"] / n[:, None]
            cov = s["xy"] - n[:, None] * mx * my
            var_x, var_y = s["xx"] - n[:, None] * mx**2, s["yy"] - n[:, None] * my**2
            rho = cov / np.sqrt(var_x * var_y)
            # a variate constant on the drawn groups (e.g. label variates when one speaker is drawn) has a variance
            # that is only the rounding of the sums: its ρ would be noise/noise; it is 0/0, so it weighs 0
            rho[(var_x <= VARIANCE_ZERO_REL * s["xx"]) | (var_y <= VARIANCE_ZERO_REL * s["yy"])] = np.nan
            if fixed:
                return _combine(np.repeat(alpha_fixed, len(n), axis=0), rho)
            mh, ma = (mx if weighting == "x" else my), s["a"] / n[:, None]
            gram = s["hh"].reshape(-1, k, k) - n[:, None, None] * mh[:, :, None] * mh[:, None, :]
            cross = s["ha"].reshape(-1, k, q) - n[:, None, None] * mh[:, :, None] * ma[:, None, :]
            if uncentred:  # u = h_centred + mean(acts): Gram + N m mᵀ, cross + N m mᵀ (acts has k columns here)
                mean = ma + act_mean  # the drawn rows' mean of acts itself (acts were shifted above)
                shift = n[:, None, None] * mean[:, :, None] * mean[:, None, :]
                gram, cross = gram + shift, cross + shift
        return _combine(_alphas(gram, cross, n), rho)

    return score, g


def _outer_sums(a: np.ndarray, b: np.ndarray, ids: np.ndarray, n_groups: int) -> np.ndarray:
    """(n_groups, p·q): Σ over each group's rows of a_t b_tᵀ (a (n, p), b (n, q)), one product per group."""
    order = np.argsort(ids, kind="stable")
    bounds = np.searchsorted(ids[order], np.arange(n_groups + 1))
    out = np.zeros((n_groups, a.shape[1] * b.shape[1]))
    for j in range(n_groups):
        rows = order[bounds[j]:bounds[j + 1]]
        out[j] = (a[rows].T @ b[rows]).ravel()
    return out


def centred_pwcca_scorer(kept: dict, test_groups: np.ndarray) -> tuple[Scorer, int]:
    """:func:`pwcca_scorer` of a ``pwcca.pwcca_heldout``/``views_heldout`` test score from what its ``keep`` holds
    (``fit``: a ``pwcca.CCAFit``; ``x_test`` (n, p), ``y_test`` (n, q) as scored); test_groups (n,)."""
    fit, x, y = kept["fit"], kept["x_test"], kept["y_test"]
    hx, hy = (x - fit.mean_x) @ fit.a, (y - fit.mean_y) @ fit.b
    weighting = "y" if y.shape[1] <= x.shape[1] else "x"  # pwcca.pwcca_score: the view with fewer columns
    return pwcca_scorer(hx, hy, weighting, y if weighting == "y" else x, test_groups)


def pasad_pwcca_scorer(fit, x_test: np.ndarray, y_test: np.ndarray, test_groups: np.ndarray) -> tuple[Scorer, int]:
    """:func:`pwcca_scorer` of a ``pasad.PasadFit`` scored on x_test (n, dx), y_test (n, dy) (``mean_score`` off:
    the view with fewer kept dims weighs, with the uncentred weighting of ``PasadFit.score``)."""
    vx, vy = np.asarray(x_test, np.float64).T, np.asarray(y_test, np.float64).T
    k = min(fit.kept_x, fit.kept_y)
    hx, hy = (fit.px[:k] @ vx[fit.x_idx]).T, (fit.py[:k] @ vy[fit.y_idx]).T
    weighting = "x" if fit.kept_x < fit.kept_y else "y"
    acts = (vx[fit.x_idx][:k] if weighting == "x" else vy[fit.y_idx][:k]).T
    return pwcca_scorer(hx, hy, weighting, acts, test_groups, uncentred=True)


def _alphas(gram: np.ndarray, cross: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Projection weights α (B, k) from Gram (B, k, k) and cross (B, k, q) matrices; NaN rows where undefined."""
    alpha = np.full(gram.shape[:2], np.nan)
    ok = np.isfinite(gram).all(axis=(1, 2)) & np.isfinite(cross).all(axis=(1, 2))
    if not ok.any():
        return alpha
    w, v = np.linalg.eigh(gram[ok])
    # Gram is PSD; its negative eigenvalues are rounding. Relative to its own largest one they can be large only when
    # the whole Gram is rounding-sized (variates constant on the drawn groups, e.g. one speaker drawn): those
    # variates are dead pivots below (weigh 0) and their ρ is 0/0 (pwcca_scorer), so clipping drops nothing real.
    root = np.sqrt(np.clip(w, 0, None))[:, :, None] * np.swapaxes(v, 1, 2)  # Lᵀ L = Gram
    r = np.linalg.qr(root, mode="r")
    diag = np.abs(np.diagonal(r, axis1=1, axis2=2))
    dead = diag <= GRAM_ZERO_REL * np.maximum(diag.max(axis=1, keepdims=True), 1e-300)
    k = gram.shape[1]
    r = np.where(dead[:, :, None], np.broadcast_to(np.eye(k), r.shape), r)  # a dependent variate: its own unit row
    found = np.abs(np.linalg.solve(np.swapaxes(r, 1, 2), cross[ok])).sum(axis=2)  # Σ_j |(R⁻ᵀ Σ u aᵀ)_ij|
    found[dead] = 0.0
    found *= np.arange(k)[None, :] < n[ok][:, None]  # fewer rows than variates: only n directions
    alpha[ok] = found
    return alpha


def _combine(alpha: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """Σ α ρ / Σ α per replicate (alpha, rho (B, k)); a variate without variance (ρ 0/0) weighs 0; NaN where no
    variate weighs."""
    alpha = np.where(np.isnan(rho), 0.0, alpha)
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = (alpha * np.where(alpha > 0, rho, 0.0)).sum(axis=1) / alpha.sum(axis=1)
    return np.where(alpha.sum(axis=1) > 0, scores, np.nan)


def contingency(labels: np.ndarray, clusters: np.ndarray, test_groups: np.ndarray) -> tuple[np.ndarray, int]:
    """Per-group contingency tables (G, n_labels, n_clusters) of scored items, and G."""
    _, lab = np.unique(np.asarray(labels), return_inverse=True)
    _, clu = np.unique(np.asarray(clusters), return_inverse=True)
    ids, g = group_ids(test_groups)
    table = np.zeros((g, lab.max() + 1, clu.max() + 1))
    np.add.at(table, (ids, lab.ravel(), clu.ravel()), 1.0)
    return table, g


def _entropy(p: np.ndarray, axis: int) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).sum(axis=axis)


def mi_scorer(labels: np.ndarray, clusters: np.ndarray, test_groups: np.ndarray, *, normalise: str,
              expected_mi: float | None = None) -> tuple[Scorer, int]:
    """(scorer, G) of MI between labels and clusters from reweighted per-group contingency tables.

    normalise : ``"arithmetic"`` (NMI: MI / mean(H(labels), H(clusters)), sklearn's default) or ``"labels"``
    (MI / H(labels), the published protocol). expected_mi : with it, the adjusted MI (MI − E) / (mean H − E) with
    the expected MI E of the full data held fixed (it depends on the margins only, which barely move).
    """
    table, g = contingency(labels, clusters, test_groups)
    flat = table.reshape(g, -1)
    shape = table.shape[1:]

    def score(weights: np.ndarray) -> np.ndarray:
        joint = (weights @ flat).reshape(-1, *shape)
        total = joint.sum(axis=(1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            p = joint / total[:, None, None]
            h_lab, h_clu = _entropy(p.sum(axis=2), 1), _entropy(p.sum(axis=1), 1)
            mi = h_lab + h_clu - _entropy(p.reshape(len(p), -1), 1)
            mi = np.maximum(mi, 0.0)
            if expected_mi is not None:
                return (mi - expected_mi) / ((h_lab + h_clu) / 2 - expected_mi)
            return mi / (h_lab if normalise == "labels" else (h_lab + h_clu) / 2)

    return score, g


# ---------------------------------------------------------------------------------------------------- per layer
@dataclass
class Scored:
    """One layer's value of a measure with what its interval and chance level need.

    value : the estimate (mean over the splits). scorers, n_groups : per split, the resampling scorer and its number
    of test groups (empty: no interval); split_values : per split, its score (see :func:`two_stage_interval`). n_test : scored test items summed over the splits. chance : the value on
    permuted labels, or None. accuracy_items : for accuracies, the mean number of test items per split (the Wilson
    part of the interval); None otherwise.
    """

    value: float
    scorers: list = field(default_factory=list)
    n_groups: list = field(default_factory=list)
    split_values: list = field(default_factory=list)
    n_test: int = 0
    chance: float | None = None
    accuracy_items: float | None = None

    def interval(self, *, n_boot: int, seed: int | Sequence[int]) -> tuple[float, float] | None:
        """The 95 % interval (module docstring), or None (n_boot 0, nothing to resample, mostly undefined)."""
        if n_boot == 0 or not self.scorers:
            return None
        found = two_stage_interval(self.scorers, self.n_groups, self.value, n_boot=n_boot, seed=seed,
                                   split_values=self.split_values or None)
        if self.accuracy_items:
            found = hull(found, wilson(self.value, self.accuracy_items))
            found = None if found is None else (max(0.0, found[0]), min(1.0, found[1]))
        return found


# ---------------------------------------------------------------------------------------------------- chance
def permute_within(labels: np.ndarray, parts: Sequence[np.ndarray], *, seed: int | Sequence[int]) -> np.ndarray:
    """A copy of ``labels`` (n, ...) whose rows are permuted within each part (index arrays; rows outside every
    part stay), seeded: the label counts of every part are kept, the link to the features is broken."""
    rng = np.random.default_rng(seed)
    out = np.array(labels, copy=True)
    for part in parts:
        part = np.asarray(part)
        out[part] = out[rng.permutation(part)]
    return out


def permuted_chance(measure: Callable[[np.ndarray], float], labels: np.ndarray, parts: Sequence[np.ndarray], *,
                    seed: int | Sequence[int]) -> float:
    """The chance level of a label measure: ``measure(labels permuted within each part of parts)``.

    measure : labels (n, ...) -> the measure's value, with every other input (features, split, seed) fixed.
    parts : the split's parts (train, dev, test index arrays), so each part keeps its label counts.
    """
    return float(measure(permute_within(labels, parts, seed=seed)))


def method_text(kind: str, n_boot: int, unit: str) -> str:
    """The ``methods`` text of an interval: what was resampled, how often, and how the splits enter."""
    texts = {
        "two_stage": (f"percentile bootstrap, {n_boot} resamples: the run's splits drawn with replacement, then "
                      f"the scored test {unit} of each drawn split with replacement (fits kept, scores recomputed "
                      f"from per-{unit.rstrip('s')} sums); widened to contain the estimate"),
        "accuracy": (f"percentile bootstrap, {n_boot} resamples: the run's splits drawn with replacement, then the "
                     f"scored test {unit} of each drawn split with replacement (fits kept); joined with the Wilson "
                     f"score interval of the mean accuracy on the mean number of test items per split"),
        "groups": (f"percentile bootstrap over the scored {unit}, {n_boot} resamples (clusters kept, contingency "
                   f"tables re-summed); percentiles centred on the estimate (median shift)"),
    }
    return texts[kind]
