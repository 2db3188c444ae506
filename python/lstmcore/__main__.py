"""`python -m lstmcore`: a self-check and demo of the installed build.

Builds a random LSTM, runs inference and one training step (forward + backward) on
random data, checks a sample of gradient entries against central finite differences
in float64, and prints shapes, timings, the check's result and the build's configuration.
Exit status 0 when the gradient check passes.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import lstmcore
from lstmcore._types import GATES, has_cell_state


def _median_ms(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def _loss(params, weights, cell):
    r = lstmcore.forward(**params, cell=cell)
    total = np.sum(r.y * weights["y"]) + np.sum(r.h_n * weights["h"])
    if r.c_n is not None:
        total += np.sum(r.c_n * weights["c"])
    return float(total)


def gradient_check(cell="lstm", samples=24, seed=0):
    """Largest relative error of `samples` gradient entries against central differences."""
    rng = np.random.default_rng(seed)
    T, B, I, H = 9, 3, 5, 7
    G = GATES[cell]
    params = dict(x=rng.standard_normal((T, B, I)), w_x=0.4 * rng.standard_normal((I, G * H)),
                  w_h=0.4 * rng.standard_normal((H, G * H)), b=0.1 * rng.standard_normal(G * H),
                  b_h=0.1 * rng.standard_normal(G * H), h0=rng.standard_normal((B, H)))
    if has_cell_state(cell):
        params["c0"] = rng.standard_normal((B, H))
    weights = dict(y=rng.standard_normal((T, B, H)), h=rng.standard_normal((B, H)),
                   c=rng.standard_normal((B, H)))
    res = lstmcore.forward(**params, cell=cell, training=True)
    grads = lstmcore.backward(res.cache, weights["y"], weights["h"],
                              weights["c"] if has_cell_state(cell) else None)
    analytic = dict(x=grads.dx, w_x=grads.dw_x, w_h=grads.dw_h, b=grads.db, b_h=grads.db_h,
                    h0=grads.dh0, c0=grads.dc0)
    names = list(params)
    worst, eps = 0.0, 1e-6
    for _ in range(samples):
        name = names[rng.integers(len(names))]
        arr = params[name]
        idx = tuple(rng.integers(n) for n in arr.shape)
        old = arr[idx]
        arr[idx] = old + eps
        up = _loss(params, weights, cell)
        arr[idx] = old - eps
        down = _loss(params, weights, cell)
        arr[idx] = old
        numeric = (up - down) / (2 * eps)
        err = abs(numeric - analytic[name][idx]) / max(abs(numeric), 1e-3)
        worst = max(worst, err)
    return worst


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m lstmcore", description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100, help="T (default 100)")
    ap.add_argument("--batch", type=int, default=16, help="B (default 16)")
    ap.add_argument("--input", type=int, default=128, help="I (default 128)")
    ap.add_argument("--hidden", type=int, default=128, help="H (default 128)")
    ap.add_argument("--threads", type=int, default=None, help="threads (default: OpenMP's)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    if args.threads:
        lstmcore.set_num_threads(args.threads)

    print(f"build: {lstmcore.build_info()}")
    T, B, I, H = args.steps, args.batch, args.input, args.hidden
    rng = np.random.default_rng(0)
    k = 1 / np.sqrt(H)
    x = rng.standard_normal((T, B, I), dtype=np.float32)
    w_x = rng.uniform(-k, k, (I, 4 * H)).astype(np.float32)
    w_h = rng.uniform(-k, k, (H, 4 * H)).astype(np.float32)
    b = rng.uniform(-k, k, 4 * H).astype(np.float32)
    b_h = rng.uniform(-k, k, 4 * H).astype(np.float32)
    print(f"LSTM float32: x {x.shape}, w_x {w_x.shape}, w_h {w_h.shape}, b {b.shape}")

    res = lstmcore.forward(x, w_x, w_h, b, b_h)
    print(f"forward: y {res.y.shape}, h_n {res.h_n.shape}, c_n {res.c_n.shape}")
    flops = 2.0 * T * B * (I + H) * 4 * H
    t_inf = _median_ms(lambda: lstmcore.forward(x, w_x, w_h, b, b_h, out=res.y), args.repeats)
    print(f"inference: {t_inf:.3f} ms median of {args.repeats} ({flops / t_inf / 1e6:.1f} GFLOP/s)")

    dy = rng.standard_normal(res.y.shape, dtype=np.float32)

    def train_step():
        r = lstmcore.forward(x, w_x, w_h, b, b_h, training=True)
        return lstmcore.backward(r.cache, dy)

    grads = train_step()
    print("backward: " + ", ".join(f"{n} {None if g is None else g.shape}"
                                   for n, g in zip(grads._fields, grads)))
    t_train = _median_ms(train_step, args.repeats)
    print(f"training step (forward + backward): {t_train:.3f} ms median "
          f"({3 * flops / t_train / 1e6:.1f} GFLOP/s)")

    ok = True
    for cell in ("lstm", "gru", "rnn_tanh", "rnn_relu"):
        err = gradient_check(cell)
        passed = err < 1e-6
        ok &= passed
        print(f"gradient check ({cell}, float64, 24 entries vs central differences): "
              f"max relative error {err:.2e} -> {'ok' if passed else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
