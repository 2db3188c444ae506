"""The package's import graph has no cycle, and every module imports on its own.

The graph is read from the source with ``ast``: every ``import`` / ``from ... import`` of a
module of the package, at the top of a module or inside a function (an import deferred into
a function to dodge a cycle is still a cycle). No module imports a private helper (a name
starting with "_") of another module of the package; importing the package's private
modules themselves (``from . import _core``) is what they are for.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

from conftest import ROOT, package_env

PACKAGE = os.path.join(ROOT, "python", "lstmcore")
NAME = "lstmcore"


def modules(compiled=False):
    """{dotted name: path} of the package's Python modules (subpackages included), and with
    ``compiled`` its extension modules (lstmcore._core)."""
    out = {}
    for folder, _, files in os.walk(PACKAGE):
        for f in files:
            stem, ext = f.split(".", 1) if "." in f else (f, "")
            if ext == "py" or (compiled and ext.endswith(("so", "pyd"))):
                rel = os.path.relpath(os.path.join(folder, stem), PACKAGE).split(os.sep)
                if rel[-1] == "__init__":
                    rel = rel[:-1]
                out[".".join([NAME] + rel)] = os.path.join(folder, f)
    if compiled:
        # CMake builds the extension; a source tree need not hold it (an installed package does).
        out.setdefault(f"{NAME}._core", os.path.join(PACKAGE, "_core"))
    return out


def _resolve(module, is_package, node):
    """The absolute module name of an ImportFrom's base."""
    if node.level == 0:
        return node.module or ""
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module, path, known):
    """[(imported module, imported name or None, line)] of the package's modules that ``module`` imports."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    is_package = path.endswith("__init__.py")
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names if a.name.split(".")[0] == NAME]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node)
            if base.split(".")[0] != NAME:
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.append((sub, None, node.lineno) if sub in known else (base, a.name, node.lineno))
    return out


def graph():
    mods, known = modules(), modules(compiled=True)
    return {m: {t for t, _, _ in imports(m, p, known) if t in mods and t != m}
            for m, p in mods.items()}


def find_cycle(g):
    """One cycle of ``g`` as a list of nodes, or None."""
    state = {}

    def visit(n, stack):
        state[n] = 1
        stack.append(n)
        for m in sorted(g.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m, stack)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(g):
        if n not in state:
            found = visit(n, [])
            if found:
                return found
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_import_graph_has_no_cycle():
    g = graph()
    # the package imports its modules (lstmcore/__init__.py), and __main__ imports the package:
    # edges into the package itself would close a cycle through __init__ for every module. The
    # demo and the PyTorch backend are clients of the package (it never imports them).
    assert find_cycle(g) is None, f"import cycle: {' -> '.join(find_cycle(g))}"
    for m, targets in g.items():
        if m != NAME:
            assert NAME not in targets or m.endswith("__main__") or m.startswith((NAME + ".demo", NAME + ".torch")), (
                f"{m} imports the package itself")


def test_no_module_imports_a_private_helper_of_another():
    mods, known = modules(), modules(compiled=True)
    found = []
    for m, path in mods.items():
        for target, name, line in imports(m, path, known):
            if name and name.startswith("_") and not name.startswith("__") and target != m:
                found.append(f"{os.path.relpath(path, ROOT)}:{line} imports {target}.{name}")
    assert not found, found


@pytest.mark.parametrize("module", sorted(m for m in modules() if not m.endswith("__main__")))
def test_each_module_imports_in_a_fresh_interpreter(module):
    r = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, env=package_env(),
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
