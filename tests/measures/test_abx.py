"""measures/abx.py against fastabx 0.9.0 reference numbers (tests/fixtures/abx, copied from the shared fixtures) and
hand computations."""

import csv
import json
import math
from decimal import Decimal

import numpy as np
import pytest

from layerwise.errors import ItemFileError
from layerwise.measures import abx
from tests.conftest import FIXTURES as ALL_FIXTURES

FIXTURES = ALL_FIXTURES / "abx"
FIXTURE_MODES = ["within_speaker_triphone", "across_speaker_triphone", "within_speaker_phoneme"]
FIXTURE_DISTANCES = ["angular", "euclidean"]
TOL = 1e-5


@pytest.fixture(scope="module")
def data():
    feats = dict(np.load(FIXTURES / "features.npz"))
    items = abx.read_item_file(FIXTURES / "triphone.item")
    return feats, items


@pytest.fixture(scope="module")
def results(data):
    feats, items = data
    return {
        (m, d): abx.abx_error_rates(feats, items, mode=m, distance=d) for m in FIXTURE_MODES for d in FIXTURE_DISTANCES
    }


# ----------------------------------------------------------------------------------------- fixture reproduction


def test_fixture_items_all_used(data, results):
    _, items = data
    assert len(items) == 528
    for r in results.values():
        assert r.n_items_used == r.n_items == 528
        assert r.excluded == [] and r.excluded_counts == {}


@pytest.mark.parametrize("mode", FIXTURE_MODES)
@pytest.mark.parametrize("distance", FIXTURE_DISTANCES)
def test_scores_match_fastabx(results, mode, distance):
    expected = json.loads((FIXTURES / "results.json").read_text())["scores"][f"{mode}/{distance}"]
    assert abs(results[mode, distance].score - expected) < TOL


@pytest.mark.parametrize("mode", FIXTURE_MODES)
@pytest.mark.parametrize("distance", FIXTURE_DISTANCES)
def test_cells_match_fastabx(results, mode, distance):
    with open(FIXTURES / f"cells-{mode}-{distance}.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    keycols = [c for c in rows[0] if c not in ("score", "size")]
    r = results[mode, distance]
    assert r.columns == [*keycols, "score", "size"]
    ref = {tuple(row[c] for c in keycols): (float(row["score"]), int(row["size"])) for row in rows}
    mine = {
        tuple(r.cells[c][i] for c in keycols): (float(r.cells["score"][i]), int(r.cells["size"][i]))
        for i in range(len(r.cells["score"]))
    }
    assert len(mine) == len(r.cells["score"])  # keys unique
    assert set(mine) == set(ref)
    for key, (score, size) in ref.items():
        assert mine[key][1] == size, key
        assert abs(mine[key][0] - score) < TOL, (key, mine[key][0], score)


def test_write_csv_roundtrip(results, tmp_path):
    r = results["within_speaker_phoneme", "angular"]
    r.write_csv(tmp_path / "cells.csv")
    with open(tmp_path / "cells.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(r.cells["score"]) and list(rows[0]) == r.columns


# ----------------------------------------------------------------------------------------- hand-computed example


def _one_frame_items(spec):
    """spec: list of (file, frame, phone, speaker) -> 1-frame items at 50 Hz (frame k = [0.02k, 0.02k + 0.01])."""
    items = []
    for file, k, phone, spk in spec:
        on = Decimal(k) * Decimal("0.02")
        items.append(abx.Item(file, on, on + Decimal("0.01"), phone, "#", "#", spk))
    return items


def _angular(u, v):
    u = u / np.linalg.norm(u)
    v = v / np.linalg.norm(v)
    return math.acos(max(-1.0, min(1.0, float(u @ v)))) / math.pi


def test_dtw_reduces_to_plain_distance():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 5)).astype(np.float32)
    y = rng.normal(size=(4, 5)).astype(np.float32)
    # one frame against n frames: single path of length n -> mean of the frame distances
    expected = np.mean([_angular(x[0], y[j]) for j in range(4)])
    assert abs(abx.dtw(x, y, "angular") - expected) < 1e-6
    expected_e = np.mean([np.linalg.norm(x[0] - y[j]) for j in range(4)])
    assert abs(abx.dtw(x, y, "euclidean") - expected_e) < 1e-5
    assert abx.dtw(y, y, "angular") < 1e-3  # identical sequences (acos(1 - eps) in float32 is ~3e-4)
    # diagonal path: cost sum / path length
    z = y + np.float32(0.01)
    d = np.array([np.linalg.norm(y[i] - z[i]) for i in range(4)])
    assert abs(abx.dtw(y, z, "euclidean") - d.sum() / 4) < 1e-5


