"""CUDA device arrays in ``lstmcore.forward`` and ``lstmcore.backward``.

``forward`` and ``backward`` hand a call to this module when one of its arrays lives on a
CUDA device: a PyTorch CUDA tensor, a CuPy or Numba device array (anything with
``__cuda_array_interface__``), or any object whose ``__dlpack_device__`` names a CUDA
device (read through PyTorch or CuPy, without a copy).

* The arrays are used where they are: no copy when they are C-contiguous and of the
  call's dtype (otherwise one conversion on the device, as the NumPy path does on the host).
* The results are allocated on the same device by the caller's library and returned as
  its arrays (torch tensors for torch, CuPy arrays for CuPy, Numba device arrays for Numba;
  arrays of other libraries get the results of the library that read them).
* The work is queued on that library's current stream (``torch.cuda.current_stream()``,
  ``cupy.cuda.get_current_stream()``; Numba: the default stream), ordered after the work
  that produced the inputs, and the call returns without waiting, like the library's own
  operations.
* All arrays of a call must be on one CUDA device; a host array beside device arrays is a
  TypeError naming it. ``seq_lengths`` may be on the host or the device (it is read on the
  host: a small copy that waits for the device when it lives there).
* float32 GEMMs never use TF32 unless ``set_tf32(True)``.
* A build without CUDA (the default) refuses device arrays with a TypeError saying so.

The layer objects (``lstmcore.LSTM``, ``GRU``, ``RNN``) run on the device too when ``x`` (and
the state) are device arrays: see ``stack_forward`` below.
"""
from __future__ import annotations

import importlib

import numpy as np

from . import _core
from ._cache import Cache, DeviceCache
from ._checks import (check_cell, check_weight_layout, expect_shape, is_torch_tensor, prepare_lengths,
                      require_no_cell_state)
from ._types import GATES, ForwardResult, Gradients, has_cell_state

_DLPACK_CUDA = (2, 13)  # kDLCUDA, kDLCUDAManaged
_HOST_TYPES = (np.ndarray, np.generic, list, tuple, int, float, bool)
_settings = {"tf32": False}


def built():
    """True when the compiled core has the CUDA backend (built with LSTMCORE_CUDA=ON)."""
    return hasattr(_core, "cuda_forward")


def device_count():
    """CUDA devices the core can use (0 without a CUDA build, driver or device)."""
    return _core.cuda_device_count() if built() else 0


def set_tf32(enabled):
    """Lets float32 GEMMs use TF32 tensor cores (faster, about 1e-3 relative error). Default off."""
    _settings["tf32"] = bool(enabled)


def set_persistent_batch(batch):
    """Batches up to ``batch`` (default 8) run LSTM, GRU (reset_after) and RNN in one persistent
    cooperative kernel per walk instead of a GEMM and a kernel per step; 0 turns that off."""
    batch = int(batch)
    if batch < 0:
        raise ValueError(f"batch: expected >= 0, got {batch}")
    if not built():
        raise TypeError("set_persistent_batch: this lstmcore build has no CUDA")
    _core.cuda_set_persistent_batch(batch)


def persistent_batch():
    """The batch size up to which the persistent kernels run (see set_persistent_batch)."""
    if not built():
        raise TypeError("persistent_batch: this lstmcore build has no CUDA")
    return _core.cuda_persistent_batch()


# ------------------------------------------------------------------------------------------
# telling device arrays from host ones


def _is_device(obj):
    """True for an array on a CUDA device; never raises."""
    if obj is None or isinstance(obj, _HOST_TYPES):
        return False
    try:
        if is_torch_tensor(obj):
            return obj.is_cuda
        if hasattr(obj, "__cuda_array_interface__"):
            return True
        dev = getattr(obj, "__dlpack_device__", None)
        return dev is not None and int(dev()[0]) in _DLPACK_CUDA
    except Exception:  # an object whose interfaces fail is not an array we can use
        return False


def is_device_call(*objs):
    """True when forward / backward must take the CUDA path (any argument on a device)."""
    return any(isinstance(o, DeviceCache) or _is_device(o) for o in objs)


def _kind(obj):
    return type(obj).__module__.split(".")[0] + "." + type(obj).__name__


