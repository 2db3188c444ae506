"""lstmcore.torch's cell variants (what torch.nn lacks): against lstmcore's NumPy API with the same
options (one layer: lstmcore.forward / backward; stacks: the lstmcore.LSTM / GRU / RNN layer
objects, whose stack runs in C++), and torch.autograd.gradcheck (central differences, float64)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import lstmcore  # noqa: E402
import lstmcore.torch as lt  # noqa: E402
from conftest import TOL32, TOL64  # noqa: E402

T, B, I, H = 5, 3, 4, 6

VARIANTS = {  # id: (cell, keywords)
    "lstm-peepholes": ("lstm", dict(peepholes=True)),
    "lstm-layer_norm": ("lstm", dict(layer_norm=True)),
    "lstm-proj-peepholes-ln": ("lstm", dict(proj_size=3, peepholes=True, layer_norm=True)),
    "lstm-input_forget": ("lstm", dict(input_forget=True)),
    "lstm-no_forget_gate": ("lstm", dict(forget_gate=False, peepholes=True)),
    "lstm-1997": ("lstm", dict(activations=["sigmoid", "scaled_tanh", "scaled_tanh"],
                               activation_alpha=[None, 2.0, 1.0], activation_beta=[None, 0.5, 0.5])),
    "lstm-hard_sigmoid-clip": ("lstm", dict(activations=["hard_sigmoid", "tanh", "softsign"], clip=1.5)),
    "lstm-zoneout": ("lstm", dict(zoneout=(0.3, 0.2), peepholes=True)),
    "gru-reset_before": ("gru", dict(reset_after=False)),
    "gru-activations-clip": ("gru", dict(activations=["sigmoid", "elu"], activation_alpha=[None, 0.7], clip=2.0)),
    "rnn-leaky_relu": ("rnn_tanh", dict(activations=["leaky_relu"], activation_alpha=[0.05])),
    "rnn_relu-clip": ("rnn_relu", dict(clip=1.0)),
}
CLASSES = {"lstm": lt.LSTM, "gru": lt.GRU, "rnn_tanh": lt.RNN, "rnn_relu": lt.RNN}
CELL_CLASSES = {"lstm": lt.LSTMCell, "gru": lt.GRUCell, "rnn_tanh": lt.RNNCell, "rnn_relu": lt.RNNCell}
NUMPY_LAYERS = {"lstm": lstmcore.LSTM, "gru": lstmcore.GRU, "rnn_tanh": lstmcore.RNN, "rnn_relu": lstmcore.RNN}


def rel(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    n = np.linalg.norm(want)
    return float(np.linalg.norm(got - want) / (n if n > 0 else 1.0))


def module(variant, dtype=torch.float64, cls_table=CLASSES, **more):
    cell, kw = VARIANTS[variant]
    kw = dict(kw, **more)
    if cell.startswith("rnn"):
        kw["nonlinearity"] = cell[4:]
    torch.manual_seed(2)
    m = cls_table[cell](I, H, dtype=dtype, **kw)
    with torch.no_grad():  # layer norm: gains and biases away from 1 and 0, so their role shows
        for name, p in m.named_parameters():
            if name.startswith("ln_"):
                p.add_(0.3 * torch.randn(p.shape, dtype=dtype))
    return m, cell, kw


def numpy_options(cell, kw, m, suffix=""):
    """lstmcore.forward's keywords for the module's variant, with its parameters as NumPy arrays."""
    opts = {k: v for k, v in kw.items() if k not in ("peepholes", "layer_norm", "proj_size", "nonlinearity")}
    p = dict(m.named_parameters())
    if kw.get("peepholes"):
        opts["peepholes"] = p[f"weight_ch{suffix}"].detach().numpy()
    if kw.get("proj_size"):
        opts["w_proj"] = p[f"weight_hr{suffix}"].detach().numpy().T.copy()
    if kw.get("layer_norm"):
        opts["layer_norm"] = tuple(p[f"{n}{suffix}"].detach().numpy() for n in
                                   ("ln_weight_ih", "ln_bias_ih", "ln_weight_hh", "ln_bias_hh", "ln_weight_c",
                                    "ln_bias_c"))
    return opts


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_one_layer_against_numpy_api(variant, dtype):
    """One layer, one direction, with an initial state: forward and every gradient against
    lstmcore.forward / backward called with the same options (zoneout: the same seed, drawn from
    torch's generator as the module draws it)."""
    m, cell, kw = module(variant, dtype)
    m.train()
    g = torch.Generator().manual_seed(4)
    x = torch.randn(T, B, I, generator=g, dtype=dtype, requires_grad=True)
    R = kw.get("proj_size") or H
    h0 = torch.randn(1, B, R, generator=g, dtype=dtype, requires_grad=True)
    c0 = torch.randn(1, B, H, generator=g, dtype=dtype, requires_grad=True)
    hx = (h0, c0) if cell == "lstm" else h0
    torch.manual_seed(9)
    y, state = m(x, hx)
    dy = torch.randn(y.shape, generator=g, dtype=dtype)
    dh = torch.randn(h0.shape, generator=g, dtype=dtype)
    loss = (y * dy).sum() + ((state[0] if cell == "lstm" else state) * dh).sum()
    names = [n for n, _ in m.named_parameters()]
    got = torch.autograd.grad(loss, [x, h0] + ([c0] if cell == "lstm" else []) + list(m.parameters()))

    torch.manual_seed(9)
    seed = int(torch.randint(0, 2**62, (), dtype=torch.int64)) if kw.get("zoneout") else None
    p = {n: v.detach().numpy() for n, v in m.named_parameters()}
    opts = numpy_options(cell, kw, m, "_l0")
    res = lstmcore.forward(x.detach().numpy(), p["weight_ih_l0"].T, p["weight_hh_l0"].T, p["bias_ih_l0"],
                           p["bias_hh_l0"], h0.detach().numpy()[0], c0.detach().numpy()[0] if cell == "lstm" else None,
                           cell=cell, training=True, seed=seed, **opts)
    want = lstmcore.backward(res.cache, dy.numpy(), dh.numpy()[0])
    tol = TOL64 if dtype == torch.float64 else TOL32
    assert rel(y.detach(), res.y) <= tol
    assert rel(state[0 if cell == "lstm" else ...].detach()[0], res.h_n) <= tol
    grads = dict(zip(["x", "h0"] + (["c0"] if cell == "lstm" else []) + names, got))
    pairs = [("x", want.dx), ("h0", want.dh0[None]), ("weight_ih_l0", want.dw_x.T), ("weight_hh_l0", want.dw_h.T),
             ("bias_ih_l0", want.db), ("bias_hh_l0", want.db_h)]
    if cell == "lstm":
        pairs.append(("c0", want.dc0[None]))
    if kw.get("peepholes"):
        pairs.append(("weight_ch_l0", want.dpeepholes))
    if kw.get("proj_size"):
        pairs.append(("weight_hr_l0", want.dw_proj.T))
    if kw.get("layer_norm"):
        pairs += list(zip([f"{n}_l0" for n in ("ln_weight_ih", "ln_bias_ih", "ln_weight_hh", "ln_bias_hh",
                                               "ln_weight_c", "ln_bias_c")], want.dlayer_norm))
    assert sorted(n for n, _ in pairs) == sorted(grads)
    for name, w in pairs:
        # the same core computes both sides: equal up to the order of float operations
        assert rel(grads[name], w) <= tol, (name, rel(grads[name], w))


STACK_VARIANTS = [v for v in VARIANTS if v != "lstm-zoneout"]


@pytest.mark.parametrize("merge", ["concat", "sum"])
@pytest.mark.parametrize("variant", STACK_VARIANTS)
def test_stack_against_numpy_layer_object(variant, merge):
    """Two layers, both directions, packed-style lengths: against lstmcore's own stack (layer object)
    with the same parameters; outputs, final state and every gradient."""
    m, cell, kw = module(variant, num_layers=2, bidirectional=True, merge=merge, batch_first=True)
    m.train()
    layer_kw = {k: v for k, v in kw.items() if k not in ("nonlinearity", "num_layers", "bidirectional", "merge",
                                                         "batch_first")}
    family = NUMPY_LAYERS[cell]
    extra = {"nonlinearity": cell[4:]} if cell.startswith("rnn") else {}
    np_layer = family(I, H, num_layers=2, bidirectional=True, merge=merge, batch_first=True, dtype=np.float64,
                      **extra, **layer_kw)
    rename = {"weight_ih": "w_x", "weight_hh": "w_h", "bias_ih": "b", "bias_hh": "b_h", "weight_hr": "w_proj",
              "weight_ch": "peepholes", "ln_weight_ih": "ln_gain_x", "ln_bias_ih": "ln_bias_x",
              "ln_weight_hh": "ln_gain_h", "ln_bias_hh": "ln_bias_h", "ln_weight_c": "ln_gain_c",
              "ln_bias_c": "ln_bias_c"}
    transposed = {"w_x", "w_h", "w_proj"}

    def np_name(name):
        kind, rest = name.rsplit("_l", 1)
        k, _, reverse = rest.partition("_")
        new = rename[kind]
        return f"l{k}{'_reverse' if reverse else ''}.{new}", new in transposed

    for name, p in m.named_parameters():
        key, tr = np_name(name)
        v = p.detach().numpy()
        np_layer.params[key] = np.ascontiguousarray(v.T if tr else v)
    assert len(np_layer.params) == len(list(m.parameters()))
    g = torch.Generator().manual_seed(5)
    x = torch.randn(B, T, I, generator=g, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([3, T, 1])
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, state = m(packed)
    y, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
    dy = torch.randn(y.shape, generator=g, dtype=torch.float64)
    h_n = state[0] if cell == "lstm" else state
    dh = torch.randn(h_n.shape, generator=g, dtype=torch.float64)
    loss = (y * dy).sum() + (h_n * dh).sum()
    got = torch.autograd.grad(loss, [x, *m.parameters()])

    y_np, state_np, cache = np_layer.forward(x.detach().numpy(), seq_lengths=lengths.numpy(), training=True)
    assert rel(y.detach(), y_np) <= TOL64
    assert rel(h_n.detach(), state_np[0] if cell == "lstm" else state_np) <= TOL64
    dstate = (dh.numpy(), None) if cell == "lstm" else dh.numpy()
    dx, _ = np_layer.backward(cache, dy.numpy(), dstate)
    assert rel(got[0], dx) <= TOL64
    for (name, _), grad in zip(m.named_parameters(), got[1:]):
        key, tr = np_name(name)
        want = np_layer.grads[key]
        assert rel(grad, want.T if tr else want) <= TOL64, name


GRADCHECK = [(v, extra) for v in VARIANTS for extra in ({}, dict(num_layers=2, bidirectional=True))
             if v not in ("lstm-hard_sigmoid-clip", "rnn_relu-clip")]  # kinks: see below


def _gradcheck(m, inputs, hx_shapes, fast_mode):
    names = [n for n, _ in m.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in m.parameters()]

    def f(x, *rest):
        hx, ps = rest[:len(hx_shapes)], rest[len(hx_shapes):]
        torch.manual_seed(0)  # zoneout: the same masks in every evaluation
        state = None if not hx else (tuple(hx) if len(hx) == 2 else hx[0])
        out = torch.func.functional_call(m, dict(zip(names, ps)), (x,) if state is None else (x, state))
        y, st = out
        return (y, *(st if isinstance(st, tuple) else (st,)))

    return torch.autograd.gradcheck(f, (*inputs, *params), eps=1e-6, atol=1e-8, rtol=1e-6, fast_mode=fast_mode)


@pytest.mark.parametrize("variant,extra", GRADCHECK,
                         ids=[f"{v}{'-2x2' if e else ''}" for v, e in GRADCHECK])
def test_gradcheck(variant, extra):
    """torch.autograd.gradcheck (central differences in float64) on the module: input, initial state
    and every parameter. (clip and hard_sigmoid have kinks where finite differences straddle the
    corner; they are checked against the NumPy API above, whose own tests check them against
    finite differences away from the kinks.) One layer: every Jacobian entry; two layers and
    directions: gradcheck's fast mode (a random projection of the Jacobian), to stay quick."""
    m, cell, kw = module(variant, **extra)
    m.train()
    D = 2 if extra.get("bidirectional") else 1
    L = extra.get("num_layers", 1)
    R = kw.get("proj_size") or H
    g = torch.Generator().manual_seed(6)
    x = torch.randn(3, 2, I, generator=g, dtype=torch.float64, requires_grad=True)
    hx = [torch.randn(L * D, 2, R, generator=g, dtype=torch.float64, requires_grad=True)]
    if cell == "lstm":
        hx.append(torch.randn(L * D, 2, H, generator=g, dtype=torch.float64, requires_grad=True))
    assert _gradcheck(m, [x, *hx], hx, fast_mode=bool(extra))


@pytest.mark.parametrize("variant", ["lstm-peepholes", "lstm-layer_norm", "gru-reset_before", "rnn-leaky_relu",
                                     "lstm-zoneout"])
def test_cells_with_variants_equal_one_step_layers(variant):
    """LSTMCell & co. with a variant: one step equals the one-layer module on a one-step sequence."""
    cell_m, cell, kw = module(variant, cls_table=CELL_CLASSES)
    layer_m, _, _ = module(variant)
    with torch.no_grad():
        for name, p in cell_m.named_parameters():
            p.copy_(getattr(layer_m, f"{name}_l0"))
    cell_m.train()
    layer_m.train()
    x = torch.randn(B, I, dtype=torch.float64, requires_grad=True)
    h = torch.randn(B, H, dtype=torch.float64)
    hx = (h, torch.randn(B, H, dtype=torch.float64)) if cell == "lstm" else h
    torch.manual_seed(3)
    out = cell_m(x, hx)
    torch.manual_seed(3)
    y, st = layer_m(x[None], tuple(t[None] for t in hx) if cell == "lstm" else hx[None])
    got = out[0] if cell == "lstm" else out
    assert rel(got.detach(), y[0].detach()) <= TOL64
    if cell == "lstm":
        assert rel(out[1].detach(), st[1][0].detach()) <= TOL64
    gx1, = torch.autograd.grad(got.sum(), x)
    gx2, = torch.autograd.grad(y.sum(), x)
    assert rel(gx1, gx2) <= TOL64


def test_zoneout_random_in_train_expectation_in_eval():
    m, _, _ = module("lstm-zoneout")
    x = torch.randn(T, B, I, dtype=torch.float64)
    m.train()
    with torch.no_grad():
        torch.manual_seed(1)
        a = m(x)[0]
        torch.manual_seed(1)
        b = m(x)[0]
        torch.manual_seed(2)
        c = m(x)[0]
    assert torch.equal(a, b) and not torch.equal(a, c)
    m.eval()
    with torch.no_grad():
        e1, e2 = m(x)[0], m(x)[0]
    assert torch.equal(e1, e2)
    y = m(x.requires_grad_())[0]  # eval() without no_grad: the expectation, and a backward is refused
    assert torch.equal(y.detach(), e1)
    with pytest.raises(RuntimeError, match="zoneout: no gradients in eval"):
        y.sum().backward()
    c, _, _ = module("lstm-zoneout", cls_table=CELL_CLASSES)
    h, _ = c.eval()(x[0])
    with pytest.raises(RuntimeError, match="zoneout: no gradients in eval"):
        h.sum().backward()
