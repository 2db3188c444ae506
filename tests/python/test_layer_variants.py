"""The cell variants in the layer objects (lstmcore.LSTM / GRU / RNN with the options of
lstmcore.forward), run by the C++ stack.

Anchors:
* the composition of lstmcore.forward / lstmcore.backward calls, one per layer and
  direction, with the same options (forward, every gradient, the variants' own
  parameters included); zoneout masks from the same per-layer seeds
  (_core.stack_variant_seed), dropout masks from the cache;
* torch.nn.LSTM(proj_size=P) for the projection, forward and every gradient;
* central finite differences in float64.
Tolerances are those of conftest.py (relative norms over whole arrays).
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import TOL64, TOL_FD, check, fd_check, tol_for

import lstmcore
from lstmcore import _core

LN_NAMES = ("gain_x", "bias_x", "gain_h", "bias_h", "gain_c", "bias_c")

#: id -> (class, constructor keywords)
CASES = {
    "peepholes": (lstmcore.LSTM, dict(peepholes=True)),
    "input_forget": (lstmcore.LSTM, dict(input_forget=True)),
    "no_forget_gate": (lstmcore.LSTM, dict(forget_gate=False)),
    "clip_hard_sigmoid": (lstmcore.LSTM, dict(clip=0.8, activations=["hard_sigmoid", "tanh", "softsign"],
                                              activation_alpha=[0.3, None, None])),
    "proj": (lstmcore.LSTM, dict(proj_size=3)),
    "layer_norm": (lstmcore.LSTM, dict(layer_norm=True)),
    "zoneout": (lstmcore.LSTM, dict(zoneout=(0.3, 0.2))),
    "all_lstm": (lstmcore.LSTM, dict(peepholes=True, proj_size=2, layer_norm=True, clip=2.5, zoneout=0.25)),
    "gru": (lstmcore.GRU, dict(activations=["hard_sigmoid", "softsign"], clip=1.5)),
    "gru_reset_before": (lstmcore.GRU, dict(reset_after=False, activations=["sigmoid", "elu"], clip=1.2)),
    "rnn": (lstmcore.RNN, dict(activations=["leaky_relu"], activation_alpha=[0.1], clip=2.0)),
}

#: id -> layer keywords and whether seq_lengths are given
SETTINGS = {
    "bi_concat": (dict(bidirectional=True, merge="concat"), True),
    "bi_sum_bf": (dict(bidirectional=True, merge="sum", batch_first=True), True),
    "uni_dropout": (dict(dropout=0.4), False),
}

T, B, I, H = 5, 3, 4, 5


def make(case, dtype, setting=None, num_layers=2, seed=3, **extra):
    cls, kw = CASES[case]
    skw = SETTINGS[setting][0] if setting else {}
    return cls(I, H, num_layers=num_layers, dtype=dtype, seed=seed, **kw, **skw, **extra)


def functional_options(layer):
    """lstmcore.forward's keywords for the layer's options (without the parameters)."""
    opts = {k: v for k, v in layer.variant_options().items()
            if k not in ("peepholes", "proj_size", "layer_norm")}
    if layer.cell == "gru":
        opts["reset_after"] = layer.reset_after
    return opts


def direction_params(layer, prefix):
    p = layer.params
    out = dict(w_x=p[prefix + ".w_x"], w_h=p[prefix + ".w_h"], b=p.get(prefix + ".b"), b_h=p.get(prefix + ".b_h"))
    if layer.peepholes:
        out["peepholes"] = p[prefix + ".peepholes"]
    if layer.proj_size:
        out["w_proj"] = p[prefix + ".w_proj"]
    if layer.layer_norm:
        out["layer_norm"] = tuple(p[f"{prefix}.ln_{n}"] for n in LN_NAMES)
    return out


def prefix_of(k, d):
    return f"l{k}" + ("_reverse" if d else "")


class Inputs:
    def __init__(self, layer, seq, seed=7):
        rng = np.random.default_rng(seed)
        dt = layer.dtype
        LD, R = layer.num_layers * layer.num_directions, layer.state_size
        shape = (B, T, I) if layer.batch_first else (T, B, I)
        self.x = rng.standard_normal(shape).astype(dt)
        self.lens = np.array([T, 2, 1][:B], np.int64) if seq else None
        lstm = layer.cell == "lstm"
        self.h0 = (0.5 * rng.standard_normal((LD, B, R))).astype(dt)
        self.c0 = (0.5 * rng.standard_normal((LD, B, H))).astype(dt) if lstm else None
        yshape = shape[:2] + (layer.output_size,)
        self.dy = rng.standard_normal(yshape).astype(dt)
        self.dh_n = rng.standard_normal((LD, B, R)).astype(dt)
        self.dc_n = rng.standard_normal((LD, B, H)).astype(dt) if lstm else None
        if self.lens is not None:  # y is 0 past each length: keep dy there 0 too
            for b, n in enumerate(self.lens):
                if layer.batch_first:
                    self.dy[b, n:] = 0
                else:
                    self.dy[n:, b] = 0

    def state(self):
        return (self.h0, self.c0) if self.c0 is not None else self.h0

    def dstate(self):
        return (self.dh_n, self.dc_n) if self.dc_n is not None else self.dh_n


def compose_forward(layer, inp, training, seed=0, cache=None):
    """The layer's forward as lstmcore.forward calls; returns (y, h_n, c_n, per-(k, d) caches)."""
    L, D, R = layer.num_layers, layer.num_directions, layer.state_size
    opts = functional_options(layer)
    x = inp.x
    h_n, c_n, caches = [], [], {}
    for k in range(L):
        outs = []
        for d in range(D):
            j = k * D + d
            r = lstmcore.forward(x, **direction_params(layer, prefix_of(k, d)), h0=inp.h0[j],
                                 c0=None if inp.c0 is None else inp.c0[j], cell=layer.cell, reverse=d == 1,
                                 seq_lengths=inp.lens, batch_first=layer.batch_first, training=training,
                                 seed=_core.stack_variant_seed(seed, k, d), **opts)
            outs.append(r.y)
            h_n.append(r.h_n)
            c_n.append(r.c_n)
            caches[k, d] = r.cache
        if D == 1:
            y = outs[0]
        elif layer.merge == "sum":
            y = outs[0] + outs[1]
        else:
            y = np.concatenate(outs, axis=-1)
        assert y.shape[-1] == (R if D == 1 or layer.merge == "sum" else 2 * R)
        if training and k < L - 1 and layer.dropout > 0:
            y = y * cache.dropout_mask(k)
        x = y
    cs = None if layer.cell != "lstm" else np.stack(c_n)
    return x, np.stack(h_n), cs, caches


