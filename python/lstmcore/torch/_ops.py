"""One recurrent layer (one direction) through lstmcore, forward and backward, as torch sees it.

Two doors lead to the same two functions (``run_forward`` / ``run_backward``, which call
``lstmcore.forward`` / ``lstmcore.backward``):

* eagerly, a ``torch.autograd.Function`` that keeps lstmcore's training cache in its context
  (a few microseconds per call);
* under torch.compile, torch.export and tracing, the custom operators ``lstmcore::layer_forward``
  and ``lstmcore::layer_backward`` (torch.library, with fake implementations and autograd), whose
  backward rebuilds the cache from the buffer the forward returned. They are always registered,
  so a program exported with them loads wherever lstmcore.torch is imported.

Neither recomputes anything in backward: the core's backward reads the gates and states its
forward kept. A cache serves one backward (it is overwritten with gate gradients); a second
backward through the same graph (retain_graph=True, gradcheck) runs the layer's forward again for
a new one (eagerly). The backward operator declares that it overwrites the buffer, so compiled
graphs stay correct whatever they do with it (inductor's refuse retain_graph=True altogether).
"""
from __future__ import annotations

import json
from typing import Optional

import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

import lstmcore

from . import _adapter

GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}

#: The parameters of one layer and direction, in the order the calls take them (None where absent):
#: torch's four (five with a projection), then the peepholes and the six layer-norm vectors.
SLOTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr", "weight_ch",
         "ln_weight_ih", "ln_bias_ih", "ln_weight_hh", "ln_bias_hh", "ln_weight_c", "ln_bias_c")
NSLOTS = len(SLOTS)


class Config:
    """What one layer call needs besides tensors: the cell, directions and layout, and the
    cell-variant keywords of lstmcore.forward (``options``: a tuple of (name, value) pairs)."""

    __slots__ = ("cell", "reset_after", "reverse", "batch_first", "options", "kwargs", "key", "zoneout", "compute")

    def __init__(self, cell, reset_after=True, reverse=False, batch_first=False, options=(), compute=None):
        self.cell, self.reset_after, self.reverse, self.batch_first = cell, bool(reset_after), bool(reverse), bool(
            batch_first)
        self.options = tuple(options)
        self.kwargs = dict(self.options)
        self.zoneout = self.kwargs.get("zoneout") is not None
        self.compute = compute  # lstmcore.forward's compute_dtype: None or "bfloat16"
        self.key = json.dumps([cell, self.reset_after, self.reverse, self.batch_first, [list(o) for o in self.options],
                               compute])

    def __reduce__(self):
        return (config_from_key, (self.key,))

    def __eq__(self, other):
        return isinstance(other, Config) and other.key == self.key

    def __hash__(self):
        return hash(self.key)

    def __repr__(self):
        return f"Config({self.key})"


_KEYS = {}


def config_from_key(key):
    """The Config of a key (memoised: the custom operators receive the key)."""
    cfg = _KEYS.get(key)
    if cfg is None:
        cell, reset_after, reverse, batch_first, options, compute = json.loads(key)
        options = [(name, tuple(v) if isinstance(v, list) else v) for name, v in options]
        cfg = _KEYS[key] = Config(cell, reset_after, reverse, batch_first, options, compute)
    return cfg


# ------------------------------------------------------------------------------------------
# threads: torch's count unless lstmcore.set_num_threads was called

_threads = {"follow": True, "applied": None}


def _sync_threads():
    t = _threads
    if not t["follow"]:
        return
    current = lstmcore.get_num_threads()
    if t["applied"] is not None and current != t["applied"]:
        t["follow"] = False  # someone chose lstmcore's count: keep it
        return
    n = torch.get_num_threads()
    if n != current:
        lstmcore.set_num_threads(n)
    t["applied"] = n


# ------------------------------------------------------------------------------------------
# the two calls


def on_device(x):
    """True for tensors that take lstmcore's CUDA path (torch CUDA tensors; tests emulate it on the CPU)."""
    return x.is_cuda


def _np(t):
    return None if t is None else t.detach().numpy()


def _t(a):
    return None if a is None else (a if isinstance(a, Tensor) else torch.from_numpy(a))


def _layer_norm(params):
    return None if params[6] is None else tuple(params[6:12])


