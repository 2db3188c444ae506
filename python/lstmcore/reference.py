"""Pure-NumPy reference implementation of lstmcore's forward and backward passes.

This module is the executable documentation of the math in DESIGN.md. It is slow on
purpose: one plain Python loop over time steps, float64 throughout, every derivative
written out by hand with a comment. The compiled core is tested against it, and it is
tested against PyTorch and against central finite differences.

Same signatures as :func:`lstmcore.forward` / :func:`lstmcore.backward`, except that
``forward`` always returns a cache (a plain dict) and ``backward`` does not consume
it (the same cache may be used any number of times).

Shapes (T steps, B batch, I inputs, H hidden, G gates):
    x (T, B, I) or (B, T, I) if batch_first; w_x (I, G*H); w_h (H, G*H); b, b_h (G*H,);
    h0, c0 (B, H); y (T, B, H) or (B, T, H); h_n, c_n (B, H).
Gate blocks of H columns: LSTM i, f, g, o; GRU r, z, n; RNN one block.
"""
from __future__ import annotations

import numpy as np

from ._types import GATES, ForwardResult, Gradients

__all__ = ["forward", "backward", "sigmoid"]


# ----------------------------------------------------------------------------------
# helpers


def sigmoid(a):
    """Logistic function, evaluated without overflow for any float64 input."""
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _f64(v, name, shape):
    """``v`` as a float64 array of ``shape`` (None stays None)."""
    if v is None:
        return None
    a = np.array(v, dtype=np.float64)  # always a private copy
    if a.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {a.shape}")
    return a


def _lengths(seq_lengths, T, B):
    if seq_lengths is None:
        return np.full(B, T, dtype=np.int64)
    lens = np.asarray(seq_lengths)
    if lens.shape != (B,):
        raise ValueError(f"seq_lengths: expected shape ({B},), got {lens.shape}")
    if lens.dtype.kind not in "iu" and not np.all(lens == np.round(lens)):
        raise ValueError("seq_lengths: must be integers")
    lens = lens.astype(np.int64)
    if np.any(lens < 1) or np.any(lens > T):
        raise ValueError(f"seq_lengths: every length must be in 1..{T}, got {lens.tolist()}")
    return lens


# ----------------------------------------------------------------------------------
# one forward step per cell.
#   xw: x_t·w_x + b for this step (B, G*H); h, c: previous state (B, H).
#   Returns (h_t, c_t, saved) where saved holds what the backward step needs.


def _lstm_step(xw, h, c, p):
    H = p["H"]
    a = xw + h @ p["w_h"] + p["b_h"]
    i = sigmoid(a[:, 0 * H:1 * H])
    f = sigmoid(a[:, 1 * H:2 * H])
    g = np.tanh(a[:, 2 * H:3 * H])
    o = sigmoid(a[:, 3 * H:4 * H])
    c_new = f * c + i * g
    tc = np.tanh(c_new)
    h_new = o * tc
    return h_new, c_new, dict(i=i, f=f, g=g, o=o, tc=tc)


def _gru_step(xw, h, c, p):
    H = p["H"]
    w_h, b_h = p["w_h"], p["b_h"]
    ax_r, ax_z, ax_n = xw[:, :H], xw[:, H:2 * H], xw[:, 2 * H:]
    if p["reset_after"]:
        # PyTorch / cuDNN / ONNX linear_before_reset=1: the reset gate scales h·w_h[:, n] + b_h[n].
        ah = h @ w_h + b_h
        r = sigmoid(ax_r + ah[:, :H])
        z = sigmoid(ax_z + ah[:, H:2 * H])
        ah_n = ah[:, 2 * H:]
        n = np.tanh(ax_n + r * ah_n)
        saved = dict(r=r, z=z, n=n, ah_n=ah_n)
    else:
        # Cho et al. / ONNX linear_before_reset=0: the reset gate scales h before the product.
        ah_rz = h @ w_h[:, :2 * H] + b_h[:2 * H]
        r = sigmoid(ax_r + ah_rz[:, :H])
        z = sigmoid(ax_z + ah_rz[:, H:])
        rh = r * h
        n = np.tanh(ax_n + rh @ w_h[:, 2 * H:] + b_h[2 * H:])
        saved = dict(r=r, z=z, n=n, rh=rh)
    h_new = (1.0 - z) * n + z * h
    return h_new, None, saved


def _rnn_step(xw, h, c, p):
    a = xw + h @ p["w_h"] + p["b_h"]
    h_new = np.tanh(a) if p["cell"] == "rnn_tanh" else np.maximum(a, 0.0)
    return h_new, None, dict(a=a)


# ----------------------------------------------------------------------------------
# one backward step per cell.
#   gh = dL/dh_t (from dy_t and from the step after), gc = dL/dc_t (LSTM only);
#   both are zero on rows whose sequence does not cover this step.
#   Accumulates dw_h and db_h into `acc`, returns (dax, dh_prev, dc_prev) where
#   dax = dL/d(x_t·w_x + b), the driver turns it into dx_t, dw_x and db.


