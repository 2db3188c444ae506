"""The functional API: ``forward`` and ``backward`` over NumPy arrays.

This module holds the defaults and routes each call: device arrays to ``_cuda``, a
cell variant to ``_variants``, the plain cells straight to the compiled core. The
conversions and the checks shared with the other entry points live in ``_checks``, the
training cache in ``_cache``; the core checks the shapes again and does all arithmetic.
"""
from __future__ import annotations

import numpy as np

from . import _core, _cuda, _variants
from ._cache import Cache
from ._checks import (as_array, check_cell, check_weight_layout, compute_dtype_of, expect_shape, flag, is_torch_tensor,
                      prepare, prepare_lengths, refuse_overlap, require_no_cell_state)
from ._types import GATES, ForwardResult, Gradients

#: The cell-variant keywords of forward and their plain-cell defaults.
_VARIANT_DEFAULTS = (("peepholes", None), ("input_forget", False), ("forget_gate", True), ("clip", None),
                     ("activations", None), ("activation_alpha", None), ("activation_beta", None),
                     ("w_proj", None), ("layer_norm", None), ("zoneout", None))


def _steps(x, batch_first):
    """T of a prepared x, or None when x is not 3-D (the core then names x)."""
    if x is None or x.ndim != 3:
        return None
    return x.shape[1] if batch_first else x.shape[0]


def _output(out, dt, inputs):
    """forward's ``out=`` as the array the core writes: a writeable, aligned, C-contiguous
    array of the call's dtype (a CPU torch tensor that does not require grad is written
    through its memory) sharing memory with none of ``inputs``."""
    arr = out
    if is_torch_tensor(out):
        if out.requires_grad:
            raise TypeError("out: a tensor that requires grad (autograd would not see forward's writes); "
                            "pass one that does not, or no out=")
        arr = as_array(out, "out")
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"out: expected a numpy.ndarray, got {type(out).__name__}")
    if arr.dtype != dt:
        raise TypeError(f"out: expected dtype {dt}, got {arr.dtype}")
    if not arr.flags.c_contiguous or not arr.flags.writeable:
        raise ValueError("out: expected a writeable C-contiguous array")
    if not arr.flags.aligned:
        raise ValueError(f"out: expected an aligned array (an address that is a multiple of {dt.itemsize})")
    refuse_overlap("out", arr, inputs, "forward writes y while it reads its inputs (pass another out=)")
    return arr


