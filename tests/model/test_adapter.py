"""The model adapter against independent computations: HF's own forward pass, forward hooks, direct formulas."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from transformers import AutoModel

from layerwise.errors import InputError, ModelLoadError
from layerwise.model import adapter as M
from layerwise.model import checkpoint
from tests.conftest import build_tiny, save_tiny, tone


def reference_hidden_states(folder, x: np.ndarray) -> list[np.ndarray]:
    """Unbatched ``model(x, output_hidden_states=True)`` on one utterance, straight from transformers."""
    ref = AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        out = ref(torch.from_numpy(x)[None], output_hidden_states=True)
    return [h[0].numpy() for h in out.hidden_states]


def reference_conv_outputs(folder, x: np.ndarray) -> list[np.ndarray]:
    """CNN block outputs captured with forward hooks on the HF model's own feature encoder, as (T_k, C)."""
    ref = AutoModel.from_pretrained(folder).eval()
    captured = []
    hooks = [layer.register_forward_hook(lambda mod, inp, out: captured.append(out[0].T.numpy().copy()))
             for layer in ref.feature_extractor.conv_layers]
    with torch.no_grad():
        ref(torch.from_numpy(x)[None])
    for h in hooks:
        h.remove()
    return captured


@pytest.mark.parametrize("kind", ["tiny_hubert", "tiny_wav2vec2", "tiny_wavlm"])
def test_contextualized_equals_unbatched_reference(kind, request):
    folder = request.getfixturevalue(kind)
    model = M.SpeechModel.load(str(folder), device="cpu")
    for n in (4000, 16000, 23457):  # different lengths, each its own forward pass
        x = tone(n, seed=n)
        feats = model.features(x, "contextualized", list(range(model.num_layers + 1)))
        xin = M.SpeechModel.prepare(model, x)
        reference = reference_hidden_states(folder, xin)
        assert list(feats) == [f"layer_{i}" for i in range(len(reference))]
        for i, ref in enumerate(reference):
            assert feats[f"layer_{i}"].shape == ref.shape == (model.geometry.n_frames(n), model.hidden_size)
            np.testing.assert_allclose(feats[f"layer_{i}"], ref, atol=1e-5, rtol=1e-4)


def test_local_equals_conv_block_outputs(tiny_hubert):
    model = M.SpeechModel.load(str(tiny_hubert), device="cpu")
    x = tone(12345)
    feats = model.features(x, "local", list(range(7)))
    reference = reference_conv_outputs(tiny_hubert, x)
    assert list(feats) == [f"conv_{i}" for i in range(7)]
    for i, (ref, n) in enumerate(zip(reference, model.geometry.conv_lengths(len(x)))):
        assert feats[f"conv_{i}"].shape == ref.shape == (n, 16)
        np.testing.assert_allclose(feats[f"conv_{i}"], ref, atol=1e-6)


def test_padded_batch_is_not_exact(tiny_hubert):
    """Why extraction never pads: the first conv block's GroupNorm normalises over time, so zero-padding a short
    utterance changes its features (even on the frames that hold real audio)."""
    ref = AutoModel.from_pretrained(tiny_hubert).eval()
    short, long = tone(8000, seed=1), tone(16000, seed=2)
    padded = np.zeros((2, 16000), np.float32)
    padded[0, :8000], padded[1] = short, long
    with torch.no_grad():
        alone = ref(torch.from_numpy(short)[None]).last_hidden_state[0].numpy()
        batch = ref(torch.from_numpy(padded)).last_hidden_state[0, : len(alone)].numpy()
    assert np.abs(alone - batch).max() > 1e-3


def test_normalize_modes(tiny_hubert, tiny_wav2vec2):
    x = tone(8000) * 3 + 0.5
    manual = (x - x.mean()) / np.sqrt(x.var() + 1e-7)  # the wav2vec2 feature extractor's formula
    assert M.SpeechModel.load(str(tiny_hubert), device="cpu").normalize is False  # its extractor says so
    assert M.SpeechModel.load(str(tiny_wav2vec2), device="cpu").normalize is True
    on = M.SpeechModel.load(str(tiny_hubert), device="cpu", normalize="on")
    np.testing.assert_allclose(on.prepare(x), manual, rtol=1e-5, atol=1e-5)
    off = M.SpeechModel.load(str(tiny_wav2vec2), device="cpu", normalize="off")
    assert off.prepare(x) is x


