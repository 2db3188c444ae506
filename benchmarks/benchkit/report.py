"""Markdown reports and plots of the results each mode returns."""
from __future__ import annotations

from pathlib import Path

from . import engines as E
from .machine import cpu_summary
from .util import fmt, markdown_table

SHORT = E.SHORT
# A timing whose interquartile range exceeds this fraction of its median is listed in the notes.
NOISY_IQR = 0.2


def _x(v, spec=".2f"):
    return fmt(v, spec) + ("×" if v is not None else "")


def _pct(v):
    return "n/a" if v is None else f"{100 * v:+.0f}%"


def _where(case: dict) -> str:
    return f"{case['config']} ({case['T']},{case['B']},{case['H']})"


def _ms(engines: dict, name: str) -> str:
    return fmt(engines.get(name, {}).get("median_ms"), ".3f")


def _table_and_notes(out: list[str], results: dict, head: list[str], rows: list[list[str]]) -> str:
    """The mode's table (three left-aligned columns), the agreement lines and the notes."""
    out.append(markdown_table(head, rows, left=3))
    out += _checks_lines(results)
    out += footer(results)
    return "\n".join(out)


def header(results: dict, title: str) -> list[str]:
    meta = results["meta"]
    lines = [f"## {title}", "",
             f"{cpu_summary(meta['cpu'])}; {meta['threads']} thread(s); lstmcore "
             f"{_version(meta, 'lstmcore')}, torch {_version(meta, 'torch')}, "
             f"ONNX Runtime {_version(meta, 'onnxruntime')}; {meta['date']}"
             + (f"; commit {meta['git']['commit'][:10]}{' (dirty)' if meta['git'].get('dirty') else ''}"
                if meta.get("git", {}).get("commit") else ""),
             ""]
    t = meta.get("timing", {})
    if results["mode"] != "after_peer":
        lines.append(f"Each engine in its own process; median of {t.get('repeats')} samples (at least "
                     f"{t.get('min_repeats')} for long cases), each sample ≥ {1e3 * t.get('min_sample_s', 0):g} ms, "
                     f"after warm-up" + (f"; {meta['rounds']} rounds pooled" if meta.get("rounds", 1) > 1 else "")
                     + f". Whole run: {meta.get('wall_s', 0) / 60:.1f} min.")
        lines.append("")
    return lines


def _version(meta, key):
    for v in meta.get("engines_versions", {}).values():
        if v and key in v:
            return v[key]
    return "n/a"


def footer(results: dict) -> list[str]:
    """The run's notes, then each engine's notes with the cases they concern (grouped)."""
    notes = list(dict.fromkeys(results["meta"]["notes"]))
    grouped: dict[tuple, list[str]] = {}
    for res in results["cases"]:
        for name, rec in res.get("engines", {}).items():
            if rec.get("note"):
                grouped.setdefault((SHORT.get(name, name), rec["note"]), []).append(res["case"]["id"])
        for n in res.get("notes", []):
            grouped.setdefault(("", n), []).append(res["case"]["id"])
    noisy = [(res["case"]["id"], SHORT.get(name, name), rec["iqr_rel"]) for res in results["cases"]
             for name, rec in res.get("engines", {}).items() if (rec.get("iqr_rel") or 0) > NOISY_IQR]
    if noisy:
        worst = sorted(noisy, key=lambda t: -t[2])[:3]
        notes.append(f"{len(noisy)} timing(s) spread by more than {100 * NOISY_IQR:.0f}% of their median (interquartile "
                     "range), e.g. " + "; ".join(f"{who} {cid} {100 * q:.0f}%" for cid, who, q in worst)
                     + ": rerun those (--rounds 3 pools three processes' samples)")
    for (who, n), ids in grouped.items():
        where = ids[0] if len(ids) == 1 else f"{len(ids)} cases: {', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''}"
        notes.append(f"{who + ': ' if who else ''}{n} ({where})")
    return ["", "Notes:", ""] + [f"- {n}" for n in notes] if notes else []


def _checks_lines(results: dict) -> list[str]:
    checks = [(res["case"]["id"], k, c) for res in results["cases"] for k, c in res.get("checks", {}).items()]
    if not checks:
        return []
    bad = [(cid, k, c) for cid, k, c in checks if not c["ok"]]
    worst = {}
    for _, k, c in checks:
        tol = c["tol"]
        if c["max_rel_err"] is not None:
            worst[tol] = max(worst.get(tol, 0.0), c["max_rel_err"])
    lines = ["", f"Agreement (relative norm ‖a − ref‖/‖ref‖ of every output, {len(checks)} comparisons): "
             + "; ".join(f"largest {v:.1e} where the tolerance is {t:g}" for t, v in sorted(worst.items()))
             + ("." if not bad else f"; {len(bad)} MISMATCH(ES):")]
    for cid, k, c in bad:
        lines.append(f"- {cid} {k}: " + ", ".join(f"{n} {v:.1e}" for n, v in c["rel_err"].items()))
    return lines


