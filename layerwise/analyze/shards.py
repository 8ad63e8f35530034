"""Analysis across machines: each shard writes mergeable partial statistics; a merge step finishes the analysis.

``subset_id K of num_subsets N`` takes the files whose group ``i // GROUP_FILES`` (i = position in file-name order
of the selection) satisfies ``group mod N == K`` and writes ``{output_dir}/partials/partial_K_of_N.npz``
atomically: the exact statistics (``GridStats.state``: float64 moments and cross-products), the bottom-k subsample
with its keys, span features for span folders, the stems and the run's metadata. ``merge`` checks that all N
partials are there and belong together (same selection, seed, layers, precision, extraction identity), merges them
exactly (Chan's pairwise update; bottom-k union) and finishes like a single process: merged numbers equal a
single-process run to ~1e-8 of each quantity's largest value (140 files, 2 shards: at most 1.3e-8 × the largest
value, 5.5e-7 relative on the smallest PCA variance ratios; tests: 1e-9 relative), figures and report included.

A partial holds ``8·Σ_l D_l·(N − off_l)`` bytes of statistics: about 430 MB for HuBERT-base with 13 layers × 768
dims (``--layers`` cuts this quadratically), plus the sample (max_points × Σ dims × 4 bytes).
"""

from __future__ import annotations

import json
import logging
import re
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from layerwise.analyze import stream
from layerwise.analyze.control import CONTROL_AUTO, CONTROL_NONE
from layerwise.analyze.options import AnalysisOptions
from layerwise.contract import layout, store
from layerwise.contract.names import plural
from layerwise.contract.results import AnalysisResult
from layerwise.errors import EmbedError, StatsError, UsageError

log = logging.getLogger(__name__)

PARTIALS_DIR = "partials"
PARTIAL_NAME = "partial_{subset:04d}_of_{count:04d}.npz"
_PARTIAL_RE = re.compile(r"^partial_(\d+)_of_(\d+)\.npz$")
_HEADER = "header"  # a 0-d unicode array holding the JSON header (no pickling)
_SAME = ("seed", "max_points", "layers", "precision", "num_files", "features_dir")  # must agree across partials
SAME_SETTINGS = _SAME  # public name (analyze/partial.py checks a --no_store shard against its neighbours)


def shard_indices(count: int, subset_id: int, num_subsets: int) -> list[int]:
    """Positions (in the selection) of the files shard ``subset_id`` of ``num_subsets`` analyses: the shard rule of
    ``layout.shard_indices`` applied to whole groups of ``stream.GROUP_FILES`` consecutive files (group g to shard
    g mod N)."""
    return layout.shard_indices(count, subset_id, num_subsets, unit=stream.GROUP_FILES)


def partial_path(output_dir: str | Path, subset_id: int, num_subsets: int) -> Path:
    return Path(output_dir) / PARTIALS_DIR / PARTIAL_NAME.format(subset=subset_id, count=num_subsets)


def write_partial(files: list[Path], options: AnalysisOptions) -> Path:
    """Run this shard's streaming pass and write its partial statistics; returns the partial's path."""
    start = time.perf_counter()
    indices = shard_indices(len(files), options.subset_id, options.num_subsets)
    state = None
    if indices:
        state = stream.collect([files[i] for i in indices], indices, layer_spec=options.layers, seed=options.seed,
                               max_points=options.max_points, precision=options.precision)
    header = header_of(options, [store.stem_of(p) for p in files])
    return save_partial(partial_path(options.output_dir, options.subset_id, options.num_subsets), header, state,
                        wall_s=time.perf_counter() - start)


def header_of(options: AnalysisOptions, all_stems: list[str], **extra) -> dict:
    """The header of a partial before its pass: the shard, every stem of the selection (all shards) and the
    settings every partial of one merge must share (``_SAME``; the features folder as an absolute path, so shards
    and the merge may each run from another working folder), plus ``extra`` fields."""
    same = {k: str(getattr(options, k)) for k in _SAME}
    same["features_dir"] = str(Path(options.features_dir).absolute())  # shards and merge may run from other folders
    return {"subset_id": options.subset_id, "num_subsets": options.num_subsets, "all_stems": list(all_stems),
            "files": [], "empty": [], **same, **extra}