def forward(x, w_x, w_h, b=None, b_h=None, h0=None, c0=None, *, cell="lstm", reverse=False,
            seq_lengths=None, batch_first=False, training=False, out=None, reset_after=True,
            dtype=None, compute_dtype=None, peepholes=None, input_forget=False, forget_gate=True, clip=None, activations=None,
            activation_alpha=None, activation_beta=None, w_proj=None, layer_norm=None, zoneout=None,
            seed=None, weight_layout="input_major"):
    """Runs one recurrent layer over a whole sequence batch.

    Shapes (T steps, B batch, I inputs, H hidden, G gates: LSTM 4, GRU 3, RNN 1):
    x (T, B, I) or (B, T, I) with ``batch_first``; w_x (I, G·H); w_h (H, G·H); b, b_h
    (G·H,); h0, c0 (B, H). Gate order: LSTM i, f, g, o; GRU r, z, n (PyTorch's).
    None for a bias or initial state means zeros. ``c0`` exists only for ``cell="lstm"``.

    Options:
      cell: "lstm", "gru", "rnn_tanh" or "rnn_relu".
      reverse: run from the last step to the first (with seq_lengths, from each
        sequence's own last valid step).
      seq_lengths: (B,) integers in 1..T; sequence b uses steps 0..len_b-1, y is 0
        past its length and h_n/c_n are its state after its last valid step.
      batch_first: x, y (and dx in backward) are (B, T, ·).
      training: also return a Cache for ``backward``.
      out: a writeable, aligned, C-contiguous array of y's shape and dtype to write y into
        (returned as y; a CPU torch tensor that does not require grad works too). It must share
        no memory with any input, seq_lengths included (ValueError naming both).
      reset_after: GRU only; True (PyTorch/cuDNN) applies the reset gate after the
        recurrent product, False (Cho et al. 2014) before it.
      dtype: force the compute dtype (float32 or float64), converting every array to it.
        Without it, the dtype is that of the float arrays, which must all agree.
      weight_layout: "input_major" (the shapes above) or "gate_major": every weight is given
        as its transpose, w_x (G·H, I), w_h (G·H, H) (or (G·H, P)), w_proj (P, H), i.e.
        PyTorch's weight_ih_l0 / weight_hh_l0 / weight_hr_l0 (and ONNX's W / R of a direction
        in PyTorch's gate order), read in place; backward returns dw_x, dw_h, dw_proj in the
        same layout. Biases, peepholes and layer-norm parameters are the same in both.
      compute_dtype: None (default: products in the arrays' dtype) or "bfloat16": float32
        arrays in and out, every operand of every matrix product rounded to bfloat16 (round
        to nearest even) and the products accumulated in float32; states, gates and
        nonlinearities in float32 (README, "bfloat16 compute"). The cache remembers it, so
        backward computes its products the same way. float64 arrays are refused (TypeError;
        dtype=numpy.float32 converts them); the cell variants and device arrays too (ValueError).

    Cell variants (keyword-only; the defaults are the plain cell, which runs on the packed
    kernels; anything else runs on a general path). ONNX's options, all cells:
      activations: ONNX's scheme, lower-case names: LSTM [f, g, h] (gates, candidate,
        output), GRU [f, g], RNN [f], each one of sigmoid, hard_sigmoid, tanh, relu,
        softsign, scaled_tanh, affine, leaky_relu, elu, softplus, thresholded_relu.
      activation_alpha, activation_beta: one entry per activation, None for ONNX's default
        (hard_sigmoid 0.2 / 0.5, leaky_relu 0.01, elu 1, thresholded_relu 1, scaled_tanh
        1 / 1, affine 1 / 0); a value for a function without that parameter is an error.
      clip: θ > 0: every gate pre-activation is clamped to [−θ, θ] before its activation
        (zero gradient where clamped); the cell state is not clipped.
    LSTM only (ValueError naming the option for GRU/RNN):
      peepholes: (3, H), rows p_i, p_f, p_o (ONNX's P is ordered i, o, f): a_i += p_i ⊙ c_{t−1},
        a_f += p_f ⊙ c_{t−1}, a_o += p_o ⊙ c_t.
      input_forget: f = 1 − i (ONNX's input_forget). forget_gate=False: no forget gate,
        c_t = c_{t−1} + i ⊙ g. Either way the f block of w_x, w_h, b, b_h stays in the
        layout (·, 4H), is ignored, and gets zero gradients.
      w_proj: (H, P): LSTM with a projection (PyTorch's proj_size): h_t = (o ⊙ σ_h(c_t))·w_proj;
        w_h is then (P, 4H), h0, h_n, dh_n (B, P), y (T, B, P); c stays (B, H).
      layer_norm: (gain_x, bias_x, gain_h, bias_h, gain_c, bias_c), shapes (4H,) ×4, (H,) ×2
        (Ba et al. 2016): a = LN(x·w_x; gain_x, bias_x) + LN(h·w_h; gain_h, bias_h) + b + b_h
        (b, b_h added after the normalisation), h_t = o ⊙ σ_h(LN(c_t; gain_c, bias_c)); each LN
        over a row's 4H (or H) values with epsilon 1e-5 (over the 3H used columns without an
        own forget gate).
      zoneout: (z_h, z_c) or one probability for both (Krueger et al. 2016): with
        ``training`` each unit keeps its previous value of h (of c) with probability z_h (z_c),
        masks drawn from ``seed`` (random when None) and kept in the cache; in inference
        h_t = z_h·h_{t−1} + (1 − z_h)·h̃_t, likewise c. Peephole o and h̃ see the new c̃_t.
      seed: the key of the zoneout masks: same seed, same masks (any thread count, either
        row order).
    The gradients of peepholes, w_proj and layer_norm come back as attributes of
    backward's Gradients: ``dpeepholes``, ``dw_proj``, ``dlayer_norm``.

    Returns ForwardResult(y, h_n, c_n, cache): y (T, B, H) (or (B, T, H)), h_n and c_n
    (B, H), c_n None for GRU/RNN, cache None unless ``training``.

    Arrays that are C-contiguous, aligned and of the compute dtype are used in place (no
    copy), CPU torch tensors too (read detached). The cache keeps references to them and a
    private copy of seq_lengths. The GIL is released while the core runs.
    """
    reverse, batch_first, training, reset_after = (flag(v, n) for v, n in (
        (reverse, "reverse"), (batch_first, "batch_first"), (training, "training"), (reset_after, "reset_after")))
    gate_major = check_weight_layout(weight_layout) == "gate_major"
    if _cuda.is_device_call(x, w_x, w_h, b, b_h, h0, c0, out):  # device arrays: python/lstmcore/_cuda.py
        values = dict(peepholes=peepholes, input_forget=input_forget, forget_gate=forget_gate, clip=clip,
                      activations=activations, activation_alpha=activation_alpha, activation_beta=activation_beta,
                      w_proj=w_proj, layer_norm=layer_norm, zoneout=zoneout)
        given = [name for name, default in _VARIANT_DEFAULTS
                 if not (values[name] is default or (default is not None and values[name] == default))]
        if given:
            raise ValueError(f"{given[0]}: the cell variants run on the CPU only; pass host (NumPy) arrays")
        if compute_dtype_of(compute_dtype) is not None:
            raise ValueError("compute_dtype: bfloat16 products run on the CPU only; pass host (NumPy) arrays")
        return _cuda.forward(x, w_x, w_h, b, b_h, h0, c0, cell=cell, reverse=reverse, seq_lengths=seq_lengths,
                             batch_first=batch_first, training=training, out=out, reset_after=reset_after,
                             dtype=dtype, weight_layout=weight_layout)
    check_cell(cell)
    require_no_cell_state(cell, "c0", c0)
    variant = _variants.options(cell, training, peepholes=peepholes, input_forget=input_forget,
                                forget_gate=forget_gate, clip=clip, activations=activations,
                                activation_alpha=activation_alpha, activation_beta=activation_beta,
                                w_proj=w_proj, layer_norm=layer_norm, zoneout=zoneout, seed=seed)
    dt, a, given = prepare([("x", x), ("w_x", w_x), ("w_h", w_h), ("b", b), ("b_h", b_h), ("h0", h0), ("c0", c0)]
                           + _variants.named_arrays(variant, peepholes, w_proj, layer_norm), dtype)
    compute = compute_dtype_of(compute_dtype)
    if compute is not None and dt != np.float32:
        raise TypeError(f"compute_dtype: 'bfloat16' computes on float32 arrays, got {dt} "
                        "(pass dtype=numpy.float32 to convert them)")
    if compute is not None and variant is not None:
        raise ValueError("compute_dtype: 'bfloat16' runs the plain cells only (the cell variants compute in the "
                         "arrays' dtype)")
    lengths_given = as_array(seq_lengths, "seq_lengths")
    lengths = prepare_lengths(lengths_given, _steps(a["x"], batch_first))
    y_array = None
    if out is not None:
        y_array = _output(out, dt, list(a.items()) + list(given.items()) + [("seq_lengths", lengths_given)])
    if variant is not None:
        y, h_n, c_n, buffer = _variants.forward(cell, reset_after, a, lengths, reverse, batch_first,
                                                training, y_array, variant, gate_major)
    else:
        y, h_n, c_n, buffer = _core.forward(cell, bool(reset_after), a["x"], a["w_x"], a["w_h"], a["b"],
                                            a["b_h"], a["h0"], a["c0"], lengths, bool(reverse),
                                            bool(batch_first), bool(training), y_array, gate_major=gate_major,
                                            bf16=compute is not None)
    if out is not None:
        y = out  # the caller's object (a torch tensor stays one)
    cache = None
    if training:
        cache = Cache._from_fields(cell=cell, reset_after=reset_after, dtype=dt, x=a["x"], w_x=a["w_x"],
                                   w_h=a["w_h"], h0=a["h0"], c0=a["c0"], seq_lengths=lengths, reverse=reverse,
                                   batch_first=batch_first, has_b=a["b"] is not None,
                                   has_b_h=a["b_h"] is not None, buffer=buffer,
                                   variant=_variants.cache_entry(variant, a), weight_layout=weight_layout,
                                   compute_dtype=compute)
    return ForwardResult(y, h_n, c_n, cache)


