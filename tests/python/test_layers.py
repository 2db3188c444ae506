"""The layer objects lstmcore.LSTM / GRU / RNN: stacks, directions, dropout, step, save/load.

Three independent anchors:
* PyTorch (torch.nn.LSTM / GRU / RNN, packed sequences for seq_lengths) for forward and
  every gradient, num_layers 1 and 3, one and two directions, float32 and float64;
* the pure-NumPy reference (lstmcore.reference) composed layer by layer in this file,
  for every variant (GRU reset_after=False included) and for dropout with the cache's masks;
* central finite differences in float64 with the dropout mask held fixed.
Tolerances are those of conftest.py (relative norms over whole arrays).
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import (FD_EPS, LAYER_VARIANTS, TOL32, TOL64, TOL_FD, TORCH_VARIANT_IDS, check, fd_check, layer_class,
                      reference, tol_for)

import lstmcore

#: option sets: (T, B, I, H), batch_first, seq_lengths, initial state given, final-state grads given
OPTIONS = {
    "plain": dict(sizes=(7, 3, 5, 6), batch_first=False, seq=False, state=False),
    "packed": dict(sizes=(9, 4, 3, 5), batch_first=False, seq=True, state=True),
    "packed_bf": dict(sizes=(6, 5, 4, 7), batch_first=True, seq=True, state=True),
}


def make_layer(variant, I, H, dtype, seed=0, **kw):
    cls, extra = layer_class(variant)
    return cls(I, H, dtype=dtype, seed=seed, **extra, **kw)


class Inputs:
    """Random x, state, seq_lengths and output gradients for one layer call."""

    def __init__(self, layer, T, B, seq=False, state=True, seed=5):
        rng = np.random.default_rng(seed)
        dt = layer.dtype
        D, L, H = layer.num_directions, layer.num_layers, layer.hidden_size
        shape = (B, T, layer.input_size) if layer.batch_first else (T, B, layer.input_size)
        self.x = rng.standard_normal(shape).astype(dt)
        self.lens = None
        if seq:
            lens = rng.integers(1, T + 1, size=B)
            lens[0] = T
            lens[-1] = 1
            self.lens = lens.astype(np.int64)
        S = (L * D, B, H)
        lstm = layer.cell == "lstm"
        self.h0 = (0.5 * rng.standard_normal(S)).astype(dt) if state else None
        self.c0 = (0.5 * rng.standard_normal(S)).astype(dt) if (state and lstm) else None
        y_shape = shape[:2] + (D * H,)
        self.dy = rng.standard_normal(y_shape).astype(dt)
        self.dh_n = rng.standard_normal(S).astype(dt)
        self.dc_n = rng.standard_normal(S).astype(dt) if lstm else None
        self.lstm = lstm

    def state(self):
        if self.h0 is None:
            return None
        return (self.h0, self.c0) if self.lstm else self.h0

    def dstate(self):
        return (self.dh_n, self.dc_n) if self.lstm else self.dh_n


def split_state(state, lstm):
    return state if lstm else (state, None)


# ----------------------------------------------------------------------------------------------
# the reference: lstmcore.reference composed layer by layer (float64)


def ref_stack(layer, x, h0, c0, lens, masks=None):
    """Forward of the stack with lstmcore.reference; masks[k] multiplies layer k's output."""
    L, D, H = layer.num_layers, layer.num_directions, layer.hidden_size
    B = x.shape[0] if layer.batch_first else x.shape[1]
    p = {k: np.asarray(v, np.float64) for k, v in layer.params.items()}
    h_n = np.zeros((L * D, B, H))
    c_n = np.zeros((L * D, B, H)) if layer.cell == "lstm" else None
    caches, inp = [], np.asarray(x, np.float64)
    for k in range(L):
        outs = []
        for d in range(D):
            j, pre = k * D + d, f"l{k}" + ("_reverse" if d else "")
            r = reference.forward(inp, p[pre + ".w_x"], p[pre + ".w_h"], p.get(pre + ".b"), p.get(pre + ".b_h"),
                                  None if h0 is None else h0[j], None if c0 is None else c0[j], cell=layer.cell,
                                  reverse=bool(d), seq_lengths=lens, batch_first=layer.batch_first,
                                  reset_after=layer.reset_after)
            outs.append(r.y)
            h_n[j] = r.h_n
            if c_n is not None:
                c_n[j] = r.c_n
            caches.append(r.cache)
        inp = np.concatenate(outs, axis=-1)
        if k < L - 1 and masks is not None:
            inp = inp * masks[k]
    return inp, h_n, c_n, caches