def _warn(res, engine):
    return " ⚠" if any(k.startswith(engine + " vs ") for k in res.get("mismatch", [])) else ""


# --------------------------------------------------------------------------------------------

def render_compass(results: dict) -> str:
    meta = results["meta"]
    peak = meta["fma_peak"].get(meta["threads"]) or meta["fma_peak"].get(str(meta["threads"])) or {}
    impls = [i for i in ("lstmcore", "torch", "onnxruntime") if any(i in r["engines"] for r in results["cases"])]
    peers = [p for p in ("torch", "onnxruntime") if p in impls]
    out = header(results, "lstmcore vs PyTorch and ONNX Runtime: compass configs (float32)")
    out.append(f"FMA peak ({peak.get('isa') or 'n/a'}, {meta['threads']} thread(s)): {fmt(peak.get('gflops'), '.1f')} "
               "GFLOP/s. ratio = peer time / lstmcore time (> 1: lstmcore faster). "
               "FLOPs: forward 2·T·B·(I+H)·G·H, training 3× that.")
    out.append("")
    head = ["config (T,B,I=H)", "cell", "mode"] + [f"{SHORT[i]} ms" for i in impls] \
        + [f"{SHORT[i]} GFLOP/s" for i in impls] \
        + ([f"{SHORT[p]}/lstmcore" for p in peers] if "lstmcore" in impls else []) \
        + ["% FMA peak (" + " / ".join(SHORT[i] for i in impls) + ")"]
    rows = []
    for res in results["cases"]:
        c, eng = res["case"], res["engines"]
        cell = c["cell"].upper() + ("" if c["variant"] == "plain" else f" {c['variant']}")
        r = [_where(c), cell, c["mode"]]
        r += [_ms(eng, i) for i in impls]
        r += [fmt(eng.get(i, {}).get("gflops"), ".1f") for i in impls]
        if "lstmcore" in impls:
            r += [_x(res["ratios"].get(p)) + _warn(res, p) for p in peers]
        r.append(" / ".join(fmt(None if eng.get(i, {}).get("frac_peak") is None else 100 * eng[i]["frac_peak"], ".1f")
                            for i in impls))
        rows.append(r)
    out.append(markdown_table(head, rows, left=3))
    out += _checks_lines(results)
    if results.get("memory"):
        out += ["", "Peak memory of one training step (increase of peak RSS over the baseline after imports and "
                "data creation, fresh process each):", ""]
        mrows = []
        for m in results["memory"]:
            lc, th = m.get("lstmcore"), m.get("torch")
            ratio = (th / lc) if (lc is not None and th is not None and lc >= 1.0 and th >= 1.0) else None
            mrows.append([m["config"], m["cell"].upper(), "train", fmt(lc, ".1f"), fmt(th, ".1f"), fmt(ratio, ".2f")])
        out.append(markdown_table(["config", "cell", "mode", "lstmcore MiB", "torch MiB", "torch/lstmcore"], mrows, 3))
    out += footer(results)
    return "\n".join(out)


