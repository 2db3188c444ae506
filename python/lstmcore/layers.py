"""Layer objects: stacked and bidirectional LSTM, GRU and RNN with PyTorch's constructor.

    layer = lstmcore.LSTM(input_size=16, hidden_size=32, num_layers=2, bidirectional=True)
    y, (h_n, c_n) = layer(x)                                   # inference
    y, state, cache = layer.forward(x, training=True)          # training
    dx, (dh0, dc0) = layer.backward(cache, dy)                 # fills layer.grads

The whole stack (layers, directions, dropout between layers) runs in the compiled core
(``lstmcore::stack_forward`` / ``stack_backward``, cpp/include/lstmcore/stack.h); this
module holds the parameters, the defaults and the cache object.

Parameters live in ``layer.params``, a dict of NumPy arrays in the fused layout of
:func:`lstmcore.forward`, one set per layer ``k`` and direction::

    "l{k}.w_x"   (I_k, G·H)    I_0 = input_size, I_k = O for k > 0: O = 2H for a bidirectional
                               layer with merge="concat" (default), H otherwise
    "l{k}.w_h"   (H, G·H)
    "l{k}.b"     (G·H,)        only when bias=True
    "l{k}.b_h"   (G·H,)        only when bias=True
    "l{k}_reverse.w_x", "l{k}_reverse.w_h", ...   the reverse direction (bidirectional)

G is 4 (LSTM gates i, f, g, o), 3 (GRU r, z, n) or 1 (RNN). ``w_x`` is PyTorch's
``weight_ih_l{k}`` transposed, ``w_h`` its ``weight_hh_l{k}`` transposed, ``b`` / ``b_h``
its ``bias_ih_l{k}`` / ``bias_hh_l{k}``. ``layer.grads`` has the same names after
``backward``. States are (num_layers·D, B, H), row ``k·D + d`` for layer k, direction d,
as PyTorch's h_n.

Cell variants (the keyword options of :func:`lstmcore.forward`, the same cell in every
layer and direction): ``activations``, ``activation_alpha``, ``activation_beta`` and
``clip`` for every family; for LSTM also ``peepholes``, ``input_forget``, ``forget_gate``,
``proj_size``, ``layer_norm`` and ``zoneout``. Those with parameters add, per layer and
direction (and ``_reverse``)::

    "l{k}.peepholes"   (3, H)      peepholes=True; rows p_i, p_f, p_o
    "l{k}.w_proj"      (H, P)      proj_size=P > 0; PyTorch's weight_hr_l{k} transposed
    "l{k}.ln_gain_x"   (G·H,)      layer_norm=True: gains 1, biases 0 when initialised
    "l{k}.ln_bias_x"   (G·H,)
    "l{k}.ln_gain_h"   (G·H,)
    "l{k}.ln_bias_h"   (G·H,)
    "l{k}.ln_gain_c"   (H,)
    "l{k}.ln_bias_c"   (H,)

With ``proj_size=P`` the width of h is P (PyTorch's LSTM with proj_size): ``w_h`` is
(P, G·H), h states (num_layers·D, B, P) (c stays (num_layers·D, B, H)), each direction's
output is P wide, so O = 2P (concat) or P and the inner layers' ``w_x`` is (O, G·H).
Zoneout masks (training) are drawn per call from the same seed as the dropout masks, a
separate stream per layer and direction; inference uses the expectation.

CUDA device arrays (a CUDA build; see :mod:`lstmcore._cuda`): when ``x`` (and the state) are
torch CUDA tensors, CuPy or Numba arrays, the stack runs on their device
(``lstmcore::cuda::stack_forward``): the parameters stay NumPy arrays here and are copied to
that device with x's library on each call, the outputs, the cache and, after ``backward``
(``dy`` / ``dstate`` on the same device), ``layer.grads`` are arrays of that library. The
dropout masks are the CPU's for the same seed. Plain cells only: a layer with a cell
variant refuses device arrays. ``step`` runs on the host.

``compute_dtype="bfloat16"`` (keyword of every constructor; the attribute
``layer.compute_dtype``): the products of every layer and direction on bfloat16 operands,
as :func:`lstmcore.forward`'s option (README, "bfloat16 compute"): float32 layers of plain
cells, host arrays only (device calls compute in float32). The training cache keeps the
mode for ``backward``. ``config()`` has it (key "compute_dtype", only when set), so ``save``
stores it and ``load`` / ``from_config`` restore it; files written without it load in the
layer dtype's own compute. Setting the attribute later changes ``config()``: a training
cache made before it is refused by ``backward`` (by name).
"""
from __future__ import annotations

import functools
import json
import os

import numpy as np

from . import _core, _cuda, _formats, _onnx_graph, _variants
from . import init as _init
from ._cache import OneShotCache
from ._checks import (as_array, compute_dtype_of, core_ready, expect_shape, float_dtype, prepare_lengths,
                      refuse_overlap)
from ._types import GATES, has_cell_state

__all__ = ["LSTM", "GRU", "RNN", "StackCache", "load", "from_config"]

_FORMAT = "lstmcore.layer"
_FORMAT_VERSION = 1


_LN_KINDS = tuple("ln_" + name for name in _variants.LN_NAMES)
_LSTM_OPTIONS = ("peepholes", "input_forget", "forget_gate", "proj_size", "layer_norm", "zoneout")


def _param_names(num_layers, directions, bias, peepholes=False, proj_size=0, layer_norm=False):
    names = []
    for k in range(num_layers):
        for d in range(directions):
            prefix = f"l{k}" + ("_reverse" if d else "")
            kinds = ["w_x", "w_h"] + (["b", "b_h"] if bias else [])
            kinds += (["peepholes"] if peepholes else []) + (["w_proj"] if proj_size else [])
            kinds += list(_LN_KINDS) if layer_norm else []
            names += [f"{prefix}.{kind}" for kind in kinds]
    return names


@functools.lru_cache(maxsize=64)
def _step_names(num_layers, bias):
    """For ``step``: per layer the names of (w_x, w_h, b, b_h) (None without bias), and the set of all."""
    layers = tuple(tuple(f"l{k}.{kind}" if bias or kind in ("w_x", "w_h") else None
                         for kind in ("w_x", "w_h", "b", "b_h")) for k in range(num_layers))
    return layers, frozenset(n for layer in layers for n in layer if n is not None)


