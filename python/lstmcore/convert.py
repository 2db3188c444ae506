"""Layers from and to PyTorch, Keras 3 and ONNX, as functions of any family (LSTM, GRU, RNN).

The layer classes have the same as methods (``lstmcore.LSTM.from_torch(m)``,
``layer.to_onnx(path)``, ...). The tensors are converted in lstmcore._formats (gate orders
and layouts in its docstring), ONNX graphs read and written in lstmcore._onnx_graph; this
module builds the layer objects. torch, keras and onnx are optional: each is imported only
by the functions that need it.

What a format cannot represent is refused by name (a ValueError): PyTorch has proj_size
but none of the other cell options; Keras' LSTM / GRU / SimpleRNN have the activations
their names cover and go_backwards; ONNX's operators have peepholes, clip, input_forget,
activations and direction="reverse", and none of forget_gate=False, proj_size,
layer_norm or zoneout.
"""
from __future__ import annotations

from . import _formats, _onnx_graph
from .layers import from_config

__all__ = ["from_torch", "to_torch", "from_state_dict", "to_state_dict", "from_keras", "to_keras",
           "to_keras_layers", "from_onnx", "from_onnx_weights", "to_onnx"]


# ----------------------------------------------------------------------------------------------
# PyTorch


def from_torch(module, *, dtype=None):
    """A layer with the configuration and weights of a torch.nn.LSTM, GRU or RNN (all layers and
    directions; batch_first, dropout, nonlinearity and proj_size included). dtype: default the
    module's."""
    return from_config(*_formats.from_torch(module, dtype))


def to_torch(layer):
    """An equivalent torch.nn.LSTM / GRU / RNN (its dtype the layer's). GRU needs reset_after=True."""
    return layer.to_torch()


def from_state_dict(state_dict, cell="lstm", *, nonlinearity="tanh", batch_first=False, dropout=0.0, dtype=None):
    """A layer from a PyTorch LSTM / GRU / RNN state_dict (tensors or arrays).

    cell: "lstm", "gru" or "rnn" (with ``nonlinearity``). The number of layers, the
    directions, the sizes, proj_size and whether there are biases are read from the keys and
    shapes; batch_first and dropout are not in a state_dict and come from the arguments.
    dtype: the layer's (default: that of the weights, float32 for other float types).
    """
    return from_config(*_formats.from_state_dict(state_dict, cell, nonlinearity=nonlinearity,
                                                 batch_first=batch_first, dropout=dropout, dtype=dtype))


def to_state_dict(layer):
    """PyTorch's state_dict of ``layer`` as NumPy arrays (weight_ih_l0 = w_xᵀ, ...; with
    proj_size, weight_hr_l0 = w_projᵀ)."""
    return layer.state_dict()


# ----------------------------------------------------------------------------------------------
# Keras 3


def from_keras(weights, cell=None, *, config=None, bidirectional=False, use_bias=True, reset_after=True,
               activation="tanh", recurrent_activation="sigmoid", go_backwards=False, merge="concat",
               unit_forget_bias=None, batch_first=True, dropout=0.0, dtype=None):
    """A layer from Keras 3 layers, or from their weights and configuration.

    weights: a built keras.layers.LSTM, GRU, SimpleRNN or Bidirectional (or a list of them,
    one per layer of a stack: all of one cell and options), whose configuration and weights
    are read; or what ``get_weights()`` returns — the list of one layer ([kernel,
    recurrent_kernel, bias], no bias when use_bias=False), or a list of such lists for a
    stack, a Bidirectional's list being the forward layer's arrays then the backward's.
    With weights lists the options come from ``config`` (the layers' ``get_config()``
    dicts, one or a list) or from the keywords, which mirror Keras's: cell "lstm", "gru"
    or "rnn" (SimpleRNN); ``activation`` and ``recurrent_activation`` among tanh, sigmoid,
    hard_sigmoid, relu, linear, softsign, softplus, elu, leaky_relu (others are refused by
    name); ``use_bias``; GRU ``reset_after``; ``go_backwards`` (one unidirectional layer:
    a reverse=True layer — Keras returns its output sequence reversed in time, lstmcore in
    the input's order); ``bidirectional`` with ``merge`` ("concat" or "sum", Bidirectional's
    merge_mode); ``unit_forget_bias`` is accepted and changes nothing (it initialises the
    bias, which the weights carry). Keras's dropout and recurrent_dropout act in training
    only and are not carried; ``dropout`` here is lstmcore's, between layers. batch_first
    defaults to True, Keras' layout.
    """
    return from_config(*_formats.from_keras(
        weights, cell, config=config, bidirectional=bidirectional, use_bias=use_bias, reset_after=reset_after,
        activation=activation, recurrent_activation=recurrent_activation, go_backwards=go_backwards, merge=merge,
        unit_forget_bias=unit_forget_bias, batch_first=batch_first, dropout=dropout, dtype=dtype))


def to_keras(layer):
    """Keras 3 weights of ``layer`` for ``set_weights()``: one list per layer when num_layers > 1,
    else the list itself; a bidirectional layer's list is that of keras.layers.Bidirectional
    (forward arrays, then backward). The Keras layer needs the same units, use_bias,
    activations, reset_after (GRU) and go_backwards (reverse=True); for merge="sum",
    Bidirectional(merge_mode="sum"). :func:`to_keras_layers` builds such layers."""
    return layer.to_keras()


