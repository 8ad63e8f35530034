"""Word-embedding CCA (Pasad et al., TACL 2024): CCA between each layer's word-segment features and an embedding of
the segment's word (GloVe, word2vec, acoustically grounded word embeddings: any file in these formats).

The reader (:func:`read_embeddings`) streams the file once and keeps only the words asked for (the analysed
segments' vocabulary), so a 400,000-word GloVe file costs its reading time, not its size in memory. Formats:

- GloVe text: ``word v1 … vd`` per line, no header;
- word2vec text: a first line ``count dim``, then lines as GloVe;
- word2vec binary: a first line ``count dim``, then per word ``word<space>`` followed by d little-endian float32
  (and, as the reference writer does, an optional newline).

A word listed twice keeps its first vector (the others are counted and logged); a kept vector with NaN or inf, or a
word2vec text header whose count differs from the entries, is refused naming the line or both numbers.
A word is looked up as written, else lower-cased (GloVe's vocabulary is lower case; LibriSpeech alignments are
often upper case). CCA (:func:`embedding_cca`) uses the protocols of the phone/word PWCCA: ``centred``
(``pwcca.views_heldout`` on seeded utterance splits, ``span.utterance_splits``) or ``pasad``
(``span.pasad_scored``: 10 word-stratified parts, 3 trials), each with the interval and chance level of
``measures.resample`` (embeddings permuted within each part of the split). No torch.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import numpy as np

from layerwise.contract.results import MeasureFamily
from layerwise.errors import AnalysisError

log = logging.getLogger(__name__)

NAME = "cca_word_embedding"  # summary.json key (contract.layout.MEASURES)
INFO_KEY = "cca_word_embedding_info"
_HEADER = re.compile(rb"^\s*(\d+)\s+(\d+)\s*$")  # word2vec's first line: count dim
MAX_SEGMENTS = 10_000  # as span.span_measures: above it, a seeded subset of whole utterances


@dataclass
class Embeddings:
    """The vectors of the words asked for. vectors : word as in the file -> (dim,) float64; dim; format
    (``glove``, ``word2vec_text``, ``word2vec_binary``); n_read : entries in the file."""

    vectors: dict[str, np.ndarray]
    dim: int
    format: str
    n_read: int = 0
    path: str = ""
    duplicates: dict[str, int] = field(default_factory=dict)  # kept word -> later entries ignored (first wins)

    def lookup(self, word: str) -> np.ndarray | None:
        """The vector of ``word`` as written, else lower-cased, else None."""
        found = self.vectors.get(word)
        return found if found is not None else self.vectors.get(word.lower())


def _wanted(vocabulary) -> set[str]:
    return {w for word in vocabulary for w in (str(word), str(word).lower())}


def _keep(out: dict, duplicates: dict, text: str, values: np.ndarray, where: str, path: Path) -> None:
    """Store a wanted word's vector: the first entry of a word wins (later ones counted in ``duplicates``); a NaN or
    inf value is refused naming ``where`` (the line, or the binary entry)."""
    if text in out:
        duplicates[text] = duplicates.get(text, 0) + 1
        return
    if not np.all(np.isfinite(values)):
        raise AnalysisError(f"word_embeddings {path} {where}: the vector of {text!r} holds NaN or inf; fix or remove "
                            f"that entry")
    out[text] = values


def _binary(handle, count: int, dim: int, wanted: set[str], path: Path, duplicates: dict) -> tuple[dict, int]:
    out, n = {}, 0
    width = 4 * dim
    for n in range(1, count + 1):
        word = bytearray()
        while (ch := handle.read(1)) != b" ":
            if not ch:
                raise AnalysisError(f"word_embeddings {path}: the binary file ends after {n - 1} of {count} words")
            if ch != b"\n" or word:  # the newline that ends the previous vector
                word += ch
        data = handle.read(width)
        if len(data) < width:
            raise AnalysisError(f"word_embeddings {path}: word {n} ({bytes(word)!r}) has {len(data)} of {width} "
                                f"bytes; the binary file is cut")
        text = bytes(word).decode("utf-8", errors="replace")
        if text in wanted:
            _keep(out, duplicates, text, np.frombuffer(data, "<f4").astype(np.float64), f"entry {n}", path)
    return out, n


def _text(handle, first: bytes | None, dim: int | None, wanted: set[str], path: Path, duplicates: dict,
          line_offset: int = 0) -> tuple[dict, int, int]:
    out, n = {}, 0
    lines = ([first] if first is not None else [])
    for number, line in enumerate(chain(lines, handle), 1 + line_offset):
        if not line.strip():
            continue
        n += 1
        word, _, rest = line.rstrip(b"\r\n").partition(b" ")
        text = word.decode("utf-8", errors="replace")
        if dim is None or text in wanted:
            try:
                values = np.array(rest.split(), np.float64)
            except ValueError as err:
                raise AnalysisError(f"word_embeddings {path} line {number}: not 'word v1 ... vd' ({err})") from err
            dim = dim or len(values)
            if len(values) != dim:
                raise AnalysisError(f"word_embeddings {path} line {number}: {len(values)} values, expected {dim}")
            if text in wanted:
                _keep(out, duplicates, text, values, f"line {number}", path)
    if dim is None:
        raise AnalysisError(f"word_embeddings {path} holds no vector")
    return out, n, dim


def read_embeddings(path: str | Path, vocabulary) -> Embeddings:
    """The vectors of ``vocabulary`` (an iterable of words; each also looked up lower-cased) from a GloVe or
    word2vec (text or binary) file, streamed once (module docstring). Raises AnalysisError naming the file (and the
    line) for a file that does not parse, a kept word's vector with NaN or inf, or a word2vec text file whose
    header count differs from its entries. A word listed twice keeps its first vector (the rest are counted in
    ``duplicates`` and logged)."""
    path = Path(path)
    wanted = _wanted(vocabulary)
    duplicates: dict[str, int] = {}
    found = _read(path, wanted, duplicates)
    found.duplicates = duplicates
    if duplicates:
        log.warning("word_embeddings %s: %d word(s) listed more than once (%s); the first entry of each is used",
                    path, len(duplicates), ", ".join(sorted(duplicates)[:5]))
    return found


def _read(path: Path, wanted: set[str], duplicates: dict) -> Embeddings:
    try:
        with open(path, "rb") as handle:
            first = handle.readline()
            header = _HEADER.match(first)
            if header is None:
                vectors, n, dim = _text(handle, first, None, wanted, path, duplicates)
                return Embeddings(vectors, dim, "glove", n, str(path))
            count, dim = int(header.group(1)), int(header.group(2))
            start = handle.tell()
            probe = handle.readline()
            handle.seek(start)
            if _is_text(probe, dim):
                vectors, n, _ = _text(handle, None, dim, wanted, path, duplicates, line_offset=1)
                if n != count:
                    raise AnalysisError(f"word_embeddings {path}: the word2vec header says {count} words, the file "
                                        f"holds {n} entries; fix the header or the file")
                return Embeddings(vectors, dim, "word2vec_text", n, str(path))
            vectors, n = _binary(handle, count, dim, wanted, path, duplicates)
            return Embeddings(vectors, dim, "word2vec_binary", n, str(path))
    except OSError as err:
        raise AnalysisError(f"word_embeddings {path}: cannot read it ({type(err).__name__}: {err})") from err


def _is_text(line: bytes, dim: int) -> bool:
    """Whether the first entry after a word2vec header is a text line of ``dim`` numbers."""
    try:
        return len(line.decode("ascii").split()) == dim + 1 and all(
            float(v) is not None for v in line.decode("ascii").split()[1:])
    except (UnicodeDecodeError, ValueError):
        return False


@dataclass
class Matched:
    """Segments whose word has a vector: mask (n_segments,) bool, the vectors (n_kept, dim), counts for the info."""

    mask: np.ndarray
    vectors: np.ndarray
    info: dict = field(default_factory=dict)


def match(words: np.ndarray, embeddings: Embeddings) -> Matched:
    """Each segment's vector; segments whose word the file lacks are left out and counted (segments and words)."""
    found = [embeddings.lookup(str(w)) for w in words]
    mask = np.array([v is not None for v in found], bool)
    missing = sorted({str(w) for w, v in zip(words, found) if v is None})
    vectors = np.stack([v for v in found if v is not None]) if mask.any() else np.zeros((0, embeddings.dim))
    info = {"file": embeddings.path, "format": embeddings.format, "dim": embeddings.dim,
            "entries_read": embeddings.n_read, "n_segments": len(words), "n_segments_matched": int(mask.sum()),
            "n_segments_missing": int((~mask).sum()), "n_words": len({str(w) for w in words}),
            "n_words_missing": len(missing), "missing_words": missing[:50],
            "n_duplicate_entries": sum(embeddings.duplicates.values()),
            "duplicate_words": sorted(embeddings.duplicates)[:50]}
    return Matched(mask, vectors, info)


