"""Argument checks and conversions shared by every entry point: the host path
(``_functional``), the device path (``_cuda``), the cell variants, the layer objects and the
training caches.

* ``as_array``: what the public calls accept as an array (NumPy arrays, CPU torch tensors,
  even those that require grad, read detached without a copy, and anything NumPy reads).
* ``prepare``: the call's dtype and the arrays the core gets (C-contiguous, aligned).
* ``prepare_lengths``: a private int64 copy of ``seq_lengths``, read exactly; bad values are
  reported as the caller wrote them.
* ``check_cell``, ``require_no_cell_state``: the cell name, and the one check that a cell
  without a cell state gets no ``c0`` / ``dc_n``.
* ``overlap`` / ``refuse_overlap``: whether two arrays share memory.
* ``expect_shape``: a shape check that names the argument.

A leaf: this module imports NumPy and ``_types`` only (not the compiled core), so the NumPy
reference can use it too.
"""
from __future__ import annotations

import sys

import numpy as np

from ._types import GATES, has_cell_state

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
CELLS = tuple(GATES)
_TOO_HARD = getattr(getattr(np, "exceptions", np), "TooHardError")
#: The bound on np.shares_memory's exact search (only reached for strided pairs of views).
_OVERLAP_WORK = 100_000


# ------------------------------------------------------------------------------------------
# cells


def check_cell(cell):
    if not isinstance(cell, str) or cell not in CELLS:
        raise ValueError(f"cell: expected one of {', '.join(map(repr, CELLS))}, got {cell!r}")


#: The weight layouts of forward's ``weight_layout`` (lstmcore::WeightLayout).
WEIGHT_LAYOUTS = ("input_major", "gate_major")


def check_weight_layout(value):
    """``value`` when it names a weight layout; TypeError / ValueError naming weight_layout otherwise."""
    if not isinstance(value, str):
        raise TypeError(f"weight_layout: expected 'input_major' or 'gate_major', got {type(value).__name__}")
    if value not in WEIGHT_LAYOUTS:
        raise ValueError(f"weight_layout: expected 'input_major' or 'gate_major', got {value!r}")
    return value


def flag(value, name):
    """True / False from a bool, a NumPy bool, 0 or 1; ValueError naming ``name`` otherwise (a
    None or a string is not read as a truth value: forget_gate=None would drop the forget gate)."""
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, (int, np.integer)) and value in (0, 1)):
        return bool(value)
    raise ValueError(f"{name}: expected True or False, got {value!r}")


def require_no_cell_state(cell, name, value):
    """ValueError when ``value`` (c0, dc_n, ...) is given for a cell without a cell state."""
    if value is not None and not has_cell_state(cell):
        raise ValueError(f"{name}: the {cell} cell has no cell state; pass None")


# ------------------------------------------------------------------------------------------
# arrays


def is_torch_tensor(obj):
    torch = sys.modules.get("torch")  # never imported here: a tensor means torch is loaded
    return torch is not None and isinstance(obj, torch.Tensor)


def _tensor_array(t, name):
    """A CPU torch tensor as a NumPy array sharing its memory (read detached: a parameter
    that requires grad is read, never differentiated through)."""
    if t.device.type != "cpu":
        raise TypeError(f"{name}: a torch tensor on {t.device}; pass CPU tensors, NumPy arrays, "
                        f"or CUDA tensors for every array of the call")
    t = t.detach()
    if t.is_conj():
        t = t.resolve_conj()
    if t.is_neg():
        t = t.resolve_neg()
    try:
        return t.numpy()
    except (TypeError, RuntimeError) as exc:  # e.g. bfloat16, which NumPy has no dtype for
        raise TypeError(f"{name}: cannot read a torch tensor of dtype {t.dtype} as a NumPy array "
                        f"(convert it, e.g. .float())") from exc


def as_array(obj, name):
    """``obj`` as a NumPy array without a copy where possible (None stays None)."""
    if obj is None or isinstance(obj, np.ndarray):
        return obj
    if is_torch_tensor(obj):
        return _tensor_array(obj, name)
    try:
        return np.asarray(obj)
    except Exception as exc:  # objects NumPy cannot read
        raise TypeError(f"{name}: expected an array, got {type(obj).__name__}") from exc


def float_dtype(dtype, name="dtype"):
    """``dtype`` as float32 or float64 (a NumPy dtype); TypeError naming ``name`` otherwise."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{name}: expected float32 or float64, got {dtype!r}") from exc
    if dt not in FLOATS:
        raise TypeError(f"{name}: expected float32 or float64, got {dt}")
    return dt


def compute_dtype(named, dtype):
    """The call's dtype and where it came from: `dtype` if given, else that of the first float
    array (x first), else float64. ``named``: (name, array, typed) with typed False for lists
    and scalars, which take the call's dtype."""
    if dtype is not None:
        return float_dtype(dtype), "dtype"
    for name, arr, typed in named:
        if typed and arr.dtype.kind == "f":
            if arr.dtype not in FLOATS:
                raise TypeError(f"{name}: dtype {arr.dtype} is not supported; expected float32 or float64 "
                                f"(or pass dtype= to convert)")
            return arr.dtype, name
    return np.dtype(np.float64), None


def core_ready(arr, dt, name):
    """``arr`` (of a real numeric dtype) as the core reads it: C-contiguous, aligned, of dtype
    ``dt``; the very same array when it already is, else one copy (a MemoryError naming ``name``
    when that copy cannot be allocated, e.g. of a huge broadcast view)."""
    if arr.dtype == dt and arr.flags.c_contiguous and arr.flags.aligned:
        return arr
    try:
        return np.require(arr, dt, ["C_CONTIGUOUS", "ALIGNED"])
    except MemoryError as exc:
        nbytes = int(np.prod(arr.shape, dtype=object)) * dt.itemsize
        raise MemoryError(f"{name}: a C-contiguous {dt} copy of this array of shape {arr.shape} takes "
                          f"{nbytes} bytes, which cannot be allocated") from exc