def _refuse_lstm_options(family, options):
    """GRU / RNN constructors take the LSTM-only options only to refuse them by name."""
    for name in options:
        if name not in _LSTM_OPTIONS:
            raise TypeError(f"unexpected keyword argument {name!r}")
        raise ValueError(f"{name}: the {family} cell has no such option (it is an LSTM option)")


class StackCache(OneShotCache):
    """What ``layer.forward(..., training=True)`` keeps for ``layer.backward``.

    One NumPy buffer (``buffer``) with every layer's gate activations and states, the
    inputs of the inner layers and the dropout masks (the layout of
    ``lstmcore::stack_cache_size`` in stack.h), plus references to the inputs backward
    needs (x, the weights, the initial states; not copies: do not modify them in
    between) and a private copy of ``seq_lengths``. ``config`` is the configuration of the
    layer that made it (``layer.config()``): ``backward`` of a layer configured otherwise
    refuses it. Used by exactly one ``backward``, which overwrites the buffer. Made by
    ``layer.forward`` only (the constructor raises TypeError).
    """

    __slots__ = ("cell", "reset_after", "num_layers", "directions", "merge", "dropout", "dropout_seed", "dtype",
                 "x", "weights", "h0", "c0", "seq_lengths", "batch_first", "buffer", "variant", "lib", "device",
                 "config", "compute_dtype")
    _DEFAULTS = {"compute_dtype": None}
    _MADE_BY = "layer.forward(..., training=True)"

    @classmethod
    def _check_fields(cls, f):
        x = f["x"]
        steps = None
        if f["lib"] is None:  # host arrays (a device cache's lengths were checked by _cuda)
            steps = x.shape[1] if f["batch_first"] else x.shape[0]
            buf = f["buffer"]
            if not isinstance(buf, np.ndarray) or buf.ndim != 1 or not buf.flags.writeable:
                raise ValueError("buffer: expected a writeable 1-D numpy.ndarray")
        f["seq_lengths"] = prepare_lengths(f["seq_lengths"], steps)
        if not isinstance(f["config"], dict):
            raise TypeError(f"config: expected the layer's config() dict, got {type(f['config']).__name__}")
        return f

    def dropout_mask(self, layer):
        """The dropout mask applied to the output of ``layer`` (0 <= layer < num_layers-1), a
        read-only view shaped like that output, (T, B, O) or (B, T, O) with batch_first:
        each entry is 0 (dropped) or 1/(1-p) (kept). None when the cache has no masks (p = 0
        or a single layer)."""
        if not (self.dropout > 0 and self.num_layers > 1):
            return None
        if not 0 <= layer < self.num_layers - 1:
            raise IndexError(f"layer: expected 0..{self.num_layers - 2}, got {layer}")
        x = self.x
        T, B = (x.shape[1], x.shape[0]) if self.batch_first else (x.shape[0], x.shape[1])
        H = self.weights[0][0].shape[1] // GATES[self.cell]
        R = self.weights[0][1].shape[0]  # the width of h: P with a projection, else H
        off = _core.stack_dropout_mask_offset(self.cell, self.reset_after, self.num_layers, self.directions,
                                              self.dropout, T, B, x.shape[2], H, layer, merge=self.merge,
                                              variant=self.variant)
        width = R if self.merge == "sum" or self.directions == 1 else 2 * R
        n = T * B * width
        view = self.buffer[off:off + n].reshape(tuple(x.shape[:2]) + (width,))
        if self.lib is not None:  # a device cache: an array of the caller's library
            return view
        view = view.view()
        view.flags.writeable = False
        return view

    def __repr__(self):
        return (f"<lstmcore.StackCache cell={self.cell!r} layers={self.num_layers} directions={self.directions} "
                f"dtype={self.dtype} x.shape={self.x.shape} {self._state()}>")


