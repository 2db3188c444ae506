"""Property-based tests (hypothesis) of the Python API, on the problems of problems.py.

* Random valid problems — every cell (GRU with either reset placement), dtype, layout (C,
  Fortran, strided and offset views, misaligned, read-only, lists, torch tensors that require
  grad), sizes 1 and primes, seq_lengths, reverse, batch_first, initial states, output
  gradients, ``out=``, the cell variants; the layer objects with 1–3 layers, both directions
  and merges, dropout, inference, training and ``step`` — equal the float64 NumPy reference
  within conftest's tolerances (float32 outputs too ill-conditioned for them are left out:
  problems.Report says how that is measured).
* Random invalid calls — one argument spoilt: shapes, dtypes, read-only / strided /
  misaligned / overlapping ``out=``, aliasing with the cache's buffer, overflowing sizes,
  bad lengths, unknown cells and options, used, foreign and hand-built caches — raise a
  ValueError / TypeError / OverflowError naming the argument, and a failed backward leaves
  its cache usable.

Budgets: a few minutes on 2 cores in all; the "ci" profile of conftest.py (derandomized)
under CI, "dev" otherwise, HYPOTHESIS_PROFILE=thorough for ten times the examples. A crash
would stop pytest: tests/fuzz/fuzz_api.py runs the same problems in subprocesses.
"""
from __future__ import annotations

import json
import os

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, note, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import problems  # noqa: E402

_SCALE = 10 if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else 1


def examples(n):
    return settings(max_examples=n * _SCALE)


@st.composite
def forward_specs(draw):
    return problems.draw_forward_spec(problems.HypothesisPicker(draw, st))


@st.composite
def layer_specs(draw):
    return problems.draw_layer_spec(problems.HypothesisPicker(draw, st))


def _check_valid(spec):
    note(json.dumps(spec))
    report = problems.run_valid(spec)
    assert not report, f"{report.mismatches} for {json.dumps(spec)}"


def _check_invalid(spec, data):
    mutation = problems.draw_mutation(problems.HypothesisPicker(data.draw, st), spec)
    note(json.dumps(spec))
    note(json.dumps(mutation))
    exc, expect, after = problems.run_invalid(spec, mutation)
    verdict = problems.judge(exc, expect)
    got = "no exception" if exc is None else f"{type(exc).__name__}: {exc}"
    assert verdict == "clean", f"{mutation['kind']}: expected an error naming one of {list(expect)}, got {got}"
    assert after is None, after


@examples(500)
@given(forward_specs())
def test_forward_and_backward_equal_the_reference(spec):
    _check_valid(spec)


@examples(300)
@given(layer_specs())
def test_layers_equal_the_reference(spec):
    _check_valid(spec)


@examples(600)
@given(forward_specs(), st.data())
def test_invalid_functional_calls_name_the_argument(spec, data):
    _check_invalid(spec, data)


@examples(400)
@given(layer_specs(), st.data())
def test_invalid_layer_calls_name_the_argument(spec, data):
    _check_invalid(spec, data)
