"""Weights from and to PyTorch, Keras and ONNX for the layer objects (LSTM, GRU, RNN).

lstmcore's fused layout (see lstmcore.layers): w_x (I, G·H), w_h (H, G·H), b and b_h (G·H,),
gate blocks of H columns in PyTorch's order — LSTM i, f, g, o; GRU r, z, n.

=========  ===============================  ==============================================
format     LSTM gates / GRU gates           layout
=========  ===============================  ==============================================
PyTorch    i, f, g, o / r, z, n             weight_ih (G·H, I) = w_xᵀ, bias_ih = b, bias_hh = b_h
Keras 3    i, f, c, o / z, r, h             kernel (I, G·H), recurrent_kernel (H, G·H), one bias
                                            (GRU reset_after=True: bias (2, 3H) = [b; b_h])
ONNX       i, o, f, c / z, r, h             W (D, G·H, I), R (D, G·H, H), B (D, 2·G·H) = [Wb, Rb]
=========  ===============================  ==============================================

The GRU of Keras and ONNX is the same cell as PyTorch's (h_t = z ⊙ h_{t-1} + (1 − z) ⊙ n),
so converting is a permutation of gate blocks. Keras LSTM and SimpleRNN (and GRU with
reset_after=False) have a single bias: importing sets b to it and b_h to zeros; exporting
writes b + b_h (exactly the cell's arithmetic, which adds the two). torch, keras and onnx
are optional: each is imported only by the functions that need it.
"""
from __future__ import annotations

import json
import os

import numpy as np

from .layers import GRU, LSTM, RNN, _make, _Recurrent

__all__ = ["from_torch", "to_torch", "from_state_dict", "to_state_dict", "from_keras", "to_keras",
           "from_onnx", "from_onnx_weights", "to_onnx"]

_FAMILY_OF_CELL = {"lstm": "lstm", "gru": "gru", "rnn_tanh": "rnn", "rnn_relu": "rnn"}
_G = {"lstm": 4, "gru": 3, "rnn": 1}

# Block permutations: ours[i] = theirs[PERM[i]] and theirs[i] = ours[INV[i]].
_KERAS_PERM = {"lstm": [0, 1, 2, 3], "gru": [1, 0, 2], "rnn": [0]}
_ONNX_PERM = {"lstm": [0, 2, 3, 1], "gru": [1, 0, 2], "rnn": [0]}


def _inverse(perm):
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return inv


def _permute(a, perm, axis=-1):
    """``a`` with its gate blocks (equal parts along ``axis``) taken in the order ``perm``."""
    blocks = np.split(np.asarray(a), len(perm), axis=axis)
    return np.concatenate([blocks[p] for p in perm], axis=axis)


def _family_of(layer):
    return _FAMILY_OF_CELL[layer.cell]


def _prefix(k, d):
    return f"l{k}" + ("_reverse" if d else "")


def _float_dtype(dt, default=np.float32):
    dt = np.dtype(dt)
    if dt in (np.dtype(np.float32), np.dtype(np.float64)):
        return dt
    if dt.kind == "f":
        return np.dtype(default)
    raise TypeError(f"weights of dtype {dt} cannot be converted")


# ----------------------------------------------------------------------------------------------
# PyTorch


def _torch():
    try:
        import torch  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - exercised only without torch
        raise ImportError("this converter needs PyTorch (pip install torch)") from exc
    return torch


def _require_concat(layer, what, peer):
    if getattr(layer, "merge", "concat") != "concat" and layer.bidirectional:
        raise ValueError(f"{what}: {peer} concatenates the two directions; this layer has merge={layer.merge!r}")


def _refuse_variants(layer, what, peer, allowed=()):
    """ValueError naming the first cell-variant option of ``layer`` that ``peer`` cannot represent."""
    for name, value in layer.variant_options().items():
        if name not in allowed:
            raise ValueError(f"{what}: {peer} has no equivalent of the cell option {name}={value!r}")


