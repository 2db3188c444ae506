"""ONNX import and export of the layer objects (lstmcore.from_onnx / to_onnx), against
ONNX Runtime, ONNX's own node tests and the models torch.onnx.export writes.

ONNX Runtime computes in float32: a float32 layer's exported model runs there and is
compared with the float64 copy of that layer (same float32-representable weights and
inputs, TOL32). Round trips (layer -> ONNX -> layer) must be exact: the same config and
identical arrays. ONNX Runtime refuses layout=1 (batch-major nodes); those are checked
against the ONNX node tests' expected outputs.
"""
from __future__ import annotations

import contextlib
import io
import os
import warnings

import numpy as np
import pytest

from conftest import TOL32, TOL64, assert_same_layer, check, float64_copy

import lstmcore
from lstmcore import convert

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def ort_run(model, feeds):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return [np.asarray(o, np.float64) for o in sess.run(None, feeds)]


def state_parts(state):
    return list(state) if isinstance(state, tuple) else [state]


def make(cls, I=5, H=4, seed=0, **kw):
    layer = cls(I, H, dtype=np.float32, seed=seed, **kw)
    rng = np.random.default_rng(seed + 100)
    for name, p in layer.params.items():  # biases and peepholes of a size that matters
        if name.endswith((".b", ".b_h", ".peepholes")):
            p[...] = rng.uniform(-0.5, 0.5, p.shape)
    return layer


# Every option ONNX's recurrent operators define, on the layers that carry it. alpha / beta
# are float32-representable (ONNX stores float32 attributes).
OPTIONS = {
    "lstm": (lstmcore.LSTM, {}),
    "lstm_peepholes": (lstmcore.LSTM, dict(peepholes=True)),
    "lstm_clip": (lstmcore.LSTM, dict(clip=0.75)),
    "lstm_input_forget": (lstmcore.LSTM, dict(input_forget=True)),
    "lstm_all": (lstmcore.LSTM, dict(peepholes=True, clip=1.25, input_forget=True)),
    "lstm_acts": (lstmcore.LSTM, dict(activations=["hard_sigmoid", "leaky_relu", "elu"],
                                      activation_alpha=[0.25, 0.125, 0.75], activation_beta=[0.375, None, None])),
    "lstm_acts_scaled": (lstmcore.LSTM, dict(activations=["sigmoid", "scaled_tanh", "affine"],
                                             activation_alpha=[None, 1.5, 0.5], activation_beta=[None, 0.5, 0.25])),
    "lstm_acts_defaults": (lstmcore.LSTM, dict(activations=["hard_sigmoid", "softsign", "softplus"])),
    "gru": (lstmcore.GRU, {}),
    "gru_rb": (lstmcore.GRU, dict(reset_after=False)),
    "gru_clip_acts": (lstmcore.GRU, dict(clip=0.5, activations=["hard_sigmoid", "thresholded_relu"],
                                         activation_alpha=[0.25, 0.125])),
    "gru_rb_acts": (lstmcore.GRU, dict(reset_after=False, activations=["sigmoid", "softsign"])),
    "rnn_tanh": (lstmcore.RNN, {}),
    "rnn_relu": (lstmcore.RNN, dict(nonlinearity="relu")),
    "rnn_acts": (lstmcore.RNN, dict(activations=["leaky_relu"], activation_alpha=[0.25], clip=2.0)),
    "rnn_affine": (lstmcore.RNN, dict(activations=["affine"], activation_alpha=[0.5], activation_beta=[0.125])),
}
SHAPES = {
    "uni": dict(num_layers=1),
    "reverse": dict(num_layers=1, reverse=True),
    "bi": dict(num_layers=1, bidirectional=True),
    "stack_bi_bf": dict(num_layers=2, bidirectional=True, batch_first=True),
    "stack_reverse": dict(num_layers=2, reverse=True),
    "stack_sum": dict(num_layers=2, bidirectional=True, merge="sum"),
}


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("option", list(OPTIONS))
def test_export_runs_in_onnx_runtime_and_round_trips(option, shape, tmp_path):
    cls, kw = OPTIONS[option]
    layer = make(cls, seed=len(option), **kw, **SHAPES[shape])
    T, B, I = 7, 4, layer.input_size
    rng = np.random.default_rng(3)
    x = rng.standard_normal((B, T, I) if layer.batch_first else (T, B, I)).astype(np.float32)
    lens = np.array([T, 2, 5, 1], np.int32)
    S = (layer.num_layers * layer.num_directions, B, layer.hidden_size)
    h0, c0 = (0.5 * rng.standard_normal(S)).astype(np.float32), (0.5 * rng.standard_normal(S)).astype(np.float32)
    lstm = layer.cell == "lstm"
    state = (h0, c0) if lstm else h0

    model = layer.to_onnx(tmp_path / "m.onnx", seq_lengths=True, initial_state=True)
    feeds = dict(X=x, sequence_lens=lens, initial_h=h0, **({"initial_c": c0} if lstm else {}))
    got = ort_run(model, feeds)
    exact = float64_copy(layer)
    y, st = exact(x.astype(np.float64), tuple(s.astype(np.float64) for s in state_parts(state)) if lstm
                  else h0.astype(np.float64), lens)
    key = f"{option}/{shape}"
    check("Y", got[0], y, TOL32, "onnxruntime", key)
    for k, part in enumerate(state_parts(st)):
        check(f"Y_{'hc'[k]}", got[1 + k], part, TOL32, "onnxruntime", key)
    plain = ort_run(layer.to_onnx(), dict(X=x))  # no optional inputs
    check("Y (plain export)", plain[0], exact(x.astype(np.float64))[0], TOL32, "onnxruntime", key)

    assert_same_layer(layer, lstmcore.from_onnx(model))
    assert_same_layer(layer, cls.from_onnx(tmp_path / "m.onnx"))
    # without the metadata to_onnx writes, the graph alone gives the same layer
    bare = onnx.ModelProto()
    bare.CopyFrom(model)
    del bare.metadata_props[:]
    again = lstmcore.from_onnx(bare)
    assert again.config() == layer.config()
    assert all(np.array_equal(again.params[n], p) for n, p in layer.params.items())