def test_random_init_is_seeded_and_differs(tiny_hubert):
    x = tone(8000)
    a = M.SpeechModel.load(str(tiny_hubert), device="cpu", random_init=True, seed=1).features(x, "contextualized", [2])
    b = M.SpeechModel.load(str(tiny_hubert), device="cpu", random_init=True, seed=1).features(x, "contextualized", [2])
    trained = M.SpeechModel.load(str(tiny_hubert), device="cpu").features(x, "contextualized", [2])
    np.testing.assert_array_equal(a["layer_2"], b["layer_2"])
    assert not np.allclose(a["layer_2"], trained["layer_2"])
    state = torch.random.get_rng_state()
    M.SpeechModel.load(str(tiny_hubert), device="cpu", random_init=True, seed=5)
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is untouched


def test_unreachable_model_gives_one_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="--model_name DIR"):
        M.SpeechModel.load("no-such-org/no-such-model-xyz", device="cpu")


def test_too_short_input_is_an_error(tiny_hubert):
    model = M.SpeechModel.load(str(tiny_hubert), device="cpu")
    with pytest.raises(InputError, match="shorter than one frame"):
        model.features(tone(399), "contextualized", [0])


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_reduced_precision_is_close_to_float32(tiny_hubert, dtype):
    x = tone(16000)
    reference = reference_hidden_states(tiny_hubert, x)
    model = M.SpeechModel.load(str(tiny_hubert), device="cpu", dtype=dtype)
    assert next(model.model.parameters()).dtype == getattr(torch, dtype)
    feats = model.features(x, "contextualized", [0, 1, 2])
    for i, ref in enumerate(reference):
        out = feats[f"layer_{i}"]
        assert out.dtype == np.float32 and out.shape == ref.shape
        assert np.linalg.norm(out - ref) / np.linalg.norm(ref) < 0.05  # bf16 has 8 bits of mantissa


def test_describe_reads_config_only(tiny_wav2vec2, monkeypatch):
    """describe() gives the facts of config.json/preprocessor_config.json (read here with json) and loads no weights."""
    import json

    import transformers

    def no_weights(*args, **kwargs):
        raise AssertionError("describe() must not load weights")

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", no_weights)
    config = json.loads((tiny_wav2vec2 / "config.json").read_text())
    info = checkpoint.describe(str(tiny_wav2vec2))
    assert (info.num_layers, info.num_conv_layers, info.hidden_size) == (
        config["num_hidden_layers"], len(config["conv_kernel"]), config["hidden_size"])
    assert info.geometry.kernels == tuple(config["conv_kernel"]) and info.sample_rate == 16000
    assert info.normalize is True and re.fullmatch(r"sha256:[0-9a-f]{16}", info.revision)  # local: content hash
    assert checkpoint.describe(str(tiny_wav2vec2), normalize="off").normalize is False
    assert info.keys("contextualized") == [f"layer_{i}" for i in range(config["num_hidden_layers"] + 1)]
    assert info.keys("local") == [f"conv_{i}" for i in range(7)]
    assert info.config_summary["model_type"] == "wav2vec2"


def test_loaded_model_carries_the_same_info(tiny_hubert):
    model = M.SpeechModel.load(str(tiny_hubert), device="cpu")
    assert model.info == checkpoint.describe(str(tiny_hubert))
    assert model.keys("local") == model.info.keys("local")


def save_custom(kind: str, folder, seed: int = 0, scale_last_ffn: float = 1.0, **overrides):
    """A tiny checkpoint with config overrides (e.g. pre-LN wav2vec2: do_stable_layer_norm, layer-norm CNN), built
    here with transformers; ``scale_last_ffn`` multiplies the last layer's feed-forward output weights."""
    model = build_tiny(kind, seed, num_hidden_layers=3, **overrides)
    with torch.no_grad():
        model.encoder.layers[-1].feed_forward.output_dense.weight.mul_(scale_last_ffn)
    return save_tiny(kind, folder, do_normalize=True, model=model)


