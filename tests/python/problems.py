"""Random problems for lstmcore's Python API, shared by the property-based tests
(test_properties.py) and the fuzzer (tests/fuzz/fuzz_api.py).

A *spec* is a plain dict (JSON-able, so a failure can be printed and replayed) that says
everything about one call: the entry point ("forward" for lstmcore.forward / backward,
"layer" for lstmcore.LSTM / GRU / RNN), the cell and its options, the sizes, which optional
arguments are given, how each array is handed over (its *layout*: C-contiguous, Fortran,
a strided view, misaligned, a list, a torch tensor, ...) and a data seed. Specs are drawn
through a *picker*: ``RngPicker`` (a NumPy generator, for the fuzzer) or hypothesis' ``draw``
(``HypothesisPicker``, so hypothesis can shrink a failing spec).

* ``run_valid(spec)`` makes the call and compares every output and gradient with the float64
  NumPy reference (lstmcore.reference; stacks composed layer by layer), within conftest's
  tolerances; it returns the list of mismatches (empty when everything agrees).
* ``run_invalid(spec, mutation)`` makes the call with one argument spoilt (``mutation``, drawn
  by ``draw_mutation``) and returns the exception it raised (None if none); ``judge`` says
  whether that exception is a ValueError / TypeError / OverflowError (MemoryError for a copy
  that cannot be allocated) naming the argument. Every mutation of a backward argument also
  checks that the failed call left the cache usable: a correct backward follows and must
  match the reference.
"""
from __future__ import annotations

import contextlib
import re

import numpy as np

import lstmcore
from lstmcore import _core, reference
from lstmcore._types import ACTIVATIONS, DEFAULT_ACTIVATIONS, GATES, has_cell_state

#: Sizes: 1 and primes.
SIZES = (1, 2, 3, 5, 7, 11, 13)
CELLS = tuple(GATES)
#: How an array reaches the call (see ``present``).
LAYOUTS = ("c", "c", "c", "c", "fortran", "strided", "offset", "misaligned", "readonly", "list", "torch",
           "torch_t")
#: The activations bounded on the whole real line (for the gates, see _draw_variant).
BOUNDED = ("sigmoid", "hard_sigmoid", "tanh", "softsign", "scaled_tanh")
#: Relative-norm tolerances of conftest.py (float64 / float32 computations against the float64 reference).
TOL = {"float64": 1e-10, "float32": 1e-5}
#: Exceptions a bad argument may raise (MemoryError: a copy of a huge broadcast view).
CLEAN = (ValueError, TypeError, OverflowError, MemoryError)


def has_torch():
    try:
        import torch  # noqa: F401, PLC0415
        return True
    except ImportError:
        return False


# ------------------------------------------------------------------------------------------
# pickers: where the random choices come from


class RngPicker:
    def __init__(self, rng):
        self.rng = rng

    def choice(self, options):
        return options[int(self.rng.integers(len(options)))]

    def integer(self, lo, hi):
        if hi >= 2**63:
            return int(self.rng.integers(lo, hi, endpoint=True, dtype=np.uint64))
        return int(self.rng.integers(lo, hi + 1))

    def boolean(self, p=0.5):
        return bool(self.rng.random() < p)

    def real(self, lo, hi):
        return float(lo + (hi - lo) * self.rng.random())


class HypothesisPicker:
    def __init__(self, draw, st):
        self.draw, self.st = draw, st

    def choice(self, options):
        return self.draw(self.st.sampled_from(list(options)))

    def integer(self, lo, hi):
        return self.draw(self.st.integers(lo, hi))

    def boolean(self, p=0.5):
        if p >= 1:
            return True
        if p <= 0:
            return False
        # a choice among weighted outcomes: True in round(10 p) of 10 (shrinks towards False)
        return self.draw(self.st.integers(0, 9)) >= 10 - round(10 * p)

    def real(self, lo, hi):
        return self.draw(self.st.floats(lo, hi, allow_nan=False, allow_infinity=False))


# ------------------------------------------------------------------------------------------
# specs


def _draw_variant(pick, cell, I, H, dtype):
    """Cell-variant options (the keywords of lstmcore.forward / the layer constructors).

    Layer norm divides by the spread of a row's values, so it amplifies rounding errors by up to
    1/sqrt(var + 1e-5) ≈ 300: a row of one or two values (H ≤ 2, its c row) can have almost no
    spread, and float32 rounding (6e-8) then costs more than the 1e-5 the tolerance allows.
    With one or two inputs (I ≤ 2) x·w_x spans one or two directions, which the normalisation
    all but removes: dx is then a small remainder of cancelling terms (1e-4 of their size), and
    float32's roundings of those terms are 1e-3 of it; the same holds for h·w_h with a
    projection to P ≤ 2. Both are the problem's conditioning, not an error of the core: float32
    problems get layer norm only with H ≥ 5, I ≥ 3 and P ≥ 3 (float64 ones with any sizes).

    The gates of LSTM and GRU (slot f) take bounded functions only: an unbounded gate (relu,
    softplus, ...) lets the state grow geometrically and overflow within 13 steps, where the
    comparison says nothing. The other slots, and an RNN's only one, take every function.
    """
    v = {}
    if not pick.boolean(0.5):
        return v
    if pick.boolean(0.4):
        n = len(DEFAULT_ACTIVATIONS[cell])
        names = [pick.choice(BOUNDED if k == 0 and n > 1 else list(ACTIVATIONS)) for k in range(n)]
        v["activations"] = names
        for key, col, lo, hi in (("activation_alpha", 0, 0.1, 1.5), ("activation_beta", 1, 0.1, 1.0)):
            if pick.boolean(0.5):
                v[key] = [round(pick.real(lo, hi), 3) if ACTIVATIONS[name][col] is not None and pick.boolean(0.7)
                          else None for name in names]
    if pick.boolean(0.3):
        v["clip"] = round(pick.real(0.5, 3.0), 3)
    if has_cell_state(cell):
        if pick.boolean(0.3):
            v["peepholes"] = True
        if pick.boolean(0.3):
            v["proj"] = pick.choice(SIZES[:5])
        if pick.boolean(0.25) and (dtype == "float64" or (H >= 5 and I >= 3 and v.get("proj", 3) >= 3)):
            v["layer_norm"] = True
        if pick.boolean(0.25):
            v["zoneout"] = [round(pick.real(0.0, 0.6), 3), round(pick.real(0.0, 0.6), 3)]
        r = pick.integer(0, 9)
        if r == 0:
            v["input_forget"] = True
        elif r == 1:
            v["forget_gate"] = False
    return v


def _layout(pick, allow_torch):
    layout = pick.choice(LAYOUTS)
    if layout.startswith("torch") and not allow_torch:
        return "c"
    return layout


def draw_forward_spec(pick, seed=None, allow_torch=None):
    """A valid call of lstmcore.forward (and backward, when training)."""
    allow_torch = has_torch() if allow_torch is None else allow_torch
    cell = pick.choice(CELLS)
    lstm = has_cell_state(cell)
    T, B, I, H = (pick.choice(SIZES) for _ in range(4))
    s = dict(api="forward", cell=cell, reset_after=pick.boolean(0.5) if cell == "gru" else True,
             dtype=pick.choice(["float32", "float64"]), T=T, B=B, I=I, H=H,
             batch_first=pick.boolean(), reverse=pick.boolean(), training=pick.boolean(0.75),
             seed=pick.integer(0, 2**31 - 1) if seed is None else seed)
    s["lengths"] = [pick.integer(1, T) for _ in range(B)] if pick.boolean(0.4) else None
    s["given"] = [n for n, p in (("b", 0.7), ("b_h", 0.6), ("h0", 0.5), ("c0", 0.5 if lstm else 0),
                                 ("dy", 0.8), ("dh_n", 0.5), ("dc_n", 0.5 if lstm else 0)) if pick.boolean(p)]
    s["variant"] = _draw_variant(pick, cell, I, H, s["dtype"])
    s["zoneout_seed"] = pick.integer(0, 2**64 - 1) if "zoneout" in s["variant"] else None
    names = ["x", "w_x", "w_h"] + [n for n in ("b", "b_h", "h0", "c0") if n in s["given"]]
    names += [n for n in ("peepholes", "w_proj", "layer_norm") if _variant_has(s["variant"], n)]
    names += [n for n in ("dy", "dh_n", "dc_n") if n in s["given"]]
    s["layouts"] = {n: _layout(pick, allow_torch) for n in names}
    s["dtype_kw"] = pick.choice([None, None, "same", "float64"])
    s["out"] = pick.choice([None, None, None, "c", "offset"] + (["torch"] if allow_torch else []))
    s["weight_layout"] = "gate_major" if pick.boolean(0.3) else "input_major"
    s["compute"] = None
    if pick.boolean(0.3) and _bf16_ok(s):
        s["compute"] = "bfloat16"
    return s


