"""The ABX step of an analysis (analyze/abx.py): a synthesized LibriSpeech-style frame folder with phone TextGrids,
numbers against ``abx_error_rates`` on the frames read with numpy, a hand-written item file, the control, conv rates."""

from __future__ import annotations

import json
from decimal import Decimal

import numpy as np
import pytest

from layerwise.analyze.options import AnalysisOptions
from layerwise.analyze.run import run_analysis
from layerwise.contract import store
from layerwise.errors import UsageError
from layerwise.measures.abx import Item, abx_error_rates, read_item_file
from tests.conftest import write_textgrid

KEYS = ("abx_within_speaker_triphone", "abx_across_speaker_triphone", "abx_within_speaker_phoneme")
PHONES = ("AA", "B", "S", "IY")
STEMS = [f"{spk}-{chapter}-{u:04d}" for spk, chapter in (("84", "121123"), ("174", "50561"), ("251", "118436"))
         for u in range(3)]
# one frame every 320 samples at 16 kHz = 50 Hz for every layer_k (a one-block "conv stack")
META = {"model_name": "synthetic", "rep_type": "contextualized", "span": "frame", "sample_rate": 16000,
        "model_config": {"conv_kernel": [400], "conv_stride": [320]}}


def utterance(rng, n_phones: int):
    """(start, end, label) phones on a 10 ms grid with stress digits on vowels and one silence; (intervals, end s)."""
    out, t = [], 0
    for k in range(n_phones):
        if k == n_phones // 2:
            out.append((t / 100, (t + 15) / 100, "sil"))
            t += 15
        dur = int(rng.integers(6, 13))
        label = PHONES[int(rng.integers(len(PHONES)))]
        out.append((t / 100, (t + dur) / 100, label + ("1" if label in ("AA", "IY") else "")))
        t += dur
    return out, t / 100


def frames_of(intervals, end, layer: int, speaker: int, rng, *, rate=50, dim=8):
    """(T, dim) float32: each frame (centre (f + 0.5) / rate) = its phone's mean × a layer strength + a speaker
    offset + noise; T = floor(end × rate)."""
    means = np.random.default_rng(99).normal(size=(len(PHONES) + 1, dim))
    offsets = np.random.default_rng(98).normal(size=(3, dim))
    n = int(end * rate)
    centre = (np.arange(n) + 0.5) / rate
    which = np.full(n, len(PHONES))
    for start, stop, label in intervals:
        if label != "sil":
            which[(centre >= start) & (centre < stop)] = PHONES.index(label.rstrip("1"))
    x = means[which] * (0.1 + 0.3 * layer) + 0.8 * offsets[speaker] + rng.normal(size=(n, dim))
    return x.astype(np.float32)


