"""The model adapter: a Hugging Face speech SSL checkpoint as "audio in, every layer out".

What s3prl calls an upstream. Loads HuBERT / wav2vec 2.0 / WavLM by hub id or local ``save_pretrained`` folder
(never remote code; finding and describing the checkpoint is ``checkpoint.py``), applies the checkpoint's own
waveform normalisation, and returns for ONE utterance either

- ``contextualized``: ``layer_0`` ... ``layer_L`` = ``model(x, output_hidden_states=True).hidden_states``, or
- ``local``: ``conv_0`` ... ``conv_{K-1}`` = the output of each CNN feature-encoder block (after its activation),

each as a time-major ``(T, D)`` float32 array. Several utterances share a forward pass only where that is exact
(:meth:`SpeechModel.batch_groups`): a CNN normalised per frame (``feat_extract_norm="layer"``: wav2vec2-large-lv60,
HuBERT-large, WavLM-large) is local in time, so zero-padded utterances with an attention mask give each utterance's
own numbers (to the rounding of batched kernels); a group-norm CNN (HuBERT-base, wav2vec2-base) normalises its
first block over the whole input, so padding would change every frame, and only utterances of equal length (no
padding) are batched. The frame math (hop, receptive field, frame counts, frame centre times) lives in
:mod:`layerwise.contract.grid` (``SpeechModel.geometry``).

The settings (rep_type, dtype, device, normalize) arrive validated by the run's options
(:class:`~layerwise.extract.options.ExtractionOptions`) and are trusted here.
"""

from __future__ import annotations

import logging

import numpy as np

from layerwise.errors import InputError, ModelLoadError
from layerwise.model.checkpoint import ModelInfo, check_finite, load_base_model, read_checkpoint
from layerwise.model.machine import check_bf16, check_memory, memory_needed, out_of_memory

log = logging.getLogger(__name__)


