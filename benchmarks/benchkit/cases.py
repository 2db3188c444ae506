"""The shapes a benchmark runs, as plain dictionaries every process can rebuild its data from.

A case is a JSON-able dict: cell, variant, T, B, I, H, mode ("infer", "train" or "step"),
the sequence lengths (None: every sequence runs all T steps), a label and an id. The data
(weights, x, dy) are not passed around: each engine's process makes them from the seed and
the shapes (engines.Data), so every engine computes on the same numbers.
"""
from __future__ import annotations

import math
import re

# name: (T, B, I = H)
CONFIGS = {
    "S": (50, 1, 128),
    "M": (100, 16, 256),
    "L": (100, 64, 512),
    "XL": (50, 128, 1024),
}
GATES = {"lstm": 4, "gru": 3}
MODES = ("infer", "train")
# Extra LSTM rows of the compass table (lstmcore's general path), see README.md.
VARIANTS = ("peepholes", "proj", "hard_sigmoid", "sigmoid_general")

# The grid of issue 17: T = 50, I = H.
GRID_T = 50
GRID_H = (128, 256, 512, 1024)
GRID_B = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# --quick: the corners and the middle of the grid (about a sixth of its cost).
QUICK_GRID_H = (128, 512, 1024)
QUICK_GRID_B = (1, 16, 128)


def parse_config(text: str) -> tuple[str, tuple[int, int, int]]:
    """A config name (S, M, L, XL) or a literal TxBxH (I = H): (label, (T, B, H))."""
    t = text.strip()
    for name, shape in CONFIGS.items():
        if t.lower() == name.lower():
            return name, shape
    m = re.fullmatch(r"(\d+)x(\d+)x(\d+)", t.lower())
    if m:
        shape = tuple(int(v) for v in m.groups())
        if min(shape) < 1:
            raise ValueError(f"config {text!r}: every size must be >= 1")
        return t.lower(), shape
    raise ValueError(f"unknown config {text!r}: use one of {', '.join(CONFIGS)} or TxBxH (e.g. 50x16x256)")


def forward_flops(cell: str, T: int, B: int, I: int, H: int, P: int | None = None, proj: bool = False) -> float:
    """Multiply-adds × 2 of the products of one forward pass: 2·T·B·((I + P)·G·H [+ H·P])."""
    P = H if P is None else P
    return 2.0 * T * B * ((I + P) * GATES[cell] * H + (H * P if proj else 0))


def make_case(cell: str, mode: str, T: int, B: int, H: int, *, I: int | None = None, variant: str = "plain",
              config: str | None = None, lengths: list[int] | None = None, tag: str = "") -> dict:
    I = H if I is None else I
    P = H // 2 if variant == "proj" else H
    flops = forward_flops(cell, T, B, I, H, P, proj=variant == "proj")
    if mode == "train":
        flops *= 3.0  # forward, then the data and weight gradients
    elif mode == "step":
        flops /= T    # per step
    cid = f"{cell}-{mode}-T{T}-B{B}-I{I}-H{H}" + ("" if variant == "plain" else f"-{variant}") + (f"-{tag}" if tag else "")
    return {"id": cid, "cell": cell, "mode": mode, "variant": variant, "T": T, "B": B, "I": I, "H": H, "P": P,
            "config": config or f"{T}x{B}x{H}", "lengths": lengths, "flops": flops}


def grid_cases(cells, modes, hs, bs, T: int = GRID_T) -> list[dict]:
    return [make_case(cell, mode, T, B, H, config="grid")
            for cell in cells for H in hs for B in bs for mode in modes]


def spread_lengths(T: int, B: int, seed: int, lo_frac: float = 0.25) -> list[int]:
    """B lengths evenly spread over [ceil(lo_frac·T), T] (T included), shuffled with `seed` so
    they arrive unsorted. The mean is about (1 + lo_frac)/2 of T: 62.5% at lo_frac = 1/4."""
    import numpy as np
    lo = max(1, math.ceil(lo_frac * T))
    if B == 1:
        return [T]
    lengths = np.rint(np.linspace(lo, T, B)).astype(np.int64)
    np.random.default_rng(seed).shuffle(lengths)
    return [int(v) for v in lengths]


def useful_fraction(lengths, T: int) -> float:
    return 1.0 if not lengths else sum(lengths) / (len(lengths) * T)
