#!/usr/bin/env python3
"""lstmcore beside PyTorch (CPU) and ONNX Runtime: times, ratios, FMA peak, training memory.

Run from the repository root (lstmcore importable: installed, or PYTHONPATH=python):

    python benchmarks/bench.py                 # compass configs S/M/L/XL + LSTM variant rows, memory
    python benchmarks/bench.py --quick         # S and M only: a smoke run
    python benchmarks/bench.py --grid          # LSTM/GRU, T 50, H 128..1024, B 1..256: heat map + tables
    python benchmarks/bench.py --varlen        # seq_lengths over [T/4, T] vs padded vs torch PackedSequence
    python benchmarks/bench.py --step          # layer.step, torch LSTMCell, the C++ per-step path, B = 1
    python benchmarks/bench.py --after-peer    # lstmcore right after torch / ORT in the same process
    python benchmarks/bench.py --bf16          # torch autocast bf16 vs lstmcore compute_dtype="bfloat16"

Every engine runs in a process of its own (one per engine and batch of cases), threads pinned,
on the same seeded data; outputs are compared across engines before the times are reported.
Timings are reported, never asserted: the script exits 0 whatever it measures, and an engine
that is not installed, or fails on a case, is reported as n/a with the reason.
See benchmarks/README.md for every mode, column and how long each takes.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from benchkit import cases as C  # noqa: E402
from benchkit.util import THREAD_ENV_VARS, log, thread_env  # noqa: E402

RESULTS_DIR = HERE / "results"
IMPLS = ("lstmcore", "torch", "onnxruntime")
MODE_FLAGS = ("grid", "varlen", "step", "after_peer", "bf16")
# Default configs per mode (full, --quick).
DEFAULT_CONFIGS = {"compass": (list(C.CONFIGS), ["S", "M"]), "varlen": (["M", "L"], ["M"]),
                   "step": (["100x1x256"], ["100x1x256"]), "after_peer": (["S", "M", "L"], ["S", "M"]),
                   "bf16": (["M", "L"], ["M"]), "grid": ([], [])}


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


def int_list(text):
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return vals


def config_list(text):
    out = []
    for item in (s for s in text.split(",") if s.strip()):
        try:
            out.append(C.parse_config(item))
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Benchmark lstmcore against PyTorch CPU and ONNX Runtime (float32; bf16 with --bf16).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    m = p.add_mutually_exclusive_group()
    m.add_argument("--grid", action="store_true", help="the shape grid: heat map of ratios, geometric means")
    m.add_argument("--varlen", action="store_true", help="variable lengths: seq_lengths vs padded vs PackedSequence")
    m.add_argument("--step", action="store_true", help="per-step streaming: layer.step, torch LSTMCell, C++")
    m.add_argument("--after-peer", action="store_true", help="lstmcore right after torch / ORT in one process")
    m.add_argument("--bf16", action="store_true", help="torch autocast bf16 vs lstmcore compute_dtype='bfloat16'")
    p.add_argument("--threads", type=int, default=2, help="threads for every engine")
    p.add_argument("--configs", type=config_list, default=None,
                   help="comma list of " + ",".join(f"{k}=(T{v[0]},B{v[1]},I=H{v[2]})" for k, v in C.CONFIGS.items())
                   + " or TxBxH literals (default per mode, see README)")
    p.add_argument("--cells", type=csv_list(list(C.GATES), "cell"), default=None,
                   help="comma list (default lstm,gru; lstm for --step)")
    p.add_argument("--modes", type=csv_list(list(C.MODES), "mode"), default=list(C.MODES), help="comma list")
    p.add_argument("--impls", type=csv_list(list(IMPLS), "implementation"), default=list(IMPLS),
                   help="which libraries' engines to run")
    p.add_argument("--peers-only", action="store_true", help="leave lstmcore out")
    p.add_argument("--grid-h", type=int_list, default=None, help="grid hidden sizes (default 128,256,512,1024)")
    p.add_argument("--grid-b", type=int_list, default=None, help="grid batch sizes (default 1,2,4,...,256)")
    p.add_argument("--grid-t", type=int, default=C.GRID_T, help="grid sequence length")
    p.add_argument("--repeats", type=int, default=None, help="timed samples per case (default 7; 5 with --quick)")
    p.add_argument("--min-repeats", type=int, default=3, help="fewest samples of a case longer than --max-case-s")
    p.add_argument("--max-case-s", type=float, default=None,
                   help="seconds of samples per case and engine before the samples are cut down (default 3; 1.5 quick)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls before the samples (the check call included)")
    p.add_argument("--min-sample-ms", type=float, default=20.0,
                   help="a sample repeats a short call until it lasts this long, then divides")
    p.add_argument("--rounds", type=int, default=1, help="run every engine's process this many times, samples pooled")
    p.add_argument("--after-peer-rounds", type=int, default=None,
                   help="--after-peer: fewest samples per predecessor (default 15; 9 with --quick)")
    p.add_argument("--lengths-from", type=float, default=0.25,
                   help="--varlen: the shortest length as a fraction of T (lengths spread evenly up to T)")
    p.add_argument("--cpp-build", default=str(HERE.parent / "build"),
                   help="--step: the CMake build folder holding liblstmcore.a")
    p.add_argument("--variants", type=csv_list(list(C.VARIANTS), "variant"), default=list(C.VARIANTS),
                   help="LSTM variant rows of the compass table, at --variant-configs")
    p.add_argument("--variant-configs", type=lambda t: [c[0] for c in config_list(t)] if t.strip() else [],
                   default=["M"], help="compass configs that get the variant rows ('' for none)")
    p.add_argument("--quick", action="store_true", help="fewer shapes and samples (see README for each mode)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="results path (default benchmarks/results/<mode>_<cpu>_<N>t[_quick].json)")
    p.add_argument("--md", default=None, help="Markdown report (default: the JSON path with .md; 'none' to skip)")
    p.add_argument("--plot", default=None, help="PNG (compass, grid; default: the JSON path with .png; 'none' to skip)")
    p.add_argument("--no-memory", action="store_true", help="compass: skip the training peak-memory measurement")
    p.add_argument("--no-fma-peak", action="store_true", help="skip compiling and running fma_peak.cpp")
    p.add_argument("--render", metavar="JSON", default=None,
                   help="write the report (and plot) of an earlier run's JSON again, without running anything")
    p.add_argument("--child-timeout", type=float, default=7200.0, help="seconds before an engine's process is killed")
    # Internal: an engine's process (benchkit.child), and one training step's peak memory.
    p.add_argument("--child", metavar="JOB", help=argparse.SUPPRESS)
    p.add_argument("--memory-child", nargs=3, metavar=("IMPL", "CELL", "CONFIG"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    args.mode = next((f for f in MODE_FLAGS if getattr(args, f)), "compass")
    if args.threads < 1:
        p.error("--threads must be >= 1")
    if args.configs is None:
        full, quick = DEFAULT_CONFIGS[args.mode]
        args.configs = [C.parse_config(c) for c in (quick if args.quick else full)]
    if args.cells is None:
        args.cells = ["lstm"] if args.step else list(C.GATES)
    if args.grid_h is None:
        args.grid_h = list(C.QUICK_GRID_H if args.quick else C.GRID_H)
    if args.grid_b is None:
        args.grid_b = list(C.QUICK_GRID_B if args.quick else C.GRID_B)
    if args.repeats is None:
        args.repeats = 5 if args.quick else 7
    if args.max_case_s is None:
        args.max_case_s = 1.5 if args.quick else 3.0
    if args.after_peer_rounds is None:
        args.after_peer_rounds = 9 if args.quick else 15
    args.repeats = max(1, args.repeats)
    args.min_repeats = max(1, args.min_repeats)
    args.rounds = max(1, args.rounds)
    if not 0 < args.lengths_from <= 1:
        p.error("--lengths-from must be in (0, 1]")
    if args.peers_only:
        args.impls = [i for i in args.impls if i != "lstmcore"]
    return args


# --------------------------------------------------------------------------------------------
# Peak memory of a training step, each in a fresh process (compass mode)
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
    from benchkit import engines as E
    impl, cell, cfg = args.memory_child
    out = {"impl": impl, "cell": cell, "config": cfg, "threads": args.threads}
    try:
        mods, notes = E.import_modules(E.REQUIRES[impl])
        if impl not in mods:
            raise RuntimeError(notes[0] if notes else f"{impl} unavailable")
        E.set_threads(mods, args.threads)
        _, (T, B, H) = C.parse_config(cfg)
        cls = E.ENGINES[impl]
        obj = cls(mods, C.make_case(cell, "train", T, B, H), args.seed, args.threads)
        # A one-step, one-row call first: thread pools, lazily loaded code pages and one-time
        # library state go into the baseline, not into the step's memory (for PyTorch that is
        # about 50 MiB).
        cls(mods, C.make_case(cell, "train", 1, 1, H), args.seed, args.threads).train()
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
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=thread_env(args.threads))
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            return {"error": f"child exited {p.returncode}: {p.stderr.strip()[-300:]}"}
        return json.loads(lines[-1])
    except (OSError, subprocess.SubprocessError, ValueError) as e:
        return {"error": f"{type(e).__name__}: {e}"}


def memory_rows(args) -> list[dict]:
    impls = [i for i in ("lstmcore", "torch") if i in args.impls]
    if not impls or args.no_memory or "train" not in args.modes:
        return []
    log("peak memory of a training step (fresh process each) ...")
    rows = []
    for label, (T, B, H) in args.configs:
        for cell in args.cells:
            row = {"config": label, "cell": cell, "raw": {}}
            for impl in ("lstmcore", "torch"):
                if impl not in impls:
                    row[impl] = None
                    continue
                m = measure_memory(args, impl, cell, f"{T}x{B}x{H}")
                row["raw"][impl] = m
                row[impl] = m.get("increase_mib")
                log(f"  {label} {cell.upper()} {impl:9s} "
                    + (f"+{m['increase_mib']:.1f} MiB" if "increase_mib" in m else f"failed: {m.get('error')}"))
            rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------

def output_paths(args, cpu_model: str) -> tuple[Path, Path | None, Path | None]:
    from benchkit.machine import slug
    stem = "cpu" if args.mode == "compass" else args.mode.replace("_", "-")
    json_path = Path(args.json) if args.json else RESULTS_DIR / (
        f"{stem}_{slug(cpu_model)}_{args.threads}t{'_quick' if args.quick else ''}.json")
    md = None if (args.md or "").lower() == "none" else (Path(args.md) if args.md else json_path.with_suffix(".md"))
    png = None if (args.plot or "").lower() == "none" else (Path(args.plot) if args.plot else json_path.with_suffix(".png"))
    return json_path, md, png


def main(argv=None) -> int:
    args = parse_args(argv)
    for var in THREAD_ENV_VARS:  # before any numerical library is imported
        os.environ[var] = str(args.threads)
    if args.child:
        from benchkit.child import child_main
        return child_main(args.child)
    if args.memory_child:
        return memory_child(args)

    from benchkit import machine, modes, report
    if args.render:
        return render_again(args, report)
    args._loadavg_start = machine.loadavg()
    args._notes = []
    if args.threads > (os.cpu_count() or args.threads):
        args._notes.append(f"--threads {args.threads} exceeds the {os.cpu_count()} logical CPUs")
    if args.repeats < 5 and not args.quick:
        args._notes.append(f"only {args.repeats} samples per case: medians are rough")
    t0 = time.perf_counter()
    results = modes.MODES[args.mode](args)
    if args.mode == "compass":
        results["memory"] = memory_rows(args)
    results["meta"]["wall_s"] = round(time.perf_counter() - t0, 1)

    json_path, md_path, png_path = output_paths(args, results["meta"]["cpu"]["model"])
    write_outputs(results, report, json_path, md_path, png_path)
    return 0


def render_again(args, report) -> int:
    src = Path(args.render)
    results = json.loads(src.read_text())
    md = None if (args.md or "").lower() == "none" else (Path(args.md) if args.md else src.with_suffix(".md"))
    png = None if (args.plot or "").lower() == "none" else (Path(args.plot) if args.plot else src.with_suffix(".png"))
    write_outputs(results, report, None, md, png)
    return 0


def write_outputs(results, report, json_path, md_path, png_path) -> None:
    text = report.RENDER[results["mode"]](results)
    print(text, flush=True)
    for path, content in ((json_path, json.dumps(results, indent=1) + "\n"), (md_path, text + "\n")):
        if path is None:
            continue
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            log(f"wrote {path}")
        except OSError as e:
            log(f"could not write {path}: {e}")
    if png_path is not None:
        try:
            msg = report.plot(results, png_path)
        except Exception as e:  # noqa: BLE001
            msg = f"plot failed: {type(e).__name__}: {e}"
        if msg:
            log(msg)
        elif results["mode"] in ("compass", "grid"):
            log(f"wrote {png_path}")


if __name__ == "__main__":
    sys.exit(main())