def render_grid(results: dict) -> str:
    meta = results["meta"]
    g = meta["grid"]
    s = results["summary"]
    out = header(results, f"lstmcore across shapes: T = {g['T']}, I = H, float32")
    out.append("ratio = peer time / lstmcore time (> 1: lstmcore faster); best peer = the faster of torch and "
               "ONNX Runtime (forward), torch (training). Geometric means over the shapes.")
    out.append("")
    head = ["cell", "mode", "shapes", "geomean vs best peer", "vs torch", "vs ORT", "worst shapes",
            f"below the goal's minimum", "goal (geomean, min)"]
    rows = []
    for key, v in list(s["per_cell_mode"].items()) + [(f"both/{m}", v) for m, v in s["per_mode"].items()]:
        cell, mode = key.split("/")
        worst = "; ".join(f"{w['cell'].upper() + ' ' if cell == 'both' else ''}H{w['H']} B{w['B']}: {w['ratio']:.2f}"
                          for w in v["worst"])
        rows.append([cell.upper() if cell != "both" else "**both**", mode, f"{v['n_measured']}/{v['n']}",
                     _x(v["geomean_best"]), _x(v["geomean_torch"]), _x(v["geomean_onnxruntime"]), worst or "n/a",
                     str(v["below_goal_min"]), f"≥ {v['goal']['geomean']}, ≥ {v['goal']['min']}"])
    out.append(markdown_table(head, rows, left=2))
    out += ["", "Ratio against the best peer per shape (ᵒ: ONNX Runtime was the faster peer; ⚠: outputs "
            "disagree):", ""]
    out.append(grid_tables(results))
    out += ["", "<details><summary>every case: times (ms), GFLOP/s, % of the FMA peak</summary>", ""]
    head = ["cell", "mode", "H", "B", "lstmcore ms", "torch ms", "ORT ms", "torch/lstmcore", "ORT/lstmcore",
            "lstmcore GFLOP/s", "lstmcore % peak"]
    rows = []
    for res in results["cases"]:
        c, e = res["case"], res["engines"]
        lc = e.get("lstmcore", {})
        rows.append([c["cell"].upper(), c["mode"], str(c["H"]), str(c["B"]),
                     fmt(lc.get("median_ms"), ".3f"), _ms(e, "torch"),
                     _ms(e, "onnxruntime"),
                     _x(res["ratios"].get("torch")), _x(res["ratios"].get("onnxruntime")),
                     fmt(lc.get("gflops"), ".1f"), fmt(None if lc.get("frac_peak") is None else 100 * lc["frac_peak"], ".0f")])
    out.append(markdown_table(head, rows, left=2))
    out += ["", "</details>"]
    out += _checks_lines(results)
    out += footer(results)
    return "\n".join(out)


def grid_tables(results: dict) -> str:
    """Per (cell, mode): H down, B across, the best-peer ratio in each cell (the README's table)."""
    g = results["meta"]["grid"]
    by = {(r["case"]["cell"], r["case"]["mode"], r["case"]["H"], r["case"]["B"]): r for r in results["cases"]}
    cells = list(dict.fromkeys(r["case"]["cell"] for r in results["cases"]))
    modes = list(dict.fromkeys(r["case"]["mode"] for r in results["cases"]))
    rows = []
    for cell in cells:
        for mode in modes:
            for H in g["H"]:
                row = [f"{cell.upper()} {'forward' if mode == 'infer' else 'training'}", str(H)]
                for B in g["B"]:
                    r = by.get((cell, mode, H, B))
                    v = r["ratios"].get("best") if r else None
                    mark = "ᵒ" if r and r.get("best_peer") == "onnxruntime" else ""
                    bad = " ⚠" if r and r.get("mismatch") else ""
                    row.append(fmt(v, ".2f") + mark + bad)
                rows.append(row)
    return markdown_table(["", "H", *[f"B={B}" for B in g["B"]]], rows)


def render_varlen(results: dict) -> str:
    meta = results["meta"]
    out = header(results, "Variable lengths: seq_lengths against the padded call (float32)")
    out.append(f"Lengths evenly spread over [{meta['lengths_from']:g}·T, T], shuffled (unsorted). speedup = padded "
               f"time / time with lengths (the goal: lstmcore ≥ {meta['goal_speedup']}×; the limit is 1 / useful "
               "fraction). torch runs a PackedSequence (pack_padded_sequence, enforce_sorted=False, packing "
               "included), ONNX Runtime its sequence_lens input.")
    out.append("")
    head = ["config (T,B,I=H)", "cell", "mode", "useful", "lstmcore lengths ms", "lstmcore padded ms",
            "lstmcore speedup (limit)", "torch packed ms", "torch padded ms", "torch speedup",
            "torch packed/lstmcore", "ORT ms", "ORT/lstmcore"]
    rows = []
    for res in results["cases"]:
        c, e = res["case"], res["engines"]
        rows.append([_where(c), c["cell"].upper(), c["mode"],
                     f"{100 * res['useful_fraction']:.1f}%",
                     _ms(e, "lstmcore"),
                     _ms(e, "lstmcore-padded"),
                     f"{_x(res['speedups']['lstmcore'])} ({res['limit']:.2f}×)",
                     _ms(e, "torch"), _ms(e, "torch-padded"),
                     _x(res["speedups"]["torch"]), _x(res["ratios"]["torch"]) + _warn(res, "torch"),
                     _ms(e, "onnxruntime"),
                     _x(res["ratios"]["onnxruntime"]) + _warn(res, "onnxruntime")])
    return _table_and_notes(out, results, head, rows)