def compose_backward(layer, inp, caches, cache):
    """Every gradient of the layer's backward from lstmcore.backward calls."""
    L, D, R = layer.num_layers, layer.num_directions, layer.state_size
    grads, dh0, dc0 = {}, [None] * (L * D), [None] * (L * D)
    g = inp.dy
    for k in reversed(range(L)):
        parts = [g] if D == 1 else ([g, g] if layer.merge == "sum" else [g[..., :R], g[..., R:]])
        dx = None
        for d in range(D):
            j = k * D + d
            r = lstmcore.backward(caches[k, d], np.ascontiguousarray(parts[d]), inp.dh_n[j],
                                  None if inp.dc_n is None else inp.dc_n[j])
            dx = r.dx if dx is None else dx + r.dx
            dh0[j], dc0[j] = r.dh0, r.dc0
            p = prefix_of(k, d)
            for name, v in (("w_x", r.dw_x), ("w_h", r.dw_h), ("b", r.db), ("b_h", r.db_h),
                            ("peepholes", r.dpeepholes), ("w_proj", r.dw_proj)):
                if v is not None:
                    grads[f"{p}.{name}"] = v
            if r.dlayer_norm is not None:
                for n, v in zip(LN_NAMES, r.dlayer_norm):
                    grads[f"{p}.ln_{n}"] = v
        if k > 0 and layer.dropout > 0:
            dx = dx * cache.dropout_mask(k - 1)
        g = dx
    dc = None if layer.cell != "lstm" else np.stack(dc0)
    return g, np.stack(dh0), dc, grads


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("case", list(CASES))
def test_layer_equals_composition(case, setting, dtype):
    layer = make(case, dtype, setting)
    inp = Inputs(layer, SETTINGS[setting][1])
    tol = tol_for(dtype)
    cat = (f"layer-vs-composition {np.dtype(dtype).name}", case)
    seed = 1234567

    # inference (zoneout: the expectation)
    y, state = layer(inp.x, inp.state(), inp.lens)
    wy, wh, wc, _ = compose_forward(layer, inp, training=False)
    h, c = state if layer.cell == "lstm" else (state, None)
    check("y (inference)", y, wy, tol, *cat)
    check("h_n (inference)", h, wh, tol, *cat)
    check("c_n (inference)", c, wc, tol, *cat)

    # training: masks from the same seeds
    y, state, cache = layer.forward(inp.x, inp.state(), inp.lens, training=True, dropout_seed=seed)
    wy, wh, wc, caches = compose_forward(layer, inp, training=True, seed=seed, cache=cache)
    h, c = state if layer.cell == "lstm" else (state, None)
    check("y", y, wy, tol, *cat)
    check("h_n", h, wh, tol, *cat)
    check("c_n", c, wc, tol, *cat)
    dx, dstate = layer.backward(cache, inp.dy, inp.dstate())
    wdx, wdh0, wdc0, wgrads = compose_backward(layer, inp, caches, cache)
    dh0, dc0 = dstate if layer.cell == "lstm" else (dstate, None)
    check("dx", dx, wdx, tol, *cat)
    check("dh0", dh0, wdh0, tol, *cat)
    check("dc0", dc0, wdc0, tol, *cat)
    assert sorted(layer.grads) == sorted(wgrads) == sorted(layer.param_names())
    for name in layer.param_names():
        check(name, layer.grads[name], wgrads[name], tol, *cat)


