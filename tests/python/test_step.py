"""layer.step on the fast path (``_core.layer_step``, lstmcore::step_layer in stepper.h):
the weights read where they lie, so a step never uses a stale copy of them.

Walked over a sequence, step gives the whole-sequence call (float64 1e-12, float32 1e-6
relative: the same equations summed in another order) for every plain cell, both GRU
resets, stacked layers, batch 1 and more, on one and two threads; it never runs the
whole-sequence core; in-place changes to ``params`` reach the next step; the core reads
the caller's arrays (also in gate-major layout, PyTorch's); bad arguments still get named
errors (the checked path), and bfloat16 layers keep the whole-sequence path.
"""
import numpy as np
import pytest

import lstmcore
from lstmcore import _core
from conftest import rel_err

TOL = {np.float64: 1e-12, np.float32: 1e-6}

CASES = [(lstmcore.LSTM, {}), (lstmcore.GRU, {}), (lstmcore.GRU, {"reset_after": False}), (lstmcore.RNN, {}),
         (lstmcore.RNN, {"nonlinearity": "relu"})]


@pytest.fixture
def threads():
    before = lstmcore.get_num_threads()
    yield lstmcore.set_num_threads
    lstmcore.set_num_threads(before)


def _layer(cls, kw, I, H, dtype, num_layers=2, seed=3):
    layer = cls(I, H, num_layers=num_layers, dtype=dtype, seed=seed, **kw)
    rng = np.random.default_rng(seed + 1)
    for name in layer.param_names():  # nonzero biases on both sides
        if ".b" in name:
            layer.params[name][...] = rng.uniform(-0.5, 0.5, layer.params[name].shape)
    return layer


