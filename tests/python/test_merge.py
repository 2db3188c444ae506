"""Bidirectional layers with merge="sum": forward + reverse, H features per layer.

Checked against a composition of single-direction lstmcore.forward / backward calls (the
definition), against the NumPy reference, and against central finite differences.
"""
import numpy as np
import pytest

import lstmcore
from conftest import LAYER_VARIANTS, fd_check, layer_class
from lstmcore import reference



def _rel(a, b):
    b = np.asarray(b, np.float64)
    return np.linalg.norm(np.asarray(a, np.float64) - b) / max(np.linalg.norm(b), 1e-300)


def _layer(variant, dtype, num_layers=2, **kw):
    cls, extra = layer_class(variant)
    return cls(3, 5, num_layers=num_layers, bidirectional=True, merge="sum", dtype=dtype, seed=7, **extra, **kw)


def _inputs(layer, T=6, B=4, seed=0, lengths=True):
    rng = np.random.default_rng(seed)
    dt = layer.dtype
    x = rng.standard_normal((T, B, layer.input_size)).astype(dt)
    shape = (layer.num_layers * 2, B, layer.hidden_size)
    h0 = 0.5 * rng.standard_normal(shape).astype(dt)
    state = (h0, 0.5 * rng.standard_normal(shape).astype(dt)) if layer.cell == "lstm" else h0
    seq = np.array([T, 1, T - 2, 3][:B]) if lengths else None
    return x, state, seq


def _compose(layer, x, state, seq, dy=None, dstate=None):
    """The definition, one functional call per layer and direction; returns y, state and,
    with dy, (dx, dstate0, grads)."""
    lstm = layer.cell == "lstm"
    h0, c0 = state if lstm else (state, None)
    caches, ys, hn, cn = [], [], [], []
    inp = x
    for k in range(layer.num_layers):
        out = None
        for d in range(2):
            p = f"l{k}" + ("_reverse" if d else "")
            j = 2 * k + d
            r = lstmcore.forward(inp, layer.params[p + ".w_x"], layer.params[p + ".w_h"], layer.params[p + ".b"],
                                 layer.params[p + ".b_h"], h0[j], c0[j] if lstm else None, cell=layer.cell,
                                 reverse=bool(d), seq_lengths=seq, training=dy is not None,
                                 reset_after=layer.reset_after)
            caches.append(r.cache)
            hn.append(r.h_n)
            cn.append(r.c_n)
            out = r.y if out is None else out + r.y
        ys.append(out)
        inp = out
    y = inp
    final = (np.stack(hn), np.stack(cn)) if lstm else np.stack(hn)
    if dy is None:
        return y, final
    dh_n, dc_n = dstate if lstm else (dstate, None)
    grads, dh0, dc0 = {}, [None] * len(hn), [None] * len(hn)
    g_out = dy
    for k in reversed(range(layer.num_layers)):
        g_in = None
        for d in range(2):
            j = 2 * k + d
            p = f"l{k}" + ("_reverse" if d else "")
            g = lstmcore.backward(caches[j], g_out, dh_n[j], dc_n[j] if lstm else None)
            grads.update({p + ".w_x": g.dw_x, p + ".w_h": g.dw_h, p + ".b": g.db, p + ".b_h": g.db_h})
            dh0[j], dc0[j] = g.dh0, g.dc0
            g_in = g.dx if g_in is None else g_in + g.dx
        g_out = g_in
    dstate0 = (np.stack(dh0), np.stack(dc0)) if lstm else np.stack(dh0)
    return y, final, (g_out, dstate0, grads)


def _flat_state(state):
    return list(state) if isinstance(state, tuple) else [state]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("variant", list(LAYER_VARIANTS))
def test_sum_merge_matches_composition(variant, dtype):
    layer = _layer(variant, dtype)
    assert layer.output_size == 5
    assert layer.param_shape("l1.w_x") == (5, layer.gates * 5)
    x, state, seq = _inputs(layer)
    rng = np.random.default_rng(1)
    y, st, cache = layer.forward(x, state, seq, training=True)
    assert y.shape == (6, 4, 5)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dstate = tuple(rng.standard_normal(s.shape).astype(dtype) for s in _flat_state(st))
    dstate = dstate if layer.cell == "lstm" else dstate[0]
    dx, dstate0 = layer.backward(cache, dy, dstate)
    want_y, want_st, (want_dx, want_dstate0, want_grads) = _compose(layer, x, state, seq, dy, dstate)
    tol = 1e-13 if dtype == np.float64 else 2e-6
    assert _rel(y, want_y) <= tol
    for a, b in zip(_flat_state(st), _flat_state(want_st)):
        assert _rel(a, b) <= tol
    assert _rel(dx, want_dx) <= tol
    for a, b in zip(_flat_state(dstate0), _flat_state(want_dstate0)):
        assert _rel(a, b) <= tol
    assert set(layer.grads) == set(want_grads)
    for name, g in layer.grads.items():
        assert _rel(g, want_grads[name]) <= tol, name
    # inference gives the same output
    y_inf, _ = layer(x, state, seq)
    assert _rel(y_inf, y) <= tol


