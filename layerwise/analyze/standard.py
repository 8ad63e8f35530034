"""The field's standard per-layer measures as stages of an analysis (issue 20): PNMI and purity (``analyze.pnmi``),
the gender probe (``measures.gender``) and word-embedding CCA (``measures.embeddings``).

:func:`stages` says which apply to a run (each is its own stage with its own ``wall_seconds`` entry: ``pnmi``,
``gender_probe``, ``word_embedding_cca``); each stage returns ``(family, the control's result or None, notes)`` as
the other families do, the random-init control computed the same way from its own files. :func:`requested` lists the
measures a run is expected to produce. Never imports torch.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from layerwise.analyze.control import ControlSource, check_control_file, read_control
from layerwise.analyze.options import AnalysisOptions
from layerwise.analyze.stream import Collected, control_meta, read
from layerwise.contract import layout, store
from layerwise.contract.results import ControlResult, MeasureFamily

log = logging.getLogger(__name__)

WORD_SPAN = "word"
EMBEDDINGS_NOTE = ("word_embeddings applies to word-span folders (extract_features.py --span word); this folder's "
                   "span is {span}: cca_word_embedding is not computed")

PNMI_FLAGS_NOTE = ("{flags} given without --alignment_dir: PNMI and purity need each file's phones, so they are not "
                   "computed (give --alignment_dir with the frame folder's alignments)")


def speakers_file(state: Collected, options: AnalysisOptions) -> Path | None:
    """``options.speakers_file``, else the ``SPEAKERS.TXT`` above the first file's recorded audio, else None."""
    from layerwise.contract.speakers import find_speakers_file

    return Path(options.speakers_file) if options.speakers_file is not None else find_speakers_file(state.meta)


def _applies(state: Collected, options: AnalysisOptions) -> dict[str, bool]:
    span = state.meta.get("span", layout.FRAME_SPAN)
    return {"pnmi": options.alignment_dir is not None and not state.is_span,
            "gender_probe": (state.is_span or state.properties is not None)
                            and speakers_file(state, options) is not None,
            "word_embedding_cca": options.word_embeddings is not None and state.is_span and span == WORD_SPAN}


def stages(state: Collected, options: AnalysisOptions) -> list[tuple[str, object]]:
    """(stage name, function(state, options, source) -> (family, control, notes)) of every stage that applies."""
    parts = {"pnmi": _pnmi, "gender_probe": _gender, "word_embedding_cca": _embeddings}
    found = [(name, parts[name]) for name, on in _applies(state, options).items() if on]
    if options.word_embeddings is not None and not _applies(state, options)["word_embedding_cca"]:
        found.append(("word_embedding_cca", _embeddings_note))
    if options.alignment_dir is None and _pnmi_flags(options):
        found.append(("pnmi", _pnmi_note))
    return found


def _pnmi_flags(options: AnalysisOptions) -> list[str]:
    """The PNMI flags set away from their defaults (``--pnmi_clusters``, ``--pnmi_fit_frames``)."""
    from layerwise.analyze.options import DEFAULT_PNMI_CLUSTERS, DEFAULT_PNMI_FIT_FRAMES

    default_ks = tuple(int(k) for k in DEFAULT_PNMI_CLUSTERS.split(","))
    return [flag for flag, changed in (("--pnmi_clusters", tuple(options.pnmi_clusters) != default_ks),
                                       ("--pnmi_fit_frames", options.pnmi_fit_frames != DEFAULT_PNMI_FIT_FRAMES))
            if changed]


def _pnmi_note(state, options, source):
    return MeasureFamily(), None, [PNMI_FLAGS_NOTE.format(flags=" and ".join(_pnmi_flags(options)))]


def requested(state: Collected, options: AnalysisOptions) -> list[str]:
    """The measures of the stages that apply and were asked for (an unavailable one makes the CLI exit 1): the
    gender probe only with an explicit speakers_file (one found next to the audio is used, never required)."""
    names = {"pnmi": ["pnmi", "phone_purity", "cluster_purity"], "gender_probe": ["gender_probe_accuracy"],
             "word_embedding_cca": ["cca_word_embedding"]}
    asked = {**_applies(state, options)}
    asked["gender_probe"] = asked["gender_probe"] and options.speakers_file is not None
    return [m for stage, on in asked.items() if on for m in names[stage]]


def _pnmi(state, options, source):
    from layerwise.analyze import pnmi

    return pnmi.analyse(state, options, source)


def _embeddings_note(state, options, source):
    return MeasureFamily(), None, [EMBEDDINGS_NOTE.format(span=state.meta.get("span", layout.FRAME_SPAN))]


