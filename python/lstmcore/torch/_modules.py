"""The modules: LSTM, GRU, RNN (stacks of layers and directions) and LSTMCell, GRUCell, RNNCell.

Each mirrors its torch.nn namesake (arguments, parameters, state_dict, forward signature and
results, errors) and runs every layer and direction as one lstmcore call (see _ops); the glue
between layers (concatenating or summing directions, dropout) is torch's.
"""
from __future__ import annotations

import math
import numbers
import warnings

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

import lstmcore

from .. import _core
from . import _ops
from ._ops import GATES, Config

_FLOAT_DTYPES = (torch.float32, torch.float64)
_MODES = {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn_tanh", "RNN_RELU": "rnn_relu"}
_LN_NAMES = ("ln_weight_ih", "ln_bias_ih", "ln_weight_hh", "ln_bias_hh", "ln_weight_c", "ln_bias_c")


# ------------------------------------------------------------------------------------------
# the cell-variant keywords


def _variant_options(cell, activations, activation_alpha, activation_beta, clip, input_forget, forget_gate,
                     zoneout):
    """The cell-variant keywords of lstmcore.forward as (name, value) pairs (only those that differ
    from the plain cell), checked by lstmcore on a one-step call (ValueError naming the option)."""
    opts = []
    if activations is not None:
        if isinstance(activations, str):
            raise ValueError(f"activations: expected a sequence of names, got {activations!r}")
        opts.append(("activations", tuple(str(a) for a in activations)))
    for name, v in (("activation_alpha", activation_alpha), ("activation_beta", activation_beta)):
        if v is not None:
            if isinstance(v, (str, numbers.Number)):
                raise ValueError(f"{name}: expected one entry per activation (None for the default), got {v!r}")
            opts.append((name, tuple(None if a is None else float(a) for a in v)))
    if clip is not None:
        opts.append(("clip", clip))
    if input_forget:
        opts.append(("input_forget", True))
    if not forget_gate:
        opts.append(("forget_gate", False))
    if zoneout is not None:
        z = (zoneout, zoneout) if isinstance(zoneout, numbers.Number) else tuple(zoneout)
        if z != (0, 0):
            opts.append(("zoneout", tuple(float(v) for v in z) if len(z) == 2 else z))
    return tuple(opts)


def _check_variant(cell, reset_after, options, peepholes, layer_norm, proj_size):
    """Runs the options through lstmcore.forward on one step, so bad ones fail at construction."""
    H, P = 2, (1 if proj_size else 0)
    G = GATES[cell]
    z = np.zeros
    lstmcore.forward(z((1, 1, 1)), z((1, G * H)), z((P or H, G * H)), cell=cell, reset_after=reset_after,
                     peepholes=z((3, H)) if peepholes else None, w_proj=z((H, P)) if P else None,
                     layer_norm=(z(G * H), z(G * H), z(G * H), z(G * H), z(H), z(H)) if layer_norm else None,
                     training=True, seed=0, **dict(options))


def _lstm_only(cell, **given):
    for name, used in given.items():
        if used and cell != "lstm":
            raise ValueError(f"{name}: the {cell} cell has no such option (it is an LSTM option)")


def _set_variant(module, cell, proj_size, activations, activation_alpha, activation_beta, clip, reset_after,
                 peepholes, layer_norm, input_forget, forget_gate, zoneout, check=True):
    """Checks the cell-variant keywords (ValueError naming the option) and keeps them on the module."""
    _lstm_only(cell, peepholes=peepholes, layer_norm=layer_norm, input_forget=input_forget,
               forget_gate=not forget_gate, zoneout=zoneout is not None)
    if cell != "gru" and reset_after is not True:
        raise ValueError(f"reset_after: the {cell} cell has no such option (it is a GRU option)")
    module._cell = cell
    module.reset_after = bool(reset_after)
    module.peepholes = bool(peepholes)
    module.layer_norm = bool(layer_norm)
    module._options = _variant_options(cell, activations, activation_alpha, activation_beta, clip, input_forget,
                                       forget_gate, zoneout)
    if check:
        _check_variant(cell, reset_after, module._options, peepholes, layer_norm, proj_size)


def _variant_repr(module):
    parts = []
    for name, value in module._options:
        parts.append(f"{name}={value!r}")
    for name in ("peepholes", "layer_norm"):
        if getattr(module, name, False):
            parts.append(f"{name}=True")
    if getattr(module, "reset_after", True) is not True:
        parts.append("reset_after=False")
    if getattr(module, "merge", "concat") != "concat":
        parts.append(f"merge={module.merge!r}")
    return "".join(", " + p for p in parts)


def _seed(grad_or_training, zoneout):
    """A zoneout seed from torch's generator (so torch.manual_seed decides the masks)."""
    if not (zoneout and grad_or_training):
        return None
    return torch.randint(0, 2**62, (), dtype=torch.int64)


def _needs_grad(x, hx, params):
    if not torch.is_grad_enabled():
        return False
    if x.requires_grad:
        return True
    for t in hx:
        if t is not None and t.requires_grad:
            return True
    for p in params:
        if p is not None and p.requires_grad:
            return True
    return False


def _step_in_place(cfg, x, h, c, params):
    """A plain cell's step without gradients on lstmcore::step_layer (the weights read where they
    lie, gate-major; no graph, no custom op): (h', c') (c' None for GRU / RNN) for a batched step,
    or None when it does not apply (compiling or tracing, autocast, not CPU, arrays the core
    cannot read as they are): the caller's path then runs it."""
    if (x.device.type != "cpu" or torch.compiler.is_compiling() or torch.jit.is_tracing()
            or torch.is_autocast_enabled("cpu")):
        return None
    try:
        arrays = [None if t is None else t.detach().numpy() for t in (x, h, c, *params[:4])]
    except (RuntimeError, TypeError):  # a tensor NumPy cannot see (conjugated, sparse, a subclass, ...)
        return None
    xa, ha, ca, w_x, w_h, b, b_h = arrays
    out = _core.layer_step(cfg.cell, cfg.reset_after, xa, [(w_x, w_h, b, b_h)], None if ha is None else ha[None],
                           None if ca is None else ca[None], True)
    if out is None:
        return None
    _, h_n, c_n = out
    return torch.from_numpy(h_n[0]), None if c_n is None else torch.from_numpy(c_n[0])


def _autocast(x, dtype):
    """Under torch.autocast, inputs of another float dtype are cast to the weights' (lstmcore computes
    in float32 or float64)."""
    if x is not None and x.dtype != dtype and torch.is_autocast_enabled(x.device.type):
        return x.to(dtype)
    return x


_ZONEOUT_EVAL = ("zoneout: no gradients in eval() mode (lstmcore's training pass, which backward needs, draws "
                 "zoneout masks; eval() uses their expectation): train the module in train() mode")


def _refusing_anchor(zoneout, grad, training, x, states, params):
    """With zoneout in eval() mode and gradients wanted: a tensor that requires grad, to which the
    results are attached by _RefuseBackward (a backward through them is refused); else None."""
    if not (zoneout and grad and not training):
        return None
    for t in (x, *states, *(p for ps in params for p in ps)):
        if t is not None and t.requires_grad:
            return t
    return None


class _RefuseBackward(torch.autograd.Function):
    """The value of ``t``, in the graph of ``anchor``; its backward raises (zoneout in eval mode)."""

    @staticmethod
    def forward(ctx, anchor, t):
        return t.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError(_ZONEOUT_EVAL)


# ------------------------------------------------------------------------------------------
# LSTM, GRU, RNN


class RNNBase(nn.Module):
    """The common part of LSTM, GRU and RNN (torch.nn.RNNBase's arguments and parameters)."""

    __constants__ = ["mode", "input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
                     "bidirectional", "proj_size"]

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, device=None, dtype=None, *, activations=None,
                 activation_alpha=None, activation_beta=None, clip=None, merge="concat", reset_after=True,
                 peepholes=False, layer_norm=False, input_forget=False, forget_gate=True, zoneout=None):
        factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__()
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        num_directions = 2 if bidirectional else 1
        # torch.nn.RNNBase's checks, messages and exception types
        if not isinstance(dropout, numbers.Number) or not 0 <= dropout <= 1 or isinstance(dropout, bool):
            raise ValueError("dropout should be a number in range [0, 1] representing the probability of an "
                             "element being zeroed")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
                          f"expects num_layers greater than 1, but got dropout={dropout} and "
                          f"num_layers={num_layers}", stacklevel=3)
        for name, value, kind in (("bias", bias, bool), ("batch_first", batch_first, bool),
                                  ("input_size", input_size, int), ("hidden_size", hidden_size, int)):
            if not isinstance(value, kind):
                raise TypeError(f"{name} should be of type {kind.__name__}, got: {type(value).__name__}")
        if input_size <= 0:
            raise ValueError("input_size must be greater than zero")
        if hidden_size <= 0:
            raise ValueError("hidden_size must be greater than zero")
        if num_layers <= 0:
            raise ValueError("num_layers must be greater than zero")
        if proj_size < 0:
            raise ValueError("proj_size should be a positive integer or zero to disable projections")
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        if mode not in _MODES:
            raise ValueError("Unrecognized RNN mode: " + mode)
        # lstmcore's options
        cell = _MODES[mode]
        if merge not in ("concat", "sum"):
            raise ValueError(f"merge: expected 'concat' or 'sum', got {merge!r}")
        self.merge = merge
        _set_variant(self, cell, proj_size, activations, activation_alpha, activation_beta, clip, reset_after,
                     peepholes, layer_norm, input_forget, forget_gate, zoneout)
        self._make_configs()

        gate_size = GATES[cell] * hidden_size
        real_hidden_size = proj_size if proj_size > 0 else hidden_size
        out_size = real_hidden_size * (num_directions if merge == "concat" else 1)
        self._flat_weights_names = []
        self._all_weights = []
        self._slots = []  # per layer and direction: the parameter name of each of _ops.SLOTS, or None
        extras = []
        for layer in range(num_layers):
            for direction in range(num_directions):
                suffix = "_reverse" if direction == 1 else ""
                layer_input_size = input_size if layer == 0 else out_size
                shapes = {"weight_ih": (gate_size, layer_input_size), "weight_hh": (gate_size, real_hidden_size)}
                if bias:
                    shapes.update(bias_ih=(gate_size,), bias_hh=(gate_size,))
                if proj_size > 0:
                    shapes["weight_hr"] = (proj_size, hidden_size)
                names = []
                for kind, shape in shapes.items():
                    name = f"{kind}_l{layer}{suffix}"
                    setattr(self, name, nn.Parameter(torch.empty(shape, **factory_kwargs)))
                    names.append(name)
                self._flat_weights_names.extend(names)
                own = {}
                if peepholes:
                    own["weight_ch"] = (3, hidden_size)
                if layer_norm:
                    own.update(zip(_LN_NAMES, [(gate_size,)] * 4 + [(hidden_size,)] * 2))
                own_names = [f"{kind}_l{layer}{suffix}" for kind in own]
                extras.append(list(zip(own_names, own.values())))
                self._all_weights.append(names + own_names)
                slot = {**{k: f"{k}_l{layer}{suffix}" for k in shapes}, **{k: f"{k}_l{layer}{suffix}" for k in own}}
                self._slots.append(tuple(slot.get(s) for s in _ops.SLOTS))
        for group in extras:  # after torch's own, so torch.manual_seed gives torch's initial weights
            for name, shape in group:
                setattr(self, name, nn.Parameter(torch.empty(shape, **factory_kwargs)))
        self.reset_parameters()

    # --- torch.nn.RNNBase's API

    def reset_parameters(self) -> None:
        """torch's initialisation, uniform in ±1/√hidden_size, in torch's order; then the
        peepholes likewise and the layer-norm gains 1, biases 0."""
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        with torch.no_grad():
            for name in self._flat_weights_names:
                nn.init.uniform_(getattr(self, name), -stdv, stdv)
            for names in self._all_weights:
                for name in names[len(names) - self._own_count():]:
                    p = getattr(self, name)
                    if name.startswith("weight_ch"):
                        nn.init.uniform_(p, -stdv, stdv)
                    elif name.startswith("ln_weight"):
                        nn.init.ones_(p)
                    else:
                        nn.init.zeros_(p)

    def _own_count(self):
        return (1 if self.peepholes else 0) + (6 if self.layer_norm else 0)

    @property
    def _flat_weights(self):
        return [getattr(self, n) for n in self._flat_weights_names]

    @property
    def all_weights(self):
        return [[getattr(self, n) for n in names] for names in self._all_weights]

    def flatten_parameters(self) -> None:
        """A no-op (torch's packs cuDNN weights; lstmcore reads the parameters as they are)."""

    def extra_repr(self) -> str:
        s = "{input_size}, {hidden_size}"
        if self.proj_size != 0:
            s += ", proj_size={proj_size}"
        if self.num_layers != 1:
            s += ", num_layers={num_layers}"
        if self.bias is not True:
            s += ", bias={bias}"
        if self.batch_first is not False:
            s += ", batch_first={batch_first}"
        if self.dropout != 0:
            s += ", dropout={dropout}"
        if self.bidirectional is not False:
            s += ", bidirectional={bidirectional}"
        return s.format(**self.__dict__) + _variant_repr(self)

    def __setstate__(self, state):
        super().__setstate__(state)
        self._make_configs()

    def _make_configs(self):
        """The Config of each direction and layout, made here (torch.compile cannot trace their making)."""
        self._configs = {(d, bf, c): Config(self._cell, self.reset_after, d == 1, bf, self._options, c)
                         for d in (0, 1) for bf in (False, True) for c in (None, "bfloat16")}

    # --- forward

    def _config(self, direction, packed=False, compute=None):
        # packed input runs time-major
        return self._configs[direction, bool(self.batch_first) and not packed, compute]

    def _bfloat16_call(self, x, dtype):
        """Whether this call computes its products in bfloat16 (lstmcore.forward's compute_dtype):
        under torch.autocast("cpu", dtype=torch.bfloat16), or on a bfloat16 model, for host tensors
        of a plain cell (the cell variants compute in float32)."""
        if x.device.type != "cpu" or self._options:
            return False
        autocast = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        return autocast and dtype == torch.float32 or dtype == torch.bfloat16

    def _params(self, j):
        p = self._parameters
        return [None if n is None else p[n] for n in self._slots[j]]

    def _check_input(self, x, packed):
        dtype = getattr(self, self._flat_weights_names[0]).dtype
        if x.dtype != dtype and not torch.is_autocast_enabled(x.device.type):
            raise ValueError(f"input: dtype {x.dtype} does not match the weights' dtype {dtype} (RNN input dtype "
                             f"({x.dtype}) does not match weight dtype ({dtype})); convert the input: "
                             f"input.to({dtype}), or the model: model.to({x.dtype})")
        expected = 2 if packed else 3
        if x.dim() != expected:
            raise RuntimeError(f"input must have {expected} dimensions, got {x.dim()}")
        if self.input_size != x.size(-1):
            raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected {self.input_size}, "
                               f"got {x.size(-1)}")
        if dtype not in _FLOAT_DTYPES and not (dtype == torch.bfloat16 and self._bfloat16_call(x, dtype)):
            raise TypeError(f"input: lstmcore computes in float32 or float64 (bfloat16: plain cells on the CPU), "
                            f"but the weights are {dtype}; convert the model: model.float() or model.double()")

    def _check_hidden(self, t, name, want):
        if t.dim() != 3 or tuple(t.shape) != want:
            raise RuntimeError(f"{name}: expected hidden size {want}, got {list(t.shape)} "
                               f"(Expected {name.replace('hx', 'hidden')} size {want}, got {list(t.shape)})")

    def forward(self, input, hx=None):
        lstm = self._cell == "lstm"
        D = 2 if self.bidirectional else 1
        L = self.num_layers
        R = self.proj_size if self.proj_size > 0 else self.hidden_size
        packed = isinstance(input, PackedSequence)
        lengths = None
        batched = True
        batch_dim = 0 if self.batch_first else 1
        if packed:
            self._check_input(input.data, True)
            x, lengths, order = _unpack(input)  # time-major, whatever batch_first says
            batch_dim = 1
        else:
            if not isinstance(input, Tensor):
                raise TypeError(f"input: expected a Tensor or a PackedSequence, got {type(input).__name__}")
            if input.dim() not in (2, 3):
                raise ValueError(f"input: {type(self).__name__} expects a 2-D (unbatched) or 3-D (batched) "
                                 f"tensor, got {input.dim()}-D ({type(self).__name__}: Expected input to be 2D "
                                 f"or 3D, got {input.dim()}D instead)")
            batched = input.dim() == 3
            x = input if batched else input.unsqueeze(batch_dim)
            self._check_input(x, False)
        B = x.size(batch_dim)
        if x.size(1 - batch_dim) == 0:
            raise RuntimeError("input: Expected sequence length to be larger than 0 in RNN")
        h0 = c0 = None
        if hx is not None:
            if lstm:
                if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                    raise TypeError(f"hx: LSTM expects a tuple (h_0, c_0), got {type(hx).__name__}"
                                    + (f" of length {len(hx)}" if isinstance(hx, (tuple, list)) else ""))
                h0, c0 = hx
                want_dim = 3 if batched else 2
                if h0.dim() != want_dim or c0.dim() != want_dim:
                    kind = "batched 3-D" if batched else "unbatched 2-D"
                    raise RuntimeError(f"hx: for {kind} input, hx and cx should also be {want_dim}-D but got "
                                       f"({h0.dim()}-D, {c0.dim()}-D) tensors")
                if not batched:
                    h0, c0 = h0.unsqueeze(1), c0.unsqueeze(1)
                self._check_hidden(h0, "hx[0]", (L * D, B, R))
                self._check_hidden(c0, "hx[1]", (L * D, B, self.hidden_size))
            else:
                if not isinstance(hx, Tensor):
                    raise TypeError(f"hx: expected a Tensor, got {type(hx).__name__}")
                if not packed:
                    want_dim = 3 if batched else 2
                    if hx.dim() != want_dim:
                        kind = "batched 3-D" if batched else "unbatched 2-D"
                        raise RuntimeError(f"hx: for {kind} input, hx should also be {want_dim}-D but got "
                                           f"{hx.dim()}-D tensor")
                h0 = hx if batched else hx.unsqueeze(1)
                self._check_hidden(h0, "hx", (L * D, B, R))
            dtype = x.dtype
            for name, t in (("hx[0]" if lstm else "hx", h0), ("hx[1]", c0)):
                if t is not None and t.dtype != dtype and not torch.is_autocast_enabled(x.device.type):
                    raise RuntimeError(f"{name}: dtype {t.dtype} does not match the input's {dtype}")
        if B == 0:
            return self._empty_result(input, x, lstm, L * D, R, batched, batch_dim, h0)
        w0 = getattr(self, self._flat_weights_names[0])
        compute = "bfloat16" if self._bfloat16_call(x, w0.dtype) else None
        all_params = [self._params(j) for j in range(L * D)]
        if compute:  # the core runs float32 in and out; a bfloat16 model's tensors convert (autograd too)
            x, h0, c0 = (None if t is None else t.float() for t in (x, h0, c0))
            all_params = [[None if p is None else p.float() for p in ps] for ps in all_params]
        else:
            x = _autocast(x, w0.dtype)
            h0, c0 = _autocast(h0, w0.dtype), _autocast(c0, w0.dtype)

        grad = _needs_grad(x, (h0, c0), [p for ps in all_params for p in ps])
        zoneout = self._config(0, packed).zoneout
        anchor = _refusing_anchor(zoneout, grad, self.training, x, (h0, c0), all_params)
        grad = grad and anchor is None
        core_training = grad or (zoneout and self.training)
        h_n, c_n = [], []
        layer_input = x
        for k in range(L):
            outs = []
            for d in range(D):
                j = k * D + d
                y, h, c = _ops.layer(self._config(d, packed, compute), layer_input, None if h0 is None else h0[j],
                                     None if c0 is None else c0[j], all_params[j], lengths,
                                     _seed(core_training, zoneout), grad, core_training)
                outs.append(y)
                h_n.append(h)
                c_n.append(c)
            if D == 1:
                layer_input = outs[0]
            elif self.merge == "sum":
                layer_input = outs[0] + outs[1]
            else:
                layer_input = torch.cat(outs, dim=2)
            if self.dropout > 0 and self.training and k < L - 1:
                layer_input = nn.functional.dropout(layer_input, self.dropout, True)
        output = layer_input
        hidden = torch.stack(h_n, 0)
        cell = torch.stack(c_n, 0) if lstm else None
        if compute and (w0.dtype == torch.bfloat16 or self._cell != "gru"):
            # bfloat16 out, as torch gives: a bfloat16 model; under autocast torch.nn.LSTM and RNN
            # (torch.nn.GRU returns float32 there)
            output, hidden = output.to(torch.bfloat16), hidden.to(torch.bfloat16)
            cell = None if cell is None else cell.to(torch.bfloat16)
        if anchor is not None:
            output, hidden, cell = (None if t is None else _RefuseBackward.apply(anchor, t)
                                    for t in (output, hidden, cell))
        if packed:
            output = _pack_like(output, input, order)
        elif not batched:
            output = output.squeeze(batch_dim)
            hidden = hidden.squeeze(1)
            cell = cell.squeeze(1) if lstm else None
        return output, ((hidden, cell) if lstm else hidden)

    def _empty_result(self, input, x, lstm, LD, R, batched, batch_dim, h0):
        """A batch of no sequences (torch accepts B = 0; the core needs B >= 1)."""
        T = x.size(1) if self.batch_first else x.size(0)
        O = R * (2 if self.bidirectional and self.merge == "concat" else 1)
        shape = (0, T, O) if self.batch_first else (T, 0, O)
        output = x.new_zeros(shape) + 0 * x.sum()  # keeps the graph to x
        hidden = x.new_zeros((LD, 0, R))
        cell = x.new_zeros((LD, 0, self.hidden_size)) if lstm else None
        if not batched:
            output, hidden = output.squeeze(batch_dim), hidden.squeeze(1)
            cell = cell.squeeze(1) if lstm else None
        return output, ((hidden, cell) if lstm else hidden)


