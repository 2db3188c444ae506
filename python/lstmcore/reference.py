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

The cell variants (activations with alpha/beta, clip, peepholes, input_forget,
forget_gate, w_proj, layer_norm, zoneout) take the keyword arguments of
:func:`lstmcore.forward`, with the same equations (README, "Cell variants"); with w_proj
(H, P) the width of h is P: w_h (P, G*H), h0, h_n, y with P columns.
"""
from __future__ import annotations

import contextlib

import numpy as np

from ._checks import require_no_cell_state
from ._types import (ACTIVATIONS, DEFAULT_ACTIVATIONS, GATES, LAYER_NORM_EPSILON, ForwardResult,
                     Gradients, has_cell_state)

__all__ = ["forward", "backward", "sigmoid", "zoneout_mask"]

#: The dtype the equations are evaluated in: float64, except inside ``in_precision``.
_DTYPE = np.float64


@contextlib.contextmanager
def in_precision(dtype):
    """Evaluates the same equations in ``dtype`` (float32) within the block: what a plain
    evaluation in that precision achieves on a problem, for tests that judge another
    implementation's float32 results against the float64 ones. Not thread-safe."""
    global _DTYPE
    saved, _DTYPE = _DTYPE, np.dtype(dtype).type
    try:
        yield
    finally:
        _DTYPE = saved


def _zeros(shape):
    return np.zeros(shape, _DTYPE)


# ----------------------------------------------------------------------------------
# helpers


def sigmoid(a):
    """Logistic function, evaluated without overflow for any float64 input."""
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _f64(v, name, shape):
    """``v`` as a float64 array (see in_precision) of ``shape`` (None stays None)."""
    if v is None:
        return None
    a = np.array(v, dtype=_DTYPE)  # always a private copy
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
# the cell variants' pieces: activations (ONNX's functions), clip, layer norm, zoneout masks


def _softplus(x):
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


#: name -> (f(x, α, β), f'(x, y, α, β)) with y = f(x)
_ACTIVATION_FUNCS = {
    "sigmoid": (lambda x, a, b: sigmoid(x), lambda x, y, a, b: y * (1.0 - y)),
    "hard_sigmoid": (lambda x, a, b: np.clip(a * x + b, 0.0, 1.0),
                     lambda x, y, a, b: a * ((a * x + b > 0.0) & (a * x + b < 1.0)).astype(x.dtype)),
    "tanh": (lambda x, a, b: np.tanh(x), lambda x, y, a, b: 1.0 - y * y),
    # relu' = 1 for x > 0, else 0 (0 at the kink, as PyTorch)
    "relu": (lambda x, a, b: np.maximum(x, 0.0), lambda x, y, a, b: (x > 0.0).astype(x.dtype)),
    "softsign": (lambda x, a, b: x / (1.0 + np.abs(x)), lambda x, y, a, b: 1.0 / (1.0 + np.abs(x)) ** 2),
    "scaled_tanh": (lambda x, a, b: a * np.tanh(b * x), lambda x, y, a, b: a * b * (1.0 - np.tanh(b * x) ** 2)),
    "affine": (lambda x, a, b: a * x + b, lambda x, y, a, b: a + 0.0 * x),
    "leaky_relu": (lambda x, a, b: np.where(x < 0.0, a * x, x), lambda x, y, a, b: np.where(x < 0.0, a, 1.0).astype(x.dtype)),
    "elu": (lambda x, a, b: np.where(x < 0.0, a * np.expm1(np.minimum(x, 0.0)), x),
            lambda x, y, a, b: np.where(x < 0.0, a * np.exp(np.minimum(x, 0.0)), 1.0)),
    "softplus": (lambda x, a, b: _softplus(x), lambda x, y, a, b: sigmoid(x)),
    "thresholded_relu": (lambda x, a, b: np.where(x > a, x, 0.0), lambda x, y, a, b: (x > a).astype(x.dtype)),
}


def _act(p, k, v, clip=True):
    """Activation k (0: f, 1: g, 2: h) of clip(v)."""
    name, a, b = p["acts"][k]
    if clip and p["clip"] is not None:
        v = np.clip(v, -p["clip"], p["clip"])
    return _ACTIVATION_FUNCS[name][0](v, a, b)


