"""Layers with reverse=True (every layer runs only the reverse direction: ONNX's
direction="reverse", Keras' go_backwards), against the functional core's reverse=True
chained layer by layer, forward and backward, in float64 (TOL64)."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import LAYER_VARIANTS, TOL64, check, layer_class

import lstmcore


def chain(layer, x, state, lens, dy, dstate):
    """The stack as lstmcore.forward / backward calls (reverse=True), layer by layer."""
    lstm = layer.cell == "lstm"
    h0, c0 = (state if lstm else (state, None))
    opts = dict(cell=layer.cell, reverse=True, seq_lengths=lens, batch_first=layer.batch_first,
                reset_after=layer.reset_after, training=True)
    results, xi = [], x
    for k in range(layer.num_layers):
        p = {kind: layer.params.get(f"l{k}.{kind}") for kind in ("w_x", "w_h", "b", "b_h", "peepholes")}
        r = lstmcore.forward(xi, p["w_x"], p["w_h"], p["b"], p["b_h"], h0[k], c0[k] if lstm else None,
                             peepholes=p["peepholes"], **opts)
        results.append(r)
        xi = r.y
    dh, dc = (dstate if lstm else (dstate, None))
    grads, g = [None] * layer.num_layers, dy
    for k in reversed(range(layer.num_layers)):
        grads[k] = lstmcore.backward(results[k].cache, g, dh[k], dc[k] if lstm else None)
        g = grads[k].dx
    return results, grads


@pytest.mark.parametrize("batch_first", [False, True], ids=["tm", "bf"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("variant", list(LAYER_VARIANTS) + ["lstm_peepholes"])
def test_reverse_layer_is_the_reverse_direction(variant, num_layers, batch_first):
    cls, extra = layer_class("lstm" if variant == "lstm_peepholes" else variant)
    if variant == "lstm_peepholes":
        extra = dict(peepholes=True)
    T, B, I, H = 7, 3, 5, 4
    layer = cls(I, H, num_layers=num_layers, batch_first=batch_first, reverse=True, dtype=np.float64, seed=4,
                **extra)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I))
    lens = np.array([7, 2, 5])
    lstm = layer.cell == "lstm"
    S = (num_layers, B, H)
    state = (rng.standard_normal(S), rng.standard_normal(S)) if lstm else rng.standard_normal(S)
    y, st, cache = layer.forward(x, state, lens, training=True)
    dy = rng.standard_normal(y.shape)
    dstate = (rng.standard_normal(S), rng.standard_normal(S)) if lstm else rng.standard_normal(S)
    dx, dstate0 = layer.backward(cache, dy, dstate)
    results, grads = chain(layer, x, state, lens, dy, dstate)
    check("y", y, results[-1].y, TOL64)
    parts = lambda s: list(s) if lstm else [s]  # noqa: E731
    for k, part in enumerate(parts(st)):
        check(f"state[{k}]", part, np.stack([r[1 + k] for r in results]), TOL64)
    check("dx", dx, grads[0].dx, TOL64)
    for k, part in enumerate(parts(dstate0)):
        check(f"dstate0[{k}]", part, np.stack([g[1 + k] for g in grads]), TOL64)
    for k in range(num_layers):
        for kind, g in (("w_x", "dw_x"), ("w_h", "dw_h"), ("b", "db"), ("b_h", "db_h"), ("peepholes", "dpeepholes")):
            if f"l{k}.{kind}" in layer.params:
                check(f"d l{k}.{kind}", layer.grads[f"l{k}.{kind}"], getattr(grads[k], g), TOL64)
    # y is 0 past each length, as for the other layers
    yt = y.transpose(1, 0, 2) if batch_first else y
    assert not np.any(yt[2:, 1]) and not np.any(yt[5:, 2])


def test_reverse_option_checks_and_files(tmp_path):
    with pytest.raises(ValueError, match="reverse: a bidirectional layer"):
        lstmcore.LSTM(3, 4, bidirectional=True, reverse=True)
    with pytest.raises(ValueError, match="reverse: expected True or False"):
        lstmcore.GRU(3, 4, reverse=1)
    layer = lstmcore.RNN(3, 4, nonlinearity="relu", reverse=True, seed=1)
    assert "reverse=True" in repr(layer) and layer.config()["reverse"] is True
    with pytest.raises(ValueError, match="step: a reverse layer"):
        layer.step(np.zeros((2, 3), np.float32))
    layer.save(tmp_path / "r.npz")
    back = lstmcore.load(tmp_path / "r.npz")
    assert back.reverse
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    np.testing.assert_array_equal(back(x)[0], layer(x)[0])
    # bad lengths are refused by the core, as for the other layers
    with pytest.raises(ValueError, match="seq_lengths"):
        layer(x, seq_lengths=[6, 2])
    # the input is not modified
    x0 = x.copy()
    layer(x, seq_lengths=[5, 3])
    np.testing.assert_array_equal(x, x0)