@pytest.mark.parametrize("variant", ["lstm", "gru", "rnn_tanh"])
def test_sum_merge_against_numpy_reference(variant):
    layer = _layer(variant, np.float64, num_layers=1)
    x, state, seq = _inputs(layer)
    y, _ = layer(x, state, seq)
    h0, c0 = state if layer.cell == "lstm" else (state, None)
    want = 0
    for d in range(2):
        p = "l0" + ("_reverse" if d else "")
        r = reference.forward(x, layer.params[p + ".w_x"], layer.params[p + ".w_h"], layer.params[p + ".b"],
                              layer.params[p + ".b_h"], h0[d], c0[d] if c0 is not None else None, cell=layer.cell,
                              reverse=bool(d), seq_lengths=seq)
        want = want + r[0]
    assert _rel(y, want) <= 1e-13


@pytest.mark.parametrize("variant", ["lstm", "gru_rb", "rnn_tanh"])
def test_sum_merge_finite_differences(variant):
    layer = _layer(variant, np.float64, num_layers=2, dropout=0.3)
    T, B = 4, 3
    x, state, seq = _inputs(layer, T=T, B=B, seed=3, lengths=False)
    seq = np.array([4, 2, 3])
    rng = np.random.default_rng(4)
    R = rng.standard_normal((T, B, 5))

    def loss(seed=11):
        y, _, _ = layer.forward(x, state, seq, training=True, dropout_seed=seed)
        return float(np.sum(y * R))

    _, _, cache = layer.forward(x, state, seq, training=True, dropout_seed=11)
    dx, _ = layer.backward(cache, R)
    for name in layer.param_names() + ["x"]:
        arr = x if name == "x" else layer.params[name]
        got = dx if name == "x" else layer.grads[name]
        fd_check(name, loss, arr, got, rng, max_entries=arr.size, category="merge=sum FD", key=variant)


def test_sum_merge_dropout_mask_and_errors(tmp_path):
    layer = _layer("lstm", np.float64, num_layers=3, dropout=0.5)
    x, state, seq = _inputs(layer)
    _, _, cache = layer.forward(x, state, seq, training=True)
    m = cache.dropout_mask(0)
    assert m.shape == (6, 4, 5)
    assert set(np.unique(m)) <= {0.0, 2.0}
    # save / load keeps the merge
    layer.save(tmp_path / "m.npz")
    back = lstmcore.load(tmp_path / "m.npz")
    assert back.merge == "sum" and back.output_size == 5
    y1, _ = layer(x, state, seq)
    y2, _ = back(x, state, seq)
    np.testing.assert_array_equal(y1, y2)
    assert "merge='sum'" in repr(layer)
    with pytest.raises(ValueError, match="merge"):
        lstmcore.LSTM(3, 5, bidirectional=True, merge="mean")
    with pytest.raises(ValueError, match="merge"):
        layer.to_torch()
    assert lstmcore.from_onnx(layer.to_onnx()).merge == "sum"  # ONNX joins the directions by ReduceSum
    # a cache of a concat layer is refused by a sum layer of the same shape otherwise
    other = lstmcore.LSTM(3, 5, num_layers=3, bidirectional=True, dropout=0.5, dtype=np.float64)
    _, _, c2 = other.forward(x, state, seq, training=True)
    with pytest.raises(ValueError, match="configuration"):
        layer.backward(c2, np.zeros((6, 4, 5)))
    # unidirectional: merge changes nothing
    uni = lstmcore.GRU(3, 5, merge="sum", seed=1)
    ref = lstmcore.GRU(3, 5, seed=1)
    np.testing.assert_array_equal(uni(x[:, :, :3].astype(np.float32))[0], ref(x.astype(np.float32))[0])