def _lstm_back(st, gh, gc, p, acc):
    i, f, g, o, tc = st["i"], st["f"], st["g"], st["o"], st["tc"]
    # h = o ⊙ tanh(c): dL/do = gh ⊙ tanh(c); dL/dc gets gh ⊙ o ⊙ (1 − tanh²(c)).
    do = gh * tc
    dc = gc + gh * o * (1.0 - tc * tc)
    # c = f ⊙ c_prev + i ⊙ g
    di = dc * g
    df = dc * st["c_prev"]
    dg = dc * i
    dc_prev = dc * f
    # through the nonlinearities: σ' = σ(1 − σ), tanh' = 1 − tanh².
    da = np.concatenate(
        [di * i * (1.0 - i), df * f * (1.0 - f), dg * (1.0 - g * g), do * o * (1.0 - o)], axis=1
    )
    # a = xw + h_prev·w_h + b_h: the same da flows to both sides.
    acc["dw_h"] += st["h_prev"].T @ da
    acc["db_h"] += da.sum(axis=0)
    dh_prev = da @ p["w_h"].T
    return da, dh_prev, dc_prev


def _gru_back(st, gh, gc, p, acc):
    H = p["H"]
    w_h = p["w_h"]
    r, z, n, h_prev = st["r"], st["z"], st["n"], st["h_prev"]
    # h = (1 − z) ⊙ n + z ⊙ h_prev
    dn = gh * (1.0 - z)
    dz = gh * (h_prev - n)
    dh_prev = gh * z
    # n = tanh(pre_n): dL/dpre_n = dn ⊙ (1 − n²); pre_n = ax_n + (recurrent term).
    dpn = dn * (1.0 - n * n)
    if p["reset_after"]:
        # recurrent term r ⊙ ah_n with ah_n = h_prev·w_h[:, n] + b_h[n]
        dr = dpn * st["ah_n"]
        dah_n = dpn * r
        dar = dr * r * (1.0 - r)  # σ'
        daz = dz * z * (1.0 - z)  # σ'
        dah = np.concatenate([dar, daz, dah_n], axis=1)  # dL/d(h_prev·w_h + b_h)
        acc["dw_h"] += h_prev.T @ dah
        acc["db_h"] += dah.sum(axis=0)
        dh_prev = dh_prev + dah @ w_h.T
    else:
        # recurrent term (r ⊙ h_prev)·w_h[:, n] + b_h[n]
        w_n = w_h[:, 2 * H:]
        acc["dw_h"][:, 2 * H:] += st["rh"].T @ dpn
        acc["db_h"][2 * H:] += dpn.sum(axis=0)
        drh = dpn @ w_n.T  # dL/d(r ⊙ h_prev)
        dr = drh * h_prev
        dh_prev = dh_prev + drh * r
        dar = dr * r * (1.0 - r)
        daz = dz * z * (1.0 - z)
        dah_rz = np.concatenate([dar, daz], axis=1)  # dL/d(h_prev·w_h[:, r|z] + b_h[r|z])
        acc["dw_h"][:, :2 * H] += h_prev.T @ dah_rz
        acc["db_h"][:2 * H] += dah_rz.sum(axis=0)
        dh_prev = dh_prev + dah_rz @ w_h[:, :2 * H].T
    # the input side sees r, z and n pre-activations directly
    dax = np.concatenate([dar, daz, dpn], axis=1)
    return dax, dh_prev, None


def _rnn_back(st, gh, gc, p, acc):
    a = st["a"]
    if p["cell"] == "rnn_tanh":
        t = np.tanh(a)
        da = gh * (1.0 - t * t)  # tanh' = 1 − tanh²
    else:
        da = gh * (a > 0)  # relu' = 1 for a > 0, else 0 (0 at the kink, as PyTorch)
    acc["dw_h"] += st["h_prev"].T @ da
    acc["db_h"] += da.sum(axis=0)
    return da, da @ p["w_h"].T, None


_STEP = {"lstm": _lstm_step, "gru": _gru_step, "rnn_tanh": _rnn_step, "rnn_relu": _rnn_step}
_BACK = {"lstm": _lstm_back, "gru": _gru_back, "rnn_tanh": _rnn_back, "rnn_relu": _rnn_back}


# ----------------------------------------------------------------------------------
# public API