def _check_one_side(named, what="CUDA device arrays"):
    """TypeError when host arrays and device arrays are mixed in one call."""
    device = [n for n, o in named if _is_device(o)]
    host = [(n, o) for n, o in named if o is not None and not _is_device(o)]
    if device and host:
        name, obj = host[0]
        raise TypeError(f"{name}: a host array ({_kind(obj)}) beside {what} ({', '.join(device)}); "
                        f"pass every array of a call on the same CUDA device (or all on the host)")
    return device


def _require_build(name, obj):
    if not built():
        raise TypeError(f"{name}: a CUDA device array ({_kind(obj)}), but this lstmcore build has no CUDA; "
                        f"reinstall with `pip install . -C cmake.define.LSTMCORE_CUDA=ON` (see README, CUDA)")


# ------------------------------------------------------------------------------------------
# the libraries: how to read an array, allocate results, find the stream


class _View:
    """A device array as the core sees it: address, shape, dtype, layout, device."""

    __slots__ = ("obj", "lib", "ptr", "shape", "dtype", "contiguous", "device")

    def __init__(self, obj, lib, ptr, shape, dtype, contiguous, device):
        self.obj, self.lib, self.ptr, self.shape = obj, lib, int(ptr), tuple(int(s) for s in shape)
        self.dtype, self.contiguous, self.device = np.dtype(dtype), bool(contiguous), device


def _c_contiguous(shape, strides, itemsize):
    if strides is None:
        return True
    expected = itemsize
    for n, s in zip(reversed(shape), reversed(strides)):
        if n > 1 and s != expected:
            return False
        expected *= n
    return True


class _Torch:
    name = "torch"

    def __init__(self):
        import torch  # noqa: PLC0415

        self.torch = torch
        self.dtypes = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}

    def view(self, t):
        dtype = {self.torch.float32: np.float32, self.torch.float64: np.float64, self.torch.float16: np.float16,
                 self.torch.int64: np.int64, self.torch.int32: np.int32}.get(t.dtype, np.void)
        return _View(t, self, t.data_ptr(), t.shape, dtype, t.is_contiguous(), t.device.index)

    def empty(self, shape, dtype, device):
        return self.torch.empty(shape, dtype=self.dtypes[dtype], device=self.torch.device("cuda", device))

    def convert(self, t, dtype):
        # .to() hands back the same (strided) tensor when the dtype already matches: make it dense
        return t.detach().to(dtype=self.dtypes[dtype]).contiguous()

    def stream(self, device):
        return self.torch.cuda.current_stream(device).cuda_stream

    def to_host(self, t):
        return t.detach().cpu().numpy()

    def from_host(self, a, device):
        return self.torch.as_tensor(a, device=self.torch.device("cuda", device))


class _Cupy:
    name = "cupy"

    def __init__(self):
        import cupy  # noqa: PLC0415

        self.cupy = cupy

    def view(self, a):
        return _View(a, self, a.data.ptr, a.shape, a.dtype, a.flags.c_contiguous, a.device.id)

    def empty(self, shape, dtype, device):
        with self.cupy.cuda.Device(device):
            return self.cupy.empty(shape, dtype)

    def convert(self, a, dtype):
        with self.cupy.cuda.Device(a.device.id):
            return self.cupy.ascontiguousarray(a, dtype=dtype)

    def stream(self, device):
        with self.cupy.cuda.Device(device):
            return self.cupy.cuda.get_current_stream().ptr

    def to_host(self, a):
        return self.cupy.asnumpy(a)

    def from_host(self, a, device):
        with self.cupy.cuda.Device(device):
            return self.cupy.asarray(a)


