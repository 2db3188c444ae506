"""The training caches: what ``forward(..., training=True)`` keeps for one ``backward``.

A cache is never built by hand (the constructor refuses): forward makes it through the one
internal factory, ``Cache._from_fields(**fields)``, which checks that the fields describe
one consistent call (the cell, the shapes of x and the weights, the buffer's size) so a
wrong cell name or a buffer of the wrong size is refused by name, and keeps a private copy
of ``seq_lengths``. The same factory rebuilds a cache from saved fields (the PyTorch bridge).

``Cache`` is the host cache (NumPy arrays), ``DeviceCache`` that of a forward on CUDA device
arrays (``lib`` reads and allocates the caller's library's arrays; see ``_cuda``). The layer
objects' ``StackCache`` (``layers``) derives from ``OneShotCache`` too.
"""
from __future__ import annotations

import threading

import numpy as np

from . import _core
from ._checks import (check_cell, check_weight_layout, float_dtype, prepare_lengths, refuse_overlap,
                      require_no_cell_state)
from ._types import GATES, has_cell_state

#: The options of a cell variant that only the LSTM has (see ``_variants.options``).
_LSTM_ONLY = ("peepholes", "input_forget", "forget_gate", "proj", "layer_norm", "zoneout")


class OneShotCache:
    """Base of the training caches: read-only fields, used by exactly one backward.

    Subclasses list their fields in ``__slots__`` and check them in ``_check_fields``;
    ``_from_fields(**fields)`` is the one way to make one. ``_claim()`` marks the cache used
    (thread-safe) and refuses a second use.
    """

    __slots__ = ("_lock", "_consumed")
    #: Fields that ``_from_fields`` may omit, with their values then.
    _DEFAULTS = {}
    _MADE_BY = "forward(..., training=True)"

    def __init__(self, *args, **kwargs):
        raise TypeError(f"lstmcore.{type(self).__name__} cannot be built by hand: caches come from "
                        f"{self._MADE_BY}, whose buffer matches the call that made it")

    @classmethod
    def _field_names(cls):
        names = []
        for klass in reversed(cls.__mro__):
            names += [n for n in getattr(klass, "__slots__", ()) if n not in ("_lock", "_consumed")]
        return names

    @classmethod
    def _from_fields(cls, **fields):
        """A cache from its fields, checked to describe one consistent call (ValueError /
        TypeError naming the field otherwise)."""
        names = cls._field_names()
        fields = {**cls._DEFAULTS, **fields}
        missing = [n for n in names if n not in fields]
        unknown = sorted(set(fields) - set(names))
        if missing or unknown:
            raise TypeError(f"lstmcore.{cls.__name__}._from_fields: missing fields {missing}, "
                            f"unknown fields {unknown}")
        fields = cls._check_fields(dict(fields))
        self = object.__new__(cls)
        for name in names:
            object.__setattr__(self, name, fields[name])
        object.__setattr__(self, "_lock", threading.Lock())
        object.__setattr__(self, "_consumed", False)
        return self

    @classmethod
    def _check_fields(cls, fields):
        return fields

    def __setattr__(self, name, value):
        raise AttributeError(f"lstmcore.{type(self).__name__} is read-only")

    @property
    def consumed(self) -> bool:
        """True once backward has used this cache."""
        return self._consumed

    @property
    def nbytes(self) -> int:
        """Bytes held by the cache's own buffer (the inputs it references are not counted)."""
        return self.buffer.nbytes

    def _claim(self):
        with self._lock:
            if self._consumed:
                raise ValueError("cache: this cache was already used by backward; run forward(training=True) again")
            object.__setattr__(self, "_consumed", True)

    def _state(self) -> str:
        return "consumed" if self._consumed else "ready"


