"""ONNX models of layers: reading a graph's recurrent nodes (and the glue between them) into a
layer's config, params and state, and writing a layer as a graph. A leaf beside _formats
(which converts the tensors of one node); the onnx package is imported by these functions.

Reading. The graph's LSTM / GRU / RNN nodes, in graph order, are the layers of the stack.
Their W, R, B and P are initializers, Constant nodes or graph inputs whose values the caller
gives (``weights``). What connects the nodes is checked by running it: the ops between the
model's input and node 0's X, between node k-1's Y and node k's X, and those computing a
node's initial state are cut out of the graph and run by onnx.reference on probe tensors of
distinct values, and the result must be the data movement the stack does — so whatever glue
an exporter writes (Transpose, Reshape, Squeeze, Slice, shapes computed at run time, ...) is
accepted when it moves the data the stack's way, and refused by name when it computes
anything else.
"""
from __future__ import annotations

import json
import os

import numpy as np

from . import _formats as F

_STATE_INPUTS = {5: "initial_h", 6: "initial_c"}
_PROBE_T, _PROBE_B = 3, 2


def onnx_module():
    try:
        import onnx  # noqa: PLC0415  (optional dependency)
    except ImportError as exc:  # pragma: no cover - exercised only without onnx
        raise ImportError("this converter needs the onnx package (pip install onnx)") from exc
    return onnx


def _constants(onnx, graph):
    """name -> array of the initializers and Constant nodes."""
    from onnx import numpy_helper  # noqa: PLC0415

    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type != "Constant":
            continue
        for a in node.attribute:
            if a.name == "value":
                values[node.output[0]] = numpy_helper.to_array(a.t)
            elif a.name in ("value_float", "value_floats", "value_int", "value_ints"):
                values[node.output[0]] = np.asarray(onnx.helper.get_attribute_value(a))
    return values


class _Graph:
    """The producers of a graph's values, and the cutting out and running of its glue."""

    def __init__(self, onnx, model, known):
        graph = model.graph
        self.onnx, self.graph, self.known, self.opsets = onnx, graph, known, list(model.opset_import)
        self.producer = {out: node for node in graph.node for out in node.output if out}
        self.inputs = {i.name: i for i in graph.input if i.name not in known}

    def declared_shape(self, name):
        vi = self.inputs.get(name)
        if vi is None or not vi.type.tensor_type.HasField("shape"):
            return None
        return [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]

    def cut(self, target, stops):
        """(nodes in graph order, graph inputs reached, stops reached) computing ``target`` from
        the ``stops``, the constants and the graph inputs."""
        seen, nodes, inputs, reached = set(), [], set(), set()
        todo = [target]
        while todo:
            name = todo.pop()
            if name in seen or not name:
                continue
            seen.add(name)
            if name in stops:
                reached.add(name)
            elif name in self.inputs:
                inputs.add(name)
            elif name in self.known and name not in self.producer:
                pass
            elif name in self.producer:
                node = self.producer[name]
                if id(node) not in {id(n) for n in nodes}:
                    nodes.append(node)
                    todo.extend(node.input)
                    for g in (a.g for a in node.attribute if a.HasField("g")):  # subgraphs read outer names
                        todo.extend(i for n in g.node for i in n.input)
            else:
                raise ValueError(f"model: the value {name!r} has no producer")
        order = {id(n): i for i, n in enumerate(self.graph.node)}
        nodes.sort(key=lambda n: order[id(n)])
        return nodes, inputs, reached

    def run(self, target, feeds, nodes):
        """Runs ``nodes`` (a cut) on ``feeds``; returns the value of ``target``."""
        if target in feeds:
            return feeds[target]
        from onnx import helper, numpy_helper  # noqa: PLC0415
        from onnx.reference import ReferenceEvaluator  # noqa: PLC0415

        used = {i for n in nodes for i in n.input} | {target}
        inits = [numpy_helper.from_array(np.asarray(self.known[k]), k) for k in sorted(used)
                 if k in self.known and k not in self.producer and k not in feeds]
        ins = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(np.asarray(v).dtype), None)
               for k, v in feeds.items()]
        outs = [helper.make_value_info(target, onnx_module().TypeProto())]
        g = helper.make_graph(list(nodes), "glue", ins, outs, initializer=inits)
        model = helper.make_model(g, opset_imports=self.opsets)
        try:
            return np.asarray(ReferenceEvaluator(model).run(None, dict(feeds))[0])
        except Exception as exc:  # noqa: BLE001 - whatever the ops raise on the probes
            raise ValueError(f"model: the ops computing {target!r} ({', '.join(n.op_type for n in nodes)}) failed on "
                             f"probe tensors of sizes T={_PROBE_T}, B={_PROBE_B} or the model's declared ones: "
                             f"{type(exc).__name__}: {exc}") from exc