def save_partial(path: Path, header: dict, state: stream.Collected | None, *, wall_s: float) -> Path:
    """Write one partial atomically: ``header`` completed from ``state`` (None: a shard without files) and the
    state's arrays (statistics, sample, span features, the alignment-free property collector)."""
    header = dict(header)
    arrays: dict[str, np.ndarray] = {}
    if state is not None:
        header.update(files=state.files, empty=state.empty, meta=state.meta, keys=state.layers, dims=state.dims)
        arrays.update({f"stats_{k}": v for k, v in state.stats.state().items()})
        arrays.update({f"sample_{k}": v for k, v in state.sampler.state().items()})
        if state.spans is not None:
            arrays.update(_spans_state(state.spans))
        if state.properties is not None:
            arrays.update(properties_state(state.properties))
            header["properties_max_frames"] = int(state.properties.max_frames)
    header["wall_s"] = wall_s
    path.parent.mkdir(parents=True, exist_ok=True)
    with store.atomic_open(path, "wb") as handle:
        np.savez(handle, **arrays, **{_HEADER: np.array(json.dumps(header))})
    log.info("shard %d of %d: %d files -> %s", header["subset_id"], header["num_subsets"], len(header["files"]),
             path)
    return path


_PROPS = "props_"  # prefix of the property collector's arrays in a partial


def properties_state(collector) -> dict[str, np.ndarray]:
    """An ``alignment_free.PropertyCollector`` as plain arrays (bounded: the kept files' means and at most
    ``max_frames`` sampled rows per file and grid of the files within the frame cap, time-matched to the filterbank
    and the base layer): per layer ``means`` (n_files, D) float64, ``frames`` with ``frame_file``, the ``mel`` and
    ``intra`` pairs (a, b) with their file ids (index into ``stems``); per file ``fbank`` and ``framed`` (its frames
    are kept); ``n_seen`` (files offered, kept or not)."""
    stems = collector.stems
    out = {f"{_PROPS}stems": np.array(stems, dtype=str), f"{_PROPS}n_seen": np.array(collector.n_seen, np.int64),
           f"{_PROPS}fbank": np.array([collector.files[s].fbank for s in stems], dtype=bool),
           f"{_PROPS}framed": np.array([collector.files[s].frames is not None for s in stems], dtype=bool)}

    def flat(parts, width=None):
        return np.concatenate(parts) if parts else np.zeros((0,) if width is None else (0, width))

    means = collector.means
    for what in ("frames", "mel", "intra"):
        rows, index = collector._per_file(what)
        for i, key in enumerate(collector.layers):
            if what == "frames":
                out[f"{_PROPS}means_{i}"] = np.stack(means[key]) if means[key] else np.zeros((0, 0))
                out[f"{_PROPS}frames_{i}"] = flat(rows[key], 0)
                out[f"{_PROPS}frame_file_{i}"] = flat(index[key]).astype(np.int64)
                continue
            out[f"{_PROPS}{what}_a_{i}"] = flat([a for a, _ in rows[key]], 0)
            out[f"{_PROPS}{what}_b_{i}"] = flat([b for _, b in rows[key]], 0)
            out[f"{_PROPS}{what}_file_{i}"] = flat(index[key]).astype(np.int64)
    return out


