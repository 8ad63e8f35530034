"""spans.py against direct computations: TextGrids written here with praatio, frame rules spelled out by hand."""

from fractions import Fraction
from math import ceil, floor

import numpy as np
import pytest

from layerwise import spans
from tests.conftest import write_textgrid

HOP, FIELD, SR, RATE = 320, 400, 16000, 50.0
GRID_END = 1.2  # seconds: the TextGrids' xmax


def hubert_centres(n_frames):
    return np.array([(i * HOP + FIELD / 2) / SR for i in range(n_frames)])  # 0.0125, 0.0325, ...


PHONES = [  # (start, end, label); gaps become empty intervals in the file
    (0.00, 0.30, "sil"),
    (0.30, 0.41, "HH"),
    (0.41, 0.53, "AH0"),
    (0.53, 0.54, "L"),  # 10 ms: shorter than a hop, no frame centre inside
    (0.54, 0.70, "OW1"),
    (0.70, 0.75, "sp"),
    (0.80, 0.95, "SPN"),  # upper case silence label
    (0.95, 1.10, "ER12"),
]
WORDS = [(0.00, 0.30, ""), (0.30, 0.70, "hello"), (0.70, 0.80, "sil"), (0.95, 1.10, "er2")]


@pytest.fixture
def grid_path(tmp_path):
    return write_textgrid(tmp_path / "84-121123-0000.TextGrid", {"phones": PHONES, "words": WORDS}, GRID_END)


def direct_centre(centres, start, end):
    inside = [i for i, c in enumerate(centres) if start <= c < end]
    if inside:
        return inside
    dist = [abs(c - (start + end) / 2) for c in centres]
    return [dist.index(min(dist))]  # first minimum = earlier frame on ties


def direct_pasad(n_frames, start, end):
    first = floor(Fraction(str(start)) * 50)  # exact rational arithmetic, no float rounding
    last = ceil(Fraction(str(end)) * 50) - 1
    first = min(max(first, 0), n_frames - 1)
    last = min(max(last, first), n_frames - 1)
    return list(range(first, last + 1))


def test_find_alignments_nested_and_duplicates(tmp_path):
    (tmp_path / "dev-clean" / "84" / "121123").mkdir(parents=True)
    (tmp_path / "dev-clean" / "174" / "50561").mkdir(parents=True)
    a = write_textgrid(tmp_path / "dev-clean" / "84" / "121123" / "84-121123-0000.TextGrid", {"words": WORDS}, GRID_END)
    b = write_textgrid(tmp_path / "dev-clean" / "174" / "50561" / "174-50561-0001.textgrid", {"words": WORDS}, GRID_END)
    (tmp_path / "notes.txt").write_text("not an alignment")
    assert spans.find_alignments(tmp_path) == {"174-50561-0001": b, "84-121123-0000": a}

    write_textgrid(tmp_path / "84-121123-0000.TextGrid", {"words": WORDS}, GRID_END)
    with pytest.raises(spans.AlignmentError, match="84-121123-0000"):
        spans.find_alignments(tmp_path)
    with pytest.raises(spans.AlignmentError, match="not a folder"):
        spans.find_alignments(tmp_path / "missing")


def test_read_segments_and_missing_tier(grid_path):
    words = spans.read_segments(grid_path, "words")
    assert [(s.start, s.end, s.label) for s in words] == [w for w in WORDS if w[2]]
    with pytest.raises(spans.AlignmentError, match=r"no tier 'phone'.*'phones', 'words'"):
        spans.read_segments(grid_path, "phone")
    bad = grid_path.parent / "bad.TextGrid"
    bad.write_text("this is not a TextGrid")
    with pytest.raises(spans.AlignmentError, match="cannot read TextGrid"):
        spans.read_segments(bad, "words")


def test_label_normalisation(grid_path):
    phones = spans.read_spans(grid_path, "phones", strip_stress_digits=True)
    assert [s.label for s in phones] == ["HH", "AH", "L", "OW", "ER"]
    kept = spans.read_spans(grid_path, "phones", strip_stress_digits=False)
    assert [s.label for s in kept] == ["HH", "AH0", "L", "OW1", "ER12"]
    words = spans.read_spans(grid_path, "words")
    assert [(s.start, s.end, s.label) for s in words] == [(0.30, 0.70, "hello"), (0.95, 1.10, "er2")]
    # Configurable silence set, case-insensitive; an empty (whitespace-only) label is skipped even when not listed.
    custom = spans.normalise_segments(
        [spans.Segment(0, 1, "SIL"), spans.Segment(1, 2, "sp"), spans.Segment(2, 3, " "), spans.Segment(3, 4, "L")],
        silence_labels={"sil"},
    )
    assert [s.label for s in custom] == ["sp", "L"]
    with pytest.raises(spans.AlignmentError, match="ends before"):
        spans.normalise_segments([spans.Segment(1.0, 0.5, "x")])