def ref_stack_backward(layer, caches, masks, dy, dh_n, dc_n):
    """(dx, dh0, dc0, grads) of the stack from the reference's per-layer backward."""
    L, D, H = layer.num_layers, layer.num_directions, layer.hidden_size
    dh0 = np.zeros_like(dh_n)
    dc0 = np.zeros_like(dh_n) if layer.cell == "lstm" else None
    grads, g_out = {}, dy
    for k in reversed(range(L)):
        dx = None
        for d in range(D):
            j, pre = k * D + d, f"l{k}" + ("_reverse" if d else "")
            g = reference.backward(caches[j], g_out[..., d * H:(d + 1) * H], dh_n[j],
                                   None if dc_n is None else dc_n[j])
            dx = g.dx if dx is None else dx + g.dx
            dh0[j] = g.dh0
            if dc0 is not None:
                dc0[j] = g.dc0
            grads[pre + ".w_x"], grads[pre + ".w_h"] = g.dw_x, g.dw_h
            if layer.bias:
                grads[pre + ".b"], grads[pre + ".b_h"] = g.db, g.db_h
        g_out = dx * masks[k - 1] if (k > 0 and masks is not None) else dx
    return g_out, dh0, dc0, grads


def masks_of(cache, layer):
    if layer.dropout == 0 or layer.num_layers == 1:
        return None
    return [np.asarray(cache.dropout_mask(k), np.float64) for k in range(layer.num_layers - 1)]


def run_ours(layer, inp, training=True, dropout_seed=None):
    y, state, cache = layer.forward(inp.x, inp.state(), inp.lens, training=training, dropout_seed=dropout_seed)
    return y, state, cache


def loss_value(layer, inp, y, state):
    h_n, c_n = split_state(state, layer.cell == "lstm")
    L = float(np.sum(np.asarray(y, np.float64) * inp.dy)) + float(np.sum(np.asarray(h_n, np.float64) * inp.dh_n))
    if c_n is not None:
        L += float(np.sum(np.asarray(c_n, np.float64) * inp.dc_n))
    return L


# ----------------------------------------------------------------------------------------------
# PyTorch


def torch_reference(layer, inp):
    """torch (in float64, fed the layer's exact weights) on inp: (y, h_n, c_n, grads dict)."""
    torch = pytest.importorskip("torch")
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    mod = lstmcore.convert.to_torch(layer).double()
    T = inp.x.shape[1] if layer.batch_first else inp.x.shape[0]
    B = inp.x.shape[0] if layer.batch_first else inp.x.shape[1]
    S = (layer.num_layers * layer.num_directions, B, layer.hidden_size)

    def t(a, grad=False):
        return torch.tensor(np.asarray(a, np.float64), requires_grad=grad)

    x = t(inp.x, True)
    h0 = t(inp.h0 if inp.h0 is not None else np.zeros(S), True)
    c0 = t(inp.c0 if inp.c0 is not None else np.zeros(S), True)
    hx = (h0, c0) if layer.cell == "lstm" else h0
    if inp.lens is not None:
        packed = pack_padded_sequence(x, torch.tensor(inp.lens), batch_first=layer.batch_first,
                                      enforce_sorted=False)
        out, hn = mod(packed, hx)
        y, _ = pad_packed_sequence(out, batch_first=layer.batch_first, total_length=T)
    else:
        y, hn = mod(x, hx)
    h_n, c_n = hn if layer.cell == "lstm" else (hn, None)
    loss = (y * t(inp.dy)).sum() + (h_n * t(inp.dh_n)).sum()
    if c_n is not None:
        loss = loss + (c_n * t(inp.dc_n)).sum()
    loss.backward()
    grads = {}
    named = dict(mod.named_parameters())
    for k in range(layer.num_layers):
        for d in range(layer.num_directions):
            sfx, pre = f"_l{k}" + ("_reverse" if d else ""), f"l{k}" + ("_reverse" if d else "")
            grads[pre + ".w_x"] = named["weight_ih" + sfx].grad.numpy().T
            grads[pre + ".w_h"] = named["weight_hh" + sfx].grad.numpy().T
            if layer.bias:
                grads[pre + ".b"] = named["bias_ih" + sfx].grad.numpy()
                grads[pre + ".b_h"] = named["bias_hh" + sfx].grad.numpy()
    npy = lambda v: None if v is None else v.detach().numpy()  # noqa: E731
    return dict(y=npy(y), h_n=npy(h_n), c_n=npy(c_n), dx=x.grad.numpy(), dh0=h0.grad.numpy(),
                dc0=c0.grad.numpy() if layer.cell == "lstm" else None, grads=grads)


