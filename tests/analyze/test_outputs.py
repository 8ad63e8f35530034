"""What an analysis writes when writing goes wrong (issue 23, F3/F6): an unwritable --output_dir is refused before any
computation (exit 2), the numbers are written before the figures, a figure that raises is named and the rest is
still written (exit 1), a full disk is one line (exit 1), Ctrl-C is one line naming what was written (exit 130).
Every run goes through the CLI entry function ``visualize.main``."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal

import numpy as np
import pytest

from layerwise.analyze import run as analyze_run
from layerwise.analyze import stream
from layerwise.cli import visualize
from layerwise.contract import outputs
from layerwise.report import figures
from tests.analyze.test_run import cat, write_folder
from tests.conftest import sigterm_surfacing_wrapped

LENGTHS = [12, 20, 15]
# two cheap figures of the registry: the statistics (made to fail below) and one heatmap (drawn), so a run takes
# about a second instead of drawing all seven
KEPT_FIGURES = ("feature_statistics.png", "layer_similarity_cosine.png")


def _main(feat, out, *extra):
    return visualize.main(["--features_dir", str(feat), "--output_dir", str(out), "--num_files", "0",
                           "--max_points", "20", "--control_dir", "none", "--n_boot", "0", "--no_progress", *extra])


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """A 3-file, 2-layer frame folder (its arrays by stem) and only KEPT_FIGURES in the registry."""
    monkeypatch.setattr(figures, "FIGURES", tuple(f for f in figures.FIGURES if f.name in KEPT_FIGURES))
    return write_folder(tmp_path / "feat", LENGTHS, n_layers=2)


def _assert_numbers(out, data):
    """summary.json and summary.csv hold the numbers of the files (numpy on the arrays written)."""
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_frames"] == sum(LENGTHS) and summary["files"] == sorted(data)
    for key in ("layer_0", "layer_1"):
        x = cat(data, key)
        assert summary["mean"][key] == pytest.approx(x.mean(), rel=1e-5)
        assert summary["std"][key] == pytest.approx(x.std(), rel=1e-5)
    rows = (out / "summary.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("layer,")
    return summary


def test_a_failing_figure_is_named_and_everything_else_is_written_exit_1(tmp_path, folder, monkeypatch, caplog,
                                                                         capfd):
    from layerwise.report import plots

    def broken(*args, **kwargs):
        raise ValueError("planted failure")

    monkeypatch.setattr(plots, "feature_statistics", broken)
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO):
        code = _main(tmp_path / "feat", out)
    assert code == 1
    summary = _assert_numbers(out, folder)
    assert summary["figures"] == ["layer_similarity_cosine.png"]
    assert (out / "layer_similarity_cosine.png").is_file() and not (out / "feature_statistics.png").exists()
    assert any("feature_statistics.png" in note and "planted failure" in note for note in summary["notes"])
    page = (out / "report.html").read_text()
    assert "planted failure" in page and "layer_similarity_cosine" in page
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("feature_statistics.png" in e and "ValueError: planted failure" in e for e in errors)
    assert "Traceback" not in caplog.text + capfd.readouterr().err  # no traceback without --verbose


def test_the_numbers_are_on_disk_before_the_first_figure_is_drawn(tmp_path, folder, monkeypatch):
    out = tmp_path / "out"
    seen = []

    def first_figure(result, out_dir, todo):
        seen.append(json.loads((out / "summary.json").read_text()))
        raise KeyboardInterrupt  # stop here: the figures are not this test's subject

    monkeypatch.setattr(figures, "draw_all", first_figure)
    assert _main(tmp_path / "feat", out) == 130
    assert seen and seen[0]["figures"] == []
    _assert_numbers(out, folder)
    assert (out / "per_dim_stats.npz").is_file() and not (out / "report.html").exists()


def _unwritable(tmp_path):
    """An output folder this process cannot write to: a read-only folder (chmod 0o500), or, where chmod does not
    bind (root), a path under a regular file, which can never be created."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    if not os.access(ro, os.W_OK):
        return ro
    (tmp_path / "a_file").write_text("not a folder")
    return tmp_path / "a_file" / "out"


@pytest.mark.parametrize("where", ["unwritable", "under_a_file"])
def test_an_unwritable_output_dir_is_refused_before_any_computation_exit_2(tmp_path, folder, monkeypatch, caplog,
                                                                           where):
    def must_not_run(*args, **kwargs):
        raise AssertionError("the streaming pass started")

    monkeypatch.setattr(stream, "collect", must_not_run)
    if where == "unwritable":
        out = _unwritable(tmp_path)
    else:
        (tmp_path / "a_file").write_text("not a folder")
        out = tmp_path / "a_file" / "deeper" / "out"
    try:
        with caplog.at_level(logging.INFO):
            assert _main(tmp_path / "feat", out) == 2
    finally:
        if (tmp_path / "ro").exists():
            (tmp_path / "ro").chmod(0o700)  # tmp_path can be removed
    line = next(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    assert line.startswith("--output_dir:") and str(out) in line
    assert not any(p.name.startswith(outputs.PROBE_PREFIX) for p in tmp_path.rglob("*"))


def test_a_full_disk_while_drawing_is_one_line_the_numbers_stay_exit_1(tmp_path, folder, monkeypatch, caplog, capfd):
    from layerwise.report import plots

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(plots, "feature_statistics", full)
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO):
        assert _main(tmp_path / "feat", out) == 1
    _assert_numbers(out, folder)
    assert not (out / "report.html").exists()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    full_lines = [e for e in errors if os.strerror(errno.ENOSPC) in e and "feature_statistics.png" in e]
    assert full_lines and full_lines[0].startswith("could not write feature_statistics.png")
    assert any("report.html" in e for e in errors)  # named as not written
    assert "Traceback" not in caplog.text + capfd.readouterr().err


