"""What each benchmark mode runs, and the figures it derives (ratios, geometric means, slowdowns).

Every mode returns a results dict: {"mode", "meta", "cases": [...], "summary": {...}}; the
report module renders it. Engines always run in processes of their own (runner.Runner), except
in the after-peer mode, whose point is to share one.
"""
from __future__ import annotations

import time
from pathlib import Path

from . import cases as C
from . import engines as E
from . import machine
from .outputs import TOL_BF16, TOL_F32, save_outputs
from .runner import Runner, check_key
from .timing import TimingOptions
from .util import geomean, log, thread_env

PEERS = ("torch", "onnxruntime")
# Issue 17's goals (ratio peer time / lstmcore time), shown beside the measured figures.
GOALS = {"infer": {"geomean": 1.15, "min": 0.95}, "train": {"geomean": 1.5, "min": 1.0}}
VARLEN_GOAL = 1.4      # lstmcore padded time / time with seq_lengths, at 63% useful work
STEP_GOAL_US = 15.0    # layer.step and the C++ stepper, B = 1, H = 256
AFTER_PEER_GOAL = 0.10  # at most 10% slower right after torch / ONNX Runtime
BF16_GOAL = 1.2        # torch autocast time / lstmcore bf16 time


def _family(engine: str) -> str:
    return "onnxruntime" if engine.startswith("onnxruntime") else engine.split("-")[0]


def _wanted(args, engines) -> list[str]:
    """The engines whose library is in --impls."""
    return [e for e in engines if _family(e) in args.impls]


def timing_options(args) -> TimingOptions:
    return TimingOptions(warmup=args.warmup, min_sample_s=args.min_sample_ms / 1e3, repeats=args.repeats,
                         min_repeats=min(args.min_repeats, args.repeats), max_case_s=args.max_case_s)


def _runner(args) -> Runner:
    return Runner(args.threads, args.seed, timing_options(args).to_dict(), timeout_s=args.child_timeout,
                  after_peer={"min_samples": args.after_peer_rounds, "max_case_s": args.max_case_s,
                              "max_samples": max(args.after_peer_rounds, 2000)})


def _meta(args, mode: str, runner: Runner, peaks: dict, t_start: float) -> dict:
    meta = machine.machine_meta(args.threads)
    meta["loadavg_start"] = args._loadavg_start
    meta.update(mode=mode, quick=args.quick, seed=args.seed, rounds=args.rounds,
                dtype="float32 and bfloat16" if mode == "bf16" else "float32",
                timing=timing_options(args).to_dict(), impls=args.impls,
                engines_versions={k: v.get("versions") for k, v in runner.headers.items()},
                fma_peak=peaks, notes=list(args._notes) + runner.notes,
                loadavg_end=machine.loadavg(), wall_s=round(time.perf_counter() - t_start, 1))
    busy = machine.busy_note(meta["loadavg_start"], meta["loadavg_end"])
    if busy:
        meta["notes"].append(busy)
    return meta


def _ratios(res: dict, base: str = "lstmcore", peers=PEERS) -> None:
    """res["ratios"][peer] = peer time / base time; "best" against the fastest peer."""
    eng = res["engines"]
    b = eng.get(base, {}).get("median_ms")
    res["ratios"] = {}
    times = {p: eng[p]["median_ms"] for p in peers if eng.get(p, {}).get("median_ms")}
    for p, t in times.items():
        res["ratios"][p] = t / b if b else None
    if times and b:
        best = min(times, key=times.get)
        res["ratios"]["best"] = times[best] / b
        res["best_peer"] = best
    res["mismatch"] = _mismatches(res)


def _mismatches(res: dict) -> list[str]:
    """The comparisons of a case ("A vs B") above their tolerance."""
    return sorted(k for k, c in res["checks"].items() if not c["ok"])


def _peer_pairs(engines):
    ref = "lstmcore" if "lstmcore" in engines else ("torch" if "torch" in engines else None)
    return lambda case: [(e, ref, TOL_F32) for e in engines if ref and e != ref]


