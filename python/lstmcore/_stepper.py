"""Streaming inference: a layer's weights packed once, then one time step per call.

``layer.stepper(batch)`` builds a :class:`Stepper`; ``y_t = s.step(x_t)`` advances its state
in place. The stepper copies (packs) the weights when it is built: later changes to
``layer.params`` do not reach it, in place or not; build a new one after changing them.
Each step is one C++ call per layer on arrays the stepper owns (no allocation in the core,
one new array for y_t), so the Python work per step is the argument check.
"""
from __future__ import annotations

import numpy as np

from . import _core


class Stepper:
    """A unidirectional, forward-running layer (any number of layers, plain cells; GRU with
    reset_after=True) advanced one time step per :meth:`step`. Dropout does not apply
    (inference). Not thread-safe: one stepper serves one caller at a time."""

    __slots__ = ("_cores", "_h", "_c", "_batch", "_input", "_dtype", "_make_state")

    def __init__(self, layer, batch, state=None):
        batch = int(batch)
        if batch < 1:
            raise ValueError(f"batch: expected >= 1, got {batch}")
        self._batch, self._input, self._dtype = batch, layer.input_size, layer.dtype
        weights = layer._weights()
        self._cores = [_core.Stepper(layer.cell, layer.reset_after, w_x, w_h, b, b_h, batch)
                       for (w_x, w_h, b, b_h, *_) in weights]
        L, H = layer.num_layers, layer.hidden_size
        self._h = np.zeros((L, batch, H), layer.dtype)
        self._c = np.zeros((L, batch, H), layer.dtype) if layer.cell == "lstm" else None
        self._make_state = layer._pack_state
        self._set(layer, state)

    def _set(self, layer, state):
        h0, c0 = layer._state(state)
        for src, dst, name in ((h0, self._h, "state h"), (c0, self._c, "state c")):
            if src is None or dst is None:
                if dst is not None:
                    dst[...] = 0
                continue
            if src.shape != dst.shape:
                raise ValueError(f"{name}: expected shape (num_layers, B, H) = {dst.shape}, got {src.shape}")
            dst[...] = src

    def _convert(self, x_t):
        x = x_t if isinstance(x_t, np.ndarray) else np.asarray(x_t)
        if x.dtype.kind == "f" and x.dtype != self._dtype and hasattr(x_t, "dtype"):  # lists read in the layer's
            raise TypeError(f"x_t: dtype {x.dtype} differs from the layer's dtype {self._dtype}")
        if x.dtype.kind not in "biuf":
            raise TypeError(f"x_t: expected a real numeric array, got dtype {x.dtype}")
        return np.ascontiguousarray(x, dtype=self._dtype)

    @property
    def state(self):
        """A copy of the state in the layer's format: h (num_layers, B, H), or (h, c) for LSTM."""
        return self._make_state(self._h.copy(), None if self._c is None else self._c.copy())

    def step(self, x_t):
        """Advances one step: x_t (B, I) of the layer's dtype, C-contiguous; returns y_t (B, H), a new array."""
        x = x_t
        if type(x) is not np.ndarray or x.dtype != self._dtype or not x.flags.c_contiguous:
            x = self._convert(x_t)
        h, c = self._h, self._c
        for k, core in enumerate(self._cores):
            core.step(x, h[k], None if c is None else c[k])
            x = h[k]
        return x.copy()
