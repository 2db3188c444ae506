"""digits: scikit-learn's handwritten digits (1797 images of 8×8 pixels, shipped inside
scikit-learn), classified by an LSTM that reads each image as a sequence: row by row (8 steps
of 8 pixels) and pixel by pixel (64 steps of one pixel). A quarter of the images, stratified
by class, is held out for the test accuracy and the confusion matrices."""
from __future__ import annotations

import numpy as np
import torch

from . import _plot
from ._report import Row
from ._train import LastStep, batched, predict, train_pair

#: hidden units, batch, epochs, learning rate and gradient-norm clip of each reading;
#: "images" limits the data set (None: all 1797)
SIZES = {
    "full": dict(rows=dict(hidden=128, batch=32, epochs=20, lr=3e-3, clip=1.0),
                 pixels=dict(hidden=64, batch=16, epochs=40, lr=1e-2, clip=1.0), images=None),
    "quick": dict(rows=dict(hidden=64, batch=32, epochs=8, lr=1e-2, clip=1.0),
                  pixels=dict(hidden=64, batch=16, epochs=12, lr=1e-2, clip=1.0), images=None),
    "tiny": dict(rows=dict(hidden=6, batch=16, epochs=2, lr=1e-2, clip=1.0),
                 pixels=dict(hidden=6, batch=16, epochs=2, lr=1e-2, clip=1.0), images=120),
}
READINGS = {"rows": (8, 8), "pixels": (64, 1)}  # steps, features per step


def load(images, seed):
    """(x_train, y_train, x_test, y_test): images scaled to [0, 1] as (n, 8, 8) float32."""
    from sklearn.datasets import load_digits  # noqa: PLC0415
    from sklearn.model_selection import train_test_split  # noqa: PLC0415

    d = load_digits()
    x, y = (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)
    if images is not None:
        x, y = x[:images], y[:images]
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)
    return tuple(torch.from_numpy(a) for a in (x_tr, y_tr, x_te, y_te))


def cross_entropy(model, batch):
    x, y = batch
    return torch.nn.functional.cross_entropy(model(x), y)


def run(settings):
    s = settings.pick(SIZES)
    x_tr, y_tr, x_te, y_te = load(s["images"], settings.seed)
    runs, rows, matrices = [], [], {}
    for reading, (steps, features) in READINGS.items():
        p = s[reading]
        xr, xe = x_tr.reshape(-1, steps, features), x_te.reshape(-1, steps, features)

        def batches(epoch, xr=xr):
            order = np.random.default_rng([settings.seed, epoch]).permutation(len(xr))
            return batched((xr, y_tr), p["batch"], order)

        def build(nn, features=features, hidden=p["hidden"]):
            return LastStep(nn.LSTM(features, hidden, batch_first=True), 10)

        r = train_pair(f"digits {reading}", build, batches, cross_entropy, epochs=p["epochs"],
                       lr=p["lr"], seed=settings.seed, clip=p["clip"])
        runs.append(r)
        labels = {e: predict(m, xe).argmax(dim=1) for e, m in r.models.items()}
        accuracy = {e: float((lab == y_te).float().mean()) for e, lab in labels.items()}
        rows.append(Row.of(r, "digits", f"LSTM H={p['hidden']}, {steps} steps × {features}",
                           "test accuracy", accuracy, baseline="0.1 (chance)"))
        m = np.zeros((10, 10), np.int64)
        np.add.at(m, (y_te.numpy(), labels["lstmcore"].numpy()), 1)
        matrices[reading] = (m, accuracy["lstmcore"], steps)

    fig, axes = _plot.figure(3, width=4.6, height=4.2)
    _plot.loss_curves(axes[0], runs, labels=["row by row", "pixel by pixel"], ylabel="cross-entropy")
    axes[0].set_title("digits: training loss")
    for ax, (reading, (m, acc, steps)) in zip(axes[1:], matrices.items()):
        _plot.confusion(ax, m, f"{reading} ({steps} steps): test accuracy {acc:.3f}")
    _plot.save(fig, settings.out, "digits.png")
    return rows, runs
