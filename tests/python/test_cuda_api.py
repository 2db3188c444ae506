"""Device arrays without a GPU: what every build says about them.

Fake device arrays (objects with ``__cuda_array_interface__`` or a CUDA
``__dlpack_device__``) stand in for CuPy / torch CUDA arrays, so these tests run on any
machine: a build without CUDA refuses them with an error that says so, and host and device
arrays are never mixed in one call, in any build. Nothing here touches device memory.
"""
from __future__ import annotations

import numpy as np
import pytest

import lstmcore
from lstmcore import _cuda

T, B, I, H = 4, 2, 3, 5


class FakeCudaArray:
    """Looks like a CuPy / Numba device array; its address is never dereferenced."""

    def __init__(self, shape, dtype=np.float32):
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.__cuda_array_interface__ = {"shape": self.shape, "typestr": self.dtype.str, "version": 3,
                                         "data": (0x7F0000000000, False), "strides": None}


class FakeDlpackArray:
    """Looks like a DLPack producer on CUDA device 0 (e.g. a JAX GPU array)."""

    def __init__(self, shape):
        self.shape = tuple(shape)

    def __dlpack_device__(self):
        return (2, 0)  # kDLCUDA


def host_args(dtype=np.float32):
    rng = np.random.default_rng(0)
    return dict(x=rng.standard_normal((T, B, I)).astype(dtype), w_x=rng.standard_normal((I, 4 * H)).astype(dtype),
                w_h=rng.standard_normal((H, 4 * H)).astype(dtype))


def fake_args():
    return dict(x=FakeCudaArray((T, B, I)), w_x=FakeCudaArray((I, 4 * H)), w_h=FakeCudaArray((H, 4 * H)))


def test_device_arrays_are_recognised():
    assert _cuda.is_device_call(FakeCudaArray((1,)))
    assert _cuda.is_device_call(None, FakeDlpackArray((1,)))
    assert not _cuda.is_device_call(np.zeros(3), None, [1.0], 2.0)


def test_host_tensors_stay_on_the_host():
    torch = pytest.importorskip("torch")
    assert not _cuda.is_device_call(torch.zeros(3))
    res = lstmcore.forward(**{k: torch.from_numpy(v) for k, v in host_args().items()})
    assert isinstance(res.y, np.ndarray)


@pytest.mark.skipif(_cuda.built(), reason="this build has CUDA")
@pytest.mark.parametrize("maker", [fake_args, lambda: {**fake_args(), "x": FakeDlpackArray((T, B, I))}],
                         ids=["cuda_array_interface", "dlpack"])
def test_no_cuda_build_says_so(maker):
    with pytest.raises(TypeError, match="x: a CUDA device array .* this lstmcore build has no CUDA"):
        lstmcore.forward(**maker())
    assert _cuda.device_count() == 0
    assert "cuda: no" in lstmcore.build_info()


@pytest.mark.parametrize("name", ["w_x", "w_h", "b", "h0", "c0", "out"])
def test_mixing_host_and_device_is_refused(name):
    args = fake_args()
    host = dict(host_args(), b=np.zeros(4 * H, np.float32), h0=np.zeros((B, H), np.float32),
                c0=np.zeros((B, H), np.float32), out=np.zeros((T, B, H), np.float32))
    args[name] = host[name]
    with pytest.raises(TypeError, match=f"{name}: a host array \\(numpy.ndarray\\) beside CUDA device arrays"):
        lstmcore.forward(**args)


def test_device_x_with_host_weights_is_refused():
    args = host_args()
    args["x"] = FakeCudaArray((T, B, I))
    with pytest.raises(TypeError, match="w_x: a host array"):
        lstmcore.forward(**args)


def test_device_gradients_for_a_host_cache_are_refused():
    res = lstmcore.forward(**host_args(), training=True)
    with pytest.raises(TypeError, match="dy: a CUDA device array, but the cache is from a host"):
        lstmcore.backward(res.cache, dy=FakeCudaArray((T, B, H)))
    assert not res.cache.consumed  # refused before anything ran
    lstmcore.backward(res.cache, dy=np.ones((T, B, H), np.float32))


def test_build_info_reports_cuda():
    info = lstmcore.build_info()
    assert ("cuda: yes" in info) == _cuda.built()
