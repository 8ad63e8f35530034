"""properties.py: alignment-free measures rise with a planted signal and sit at chance without one; the collector's
time matching against explicit numpy pooling."""

import numpy as np
import pytest

from layerwise.contract.grid import FBANK_GRID, Grid
from layerwise.contract.results import MeasureFamily
from layerwise.measures import alignment_free

FRAME = Grid(320, 400)  # 20 ms transformer frames
CONV4 = Grid(80, 160)  # HuBERT conv_4: hop 80, receptive field 160 samples
LAYERS = ["layer_0", "layer_1", "layer_2", "layer_3"]
GRIDS = dict.fromkeys(LAYERS, FRAME)
N_SPK, N_UTT, T, D = 6, 4, 50, 8  # 24 one-second files; 50 frames of 20 ms, 101 fbank frames


def files(seed=0, shuffle_speakers=False):
    """layer_0 noise; layer_1 = layer_0 · A + noise (cca_intra); layer_2 = fbank[2i] · B + noise (cca_mel);
    layer_3 = speaker embedding + noise (speaker measures). ``shuffle_speakers``: names get other speakers."""
    rng = np.random.default_rng(seed)
    a, b, emb = rng.normal(size=(D, D)), rng.normal(size=(80, D)) / 4, rng.normal(size=(N_SPK, D)) * 2
    speakers = np.repeat(np.arange(N_SPK), N_UTT)
    named = rng.permutation(speakers) if shuffle_speakers else speakers
    out = []
    for i, (spk, name) in enumerate(zip(speakers, named)):
        fb = rng.normal(size=(101, 80))
        l0 = rng.normal(size=(T, D))
        arrays = {"layer_0": l0, "layer_1": l0 @ a + 0.3 * rng.normal(size=(T, D)),
                  "layer_2": fb[: 2 * T : 2] @ b + 0.3 * rng.normal(size=(T, D)),
                  "layer_3": emb[spk] + rng.normal(size=(T, D))}
        out.append((f"{100 + name}-7-{i:04d}", arrays, fb))
    return out


def collect(data, layers=LAYERS, grids=GRIDS, with_fbank=True, seed=0, **caps):
    c = alignment_free.PropertyCollector(layers, grids, seed=seed, max_frames_per_file=30, **caps)
    for stem, arrays, fb in data:
        c.add(stem, {k: arrays[k] for k in layers}, fb if with_fbank else None)
    return c


@pytest.mark.parametrize("protocol", ["centred", "pasad"])
def test_measures_rise_with_the_planted_signal(protocol):
    result = alignment_free.measure(collect(files()), seed=0, cca_protocol=protocol)
    m = result.values
    twins = {"speaker_pwcca_stable"} if protocol == "pasad" else set()  # the stable twin: published protocol only
    assert result.unavailable == {} and set(m) == set(alignment_free.MEASURES) | twins
    mel, intra = m["cca_mel"], m["cca_intra"]
    assert mel["layer_2"] > 0.8 and max(mel["layer_0"], mel["layer_1"], mel["layer_3"]) < 0.3
    assert intra["layer_0"] is None and intra["layer_1"] > 0.8
    assert max(intra["layer_2"], intra["layer_3"]) < 0.3
    base = m["speaker_majority_baseline"]["layer_0"]
    assert set(m["speaker_majority_baseline"].values()) == {base} and base <= 1 / N_SPK + 1e-9
    acc, spw = m["speaker_probe_accuracy"], m["speaker_pwcca"]
    assert acc["layer_3"] > 0.9 and acc["layer_0"] < base + 0.35
    assert spw["layer_3"] > 0.5 and spw["layer_3"] > 2 * max(spw["layer_0"], spw["layer_1"], spw["layer_2"])
    assert result.provenance["n_speakers"] == N_SPK and result.provenance["cca_protocol"] == protocol
    assert result.info == {} and result.control is None  # provenance only: summary.json writes none of it


