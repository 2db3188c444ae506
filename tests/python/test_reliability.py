"""The defects of issue 12 (Python side), one test each; every one of them failed before its fix.

2. ``out=`` sharing memory with an input (seq_lengths included, partial overlaps through views),
   and gradients inside the cache's buffer, are refused by name — host, layers and the
   device path (on host-backed stand-ins for device arrays, see test_cuda_api.py).
3. A backward that fails (shape, dtype, aliasing) leaves the cache usable.
4. A layer refuses the cache of a layer configured otherwise, naming what differs.
5. Caches are not built by hand; ``Cache._from_fields`` checks the fields' consistency.
6. The cache keeps its own copy of seq_lengths.
7. Messages report the value the caller passed.
(8, torch tensors: test_torch_inputs.py; 9, the README: test_readme.py.)
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import lstmcore
from conftest import package_env
from lstmcore import _checks
from problems import names

T, B, I, H = 5, 3, 4, 6


def inputs(cell="lstm", dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    G = {"lstm": 4, "gru": 3}.get(cell, 1)
    a = dict(x=rng.standard_normal((T, B, I)), w_x=0.3 * rng.standard_normal((I, G * H)),
             w_h=0.3 * rng.standard_normal((H, G * H)), b=0.1 * rng.standard_normal(G * H),
             b_h=0.1 * rng.standard_normal(G * H), h0=rng.standard_normal((B, H)))
    if cell == "lstm":
        a["c0"] = rng.standard_normal((B, H))
    return {k: v.astype(dtype) for k, v in a.items()}


def same_gradients(g1, g2):
    for f in g1._fields:
        a, b = getattr(g1, f), getattr(g2, f)
        assert (a is None) == (b is None), f
        if a is not None:
            assert np.array_equal(a, b), f


def run_isolated(code):
    """Runs ``code`` in a fresh interpreter (a crash there cannot take pytest down)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300, env=package_env())


# ------------------------------------------------------------------------------------------
# 2. aliasing


@pytest.mark.parametrize("reverse", [False, True])
def test_out_sharing_memory_with_seq_lengths_is_refused(reverse):
    # Before the fix: SIGSEGV with reverse=True, a wrong y and overwritten lengths without it.
    r = run_isolated(f"""
        import numpy as np, lstmcore
        T, B, I, H = 5, 3, 4, 6
        rng = np.random.default_rng(0)
        x, w_x, w_h = rng.standard_normal((T, B, I)), rng.standard_normal((I, 4 * H)), rng.standard_normal((H, 4 * H))
        buf = np.zeros(T * B * H)
        lens = buf.view(np.int64)[:B]
        lens[:] = [5, 2, 3]
        try:
            lstmcore.forward(x, w_x, w_h, seq_lengths=lens, out=buf.reshape(T, B, H), reverse={reverse})
        except ValueError as exc:
            assert "out" in str(exc) and "seq_lengths" in str(exc), exc
            assert list(lens) == [5, 2, 3]
            print("refused")
        """)
    assert r.returncode == 0 and "refused" in r.stdout, (r.returncode, r.stdout, r.stderr)


@pytest.mark.parametrize("name", ["x", "w_x", "w_h", "b", "b_h", "h0", "c0", "seq_lengths", "peepholes",
                                  "layer_norm[4]"])
