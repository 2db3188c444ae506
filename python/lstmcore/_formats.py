"""Array-level conversions between a layer's parameters and PyTorch, Keras 3 and ONNX tensors.

A leaf: it imports NumPy and lstmcore._types only (torch and keras lazily, inside the few
functions that read or build their objects). The layer objects (lstmcore.layers) and the
public functions (lstmcore.convert) build on it. A layer is described here by its
``config()`` dict (what ``layer.save`` stores: cell, sizes, flags, cell-variant options,
dtype) and its ``params`` dict; every reader returns such a pair, every writer takes one.

lstmcore's fused layout: w_x (I, G·H), w_h (H, G·H), b and b_h (G·H,), gate blocks of H
columns in PyTorch's order — LSTM i, f, g, o; GRU r, z, n; peepholes (3, H) rows i, f, o.

=========  ===============================  ==============================================
format     LSTM gates / GRU gates           layout
=========  ===============================  ==============================================
PyTorch    i, f, g, o / r, z, n             weight_ih (G·H, I) = w_xᵀ, bias_ih = b, bias_hh = b_h
Keras 3    i, f, c, o / z, r, h             kernel (I, G·H), recurrent_kernel (H, G·H), one bias
                                            (GRU reset_after=True: bias (2, 3H) = [b; b_h])
ONNX       i, o, f, c / z, r, h             W (D, G·H, I), R (D, G·H, H), B (D, 2·G·H) = [Wb, Rb],
                                            P (D, 3H) peepholes i, o, f
=========  ===============================  ==============================================

The GRU of Keras and ONNX is PyTorch's cell (h_t = z ⊙ h_{t-1} + (1 − z) ⊙ n), so a
conversion permutes gate blocks. Keras' LSTM and SimpleRNN (and GRU with reset_after=False)
have one bias: reading sets b to it and b_h to zeros; writing stores b + b_h (the cell adds
the two).
"""
from __future__ import annotations

import numpy as np

from ._types import ACTIVATIONS, DEFAULT_ACTIVATIONS, GATES

FAMILY_OF_CELL = {"lstm": "lstm", "gru": "gru", "rnn_tanh": "rnn", "rnn_relu": "rnn"}
FAMILY_GATES = {FAMILY_OF_CELL[cell]: g for cell, g in GATES.items()}

#: Block permutations: ours[i] = theirs[ORDER[i]].
KERAS_ORDER = {"lstm": [0, 1, 2, 3], "gru": [1, 0, 2], "rnn": [0]}
ONNX_ORDER = {"lstm": [0, 2, 3, 1], "gru": [1, 0, 2], "rnn": [0]}
#: ONNX's P rows (i, o, f) taken from our peephole rows (i, f, o), and back.
ONNX_PEEPHOLE_ORDER = [0, 2, 1]

#: The cell-variant options of the layers' constructors (``layer.config()`` keys).
VARIANT_KEYS = ("activations", "activation_alpha", "activation_beta", "clip", "peepholes", "input_forget",
                "forget_gate", "proj_size", "layer_norm", "zoneout")


def inverse(order):
    inv = [0] * len(order)
    for i, p in enumerate(order):
        inv[p] = i
    return inv


def permute(a, order, axis=-1):
    """``a`` with its gate blocks (equal parts along ``axis``) taken in the order ``order``."""
    blocks = np.split(np.asarray(a), len(order), axis=axis)
    return np.concatenate([blocks[p] for p in order], axis=axis)


def prefix(k, d):
    return f"l{k}" + ("_reverse" if d else "")


def float_dtype(dt, default=np.float32):
    """float32 / float64 stay; other float types become ``default``; anything else is refused."""
    dt = np.dtype(dt)
    if dt in (np.dtype(np.float32), np.dtype(np.float64)):
        return dt
    if dt.kind == "f":
        return np.dtype(default)
    raise TypeError(f"weights of dtype {dt} cannot be converted")


def family(cfg):
    return FAMILY_OF_CELL[cfg["cell"]]


def directions(cfg):
    return 2 if cfg["bidirectional"] else 1


def make_config(fam, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                bidirectional=False, dtype=np.float32, reset_after=True, nonlinearity="tanh", reverse=False,
                **variant):
    """A ``layer.config()``-style dict (what the layer constructors take, plus "cell")."""
    if fam not in FAMILY_GATES:
        raise ValueError(f"cell: expected 'lstm', 'gru' or 'rnn', got {fam!r}")
    cfg = dict(cell="rnn_" + nonlinearity if fam == "rnn" else fam, input_size=int(input_size),
               hidden_size=int(hidden_size), num_layers=int(num_layers), bias=bool(bias),
               batch_first=bool(batch_first), dropout=float(dropout), bidirectional=bool(bidirectional),
               dtype=np.dtype(dtype).name)
    if fam == "gru":
        cfg["reset_after"] = bool(reset_after)
    if fam == "rnn":
        cfg["nonlinearity"] = nonlinearity
    if reverse:
        cfg["reverse"] = True
    cfg.update({k: v for k, v in variant.items() if v is not None})
    return cfg


