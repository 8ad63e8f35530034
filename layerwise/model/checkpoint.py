"""Finding and describing a checkpoint: hub id or local folder, offline in seconds, config only (no weights).

:func:`describe` reads ``config.json`` and ``preprocessor_config.json`` (``AutoConfig`` + ``AutoFeatureExtractor``)
and returns a :class:`ModelInfo`: everything resume and ``layers`` validation need, before any weights load.

Where the checkpoint comes from:

- a name that looks like a path (starts with ``/``, ``./``, ``../``, ``~``, has more than one ``/``, or its first
  component is an existing local folder) is a folder; a missing one is "folder not found", never "invalid repo id";
- otherwise a hub id. When ``HF_HUB_OFFLINE=1`` is set, or the hub does not answer a TCP connect within
  :data:`HUB_PROBE_TIMEOUT_S`, only the local cache is used (transformers would retry for ≈ 25 s first), and a
  cache miss says once what to do: ``--model_name DIR`` / ``MODEL_NAME=DIR``, ``HF_HUB_OFFLINE=1``.

transformers' own progress bars and log output are silenced while loading (:func:`quiet_transformers`) and
restored afterwards, so they do not interleave with the tool's log.

``ModelInfo.revision`` pins the weights a run used: the resolved hub commit for a hub id, and for a local folder a
content fingerprint of its config and weights (:func:`layerwise.model.fingerprint.folder_fingerprint`), so a folder whose
weights were replaced, or the same relative name in another working directory, is another model to resume.
"""

from __future__ import annotations

import logging
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlparse

from layerwise.contract.grid import FrameGeometry
from layerwise.contract.layout import KEY_PREFIX, layer_key
from layerwise.errors import ModelLoadError, error_text
from layerwise.model.files import PREPROCESSOR_FILE, check_local_files, remedy
from layerwise.model.fingerprint import folder_fingerprint

log = logging.getLogger(__name__)

DEFAULT_MODEL = "facebook/hubert-base-ls960"
REP_TYPES = tuple(KEY_PREFIX)  # contextualized (hidden states, layer_k), local (CNN blocks, conv_k)
# Compute dtypes and the bytes of one value in each (the memory estimate of machine.py reads the sizes).
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
DTYPES = tuple(DTYPE_BYTES)
NORMALIZE_MODES = ("auto", "on", "off")
# One TCP connect to the hub endpoint: a reachable hub answers in well under a second (one round trip); 3 s leaves
# room for a slow DNS lookup while keeping an offline failure far below transformers' ≈ 25 s of retries.
HUB_PROBE_TIMEOUT_S = 3.0
# Config facts that define the features (written to the metadata of every feature file).
CONFIG_SUMMARY_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                       "conv_dim", "conv_kernel", "conv_stride", "feat_extract_norm", "do_stable_layer_norm")
_REACHABLE: dict[str, bool] = {}  # hub endpoint -> answered the probe (once per process)
_OFFLINE_HELP = ("Pass a local checkpoint folder instead: --model_name DIR (wrapper: MODEL_NAME=DIR), made on a "
                 "machine with network by `hf download {name} --local-dir DIR` (or save_pretrained of the model and "
                 "its feature extractor).")
_OFFLINE_HINT = " On machines without network set HF_HUB_OFFLINE=1, so no time is spent trying the hub."


def offline_help(name: str) -> str:
    """What to do when ``name`` cannot be loaded from the hub (the HF_HUB_OFFLINE hint only when it is not set)."""
    return _OFFLINE_HELP.format(name=name) + ("" if _env_true("HF_HUB_OFFLINE") else _OFFLINE_HINT)



@dataclass(frozen=True)
class ModelInfo:
    """Config-only description of a checkpoint: what the features will be, known before any weights load.

    ``revision`` is the resolved hub commit hash, or for a local folder ``"sha256:<16 hex>"``, a fingerprint of
    its config.json, preprocessor_config.json and weight files (see :mod:`layerwise.model.fingerprint`); ``normalize`` is
    the waveform normalisation actually applied (the ``normalize`` mode resolved against the checkpoint's feature
    extractor).
    """

    name: str
    revision: str | None
    sample_rate: int
    normalize: bool
    num_layers: int
    num_conv_layers: int
    hidden_size: int
    geometry: FrameGeometry
    config_summary: dict = field(hash=False)

    def keys(self, rep_type: str) -> list[str]:
        """Every key this model produces for ``rep_type``, in layer order: ``layer_0..layer_L`` (L transformer
        layers plus the CNN/projection output) or ``conv_0..conv_{K-1}``."""
        count = self.num_layers + 1 if rep_type == "contextualized" else self.num_conv_layers
        return [layer_key(rep_type, i) for i in range(count)]


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def looks_like_path(name: str) -> bool:
    """True when ``name`` is meant as a local folder rather than a hub id (``org/name``)."""
    if name.startswith(("/", "./", "../", "~", ".\\", "..\\")) or name in (".", "..") or "\\" in name:
        return True
    if name.count("/") > 1 or name.endswith("/") or Path(name).exists():
        return True
    first = name.split("/", 1)[0]
    return "/" in name and Path(first).is_dir()


