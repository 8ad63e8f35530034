"""bench/bench_analysis.py runs offline and prints/writes every row it promises (a tiny configuration)."""

from __future__ import annotations

import json

import pytest

from bench import bench_analysis

pytestmark = pytest.mark.slow  # end-to-end: subprocess runs of the CLIs / the wrapper


def test_bench_analysis_smoke(tmp_path, capsys):
    out = tmp_path / "analysis.json"
    assert bench_analysis.main(["--files", "3", "--frames", "40", "--extract_seconds", "2.5", "--max_points", "20",
                                "--no_figures", "--float64", "--ratio_seconds", "7", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for text in ("GEMM peak", "fp32 extraction", "float32", "float64", "PCA + t-SNE", "peak RSS", "targets",
                 "CPU flags", "analysis ratio", "streaming_pass", "pca_tsne", "report", "whole"):
        assert text in printed
    result = json.loads(out.read_text())
    rows = {r["precision"]: r for r in result["streaming_pass"]}
    assert set(rows) == {"float32", "float64"} and rows["float32"]["frames"] == rows["float64"]["frames"] > 0
    for row in rows.values():
        assert row["frames_per_s"] > 0 and row["vs_extraction"] > 0 and 0 < row["peak_fraction"]
        assert abs(row["x_realtime"] * 50 - row["frames_per_s"]) < 1e-6 * row["frames_per_s"]
    assert result["extraction"]["frames_per_s"] > 0 and result["pca_tsne_s"] > 0
    ratio = result["analysis_ratio"]
    stages = ratio["stages_s"]
    assert ratio["files"] == 1 and ratio["extraction_wall_s"] > 0 and all(v >= 0 for v in stages.values())
    assert {"streaming_pass", "pca_tsne", "figures", "report"} <= set(stages)
    # the ratios are the stage sums over the extraction wall, fixed and scaling stages partition the stages
    assert ratio["scaling_s"] + ratio["fixed_s"] == pytest.approx(sum(stages.values()))
    assert ratio["whole_vs_extraction"] == pytest.approx(ratio["analysis_wall_s"] / ratio["extraction_wall_s"])
    assert ratio["analysis_wall_s"] >= sum(stages.values()) - 1e-6