def test_a_full_disk_while_writing_the_report_names_it_exit_1(tmp_path, folder, monkeypatch, caplog):
    from layerwise.report import html

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "out" / ".report.html~x.tmp"))

    monkeypatch.setattr(html, "write_report_html", full)
    monkeypatch.setattr(figures, "FIGURES", ())
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO):
        assert _main(tmp_path / "feat", out) == 1
    _assert_numbers(out, folder)
    assert any(r.getMessage().startswith(f"could not write report.html: {os.strerror(errno.ENOSPC)}")
               for r in caplog.records)


@pytest.mark.parametrize("stage", ["collect", "draw"])
def test_ctrl_c_is_one_line_naming_what_was_written_exit_130(tmp_path, folder, monkeypatch, caplog, capfd, stage):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(stream if stage == "collect" else analyze_run, stage, interrupt)
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO):
        assert _main(tmp_path / "feat", out) == 130
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("interrupted:")]
    assert len(lines) == 1
    on_disk = sorted(p.name for p in out.iterdir()) if out.exists() else []
    if stage == "collect":
        assert on_disk == [] and "nothing was written" in lines[0]
    else:  # the numbers were written, then the figures were interrupted
        assert on_disk == ["per_dim_stats.npz", "summary.csv", "summary.json"]
        assert all(name in lines[0] for name in on_disk) and "report.html" in lines[0] and "not written" in lines[0]
        assert np.isfinite(json.loads((out / "summary.json").read_text())["mean"]["layer_0"])
    assert "Traceback" not in caplog.text + capfd.readouterr().err


def test_sigterm_stops_like_ctrl_c_and_restores_the_handler(tmp_path, folder, monkeypatch, caplog, capfd):
    """A batch system's time limit (SLURM sends SIGTERM): the same one line naming what was written, exit 130, and
    the caller's SIGTERM handler back afterwards."""
    def terminate(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # delivered to the main thread before kill() returns
        raise AssertionError("SIGTERM did not stop the analysis")

    monkeypatch.setattr(analyze_run, "draw", terminate)
    before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO):
        assert _main(tmp_path / "feat", out) == 130
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("terminated (SIGTERM):")]
    assert len(lines) == 1 and "summary.json" in lines[0] and "report.html" in lines[0]
    assert sorted(p.name for p in out.iterdir()) == ["per_dim_stats.npz", "summary.csv", "summary.json"]
    assert signal.getsignal(signal.SIGTERM) is before
    assert "Traceback" not in caplog.text + capfd.readouterr().err


class _SignalsWhenDestroyed:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)  # the handler runs inside this destructor: Python drops its exception


@pytest.mark.parametrize("how", ["wrapped", "swallowed"])
def test_a_sigterm_hidden_by_python_still_stops_with_one_line(tmp_path, folder, monkeypatch, caplog, capfd, how):
    """wrapped: the interrupt surfaces as another exception (a lazy import wraps it in a RuntimeError); swallowed:
    raised inside a __del__, where Python prints and drops it, and the run goes on. Either way: the one line, no
    traceback, exit 130."""
    real_draw = analyze_run.draw

    def draw(*args, **kwargs):
        if how == "swallowed":
            _SignalsWhenDestroyed()  # destroyed at once; the run goes on drawing
            return real_draw(*args, **kwargs)
        return sigterm_surfacing_wrapped()

    monkeypatch.setattr(analyze_run, "draw", draw)
    with caplog.at_level(logging.INFO):
        assert _main(tmp_path / "feat", tmp_path / "out") == 130
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("terminated (SIGTERM):")]
    assert len(lines) == 1 and "summary.json" in lines[0]
    err = capfd.readouterr().err
    assert "Traceback" not in caplog.text + err and "Exception ignored" not in err


def test_merge_num_subsets_below_one_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        visualize.main(["--merge", "--output_dir", str(tmp_path), "--num_subsets", "0", "--no_progress"])
    assert stop.value.code == 2 and "--num_subsets must be >= 1, got 0" in capsys.readouterr().err


def test_a_stopped_shard_is_not_told_about_the_report(tmp_path):
    """A shard writes only its partial: its stop line names that and says nothing of report.html or figures."""
    out = tmp_path / "out"
    before = outputs.snapshot(out)
    (out / "partials").mkdir(parents=True)
    (out / "partials" / "partial_0001_of_0002.npz").write_bytes(b"x")
    shard = visualize.build_parser().parse_args(["--output_dir", str(out), "--subset_id", "1", "--num_subsets", "2"])
    text = visualize.interrupted_text(shard, before)
    assert "partials/partial_0001_of_0002.npz written" in text and "report.html" not in text


def test_a_stop_wrapped_inside_a_figure_is_the_stop_not_a_failed_figure(tmp_path, folder, monkeypatch, caplog):
    """A SIGTERM that surfaces as another exception inside one figure (matplotlib's first import wraps it in a
    RuntimeError): the run stops at once with its one line, exit 130; the figure is not reported as failed and no
    later figure or report is drawn."""
    from layerwise.report import plots

    monkeypatch.setattr(plots, "feature_statistics", sigterm_surfacing_wrapped)
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO):
        assert _main(tmp_path / "feat", out) == 130
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].startswith("terminated (SIGTERM):")
    assert sorted(p.name for p in out.iterdir()) == ["per_dim_stats.npz", "summary.csv", "summary.json"]
