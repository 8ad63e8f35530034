"""bench/bench_analysis.py runs offline and prints/writes every row it promises (a tiny configuration)."""

from __future__ import annotations

import json

import pytest

from bench import bench_analysis

pytestmark = pytest.mark.slow  # end-to-end: subprocess runs of the CLIs / the wrapper


def test_bench_analysis_smoke(tmp_path, capsys):
    out = tmp_path / "analysis.json"
    assert bench_analysis.main(["--files", "3", "--frames", "40", "--extract_seconds", "2.5", "--max_points", "20",
                                "--no_figures", "--float64", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for text in ("GEMM peak", "fp32 extraction", "float32", "float64", "PCA + t-SNE", "peak RSS", "targets"):
        assert text in printed
    result = json.loads(out.read_text())
    rows = {r["precision"]: r for r in result["streaming_pass"]}
    assert set(rows) == {"float32", "float64"} and rows["float32"]["frames"] == rows["float64"]["frames"] > 0
    for row in rows.values():
        assert row["frames_per_s"] > 0 and row["vs_extraction"] > 0 and 0 < row["peak_fraction"]
        assert abs(row["x_realtime"] * 50 - row["frames_per_s"]) < 1e-6 * row["frames_per_s"]
    assert result["extraction"]["frames_per_s"] > 0 and result["pca_tsne_s"] > 0
