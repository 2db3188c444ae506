"""Gradient clipping and initialisers: against torch.nn.utils and the definitions."""
import math

import numpy as np
import pytest

import lstmcore

DTYPES = [np.float32, np.float64]


def _training_grads(dtype, seed=0, cell="lstm"):
    rng = np.random.default_rng(seed)
    T, B, I, H = 5, 3, 7, 11
    G = {"lstm": 4, "gru": 3, "rnn_tanh": 1}[cell]
    x = rng.standard_normal((T, B, I)).astype(dtype)
    w_x = rng.uniform(-0.5, 0.5, (I, G * H)).astype(dtype)
    w_h = rng.uniform(-0.5, 0.5, (H, G * H)).astype(dtype)
    b = rng.uniform(-0.5, 0.5, G * H).astype(dtype)
    b_h = rng.uniform(-0.5, 0.5, G * H).astype(dtype)
    res = lstmcore.forward(x, w_x, w_h, b, b_h, cell=cell, training=True)
    return lstmcore.backward(res.cache, 3 * rng.standard_normal(res.y.shape).astype(dtype))


def _rel(a, b):
    return np.linalg.norm(np.asarray(a, np.float64) - b) / max(np.linalg.norm(b), 1e-300)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.5, math.inf])
@pytest.mark.parametrize("max_norm", [0.1, 1e9])
def test_clip_grad_norm_matches_torch(dtype, norm_type, max_norm):
    torch = pytest.importorskip("torch")
    g = _training_grads(dtype)
    params = [g.dw_x, g.dw_h, g.db, g.db_h]
    before = [p.copy() for p in params]
    inputs_before = [g.dx.copy(), g.dh0.copy(), g.dc0.copy()]
    tensors = []
    for p in before:
        t = torch.zeros(p.shape, dtype=torch.float64, requires_grad=True)
        t.grad = torch.from_numpy(p.astype(np.float64))
        tensors.append(t)
    want_norm = float(torch.nn.utils.clip_grad_norm_(tensors, max_norm, norm_type=norm_type))
    got_norm = lstmcore.clip_grad_norm(g, max_norm, norm_type=norm_type)
    tol = 1e-12 if dtype == np.float64 else 1e-6
    assert isinstance(got_norm, float)
    assert abs(got_norm - want_norm) <= tol * want_norm
    for p, t in zip(params, tensors):
        assert p.dtype == dtype
        assert _rel(p, t.grad.numpy()) <= tol
    if max_norm < want_norm:
        assert not np.allclose(params[0], before[0])
    else:
        for p, q in zip(params, before):
            assert np.array_equal(p, q)
    # the input gradients are not parameters: untouched
    for p, q in zip([g.dx, g.dh0, g.dc0], inputs_before):
        assert np.array_equal(p, q)


@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_grad_norm_dicts_lists_and_arrays(dtype):
    layer = lstmcore.GRU(4, 6, num_layers=2, bidirectional=True, dtype=dtype, seed=1)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 3, 4)).astype(dtype)
    y, _, cache = layer.forward(x, training=True)
    layer.backward(cache, rng.standard_normal(y.shape).astype(dtype))
    grads = layer.grads
    flat = np.concatenate([v.ravel() for v in grads.values()]).astype(np.float64)
    want = np.linalg.norm(flat)
    ids = {k: id(v) for k, v in grads.items()}
    got = lstmcore.clip_grad_norm(grads, 0.5 * want)
    assert abs(got - want) <= 1e-6 * want
    after = np.concatenate([v.ravel() for v in grads.values()]).astype(np.float64)
    assert abs(np.linalg.norm(after) - 0.5 * want) <= 1e-5 * want
    assert {k: id(v) for k, v in grads.items()} == ids  # in place
    # a list mixing an array and a dict; a bare array
    a = rng.standard_normal(7).astype(dtype)
    d = {"w": rng.standard_normal((2, 3)).astype(dtype)}
    want = math.sqrt(float(np.sum(a.astype(np.float64) ** 2) + np.sum(d["w"].astype(np.float64) ** 2)))
    assert abs(lstmcore.clip_grad_norm([a, d, None], 1e9) - want) <= 1e-6 * want
    assert lstmcore.clip_grad_norm([], 1.0) == 0.0


def test_clip_grad_norm_nonfinite_and_errors():
    a = np.array([1.0, np.nan])
    with pytest.raises(ValueError, match="total norm"):
        lstmcore.clip_grad_norm(a, 1.0, error_if_nonfinite=True)
    with pytest.raises(ValueError, match="max_norm"):
        lstmcore.clip_grad_norm(np.ones(3), -1.0)
    with pytest.raises(ValueError, match="norm_type"):
        lstmcore.clip_grad_norm(np.ones(3), 1.0, norm_type=0)
    with pytest.raises(TypeError, match="grads"):
        lstmcore.clip_grad_norm("nope", 1.0)
    with pytest.raises(TypeError, match="float"):
        lstmcore.clip_grad_norm(np.ones(3, np.int64), 1.0)
    ro = np.ones(3)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        lstmcore.clip_grad_value(ro, 0.5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_grad_value_matches_torch(dtype):
    torch = pytest.importorskip("torch")
    g = _training_grads(dtype, seed=3, cell="gru")
    params = [g.dw_x, g.dw_h, g.db, g.db_h]
    tensors = []
    for p in params:
        t = torch.zeros(p.shape, dtype=torch.float64, requires_grad=True)
        t.grad = torch.from_numpy(p.astype(np.float64))
        tensors.append(t)
    dx = g.dx.copy()
    torch.nn.utils.clip_grad_value_(tensors, 0.25)
    assert lstmcore.clip_grad_value(g, 0.25) is g
    for p, t in zip(params, tensors):
        np.testing.assert_array_equal(p, t.grad.numpy().astype(dtype))
        assert np.abs(p).max() <= 0.25
    np.testing.assert_array_equal(g.dx, dx)
    n = np.array([np.nan, 3.0, -3.0])
    lstmcore.clip_grad_value(n, 1.0)
    assert np.isnan(n[0]) and n[1] == 1.0 and n[2] == -1.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7, 28), (28, 7), (5, 5), (1, 12)])
