"""report.py: summary.csv span columns and the span table of report.html, from hand-written summaries."""

import csv

from layerwise import report


def test_span_columns_and_csv():
    summary = {"probe_accuracy": {"layer_0": 0.5, "layer_1": 0.75}, "probe_majority_baseline": 0.25,
               "pwcca": {"layer_0": 0.1, "layer_1": float("nan")},
               "random_init": {"probe_accuracy": {"layer_0": 0.3, "layer_1": 0.35}, "pwcca": {"layer_0": 0.0,
                                                                                            "layer_1": 0.05}}}
    row = report.span_columns(summary, "layer_1")
    assert list(row) == ["probe_accuracy", "pwcca", "probe_majority_baseline", "random_init_probe_accuracy",
                         "random_init_pwcca"] and row["pwcca"] != row["pwcca"]  # NaN kept (written empty)
    row = report.span_columns(summary, "layer_0")
    assert row == {"probe_accuracy": 0.5, "pwcca": 0.1, "probe_majority_baseline": 0.25,
                   "random_init_probe_accuracy": 0.3, "random_init_pwcca": 0.0}  # no mi: not computed
    assert report.span_columns({"mean": {"layer_0": 1.0}}, "layer_0") == {}  # frame folders: no columns
    assert report.span_columns({**summary, "random_init": {"span_measures_skipped": "x"}}, "layer_0") == {
        "probe_accuracy": 0.5, "pwcca": 0.1, "probe_majority_baseline": 0.25}


def test_csv_writes_nan_as_empty(tmp_path):
    rows = [{"layer": k, **report.span_columns({"probe_accuracy": {"layer_0": 0.5}, "pwcca": {"layer_0":
                                                float("nan")}, "probe_majority_baseline": 0.2}, k)}
            for k in ("layer_0",)]
    report.write_summary_csv(tmp_path, rows)
    with open(tmp_path / "summary.csv", newline="") as handle:
        (read,) = list(csv.DictReader(handle))
    assert read == {"layer": "layer_0", "probe_accuracy": "0.5", "pwcca": "", "probe_majority_baseline": "0.2"}
