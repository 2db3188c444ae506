"""layer.stepper(): the weights packed once, one step per call (lstmcore/stepper.h).

A stepper walked over a sequence gives the whole-sequence call's outputs and final state
(two float computations of the same equations in different summation orders: pair
tolerances), from zeros or from a given state; it never sees later weight changes; bad
arguments are refused by name.
"""
import numpy as np
import pytest

import lstmcore
from conftest import pair_tol_for, rel_err

CASES = [(lstmcore.LSTM, {}), (lstmcore.GRU, {}), (lstmcore.RNN, {}), (lstmcore.RNN, {"nonlinearity": "relu"}),
         (lstmcore.LSTM, {"num_layers": 2}), (lstmcore.GRU, {"num_layers": 2})]


def _parts(state):
    return state if isinstance(state, tuple) else (state,)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls,kw", CASES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_stepper_walks_the_sequence(cls, kw, dtype):
    T, B, I, H = 7, 3, 5, 37  # H past one unit block of every vector width
    layer = cls(I, H, dtype=dtype, seed=3, **kw)
    rng = np.random.default_rng(5)
    for name in layer.param_names():  # nonzero biases on both sides
        if ".b" in name:
            layer.params[name][...] = rng.uniform(-0.5, 0.5, layer.params[name].shape)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    L = layer.num_layers
    state0 = tuple(rng.standard_normal((L, B, H)).astype(dtype) for _ in _parts(layer.stepper(B).state))
    state0 = state0 if len(state0) == 2 else state0[0]
    for given in (None, state0):
        y, state = layer(x, given)
        s = layer.stepper(B, given)
        ys = np.stack([s.step(x[t]) for t in range(T)])
        tol = pair_tol_for(dtype)
        assert ys.dtype == dtype and ys.shape == y.shape
        assert rel_err(ys, y) < tol
        for got, want in zip(_parts(s.state), _parts(state)):
            assert rel_err(got, want) < tol


def test_stepper_keeps_the_weights_it_was_built_with():
    layer = lstmcore.LSTM(4, 9, seed=1)
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    s = layer.stepper(2)
    before = lstmcore.LSTM(4, 9, seed=1).stepper(2).step(x)
    layer.params["l0.w_x"] *= 0.5  # in place: the stepper does not see it
    assert np.array_equal(s.step(x), before)
    assert not np.array_equal(layer.stepper(2).step(x), before)  # a new stepper does


def test_stepper_state_is_a_copy_and_step_returns_new_arrays():
    layer = lstmcore.GRU(3, 5, seed=2)
    s = layer.stepper(1)
    x = np.ones((1, 3), np.float32)
    y1 = s.step(x)
    st = s.state
    y2 = s.step(x)
    assert not np.shares_memory(y1, y2)
    st[...] = 7  # changes nothing inside
    assert not np.array_equal(s.state, st)


def test_stepper_refuses_bad_arguments():
    layer = lstmcore.LSTM(4, 6, seed=0)
    s = layer.stepper(2)
    with pytest.raises(ValueError, match="x_t"):
        s.step(np.zeros((3, 4), np.float32))
    with pytest.raises(TypeError, match="x_t"):
        s.step(np.zeros((2, 4), np.float64))
    with pytest.raises(ValueError, match="batch"):
        layer.stepper(0)
    with pytest.raises(ValueError, match="state"):
        layer.stepper(2, (np.zeros((1, 3, 6), np.float32), np.zeros((1, 3, 6), np.float32)))
    with pytest.raises(ValueError, match="bidirectional"):
        lstmcore.LSTM(4, 6, bidirectional=True).stepper()
    with pytest.raises(ValueError, match="reset_after"):
        lstmcore.GRU(4, 6, reset_after=False).stepper()
    with pytest.raises(ValueError, match="options"):
        lstmcore.LSTM(4, 6, clip=3.0).stepper()
    s.step([[0, 1, 2, 3], [4, 5, 6, 7]])  # lists take the layer's dtype