def _unpack(packed):
    """A PackedSequence as (x, lengths, order): x (T, B, I) zero-padded, in the batch's own order;
    lengths (B,) int64 on the CPU; order: the rows of the time-major (T·B) grid of the sorted batch
    that the packed rows fill, in packed order. Tensor operations only (no Python loop over the
    data), so torch.compile traces them."""
    data, batch_sizes, sorted_indices, unsorted_indices = packed
    T = batch_sizes.size(0)
    B = sorted_indices.size(0) if sorted_indices is not None else int(batch_sizes[0])
    filled = torch.arange(B, device=batch_sizes.device)[None, :] < batch_sizes[:, None]  # (T, B), sorted batch
    order = torch.argsort((~filled).flatten().to(torch.uint8), stable=True)[:data.size(0)].to(data.device)
    x = data.new_zeros((T * B, data.size(1))).index_copy(0, order, data).view(T, B, data.size(1))
    lengths = filled.sum(0)
    if unsorted_indices is not None:
        x = x.index_select(1, unsorted_indices)
        lengths = lengths.index_select(0, unsorted_indices.to(lengths.device))
    return x, lengths.to(device="cpu", dtype=torch.int64), order


def _pack_like(padded, like, order):
    """The time-major padded output (batch in its own order) as a PackedSequence laid out as ``like``."""
    if like.sorted_indices is not None:
        padded = padded.index_select(1, like.sorted_indices)
    data = padded.reshape(-1, padded.size(2)).index_select(0, order)
    return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)


