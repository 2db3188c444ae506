"""Calls with seq_lengths run the input projection and the backward's products (dx, dw_x,
dw_h) over the rows within the lengths only, gathered into the call's own buffers when they
fit (cpu/kernel_common.h project_active_rows, cpu/weight_gradients.h only_active), else over
every row. Both ways must give what each sequence gives alone: this checks them against
one call per sequence (B = 1, its own length), every plain cell, both dtypes, both layouts,
forward and reverse, with sizes chosen to land on each side of the fit test."""
from __future__ import annotations

import numpy as np
import pytest

import lstmcore
from conftest import rel_err

GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}
T, B = 9, 6
LENGTHS = np.array([9, 2, 5, 1, 7, 3])  # 30 of 54 rows active, unsorted


def fits(cell, I, H):
    """The fit test both buffers share: x's active rows fit in the rows the padding frees."""
    active = int(LENGTHS.sum())
    return active * I <= (T * B - active) * GATES[cell] * H


# (I, H) per cell: one pair where the active rows are gathered, one where they are not
SIZES = {"lstm": [(6, 5), (45, 2)], "gru": [(6, 5), (45, 2)], "rnn_tanh": [(3, 5), (13, 5)],
         "rnn_relu": [(3, 5), (13, 5)]}
CASES = [(cell, ra, I, H) for cell in GATES for ra in ((True, False) if cell == "gru" else (True,))
         for I, H in SIZES[cell]]


def problem(cell, I, H, dtype, batch_first, seed=7):
    rng = np.random.default_rng(seed)
    G = GATES[cell] * H
    shape = (B, T, I) if batch_first else (T, B, I)
    p = dict(x=rng.standard_normal(shape), w_x=rng.standard_normal((I, G)) * 0.4,
             w_h=rng.standard_normal((H, G)) * 0.4, b=rng.standard_normal(G) * 0.1,
             b_h=rng.standard_normal(G) * 0.1, h0=rng.standard_normal((B, H)) * 0.5,
             c0=rng.standard_normal((B, H)) * 0.5 if cell == "lstm" else None)
    g = dict(dy=rng.standard_normal((B, T, H) if batch_first else (T, B, H)),
             dh_n=rng.standard_normal((B, H)), dc_n=rng.standard_normal((B, H)) if cell == "lstm" else None)
    cast = lambda d: {k: None if v is None else v.astype(dtype) for k, v in d.items()}
    return cast(p), cast(g)


def seq(a, b, n, batch_first):
    """Sequence b's first n steps of a (T, B, ·) or (B, T, ·) array, as a batch of one."""
    return np.ascontiguousarray(a[b:b + 1, :n] if batch_first else a[:n, b:b + 1])


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tb", "bt"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("cell,reset_after,I,H", CASES)
def test_lengths_equal_one_call_per_sequence(cell, reset_after, I, H, dtype, batch_first, reverse):
    p, g = problem(cell, I, H, dtype, batch_first)
    kw = dict(cell=cell, reverse=reverse, batch_first=batch_first)
    if cell == "gru":
        kw["reset_after"] = reset_after
    lstm = cell == "lstm"
    res = lstmcore.forward(p["x"], p["w_x"], p["w_h"], p["b"], p["b_h"], p["h0"], p["c0"], seq_lengths=LENGTHS,
                           training=True, **kw)
    inf = lstmcore.forward(p["x"], p["w_x"], p["w_h"], p["b"], p["b_h"], p["h0"], p["c0"], seq_lengths=LENGTHS,
                           **kw)
    grads = lstmcore.backward(res.cache, dy=g["dy"], dh_n=g["dh_n"], dc_n=g["dc_n"])
    tol = 1e-12 if dtype == np.float64 else 2e-5

    y = np.zeros_like(res.y)
    dx = np.zeros_like(grads.dx)
    h_n, dh0 = np.zeros_like(res.h_n), np.zeros_like(grads.dh0)
    c_n = np.zeros_like(res.c_n) if lstm else None
    dc0 = np.zeros_like(grads.dc0) if lstm else None
    dw = {k: np.zeros_like(getattr(grads, k)) for k in ("dw_x", "dw_h", "db", "db_h")}
    for b, n in enumerate(LENGTHS):
        one = lstmcore.forward(seq(p["x"], b, n, batch_first), p["w_x"], p["w_h"], p["b"], p["b_h"],
                               p["h0"][b:b + 1], None if p["c0"] is None else p["c0"][b:b + 1], training=True, **kw)
        og = lstmcore.backward(one.cache, dy=seq(g["dy"], b, n, batch_first), dh_n=g["dh_n"][b:b + 1],
                               dc_n=None if g["dc_n"] is None else g["dc_n"][b:b + 1])
        if batch_first:
            y[b, :n], dx[b, :n] = one.y[0], og.dx[0]
        else:
            y[:n, b], dx[:n, b] = one.y[:, 0], og.dx[:, 0]
        h_n[b], dh0[b] = one.h_n[0], og.dh0[0]
        if lstm:
            c_n[b], dc0[b] = one.c_n[0], og.dc0[0]
        for k in dw:
            dw[k] += getattr(og, k)

    label = f"{cell} I={I} H={H} gathered={fits(cell, I, H)}"
    for name, got, want in [("y", res.y, y), ("h_n", res.h_n, h_n), ("c_n", res.c_n, c_n), ("dx", grads.dx, dx),
                            ("dh0", grads.dh0, dh0), ("dc0", grads.dc0, dc0)] + \
                           [(k, getattr(grads, k), dw[k]) for k in dw]:
        if want is not None:
            assert rel_err(got, want) <= tol, (label, name, rel_err(got, want))
    # inference takes the same path as training (to the last bit), and rows past a length are 0
    assert np.array_equal(inf.y, res.y) and np.array_equal(inf.h_n, res.h_n)
    for b, n in enumerate(LENGTHS):
        pad_y = res.y[b, n:] if batch_first else res.y[n:, b]
        pad_dx = grads.dx[b, n:] if batch_first else grads.dx[n:, b]
        assert not pad_y.any() and not pad_dx.any(), (label, b)


def test_both_sides_of_the_fit_test_are_covered():
    for cell, sizes in SIZES.items():
        assert [fits(cell, I, H) for I, H in sizes] == [True, False], cell
