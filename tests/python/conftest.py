"""Shared helpers for lstmcore's Python tests.

Test modules import these helpers with ``from conftest import ...``; this file puts its
own folder on sys.path so that works under every pytest import mode.

Tolerances (relative norm ‖got − want‖ / ‖want‖ over a whole array):

* TOL64 = 1e-10: two float64 implementations of the same equations (core vs reference,
  torch vs reference). They differ only by summation order, ~1e-16 per operation, grown
  by at most ~√K (K ≤ 130 products per dot) and by the conditioning of ≤ 33 recurrent
  steps with the contractive weights used here; observed values are ~1e-15. 1e-10 leaves
  five orders of margin yet catches any wrong term (a wrong term is ≥ 1e-3 relative).
* TOL32 = 1e-5: a float32 computation vs the float64 reference fed the very same
  (float32-representable) inputs. float32 unit roundoff is 6e-8; dots of ≤ 130 terms and
  ≤ 33 steps keep the observed error around 1e-7 … 2e-6.
* TOL32_PAIR = 2e-5: two float32 computations against each other (core vs torch / ORT):
  by the triangle inequality each is within TOL32 of the exact float64 result.
* TOL_FD = 1e-7: central differences (f(p+ε) − f(p−ε)) / 2ε with ε = 1e-6 in float64
  have truncation error ε²·|f'''|/6 ~ 1e-12 and roundoff ~ 1e-16·|L|/ε ~ 1e-10·|L|; with
  |L| ≲ 100 that is ≤ 1e-8 of the gradient, so 1e-7 is tight yet safe.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import sys
import types
from collections import defaultdict

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
# Use the installed package when there is one; otherwise the source tree's python/.
if importlib.util.find_spec("lstmcore") is None:
    sys.path.insert(0, os.path.join(ROOT, "python"))



def package_env():
    """os.environ with PYTHONPATH leading to the lstmcore this process imports (installed, or
    the source tree's python/ with its built extension), for tests that run a fresh interpreter."""
    import lstmcore
    env = dict(os.environ)
    parent = os.path.dirname(os.path.dirname(os.path.abspath(lstmcore.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [parent, env.get("PYTHONPATH")]))
    return env


# ----------------------------------------------------------------------------------
# CI: no test may be skipped for a missing test dependency

#: True under CI (the environment variable CI=true, as CI services and .ci/run set it).
CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
#: The test dependencies (pyproject.toml's "test" extra): under CI they must all import.
TEST_DEPENDENCIES = ("torch", "onnx", "onnxruntime", "keras", "hypothesis")
#: The one reason a test may still skip under CI: the machine has no GPU (or the build no CUDA).
_NO_GPU = re.compile(r"\b(CUDA|GPU)\b")
_MISSING = re.compile(r"could not import|No module named")


def pytest_sessionstart(session):
    # Every call of the suite runs on scratch (and new result arrays) filled with NaN bytes:
    # a kernel reading memory it did not write fails every time, not only after whichever
    # earlier call happened to leave NaN there (test_memory.py checks the hook itself).
    from lstmcore import _core  # noqa: PLC0415

    _core._poison_scratch(True)
    if not CI:
        return
    missing = [name for name in TEST_DEPENDENCIES if importlib.util.find_spec(name) is None]
    if missing:
        raise pytest.UsageError(f"CI=true but test dependencies are missing: {', '.join(missing)} "
                                f"(pip install '.[test]'); under CI no test may be skipped for them")


def _fail_skips_under_ci(report):
    """Under CI a skipped test (or module) fails, unless it was skipped for want of a GPU."""
    if not CI or not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if _NO_GPU.search(reason) and not _MISSING.search(reason):
        return
    report.outcome = "failed"
    report.longrepr = f"skipped under CI=true, where only the absence of a GPU may skip a test: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_skips_under_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_skips_under_ci(outcome.get_result())


# ----------------------------------------------------------------------------------
# hypothesis: bounded runs, deterministic under CI

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # test_properties.py skips (under CI: fails) without hypothesis
    pass
else:
    _QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
    # ci: the same examples on every run (derandomize), nothing stored; dev: random examples, failures
    # remembered in .hypothesis/; thorough: ten times more examples (HYPOTHESIS_PROFILE=thorough)
    settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True,
                              suppress_health_check=_QUIET)
    settings.register_profile("dev", deadline=None, print_blob=True, suppress_health_check=_QUIET)
    settings.register_profile("thorough", deadline=None, print_blob=True, suppress_health_check=_QUIET)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if CI else "dev"))