def _per_config(args, runner: Runner, engines: list[str], pairs, make_batch, describe=None) -> list[dict]:
    """One batch of cases per config (make_batch(label, T, B, H)), every engine over it in its own
    process, the engines' order rotating from config to config."""
    out = []
    for k, (label, (T, B, H)) in enumerate(args.configs):
        batch = make_batch(label, T, B, H)
        log(f"{label} (T={T}, B={B}, I=H={H}): {len(batch)} case(s)" + (f", {describe(batch)}" if describe else ""))
        out += runner.run_batch(batch, engines, pairs, rounds=args.rounds, rotate=k)
    return out


def _plain_cases(args, label, T, B, H, **kw) -> list[dict]:
    return [C.make_case(cell, mode, T, B, H, config=label, **kw) for cell in args.cells for mode in args.modes]


def _start(args, mode: str):
    log(f"== {mode} ({args.threads} thread(s)) ==")
    return time.perf_counter()


def _peaks(args, extra_threads=()) -> dict:
    return machine.measure_peaks([args.threads, *extra_threads], enabled=not args.no_fma_peak)


def _finish_peaks(args, peaks):
    return machine.remeasure_peaks(peaks, enabled=not args.no_fma_peak)


def _against_peers(args, runner: Runner, out: list[dict], peaks: dict, t0: float, mode: str) -> dict:
    """Ratios to the peers, each engine's fraction of the FMA peak (measured again now); the meta."""
    for res in out:
        _ratios(res)
    peaks = _finish_peaks(args, peaks)
    g = peaks[args.threads].get("gflops")
    for res in out:
        for rec in res["engines"].values():
            if rec.get("gflops") and g:
                rec["frac_peak"] = rec["gflops"] / g
    return _meta(args, mode, runner, peaks, t0)


# --------------------------------------------------------------------------------------------
# compass configs (the default mode) and the LSTM variant rows
# --------------------------------------------------------------------------------------------

def run_compass(args) -> dict:
    t0 = _start(args, "compass configs")
    peaks = _peaks(args)
    engines = _wanted(args, ["lstmcore", "torch", "onnxruntime"])

    def make_batch(label, T, B, H):
        batch = _plain_cases(args, label, T, B, H)
        if "lstm" in args.cells and label in args.variant_configs:
            batch += [C.make_case("lstm", mode, T, B, H, config=label, variant=v)
                      for v in args.variants for mode in args.modes]
        return batch

    with _runner(args) as runner:
        out = _per_config(args, runner, engines, _peer_pairs(engines), make_batch)
        meta = _against_peers(args, runner, out, peaks, t0, "compass")
    return {"mode": "compass", "meta": meta, "cases": out, "memory": []}


# --------------------------------------------------------------------------------------------
# the grid
# --------------------------------------------------------------------------------------------

def run_grid(args) -> dict:
    t0 = _start(args, "grid")
    peaks = _peaks(args)
    engines = _wanted(args, ["lstmcore", "torch", "onnxruntime"])
    out = []
    with _runner(args) as runner:
        k = 0
        for cell in args.cells:
            for H in args.grid_h:
                batch = C.grid_cases([cell], args.modes, [H], args.grid_b, T=args.grid_t)
                log(f"grid {cell.upper()} H={H}: B in {list(args.grid_b)}, {', '.join(args.modes)}")
                out += runner.run_batch(batch, engines, _peer_pairs(engines), rounds=args.rounds, rotate=k)
                k += 1
        meta = _against_peers(args, runner, out, peaks, t0, "grid")
    meta.update(grid={"T": args.grid_t, "H": list(args.grid_h), "B": list(args.grid_b)}, goals=GOALS)
    return {"mode": "grid", "meta": meta, "cases": out, "summary": grid_summary(out, args.cells, args.modes)}


def _summarize_ratios(rows: list[dict], mode: str, worst_n: int = 3) -> dict:
    best = [(r["ratios"].get("best"), r) for r in rows if r["ratios"].get("best")]
    worst = sorted(best, key=lambda t: t[0])[:worst_n]
    goal = GOALS[mode]
    return {
        "n": len(rows), "n_measured": len(best),
        "geomean_best": geomean(v for v, _ in best),
        "geomean_torch": geomean(r["ratios"].get("torch") for r in rows),
        "geomean_onnxruntime": geomean(r["ratios"].get("onnxruntime") for r in rows),
        "min_best": worst[0][0] if worst else None,
        "worst": [{"ratio": v, "cell": r["case"]["cell"], "H": r["case"]["H"], "B": r["case"]["B"],
                   "peer": r.get("best_peer")} for v, r in worst],
        "below_goal_min": sum(1 for v, _ in best if v < goal["min"]),
        "goal": goal,
        "mismatches": [r["case"]["id"] for r in rows if r.get("mismatch")],
    }


