"""The model adapter: a Hugging Face speech SSL checkpoint as "audio in, every layer out".

What s3prl calls an upstream. Loads HuBERT / wav2vec 2.0 / WavLM by hub id or local ``save_pretrained`` folder
(never remote code), applies the checkpoint's own waveform normalisation, and returns for ONE utterance either

- ``contextualized``: ``layer_0`` ... ``layer_L`` = ``model(x, output_hidden_states=True).hidden_states``, or
- ``local``: ``conv_0`` ... ``conv_{K-1}`` = the output of each CNN feature-encoder block (after its activation),

each as a time-major ``(T, D)`` float32 array. One utterance per forward pass: HuBERT-base's first conv block
normalises over time (GroupNorm), so zero-padded batches change the numbers. The frame math (hop, receptive field,
frame counts, frame centre times) lives here and nowhere else.

HuBERT-base frame math, derived from the config (``conv_kernel``/``conv_stride``):
    HOP = prod(strides) = 5·2·2·2·2·2·2 = 320 samples (20 ms at 16 kHz, 50 frames/s)
    RECEPTIVE_FIELD = k0 + Σ_i (k_i − 1)·prod(s_0..s_{i-1}) = 400 samples (25 ms)
    n_frames(L) = ((L − k)//s + 1 applied layer by layer) = floor((L − 400)/320) + 1
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from .store import layer_key, parse_layer_key
from .errors import UsageError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "facebook/hubert-base-ls960"
REP_TYPES = ("contextualized", "local")
DTYPES = ("float32", "bfloat16", "float16")
NORMALIZE_MODES = ("auto", "on", "off")


class ModelLoadError(UsageError):
    """The checkpoint cannot be loaded (offline and not cached, not a speech SSL model, ...)."""


def conv_output_length(n_samples: int, kernels, strides) -> int:
    """Frames after the conv stack: ``(L − k)//s + 1`` layer by layer; 0 when the input is too short."""
    length = n_samples
    for kernel, stride in zip(kernels, strides):
        if length < kernel:
            return 0
        length = (length - kernel) // stride + 1
    return length


def receptive_field(kernels, strides) -> int:
    """Samples seen by one output frame: ``k0 + Σ_i (k_i − 1)·prod(s_0..s_{i−1})`` (400 for HuBERT-base)."""
    field, jump = 1, 1
    for kernel, stride in zip(kernels, strides):
        field += (kernel - 1) * jump
        jump *= stride
    return field


def frame_centres(n_frames: int, hop: int, field: int, sample_rate: int) -> np.ndarray:
    """Centre time of each frame in seconds, shape (n_frames,): ``(i·hop + field/2) / sample_rate``.

    For HuBERT-base at 16 kHz: ``(i·320 + 200) / 16000``.
    """
    return (np.arange(n_frames) * hop + field / 2) / sample_rate


@dataclass(frozen=True)
class FrameGeometry:
    """Frame math of a checkpoint, read from its config."""

    kernels: tuple[int, ...]
    strides: tuple[int, ...]
    sample_rate: int

    @property
    def hop(self) -> int:
        """Samples between frames (320 for HuBERT-base)."""
        return math.prod(self.strides)

    @property
    def receptive_field(self) -> int:
        return receptive_field(self.kernels, self.strides)

    @property
    def frame_rate(self) -> float:
        """Frames per second (50.0 for HuBERT-base at 16 kHz)."""
        return self.sample_rate / self.hop

    def n_frames(self, n_samples: int) -> int:
        return conv_output_length(n_samples, self.kernels, self.strides)

    def conv_lengths(self, n_samples: int) -> list[int]:
        """Frames after each conv block, e.g. [3199, 1599, ...] for 16000 samples."""
        return [conv_output_length(n_samples, self.kernels[: i + 1], self.strides[: i + 1]) for i in range(len(self.kernels))]

    def centres(self, n_frames: int) -> np.ndarray:
        return frame_centres(n_frames, self.hop, self.receptive_field, self.sample_rate)