def merged_properties(parts: list[dict[str, np.ndarray]], order: list[str], collector):
    """Fill the empty ``collector`` with the property states ``parts`` (:func:`properties_state` of each partial):
    every file's rows are inserted under the collector's caps, which keep the files of the smallest seeded ranks
    whatever the order or sharding, and the measures read them in feature-file-name order: what one process over
    the same files keeps. order : the merged stems (files of the partials outside it are an error)."""
    from layerwise.measures.alignment_free import FileRows

    wanted = set(order)
    for part in parts:
        stems = [str(s) for s in part[f"{_PROPS}stems"]]
        if set(stems) - wanted:
            raise IndexError("the property state names stems the partial's files do not hold")
        files = [FileRows({}, {} if framed else None, {} if framed else None, {} if framed else None, bool(fb))
                 for fb, framed in zip(part[f"{_PROPS}fbank"], part[f"{_PROPS}framed"])]
        for i, key in enumerate(collector.layers):
            for j, rows in enumerate(files):
                rows.means[key] = part[f"{_PROPS}means_{i}"][j]
            _split_rows(part, f"frames_{i}", None, f"frame_file_{i}", files, "frames", key)
            for what in ("mel", "intra"):
                _split_rows(part, f"{what}_a_{i}", f"{what}_b_{i}", f"{what}_file_{i}", files, what, key)
        for stem, rows in zip(stems, files):
            collector.insert(stem, rows)
    collector.n_seen = int(sum(int(part[f"{_PROPS}n_seen"]) for part in parts))
    return collector


def _split_rows(part: dict, name_a: str, name_b: str | None, name_file: str, files: list, what: str,
                key: str) -> None:
    """Hand each file of ``files`` its rows of one layer's array(s) ``name_a`` (and ``name_b``: pairs) by the
    file ids ``name_file`` (rows of one file are contiguous and in their sampled order)."""
    ids = part[f"{_PROPS}{name_file}"]
    if not len(ids):
        return
    a = part[f"{_PROPS}{name_a}"]
    b = None if name_b is None else part[f"{_PROPS}{name_b}"]
    order = np.argsort(ids, kind="stable")
    present, starts = np.unique(ids[order], return_index=True)
    ends = [*starts[1:], len(order)]
    for j, lo, hi in zip(present, starts, ends):
        rows = order[lo:hi]
        target = getattr(files[int(j)], what)
        if target is None:
            raise IndexError(f"{name_file} names file {int(j)}, whose frames the partial did not keep")
        target[key] = a[rows] if b is None else (a[rows], b[rows])


def _spans_state(spans) -> dict[str, np.ndarray]:
    counts = np.array([len(labels) for labels in spans.labels], dtype=np.int64)
    out = {"spans_counts": counts, "spans_stems": np.array(spans.stems, dtype=str),
           "spans_labels": np.concatenate(spans.labels).astype(str) if spans.labels else np.array([], str)}
    out.update({f"spans_layer_{k}": np.concatenate(v) for k, v in spans.layers.items()})
    return out


def _spans_by_stem(arrays: dict[str, np.ndarray], layers: list[str]) -> dict[str, tuple[dict, np.ndarray]]:
    ends = np.cumsum(arrays["spans_counts"])
    starts = ends - arrays["spans_counts"]
    return {str(stem): ({k: arrays[f"spans_layer_{k}"][a:b] for k in layers}, arrays["spans_labels"][a:b])
            for stem, a, b in zip(arrays["spans_stems"], starts, ends)}


# What a partial whose arrays do not fit together raises while it is turned into statistics: shapes that disagree
# (StatsError, EmbedError), a header field of the wrong type (TypeError), an index past an array (IndexError).
_INCONSISTENT = (StatsError, EmbedError, TypeError, IndexError)
_HEADER_FIELDS = {"subset_id": int, "num_subsets": int, "all_stems": list, "files": list, "empty": list,
                  "wall_s": (int, float)}
_FILLED_FIELDS = {"meta": dict, "keys": list, "dims": list}  # present when the shard had files


def _check_header(header) -> None:
    """Refuse a partial header without the fields :func:`write_partial` writes (KeyError/TypeError, guarded)."""
    if not isinstance(header, dict):
        raise TypeError(f"header is a {type(header).__name__}, not a JSON object")
    fields = {**_HEADER_FIELDS, **dict.fromkeys(_SAME, str), **(_FILLED_FIELDS if header.get("files") else {})}
    for name, kind in fields.items():
        if not isinstance(header[name], kind):
            raise TypeError(f"header field {name} is a {type(header[name]).__name__}")
    if header.get("files") and len(header["keys"]) != len(header["dims"]):
        raise TypeError(f"header has {len(header['keys'])} layer keys for {len(header['dims'])} dims")