def test_names_and_shapes():
    layer = lstmcore.LSTM(4, 6, num_layers=2, bidirectional=True, peepholes=True, proj_size=3, layer_norm=True,
                          dtype=np.float64)
    assert layer.output_size == 6 and layer.state_size == 3
    shapes = {n: layer.params[n].shape for n in layer.param_names()}
    assert shapes["l0.w_x"] == (4, 24) and shapes["l1.w_x"] == (6, 24) and shapes["l1_reverse.w_h"] == (3, 24)
    assert shapes["l0.peepholes"] == (3, 6) and shapes["l1_reverse.w_proj"] == (6, 3)
    assert shapes["l0.ln_gain_x"] == (24,) and shapes["l0.ln_bias_c"] == (6,)
    assert np.all(layer.params["l1.ln_gain_h"] == 1) and np.all(layer.params["l1.ln_bias_x"] == 0)
    bound = 1 / np.sqrt(6)
    for n in ("l0.peepholes", "l1_reverse.w_proj"):
        assert np.abs(layer.params[n]).max() <= bound and np.abs(layer.params[n]).max() > bound / 2
    summed = lstmcore.LSTM(4, 6, num_layers=2, bidirectional=True, proj_size=3, merge="sum")
    assert summed.param_shape("l1.w_x") == (3, 24) and summed.output_size == 3
    y, (h, c) = layer(np.zeros((5, 2, 4)))
    assert y.shape == (5, 2, 6) and h.shape == (4, 2, 3) and c.shape == (4, 2, 6)


def test_zoneout_masks_per_layer_and_call():
    layer = make("zoneout", np.float64, "bi_concat")
    inp = Inputs(layer, False)
    y1, _, c1 = layer.forward(inp.x, inp.state(), training=True, dropout_seed=5)
    y2, _, c2 = layer.forward(inp.x, inp.state(), training=True, dropout_seed=5)
    y3, _, _ = layer.forward(inp.x, inp.state(), training=True)
    y4, _, _ = layer.forward(inp.x, inp.state(), training=True)
    assert np.array_equal(y1, y2)
    assert not np.array_equal(y3, y4)
    seeds = {_core.stack_variant_seed(5, k, d) for k in range(2) for d in range(2)}
    assert len(seeds) == 4
    y_inf, _ = layer(inp.x, inp.state())
    assert not np.array_equal(y1, y_inf)


