"""Everything lstmcore.torch takes from lstmcore beyond its public API, and the weight layout.

The rest of lstmcore.torch uses only the public API (``lstmcore.forward`` / ``backward`` and
their options, ``lstmcore.Cache``, ``set_num_threads``). What it cannot do through that API
lives here, in one place, so that a change inside lstmcore is mended here alone:

* ``rebuild_cache``: a training cache rebuilt from its fields, for the backward custom operator
  (under torch.compile the cache object itself cannot cross from the forward graph to the
  backward graph: only its buffer and the inputs do);
* ``cache_rows``: the size of a training cache per (step, batch row), for the fake tensors that
  torch.compile and torch.export trace with;
* the weight layout: torch keeps (G·H, K) matrices, which the core reads as they are (gate_major).
"""
from __future__ import annotations

import functools

import numpy as np
import torch

import lstmcore
from lstmcore import _core, _cuda, _variants
from lstmcore._cache import Cache, DeviceCache

# ------------------------------------------------------------------------------------------
# The weight layout. torch keeps weight_ih (G·H, I), weight_hh (G·H, R), weight_hr (P, H): the core
# reads them in place with weight_layout="gate_major" and returns their gradients in that layout.

def core_weights(w_ih, w_hh, w_hr):
    """(w_x, w_h, w_proj, keywords for lstmcore.forward and the cache) from torch's matrices (NumPy
    arrays for the host path, detached torch tensors for the device path): the same objects."""
    return w_ih, w_hh, w_hr, {"weight_layout": "gate_major"}


# ------------------------------------------------------------------------------------------
# The training cache.

def rebuild_cache(**fields):
    """The lstmcore.Cache with these fields (those of the Cache that forward returned)."""
    return Cache._from_fields(**fields)


def rebuild_device_cache(device, **fields):
    """The device (CUDA) cache of a forward on torch CUDA tensors, from its fields."""
    return DeviceCache._from_fields(lib=_cuda._lib("torch"), device=device, variant=None, **fields)


def variant_field(cell, options, seed, peepholes, w_proj, layer_norm):
    """The Cache's ``variant`` field for a training call with the cell-variant keywords
    ``options`` (a dict) and these parameters (NumPy arrays or None); None for the plain cell."""
    opts = _variants.options(cell, True, peepholes=peepholes, w_proj=w_proj, layer_norm=layer_norm,
                             seed=seed, **_variant_defaults(options))
    return None if opts is None else {"options": opts, "params": (peepholes, w_proj, layer_norm)}


def _variant_defaults(options):
    full = dict(input_forget=False, forget_gate=True, clip=None, activations=None, activation_alpha=None,
                activation_beta=None, zoneout=None)
    full.update(options)
    return full


@functools.lru_cache(maxsize=256)
def cache_rows(cell, reset_after, input_size, hidden_size, proj_size, peepholes, layer_norm, options):
    """Elements of the training cache per (step, batch row) of one layer call: the cache has
    T·B·cache_rows(...) elements. ``options``: the cell-variant keywords as (name, value) pairs."""
    options = dict(options)
    if not (proj_size or peepholes or layer_norm or options):
        return _core.cache_size(cell, bool(reset_after), 1, 1, input_size, hidden_size)
    opts = _variants.options(cell, False, peepholes=True if peepholes else None, layer_norm=(None,) * 6 if layer_norm
                             else None, w_proj=np.empty(0) if proj_size else None, seed=None,
                             **_variant_defaults(options))
    if opts is None:
        return _core.cache_size(cell, bool(reset_after), 1, 1, input_size, hidden_size)
    if proj_size:
        opts = dict(opts, proj=int(proj_size))
    return _core.stack_cache_size(cell, bool(reset_after), 1, 1, 0.0, 1, 1, input_size, hidden_size,
                                  variant=opts)


def as_cache_buffer(cache):
    """The cache's buffer as a torch tensor (no copy)."""
    buf = cache.buffer
    return buf if isinstance(buf, torch.Tensor) else torch.from_numpy(buf)
