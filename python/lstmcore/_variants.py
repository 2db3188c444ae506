"""The cell variants' keyword arguments: checks, defaults and the calls into the core's
general path (``_core.forward`` / ``backward`` with a variant). ``forward`` comes here
only when an option differs from the plain cell; the plain cell keeps its packed kernels.
"""
from __future__ import annotations

import numbers

import numpy as np

from . import _core
from ._checks import flag
from ._types import ACTIVATIONS, DEFAULT_ACTIVATIONS, Gradients

LN_NAMES = ("gain_x", "bias_x", "gain_h", "bias_h", "gain_c", "bias_c")


def activation_specs(cell, activations, activation_alpha, activation_beta):
    """[(name, alpha, beta)] with ONNX's defaults filled in, one per activation of the cell;
    None when that is the cell's own set (the plain cell)."""
    if activations is None:
        if activation_alpha is not None or activation_beta is not None:
            raise ValueError("activation_alpha / activation_beta: given without activations")
        return None
    n = len(DEFAULT_ACTIVATIONS[cell])
    slots = "f, g, h"[:3 * n - 2]
    if not isinstance(activations, (list, tuple)) or len(activations) != n:
        raise ValueError(f"activations: the {cell} cell takes {n} names ({slots}), got {activations!r}")
    specs = []
    for k, name in enumerate(activations):
        if not isinstance(name, str) or name not in ACTIVATIONS:
            raise ValueError(f"activations: unknown activation {name!r}, expected one of {', '.join(ACTIVATIONS)}")
        specs.append([name, *ACTIVATIONS[name]])
    for col, label, given in ((1, "activation_alpha", activation_alpha), (2, "activation_beta", activation_beta)):
        if given is None:
            continue
        if not isinstance(given, (list, tuple, np.ndarray)) or len(given) != n:
            raise ValueError(f"{label}: expected {n} entries (one per activation, None for the default), "
                             f"got {given!r}")
        for k, value in enumerate(given):
            if value is None:
                continue
            if specs[k][col] is None:
                raise ValueError(f"{label}: {specs[k][0]} (entry {k}) takes no {label[11:]}, got {value!r}")
            specs[k][col] = _finite(value, f"{label}[{k}]")
    if tuple(s[0] for s in specs) == DEFAULT_ACTIVATIONS[cell]:
        return None  # the cell's own functions, which take no parameters
    return [tuple(s) for s in specs]


def _finite(value, name):
    """``value`` as a finite float; ValueError naming ``name`` otherwise (bools are not numbers here)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    try:
        v = float(value)
    except OverflowError:
        v = float("inf")
    if not np.isfinite(v):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    return v


def options(cell, training, *, peepholes, input_forget, forget_gate, clip, activations, activation_alpha,
            activation_beta, w_proj, layer_norm, zoneout, seed):
    """The options for the core as a dict, or None for the plain cell."""
    lstm = cell == "lstm"

    def lstm_only(name, used):
        if used and not lstm:
            raise ValueError(f"{name}: the {cell} cell has no such option (it is an LSTM option)")

    if zoneout is not None:
        z = (zoneout, zoneout) if isinstance(zoneout, numbers.Number) else (
            tuple(zoneout) if isinstance(zoneout, (list, tuple, np.ndarray)) else ())
        if len(z) != 2 or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and 0 <= v < 1
                                  for v in z):
            raise ValueError(f"zoneout: expected (z_h, z_c), probabilities in [0, 1), got {zoneout!r}")
        zoneout = None if z == (0, 0) else (float(z[0]), float(z[1]))
    input_forget, forget_gate = flag(input_forget, "input_forget"), flag(forget_gate, "forget_gate")
    lstm_only("peepholes", peepholes is not None)
    lstm_only("input_forget", bool(input_forget))
    lstm_only("forget_gate", not forget_gate)
    lstm_only("w_proj", w_proj is not None)
    lstm_only("layer_norm", layer_norm is not None)
    lstm_only("zoneout", zoneout is not None)
    if input_forget and not forget_gate:
        raise ValueError("input_forget: couples the forget gate to the input gate, but forget_gate=False drops it")
    opts = {}
    acts = activation_specs(cell, activations, activation_alpha, activation_beta)
    if acts is not None:
        opts["activations"] = acts
    if clip is not None:
        if isinstance(clip, bool) or not isinstance(clip, numbers.Real) or not clip > 0:
            raise ValueError(f"clip: expected a threshold > 0, got {clip!r}")
        try:
            opts["clip"] = float(clip)
        except OverflowError:  # an integer beyond float: no pre-activation reaches it
            opts["clip"] = float("inf")
    if input_forget:
        opts["input_forget"] = True
    if not forget_gate:
        opts["forget_gate"] = False
    if peepholes is not None:
        opts["peepholes"] = True
    if layer_norm is not None:
        if not isinstance(layer_norm, (tuple, list)) or len(layer_norm) != 6:
            raise ValueError(f"layer_norm: expected a 6-tuple ({', '.join(LN_NAMES)}), got "
                             f"{type(layer_norm).__name__}")
        opts["layer_norm"] = True
    if zoneout is not None:
        opts["zoneout"] = zoneout
        if training:
            if seed is None:
                seed = int(np.random.default_rng().integers(0, 2**63))
            if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**64:
                raise ValueError(f"seed: expected an integer in [0, 2**64), got {seed!r}")
            opts["seed"] = int(seed)
    if w_proj is not None:
        opts["proj"] = True
    return opts or None


def named_arrays(opts, peepholes, w_proj, layer_norm):
    """(name, array) pairs of the variant's parameters, for the dtype rules of forward."""
    if opts is None:
        return []
    named = [("peepholes", peepholes), ("w_proj", w_proj)]
    if layer_norm is not None:
        named += [(f"layer_norm[{k}]", v) for k, v in enumerate(layer_norm)]
    return named


def params(a):
    """(peepholes, w_proj, layer_norm tuple or None) from forward's prepared arrays."""
    ln = None
    if "layer_norm[0]" in a:
        ln = tuple(a[f"layer_norm[{k}]"] for k in range(6))
    return a.get("peepholes"), a.get("w_proj"), ln


def _core_options(opts):
    return {k: v for k, v in opts.items() if k != "proj"}


def forward(cell, reset_after, a, lengths, reverse, batch_first, training, out, opts, gate_major=False):
    peepholes, w_proj, ln = params(a)
    return _core.forward(cell, bool(reset_after), a["x"], a["w_x"], a["w_h"], a["b"], a["b_h"], a["h0"],
                         a["c0"], lengths, bool(reverse), bool(batch_first), bool(training), out,
                         _core_options(opts), peepholes, w_proj, ln, gate_major=gate_major)


def backward(cache, g):
    peepholes, w_proj, ln = cache.variant["params"]
    r = _core.backward(cache.cell, cache.reset_after, cache.x, cache.w_x, cache.w_h, cache.h0, cache.c0,
                       cache.seq_lengths, cache.reverse, cache.batch_first, cache.buffer, cache.has_b,
                       cache.has_b_h, g["dy"], g["dh_n"], g["dc_n"], _core_options(cache.variant["options"]),
                       peepholes, w_proj, ln, gate_major=cache.weight_layout == "gate_major")
    return Gradients.with_extras(r[:7], dpeepholes=r[7], dw_proj=r[8], dlayer_norm=r[9])


def cache_entry(opts, a):
    """What the cache keeps of a variant call (None for the plain cell)."""
    if opts is None:
        return None
    return {"options": opts, "params": params(a)}

