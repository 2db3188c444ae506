"""The CUDA backend against the CPU path, through lstmcore.forward / backward on torch CUDA tensors.

Every cell variant and every option set of conftest.OPTION_SETS, float32 and float64:
inference and training forward (y, h_n, c_n) and every gradient, as relative norms against
the CPU core on the same inputs: <= 1e-5 in float32 (TF32 off, the default), <= 1e-12 in
float64. Both sides run the same equations in a different summation order (cuBLAS vs Eigen),
so float64 agrees to ~1e-15 and float32 to ~1e-7 … 1e-6.

Skipped as a whole without a CUDA build of lstmcore, without PyTorch with CUDA, or without
a GPU. (test_cuda_api.py holds the checks that need none of these.)
"""
from __future__ import annotations

import numpy as np
import pytest

import lstmcore
from lstmcore import _cuda

if not _cuda.built():
    pytest.skip("lstmcore was built without CUDA (LSTMCORE_CUDA=OFF)", allow_module_level=True)
torch = pytest.importorskip("torch", reason="PyTorch is needed to hand CUDA arrays to lstmcore")
if not torch.cuda.is_available() or _cuda.device_count() == 0:
    pytest.skip("no CUDA device (or PyTorch built without CUDA)", allow_module_level=True)

from conftest import (FIELDS_BWD, FIELDS_FWD, LAYER_VARIANTS, OPTION_SETS, VARIANT_IDS, check,  # noqa: E402
                      layer_class, make_case)

TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
DEV = torch.device("cuda", 0)


def on_device(v):
    return None if v is None else torch.from_numpy(np.ascontiguousarray(v)).to(DEV)


def on_host(v):
    return None if v is None else v.detach().cpu().numpy()


def cpu_and_gpu(case, training):
    """(CPU forward, CPU grads, GPU forward, GPU grads) of one case; grads None unless training."""
    f, o, g = case.fwd, case.opts, case.grads
    cpu = lstmcore.forward(**f, **o, training=training)
    gpu = lstmcore.forward(**{k: on_device(v) for k, v in f.items()}, **o, training=training)
    if not training:
        return cpu, None, gpu, None
    cpu_g = lstmcore.backward(cpu.cache, **g)
    gpu_g = lstmcore.backward(gpu.cache, **{k: on_device(v) for k, v in g.items()})
    return cpu, cpu_g, gpu, gpu_g


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("opt", list(OPTION_SETS))
@pytest.mark.parametrize("variant", VARIANT_IDS)
def test_against_cpu(variant, opt, dtype):
    case = make_case(variant, dtype, opt)
    tol = TOL[np.dtype(dtype)]
    for training in (False, True):
        cpu, cpu_g, gpu, gpu_g = cpu_and_gpu(case, training)
        assert isinstance(gpu.y, torch.Tensor) and gpu.y.device == DEV
        for name in FIELDS_FWD:
            check(f"{name} (training={training})", on_host(getattr(gpu, name)), getattr(cpu, name), tol,
                  "cuda-vs-cpu", variant)
        if training:
            assert gpu.cache.consumed
            for name in FIELDS_BWD:
                got = getattr(gpu_g, name)
                assert got is None or (isinstance(got, torch.Tensor) and got.device == DEV), name
                check(name, on_host(got), getattr(cpu_g, name), tol, "cuda-vs-cpu", variant)


def test_results_follow_the_callers_stream_and_out():
    case = make_case("lstm", np.float64, "seq")
    cpu = lstmcore.forward(**case.fwd, **case.opts)
    stream = torch.cuda.Stream(DEV)
    with torch.cuda.stream(stream):
        args = {k: on_device(v) for k, v in case.fwd.items()}
        out = torch.empty(cpu.y.shape, dtype=torch.float64, device=DEV)
        res = lstmcore.forward(**args, **case.opts, out=out)
        y = res.y.clone()  # ordered after the call on the same stream
    stream.synchronize()
    assert res.y is out
    check("y", on_host(y), cpu.y, 1e-12)


def test_conversions_on_the_device():
    case = make_case("gru", np.float64, "plain")
    cpu = lstmcore.forward(**case.fwd, **case.opts)
    args = {k: on_device(v) for k, v in case.fwd.items()}
    args["w_x"] = on_device(case.fwd["w_x"].T.copy()).t()  # a transposed view: not C-contiguous
    assert not args["w_x"].is_contiguous()
    res = lstmcore.forward(**args, **case.opts)
    check("y (strided w_x)", on_host(res.y), cpu.y, 1e-12)
    f32 = lstmcore.forward(**{k: (None if v is None else v.float()) for k, v in args.items()}, **case.opts,
                           dtype=np.float64)
    assert f32.y.dtype == torch.float64
    lengths = torch.tensor([3, 1, 2], device=DEV)
    lstmcore.forward(**args, cell="gru", seq_lengths=lengths)  # device lengths are read on the host


