#!/usr/bin/env python3
"""lstmcore's CUDA backend beside cuDNN (torch.nn.LSTM / torch.nn.GRU on the GPU).

Needs a CUDA build of lstmcore (`pip install . -C cmake.define.LSTMCORE_CUDA=ON`), PyTorch
with CUDA and a GPU; without them it prints why and exits 0. From the repository root:

    python benchmarks/bench_cuda.py                       # S, M, L, XL; LSTM and GRU; inference and training
    python benchmarks/bench_cuda.py --configs S,M --cells lstm --repeats 11
    python benchmarks/bench_cuda.py --tf32                # both sides may use TF32 tensor cores

Both implementations get the same float32 weights and inputs on the same device and stream.
Each case is checked for agreement first (relative norm of y, and in training of dx), then
timed with CUDA events: a sample is `inner` back-to-back calls (enough for >= --min-sample-ms),
the time per call is sample / inner, and the median of --repeats samples is reported.
Timings are reported, never asserted. JSON: benchmarks/results/cuda_<gpu>.json unless --json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import re
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIGS = {"S": (50, 1, 128), "M": (100, 16, 256), "L": (100, 64, 512), "XL": (50, 128, 1024)}  # T, B, I = H
GATES = {"lstm": 4, "gru": 3}
MISMATCH_TOL = 1e-3  # float32 over <= 100 steps in two summation orders: ~1e-6 .. 1e-5


def unavailable():
    """Why this machine cannot run the benchmark, or None."""
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA device visible to PyTorch (or a CPU-only PyTorch)"
    try:
        from lstmcore import _cuda
    except ImportError as exc:
        return f"lstmcore does not import: {exc}"
    if not _cuda.built():
        return "lstmcore was built without CUDA (pip install . -C cmake.define.LSTMCORE_CUDA=ON)"
    if _cuda.device_count() == 0:
        return "lstmcore's CUDA backend sees no device"
    return None


def make_case(torch, cell, T, B, H, seed=0):
    """Inputs and weights in lstmcore's layout and a cuDNN module holding the same weights."""
    dev = torch.device("cuda", torch.cuda.current_device())
    g = torch.Generator(device="cpu").manual_seed(seed)
    G = GATES[cell] * H
    k = 1.0 / H ** 0.5

    def uni(*shape):
        return ((torch.rand(*shape, generator=g) * 2 - 1) * k).to(dev)

    w = dict(w_x=uni(H, G), w_h=uni(H, G), b=uni(G), b_h=uni(G))  # I = H
    x = torch.randn(T, B, H, generator=g).to(dev)
    h0 = torch.zeros(B, H, device=dev)
    mod = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(H, H).to(dev)
    with torch.no_grad():
        mod.weight_ih_l0.copy_(w["w_x"].t())
        mod.weight_hh_l0.copy_(w["w_h"].t())
        mod.bias_ih_l0.copy_(w["b"])
        mod.bias_hh_l0.copy_(w["b_h"])
    mod.flatten_parameters()
    return dict(x=x, h0=h0, c0=h0.clone() if cell == "lstm" else None, dy=torch.randn(T, B, H, generator=g).to(dev),
                mod=mod, **w)


def runners(torch, lstmcore, cell, case, mode):
    """(lstmcore call, cuDNN call), each returning (y, dx or None)."""
    c = case
    state = (c["h0"][None], c["c0"][None]) if cell == "lstm" else c["h0"][None]

    def ours():
        res = lstmcore.forward(c["x"], c["w_x"], c["w_h"], c["b"], c["b_h"], c["h0"], c["c0"], cell=cell,
                               training=mode == "train")
        if mode == "infer":
            return res.y, None
        return res.y, lstmcore.backward(res.cache, c["dy"]).dx

    def cudnn():
        if mode == "infer":
            with torch.no_grad():
                return c["mod"](c["x"], state)[0], None
        x = c["x"].detach().requires_grad_(True)
        for p in c["mod"].parameters():
            p.grad = None
        y = c["mod"](x, state)[0]
        y.backward(c["dy"])
        return y, x.grad

    return ours, cudnn


def rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


def time_call(torch, fn, repeats, warmup, min_sample_ms):
    """Per-call milliseconds of `repeats` samples, each timed with CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    inner = 1
    while True:  # calibrate: enough calls for one sample to last min_sample_ms
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        end.synchronize()
        ms = start.elapsed_time(end)
        if ms >= min_sample_ms or inner >= 1 << 12:
            break
        inner *= 2
    samples = []
    for _ in range(repeats):
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / inner)
    return samples, inner


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="S,M,L,XL")
    ap.add_argument("--cells", default="lstm,gru")
    ap.add_argument("--modes", default="infer,train")
    ap.add_argument("--repeats", type=int, default=7, help="timed samples per case (median reported; >= 7)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--min-sample-ms", type=float, default=20.0)
    ap.add_argument("--tf32", action="store_true", help="allow TF32 tensor cores on both sides (default off)")
    ap.add_argument("--json", default=None, help="output path (default benchmarks/results/cuda_<gpu>.json)")
    args = ap.parse_args(argv)
    args.repeats = max(args.repeats, 7)

    why = unavailable()
    if why:
        print(f"bench_cuda: nothing to measure here: {why}")
        return 0

    import torch

    import lstmcore
    from lstmcore import _cuda

    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    torch.backends.cudnn.benchmark = False
    _cuda.set_tf32(args.tf32)

    gpu = torch.cuda.get_device_name()
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "gpu": gpu,
            "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "lstmcore": lstmcore.build_info(), "tf32": args.tf32, "repeats": args.repeats,
            "dtype": "float32", "timing": "CUDA events, median of per-call times"}
    rows = []
    print(f"# lstmcore CUDA vs cuDNN on {gpu} (float32, TF32 {'on' if args.tf32 else 'off'})\n")
    print("| config | T | B | I=H | cell | mode | lstmcore ms | cuDNN ms | lstmcore / cuDNN | rel. diff |")
    print("|---|--:|--:|--:|---|---|--:|--:|--:|--:|")
    for name in args.configs.split(","):
        T, B, H = CONFIGS[name]
        for cell in args.cells.split(","):
            case = make_case(torch, cell, T, B, H)
            for mode in args.modes.split(","):
                ours, cudnn = runners(torch, lstmcore, cell, case, mode)
                y1, dx1 = ours()
                y2, dx2 = cudnn()
                diff = max(rel(y1, y2), rel(dx1, dx2) if dx1 is not None else 0.0)
                row = {"config": name, "T": T, "B": B, "I": H, "H": H, "cell": cell, "mode": mode, "rel_diff": diff}
                for impl, fn in (("lstmcore", ours), ("cudnn", cudnn)):
                    samples, inner = time_call(torch, fn, args.repeats, args.warmup, args.min_sample_ms)
                    row[impl] = {"median_ms": statistics.median(samples), "samples_ms": samples,
                                 "calls_per_sample": inner}
                rows.append(row)
                a, b = row["lstmcore"]["median_ms"], row["cudnn"]["median_ms"]
                flag = " MISMATCH" if diff > MISMATCH_TOL else ""
                print(f"| {name} | {T} | {B} | {H} | {cell} | {mode} | {a:.3f} | {b:.3f} | {a / b:.2f} | "
                      f"{diff:.1e}{flag} |", flush=True)

    path = Path(args.json) if args.json else HERE / "results" / f"cuda_{re.sub(r'[^A-Za-z0-9]+', '_', gpu)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "results": rows}, indent=1))
    print(f"\nJSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