def test_orthogonal(dtype, shape):
    w = lstmcore.init.orthogonal(shape, rng=0, dtype=dtype)
    assert w.shape == shape and w.dtype == dtype
    small = w @ w.T if shape[0] <= shape[1] else w.T @ w
    tol = 1e-12 if dtype == np.float64 else 1e-5
    assert _rel(small, np.eye(min(shape))) <= tol
    assert not np.array_equal(w, lstmcore.init.orthogonal(shape, rng=1, dtype=dtype))
    np.testing.assert_array_equal(w, lstmcore.init.orthogonal(shape, rng=0, dtype=dtype))
    g = lstmcore.init.orthogonal(shape, rng=0, gain=2.0, dtype=np.float64)
    assert _rel(g, 2.0 * lstmcore.init.orthogonal(shape, rng=0, dtype=np.float64)) <= 1e-15


def test_glorot_uniform_bounds_and_spread():
    I, GH = 37, 4 * 53
    w = lstmcore.init.glorot_uniform((I, GH), rng=5, dtype=np.float64)
    limit = math.sqrt(6.0 / (I + GH))
    assert w.shape == (I, GH)
    assert np.abs(w).max() <= limit
    # uniform on [-limit, limit]: variance limit²/3, mean 0
    assert abs(w.var() / (limit ** 2 / 3) - 1) < 0.05
    assert abs(w.mean()) < 0.02 * limit


def test_unit_forget_bias():
    b = np.zeros(4 * 5, np.float32)
    assert lstmcore.init.unit_forget_bias(b) is b
    np.testing.assert_array_equal(b, np.r_[np.zeros(5), np.ones(5), np.zeros(10)].astype(np.float32))
    with pytest.raises(ValueError, match="b:"):
        lstmcore.init.unit_forget_bias(np.zeros(7))
    with pytest.raises(ValueError, match="b:"):
        lstmcore.init.unit_forget_bias(np.zeros((2, 8)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("family", ["lstm", "gru", "rnn"])
def test_layer_keras_init(family, dtype):
    cls = {"lstm": lstmcore.LSTM, "gru": lstmcore.GRU, "rnn": lstmcore.RNN}[family]
    H = 6
    layer = cls(4, H, num_layers=2, bidirectional=True, dtype=dtype, seed=0, init="keras")
    assert layer.init == "keras"
    G = layer.gates
    for name, arr in layer.params.items():
        assert arr.dtype == dtype and arr.shape == layer.param_shape(name)
        kind = name.split(".")[1]
        if kind == "w_x":
            assert np.abs(arr).max() <= math.sqrt(6.0 / sum(arr.shape)) * (1 + 1e-6)
        elif kind == "w_h":
            tol = 1e-12 if dtype == np.float64 else 1e-5
            assert _rel(arr @ arr.T, np.eye(H)) <= tol
        elif kind == "b" and family == "lstm":
            want = np.zeros(G * H)
            want[H:2 * H] = 1
            np.testing.assert_array_equal(arr, want)
        else:
            assert not arr.any()
    # the default is PyTorch's scheme, unchanged
    torch_layer = cls(4, H, dtype=dtype, seed=0)
    assert torch_layer.init == "torch"
    bound = 1 / math.sqrt(H)
    assert all(np.abs(a).max() <= bound for a in torch_layer.params.values())
    torch_layer.reset_parameters(1, init="keras")
    assert not torch_layer.params["l0.w_h"].std() == 0
    with pytest.raises(ValueError, match="init"):
        cls(4, H, init="xavier")
    with pytest.raises(ValueError, match="init"):
        torch_layer.reset_parameters(init="nope")
    # a keras-initialised layer runs
    y, _ = layer(np.ones((3, 2, 4), dtype))
    assert np.isfinite(y).all()


def test_original_lstm_squashing_functions_are_scaled_tanh():
    # README: g(x) = 4σ(x) − 2 and h(x) = 2σ(x) − 1 (Hochreiter & Schmidhuber 1997) are
    # scaled_tanh with (α, β) = (2, ½) and (1, ½); an LSTM built from them by hand agrees.
    rng = np.random.default_rng(9)
    T, B, I, H = 5, 3, 4, 6
    x = rng.standard_normal((T, B, I))
    w_x = rng.uniform(-0.6, 0.6, (I, 4 * H))
    w_h = rng.uniform(-0.6, 0.6, (H, 4 * H))
    b = rng.uniform(-0.5, 0.5, 4 * H)
    res = lstmcore.forward(x, w_x, w_h, b, activations=["sigmoid", "scaled_tanh", "scaled_tanh"],
                           activation_alpha=[None, 2, 1], activation_beta=[None, 0.5, 0.5], forget_gate=False)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    h = np.zeros((B, H))
    c = np.zeros((B, H))
    ys = []
    for t in range(T):
        a = x[t] @ w_x + h @ w_h + b
        i, g, o = sig(a[:, :H]), 4 * sig(a[:, 2 * H:3 * H]) - 2, sig(a[:, 3 * H:])
        c = c + i * g
        h = o * (2 * sig(c) - 1)
        ys.append(h)
    assert _rel(res.y, np.stack(ys)) <= 1e-13