def test_exact_option_values_round_trip():
    # ONNX keeps clip and alpha / beta in float32; the metadata restores the exact values
    layer = make(lstmcore.GRU, clip=0.3, activations=["hard_sigmoid", "tanh"], activation_alpha=[0.1, None],
                 activation_beta=[0.7, None])
    model = layer.to_onnx()
    assert_same_layer(layer, lstmcore.from_onnx(model))
    del model.metadata_props[:]
    back = lstmcore.from_onnx(model)
    assert back.clip == float(np.float32(0.3)) and back.activation_alpha == [float(np.float32(0.1)), None]


def test_float64_layers():
    # float64 layers export float64 models; ONNX Runtime runs only float32 recurrent kernels,
    # so a float64 layer runs there exported with dtype=float32
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, 3, 4))
    for cls, kw in OPTIONS.values():
        layer = cls(4, 3, num_layers=2, bidirectional=True, dtype=np.float64, seed=2, **kw)
        assert_same_layer(layer, lstmcore.from_onnx(layer.to_onnx()))
        model = layer.to_onnx(dtype=np.float32)
        back = lstmcore.from_onnx(model)
        assert back.dtype == np.float32
        got = ort_run(model, dict(X=x.astype(np.float32)))
        check("Y", got[0], float64_copy(back)(x.astype(np.float32).astype(np.float64))[0], TOL32,
              "onnxruntime", "float64_as_float32")


# ----------------------------------------------------------------------------------------------
# Reading nodes written by hand: the forms ONNX allows for weights, states and lengths


