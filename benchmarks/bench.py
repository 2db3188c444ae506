#!/usr/bin/env python3
"""lstmcore beside PyTorch (CPU) and ONNX Runtime: time, GFLOP/s, ratios, FMA peak, training memory.

Run from the repository root after `pip install . torch==2.13.0 onnx onnxruntime matplotlib`:

    python benchmarks/bench.py                  # every config, LSTM and GRU, inference and training
    python benchmarks/bench.py --quick          # S and M only, 3 repeats: a smoke run
    python benchmarks/bench.py --configs L --cells gru --modes train --threads 1

All implementations run in this one process on the same float32 weights and inputs, with the same
thread count. Every case is checked for agreement before it is timed (a benchmark of a wrong result
is worthless). Timings are reported, never asserted: the script exits 0 whatever it measures, and an
implementation that is not installed, or fails on a case, is reported as n/a with the reason.
See benchmarks/README.md for what each column means.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import hashlib
import json
import math
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
FMA_SOURCE = HERE / "fma_peak.cpp"

# name: (T, B, I=H)
CONFIGS = {
    "S": (50, 1, 128),
    "M": (100, 16, 256),
    "L": (100, 64, 512),
    "XL": (50, 128, 1024),
}
GATES = {"lstm": 4, "gru": 3}
IMPLS = ("lstmcore", "torch", "onnxruntime")
PEERS = ("torch", "onnxruntime")
SHORT = {"lstmcore": "lstmcore", "torch": "torch", "onnxruntime": "ORT"}
MODES = ("infer", "train")
# Extra LSTM rows for the cell variants (lstmcore's general path), at --variant-configs:
#   peepholes        beside ONNX Runtime's LSTM with its P input (PyTorch has no peepholes)
#   proj             LSTMP with P = H/2 beside torch.nn.LSTM(proj_size=P) (ONNX has no projection)
#   hard_sigmoid     gates through hard_sigmoid beside ONNX Runtime's HardSigmoid LSTM
#   sigmoid_general  the plain cell forced onto the general path (clip=1e30, which clips
#                    nothing): hard_sigmoid's time against this row is the cost of the
#                    activation itself, both on the same path
VARIANTS = ("peepholes", "proj", "hard_sigmoid", "sigmoid_general")
# Relative-norm disagreement above which a case is flagged MISMATCH (float32 over <= 100 steps
# with different summation orders lands around 1e-6 .. 1e-5).
MISMATCH_TOL = 1e-3
# Pause before each timed sample (see time_round_robin).
SETTLE_S = 0.01


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

def csv_list(allowed, what):
    def parse(text):
        items = [s.strip() for s in text.split(",") if s.strip()]
        lower = {a.lower(): a for a in allowed}
        out = []
        for it in items:
            if it.lower() not in lower:
                raise argparse.ArgumentTypeError(f"unknown {what} {it!r}; choose from {', '.join(allowed)}")
            out.append(lower[it.lower()])
        if not out:
            raise argparse.ArgumentTypeError(f"empty {what} list")
        return out
    return parse


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Benchmark lstmcore against PyTorch CPU and ONNX Runtime (float32).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--threads", type=int, default=2, help="threads for every implementation")
    p.add_argument("--configs", type=csv_list(list(CONFIGS), "config"), default=None,
                   help="comma list of " + ",".join(f"{k}=(T{v[0]},B{v[1]},I=H{v[2]})" for k, v in CONFIGS.items())
                   + " (default: all; S,M with --quick)")
    p.add_argument("--cells", type=csv_list(list(GATES), "cell"), default=list(GATES), help="comma list")
    p.add_argument("--modes", type=csv_list(list(MODES), "mode"), default=list(MODES), help="comma list")
    p.add_argument("--impls", type=csv_list(list(IMPLS), "implementation"), default=list(IMPLS),
                   help="comma list of implementations to run")
    p.add_argument("--peers-only", action="store_true",
                   help="leave lstmcore out (develop the peers' paths before lstmcore builds)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed samples per case, the median is reported (default 7; 3 with --quick)")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls before timing (default 2; 1 with --quick)")
    p.add_argument("--min-sample-ms", type=float, default=20.0,
                   help="a sample repeats a short call until it lasts this long, then divides")
    p.add_argument("--variants", type=csv_list(list(VARIANTS), "variant"), default=list(VARIANTS),
                   help="LSTM variant rows (peepholes, projection, hard sigmoid), at --variant-configs")
    p.add_argument("--variant-configs", type=lambda t: csv_list(list(CONFIGS), "config")(t) if t.strip() else [],
                   default=["M"],
                   help="configs that get the variant rows ('' for none)")
    p.add_argument("--quick", action="store_true", help="fewer repeats, S and M only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None,
                   help="where to write results (default benchmarks/results/cpu_<cpu>_<N>t[_quick].json)")
    p.add_argument("--plot", default=None,
                   help="PNG of the ratios (default: the JSON path with .png; 'none' to skip)")
    p.add_argument("--no-memory", action="store_true", help="skip the training peak-memory measurement")
    p.add_argument("--no-fma-peak", action="store_true", help="skip compiling and running fma_peak.cpp")
    # Internal: one training step in a fresh process, prints its peak-memory increase as JSON.
    p.add_argument("--memory-child", nargs=3, metavar=("IMPL", "CELL", "CONFIG"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.threads < 1:
        p.error("--threads must be >= 1")
    if args.configs is None:
        args.configs = ["S", "M"] if args.quick else list(CONFIGS)
    if args.repeats is None:
        args.repeats = 3 if args.quick else 7
    if args.warmup is None:
        args.warmup = 1 if args.quick else 2
    args.repeats = max(1, args.repeats)
    args.warmup = max(0, args.warmup)
    if args.peers_only:
        args.impls = [i for i in args.impls if i != "lstmcore"]
    return args


def pin_threads_env(threads: int) -> None:
    """Before any numerical library is imported: one thread count for every OpenMP/BLAS runtime."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)