def refuse(cfg, what, peer, allowed=(), reverse_ok=False, merge_ok=False):
    """ValueError naming the first option of ``cfg`` that ``peer`` cannot represent."""
    if cfg.get("merge", "concat") != "concat" and cfg["bidirectional"] and not merge_ok:
        raise ValueError(f"{what}: {peer} concatenates the two directions; this layer has merge={cfg['merge']!r}")
    if cfg.get("reverse") and not reverse_ok:
        raise ValueError(f"{what}: {peer} has no equivalent of reverse=True (a layer that runs only the "
                         f"reverse direction)")
    for name in VARIANT_KEYS:
        if name in cfg and name not in allowed:
            raise ValueError(f"{what}: {peer} has no equivalent of the cell option {name}={cfg[name]!r}")


def _gh(cfg):
    return FAMILY_GATES[family(cfg)] * cfg["hidden_size"]


def _check(a, want, where):
    if a.shape != tuple(want):
        raise ValueError(f"{where}: expected shape {tuple(want)}, got {a.shape}")
    return a


def _put(params, name, a, dt):
    params[name] = np.ascontiguousarray(a, dtype=dt)


def layer_input_width(cfg, k):
    """Features of layer k's input: input_size, then the previous layer's output."""
    if k == 0:
        return cfg["input_size"]
    r = cfg.get("proj_size") or cfg["hidden_size"]
    return 2 * r if cfg["bidirectional"] and cfg.get("merge", "concat") == "concat" else r


# ----------------------------------------------------------------------------------------------
# PyTorch: state_dict <-> params


def to_state_dict(cfg, params):
    """PyTorch's state_dict (NumPy arrays): weight_ih_l{k} = w_xᵀ, ...; weight_hr_l{k} = w_projᵀ."""
    refuse(cfg, "to_state_dict", "PyTorch", allowed=("proj_size",))
    out = {}
    for k in range(cfg["num_layers"]):
        for d in range(directions(cfg)):
            p, sfx = prefix(k, d), f"_l{k}" + ("_reverse" if d else "")
            out["weight_ih" + sfx] = np.ascontiguousarray(params[p + ".w_x"].T)
            out["weight_hh" + sfx] = np.ascontiguousarray(params[p + ".w_h"].T)
            if cfg["bias"]:
                out["bias_ih" + sfx] = params[p + ".b"].copy()
                out["bias_hh" + sfx] = params[p + ".b_h"].copy()
            if cfg.get("proj_size"):
                out["weight_hr" + sfx] = np.ascontiguousarray(params[p + ".w_proj"].T)
    return out


def from_state_dict(state_dict, cell="lstm", *, nonlinearity="tanh", batch_first=False, dropout=0.0, dtype=None):
    """(config, params) from a torch.nn.LSTM / GRU / RNN state_dict (tensors or arrays)."""
    fam = FAMILY_OF_CELL.get(cell, cell)
    if fam not in FAMILY_GATES:
        raise ValueError(f"cell: expected 'lstm', 'gru' or 'rnn', got {cell!r}")
    sd = {k: (v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)) for k, v in state_dict.items()}
    if "weight_ih_l0" not in sd:
        raise ValueError("state_dict: no 'weight_ih_l0' entry; expected the state_dict of a "
                         "torch.nn.LSTM / GRU / RNN")
    proj = sd["weight_hr_l0"].shape[0] if "weight_hr_l0" in sd else 0
    if proj and fam != "lstm":
        raise ValueError(f"state_dict: weight_hr_l0 (a projection) is an LSTM parameter, not one of a {fam}")
    num_layers = 0
    while f"weight_ih_l{num_layers}" in sd:
        num_layers += 1
    G = FAMILY_GATES[fam]
    GH, input_size = sd["weight_ih_l0"].shape
    if GH % G:
        raise ValueError(f"state_dict: weight_ih_l0 has {GH} rows, not a multiple of {G} gates of a {fam}")
    dt = float_dtype(dtype if dtype is not None else sd["weight_ih_l0"].dtype)
    cfg = make_config(fam, input_size, GH // G, num_layers, "bias_ih_l0" in sd, batch_first, dropout,
                      "weight_ih_l0_reverse" in sd, dt, nonlinearity=nonlinearity, proj_size=int(proj) or None)
    H, R = cfg["hidden_size"], proj or cfg["hidden_size"]
    shapes = {"w_x": None, "w_h": (R, GH), "b": (GH,), "b_h": (GH,), "w_proj": (H, proj)}
    params, expected = {}, set()
    for k in range(num_layers):
        for d in range(directions(cfg)):
            p, sfx = prefix(k, d), f"_l{k}" + ("_reverse" if d else "")
            shapes["w_x"] = (layer_input_width(cfg, k), GH)
            pairs = [("w_x", "weight_ih", True), ("w_h", "weight_hh", True)]
            pairs += [("b", "bias_ih", False), ("b_h", "bias_hh", False)] if cfg["bias"] else []
            pairs += [("w_proj", "weight_hr", True)] if proj else []
            for ours, theirs, transpose in pairs:
                key = theirs + sfx
                expected.add(key)
                if key not in sd:
                    raise ValueError(f"state_dict: missing {key!r}")
                want = shapes[ours][::-1] if transpose else shapes[ours]
                a = _check(sd[key], want, f"state_dict: {key}")
                _put(params, f"{p}.{ours}", a.T if transpose else a, dt)
    extra = set(sd) - expected
    if extra:
        raise ValueError(f"state_dict: unexpected entries {sorted(extra)}")
    return cfg, params


