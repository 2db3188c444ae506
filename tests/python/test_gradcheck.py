"""lstmcore's float64 gradients against central finite differences of lstmcore's own
forward: L = Σ y⊙W_y + Σ h_n⊙W_h + Σ c_n⊙W_c with random W's (the W's are passed to
backward as dy, dh_n, dc_n). Every cell, every gradient, with seq_lengths + reverse."""
from __future__ import annotations

import numpy as np
import pytest

import lstmcore
from conftest import OPTION_SETS, VARIANT_IDS, Case, fd_all, make_case

SMALL_OPTIONS = [k for k in OPTION_SETS if not k.startswith("big")]


def core_grads(case):
    res = lstmcore.forward(**case.fwd, **case.opts, training=True)
    return lstmcore.backward(res.cache, **case.grads)


@pytest.mark.parametrize("opt", SMALL_OPTIONS)
@pytest.mark.parametrize("variant", VARIANT_IDS)
def test_core_gradients_vs_finite_differences(variant, opt):
    case = make_case(variant, np.float64, opt, seed=31)
    fd_all(case, lstmcore.forward, core_grads(case), np.random.default_rng(5),
           category="core-vs-FD f64")


@pytest.mark.parametrize("variant", VARIANT_IDS)
def test_core_gradients_vs_finite_differences_big(variant):
    """H = 130 and I = 130, seq_lengths + reverse + batch_first, a random subset of entries."""
    for sizes in ((7, 3, 13, 130), (13, 2, 130, 7)):
        case = Case(variant, np.float64, seed=41, sizes=sizes, reverse=True, seq=True,
                    batch_first=True)
        fd_all(case, lstmcore.forward, core_grads(case), np.random.default_rng(6),
               max_entries=24, category="core-vs-FD f64")