# --------------------------------------------------------------------------------------------
# Machine facts
# --------------------------------------------------------------------------------------------

def cpu_info() -> dict:
    info = {"model": platform.processor() or platform.machine(), "logical_cpus": os.cpu_count(), "flags": []}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    if m:
        info["model"] = m.group(1).strip()
    m = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    if m:
        flags = set(m.group(1).split())
        info["flags"] = sorted(f for f in flags if f in {"avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl",
                                                         "avx512_bf16", "avx512_vnni", "amx_tile", "f16c"})
    return info


def slug(text: str) -> str:
    s = re.sub(r"\((r|tm)\)", "", text.lower())
    s = re.sub(r"\b(cpu|processor|\d+-core)\b", "", s)
    s = re.sub(r"@.*$", "", s)
    s = re.sub(r"[^a-z0-9]+", "-", s).strip("-")
    return s[:48] or "unknown"


def cxx_version(cxx: str) -> str | None:
    try:
        out = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.splitlines()[0].strip() if out.returncode == 0 and out.stdout else None
    except (OSError, subprocess.SubprocessError):
        return None


def fma_peak(threads: int) -> dict:
    """Compile fma_peak.cpp once (cached by source hash and compiler) and run it on `threads` threads."""
    cxx = os.environ.get("CXX", "g++")
    res = {"gflops": None, "isa": None, "threads": threads, "compiler": cxx_version(cxx), "note": None}
    if not FMA_SOURCE.exists():
        res["note"] = f"{FMA_SOURCE} missing"
        return res
    if shutil.which(cxx) is None:
        res["note"] = f"compiler {cxx!r} not found"
        return res
    src = FMA_SOURCE.read_bytes()
    key = hashlib.sha256(src + (res["compiler"] or cxx).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path(tempfile.gettempdir()))) / "lstmcore-bench"
    exe = cache / f"fma_peak-{key}"
    try:
        if not exe.exists():
            cache.mkdir(parents=True, exist_ok=True)
            tmp = cache / f"fma_peak-{key}.{os.getpid()}.tmp"
            cmd = [cxx, "-O2", "-fopenmp", str(FMA_SOURCE), "-o", str(tmp)]
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if out.returncode != 0:
                res["note"] = f"compilation failed (exit {out.returncode})" + (
                    ": " + out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "")
                return res
            os.replace(tmp, exe)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        out = subprocess.run([str(exe), str(threads)], capture_output=True, text=True, timeout=300, env=env)
        kv = dict(line.split("=", 1) for line in out.stdout.split() if "=" in line)
        if out.returncode != 0 or "gflops" not in kv:
            res["note"] = f"fma_peak exited {out.returncode}: {out.stderr.strip()[-200:]}"
            return res
        res["gflops"] = float(kv["gflops"])
        res["isa"] = kv.get("isa")
    except (OSError, subprocess.SubprocessError, ValueError) as e:
        res["note"] = f"fma_peak failed: {e}"
    return res


# --------------------------------------------------------------------------------------------
# Implementations
# --------------------------------------------------------------------------------------------

def import_impls(wanted, notes: list) -> dict:
    """Import what is asked for; a missing package becomes a note, not an error."""
    mods = {}
    if "lstmcore" in wanted:
        try:
            import lstmcore
            if not hasattr(lstmcore, "forward"):
                raise ImportError("module has no forward() (the compiled core is not built?)")
            mods["lstmcore"] = lstmcore
        except Exception as e:  # noqa: BLE001 - anything the import raises means "skip"
            notes.append(f"lstmcore skipped: not importable ({type(e).__name__}: {e})")
    if "torch" in wanted:
        try:
            import torch
            mods["torch"] = torch
        except Exception as e:  # noqa: BLE001
            notes.append(f"PyTorch skipped: not importable ({type(e).__name__}: {e})")
    if "onnxruntime" in wanted:
        try:
            import onnx
            import onnxruntime
            mods["onnxruntime"] = onnxruntime
            mods["onnx"] = onnx
        except Exception as e:  # noqa: BLE001
            notes.append(f"ONNX Runtime skipped: onnx/onnxruntime not importable ({type(e).__name__}: {e})")
    return mods