def test_errors_on_the_device():
    case = make_case("lstm", np.float32, "plain")
    args = {k: on_device(v) for k, v in case.fwd.items()}
    with pytest.raises(TypeError, match="h0: a host array"):
        lstmcore.forward(**{**args, "h0": case.fwd["h0"]})
    with pytest.raises(TypeError, match="w_h: dtype float64 differs"):
        lstmcore.forward(**{**args, "w_h": args["w_h"].double()})
    with pytest.raises(ValueError, match=r"w_x: expected shape \(I, 4H\)"):
        lstmcore.forward(**{**args, "w_x": args["w_x"][:-1]})
    with pytest.raises(ValueError, match="seq_lengths"):
        lstmcore.forward(**args, seq_lengths=np.array([0, 1, 1]))
    res = lstmcore.forward(**args, training=True)
    with pytest.raises(TypeError, match="dy: a host array"):
        lstmcore.backward(res.cache, dy=np.zeros(res.y.shape, np.float32))
    lstmcore.backward(res.cache)
    with pytest.raises(ValueError, match="already used"):
        lstmcore.backward(res.cache)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("variant", list(LAYER_VARIANTS))
@pytest.mark.parametrize("config", [dict(num_layers=2, bidirectional=True, dropout=0.3),
                                    dict(num_layers=3, merge="sum", bidirectional=True, batch_first=True),
                                    dict(num_layers=2, bias=False)], ids=["2x2-dropout", "3x2-sum-bf", "2x1-nobias"])
def test_layer_objects_against_cpu(variant, config, dtype):
    """A stack (layers, directions, dropout, seq_lengths) on torch CUDA tensors against the CPU."""
    cls, extra = layer_class(variant)
    layer = cls(6, 9, dtype=dtype, seed=1, **config, **extra)
    rng = np.random.default_rng(4)
    shape = (5, 7, 6) if layer.batch_first else (7, 5, 6)
    x = rng.standard_normal(shape).astype(dtype)
    lengths = np.array([7, 3, 1, 6, 5])
    dy = rng.standard_normal(shape[:2] + (layer.output_size,)).astype(dtype)
    tol = TOL[np.dtype(dtype)]
    y, st, cache = layer.forward(x, None, lengths, training=True, dropout_seed=9)
    dx, dst = layer.backward(cache, dy)
    want = dict(layer.grads)
    gy, gst, gcache = layer.forward(on_device(x), None, lengths, training=True, dropout_seed=9)
    gdx, gdst = layer.backward(gcache, on_device(dy))
    check("y", on_host(gy), y, tol, "cuda-vs-cpu", variant)
    check("dx", on_host(gdx), dx, tol, "cuda-vs-cpu", variant)
    for g, w in zip(gst if isinstance(gst, tuple) else (gst,), st if isinstance(st, tuple) else (st,)):
        check("state", on_host(g), w, tol, "cuda-vs-cpu", variant)
    for g, w in zip(gdst if isinstance(gdst, tuple) else (gdst,), dst if isinstance(dst, tuple) else (dst,)):
        check("dstate", on_host(g), w, tol, "cuda-vs-cpu", variant)
    for name, w in want.items():
        assert isinstance(layer.grads[name], torch.Tensor) and layer.grads[name].device == DEV, name
        check(name, on_host(layer.grads[name]), w, tol, "cuda-vs-cpu", variant)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("variant", VARIANT_IDS)
def test_per_step_path_against_cpu(variant, dtype):
    """The small batches of OPTION_SETS run the persistent kernels by default; here the per-step path."""
    saved = _cuda.persistent_batch()
    _cuda.set_persistent_batch(0)
    try:
        for opt in list(OPTION_SETS)[:4]:
            case = make_case(variant, dtype, opt)
            cpu, cpu_g, gpu, gpu_g = cpu_and_gpu(case, True)
            for name in FIELDS_FWD:
                check(name, on_host(getattr(gpu, name)), getattr(cpu, name), TOL[np.dtype(dtype)], "cuda-vs-cpu",
                      variant)
            for name in FIELDS_BWD:
                check(name, on_host(getattr(gpu_g, name)), getattr(cpu_g, name), TOL[np.dtype(dtype)],
                      "cuda-vs-cpu", variant)
    finally:
        _cuda.set_persistent_batch(saved)
