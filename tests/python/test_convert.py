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

from conftest import (LAYER_VARIANTS, TOL32, TOL32_PAIR, TOL64, TORCH_VARIANT_IDS, assert_same_layer, check,
                      float64_copy, layer_class)

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


def state_parts(state, lstm):
    return list(state) if lstm else [state]


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
    assert_same_layer(layer, back)
    assert_same_layer(layer, convert.from_torch(mod))
    assert_same_layer(layer, type(layer).from_state_dict(mod.state_dict(), batch_first=True, dropout=0.1,
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
    ours64 = float64_copy(layer)
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
    y, state = float64_copy(src)(x.astype(np.float64))
    check("y (to_keras)", got[0], y, TOL32, "keras", variant)
    for k, part in enumerate(state_parts(state, lstm)):
        check(f"state[{k}] (to_keras)", got[1 + k], part[0], TOL32, "keras", variant)
    # and back: exact when the Keras format holds both biases (GRU reset_after=True), else
    # b collects b + b_h
    back = convert.from_keras(src.to_keras(), **keras_kwargs(variant))
    if variant == "gru":
        assert_same_layer(src, back)
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
    y, _ = float64_copy(ours)(x.astype(np.float64))
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


# Keras layers with the options that map onto lstmcore's cells, read from the layer objects
# (their config and weights), from get_config() dicts with get_weights() lists, and built back
# by to_keras_layers.
KERAS_CASES = {
    "lstm_relu_hard_sigmoid": ("LSTM", dict(activation="relu", recurrent_activation="hard_sigmoid")),
    "lstm_linear_no_bias": ("LSTM", dict(activation="linear", use_bias=False)),
    "lstm_go_backwards": ("LSTM", dict(go_backwards=True)),
    "lstm_unit_forget_bias_off": ("LSTM", dict(unit_forget_bias=False, activation="softsign")),
    "gru_reset_before": ("GRU", dict(reset_after=False, activation="softsign", recurrent_activation="hard_sigmoid")),
    "gru_reset_after_elu_backwards": ("GRU", dict(reset_after=True, activation="elu", go_backwards=True)),
    "gru_no_bias_softplus": ("GRU", dict(use_bias=False, activation="softplus", reset_after=False)),
    "rnn_leaky_relu": ("SimpleRNN", dict(activation="leaky_relu")),
    "rnn_sigmoid_backwards": ("SimpleRNN", dict(activation="sigmoid", go_backwards=True)),
    "rnn_relu_no_bias": ("SimpleRNN", dict(activation="relu", use_bias=False)),
}


@pytest.mark.parametrize("case", list(KERAS_CASES))
def test_keras_options_both_ways(keras, case):
    B, T, I, H = 3, 7, 5, 4
    rng = np.random.default_rng(len(case))
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    cls, kw = KERAS_CASES[case]
    kl = getattr(keras.layers, cls)(H, return_sequences=True, return_state=True, **kw)
    kl(x)
    kl.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(np.float32) for w in kl.get_weights()])
    want = keras_run(keras, kl, x)
    layer = convert.from_keras(kl)
    assert layer.reverse == kw.get("go_backwards", False) and layer.bias == kw.get("use_bias", True)
    y, state = float64_copy(layer)(x.astype(np.float64))
    if layer.reverse:  # Keras returns a backwards layer's outputs in the order it ran them
        y = y[:, ::-1]
    check("y", y, want[0], TOL32, "keras", case)
    for k, part in enumerate(state_parts(state, cls == "LSTM")):
        check(f"state[{k}]", part[0], want[1 + k], TOL32, "keras", case)
    # the same from the config dict and the weights, and from the class method
    again = convert.from_keras(kl.get_weights(), getattr(lstmcore, "RNN" if cls == "SimpleRNN" else cls)._family,
                               config=kl.get_config())
    assert_same_layer(layer, again)
    assert_same_layer(layer, type(layer).from_keras(kl))
    # lstmcore -> Keras: layers built with the same options and weights compute the same
    built = convert.to_keras_layers(layer)
    assert len(built) == 1 and built[0].get_config()["go_backwards"] == layer.reverse
    got = keras_run(keras, built[0], x)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    assert_same_layer(layer, convert.from_keras(built[0]))


