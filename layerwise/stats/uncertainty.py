"""95 % intervals of the per-layer statistics: mean, std, components_90, effective rank, CKA with the previous layer.

The independent unit is the utterance (frames of one utterance are correlated), so every interval comes from a
group jackknife over utterances (Efron & Stein 1981; the delete-a-group form of Kott 2001), with the normal/t
interval ``θ̂ ± t_{G−1, 0.975}·se``, ``se² = (G−1)/G·Σ_g (θ̂_(g) − θ̄)²``, centred on the value over all frames:

- ``mean`` and ``std`` (over frames × dims of a layer): *exact* — leave-one-utterance-out from each file's count,
  mean and sum of squares about its mean (``LayerStats.file_sums``), combined with the parallel-axis rule (Chan et al.
  1979), so every replicate is the statistic over all frames of the other utterances. O(files × layers).
- ``pca_components_90``, ``effective_rank``, ``cka_with_previous`` and ``cka_with_previous_debiased`` need the
  covariance (768² per layer per replicate would not fit in memory), so their standard error comes from the seeded
  frame sample (``FrameSampler``: at most ``max_points`` frames, of which ``JACKKNIFE_POINTS``), its utterances
  grouped into at most ``MAX_GROUPS`` groups (seeded from the analysis seed): leave one group out, recompute the
  statistic on the remaining points. That standard error includes the sample's own frame-level noise, which the
  value over all frames does not have: the interval is conservative (wider), never narrower than the data allow.
  ``pca_components_90`` is an integer: its interval is rounded outwards.

Time (13 layers × 768 dims, 500 sampled points, 11 eigendecompositions of a ≤ 500 × 500 Gram matrix per layer on one
BLAS thread per layer, layers in parallel threads: ``contract.workers``): 2.9 CPU-seconds measured, so about 1.5 s on 2
idle cores (4 to 6.5 s wall were measured with a load average of 5 on 2 cores).
numpy/scipy only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from layerwise.contract.workers import over_layers
from layerwise.stats.debiased import MIN_FRAMES_DEBIASED, debiased_cka
from layerwise.stats.moments import LayerStats

LEVEL = 0.95  # coverage (contract.results.INTERVAL_LEVEL says the same; stats/ does not import contract/)
MAX_GROUPS = 10  # utterance groups of the sample's jackknife: 11 eigendecompositions per layer keep 13 layers ≤ 3 s
JACKKNIFE_POINTS = 500  # sampled points the jackknife uses at most (the default max_points): bounds its time
MIN_GROUPS = 2  # a jackknife needs two groups
SAMPLE_STATISTICS = ("pca_components_90", "effective_rank", "cka_with_previous", "cka_with_previous_debiased")
MOMENT_STATISTICS = ("mean", "std")
VARIANCE_TARGET = 0.9  # components_90 (contract.results.VARIANCE_TARGET, checked equal in tests)


@dataclass
class StatisticIntervals:
    """intervals : statistic -> layer -> (low, high); methods : statistic -> how its interval was made; reasons :
    statistic -> why it has no interval (too few utterances), when so."""

    intervals: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    methods: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)

    def notes(self) -> list[str]:
        """One sentence per statistic without an interval, for the report's notes."""
        return [f"no 95 % interval for {name}: {why}" for name, why in self.reasons.items()]


def t_quantile(groups: int, level: float = LEVEL) -> float:
    """Student's t quantile with ``groups − 1`` degrees of freedom for a two-sided ``level`` interval."""
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2.0, groups - 1))


