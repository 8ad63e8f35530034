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
    baseline = family.values[gender.BASELINE_KEY]["layer_1"]
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


def test_majority_baseline_is_the_most_frequent_sex_share_of_all_utterances_per_layer():
    """The baseline is the prior majority share (0.5 for 3F/3M with equal utterances), never the 0 of "the training
    majority answered on the other sex's speakers" nor the 1 of "the best constant answer on a one-sex test part"."""
    features, speakers, sexes = utterances(n_speakers=6)
    family = gender.gender_probe(features, speakers, sexes, seed=0, n_splits=3)
    f = sum(s == "F" for s in sexes)
    share = max(f, len(sexes) - f) / len(sexes)
    assert family.values[gender.BASELINE_KEY] == {"layer_0": pytest.approx(share, abs=1e-12),
                                                  "layer_1": pytest.approx(share, abs=1e-12)}
    assert 0.5 <= share < 1.0


def test_reasons_name_what_is_missing():
    features, speakers, sexes = utterances(n_speakers=6)
    none = gender.gender_probe({k: v[:0] for k, v in features.items()}, speakers[:0], sexes[:0], seed=0)
    assert none.unavailable[gender.NAME] == ("no analysed speaker is listed in SPEAKERS.TXT: nothing to probe (the "
                                             "gender probe splits by speaker)")
    two = np.isin(speakers, ["s0", "s1"])
    short = gender.gender_probe({k: v[two] for k, v in features.items()}, speakers[two], sexes[two], seed=0)
    assert short.unavailable[gender.NAME].startswith("needs 3 speakers (train, dev and test each hold their own), "
                                                     "the analysed files have 2")


def test_chance_is_undefined_when_no_part_of_a_split_holds_both_sexes():
    features, speakers, sexes = utterances(n_speakers=3)  # one speaker per part: every part one sex
    family = gender.gender_probe(features, speakers, sexes, seed=0, n_splits=3, n_boot=20)
    assert gender.NAME in family.values and gender.NAME not in family.chance
    assert "changes nothing" in family.info[gender.INFO_KEY]["chance_undefined"]
    assert any("no part (train, dev, test) of any split holds both sexes" in n for n in family.notes)
