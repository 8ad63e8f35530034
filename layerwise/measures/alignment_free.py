"""What each layer encodes without alignments: acoustics (``cca_mel``), drift from the CNN output (``cca_intra``),
speaker identity (``speaker_probe_accuracy``, ``speaker_majority_baseline``, ``speaker_pwcca``).

Streaming: the analysis calls :meth:`PropertyCollector.add` once per file; the collector keeps per file the mean of
every layer (for the speaker probe) and a seeded subsample of at most ``max_frames_per_file`` frames per frame grid,
already time-matched to the filterbanks and to the base layer (memory ≈ n_files × max_frames_per_file × Σ dims ×
4 B × 2), for at most ``MAX_PROPERTY_FILES`` files (means: ``MAX_PROPERTY_MEAN_FILES``), the bottom-k of a seeded
hash of the name, so the kept files do not depend on order or sharding. :func:`analyse` then computes, per layer:

- ``cca_mel``: CCA between the layer and the log-mel filterbanks (``fbank.py``), matched in time as the published
  code does (``contract.grid``: the finer sequence average-pooled onto the coarser grid); view order (fbank, layer).
- ``cca_intra``: CCA between the layer and ``layer_0`` (the CNN output after the projection, the reference's base
  layer), matched in time; ``layer_0`` itself is ``None``.
- ``speaker_probe_accuracy``: logistic-regression probe on utterance-mean features predicting the speaker, trained
  and tested on different chapters (recording sessions) of each speaker where it has two or more, else on different
  utterances (a note says so; speakers with one utterance only train);
  ``speaker_majority_baseline``: the same test utterances predicted as the most frequent training speaker (one value,
  repeated per layer so it draws as a line).
- ``speaker_pwcca``: PWCCA between the layer's frames and one-hot speaker identity.

Speakers come from LibriSpeech names ``{speaker}-{chapter}-{utterance}``; if any analysed name does not follow it,
the speaker measures are unavailable with that reason (never guessed). ``cca_protocol="centred"`` scores CCA on
held-out utterances (``pwcca.py``; splits within speaker for ``speaker_pwcca``); ``"pasad"`` uses the published
protocol (``pasad.py``: 10 seeded parts of the sampled frames, label-stratified by speaker for ``speaker_pwcca``;
there also ``speaker_pwcca_stable``, one one-hot column dropped). Every measure carries its 95 % interval (test files
resampled, ``resample.py``), the speaker measures their chance level (speakers permuted within each split part).
"""

from __future__ import annotations

import hashlib
import heapq
import zlib
from dataclasses import dataclass, replace

import numpy as np

from layerwise.contract.grid import FBANK_GRID, Grid, pool_plan
from layerwise.contract.layout import PROPERTY_MEASURES
from layerwise.contract.names import speakers_of
from layerwise.contract.results import MeasureFamily, layer_reasons
from layerwise.contract.store import FEATURE_SUFFIX
from layerwise.errors import UndefinedMeasureError, error_text
from layerwise.measures.resample import DEFAULT_N_BOOT

MEASURES = PROPERTY_MEASURES  # cca_mel, cca_intra, speaker_* (keys defined in contract.py)
BASE_LAYER = "layer_0"  # cca_intra's reference layer
DEFAULT_MAX_FRAMES_PER_FILE = 50  # frames kept per file and grid; 500 files × 50 = 25,000 frames per layer
N_SPLITS = 3  # seeded held-out splits (centred protocol; the speaker probe)
SPLIT_ATTEMPTS = 20  # draws of a speaker split before one whose dev part holds a single speaker is kept


# Corpus-wide caps (the collector's memory must not grow with the corpus; a 960 h run has ~280k utterances). Kept
# files are the bottom-k of a seeded hash of the stem (:func:`stem_rank`), so the kept set does not depend on the
# arrival order or on the sharding: a merge keeps the k smallest ranks of the union, which is what one process keeps.
# Frames of one HuBERT-base file: 50 rows × 4 B × (13 layers × 768 own + 13 × (80 + 768) mel pairs + 12 × (768 + 768)
# intra pairs) ≈ 7.9 MB; 500 files ≈ 4 GB in memory and in a merge (and 25,000 rows per layer for the CCA fits).
MAX_PROPERTY_FILES = 500
# Per-file means (speaker probe): 13 layers × 768 × 8 B (float64) ≈ 80 kB per file; 20,000 files ≈ 1.6 GB.
MAX_PROPERTY_MEAN_FILES = 20_000


