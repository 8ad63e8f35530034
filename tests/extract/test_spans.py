"""spans.py against direct computations: TextGrids written here with praatio, frame rules spelled out by hand."""


import numpy as np
import pytest

from layerwise.contract import alignments
from layerwise.contract.alignments import Segment
from layerwise.errors import InputError, SegmentRangeError
from layerwise.extract import spans
from tests.conftest import FIXTURES, write_textgrid

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


def direct_pasad(n_frames, start, end, middle_third=False):
    """The reference's get_segment_idx spelled out (float64 division by the 20 ms stride, no rounding)."""
    first, last = int(np.floor(float(start) / 0.02)), int(np.ceil(float(end) / 0.02))
    if middle_third:
        k = int(np.floor((last - first + 1) / 3))
        first, last = first + k, last - k
    if last == first:
        last += 1
    if last == n_frames + 1:
        last = n_frames
    return list(range(first, last))


def trim_third(chosen):
    """middle_third on an explicit list: k = floor((n + 1) / 3) per side, or f_k alone when that empties it."""
    k = (len(chosen) + 1) // 3
    return chosen[k : len(chosen) - k] or chosen[k : k + 1]


FIXTURE = FIXTURES / "pasad_frame_rule_reference.npz"


def test_pasad_rule_reproduces_every_reference_row():
    """9,456 segments with the frames the reference code pools (tests/fixtures/README.md): every row must match."""
    ref = np.load(FIXTURE)
    n_frames = int(ref["n_frames"])
    centres = hubert_centres(n_frames)
    mismatches = []
    for start, end, third, first, stop in zip(ref["start_s"], ref["end_s"], ref["middle_third"], ref["first_frame"],
                                              ref["end_frame_exclusive"]):
        # times as a TextGrid gives them: the float of the decimal text
        start, end = float(repr(round(float(start), 2))), float(repr(round(float(end), 2)))
        got = spans.select_frames(centres, start, end, rule="pasad", frame_rate=RATE,
                                  pooling="middle_third" if third else "mean")
        if got.tolist() != list(range(first, stop)):
            mismatches.append((start, end, third, got.tolist(), (first, stop)))
    assert len(ref["start_s"]) == 9456
    assert not mismatches, mismatches[:5]


def test_pasad_rule_no_rounding_and_last_frame():
    centres = hubert_centres(60)
    # 0.14 / 0.02 = 7.000000000000001: the reference's ceil takes frame 7 too.
    assert spans.select_frames(centres, 0.0, 0.14, rule="pasad", frame_rate=RATE).tolist() == list(range(8))
    for start, end in [(0.3, 0.41), (0.53, 0.54), (0.0, 0.02), (0.3, 0.31), (1.17, 1.19)]:
        for third in (False, True):
            got = spans.select_frames(centres, start, end, rule="pasad", frame_rate=RATE,
                                      pooling="middle_third" if third else "mean")
            assert got.tolist() == direct_pasad(60, start, end, third), (start, end, third)
    # end == T + 1 -> T (the reference's own clamp); a segment in the last 20 ms after the last frame's slot (which
    # the reference cannot handle) gets the last frame, never an index >= T.
    assert spans.select_frames(centres, 1.17, 1.2, rule="pasad", frame_rate=RATE).tolist() == [58, 59]
    assert spans.select_frames(centres, 1.2, 1.21, rule="pasad", frame_rate=RATE).tolist() == [59]
    with pytest.raises(ValueError, match="frame_rate"):
        spans.select_frames(centres, 0.3, 0.4, rule="pasad")


@pytest.mark.parametrize(
    "n, expected",
    [(1, [0]), (2, [1]), (3, [1]), (4, [1, 2]), (5, [2]), (6, [2, 3]), (7, [2, 3, 4]), (8, [3, 4]), (9, [3, 4, 5])],
)
def test_middle_third_table(n, expected):
    """The reference's trim k = floor((n + 1) / 3) on n frames whose centres lie inside the segment."""
    centres = np.arange(20) * 0.02 + 0.0125
    got = spans.select_frames(centres, 0.0, n * 0.02, pooling="middle_third")  # frames 0..n-1 have centres inside
    assert got.tolist() == expected == trim_third(list(range(n)))


