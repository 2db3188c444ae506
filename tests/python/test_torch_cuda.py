"""lstmcore.torch on CUDA tensors: the path through lstmcore's CUDA backend (lstmcore._cuda).

Without a GPU the device path is emulated as tests/python/test_cuda_api.py does: CPU tensors are
taken for device tensors, results are allocated (NaN-filled) by a stand-in for torch's CUDA
allocator, and the CUDA binding is replaced by the CPU core working on the memory behind the
addresses it is given. The modules must then give the host path's results bit for bit: any
argument passed in the wrong place shows up. With a GPU, the real thing against the CPU.
"""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import lstmcore.torch as lt  # noqa: E402
from lstmcore import _cuda  # noqa: E402
from lstmcore.torch import _ops  # noqa: E402
from test_cuda_api import _fake_binding  # noqa: E402

T, B, I, H = 5, 3, 4, 6


class CpuTorchAsDevice(_cuda._Torch):
    """torch tensors as lstmcore._cuda sees device tensors, but allocated on the CPU."""

    def view(self, t):
        v = super().view(t)
        v.device = 0
        return v

    def empty(self, shape, dtype, device):
        return torch.full(shape, float("nan"), dtype=self.dtypes[dtype])

    def stream(self, device):
        return 0

    def from_host(self, a, device):
        return torch.as_tensor(a)


@pytest.fixture
def emulated(monkeypatch):
    monkeypatch.setattr(_cuda, "_core", _fake_binding(_cuda._core))
    monkeypatch.setitem(_cuda.ADAPTERS, "torch", CpuTorchAsDevice)
    monkeypatch.setattr(_cuda, "_LIBS", {})
    real = _cuda._is_device
    monkeypatch.setattr(_cuda, "_is_device", lambda obj: isinstance(obj, torch.Tensor) or real(obj))

    def use(on):
        monkeypatch.setattr(_ops, "on_device", (lambda x: True) if on else (lambda x: x.is_cuda))
    return use


CASES = [("lstm", dict(num_layers=2, bidirectional=True)), ("gru", dict(batch_first=True, bias=False)),
         ("gru", dict(reset_after=False, num_layers=2)), ("rnn_relu", dict(bidirectional=True, merge="sum")),
         ("lstm", dict(kind="cell")), ("gru", dict(kind="cell"))]


def build(cell, kw):
    kw = dict(kw)
    kind = kw.pop("kind", "stack")
    if cell.startswith("rnn"):
        kw["nonlinearity"] = cell[4:]
    table = ({"lstm": lt.LSTM, "gru": lt.GRU, "rnn_relu": lt.RNN} if kind == "stack" else
             {"lstm": lt.LSTMCell, "gru": lt.GRUCell})
    torch.manual_seed(0)
    return table[cell](I, H, **kw).double(), kind


def run(m, kind, cell, packed, device="cpu"):
    g = torch.Generator().manual_seed(1)

    def dev(t):
        return t.detach().to(device).requires_grad_()

    if kind == "cell":
        x = dev(torch.randn(B, I, generator=g, dtype=torch.float64))
        h = dev(torch.randn(B, H, generator=g, dtype=torch.float64))
        out = m(x, (h, h * 0.5) if cell == "lstm" else h)
        outs = list(out) if cell == "lstm" else [out]
        leaves = [x, h]
    else:
        x = dev(torch.randn(T, B, I, generator=g, dtype=torch.float64))
        inp = x.transpose(0, 1) if m.batch_first else x
        if packed:
            inp = torch.nn.utils.rnn.pack_padded_sequence(inp, torch.tensor([2, T, 3]), batch_first=m.batch_first,
                                                          enforce_sorted=False)
        y, state = m(inp)
        outs = [y.data if packed else y, *(state if cell == "lstm" else (state,))]
        leaves = [x]
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=torch.float64).to(device)).sum() for o in outs)
    return [o.detach() for o in outs], torch.autograd.grad(loss, [*leaves, *m.parameters()])


@pytest.mark.parametrize("ops_path", [False, True], ids=["function", "operators"])
@pytest.mark.parametrize("case,packed", [(c, p) for c in range(len(CASES)) for p in (False, True)
                                         # cells take no sequences, so no packed ones
                                         if not (p and CASES[c][1].get("kind") == "cell")],
                         ids=lambda v: ("packed" if v else "padded") if isinstance(v, bool) else str(v))
def test_emulated_device_path_equals_host_path(emulated, monkeypatch, case, packed, ops_path):
    cell, kw = CASES[case]
    m, kind = build(cell, kw)
    monkeypatch.setattr(_ops, "FORCE_OPS", ops_path)
    emulated(False)
    want, want_g = run(m, kind, cell, packed)
    calls = []
    real_forward = _cuda.forward
    monkeypatch.setattr(_cuda, "forward", lambda *a, **k: calls.append(1) or real_forward(*a, **k))
    emulated(True)
    got, got_g = run(m, kind, cell, packed)
    assert calls  # the device path ran
    for a, b in zip(got, want):
        assert torch.equal(a, b)
    for a, b in zip(got_g, want_g):
        assert torch.equal(a, b)


def test_variants_on_device_are_refused_naming_the_option(emulated):
    emulated(True)
    m = lt.LSTM(I, H, peepholes=True)
    with pytest.raises(ValueError, match="peepholes"):
        m(torch.randn(T, B, I))


@pytest.mark.skipif(not (torch.cuda.is_available() and _cuda.device_count() > 0), reason="needs a GPU and a CUDA build")
@pytest.mark.parametrize("case", range(len(CASES)))
def test_gpu_against_cpu(case):
    cell, kw = CASES[case]
    m, kind = build(cell, kw)
    want, want_g = run(m, kind, cell, False)
    m = m.cuda()
    got, got_g = run(m, kind, cell, False, "cuda")
    for a, b in zip(list(got) + list(got_g), list(want) + list(want_g)):
        a = a.cpu()
        assert float((a - b).norm() / max(float(b.norm()), 1e-300)) <= 1e-12


def test_strided_device_tensors_are_made_dense(emulated):
    """lstmcore.forward / backward on strided "device" tensors of the call's dtype (a view into a
    wider buffer): the device path must copy them dense, not read them as if they were dense."""
    import lstmcore
    g = torch.Generator().manual_seed(3)
    x, w_x, w_h = (torch.randn(*s, generator=g, dtype=torch.float64) for s in ((T, B, I), (I, 4 * H), (H, 4 * H)))
    want = lstmcore.forward(x.numpy(), w_x.numpy(), w_h.numpy(), training=True)
    dy = torch.randn(T, B, H, generator=g, dtype=torch.float64)
    want_g = lstmcore.backward(want.cache, dy.numpy())
    wide_x = torch.zeros(T, B, I + 5, dtype=torch.float64)
    wide_x[..., 5:] = x
    wide_dy = torch.zeros(T, B, H + 6, dtype=torch.float64)
    wide_dy[..., 6:] = dy
    got = lstmcore.forward(wide_x[..., 5:], w_x, w_h, training=True)
    assert torch.equal(got.y, torch.as_tensor(want.y))
    got_g = lstmcore.backward(got.cache, wide_dy[..., 6:])
    for name in ("dx", "dw_x", "dw_h", "dh0"):
        assert torch.equal(getattr(got_g, name), torch.as_tensor(getattr(want_g, name))), name