class LSTM(RNNBase):
    """torch.nn.LSTM on lstmcore: the same arguments, parameters, state_dict, inputs and results.

        LSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
             bidirectional=False, proj_size=0, device=None, dtype=None, *,
             peepholes=False, layer_norm=False, input_forget=False, forget_gate=True, zoneout=None,
             activations=None, activation_alpha=None, activation_beta=None, clip=None, merge="concat")

    The keyword-only arguments are lstmcore's cell variants (see lstmcore.forward), the same in
    every layer and direction; those with parameters add, per layer k and direction:
    ``weight_ch_l{k}`` (3, hidden_size): the peepholes p_i, p_f, p_o (``peepholes=True``);
    ``ln_weight_ih_l{k}``, ``ln_bias_ih_l{k}``, ``ln_weight_hh_l{k}``, ``ln_bias_hh_l{k}``
    (4·hidden_size) and ``ln_weight_c_l{k}``, ``ln_bias_c_l{k}`` (hidden_size): the gains and
    biases of layer norm (``layer_norm=True``); ``_reverse`` for the reverse direction.
    ``zoneout`` is random in train() (masks from torch's generator) and its expectation in eval().
    ``merge="sum"`` adds the two directions' outputs instead of concatenating them.
    """

    def __init__(self, *args, **kwargs):
        super().__init__("LSTM", *args, **kwargs)