def test_hand_computed_within_and_across():
    rng = np.random.default_rng(1)
    feats = {"f0": rng.normal(size=(10, 3)).astype(np.float32), "f1": rng.normal(size=(10, 3)).astype(np.float32)}
    # speaker s0: phone P at frames 0,1,2 ; phone Q at frames 3,4.  speaker s1 (file f1): P at 0,1 ; Q at 2
    spec = [("f0", 0, "P", "s0"), ("f0", 1, "P", "s0"), ("f0", 2, "P", "s0"), ("f0", 3, "Q", "s0"),
            ("f0", 4, "Q", "s0"), ("f1", 0, "P", "s1"), ("f1", 1, "P", "s1"), ("f1", 2, "Q", "s1")]
    items = _one_frame_items(spec)
    vec = [feats[f][k].astype(np.float64) for f, k, _, _ in spec]
    groups = {}
    for i, (_, _, p, s) in enumerate(spec):
        groups.setdefault((p, s), []).append(i)

    def err(xs, as_, bs, symmetric):
        c, n = 0.0, 0
        for x in xs:
            for a in as_:
                if symmetric and a == x:
                    continue
                for b in bs:
                    da, db = _angular(vec[x], vec[a]), _angular(vec[x], vec[b])
                    c += 1.0 if da < db else (0.5 if da == db else 0.0)
                    n += 1
        return 1 - c / n, n

    # within speaker (phoneme, context any): A=X same set of >= 2 items, B same speaker
    r = abx.abx_error_rates(feats, items, mode="within_speaker_phoneme")
    got = {(r.cells["#phone"][i], r.cells["speaker"][i], r.cells["#phone_b"][i]):
           (r.cells["score"][i], r.cells["size"][i]) for i in range(len(r.cells["score"]))}
    exp = {}
    for s in ("s0", "s1"):
        for p, q in (("P", "Q"), ("Q", "P")):
            if len(groups[p, s]) >= abx.MIN_A_LEN:
                exp[p, s, q] = err(groups[p, s], groups[p, s], groups[q, s], True)
    assert set(got) == set(exp) == {("P", "s0", "Q"), ("Q", "s0", "P"), ("P", "s1", "Q")}
    for k in exp:
        assert got[k][1] == exp[k][1]
        assert abs(got[k][0] - exp[k][0]) < 1e-6
    # collapse: mean over speakers per (P, Q) pair, then plain mean over pairs
    pq = (exp["P", "s0", "Q"][0] + exp["P", "s1", "Q"][0]) / 2
    qp = exp["Q", "s0", "P"][0]
    assert abs(r.score - (pq + qp) / 2) < 1e-6

    # across speaker: A, B from speaker s, X = A's phone from the other speaker; no minimum size
    r = abx.abx_error_rates(feats, items, mode="across_speaker_phoneme")
    got = {(r.cells["#phone"][i], r.cells["speaker"][i], r.cells["#phone_b"][i], r.cells["speaker_x"][i]):
           (r.cells["score"][i], r.cells["size"][i]) for i in range(len(r.cells["score"]))}
    exp = {}
    for s, sx in (("s0", "s1"), ("s1", "s0")):
        for p, q in (("P", "Q"), ("Q", "P")):
            exp[p, s, q, sx] = err(groups[p, sx], groups[p, s], groups[q, s], False)
    assert set(got) == set(exp)
    for k in exp:
        assert got[k][1] == exp[k][1]
        assert abs(got[k][0] - exp[k][0]) < 1e-6