def hub_reachable(endpoint: str | None = None, timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """One TCP connect to the hub endpoint (``HF_ENDPOINT`` or https://huggingface.co) within ``timeout`` seconds,
    name lookup included (run in a thread: ``getaddrinfo`` itself has no timeout)."""
    import socket

    if endpoint is None:
        from huggingface_hub import constants

        endpoint = constants.ENDPOINT
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    result = []

    def probe():
        try:
            socket.create_connection((url.hostname, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result and result[0])


@contextmanager
def quiet_transformers():
    """Silence transformers' progress bars and warnings (load report tables) for the block, then restore them."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def source_kwargs(name: str, revision: str | None) -> dict:
    """``from_pretrained`` keyword arguments for ``name``: checks a folder exists, and goes to the local cache only
    when the hub is switched off or unreachable (said once, in the log)."""
    if looks_like_path(name):
        folder = Path(name).expanduser()
        if not folder.is_dir():
            raise ModelLoadError(f"model folder not found: {folder} (--model_name {name}). Pass an existing "
                                 "checkpoint folder (config.json, model.safetensors, preprocessor_config.json) "
                                 "or a hub id such as facebook/hubert-base-ls960.")
        if not (folder / "config.json").is_file():
            raise ModelLoadError(f"{folder} is not a checkpoint folder: it has no config.json. Pass the folder "
                                 "that save_pretrained or `hf download ... --local-dir` wrote.")
        return {"pretrained_model_name_or_path": str(folder), "trust_remote_code": False}
    kwargs = {"pretrained_model_name_or_path": name, "revision": revision, "trust_remote_code": False}
    if _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE"):
        return kwargs | {"local_files_only": True, "_offline_reason": "HF_HUB_OFFLINE=1 is set"}
    from huggingface_hub import constants

    if constants.ENDPOINT not in _REACHABLE:  # probed and said once per process (describe() and load() both ask)
        _REACHABLE[constants.ENDPOINT] = hub_reachable(constants.ENDPOINT)
        if not _REACHABLE[constants.ENDPOINT]:
            log.warning("cannot reach the Hugging Face hub (%s): using the local cache only", constants.ENDPOINT)
    if not _REACHABLE[constants.ENDPOINT]:
        return kwargs | {"local_files_only": True,
                         "_offline_reason": f"the hub ({constants.ENDPOINT}) cannot be reached from this machine"}
    return kwargs


def call_hub(loader, name: str, kwargs: dict, what: str):
    """``loader.from_pretrained(**kwargs)`` with every failure to read the checkpoint (hub, cache or folder: a
    missing file, invalid JSON, a damaged weight file, ...) turned into one :class:`ModelLoadError` whose advice
    fits the source in use (:func:`load_advice`); a ``MemoryError`` stays what it is."""
    reason = kwargs.get("_offline_reason")
    clean = {k: v for k, v in kwargs.items() if not k.startswith("_")}
    try:
        with quiet_transformers():
            return loader.from_pretrained(**clean)
    except MemoryError:
        raise
    except Exception as err:  # SafetensorError, UnpicklingError, OSError, ValueError, ...
        if reason:
            raise ModelLoadError(f"model {name!r} is not in the local Hugging Face cache and {reason}. "
                                 + offline_help(name)) from err
        raise ModelLoadError(f"cannot load the {what} of model {name!r}: {error_text(err)}. "
                             + load_advice(name)) from err


def load_advice(name: str) -> str:
    """What to do when checkpoint ``name`` was found but cannot be read: for a local folder, rebuild that folder
    (it is already a local folder, so passing one is no remedy); for a hub id, check the id and revision, download
    it again, or pass a local folder."""
    if looks_like_path(name):
        return remedy(Path(name).expanduser())
    return (f"Check the hub id and --revision; if a file in the Hugging Face cache is damaged, download it again "
            f"(`hf download {name} --force-download`); or pass a local checkpoint folder: --model_name DIR "
            "(wrapper: MODEL_NAME=DIR).")


def resolve_normalize(feature_extractor, normalize: str) -> bool:
    """The normalisation actually applied: the checkpoint's ``do_normalize`` for ``auto``, else ``on``/``off``
    (one of :data:`NORMALIZE_MODES`, checked by the run's options)."""
    own = bool(getattr(feature_extractor, "do_normalize", True))
    return own if normalize == "auto" else normalize == "on"


def read_checkpoint(name: str, *, revision: str | None = None, normalize: str = "auto", fingerprint: bool = True,
                    weights: bool = True):
    """(ModelInfo, transformers config, feature extractor, from_pretrained kwargs) of ``name``; no weights.
    ``fingerprint=False`` leaves a local folder's ``revision`` None instead of hashing its weight files (for checks
    of the settings against the config, which must come before any weight byte is read). A local folder's files are
    checked first (:func:`layerwise.model.files.check_local_files`: the JSON files, and with ``weights`` the weight
    files' headers), so a damaged file is a :class:`ModelLoadError` naming it before any audio is read."""
    from transformers import AutoConfig

    kwargs = source_kwargs(name, revision)
    local = looks_like_path(name)
    if local:
        check_local_files(Path(kwargs["pretrained_model_name_or_path"]), weights=weights)
    config = call_hub(AutoConfig, name, kwargs, "config")
    if not hasattr(config, "conv_kernel") or not hasattr(config, "conv_stride"):
        raise ModelLoadError(f"{name!r} (model_type {getattr(config, 'model_type', '?')!r}) is not a wav2vec2-style "
                             "model with a CNN feature encoder (HuBERT, wav2vec 2.0, WavLM, ...)")
    extractor = _feature_extractor(name, kwargs)
    applied = resolve_normalize(extractor, normalize)
    sample_rate = int(getattr(extractor, "sampling_rate", 16000))
    summary = {k: (list(v) if isinstance(v, (list, tuple)) else v)
               for k in CONFIG_SUMMARY_KEYS if (v := getattr(config, k, None)) is not None}
    info = ModelInfo(
        name=name, revision=((folder_fingerprint(kwargs["pretrained_model_name_or_path"]) if fingerprint else None)
                             if local else getattr(config, "_commit_hash", None)),
        sample_rate=sample_rate, normalize=applied, num_layers=int(config.num_hidden_layers),
        num_conv_layers=len(config.conv_kernel), hidden_size=int(config.hidden_size),
        geometry=FrameGeometry(tuple(config.conv_kernel), tuple(config.conv_stride), sample_rate),
        config_summary=summary)
    return info, config, extractor, kwargs


def _feature_extractor(name: str, kwargs: dict):
    """The checkpoint's feature extractor; Wav2Vec2FeatureExtractor defaults (with a warning) only when it has no
    preprocessor_config.json. One that exists but cannot be read is a :class:`ModelLoadError`: the defaults
    (do_normalize=True) could silently change the features."""
    from transformers import AutoFeatureExtractor, Wav2Vec2FeatureExtractor

    try:
        with quiet_transformers():
            return AutoFeatureExtractor.from_pretrained(**{k: v for k, v in kwargs.items() if k[0] != "_"})
    except MemoryError:
        raise
    except Exception as err:  # present but unreadable is an error, absent is the fallback below
        if (present := _preprocessor_file(name, kwargs)) is not None:
            raise ModelLoadError(f"cannot read the feature extractor settings {present} of model {name!r}: "
                                 f"{error_text(err)}. {load_advice(name)}") from err
    log.warning("%s has no preprocessor_config.json; using Wav2Vec2FeatureExtractor defaults "
                "(16 kHz, do_normalize=True)", name)
    return Wav2Vec2FeatureExtractor()


def _preprocessor_file(name: str, kwargs: dict) -> str | None:
    """Where ``name``'s preprocessor_config.json is (the folder's, or the hub cache's copy), None when it has none."""
    if looks_like_path(name):
        path = Path(kwargs["pretrained_model_name_or_path"]) / PREPROCESSOR_FILE
        return str(path) if path.exists() else None
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        cached = try_to_load_from_cache(name, PREPROCESSOR_FILE, revision=kwargs.get("revision"))
    except HFValidationError:  # not a valid repo id: the cache cannot hold it, so nothing is cached
        return None
    return cached if isinstance(cached, str) else None


def describe(name: str, *, revision: str | None = None, normalize: str = "auto", fingerprint: bool = True,
             weights: bool = True) -> ModelInfo:
    """Config-only :class:`ModelInfo` of ``name`` (hub id or local folder): reads config.json and
    preprocessor_config.json and builds no model. For a local folder ``revision`` is the SHA-256 fingerprint of its
    config and weight files (the weight bytes are read, once per process, ≈ 1 s for a 360 MB base model).
    ``fingerprint=False``: only the weight files' headers are read (``revision`` None for a local folder);
    ``weights=False`` (a random-init control) does not look at the weight files at all.
    Raises :class:`ModelLoadError` (a usage error, exit 2) for a folder or file that cannot be read."""
    return read_checkpoint(name, revision=revision, normalize=normalize, fingerprint=fingerprint,
                           weights=weights)[0]


def with_fingerprint(info: ModelInfo) -> ModelInfo:
    """``info`` of :func:`describe` ``(fingerprint=False)`` completed with the local folder's content fingerprint
    (reads the weight files' bytes); a hub id's ``info`` is returned as it is."""
    if info.revision is not None or not looks_like_path(info.name):
        return info
    return replace(info, revision=folder_fingerprint(str(Path(info.name).expanduser())))


# Base-model parameters that inference never reads, so a checkpoint may lack them: the learned mask embedding is
# only used when time masking is applied (mask_time_prob, training mode); extraction runs in eval mode.
UNUSED_AT_INFERENCE = ("masked_spec_embed",)
# Top-level modules of task heads and pre-training objectives that the base model (AutoModel) does not have, as
# transformers names them once the base prefix (wav2vec2., hubert., wavlm., ...) is stripped: CTC (lm_head,
# UniSpeech ctc_proj), pre-training (quantizer, project_q, project_hid; fairseq HuBERT final_proj, label_embs_concat;
# UniSpeechSat speaker_proj, label_embeddings_concat, layer_norm_for_extract), sequence/frame classification and
# x-vector heads (projector, classifier, layer_weights, tdnn, objective), and the training-only mask embedding.
HEAD_MODULES = ("lm_head", "ctc_proj", "quantizer", "project_q", "project_hid", "final_proj", "label_embs_concat",
                "speaker_proj", "label_embeddings_concat", "layer_norm_for_extract", "projector", "classifier",
                "layer_weights", "tdnn", "objective") + UNUSED_AT_INFERENCE
# The x-vector head's linear layer is called feature_extractor too: only these two exact names, never the CNN's
# feature_extractor.conv_layers.* tensors.
HEAD_TENSORS = ("feature_extractor.weight", "feature_extractor.bias")


def is_head_tensor(key: str, base_prefix: str = "") -> bool:
    """True when checkpoint tensor ``key`` belongs to a task head or pre-training module the base model lacks
    (:data:`HEAD_MODULES`, :data:`HEAD_TENSORS`), after stripping ``base_prefix + "."`` if present."""
    if base_prefix and key.startswith(base_prefix + "."):
        key = key[len(base_prefix) + 1:]
    return key in HEAD_TENSORS or key.split(".", 1)[0] in HEAD_MODULES


def _short_list(names, limit: int = 8) -> str:
    names = sorted(names)
    more = f" ... and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def load_base_model(name: str, config, kwargs: dict, *, random_init: bool, seed: int):
    """The base model (``AutoModel``, no task head) of ``name`` in eval mode, float32, on the CPU.

    Always float32, whatever dtype the checkpoint was saved in (transformers 5 would otherwise load a bfloat16
    checkpoint as bfloat16, its default ``dtype="auto"``): derived weights (the positional conv's weight norm,
    frozen by the adapter) are then computed in float32 from the stored values, exactly as
    ``AutoModel.from_pretrained(dir, dtype=torch.float32)`` computes them; the adapter casts to the compute dtype
    after that. Every parameter and buffer must be finite (:func:`check_finite`).

    Every base-model parameter must come from the checkpoint with its shape: a missing or mismatched one (which
    transformers would silently re-initialise at random) is a :class:`ModelLoadError` naming them. Tensors of heads
    the base model does not use (:func:`is_head_tensor`: CTC ``lm_head``, ``quantizer``, ``project_q``, ...) are
    ignored with one log line; any other tensor the config does not create (e.g. ``encoder.layers.2.*`` of a
    4-layer checkpoint whose config says 2) means the config does not match the weights: a ModelLoadError.
    ``random_init`` builds the config with fresh weights seeded by ``seed`` (global RNG untouched).
    """
    import torch
    from transformers import AutoModel

    if random_init:
        with torch.random.fork_rng(devices=[]), quiet_transformers():
            torch.manual_seed(seed)
            model = AutoModel.from_config(config, dtype=torch.float32)
    else:
        model = _load_weights(name, config, kwargs)
    model = model.to(torch.float32)  # a no-op for float32 checkpoints; never derive anything in the stored dtype
    if not hasattr(model, "feature_extractor"):
        raise ModelLoadError(f"{name!r} ({type(model).__name__}) is not a wav2vec2-style model with a CNN "
                             "feature encoder (HuBERT, wav2vec 2.0, WavLM, ...)")
    check_finite(model, name)
    return model.eval()


def _load_weights(name: str, config, kwargs: dict):
    """``AutoModel.from_pretrained`` in float32, refusing checkpoints that do not provide every parameter or hold
    tensors the config does not create (see :func:`load_base_model`)."""
    import torch
    from transformers import AutoModel

    model, report = call_hub(AutoModel, name, kwargs | {"config": config, "output_loading_info": True,
                                                        "ignore_mismatched_sizes": True, "dtype": torch.float32},
                             "weights")
    missing = {k for k in report.get("missing_keys", ()) if k.split(".")[-1] not in UNUSED_AT_INFERENCE}
    mismatched = {f"{k} (checkpoint {tuple(a)}, model {tuple(b)})" for k, a, b in report.get("mismatched_keys", ())}
    if missing or mismatched:
        parts = ([f"{len(missing)} parameters missing: {_short_list(missing)}"] if missing else []) + \
                ([f"{len(mismatched)} with another shape: {_short_list(mismatched)}"] if mismatched else [])
        raise ModelLoadError(f"checkpoint {name!r} does not provide every parameter of the "
                             f"{type(model).__name__} its config describes ({'; '.join(parts)}); transformers "
                             "would fill them with random numbers. Use a complete checkpoint (re-download or "
                             "re-save it), or --random_init for a deliberately random model.")
    unexpected = set(report.get("unexpected_keys", ()))
    if foreign := {k for k in unexpected if not is_head_tensor(k, model.base_model_prefix)}:
        raise ModelLoadError(f"checkpoint {name!r} holds {len(foreign)} tensors that the {type(model).__name__} "
                             f"its config.json describes does not have ({_short_list(foreign)}): the config "
                             "does not match the weights (e.g. num_hidden_layers, conv_dim). Use the "
                             "config.json saved with these weights (re-download or re-save the checkpoint).")
    if unexpected:
        log.info("checkpoint %s: %d tensors of heads the base model does not use are ignored (%s)",
                 name, len(unexpected), _short_list(unexpected, 4))
    return model


def non_finite_tensors(model) -> list[str]:
    """Names of the parameters and buffers of ``model`` that hold NaN or inf (parametrized weights by the names of
    their stored parts, e.g. ``encoder.pos_conv_embed.conv.parametrizations.weight.original1``)."""
    import torch

    tensors = list(model.named_parameters()) + list(model.named_buffers())
    return [key for key, value in tensors if value.is_floating_point() and not bool(torch.isfinite(value).all())]


def check_finite(model, name: str, dtype: str = "float32") -> None:
    """Raise :class:`ModelLoadError` naming every tensor of ``model`` that holds NaN or inf. ``dtype`` is the
    precision the model is in: for a half type the cause may be the cast (a value beyond its range), and the
    message says so and names the dtypes that hold it; in float32 the checkpoint itself is damaged."""
    bad = non_finite_tensors(model)
    if not bad:
        return
    where = f"{len(bad)} tensor(s) of checkpoint {name!r} hold NaN or inf values in {dtype}: {_short_list(bad)}"
    if dtype == "float32":
        raise ModelLoadError(f"{where}. The checkpoint itself is damaged (its stored values are not finite): "
                             "re-download or re-save it; no compute dtype can repair it.")
    others = " or ".join(d for d in DTYPES if d != dtype and d != "float16")
    raise ModelLoadError(f"{where}, after the cast from float32 (where they are finite): values beyond the range "
                         f"of {dtype}. Extract with dtype {others} instead.")
