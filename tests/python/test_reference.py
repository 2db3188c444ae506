"""The NumPy reference itself: against PyTorch (forward and every gradient) and against
central finite differences (every gradient, every cell including GRU reset_after=False).
Needs only NumPy (and torch for the torch half); not the compiled core."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import (OPTION_SETS, TOL64, TORCH_VARIANT_IDS, VARIANT_IDS, Case, check,
                      check_all, fd_all, make_case, reference, torch_run)

SMALL_OPTIONS = [k for k in OPTION_SETS if not k.startswith("big")]


# ----------------------------------------------------------------------------------
# vs PyTorch (float64 on both sides: must agree to rounding)


@pytest.mark.parametrize("opt", list(OPTION_SETS))
@pytest.mark.parametrize("variant", TORCH_VARIANT_IDS)
def test_reference_vs_torch(variant, opt):
    pytest.importorskip("torch")
    case = make_case(variant, np.float64, opt)
    want_fwd, want_grads = torch_run(case)
    res, grads = case.ref()
    check_all(res, grads, want_fwd, want_grads, TOL64, "ref-vs-torch f64", variant)


@pytest.mark.parametrize("variant", TORCH_VARIANT_IDS)
def test_reference_float32_inputs_vs_torch(variant):
    """float32 inputs are upcast exactly; the reference still computes in float64."""
    pytest.importorskip("torch")
    import torch

    case = make_case(variant, np.float32, "seq_rev_bf")
    res, grads = case.ref()
    assert res.y.dtype == np.float64 and grads.dw_x.dtype == np.float64
    want_fwd, want_grads = torch_run(case, torch.float64)
    check_all(res, grads, want_fwd, want_grads, TOL64)


# ----------------------------------------------------------------------------------
# vs central finite differences


@pytest.mark.parametrize("opt", SMALL_OPTIONS)
@pytest.mark.parametrize("variant", VARIANT_IDS)
def test_reference_vs_finite_differences(variant, opt):
    case = make_case(variant, np.float64, opt, seed=7)
    fd_all(case, reference.forward, case.ref()[1], np.random.default_rng(3))


@pytest.mark.parametrize("variant", VARIANT_IDS)
def test_reference_vs_finite_differences_big(variant):
    case = Case(variant, np.float64, seed=11, sizes=(3, 2, 130, 13), reverse=True, seq=True)
    fd_all(case, reference.forward, case.ref()[1], np.random.default_rng(4), max_entries=12)


# ----------------------------------------------------------------------------------
# the equations, transcribed once more by hand for one step (GRU reset_after=False has no
# torch counterpart; this and test_onnx.py pin its forward)


def _sig(a):
    return 1.0 / (1.0 + np.exp(-a))


@pytest.mark.parametrize("variant", VARIANT_IDS)
def test_one_step_equations(variant):
    case = Case(variant, np.float64, seed=5, sizes=(1, 3, 2, 4))
    f = case.fwd
    H = case.H
    x, h, c = f["x"][0], f["h0"], f["c0"]
    a_x = x @ f["w_x"] + f["b"]
    a_h = h @ f["w_h"] + f["b_h"]
    blk = lambda a, k: a[:, k * H:(k + 1) * H]  # noqa: E731
    c1 = None
    if variant == "lstm":
        a = a_x + a_h
        i, ff, g, o = _sig(blk(a, 0)), _sig(blk(a, 1)), np.tanh(blk(a, 2)), _sig(blk(a, 3))
        c1 = ff * c + i * g
        h1 = o * np.tanh(c1)
    elif variant.startswith("gru"):
        r = _sig(blk(a_x, 0) + blk(a_h, 0))
        z = _sig(blk(a_x, 1) + blk(a_h, 1))
        if variant == "gru":
            n = np.tanh(blk(a_x, 2) + r * blk(a_h, 2))
        else:
            n = np.tanh(blk(a_x, 2) + (r * h) @ f["w_h"][:, 2 * H:] + f["b_h"][2 * H:])
        h1 = (1 - z) * n + z * h
    elif variant == "rnn_tanh":
        h1 = np.tanh(a_x + a_h)
    else:
        h1 = np.maximum(a_x + a_h, 0)
    res = case.ref_forward()
    check("y", res.y[0], h1, 1e-14)
    check("h_n", res.h_n, h1, 1e-14)
    check("c_n", res.c_n, c1, 1e-14)


def test_seq_lengths_semantics():
    """y is exactly 0 past each length; h_n is the state at the last valid step; a
    sequence's result does not depend on what lies past its length; reverse with lengths
    equals running each sequence, cut to its length, reversed."""
    case = Case("lstm", np.float64, seed=9, sizes=(7, 4, 3, 5), seq=True, reverse=True)
    lens = case.seq_lengths
    res = case.ref_forward()
    for b, n in enumerate(lens):
        assert np.all(res.y[n:, b] == 0)
        sub = reference.forward(case.fwd["x"][:n, b:b + 1], case.fwd["w_x"], case.fwd["w_h"],
                                case.fwd["b"], case.fwd["b_h"], case.fwd["h0"][b:b + 1],
                                case.fwd["c0"][b:b + 1], cell="lstm", reverse=True)
        check("y", res.y[:n, b], sub.y[:, 0], 1e-15)
        check("h_n", res.h_n[b], sub.h_n[0], 1e-15)
        check("c_n", res.c_n[b], sub.c_n[0], 1e-15)
        # and that is the forward run over the time-reversed sequence
        fw = reference.forward(case.fwd["x"][:n, b:b + 1][::-1], case.fwd["w_x"], case.fwd["w_h"],
                               case.fwd["b"], case.fwd["b_h"], case.fwd["h0"][b:b + 1],
                               case.fwd["c0"][b:b + 1], cell="lstm")
        check("y", res.y[:n, b], fw.y[::-1, 0], 1e-15)


def test_reference_errors():
    case = Case("gru", np.float64, seed=1, sizes=(2, 2, 3, 4))
    with pytest.raises(ValueError, match="c0"):
        reference.forward(**{**case.fwd, "c0": np.zeros((2, 4))}, cell="gru")
    with pytest.raises(ValueError, match="cell"):
        reference.forward(**case.fwd, cell="lstmx")
    with pytest.raises(ValueError, match="w_h"):
        reference.forward(case.fwd["x"], case.fwd["w_x"], np.zeros((4, 4)), cell="gru")
    for bad in ([0, 1], [1, 3], [1, 1, 1], [-1, 2]):
        with pytest.raises(ValueError, match="seq_lengths"):
            reference.forward(**case.fwd, cell="gru", seq_lengths=bad)
    res = reference.forward(**case.fwd, cell="gru")
    with pytest.raises(ValueError, match="dc_n"):
        reference.backward(res.cache, dc_n=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="dy"):
        reference.backward(res.cache, dy=np.zeros((2, 2, 5)))
    with pytest.raises(TypeError):
        reference.backward(object())
