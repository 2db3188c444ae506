"""The scratch memory the core keeps between calls: bounded, and freed by release_memory().

Each call plans one workspace and takes it from a pool of blocks that later calls reuse
(fresh pages cost page faults); the pool keeps at most 256 MiB, and
``lstmcore.release_memory()`` frees it. ``_core.kept_memory()`` reports what is kept.
"""
from __future__ import annotations

import threading

import numpy as np

import lstmcore
from lstmcore import _core

BOUND = 256 << 20


def _problem(T=9, B=4, I=7, H=11, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((T, B, I)), rng.uniform(-0.3, 0.3, (I, 4 * H)), rng.uniform(-0.3, 0.3, (H, 4 * H)))


def test_release_memory_frees_what_calls_keep():
    x, w_x, w_h = _problem()
    first = lstmcore.forward(x, w_x, w_h, training=True)
    g1 = lstmcore.backward(first.cache, np.ones_like(first.y))
    assert 0 < _core.kept_memory() <= BOUND
    assert lstmcore.release_memory() is None
    assert _core.kept_memory() == 0
    again = lstmcore.forward(x, w_x, w_h, training=True)  # the next call allocates anew, same results
    g2 = lstmcore.backward(again.cache, np.ones_like(again.y))
    assert np.array_equal(first.y, again.y)
    for a, b in zip(g1, g2):
        assert a is b is None or np.array_equal(a, b)
    assert "release_memory" in lstmcore.__all__


def test_kept_memory_stays_bounded_under_concurrent_calls():
    lstmcore.release_memory()
    errors = []

    def work(seed):
        try:
            x, w_x, w_h = _problem(T=20, B=16, I=24, H=48, seed=seed)
            for _ in range(3):
                lstmcore.forward(x, w_x, w_h, training=True)
                layer = lstmcore.GRU(24, 48, num_layers=2, bidirectional=True, dtype=np.float64, seed=seed)
                layer(x)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert 0 < _core.kept_memory() <= BOUND
    lstmcore.release_memory()
    assert _core.kept_memory() == 0