def set_threads(mods: dict, threads: int) -> None:
    if "lstmcore" in mods and hasattr(mods["lstmcore"], "set_num_threads"):
        mods["lstmcore"].set_num_threads(threads)
    if "torch" in mods:
        torch = mods["torch"]
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass  # only settable once, before any inter-op work


def versions(mods: dict) -> dict:
    import numpy as np
    v = {"python": platform.python_version(), "numpy": np.__version__}
    if "lstmcore" in mods:
        v["lstmcore"] = getattr(mods["lstmcore"], "__version__", "unknown")
    if "torch" in mods:
        v["torch"] = mods["torch"].__version__
    if "onnxruntime" in mods:
        v["onnxruntime"] = mods["onnxruntime"].__version__
        v["onnx"] = mods["onnx"].__version__
    return v


class Data:
    """Weights and inputs in lstmcore's layout (x (T,B,I), w_x (I,G·H), w_h (H,G·H)), float32."""

    def __init__(self, cell: str, T: int, B: int, I: int, H: int, seed: int, variant: str = "plain"):
        import numpy as np
        G = GATES[cell]
        rng = np.random.default_rng(seed)
        k = 1.0 / math.sqrt(H)

        def uniform(shape):  # PyTorch's init, U(-1/sqrt(H), 1/sqrt(H)), made in float32 in place
            a = rng.random(shape, dtype=np.float32)
            a *= np.float32(2 * k)
            a -= np.float32(k)
            return a

        self.cell, self.T, self.B, self.I, self.H, self.G = cell, T, B, I, H, G
        self.variant = variant
        self.P = H // 2 if variant == "proj" else H  # the width of h (and y)
        self.x = rng.standard_normal((T, B, I), dtype=np.float32)
        self.w_x = uniform((I, G * H))
        self.w_h = uniform((self.P, G * H))
        self.b = uniform((G * H,))
        self.b_h = uniform((G * H,))
        self.dy = rng.standard_normal((T, B, self.P), dtype=np.float32)
        self.peepholes = uniform((3, H)) if variant == "peepholes" else None
        self.w_proj = uniform((H, self.P)) if variant == "proj" else None

    def lstmcore_options(self) -> dict:
        if self.variant == "peepholes":
            return {"peepholes": self.peepholes}
        if self.variant == "proj":
            return {"w_proj": self.w_proj}
        if self.variant == "hard_sigmoid":
            return {"activations": ["hard_sigmoid", "tanh", "tanh"]}
        if self.variant == "sigmoid_general":
            return {"clip": 1e30}
        return {}

    def flops(self) -> float:
        """Multiply-adds x 2 of one forward pass."""
        per_row = (self.I + self.P) * self.G * self.H + (self.H * self.P if self.variant == "proj" else 0)
        return 2.0 * self.T * self.B * per_row


# Every builder returns callables that return NumPy arrays (or objects that hold them) so the
# outputs can be compared; the conversion is outside the timed call.

class LstmcoreImpl:
    name = "lstmcore"

    def __init__(self, lc, d: Data):
        self.lc, self.d = lc, d

    def infer(self):
        d = self.d
        return self.lc.forward(d.x, d.w_x, d.w_h, b=d.b, b_h=d.b_h, cell=d.cell, **d.lstmcore_options())

    def train(self):
        d = self.d
        r = self.lc.forward(d.x, d.w_x, d.w_h, b=d.b, b_h=d.b_h, cell=d.cell, training=True, **d.lstmcore_options())
        g = self.lc.backward(r.cache, dy=d.dy)
        return r, g

    def infer_outputs(self, res):
        return {"y": res.y, "h_n": res.h_n, "c_n": res.c_n}

    def train_outputs(self, res):
        r, g = res
        return {"y": r.y, "dx": g.dx, "dw_x": g.dw_x, "dw_h": g.dw_h, "db": g.db, "db_h": g.db_h}


class TorchImpl:
    name = "torch"

    def __init__(self, torch, d: Data):
        self.torch, self.d = torch, d
        if d.variant not in ("plain", "proj"):
            raise NotImplementedError(f"torch.nn.LSTM has no {d.variant} option")
        cls = torch.nn.LSTM if d.cell == "lstm" else torch.nn.GRU
        kw = {"proj_size": d.P} if d.variant == "proj" else {}
        m = cls(d.I, d.H, num_layers=1, bias=True, batch_first=False, **kw)
        with torch.no_grad():
            if d.variant == "proj":
                m.weight_hr_l0.copy_(torch.from_numpy(d.w_proj.T.copy()))
            m.weight_ih_l0.copy_(torch.from_numpy(d.w_x.T.copy()))
            m.weight_hh_l0.copy_(torch.from_numpy(d.w_h.T.copy()))
            m.bias_ih_l0.copy_(torch.from_numpy(d.b))
            m.bias_hh_l0.copy_(torch.from_numpy(d.b_h))
        self.m = m
        self.x = torch.from_numpy(d.x)
        self.x_req = torch.from_numpy(d.x.copy()).requires_grad_(True)
        self.dy = torch.from_numpy(d.dy)

    def infer(self):
        with self.torch.inference_mode():
            return self.m(self.x)

    def train(self):
        self.m.zero_grad(set_to_none=True)
        self.x_req.grad = None
        y, _ = self.m(self.x_req)
        y.backward(self.dy)
        return y

    def infer_outputs(self, res):
        y, st = res
        if isinstance(st, tuple):
            return {"y": y.numpy(), "h_n": st[0][0].numpy(), "c_n": st[1][0].numpy()}
        return {"y": y.numpy(), "h_n": st[0].numpy(), "c_n": None}

    def train_outputs(self, res):
        m = self.m
        return {"y": res.detach().numpy(), "dx": self.x_req.grad.numpy(),
                "dw_x": m.weight_ih_l0.grad.T.numpy(), "dw_h": m.weight_hh_l0.grad.T.numpy(),
                "db": m.bias_ih_l0.grad.numpy(), "db_h": m.bias_hh_l0.grad.numpy()}


