"""CPU torch tensors wherever arrays are accepted (issue 12, item 8): parameters that require
grad are read detached, contiguous tensors without a copy; the README's "From PyTorch" recipe
gives torch.nn.LSTM's result."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import lstmcore  # noqa: E402
from conftest import TOL32, TOL64, rel_err  # noqa: E402
from problems import names  # noqa: E402

T, B, I, H = 6, 3, 5, 7


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_the_readme_recipe_gives_torchs_result(dtype):
    torch.manual_seed(0)
    m = torch.nn.LSTM(I, H).to(dtype)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32 if dtype == torch.float32 else np.float64)
    assert m.weight_ih_l0.requires_grad
    # the recipe as the README writes it
    w_x, w_h = m.weight_ih_l0.T, m.weight_hh_l0.T
    b, b_h = m.bias_ih_l0, m.bias_hh_l0
    y, h_n, c_n, _ = lstmcore.forward(x, w_x, w_h, b, b_h)
    with torch.no_grad():
        want, (want_h, want_c) = m(torch.from_numpy(x))
    tol = TOL32 if dtype == torch.float32 else TOL64
    assert rel_err(y, want.numpy()) <= tol
    assert rel_err(h_n, want_h[0].numpy()) <= tol and rel_err(c_n, want_c[0].numpy()) <= tol
    # its zero-copy form
    w_x = np.ascontiguousarray(m.weight_ih_l0.detach().numpy().T)
    w_h = np.ascontiguousarray(m.weight_hh_l0.detach().numpy().T)
    assert np.array_equal(lstmcore.forward(x, w_x, w_h, b, b_h).y, y)


def test_contiguous_tensors_are_read_in_place():
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.standard_normal((T, B, I))).requires_grad_(True)
    w_x = torch.from_numpy(rng.standard_normal((I, 3 * H))).requires_grad_(True)
    w_h = torch.from_numpy(rng.standard_normal((H, 3 * H)))
    res = lstmcore.forward(x, w_x, w_h, cell="gru", training=True)
    assert np.shares_memory(res.cache.x, x.detach().numpy())
    assert np.shares_memory(res.cache.w_x, w_x.detach().numpy())
    dy = torch.ones(T, B, H, dtype=torch.float64, requires_grad=True)
    g = lstmcore.backward(res.cache, dy)
    want = lstmcore.backward(lstmcore.forward(x.detach().numpy(), w_x.detach().numpy(), w_h.numpy(), cell="gru",
                                              training=True).cache, np.ones((T, B, H)))
    assert np.array_equal(g.dw_x, want.dw_x) and np.array_equal(g.dx, want.dx)
    assert x.grad is None and w_x.grad is None  # read, never differentiated through


def test_out_may_be_a_tensor_that_does_not_require_grad():
    rng = np.random.default_rng(2)
    args = [torch.from_numpy(rng.standard_normal(s).astype(np.float32)) for s in ((T, B, I), (I, H), (H, H))]
    out = torch.zeros(T, B, H)
    res = lstmcore.forward(*args, cell="rnn_tanh", out=out)
    assert res.y is out
    assert np.array_equal(out.numpy(), lstmcore.forward(*args, cell="rnn_tanh").y)
    with pytest.raises(TypeError, match=names("out")):
        lstmcore.forward(*args, cell="rnn_tanh", out=torch.zeros(T, B, H, requires_grad=True))
    with pytest.raises(ValueError, match=names("out")):
        lstmcore.forward(*args, cell="rnn_tanh", out=torch.zeros(B, T, H).transpose(0, 1))  # not contiguous


def test_tensor_dtype_rules_are_those_of_arrays():
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.standard_normal((T, B, I)).astype(np.float32))
    w_x = torch.from_numpy(rng.standard_normal((I, H)))  # float64 beside a float32 x
    w_h = torch.zeros(H, H)
    with pytest.raises(TypeError, match=names("w_x")):
        lstmcore.forward(x, w_x, w_h, cell="rnn_relu")
    with pytest.raises(TypeError, match=names("w_h")):
        lstmcore.forward(x, w_x.float(), w_h.bfloat16(), cell="rnn_relu")
    res = lstmcore.forward(x, w_x.float(), w_h, cell="rnn_relu", training=True)
    with pytest.raises(TypeError, match=names("dy")):
        lstmcore.backward(res.cache, torch.ones(T, B, H, dtype=torch.float64))
    assert not res.cache.consumed
    assert lstmcore.forward(x, w_x, w_h, cell="rnn_relu", dtype=np.float64).y.dtype == np.float64


def test_layers_take_tensors():
    layer = lstmcore.LSTM(I, H, num_layers=2, seed=0)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    h0 = rng.standard_normal((2, B, H)).astype(np.float32)
    c0 = rng.standard_normal((2, B, H)).astype(np.float32)
    want_y, (want_h, want_c) = layer(x, (h0, c0))
    tx = torch.from_numpy(x).requires_grad_(True)
    y, (h, c) = layer(tx, (torch.from_numpy(h0), torch.from_numpy(c0).requires_grad_(True)))
    assert np.array_equal(y, want_y) and np.array_equal(h, want_h) and np.array_equal(c, want_c)
    y_t, _ = layer.step(tx[0], (torch.from_numpy(h0), torch.from_numpy(c0)))
    assert np.array_equal(y_t, layer.step(x[0], (h0, c0))[0])
    _, _, cache = layer.forward(tx.transpose(0, 1).contiguous().transpose(0, 1), training=True)  # strided: one copy
    dx, _ = layer.backward(cache, torch.ones(T, B, H, requires_grad=True))
    _, _, fresh = layer.forward(x, training=True)
    assert np.array_equal(dx, layer.backward(fresh, np.ones((T, B, H), np.float32))[0])
    with pytest.raises(TypeError, match=names("x")):
        layer(tx.double())