def torch_module_kind(module):
    """"lstm", "gru" or "rnn" for a torch.nn.LSTM / GRU / RNN; TypeError otherwise."""
    import torch  # noqa: PLC0415  (optional dependency)

    for cls, fam in ((torch.nn.LSTM, "lstm"), (torch.nn.GRU, "gru"), (torch.nn.RNN, "rnn")):
        if isinstance(module, cls):
            return fam
    raise TypeError(f"module: expected a torch.nn.LSTM, GRU or RNN, got {type(module).__name__}")


def from_torch(module, dtype=None):
    """(config, params) of a torch.nn.LSTM / GRU / RNN (all layers and directions)."""
    fam = torch_module_kind(module)
    cfg, params = from_state_dict(module.state_dict(), fam, nonlinearity=getattr(module, "nonlinearity", "tanh"),
                                  batch_first=module.batch_first, dropout=module.dropout, dtype=dtype)
    if cfg["input_size"] != module.input_size or cfg["hidden_size"] != module.hidden_size:
        raise ValueError("module: its state_dict does not match its input_size / hidden_size")
    return cfg, params


def to_torch(cfg, params):
    """An equivalent torch.nn.LSTM / GRU / RNN, of the layer's dtype."""
    sd = to_state_dict(cfg, params)
    import torch  # noqa: PLC0415  (optional dependency)

    fam = family(cfg)
    if fam == "gru" and not cfg["reset_after"]:
        raise ValueError("to_torch: torch.nn.GRU has no reset_after=False variant")
    kw = dict(num_layers=cfg["num_layers"], bias=cfg["bias"], batch_first=cfg["batch_first"],
              dropout=cfg["dropout"], bidirectional=cfg["bidirectional"],
              dtype=torch.float64 if cfg["dtype"] == "float64" else torch.float32)
    I, H = cfg["input_size"], cfg["hidden_size"]
    if fam == "lstm":
        module = torch.nn.LSTM(I, H, proj_size=cfg.get("proj_size", 0), **kw)
    elif fam == "gru":
        module = torch.nn.GRU(I, H, **kw)
    else:
        module = torch.nn.RNN(I, H, nonlinearity=cfg["nonlinearity"], **kw)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    return module


# ----------------------------------------------------------------------------------------------
# Activations: the names of Keras and ONNX against the core's (name, alpha, beta)

#: Keras 3 activation names and the core's function with its parameters. Keras' hard_sigmoid
#: is relu6(x + 3) / 6 = clamp(x/6 + 0.5, 0, 1); leaky_relu's slope 0.2; linear the identity.
KERAS_ACTIVATIONS = {
    "sigmoid": ("sigmoid", None, None),
    "tanh": ("tanh", None, None),
    "relu": ("relu", None, None),
    "hard_sigmoid": ("hard_sigmoid", 1.0 / 6.0, 0.5),
    "linear": ("affine", 1.0, 0.0),
    "softsign": ("softsign", None, None),
    "softplus": ("softplus", None, None),
    "elu": ("elu", 1.0, None),
    "leaky_relu": ("leaky_relu", 0.2, None),
}

#: ONNX's activation names (the spelling of the operator specification).
ONNX_ACTIVATION_NAMES = {"sigmoid": "Sigmoid", "hard_sigmoid": "HardSigmoid", "tanh": "Tanh", "relu": "Relu",
                         "softsign": "Softsign", "scaled_tanh": "ScaledTanh", "affine": "Affine",
                         "leaky_relu": "LeakyRelu", "elu": "Elu", "softplus": "Softplus",
                         "thresholded_relu": "ThresholdedRelu"}
_ONNX_ACTIVATION_OURS = {v.lower(): k for k, v in ONNX_ACTIVATION_NAMES.items()}


def cell_activations(cfg):
    """[(name, alpha, beta)] of the layer's cell, ONNX's order (LSTM f, g, h; GRU f, g; RNN f),
    the parameters resolved to their values (None where a function takes none)."""
    cell = cfg["cell"]
    names = cfg.get("activations") or DEFAULT_ACTIVATIONS[cell]
    alphas = cfg.get("activation_alpha") or [None] * len(names)
    betas = cfg.get("activation_beta") or [None] * len(names)
    out = []
    for name, a, b in zip(names, alphas, betas):
        da, db = ACTIVATIONS[name]
        out.append((name, da if a is None else float(a), db if b is None else float(b)))
    return out


