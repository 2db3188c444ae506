"""adding: the adding problem of Hochreiter & Schmidhuber (1997).

Each step carries two numbers: a value drawn uniformly from [0, 1) and a marker, 1 at exactly
two steps (one in the first tenth of the sequence, one in its second half) and 0 elsewhere.
The target, read after the last step, is the sum of the two marked values. Predicting the
mean (1) gives a mean squared error of 1/6; to do better a model must carry the first marked
value across at least 90 % of the sequence.

An LSTM learns it; a plain tanh RNN of the same size does not. The second panel shows why:
the gradient of a loss on the last step with respect to each step's input, ‖∂L/∂x_t‖,
computed with lstmcore's NumPy API (``lstmcore.forward`` / ``lstmcore.backward``) from the
weights at initialisation and after training. The RNN's fades exponentially towards the
start, so the first marker never gets a learning signal; the trained LSTM's does not fade.
"""
from __future__ import annotations

import numpy as np
import torch

import lstmcore

from . import _plot
from ._report import Row
from ._train import LastStep, batched, predict, train_pair

#: steps T, hidden units, training and test sequences, batch, epochs, Adam's learning rate;
#: the gradient norm is clipped at 1
SIZES = {
    "full": dict(steps=150, hidden=64, train=10_000, test=1_000, batch=50, epochs=12, lr=1e-2),
    "quick": dict(steps=100, hidden=32, train=6_000, test=1_000, batch=50, epochs=12, lr=2e-2),
    "tiny": dict(steps=12, hidden=5, train=48, test=16, batch=16, epochs=2, lr=1e-2),
}
MEAN_BASELINE = 1.0 / 6.0  # the variance of the sum of two uniform values


def make_data(n, steps, rng):
    """``n`` sequences: x (n, T, 2) float32 (value, marker) and the targets y (n,)."""
    values = rng.uniform(0.0, 1.0, (n, steps))
    marks = np.zeros((n, steps))
    rows = np.arange(n)
    marks[rows, rng.integers(0, max(steps // 10, 1), n)] = 1.0
    marks[rows, rng.integers(steps // 2, steps, n)] = 1.0
    x = np.stack([values, marks], axis=-1).astype(np.float32)
    y = (values * marks).sum(axis=1).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(y)


def build(cell, hidden):
    """A model maker for train_pair: ``cell`` ("LSTM" or "RNN") with ``hidden`` units, then a
    linear map to one number. The LSTM's forget-gate bias starts 1 higher (Gers et al. 2000),
    the usual initialisation for long time lags."""

    def make(nn):
        layer = getattr(nn, cell)(2, hidden, batch_first=True)
        if cell == "LSTM":
            with torch.no_grad():
                layer.bias_ih_l0[hidden:2 * hidden] += 1.0  # gate order i, f, g, o
        return LastStep(layer, 1)

    return make


def mse_loss(model, batch):
    x, y = batch
    return torch.mean((model(x).squeeze(-1) - y) ** 2)


def input_gradient_norms(state, cell, x, y):
    """‖∂L/∂x_t‖ for every step t (the norm over the batch and the two input features) of
    L = mean squared error of the prediction at the last step, for a LastStep model with
    weights ``state`` (a state_dict), computed in float64 by lstmcore.forward / backward.

    ``cell``: lstmcore's cell name ("lstm" or "rnn_tanh"); x (B, T, 2), y (B,). Returns (T,).
    """
    p = {k: v.detach().numpy().astype(np.float64) for k, v in state.items()}
    res = lstmcore.forward(np.asarray(x, np.float64), np.ascontiguousarray(p["rnn.weight_ih_l0"].T),
                           np.ascontiguousarray(p["rnn.weight_hh_l0"].T), p["rnn.bias_ih_l0"],
                           p["rnn.bias_hh_l0"], cell=cell, batch_first=True, training=True)
    w_out, b_out = p["head.weight"][0], p["head.bias"][0]
    pred = res.h_n @ w_out + b_out
    dpred = 2.0 * (pred - np.asarray(y, np.float64)) / len(pred)  # dL/dpred
    grads = lstmcore.backward(res.cache, dh_n=np.outer(dpred, w_out))
    return np.sqrt(np.sum(grads.dx ** 2, axis=(0, 2)))


def run(settings):
    s = settings.pick(SIZES)
    rng = np.random.default_rng(settings.seed)
    x, y = make_data(s["train"], s["steps"], rng)
    x_test, y_test = make_data(s["test"], s["steps"], rng)

    def batches(epoch):
        order = np.random.default_rng([settings.seed, epoch]).permutation(len(x))
        return batched((x, y), s["batch"], order)

    runs, rows, grads = [], [], {}
    for cell, core_cell in (("LSTM", "lstm"), ("RNN", "rnn_tanh")):
        r = train_pair(f"adding {cell}", build(cell, s["hidden"]), batches, mse_loss,
                       epochs=s["epochs"], lr=s["lr"], seed=settings.seed, clip=1.0)
        runs.append(r)
        test_mse = {e: float(torch.mean((predict(m, x_test).squeeze(-1) - y_test) ** 2))
                    for e, m in r.models.items()}
        rows.append(Row.of(r, "adding", f"{cell} H={s['hidden']}, T={s['steps']}", "test MSE", test_mse,
                           baseline=f"{MEAN_BASELINE:.3f} (predict the mean)"))
        grads[cell, "at initialisation"] = input_gradient_norms(r.initial, core_cell, x_test, y_test)
        grads[cell, "after training"] = input_gradient_norms(r.models["lstmcore"].state_dict(),
                                                             core_cell, x_test, y_test)

    fig, (ax_loss, ax_grad) = _plot.figure(2)
    _plot.loss_curves(ax_loss, runs, labels=["LSTM", "tanh RNN"], ylabel="mean squared error")
    ax_loss.axhline(MEAN_BASELINE, color="k", lw=0.8, ls=":", label="predicting the mean (1/6)")
    ax_loss.legend(fontsize=8)
    ax_loss.set_title(f"adding problem, T = {s['steps']}: training loss")
    t = np.arange(s["steps"])
    for (cell, when), norms in grads.items():
        rel = norms / norms.max() if norms.max() > 0 else norms
        ax_grad.plot(t, np.where(rel > 0, rel, np.nan), label=f"{cell} {when}",
                     color=_plot.COLOURS[0 if cell == "LSTM" else 1],
                     ls="-" if when == "after training" else ":")
    ax_grad.axvspan(0, max(s["steps"] // 10, 1) - 0.5, color="0.85", lw=0)
    ax_grad.axvspan(s["steps"] // 2 - 0.5, s["steps"] - 1, color="0.93", lw=0)
    _plot.finish(ax_grad, "step t (shaded: where the markers can be)",
                 "‖∂L/∂x_t‖ / its largest value",
                 "gradient of a loss on the last step (lstmcore.backward)", log=True)
    _plot.save(fig, settings.out, "adding.png")
    return rows, runs