def _check_spans(arrays: dict[str, np.ndarray], layers: list[str]) -> None:
    """Refuse span arrays that do not fit together: one count per stem, the counts summing to the labels and to
    every layer's rows."""
    counts, stems, labels = arrays["spans_counts"], arrays["spans_stems"], arrays["spans_labels"]
    total = int(np.sum(counts))
    if counts.ndim != 1 or stems.shape != counts.shape or labels.shape != (total,) or (counts < 0).any():
        raise IndexError(f"span arrays do not fit together: {counts.shape} counts summing to {total}, "
                         f"{stems.shape} stems, {labels.shape} labels")
    for key in layers:
        if arrays[f"spans_layer_{key}"].shape[0] != total:
            raise IndexError(f"spans_layer_{key} has {arrays[f'spans_layer_{key}'].shape[0]} rows for {total} "
                             f"segments")


def _load(path: Path, options: AnalysisOptions) -> tuple[dict, dict[str, np.ndarray], stream.Collected | None]:
    """(header, the arrays that are not statistics, its state or None for a shard without files) of one partial,
    read through ``store.read_own`` and turned into statistics under ``store.guarded``: a missing, truncated or
    damaged partial, or one whose arrays do not fit together, is an ``OwnFileError`` (exit 2) naming it and the
    command that rewrites it."""
    match = _PARTIAL_RE.match(path.name)
    subset, count = (int(match.group(1)), int(match.group(2))) if match else ("K", "N")
    rebuild = (f"python visualize_features.py --features_dir {options.features_dir} --output_dir "
               f"{options.output_dir} --subset_id {subset} --num_subsets {count} (with the other settings of the "
               f"shards), then --merge again")
    arrays = store.read_own(path, what="partial statistics", rebuild=rebuild)
    with store.guarded(path, what="partial statistics", rebuild=rebuild, also=_INCONSISTENT):
        header = json.loads(str(arrays.pop(_HEADER)))
        _check_header(header)
        if not header["files"]:
            return header, arrays, None
        state = _state_from(header, arrays, options)
        if state.spans is not None:
            _check_spans(arrays, state.layers)
        if state.sampler.filled and set(state.sampler.result().utterances) - set(header["files"]):
            raise IndexError("the sample names stems the partial's files do not hold")
        rest = {k: v for k, v in arrays.items() if not k.startswith(("stats_", "sample_"))}
        return header, rest, state


def _partials(output_dir: Path) -> list[Path]:
    """Every partial of one sharding, all present, or a UsageError naming the missing shards and the way out."""
    found = {}
    for path in sorted((output_dir / PARTIALS_DIR).glob("partial_*_of_*.npz")):
        match = _PARTIAL_RE.match(path.name)
        if match:
            found.setdefault(int(match.group(2)), {})[int(match.group(1))] = path
    if not found:
        raise UsageError(f"no partial statistics in {output_dir / PARTIALS_DIR}; run the shards first "
                         f"(--subset_id K --num_subsets N with the same --output_dir)")
    if len(found) > 1:
        raise UsageError(f"{output_dir / PARTIALS_DIR} holds partials of several shardings (num_subsets "
                         f"{sorted(found)}, i.e. --num_subsets values); remove the partials of the old one")
    count, parts = next(iter(found.items()))
    missing = sorted(set(range(count)) - set(parts))
    if missing:
        raise UsageError(f"partials of shards {missing} of {count} are missing in {output_dir / PARTIALS_DIR}; "
                         f"run those shards (--subset_id {missing[0]} --num_subsets {count} …) before merging")
    return [parts[i] for i in range(count)]