def activation_options(fam, specs):
    """The constructor keywords (activations, activation_alpha, activation_beta, and for RNN
    nonlinearity) of a cell whose functions are ``specs`` [(name, alpha, beta)]; a parameter
    equal to the default (compared in float32, ONNX's precision) is left None."""
    names = [s[0] for s in specs]
    if fam == "rnn" and names[0] in ("tanh", "relu"):
        return {"nonlinearity": names[0]}
    out = {"nonlinearity": "tanh"} if fam == "rnn" else {}
    if fam != "rnn" and tuple(names) == DEFAULT_ACTIVATIONS[fam]:
        return out
    alphas, betas = [], []
    for name, a, b in specs:
        da, db = ACTIVATIONS[name]
        alphas.append(None if a is None or np.float32(a) == np.float32(da) else float(a))
        betas.append(None if b is None or np.float32(b) == np.float32(db) else float(b))
    out["activations"] = names
    if any(v is not None for v in alphas):
        out["activation_alpha"] = alphas
    if any(v is not None for v in betas):
        out["activation_beta"] = betas
    return out


def keras_activation(name, where):
    """The core's (name, alpha, beta) for a Keras activation name."""
    if callable(name):
        name = getattr(name, "__name__", repr(name))
    if name is None:
        name = "linear"
    if name not in KERAS_ACTIVATIONS:
        raise ValueError(f"{where}: the Keras activation {name!r} has no equivalent in lstmcore's cells "
                         f"(supported: {', '.join(KERAS_ACTIVATIONS)})")
    return KERAS_ACTIVATIONS[name]


def keras_activation_name(spec, where):
    """The Keras name of the core's activation (name, alpha, beta); ValueError when Keras has none."""
    for kname, (ours, a, b) in KERAS_ACTIVATIONS.items():
        if spec[0] == ours and (a is None or np.isclose(spec[1], a, rtol=0, atol=1e-12)) \
                and (b is None or np.isclose(spec[2], b, rtol=0, atol=1e-12)):
            return kname
    params = "".join(f", {n}={v}" for n, v in zip(("alpha", "beta"), spec[1:]) if v is not None)
    raise ValueError(f"{where}: Keras has no activation equal to {spec[0]}{params}")


# ----------------------------------------------------------------------------------------------
# Keras 3: get_weights() lists <-> params


def _keras_groups(weights, per_direction, D):
    """Per layer, per direction: the arrays of one Keras recurrent layer."""
    weights = list(weights)
    if not weights:
        raise ValueError("weights: empty")
    nested = not (hasattr(weights[0], "shape") and np.ndim(weights[0]) == 2)
    layers = [list(w) for w in weights] if nested else [weights]
    out = []
    for k, arrays in enumerate(layers):
        if len(arrays) != per_direction * D:
            raise ValueError(f"weights{f'[{k}]' if nested else ''}: expected {per_direction * D} arrays "
                             f"({'forward then backward layer, ' if D == 2 else ''}kernel, "
                             f"recurrent_kernel{', bias' if per_direction == 3 else ''}), got {len(arrays)}")
        out.append([[np.asarray(a) for a in arrays[d * per_direction:(d + 1) * per_direction]] for d in range(D)])
    return out


def keras_options(fam, activation, recurrent_activation, where="activation"):
    """Constructor keywords for Keras' activation / recurrent_activation of a cell."""
    act = keras_activation(activation, where)
    if fam == "rnn":
        return activation_options(fam, [act])
    rec = keras_activation(recurrent_activation, "recurrent_activation")
    return activation_options(fam, [rec, act] + ([act] if fam == "lstm" else []))


def from_keras_weights(weights, cell="lstm", *, bidirectional=False, use_bias=True, reset_after=True,
                       activation="tanh", recurrent_activation="sigmoid", go_backwards=False, merge="concat",
                       batch_first=True, dropout=0.0, dtype=None, unit_forget_bias=None):
    """(config, params) from Keras 3 ``get_weights()`` lists; see lstmcore.convert.from_keras."""
    fam = FAMILY_OF_CELL.get(cell, cell)
    if fam not in FAMILY_GATES:
        raise ValueError(f"cell: expected 'lstm', 'gru' or 'rnn', got {cell!r}")
    D = 2 if bidirectional else 1
    groups = _keras_groups(weights, 3 if use_bias else 2, D)
    if go_backwards and (bidirectional or len(groups) > 1):
        raise ValueError("go_backwards: only a single, unidirectional Keras layer runs backwards as one lstmcore "
                         "layer (Keras' stacked go_backwards layers alternate the time order)")
    G = FAMILY_GATES[fam]
    kernel0 = groups[0][0][0]
    input_size, GH = kernel0.shape
    if GH % G:
        raise ValueError(f"weights: kernel has {GH} columns, not a multiple of {G} gates of a {fam}")
    H = GH // G
    dt = float_dtype(dtype if dtype is not None else kernel0.dtype)
    opts = keras_options(fam, activation, recurrent_activation)
    nonlinearity = opts.pop("nonlinearity", "tanh")
    cfg = make_config(fam, input_size, H, len(groups), use_bias, batch_first, dropout, bidirectional, dt,
                      reset_after, nonlinearity, reverse=go_backwards, **opts)
    if merge not in ("concat", "sum"):
        raise ValueError(f"merge: expected 'concat' or 'sum' (Bidirectional's merge_mode), got {merge!r}")
    if bidirectional and merge != "concat":
        cfg["merge"] = merge
    order = KERAS_ORDER[fam]
    two = fam == "gru" and reset_after
    params = {}
    for k, dirs in enumerate(groups):
        for d, arrays in enumerate(dirs):
            p, where = prefix(k, d), f"weights (layer {k}{', backward' if d else ''})"
            _check(arrays[0], (layer_input_width(cfg, k), GH), f"{where}: kernel")
            _check(arrays[1], (H, GH), f"{where}: recurrent_kernel")
            _put(params, p + ".w_x", permute(arrays[0], order), dt)
            _put(params, p + ".w_h", permute(arrays[1], order), dt)
            if use_bias:
                bias = _check(arrays[2], (2, GH) if two else (GH,), f"{where}: bias")
                b, b_h = (bias[0], bias[1]) if two else (bias, np.zeros_like(bias))
                _put(params, p + ".b", permute(b, order), dt)
                _put(params, p + ".b_h", permute(b_h, order), dt)
    return cfg, params