def to_state_dict(layer):
    """PyTorch's state_dict of ``layer`` as NumPy arrays (weight_ih_l0 = w_xᵀ, ...; with
    proj_size, weight_hr_l0 = w_projᵀ)."""
    _require_concat(layer, "to_state_dict", "PyTorch")
    _refuse_variants(layer, "to_state_dict", "PyTorch", allowed=("proj_size",))
    layer._weights()
    out = {}
    for k in range(layer.num_layers):
        for d in range(layer.num_directions):
            p, sfx = _prefix(k, d), f"_l{k}" + ("_reverse" if d else "")
            out["weight_ih" + sfx] = np.ascontiguousarray(layer.params[p + ".w_x"].T)
            out["weight_hh" + sfx] = np.ascontiguousarray(layer.params[p + ".w_h"].T)
            if layer.bias:
                out["bias_ih" + sfx] = layer.params[p + ".b"].copy()
                out["bias_hh" + sfx] = layer.params[p + ".b_h"].copy()
            if layer.proj_size:
                out["weight_hr" + sfx] = np.ascontiguousarray(layer.params[p + ".w_proj"].T)
    return out


def from_state_dict(state_dict, cell="lstm", *, nonlinearity="tanh", batch_first=False, dropout=0.0,
                    dtype=None):
    """A layer from a PyTorch LSTM / GRU / RNN state_dict (tensors or arrays).

    cell: "lstm", "gru" or "rnn" (with ``nonlinearity``). The number of layers, the
    directions, the sizes and whether there are biases are read from the keys and shapes;
    batch_first and dropout are not in a state_dict and come from the arguments. dtype:
    the layer's (default: that of the weights, float32 for other float types).
    """
    family = _FAMILY_OF_CELL.get(cell, cell)
    if family not in _G:
        raise ValueError(f"cell: expected 'lstm', 'gru' or 'rnn', got {cell!r}")
    sd = {k: (v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)) for k, v in state_dict.items()}
    if "weight_ih_l0" not in sd:
        raise ValueError("state_dict: no 'weight_ih_l0' entry; expected the state_dict of a "
                         "torch.nn.LSTM / GRU / RNN")
    proj_size = sd["weight_hr_l0"].shape[0] if "weight_hr_l0" in sd else 0
    if proj_size and family != "lstm":
        raise ValueError(f"state_dict: weight_hr_l0 (a projection) is an LSTM parameter, not one of a {family}")
    num_layers = 0
    while f"weight_ih_l{num_layers}" in sd:
        num_layers += 1
    bidirectional = "weight_ih_l0_reverse" in sd
    bias = "bias_ih_l0" in sd
    G = _G[family]
    GH, input_size = sd["weight_ih_l0"].shape
    if GH % G:
        raise ValueError(f"state_dict: weight_ih_l0 has {GH} rows, not a multiple of {G} gates of a {family}")
    hidden_size = GH // G
    dt = _float_dtype(dtype if dtype is not None else sd["weight_ih_l0"].dtype)
    variant = {"proj_size": int(proj_size)} if proj_size else {}
    layer = _make(family, input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, dt,
                  True, nonlinearity, **variant)
    expected = set()
    for k in range(num_layers):
        for d in range(layer.num_directions):
            p, sfx = _prefix(k, d), f"_l{k}" + ("_reverse" if d else "")
            pairs = [("w_x", "weight_ih", True), ("w_h", "weight_hh", True)]
            if bias:
                pairs += [("b", "bias_ih", False), ("b_h", "bias_hh", False)]
            if proj_size:
                pairs.append(("w_proj", "weight_hr", True))
            for ours, theirs, transpose in pairs:
                key = theirs + sfx
                expected.add(key)
                if key not in sd:
                    raise ValueError(f"state_dict: missing {key!r}")
                a = sd[key].T if transpose else sd[key]
                if a.shape != layer.param_shape(f"{p}.{ours}"):
                    raise ValueError(f"state_dict: {key}: expected shape "
                                     f"{layer.param_shape(f'{p}.{ours}')[::-1 if transpose else 1]}, "
                                     f"got {sd[key].shape}")
                layer.params[f"{p}.{ours}"] = np.ascontiguousarray(a, dtype=dt)
    extra = set(sd) - expected
    if extra:
        raise ValueError(f"state_dict: unexpected entries {sorted(extra)}")
    return layer


