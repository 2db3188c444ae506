"""lstmcore: fast, exact LSTM, GRU and RNN layers (forward and backward) on NumPy arrays.

    result = lstmcore.forward(x, w_x, w_h, b, b_h, h0, c0, cell="lstm", training=True)
    grads = lstmcore.backward(result.cache, dy)

See ``help(lstmcore.forward)`` for shapes and options and ``lstmcore.reference``
for the same math in plain NumPy.
"""
from ._types import ForwardResult, Gradients
from ._functional import (Cache, backward, build_info, forward, get_num_threads,
                          set_num_threads)
from . import reference

__version__ = "0.1.0"

__all__ = ["forward", "backward", "set_num_threads", "get_num_threads", "build_info",
           "ForwardResult", "Gradients", "Cache", "reference", "__version__"]