def run_forward(cfg, x, h0, c0, params, lengths, seed, training):
    """lstmcore.forward for one layer: (y, h_n, c_n, cache), torch tensors (c_n None for GRU/RNN,
    cache None unless training). ``params``: NSLOTS tensors or None, torch's layout."""
    _sync_threads()
    if on_device(x):  # contiguous: lstmcore._cuda reads some strided torch tensors as if they were not
        d = [None if t is None else t.detach().contiguous() for t in (x, h0, c0, *params)]
        x, h0, c0, p = d[0], d[1], d[2], d[3:]
        w_x, w_h, w_proj, layout = _adapter.core_weights(p[0], p[1], p[4])
        ln = _layer_norm(p)  # the variants' keywords too, so that lstmcore refuses what it cannot run there
        res = lstmcore.forward(x, w_x, w_h, p[2], p[3], h0, c0, cell=cfg.cell, reverse=cfg.reverse,
                               seq_lengths=lengths, batch_first=cfg.batch_first, training=training,
                               reset_after=cfg.reset_after, peepholes=p[5], w_proj=w_proj, layer_norm=ln,
                               **cfg.kwargs, **layout)
        return res.y, res.h_n, res.c_n, res.cache
    p = [None if t is None else t.detach().numpy() for t in params]
    w_x, w_h, w_proj, layout = _adapter.core_weights(p[0], p[1], p[4])
    res = lstmcore.forward(_np(x), w_x, w_h, p[2], p[3], _np(h0), _np(c0), cell=cfg.cell, reverse=cfg.reverse,
                           seq_lengths=_np(lengths), batch_first=cfg.batch_first, training=training,
                           reset_after=cfg.reset_after, peepholes=p[5], w_proj=w_proj, layer_norm=_layer_norm(p),
                           seed=None if seed is None else int(seed), compute_dtype=cfg.compute, **cfg.kwargs,
                           **layout)
    return _t(res.y), _t(res.h_n), _t(res.c_n), res.cache


def run_backward(cache, dy, dh_n, dc_n):
    """lstmcore.backward: [dx, dh0, dc0, then one gradient per slot of SLOTS] (torch tensors or None)."""
    _sync_threads()
    if isinstance(cache.buffer, Tensor):  # a device cache: gradients stay torch tensors
        g = lstmcore.backward(cache, *(None if t is None else t.detach().contiguous() for t in (dy, dh_n, dc_n)))
    else:
        g = lstmcore.backward(cache, _np(dy), _np(dh_n), _np(dc_n))
    dw_ih, dw_hh, dw_hr = g.dw_x, g.dw_h, g.dw_proj  # torch's layout (gate_major, _adapter.core_weights)
    ln = g.dlayer_norm if g.dlayer_norm is not None else (None,) * 6
    return [_t(g.dx), _t(g.dh0), _t(g.dc0), _t(dw_ih), _t(dw_hh), _t(g.db), _t(g.db_h), _t(dw_hr),
            _t(g.dpeepholes), *(_t(v) for v in ln)]


# ------------------------------------------------------------------------------------------
# eager: an autograd.Function that keeps the cache


class _Layer(torch.autograd.Function):
    """The cache of the forward serves the first backward as it is. A backward after that (the graph
    kept with retain_graph=True, or torch.autograd.gradcheck's repeated products) finds it consumed
    and runs the forward again on the saved inputs (same seed, same result) for a fresh cache."""

    @staticmethod
    def forward(ctx, cfg, lengths, seed, slots, x, h0, c0, *given):
        # only the parameters present travel as arguments (fewer for autograd to walk); `slots` says where
        params = [None] * NSLOTS
        for k, p in zip(slots, given):
            params[k] = p
        y, h_n, c_n, cache = run_forward(cfg, x, h0, c0, params, lengths, seed, True)
        ctx.cache, ctx.cfg, ctx.lengths, ctx.seed, ctx.slots = cache, cfg, lengths, seed, slots
        ctx.states = (h0 is not None, c0 is not None)
        ctx.save_for_backward(x, h0, c0, *given)
        ctx.set_materialize_grads(False)
        return y, h_n, c_n

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, dh_n, dc_n):
        x, h0, c0, *given = ctx.saved_tensors  # raises if an input was modified in place since forward
        cache, ctx.cache = ctx.cache, None
        if cache is None:  # a second backward through the same graph
            params = [None] * NSLOTS
            for k, p in zip(ctx.slots, given):
                params[k] = p
            cache = run_forward(ctx.cfg, x, h0, c0, params, ctx.lengths, ctx.seed, True)[3]
        g = run_backward(cache, dy, dh_n, dc_n)
        has_h0, has_c0 = ctx.states
        return (None, None, None, None, g[0], g[1] if has_h0 else None, g[2] if has_c0 else None,
                *(g[3 + k] for k in ctx.slots))


