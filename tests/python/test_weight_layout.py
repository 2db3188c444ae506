"""forward(..., weight_layout="gate_major"): the weights as their transposes, w_x (G·H, I), w_h
(G·H, R), w_proj (P, H) (PyTorch's weight_ih / weight_hh / weight_hr), read in place; backward
returns dw_x, dw_h, dw_proj in the same layout.

The input-major path is checked against finite differences, the NumPy reference and PyTorch
elsewhere, so here gate_major must equal it on the transposed weights: forward bit for bit (the
recurrent panels are the same and the input GEMM reads the stored operand with a transpose flag),
the weight gradients up to rounding (their GEMMs sum in another order). Plus PyTorch's own
parameters passed directly, no copies, and the errors.
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import GATES, TOL64, VARIANT_IDS, VARIANTS, rel_err

import lstmcore

T, B, I, H, P = 5, 3, 7, 5, 3


#: gate_major vs input_major weight gradients: the same products summed in another order, so a
#: few units of roundoff (observed ≤ 2.3e-16 in float64, ≤ 1.3e-7 in float32).
ROUNDING = {np.float64: 1e-13, np.float32: 1e-6}


def _arrays(cell, dtype, seed, R=H):
    rng = np.random.default_rng(seed)
    G = GATES[cell] * H

    def u(*shape, s=0.5):
        return rng.uniform(-s, s, shape).astype(dtype)

    return dict(x=u(T, B, I, s=1.0), w_x=u(I, G), w_h=u(R, G), b=u(G, s=0.3), b_h=u(G, s=0.3), h0=u(B, R),
                c0=u(B, H) if cell == "lstm" else None), dict(dy=u(T, B, R, s=1.0), dh_n=u(B, R, s=1.0),
                                                              dc_n=u(B, H, s=1.0) if cell == "lstm" else None)


def _gm(a):
    return None if a is None else np.ascontiguousarray(a.T)


def _run(a, g, layout, **kw):
    """forward (training) then backward; the weights given in ``layout`` (a holds input-major ones)."""
    w = {k: a[k] for k in ("w_x", "w_h")}
    extra = dict(kw)
    if layout == "gate_major":
        w = {k: _gm(v) for k, v in w.items()}
        if extra.get("w_proj") is not None:
            extra["w_proj"] = _gm(extra["w_proj"])
    res = lstmcore.forward(a["x"], w["w_x"], w["w_h"], a["b"], a["b_h"], a["h0"], a["c0"], training=True,
                           weight_layout=layout, **extra)
    grads = lstmcore.backward(res.cache, g["dy"] if not kw.get("batch_first") else g["dy"].transpose(1, 0, 2).copy(),
                              g["dh_n"], g["dc_n"])
    return res, grads


def _compare(a, g, dtype, **kw):
    r_im, g_im = _run(a, g, "input_major", **kw)
    r_gm, g_gm = _run(a, g, "gate_major", **kw)
    for name in ("y", "h_n", "c_n"):
        want, got = getattr(r_im, name), getattr(r_gm, name)
        assert (want is None) == (got is None)
        if want is not None:
            np.testing.assert_array_equal(got, want, err_msg=name)  # bit for bit
    assert g_gm.dw_x.shape == g_im.dw_x.shape[::-1] and g_gm.dw_h.shape == g_im.dw_h.shape[::-1]
    for name in ("dw_x", "dw_h", "dw_proj"):
        got = getattr(g_gm, name)
        assert got is None or (got.dtype == dtype and got.flags.c_contiguous), name
    pairs = [("dx", g_gm.dx, g_im.dx), ("dh0", g_gm.dh0, g_im.dh0), ("dc0", g_gm.dc0, g_im.dc0),
             ("dw_x", g_gm.dw_x.T, g_im.dw_x), ("dw_h", g_gm.dw_h.T, g_im.dw_h), ("db", g_gm.db, g_im.db),
             ("db_h", g_gm.db_h, g_im.db_h), ("dpeepholes", g_gm.dpeepholes, g_im.dpeepholes)]
    if g_im.dw_proj is not None:
        assert g_gm.dw_proj.shape == g_im.dw_proj.shape[::-1]
        pairs.append(("dw_proj", g_gm.dw_proj.T, g_im.dw_proj))
    if g_im.dlayer_norm is not None:
        pairs += [(f"dlayer_norm[{k}]", u, v) for k, (u, v) in enumerate(zip(g_gm.dlayer_norm, g_im.dlayer_norm))]
    for name, got, want in pairs:
        assert (want is None) == (got is None), name
        if want is not None:
            assert rel_err(got, want) <= ROUNDING[dtype], (name, rel_err(got, want))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("variant", VARIANT_IDS)
@pytest.mark.parametrize("opts", [{}, dict(reverse=True, seq_lengths=np.array([5, 2, 4])),
                                  dict(batch_first=True, seq_lengths=np.array([3, 5, 1]))],
                         ids=["plain", "reverse-lengths", "batch_first-lengths"])
def test_plain_cells(variant, dtype, opts):
    cell, reset_after = VARIANTS[variant]
    a, g = _arrays(cell, dtype, 11)
    if opts.get("batch_first"):
        a["x"] = np.ascontiguousarray(a["x"].transpose(1, 0, 2))
    _compare(a, g, dtype, cell=cell, reset_after=reset_after, **opts)


def _lstm_variant_params(dtype, seed):
    rng = np.random.default_rng(seed)
    ln = tuple(rng.uniform(0.6, 1.4, n).astype(dtype) if k % 2 == 0 else rng.uniform(-0.2, 0.2, n).astype(dtype)
               for k, n in enumerate((4 * H, 4 * H, 4 * H, 4 * H, H, H)))
    return dict(peepholes=rng.uniform(-0.5, 0.5, (3, H)).astype(dtype),
                w_proj=rng.uniform(-0.5, 0.5, (H, P)).astype(dtype), layer_norm=ln)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", ["lstm-all", "lstm-input_forget", "gru_rb-clip", "gru-activations", "rnn-softsign"])
def test_variants(case, dtype):
    if case.startswith("lstm"):
        a, g = _arrays("lstm", dtype, 5, R=P)
        kw = dict(cell="lstm", **_lstm_variant_params(dtype, 6))
        if case == "lstm-all":
            kw.update(zoneout=(0.3, 0.2), seed=9, clip=2.0, seq_lengths=np.array([4, 5, 2]))
        else:
            kw = dict(cell="lstm", w_proj=kw["w_proj"], input_forget=True)
    elif case == "gru_rb-clip":
        a, g = _arrays("gru", dtype, 7)
        kw = dict(cell="gru", reset_after=False, clip=1.5, reverse=True)
    elif case == "gru-activations":
        a, g = _arrays("gru", dtype, 8)
        kw = dict(cell="gru", activations=["hard_sigmoid", "softsign"])
    else:
        a, g = _arrays("rnn_tanh", dtype, 9)
        kw = dict(cell="rnn_tanh", activations=["softsign"])
    _compare(a, g, dtype, **kw)


def test_no_copy_and_the_cache_keeps_the_layout():
    a, _ = _arrays("lstm", np.float64, 3)
    w_x, w_h, w_proj = _gm(a["w_x"]), _gm(a["w_h"]), _gm(np.ones((H, P)))
    res = lstmcore.forward(a["x"], w_x, w_h, cell="lstm", training=True, weight_layout="gate_major")
    assert res.cache.w_x is w_x and res.cache.w_h is w_h and res.cache.weight_layout == "gate_major"
    w_h = np.ascontiguousarray(w_h[:, :P])  # (4H, P) with the projection
    res = lstmcore.forward(a["x"], w_x, w_h, cell="lstm", training=True, weight_layout="gate_major", w_proj=w_proj)
    assert res.cache.variant["params"][1] is w_proj
    g = lstmcore.backward(res.cache, dh_n=np.ones((B, P)))
    assert g.dw_x.shape == (4 * H, I) and g.dw_h.shape == (4 * H, P) and g.dw_proj.shape == (P, H)
    # the default is input_major, and a gate-major view (a transposed input-major array) is copied, not refused
    im = lstmcore.forward(a["x"], a["w_x"], a["w_h"], cell="lstm", training=True)
    assert im.cache.weight_layout == "input_major"
    gm = lstmcore.forward(a["x"], a["w_x"].T, a["w_h"].T, cell="lstm", weight_layout="gate_major")
    np.testing.assert_array_equal(gm.y, im.y)


def test_torch_parameters_directly():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    for m, cell in ((torch.nn.LSTM(I, H, proj_size=P, dtype=torch.float64), "lstm"),
                    (torch.nn.GRU(I, H, dtype=torch.float64), "gru")):
        x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
        y, _ = m(x)
        dy = torch.randn_like(y)
        y.backward(dy)
        p = {n: t.detach().numpy() for n, t in m.named_parameters()}
        res = lstmcore.forward(x.detach().numpy(), p["weight_ih_l0"], p["weight_hh_l0"], p["bias_ih_l0"],
                               p["bias_hh_l0"], cell=cell, training=True, weight_layout="gate_major",
                               w_proj=p.get("weight_hr_l0"))
        assert res.cache.w_x is p["weight_ih_l0"]  # torch's memory, read in place
        assert rel_err(res.y, y.detach().numpy()) <= TOL64
        g = lstmcore.backward(res.cache, dy.numpy())
        assert rel_err(g.dx, x.grad.numpy()) <= TOL64
        got = {"weight_ih_l0": g.dw_x, "weight_hh_l0": g.dw_h, "bias_ih_l0": g.db, "bias_hh_l0": g.db_h,
               "weight_hr_l0": g.dw_proj}
        for name, t in m.named_parameters():
            assert rel_err(got[name], t.grad.numpy()) <= TOL64, name


def test_errors():
    a, _ = _arrays("lstm", np.float64, 4)
    x, w_x, w_h = a["x"], a["w_x"], a["w_h"]
    with pytest.raises(ValueError, match=r"weight_layout: expected 'input_major' or 'gate_major', got 'torch'"):
        lstmcore.forward(x, w_x, w_h, weight_layout="torch")
    with pytest.raises(TypeError, match=r"weight_layout: expected 'input_major' or 'gate_major', got int"):
        lstmcore.forward(x, w_x, w_h, weight_layout=1)
    # input-major arrays under gate_major: H is read from w_h's second axis, then w_x is named
    with pytest.raises(ValueError, match=r"w_x: expected shape \(4H, I\) = \(20, 7\) for weight_layout='gate_major',"
                                         r" got \(7, 20\)"):
        lstmcore.forward(x, w_x, _gm(w_h), weight_layout="gate_major")
    with pytest.raises(ValueError, match=r"w_h: expected shape \(4H, H\) = \(20, 5\) for "
                                         r"weight_layout='gate_major', got \(21, 5\)"):
        lstmcore.forward(x, np.zeros((20, I)), np.zeros((21, 5)), weight_layout="gate_major")
    with pytest.raises(ValueError, match=r"w_proj: expected shape \(P, H\) = \(4, 5\) for "
                                         r"weight_layout='gate_major', got \(4, 3\)"):
        lstmcore.forward(x, _gm(w_x), np.zeros((4 * H, 4)), weight_layout="gate_major", w_proj=np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"w_x: expected shape \(I, 4H\) = \(7, 20\), got \(20, 7\)"):
        lstmcore.forward(x, _gm(w_x), w_h)  # gate-major arrays without the keyword


def test_device_path(monkeypatch):
    """The CUDA path (lstmcore._cuda) with gate_major, on the stand-in device arrays and binding of
    test_cuda_api (the CPU core behind device addresses): shapes per layout, the layout passed
    down, gradients returned in it; equal to the host path bit for bit."""
    import test_cuda_api as dev  # noqa: PLC0415

    from lstmcore import _cuda  # noqa: PLC0415

    monkeypatch.setattr(_cuda, "_core", dev._fake_binding(_cuda._core))
    monkeypatch.setitem(_cuda.ADAPTERS, dev.HostBacked.__module__.split(".")[0], dev.HostBackedLib)
    monkeypatch.setattr(_cuda, "_LIBS", {})
    for cell in ("lstm", "gru"):
        a, g = _arrays(cell, np.float64, 21)
        a["w_x"], a["w_h"] = _gm(a["w_x"]), _gm(a["w_h"])
        want = lstmcore.forward(**a, cell=cell, training=True, weight_layout="gate_major")
        want_g = lstmcore.backward(want.cache, **g)
        got = lstmcore.forward(**{k: dev._dev(v) for k, v in a.items()}, cell=cell, training=True,
                               weight_layout="gate_major")
        assert got.cache.weight_layout == "gate_major"
        np.testing.assert_array_equal(got.y.arr, want.y)
        got_g = lstmcore.backward(got.cache, **{k: dev._dev(v) for k, v in g.items()})
        for name in ("dx", "dh0", "dw_x", "dw_h", "db", "db_h"):
            np.testing.assert_array_equal(getattr(got_g, name).arr, getattr(want_g, name), err_msg=name)
        with pytest.raises(ValueError, match=r"w_x: expected shape \(\d?H, I\) = .* for weight_layout='gate_major'"):
            lstmcore.forward(**{k: dev._dev(v) for k, v in dict(a, w_x=_gm(a["w_x"])).items()}, cell=cell,
                             weight_layout="gate_major")