class _Recurrent:
    """Shared implementation of LSTM, GRU and RNN; see the module docstring."""

    _family = "lstm"  # "lstm", "gru" or "rnn"

    def _setup(self, input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, dtype, seed,
               cell, reset_after=True, nonlinearity=None, init="torch", merge="concat", activations=None,
               activation_alpha=None, activation_beta=None, clip=None, peepholes=False, input_forget=False,
               forget_gate=True, proj_size=0, layer_norm=False, zoneout=None, reverse=False, compute_dtype=None):
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {v!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float, np.floating, np.integer)) \
                or not 0.0 <= float(dropout) <= 1.0:
            raise ValueError(f"dropout: expected a probability in [0, 1], got {dropout!r}")
        if init not in _init.INITS:
            raise ValueError(f"init: expected one of {', '.join(map(repr, _init.INITS))}, got {init!r}")
        if merge not in ("concat", "sum"):
            raise ValueError(f"merge: expected 'concat' or 'sum', got {merge!r}")
        dt = float_dtype(dtype)
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        self.merge = merge
        self.reset_after = bool(reset_after)
        self.nonlinearity = nonlinearity
        self.cell = cell
        self._set_reverse(reverse)
        self._set_variant(activations, activation_alpha, activation_beta, clip, peepholes, input_forget,
                          forget_gate, proj_size, layer_norm, zoneout)
        self.dtype = dt
        # bfloat16 products (lstmcore.forward's compute_dtype): in config() and so in save / load
        self.compute_dtype = compute_dtype_of(compute_dtype)
        if self.compute_dtype is not None and dt != np.float32:
            raise TypeError(f"compute_dtype: 'bfloat16' computes on float32 layers, got dtype={dt}")
        if self.compute_dtype is not None and self._variant is not None:
            raise ValueError("compute_dtype: 'bfloat16' runs the plain cells only (the cell variants compute in the "
                             "layer's dtype)")
        self._check_parameter_bytes()
        self.seed = seed
        seeds = np.random.SeedSequence(seed).spawn(2)
        self._dropout_rng = np.random.default_rng(seeds[1])
        self.params = {}
        self.grads = {}
        self.init = init
        self.reset_parameters(np.random.default_rng(seeds[0]))

    def _set_variant(self, activations, activation_alpha, activation_beta, clip, peepholes, input_forget,
                     forget_gate, proj_size, layer_norm, zoneout):
        """Checks the cell-variant options and keeps them, with the core's options dict
        (``self._variant``, None for the plain cell)."""
        for name, v in (("peepholes", peepholes), ("input_forget", input_forget), ("forget_gate", forget_gate),
                        ("layer_norm", layer_norm)):
            if not isinstance(v, (bool, np.bool_)):
                raise ValueError(f"{name}: expected True or False, got {v!r}")
        if isinstance(proj_size, bool) or not isinstance(proj_size, (int, np.integer)) or proj_size < 0:
            raise ValueError(f"proj_size: expected an integer >= 0, got {proj_size!r}")
        opts = _variants.options(self.cell, False, peepholes=True if peepholes else None,
                                 input_forget=bool(input_forget), forget_gate=bool(forget_gate), clip=clip,
                                 activations=activations, activation_alpha=activation_alpha,
                                 activation_beta=activation_beta, w_proj=None,
                                 layer_norm=(None,) * 6 if layer_norm else None, zoneout=zoneout, seed=None)
        if proj_size > 0:
            opts = dict(opts or {}, proj=int(proj_size))
        self.activations = None if activations is None else list(activations)
        self.activation_alpha = None if activation_alpha is None else list(activation_alpha)
        self.activation_beta = None if activation_beta is None else list(activation_beta)
        self.clip = None if clip is None else float(clip)
        self.peepholes = bool(peepholes)
        self.input_forget = bool(input_forget)
        self.forget_gate = bool(forget_gate)
        self.proj_size = int(proj_size)
        self.layer_norm = bool(layer_norm)
        self.zoneout = None if opts is None or "zoneout" not in opts else tuple(opts["zoneout"])
        self._variant = opts

    def _check_parameter_bytes(self):
        """OverflowError when the parameters of these sizes exceed what an array can address,
        MemoryError when they exceed this machine's memory (both before anything is allocated)."""
        I, H, L, D = self.input_size, self.hidden_size, self.num_layers, self.num_directions
        GH, R, P = self.gates * H, self.state_size, self.proj_size

        def per_direction(rows):
            n = rows * GH + R * GH + (2 * GH if self.bias else 0) + (3 * H if self.peepholes else 0)
            return n + H * P + ((4 * GH + 2 * H) if self.layer_norm else 0)

        total = D * (per_direction(I) + (L - 1) * per_direction(self.output_size)) * self.dtype.itemsize
        sizes = f"input_size={I}, hidden_size={H}, num_layers={L}" + (f", proj_size={P}" if P else "")
        if total > 2**63 - 1:
            raise OverflowError(f"{sizes}: the parameters would take {total} bytes, more than an array can hold")
        try:
            memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (AttributeError, ValueError, OSError):  # not a POSIX system: let the allocation decide
            memory = None
        if memory and total > memory:
            raise MemoryError(f"{sizes}: the parameters would take {total} bytes, more than this machine's "
                              f"memory ({memory} bytes)")

    def variant_options(self):
        """The cell-variant options that differ from the plain cell, as constructor keywords."""
        out = {}
        for name, default in (("activations", None), ("activation_alpha", None), ("activation_beta", None),
                              ("clip", None), ("peepholes", False), ("input_forget", False),
                              ("forget_gate", True), ("proj_size", 0), ("layer_norm", False), ("zoneout", None)):
            value = getattr(self, name)
            if value != default:
                out[name] = list(value) if isinstance(value, tuple) else value
        return out

    # -- description ---------------------------------------------------------------------
    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    @property
    def state_size(self):
        """The width of h: proj_size with a projection, else hidden_size."""
        return self.proj_size or self.hidden_size

    @property
    def output_size(self):
        """Features of each output row: 2R for a bidirectional layer with merge="concat", else R
        (R = proj_size with a projection, else H)."""
        return 2 * self.state_size if self.bidirectional and self.merge == "concat" else self.state_size

    @property
    def gates(self):
        return GATES[self.cell]

    def param_names(self):
        """The names of ``params`` in the order of the core: layer by layer, forward then reverse."""
        return _param_names(self.num_layers, self.num_directions, self.bias, self.peepholes, self.proj_size,
                            self.layer_norm)

    def param_shape(self, name):
        """The shape ``params[name]`` must have."""
        prefix, kind = name.split(".")
        k = int(prefix[1:].split("_")[0])
        GH = self.gates * self.hidden_size
        H = self.hidden_size
        if kind.startswith("ln_"):
            return (H,) if kind.endswith("_c") else (GH,)
        return {"w_x": (self.input_size if k == 0 else self.output_size, GH),
                "w_h": (self.state_size, GH), "b": (GH,), "b_h": (GH,), "peepholes": (3, H),
                "w_proj": (H, self.proj_size)}[kind]

    def config(self):
        """The constructor's arguments (what ``save`` stores beside the weights)."""
        cfg = dict(format=_FORMAT, version=_FORMAT_VERSION, cell=self.cell, input_size=self.input_size,
                   hidden_size=self.hidden_size, num_layers=self.num_layers, bias=self.bias,
                   batch_first=self.batch_first, dropout=self.dropout, bidirectional=self.bidirectional,
                   dtype=self.dtype.name)
        if self.merge != "concat":
            cfg["merge"] = self.merge
        if self._family == "gru":
            cfg["reset_after"] = self.reset_after
        if self._family == "rnn":
            cfg["nonlinearity"] = self.nonlinearity
        cfg.update(self.variant_options())
        if self.reverse:
            cfg["reverse"] = True
        if self.compute_dtype is not None:
            cfg["compute_dtype"] = self.compute_dtype
        return cfg

    def __repr__(self):
        extra = ""
        if self._family == "gru" and not self.reset_after:
            extra = ", reset_after=False"
        if self._family == "rnn" and self.nonlinearity != "tanh":
            extra = f", nonlinearity={self.nonlinearity!r}"
        opts = "".join(f", {k}={getattr(self, k)!r}" for k, default in
                       (("num_layers", 1), ("bias", True), ("batch_first", False), ("dropout", 0.0),
                        ("bidirectional", False), ("merge", "concat"), ("reverse", False))
                       if getattr(self, k) != default)
        opts += "".join(f", {k}={v!r}" for k, v in self.variant_options().items())
        return (f"lstmcore.{type(self).__name__}({self.input_size}, {self.hidden_size}{opts}{extra}, "
                f"dtype={self.dtype.name})")

    # -- parameters ------------------------------------------------------------------------
    def reset_parameters(self, rng=None, init=None):
        """Draws new weights with the scheme ``init`` (default: the constructor's ``init``).

        "torch": every weight and bias uniform in ±1/√hidden_size (PyTorch's default).
        "keras": w_x Glorot-uniform, w_h orthogonal, biases 0 except an LSTM's forget-gate
        bias, 1 (in ``b``; Keras's LSTM/GRU/SimpleRNN defaults). See :mod:`lstmcore.init`.
        """
        rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
        init = self.init if init is None else init
        if init not in _init.INITS:
            raise ValueError(f"init: expected one of {', '.join(map(repr, _init.INITS))}, got {init!r}")
        params = {}
        for name in self.param_names():
            shape = self.param_shape(name)
            kind = name.split(".")[1]
            if kind.startswith("ln_"):  # layer norm starts as the identity
                params[name] = (np.ones if "_gain_" in kind else np.zeros)(shape, self.dtype)
            elif init == "torch":
                params[name] = _init.torch_uniform(shape, self.hidden_size, rng, self.dtype)
            elif kind in ("w_x", "w_proj", "peepholes"):
                params[name] = _init.glorot_uniform(shape, rng, self.dtype)
            elif kind == "w_h":
                params[name] = _init.orthogonal(shape, rng, dtype=self.dtype)
            else:
                params[name] = np.zeros(shape, self.dtype)
                if kind == "b" and has_cell_state(self.cell):
                    _init.unit_forget_bias(params[name])
        self.params = params
        self.grads = {}

    def _param(self, name):
        """params[name], checked (None for a parameter this configuration does not have)."""
        if name not in self._names:
            return None
        if name not in self.params:
            raise KeyError(f"params: missing {name!r}")
        arr = self.params[name]
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"params[{name!r}]: expected a numpy.ndarray, got {type(arr).__name__}")
        if arr.dtype != self.dtype:
            raise TypeError(f"params[{name!r}]: expected dtype {self.dtype}, got {arr.dtype}")
        if arr.shape != self.param_shape(name):
            raise ValueError(f"params[{name!r}]: expected shape {self.param_shape(name)}, got {arr.shape}")
        return np.ascontiguousarray(arr)

    def _weights(self):
        """The core's list of (w_x, w_h, b, b_h), plus (peepholes, w_proj, layer_norm) with a
        cell variant, checked by name."""
        self._names = set(self.param_names())
        extra = set(self.params) - self._names
        if extra:
            raise KeyError(f"params: unknown names {sorted(extra)}; expected {self.param_names()}")
        out = []
        for k in range(self.num_layers):
            for d in range(self.num_directions):
                prefix = f"l{k}" + ("_reverse" if d else "")
                entry = [self._param(f"{prefix}.{kind}") for kind in ("w_x", "w_h", "b", "b_h")]
                if self._variant is not None:
                    entry += [self._param(f"{prefix}.peepholes"), self._param(f"{prefix}.w_proj")]
                    ln = tuple(self._param(f"{prefix}.{kind}") for kind in _LN_KINDS)
                    entry.append(ln if self.layer_norm else None)
                out.append(tuple(entry))
        return out

    # -- inputs ----------------------------------------------------------------------------
    def _array(self, v, name):
        """``v`` as the core reads it: the layer's dtype, C-contiguous, aligned (the very array when it
        already is); arrays and tensors of the other float dtype are refused, lists read in the layer's."""
        if v is None:
            return None
        typed = hasattr(v, "dtype")
        a = as_array(v, name)
        if a.dtype != self.dtype:
            if a.dtype.kind == "f" and typed:
                raise TypeError(f"{name}: dtype {a.dtype} differs from the layer's dtype {self.dtype} "
                                f"(convert it with .astype, or build the layer with dtype={a.dtype.name})")
            if a.dtype.kind not in "biuf":
                raise TypeError(f"{name}: expected a real numeric array, got dtype {a.dtype}")
        return core_ready(a, self.dtype, name)

    def _state_parts(self, state, name="state"):
        """(h, c) of a user state as given (None where absent), its form checked."""
        if state is None:
            return None, None
        if has_cell_state(self.cell):
            if not isinstance(state, (tuple, list)) or len(state) != 2:
                raise TypeError(f"{name}: expected a tuple (h, c) for an LSTM, got {type(state).__name__}")
            return state[0], state[1]
        if isinstance(state, (tuple, list)):
            raise TypeError(f"{name}: expected one array h for a {type(self).__name__}, got a "
                            f"{type(state).__name__}")
        return state, None

    def _state(self, state, name="state"):
        """(h0, c0) arrays (or None) from a user state."""
        h, c = self._state_parts(state, name)
        if has_cell_state(self.cell) and state is not None:
            return self._array(h, f"{name}[0] (h)"), self._array(c, f"{name}[1] (c)")
        return self._array(h, name), None

    def _x(self, x):
        x = self._array(x, "x")
        if x.ndim != 3:
            raise ValueError(f"x: expected 3 dimensions {'(B, T, I)' if self.batch_first else '(T, B, I)'}, "
                             f"got shape {x.shape}")
        if x.shape[2] != self.input_size:
            raise ValueError(f"x: expected {self.input_size} input features (input_size), got shape {x.shape}")
        return x

    def _spec(self):
        return (self.cell, self.reset_after, self.num_layers, self.num_directions, self.dropout)

    def _pack_state(self, h, c):
        return (h, c) if has_cell_state(self.cell) else h

    # -- running ---------------------------------------------------------------------------
    def __call__(self, x, state=None, seq_lengths=None):
        """Inference: ``y, state = layer(x, state=None, seq_lengths=None)``.

        x (T, B, I), or (B, T, I) with batch_first. state: (h0, c0) for LSTM, h0 otherwise,
        each (num_layers·D, B, H) (h: (num_layers·D, B, P) with proj_size=P); None means zeros. seq_lengths: (B,) lengths in 1..T (the
        model of PyTorch's packed sequences: y is 0 past each length, the final state is the
        one at each sequence's last step, the reverse direction starts there).
        Returns y (T, B, O) (or (B, T, O)), O = ``output_size`` (2H bidirectional with
        merge="concat", else H), and the final state shaped like ``state``.
        """
        y, state, _ = self.forward(x, state, seq_lengths, training=False)
        return y, state

    def forward(self, x, state=None, seq_lengths=None, training=False, *, dropout_seed=None):
        """Runs the stack; returns ``(y, state, cache)``.

        With ``training=True`` dropout applies between layers (p = ``self.dropout``, inverted
        scaling 1/(1-p), never after the last layer) and ``cache`` is a StackCache for
        :meth:`backward`; otherwise cache is None. The masks are drawn from the layer's
        generator (seeded by ``seed``), or from ``dropout_seed`` (an integer) when given; with
        ``zoneout`` the same seed keys the zoneout masks (a stream per layer and direction,
        ``lstmcore._core.stack_variant_seed``). In inference zoneout uses its expectation.
        """
        device = _cuda.is_device_call(x, *self._state_parts(state))
        if device:
            lengths = _cuda.host_lengths(seq_lengths)
        else:
            x = self._x(x)
            h0, c0 = self._state(state)
            lengths = prepare_lengths(seq_lengths, x.shape[1] if self.batch_first else x.shape[0])
        x = self._reversed_in_time(x, lengths, device)
        weights = self._weights()
        training = bool(training)
        if dropout_seed is None:
            random = training and (self.dropout > 0 or self.zoneout is not None)
            dropout_seed = int(self._dropout_rng.integers(0, 2**63)) if random else 0
        dropout_seed = int(dropout_seed) & (2**64 - 1)
        lib = dev = None
        if device:  # CUDA device arrays: the stack runs there (see lstmcore._cuda.stack_forward)
            y, h_n, c_n, buffer, x, weights, h0, c0, lib, dev = _cuda.stack_forward(
                self, x, state, lengths, training, dropout_seed, weights)
        else:
            y, h_n, c_n, buffer = _core.stack_forward(*self._spec(), dropout_seed, x, weights, h0, c0, lengths,
                                                      self.batch_first, training, merge=self.merge,
                                                      variant=self._variant, bf16=self.compute_dtype is not None)
        cache = None
        if training:
            cache = StackCache._from_fields(
                cell=self.cell, reset_after=self.reset_after, num_layers=self.num_layers,
                directions=self.num_directions, merge=self.merge, dropout=self.dropout, dropout_seed=dropout_seed,
                dtype=self.dtype, x=x, weights=weights, h0=h0, c0=c0, seq_lengths=lengths,
                batch_first=self.batch_first, buffer=buffer, variant=self._variant, lib=lib, device=dev,
                config=self.config(), compute_dtype=None if device else self.compute_dtype)
        return self._reversed_in_time(y, lengths), self._pack_state(h_n, c_n), cache

    def backward(self, cache, dy=None, dstate=None):
        """Backpropagation through the stack for the forward call that made ``cache``.

        dy: y's shape, or None (zero). dstate: the gradient of the final state, shaped like
        the state ((dh_n, dc_n) for LSTM, either may be None), or None.
        Returns ``(dx, dstate0)``, dstate0 the gradient of the initial state ((dh0, dc0) for
        LSTM). The weight gradients go to ``self.grads`` (same names as ``params``). The
        cache is consumed — after every check: a cache made by a layer of another
        configuration, gradients of the wrong shape or dtype, or inside the cache's buffer,
        raise and leave it usable.
        """
        if not isinstance(cache, StackCache):
            raise TypeError(f"cache: expected the lstmcore.StackCache from layer.forward(..., training=True), "
                            f"got {type(cache).__name__}")
        self._check_cache_config(cache)
        if cache.lib is not None:  # a cache of a forward on CUDA device arrays
            dx, dh0, dc0, grads = _cuda.stack_backward(self, cache, dy, dstate)
        else:
            dy, dh_n, dc_n = self._gradients(cache, dy, dstate)  # all checked before the cache is used
            dy = self._reversed_in_time(dy, cache.seq_lengths)
            cache._claim()
            dx, dh0, dc0, grads = _core.stack_backward(
                cache.cell, cache.reset_after, cache.num_layers, cache.directions, cache.dropout, cache.dropout_seed,
                cache.x, cache.weights, cache.h0, cache.c0, cache.seq_lengths, cache.batch_first, cache.buffer,
                dy, dh_n, dc_n, merge=cache.merge, variant=cache.variant, bf16=cache.compute_dtype is not None)
        self.grads = {}
        j = 0
        for k in range(self.num_layers):
            for d in range(self.num_directions):
                prefix = f"l{k}" + ("_reverse" if d else "")
                named = list(zip(("w_x", "w_h", "b", "b_h", "peepholes", "w_proj"), grads[j]))
                if len(grads[j]) > 6 and grads[j][6] is not None:
                    named += list(zip(_LN_KINDS, grads[j][6]))
                for kind, g in named:
                    if g is not None:
                        self.grads[f"{prefix}.{kind}"] = g
                j += 1
        return self._reversed_in_time(dx, cache.seq_lengths), self._pack_state(dh0, dc0)

    def _check_cache_config(self, cache):
        """ValueError naming what differs when ``cache`` was made by a layer configured otherwise."""
        mine, theirs = self.config(), cache.config
        diff = [k for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)]
        if diff:
            said = ", ".join(f"{k} {theirs.get(k)!r} (the cache's layer) vs {mine.get(k)!r} (this layer)"
                             for k in diff)
            raise ValueError(f"cache: made by a layer of another configuration: {said}")

    def _gradients(self, cache, dy, dstate):
        """dy, dh_n, dc_n as the core reads them, their shapes checked against ``cache``, none of
        them inside the cache's buffer (which backward overwrites while it reads them)."""
        given = [("dy", dy)] + list(zip(self._state_names("dstate"), self._state_parts(dstate, "dstate")))
        arrays = [self._array(v, name) for name, v in given]
        x = cache.x
        T, B = (x.shape[1], x.shape[0]) if cache.batch_first else (x.shape[0], x.shape[1])
        LD, R, H, O = self.num_layers * self.num_directions, self.state_size, self.hidden_size, self.output_size
        r = "P" if self.proj_size else "H"
        o = ("2" if O == 2 * R else "") + r
        wants = [((B, T, O), f"(B, T, {o})") if cache.batch_first else ((T, B, O), f"(T, B, {o})"),
                 ((LD, B, R), f"(num_layers·D, B, {r})"), ((LD, B, H), "(num_layers·D, B, H)")]
        for (name, obj), arr, (want, letters) in zip(given, arrays, wants):
            if arr is not None:
                expect_shape(name, arr.shape, want, letters)
                refuse_overlap(name, as_array(obj, name), [("the cache's buffer", cache.buffer)],
                               "backward overwrites the buffer while it reads the gradients")
        return arrays[0], arrays[1], arrays[2]

    def _state_names(self, name):
        return (f"{name}[0] (h)", f"{name}[1] (c)") if has_cell_state(self.cell) else (name, f"{name}[1]")

    def step(self, x_t, state=None):
        """Advances one time step for online inference: ``y_t, state = layer.step(x_t, state)``.

        x_t (B, I); state as in ``__call__`` (None: zeros). Returns y_t (B, R), the last
        layer's output (R = proj_size or H), and the new state (zoneout: its expectation). Calling step over a sequence gives the result of
        the whole-sequence call step by step. Not defined for bidirectional layers (the
        reverse direction needs the whole sequence).

        The weights are read where they lie in ``params`` on every call: a change to them, in
        place or not, reaches the next step (a stepper, faster at larger B, packs them once).
        Plain cells in the layer's own compute run ``lstmcore::step_layer`` (no allocation
        in the core beyond the returned arrays); bfloat16 compute and the cell variants run a
        one-step call of the whole-sequence core.
        """
        fast = self._step_in_place(x_t, state)
        if fast is not None:
            return fast
        if self.bidirectional or self.reverse:
            raise ValueError(f"step: a {'reverse' if self.reverse else 'bidirectional'} layer cannot run step by step "
                             f"(its reverse direction starts at the end of the sequence); call the layer on the whole "
                             f"sequence")
        if _cuda.is_device_call(x_t, *self._state_parts(state)):
            raise TypeError("x_t: step runs on the host; pass NumPy arrays (or call the layer on the whole "
                            "sequence of device arrays)")
        x_t = self._array(x_t, "x_t")
        if x_t.ndim != 2 or x_t.shape[1] != self.input_size:
            raise ValueError(f"x_t: expected shape (B, {self.input_size}), got {x_t.shape}")
        h0, c0 = self._state(state)
        y, h_n, c_n, _ = _core.stack_forward(*self._spec(), 0, x_t[None], self._weights(), h0, c0, None,
                                             False, False, merge=self.merge, variant=self._variant,
                                             bf16=self.compute_dtype is not None)
        return y[0], self._pack_state(h_n, c_n)

    def _step_in_place(self, x_t, state):
        """``step`` on the core's fast path (``_core.layer_step``: the weights read where they lie,
        never a stale copy), or None when the call needs the checked path: a variant cell,
        bfloat16 compute, a reverse or bidirectional layer, or any argument or parameter that
        is not a ready array of the expected shape (that path converts it or names the problem)."""
        if self._variant is not None or self.compute_dtype is not None or self.bidirectional or self.reverse:
            return None
        params = self.params
        names = _step_names(self.num_layers, self.bias)
        if len(params) != len(names[1]):  # a missing or unknown name: the checked path names it
            return None
        try:
            weights = [tuple(None if n is None else params[n] for n in layer) for layer in names[0]]
        except KeyError:
            return None
        if state is None:
            h0 = c0 = None
        elif self.cell == "lstm":
            if type(state) is not tuple or len(state) != 2:
                return None
            h0, c0 = state
        elif isinstance(state, (tuple, list)):
            return None
        else:
            h0, c0 = state, None
        nd = np.ndarray
        if not (type(x_t) is nd and (h0 is None or type(h0) is nd) and (c0 is None or type(c0) is nd)):
            # tensors, lists: converted here
            if _cuda.is_device_call(x_t, h0, c0):
                return None
            x_t = self._array(x_t, "x_t")
            h0, c0 = self._state(state)
        out = _core.layer_step(self.cell, self.reset_after, x_t, weights, h0, c0, False, self.input_size,
                               self.hidden_size)
        if out is None:  # once more on the arrays as the checked path has them (copies of strided ones,
            x_t = self._array(x_t, "x_t")  # so every layout gives the same bits), or its named errors
            h0, c0 = self._state(state)
            weights = [w[:4] for w in self._weights()]
            out = _core.layer_step(self.cell, self.reset_after, x_t, weights, h0, c0, False, self.input_size,
                                   self.hidden_size)
        if out is None or out[0].dtype != self.dtype:
            return None
        y, h_n, c_n = out
        return y, self._pack_state(h_n, c_n)

    def stepper(self, batch=1, state=None):
        """A :class:`lstmcore._stepper.Stepper` for fast step-by-step inference:
        ``s = layer.stepper(B); y_t = s.step(x_t)``; ``s.state`` is the state (the layer's format).

        The weights are packed once, here: a stepper does not see later changes to
        ``params`` (in place or not); build a new one after changing them. Plain cells only
        (GRU with reset_after=True), one direction, not reversed; ``step`` covers the rest.
        """
        from ._stepper import Stepper
        if self.bidirectional or self.reverse:
            raise ValueError("stepper: a reverse or bidirectional layer cannot run step by step; call the layer on "
                             "the whole sequence")
        if self._variant is not None:
            raise ValueError("stepper: cell options (peepholes, projection, layer norm, ...) run through "
                             "layer.step, not a stepper")
        if self.cell == "gru" and not self.reset_after:
            raise ValueError("stepper: a GRU with reset_after=False runs through layer.step, not a stepper")
        if self.compute_dtype is not None:
            raise ValueError(f"stepper: compute_dtype={self.compute_dtype!r} runs through layer.step, not a stepper "
                             f"(a stepper computes in the layer's dtype)")
        return Stepper(self, batch, state)

    def zero_grad(self):
        self.grads = {}

    # -- files -----------------------------------------------------------------------------
    def save(self, path):
        """Writes the configuration and the weights to an ``.npz`` file (NumPy adds the
        suffix when ``path`` has none). Read it back with :func:`lstmcore.load`."""
        self._weights()  # refuse to save a broken parameter set
        arrays = {name: np.asarray(self.params[name]) for name in self.param_names()}
        np.savez(path, __config__=np.array(json.dumps(self.config())), **arrays)

    # -- reverse-only layers (reverse=True: ONNX's direction="reverse", Keras' go_backwards) ---
    def _set_reverse(self, reverse):
        if not isinstance(reverse, (bool, np.bool_)):
            raise ValueError(f"reverse: expected True or False, got {reverse!r}")
        if reverse and self.bidirectional:
            raise ValueError("reverse: a bidirectional layer already runs both directions; reverse=True makes a "
                             "unidirectional layer run only the reverse one")
        self.reverse = bool(reverse)

    def _reversed_in_time(self, a, lengths, device=False):
        """For a reverse layer, ``a`` (T, B, F) or (B, T, F) with each sequence's valid steps in
        the opposite order (a copy; the steps past a length stay): the stack runs forward on it.
        Other layers get ``a`` itself."""
        if not self.reverse or a is None or np.ndim(a) != 3:  # a wrong shape is the core's to refuse
            return a
        if device:
            raise TypeError("x: a reverse layer runs on the host; pass NumPy arrays")
        t_axis = 1 if self.batch_first else 0
        T, B = a.shape[t_axis], a.shape[1 - t_axis]
        t = np.arange(T)[:, None]
        n = np.full((1, B), T) if lengths is None or np.shape(lengths) != (B,) else np.asarray(lengths)[None, :]
        idx = np.clip(np.where(t < n, n - 1 - t, t), 0, T - 1)  # (T, B); bad lengths are the core's to refuse
        if self.batch_first:
            return np.ascontiguousarray(np.take_along_axis(a, idx.T[:, :, None], axis=1))
        return np.ascontiguousarray(np.take_along_axis(a, idx[:, :, None], axis=0))

    # -- converters: tensors in lstmcore._formats, ONNX graphs in lstmcore._onnx_graph (the
    #    functions of lstmcore.convert do the same for any family) -----------------------------
    def _checked_params(self):
        self._weights()  # refuses a broken parameter set
        return {name: np.asarray(self.params[name]) for name in self.param_names()}

    @classmethod
    def from_torch(cls, module, *, dtype=None):
        """A layer with the weights and configuration of a torch.nn.LSTM / GRU / RNN (all layers
        and directions; batch_first, dropout and nonlinearity included). dtype: default the module's."""
        return _expect(cls, from_config(*_formats.from_torch(module, dtype)))

    def to_torch(self):
        """An equivalent torch.nn.LSTM / GRU / RNN (of this layer's dtype); PyTorch has proj_size
        but none of the other cell options, reverse=True nor merge="sum" (refused by name)."""
        return _formats.to_torch(self.config(), self._checked_params())

    @classmethod
    def from_state_dict(cls, state_dict, *, nonlinearity="tanh", batch_first=False, dropout=0.0, dtype=None):
        """A layer from a PyTorch state_dict: sizes, layers, directions, bias and proj_size read
        from the keys and shapes; batch_first, dropout (and an RNN's nonlinearity) from the arguments."""
        cell = cls._family if cls is not _Recurrent else "lstm"
        return _expect(cls, from_config(*_formats.from_state_dict(state_dict, cell, nonlinearity=nonlinearity,
                                                                 batch_first=batch_first, dropout=dropout,
                                                                 dtype=dtype)))

    def state_dict(self):
        """PyTorch's state_dict of this layer as NumPy arrays (weight_ih_l0 = w_xᵀ, ...)."""
        return _formats.to_state_dict(self.config(), self._checked_params())

    @classmethod
    def from_keras(cls, weights, **kwargs):
        """A layer from Keras 3 layers or their ``get_weights()`` lists; see :func:`lstmcore.convert.from_keras`."""
        return _expect(cls, from_config(*_formats.from_keras(weights, cell=cls._family, **kwargs)))

    def to_keras(self):
        """Keras 3 ``set_weights()`` lists; see :func:`lstmcore.convert.to_keras`."""
        return _formats.to_keras_weights(self.config(), self._checked_params())

    @classmethod
    def from_onnx(cls, model_or_path, *, weights=None, return_state=False, dtype=None):
        """A layer from the LSTM / GRU / RNN nodes of an ONNX model; see :func:`lstmcore.convert.from_onnx`."""
        cfg, params, state = _onnx_graph.read_model(model_or_path, weights, dtype)
        layer = _expect(cls, from_config(cfg, params))
        return (layer, state) if return_state else layer

    def to_onnx(self, path=None, *, seq_lengths=False, initial_state=False, dtype=None, opset=17, layout=0):
        """An ONNX model of this layer (written to ``path`` when given); see :func:`lstmcore.convert.to_onnx`."""
        model = _onnx_graph.write_model(self.config(), self._checked_params(), seq_lengths=seq_lengths,
                                        initial_state=initial_state, dtype=dtype, opset=opset, layout=layout)
        if path is not None:
            _onnx_graph.onnx_module().save(model, os.fspath(path))
        return model