def to_keras_weights(cfg, params):
    """Keras 3 ``set_weights()`` lists; see lstmcore.convert.to_keras."""
    refuse(cfg, "to_keras", "Keras's LSTM / GRU / SimpleRNN", allowed=("activations", "activation_alpha",
                                                                        "activation_beta"),
           reverse_ok=cfg["num_layers"] == 1, merge_ok=True)
    keras_config(cfg)  # refuses activations Keras has no name for
    fam = family(cfg)
    order = inverse(KERAS_ORDER[fam])
    out = []
    for k in range(cfg["num_layers"]):
        arrays = []
        for d in range(directions(cfg)):
            p = prefix(k, d)
            arrays += [permute(params[p + ".w_x"], order), permute(params[p + ".w_h"], order)]
            if cfg["bias"]:
                b, b_h = params[p + ".b"], params[p + ".b_h"]
                if fam == "gru" and cfg["reset_after"]:
                    arrays.append(np.stack([permute(b, order), permute(b_h, order)]))
                else:
                    arrays.append(permute(b + b_h, order))
        out.append(arrays)
    return out if cfg["num_layers"] > 1 else out[0]


def keras_config(cfg):
    """The keyword arguments of the Keras layer (LSTM / GRU / SimpleRNN) of each lstmcore layer."""
    fam = family(cfg)
    acts = cell_activations(cfg)
    where = "to_keras"
    kw = dict(units=cfg["hidden_size"], use_bias=cfg["bias"], activation=keras_activation_name(acts[-1], where),
              return_sequences=True, return_state=True)
    if fam != "rnn":
        kw["recurrent_activation"] = keras_activation_name(acts[0], where)
        if fam == "lstm" and acts[1] != acts[2]:
            raise ValueError(f"{where}: Keras's LSTM uses one activation for the candidate and the cell output; "
                             f"this layer has {acts[1][0]} and {acts[2][0]}")
    if fam == "lstm":
        kw["unit_forget_bias"] = False  # the weights set are the whole bias
    if fam == "gru":
        kw["reset_after"] = cfg["reset_after"]
    if cfg.get("reverse"):
        kw["go_backwards"] = True
    return kw


_KERAS_CELLS = {"LSTM": "lstm", "GRU": "gru", "SimpleRNN": "rnn"}


def _keras_cell_options(c, where):
    """Keywords of from_keras_weights from a Keras LSTM / GRU / SimpleRNN config."""
    kw = dict(use_bias=c.get("use_bias", True), activation=c.get("activation", "tanh"),
              go_backwards=bool(c.get("go_backwards", False)))
    if "recurrent_activation" in c:
        kw["recurrent_activation"] = c["recurrent_activation"]
    if "reset_after" in c:
        kw["reset_after"] = c["reset_after"]
    if c.get("stateful"):
        raise ValueError(f"{where}: stateful=True keeps the state between calls; an lstmcore layer takes it as "
                         f"an argument (import the weights of a stateful=False copy)")
    return kw


