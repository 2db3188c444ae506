"""Forward against ONNX Runtime's LSTM, GRU and RNN operators (float32), nodes built with
onnx.helper. GRU reset_after=False is linear_before_reset=0, reset_after=True is
linear_before_reset=1. ONNX orders gates LSTM i,o,f,c and GRU z,r,h, stores W as
(num_directions, G·H, I) = our w_x.T with blocks permuted, R likewise from w_h, and
B = concat(Wb, Rb). With sequence_lens, ONNX defines Y only at each sequence's valid
steps (and Y_h as the state after its last one), so only those are compared; direction
"reverse" runs each sequence from its own last valid step, as lstmcore does."""
from __future__ import annotations

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

from conftest import TOL32, TOL32_PAIR, VARIANT_IDS, Case, check, reference  # noqa: E402

#: our gate blocks in ONNX's order
ONNX_ORDER = {"lstm": [0, 3, 1, 2], "gru": [1, 0, 2], "rnn_tanh": [0], "rnn_relu": [0]}
OPS = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN", "rnn_relu": "RNN"}

ONNX_OPTIONS = {
    "plain": dict(sizes=(7, 3, 13, 7)),
    "reverse": dict(sizes=(13, 2, 7, 13), reverse=True),
    "seq": dict(sizes=(13, 7, 3, 7), seq=True),
    "seq_reverse": dict(sizes=(33, 13, 2, 3), seq=True, reverse=True),
    "no_bias_no_state": dict(sizes=(3, 1, 1, 2), bias=(), state=()),
    "big_h_seq_reverse": dict(sizes=(7, 3, 13, 130), seq=True, reverse=True),
}


def _blocks(a, order, H):
    """Permutes the gate blocks of the last axis of ``a`` into ``order``."""
    return np.concatenate([a[..., k * H:(k + 1) * H] for k in order], axis=-1)


def run_ort(case, attrs=None, peepholes=None, evaluator="ort"):
    """Runs ``case``'s forward (float32) through an ONNX Runtime node; returns Y (T, B, H),
    Y_h and Y_c (None for GRU/RNN) in lstmcore's layout. ``attrs``: more node attributes
    (activations, clip, ...); ``peepholes`` (3, H) in lstmcore's order i, f, o (ONNX's P
    is i, o, f); ``evaluator="reference"`` runs onnx.reference.ReferenceEvaluator instead."""
    assert not case.opts["batch_first"]
    extra = dict(attrs or {})
    cell = case.cell
    T, B, I, H = case.sizes
    G = case.G
    f = {k: (None if v is None else np.asarray(v, np.float32)) for k, v in case.fwd.items()}
    order = ONNX_ORDER[cell]
    W = _blocks(f["w_x"], order, H).T[None]          # (1, G·H, I)
    R = _blocks(f["w_h"], order, H).T[None]          # (1, G·H, H)
    zeros = np.zeros(G * H, np.float32)
    Bias = np.concatenate([_blocks(zeros if f["b"] is None else f["b"], order, H),
                           _blocks(zeros if f["b_h"] is None else f["b_h"], order, H)])[None]
    feeds = {"X": f["x"], "W": W, "R": R, "B": Bias}
    inputs = ["X", "W", "R", "B", "", "", "", ""]
    if case.seq_lengths is not None:
        feeds["sequence_lens"] = case.seq_lengths.astype(np.int32)
        inputs[4] = "sequence_lens"
    if f["h0"] is not None:
        feeds["initial_h"] = f["h0"][None]
        inputs[5] = "initial_h"
    if cell == "lstm" and f["c0"] is not None:
        feeds["initial_c"] = f["c0"][None]
        inputs[6] = "initial_c"
    if peepholes is not None:
        pp = np.asarray(peepholes, np.float32)
        feeds["P"] = np.concatenate([pp[0], pp[2], pp[1]])[None]
        inputs[7] = "P"
    if cell != "lstm":
        inputs = inputs[:6]
    while inputs[-1] == "":
        inputs.pop()
    outputs = ["Y", "Y_h"] + (["Y_c"] if cell == "lstm" else [])
    attrs = dict(hidden_size=H, direction="reverse" if case.opts["reverse"] else "forward")
    if cell == "gru":
        attrs["linear_before_reset"] = 1 if case.reset_after else 0
    if cell.startswith("rnn"):
        attrs["activations"] = ["Tanh" if cell == "rnn_tanh" else "Relu"]
    attrs.update(extra)
    node = helper.make_node(OPS[cell], inputs, outputs, **attrs)
    shapes = {"X": [T, B, I], "W": [1, G * H, I], "R": [1, G * H, H], "B": [1, 2 * G * H],
              "sequence_lens": [B], "initial_h": [1, B, H], "initial_c": [1, B, H], "P": [1, 3 * H]}
    g_in = [helper.make_tensor_value_info(n, TensorProto.INT32 if n == "sequence_lens"
                                          else TensorProto.FLOAT, shapes[n]) for n in feeds]
    out_shapes = {"Y": [T, 1, B, H], "Y_h": [1, B, H], "Y_c": [1, B, H]}
    g_out = [helper.make_tensor_value_info(n, TensorProto.FLOAT, out_shapes[n]) for n in outputs]
    graph = helper.make_graph([node], "rnn", g_in, g_out)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    if evaluator == "reference":
        from onnx.reference import ReferenceEvaluator  # noqa: PLC0415

        res = ReferenceEvaluator(model).run(outputs, feeds)
    else:
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        res = sess.run(outputs, {k: feeds[k] for k in feeds})
    y = res[0][:, 0]
    return y.astype(np.float64), res[1][0].astype(np.float64), (
        res[2][0].astype(np.float64) if cell == "lstm" else None)


def _valid(case, y):
    """y (T, B, H) with the steps past each sequence's length set to 0 (undefined in ONNX)."""
    y = np.array(y, np.float64)
    if case.seq_lengths is not None:
        for b, n in enumerate(case.seq_lengths):
            y[n:, b] = 0.0
    return y


CASES = [(v, o) for v in VARIANT_IDS for o in ONNX_OPTIONS]


@pytest.mark.parametrize("variant,opt", CASES, ids=[f"{v}-{o}" for v, o in CASES])
def test_ort_vs_reference(variant, opt):
    """Pins the reference (incl. GRU reset_after=False, which torch lacks) to ONNX."""
    case = Case(variant, np.float32, seed=321, **ONNX_OPTIONS[opt])
    y, h_n, c_n = run_ort(case)
    want = reference.forward(**case.fwd, **case.opts)
    check("Y", _valid(case, y), want.y, TOL32, "ort-vs-ref float32", variant)
    check("Y_h", h_n, want.h_n, TOL32, "ort-vs-ref float32", variant)
    check("Y_c", c_n, want.c_n, TOL32, "ort-vs-ref float32", variant)


@pytest.mark.parametrize("variant,opt", CASES, ids=[f"{v}-{o}" for v, o in CASES])
def test_core_vs_ort(variant, opt):
    import lstmcore

    case = Case(variant, np.float32, seed=321, **ONNX_OPTIONS[opt])
    y, h_n, c_n = run_ort(case)
    res = lstmcore.forward(**case.fwd, **case.opts)
    check("Y", _valid(case, y), res.y, TOL32_PAIR, "core-vs-ort float32", variant)
    check("Y_h", h_n, res.h_n, TOL32_PAIR, "core-vs-ort float32", variant)
    check("Y_c", c_n, res.c_n, TOL32_PAIR, "core-vs-ort float32", variant)