def render_step(results: dict) -> str:
    meta = results["meta"]
    n = meta["threads"]
    out = header(results, "Streaming: one time step at a time (float32)")
    peaks = meta["fma_peak"]
    pk = {str(k): v for k, v in peaks.items()}
    out.append("µs per step, the state carried from step to step. The arithmetic bound is 2·B·(I+H)·G·H FLOPs "
               "at the measured FMA peak (" + ", ".join(f"{fmt(v.get('gflops'), '.1f')} GFLOP/s on {k} thread(s)"
                                                        for k, v in pk.items()) + f"). Goal: ≤ {meta['goal_us']:g} µs "
               "for layer.step and the C++ stepper at B = 1, H = 256.")
    out.append("")
    head = ["config (steps,B,I=H)", "cell", "engine", "µs/step", "torch cell / engine", f"× bound ({n} thr)",
            "× bound (1 thr)"]
    rows = []
    for res in results["cases"]:
        c, e = res["case"], res["engines"]
        ref = e.get("torch-cell", {}).get("median_ms")
        for name in ("lstmcore-step", "lstmcore-fwd1", "cpp-step", "torch-cell"):
            rec = e.get(name)
            if rec is None:
                continue
            t = rec.get("median_ms")
            bn, b1 = res["bound_us"].get(str(n)), res["bound_us"].get("1")
            rows.append([_where(c), c["cell"].upper(), SHORT[name],
                         fmt(None if t is None else t * 1e3, ".2f"),
                         _x(ref / t if (ref and t) else None) + _warn(res, name),
                         fmt(None if not (t and bn) else t * 1e3 / bn, ".1f"),
                         fmt(None if not (t and b1) else t * 1e3 / b1, ".1f")])
        rows.append([_where(c), c["cell"].upper(), "arithmetic bound",
                     f"{fmt(res['bound_us'].get(str(n)), '.2f')} ({n} thr) / {fmt(res['bound_us'].get('1'), '.2f')} (1 thr)",
                     "", "1.0", "1.0"])
    return _table_and_notes(out, results, head, rows)


def render_after_peer(results: dict) -> str:
    meta = results["meta"]
    out = header(results, "lstmcore right after a peer in the same process (float32)")
    ap = meta["timing"]
    out.append("Each sample: one call of the predecessor (untimed), then one lstmcore call (timed). 'alone': "
               "lstmcore in a process of its own (predecessor: lstmcore). 'after X': a process of peer X's own, "
               "lstmcore and X taking turns as the predecessor (one process per peer, so that one peer's "
               "lingering workers never reach another's samples); 'after lstmcore': those processes when "
               f"lstmcore ran last. slowdown = time / alone − 1 (goal ≤ {100 * meta['goal_slowdown']:.0f}%). "
               "Peers with their default thread-pool settings, and as a control ONNX Runtime with "
               f"session.intra_op.allow_spinning=0 ('ORT no spin'); at least {meta['after_peer_rounds']} rounds "
               f"and {ap.get('max_case_s')} s per case. Whole run: {meta.get('wall_s', 0) / 60:.1f} min.")
    out.append("")
    head = ["config (T,B,I=H)", "cell", "mode", "alone ms", "after lstmcore ms", "after torch ms", "after ORT ms",
            "after ORT no spin ms", "slowdown after torch", "after ORT", "after ORT no spin",
            "after lstmcore (peer processes)"]
    rows = []
    for res in results["cases"]:
        c, t, s = res["case"], res["times_ms"], res["slowdown"]
        rows.append([_where(c), c["cell"].upper(), c["mode"],
                     fmt(t.get("alone"), ".3f"), fmt(t.get("after_lstmcore"), ".3f"), fmt(t.get("after_torch"), ".3f"),
                     fmt(t.get("after_onnxruntime"), ".3f"), fmt(t.get("after_onnxruntime-nospin"), ".3f"),
                     _pct(s.get("after_torch")), _pct(s.get("after_onnxruntime")),
                     _pct(s.get("after_onnxruntime-nospin")), _pct(s.get("after_lstmcore"))])
    out.append(markdown_table(head, rows, left=3))
    out += footer(results)
    return "\n".join(out)


