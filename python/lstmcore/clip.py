"""Gradient clipping, in place, on what lstmcore's backward passes return.

    g = lstmcore.backward(cache, dy)
    norm = lstmcore.clip_grad_norm(g, max_norm=1.0)      # the norm before clipping
    lstmcore.clip_grad_value(layer.grads, 0.5)

``grads`` may be a ``Gradients`` namedtuple (its weight gradients dw_x, dw_h, db, db_h and
any gradient of an extra parameter the cell options add — not dx, dh0, dc0, which are
gradients of inputs, not of parameters), a dict of arrays (``layer.grads``), a single array,
or a list/tuple of any of these. Entries that are None are skipped. The semantics are those
of ``torch.nn.utils.clip_grad_norm_`` / ``clip_grad_value_``.
"""
from __future__ import annotations

import math

import numpy as np

from ._types import Gradients

__all__ = ["clip_grad_norm", "clip_grad_value"]



def _arrays(grads, name="grads"):
    """The parameter-gradient arrays inside ``grads`` (see the module docstring)."""
    if grads is None:
        return []
    if isinstance(grads, np.ndarray):
        if grads.dtype.kind != "f":
            raise TypeError(f"{name}: expected float arrays, got dtype {grads.dtype}")
        if not grads.flags.writeable:
            raise ValueError(f"{name}: the array is read-only; clipping works in place")
        return [grads]
    if isinstance(grads, Gradients):
        out = []
        for field in Gradients.PARAMETERS:
            out += _arrays(getattr(grads, field), f"{name}.{field}")
        return out
    if isinstance(grads, dict):
        out = []
        for key, value in grads.items():
            out += _arrays(value, f"{name}[{key!r}]")
        return out
    if isinstance(grads, (list, tuple)):
        out = []
        for i, value in enumerate(grads):
            out += _arrays(value, f"{name}[{i}]")
        return out
    raise TypeError(f"{name}: expected a Gradients namedtuple, a dict of arrays, an array or a list of "
                    f"those, got {type(grads).__name__}")


def clip_grad_norm(grads, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scales every gradient in ``grads`` by min(1, max_norm / (total + 1e-6)), in place.

    total is the norm of all the gradients together (as if concatenated into one vector);
    ``norm_type`` is p of the p-norm (``float("inf")`` for the largest magnitude). Returns
    total, the norm before clipping, as a Python float. With ``error_if_nonfinite`` a NaN or
    infinite total raises a ValueError instead of scaling.
    """
    max_norm = float(max_norm)
    norm_type = float(norm_type)
    if not max_norm >= 0:
        raise ValueError(f"max_norm: expected a number >= 0, got {max_norm}")
    if not norm_type > 0:
        raise ValueError(f"norm_type: expected a number > 0 or inf, got {norm_type}")
    arrays = _arrays(grads)
    if not arrays:
        return 0.0
    if math.isinf(norm_type):
        total = max(float(np.max(np.abs(a))) if a.size else 0.0 for a in arrays)
    elif norm_type == 2.0:
        total = math.sqrt(sum(float(np.vdot(a, a).real) for a in arrays))
    else:
        total = sum(float(np.sum(np.abs(a, dtype=np.float64) ** norm_type)) for a in arrays) ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise ValueError(f"clip_grad_norm: the total norm of order {norm_type} is {total}")
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for a in arrays:
            a *= a.dtype.type(coef)
    return total


def clip_grad_value(grads, clip_value):
    """Clamps every gradient in ``grads`` to [-clip_value, clip_value], in place (NaN stays NaN)."""
    v = float(clip_value)
    if not v >= 0:
        raise ValueError(f"clip_value: expected a number >= 0, got {clip_value}")
    for a in _arrays(grads):
        np.clip(a, -v, v, out=a)
    return grads