def test_analyse_gives_the_control_its_own_family():
    data = files()
    trained = collect(data)
    control = collect([(stem, {k: np.random.default_rng(i).normal(size=v.shape) for k, v in arrays.items()}, fb)
                       for i, (stem, arrays, fb) in enumerate(data[:2])])  # 2 files: too few for held-out scores
    family = alignment_free.analyse(trained, control, seed=0)
    assert set(family.values) == set(alignment_free.MEASURES) and family.unavailable == {}
    assert family.control.values == {} and set(family.control.unavailable) == set(alignment_free.MEASURES)
    assert "needs >= 3 files" in family.control.unavailable["cca_mel"]
    alone = alignment_free.analyse(trained, None, seed=0)
    assert alone.control is None and alone.values["cca_mel"] == family.values["cca_mel"]


def test_shuffled_speakers_and_unpaired_fbank_sit_at_chance():
    data = files(shuffle_speakers=True)
    # pair every file's layers with another file's filterbanks: no acoustic relation left
    unpaired = [(stem, arrays, data[(i + 1) % len(data)][2]) for i, (stem, arrays, _) in enumerate(data)]
    m = alignment_free.measure(collect(unpaired), seed=0).values
    assert abs(m["cca_mel"]["layer_2"]) < 0.3
    assert m["speaker_probe_accuracy"]["layer_3"] < 1 / N_SPK + 0.3
    assert m["speaker_pwcca"]["layer_3"] < 0.3


def test_unavailable_measures_say_why():
    data = files()
    renamed = [(f"utt{i}", arrays, fb) for i, (_, arrays, fb) in enumerate(data)]
    result = alignment_free.measure(collect(renamed, with_fbank=False), seed=0)
    assert set(result.values) == {"cca_intra"}
    assert "--fbank" in result.unavailable["cca_mel"]
    for name in ("speaker_probe_accuracy", "speaker_majority_baseline", "speaker_pwcca"):
        assert "'utt0'" in result.unavailable[name] and "{speaker}-{chapter}-{utterance}" in result.unavailable[name]
    no_base = alignment_free.measure(collect(data, layers=["layer_2", "layer_3"]), seed=0)
    assert "layer_0" in no_base.unavailable["cca_intra"] and "cca_mel" in no_base.values


