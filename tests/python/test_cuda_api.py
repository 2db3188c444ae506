"""Device arrays without a GPU: what every build says about them, and the Python device path.

Fake device arrays (objects with ``__cuda_array_interface__`` or a CUDA
``__dlpack_device__``) stand in for CuPy / torch CUDA arrays, so these tests run on any
machine: a build without CUDA refuses them with an error that says so, and host and device
arrays are never mixed in one call, in any build. Then lstmcore._cuda end to end on
"device" arrays that live in host memory, with the CUDA binding replaced by the CPU core.
Nothing here touches device memory.
"""
from __future__ import annotations

import ctypes
import types

import numpy as np
import pytest

import lstmcore
from conftest import FIELDS_BWD, FIELDS_FWD, LAYER_VARIANTS, OPTION_SETS, VARIANT_IDS, layer_class, make_case
from lstmcore import _cuda
from lstmcore._types import GATES

T, B, I, H = 4, 2, 3, 5


class FakeCudaArray:
    """Looks like a CuPy / Numba device array; its address is never dereferenced."""

    def __init__(self, shape, dtype=np.float32):
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.__cuda_array_interface__ = {"shape": self.shape, "typestr": self.dtype.str, "version": 3,
                                         "data": (0x7F0000000000, False), "strides": None}


class FakeDlpackArray:
    """Looks like a DLPack producer on CUDA device 0 (e.g. a JAX GPU array)."""

    def __init__(self, shape):
        self.shape = tuple(shape)

    def __dlpack_device__(self):
        return (2, 0)  # kDLCUDA


def host_args(dtype=np.float32):
    rng = np.random.default_rng(0)
    return dict(x=rng.standard_normal((T, B, I)).astype(dtype), w_x=rng.standard_normal((I, 4 * H)).astype(dtype),
                w_h=rng.standard_normal((H, 4 * H)).astype(dtype))


def fake_args():
    return dict(x=FakeCudaArray((T, B, I)), w_x=FakeCudaArray((I, 4 * H)), w_h=FakeCudaArray((H, 4 * H)))


def test_device_arrays_are_recognised():
    assert _cuda.is_device_call(FakeCudaArray((1,)))
    assert _cuda.is_device_call(None, FakeDlpackArray((1,)))
    assert not _cuda.is_device_call(np.zeros(3), None, [1.0], 2.0)


def test_host_tensors_stay_on_the_host():
    torch = pytest.importorskip("torch")
    assert not _cuda.is_device_call(torch.zeros(3))
    res = lstmcore.forward(**{k: torch.from_numpy(v) for k, v in host_args().items()})
    assert isinstance(res.y, np.ndarray)


@pytest.mark.skipif(_cuda.built(), reason="this build has CUDA")
@pytest.mark.parametrize("maker", [fake_args, lambda: {**fake_args(), "x": FakeDlpackArray((T, B, I))}],
                         ids=["cuda_array_interface", "dlpack"])
def test_no_cuda_build_says_so(maker):
    with pytest.raises(TypeError, match="x: a CUDA device array .* this lstmcore build has no CUDA"):
        lstmcore.forward(**maker())
    assert _cuda.device_count() == 0
    assert "cuda: no" in lstmcore.build_info()


@pytest.mark.parametrize("name", ["w_x", "w_h", "b", "h0", "c0", "out"])
def test_mixing_host_and_device_is_refused(name):
    args = fake_args()
    host = dict(host_args(), b=np.zeros(4 * H, np.float32), h0=np.zeros((B, H), np.float32),
                c0=np.zeros((B, H), np.float32), out=np.zeros((T, B, H), np.float32))
    args[name] = host[name]
    with pytest.raises(TypeError, match=f"{name}: a host array \\(numpy.ndarray\\) beside CUDA device arrays"):
        lstmcore.forward(**args)


