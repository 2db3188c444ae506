"""sunspots: statsmodels' yearly sunspot numbers 1700–2008 (shipped inside statsmodels),
forecast one year ahead by a GRU that reads the ``window`` years before. The last ``test``
years are held out: each of their forecasts reads true past values only (one step ahead),
and the test RMSE stands beside that of the naive forecast "same as last year"."""
from __future__ import annotations

import numpy as np
import torch

from . import _plot
from ._report import Row
from ._train import LABELS, LastStep, batched, predict, train_pair

SIZES = {
    "full": dict(window=24, hidden=32, test=60, batch=16, epochs=60, lr=3e-3),
    "quick": dict(window=24, hidden=32, test=60, batch=16, epochs=30, lr=3e-3),
    "tiny": dict(window=6, hidden=4, test=10, batch=16, epochs=2, lr=3e-3),
}


def load():
    """(years, sunspot numbers) as float64 arrays."""
    from statsmodels.datasets import sunspots  # noqa: PLC0415

    d = sunspots.load_pandas().data
    return d["YEAR"].to_numpy(np.float64), d["SUNACTIVITY"].to_numpy(np.float64)


def windows(z, targets, window):
    """x (n, window, 1): the ``window`` values before each target index; y (n,) the targets."""
    x = np.stack([z[t - window:t] for t in targets])[:, :, None]
    return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(z[targets].astype(np.float32))


def mse_loss(model, batch):
    x, y = batch
    return torch.mean((model(x).squeeze(-1) - y) ** 2)


def run(settings):
    s = settings.pick(SIZES)
    years, spots = load()
    split = len(spots) - s["test"]
    mean, std = spots[:split].mean(), spots[:split].std()
    z = (spots - mean) / std  # the model sees standardised values (statistics of the training years)
    x_tr, y_tr = windows(z, np.arange(s["window"], split), s["window"])
    test = np.arange(split, len(spots))
    x_te, _ = windows(z, test, s["window"])

    def batches(epoch):
        order = np.random.default_rng([settings.seed, epoch]).permutation(len(x_tr))
        return batched((x_tr, y_tr), s["batch"], order)

    def build(nn):
        return LastStep(nn.GRU(1, s["hidden"], batch_first=True), 1)

    r = train_pair("sunspots GRU", build, batches, mse_loss, epochs=s["epochs"], lr=s["lr"],
                   seed=settings.seed)
    forecast = {e: predict(m, x_te).squeeze(-1).numpy().astype(np.float64) * std + mean
                for e, m in r.models.items()}
    rmse = {e: float(np.sqrt(np.mean((f - spots[test]) ** 2))) for e, f in forecast.items()}
    naive = float(np.sqrt(np.mean((spots[test - 1] - spots[test]) ** 2)))
    row = Row.of(r, "sunspots", f"GRU H={s['hidden']}, {s['window']} steps", "test RMSE", rmse,
                 baseline=f"{naive:.4g} (last year's value)")

    fig, (ax_loss, ax_fc) = _plot.figure(2)
    _plot.loss_curves(ax_loss, [r], labels=["GRU"], ylabel="mean squared error (standardised data)")
    ax_loss.set_title("sunspots: training loss")
    shown = slice(max(split - 3 * s["test"], 0), len(spots))
    ax_fc.plot(years[shown], spots[shown], color="k", lw=1.2, label="observed")
    ax_fc.plot(years[test], spots[test - 1], color="0.6", ls=":",
               label=f"last year's value (RMSE {naive:.1f})")
    for engine, f in forecast.items():
        ax_fc.plot(years[test], f, color=_plot.COLOURS[0], **_plot.STYLE[engine],
                   label=f"GRU, {LABELS[engine]} (RMSE {rmse[engine]:.1f})")
    ax_fc.axvline(years[split] - 0.5, color="0.5", lw=0.8)
    _plot.finish(ax_fc, "year (right of the line: held out, forecast one year ahead)",
                 "yearly sunspot number", "sunspots: one-step-ahead forecasts on the held-out years")
    _plot.save(fig, settings.out, "sunspots.png")
    return [row], [r]
