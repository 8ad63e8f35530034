"""What defines an analysis run: one frozen options object, validated once (messages name parameters, not flags).

The CLI maps flags to these fields one to one (``--max_points`` → ``max_points``) and prints a
:class:`~layerwise.errors.UsageError` with exit status 2. No heavy imports.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from layerwise.analyze.control import CONTROL_AUTO, DEFAULT_PROBE_SPLITS
from layerwise.contract.names import COLOR_BY_CHOICES as _COLOURS
from layerwise.errors import UsageError
from layerwise.measures.resample import DEFAULT_N_BOOT

DEFAULT_NUM_FILES = 3
DEFAULT_MAX_POINTS = 500  # t-SNE of 13 layers × 500 points: about 7 s on 2 cores (one thread per layer, 2 at once)
SIMILARITY_CHOICES = ("cka", "cosine", "both")
COLOR_BY_CHOICES = ("auto", *_COLOURS)  # auto: label for span folders, else utterance
PRECISIONS = ("float32", "float64")  # products of the streaming pass (stats.LayerStats)
# choices: measures.span.CCA_PROTOCOLS / MI_PROTOCOLS, checked here once (the measures trust them)
DEFAULT_CCA_PROTOCOL, DEFAULT_MI_PROTOCOL = "centred", "project"
# ABX (analyze/abx.py): distance choices measures.abx.DISTANCES (checked here once); ZeroSpeech 2021's subsampling
# (fastabx zerospeech_abx defaults): at most 10 items of A, B and X per cell, at most 5 X speakers per (A, B) group
DEFAULT_ABX_DISTANCE, DEFAULT_ABX_MAX_SIZE_GROUP, DEFAULT_ABX_MAX_X_ACROSS = "angular", 10, 5
# PNMI (analyze/pnmi.py): K of the HuBERT paper's Table IV; 10,000 fit frames = 200 s of speech at 50 Hz, ~3 MB per
# 768-dim layer in float32 (k-means of K=100 on them: ~24 s per layer on 2 busy cores, measures/pnmi.py)
DEFAULT_PNMI_CLUSTERS, DEFAULT_PNMI_FIT_FRAMES = "100", 10_000
# --n_boot: below FEW_N_BOOT the 2.5/97.5 % percentiles rest on one or two replicates each (a note suggests >= 200);
# above MAX_N_BOOT a typo (the interval's Monte-Carlo error at 10^5 replicates is far below its sampling spread,
# and every measure repeats its resampling that often: minutes per layer)
FEW_N_BOOT, MAX_N_BOOT = 50, 100_000


def _choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise UsageError(f"{name}={value!r} not in {'|'.join(map(str, allowed))}")


@dataclass(frozen=True)
class AnalysisOptions:
    """Every setting of an analysis run.

    features_dir : folder of ``*_features.npz``; output_dir : where figures, summaries and report go.
    num_files : first N files in file-name order (0 = all). layers : layer spec (``layout.parse_layer_spec``: indices,
    ranges 0-12, keys; None = all). seed : frame subsample, t-SNE, splits. max_points : sampled points for the
    scatters. similarity : heatmaps drawn. cka_vmin : lower end of the CKA colour scale (None: the fixed 0–1 scale).
    color_by : scatter colours. control_dir, probe_splits, cca_protocol, mi_protocol : span/property measures.
    subset_id, num_subsets : this process analyses one shard and writes partial statistics (num_subsets > 1);
    merge : combine the partials of ``output_dir`` instead of reading features. file_list : a text file naming the
    feature files to analyse, one path per line (the wrapper passes the files its extraction completed); None = the
    folder's files. precision : streaming products.
    abx_item : a ZeroSpeech item file whose ``#file`` names feature-file stems; or alignment_dir (with
    alignment_format, phone_tier, silence_labels as the extraction spells them; silence_labels None = the
    extraction's default) to build triphone items from phone alignments; neither = no ABX. abx_distance,
    abx_max_size_group, abx_max_x_across : the ABX distance and ZeroSpeech subsampling (0 disables a limit).
    n_boot : bootstrap replicates of every 95 % interval (``measures.resample``; 0 = no intervals).
    pnmi_clusters : K of the PNMI k-means, "100" or a comma list "100,500" (normalised to a tuple of ints; with
    alignment_dir on frame folders); pnmi_fit_frames : frames the k-means is fitted on (``analyze.pnmi``).
    word_embeddings : a GloVe / word2vec file for ``cca_word_embedding`` (word-span folders). speakers_file : a
    LibriSpeech SPEAKERS.TXT for ``gender_probe_accuracy`` (None: looked for next to the audio, ``contract.speakers``).
    command : the command line, for the run card. given : the parameters the caller set explicitly (the CLI: the
    flags typed, whatever their values; names that are not fields, such as ``verbose``, are ignored): a merge refuses
    those it takes from the partials when their values differ (``analyze.shards.check_given``); empty (a library
    call) = none, the partials' settings are taken.
    """

    features_dir: str | Path
    output_dir: str | Path
    num_files: int = DEFAULT_NUM_FILES
    layers: str | None = None
    seed: int = 0
    max_points: int = DEFAULT_MAX_POINTS
    similarity: str = "both"
    cka_vmin: float | None = None
    color_by: str = "auto"
    control_dir: str | Path | None = CONTROL_AUTO
    probe_splits: int = DEFAULT_PROBE_SPLITS
    cca_protocol: str = DEFAULT_CCA_PROTOCOL
    mi_protocol: str = DEFAULT_MI_PROTOCOL
    subset_id: int = 0
    num_subsets: int = 1
    merge: bool = False
    file_list: str | Path | None = None
    precision: str = "float32"
    abx_item: str | Path | None = None
    alignment_dir: str | Path | None = None
    alignment_format: str = "auto"
    phone_tier: str = "phones"
    silence_labels: tuple[str, ...] | None = None
    abx_distance: str = DEFAULT_ABX_DISTANCE
    abx_max_size_group: int = DEFAULT_ABX_MAX_SIZE_GROUP
    abx_max_x_across: int = DEFAULT_ABX_MAX_X_ACROSS
    n_boot: int = DEFAULT_N_BOOT
    pnmi_clusters: str | tuple[int, ...] = DEFAULT_PNMI_CLUSTERS
    pnmi_fit_frames: int = DEFAULT_PNMI_FIT_FRAMES
    word_embeddings: str | Path | None = None
    speakers_file: str | Path | None = None
    command: str | None = None
    given: frozenset[str] = frozenset()

    def __post_init__(self):
        from layerwise.stats.sample import MIN_TSNE_POINTS

        if isinstance(self.given, str):
            raise UsageError(f"given={self.given!r} must be a collection of parameter names, e.g. {{'seed'}}")
        object.__setattr__(self, "given", frozenset(self.given))

        if self.num_files < 0:
            raise UsageError(f"num_files={self.num_files} must be >= 0 (0 = all files)")
        if self.max_points < MIN_TSNE_POINTS:
            raise UsageError(f"max_points={self.max_points} must be >= {MIN_TSNE_POINTS} (t-SNE needs that many)")
        if self.probe_splits < 1:
            raise UsageError(f"probe_splits={self.probe_splits} must be >= 1")
        if isinstance(self.n_boot, bool) or not isinstance(self.n_boot, int) or self.n_boot == 1 or self.n_boot < 0 \
                or self.n_boot > MAX_N_BOOT:
            raise UsageError(f"n_boot={self.n_boot!r} must be 0 (no intervals) or an int from 2 to {MAX_N_BOOT} "
                             f"(bootstrap replicates of the 95 % intervals; default {DEFAULT_N_BOOT})")
        _choice("similarity", self.similarity, SIMILARITY_CHOICES)
        _choice("color_by", self.color_by, COLOR_BY_CHOICES)
        _choice("precision", self.precision, PRECISIONS)
        if self.cka_vmin is not None and not -1.0 <= self.cka_vmin < 1.0:
            raise UsageError(f"cka_vmin={self.cka_vmin} not in [-1, 1) (CKA lies in [0, 1])")
        if self.num_subsets < 1 or not 0 <= self.subset_id < self.num_subsets:
            raise UsageError(f"subset_id={self.subset_id} not in [0, {self.num_subsets - 1}] "
                             f"(num_subsets={self.num_subsets})")
        if self.merge and self.num_subsets > 1:
            raise UsageError("merge combines the partials of every shard; give it without subset_id/num_subsets")
        if (self.cca_protocol, self.mi_protocol) != (DEFAULT_CCA_PROTOCOL, DEFAULT_MI_PROTOCOL):
            from layerwise.measures.span import CCA_PROTOCOLS, MI_PROTOCOLS  # scipy: only when a protocol is chosen

            _choice("cca_protocol", self.cca_protocol, CCA_PROTOCOLS)
            _choice("mi_protocol", self.mi_protocol, MI_PROTOCOLS)
        self._check_abx()
        self._check_issue20()

    def _check_abx(self) -> None:
        """The ABX settings: one item source, files and folders that exist, limits 0 (off) or >= 2."""
        from layerwise.contract.alignments import ALIGNMENT_FORMATS

        if self.abx and self.sharded:
            raise UsageError("ABX is computed when the shards are merged: give abx_item/alignment_dir with merge, "
                             "not to the shard runs (subset_id/num_subsets)")
        if self.abx_item is not None and self.alignment_dir is not None:
            raise UsageError(f"abx_item={self.abx_item} and alignment_dir={self.alignment_dir}: give one item source "
                             f"(an item file, or the alignments to build triphone items from)")
        if self.abx_item is not None and not Path(self.abx_item).is_file():
            raise UsageError(f"abx_item={self.abx_item} is not a file (a ZeroSpeech item file: #file onset offset "
                             f"#phone prev-phone next-phone speaker)")
        if self.alignment_dir is not None and not Path(self.alignment_dir).is_dir():
            raise UsageError(f"alignment_dir={self.alignment_dir} is not a folder of alignments")
        _choice("alignment_format", self.alignment_format, ALIGNMENT_FORMATS)
        if self.abx or self.abx_distance != DEFAULT_ABX_DISTANCE:
            from layerwise.measures.abx import DISTANCES  # numba: only when ABX is asked for

            _choice("abx_distance", self.abx_distance, DISTANCES)
        for name in ("abx_max_size_group", "abx_max_x_across"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value == 1 or value < 0:
                raise UsageError(f"{name}={value!r} must be 0 (no limit) or an int >= 2")
        if self.silence_labels is not None:  # as the extraction normalises them: lower case, "" always silence
            labels = tuple(sorted({str(s).strip().lower() for s in self.silence_labels} | {""}))
            object.__setattr__(self, "silence_labels", labels)

    def _check_issue20(self) -> None:
        """PNMI's K list (ints >= 2, normalised to a tuple) and fit frames; the embedding and speakers files exist."""
        parts = (self.pnmi_clusters.split(",") if isinstance(self.pnmi_clusters, str)
                 else list(self.pnmi_clusters))
        try:
            ks = tuple(int(str(k).strip()) for k in parts)
        except ValueError:
            ks = ()
        if not ks or min(ks) < 2 or len(set(ks)) != len(ks):
            raise UsageError(f"pnmi_clusters={self.pnmi_clusters!r} must be distinct ints >= 2, comma-separated "
                             f"(e.g. 100,500)")
        object.__setattr__(self, "pnmi_clusters", ks)
        if isinstance(self.pnmi_fit_frames, bool) or not isinstance(self.pnmi_fit_frames, int) \
                or self.pnmi_fit_frames < max(ks):
            raise UsageError(f"pnmi_fit_frames={self.pnmi_fit_frames!r} must be an int >= the largest of "
                             f"pnmi_clusters ({max(ks)})")
        for name in ("word_embeddings", "speakers_file"):
            value = getattr(self, name)
            if value is not None and not Path(value).is_file():
                raise UsageError(f"{name}={value} is not a file")

    @property
    def abx(self) -> bool:
        """Whether this run computes ABX error rates (an item file or alignments were given)."""
        return self.abx_item is not None or self.alignment_dir is not None

    @property
    def sharded(self) -> bool:
        return self.num_subsets > 1