def stem_rank(stem: str, seed: int) -> int:
    """The seeded 64-bit hash of ``stem`` whose bottom-k decides which files the collector keeps."""
    return int.from_bytes(hashlib.blake2b(f"{seed}/{stem}".encode(), digest_size=8).digest(), "big")


@dataclass
class FileRows:
    """What the collector keeps of one file: means layer -> (D,) float64; frames layer -> (m, D) float32 (None:
    beyond the frame cap); mel / intra layer -> (a, b) time-matched pairs (mel absent without filterbanks)."""

    means: dict
    frames: dict | None = None
    mel: dict | None = None
    intra: dict | None = None
    fbank: bool = False


class PropertyCollector:
    """Collects, file by file, what the alignment-free measures need (module docstring).

    layers : layer keys in plot order. grids : layer -> its frame grid (``contract.grid.Grid``, samples).
    seed : frame subsampling (per file, from the seed and the stem, so the order of files does not matter) and the
    files kept under the caps (:func:`stem_rank`). max_files / max_mean_files : the corpus-wide caps on the files
    whose frames / means are kept (``MAX_PROPERTY_FILES``, ``MAX_PROPERTY_MEAN_FILES``). The measures read the kept
    files in feature-file-name order (``stems``, ``means``, ``frames`` … are views built from the kept rows).
    """

    def __init__(self, layers: list[str], grids: dict[str, Grid], *, seed: int,
                 max_frames_per_file: int = DEFAULT_MAX_FRAMES_PER_FILE, max_files: int = MAX_PROPERTY_FILES,
                 max_mean_files: int = MAX_PROPERTY_MEAN_FILES):
        missing = [k for k in layers if k not in grids]
        if missing:
            raise ValueError(f"no frame grid for layers {missing}")
        if not 1 <= max_files <= max_mean_files:
            raise ValueError(f"max_files={max_files} must be in [1, max_mean_files={max_mean_files}]")
        self.layers, self.grids, self.seed, self.max_frames = list(layers), dict(grids), seed, max_frames_per_file
        self.max_files, self.max_mean_files = max_files, max_mean_files
        self.files: dict[str, FileRows] = {}
        self.n_seen = 0  # files offered (add or insert), kept or not
        self._ranks: dict[str, int] = {}
        self._mean_heap: list[tuple[int, str]] = []  # (-rank, stem): the largest kept rank on top
        self._frame_heap: list[tuple[int, str]] = []

    def _sample(self, n: int, stem: str, what: str) -> np.ndarray:
        rng = np.random.default_rng([self.seed, zlib.crc32(f"{stem}/{what}".encode())])
        return np.sort(rng.choice(n, size=min(n, self.max_frames), replace=False))

    def _admits(self, rank: int, heap: list, cap: int) -> bool:
        return len(heap) < cap or rank < -heap[0][0]

    def add(self, stem: str, arrays: dict[str, np.ndarray], fbank_frames: np.ndarray | None) -> None:
        """One file: arrays layer -> (T_k, D) frames on that layer's grid; fbank_frames (T_f, 80) or None. Files
        beyond the caps are counted and not read further."""
        rank = stem_rank(stem, self.seed)
        if not self._admits(rank, self._mean_heap, self.max_mean_files):
            self.n_seen += 1
            return
        base = arrays.get(BASE_LAYER)
        rows = FileRows({k: np.asarray(arrays[k]).mean(axis=0, dtype=np.float64) for k in self.layers},
                        fbank=fbank_frames is not None)
        if self._admits(rank, self._frame_heap, self.max_files):
            rows.frames, rows.mel, rows.intra = {}, {}, {}
            for key in self.layers:
                x, grid = np.asarray(arrays[key]), self.grids[key]
                rows.frames[key] = x[self._sample(len(x), stem, f"own/{grid}")].astype(np.float32)
                if fbank_frames is not None:
                    rows.mel[key] = self._matched(fbank_frames, FBANK_GRID, x, grid, stem, "mel")
                if base is not None and key != BASE_LAYER:
                    rows.intra[key] = self._matched(base, self.grids[BASE_LAYER], x, grid, stem, "intra")
        self.insert(stem, rows)

    def insert(self, stem: str, rows: FileRows) -> None:
        """Keep one file's rows under the caps (a merge inserts the rows of every partial; the result does not
        depend on the order): the largest-ranked file beyond a cap is dropped (its frames, or all of it)."""
        if stem in self.files:
            raise ValueError(f"file {stem} was added twice")
        rank = self._ranks[stem] = stem_rank(stem, self.seed)
        self.n_seen += 1
        self.files[stem] = rows
        heapq.heappush(self._mean_heap, (-rank, stem))
        if rows.frames is not None:
            heapq.heappush(self._frame_heap, (-rank, stem))
        if len(self._frame_heap) > self.max_files:
            dropped = self.files[heapq.heappop(self._frame_heap)[1]]
            dropped.frames = dropped.mel = dropped.intra = None
        if len(self._mean_heap) > self.max_mean_files:
            gone = heapq.heappop(self._mean_heap)[1]
            if self.files.pop(gone).frames is not None:
                raise RuntimeError("internal error: a file with frames fell out of the means")

    def _matched(self, a, grid_a, b, grid_b, stem, what) -> tuple[np.ndarray, np.ndarray]:
        """Sampled rows of ``contract.grid.match(a, grid_a, b, grid_b)``, pooling only the sampled windows (a conv_0
        layer of a long file has ~10^5 frames; pooling them all would hold a float64 copy per file)."""
        (fine, g_fine), (coarse, g_coarse) = sorted(((a, grid_a), (b, grid_b)), key=lambda p: p[1].hop)
        kernel, stride = pool_plan(g_fine, g_coarse)
        n = min(max(0, (len(fine) - kernel) // stride + 1), len(coarse))
        idx = self._sample(n, stem, f"{what}/{grid_b}")
        windows = idx[:, None] * stride + np.arange(kernel)[None, :]  # (m, kernel) fine-frame indices
        pooled = np.asarray(fine)[windows].mean(axis=1, dtype=np.float64).astype(np.float32)
        picked = np.asarray(coarse)[idx].astype(np.float32)
        return (pooled, picked) if fine is a else (picked, pooled)

    # ---- views in feature-file-name order (what the measures and the partials read)
    @property
    def stems(self) -> list[str]:
        """The files whose means are kept, in feature-file-name order (as one process reads them)."""
        return sorted(self.files, key=lambda stem: f"{stem}{FEATURE_SUFFIX}")

    @property
    def n_frame_files(self) -> int:
        return len(self._frame_heap)

    @property
    def n_fbank_files(self) -> int:
        return sum(rows.fbank for rows in self.files.values())

    @property
    def means(self) -> dict[str, list[np.ndarray]]:
        return {k: [self.files[s].means[k] for s in self.stems] for k in self.layers}

    def _per_file(self, what: str) -> tuple[dict[str, list], dict[str, list[np.ndarray]]]:
        """(layer -> the kept files' ``what`` rows, layer -> their file index in ``stems``), files in order."""
        rows, index = {k: [] for k in self.layers}, {k: [] for k in self.layers}
        for n, stem in enumerate(self.stems):
            found = getattr(self.files[stem], what) or {}
            for key, value in found.items():
                rows[key].append(value)
                index[key].append(np.full(len(value[0] if isinstance(value, tuple) else value), n))
        return rows, index

    @property
    def frames(self):
        return self._per_file("frames")[0]

    @property
    def frame_file(self):
        return self._per_file("frames")[1]

    @property
    def mel(self):
        return self._per_file("mel")[0]

    @property
    def mel_file(self):
        return self._per_file("mel")[1]

    @property
    def intra(self):
        return self._per_file("intra")[0]

    @property
    def intra_file(self):
        return self._per_file("intra")[1]

    def speakers(self) -> tuple[np.ndarray | None, str | None]:
        """(speaker of each file (n_files,), None) or (None, reason) when a name is not LibriSpeech-style."""
        return speakers_of(self.stems)


def _file_splits(file_groups: np.ndarray | None, n_files: int, *, seed: int,
                 chapters: np.ndarray | None = None) -> list[tuple[np.ndarray, ...]]:
    """N_SPLITS seeded (train, dev, test) file-index arrays. ``file_groups`` (speaker per file): split within each
    group; with ``chapters`` (recording session per file), a speaker with >= 2 chapters gets one whole chapter as
    test (another as dev when it has >= 3, else one file of a train chapter with >= 2 files as dev), so no chapter
    is on both sides of train and test; a speaker with one chapter falls back to files (test gets one file of a
    group with >= 2, dev one of a group with >= 3). Dev is then filled up to >= 2 speakers (:func:`_fill_dev`).
    None: all files one group, split by file."""
    from layerwise.measures.span import utterance_splits

    if file_groups is None:
        return utterance_splits(np.arange(n_files), n_splits=N_SPLITS, seed=seed)
    rng, splits = np.random.default_rng(seed), []
    for _ in range(N_SPLITS):
        for _attempt in range(SPLIT_ATTEMPTS):  # redraw a split whose dev part would hold fewer than 2 speakers
            part = _speaker_split(file_groups, chapters, rng)
            if len(np.unique(file_groups[part == 1])) >= 2:
                break
        splits.append(tuple(np.flatnonzero(part == k) for k in range(3)))
    return splits


def _speaker_split(file_groups: np.ndarray, chapters: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """One split's part per file (0 train, 1 dev, 2 test) by the rule of :func:`_file_splits`."""
    part = np.zeros(len(file_groups), dtype=np.int8)
    for group in np.unique(file_groups):
        members = rng.permutation(np.flatnonzero(file_groups == group))
        sessions = [] if chapters is None else list(rng.permutation(np.unique(chapters[members])))
        if len(sessions) >= 2:
            part[members[chapters[members] == sessions[0]]] = 2
            rest = members[chapters[members] != sessions[0]]
            dev = rest[chapters[rest] == sessions[1]] if len(sessions) >= 3 else rest[:1] if len(rest) >= 2 else []
            part[dev] = 1
            continue
        if len(members) >= 2:
            part[members[0]] = 2
        if len(members) >= 3:
            part[members[1]] = 1
    _fill_dev(part, file_groups, rng)
    return part


def _fill_dev(part: np.ndarray, file_groups: np.ndarray, rng: np.random.Generator) -> None:
    """Give dev (part 1) files of >= 2 groups when it has fewer (ε is chosen on dev; one speaker there makes the
    labels constant): one train file each of groups that keep >= 1 train file, in a seeded order."""
    for group in rng.permutation(np.unique(file_groups)):
        if len(np.unique(file_groups[part == 1])) >= 2:
            return
        train = np.flatnonzero((part == 0) & (file_groups == group))
        if len(train) >= 2 and group not in file_groups[part == 1]:
            part[rng.choice(train)] = 1


def _rows(split_files: tuple[np.ndarray, ...], row_file: np.ndarray) -> tuple[np.ndarray, ...]:
    return tuple(np.flatnonzero(np.isin(row_file, files)) for files in split_files)


def _cca(view1, view2, row_file, *, split_files, labels, protocol, seed, chance: bool = False, caches=None):
    """One CCA measure between two row-aligned views (n, d1), (n, d2) under ``protocol``, as a
    :class:`~layerwise.measures.resample.Scored` (test rows resampled by file; ``chance``: view2 permuted within
    the parts of each split gives the chance level). split_files : the centred protocol's file splits. caches : per
    split, a dict that keeps view1's standardisation and eigenbasis between calls (``pwcca.pwcca_heldout``: reused
    when the next call's view1 is equal, e.g. ``layer_0`` against every layer); the chance fit reuses it too."""
    from layerwise.measures import pasad, pwcca
    from layerwise.measures.resample import Scored, centred_pwcca_scorer, permute_within
    from layerwise.measures.span import pasad_scored

    if protocol == "pasad":
        parts = pasad.stratified_parts(labels, len(view1), seed=seed)
        chance_y = permute_within(view2, parts, seed=seed) if chance else None
        return pasad_scored(view1, view2, parts, pasad.draw_trials(seed=seed), pasad.draw_eps_pairs(seed=seed),
                            row_file, chance_y=chance_y)[0]
    heldout = pwcca.pwcca_heldout if labels is not None else pwcca.views_heldout
    splits = [_rows(s, row_file) for s in split_files]
    kept, caches = [{} for _ in splits], caches or [{} for _ in splits]
    scores = [heldout(view1, view2, split, keep, cache=cache)[0] for split, keep, cache in zip(splits, kept, caches)]
    scorers = [centred_pwcca_scorer(keep, row_file[split[2]]) for keep, split in zip(kept, splits)]
    level = None
    if chance:
        level = float(np.mean([heldout(view1, permute_within(view2, split, seed=[seed, i]), split,
                                       cache=caches[i])[0] for i, split in enumerate(splits)]))
    return Scored(float(np.mean(scores)), [f for f, _ in scorers], [g for _, g in scorers], scores,
                  sum(len(split[2]) for split in splits), level)


def _measure(name: str, layers: list[str], compute, out: MeasureFamily, *, n_boot: int = 0, seed: int = 0,
             method: str | None = None, threads: int | None = None) -> None:
    """``compute(key)`` for every layer (a :class:`~layerwise.measures.resample.Scored`, or a plain float: no
    interval), the layers in parallel threads (``contract.workers.over_layers``; ``threads=1`` for a measure whose
    code is not thread-safe); a layer where it is undefined (``UndefinedMeasureError``: a constant layer, one
    speaker, too few items) or fails is ``None`` (a gap) with its reason in ``out.unavailable[name]``, the other
    layers keep their values. No layer computed: the measure is left out. Intervals, chance, test counts:
    ``span.record``."""
    from layerwise.contract.workers import over_layers
    from layerwise.measures.resample import Scored
    from layerwise.measures.span import record

    values, failed, scored = {}, {}, {}
    for key, future in over_layers(compute, layers, name, threads=threads):
        try:
            found = future.result()
            scored[key] = found if isinstance(found, Scored) or found is None else Scored(found)
            values[key] = None if found is None else scored[key].value
        except UndefinedMeasureError as err:
            values[key], scored[key] = None, None
            failed[key] = f"undefined ({error_text(err)})"
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as err:
            values[key], scored[key] = None, None
            failed[key] = f"{type(err).__name__}: {error_text(err)}"
    if failed:
        out.unavailable[name] = layer_reasons(failed, len(layers))
    if any(v is not None for v in values.values()):
        out.values[name] = values
        record(out, name, scored, n_boot=n_boot, seed=seed, method=method)


def _acoustic(c: PropertyCollector, out: MeasureFamily, opts: dict, *, n_boot: int) -> None:
    """``cca_mel`` (needs every file's filterbanks) and ``cca_intra`` (needs ``BASE_LAYER``; ``None`` on it)."""
    from layerwise.measures.resample import method_text

    n_files = len(c.stems)
    split_files = _file_splits(None, n_files, seed=opts["seed"])
    method = method_text("two_stage", n_boot, "files")
    if c.n_fbank_files < n_files:
        out.unavailable["cca_mel"] = (f"{n_files - c.n_fbank_files} of {n_files} files have no filterbanks; "
                                      f"extract with --fbank")
    else:
        caches = [{} for _ in split_files]  # the filterbanks' side, equal for the layers of one grid
        _measure("cca_mel", c.layers, lambda k: _cca(
            *map(np.concatenate, zip(*c.mel[k])), np.concatenate(c.mel_file[k]), split_files=split_files,
            labels=None, caches=caches, **opts), out, n_boot=n_boot, seed=opts["seed"], method=method)
    if BASE_LAYER not in c.layers:
        out.unavailable["cca_intra"] = f"needs {BASE_LAYER} among the analysed layers"
    else:
        caches = [{} for _ in split_files]  # BASE_LAYER's side, equal for the layers of one grid
        _measure("cca_intra", c.layers, lambda k: None if k == BASE_LAYER else _cca(
            *map(np.concatenate, zip(*c.intra[k])), np.concatenate(c.intra_file[k]), split_files=split_files,
            labels=None, caches=caches, **opts), out, n_boot=n_boot, seed=opts["seed"], method=method)


def _speaker_splits(c: PropertyCollector, speakers: np.ndarray, out: MeasureFamily, *, seed: int):
    """The speaker measures' file splits: chapter-disjoint where the chapters allow it (a note when not)."""
    from layerwise.contract.names import chapters_of

    chapters = chapters_of(c.stems)[0]
    splits = _file_splits(speakers, len(c.stems), seed=seed, chapters=chapters)
    single = sorted(str(s) for s in np.unique(speakers) if len(np.unique(chapters[speakers == s])) < 2)
    out.provenance["speaker_split"] = "chapter-disjoint" if not single else f"by file for speakers {single}"
    if single:
        out.notes.append(f"speaker measures: speaker(s) {', '.join(single[:5])} have one chapter (recording session) "
                         f"among the analysed files, so their train and test utterances share it: 'speaker' is partly "
                         f"'session' there; analyse files of >= 2 chapters per speaker")
    return splits


def _speaker(c: PropertyCollector, out: MeasureFamily, opts: dict, *, seed: int, n_boot: int) -> None:
    """The speaker measures (``MEASURES[2:]``): majority baseline, probe on utterance means, PWCCA on frames (and,
    pasad, its stable twin); all unavailable with the reason when the speakers are unknown, fewer than two, or none
    has two utterances."""
    from layerwise.measures.resample import Scored, accuracy_scorer, method_text, permute_within
    from layerwise.measures.span import majority_baseline, probe_accuracy, probe_predictions

    speakers, reason = c.speakers()
    if speakers is None or len(np.unique(speakers)) < 2:
        out.unavailable.update(dict.fromkeys(MEASURES[2:], reason or "needs >= 2 speakers"))
        return
    splits = _speaker_splits(c, speakers, out, seed=seed)
    if all(len(test) == 0 for _, _, test in splits):
        out.unavailable.update(dict.fromkeys(
            MEASURES[2:], "no speaker has 2 utterances: nothing to test a speaker probe on"))
        return
    fit = [np.r_[tr, dv] for tr, dv, _ in splits]
    tests = [te for _, _, te in splits]
    baseline = float(np.mean([majority_baseline(speakers[f], speakers[te]) for f, te in zip(fit, tests)]))
    out.values["speaker_majority_baseline"] = dict.fromkeys(c.layers, baseline)
    out.provenance["n_speakers"] = len(np.unique(speakers))
    permuted = [permute_within(speakers, [f, te], seed=[seed, i]) for i, (f, te) in enumerate(zip(fit, tests))]

    def probe(key):
        x = np.stack(c.means[key])
        hits = [probe_predictions(x[f], speakers[f], x[te]) == speakers[te] for f, te in zip(fit, tests)]
        scorers = [accuracy_scorer(hit, te) for hit, te in zip(hits, tests)]
        chance = np.mean([probe_accuracy(x[f], y[f], x[te], y[te]) for f, te, y in zip(fit, tests, permuted)])
        return Scored(float(np.mean([h.mean() for h in hits])), [f for f, _ in scorers], [g for _, g in scorers],
                      [float(h.mean()) for h in hits], sum(len(h) for h in hits), float(chance),
                      accuracy_items=float(np.mean([len(h) for h in hits])))

    _measure("speaker_probe_accuracy", c.layers, probe, out, n_boot=n_boot, seed=seed,
             method=method_text("accuracy", n_boot, "files"), threads=1)  # the probe silences a warning: not thread-safe

    def speaker_cca(key, stable=False):
        rows = np.concatenate(c.frame_file[key])
        labels = speakers[rows]
        onehot = (labels[:, None] == np.unique(labels)[None, :]).astype(np.float64)
        return _cca(np.concatenate(c.frames[key]).astype(np.float64), onehot[:, 1:] if stable else onehot, rows,
                    split_files=splits, labels=labels, chance=True, **opts)

    method = method_text("two_stage", n_boot, "files")
    _measure("speaker_pwcca", c.layers, speaker_cca, out, n_boot=n_boot, seed=seed, method=method)
    if opts["protocol"] == "pasad":
        _measure("speaker_pwcca_stable", c.layers, lambda k: speaker_cca(k, stable=True), out, n_boot=n_boot,
                 seed=seed, method=method)


def measure(c: PropertyCollector, *, seed: int, cca_protocol: str = "centred",
            n_boot: int = DEFAULT_N_BOOT) -> MeasureFamily:
    """Every measure of ``MEASURES`` for one collector (module docstring), as a
    :class:`~layerwise.contract.results.MeasureFamily` whose ``provenance`` records seed, protocol, files, frames
    kept per file, base layer and speakers (not written to ``summary.json``). cca_protocol : one of
    ``span.CCA_PROTOCOLS``, validated by ``analyze.options.AnalysisOptions``. n_boot : bootstrap replicates of the
    intervals (0: none); intervals, chance levels (speaker measures), test counts and notes go into the family."""
    import time

    from threadpoolctl import threadpool_limits  # one BLAS thread: many small products (see span.span_measures)

    from layerwise.measures.span import FEW_TEST_ITEMS

    out = MeasureFamily(provenance={"seed": seed, "cca_protocol": cca_protocol, "n_files": len(c.stems),
                                    "max_frames_per_file": c.max_frames, "base_layer": BASE_LAYER,
                                    "n_files_seen": c.n_seen, "n_frame_files": c.n_frame_files,
                                    "max_property_files": c.max_files, "max_property_mean_files": c.max_mean_files})
    n_files = len(c.stems)
    if c.n_seen > c.n_frame_files:
        out.notes.append(f"alignment-free measures: frames of {c.n_frame_files} of the {c.n_seen} files "
                         f"(cap {c.max_files}), per-file means of {n_files} (cap {c.max_mean_files}); the files are "
                         f"the same for every shard count and order (bottom-k of a seeded hash of the name)")
    opts = {"protocol": cca_protocol, "seed": seed}
    with threadpool_limits(limits=1):
        if n_files < 3:
            out.unavailable.update(dict.fromkeys(MEASURES, f"needs >= 3 files for held-out scores, got {n_files}"))
            return out
        start = time.perf_counter()
        _acoustic(c, out, opts, n_boot=n_boot)
        _speaker(c, out, opts, seed=seed, n_boot=n_boot)
        out.provenance["seconds"] = time.perf_counter() - start
    if cca_protocol == "pasad":
        out.notes.append("cca_protocol pasad: its 10 parts are drawn over the sampled frames, so frames of one "
                         "utterance are on both sides of a split (the published protocol)")
    for name, count in out.n_test.items():
        if n_boot and count < FEW_TEST_ITEMS:  # no interval (n_boot 0): nothing is wide
            out.notes.append(f"{name}: {count} scored test items over the splits (fewer than {FEW_TEST_ITEMS}): its "
                             f"interval is wide; analyse more files")
    return out


def analyse(trained: PropertyCollector, control: PropertyCollector | None, *, seed: int,
            cca_protocol: str = "centred", n_boot: int = DEFAULT_N_BOOT) -> MeasureFamily:
    """The measures of the trained model and, with the same seed and protocol, of the random-init control.

    Returns the trained model's :class:`~layerwise.contract.results.MeasureFamily` (:func:`measure`): ``values``
    maps each computed measure of ``MEASURES`` to ``{layer: float or None}`` (``None``: undefined for that layer,
    e.g. ``cca_intra`` of ``layer_0``), ``unavailable`` a measure that could not be computed to the reason; with a
    control, ``control`` holds the control's family in the same form (None without one).
    """
    result = measure(trained, seed=seed, cca_protocol=cca_protocol, n_boot=n_boot)
    if control is None:
        return result
    return replace(result, control=measure(control, seed=seed, cca_protocol=cca_protocol, n_boot=n_boot))
