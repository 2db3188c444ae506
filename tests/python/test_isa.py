"""Every compiled instruction-set variant of the kernels, and their vectorised math.

Each variant the processor supports runs every cell, forward and backward, against the
NumPy reference; the vectorised exp / expm1 / sigmoid / tanh are checked in ulps against
float64 (or, for float64, against NumPy's libm) over a sweep that reaches ±1e4.
"""
from __future__ import annotations

import numpy as np
import pytest

import lstmcore
from lstmcore import _core
from lstmcore import reference

ISAS = lstmcore.available_isas()
CELLS = [("lstm", True), ("gru", True), ("gru", False), ("rnn_tanh", True), ("rnn_relu", True)]


def rel(got, want):
    return np.linalg.norm(np.asarray(got, np.float64) - want) / np.linalg.norm(want)


def test_isa_api():
    assert ISAS, "at least the generic variant is always available"
    assert ISAS[-1] == "generic"
    assert lstmcore.get_isa() in ISAS
    assert "isa: " + lstmcore.get_isa() in lstmcore.build_info()
    with pytest.raises(ValueError, match="isa"):
        lstmcore.set_isa("sse1")


@pytest.mark.parametrize("isa", ISAS, indirect=True)
@pytest.mark.parametrize("cell,reset_after", CELLS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_variant_matches_reference(isa, cell, reset_after, dtype):
    rng = np.random.default_rng(7)
    T, B, I, H = 6, 5, 7, 37  # H not a multiple of any vector width
    G = {"lstm": 4, "gru": 3}.get(cell, 1)
    p = dict(x=rng.standard_normal((T, B, I)), w_x=rng.standard_normal((I, G * H)) / np.sqrt(I),
             w_h=rng.standard_normal((H, G * H)) / np.sqrt(H), b=0.3 * rng.standard_normal(G * H),
             b_h=0.3 * rng.standard_normal(G * H), h0=rng.standard_normal((B, H)))
    if cell == "lstm":
        p["c0"] = rng.standard_normal((B, H))
    p = {k: v.astype(dtype) for k, v in p.items()}
    opts = dict(cell=cell, reset_after=reset_after, seq_lengths=[6, 2, 5, 1, 6], reverse=True)
    dy = rng.standard_normal((T, B, H)).astype(dtype)
    dh = rng.standard_normal((B, H)).astype(dtype)
    dc = rng.standard_normal((B, H)).astype(dtype) if cell == "lstm" else None

    res = lstmcore.forward(**p, **opts, training=True)
    grads = lstmcore.backward(res.cache, dy, dh, dc)
    p64 = {k: v.astype(np.float64) for k, v in p.items()}
    ref = reference.forward(**p64, **opts)
    ref_g = reference.backward(ref.cache, dy.astype(np.float64), dh.astype(np.float64),
                               None if dc is None else dc.astype(np.float64))
    tol = 1e-10 if dtype == np.float64 else 1e-5
    assert rel(res.y, ref.y) < tol
    assert rel(res.h_n, ref.h_n) < tol
    for name in ("dx", "dh0", "dc0", "dw_x", "dw_h", "db", "db_h"):
        want = getattr(ref_g, name)
        if want is None:
            assert getattr(grads, name) is None
        else:
            assert rel(getattr(grads, name), want) < tol, name


def _sweep(dtype):
    tiny = np.finfo(dtype).tiny
    parts = [np.linspace(-1e4, 1e4, 20001), np.linspace(-120, 120, 240001),
             np.geomspace(1e-30, 1e4, 4000), -np.geomspace(1e-30, 1e4, 4000),
             [0.0, -0.0, tiny, -tiny, 5e-324 if dtype == np.float64 else 1e-45]]
    for limit in (88.72, 709.78, -103.9, -745.1, 20.0, 40.0):  # the kernels' range edges
        parts.append(np.linspace(limit - 1, limit + 1, 2001))
    return np.concatenate([np.asarray(q, np.float64) for q in parts]).astype(dtype)


def _ulp_error(got, want64, dtype):
    """|got − want| in units of the last place of `want` rounded to dtype (subnormals: tiny's ulp)."""
    want = want64.astype(dtype)
    spacing = np.spacing(np.maximum(np.abs(want), np.finfo(dtype).tiny).astype(dtype)).astype(np.float64)
    return np.abs(got.astype(np.float64) - want64) / spacing


def _exact(name, x64):
    with np.errstate(over="ignore", under="ignore"):
        if name == "exp":
            return np.exp(x64)
        if name == "expm1":
            return np.expm1(x64)
        if name == "sigmoid":
            e = np.exp(-np.abs(x64))  # never overflows
            return np.where(x64 >= 0, 1 / (1 + e), e / (1 + e))
        return np.tanh(x64)


@pytest.mark.parametrize("isa", ISAS, indirect=True)
@pytest.mark.parametrize("name", ["exp", "expm1", "sigmoid", "tanh"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vectorised_math(isa, name, dtype):
    x = _sweep(dtype)
    got = _core._activation(name, x)
    want = _exact(name, x.astype(np.float64))
    with np.errstate(over="ignore"):
        finite_want = np.isfinite(want.astype(dtype))
    # never NaN; Inf only where the true value overflows the dtype (exp, expm1 of large x)
    assert not np.isnan(got).any()
    assert np.array_equal(np.isfinite(got), finite_want)
    if name in ("sigmoid", "tanh"):
        assert np.isfinite(got).all()
    # a few ulp of the float64 function (float32), or of libm (float64)
    err = _ulp_error(got[finite_want], want[finite_want], dtype)
    assert err.max() <= 4, f"max {err.max():.2f} ulp at x={x[finite_want][np.argmax(err)]!r}"


@pytest.mark.parametrize("isa", ISAS, indirect=True)
def test_vectorised_math_nan(isa):
    for dtype in (np.float32, np.float64):
        x = np.array([np.nan, -np.inf, np.inf, 1.0], dtype)
        assert np.isnan(_core._activation("tanh", x)[0])
        assert np.isnan(_core._activation("sigmoid", x)[0])
        assert np.array_equal(_core._activation("tanh", x)[1:3], [-1, 1])
        assert np.array_equal(_core._activation("sigmoid", x)[1:3], [0, 1])
        assert np.array_equal(_core._activation("exp", x)[1:3], [0, np.inf])