def _expect(cls, layer):
    if cls is not _Recurrent and not isinstance(layer, cls):
        raise TypeError(f"expected a model of a {cls.__name__}, got one of a {type(layer).__name__}")
    return layer


class LSTM(_Recurrent):
    """A stack of LSTM layers, the model of torch.nn.LSTM (gate order i, f, g, o).

    LSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
         bidirectional=False, *, dtype=np.float32, seed=None)

    ``seed`` seeds the initialisation and the stream of dropout masks; ``init`` picks the
    scheme: "torch" (default, uniform ±1/√hidden_size) or "keras" (Glorot-uniform w_x,
    orthogonal w_h, forget-gate bias 1). ``merge`` says how a bidirectional layer combines its
    directions: "concat" (PyTorch's [forward | reverse], 2H features) or "sum" (forward +
    reverse, H features; each layer's output, and so the next layer's input). See the module docstring for the parameter names and shapes.

    Cell variants (keyword-only, the options of :func:`lstmcore.forward`; the defaults are
    the plain cell): ``activations``, ``activation_alpha``, ``activation_beta``, ``clip``,
    ``input_forget``, ``forget_gate``, ``zoneout`` ((z_h, z_c) or one probability), and
    with parameters of their own ``peepholes=True`` ((3, H) per layer and direction),
    ``proj_size=P`` (PyTorch's LSTMP: w_proj (H, P), h is P wide) and ``layer_norm=True``
    (six gains and biases).
    """

    _family = "lstm"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, *, dtype=np.float32, seed=None, init="torch",
                 merge="concat", activations=None, activation_alpha=None, activation_beta=None, clip=None,
                 peepholes=False, input_forget=False, forget_gate=True, proj_size=0, layer_norm=False,
                 zoneout=None, reverse=False, compute_dtype=None):
        self._setup(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, dtype, seed,
                    cell="lstm", init=init, merge=merge, activations=activations,
                    activation_alpha=activation_alpha, activation_beta=activation_beta, clip=clip,
                    peepholes=peepholes, input_forget=input_forget, forget_gate=forget_gate, proj_size=proj_size,
                    layer_norm=layer_norm, zoneout=zoneout, reverse=reverse, compute_dtype=compute_dtype)