def _probe(shape, rng, dtype=np.float64):
    """Distinct values in a random order: any wrong move of data shows."""
    n = int(np.prod(shape))
    return (rng.permutation(n).astype(dtype) + 1.0).reshape(shape) * np.where(rng.random(shape) < 0.5, -1, 1)


def _node_description(onnx, g, node, where, stops):
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    inputs = list(node.input) + [""] * (8 - len(node.input))
    desc = dict(op_type=node.op_type, **{k: attrs.get(k) for k in (
        "direction", "hidden_size", "linear_before_reset", "activations", "activation_alpha", "activation_beta",
        "clip", "input_forget", "layout")})
    for i, key in ((1, "W"), (2, "R"), (3, "B"), (7, "P")):
        name = inputs[i]
        if i == 7 and node.op_type != "LSTM":
            continue
        if not name:
            if i < 3:
                raise ValueError(f"{where}: input {key} is missing")
            continue
        if name not in g.known:
            nodes, reached_inputs, reached = g.cut(name, stops)
            if reached_inputs or reached:
                raise ValueError(f"{where}: input {key} ({name!r}) is neither an initializer, a Constant node's output "
                                 f"nor computed from those; pass its value in weights={{{name!r}: array}}")
            g.known[name] = g.run(name, {}, nodes)  # e.g. gates reordered by Slice / Concat of constants
        desc[key] = g.known[name]
    return desc, inputs


