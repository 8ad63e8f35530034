"""alignments.py: one alignment written in every format (by hand here) gives the same segments."""

import json

import numpy as np
import pytest

from layerwise.contract import alignments
from layerwise.errors import AlignmentError, UsageError
from layerwise.extract import spans
from tests.conftest import write_textgrid

UTT = "84-121123-0000"
OTHER = "84-121123-0001"
WORDS = [(0.0, 0.3, ""), (0.3, 0.41, "hello"), (0.41, 0.53, "world"), (0.53, 0.6, ""), (0.6, 1.17, "again")]
PHONES = [(0.3, 0.36, "HH"), (0.36, 0.41, "AH0"), (0.41, 0.53, "W"), (0.6, 1.17, "AH1")]
END = 1.2


def write_all(root):
    """The same words/phones of UTT (plus a one-word OTHER) as TextGrid, CTM, LibriSpeech lines and reference JSON."""
    for fmt in ("textgrid", "ctm", "librispeech", "json"):
        (root / fmt).mkdir(parents=True)
    write_textgrid(root / "textgrid" / f"{UTT}.TextGrid", {"words": WORDS, "phones": PHONES}, END)
    write_textgrid(root / "textgrid" / f"{OTHER}.TextGrid", {"words": [(0.0, 0.5, "yes")]}, END)
    # CTM: start and duration as decimal text (0.41 - 0.3 written as "0.11"), one tier per file
    def ctm(rows, utt):
        return "".join(f"{utt} 1 {s:.2f} {round(e - s, 2):.2f} {lab}\n" for s, e, lab in rows if lab)
    (root / "ctm" / "words.ctm").write_text(ctm(WORDS, UTT) + ctm([(0.0, 0.5, "yes")], OTHER))
    (root / "ctm" / "phones.ctm").write_text(";; comment\n" + ctm(PHONES, UTT))
    # LibriSpeech lines: every segment's end, empty word = silence (words only)
    words = ",".join(lab for _, _, lab in WORDS) + ","
    ends = ",".join(f"{e:.3f}" for _, e, _ in WORDS) + f",{END:.3f}"
    (root / "librispeech" / "84-121123.alignment.txt").write_text(
        f'{UTT} "{words}" "{ends}"\n{OTHER} "yes," "0.500,{END:.3f}"\n')
    # reference JSON: label -> [[utt, audio_path, start, end], ...] as strings, one file per unit
    for unit, rows, extra in (("word", WORDS, [(OTHER, 0.0, 0.5, "yes")]), ("phone", PHONES, [])):
        content = {}
        for utt, s, e, lab in [(UTT, *r) for r in rows if r[2]] + extra:
            content.setdefault(lab, []).append([utt, f"audio/{utt}.flac", str(s), str(e)])
        (root / "json" / f"alignment_{unit}_dev-clean.json").write_text(json.dumps(content))


@pytest.mark.parametrize("fmt", ["textgrid", "ctm", "librispeech", "json"])
def test_every_format_gives_the_same_segments(tmp_path, fmt):
    write_all(tmp_path)
    found = alignments.find_alignments(tmp_path / fmt)
    assert sorted(found) == [UTT, OTHER]
    words = alignments.read_spans(found[UTT], "words")
    assert [(s.start, s.end, s.label) for s in words] == [w for w in WORDS if w[2]]  # exact floats: 0.41, not 0.41000000000000003
    assert [(s.start, s.end, s.label) for s in alignments.read_spans(found[OTHER], "words")] == [(0.0, 0.5, "yes")]
    # the same through the explicit format and through auto on the folder above (formats mixed: each utterance once)
    assert alignments.find_alignments(tmp_path / fmt, alignment_format=fmt)[UTT] == found[UTT]
    if fmt == "librispeech":
        with pytest.raises(AlignmentError, match=r"no tier 'phones'.*\['words'\]"):
            alignments.read_spans(found[UTT], "phones")
    else:
        phones = alignments.read_spans(found[UTT], "phones", strip_stress_digits=True)
        assert [(s.start, s.end, s.label) for s in phones] == [(s, e, alignments.strip_stress(lab)) for s, e, lab in PHONES]


def test_pooled_features_equal_across_formats(tmp_path):
    write_all(tmp_path)
    rng = np.random.default_rng(1)
    centres = (np.arange(59) * 320 + 200) / 16000
    feats = {"layer_0": rng.normal(size=(59, 3))}
    pooled = []
    for fmt in ("textgrid", "ctm", "librispeech", "json"):
        segments = alignments.read_spans(alignments.find_alignments(tmp_path / fmt)[UTT], "words")
        pooled.append(spans.pool_segments(feats, centres, segments, audio_seconds=END, tolerance_s=0.02,
                                          rule="pasad", frame_rate=50.0)[0]["layer_0"])
    for other in pooled[1:]:
        np.testing.assert_array_equal(pooled[0], other)


