"""Batched extraction (``batch_size``) through the library call and the CLI: every stored array equals transformers'
unbatched forward pass of its utterance alone; padding only for a layer-norm CNN; failures stay per file."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import AutoModel

from layerwise.cli import extract as extract_features
from layerwise.contract import store
from layerwise.errors import UsageError
from layerwise.extract.options import ExtractionOptions
from layerwise.extract.run import extract_folder
from layerwise.model.adapter import SpeechModel
from tests.conftest import build_tiny, save_tiny, tone

LENGTHS = (16000, 9000, 12345, 9000, 9000, 5000)  # samples of the files 0..5, in their sorted order


def write_folder(folder, lengths=LENGTHS):
    folder.mkdir(parents=True)
    for i, n in enumerate(lengths):
        sf.write(folder / f"utt{i}.wav", tone(n, seed=i), 16000, subtype="FLOAT")
    return folder


def unbatched(model_folder, samples: np.ndarray) -> list[np.ndarray]:
    """transformers' own forward pass of one utterance alone (the models here have do_normalize=False)."""
    ref = AutoModel.from_pretrained(model_folder).eval()
    with torch.no_grad():
        return [h[0].numpy() for h in ref(torch.from_numpy(samples)[None], output_hidden_states=True).hidden_states]


def spy_batches(monkeypatch) -> list[int]:
    """Record the size of every features_batch call (``features`` is a call with one utterance)."""
    sizes, original = [], SpeechModel.features_batch
    monkeypatch.setattr(SpeechModel, "features_batch",
                        lambda self, waves, *a: sizes.append(len(waves)) or original(self, waves, *a))
    return sizes


@pytest.fixture(scope="module")
def layer_norm_model(tmp_path_factory):
    """A tiny wav2vec2-large-lv60-like checkpoint: layer-norm CNN, pre-LN transformer, no waveform normalisation."""
    model = build_tiny("wav2vec2", feat_extract_norm="layer", do_stable_layer_norm=True)
    return save_tiny("wav2vec2", tmp_path_factory.mktemp("ln"), do_normalize=False, model=model)


def stored(save_dir, model_folder) -> dict[str, dict[str, np.ndarray]]:
    folder = save_dir / model_folder.name / "librispeech_dev-clean_sample1"
    return {store.stem_of(p): store.read_features(p).layers for p in folder.glob(f"*{store.FEATURE_SUFFIX}")}


def test_layer_norm_batches_equal_unbatched_forward(layer_norm_model, tmp_path, monkeypatch):
    audio = write_folder(tmp_path / "audio")
    sizes = spy_batches(monkeypatch)
    options = ExtractionOptions(model_name=str(layer_norm_model), device="cpu")
    log = extract_folder(audio, tmp_path / "out", options, batch_size=4)
    assert (log.n_done, log.failures) == (6, [])
    assert sizes == [4, 2]  # any lengths share a pass: files 0-3, then 4-5
    feats = stored(tmp_path / "out", layer_norm_model)
    for i, n in enumerate(LENGTHS):
        for k, ref in enumerate(unbatched(layer_norm_model, tone(n, seed=i))):
            np.testing.assert_allclose(feats[f"utt{i}"][f"layer_{k}"], ref, atol=1e-5, rtol=1e-5)


def test_group_norm_batches_only_equal_lengths_and_says_so(tiny_hubert, tmp_path, monkeypatch, caplog):
    audio = write_folder(tmp_path / "audio")
    sizes = spy_batches(monkeypatch)
    with caplog.at_level(logging.WARNING):
        log = extract_folder(audio, tmp_path / "out", ExtractionOptions(model_name=str(tiny_hubert), device="cpu"),
                             batch_size=8)
    assert (log.n_done, log.failures) == (6, [])
    assert [s for s in sizes if s > 1] == [2]  # files 3 and 4 (9000 samples each): the only consecutive
    assert sum(sizes) == 6  # equal lengths; every file computed once (features() is a batch of one)
    assert "feat_extract_norm='group'" in caplog.text and "equal length" in caplog.text
    feats = stored(tmp_path / "out", tiny_hubert)
    for i, n in enumerate(LENGTHS):
        for k, ref in enumerate(unbatched(tiny_hubert, tone(n, seed=i))):
            np.testing.assert_allclose(feats[f"utt{i}"][f"layer_{k}"], ref, atol=1e-5, rtol=1e-5)


def test_a_bad_file_in_a_batch_fails_alone(layer_norm_model, tmp_path):
    audio = write_folder(tmp_path / "audio", (9000, 9000, 9000))
    (audio / "utt1.wav").write_bytes(b"not audio")
    log = extract_folder(audio, tmp_path / "out", ExtractionOptions(model_name=str(layer_norm_model), device="cpu"),
                         batch_size=3)
    assert log.n_done == 2 and [f[0].rsplit("/", 1)[-1] for f in log.failures] == ["utt1.wav"]


def test_a_batch_that_does_not_fit_is_retried_one_by_one(layer_norm_model, tmp_path, monkeypatch):
    """Memory for two utterances but not three: the batch of 3 fails, its first file then runs alone, and the
    next two (which fit) share a pass; every file is done."""
    from layerwise.model import machine

    audio = write_folder(tmp_path / "audio", (9000, 9000, 9000))
    model = SpeechModel.load(str(layer_norm_model), device="cpu")
    one = machine.memory_needed(model, 9000, "contextualized", [0, 1, 2])
    monkeypatch.setattr(machine, "available_memory", lambda device: 2 * one)
    sizes = spy_batches(monkeypatch)
    log = extract_folder(audio, tmp_path / "out", ExtractionOptions(model_name=str(layer_norm_model), device="cpu"),
                         model=model, batch_size=3)
    assert (log.n_done, log.failures, sizes) == (3, [], [3, 1, 2])


def test_batch_size_is_validated(layer_norm_model, tmp_path):
    options = ExtractionOptions(model_name=str(layer_norm_model), device="cpu")
    with pytest.raises(UsageError, match="batch_size=0"):
        extract_folder(tmp_path, tmp_path / "out", options, batch_size=0)
    with pytest.raises(SystemExit) as err:
        extract_features.main(["--audio_dir", str(tmp_path), "--save_dir", str(tmp_path / "o"), "--batch_size", "0"])
    assert err.value.code == 2