def jackknife_interval(full: float, replicates: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """θ̂ ± t·se from G leave-one-group-out replicates (G,): se² = (G−1)/G·Σ(θ_(g) − θ̄)²."""
    replicates = np.asarray(replicates, np.float64)
    g = len(replicates)
    se = np.sqrt((g - 1) / g * np.sum((replicates - replicates.mean()) ** 2))
    half = t_quantile(g, level) * se
    return float(full - half), float(full + half)


def leave_one_out_moments(count: np.ndarray, means: np.ndarray, m2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (ddof 0) over all values but those of file f, for every f: two (F, L) arrays.

    count (F, L) values per file and layer (frames × dim); means (F, L); m2 (F, L) sums of squares about each file's
    mean. Parallel-axis rule: M2 without f = M2 − m2_f − c_f(m_f − m)² − C_(f)(m_(f) − m)².
    """
    count = np.asarray(count, np.float64)
    total = count.sum(axis=0)
    mean = (count * means).sum(axis=0) / total
    spread = m2.sum(axis=0) + (count * (means - mean) ** 2).sum(axis=0)
    rest = total - count
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_out = (total * mean - count * means) / rest
        m2_out = spread - m2 - count * (means - mean) ** 2 - rest * (mean_out - mean) ** 2
        return mean_out, np.sqrt(np.clip(m2_out, 0.0, None) / rest)


def moment_intervals(stats: dict[str, LayerStats], full: dict[str, tuple[float, float]],
                     out: StatisticIntervals) -> None:
    """Exact leave-one-utterance-out jackknife of each layer's mean and std (``stats``: layer -> its LayerStats,
    ``full``: layer -> (mean, std) over all frames), into ``out``."""
    groups = {id(s): s for s in stats.values()}
    for group in groups.values():
        count, means, m2 = group.file_sums()
        keep = count[:, 0] > 0
        if keep.sum() < MIN_GROUPS:
            for name in MOMENT_STATISTICS:
                out.reasons[name] = f"{int(keep.sum())} utterance(s) with frames: a jackknife needs {MIN_GROUPS}"
            continue
        mean_out, std_out = leave_one_out_moments(count[keep], means[keep], m2[keep])
        for i, key in enumerate(group.layers):
            if key not in full:
                continue
            for name, column, value in (("mean", mean_out, full[key][0]), ("std", std_out, full[key][1])):
                out.intervals.setdefault(name, {})[key] = jackknife_interval(value, column[:, i])
        for name in MOMENT_STATISTICS:
            out.methods[name] = (f"exact group jackknife over utterances (leave one of {int(keep.sum())} "
                                 f"utterances out, from per-utterance sums over all frames); t interval")


def utterance_groups(utterances: np.ndarray, seed: int, max_groups: int = MAX_GROUPS) -> np.ndarray:
    """Group id (k,) of each sampled point: one group per utterance, or the utterances dealt at random (seeded) into
    ``max_groups`` groups of near-equal numbers of utterances."""
    names, inverse = np.unique(np.asarray(utterances).astype(str), return_inverse=True)
    if len(names) <= max_groups:
        return inverse
    rng = np.random.default_rng([seed, len(names)])
    group_of = rng.permutation(len(names)) % max_groups
    return group_of[inverse]


def _spectrum_statistics(gram: np.ndarray) -> tuple[float, float]:
    """(components_90, effective rank) of points whose centred Gram matrix is ``gram`` (m, m): its eigenvalues are
    the covariance's (times m) — both statistics are scale-free."""
    values = np.clip(np.linalg.eigvalsh(gram)[::-1], 0.0, None)
    total = values.sum()
    if not total > 0:
        return np.nan, np.nan
    p = values / total
    needed = int(np.flatnonzero(np.cumsum(p) >= VARIANCE_TARGET - 1e-12)[0]) + 1
    p = p[p > 0]
    return float(needed), float(np.exp(-np.sum(p * np.log(p))))


def _centre_gram(gram: np.ndarray) -> np.ndarray:
    """H K H of a Gram matrix K (m, m): row, column and grand means removed."""
    row = gram.mean(axis=0)
    return gram - row[None, :] - row[:, None] + row.mean()


def _similarities(k: np.ndarray, l: np.ndarray) -> tuple[float, float]:
    """(linear CKA, debiased CKA) from two centred Gram matrices of the same points (m, m)."""
    cross, kk, ll = np.vdot(k, l), np.vdot(k, k), np.vdot(l, l)
    linear = cross / np.sqrt(kk * ll) if kk > 0 and ll > 0 else np.nan
    dk, dl, m = np.diagonal(k), np.diagonal(l), len(k)
    if m < MIN_FRAMES_DEBIASED:
        return float(linear), np.nan
    tr = np.array([dk.sum()]), np.array([dl.sum()])
    value = debiased_cka(np.array([[cross]]), np.array([[dk @ dl]]), tr[0], tr[1], (np.array([kk]),
                         np.array([dk @ dk])), (np.array([ll]), np.array([dl @ dl])), m)
    return float(linear), float(value[0, 0])


def _replicates(grams: list[np.ndarray], masks: list[np.ndarray], index: int) -> dict[str, np.ndarray]:
    """The sample statistics of layer ``index`` on every leave-one-group-out subset (G,) each."""
    out = {name: np.full(len(masks), np.nan) for name in SAMPLE_STATISTICS}
    for g, keep in enumerate(masks):
        k = _centre_gram(grams[index][np.ix_(keep, keep)])
        out["pca_components_90"][g], out["effective_rank"][g] = _spectrum_statistics(k)
        if index:
            previous = _centre_gram(grams[index - 1][np.ix_(keep, keep)])
            out["cka_with_previous"][g], out["cka_with_previous_debiased"][g] = _similarities(previous, k)
    return out


def sample_intervals(points: dict[str, np.ndarray], utterances: np.ndarray, full: dict[str, dict[str, float | None]],
                     *, seed: int, out: StatisticIntervals) -> None:
    """Group jackknife over the sample's utterances of the covariance-based statistics, into ``out``.

    points : layer -> (k, D) sampled points (rows aligned across layers, layers in order); utterances : (k,) stems;
    full : statistic -> layer -> its value over all frames (None: no interval for that layer).
    """
    from threadpoolctl import threadpool_limits

    keys = list(points)
    k = min(len(utterances), JACKKNIFE_POINTS)  # the sample is in (file, row) order: take a seeded subset
    rows = np.sort(np.random.default_rng([seed, 1]).permutation(len(utterances))[:k])
    groups = utterance_groups(np.asarray(utterances)[rows], seed)
    count = len(np.unique(groups))
    if count < MIN_GROUPS:
        for name in SAMPLE_STATISTICS:
            out.reasons[name] = f"the frame sample holds {count} utterance(s): a jackknife needs {MIN_GROUPS}"
        return
    masks = [groups != g for g in range(count)]
    with threadpool_limits(limits=1):  # one BLAS thread per layer, layers side by side (contract.workers)
        grams = []
        for key in keys:
            x = np.asarray(points[key], np.float64)[rows]
            grams.append(x @ x.T)
    found = [future.result() for _, future in over_layers(lambda i: _replicates(grams, masks, i), range(len(keys)),
                                                            "statistic intervals")]
    for name in SAMPLE_STATISTICS:
        for i, key in enumerate(keys):
            value = full.get(name, {}).get(key)
            reps = found[i][name]
            if value is None or not np.isfinite(value) or not np.isfinite(reps).all():
                continue
            low, high = jackknife_interval(value, reps)
            if name == "pca_components_90":
                low, high = float(np.floor(low)), float(np.ceil(high))
            out.intervals.setdefault(name, {})[key] = (low, high)
        out.methods[name] = (f"group jackknife over utterances of the seeded frame sample ({k} points, {count} "
                             f"groups of utterances, leave one group out); t interval centred on the value over all "
                             f"frames; conservative (includes the sample's frame noise)")


def statistic_intervals(stats: dict[str, LayerStats], moments: dict[str, tuple[float, float]],
                        points: dict[str, np.ndarray], utterances: np.ndarray,
                        full: dict[str, dict[str, float | None]], *, seed: int) -> StatisticIntervals:
    """Every statistic's 95 % interval. stats : layer -> the LayerStats over its own frames; moments : layer ->
    (mean, std) over all frames; points, utterances : the frame sample; full : the other statistics' values
    (``SAMPLE_STATISTICS`` -> layer -> value); seed : the analysis seed."""
    out = StatisticIntervals()
    moment_intervals(stats, moments, out)
    sample_intervals(points, utterances, full, seed=seed, out=out)
    return out