def render_bf16(results: dict) -> str:
    meta = results["meta"]
    pk = meta["fma_peak"].get(meta["threads"]) or meta["fma_peak"].get(str(meta["threads"])) or {}
    out = header(results, "bfloat16: lstmcore compute_dtype='bfloat16' against torch.autocast('cpu', bfloat16)")
    out.append(f"Peaks on {meta['threads']} thread(s): float32 FMA {fmt(pk.get('gflops'), '.1f')} GFLOP/s, bf16 dot "
               f"product {fmt(pk.get('bf16_gflops'), '.1f')} GFLOP/s ({pk.get('bf16_isa') or 'no AVX512_BF16'}). "
               "Errors: relative norm against torch float32 (y, and the largest over all outputs, gradients "
               f"included). Goal: torch autocast / lstmcore bf16 ≥ {meta['goal_ratio']}.")
    out.append("")
    head = ["config (T,B,I=H)", "cell", "mode", "torch f32 ms", "torch autocast ms", "autocast speedup",
            "lstmcore f32 ms", "lstmcore bf16 ms", "autocast / lstmcore bf16", "autocast / lstmcore f32",
            "autocast error y (max)", "lstmcore bf16 error y (max)"]
    rows = []
    for res in results["cases"]:
        c, e, r, err = res["case"], res["engines"], res["ratios"], res["errors"]

        def er(name):
            v = err.get(name)
            return "n/a" if not v else f"{fmt(v['y'], '.1e')} ({fmt(v['max'], '.1e')})"
        rows.append([_where(c), c["cell"].upper(), c["mode"],
                     _ms(e, "torch"), _ms(e, "torch-autocast"),
                     _x(r["torch_f32_vs_autocast"]), _ms(e, "lstmcore"),
                     fmt(e.get("lstmcore-bf16", {}).get("median_ms"), ".3f"), _x(r["autocast_vs_lstmcore_bf16"]),
                     _x(r["autocast_vs_lstmcore_f32"]), er("torch-autocast"), er("lstmcore-bf16")])
    return _table_and_notes(out, results, head, rows)


RENDER = {"compass": render_compass, "grid": render_grid, "varlen": render_varlen, "step": render_step,
          "after_peer": render_after_peer, "bf16": render_bf16}


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------

def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot(results: dict, path: Path) -> str | None:
    """Writes the mode's figure; returns a note when there is none (or it failed)."""
    fn = {"compass": plot_compass, "grid": plot_grid}.get(results["mode"])
    if fn is None:
        return None
    try:
        _pyplot()
    except Exception as e:  # noqa: BLE001
        return f"plot skipped: matplotlib not importable ({type(e).__name__}: {e})"
    return fn(results, path)