def from_torch(module, *, dtype=None):
    """A layer with the configuration and weights of a torch.nn.LSTM, GRU or RNN (all layers and
    directions; batch_first, dropout and nonlinearity included). dtype: default the module's."""
    torch = _torch()
    if isinstance(module, torch.nn.LSTM):
        family = "lstm"
    elif isinstance(module, torch.nn.GRU):
        family = "gru"
    elif isinstance(module, torch.nn.RNN):
        family = "rnn"
    else:
        raise TypeError(f"module: expected a torch.nn.LSTM, GRU or RNN, got {type(module).__name__}")
    layer = from_state_dict(module.state_dict(), family, nonlinearity=getattr(module, "nonlinearity", "tanh"),
                            batch_first=module.batch_first, dropout=module.dropout, dtype=dtype)
    if layer.input_size != module.input_size or layer.hidden_size != module.hidden_size:
        raise ValueError("module: its state_dict does not match its input_size / hidden_size")
    return layer


def to_torch(layer):
    """An equivalent torch.nn.LSTM / GRU / RNN (its dtype the layer's). GRU needs reset_after=True."""
    _require_concat(layer, "to_torch", "PyTorch")
    _refuse_variants(layer, "to_torch", "PyTorch", allowed=("proj_size",))
    torch = _torch()
    family = _family_of(layer)
    if family == "gru" and not layer.reset_after:
        raise ValueError("to_torch: torch.nn.GRU has no reset_after=False variant")
    tdtype = torch.float64 if layer.dtype == np.float64 else torch.float32
    kw = dict(num_layers=layer.num_layers, bias=layer.bias, batch_first=layer.batch_first, dropout=layer.dropout,
              bidirectional=layer.bidirectional, dtype=tdtype)
    if family == "lstm":
        module = torch.nn.LSTM(layer.input_size, layer.hidden_size, proj_size=layer.proj_size, **kw)
    elif family == "gru":
        module = torch.nn.GRU(layer.input_size, layer.hidden_size, **kw)
    else:
        module = torch.nn.RNN(layer.input_size, layer.hidden_size, nonlinearity=layer.nonlinearity, **kw)
    sd = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in to_state_dict(layer).items()}
    module.load_state_dict(sd, strict=True)
    return module


# ----------------------------------------------------------------------------------------------
# Keras


def _keras_groups(weights, per_direction, directions):
    """Per layer, per direction: the list of arrays of one Keras recurrent layer."""
    weights = list(weights)
    if not weights:
        raise ValueError("weights: empty")
    nested = not (hasattr(weights[0], "shape") and np.ndim(weights[0]) == 2)
    layers = [list(w) for w in weights] if nested else [weights]
    out = []
    for k, arrays in enumerate(layers):
        if len(arrays) != per_direction * directions:
            raise ValueError(f"weights{f'[{k}]' if nested else ''}: expected {per_direction * directions} arrays "
                             f"({'forward then backward layer, ' if directions == 2 else ''}kernel, "
                             f"recurrent_kernel{', bias' if per_direction == 3 else ''}), got {len(arrays)}")
        out.append([[np.asarray(a) for a in arrays[d * per_direction:(d + 1) * per_direction]]
                    for d in range(directions)])
    return out


