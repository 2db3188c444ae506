"""lstmcore against torch.nn.LSTM / GRU / RNN (tanh and relu): forward and every gradient,
float32 and float64. seq_lengths against pack_padded_sequence(enforce_sorted=False),
reverse against the reverse half of a bidirectional module, batch_first against
batch_first=True modules (see conftest.torch_run)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import lstmcore  # noqa: E402
from conftest import (DTYPES, OPTION_SETS, TORCH_VARIANT_IDS, Case, check_all,  # noqa: E402
                      make_case, pair_tol_for, torch_run)


def core_run(case):
    res = lstmcore.forward(**case.fwd, **case.opts, training=True)
    return res, lstmcore.backward(res.cache, **case.grads)


@pytest.mark.parametrize("opt", list(OPTION_SETS))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("variant", TORCH_VARIANT_IDS)
def test_core_vs_torch(variant, dtype, opt):
    case = make_case(variant, dtype, opt, seed=555)
    want, want_grads = torch_run(case)
    res, grads = core_run(case)
    check_all(res, grads, want, want_grads, pair_tol_for(dtype),
              f"core-vs-torch {np.dtype(dtype).name}", variant)


@pytest.mark.parametrize("variant", TORCH_VARIANT_IDS)
def test_packed_bidirectional_long(variant):
    """Packed, reversed, batch-first, T = 33 with lengths spread over 1..33, float32."""
    case = Case(variant, np.float32, seed=77, sizes=(33, 13, 7, 13), reverse=True, seq=True,
                batch_first=True)
    want, want_grads = torch_run(case)
    res, grads = core_run(case)
    check_all(res, grads, want, want_grads, pair_tol_for(np.float32),
              "core-vs-torch float32", variant)