def _planted(seed, separated):
    """3 speakers (one file each) x 2 contexts x 4 phones x 3 items of 3 frames (50 Hz), D = 8.  ``separated``:
    each phone's frames are 10 * (its own unit vector) + N(0, 0.01^2) noise; else pure N(0, 1) noise."""
    rng = np.random.default_rng(seed)
    phones, contexts, n_rep, n_frames, dim = "ABCD", (("x", "y"), ("y", "x")), 3, 3, 8
    feats, items = {}, []
    for s in ("s0", "s1", "s2"):
        rows = []
        for prev, nxt in contexts:
            for p_idx, p in enumerate(phones):
                for _ in range(n_rep):
                    k = len(rows) * n_frames  # frames [k, k + 3) = [0.02k, 0.02(k + 3) - 0.01] s
                    onset, offset = Decimal(k) * Decimal("0.02"), Decimal(k + n_frames) * Decimal("0.02")
                    items.append(abx.Item(s, onset, offset - Decimal("0.01"), p, prev, nxt, s))
                    mean = 10.0 * np.eye(dim)[p_idx] if separated else np.zeros(dim)
                    rows.append(mean + rng.normal(scale=0.01 if separated else 1.0, size=(n_frames, dim)))
        feats[s] = np.concatenate(rows).astype(np.float32)
    return feats, items


def test_planted_separated_phones_and_pure_noise():
    separated, noise = _planted(0, separated=True), _planted(1, separated=False)
    for mode in abx.MODES:
        for distance in abx.DISTANCES:
            # well-separated phone means + tiny noise: A is always nearer to X than B -> error 0
            r = abx.abx_error_rates(*separated, mode=mode, distance=distance)
            assert r.n_items_used == r.n_items == 72 and len(r.cells["score"]) > 0
            assert r.score < 0.01, (mode, distance, r.score)
            # features independent of the phone: chance level
            r = abx.abx_error_rates(*noise, mode=mode, distance=distance)
            assert abs(r.score - 0.5) < 0.1, (mode, distance, r.score)


def test_zero_frame_angular_like_fastabx():
    # a zero frame is replaced by the constant vector 1/sqrt(D) before the dot products
    x = np.zeros((1, 4), np.float32)
    y = np.array([[1, 1, 1, 1], [1, 0, 0, 0]], np.float32)
    d = abx.frame_distances(x, y, "angular")
    assert d[0, 0] < 1e-3 and abs(d[0, 1] - math.acos(0.5) / math.pi) < 1e-6


# ----------------------------------------------------------------------------------------- subsampling


def test_subsampling_seeded(data):
    feats, items = data
    for mode in ("within_speaker_phoneme", "across_speaker_triphone"):
        kw = dict(mode=mode, max_size_group=3, max_x_across=2)
        r1 = abx.abx_error_rates(feats, items, seed=0, **kw)
        r2 = abx.abx_error_rates(feats, items, seed=0, **kw)
        r3 = abx.abx_error_rates(feats, items, seed=1, **kw)
        assert r1.score == r2.score
        assert r1.rows() == r2.rows()
        assert r1.score != r3.score
        full = abx.abx_error_rates(feats, items, mode=mode)
        assert r1.score != full.score
        # cells cap: nx, na, nb <= 3
        assert r1.cells["size"].max() <= 3 * 3 * 3
        if mode.startswith("across"):
            per_ab = {}
            for i in range(len(r1.cells["size"])):
                key = tuple(r1.cells[c][i] for c in ("#phone", "prev-phone", "next-phone", "speaker", "#phone_b"))
                per_ab.setdefault(key, set()).add(r1.cells["speaker_x"][i])
            assert max(len(v) for v in per_ab.values()) <= 2


def test_subsampling_disabled(data, results):
    feats, items = data
    for off in (None, 0):
        r = abx.abx_error_rates(feats, items, mode="across_speaker_triphone", max_size_group=off, max_x_across=off)
        assert r.score == results["across_speaker_triphone", "angular"].score
    # limits larger than every group change nothing
    r = abx.abx_error_rates(feats, items, mode="within_speaker_triphone", max_size_group=10_000, seed=5)
    assert r.score == results["within_speaker_triphone", "angular"].score
    with pytest.raises(ValueError):
        abx.abx_error_rates(feats, items, mode="within_speaker_triphone", max_size_group=1)


# ----------------------------------------------------------------------------------------- frames and item files


