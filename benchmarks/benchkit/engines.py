"""The engines a benchmark times, each on data rebuilt from (seed, case).

An engine is built from a case (cases.make_case) and offers:
    context()  entered around everything below (torch: inference_mode for inference)
    check()    one full computation; returns its outputs as NumPy arrays (compared across engines)
    timed      the callable whose time is measured (infer: one forward; train: forward + backward;
               step: one time step, the state carried from call to call)
It raises NotImplementedError when it has no such mode or variant (reported as n/a).

Names (ENGINES):
    lstmcore         lstmcore.forward / backward (with the case's seq_lengths, if any)
    lstmcore-padded  the same call without seq_lengths (every sequence runs all T steps)
    lstmcore-bf16    lstmcore with compute_dtype="bfloat16" (n/a until lstmcore has it)
    lstmcore-step    lstmcore.LSTM / GRU layer: y_t, state = layer.step(x_t, state)
    lstmcore-fwd1    lstmcore.forward on one step (T = 1) with h0 / c0: the functional per-step path
    torch            torch.nn.LSTM / GRU (with lengths: a PackedSequence, enforce_sorted=False)
    torch-padded     torch.nn.LSTM / GRU on the padded batch (lengths ignored)
    torch-autocast   torch.nn.LSTM / GRU under torch.autocast("cpu", dtype=torch.bfloat16)
    torch-cell       torch.nn.LSTMCell / GRUCell called once per step
    onnxruntime      one ONNX LSTM / GRU node (lstmcore.convert.to_onnx) in ONNX Runtime, forward
                     only (with lengths: its sequence_lens input)
"""
from __future__ import annotations

import contextlib
import importlib
import math

from .cases import GATES

# engine name -> the top-level modules its process imports
REQUIRES = {
    "lstmcore": ("lstmcore",), "lstmcore-padded": ("lstmcore",), "lstmcore-bf16": ("lstmcore",),
    "lstmcore-step": ("lstmcore",), "lstmcore-fwd1": ("lstmcore",),
    "torch": ("torch",), "torch-padded": ("torch",), "torch-autocast": ("torch",), "torch-cell": ("torch",),
    # the ONNX model is written by lstmcore's converter; lstmcore computes nothing in that process
    "onnxruntime": ("onnxruntime", "onnx", "lstmcore"), "onnxruntime-nospin": ("onnxruntime", "onnx", "lstmcore"),
}
# Short names for reports ("cpp-step" is no engine class here: the step mode runs step_cpp.cpp itself).
SHORT = {"lstmcore": "lstmcore", "lstmcore-padded": "lstmcore padded", "lstmcore-bf16": "lstmcore bf16",
         "lstmcore-step": "lstmcore step", "lstmcore-fwd1": "lstmcore forward(T=1)", "torch": "torch",
         "torch-padded": "torch padded", "torch-autocast": "torch autocast", "torch-cell": "torch cell",
         "onnxruntime": "ORT", "onnxruntime-nospin": "ORT (no spinning)", "cpp-step": "C++ Stepper"}


def import_modules(names) -> tuple[dict, list[str]]:
    """Imports what the engines need; a missing one becomes a note."""
    mods, notes = {}, []
    for name in dict.fromkeys(names):
        try:
            mods[name] = importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - anything the import raises means "skip"
            notes.append(f"{name} not importable ({type(e).__name__}: {e})")
            continue
        if name == "lstmcore" and not hasattr(mods[name], "forward"):
            del mods[name]
            notes.append("lstmcore has no forward() (the compiled core is not built?)")
    return mods, notes


def set_threads(mods: dict, threads: int) -> None:
    if "lstmcore" in mods:
        mods["lstmcore"].set_num_threads(threads)
    if "torch" in mods:
        torch = mods["torch"]
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass  # settable once, before any inter-op work


