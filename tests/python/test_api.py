"""The Python API's contract: zero-copy inputs and ``out=``, conversions, dtype rules,
error messages that name the argument, the cache's one-use rule, threads (OpenMP and
Python), NaN propagation."""
from __future__ import annotations

import re
import threading
import time
import tracemalloc
import warnings

import numpy as np
import pytest

import lstmcore
from conftest import VARIANT_IDS, Case, check_all, rel_err

CELLS = ["lstm", "gru", "rnn_tanh", "rnn_relu"]


def run(case, **over):
    kw = dict(case.fwd)
    kw.update(case.opts)
    kw.update(over)
    return lstmcore.forward(**kw)


def names(name):
    """A regex that finds ``name`` as a whole word (so "b" does not match "b_h")."""
    return rf"(?<![\w]){re.escape(name)}(?![\w])"


# ----------------------------------------------------------------------------------
# zero copy


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tb", "bt"])
def test_out_is_written_in_place_and_returned(dtype, batch_first):
    case = Case("lstm", dtype, seed=1, sizes=(7, 3, 13, 7), batch_first=batch_first)
    want = run(case)
    out = np.full(want.y.shape, np.nan, dtype=dtype)
    res = run(case, out=out)
    assert res.y is out
    assert np.shares_memory(res.y, out)
    np.testing.assert_array_equal(out, want.y)
    # training=True also writes y into out
    out2 = np.empty_like(out)
    res2 = run(case, out=out2, training=True)
    assert res2.y is out2
    assert rel_err(out2, want.y) <= (1e-14 if dtype == np.float64 else 1e-6)


def test_out_wrong_shape_or_dtype():
    case = Case("gru", np.float64, seed=2, sizes=(3, 2, 3, 4))
    with pytest.raises(ValueError, match=names("out")):
        run(case, out=np.empty((3, 2, 5)))
    with pytest.raises(ValueError, match=names("out")):
        run(case, out=np.empty((2, 3, 4)))  # (B, T, H) without batch_first
    with pytest.raises(TypeError, match=names("out")):
        run(case, out=np.empty((3, 2, 4), np.float32))
    with pytest.raises((ValueError, TypeError), match=names("out")):
        run(case, out=np.empty((3, 2, 8))[:, :, ::2])  # not C-contiguous


def test_inputs_are_not_copied():
    """C-contiguous arrays of the compute dtype reach the core untouched: the cache
    (documented to hold references, no copies) shares their memory, and NumPy allocates
    far less than one input's size during the call (tracemalloc sees NumPy buffers)."""
    T, B, I, H = 64, 16, 256, 32
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    w_x = (0.05 * rng.standard_normal((I, 4 * H))).astype(np.float32)
    w_h = (0.1 * rng.standard_normal((H, 4 * H))).astype(np.float32)
    h0 = rng.standard_normal((B, H)).astype(np.float32)
    c0 = rng.standard_normal((B, H)).astype(np.float32)
    out = np.empty((T, B, H), np.float32)
    res = lstmcore.forward(x, w_x, w_h, h0=h0, c0=c0, training=True)
    for name, arr in (("x", x), ("w_x", w_x), ("w_h", w_h), ("h0", h0), ("c0", c0)):
        assert np.shares_memory(getattr(res.cache, name), arr), f"{name} was copied"
    lstmcore.forward(x, w_x, w_h, out=out)  # warm-up
    x_fortran = np.asfortranarray(x)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        lstmcore.forward(x, w_x, w_h, h0=h0, c0=c0, out=out)
        _, peak_same = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        lstmcore.forward(x_fortran, w_x, w_h, h0=h0, c0=c0, out=out)
        _, peak_fortran = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_same < x.nbytes // 8, f"{peak_same} bytes allocated for a {x.nbytes}-byte x"
    # the control: a non-contiguous x is copied once, and tracemalloc does see it
    assert x.nbytes <= peak_fortran < 2 * x.nbytes


