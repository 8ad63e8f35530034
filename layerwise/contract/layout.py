"""The names other tools rely on, each defined once: layer keys, output folders, the run identity, measure keys.

- Layer keys: ``layer_k`` (hidden states) and ``conv_k`` (CNN blocks); how a layer spec (``0,6,12``, ``0-12``,
  ``layer_3``) selects them; the frame grid each key sits on.
- Spans: :data:`SPANS` (what one row of a feature file is), :data:`FRAME_SPAN` the default.
- Output folders: :func:`output_folder`, the control's sibling :func:`control_folder_of`, the display name of a
  run :func:`run_label`.
- The identity of an extraction run: :data:`IDENTITY_KEYS` (built by ``options.ExtractionOptions.identity``),
  compared by :func:`check_same_extraction` (resume, the analysis, shards, the comparison, the control check) with
  :data:`CONTROL_DIFFERS`, the one rule for what a random-initialisation control may change.
- Shards: :func:`shard_indices` (item i of the sorted list to shard i mod N) and :func:`shard_suffix`.
- Per-layer measure keys of ``summary.json``: :data:`MEASURES` (key, legend label, table description, group,
  chance level).
Figure file names live in the figure registry (``figures.FIGURES``); the file format itself in ``store``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from layerwise.errors import UsageError

# rep_type -> key prefix; a key is f"{prefix}_{index}".
KEY_PREFIX = {"contextualized": "layer", "local": "conv"}
_KEY_RE = re.compile(r"^(layer|conv)_(\d+)$")
FRAME_SPAN = "frame"  # one row per model frame; the other spans pool frames into phone or word segments
SPANS = (FRAME_SPAN, "phone", "word")
DEFAULT_REP_TYPE, DEFAULT_SPAN = "contextualized", FRAME_SPAN
RANDOM_INIT_SUFFIX = "-random_init"  # keeps the control's features away from the trained model's

# The identity of a run: every setting that changes the stored numbers. Written flat into each file's ``meta`` and
# the manifest's ``run``; resume, the analysis' consistency check, shards, the comparison and the random-init control
# check compare these keys and nothing else (``options.ExtractionOptions.identity`` builds them).
IDENTITY_KEYS = (
    "model_name", "model_revision", "rep_type", "span", "span_options", "layers", "normalize", "compute_dtype",
    "save_dtype", "random_init", "seed", "sample_rate", "fbank",
)
# The control rule: what may differ between a model's folder and its random-initialisation control; every other
# identity key must agree, and a control file must not say ``random_init: false``.
CONTROL_DIFFERS = ("model_revision", "random_init", "seed")


def identity_of(meta: dict) -> dict:
    """The identity part of a file's (or manifest's) metadata; keys it lacks are ``None``."""
    return {key: meta.get(key) for key in IDENTITY_KEYS}


def identity_diff(a: dict, b: dict, *, ignore: tuple[str, ...] = ()) -> list[str]:
    """Identity keys on which metadata ``a`` and ``b`` differ, e.g. ``["normalize"]`` (``ignore`` left out)."""
    ia, ib = identity_of(a), identity_of(b)
    return [key for key in IDENTITY_KEYS if key not in ignore and ia[key] != ib[key]]


def describe_diff(a: dict, b: dict, keys: list[str]) -> str:
    """``"normalize: True vs False, layers: [...] vs [...]"`` for messages."""
    return ", ".join(f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in keys)


def identity_difference(meta: dict, reference: dict, *, may_differ: tuple[str, ...] = ()) -> str:
    """How the extraction identity of ``meta`` differs from ``reference``'s, keys of ``may_differ`` left out:
    ``"normalize: True vs False"`` (``meta``'s value first); ``""`` when they are the same extraction."""
    return describe_diff(meta, reference, identity_diff(meta, reference, ignore=may_differ))


def check_same_extraction(meta: dict, reference: dict, *, subject: str, reference_name: str, advice: str = "",
                          may_differ: tuple[str, ...] = (), error: type[Exception] = UsageError) -> None:
    """Refuse metadata of another extraction: raises ``error`` with ``"{subject} was made with other settings than
    {reference_name}: {differences}{advice}"`` when :func:`identity_difference` is not empty.

    meta, reference : the two metadata dicts (a file's ``meta``, a manifest's ``run``, a shard's header).
    may_differ : identity keys left out (:data:`CONTROL_DIFFERS` for a random-init control).
    """
    differences = identity_difference(meta, reference, may_differ=may_differ)
    if differences:
        raise error(f"{subject} was made with other settings than {reference_name}: {differences}{advice}")


def shard_indices(count: int, subset_id: int, num_subsets: int, *, unit: int = 1) -> list[int]:
    """Positions ``0 … count − 1`` of a sorted list that shard ``subset_id`` of ``num_subsets`` takes: block
    ``i // unit`` goes to shard ``block mod num_subsets`` (``unit=1``: item i to shard i mod N), so the shards are
    disjoint and together take every item. The arguments are validated by the options that carry them."""
    return [i for i in range(count) if (i // unit) % num_subsets == subset_id]


def shard_suffix(subset_id: int, num_subsets: int) -> str:
    """The part of a shard's own file names (manifest, failures): ``""`` unsharded, else ``.shard-K-of-N``."""
    return "" if num_subsets == 1 else f".shard-{subset_id}-of-{num_subsets}"


_CHECKPOINT_DIR = re.compile(r"^(checkpoint|ckpt|step)[-_]?\d+$")  # a training run's checkpoint folders


def model_tag(model_name: str) -> str:
    """Last path component of a hub id or folder: ``facebook/hubert-base-ls960 -> hubert-base-ls960``; a training
    run's checkpoint folder keeps its run's name, so checkpoints of two runs never share a tag:
    ``runA/checkpoint-1000 -> runA-checkpoint-1000``."""
    path = Path(str(model_name).rstrip("/"))
    if _CHECKPOINT_DIR.match(path.name) and path.parent.name not in ("", ".", ".."):
        return f"{path.parent.name}-{path.name}"
    return path.name


def _variant(rep_type: str | None, span: str | None) -> list[str]:
    """The parts that tell a run from the default one (contextualized, frame): ``["local", "phone"]``."""
    return [part for part, default in ((rep_type, DEFAULT_REP_TYPE), (span, DEFAULT_SPAN))
            if part is not None and part != default]


def run_label(tag: str, *, rep_type: str | None = None, span: str | None = None, random_init: bool = False) -> str:
    """A run's display name, built like its output folder: ``hubert-base-ls960``, ``…-random_init`` for the
    control, then ``-local``, ``-phone`` … for other rep types and spans. tag : :func:`model_tag` (or a folder name
    when the model is not recorded)."""
    return "-".join([tag + (RANDOM_INIT_SUFFIX if random_init else ""), *_variant(rep_type, span)])


def output_folder(save_dir, model_name: str, dataset_split: str, data_sample, *, rep_type: str = DEFAULT_REP_TYPE,
                  span: str = DEFAULT_SPAN, random_init: bool = False) -> Path:
    """Where an extraction writes. The default run (contextualized, frame) keeps the original folder
    ``{save_dir}/{model_tag}/librispeech_{dataset_split}_sample{data_sample}``; every other rep type and span gets
    its own by suffix (``..._sample1_local``, ``..._sample1_phone``, ``..._sample1_local_word``), and the
    random-initialisation control its own model folder (``{model_tag}-random_init``), so runs never collide."""
    tag = model_tag(model_name) + (RANDOM_INIT_SUFFIX if random_init else "")
    suffix = "".join(f"_{part}" for part in _variant(rep_type, span))
    return Path(save_dir) / tag / f"librispeech_{dataset_split}_sample{data_sample}{suffix}"


def control_folder_of(features_dir) -> Path:
    """The random-init control's folder of an extraction folder, as :func:`output_folder` names it:
    ``{parent}-random_init/{name}`` (``output/hubert/split -> output/hubert-random_init/split``; resolved)."""
    features = Path(features_dir).resolve()
    return features.parent.with_name(features.parent.name + RANDOM_INIT_SUFFIX) / features.name


def layer_grid(meta: dict, key: str):
    """The frame grid (:class:`~layerwise.contract.grid.Grid`, in samples) of the array ``key`` of a file with ``meta``:
    ``layer_k`` → the whole conv stack's; ``conv_k`` → blocks 0..k. From ``model_config.conv_kernel/conv_stride``
    (files of older versions: ``hop_samples``/``receptive_field_samples`` for ``layer_k``). None when unknown."""
    from layerwise.contract.grid import Grid, conv_grid, layer_blocks

    parsed = parse_layer_key(key)
    config = meta.get("model_config") or {}
    kernels, strides = config.get("conv_kernel"), config.get("conv_stride")
    if parsed is None:
        return None
    if kernels and strides:
        depth = layer_blocks(*parsed, len(kernels))
        return conv_grid(kernels[:depth], strides[:depth])
    if parsed[0] == "layer" and meta.get("hop_samples") and meta.get("receptive_field_samples"):
        return Grid(int(meta["hop_samples"]), int(meta["receptive_field_samples"]))
    return None


def parse_layer_spec(spec: str | None, available: list[str]) -> list[str]:
    """Layer keys selected by ``spec``, in numeric order, from the keys a model or a folder ``available`` has.

    ``None``/``"all"`` → all; comma-separated items, each an index (``6``), an inclusive range (``0-12``) or a key
    (``layer_3``, ``conv_0``). Indices and ranges index the one kind of key present (``layer`` or ``conv``).
    Raises :class:`~layerwise.errors.UsageError` naming ``layers`` and the valid range.
    """
    if spec is None or spec.strip().lower() in ("", "all"):
        return list(available)
    kinds = sorted({parse_layer_key(k)[0] for k in available})
    by_index = {parse_layer_key(k)[1]: k for k in available}
    last = max(by_index) if by_index else -1
    chosen: set[str] = set()
    for item in (part.strip() for part in spec.split(",")):
        if parse_layer_key(item) is not None:
            if item not in available:
                raise UsageError(f"layers: {item} is not available; choose from {available[0]} … {available[-1]}")
            chosen.add(item)
            continue
        bounds = item.split("-") if "-" in item[1:] else [item]
        if not all(b.strip().isdigit() for b in bounds) or len(bounds) > 2:
            raise UsageError(f"layers: {item!r} is not an index (6), a range (0-12) or a key (layer_3); "
                             f"e.g. layers=0,6,12")
        lo, hi = int(bounds[0]), int(bounds[-1])
        if len(kinds) != 1:
            raise UsageError(f"layers: index {item!r} is ambiguous with keys {available}; name the key")
        if lo > hi:
            raise UsageError(f"layers: range {item} runs backwards; write it low-high, e.g. {hi}-{lo}")
        if lo not in by_index or hi not in by_index:
            raise UsageError(f"layers: {item} not in [0, {last}] ({kinds[0]}_0 … {kinds[0]}_{last})")
        chosen.update(by_index[i] for i in range(lo, hi + 1) if i in by_index)
    return sort_layer_keys(chosen)


def layer_key(rep_type: str, index: int) -> str:
    """``layer_key("contextualized", 3) == "layer_3"``; ``layer_key("local", 0) == "conv_0"``."""
    return f"{KEY_PREFIX[rep_type]}_{index}"


def parse_layer_key(key: str) -> tuple[str, int] | None:
    """``"layer_10" -> ("layer", 10)``; ``None`` for keys that are not layer arrays (``meta``, ``labels``...)."""
    match = _KEY_RE.match(key)
    return (match.group(1), int(match.group(2))) if match else None


def sort_layer_keys(keys) -> list[str]:
    """Layer keys in numeric order (``layer_2`` before ``layer_10``), non-layer keys dropped."""
    parsed = [(parse_layer_key(k), k) for k in keys]
    return [k for p, k in sorted((p, k) for p, k in parsed if p is not None)]


@dataclass(frozen=True)
class Measure:
    """A per-layer measure of ``summary.json`` (``{measure: {layer: float | null}}``, the control's under
    ``random_init``): its key, the legend label, the table description, the group it is drawn with, its colour, and
    its chance level when it has a fixed one (ABX: 0.5), else None. twin_of : the published measure this one
    re-estimates (``pwcca_stable``: ``pwcca`` without the one-hot's null column; ``mi_adjusted``: ``mi`` corrected
    for chance), computed beside it whenever it is, never requested on its own."""

    key: str
    label: str
    description: str
    group: str  # "label" (phone/word spans), "acoustic", "speaker", "abx" (frame folders with phone items)
    colour: str
    chance: float | None = None
    twin_of: str | None = None


MEASURES = (
    Measure("probe_accuracy", "label probe accuracy",
            "held-out accuracy of a linear probe predicting each segment's label", "label", "tab:blue"),
    Measure("pwcca", "label PWCCA", "projection-weighted CCA between segment vectors and one-hot labels", "label",
            "tab:orange"),
    Measure("mi", "label MI", "mutual information between k-means clusters of the segments and their labels "
            "(normalised; MI / H(labels) with mi_protocol pasad)", "label", "tab:green"),
    Measure("pwcca_stable", "label PWCCA (stable)", "label PWCCA with one one-hot column dropped (the null direction "
            "of the centred one-hot, whose rounding-noise pair the published weighting counts; cca_protocol pasad)",
            "label", "tab:olive", twin_of="pwcca"),
    Measure("mi_adjusted", "label MI (adjusted)", "adjusted mutual information (scikit-learn, chance-corrected: 0 = "
            "unrelated) of the same clusters and labels as mi", "label", "tab:cyan", twin_of="mi"),
    Measure("cca_mel", "CCA with the log-mel filterbank", "CCA with the log-mel filterbank frames (time-matched)",
            "acoustic", "tab:brown"),
    Measure("cca_intra", "CCA with L0", "CCA with layer_0 (the transformer input)", "acoustic", "tab:gray"),
    Measure("speaker_probe_accuracy", "speaker probe accuracy",
            "held-out accuracy of a linear probe predicting the speaker from utterance means", "speaker",
            "tab:purple"),
    Measure("speaker_majority_baseline", "speaker majority baseline",
            "accuracy of always answering the most frequent speaker", "speaker", "tab:pink"),
    Measure("speaker_pwcca", "speaker PWCCA", "projection-weighted CCA between frames and one-hot speaker",
            "speaker", "tab:red"),
    Measure("speaker_pwcca_stable", "speaker PWCCA (stable)", "speaker PWCCA with one one-hot column dropped "
            "(cca_protocol pasad)", "speaker", "salmon", twin_of="speaker_pwcca"),
    # ABX error rates (ZeroSpeech; measures/abx.py): lower = better, 0.5 = chance (a random distance is right on half
    # of the (A, B, X) triples); colours of the Okabe-Ito palette (colour-blind safe)
    Measure("abx_within_speaker_triphone", "ABX triphone, within speaker",
            "ABX error rate of triphone items, A, B and X of one speaker (0.5 = chance, lower = better)", "abx",
            "#E69F00", chance=0.5),
    Measure("abx_across_speaker_triphone", "ABX triphone, across speakers",
            "ABX error rate of triphone items, X of another speaker than A and B (0.5 = chance, lower = better)",
            "abx", "#56B4E9", chance=0.5),
    Measure("abx_within_speaker_phoneme", "ABX phoneme, within speaker",
            "ABX error rate of phone items in any context, A, B and X of one speaker (0.5 = chance, lower = "
            "better)", "abx", "#009E73", chance=0.5),
    # issue 20 (analyze/standard.py): k-means units vs frame phone labels (HuBERT, Hsu et al. 2021), word embeddings,
    # gender; each group needs its own input (alignment_dir on frame folders, word_embeddings, a SPEAKERS.TXT)
    Measure("pnmi", "PNMI", "phone-normalised mutual information I(phone; cluster) / H(phone) of k-means units of "
            "the frames (first K of pnmi_clusters)", "units", "#0072B2"),
    Measure("phone_purity", "phone purity", "Σ_c p(c) max_phone p(phone | c): how pure each k-means cluster is",
            "units", "#CC79A7"),
    Measure("cluster_purity", "cluster purity", "Σ_phone p(phone) max_c p(c | phone): how concentrated each phone "
            "is in one cluster", "units", "#999999"),
    Measure("cca_word_embedding", "CCA with word embeddings", "PWCCA between word-segment vectors and the "
            "embeddings of their words (word_embeddings file)", "word_embedding", "tab:olive"),
    Measure("gender_probe_accuracy", "gender probe accuracy", "held-out accuracy of a linear probe predicting the "
            "speaker's sex (SPEAKERS.TXT) from utterance means, speakers disjoint", "gender", "tab:cyan"),
    Measure("gender_probe_majority_baseline", "gender majority baseline",
            "the most frequent sex's share of all analysed utterances (a constant answer from the class prior)", "gender", "tab:gray"),
    # a per-layer statistic of every run (LayerResult.effective_rank, beside pca_components_90), not a family's
    Measure("effective_rank", "effective rank", "exp of the Shannon entropy of the normalised eigenvalues of the "
            "layer's exact covariance (Roy & Vetterli 2007; RankMe, Garrido et al. 2023): between 1 and the "
            "dimension", "statistic", "#D55E00"),
)
MEASURE = {m.key: m for m in MEASURES}
TWIN_MEASURES = tuple(m.key for m in MEASURES if m.twin_of is not None)  # computed beside their published measure
_OWN = tuple(m for m in MEASURES if m.twin_of is None)
SPAN_MEASURES = tuple(m.key for m in _OWN if m.group == "label")  # need phone/word span folders
PROPERTY_MEASURES = tuple(m.key for m in _OWN if m.group in ("acoustic", "speaker"))  # need no alignment
SPEAKER_MEASURES = tuple(m.key for m in _OWN if m.group == "speaker")  # need >= 2 LibriSpeech speakers
ABX_MEASURES = tuple(m.key for m in MEASURES if m.group == "abx")  # frame folders with ABX items (analyze/abx.py)
MEASURE_GROUPS = tuple(dict.fromkeys(m.group for m in MEASURES))
