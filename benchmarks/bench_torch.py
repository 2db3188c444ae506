#!/usr/bin/env python3
"""End-to-end training step in PyTorch: torch.nn against lstmcore.torch (lstmcore.torch.convert).

The model: embedding → 2-layer LSTM (or GRU), hidden 256 → linear over every step, cross entropy
against the next token, Adam; batch 32, 100 steps, float32. One training step = zero_grad, forward,
loss, backward, optimizer step.

    python benchmarks/bench_torch.py                        # LSTM and GRU, 2 threads
    python benchmarks/bench_torch.py --cells gru --rounds 3 --steps 10
    python benchmarks/bench_torch.py --env OMP_WAIT_POLICY=passive   # a setting for both engines

Each engine runs in its own process (PyTorch's and lstmcore's OpenMP threads would otherwise share
the cores and the spin-waits of one would be billed to the other), started alternately — torch,
lstmcore, torch, lstmcore … for --rounds rounds — so a drift of the machine's speed hits both. Each
process times --steps steps after --warmup untimed ones and reports their median; the figure of an
engine is the median over its rounds. Both engines start from the same weights and data, and the
script checks that their first losses agree (float32, relative 1e-4) before timing.

The lstmcore process also measures the recurrent layers alone (forward + backward of the converted
module on a fixed input, nothing else in between) and inside the training step (the same call with
the embedding, the linear layer, the loss and Adam — torch's work — right before it): the ratio says
how much lstmcore slows down when torch's threads have just run.

Timings are reported, never asserted. Output: a table on stdout, every figure in a JSON file under
benchmarks/results/ (--json).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
ENGINES = ("torch", "lstmcore")
GOALS = {"lstm": 1.2, "gru": 2.0}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def cpu_model():
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    return m.group(1).strip() if m else "unknown"


def cpu_flags():
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    m = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    flags = set(m.group(1).split()) if m else set()
    return sorted(f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16") if f in flags)


# --------------------------------------------------------------------------------------------
# the worker: one engine in this process


def worker(args):
    import torch

    torch.set_num_threads(args.threads)
    if args.engine == "lstmcore":
        import lstmcore
        import lstmcore.torch as lt

    class Model(torch.nn.Module):
        def __init__(self, cell):
            super().__init__()
            self.emb = torch.nn.Embedding(args.vocab, args.embed)
            rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
            self.rnn = rnn(args.embed, args.hidden, num_layers=args.layers)
            self.head = torch.nn.Linear(args.hidden, args.vocab)

        def forward(self, tokens):
            y, _ = self.rnn(self.emb(tokens))
            return self.head(y)

    torch.manual_seed(0)
    model = Model(args.cell)
    if args.engine == "lstmcore":
        lt.convert(model)
        assert type(model.rnn).__module__.startswith("lstmcore.torch")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, args.vocab, (args.T + 1, args.batch), generator=g)
    inputs, targets = tokens[:-1], tokens[1:]

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model(inputs)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, args.vocab), targets.reshape(-1))
        loss.backward()
        opt.step()
        return loss

    first_loss = float(step().detach())
    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    result = {"engine": args.engine, "cell": args.cell, "first_loss": first_loss, "step_s": times,
              "median_s": statistics.median(times), "torch_threads": torch.get_num_threads(),
              "torch": torch.__version__, "parallel_info": torch.__config__.parallel_info().splitlines()[:4]}
    if args.engine == "torch":  # the same probe with torch's own recurrent layers, for reference
        result.update(spin_probe(args, model, inputs, targets, torch))
    if args.engine == "lstmcore":
        result.update(lstmcore_threads=lstmcore.get_num_threads(), isa=lstmcore.get_isa(),
                      build_info=lstmcore.build_info())
        result.update(spin_probe(args, model, inputs, targets, torch))
    print(json.dumps(result))


def spin_probe(args, model, inputs, targets, torch):
    """The recurrent layers' forward + backward alone, and right after torch's part of a training step
    (embedding, linear layer, loss, their backward and an Adam step: torch's threads have just run)."""
    x = model.emb(inputs).detach()
    y_fixed = torch.randn(args.T, args.batch, args.hidden)
    others = list(model.head.parameters()) + list(model.emb.parameters())
    opt = torch.optim.Adam(others, lr=0.0)

    def rnn_only():
        t0 = time.perf_counter()
        y, _ = model.rnn(x)
        y.sum().backward()
        return time.perf_counter() - t0

    def torch_part():
        opt.zero_grad(set_to_none=True)
        logits = model.head(y_fixed)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, args.vocab), targets.reshape(-1))
        (loss + model.emb(inputs).square().mean()).backward()
        opt.step()

    for _ in range(args.warmup):
        rnn_only()
        torch_part()
    alone, after = [], []
    for _ in range(args.steps):  # interleaved, so a drift of the machine's speed hits both
        alone.append(rnn_only())
        torch_part()
        after.append(rnn_only())
    a, b = statistics.median(alone), statistics.median(after)
    return {"rnn_alone_s": alone, "rnn_after_torch_s": after, "rnn_alone_median_s": a,
            "rnn_after_torch_median_s": b, "slowdown_after_torch": b / a}