class Cache(OneShotCache):
    """What ``forward(..., training=True)`` keeps for ``backward``.

    It holds the gate activations and states computed by the forward pass (one
    NumPy buffer, ``buffer``) and references to the inputs backward needs (no
    copies: do not modify ``x``, ``w_x``, ``w_h``, ``h0``, ``c0`` in between, nor a cell
    variant's ``peepholes``, ``w_proj``, ``layer_norm``; ``variant`` holds those and the
    options, None for the plain cell); ``seq_lengths`` is a private copy.
    A cache is used by exactly one ``backward`` call, which overwrites the buffer
    with gate gradients; a second use raises ValueError. Caches come from forward only
    (``lstmcore.Cache(...)`` raises TypeError).

    Fields (``Cache._from_fields``): cell, reset_after, dtype, x (T, B, I) or (B, T, I),
    w_x (I, G·H), w_h (R, G·H), h0 (B, R) or None, c0 (B, H) or None, seq_lengths (B,) or
    None, reverse, batch_first, has_b, has_b_h, buffer (the core's cache size for these
    sizes), variant (None, or {"options": dict, "params": (peepholes, w_proj, layer_norm)}),
    weight_layout ("input_major", or "gate_major": w_x (G·H, I), w_h (G·H, R), w_proj (P, H), and
    backward's weight gradients likewise); compute_dtype (optional: None, or "bfloat16" for
    forward's compute_dtype="bfloat16"); R = P with a projection w_proj (H, P), else H.
    """

    __slots__ = ("cell", "reset_after", "dtype", "x", "w_x", "w_h", "h0", "c0", "seq_lengths",
                 "reverse", "batch_first", "has_b", "has_b_h", "buffer", "variant", "weight_layout", "compute_dtype")
    _DEFAULTS = {"compute_dtype": None}

    def __repr__(self):
        return f"<lstmcore.Cache cell={self.cell!r} dtype={self.dtype} x.shape={self.x.shape} {self._state()}>"

    # -- the consistency check of _from_fields ---------------------------------------------

    @classmethod
    def _describe(cls, fields, name, a):
        """(shape, dtype, C-contiguous) of the array field ``name``."""
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name}: expected a numpy.ndarray, got {type(a).__name__}")
        return a.shape, a.dtype, a.flags.c_contiguous

    @classmethod
    def _check_fields(cls, f):
        check_cell(f["cell"])
        cell = f["cell"]
        dt = float_dtype(f["dtype"])
        for name in ("reset_after", "reverse", "batch_first", "has_b", "has_b_h"):
            f[name] = bool(f[name])
        f["dtype"] = dt
        if f["compute_dtype"] not in (None, "bfloat16"):
            raise ValueError(f"compute_dtype: expected None or 'bfloat16', got {f['compute_dtype']!r}")
        require_no_cell_state(cell, "c0", f["c0"])

        def shape_of(name, required=True):
            a = f[name]
            if a is None:
                if required:
                    raise TypeError(f"{name}: required, got None")
                return None
            shape, adt, contiguous = cls._describe(f, name, a)
            if adt != dt:
                raise TypeError(f"{name}: expected dtype {dt} (the cache's), got {adt}")
            if not contiguous:
                raise ValueError(f"{name}: expected a C-contiguous array")
            return tuple(shape)

        gm = check_weight_layout(f["weight_layout"]) == "gate_major"
        x, w_h = shape_of("x"), shape_of("w_h")
        if len(x) != 3:
            raise ValueError(f"x: expected 3 dimensions, got shape {x}")
        T, B = (x[1], x[0]) if f["batch_first"] else (x[0], x[1])
        I, G = x[2], GATES[cell]
        gh = "H" if G == 1 else f"{G}H"
        GH = w_h[0 if gm else 1] if len(w_h) == 2 else 0
        if len(w_h) != 2 or GH % G or GH == 0:
            spelt = f"({G}·H, R)" if gm else f"(R, {G}·H)"
            raise ValueError(f"w_h: expected shape {spelt} for the {cell} cell, got {w_h}")
        H = GH // G
        P = cls._check_variant(f, cell, dt, H, G, gm)
        R = P or H

        def weight(want, letters):  # a weight's shape in the cache's layout
            return (want[::-1], f"({letters[1]}, {letters[0]})") if gm else (want, f"({letters[0]}, {letters[1]})")

        for name, (want, letters) in (("w_x", weight((I, G * H), ("I", gh))), ("w_h", weight((R, G * H), ("R", gh))),
                                      ("h0", ((B, R), "(B, R)")), ("c0", ((B, H), "(B, H)"))):
            got = shape_of(name, required=name in ("w_x", "w_h"))
            if got is not None and got != want:
                raise ValueError(f"{name}: expected shape {letters} = {want} for the {cell} cell, got {got}")
        f["seq_lengths"] = cls._lengths(f["seq_lengths"], T)
        if f["seq_lengths"] is not None and f["seq_lengths"].shape != (B,):
            raise ValueError(f"seq_lengths: expected shape (B,) = ({B},), got {f['seq_lengths'].shape}")
        if f["variant"] is None:
            n = _core.cache_size(cell, f["reset_after"], T, B, I, H)
        else:
            n = _core.stack_cache_size(cell, f["reset_after"], 1, 1, 0.0, T, B, I, H,
                                       variant=_size_options(f["variant"]["options"], P))
        got = shape_of("buffer")
        if got != (n,):
            raise ValueError(f"buffer: expected {n} elements (the {cell} cache of T={T}, B={B}, I={I}, H={H}), "
                             f"got shape {got}")
        cls._check_buffer(f)
        return f

    @classmethod
    def _check_buffer(cls, f):
        """The buffer is backward's to overwrite: writeable, and no input of the call inside it."""
        buf = f["buffer"]
        if not buf.flags.writeable:
            raise ValueError("buffer: expected a writeable array (backward overwrites it)")
        refuse_overlap("buffer", buf, [(n, f[n]) for n in ("x", "w_x", "w_h", "h0", "c0")],
                       "backward overwrites the buffer while it reads the inputs")

    @classmethod
    def _lengths(cls, seq_lengths, steps):
        return prepare_lengths(seq_lengths, steps)

    @classmethod
    def _check_variant(cls, f, cell, dt, H, G, gate_major=False):
        """Checks the variant entry against the cell; returns the projection size P (0 without)."""
        v = f["variant"]
        if v is None:
            return 0
        if not isinstance(v, dict) or set(v) != {"options", "params"} or not isinstance(v["options"], dict):
            raise TypeError("variant: expected None or {'options': dict, 'params': (peepholes, w_proj, layer_norm)}")
        opts = v["options"]
        if not has_cell_state(cell):
            for key in _LSTM_ONLY:
                if key in opts:
                    raise ValueError(f"variant: {key} is an LSTM option, but the cell is {cell}")
        peepholes, w_proj, ln = v["params"]
        for key, param in (("peepholes", peepholes), ("proj", w_proj), ("layer_norm", ln)):
            if (key in opts) != (param is not None):
                raise ValueError(f"variant: the option {key} and its parameters disagree")
        for name, a, want in (("peepholes", peepholes, (3, H)),
                              ("w_proj", w_proj, (None, H) if gate_major else (H, None))) + tuple(
                (f"layer_norm[{k}]", None if ln is None else ln[k], (G * H,) if k < 4 else (H,)) for k in range(6)):
            if a is None:
                continue
            shape, adt, contiguous = cls._describe(f, name, a)
            if adt != dt or not contiguous or len(shape) != len(want) or any(
                    w is not None and s != w for s, w in zip(shape, want)):
                raise ValueError(f"{name}: expected a C-contiguous {dt} array of shape "
                                 f"{tuple('P' if w is None else w for w in want)}, got {tuple(shape)} {adt}")
        return 0 if w_proj is None else int(cls._describe(f, "w_proj", w_proj)[0][0 if gate_major else 1])