class _Numba:
    name = "numba"

    def __init__(self):
        from numba import cuda  # noqa: PLC0415

        self.cuda = cuda

    def view(self, a):
        cai = a.__cuda_array_interface__
        dtype = np.dtype(cai["typestr"])
        contiguous = _c_contiguous(cai["shape"], cai.get("strides"), dtype.itemsize)
        return _View(a, self, cai["data"][0], cai["shape"], dtype, contiguous, self.cuda.get_current_device().id)

    def empty(self, shape, dtype, device):
        with self.cuda.gpus[device]:
            return self.cuda.device_array(shape, dtype)

    def convert(self, a, dtype):
        raise TypeError(f"expected a C-contiguous Numba device array of dtype {dtype}: convert it first")

    def stream(self, device):
        return 0  # Numba's default stream is the legacy default stream

    def to_host(self, a):
        return a.copy_to_host()

    def from_host(self, a, device):
        with self.cuda.gpus[device]:
            return self.cuda.to_device(a)


#: The libraries whose arrays this module reads and allocates, by top-level module name
#: (the module of the array's type). Tests register stand-ins here.
ADAPTERS = {"torch": _Torch, "cupy": _Cupy, "numba": _Numba}
_LIBS = {}


def _lib(name):
    if name not in _LIBS:
        _LIBS[name] = ADAPTERS[name]()
    return _LIBS[name]


def _importable(name):
    try:
        importlib.import_module(name)
        return True
    except Exception:
        return False


def _view(obj, name):
    """The _View of a device array, reading arrays of other libraries through torch or CuPy."""
    if is_torch_tensor(obj):
        return _lib("torch").view(obj)
    top = type(obj).__module__.split(".")[0]
    if top in ADAPTERS:
        return _lib(top).view(obj)
    # Another library: a zero-copy torch / CuPy view through DLPack or the array interface.
    for lib in ("torch", "cupy"):
        if not _importable(lib):
            continue
        mod = importlib.import_module(lib)
        try:
            if hasattr(obj, "__dlpack__"):
                wrapped = mod.from_dlpack(obj)
            elif lib == "torch":
                wrapped = mod.as_tensor(obj, device="cuda")
            else:
                wrapped = mod.asarray(obj)
        except Exception:  # this library cannot read it: try the next
            continue
        return _lib(lib).view(wrapped)
    raise TypeError(f"{name}: cannot read the device array {_kind(obj)} without PyTorch or CuPy "
                    f"(install one, or pass torch / CuPy / Numba arrays)")


def _views(named, dt_request, call_dtype=None):
    """Views of the non-None arrays, all on one device, of one float dtype, C-contiguous.

    The dtype is ``dt_request`` when given (others are converted once), else
    ``call_dtype`` when given (backward: the cache's), else that of the first array.
    """
    views = {n: _view(o, n) for n, o in named if o is not None}
    first = next(iter(views))
    device = views[first].device
    dt = np.dtype(dt_request) if dt_request is not None else call_dtype
    if dt is None:
        dt = views[first].dtype
        source = first
    else:
        source = "dtype" if dt_request is not None else "the cache"
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"{source}: expected dtype float32 or float64, got {dt}")
    for n, v in views.items():
        if v.device != device:
            raise ValueError(f"{n}: on CUDA device {v.device}, but {first} is on device {device}; "
                             f"pass every array of a call on one device")
        if v.dtype != dt and dt_request is None:
            raise TypeError(f"{n}: dtype {v.dtype} differs from the call's dtype {dt} (from {source}); "
                            f"all arrays of one call share the dtype (convert them, or pass dtype=)")
        if v.dtype != dt or not v.contiguous:
            views[n] = v.lib.view(v.lib.convert(v.obj, dt))  # one copy on the device
    return views, dt, device


def _check_shape(views, name, want, letters, note=""):
    v = views.get(name)
    if v is not None:
        expect_shape(name, v.shape, want, letters, note)


def _ptr(views, name):
    v = views.get(name)
    return 0 if v is None else v.ptr


def _span(v):
    """The address range [start, end) of a C-contiguous view."""
    return v.ptr, v.ptr + int(np.prod(v.shape, dtype=np.int64)) * v.dtype.itemsize


def _refuse_overlap(name, view, others, what):
    """ValueError naming ``name`` when the C-contiguous ``view`` shares device memory with one
    of ``others`` ((name, view) pairs, None skipped): an exact test for contiguous ranges."""
    if view is None:
        return
    a0, a1 = _span(view)
    for other, v in others:
        if v is None or not v.contiguous or v.device != view.device:
            continue
        b0, b1 = _span(v)
        if a0 < b1 and b0 < a1:
            raise ValueError(f"{name}: shares memory with {other}; {what}")