def _no_whole_sequence_core(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("step ran the whole-sequence core")
    monkeypatch.setattr(_core, "stack_forward", refuse)


def _walk(layer, x, state):
    ys = []
    for t in range(x.shape[0]):
        y_t, state = layer.step(x[t], state)
        ys.append(y_t)
    return np.stack(ys), state


@pytest.mark.parametrize("nthreads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls,kw", CASES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_step_walks_the_sequence(cls, kw, dtype, nthreads, threads, monkeypatch):
    threads(nthreads)
    rng = np.random.default_rng(7)
    for B, I, H in ((1, 5, 37), (3, 9, 133)):  # 133: a second thread has units to take
        layer = _layer(cls, kw, I, H, dtype)
        x = rng.standard_normal((4, B, I)).astype(dtype)
        h0 = rng.standard_normal((2, B, H)).astype(dtype)
        given = (h0, rng.standard_normal((2, B, H)).astype(dtype)) if cls is lstmcore.LSTM else h0
        for state0 in (None, given):
            y, state = layer(x, state0)
            with monkeypatch.context() as m:
                _no_whole_sequence_core(m)
                ys, got = _walk(layer, x, state0)
            assert ys.dtype == dtype and ys.shape == y.shape
            assert rel_err(ys, y) < TOL[dtype], (B, H)
            for a, b in zip(got if isinstance(got, tuple) else (got,), state if isinstance(state, tuple) else (state,)):
                assert a.dtype == dtype and a.flags.c_contiguous and rel_err(a, b) < TOL[dtype]


@pytest.mark.parametrize("kw", [{}, {"nonlinearity": "relu"}])
def test_rnn_step_on_two_threads(kw, threads):
    """An RNN's product is a quarter of an LSTM's: it takes a wider layer to split it over two threads."""
    threads(2)
    layer = _layer(lstmcore.RNN, kw, 9, 301, np.float32)
    x = np.random.default_rng(8).standard_normal((3, 5, 9)).astype(np.float32)
    y, h = layer(x)
    ys, got = _walk(layer, x, None)
    assert rel_err(ys, y) < 1e-6 and rel_err(got, h) < 1e-6


def test_step_returns_new_arrays_and_leaves_the_state_alone():
    layer = _layer(lstmcore.LSTM, {}, 4, 19, np.float64)
    x = np.random.default_rng(0).standard_normal((2, 4))
    state = tuple(np.random.default_rng(1).standard_normal((2, 2, 19)) for _ in range(2))
    kept = tuple(s.copy() for s in state)
    y, (h, c) = layer.step(x, state)
    assert all(np.array_equal(s, k) for s, k in zip(state, kept))
    assert not np.shares_memory(y, h) and np.array_equal(y, h[-1])
    y[...] = 0
    assert not np.all(h[-1] == 0)


@pytest.mark.parametrize("cls,kw", CASES[:3], ids=lambda v: getattr(v, "__name__", str(v)))
def test_step_sees_in_place_parameter_updates(cls, kw):
    """A training loop's ``w -= lr * g`` (and replacing an array) reach the very next step."""
    layer = _layer(cls, kw, 6, 21, np.float64)
    x = np.random.default_rng(2).standard_normal((2, 6))
    y0, _ = layer.step(x)
    for name in layer.param_names():
        layer.params[name] -= 0.3 * np.sign(layer.params[name])  # in place
    y1, s1 = layer.step(x)
    want, ws = layer(x[None])
    assert rel_err(y1, want[0]) < 1e-12 and rel_err(y1, y0) > 1e-3
    layer.params["l1.w_x"] = layer.params["l1.w_x"] * 0.5  # a new array (w_h does nothing from zeros)
    y2, _ = layer.step(x)
    assert rel_err(y2, layer(x[None])[0][0]) < 1e-12 and rel_err(y2, y1) > 1e-6


def test_core_reads_the_callers_weights_in_either_layout():
    """_core.layer_step copies nothing: the result follows an in-place change of the caller's
    array; gate-major weights (PyTorch's (G·H, K)) give the input-major result."""
    layer = _layer(lstmcore.GRU, {}, 5, 23, np.float64, num_layers=1)
    w_x, w_h, b, b_h = layer._weights()[0]
    x = np.random.default_rng(4).standard_normal((2, 5))
    y, h, _ = _core.layer_step("gru", True, x, [(w_x, w_h, b, b_h)])
    gm = [(np.ascontiguousarray(w_x.T), np.ascontiguousarray(w_h.T), b, b_h)]
    y_gm, _, _ = _core.layer_step("gru", True, x, gm, gate_major=True)
    assert rel_err(y_gm, y) < 1e-13
    w_x *= 2.0  # the caller's array, in place
    y2, _, _ = _core.layer_step("gru", True, x, [(w_x, w_h, b, b_h)])
    assert rel_err(y2, layer(x[None])[0][0]) < 1e-12 and rel_err(y2, y) > 1e-3
    gm[0][0][...] *= 2.0
    assert rel_err(_core.layer_step("gru", True, x, gm, gate_major=True)[0], y2) < 1e-13
    # not ready as they are (a transposed view, another dtype, a wrong shape): None, nothing written
    assert _core.layer_step("gru", True, x, [(w_x.T, w_h, b, b_h)], gate_major=True) is None
    assert _core.layer_step("gru", True, x.astype(np.float32), [(w_x, w_h, b, b_h)]) is None
    assert _core.layer_step("gru", True, x, [(w_x, w_h, b[:-1], b_h)]) is None


def test_step_bad_arguments_are_named():
    layer = _layer(lstmcore.LSTM, {}, 4, 7, np.float32, num_layers=1)
    x = np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match="x_t"):
        layer.step(np.zeros((2, 5), np.float32))
    with pytest.raises(TypeError, match="x_t"):
        layer.step(x.astype(np.float64))
    with pytest.raises(ValueError, match="h0"):
        layer.step(x, (np.zeros((1, 3, 7), np.float32), np.zeros((1, 2, 7), np.float32)))
    with pytest.raises(TypeError, match="state"):
        layer.step(x, np.zeros((1, 2, 7), np.float32))
    layer.params["l0.b"] = layer.params["l0.b"].astype(np.float64)
    with pytest.raises(TypeError, match=r"params\['l0.b'\]"):
        layer.step(x)
    del layer.params["l0.b"]
    with pytest.raises(KeyError, match="l0.b"):
        layer.step(x)
    # inputs the checked path converts still work: a list, a strided view
    layer = _layer(lstmcore.RNN, {}, 4, 7, np.float64, num_layers=1)
    xs = np.random.default_rng(0).standard_normal((2, 8))[:, ::2]
    assert rel_err(layer.step(xs.tolist())[0], layer.step(np.ascontiguousarray(xs))[0]) == 0


def test_bfloat16_layers_step_like_their_whole_sequence_call():
    layer = _layer(lstmcore.LSTM, {}, 6, 17, np.float32, num_layers=1)
    layer.compute_dtype = "bfloat16"
    x = np.random.default_rng(3).standard_normal((3, 2, 6)).astype(np.float32)
    y, _ = layer(x)
    ys, _ = _walk(layer, x, None)
    assert rel_err(ys, y) < 1e-6


@pytest.mark.parametrize("name,kw", [("LSTMCell", {}), ("GRUCell", {}), ("RNNCell", {"nonlinearity": "relu"})])
def test_torch_cells_without_gradients_step_in_place(name, kw, monkeypatch):
    """lstmcore.torch's cells under no_grad run _core.layer_step on torch's own (gate-major)
    weights: torch.nn's result, in-place weight changes seen, no custom op; with gradients
    they keep the autograd path."""
    torch = pytest.importorskip("torch")
    import lstmcore.torch as lt
    from lstmcore.torch import _ops
    torch.manual_seed(0)
    ours = getattr(lt, name)(5, 19, dtype=torch.float64, **kw)
    ref = getattr(torch.nn, name)(5, 19, dtype=torch.float64, **kw)
    ref.load_state_dict(ours.state_dict())
    x, h = torch.randn(3, 5, dtype=torch.float64), torch.randn(3, 19, dtype=torch.float64)
    hx = (h, torch.randn(3, 19, dtype=torch.float64)) if name == "LSTMCell" else h

    def parts(out):
        return out if isinstance(out, tuple) else (out,)

    with torch.no_grad(), monkeypatch.context() as m:
        m.setattr(_ops, "layer", lambda *a, **k: pytest.fail("the custom op ran"))
        for a, b in zip(parts(ours(x, hx)), parts(ref(x, hx))):
            assert rel_err(a.numpy(), b.numpy()) < 1e-12
        ours.weight_hh.mul_(0.5)
        ref.weight_hh.mul_(0.5)
        for a, b in zip(parts(ours(x[0])), parts(ref(x[0]))):  # unbatched, zero state
            assert a.shape == b.shape and rel_err(a.numpy(), b.numpy()) < 1e-12
        for a, b in zip(parts(ours(x, hx)), parts(ref(x, hx))):
            assert rel_err(a.numpy(), b.numpy()) < 1e-12
    out = parts(ours(x, hx))[0]
    out.sum().backward()
    assert out.requires_grad and ours.weight_ih.grad is not None


def test_bfloat16_gate_major_on_every_isa():
    rng = np.random.default_rng(0)
    T, B, I, H = 2, 5, 11, 5
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    w_x = (0.3 * rng.standard_normal((I, 3 * H))).astype(np.float32)
    w_h = (0.3 * rng.standard_normal((H, 3 * H))).astype(np.float32)
    before = lstmcore.get_isa()
    try:
        for isa in lstmcore.available_isas():
            lstmcore.set_isa(isa)
            # found by the fuzzer: the float kernels packed a gate-major w_x with I != H at stride H
            want = lstmcore.forward(x, w_x, w_h, cell="gru", compute_dtype="bfloat16", training=True)
            got = lstmcore.forward(x, np.ascontiguousarray(w_x.T), np.ascontiguousarray(w_h.T), cell="gru",
                                   compute_dtype="bfloat16", weight_layout="gate_major", training=True)
            assert np.array_equal(got.y, want.y), isa
            dy = np.ones_like(want.y)
            gw, gg = lstmcore.backward(want.cache, dy), lstmcore.backward(got.cache, dy)
            assert np.array_equal(gg.dx, gw.dx), isa
            assert np.array_equal(gg.dw_x, gw.dw_x.T) and np.array_equal(gg.dw_h, gw.dw_h.T), isa
    finally:
        lstmcore.set_isa(before)
