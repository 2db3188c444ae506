"""Weight initialisers for the fused layout (w_x (I, G·H), w_h (H, G·H), b and b_h (G·H,)).

    w_x = lstmcore.init.glorot_uniform((I, 4 * H), rng)
    w_h = lstmcore.init.orthogonal((H, 4 * H), rng)
    b = lstmcore.init.unit_forget_bias(np.zeros(4 * H, np.float32))

``torch_uniform`` is PyTorch's default for recurrent layers (every weight and bias uniform in
±1/√H); glorot_uniform + orthogonal + unit_forget_bias is Keras's default for LSTM, the scheme
the layer objects use with ``init="keras"``.
"""
from __future__ import annotations

import numpy as np

__all__ = ["torch_uniform", "glorot_uniform", "orthogonal", "unit_forget_bias", "INITS"]

INITS = ("torch", "keras")


def _rng(rng):
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _shape2(shape, name):
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"{name}: expected a 2-d shape of positive sizes, got {shape}")
    return shape


def torch_uniform(shape, hidden_size, rng=None, dtype=np.float32):
    """Uniform in ±1/√hidden_size (PyTorch's nn.LSTM/GRU/RNN default, weights and biases)."""
    bound = 1.0 / np.sqrt(hidden_size)
    return _rng(rng).uniform(-bound, bound, shape).astype(dtype)


def glorot_uniform(shape, rng=None, dtype=np.float32):
    """Uniform in ±√(6 / (fan_in + fan_out)), fan_in, fan_out = shape (Glorot & Bengio 2010).

    For w_x (I, G·H) that is Keras's kernel initialiser: fan_in = I, fan_out = G·H.
    """
    fan_in, fan_out = _shape2(shape, "shape")
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return _rng(rng).uniform(-limit, limit, (fan_in, fan_out)).astype(dtype)


def orthogonal(shape, rng=None, gain=1.0, dtype=np.float32):
    """A (rows, cols) matrix with orthonormal rows (rows <= cols) or columns, times ``gain``.

    The QR factorisation of a Gaussian matrix, signs fixed so the result is uniform over the
    orthogonal group (Saxe et al. 2014); Keras's recurrent_kernel initialiser for w_h (H, G·H),
    whose H rows are then orthonormal.
    """
    rows, cols = _shape2(shape, "shape")
    a = _rng(rng).standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))  # make the factorisation unique
    if rows < cols:
        q = q.T
    return (gain * q).astype(dtype)


def unit_forget_bias(b, hidden_size=None):
    """Sets the forget-gate block of an LSTM bias (gate order i, f, g, o) to 1, in place.

    Keeps the forget gate open early in training (Jozefowicz et al. 2015). ``b`` is (4H,);
    returns it.
    """
    if not isinstance(b, np.ndarray) or b.ndim != 1:
        raise ValueError(f"b: expected a 1-d numpy array of 4·H elements, got {type(b).__name__}"
                         f"{getattr(b, 'shape', '')}")
    H = b.shape[0] // 4 if hidden_size is None else int(hidden_size)
    if b.shape[0] != 4 * H or H < 1:
        raise ValueError(f"b: expected shape ({4 * H},) (LSTM gates i, f, g, o), got {b.shape}")
    b[H:2 * H] = 1
    return b