def host_lengths(seq_lengths, steps=None):
    """A private host copy of ``seq_lengths`` (a host or device array), as prepare_lengths makes it."""
    if _is_device(seq_lengths):
        seq_lengths = _view(seq_lengths, "seq_lengths").lib.to_host(seq_lengths)
    return prepare_lengths(seq_lengths, steps)


# ------------------------------------------------------------------------------------------
# the two calls


def forward(x, w_x, w_h, b=None, b_h=None, h0=None, c0=None, *, cell="lstm", reverse=False, seq_lengths=None,
            batch_first=False, training=False, out=None, reset_after=True, dtype=None, weight_layout="input_major"):
    """lstmcore.forward on CUDA device arrays (see the module docstring)."""
    gm = check_weight_layout(weight_layout) == "gate_major"
    named = [("x", x), ("w_x", w_x), ("w_h", w_h), ("b", b), ("b_h", b_h), ("h0", h0), ("c0", c0), ("out", out)]
    device_names = _check_one_side(named)
    _require_build(device_names[0], dict(named)[device_names[0]])
    for n in ("x", "w_x", "w_h"):
        if dict(named)[n] is None:
            raise TypeError(f"{n}: expected an array, got None")
    check_cell(cell)
    require_no_cell_state(cell, "c0", c0)
    views, dt, device = _views([nv for nv in named if nv[0] != "out"], dtype)
    vx, vh = views["x"], views["w_h"]
    if len(vx.shape) != 3:
        raise ValueError(f"x: expected 3 dimensions {'(B, T, I)' if batch_first else '(T, B, I)'}, "
                         f"got shape {vx.shape}")
    note = " for weight_layout='gate_major'" if gm else ""
    if len(vh.shape) != 2:
        raise ValueError(f"w_h: expected 2 dimensions {'(G·H, H)' if gm else '(H, G·H)'}{note}, got shape {vh.shape}")
    T, B = (vx.shape[1], vx.shape[0]) if batch_first else (vx.shape[0], vx.shape[1])
    I, H, G = vx.shape[2], vh.shape[1 if gm else 0], GATES[cell]
    gh = "H" if G == 1 else f"{G}H"
    for n, want, letters in (("w_x", (I, G * H), ("I", gh)), ("w_h", (H, G * H), ("H", gh))):
        if gm:
            _check_shape(views, n, want[::-1], f"({letters[1]}, {letters[0]})", note)
        else:
            _check_shape(views, n, want, f"({letters[0]}, {letters[1]})")
    for n in ("b", "b_h"):
        _check_shape(views, n, (G * H,), f"({gh},)")
    for n in ("h0", "c0"):
        _check_shape(views, n, (B, H), "(B, H)")
    lengths = host_lengths(seq_lengths, T)
    lib = vx.lib
    y_shape, y_letters = ((B, T, H), "(B, T, H)") if batch_first else ((T, B, H), "(T, B, H)")
    if out is not None:
        vo = _view(out, "out")
        if vo.dtype != dt or not vo.contiguous or vo.device != device:
            raise TypeError(f"out: expected a C-contiguous {dt} array on CUDA device {device}")
        _check_shape({"out": vo}, "out", y_shape, y_letters)
        inputs = list(views.items())
        if _is_device(seq_lengths):
            inputs.append(("seq_lengths", _view(seq_lengths, "seq_lengths")))
        _refuse_overlap("out", vo, inputs, "forward writes y while it reads its inputs (pass another out=)")
        y = out
    else:
        y = lib.empty(y_shape, dt, device)
    h_n = lib.empty((B, H), dt, device)
    c_n = lib.empty((B, H), dt, device) if has_cell_state(cell) else None
    cache_buffer = lib.empty((_core.cache_size(cell, bool(reset_after), T, B, I, H),), dt, device) if training else None
    out_views = {"y": lib.view(y) if out is None else vo, "h_n": lib.view(h_n)}
    if c_n is not None:
        out_views["c_n"] = lib.view(c_n)
    if cache_buffer is not None:
        out_views["cache"] = lib.view(cache_buffer)
    _core.cuda_forward(cell=cell, reset_after=bool(reset_after), dtype=dt.name, T=T, B=B, I=I, H=H,
                       **{n: _ptr(views, n) for n in ("x", "w_x", "w_h", "b", "b_h", "h0", "c0")},
                       **{n: _ptr(out_views, n) for n in ("y", "h_n", "c_n", "cache")},
                       seq_lengths=lengths, reverse=bool(reverse), batch_first=bool(batch_first), device=device,
                       stream=lib.stream(device), allow_tf32=_settings["tf32"], gate_major=gm)
    cache = None
    if training:
        # The cache refers to the arrays forward read (converted copies where it made any).
        ref = {n: (views[n].obj if n in views else None) for n in ("x", "w_x", "w_h", "h0", "c0")}
        cache = DeviceCache._from_fields(cell=cell, reset_after=reset_after, dtype=dt, seq_lengths=lengths,
                                         reverse=reverse, batch_first=batch_first, has_b=b is not None,
                                         has_b_h=b_h is not None, buffer=cache_buffer, variant=None, lib=lib,
                                         device=device, weight_layout=weight_layout, **ref)
    return ForwardResult(y, h_n, c_n, cache)