def keras_layer_options(layer, where="layer"):
    """(cell, keywords of from_keras_weights) of a Keras LSTM / GRU / SimpleRNN, a Bidirectional
    wrapping one (merge_mode "concat" or "sum"), or the get_config() dict of either
    (a Bidirectional's holds its layer's class_name; a plain one has no class: cell None)."""
    if isinstance(layer, dict):
        c, cls = layer, None
        if "layer" in c:  # a Bidirectional's config
            inner = c["layer"]
            cls, fwd = inner.get("class_name"), inner.get("config", {})
            bwd = (c.get("backward_layer") or {}).get("config", dict(fwd, go_backwards=not fwd.get("go_backwards")))
            merge = c.get("merge_mode", "concat")
            bidirectional = True
        else:
            bidirectional = False
    else:
        cls = type(layer).__name__
        bidirectional = cls == "Bidirectional"
        if bidirectional:
            fwd, bwd = layer.forward_layer.get_config(), layer.backward_layer.get_config()
            cls, merge = type(layer.forward_layer).__name__, layer.merge_mode
        else:
            c = layer.get_config()
    if bidirectional:
        if merge not in ("concat", "sum"):
            raise ValueError(f"{where}: Bidirectional(merge_mode={merge!r}) has no lstmcore equivalent "
                             f"(merge='concat' or 'sum')")
        if fwd.get("go_backwards") or not bwd.get("go_backwards", True):
            raise ValueError(f"{where}: a Bidirectional layer whose forward layer runs backwards (or backward layer "
                             f"forwards) has no lstmcore equivalent")
        for key in ("units", "activation", "recurrent_activation", "use_bias", "reset_after"):
            if fwd.get(key) != bwd.get(key):
                raise ValueError(f"{where}: the two directions of the Bidirectional layer differ in {key} "
                                 f"({fwd.get(key)!r} and {bwd.get(key)!r})")
        c = fwd
    if cls is not None and cls not in _KERAS_CELLS:
        raise TypeError(f"{where}: expected a Keras LSTM, GRU, SimpleRNN or Bidirectional, got {cls}")
    kw = _keras_cell_options(c, where)
    if bidirectional:
        kw.update(bidirectional=True, go_backwards=False, merge=merge)
    return (_KERAS_CELLS[cls] if cls else None), kw


def _is_keras_layer(obj):
    return hasattr(obj, "get_weights") and hasattr(obj, "get_config")


KERAS_DEFAULTS = dict(bidirectional=False, use_bias=True, reset_after=True, activation="tanh",
                      recurrent_activation="sigmoid", go_backwards=False, merge="concat", unit_forget_bias=None)


def from_keras(weights, cell=None, *, config=None, **kw):
    """(config, params) from Keras 3 layers or weights; see lstmcore.convert.from_keras. With
    Keras layers or configs, the option keywords must keep their defaults (the layers hold
    the options)."""
    objs = weights if isinstance(weights, (list, tuple)) and weights and _is_keras_layer(weights[0]) else (
        [weights] if _is_keras_layer(weights) else None)
    if objs is not None:
        if config is not None:
            raise ValueError("config: given with Keras layers, which hold their configuration")
        sources = objs
        weights = [o.get_weights() for o in objs]
        weights = weights if len(objs) > 1 else weights[0]
    elif config is not None:
        sources = config if isinstance(config, (list, tuple)) else [config]
    else:
        return from_keras_weights(weights, cell or "lstm", **kw)
    given = sorted(k for k, v in kw.items() if k in KERAS_DEFAULTS and v != KERAS_DEFAULTS[k])
    if given:
        raise ValueError(f"{', '.join(given)}: given with Keras layers or configs, which hold the options")
    kw = {k: v for k, v in kw.items() if k not in KERAS_DEFAULTS}
    read = [keras_layer_options(o, f"layer {k}" if len(sources) > 1 else "layer") for k, o in enumerate(sources)]
    for k, (c, opts) in enumerate(read[1:], 1):
        if (c, opts) != read[0]:
            raise ValueError(f"layer {k}: its cell or options differ from layer 0's ({read[0]} and {(c, opts)}); an "
                             f"lstmcore stack runs one cell")
    found, opts = read[0]
    if found is not None and cell is not None and FAMILY_OF_CELL.get(cell, cell) != found:
        raise TypeError(f"expected a Keras layer of a {cell}, got one of a {found}")
    return from_keras_weights(weights, found or cell or "lstm", **dict(opts, **kw))


def build_keras_layers(cfg, params):
    """Keras layers (built, their weights set) equal to the layer: one per lstmcore layer, a
    Bidirectional for a bidirectional one (merge_mode as the layer's merge)."""
    import keras  # noqa: PLC0415  (optional dependency)

    weights = to_keras_weights(cfg, params)
    weights = weights if cfg["num_layers"] > 1 else [weights]
    kw = keras_config(cfg)
    cls = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU, "rnn": keras.layers.SimpleRNN}[family(cfg)]
    out = []
    for k in range(cfg["num_layers"]):
        if cfg["bidirectional"]:
            kl = keras.layers.Bidirectional(cls(**dict(kw, return_state=False)),
                                            merge_mode=cfg.get("merge", "concat"))
        else:
            kl = cls(**kw)
        kl.build((None, None, layer_input_width(cfg, k)))
        kl.set_weights(weights[k])
        out.append(kl)
    return out


# ----------------------------------------------------------------------------------------------
# ONNX: one node's W, R, B, P and attributes <-> params

ONNX_OPS = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}
ONNX_FAMILY = {v: k for k, v in ONNX_OPS.items()}


