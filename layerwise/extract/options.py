"""What an extraction run is: one frozen, validated options object (whisper's ``DecodingOptions`` is the model).

:class:`ExtractionOptions` holds every setting of a run; its constructor validates them once, with messages that
name the parameter (the CLI's flags have the same names). :meth:`ExtractionOptions.identity` is the single
definition of "the same run": resume, the analysis' consistency check and the random-init control check all
compare it (keys: :data:`layerwise.contract.store.IDENTITY_KEYS`). Some of it is only known from the checkpoint (the
resolved revision, the normalisation actually applied, the layer keys, the sample rate), so it takes the
config-only :class:`~layerwise.model.adapter.ModelInfo`, which needs no weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from layerwise.contract import layout, store
from layerwise.contract.alignments import (
    ALIGNMENT_FORMATS,  # auto = by file extension
    DEFAULT_SILENCE_LABELS,
)
from layerwise.errors import UsageError
from layerwise.extract.spans import FRAME_RULES, POOLINGS
from layerwise.extract.spans import (
    OUT_OF_RANGE_POLICIES as OUT_OF_RANGE,  # a segment beyond the audio: fail the file, or drop it
)
from layerwise.model.checkpoint import DEFAULT_MODEL, DTYPES, NORMALIZE_MODES, REP_TYPES

DEVICES = ("auto", "cpu", "cuda")


def _choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise UsageError(f"{name}={value!r} not in {'|'.join(map(str, allowed))}")


@dataclass(frozen=True)
class SpanOptions:
    """How phone/word spans are built from alignments (docs/spans.md). Ignored for the frame span."""

    alignment_dir: Path | None = None
    alignment_format: str = "auto"
    phone_tier: str = "phones"
    word_tier: str = "words"
    silence_labels: tuple[str, ...] = tuple(sorted(DEFAULT_SILENCE_LABELS))
    keep_stress: bool = False
    frame_rule: str = FRAME_RULES[0]
    pooling: str = POOLINGS[0]
    out_of_range: str = OUT_OF_RANGE[0]

    def __post_init__(self):
        _choice("alignment_format", self.alignment_format, ALIGNMENT_FORMATS)
        _choice("frame_rule", self.frame_rule, FRAME_RULES)
        _choice("pooling", self.pooling, POOLINGS)
        _choice("out_of_range", self.out_of_range, OUT_OF_RANGE)
        labels = tuple(sorted({s.strip().lower() for s in self.silence_labels} | {""}))
        object.__setattr__(self, "silence_labels", labels)
        if self.alignment_dir is not None:
            object.__setattr__(self, "alignment_dir", Path(self.alignment_dir).expanduser().resolve())

    def to_meta(self) -> dict:
        """JSON form, as stored (paths as strings)."""
        return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
                for k, v in asdict(self).items()}


@dataclass(frozen=True)
class ExtractionOptions:
    """Every setting of one extraction run. Validated on construction (:class:`~layerwise.errors.UsageError`).

    model_name : hub id or local ``save_pretrained`` folder; revision : hub branch/tag/commit (None = main).
    rep_type : ``contextualized`` (hidden states) or ``local`` (CNN block outputs).
    layers : layer spec (indices, ranges ``0-12``, keys; ``"all"``), resolved against the model by
        :meth:`layer_keys`. span : ``frame`` or pooled ``phone``/``word`` segments (needs ``spans.alignment_dir``).
    normalize : waveform normalisation mode; dtype : compute precision; save_dtype : stored precision.
    random_init, seed : the random-initialisation control and its seed. fbank : also store log-mel frames.
    dataset_split, data_sample : name the output folder; with ``num_utterances`` sample set ``data_sample`` is a
        seeded random subset of that many utterances (disjoint across sample ids while the folder allows).
    device : where to compute (not part of the identity: float32 results agree across devices to rounding).
    """

    model_name: str = DEFAULT_MODEL
    revision: str | None = None
    rep_type: str = layout.DEFAULT_REP_TYPE
    layers: str = "all"
    span: str = layout.FRAME_SPAN
    spans: SpanOptions = field(default_factory=SpanOptions)
    normalize: str = "auto"
    dtype: str = "float32"
    save_dtype: str = "float32"
    random_init: bool = False
    seed: int = 0
    fbank: bool = False
    dataset_split: str = "dev-clean"
    data_sample: str = "1"
    num_utterances: int | None = None
    device: str = "auto"

    def __post_init__(self):
        if not str(self.model_name).strip():
            raise UsageError("--model_name is empty")
        _choice("rep_type", self.rep_type, REP_TYPES)
        _choice("span", self.span, layout.SPANS)
        _choice("normalize", self.normalize, NORMALIZE_MODES)
        _choice("dtype", self.dtype, DTYPES)
        _choice("save_dtype", self.save_dtype, tuple(store.SAVE_DTYPES))
        _choice("device", self.device, DEVICES)
        object.__setattr__(self, "data_sample", str(self.data_sample))
        object.__setattr__(self, "layers", str(self.layers).strip() or "all")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise UsageError(f"seed={self.seed!r} must be an integer in [0, 2**63)")
        if self.num_utterances is not None and self.num_utterances < 1:
            raise UsageError(f"num_utterances={self.num_utterances} must be >= 1")
        if self.span != layout.FRAME_SPAN:
            if self.spans.alignment_dir is None:
                raise UsageError(f"span={self.span!r} needs --alignment_dir (a folder of alignments; docs/spans.md)")
            if not self.spans.alignment_dir.is_dir():
                raise UsageError(f"--alignment_dir {self.spans.alignment_dir} does not exist or is not a folder")
        for part in (self.dataset_split, self.data_sample):
            if "/" in part or part in ("", ".", ".."):
                raise UsageError(f"--dataset_split/--data_sample {part!r} must be a plain folder-name part")

    def output_dir(self, save_dir: str | Path) -> Path:
        """The folder this run writes (rule in :func:`layerwise.contract.store.output_folder`)."""
        return layout.output_folder(save_dir, self.model_name, self.dataset_split, self.data_sample,
                                   rep_type=self.rep_type, span=self.span, random_init=self.random_init)

    def layer_keys(self, info) -> list[str]:
        """The stored keys this run writes for a checkpoint described by ``info`` (a ModelInfo)."""
        return layout.parse_layer_spec(self.layers, info.keys(self.rep_type))

    def identity(self, info) -> dict:
        """Every setting that changes the stored numbers, with what the checkpoint resolves (``info``: ModelInfo).

        Keys exactly :data:`layerwise.contract.store.IDENTITY_KEYS`; written flat into each file's ``meta``.
        """
        identity = {
            "model_name": self.model_name, "model_revision": info.revision, "rep_type": self.rep_type,
            "span": self.span, "span_options": self.spans.to_meta() if self.span != layout.FRAME_SPAN else None,
            "layers": self.layer_keys(info), "normalize": bool(info.normalize), "compute_dtype": self.dtype,
            "save_dtype": self.save_dtype, "random_init": self.random_init,
            "seed": self.seed if self.random_init else None, "sample_rate": int(info.sample_rate),
            "fbank": self.fbank,
        }
        assert tuple(identity) == layout.IDENTITY_KEYS, "identity keys drifted from layout.IDENTITY_KEYS"
        return identity

    def to_meta(self) -> dict:
        """All options as given (JSON form), for the manifest and each file's ``meta["options"]``."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["spans"] = self.spans.to_meta()
        return out
