"""Training one model on both engines, side by side.

The engine choice lives here and nowhere else: ``engines()`` maps an engine's name to the
module namespace whose ``LSTM`` / ``GRU`` / ``RNN`` classes a model is built from. Both
namespaces have torch.nn's constructors, parameter names and forward signatures, so a model
class takes the namespace as an argument and is otherwise the same code for both.

``train_pair`` builds the model once per engine, gives both the same initial weights (the
torch.nn model's state_dict, loaded into the other), one ``torch.optim.Adam`` each with the
same settings, and the same batches in the same order: the two epochs of the same number run
one after the other, each timed on its own.
"""
from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

#: engine names, in the order of every table and plot; the first is lstmcore's.
ENGINES = ("lstmcore", "torch")
#: how the plots and tables name them
LABELS = {"lstmcore": "lstmcore.torch", "torch": "torch.nn"}


def engines():
    """Engine name -> the namespace holding its LSTM, GRU and RNN classes."""
    import torch.nn  # noqa: PLC0415

    import lstmcore.torch  # noqa: PLC0415  (imports torch: only when the demo trains)

    return {"lstmcore": lstmcore.torch, "torch": torch.nn}


class LastStep(torch.nn.Module):
    """A recurrent layer read at its last step, then a linear map: ``(B, T, I) -> (B, out)``.

    ``layer`` is an ``LSTM`` / ``GRU`` / ``RNN`` of either engine built with
    ``batch_first=True``; the head reads the top layer's final hidden state.
    """

    def __init__(self, layer, out_features):
        super().__init__()
        self.rnn = layer
        self.head = torch.nn.Linear(layer.hidden_size, out_features)

    def forward(self, x):
        _, state = self.rnn(x)
        h_n = state[0] if isinstance(state, tuple) else state
        return self.head(h_n[-1])


@dataclass
class Settings:
    """What the command line chose: ``size`` is "full", "quick" or "tiny" (the test's),
    ``epochs`` overrides every task's number of epochs when not None."""

    size: str
    out: str
    epochs: int | None = None
    seed: int = 0

    def pick(self, sizes):
        """A copy of this size's entry of a task's ``SIZES``, with ``epochs`` overridden
        wherever it appears (nested dicts included)."""

        def override(d):
            d = {k: override(v) if isinstance(v, dict) else v for k, v in d.items()}
            if self.epochs is not None and "epochs" in d:
                d["epochs"] = self.epochs
            return d

        return override(sizes[self.size])


@dataclass
class Run:
    """One model trained on both engines. ``losses[engine]`` holds the training loss of every
    step, ``epoch_seconds[engine]`` the training time of every epoch, ``initial`` the weights
    both started from."""

    name: str
    models: dict
    initial: dict
    losses: dict = field(default_factory=lambda: {e: [] for e in ENGINES})
    epoch_seconds: dict = field(default_factory=lambda: {e: [] for e in ENGINES})
    steps_per_epoch: int = 0

    def seconds_per_epoch(self, engine):
        """Median training time of an epoch (robust to a slow first epoch or a busy machine)."""
        return statistics.median(self.epoch_seconds[engine])

    def speedup(self):
        """torch.nn's time per epoch over lstmcore's: above 1 means lstmcore is faster."""
        return self.seconds_per_epoch("torch") / self.seconds_per_epoch("lstmcore")

    def loss_gap(self, steps=20):
        """Largest relative difference of the two engines' losses at the same step, over the
        first ``steps`` steps: float32 rounding, before training has amplified it."""
        a, b = (np.asarray(self.losses[e][:steps]) for e in ENGINES)
        return float(np.max(np.abs(a - b) / np.abs(b)))

    def epoch_loss_gap(self):
        """Largest relative difference of the two engines' mean loss over an epoch."""
        a, b = (np.asarray(self.losses[e]).reshape(-1, self.steps_per_epoch).mean(axis=1)
                for e in ENGINES)
        return float(np.max(np.abs(a - b) / np.abs(b)))


def train_pair(name, build, batches, loss_fn, *, epochs, lr, seed, clip=None):
    """Trains ``build(namespace)`` on both engines from the same initial weights.

    ``batches(epoch)`` returns the epoch's list of batches (tuples of tensors), called once
    per epoch and given to both engines; ``loss_fn(model, batch)`` returns the scalar loss.
    ``clip``: a maximal gradient norm (torch.nn.utils.clip_grad_norm_), or None.
    """
    namespaces = engines()
    models = {}
    for engine in reversed(ENGINES):  # torch.nn first: its initial weights are the reference
        torch.manual_seed(seed)
        models[engine] = build(namespaces[engine])
    models = {e: models[e] for e in ENGINES}
    initial = copy.deepcopy(models["torch"].state_dict())
    models["lstmcore"].load_state_dict(initial)
    optimizers = {e: torch.optim.Adam(models[e].parameters(), lr=lr) for e in ENGINES}
    run = Run(name, models, initial)
    bar = None
    for epoch in range(epochs):
        data = batches(epoch)
        if bar is None:
            run.steps_per_epoch = len(data)
            bar = tqdm(total=2 * epochs * len(data), desc=name, unit="batch", dynamic_ncols=True)
        # alternate which engine goes first, so neither always runs on a warmer cache
        order = ENGINES if epoch % 2 == 0 else ENGINES[::-1]
        for engine in order:
            model, opt = models[engine], optimizers[engine]
            model.train()
            losses = run.losses[engine]
            t0 = time.perf_counter()
            for batch in data:
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model, batch)
                loss.backward()
                if clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                opt.step()
                losses.append(loss.item())
                bar.update(1)
            run.epoch_seconds[engine].append(time.perf_counter() - t0)
        bar.set_postfix({e: f"{run.losses[e][-1]:.4g}" for e in ENGINES})
    bar.close()
    return run


def batched(tensors, batch_size, order):
    """The batches of one epoch: ``tensors`` (same first dimension) indexed by ``order``
    (a permutation) in slices of ``batch_size`` (the last one may be shorter)."""
    order = torch.as_tensor(order)
    return [tuple(t[order[k:k + batch_size]] for t in tensors)
            for k in range(0, len(order), batch_size)]


@torch.no_grad()
def predict(model, x, batch_size=1024):
    """``model(x)`` in evaluation mode, in slices of ``batch_size``."""
    model.eval()
    return torch.cat([model(x[k:k + batch_size]) for k in range(0, len(x), batch_size)])