def forward(x, w_x, w_h, b=None, b_h=None, h0=None, c0=None, *, cell="lstm", reverse=False,
            seq_lengths=None, batch_first=False, reset_after=True):
    """Runs one recurrent layer over all steps, in float64. Returns ForwardResult with a cache."""
    if cell not in GATES:
        raise ValueError(f"cell: unknown cell {cell!r}, expected one of {sorted(GATES)}")
    G = GATES[cell]
    x = np.array(x, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"x: expected 3 dimensions, got shape {x.shape}")
    if batch_first:
        x = x.transpose(1, 0, 2)
    T, B, I = x.shape
    w_x = np.array(w_x, dtype=np.float64)
    if w_x.ndim != 2 or w_x.shape[1] % G or w_x.shape[1] == 0:
        raise ValueError(f"w_x: expected shape ({I}, {G}*H), got {w_x.shape}")
    H = w_x.shape[1] // G
    w_x = _f64(w_x, "w_x", (I, G * H))
    w_h = _f64(w_h, "w_h", (H, G * H))
    if cell != "lstm" and c0 is not None:
        raise ValueError(f"c0: cell {cell!r} has no cell state")
    p = dict(cell=cell, reset_after=bool(reset_after), H=H, w_h=w_h,
             b_h=np.zeros(G * H) if b_h is None else _f64(b_h, "b_h", (G * H,)))
    bb = np.zeros(G * H) if b is None else _f64(b, "b", (G * H,))
    h = np.zeros((B, H)) if h0 is None else _f64(h0, "h0", (B, H))
    c = None
    if cell == "lstm":
        c = np.zeros((B, H)) if c0 is None else _f64(c0, "c0", (B, H))
    lens = _lengths(seq_lengths, T, B)
    # mask[t, b]: step t belongs to sequence b. Rows outside their sequence keep their
    # state and output 0. Running t = T−1 … 0 with the same mask starts each sequence
    # at its own last valid step len_b − 1 (packed-sequence semantics).
    mask = np.arange(T)[:, None] < lens[None, :]

    xw = x @ w_x + bb  # the input projection of all steps at once, (T, B, G*H)
    y = np.zeros((T, B, H))
    steps = []
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        m = mask[t][:, None]
        h_new, c_new, st = _STEP[cell](xw[t], h, c, p)
        st.update(t=t, h_prev=h, c_prev=c)
        steps.append(st)
        y[t] = np.where(m, h_new, 0.0)
        h = np.where(m, h_new, h)
        if c is not None:
            c = np.where(m, c_new, c)

    cache = dict(cell=cell, p=p, x=x, w_x=w_x, mask=mask, steps=steps, batch_first=batch_first,
                 has_b=b is not None, has_b_h=b_h is not None, shape=(T, B, I, H, G))
    y_out = y.transpose(1, 0, 2) if batch_first else y
    return ForwardResult(y_out, h, c, cache)


def backward(cache, dy=None, dh_n=None, dc_n=None):
    """Backpropagation through time for a reference ``forward`` cache. Returns Gradients."""
    if not isinstance(cache, dict) or "steps" not in cache:
        raise TypeError("cache: expected the cache of lstmcore.reference.forward")
    T, B, I, H, G = cache["shape"]
    cell, p, x, w_x, mask = cache["cell"], cache["p"], cache["x"], cache["w_x"], cache["mask"]
    if dy is None:
        dy = np.zeros((T, B, H))
    else:
        dy = _f64(dy, "dy", (B, T, H) if cache["batch_first"] else (T, B, H))
        if cache["batch_first"]:
            dy = dy.transpose(1, 0, 2)
    dh = np.zeros((B, H)) if dh_n is None else _f64(dh_n, "dh_n", (B, H))
    dc = None
    if cell == "lstm":
        dc = np.zeros((B, H)) if dc_n is None else _f64(dc_n, "dc_n", (B, H))
    elif dc_n is not None:
        raise ValueError(f"dc_n: cell {cell!r} has no cell state")

    acc = dict(dw_h=np.zeros((H, G * H)), db_h=np.zeros(G * H))
    dx = np.zeros((T, B, I))
    dw_x = np.zeros((I, G * H))
    db = np.zeros(G * H)
    for st in reversed(cache["steps"]):
        t = st["t"]
        m = mask[t][:, None]
        # total gradient reaching h_t: from y_t and from the step after (or h_n);
        # zero on rows where step t is outside the sequence (y_t is the constant 0 there).
        gh = np.where(m, dh + dy[t], 0.0)
        gc = np.where(m, dc, 0.0) if dc is not None else None
        dax, dh_prev, dc_prev = _BACK[cell](st, gh, gc, p, acc)
        # xw = x_t·w_x + b
        dx[t] = dax @ w_x.T
        dw_x += x[t].T @ dax
        db += dax.sum(axis=0)
        # rows outside their sequence pass the state (and its gradient) through unchanged
        dh = np.where(m, dh_prev, dh)
        if dc is not None:
            dc = np.where(m, dc_prev, dc)

    if cache["batch_first"]:
        dx = dx.transpose(1, 0, 2)
    return Gradients(dx, dh, dc, dw_x, acc["dw_h"],
                     db if cache["has_b"] else None,
                     acc["db_h"] if cache["has_b_h"] else None)
