"""The model adapter: a Hugging Face speech SSL checkpoint as "audio in, every layer out".

What s3prl calls an upstream. Loads HuBERT / wav2vec 2.0 / WavLM by hub id or local ``save_pretrained`` folder
(never remote code; finding and describing the checkpoint is ``checkpoint.py``), applies the checkpoint's own
waveform normalisation, and returns for ONE utterance either

- ``contextualized``: ``layer_0`` ... ``layer_L`` = ``model(x, output_hidden_states=True).hidden_states``, or
- ``local``: ``conv_0`` ... ``conv_{K-1}`` = the output of each CNN feature-encoder block (after its activation),

each as a time-major ``(T, D)`` float32 array. One utterance per forward pass: HuBERT-base's first conv block
normalises over time (GroupNorm), so zero-padded batches change the numbers. The frame math (hop, receptive field,
frame counts, frame centre times) lives in ``frames.py`` (re-exported here).
"""

from __future__ import annotations

import logging

import numpy as np

from .checkpoint import (  # noqa: F401  (public names of the adapter)
    DEFAULT_MODEL,
    DTYPES,
    NORMALIZE_MODES,
    REP_TYPES,
    ModelInfo,
    ModelLoadError,
    describe,
    load_base_model,
    read_checkpoint,
)
from .frames import (  # noqa: F401
    FrameGeometry,
    conv_output_length,
    frame_centres,
    parse_layer_geometry,
    receptive_field,
)
from .store import layer_key

log = logging.getLogger(__name__)


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
        if dtype not in DTYPES:
            raise ModelLoadError(f"dtype={dtype!r} not in {'|'.join(DTYPES)}")
        device = resolve_device(device)
        info, config, extractor, kwargs = read_checkpoint(name, revision=revision, normalize=normalize)
        log.info("waveform normalisation: %s (normalize=%s; the checkpoint's feature extractor says do_normalize=%s)",
                 "on" if info.normalize else "off", normalize, getattr(extractor, "do_normalize", True))
        model = load_base_model(name, config, kwargs, random_init=random_init, seed=seed)
        _freeze_parametrizations(model)
        model.to(device=device, dtype=getattr(torch, dtype))
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
