"""lstmcore: fast, exact LSTM, GRU and RNN layers (forward and backward) on NumPy arrays.

    result = lstmcore.forward(x, w_x, w_h, b, b_h, h0, c0, cell="lstm", training=True)
    grads = lstmcore.backward(result.cache, dy)

See ``help(lstmcore.forward)`` for shapes and options and ``lstmcore.reference``
for the same math in plain NumPy.
"""
from ._types import ForwardResult, Gradients
from ._functional import (Cache, available_isas, backward, build_info, forward, get_isa,
                          get_num_threads, release_memory, set_isa, set_num_threads)
from . import reference
from .layers import GRU, LSTM, RNN, StackCache, load
from .convert import (from_keras, from_onnx, from_onnx_weights, from_state_dict, from_torch, to_keras,
                      to_onnx, to_torch)
from . import convert
from . import init
from .clip import clip_grad_norm, clip_grad_value

__version__ = "0.1.0"

__all__ = ["forward", "backward", "set_num_threads", "get_num_threads", "build_info",
           "available_isas", "get_isa", "set_isa", "release_memory",
           "ForwardResult", "Gradients", "Cache", "reference", "__version__",
           "LSTM", "GRU", "RNN", "StackCache", "load", "convert", "from_torch", "to_torch",
           "from_state_dict", "from_keras", "to_keras", "from_onnx", "from_onnx_weights", "to_onnx",
           "init", "clip_grad_norm", "clip_grad_value"]
