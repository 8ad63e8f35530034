"""layerwise.report.twoprocess: jobs shared with one worker process give the one-process results, in order; a job
that fails (in either process) raises its own error here; a worker that dies costs nothing but time.

The worker takes part for sure through a rendezvous: job 0 (always this process's: it claims first) waits for a file
that job 1, claimed by the worker, creates.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from functools import partial
from pathlib import Path

import pytest

from layerwise.report import twoprocess

WAIT_S = 60.0  # the worker's start (a fresh interpreter, matplotlib preloaded) takes seconds on a loaded machine


def job(flag: Path, parent: int, item: str):
    """(item, whether the worker ran it); "wait" blocks until "signal" ran; "boom" raises; "die" ends a worker."""
    if item == "wait":
        deadline = time.monotonic() + WAIT_S
        while not flag.exists():
            assert time.monotonic() < deadline, "the worker never ran job 1"
            time.sleep(0.01)
    elif item in ("signal", "boom", "die"):
        flag.touch()
        if item == "die" and os.getpid() != parent:
            os._exit(3)  # a worker killed mid-job (out of memory, a signal)
        if item == "boom":
            raise ValueError("boom: figure failed")
    return item, os.getpid() != parent


def test_one_process_equals_the_plain_loop(tmp_path):
    func = partial(job, tmp_path / "flag", os.getpid())
    items = ["a", "b", "c"]
    assert twoprocess.run_all(func, items, processes=1) == [func(x) for x in items]


def test_worker_shares_the_jobs_and_results_keep_their_order(tmp_path):
    items = ["wait", "signal", *"abcdefgh"]
    done = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # Python 3.12+: fork of a threaded process warns
        out = twoprocess.run_all(partial(job, tmp_path / "flag", os.getpid()), items, processes=2,
                                 done=lambda: done.append(1))
    assert [x for x, _ in out] == items
    assert out[0] == ("wait", False) and out[1] == ("signal", True)  # job 1 can only have run in the worker
    assert len(done) == len(items)


def test_a_job_failing_in_the_worker_raises_here_after_the_others(tmp_path):
    with pytest.raises(ValueError, match="boom: figure failed"):
        twoprocess.run_all(partial(job, tmp_path / "flag", os.getpid()), ["wait", "boom", "c"], processes=2)


def test_a_job_failing_here_raises_at_once(tmp_path):
    with pytest.raises(ValueError, match="boom"):
        twoprocess.run_all(partial(job, tmp_path / "flag", os.getpid()), ["boom", "a", "b"], processes=2)


def test_a_dead_worker_s_job_is_run_here(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger=twoprocess.__name__):
        out = twoprocess.run_all(partial(job, tmp_path / "flag", os.getpid()), ["wait", "die", "c"], processes=2)
    assert out == [("wait", False), ("die", False), ("c", False)]  # "die" and what followed: run here
    assert "before reporting 1 job" in caplog.text


def test_unpicklable_jobs_run_here(tmp_path):
    assert twoprocess.run_all(lambda x: x * 2, [1, 2, 3], processes=2) == [2, 4, 6]


@pytest.mark.slow
def test_figures_drawn_by_two_processes_are_the_one_process_pngs(tmp_path):
    """Whichever process draws a figure, its PNG is byte for byte the one-process PNG (same layout, same pixels)."""
    from layerwise.report import figures
    from tests.report.test_html import make_result

    (tmp_path / "features").mkdir()
    result = make_result(tmp_path / "features")
    one = figures.draw_all(result, tmp_path / "one", processes=1)
    two = figures.draw_all(result, tmp_path / "two", processes=2)
    assert [d.name for d in one] == [d.name for d in two] and len(one) >= 6
    for a, b in zip(one, two):
        assert a.path.read_bytes() == b.path.read_bytes(), a.name