def test_out_overlapping_any_input_is_refused(name):
    a = inputs()
    kw = {}
    if name == "peepholes":
        kw["peepholes"] = np.zeros((3, H))
    if name.startswith("layer_norm"):
        kw["layer_norm"] = tuple(np.ones(4 * H if k < 4 else H) for k in range(6))
    n_out = T * B * H
    arrays = dict(a, **kw)
    target = np.arange(B, dtype=np.int64) % T + 1 if name == "seq_lengths" else (
        arrays["layer_norm"][4] if name.startswith("layer_norm") else arrays[name])
    n = target.nbytes // 8
    # out's last element on the input's first ... out's first element on the input's last
    for shift in sorted({-(n_out - 1), -1, 0, min(1, n - 1), n - 1}):
        buf = np.zeros(n + 2 * n_out)
        view = buf[n_out:n_out + n].view(target.dtype).reshape(target.shape)
        view[...] = target
        before = view.copy()
        out = buf[n_out + shift:n_out + shift + n_out].reshape(T, B, H)
        call = dict(arrays)
        if name == "seq_lengths":
            call_kw = dict(seq_lengths=view)
        else:
            call_kw = {}
            if name.startswith("layer_norm"):
                call["layer_norm"] = tuple(view if k == 4 else v for k, v in enumerate(arrays["layer_norm"]))
            else:
                call[name] = view
        with pytest.raises(ValueError, match=names("out")) as err:
            lstmcore.forward(**call, **call_kw, out=out)
        assert name.split("[")[0] in str(err.value)
        assert np.array_equal(view, before)  # nothing was written


def test_out_beside_an_input_in_one_buffer_is_accepted():
    a = inputs()
    buf = np.zeros(T * B * I + T * B * H)
    x = buf[:T * B * I].reshape(T, B, I)
    x[...] = a["x"]
    out = buf[T * B * I:].reshape(T, B, H)  # adjacent, not overlapping
    want = lstmcore.forward(**a).y
    assert lstmcore.forward(**dict(a, x=x), out=out).y is out
    assert np.array_equal(out, want)


def test_overlap_is_exact_for_interleaved_views():
    base = np.zeros(100)
    even, odd = base[0::2], base[1::2]
    assert np.may_share_memory(even, odd)  # the range test alone would refuse them
    assert not _checks.overlap(even, odd)
    assert _checks.overlap(base[::3], base[::2])  # share base[0]
    assert _checks.overlap(base[10:20], base[15:30]) and not _checks.overlap(base[10:20], base[20:30])


@pytest.mark.parametrize("grad", ["dy", "dh_n", "dc_n"])
def test_gradients_inside_the_cache_buffer_are_refused(grad):
    a = inputs()
    res = lstmcore.forward(**a, training=True)
    shape = {"dy": (T, B, H), "dh_n": (B, H), "dc_n": (B, H)}[grad]
    view = res.cache.buffer[7:7 + int(np.prod(shape))].reshape(shape)
    with pytest.raises(ValueError, match=names(grad)):
        lstmcore.backward(res.cache, **{grad: view})
    assert not res.cache.consumed
    g = lstmcore.backward(res.cache, **{grad: np.ones(shape)})
    fresh = lstmcore.forward(**a, training=True)
    same_gradients(g, lstmcore.backward(fresh.cache, **{grad: np.ones(shape)}))


def test_layer_gradients_inside_the_cache_buffer_are_refused():
    layer = lstmcore.LSTM(I, H, num_layers=2, dtype=np.float64, seed=0)
    x = inputs()["x"]
    _, _, cache = layer.forward(x, training=True)
    dy = cache.buffer[:T * B * H].reshape(T, B, H)
    with pytest.raises(ValueError, match=names("dy")):
        layer.backward(cache, dy)
    dh = cache.buffer[-2 * B * H:].reshape(2, B, H)
    with pytest.raises(ValueError, match=r"dstate\[0\]"):
        layer.backward(cache, None, (dh, None))
    assert not cache.consumed
    layer.backward(cache, np.ones((T, B, H)))