class GRU(_Recurrent):
    """A stack of GRU layers, the model of torch.nn.GRU (gate order r, z, n).

    GRU(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
        bidirectional=False, *, reset_after=True, dtype=np.float32, seed=None, init="torch")

    reset_after=True is PyTorch's cell; False applies the reset gate before the recurrent
    product (Cho et al. 2014, Keras reset_after=False, ONNX linear_before_reset=0).
    Cell variants: ``activations`` ([f, g]), ``activation_alpha``, ``activation_beta``, ``clip``
    as in :func:`lstmcore.forward`; the LSTM-only options are refused by name.
    """

    _family = "gru"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, *, reset_after=True, dtype=np.float32, seed=None,
                 init="torch", merge="concat", activations=None, activation_alpha=None, activation_beta=None,
                 clip=None, reverse=False, compute_dtype=None, **lstm_options):
        _refuse_lstm_options("gru", lstm_options)
        self._setup(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, dtype, seed,
                    cell="gru", reset_after=reset_after, init=init, merge=merge, activations=activations,
                    activation_alpha=activation_alpha, activation_beta=activation_beta, clip=clip, reverse=reverse,
                    compute_dtype=compute_dtype)


class RNN(_Recurrent):
    """A stack of Elman RNN layers, the model of torch.nn.RNN: h_t = act(x_t·w_x + b + h_{t-1}·w_h + b_h).

    RNN(input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
        dropout=0.0, bidirectional=False, *, dtype=np.float32, seed=None, init="torch", merge="concat")

    Cell variants: ``activations`` ([f], replacing the nonlinearity), ``activation_alpha``,
    ``activation_beta``, ``clip`` as in :func:`lstmcore.forward`; the LSTM-only options are
    refused by name.
    """

    _family = "rnn"

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, *, dtype=np.float32, seed=None, init="torch",
                 merge="concat", activations=None, activation_alpha=None, activation_beta=None, clip=None,
                 reverse=False, compute_dtype=None, **lstm_options):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
        _refuse_lstm_options("rnn", lstm_options)
        self._setup(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, dtype, seed,
                    cell="rnn_" + nonlinearity, nonlinearity=nonlinearity, init=init, merge=merge,
                    activations=activations, activation_alpha=activation_alpha, activation_beta=activation_beta,
                    clip=clip, reverse=reverse, compute_dtype=compute_dtype)