def plot_grid(results: dict, path: Path) -> str | None:
    """Heat maps of the best-peer ratio: one panel per (cell, mode), B across, H up; a diverging
    colour map centred at 1 on a log scale (2× faster and 2× slower equally strong)."""
    import math
    import numpy as np
    plt = _pyplot()
    from matplotlib.colors import TwoSlopeNorm
    g = results["meta"]["grid"]
    cells = list(dict.fromkeys(r["case"]["cell"] for r in results["cases"]))
    modes = list(dict.fromkeys(r["case"]["mode"] for r in results["cases"]))
    by = {(r["case"]["cell"], r["case"]["mode"], r["case"]["H"], r["case"]["B"]): r for r in results["cases"]}
    vals = [r["ratios"].get("best") for r in results["cases"] if r["ratios"].get("best")]
    if not vals:
        return "plot skipped: no ratios (lstmcore or every peer missing)"
    # colours saturate beyond 4x either way, so one outlier does not wash out the rest
    span = min(2.0, max(math.log2(1.5), max(abs(math.log2(v)) for v in vals)))
    fig, axes = plt.subplots(len(cells), len(modes), figsize=(max(9.0, 1.5 + 0.75 * len(g["B"]) * len(modes)),
                                                              max(5.0, 1.2 + 0.65 * len(g["H"]) * len(cells))),
                             squeeze=False, constrained_layout=True)
    cmap = plt.get_cmap("RdBu")
    norm = TwoSlopeNorm(vmin=-span, vcenter=0.0, vmax=span)
    im = None
    for i, cell in enumerate(cells):
        for j, mode in enumerate(modes):
            ax = axes[i][j]
            z = np.full((len(g["H"]), len(g["B"])), np.nan)
            for a, H in enumerate(g["H"]):
                for b, B in enumerate(g["B"]):
                    r = by.get((cell, mode, H, B))
                    v = r["ratios"].get("best") if r else None
                    if v:
                        z[a, b] = math.log2(v)
                    txt = "n/a" if not v else f"{v:.2f}" + ("ᵒ" if r.get("best_peer") == "onnxruntime" else "") \
                        + ("!" if r.get("mismatch") else "")
                    dark = v is not None and abs(math.log2(v)) > 0.6 * span
                    ax.text(b, a, txt, ha="center", va="center", fontsize=7, color="white" if dark else "black")
            im = ax.imshow(z, cmap=cmap, norm=norm, origin="lower", aspect="auto")
            ax.set_xticks(range(len(g["B"])), [str(B) for B in g["B"]], fontsize=8)
            ax.set_yticks(range(len(g["H"])), [str(H) for H in g["H"]], fontsize=8)
            ax.set_xlabel("batch B", fontsize=8)
            ax.set_ylabel("hidden H (= I)", fontsize=8)
            gm = results["summary"]["per_cell_mode"].get(f"{cell}/{mode}", {}).get("geomean_best")
            ax.set_title(f"{cell.upper()} {'forward' if mode == 'infer' else 'training'}"
                         f" — geomean {fmt(gm, '.2f')}", fontsize=9)
    ticks = [t for t in (0.25, 0.5, 0.67, 0.8, 1.0, 1.25, 1.5, 2.0, 4.0) if abs(math.log2(t)) <= span + 1e-9]
    if span > 1.2:
        ticks = [t for t in ticks if t not in (0.8, 1.25)]
    cb = fig.colorbar(im, ax=axes, shrink=0.85, ticks=[math.log2(t) for t in ticks])
    cb.ax.set_yticklabels([f"{t:g}" for t in ticks], fontsize=8)
    cb.set_label("best peer time / lstmcore time  (> 1: lstmcore faster)", fontsize=8)
    meta = results["meta"]
    fig.suptitle(f"lstmcore vs the faster of torch / ONNX Runtime (ᵒ), each in its own process — T = {g['T']}, "
                 f"I = H, float32, {meta['threads']} thread(s)\n{cpu_summary(meta['cpu'])}", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


def plot_compass(results: dict, path: Path) -> str | None:
    """Bars of the ratios per case, growing from 1 on a log axis."""
    plt = _pyplot()
    from matplotlib.ticker import FuncFormatter, NullFormatter
    cases = results["cases"]
    modes = [m for m in ("infer", "train") if any(r["case"]["mode"] == m for r in cases)]
    if not any(v for r in cases for v in r["ratios"].values()):
        return "plot skipped: no ratios (lstmcore or every peer missing)"
    fig, axes = plt.subplots(1, len(modes), figsize=(6.5 * len(modes), 4.6), squeeze=False)
    colors = {"torch": "#d9534f", "onnxruntime": "#5b7dbf"}
    for ax, mode in zip(axes[0], modes):
        cs = [r for r in cases if r["case"]["mode"] == mode]
        labels = [f"{r['case']['config']}\n{r['case']['cell'].upper()}"
                  + ("" if r["case"]["variant"] == "plain" else f"\n{r['case']['variant']}") for r in cs]
        peers = [p for p in ("torch", "onnxruntime") if any(r["ratios"].get(p) for r in cs)]
        width = 0.8 / max(1, len(peers))
        for k, p in enumerate(peers):
            xs = [i + (k - (len(peers) - 1) / 2) * width for i in range(len(cs))]
            vals = [r["ratios"].get(p) for r in cs]
            bars = ax.bar(xs, [(v - 1.0) if v else 0.0 for v in vals], width, bottom=1.0,
                          label=f"{SHORT[p]} / lstmcore", color=colors[p])
            for bar, v in zip(bars, vals):
                if v:
                    ax.annotate(f"{v:.2f}", (bar.get_x() + bar.get_width() / 2, v), ha="center",
                                va="bottom" if v >= 1 else "top", fontsize=7)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        allv = [r["ratios"].get(p) for r in cs for p in peers if r["ratios"].get(p)]
        if allv:
            span = max(max(allv), 1 / min(allv), 1.5) * 1.6
            ax.set_ylim(1 / span, span)
        ax.set_xticks(range(len(cs)))
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_title("inference" if mode == "infer" else "training (forward+backward)")
        ax.set_ylabel("time ratio peer / lstmcore  (> 1: lstmcore faster)")
        if peers:
            ax.legend(fontsize=8)
    meta = results["meta"]
    fig.suptitle(f"lstmcore vs peers (each in its own process) — {cpu_summary(meta['cpu'])}, "
                 f"{meta['threads']} thread(s), float32", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None

