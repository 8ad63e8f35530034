"""Chunked CNN for long audio against the unchunked transformers forward pass (hidden states and conv blocks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModel

from layerwise.model import adapter as M
from layerwise.model import longaudio
from tests.conftest import build_tiny, save_tiny, tone
from tests.model.test_adapter import reference_conv_outputs, save_custom


def chunk_everything(model: M.SpeechModel, chunk_frames: int) -> longaudio.ChunkedFeatureEncoder:
    encoder = model.model.feature_extractor
    encoder.chunk_frames, encoder.long_samples = chunk_frames, 0  # every input takes the chunked path
    return encoder


@pytest.fixture(scope="module")
def layer_norm_cnn(tmp_path_factory):
    """wav2vec2-large style: LayerNorm in every conv block (local in time), pre-LN transformer."""
    return save_custom("wav2vec2", tmp_path_factory.mktemp("ln"), feat_extract_norm="layer", do_stable_layer_norm=True)


@pytest.mark.parametrize("cnn", ["group", "layer"])
@pytest.mark.parametrize("n_samples", [23457, 16000 + 7 * 320, 3000])
def test_chunked_hidden_states_equal_unchunked_forward(cnn, n_samples, tiny_hubert, layer_norm_cnn):
    """Chunks of 7 frames (last one partial, or a single chunk for 3000 samples) give every hidden state of the
    unchunked transformers forward within 1e-4; the group-norm CNN input has a DC offset (statistics pass)."""
    folder = tiny_hubert if cnn == "group" else layer_norm_cnn
    model = M.SpeechModel.load(str(folder), device="cpu")
    encoder = chunk_everything(model, chunk_frames=7)
    assert encoder.group_first is (cnn == "group")
    x = tone(n_samples, seed=n_samples) + (0.25 if cnn == "group" else 0.0)  # tiny_hubert does not normalise
    spans = []
    original = encoder._chunks
    encoder._chunks = lambda *a: (spans.append(1) or out for out in original(*a))
    feats = model.features(x, "contextualized", list(range(model.num_layers + 1)))
    assert spans  # the chunked path ran
    reference = AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        states = reference(torch.from_numpy(model.prepare(x))[None], output_hidden_states=True).hidden_states
    for i, ref in enumerate(states):
        ref = ref[0].numpy()
        assert feats[f"layer_{i}"].shape == ref.shape == (model.geometry.n_frames(n_samples), model.hidden_size)
        assert np.abs(feats[f"layer_{i}"] - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())


@pytest.mark.parametrize("cnn", ["group", "layer"])
def test_chunked_conv_blocks_equal_unchunked(cnn, tiny_hubert, layer_norm_cnn):
    """rep_type local: every block's frames, chunk seams included, equal the hooks on the unchunked CNN."""
    folder = tiny_hubert if cnn == "group" else layer_norm_cnn
    model = M.SpeechModel.load(str(folder), device="cpu")
    chunk_everything(model, chunk_frames=5)
    x = tone(12345, seed=1)
    feats = model.features(x, "local", [0, 3, 6])
    reference = reference_conv_outputs(folder, model.prepare(x))
    for i in (0, 3, 6):
        ref = reference[i]
        assert feats[f"conv_{i}"].shape == ref.shape == (model.geometry.conv_lengths(len(x))[i], 16)
        assert np.abs(feats[f"conv_{i}"] - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())


def test_chunking_is_automatic_above_the_threshold(tiny_hubert):
    """The documented constants decide: a load gets LONG_AUDIO_SECONDS / CHUNK_SECONDS at the model's rate, and
    inputs up to the threshold take the unchunked path (bitwise the transformers module)."""
    model = M.SpeechModel.load(str(tiny_hubert), device="cpu")
    encoder = model.model.feature_extractor
    assert encoder.long_samples == int(longaudio.LONG_AUDIO_SECONDS * 16000)
    assert encoder.chunk_frames == int(longaudio.CHUNK_SECONDS * 16000) // 320
    used = []
    original = encoder._chunks
    encoder._chunks = lambda *a: (used.append(1) or out for out in original(*a))
    encoder.long_samples = 20000
    model.features(tone(20000), "contextualized", [1])
    assert not used
    model.features(tone(20001), "contextualized", [1])
    assert used