_CLASSES = {"lstm": LSTM, "gru": GRU, "rnn": RNN}
_VARIANT_KEYS = ("activations", "activation_alpha", "activation_beta", "clip") + _LSTM_OPTIONS + ("reverse",
                                                                                                 "compute_dtype")


def _make(family, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
          bidirectional=False, dtype=np.float32, reset_after=True, nonlinearity="tanh", seed=None, merge="concat",
          **variant):
    """A layer of a family ("lstm", "gru", "rnn"), its weights left for the caller to set.
    ``variant``: the cell-variant keywords of the constructors."""
    if family not in _CLASSES:
        raise ValueError(f"cell: expected 'lstm', 'gru' or 'rnn', got {family!r}")
    kw = dict(num_layers=num_layers, bias=bias, batch_first=batch_first, dropout=dropout,
              bidirectional=bidirectional, dtype=dtype, seed=seed, merge=merge, **variant)
    if family == "gru":
        kw["reset_after"] = reset_after
    if family == "rnn":
        kw["nonlinearity"] = nonlinearity
    return _CLASSES[family](input_size, hidden_size, **kw)


def from_config(config, params):
    """A layer from a ``config()`` dict and its parameters (what ``save`` stores), checked: the
    names, shapes and dtypes of ``params`` must be the configuration's."""
    family = _formats.FAMILY_OF_CELL.get(config.get("cell"))
    if family is None:
        raise ValueError(f"config: unknown cell {config.get('cell')!r}")
    layer = _make(family, config["input_size"], config["hidden_size"], config["num_layers"], config["bias"],
                  config["batch_first"], config["dropout"], config["bidirectional"], np.dtype(config["dtype"]),
                  config.get("reset_after", True), config.get("nonlinearity", "tanh"),
                  merge=config.get("merge", "concat"), **{k: config[k] for k in _VARIANT_KEYS if k in config})
    missing = sorted(set(layer.param_names()) - set(params))
    if missing:
        raise ValueError(f"params: missing {missing}")
    layer.params = dict(params)
    layer._weights()
    return layer


