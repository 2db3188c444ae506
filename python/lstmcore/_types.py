"""Result types shared by the compiled core's wrappers and the NumPy reference."""
from __future__ import annotations

from collections import namedtuple

#: What ``forward`` returns. ``c_n`` is None for cells without a cell state (GRU, RNN);
#: ``cache`` is None unless ``training=True``.
ForwardResult = namedtuple("ForwardResult", ["y", "h_n", "c_n", "cache"])

#: What ``backward`` returns. ``dc0`` is None for cells without a cell state;
#: ``db`` / ``db_h`` are None when the corresponding bias was None in forward.
Gradients = namedtuple("Gradients", ["dx", "dh0", "dc0", "dw_x", "dw_h", "db", "db_h"])

#: Gates per cell, in the fused layout's order (LSTM i,f,g,o; GRU r,z,n; RNN one block).
GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}