@pytest.mark.parametrize("case", ["all_lstm", "zoneout", "proj", "gru", "rnn"])
def test_step_equals_sequence(case):
    layer = make(case, np.float64)
    inp = Inputs(layer, False)
    y, state = layer(inp.x, inp.state())
    s = inp.state()
    for t in range(T):
        y_t, s = layer.step(inp.x[t], s)
        check(f"y[{t}]", y_t, y[t], TOL64)
    for got, want in zip(s if layer.cell == "lstm" else [s], state if layer.cell == "lstm" else [state]):
        check("state", got, want, TOL64)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_proj_against_torch(dtype):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    layer = lstmcore.LSTM(I, 7, num_layers=2, bidirectional=True, proj_size=3, dtype=dtype, seed=11)
    mod = layer.to_torch()
    assert mod.proj_size == 3
    rng = np.random.default_rng(2)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0 = rng.standard_normal((4, B, 3)).astype(dtype)
    c0 = rng.standard_normal((4, B, 7)).astype(dtype)
    dy = rng.standard_normal((T, B, 6)).astype(dtype)
    dh = rng.standard_normal((4, B, 3)).astype(dtype)
    dc = rng.standard_normal((4, B, 7)).astype(dtype)
    tx, th0, tc0 = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    ty, (th, tc) = mod(tx, (th0, tc0))
    ((ty * torch.tensor(dy)).sum() + (th * torch.tensor(dh)).sum() + (tc * torch.tensor(dc)).sum()).backward()

    tol = tol_for(dtype)
    cat = (f"layer-vs-torch {np.dtype(dtype).name}", "proj_size")
    y, (h, c), cache = layer.forward(x, (h0, c0), training=True)
    check("y", y, ty.detach().numpy(), tol, *cat)
    check("h_n", h, th.detach().numpy(), tol, *cat)
    check("c_n", c, tc.detach().numpy(), tol, *cat)
    dx, (dh0, dc0) = layer.backward(cache, dy, (dh, dc))
    check("dx", dx, tx.grad.numpy(), tol, *cat)
    check("dh0", dh0, th0.grad.numpy(), tol, *cat)
    check("dc0", dc0, tc0.grad.numpy(), tol, *cat)
    tp = dict(mod.named_parameters())
    for k in range(2):
        for d in range(2):
            sfx, p = f"_l{k}" + ("_reverse" if d else ""), prefix_of(k, d)
            for ours, theirs, tr in (("w_x", "weight_ih", True), ("w_h", "weight_hh", True), ("b", "bias_ih", False),
                                     ("b_h", "bias_hh", False), ("w_proj", "weight_hr", True)):
                want = tp[theirs + sfx].grad.numpy()
                check(f"{p}.{ours}", layer.grads[f"{p}.{ours}"], want.T if tr else want, tol, *cat)

    back = lstmcore.LSTM.from_torch(mod)
    assert back.proj_size == 3
    for name in layer.param_names():
        assert np.array_equal(back.params[name], layer.params[name]), name