def write_corpus(tmp_path, *, seed=0, meta=META, keys=("layer_0", "layer_1", "layer_2"), rates=(50, 50, 50)):
    """Feature folder ``m/feat`` and TextGrids ``tg`` for :data:`STEMS`; returns (folder, tg, phones per stem)."""
    rng = np.random.default_rng(seed)
    folder, tg = tmp_path / "m" / "feat", tmp_path / "tg"
    folder.mkdir(parents=True)
    phones = {}
    for i, stem in enumerate(STEMS):
        intervals, end = utterance(np.random.default_rng(i), 24)
        phones[stem] = intervals
        (tg / stem.split("-")[0]).mkdir(parents=True, exist_ok=True)
        write_textgrid(tg / stem.split("-")[0] / f"{stem}.TextGrid", {"phones": intervals}, end + 0.1)
        arrays = {key: frames_of(intervals, end, k, i // 3, rng, rate=rate) for k, (key, rate) in
                  enumerate(zip(keys, rates))}
        store.write_features(store.feature_path(folder, stem), arrays, meta)
    return folder, tg, phones


def hand_items(phones) -> list[Item]:
    """Triphone items written out from the known phones: in each run of phones between silences, every phone with
    a phone on both sides (stress digits dropped)."""
    items = []
    for stem, intervals in phones.items():
        runs, run = [], []
        for start, stop, label in intervals:
            if label == "sil":
                runs.append(run)
                run = []
            else:
                run.append((start, stop, label.rstrip("1")))
        runs.append(run)
        for run in runs:
            for k in range(1, len(run) - 1):
                start, stop, label = run[k]
                items.append(Item(stem, Decimal(str(start)), Decimal(str(stop)), label, run[k - 1][2], run[k + 1][2],
                                  stem.split("-")[0]))
    return items


def numpy_features(folder, key):
    """stem -> (T, D) of ``key``, read with numpy from the .npz files."""
    out = {}
    for path in sorted(folder.glob("*_features.npz")):
        with np.load(path) as data:
            out[path.name[: -len("_features.npz")]] = data[key]
    return out


def direct(folder, items, key, mode, *, rate=50, seed=0):
    return abx_error_rates(numpy_features(folder, key), items, mode=mode, rate=rate, max_size_group=10,
                           max_x_across=5, seed=seed).score


def analyse(folder, out, **abx):
    return run_analysis(features_dir=folder, output_dir=out, num_files=0, max_points=30, similarity="cka",
                        control_dir="none", seed=3, **abx)


def test_alignments_give_the_three_keys_per_layer_equal_to_the_measure_on_numpy_frames(tmp_path):
    folder, tg, phones = write_corpus(tmp_path)
    out = tmp_path / "o"
    summary = analyse(folder, out, alignment_dir=tg)
    items = read_item_file(out / "abx_triphone.item")
    assert sorted(it[:7] for it in items) == sorted(it[:7] for it in hand_items(phones))  # the documented rule
    for key in KEYS:
        assert set(summary[key]) == set(summary["layers"])
        for layer, value in summary[key].items():
            assert 0.0 <= value <= 1.0
            assert value == pytest.approx(direct(folder, items, layer, key[4:], seed=3), abs=1e-12)
            low, high = summary[f"{key}_ci"][layer]
            assert low <= high
    # a stronger phone signal in deeper layers: lower error (planted), and every rate below chance there
    within = summary["abx_within_speaker_triphone"]
    assert within["layer_2"] < within["layer_1"] < within["layer_0"] and within["layer_2"] < 0.5
    info = summary["abx_info"]
    assert info["frame_rate"] == {"layer_0": 50.0, "layer_1": 50.0, "layer_2": 50.0} and info["max_x_across"] == 5
    assert "speaker" in info["interval"]["abx_within_speaker_triphone"]["method"]
    assert set(KEYS) <= set(summary["requested_measures"]) and "abx.png" in summary["figures"]
    page = (out / "report.html").read_text()
    assert "0.5 = chance" in page and "Lower = better" in page
    row = (out / "summary.csv").read_text().splitlines()
    assert "abx_within_speaker_triphone_ci_low" in row[0].split(",")


def test_a_hand_written_item_file_gives_the_numbers_of_the_built_items(tmp_path):
    folder, tg, phones = write_corpus(tmp_path)
    built = analyse(folder, tmp_path / "o1", alignment_dir=tg)
    item_file = tmp_path / "hand.item"
    lines = ["#file onset offset #phone prev-phone next-phone speaker"]
    lines += [f"{it.file} {it.onset} {it.offset} {it.phone} {it.prev_phone} {it.next_phone} {it.speaker}"
              for it in sorted(hand_items(phones), key=lambda it: (it.file, it.onset))]  # the analysed order
    item_file.write_text("\n".join(lines) + "\n")
    given = analyse(folder, tmp_path / "o2", abx_item=item_file)
    for key in KEYS:
        assert given[key] == built[key] and given[f"{key}_ci"] == built[f"{key}_ci"]
    assert not (tmp_path / "o2" / "abx_triphone.item").exists()


def test_the_random_init_control_gets_the_same_keys(tmp_path):
    folder, tg, _ = write_corpus(tmp_path)
    control = tmp_path / "m-random_init" / "feat"
    control.mkdir(parents=True)
    rng = np.random.default_rng(5)
    for stem in STEMS[:-1]:  # the control lacks one utterance
        arrays = {k: rng.normal(size=a.shape).astype(np.float32) for k, a in
                  store.read_features(store.feature_path(folder, stem)).layers.items()}
        store.write_features(store.feature_path(control, stem), arrays, {**META, "random_init": True, "seed": 0})
    out = tmp_path / "o"
    summary = run_analysis(features_dir=folder, output_dir=out, num_files=0, max_points=30, similarity="cka",
                           alignment_dir=tg, seed=3)
    ctrl = summary["random_init"]
    items = read_item_file(out / "abx_triphone.item")
    for key in KEYS:
        assert set(ctrl[key]) == set(summary["layers"])
        for layer, value in ctrl[key].items():
            assert value == pytest.approx(direct(control, items, layer, key[4:], seed=3), abs=1e-12)
            assert ctrl[f"{key}_ci"][layer][0] <= ctrl[f"{key}_ci"][layer][1]
    assert ctrl["n_files"] == len(STEMS) - 1 and ctrl["abx_info"]["n_items"] == len(items)
    assert summary["abx_within_speaker_triphone"]["layer_2"] < ctrl["abx_within_speaker_triphone"]["layer_2"]


def test_conv_layers_are_scored_at_their_own_frame_rate(tmp_path):
    meta = {**META, "rep_type": "local", "model_config": {"conv_kernel": [160, 2], "conv_stride": [160, 2]}}
    folder, tg, _ = write_corpus(tmp_path, meta=meta, keys=("conv_0", "conv_1"), rates=(100, 50))
    out = tmp_path / "o"
    summary = analyse(folder, out, alignment_dir=tg)
    assert summary["abx_info"]["frame_rate"] == {"conv_0": 100.0, "conv_1": 50.0}
    items = read_item_file(out / "abx_triphone.item")
    for key in KEYS:
        assert summary[key]["conv_0"] == pytest.approx(direct(folder, items, "conv_0", key[4:], rate=100, seed=3),
                                                       abs=1e-12)
        assert summary[key]["conv_1"] == pytest.approx(direct(folder, items, "conv_1", key[4:], rate=50, seed=3),
                                                       abs=1e-12)


def test_files_without_librispeech_names_say_why(tmp_path):
    folder, tg, _ = write_corpus(tmp_path)
    for path in folder.glob("84-*"):
        path.rename(path.with_name("x" + path.name))
    (tg / "84").rename(tmp_path / "moved")
    for path in (tmp_path / "moved").glob("*.TextGrid"):
        path.rename(tg / ("x" + path.name))
    with pytest.raises(UsageError, match="speaker"):
        analyse(folder, tmp_path / "o", alignment_dir=tg)


def test_span_folders_say_abx_does_not_apply(tmp_path):
    folder = tmp_path / "span"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for stem in STEMS[:4]:
        n = 6
        store.write_features(store.feature_path(folder, stem), {"layer_0": rng.normal(size=(n, 4)).astype(np.float32)},
                             {**META, "span": "phone"}, labels=np.array(["a", "b"] * 3),
                             intervals=np.stack([np.arange(n) * 0.1, np.arange(n) * 0.1 + 0.1], axis=1))
    item_file = tmp_path / "x.item"
    item_file.write_text("#file onset offset #phone prev-phone next-phone speaker\n"
                         f"{STEMS[0]} 0.1 0.2 a b b 84\n")
    summary = run_analysis(features_dir=folder, output_dir=tmp_path / "o", num_files=0, max_points=10,
                           similarity="cka", control_dir="none", abx_item=item_file)
    assert not any(k in summary for k in KEYS)
    assert sum("ABX does not apply to span folders" in note for note in summary["notes"]) == 1


@pytest.mark.parametrize("settings, message", [
    ({"abx_item": "ITEM", "alignment_dir": "TG"}, "one item source"),
    ({"alignment_dir": "TG", "abx_max_size_group": 1}, "abx_max_size_group=1"),
    ({"alignment_dir": "TG", "abx_distance": "cosine"}, "abx_distance='cosine'"),
    ({"alignment_dir": "TG", "num_subsets": 2}, "merged"),
    ({"abx_item": "MISSING"}, "is not a file"),
])
def test_options_refuse_bad_abx_settings(tmp_path, settings, message):
    item = tmp_path / "a.item"
    item.write_text("#file onset offset #phone prev-phone next-phone speaker\n")
    (tmp_path / "tg").mkdir()
    names = {"ITEM": str(item), "TG": str(tmp_path / "tg"), "MISSING": str(tmp_path / "nope.item")}
    settings = {k: names.get(v, v) if isinstance(v, str) else v for k, v in settings.items()}
    with pytest.raises(UsageError, match=message):
        AnalysisOptions(features_dir=tmp_path, output_dir=tmp_path / "o", **settings)


def test_runs_without_abx_flags_write_no_abx_key(tmp_path):
    folder, _, _ = write_corpus(tmp_path)
    summary = analyse(folder, tmp_path / "o")
    assert not [k for k in summary if k.startswith("abx")] and not set(KEYS) & set(summary["requested_measures"])
    assert "abx" not in json.dumps(summary["wall_seconds"])


def test_every_flag_named_in_abx_messages_has_its_dashes(tmp_path, caplog):
    """The item-file log line and the errors name flags as typed (--abx_item, --alignment_dir)."""
    from layerwise.analyze import abx as stage
    from layerwise.errors import AnalysisError
    from tests.analyze.test_pnmi import STEMS, write_corpus

    folder, tg, _ = write_corpus(tmp_path)
    options = AnalysisOptions(features_dir=folder, output_dir=tmp_path / "out", alignment_dir=tg)
    with caplog.at_level("INFO"):
        stage.items_for(options, STEMS)
    assert "(reuse it with --abx_item)" in caplog.text
    with pytest.raises(AnalysisError, match=r"^--alignment_dir .* has no alignment"):
        stage.items_for(options, ["9-9-9"])
    other = AnalysisOptions(features_dir=folder, output_dir=tmp_path / "o2",
                            abx_item=tmp_path / "out" / stage.ITEM_FILE)
    with pytest.raises(AnalysisError, match=r"^--abx_item .*: none of its"):
        stage.items_for(other, ["9-9-9"])