@pytest.mark.parametrize("opt", list(OPTIONS))
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("variant", TORCH_VARIANT_IDS)
def test_against_torch(variant, dtype, num_layers, bidirectional, opt):
    o = OPTIONS[opt]
    T, B, I, H = o["sizes"]
    layer = make_layer(variant, I, H, dtype, seed=num_layers, num_layers=num_layers, bidirectional=bidirectional,
                       batch_first=o["batch_first"])
    inp = Inputs(layer, T, B, seq=o["seq"], state=o["state"])
    want = torch_reference(layer, inp)  # float64 on the layer's (possibly float32) values
    y, state, cache = run_ours(layer, inp)
    h_n, c_n = split_state(state, layer.cell == "lstm")
    dx, dstate0 = layer.backward(cache, inp.dy, inp.dstate())
    dh0, dc0 = split_state(dstate0, layer.cell == "lstm")
    tol = tol_for(dtype)
    key = f"{variant}/{np.dtype(dtype).name}"
    for name, got in (("y", y), ("h_n", h_n), ("c_n", c_n), ("dx", dx), ("dh0", dh0), ("dc0", dc0)):
        check(name, got, want[name], tol, "layers vs torch", key)
    assert sorted(layer.grads) == sorted(layer.params)
    for name, g in layer.grads.items():
        assert g.dtype == layer.dtype and g.shape == layer.params[name].shape
        check(f"grads[{name!r}]", g, want["grads"][name], tol, "layers vs torch", key)
    # inference gives the training forward's values (no dropout configured)
    y2, state2 = layer(inp.x, inp.state(), inp.lens)
    assert np.array_equal(y2, y)
    assert np.array_equal(split_state(state2, layer.cell == "lstm")[0], h_n)


# ----------------------------------------------------------------------------------------------
# the NumPy reference composed by layers, every variant, with dropout


@pytest.mark.parametrize("dropout", [0.0, 0.4], ids=["p0", "p0.4"])
@pytest.mark.parametrize("variant", list(LAYER_VARIANTS))
def test_against_reference_stack(variant, dropout):
    layer = make_layer(variant, 4, 5, np.float64, seed=3, num_layers=3, bidirectional=True, dropout=dropout,
                       batch_first=True)
    inp = Inputs(layer, 6, 4, seq=True, state=True, seed=8)
    y, state, cache = run_ours(layer, inp)
    masks = masks_of(cache, layer)
    ry, rh, rc, caches = ref_stack(layer, inp.x, inp.h0, inp.c0, inp.lens, masks)
    h_n, c_n = split_state(state, layer.cell == "lstm")
    for name, got, want in (("y", y, ry), ("h_n", h_n, rh), ("c_n", c_n, rc)):
        check(name, got, want, TOL64, "layers vs reference", variant)
    dx, dstate0 = layer.backward(cache, inp.dy, inp.dstate())
    dh0, dc0 = split_state(dstate0, layer.cell == "lstm")
    rdx, rdh0, rdc0, rgrads = ref_stack_backward(layer, caches, masks, inp.dy, inp.dh_n, inp.dc_n)
    for name, got, want in (("dx", dx, rdx), ("dh0", dh0, rdh0), ("dc0", dc0, rdc0)):
        check(name, got, want, TOL64, "layers vs reference", variant)
    for name in layer.params:
        check(f"grads[{name!r}]", layer.grads[name], rgrads[name], TOL64, "layers vs reference", variant)


# ----------------------------------------------------------------------------------------------
# dropout: finite differences with the mask held fixed, scaling, reproducibility


