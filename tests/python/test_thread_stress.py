"""Thread stress: calls compute while other threads change the process-wide settings.

Every call reads the settings it runs with (``set_num_threads``, ``set_isa``) once, at
its entry, and keeps them to its end; a change never touches a running call's buffers.
So each result must equal, bit for bit, the serial result computed with the settings
that call started with.

Whether results depend on the settings at all is measured, not assumed: the serial
reference of every call kind is computed for every setting (threads 1, 2, 8 × every
available ISA). Different ISAs give different bits (other vector widths, other FMA
contractions); the thread count may (GEMM blocking) or may not. A check is exact when the
settings cannot have changed while the call ran, else the result must be the reference of
one of the settings that were in force at some moment between the call's start and end:

* Every change of a setting happens under a lock that also appends the new settings to
  a log. A call reads the log's length under that lock just before it starts (v0) and
  just after it returns (v1); the settings it started with are among log[v0..v1], and
  when v0 == v1 they are exactly log[v0].
* Rounds are barrier-controlled: a controller sets the round's settings, then the eight
  workers pass a barrier and start one call each. Every third round the controller changes
  nothing until all workers are back (every check of such a round is exact); in the other
  rounds it keeps changing the thread count and the ISA while the calls run.
* The issue's reproducer: forwards one after another, each on a fresh thread, while one
  thread toggles set_num_threads(1) / (8) (and the ISA) in a loop.

The stress runs in a subprocess (a crash fails the test instead of killing pytest) with
passive OpenMP waits (eight callers of up to eight threads each share two cores in CI).
Before each call reads its settings once, this crashed (heap overflow of the packed
kernels' per-thread tiles) or returned results computed with mixed settings.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading

import numpy as np

THREADS = (1, 2, 8)
WORKERS = 8


def _digest(values):
    m = hashlib.sha256()
    for v in values:
        if v is None:
            m.update(b"-")
        else:
            a = np.ascontiguousarray(v)
            m.update(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    return m.hexdigest()


def _kinds(lstmcore):
    """name -> (forward(), backward(forward's result) or None): the calls the stress runs."""
    rng = np.random.default_rng(12)

    def arrays(T, B, I, H, G, dtype):
        return (rng.standard_normal((T, B, I)).astype(dtype), rng.uniform(-0.2, 0.2, (I, G * H)).astype(dtype),
                rng.uniform(-0.2, 0.2, (H, G * H)).astype(dtype), rng.uniform(-0.1, 0.1, G * H).astype(dtype))

    kinds = {}
    # The reproducer: an LSTM inference the size of the report.
    x, w_x, w_h, b = arrays(100, 16, 256, 64, 4, np.float32)
    kinds["lstm_infer"] = (lambda: lstmcore.forward(x, w_x, w_h, b), None)

    # Training (forward, then backward with the same dy) of a GRU with lengths and reverse.
    gx, gw_x, gw_h, gb = arrays(12, 16, 48, 64, 3, np.float64)
    lengths = rng.integers(1, 13, 16)
    gdy = rng.standard_normal((12, 16, 64))
    kinds["gru_train"] = (
        lambda: lstmcore.forward(gx, gw_x, gw_h, gb, gb, cell="gru", reverse=True, seq_lengths=lengths,
                                 training=True),
        lambda r: lstmcore.backward(r.cache, gdy))

    # A cell variant (the general path): LSTM with peepholes, training.
    vx, vw_x, vw_h, vb = arrays(24, 8, 32, 48, 4, np.float32)
    peep = rng.uniform(-0.2, 0.2, (3, 48)).astype(np.float32)
    vdy = rng.standard_normal((24, 8, 48)).astype(np.float32)
    kinds["variant_train"] = (lambda: lstmcore.forward(vx, vw_x, vw_h, vb, peepholes=peep, training=True),
                              lambda r: lstmcore.backward(r.cache, vdy))

    # A stack: two bidirectional LSTM layers with dropout, training.
    layer = lstmcore.LSTM(32, 32, num_layers=2, bidirectional=True, dropout=0.25, seed=3)
    sx = rng.standard_normal((20, 8, 32)).astype(np.float32)
    sdy = rng.standard_normal((20, 8, 64)).astype(np.float32)
    kinds["stack_train"] = (lambda: layer.forward(sx, training=True, dropout_seed=7),
                            lambda r: layer.backward(r[2], sdy))
    return kinds


def _forward_digest(result):
    """The digest of a forward's outputs, its training cache's buffer included."""
    if isinstance(result, tuple) and len(result) == 3 and not hasattr(result, "y"):  # a layer's (y, state, cache)
        y, state, cache = result
        return _digest([y, *state, cache.buffer])
    return _digest([result.y, result.h_n, result.c_n, None if result.cache is None else result.cache.buffer])


def _backward_digest(grads):
    if isinstance(grads, tuple) and len(grads) == 2 and isinstance(grads[1], tuple):  # a layer's (dx, dstate)
        return _digest([grads[0], *grads[1]])
    return _digest(list(grads))


def _stress(mode, rounds):
    """Runs in the subprocess; prints a JSON summary; exit status 1 on a wrong result."""
    import lstmcore  # noqa: PLC0415

    isas = lstmcore.available_isas()
    settings = [(n, isa) for n in THREADS for isa in isas]
    kinds = _kinds(lstmcore)

    def apply(s):
        lstmcore.set_num_threads(s[0])
        lstmcore.set_isa(s[1])

    # Serial references: forward per setting; backward per (forward's result, backward's
    # setting). A backward depends on its forward only through the forward's outputs and
    # cache, so settings whose forwards agree bit for bit share their backward references.
    ref_f, ref_b = {}, {}
    for name, (fwd, bwd) in kinds.items():
        first = {}  # forward digest -> the first setting that gave it
        for s in settings:
            apply(s)
            ref_f[name, s] = _forward_digest(fwd())
            first.setdefault(ref_f[name, s], s)
        if bwd is None:
            continue
        for digest, sf in first.items():
            for sb in settings:
                apply(sf)
                r = fwd()  # a fresh cache (one backward each)
                assert _forward_digest(r) == digest, f"{name}: two serial forwards with {sf} differ"
                apply(sb)
                ref_b[name, digest, sb] = _backward_digest(bwd(r))
    depends = {name: {"threads": len({ref_f[name, (n, isa)] for n in THREADS}) > 1 for isa in isas}
               for name in kinds}

    lock = threading.Lock()
    log = [settings[0]]
    apply(settings[0])
    counts = {"calls": 0, "exact": 0, "candidates": 0}
    errors = []
    rng = np.random.default_rng(5)

    def change(threads=None, isa=None):
        with lock:
            n, i = log[-1]
            s = (threads if threads is not None else n, isa if isa is not None else i)
            if threads is not None:
                lstmcore.set_num_threads(threads)
            if isa is not None:
                lstmcore.set_isa(isa)
            log.append(s)

    def version():
        with lock:
            return len(log) - 1

    def candidates(v0, v1):
        with lock:
            return set(log[v0:v1 + 1])

    def checked_call(name):
        fwd, bwd = kinds[name]
        v0 = version()
        r = fwd()
        v1 = version()
        got_f = _forward_digest(r)
        cf = candidates(v0, v1)
        ok_f = [s for s in cf if ref_f[name, s] == got_f]
        exact = len(cf) == 1
        if bwd is not None and ok_f:
            v2 = version()
            g = bwd(r)
            v3 = version()
            cb = candidates(v2, v3)
            got_b = _backward_digest(g)
            exact = exact and len(cb) == 1
            if not any(ref_b[name, got_f, sb] == got_b for sb in cb):
                ok_f = []
                cf = (cf, cb)
        with lock:
            counts["calls"] += 1
            counts["exact" if exact else "candidates"] += 1
            if not ok_f:
                errors.append(f"{name}: result equals no serial reference of the settings in force {sorted(cf)}")

    names = list(kinds)
    if mode == "fresh":
        # One thread toggles the settings in a loop while forwards run one after
        # another, each on a fresh thread (the reproducer, plus the ISA).
        stop = threading.Event()

        def toggler():
            k = 0
            while not stop.is_set():
                change(threads=1 if k % 2 else 8, isa=isas[(k // 2) % len(isas)])
                k += 1
                stop.wait(0.0005 * (k % 4))

        t = threading.Thread(target=toggler)
        t.start()
        try:
            for k in range(rounds):
                w = threading.Thread(target=checked_call, args=(names[k % len(names)] if k % 2 else "lstm_infer",))
                w.start()
                w.join()
        finally:
            stop.set()
            t.join()
    else:
        barrier = threading.Barrier(WORKERS + 1)
        done = threading.Barrier(WORKERS + 1)
        running = threading.Event()

        def worker(w):
            for k in range(rounds):
                barrier.wait()
                checked_call(names[(w + k) % len(names)])
                done.wait()

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(WORKERS)]
        for t in threads:
            t.start()
        for k in range(rounds):
            s = settings[int(rng.integers(len(settings)))]
            change(threads=s[0], isa=s[1])
            barrier.wait()
            if k % 3 != 2:  # change the settings while the calls run
                running.clear()
                while done.n_waiting < WORKERS:
                    if rng.random() < 0.5:
                        change(threads=int(rng.choice(THREADS)))
                    else:
                        change(isa=isas[int(rng.integers(len(isas)))])
                    running.wait(float(rng.uniform(0, 0.003)))
            done.wait()
        for t in threads:
            t.join()
    print(json.dumps({"mode": mode, "isas": isas, "depends_on_threads": depends, "changes": len(log) - 1,
                      **counts, "errors": errors[:20]}))
    return 1 if errors else 0


def _run(mode, rounds):
    import lstmcore  # noqa: PLC0415

    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(lstmcore.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([package_root] + [p for p in [env.get("PYTHONPATH")] if p])
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), mode, str(rounds)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (f"the stress run ({mode}) failed with status {proc.returncode}:\n"
                                  f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["errors"] == []
    return summary


def test_settings_change_while_calls_run():
    """Eight workers call in barrier-controlled rounds while the settings change under them."""
    s = _run("rounds", 12)
    assert s["calls"] == 12 * WORKERS
    assert s["exact"] >= 4 * WORKERS  # every quiet round's calls are checked exactly
    assert s["changes"] > 12


def test_fresh_thread_per_forward_while_threads_toggle():
    """The issue's reproducer: a fresh thread per forward, set_num_threads(1)/(8) toggling."""
    s = _run("fresh", 60)
    assert s["calls"] == 60
    assert s["changes"] > 10


if __name__ == "__main__":
    sys.exit(_stress(sys.argv[1], int(sys.argv[2])))
