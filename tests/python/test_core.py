"""lstmcore.forward / backward against the float64 NumPy reference: every cell variant ×
dtype × option set (see conftest.OPTION_SETS: every option value is hit with every cell
and dtype)."""
from __future__ import annotations

import numpy as np
import pytest

import lstmcore
from conftest import (DTYPES, OPTION_SETS, VARIANT_IDS, Case, check_all, make_case, rel_err,
                      tol_for)


def core_run(case, training=True):
    res = lstmcore.forward(**case.fwd, **case.opts, training=training)
    grads = lstmcore.backward(res.cache, **case.grads) if training else None
    return res, grads


@pytest.mark.parametrize("opt", list(OPTION_SETS))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("variant", VARIANT_IDS)
def test_core_vs_reference(variant, dtype, opt):
    case = make_case(variant, dtype, opt)
    res, grads = core_run(case)
    want, want_grads = case.ref()
    # dtypes and shapes of everything returned
    for name in ("y", "h_n", "c_n"):
        v = getattr(res, name)
        if v is not None:
            assert v.dtype == dtype, name
    for name in ("dx", "dh0", "dc0", "dw_x", "dw_h", "db", "db_h"):
        v = getattr(grads, name)
        if v is not None:
            assert v.dtype == dtype, name
    assert grads.dx.shape == case.fwd["x"].shape
    assert res.y.shape == want.y.shape
    check_all(res, grads, want, want_grads, tol_for(dtype),
              f"core-vs-ref {np.dtype(dtype).name}", variant)
    # y is exactly 0 past each sequence's length
    if case.seq_lengths is not None:
        y = res.y.transpose(1, 0, 2) if case.opts["batch_first"] else res.y
        for b, n in enumerate(case.seq_lengths):
            assert np.all(y[n:, b] == 0), f"y not zero past length {n} of sequence {b}"


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("variant", VARIANT_IDS)
def test_inference_equals_training_forward(variant, dtype):
    """training=False gives cache None and the same numbers as training=True (to the
    last bits; bit-identity is test_api.py::test_repeated_calls_are_bitwise_reproducible)."""
    case = make_case(variant, dtype, "seq_rev_bf")
    inf = lstmcore.forward(**case.fwd, **case.opts)
    tr = lstmcore.forward(**case.fwd, **case.opts, training=True)
    assert inf.cache is None and tr.cache is not None
    tol = 1e-14 if dtype == np.float64 else 1e-6
    assert rel_err(inf.y, tr.y) <= tol and rel_err(inf.h_n, tr.h_n) <= tol
    if variant == "lstm":
        assert rel_err(inf.c_n, tr.c_n) <= tol
    else:
        assert inf.c_n is None and tr.c_n is None


@pytest.mark.parametrize("variant", VARIANT_IDS)
def test_optional_none_equals_explicit_zeros(variant):
    """None for a bias / state means zeros; None for dy / dh_n / dc_n means zero gradient."""
    case = Case(variant, np.float64, seed=21, sizes=(3, 2, 3, 7), bias=(), state=(),
                grads=("dy",))
    z = np.zeros
    G, H, B = case.G, case.H, case.B
    res_none = lstmcore.forward(**case.fwd, **case.opts, training=True)
    explicit = dict(case.fwd, b=z(G * H), b_h=z(G * H), h0=z((B, H)))
    if case.cell == "lstm":
        explicit["c0"] = z((B, H))
    res_zero = lstmcore.forward(**explicit, **case.opts, training=True)
    check_all(res_none, None, res_zero, None, 1e-15)
    g_none = lstmcore.backward(res_none.cache, dy=case.grads["dy"])
    gz = dict(dy=case.grads["dy"], dh_n=z((B, H)))
    if case.cell == "lstm":
        gz["dc_n"] = z((B, H))
    g_zero = lstmcore.backward(res_zero.cache, **gz)
    assert g_none.db is None and g_none.db_h is None
    assert g_zero.db is not None and g_zero.db_h is not None
    for f in ("dx", "dh0", "dc0", "dw_x", "dw_h"):
        a, b = getattr(g_none, f), getattr(g_zero, f)
        if a is None:
            assert b is None and case.cell != "lstm"
        else:
            np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-300)


@pytest.mark.parametrize("variant", VARIANT_IDS)
def test_sizes_one(variant):
    """T = B = I = H = 1, every option on.

    With one element nothing averages out, so the inputs are halved to keep every gate
    out of saturation: at a saturated float32 tanh (h = −0.99976) the derivative 1 − h²
    keeps only ~4 digits in *any* float32 implementation (torch.nn.RNN float32 is off
    by 1.6e-5 there, as is the core), which says nothing about the core."""
    for dtype in DTYPES:
        case = Case(variant, dtype, seed=3, sizes=(1, 1, 1, 1), reverse=True, seq=True,
                    batch_first=True)
        case.fwd["x"] *= 0.5
        res, grads = core_run(case)
        want, want_grads = case.ref()
        check_all(res, grads, want, want_grads, tol_for(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_long_sequence_lstm(dtype):
    """A long run (T=200) with larger H exercises the blocked kernels and error growth."""
    case = Case("lstm", dtype, seed=8, sizes=(200, 5, 33, 65), seq=True)
    res, grads = core_run(case)
    want, want_grads = case.ref()
    check_all(res, grads, want, want_grads, tol_for(dtype), f"core-vs-ref {np.dtype(dtype).name}",
              "lstm")