# ------------------------------------------------------------------------------------------
# torch.compile / torch.export / tracing: custom operators


# The parameters travel as twelve optional tensors (one per slot of SLOTS): torch.library's autograd
# does not take gradients for a list of optional tensors.
_P = Optional[Tensor]


@torch.library.custom_op("lstmcore::layer_forward", mutates_args=())
def layer_forward(x: Tensor, h0: _P, c0: _P, weight_ih: Tensor, weight_hh: Tensor, bias_ih: _P, bias_hh: _P,
                  weight_hr: _P, weight_ch: _P, ln_weight_ih: _P, ln_bias_ih: _P, ln_weight_hh: _P, ln_bias_hh: _P,
                  ln_weight_c: _P, ln_bias_c: _P, lengths: _P, seed: _P, config: str,
                  training: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One layer and direction: (y, h_n, c_n, cache buffer); c_n is empty for GRU / RNN and
    the buffer is empty unless ``training``. ``config``: a Config's key."""
    params = (weight_ih, weight_hh, bias_ih, bias_hh, weight_hr, weight_ch, ln_weight_ih, ln_bias_ih, ln_weight_hh,
              ln_bias_hh, ln_weight_c, ln_bias_c)
    cfg = config_from_key(config)
    y, h_n, c_n, cache = run_forward(cfg, x, h0, c0, params, lengths, seed, training)
    empty = x.new_empty(0)
    return y, h_n, (empty if c_n is None else c_n), (_adapter.as_cache_buffer(cache) if training else empty.clone())


def _sizes(cfg, x, params):
    G = GATES[cfg.cell]
    H = params[1].shape[0] // G
    R = params[4].shape[0] if params[4] is not None else H
    B, T = (x.shape[0], x.shape[1]) if cfg.batch_first else (x.shape[1], x.shape[0])
    return T, B, x.shape[2], H, R


@layer_forward.register_fake
def _layer_forward_fake(x, h0, c0, *rest):
    params, (lengths, seed, config, training) = rest[:NSLOTS], rest[NSLOTS:]
    cfg = config_from_key(config)
    T, B, I, H, R = _sizes(cfg, x, params)
    y = x.new_empty((B, T, R) if cfg.batch_first else (T, B, R))
    c_n = x.new_empty((B, H)) if cfg.cell == "lstm" else x.new_empty(0)
    n = 0
    if training:
        rows = _adapter.cache_rows(cfg.cell, cfg.reset_after, int(I), int(H), int(R) if params[4] is not None else 0,
                                   params[5] is not None, params[6] is not None, cfg.options)
        n = T * B * rows
    return y, x.new_empty((B, R)), c_n, x.new_empty(n)


@torch.library.custom_op("lstmcore::layer_backward", mutates_args=("buffer",))
def layer_backward(x: Tensor, h0: _P, c0: _P, weight_ih: Tensor, weight_hh: Tensor, bias_ih: _P, bias_hh: _P,
                   weight_hr: _P, weight_ch: _P, ln_weight_ih: _P, ln_bias_ih: _P, ln_weight_hh: _P, ln_bias_hh: _P,
                   ln_weight_c: _P, ln_bias_c: _P, lengths: _P, seed: _P, buffer: Tensor, dy: _P, dh_n: _P, dc_n: _P,
                   config: str) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor,
                                         Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Backward of layer_forward(training=True), whose cache buffer it consumes (overwrites): [dx, dh0,
    dc0, one gradient per parameter slot], empty tensors where the input was None."""
    params = (weight_ih, weight_hh, bias_ih, bias_hh, weight_hr, weight_ch, ln_weight_ih, ln_bias_ih, ln_weight_hh,
              ln_bias_hh, ln_weight_c, ln_bias_c)
    cfg = config_from_key(config)
    if buffer.numel() == 0:
        raise RuntimeError("lstmcore::layer_backward: the forward ran without training=True (no cache)")
    cache = _rebuild_cache(cfg, x, h0, c0, params, lengths, seed, buffer)
    grads = run_backward(cache, dy, dh_n, None if cfg.cell != "lstm" else dc_n)
    return tuple(x.new_empty(0) if g is None else g for g in grads)


@layer_backward.register_fake
def _layer_backward_fake(x, h0, c0, *rest):
    like = [x, h0, c0, *rest[:NSLOTS]]
    return tuple(x.new_empty(0) if t is None else torch.empty_like(t, memory_format=torch.contiguous_format)
                 for t in like)


def _rebuild_cache(cfg, x, h0, c0, params, lengths, seed, buffer):
    """The Cache that run_forward's lstmcore.forward returned, from the same inputs and its buffer."""
    common = dict(cell=cfg.cell, reset_after=cfg.reset_after, dtype=_NP_DTYPES[x.dtype], reverse=cfg.reverse,
                  batch_first=cfg.batch_first, has_b=params[2] is not None, has_b_h=params[3] is not None,
                  seq_lengths=None if lengths is None else np.ascontiguousarray(lengths.numpy(), dtype=np.int64))
    if on_device(x):
        d = [None if t is None else t.detach().contiguous() for t in (x, h0, c0, params[0], params[1])]
        w_x, w_h, _, layout = _adapter.core_weights(d[3], d[4], None)
        return _adapter.rebuild_device_cache(x.device.index or 0, x=d[0], w_x=w_x, w_h=w_h, h0=d[1], c0=d[2],
                                             buffer=buffer, **common, **layout)

    def arr(t):
        return None if t is None else np.ascontiguousarray(t.detach().numpy())

    p = [arr(t) for t in params]
    w_x, w_h, w_proj, layout = _adapter.core_weights(p[0], p[1], p[4])
    ln = _layer_norm(p)
    variant = _adapter.variant_field(cfg.cell, cfg.kwargs, None if seed is None else int(seed), p[5], w_proj, ln)
    return _adapter.rebuild_cache(x=arr(x), w_x=w_x, w_h=w_h, h0=arr(h0), c0=arr(c0),
                                  buffer=buffer.numpy(), variant=variant, compute_dtype=cfg.compute, **common,
                                  **layout)


_NP_DTYPES = {torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64)}