EARLY_EXIT_MODELS = {
    "hubert": ("hubert", {}),
    "wav2vec2": ("wav2vec2", {}),
    "wav2vec2-stable-layer-norm": ("wav2vec2", {"do_stable_layer_norm": True, "feat_extract_norm": "layer"}),
    "wavlm": ("wavlm", {}),  # relative position bias computed in layer 0 and passed on to later layers
    "wavlm-stable-layer-norm": ("wavlm", {"do_stable_layer_norm": True, "feat_extract_norm": "layer"}),
}


@pytest.mark.parametrize("variant", sorted(EARLY_EXIT_MODELS))
def test_early_exit_equals_full_forward_and_skips_deeper_layers(variant, tmp_path):
    """layers up to k run the encoder only through layer k; each array equals the FULL transformers forward's
    hidden_states[k] (whatever that forward returns at each index, e.g. no final LayerNorm on the last state of a
    stable-layer-norm model in transformers 5)."""
    kind, overrides = EARLY_EXIT_MODELS[variant]
    folder = save_custom(kind, tmp_path / variant, **overrides)
    x = tone(9000, seed=3)
    model = M.SpeechModel.load(str(folder), device="cpu")
    reference = reference_hidden_states(folder, model.prepare(x))
    assert len(reference) == 4
    calls = [0, 0, 0]
    for i, layer in enumerate(model.model.encoder.layers):
        layer.register_forward_hook(lambda *a, i=i: calls.__setitem__(i, calls[i] + 1))
    for layers, ran in (([0], [0, 0, 0]), ([1], [1, 0, 0]), ([0, 2], [1, 1, 0]), ([3, 1], [1, 1, 1])):
        calls[:] = [0, 0, 0]
        feats = model.features(x, "contextualized", layers)
        assert calls == ran, layers
        assert list(feats) == [f"layer_{k}" for k in layers]
        for k in layers:
            np.testing.assert_allclose(feats[f"layer_{k}"], reference[k], atol=1e-5, rtol=1e-4)


def test_non_finite_features_are_an_input_error_naming_layer_and_dtype(tmp_path, monkeypatch):
    """A pre-LN wav2vec2 whose last feed-forward overflows float16: transformers itself gives NaN/inf there in
    float16 and finite values in float32. Its weights already overflow float16 at the cast, so loading it in
    float16 is a load error naming the tensor and the dtypes that hold it; past that check (patched out), the
    adapter refuses the float16 features, naming layer and dtype."""
    folder = save_custom("wav2vec2", tmp_path / "big", scale_last_ffn=1e7, do_stable_layer_norm=True,
                         feat_extract_norm="layer")
    x = tone(16000)
    ref = AutoModel.from_pretrained(folder).eval().half()
    xin = M.SpeechModel.load(str(folder), device="cpu").prepare(x)
    with torch.no_grad():
        states = ref(torch.from_numpy(xin)[None].half(), output_hidden_states=True).hidden_states
    assert torch.isfinite(states[2]).all() and not torch.isfinite(states[3]).all()  # the premise, from transformers
    with pytest.raises(ModelLoadError, match=r"layers\.2\.feed_forward\.output_dense\.weight.*float32 or bfloat16"):
        M.SpeechModel.load(str(folder), device="cpu", dtype="float16")
    monkeypatch.setattr(M, "check_finite", lambda *args, **kwargs: None)
    half = M.SpeechModel.load(str(folder), device="cpu", dtype="float16")
    assert np.isfinite(half.features(x, "contextualized", [0, 2])["layer_2"]).all()  # shallower layers are fine
    with pytest.raises(InputError, match=r"layer_3 holds NaN or inf values with dtype float16.*float32"):
        half.features(x, "contextualized", [0, 3])
    full = M.SpeechModel.load(str(folder), device="cpu").features(x, "contextualized", [3])
    assert np.isfinite(full["layer_3"]).all()


def test_file_that_cannot_fit_fails_alone_with_the_memory_it_needs(tiny_hubert, monkeypatch):
    from layerwise.model import machine

    model = M.SpeechModel.load(str(tiny_hubert), device="cpu")
    x = tone(48000)
    needed = machine.memory_needed(model, len(x), "contextualized", [0, 1, 2])
    frames = model.geometry.n_frames(len(x))
    assert needed >= 3 * frames * 32 * 4  # at least the kept float32 states themselves
    monkeypatch.setattr(machine, "available_memory", lambda device: needed - 1)
    with pytest.raises(InputError, match=r"3\.0 s of audio needs about .* GiB .* available"):
        model.features(x, "contextualized", [0, 1, 2])
    monkeypatch.setattr(machine, "available_memory", lambda device: needed)
    assert model.features(x, "contextualized", [2])["layer_2"].shape == (frames, 32)