def check_shard_count(output_dir: str | Path, expected: int) -> None:
    """Refuse a merge told ``--num_subsets expected`` whose partials in ``output_dir`` come from another number of
    shards (UsageError naming both); also refuses when partials are missing or mixed, as the merge would."""
    count = len(_partials(Path(output_dir)))
    if count != expected:
        raise UsageError(f"merge was given num_subsets={expected}, but the partials in "
                         f"{Path(output_dir) / PARTIALS_DIR} are {count} shards (partial_K_of_{count}); leave "
                         f"num_subsets out of the merge (it takes the count from the partials) or run "
                         f"{plural(expected, 'shard')} with --num_subsets {expected}")


NO_STORE_NOTE = ("extract_features.py --no_store: the features were not stored, so what needs them again after the "
                 "pass is not computed: the random-init control (the dashed lines), ABX error rates and PNMI; "
                 "extract a sample set with storage (--num_utterances N) and analyse that folder for them")


def merge(options: AnalysisOptions) -> AnalysisResult:
    """Merge every partial in ``options.output_dir`` and finish the analysis (PCA, t-SNE, span and alignment-free
    measures) with the selection and streaming settings the partials were made with (:data:`FROM_PARTIALS`; one
    given explicitly with another value is refused first, :func:`check_given`). Partials of ``extract_features.py
    --no_store`` merge the same way; what needs the features again (the control, ABX, PNMI) is refused when asked
    for and otherwise noted as not computed (:data:`NO_STORE_NOTE`)."""
    from layerwise.analyze.finish import finish
    from layerwise.contract.progress import bar

    start = time.perf_counter()
    paths = _partials(Path(options.output_dir))
    first = read_header(paths[0])  # the given settings are checked before the partials are read
    if first is not None:
        check_given(options, first)
    loaded = [_load(p, options) for p in bar(paths, "merge (reading partials)", "shard")]
    _check_together([h for h, _, _ in loaded])
    if first is None:
        check_given(options, loaded[0][0])
    no_store = bool(loaded[0][0].get("no_store"))
    if no_store and (options.abx or options.alignment_dir is not None):
        raise UsageError("ABX and PNMI need the stored features, which extract_features.py --no_store does not "
                         "write; merge without --abx_item/--alignment_dir, or extract a sample set with storage and "
                         "analyse that folder for them")
    filled = [(h, a, s) for h, a, s in loaded if s is not None]
    if not filled:
        raise UsageError("the partials hold no files with frames; nothing to merge")
    header, _, state = filled[0]
    order = _merge_states(filled)
    state.empty = [stem for h, _, _ in loaded for stem in h["empty"]]
    recorded = replace(options, seed=int(header["seed"]), max_points=int(header["max_points"]),
                       num_files=int(header["num_files"]), precision=header["precision"],
                       features_dir=str(options.output_dir) if no_store else header["features_dir"],
                       control_dir=None if no_store else options.control_dir)
    wall = {"streaming_pass": sum(h["wall_s"] for h, _, _ in loaded), "merge": time.perf_counter() - start}
    result = finish(state, recorded, order=order, wall=wall, shards=len(loaded))
    if no_store:
        notes = [NO_STORE_NOTE if note == result.no_control else note for note in result.notes]
        result = replace(result, notes=notes if result.no_control else [*notes, NO_STORE_NOTE],
                         no_control=NO_STORE_NOTE if result.no_control else None)
    elif state.grids and not state.is_span and state.properties is None:
        result = replace(result, notes=[*result.notes, ("alignment-free property measures (cca_mel, cca_intra, "
                                        "speaker) are not in these partials (written by an older version); "
                                        "re-run the shards for them")])
    return result


# What a merge takes from its partials, not from its own options (``merge``: ``replace(options, seed=…)``): the file
# selection and the streaming pass's settings. One given explicitly (``AnalysisOptions.given``) with another value
# than the partials' is refused before they are read (check_given); one left at its default takes theirs.
FROM_PARTIALS = ("features_dir", "file_list", "num_files", "layers", "seed", "max_points", "precision")


