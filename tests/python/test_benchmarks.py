"""Smoke runs of benchmarks/bench.py at tiny sizes: every mode starts its engines' processes,
compares their outputs and writes its JSON and report. No timing is asserted (the numbers of a
test run mean nothing); what is asserted is that the run completes, every engine that is
installed produced a time, and the engines agree on the outputs."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import lstmcore
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "benchmarks", "bench.py")
HAVE_TORCH = importlib.util.find_spec("torch") is not None
HAVE_ORT = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None
# A sample of a few calls, one sample per case, no FMA peak: the runs stay short.
FAST = ["--repeats", "1", "--min-repeats", "1", "--min-sample-ms", "1", "--max-case-s", "0.05", "--no-fma-peak",
        "--threads", "1"]


def run_bench(tmp_path, *args) -> dict:
    out = tmp_path / "out.json"
    env = dict(os.environ)
    # the children import the lstmcore this test imported
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(lstmcore.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([pkg_parent, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    p = subprocess.run([sys.executable, BENCH, *FAST, *args, "--json", str(out)], capture_output=True, text=True,
                       env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert out.with_suffix(".md").read_text().startswith("## ")
    return json.loads(out.read_text())


def peers_for(mode: str) -> list[str]:
    return (["torch"] if HAVE_TORCH else []) + (["onnxruntime"] if HAVE_ORT and mode == "infer" else [])


def assert_agree(res: dict, expected: int) -> None:
    assert len(res["checks"]) == expected, res["checks"]
    for name, chk in res["checks"].items():
        assert chk["ok"], (res["case"]["id"], name, chk)


def test_grid(tmp_path):
    r = run_bench(tmp_path, "--grid", "--cells", "lstm", "--grid-h", "8", "--grid-b", "1,3", "--grid-t", "3")
    assert r["mode"] == "grid" and len(r["cases"]) == 2 * 2
    for res in r["cases"]:
        peers = peers_for(res["case"]["mode"])
        assert res["engines"]["lstmcore"]["median_ms"] > 0
        for p in peers:
            assert res["engines"][p]["median_ms"] > 0
            assert res["ratios"][p] > 0
        assert_agree(res, len(peers))
    s = r["summary"]["per_cell_mode"]
    assert set(s) == {"lstm/infer", "lstm/train"}
    if HAVE_TORCH:
        assert all(v["n_measured"] == 2 and v["geomean_best"] > 0 for v in s.values())
    if importlib.util.find_spec("matplotlib") is not None and HAVE_TORCH:
        assert (tmp_path / "out.png").stat().st_size > 0


def test_compass_with_variants(tmp_path):
    r = run_bench(tmp_path, "--configs", "4x2x8", "--variant-configs", "4x2x8", "--variants", "peepholes,proj",
                  "--cells", "lstm", "--modes", "infer", "--no-memory")
    by = {res["case"]["variant"]: res for res in r["cases"]}
    assert set(by) == {"plain", "peepholes", "proj"}
    assert_agree(by["plain"], len(peers_for("infer")))
    assert_agree(by["peepholes"], 1 if HAVE_ORT else 0)  # torch has no peepholes
    assert_agree(by["proj"], 1 if HAVE_TORCH else 0)     # ONNX has no projection
    if HAVE_TORCH:
        assert "n/a" in by["peepholes"]["engines"]["torch"]["note"]


@pytest.mark.skipif(not HAVE_TORCH, reason="the variable-length comparison needs torch")
def test_varlen(tmp_path):
    r = run_bench(tmp_path, "--varlen", "--configs", "8x5x8", "--cells", "gru")
    assert len(r["cases"]) == 2
    for res in r["cases"]:
        assert res["case"]["lengths"] is not None and max(res["case"]["lengths"]) == 8
        assert 0.5 < res["useful_fraction"] < 0.75
        for e in ("lstmcore", "lstmcore-padded", "torch", "torch-padded"):
            assert res["engines"][e]["median_ms"] > 0
        # torch packed vs lstmcore with lengths, torch padded vs lstmcore padded (+ ORT forward)
        assert_agree(res, 2 + (1 if HAVE_ORT and res["case"]["mode"] == "infer" else 0))


@pytest.mark.skipif(not HAVE_TORCH, reason="the step comparison needs torch")
def test_step(tmp_path):
    r = run_bench(tmp_path, "--step", "--configs", "6x1x8", "--cells", "lstm,gru")
    for res in r["cases"]:
        for e in ("lstmcore-step", "lstmcore-fwd1", "torch-cell"):
            assert res["engines"][e]["median_ms"] > 0
        cpp = res["engines"]["cpp-step"]
        # the C++ program runs where a build folder with liblstmcore.a exists
        assert_agree(res, 2 + (1 if "median_ms" in cpp else 0))
        assert "median_ms" in cpp or "n/a" in cpp["note"]


@pytest.mark.skipif(not (HAVE_TORCH and HAVE_ORT), reason="needs torch and ONNX Runtime")
def test_after_peer(tmp_path):
    r = run_bench(tmp_path, "--after-peer", "--configs", "3x2x8", "--cells", "lstm", "--after-peer-rounds", "3")
    assert len(r["cases"]) == 2
    for res in r["cases"]:
        t = res["times_ms"]
        preds = ("after_lstmcore", "after_torch", "after_onnxruntime", "after_onnxruntime-nospin")
        assert all(t[k] > 0 for k in ("alone",) + preds), res
        assert set(res["slowdown"]) == set(preds)


@pytest.mark.skipif(not HAVE_TORCH, reason="the bf16 comparison needs torch")
def test_bf16(tmp_path):
    r = run_bench(tmp_path, "--bf16", "--configs", "5x2x8", "--cells", "lstm")
    native_bf16 = "avx512_bf16" in lstmcore.available_isas()
    for res in r["cases"]:
        auto = res["engines"]["torch-autocast"]
        if "median_ms" in auto:
            assert auto["median_ms"] > 0
            assert 0 < res["errors"]["torch-autocast"]["max"] < 5e-2
        else:
            # torch 2.13's LSTM under CPU autocast goes to oneDNN, which has no bfloat16 LSTM
            # primitive on a CPU without AVX512-BF16: the benchmark records the failure
            assert not native_bf16 and "primitive descriptor" in auto["note"], auto
        bf16 = res["engines"]["lstmcore-bf16"]
        assert "median_ms" in bf16 or "compute_dtype" in bf16["note"]
        for name, chk in res["checks"].items():
            assert chk["ok"], (name, chk)


def test_saved_outputs_compare(tmp_path):
    """The agreement check: a large output is compared on a strided subsample whose relative norm
    matches the whole array's; a shape that differs is an infinite error, not a silent pass."""
    import numpy as np
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        from benchkit.outputs import MAX_SAVED, compare_files, save_outputs
    finally:
        sys.path.pop(0)
    rng = np.random.default_rng(3)
    ref = rng.standard_normal((3, MAX_SAVED // 2 + 7), dtype=np.float32)   # 1.5·MAX_SAVED elements
    a = ref + np.float32(1e-3) * rng.standard_normal(ref.shape, dtype=np.float32)
    save_outputs(tmp_path / "ref.npz", {"y": ref, "h_n": ref[0, :5], "c_n": None})
    save_outputs(tmp_path / "a.npz", {"y": a, "h_n": a[0, :5].reshape(5, 1)})
    c = compare_files(tmp_path / "a.npz", tmp_path / "ref.npz", 1e-2, "ref")
    full = float(np.linalg.norm((a - ref).astype(np.float64)) / np.linalg.norm(ref.astype(np.float64)))
    assert abs(c["rel_err"]["y"] - full) < 0.02 * full
    assert c["rel_err"]["h_n"] == float("inf") and not c["ok"]
    assert set(c["rel_err"]) == {"y", "h_n"}
