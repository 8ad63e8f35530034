"""An analysis shard fed by the extraction instead of read from feature files (``extract_features.py --no_store``).

The extraction hands each utterance's arrays, as :func:`layerwise.contract.store.encode_features` would store them
(rounded to the storage dtype, the metadata through JSON) and decoded by ``store.decode_features``, to
:meth:`PartialFeed.add`; the feed folds them into the same streaming state as ``analyze.stream.collect`` (exact
statistics, the seeded frame sample, span features, the alignment-free property collector) and, at the end of the
shard, writes the same partial as ``analyze.shards.write_partial`` (``{output_dir}/partials/partial_K_of_N.npz``,
plus ``no_store``, the run's ``identity`` and the ``failed`` stems in its header). ``visualize_features.py --merge
--output_dir {output_dir}`` merges them into summary, figures and report.

Equal to extract-then-analyse of the same files (every summary number to ~1e-9 relative in the tests; against one
process on larger folders, ~1e-8 of each quantity's largest value, as any merge of shards; the same sampled frames):
the extraction's shard takes the files in feature-file-name order in whole groups of ``stream.GROUP_FILES``,
group g to shard g mod N — the analysis shard rule — and the feed ends a float32 accumulation group exactly where
the analysis of the stored files would (``Collected.stats.end_group`` when a file of the next group arrives, and
at the end), so the float32 accumulators sum the same rows. When a file fails, later files of its shard keep their
positions in the selection while a stored folder would lack the failed file, so group boundaries (and the float32
rounding, ~1e-7 relative) can differ from an analysis of what was stored.

Resume is per shard: a shard whose partial exists, made by the same extraction with the same selection and no
failed file, is complete and skipped; any other shard (interrupted: no partial is written; failed files; other
settings) is redone whole. Never imports torch.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from layerwise.analyze import shards, stream
from layerwise.analyze.options import AnalysisOptions
from layerwise.contract import layout, store
from layerwise.errors import OwnFileError, UsageError

log = logging.getLogger(__name__)

# Header fields that say where the partial was written, not what it holds: a copied folder (cp -r) holds the same
# extraction, so a --no_store shard neither redoes nor refuses partials that differ only there.
NOT_IDENTITY = ("features_dir",)
# Header fields as the user sets them (messages name flags)
FLAG_OF = {"all_stems": "the file selection (--audio_dir, --num_utterances, --data_sample, --extensions)",
           "num_files": "--num_files", "features_dir": "the output folder"}


class PartialFeed:
    """The analysis side of one ``--no_store`` extraction shard.

    out_dir : the extraction's output folder (partials go to ``out_dir/partials``; ``--merge --output_dir out_dir``
    reads them). subset_id, num_subsets : the extraction's shard. The streaming settings are the analysis defaults
    (``AnalysisOptions``: seed, max_points, precision, every extracted layer; ``num_files`` 0 = all), recorded in
    the partial's header as an analysis shard records them; ``settings`` overrides them (AnalysisOptions fields,
    e.g. ``max_points=50`` in tests).
    """

    def __init__(self, out_dir: str | Path, subset_id: int = 0, num_subsets: int = 1, **settings):
        self.out_dir = Path(out_dir)
        self.options = AnalysisOptions(**{"features_dir": self.out_dir, "output_dir": self.out_dir, "num_files": 0,
                                          "subset_id": subset_id, "num_subsets": num_subsets, **settings})
        self.path = shards.partial_path(self.out_dir, subset_id, num_subsets)
        self.state: stream.Collected | None = None
        self._header: dict = {}
        self._place: dict[str, int] = {}
        self._group: int | None = None
        self._busy = 0.0  # seconds spent in the analysis (add, finish): the shard's "streaming_pass" wall entry
        self.complete = False  # set by begin: the shard's partial exists and is complete

    @property
    def group_files(self) -> int:
        """Files per analysis group: the extraction's shard takes whole groups of this many (``jobs.select``)."""
        return stream.GROUP_FILES

    def begin(self, all_stems: list[str], identity: dict, *, overwrite: bool = False) -> bool:
        """Start the shard: ``all_stems`` every shard's stems in feature-file-name order, ``identity`` the run's
        (``ExtractionOptions.identity``). Returns True when this shard's partial is already complete (same
        identity, selection and settings, no failed file) and ``overwrite`` is not set: nothing to compute."""
        self._header = shards.header_of(self.options, all_stems, no_store=True, identity=identity)
        self._place = {stem: n for n, stem in enumerate(all_stems)}
        self._check_neighbours()
        self.complete = not overwrite and self.path.is_file() and self._earlier_complete()
        return self.complete

    def _earlier_complete(self) -> bool:
        """Whether the partial already at :attr:`path` is this shard's, complete (same header, no failed file)."""
        try:
            arrays = store.read_own(self.path, what="partial statistics", rebuild="re-run this shard")
            earlier = json.loads(str(arrays["header"]))
        except (OwnFileError, KeyError, ValueError) as err:
            log.info("%s is unreadable (%s): this shard is redone", self.path, err)
            return False
        current = json.loads(json.dumps(self._header))  # as it reads back: tuples are lists
        same = all(earlier.get(k) == v for k, v in current.items() if k not in ("files", "empty", *NOT_IDENTITY))
        if same and not earlier.get("failed"):
            log.info("%s is complete (same extraction and files): nothing to do for this shard", self.path)
            return True
        log.info("%s is from another run or has failed files: this shard is redone", self.path)
        return False

    def _check_neighbours(self) -> None:
        """Refuse, before the model loads, a shard that could not be merged with the partials already in
        ``out_dir/partials`` (the other shards' of this sharding, or partials of another one): another sharding,
        stored-file partials, another selection or settings (``shards.SAME_SETTINGS``) or another extraction identity
        (``layout.check_same_extraction``). Raises :class:`~layerwise.errors.UsageError` naming the partial and
        the difference. Unreadable partials are left to the merge."""
        current = json.loads(json.dumps(self._header))
        for path in sorted(self.path.parent.glob("partial_*_of_*.npz")) if self.path.parent.is_dir() else ():
            if path == self.path:
                continue  # this shard's own: replaced (or found complete) by this run
            other = shards.read_header(path)
            if other is None:
                continue
            way_out = (f"; re-run with that run's settings, remove {self.path.parent}, or choose another "
                       f"--save_dir for this run")
            differ = [] if other.get("num_subsets") == current["num_subsets"] else ["--num_subsets"]
            if not other.get("no_store"):
                differ.append("it was written by visualize_features.py from stored files, not by --no_store")
            differ += [FLAG_OF.get(k, f"--{k}") for k in ("all_stems", *shards.SAME_SETTINGS)
                       if k not in NOT_IDENTITY and other.get(k) != current[k]]
            if differ:
                raise UsageError(f"--no_store: {path} was made with other settings than this shard "
                                 f"({', '.join(differ)}){way_out}")
            if other.get("identity"):
                layout.check_same_extraction(other["identity"], current["identity"], subject=str(path),
                                             reference_name="this --no_store shard", advice=way_out)

    def add(self, ff: store.FeatureFile) -> None:
        """Fold one utterance (as read back from its feature file) into the shard's state; a file of the next
        group of ``group_files`` ends the float32 group first. Raises what ``stream.check`` raises."""
        start = time.perf_counter()
        try:
            self._add(ff)
        finally:
            self._busy += time.perf_counter() - start

    def _add(self, ff: store.FeatureFile) -> None:
        if self.state is None:
            self.state = stream.start(ff, self.options.layers, seed=self.options.seed,
                                      max_points=self.options.max_points, precision=self.options.precision)
            self.state.properties = stream.property_collector(self.state, seed=self.options.seed)
        stream.check(ff, self.state)
        group = self._place[ff.stem] // self.group_files
        if self._group is not None and group != self._group:
            self.state.stats.end_group()
        self._group = group
        stream.add(self.state, ff)

    def finish(self, failed: list[str]) -> Path:
        """End the last group and write the partial atomically (``failed``: stems that failed — those of this
        selection are recorded, so a re-run redoes the shard); returns its path."""
        start = time.perf_counter()
        if self.state is not None:
            self.state.stats.end_group()
        header = {**self._header, "failed": [stem for stem in failed if stem in self._place]}
        return shards.save_partial(self.path, header, self.state, wall_s=self._busy + time.perf_counter() - start)
