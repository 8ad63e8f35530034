"""What defines a comparison: one frozen options object, validated once (messages name parameters, not flags).

The CLI maps flags to these fields one to one (``--num_files`` → ``num_files``); ``compare.run`` trusts them. What
depends on the folders' contents (layers a folder has, frame counts, units) is checked while reading them. No heavy
imports.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path

from layerwise.errors import CompareError

DEFAULT_NUM_FILES = 0  # all utterances present in every folder: CKA is biased upwards on few frames
DEFAULT_OUTPUT_DIR = "output/comparison"
MIN_FOLDERS = 2  # a comparison is between two or more folders


MAX_LABEL_CHARS = 60  # a legend name: it heads axes and legends, whose figure widths follow the longest text


@dataclass(frozen=True)
class CompareOptions:
    """Every setting of a comparison.

    features_dirs : two or more folders of ``*_features.npz`` (stored as a tuple of Paths). output_dir : where
    figures, summaries and the report go. num_files : the first N utterances present in every folder, in name
    order (0 = all). layers : layer spec applied to every folder (``layout.parse_layer_spec``: ``"0,6,12"``,
    ``"0-12"``, keys; None or ``"all"`` = all). labels : one display name per folder (None: each folder's
    ``layout.run_label`` from its metadata). command : the command line, for the run card (None: this process's).
    Raises :class:`~layerwise.errors.CompareError` (a usage error, exit 2) naming the parameter.
    """

    features_dirs: tuple[Path, ...]
    output_dir: str | Path = DEFAULT_OUTPUT_DIR
    num_files: int = DEFAULT_NUM_FILES
    layers: str | None = None
    labels: tuple[str, ...] | None = None
    command: str | None = None

    def __post_init__(self):
        if isinstance(self.features_dirs, (str, Path)):
            raise CompareError(f"features_dirs={str(self.features_dirs)!r} is one folder; give a list of "
                               f"{MIN_FOLDERS} or more")
        object.__setattr__(self, "features_dirs", tuple(Path(d) for d in self.features_dirs))
        if self.labels is not None:
            object.__setattr__(self, "labels", tuple(str(label) for label in self.labels))
        if self.layers is not None and self.layers.strip().lower() == "all":
            object.__setattr__(self, "layers", None)
        if len(self.features_dirs) < MIN_FOLDERS:
            raise CompareError(f"features_dirs: {len(self.features_dirs)} folder given; compare needs "
                               f"{MIN_FOLDERS} or more")
        if self.num_files < 0:
            raise CompareError(f"num_files={self.num_files} must be >= 0 (0 = all common utterances)")
        if self.labels is not None and len(self.labels) != len(self.features_dirs):
            raise CompareError(f"labels: {len(self.labels)} names for {len(self.features_dirs)} folders; give one "
                               f"per folder")
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            raise CompareError(f"labels {list(self.labels)} repeat a name; give each folder its own")
        for label in self.labels or ():
            control = [c for c in label if unicodedata.category(c) == "Cc"]  # \n, \r, \t, escape codes
            if not label.strip() or control or len(label) > MAX_LABEL_CHARS:
                shown = label[:MAX_LABEL_CHARS] + ("…" if len(label) > MAX_LABEL_CHARS else "")
                raise CompareError(f"labels: {shown!r} is not a legend name: give 1 to {MAX_LABEL_CHARS} printable "
                                   f"characters per folder (it names the folder in every figure, summary.csv row "
                                   f"and table)")