# --------------------------------------------------------------------------------------------
# the driver


def run_worker(args, engine, cell, env_extra):
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--engine", engine, "--cell", cell]
    for name in ("threads", "steps", "warmup", "T", "batch", "hidden", "embed", "vocab", "layers"):
        cmd += [f"--{name}", str(getattr(args, name))]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads), **env_extra)
    python_dir = str(HERE.parent / "python")
    if (HERE.parent / "python" / "lstmcore").is_dir():  # the source tree's package when it has a build
        env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), python_dir) if p)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{engine} {cell} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", default="lstm,gru")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5, help="processes per engine, alternating")
    p.add_argument("--steps", type=int, default=20, help="timed training steps per process")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--T", type=int, default=100)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--embed", type=int, default=256)
    p.add_argument("--vocab", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="an environment variable for both engines' processes (repeatable)")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--json", default=None)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--engine", choices=ENGINES, help=argparse.SUPPRESS)
    p.add_argument("--cell", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)

    env_extra = dict(kv.split("=", 1) for kv in args.env)
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    results = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "cpu": cpu_model(), "cpu_flags": cpu_flags(), "nproc": os.cpu_count(), "args": vars(args),
               "env": env_extra, "cells": {}}
    rows = []
    for cell in cells:
        runs = {e: [] for e in ENGINES}
        for r in range(args.rounds):
            for engine in ENGINES:
                res = run_worker(args, engine, cell, env_extra)
                runs[engine].append(res)
                log(f"{cell} round {r + 1}/{args.rounds} {engine}: {1e3 * res['median_s']:.1f} ms/step")
        l0, t0 = runs["lstmcore"][0]["first_loss"], runs["torch"][0]["first_loss"]
        agree = abs(l0 - t0) <= 1e-4 * abs(t0)
        med = {e: statistics.median(r["median_s"] for r in runs[e]) for e in ENGINES}
        slow = statistics.median(r["slowdown_after_torch"] for r in runs["lstmcore"])
        ratio = med["torch"] / med["lstmcore"]
        results["cells"][cell] = {"runs": runs, "median_step_s": med, "ratio_torch_over_lstmcore": ratio,
                                  "goal": GOALS.get(cell), "first_losses_agree": agree,
                                  "lstmcore_rnn_slowdown_after_torch": slow}
        rows.append((cell, med["torch"], med["lstmcore"], ratio, GOALS.get(cell), slow, agree))

    print(f"\nTraining step: embedding → {args.layers}-layer RNN (H {args.hidden}) → linear, B {args.batch}, "
          f"T {args.T}, float32, {args.threads} threads; {results['cpu']} ({', '.join(results['cpu_flags'])})"
          + (f"; env {env_extra}" if env_extra else "") + "\n")
    print("| cell | torch.nn ms/step | lstmcore.torch ms/step | torch / lstmcore | goal "
          "| lstmcore RNN after torch / alone | losses agree |")
    print("|---|--:|--:|--:|--:|--:|---|")
    for cell, t, c, ratio, goal, slow, agree in rows:
        print(f"| {cell.upper()} | {1e3 * t:.1f} | {1e3 * c:.1f} | {ratio:.2f}× | ≥ {goal}× | {slow:.2f} | "
              f"{'yes' if agree else 'NO'} |")
    path = Path(args.json) if args.json else RESULTS_DIR / (
        "torch_train_" + re.sub(r"[^a-z0-9]+", "-", results["cpu"].lower()).strip("-")[:40] + f"_{args.threads}t.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