@pytest.mark.parametrize("option", [{"peepholes": np.zeros((3, H), np.float32)}, {"input_forget": True},
                                    {"forget_gate": False}, {"clip": 3.0}, {"activations": ["sigmoid", "tanh", "relu"]},
                                    {"activation_alpha": [None, None, None]}, {"zoneout": 0.1}],
                         ids=lambda o: next(iter(o)))
def test_cell_variants_on_device_arrays_are_refused(option):
    with pytest.raises(ValueError, match=f"{next(iter(option))}: the cell variants run on the CPU only"):
        lstmcore.forward(**fake_args(), **option)


def test_device_x_with_host_weights_is_refused():
    args = host_args()
    args["x"] = FakeCudaArray((T, B, I))
    with pytest.raises(TypeError, match="w_x: a host array"):
        lstmcore.forward(**args)


def test_device_gradients_for_a_host_cache_are_refused():
    res = lstmcore.forward(**host_args(), training=True)
    with pytest.raises(TypeError, match="dy: a CUDA device array, but the cache is from a host"):
        lstmcore.backward(res.cache, dy=FakeCudaArray((T, B, H)))
    assert not res.cache.consumed  # refused before anything ran
    lstmcore.backward(res.cache, dy=np.ones((T, B, H), np.float32))


def test_build_info_reports_cuda():
    info = lstmcore.build_info()
    assert ("cuda: yes" in info) == _cuda.built()


# ------------------------------------------------------------------------------------------
# The Python device path end to end, without a GPU: "device" arrays that live in host memory
# (HostBacked), a library adapter for them, and a stand-in for the CUDA binding that runs the
# CPU core on the arrays behind the addresses it is given. The results must equal the NumPy
# path's bit for bit: any argument passed in the wrong place, any shape or pointer mix-up in
# lstmcore._cuda shows up.


class HostBacked:
    """A 'device array' backed by a NumPy array (its address is what the core gets)."""

    def __init__(self, arr):
        self.arr = arr

    @property
    def shape(self):
        return self.arr.shape

    def __getitem__(self, key):  # slicing and reshaping views, as torch / CuPy / Numba arrays do
        return HostBacked(self.arr[key])

    def reshape(self, shape):
        return HostBacked(self.arr.reshape(shape))

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.arr.shape, "typestr": self.arr.dtype.str, "version": 3,
                "data": (self.arr.ctypes.data, False), "strides": self.arr.strides}


class HostBackedLib:
    name = "host-backed"

    def view(self, a):
        return _cuda._View(a, self, a.arr.ctypes.data, a.arr.shape, a.arr.dtype, a.arr.flags.c_contiguous, 0)

    def empty(self, shape, dtype, device):
        assert device == 0
        return HostBacked(np.full(shape, np.nan, dtype))

    def convert(self, a, dtype):
        return HostBacked(np.ascontiguousarray(a.arr, dtype=dtype))

    def stream(self, device):
        return 0

    def to_host(self, a):
        return a.arr.copy()

    def from_host(self, a, device):
        assert device == 0 and isinstance(a, np.ndarray)
        return HostBacked(np.array(a))


def _at(address, shape, dtype):
    """The NumPy array at a host address (None for 0)."""
    if not address:
        return None
    dt = np.dtype(dtype)
    buffer = (ctypes.c_char * (int(np.prod(shape)) * dt.itemsize)).from_address(address)
    return np.frombuffer(buffer, dtype=dt).reshape(shape)