def read_header(path: Path) -> dict | None:
    """The JSON header of the partial at ``path``, read without its arrays (npz members load lazily); None when it
    cannot be read (``_load`` then names the partial and how to rebuild it)."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            header = json.loads(str(arrays[_HEADER]))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    return header if isinstance(header, dict) else None


def check_given(options: AnalysisOptions, header: dict) -> None:
    """Refuse a merge whose explicitly given parameters (``options.given``) it would override: any of
    :data:`FROM_PARTIALS` whose value differs from the one ``header`` (the first partial's; ``_check_together``
    makes the others agree) was made with, and on ``--no_store`` partials a control_dir that names a folder.
    Raises UsageError naming each parameter, both values and the way out; a value equal to the partials' passes."""
    folder = Path(options.output_dir) / PARTIALS_DIR
    control = options.control_dir
    if (header.get("no_store") and "control_dir" in options.given and control is not None
            and str(control).lower() not in (CONTROL_NONE, CONTROL_AUTO)):
        raise UsageError(f"control_dir={control}: the partials in {folder} come from extract_features.py "
                         f"--no_store, whose merge cannot compute the random-init control (its measures need both "
                         f"models' features together, and these were not stored); leave control_dir out of the "
                         f"merge (or give control_dir=none), and for the control extract a sample set with "
                         f"storage (--num_utterances N) and with --random_init, and analyse that folder with it")
    differ = [f"given {name}={mine}, the partials' {name}={theirs}" for name in FROM_PARTIALS
              if name in options.given for mine, theirs in [_given_and_partials(name, options, header)]
              if mine != theirs]
    if differ:
        raise UsageError(f"merge takes the selection and streaming settings from the partials in {folder}, but "
                         f"it was {'; '.join(differ)}. Re-run the shards with the given value (then merge with it), or "
                         f"leave it out of the merge to use the partials' value")


def _given_and_partials(name: str, options: AnalysisOptions, header: dict) -> tuple[str, str]:
    """(the given value, the partials' value) of one of :data:`FROM_PARTIALS` as a user reads them; equal strings
    when they select the same (paths to one folder, layer specs of the same keys, a file_list of the same stems)."""
    mine = getattr(options, name)
    if name == "features_dir":  # --no_store partials: the features "are" where the partials are (merge records so)
        theirs = options.output_dir if header.get("no_store") else header["features_dir"]
        return (str(theirs), str(theirs)) if _same_folder(mine, theirs) else (str(mine), str(theirs))
    if name == "file_list":
        stems = header["all_stems"]
        listed = _listed_stems(mine, int(header["num_files"])) if mine is not None else stems
        return ((str(mine), str(mine)) if listed == stems else
                (f"{mine} ({len(listed)} files)", f"selection of {len(stems)} files"))
    if name == "layers":
        spec = "all" if header["layers"] in ("None", "all") else header["layers"]
        given = "all" if mine is None else str(mine)
        keys = _layer_keys(given, header)
        return (spec, spec) if given == spec or (keys is not None and keys == _layer_keys(spec, header)) \
            else (given, spec)
    return str(mine), str(header[name])


def _same_folder(a, b) -> bool:
    """Whether paths ``a`` and ``b`` name one folder (as written, resolved, or the same inode)."""
    a, b = Path(a), Path(b)
    try:
        return a == b or a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def _listed_stems(file_list, num_files: int) -> list[str]:
    """The stems a file_list selects, as ``run.select_files`` orders and cuts them (by file name; 0 = all)."""
    text = store.read_own(file_list, what="file_list", rebuild="leave file_list out of the merge: the partials hold "
                                                               "their selection")
    stems = sorted((store.stem_of(line.strip()) for line in text.splitlines() if line.strip()),
                   key=lambda stem: stem + store.FEATURE_SUFFIX)
    return stems if num_files == 0 else stems[:num_files]


def _layer_keys(spec: str, header: dict) -> list[str] | None:
    """The layer keys ``spec`` selects from the extraction's layers the partial records (its files' meta, a
    ``--no_store`` shard's identity, or the keys a shard of every layer selected; None: not resolvable)."""
    available = (header.get("meta") or header.get("identity") or {}).get("layers")
    if not isinstance(available, list) and header["layers"] in ("None", "all"):
        available = header.get("keys")
    if not isinstance(available, list) or not available:
        return None
    try:
        return layout.parse_layer_spec(spec, [str(k) for k in available])
    except (UsageError, TypeError, ValueError):
        return None


