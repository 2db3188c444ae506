"""Timing one callable: warm-up, calibration, samples, median.

A sample repeats a short call until it lasts at least `min_sample_s` (per-call time = sample
time / calls), so tiny cases are timed as precisely as big ones without thousands of samples;
an expensive case takes fewer samples (never fewer than `min_repeats`) so that its samples stay
within `max_case_s`. The garbage collector is off while samples are taken.
"""
from __future__ import annotations

import dataclasses
import gc
import math
import statistics
import time


@dataclasses.dataclass
class TimingOptions:
    warmup: int = 2           # untimed calls in all, the engine's check call and the calibration included
    min_sample_s: float = 0.02
    repeats: int = 7          # samples per case (the median is reported) ...
    min_repeats: int = 3      # ... cut down to this for a case whose samples would pass max_case_s
    max_case_s: float = 3.0
    max_inner: int = 100000

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def calibrate(fn, opts: TimingOptions) -> tuple[int, float]:
    """Runs fn untimed (the warm-up beyond the check call) and returns (calls per sample, seconds per call)."""
    for _ in range(max(0, opts.warmup - 2)):
        fn()
    n = 1
    target = min(0.05, opts.min_sample_s)
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt >= target or n >= opts.max_inner:
            break
        n = min(opts.max_inner, n * 4 if dt < target / 8 else math.ceil(n * 1.5 * target / max(dt, 1e-9)))
    t_call = dt / n
    inner = max(1, min(opts.max_inner, math.ceil(opts.min_sample_s / max(t_call, 1e-12))))
    return inner, t_call


def summarize(samples_s: list[float]) -> dict:
    s = sorted(samples_s)
    med = statistics.median(s)
    q1, q3 = (statistics.quantiles(s, n=4)[0], statistics.quantiles(s, n=4)[2]) if len(s) >= 2 else (med, med)
    return {"median_ms": med * 1e3, "min_ms": s[0] * 1e3, "max_ms": s[-1] * 1e3,
            "iqr_rel": (q3 - q1) / med if med > 0 else None, "times_ms": [t * 1e3 for t in samples_s]}


def measure(fn, opts: TimingOptions) -> dict:
    """fn has been called once already (the check). Returns summarize() plus inner_loops and samples."""
    inner, t_call = calibrate(fn, opts)
    sample_s = inner * t_call
    n = max(1, opts.repeats)
    if n * sample_s > opts.max_case_s:
        n = max(min(opts.min_repeats, n), int(opts.max_case_s // max(sample_s, 1e-12)))
    samples = []
    gc_was_on = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            samples.append((time.perf_counter() - t0) / inner)
    finally:
        if gc_was_on:
            gc.enable()
    out = summarize(samples)
    out.update(inner_loops=inner, samples=n)
    return out
