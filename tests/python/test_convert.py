"""Converters of lstmcore.convert: PyTorch, Keras 3 and ONNX, both ways.

Each framework runs its own layer on the same inputs and the outputs are compared:
PyTorch in float64 (TOL64); Keras and ONNX Runtime in float32 against lstmcore in
float64 on the same float32-representable weights and inputs (TOL32, one float32
computation against the exact one). Keras' float64 is not used: under the torch backend
keras.ops.matmul promotes float64 operands to float32 (keras' result_type follows
JAX without x64), so its float64 SimpleRNN / GRU(reset_after=False) are float32 inside.
ONNX Runtime's LSTM has no float64 kernel. Round trips (lstmcore → format → lstmcore)
must be exact: identical arrays.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from conftest import (LAYER_VARIANTS, TOL32, TOL32_PAIR, TOL64, TORCH_VARIANT_IDS, check,
                      layer_class)

import lstmcore
from lstmcore import convert



def make_layer(variant, I=5, H=4, dtype=np.float64, seed=0, **kw):
    cls, extra = layer_class(variant)
    layer = cls(I, H, dtype=dtype, seed=seed, **extra, **kw)
    # biases of a size that matters (PyTorch's init is small)
    rng = np.random.default_rng(seed + 100)
    for name, p in layer.params.items():
        if name.endswith((".b", ".b_h")):
            p[...] = rng.uniform(-0.5, 0.5, p.shape)
    return layer


def assert_same_params(a, b):
    assert type(a) is type(b)
    assert a.config() == b.config(), (a.config(), b.config())
    assert sorted(a.params) == sorted(b.params)
    for name in a.params:
        assert a.params[name].dtype == b.params[name].dtype, name
        assert np.array_equal(a.params[name], b.params[name]), name


def state_parts(state, lstm):
    return list(state) if lstm else [state]


def f32_exact(layer):
    """A float64 copy of a float32 layer (same values)."""
    cfg = layer.config()
    cls = type(layer)
    kw = dict(num_layers=cfg["num_layers"], bias=cfg["bias"], batch_first=cfg["batch_first"],
              bidirectional=cfg["bidirectional"], dtype=np.float64)
    if "reset_after" in cfg:
        kw["reset_after"] = cfg["reset_after"]
    if "nonlinearity" in cfg:
        kw["nonlinearity"] = cfg["nonlinearity"]
    copy = cls(cfg["input_size"], cfg["hidden_size"], **kw)
    copy.params = {k: v.astype(np.float64) for k, v in layer.params.items()}
    return copy


# ----------------------------------------------------------------------------------------------
# PyTorch


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("variant", TORCH_VARIANT_IDS)
def test_torch_both_ways(variant, num_layers, bidirectional):
    torch = pytest.importorskip("torch")
    layer = make_layer(variant, num_layers=num_layers, bidirectional=bidirectional, batch_first=True, dropout=0.1)
    mod = layer.to_torch()
    assert mod.batch_first and mod.dropout == 0.1 and mod.num_layers == num_layers
    assert next(mod.parameters()).dtype == torch.float64
    back = type(layer).from_torch(mod)
    assert_same_params(layer, back)
    assert_same_params(layer, convert.from_torch(mod))
    assert_same_params(layer, type(layer).from_state_dict(mod.state_dict(), batch_first=True, dropout=0.1,
                                                           **({"nonlinearity": layer.nonlinearity}
                                                              if layer.cell.startswith("rnn") else {})))
    sd = layer.state_dict()
    assert sorted(sd) == sorted(mod.state_dict())
    x = np.random.default_rng(1).standard_normal((3, 6, 5))
    lstm = layer.cell == "lstm"
    mod.eval()
    with torch.no_grad():
        yt, st = mod(torch.tensor(x))
    y, s = layer(x)
    check("y", y, yt.numpy(), TOL64)
    for a, b in zip(state_parts(s, lstm), state_parts(st, lstm)):
        check("state", a, b.numpy(), TOL64)


def test_torch_float32_and_no_bias():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    mod = torch.nn.GRU(4, 3, num_layers=2, bias=False, bidirectional=True)
    layer = lstmcore.GRU.from_torch(mod)
    assert layer.dtype == np.float32 and not layer.bias and all(".b" not in n for n in layer.params)
    again = layer.to_torch()
    for k, v in mod.state_dict().items():
        assert torch.equal(again.state_dict()[k], v)


def test_torch_refusals():
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match="peepholes"):
        lstmcore.LSTM(3, 4, peepholes=True).to_torch()
    with pytest.raises(TypeError, match="GRU"):
        lstmcore.GRU.from_torch(torch.nn.LSTM(3, 4))
    with pytest.raises(ValueError, match="reset_after"):
        lstmcore.GRU(3, 4, reset_after=False).to_torch()
    with pytest.raises(ValueError, match="multiple of 4"):
        lstmcore.LSTM.from_state_dict(torch.nn.RNN(3, 5).state_dict())
    with pytest.raises(TypeError):
        convert.from_torch(torch.nn.Linear(3, 4))


# ----------------------------------------------------------------------------------------------
# Keras 3 (torch backend)


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    return pytest.importorskip("keras")


def keras_layer(keras, variant, H, **kw):
    base = dict(return_sequences=True, return_state=True, **kw)
    if variant == "lstm":
        return keras.layers.LSTM(H, **base)
    if variant in ("gru", "gru_rb"):
        return keras.layers.GRU(H, reset_after=variant == "gru", **base)
    return keras.layers.SimpleRNN(H, activation=variant[4:], **base)


def keras_kwargs(variant):
    if variant.startswith("rnn"):
        return dict(cell="rnn", activation=variant[4:])
    if variant.startswith("gru"):
        return dict(cell="gru", reset_after=variant == "gru")
    return dict(cell="lstm")


def keras_run(keras, kl, x):
    outs = kl(x)
    return [keras.ops.convert_to_numpy(o).astype(np.float64) for o in outs]


@pytest.mark.parametrize("variant", list(LAYER_VARIANTS))
def test_keras_both_ways(keras, variant):
    B, T, I, H = 3, 7, 5, 4
    rng = np.random.default_rng(3)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    kl = keras_layer(keras, variant, H)
    kl(x)  # builds the weights
    kl.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(np.float32) for w in kl.get_weights()])
    want = keras_run(keras, kl, x)

    # Keras -> lstmcore (float32 layer, and its exact float64 copy)
    layer = convert.from_keras(kl.get_weights(), **keras_kwargs(variant))
    assert layer.batch_first and layer.dtype == np.float32
    ours64 = f32_exact(layer)
    y, state = ours64(x.astype(np.float64))
    lstm = variant == "lstm"
    check("y", y, want[0], TOL32, "keras", variant)
    for k, part in enumerate(state_parts(state, lstm)):
        check(f"state[{k}]", part[0], want[1 + k], TOL32, "keras", variant)
    y32, _ = layer(x)
    check("y (float32)", y32, want[0], TOL32_PAIR, "keras", variant)

    # lstmcore -> Keras: a fresh lstmcore layer's weights in a Keras layer
    src = make_layer(variant, I, H, dtype=np.float32, seed=9, batch_first=True)
    kl2 = keras_layer(keras, variant, H)
    kl2(x)
    kl2.set_weights(src.to_keras())
    got = keras_run(keras, kl2, x)
    y, state = f32_exact(src)(x.astype(np.float64))
    check("y (to_keras)", got[0], y, TOL32, "keras", variant)
    for k, part in enumerate(state_parts(state, lstm)):
        check(f"state[{k}] (to_keras)", got[1 + k], part[0], TOL32, "keras", variant)
    # and back: exact when the Keras format holds both biases (GRU reset_after=True), else
    # b collects b + b_h
    back = convert.from_keras(src.to_keras(), **keras_kwargs(variant))
    if variant == "gru":
        assert_same_params(src, back)
    else:
        for name in src.params:
            if name.endswith(".b"):
                assert np.array_equal(back.params[name], src.params[name] + src.params[name + "_h"])
            elif name.endswith(".b_h"):
                assert not np.any(back.params[name])
            else:
                assert np.array_equal(back.params[name], src.params[name])


def test_keras_bidirectional_stack(keras):
    B, T, I, H = 2, 6, 3, 4
    rng = np.random.default_rng(4)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    layers = [keras.layers.Bidirectional(keras.layers.LSTM(H, return_sequences=True)) for _ in range(2)]
    model = keras.Sequential([keras.Input((T, I))] + layers)
    for kl in layers:
        kl.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(np.float32) for w in kl.get_weights()])
    want = keras.ops.convert_to_numpy(model(x)).astype(np.float64)
    ours = convert.from_keras([kl.get_weights() for kl in layers], cell="lstm", bidirectional=True)
    assert ours.num_layers == 2 and ours.bidirectional
    y, _ = f32_exact(ours)(x.astype(np.float64))
    check("y", y, want, TOL32, "keras", "lstm_bi_stack")
    back = ours.to_keras()
    assert len(back) == 2 and all(len(w) == 6 for w in back)


def test_keras_refusals():
    with pytest.raises(ValueError, match="bias: expected shape"):
        convert.from_keras([np.zeros((3, 12)), np.zeros((4, 12)), np.zeros(12)], cell="gru", reset_after=True)
    with pytest.raises(ValueError, match="expected 3 arrays"):
        convert.from_keras([np.zeros((3, 16)), np.zeros((4, 16))], cell="lstm")
    with pytest.raises(ValueError, match="multiple of 3"):
        convert.from_keras([np.zeros((3, 16)), np.zeros((4, 16)), np.zeros(16)], cell="gru", reset_after=False)


# ----------------------------------------------------------------------------------------------
# ONNX


@pytest.fixture(scope="module")
def ort():
    pytest.importorskip("onnx")
    return pytest.importorskip("onnxruntime")


def ort_run(ort, model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return [np.asarray(o, np.float64) for o in sess.run(None, feeds)]


@pytest.mark.parametrize("batch_first", [False, True], ids=["tm", "bf"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("variant", list(LAYER_VARIANTS))
def test_onnx_runtime_and_roundtrip(ort, variant, num_layers, bidirectional, batch_first, tmp_path):
    T, B, I, H = 6, 4, 5, 4
    layer = make_layer(variant, I, H, dtype=np.float32, seed=num_layers, num_layers=num_layers,
                       bidirectional=bidirectional, batch_first=batch_first)
    lstm = variant == "lstm"
    rng = np.random.default_rng(7)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(np.float32)
    lens = np.array([T, 2, 5, 1], np.int64)
    S = (num_layers * layer.num_directions, B, H)
    h0 = (0.5 * rng.standard_normal(S)).astype(np.float32)
    c0 = (0.5 * rng.standard_normal(S)).astype(np.float32)
    state = (h0, c0) if lstm else h0

    model = layer.to_onnx(tmp_path / "m.onnx", seq_lengths=True, initial_state=True)
    feeds = dict(X=x, sequence_lens=lens.astype(np.int32), initial_h=h0)
    if lstm:
        feeds["initial_c"] = c0
    got = ort_run(ort, model, feeds)
    exact = f32_exact(layer)
    y, st = exact(x.astype(np.float64), tuple(s.astype(np.float64) for s in state) if lstm
                  else state.astype(np.float64), lens)
    key = f"{variant}/L{num_layers}/{'bi' if bidirectional else 'uni'}"
    check("Y", got[0], y, TOL32, "onnxruntime", key)
    for k, part in enumerate(state_parts(st, lstm)):
        check(f"Y_{'hc'[k]}", got[1 + k], part, TOL32, "onnxruntime", key)

    # a plain export (no optional inputs) runs too
    plain = ort_run(ort, layer.to_onnx(), dict(X=x))
    check("Y (plain export)", plain[0], exact(x.astype(np.float64))[0], TOL32, "onnxruntime", key)

    # round trip: exact
    assert_same_params(layer, convert.from_onnx(model))
    assert_same_params(layer, type(layer).from_onnx(tmp_path / "m.onnx"))


def test_onnx_weights_with_initial_state():
    pytest.importorskip("onnx")
    layer = make_layer("lstm", 3, 2, num_layers=1, bidirectional=True)
    model = layer.to_onnx()
    from onnx import numpy_helper
    t = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    h0 = np.random.default_rng(0).standard_normal((2, 5, 2))
    back, state = convert.from_onnx_weights("LSTM", t["W_0"], t["R_0"], t["B_0"], initial_h=h0,
                                            direction="bidirectional")
    assert_same_params(layer, back)
    assert np.array_equal(state[0], h0) and not np.any(state[1])
    gru, none = convert.from_onnx_weights("GRU", np.zeros((1, 6, 3)), np.zeros((1, 6, 2)),
                                          linear_before_reset=1)
    assert none is None and gru.reset_after and not gru.bias


def test_onnx_refusals():
    pytest.importorskip("onnx")
    W, R = np.zeros((1, 8, 3)), np.zeros((1, 8, 2))
    with pytest.raises(ValueError, match="reverse"):
        convert.from_onnx_weights("LSTM", W, R, direction="reverse")
    with pytest.raises(ValueError, match="peephole"):
        convert.from_onnx_weights("LSTM", W, R, P=np.ones((1, 6)))
    with pytest.raises(ValueError, match="clip"):
        convert.from_onnx_weights("LSTM", W, R, clip=3.0)
    with pytest.raises(ValueError, match="activations"):
        convert.from_onnx_weights("LSTM", W, R, activations=["Sigmoid", "Tanh", "Relu"])
    with pytest.raises(ValueError, match="op_type"):
        convert.from_onnx_weights("Conv", W, R)
    relu, _ = convert.from_onnx_weights("RNN", np.zeros((2, 2, 3)), np.zeros((2, 2, 2)), direction="bidirectional",
                                        activations=["Relu", "Relu"])
    assert relu.cell == "rnn_relu" and relu.bidirectional


def test_onnx_float64_layers(ort):
    # float64 layers export float64 models (checked by onnx.checker, exact round trip);
    # ONNX Runtime's CPU recurrent kernels are float32 only, so to run there a float64
    # layer is exported with dtype=float32
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, 3, 4))
    for variant in LAYER_VARIANTS:
        layer = make_layer(variant, 4, 3, num_layers=2, bidirectional=True)
        assert_same_params(layer, convert.from_onnx(layer.to_onnx()))
        model = layer.to_onnx(dtype=np.float32)
        got = ort_run(ort, model, dict(X=x.astype(np.float32)))
        as32 = f32_exact(convert.from_onnx(model))
        assert as32.dtype == np.float64
        check("Y (exported as float32)", got[0], as32(x.astype(np.float32).astype(np.float64))[0], TOL32,
              "onnxruntime", f"{variant}_f64_as_f32")
        back = convert.from_onnx(model)
        assert back.dtype == np.float32
        for name, p in layer.params.items():
            assert np.array_equal(back.params[name], p.astype(np.float32))
