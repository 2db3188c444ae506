"""compute_dtype is part of a layer's configuration: config(), save / load, from_config.

A bfloat16 layer written and read back computes the same bits as before; a layer written
without the key (every file before it, and every layer in its dtype's own compute) loads
with compute_dtype None; a bad value in a file is refused by name; changing the attribute
between forward and backward makes backward refuse the cache by name.
"""
import json

import numpy as np
import pytest

import lstmcore
from lstmcore import layers


@pytest.mark.parametrize("cls", [lstmcore.LSTM, lstmcore.GRU, lstmcore.RNN])
def test_save_load_keep_compute_dtype(cls, tmp_path):
    layer = cls(5, 11, num_layers=2, seed=1, compute_dtype="bfloat16")
    assert layer.config()["compute_dtype"] == "bfloat16"
    assert "compute_dtype" not in cls(5, 11).config()
    x = np.random.default_rng(0).standard_normal((4, 3, 5)).astype(np.float32)
    want, _ = layer(x)
    layer.save(tmp_path / "m")
    back = lstmcore.load(tmp_path / "m.npz")
    assert back.compute_dtype == "bfloat16" and back.config() == layer.config()
    assert np.array_equal(back(x)[0], want)
    again = layers.from_config(layer.config(), layer.params)
    assert again.compute_dtype == "bfloat16" and np.array_equal(again(x)[0], want)
    plain, _ = cls(5, 11, num_layers=2, seed=1)(x)
    assert not np.array_equal(plain, want)  # the mode matters, so the test would see it lost


def _write(path, cfg, params):
    np.savez(path, __config__=np.array(json.dumps(cfg)), **params)


def test_files_without_the_key_load_in_native_compute(tmp_path):
    layer = lstmcore.LSTM(4, 6, seed=2, compute_dtype="bfloat16")
    cfg = layer.config()
    del cfg["compute_dtype"]  # a file of an earlier version
    _write(tmp_path / "old.npz", cfg, layer.params)
    assert lstmcore.load(tmp_path / "old.npz").compute_dtype is None
    cfg["compute_dtype"] = "float16"
    _write(tmp_path / "bad.npz", cfg, layer.params)
    with pytest.raises((ValueError, TypeError), match="compute_dtype"):
        lstmcore.load(tmp_path / "bad.npz")
    cfg["compute_dtype"], cfg["dtype"] = "bfloat16", "float64"
    _write(tmp_path / "f64.npz", cfg, {k: v.astype(np.float64) for k, v in layer.params.items()})
    with pytest.raises(TypeError, match="compute_dtype"):
        lstmcore.load(tmp_path / "f64.npz")


def test_backward_refuses_a_cache_of_another_compute():
    layer = lstmcore.GRU(4, 6, seed=3, compute_dtype="bfloat16")
    x = np.random.default_rng(1).standard_normal((3, 2, 4)).astype(np.float32)
    _, _, cache = layer.forward(x, training=True)
    layer.compute_dtype = None
    with pytest.raises(ValueError, match="compute_dtype"):
        layer.backward(cache, np.ones((3, 2, 6), np.float32))
    layer.compute_dtype = "bfloat16"
    dx, _ = layer.backward(cache, np.ones((3, 2, 6), np.float32))  # the cache was left usable
    assert np.all(np.isfinite(dx))