def to_keras_layers(layer):
    """Keras 3 layers equal to ``layer``, built and holding its weights: a list with one
    keras.layers.LSTM / GRU / SimpleRNN (return_sequences=True, return_state=True) per layer
    of the stack, or a Bidirectional (merge_mode the layer's merge) per bidirectional layer.
    Applied in order to the same input (batch-major) they compute the layer."""
    return _formats.build_keras_layers(layer.config(), layer._checked_params())


# ----------------------------------------------------------------------------------------------
# ONNX


def from_onnx_weights(op_type, W, R, B=None, initial_h=None, initial_c=None, *, direction="forward",
                      linear_before_reset=0, activations=None, activation_alpha=None, activation_beta=None,
                      hidden_size=None, clip=None, input_forget=0, P=None, layout=0, dtype=None):
    """A one-layer lstmcore layer (and its initial state) from the tensors and attributes of one
    ONNX LSTM / GRU / RNN node.

    W (D, G·H, I), R (D, G·H, H), B (D, 2·G·H) or None, P (D, 3H) peepholes (ONNX's order
    i, o, f) or None, initial_h / initial_c (D, B, H) ((B, D, H) with layout=1) or None; the
    attributes as in the ONNX operator: direction "forward", "reverse" (a reverse=True
    layer) or "bidirectional"; GRU linear_before_reset (reset_after); activations with
    activation_alpha / activation_beta packed as ONNX packs them (the values of the
    functions that take one, in order; ONNX's defaults for those missing); clip;
    input_forget; layout=1 (a batch_first layer). Returns (layer, state), state None when
    initial_h and initial_c are None.
    """
    node = dict(op_type=op_type, W=W, R=R, B=B, P=P, initial_h=initial_h, initial_c=initial_c, direction=direction,
                linear_before_reset=linear_before_reset, activations=activations, activation_alpha=activation_alpha,
                activation_beta=activation_beta, hidden_size=hidden_size, clip=clip, input_forget=input_forget,
                layout=layout)
    cfg, params, state = _formats.from_onnx_nodes([node], dtype)
    return from_config(cfg, params), state


def from_onnx(model_or_path, *, weights=None, return_state=False, dtype=None):
    """A layer from an ONNX model (a ModelProto or a file path).

    The graph's LSTM, GRU or RNN nodes, in graph order, are the layers of the stack: one kind,
    one direction ("forward", "bidirectional", or "reverse": a reverse=True layer) and one
    set of cell options (peepholes P, clip, input_forget, activations and their alpha /
    beta, GRU linear_before_reset) for all. W, R, B and P are initializers or Constant
    nodes, or graph inputs whose values ``weights`` gives ({name: array}, as for ONNX's own
    node tests). The ops between the nodes — the glue exporters write, such as
    torch.onnx.export's Transpose / Reshape / Squeeze — are run on probe tensors and must
    move the data as the stack does: node 0 reads the model's input (time-major, or
    batch-major through a Transpose or layout=1: batch_first), node k the previous node's
    Y with its directions concatenated (or summed: merge="sum") along the features.
    What the graph computes after the last node (a head) is not part of the layer.

    At run time the layer takes what the model's other inputs were: sequence_lens (one
    graph input read by every node) is ``seq_lengths``; initial states that are graph
    inputs (one per node, or rows k·D .. of one (L·D, B, H) input — or of a (B, L·D, H) one,
    which the caller transposes) are ``state``. Initial
    states that are constants are returned with ``return_state=True`` as (layer, state)
    (state None when there are none, or when they are zeros, as exporters write a default
    state). A model written by :func:`to_onnx` carries the layer's config in its metadata,
    which restores dropout and the exact values of clip and alpha / beta (ONNX stores
    float32). dtype: the layer's, default that of W.
    """
    cfg, params, state = _onnx_graph.read_model(model_or_path, weights, dtype)
    layer = from_config(cfg, params)
    return (layer, state) if return_state else layer


def to_onnx(layer, path=None, *, seq_lengths=False, initial_state=False, dtype=None, opset=17, layout=0):
    """An ONNX model computing ``layer``: one LSTM / GRU / RNN node per layer (direction
    "bidirectional", "forward" or, for reverse=True, "reverse"; the cell options as
    attributes and P; activation alpha / beta written out in full).

    Inputs: "X" (T, B, I) (or (B, T, I) with batch_first), "sequence_lens" (B,) int32 if
    seq_lengths=True, "initial_h" (and "initial_c" for LSTM), (L·D, B, H), if
    initial_state=True. Outputs: "Y" (T, B, O) (or (B, T, O)), "Y_h" (and "Y_c")
    (L·D, B, H) — the values of ``layer(x, state, seq_lengths)``. The nodes use layout=0
    (the only one ONNX Runtime runs), a batch_first layer's with Transpose nodes around them,
    or, with ``layout=1`` (batch_first layers), ONNX's batch-major nodes (the states are
    transposed to and from their (B, D, H)); merge="sum" joins the directions by ReduceSum. dtype: of the model's tensors, default the
    layer's (ONNX Runtime's CPU LSTM runs float32 only: export a float64 LSTM with
    dtype=np.float32 to run it there). Written to ``path`` when given. ONNX has no
    forget_gate=False, proj_size, layer_norm or zoneout: refused by name.
    """
    return layer.to_onnx(path, seq_lengths=seq_lengths, initial_state=initial_state, dtype=dtype, opset=opset,
                         layout=layout)