def from_keras(weights, cell="lstm", *, bidirectional=False, use_bias=True, reset_after=True, activation="tanh",
               batch_first=True, dropout=0.0, dtype=None):
    """A layer from Keras 3 weights, as ``keras_layer.get_weights()`` returns them.

    weights: the list of one layer ([kernel, recurrent_kernel, bias]; no bias when
    use_bias=False), or a list of such lists for a stack (layer 0 first). With
    bidirectional=True each layer's list is that of a keras.layers.Bidirectional
    (forward layer's arrays, then the backward layer's; merge_mode="concat").
    cell: "lstm" (keras.layers.LSTM), "gru" (GRU, with its ``reset_after``) or "rnn"
    (SimpleRNN, with its ``activation``, "tanh" or "relu"). Keras' defaults are assumed for
    the rest (sigmoid recurrent activation, tanh activation). batch_first defaults to
    True, Keras' layout.
    """
    family = _FAMILY_OF_CELL.get(cell, cell)
    if family not in _G:
        raise ValueError(f"cell: expected 'lstm', 'gru' or 'rnn', got {cell!r}")
    if activation not in ("tanh", "relu") or (family != "rnn" and activation != "tanh"):
        raise ValueError(f"activation: {activation!r} is not supported for {family}")
    D = 2 if bidirectional else 1
    groups = _keras_groups(weights, 3 if use_bias else 2, D)
    G = _G[family]
    kernel0 = groups[0][0][0]
    input_size, GH = kernel0.shape
    if GH % G:
        raise ValueError(f"weights: kernel has {GH} columns, not a multiple of {G} gates of a {family}")
    H = GH // G
    dt = _float_dtype(dtype if dtype is not None else kernel0.dtype)
    layer = _make(family, input_size, H, len(groups), use_bias, batch_first, dropout, bidirectional, dt,
                  reset_after, activation)
    perm = _KERAS_PERM[family]
    for k, dirs in enumerate(groups):
        for d, arrays in enumerate(dirs):
            p = _prefix(k, d)
            kernel, recurrent = arrays[0], arrays[1]
            for name, a, ours in (("kernel", kernel, "w_x"), ("recurrent_kernel", recurrent, "w_h")):
                if a.shape != layer.param_shape(f"{p}.{ours}"):
                    raise ValueError(f"weights (layer {k}{', backward' if d else ''}): {name}: expected shape "
                                     f"{layer.param_shape(f'{p}.{ours}')}, got {a.shape}")
                layer.params[f"{p}.{ours}"] = np.ascontiguousarray(_permute(a, perm), dtype=dt)
            if not use_bias:
                continue
            bias = arrays[2]
            two = family == "gru" and reset_after
            want = (2, GH) if two else (GH,)
            if bias.shape != want:
                raise ValueError(f"weights (layer {k}{', backward' if d else ''}): bias: expected shape {want}, "
                                 f"got {bias.shape}")
            b, b_h = (bias[0], bias[1]) if two else (bias, np.zeros_like(bias))
            layer.params[f"{p}.b"] = np.ascontiguousarray(_permute(b, perm), dtype=dt)
            layer.params[f"{p}.b_h"] = np.ascontiguousarray(_permute(b_h, perm), dtype=dt)
    return layer


def to_keras(layer):
    """Keras 3 weights of ``layer`` for ``set_weights()``: one list per layer when num_layers > 1,
    else the list itself; a bidirectional layer's list is that of keras.layers.Bidirectional
    (forward arrays, then backward). Build the Keras layer with the same units, use_bias,
    reset_after (GRU) and activation (SimpleRNN); for merge="sum", Bidirectional(merge_mode="sum")."""
    family = _family_of(layer)
    _refuse_variants(layer, "to_keras", "Keras's LSTM / GRU / SimpleRNN")
    layer._weights()
    perm = _inverse(_KERAS_PERM[family])
    out = []
    for k in range(layer.num_layers):
        arrays = []
        for d in range(layer.num_directions):
            p = _prefix(k, d)
            arrays += [_permute(layer.params[p + ".w_x"], perm), _permute(layer.params[p + ".w_h"], perm)]
            if layer.bias:
                b, b_h = layer.params[p + ".b"], layer.params[p + ".b_h"]
                if family == "gru" and layer.reset_after:
                    arrays.append(np.stack([_permute(b, perm), _permute(b_h, perm)]))
                else:
                    arrays.append(_permute(b + b_h, perm))
        out.append(arrays)
    return out if layer.num_layers > 1 else out[0]


# ----------------------------------------------------------------------------------------------
# ONNX

_ONNX_OPS = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}
_ONNX_DEFAULT_ACTIVATIONS = {"LSTM": ["sigmoid", "tanh", "tanh"], "GRU": ["sigmoid", "tanh"], "RNN": ["tanh"]}


def _onnx():
    try:
        import onnx  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - exercised only without onnx
        raise ImportError("this converter needs the onnx package (pip install onnx)") from exc
    return onnx