def build_onnx_model(d: Data):
    """One LSTM/GRU node with d's weights, written by lstmcore.convert.to_onnx (opset 14):
    X (T, B, I) -> Y (T, B, H), Y_h (, Y_c) (1, B, H)."""
    import lstmcore
    if d.variant == "proj":
        raise NotImplementedError("ONNX's LSTM has no projection")
    # sigmoid_general's clip=1e30 only moves lstmcore onto its general path: ORT runs the plain cell
    opts = {"peepholes": {"peepholes": True}, "hard_sigmoid": {"activations": ["hard_sigmoid", "tanh", "tanh"]}}
    layer = (lstmcore.LSTM if d.cell == "lstm" else lstmcore.GRU)(d.I, d.H, **opts.get(d.variant, {}))
    layer.params.update({"l0.w_x": d.w_x, "l0.w_h": d.w_h, "l0.b": d.b, "l0.b_h": d.b_h})
    if d.peepholes is not None:
        layer.params["l0.peepholes"] = d.peepholes
    return lstmcore.convert.to_onnx(layer, opset=14)


class OrtImpl:
    name = "onnxruntime"

    def __init__(self, ort, d: Data, threads: int):
        self.d = d
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spin while a Run is active (the default), but stop when it returns, so ORT's idle
        # workers do not steal the cores from the implementation timed next.
        so.add_session_config_entry("session.force_spinning_stop", "1")
        model = build_onnx_model(d)
        self.sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        self.feed = {"X": d.x}

    def infer(self):
        return self.sess.run(None, self.feed)

    train = None  # ONNX Runtime (inference package) has no backward

    def infer_outputs(self, res):
        return {"y": res[0], "h_n": res[1][0], "c_n": res[2][0] if len(res) > 2 else None}


def build_impls(mods: dict, d: Data, threads: int, notes_by_impl: dict) -> dict:
    impls = {}
    for name in IMPLS:
        if name not in mods:
            continue
        try:
            if name == "lstmcore":
                impls[name] = LstmcoreImpl(mods["lstmcore"], d)
            elif name == "torch":
                impls[name] = TorchImpl(mods["torch"], d)
            else:
                impls[name] = OrtImpl(mods["onnxruntime"], d, threads)
        except NotImplementedError as e:  # the peer has no such variant
            notes_by_impl[name] = f"n/a: {e}"
        except Exception as e:  # noqa: BLE001
            notes_by_impl[name] = f"setup failed: {type(e).__name__}: {e}"
            log(f"  {name}: setup failed: {e}")
    return impls


# --------------------------------------------------------------------------------------------
# Correctness and timing
# --------------------------------------------------------------------------------------------