def _setup_context(ctx, inputs, output):
    x, h0, c0 = inputs[:3]
    params = inputs[3:3 + NSLOTS]
    lengths, seed, config, training = inputs[3 + NSLOTS:]
    ctx.config = config
    ctx.given = (True, h0 is not None, c0 is not None, *(p is not None for p in params))
    ctx.save_for_backward(x, h0, c0, *params, lengths, seed, output[3])


def _backward(ctx, dy, dh_n, dc_n, dbuffer):
    saved = ctx.saved_tensors
    g = torch.ops.lstmcore.layer_backward(*saved, dy, dh_n, dc_n, ctx.config)
    return (*(gi if given else None for gi, given in zip(g, ctx.given)), None, None, None, None)


layer_forward.register_autograd(_backward, setup_context=_setup_context)


# ------------------------------------------------------------------------------------------
# the door


#: Tests set this to run the custom operators in eager mode too.
FORCE_OPS = False


def _traced(x):
    return (torch.compiler.is_compiling() or FORCE_OPS or type(x) is not Tensor
            or torch.jit.is_tracing())


def layer(cfg, x, h0, c0, params, lengths, seed, grad, training):
    """One layer and direction: (y, h_n, c_n); c_n None for GRU / RNN.

    grad: autograd must see this call (it needs gradients). training: the core's training pass
    (grad, or zoneout in train mode, whose masks only that pass draws)."""
    if _traced(x):
        y, h_n, c_n, _ = torch.ops.lstmcore.layer_forward(x, h0, c0, *params, lengths, seed, cfg.key,
                                                          grad or training)
        return y, h_n, (c_n if cfg.cell == "lstm" else None)
    if grad:
        slots = tuple(k for k, p in enumerate(params) if p is not None)
        return _Layer.apply(cfg, lengths, seed, slots, x, h0, c0, *(params[k] for k in slots))
    y, h_n, c_n, _ = run_forward(cfg, x, h0, c0, params, lengths, seed, training)
    return y, h_n, c_n