def test_centre_rule_short_segment_and_ties():
    centres = hubert_centres(60)
    # [0.53, 0.54): centres 0.5125 and 0.5325 lie outside; midpoint 0.535 is nearest 0.5325 (frame 26).
    assert spans.select_frames(centres, 0.53, 0.54).tolist() == [26] == direct_centre(centres, 0.53, 0.54)
    # [0.3325, 0.3725): start on a centre is included, end on a centre is excluded.
    assert spans.select_frames(centres, 0.3325, 0.3725).tolist() == [16, 17]
    # Tie between two centres -> the earlier frame; beyond the last frame -> the last frame.
    assert spans.select_frames(np.array([0.0, 1.0, 2.0]), 0.2, 0.8).tolist() == [0]
    assert spans.select_frames(centres, 5.0, 5.01).tolist() == [59]


def test_pasad_rule_matches_exact_arithmetic():
    centres = hubert_centres(60)
    for start, end in [(0.3, 0.41), (0.53, 0.54), (0.0, 0.02), (0.3, 0.3), (1.17, 1.5), (2.0, 3.0)]:
        got = spans.select_frames(centres, start, end, rule="pasad", frame_rate=RATE).tolist()
        assert got == direct_pasad(60, start, end), (start, end)
    assert spans.select_frames(centres, 0.3, 0.4, rule="pasad", frame_rate=RATE).tolist() == list(range(15, 20))
    with pytest.raises(ValueError, match="frame_rate"):
        spans.select_frames(centres, 0.3, 0.4, rule="pasad")


@pytest.mark.parametrize(
    "n, expected",
    [(1, [0]), (2, [0, 1]), (3, [1]), (4, [1, 2]), (5, [1, 2, 3]), (6, [2, 3]), (7, [2, 3, 4]), (9, [3, 4, 5])],
)
def test_middle_third_table(n, expected):
    assert spans.pooled_indices(np.arange(n), "middle_third").tolist() == expected


@pytest.mark.parametrize("rule", ["centre", "pasad"])
@pytest.mark.parametrize("pooling", ["mean", "middle_third"])
def test_pool_segments_equals_direct_mean(grid_path, rule, pooling):
    rng = np.random.default_rng(0)
    n_frames = 56  # 1.13 s of audio: the last phone reaches past the final centre 1.1125
    centres = hubert_centres(n_frames)
    feats = {"layer_0": rng.normal(size=(n_frames, 4)).astype(np.float32), "layer_1": rng.normal(size=(n_frames, 3))}
    segs = spans.read_spans(grid_path, "phones", strip_stress_digits=True)
    pooled, labels, intervals = spans.pool_segments(feats, centres, segs, rule=rule, pooling=pooling, frame_rate=RATE)

    expected_rows = [(0.30, 0.41, "HH"), (0.41, 0.53, "AH"), (0.53, 0.54, "L"), (0.54, 0.70, "OW"), (0.95, 1.10, "ER")]
    assert labels.tolist() == [r[2] for r in expected_rows]
    assert labels.dtype.kind == "U" and intervals.dtype == np.float64
    np.testing.assert_array_equal(intervals, [[r[0], r[1]] for r in expected_rows])
    for key, value in feats.items():
        assert pooled[key].shape == (5, value.shape[1]) and pooled[key].dtype == np.float32
        for row, (start, end, _) in enumerate(expected_rows):
            chosen = direct_centre(centres, start, end) if rule == "centre" else direct_pasad(n_frames, start, end)
            if pooling == "middle_third":
                third = len(chosen) // 3
                chosen = chosen[third : len(chosen) - third]
            np.testing.assert_allclose(pooled[key][row], value[chosen].mean(axis=0), atol=1e-6)
    # The 10 ms phone takes exactly one frame under the centre rule.
    if rule == "centre":
        np.testing.assert_allclose(pooled["layer_0"][2], feats["layer_0"][26], atol=1e-7)


def test_pool_segments_validation_and_empty():
    centres = hubert_centres(10)
    feats = {"layer_0": np.zeros((9, 2))}
    with pytest.raises(ValueError, match="does not match 10 frame centres"):
        spans.pool_segments(feats, centres, [spans.Segment(0, 0.1, "a")])
    with pytest.raises(ValueError, match="rule='nearest'"):
        spans.pool_segments({"layer_0": np.zeros((10, 2))}, centres, [], rule="nearest")
    pooled, labels, intervals = spans.pool_segments({"layer_0": np.zeros((10, 2))}, centres, [])
    assert pooled["layer_0"].shape == (0, 2) and labels.shape == (0,) and intervals.shape == (0, 2)