def read_model(model_or_path, weights=None, dtype=None):
    """(config, params, state) of the recurrent stack of an ONNX model; see lstmcore.convert.from_onnx."""
    onnx = onnx_module()
    model = onnx.load(os.fspath(model_or_path)) if isinstance(model_or_path, (str, os.PathLike)) else model_or_path
    graph = model.graph
    known = _constants(onnx, graph)
    for name, value in (weights or {}).items():
        if name not in {i.name for i in graph.input}:
            raise ValueError(f"weights: {name!r} is not an input of the graph (inputs: "
                             f"{[i.name for i in graph.input]})")
        known[name] = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
    g = _Graph(onnx, model, known)
    rnodes = [n for n in graph.node if n.op_type in F.ONNX_FAMILY]
    if not rnodes:
        raise ValueError("model: its graph has no LSTM, GRU or RNN node (an exporter that unrolls the recurrence "
                         "into MatMul / Add ops writes none: export with one that keeps the recurrent operator)")
    stops = {out for n in rnodes for out in n.output if out}
    descs, inputs = [], []
    for k, node in enumerate(rnodes):
        d, ins = _node_description(onnx, g, node, f"node {k} ({node.op_type} {node.name!r})", stops)
        descs.append(d)
        inputs.append(ins)
    rng = np.random.default_rng(0)
    layout1 = int(descs[0].get("layout") or 0) == 1
    D = 2 if F.text(descs[0].get("direction") or "forward") == "bidirectional" else 1
    H = np.asarray(descs[0]["R"]).shape[2]

    # node 0's X: the model's input, time-major or batch-major
    x_name = inputs[0][0]
    nodes, reached_inputs, reached = g.cut(x_name, stops)
    if reached or len(reached_inputs) != 1:
        raise ValueError(f"node 0: its input X is not computed from one graph input alone (it reads "
                         f"{sorted(reached_inputs | reached)})")
    source = reached_inputs.pop()
    shape = g.declared_shape(source) or [None] * 3
    if len(shape) != 3:
        raise ValueError(f"model: the input {source!r} has {len(shape)} dimensions, expected 3")
    a, b = shape[0] or _PROBE_T, shape[1] or _PROBE_B
    I = np.asarray(descs[0]["W"]).shape[2]
    fdt = np.asarray(descs[0]["W"]).dtype
    probe = _probe((a, b, I), rng, fdt)
    got = g.run(x_name, {source: probe}, nodes)
    if got.shape == probe.shape and np.array_equal(got, probe):
        batch_first = layout1
    elif got.shape == (b, a, I) and np.array_equal(got, probe.transpose(1, 0, 2)):
        batch_first = not layout1
    else:
        raise ValueError(f"node 0: its input X is computed from {source!r} by ops that do more than move it "
                         f"({', '.join(sorted({n.op_type for n in nodes}))})")
    T, B = (b, a) if batch_first else (a, b)
    x_feed = {source: probe}

    # node k's X: node k-1's Y, its directions concatenated (or summed) along the features
    merge = "concat"
    for k in range(1, len(rnodes)):
        y_name = rnodes[k - 1].output[0] if rnodes[k - 1].output else ""
        nodes, reached_inputs, reached = g.cut(inputs[k][0], stops)
        if reached != {y_name} or reached_inputs - {source}:
            raise ValueError(f"node {k}: its input X is not computed from node {k - 1}'s output Y alone (it reads "
                             f"{sorted(reached | reached_inputs - {source})})")
        y = _probe((B, T, D, H) if layout1 else (T, D, B, H), rng, fdt)
        got = g.run(inputs[k][0], dict(x_feed, **{y_name: y}), nodes)
        tbdh = y.transpose(1, 0, 2, 3) if layout1 else y.transpose(0, 2, 1, 3)
        want = {"concat": tbdh.reshape(T, B, D * H), "sum": tbdh.sum(axis=2)}
        if layout1:
            want = {m: v.transpose(1, 0, 2) for m, v in want.items()}
        for m, w in want.items():
            if got.shape == w.shape and np.array_equal(got, w) and (m == "concat" or D == 2):
                if k > 1 and m != merge:
                    raise ValueError(f"node {k}: its input joins node {k - 1}'s directions by {m}, node 1's by "
                                     f"{merge}")
                merge = m
                break
        else:
            raise ValueError(f"node {k}: its input X is computed from node {k - 1}'s output Y by ops that do more "
                             f"than join its directions ({', '.join(sorted({n.op_type for n in nodes}))})")

    # sequence_lens: one graph input for every node, or none
    lens = {ins[4] for ins in inputs}
    if lens != {""}:
        if len(lens) != 1:
            raise ValueError("model: the recurrent nodes read different sequence_lens (or some none); an lstmcore "
                             "layer applies one set of lengths to every layer")
        name = lens.pop()
        if name in known:
            raise ValueError(f"model: sequence_lens ({name!r}) is a constant of the model; lstmcore takes lengths per "
                             f"call: pass seq_lengths={np.asarray(known[name]).tolist()} to the layer")
        nodes, reached_inputs, reached = g.cut(name, stops)
        src = reached_inputs.pop() if len(reached_inputs) == 1 and not reached else None
        probe_lens = np.arange(B, 0, -1) % T + 1
        if src is None or not np.array_equal(g.run(name, dict(x_feed, **{src: probe_lens.astype(np.int32)}), nodes),
                                             probe_lens):
            raise ValueError(f"model: sequence_lens ({name!r}) is not a graph input (nor one cast)")

    # initial states: constants (returned), zeros written as glue (no state), or graph inputs
    # (the layer's state argument at run time: the nodes' rows k·D .. (k+1)·D of one input)
    runtime = set()  # the states that are graph inputs
    out_index = {out: j for n in rnodes for j, out in enumerate(n.output) if out}

    def output_probes(names, scale):  # other nodes' outputs, read by glue for their shapes
        return {n: scale * _probe(((B, T, D, H) if layout1 else (T, D, B, H)) if out_index[n] == 0 else
                                  ((B, D, H) if layout1 else (D, B, H)), rng, fdt) for n in names}

    for k, node in enumerate(rnodes):
        for i, key in _STATE_INPUTS.items():
            name = inputs[k][i]
            if not name or (key == "initial_c" and node.op_type != "LSTM"):
                continue
            if name in known:
                descs[k][key] = known[name]
                continue
            nodes, reached_inputs, reached = g.cut(name, stops)
            others = reached_inputs - {source}
            if not others:  # computed from shapes alone, as exporters write a zero state
                value = g.run(name, dict(x_feed, **output_probes(reached, 1)), nodes)
                if not np.array_equal(value, g.run(name, dict({source: -2 * probe}, **output_probes(reached, -3)),
                                                   nodes)):
                    raise ValueError(f"node {k}: {key} is computed from the values of "
                                     f"{sorted(reached | {source})}; an lstmcore layer takes its initial state as an "
                                     f"argument")
                descs[k][key] = None if not np.any(value) else value
                continue
            if len(others) != 1:
                raise ValueError(f"node {k}: {key} is computed from several graph inputs {sorted(others)}")
            src = others.pop()
            if not nodes:
                runtime.add(key)
                continue
            # the input is (L·D, B, H) (lstmcore's and PyTorch's state) or (B, L·D, H) (ONNX's
            # layout 1); the node takes (D, B, H) (layout 0) or (B, D, H) (layout 1)
            rows, sl = len(rnodes) * D, slice(k * D, (k + 1) * D)
            for form in ("rows_first", "batch_first"):
                if len(g.declared_shape(src) or [None] * 3) != 3:
                    continue
                s = _probe((rows, B, H) if form == "rows_first" else (B, rows, H), rng, fdt)
                want = s[sl] if form == "rows_first" else s[:, sl].transpose(1, 0, 2)
                want = want.transpose(1, 0, 2) if layout1 else want
                got = g.run(name, dict(x_feed, **output_probes(reached, 1), **{src: s}), nodes)
                if got.shape == want.shape and np.array_equal(got, want):
                    runtime.add(key)
                    break
            else:
                raise ValueError(f"node {k}: {key} is computed from the graph input {src!r} by ops other than taking "
                                 f"the node's rows {k * D}..{(k + 1) * D - 1}")
    for key in runtime:
        if any(descs[k].get(key) is not None for k in range(len(rnodes))):
            raise ValueError(f"model: {key} is a graph input for some nodes and a constant for others")
    cfg, params, state = F.from_onnx_nodes(descs, dtype, merge)
    cfg["batch_first"] = batch_first
    _apply_metadata(model, cfg)
    return cfg, params, state