def _bf16_ok(s):
    """bfloat16 compute applies: a float32 call (x handed typed, no dtype=float64) of a plain cell. Not
    drawn for rnn_relu: a pre-activation within bfloat16's rounding of relu's kink switches a gradient
    on or off, which the float32 floor of the Report cannot see (seen: dh0 8e-2 off at T = 13, H = 2)."""
    return (s["dtype"] == "float32" and not s["variant"] and s.get("dtype_kw") in (None, "same")
            and _typed(s["layouts"]["x"]) and s["cell"] != "rnn_relu")


def _variant_has(v, name):
    return {"peepholes": "peepholes", "w_proj": "proj", "layer_norm": "layer_norm"}[name] in v


def draw_layer_spec(pick, seed=None, allow_torch=None):
    """A valid use of a layer object: construction, forward (inference or training), backward, or step."""
    allow_torch = has_torch() if allow_torch is None else allow_torch
    family = pick.choice(["lstm", "gru", "rnn"])
    cell = {"lstm": "lstm", "gru": "gru", "rnn": pick.choice(["rnn_tanh", "rnn_relu"])}[family]
    lstm = has_cell_state(cell)
    T, B, I, H = (pick.choice(SIZES[:6]) for _ in range(4))
    mode = pick.choice(["train", "train", "infer", "step", "stepper"])
    stream = mode in ("step", "stepper")
    bidirectional = pick.boolean(0.5) and not stream
    s = dict(api="layer", family=family, cell=cell,
             reset_after=pick.boolean(0.5) if family == "gru" and mode != "stepper" else True,
             dtype=pick.choice(["float32", "float64"]), T=T, B=B, I=I, H=H, num_layers=pick.integer(1, 3),
             bidirectional=bidirectional, merge=pick.choice(["concat", "sum"]), bias=pick.boolean(0.8),
             batch_first=pick.boolean(), dropout=pick.choice([0.0, 0.0, 0.3, 0.7]), mode=mode,
             seed=pick.integer(0, 2**31 - 1) if seed is None else seed,
             dropout_seed=pick.integer(0, 2**63 - 1))
    s["lengths"] = [pick.integer(1, T) for _ in range(B)] if pick.boolean(0.4) and not stream else None
    s["given"] = [n for n, p in (("h0", 0.5), ("c0", 0.5 if lstm else 0), ("dy", 0.8), ("dh_n", 0.5),
                                 ("dc_n", 0.5 if lstm else 0)) if pick.boolean(p)]
    s["variant"] = _draw_variant(pick, cell, I, H, s["dtype"]) if mode != "stepper" else {}  # plain cells only
    s["compute"] = "bfloat16" if (s["dtype"] == "float32" and not s["variant"] and mode != "stepper"
                                  and cell != "rnn_relu" and pick.boolean(0.3)) else None  # see _bf16_ok
    names = ["x"] + [n for n in ("h0", "c0", "dy", "dh_n", "dc_n") if n in s["given"]]
    s["layouts"] = {n: _layout(pick, allow_torch) for n in names}
    if not lstm:  # a GRU's / RNN's state is one array: a (nested) list would read as a tuple of states
        s["layouts"].update({n: "c" for n in ("h0", "dh_n") if s["layouts"].get(n) == "list"})
    return s


# ------------------------------------------------------------------------------------------
# data


def _rounded(a, dtype):
    return np.asarray(a, np.float64).astype(dtype).astype(np.float64)


def forward_data(s):
    """The arrays of a forward spec, float64 values exactly representable in the spec's dtype."""
    rng = np.random.default_rng(s["seed"])
    dt = np.dtype(s["dtype"])
    T, B, I, H = s["T"], s["B"], s["I"], s["H"]
    G = GATES[s["cell"]]
    v = s["variant"]
    R = v.get("proj", H)

    def arr(shape, scale, shift=0.0):
        return _rounded(shift + scale * rng.standard_normal(shape), dt)

    d = dict(x=arr((B, T, I) if s["batch_first"] else (T, B, I), 1.0), w_x=arr((I, G * H), 0.8 / np.sqrt(I)),
             w_h=arr((R, G * H), 0.6 / np.sqrt(R)), b=arr(G * H, 0.3), b_h=arr(G * H, 0.3), h0=arr((B, R), 0.5),
             c0=arr((B, H), 1.0), peepholes=arr((3, H), 0.5), w_proj=arr((H, R), 0.7 / np.sqrt(H)),
             layer_norm=tuple([arr(G * H, 0.2, 1.0), arr(G * H, 0.2), arr(G * H, 0.2, 1.0), arr(G * H, 0.2),
                               arr(H, 0.2, 1.0), arr(H, 0.2)]),
             dy=arr((B, T, R) if s["batch_first"] else (T, B, R), 1.0), dh_n=arr((B, R), 1.0), dc_n=arr((B, H), 1.0))
    return d


def _reference_variant(v, arrays=None):
    """Reference / forward keywords of a variant dict (parameters from ``arrays``)."""
    kw = {k: v[k] for k in ("activations", "activation_alpha", "activation_beta", "clip", "input_forget",
                            "forget_gate") if k in v}
    if "zoneout" in v:
        kw["zoneout"] = tuple(v["zoneout"])
    if arrays is not None:
        if v.get("peepholes"):
            kw["peepholes"] = arrays["peepholes"]
        if "proj" in v:
            kw["w_proj"] = arrays["w_proj"]
        if v.get("layer_norm"):
            kw["layer_norm"] = arrays["layer_norm"]
    return kw


# ------------------------------------------------------------------------------------------
# layouts


def present(a, layout, dtype, requires_grad=False):
    """``a`` (float64 values) as the object handed to lstmcore in ``layout``, of ``dtype``."""
    a = np.asarray(a, np.float64).astype(dtype)
    if layout == "c":
        return a
    if layout == "fortran":
        return np.asfortranarray(a)
    if layout == "strided":  # every other element of a wider array
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1] + 1,), a.dtype)
        view = big[..., 1::2]
        view[...] = a
        return view
    if layout == "offset":  # a contiguous view inside a larger buffer
        buf = np.zeros(a.size + 5, a.dtype)
        view = buf[3:3 + a.size].reshape(a.shape)
        view[...] = a
        return view
    if layout == "misaligned":
        raw = np.zeros(a.nbytes + 1, np.uint8)
        view = np.frombuffer(raw.data, np.uint8, a.nbytes, 1).view(a.dtype).reshape(a.shape)
        view[...] = a
        return view
    if layout == "readonly":
        a.flags.writeable = False
        return a
    if layout == "list":
        return a.tolist()
    import torch  # noqa: PLC0415

    if layout == "torch":
        return torch.from_numpy(a.copy()).requires_grad_(requires_grad)
    if layout == "torch_t":  # a non-contiguous tensor (a transpose of the storage)
        t = torch.from_numpy(np.ascontiguousarray(np.moveaxis(a, -1, 0)))
        return t.movedim(0, -1).requires_grad_(requires_grad)
    raise ValueError(layout)


def _typed(layout):
    return layout != "list"


# ------------------------------------------------------------------------------------------
# comparing


def rel_err(got, want):
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    if got.shape != want.shape:
        return float("inf")
    nw = np.linalg.norm(want)
    d = np.linalg.norm(got - want)
    if not np.isfinite(d):
        return float("inf")
    return float(d / nw) if nw > 0 else float(d)


def _host(v):
    if v is None or isinstance(v, np.ndarray):
        return v
    if hasattr(v, "detach"):
        return v.detach().cpu().numpy()
    return np.asarray(v)


#: See Report: the share of the float64 tolerance an output's own rounding noise may take for the
#: output to be judged; the number of one-ulp perturbations the noise is measured with; how many
#: times the error of a plain float32 evaluation a float32 result may be off, and the error of that
#: evaluation (or the noise) beyond which float32 is not judged.
CONDITION_SHARE = 20
DRAWS = 3
#: bfloat16 compute (operands rounded to 8 significant bits, float32 elsewhere) is judged against the
#: float64 reference within max(BF16_TOL, BF16_SCALE × the float32 floor): issue 18's tolerance for a
#: well-conditioned output, else the float32 evaluation's error scaled by the ratio of the two unit
#: roundoffs (2^-8 / 2^-24); an output whose limit passes BF16_CAP says nothing and is skipped. The
#: rounding noise is not used (a one-ulp move of a float32 input may flip a bfloat16 rounding).
BF16_TOL = 2e-2
BF16_SCALE = 2.0**16
BF16_CAP = 0.25
FLOOR_FACTOR = 10
FLOOR_CAP = 1e-3


