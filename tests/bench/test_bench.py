"""Smoke tests of the benchmark's building blocks (bench/benchlib.py, bench/bench_extract.py) on tiny inputs.

Not timed: they check that the FLOP count, corpus, agreement measures and baseline loop stay correct, so the
benchmark does not rot. Each is checked against an independent computation.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from bench import bench_extract, benchlib
from layerwise.contract import store
from layerwise.contract.grid import FrameGeometry


@pytest.mark.slow
def test_forward_flops_matches_torch_flop_counter():
    """The config-derived count equals torch's FlopCounterMode on a real forward (eager attention, so the T² matmuls
    are visible; odd positional kernel, so the positional conv yields exactly T frames)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import HubertConfig, HubertModel

    config = HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
                          conv_dim=(8, 12, 12, 12, 12, 12, 16), num_conv_pos_embeddings=15,
                          num_conv_pos_embedding_groups=4)
    config._attn_implementation = "eager"
    model = HubertModel(config).eval()
    n_samples = 9876
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, n_samples), output_hidden_states=True)
    ours = benchlib.forward_flops(config, n_samples)
    assert ours["total"] == pytest.approx(counter.get_total_flops(), rel=1e-9)
    assert ours["cnn"] + ours["transformer"] == ours["total"]


def test_forward_flops_hubert_base_per_second():
    """HuBERT-base: ≈ 14.8 GFLOP per second of audio for an ~11 s utterance, CNN ≈ 1/3 of it."""
    from transformers import HubertConfig

    flops = benchlib.forward_flops(HubertConfig(), 11 * 16000)
    assert 14.0e9 < flops["total"] / 11 < 15.5e9
    assert 0.3 < flops["cnn"] / flops["total"] < 0.4
    # the first conv layer by hand: 512 filters of 10 taps on (176000 − 10)//5 + 1 = 35199 positions
    assert FrameGeometry((10, 3), (5, 2), 16000).conv_lengths(176000) == [35199, 17599]


def test_utterance_lengths_librispeech_like_and_seeded():
    lengths = benchlib.utterance_lengths(300, seed=1)
    assert all(2.0 <= d <= 20.0 for d in lengths)
    assert 298 <= sum(lengths) <= 300
    assert lengths == benchlib.utterance_lengths(300, seed=1)
    assert lengths != benchlib.utterance_lengths(300, seed=2)
    with pytest.raises(ValueError, match="--seconds"):
        benchlib.utterance_lengths(1.0, seed=0)


def test_write_corpus_flac_files(tmp_path):
    files = benchlib.write_corpus(tmp_path, 7.5, seed=0)
    assert sum(s for _, s in files) == pytest.approx(7.5, abs=2.0)
    for path, seconds in files:
        info = sf.info(path)
        assert (info.format, info.samplerate, info.channels) == ("FLAC", 16000, 1)
        assert info.frames == round(seconds * 16000)


def test_linear_cka_against_gram_form_and_invariances():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 5))
    y = x @ rng.standard_normal((5, 4)) + 0.5 * rng.standard_normal((60, 4))
    h = np.eye(60) - 1.0 / 60  # centring matrix; CKA = <HKH, HLH> / (|HKH| |HLH|) with K = XXᵀ, L = YYᵀ
    k, l = h @ x @ x.T @ h, h @ y @ y.T @ h
    oracle = np.sum(k * l) / (np.linalg.norm(k) * np.linalg.norm(l))
    assert benchlib.linear_cka(x, y) == pytest.approx(oracle, rel=1e-10)
    q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    assert benchlib.linear_cka(x, 3.0 * x @ q + 7.0) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="same number of rows"):
        benchlib.linear_cka(x, y[:-1])


def test_relative_errors():
    ref = np.array([[1.0, -4.0], [2.0, 0.0]])
    assert benchlib.max_rel_error(ref + [[0, 0], [0, 0.4]], ref) == pytest.approx(0.1)
    assert benchlib.fro_rel_error(2 * ref, ref) == pytest.approx(1.0)


