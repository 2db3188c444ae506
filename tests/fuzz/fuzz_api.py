"""A fuzzer of lstmcore's Python API (opt-in: not part of the default test run).

Thousands of random calls — lstmcore.forward / backward with every cell, option, cell variant,
dtype and layout, the layer objects (stacks, directions, merge, dropout, step, variants),
valid and invalid (one argument spoilt) — drawn by tests/python/problems.py. Each batch of
calls runs in a subprocess, so a crash is caught and pinned to the call that caused it; the
rest go on in a fresh subprocess. Every accepted valid call is compared with the float64
NumPy reference; every invalid call must raise a ValueError / TypeError / OverflowError (a
MemoryError for a copy that cannot be allocated) whose message names the argument; a backward
that fails must leave the cache usable, a refused setting the setting as it was. Each call also picks the thread count and the
instruction set it runs with. Scratch and new result arrays start as NaN bytes
(_core._poison_scratch), so a kernel reading memory it did not write shows as a mismatch.

    python tests/fuzz/fuzz_api.py --calls 5000                 # counts per outcome
    python tests/fuzz/fuzz_api.py --calls 20000 --jobs 2 --out fuzz.json
    python tests/fuzz/fuzz_api.py --replay 0:1234              # one call (seed:index), verbose

Outcomes: valid calls "match" (every output within the tolerance; outputs too ill-conditioned
to judge in their dtype, see problems.Report, counted apart), "mismatch", "error on a valid call"; invalid calls
"clean error", "accepted" (no error), "unnamed" (the message does not name the argument),
"unexpected type" (another exception type), "changed by a failed call" (a failed backward left
its cache unusable or wrong, a refused setting changed the setting); either kind "crash" (the
subprocess died) or "hang" (a batch ran past BATCH_SECONDS). Workers run with a 3 GiB address
space, so a call that would allocate more fails with a MemoryError instead of exhausting the machine. Exit status 1 when any outcome
other than "match" / "clean error" occurred. Run from the repository root with the package
importable (PYTHONPATH=python for a source tree).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import signal
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.join(os.path.dirname(HERE), "python")
GOOD = ("match", "clean error")
#: A worker's address space (bytes) and a batch's time (seconds): a call that would allocate
#: terabytes gets a MemoryError instead of the machine's memory, a call that hangs is reported.
MEMORY_LIMIT = 3 * 2**30
BATCH_SECONDS = 900


def case(seed, index):
    """(kind, spec, mutation, threads, isa) of call ``index`` of run ``seed``; deterministic."""
    import numpy as np  # noqa: PLC0415

    import lstmcore  # noqa: PLC0415
    import problems  # noqa: PLC0415

    pick = problems.RngPicker(np.random.default_rng([seed, index]))
    valid = pick.boolean(0.5)
    spec = problems.draw_forward_spec(pick) if pick.boolean(0.55) else problems.draw_layer_spec(pick)
    mutation = None if valid else problems.draw_mutation(pick, spec)
    threads = pick.choice([1, 2, 3, 4])
    isa = pick.choice(lstmcore.available_isas())
    return ("valid" if valid else "invalid"), spec, mutation, threads, isa


def run_one(seed, index):
    """Runs one call in this process; returns a result dict."""
    import lstmcore  # noqa: PLC0415
    import problems  # noqa: PLC0415

    kind, spec, mutation, threads, isa = case(seed, index)
    lstmcore.set_num_threads(threads)
    lstmcore.set_isa(isa)
    out = {"i": index, "kind": kind, "api": spec["api"]}
    if kind == "valid":
        try:
            report = problems.run_valid(spec)
        except Exception as exc:  # noqa: BLE001
            out.update(outcome="error on a valid call", detail=f"{type(exc).__name__}: {exc}")
            return out
        out["skipped"] = len(report.skipped)
        out["outcome"] = "mismatch" if report else "match"
        if report:
            out["detail"] = repr(report.mismatches)
        return out
    out["mutation"] = mutation["kind"]
    try:
        exc, expect, note = problems.run_invalid(spec, mutation)
    except Exception as err:  # noqa: BLE001 -- the harness itself failed: report it as such
        out.update(outcome="harness error", detail=f"{type(err).__name__}: {err}\n{traceback.format_exc()}")
        return out
    verdict = problems.judge(exc, expect)
    out["outcome"] = {"clean": "clean error", "accepted": "accepted", "unnamed": "unnamed",
                      "unexpected": "unexpected type"}[verdict]
    if note:
        out["outcome"] = "changed by a failed call"
        out["detail"] = note
    elif verdict != "clean":
        out["detail"] = f"expected a name in {list(expect)}; got " + (
            "no exception" if exc is None else f"{type(exc).__name__}: {exc}")
    return out


def worker(seed, start, count):
    import warnings  # noqa: PLC0415

    warnings.simplefilter("ignore")  # overflow warnings of the reference on large values are expected
    for i in range(start, start + count):
        print(json.dumps({"i": i, "event": "start"}), flush=True)
        print(json.dumps(run_one(seed, i)), flush=True)


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _spawn(seed, start, count):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--seed", str(seed), "--start", str(start),
           "--count", str(count)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_limit_memory)


def _collect(proc, start, count, seed, results):
    """Reads a worker's results; returns the index to resume from (None when the batch is done)."""
    try:
        stdout, stderr = proc.communicate(timeout=BATCH_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        stderr = f"killed after {BATCH_SECONDS} s (a hang?); " + stderr
    started = None
    for line in stdout.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("event") == "start":
            started = rec["i"]
        else:
            results.append(rec)
            started = None
    if proc.returncode == 0:
        return None
    if started is None:  # died between calls: resume after the last result
        done = max((r["i"] for r in results if start <= r["i"] < start + count), default=start - 1)
        started = done + 1
        if started >= start + count:
            return None
    rc = proc.returncode
    how = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"exit status {rc}"
    outcome = "hang" if stderr.startswith("killed after") else "crash"
    kind, spec, mutation, threads, isa = case(seed, started)
    results.append({"i": started, "kind": kind, "api": spec["api"], "outcome": outcome,
                    "detail": f"{how}; stderr: {stderr[-2000:]}",
                    "mutation": None if mutation is None else mutation["kind"]})
    return started + 1 if started + 1 < start + count else None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=100, help="calls per subprocess")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1, help="subprocesses at a time")
    ap.add_argument("--out", help="write the counts and every reproducer to this JSON file")
    ap.add_argument("--replay", help="SEED:INDEX: run that one call here and print everything")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    sys.path.insert(0, TESTS)
    import importlib.util  # noqa: PLC0415

    if importlib.util.find_spec("lstmcore") is None:  # a source tree: the package beside the tests
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "python"))
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [sys.path[0], os.environ.get("PYTHONPATH")]))
    if args.worker or args.replay:  # scratch filled with NaN bytes: a read of unwritten scratch shows
        from lstmcore import _core  # noqa: PLC0415

        _core._poison_scratch(True)
    if args.worker:
        worker(args.seed, args.start, args.count)
        return 0
    if args.replay:
        seed, index = (int(v) for v in args.replay.split(":"))
        kind, spec, mutation, threads, isa = case(seed, index)
        print(json.dumps({"kind": kind, "spec": spec, "mutation": mutation, "threads": threads, "isa": isa},
                         indent=1))
        print(json.dumps(run_one(seed, index), indent=1))
        return 0
    t0 = time.time()
    results = []
    pending = collections.deque((s, min(args.batch, args.calls - s)) for s in range(0, args.calls, args.batch))
    running = []
    while pending or running:
        while pending and len(running) < args.jobs:
            start, count = pending.popleft()
            running.append((_spawn(args.seed, start, count), start, count))
        proc, start, count = running.pop(0)
        resume = _collect(proc, start, count, args.seed, results)
        if resume is not None:
            pending.appendleft((resume, start + count - resume))
    counts = collections.Counter(r["outcome"] for r in results)
    by_api = collections.Counter((r["kind"], r["api"], r["outcome"]) for r in results)
    skipped = sum(r.get("skipped", 0) for r in results)
    bad = sorted((r for r in results if r["outcome"] not in GOOD), key=lambda r: r["i"])
    print(f"{len(results)} calls (seed {args.seed}) in {time.time() - t0:.0f} s")
    for outcome, n in counts.most_common():
        print(f"  {outcome:24s} {n}")
    print(f"  outputs too ill-conditioned to judge in their dtype (skipped, see problems.Report): {skipped}")
    for (kind, api, outcome), n in sorted(by_api.items()):
        print(f"    {kind:8s} {api:8s} {outcome:24s} {n}")
    for r in bad[:30]:
        print(f"- {args.seed}:{r['i']} {r['outcome']} ({r.get('mutation') or r['kind']}): {r.get('detail', '')[:400]}")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"seed": args.seed, "calls": len(results), "counts": dict(counts), "skipped_outputs": skipped,
                       "by_api": {" ".join(k): v for k, v in by_api.items()}, "problems": bad}, fh, indent=1)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