def prepare(named, dtype):
    """Arrays of the call's dtype, C-contiguous and aligned: matching arrays pass through.

    ``named``: (name, object) pairs, None allowed. Returns (dtype, {name: array or None},
    {name: the caller's object read as an array}). A float array of the other float dtype is a
    TypeError unless `dtype` was given explicitly (then it is converted once); integer and
    boolean arrays and lists are converted once; non-contiguous or misaligned arrays are
    copied once.
    """
    typed = [(name, as_array(obj, name), obj is not None and hasattr(obj, "dtype")) for name, obj in named]
    dt, source = compute_dtype([t for t in typed if t[1] is not None], dtype)
    result, given = {}, {}
    for name, arr, has_dtype in typed:
        given[name] = arr
        if arr is not None:
            if arr.dtype != dt:
                if arr.dtype.kind == "f" and has_dtype and dtype is None:
                    raise TypeError(f"{name}: dtype {arr.dtype} differs from the call's dtype {dt} (from "
                                    f"{source}); all float arrays of one call share the dtype "
                                    f"(convert them, or pass dtype=)")
                if arr.dtype.kind not in "biuf":
                    raise TypeError(f"{name}: expected a real numeric array, got dtype {arr.dtype}")
            arr = core_ready(arr, dt, name)
        result[name] = arr
    return dt, result, given


def expect_shape(name, shape, want, letters, note=""):
    """ValueError naming ``name`` when ``shape`` is not ``want`` (spelt ``letters``, e.g. "(B, H)";
    ``note`` follows the expected shape, e.g. " for weight_layout='gate_major'")."""
    if tuple(shape) != tuple(want):
        raise ValueError(f"{name}: expected shape {letters} = {tuple(want)}{note}, got {tuple(shape)}")


# ------------------------------------------------------------------------------------------
# sequence lengths


def _first_bad(flat, mask):
    k = int(np.argmax(mask))
    return k, flat[k].item()  # the caller's value, as Python writes it: 18446744073709551615, 1e+30


def prepare_lengths(seq_lengths, steps=None):
    """A private int64 copy of the (B,) lengths (None stays None), read-only.

    Integers of any dtype and integral floats are read exactly. With ``steps`` (T) every
    length must be in 1..T; without it, in the range of int64. A bad value is reported as the
    caller gave it (a uint64 2**64−1 as 18446744073709551615, a float 1e30 as 1e+30).
    """
    if seq_lengths is None:
        return None
    arr = as_array(seq_lengths, "seq_lengths")
    kind = arr.dtype.kind
    flat = arr.reshape(-1)
    if kind == "f":
        integral = np.isfinite(flat) & (flat == np.round(flat))
        if not np.all(integral):
            k, value = _first_bad(flat, ~integral)
            raise TypeError(f"seq_lengths: expected integers, got {value!r} at index {k}")
    elif kind not in "iu":
        raise TypeError(f"seq_lengths: expected integers, got dtype {arr.dtype}")
    lo, hi = (1, steps) if steps is not None else (-2**63, 2**63 - 1)
    if kind == "f":  # every float64 below 2**63 converts exactly; compare in floats
        bad = (flat < lo) | (flat >= float(hi) + 1)
    else:
        bad = (flat < lo) | (flat > hi)
    if np.any(bad):
        k, value = _first_bad(flat, bad)
        want = f"every length in 1..{steps}" if steps is not None else "lengths that fit int64"
        raise ValueError(f"seq_lengths: expected {want}, got {value!r} at index {k}")
    out = np.array(arr, dtype=np.int64, order="C", copy=True)
    out.flags.writeable = False
    return out


# ------------------------------------------------------------------------------------------
# aliasing


def overlap(a, b):
    """True when the NumPy arrays ``a`` and ``b`` share memory.

    ``np.may_share_memory`` compares the two address ranges (O(1)) and may answer True for
    interleaved views that touch no common element; ``np.shares_memory`` is exact but solves
    an integer program whose cost grows with the strides. We use the range test first: for two
    C-contiguous arrays (what the core reads and writes) it is exact, since each covers its
    whole range. Only a strided view whose range meets the other's goes to the exact test,
    bounded by ``_OVERLAP_WORK``; past that bound we answer True (refusing is safe, a missed
    overlap is not).
    """
    if a is None or b is None or not np.may_share_memory(a, b):
        return False
    if a.flags.c_contiguous and b.flags.c_contiguous:
        return True
    try:
        return bool(np.shares_memory(a, b, max_work=_OVERLAP_WORK))
    except _TOO_HARD:
        return True


def refuse_overlap(name, target, others, what):
    """ValueError naming ``name`` when ``target`` shares memory with one of ``others``
    ((name, array) pairs, None and non-arrays skipped); ``what`` says why that matters."""
    if not isinstance(target, np.ndarray):
        return
    for other, arr in others:
        if isinstance(arr, np.ndarray) and overlap(target, arr):
            raise ValueError(f"{name}: shares memory with {other}; {what}")


def compute_dtype_of(value):
    """The ``compute_dtype`` of forward and the layers: None (the arrays' dtype) or "bfloat16"
    (also given as torch's or ml_dtypes' name for it); ValueError naming it otherwise."""
    if value is None:
        return None
    name = str(value).removeprefix("torch.")
    if name != "bfloat16":
        raise ValueError(f"compute_dtype: expected None (the arrays' dtype) or 'bfloat16', got {value!r}")
    return name
