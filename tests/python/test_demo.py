"""python -m lstmcore.demo: every task at the smallest sizes, its files, the two engines'
agreement, the vanishing-gradient computation, and the refusal of bad arguments.

The demo trains the same model twice (lstmcore.torch and torch.nn) from the same initial
weights on the same batches in the same order with the same optimizer, so the two loss curves
differ only by float32 rounding:

* STEP0_TOL = TOL32_PAIR (2e-5): the first step's loss comes from identical weights and data:
  two float32 forward passes against each other (see conftest).
* LOSS_TOL = 1e-5 for every step of the tiny run (≤ 76 steps per model). The engines' gradients
  differ by float32 rounding (~1e-7 relative here) and Adam carries that into the weights step
  by step; with lstmcore's kernels behind the lstmcore engine the largest gap measured over
  all six runs was 1.9e-7, so the tolerance leaves 50× for other summation orders. It is not
  loose: adding noise of 1e-3 of its RMS to one weight gradient (dw_h) of the lstmcore engine
  moved the losses apart by up to 1.7e-5 (adding RNN), 6.7e-6 (sunspots), 3.2e-6 (digits);
  another draw of initial weights or another batch order changes the first loss by far more
  than STEP0_TOL. (A gradient
  off by a constant factor trains the same under Adam and cannot show here; the backend's
  own tests check gradients.)
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import TOL32_PAIR, TOL64, rel_err

for _name in ("torch", "tqdm", "matplotlib", "sklearn", "statsmodels"):
    pytest.importorskip(_name)

import torch  # noqa: E402

import lstmcore  # noqa: E402
from lstmcore.demo import TASKS, adding, chars  # noqa: E402
from lstmcore.demo.__main__ import main  # noqa: E402
from lstmcore.demo._train import ENGINES, Settings  # noqa: E402

STEP0_TOL = TOL32_PAIR
LOSS_TOL = 1e-5
FIGURES = ("adding.png", "digits.png", "sunspots.png", "chars.png", "speed.png")
RUNS = ("adding LSTM", "adding RNN", "digits rows", "digits pixels", "sunspots GRU", "chars LSTM")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Runs `all --quick` at the test's sizes once: (output folder, what it printed)."""
    if importlib.util.find_spec("lstmcore.torch") is None:
        pytest.skip("lstmcore.torch (the PyTorch backend) is not in this tree")
    out = tmp_path_factory.mktemp("demo") / "out"
    threads = lstmcore.get_num_threads(), torch.get_num_threads()
    import contextlib  # noqa: PLC0415
    import io  # noqa: PLC0415

    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            rc = main(["all", "--quick", "--tiny", "--out", str(out), "--threads", "1"])
    finally:
        lstmcore.set_num_threads(threads[0])
        torch.set_num_threads(threads[1])
    assert rc == 0
    return out, buf.getvalue()