class GRU(RNNBase):
    """torch.nn.GRU on lstmcore (same arguments, parameters, inputs and results), plus the
    keywords ``reset_after=True`` (False: the reset gate before the recurrent product, Cho et al.
    2014), ``activations``, ``activation_alpha``, ``activation_beta``, ``clip`` and ``merge``."""

    def __init__(self, *args, **kwargs):
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        super().__init__("GRU", *args, **kwargs)


class RNN(RNNBase):
    """torch.nn.RNN on lstmcore (same arguments, ``nonlinearity`` "tanh" or "relu", parameters,
    inputs and results), plus ``activations``, ``activation_alpha``, ``activation_beta``, ``clip``
    and ``merge``."""

    def __init__(self, *args, **kwargs):
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if len(args) > 3:
            self.nonlinearity = args[3]
            args = args[:3] + args[4:]
        else:
            self.nonlinearity = kwargs.pop("nonlinearity", "tanh")
        if self.nonlinearity == "tanh":
            mode = "RNN_TANH"
        elif self.nonlinearity == "relu":
            mode = "RNN_RELU"
        else:
            raise ValueError(f"Unknown nonlinearity '{self.nonlinearity}'. Select from 'tanh' or 'relu'.")
        super().__init__(mode, *args, **kwargs)


# ------------------------------------------------------------------------------------------
# the cells


