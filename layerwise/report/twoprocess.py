"""Independent jobs (a report's figures) shared between this process and one worker process, in a fixed order.

Both processes take the next job from one shared counter, so the larger jobs, given first, start first and the two
finish close together. This process starts at once; the worker is started by the ``forkserver`` method (``spawn``
where there is none), not forked from this process: forking a process that runs threads (BLAS, tqdm's monitor) can
deadlock, and Python 3.12+ warns about it. The fork server imports ``PRELOAD`` once, so later workers of the same
process start warm; the first one costs a fresh interpreter importing matplotlib and seaborn (≈ 2 s of one core,
2026-12-07, 2-core Xeon), spent while this process already draws.

A job the worker does not report done (it raised, or the worker died) is run again here, so its error is raised in
this process with its own traceback, as in a one-process run, after the other jobs are done. The worker gets this
process's matplotlib rcParams, so a figure's pixels do not depend on which process drew it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import sys
import threading
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait

log = logging.getLogger(__name__)

PROCESSES = 2  # this one and one worker: the 2 cores the fixed-cost stages are budgeted on (issue 23)
PRELOAD = ("matplotlib.pyplot", "seaborn", "layerwise.report.plots", "layerwise.report.scatter")  # the fork server's


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def run_all(func: Callable, items: Sequence, *, processes: int | None = None,
            done: Callable[[], None] | None = None) -> list:
    """``[func(x) for x in items]``, the items shared between this process and one worker process.

    func, items : picklable (a module-level function or a ``functools.partial`` of one); the results too.
    processes : 1 runs everything here; None = min(PROCESSES, usable CPUs, len(items)). done : called here once per
    item finished, by either process (a progress bar). An error of ``func`` is raised here: at once when this
    process meets it (after the worker's current item), else once the other items are done.
    """
    items = list(items)
    processes = min(PROCESSES, usable_cpus(), len(items)) if processes is None else processes
    worker = _Worker.start(func, items) if processes > 1 else None
    if worker is None:
        return [_counted(func, x, done) for x in items]
    results, own = [None] * len(items), set()
    try:
        while (i := _claim(worker.counter, len(items))) is not None:
            own.add(i)
            results[i] = _counted(func, items[i], done)
        left = worker.collect(results, set(range(len(items))) - own, done)
    except BaseException:
        worker.stop(len(items), len(own))  # it may be writing a PNG: it finishes that, claims no more, ends
        raise
    worker.stop(len(items), len(own))
    for i in sorted(left):  # failed or lost in the worker: run here, where an error raises as in a serial run
        results[i] = _counted(func, items[i], done)
    return results


def _counted(func: Callable, item, done: Callable[[], None] | None):
    value = func(item)
    if done is not None:
        done()
    return value


def _claim(counter, n: int) -> int | None:
    """The next unclaimed index below ``n`` (and counts it claimed), or None when all are."""
    with counter.get_lock():
        i = counter.value
        if i >= n:
            return None
        counter.value = i + 1
    return i


def _context():
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" not in methods:
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(PRELOAD))  # no effect once the server runs
    return context


class _Worker:
    """The worker process, its result connection and the shared claim counter. The process is started from a
    thread: a first start waits for the fork server to import ``PRELOAD``, while this process can already draw."""

    def __init__(self, proc, conn, send, counter):
        self.proc, self.conn, self.send, self.counter = proc, conn, send, counter
        self.thread = threading.Thread(target=self._launch, name="layerwise-figures-start", daemon=True)

    @classmethod
    def start(cls, func: Callable, items: list) -> _Worker | None:
        """A worker being started, or None (logged) when something does not pickle or no process can be made:
        the caller then does everything itself (a start that fails later leaves every item to the caller too)."""
        try:
            payload = pickle.dumps((func, items), protocol=pickle.HIGHEST_PROTOCOL)
            context = _context()
            counter = context.Value("i", 0)
            receive, send = context.Pipe(duplex=False)
            proc = context.Process(target=_work, args=(payload, counter, send, _rc_params()), daemon=True,
                                   name="layerwise-figures")
        except Exception as err:  # noqa: BLE001 - any failure here means: one process
            log.debug("no worker process (%s: %s); everything runs in this process", type(err).__name__, err)
            return None
        worker = cls(proc, receive, send, counter)
        worker.thread.start()
        return worker

    def _launch(self) -> None:
        try:
            self.proc.start()
        except Exception as err:  # noqa: BLE001 - it never claims an item: this process draws them all
            log.debug("the worker process did not start (%s: %s)", type(err).__name__, err)
        finally:
            self.send.close()  # the worker holds its own end; this process only receives

    def collect(self, results: list, theirs: set, done) -> set:
        """Wait for the reports on the indices ``theirs`` (claimed by the worker; filled into ``results``);
        returns those it failed or never reported (it died)."""
        failed = set()
        if theirs:
            self.thread.join()  # it claimed items, so it started
        while theirs:
            if not self.conn.poll():
                wait([self.conn, self.proc.sentinel])
                if not self.conn.poll():  # the worker ended without reporting the rest
                    break
            try:
                i, ok, value = self.conn.recv()
            except EOFError:
                break
            theirs.discard(i)
            if ok:
                results[i] = value
                if done is not None:
                    done()
            else:
                failed.add(i)
        if theirs:
            log.warning("the figure worker ended (exit code %s) before reporting %d job(s); running them here",
                        self.proc.exitcode, len(theirs))
        return failed | theirs

    def stop(self, n: int, own: int) -> None:
        """No more claims. A worker that claimed items is waited for (it ends after its current one, whose PNG is
        written atomically); one that claimed none (still starting) ends by itself, unwaited."""
        with self.counter.get_lock():
            claimed, self.counter.value = self.counter.value, n
        if claimed > own:
            self.thread.join()
            self.proc.join()
        self.conn.close()


def _rc_params() -> dict | None:
    """This process's matplotlib settings (its backend aside), when matplotlib is imported here."""
    if "matplotlib" not in sys.modules:
        return None
    import matplotlib

    return {k: v for k, v in matplotlib.rcParams.items() if k != "backend"}


def _work(payload: bytes, counter, conn, rc: dict | None) -> None:
    """The worker: run the items it claims, send (index, ok, result) for each."""
    func, items = pickle.loads(payload)
    if rc is not None:
        import matplotlib

        matplotlib.rcParams.update(rc)
    with conn:
        while (i := _claim(counter, len(items))) is not None:
            try:
                conn.send((i, True, func(items[i])))
            except Exception:  # noqa: BLE001 - reported by index; the caller reruns it and raises the error
                conn.send((i, False, None))