def from_onnx_weights(op_type, W, R, B=None, initial_h=None, initial_c=None, *, direction="forward",
                      linear_before_reset=0, activations=None, hidden_size=None, clip=None, input_forget=0, P=None,
                      layout=0, dtype=None):
    """A one-layer lstmcore layer (and its initial state) from the tensors and attributes of one
    ONNX LSTM / GRU / RNN node.

    W (D, G·H, I), R (D, G·H, H), B (D, 2·G·H) or None, initial_h / initial_c (D, B, H) or
    None; the attributes as in the ONNX operator (direction "forward" / "reverse" /
    "bidirectional", linear_before_reset for GRU, activations, layout). A "reverse" node
    runs only the reverse direction, which a layer cannot (its direction 0 is forward):
    it is refused. Peepholes (P ≠ 0), clip, input_forget and activations other than the
    defaults (RNN: Tanh or Relu) are refused too.
    Returns (layer, state), state None when initial_h and initial_c are None.
    """
    return _onnx_layer([dict(op_type=op_type, W=W, R=R, B=B, initial_h=initial_h, initial_c=initial_c,
                              direction=direction, linear_before_reset=linear_before_reset, activations=activations,
                              hidden_size=hidden_size, clip=clip, input_forget=input_forget, P=P, layout=layout)],
                        dtype)


