"""The fused recurrence in float32 and float64 (cpu/plan.h fuse_inputs): from 32 rows, an LSTM
or RNN whose threads' shares of w_x and w_h fit their cores' L2 sums x_t·w_x into each step's
product instead of projecting all of x first. Both sides of the rule are run here — B = 33
fused, B = 9 not (small sizes fit any L2) — against the float64 NumPy reference, forward and
backward, with every walk (lengths, reverse, batch_first); inference must give training's
bits, and the decision itself is checked against the machine's L2 as the core reads it."""
from __future__ import annotations

import numpy as np
import pytest

import lstmcore
import lstmcore.reference as ref
from lstmcore import _core
from conftest import rel_err

GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}
T, I, H = 7, 5, 11
WALKS = {"plain": {}, "lengths-reverse": {"lengths": True, "reverse": True},
         "batch_first": {"batch_first": True}, "lengths-batch_first": {"lengths": True, "batch_first": True}}


def problem(cell, B, dtype, batch_first, seed):
    rng = np.random.default_rng(seed)
    G = GATES[cell] * H
    p = dict(x=rng.standard_normal((B, T, I) if batch_first else (T, B, I)), w_x=rng.standard_normal((I, G)) * 0.4,
             w_h=rng.standard_normal((H, G)) * 0.4, b=rng.standard_normal(G) * 0.1, b_h=rng.standard_normal(G) * 0.1,
             h0=rng.standard_normal((B, H)) * 0.5, c0=rng.standard_normal((B, H)) * 0.5 if cell == "lstm" else None)
    g = dict(dy=rng.standard_normal((B, T, H) if batch_first else (T, B, H)), dh_n=rng.standard_normal((B, H)),
             dc_n=rng.standard_normal((B, H)) if cell == "lstm" else None)
    cast = lambda d: {k: None if v is None else v.astype(dtype) for k, v in d.items()}
    return cast(p), cast(g)


@pytest.mark.parametrize("walk", list(WALKS))
@pytest.mark.parametrize("B", [33, 9], ids=["B33-fused", "B9"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("cell", ["lstm", "rnn_tanh", "rnn_relu"])
def test_fused_steps_equal_the_reference(cell, dtype, B, walk):
    f64 = dtype == np.float64
    assert _core._forward_fused(cell, B, I, H, f64) == (B >= 32)
    w = WALKS[walk]
    p, g = problem(cell, B, dtype, w.get("batch_first", False), seed=B + 3)
    lengths = np.random.default_rng(B).integers(1, T + 1, B) if w.get("lengths") else None
    if lengths is not None:
        lengths[1] = T  # a full-length sequence among shorter ones
    kw = dict(cell=cell, reverse=w.get("reverse", False), batch_first=w.get("batch_first", False),
              seq_lengths=lengths)
    args = (p["x"], p["w_x"], p["w_h"], p["b"], p["b_h"], p["h0"], p["c0"])
    res = lstmcore.forward(*args, training=True, **kw)
    inf = lstmcore.forward(*args, **kw)
    grads = lstmcore.backward(res.cache, dy=g["dy"], dh_n=g["dh_n"], dc_n=g["dc_n"])
    want = ref.forward(*args, **kw)
    wg = ref.backward(want.cache, dy=g["dy"], dh_n=g["dh_n"], dc_n=g["dc_n"])
    tol = 1e-12 if f64 else 2e-6
    outs = ["y", "h_n"] + (["c_n"] if cell == "lstm" else [])
    for k in outs:
        assert rel_err(getattr(res, k), getattr(want, k)) < tol, k
        assert np.array_equal(getattr(inf, k), getattr(res, k)), k  # inference = training, bit for bit
    for k in ("dx", "dw_x", "dw_h", "db", "db_h", "dh0") + (("dc0",) if cell == "lstm" else ()):
        assert rel_err(getattr(grads, k), getattr(wg, k)) < tol * 5, k
    if lengths is not None:  # past each length: y zero
        for b, n in enumerate(lengths):
            y_b = res.y[b, n:] if kw["batch_first"] else res.y[n:, b]
            assert not y_b.any()


def test_fusion_follows_the_l2():
    """Fused exactly when the threads' shares of w_x and w_h (I + H rows of G·H) fit their L2,
    from 32 rows; the GRU never; bfloat16 products from 8 rows whatever the size."""
    l2 = _core._l2_bytes()
    assert 64 * 1024 <= l2 <= 64 * 1024 * 1024
    saved = lstmcore.get_num_threads()
    try:
        for threads in (1, 2):
            lstmcore.set_num_threads(threads)
            for cell in ("lstm", "rnn_tanh"):
                G = GATES[cell]
                for size in (4, 32, 64, 128, 181, 256, 362, 512, 1024):
                    for f64 in (False, True):
                        fits = (2 * size) * G * size * (8 if f64 else 4) <= l2 * threads
                        assert _core._forward_fused(cell, 32, size, size, f64) == fits, (cell, size, f64, threads)
                        assert not _core._forward_fused(cell, 31, size, size, f64)
                    assert _core._forward_fused(cell, 8, size, size, False, bf16=True)
                    assert not _core._forward_fused(cell, 7, size, size, False, bf16=True)
            assert not _core._forward_fused("gru", 64, 8, 8, False)
    finally:
        lstmcore.set_num_threads(saved)