class Report:
    """The comparison of one valid call with the reference: ``mismatches`` [(what, how)] and the
    outputs left unjudged as too ill-conditioned for the call's dtype (``skipped``).

    A relative-norm tolerance is a fair test only of a well-conditioned output; conditioning is
    measured, not assumed, two ways:

    * ``noise[name]``: the largest relative change of the core's output over DRAWS runs with
      every input moved by one ulp of the call's dtype. In float64 an output whose noise
      exceeds tol / CONDITION_SHARE is too ill-conditioned for TOL64 (e.g. the derivative of a
      layer norm over one value, exactly 0 but left as a rounding residue): skipped and
      counted. In float32 an output that moves by more than FLOOR_CAP sits at a kink (a
      pre-activation within an ulp of clip's threshold or of relu's 0, where the derivative
      jumps): skipped and counted. (The same call on C-contiguous arrays must give the very
      same bits — ``run_forward`` / ``run_layer`` check that — so noise is never
      nondeterminism.)
    * ``floor[name]`` (float32 calls): the relative error against float64 of the same equations
      evaluated in float32 (lstmcore.reference.in_precision) with activation functions that err
      by up to ACTIVATION_ULPS ulps, as the README allows the core's (the largest over DRAWS
      draws of those errors) — what float32 arithmetic achieves on this problem. Rounding
      errors of intermediate values that cancellation then magnifies (tanh' as 1 − tanh²
      beside saturation, the sum of two nearly opposite directions, a layer norm over nearly
      equal values) are there, and no perturbation of the inputs shows them (a saturated tanh
      does not move). A float32 output must be within max(TOL32, FLOOR_FACTOR × floor) of the
      float64 reference: TOL32 wherever such an evaluation meets it. Measured over 12,000
      float32 outputs of these problems: the core's error was at most 3 times the floor where
      it exceeded TOL32 (10 times at most anywhere). Where even the floor exceeds FLOOR_CAP,
      float32 says nothing about the output: skipped and counted.
    """

    def __init__(self, dtype, noise=None, floor=None, bf16=False):
        self.tol = TOL[np.dtype(dtype).name]
        self.noise = noise or {}
        self.floor = floor
        self.bf16 = bf16
        self.mismatches, self.skipped = [], []

    def fail(self, name, how):
        self.mismatches.append((name, how))

    def compare(self, name, got, want):
        got = _host(got)
        if (got is None) != (want is None):
            self.fail(name, f"got {'None' if got is None else 'an array'}, want "
                            f"{'None' if want is None else 'an array'}")
            return
        if want is None:
            return
        if got.shape != want.shape:
            self.fail(name, f"shape {got.shape}, want {want.shape}")
            return
        noise = self.noise.get(name, 0.0)
        limit, note = self.tol, f"noise {noise:.1e}"
        if self.bf16:  # bfloat16 operands: see BF16_TOL
            floor = self.floor.get(name, 0.0)
            limit, note = max(BF16_TOL, BF16_SCALE * floor), f"bfloat16, plain float32 {floor:.1e}"
            if limit > BF16_CAP:
                self.skipped.append(name)
                return
        elif self.floor is not None:  # float32: against what plain float32 evaluation achieves
            floor = self.floor.get(name, 0.0)
            if floor > FLOOR_CAP or noise > FLOOR_CAP:
                self.skipped.append(name)
                return
            limit, note = max(self.tol, FLOOR_FACTOR * floor), f"plain float32 {floor:.1e}, {note}"
        elif noise > self.tol / CONDITION_SHARE:
            self.skipped.append(name)
            return
        err = rel_err(got, want)
        if not err <= limit:
            self.fail(name, f"relative error {err:.3e} > {limit:.1e} ({note})")

    def __bool__(self):  # true when something is wrong
        return bool(self.mismatches)

    def __repr__(self):
        return f"Report(mismatches={self.mismatches}, skipped={self.skipped})"