def _onnx_layer(nodes, dtype):
    """(layer, state) from a list of node descriptions (dicts), one per layer of the stack."""
    op = nodes[0]["op_type"]
    family = {"LSTM": "lstm", "GRU": "gru", "RNN": "rnn"}.get(op)
    if family is None:
        raise ValueError(f"op_type: expected LSTM, GRU or RNN, got {op!r}")
    G = _G[family]
    first = nodes[0]
    direction = first["direction"] if isinstance(first["direction"], str) else first["direction"].decode()
    nonlinearity = "tanh"
    layer_args = None
    for k, n in enumerate(nodes):
        where = f"node {k} ({n['op_type']})"
        if n["op_type"] != op:
            raise ValueError(f"{where}: all recurrent nodes must be of one kind, got {op} and {n['op_type']}")
        dirn = n["direction"] if isinstance(n["direction"], str) else n["direction"].decode()
        if dirn not in ("forward", "reverse", "bidirectional"):
            raise ValueError(f"{where}: unknown direction {dirn!r}")
        if dirn == "reverse":
            raise ValueError(f"{where}: direction='reverse' (a reverse-only layer) has no lstmcore layer "
                             f"equivalent; use lstmcore.forward(..., reverse=True) with its weights")
        if dirn != direction:
            raise ValueError(f"{where}: direction {dirn!r} differs from the first node's {direction!r}")
        if n.get("clip") is not None:
            raise ValueError(f"{where}: the clip attribute is not supported")
        if n.get("input_forget", 0):
            raise ValueError(f"{where}: input_forget=1 is not supported")
        if n.get("P") is not None and np.any(np.asarray(n["P"]) != 0):
            raise ValueError(f"{where}: peephole weights (P) are not supported")
        D = 2 if dirn == "bidirectional" else 1
        acts = n.get("activations")
        if acts:
            acts = [a.decode() if isinstance(a, bytes) else a for a in acts]
            acts = [a.lower() for a in acts]
            per = len(_ONNX_DEFAULT_ACTIVATIONS[op])
            if len(acts) != per * D:
                raise ValueError(f"{where}: expected {per * D} activations, got {len(acts)}")
            for d in range(D):
                mine = acts[d * per:(d + 1) * per]
                if op == "RNN" and mine[0] in ("tanh", "relu"):
                    if k == 0 and d == 0:
                        nonlinearity = mine[0]
                    elif mine[0] != nonlinearity:
                        raise ValueError(f"{where}: activations {acts} differ from the first node's")
                elif mine != _ONNX_DEFAULT_ACTIVATIONS[op]:
                    raise ValueError(f"{where}: activations {acts} are not supported (expected "
                                     f"{_ONNX_DEFAULT_ACTIVATIONS[op]})")
        elif op == "RNN" and nonlinearity != "tanh":
            raise ValueError(f"{where}: activations differ from the first node's")
        W, R = np.asarray(n["W"]), np.asarray(n["R"])
        if W.ndim != 3 or R.ndim != 3 or W.shape[0] != D or R.shape[0] != D:
            raise ValueError(f"{where}: expected W (D, G·H, I) and R (D, G·H, H) with D={D}, got {W.shape}, "
                             f"{R.shape}")
        GH = R.shape[1]
        H = R.shape[2]
        if GH != G * H or W.shape[1] != GH:
            raise ValueError(f"{where}: expected W (D, {G}·H, I) and R (D, {G}·H, H), got {W.shape}, {R.shape}")
        if n.get("hidden_size") is not None and n["hidden_size"] != H:
            raise ValueError(f"{where}: hidden_size={n['hidden_size']} does not match R {R.shape}")
        if k == 0:
            reset_after = bool(n.get("linear_before_reset", 0)) if op == "GRU" else True
            layer_args = dict(input_size=W.shape[2], H=H, D=D, layout=n.get("layout", 0) or 0,
                              reset_after=reset_after)
        else:
            if H != layer_args["H"] or W.shape[2] != D * H:
                raise ValueError(f"{where}: expected W (D, {G}·{layer_args['H']}, {D * layer_args['H']}) for an "
                                 f"inner layer, got {W.shape}")
            if op == "GRU" and bool(n.get("linear_before_reset", 0)) != layer_args["reset_after"]:
                raise ValueError(f"{where}: linear_before_reset differs from the first node's")
    bias = any(n.get("B") is not None for n in nodes)
    dt = dtype if dtype is not None else _float_dtype(np.asarray(nodes[0]["W"]).dtype)
    layer = _make(family, layer_args["input_size"], layer_args["H"], len(nodes), bias, layer_args["layout"] == 1,
                  0.0, layer_args["D"] == 2, dt, layer_args["reset_after"], nonlinearity)
    perm = _ONNX_PERM[family]
    H, D = layer_args["H"], layer_args["D"]
    hs, cs, have_state = [], [], False
    for k, n in enumerate(nodes):
        W, R = np.asarray(n["W"]), np.asarray(n["R"])
        B = None if n.get("B") is None else np.asarray(n["B"])
        if B is not None and B.shape != (D, 2 * G * H):
            raise ValueError(f"node {k}: expected B {(D, 2 * G * H)}, got {B.shape}")
        for d in range(D):
            p = _prefix(k, d)
            layer.params[p + ".w_x"] = np.ascontiguousarray(_permute(W[d].T, perm), dtype=dt)
            layer.params[p + ".w_h"] = np.ascontiguousarray(_permute(R[d].T, perm), dtype=dt)
            if bias:
                wb = np.zeros(G * H) if B is None else B[d, :G * H]
                rb = np.zeros(G * H) if B is None else B[d, G * H:]
                layer.params[p + ".b"] = np.ascontiguousarray(_permute(wb, perm), dtype=dt)
                layer.params[p + ".b_h"] = np.ascontiguousarray(_permute(rb, perm), dtype=dt)
        h0, c0 = n.get("initial_h"), n.get("initial_c")
        have_state = have_state or h0 is not None or c0 is not None
        hs.append(h0)
        cs.append(c0)
    state = None
    if have_state:
        if layer_args["layout"] == 1:  # initial states are (B, D, H) with layout=1
            raise ValueError("initial states with layout=1 are not supported")
        Bsz = next(np.asarray(s).shape[1] for s in hs + cs if s is not None)

        def full(parts):
            arrs = [np.zeros((D, Bsz, H)) if s is None else np.asarray(s) for s in parts]
            for s in arrs:
                if s.shape != (D, Bsz, H):
                    raise ValueError(f"initial state: expected {(D, Bsz, H)}, got {s.shape}")
            return np.ascontiguousarray(np.concatenate(arrs), dtype=dt)

        h = full(hs)
        state = (h, full(cs)) if family == "lstm" else h
    return layer, state


def _onnx_tensors(graph):
    from onnx import numpy_helper  # noqa: PLC0415
    tensors = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    tensors[node.output[0]] = numpy_helper.to_array(a.t)
    return tensors