def test_centre_rule_short_segment_and_ties():
    centres = hubert_centres(60)
    # [0.53, 0.54): centres 0.5125 and 0.5325 lie outside; midpoint 0.535 is nearest 0.5325 (frame 26).
    assert spans.select_frames(centres, 0.53, 0.54).tolist() == [26] == direct_centre(centres, 0.53, 0.54)
    # [0.3325, 0.3725): start on a centre is included, end on a centre is excluded.
    assert spans.select_frames(centres, 0.3325, 0.3725).tolist() == [16, 17]
    # A tie between two centres -> the earlier frame, also where float rounding makes the later one nearer by an
    # ulp (|0.3 - 0.2| = 0.09999999999999998 < |0.1 - 0.2| = 0.1).
    assert spans.select_frames(np.array([0.0, 1.0, 2.0]), 0.2, 0.8).tolist() == [0]
    assert abs(0.3 - 0.5 * (0.15 + 0.25)) < abs(0.1 - 0.5 * (0.15 + 0.25))
    assert spans.select_frames(np.array([0.1, 0.3]), 0.15, 0.25).tolist() == [0]
    # The fallback can give a short segment a frame whose centre lies in its neighbour: [0.58, 0.59) has no centre,
    # its midpoint 0.585 is nearest frame 29 (0.5925), which [0.59, 0.65) also takes.
    assert spans.select_frames(centres, 0.58, 0.59).tolist() == [29]
    assert spans.select_frames(centres, 0.59, 0.65).tolist()[0] == 29


def segs(*rows):
    return [Segment(s, e, lab) for s, e, lab in rows]


def test_check_segments_fail_and_drop():
    """A 1.5 s utterance whose alignment runs to 3.0 s: three segments after the end; never clamped."""
    rows = segs((0.0, 0.5, "a"), (0.5, 1.5, "b"), (1.5, 2.0, "c"), (2.0, 2.5, "d"), (2.5, 3.0, "e"))
    with pytest.raises(SegmentRangeError, match=r"'c' \[1.5, 2.0\).*starts after.*3.0 s.*1.5 s") as err:
        spans.check_segments(rows, audio_seconds=1.5, tolerance_s=0.02, source="x.TextGrid")
    assert isinstance(err.value, InputError) and "x.TextGrid" in str(err.value)
    kept, dropped = spans.check_segments(rows, audio_seconds=1.5, tolerance_s=0.02, out_of_range="drop")
    assert [s.label for s in kept] == ["a", "b"] and dropped == 3
    # ends within one frame after the audio: kept; beyond: a failure; empty and reversed: failures
    assert spans.check_segments(segs((1.0, 1.52, "a")), audio_seconds=1.5, tolerance_s=0.02)[1] == 0
    for bad, why in [((1.0, 1.53, "a"), "ends more than 20 ms"), ((1.0, 1.0, "a"), "empty or reversed"),
                     ((1.0, 0.9, "a"), "empty or reversed")]:
        with pytest.raises(SegmentRangeError, match=why):
            spans.check_segments(segs(bad), audio_seconds=1.5, tolerance_s=0.02)
    with pytest.raises(ValueError, match="out_of_range='clamp'"):
        spans.check_segments(rows, audio_seconds=1.5, tolerance_s=0.02, out_of_range="clamp")


def test_pool_segments_refuses_segments_after_the_audio():
    centres = hubert_centres(74)  # 1.5 s of audio
    feats = {"layer_0": np.zeros((74, 2))}
    with pytest.raises(SegmentRangeError, match="starts after"):
        spans.pool_segments(feats, centres, segs((0.5, 1.0, "a"), (2.0, 2.5, "b")), audio_seconds=1.5,
                            tolerance_s=0.02)


@pytest.mark.parametrize("rule", ["centre", "pasad"])
@pytest.mark.parametrize("pooling", ["mean", "middle_third"])
def test_pool_segments_equals_direct_mean(grid_path, rule, pooling):
    rng = np.random.default_rng(0)
    n_frames = 56  # 1.13 s of audio: the last phone reaches past the final centre 1.1125
    centres = hubert_centres(n_frames)
    feats = {"layer_0": rng.normal(size=(n_frames, 4)).astype(np.float32), "layer_1": rng.normal(size=(n_frames, 3))}
    segments = alignments.read_spans(grid_path, "phones", strip_stress_digits=True)
    pooled, labels, intervals = spans.pool_segments(feats, centres, segments, audio_seconds=1.13, tolerance_s=0.02,
                                                    rule=rule, pooling=pooling, frame_rate=RATE)

    expected_rows = [(0.30, 0.41, "HH"), (0.41, 0.53, "AH"), (0.53, 0.54, "L"), (0.54, 0.70, "OW"), (0.95, 1.10, "ER")]
    assert labels.tolist() == [r[2] for r in expected_rows]
    assert labels.dtype.kind == "U" and intervals.dtype == np.float64
    np.testing.assert_array_equal(intervals, [[r[0], r[1]] for r in expected_rows])
    for key, value in feats.items():
        assert pooled[key].shape == (5, value.shape[1]) and pooled[key].dtype == np.float32
        for row, (start, end, _) in enumerate(expected_rows):
            if rule == "centre":
                chosen = direct_centre(centres, start, end)
                chosen = trim_third(chosen) if pooling == "middle_third" else chosen
            else:
                chosen = direct_pasad(n_frames, start, end, pooling == "middle_third")
            np.testing.assert_allclose(pooled[key][row], value[chosen].mean(axis=0), atol=1e-6)
    # The 10 ms phone takes exactly one frame under the centre rule.
    if rule == "centre":
        np.testing.assert_allclose(pooled["layer_0"][2], feats["layer_0"][26], atol=1e-7)