# ------------------------------------------------------------------------------------------
# 3. a failed backward leaves the cache usable


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("variant", [{}, {"clip": 2.0}], ids=["plain", "variant"])
def test_failed_backward_leaves_the_cache_usable(cell, variant):
    a = inputs(cell)
    good = dict(dy=np.ones((T, B, H)), dh_n=np.ones((B, H)))
    bad_calls = [dict(good, dy=np.ones((T, B, H + 1))), dict(good, dy=np.ones((B, T, H))),
                 dict(good, dh_n=np.ones((B + 1, H))), dict(good, dy=np.ones((T, B, H), np.float32)),
                 dict(good, dy=np.ones((T, B, H), complex)), dict(good, dc_n=np.ones((B, H - 1)))]
    res = lstmcore.forward(**a, cell=cell, training=True, **variant)
    for bad in bad_calls:
        with pytest.raises((ValueError, TypeError)):
            lstmcore.backward(res.cache, **bad)
        assert not res.cache.consumed, bad
    g = lstmcore.backward(res.cache, **good)
    fresh = lstmcore.forward(**a, cell=cell, training=True, **variant)
    same_gradients(g, lstmcore.backward(fresh.cache, **good))


def test_failed_layer_backward_leaves_the_cache_usable():
    layer = lstmcore.GRU(I, H, num_layers=2, bidirectional=True, dtype=np.float64, seed=1)
    x = inputs()["x"]
    _, _, cache = layer.forward(x, training=True, dropout_seed=3)
    for dy, dstate in ((np.ones((T, B, 2 * H + 1)), None), (np.ones((T, B, H)), None),
                       (np.ones((T, B, 2 * H), np.float32), None), (None, np.ones((4, B + 1, H))),
                       (None, (np.ones((4, B, H)), np.ones((4, B, H))))):
        with pytest.raises((ValueError, TypeError)):
            layer.backward(cache, dy, dstate)
        assert not cache.consumed
    dx, _ = layer.backward(cache, np.ones((T, B, 2 * H)))
    _, _, fresh = layer.forward(x, training=True, dropout_seed=3)
    assert np.array_equal(dx, layer.backward(fresh, np.ones((T, B, 2 * H)))[0])


# ------------------------------------------------------------------------------------------
# 4. a cache knows the layer that made it


@pytest.mark.parametrize("other, differs", [
    (dict(hidden_size=7), "hidden_size"), (dict(input_size=4), "input_size"), (dict(num_layers=2), "num_layers"),
    (dict(bidirectional=True), "bidirectional"), (dict(dtype=np.float64), "dtype"), (dict(bias=False), "bias"),
    (dict(proj_size=2), "proj_size"), (dict(peepholes=True), "peepholes"), (dict(batch_first=True), "batch_first"),
    (dict(dropout=0.5), "dropout"), (dict(cls=lstmcore.GRU), "cell"), (dict(clip=3.0), "clip"),
])
def test_layer_refuses_the_cache_of_another_configuration(other, differs):
    base = lstmcore.LSTM(3, 5, seed=0)
    x = np.ones((4, 2, 3), np.float32)
    _, _, cache = base.forward(x, training=True)
    kw = dict(input_size=3, hidden_size=5)
    kw.update(other)
    cls = kw.pop("cls", lstmcore.LSTM)
    layer = cls(kw.pop("input_size"), kw.pop("hidden_size"), **kw)
    with pytest.raises(ValueError, match=r"cache: made by a layer of another configuration") as err:
        layer.backward(cache)
    assert differs in str(err.value)
    assert not cache.consumed
    base.backward(cache)


def test_layer_takes_the_cache_of_a_layer_configured_alike():
    a, b = lstmcore.LSTM(3, 5, seed=0), lstmcore.LSTM(3, 5, seed=0)
    _, _, cache = a.forward(np.ones((4, 2, 3), np.float32), training=True)
    b.backward(cache)
    assert set(b.grads) == set(b.params)


# ------------------------------------------------------------------------------------------
# 5. caches come from forward


def _fields(cache):
    return {name: getattr(cache, name) for name in type(cache)._field_names()}


def test_caches_are_not_built_by_hand():
    res = lstmcore.forward(**inputs(), training=True)
    with pytest.raises(TypeError, match=r"forward\(\.\.\., training=True\)"):
        lstmcore.Cache(**_fields(res.cache))
    _, _, stack = lstmcore.LSTM(3, 4).forward(np.ones((2, 1, 3), np.float32), training=True)
    with pytest.raises(TypeError, match=r"layer\.forward"):
        lstmcore.StackCache(**_fields(stack))