def from_onnx(model_or_path, *, return_state=False, dtype=None):
    """A layer from an ONNX model (a ModelProto or a file path) whose graph holds one LSTM, GRU or
    RNN node per layer, in graph order (layer 0 first; each later node must read the previous
    one's output). W, R and B must be initializers (or Constant nodes). With return_state=True,
    returns (layer, state), state built from initial_h / initial_c initializers (None if none).
    The layer's batch_first is the nodes' layout attribute, or, for a model written by
    to_onnx, the exported layer's (with its dropout)."""
    onnx = _onnx()
    model = onnx.load(os.fspath(model_or_path)) if isinstance(model_or_path, (str, os.PathLike)) else model_or_path
    graph = model.graph
    tensors = _onnx_tensors(graph)
    nodes = []
    for node in graph.node:
        if node.op_type not in ("LSTM", "GRU", "RNN"):
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        inputs = list(node.input) + [""] * (8 - len(node.input))

        def tensor(i, what, required=False, node=node, inputs=inputs):
            name = inputs[i]
            if not name:
                if required:
                    raise ValueError(f"{node.op_type} node {node.name!r}: input {what} is missing")
                return None
            if name not in tensors:
                if required or what in ("B", "P"):
                    raise ValueError(f"{node.op_type} node {node.name!r}: input {what} ({name!r}) is not an "
                                     f"initializer or constant")
                return None  # a graph input (e.g. a runtime initial state)
            return tensors[name]

        nodes.append(dict(op_type=node.op_type, W=tensor(1, "W", True), R=tensor(2, "R", True), B=tensor(3, "B"),
                          initial_h=tensor(5, "initial_h"),
                          initial_c=tensor(6, "initial_c") if node.op_type == "LSTM" else None,
                          P=tensor(7, "P") if node.op_type == "LSTM" else None,
                          direction=attrs.get("direction", "forward"),
                          linear_before_reset=attrs.get("linear_before_reset", 0),
                          activations=attrs.get("activations"), hidden_size=attrs.get("hidden_size"),
                          clip=attrs.get("clip"), input_forget=attrs.get("input_forget", 0),
                          layout=attrs.get("layout", 0)))
    if not nodes:
        raise ValueError("model: its graph has no LSTM, GRU or RNN node")
    layer, state = _onnx_layer(nodes, dtype)
    props = {p.key: p.value for p in model.metadata_props}
    if "lstmcore.config" in props:  # written by to_onnx: the options ONNX has no place for
        cfg = json.loads(props["lstmcore.config"])
        layer.batch_first = bool(cfg.get("batch_first", layer.batch_first))
        layer.dropout = float(cfg.get("dropout", layer.dropout))
    return (layer, state) if return_state else layer