def _apply_metadata(model, cfg):
    """What to_onnx stored beside the graph (the layer's config): the options ONNX has no
    place for (dropout) and the exact values of those it keeps in float32 (clip, the
    activations' alpha and beta), where they agree with the graph."""
    props = {p.key: p.value for p in model.metadata_props}
    if "lstmcore.config" not in props:
        return
    saved = json.loads(props["lstmcore.config"])
    cfg["dropout"] = float(saved.get("dropout", cfg["dropout"]))

    def same32(a, b):
        if isinstance(a, list) and isinstance(b, list):
            return len(a) == len(b) and all(same32(x, y) for x, y in zip(a, b))
        if a is None or b is None:
            return a is None and b is None
        return np.float32(a) == np.float32(b)

    for key in ("clip", "activation_alpha", "activation_beta"):
        if key in cfg and key in saved and same32(cfg[key], saved[key]):
            cfg[key] = saved[key]


def write_model(cfg, params, *, seq_lengths=False, initial_state=False, dtype=None, opset=17, layout=0):
    """An ONNX ModelProto computing the layer; see lstmcore.convert.to_onnx."""
    onnx = onnx_module()
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415

    F.refuse(cfg, "to_onnx", "ONNX's LSTM / GRU / RNN operators",
             allowed=("activations", "activation_alpha", "activation_beta", "clip", "peepholes", "input_forget"),
             reverse_ok=True, merge_ok=True)
    bf = cfg["batch_first"]
    if layout not in (0, 1) or (layout == 1 and not bf):
        raise ValueError(f"layout: expected 0, or 1 (batch-major nodes) for a batch_first layer, got {layout!r} "
                         f"(batch_first={bf})")
    fam = F.family(cfg)
    op = F.ONNX_OPS[fam]
    L, D, H = cfg["num_layers"], F.directions(cfg), cfg["hidden_size"]
    dt = F.float_dtype(cfg["dtype"] if dtype is None else dtype)
    elem = TensorProto.DOUBLE if dt == np.float64 else TensorProto.FLOAT
    inits, nodes = [], []

    def const(name, value):
        if name not in {t.name for t in inits}:
            value = np.asarray(value)
            inits.append(numpy_helper.from_array(value.astype(dt) if value.dtype.kind == "f" else value, name))
        return name

    def add(op_type, inputs, output, **attrs):
        nodes.append(helper.make_node(op_type, inputs, [output], **attrs))
        return output

    inputs = [helper.make_tensor_value_info("X", elem, ["B", "T", cfg["input_size"]] if bf
                                            else ["T", "B", cfg["input_size"]])]
    state_shape = [L * D, "B", H]
    if seq_lengths:
        inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, ["B"]))
    state_names = ["initial_h"] + (["initial_c"] if fam == "lstm" else [])
    if initial_state:
        inputs += [helper.make_tensor_value_info(n, elem, state_shape) for n in state_names]
    # the nodes run time-major (layout 0; a batch_first layer's X and Y are transposed around
    # them) or batch-major (layout 1): Y_k is (T, D, B, H) or (B, T, D, H)
    x_name = add("Transpose", ["X"], "X_time_major", perm=[1, 0, 2]) if bf and not layout else "X"
    d_axis = const("direction_axis", np.array([2 if layout else 1], np.int64))
    finals = {"Y_h": [], "Y_c": []}
    for k in range(L):
        tensors, attrs = F.onnx_node(cfg, params, k)
        if layout:
            attrs["layout"] = 1
        node_inputs = [x_name, const(f"W_{k}", tensors["W"]), const(f"R_{k}", tensors["R"]),
                       const(f"B_{k}", tensors["B"]) if tensors["B"] is not None else "",
                       "sequence_lens" if seq_lengths else "", "", "", ""]
        for j, n in enumerate(state_names if initial_state else []):  # rows k·D .. of (L·D, B, H)
            part = n
            if L > 1:
                rows = [const(f"rows_{k}_start", np.array([k * D], np.int64)),
                        const(f"rows_{k}_end", np.array([(k + 1) * D], np.int64)), const("rows_axis", np.array([0], np.int64))]
                part = add("Slice", [n] + rows, f"{n}_{k}")
            node_inputs[5 + j] = add("Transpose", [part], f"{n}_{k}_bdh", perm=[1, 0, 2]) if layout else part
        if tensors["P"] is not None:
            node_inputs[7] = const(f"P_{k}", tensors["P"])
        while node_inputs[-1] == "":
            node_inputs.pop()
        outs = [f"Y_{k}"] + [f"Y_{c}_{k}" if L > 1 or layout else f"Y_{c}" for c in "hc"][:len(state_names)]
        nodes.append(helper.make_node(op, node_inputs, outs, name=f"{op.lower()}_{k}", **attrs))
        for out, name in zip(("Y_h", "Y_c"), outs[1:]):  # layout 1: (B, D, H) -> (D, B, H)
            finals[out].append(add("Transpose", [name], f"{name}_dbh" if L > 1 else out, perm=[1, 0, 2]) if layout
                               else name)
        # Y_k -> the next layer's input (T, B, O) (or (B, T, O)), the last one's Y when that is
        # the output's layout
        y = outs[0]
        last = "Y" if k == L - 1 and bool(layout) == bf else None
        if D == 1:
            x_name = add("Squeeze", [y, d_axis], last or f"{y}_one")
        elif cfg.get("merge", "concat") == "sum":
            x_name = add("ReduceSum", [y, d_axis], last or f"{y}_sum", keepdims=0)
        else:
            if not layout:
                y = add("Transpose", [y], f"{y}_tbdh", perm=[0, 2, 1, 3])
            x_name = add("Reshape", [y, const("join_directions", np.array([0, 0, -1], np.int64))],
                         last or f"{y}_joined")
    if bf and not layout:
        add("Transpose", [x_name], "Y", perm=[1, 0, 2])
    O = H * (2 if D == 2 and cfg.get("merge", "concat") == "concat" else 1)
    outputs = [helper.make_tensor_value_info("Y", elem, ["B", "T", O] if bf else ["T", "B", O])]
    for n in state_names:
        out = "Y" + n[-2:]
        if L > 1:
            add("Concat", finals[out], out, axis=0)
        outputs.append(helper.make_tensor_value_info(out, elem, state_shape))
    graph = helper.make_graph(nodes, f"lstmcore_{fam}", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, producer_name="lstmcore", opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 8)
    helper.set_model_props(model, {"lstmcore.config": json.dumps(cfg)})  # read back by read_model
    onnx.checker.check_model(model)
    return model