@pytest.mark.parametrize("variant", [{}, {"peepholes": np.full((3, H), 0.1), "w_proj": np.full((H, 2), 0.2)}],
                         ids=["plain", "variant"])
def test_from_fields_rebuilds_a_cache(variant):
    a = inputs()
    if "w_proj" in variant:
        a["w_h"], a["h0"] = a["w_h"][:2].copy(), a["h0"][:, :2].copy()
    res = lstmcore.forward(**a, training=True, **variant)
    fields = _fields(res.cache)
    fields["buffer"] = res.cache.buffer.copy()
    rebuilt = lstmcore.Cache._from_fields(**fields)
    assert rebuilt is not res.cache and not rebuilt.consumed
    dy = np.ones(res.y.shape)
    same_gradients(lstmcore.backward(rebuilt, dy), lstmcore.backward(res.cache, dy))


def test_from_fields_refuses_inconsistent_fields():
    res = lstmcore.forward(**inputs(), training=True)
    good = _fields(res.cache)
    cases = [
        (dict(cell="gru"), ValueError, "c0"),              # LSTM fields under another cell name
        (dict(cell="gru", c0=None), ValueError, "w_h"),
        (dict(cell="rnn"), ValueError, "cell"),
        (dict(buffer=np.zeros(res.cache.buffer.size - 1)), ValueError, "buffer"),
        (dict(buffer=np.zeros(res.cache.buffer.size, np.float32)), TypeError, "buffer"),
        (dict(w_x=good["w_x"][:, :-1].copy()), ValueError, "w_x"),
        (dict(h0=np.zeros((B + 1, H))), ValueError, "h0"),
        (dict(seq_lengths=np.array([1, 2])), ValueError, "seq_lengths"),
        (dict(seq_lengths=np.array([1, 2, T + 1])), ValueError, "seq_lengths"),
        (dict(dtype=np.float16), TypeError, "dtype"),
        (dict(variant={"options": {"clip": 1.0}, "params": (None, None, None)}), ValueError, "buffer"),
        (dict(x=np.asfortranarray(good["x"])), ValueError, "x"),
    ]
    for change, exc, name in cases:
        with pytest.raises(exc, match=names(name)):
            lstmcore.Cache._from_fields(**dict(good, **change))
    gru = _fields(lstmcore.forward(**inputs("gru"), cell="gru", training=True).cache)
    with pytest.raises(ValueError, match="c0"):
        lstmcore.Cache._from_fields(**dict(gru, c0=np.zeros((B, H))))
    with pytest.raises(ValueError, match="peepholes is an LSTM option"):
        lstmcore.Cache._from_fields(**dict(gru, variant={"options": {"peepholes": True},
                                                         "params": (np.zeros((3, H)), None, None)}))
    with pytest.raises(TypeError, match="missing fields"):
        lstmcore.Cache._from_fields(**{k: v for k, v in good.items() if k != "buffer"})


# ------------------------------------------------------------------------------------------
# 6. the cache's own lengths


def test_cache_keeps_its_own_copy_of_the_lengths():
    a = inputs()
    dy = np.ones((T, B, H))
    for variant in ({}, {"clip": 5.0}):
        lens = np.array([5, 2, 3])
        res = lstmcore.forward(**a, seq_lengths=lens, training=True, **variant)
        lens[:] = 1
        assert not np.shares_memory(res.cache.seq_lengths, lens)
        g = lstmcore.backward(res.cache, dy)
        fresh = lstmcore.forward(**a, seq_lengths=np.array([5, 2, 3]), training=True, **variant)
        same_gradients(g, lstmcore.backward(fresh.cache, dy))
    layer = lstmcore.LSTM(I, H, dtype=np.float64, seed=0)
    lens = np.array([5, 2, 3])
    _, _, cache = layer.forward(a["x"], seq_lengths=lens, training=True)
    lens[:] = 1
    dx, _ = layer.backward(cache, dy)
    _, _, fresh = layer.forward(a["x"], seq_lengths=np.array([5, 2, 3]), training=True)
    assert np.array_equal(dx, layer.backward(fresh, dy)[0])