def test_pool_segments_validation_and_empty():
    centres = hubert_centres(10)
    feats = {"layer_0": np.zeros((9, 2))}
    kw = {"audio_seconds": 0.2, "tolerance_s": 0.02}
    with pytest.raises(ValueError, match="does not match 10 frame centres"):
        spans.pool_segments(feats, centres, [Segment(0, 0.1, "a")], **kw)
    with pytest.raises(ValueError, match="rule='nearest'"):
        spans.pool_segments({"layer_0": np.zeros((10, 2))}, centres, [], rule="nearest", **kw)
    pooled, labels, intervals = spans.pool_segments({"layer_0": np.zeros((10, 2))}, centres, [], **kw)
    assert pooled["layer_0"].shape == (0, 2) and labels.shape == (0,) and intervals.shape == (0, 2)


# --- issue 22, kind 9: documented inclusive limits compared in whole samples, not binary seconds ----------------

def centis(n: int) -> float:
    """``n`` hundredths of a second as an alignment file states them (the float of the decimal text)."""
    return float(f"{n // 100}.{n % 100:02d}")


def test_word_ending_one_frame_after_a_401_s_file_is_kept():
    """The issue's example: 4.03 s is exactly 20 ms (one frame) after 4.01 s of audio; in binary 4.01 + 0.02 <
    4.03, and the word was rejected."""
    kept, dropped = spans.check_segments([Segment(3.9, 4.03, "word")], audio_seconds=64160 / SR,
                                         tolerance_s=HOP / SR, sample_rate=SR)
    assert dropped == 0 and kept == [Segment(3.9, 4.03, "word")]


def test_segment_limits_on_a_10_ms_grid_follow_the_integer_rule():
    """Every duration from 0.10 to 35.00 s in 10 ms steps: a segment ending 20 ms after the audio is kept, 30 ms
    after is refused; one starting 10 ms before the end is kept, at the end refused. The rule, in integer
    samples (160 per 10 ms): ``start < n_audio`` and ``end <= n_audio + 320``."""
    wrong = []
    for cs in range(10, 3501):
        n_audio = cs * 160
        audio_seconds = n_audio / SR
        cases = [(cs - 5, cs + 2), (cs - 5, cs + 3), (cs - 1, cs + 1), (cs, cs + 1)]
        for start_cs, end_cs in cases:
            expected = start_cs * 160 < n_audio and end_cs * 160 <= n_audio + HOP
            seg = Segment(centis(start_cs), centis(end_cs), "w")
            kept, _ = spans.check_segments([seg], audio_seconds=audio_seconds, tolerance_s=HOP / SR,
                                           out_of_range="drop", sample_rate=SR)
            if bool(kept) != expected:
                wrong.append((cs, start_cs, end_cs, expected))
    assert not wrong, wrong[:5]


def test_touching_segments_never_overlap_by_rounding():
    """Adjacent segments share a boundary written once in decimal, possibly reached by a CTM-style sum: they touch,
    they do not overlap (compared in samples)."""
    for cs in range(1, 3500, 7):
        first = Segment(0.0, centis(cs), "a")
        second = Segment(centis(cs), centis(cs + 3), "b")
        spans.check_segments([first, second], audio_seconds=36.0, tolerance_s=0.02, sample_rate=SR)


def test_centre_rule_on_a_10_ms_grid_follows_the_integer_rule():
    """Frame i (centre ``(640·i + 400) / 32000`` s) belongs to ``[start, end)`` exactly when
    ``start·32000 ≤ 640·i + 400 < end·32000`` in integers; segments on a 5 ms grid hit centres exactly."""
    n_frames = 400
    centres = hubert_centres(n_frames)
    for start_half in range(0, 1500, 3):  # start in 5 ms units
        for length in (1, 2, 4, 5, 9, 40):
            start_u, end_u = start_half * 160, (start_half + length) * 160  # in 1/32000 s
            start, end = start_half * 0.005, (start_half + length) * 0.005
            start, end = float(f"{start:.3f}"), float(f"{end:.3f}")
            inside = [i for i in range(n_frames) if start_u <= 640 * i + 400 < end_u]
            if not inside:
                continue  # the midpoint fallback has its own tests
            got = spans.select_frames(centres, start, end, rule="centre")
            assert got.tolist() == inside, (start, end)