@pytest.mark.parametrize(
    ("onset", "offset", "rate", "expected"),
    [
        (0.27, 0.36, 50, (13, 18)),  # 0.27*50 - 0.5 = 13 exactly
        (0.03, 0.27, 50, (1, 14)),  # 0.03*50 - 0.5 = 1 exactly
        # 0.07*50 - 0.5 = 3 (float: 3.0000000000000004); 0.29*50 - 0.5 = 14 (float: 13.999..)
        (0.07, 0.29, 50, (3, 15)),
        (0.55, 0.57, 50, (27, 29)),  # same trap on both sides
        ("0.27", "0.27", "50", (13, 14)),
        (Decimal("0.03"), Decimal("0.03"), Decimal(50), (1, 2)),
        (0.0, 0.01, 50, (0, 1)),
        (0.16, 0.27, 50.0, (8, 14)),
        (0.27, 0.28, 100, (27, 28)),
        (0.02, 0.029, 50, (1, 1)),  # empty: 0.029*50 - 0.5 = 0.95 -> floor 0 -> stop 1
    ],
)
def test_item_frames(onset, offset, rate, expected):
    assert abx.item_frames(onset, offset, rate) == expected


def test_item_frames_beats_binary_rounding():
    # the naive float rule is off by one on these boundary times (they sit exactly on half-frames)
    assert math.ceil(0.07 * 50 - 0.5) == 4 and abx.item_frames(0.07, 0.07, 50)[0] == 3
    assert math.floor(0.29 * 50 - 0.5) + 1 == 14 and abx.item_frames(0.29, 0.29, 50)[1] == 15
    # and the decimal rule agrees with exact rational arithmetic on a 10 ms grid
    from fractions import Fraction
    for k in range(0, 2000):
        t = Fraction(k, 100)
        exact = (math.ceil(t * 50 - Fraction(1, 2)), math.floor(t * 50 - Fraction(1, 2)) + 1)
        assert abx.item_frames(k / 100, k / 100, 50) == exact


def test_read_item_file_errors(tmp_path):
    header = "#file onset offset #phone prev-phone next-phone speaker\n"
    p = tmp_path / "a.item"
    p.write_text("\ufeff" + header + "f 0.1 0.2 A B C s\n\nf 0.2 0.3 A B C s\n", encoding="utf-8")
    items = abx.read_item_file(p)
    assert [it.line for it in items] == [2, 4] and items[0].onset == Decimal("0.1")
    cases = {
        "f 0.1 0.2 A B C\n": "expected 7 fields",
        "f x 0.2 A B C s\n": "onset 'x' is not a number",
        "f 0.3 0.2 A B C s\n": "onset 0.3 > offset 0.2",
        "f -0.1 0.2 A B C s\n": "non-negative",
        "f 0.1 nan A B C s\n": "finite",
    }
    for line, msg in cases.items():
        p.write_text(header + "f 0.1 0.2 A B C s\n" + line, encoding="utf-8")
        with pytest.raises(ItemFileError, match=msg) as e:
            abx.read_item_file(p)
        assert f"{p}:3" in str(e.value)
    p.write_text("#file onset offset phone\n", encoding="utf-8")
    with pytest.raises(ItemFileError, match=":1: bad header"):
        abx.read_item_file(p)


def test_bad_items_are_reported(data):
    feats, items = data
    extra = [
        abx.Item("spk0-utt000", Decimal("0.02"), Decimal("0.029"), "AA", "T", "IY", "spk0", 0),  # empty range
        abx.Item("spk0-utt000", Decimal("100"), Decimal("101"), "AA", "T", "IY", "spk0", 0),  # beyond features
        abx.Item("nofile", Decimal("0.1"), Decimal("0.2"), "AA", "T", "IY", "spk0", 0),
    ]
    r = abx.abx_error_rates(feats, items + extra, mode="within_speaker_triphone")
    assert r.n_items == 531 and r.n_items_used == 528
    assert r.excluded_counts == {"empty frame range": 1, "beyond the features": 1, "missing features": 1}
    assert [i for i, _, _ in r.excluded] == [528, 529, 530]
    expected = json.loads((FIXTURES / "results.json").read_text())["scores"]["within_speaker_triphone/angular"]
    assert abs(r.score - expected) < TOL


def test_bad_arguments(data):
    feats, items = data
    with pytest.raises(ValueError, match="unknown mode"):
        abx.abx_error_rates(feats, items, mode="nope")
    with pytest.raises(ValueError, match="unknown distance"):
        abx.abx_error_rates(feats, items, mode="within_speaker_triphone", distance="cosine2")


# ----------------------------------------------------------------------------------------- items from alignments


def _seg(stem, *phones_and_times):
    return [(stem, on, off, ph) for ph, on, off in phones_and_times]


