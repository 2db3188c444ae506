"""The scratch memory the core keeps between calls: bounded, and freed by release_memory().

Each call plans one workspace and takes it from a pool of blocks that later calls reuse
(fresh pages cost page faults); the pool keeps at most 256 MiB, and
``lstmcore.release_memory()`` frees it. ``_core.kept_memory()`` reports what is kept.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

import lstmcore
from conftest import GATES
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


@pytest.fixture
def unpoisoned():
    """Scratch as the library leaves it (conftest fills it with NaN bytes for the suite)."""
    _core._poison_scratch(False)
    yield
    _core._poison_scratch(True)


@pytest.mark.parametrize("isa", lstmcore.available_isas(), indirect=True)
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("batch", [3, 9])  # 9: the bfloat16 LSTM and RNN fuse x·w_x into the steps
def test_kept_scratch_left_by_a_nan_call_does_not_reach_the_next(unpoisoned, isa, cell, batch):
    """A call whose values are all NaN leaves NaN in the blocks the pool keeps; the next call
    (odd I and H, so the bfloat16 pairs have a pad column) must give the bits it gives on
    fresh memory. The native bfloat16 projection once read x's pad column from the kept
    block: NaN · 0 turned every output into NaN (CI, after a test that passes NaN)."""
    G = GATES[cell]
    rng = np.random.default_rng(5)
    x = rng.standard_normal((11, batch, 3)).astype(np.float32)
    w_x = rng.uniform(-0.4, 0.4, (3, G * 7)).astype(np.float32)
    w_h = rng.uniform(-0.4, 0.4, (7, G * 7)).astype(np.float32)
    for compute in (None, "bfloat16"):
        lstmcore.release_memory()
        fresh = lstmcore.forward(x, w_x, w_h, cell=cell, training=True, compute_dtype=compute)
        want = lstmcore.backward(fresh.cache, np.ones_like(fresh.y))
        nan = np.full((6, 64, 65), np.nan, np.float32)
        bad = lstmcore.forward(nan, np.full((65, G * 67), np.nan, np.float32), np.full((67, G * 67), np.nan, np.float32),
                               cell=cell, training=True, compute_dtype=compute)
        lstmcore.backward(bad.cache, np.full_like(bad.y, np.nan))
        again = lstmcore.forward(x, w_x, w_h, cell=cell, training=True, compute_dtype=compute)
        got = lstmcore.backward(again.cache, np.ones_like(again.y))
        assert np.array_equal(again.y, fresh.y) and np.array_equal(again.h_n, fresh.h_n), compute
        for a, b in zip(got, want):
            assert a is b is None or np.array_equal(a, b), compute


def test_poisoned_scratch_shows_an_unwritten_read():
    """The hook itself: while on, new result arrays come filled with NaN bytes (and so does
    every scratch block, which the test above relies on through conftest)."""
    assert _core._poison_scratch(True) is None
    x, w_x, w_h = _problem(T=3, B=2, I=5, H=4)
    out = np.full((3, 2, 4), 7.0)
    res = lstmcore.forward(x, w_x, w_h, out=out)  # every element of y and h_n is written
    assert res.y is out and np.isfinite(out).all() and np.isfinite(res.h_n).all()
    _core._poison_scratch(False)
    try:
        assert np.isfinite(lstmcore.forward(x, w_x, w_h).y).all()
    finally:
        _core._poison_scratch(True)