def _scored(x, y, words, groups, *, protocol: str, seed: int, n_splits: int):
    """One layer's CCA with the embeddings as a ``resample.Scored`` (value, interval inputs, chance)."""
    from layerwise.measures import pasad, pwcca
    from layerwise.measures.resample import Scored, centred_pwcca_scorer, permute_within
    from layerwise.measures.span import pasad_scored, utterance_splits

    if protocol == "pasad":
        parts = pasad.stratified_parts(words, len(x), seed=seed)
        return pasad_scored(x, y, parts, pasad.draw_trials(seed=seed), pasad.draw_eps_pairs(seed=seed), groups,
                            chance_y=permute_within(y, parts, seed=seed))[0]
    splits = utterance_splits(groups, n_splits=n_splits, seed=seed)
    kept = [{} for _ in splits]
    scores = [pwcca.views_heldout(x, y, split, keep)[0] for split, keep in zip(splits, kept)]
    scorers = [centred_pwcca_scorer(keep, groups[split[2]]) for keep, split in zip(kept, splits)]
    chance = float(np.mean([pwcca.views_heldout(x, permute_within(y, split, seed=[seed, i]), split)[0]
                            for i, split in enumerate(splits)]))
    return Scored(float(np.mean(scores)), [f for f, _ in scorers], [g for _, g in scorers], scores,
                  sum(len(split[2]) for split in splits), chance)