def test_items_from_segments_contexts_and_gaps():
    segs = _seg("u1", ("A", 0.0, 0.1), ("B", 0.1, 0.2), ("C", 0.2, 0.3), ("D", 0.3, 0.4),  # run 1: A B C D
                ("E", 0.6, 0.7), ("F", 0.7, 0.8), ("G", 0.8, 0.9),  # a removed silence before E: run 2
                ("H", 1.0, 1.1), ("I", 1.1, 1.2))  # run 3 has only 2 phones: no item
    # 0.1 + 0.2 = 0.30000000000000004 still counts as adjacent to 0.3 (rounding of written alignment times)
    segs += _seg("u2", ("P", 0.0, 0.1), ("Q", 0.1, 0.1 + 0.2), ("R", 0.3, 0.45))
    items = abx.abx_items_from_segments(segs, speaker_of={"u1": "s1", "u2": "s2"})
    got = [(it.file, str(it.onset), str(it.offset), it.phone, it.prev_phone, it.next_phone, it.speaker)
           for it in items]
    assert got == [("u1", "0.1", "0.2", "B", "A", "C", "s1"), ("u1", "0.2", "0.3", "C", "B", "D", "s1"),
                   ("u1", "0.7", "0.8", "F", "E", "G", "s1"),
                   ("u2", "0.1", "0.30000000000000004", "Q", "P", "R", "s2")]
    # a function works as speaker_of; interleaved stems are grouped per file
    mixed = [*segs[:2], segs[9], *segs[2:9], *segs[10:]]  # u1 u1 u2 u1 ... u1 u2 u2
    assert abx.abx_items_from_segments(mixed, speaker_of=lambda stem: {"u1": "s1", "u2": "s2"}[stem]) == items


def test_items_from_segments_errors():
    with pytest.raises(ItemFileError, match="no speaker"):
        abx.abx_items_from_segments(_seg("u1", ("A", 0, 0.1)), speaker_of={})
    with pytest.raises(ItemFileError, match="whitespace"):
        abx.abx_items_from_segments(_seg("u1", ("A B", 0, 0.1)), speaker_of={"u1": "s"})
    with pytest.raises(abx.AlignmentError, match="onset < offset"):
        abx.abx_items_from_segments(_seg("u1", ("A", 0.2, 0.1)), speaker_of={"u1": "s"})
    with pytest.raises(abx.AlignmentError, match="u1: phone 1 .* starts before"):
        abx.abx_items_from_segments(_seg("u1", ("A", 0, 0.2), ("B", 0.1, 0.3)), speaker_of={"u1": "s"})


def test_write_item_file_roundtrip(data, tmp_path):
    _, items = data
    path = abx.write_item_file(items, tmp_path / "copy.item")
    assert abx.read_item_file(path) == [it._replace(line=i + 2) for i, it in enumerate(items)]
    built = abx.abx_items_from_segments(_seg("u", ("A", 0, 0.07), ("B", 0.07, 0.15), ("C", 0.15, 1e-5 + 0.2)),
                                        speaker_of={"u": "s"})
    back = abx.read_item_file(abx.write_item_file(built, tmp_path / "built.item"))
    assert [it._replace(line=0) for it in back] == built and str(back[0].offset) == "0.15"
    bad = [items[0]._replace(phone="two words")]
    with pytest.raises(ItemFileError, match="whitespace"):
        abx.write_item_file(bad, tmp_path / "bad.item")


# ----------------------------------------------------------------------------------------- speaker bootstrap


def test_interval_contains_estimate_on_fixture(results):
    for mode in FIXTURE_MODES:
        r = results[mode, "angular"]
        iv = abx.abx_interval(r, seed=0)
        assert iv.reason is None and iv.n_speakers == 4 and iv.n_boot == abx.DEFAULT_N_BOOT and iv.level == 0.95
        assert iv.low < r.score < iv.high, (mode, iv, r.score)
        assert abx.abx_interval(r, seed=0) == iv  # same seed, same interval


def _relabelled_collapse(r, draw):
    """Independent replicate: copy every cell of speaker s once per draw of s, as a new speaker, then collapse."""
    cols = abx._cell_columns(r.mode)
    si = cols.index("speaker")
    keys, scores = [], []
    for copy, spk in enumerate(draw):
        for i in np.flatnonzero(r.cells["speaker"] == spk):
            key = [r.cells[c][i] for c in cols]
            key[si] = f"{spk}#{copy}"
            keys.append(tuple(key))
            scores.append(r.cells["score"][i])
    return abx._collapse(keys, np.array(scores), r.mode)