def grid_summary(results: list[dict], cells, modes) -> dict:
    s = {"per_cell_mode": {}, "per_mode": {}}
    for mode in modes:
        rows = [r for r in results if r["case"]["mode"] == mode]
        s["per_mode"][mode] = _summarize_ratios(rows, mode)
        for cell in cells:
            s["per_cell_mode"][f"{cell}/{mode}"] = _summarize_ratios(
                [r for r in rows if r["case"]["cell"] == cell], mode)
    return s


# --------------------------------------------------------------------------------------------
# variable lengths
# --------------------------------------------------------------------------------------------

VARLEN_ENGINES = ["lstmcore", "lstmcore-padded", "torch", "torch-padded", "onnxruntime"]


def run_varlen(args) -> dict:
    t0 = _start(args, "variable lengths")
    peaks = _peaks(args)
    engines = _wanted(args, VARLEN_ENGINES)

    def pairs(case):
        p = []
        if "lstmcore" in engines:
            p += [(e, "lstmcore", TOL_F32) for e in ("torch", "onnxruntime") if e in engines]
        if "lstmcore-padded" in engines and "torch-padded" in engines:
            p.append(("torch-padded", "lstmcore-padded", TOL_F32))
        return p

    def make_batch(label, T, B, H):
        return _plain_cases(args, label, T, B, H, lengths=C.spread_lengths(T, B, args.seed, args.lengths_from),
                            tag="lengths")

    def describe(batch):
        lengths, T = batch[0]["lengths"], batch[0]["T"]
        return (f"lengths over [{min(lengths)}, {max(lengths)}]: "
                f"{100 * C.useful_fraction(lengths, T):.1f}% useful work")

    with _runner(args) as runner:
        out = _per_config(args, runner, engines, pairs, make_batch, describe)
        meta = _meta(args, "varlen", runner, _finish_peaks(args, peaks), t0)
    for res in out:
        e = {n: r.get("median_ms") for n, r in res["engines"].items()}
        frac = C.useful_fraction(res["case"]["lengths"], res["case"]["T"])
        res["useful_fraction"] = frac
        res["limit"] = 1.0 / frac

        def div(a, b):
            return e[a] / e[b] if e.get(a) and e.get(b) else None
        res["speedups"] = {"lstmcore": div("lstmcore-padded", "lstmcore"), "torch": div("torch-padded", "torch"),
                           "onnxruntime": None}
        res["ratios"] = {"torch": div("torch", "lstmcore"), "onnxruntime": div("onnxruntime", "lstmcore")}
        res["mismatch"] = _mismatches(res)
    meta.update(lengths_from=args.lengths_from, goal_speedup=VARLEN_GOAL)
    return {"mode": "varlen", "meta": meta, "cases": out}


# --------------------------------------------------------------------------------------------
# the streaming step
# --------------------------------------------------------------------------------------------

STEP_ENGINES = ["lstmcore-step", "lstmcore-fwd1", "torch-cell"]


def run_step(args) -> dict:
    t0 = _start(args, "streaming step")
    peaks = _peaks(args, extra_threads=[1])
    engines = _wanted(args, STEP_ENGINES)
    ref = "torch-cell" if "torch-cell" in engines else None

    def pairs(case):
        return [(e, ref, TOL_F32) for e in [*engines, "cpp-step"] if ref and e != ref]

    cpp = {}
    with _runner(args) as runner:
        exe, why = (None, "not requested") if "lstmcore" not in args.impls else compile_step_cpp(args.cpp_build)

        def make_batch(label, T, B, H):
            # the C++ program first: its final state joins the batch's comparison
            batch = [C.make_case(cell, "step", T, B, H, config=label) for cell in args.cells]
            for case in batch:
                cpp[case["id"]] = (run_step_cpp(exe, case, args, runner.dir) if exe is not None
                                   else {"note": f"n/a: {why}"})
            return batch

        out = _per_config(args, runner, engines, pairs, make_batch)
        for res in out:
            res["engines"]["cpp-step"] = cpp[res["case"]["id"]]
        peaks = _finish_peaks(args, peaks)
        meta = _meta(args, "step", runner, peaks, t0)
    for res in out:
        flops = res["case"]["flops"]
        res["bound_us"] = {str(n): (flops / (p["gflops"] * 1e9) * 1e6 if p.get("gflops") else None)
                           for n, p in peaks.items()}
        res["mismatch"] = _mismatches(res)
    meta.update(goal_us=STEP_GOAL_US, cpp_build=str(args.cpp_build))
    return {"mode": "step", "meta": meta, "cases": out}