def test_chunked_bfloat16_is_as_close_to_float32_as_unchunked_bfloat16(tiny_hubert):
    """Reduced precision: the chunked CNN normalises in float32 (as torch's GroupNorm does inside), so its bf16
    features deviate from the float32 forward no more than the unchunked bf16 forward does."""
    x = tone(23457, seed=5) + 0.25
    layers = [0, 1, 2]
    reference = M.SpeechModel.load(str(tiny_hubert), device="cpu").features(x, "contextualized", layers)
    model = M.SpeechModel.load(str(tiny_hubert), device="cpu", dtype="bfloat16")
    plain = model.features(x, "contextualized", layers)
    chunk_everything(model, chunk_frames=7)
    chunked = model.features(x, "contextualized", layers)
    for key, ref in reference.items():
        err_plain = np.linalg.norm(plain[key] - ref) / np.linalg.norm(ref)
        err_chunked = np.linalg.norm(chunked[key] - ref) / np.linalg.norm(ref)
        assert err_chunked <= 1.5 * err_plain + 1e-3, (key, err_chunked, err_plain)


# --- issue 22, kind 10: the chunked CNN's assumptions are checked, and a config that breaks them runs unchunked --

SKIPPING_CNN = {"conv_dim": (16, 16, 16), "conv_kernel": (4, 3, 1), "conv_stride": (2, 2, 2)}  # block 2: kernel 1 < 2


@pytest.mark.parametrize("kernels, chunked", [((4, 3, 1), False), ((4, 1, 3), True)])
def test_cnn_whose_kernel_is_below_its_stride_gives_every_frame(tmp_path, kernels, chunked):
    """The issue's example: a last block with kernel 1 < stride 2 skips samples, so chunks of output frames would
    hold too few frames of the earlier blocks. Such a stack is never chunked; one whose later kernel makes up for
    it still is. With the chunked path forced for every length, every conv block equals hooks on the transformers
    CNN (within float32 rounding of the chunked GroupNorm), frame counts as the conv length formula gives them."""
    config = SKIPPING_CNN | {"conv_kernel": kernels}
    folder = save_tiny("hubert", tmp_path / "ckpt", do_normalize=False, model=build_tiny("hubert", **config))
    model = M.SpeechModel.load(str(folder), device="cpu")
    encoder = chunk_everything(model, chunk_frames=3)
    assert encoder.chunked(10**6) is chunked
    assert chunked or "kernel 1 < stride 2" in encoder.obstacle
    x = tone(5000, seed=2) + 0.25
    feats = model.features(x, "local", [0, 1, 2])
    reference = reference_conv_outputs(folder, model.prepare(x))
    expected = x.size
    for i in range(3):
        expected = (expected - config["conv_kernel"][i]) // config["conv_stride"][i] + 1
        assert feats[f"conv_{i}"].shape[0] == expected == reference[i].shape[0]
        np.testing.assert_allclose(feats[f"conv_{i}"], reference[i], rtol=0, atol=1e-4)
    contextual = model.features(x, "contextualized", [model.num_layers])
    with torch.no_grad():
        ref = AutoModel.from_pretrained(folder).eval()(torch.from_numpy(x)[None], output_hidden_states=True)
    np.testing.assert_allclose(contextual[f"layer_{model.num_layers}"], ref.hidden_states[-1][0].numpy(),
                               rtol=0, atol=1e-5)


@pytest.mark.parametrize("kernels, strides, chunkable", [
    ((10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2), True),  # HuBERT-base
    ((1, 3), (2, 2), True),  # the first block's own kernel < stride never matters: no earlier block to cut
    ((4, 3, 1), (2, 2, 2), False),
    ((4, 1, 1), (2, 2, 2), False),
    ((4, 1, 3), (2, 2, 2), True),  # block 2's extra kernel covers the samples block 1 skips: Σ (k − s)·P ≥ 0
    ((4, 3, 1), (2, 2, 3), False),
])
def test_chunking_obstacle_is_the_documented_condition(kernels, strides, chunkable):
    """Chunk frames ``[a, b)`` hold ``(b − a)·hop / P_i`` frames of block i exactly when the samples
    ``(b − a − 1)·hop + field`` give that many (the conv length formula, computed here directly)."""
    blocks = torch.nn.ModuleList()
    for k, s in zip(kernels, strides):
        block = torch.nn.Module()
        block.conv = torch.nn.Conv1d(1, 1, k, s)
        blocks.append(block)
    hop, field = 1, 1
    for k, s in zip(kernels, strides):
        field, hop = field + (k - 1) * hop, hop * s
    holds = True
    for i in range(len(kernels)):
        p_i = int(np.prod(strides[: i + 1]))
        for n in (1, 2, 5):  # output frames per chunk
            length = (n - 1) * hop + field
            for k, s in zip(kernels[: i + 1], strides[: i + 1]):
                length = (length - k) // s + 1
            holds &= length >= n * hop // p_i
    assert holds is chunkable
    assert (longaudio.chunking_obstacle(blocks, kernels, strides) is None) is chunkable