def onnx_node(cfg, params, k):
    """(tensors, attributes) of layer k as one ONNX node: tensors W, R, B (None without bias),
    P (None without peepholes); attributes hidden_size, direction and the cell's options
    (activation parameters written out in full: ONNX Runtime takes 0 for some it is not given)."""
    refuse(cfg, "to_onnx", "ONNX's LSTM / GRU / RNN operators",
           allowed=("activations", "activation_alpha", "activation_beta", "clip", "peepholes", "input_forget"),
           reverse_ok=True, merge_ok=True)  # the graph's glue joins the directions
    fam = family(cfg)
    D = directions(cfg)
    order = inverse(ONNX_ORDER[fam])
    ps = [prefix(k, d) for d in range(D)]
    W = np.stack([permute(params[p + ".w_x"], order).T for p in ps])
    R = np.stack([permute(params[p + ".w_h"], order).T for p in ps])
    B = P = None
    if cfg["bias"]:
        B = np.stack([np.concatenate([permute(params[p + ".b"], order), permute(params[p + ".b_h"], order)])
                      for p in ps])
    if cfg.get("peepholes"):
        P = np.stack([params[p + ".peepholes"][ONNX_PEEPHOLE_ORDER].reshape(-1) for p in ps])
    direction = "bidirectional" if D == 2 else ("reverse" if cfg.get("reverse") else "forward")
    attrs = dict(hidden_size=cfg["hidden_size"], direction=direction)
    if fam == "gru":
        attrs["linear_before_reset"] = int(cfg["reset_after"])
    acts = cell_activations(cfg)
    if fam == "rnn" or "activations" in cfg:
        attrs["activations"] = [ONNX_ACTIVATION_NAMES[a[0]] for a in acts] * D
        alpha = [a[1] for a in acts if a[1] is not None] * D
        beta = [a[2] for a in acts if a[2] is not None] * D
        if alpha:
            attrs["activation_alpha"] = alpha
        if beta:
            attrs["activation_beta"] = beta
    if cfg.get("clip") is not None:
        attrs["clip"] = float(cfg["clip"])
    if cfg.get("input_forget"):
        attrs["input_forget"] = 1
    return dict(W=W, R=R, B=B, P=P), attrs


def text(v):
    return v.decode() if isinstance(v, bytes) else v


def _onnx_activations(op, n, D, where):
    """[(name, alpha, beta)] of one direction of a node, checked equal across directions."""
    fam = ONNX_FAMILY[op]
    per = len(DEFAULT_ACTIVATIONS[fam if fam != "rnn" else "rnn_tanh"])
    names = n.get("activations")
    if not names:
        names = [ONNX_ACTIVATION_NAMES[a] for a in DEFAULT_ACTIVATIONS[fam if fam != "rnn" else "rnn_tanh"]] * D
    names = [text(a) for a in names]
    if len(names) != per * D:
        raise ValueError(f"{where}: expected {per * D} activations ({per} per direction), got {len(names)}")
    alphas = list(n.get("activation_alpha") or [])
    betas = list(n.get("activation_beta") or [])
    specs = []
    for name in names:
        ours = _ONNX_ACTIVATION_OURS.get(name.lower())
        if ours is None:
            raise ValueError(f"{where}: the activation {name!r} is not one of ONNX's "
                             f"({', '.join(ONNX_ACTIVATION_NAMES.values())})")
        da, db = ACTIVATIONS[ours]
        a = (float(alphas.pop(0)) if alphas else da) if da is not None else None
        b = (float(betas.pop(0)) if betas else db) if db is not None else None
        specs.append((ours, a, b))
    if alphas or betas:
        raise ValueError(f"{where}: activation_alpha / activation_beta have more values than the activations "
                         f"{names} take")
    if D == 2 and specs[:per] != specs[per:]:
        raise ValueError(f"{where}: the two directions have different activations ({specs[:per]} and "
                         f"{specs[per:]}); an lstmcore layer runs one cell in both")
    return specs[:per]


def _node_options(n, where):
    """The layer keywords a node's attributes and inputs stand for, checked."""
    op = n["op_type"]
    fam = ONNX_FAMILY.get(op)
    if fam is None:
        raise ValueError(f"op_type: expected LSTM, GRU or RNN, got {op!r}")
    dirn = text(n.get("direction") or "forward")
    if dirn not in ("forward", "reverse", "bidirectional"):
        raise ValueError(f"{where}: unknown direction {dirn!r}")
    D = 2 if dirn == "bidirectional" else 1
    opts = dict(op_type=op, direction=dirn, layout=int(n.get("layout") or 0))
    opts.update(activation_options(fam, _onnx_activations(op, n, D, where)))
    if n.get("clip") is not None:
        opts["clip"] = float(n["clip"])
    if fam == "gru":
        opts["reset_after"] = bool(n.get("linear_before_reset") or 0)
    elif n.get("linear_before_reset"):
        raise ValueError(f"{where}: linear_before_reset is a GRU attribute")
    if n.get("input_forget"):
        if fam != "lstm":
            raise ValueError(f"{where}: input_forget is an LSTM attribute")
        opts["input_forget"] = True
    if n.get("P") is not None:
        if fam != "lstm":
            raise ValueError(f"{where}: P (peepholes) is an LSTM input")
        opts["peepholes"] = True
    return opts