def _fake_binding(core):
    """The CUDA entry points of _core, run by the CPU core on the memory behind the addresses."""

    def rows(T, B, F, batch_first):
        return (B, T, F) if batch_first else (T, B, F)

    def weight(rows_, cols, gate_major):
        return (cols, rows_) if gate_major else (rows_, cols)

    def cuda_forward(cell, reset_after, dtype, T, B, I, H, x, w_x, w_h, b, b_h, h0, c0, y, h_n, c_n, cache,
                     seq_lengths, reverse, batch_first, device, stream, allow_tf32, gate_major):
        GH = GATES[cell] * H
        ins = [_at(x, rows(T, B, I, batch_first), dtype), _at(w_x, weight(I, GH, gate_major), dtype),
               _at(w_h, weight(H, GH, gate_major), dtype),
               _at(b, (GH,), dtype), _at(b_h, (GH,), dtype), _at(h0, (B, H), dtype), _at(c0, (B, H), dtype)]
        out = _at(y, rows(T, B, H, batch_first), dtype)
        _, hn, cn, buf = core.forward(cell, reset_after, *ins, seq_lengths, reverse, batch_first, bool(cache), out,
                                      gate_major=gate_major)
        _at(h_n, (B, H), dtype)[...] = hn
        if c_n:
            _at(c_n, (B, H), dtype)[...] = cn
        if cache:
            _at(cache, buf.shape, dtype)[...] = buf

    def cuda_backward(cell, reset_after, dtype, T, B, I, H, x, w_x, w_h, h0, c0, cache, dy, dh_n, dc_n, dx, dh0, dc0,
                      dw_x, dw_h, db, db_h, seq_lengths, reverse, batch_first, device, stream, allow_tf32, gate_major):
        GH = GATES[cell] * H
        n = core.cache_size(cell, reset_after, T, B, I, H)
        wx, wh = weight(I, GH, gate_major), weight(H, GH, gate_major)
        got = core.backward(cell, reset_after, _at(x, rows(T, B, I, batch_first), dtype), _at(w_x, wx, dtype),
                            _at(w_h, wh, dtype), _at(h0, (B, H), dtype), _at(c0, (B, H), dtype), seq_lengths,
                            reverse, batch_first, _at(cache, (n,), dtype), bool(db), bool(db_h),
                            _at(dy, rows(T, B, H, batch_first), dtype), _at(dh_n, (B, H), dtype),
                            _at(dc_n, (B, H), dtype), gate_major=gate_major)
        shapes = [rows(T, B, I, batch_first), (B, H), (B, H), wx, wh, (GH,), (GH,)]
        for address, shape, value in zip((dx, dh0, dc0, dw_x, dw_h, db, db_h), shapes, got):
            assert (address == 0) == (value is None)
            if address:
                _at(address, shape, dtype)[...] = value

    def stack_arrays(cell, L, D, merge, dtype, T, B, I, H, table, batch_first):
        GH, R = GATES[cell] * H, H
        O = 2 * R if D == 2 and merge == "concat" else R
        entries = []
        for j, (w_x, w_h, b, b_h) in enumerate(table):
            rows_in = I if j < D else O
            entries.append((_at(w_x, (rows_in, GH), dtype), _at(w_h, (R, GH), dtype), _at(b, (GH,), dtype),
                            _at(b_h, (GH,), dtype)))
        return entries, O

    def cuda_stack_forward(cell, reset_after, L, D, dropout, seed, merge, dtype, T, B, I, H, x, weights, h0, c0, y,
                           h_n, c_n, cache, seq_lengths, batch_first, device, stream, allow_tf32):
        w, O = stack_arrays(cell, L, D, merge, dtype, T, B, I, H, weights, batch_first)
        st = (L * D, B, H)
        got = core.stack_forward(cell, reset_after, L, D, dropout, seed, _at(x, rows(T, B, I, batch_first), dtype), w,
                                 _at(h0, st, dtype), _at(c0, st, dtype), seq_lengths, batch_first, bool(cache),
                                 merge=merge)
        for address, shape, value in zip((y, h_n, c_n), (rows(T, B, O, batch_first), st, st), got):
            assert (address == 0) == (value is None)
            if address:
                _at(address, shape, dtype)[...] = value
        if cache:
            _at(cache, got[3].shape, dtype)[...] = got[3]

    def cuda_stack_backward(cell, reset_after, L, D, dropout, seed, merge, dtype, T, B, I, H, x, weights, h0, c0,
                            cache, dy, dh_n, dc_n, dx, dh0, dc0, grads, seq_lengths, batch_first, device, stream,
                            allow_tf32):
        w, O = stack_arrays(cell, L, D, merge, dtype, T, B, I, H, weights, batch_first)
        st = (L * D, B, H)
        n = core.stack_cache_size(cell, reset_after, L, D, dropout, T, B, I, H, merge=merge)
        got_dx, got_dh0, got_dc0, got_grads = core.stack_backward(
            cell, reset_after, L, D, dropout, seed, _at(x, rows(T, B, I, batch_first), dtype), w, _at(h0, st, dtype),
            _at(c0, st, dtype), seq_lengths, batch_first, _at(cache, (n,), dtype),
            _at(dy, rows(T, B, O, batch_first), dtype), _at(dh_n, st, dtype), _at(dc_n, st, dtype), merge=merge)
        for address, shape, value in zip((dx, dh0, dc0), (rows(T, B, I, batch_first), st, st),
                                         (got_dx, got_dh0, got_dc0)):
            assert (address == 0) == (value is None)
            if address:
                _at(address, shape, dtype)[...] = value
        for addresses, values in zip(grads, got_grads):
            for address, value in zip(addresses, values):
                if address:
                    _at(address, value.shape, dtype)[...] = value

    return types.SimpleNamespace(cuda_forward=cuda_forward, cuda_backward=cuda_backward,
                                 cuda_stack_forward=cuda_stack_forward, cuda_stack_backward=cuda_stack_backward,
                                 cuda_device_count=lambda: 1, cache_size=core.cache_size,
                                 stack_cache_size=core.stack_cache_size)


