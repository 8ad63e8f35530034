"""File selection: sample sets (seeded, disjoint, recorded), shards, queries without side effects."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from layerwise.errors import UsageError
from layerwise.extract import jobs
from layerwise.extract.options import ExtractionOptions
from tests.conftest import tone


def names(n):
    return [Path(f"spk/{i:04d}.flac") for i in range(n)]


def test_sample_sets_are_seeded_disjoint_blocks_of_one_permutation():
    files = names(50)
    order = np.random.default_rng(jobs.SAMPLE_SEED).permutation(50)  # the documented rule, written out
    sets = [jobs.sample_set(files, 10, str(k)) for k in (1, 2, 3, 4, 5)]
    for k, (picked, record) in enumerate(sets, start=1):
        assert picked == sorted(files[i] for i in order[(k - 1) * 10: k * 10])
        assert record["disjoint_from_other_sets"] and record["stems"] == [p.stem for p in picked]
    assert len({p for picked, _ in sets for p in picked}) == 50
    assert jobs.sample_set(files, 10, "2") == sets[1]  # reproducible
    late, record = jobs.sample_set(files, 10, "6")  # beyond the folder: a fresh seeded draw, said so
    assert len(late) == 10 and not record["disjoint_from_other_sets"]


@pytest.mark.parametrize("n, sample", [(51, "1"), (10, "x"), (10, "0")])
def test_bad_sample_requests_are_usage_errors(n, sample):
    with pytest.raises(UsageError):
        jobs.sample_set(names(50), n, sample)


def test_selection_records_the_sample_and_shards_it(tmp_path):
    for i in range(6):
        sf.write(tmp_path / f"u{i}.flac", tone(500), 16000)
    options = ExtractionOptions(num_utterances=4, data_sample="1")
    whole = jobs.select(tmp_path, tmp_path / "o", options, 0, 1)
    halves = [jobs.select(tmp_path, tmp_path / "o", options, k, 2) for k in (0, 1)]
    assert sorted(j.source for h in halves for j in h.jobs) == [j.source for j in whole.jobs]
    assert whole.sample["stems"] == [j.source.stem for j in whole.jobs] and len(whole.jobs) == 4
    assert not (tmp_path / "o").exists()  # selecting writes nothing
    json.dumps(whole.sample)  # recorded in the manifest as it is