def _torch():
    import torch  # deferred: `--help` and the analysis side stay free of torch

    return torch


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when available else ``cpu``; ``cuda`` without a GPU is an error (``device`` is one of
    ``auto|cpu|cuda``, checked by the run's options)."""
    torch = _torch()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("--device cuda was requested but torch sees no CUDA device (use --device cpu or auto)")
    return device


def _freeze_parametrizations(model) -> int:
    """Replace parametrized weights (the weight-normed positional conv of HuBERT/wav2vec2) by their value.

    Exact: the stored weight is what the parametrization would compute on every forward pass (``g·v/‖v‖``, same op),
    computed once in float32 before any cast, instead of once per utterance (≈ 15 ms per HuBERT-base forward on
    2 CPU cores). Inference only: the model is never trained here. Returns the number of weights frozen.
    """
    from torch.nn.utils import parametrize

    frozen = 0
    for module in model.modules():
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
                frozen += 1
    return frozen


def non_finite_message(key: str, dtype: str) -> str:
    """Why layer ``key`` of one utterance holds NaN/inf and what to change. The weights are known to be finite in
    ``dtype`` (checked at load), so: in a half type the activations overflow its range (float16 tops out at 65504),
    and a wider dtype is the remedy; in float32 no dtype is wider, so the message names the input as the cause."""
    if dtype == "float32":
        return (f"{key} holds NaN or inf values in float32 although every weight is finite: the model overflows on "
                "this input (check the audio: extreme amplitudes, or a waveform the checkpoint's normalisation "
                "cannot scale); no wider compute dtype exists")
    wider = "float32" if dtype == "bfloat16" else "float32 or bfloat16"
    return (f"{key} holds NaN or inf values with dtype {dtype}: the model overflows on this input in {dtype}; "
            f"extract it with dtype {wider}")


class SpeechModel:
    """A loaded checkpoint. Use :meth:`load`; then :meth:`features` per utterance.

    Read-only facts: ``info`` (the :class:`ModelInfo` that :func:`describe` gives without weights), and from it
    ``num_layers`` (L transformer layers, so keys layer_0..layer_L), ``num_conv_layers``, ``hidden_size``,
    ``geometry`` (hop, receptive field, frame rate), ``normalize`` (bool actually applied), ``revision``.
    """

    def __init__(self, model, feature_extractor, info: ModelInfo, *, device: str, dtype: str, random_init: bool):
        torch = _torch()
        self.model, self.info, self.device, self.dtype = model, info, device, dtype
        self.name, self.revision, self.normalize, self.random_init = info.name, info.revision, info.normalize, random_init
        self.torch_dtype = getattr(torch, dtype)
        self.sample_rate, self.geometry = info.sample_rate, info.geometry
        self.num_layers, self.num_conv_layers, self.hidden_size = info.num_layers, info.num_conv_layers, info.hidden_size
        self._normalizer = feature_extractor

    @classmethod
    def load(cls, name: str, *, device: str = "auto", dtype: str = "float32", normalize: str = "auto",
             random_init: bool = False, revision: str | None = None, seed: int = 0) -> SpeechModel:
        """Load ``name`` (hub id or local folder). ``random_init`` builds the same config with fresh weights
        (seeded by ``seed`` without touching the global RNG): the control for every layer-wise analysis.
        Raises :class:`ModelLoadError` (offline and not cached, missing folder, missing or mis-shaped weights)."""
        torch = _torch()
        from layerwise.model.longaudio import ChunkedFeatureEncoder

        device = resolve_device(device)
        info, config, extractor, kwargs = read_checkpoint(name, revision=revision, normalize=normalize,
                                                          weights=not random_init)
        log.info("waveform normalisation: %s (normalize=%s; the checkpoint's feature extractor says do_normalize=%s)",
                 "on" if info.normalize else "off", normalize, getattr(extractor, "do_normalize", True))
        model = load_base_model(name, config, kwargs, random_init=random_init, seed=seed)
        _freeze_parametrizations(model)
        model.feature_extractor = ChunkedFeatureEncoder(model.feature_extractor, info.geometry.kernels,
                                                        info.geometry.strides, info.sample_rate)
        model.to(device=device, dtype=getattr(torch, dtype))  # derived weights were computed in float32 above
        if dtype != "float32":
            check_finite(model, name, dtype)
        if dtype == "bfloat16":
            check_bf16(device)
        return cls(model, extractor, info, device=device, dtype=dtype, random_init=random_init)

    def config_summary(self) -> dict:
        """The config facts that define the features (for the metadata)."""
        return dict(self.info.config_summary)

    def keys(self, rep_type: str) -> list[str]:
        """Every key this model produces for ``rep_type``, in layer order."""
        return self.info.keys(rep_type)

    def prepare(self, samples: np.ndarray) -> np.ndarray:
        """The model input for one utterance, shape (n_samples,) float32: the checkpoint's own zero-mean/unit-variance
        formula ``(x − mean) / sqrt(var + 1e-7)`` when normalisation is on, else ``x`` unchanged."""
        if self.normalize:
            return self._normalizer.zero_mean_unit_var_norm([samples], None)[0].astype(np.float32, copy=False)
        return samples

    @property
    def padding_exact(self) -> bool:
        """True when zero-padded batches with an attention mask are exact: a CNN normalised per frame
        (``feat_extract_norm="layer"``), local in time; a group-norm first block normalises over the whole input."""
        return self.info.config_summary.get("feat_extract_norm", "group") == "layer"

    def batch_groups(self, lengths: list[int], batch_size: int) -> list[list[int]]:
        """Which of consecutive utterances of ``lengths`` samples share a forward pass (:func:`batch_groups`):
        any lengths for a layer-norm CNN, equal lengths only for a group-norm one, long audio alone."""
        encoder = self.model.feature_extractor
        alone = encoder.long_samples if encoder.obstacle is None else 2**62
        return batch_groups(lengths, batch_size, padding_exact=self.padding_exact, alone=alone)

    def features(self, samples: np.ndarray, rep_type: str, layers: list[int]) -> dict[str, np.ndarray]:
        """Features of ONE utterance.

        samples : ndarray (n_samples,), float32 at ``self.sample_rate`` (before normalisation; :meth:`prepare` runs here).
        Returns key -> ndarray (T, D) float32, only for ``layers`` (indices into :meth:`keys`), in that order.

        Runs only as deep as the deepest requested layer (``layers=[0, 3, 6]`` runs transformer layers 1..6, not 12;
        exact: each array equals ``model(x, output_hidden_states=True).hidden_states[k]``). Inputs longer than
        ``longaudio.LONG_AUDIO_SECONDS`` run the CNN in exact chunks (bounded memory). Raises :class:`InputError`
        when the input is shorter than one frame, would need more memory than is available, or gives NaN/inf
        (named by layer key and compute dtype).
        """
        return self.features_batch([samples], rep_type, layers)[0]

    def features_batch(self, waves: list[np.ndarray], rep_type: str, layers: list[int]) -> list[dict[str, np.ndarray]]:
        """Features of several utterances in ONE forward pass, each as :meth:`features` gives it.

        waves : ndarrays (n_samples_b,), float32, a group that :meth:`batch_groups` allows (else ValueError). Each is
        normalised on its own, zero-padded to the longest, and, when lengths differ (layer-norm CNN only), the
        model gets the attention mask of the real samples; each utterance's arrays are its own frames only:
        ``geometry.n_frames(n_samples_b)`` rows (``conv_lengths`` for local keys). Equal to one pass per utterance
        up to the rounding of batched kernels (tested within 1e-5). Raises :class:`InputError` as :meth:`features`
        does, for the whole group (its caller retries the utterances one by one, so each failure is its own).
        """
        torch = _torch()
        keys = self.keys(rep_type)
        if not layers or not all(0 <= i < len(keys) for i in layers):
            raise ValueError(f"layers={list(layers)} must be a non-empty list of indices in [0, {len(keys) - 1}]")
        lengths = [len(w) for w in waves]
        if len(waves) > 1 and self.batch_groups(lengths, len(waves)) != [list(range(len(waves)))]:
            raise ValueError(f"utterances of {lengths} samples cannot share an exact forward pass (batch_groups)")
        for n in lengths:
            if self.geometry.n_frames(n) < 1:
                raise InputError(f"{n} samples are shorter than one frame ({self.geometry.receptive_field} samples)")
        longest, seconds = max(lengths), sum(lengths) / self.sample_rate
        needed = len(waves) * memory_needed(self, longest, rep_type, layers)  # every row padded to the longest
        check_memory(needed, seconds, self.device)
        x = np.zeros((len(waves), longest), np.float32)
        for b, w in enumerate(waves):
            x[b, :len(w)] = self.prepare(w)
        x = torch.from_numpy(x).to(self.device, self.torch_dtype, non_blocking=True)
        mask = None
        if len(set(lengths)) > 1:
            mask = (torch.arange(longest)[None] < torch.tensor(lengths)[:, None]).to(self.device, torch.long)
        try:
            with torch.inference_mode():
                if rep_type == "contextualized":
                    states = self._encoder_states(x, layers, mask)
                    rows = {i: [self.geometry.n_frames(n) for n in lengths] for i in layers}
                else:
                    states = {i: h.transpose(1, 2) for i, h in
                              self.model.feature_extractor.block_outputs(x, set(layers)).items()}
                    conv = [self.geometry.conv_lengths(n) for n in lengths]
                    rows = {i: [c[i] for c in conv] for i in layers}
                for i in layers:  # on the device, before any copy
                    if not all(bool(torch.isfinite(states[i][b, :t]).all()) for b, t in enumerate(rows[i])):
                        raise InputError(non_finite_message(keys[i], self.dtype))
                return [{keys[i]: states[i][b, :rows[i][b]].float().cpu().numpy() for i in layers}
                        for b in range(len(waves))]
        except MemoryError as err:
            raise out_of_memory(needed, seconds, self.device) from err
        except RuntimeError as err:
            if "memory" not in str(err).lower():
                raise
            raise out_of_memory(needed, seconds, self.device) from err

    def _encoder_states(self, x, layers: list[int], attention_mask=None) -> dict:
        """Hidden states ``{k: (B, T, D) tensor}`` for k in ``layers``, from the transformers forward pass stopped
        right after the deepest one. As transformers' ``output_hidden_states``: state 0 is the input of the first
        encoder layer, state k the output of layer k (hooks on the encoder layers; other states are not kept).
        ``attention_mask`` (B, n_samples), 1 on real samples, for zero-padded utterances of a layer-norm CNN."""
        wanted, deepest = set(layers), max(layers)
        blocks, states = self.model.encoder.layers, {}

        def keep(index: int, value) -> None:
            if index in wanted:
                states[index] = value
            if index == deepest:
                raise _StopForward

        def before_first(module, args, kwargs):
            keep(0, args[0] if args else kwargs["hidden_states"])

        def after(index):
            return lambda module, args, output: keep(index, output[0] if isinstance(output, tuple) else output)

        handles = [blocks[0].register_forward_pre_hook(before_first, with_kwargs=True)]
        handles += [blocks[k - 1].register_forward_hook(after(k)) for k in range(1, deepest + 1)]
        try:
            if attention_mask is None:
                self.model(x)
            else:
                self.model(x, attention_mask=attention_mask)
        except _StopForward:
            pass
        finally:
            for handle in handles:
                handle.remove()
        return states


def batch_groups(lengths: list[int], batch_size: int, *, padding_exact: bool, alone: int) -> list[list[int]]:
    """Consecutive utterances grouped into forward passes of at most ``batch_size`` (indices into ``lengths``, in
    order, every index once).

    lengths : samples per utterance. padding_exact : True when zero padding with an attention mask is exact (a
    layer-norm CNN): any lengths may share a pass; else only runs of equal length do (no padding at all).
    alone : an utterance longer than this many samples (the chunked CNN of long audio) always runs alone.
    """
    groups: list[list[int]] = []
    for i, n in enumerate(lengths):
        last = groups[-1] if groups else None
        if (last is not None and len(last) < batch_size and n <= alone and lengths[last[0]] <= alone
                and (padding_exact or n == lengths[last[0]])):
            last.append(i)
        else:
            groups.append([i])
    return groups


class _StopForward(Exception):
    """Raised by a hook once the deepest requested layer is computed: the rest of the forward pass is skipped."""