def one_node(op, W, R, B=None, P=None, *, inputs=("X",), const_nodes=False, init_h=None, init_c=None,
             lens=None, **attrs):
    """A one-node model; W, R, B, P as initializers (or Constant nodes); init_h / init_c arrays
    become initializers, the string "input" a graph input; lens likewise."""
    inits, nodes, g_in = [], [], []
    elem = TensorProto.FLOAT
    T, Bsz, I = 6, 3, W.shape[2]

    def value(name, a):
        if const_nodes:
            nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(a, name)))
        else:
            inits.append(numpy_helper.from_array(a, name))
        return name

    names = ["X", value("W", W), value("R", R), value("B", B) if B is not None else "", "", "", "", ""]
    g_in.append(helper.make_tensor_value_info("X", elem, ["T", "B", I] if not attrs.get("layout") else ["B", "T", I]))
    for i, key, v in ((4, "sequence_lens", lens), (5, "initial_h", init_h), (6, "initial_c", init_c)):
        if isinstance(v, str):
            g_in.append(helper.make_tensor_value_info(key, TensorProto.INT32 if i == 4 else elem, None))
            names[i] = key
        elif v is not None:
            names[i] = value(key, v)
    if P is not None:
        names[7] = value("P", P)
    while names[-1] == "":
        names.pop()
    outs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    node = helper.make_node(op, names, outs, hidden_size=R.shape[2], **attrs)
    graph = helper.make_graph(nodes + [node], "n", g_in,
                              [helper.make_tensor_value_info(o, elem, None) for o in outs], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    return model


def node_arrays(rng, op, D, I=4, H=3, peep=False):
    G = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    W = rng.uniform(-0.6, 0.6, (D, G * H, I)).astype(np.float32)
    R = rng.uniform(-0.6, 0.6, (D, G * H, H)).astype(np.float32)
    B = rng.uniform(-0.5, 0.5, (D, 2 * G * H)).astype(np.float32)
    P = rng.uniform(-0.5, 0.5, (D, 3 * H)).astype(np.float32) if peep else None
    return W, R, B, P


def ours_as_onnx(layer, y, state):
    """lstmcore's y (T, B, D·H) and state as ONNX's Y (T, D, B, H), Y_h (, Y_c) (layout 0)."""
    T, Bsz = y.shape[:2]
    D, H = layer.num_directions, layer.hidden_size
    return [y.reshape(T, Bsz, D, H).transpose(0, 2, 1, 3)] + state_parts(state)


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_node_forms(op, direction):
    rng = np.random.default_rng(11)
    D = 2 if direction == "bidirectional" else 1
    W, R, B, P = node_arrays(rng, op, D, peep=op == "LSTM")
    T, Bsz, H = 6, 3, 3
    x = rng.standard_normal((T, Bsz, 4)).astype(np.float32)
    h0 = (0.5 * rng.standard_normal((D, Bsz, H))).astype(np.float32)
    c0 = (0.5 * rng.standard_normal((D, Bsz, H))).astype(np.float32)
    lens = np.array([6, 2, 4], np.int32)
    attrs = dict(direction=direction, **({"linear_before_reset": 1} if op == "GRU" else {}))
    lstm = op == "LSTM"
    for const_nodes in (False, True):
        # states as initializers: returned with return_state
        model = one_node(op, W, R, B, P, const_nodes=const_nodes, init_h=h0, init_c=c0 if lstm else None,
                         lens="input", **attrs)
        layer, state = convert.from_onnx(model, return_state=True)
        assert np.array_equal(state_parts(state)[0], h0)
        want = ort_run(model, dict(X=x, sequence_lens=lens))
        exact = float64_copy(layer)
        got = ours_as_onnx(layer, *exact(x.astype(np.float64), tuple(s.astype(np.float64) for s in state_parts(state))
                                         if lstm else state.astype(np.float64), lens))
        for name, a, b in zip(("Y", "Y_h", "Y_c"), got, want):
            check(name, a, b, TOL32, "onnxruntime", f"node/{op}/{direction}")
    # states and lengths as graph inputs: the layer's call arguments
    model = one_node(op, W, R, B, P, init_h="input", init_c="input" if lstm else None, lens="input", **attrs)
    layer = lstmcore.from_onnx(model)
    feeds = dict(X=x, sequence_lens=lens, initial_h=h0, **({"initial_c": c0} if lstm else {}))
    want = ort_run(model, feeds)
    st = (h0.astype(np.float64), c0.astype(np.float64)) if lstm else h0.astype(np.float64)
    got = ours_as_onnx(layer, *float64_copy(layer)(x.astype(np.float64), st, lens))
    for name, a, b in zip(("Y", "Y_h", "Y_c"), got, want):
        check(name, a, b, TOL32, "onnxruntime", f"node-inputs/{op}/{direction}")
    # layout=1 (batch-major; ONNX Runtime runs none): the same as the time-major node
    model1 = one_node(op, W, R, B, P, init_h=h0.transpose(1, 0, 2).copy(),
                      init_c=c0.transpose(1, 0, 2).copy() if lstm else None, layout=1, **attrs)
    layer1, state1 = convert.from_onnx(model1, return_state=True)
    assert layer1.batch_first
    for a, b in zip(state_parts(state1), [h0, c0]):
        assert np.array_equal(a, b)
    y1, s1 = layer1(x.transpose(1, 0, 2), state1)
    model0 = one_node(op, W, R, B, P, init_h=h0, init_c=c0 if lstm else None, **attrs)
    want = ort_run(model0, dict(X=x))
    check("Y (layout=1)", ours_as_onnx(layer1, y1.transpose(1, 0, 2), s1)[0], want[0], 2e-5)


def test_onnx_weights_with_initial_state():
    layer = make(lstmcore.LSTM, 3, 2, bidirectional=True)
    t = {i.name: numpy_helper.to_array(i) for i in layer.to_onnx().graph.initializer}
    h0 = np.random.default_rng(0).standard_normal((2, 5, 2)).astype(np.float32)
    back, state = convert.from_onnx_weights("LSTM", t["W_0"], t["R_0"], t["B_0"], initial_h=h0,
                                            direction="bidirectional")
    assert all(np.array_equal(back.params[n], p) for n, p in layer.params.items())
    assert np.array_equal(state[0], h0) and not np.any(state[1])
    gru, none = convert.from_onnx_weights("GRU", np.zeros((1, 6, 3)), np.zeros((1, 6, 2)), linear_before_reset=1)
    assert none is None and gru.reset_after and not gru.bias


def test_from_onnx_weights_options():
    rng = np.random.default_rng(2)
    W, R, B, P = node_arrays(rng, "LSTM", 2, peep=True)
    layer, state = convert.from_onnx_weights(
        "LSTM", W, R, B, P=P, direction="bidirectional", clip=1.5, input_forget=1,
        activations=["HardSigmoid", "LeakyRelu", "Tanh"] * 2, activation_alpha=[0.25, 0.5] * 2,
        activation_beta=[0.5, 0.5])
    assert state is None and layer.peepholes and layer.clip == 1.5 and layer.input_forget
    assert layer.activations == ["hard_sigmoid", "leaky_relu", "tanh"]
    assert layer.activation_alpha == [0.25, 0.5, None] and layer.activation_beta is None  # 0.5: the default
    assert np.array_equal(layer.params["l0_reverse.peepholes"][[0, 2, 1]].ravel(), P[1])
    gru, _ = convert.from_onnx_weights("GRU", *node_arrays(rng, "GRU", 1)[:3], linear_before_reset=0,
                                       direction="reverse")
    assert not gru.reset_after and gru.reverse


def test_onnx_refusals():
    rng = np.random.default_rng(0)
    W, R, B, _ = node_arrays(rng, "LSTM", 2)
    with pytest.raises(ValueError, match="activations"):
        convert.from_onnx_weights("LSTM", W, R, direction="bidirectional",
                                  activations=["Sigmoid", "Tanh", "Tanh", "Sigmoid", "Relu", "Tanh"])
    with pytest.raises(ValueError, match="not one of ONNX's"):
        convert.from_onnx_weights("LSTM", W[:1], R[:1], activations=["Sigmoid", "Gelu", "Tanh"])
    with pytest.raises(ValueError, match="more values"):
        convert.from_onnx_weights("LSTM", W[:1], R[:1], activations=["Sigmoid", "Tanh", "Tanh"],
                                  activation_alpha=[0.5])
    with pytest.raises(ValueError, match="op_type"):
        convert.from_onnx_weights("Conv", W, R)
    with pytest.raises(ValueError, match="input_forget is an LSTM"):
        convert.from_onnx_weights("GRU", np.zeros((1, 6, 3)), np.zeros((1, 6, 2)), input_forget=1)
    relu, _ = convert.from_onnx_weights("RNN", np.zeros((2, 2, 3)), np.zeros((2, 2, 2)), direction="bidirectional",
                                        activations=["Relu", "Relu"])
    assert relu.cell == "rnn_relu" and relu.bidirectional
    # what ONNX cannot say
    for kw in (dict(layer_norm=True), dict(zoneout=0.1), dict(proj_size=2), dict(forget_gate=False)):
        with pytest.raises(ValueError, match=list(kw)[0]):
            lstmcore.LSTM(3, 4, **kw).to_onnx()
    with pytest.raises(ValueError, match="weights="):
        model = one_node("LSTM", W[:1], R[:1])
        model.graph.initializer.pop(0)  # W becomes an unknown name
        model.graph.input.append(helper.make_tensor_value_info("W", TensorProto.FLOAT, None))
        lstmcore.from_onnx(model)
    with pytest.raises(ValueError, match="constant of the model"):
        model = one_node("LSTM", W[:1], R[:1], lens=np.array([6, 6, 6], np.int32))
        lstmcore.from_onnx(model)
    with pytest.raises(ValueError, match="no LSTM, GRU or RNN node"):
        lstmcore.from_onnx(helper.make_model(helper.make_graph([], "g", [], [])))
    with pytest.raises(TypeError, match="GRU"):
        lstmcore.GRU.from_onnx(lstmcore.LSTM(3, 4).to_onnx())


def test_glue_that_computes_is_refused():
    layer = make(lstmcore.LSTM, num_layers=2)
    model = layer.to_onnx()
    for node in model.graph.node:  # layer 1 reads Relu(Y_0) instead of Y_0
        if node.op_type == "Squeeze" and node.input[0] == "Y_0":
            node.op_type = "Relu"
            del node.input[1:]
    with pytest.raises(ValueError, match="node 1: its input X .* more than join"):
        lstmcore.from_onnx(model)
    mixed = make(lstmcore.LSTM, num_layers=2).to_onnx()
    rnodes = [n for n in mixed.graph.node if n.op_type == "LSTM"]
    rnodes[1].attribute.append(helper.make_attribute("direction", "reverse"))
    with pytest.raises(ValueError, match="direction differ from node 0's"):
        lstmcore.from_onnx(mixed)


# ----------------------------------------------------------------------------------------------
# ONNX's own node tests (onnx/backend/test/data/node/test_lstm_* / test_gru_* / test_rnn_* /
# test_simple_rnn_*): the files the onnx package ships, or, where an installed onnx leaves the
# data out, written from its test-case generators (onnx.backend.test.case) in the same layout.

NODE_TEST_PREFIXES = ("test_lstm_", "test_gru_", "test_rnn_", "test_simple_rnn_")


@pytest.fixture(scope="module")
def node_test_dir(tmp_path_factory):
    shipped = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "node")
    if os.path.isdir(os.path.join(shipped, "test_lstm_with_peepholes")):
        return shipped
    import onnx.backend.test.case.node as cases  # noqa: PLC0415

    out = tmp_path_factory.mktemp("onnx_node_tests")
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        found = cases.collect_testcases()
    for case in found:
        if not case.name.startswith(NODE_TEST_PREFIXES) or case.name.endswith("_expanded"):
            continue
        d = out / case.name
        (d / "test_data_set_0").mkdir(parents=True)
        (d / "model.onnx").write_bytes(case.model.SerializeToString())
        inputs, outputs = case.data_sets[0]
        for kind, arrays, infos in (("input", inputs, case.model.graph.input),
                                    ("output", outputs, case.model.graph.output)):
            for j, (a, info) in enumerate(zip(arrays, infos)):
                (d / "test_data_set_0" / f"{kind}_{j}.pb").write_bytes(
                    numpy_helper.from_array(np.asarray(a), info.name).SerializeToString())
    return str(out)