@pytest.fixture
def host_backed(monkeypatch):
    monkeypatch.setattr(_cuda, "_core", _fake_binding(_cuda._core))
    monkeypatch.setitem(_cuda.ADAPTERS, HostBacked.__module__.split(".")[0], HostBackedLib)
    monkeypatch.setattr(_cuda, "_LIBS", {})


def _dev(v):
    return None if v is None else HostBacked(np.array(v))


@pytest.mark.parametrize("opt", list(OPTION_SETS))
@pytest.mark.parametrize("variant", VARIANT_IDS)
def test_device_path_end_to_end(host_backed, variant, opt):
    case = make_case(variant, np.float32, opt)
    want = lstmcore.forward(**case.fwd, **case.opts, training=True)
    want_g = lstmcore.backward(want.cache, **case.grads)
    for training in (False, True):
        got = lstmcore.forward(**{k: _dev(v) for k, v in case.fwd.items()}, **case.opts, training=training)
        for name in FIELDS_FWD:
            g, w = getattr(got, name), getattr(want, name)
            assert (g is None) == (w is None), name
            if w is not None:
                assert isinstance(g, HostBacked) and np.array_equal(g.arr, w), name
    assert isinstance(got.cache, lstmcore.Cache) and not got.cache.consumed
    got_g = lstmcore.backward(got.cache, **{k: _dev(v) for k, v in case.grads.items()})
    assert got.cache.consumed
    for name in FIELDS_BWD:
        g, w = getattr(got_g, name), getattr(want_g, name)
        assert (g is None) == (w is None), name
        if w is not None:
            assert isinstance(g, HostBacked) and np.array_equal(g.arr, w), name