TOL64 = 1e-10
TOL32 = 1e-5
TOL32_PAIR = 2e-5
TOL_FD = 1e-7
FD_EPS = 1e-6

DTYPES = [np.float32, np.float64]


def tol_for(dtype):
    return TOL64 if np.dtype(dtype) == np.float64 else TOL32


def pair_tol_for(dtype):
    return TOL64 if np.dtype(dtype) == np.float64 else TOL32_PAIR


# ----------------------------------------------------------------------------------
# the reference module, importable without the compiled core


def _load_reference():
    try:
        from lstmcore import reference  # noqa: PLC0415

        return reference
    except Exception:  # the compiled extension is not built yet
        pass
    spec = importlib.util.find_spec("lstmcore")
    pkgdir = (list(spec.submodule_search_locations)[0] if spec and spec.submodule_search_locations
              else os.path.join(ROOT, "python", "lstmcore"))
    name = "_lstmcore_reference_only"
    if name not in sys.modules:
        pkg = types.ModuleType(name)
        pkg.__path__ = [pkgdir]
        sys.modules[name] = pkg
    return importlib.import_module(name + ".reference")


reference = _load_reference()
#: The package's one table of gates per cell (lstmcore._types, loaded beside the reference).
GATES = importlib.import_module(reference.__name__.rsplit(".", 1)[0] + "._types").GATES

# ----------------------------------------------------------------------------------
# cell variants and option sets

#: id -> (cell, reset_after)
VARIANTS = {
    "lstm": ("lstm", True),
    "gru": ("gru", True),
    "gru_rb": ("gru", False),  # reset_after=False (reset before the recurrent product)
    "rnn_tanh": ("rnn_tanh", True),
    "rnn_relu": ("rnn_relu", True),
}
VARIANT_IDS = list(VARIANTS)
#: the variants PyTorch has (torch.nn.GRU is reset_after=True only)
TORCH_VARIANT_IDS = [v for v in VARIANT_IDS if v != "gru_rb"]
#: the same variants as layer objects: id -> (lstmcore class name, constructor keywords)
LAYER_VARIANTS = {
    "lstm": ("LSTM", {}),
    "gru": ("GRU", {}),
    "gru_rb": ("GRU", {"reset_after": False}),
    "rnn_tanh": ("RNN", {"nonlinearity": "tanh"}),
    "rnn_relu": ("RNN", {"nonlinearity": "relu"}),
}


def layer_class(variant):
    """(class, constructor keywords) of a LAYER_VARIANTS id."""
    import lstmcore  # noqa: PLC0415  (not at import: the reference tests run without the core)

    name, extra = LAYER_VARIANTS[variant]
    return getattr(lstmcore, name), extra

ALL_GRADS = ("dy", "dh_n", "dc_n")

