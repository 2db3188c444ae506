"""The cell variants (lstmcore.forward's keyword options) against ONNX Runtime, ONNX's
ReferenceEvaluator, torch.nn.LSTM(proj_size=...), the NumPy reference and central finite
differences.

What checks what:
* ONNX's options (activations with alpha/beta, clip, input_forget, peepholes; directions,
  sequence_lens, initial states) — forward, float32, against ONNX Runtime's LSTM/GRU/RNN
  nodes; both the core and the float64 reference. Peepholes also against ONNX's
  ReferenceEvaluator (which ignores activations, clip, input_forget and sequence_lens, so
  it serves for peepholes only).
* proj_size — forward and every gradient against torch.nn.LSTM(proj_size=P), float32 and
  float64, with reverse, seq_lengths, batch_first.
* everything (layer norm and zoneout included) — core against the reference, forward and
  backward, float64 and float32; and the core's float64 gradients, the variants' own
  parameters included, against central finite differences of its own forward.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

import lstmcore
from lstmcore._types import ACTIVATIONS
from conftest import (TOL32, TOL32_PAIR, Case, check, check_all, fd_all, fd_check, loss_of, pair_tol_for,
                      reference, tol_for)

ONNX_NAMES = {"sigmoid": "Sigmoid", "hard_sigmoid": "HardSigmoid", "tanh": "Tanh", "relu": "Relu",
              "softsign": "Softsign", "scaled_tanh": "ScaledTanh", "affine": "Affine",
              "leaky_relu": "LeakyRelu", "elu": "Elu", "softplus": "Softplus",
              "thresholded_relu": "ThresholdedRelu"}
#: non-default alpha / beta for the functions that take them
ALPHA = {"hard_sigmoid": 0.3, "scaled_tanh": 1.3, "affine": 0.8, "leaky_relu": 0.05, "elu": 0.7,
         "thresholded_relu": 0.1}
BETA = {"hard_sigmoid": 0.4, "scaled_tanh": 0.7, "affine": 0.1}
NAMES = list(ACTIVATIONS)
EXTRA_GRADS = ("dpeepholes", "dw_proj", "dlayer_norm")


def activation_kw(names, explicit=True):
    """forward's activations / activation_alpha / activation_beta for ``names``."""
    kw = dict(activations=list(names))
    if explicit:
        kw["activation_alpha"] = [ALPHA.get(n) for n in names]
        kw["activation_beta"] = [BETA.get(n) for n in names]
    return kw


def onnx_attrs(kw):
    """The ONNX node attributes of forward's options ``kw``: alpha / beta lists hold one value
    per activation that takes the parameter, in order (as ONNX Runtime reads them)."""
    attrs = {}
    if "activations" in kw:
        names = kw["activations"]
        attrs["activations"] = [ONNX_NAMES[n] for n in names]
        for key, table, col in (("activation_alpha", ALPHA, 0), ("activation_beta", BETA, 1)):
            if key in kw:
                vals = [kw[key][k] for k, n in enumerate(names) if ACTIVATIONS[n][col] is not None]
                if vals:
                    attrs[key] = [float(v) for v in vals]
    if kw.get("clip") is not None:
        attrs["clip"] = float(kw["clip"])
    if kw.get("input_forget"):
        attrs["input_forget"] = 1
    return attrs


def variant_case(variant, dtype, sizes=(6, 3, 5, 7), proj=None, seed=0, **kw):
    """A conftest.Case; with ``proj`` its w_h, h0, dy, dh_n get P columns."""
    case = Case(variant, dtype, seed=seed, sizes=sizes, **kw)
    if proj:
        rng = np.random.default_rng(seed + 1)
        T, B, I, H = sizes
        f, g = case.fwd, case.grads

        def arr(shape, scale):
            return (scale * rng.standard_normal(shape)).astype(case.dtype)

        f["w_h"] = arr((proj, case.G * H), 0.6 / np.sqrt(proj))
        if f["h0"] is not None:
            f["h0"] = arr((B, proj), 0.5)
        if g["dy"] is not None:
            g["dy"] = arr(g["dy"].shape[:-1] + (proj,), 1.0)
        if g["dh_n"] is not None:
            g["dh_n"] = arr((B, proj), 1.0)
    return case