def ulp_perturbed(d, dtype, seed):
    """``d`` (a dict of arrays, tuples of arrays, or None) with every entry moved by one ulp of
    ``dtype`` up or down at random (float64 values, exact in ``dtype``)."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)

    def one(a):
        if a is None:
            return None
        if isinstance(a, tuple):
            return tuple(one(v) for v in a)
        a = np.asarray(a).astype(dtype)
        return np.nextafter(a, rng.choice([-np.inf, np.inf], size=a.shape).astype(dtype)).astype(np.float64)

    return {k: one(v) for k, v in d.items()}


def rounding_noise(outputs, run, d, dtype, seed):
    """{name: the largest relative change of ``outputs`` (the core's, from ``run(d)``) when ``run``
    recomputes them from ``d`` moved by one ulp}, over DRAWS draws."""
    out = {}
    for k in range(DRAWS):
        again = run(ulp_perturbed(d, dtype, [seed, k]))
        for name, v in outputs.items():
            if v is not None and again.get(name) is not None:
                out[name] = max(out.get(name, 0.0), rel_err(again[name], v))
    return out


# ------------------------------------------------------------------------------------------
# running valid forward specs


def forward_call(s, d=None):
    """(args, kwargs, the call's dtype) of lstmcore.forward for spec ``s``."""
    d = forward_data(s) if d is None else d
    dt = np.dtype(s["dtype"])
    lay = s["layouts"]
    args = {}
    gm = s.get("weight_layout") == "gate_major"  # the weights handed transposed (PyTorch's and ONNX's layout)
    for n in ("x", "w_x", "w_h", "b", "b_h", "h0", "c0"):
        if n in lay:
            a = d[n].T if gm and n in ("w_x", "w_h") else d[n]
            args[n] = present(a, lay[n], dt, requires_grad=n in ("w_x", "w_h"))
    v = s["variant"]
    kw = _reference_variant(v)
    if gm:
        kw["weight_layout"] = "gate_major"
    if s.get("compute"):
        kw["compute_dtype"] = s["compute"]
    if v.get("peepholes"):
        kw["peepholes"] = present(d["peepholes"], lay["peepholes"], dt)
    if "proj" in v:
        kw["w_proj"] = present(d["w_proj"].T if gm else d["w_proj"], lay["w_proj"], dt)
    if v.get("layer_norm"):
        kw["layer_norm"] = tuple(present(a, lay["layer_norm"], dt) for a in d["layer_norm"])
    if s["zoneout_seed"] is not None:
        kw["seed"] = s["zoneout_seed"]
    order = [n for n in ("x", "w_x", "w_h", "b", "b_h", "h0", "c0") if n in lay]
    order += [n for n in ("peepholes", "w_proj", "layer_norm") if n in lay]
    typed = [dt for n in order if _typed(lay[n])]
    call_dt = typed[0] if typed else np.dtype(np.float64)
    if s["dtype_kw"] is not None:
        call_dt = dt if s["dtype_kw"] == "same" else np.dtype(np.float64)
        kw["dtype"] = call_dt
    kw.update(cell=s["cell"], reverse=s["reverse"], batch_first=s["batch_first"], training=s["training"],
              reset_after=s["reset_after"])
    if s["lengths"] is not None:
        kw["seq_lengths"] = np.array(s["lengths"], np.int64)
    R = v.get("proj", s["H"])
    y_shape = (s["B"], s["T"], R) if s["batch_first"] else (s["T"], s["B"], R)
    if s["out"] is not None:
        kw["out"] = present(np.zeros(y_shape), s["out"], call_dt)
    return args, kw, call_dt


def forward_reference(s, d):
    """(ForwardResult, Gradients or None) of the float64 reference for spec ``s``."""
    v = s["variant"]
    given = set(s["layouts"])
    args = {n: d[n] for n in ("x", "w_x", "w_h", "b", "b_h", "h0", "c0") if n in given}
    res = reference.forward(**args, cell=s["cell"], reverse=s["reverse"], batch_first=s["batch_first"],
                            reset_after=s["reset_after"], seq_lengths=s["lengths"], training=s["training"],
                            seed=s["zoneout_seed"], **_reference_variant(v, d))
    grads = None
    if s["training"]:
        grads = reference.backward(res.cache, **{n: d[n] for n in ("dy", "dh_n", "dc_n") if n in given})
    return res, grads


def _backward_grads(s, d, call_dt):
    lay = s["layouts"]
    return {n: present(d[n], lay[n], call_dt) for n in ("dy", "dh_n", "dc_n") if n in lay}


GRAD_FIELDS = ("dx", "dh0", "dc0", "dw_x", "dw_h", "db", "db_h")


def forward_outputs(res, grads, gate_major=False):
    """{name: array} of a forward result and its gradients (None where absent); ``gate_major``: the
    weight gradients of a gate-major call, transposed to the reference's layout."""
    out = {f: getattr(res, f) for f in ("y", "h_n", "c_n")}
    if grads is not None:
        out.update({f: getattr(grads, f) for f in GRAD_FIELDS + ("dpeepholes", "dw_proj")})
        if gate_major:
            out.update({f: None if out[f] is None else _host(out[f]).T for f in ("dw_x", "dw_h", "dw_proj")})
        ln = grads.dlayer_norm
        out.update({f"dlayer_norm[{k}]": None if ln is None else ln[k] for k in range(6)})
    return out


def compare_outputs(report, got, want):
    for name, w in want.items():
        report.compare(name, got.get(name), w)


def _core_forward(s, d):
    """{name: host array} of lstmcore.forward / backward on spec ``s`` with data ``d``."""
    args, kw, call_dt = forward_call(s, d)
    res = lstmcore.forward(**args, **kw)
    grads = lstmcore.backward(res.cache, **_backward_grads(s, d, call_dt)) if s["training"] else None
    gm = s.get("weight_layout") == "gate_major"
    return {k: _host(v) for k, v in forward_outputs(res, grads, gm).items()}, call_dt


def forward_noise(s, d, call_dt):
    """(outputs, rounding noise) of spec ``s`` (see Report) on plain C arrays of the call's dtype."""
    plain = dict(s, dtype=call_dt.name, layouts={n: "c" for n in s["layouts"]}, dtype_kw=None, out=None)
    base, _ = _core_forward(plain, d)
    return base, rounding_noise(base, lambda p: _core_forward(plain, p)[0], d, call_dt, s["seed"])


def same_bits(report, got, plain):
    """Every output must be the same bits as the same call's on C-contiguous arrays of the call's dtype:
    layouts and conversions change nothing, and the call is deterministic."""
    for name, v in plain.items():
        g = _host(got.get(name))
        if (g is None) != (v is None) or (v is not None and not np.array_equal(g, v, equal_nan=True)):
            report.fail(name, "differs from the same call on C-contiguous arrays (layout or nondeterminism)")


#: How many ulps the activation functions of the float32 evaluation may err (README: the core's
#: exp, sigmoid and tanh stay within a few ulp).
ACTIVATION_ULPS = 2


@contextlib.contextmanager
def _activations_off_by_ulps(rng):
    """Within the block the reference's activation functions return values moved by up to
    ACTIVATION_ULPS ulps at random (their derivatives read those values, as the core's do)."""
    saved = dict(reference._ACTIVATION_FUNCS)

    def off(f):
        def g(x, a, b):
            y = np.asarray(f(x, a, b))
            for _ in range(ACTIVATION_ULPS):
                y = np.where(rng.random(y.shape) < 0.5, y, np.nextafter(y, rng.choice([-np.inf, np.inf], y.shape)
                                                                          .astype(y.dtype)))
            return y
        return g

    reference._ACTIVATION_FUNCS.update({k: (off(f), df) for k, (f, df) in saved.items()})
    try:
        yield
    finally:
        reference._ACTIVATION_FUNCS.update(saved)


def floors(want, run, d, seed):
    """{name: the largest relative error against ``want`` of the plain float32 evaluation
    ``run(data)`` over DRAWS draws of activation errors (see _activations_off_by_ulps)}: one
    evaluation's rounding errors may happen to cancel where another's do not."""
    out = {}
    rng = np.random.default_rng([seed, 100])
    with reference.in_precision(np.float32), _activations_off_by_ulps(rng):
        for _ in range(DRAWS):
            plain = run(d)
            for name, v in want.items():
                if v is not None and plain.get(name) is not None:
                    out[name] = max(out.get(name, 0.0), rel_err(plain[name], v))
    return out


def forward_floor(s, d, call_dt, want):
    """For a float32 call, the floor (see Report) of each output; None for float64."""
    if call_dt != np.float32:
        return None
    return floors(want, lambda p: forward_outputs(*forward_reference(s, p)), d, s["seed"])


def run_forward(s):
    d = forward_data(s)
    args, kw, call_dt = forward_call(s, d)
    res = lstmcore.forward(**args, **kw)
    grads = None
    if s["training"]:
        grads = lstmcore.backward(res.cache, **_backward_grads(s, d, call_dt))
    want = forward_outputs(*forward_reference(s, d))
    plain, noise = forward_noise(s, d, call_dt)
    report = Report(call_dt, noise, forward_floor(s, d, call_dt, want), bf16=s.get("compute") == "bfloat16")
    got = forward_outputs(res, grads, s.get("weight_layout") == "gate_major")
    same_bits(report, got, plain)
    compare_outputs(report, got, want)
    if _host(res.y).dtype != call_dt:
        report.fail("y", f"dtype {_host(res.y).dtype}, want {call_dt}")
    if kw.get("out") is not None and res.y is not kw["out"]:
        report.fail("out", "forward did not return the out= object as y")
    return report


# ------------------------------------------------------------------------------------------
# running valid layer specs


def make_layer(s):
    cls = {"lstm": lstmcore.LSTM, "gru": lstmcore.GRU, "rnn": lstmcore.RNN}[s["family"]]
    v = s["variant"]
    kw = _reference_variant(v)
    if v.get("peepholes"):
        kw["peepholes"] = True
    if "proj" in v:
        kw["proj_size"] = v["proj"]
    if v.get("layer_norm"):
        kw["layer_norm"] = True
    if s["family"] == "gru":
        kw["reset_after"] = s["reset_after"]
    if s["family"] == "rnn":
        kw["nonlinearity"] = s["cell"][4:]
    layer = cls(s["I"], s["H"], num_layers=s["num_layers"], bias=s["bias"], batch_first=s["batch_first"],
                dropout=s["dropout"], bidirectional=s["bidirectional"], merge=s["merge"], dtype=s["dtype"],
                seed=s["seed"], compute_dtype=s.get("compute"), **kw)
    # layer norm starts as the identity: give it random gains and biases
    rng = np.random.default_rng(s["seed"] + 1)
    for name in layer.params:
        if ".ln_" in name:
            shift = 1.0 if "_gain_" in name else 0.0
            layer.params[name] = (shift + 0.2 * rng.standard_normal(layer.params[name].shape)).astype(layer.dtype)
    return layer


def layer_data(s, layer):
    rng = np.random.default_rng(s["seed"] + 2)
    dt = layer.dtype
    T, B, I = s["T"], s["B"], s["I"]
    LD, R, H, O = layer.num_layers * layer.num_directions, layer.state_size, layer.hidden_size, layer.output_size

    def arr(shape, scale):
        return _rounded(scale * rng.standard_normal(shape), dt)

    return dict(x=arr((B, T, I) if s["batch_first"] else (T, B, I), 1.0), h0=arr((LD, B, R), 0.5),
                c0=arr((LD, B, H), 1.0), dy=arr((B, T, O) if s["batch_first"] else (T, B, O), 1.0),
                dh_n=arr((LD, B, R), 1.0), dc_n=arr((LD, B, H), 1.0))


def _state(layer, h, c):
    if h is None and c is None:
        return None
    if has_cell_state(layer.cell):
        return (h, c)
    return h


def _presented_state(s, layer, d, hn, cn):
    lay = s["layouts"]
    h = present(d[hn], lay[hn], layer.dtype) if hn in lay else None
    c = present(d[cn], lay[cn], layer.dtype) if cn in lay else None
    if has_cell_state(layer.cell):
        return None if h is None and c is None else (h, c)
    return h


def reference_stack(s, layer, d, training, masks=None):
    """Forward of the stack with lstmcore.reference (float64): (y, h_n, c_n, caches)."""
    L, D, R, H = layer.num_layers, layer.num_directions, layer.state_size, layer.hidden_size
    p = {k: np.asarray(v, np.float64) for k, v in layer.params.items()}
    given = s["layouts"]
    h0 = d["h0"] if "h0" in given else None
    c0 = d["c0"] if "c0" in given and has_cell_state(layer.cell) else None
    B = s["B"]
    h_n, c_n = np.zeros((L * D, B, R)), (np.zeros((L * D, B, H)) if has_cell_state(layer.cell) else None)
    v = _reference_variant(s["variant"])
    inp, caches = d["x"], []
    for k in range(L):
        outs = []
        for dd in range(D):
            j, pre = k * D + dd, f"l{k}" + ("_reverse" if dd else "")
            extra = {}
            if layer.peepholes:
                extra["peepholes"] = p[pre + ".peepholes"]
            if layer.proj_size:
                extra["w_proj"] = p[pre + ".w_proj"]
            if layer.layer_norm:
                extra["layer_norm"] = tuple(p[f"{pre}.ln_{n}"] for n in
                                            ("gain_x", "bias_x", "gain_h", "bias_h", "gain_c", "bias_c"))
            seed = _core.stack_variant_seed(s["dropout_seed"], k, dd) if "zoneout" in v and training else None
            r = reference.forward(inp, p[pre + ".w_x"], p[pre + ".w_h"], p.get(pre + ".b"), p.get(pre + ".b_h"),
                                  None if h0 is None else h0[j], None if c0 is None else c0[j], cell=layer.cell,
                                  reverse=bool(dd), seq_lengths=s["lengths"], batch_first=s["batch_first"],
                                  reset_after=layer.reset_after, training=training, seed=seed, **v, **extra)
            outs.append(r.y)
            h_n[j] = r.h_n
            if c_n is not None:
                c_n[j] = r.c_n
            caches.append(r.cache)
        inp = outs[0] if D == 1 else (outs[0] + outs[1] if layer.merge == "sum" else np.concatenate(outs, -1))
        if masks is not None and k < L - 1:
            inp = inp * masks[k].astype(inp.dtype)
    return inp, h_n, c_n, caches


def reference_stack_backward(s, layer, caches, masks, d):
    L, D, R = layer.num_layers, layer.num_directions, layer.state_size
    given = s["layouts"]
    LD, B, H = L * D, s["B"], layer.hidden_size
    dy = d["dy"] if "dy" in given else np.zeros(d["dy"].shape)
    dh_n = d["dh_n"] if "dh_n" in given else np.zeros((LD, B, R))
    dc_n = (d["dc_n"] if "dc_n" in given else np.zeros((LD, B, H))) if has_cell_state(layer.cell) else None
    dh0, dc0 = np.zeros_like(dh_n), (np.zeros_like(dc_n) if dc_n is not None else None)
    grads, g_out = {}, dy
    for k in reversed(range(L)):
        dx = None
        for dd in range(D):
            j, pre = k * D + dd, f"l{k}" + ("_reverse" if dd else "")
            g_slice = g_out if D == 1 or layer.merge == "sum" else g_out[..., dd * R:(dd + 1) * R]
            g = reference.backward(caches[j], g_slice, dh_n[j], None if dc_n is None else dc_n[j])
            dx = g.dx if dx is None else dx + g.dx
            dh0[j] = g.dh0
            if dc0 is not None:
                dc0[j] = g.dc0
            grads[pre + ".w_x"], grads[pre + ".w_h"] = g.dw_x, g.dw_h
            if layer.bias:
                grads[pre + ".b"], grads[pre + ".b_h"] = g.db, g.db_h
            if layer.peepholes:
                grads[pre + ".peepholes"] = g.dpeepholes
            if layer.proj_size:
                grads[pre + ".w_proj"] = g.dw_proj
            if layer.layer_norm:
                for n, a in zip(("gain_x", "bias_x", "gain_h", "bias_h", "gain_c", "bias_c"), g.dlayer_norm):
                    grads[f"{pre}.ln_{n}"] = a
        g_out = dx * masks[k - 1].astype(dx.dtype) if (k > 0 and masks is not None) else dx
    return g_out, dh0, dc0, grads


def _layer_reference(s, layer, d, training, masks):
    """{name: array} of the reference stack: y, h_n, c_n and, when training, every gradient."""
    y, h_n, c_n, caches = reference_stack(s, layer, d, training, masks)
    out = {"y": y, "h_n": h_n, "c_n": c_n}
    if training:
        dx, dh0, dc0, grads = reference_stack_backward(s, layer, caches, masks, d)
        out.update(dx=dx, dh0=dh0, dc0=dc0)
        out.update({f"grads[{k!r}]": v for k, v in grads.items()})
    return out


def _split(layer, state):
    return state if has_cell_state(layer.cell) else (state, None)


def _core_layer(s, layer, d, plain=False):
    """({name: output}, dropout masks) of the layer's run for spec ``s`` on data ``d`` (``plain``:
    every array a C-contiguous one of the layer's dtype)."""
    lay = {n: "c" for n in s["layouts"]} if plain else s["layouts"]
    s = dict(s, layouts=lay)
    x = present(d["x"], lay["x"], layer.dtype)
    state = _presented_state(s, layer, d, "h0", "c0")
    lengths = None if s["lengths"] is None else np.array(s["lengths"])
    got, masks = {}, None
    training = s["mode"] == "train"
    if s["mode"] in ("step", "stepper"):
        steps, st = [], state
        stepper = layer.stepper(s["B"], state) if s["mode"] == "stepper" else None
        for t in range(s["T"]):
            x_t = present(d["x"][:, t] if s["batch_first"] else d["x"][t], lay["x"], layer.dtype)
            if stepper is None:
                y_t, st = layer.step(x_t, st)
            else:
                y_t = stepper.step(x_t)
            steps.append(_host(y_t))
        if stepper is not None:
            st = stepper.state
        got["y"] = np.stack(steps, 1 if s["batch_first"] else 0)
        got["h_n"], got["c_n"] = _split(layer, st)
        return got, masks
    y, st, cache = layer.forward(x, state, lengths, training=training, dropout_seed=s["dropout_seed"])
    got["y"] = y
    got["h_n"], got["c_n"] = _split(layer, st)
    if training and layer.dropout > 0 and layer.num_layers > 1:
        masks = [np.asarray(cache.dropout_mask(k), np.float64) for k in range(layer.num_layers - 1)]
    if training:
        dy = present(d["dy"], lay["dy"], layer.dtype) if "dy" in lay else None
        dx, dst = layer.backward(cache, dy, _presented_state(s, layer, d, "dh_n", "dc_n"))
        got["dx"] = dx
        got["dh0"], got["dc0"] = _split(layer, dst)
        got.update({f"grads[{k!r}]": v for k, v in layer.grads.items()})
    return got, masks


def layer_noise(s, layer, d):
    """(outputs, rounding noise) of the layer's run on plain arrays (see Report), its parameters moved too."""
    def run(p):
        other = make_layer(s)
        other.params = {k: p["param:" + k].astype(layer.dtype) for k in layer.params}
        return {k: _host(v) for k, v in _core_layer(s, other, p, plain=True)[0].items()}

    data = dict(d, **{"param:" + k: v for k, v in layer.params.items()})
    base = run(data)
    return base, rounding_noise(base, run, data, layer.dtype, s["seed"])


def run_layer(s):
    layer = make_layer(s)
    d = layer_data(s, layer)
    got, masks = _core_layer(s, layer, d)
    training = s["mode"] == "train"
    want = _layer_reference(s, layer, d, training, masks)
    floor = None
    if layer.dtype == np.float32:
        floor = floors(want, lambda p: _layer_reference(s, layer, p, training, masks), d, s["seed"])
    plain, noise = layer_noise(s, layer, d)
    report = Report(layer.dtype, noise, floor, bf16=s.get("compute") == "bfloat16")
    same_bits(report, got, plain)
    extra = sorted(set(got) - set(want))
    if extra:
        report.fail("grads", f"unexpected {extra}")
    compare_outputs(report, got, want)
    return report


def run_valid(s):
    """The Report of a valid spec against the reference (false when everything agrees)."""
    return run_forward(s) if s["api"] == "forward" else run_layer(s)


# ------------------------------------------------------------------------------------------
# invalid calls


def names(name):
    """A regex that finds ``name`` as a whole word (so "b" does not match "b_h")."""
    left = r"(?<![\w])" if re.match(r"\w", name) else ""
    right = r"(?![\w])" if re.search(r"\w$", name) else ""
    return left + re.escape(name) + right


def judge(exc, expect):
    """The outcome of an invalid call: "clean" (a ValueError / TypeError / OverflowError, or a
    MemoryError for a copy, naming one of the names in ``expect``), "accepted" (no exception),
    "unnamed" (an exception of those types without the name) or "unexpected" (another type)."""
    if exc is None:
        return "accepted"
    if not isinstance(exc, CLEAN):
        return "unexpected"
    msg = str(exc)
    return "clean" if any(re.search(names(n), msg) for n in expect) else "unnamed"


def _huge_broadcast(dtype):
    """A zero-strided (T, B, 1) view of 2**62 bytes: no copy of it fits in memory, and with a few
    hidden units the core's size arithmetic, T·B·(G·H + I + 2H) elements, overflows int64."""
    n = 2**62 // np.dtype(dtype).itemsize
    return np.broadcast_to(np.zeros((), dtype), (2**30, n // 2**30, 1))


#: Mutations of a forward call: (kind, applies(spec), the names the error may carry).
FORWARD_MUTATIONS = (
    "shape", "ndim", "dtype_mix", "dtype_bad", "object", "none_required", "out_shape", "out_dtype",
    "out_readonly", "out_strided", "out_misaligned", "out_overlap", "out_overlap_lengths", "out_list",
    "out_torch_grad", "lengths_zero", "lengths_big", "lengths_negative", "lengths_uint64", "lengths_float_huge",
    "lengths_fraction", "lengths_nan", "lengths_count", "lengths_2d", "lengths_bool", "lengths_str", "cell",
    "c0_no_state", "lstm_option", "activation_name", "activation_count", "activation_alpha", "clip", "zoneout",
    "seed", "dtype_kw", "layer_norm_len", "overflow", "settings", "flag", "compute_dtype", "weight_layout",
)
BACKWARD_MUTATIONS = (
    "grad_shape", "grad_dtype", "grad_complex", "grad_overlap", "dc_n_no_state", "cache_used", "cache_foreign",
    "cache_handmade", "cache_stack",
)
LAYER_MUTATIONS = (
    "ctor_size", "ctor_huge", "ctor_dropout", "ctor_merge", "ctor_dtype", "ctor_nonlinearity", "ctor_proj",
    "ctor_lstm_option", "ctor_init", "x_shape", "x_dtype", "state_shape", "state_form", "lengths", "dy_shape",
    "dstate_shape", "dy_overlap", "cache_other_layer", "cache_used", "cache_functional", "step_bidirectional",
    "step_shape", "params_shape", "params_dtype", "ctor_compute", "stepper_args",
)


def draw_mutation(pick, s):
    if s["api"] == "forward":
        kinds = FORWARD_MUTATIONS + (BACKWARD_MUTATIONS if s["training"] else ())
    else:
        kinds = LAYER_MUTATIONS
    return {"kind": pick.choice(kinds), "k": pick.integer(0, 10**6)}


def run_invalid(s, m):
    """Runs spec ``s`` spoilt by mutation ``m``. Returns (exception or None, names the error
    may carry, a note); the note is set when a failed backward left the cache unusable or the
    retry after it differed from the reference."""
    if s["api"] == "forward":
        if m["kind"] in BACKWARD_MUTATIONS:
            return _invalid_backward(s, m)
        return _invalid_forward(s, m)
    return _invalid_layer(s, m)


def _pick_from(m, options):
    return options[m["k"] % len(options)]


def _as_lstm(s, args, kw, call_dt):
    """Turns a GRU / RNN call into an LSTM one (for the LSTM-only options); the option under test is
    checked before any shape, so the other arrays may keep their shapes."""
    if not has_cell_state(s["cell"]):
        kw["cell"] = "lstm"
        args["w_x"] = np.zeros((s["I"], 4 * s["H"]), call_dt)
        args["w_h"] = np.zeros((s["H"], 4 * s["H"]), call_dt)
        for k in ("activations", "activation_alpha", "activation_beta"):
            kw.pop(k, None)


def _invalid_forward(s, m):
    d = forward_data(s)
    args, kw, call_dt = forward_call(s, d)
    kind = m["kind"]
    other_dt = np.dtype(np.float32) if call_dt == np.float64 else np.dtype(np.float64)
    present_names = [n for n in ("x", "w_x", "w_h", "b", "b_h", "h0", "c0") if n in args]
    expect = None

    def spoil_array(fn):
        name = _pick_from(m, present_names)
        args[name] = fn(np.asarray(d[name]).astype(call_dt), name)
        return name

    if kind == "shape":
        def grow(a, name):  # x's T and B are free (unless another argument depends on them): grow its I
            shape = list(a.shape)
            shape[-1 if name == "x" else m["k"] % len(shape)] += 1
            return np.zeros(shape, a.dtype)
        name = spoil_array(grow)
        # a size of x (T, B or I) or of w_x's rows (I) or of w_h (H, G·H) that disagrees with another
        # argument may be named on either side of the disagreement
        expect = {"x": ("x", "w_x", "h0", "c0", "seq_lengths", "out"), "w_x": ("w_x", "x", "w_h"),
                  "w_h": ("w_h", "w_x")}.get(name, (name,))
    elif kind == "ndim":
        name = spoil_array(lambda a, n: a[..., None])
        expect = (name,)
    elif kind == "dtype_mix":
        if s["dtype_kw"] is not None:
            kw.pop("dtype")
        first = next((n for n in present_names if _typed(s["layouts"][n])), None)
        names_ = [n for n in present_names if n != first]
        name = _pick_from(m, names_)
        if first is None:
            args["x"] = np.asarray(d["x"]).astype(call_dt)
            first = "x"
        args[first] = np.asarray(d[first]).astype(call_dt)
        args[name] = np.asarray(d[name]).astype(other_dt)
        expect = (name, first)
    elif kind == "dtype_bad":
        kw.pop("dtype", None)  # with dtype= given, float16 is converted like any float
        bad = _pick_from(m, [np.float16, np.complex64, np.complex128, "U3", "datetime64[s]"])
        name = spoil_array(lambda a, n: np.zeros(a.shape, bad))
        expect = (name, "x") if bad == np.float16 else (name,)
    elif kind == "object":
        name = _pick_from(m, present_names)
        args[name] = _pick_from(m, [object(), {"a": 1}, "text", [[1, 2], [3]], np.array(None)])
        expect = (name,)
    elif kind == "none_required":
        name = _pick_from(m, ["x", "w_x", "w_h"])
        args[name] = None
        expect = (name,)
    elif kind.startswith("out_"):
        R = s["variant"].get("proj", s["H"])
        y_shape = (s["B"], s["T"], R) if s["batch_first"] else (s["T"], s["B"], R)
        expect = ("out",)
        if kind == "out_shape":
            shape = list(y_shape)
            shape[m["k"] % 3] += 1
            kw["out"] = np.zeros(shape, call_dt)
        elif kind == "out_dtype":
            kw["out"] = np.zeros(y_shape, _pick_from(m, [other_dt, np.float16, np.int64]))
        elif kind == "out_readonly":
            kw["out"] = present(np.zeros(y_shape), "readonly", call_dt)
        elif kind == "out_strided":
            kw["out"] = present(np.zeros(y_shape), _pick_from(m, ["strided", "fortran"]), call_dt)
            if kw["out"].flags.c_contiguous:  # a Fortran array with at most one dimension > 1 is C too
                kw["out"] = present(np.zeros(y_shape), "strided", call_dt)
            if kw["out"].flags.c_contiguous:  # so is a one-element view: spoil it otherwise
                kw["out"] = present(np.zeros(y_shape), "readonly", call_dt)
        elif kind == "out_misaligned":
            kw["out"] = present(np.zeros(y_shape), "misaligned", call_dt)
        elif kind == "out_overlap":  # out and an input share memory through views of one buffer
            name = _pick_from(m, present_names)
            a = np.asarray(d[name]).astype(call_dt)
            n_out = int(np.prod(y_shape))
            shift = m["k"] % (a.size + n_out - 1) - (n_out - 1)  # any partial overlap
            buf = np.zeros(a.size + 2 * n_out, call_dt)
            start = n_out
            view = buf[start:start + a.size].reshape(a.shape)
            view[...] = a
            args[name] = view
            kw["out"] = buf[start + shift:start + shift + n_out].reshape(y_shape)
            expect = ("out", name)
        elif kind == "out_overlap_lengths":
            n_out = int(np.prod(y_shape))
            buf = np.zeros(n_out + s["B"] + 1, call_dt)
            lens = buf.view(np.uint8)[:s["B"] * 8].view(np.int64)
            lens[...] = s["lengths"] if s["lengths"] is not None else s["T"]
            kw["seq_lengths"] = lens
            kw["out"] = buf[:n_out].reshape(y_shape)
            expect = ("out", "seq_lengths")
        elif kind == "out_list":
            kw["out"] = np.zeros(y_shape).tolist()
        elif kind == "out_torch_grad":
            if not has_torch():
                kw["out"] = np.zeros(y_shape).tolist()
            else:
                import torch  # noqa: PLC0415
                kw["out"] = torch.zeros(y_shape, dtype=torch.float64 if call_dt == np.float64 else torch.float32,
                                        requires_grad=True)
    elif kind.startswith("lengths_"):
        B, T = s["B"], s["T"]
        base = list(s["lengths"] or [T] * B)
        j = m["k"] % B
        expect = ("seq_lengths",)
        value = {"lengths_zero": 0, "lengths_big": T + 1 + m["k"] % 5, "lengths_negative": -1 - m["k"] % 3}.get(kind)
        if value is not None:
            base[j] = value
            kw["seq_lengths"] = np.array(base)
        elif kind == "lengths_uint64":
            arr = np.array(base, np.uint64)
            arr[j] = 2**64 - 1 - m["k"] % 7
            kw["seq_lengths"] = arr
        elif kind == "lengths_float_huge":
            arr = np.array(base, np.float64)
            arr[j] = _pick_from(m, [1e30, -1e30, 2.0**63, 1e300, float("inf")])
            kw["seq_lengths"] = arr
        elif kind == "lengths_fraction":
            arr = np.array(base, np.float64)
            arr[j] = min(T, 1) + 0.5
            kw["seq_lengths"] = arr
        elif kind == "lengths_nan":
            arr = np.array(base, np.float64)
            arr[j] = np.nan
            kw["seq_lengths"] = arr
        elif kind == "lengths_count":
            kw["seq_lengths"] = np.array(base + [1] if m["k"] % 2 else base[:-1] or [1, 1])
        elif kind == "lengths_2d":
            kw["seq_lengths"] = np.array([base, base])
        elif kind == "lengths_bool":
            kw["seq_lengths"] = np.ones(B, bool)
        elif kind == "lengths_str":
            kw["seq_lengths"] = ["a"] * B
    elif kind == "cell":
        kw["cell"] = _pick_from(m, ["LSTM", "gru2", "", "rnn", 3, None, b"lstm"])
        expect = ("cell",)
    elif kind == "c0_no_state":
        kw["cell"] = _pick_from(m, ["gru", "rnn_tanh", "rnn_relu"])
        args["c0"] = np.zeros((s["B"], s["H"]), call_dt)
        expect = ("c0",)
    elif kind == "lstm_option":
        kw["cell"] = _pick_from(m, ["gru", "rnn_tanh", "rnn_relu"])
        for k in ("peepholes", "w_proj", "layer_norm", "zoneout", "input_forget", "forget_gate", "seed"):
            kw.pop(k, None)
        opt, value = _pick_from(m, [("peepholes", np.zeros((3, s["H"]), call_dt)), ("input_forget", True),
                                    ("forget_gate", False), ("zoneout", 0.1),
                                    ("w_proj", np.zeros((s["H"], 2), call_dt))])
        kw[opt] = value
        kw.pop("activations", None), kw.pop("activation_alpha", None), kw.pop("activation_beta", None)
        args.pop("c0", None)
        expect = (opt,)
    elif kind == "activation_name":
        n = len(DEFAULT_ACTIVATIONS[s["cell"]])
        kw["activations"] = ["sigmoid"] * (n - 1) + [_pick_from(m, ["Sigmoid", "swish", "", "gelu"])]
        kw.pop("activation_alpha", None), kw.pop("activation_beta", None)
        expect = ("activations",)
    elif kind == "activation_count":
        n = len(DEFAULT_ACTIVATIONS[s["cell"]])
        kw["activations"] = ["tanh"] * (n + 1 if m["k"] % 2 else n - 1) if n > 1 or m["k"] % 2 else "tanh"
        kw.pop("activation_alpha", None), kw.pop("activation_beta", None)
        expect = ("activations",)
    elif kind == "activation_alpha":
        n = len(DEFAULT_ACTIVATIONS[s["cell"]])
        kw.pop("activation_beta", None)
        if m["k"] % 3 == 2:  # a function that takes alpha, given a value that is no finite number
            kw["activations"] = ["hard_sigmoid"] + ["tanh"] * (n - 1)
            kw["activation_alpha"] = [_pick_from(m, ["a", float("nan"), float("inf"), [1], True])] + [None] * (n - 1)
        else:
            kw["activations"] = ["tanh"] * n
            kw["activation_alpha"] = [0.5] * n if m["k"] % 3 else [None] * (n + 1)
        expect = ("activation_alpha", "activation_alpha[0]")
    elif kind == "clip":
        kw["clip"] = _pick_from(m, [0.0, -1.0, float("nan"), "1", True, float("-inf")])
        expect = ("clip",)
    elif kind == "zoneout":
        _as_lstm(s, args, kw, call_dt)
        kw["zoneout"] = _pick_from(m, [1.0, -0.1, (0.1,), "a", (0.1, 1.5), float("nan")])
        expect = ("zoneout",)
    elif kind == "seed":
        _as_lstm(s, args, kw, call_dt)
        kw.setdefault("zoneout", 0.2)
        kw["training"] = True
        kw["seed"] = _pick_from(m, [-1, 2**64, 1.5, "1", 2**70])
        expect = ("seed",)
    elif kind == "dtype_kw":
        kw["dtype"] = _pick_from(m, [np.float16, "int32", "nonsense", np.complex64, object])
        expect = ("dtype",)
    elif kind == "layer_norm_len":
        _as_lstm(s, args, kw, call_dt)
        kw["layer_norm"] = _pick_from(m, [(np.ones(4 * s["H"], call_dt),) * 5, np.ones(4 * s["H"], call_dt), 3])
        expect = ("layer_norm",)
    elif kind == "compute_dtype":  # an unknown mode, or bfloat16 where it does not apply
        expect = ("compute_dtype",)
        bad = _pick_from(m, ["float16", "bf16", 3, "bfloat16"])
        kw["compute_dtype"] = bad
        if bad == "bfloat16":
            if call_dt == np.float32 and not s["variant"]:
                kw["dtype"] = np.float64  # bfloat16 computes on float32 arrays only
    elif kind == "weight_layout":
        kw["weight_layout"] = _pick_from(m, ["gate", "GATE_MAJOR", None, 1])
        expect = ("weight_layout",)
    elif kind == "settings":  # the process-wide settings refuse bad values and keep the old ones
        before = (lstmcore.get_num_threads(), lstmcore.get_isa())
        call, value, expect = _pick_from(m, [(lstmcore.set_num_threads, v, ("n",)) for v in
                                             (0, -1, 2.5, "2", True, 2**31, 2**64, None)] +
                                         [(lstmcore.set_isa, v, ("name", "isa")) for v in ("avx9", None, 3, "")])
        try:
            call(value)
        except Exception as exc:  # noqa: BLE001
            after = (lstmcore.get_num_threads(), lstmcore.get_isa())
            return exc, expect, None if after == before else f"a refused setting changed {before} to {after}"
        return None, expect, None
    elif kind == "flag":
        name = _pick_from(m, ["reverse", "batch_first", "training", "reset_after", "input_forget", "forget_gate"])
        kw[name] = _pick_from(m, [None, "yes", 2, 0.5, "False"])
        expect = (name,)
    elif kind == "overflow":
        args["x"] = _huge_broadcast(call_dt)
        args["w_x"] = np.zeros((1, GATES[s["cell"]] * s["H"]), call_dt)
        kw.pop("out", None)
        kw.pop("seq_lengths", None)
        kw["batch_first"] = False
        expect = ("x", "w_x", "steps", "batch", "T", "B")
    else:
        raise ValueError(kind)
    try:
        lstmcore.forward(**args, **kw)
    except Exception as exc:  # noqa: BLE001 -- judged by the caller
        return exc, expect, None
    return None, expect, None


def _retry_note(s, d, cache, call_dt):
    """After a failed backward the cache must still work and give the reference's gradients."""
    try:
        grads = lstmcore.backward(cache, **_backward_grads(s, d, call_dt))
    except Exception as exc:  # noqa: BLE001
        return f"the retry after the failed backward raised {type(exc).__name__}: {exc}"
    want = forward_outputs(*forward_reference(s, d))
    report = Report(call_dt, forward_noise(s, d, call_dt)[1], forward_floor(s, d, call_dt, want),
                    bf16=s.get("compute") == "bfloat16")  # as run_forward
    got = forward_outputs(_NoForward, grads, s.get("weight_layout") == "gate_major")
    compare_outputs(report, {k: v for k, v in got.items() if k not in ("y", "h_n", "c_n")},
                    {k: v for k, v in want.items() if k not in ("y", "h_n", "c_n")})
    return f"the retry after the failed backward differs from the reference: {report.mismatches}" \
        if report else None


class _NoForward:
    y = h_n = c_n = None


def _invalid_backward(s, m):
    d = forward_data(s)
    args, kw, call_dt = forward_call(s, d)
    res = lstmcore.forward(**args, **kw)
    cache = res.cache
    grads = _backward_grads(s, d, call_dt)
    kind = m["kind"]
    other_dt = np.dtype(np.float32) if call_dt == np.float64 else np.dtype(np.float64)
    R = s["variant"].get("proj", s["H"])
    shapes = {"dy": (s["B"], s["T"], R) if s["batch_first"] else (s["T"], s["B"], R), "dh_n": (s["B"], R),
              "dc_n": (s["B"], s["H"])}
    gnames = ["dy", "dh_n"] + (["dc_n"] if has_cell_state(s["cell"]) else [])
    name = _pick_from(m, gnames)
    retry = True
    if kind == "grad_shape":
        shape = list(shapes[name])
        shape[m["k"] % len(shape)] += 1
        grads[name] = np.zeros(shape, call_dt)
        expect = (name,)
    elif kind == "grad_dtype":
        grads[name] = np.zeros(shapes[name], other_dt)
        expect = (name,)
    elif kind == "grad_complex":
        grads[name] = np.zeros(shapes[name], np.complex128)
        expect = (name,)
    elif kind == "grad_overlap":
        buf = cache.buffer
        n = int(np.prod(shapes[name]))
        if buf.size < n:  # a buffer smaller than this gradient: spoil its shape instead
            return _invalid_backward(s, dict(m, kind="grad_shape"))
        start = m["k"] % (buf.size - n + 1)
        grads[name] = buf[start:start + n].reshape(shapes[name])
        expect = (name,)
    elif kind == "dc_n_no_state":
        if has_cell_state(s["cell"]):
            return _invalid_forward(s, {"kind": "c0_no_state", "k": m["k"]})
        grads["dc_n"] = np.zeros((s["B"], s["H"]), call_dt)
        expect = ("dc_n",)
    elif kind == "cache_used":
        lstmcore.backward(cache, **_backward_grads(s, d, call_dt))
        expect = ("cache",)
        retry = False
    elif kind == "cache_foreign":
        cache = _pick_from(m, [None, object(), np.zeros(4), {"cell": "lstm"}, res, 3])
        expect = ("cache",)
        retry = False
    elif kind == "cache_handmade":
        try:
            lstmcore.Cache(**{k: getattr(res.cache, k) for k in lstmcore.Cache.__slots__})
        except Exception as exc:  # noqa: BLE001
            return exc, ("Cache", "cache", "caches"), None
        return None, ("Cache",), None
    elif kind == "cache_stack":
        layer = lstmcore.GRU(2, 3)
        _, _, cache = layer.forward(np.zeros((2, 1, 2), np.float32), training=True)
        expect = ("cache",)
        retry = False
    else:
        raise ValueError(kind)
    try:
        lstmcore.backward(cache, **grads)
    except Exception as exc:  # noqa: BLE001
        note = _retry_note(s, d, res.cache, call_dt) if retry else None
        return exc, expect, note
    return None, expect, None


def _invalid_layer(s, m):
    kind = m["kind"]
    if kind.startswith("ctor_"):
        return _invalid_ctor(s, m)
    layer = make_layer(s)
    d = layer_data(s, layer)
    dt = layer.dtype
    other_dt = np.dtype(np.float32) if dt == np.float64 else np.dtype(np.float64)
    x = d["x"].astype(dt)
    T, B = s["T"], s["B"]
    LD, R, H = layer.num_layers * layer.num_directions, layer.state_size, layer.hidden_size
    lstm = has_cell_state(layer.cell)
    state = _state(layer, d["h0"].astype(dt), d["c0"].astype(dt) if lstm else None)
    dstate = _state(layer, d["dh_n"].astype(dt), d["dc_n"].astype(dt) if lstm else None)
    dy = d["dy"].astype(dt)
    note = None
    try:
        if kind == "x_shape":
            shape = list(x.shape)
            shape[m["k"] % 3] = 0 if m["k"] % 5 == 0 else shape[m["k"] % 3]
            if shape == list(x.shape):
                shape[2] += 1
            bad = np.zeros(shape, dt) if m["k"] % 3 else x[..., None]
            expect = ("x", "input_size")
            layer(bad)
        elif kind == "x_dtype":
            expect = ("x",)
            layer(x.astype(_pick_from(m, [other_dt, np.complex64, "U2"])))
        elif kind == "state_shape":
            which = _pick_from(m, [0, 1] if lstm else [0])
            good = [d["h0"].astype(dt), d["c0"].astype(dt)]
            good[which] = np.zeros((LD + 1, B, R if which == 0 else H), dt)
            expect = ("h0", "c0", "state", "state[0] (h)", "state[1] (c)")
            layer(x, tuple(good) if lstm else good[0])
        elif kind == "state_form":
            expect = ("state",)
            layer(x, (d["h0"].astype(dt),) * (1 if lstm else 2))
        elif kind == "lengths":
            expect = ("seq_lengths",)
            layer(x, state, _pick_from(m, [[0] * B, [T + 1] * B, [1] * (B + 1), np.full(B, 2**64 - 1, np.uint64),
                                           np.full(B, 1e30), ["a"] * B]))
        elif kind in ("dy_shape", "dstate_shape", "dy_overlap", "cache_used"):
            _, _, cache = layer.forward(x, state, training=True, dropout_seed=s["dropout_seed"])
            if kind == "dy_shape":
                expect = ("dy",)
                layer.backward(cache, np.zeros(dy.shape[:2] + (dy.shape[2] + 1,), dt), dstate)
            elif kind == "dstate_shape":
                expect = ("dstate", "dstate[0] (h)", "dstate[1] (c)")
                bad = np.zeros((LD, B + 1, R), dt)
                layer.backward(cache, dy, (bad, None) if lstm else bad)
            elif kind == "dy_overlap":
                expect = ("dy",)
                buf = cache.buffer
                view = buf[:dy.size].reshape(dy.shape) if buf.size >= dy.size else buf
                layer.backward(cache, view, dstate)
            else:
                layer.backward(cache, dy, dstate)
                expect = ("cache",)
                layer.backward(cache, dy, dstate)
            return None, expect, None
        elif kind == "cache_other_layer":
            spec2 = dict(s, H=s["H"] + 1)
            other = make_layer(spec2)
            _, _, cache = other.forward(np.zeros(x.shape, dt), training=True)
            expect = ("cache",)
            layer.backward(cache, None, None)
        elif kind == "cache_functional":
            r = lstmcore.forward(np.zeros((2, 1, 2)), np.zeros((2, 4)), np.zeros((1, 4)), training=True)
            expect = ("cache",)
            layer.backward(r.cache)
        elif kind == "step_bidirectional":
            bi = dict(s, bidirectional=True)
            expect = ("step",)
            make_layer(bi).step(x[0] if not s["batch_first"] else x[:, 0])
        elif kind == "step_shape":
            expect = ("x_t",)
            if layer.bidirectional:
                layer = make_layer(dict(s, bidirectional=False))
            layer.step(np.zeros((B, s["I"] + 1), dt) if m["k"] % 2 else x)
        elif kind in ("params_shape", "params_dtype"):
            name = _pick_from(m, layer.param_names())
            a = layer.params[name]
            layer.params[name] = np.zeros(a.shape[:-1] + (a.shape[-1] + 1,), dt) if kind == "params_shape" \
                else a.astype(other_dt)
            expect = (f"params[{name!r}]", name)
            if s["mode"] == "step" and not layer.bidirectional:  # the step's fast path hands it to the checked one
                layer.step(x[:, 0] if s["batch_first"] else x[0])
            else:
                layer(x)
        elif kind == "stepper_args":  # a bad batch or x_t of a stepper, or a layer no stepper runs
            which = m["k"] % 3
            if which == 1:
                # a bidirectional layer never runs step by step, whatever else it has (a variant
                # may equal the plain cell, e.g. activations=["relu"] on a relu RNN, which a
                # stepper then rightly runs)
                expect = ("stepper",)
                make_layer(dict(s, bidirectional=True)).stepper(B)
            else:
                if layer.bidirectional or s["variant"] or s["compute"] or (layer.cell == "gru" and not layer.reset_after):
                    layer = make_layer(dict(s, bidirectional=False, variant={}, compute=None, reset_after=True))
                if which == 0:
                    expect = ("batch",)
                    layer.stepper(_pick_from(m, [0, -2]))
                else:
                    expect = ("x_t",)
                    layer.stepper(B).step(np.zeros((B, s["I"] + 1), dt))
        else:
            raise ValueError(kind)
    except Exception as exc:  # noqa: BLE001
        return exc, expect, note
    return None, expect, None


def _invalid_ctor(s, m):
    kind = m["kind"]
    cls = {"lstm": lstmcore.LSTM, "gru": lstmcore.GRU, "rnn": lstmcore.RNN}[s["family"]]
    args = dict(input_size=s["I"], hidden_size=s["H"], num_layers=s["num_layers"])
    kw = {}
    if kind == "ctor_size":
        name = _pick_from(m, list(args))
        args[name] = _pick_from(m, [0, -1, 2.5, True, "3", None])
        expect = (name,)
    elif kind == "ctor_huge":
        name = _pick_from(m, list(args))
        args[name] = _pick_from(m, [2**62, 2**63, 2**64 + 1, 2**40])
        expect = (name, "input_size", "hidden_size", "num_layers")
    elif kind == "ctor_dropout":
        kw["dropout"] = _pick_from(m, [-0.1, 1.5, float("nan"), "0.1", True])
        expect = ("dropout",)
    elif kind == "ctor_merge":
        kw["merge"] = _pick_from(m, ["mean", None, 3, ["concat"]])
        kw["bidirectional"] = True
        expect = ("merge",)
    elif kind == "ctor_dtype":
        kw["dtype"] = _pick_from(m, [np.float16, "int32", "nonsense", object])
        expect = ("dtype",)
    elif kind == "ctor_nonlinearity":
        cls = lstmcore.RNN
        kw["nonlinearity"] = _pick_from(m, ["sigmoid", None, "TANH"])
        expect = ("nonlinearity",)
    elif kind == "ctor_proj":
        cls = lstmcore.LSTM
        kw["proj_size"] = _pick_from(m, [-1, 2.5, "2", True])
        expect = ("proj_size",)
    elif kind == "ctor_lstm_option":
        cls = _pick_from(m, [lstmcore.GRU, lstmcore.RNN])
        opt, value = _pick_from(m, [("peepholes", True), ("proj_size", 2), ("layer_norm", True), ("zoneout", 0.1),
                                    ("input_forget", True), ("forget_gate", False)])
        kw[opt] = value
        expect = (opt,)
    elif kind == "ctor_init":
        kw["init"] = _pick_from(m, ["xavier", None, 3])
        expect = ("init",)
    elif kind == "ctor_compute":  # an unknown mode, bfloat16 on float64, bfloat16 with a cell variant
        expect = ("compute_dtype",)
        which = m["k"] % 3
        kw["compute_dtype"] = _pick_from(m, ["float16", "bf16", 2]) if which == 0 else "bfloat16"
        if which == 1:
            kw["dtype"] = np.float64
        elif which == 2:
            kw["clip"] = 1.0
    else:
        raise ValueError(kind)
    try:
        cls(**args, **kw)
    except Exception as exc:  # noqa: BLE001
        return exc, expect, None
    return None, expect, None