NODE_TESTS = ["test_gru_defaults", "test_gru_with_initial_bias", "test_gru_seq_length", "test_gru_batchwise",
              "test_gru_reverse", "test_gru_bidirectional", "test_lstm_defaults", "test_lstm_with_initial_bias",
              "test_lstm_with_peepholes", "test_lstm_batchwise", "test_lstm_reverse", "test_lstm_bidirectional",
              "test_simple_rnn_defaults", "test_simple_rnn_with_initial_bias", "test_rnn_seq_length",
              "test_simple_rnn_batchwise", "test_simple_rnn_reverse", "test_simple_rnn_bidirectional"]


def read_pb(path):
    t = TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return t.name, numpy_helper.to_array(t)


def test_every_node_test_is_listed(node_test_dir):
    found = sorted(n for n in os.listdir(node_test_dir) if n.startswith(NODE_TEST_PREFIXES)
                   and not n.endswith("_expanded") and "_expanded_" not in n)
    assert found == sorted(NODE_TESTS)


@pytest.mark.parametrize("name", NODE_TESTS)
def test_onnx_node_test(node_test_dir, name):
    d = os.path.join(node_test_dir, name)
    path = os.path.join(d, "model.onnx")
    model = onnx.load(path)
    graph_inputs = [i.name for i in model.graph.input]
    for ds in sorted(n for n in os.listdir(d) if n.startswith("test_data_set_")):
        files = sorted(os.listdir(os.path.join(d, ds)))
        inputs = dict(read_pb(os.path.join(d, ds, f)) for f in files if f.startswith("input_"))
        outputs = [read_pb(os.path.join(d, ds, f))[1] for f in files if f.startswith("output_")]
        inputs = {n: inputs.get(n, a) for n, a in zip(graph_inputs, inputs.values())}  # files name their input
        run = {"X", "sequence_lens", "initial_h", "initial_c"}
        layer = lstmcore.from_onnx(path, weights={k: v for k, v in inputs.items() if k not in run},
                                   dtype=np.float64)
        lstm = layer.cell == "lstm"
        state = None
        if "initial_h" in inputs:
            h = inputs["initial_h"].astype(np.float64)
            state = (h, inputs["initial_c"].astype(np.float64)) if lstm else h
            if layer.batch_first:  # layout=1 states are (B, D, H)
                state = tuple(s.transpose(1, 0, 2) for s in state) if lstm else state.transpose(1, 0, 2)
        y, st = layer(inputs["X"].astype(np.float64), state, inputs.get("sequence_lens"))
        if layer.batch_first:
            ours = [y.reshape(y.shape[0], y.shape[1], layer.num_directions, -1)] + \
                [s.transpose(1, 0, 2) for s in state_parts(st)]
        else:
            ours = ours_as_onnx(layer, y, st)
        by_name = dict(zip(("Y", "Y_h", "Y_c"), ours))
        for out, want in zip(model.graph.output, outputs):
            check(out.name, by_name[out.name], want, TOL32, "onnx-node-tests", name)
        # ONNX Runtime on the same files: it agrees, except that it runs no layout=1 node
        try:
            theirs = ort_run(model, inputs)
        except Exception as exc:  # noqa: BLE001
            assert layer.batch_first and "layout" in str(exc), exc
        else:
            for out, got, want in zip(model.graph.output, theirs, outputs):
                check(f"{out.name} (onnxruntime)", got, want, TOL32)