def parse_layer_geometry(geometry: FrameGeometry, key: str) -> FrameGeometry:
    """Frame geometry of the array stored under ``key``: ``layer_k`` → the model's; ``conv_k`` → conv blocks 0..k."""
    parsed = parse_layer_key(key)
    if parsed is None:
        raise ValueError(f"not a layer key: {key!r}")
    kind, index = parsed
    if kind == "conv":
        return FrameGeometry(geometry.kernels[: index + 1], geometry.strides[: index + 1], geometry.sample_rate)
    return geometry


def parse_layers(spec: str | None, count: int, what: str = "layer") -> list[int]:
    """``"0,6,12"`` → ``[0, 6, 12]``; ``None``/``"all"`` → ``range(count)``. Checks the range, keeps order, dedups."""
    if spec is None or spec.strip().lower() in ("", "all"):
        return list(range(count))
    layers: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        if not part.lstrip("-").isdigit():
            raise ValueError(f"--layers: {part!r} is not an integer (expected e.g. 0,6,12)")
        index = int(part)
        if not 0 <= index < count:
            raise ValueError(f"--layers: {what} {index} not in [0, {count - 1}]")
        if index not in layers:
            layers.append(index)
    return sorted(layers)


def _torch():
    import torch  # deferred: `--help` and the analysis side stay free of torch

    return torch


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when available else ``cpu``; ``cuda`` without a GPU is an error."""
    torch = _torch()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("--device cuda was requested but torch sees no CUDA device (use --device cpu or auto)")
    if device not in ("cpu", "cuda"):
        raise ModelLoadError(f"--device {device!r} not in auto|cpu|cuda")
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


class SpeechModel:
    """A loaded checkpoint. Use :meth:`load`; then :meth:`features` per utterance.

    Read-only facts: ``num_layers`` (L transformer layers, so keys layer_0..layer_L), ``num_conv_layers``,
    ``hidden_size``, ``geometry`` (hop, receptive field, frame rate), ``normalize`` (bool actually applied).
    """

    def __init__(self, model, feature_extractor, *, name: str, device: str, dtype: str, normalize: bool, random_init: bool):
        torch = _torch()
        self.model, self.name, self.device, self.dtype = model, name, device, dtype
        self.normalize, self.random_init = normalize, random_init
        self.torch_dtype = getattr(torch, dtype)
        config = model.config
        self.sample_rate = int(getattr(feature_extractor, "sampling_rate", 16000))
        self.geometry = FrameGeometry(tuple(config.conv_kernel), tuple(config.conv_stride), self.sample_rate)
        self.num_layers = int(config.num_hidden_layers)
        self.num_conv_layers = len(config.conv_kernel)
        self.hidden_size = int(config.hidden_size)
        self.revision = getattr(config, "_commit_hash", None)
        self._normalizer = feature_extractor

    @classmethod
    def load(cls, name: str, *, device: str = "auto", dtype: str = "float32", normalize: str = "auto",
             random_init: bool = False, revision: str | None = None, seed: int = 0) -> SpeechModel:
        """Load ``name`` (hub id or local folder). ``random_init`` builds the same config with fresh weights
        (seeded by ``seed`` without touching the global RNG): the control for every layer-wise analysis."""
        torch = _torch()
        from transformers import (
            AutoConfig,
            AutoFeatureExtractor,
            AutoModel,
            Wav2Vec2FeatureExtractor,
        )

        if dtype not in DTYPES:
            raise ModelLoadError(f"--dtype {dtype!r} not in {'|'.join(DTYPES)}")
        if normalize not in NORMALIZE_MODES:
            raise ModelLoadError(f"--normalize {normalize!r} not in {'|'.join(NORMALIZE_MODES)}")
        device = resolve_device(device)
        kwargs = {"revision": revision, "trust_remote_code": False}
        try:
            config = AutoConfig.from_pretrained(name, **kwargs)
            if random_init:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    model = AutoModel.from_config(config)
            else:
                model = AutoModel.from_pretrained(name, **kwargs)
        except (OSError, ValueError) as err:
            raise ModelLoadError(
                f"cannot load model {name!r}: {err}\n"
                "If this machine is offline, download the checkpoint elsewhere (e.g. `hf download "
                f"{name} --local-dir DIR`, or `model.save_pretrained(DIR)` plus the feature extractor) and pass "
                "the folder: --model_name DIR"
            ) from err
        if not hasattr(model, "feature_extractor") or not hasattr(model.config, "conv_kernel"):
            raise ModelLoadError(f"{name!r} ({type(model).__name__}) is not a wav2vec2-style model with a CNN "
                                 "feature encoder (HuBERT, wav2vec 2.0, WavLM, ...)")
        try:
            feature_extractor = AutoFeatureExtractor.from_pretrained(name, **kwargs)
        except (OSError, ValueError):
            log.warning("%s has no preprocessor_config.json; using Wav2Vec2FeatureExtractor defaults "
                        "(16 kHz, do_normalize=True)", name)
            feature_extractor = Wav2Vec2FeatureExtractor()
        own = bool(getattr(feature_extractor, "do_normalize", True))
        applied = own if normalize == "auto" else normalize == "on"
        log.info("waveform normalisation: %s (%s; the checkpoint's feature extractor says do_normalize=%s)",
                 "on" if applied else "off", f"--normalize {normalize}", own)
        _freeze_parametrizations(model.eval())
        model.to(device=device, dtype=getattr(torch, dtype))
        return cls(model, feature_extractor, name=name, device=device, dtype=dtype, normalize=applied,
                   random_init=random_init)

    def config_summary(self) -> dict:
        """The config facts that define the features (for the metadata)."""
        c = self.model.config
        keys = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                "conv_dim", "conv_kernel", "conv_stride", "feat_extract_norm", "do_stable_layer_norm")
        return {k: (list(v) if isinstance(v, (list, tuple)) else v) for k in keys if (v := getattr(c, k, None)) is not None}

    def keys(self, rep_type: str) -> list[str]:
        """Every key this model produces for ``rep_type``, in layer order."""
        count = self.num_layers + 1 if rep_type == "contextualized" else self.num_conv_layers
        return [layer_key(rep_type, i) for i in range(count)]

    def prepare(self, samples: np.ndarray) -> np.ndarray:
        """The model input for one utterance, shape (n_samples,) float32: the checkpoint's own zero-mean/unit-variance
        formula ``(x − mean) / sqrt(var + 1e-7)`` when normalisation is on, else ``x`` unchanged."""
        if self.normalize:
            return self._normalizer.zero_mean_unit_var_norm([samples], None)[0].astype(np.float32, copy=False)
        return samples

    def features(self, samples: np.ndarray, rep_type: str, layers: list[int]) -> dict[str, np.ndarray]:
        """Features of ONE utterance.

        samples : ndarray (n_samples,), float32 at ``self.sample_rate`` (before normalisation; :meth:`prepare` runs here).
        Returns key -> ndarray (T, D) float32, only for ``layers`` (indices into :meth:`keys`).
        """
        torch = _torch()
        if rep_type not in REP_TYPES:
            raise ValueError(f"rep_type={rep_type!r} not in {REP_TYPES}")
        n_frames = self.geometry.n_frames(len(samples))
        if n_frames < 1:
            raise ValueError(f"{len(samples)} samples are shorter than one frame ({self.geometry.receptive_field} samples)")
        x = torch.from_numpy(self.prepare(samples))[None].to(self.device, self.torch_dtype, non_blocking=True)
        with torch.inference_mode():
            if rep_type == "contextualized":
                outputs = self.model(x, output_hidden_states=True).hidden_states
                states = {layer_key(rep_type, i): outputs[i][0] for i in layers}
            else:
                states = {layer_key(rep_type, i): h[0].transpose(0, 1) for i, h in enumerate(self._conv_outputs(x)) if i in layers}
        return {k: v.float().cpu().numpy() for k, v in states.items()}

    def _conv_outputs(self, x):
        """Outputs (1, C, T_k) of every CNN block, after its activation, for input x of shape (1, n_samples)."""
        hidden = x[:, None]
        outputs = []
        for block in self.model.feature_extractor.conv_layers:
            hidden = block(hidden)
            outputs.append(hidden)
        return outputs