@pytest.mark.parametrize("variant", VARIANT_IDS)
def test_float32_contiguous_inputs_give_no_warnings(variant):
    case = Case(variant, np.float32, seed=3, sizes=(3, 2, 3, 7), seq=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = run(case, training=True)
        g = lstmcore.backward(res.cache, **case.grads)
    assert res.y.dtype == np.float32 and g.dw_x.dtype == np.float32


# ----------------------------------------------------------------------------------
# conversions


@pytest.mark.parametrize("variant", VARIANT_IDS)
def test_lists_are_converted(variant):
    """Lists (no float ndarray in the call) compute in float64."""
    case = Case(variant, np.float64, seed=4, sizes=(3, 2, 3, 4), seq=True)
    want = run(case, training=True)
    want_g = lstmcore.backward(want.cache, **case.grads)
    lists = {k: (None if v is None else v.tolist()) for k, v in case.fwd.items()}
    got = lstmcore.forward(**lists, **case.opts, training=True)
    assert got.y.dtype == np.float64
    got_g = lstmcore.backward(got.cache, **{k: (None if v is None else v.tolist())
                                            for k, v in case.grads.items()})
    check_all(got, got_g, want, want_g, 1e-15)


@pytest.mark.parametrize("variant", VARIANT_IDS)
def test_lists_follow_a_float32_x(variant):
    """A float32 ndarray x makes the call float32; lists are converted to it."""
    c32 = Case(variant, np.float32, seed=4, sizes=(3, 2, 3, 4))
    want32 = run(c32, training=True)
    want32_g = lstmcore.backward(want32.cache, **c32.grads)
    mixed = {k: (v if k == "x" or v is None else v.tolist()) for k, v in c32.fwd.items()}
    got32 = lstmcore.forward(**mixed, **c32.opts, training=True)
    assert got32.y.dtype == np.float32
    got32_g = lstmcore.backward(got32.cache, **{k: (None if v is None else v.tolist())
                                                for k, v in c32.grads.items()})
    assert got32_g.dw_x.dtype == np.float32
    check_all(got32, got32_g, want32, want32_g, 1e-6)


@pytest.mark.parametrize("variant", VARIANT_IDS)
def test_int_arrays_are_converted(variant):
    case = Case(variant, np.float64, seed=4, sizes=(3, 2, 3, 4))
    xi = np.arange(3 * 2 * 3).reshape(3, 2, 3) % 3 - 1
    a = lstmcore.forward(xi, case.fwd["w_x"], case.fwd["w_h"], cell=case.cell,
                         reset_after=case.reset_after)
    b = lstmcore.forward(xi.astype(np.float64), case.fwd["w_x"], case.fwd["w_h"], cell=case.cell,
                         reset_after=case.reset_after)
    assert a.y.dtype == np.float64
    np.testing.assert_array_equal(a.y, b.y)
    # all-integer call: float64
    wi = np.ones((3, case.G * 4), dtype=np.int32)
    hi = np.zeros((4, case.G * 4), dtype=np.int64)
    c = lstmcore.forward(xi, wi, hi, cell=case.cell, reset_after=case.reset_after)
    assert c.y.dtype == np.float64
    d = lstmcore.forward(xi.astype(float), wi.astype(float), hi.astype(float), cell=case.cell,
                         reset_after=case.reset_after)
    np.testing.assert_array_equal(c.y, d.y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("variant", VARIANT_IDS)
def test_non_contiguous_inputs_same_result(variant, dtype):
    case = Case(variant, dtype, seed=5, sizes=(7, 3, 13, 7), reverse=True, seq=True)
    want = run(case, training=True)
    want_g = lstmcore.backward(want.cache, **case.grads)

    def strided(a):
        if a is None:
            return None
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        big[..., ::2] = a
        return big[..., ::2]

    nc = {k: strided(v) for k, v in case.fwd.items()}
    nc["w_x"] = np.asfortranarray(case.fwd["w_x"])
    assert not nc["x"].flags.c_contiguous and not nc["w_x"].flags.c_contiguous
    got = lstmcore.forward(**nc, **case.opts, training=True)
    got_g = lstmcore.backward(got.cache, **{k: strided(v) for k, v in case.grads.items()})
    check_all(got, got_g, want, want_g, 1e-14 if dtype == np.float64 else 1e-6)


# ----------------------------------------------------------------------------------
# dtype rules


def test_dtype_mixing_is_a_type_error():
    c64 = Case("lstm", np.float64, seed=6, sizes=(3, 2, 3, 4))
    c32 = Case("lstm", np.float32, seed=6, sizes=(3, 2, 3, 4))
    for name in ("w_x", "w_h", "b", "b_h", "h0", "c0"):
        kw = dict(c64.fwd)
        kw[name] = c32.fwd[name]
        with pytest.raises(TypeError, match=names(name)):
            lstmcore.forward(**kw)
        kw = dict(c32.fwd)
        kw[name] = c64.fwd[name]
        with pytest.raises(TypeError, match=names(name)):
            lstmcore.forward(**kw)
    res = lstmcore.forward(**c64.fwd, training=True)
    with pytest.raises(TypeError, match=names("dy")):
        lstmcore.backward(res.cache, dy=c32.grads["dy"])
    res = lstmcore.forward(**c32.fwd, training=True)
    with pytest.raises(TypeError, match=names("dh_n")):
        lstmcore.backward(res.cache, dh_n=c64.grads["dh_n"])
    # float16 is not a compute dtype
    with pytest.raises(TypeError):
        lstmcore.forward(c64.fwd["x"].astype(np.float16), c64.fwd["w_x"].astype(np.float16),
                         c64.fwd["w_h"].astype(np.float16))


# ----------------------------------------------------------------------------------
# shape errors name the argument


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("batch_first", [False, True], ids=["tb", "bt"])
def test_shape_errors_name_the_argument(cell, batch_first):
    T, B, I, H = 3, 2, 5, 4
    G = {"lstm": 4, "gru": 3}.get(cell, 1)
    rng = np.random.default_rng(7)
    good = dict(
        x=rng.standard_normal((B, T, I) if batch_first else (T, B, I)),
        w_x=rng.standard_normal((I, G * H)),
        w_h=rng.standard_normal((H, G * H)),
        b=rng.standard_normal(G * H),
        b_h=rng.standard_normal(G * H),
        h0=rng.standard_normal((B, H)),
        c0=rng.standard_normal((B, H)) if cell == "lstm" else None,
    )
    opts = dict(cell=cell, batch_first=batch_first)
    lstmcore.forward(**good, **opts)  # the good call works
    bad = {
        "x": [np.zeros((T, I)), np.zeros((T, B, I, 1))],
        "w_x": [np.zeros((I + 1, G * H)), np.zeros((I, G * H + 1)), np.zeros((I, G * H, 1)),
                np.zeros(I * G * H)],
        "w_h": [np.zeros((H, G * H + G)), np.zeros((H, G * H - 1)), np.zeros(H * G * H)],
        "b": [np.zeros(G * H + 1), np.zeros((1, G * H)), np.zeros(())],
        "b_h": [np.zeros(G * H - 1), np.zeros((G * H, 1))],
        "h0": [np.zeros((B + 1, H)), np.zeros((B, H + 1)), np.zeros((1, B, H)), np.zeros(B * H)],
    }
    if cell == "lstm":
        bad["c0"] = [np.zeros((B, H - 1)), np.zeros((B + 1, H)), np.zeros((1, B, H))]
    for name, values in bad.items():
        for v in values:
            kw = dict(good)
            kw[name] = v
            with pytest.raises(ValueError, match=names(name)):
                lstmcore.forward(**kw, **opts)
    # x with a wrong I is inconsistent with w_x: either name is fine, both must be sane
    with pytest.raises(ValueError, match=r"(?<!\w)(x|w_x)(?!\w)"):
        lstmcore.forward(**dict(good, x=np.zeros((B, T, I + 1)) if batch_first
                                else np.zeros((T, B, I + 1))), **opts)
    # empty sizes
    for v in (np.zeros((0, B, I)), np.zeros((T, 0, I)), np.zeros((T, B, 0))):
        with pytest.raises(ValueError):
            lstmcore.forward(**dict(good, x=v, w_x=np.zeros((v.shape[2], G * H))), **opts)

    # backward's gradients
    res = lstmcore.forward(**good, **opts, training=True)
    y_shape = res.y.shape
    gbad = {"dy": [np.zeros(y_shape[:2] + (H + 1,)), np.zeros(y_shape[::-1]),
                   np.zeros(y_shape[1:])],
            "dh_n": [np.zeros((B, H + 1)), np.zeros((1, B, H))]}
    if cell == "lstm":
        gbad["dc_n"] = [np.zeros((B + 1, H))]
    for name, values in gbad.items():
        for v in values:
            res = lstmcore.forward(**good, **opts, training=True)
            with pytest.raises(ValueError, match=names(name)):
                lstmcore.backward(res.cache, **{name: v})
            # a failed backward leaves the cache usable, or says it was used: never a crash
            try:
                lstmcore.backward(res.cache)
            except ValueError:
                pass


@pytest.mark.parametrize("cell", CELLS)
def test_seq_lengths_errors(cell):
    case = Case(cell, np.float64, seed=8, sizes=(4, 3, 2, 3))
    T = case.T
    for bad in ([0, 1, 2], [1, T + 1, 2], [-1, 2, 2], [1, 2], [1, 2, 3, 4], [[1, 2, 3]],
                [T, T, 0]):
        with pytest.raises(ValueError, match=names("seq_lengths")):
            run(case, seq_lengths=np.array(bad))
    for good in ([1, 1, 1], [T, T, T], [T, 1, 2]):
        run(case, seq_lengths=np.array(good, dtype=np.int32))
        run(case, seq_lengths=good)


def test_unknown_cell():
    case = Case("lstm", np.float64, seed=9, sizes=(2, 2, 2, 2))
    for bad in ("LSTM", "gru2", "", "rnn"):
        with pytest.raises(ValueError, match="cell"):
            run(case, cell=bad)


@pytest.mark.parametrize("cell", ["gru", "rnn_tanh", "rnn_relu"])
def test_cell_state_only_for_lstm(cell):
    case = Case(cell, np.float64, seed=10, sizes=(2, 2, 2, 3))
    c0 = np.zeros((2, 3))
    with pytest.raises(ValueError, match=cell):
        run(case, c0=c0)
    res = run(case, training=True)
    assert res.c_n is None
    with pytest.raises(ValueError, match=names("dc_n")):
        lstmcore.backward(res.cache, dc_n=c0)
    res = run(case, training=True)
    g = lstmcore.backward(res.cache, dh_n=np.ones((2, 3)))
    assert g.dc0 is None


# ----------------------------------------------------------------------------------
# the cache


@pytest.mark.parametrize("variant", VARIANT_IDS)
def test_backward_consumes_the_cache(variant):
    case = Case(variant, np.float64, seed=11, sizes=(3, 2, 3, 4))
    res = run(case, training=True)
    g1 = lstmcore.backward(res.cache, **case.grads)
    with pytest.raises(ValueError, match="cache"):
        lstmcore.backward(res.cache, **case.grads)
    # a fresh forward gives a fresh cache with the same gradients
    res2 = run(case, training=True)
    g2 = lstmcore.backward(res2.cache, **case.grads)
    for f in g1._fields:
        a, b = getattr(g1, f), getattr(g2, f)
        assert (a is None) == (b is None)
        if a is not None:
            assert rel_err(a, b) <= 1e-14, f  # bit-identity: see test_repeated_calls_*


def test_backward_rejects_non_caches():
    case = Case("lstm", np.float64, seed=12, sizes=(2, 2, 2, 2))
    for bad in (object(), None, 3, "cache", np.zeros(10), run(case)):  # last: inference result
        with pytest.raises((TypeError, ValueError)):
            lstmcore.backward(bad)
    with pytest.raises(TypeError):
        lstmcore.backward(object())
    with pytest.raises((TypeError, ValueError)):
        lstmcore.backward(run(case).cache)  # None: training=False


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("variant", VARIANT_IDS)
def test_repeated_calls_are_bitwise_reproducible(variant, dtype):
    """The same training call, repeated, gives bit-identical results. NumPy places each
    call's outputs and cache at a different address (16-byte aligned), so this also
    checks that no result depends on where the buffers lie."""
    for H in (1, 2, 3, 4, 5, 7, 9):
        case = Case(variant, dtype, seed=11, sizes=(3, 2, 3, H))
        seen = set()
        keep = []  # keeps earlier buffers alive so later ones land elsewhere
        for _ in range(24):
            r = lstmcore.forward(**case.fwd, **case.opts, training=True)
            g = lstmcore.backward(r.cache, **case.grads)
            keep.append((r, g))
            seen.add(b"".join(a.tobytes() for a in (r.y, r.h_n, g.dx, g.dh0, g.dw_x, g.dw_h,
                                                     g.db, g.db_h)))
        assert len(seen) == 1, f"H={H}: {len(seen)} different results from the same call"


# ----------------------------------------------------------------------------------
# threads


@pytest.fixture
def restore_threads():
    n = lstmcore.get_num_threads()
    yield n
    lstmcore.set_num_threads(n)


def test_num_threads_round_trip(restore_threads):
    assert isinstance(restore_threads, int) and restore_threads >= 1
    for n in (1, 2, 3, 1):
        lstmcore.set_num_threads(n)
        assert lstmcore.get_num_threads() == n
    with pytest.raises((ValueError, TypeError)):
        lstmcore.set_num_threads(0)
    assert lstmcore.get_num_threads() == 1


def _fwd_bwd(case):
    res = lstmcore.forward(**case.fwd, **case.opts, training=True)
    return res, lstmcore.backward(res.cache, **case.grads)


def _assert_same(a, b, tol):
    (ra, ga), (rb, gb) = a, b
    for f in ("y", "h_n", "c_n"):
        x, y = getattr(ra, f), getattr(rb, f)
        assert (x is None) == (y is None)
        if x is not None:
            assert rel_err(x, y) <= tol, f
    for f in ga._fields:
        x, y = getattr(ga, f), getattr(gb, f)
        assert (x is None) == (y is None)
        if x is not None:
            assert rel_err(x, y) <= tol, f


@pytest.mark.parametrize("variant", VARIANT_IDS)
def test_one_and_two_threads_agree(variant, restore_threads):
    # large enough that the core splits work across threads
    case = Case(variant, np.float64, seed=13, sizes=(13, 33, 33, 130), reverse=True, seq=True)
    lstmcore.set_num_threads(1)
    one = _fwd_bwd(case)
    lstmcore.set_num_threads(2)
    two = _fwd_bwd(case)
    _assert_same(one, two, 1e-12)


def _longest_stall(fn):
    """Runs ``fn`` in a thread while this thread spins in Python; returns (longest pause
    between two turns of the spin loop, seconds ``fn`` took)."""
    done = threading.Event()
    took = {}

    def work():
        t = time.perf_counter()
        fn()
        took["s"] = time.perf_counter() - t
        done.set()

    th = threading.Thread(target=work)
    last = time.perf_counter()
    stall = 0.0
    th.start()
    while not done.is_set():
        now = time.perf_counter()
        stall = max(stall, now - last)
        last = now
    th.join()
    return stall, took["s"]


def test_gil_is_released(restore_threads):
    """While one thread is inside forward / backward, another runs Python code. With the
    GIL held, the spinning thread would stall for as long as the call lasts."""
    lstmcore.set_num_threads(1)
    case = Case("lstm", np.float32, seed=15, sizes=(400, 16, 128, 128))
    res = lstmcore.forward(**case.fwd, **case.opts, training=True)
    stall, took = _longest_stall(lambda: lstmcore.forward(**case.fwd, **case.opts))
    assert took > 0.02, "the call is too short to tell"
    assert stall < 0.5 * took, f"forward: Python stalled {stall:.3f} s of a {took:.3f} s call"
    stall, took = _longest_stall(lambda: lstmcore.backward(res.cache, **case.grads))
    assert stall < 0.5 * took, f"backward: Python stalled {stall:.3f} s of a {took:.3f} s call"


@pytest.mark.parametrize("variant", VARIANT_IDS)
def test_python_threads_run_concurrently(variant, restore_threads):
    """4 Python threads calling forward + backward at once (the GIL is released inside)
    give the single-threaded results, each on its own inputs and on shared ones."""
    lstmcore.set_num_threads(2)
    cases = [Case(variant, np.float64 if k % 2 else np.float32, seed=100 + k,
                  sizes=(13, 7, 33, 33), seq=k < 2, reverse=k % 3 == 0) for k in range(4)]
    serial = [_fwd_bwd(c) for c in cases]
    results = {}
    errors = []
    barrier = threading.Barrier(4)

    def work(k):
        try:
            barrier.wait()
            out = []
            for _ in range(3):
                out.append(_fwd_bwd(cases[k]))
                out.append(_fwd_bwd(cases[0]))  # the same inputs from every thread
            results[k] = out
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for k in range(4):
        for j, r in enumerate(results[k]):
            want = serial[k] if j % 2 == 0 else serial[0]
            _assert_same(r, want, 1e-12)


# ----------------------------------------------------------------------------------
# IEEE specials


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("variant", VARIANT_IDS)
def test_nan_propagates(variant, dtype):
    case = Case(variant, dtype, seed=14, sizes=(5, 3, 4, 6))
    case.fwd["x"][2, 1, 0] = np.nan  # step 2 of sequence 1
    res = run(case, training=True)
    g = lstmcore.backward(res.cache, **case.grads)
    y = res.y
    assert np.all(np.isfinite(y[:2])), "steps before the NaN are unaffected"
    assert np.all(np.isfinite(y[:, [0, 2]])), "other sequences are unaffected"
    assert np.isnan(y[2, 1]).any(), "the NaN reaches y at its step"
    assert np.isnan(res.h_n[1]).any() and np.all(np.isfinite(res.h_n[[0, 2]]))
    assert np.isnan(g.dw_x).any()
    assert np.all(np.isfinite(g.dx[:, [0, 2]])), "other sequences' dx are unaffected"
