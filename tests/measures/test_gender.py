"""measures/gender.py: a planted sex direction gives accuracy ≈ 1, shuffled sexes ≈ the majority baseline; splits
never put one speaker on both sides; too few speakers of a sex is said."""

from __future__ import annotations

import numpy as np
import pytest

from layerwise.measures import gender


def utterances(seed=0, n_speakers=12, per_speaker=5, planted=True):
    """(features, speakers, sexes): speaker i has sex F for even i; layer_0 carries ±3 along one direction by sex
    (plus a speaker offset and noise), layer_1 noise."""
    rng = np.random.default_rng(seed)
    speakers = np.repeat([f"s{i}" for i in range(n_speakers)], per_speaker)
    sexes = np.array(["F" if int(s[1:]) % 2 == 0 else "M" for s in speakers])
    sign = np.where(sexes == "F", 1.0, -1.0) if planted else rng.permutation(np.where(sexes == "F", 1.0, -1.0))
    offsets = rng.normal(size=(n_speakers, 8))
    x = 3 * sign[:, None] * np.eye(8)[0] + offsets[np.repeat(np.arange(n_speakers), per_speaker)] * 0.3 \
        + rng.normal(size=(len(speakers), 8)) * 0.3
    return {"layer_0": x, "layer_1": rng.normal(size=(len(speakers), 8))}, speakers, sexes


def test_planted_direction_is_found_and_noise_is_near_the_baseline():
    features, speakers, sexes = utterances()
    family = gender.gender_probe(features, speakers, sexes, seed=0, n_splits=3, n_boot=50)
    values = family.values[gender.NAME]
    assert values["layer_0"] == pytest.approx(1.0)
    baseline = family.info[gender.BASELINE_KEY]
    assert abs(values["layer_1"] - baseline) < 0.35
    assert abs(family.chance[gender.NAME]["layer_0"] - 0.5) < 0.35
    low, high = family.intervals[gender.NAME]["layer_0"]
    assert low <= values["layer_0"] <= high
    assert not family.notes


def test_splits_keep_speakers_apart():
    from layerwise.measures.span import utterance_splits

    _, speakers, _ = utterances()
    for train, dev, test in utterance_splits(speakers, n_splits=3, seed=0):
        assert not set(speakers[np.r_[train, dev]]) & set(speakers[test])


def test_one_sex_is_unavailable_and_few_speakers_of_a_sex_are_noted():
    features, speakers, sexes = utterances(n_speakers=6)
    one = gender.gender_probe(features, speakers, np.full(len(sexes), "F"), seed=0)
    assert gender.NAME not in one.values and "every analysed speaker is F" in one.unavailable[gender.NAME]
    sexes = sexes.copy()
    sexes[speakers != "s1"] = "F"  # one male speaker
    few = gender.gender_probe(features, speakers, sexes, seed=0)
    assert any("1 male" in note for note in few.notes)