class RNNCellBase(nn.Module):
    """The common part of LSTMCell, GRUCell and RNNCell: one step as a one-step lstmcore call."""

    __constants__ = ["input_size", "hidden_size", "bias"]

    def __init__(self, cell, input_size, hidden_size, bias, num_chunks, device=None, dtype=None, *,
                 activations=None, activation_alpha=None, activation_beta=None, clip=None, reset_after=True,
                 peepholes=False, layer_norm=False, input_forget=False, forget_gate=True, zoneout=None):
        factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        _set_variant(self, cell, 0, activations, activation_alpha, activation_beta, clip, reset_after, peepholes,
                     layer_norm, input_forget, forget_gate, zoneout, check=input_size > 0 and hidden_size > 0)
        self._cfg = Config(cell, self.reset_after, False, False, self._options)
        G = num_chunks * hidden_size
        self.weight_ih = nn.Parameter(torch.empty((G, input_size), **factory_kwargs))
        self.weight_hh = nn.Parameter(torch.empty((G, hidden_size), **factory_kwargs))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(G, **factory_kwargs))
            self.bias_hh = nn.Parameter(torch.empty(G, **factory_kwargs))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        if peepholes:
            self.weight_ch = nn.Parameter(torch.empty((3, hidden_size), **factory_kwargs))
        if layer_norm:
            for name, n in zip(_LN_NAMES, (G, G, G, G, hidden_size, hidden_size)):
                setattr(self, name, nn.Parameter(torch.empty(n, **factory_kwargs)))
        self._plain_step = not (self._options or peepholes or layer_norm)  # _step_in_place can run it
        self._slots = tuple(s if (s in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                                  or (s == "weight_ch" and peepholes) or (s.startswith("ln_") and layer_norm))
                            else None for s in _ops.SLOTS)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's initialisation (uniform in ±1/√hidden_size, in torch's order); the peepholes
        likewise, the layer-norm gains 1 and biases 0."""
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_ch"):
                p = getattr(self, name, None)
                if p is not None:
                    nn.init.uniform_(p, -stdv, stdv)
            if self.layer_norm:
                for name in _LN_NAMES:
                    (nn.init.ones_ if "weight" in name else nn.init.zeros_)(getattr(self, name))

    def extra_repr(self) -> str:
        s = "{input_size}, {hidden_size}"
        if "bias" in self.__dict__ and self.bias is not True:
            s += ", bias={bias}"
        if "nonlinearity" in self.__dict__ and self.nonlinearity != "tanh":
            s += ", nonlinearity={nonlinearity}"
        return s.format(**self.__dict__) + _variant_repr(self)

    def _step(self, name, input, h, c):
        """(h', c') for a batched or unbatched step; c None for GRU / RNN."""
        if not isinstance(input, Tensor):
            raise TypeError(f"input: expected a Tensor, got {type(input).__name__}")
        d = input.dim()
        if d != 2:
            if d != 1:
                raise ValueError(f"input: {name} expects a 1-D (unbatched) or 2-D (batched) tensor, got {d}-D "
                                 f"({name}: Expected input to be 1D or 2D, got {d}D instead)")
            input = input.unsqueeze(0)
        B = input.size(0)
        if input.size(1) != self.input_size:
            raise RuntimeError(f"input: input has inconsistent input_size: got {input.size(1)} expected "
                               f"{self.input_size}")
        p = self._parameters
        params = [None if s is None else p[s] for s in self._slots]
        dtype = params[0].dtype
        for k, t in enumerate((h, c)):
            if t is None:
                continue
            if d == 1:
                t = t.unsqueeze(0)
            label = ("hx" if c is None else f"hx[{k}]")
            if t.dim() != 2 or t.size(0) != B:
                raise RuntimeError(f"{label}: Input batch size {B} doesn't match hidden{k} batch size "
                                   f"{t.size(0) if t.dim() else 1}")
            if t.size(1) != self.hidden_size:
                raise RuntimeError(f"{label}: hidden{k} has inconsistent hidden_size: got {t.size(1)}, expected "
                                   f"{self.hidden_size}")
            if t.dtype != input.dtype:
                raise RuntimeError(f"{label}: dtype {t.dtype} does not match the input's {input.dtype}")
            if k == 0:
                h = t
            else:
                c = t
        if input.dtype != dtype:
            if not torch.is_autocast_enabled(input.device.type):
                raise RuntimeError(f"input: dtype {input.dtype} does not match the weights' {dtype}")
            input, h, c = _autocast(input, dtype), _autocast(h, dtype), _autocast(c, dtype)
        if dtype not in _FLOAT_DTYPES:
            raise TypeError(f"input: lstmcore computes in float32 or float64, but the weights are {dtype}; "
                            f"convert the module: .float() or .double()")
        if B == 0 or self.input_size == 0:
            return self._trivial_step(input, h, c)
        cfg = self._cfg
        grad = _needs_grad(input, (h, c), params)
        if not grad and self._plain_step:
            out = _step_in_place(cfg, input, h, c, params)
            if out is not None:
                h_n, c_n = out
                return (h_n.squeeze(0), None if c_n is None else c_n.squeeze(0)) if d == 1 else out
        zoneout = cfg.zoneout
        anchor = _refusing_anchor(zoneout, grad, self.training, input, (h, c), [params])
        grad = grad and anchor is None
        training = grad or (zoneout and self.training)
        _, h_n, c_n = _ops.layer(cfg, input.unsqueeze(0), h, c, params, None,
                                 _seed(training, zoneout), grad, training)
        if anchor is not None:
            h_n, c_n = (None if t is None else _RefuseBackward.apply(anchor, t) for t in (h_n, c_n))
        if d == 1:
            h_n = h_n.squeeze(0)
            c_n = None if c_n is None else c_n.squeeze(0)
        return h_n, c_n

    def _trivial_step(self, input, h, c):
        """A batch of no rows (torch accepts it; the core needs B >= 1), or input_size 0 (refused)."""
        if self.input_size == 0:
            raise ValueError("input: input_size 0 is not supported by lstmcore (the core needs I >= 1)")
        link = 0 * input.sum()  # keeps the results in the graph of the input
        out = input.new_zeros((0, self.hidden_size)) + link
        return out, (out.clone() if self._cell == "lstm" else None)


class LSTMCell(RNNCellBase):
    """torch.nn.LSTMCell on lstmcore: ``LSTMCell(input_size, hidden_size, bias=True, device=None,
    dtype=None)``, ``cell(input, (h, c)) -> (h', c')``, plus the LSTM keywords of lstmcore.torch.LSTM
    (peepholes: ``weight_ch`` (3, hidden_size); layer_norm: ``ln_weight_ih``, ``ln_bias_ih``, ...)."""

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None, **variants):
        super().__init__("lstm", input_size, hidden_size, bias, 4, device, dtype, **variants)

    def forward(self, input, hx=None):
        if hx is None:
            h = c = None
        else:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(f"hx: LSTMCell expects a tuple (h, c), got {type(hx).__name__}")
            h, c = hx
            for k, t in enumerate(hx):
                if t.dim() not in (1, 2):
                    raise ValueError(f"hx[{k}]: expected 1-D or 2-D, got {t.dim()}-D (LSTMCell: Expected "
                                     f"hx[{k}] to be 1D or 2D, got {t.dim()}D instead)")
        return self._step("LSTMCell", input, h, c)


class GRUCell(RNNCellBase):
    """torch.nn.GRUCell on lstmcore: ``GRUCell(input_size, hidden_size, bias=True, device=None,
    dtype=None)``, ``cell(input, h) -> h'``, plus ``reset_after``, ``activations``,
    ``activation_alpha``, ``activation_beta``, ``clip``."""

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None, **variants):
        super().__init__("gru", input_size, hidden_size, bias, 3, device, dtype, **variants)

    def forward(self, input, hx=None):
        if hx is not None and hx.dim() not in (1, 2):
            raise ValueError(f"hx: expected 1-D or 2-D, got {hx.dim()}-D (GRUCell: Expected hidden to be 1D "
                             f"or 2D, got {hx.dim()}D instead)")
        return self._step("GRUCell", input, hx, None)[0]


class RNNCell(RNNCellBase):
    """torch.nn.RNNCell on lstmcore: ``RNNCell(input_size, hidden_size, bias=True,
    nonlinearity="tanh", device=None, dtype=None)``, ``cell(input, h) -> h'``, plus ``activations``,
    ``activation_alpha``, ``activation_beta``, ``clip``."""

    __constants__ = ["input_size", "hidden_size", "bias", "nonlinearity"]

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None, dtype=None,
                 **variants):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity: unknown nonlinearity {nonlinearity!r}; select 'tanh' or 'relu'")
        super().__init__("rnn_" + nonlinearity, input_size, hidden_size, bias, 1, device, dtype, **variants)
        self.nonlinearity = nonlinearity

    def forward(self, input, hx=None):
        if hx is not None and hx.dim() not in (1, 2):
            raise ValueError(f"hx: expected 1-D or 2-D, got {hx.dim()}-D (RNNCell: Expected hidden to be 1D "
                             f"or 2D, got {hx.dim()}D instead)")
        return self._step("RNNCell", input, hx, None)[0]