@pytest.mark.parametrize("variant", ["lstm", "gru", "gru_rb", "rnn_tanh"])
def test_dropout_finite_differences(variant):
    layer = make_layer(variant, 3, 4, np.float64, seed=11, num_layers=3, bidirectional=True, dropout=0.35)
    inp = Inputs(layer, 5, 3, seq=True, state=True, seed=12)
    seed = 987654321
    _, _, cache = run_ours(layer, inp, dropout_seed=seed)
    masks = masks_of(cache, layer)
    assert all(np.any(m == 0) for m in masks)  # dropout really drops here
    dx, dstate0 = layer.backward(cache, inp.dy, inp.dstate())
    dh0, dc0 = split_state(dstate0, layer.cell == "lstm")
    grads = dict(layer.grads)

    def loss():
        y, state, _ = run_ours(layer, inp, dropout_seed=seed)  # the same masks every time
        return loss_value(layer, inp, y, state)

    rng = np.random.default_rng(0)
    fd_check("dx", loss, inp.x, dx, rng, max_entries=10, category="layers dropout FD", key=variant)
    fd_check("dh0", loss, inp.h0, dh0, rng, max_entries=10, category="layers dropout FD", key=variant)
    if dc0 is not None:
        fd_check("dc0", loss, inp.c0, dc0, rng, max_entries=10, category="layers dropout FD", key=variant)
    for name, p in layer.params.items():
        fd_check(f"grads[{name!r}]", loss, p, grads[name], rng, max_entries=5, category="layers dropout FD",
                 key=variant)


def test_dropout_mask_scaling_and_use():
    p = 0.3
    layer = lstmcore.GRU(8, 32, num_layers=3, bidirectional=True, dropout=p, dtype=np.float64, seed=1)
    x = np.random.default_rng(0).standard_normal((40, 16, 8))
    _, _, cache = layer.forward(x, training=True)
    scale = 1.0 / (1.0 - p)
    for k in range(2):
        m = cache.dropout_mask(k)
        assert m.shape == (40, 16, 64) and not m.flags.writeable
        assert set(np.unique(m)) <= {0.0, scale}
        n = m.size
        frac = np.mean(m == 0)
        # binomial: 5 standard deviations
        assert abs(frac - p) < 5 * np.sqrt(p * (1 - p) / n), frac
        assert abs(m.mean() - 1.0) < 5 * scale * np.sqrt(p * (1 - p) / n), m.mean()
    assert not np.array_equal(cache.dropout_mask(0), cache.dropout_mask(1))  # independent streams
    with pytest.raises(IndexError):
        cache.dropout_mask(2)


def test_dropout_only_in_training_and_not_after_last_layer():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 3, 4))
    layer = lstmcore.LSTM(4, 5, num_layers=2, dropout=0.5, dtype=np.float64, seed=2)
    plain = lstmcore.LSTM(4, 5, num_layers=2, dropout=0.0, dtype=np.float64, seed=2)
    plain.params = dict(layer.params)
    y_inf, _ = layer(x)
    assert np.array_equal(y_inf, plain(x)[0])
    y_tr, _, cache = layer.forward(x, training=True)
    assert not np.allclose(y_tr, y_inf)
    assert cache.dropout_mask(0) is not None
    # one layer: PyTorch applies no dropout (there is no next layer), neither do we
    single = lstmcore.GRU(4, 5, dropout=0.5, dtype=np.float64, seed=3)
    y1, _, c1 = single.forward(x, training=True)
    assert np.array_equal(y1, single(x)[0])
    assert c1.dropout_mask(0) is None


def test_dropout_reproducible():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((7, 4, 3))

    def run(seed, **kw):
        layer = lstmcore.LSTM(3, 6, num_layers=3, dropout=0.5, bidirectional=True, dtype=np.float64, seed=seed,
                              **kw)
        return layer, [layer.forward(x if not kw else x.transpose(1, 0, 2).copy(), training=True)
                       for _ in range(2)]

    _, a = run(42)
    _, b = run(42)
    _, c = run(43)
    for (ya, _, ca), (yb, _, cb) in zip(a, b):
        assert np.array_equal(ya, yb)
        assert np.array_equal(ca.dropout_mask(1), cb.dropout_mask(1))
    assert not np.array_equal(a[0][2].dropout_mask(0), a[1][2].dropout_mask(0))  # a new mask per call
    assert not np.array_equal(a[0][2].dropout_mask(0), c[0][2].dropout_mask(0))
    # the mask of an element does not depend on the row order (batch_first) ...
    _, bf = run(42, batch_first=True)
    for (ya, _, ca), (yb, _, cb) in zip(a, bf):
        assert np.array_equal(ca.dropout_mask(0), cb.dropout_mask(0).transpose(1, 0, 2))
        check("y (batch_first)", yb.transpose(1, 0, 2), ya, TOL64)
    # ... nor on the number of threads
    layer = lstmcore.LSTM(3, 6, num_layers=3, dropout=0.5, dtype=np.float64, seed=7)
    n = lstmcore.get_num_threads()
    try:
        lstmcore.set_num_threads(1)
        _, _, c1 = layer.forward(x, training=True, dropout_seed=5)
        lstmcore.set_num_threads(max(2, n))
        _, _, c2 = layer.forward(x, training=True, dropout_seed=5)
    finally:
        lstmcore.set_num_threads(n)
    assert np.array_equal(c1.dropout_mask(0), c2.dropout_mask(0))


