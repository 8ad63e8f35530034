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
