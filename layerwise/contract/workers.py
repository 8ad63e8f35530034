"""Per-layer work on the machine's cores: the CCA family and t-SNE compute their layers in parallel threads.

Their heavy steps (numpy's SVD, eigendecomposition and matrix products; openTSNE's gradient) release the GIL, so with
one BLAS thread per call, layers in parallel threads keep every core busy on independent work; one layer at a time
with a multi-threaded BLAS does not (a 768 × 768 SVD with 2 OpenBLAS threads took 0.30 s vs 0.23 s with one; two
threads of numpy SVDs, one BLAS thread each: 2.1× the throughput of one; AMD EPYC, 2 cores, 2026-12-07).
Results do not depend on the number of threads: each layer's work is the same computation, seeded by its inputs.
Memory grows with the threads: each holds one layer's working set (the CCA family at the property cap, 25,000 rows ×
768 dims in float64: ≈ 150 MB per view and ≈ 0.6 GB per thread with its standardised copies).
(scipy's LAPACK wrappers hold the GIL: code run here uses ``np.linalg``.)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

MAX_LAYER_THREADS = 8  # 13 layers: more threads than this leave most idle while the last layers finish


def layer_threads() -> int:
    """Worker threads for per-layer work: the cores this process may run on (its CPU affinity, which SLURM and
    container cpusets restrict), at most ``MAX_LAYER_THREADS``."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity call on this platform (macOS)
        cores = os.cpu_count() or 1
    return max(1, min(MAX_LAYER_THREADS, cores))


def over_layers(compute: Callable, keys: Iterable, desc: str, *, threads: int | None = None,
                unit: str = "layer") -> Iterator[tuple[object, Future]]:
    """``(key, future of compute(key))`` for every key, in the order of ``keys``; ``future.result()`` returns the
    value or raises what ``compute`` raised, so the caller's handling is that of a plain loop. The keys run on
    ``threads`` worker threads (default :func:`layer_threads`; 1: one after the other) with one BLAS thread each; a
    progress bar named ``desc`` counts the layers handed back. ``compute`` must not change shared state (it may read
    it) and must not use ``warnings.catch_warnings`` (process-wide, not thread-safe): measures that do run with
    ``threads=1``. A caller that stops early (return, break) cancels the layers not yet started."""
    from threadpoolctl import threadpool_limits

    from layerwise.contract.progress import bar

    keys = list(keys)
    workers = max(1, min(threads or layer_threads(), len(keys)))
    with threadpool_limits(limits=1), ThreadPoolExecutor(max_workers=workers, thread_name_prefix="layer") as pool:
        futures = [pool.submit(compute, key) for key in keys]
        try:
            yield from zip(keys, bar(futures, desc, unit))
        finally:
            for future in futures:
                future.cancel()
