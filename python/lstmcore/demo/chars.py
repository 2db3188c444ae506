"""chars: a character-level language model, trained on the source text every Python
installation carries: the standard library's top-level modules (Lib/*.py, a few MB).

Every tenth file (in name order) is held out. The LSTM reads windows of ``steps``
characters drawn at random offsets from the other files and predicts each next character;
an "epoch" here is ``batches`` such batches. After training, the bits per character on the
held-out files (read as ``batch`` long streams, the state carried from chunk to chunk) and a
sample of generated text, printed and saved as chars_sample.txt.
"""
from __future__ import annotations

import math
import os
import sysconfig
from glob import glob

import numpy as np
import torch

from . import _plot
from ._report import Row
from ._train import ENGINES, LABELS, train_pair

SIZES = {
    "full": dict(hidden=256, embed=32, steps=100, batch=32, batches=400, epochs=4, lr=3e-3,
                 eval_chars=200_000, sample=600),
    "quick": dict(hidden=128, embed=32, steps=64, batch=32, batches=150, epochs=4, lr=5e-3,
                  eval_chars=30_000, sample=300),
    "tiny": dict(hidden=8, embed=4, steps=12, batch=4, batches=3, epochs=2, lr=5e-3,
                 eval_chars=400, sample=40),
}
#: tab, newline and printable ASCII; everything else becomes the last symbol
VOCAB = "\t\n" + "".join(map(chr, range(32, 127))) + "\N{REPLACEMENT CHARACTER}"
OTHER = len(VOCAB) - 1
PROMPT = "def "
TEMPERATURE = 0.7


def source_files():
    """The standard library's top-level .py files, sorted by name: the folder of the ``os``
    module, else sysconfig's stdlib path."""
    folders = [os.path.dirname(getattr(os, "__file__", "") or ""), sysconfig.get_paths()["stdlib"]]
    for folder in folders:
        files = sorted(glob(os.path.join(folder, "*.py"))) if folder else []
        if files:
            return files
    raise FileNotFoundError(f"no Lib/*.py files found in {folders}")


def split_files(files):
    """(training files, held-out files): every tenth file is held out."""
    return [f for k, f in enumerate(files) if k % 10 != 9], files[9::10]


def encode(text):
    """The symbols' indices in VOCAB (int64)."""
    codes = np.frombuffer(text.encode("utf-32-le"), np.uint32)
    table = np.full(128, OTHER, np.int64)
    for k, ch in enumerate(VOCAB[:-1]):
        table[ord(ch)] = k
    return np.where(codes < 128, table[np.minimum(codes, 127)], OTHER)


def decode(indices):
    return "".join(VOCAB[int(k)] for k in indices)


def read(files):
    """The files' text, one after the other, encoded."""
    parts = []
    for name in files:
        with open(name, encoding="utf-8", errors="replace") as fh:
            parts.append(fh.read())
    return encode("".join(parts))


class CharModel(torch.nn.Module):
    """Embedding -> LSTM (``nn.LSTM`` of either engine) -> logits over VOCAB."""

    def __init__(self, nn, embed, hidden):
        super().__init__()
        self.embed = torch.nn.Embedding(len(VOCAB), embed)
        self.rnn = nn.LSTM(embed, hidden, batch_first=True)
        self.head = torch.nn.Linear(hidden, len(VOCAB))

    def forward(self, x, state=None):
        y, state = self.rnn(self.embed(x), state)
        return self.head(y), state


def next_char_loss(model, batch):
    x, target = batch
    logits, _ = model(x)
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))


@torch.no_grad()
def bits_per_char(model, codes, streams, steps):
    """Mean −log2 p(next character) over ``codes``, read as ``streams`` parallel streams in
    chunks of ``steps``, the state carried across chunks."""
    model.eval()
    n = (len(codes) - 1) // streams
    idx = np.arange(streams)[:, None] * n + np.arange(n + 1)[None, :]
    data = torch.from_numpy(codes[idx])
    total, state = 0.0, None
    for k in range(0, n, steps):
        x, target = data[:, k:min(k + steps, n)], data[:, k + 1:min(k + steps, n) + 1]
        logits, state = model(x, state)
        total += float(torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="sum"))
    return total / (streams * n) / math.log(2)