def test_steady_state_excludes_first_file_and_keeps_fastest_round():
    stems = ["a", "b", "c"]
    durations = bench_extract.per_file([5.0, 1.0, 2.0], stems, stamps=False)
    assert durations == {"b": 1.0, "c": 2.0}
    stamps = bench_extract.per_file([100.0, 101.5, 104.0], stems, stamps=True)
    assert stamps == {"b": 1.5, "c": 2.5}
    by_stem = {"a": (10.0, 1.0), "b": (20.0, 2.0), "c": (30.0, 3.0)}
    assert bench_extract.steady([durations, stamps], by_stem) == (50.0, 3.0, 5.0)  # b: 1.0, c: 2.0
    with pytest.raises(ValueError, match="at least 2"):
        bench_extract.per_file([1.0], ["a"], stamps=False)


def test_naive_loop_and_model_only_on_tiny_checkpoint(tmp_path):
    """The baseline writes every hidden state with the exact frame count; model-only times every utterance;
    compare() reads both layouts and measures a known deviation (doubled features: error 1, CKA 1)."""
    model_dir = benchlib.save_checkpoint(
        tmp_path / "tiny", seed=0, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        conv_dim=(8,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    files = benchlib.write_corpus(tmp_path / "audio", 5.0, seed=3)
    load_s, times = benchlib.naive_loop(model_dir, [p for p, _ in files], tmp_path / "naive")
    assert load_s > 0 and len(times) == len(files)
    outputs = sorted((tmp_path / "naive").glob("*_features.npz"))
    assert [store.stem_of(p) for p in outputs] == [p.stem for p, _ in files]
    for out, (_, seconds) in zip(outputs, files):
        layers = store.read_features(out).layers
        n = round(seconds * 16000)
        assert list(layers) == ["layer_0", "layer_1", "layer_2"]
        assert layers["layer_2"].shape == ((n - 400) // 320 + 1, 16)
    waves = [sf.read(p, dtype="float32")[0] for p, _ in files]
    assert len(benchlib.model_only(model_dir, waves, dtype="float32")) == len(files)
    doubled = []
    for out in outputs:
        layers = {k: 2 * v for k, v in store.read_features(out).layers.items()}  # read as (T, D)
        doubled.append(tmp_path / out.name)
        store.write_features(doubled[-1], layers, {})
    agreement = bench_extract.compare(doubled, outputs, ["layer_0", "layer_2"])
    assert agreement["layer_2"] == {"max_rel_err": pytest.approx(1.0), "fro_rel_err": pytest.approx(1.0),
                                    "cka": pytest.approx(1.0)}


def test_speed_changes_in_model_keep_fp32_bitwise(tmp_path):
    """model.py freezes the weight-normed positional conv at load (a speed change): the features must stay bitwise
    equal to a freshly loaded Hugging Face model's own forward pass, on utterances of different lengths."""
    import torch
    from transformers import AutoModel

    from layerwise.model.adapter import SpeechModel

    model_dir = benchlib.save_checkpoint(
        tmp_path / "tiny", seed=1, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        conv_dim=(8,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    model = SpeechModel.load(str(model_dir), device="cpu")
    reference = AutoModel.from_pretrained(model_dir).eval()
    assert type(reference.encoder.pos_conv_embed.conv).__name__.startswith("Parametrized")  # the HF original
    rng = np.random.default_rng(0)
    for n in (4000, 23456):
        x = benchlib.speech_like(n, rng)
        ours = model.features(x, "contextualized", [0, 1, 2])
        with torch.inference_mode():
            ref = reference(torch.from_numpy(model.prepare(x))[None], output_hidden_states=True).hidden_states
        for i in range(3):
            np.testing.assert_array_equal(ours[f"layer_{i}"], ref[i][0].numpy())


@pytest.mark.parametrize("script", ["bench_extract.py", "bench_options.py", "bench_long.py", "bench_threads.py"])
def test_bench_scripts_run_from_the_repo_root_without_path_edits(script):
    """`python bench/<script> --help` works as documented (bench modules import benchlib beside their own file)."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    proc = subprocess.run([sys.executable, f"bench/{script}", "--help"], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert "example:" in proc.stdout


@pytest.mark.parametrize("flags, kind", [({"avx2", "fma"}, "AVX2 only"), ({"avx2", "avx512f"}, "AVX-512 without"),
                                         ({"avx512f", "avx512_bf16"}, "AVX512_BF16"),
                                         ({"avx512f", "avx512_bf16", "amx_bf16"}, "AMX")])
def test_cpu_kind_from_flags(flags, kind):
    assert kind in benchlib.cpu_kind(flags)


def test_long_file_measurement_on_tiny_checkpoint(tmp_path):
    """bench_long measures one utterance in its own process: frames by the conv formula, RSS and estimate > 0;
    chunked and unchunked runs report which CNN they used."""
    from bench import bench_long

    model_dir = benchlib.save_checkpoint(
        tmp_path / "tiny", seed=0, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        conv_dim=(8,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    for unchunked in (False, True):
        r = bench_long.measure(model_dir, 41.0, dtype="float32", layers=[0, 2], unchunked=unchunked)
        assert r["frames"] == (41 * 16000 - 400) // 320 + 1 and r["layers"] == 2 and r["unchunked"] is unchunked
        assert r["peak_rss_gib"] >= r["rss_after_load_gib"] > 0 and r["estimate_gib"] > 0


def test_thread_modes_write_every_file_once(tmp_path):
    """bench_threads: every mode times every utterance; the writing modes leave one readable file per utterance
    holding the features of a separate forward pass (equal arrays), the compute-only mode writes nothing."""
    from bench import bench_threads
    from layerwise.model.adapter import SpeechModel

    model_dir = benchlib.save_checkpoint(
        tmp_path / "tiny", seed=0, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        conv_dim=(8,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    model = SpeechModel.load(str(model_dir), device="cpu")
    rng = np.random.default_rng(0)
    waves = [benchlib.speech_like(n, rng) for n in (4000, 9000, 6000)]
    for mode in bench_threads.MODES:
        out = tmp_path / mode.replace(" ", "_")
        out.mkdir()
        assert len(bench_threads.run_mode(model, waves, mode, out)) == 3
        files = sorted(out.glob(f"*{store.FEATURE_SUFFIX}"))
        assert len(files) == (0 if mode == "compute only" else 3)
        for path, wave in zip(files, waves):
            expected = model.features(wave, "contextualized", [2])["layer_2"]
            np.testing.assert_array_equal(store.read_features(path).layers["layer_2"], expected)


@pytest.mark.slow
def test_long_file_row_runs_bench_long_in_a_fresh_process(tmp_path):
    model_dir = benchlib.save_checkpoint(
        tmp_path / "tiny", seed=0, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        conv_dim=(8,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    r = bench_extract.long_file(model_dir, 42.0, unchunked=False, threads=1)
    assert "error" not in r, r
    assert r["frames"] == (42 * 16000 - 400) // 320 + 1 and r["layers"] == 3 and r["unchunked"] is False


def test_simd_flags_keep_the_kernel_deciding_flags():
    flags = {"fpu", "sse2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "pni"}
    assert bench_extract.simd_flags(flags) == ["amx_bf16", "amx_tile", "avx", "avx2", "avx512_bf16", "avx512f",
                                               "f16c", "fma"]


def test_subset_folder_copies_the_first_files_with_their_relative_paths(tmp_path):
    corpus = benchlib.write_corpus(tmp_path / "audio", 30.0, seed=1)
    assert len(corpus) >= 2
    folder = bench_extract.subset_folder(corpus[:1], tmp_path / "audio", tmp_path / "low")
    copied = sorted(p.relative_to(folder) for p in folder.rglob("*.flac"))
    assert copied == [corpus[0][0].relative_to(tmp_path / "audio")]
    assert (folder / copied[0]).read_bytes() == corpus[0][0].read_bytes()


def test_low_utterances_below_two_is_refused():
    with pytest.raises(SystemExit) as err:
        bench_extract.main(["--low_utterances", "1"])
    assert err.value.code == 2
