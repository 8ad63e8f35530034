"""What each layer encodes without alignments: acoustics (``cca_mel``), drift from the CNN output (``cca_intra``),
speaker identity (``speaker_probe_accuracy``, ``speaker_majority_baseline``, ``speaker_pwcca``).

Streaming: the analysis calls :meth:`PropertyCollector.add` once per file; the collector keeps per file the mean of
every layer (for the speaker probe) and a seeded subsample of at most ``max_frames_per_file`` frames per frame grid,
already time-matched to the filterbanks and to the base layer (memory ≈ n_files × max_frames_per_file × Σ dims ×
4 B × 2). :func:`analyse` then computes, per layer:

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

import zlib
from dataclasses import replace

import numpy as np

from layerwise.contract.grid import FBANK_GRID, Grid, pool_plan
from layerwise.contract.layout import PROPERTY_MEASURES
from layerwise.contract.names import speakers_of
from layerwise.contract.results import MeasureFamily, layer_reasons
from layerwise.errors import UndefinedMeasureError, error_text
from layerwise.measures.resample import DEFAULT_N_BOOT

MEASURES = PROPERTY_MEASURES  # cca_mel, cca_intra, speaker_* (keys defined in contract.py)
BASE_LAYER = "layer_0"  # cca_intra's reference layer
DEFAULT_MAX_FRAMES_PER_FILE = 50  # frames kept per file and grid; 500 files × 50 = 25,000 frames per layer
N_SPLITS = 3  # seeded held-out splits (centred protocol; the speaker probe)
SPLIT_ATTEMPTS = 20  # draws of a speaker split before one whose dev part holds a single speaker is kept


class PropertyCollector:
    """Collects, file by file, what the alignment-free measures need (module docstring).

    layers : layer keys in plot order. grids : layer -> its frame grid (``contract.grid.Grid``, samples).
    seed : frame subsampling (per file, from the seed and the stem, so the order of files does not matter).
    """

    def __init__(self, layers: list[str], grids: dict[str, Grid], *, seed: int,
                 max_frames_per_file: int = DEFAULT_MAX_FRAMES_PER_FILE):
        missing = [k for k in layers if k not in grids]
        if missing:
            raise ValueError(f"no frame grid for layers {missing}")
        self.layers, self.grids, self.seed, self.max_frames = list(layers), dict(grids), seed, max_frames_per_file
        self.stems: list[str] = []
        self.means: dict[str, list[np.ndarray]] = {k: [] for k in layers}
        self.frames: dict[str, list[np.ndarray]] = {k: [] for k in layers}  # own frames, sampled
        self.frame_file: dict[str, list[np.ndarray]] = {k: [] for k in layers}
        self.mel: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {k: [] for k in layers}  # (fbank, layer)
        self.mel_file: dict[str, list[np.ndarray]] = {k: [] for k in layers}
        self.intra: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {k: [] for k in layers}  # (base, layer)
        self.intra_file: dict[str, list[np.ndarray]] = {k: [] for k in layers}
        self.n_fbank_files = 0

    def _sample(self, n: int, stem: str, what: str) -> np.ndarray:
        rng = np.random.default_rng([self.seed, zlib.crc32(f"{stem}/{what}".encode())])
        return np.sort(rng.choice(n, size=min(n, self.max_frames), replace=False))

    def add(self, stem: str, arrays: dict[str, np.ndarray], fbank_frames: np.ndarray | None) -> None:
        """One file: arrays layer -> (T_k, D) frames on that layer's grid; fbank_frames (T_f, 80) or None."""
        index = len(self.stems)
        self.stems.append(stem)
        base = arrays.get(BASE_LAYER)
        if fbank_frames is not None:
            self.n_fbank_files += 1
        for key in self.layers:
            x, grid = np.asarray(arrays[key]), self.grids[key]
            self.means[key].append(x.mean(axis=0, dtype=np.float64))
            idx = self._sample(len(x), stem, f"own/{grid}")
            self.frames[key].append(x[idx].astype(np.float32))
            self.frame_file[key].append(np.full(len(idx), index))
            if fbank_frames is not None:
                pair = self._matched(fbank_frames, FBANK_GRID, x, grid, stem, "mel")
                self.mel[key].append(pair)
                self.mel_file[key].append(np.full(len(pair[0]), index))
            if base is not None and key != BASE_LAYER:
                pair = self._matched(base, self.grids[BASE_LAYER], x, grid, stem, "intra")
                self.intra[key].append(pair)
                self.intra_file[key].append(np.full(len(pair[0]), index))

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


def _cca(view1, view2, row_file, *, split_files, labels, protocol, seed, chance: bool = False):
    """One CCA measure between two row-aligned views (n, d1), (n, d2) under ``protocol``, as a
    :class:`~layerwise.measures.resample.Scored` (test rows resampled by file; ``chance``: view2 permuted within
    the parts of each split gives the chance level). split_files : the centred protocol's file splits."""
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
    kept = [{} for _ in splits]
    scores = [heldout(view1, view2, split, keep)[0] for split, keep in zip(splits, kept)]
    scorers = [centred_pwcca_scorer(keep, row_file[split[2]]) for keep, split in zip(kept, splits)]
    level = None
    if chance:
        level = float(np.mean([heldout(view1, permute_within(view2, split, seed=[seed, i]), split)[0]
                               for i, split in enumerate(splits)]))
    return Scored(float(np.mean(scores)), [f for f, _ in scorers], [g for _, g in scorers], scores,
                  sum(len(split[2]) for split in splits), level)


def _measure(name: str, layers: list[str], compute, out: MeasureFamily, *, n_boot: int = 0, seed: int = 0,
             method: str | None = None) -> None:
    """``compute(key)`` for every layer (a :class:`~layerwise.measures.resample.Scored`, or a plain float: no
    interval); a layer where it is undefined (``UndefinedMeasureError``: a constant layer, one speaker, too few
    items) or fails is ``None`` (a gap) with its reason in ``out.unavailable[name]``, the other layers keep their
    values. No layer computed: the measure is left out. Intervals, chance, test counts: ``span.record``."""
    from layerwise.contract.progress import bar
    from layerwise.measures.resample import Scored
    from layerwise.measures.span import record

    values, failed, scored = {}, {}, {}
    for key in bar(layers, name, "layer"):
        try:
            found = compute(key)
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
        _measure("cca_mel", c.layers, lambda k: _cca(
            *map(np.concatenate, zip(*c.mel[k])), np.concatenate(c.mel_file[k]), split_files=split_files,
            labels=None, **opts), out, n_boot=n_boot, seed=opts["seed"], method=method)
    if BASE_LAYER not in c.layers:
        out.unavailable["cca_intra"] = f"needs {BASE_LAYER} among the analysed layers"
    else:
        _measure("cca_intra", c.layers, lambda k: None if k == BASE_LAYER else _cca(
            *map(np.concatenate, zip(*c.intra[k])), np.concatenate(c.intra_file[k]), split_files=split_files,
            labels=None, **opts), out, n_boot=n_boot, seed=opts["seed"], method=method)


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
             method=method_text("accuracy", n_boot, "files"))

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
                                    "max_frames_per_file": c.max_frames, "base_layer": BASE_LAYER})
    n_files = len(c.stems)
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
        if count < FEW_TEST_ITEMS:
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
