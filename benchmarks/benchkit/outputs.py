"""Engines' outputs on disk, and their agreement: the relative norm ‖a − ref‖ / ‖ref‖ per output.

Each engine's process saves its outputs of a case as an .npz; the parent compares them once
every engine of the batch has run.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

# float32 engines against each other: summation orders differ, ~1e-6 .. 1e-5 over <= 100 steps.
TOL_F32 = 1e-3
# bfloat16 against float32: operands rounded to 8 significant bits, ~3e-3 observed for torch.
TOL_BF16 = 5e-2
# Outputs above this many elements are saved as an evenly strided subsample (the same elements in
# every engine, whose outputs have the same shapes): the relative norm over 4M elements spread over
# the whole array is the whole array's to a few digits, and the grid's largest cases would
# otherwise write hundreds of MB between timed runs. The full shape is saved beside it.
MAX_SAVED = 1 << 22
_SHAPE = "__shape__"


def save_outputs(path: Path, outs: dict) -> None:
    arrays = {}
    for k, v in outs.items():
        if v is None:
            continue
        a = np.asarray(v, dtype=np.float32)
        arrays[_SHAPE + k] = np.asarray(a.shape, dtype=np.int64)
        a = a.ravel()
        if a.size > MAX_SAVED:
            a = a[::-(-a.size // MAX_SAVED)]
        arrays[k] = np.ascontiguousarray(a)
    np.savez(path, **arrays)


def rel_err(a, ref) -> float:
    a = np.asarray(a, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if a.shape != ref.shape:
        return float("inf")
    den = float(np.linalg.norm(ref))
    num = float(np.linalg.norm(a - ref))
    if not np.isfinite(num):
        return float("inf")
    return num / den if den > 0 else num


def compare_files(a_path: Path, ref_path: Path, tol: float, against: str) -> dict:
    """Every output both files hold; a different shape counts as an infinite error."""
    with np.load(a_path) as a, np.load(ref_path) as r:
        per = {}
        for k in r.files:
            if k.startswith(_SHAPE) or k not in a.files:
                continue
            same_shape = np.array_equal(a[_SHAPE + k], r[_SHAPE + k])
            per[k] = rel_err(a[k], r[k]) if same_shape else float("inf")
    worst = max(per.values()) if per else None
    return {"against": against, "rel_err": per, "max_rel_err": worst, "tol": tol,
            "ok": worst is not None and worst <= tol}