#: Named option sets. Together they hit every option value: reverse on/off, seq_lengths
#: on/off, batch_first on/off, each bias None/given, h0 and c0 None/given, each of
#: dy/dh_n/dc_n None/given; sizes (T, B, I, H) are drawn from 1, 2, 3, 7, 13, 33 plus
#: one H=130 and one I=130 case.
OPTION_SETS = {
    "plain": dict(sizes=(7, 3, 13, 7)),
    "reverse": dict(sizes=(13, 2, 7, 13), reverse=True),
    "seq": dict(sizes=(13, 7, 3, 7), seq=True),
    "seq_rev_bf": dict(sizes=(7, 13, 2, 3), seq=True, reverse=True, batch_first=True),
    "nothing_optional": dict(sizes=(3, 1, 1, 2), bias=(), state=(), grads=("dy",)),
    "bf_b_h0": dict(sizes=(2, 3, 7, 1), batch_first=True, bias=("b",), state=("h0",),
                    grads=("dh_n", "dc_n")),
    "rev_bh_c0": dict(sizes=(1, 2, 33, 3), reverse=True, bias=("b_h",), state=("c0",),
                      grads=("dc_n",)),
    "no_grads": dict(sizes=(3, 2, 2, 3), seq=True, grads=()),
    "big_h": dict(sizes=(7, 3, 13, 130), seq=True),
    "big_i": dict(sizes=(33, 2, 130, 13), reverse=True, batch_first=True, bias=("b",)),
}


class Case:
    """Random inputs of one call. ``fwd`` holds forward's arguments (arrays of ``dtype``,
    None where the option set leaves them out), ``grads`` backward's dy/dh_n/dc_n."""

    def __init__(self, variant, dtype=np.float64, seed=0, sizes=(7, 3, 13, 7), reverse=False,
                 seq=False, batch_first=False, bias=("b", "b_h"), state=("h0", "c0"),
                 grads=ALL_GRADS):
        self.variant = variant
        self.cell, self.reset_after = VARIANTS[variant]
        self.dtype = np.dtype(dtype)
        T, B, I, H = self.sizes = sizes
        G = GATES[self.cell]
        self.T, self.B, self.I, self.H, self.G = T, B, I, H, G
        rng = np.random.default_rng(seed)

        def arr(shape, scale):
            return (scale * rng.standard_normal(shape)).astype(self.dtype)

        lstm = self.cell == "lstm"
        x = arr((T, B, I), 1.0)
        self.fwd = dict(
            x=x.transpose(1, 0, 2).copy() if batch_first else x,
            w_x=arr((I, G * H), 0.8 / np.sqrt(I)),
            w_h=arr((H, G * H), 0.6 / np.sqrt(H)),
            b=arr(G * H, 0.3) if "b" in bias else None,
            b_h=arr(G * H, 0.3) if "b_h" in bias else None,
            h0=arr((B, H), 0.5) if "h0" in state else None,
            c0=arr((B, H), 1.0) if ("c0" in state and lstm) else None,
        )
        self.seq_lengths = None
        if seq:
            lens = rng.integers(1, T + 1, size=B)
            lens[0] = T  # always one full-length and (if possible) one length-1 sequence
            if B > 1:
                lens[-1] = 1
            self.seq_lengths = lens.astype(np.int64)
        self.opts = dict(cell=self.cell, reverse=reverse, seq_lengths=self.seq_lengths,
                         batch_first=batch_first, reset_after=self.reset_after)
        y_shape = (B, T, H) if batch_first else (T, B, H)
        gr = [g for g in grads if lstm or g != "dc_n"]
        self.grads = dict(
            dy=arr(y_shape, 1.0) if "dy" in gr else None,
            dh_n=arr((B, H), 1.0) if "dh_n" in gr else None,
            dc_n=arr((B, H), 1.0) if "dc_n" in gr else None,
        )

    # -- helpers ---------------------------------------------------------------------
    def grads_dense(self):
        """dy, dh_n, dc_n with zeros for None (float64) — the weights of the scalar loss."""
        T, B, H = self.T, self.B, self.H
        y_shape = (B, T, H) if self.opts["batch_first"] else (T, B, H)
        z = dict(dy=np.zeros(y_shape), dh_n=np.zeros((B, H)), dc_n=np.zeros((B, H)))
        return {k: (z[k] if v is None else np.asarray(v, np.float64)) for k, v in self.grads.items()}

    def ref_forward(self, **over):
        kw = dict(self.fwd)
        kw.update(over)
        return reference.forward(**kw, **self.opts)

    def ref(self):
        """(forward result, gradients) of the float64 reference."""
        res = reference.forward(**self.fwd, **self.opts)
        return res, reference.backward(res.cache, **self.grads)

    def __repr__(self):
        return f"Case({self.variant}, {self.dtype.name}, sizes={self.sizes}, opts={self.opts})"