def backward(cache, dy=None, dh_n=None, dc_n=None):
    """lstmcore.backward for a cache of a forward on CUDA device arrays."""
    named = [("dy", dy), ("dh_n", dh_n), ("dc_n", dc_n)]
    if not isinstance(cache, DeviceCache):
        name = _check_one_side(named)[0]
        what = "from a host (NumPy) forward" if isinstance(cache, Cache) else f"a {type(cache).__name__}"
        raise TypeError(f"{name}: a CUDA device array, but the cache is {what}; "
                        f"run forward(..., training=True) on device arrays to get a device cache")
    for n, o in named:
        if o is not None and not _is_device(o):
            raise TypeError(f"{n}: a host array ({_kind(o)}) for a cache on CUDA device {cache.device}; "
                            f"pass the gradients on that device")
    require_no_cell_state(cache.cell, "dc_n", dc_n)
    views, dt, device = (_views(named, None, cache.dtype) if any(o is not None for _, o in named)
                         else ({}, cache.dtype, cache.device))
    if views and device != cache.device:
        raise ValueError(f"{next(iter(views))}: on CUDA device {device}, but the cache is on device {cache.device}")
    lib = cache.lib
    vx, vh = lib.view(cache.x), lib.view(cache.w_h)
    T, B = (vx.shape[1], vx.shape[0]) if cache.batch_first else (vx.shape[0], vx.shape[1])
    gm = cache.weight_layout == "gate_major"
    I, H, G = vx.shape[2], vh.shape[1 if gm else 0], GATES[cache.cell]
    y_shape = (B, T, H) if cache.batch_first else (T, B, H)
    _check_shape(views, "dy", y_shape, "(B, T, H)" if cache.batch_first else "(T, B, H)")
    for n in ("dh_n", "dc_n"):
        _check_shape(views, n, (B, H), "(B, H)")
    _refuse_gradient_overlap(views, lib.view(cache.buffer))
    cache._claim()
    dev = cache.device
    grads = {"dx": lib.empty(vx.shape, dt, dev), "dh0": lib.empty((B, H), dt, dev),
             "dc0": lib.empty((B, H), dt, dev) if has_cell_state(cache.cell) else None,
             "dw_x": lib.empty((G * H, I) if gm else (I, G * H), dt, dev),
             "dw_h": lib.empty((G * H, H) if gm else (H, G * H), dt, dev),
             "db": lib.empty((G * H,), dt, dev) if cache.has_b else None,
             "db_h": lib.empty((G * H,), dt, dev) if cache.has_b_h else None}
    gviews = {n: lib.view(a) for n, a in grads.items() if a is not None}
    inputs = {n: lib.view(getattr(cache, n)) for n in ("x", "w_x", "w_h", "h0", "c0") if getattr(cache, n) is not None}
    inputs["cache"] = lib.view(cache.buffer)
    _core.cuda_backward(cell=cache.cell, reset_after=cache.reset_after, dtype=dt.name, T=T, B=B, I=I, H=H,
                        **{n: _ptr(inputs, n) for n in ("x", "w_x", "w_h", "h0", "c0", "cache")},
                        **{n: _ptr(views, n) for n in ("dy", "dh_n", "dc_n")},
                        **{n: _ptr(gviews, n) for n in ("dx", "dh0", "dc0", "dw_x", "dw_h", "db", "db_h")},
                        seq_lengths=cache.seq_lengths, reverse=cache.reverse, batch_first=cache.batch_first,
                        device=dev, stream=lib.stream(dev), allow_tf32=_settings["tf32"], gate_major=gm)
    return Gradients(*(grads[n] for n in ("dx", "dh0", "dc0", "dw_x", "dw_h", "db", "db_h")))