def compile_step_cpp(build_dir) -> tuple[Path | None, str | None]:
    lib = Path(build_dir) / "liblstmcore.a"
    if not lib.exists():
        return None, f"{lib} not found (build the C++ library first: cmake --build build)"
    src = machine.BENCH_DIR / "step_cpp.cpp"
    inc = machine.REPO_ROOT / "cpp" / "include"
    exe, why = machine.compile_cached("step_cpp", [src], ["-O2", "-std=c++17", f"-I{inc}", str(lib), "-fopenmp"],
                              extra_key=lib.read_bytes())
    return exe, why


def run_step_cpp(exe: Path, case: dict, args, workdir: Path) -> dict:
    """Times the C++ per-step path in a process of its own; its final state is saved for the check."""
    import numpy as np
    d = E.Data(case, args.seed)
    folder = workdir / f"cpp_{case['id']}"
    folder.mkdir(exist_ok=True)
    for name in ("x", "w_x", "w_h", "b", "b_h"):
        getattr(d, name).tofile(folder / f"{name}.f32")
    kv = machine.run_key_value([str(exe), case["cell"], str(d.T), str(d.B), str(d.I), str(d.H), str(folder),
                                str(args.threads)], env=thread_env(args.threads), timeout=args.child_timeout)
    if "error" in kv or "us_per_step" not in kv:
        return {"note": f"failed: {kv.get('error', 'no us_per_step line')}"}
    outs = {"h_n": np.fromfile(folder / "h_n.f32", dtype=np.float32).reshape(d.B, d.H)}
    if case["cell"] == "lstm":
        outs["c_n"] = np.fromfile(folder / "c_n.f32", dtype=np.float32).reshape(d.B, d.H)
    save_outputs(workdir / f"cpp-step__{case['id']}.npz", outs)
    us = float(kv["us_per_step"])
    log(f"  {'C++ Stepper':>22s}  {case['cell']} step B{d.B} H{d.H}: {us / 1e3:10.4f} ms")
    return {"median_ms": us / 1e3, "min_ms": float(kv["min_us_per_step"]) / 1e3, "samples": int(kv["samples"]),
            "inner_loops": int(kv["steps_per_sample"]), "isa": kv.get("isa"),
            "gflops": case["flops"] / (us * 1e-6) * 1e-9}


# --------------------------------------------------------------------------------------------
# lstmcore in the same process right after a peer
# --------------------------------------------------------------------------------------------

def run_after_peer(args) -> dict:
    t0 = _start(args, "same process after a peer")
    peaks = {}
    preds = [p for p in ("lstmcore", "torch", "onnxruntime") if p == "lstmcore" or p in args.impls]
    if "onnxruntime" in preds:  # the control: ORT with its workers' spinning turned off
        preds.append("onnxruntime-nospin")
    out = []
    with _runner(args) as runner:
        for k, (label, (T, B, H)) in enumerate(args.configs):
            batch = _plain_cases(args, label, T, B, H)
            log(f"{label} (T={T}, B={B}, I=H={H})")
            # lstmcore alone in its own process, and after each peer in a process of that peer's
            # own (lstmcore and the peer taking turns as the predecessor), so that one peer's
            # workers, still spinning after its call, never reach another peer's samples; the
            # order alternates from config to config
            jobs = [("alone", ["lstmcore"])] + [("shared", ["lstmcore", p]) for p in preds if p != "lstmcore"]
            got = {}
            for r in range(args.rounds):
                for kind, pr in (jobs if (k + r) % 2 == 0 else jobs[::-1]):
                    recs = runner.run_after_peer(pr, batch, label="lstmcore alone" if kind == "alone" else "shared")
                    for cid, rec in recs.items():
                        got.setdefault((kind, cid), []).append(rec)
            for case in batch:
                out.append(_after_peer_result(case, got.get(("alone", case["id"]), []),
                                              got.get(("shared", case["id"]), [])))
        meta = _meta(args, "after_peer", runner, peaks, t0)
    meta.update(goal_slowdown=AFTER_PEER_GOAL, predecessors=preds, after_peer_rounds=args.after_peer_rounds)
    return {"mode": "after_peer", "meta": meta, "cases": out}