def test_device_path_conversions_and_errors(host_backed):
    case = make_case("gru", np.float64, "seq")
    want = lstmcore.forward(**case.fwd, **case.opts)
    args = {k: _dev(v) for k, v in case.fwd.items()}
    strided = dict(args, w_x=HostBacked(np.asfortranarray(case.fwd["w_x"])))  # not C-contiguous: one copy
    assert np.array_equal(lstmcore.forward(**strided, **case.opts).y.arr, want.y)
    f32 = {k: (None if v is None else HostBacked(v.arr.astype(np.float32))) for k, v in args.items()}
    assert lstmcore.forward(**f32, **case.opts, dtype=np.float64).y.arr.dtype == np.float64
    with pytest.raises(TypeError, match="w_h: dtype float32 differs from the call's dtype float64"):
        lstmcore.forward(**dict(args, w_h=f32["w_h"]), **case.opts)
    with pytest.raises(ValueError, match=r"w_x: expected shape \(I, 3H\)"):
        lstmcore.forward(**dict(args, w_x=HostBacked(case.fwd["w_x"][:-1].copy())), **case.opts)
    with pytest.raises(ValueError, match="h0: expected shape"):
        lstmcore.forward(**dict(args, h0=HostBacked(np.zeros((1, 1)))), **case.opts)
    out = HostBacked(np.zeros(want.y.shape))
    assert lstmcore.forward(**args, **case.opts, out=out).y is out and np.array_equal(out.arr, want.y)
    res = lstmcore.forward(**args, **case.opts, training=True)
    with pytest.raises(TypeError, match="dy: a host array"):
        lstmcore.backward(res.cache, dy=np.zeros(want.y.shape))
    with pytest.raises(ValueError, match="dc_n: the gru cell has no cell state"):
        lstmcore.backward(res.cache, dc_n=HostBacked(np.zeros((case.B, case.H))))
    lstmcore.backward(res.cache)
    with pytest.raises(ValueError, match="already used"):
        lstmcore.backward(res.cache)


# ------------------------------------------------------------------------------------------
# The layer objects on device arrays: the same stack through lstmcore._cuda.stack_forward /
# stack_backward and the (stand-in) CUDA stack binding, equal to the host path bit for bit.

LAYER_CONFIGS = {
    "2x2-concat-dropout-lengths": dict(num_layers=2, bidirectional=True, dropout=0.4, lengths=True),
    "3x1-batch_first-dropout": dict(num_layers=3, dropout=0.3, batch_first=True),
    "2x2-sum-batch_first-lengths": dict(num_layers=2, bidirectional=True, merge="sum", batch_first=True,
                                        lengths=True),
    "1x1-nobias": dict(bias=False),
}


def _layer_pair(variant, config, dtype):
    cls, extra = layer_class(variant)
    kw = {k: v for k, v in LAYER_CONFIGS[config].items() if k != "lengths"}
    layer = cls(5, 7, dtype=dtype, seed=3, **kw, **extra)
    T_, B_ = 6, 4
    rng = np.random.default_rng(11)
    shape = (B_, T_, 5) if layer.batch_first else (T_, B_, 5)
    x = rng.standard_normal(shape).astype(dtype)
    st = (layer.num_layers * layer.num_directions, B_, 7)
    h0 = rng.standard_normal(st).astype(dtype)
    state = (h0, rng.standard_normal(st).astype(dtype)) if layer.cell == "lstm" else h0
    lengths = np.array([6, 2, 5, 1]) if LAYER_CONFIGS[config].get("lengths") else None
    y_shape = shape[:2] + (layer.output_size,)
    dy = rng.standard_normal(y_shape).astype(dtype)
    dh = rng.standard_normal(st).astype(dtype)
    dstate = (dh, rng.standard_normal(st).astype(dtype)) if layer.cell == "lstm" else dh
    return layer, x, state, lengths, dy, dstate


def _dev_state(state):
    return tuple(_dev(s) for s in state) if isinstance(state, tuple) else _dev(state)


def _flat(state):
    return list(state) if isinstance(state, tuple) else [state]