def make_case(variant, dtype, opt_name, seed=1234):
    kw = dict(OPTION_SETS[opt_name])
    return Case(variant, dtype, seed=seed + 17 * VARIANT_IDS.index(variant), **kw)


def loss_of(case, y, h_n, c_n):
    """L = Σ y⊙dy + Σ h_n⊙dh_n + Σ c_n⊙dc_n (the None ones left out), in float64."""
    L = 0.0
    g = case.grads
    if g["dy"] is not None:
        L += float(np.sum(np.asarray(y, np.float64) * g["dy"]))
    if g["dh_n"] is not None:
        L += float(np.sum(np.asarray(h_n, np.float64) * g["dh_n"]))
    if g["dc_n"] is not None:
        L += float(np.sum(np.asarray(c_n, np.float64) * g["dc_n"]))
    return L


# ----------------------------------------------------------------------------------
# comparisons, with a record of the largest errors (printed when LSTMCORE_ERROR_REPORT is set)

ERRORS = defaultdict(float)


def rel_err(got, want):
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
    nw = np.linalg.norm(want)
    d = np.linalg.norm(got - want)
    return d / nw if nw > 0 else d


def check(name, got, want, tol, category=None, key=None):
    """Asserts rel_err(got, want) <= tol; None must match None."""
    if want is None or got is None:
        assert got is None and want is None, f"{name}: got {type(got).__name__}, want {type(want).__name__}"
        return 0.0
    err = rel_err(got, want)
    if category is not None:
        k = (category, key)
        ERRORS[k] = max(ERRORS[k], err)
    assert err <= tol, f"{name}: relative error {err:.3e} > {tol:.0e}"
    return err


FIELDS_FWD = ("y", "h_n", "c_n")
FIELDS_BWD = ("dx", "dh0", "dc0", "dw_x", "dw_h", "db", "db_h")


def check_all(got_fwd, got_grads, want_fwd, want_grads, tol, category=None, key=None):
    errs = {}
    for f in FIELDS_FWD:
        errs[f] = check(f, getattr(got_fwd, f), getattr(want_fwd, f), tol, category, key)
    if got_grads is not None:
        for f in FIELDS_BWD:
            errs[f] = check(f, getattr(got_grads, f), getattr(want_grads, f), tol, category, key)
    return errs


def pytest_terminal_summary(terminalreporter):
    if not ERRORS or not os.environ.get("LSTMCORE_ERROR_REPORT"):
        return
    tr = terminalreporter
    tr.section("largest relative errors")
    rows = sorted(ERRORS.items(), key=lambda kv: (kv[0][0], str(kv[0][1])))
    for (cat, key), err in rows:
        tr.write_line(f"{cat:28s} {str(key):28s} {err:.3e}")
    path = os.environ["LSTMCORE_ERROR_REPORT"]
    if path not in ("1", "true", "yes"):
        with open(path, "w") as fh:
            json.dump({f"{c}|{k}": e for (c, k), e in rows}, fh, indent=1)


# ----------------------------------------------------------------------------------
# finite differences


def fd_check(name, loss, p0, grad, rng, max_entries=48, eps=FD_EPS, tol=TOL_FD, category=None,
             key=None):
    """Central differences of ``loss`` at ``p0`` (a float64 array, perturbed in place and
    restored) against ``grad``, over all entries or a random subset of ``max_entries``."""
    flat = p0.reshape(-1)
    g = np.asarray(grad, np.float64).reshape(-1)
    n = flat.size
    idx = np.arange(n) if n <= max_entries else rng.choice(n, size=max_entries, replace=False)
    fd = np.empty(idx.size)
    for k, j in enumerate(idx):
        old = flat[j]
        flat[j] = old + eps
        lp = loss()
        flat[j] = old - eps
        lm = loss()
        flat[j] = old
        fd[k] = (lp - lm) / (2 * eps)
    return check(f"{name} (finite differences over {idx.size} entries)", g[idx], fd, tol,
                 category, key)


