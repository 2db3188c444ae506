"""lstmcore.torch under torch.compile (fullgraph: no graph break, forward and backward), torch.export,
and its custom operators run eagerly (the path compiled graphs take, with the cache rebuilt in the
backward operator) against the eager autograd.Function path."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import lstmcore.torch as lt  # noqa: E402
from conftest import TOL64  # noqa: E402
from lstmcore.torch import _ops  # noqa: E402
from test_torch_variants import VARIANTS, module  # noqa: E402

T, B, I, H = 5, 3, 4, 6


class Everything(torch.nn.Module):
    """One model holding each kind: stacks with both directions, a projection, variants, cells."""

    def __init__(self):
        super().__init__()
        self.lstm = lt.LSTM(I, H, num_layers=2, bidirectional=True, proj_size=3, batch_first=True)
        self.gru = lt.GRU(6, H, reset_after=False, bidirectional=True, merge="sum")
        self.cell = lt.LSTMCell(H, H, peepholes=True)
        self.rcell = lt.RNNCell(H, H, nonlinearity="relu")

    def forward(self, x, h0):
        y, _ = self.lstm(x)
        y, h = self.gru(y.transpose(0, 1), h0)
        h, c = h[0], h[1]
        for t in range(2):
            h, c = self.cell(y[t], (h, c))
        return self.rcell(h).sin().sum() + y.square().mean()


def grads(model, x, h0):
    loss = model(x, h0)
    return loss, torch.autograd.grad(loss, [x, h0, *model.parameters()])


def rel(a, b):
    a, b = a.detach(), b.detach()
    return float((a - b).norm() / max(b.norm(), 1e-300))


class Small(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = lt.GRU(I, H, bidirectional=True)
        self.cell = lt.LSTMCell(2 * H, H)

    def forward(self, x, h0):
        y, h = self.gru(x, h0)
        h, c = self.cell(y[-1], (h[0], h[1]))
        return h.sin().sum() + y.square().mean()


@pytest.mark.parametrize("backend", ["inductor", "aot_eager"])
def test_compile_fullgraph_forward_and_backward(backend):
    """fullgraph=True: a graph break is an error. inductor (torch's default) on a small model;
    aot_eager (Dynamo and AOTAutograd without code generation, quicker to compile) on a model
    holding every kind."""
    torch.manual_seed(0)
    if backend == "inductor":
        model = Small().double()
        x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    else:
        model = Everything().double()
        x = torch.randn(B, T, I, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, B, H, dtype=torch.float64, requires_grad=True)
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    loss, got = grads(compiled, x, h0)  # compiled before any eager call
    want_loss, want = grads(model, x, h0)
    assert rel(loss, want_loss) <= TOL64
    assert max(rel(a, b) for a, b in zip(got, want)) <= TOL64
    # a second step through the compiled graph
    loss, again = grads(compiled, x, h0)
    assert all(torch.equal(a, b) for a, b in zip(again, got))
    if backend == "inductor":  # retain_graph: inductor's backward graphs refuse it ("donated buffers")
        loss = compiled(x, h0)
        with pytest.raises(RuntimeError, match="retain_graph"):
            torch.autograd.grad(loss, [x], retain_graph=True)


def test_compile_packed_sequences():
    """A PackedSequence (made outside: torch's pack_padded_sequence itself is not traceable) goes
    through the compiled model with no graph break, unpacked and packed again by tensor operations."""
    torch.manual_seed(2)
    m = lt.LSTM(I, H, num_layers=2, bidirectional=True, batch_first=True).double()
    x = torch.randn(B, T, I, dtype=torch.float64, requires_grad=True)

    def packed():
        return torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor([2, T, 3]), batch_first=True,
                                                       enforce_sorted=False)

    def f(p):
        out, (h, c) = m(p)
        return out.data.sin().sum() + h.square().sum() + c.sum()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    got = compiled(packed())
    g_got = torch.autograd.grad(got, [x, *m.parameters()])
    want = f(packed())
    g_want = torch.autograd.grad(want, [x, *m.parameters()])
    assert rel(got, want) <= TOL64
    assert max(rel(a, b) for a, b in zip(g_got, g_want)) <= TOL64


def test_export():
    torch.manual_seed(1)
    model = Everything().eval()
    x, h0 = torch.randn(B, T, I), torch.randn(2, B, H)
    with torch.no_grad():
        want = model(x, h0)
    program = torch.export.export(model, (x, h0))
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert "lstmcore.layer_forward.default" in targets
    assert torch.equal(program.module()(x, h0), want)


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("layers", [dict(), dict(num_layers=2, bidirectional=True, batch_first=True)],
                         ids=["1", "2x2"])
def test_custom_operators_eagerly_equal_the_function_path(variant, layers, monkeypatch):
    """The operators (forward returns the cache buffer, backward rebuilds the cache from it) give the
    same outputs and gradients as the autograd.Function that keeps the cache object, bit for bit."""
    m, cell, kw = module(variant, **layers)
    m.train()
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([T, 2, 4])
    results = []
    for force in (False, True):
        monkeypatch.setattr(_ops, "FORCE_OPS", force)
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=False, enforce_sorted=False)
        if layers.get("batch_first"):
            packed = torch.nn.utils.rnn.pack_padded_sequence(x.transpose(0, 1), lengths, batch_first=True,
                                                             enforce_sorted=False)
        torch.manual_seed(5)  # zoneout's seeds
        out, state = m(packed)
        h = state[0] if cell == "lstm" else state
        loss = out.data.sin().sum() + h.square().sum()
        results.append((out.data, torch.autograd.grad(loss, [x, *m.parameters()])))
    (y0, g0), (y1, g1) = results
    assert torch.equal(y0, y1)
    assert all(torch.equal(a, b) for a, b in zip(g0, g1))


def test_operator_path_without_grad_and_cells(monkeypatch):
    monkeypatch.setattr(_ops, "FORCE_OPS", True)
    m = lt.GRUCell(I, H)
    x = torch.randn(B, I)
    with torch.no_grad():
        a = m(x)
    monkeypatch.setattr(_ops, "FORCE_OPS", False)
    with torch.no_grad():
        b = m(x)
    assert torch.equal(a, b)