def variant_params(case, seed=7, peepholes=False, proj=None, layer_norm=False):
    """Random peepholes (3, H), w_proj (H, P), layer_norm 6-tuple, of the case's dtype."""
    rng = np.random.default_rng(seed)
    H, dt = case.H, case.dtype

    def arr(shape, scale, shift=0.0):
        return (shift + scale * rng.standard_normal(shape)).astype(dt)

    kw = {}
    if peepholes:
        kw["peepholes"] = arr((3, H), 0.5)
    if proj:
        kw["w_proj"] = arr((H, proj), 0.7 / np.sqrt(H))
    if layer_norm:
        G = case.G
        kw["layer_norm"] = (arr(G * H, 0.2, 1.0), arr(G * H, 0.2), arr(G * H, 0.2, 1.0), arr(G * H, 0.2),
                            arr(H, 0.2, 1.0), arr(H, 0.2))
    return kw


def check_extras(got, want, tol, category, key):
    for name in EXTRA_GRADS:
        g, w = getattr(got, name), getattr(want, name)
        if name == "dlayer_norm" and w is not None:
            assert g is not None and len(g) == 6
            for k in range(6):
                check(f"dlayer_norm[{k}]", g[k], w[k], tol, category, key)
        else:
            check(name, g, w, tol, category, key)


def core_vs_reference(case, kw, seed=None, category="core-vs-ref"):
    res = lstmcore.forward(**case.fwd, **case.opts, **kw, training=True, seed=seed)
    grads = lstmcore.backward(res.cache, **case.grads)
    want = reference.forward(**case.fwd, **case.opts, **kw, training=True, seed=seed)
    want_grads = reference.backward(want.cache, **case.grads)
    tol = tol_for(case.dtype)
    cat = f"{category} {case.dtype.name}"
    check_all(res, grads, want, want_grads, tol, cat, case.variant)
    check_extras(grads, want_grads, tol, cat, case.variant)
    return res, grads


def fd_variant(case, kw, seed=None, training=False, max_entries=24, rng_seed=3, forward_fn=None,
               backward_fn=None, category="core-vs-FD f64"):
    """Central differences (float64) of every gradient, the variant's parameters included,
    of ``forward_fn`` (lstmcore.forward, or reference.forward with reference.backward)."""
    forward_fn = forward_fn or lstmcore.forward
    backward_fn = backward_fn or lstmcore.backward
    rng = np.random.default_rng(rng_seed)
    fwd = functools.partial(forward_fn, **kw, training=training, seed=seed)
    res = forward_fn(**case.fwd, **case.opts, **kw, training=True, seed=seed)
    grads = backward_fn(res.cache, **case.grads)
    fd_all(case, fwd, grads, rng, max_entries=max_entries, category=category)

    def loss():
        r = fwd(**case.fwd, **case.opts)
        return loss_of(case, r.y, r.h_n, r.c_n)

    extras = []
    if "peepholes" in kw:
        extras.append(("dpeepholes", kw["peepholes"], grads.dpeepholes))
    if "w_proj" in kw:
        extras.append(("dw_proj", kw["w_proj"], grads.dw_proj))
    if "layer_norm" in kw:
        extras += [(f"dlayer_norm[{k}]", kw["layer_norm"][k], grads.dlayer_norm[k]) for k in range(6)]
    for name, arr, grad in extras:
        assert grad is not None, f"{name} is None"
        fd_check(name, loss, arr, grad, rng, max_entries=max_entries, category=category, key=case.variant)
    return grads


# ----------------------------------------------------------------------------------
# ONNX Runtime (and the ReferenceEvaluator), forward, float32