def from_onnx_nodes(nodes, dtype=None, merge="concat"):
    """(config, params, state) from node descriptions, one per layer of the stack (dicts: op_type,
    W, R, B, P, initial_h, initial_c and the attributes). The nodes must agree on the cell and
    its options and on the direction. ``state`` is built from the nodes' initial_h /
    initial_c arrays (zeros where a node has none; None when no node has one). ``merge``: how
    node k > 0 reads node k-1's directions (the graph's glue says)."""
    first = None
    shapes = []
    for k, n in enumerate(nodes):
        where = f"node {k} ({n['op_type']})"
        opts = _node_options(n, where)
        if first is None:
            first = opts
        elif opts != first:
            diff = sorted(key for key in set(opts) | set(first) if opts.get(key) != first.get(key))
            raise ValueError(f"{where}: its {', '.join(diff)} differ from node 0's "
                             f"({', '.join(f'{key}={first.get(key)!r}' for key in diff)}); an lstmcore layer runs "
                             f"one cell in one direction for all its layers")
        D = 2 if opts["direction"] == "bidirectional" else 1
        W, R = np.asarray(n["W"]), np.asarray(n["R"])
        G = FAMILY_GATES[ONNX_FAMILY[n["op_type"]]]
        if W.ndim != 3 or R.ndim != 3 or W.shape[0] != D or R.shape[0] != D or R.shape[1] != G * R.shape[2] \
                or W.shape[1] != R.shape[1]:
            raise ValueError(f"{where}: expected W (D, {G}·H, I) and R (D, {G}·H, H) with D={D}, got "
                             f"W {W.shape}, R {R.shape}")
        H = R.shape[2]
        if n.get("hidden_size") is not None and int(n["hidden_size"]) != H:
            raise ValueError(f"{where}: hidden_size={n['hidden_size']} does not match R {R.shape}")
        width = D * H if merge == "concat" else H
        if k and (H != shapes[0][1] or W.shape[2] != width):
            raise ValueError(f"{where}: expected W (D, {G}·{shapes[0][1]}, {width}) for an inner layer "
                             f"reading the previous node's output, got {W.shape}")
        shapes.append((W.shape[2], H))
    fam = ONNX_FAMILY[first["op_type"]]
    D = 2 if first["direction"] == "bidirectional" else 1
    (I, H), G = shapes[0], FAMILY_GATES[fam]
    bias = any(n.get("B") is not None for n in nodes)
    dt = float_dtype(dtype if dtype is not None else np.asarray(nodes[0]["W"]).dtype)
    variant = {key: first[key] for key in VARIANT_KEYS if key in first}
    cfg = make_config(fam, I, H, len(nodes), bias, first["layout"] == 1, 0.0, D == 2, dt,
                      first.get("reset_after", True), first.get("nonlinearity", "tanh"),
                      reverse=first["direction"] == "reverse", **variant)
    if merge != "concat":
        cfg["merge"] = merge
    order = ONNX_ORDER[fam]
    params = {}
    h_parts, c_parts = [], []
    for k, n in enumerate(nodes):
        where = f"node {k} ({n['op_type']})"
        W, R = np.asarray(n["W"]), np.asarray(n["R"])
        B = None if n.get("B") is None else _check(np.asarray(n["B"]), (D, 2 * G * H), f"{where}: B")
        P = None if n.get("P") is None else _check(np.asarray(n["P"]), (D, 3 * H), f"{where}: P")
        for d in range(D):
            p = prefix(k, d)
            _put(params, p + ".w_x", permute(W[d].T, order), dt)
            _put(params, p + ".w_h", permute(R[d].T, order), dt)
            if bias:
                wb, rb = (np.zeros(G * H), np.zeros(G * H)) if B is None else (B[d, :G * H], B[d, G * H:])
                _put(params, p + ".b", permute(wb, order), dt)
                _put(params, p + ".b_h", permute(rb, order), dt)
            if P is not None:
                _put(params, p + ".peepholes", P[d].reshape(3, H)[ONNX_PEEPHOLE_ORDER], dt)
        for parts, key in ((h_parts, "initial_h"), (c_parts, "initial_c")):
            s = n.get(key)
            if s is not None:
                s = np.asarray(s)
                if first["layout"] == 1 and s.ndim == 3:  # layout=1: (B, D, H)
                    s = s.transpose(1, 0, 2)
                if s.ndim != 3 or s.shape[0] != D or s.shape[2] != H:
                    raise ValueError(f"{where}: {key}: expected {'(B, D, H)' if first['layout'] else '(D, B, H)'}"
                                     f" with D={D}, H={H}, got {np.shape(n.get(key))}")
            parts.append(s)
    state = None
    if any(s is not None for s in h_parts + c_parts):
        Bsz = {s.shape[1] for s in h_parts + c_parts if s is not None}
        if len(Bsz) != 1:
            raise ValueError(f"initial states: the nodes' batch sizes differ ({sorted(Bsz)})")
        Bsz = Bsz.pop()

        def full(parts):
            return np.ascontiguousarray(np.concatenate([np.zeros((D, Bsz, H)) if s is None else s for s in parts]),
                                        dtype=dt)

        state = (full(h_parts), full(c_parts)) if fam == "lstm" else full(h_parts)
    return cfg, params, state