@pytest.mark.parametrize("variant", ["lstm", "gru"])
def test_threads_sequential_and_concurrent_directions(variant):
    # mid-sized problems (small steps, long enough sequences) run the two directions
    # concurrently when there are >= 2 threads; one thread runs them in turn
    layer = make_layer(variant, 16, 32, np.float64, seed=4, num_layers=2, bidirectional=True)
    inp = Inputs(layer, 40, 4, seq=True, state=True, seed=3)
    n = lstmcore.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 4):
            lstmcore.set_num_threads(threads)
            y, state, cache = run_ours(layer, inp)
            dx, _ = layer.backward(cache, inp.dy, inp.dstate())
            results.append((y, dx, dict(layer.grads)))
    finally:
        lstmcore.set_num_threads(n)
    for y, dx, g in results[1:]:
        check("y", y, results[0][0], TOL64)
        check("dx", dx, results[0][1], TOL64)
        for name in g:
            check(name, g[name], results[0][2][name], TOL64)


# ----------------------------------------------------------------------------------------------
# streaming, files, the API


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("variant", list(LAYER_VARIANTS))
def test_step_equals_sequence(variant, dtype):
    layer = make_layer(variant, 4, 5, dtype, seed=6, num_layers=2)
    inp = Inputs(layer, 9, 3, state=True, seed=9)
    y, state = layer(inp.x, inp.state())
    st = inp.state()
    for t in range(inp.x.shape[0]):
        y_t, st = layer.step(inp.x[t], st)
        check(f"y[{t}]", y_t, y[t], tol_for(dtype))
    lstm = layer.cell == "lstm"
    for a, b in zip(split_state(st, lstm), split_state(state, lstm)):
        if a is not None:
            check("final state", a, b, tol_for(dtype))
    # from a zero state too
    y0, _ = layer.step(inp.x[0])
    check("y[0] from zeros", y0, layer(inp.x[:1])[0][0], tol_for(dtype))


def test_step_refuses_bidirectional():
    layer = lstmcore.LSTM(3, 4, bidirectional=True)
    with pytest.raises(ValueError, match="bidirectional"):
        layer.step(np.zeros((2, 3), np.float32))


@pytest.mark.parametrize("variant", list(LAYER_VARIANTS))
def test_save_load_roundtrip(variant, tmp_path):
    layer = make_layer(variant, 3, 4, np.float64, seed=1, num_layers=2, bidirectional=True, batch_first=True,
                       dropout=0.25)
    path = tmp_path / "layer.npz"
    layer.save(path)
    back = lstmcore.load(path)
    assert type(back) is type(layer) and back.config() == layer.config()
    assert sorted(back.params) == sorted(layer.params)
    for name, value in layer.params.items():
        assert back.params[name].dtype == value.dtype
        assert np.array_equal(back.params[name], value)
    x = np.random.default_rng(0).standard_normal((2, 5, 3))
    assert np.array_equal(back(x)[0], layer(x)[0])


def test_save_load_no_bias_float32(tmp_path):
    layer = lstmcore.RNN(3, 4, num_layers=3, nonlinearity="relu", bias=False, seed=2)
    layer.save(tmp_path / "rnn")  # NumPy adds .npz; load finds it
    back = lstmcore.load(tmp_path / "rnn")
    assert back.nonlinearity == "relu" and not back.bias and back.dtype == np.float32
    assert sorted(back.params) == sorted(layer.params) and all(".b" not in n for n in back.params)
    for name in layer.params:
        assert np.array_equal(back.params[name], layer.params[name])