def versions(mods: dict) -> dict:
    import platform
    import numpy as np
    v = {"python": platform.python_version(), "numpy": np.__version__}
    if "lstmcore" in mods:
        lc = mods["lstmcore"]
        v["lstmcore"] = getattr(lc, "__version__", "unknown")
        v["lstmcore_build_info"] = lc.build_info()
        v["lstmcore_isa"] = lc.get_isa()
        v["lstmcore_num_threads"] = lc.get_num_threads()
    if "torch" in mods:
        torch = mods["torch"]
        v["torch"] = torch.__version__
        v["torch_num_threads"] = torch.get_num_threads()
        v["torch_mkldnn"] = bool(torch.backends.mkldnn.is_available())
        v["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    if "onnxruntime" in mods:
        v["onnxruntime"] = mods["onnxruntime"].__version__
        v["onnx"] = mods["onnx"].__version__
    return v


class Data:
    """Weights and inputs in lstmcore's layout (x (T,B,I), w_x (I,G·H), w_h (P,G·H)), float32,
    from a seed: PyTorch's init U(−1/√H, 1/√H) for the weights, N(0, 1) for x and dy."""

    def __init__(self, case: dict, seed: int):
        import numpy as np
        cell, T, B, I, H, P = (case[k] for k in ("cell", "T", "B", "I", "H", "P"))
        G = GATES[cell]
        rng = np.random.default_rng(seed)
        k = 1.0 / math.sqrt(H)

        def uniform(shape):  # made in float32 in place (no float64 temporaries of the big arrays)
            a = rng.random(shape, dtype=np.float32)
            a *= np.float32(2 * k)
            a -= np.float32(k)
            return a

        self.cell, self.T, self.B, self.I, self.H, self.G, self.P = cell, T, B, I, H, G, P
        self.variant = case["variant"]
        self.x = rng.standard_normal((T, B, I), dtype=np.float32)
        self.w_x = uniform((I, G * H))
        self.w_h = uniform((P, G * H))
        self.b = uniform((G * H,))
        self.b_h = uniform((G * H,))
        self.dy = rng.standard_normal((T, B, P), dtype=np.float32)
        self.peepholes = uniform((3, H)) if self.variant == "peepholes" else None
        self.w_proj = uniform((H, P)) if self.variant == "proj" else None
        self.lengths = None if case.get("lengths") is None else np.asarray(case["lengths"], dtype=np.int64)

    def lstmcore_options(self) -> dict:
        return {"peepholes": {"peepholes": self.peepholes}, "proj": {"w_proj": self.w_proj},
                "hard_sigmoid": {"activations": ["hard_sigmoid", "tanh", "tanh"]},
                # clip=1e30 clips nothing: it only moves the plain cell onto the general path
                "sigmoid_general": {"clip": 1e30}}.get(self.variant, {})

    def layer(self, lc, **opts):
        """An lstmcore layer object holding these weights."""
        cls = lc.LSTM if self.cell == "lstm" else lc.GRU
        layer = cls(self.I, self.H, **opts)
        layer.params.update({"l0.w_x": self.w_x, "l0.w_h": self.w_h, "l0.b": self.b, "l0.b_h": self.b_h})
        if self.peepholes is not None:
            layer.params["l0.peepholes"] = self.peepholes
        return layer


def _train_outputs_lstmcore(r, g) -> dict:
    return {"y": r.y, "dx": g.dx, "dw_x": g.dw_x, "dw_h": g.dw_h, "db": g.db, "db_h": g.db_h}


class Engine:
    name = "?"
    modes = ("infer", "train")

    def __init__(self, mods: dict, case: dict, seed: int, threads: int):
        self.mods, self.case, self.threads = mods, case, threads
        self.mode = case["mode"]
        self.d = Data(case, seed)
        fn = getattr(self, self.mode, None)
        if fn is None:
            raise NotImplementedError(f"no {self.mode} mode")
        self.timed = fn

    def context(self):
        return contextlib.nullcontext()

    def check(self) -> dict:
        return self.outputs(self.timed())


class Lstmcore(Engine):
    name = "lstmcore"
    use_lengths = True
    compute_dtype = None

    def __init__(self, mods, case, seed, threads):
        super().__init__(mods, case, seed, threads)
        self.lc = mods["lstmcore"]
        d = self.d
        self.kw = dict(b=d.b, b_h=d.b_h, cell=d.cell, **d.lstmcore_options())
        if self.use_lengths and d.lengths is not None:
            self.kw["seq_lengths"] = d.lengths
        if self.compute_dtype is not None:
            self._probe_compute_dtype()
            self.kw["compute_dtype"] = self.compute_dtype

    def _probe_compute_dtype(self):
        import numpy as np
        d, lc = self.d, self.lc
        x = np.zeros((1, 1, d.I), np.float32)
        try:
            lc.forward(x, d.w_x, d.w_h, cell=d.cell, compute_dtype=self.compute_dtype)
        except (TypeError, ValueError, NotImplementedError) as e:
            raise NotImplementedError(f"lstmcore.forward(compute_dtype={self.compute_dtype!r}) refused: "
                                      f"{type(e).__name__}: {e}") from None

    def infer(self):
        d = self.d
        return self.lc.forward(d.x, d.w_x, d.w_h, **self.kw)

    def train(self):
        d = self.d
        r = self.lc.forward(d.x, d.w_x, d.w_h, training=True, **self.kw)
        return r, self.lc.backward(r.cache, dy=d.dy)

    def outputs(self, res) -> dict:
        if self.mode == "train":
            return _train_outputs_lstmcore(*res)
        return {"y": res.y, "h_n": res.h_n, "c_n": res.c_n}


class LstmcorePadded(Lstmcore):
    name = "lstmcore-padded"
    use_lengths = False


class LstmcoreBf16(Lstmcore):
    name = "lstmcore-bf16"
    compute_dtype = "bfloat16"


class _Stepper(Engine):
    """Shared by the per-step engines: check() walks the whole sequence from a zero state, one
    step() per time step; the timed step() walks it cyclically, the state carried along."""
    modes = ("step",)

    def __init__(self, mods, case, seed, threads):
        super().__init__(mods, case, seed, threads)
        self.t = 0
        self.state = None
        self.x_steps = [self.prepare_input(self.d.x[t]) for t in range(self.d.T)]

    def prepare_input(self, x_t):
        return x_t

    def check(self) -> dict:
        self.t, self.state = 0, None
        ys = [self.to_numpy(self.step()) for _ in range(self.d.T)]
        import numpy as np
        out = {"y": np.stack(ys)}
        out.update(self.state_outputs())
        self.t, self.state = 0, None
        return out


class LstmcoreStep(_Stepper):
    name = "lstmcore-step"

    def __init__(self, mods, case, seed, threads):
        if case["variant"] != "plain":
            raise NotImplementedError("the step benchmark runs the plain cells")
        super().__init__(mods, case, seed, threads)
        self.layer = self.d.layer(mods["lstmcore"])
        self.T = self.d.T

    def step(self):
        y, self.state = self.layer.step(self.x_steps[self.t], self.state)
        self.t = (self.t + 1) % self.T
        return y

    def to_numpy(self, y):
        return y

    def state_outputs(self):
        # the layer's state is (layers·directions, B, H); the cells' is (B, H)
        if self.d.cell == "lstm":
            return {"h_n": self.state[0][-1], "c_n": self.state[1][-1]}
        return {"h_n": self.state[-1]}


class LstmcoreForward1(_Stepper):
    name = "lstmcore-fwd1"

    def __init__(self, mods, case, seed, threads):
        if case["variant"] != "plain":
            raise NotImplementedError("the step benchmark runs the plain cells")
        super().__init__(mods, case, seed, threads)
        self.lc = mods["lstmcore"]
        self.T = self.d.T

    def prepare_input(self, x_t):
        return x_t[None]  # (1, B, I): a view, still C-contiguous

    def step(self):
        d = self.d
        h0, c0 = self.state if self.state is not None else (None, None)
        r = self.lc.forward(self.x_steps[self.t], d.w_x, d.w_h, d.b, d.b_h, h0, c0, cell=d.cell)
        self.state = (r.h_n, r.c_n)
        self.t = (self.t + 1) % self.T
        return r.y

    def to_numpy(self, y):
        return y[0]

    def state_outputs(self):
        return {"h_n": self.state[0], "c_n": self.state[1]}


class Torch(Engine):
    name = "torch"
    use_lengths = True
    autocast = False

    def __init__(self, mods, case, seed, threads):
        super().__init__(mods, case, seed, threads)
        torch = self.torch = mods["torch"]
        d = self.d
        if d.variant not in ("plain", "proj"):
            raise NotImplementedError(f"torch.nn.LSTM has no {d.variant} option")
        cls = torch.nn.LSTM if d.cell == "lstm" else torch.nn.GRU
        kw = {"proj_size": d.P} if d.variant == "proj" else {}
        m = cls(d.I, d.H, num_layers=1, bias=True, batch_first=False, **kw)
        with torch.no_grad():
            if d.variant == "proj":
                m.weight_hr_l0.copy_(torch.from_numpy(d.w_proj.T.copy()))
            m.weight_ih_l0.copy_(torch.from_numpy(d.w_x.T.copy()))
            m.weight_hh_l0.copy_(torch.from_numpy(d.w_h.T.copy()))
            m.bias_ih_l0.copy_(torch.from_numpy(d.b))
            m.bias_hh_l0.copy_(torch.from_numpy(d.b_h))
        self.m = m
        self.x = torch.from_numpy(d.x)
        self.x_req = torch.from_numpy(d.x.copy()).requires_grad_(True)
        self.dy = torch.from_numpy(d.dy)
        self.lengths = (torch.from_numpy(d.lengths) if self.use_lengths and d.lengths is not None else None)

    def context(self):
        return self.torch.inference_mode() if self.mode == "infer" else contextlib.nullcontext()

    def _run(self, x):
        """y (T, B, P) and the final state, through a PackedSequence when there are lengths."""
        if self.lengths is None:
            return self.m(x)
        rnn = self.torch.nn.utils.rnn
        packed = rnn.pack_padded_sequence(x, self.lengths, enforce_sorted=False)
        out, st = self.m(packed)
        y, _ = rnn.pad_packed_sequence(out, total_length=self.d.T)
        return y, st

    def _forward(self, x):
        if not self.autocast:
            return self._run(x)
        with self.torch.autocast("cpu", dtype=self.torch.bfloat16):
            return self._run(x)

    def infer(self):
        return self._forward(self.x)

    def train(self):
        self.m.zero_grad(set_to_none=True)
        self.x_req.grad = None
        y, _ = self._forward(self.x_req)
        y.backward(self.dy if y.dtype == self.dy.dtype else self.dy.to(y.dtype))
        return y

    def outputs(self, res) -> dict:
        def f32(t):
            return t.detach().float().numpy()
        if self.mode == "train":
            m = self.m
            return {"y": f32(res), "dx": f32(self.x_req.grad), "dw_x": f32(m.weight_ih_l0.grad.T),
                    "dw_h": f32(m.weight_hh_l0.grad.T), "db": f32(m.bias_ih_l0.grad), "db_h": f32(m.bias_hh_l0.grad)}
        y, st = res
        if isinstance(st, tuple):
            return {"y": f32(y), "h_n": f32(st[0][0]), "c_n": f32(st[1][0])}
        return {"y": f32(y), "h_n": f32(st[0])}


class TorchPadded(Torch):
    name = "torch-padded"
    use_lengths = False


class TorchAutocast(Torch):
    name = "torch-autocast"
    autocast = True


class TorchCell(_Stepper):
    name = "torch-cell"

    def __init__(self, mods, case, seed, threads):
        if case["variant"] != "plain":
            raise NotImplementedError("the step benchmark runs the plain cells")
        self.torch = torch = mods["torch"]
        super().__init__(mods, case, seed, threads)
        d = self.d
        cell = (torch.nn.LSTMCell if d.cell == "lstm" else torch.nn.GRUCell)(d.I, d.H)
        with torch.no_grad():
            cell.weight_ih.copy_(torch.from_numpy(d.w_x.T.copy()))
            cell.weight_hh.copy_(torch.from_numpy(d.w_h.T.copy()))
            cell.bias_ih.copy_(torch.from_numpy(d.b))
            cell.bias_hh.copy_(torch.from_numpy(d.b_h))
        self.cellm = cell
        self.T = d.T

    def prepare_input(self, x_t):
        return self.torch.from_numpy(x_t)

    def context(self):
        return self.torch.inference_mode()

    def step(self):
        self.state = self.cellm(self.x_steps[self.t], self.state)
        self.t = (self.t + 1) % self.T
        return self.state[0] if isinstance(self.state, tuple) else self.state

    def to_numpy(self, y):
        return y.numpy().copy()

    def state_outputs(self):
        if isinstance(self.state, tuple):
            return {"h_n": self.state[0].numpy(), "c_n": self.state[1].numpy()}
        return {"h_n": self.state.numpy()}


class OnnxRuntime(Engine):
    name = "onnxruntime"
    modes = ("infer",)
    spin = True  # ORT's default: intra-op workers spin-wait for the next task after a run

    def __init__(self, mods, case, seed, threads):
        if case["mode"] == "train":
            raise NotImplementedError("ONNX Runtime (inference package) has no backward")
        super().__init__(mods, case, seed, threads)
        ort, d = mods["onnxruntime"], self.d
        if d.variant == "proj":
            raise NotImplementedError("ONNX's LSTM has no projection")
        # sigmoid_general's clip=1e30 only moves lstmcore onto its general path: ORT runs the plain cell
        opts = {"peepholes": {"peepholes": True}, "hard_sigmoid": {"activations": ["hard_sigmoid", "tanh", "tanh"]}}
        layer = d.layer(mods["lstmcore"], **opts.get(d.variant, {}))
        model = mods["lstmcore"].convert.to_onnx(layer, opset=14, seq_lengths=d.lengths is not None)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # ORT's own defaults otherwise (its workers spin for a while after a run): each engine
        # runs in its own process, and the same-process mode measures what those defaults do.
        if not self.spin:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        self.feed = {"X": d.x}
        if d.lengths is not None:
            self.feed["sequence_lens"] = d.lengths.astype("int32")

    def infer(self):
        return self.sess.run(None, self.feed)

    def outputs(self, res) -> dict:
        out = {"y": res[0], "h_n": res[1][0]}
        if len(res) > 2:
            out["c_n"] = res[2][0]
        return out


class OnnxRuntimeNoSpin(OnnxRuntime):
    """ONNX Runtime with session.intra_op.allow_spinning=0: its workers sleep as soon as a run
    ends (the after-peer mode's control for what the spinning costs a neighbour)."""
    name = "onnxruntime-nospin"
    spin = False


ENGINES = {cls.name: cls for cls in (Lstmcore, LstmcorePadded, LstmcoreBf16, LstmcoreStep, LstmcoreForward1,
                                     Torch, TorchPadded, TorchAutocast, TorchCell, OnnxRuntime, OnnxRuntimeNoSpin)}


def supports(engine: str, case: dict) -> bool:
    """Whether the engine has the case's mode at all (the variants are checked in its process)."""
    return case["mode"] in ENGINES[engine].modes