def _refuse_gradient_overlap(views, buffer):
    for name, v in views.items():
        _refuse_overlap(name, v, [("the cache's buffer", buffer)],
                        "backward overwrites the buffer while it reads the gradients")


# -- layer stacks (lstmcore.LSTM / GRU / RNN on device arrays) ------------------------------

def _address(lib, a):
    """The device address of an array of `lib`, 0 for None."""
    return 0 if a is None else lib.view(a).ptr


def _addresses(lib, entries):
    """Per layer and direction, the device addresses of a tuple of arrays (0 for None)."""
    return [tuple(_address(lib, a) for a in entry) for entry in entries]


def stack_forward(layer, x, state, lengths, training, seed, weights):
    """A layer object's forward on CUDA device arrays (x and the state on one device).

    The layer's parameters stay NumPy arrays on the host: each call copies them to the
    device of x (with x's library) and the training cache keeps those copies for backward,
    whose weight gradients (``layer.grads``) are device arrays of that library. Returns
    (y, h_n, c_n, cache_buffer, x, device weights, h0, c0, lib, device).
    """
    h0, c0 = layer._state_parts(state)
    named = [("x", x), ("state[0] (h)" if has_cell_state(layer.cell) else "state", h0), ("state[1] (c)", c0)]
    device_names = _check_one_side(named)
    _require_build(device_names[0], dict(named)[device_names[0]])
    if layer._variant is not None:
        raise ValueError("the cell variants (peepholes, proj_size, layer_norm, activations, clip, zoneout, ...) run "
                         "on the CPU only; pass host (NumPy) arrays to this layer")
    views, dt, device = _views(named, None, np.dtype(layer.dtype))
    vx = views["x"]
    if len(vx.shape) != 3 or vx.shape[2] != layer.input_size:
        raise ValueError(f"x: expected shape {'(B, T, I)' if layer.batch_first else '(T, B, I)'} with "
                         f"I = {layer.input_size} (input_size), got shape {vx.shape}")
    T, B = (vx.shape[1], vx.shape[0]) if layer.batch_first else (vx.shape[0], vx.shape[1])
    I, H, L, D = layer.input_size, layer.hidden_size, layer.num_layers, layer.num_directions
    for n in named[1:]:
        _check_shape(views, n[0], (L * D, B, H), "(num_layers·D, B, H)")
    lib = vx.lib
    dev_weights = [tuple(None if a is None else lib.from_host(a, device) for a in entry) for entry in weights]
    O = layer.output_size
    y = lib.empty((B, T, O) if layer.batch_first else (T, B, O), dt, device)
    h_n = lib.empty((L * D, B, H), dt, device)
    c_n = lib.empty((L * D, B, H), dt, device) if has_cell_state(layer.cell) else None
    n = _core.stack_cache_size(layer.cell, layer.reset_after, L, D, layer.dropout, T, B, I, H, merge=layer.merge)
    buffer = lib.empty((n,), dt, device) if training else None
    out = {"y": lib.view(y), "h_n": lib.view(h_n)}
    if c_n is not None:
        out["c_n"] = lib.view(c_n)
    if buffer is not None:
        out["cache"] = lib.view(buffer)
    _core.cuda_stack_forward(cell=layer.cell, reset_after=layer.reset_after, L=L, D=D, dropout=layer.dropout,
                             seed=seed, merge=layer.merge, dtype=dt.name, T=T, B=B, I=I, H=H, x=vx.ptr,
                             weights=_addresses(lib, dev_weights), h0=_ptr(views, named[1][0]),
                             c0=_ptr(views, named[2][0]), **{k: _ptr(out, k) for k in ("y", "h_n", "c_n", "cache")},
                             seq_lengths=lengths, batch_first=layer.batch_first, device=device,
                             stream=lib.stream(device), allow_tf32=_settings["tf32"])
    keep = {k: (views[k].obj if k in views else None) for k, _ in named}
    return (y, h_n, c_n, buffer, keep["x"], dev_weights, keep[named[1][0]], keep[named[2][0]], lib, device)