@pytest.mark.parametrize("config", list(LAYER_CONFIGS))
@pytest.mark.parametrize("variant", list(LAYER_VARIANTS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_layer_objects_on_device_arrays(host_backed, variant, config, dtype):
    layer, x, state, lengths, dy, dstate = _layer_pair(variant, config, dtype)
    y, st, cache = layer.forward(x, state, lengths, training=True, dropout_seed=77)
    dx, dst = layer.backward(cache, dy, dstate)
    want_grads = dict(layer.grads)
    y_inf, st_inf = layer(x, state, lengths)

    gy, gst, gcache = layer.forward(_dev(x), _dev_state(state), lengths, training=True, dropout_seed=77)
    assert isinstance(gy, HostBacked) and np.array_equal(gy.arr, y)
    for g, w in zip(_flat(gst), _flat(st)):
        assert isinstance(g, HostBacked) and np.array_equal(g.arr, w)
    if layer.dropout > 0 and layer.num_layers > 1:
        assert np.array_equal(gcache.dropout_mask(0).arr, cache.dropout_mask(0))
    gdx, gdst = layer.backward(gcache, _dev(dy), _dev_state(dstate))
    assert gcache.consumed
    assert isinstance(gdx, HostBacked) and np.array_equal(gdx.arr, dx)
    for g, w in zip(_flat(gdst), _flat(dst)):
        assert isinstance(g, HostBacked) and np.array_equal(g.arr, w)
    assert set(layer.grads) == set(want_grads)
    for name, w in want_grads.items():
        assert isinstance(layer.grads[name], HostBacked) and np.array_equal(layer.grads[name].arr, w), name
    gy_inf, gst_inf = layer(_dev(x), _dev_state(state), lengths)
    assert np.array_equal(gy_inf.arr, y_inf)
    for g, w in zip(_flat(gst_inf), _flat(st_inf)):
        assert np.array_equal(g.arr, w)
    # No state and no gradients of the state: zeros, as on the host.
    y0, _, c0 = layer.forward(x, None, lengths, training=True, dropout_seed=5)
    gy0, _, gc0 = layer.forward(_dev(x), None, lengths, training=True, dropout_seed=5)
    assert np.array_equal(gy0.arr, y0)
    assert np.array_equal(layer.backward(gc0)[0].arr, layer.backward(c0)[0])


def test_layer_objects_on_device_arrays_errors(host_backed):
    layer, x, state, lengths, dy, dstate = _layer_pair("lstm", "2x2-concat-dropout-lengths", np.float32)
    with pytest.raises(TypeError, match=r"x: a host array \(numpy.ndarray\) beside CUDA device arrays"):
        layer(x, _dev_state(state))
    with pytest.raises(TypeError, match="state: expected a tuple"):
        layer(_dev(x), _dev(state[0]))
    with pytest.raises(TypeError, match="dtype float64 differs"):
        layer(_dev(x.astype(np.float64)))
    with pytest.raises(ValueError, match="x: expected shape"):
        layer(_dev(x[..., :3].copy()))
    with pytest.raises(ValueError, match="state\\[0\\] \\(h\\): expected shape"):
        layer(_dev(x), (_dev(state[0][:1]), _dev(state[1])))
    _, _, cache = layer.forward(_dev(x), None, lengths, training=True)
    with pytest.raises(TypeError, match="dy: a host array"):
        layer.backward(cache, dy)
    assert not cache.consumed
    with pytest.raises(ValueError, match="dy: expected shape"):
        layer.backward(cache, _dev(dy[:, :, :3].copy()))
    with pytest.raises(TypeError, match="x_t: step runs on the host"):
        lstmcore.LSTM(5, 7).step(_dev(x[0]))
    peep = lstmcore.LSTM(5, 7, peepholes=True)
    with pytest.raises(ValueError, match="the cell variants .* run on the CPU only"):
        peep(_dev(x))


@pytest.mark.skipif(_cuda.built(), reason="this build has CUDA")
def test_layer_objects_without_cuda_build_say_so():
    layer = lstmcore.GRU(3, 4)
    with pytest.raises(TypeError, match="x: a CUDA device array .* this lstmcore build has no CUDA"):
        layer(FakeCudaArray((2, 1, 3)))


def test_persistent_batch_setting():
    if not _cuda.built():
        with pytest.raises(TypeError, match="no CUDA"):
            _cuda.set_persistent_batch(4)
        return
    saved = _cuda.persistent_batch()
    assert saved == 8
    try:
        _cuda.set_persistent_batch(0)
        assert _cuda.persistent_batch() == 0
        with pytest.raises(ValueError, match="batch: expected >= 0"):
            _cuda.set_persistent_batch(-1)
    finally:
        _cuda.set_persistent_batch(saved)
