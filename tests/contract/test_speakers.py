"""contract/speakers.py: a SPEAKERS.TXT written here (comments, a name holding bars), errors, and the search above
a recorded audio path."""

from __future__ import annotations

import pytest

from layerwise.contract.speakers import find_speakers_file, read_speakers
from layerwise.errors import AnalysisError

TEXT = """; LibriSpeech speakers
;ID  |SEX| SUBSET           |MINUTES| NAME
14   | F | train-clean-360  | 25.03 | Kristin LeMoine
60   | M | train-clean-100  | 20.18 | |CBW|Simon

84   | F | dev-clean        |  8.02 | Christie Nowak
"""


def test_reads_sex_per_speaker(tmp_path):
    path = tmp_path / "SPEAKERS.TXT"
    path.write_text(TEXT)
    assert read_speakers(path) == {"14": "F", "60": "M", "84": "F"}


@pytest.mark.parametrize("text, message", [("14 | X | a | 1 | n\n", "line 1"), ("; only\n", "no speaker"),
                                           ("14 | F\n14 | M\n", "twice")])
def test_bad_files_are_named(tmp_path, text, message):
    path = tmp_path / "SPEAKERS.TXT"
    path.write_text(text)
    with pytest.raises(AnalysisError, match=message):
        read_speakers(path)


def test_found_above_the_recorded_audio(tmp_path):
    (tmp_path / "LibriSpeech" / "dev-clean" / "84" / "121123").mkdir(parents=True)
    (tmp_path / "LibriSpeech" / "SPEAKERS.TXT").write_text(TEXT)
    audio = tmp_path / "LibriSpeech" / "dev-clean" / "84" / "121123" / "84-121123-0000.flac"
    assert find_speakers_file({"source_path": str(audio)}) == tmp_path / "LibriSpeech" / "SPEAKERS.TXT"
    assert find_speakers_file({}) is None
    assert find_speakers_file({"source_path": str(tmp_path / "x" / "a.flac")}) is None