def test_collector_time_matches_like_explicit_pooling():
    """conv_4 (hop 80, field 160) onto the 10 ms fbank: mean of conv frames 2j .. 2j + 3 (kernel 4, stride 2);
    20 ms layers take fbank frame 2i; the base layer is pooled the same way for cca_intra."""
    rng = np.random.default_rng(5)
    conv, l0, fb = rng.normal(size=(199, 3)), rng.normal(size=(49, 4)), rng.normal(size=(101, 80))
    c = alignment_free.PropertyCollector(["conv_4", "layer_0"], {"conv_4": CONV4, "layer_0": FRAME}, seed=1,
                                     max_frames_per_file=1000)
    c.add("1-2-0003", {"conv_4": conv, "layer_0": l0}, fb)
    n = min((199 - 4) // 2 + 1, 101)
    pooled = np.stack([conv[2 * j : 2 * j + 4].mean(axis=0) for j in range(n)])
    mel_fb, mel_conv = c.mel["conv_4"][0]
    np.testing.assert_allclose(mel_fb, fb[:n], atol=1e-6)
    np.testing.assert_allclose(mel_conv, pooled, atol=1e-6)
    mel_fb0, mel_l0 = c.mel["layer_0"][0]
    np.testing.assert_allclose(mel_fb0, fb[0 : 2 * 49 : 2][:len(mel_l0)], atol=1e-6)
    np.testing.assert_allclose(mel_l0, l0[: len(mel_fb0)], atol=1e-6)
    base, conv_on_base = c.intra["conv_4"][0]  # conv_4 onto 20 ms: kernel ceil((400-160)/80)+1 = 4, stride 4
    np.testing.assert_allclose(conv_on_base, np.stack([conv[4 * i : 4 * i + 4].mean(axis=0)
                                                      for i in range(len(base))]), atol=1e-6)
    np.testing.assert_allclose(base, l0[: len(base)], atol=1e-6)
    assert FBANK_GRID == Grid(160, 400)
    # subsampling is bounded, seeded and independent of the order files arrive in
    small = alignment_free.PropertyCollector(["layer_0"], {"layer_0": FRAME}, seed=1, max_frames_per_file=7)
    small.add("1-2-0003", {"layer_0": l0}, None)
    again = alignment_free.PropertyCollector(["layer_0"], {"layer_0": FRAME}, seed=1, max_frames_per_file=7)
    again.add("9-9-0009", {"layer_0": l0[::-1]}, None)
    again.add("1-2-0003", {"layer_0": l0}, None)
    assert small.frames["layer_0"][0].shape == (7, 4)
    assert again.stems == ["1-2-0003", "9-9-0009"]  # the measures read files in name order, whatever the arrival
    np.testing.assert_array_equal(small.frames["layer_0"][0], again.frames["layer_0"][0])


def test_a_layer_that_fails_is_a_gap_with_its_reason_and_the_other_layers_stay():
    out = MeasureFamily()

    def compute(key):
        if key == "layer_1":
            raise np.linalg.LinAlgError("SVD did not converge")
        return 0.5

    alignment_free._measure("cca_intra", ["layer_0", "layer_1", "layer_2"], compute, out)
    assert out.values["cca_intra"] == {"layer_0": 0.5, "layer_1": None, "layer_2": 0.5}
    assert "layer_1" in out.unavailable["cca_intra"] and "SVD did not converge" in out.unavailable["cca_intra"]


def _inputs(c):
    """Everything the measures read from a collector, as plain lists of arrays."""
    return (c.stems, c.n_seen, c.n_frame_files, c.n_fbank_files,
            {k: [np.asarray(x) for x in c.means[k]] for k in c.layers},
            {what: {k: [np.concatenate([np.ravel(p) for p in (v if isinstance(v, tuple) else (v,))]) for v in rows]
                    for k, rows in getattr(c, what).items()} for what in ("frames", "mel", "intra")},
            {what: {k: [np.asarray(x) for x in rows] for k, rows in getattr(c, what).items()}
             for what in ("frame_file", "mel_file", "intra_file")})


def _same(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return np.array_equal(a, b)


def test_the_cap_keeps_the_bottom_k_files_for_one_process_two_shards_and_reversed_order():
    import hashlib

    from layerwise.analyze import shards

    data, caps = files(), {"max_files": 7, "max_mean_files": 15}
    one, reverse = collect(data, **caps), collect(data[::-1], **caps)
    parts = [shards.properties_state(collect(data[i::2], **caps)) for i in (0, 1)]  # two shards, merged
    empty = alignment_free.PropertyCollector(LAYERS, GRIDS, seed=0, max_frames_per_file=30, **caps)
    merged = shards.merged_properties(parts, [stem for stem, _, _ in data], empty)
    by_rank = sorted((stem for stem, _, _ in data),  # the seeded hash, computed here
                     key=lambda stem: hashlib.blake2b(f"0/{stem}".encode(), digest_size=8).digest())
    for c in (one, reverse, merged):
        assert c.stems == sorted(by_rank[:15], key=lambda s: s + "_features.npz")  # means: 15 files, name order
        framed = {s for s in c.stems if c.files[s].frames is not None}
        assert framed == set(by_rank[:7]) and c.n_seen == len(data) == 24
        assert _same(_inputs(c), _inputs(one))
    results = [alignment_free.measure(c, seed=0, n_boot=20) for c in (one, reverse, merged)]
    for r in results[1:]:
        assert (r.values, r.intervals, r.chance, r.notes) == (results[0].values, results[0].intervals,
                                                              results[0].chance, results[0].notes)
    prov = results[0].provenance
    assert (prov["n_files"], prov["n_files_seen"], prov["n_frame_files"]) == (15, 24, 7)
    assert any("frames of 7 of the 24 files" in note for note in results[0].notes)
    assert sum(len(x) for x in one.frames["layer_1"]) == 7 * 30  # 50 frames per file, 30 kept, 7 files


def test_without_the_cap_binding_every_file_is_kept_and_no_note():
    c = collect(files())
    assert len(c.stems) == c.n_frame_files == c.n_seen == 24
    assert not any("frames of" in note for note in alignment_free.measure(c, seed=0, n_boot=0).notes)
