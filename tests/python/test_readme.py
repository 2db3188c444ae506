"""The README's Python blocks run as written, so a recipe cannot rot.

The blocks run in order in one namespace, as a reader pastes them one after another, in a
scratch directory (a block may write files). A block that cannot run here says so with an
HTML comment on the line before it: ``<!-- not run: why -->`` (signatures, CUDA)."""
from __future__ import annotations

import os
import re

import pytest

from conftest import ROOT

README = os.path.join(ROOT, "README.md")
_BLOCK = re.compile(r"(?P<mark><!--\s*not run:(?P<why>[^>]*)-->\s*\n)?^```python\n(?P<code>.*?)^```", re.S | re.M)


def python_blocks(path=README):
    """[(line, code, why-not-run or None)] of the file's ```python blocks."""
    text = open(path, encoding="utf-8").read()
    out = []
    for m in _BLOCK.finditer(text):
        line = text.count("\n", 0, m.start("code")) + 1
        out.append((line, m.group("code"), m.group("why").strip() if m.group("why") else None))
    return out


def test_the_readme_has_runnable_blocks_and_says_why_others_do_not_run():
    blocks = python_blocks()
    assert len([b for b in blocks if b[2] is None]) >= 4
    assert all(why for _, _, why in blocks if why is not None), "a `not run:` mark needs a reason"


def test_the_readme_python_blocks_run(tmp_path, monkeypatch):
    pytest.importorskip("torch")  # the "From PyTorch" recipe
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "readme"}
    for line, code, why in python_blocks():
        if why is None:
            exec(compile(code, f"{README}:{line}", "exec"), namespace)  # noqa: S102
    assert namespace["y_t"].shape == (4, 128)  # the last block: the streaming layer


def test_the_cpp_example_says_how_to_get_eigen():
    text = open(os.path.join(ROOT, "examples", "cpp", "README.md"), encoding="utf-8").read()
    assert "Eigen" in text and "libeigen3-dev" in text and "cmeel-eigen" in text