def test_finite_differences():
    layer = lstmcore.LSTM(3, 5, num_layers=2, bidirectional=True, peepholes=True, proj_size=3, layer_norm=True,
                          dtype=np.float64, seed=9)
    rng = np.random.default_rng(4)
    for name in layer.param_names():  # move layer norm off its identity start
        if "ln_" in name:
            layer.params[name] = layer.params[name] + 0.3 * rng.standard_normal(layer.params[name].shape)
    x = rng.standard_normal((4, 2, 3))
    h0 = rng.standard_normal((4, 2, 3))
    c0 = rng.standard_normal((4, 2, 5))
    dy = rng.standard_normal((4, 2, 6))
    dh = rng.standard_normal((4, 2, 3))
    dc = rng.standard_normal((4, 2, 5))
    lens = np.array([4, 3])

    def loss():
        y, (h, c) = layer(x, (h0, c0), lens)
        return float(np.sum(y * dy) + np.sum(h * dh) + np.sum(c * dc))

    _, _, cache = layer.forward(x, (h0, c0), lens, training=True)
    dx, (dh0, dc0) = layer.backward(cache, dy, (dh, dc))
    for name, arr, g in (("x", x, dx), ("h0", h0, dh0), ("c0", c0, dc0)):
        fd_check(name, loss, arr, g, rng, max_entries=16, tol=TOL_FD, category="layer-vs-FD", key="peep+proj+ln")
    for name in layer.param_names():
        fd_check(name, loss, layer.params[name], layer.grads[name], rng, max_entries=12, tol=TOL_FD,
                 category="layer-vs-FD", key="peep+proj+ln")


@pytest.mark.parametrize("case", ["all_lstm", "gru_reset_before", "rnn", "clip_hard_sigmoid"])
def test_save_load(case, tmp_path):
    layer = make(case, np.float64, "bi_sum_bf")
    path = tmp_path / "layer.npz"
    layer.save(path)
    back = lstmcore.load(path)
    assert type(back) is type(layer) and back.variant_options() == layer.variant_options()
    assert back.config() == layer.config() and repr(back) == repr(layer)
    for name in layer.param_names():
        assert np.array_equal(back.params[name], layer.params[name])
    inp = Inputs(layer, True)
    y1, _ = layer(inp.x, inp.state(), inp.lens)
    y2, _ = back(inp.x, inp.state(), inp.lens)
    assert np.array_equal(y1, y2)


def test_errors():
    for cls in (lstmcore.GRU, lstmcore.RNN):
        for name, value in (("peepholes", True), ("proj_size", 2), ("layer_norm", True), ("zoneout", 0.1),
                            ("input_forget", True), ("forget_gate", False)):
            with pytest.raises(ValueError, match=name):
                cls(3, 4, **{name: value})
    with pytest.raises(TypeError, match="nonsense"):
        lstmcore.GRU(3, 4, nonsense=1)
    bad = [dict(proj_size=-1), dict(proj_size=1.5), dict(zoneout=1.5), dict(zoneout=(0.1, 0.2, 0.3)), dict(clip=-1),
           dict(clip=0), dict(peepholes="yes"), dict(layer_norm=1), dict(activations=["sigmoid", "tanh"]),
           dict(activations=["sigmoid", "tanh", "nope"]), dict(activation_alpha=[1, 2, 3]),
           dict(input_forget=True, forget_gate=False)]
    for kw in bad:
        with pytest.raises(ValueError, match=next(iter(kw))):
            lstmcore.LSTM(3, 4, **kw)
    with pytest.raises(ValueError, match="activations"):
        lstmcore.RNN(3, 4, activations=["tanh", "tanh"])
    layer = lstmcore.LSTM(3, 4, proj_size=2)
    with pytest.raises(ValueError, match="w_proj"):
        layer.params["l0.w_proj"] = np.zeros((4, 3), np.float32)
        layer(np.zeros((2, 1, 3), np.float32))
    layer = lstmcore.LSTM(3, 4, peepholes=True)
    del layer.params["l0.peepholes"]
    with pytest.raises(KeyError, match="peepholes"):
        layer(np.zeros((2, 1, 3), np.float32))
    for what in ("to_torch", "to_keras", "to_onnx"):
        with pytest.raises(ValueError, match="layer_norm"):
            getattr(lstmcore.LSTM(3, 4, layer_norm=True), what)()
    with pytest.raises(ValueError, match="clip"):
        lstmcore.GRU(3, 4, clip=1.0).to_torch()
    a = lstmcore.LSTM(3, 4, peepholes=True)
    b = lstmcore.LSTM(3, 4)
    _, _, cache = a.forward(np.zeros((2, 1, 3), np.float32), training=True)
    with pytest.raises(ValueError, match="configuration"):
        b.backward(cache, np.zeros((2, 1, 4), np.float32))