def fd_all(case, forward_fn, grads, rng, max_entries=48, category="ref-vs-FD"):
    """Checks every gradient in ``grads`` (a Gradients of ``case``'s loss) against central
    differences of that loss computed with ``forward_fn`` (reference.forward or
    lstmcore.forward) in float64, over all entries of each input or a random subset."""
    params = {k: (None if v is None else np.array(v, np.float64)) for k, v in case.fwd.items()}
    # a None state has a gradient all the same: differentiate at zeros
    if params["h0"] is None:
        params["h0"] = np.zeros((case.B, case.H))
    if case.cell == "lstm" and params["c0"] is None:
        params["c0"] = np.zeros((case.B, case.H))

    def loss():
        r = forward_fn(**params, **case.opts)
        return loss_of(case, r.y, r.h_n, r.c_n)

    names = [("x", "dx"), ("h0", "dh0"), ("c0", "dc0"), ("w_x", "dw_x"), ("w_h", "dw_h"),
             ("b", "db"), ("b_h", "db_h")]
    for p, g in names:
        if params[p] is None:
            assert getattr(grads, g) is None, f"{g} should be None"
            continue
        assert getattr(grads, g) is not None, f"{g} is None"
        fd_check(g, loss, params[p], getattr(grads, g), rng, max_entries=max_entries,
                 category=category, key=case.variant)


# ----------------------------------------------------------------------------------
# PyTorch