def test_load_checks_shapes(tmp_path):
    layer = lstmcore.GRU(3, 4, num_layers=2, dtype=np.float64)
    path = tmp_path / "g.npz"
    layer.save(path)
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    bad = dict(arrays)
    bad["l1.w_x"] = np.zeros((3, 12))  # layer 1 reads H = 4 features, not 3
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(ValueError, match=r"l1\.w_x.*shape"):
        lstmcore.load(tmp_path / "bad.npz")
    missing = {k: v for k, v in arrays.items() if k != "l0.b_h"}
    np.savez(tmp_path / "missing.npz", **missing)
    with pytest.raises(ValueError, match="missing"):
        lstmcore.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not an lstmcore layer"):
        lstmcore.load(tmp_path / "other.npz")


def test_constructor_and_params():
    layer = lstmcore.LSTM(10, 20, num_layers=2, bidirectional=True, seed=0)
    assert layer.dtype == np.float32
    assert layer.param_names() == [
        "l0.w_x", "l0.w_h", "l0.b", "l0.b_h", "l0_reverse.w_x", "l0_reverse.w_h", "l0_reverse.b", "l0_reverse.b_h",
        "l1.w_x", "l1.w_h", "l1.b", "l1.b_h", "l1_reverse.w_x", "l1_reverse.w_h", "l1_reverse.b", "l1_reverse.b_h"]
    assert layer.params["l0.w_x"].shape == (10, 80)
    assert layer.params["l1.w_x"].shape == (40, 80)
    assert layer.params["l1_reverse.w_h"].shape == (20, 80)
    bound = 1 / np.sqrt(20)
    allw = np.concatenate([v.ravel() for v in layer.params.values()])
    assert allw.min() >= -bound and allw.max() <= bound and allw.std() > bound / 2  # uniform ±1/√H
    same = lstmcore.LSTM(10, 20, num_layers=2, bidirectional=True, seed=0)
    assert all(np.array_equal(same.params[n], layer.params[n]) for n in layer.params)
    x = np.zeros((3, 2, 10), np.float32)
    y, (h, c) = layer(x)
    assert y.shape == (3, 2, 40) and h.shape == c.shape == (4, 2, 20)
    gru = lstmcore.GRU(4, 3, batch_first=True)
    y, h = gru(np.zeros((5, 7, 4), np.float32))
    assert y.shape == (5, 7, 3) and h.shape == (1, 5, 3)
    y_list, _ = gru(np.ones((5, 7, 4)).tolist())  # lists are read in the layer's dtype
    assert y_list.dtype == np.float32 and np.array_equal(y_list, gru(np.ones((5, 7, 4), np.float32))[0])
    assert "RNN(4, 3" in repr(lstmcore.RNN(4, 3))


def test_errors():
    layer = lstmcore.LSTM(3, 4, num_layers=2)
    x = np.zeros((5, 2, 3), np.float32)
    with pytest.raises(TypeError, match="dtype"):
        layer(x.astype(np.float64))
    with pytest.raises(ValueError, match="input_size"):
        layer(np.zeros((5, 2, 4), np.float32))
    with pytest.raises(TypeError, match=r"tuple \(h, c\)"):
        layer(x, np.zeros((2, 2, 4), np.float32))
    with pytest.raises(ValueError, match=r"h0.*\(L·D, B, H\)"):
        layer(x, (np.zeros((1, 2, 4), np.float32), None))
    with pytest.raises(ValueError, match="seq_lengths"):
        layer(x, seq_lengths=[6, 1])
    with pytest.raises(ValueError, match="l1.w_h"):
        bad = lstmcore.LSTM(3, 4, num_layers=2)
        bad.params["l1.w_h"] = np.zeros((4, 4), np.float32)
        bad(x)
    _, _, cache = layer.forward(x, training=True)
    layer.backward(cache, np.ones((5, 2, 4), np.float32))
    with pytest.raises(ValueError, match="already used"):
        layer.backward(cache)
    with pytest.raises(ValueError, match="dropout"):
        lstmcore.GRU(3, 4, dropout=1.5)
    with pytest.raises(ValueError, match="nonlinearity"):
        lstmcore.RNN(3, 4, nonlinearity="sigmoid")
    gru = lstmcore.GRU(3, 4)
    with pytest.raises(TypeError, match="one array"):
        gru(x, (np.zeros((1, 2, 4), np.float32),))
    assert TOL32 > 0 and FD_EPS > 0 and TOL_FD > 0  # the shared constants are what this file uses
