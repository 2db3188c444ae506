"""Facts about the machine a benchmark ran on, and the measured arithmetic peaks."""
from __future__ import annotations

import datetime
import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from .util import log

BENCH_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = BENCH_DIR.parent
FMA_SOURCE = BENCH_DIR / "fma_peak.cpp"

# The /proc/cpuinfo flags a reader of the results needs (the kernels dispatch on them).
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512bw", "avx512vl",
             "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")


def cpu_caches() -> dict:
    """Per-level data/unified cache sizes of cpu0 and how many CPUs share each, from sysfs."""
    caches = {}
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for idx in sorted(base.glob("index*")):
        try:
            level = (idx / "level").read_text().strip()
            kind = (idx / "type").read_text().strip()
            size = (idx / "size").read_text().strip()
            shared = (idx / "shared_cpu_list").read_text().strip()
        except OSError:
            continue
        if kind == "Instruction":
            continue
        name = f"L{level}" + ("d" if kind == "Data" else "")
        caches[name] = {"size": size, "size_kib": _kib(size), "shared_cpu_list": shared}
    return caches


def _kib(text: str):
    m = re.fullmatch(r"(\d+)([KMG]?)", text)
    if not m:
        return None
    return int(m.group(1)) * {"": 1 / 1024, "K": 1, "M": 1024, "G": 1024 * 1024}[m.group(2)]


def cpu_info() -> dict:
    info = {"model": platform.processor() or platform.machine(), "logical_cpus": os.cpu_count(),
            "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "flags": [], "caches": cpu_caches()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    if m:
        info["model"] = m.group(1).strip()
    for key, name in (("cpu family", "family"), ("model", "model_number"), ("stepping", "stepping")):
        m = re.search(rf"^{key}\s*:\s*(\S+)$", text, re.M)
        if m:
            info[name] = m.group(1)
    m = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    if m:
        flags = set(m.group(1).split())
        info["flags"] = [f for f in ISA_FLAGS if f in flags]
    return info


def cpu_summary(cpu: dict) -> str:
    """One line: model, cores, best ISA, L2/L3."""
    flags = set(cpu.get("flags", []))
    isa = ("AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "baseline")
    extras = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    c = cpu.get("caches", {})
    caches = ", ".join(f"{k} {v['size']}" for k, v in c.items() if k in ("L2", "L3"))
    return (f"{cpu.get('model')}, {cpu.get('logical_cpus')} CPUs, {isa}"
            + (f" + {' + '.join(extras)}" if extras else "") + (f", {caches}" if caches else ""))


def slug(text: str) -> str:
    s = re.sub(r"\((r|tm)\)", "", text.lower())
    s = re.sub(r"\b(cpu|processor|\d+-core)\b", "", s)
    s = re.sub(r"@.*$", "", s)
    s = re.sub(r"[^a-z0-9]+", "-", s).strip("-")
    return s[:48] or "unknown"


def git_commit() -> dict:
    def git(*a):
        try:
            p = subprocess.run(["git", "-C", str(REPO_ROOT), *a], capture_output=True, text=True, timeout=30)
            return p.stdout.strip() if p.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
            "dirty": None if status is None else bool(status)}


def loadavg():
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def busy_note(load_start, load_end) -> str | None:
    """A note when the 1-minute load average exceeded the CPU count during the run."""
    if not load_start or not load_end:
        return None
    worst = max(load_start[0], load_end[0])
    ncpu = os.cpu_count() or 1
    if worst > ncpu + 0.5:
        return (f"the machine was busy (1-minute load average up to {worst:.1f} on {ncpu} CPUs): "
                "the times are not the result; rerun on a quiet machine")
    return None


# --------------------------------------------------------------------------------------------
# Compiling small C++ programs (fma_peak.cpp, step_cpp.cpp), cached by content
# --------------------------------------------------------------------------------------------

def cxx_version(cxx: str) -> str | None:
    try:
        out = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.splitlines()[0].strip() if out.returncode == 0 and out.stdout else None
    except (OSError, subprocess.SubprocessError):
        return None


def compile_cached(name: str, sources: list[Path], flags: list[str], extra_key: bytes = b"") -> tuple[Path | None, str | None]:
    """Compiles `sources` with $CXX (g++) and `flags` into a cache folder keyed by their content;
    returns (executable, None) or (None, why not)."""
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        return None, f"compiler {cxx!r} not found"
    h = hashlib.sha256((cxx_version(cxx) or cxx).encode() + " ".join(flags).encode() + extra_key)
    for s in sources:
        h.update(s.read_bytes())
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path(tempfile.gettempdir()))) / "lstmcore-bench"
    exe = cache / f"{name}-{h.hexdigest()[:16]}"
    if exe.exists():
        return exe, None
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f"{exe.name}.{os.getpid()}.tmp"
    cmd = [cxx, *[str(s) for s in sources], "-o", str(tmp), *flags]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"compilation failed: {e}"
    if out.returncode != 0:
        last = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else ""
        return None, f"compilation failed (exit {out.returncode})" + (f": {last}" if last else "")
    os.replace(tmp, exe)
    return exe, None