def stack_backward(layer, cache, dy, dstate):
    """A layer object's backward for a cache of stack_forward; returns what
    ``_core.stack_backward`` returns: (dx, dh0, dc0, [(dw_x, dw_h, db, db_h), ...]) as device
    arrays of the cache's library."""
    dh_n, dc_n = layer._state_parts(dstate, "dstate")
    named = [("dy", dy), ("dstate[0] (dh)" if has_cell_state(layer.cell) else "dstate", dh_n), ("dstate[1] (dc)", dc_n)]
    for n, o in named:
        if o is not None and not _is_device(o):
            raise TypeError(f"{n}: a host array ({_kind(o)}) for a cache on CUDA device {cache.device}; "
                            f"pass the gradients on that device")
    views, dt, device = (_views(named, None, np.dtype(cache.dtype)) if any(o is not None for _, o in named)
                         else ({}, np.dtype(cache.dtype), cache.device))
    if views and device != cache.device:
        raise ValueError(f"{next(iter(views))}: on CUDA device {device}, but the cache is on device {cache.device}")
    lib, dev = cache.lib, cache.device
    vx = lib.view(cache.x)
    T, B = (vx.shape[1], vx.shape[0]) if cache.batch_first else (vx.shape[0], vx.shape[1])
    I, H, L, D, G = vx.shape[2], layer.hidden_size, cache.num_layers, cache.directions, GATES[cache.cell]
    O = layer.output_size
    _check_shape(views, "dy", (B, T, O) if cache.batch_first else (T, B, O),
                 "(B, T, O)" if cache.batch_first else "(T, B, O)")
    for n in named[1:]:
        _check_shape(views, n[0], (L * D, B, H), "(num_layers·D, B, H)")
    _refuse_gradient_overlap(views, lib.view(cache.buffer))
    cache._claim()
    dx = lib.empty(tuple(vx.shape), dt, dev)
    dh0 = lib.empty((L * D, B, H), dt, dev)
    dc0 = lib.empty((L * D, B, H), dt, dev) if has_cell_state(cache.cell) else None
    grads = []
    for j, (w_x, _, b, b_h) in enumerate(cache.weights):
        rows = I if j < D else lib.view(w_x).shape[0]
        grads.append((lib.empty((rows, G * H), dt, dev), lib.empty((H, G * H), dt, dev),
                      None if b is None else lib.empty((G * H,), dt, dev),
                      None if b_h is None else lib.empty((G * H,), dt, dev)))
    _core.cuda_stack_backward(cell=cache.cell, reset_after=cache.reset_after, L=L, D=D, dropout=cache.dropout,
                              seed=cache.dropout_seed, merge=cache.merge, dtype=dt.name, T=T, B=B, I=I, H=H,
                              x=vx.ptr, weights=_addresses(lib, cache.weights),
                              **dict(zip(("h0", "c0", "cache"),
                                         (_address(lib, a) for a in (cache.h0, cache.c0, cache.buffer)))),
                              **dict(zip(("dy", "dh_n", "dc_n"), (_ptr(views, n) for n, _ in named))),
                              **dict(zip(("dx", "dh0", "dc0"), (_address(lib, a) for a in (dx, dh0, dc0)))),
                              grads=_addresses(lib, grads), seq_lengths=cache.seq_lengths,
                              batch_first=cache.batch_first, device=dev, stream=lib.stream(dev),
                              allow_tf32=_settings["tf32"])
    return dx, dh0, dc0, grads