@torch.no_grad()
def generate(model, length, seed):
    """PROMPT followed by ``length`` characters drawn from the model at TEMPERATURE."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    logits, state = model(torch.from_numpy(encode(PROMPT))[None, :])
    out = []
    for _ in range(length):
        p = torch.softmax(logits[0, -1] / TEMPERATURE, dim=0)
        nxt = torch.multinomial(p, 1, generator=gen)
        out.append(int(nxt))
        logits, state = model(nxt.view(1, 1), state)
    return PROMPT + decode(out)


def unigram_bits(train, held):
    """Bits per character of the held-out text under the training text's character
    frequencies (add-one smoothed): what knowing no context gives."""
    p = np.bincount(train, minlength=len(VOCAB)) + 1.0
    p /= p.sum()
    return float(-np.mean(np.log2(p[held])))


def run(settings):
    s = settings.pick(SIZES)
    train_files, held_files = split_files(source_files())
    train, held = read(train_files), read(held_files)[:s["eval_chars"] + 1]
    data = torch.from_numpy(train)
    span = np.arange(s["steps"] + 1)

    def batches(epoch):
        rng = np.random.default_rng([settings.seed, epoch])
        starts = rng.integers(0, len(train) - len(span), (s["batches"], s["batch"]))
        windows = data[torch.from_numpy(starts[..., None] + span)]
        return [(w[:, :-1], w[:, 1:]) for w in windows]

    def build(nn):
        return CharModel(nn, s["embed"], s["hidden"])

    r = train_pair("chars LSTM", build, batches, next_char_loss, epochs=s["epochs"], lr=s["lr"],
                   seed=settings.seed, clip=1.0)
    bpc = {e: bits_per_char(m, held, s["batch"], s["steps"]) for e, m in r.models.items()}
    unigram = unigram_bits(train, held)
    row = Row.of(r, "chars", f"LSTM H={s['hidden']}, {s['steps']} steps", "held-out bits/char", bpc,
                 baseline=f"{unigram:.3g} (character frequencies)")

    samples = {e: generate(m, s["sample"], settings.seed) for e, m in r.models.items()}
    with open(os.path.join(settings.out, "chars_sample.txt"), "w", encoding="utf-8") as fh:
        fh.write(f"Trained on {len(train_files)} files of {os.path.dirname(train_files[0])} "
                 f"({len(train):,} characters); held out: "
                 f"{', '.join(os.path.basename(f) for f in held_files)}.\n"
                 f"Samples at temperature {TEMPERATURE}, same random stream for both engines.\n")
        for e in ENGINES:
            fh.write(f"\n===== {LABELS[e]} (held-out {bpc[e]:.3f} bits/char) =====\n{samples[e]}\n")
    print(f"\nchars: text generated by the LSTM trained with {LABELS['lstmcore']} "
          f"(held-out {bpc['lstmcore']:.3f} bits/char):\n{'-' * 72}\n{samples['lstmcore']}\n{'-' * 72}")

    fig, (ax,) = _plot.figure(1, width=7.0)
    _plot.loss_curves(ax, [r], labels=["LSTM"], ylabel="bits per character", scale=1 / math.log(2),
                      log=False)
    for k, e in enumerate(ENGINES):
        ax.axhline(bpc[e], color=("tab:green", "tab:olive")[k], lw=1, ls=_plot.STYLE[e]["ls"],
                   label=f"held-out, {LABELS[e]}: {bpc[e]:.3f}")
    ax.axhline(unigram, color="0.5", lw=0.8, ls=":", label=f"character frequencies: {unigram:.2f}")
    ax.legend(fontsize=8)
    ax.set_title("chars: next-character loss on the standard library's source")
    _plot.save(fig, settings.out, "chars.png")
    return [row], [r]
