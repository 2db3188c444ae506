"""The fuzzer (tests/fuzz/fuzz_api.py, opt-in) keeps working: a short run, in its subprocesses,
finds no crash, mismatch, accepted bad call or unnamed error."""
from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT


def test_a_short_fuzz_run_is_clean(tmp_path):
    out = tmp_path / "fuzz.json"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "fuzz", "fuzz_api.py"), "--calls", "40",
                        "--batch", "40", "--seed", "7", "--out", str(out)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "40 calls" in r.stdout and out.exists()