def _size_options(options, P):
    """A functional variant's options as the stack's cache planner reads them (P: the projection's width)."""
    out = {k: v for k, v in options.items() if k != "proj"}
    if P:
        out["proj"] = P
    return out


class DeviceCache(Cache):
    """The training cache of a forward on a CUDA device (a device buffer and the inputs).

    Fields: those of Cache (device arrays of ``lib``'s library instead of NumPy arrays;
    ``seq_lengths`` stays a host array), plus ``lib`` (the library adapter of ``_cuda``) and
    ``device`` (the CUDA device index).
    """

    __slots__ = ("lib", "device")

    def __repr__(self):
        return (f"<lstmcore.Cache cell={self.cell!r} dtype={self.dtype} x.shape={tuple(self.x.shape)} "
                f"cuda:{self.device} ({self.lib.name}) {self._state()}>")

    @classmethod
    def _describe(cls, fields, name, a):
        v = fields["lib"].view(a)
        return v.shape, v.dtype, v.contiguous

    @classmethod
    def _check_buffer(cls, f):
        pass  # device memory: _cuda checks the address ranges of what a call reads and writes

    @classmethod
    def _check_fields(cls, f):
        if f["variant"] is not None:
            raise ValueError("variant: the cell variants run on the CPU only")
        return super()._check_fields(f)
