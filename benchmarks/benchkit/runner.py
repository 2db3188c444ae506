"""The parent side: one process per (engine, batch of cases), outputs compared across engines.

Engines never share a process here, so no engine's idle thread pool (PyTorch's OpenMP workers,
ONNX Runtime's spinning pool) slows the next one. Within a batch the engines run one after
the other in a rotating order (and, with rounds > 1, again), so a change in the machine's
load touches all of them alike.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import engines as E
from .outputs import compare_files
from .timing import summarize
from .util import log, thread_env

BENCH_PY = Path(__file__).resolve().parent.parent / "bench.py"

class Runner:
    """Starts children, collects their records. Use as a context manager (owns a temp folder)."""

    def __init__(self, threads: int, seed: int, timing: dict, timeout_s: float = 7200.0,
                 after_peer: dict | None = None):
        self.threads, self.seed, self.timing, self.timeout_s = threads, seed, timing, timeout_s
        self.after_peer = after_peer or {}
        self.headers: dict[str, dict] = {}   # engine (or "after-peer") -> the child's versions and notes
        self.notes: list[str] = []
        self._n = 0

    def __enter__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="lstmcore-bench-"))
        return self

    def __exit__(self, *exc):
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- one child ------------------------------------------------------------------------
    def _spawn(self, job: dict, label: str) -> list[dict]:
        self._n += 1
        job_path = self.dir / f"job{self._n}.json"
        res_path = self.dir / f"res{self._n}.jsonl"
        job.update(threads=self.threads, seed=self.seed, result=str(res_path))
        job_path.write_text(json.dumps(job))
        cmd = [sys.executable, str(BENCH_PY), "--child", str(job_path)]
        t0 = time.perf_counter()
        try:
            p = subprocess.run(cmd, env=thread_env(self.threads), timeout=self.timeout_s,
                               stdout=subprocess.DEVNULL)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        lines = res_path.read_text().splitlines() if res_path.exists() else []
        recs = [json.loads(ln) for ln in lines if ln.strip()]
        header = next((r for r in recs if r.get("header")), None)
        if header is not None:
            self.headers.setdefault(label, header)
            for n in header.get("notes", []):
                if n not in self.notes:
                    self.notes.append(n)
        if rc != 0:
            msg = f"{label} process ended with {rc} after {time.perf_counter() - t0:.0f} s"
            log("  " + msg)
            self.notes.append(msg)
        missing = header.get("missing") if header else ["(the process wrote nothing)"]
        recs = [r for r in recs if not r.get("header")]
        done = {r["case"] for r in recs}
        why = (f"not importable: {', '.join(missing)}" if missing else f"process ended with {rc}")
        for c in job["cases"]:
            if c["id"] not in done:
                recs.append({"case": c["id"], "engine": job.get("engine", "lstmcore"), "note": why})
        return recs

    def run_cases(self, engine: str, cases: list[dict], save_outputs: bool) -> dict:
        """{case id: record} of one engine over `cases`, in a process of its own."""
        cases = [c for c in cases if E.supports(engine, c)]
        if not cases:
            return {}
        job = {"kind": "cases", "engine": engine, "cases": cases, "timing": self.timing,
               "outdir": str(self.dir) if save_outputs else None}
        return {r["case"]: r for r in self._spawn(job, engine)}

    def run_after_peer(self, predecessors: list[str], cases: list[dict], label: str) -> dict:
        job = {"kind": "after_peer", "predecessors": predecessors, "cases": cases, "after_peer": self.after_peer}
        return {r["case"]: r for r in self._spawn(job, label)}

    # -- a batch of cases over several engines -----------------------------------------------
    def run_batch(self, cases: list[dict], engines: list[str], pairs, rounds: int = 1, rotate: int = 0) -> list[dict]:
        """Every engine over `cases` (one process each, rotating order, `rounds` times), then the
        outputs compared: pairs(case) -> [(engine, reference engine, tolerance)]. Returns one
        result per case: {"case", "engines": {name: record}, "checks": {"A vs B": comparison}}."""
        results = {c["id"]: {"case": c, "engines": {}, "checks": {}} for c in cases}
        for r in range(rounds):
            k = (rotate + r) % max(1, len(engines))
            for name in engines[k:] + engines[:k]:
                recs = self.run_cases(name, cases, save_outputs=(r == 0))
                for cid, rec in recs.items():
                    prev = results[cid]["engines"].get(name)
                    results[cid]["engines"][name] = merge_records(prev, rec)
        for c in cases:
            res = results[c["id"]]
            for name, ref, tol in pairs(c):
                a, b = self.dir / f"{name}__{c['id']}.npz", self.dir / f"{ref}__{c['id']}.npz"
                if a.exists() and b.exists():
                    chk = res["checks"][check_key(name, ref)] = compare_files(a, b, tol, ref)
                    chk["engine"] = name
                    if not chk["ok"]:
                        log(f"  MISMATCH {c['id']}: {E.SHORT.get(name, name)} vs {E.SHORT.get(ref, ref)}: "
                            + ", ".join(f"{k} {v:.1e}" for k, v in chk["rel_err"].items()))
            for name in engines:
                (self.dir / f"{name}__{c['id']}.npz").unlink(missing_ok=True)
        return [results[c["id"]] for c in cases]


def check_key(engine: str, ref: str) -> str:
    return f"{engine} vs {ref}"


def merge_records(prev: dict | None, rec: dict) -> dict:
    """Samples of the same (engine, case) from several rounds: pooled, the summary recomputed."""
    if prev is None or "median_ms" not in prev:
        return rec if prev is None or "median_ms" in rec else prev
    if "median_ms" not in rec:
        return prev
    merged = dict(prev)
    merged.update(summarize([t / 1e3 for t in prev["times_ms"] + rec["times_ms"]]))
    merged["samples"] = prev["samples"] + rec["samples"]
    if prev.get("gflops") and prev.get("median_ms"):
        flops = prev["gflops"] * 1e9 * prev["median_ms"] * 1e-3
        merged["gflops"] = flops / (merged["median_ms"] * 1e-3) * 1e-9
    return merged