# ----------------------------------------------------------------------------------------------
# What torch.onnx.export writes for stacked, bidirectional nn.LSTM / nn.GRU


def torch_export(torch, module, args, dynamo, names, fold=True):
    f = io.BytesIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        if dynamo:
            pytest.importorskip("onnxscript")
            return torch.onnx.export(module, args, dynamo=True, input_names=names).model_proto
        torch.onnx.export(module, args, f, dynamo=False, input_names=names, do_constant_folding=fold,
                          dynamic_axes={n: {0: f"{n}_0", 1: f"{n}_1"} for n in names})
    return onnx.load_from_string(f.getvalue())


@pytest.mark.parametrize("with_state", [False, True], ids=["no_state", "state"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tm", "bf"])
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("exporter", ["torchscript", "torchscript_unfolded", "dynamo"])
def test_torch_onnx_export(exporter, kind, batch_first, with_state):
    torch = pytest.importorskip("torch")
    torch.manual_seed(3)
    m = getattr(torch.nn, kind)(3, 5, num_layers=2, bidirectional=True, batch_first=batch_first).eval()
    T, B = 6, 4
    x = torch.randn((B, T, 3) if batch_first else (T, B, 3))
    h0, c0 = 0.5 * torch.randn(4, B, 5), 0.5 * torch.randn(4, B, 5)
    lstm = kind == "LSTM"
    state = ((h0, c0) if lstm else h0) if with_state else None
    args = (x, state) if with_state else (x,)
    names = ["x", "h0", "c0"][:(3 if lstm else 2) if with_state else 1]
    # unfolded: W, R, B are Slice / Concat of torch's weights, states Expand-ed from shapes
    model = torch_export(torch, m, args, exporter == "dynamo", names, fold=exporter != "torchscript_unfolded")
    layer = lstmcore.from_onnx(model)
    assert type(layer).__name__ == kind and layer.batch_first == batch_first and layer.num_layers == 2
    feeds = {i.name: a.numpy() for i, a in zip(model.graph.input, [x] + ([h0, c0] if lstm else [h0]) * with_state)}
    want = ort_run(model, feeds)
    st = None
    if with_state:
        st = (h0.double().numpy(), c0.double().numpy()) if lstm else h0.double().numpy()
    y, s = float64_copy(layer)(x.double().numpy(), st)
    key = f"{exporter}/{kind}"
    check("y", y, want[0], TOL32, "torch.onnx.export", key)
    for k, part in enumerate(state_parts(s)):
        check(f"state[{k}]", part, want[1 + k], TOL32, "torch.onnx.export", key)
    # and it is torch's module
    assert_same_layer(layer, getattr(lstmcore, kind).from_torch(m))


def test_torch_dynamo_export_of_rnn_is_refused():
    torch = pytest.importorskip("torch")
    m = torch.nn.RNN(3, 4, num_layers=2)
    model = torch_export(torch, m, (torch.randn(5, 2, 3),), True, ["x"])
    with pytest.raises(ValueError, match="no LSTM, GRU or RNN node"):
        lstmcore.from_onnx(model)
    # the TorchScript exporter keeps the RNN nodes
    ts = torch_export(torch, m, (torch.randn(5, 2, 3),), False, ["x"])
    assert_same_layer(lstmcore.from_onnx(ts), lstmcore.RNN.from_torch(m))


def test_glue_reading_run_time_values():
    rng = np.random.default_rng(4)
    W, R, B, _ = node_arrays(rng, "GRU", 1)
    # sequence_lens cast from an int64 graph input: the layer's seq_lengths
    model = one_node("GRU", W, R, B, lens="input", linear_before_reset=1)
    node = model.graph.node[-1]
    node.input[4] = "lens32"
    model.graph.node.insert(0, helper.make_node("Cast", ["sequence_lens"], ["lens32"], to=TensorProto.INT32))
    model.graph.input[1].type.tensor_type.elem_type = TensorProto.INT64
    x = rng.standard_normal((6, 3, 4)).astype(np.float32)
    lens = np.array([6, 1, 3])
    want = ort_run(model, dict(X=x, sequence_lens=lens))
    layer = lstmcore.from_onnx(model)
    got = ours_as_onnx(layer, *float64_copy(layer)(x.astype(np.float64), None, lens))
    check("Y", got[0], want[0], TOL32)
    # an initial state computed from the input's values is not a state lstmcore can take
    model = one_node("GRU", W, R, B, linear_before_reset=1)
    node = model.graph.node[-1]
    node.input.extend(["", "h0"])
    model.graph.node.insert(0, helper.make_node("Slice", ["X", "starts", "ends", "axes"], ["h0"]))  # X[:1, :, :3]
    for name, v in (("starts", [0, 0]), ("ends", [1, 3]), ("axes", [0, 2])):
        model.graph.initializer.append(numpy_helper.from_array(np.array(v, np.int64), name))
    with pytest.raises(ValueError, match="initial_h is computed from the values"):
        lstmcore.from_onnx(model)


@pytest.mark.parametrize("shape", ["uni", "reverse", "stack_bi", "stack_sum"])
@pytest.mark.parametrize("option", ["lstm", "lstm_peepholes", "gru", "gru_rb", "rnn_tanh"])
@pytest.mark.parametrize("layout", [0, 1])
def test_float64_export_against_onnx_reference_evaluator(option, shape, layout):
    # onnx.reference runs float64 and layout=1 (ONNX Runtime neither), but implements only the
    # plain cells (RNN: Tanh), peepholes, linear_before_reset, directions and initial states
    from onnx.reference import ReferenceEvaluator  # noqa: PLC0415

    cls, kw = OPTIONS[option]
    shapes = {"uni": {}, "reverse": dict(reverse=True), "stack_bi": dict(num_layers=2, bidirectional=True),
              "stack_sum": dict(num_layers=2, bidirectional=True, merge="sum")}
    layer = cls(4, 3, batch_first=True, dtype=np.float64, seed=6, **kw, **shapes[shape])
    model = layer.to_onnx(layout=layout, initial_state=True)
    assert {a.i for n in model.graph.node for a in n.attribute if a.name == "layout"} == ({1} if layout else set())
    assert_same_layer(layer, lstmcore.from_onnx(model))
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, 5, 4))
    S = (layer.num_layers * layer.num_directions, 3, 3)
    state = tuple(rng.standard_normal(S) for _ in range(2 if layer.cell == "lstm" else 1))
    want = ReferenceEvaluator(model).run(None, dict(zip(("X", "initial_h", "initial_c"), (x,) + state)))
    y, st = layer(x, state if layer.cell == "lstm" else state[0])
    check("Y", y, want[0], TOL64, "onnx.reference", f"{option}/{shape}/layout{layout}")
    for k, part in enumerate(state_parts(st)):
        check(f"Y_{'hc'[k]}", part, want[1 + k], TOL64, "onnx.reference", f"{option}/{shape}/layout{layout}")
    if layout:
        with pytest.raises(ValueError, match="layout"):
            cls(4, 3, **kw).to_onnx(layout=1)