def test_batch_groups_by_hand():
    """Consecutive utterances, at most batch_size per pass; equal lengths only without exact padding; long alone."""
    lengths = [5, 5, 3, 5, 5, 5, 9, 3]
    assert M.batch_groups(lengths, 2, padding_exact=False, alone=100) == [[0, 1], [2], [3, 4], [5], [6], [7]]
    assert M.batch_groups(lengths, 3, padding_exact=True, alone=100) == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert M.batch_groups(lengths, 4, padding_exact=True, alone=8) == [[0, 1, 2, 3], [4, 5], [6], [7]]
    assert M.batch_groups(lengths, 1, padding_exact=True, alone=100) == [[i] for i in range(8)]


LAYER_NORM_CNN = {  # feat_extract_norm="layer": the CNN is local in time (wav2vec2-large-lv60, HuBERT-large)
    "wav2vec2-large-lv60-like": ("wav2vec2", {"do_stable_layer_norm": True, "feat_extract_norm": "layer"}),
    "hubert-large-like": ("hubert", {"do_stable_layer_norm": True, "feat_extract_norm": "layer"}),
    "wav2vec2-post-ln-layer-cnn": ("wav2vec2", {"feat_extract_norm": "layer"}),
}


@pytest.mark.parametrize("variant", sorted(LAYER_NORM_CNN))
def test_padded_batch_equals_unbatched_for_layer_norm_cnn(variant, tmp_path):
    """Utterances of different lengths in one padded, masked forward pass: each equals transformers' unbatched
    ``model(x, output_hidden_states=True)`` of that utterance alone within 1e-5, every layer, and each CNN block
    equals the unbatched block outputs."""
    kind, overrides = LAYER_NORM_CNN[variant]
    folder = save_custom(kind, tmp_path / variant, **overrides)
    model = M.SpeechModel.load(str(folder), device="cpu")
    assert model.padding_exact
    waves = [tone(n, seed=n) for n in (16000, 4000, 9123)]
    assert model.batch_groups([len(w) for w in waves], 3) == [[0, 1, 2]]
    layers = list(range(model.num_layers + 1))
    batched = model.features_batch(waves, "contextualized", layers)
    local = model.features_batch(waves, "local", list(range(7)))
    for w, feats, conv in zip(waves, batched, local):
        reference = reference_hidden_states(folder, model.prepare(w))
        for i, ref in enumerate(reference):
            assert feats[f"layer_{i}"].shape == ref.shape == (model.geometry.n_frames(len(w)), model.hidden_size)
            np.testing.assert_allclose(feats[f"layer_{i}"], ref, atol=1e-5, rtol=1e-5)
        for i, ref in enumerate(reference_conv_outputs(folder, model.prepare(w))):
            np.testing.assert_allclose(conv[f"conv_{i}"], ref, atol=1e-5, rtol=1e-5)


def test_group_norm_cnn_batches_only_equal_lengths(tiny_hubert):
    """HuBERT-base's GroupNorm CNN: equal lengths share a pass (no padding) and equal the unbatched reference;
    unequal lengths are refused by features_batch and kept apart by batch_groups."""
    model = M.SpeechModel.load(str(tiny_hubert), device="cpu")
    assert not model.padding_exact
    same = [tone(8000, seed=s) for s in (1, 2, 3)]
    for w, feats in zip(same, model.features_batch(same, "contextualized", [0, 1, 2])):
        for i, ref in enumerate(reference_hidden_states(tiny_hubert, model.prepare(w))):
            np.testing.assert_allclose(feats[f"layer_{i}"], ref, atol=1e-5, rtol=1e-5)
    assert model.batch_groups([8000, 8000, 6000, 8000], 4) == [[0, 1], [2], [3]]
    with pytest.raises(ValueError, match="cannot share an exact forward pass"):
        model.features_batch([tone(8000), tone(6000)], "contextualized", [0])