def load(path):
    """Reads a layer written by ``layer.save(path)``; checks the names and shapes of the weights."""
    if isinstance(path, (str, os.PathLike)) and not os.path.exists(path) and os.path.exists(str(path) + ".npz"):
        path = str(path) + ".npz"
    with np.load(path, allow_pickle=False) as f:
        if "__config__" not in f.files:
            raise ValueError(f"{path}: not an lstmcore layer file (no __config__ entry)")
        cfg = json.loads(str(f["__config__"][()]))
        arrays = {name: f[name] for name in f.files if name != "__config__"}
    if cfg.get("format") != _FORMAT:
        raise ValueError(f"{path}: not an lstmcore layer file (format {cfg.get('format')!r})")
    if cfg.get("version", 0) > _FORMAT_VERSION:
        raise ValueError(f"{path}: written by a newer lstmcore (format version {cfg['version']})")
    family = {"lstm": "lstm", "gru": "gru", "rnn_tanh": "rnn", "rnn_relu": "rnn"}.get(cfg.get("cell"))
    if family is None:
        raise ValueError(f"{path}: unknown cell {cfg.get('cell')!r}")
    layer = _make(family, cfg["input_size"], cfg["hidden_size"], cfg["num_layers"], cfg["bias"],
                  cfg["batch_first"], cfg["dropout"], cfg["bidirectional"], np.dtype(cfg["dtype"]),
                  cfg.get("reset_after", True), cfg.get("nonlinearity", "tanh"), merge=cfg.get("merge", "concat"),
                  **{name: cfg[name] for name in _VARIANT_KEYS if name in cfg})
    want = layer.param_names()
    if sorted(arrays) != sorted(want):
        missing = sorted(set(want) - set(arrays))
        extra = sorted(set(arrays) - set(want))
        raise ValueError(f"{path}: the weights do not match the configuration (missing {missing}, "
                         f"unexpected {extra})")
    for name in want:
        a = arrays[name]
        if a.shape != layer.param_shape(name):
            raise ValueError(f"{path}: {name}: expected shape {layer.param_shape(name)}, got {a.shape}")
        if a.dtype != layer.dtype:
            raise ValueError(f"{path}: {name}: expected dtype {layer.dtype}, got {a.dtype}")
        layer.params[name] = np.ascontiguousarray(a)
    return layer
