"""contract.workers.over_layers: the layers' results in key order, exceptions where compute raised them, the same
numbers for any thread count, and pending layers cancelled when the caller stops early."""

import threading
import time

import numpy as np
import pytest

from layerwise.contract import workers


def _svd_top(seed):
    m = np.random.default_rng(seed).normal(size=(120, 120))
    return np.linalg.svd(m, compute_uv=False)[:3]


def test_results_come_back_in_key_order_and_equal_a_plain_loop():
    keys = [5, 1, 4, 2, 3, 0]
    want = [_svd_top(k) for k in keys]
    for threads in (1, 2, 4):
        got = [(key, future.result()) for key, future in workers.over_layers(_svd_top, keys, "t", threads=threads)]
        assert [k for k, _ in got] == keys
        for (_, value), expected in zip(got, want):
            np.testing.assert_array_equal(value, expected)


def test_an_exception_is_raised_by_its_own_layer_only():
    def compute(key):
        if key == "b":
            raise ValueError("layer b is constant")
        return key.upper()

    seen = {}
    for key, future in workers.over_layers(compute, ["a", "b", "c"], "t", threads=2):
        try:
            seen[key] = future.result()
        except ValueError as err:
            seen[key] = str(err)
    assert seen == {"a": "A", "b": "layer b is constant", "c": "C"}


def test_stopping_early_cancels_the_layers_not_started():
    started = []
    lock = threading.Lock()

    def compute(key):
        with lock:
            started.append(key)
        time.sleep(0.05)
        return key

    for key, future in workers.over_layers(compute, range(40), "t", threads=2):
        future.result()
        break
    assert len(started) < 10  # 40 submitted; the ones still queued were cancelled


def test_threads_default_to_the_cores_this_process_may_use(monkeypatch):
    monkeypatch.setattr(workers.os, "sched_getaffinity", lambda _: {0, 1, 2}, raising=False)
    assert workers.layer_threads() == 3
    monkeypatch.setattr(workers.os, "sched_getaffinity", lambda _: set(range(64)), raising=False)
    assert workers.layer_threads() == workers.MAX_LAYER_THREADS


@pytest.mark.parametrize("threads", [1, 3])
def test_the_cca_family_does_not_depend_on_the_thread_count(monkeypatch, threads):
    """cca_intra / cca_mel over parallel layers equal one layer at a time to the last bit (shared first-view cache
    included)."""
    from layerwise.contract.grid import Grid
    from layerwise.measures import alignment_free

    rng = np.random.default_rng(0)
    layers = [f"layer_{i}" for i in range(5)]
    grid = Grid(hop=320, field=400)
    collector = alignment_free.PropertyCollector(layers, dict.fromkeys(layers, grid), seed=0, max_frames_per_file=20)
    mix = rng.normal(size=(24, 24)) / 5
    for f in range(9):
        base = rng.normal(size=(60, 24)).astype(np.float32)
        arrays, x = {}, base
        for key in layers:
            arrays[key] = x
            x = (np.tanh(x @ mix) + 0.3 * rng.normal(size=x.shape)).astype(np.float32)
        collector.add(f"{100 + f % 3}-{10 + f % 2}-{f:04d}", arrays, rng.normal(size=(60 * 2, 8)).astype(np.float32))

    def run(n):
        monkeypatch.setattr(workers, "layer_threads", lambda: n)
        family = alignment_free.measure(collector, seed=0, n_boot=20)
        return family.values, family.intervals

    (values_1, ci_1), (values_n, ci_n) = run(1), run(threads)
    assert values_1 == values_n and ci_1 == ci_n
    assert values_1["cca_intra"]["layer_3"] is not None