# ------------------------------------------------------------------------------------------------ gender
def _utterance_means(state: Collected) -> tuple[list[str], dict[str, np.ndarray]]:
    """(stems, layer -> (n_utts, D) float64): frame folders the speaker probe's utterance means, span folders the
    mean of each utterance's segments."""
    if state.is_span:
        return list(state.spans.stems), {k: np.stack([v.mean(axis=0, dtype=np.float64) for v in parts])
                                         for k, parts in state.spans.layers.items()}
    c = state.properties
    return list(c.stems), {k: np.stack(c.means[k]) for k in c.layers}


def _control_means(folder: Path, stems: list[str], layers: list[str], meta: dict):
    """The same utterance means from the control's files of ``stems`` (each checked with the control rule)."""
    files = {store.stem_of(p): p for p in store.list_feature_files(folder)}
    shared = [s for s in stems if s in files]
    means: dict[str, list] = {k: [] for k in layers}
    for stem in shared:
        ff = read(files[stem], layers)
        check_control_file(ff, meta)
        for key in layers:
            means[key].append(np.asarray(ff.layers[key]).mean(axis=0, dtype=np.float64))
    return shared, {k: np.stack(v) for k, v in means.items()} if shared else {}


def _gender_family(stems, features, sexes_of: dict[str, str], options: AnalysisOptions) -> MeasureFamily:
    from layerwise.contract.names import speakers_of
    from layerwise.measures.gender import INFO_KEY, NAME, gender_probe

    speakers, reason = speakers_of(stems)
    if speakers is None:
        return MeasureFamily(unavailable={NAME: reason})
    known = np.array([s in sexes_of for s in speakers], bool)
    family = gender_probe({k: v[known] for k, v in features.items()}, speakers[known],
                          np.array([sexes_of[s] for s in speakers[known]]), seed=options.seed,
                          n_splits=options.probe_splits, n_boot=options.n_boot)
    family.info[INFO_KEY]["utterances_of_unlisted_speakers"] = int((~known).sum())
    return family


def _gender(state: Collected, options: AnalysisOptions, source: ControlSource | None):
    from layerwise.contract.speakers import read_speakers

    path = speakers_file(state, options)
    sexes_of = read_speakers(path)
    stems, features = _utterance_means(state)
    family = _gender_family(stems, features, sexes_of, options)
    family.info["gender_probe_info"]["speakers_file"] = str(path)
    notes = list(family.notes)
    if family.info["gender_probe_info"]["utterances_of_unlisted_speakers"]:
        notes.append(f"gender probe: {family.info['gender_probe_info']['utterances_of_unlisted_speakers']} "
                     f"utterance(s) of speakers not listed in {path} are left out")
    control = None
    if source is not None and source.folder is not None:
        shared, theirs = _control_means(source.folder, stems, state.layers, state.meta)
        if shared:
            control = ControlResult.of(_gender_family(shared, theirs, sexes_of, options), features_dir=source.folder,
                                       n_files=len(shared), meta=control_meta(source.folder, shared))
    return family, control, notes


# ------------------------------------------------------------------------------------------------ embeddings
def _embeddings(state: Collected, options: AnalysisOptions, source: ControlSource | None):
    from layerwise.measures.embeddings import INFO_KEY, embedding_cca, read_embeddings

    features, words, groups = state.spans.arrays()
    embeddings = read_embeddings(options.word_embeddings, set(words.tolist()))
    settings = {"seed": options.seed, "n_splits": options.probe_splits, "protocol": options.cca_protocol,
                "n_boot": options.n_boot}
    family = embedding_cca(features, words, groups, embeddings, **settings)
    info = family.info[INFO_KEY]
    notes = []
    if info["n_words_missing"]:
        notes.append(f"word-embedding CCA: {info['n_words_missing']} of the {info['n_words']} words "
                     f"({info['n_segments_missing']} of {info['n_segments']} segments) are not in "
                     f"{options.word_embeddings}; those segments are left out (cca_word_embedding_info)")
    if info["n_duplicate_entries"]:
        notes.append(f"word-embedding CCA: {len(embeddings.duplicates)} analysed word(s) are listed more than once in "
                     f"{options.word_embeddings} ({info['n_duplicate_entries']} later entries ignored: the first "
                     f"entry of each word is used; cca_word_embedding_info.duplicate_words)")
    control = None
    if source is not None and source.folder is not None:
        theirs = read_control(source.folder, state.spans, state.meta, dict(zip(state.layers, state.dims)))
        c_features, c_words, c_groups = theirs.arrays()
        control = ControlResult.of(embedding_cca(c_features, c_words, c_groups, embeddings, **settings),
                                   features_dir=source.folder, n_files=len(theirs.stems),
                                   meta=control_meta(source.folder, theirs.stems))
    return family, control, notes