def test_duplicates_unknown_format_and_bad_lines(tmp_path):
    write_all(tmp_path)
    with pytest.raises(AlignmentError, match="two alignments for (tier 'phones' of )?utterance '84-121123-000[01]'"):
        alignments.find_alignments(tmp_path)  # every format holds both utterances
    with pytest.raises(UsageError, match="alignment_format='praat'"):
        alignments.find_alignments(tmp_path / "ctm", alignment_format="praat")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.ctm").write_text(f"{UTT} 1 0.30 abc hello\n")
    with pytest.raises(AlignmentError, match=r"x.ctm:1: 'abc' is not a time"):
        alignments.find_alignments(bad)
    (bad / "x.ctm").unlink()
    (bad / "1-2.alignment.txt").write_text(f'{UTT} "a,b" "0.1"\n')
    with pytest.raises(AlignmentError, match="2 words but 1 end times"):
        alignments.find_alignments(bad)
    (bad / "1-2.alignment.txt").unlink()
    (bad / "other.json").write_text("{}")  # auto ignores JSON not named alignment_*; explicit json needs the unit
    assert alignments.find_alignments(bad) == {}
    with pytest.raises(AlignmentError, match="alignment_phone_<split>.json"):
        alignments.find_alignments(bad, alignment_format="json")


def test_source_is_opaque_but_named(tmp_path):
    write_all(tmp_path)
    source = alignments.find_alignments(tmp_path / "ctm")[UTT]
    assert isinstance(source, alignments.Source) and source.name in {"phones.ctm", "words.ctm"}
    assert alignments.read_segments(tmp_path / "textgrid" / f"{UTT}.TextGrid", "words")[0].label == "hello"


# --- issue 22, kind 7: text inputs decoded with BOM handling ------------------------------------------------------

@pytest.mark.parametrize("fmt", ["textgrid", "ctm", "librispeech", "json"])
def test_a_utf8_bom_changes_nothing_in_any_format(tmp_path, fmt):
    """Every alignment file saved again with a UTF-8 byte order mark (as Windows editors do) gives the same
    utterance ids and segments: the BOM never glues itself to the first id (a phantom utterance) or label. The
    TextGrid reader is praatio's (which strips it); the others decode with utf-8-sig."""
    write_all(tmp_path / "plain")
    write_all(tmp_path / "bom")
    for path in (tmp_path / "bom" / fmt).iterdir():
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    plain = alignments.find_alignments(tmp_path / "plain" / fmt)
    bom = alignments.find_alignments(tmp_path / "bom" / fmt)
    assert sorted(bom) == sorted(plain) == sorted([UTT, OTHER])
    for utt in plain:
        for tier in ("words", "phones") if fmt != "librispeech" and utt == UTT else ("words",):
            assert alignments.read_segments(bom[utt], tier) == alignments.read_segments(plain[utt], tier)


@pytest.mark.parametrize("fmt", ["textgrid", "ctm", "librispeech", "json"])
def test_tier_names_are_the_tiers_written(tmp_path, fmt):
    """tier_names of UTT in every format: the tiers write_all put there (TextGrid: both; CTM/JSON: one per file,
    merged; LibriSpeech: words only)."""
    write_all(tmp_path)
    expected = ["words"] if fmt == "librispeech" else ["phones", "words"]
    assert alignments.tier_names(alignments.find_alignments(tmp_path / fmt)[UTT]) == expected


def test_unreadable_alignment_files_name_the_file_on_one_line(tmp_path):
    """A malformed TextGrid, a CTM that is not UTF-8, a JSON file that is not JSON: AlignmentError naming the file,
    the whole reason on one line."""
    (tmp_path / "a.TextGrid").write_text("File type = \"ooTextFile\"\nObject class = \"TextGrid\"\n\nxmin = oops\n")
    with pytest.raises(AlignmentError) as err:
        alignments.tier_names(tmp_path / "a.TextGrid")
    assert "a.TextGrid" in str(err.value) and "\n" not in str(err.value)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "phones.ctm").write_bytes(b"u 1 0.1 0.2 \xff\xfe\n")
    with pytest.raises(AlignmentError, match=r"phones\.ctm") as err:
        alignments.find_alignments(tmp_path / "c")
    assert "\n" not in str(err.value)
    (tmp_path / "j").mkdir()
    (tmp_path / "j" / "alignment_phone_dev.json").write_text('{"AH": [\n')
    with pytest.raises(AlignmentError, match=r"alignment_phone_dev\.json") as err:
        alignments.find_alignments(tmp_path / "j")
    assert "\n" not in str(err.value)