def _pooled_median(recs: list[dict], pred: str):
    import statistics
    times = [t for r in recs for t in r.get("after", {}).get(pred, {}).get("times_ms", [])]
    return (statistics.median(times), len(times)) if times else (None, 0)


def _after_peer_result(case, alone_recs, shared_recs) -> dict:
    res = {"case": case, "times_ms": {}, "samples": {}, "slowdown": {}, "notes": []}
    alone, n = _pooled_median(alone_recs, "lstmcore")
    res["times_ms"]["alone"], res["samples"]["alone"] = alone, n
    for r in alone_recs + shared_recs:
        if r.get("note"):
            res["notes"].append(r["note"])
    for pred in ("lstmcore", "torch", "onnxruntime", "onnxruntime-nospin"):
        t, n = _pooled_median(shared_recs, pred)
        if t is None:
            continue
        key = f"after_{pred}"
        res["times_ms"][key], res["samples"][key] = t, n
        if alone:
            res["slowdown"][key] = t / alone - 1.0
    base = res["times_ms"].get("after_lstmcore")
    res["slowdown_in_process"] = {k: v / base - 1.0 for k, v in res["times_ms"].items()
                                  if base and k in ("after_torch", "after_onnxruntime")}
    return res


# --------------------------------------------------------------------------------------------
# bfloat16 against torch's autocast
# --------------------------------------------------------------------------------------------

BF16_ENGINES = ["torch", "torch-autocast", "lstmcore", "lstmcore-bf16"]


def run_bf16(args) -> dict:
    t0 = _start(args, "bfloat16 vs torch autocast")
    peaks = _peaks(args)
    engines = _wanted(args, BF16_ENGINES)

    def pairs(case):
        p = []
        if "torch" in engines:
            p += [(e, "torch", TOL_BF16 if "bf16" in e or "autocast" in e else TOL_F32)
                  for e in ("torch-autocast", "lstmcore", "lstmcore-bf16") if e in engines]
        if "lstmcore" in engines and "lstmcore-bf16" in engines:
            p.append(("lstmcore-bf16", "lstmcore", TOL_BF16))
        return p

    with _runner(args) as runner:
        out = _per_config(args, runner, engines, pairs, lambda label, T, B, H: _plain_cases(args, label, T, B, H))
        peaks = _finish_peaks(args, peaks)
        meta = _meta(args, "bf16", runner, peaks, t0)
    for res in out:
        e = {n: r.get("median_ms") for n, r in res["engines"].items()}

        def div(a, b):
            return e[a] / e[b] if e.get(a) and e.get(b) else None
        res["ratios"] = {"autocast_vs_lstmcore_bf16": div("torch-autocast", "lstmcore-bf16"),
                         "autocast_vs_lstmcore_f32": div("torch-autocast", "lstmcore"),
                         "torch_f32_vs_autocast": div("torch", "torch-autocast"),
                         "lstmcore_f32_vs_bf16": div("lstmcore", "lstmcore-bf16")}
        res["errors"] = {}
        for name in ("torch-autocast", "lstmcore-bf16"):
            chk = res["checks"].get(check_key(name, "torch"))
            if chk:
                res["errors"][name] = {"y": chk["rel_err"].get("y"), "max": chk["max_rel_err"]}
        res["mismatch"] = _mismatches(res)
    meta.update(goal_ratio=BF16_GOAL, bf16_peak_note="fma_peak's bf16_gflops: vdpbf16ps, 4 FLOPs per lane")
    return {"mode": "bf16", "meta": meta, "cases": out}


MODES = {"compass": run_compass, "grid": run_grid, "varlen": run_varlen, "step": run_step,
         "after_peer": run_after_peer, "bf16": run_bf16}
