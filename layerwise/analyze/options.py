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

DEFAULT_NUM_FILES = 3
DEFAULT_MAX_POINTS = 500  # t-SNE of 13 layers × 500 points: about 11 s on 2 busy cores (openTSNE, one thread)
SIMILARITY_CHOICES = ("cka", "cosine", "both")
COLOR_BY_CHOICES = ("auto", *_COLOURS)  # auto: label for span folders, else utterance
PRECISIONS = ("float32", "float64")  # products of the streaming pass (stats.LayerStats)
# choices: measures.span.CCA_PROTOCOLS / MI_PROTOCOLS, checked here once (the measures trust them)
DEFAULT_CCA_PROTOCOL, DEFAULT_MI_PROTOCOL = "centred", "project"


def _choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise UsageError(f"{name}={value!r} not in {'|'.join(map(str, allowed))}")


@dataclass(frozen=True)
class AnalysisOptions:
    """Every setting of an analysis run.

    features_dir : folder of ``*_features.npz``; output_dir : where figures, summaries and report go.
    num_files : first N files in file-name order (0 = all). layers : layer spec (``layout.parse_layer_spec``: indices,
    ranges 0-12, keys; None = all). seed : frame subsample, t-SNE, splits. max_points : sampled points for the
    scatters. similarity : heatmaps drawn. cka_vmin : lower end of the CKA colour scale (None: from the data).
    color_by : scatter colours. control_dir, probe_splits, cca_protocol, mi_protocol : span/property measures.
    subset_id, num_subsets : this process analyses one shard and writes partial statistics (num_subsets > 1);
    merge : combine the partials of ``output_dir`` instead of reading features. file_list : a text file naming the
    feature files to analyse, one path per line (the wrapper passes the files its extraction completed); None = the
    folder's files. precision : streaming products.
    command : the command line, for the run card.
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
    command: str | None = None

    def __post_init__(self):
        from layerwise.stats.sample import MIN_TSNE_POINTS

        if self.num_files < 0:
            raise UsageError(f"num_files={self.num_files} must be >= 0 (0 = all files)")
        if self.max_points < MIN_TSNE_POINTS:
            raise UsageError(f"max_points={self.max_points} must be >= {MIN_TSNE_POINTS} (t-SNE needs that many)")
        if self.probe_splits < 1:
            raise UsageError(f"probe_splits={self.probe_splits} must be >= 1")
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

    @property
    def sharded(self) -> bool:
        return self.num_subsets > 1