def backward(cache, dy=None, dh_n=None, dc_n=None):
    """Backpropagation through time for the forward call that produced ``cache``.

    dy has y's shape; dh_n, dc_n are (B, H); None means a zero gradient. dc_n exists
    only for LSTM. The gradients must have the cache's dtype and lie outside the cache's
    buffer (which backward overwrites). Everything is checked before the cache is consumed:
    a backward that raises leaves it usable.

    Returns Gradients(dx, dh0, dc0, dw_x, dw_h, db, db_h), shaped like the forward
    inputs; dc0 is None for GRU/RNN, db / db_h are None when forward had no such bias.
    A cell variant's own parameters have theirs as attributes: ``dpeepholes``,
    ``dw_proj``, ``dlayer_norm`` (None when forward did not have them).
    """
    if _cuda.is_device_call(cache, dy, dh_n, dc_n):  # a device cache or device gradients
        return _cuda.backward(cache, dy, dh_n, dc_n)
    if not isinstance(cache, Cache):
        raise TypeError(f"cache: expected the lstmcore.Cache from forward(..., training=True), "
                        f"got {type(cache).__name__}")
    require_no_cell_state(cache.cell, "dc_n", dc_n)
    named = [("dy", dy), ("dh_n", dh_n), ("dc_n", dc_n)]
    for name, obj in named:
        arr = as_array(obj, name) if hasattr(obj, "dtype") else None  # arrays and tensors, not lists
        if arr is not None and arr.dtype.kind == "f" and arr.dtype != cache.dtype:
            raise TypeError(f"{name}: dtype {arr.dtype} differs from the cache's dtype {cache.dtype}")
    _, g, given = prepare(named, cache.dtype)  # lists and integer arrays take the cache's dtype
    _check_gradients(cache, g, given)  # everything is checked before the cache is marked used
    cache._claim()
    if cache.variant is not None:
        return _variants.backward(cache, g)
    result = _core.backward(cache.cell, cache.reset_after, cache.x, cache.w_x, cache.w_h, cache.h0,
                            cache.c0, cache.seq_lengths, cache.reverse, cache.batch_first, cache.buffer,
                            cache.has_b, cache.has_b_h, g["dy"], g["dh_n"], g["dc_n"],
                            gate_major=cache.weight_layout == "gate_major", bf16=cache.compute_dtype is not None)
    return Gradients(*result)