def _act_grad(p, k, v, y, dy, clip=True):
    """dL/dv for y = activation k of clip(v): zero where v was clipped."""
    name, a, b = p["acts"][k]
    inside = 1.0
    if clip and p["clip"] is not None:
        inside = np.abs(v) <= p["clip"]
        v = np.clip(v, -p["clip"], p["clip"])
    return dy * _ACTIVATION_FUNCS[name][1](v, y, a, b) * inside


def _layer_norm(v, used):
    """(v − mean) / sqrt(var + ε) per row over the columns `used` (0 elsewhere), and 1/σ."""
    vu = v[:, used]
    mean = vu.mean(axis=1, keepdims=True)
    rstd = 1.0 / np.sqrt(((vu - mean) ** 2).mean(axis=1, keepdims=True) + LAYER_NORM_EPSILON)
    n = np.zeros_like(v)
    n[:, used] = (vu - mean) * rstd
    return n, rstd


def _layer_norm_back(dout, gain, n, rstd, used):
    """dL/dv of out = gain ⊙ n + bias, n = _layer_norm(v): the mean and the variance depend on v too."""
    dn = (dout * gain)[:, used]
    nu = n[:, used]
    dv = np.zeros_like(dout)
    dv[:, used] = rstd * (dn - dn.mean(axis=1, keepdims=True) - nu * (dn * nu).mean(axis=1, keepdims=True))
    return dv


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix64(z):
    """splitmix64's output function on uint64 arrays (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def zoneout_mask(seed, stream, z, T, B, W):
    """The core's zoneout mask (T, B, W) of stream 1 (h) or 2 (c): 1 (keep the previous
    value) where u < z, u = top 53 bits of mix64(key + golden·(n + 1)) / 2^53 for the
    time-major element index n, key = mix64(seed + golden·stream)."""
    key = _mix64(np.array([seed], dtype=np.uint64) + np.array([stream], dtype=np.uint64) * _GOLDEN)
    n = np.arange(T * B * W, dtype=np.uint64).reshape(T, B, W)
    u = (_mix64(key + _GOLDEN * (n + np.uint64(1))) >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
    return (u < z).astype(_DTYPE)


# ----------------------------------------------------------------------------------
# one forward step per cell.
#   xw: x_t·w_x + b for this step (B, G*H) (with layer norm: x_t·w_x alone);
#   h, c: previous state; t: the step (for the zoneout masks).
#   Returns (h_t, c_t, saved) where saved holds what the backward step needs.


def _lstm_step(xw, h, c, p, t):
    H = p["H"]
    ah = h @ p["w_h"]
    st = {}
    if p["ln"] is not None:
        gx, bx, gh, bh, _, _ = p["ln"]
        nx, rx = _layer_norm(xw, p["used"])
        nh, rh = _layer_norm(ah, p["used"])
        a = gx * nx + bx + gh * nh + bh + p["b"] + p["b_h"]
        st.update(nx=nx, rx=rx, nh=nh, rh=rh)
    else:
        a = xw + ah + p["b_h"]
    if p["peep"] is not None:  # i and f see c_{t−1}
        a[:, 0 * H:1 * H] += p["peep"][0] * c
        a[:, 1 * H:2 * H] += p["peep"][1] * c
    i = _act(p, 0, a[:, 0 * H:1 * H])
    g = _act(p, 1, a[:, 2 * H:3 * H])
    if not p["forget_gate"]:
        f = np.ones_like(i)
    elif p["input_forget"]:
        f = 1.0 - i
    else:
        f = _act(p, 0, a[:, 1 * H:2 * H])
    c_new = f * c + i * g
    if p["peep"] is not None:  # o sees c_t
        a[:, 3 * H:4 * H] += p["peep"][2] * c_new
    o = _act(p, 0, a[:, 3 * H:4 * H])
    c_hat = c_new
    if p["ln"] is not None:
        nc, rc = _layer_norm(c_new, np.arange(H))
        c_hat = p["ln"][4] * nc + p["ln"][5]
        st.update(nc=nc, rc=rc)
    tc = _act(p, 2, c_hat, clip=False)
    m = o * tc
    h_tilde = m @ p["w_proj"] if p["w_proj"] is not None else m
    # zoneout: keep the previous value with the mask (training) or its expectation
    kh, kc = p["zone_h"][t], p["zone_c"][t]
    h_new = kh * h + (1.0 - kh) * h_tilde
    c_state = kc * c + (1.0 - kc) * c_new
    st.update(a=a, i=i, f=f, g=g, o=o, c_new=c_new, c_hat=c_hat, tc=tc, m=m, kh=kh, kc=kc)
    return h_new, c_state, st


def _gru_step(xw, h, c, p, t):
    H = p["H"]
    w_h, b_h = p["w_h"], p["b_h"]
    ax_r, ax_z, ax_n = xw[:, :H], xw[:, H:2 * H], xw[:, 2 * H:]
    if p["reset_after"]:
        # PyTorch / cuDNN / ONNX linear_before_reset=1: the reset gate scales h·w_h[:, n] + b_h[n].
        ah = h @ w_h + b_h
        a_r, a_z = ax_r + ah[:, :H], ax_z + ah[:, H:2 * H]
        r, z = _act(p, 0, a_r), _act(p, 0, a_z)
        ah_n = ah[:, 2 * H:]
        a_n = ax_n + r * ah_n
        saved = dict(ah_n=ah_n)
    else:
        # Cho et al. / ONNX linear_before_reset=0: the reset gate scales h before the product.
        ah_rz = h @ w_h[:, :2 * H] + b_h[:2 * H]
        a_r, a_z = ax_r + ah_rz[:, :H], ax_z + ah_rz[:, H:]
        r, z = _act(p, 0, a_r), _act(p, 0, a_z)
        rh = r * h
        a_n = ax_n + rh @ w_h[:, 2 * H:] + b_h[2 * H:]
        saved = dict(rh=rh)
    n = _act(p, 1, a_n)
    h_new = (1.0 - z) * n + z * h
    saved.update(r=r, z=z, n=n, a_r=a_r, a_z=a_z, a_n=a_n)
    return h_new, None, saved


def _rnn_step(xw, h, c, p, t):
    a = xw + h @ p["w_h"] + p["b_h"]
    h_new = _act(p, 0, a)
    return h_new, None, dict(a=a, h_new=h_new)


# ----------------------------------------------------------------------------------
# one backward step per cell.
#   gh = dL/dh_t (from dy_t and from the step after), gc = dL/dc_t (LSTM only);
#   both are zero on rows whose sequence does not cover this step.
#   Accumulates dw_h and db_h (and the variants' own gradients) into `acc`, returns
#   (dax, dh_prev, dc_prev) where dax = dL/d(xw): the driver turns it into dx_t, dw_x
#   and (without layer norm) db.


def _lstm_back(st, gh, gc, p, acc):
    H = p["H"]
    i, f, g, o, tc, a = st["i"], st["f"], st["g"], st["o"], st["tc"], st["a"]
    c_prev, c_new, kh, kc = st["c_prev"], st["c_new"], st["kh"], st["kc"]
    # zoneout: h_t = k_h ⊙ h_{t−1} + (1 − k_h) ⊙ h̃, c_t likewise with c̃
    dh_tilde = (1.0 - kh) * gh
    dc = (1.0 - kc) * gc
    # h̃ = m·w_proj (or m)
    if p["w_proj"] is not None:
        acc["dw_proj"] += st["m"].T @ dh_tilde
        dm = dh_tilde @ p["w_proj"].T
    else:
        dm = dh_tilde
    # m = o ⊙ σ_h(ĉ), ĉ = c̃ or LN(c̃)
    do = dm * tc
    dc_hat = _act_grad(p, 2, st["c_hat"], tc, dm * o, clip=False)
    if p["ln"] is not None:
        acc["dln"][4] += (dc_hat * st["nc"]).sum(axis=0)
        acc["dln"][5] += dc_hat.sum(axis=0)
        dc = dc + _layer_norm_back(dc_hat, p["ln"][4], st["nc"], st["rc"], np.arange(H))
    else:
        dc = dc + dc_hat
    da_o = _act_grad(p, 0, a[:, 3 * H:], o, do)
    if p["peep"] is not None:  # a_o = … + p_o ⊙ c̃
        dc = dc + da_o * p["peep"][2]
        acc["dpeep"][2] += (da_o * c_new).sum(axis=0)
    # c̃ = f ⊙ c_prev + i ⊙ g
    di = dc * g
    dg = dc * i
    da_f = np.zeros_like(di)
    if not p["forget_gate"]:
        dc_prev = dc
    else:
        df = dc * c_prev
        dc_prev = dc * f
        if p["input_forget"]:
            di = di - df  # f = 1 − i
        else:
            da_f = _act_grad(p, 0, a[:, H:2 * H], f, df)
    da_i = _act_grad(p, 0, a[:, :H], i, di)
    da_g = _act_grad(p, 1, a[:, 2 * H:3 * H], g, dg)
    if p["peep"] is not None:  # a_i, a_f = … + p ⊙ c_prev
        dc_prev = dc_prev + da_i * p["peep"][0] + da_f * p["peep"][1]
        acc["dpeep"][0] += (da_i * c_prev).sum(axis=0)
        acc["dpeep"][1] += (da_f * c_prev).sum(axis=0)
    dc_prev = dc_prev + kc * gc
    da = np.concatenate([da_i, da_f, da_g, da_o], axis=1)
    if p["ln"] is not None:
        # a = LN(ax)·γ_x + β_x + LN(ah)·γ_h + β_h + b + b_h
        gx, _, ghn, _, _, _ = p["ln"]
        acc["dln"][0] += (da * st["nx"]).sum(axis=0)
        acc["dln"][1] += da.sum(axis=0)
        acc["dln"][2] += (da * st["nh"]).sum(axis=0)
        acc["dln"][3] += da.sum(axis=0)
        acc["db"] += da.sum(axis=0)
        dax = _layer_norm_back(da, gx, st["nx"], st["rx"], p["used"])
        dah = _layer_norm_back(da, ghn, st["nh"], st["rh"], p["used"])
    else:
        dax = dah = da
    acc["dw_h"] += st["h_prev"].T @ dah
    acc["db_h"] += da.sum(axis=0)
    dh_prev = dah @ p["w_h"].T + kh * gh
    return dax, dh_prev, dc_prev


def _gru_back(st, gh, gc, p, acc):
    H = p["H"]
    w_h = p["w_h"]
    r, z, n, h_prev = st["r"], st["z"], st["n"], st["h_prev"]
    # h = (1 − z) ⊙ n + z ⊙ h_prev
    dn = gh * (1.0 - z)
    dz = gh * (h_prev - n)
    dh_prev = gh * z
    # n = act_g(a_n): dL/da_n; a_n = ax_n + (recurrent term).
    dpn = _act_grad(p, 1, st["a_n"], n, dn)
    daz = _act_grad(p, 0, st["a_z"], z, dz)
    if p["reset_after"]:
        # recurrent term r ⊙ ah_n with ah_n = h_prev·w_h[:, n] + b_h[n]
        dr = dpn * st["ah_n"]
        dah_n = dpn * r
        dar = _act_grad(p, 0, st["a_r"], r, dr)
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
        dar = _act_grad(p, 0, st["a_r"], r, dr)
        dah_rz = np.concatenate([dar, daz], axis=1)  # dL/d(h_prev·w_h[:, r|z] + b_h[r|z])
        acc["dw_h"][:, :2 * H] += h_prev.T @ dah_rz
        acc["db_h"][:2 * H] += dah_rz.sum(axis=0)
        dh_prev = dh_prev + dah_rz @ w_h[:, :2 * H].T
    # the input side sees r, z and n pre-activations directly
    dax = np.concatenate([dar, daz, dpn], axis=1)
    return dax, dh_prev, None


def _rnn_back(st, gh, gc, p, acc):
    da = _act_grad(p, 0, st["a"], st["h_new"], gh)  # tanh' = 1 − tanh², relu' = [a > 0], …
    acc["dw_h"] += st["h_prev"].T @ da
    acc["db_h"] += da.sum(axis=0)
    return da, da @ p["w_h"].T, None


_STEP = {"lstm": _lstm_step, "gru": _gru_step, "rnn_tanh": _rnn_step, "rnn_relu": _rnn_step}
_BACK = {"lstm": _lstm_back, "gru": _gru_back, "rnn_tanh": _rnn_back, "rnn_relu": _rnn_back}


# ----------------------------------------------------------------------------------
# public API


def _variant_params(cell, H, opts):
    """The variant options in the form the steps use; checks the LSTM-only ones."""
    acts = opts.pop("activations", None)
    alpha = opts.pop("activation_alpha", None)
    beta = opts.pop("activation_beta", None)
    names = DEFAULT_ACTIVATIONS[cell] if acts is None else tuple(acts)
    if len(names) != len(DEFAULT_ACTIVATIONS[cell]):
        raise ValueError(f"activations: the {cell} cell takes {len(DEFAULT_ACTIVATIONS[cell])} names")
    specs = []
    for k, name in enumerate(names):
        if name not in ACTIVATIONS:
            raise ValueError(f"activations: unknown activation {name!r}")
        a, b = ACTIVATIONS[name]
        if alpha is not None and alpha[k] is not None:
            a = float(alpha[k])
        if beta is not None and beta[k] is not None:
            b = float(beta[k])
        specs.append((name, a, b))
    q = dict(acts=specs, clip=opts.pop("clip", None))
    lstm_opts = dict(peepholes=None, input_forget=False, forget_gate=True, w_proj=None, layer_norm=None,
                     zoneout=None)
    for k, default in lstm_opts.items():
        v = opts.pop(k, default)
        used = bool(v) != bool(default) if isinstance(default, bool) else v is not None
        if cell != "lstm" and used:
            raise ValueError(f"{k}: the {cell} cell has no such option (it is an LSTM option)")
        q[k] = v
    if opts:
        raise TypeError(f"unexpected arguments {sorted(opts)}")
    return q


def forward(x, w_x, w_h, b=None, b_h=None, h0=None, c0=None, *, cell="lstm", reverse=False,
            seq_lengths=None, batch_first=False, reset_after=True, training=False, seed=None, **variant):
    """Runs one recurrent layer over all steps, in float64. Returns ForwardResult with a cache.

    ``variant`` takes the cell-variant options of :func:`lstmcore.forward` (peepholes,
    input_forget, forget_gate, clip, activations, activation_alpha, activation_beta, w_proj,
    layer_norm, zoneout) with the same meaning; ``training`` only matters for zoneout (masks
    from ``seed`` as the core draws them, else the expectation).
    """
    if cell not in GATES:
        raise ValueError(f"cell: unknown cell {cell!r}, expected one of {sorted(GATES)}")
    G = GATES[cell]
    x = np.array(x, dtype=_DTYPE)
    if x.ndim != 3:
        raise ValueError(f"x: expected 3 dimensions, got shape {x.shape}")
    if batch_first:
        x = x.transpose(1, 0, 2)
    T, B, I = x.shape
    w_x = np.array(w_x, dtype=_DTYPE)
    if w_x.ndim != 2 or w_x.shape[1] % G or w_x.shape[1] == 0:
        raise ValueError(f"w_x: expected shape ({I}, {G}*H), got {w_x.shape}")
    H = w_x.shape[1] // G
    q = _variant_params(cell, H, dict(variant))
    w_proj = None if q["w_proj"] is None else np.array(q["w_proj"], dtype=_DTYPE)
    if w_proj is not None and (w_proj.ndim != 2 or w_proj.shape[0] != H):
        raise ValueError(f"w_proj: expected shape ({H}, P), got {w_proj.shape}")
    R = H if w_proj is None else w_proj.shape[1]  # the width of h
    w_x = _f64(w_x, "w_x", (I, G * H))
    w_h = _f64(w_h, "w_h", (R, G * H))
    require_no_cell_state(cell, "c0", c0)
    bb = _zeros(G * H) if b is None else _f64(b, "b", (G * H,))
    p = dict(cell=cell, reset_after=bool(reset_after), H=H, w_h=w_h, b=bb,
             b_h=_zeros(G * H) if b_h is None else _f64(b_h, "b_h", (G * H,)),
             acts=q["acts"], clip=q["clip"], input_forget=bool(q["input_forget"]),
             forget_gate=bool(q["forget_gate"]), w_proj=w_proj,
             peep=None if q["peepholes"] is None else _f64(q["peepholes"], "peepholes", (3, H)),
             ln=None if q["layer_norm"] is None else tuple(
                 _f64(v, f"layer_norm[{k}]", (G * H,) if k < 4 else (H,)) for k, v in enumerate(q["layer_norm"])))
    # layer norm's columns: all but an unused f block
    p["used"] = np.array([j for j in range(G * H) if cell != "lstm" or p["forget_gate"] and not p["input_forget"]
                          or not H <= j < 2 * H])
    h = _zeros((B, R)) if h0 is None else _f64(h0, "h0", (B, R))
    c = None
    if has_cell_state(cell):
        c = _zeros((B, H)) if c0 is None else _f64(c0, "c0", (B, H))
    lens = _lengths(seq_lengths, T, B)
    z = q["zoneout"]
    z = (0.0, 0.0) if z is None else ((z, z) if np.isscalar(z) else tuple(z))
    if training and z != (0.0, 0.0):
        p["zone_h"] = zoneout_mask(seed, 1, z[0], T, B, R)
        p["zone_c"] = zoneout_mask(seed, 2, z[1], T, B, H)
    else:
        p["zone_h"] = np.full(T, z[0], _DTYPE)
        p["zone_c"] = np.full(T, z[1], _DTYPE)
    # mask[t, b]: step t belongs to sequence b. Rows outside their sequence keep their
    # state and output 0. Running t = T−1 … 0 with the same mask starts each sequence
    # at its own last valid step len_b − 1 (packed-sequence semantics).
    mask = np.arange(T)[:, None] < lens[None, :]

    # the input projection of all steps at once, (T, B, G*H); with layer norm the bias
    # comes after the normalisation
    xw = x @ w_x + (0.0 if p["ln"] is not None else bb)
    y = _zeros((T, B, R))
    steps = []
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        m = mask[t][:, None]
        h_new, c_new, st = _STEP[cell](xw[t], h, c, p, t)
        st.update(t=t, h_prev=h, c_prev=c)
        steps.append(st)
        y[t] = np.where(m, h_new, 0.0)
        h = np.where(m, h_new, h)
        if c is not None:
            c = np.where(m, c_new, c)

    cache = dict(cell=cell, p=p, x=x, w_x=w_x, mask=mask, steps=steps, batch_first=batch_first,
                 has_b=b is not None, has_b_h=b_h is not None, shape=(T, B, I, H, G, R))
    y_out = y.transpose(1, 0, 2) if batch_first else y
    return ForwardResult(y_out, h, c, cache)


def backward(cache, dy=None, dh_n=None, dc_n=None):
    """Backpropagation through time for a reference ``forward`` cache. Returns Gradients
    (with ``dpeepholes``, ``dw_proj``, ``dlayer_norm`` set when forward had them)."""
    if not isinstance(cache, dict) or "steps" not in cache:
        raise TypeError("cache: expected the cache of lstmcore.reference.forward")
    T, B, I, H, G, R = cache["shape"]
    cell, p, x, w_x, mask = cache["cell"], cache["p"], cache["x"], cache["w_x"], cache["mask"]
    if dy is None:
        dy = _zeros((T, B, R))
    else:
        dy = _f64(dy, "dy", (B, T, R) if cache["batch_first"] else (T, B, R))
        if cache["batch_first"]:
            dy = dy.transpose(1, 0, 2)
    dh = _zeros((B, R)) if dh_n is None else _f64(dh_n, "dh_n", (B, R))
    require_no_cell_state(cell, "dc_n", dc_n)
    dc = None
    if has_cell_state(cell):
        dc = _zeros((B, H)) if dc_n is None else _f64(dc_n, "dc_n", (B, H))

    acc = dict(dw_h=_zeros((R, G * H)), db_h=_zeros(G * H), db=_zeros(G * H),
               dpeep=_zeros((3, H)), dw_proj=None if p["w_proj"] is None else np.zeros_like(p["w_proj"]),
               dln=None if p["ln"] is None else [np.zeros_like(v) for v in p["ln"]])
    dx = _zeros((T, B, I))
    dw_x = _zeros((I, G * H))
    for st in reversed(cache["steps"]):
        t = st["t"]
        m = mask[t][:, None]
        # total gradient reaching h_t: from y_t and from the step after (or h_n);
        # zero on rows where step t is outside the sequence (y_t is the constant 0 there).
        gh = np.where(m, dh + dy[t], 0.0)
        gc = np.where(m, dc, 0.0) if dc is not None else None
        dax, dh_prev, dc_prev = _BACK[cell](st, gh, gc, p, acc)
        # xw = x_t·w_x (+ b without layer norm)
        dx[t] = dax @ w_x.T
        dw_x += x[t].T @ dax
        if p["ln"] is None:
            acc["db"] += dax.sum(axis=0)
        # rows outside their sequence pass the state (and its gradient) through unchanged
        dh = np.where(m, dh_prev, dh)
        if dc is not None:
            dc = np.where(m, dc_prev, dc)

    if cache["batch_first"]:
        dx = dx.transpose(1, 0, 2)
    return Gradients.with_extras(
        (dx, dh, dc, dw_x, acc["dw_h"], acc["db"] if cache["has_b"] else None,
         acc["db_h"] if cache["has_b_h"] else None),
        dpeepholes=acc["dpeep"] if p["peep"] is not None else None, dw_proj=acc["dw_proj"],
        dlayer_norm=None if acc["dln"] is None else tuple(acc["dln"]))