def rel_err(a, ref):
    import numpy as np
    if a is None or ref is None:
        return None
    a = np.asarray(a, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if a.shape != ref.shape:
        return float("inf")
    den = float(np.linalg.norm(ref))
    num = float(np.linalg.norm(a - ref))
    return num / den if den > 0 else num


def compare(outs: dict, ref_name: str) -> dict:
    """Relative norm of each output of each implementation against ref_name's."""
    ref = outs[ref_name]
    res = {}
    for name, o in outs.items():
        if name == ref_name:
            continue
        per = {k: rel_err(o.get(k), ref.get(k)) for k in ref if ref.get(k) is not None and o.get(k) is not None}
        worst = max(per.values()) if per else None
        res[name] = {"against": ref_name, "rel_err": per, "max_rel_err": worst,
                     "ok": worst is not None and worst <= MISMATCH_TOL}
    return res


def warm_and_calibrate(fn, warmup: int, min_sample_s: float) -> int:
    """Untimed warm-up calls; returns how many calls one sample needs to last min_sample_s."""
    t_call = None
    for _ in range(max(1, warmup)):
        t0 = time.perf_counter()
        fn()
        t_call = time.perf_counter() - t0
    return max(1, min(1000, math.ceil(min_sample_s / max(t_call, 1e-9))))


def time_round_robin(fns: dict, inner: dict, repeats: int) -> dict:
    """`repeats` rounds; each round takes one sample of every implementation, in a rotating order.

    Interleaving puts every implementation under the same conditions when the machine's load
    changes during the run (a shared machine), so the ratios stay fair even when absolute times drift.
    """
    names = list(fns)
    samples = {n: [] for n in names}
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            fn, n_in = fns[name], inner[name]
            # Let the previous library's OpenMP workers finish their spin-wait and go to sleep
            # (libgomp spins for a while after a parallel region) before the clock starts.
            time.sleep(SETTLE_S)
            t0 = time.perf_counter()
            for _ in range(n_in):
                fn()
            samples[name].append((time.perf_counter() - t0) / n_in)
    return samples


def run_case(impls: dict, d: Data, mode: str, args, cfg_name: str, setup_notes: dict) -> dict:
    T, B, I, H, G = d.T, d.B, d.I, d.H, d.G
    flops = d.flops() * (3.0 if mode == "train" else 1.0)
    case = {"config": cfg_name, "cell": d.cell, "variant": d.variant, "mode": mode, "T": T, "B": B, "I": I, "H": H,
            "G": G, "flops": flops, "impls": {}, "correctness": {}}
    outs = {}
    fns = {}
    for name in IMPLS:
        entry = {"median_ms": None, "times_ms": [], "inner_loops": None, "gflops": None,
                 "frac_peak": None, "note": setup_notes.get(name)}
        case["impls"][name] = entry
        impl = impls.get(name)
        if impl is None:
            if entry["note"] is None:
                entry["note"] = "not installed" if name not in args._mods else "not run"
            continue
        fn = getattr(impl, mode, None)
        if fn is None:
            entry["note"] = "no training support"
            continue
        try:
            res = fn()  # first call: the outputs compared below (and the first warm-up)
            outs[name] = (impl.train_outputs if mode == "train" else impl.infer_outputs)(res)
            del res
            fns[name] = fn
        except Exception as e:  # noqa: BLE001
            entry["note"] = f"failed: {type(e).__name__}: {e}"
            log(f"  {name} {mode}: failed: {e}")
            if os.environ.get("BENCH_DEBUG"):
                traceback.print_exc()

    if len(outs) >= 2:
        ref = "lstmcore" if "lstmcore" in outs else ("torch" if "torch" in outs else next(iter(outs)))
        case["correctness"] = compare(outs, ref)
        for name, c in case["correctness"].items():
            detail = ", ".join(f"{k} {v:.1e}" for k, v in c["rel_err"].items())
            log(f"  check {name} vs {c['against']}: {detail}{'' if c['ok'] else '  <-- MISMATCH'}")
    outs.clear()

    # warm-up (the first call above counted as one) and per-implementation calibration
    inner = {}
    for name in list(fns):
        try:
            inner[name] = warm_and_calibrate(fns[name], args.warmup - 1, args.min_sample_ms / 1e3)
        except Exception as e:  # noqa: BLE001
            case["impls"][name]["note"] = f"failed while timing: {type(e).__name__}: {e}"
            del fns[name]
    gc.collect()
    samples = time_round_robin(fns, inner, args.repeats) if fns else {}
    for name, ss in samples.items():
        entry = case["impls"][name]
        med = statistics.median(ss)
        entry.update(times_ms=[t * 1e3 for t in ss], median_ms=med * 1e3, inner_loops=inner[name],
                     min_ms=min(ss) * 1e3, gflops=flops / med * 1e-9)
        log(f"  {name:12s} {mode:5s} median {med * 1e3:10.3f} ms  {entry['gflops']:7.1f} GFLOP/s"
            f"  ({len(ss)} samples x {inner[name]} call(s))")

    base = case["impls"]["lstmcore"]["median_ms"]
    case["ratios"] = {}
    for peer in PEERS:
        pm = case["impls"][peer]["median_ms"]
        case["ratios"][peer] = (pm / base) if (pm and base) else None
    return case


# --------------------------------------------------------------------------------------------
# Peak memory of a training step, each in a fresh process
# --------------------------------------------------------------------------------------------

def proc_status_kib(field: str):
    """VmRSS / VmHWM of this process from /proc/self/status, in KiB (None where unavailable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def reset_hwm() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_child(args) -> int:
    """Run in a fresh process: one training step; print the peak-RSS increase as one JSON line.

    Primary number: ru_maxrss after the step minus the resident set (VmRSS) just before it.
    Cross-check: VmHWM after resetting it just before the step (the kernel's own high-water mark).
    """
    impl, cell, cfg = args.memory_child
    out = {"impl": impl, "cell": cell, "config": cfg, "threads": args.threads}
    try:
        notes: list = []
        mods = import_impls([impl], notes)
        if impl not in mods:
            raise RuntimeError(notes[0] if notes else f"{impl} unavailable")
        set_threads(mods, args.threads)
        T, B, H = CONFIGS[cfg]

        def make(d):
            return LstmcoreImpl(mods["lstmcore"], d) if impl == "lstmcore" else TorchImpl(mods["torch"], d)

        obj = make(Data(cell, T, B, H, H, args.seed))
        # A one-step, one-row call first: thread pools, lazily loaded code pages and one-time
        # library state go into the baseline, not into the step's memory (for PyTorch that is
        # about 50 MiB).
        make(Data(cell, 1, 1, H, H, args.seed)).train()
        gc.collect()
        base_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        base_rss = proc_status_kib("VmRSS")
        hwm_ok = reset_hwm()
        res = obj.train()
        peak_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak_hwm = proc_status_kib("VmHWM")
        del res
        base = base_rss if base_rss is not None else base_maxrss
        out.update(baseline_maxrss_kib=base_maxrss, baseline_rss_kib=base_rss, peak_maxrss_kib=peak_maxrss,
                   increase_mib=max(0, peak_maxrss - base) / 1024.0)
        if hwm_ok and peak_hwm is not None and base_rss is not None:
            out["increase_vmhwm_mib"] = max(0, peak_hwm - base_rss) / 1024.0
        if base_maxrss > (base_rss or 0) + 1024 and peak_maxrss <= base_maxrss:
            # ru_maxrss was already above anything the step reached: the step's own peak is hidden
            out["warning"] = "ru_maxrss baseline above the step's peak; increase_vmhwm_mib is the better number"
    except Exception as e:  # noqa: BLE001
        out["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(out), flush=True)
    return 0


def measure_memory(args, impl: str, cell: str, cfg: str) -> dict:
    py = [sys.executable, str(Path(__file__).resolve()), "--memory-child", impl, cell, cfg,
          "--threads", str(args.threads), "--seed", str(args.seed)]
    # Linux carries a process's ru_maxrss across exec: a child exec'd straight from this (large)
    # process would start with our peak. A shell in between forks the child from its own small
    # image, so the child's ru_maxrss starts near zero. (`; exit $?` keeps sh from exec'ing it.)
    sh = shutil.which("sh")
    cmd = [sh, "-c", '"$@"; exit $?', "sh", *py] if sh else py
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=dict(os.environ))
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            return {"error": f"child exited {p.returncode}: {p.stderr.strip()[-300:]}"}
        return json.loads(lines[-1])
    except (OSError, subprocess.SubprocessError, ValueError) as e:
        return {"error": f"{type(e).__name__}: {e}"}


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

def fmt(v, spec, na="n/a"):
    return na if v is None else format(v, spec)


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i < 3 else "--:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def report(results: dict) -> str:
    meta = results["meta"]
    peak = meta["fma_peak"]["gflops"]
    shown = meta.get("impls_available") or list(IMPLS)
    impls = [i for i in IMPLS if i in shown]
    peers = [p for p in PEERS if p in impls]
    out = []
    out.append(f"## lstmcore benchmark — {meta['cpu']['model']}, {meta['threads']} thread(s), float32")
    out.append("")
    out.append(f"FMA peak ({meta['fma_peak']['isa'] or 'n/a'}, {meta['threads']} thread(s)): "
               f"{fmt(peak, '.1f')} GFLOP/s" + (f" — {meta['fma_peak']['note']}" if meta["fma_peak"]["note"] else ""))
    out.append(f"Median of {meta['repeats']} samples after {meta['warmup']} warm-up call(s). "
               "ratio = peer time / lstmcore time (> 1: lstmcore faster). "
               "FLOPs: forward 2·T·B·(I+H)·G·H, training 3× that.")
    out.append("")
    header = ["config (T,B,I=H)", "cell", "mode"]
    header += [f"{SHORT[i]} ms" for i in impls]
    header += [f"{SHORT[i]} GFLOP/s" for i in impls]
    header += [f"{SHORT[p]}/lstmcore" for p in peers] if "lstmcore" in impls else []
    header += ["% FMA peak (" + " / ".join(SHORT[i] for i in impls) + ")"]
    rows = []
    for c in results["cases"]:
        cell = c["cell"].upper() + ("" if c.get("variant", "plain") == "plain" else f" {c['variant']}")
        r = [f"{c['config']} ({c['T']},{c['B']},{c['H']})", cell, c["mode"]]
        r += [fmt(c["impls"][i]["median_ms"], ".3f") for i in impls]
        r += [fmt(c["impls"][i]["gflops"], ".1f") for i in impls]
        if "lstmcore" in impls:
            for p in peers:
                v = c["ratios"].get(p)
                bad = c["correctness"].get(p, {}).get("ok") is False
                r.append(fmt(v, ".2f") + ("×" if v is not None else "") + (" ⚠" if bad else ""))
        r.append(" / ".join(fmt(None if c["impls"][i]["frac_peak"] is None else 100 * c["impls"][i]["frac_peak"], ".1f")
                            for i in impls))
        rows.append(r)
    out.append(markdown_table(header, rows))

    # correctness
    crow = []
    for c in results["cases"]:
        for name, chk in c["correctness"].items():
            cell = c["cell"].upper() + ("" if c.get("variant", "plain") == "plain" else f" {c['variant']}")
            crow.append([f"{c['config']}", cell, c["mode"], f"{SHORT[name]} vs {SHORT[chk['against']]}",
                         fmt(chk["max_rel_err"], ".1e"), "ok" if chk["ok"] else "MISMATCH",
                         ", ".join(f"{k} {v:.1e}" for k, v in chk["rel_err"].items())])
    if crow:
        out.append("")
        out.append(f"Agreement before timing (relative norm ‖a−ref‖/‖ref‖, flagged above {MISMATCH_TOL:g}):")
        out.append("")
        out.append(markdown_table(["config", "cell", "mode", "pair", "max rel err", "status", "per output"], crow))

    if results.get("memory"):
        out.append("")
        out.append("Peak memory of one training step (increase of peak RSS over the baseline after imports and "
                   "data creation, fresh process each):")
        out.append("")
        mrows = []
        for m in results["memory"]:
            lc, th = m.get("lstmcore"), m.get("torch")
            # below ~1 MiB the page-granular RSS is noise: no ratio
            ratio = (th / lc) if (lc is not None and th is not None and lc >= 1.0 and th >= 1.0) else None
            mrows.append([f"{m['config']}", m["cell"].upper(), "train", fmt(lc, ".1f"), fmt(th, ".1f"), fmt(ratio, ".2f")])
        out.append(markdown_table(["config", "cell", "mode", "lstmcore MiB", "torch MiB", "torch/lstmcore"], mrows))

    notes = list(results["meta"]["notes"])
    for c in results["cases"]:
        for i in IMPLS:
            n = c["impls"][i]["note"]
            if n and not (i == "onnxruntime" and c["mode"] == "train" and n == "no training support") \
                    and n != "not installed":
                notes.append(f"{c['config']}/{c['cell']}/{c['mode']} {SHORT[i]}: {n}")
    if any(c["mode"] == "train" for c in results["cases"]) and "onnxruntime" in impls:
        notes.append("ORT has no training: its train rows are n/a.")
    if notes:
        out.append("")
        out.append("Notes:")
        out += [f"- {n}" for n in dict.fromkeys(notes)]
    return "\n".join(out)


def plot(results: dict, path: Path) -> str | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, NullFormatter
    except Exception as e:  # noqa: BLE001
        return f"plot skipped: matplotlib not importable ({type(e).__name__}: {e})"
    cases = results["cases"]
    modes = [m for m in MODES if any(c["mode"] == m for c in cases)]
    if not any(v is not None for c in cases for v in c["ratios"].values()):
        return "plot skipped: no ratios (lstmcore or every peer missing)"
    fig, axes = plt.subplots(1, len(modes), figsize=(6.5 * len(modes), 4.6), squeeze=False)
    colors = {"torch": "#d9534f", "onnxruntime": "#5b7dbf"}
    for ax, mode in zip(axes[0], modes):
        cs = [c for c in cases if c["mode"] == mode]
        labels = [f"{c['config']}\n{c['cell'].upper()}"
                  + ("" if c.get("variant", "plain") == "plain" else f"\n{c['variant']}") for c in cs]
        peers = [p for p in PEERS if any(c["ratios"].get(p) for c in cs)]
        width = 0.8 / max(1, len(peers))
        for k, p in enumerate(peers):
            xs = [i + (k - (len(peers) - 1) / 2) * width for i in range(len(cs))]
            vals = [c["ratios"].get(p) for c in cs]
            # bars grow from 1 (parity) up or down, on a log axis: 2x faster and 2x slower look alike
            heights = [(v - 1.0) if v else 0.0 for v in vals]
            bars = ax.bar(xs, heights, width, bottom=1.0, label=f"{SHORT[p]} / lstmcore", color=colors[p])
            for b, v in zip(bars, vals):
                if v:
                    ax.annotate(f"{v:.2f}", (b.get_x() + b.get_width() / 2, v), ha="center",
                                va="bottom" if v >= 1 else "top", fontsize=7)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        allv = [c["ratios"].get(p) for c in cs for p in peers if c["ratios"].get(p)]
        if allv:
            span = max(max(allv), 1 / min(allv), 1.5) * 1.6
            ax.set_ylim(1 / span, span)
        ax.set_xticks(range(len(cs)))
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_title(f"{'inference' if mode == 'infer' else 'training (forward+backward)'}")
        ax.set_ylabel("time ratio peer / lstmcore  (> 1: lstmcore faster)")
        if peers:
            ax.legend(fontsize=8)
    meta = results["meta"]
    fig.suptitle(f"lstmcore vs peers — {meta['cpu']['model']}, {meta['threads']} thread(s), float32", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


# --------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    args = parse_args(argv)
    pin_threads_env(args.threads)
    if args.memory_child:
        return memory_child(args)

    try:
        import numpy  # noqa: F401
    except ImportError:
        print("numpy is required: pip install numpy", file=sys.stderr)
        return 0

    loadavg_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    notes: list[str] = []
    cpu = cpu_info()
    if args.threads > (os.cpu_count() or args.threads):
        notes.append(f"--threads {args.threads} exceeds the {os.cpu_count()} logical CPUs")
    if args.repeats < 7 and not args.quick:
        notes.append(f"only {args.repeats} repeats (< 7): medians are rough")

    peak = {"gflops": None, "isa": None, "threads": args.threads, "compiler": None, "note": "skipped (--no-fma-peak)"}
    if not args.no_fma_peak:
        log(f"measuring FMA peak on {args.threads} thread(s) ...")
        peak = fma_peak(args.threads)
        log(f"  FMA peak: {fmt(peak['gflops'], '.1f')} GFLOP/s ({peak['isa']})"
            + (f" — {peak['note']}" if peak["note"] else ""))

    mods = import_impls(args.impls, notes)
    args._mods = mods
    set_threads(mods, args.threads)
    for n in notes:
        log("note: " + n)

    meta = {
        "loadavg_start": loadavg_start,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu, "platform": platform.platform(), "threads": args.threads,
        "repeats": args.repeats, "warmup": args.warmup, "min_sample_ms": args.min_sample_ms,
        "quick": args.quick, "seed": args.seed, "dtype": "float32",
        "configs": {k: dict(zip(("T", "B", "I"), CONFIGS[k]), H=CONFIGS[k][2]) for k in args.configs},
        "cells": args.cells, "modes": args.modes, "impls_requested": args.impls,
        "impls_available": [i for i in IMPLS if i in mods],
        "versions": versions(mods), "fma_peak": peak, "notes": notes,
        "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
    }
    if "lstmcore" in mods and hasattr(mods["lstmcore"], "get_num_threads"):
        meta["lstmcore_num_threads"] = mods["lstmcore"].get_num_threads()
    if "torch" in mods:
        meta["torch_num_threads"] = mods["torch"].get_num_threads()
        meta["torch_mkldnn"] = bool(mods["torch"].backends.mkldnn.is_available())
    results = {"meta": meta, "cases": [], "memory": []}

    for cfg in args.configs:
        T, B, H = CONFIGS[cfg]
        for cell in args.cells:
            log(f"{cfg} (T={T}, B={B}, I=H={H}) {cell.upper()}")
            d = Data(cell, T, B, H, H, args.seed)
            setup_notes: dict = {}
            impls = build_impls(mods, d, args.threads, setup_notes)
            for mode in args.modes:
                results["cases"].append(run_case(impls, d, mode, args, cfg, setup_notes))
            del impls, d
            gc.collect()
            if cell != "lstm" or cfg not in args.variant_configs:
                continue
            for variant in args.variants:
                log(f"{cfg} (T={T}, B={B}, I=H={H}) LSTM {variant}")
                d = Data(cell, T, B, H, H, args.seed, variant)
                setup_notes = {}
                impls = build_impls(mods, d, args.threads, setup_notes)
                for mode in args.modes:
                    results["cases"].append(run_case(impls, d, mode, args, cfg, setup_notes))
                del impls, d
                gc.collect()

    if not args.no_memory and "train" in args.modes:
        mem_impls = [i for i in ("lstmcore", "torch") if i in mods]
        if mem_impls:
            log("peak memory of a training step (fresh process each) ...")
        for cfg in args.configs:
            for cell in args.cells:
                row = {"config": cfg, "cell": cell, "raw": {}}
                for impl in ("lstmcore", "torch"):
                    if impl not in mem_impls:
                        row[impl] = None
                        continue
                    m = measure_memory(args, impl, cell, cfg)
                    row["raw"][impl] = m
                    row[impl] = m.get("increase_mib")
                    log(f"  {cfg} {cell.upper()} {impl:9s} "
                        + (f"+{m['increase_mib']:.1f} MiB" if "increase_mib" in m else f"failed: {m.get('error')}"))
                if mem_impls:
                    results["memory"].append(row)

    if not args.no_fma_peak:
        # Again at the end: on a shared machine either measurement can be disturbed, and a peak
        # is a ceiling, so the higher of the two stands.
        log("measuring FMA peak again ...")
        again = fma_peak(args.threads)
        peak["runs_gflops"] = [peak["gflops"], again["gflops"]]
        best = [g for g in peak["runs_gflops"] if g is not None]
        if best:
            peak["gflops"] = max(best)
            peak["note"] = None
            peak["isa"] = peak["isa"] or again["isa"]
        log(f"  FMA peak: {fmt(again['gflops'], '.1f')} GFLOP/s; using {fmt(peak['gflops'], '.1f')}")
    for c in results["cases"]:
        for e in c["impls"].values():
            if e["gflops"] is not None and peak["gflops"]:
                e["frac_peak"] = e["gflops"] / peak["gflops"]
    meta["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    if meta.get("loadavg_start") and meta["loadavg_end"]:
        worst = max(meta["loadavg_start"][0], meta["loadavg_end"][0])
        if worst > (os.cpu_count() or 1) + 0.5:
            notes.append(f"the machine was busy (1-minute load average up to {worst:.1f} on {os.cpu_count()} CPUs): "
                         "absolute times are pessimistic and noisy; the interleaved ratios less so")

    text = report(results)
    print(text, flush=True)

    json_path = Path(args.json) if args.json else RESULTS_DIR / (
        f"cpu_{slug(cpu['model'])}_{args.threads}t{'_quick' if args.quick else ''}.json")
    try:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=1) + "\n")
        log(f"wrote {json_path}")
    except OSError as e:
        log(f"could not write {json_path}: {e}")

    plot_arg = args.plot
    if plot_arg is None or plot_arg.lower() != "none":
        png = Path(plot_arg) if plot_arg else json_path.with_suffix(".png")
        try:
            msg = plot(results, png)
        except Exception as e:  # noqa: BLE001
            msg = f"plot failed: {type(e).__name__}: {e}"
        log(msg if msg else f"wrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
