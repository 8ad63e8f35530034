"""visualize_features.py's exit rule (README "Exit status"): what it prints for measures that were not produced."""

from __future__ import annotations

import logging

from layerwise.cli.visualize import exit_status


def test_missing_measures_that_share_a_reason_are_named_together_with_the_reason_once(caplog, tmp_path):
    reason = "needs >= 2 speakers; the analysed files hold one speaker only"
    summary = {"requested_measures": ["speaker_probe_accuracy", "speaker_pwcca", "cca_intra", "cca_mel"],
               "unavailable": {"speaker_probe_accuracy": reason, "speaker_pwcca": reason,
                               "cca_intra": "add 0 to --layers", "not_requested": "ignored"}}
    log = logging.getLogger("test_visualize")
    with caplog.at_level(logging.INFO, logger="test_visualize"):
        assert exit_status(summary, str(tmp_path), log) == 1
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("not produced"))
    assert line.count(reason) == 1
    assert f"speaker_probe_accuracy, speaker_pwcca: {reason}" in line and "cca_intra: add 0 to --layers" in line
    assert "not_requested" not in line and "cca_mel" not in line  # produced, or never asked for
    assert str(tmp_path / "report.html") in caplog.text


def test_everything_produced_is_0_and_prints_the_report(caplog, tmp_path):
    log = logging.getLogger("test_visualize")
    with caplog.at_level(logging.INFO, logger="test_visualize"):
        assert exit_status({"requested_measures": ["cca_mel"], "unavailable": {"x": "not asked"}}, str(tmp_path),
                           log) == 0
    assert "not produced" not in caplog.text and str(tmp_path / "report.html") in caplog.text