def _check_gradients(cache, g, given):
    """The shapes of dy, dh_n, dc_n for ``cache``, and none of them inside its buffer (which
    backward overwrites while it reads them)."""
    x, w_h = cache.x, cache.w_h
    T, B = (x.shape[1], x.shape[0]) if cache.batch_first else (x.shape[0], x.shape[1])
    R, GH = w_h.shape[::-1] if cache.weight_layout == "gate_major" else w_h.shape
    H = GH // GATES[cache.cell]
    r = "P" if cache.variant is not None and cache.variant["params"][1] is not None else "H"
    y_shape, letters = ((B, T, R), f"(B, T, {r})") if cache.batch_first else ((T, B, R), f"(T, B, {r})")
    for name, want, spelt in (("dy", y_shape, letters), ("dh_n", (B, R), f"(B, {r})"), ("dc_n", (B, H), "(B, H)")):
        if g[name] is not None:
            expect_shape(name, g[name].shape, want, spelt)
            refuse_overlap(name, given[name], [("the cache's buffer", cache.buffer)],
                           "backward overwrites the buffer while it reads the gradients")


def set_num_threads(n):
    """Sets the number of threads every later call uses (process-wide)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n: expected an int, got {type(n).__name__}")
    if n > 2**31 - 1:
        raise OverflowError(f"n: expected a thread count that fits a C int (at most {2**31 - 1}), got {n}")
    _core.set_num_threads(int(n))


def get_num_threads():
    """The number of threads calls use (default: OpenMP's, i.e. OMP_NUM_THREADS or the core count)."""
    return _core.get_num_threads()


def available_isas():
    """Instruction-set variants of the kernels compiled in and supported by this CPU, best first."""
    return list(_core.available_isas())


def get_isa():
    """The kernel variant in use: "avx512_bf16", "avx512", "avx2" or "generic"."""
    return _core.get_isa()


def set_isa(name):
    """Switches the kernel variant (process-wide); ValueError if it is not available here.

    The default is the best variant the CPU supports; the environment variable
    LSTMCORE_ISA chooses another at import time.
    """
    if not isinstance(name, str):
        raise TypeError(f"name: expected one of {', '.join(available_isas())}, got {name!r}")
    _core.set_isa(name)


def build_info():
    """A one-line description of the compiled core (version, OpenMP, threads, instruction sets, CUDA)."""
    return _core.build_info()


def release_memory():
    """Frees the scratch memory the core keeps for later calls (at most 256 MiB in all)."""
    _core.release_memory()