def torch_run(case, torch_dtype=None, w_proj=None):
    """Runs ``case`` through torch.nn.LSTM / GRU / RNN and returns (fwd, grads) in
    lstmcore's layout: forward's (y, h_n, c_n) and every gradient of the loss whose
    weights are the case's dy, dh_n, dc_n. reverse uses the reverse half of a
    bidirectional module; seq_lengths uses pack_padded_sequence(enforce_sorted=False).
    ``w_proj`` (H, P): an LSTM with proj_size=P (weight_hr = w_projᵀ; the case's w_h,
    h0, dy, dh_n then have P columns); its gradient comes back as grads.dw_proj."""
    import torch  # noqa: PLC0415
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: PLC0415

    assert case.reset_after, "torch.nn.GRU has reset_after=True only"
    # one torch thread: torch's own OpenMP pool would spin on the 2 cores the core's
    # OpenMP threads need, and these problems are tiny anyway
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    if torch_dtype is None:
        torch_dtype = torch.float64 if case.dtype == np.float64 else torch.float32
    npdt = np.float64 if torch_dtype == torch.float64 else np.float32
    T, B, I, H = case.sizes
    G = case.G
    f = case.fwd
    o = case.opts
    rev, bf = o["reverse"], o["batch_first"]
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn_tanh": torch.nn.RNN,
           "rnn_relu": torch.nn.RNN}[case.cell]
    kw = {}
    if case.cell.startswith("rnn"):
        kw["nonlinearity"] = case.cell[4:]
    R = H  # the width of h
    if w_proj is not None:
        R = kw["proj_size"] = w_proj.shape[1]
    mod = cls(I, H, num_layers=1, bias=True, batch_first=bf, bidirectional=rev, **kw)
    mod = mod.to(torch_dtype)
    sfx = "_reverse" if rev else ""
    rng = np.random.default_rng(99)

    def t(a):
        return torch.tensor(np.asarray(a, npdt))

    zeros = np.zeros(G * H)
    with torch.no_grad():
        getattr(mod, "weight_ih_l0" + sfx).copy_(t(f["w_x"].T))
        getattr(mod, "weight_hh_l0" + sfx).copy_(t(f["w_h"].T))
        getattr(mod, "bias_ih_l0" + sfx).copy_(t(zeros if f["b"] is None else f["b"]))
        getattr(mod, "bias_hh_l0" + sfx).copy_(t(zeros if f["b_h"] is None else f["b_h"]))
        if w_proj is not None:
            getattr(mod, "weight_hr_l0" + sfx).copy_(t(w_proj.T))
        if rev:  # the forward half gets random weights of its own; it must not matter
            for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0") + (
                    ("weight_hr_l0",) if w_proj is not None else ()):
                prm = getattr(mod, name)
                prm.copy_(t(0.3 * rng.standard_normal(tuple(prm.shape))))
    ndir = 2 if rev else 1
    d = ndir - 1  # index of our direction in h_n / h0

    def state0(v, width=H):
        s = 0.5 * rng.standard_normal((ndir, B, width))
        s[d] = 0.0 if v is None else np.asarray(v, np.float64)
        return t(s).requires_grad_(True)

    x = t(f["x"]).requires_grad_(True)
    h0 = state0(f["h0"], R)
    hx = h0
    if case.cell == "lstm":
        c0 = state0(f["c0"])
        hx = (h0, c0)
    if o["seq_lengths"] is not None:
        lens = torch.tensor(np.asarray(o["seq_lengths"]), dtype=torch.int64)
        packed = pack_padded_sequence(x, lens, batch_first=bf, enforce_sorted=False)
        out, hn = mod(packed, hx)
        y, _ = pad_packed_sequence(out, batch_first=bf, total_length=T)
    else:
        y, hn = mod(x, hx)
    y = y[..., R:] if rev else y
    if case.cell == "lstm":
        h_n, c_n = hn[0][d], hn[1][d]
    else:
        h_n, c_n = hn[d], None
    g = case.grads_dense()
    loss = (y * t(g["dy"])).sum() + (h_n * t(g["dh_n"])).sum()
    if c_n is not None:
        loss = loss + (c_n * t(g["dc_n"])).sum()
    loss.backward()

    def npy(v):
        return None if v is None else v.detach().cpu().numpy().astype(np.float64)

    fwd = types.SimpleNamespace(y=npy(y), h_n=npy(h_n), c_n=npy(c_n))
    grads = types.SimpleNamespace(
        dx=npy(x.grad),
        dh0=npy(h0.grad[d]),
        dc0=npy(hx[1].grad[d]) if case.cell == "lstm" else None,
        dw_x=npy(getattr(mod, "weight_ih_l0" + sfx).grad.T),
        dw_h=npy(getattr(mod, "weight_hh_l0" + sfx).grad.T),
        db=npy(getattr(mod, "bias_ih_l0" + sfx).grad) if f["b"] is not None else None,
        db_h=npy(getattr(mod, "bias_hh_l0" + sfx).grad) if f["b_h"] is not None else None,
        dw_proj=npy(getattr(mod, "weight_hr_l0" + sfx).grad.T) if w_proj is not None else None,
    )
    return fwd, grads


@pytest.fixture
def isa(request):
    """Runs a test under the instruction-set variant request.param (parametrize with indirect=True)."""
    import lstmcore  # noqa: PLC0415

    saved = lstmcore.get_isa()
    lstmcore.set_isa(request.param)
    yield request.param
    lstmcore.set_isa(saved)


# ----------------------------------------------------------------------------------
# converters (test_convert.py, test_onnx_convert.py)


def float64_copy(layer):
    """A float64 layer with the configuration and the (float32) values of ``layer``: the exact
    computation a float32 peer (Keras, ONNX Runtime) is compared with."""
    from lstmcore.layers import from_config  # noqa: PLC0415

    return from_config(dict(layer.config(), dtype="float64"),
                       {k: v.astype(np.float64) for k, v in layer.params.items()})


def assert_same_layer(a, b):
    """Same class, config and parameters (identical arrays and dtypes): a round trip is exact."""
    assert type(a) is type(b)
    assert a.config() == b.config(), (a.config(), b.config())
    assert sorted(a.params) == sorted(b.params)
    for name in a.params:
        assert a.params[name].dtype == b.params[name].dtype, name
        assert np.array_equal(a.params[name], b.params[name]), name