def to_onnx(layer, path=None, *, seq_lengths=False, initial_state=False, dtype=None, opset=17):
    """An ONNX model computing ``layer`` (one LSTM / GRU / RNN node per layer).

    Inputs: "X" (T, B, I) (or (B, T, I) with batch_first), "sequence_lens" (B,) int32 if
    seq_lengths=True, "initial_h" (and "initial_c" for LSTM), (L·D, B, H), if
    initial_state=True. Outputs: "Y" (T, B, D·H) (or (B, T, D·H)), "Y_h" (and "Y_c")
    (L·D, B, H) — the values of ``layer(x, state, seq_lengths)``. The nodes use layout=0;
    batch_first layers get Transpose nodes around them. dtype: of the model's tensors,
    default the layer's (ONNX Runtime's CPU LSTM runs float32 only: export a float64
    LSTM with dtype=np.float32 to run it there). Written to ``path`` when given.
    """
    _require_concat(layer, "to_onnx", "an ONNX node's Y output")
    _refuse_variants(layer, "to_onnx", "this exporter")
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415

    family = _family_of(layer)
    layer._weights()
    op = _ONNX_OPS[family]
    L, D, H, G = layer.num_layers, layer.num_directions, layer.hidden_size, _G[family]
    dt = _float_dtype(layer.dtype if dtype is None else dtype)
    elem = TensorProto.DOUBLE if dt == np.float64 else TensorProto.FLOAT
    perm = _inverse(_ONNX_PERM[family])
    inits, nodes = [], []

    def const(name, value):
        value = np.asarray(value)
        if value.dtype.kind == "f":
            value = value.astype(dt)
        inits.append(numpy_helper.from_array(value, name))
        return name

    x_shape = ["B", "T", layer.input_size] if layer.batch_first else ["T", "B", layer.input_size]
    inputs = [helper.make_tensor_value_info("X", elem, x_shape)]
    state_shape = [L * D, "B", H]
    if seq_lengths:
        inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, ["B"]))
    if initial_state:
        inputs.append(helper.make_tensor_value_info("initial_h", elem, state_shape))
        if family == "lstm":
            inputs.append(helper.make_tensor_value_info("initial_c", elem, state_shape))
    x_name = "X"
    if layer.batch_first:
        nodes.append(helper.make_node("Transpose", ["X"], ["X_time_major"], perm=[1, 0, 2]))
        x_name = "X_time_major"
    const("flatten_directions", np.array([0, 0, -1], dtype=np.int64))
    yh, yc = [], []
    for k in range(L):
        W = np.stack([_permute(layer.params[_prefix(k, d) + ".w_x"], perm).T for d in range(D)])
        R = np.stack([_permute(layer.params[_prefix(k, d) + ".w_h"], perm).T for d in range(D)])
        node_inputs = [x_name, const(f"W_{k}", W), const(f"R_{k}", R)]
        if layer.bias:
            Bb = np.stack([np.concatenate([_permute(layer.params[_prefix(k, d) + ".b"], perm),
                                           _permute(layer.params[_prefix(k, d) + ".b_h"], perm)])
                           for d in range(D)])
            node_inputs.append(const(f"B_{k}", Bb))
        else:
            node_inputs.append("")
        node_inputs.append("sequence_lens" if seq_lengths else "")
        if initial_state:
            starts, ends, axes = const(f"start_{k}", np.array([k * D], np.int64)), \
                const(f"end_{k}", np.array([(k + 1) * D], np.int64)), const(f"axes_{k}", np.array([0], np.int64))
            nodes.append(helper.make_node("Slice", ["initial_h", starts, ends, axes], [f"initial_h_{k}"]))
            node_inputs.append(f"initial_h_{k}")
            if family == "lstm":
                nodes.append(helper.make_node("Slice", ["initial_c", starts, ends, axes], [f"initial_c_{k}"]))
                node_inputs.append(f"initial_c_{k}")
        while node_inputs and node_inputs[-1] == "":
            node_inputs.pop()
        outputs = [f"Y_{k}", f"Y_h_{k}"] + ([f"Y_c_{k}"] if family == "lstm" else [])
        attrs = dict(hidden_size=H, direction="bidirectional" if D == 2 else "forward")
        if family == "gru":
            attrs["linear_before_reset"] = int(layer.reset_after)
        if family == "rnn":
            attrs["activations"] = [layer.nonlinearity.capitalize()] * D
        nodes.append(helper.make_node(op, node_inputs, outputs, name=f"{op.lower()}_{k}", **attrs))
        yh.append(f"Y_h_{k}")
        yc.append(f"Y_c_{k}")
        # Y_k (T, D, B, H) -> (T, B, D, H) -> (T, B, D·H): the next layer's input.
        nodes.append(helper.make_node("Transpose", [f"Y_{k}"], [f"Y_{k}_tbdh"], perm=[0, 2, 1, 3]))
        nodes.append(helper.make_node("Reshape", [f"Y_{k}_tbdh", "flatten_directions"], [f"Y_{k}_flat"]))
        x_name = f"Y_{k}_flat"
    if layer.batch_first:
        nodes.append(helper.make_node("Transpose", [x_name], ["Y"], perm=[1, 0, 2]))
    else:
        nodes.append(helper.make_node("Identity", [x_name], ["Y"]))
    nodes.append(helper.make_node("Concat", yh, ["Y_h"], axis=0))
    y_shape = ["B", "T", D * H] if layer.batch_first else ["T", "B", D * H]
    outputs = [helper.make_tensor_value_info("Y", elem, y_shape),
               helper.make_tensor_value_info("Y_h", elem, state_shape)]
    if family == "lstm":
        nodes.append(helper.make_node("Concat", yc, ["Y_c"], axis=0))
        outputs.append(helper.make_tensor_value_info("Y_c", elem, state_shape))
    graph = helper.make_graph(nodes, f"lstmcore_{family}", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, producer_name="lstmcore", opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 8)
    # what ONNX cannot say (batch_first, dropout), for from_onnx's round trip
    helper.set_model_props(model, {"lstmcore.config": json.dumps(layer.config())})
    onnx.checker.check_model(model)
    if path is not None:
        onnx.save(model, os.fspath(path))
    return model


# the layer classes re-exported for `from lstmcore.convert import *` users
_ = (LSTM, GRU, RNN, _Recurrent)