# ------------------------------------------------------------------------------------------
# 7. the caller's values in messages


@pytest.mark.parametrize("lengths, shown", [
    (np.array([1, 2**64 - 1, 1], np.uint64), "18446744073709551615"),
    (np.array([1.0, 1e30, 1.0]), "1e+30"),
    (np.array([1.0, -1e30, 1.0]), "-1e+30"),
    (np.array([1, 2**63 - 1, 1], np.int64), "9223372036854775807"),
    (np.array([1.0, 2.5, 1.0]), "2.5"),
    (np.array([1.0, np.inf, 1.0]), "inf"),
])
def test_length_messages_report_the_callers_value(lengths, shown):
    a = inputs()
    layer = lstmcore.LSTM(I, H, dtype=np.float64)
    for call in (lambda: lstmcore.forward(**a, seq_lengths=lengths),
                 lambda: layer(a["x"], seq_lengths=lengths)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no NumPy RuntimeWarning on the way
            with pytest.raises((ValueError, TypeError), match=names("seq_lengths")) as err:
                call()
        assert shown in str(err.value) and "index 1" in str(err.value)


# ------------------------------------------------------------------------------------------
# 2 and 3 on the device path: host-backed stand-ins for device arrays (test_cuda_api.py)

from test_cuda_api import HostBacked, host_backed  # noqa: E402, F401  (a fixture)


def test_device_out_overlapping_an_input_is_refused(host_backed):  # noqa: F811
    a = inputs()
    for name in ("x", "w_h", "seq_lengths"):
        n_out = T * B * H
        buf = np.zeros(3 * n_out)
        args = {k: HostBacked(v) for k, v in a.items()}
        kw = {}
        if name == "seq_lengths":
            lens = buf[n_out:n_out + B].view(np.int64)
            lens[:] = [5, 2, 3]
            kw["seq_lengths"] = HostBacked(lens)
        else:
            view = buf[n_out:n_out + a[name].size].reshape(a[name].shape)
            view[...] = a[name]
            args[name] = HostBacked(view)
        out = HostBacked(buf[n_out + 1:2 * n_out + 1].reshape(T, B, H))
        with pytest.raises(ValueError, match=names("out")) as err:
            lstmcore.forward(**args, **kw, out=out)
        assert name in str(err.value)


def test_device_gradients_inside_the_cache_buffer_are_refused(host_backed):  # noqa: F811
    a = inputs()
    res = lstmcore.forward(**{k: HostBacked(v) for k, v in a.items()}, training=True)
    inside = HostBacked(res.cache.buffer.arr[3:3 + T * B * H].reshape(T, B, H))
    with pytest.raises(ValueError, match=names("dy")):
        lstmcore.backward(res.cache, inside)
    with pytest.raises(ValueError, match=names("dy")):
        lstmcore.backward(res.cache, HostBacked(np.ones((T, B, H + 1))))
    assert not res.cache.consumed
    g = lstmcore.backward(res.cache, HostBacked(np.ones((T, B, H))))
    want = lstmcore.backward(lstmcore.forward(**a, training=True).cache, np.ones((T, B, H)))
    assert np.array_equal(g.dw_x.arr, want.dw_x)
    layer = lstmcore.GRU(I, H, num_layers=2, dtype=np.float64, seed=0)
    _, _, cache = layer.forward(HostBacked(a["x"]), training=True)
    with pytest.raises(ValueError, match=names("dy")):
        layer.backward(cache, HostBacked(cache.buffer.arr[:T * B * H].reshape(T, B, H)))
    assert not cache.consumed
    layer.backward(cache, HostBacked(np.ones((T, B, H))))