#: the functions whose ONNX defaults ONNX Runtime uses; for thresholded_relu (ONNX's
#: ThresholdedRelu: alpha 1), affine and scaled_tanh it takes 0 for an alpha / beta not
#: given, so those cases pass the values explicitly
ORT_DEFAULTS = ("hard_sigmoid", "leaky_relu", "elu")
ORT_CASES = []
for _n in NAMES:  # every activation in every slot, non-default and default alpha/beta
    if _n == "softplus":
        # softplus in all three LSTM slots makes c grow past e^88 within 6 steps, where
        # ONNX Runtime's float32 log(1 + e^x) overflows to inf: two cases cover the slots
        ORT_CASES.append(("lstm-softplus-fg", "lstm", activation_kw([_n, _n, "tanh"]), None))
        ORT_CASES.append(("lstm-softplus-h", "lstm", activation_kw(["sigmoid", "tanh", _n]), None))
    else:
        ORT_CASES.append((f"lstm-{_n}", "lstm", activation_kw([_n] * 3), None))
    ORT_CASES.append((f"gru-{_n}", "gru", activation_kw([_n] * 2), None))
    ORT_CASES.append((f"rnn-{_n}", "rnn_tanh", activation_kw([_n]), None))
    if _n in ORT_DEFAULTS:
        ORT_CASES.append((f"lstm-{_n}-defaults", "lstm", activation_kw([_n] * 3, explicit=False), None))
ORT_CASES += [
    ("lstm-mixed1", "lstm", activation_kw(["hard_sigmoid", "softsign", "elu"]), None),
    ("lstm-mixed2", "lstm", activation_kw(["scaled_tanh", "leaky_relu", "affine"]), None),
    ("lstm-mixed3", "lstm", activation_kw(["softplus", "thresholded_relu", "relu"]), None),
    ("gru-mixed", "gru", activation_kw(["affine", "hard_sigmoid"]), None),
    ("gru_rb-mixed", "gru_rb", activation_kw(["hard_sigmoid", "scaled_tanh"]), None),
    ("lstm-peepholes", "lstm", {}, "peep"),
    ("lstm-input_forget", "lstm", dict(input_forget=True), None),
    ("lstm-clip", "lstm", dict(clip=0.6), None),
    ("lstm-clip-peepholes-acts", "lstm", dict(clip=0.8, **activation_kw(["hard_sigmoid", "elu", "softsign"])),
     "peep"),
    ("lstm-input_forget-peepholes-clip", "lstm", dict(input_forget=True, clip=0.7), "peep"),
    ("gru-clip", "gru", dict(clip=0.5), None),
    ("gru_rb-clip", "gru_rb", dict(clip=0.5), None),
    ("rnn-clip", "rnn_tanh", dict(clip=0.5), None),
    ("rnn_relu-clip", "rnn_relu", dict(clip=0.5), None),
]
ORT_OPTIONS = {
    "plain": dict(sizes=(6, 3, 5, 7)),
    "seq_reverse": dict(sizes=(6, 3, 5, 7), seq=True, reverse=True),
}


def _valid(case, y):
    from test_onnx import _valid as valid  # noqa: PLC0415

    return valid(case, y)


def _ort_case(variant, opt):
    return variant_case(variant, np.float32, seed=11, **ORT_OPTIONS[opt])


@pytest.mark.parametrize("opt", list(ORT_OPTIONS))
@pytest.mark.parametrize("name,variant,kw,peep", ORT_CASES, ids=[c[0] for c in ORT_CASES])
def test_vs_onnxruntime(name, variant, kw, peep, opt):
    pytest.importorskip("onnxruntime")
    from test_onnx import run_ort  # noqa: PLC0415

    case = _ort_case(variant, opt)
    kw = dict(kw)
    if peep:
        kw.update(variant_params(case, peepholes=True))
    y, h_n, c_n = run_ort(case, attrs=onnx_attrs(kw), peepholes=kw.get("peepholes"))
    res = lstmcore.forward(**case.fwd, **case.opts, **kw)
    want = reference.forward(**case.fwd, **case.opts, **kw)
    for got, tol, cat in ((res, TOL32_PAIR, "core-vs-ort float32"), (want, TOL32, "ref-vs-ort float32")):
        check("Y", _valid(case, y), got.y, tol, cat, name)
        check("Y_h", h_n, got.h_n, tol, cat, name)
        check("Y_c", c_n, got.c_n, tol, cat, name)


