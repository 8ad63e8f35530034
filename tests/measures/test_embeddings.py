"""measures/embeddings.py: GloVe, word2vec text and binary files written here; only the asked words are kept, the
missing ones counted; embeddings that are a linear map of a layer give CCA ≈ 1 for that layer, not for noise."""

from __future__ import annotations

import numpy as np
import pytest

from layerwise.errors import AnalysisError
from layerwise.measures import embeddings as emb

WORDS = [f"w{i}" for i in range(40)]


def table(dim=6, seed=0):
    rng = np.random.default_rng(seed)
    return {w: rng.normal(size=dim).astype(np.float32) for w in WORDS}


def write_glove(path, vectors):
    path.write_text("".join(f"{w} {' '.join(repr(float(x)) for x in v)}\n" for w, v in vectors.items()))
    return path


def write_word2vec_text(path, vectors):
    dim = len(next(iter(vectors.values())))
    path.write_text(f"{len(vectors)} {dim}\n" + "".join(f"{w} {' '.join(repr(float(x)) for x in v)}\n"
                                                       for w, v in vectors.items()))
    return path


def write_word2vec_binary(path, vectors):
    """The reference word2vec binary layout: header line, then ``word `` + float32 little-endian + newline."""
    dim = len(next(iter(vectors.values())))
    with open(path, "wb") as f:
        f.write(f"{len(vectors)} {dim}\n".encode())
        f.writelines(w.encode() + b" " + np.asarray(v, "<f4").tobytes() + b"\n" for w, v in vectors.items())
    return path


@pytest.mark.parametrize("writer, kind", [(write_glove, "glove"), (write_word2vec_text, "word2vec_text"),
                                          (write_word2vec_binary, "word2vec_binary")])
def test_each_format_reads_only_the_asked_words_with_their_values(tmp_path, writer, kind):
    vectors = table()
    path = writer(tmp_path / "vectors", vectors)
    found = emb.read_embeddings(path, ["w3", "W7", "absent"])
    assert found.format == kind and found.dim == 6 and found.n_read == len(WORDS)
    assert set(found.vectors) == {"w3", "w7"}  # W7 found lower-cased
    np.testing.assert_allclose(found.lookup("W7"), vectors["w7"], rtol=1e-6)
    assert found.lookup("absent") is None


def test_a_malformed_line_is_named(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("a 1.0 2.0\nb 1.0 x\n")
    with pytest.raises(AnalysisError, match="line 2"):
        emb.read_embeddings(path, ["b"])


def segments(seed=0, n_utts=30, per_utt=25, dim=6):
    """(layer features, words, utterance ids, word vectors): layer_0 a linear map of the word vectors plus small
    noise, layer_1 noise; words from WORDS plus one word missing from the file."""
    rng = np.random.default_rng(seed)
    vectors = table(dim)
    words = rng.choice(WORDS + ["missing"], size=n_utts * per_utt)
    groups = np.repeat([f"u{i}" for i in range(n_utts)], per_utt)
    y = np.stack([vectors.get(w, np.zeros(dim)) for w in words])
    mix = rng.normal(size=(dim, 10))
    features = {"layer_0": y @ mix + 0.01 * rng.normal(size=(len(words), 10)),
                "layer_1": rng.normal(size=(len(words), 10))}
    return features, words, groups, vectors


@pytest.mark.parametrize("protocol", ["centred", "pasad"])
def test_planted_linear_map_gives_cca_near_one_and_noise_far_below(tmp_path, protocol):
    features, words, groups, vectors = segments()
    found = emb.read_embeddings(write_glove(tmp_path / "glove.txt", vectors), set(words.tolist()))
    family = emb.embedding_cca(features, words, groups, found, seed=0, protocol=protocol, n_boot=50)
    values = family.values[emb.NAME]
    assert values["layer_0"] > 0.98 and values["layer_1"] < 0.5
    info = family.info[emb.INFO_KEY]
    assert info["n_words_missing"] == 1 and info["missing_words"] == ["missing"]
    assert info["n_segments_missing"] == int(np.sum(words == "missing"))
    low, high = family.intervals[emb.NAME]["layer_0"]
    assert low <= values["layer_0"] <= high
    assert family.chance[emb.NAME]["layer_0"] < 0.5


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
def test_a_kept_vector_with_nan_or_inf_is_refused_naming_its_line(tmp_path, bad):
    vectors = table()
    path = write_glove(tmp_path / "glove.txt", vectors)
    lines = path.read_text().splitlines()
    lines[4] = f"w4 1 2 {bad} 4 5 6"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(AnalysisError, match=r"glove.txt line 5: the vector of 'w4' holds NaN or inf"):
        emb.read_embeddings(path, ["w4"])
    w2v = write_word2vec_text(tmp_path / "w2v.txt", vectors)
    lines = w2v.read_text().splitlines()
    lines[5] = f"w4 1 2 {bad} 4 5 6"  # line 6 of the file: the header is line 1
    w2v.write_text("\n".join(lines) + "\n")
    with pytest.raises(AnalysisError, match=r"w2v.txt line 6: the vector of 'w4'"):
        emb.read_embeddings(w2v, ["w4"])


@pytest.mark.parametrize("writer", [write_glove, write_word2vec_binary])
def test_a_duplicate_word_keeps_its_first_vector_and_is_counted(tmp_path, writer, caplog):
    vectors = table()
    path = writer(tmp_path / "first", vectors)
    again = writer(tmp_path / "again", {"w3": np.full(6, 9.0, np.float32), "w5": np.full(6, 7.0, np.float32)})
    path.write_bytes(path.read_bytes() + (again.read_bytes().split(b"\n", 1)[1] if writer is write_word2vec_binary
                                          else again.read_bytes()))
    if writer is write_word2vec_binary:  # the header must count every entry
        path.write_bytes(path.read_bytes().replace(f"{len(WORDS)} 6\n".encode(), f"{len(WORDS) + 2} 6\n".encode(),
                                                   1))
    with caplog.at_level("WARNING"):
        found = emb.read_embeddings(path, ["w3", "w7"])
    np.testing.assert_allclose(found.lookup("w3"), vectors["w3"], rtol=1e-6)  # the first entry, not the 9s
    assert found.duplicates == {"w3": 1} and "listed more than once (w3)" in caplog.text
    info = emb.match(np.array(["w3", "w7", "w3"]), found).info
    assert info["n_duplicate_entries"] == 1 and info["duplicate_words"] == ["w3"]


def test_a_word2vec_text_header_that_miscounts_is_refused_with_both_numbers(tmp_path):
    path = write_word2vec_text(tmp_path / "w2v.txt", table())
    path.write_text(path.read_text().replace(f"{len(WORDS)} 6\n", f"{len(WORDS) + 3} 6\n", 1))
    with pytest.raises(AnalysisError, match=f"header says {len(WORDS) + 3} words, the file holds {len(WORDS)} "
                                            f"entries"):
        emb.read_embeddings(path, ["w3"])
