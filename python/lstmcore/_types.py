"""Result types and tables shared by the compiled core's wrappers and the NumPy reference."""
from __future__ import annotations

from collections import namedtuple

#: What ``forward`` returns. ``c_n`` is None for cells without a cell state (GRU, RNN);
#: ``cache`` is None unless ``training=True``.
ForwardResult = namedtuple("ForwardResult", ["y", "h_n", "c_n", "cache"])

_GradientFields = namedtuple("Gradients", ["dx", "dh0", "dc0", "dw_x", "dw_h", "db", "db_h"])


class Gradients(_GradientFields):
    """What ``backward`` returns: the 7 fields ``(dx, dh0, dc0, dw_x, dw_h, db, db_h)``.
    ``dc0`` is None for cells without a cell state; ``db`` / ``db_h`` are None when the
    corresponding bias was None in forward.

    The gradients of the cell variants' own parameters are attributes, not fields (a
    Gradients still unpacks into 7 values): ``dpeepholes`` (3, H), ``dw_proj`` (H, P) and
    ``dlayer_norm`` (a 6-tuple like forward's ``layer_norm``); each None when unused.
    """

    dpeepholes = None
    dw_proj = None
    dlayer_norm = None

    #: The gradients of parameters (fields and attributes); dx, dh0, dc0 are of inputs.
    PARAMETERS = ("dw_x", "dw_h", "db", "db_h", "dpeepholes", "dw_proj", "dlayer_norm")

    @classmethod
    def with_extras(cls, fields, dpeepholes=None, dw_proj=None, dlayer_norm=None):
        g = cls(*fields)
        g.dpeepholes, g.dw_proj, g.dlayer_norm = dpeepholes, dw_proj, dlayer_norm
        return g


#: Gates per cell, in the fused layout's order (LSTM i,f,g,o; GRU r,z,n; RNN one block).
#: The one table of gate counts: everything else reads it from here.
GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}


def has_cell_state(cell) -> bool:
    """True for the cells with a cell state c besides h (LSTM): they take c0 / dc_n and return c_n / dc0."""
    return cell == "lstm"

#: The activation functions of ONNX's recurrent operators (lower-case names) and their
#: default (alpha, beta); None where the function takes no such parameter.
ACTIVATIONS = {
    "sigmoid": (None, None),
    "hard_sigmoid": (0.2, 0.5),
    "tanh": (None, None),
    "relu": (None, None),
    "softsign": (None, None),
    "scaled_tanh": (1.0, 1.0),
    "affine": (1.0, 0.0),
    "leaky_relu": (0.01, None),
    "elu": (1.0, None),
    "softplus": (None, None),
    "thresholded_relu": (1.0, None),
}

#: Each cell's own activations, in ONNX's order: LSTM f (gates), g (candidate), h (output);
#: GRU f, g; RNN f.
DEFAULT_ACTIVATIONS = {"lstm": ("sigmoid", "tanh", "tanh"), "gru": ("sigmoid", "tanh"),
                       "rnn_tanh": ("tanh",), "rnn_relu": ("relu",)}

#: Layer norm's epsilon: LN(v) = gain ⊙ (v − mean v) / sqrt(var v + LAYER_NORM_EPSILON) + bias.
LAYER_NORM_EPSILON = 1e-5