@pytest.mark.parametrize("reverse", [False, True])
def test_peepholes_vs_onnx_reference_evaluator(reverse):
    pytest.importorskip("onnx")
    from test_onnx import run_ort  # noqa: PLC0415

    case = variant_case("lstm", np.float32, seed=12, reverse=reverse)
    kw = variant_params(case, peepholes=True)
    y, h_n, c_n = run_ort(case, peepholes=kw["peepholes"], evaluator="reference")
    res = lstmcore.forward(**case.fwd, **case.opts, **kw)
    for f, got, want in (("Y", res.y, y), ("Y_h", res.h_n, h_n), ("Y_c", res.c_n, c_n)):
        check(f, got, want, TOL32_PAIR, "core-vs-onnx-reference float32", "lstm-peepholes")


# ----------------------------------------------------------------------------------
# proj_size against torch.nn.LSTM(proj_size=P)

TORCH_OPTIONS = {
    "plain": dict(),
    "reverse": dict(reverse=True),
    "seq_rev_bf": dict(seq=True, reverse=True, batch_first=True),
    "seq_one_step": dict(sizes=(1, 3, 5, 7), seq=True),
}


@pytest.mark.parametrize("opt", list(TORCH_OPTIONS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_proj_vs_torch(dtype, opt):
    pytest.importorskip("torch")
    from conftest import torch_run  # noqa: PLC0415

    o = dict(dict(sizes=(6, 3, 5, 7)), **TORCH_OPTIONS[opt])
    case = variant_case("lstm", dtype, proj=4, seed=21, **o)
    kw = variant_params(case, proj=4)
    want, want_grads = torch_run(case, w_proj=kw["w_proj"])
    res = lstmcore.forward(**case.fwd, **case.opts, **kw, training=True)
    grads = lstmcore.backward(res.cache, **case.grads)
    tol = pair_tol_for(dtype)
    cat = f"core-vs-torch proj {np.dtype(dtype).name}"
    check_all(res, grads, want, want_grads, tol, cat, opt)
    check("dw_proj", grads.dw_proj, want_grads.dw_proj, tol, cat, opt)


# ----------------------------------------------------------------------------------
# every option against the reference (float64 and float32) and finite differences

def _kw(case, **spec):
    """forward's keyword options from a compact spec."""
    kw = {}
    kw.update(variant_params(case, peepholes=spec.pop("peep", False), proj=spec.pop("proj", None),
                             layer_norm=spec.pop("ln", False)))
    acts = spec.pop("acts", None)
    if acts:
        kw.update(activation_kw(acts))
    kw.update(spec)
    return kw


#: id -> (variant, case options, option spec, zoneout seed or None)
COMBOS = {
    "peepholes": ("lstm", dict(), dict(peep=True), None),
    "input_forget": ("lstm", dict(seq=True), dict(input_forget=True), None),
    "no_forget_gate": ("lstm", dict(reverse=True), dict(forget_gate=False), None),
    "clip": ("lstm", dict(), dict(clip=0.5), None),
    "acts_lstm": ("lstm", dict(), dict(acts=["hard_sigmoid", "softsign", "elu"]), None),
    "acts_lstm2": ("lstm", dict(batch_first=True), dict(acts=["scaled_tanh", "softplus", "leaky_relu"]), None),
    "acts_lstm3": ("lstm", dict(), dict(acts=["sigmoid", "affine", "thresholded_relu"]), None),
    "proj": ("lstm", dict(seq=True), dict(proj=4), None),
    "layer_norm": ("lstm", dict(), dict(ln=True), None),
    "layer_norm_input_forget": ("lstm", dict(seq=True), dict(ln=True, input_forget=True), None),
    "zoneout_training": ("lstm", dict(seq=True), dict(zoneout=(0.3, 0.4)), 1234),
    "peep_proj_rev_seq": ("lstm", dict(seq=True, reverse=True), dict(peep=True, proj=3), None),
    "clip_acts": ("lstm", dict(reverse=True), dict(clip=0.7, acts=["hard_sigmoid", "tanh", "softsign"]), None),
    "ln_proj": ("lstm", dict(seq=True, batch_first=True), dict(ln=True, proj=5), None),
    "everything": ("lstm", dict(seq=True, reverse=True, batch_first=True),
                   dict(peep=True, proj=4, ln=True, clip=0.9, zoneout=(0.2, 0.3),
                        acts=["hard_sigmoid", "softsign", "tanh"]), 99),
    "one_step": ("lstm", dict(sizes=(1, 3, 5, 7)), dict(peep=True, proj=2, ln=True, zoneout=0.5), 5),
    "no_forget_peep_ln": ("lstm", dict(seq=True), dict(forget_gate=False, peep=True, ln=True), None),
    "gru_acts_clip": ("gru", dict(seq=True), dict(clip=0.6, acts=["hard_sigmoid", "softsign"]), None),
    "gru_rb_acts_clip": ("gru_rb", dict(reverse=True), dict(clip=0.6, acts=["affine", "elu"]), None),
    "rnn_acts_clip": ("rnn_tanh", dict(seq=True, reverse=True), dict(clip=0.6, acts=["softsign"]), None),
    "rnn_relu_clip": ("rnn_relu", dict(), dict(clip=0.5), None),
}


def _combo_case(key, dtype):
    variant, copts, spec, zseed = COMBOS[key]
    spec = dict(spec)
    copts = dict(dict(sizes=(6, 3, 5, 7)), **copts)
    case = variant_case(variant, dtype, proj=spec.get("proj"), seed=31 + list(COMBOS).index(key), **copts)
    return case, _kw(case, **spec), zseed


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("key", list(COMBOS))
def test_core_vs_reference(key, dtype):
    case, kw, zseed = _combo_case(key, dtype)
    core_vs_reference(case, kw, seed=zseed)


@pytest.mark.parametrize("key", list(COMBOS))
def test_core_gradients_vs_finite_differences(key):
    case, kw, zseed = _combo_case(key, np.float64)
    fd_variant(case, kw, seed=zseed, training=zseed is not None)


@pytest.mark.parametrize("key", ["layer_norm", "ln_proj", "zoneout_training", "everything"])
def test_reference_gradients_vs_finite_differences(key):
    """The reference's own layer-norm and zoneout derivatives, against its forward."""
    case, kw, zseed = _combo_case(key, np.float64)
    fd_variant(case, kw, seed=zseed, training=zseed is not None, max_entries=12,
               forward_fn=reference.forward, backward_fn=reference.backward, category="ref-vs-FD")


@pytest.mark.parametrize("name", NAMES)
def test_each_activation_gradients(name):
    """Each activation in each LSTM slot, GRU and RNN, with a clip: core vs reference and FD."""
    for variant, n in (("lstm", 3), ("gru", 2), ("rnn_tanh", 1)):
        case = variant_case(variant, np.float64, sizes=(4, 2, 3, 5), seed=NAMES.index(name))
        kw = dict(activation_kw([name] * n), clip=1.5)
        core_vs_reference(case, kw)
        fd_variant(case, kw, max_entries=10)


# ----------------------------------------------------------------------------------
# zoneout: masks, expectation

def test_zoneout_masks_and_expectation():
    case = variant_case("lstm", np.float64, sizes=(40, 8, 5, 16), seed=3)
    kw = dict(zoneout=(0.25, 0.5))
    a = lstmcore.forward(**case.fwd, **kw, training=True, seed=42)
    b = lstmcore.forward(**case.fwd, **kw, training=True, seed=42)
    c = lstmcore.forward(**case.fwd, **kw, training=True, seed=43)
    assert np.array_equal(a.y, b.y) and not np.array_equal(a.y, c.y)
    # the cache holds the masks the reference draws (same counters, any thread count)
    mh = reference.zoneout_mask(42, 1, 0.25, 40, 8, 16)
    mc = reference.zoneout_mask(42, 2, 0.5, 40, 8, 16)
    assert abs(mh.mean() - 0.25) < 0.03 and abs(mc.mean() - 0.5) < 0.03
    n0 = lstmcore.get_num_threads()
    lstmcore.set_num_threads(1)
    try:
        d = lstmcore.forward(**case.fwd, **kw, training=True, seed=42)
    finally:
        lstmcore.set_num_threads(n0)
    assert np.array_equal(a.y, d.y)
    bf = lstmcore.forward(x=case.fwd["x"].transpose(1, 0, 2).copy(), w_x=case.fwd["w_x"], w_h=case.fwd["w_h"],
                          b=case.fwd["b"], b_h=case.fwd["b_h"], h0=case.fwd["h0"], c0=case.fwd["c0"],
                          batch_first=True, training=True, seed=42, **kw)
    assert np.array_equal(bf.y.transpose(1, 0, 2), a.y)  # masks do not depend on the row order
    # inference is the expectation: h_t = z·h_{t−1} + (1 − z)·h̃_t
    inf = lstmcore.forward(**case.fwd, **kw)
    want = reference.forward(**case.fwd, **kw)
    check("y (inference)", inf.y, want.y, 1e-10, "core-vs-ref zoneout inference", "lstm")
    assert inf.cache is None


# ----------------------------------------------------------------------------------
# the plain cell is untouched; the API contract holds

def test_default_options_take_the_fast_path():
    case = variant_case("lstm", np.float64, seed=4)
    plain = lstmcore.forward(**case.fwd, training=True)
    same = lstmcore.forward(**case.fwd, training=True, activations=["sigmoid", "tanh", "tanh"], zoneout=(0, 0),
                            clip=None, input_forget=False, forget_gate=True)
    assert np.array_equal(plain.y, same.y) and same.cache.variant is None
    g = lstmcore.backward(plain.cache, **case.grads)
    dx, dh0, dc0, dw_x, dw_h, db, db_h = g  # still 7 fields
    assert isinstance(g, lstmcore.Gradients) and g.dpeepholes is None and g.dw_proj is None
    assert g.dlayer_norm is None
    # the general path with the plain options gives the plain results
    gen = lstmcore.forward(**case.fwd, training=True, clip=1e300)
    gg = lstmcore.backward(gen.cache, **case.grads)
    check_all(gen, gg, plain, g, 1e-12)


def test_out_and_dtype_rules():
    case = variant_case("lstm", np.float32, proj=3, seed=5)
    kw = variant_params(case, peepholes=True, proj=3)
    out = np.empty((6, 3, 3), np.float32)
    res = lstmcore.forward(**case.fwd, **kw, out=out)
    assert res.y is out and res.h_n.shape == (3, 3) and res.c_n.shape == (3, 7)
    with pytest.raises(TypeError, match="peepholes"):
        lstmcore.forward(**case.fwd, w_proj=kw["w_proj"], peepholes=kw["peepholes"].astype(np.float64))
    res64 = lstmcore.forward(**case.fwd, **kw, dtype=np.float64)
    assert res64.y.dtype == np.float64


# ----------------------------------------------------------------------------------
# errors

def _plain(variant="lstm", proj=None):
    case = variant_case(variant, np.float64, proj=proj, seed=6)
    return case, dict(case.fwd, **case.opts)


@pytest.mark.parametrize("cell", ["gru", "rnn_tanh", "rnn_relu"])
@pytest.mark.parametrize("option,value", [("peepholes", np.zeros((3, 7))), ("input_forget", True),
                                          ("forget_gate", False), ("w_proj", np.zeros((7, 3))),
                                          ("layer_norm", (np.ones(28),) * 6), ("zoneout", (0.1, 0.1))])
def test_lstm_options_on_other_cells(cell, option, value):
    variant = "gru" if cell == "gru" else cell
    case, args = _plain(variant)
    with pytest.raises(ValueError, match=f"{option}: the {cell} cell has no such option"):
        lstmcore.forward(**args, **{option: value})


@pytest.mark.parametrize("kw,match", [
    (dict(activations=["sigmoid", "swish", "tanh"]), "activations: unknown activation 'swish'"),
    (dict(activations=["sigmoid", "tanh"]), r"activations: the lstm cell takes 3 names \(f, g, h\)"),
    (dict(activations=["hard_sigmoid", "tanh", "tanh"], activation_alpha=[0.2]),
     "activation_alpha: expected 3 entries"),
    (dict(activations=["tanh", "tanh", "tanh"], activation_alpha=[0.2, None, None]),
     "activation_alpha: tanh .* takes no alpha"),
    (dict(activation_alpha=[0.2, None, None]), "activation_alpha / activation_beta: given without activations"),
    (dict(clip=0.0), "clip: expected a threshold > 0"),
    (dict(clip=-1.0), "clip: expected a threshold > 0"),
    (dict(zoneout=(0.5, 1.0)), r"zoneout: expected \(z_h, z_c\)"),
    (dict(input_forget=True, forget_gate=False), "input_forget: .*forget_gate=False"),
    (dict(peepholes=np.zeros((2, 7))), r"peepholes: expected shape \(3, H\) = \(3, 7\), got \(2, 7\)"),
    (dict(w_proj=np.zeros((7, 3))), r"w_h: expected shape \(P, 4H\) = \(3, 28\), got \(7, 28\)"),
    (dict(w_proj=np.zeros(7)), r"w_proj: expected shape \(H, P\)"),
    (dict(layer_norm=(np.ones(28),) * 5), "layer_norm: expected a 6-tuple"),
    (dict(layer_norm=(np.ones(28),) * 6), r"layer_norm\[4\] \(gain_c\): expected shape \(H,\) = \(7,\), got \(28,\)"),
    (dict(zoneout=0.2, training=True, seed=-1), "seed: expected an integer"),
])
def test_errors(kw, match):
    case, args = _plain()
    with pytest.raises(ValueError, match=match):
        lstmcore.forward(**args, **kw)


def test_errors_proj_shapes():
    case, args = _plain(proj=3)
    wp = np.zeros((7, 3))
    with pytest.raises(ValueError, match=r"w_proj: expected shape \(H, P\) = \(7, 4\), got \(6, 4\)"):
        lstmcore.forward(**args, w_proj=np.zeros((6, 4)))
    bad = dict(args, h0=np.zeros((3, 7)))
    with pytest.raises(ValueError, match=r"h0: expected shape \(B, P\) = \(3, 3\), got \(3, 7\)"):
        lstmcore.forward(**bad, w_proj=wp)
    res = lstmcore.forward(**args, w_proj=wp, training=True)
    with pytest.raises(ValueError, match=r"dh_n: expected shape \(B, P\) = \(3, 3\), got \(3, 7\)"):
        lstmcore.backward(res.cache, dh_n=np.zeros((3, 7)))


@pytest.mark.parametrize("option", [dict(input_forget=True), dict(forget_gate=False)])
def test_unused_forget_block(option):
    """With input_forget or without a forget gate the f block is ignored (any values give the
    same outputs) and gets exactly zero gradients, layer norm's included."""
    case = variant_case("lstm", np.float64, seed=8, seq=True)
    kw = dict(variant_params(case, peepholes=True, layer_norm=True), **option)
    H = case.H
    f_block = slice(H, 2 * H)
    res = lstmcore.forward(**case.fwd, **case.opts, **kw, training=True)
    g = lstmcore.backward(res.cache, **case.grads)
    for name, arr in (("dw_x", g.dw_x), ("dw_h", g.dw_h), ("db", g.db), ("db_h", g.db_h)):
        assert np.all(arr[..., f_block] == 0), name
    for k in range(4):
        assert np.all(g.dlayer_norm[k][f_block] == 0), f"dlayer_norm[{k}]"
    assert np.all(g.dpeepholes[1] == 0)
    other = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in case.fwd.items()}
    for name in ("w_x", "w_h", "b", "b_h"):
        other[name][..., f_block] += 3.0
    ln = tuple(v.copy() for v in kw["layer_norm"])
    for k in range(4):
        ln[k][f_block] -= 2.0
    peep = kw["peepholes"].copy()
    peep[1] += 5.0
    res2 = lstmcore.forward(**other, **case.opts, **dict(kw, layer_norm=ln, peepholes=peep))
    assert np.array_equal(res.y, res2.y) and np.array_equal(res.c_n, res2.c_n)


@pytest.mark.parametrize("isa", lstmcore.available_isas(), indirect=True)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("key", ["everything", "gru_acts_clip", "gru_rb_acts_clip", "rnn_acts_clip",
                                 "peep_proj_rev_seq"])
def test_every_isa_vs_reference(isa, key, dtype):
    """The general path is compiled per instruction set too: each one the CPU runs, against the reference."""
    case, kw, zseed = _combo_case(key, dtype)
    core_vs_reference(case, kw, seed=zseed, category=f"core-vs-ref {isa}")
