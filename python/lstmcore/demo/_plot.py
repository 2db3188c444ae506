"""Figures, drawn with matplotlib's object interface and saved as PNG by its Agg canvas
(no pyplot, no window, no global backend switch)."""
from __future__ import annotations

import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ._train import ENGINES, LABELS

#: one colour per model of a task; lstmcore's curve wide and light, torch.nn's dashed on top
COLOURS = ("tab:blue", "tab:red", "tab:green", "tab:purple")
STYLE = {"lstmcore": dict(lw=3.0, alpha=0.45, ls="-"), "torch": dict(lw=1.0, alpha=1.0, ls="--")}


def figure(ncols=1, width=6.0, height=4.0):
    """A new figure with ``ncols`` axes side by side: (fig, [axes])."""
    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def save(fig, out, name):
    path = os.path.join(out, name)
    fig.savefig(path, dpi=100)
    return path


def finish(ax, xlabel, ylabel, title=None, log=False):
    """The common dressing of an axes: labels, title, log y scale, grid, legend."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if log:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


def smooth(values, window):
    """Running mean over ``window`` steps (the first ones over what there is)."""
    v = np.asarray(values, np.float64)
    if window <= 1 or v.size == 0:
        return v
    c = np.cumsum(np.insert(v, 0, 0.0))
    n = np.minimum(np.arange(1, v.size + 1), window)
    return (c[1:] - c[np.arange(1, v.size + 1) - n]) / n


def loss_curves(ax, runs, labels, ylabel="training loss", log=True, scale=1.0):
    """Both engines' training loss of each run (``labels``: one name per run) against the
    epoch on one axes: a running mean over a fifth of an epoch, times ``scale``."""
    for k, (run, name) in enumerate(zip(runs, labels)):
        spe = max(run.steps_per_epoch, 1)
        for engine in ENGINES:
            y = scale * smooth(run.losses[engine], max(1, spe // 5))
            x = np.arange(1, y.size + 1) / spe
            ax.plot(x, y, color=COLOURS[k % len(COLOURS)], **STYLE[engine],
                    label=f"{name}, {LABELS[engine]} ({run.seconds_per_epoch(engine):.2g} s/epoch)")
    finish(ax, "epoch (training batches, running mean over a fifth of an epoch)", ylabel, log=log)


def confusion(ax, matrix, title):
    """A confusion matrix (rows: true class, columns: predicted) with its counts."""
    ax.imshow(matrix, cmap="Blues")
    n = matrix.shape[0]
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    top = matrix.max() if matrix.size else 0
    for i in range(n):
        for j in range(n):
            if matrix[i, j]:
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if matrix[i, j] > top / 2 else "black")


def speed(rows, out):
    """The speed-up of every trained model, with both engines' seconds per epoch: speed.png."""
    fig, (ax,) = figure(width=7.5, height=0.8 + 0.5 * len(rows))
    y = np.arange(len(rows))
    ax.barh(y, [r.speedup for r in rows], height=0.6, color="tab:blue")
    for i, r in enumerate(rows):
        t = r.seconds_per_epoch
        ax.text(r.speedup, i, f"  {r.speedup:.2f}×  ({t['lstmcore']:.3g} s against {t['torch']:.3g} s)",
                va="center", fontsize=8)
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_yticks(y, [f"{r.task}: {r.model}" for r in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, 1.6 * max(max(r.speedup for r in rows), 1.0))
    ax.set_xlabel(f"speed-up: {LABELS['torch']}'s training time per epoch over {LABELS['lstmcore']}'s")
    ax.set_title("time per epoch (median), lstmcore against torch.nn")
    return save(fig, out, "speed.png")
