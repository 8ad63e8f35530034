"""The gender probe: a linear probe predicting a speaker's sex (LibriSpeech ``SPEAKERS.TXT``) from utterance-level
features, the common control of speaker probes.

Per layer: the logistic-regression probe of ``span.probe_accuracy`` (standardised features, ``PROBE_C``) on
utterance vectors (a frame folder: the mean of the utterance's frames, as the speaker probe; a span folder: the mean
of its segments), trained on the utterances of some speakers and tested on the utterances of others — the splits
are ``span.utterance_splits`` over speaker ids, so no speaker is on both sides. The majority baseline
(``gender_probe_majority_baseline``, per layer so it draws as a line, as ``speaker_majority_baseline``) is the most
frequent sex's share of all analysed utterances: what a constant answer chosen from the class prior scores in
expectation. Two other definitions mislead with speaker-disjoint splits of few speakers: answering the training
majority gives 0 when the test speakers are all of the other sex, and the best constant answer on each test part
gives 1 when a test part holds one sex (3F/3M often does).
Interval and chance level as the other probes (``measures.resample``: test speakers resampled; sexes permuted
within each part of the split); the chance level is undefined (None, its reason in ``gender_probe_info``) when no
part of any split holds both sexes: permuting within such parts changes nothing. No torch.
"""

from __future__ import annotations

import numpy as np

from layerwise.contract.results import MeasureFamily
from layerwise.errors import UndefinedMeasureError, error_text

NAME = "gender_probe_accuracy"  # summary.json key (contract.layout.MEASURES)
BASELINE_KEY = "gender_probe_majority_baseline"  # summary.json: {layer: the prior majority share} (one value)
MIN_SPEAKERS = 3  # train, dev and test each need their own speaker
INFO_KEY = "gender_probe_info"
MIN_PER_SEX = 2  # fewer speakers of one sex than this: the probe may learn the speaker, not the sex (a note)


def predictions(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    """The test predictions (n_test,) of ``span.probe_accuracy``'s probe (``span.probe_predictions``: same
    standardisation, C and iterations), so each test utterance's hit can be resampled. Raises UndefinedMeasureError
    for one training class (naming the sex) or a constant layer (as that probe)."""
    from layerwise.measures.span import probe_predictions

    if len(np.unique(y_train)) < 2:
        raise UndefinedMeasureError(f"the training speakers are all of one sex ({str(np.unique(y_train)[0])!r})")
    return probe_predictions(x_train, y_train, x_test)


def majority_share(sexes: np.ndarray) -> float:
    """The share of the most frequent sex among the items (n,)."""
    _, counts = np.unique(np.asarray(sexes), return_counts=True)
    return float(counts.max() / counts.sum())


def _scored(x: np.ndarray, sexes: np.ndarray, speakers: np.ndarray, splits, permuted):
    """One layer's accuracy as a ``resample.Scored`` (test speakers are the resampled groups)."""
    from layerwise.measures.resample import Scored, accuracy_scorer

    scores, scorers, n_items = [], [], []
    for train, dev, test in splits:
        fit = np.r_[train, dev]
        correct = predictions(x[fit], sexes[fit], x[test]) == sexes[test]
        scores.append(float(np.mean(correct)))
        scorers.append(accuracy_scorer(correct, speakers[test]))
        n_items.append(len(test))
    chance = None if permuted is None else float(np.mean([
        np.mean(predictions(x[np.r_[tr, dv]], y[np.r_[tr, dv]], x[te]) == y[te])
        for (tr, dv, te), y in zip(splits, permuted)]))
    return Scored(float(np.mean(scores)), [f for f, _ in scorers], [g for _, g in scorers], scores, sum(n_items),
                  chance, accuracy_items=float(np.mean(n_items)))


def gender_probe(features: dict[str, np.ndarray], speakers: np.ndarray, sexes: np.ndarray, *, seed: int = 0,
                 n_splits: int = 3, n_boot: int = 0) -> MeasureFamily:
    """``gender_probe_accuracy`` per layer of utterance vectors (layer -> (n_utts, D)); speakers, sexes (n_utts,)
    (sex ``"F"``/``"M"``). Needs >= 3 speakers and both sexes (else every layer is unavailable with why); fewer
    than ``MIN_PER_SEX`` speakers of a sex is said in ``notes``. The baseline and counts go to ``info``."""
    from layerwise.measures.resample import method_text, permute_within
    from layerwise.measures.span import per_layer

    speakers, sexes = np.asarray(speakers).astype(str), np.asarray(sexes).astype(str)
    family = MeasureFamily()
    per_sex = {s: len(np.unique(speakers[sexes == s])) for s in ("F", "M")}
    family.info[INFO_KEY] = {"n_utterances": len(speakers), "n_speakers": len(np.unique(speakers)),
                             "speakers_per_sex": per_sex, "n_splits": n_splits, "seed": seed,
                             "split": "by speaker (span.utterance_splits over speaker ids): no speaker on both sides"}
    if min(per_sex.values()) < MIN_PER_SEX:
        family.notes.append(f"gender probe: {per_sex['F']} female and {per_sex['M']} male speaker(s); with fewer "
                            f"than {MIN_PER_SEX} of each, the probe can tell speakers apart instead of sexes")
    try:
        splits = _splits(speakers, per_sex, n_splits=n_splits, seed=seed)
    except UndefinedMeasureError as err:
        family.unavailable[NAME] = f"{error_text(err)} (the gender probe splits by speaker)"
        return family
    baseline = majority_share(sexes)
    family.values[BASELINE_KEY] = dict.fromkeys(features, baseline)
    permuted = [permute_within(sexes, split, seed=[seed, i]) for i, split in enumerate(splits)]
    if not any(len(np.unique(sexes[part])) > 1 for split in splits for part in split):
        permuted = None
        family.info[INFO_KEY]["chance_undefined"] = (
            "no part (train, dev, test) of any split holds both sexes: permuting the sexes within each part changes "
            "nothing, so there is no chance level")
        family.notes.append(f"gender probe: {family.info[INFO_KEY]['chance_undefined']} (analyse more speakers)")
    per_layer(NAME, features, lambda _, x: _scored(np.asarray(x, np.float64), sexes, speakers, splits, permuted),
              family, n_boot=n_boot, seed=seed, method=method_text("accuracy", n_boot, "speakers") if n_boot else None,
              threads=1)  # a probe: span.probe_predictions is not thread-safe
    return family


def _splits(speakers: np.ndarray, per_sex: dict[str, int], *, n_splits: int, seed: int):
    """The speaker-disjoint splits (``span.utterance_splits`` over speaker ids), or UndefinedMeasureError saying which
    speakers are missing."""
    from layerwise.measures.span import utterance_splits

    n_speakers = len(np.unique(speakers))
    if n_speakers == 0:
        raise UndefinedMeasureError("no analysed speaker is listed in SPEAKERS.TXT: nothing to probe")
    if min(per_sex.values()) == 0:
        raise UndefinedMeasureError(f"every analysed speaker is {'F' if per_sex['F'] else 'M'}: nothing to probe")
    if n_speakers < MIN_SPEAKERS:
        raise UndefinedMeasureError(f"needs {MIN_SPEAKERS} speakers (train, dev and test each hold their own), the "
                                    f"analysed files have {n_speakers}")
    return utterance_splits(speakers, n_splits=n_splits, seed=seed)