def _check_together(headers: list[dict]) -> None:
    """Refuse partials that do not belong to one merge, naming what differs: the selection and settings
    (``_SAME``), stored vs ``--no_store``, and the extraction identity (``layout.check_same_extraction``: of the
    files read, or of a ``--no_store`` shard's run, recorded also for a shard without files)."""
    first = headers[0]
    for header in headers[1:]:
        where = ("features_dir",) if header.get("no_store") and first.get("no_store") else ()  # a copied folder
        differ = ["the file selection" if k == "all_stems" else f"--{k}" for k in ("all_stems", *_SAME)
                  if k not in where and header[k] != first[k]]
        if bool(header.get("no_store")) != bool(first.get("no_store")):
            differ.append("no_store (one partial from extract_features.py --no_store, the other from stored files)")
        if differ:
            raise UsageError(f"partial of shard {header['subset_id']} was made with other settings than shard "
                             f"{first['subset_id']} ({', '.join(differ)}); re-run the shards with the same settings")
    known = [h for h in headers if h.get("identity") or h.get("meta")]
    for header in known[1:]:
        layout.check_same_extraction(header.get("identity") or header["meta"], known[0].get("identity")
                                     or known[0]["meta"], subject=f"the partial of shard {header['subset_id']}",
                                     reference_name=f"the partial of shard {known[0]['subset_id']}",
                                     advice=" (the shards come from different extractions); re-run them with one "
                                            "extraction's settings")


def _merge_states(filled: list[tuple[dict, dict, stream.Collected]]) -> list[str]:
    """Fold every filled partial into the first one's state (statistics, sample, span features, property
    collector); returns the merged stems in file-name order."""
    header, _, state = filled[0]
    spans_by_stem = {}
    for other_header, other_arrays, other in filled[1:]:
        state.stats.merge(other.stats)
        state.sampler.merge(other.sampler)
    if state.spans is not None:
        for _, other_arrays, _ in filled:
            spans_by_stem.update(_spans_by_stem(other_arrays, state.layers))
    files = {stem for h, _, _ in filled for stem in h["files"]}
    order = [stem for stem in header["all_stems"] if stem in files]
    if state.spans is not None:
        for stem in order:
            state.spans.add(stem, *spans_by_stem[stem])
    props = [a for _, a, _ in filled if f"{_PROPS}framed" in a]  # older partials: no capped state, a note
    if props and len(props) == len(filled) and not state.is_span and state.grids:
        collector = stream.property_collector(state, seed=int(header["seed"]))
        if collector is not None:
            collector.max_frames = int(header.get("properties_max_frames", collector.max_frames))
            state.properties = merged_properties(props, order, collector)
    return order


def _state_from(header: dict, arrays: dict[str, np.ndarray], options: AnalysisOptions) -> stream.Collected:
    """A :class:`stream.Collected` holding one partial's statistics and sample (span features added later)."""
    from layerwise.analyze.spans import SpanFeatures
    from layerwise.stats.grids import GridStats, grids_for
    from layerwise.stats.sample import FrameSampler

    layers, dims, meta = header["keys"], header["dims"], header["meta"]
    is_span = "spans_counts" in arrays
    grids = None if is_span else grids_for(meta, layers)
    stats = GridStats(layers, dims, grids, precision=header["precision"])
    stats.load_state({k[len("stats_"):]: v for k, v in arrays.items() if k.startswith("stats_")})
    sampler = FrameSampler(layers, dims, max_points=int(header["max_points"]), seed=int(header["seed"]))
    sampler.load_state({k[len("sample_"):]: v for k, v in arrays.items() if k.startswith("sample_")})
    return stream.Collected(layers, dims, grids, meta, header["files"][0], stats, sampler,
                             SpanFeatures() if is_span else None, files=list(header["files"]))