def test_writes_every_file(demo):
    out, printed = demo
    for name in FIGURES:
        with open(out / name, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n", name
    summary = json.loads((out / "summary.json").read_text())
    rows = summary["rows"]
    assert [r["task"] for r in rows] == ["adding", "adding", "digits", "digits", "sunspots", "chars"]
    assert summary["settings"]["tasks"] == list(TASKS)
    for r in rows:
        assert set(r["values"]) == set(ENGINES) and set(r["seconds_per_epoch"]) == set(ENGINES)
        assert all(math.isfinite(v) for v in r["values"].values()), r
        assert all(t > 0 for t in r["seconds_per_epoch"].values()), r
        t = r["seconds_per_epoch"]
        assert r["speedup"] == pytest.approx(t["torch"] / t["lstmcore"])
    table = (out / "summary.md").read_text()
    assert table.startswith("| task | model | metric |")
    assert sum(line.startswith("| ") for line in table.splitlines()) == len(rows) + 1
    assert table.splitlines()[0] in printed
    sample = (out / "chars_sample.txt").read_text()
    assert sample.count("=====\n" + chars.PROMPT) == 2  # one sample per engine
    assert "chars: text generated" in printed


def test_engines_agree(demo):
    out, _ = demo
    runs = json.loads((out / "losses.json").read_text())
    assert list(runs) == list(RUNS)
    for name, run in runs.items():
        a, b = (np.asarray(run["losses"][e]) for e in ENGINES)
        assert a.shape == b.shape and a.size == run["steps_per_epoch"] * len(run["epoch_seconds"]["torch"])
        assert np.all(np.isfinite(a)) and np.all(b > 0)
        gap = np.abs(a - b) / np.abs(b)
        assert gap[0] <= STEP0_TOL, f"{name}: first step's losses differ by {gap[0]:.1e}"
        assert gap.max() <= LOSS_TOL, f"{name}: losses differ by {gap.max():.1e} at step {gap.argmax()}"
        assert not np.array_equal(a[:1], a[-1:]), f"{name}: the loss did not change"


@pytest.mark.parametrize("cell", ["LSTM", "RNN"])
def test_input_gradient_norms_match_autograd(cell):
    """adding.input_gradient_norms (lstmcore.forward/backward, NumPy) against torch autograd in float64."""
    rng = np.random.default_rng(3)
    x, y = adding.make_data(5, 13, rng)
    torch.manual_seed(1)
    model = adding.build(cell, 7)(torch.nn).double()
    got = adding.input_gradient_norms(model.state_dict(), "lstm" if cell == "LSTM" else "rnn_tanh",
                                      x.numpy(), y.numpy())
    xt = x.double().requires_grad_(True)
    torch.mean((model(xt).squeeze(-1) - y.double()) ** 2).backward()
    want = xt.grad.norm(dim=(0, 2)).numpy()
    assert rel_err(got, want) <= TOL64


def test_adding_data():
    x, y = adding.make_data(200, 40, np.random.default_rng(0))
    values, marks = x[..., 0].numpy(), x[..., 1].numpy()
    assert np.all(marks.sum(axis=1) == 2)
    assert np.all(marks[:, :4].sum(axis=1) == 1) and np.all(marks[:, 20:].sum(axis=1) == 1)
    np.testing.assert_allclose(y.numpy(), (values * marks).sum(axis=1), rtol=1e-6)


def test_chars_encoding():
    text = "def f(x):\n\treturn x  # é€"
    codes = chars.encode(text)
    assert codes.dtype == np.int64 and codes.max() < len(chars.VOCAB)
    assert chars.decode(codes) == text[:-2] + chars.VOCAB[chars.OTHER] * 2
    train, held = chars.split_files([f"f{k:02d}.py" for k in range(25)])
    assert held == ["f09.py", "f19.py"] and len(train) == 23


def test_epochs_override():
    sizes = {"quick": dict(a=dict(epochs=3, lr=1.0), epochs=5, hidden=2)}
    assert Settings("quick", ".", epochs=None).pick(sizes) == sizes["quick"]
    assert Settings("quick", ".", epochs=1).pick(sizes) == dict(a=dict(epochs=1, lr=1.0), epochs=1, hidden=2)
    assert sizes["quick"]["a"]["epochs"] == 3  # not modified


@pytest.mark.parametrize("args, words", [
    (["nosuchtask"], "invalid choice: 'nosuchtask'"),
    (["--epochs", "0"], "--epochs: expected a positive integer, got '0'"),
    (["adding", "--epochs", "two"], "--epochs: expected a positive integer, got 'two'"),
    (["--threads", "-1"], "--threads: expected a positive integer, got '-1'"),
    (["--out", "{file}/sub"], "--out: cannot write to"),
])
def test_bad_arguments(args, words, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    args = [a.format(file=blocker) for a in args]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and words in lines[0], captured.err


def test_module_entry_point():
    """`python -m lstmcore.demo` with a bad argument: one line, status 2, nothing trained."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(os.path.dirname(lstmcore.__file__))] + env.get("PYTHONPATH", "").split(os.pathsep))
    p = subprocess.run([sys.executable, "-m", "lstmcore.demo", "all", "--epochs", "0"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.splitlines() == ["python -m lstmcore.demo: error: argument --epochs: expected a "
                                     "positive integer, got '0'"]