def run_key_value(cmd: list[str], env: dict | None = None, timeout: float = 600) -> dict:
    """Runs a program that prints key=value lines; returns them as a dict (or {'error': ...})."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except (OSError, subprocess.SubprocessError) as e:
        return {"error": f"{type(e).__name__}: {e}"}
    kv = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    if out.returncode != 0:
        kv["error"] = f"exited {out.returncode}: {out.stderr.strip()[-300:]}"
    return kv


# --------------------------------------------------------------------------------------------
# FMA peak
# --------------------------------------------------------------------------------------------

def fma_peak(threads: int) -> dict:
    """float32 FMA peak (and the bf16 dot-product peak where the CPU has it) on `threads` threads,
    the best of 12 samples (fma_peak.cpp). Keys: gflops, isa, bf16_gflops, bf16_isa, note."""
    res = {"gflops": None, "isa": None, "bf16_gflops": None, "bf16_isa": None, "threads": threads,
           "compiler": cxx_version(os.environ.get("CXX", "g++")), "note": None}
    if not FMA_SOURCE.exists():
        res["note"] = f"{FMA_SOURCE} missing"
        return res
    exe, why = compile_cached("fma_peak", [FMA_SOURCE], ["-O2", "-fopenmp"])
    if exe is None:
        res["note"] = why
        return res
    kv = run_key_value([str(exe), str(threads)], env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
    if "error" in kv or "gflops" not in kv:
        res["note"] = f"fma_peak failed: {kv.get('error', 'no gflops line')}"
        return res
    res["gflops"] = float(kv["gflops"])
    res["isa"] = kv.get("isa")
    if kv.get("bf16_gflops"):
        res["bf16_gflops"] = float(kv["bf16_gflops"])
        res["bf16_isa"] = kv.get("bf16_isa")
    return res


def best_peak(a: dict, b: dict) -> dict:
    """Two measurements of the same peak: the higher stands (a disturbed sample only lowers it)."""
    out = dict(a)
    out["runs_gflops"] = [a.get("gflops"), b.get("gflops")]
    for key in ("gflops", "bf16_gflops"):
        vals = [v for v in (a.get(key), b.get(key)) if v is not None]
        out[key] = max(vals) if vals else None
    for key in ("isa", "bf16_isa"):
        out[key] = a.get(key) or b.get(key)
    if out["gflops"] is not None:
        out["note"] = None
    return out


def measure_peaks(threads_list: list[int], enabled: bool) -> dict:
    """{threads: peak dict} for each thread count (or notes when disabled)."""
    peaks = {}
    for n in dict.fromkeys(threads_list):
        if not enabled:
            peaks[n] = {"gflops": None, "isa": None, "bf16_gflops": None, "bf16_isa": None, "threads": n,
                        "note": "skipped (--no-fma-peak)"}
            continue
        log(f"measuring the FMA peak on {n} thread(s) ...")
        peaks[n] = fma_peak(n)
        p = peaks[n]
        log(f"  {fmt_gf(p['gflops'])} GFLOP/s float32 FMA ({p['isa']})"
            + (f", {fmt_gf(p['bf16_gflops'])} GFLOP/s bf16 dot ({p['bf16_isa']})" if p["bf16_gflops"] else "")
            + (f" — {p['note']}" if p["note"] else ""))
    return peaks


def remeasure_peaks(peaks: dict, enabled: bool) -> dict:
    """Measures again at the end of a run and keeps the higher of the two."""
    if not enabled:
        return peaks
    out = {}
    for n, p in peaks.items():
        log(f"measuring the FMA peak again on {n} thread(s) ...")
        out[n] = best_peak(p, fma_peak(n))
    return out


def fmt_gf(v) -> str:
    return "n/a" if v is None else f"{v:.1f}"


def machine_meta(threads: int) -> dict:
    """Everything about the machine and the run that does not need an engine imported."""
    return {"date": now(), "cpu": cpu_info(), "platform": platform.platform(), "python": platform.python_version(),
            "threads": threads, "git": git_commit(), "loadavg_start": loadavg(),
            "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                   "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_PROC_BIND",
                                                   "LSTMCORE_ISA")}}
