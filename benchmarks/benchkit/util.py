"""Small helpers every part of the benchmark uses."""
from __future__ import annotations

import math
import os
import sys

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def thread_env(threads: int, base: dict | None = None) -> dict:
    """An environment with every OpenMP/BLAS runtime pinned to `threads` (set before any import)."""
    env = dict(os.environ if base is None else base)
    for var in THREAD_ENV_VARS:
        env[var] = str(threads)
    return env


def fmt(v, spec: str, na: str = "n/a") -> str:
    return na if v is None else format(v, spec)


def geomean(values):
    vals = [v for v in values if v is not None and v > 0]
    if not vals:
        return None
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


def markdown_table(header: list[str], rows: list[list[str]], left: int = 1) -> str:
    """A pipe table; the first `left` columns left-aligned, the rest right-aligned."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i < left else "--:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
