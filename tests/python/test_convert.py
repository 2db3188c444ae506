"""Converters of lstmcore.convert: PyTorch and Keras 3, both ways (ONNX: test_onnx_convert.py).

Each framework runs its own layer on the same inputs and the outputs are compared:
PyTorch in float64 (TOL64); Keras in float32 against lstmcore in float64 on the same
float32-representable weights and inputs (TOL32, one float32 computation against the
exact one). Keras' float64 is not used: under the torch backend keras.ops.matmul promotes
float64 operands to float32 (keras' result_type follows JAX without x64), so its float64
SimpleRNN / GRU(reset_after=False) are float32 inside. Round trips (lstmcore → format →
lstmcore) must be exact: identical arrays.
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