def embedding_cca(features: dict[str, np.ndarray], words: np.ndarray, groups: np.ndarray, embeddings: Embeddings,
                  *, seed: int = 0, n_splits: int = 3, protocol: str = "centred", n_boot: int = 0) -> MeasureFamily:
    """``cca_word_embedding`` per layer: CCA between word-segment features (layer -> (n, D)) and the embedding of
    each segment's word (``words`` (n,), ``groups`` (n,) utterance ids), with interval and chance level; what the
    file lacks goes to ``info[INFO_KEY]``. Segments beyond ``MAX_SEGMENTS`` are subsampled by whole utterances."""
    from threadpoolctl import threadpool_limits

    from layerwise.measures.resample import method_text
    from layerwise.measures.span import per_layer, subsample_utterances

    words, groups = np.asarray(words).astype(str), np.asarray(groups)
    matched = match(words, embeddings)
    family = MeasureFamily()
    keep = matched.mask.copy()
    keep[keep] = subsample_utterances(groups[keep], max_segments=MAX_SEGMENTS, seed=seed)
    y = matched.vectors[keep[matched.mask]]
    info = {**matched.info, "n_segments_used": int(keep.sum()), "protocol": protocol, "seed": seed,
            "n_splits": n_splits if protocol == "centred" else None, "max_segments": MAX_SEGMENTS}
    family.info[INFO_KEY] = info
    method = method_text("two_stage", n_boot, "utterances") if n_boot else None
    with threadpool_limits(limits=1):  # one layer converted at a time
        per_layer(NAME, features, lambda _, x: _scored(np.asarray(x, np.float64)[keep], y, words[keep], groups[keep],
                                                       protocol=protocol, seed=seed, n_splits=n_splits),
                  family, n_boot=n_boot, seed=seed, method=method)
    return family
