"""What runs inside one engine's process (bench.py --child JOB.json).

The parent writes a job file and starts `python bench.py --child JOB` with the thread count
pinned in the environment. The child imports only what its engine(s) need, pins the threads
again through each library's own call, and appends one JSON line per case to job["result"]
(flushed at once, so a crash loses only the case it happened in). Two kinds of job:

  "cases"       one engine over a list of cases: check (outputs saved as .npz for the parent to
                compare), warm-up, calibrated samples (timing.measure).
  "after_peer"  lstmcore's time right after another engine's call in the same process:
                each sample is one predecessor call (untimed) and then one timed lstmcore call;
                the predecessors take turns round by round.
"""
from __future__ import annotations

import contextlib
import gc
import json
import os
import time
import traceback
from pathlib import Path

from . import engines as E
from .outputs import save_outputs
from .timing import TimingOptions, measure, summarize
from .util import log


def _save_outputs(outdir: str | None, engine: str, case_id: str, outs: dict) -> None:
    if outdir:
        save_outputs(Path(outdir) / f"{engine}__{case_id}.npz", outs)


def _describe(case: dict) -> str:
    extra = "" if case["variant"] == "plain" else f" {case['variant']}"
    lengths = "" if not case.get("lengths") else " lengths"
    return f"{case['cell']} {case['mode']:5s} T{case['T']} B{case['B']} H{case['H']}{extra}{lengths}"


def run_cases(job: dict, mods: dict, out) -> None:
    name = job["engine"]
    opts = TimingOptions(**job["timing"])
    cls = E.ENGINES[name]
    for case in job["cases"]:
        rec = {"case": case["id"], "engine": name}
        try:
            eng = cls(mods, case, job["seed"], job["threads"])
        except NotImplementedError as e:
            rec["note"] = f"n/a: {e}"
        except Exception as e:  # noqa: BLE001
            rec["note"] = f"setup failed: {type(e).__name__}: {e}"
        if "note" not in rec:
            try:
                with eng.context():
                    _save_outputs(job.get("outdir"), name, case["id"], eng.check())
                    rec.update(measure(eng.timed, opts))
                rec["gflops"] = case["flops"] / (rec["median_ms"] * 1e-3) * 1e-9
                log(f"  {E.SHORT[name]:>22s}  {_describe(case)}: {rec['median_ms']:10.4f} ms"
                    f"  ({rec['samples']} x {rec['inner_loops']})")
            except Exception as e:  # noqa: BLE001
                rec["note"] = f"failed: {type(e).__name__}: {e}"
                if os.environ.get("BENCH_DEBUG"):
                    traceback.print_exc()
            del eng
        if "note" in rec:
            log(f"  {E.SHORT[name]:>22s}  {_describe(case)}: {rec['note']}")
        out.write(json.dumps(rec) + "\n")
        out.flush()


def run_after_peer(job: dict, mods: dict, out) -> None:
    """Each sample: one call of a predecessor engine (untimed), then one lstmcore call (timed).
    Predecessors take turns in a rotating order; sampling stops when each has `min_samples`
    and `max_case_s` has passed (or at `max_samples`)."""
    preds = job["predecessors"]
    p = job["after_peer"]
    for case in job["cases"]:
        rec = {"case": case["id"], "engine": "lstmcore", "after": {}}
        try:
            lc = E.ENGINES["lstmcore"](mods, case, job["seed"], job["threads"])
            pred_engines = {}
            for name in preds:
                # ORT has no training: before a training call it runs the same shape's forward
                pc = dict(case, mode="infer") if (name.startswith("onnxruntime") and case["mode"] == "train") else case
                pred_engines[name] = E.ENGINES[name](mods, pc, job["seed"], job["threads"])
            samples = {name: [] for name in preds}
            r = 0
            # torch's forward runs under inference_mode, entered once for the whole case
            with contextlib.ExitStack() as stack:
                for eng in pred_engines.values():
                    stack.enter_context(eng.context())
                fns = {name: eng.timed for name, eng in pred_engines.items()}
                for _ in range(2):  # warm every engine
                    lc.timed()
                    for fn in fns.values():
                        fn()
                t_start = time.perf_counter()
                gc.collect()
                gc.disable()
                try:
                    while True:
                        order = preds[r % len(preds):] + preds[:r % len(preds)]
                        for name in order:
                            fns[name]()
                            t0 = time.perf_counter()
                            lc.timed()
                            samples[name].append(time.perf_counter() - t0)
                        r += 1
                        enough = r >= p["min_samples"] and time.perf_counter() - t_start >= p["max_case_s"]
                        if enough or r >= p["max_samples"]:
                            break
                finally:
                    gc.enable()
            for name, ss in samples.items():
                rec["after"][name] = summarize(ss)
            log(f"  lstmcore after {'/'.join(E.SHORT[n] for n in preds)}  {_describe(case)}: "
                + ", ".join(f"{E.SHORT[n]} {rec['after'][n]['median_ms']:.4f} ms" for n in preds)
                + f"  ({r} rounds)")
        except NotImplementedError as e:
            rec["note"] = f"n/a: {e}"
        except Exception as e:  # noqa: BLE001
            rec["note"] = f"failed: {type(e).__name__}: {e}"
            if os.environ.get("BENCH_DEBUG"):
                traceback.print_exc()
        out.write(json.dumps(rec) + "\n")
        out.flush()


def child_main(job_path: str) -> int:
    job = json.loads(Path(job_path).read_text())
    if job["kind"] == "cases":
        needed = E.REQUIRES[job["engine"]]
    else:
        needed = [m for n in ["lstmcore", *job["predecessors"]] for m in E.REQUIRES[n]]
    mods, notes = E.import_modules(needed)
    E.set_threads(mods, job["threads"])
    with open(job["result"], "a") as out:
        header = {"header": True, "pid": os.getpid(), "versions": E.versions(mods), "notes": notes,
                  "missing": [m for m in needed if m not in mods]}
        out.write(json.dumps(header) + "\n")
        out.flush()
        if header["missing"]:
            return 0  # the parent reports every case of this job as n/a
        if job["kind"] == "cases":
            run_cases(job, mods, out)
        else:
            run_after_peer(job, mods, out)
    return 0