def test_interval_replicates_are_the_collapse_of_resampled_speakers(results):
    for mode in FIXTURE_MODES:
        r = results[mode, "euclidean"]
        speakers, w, n = abx._speaker_sums(r)
        assert speakers == ["spk0", "spk1", "spk2", "spk3"]
        for draw in (speakers, ["spk0", "spk0", "spk2", "spk3"], ["spk3", "spk3", "spk3", "spk1"]):
            counts = np.array([[draw.count(s) for s in speakers]], np.float64)
            got = abx._replicate_scores(w, n, counts)[0]
            assert abs(got - _relabelled_collapse(r, draw)) < 1e-12, (mode, draw)
        assert abs(abx._replicate_scores(w, n, np.ones((1, 4)))[0] - r.score) < 1e-12


def test_interval_one_speaker_and_bad_arguments(data):
    feats, items = data
    r = abx.abx_error_rates(feats, [it for it in items if it.speaker == "spk0"], mode="within_speaker_phoneme")
    iv = abx.abx_interval(r)
    assert (iv.low, iv.high, iv.n_boot, iv.n_speakers) == (None, None, 0, 1) and "one speaker" in iv.reason
    # across speakers with a single speaker: no X of another speaker, so no cell at all
    r = abx.abx_error_rates(feats, [it for it in items if it.speaker == "spk0"], mode="across_speaker_triphone")
    iv = abx.abx_interval(r)
    assert (iv.low, iv.high, iv.n_speakers, iv.reason) == (None, None, 0, "no ABX cell") and math.isnan(r.score)
    with pytest.raises(ValueError, match="n_boot"):
        abx.abx_interval(r, n_boot=0)
    with pytest.raises(ValueError, match="level"):
        abx.abx_interval(r, level=1.0)


def _synthetic_speakers(n_speakers, seed, *, phones="ABCDE", n_phones=40, dim=8):
    """Speakers of the same kind: one utterance each of ``n_phones`` random phones, 3 frames (60 ms) per phone;
    frames = 2 * (the phone's unit vector) + N(0, sd^2) noise with a speaker's own sd in [0.5, 2.5], so the
    speakers' error rates differ; built with the public API (abx_items_from_segments)."""
    rng = np.random.default_rng(seed)
    feats, segs, speaker_of = {}, [], {}
    for s in range(n_speakers):
        stem, sd = f"spk{s}-utt", rng.uniform(0.5, 2.5)
        labels = rng.integers(0, len(phones), n_phones)
        means = 2.0 * np.eye(dim)[np.repeat(labels, 3)]
        feats[stem] = (means + rng.normal(scale=sd, size=means.shape)).astype(np.float32)
        segs += [(stem, Decimal(3 * k) / 50, Decimal(3 * k + 3) / 50, phones[p]) for k, p in enumerate(labels)]
        speaker_of[stem] = f"spk{s}"
    return feats, abx.abx_items_from_segments(segs, speaker_of=speaker_of)


def test_interval_narrows_with_more_speakers():
    widths = {}
    for n_spk in (5, 20):
        w = []
        for data_seed in range(3):  # mean width over 3 corpora: one small corpus' width is itself noisy
            feats, items = _synthetic_speakers(n_spk, seed=100 * n_spk + data_seed)
            assert len(items) == n_spk * 38  # 40 adjacent phones per utterance: all but the first and last
            r = abx.abx_error_rates(feats, items, mode="within_speaker_phoneme", distance="euclidean")
            iv = abx.abx_interval(r, seed=0)
            assert iv.n_speakers == n_spk and iv.low < r.score < iv.high
            w.append(iv.high - iv.low)
        widths[n_spk] = np.mean(w)
    # 4 speakers give only 35 distinct draws (the fixture's quantiles coincide across seeds); 20 speakers do not
    assert abx.abx_interval(r, seed=1) != iv and abx.abx_interval(r, seed=0) == iv
    # width ~ 1/sqrt(speakers): 4x the speakers -> about half the width (measured: 0.64 on these corpora)
    assert widths[20] < 0.8 * widths[5], widths
