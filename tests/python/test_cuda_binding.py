"""The CUDA binding of a CUDA build, without a GPU: how a call is described.

``_core.cuda_forward`` and its siblings take the call as keywords (sizes, options, where it
runs, device addresses), read into a described struct: a missing or unknown keyword is a
TypeError naming it, and with every field present the core's own checks run before
anything touches a device (null required addresses are refused by name). Skipped in a
build without CUDA (tests/cpp/run.sh runs it against the CUDA build whenever nvcc exists).
"""
from __future__ import annotations

import numpy as np
import pytest

from lstmcore import _core, _cuda

pytestmark = pytest.mark.skipif(not _cuda.built(), reason="a build without CUDA has no CUDA binding")

WHERE = dict(seq_lengths=None, reverse=False, batch_first=False, device=-1, stream=0, allow_tf32=False)
SIZES = dict(cell="lstm", reset_after=True, dtype="float32", T=3, B=2, I=4, H=5)


def _forward(**change):
    fields = dict(SIZES, **dict.fromkeys(("x", "w_x", "w_h", "b", "b_h", "h0", "c0", "y", "h_n", "c_n", "cache"), 0),
                  **WHERE, gate_major=False)
    fields.update(change)
    return fields


def _backward():
    names = ("x", "w_x", "w_h", "h0", "c0", "cache", "dy", "dh_n", "dc_n", "dx", "dh0", "dc0", "dw_x", "dw_h", "db",
             "db_h")
    return dict(SIZES, **dict.fromkeys(names, 0), **WHERE, gate_major=False)


def _stack(backward):
    fields = dict(SIZES, L=2, D=2, dropout=0.0, seed=0, merge="concat", x=0, weights=[(0, 0, 0, 0)] * 4, h0=0, c0=0,
                  seq_lengths=None, batch_first=False, device=-1, stream=0, allow_tf32=False)
    if backward:
        fields.update(cache=0, dy=0, dh_n=0, dc_n=0, dx=0, dh0=0, dc0=0, grads=[(0, 0, 0, 0)] * 4)
    else:
        fields.update(y=0, h_n=0, c_n=0, cache=0)
    return fields


@pytest.mark.parametrize("entry, fields", [("cuda_forward", _forward()), ("cuda_backward", _backward()),
                                           ("cuda_stack_forward", _stack(False)),
                                           ("cuda_stack_backward", _stack(True))])
def test_complete_description_reaches_the_core_checks(entry, fields):
    with pytest.raises(ValueError, match=r"^x: required"):  # InvalidArgument, before any CUDA call
        getattr(_core, entry)(**fields)


def test_missing_and_unknown_fields_are_named():
    fields = _forward()
    del fields["w_h"]
    with pytest.raises(TypeError, match=r"cuda_forward: missing field 'w_h' \(address of w_h\)"):
        _core.cuda_forward(**fields)
    with pytest.raises(TypeError, match=r"cuda_forward: unexpected field 'w_hh'"):
        _core.cuda_forward(**_forward(w_hh=0))
    with pytest.raises(TypeError, match=r"cuda_backward: missing field 'dy'"):
        _core.cuda_backward(**{k: v for k, v in _backward().items() if k != "dy"})


def test_fields_reach_their_places():
    lengths = np.array([3, 1], dtype=np.int64)
    with pytest.raises(ValueError, match=r"seq_lengths: expected every length in 1\.\.3, got 0"):
        _core.cuda_forward(**_forward(x=1, w_x=1, w_h=1, y=1, h_n=1, c_n=1, seq_lengths=np.array([3, 0])))
    with pytest.raises(ValueError, match=r"^c0: the gru cell has no cell state"):
        _core.cuda_forward(**_forward(cell="gru", x=1, w_x=1, w_h=1, y=1, h_n=1, c0=1, seq_lengths=lengths))
    with pytest.raises(TypeError, match=r"dtype: expected float32 or float64, got float16"):
        _core.cuda_forward(**_forward(dtype="float16"))