def test_keras_unit_forget_bias_initial_weights(keras):
    # unit_forget_bias initialises the forget-gate bias to 1: carried by the weights
    x = np.zeros((1, 2, 3), np.float32)
    for ufb in (True, False):
        kl = keras.layers.LSTM(4, unit_forget_bias=ufb)
        kl(x)
        layer = convert.from_keras(kl)
        assert np.array_equal(layer.params["l0.b"][4:8], np.full(4, 1.0 if ufb else 0.0, np.float32))
        assert not np.any(layer.params["l0.b"][:4]) and not np.any(layer.params["l0.b"][8:])


@pytest.mark.parametrize("merge", ["concat", "sum"])
def test_keras_bidirectional_layers_and_merge(keras, merge):
    B, T, I, H = 2, 6, 3, 4
    rng = np.random.default_rng(5)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    kls = [keras.layers.Bidirectional(keras.layers.GRU(H, return_sequences=True, activation="softsign",
                                                       reset_after=False), merge_mode=merge) for _ in range(2)]
    model = keras.Sequential([keras.Input((T, I))] + kls)
    for kl in kls:
        kl.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(np.float32) for w in kl.get_weights()])
    want = keras.ops.convert_to_numpy(model(x)).astype(np.float64)
    layer = convert.from_keras(kls)
    assert layer.num_layers == 2 and layer.bidirectional and layer.merge == merge and not layer.reset_after
    check("y", float64_copy(layer)(x.astype(np.float64))[0], want, TOL32, "keras", f"bi_{merge}")
    cfg_layer = convert.from_keras([kl.get_weights() for kl in kls], "gru", config=[kl.get_config() for kl in kls])
    assert_same_layer(layer, cfg_layer)
    built = convert.to_keras_layers(layer)
    y = x
    for kl in built:
        y = kl(y)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(y), want.astype(np.float32))


def test_keras_refusals(keras):
    x = np.zeros((1, 2, 3), np.float32)
    kl = keras.layers.LSTM(4, activation="gelu")
    kl(x)
    with pytest.raises(ValueError, match="'gelu' has no equivalent"):
        convert.from_keras(kl)
    with pytest.raises(ValueError, match="Keras's LSTM uses one activation"):
        lstmcore.LSTM(3, 4, activations=["sigmoid", "tanh", "relu"]).to_keras()
    with pytest.raises(ValueError, match="Keras has no activation equal to leaky_relu, alpha=0.5"):
        lstmcore.RNN(3, 4, activations=["leaky_relu"], activation_alpha=[0.5]).to_keras()
    with pytest.raises(ValueError, match="scaled_tanh"):
        lstmcore.GRU(3, 4, activations=["sigmoid", "scaled_tanh"]).to_keras()
    with pytest.raises(ValueError, match="peepholes"):
        lstmcore.LSTM(3, 4, peepholes=True).to_keras()
    with pytest.raises(ValueError, match="reverse=True"):
        lstmcore.LSTM(3, 4, num_layers=2, reverse=True).to_keras()
    with pytest.raises(ValueError, match="go_backwards"):
        convert.from_keras([[np.zeros((3, 16)), np.zeros((4, 16)), np.zeros(16)]] * 2, "lstm", go_backwards=True)
    with pytest.raises(ValueError, match="given with Keras layers"):
        convert.from_keras(kl, activation="relu")
    with pytest.raises(TypeError, match="expected a Keras layer of a gru"):
        ok = keras.layers.LSTM(4)
        ok(x)
        convert.from_keras(ok, "gru")
    stateful = keras.layers.GRU(4, stateful=True)
    stateful(x)
    with pytest.raises(ValueError, match="stateful"):
        convert.from_keras(stateful)


def test_reverse_layers_have_no_torch_equivalent():
    with pytest.raises(ValueError, match="reverse=True"):
        lstmcore.GRU(3, 4, reverse=True).to_torch()
    with pytest.raises(ValueError, match="reverse=True"):
        lstmcore.RNN(3, 4, reverse=True).state_dict()
